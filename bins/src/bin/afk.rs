//! `afk`: the operator's and policy developer's command line.
//!
//! This file is long because it is the one command line of many verbs
//! (campaigns, findings, runs, stop, halt, setup, policy, the loop), each
//! with its help text, and the `--env-file` reading they share.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use afk_adapters::services::TickKind;
use afk_cli::policy;
use afk_loop::StopTarget;
use bins::exit;
use clap::{CommandFactory, Parser, Subcommand};
use runner::Error;
use runner::findings::{self, Kind};

/// afk — agents implement issues while their owner is away from the keyboard.
#[derive(Debug, Parser)]
#[command(name = "afk", version = bins::VERSION, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The campaign directory for run, status, history, dashboard, cancel
    /// and finding (default: the working directory).
    #[arg(short = 'C', long = "dir", global = true, default_value = ".")]
    dir: PathBuf,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the AFK loop against simulated services and show what an operator sees.
    ///
    /// GitHub, T3 Code, CI checks, Slack and ntfy are simulated in-process on
    /// 127.0.0.1; the ticks and adapters are the real ones. Needs no network.
    Demo,
    /// List the runs in flight from their run records (read-only).
    ///
    /// Uses the same settings as afk-poller and afk-watcher (see their
    /// --help): the allowlist, the GitHub URL, owner and token.
    Runs {
        #[command(subcommand)]
        command: Option<RunsCommand>,
        /// Print JSON instead of a table.
        #[arg(long, global = true)]
        json: bool,
        /// Read settings from this file too (see `afk stop --help`).
        #[arg(long, value_name = "FILE", global = true)]
        env_file: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<bins::loop_cmd::LoopArgs>,
    },
    /// Create the labels afk uses on every enrolled repository (or --check them).
    ///
    /// The ready, in-progress, ready-for-human and stop labels, by the names
    /// the settings give them (AFK_READY_LABEL, AFK_IN_PROGRESS_LABEL,
    /// AFK_READY_FOR_HUMAN_LABEL, AFK_STOP_LABEL), on every repository of
    /// AFK_ALLOWLIST. A label that exists is left as it is. Exit 1 when one
    /// could not be created (or, with --check, is missing).
    Setup {
        #[command(subcommand)]
        what: SetupCommand,
    },
    /// Stop one run now: its agent is interrupted, the run handed to a human.
    ///
    /// Applies the stop label (AFK_STOP_LABEL) to the issue and runs the
    /// watcher's own stopping code at once: the agent's turn is interrupted
    /// and its session stopped, the run recorded as stopped, the labels
    /// changed to ready-for-human, and a [STOPPED] doorbell rung. Uses the
    /// CronJobs' settings (see afk-poller --help).
    Stop {
        /// The run, as repo#number (e.g. infra#7 or acme/infra#7).
        run: String,
        #[command(flatten)]
        stop: Box<StopArgs>,
    },
    /// Stop every run in flight now (then turn the kill switch on).
    ///
    /// Like `afk stop` for each run in flight. New runs can still start until
    /// the kill switch is on: the command prints how to turn it on.
    Halt {
        #[command(flatten)]
        stop: Box<StopArgs>,
    },
    /// Run the AFK loop on this machine: the poll tick, then the watch tick, every --every.
    ///
    /// The CronJobs (afk-poller, afk-watcher) in one process, with the same
    /// settings (see afk-poller --help), logs and exit semantics per tick.
    /// With AFK_EXECUTOR=local it is the whole product on one machine: a
    /// GitHub token, an allowlist, the kill switch off, and an agent CLI.
    /// One afk loop per AFK_LOCAL_DIR. SIGTERM or Ctrl-C finishes the
    /// current tick (a second one abandons it) and leaves agents running:
    /// the next afk loop picks them up; afk halt stops them.
    Loop {
        /// Time between rounds (e.g. 60s, 5m).
        #[arg(long, default_value = "60s", value_parser = bins::campaign_cmd::parse_duration)]
        every: std::time::Duration,
        #[command(flatten)]
        settings: Box<bins::loop_cmd::LoopArgs>,
    },
    /// Run a campaign: work a markdown backlog with local agents.
    ///
    /// Each round takes up to --batch-size to-do rows (tier, then priority,
    /// then file order), marks them ⏳ and runs one agent per row at once. A
    /// row is ✅ when its agent exits 0 within --timeout, prints
    /// `ITEM COMPLETE: <ID>` and writes a non-empty
    /// runs/<tier>/<id>/FINAL_REPORT.md; otherwise ❌ with the reason logged.
    /// Ctrl-C or `afk cancel` stops the agents and puts their rows back.
    /// Exit codes: 0 all done, 1 some failed, 2 bad input, 130 stopped.
    Run(Box<bins::campaign_cmd::RunArgs>),
    /// The active run (if any), what it is running, and the checklist's totals.
    Status {
        /// The backlog.
        #[arg(long, default_value = "SUT-CHECKLIST.md")]
        checklist: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every past run of this campaign, oldest first.
    History {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Per-tier counts, tier reports, what is running, and findings.
    Dashboard {
        /// The backlog.
        #[arg(long, default_value = "SUT-CHECKLIST.md")]
        checklist: PathBuf,
    },
    /// Stop the active run: its agents are killed, their rows back to to-do.
    Cancel {
        /// The backlog.
        #[arg(long, default_value = "SUT-CHECKLIST.md")]
        checklist: PathBuf,
        /// How long to wait for the run to stop.
        #[arg(long, default_value = "30s", value_parser = bins::campaign_cmd::parse_duration)]
        wait: std::time::Duration,
    },
    /// The findings ledger: add, list, aggregate.
    Finding {
        #[command(subcommand)]
        command: FindingCommand,
    },
    /// Try the pure policy on hand-written JSON: dispatch, next action, checklist.
    #[command(after_long_help = policy::FORMATS_HELP)]
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

/// What `afk stop` and `afk halt` need: who, and the CronJobs' settings.
#[derive(Debug, clap::Args)]
struct StopArgs {
    /// Who is stopping, for the record and the doorbell.
    #[arg(
        long,
        env = "USER",
        default_value = "an operator",
        hide_env_values = true
    )]
    by: String,
    /// Read settings from this file too (KEY=VALUE lines, the format of
    /// `kubectl create configmap --from-env-file`): the CronJobs' settings.
    /// The environment and flags win over it; secrets are never read from it.
    #[arg(long, value_name = "FILE")]
    env_file: Option<PathBuf>,
    #[command(flatten)]
    settings: bins::loop_cmd::LoopArgs,
}

