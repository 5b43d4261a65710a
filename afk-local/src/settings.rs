//! The local executor's settings, as the operator writes them, checked
//! before anything runs: every error names its setting (and never shows a
//! credential), and `afk loop`'s one-per-directory lock.

use std::path::{Path, PathBuf};
use std::time::Duration;

use afk_process::runtime::Runtime;

use crate::os::{GitToken, OsHost, OsSettings, inherited_env};
use crate::{LocalExecutor, LocalSettings};

/// What the operator set (each field's setting is named in its error).
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// `AFK_LOCAL_AGENT`: `claude`, `opencode` or a command line; default
    /// `claude`.
    pub agent: Option<String>,
    /// `AFK_LOCAL_DIR`, resolved ([`default_dir`] when unset).
    pub dir: PathBuf,
    /// `AFK_LOCAL_MAX_AGENTS`: 1 to 64, default 2.
    pub max_agents: Option<String>,
    /// `AFK_GIT_URL`: the clone URLs' base; default the tracker's web
    /// address.
    pub git_url: Option<String>,
    /// `AFK_GITHUB_API_URL`.
    pub github_api_url: String,
    /// `AFK_GITHUB_WEB_URL`.
    pub github_web_url: Option<String>,
    /// `AFK_GITHUB_OWNER`.
    pub default_owner: Option<String>,
    /// The tracker's token, for git.
    pub token: GitToken,
}

/// `$XDG_STATE_HOME/afk`, else `$HOME/.local/state/afk`.
pub fn default_dir(env: impl Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
    var("XDG_STATE_HOME")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|h| Path::new(&h).join(".local/state")))
        .map(|base| base.join("afk"))
}

impl LocalConfig {
    /// The executor, checked: its agent program exists (`env` reads
    /// `PATH`, `CLAUDE_BIN`, `OPENCODE_BIN`), its directory can be written,
    /// `afk-reaper` is installed.
    ///
    /// # Errors
    /// One line naming the setting that cannot be used.
    pub fn build(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<LocalExecutor<OsHost>, String> {
        let agent = self
            .agent
            .clone()
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| "claude".into());
        let runtime = Runtime::from_agent_setting("AFK_LOCAL_AGENT", &agent, None, &env)
            .map_err(|e| e.to_string())?;
        runtime
            .resolve(env("PATH").as_deref())
            .map_err(|e| format!("AFK_LOCAL_AGENT={agent:?}: {e}"))?;
        let max_agents = match self.max_agents.as_deref().map(str::trim) {
            None | Some("") => 2,
            Some(text) => text
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=64).contains(n))
                .ok_or_else(|| {
                    format!("AFK_LOCAL_MAX_AGENTS={text:?} is not a whole number from 1 to 64")
                })?,
        };
        let git_base = match self.git_url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => check_git_url(url)?,
            _ => default_git_base(&self.github_api_url, self.github_web_url.as_deref()),
        };
        let reaper = afk_process::reaper_path().ok_or(
            "afk-reaper is not installed beside afk (it supervises every local agent): install it there or set AFK_REAPER_BIN",
        )?;
        let host = OsHost::new(OsSettings {
            dir: self.dir.clone(),
            reaper,
            token: self.token.clone(),
            git_base: git_base.clone(),
            env: inherited_env(),
            git_timeout: Duration::from_secs(600),
        })
        .map_err(|e| format!("AFK_LOCAL_DIR={}: {e}", self.dir.display()))?;
        Ok(LocalExecutor::new(
            host,
            LocalSettings {
                runtime,
                max_agents,
                git_base,
                default_owner: self.default_owner.clone(),
            },
        ))
    }
}

