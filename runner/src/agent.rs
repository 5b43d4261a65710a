//! Local agent processes for the checklist runner: `claude`, `opencode`, or
//! any command.
//!
//! - [`Runtime`] says which program runs (defined once, in
//!   `afk_process::runtime`, for the loop's local executor too): `claude -p
//!   --output-format json [--model m]`, `opencode run [--model m]`, or an
//!   operator's command line. The prompt always goes to standard input,
//!   never into argv.
//! - [`run`] starts one agent with the `afk-process` toolkit (its own
//!   process group), captures stdout and stderr into the item's log while it
//!   runs, and ends it at the timeout or on cancel. Whatever ended it, the
//!   whole group is killed, so a child the agent left behind does not
//!   outlive it.
//!
//! The runner adds no permission-bypass flags: how far an agent may go is the
//! operator's configuration of that agent. Whether a run finished its item is
//! not decided here (see [`crate::decide::judge`]).

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use afk_process::{End, Group, Spec};
use tokio::sync::watch;

pub use afk_process::runtime::{Runtime, RuntimeError, split_command};

/// Why an agent could not be run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The runtime cannot be used (a bad command, an unknown name, a
    /// program that is not there).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The process could not be started, or its log created.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The process ran, but could not be waited for or its log read back:
    /// what it did (and spent) is unknown.
    #[error("{what}: {source}")]
    Lost {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl AgentError {
    /// Whether the agent process ran (and may have spent money) before the
    /// error.
    pub fn after_start(&self) -> bool {
        matches!(self, AgentError::Lost { .. })
    }
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let what = what.into();
    move |source| AgentError::Io { what, source }
}

fn lost(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let what = what.into();
    move |source| AgentError::Lost { what, source }
}

/// One agent run to perform.
#[derive(Debug, Clone)]
pub struct AgentJob {
    /// The prompt.
    pub prompt: String,
    /// Extra environment (`AFK_ITEM_ID`, …), on top of afk's own.
    pub env: Vec<(String, String)>,
    /// The working directory.
    pub cwd: PathBuf,
    /// Where stdout and stderr go while it runs (created or truncated).
    pub log: PathBuf,
    /// How long it may run.
    pub timeout: Duration,
    /// What is left of the run's budget: claude gets it as
    /// `--max-budget-usd` (the other runtimes have no such limit).
    pub max_budget_usd: Option<f64>,
}

/// The spending cap `job`'s agent is given (claude's `--max-budget-usd`);
/// `None` when its runtime takes none or there is no budget. An agent that
/// ran with a cap and reported no cost counts as having spent it
/// ([`crate::decide::spend`]).
pub fn budget_cap(runtime: &Runtime, job: &AgentJob) -> Option<f64> {
    match runtime {
        Runtime::Claude { .. } => job.max_budget_usd,
        Runtime::OpenCode { .. } | Runtime::Command { .. } => None,
    }
}

/// What one agent run is charged by the campaign's rule: its reported cost
/// and the cap it ran with; `None` when it never started (it spent
/// nothing).
pub fn charge_of(
    runtime: &Runtime,
    job: &AgentJob,
    result: &Result<AgentRun, AgentError>,
) -> Option<(Option<f64>, Option<f64>)> {
    match result {
        Ok(run) => Some((run.cost_usd, budget_cap(runtime, job))),
        Err(e) if e.after_start() => Some((None, budget_cap(runtime, job))),
        Err(_) => None,
    }
}

/// How an agent run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRun {
    /// The exit code; `None` when it was killed or died by a signal.
    pub exit_code: Option<i32>,
    /// Killed at the timeout.
    pub timed_out: bool,
    /// Killed because the runner was told to stop.
    pub cancelled: bool,
    /// Its standard output alone (what reports and synthesis read).
    pub stdout: String,
    /// Its stdout and stderr as written to the log.
    pub output: String,
    /// What the agent said about how it went, on one line (its own error
    /// text, tools it was denied, else its last line of stderr or stdout;
    /// see `afk_process::said`).
    pub said: Option<String>,
    /// The cost it reported (claude's `total_cost_usd`); `None` when it
    /// reported none.
    pub cost_usd: Option<f64>,
    /// Wall time from start to end.
    pub duration: Duration,
    /// Its process id (and process group id).
    pub pid: u32,
}

/// At most this much of stdout and stderr is kept in memory (the log on disk
/// keeps everything).
const KEPT: usize = 8 << 20;

/// How long the output readers may take once the group is gone.
const GRACE: Duration = Duration::from_secs(5);

/// Runs one agent to its end: exit, timeout, or cancel, through the
/// `afk-process` toolkit (its own process group, killed whole at the end).
/// `on_start` gets the process id (which is also its process group id) as
/// soon as it runs, so the caller can record it for a later cleanup.
///
/// # Errors
/// `NotFound` when the program does not exist, `Io` when the log cannot be
/// written or the process cannot be started.
pub async fn run(
    runtime: &Runtime,
    job: &AgentJob,
    cancel: watch::Receiver<bool>,
    on_start: impl FnOnce(u32),
) -> Result<AgentRun, AgentError> {
    let mut argv = runtime.argv();
    if let Some(cap) = budget_cap(runtime, job) {
        argv.extend(["--max-budget-usd".to_owned(), format!("{cap:.4}")]);
    }
    let program = argv.first().cloned().unwrap_or_default();
    let log = File::create(&job.log).map_err(io_error(format!(
        "cannot create the agent log {}",
        job.log.display()
    )))?;
    let log = Arc::new(Mutex::new(log));
    let spec = Spec {
        argv,
        cwd: Some(job.cwd.clone()),
        env: job.env.clone(),
        stdin: Some(job.prompt.clone().into_bytes()),
    };
    let started = Instant::now();
    let mut group = Group::spawn(&spec).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AgentError::Runtime(RuntimeError::NotFound {
            program: program.clone(),
            hint: String::new(),
        }),
        _ => AgentError::Io {
            what: format!("cannot start {program:?}"),
            source: e,
        },
    })?;
    let pid = group.pgid();
    on_start(pid);
    let out = afk_process::pump(group.take_stdout(), log.clone(), KEPT);
    let err = afk_process::pump(group.take_stderr(), log.clone(), KEPT);
    let end = group.supervise(async {}, job.timeout, Some(cancel)).await;
    let duration = started.elapsed();
    let (status, timed_out, cancelled) = match end {
        End::Exited(status) => (
            Some(status.map_err(lost("cannot wait for the agent"))?),
            false,
            false,
        ),
        End::TimedOut => (None, true, false),
        End::Cancelled => (None, false, true),
    };
    let stdout = afk_process::collect(out, GRACE).await;
    let stderr = afk_process::collect(err, GRACE).await;
    let output = std::fs::read(&job.log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(lost(format!(
            "cannot read the agent log {}",
            job.log.display()
        )))?;
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let said = afk_process::said::failure(&stdout, &String::from_utf8_lossy(&stderr));
    let cost_usd = afk_process::said::cost(&stdout);
    Ok(AgentRun {
        exit_code: status.and_then(|s| s.code()),
        timed_out,
        cancelled,
        stdout,
        output,
        said,
        cost_usd,
        duration,
        pid,
    })
}
