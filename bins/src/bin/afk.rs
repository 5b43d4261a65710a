//! `afk`: the operator's and policy developer's command line.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use bins::{exit, policy};
use clap::{Parser, Subcommand};

/// afk — agents implement issues while their owner is away from the keyboard.
#[derive(Debug, Parser)]
#[command(name = "afk", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the AFK loop against simulated services and show what an operator sees.
    ///
    /// GitHub, T3 Code, CI checks, Slack and ntfy are simulated in-process on
    /// 127.0.0.1; the ticks and adapters are the real ones. Needs no network.
    Demo,
    /// Try the pure policy on hand-written JSON: dispatch, next action, checklist.
    #[command(after_long_help = policy::FORMATS_HELP)]
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Which ready issues may start now (JSON in, JSON out).
    #[command(after_long_help = policy::FORMATS_HELP)]
    Dispatch {
        /// JSON input file; standard input when absent or `-`.
        input: Option<PathBuf>,
    },
    /// What the watcher does next with one run (JSON in, JSON out).
    #[command(after_long_help = policy::FORMATS_HELP)]
    NextAction {
        /// JSON input file; standard input when absent or `-`.
        input: Option<PathBuf>,
    },
    /// The progress checklist for a phase (JSON in, markdown out).
    #[command(after_long_help = policy::FORMATS_HELP)]
    Checklist {
        /// JSON input file; standard input when absent or `-`.
        input: Option<PathBuf>,
    },
}

fn read_input(path: Option<&PathBuf>) -> Result<String, String> {
    match path {
        Some(p) if p.as_os_str() != "-" => std::fs::read_to_string(p)
            .map_err(|e| format!("cannot read input file {}: {e}", p.display())),
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("cannot read standard input: {e}"))?;
            Ok(text)
        }
    }
}

fn run(cli: Cli) -> Result<String, String> {
    match cli.command {
        Command::Demo => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the async runtime: {e}"))?;
            let mut out = Vec::new();
            runtime
                .block_on(bins::demo::run(&mut out))
                .map_err(|e| format!("the demo failed: {e:#}"))?;
            Ok(String::from_utf8_lossy(&out).into_owned())
        }
        Command::Policy { command } => {
            let (input, f): (_, fn(&str) -> Result<String, _>) = match &command {
                PolicyCommand::Dispatch { input } => (input, policy::dispatch),
                PolicyCommand::NextAction { input } => (input, policy::next_action),
                PolicyCommand::Checklist { input } => (input, policy::checklist),
            };
            let text = read_input(input.as_ref())?;
            f(&text).map_err(|e| format!("bad input: {e}"))
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(out) => {
            // A closed pipe (`afk policy … | head`) is not an error worth a message.
            let _ = std::io::stdout().lock().write_all(out.as_bytes());
            ExitCode::from(exit::OK)
        }
        Err(message) => {
            let _ = writeln!(std::io::stderr().lock(), "afk: {message}");
            ExitCode::from(exit::BAD_INPUT)
        }
    }
}