#[derive(Debug, Subcommand)]
enum FindingCommand {
    /// Record a finding in findings/<kind>.json under the next id of its kind.
    Add {
        /// bug, dx, improvement or strength.
        #[arg(long, value_parser = kind)]
        kind: Kind,
        /// The finding, a JSON object (e.g. with "title" and "severity").
        #[arg(long)]
        entry: String,
        /// Who found it.
        #[arg(long)]
        agent: String,
        /// The backlog item it belongs to.
        #[arg(long, env = "AFK_ITEM_ID")]
        entry_id: Option<String>,
        /// The campaign whose ledger it goes to (set by `afk run` for its
        /// agents, so ids are unique across the campaign); else -C.
        #[arg(long, env = "AFK_CAMPAIGN_DIR")]
        campaign: Option<PathBuf>,
    },
    /// One line per finding, from findings/ and every runs/**/findings/.
    List {
        /// Only this kind.
        #[arg(long, value_parser = kind)]
        kind: Option<Kind>,
    },
    /// One JSON summary of every ledger under runs/: counts per kind and severity.
    Aggregate {
        /// Also write the summary to this file (replaced atomically).
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum SetupCommand {
    /// The labels afk uses, on every enrolled repository.
    Labels {
        /// Only look: list what is missing, create nothing.
        #[arg(long)]
        check: bool,
        /// Read settings from this file too (see `afk stop --help`).
        #[arg(long, value_name = "FILE")]
        env_file: Option<PathBuf>,
        #[command(flatten)]
        settings: Box<bins::loop_cmd::LoopArgs>,
    },
}

#[derive(Debug, Clone, Subcommand)]
enum RunsCommand {
    /// One run's record and checklist, e.g. `afk runs show infra#7`.
    Show {
        /// The run, as repo#number.
        run: String,
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

/// What `afk halt` prints after stopping every run.
const HALT_NEXT: &str = "\
Every run in flight was told to stop (see the log lines above).
New runs can still start until the kill switch is on. To turn it on:
  kubectl -n afk patch configmap afk-config --type merge -p '{\"data\":{\"AFK_KILL_SWITCH\":\"true\"}}'
(or set AFK_KILL_SWITCH=true wherever the CronJobs read their settings). The
kill switch stops new dispatches and corrective turns; runs in flight are still
finished and reported; it does not interrupt agents (afk halt does).
";

/// What `afk halt` prints when a run could not be stopped.
const HALT_INCOMPLETE: &str = "\
NOT every run in flight was stopped: see the errors above. Runs whose stop
label went on are stopped by the watcher's next tick; a run named in an
error without it is still running. Turn the kill switch on, then run afk halt
again or stop those runs by hand.
";

/// Refuses `command` without an allowlist (it would find nothing).
fn enrolled(settings: &bins::loop_cmd::LoopArgs, command: &str) -> Result<(), Error> {
    let config = settings.policy().map_err(|e| Error::input(e.to_string()))?;
    afk_adapters::settings::operator_allowlist(&config, command).map_err(Error::input)
}

/// `--env-file FILE` (on stop, halt and runs): its settings become flags of
/// that command, where neither a flag nor the environment sets them; a
/// secret in it is refused, an unknown `AFK_*` key is warned about with
/// the nearest known one.
#[allow(clippy::print_stderr)] // before logging is set up
fn with_env_file(mut argv: Vec<std::ffi::OsString>) -> Result<Vec<std::ffi::OsString>, Error> {
    let Some(at) = argv.iter().position(|a| {
        a == "--env-file" || a.to_str().is_some_and(|s| s.starts_with("--env-file="))
    }) else {
        return Ok(argv);
    };
    let path = match argv[at]
        .to_str()
        .and_then(|s| s.strip_prefix("--env-file="))
    {
        Some(p) => PathBuf::from(p),
        None => argv
            .get(at + 1)
            .map(PathBuf::from)
            .ok_or_else(|| Error::input("--env-file needs a file".to_owned()))?,
    };
    let named = |e: &dyn std::fmt::Display| format!("--env-file {}: {e}", path.display());
    let mut text = String::new();
    std::fs::File::open(&path)
        .and_then(|f| f.take(1 << 20).read_to_string(&mut text))
        .map_err(|e| Error::input(named(&e)))?;
    let pairs = afk_adapters::settings::env_file(&text, |k| std::env::var(k).ok())
        .map_err(|e| Error::input(named(&e)))?;
    // The subcommands named (`setup labels`, `runs show`): each flag of the
    // file goes right after the one that owns it.
    let cli = Cli::command();
    let mut command = &cli;
    let mut path: Vec<(usize, &clap::Command)> = Vec::new();
    for (i, a) in argv.iter().enumerate().skip(1) {
        let Some(name) = a.to_str().filter(|s| !s.starts_with('-')) else {
            continue;
        };
        match command.find_subcommand(name) {
            Some(c) => {
                command = c;
                path.push((i, c));
            }
            None => break,
        }
    }
    let Some(sub) = path.last().map(|(_, c)| c.get_name().to_owned()) else {
        return Ok(argv);
    };
    let flags: Vec<(String, String, usize)> = path
        .iter()
        .flat_map(|(at, c)| c.get_arguments().map(move |a| (*at, a)))
        .filter_map(|(at, a)| {
            Some((
                a.get_env()?.to_str()?.to_owned(),
                a.get_long()?.to_owned(),
                at,
            ))
        })
        .collect();
    let mut known: Vec<&str> = flags.iter().map(|(e, _, _)| e.as_str()).collect();
    known.extend(bins::loop_cmd::SECRET_ENV_NAMES);
    let mut extra = Vec::new();
    for (key, value) in pairs {
        if bins::loop_cmd::SECRET_ENV_NAMES.contains(&key.as_str()) {
            return Err(Error::input(named(&format!(
                "{key} is a secret, and afk never reads a secret from an env file: set {key}_FILE (a path) in it, or {key} in the environment"
            ))));
        }
        if std::env::var_os(&key).is_some() {
            continue;
        }
        let Some((_, long, owner_at)) = flags.iter().find(|(env, _, _)| *env == key) else {
            if key.starts_with("AFK_") {
                let near = afk_adapters::settings::nearest_key(&key, &known);
                eprintln!(
                    "afk: warning: {}",
                    named(&format!(
                        "{key} is not a setting of afk {sub}{}",
                        near.map(|n| format!(" (did you mean {n}?)"))
                            .unwrap_or_default()
                    ))
                );
            }
            continue;
        };
        let given = argv.iter().any(|a| {
            a.to_str()
                .is_some_and(|s| s == format!("--{long}") || s.starts_with(&format!("--{long}=")))
        });
        if !given {
            extra.push((
                *owner_at,
                std::ffi::OsString::from(format!("--{long}={value}")),
            ));
        }
    }
    // From the last position back, so the earlier ones stay where they are.
    extra.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    for (at, flag) in extra {
        argv.insert(at + 1, flag);
    }
    Ok(argv)
}

fn kind(text: &str) -> Result<Kind, String> {
    text.parse()
}

fn read_input(path: Option<&PathBuf>) -> Result<String, Error> {
    match path {
        Some(p) if p.as_os_str() != "-" => std::fs::read_to_string(p)
            .map_err(|e| Error::input(format!("cannot read input file {}: {e}", p.display()))),
        _ => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| Error::input(format!("cannot read standard input: {e}")))?;
            Ok(text)
        }
    }
}

fn tokio(multi_thread: bool) -> Result<tokio::runtime::Runtime, Error> {
    let mut builder = if multi_thread {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder
        .enable_all()
        .build()
        .map_err(|e| Error::failed(format!("cannot start the async runtime: {e}")))
}

/// `afk setup labels`.
fn setup_labels(check: bool, settings: &bins::loop_cmd::LoopArgs) -> Result<(String, u8), Error> {
    enrolled(settings, "afk setup labels")?;
    let config = settings.policy().map_err(|e| Error::input(e.to_string()))?;
    let github = settings.github().map_err(|e| Error::input(e.to_string()))?;
    let http = afk_adapters::http::Http::new(&settings.http(None))
        .map_err(|e| Error::failed(e.to_string()))?;
    let tracker = afk_adapters::github::GitHubTracker::new(http, github);
    let rows = tokio(false)?.block_on(afk_adapters::setup::labels(&tracker, &config, check));
    let (text, failed) = afk_adapters::setup::render(&rows);
    Ok((text, if failed { exit::PARTIAL } else { exit::OK }))
}

fn runs(
    command: Option<RunsCommand>,
    json: bool,
    settings: &bins::loop_cmd::LoopArgs,
) -> Result<(String, u8), Error> {
    let (_, found, problems) = tokio(false)?
        .block_on(bins::runs::read(settings))
        .map_err(|e| Error::input(e.to_string()))?;
    let code = if problems.iter().any(|p| p.level == afk_loop::Level::Error) {
        exit::PARTIAL
    } else {
        exit::OK
    };
    let now = afk_core::Timestamp::from_offset_date_time(time::OffsetDateTime::now_utc());
    if let Some(RunsCommand::Show { run }) = command {
        let found = found
            .iter()
            .find(|r| {
                format!("{}#{}", r.issue.repo, r.issue.number).eq_ignore_ascii_case(run.trim())
            })
            .ok_or_else(|| {
                Error::input(format!("no run in flight named {run:?} (see `afk runs`)"))
            })?;
        return Ok((format!("{}\n", afk_cli::runs::show(found)), code));
    }
    let rows: Vec<_> = found.iter().map(|r| afk_cli::runs::row(r, now)).collect();
    if json {
        let value = afk_cli::runs::to_json(&rows, &problems);
        return Ok((format!("{value:#}\n"), code));
    }
    let mut out = afk_cli::runs::table(&rows);
    for p in &problems {
        out.push_str(&format!(
            "! {}: {}\n",
            p.repo.as_deref().unwrap_or("-"),
            p.message
        ));
    }
    Ok((out, code))
}

fn finding(root: &std::path::Path, command: FindingCommand) -> Result<(String, u8), Error> {
    let report = |problems: Vec<String>| {
        for p in &problems {
            let _ = writeln!(std::io::stderr().lock(), "afk: warning: {p}");
        }
        if problems.is_empty() {
            exit::OK
        } else {
            exit::PARTIAL
        }
    };
    match command {
        FindingCommand::Add {
            kind,
            entry,
            agent,
            entry_id,
            campaign,
        } => {
            let now = runner::now_rfc3339();
            let root = campaign.as_deref().unwrap_or(root);
            let id = findings::add(root, kind, &entry, &agent, entry_id.as_deref(), &now)?;
            Ok((format!("{id}\n"), exit::OK))
        }
        FindingCommand::List { kind } => {
            let (text, problems) = findings::list(root, kind);
            Ok((text, report(problems)))
        }
        FindingCommand::Aggregate { output } => {
            let (summary, problems) = findings::aggregate(root);
            let text = format!("{summary:#}\n");
            if let Some(path) = output {
                runner::files::atomic_write(&root.join(&path), text.as_bytes())
                    .map_err(|e| Error::failed(format!("cannot write {}: {e}", path.display())))?;
            }
            Ok((text, report(problems)))
        }
    }
}

#[cfg(feature = "demo")]
fn demo() -> Result<(String, u8), Error> {
    let mut out = Vec::new();
    tokio(true)?
        .block_on(afk_demo::demo::run(&mut out))
        .map_err(|e| Error::failed(format!("the demo failed: {e:#}")))?;
    Ok((String::from_utf8_lossy(&out).into_owned(), exit::OK))
}

#[cfg(not(feature = "demo"))]
fn demo() -> Result<(String, u8), Error> {
    Err(Error::input(
        "this afk was built without the demo (only the demo's own build links the simulated world); \
         run it from a checkout: cargo run -q -p bins --features demo --bin afk -- demo",
    ))
}

/// `repo#n` as a stop target.
fn stop_target(text: &str) -> Result<StopTarget, Error> {
    let bad = || {
        Error::input(format!(
            "{text:?} is not a run: name it repo#number, e.g. infra#7 or acme/infra#7"
        ))
    };
    let (repo, number) = text.trim().rsplit_once('#').ok_or_else(bad)?;
    let issue: u64 = number.parse().map_err(|_| bad())?;
    if repo.trim().is_empty() || issue == 0 {
        return Err(bad());
    }
    Ok(StopTarget::One {
        repo: repo.trim().to_owned(),
        issue,
    })
}

/// Every command's output and exit code.
fn run(cli: Cli) -> Result<(String, u8), Error> {
    let root = || {
        std::path::absolute(&cli.dir)
            .ok()
            .filter(|d| d.is_dir())
            .ok_or_else(|| Error::input(format!("-C {}: not a directory", cli.dir.display())))
    };
    match cli.command {
        Command::Run(args) => {
            let mut out = Vec::new();
            let code = bins::campaign_cmd::run(&root()?, &args, &mut out)?;
            Ok((String::from_utf8_lossy(&out).into_owned(), code))
        }
        Command::Status { checklist, json } => {
            Ok((runner::views::status(&root()?, &checklist, json)?, exit::OK))
        }
        Command::History { json } => Ok((runner::views::history(&root()?, json)?, exit::OK)),
        Command::Dashboard { checklist } => {
            Ok((runner::views::dashboard(&root()?, &checklist)?, exit::OK))
        }
        Command::Cancel { checklist, wait } => {
            let done = runner::views::cancel(&root()?, &checklist, wait)?;
            let code = match done {
                runner::views::Cancelled::StillRunning { .. } => exit::PARTIAL,
                _ => exit::OK,
            };
            Ok((done.to_string(), code))
        }
        Command::Finding { command } => finding(&root()?, command),
        Command::Runs {
            command,
            json,
            settings,
            ..
        } => runs(command, json, &settings),
        Command::Demo => demo(),
        Command::Setup {
            what: SetupCommand::Labels {
                check, settings, ..
            },
        } => setup_labels(check, &settings),
        Command::Loop { every, settings } => {
            Ok((String::new(), bins::loop_cmd::run_loop(&settings, every)))
        }
        Command::Stop { run, stop } => {
            let target = stop_target(&run)?;
            enrolled(&stop.settings, "afk stop")?;
            let code = bins::loop_cmd::main(TickKind::Stop(target, stop.by), &stop.settings);
            Ok((String::new(), code))
        }
        Command::Halt { stop } => {
            enrolled(&stop.settings, "afk halt")?;
            let code =
                bins::loop_cmd::main(TickKind::Stop(StopTarget::All, stop.by), &stop.settings);
            // The banner says every run was told to stop only when every
            // stop went through; the exit code says the rest.
            let said = if code == exit::OK {
                HALT_NEXT
            } else {
                HALT_INCOMPLETE
            };
            Ok((said.to_owned(), code))
        }
        Command::Policy { command } => {
            let (input, f): (_, fn(&str) -> Result<String, _>) = match &command {
                PolicyCommand::Dispatch { input } => (input, policy::dispatch),
                PolicyCommand::NextAction { input } => (input, policy::next_action),
                PolicyCommand::Checklist { input } => (input, policy::checklist),
            };
            let text = read_input(input.as_ref())?;
            f(&text)
                .map(|out| (out, exit::OK))
                .map_err(|e| Error::input(format!("bad input: {e}")))
        }
    }
}

fn main() -> ExitCode {
    let parsed = with_env_file(std::env::args_os().collect())
        .map(Cli::parse_from)
        .and_then(run);
    match parsed {
        Ok((out, code)) => {
            // A closed pipe (`afk policy … | head`) is not an error worth a message.
            let _ = std::io::stdout().lock().write_all(out.as_bytes());
            ExitCode::from(code)
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr().lock(), "afk: {e}");
            // Bad input did nothing (2); a failure while working is 1.
            ExitCode::from(match e {
                Error::Input(_) => exit::BAD_INPUT,
                Error::Failed(_) => exit::PARTIAL,
            })
        }
    }
}
