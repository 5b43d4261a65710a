//! One turn: one agent CLI process, started (ahead of time or now) in an
//! empty directory of its own, given one message on its standard input,
//! read as it streams, and then gone with its whole process tree and its
//! directory.
//!
//! - [`Process::start`] starts the CLI waiting on its input (on
//!   `afk-process`, under its supervisor), in a new empty directory,
//!   with the gateway's environment less its own secrets.
//! - [`run`] hands a process its message and returns a [`Turn`]: the
//!   reply's text deltas as they come, then one [`Event::Done`]. The turn
//!   runs in a task of its own under [`afk_process::Group::supervise`]: its
//!   timeout, or a cancel, kills the whole tree. Dropping the [`Turn`] (a
//!   client that went away) is a cancel.
//! - [`Registry`] knows every running turn, so a shutdown can stop them
//!   all and wait for them.
//!
//! A process never serves two turns: [`run`] consumes it, and after its
//! one message its input is closed once the result is in.
//!
//! It does not pick processes (that is `pool`) or speak HTTP (`server`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use afk_process::{End, Group, Spec};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::cli::{self, Line, Session, Usage};

/// The longest line of CLI output read whole (a longer one is skipped).
pub const LINE_MAX: usize = 1 << 20;

/// The longest reply: past it the turn is stopped.
pub const REPLY_MAX: usize = 1 << 20;

/// How much of the CLI's standard error is kept for an error message.
const STDERR_KEPT: u64 = 16 * 1024;

/// How every process is started.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The agent program.
    pub bin: String,
    /// The `--agents` file (the conversational agent).
    pub agents_file: PathBuf,
    /// Where each process gets its empty directory.
    pub work_dir: PathBuf,
    /// Variables of the gateway's environment the CLI does not inherit.
    pub env_remove: Vec<String>,
}

/// Why a process could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the agent CLI {program:?}: {reason}")]
pub struct StartError {
    /// The program.
    pub program: String,
    /// Why.
    pub reason: String,
}

/// An empty directory, removed when dropped.
#[derive(Debug)]
struct TurnDir(PathBuf);

impl TurnDir {
    fn create(work: &Path) -> std::io::Result<TurnDir> {
        use std::os::unix::fs::DirBuilderExt;
        let path = work.join(format!("turn-{}", uuid::Uuid::new_v4().simple()));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(TurnDir(path))
    }
}

impl Drop for TurnDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A started CLI process waiting for its one message.
#[derive(Debug)]
pub struct Process {
    group: Option<Group>,
    stdin: Option<ChildStdin>,
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<std::io::Result<Vec<u8>>>>,
    pid: u32,
    born: Instant,
    /// The model it runs.
    pub model: String,
    /// Its session argument.
    pub session: Session,
    // Declared last: removed after the process is gone.
    dir: TurnDir,
}

impl Process {
    /// Starts the CLI for `model` and `session`, waiting on its input.
    ///
    /// # Errors
    /// The directory or the process could not be made.
    pub fn start(launch: &Launch, model: &str, session: Session) -> Result<Process, StartError> {
        let fail = |reason: String| StartError {
            program: launch.bin.clone(),
            reason,
        };
        let dir = TurnDir::create(&launch.work_dir).map_err(|e| {
            fail(format!(
                "cannot make its directory under {}: {e}",
                launch.work_dir.display()
            ))
        })?;
        let spec = Spec {
            argv: cli::argv(
                &launch.bin,
                &launch.agents_file.display().to_string(),
                model,
                session,
            ),
            cwd: Some(dir.0.clone()),
            env: Vec::new(),
            stdin: None,
        };
        let remove: Vec<&str> = launch.env_remove.iter().map(String::as_str).collect();
        let mut group = Group::spawn_waiting(&spec, &remove).map_err(|e| {
            fail(match e.kind() {
                std::io::ErrorKind::NotFound => "not found (AFK_GATEWAY_AGENT_BIN)".to_owned(),
                _ => e.to_string(),
            })
        })?;
        let stderr = afk_process::read_capped(group.take_stderr(), STDERR_KEPT);
        Ok(Process {
            stdin: group.take_stdin(),
            stdout: group.take_stdout(),
            stderr: Some(stderr),
            pid: group.pgid(),
            group: Some(group),
            born: Instant::now(),
            model: model.to_owned(),
            session,
            dir,
        })
    }

    /// Its process id (also its group's).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Whether it still runs.
    pub fn alive(&self) -> bool {
        !afk_process::ended(self.pid)
    }

    /// How long ago it started.
    pub fn age(&self) -> Duration {
        self.born.elapsed()
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }
}

/// Why a waiting process could not be primed ([`Process::prime`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrimeError {
    /// The CLI sent the blank message to the model instead of answering
    /// it itself: its conversation now holds a turn nobody asked for.
    #[error("the agent CLI sent the blank priming message to the model")]
    Asked,
    /// Anything else: no answer in time, its output ended, an error.
    #[error("the agent CLI did not answer the blank priming message: {0}")]
    Failed(String),
}

/// The most lines a process may print in answer to the prime.
const PRIME_LINES_MAX: usize = 64;

