//! `afk run` and its companions: flags into [`runner::campaign::Settings`],
//! and the runner's events rendered for a person (one progress line
//! rewritten in place on a terminal, plain lines otherwise).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use runner::agent::Runtime;
use runner::campaign::{Mode, Settings};
use runner::event::{Event, Outcome};

use crate::exit;

/// Exit code of a run stopped by Ctrl-C or `afk cancel` (128 + SIGINT).
pub const STOPPED: u8 = 130;

/// `afk run`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The backlog.
    #[arg(long, default_value = "SUT-CHECKLIST.md")]
    pub checklist: PathBuf,
    /// The mission brief every prompt starts with.
    #[arg(long, default_value = "SUT-PACKET.md")]
    pub mission_brief: PathBuf,
    /// The campaign settings (sut_name, sut_version, access, datasets, …).
    #[arg(long, default_value = "config/run_config.json")]
    pub config: PathBuf,
    /// finite: stop when the backlog is done; infinite: synthesise new rows.
    #[arg(long, default_value = "finite", value_parser = ["finite", "infinite"])]
    pub mode: String,
    /// Rows per round, each with its own agent, run concurrently.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub batch_size: u16,
    /// Which agent runs: claude, opencode, or command (--agent-command).
    #[arg(long, default_value = "claude")]
    pub runtime: String,
    /// The agent for --runtime command: '<program> <args>', split like a
    /// shell would but never run through one; the prompt goes to its stdin.
    #[arg(long)]
    pub agent_command: Option<String>,
    /// The model slug passed to claude or opencode.
    #[arg(long)]
    pub model: Option<String>,
    /// How long one agent may run (300s, 5m, 1h, or seconds).
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Infinite mode stops after this many synthesis rounds in a row that add nothing.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub idle_rounds: u32,
    /// Use this prompt template for items instead of the shipped one.
    #[arg(long)]
    pub prompt_template: Option<PathBuf>,
    /// Print the next round's rows and prompts; start nothing, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Turn ⏳ rows left by a run that died back to to-do (and stop its agents).
    #[arg(long)]
    pub resume: bool,
    /// Dollars this run may spend, counted from what the agent reports
    /// (claude only): each agent gets what is left (`--max-budget-usd`),
    /// and nothing new starts once it is spent.
    #[arg(long, value_name = "DOLLARS", value_parser = runner::decide::spend::parse_budget)]
    pub budget_usd: Option<f64>,
}

/// Parses `300s`, `5m`, `1h`, `1500ms` or plain seconds.
///
/// # Errors
/// A message naming the text.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 300s, 5m, 1h"))?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{text:?}: unknown unit (use ms, s, m or h)")),
    };
    if d.is_zero() {
        return Err(format!("{text:?}: a timeout must be longer than zero"));
    }
    Ok(d)
}

impl RunArgs {
    /// The typed settings; reads `CLAUDE_BIN` / `OPENCODE_BIN` and `PATH`.
    ///
    /// # Errors
    /// A message naming the bad flag.
    pub fn settings(&self) -> Result<Settings, String> {
        let runtime = Runtime::from_settings(
            &self.runtime,
            self.agent_command.as_deref(),
            self.model.as_deref(),
            |k| std::env::var(k).ok(),
        )
        .map_err(|e| e.to_string())?;
        Ok(Settings {
            checklist: self.checklist.clone(),
            mission_brief: self.mission_brief.clone(),
            config: self.config.clone(),
            mode: if self.mode == "infinite" {
                Mode::Infinite
            } else {
                Mode::Finite
            },
            batch_size: usize::from(self.batch_size),
            runtime,
            timeout: self.timeout,
            idle_rounds: self.idle_rounds,
            prompt_template: self.prompt_template.clone(),
            dry_run: self.dry_run,
            resume: self.resume,
            afk_bin: std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "afk".into()),
            path_var: std::env::var("PATH").ok(),
            budget_usd: self.budget_usd,
        })
    }
}

/// Renders the runner's events on standard error.
#[derive(Debug)]
struct Screen {
    tty: bool,
    shown: bool,
}

impl Screen {
    fn show(&mut self, event: &Event) {
        let mut err = std::io::stderr().lock();
        if let Event::Progress(counts) = event {
            if self.tty {
                let _ = write!(err, "\r\x1b[2K[afk] {counts}");
                let _ = err.flush();
                self.shown = true;
            }
            return;
        }
        if self.shown {
            let _ = write!(err, "\r\x1b[2K");
            self.shown = false;
        }
        let _ = writeln!(err, "afk run: {event}");
    }
}

/// `afk run`: the exit code (0 all done, 1 some failed or the run broke off,
/// 130 stopped) or `Err` for bad input (exit 2).
///
/// # Errors
/// Bad flags or campaign input; nothing was started.
pub fn run(root: &Path, args: &RunArgs, out: &mut dyn Write) -> Result<u8, runner::Error> {
    let settings = args.settings().map_err(runner::Error::Input)?;
    if settings.dry_run {
        let text = runner::views::dry_run(root, &settings)?;
        out.write_all(text.as_bytes())
            .map_err(|e| runner::Error::failed(format!("cannot write the dry run: {e}")))?;
        return Ok(exit::OK);
    }
    let mut screen = Screen {
        tty: std::io::stderr().is_terminal(),
        shown: false,
    };
    let outcome = runner::run(root, &settings, runner::rounds::Stops::Signals, &mut |e| {
        screen.show(&e);
    })?;
    Ok(match outcome {
        Outcome::Finished => exit::OK,
        Outcome::Interrupted | Outcome::Cancelled => STOPPED,
        Outcome::FinishedWithFailures
        | Outcome::Error
        | Outcome::Running
        | Outcome::BudgetSpent => exit::PARTIAL,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        for (text, want) in [
            ("300s", Ok(Duration::from_secs(300))),
            ("300", Ok(Duration::from_secs(300))),
            ("5m", Ok(Duration::from_secs(300))),
            ("1h", Ok(Duration::from_secs(3600))),
            ("1500ms", Ok(Duration::from_millis(1500))),
        ] {
            assert_eq!(parse_duration(text), want, "{text}");
        }
        for bad in ["", "s", "5 minutes", "-1s", "0s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }
}
