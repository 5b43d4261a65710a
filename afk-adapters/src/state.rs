//! What afk remembers between ticks (`AFK_STATE_FILE`): the repositories
//! where it has runs in flight, so a repository dropped from the allowlist
//! keeps its runs watched to their end (`afk_core::Config::winding_down`),
//! and the loop's health (`afk_core::health`: which causes are failing,
//! which have rung), so a cause rings once, not at every tick.
//! The rules for what is remembered are `afk_loop::remembered_repos` and
//! `afk_core::health::health_decide`; this module only reads and writes the
//! file: JSON, replaced whole by a rename.

use std::path::Path;

use afk_core::Timestamp;
use afk_core::health::{CauseMemory, HealthCause, HealthMemory};
use serde::{Deserialize, Serialize};

/// How long a tick waits for another one updating the file.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// At most this much of a failure's text is kept.
const DETAIL_MAX: usize = 500;

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct State {
    /// Repositories with runs in flight, as the allowlist named them.
    repos: Vec<String>,
    /// The loop's health, one entry per cause seen failing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    health: Vec<CauseState>,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct CauseState {
    cause: String,
    failing_ticks: u32,
    since: Option<String>,
    detail: String,
    rung: bool,
    last_rung: Option<String>,
}

/// What the file remembers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Remembered {
    /// Repositories with runs in flight.
    pub repos: Vec<String>,
    /// The loop's health.
    pub health: HealthMemory,
}

impl From<State> for Remembered {
    fn from(s: State) -> Self {
        let time = |t: Option<String>| t.and_then(|t| Timestamp::parse_rfc3339(&t).ok());
        Remembered {
            repos: s
                .repos
                .into_iter()
                .filter(|r| !r.trim().is_empty() && r.len() <= 200)
                .collect(),
            health: HealthMemory {
                causes: s
                    .health
                    .into_iter()
                    .filter_map(|c| {
                        Some(CauseMemory {
                            cause: HealthCause::parse(&c.cause)?,
                            failing_ticks: c.failing_ticks,
                            since: time(c.since),
                            detail: c.detail.chars().take(DETAIL_MAX).collect(),
                            rung: c.rung,
                            last_rung: time(c.last_rung),
                        })
                    })
                    .collect(),
            },
        }
    }
}

impl From<&Remembered> for State {
    fn from(r: &Remembered) -> Self {
        State {
            repos: r.repos.clone(),
            health: r
                .health
                .causes
                .iter()
                .map(|c| CauseState {
                    cause: c.cause.as_str().to_owned(),
                    failing_ticks: c.failing_ticks,
                    since: c.since.map(|t| t.to_string()),
                    detail: c.detail.chars().take(DETAIL_MAX).collect(),
                    rung: c.rung,
                    last_rung: c.last_rung.map(|t| t.to_string()),
                })
                .collect(),
        }
    }
}

/// The repositories the file remembers; none when it does not exist.
pub fn read(path: &Path) -> Vec<String> {
    read_all(path).repos
}

/// Everything the file remembers; nothing when it does not exist. One
/// that does not read is logged (what it held is lost: the runs it named
/// are watched again once their repository is enrolled, a failing cause
/// rings again).
pub fn read_all(path: &Path) -> Remembered {
    let bytes = match afk_process::files::read_small(path, 1 << 20) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Remembered::default(),
        Err(e) => {
            tracing::warn!(action = "config", "AFK_STATE_FILE {}: {e}", path.display());
            return Remembered::default();
        }
    };
    match serde_json::from_slice::<State>(&bytes) {
        Ok(s) => s.into(),
        Err(e) => {
            tracing::warn!(
                action = "config",
                "AFK_STATE_FILE {} does not read ({e}); starting from the allowlist alone",
                path.display()
            );
            Remembered::default()
        }
    }
}

/// Replaces the file with `remembered`, whole (a new file beside it,
/// renamed over it).
///
/// # Errors
/// The file cannot be written (named).
pub fn write(path: &Path, remembered: &Remembered) -> Result<(), String> {
    let text = serde_json::to_vec_pretty(&State::from(remembered)).map_err(|e| e.to_string())?;
    afk_process::files::replace_whole(path, &text, 0o644)
        .map_err(|e| format!("AFK_STATE_FILE {}: {e}", path.display()))
}