impl Process {
    /// Sends [`cli::PRIME`] and reads the CLI's answer, within `within`:
    /// afterwards the process waits for its turn having done its
    /// first-message work, and nothing of the prime is left unread.
    ///
    /// # Errors
    /// [`PrimeError`]: the process must not serve a turn (dropping it
    /// kills it).
    pub async fn prime(&mut self, within: Duration) -> Result<(), PrimeError> {
        let failed = |why: &str| PrimeError::Failed(why.to_owned());
        let (Some(stdin), Some(stdout)) = (self.stdin.as_mut(), self.stdout.take()) else {
            return Err(failed("it lost its pipes"));
        };
        let work = async move {
            stdin
                .write_all(cli::PRIME.as_bytes())
                .await
                .map_err(|e| PrimeError::Failed(e.to_string()))?;
            stdin
                .flush()
                .await
                .map_err(|e| PrimeError::Failed(e.to_string()))?;
            let mut out = BufReader::with_capacity(64 * 1024, stdout);
            let mut buf = Vec::new();
            for _ in 0..PRIME_LINES_MAX {
                match afk_process::lines::read_line_capped(&mut out, &mut buf, LINE_MAX).await {
                    Ok(Some(0)) => {}
                    Ok(Some(_)) => continue,
                    Ok(None) => return Err(failed("its output ended")),
                    Err(e) => return Err(PrimeError::Failed(e.to_string())),
                }
                let Line::Result(outcome) = cli::parse(&String::from_utf8_lossy(&buf)) else {
                    continue;
                };
                if !cli::answered_blank(&outcome) {
                    return Err(if outcome.is_error {
                        failed("it answered with an error")
                    } else {
                        PrimeError::Asked
                    });
                }
                // Its turn's output is read from here on: nothing of the
                // prime may be left in a buffer that is dropped.
                if !out.buffer().is_empty() {
                    return Err(failed("it wrote past its answer"));
                }
                return Ok(out.into_inner());
            }
            Err(failed("no answer within its first lines"))
        };
        match tokio::time::timeout(within, work).await {
            Ok(Ok(stdout)) => {
                self.stdout = Some(stdout);
                Ok(())
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(failed(&format!("no answer within {} s", within.as_secs()))),
        }
    }
}

/// A turn's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The whole reply.
    pub text: String,
    /// The tokens the CLI reports.
    pub usage: Usage,
}

/// Why a turn failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The process could not be started.
    #[error("{0}")]
    Start(String),
    /// It ran past the turn timeout.
    #[error("the turn ran past its timeout of {0} s and was stopped")]
    TimedOut(u64),
    /// The CLI failed; what it said.
    #[error("the agent CLI failed: {0}")]
    Agent(String),
    /// The reply grew past [`REPLY_MAX`].
    #[error("the reply passed {REPLY_MAX} bytes and was stopped")]
    TooLong,
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// The client went away.
    #[error("the client went away")]
    ClientGone,
}

/// What a turn yields.
#[derive(Debug)]
pub enum Event {
    /// A piece of the reply.
    Delta(String),
    /// The end, once.
    Done(Result<Reply, Failure>),
}

const WHY_NONE: u8 = 0;
const WHY_CLIENT: u8 = 1;
const WHY_SHUTDOWN: u8 = 2;
const WHY_TOO_LONG: u8 = 3;

/// How a turn is stopped from outside its task.
#[derive(Debug)]
struct Stopper {
    cancel: watch::Sender<bool>,
    why: AtomicU8,
}

impl Stopper {
    fn stop(&self, why: u8) {
        let _ = self
            .why
            .compare_exchange(WHY_NONE, why, Ordering::SeqCst, Ordering::SeqCst);
        let _ = self.cancel.send(true);
    }
}

/// A running turn. Dropping it stops the turn (its whole process tree).
#[derive(Debug)]
pub struct Turn {
    events: mpsc::Receiver<Event>,
    stopper: Arc<Stopper>,
}

impl Turn {
    /// The next event; `None` after `Done`.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.stopper.stop(WHY_CLIENT);
    }
}

