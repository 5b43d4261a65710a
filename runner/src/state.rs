//! The runner's state files under `.afk/`.
//!
//! - `.afk/active-run.json` ([`ActiveRun`]): the run in progress (its pid,
//!   start, session file, and the items in flight with their agents' process
//!   groups). It is claimed with an exclusive hard link, so two runners never
//!   share a checklist, and removed when the run ends. One left behind by a
//!   run that died is *stale*: `afk run --resume` and `afk cancel` clean it
//!   up.
//! - `.afk/session-<timestamp>.json` ([`Session`]): one per run, updated as
//!   items end; `afk history` reads them.
//! - `.afk/spend.json` ([`Tally`]): what the campaign's agents spent, over
//!   every run, updated after every agent run; the next `afk run` continues
//!   from it (deleting it starts the count from $0 again).
//!
//! Both are serde structs (a missing or mistyped field is an error naming
//! it) and are replaced atomically on every update.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::decide::spend::Tally;
use crate::event::Outcome;
use crate::files::atomic_write;

/// Where the state files live under a campaign directory.
pub fn state_dir(root: &Path) -> PathBuf {
    root.join(".afk")
}

/// The active-run file.
pub fn active_path(root: &Path) -> PathBuf {
    state_dir(root).join("active-run.json")
}

/// The campaign's spend file.
pub fn spend_path(root: &Path) -> PathBuf {
    state_dir(root).join("spend.json")
}

/// What the campaign's agents spent before now; `None` when nothing was
/// ever recorded (or the file was deleted to start again from $0).
///
/// # Errors
/// `Input` when the file cannot be read or does not parse (naming the
/// field, and how to start again): a budget counted from a guess would be
/// a promise afk cannot keep.
pub fn read_spend(root: &Path) -> Result<Option<Tally>, Error> {
    read_json(&spend_path(root)).map_err(|e| {
        Error::input(format!(
            "{e}; fix it, or delete it to count the campaign's spend from $0 again"
        ))
    })
}

/// Replaces the campaign's spend file.
///
/// # Errors
/// `Failed` when it cannot be written.
pub fn write_spend(root: &Path, spend: &Tally) -> Result<(), Error> {
    write_json(&spend_path(root), spend)
}

/// One item being worked on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InFlight {
    /// The item id.
    pub id: String,
    /// The agent's process group, once it started.
    pub pgid: Option<u32>,
    /// When that process started (`/proc` clock ticks): a later cleanup
    /// signals the group only while its leader is still this process.
    #[serde(default)]
    pub pgid_started: Option<u64>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Its log, relative to the campaign directory.
    pub log: String,
}

/// The content of `active-run.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveRun {
    /// The runner's process id.
    pub pid: u32,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Its session file, relative to the campaign directory.
    pub session: String,
    /// The checklist it works on, relative to the campaign directory.
    pub checklist: String,
    /// The items in flight.
    pub in_flight: Vec<InFlight>,
    /// The campaign directory (canonical) this run works on: `afk cancel`
    /// in another campaign never signals this runner.
    #[serde(default)]
    pub campaign: String,
    /// When the runner process started (`/proc` clock ticks).
    #[serde(default)]
    pub runner_started: Option<u64>,
}

/// How one item's attempt ended, as the session file records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ItemStatus {
    /// ✅
    Done,
    /// ❌
    Failed,
    /// Stopped; back to to-do.
    Stopped,
}

/// One item's attempt in a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    /// The row's id.
    pub id: String,
    /// Its tier.
    pub tier: u32,
    /// How it ended.
    pub status: ItemStatus,
    /// Why it failed or stopped.
    pub reason: Option<String>,
    /// The agent's exit code, when it exited.
    pub exit_code: Option<i32>,
    /// How long the agent ran.
    pub duration_ms: u64,
    /// Its log, relative to the campaign directory.
    pub log: String,
    /// The cost its agent reported; `None` when it reported none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
}