/// Changes what the file remembers with `f`, under a lock beside it
/// (`<file>.lock`), so the poller and the watcher, ticking at once, never
/// lose each other's update; the file is written only when `f` changed
/// something. A lock that cannot be had within 20 seconds is an error (the
/// next tick tries again; what it would add is kept by the next poll or
/// watch).
///
/// # Errors
/// The lock or the file cannot be had (named).
pub async fn update<T>(path: &Path, f: impl FnOnce(&mut Remembered) -> T) -> Result<T, String> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let named = |e: &dyn std::fmt::Display| format!("AFK_STATE_FILE {}: {e}", path.display());
    let lock = afk_process::locks::hold(std::path::Path::new(&lock_path), LOCK_WAIT)
        .await
        .map_err(|e| named(&e))?;
    let before = read_all(path);
    let mut after = before.clone();
    let answer = f(&mut after);
    if after != before {
        write(path, &after)?;
    }
    drop(lock);
    Ok(answer)
}

/// `config` with the repositories the file remembers and the allowlist
/// does not name as winding down.
pub fn with_state(mut config: afk_core::Config, path: Option<&str>) -> afk_core::Config {
    let Some(path) = path.map(str::trim).filter(|p| !p.is_empty()) else {
        return config;
    };
    config.winding_down = read(Path::new(path))
        .into_iter()
        .filter(|r| !config.allows(r))
        .collect();
    config
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_state_round_trips_and_a_torn_one_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        assert!(read(&path).is_empty());
        let repos = |r: &[&str]| Remembered {
            repos: r.iter().map(|r| (*r).to_owned()).collect(),
            health: HealthMemory::default(),
        };
        write(&path, &repos(&["acme/infra", "web"])).unwrap();
        assert_eq!(read(&path), ["acme/infra", "web"]);
        std::fs::write(&path, b"{\"repos\": [\"a").unwrap();
        assert!(read(&path).is_empty());
        let config = afk_core::Config::from_pairs([("AFK_ALLOWLIST", "web")]).unwrap();
        write(&path, &repos(&["acme/infra", "web"])).unwrap();
        let config = with_state(config, path.to_str());
        assert_eq!(config.winding_down, ["acme/infra"]);
        assert_eq!(config.watched_repos(), ["web", "acme/infra"]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ticks_at_once_never_lose_each_others_update() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let adds: Vec<_> = (0..20)
            .map(|n| {
                let path = path.clone();
                tokio::spawn(async move {
                    update(&path, |state| state.repos.push(format!("r{n}"))).await
                })
            })
            .collect();
        for a in adds {
            a.await.unwrap().unwrap();
        }
        assert_eq!(read(&path).len(), 20);
    }

    #[test]
    fn the_health_round_trips_and_a_file_of_the_last_release_still_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        // What 0.1.0 wrote: repositories only.
        std::fs::write(&path, br#"{"repos": ["infra"]}"#).unwrap();
        assert_eq!(read_all(&path).repos, ["infra"]);
        let at = Timestamp::parse_rfc3339("2026-12-07T10:00:00Z").unwrap();
        let remembered = Remembered {
            repos: vec!["infra".into()],
            health: HealthMemory {
                causes: vec![CauseMemory {
                    cause: HealthCause::Executor,
                    failing_ticks: 3,
                    since: Some(at),
                    detail: "x".repeat(5000),
                    rung: true,
                    last_rung: Some(at),
                }],
            },
        };
        write(&path, &remembered).unwrap();
        let back = read_all(&path);
        assert_eq!(back.health.causes[0].detail.len(), DETAIL_MAX);
        assert_eq!(back.health.causes[0].last_rung, Some(at));
        assert_eq!(back.health.causes[0].failing_ticks, 3);
        // A cause this release does not know is dropped, not an error.
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"executor\"", "\"disk\"");
        std::fs::write(&path, text).unwrap();
        assert!(read_all(&path).health.causes.is_empty());
        assert_eq!(read_all(&path).repos, ["infra"]);
    }
}
