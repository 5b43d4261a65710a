//! What afk remembers between ticks (`AFK_STATE_FILE`): the repositories
//! where it has runs in flight, so a repository dropped from the allowlist
//! keeps its runs watched to their end (`afk_core::Config::winding_down`).
//! The rule for what is remembered is `afk_loop::remembered_repos`; this
//! module only reads and writes the file: JSON, replaced whole by a rename.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// How long a tick waits for another one updating the file.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Repositories with runs in flight, as the allowlist named them.
    repos: Vec<String>,
}

/// The repositories the file remembers; none when it does not exist. One
/// that does not read is logged (what it held is lost: the runs it named
/// are watched again once their repository is enrolled).
pub fn read(path: &Path) -> Vec<String> {
    let bytes = match afk_process::files::read_small(path, 1 << 20) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(action = "config", "AFK_STATE_FILE {}: {e}", path.display());
            return Vec::new();
        }
    };
    match serde_json::from_slice::<State>(&bytes) {
        Ok(s) => s
            .repos
            .into_iter()
            .filter(|r| !r.trim().is_empty() && r.len() <= 200)
            .collect(),
        Err(e) => {
            tracing::warn!(
                action = "config",
                "AFK_STATE_FILE {} does not read ({e}); starting from the allowlist alone",
                path.display()
            );
            Vec::new()
        }
    }
}

/// Replaces the file with `repos`, whole (a new file beside it, renamed
/// over it).
///
/// # Errors
/// The file cannot be written (named).
pub fn write(path: &Path, repos: &[String]) -> Result<(), String> {
    let text = serde_json::to_vec_pretty(&State {
        repos: repos.to_vec(),
    })
    .map_err(|e| e.to_string())?;
    afk_process::files::replace_whole(path, &text, 0o644)
        .map_err(|e| format!("AFK_STATE_FILE {}: {e}", path.display()))
}

/// Replaces what the file remembers with `f` of it, under a lock beside it
/// (`<file>.lock`), so the poller and the watcher, ticking at once, never
/// lose each other's update. A lock that cannot be had within 20 seconds
/// is an error (the next tick tries again; what it would add is kept by the
/// next poll or watch).
///
/// # Errors
/// The lock or the file cannot be had (named).
pub async fn update(path: &Path, f: impl FnOnce(&[String]) -> Vec<String>) -> Result<(), String> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let named = |e: &dyn std::fmt::Display| format!("AFK_STATE_FILE {}: {e}", path.display());
    let lock = afk_process::locks::hold(std::path::Path::new(&lock_path), LOCK_WAIT)
        .await
        .map_err(|e| named(&e))?;
    let before = read(path);
    let after = f(&before);
    if after != before {
        write(path, &after)?;
    }
    drop(lock);
    Ok(())
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
        write(&path, &["acme/infra".into(), "web".into()]).unwrap();
        assert_eq!(read(&path), ["acme/infra", "web"]);
        std::fs::write(&path, b"{\"repos\": [\"a").unwrap();
        assert!(read(&path).is_empty());
        let config = afk_core::Config::from_pairs([("AFK_ALLOWLIST", "web")]).unwrap();
        write(&path, &["acme/infra".into(), "web".into()]).unwrap();
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
                    update(&path, |before| {
                        let mut after = before.to_vec();
                        after.push(format!("r{n}"));
                        after
                    })
                    .await
                })
            })
            .collect();
        for a in adds {
            a.await.unwrap().unwrap();
        }
        assert_eq!(read(&path).len(), 20);
    }
}