/// One tier report attempt in a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierReportRecord {
    /// The tier.
    pub tier: u32,
    /// The report written, relative to the campaign directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// Why there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One run's session file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended; `None` while it runs.
    pub ended_at: Option<String>,
    /// The runner's process id.
    pub pid: u32,
    /// The checklist, relative to the campaign directory.
    pub checklist: String,
    /// `finite` or `infinite`.
    pub mode: String,
    /// The agent program.
    pub runtime: String,
    /// Rows per round.
    pub batch_size: usize,
    /// One agent's time limit.
    pub timeout_seconds: f64,
    /// How it ended (`running` until then).
    pub outcome: Outcome,
    /// Rounds of items run.
    pub rounds: u64,
    /// Synthesis rounds run.
    pub synthesis_rounds: u64,
    /// Rows added by synthesis.
    pub rows_added: u64,
    /// Every item attempt, in the order they ended.
    pub items: Vec<ItemRecord>,
    /// Every tier report attempt.
    pub tier_reports: Vec<TierReportRecord>,
    /// What its agents reported spending, against its budget.
    #[serde(default)]
    pub spend: crate::decide::spend::Spend,
}

impl Session {
    /// How many items failed in this run.
    pub fn failed(&self) -> usize {
        self.count(ItemStatus::Failed)
    }

    /// How many items ended with `status`.
    pub fn count(&self, status: ItemStatus) -> usize {
        self.items.iter().filter(|i| i.status == status).count()
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::failed(format!(
                "cannot read {}: {e}",
                path.display()
            )));
        }
    };
    let de = &mut serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(de).map(Some).map_err(|e| {
        let at = e.path().to_string();
        Error::failed(format!(
            "{} does not parse{}: {}",
            path.display(),
            if at == "." {
                String::new()
            } else {
                format!(" at {at}")
            },
            e.inner()
        ))
    })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::failed(format!("cannot encode {}: {e}", path.display())))?;
    text.push('\n');
    atomic_write(path, text.as_bytes())
        .map_err(|e| Error::failed(format!("cannot write {}: {e}", path.display())))
}

/// The active run recorded under `root`, if any.
///
/// # Errors
/// `Failed` when the file cannot be read or does not parse (it names the
/// field).
pub fn read_active(root: &Path) -> Result<Option<ActiveRun>, Error> {
    read_json(&active_path(root))
}

/// Claims the active-run file: `Ok(false)` when another run holds it.
///
/// # Errors
/// `Failed` when the state directory cannot be written.
pub fn claim_active(root: &Path, run: &ActiveRun) -> Result<bool, Error> {
    let dir = make_state_dir(root)?;
    let path = active_path(root);
    // Write the content under a private name, then hard-link it into place:
    // the link fails when an active file exists, so the claim is exclusive
    // and a reader never sees the file without its content.
    let temp = dir.join(format!(".active-run.{}.json", std::process::id()));
    write_json(&temp, run)?;
    let linked = std::fs::hard_link(&temp, &path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::failed(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

/// Replaces the active-run file.
///
/// # Errors
/// `Failed` when it cannot be written.
pub fn write_active(root: &Path, run: &ActiveRun) -> Result<(), Error> {
    write_json(&active_path(root), run)
}

/// Removes the active-run file (gone already is fine).
///
/// # Errors
/// `Failed` when it exists and cannot be removed.
pub fn clear_active(root: &Path) -> Result<(), Error> {
    let path = active_path(root);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::failed(format!(
            "cannot remove {}: {e}",
            path.display()
        ))),
    }
}

/// Reads one session file.
///
/// # Errors
/// `Failed` when it cannot be read or does not parse.
pub fn read_session(path: &Path) -> Result<Session, Error> {
    read_json(path)?.ok_or_else(|| Error::failed(format!("{} is gone", path.display())))
}

/// Replaces one session file.
///
/// # Errors
/// `Failed` when it cannot be written.
pub fn write_session(path: &Path, session: &Session) -> Result<(), Error> {
    write_json(path, session)
}

/// The lock a runner holds on its campaign for as long as it runs
/// (`.afk/lock`, an advisory `flock`): two runners, or two `--resume`s, never
/// work one campaign at once, and the kernel releases it when the runner
/// dies, even by SIGKILL.
#[derive(Debug)]
pub struct CampaignLock {
    _file: std::fs::File,
}

/// The state directory, created if missing; a `.afk` that is a link out
/// of the campaign is refused before anything is created where it points.
fn make_state_dir(root: &Path) -> Result<PathBuf, Error> {
    crate::files::create_dir_inside(root, &state_dir(root)).map_err(|e| {
        Error::input(format!(
            "the state directory {}: {e}",
            state_dir(root).display()
        ))
    })
}

/// Opens (creating it if missing) a lock file that must be afk's own: a
/// symbolic link there, wherever it points, is refused before it is
/// followed, so locking never creates or changes a file elsewhere.
pub(crate) fn open_lock_file(path: &Path) -> Result<std::fs::File, Error> {
    crate::files::refuse_link(path).map_err(|e| Error::input(e.to_string()))?;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::failed(format!("cannot open {}: {e}", path.display())))
}

