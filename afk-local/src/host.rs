//! The machine, as the local executor sees it: the I/O edge.
//!
//! Everything the executor does to the world goes through [`Host`]: reading
//! and writing run records, preparing a repository's workspace (clone,
//! fetch, reset), starting a turn's supervisor, looking at a turn (who holds
//! its lock, how it ended) and stopping one. [`crate::os::OsHost`] does it
//! for real (files, `git`, `afk-reaper`, `/proc`); the crash harness wraps a
//! host that fails at any of these calls. The executor's own logic (which
//! turn to start, what a turn's state means, when a repeat is a no-op) is
//! written once, over this trait.

use std::path::PathBuf;

use async_trait::async_trait;

use crate::record::{Supervisor, ThreadRecord, TurnEnd};

/// A repository's workspace to prepare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// Its directory's name under `workspaces/` (`owner__name`).
    pub key: String,
    /// Where to clone and fetch from (never holds a credential).
    pub url: String,
    /// The branch to reset to.
    pub branch: String,
}

/// One turn to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The thread.
    pub thread: String,
    /// The turn.
    pub step: u32,
    /// The directory it runs in.
    pub workspace: PathBuf,
    /// The agent's argument vector (program first).
    pub argv: Vec<String>,
    /// What goes to its standard input.
    pub prompt: String,
    /// What the agent's environment says about the turn (`AFK_THREAD_ID`,
    /// …; never a secret: the host adds the git credential itself).
    pub env: Vec<(String, String)>,
}

/// What starting a turn came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Started {
    /// Its supervisor runs and holds the turn's lock.
    Running(Supervisor),
    /// It ended already (it could not start, or a repeat found its end).
    Ended,
}

/// A turn as the machine shows it now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// The supervisor holding the turn's lock, if one does.
    pub holder: Option<Supervisor>,
    /// How it ended, once its supervisor recorded it.
    pub end: Option<TurnEnd>,
}

/// A record that exists but cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRecord {
    /// Where it is.
    pub path: String,
    /// What is wrong with it.
    pub why: String,
}

/// The machine.
#[async_trait]
pub trait Host: Send + Sync {
    /// Every thread's record, by thread id (a record that cannot be read is
    /// reported as such, never skipped).
    ///
    /// # Errors
    /// The runs directory cannot be listed.
    async fn records(&self) -> std::io::Result<Vec<(String, Result<ThreadRecord, BadRecord>)>>;

    /// One thread's record; `None` when it has none.
    ///
    /// # Errors
    /// It cannot be read at all (not: it does not parse).
    async fn record(
        &self,
        thread: &str,
    ) -> std::io::Result<Option<Result<ThreadRecord, BadRecord>>>;

    /// Writes a thread's record whole or not at all.
    ///
    /// # Errors
    /// It could not be written; the previous record is left as it was.
    async fn save(&self, record: &ThreadRecord) -> std::io::Result<()>;

    /// Clones the repository once, else fetches it, and resets it to the
    /// branch: whatever a killed agent left is gone. Returns the directory.
    ///
    /// # Errors
    /// What git said, in one line (never a credential).
    async fn prepare(&self, workspace: &Workspace) -> Result<PathBuf, String>;

    /// Starts the turn's supervisor, detached, and waits until it holds the
    /// turn's lock (or the turn ended). A repeat of a turn that runs or ran
    /// starts nothing.
    ///
    /// # Errors
    /// It could not be started.
    async fn start(&self, launch: &Launch) -> std::io::Result<Started>;

    /// Who holds the turn's lock, then whether it ended (in that order: a
    /// supervisor records the end before it lets go of the lock).
    ///
    /// # Errors
    /// The turn's files cannot be read.
    async fn observe(&self, thread: &str, step: u32) -> std::io::Result<Observed>;

    /// Stops the turn's tree, whole: only the process that holds the turn's
    /// lock, started at `supervisor.start`, is signalled. Returns when the
    /// tree is gone (or as good as: its supervisor no longer holds the lock).
    ///
    /// # Errors
    /// It could not be signalled, or it would not end.
    async fn stop(&self, thread: &str, step: u32, supervisor: Supervisor) -> std::io::Result<()>;

    /// Where a thread's files are, for humans (the doorbell's link).
    fn run_dir(&self, thread: &str) -> Option<String> {
        let _ = thread;
        None
    }
}
