//! `afk-watcher`: one watch tick: drive every run in flight one step, then exit.
//!
//! Exit codes: 0 the tick ran (a disabled tick is a success), 1 some
//! repository or run failed (the rest were processed), 2 bad configuration.

use std::process::ExitCode;

use bins::loop_cmd::{self, LoopArgs, TickKind};
use clap::Parser;

/// afk-watcher — one watch tick: drive every run in flight one step.
///
/// Every setting is read from its environment variable (shown below) or its
/// flag; a flag wins. Secrets (AFK_GITHUB_TOKEN, AFK_T3_TOKEN,
/// AFK_SLACK_WEBHOOK_URL, AFK_NTFY_TOKEN, AFK_WOODPECKER_TOKEN) are read only
/// from the environment or from the files named by their *_FILE settings.
#[derive(Debug, Parser)]
#[command(name = "afk-watcher", version = bins::VERSION, about, after_help = afk_adapters::services::LOGS_HELP)]
struct Cli {
    #[command(flatten)]
    settings: LoopArgs,
}

fn main() -> ExitCode {
    std::process::ExitCode::from(loop_cmd::main(TickKind::Watch, &Cli::parse().settings))
}