fn lock_file(root: &Path) -> Result<std::fs::File, Error> {
    let dir = make_state_dir(root)?;
    open_lock_file(&dir.join("lock"))
}

/// Takes the campaign's lock, or `Ok(None)` when a live runner holds it.
///
/// # Errors
/// `Input` when `.afk` leads out of the campaign or `.afk/lock` is a link
/// (refused before anything is created); `Failed` when the lock file cannot
/// be opened or locked.
pub fn lock_campaign(root: &Path) -> Result<Option<CampaignLock>, Error> {
    let file = lock_file(root)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(CampaignLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::failed(format!(
            "cannot lock {}: {e}",
            state_dir(root).join("lock").display()
        ))),
    }
}

/// Whether process `pid` holds the campaign's lock now: `/proc/locks` lists
/// a lock of that process on this very lock file (same device and inode).
/// A forged active-run file can name any process, even with its real start
/// time: only the runner that holds this lock may be signalled.
pub fn holds_campaign_lock(root: &Path, pid: u32) -> bool {
    afk_process::locks::holds(&state_dir(root).join("lock"), pid)
}

/// Whether a live runner works this campaign now (it holds the lock).
pub fn runner_alive(root: &Path) -> bool {
    matches!(lock_campaign(root), Ok(None))
}

/// The canonical path of a campaign directory, as the active-run file
/// records it.
pub fn campaign_id(root: &Path) -> String {
    std::fs::canonicalize(root)
        .unwrap_or_else(|_| root.to_owned())
        .display()
        .to_string()
}

/// Every session file under `root`, oldest first.
pub fn session_files(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(state_dir(root))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("session-") && n.ends_with(".json"))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A temporary directory, removed when dropped.
    fn scratch(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("afk-{name}-"))
            .tempdir()
            .unwrap()
    }

    fn sample() -> ActiveRun {
        ActiveRun {
            pid: 42,
            started_at: "2026-11-21T10:00:00Z".into(),
            session: ".afk/session-1.json".into(),
            checklist: "SUT-CHECKLIST.md".into(),
            in_flight: vec![InFlight {
                id: "CORE-001".into(),
                pgid: Some(77),
                pgid_started: Some(1234),
                started_at: "2026-11-21T10:00:01Z".into(),
                log: "runs/x/results/agent-1.log".into(),
            }],
            campaign: "/tmp/c".into(),
            runner_started: Some(99),
        }
    }

    #[test]
    fn the_active_run_round_trips_and_is_claimed_once() {
        let root_tmp = scratch("claim");
        let root = root_tmp.path();
        assert_eq!(read_active(root), Ok(None));
        assert_eq!(claim_active(root, &sample()), Ok(true));
        assert_eq!(claim_active(root, &sample()), Ok(false));
        assert_eq!(read_active(root), Ok(Some(sample())));
        clear_active(root).unwrap();
        assert_eq!(read_active(root), Ok(None));
    }

    #[test]
    fn one_runner_holds_a_campaign_and_its_death_frees_it() {
        let root_tmp = scratch("lock");
        let root = root_tmp.path();
        let held = lock_campaign(root).unwrap();
        assert!(held.is_some());
        assert!(lock_campaign(root).unwrap().is_none(), "a second runner");
        assert!(runner_alive(root));
        drop(held);
        assert!(!runner_alive(root), "released with its holder");
    }

    #[test]
    fn a_bad_active_file_names_the_field_and_is_not_overwritten() {
        let root_tmp = scratch("bad");
        let root = root_tmp.path();
        std::fs::create_dir_all(state_dir(root)).unwrap();
        for (text, want) in [
            (r#"{"pid": "forty-two"}"#, "at pid: invalid type"),
            (
                r#"{"pid": 1, "started_at": "t", "session": "s", "checklist": "c", "in_flight": [{"id": "A", "pgid": null, "started_at": "t", "log": 3}]}"#,
                "at in_flight[0].log",
            ),
            ("{", "does not parse"),
        ] {
            std::fs::write(active_path(root), text).unwrap();
            let err = read_active(root).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
            assert_eq!(std::fs::read_to_string(active_path(root)).unwrap(), text);
        }
    }
}