/// Every running turn.
#[derive(Debug)]
pub struct Registry {
    next: AtomicU64,
    turns: Mutex<HashMap<u64, Arc<Stopper>>>,
    count: watch::Sender<usize>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            next: AtomicU64::new(0),
            turns: Mutex::new(HashMap::new()),
            count: watch::channel(0).0,
        }
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Stopper>>> {
        self.turns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn add(&self, stopper: Arc<Stopper>) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut turns = self.lock();
        turns.insert(id, stopper);
        self.count.send_replace(turns.len());
        id
    }

    fn remove(&self, id: u64) {
        let mut turns = self.lock();
        turns.remove(&id);
        self.count.send_replace(turns.len());
    }

    /// How many turns run.
    pub fn running(&self) -> usize {
        self.lock().len()
    }

    /// Stops every running turn (the gateway is shutting down); how many.
    pub fn stop_all(&self) -> usize {
        let turns = self.lock();
        for stopper in turns.values() {
            stopper.stop(WHY_SHUTDOWN);
        }
        turns.len()
    }

    /// Waits until no turn runs, at most `wait`; whether none does.
    pub async fn idle(&self, wait: Duration) -> bool {
        let mut count = self.count.subscribe();
        tokio::time::timeout(wait, count.wait_for(|n| *n == 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Removes a turn from the registry however its task ends.
struct Registered<'a>(&'a Registry, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.remove(self.1);
    }
}

/// What to do when a turn has ended and its process is gone, before its
/// `Done` is sent: release what it held, record what it made.
pub type Finish = Box<dyn FnOnce(&Result<Reply, Failure>) + Send>;

/// Runs one turn of `process` with `message` under `timeout`.
pub fn run(
    process: Process,
    message: &str,
    timeout: Duration,
    registry: &Arc<Registry>,
    finish: Finish,
) -> Turn {
    let (cancel, cancelled) = watch::channel(false);
    let stopper = Arc::new(Stopper {
        cancel,
        why: AtomicU8::new(WHY_NONE),
    });
    let (events, receiver) = mpsc::channel(64);
    let line = cli::user_message(message);
    let registry = registry.clone();
    let id = registry.add(stopper.clone());
    let task_stopper = stopper.clone();
    tokio::spawn(async move {
        let _registered = Registered(&registry, id);
        let outcome = drive(process, line, timeout, cancelled, &task_stopper, &events).await;
        finish(&outcome);
        let _ = events.send(Event::Done(outcome)).await;
    });
    Turn {
        events: receiver,
        stopper,
    }
}

async fn drive(
    mut process: Process,
    line: String,
    timeout: Duration,
    cancelled: watch::Receiver<bool>,
    stopper: &Stopper,
    events: &mpsc::Sender<Event>,
) -> Result<Reply, Failure> {
    let (Some(group), Some(mut stdin), Some(stdout), Some(stderr)) = (
        process.group.take(),
        process.stdin.take(),
        process.stdout.take(),
        process.stderr.take(),
    ) else {
        return Err(Failure::Agent("the process lost its pipes".into()));
    };
    let mut result: Option<cli::Outcome> = None;
    let mut deltas = String::new();
    let reading = async {
        let (close, closing) = oneshot::channel::<()>();
        let mut close = Some(close);
        // The message goes in while the output is read: a process that
        // reads nothing cannot block the turn past its timeout.
        let writing = async move {
            if stdin.write_all(line.as_bytes()).await.is_ok() {
                let _ = stdin.flush().await;
            }
            // Input stays open until the result is in (or the output
            // ends): the CLI reads stream-json input until it closes.
            let _ = closing.await;
            drop(stdin);
        };
        let reading = async {
            let mut out = BufReader::with_capacity(64 * 1024, stdout);
            let mut buf = Vec::new();
            while let Ok(Some(cut)) =
                afk_process::lines::read_line_capped(&mut out, &mut buf, LINE_MAX).await
            {
                if cut > 0 {
                    continue;
                }
                match cli::parse(&String::from_utf8_lossy(&buf)) {
                    Line::Delta(text) => {
                        if deltas.len() + text.len() > REPLY_MAX {
                            stopper.stop(WHY_TOO_LONG);
                            continue;
                        }
                        deltas.push_str(&text);
                        if stopper.why.load(Ordering::SeqCst) == WHY_NONE {
                            // A client that went away is not an error here:
                            // its cancel stops the turn.
                            let _ = events.send(Event::Delta(text)).await;
                        }
                    }
                    Line::Result(outcome) => {
                        result = Some(outcome);
                        if let Some(close) = close.take() {
                            let _ = close.send(());
                        }
                    }
                    Line::Other => {}
                }
            }
            drop(close);
        };
        tokio::join!(writing, reading);
    };
    let end = group.supervise(reading, timeout, Some(cancelled)).await;
    let stderr =
        String::from_utf8_lossy(&afk_process::collect(stderr, Duration::from_secs(1)).await)
            .into_owned();
    drop(process);
    match end {
        End::TimedOut => Err(Failure::TimedOut(timeout.as_secs())),
        End::Cancelled => Err(match stopper.why.load(Ordering::SeqCst) {
            WHY_TOO_LONG => Failure::TooLong,
            WHY_SHUTDOWN => Failure::ShuttingDown,
            _ => Failure::ClientGone,
        }),
        End::Exited(Err(e)) => Err(Failure::Agent(format!("cannot wait for it: {e}"))),
        End::Exited(Ok(status)) => match result {
            Some(outcome) if !outcome.is_error => Ok(Reply {
                text: if outcome.text.is_empty() {
                    deltas
                } else {
                    outcome.text
                },
                usage: outcome.usage,
            }),
            result => {
                let said = afk_process::said::failure(
                    result.as_ref().map_or("", |r| r.line.as_str()),
                    &stderr,
                );
                let code = status
                    .code()
                    .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
                Err(Failure::Agent(match said {
                    Some(said) => format!("{said} (exit {code})"),
                    None => format!("it exited with {code} without an answer"),
                }))
            }
        },
    }
}
