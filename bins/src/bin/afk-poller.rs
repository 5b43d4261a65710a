//! `afk-poller`: one poll tick: choose which ready issues may start now and dispatch them, then exit.
//!
//! Exit codes: 0 the tick ran (a disabled tick is a success), 1 some
//! repository or run failed (the rest were processed), 2 bad configuration.

use std::process::ExitCode;

use bins::loop_cmd::{LoopArgs, TickKind, init_logs, run};
use clap::Parser;

/// afk-poller — one poll tick: choose which ready issues may start now and dispatch them.
///
/// Every setting is read from its environment variable (shown below) or its
/// flag; a flag wins. Secrets (AFK_GITHUB_TOKEN, AFK_T3_TOKEN,
/// AFK_SLACK_WEBHOOK_URL, AFK_NTFY_TOKEN, AFK_WOODPECKER_TOKEN) are read only
/// from the environment or from the files named by their *_FILE settings.
#[derive(Debug, Parser)]
#[command(name = "afk-poller", version, about)]
struct Cli {
    #[command(flatten)]
    settings: LoopArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(&cli.settings.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(action = "start", "cannot start the async runtime: {e}");
            return ExitCode::from(bins::exit::PARTIAL);
        }
    };
    ExitCode::from(runtime.block_on(run(TickKind::Poll, &cli.settings)))
}
