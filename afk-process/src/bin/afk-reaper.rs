//! `afk-reaper [--owner PID] -- PROGRAM [ARGS…]`: the supervisor of one
//! agent tree (see `afk_process::reaper`). afk starts it; people do not.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match afk_process::reaper::parse(&args) {
        Ok(args) => afk_process::reaper::run(&args),
        Err(why) => {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "afk-reaper: {why}");
            afk_process::reaper::USAGE
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