/// `AFK_GIT_URL`, checked: an `https://`, `http://`, `ssh://` or `file://`
/// URL without credentials, query, fragment or blanks.
///
/// # Errors
/// What is wrong with it (never the URL itself: it may hold a password).
pub fn check_git_url(url: &str) -> Result<String, String> {
    let bad = |why: &str| format!("AFK_GIT_URL: {why}");
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad("expected a URL such as https://github.com or file:///srv/git"))?;
    if !matches!(scheme, "https" | "http" | "ssh" | "file") {
        return Err(bad("the scheme must be https, http, ssh or file"));
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        // Never a credential in a URL: git would write it to .git/config.
        return Err(bad(
            "it must not hold a user or a password (the token reaches git through a credential helper)",
        ));
    }
    if url.contains(['?', '#']) || url.chars().any(char::is_whitespace) {
        return Err(bad("it must not hold a query, a fragment or blanks"));
    }
    if scheme != "file" && authority.is_empty() {
        return Err(bad("it names no host"));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// The clone URLs' base when `AFK_GIT_URL` is not set: GitHub's web
/// address (`AFK_GITHUB_WEB_URL`; for api.github.com, https://github.com;
/// else the API's scheme and host, as GitHub Enterprise Server serves both).
pub fn default_git_base(api_url: &str, web_url: Option<&str>) -> String {
    if let Some(web) = web_url.map(str::trim).filter(|w| !w.is_empty()) {
        return web.trim_end_matches('/').to_owned();
    }
    let (scheme, rest) = api_url.split_once("://").unwrap_or(("https", api_url));
    match rest.split('/').next().unwrap_or("") {
        "api.github.com" => "https://github.com".to_owned(),
        host => format!("{scheme}://{host}"),
    }
}

/// Takes `<dir>/loop.lock` for the returned file's life (one `afk loop`
/// per directory), creating the directory; the error names who holds it.
///
/// # Errors
/// Another process holds it, or the directory cannot be used.
pub fn lock_loop(dir: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let at = || format!("AFK_LOCAL_DIR={}", dir.display());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: cannot create it: {e}", at()))?;
    let path = dir.join("loop.lock");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: cannot open {}: {e}", at(), path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = afk_process::locks::holders(&path)
                .first()
                .map(|pid| format!(" (pid {pid})"))
                .unwrap_or_default();
            Err(format!(
                "another afk loop runs on {}{holder}: one loop per directory (stop it first, or give this one another AFK_LOCAL_DIR)",
                at()
            ))
        }
        Err(std::fs::TryLockError::Error(e)) => {
            Err(format!("{}: cannot lock {}: {e}", at(), path.display()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_urls_are_checked_and_never_echoed() {
        assert_eq!(
            check_git_url("https://ghe.example/"),
            Ok("https://ghe.example".into())
        );
        assert_eq!(
            check_git_url("file:///srv/git"),
            Ok("file:///srv/git".into())
        );
        for (bad, why) in [
            (
                "https://x-access-token:hunter2@github.com",
                "must not hold a user",
            ),
            ("github.com", "expected a URL"),
            ("ftp://github.com", "scheme"),
            ("https://github.com/?a=1", "query"),
            ("https:///path", "names no host"),
        ] {
            let err = check_git_url(bad).unwrap_err();
            assert!(
                err.starts_with("AFK_GIT_URL: ") && err.contains(why),
                "{bad}: {err}"
            );
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn the_default_base_is_github_s_web_address() {
        assert_eq!(
            default_git_base("https://api.github.com", None),
            "https://github.com"
        );
        assert_eq!(
            default_git_base("https://ghe.example/api/v3", None),
            "https://ghe.example"
        );
        assert_eq!(
            default_git_base("https://api.github.com", Some("https://mirror.example/")),
            "https://mirror.example"
        );
    }

    #[test]
    fn the_default_dir_follows_xdg_then_home() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            default_dir(env(&[("XDG_STATE_HOME", "/s"), ("HOME", "/h")])),
            Some(PathBuf::from("/s/afk"))
        );
        assert_eq!(
            default_dir(env(&[("HOME", "/h")])),
            Some(PathBuf::from("/h/.local/state/afk"))
        );
        assert_eq!(default_dir(env(&[])), None);
    }

    #[test]
    fn one_loop_per_directory() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_loop(dir.path()).unwrap();
        let err = lock_loop(dir.path()).unwrap_err();
        assert!(
            err.contains("another afk loop runs on AFK_LOCAL_DIR="),
            "{err}"
        );
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        drop(first);
        assert!(lock_loop(dir.path()).is_ok());
    }

    #[test]
    fn bad_settings_name_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let config = |agent: &str, max: Option<&str>| LocalConfig {
            agent: Some(agent.into()),
            dir: dir.path().join("local"),
            max_agents: max.map(str::to_owned),
            git_url: None,
            github_api_url: "https://api.github.com".into(),
            github_web_url: None,
            default_owner: Some("acme".into()),
            token: GitToken::None,
        };
        let path = |k: &str| (k == "PATH").then(|| "/usr/bin:/bin".to_owned());
        let err = config("/nonexistent/agent --x", None)
            .build(path)
            .unwrap_err();
        assert!(
            err.starts_with("AFK_LOCAL_AGENT=") && err.contains("cannot find"),
            "{err}"
        );
        let err = config("claude", None).build(|_| None).unwrap_err();
        assert!(err.contains("CLAUDE_BIN"), "{err}");
        for max in ["0", "65", "two", "-1"] {
            let err = config("sh", Some(max)).build(path).unwrap_err();
            assert!(err.starts_with("AFK_LOCAL_MAX_AGENTS="), "{max}: {err}");
        }
    }
}
