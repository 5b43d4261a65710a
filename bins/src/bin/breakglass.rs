//! `breakglass`: the emergency console server (see `breakglass --help`).
//!
//! Exit codes: 0 stopped by SIGTERM or Ctrl-C, 1 could not listen or serve,
//! 2 bad settings (for example no token and no identity header).

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    ExitCode::from(bins::breakglass_cmd::main(
        &bins::breakglass_cmd::BreakglassArgs::parse(),
    ))
}
