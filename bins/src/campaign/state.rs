//! The runner's state files under `.afk/`.
//!
//! - `.afk/active-run.json`: the run in progress (its pid, start, session
//!   file, and the items in flight with their agents' process groups). It is
//!   claimed with an exclusive create, so two runners never share a
//!   checklist, and removed when the run ends. One left behind by a run that
//!   died is *stale*: `afk run --resume` and `afk cancel` clean it up.
//! - `.afk/session-<timestamp>.json`: one per run, updated as items end;
//!   `afk history` reads them.
//!
//! Both are replaced atomically on every update.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

/// Where the state files live under a campaign directory.
pub fn state_dir(root: &Path) -> PathBuf {
    root.join(".afk")
}

/// The active-run file.
pub fn active_path(root: &Path) -> PathBuf {
    state_dir(root).join("active-run.json")
}

/// One item being worked on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// The item id.
    pub id: String,
    /// The agent's process group, once it started.
    pub pgid: Option<u32>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// Its log, relative to the campaign directory.
    pub log: String,
}

/// The content of `active-run.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl ActiveRun {
    /// As JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "pid": self.pid,
            "started_at": self.started_at,
            "session": self.session,
            "checklist": self.checklist,
            "in_flight": self.in_flight.iter().map(|f| json!({
                "id": f.id,
                "pgid": f.pgid,
                "started_at": f.started_at,
                "log": f.log,
            })).collect::<Vec<_>>(),
        })
    }

    /// From JSON; `None` names the first missing or mistyped field.
    pub fn from_json(value: &Value) -> Result<ActiveRun, String> {
        let text = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("field {k:?} is missing or not a string"))
        };
        let pid = value
            .get("pid")
            .and_then(Value::as_u64)
            .and_then(|p| u32::try_from(p).ok())
            .ok_or("field \"pid\" is missing or not a process id")?;
        let mut in_flight = Vec::new();
        for f in value
            .get("in_flight")
            .and_then(Value::as_array)
            .ok_or("field \"in_flight\" is missing or not an array")?
        {
            in_flight.push(InFlight {
                id: text(f, "id")?,
                pgid: f
                    .get("pgid")
                    .and_then(Value::as_u64)
                    .and_then(|p| u32::try_from(p).ok()),
                started_at: text(f, "started_at")?,
                log: text(f, "log")?,
            });
        }
        Ok(ActiveRun {
            pid,
            started_at: text(value, "started_at")?,
            session: text(value, "session")?,
            checklist: text(value, "checklist")?,
            in_flight,
        })
    }
}

/// The active run recorded under `root`, if any.
pub fn read_active(root: &Path) -> Result<Option<ActiveRun>, String> {
    let path = active_path(root);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let value: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} does not parse: {e}", path.display()))?;
    ActiveRun::from_json(&value)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Claims the active-run file with an exclusive create: `Ok(false)` when
/// another run holds it.
pub fn claim_active(root: &Path, run: &ActiveRun) -> Result<bool, String> {
    let dir = state_dir(root);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = active_path(root);
    let text = format!("{:#}\n", run.to_json());
    // Write the content under a private name, then hard-link it into place:
    // the link fails when an active file exists, so the claim is exclusive
    // and a reader never sees the file without its content.
    let temp = dir.join(format!(".active-run.{}.json", std::process::id()));
    std::fs::write(&temp, &text).map_err(|e| format!("cannot write {}: {e}", temp.display()))?;
    let linked = std::fs::hard_link(&temp, &path);
    let _ = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

/// Replaces the active-run file.
pub fn write_active(root: &Path, run: &ActiveRun) -> Result<(), String> {
    let path = active_path(root);
    afk_adapters::files::atomic_write(&path, format!("{:#}\n", run.to_json()).as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Removes the active-run file (gone already is fine).
pub fn clear_active(root: &Path) -> Result<(), String> {
    let path = active_path(root);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
    }
}

/// Whether process `pid` is alive and is an afk process (a recycled pid that
/// now belongs to something else does not count).
pub fn runner_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let running = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'));
    let afk = std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmd| {
        cmd.split(|b| *b == 0)
            .next()
            .and_then(|arg0| std::str::from_utf8(arg0).ok())
            .is_some_and(|arg0| {
                Path::new(arg0)
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("afk"))
            })
    });
    running && afk
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

    #[test]
    fn active_run_round_trips_and_names_a_bad_field() {
        let run = ActiveRun {
            pid: 42,
            started_at: "2026-11-21T10:00:00Z".into(),
            session: ".afk/session-1.json".into(),
            checklist: "SUT-CHECKLIST.md".into(),
            in_flight: vec![InFlight {
                id: "CORE-001".into(),
                pgid: Some(77),
                started_at: "2026-11-21T10:00:01Z".into(),
                log: "runs/x/results/agent-1.log".into(),
            }],
        };
        assert_eq!(ActiveRun::from_json(&run.to_json()), Ok(run.clone()));
        let mut bad = run.to_json();
        bad["pid"] = json!("forty-two");
        assert_eq!(
            ActiveRun::from_json(&bad),
            Err("field \"pid\" is missing or not a process id".into())
        );
        let mut bad = run.to_json();
        bad["in_flight"][0]["log"] = json!(3);
        assert_eq!(
            ActiveRun::from_json(&bad),
            Err("field \"log\" is missing or not a string".into())
        );
    }
}
