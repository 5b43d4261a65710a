//! The machine itself: run records and turn files under `AFK_LOCAL_DIR`,
//! workspaces cloned with the real `git`, turns started under `afk-reaper`,
//! liveness and stops read from `/proc`.
//!
//! This file is long because it is the executor's one contact with the
//! machine: files written whole, git with its credential, the supervisor
//! started detached, and its lock and end read back.
//!
//! Layout (directories `0700`, files `0600`):
//!
//! ```text
//! <dir>/runs/<thread>/record.json      the run record (written atomically)
//! <dir>/runs/<thread>/turn-<n>.prompt  the turn's prompt (its stdin)
//! <dir>/runs/<thread>/turn-<n>.out     its standard output
//! <dir>/runs/<thread>/turn-<n>.err     its standard error
//! <dir>/runs/<thread>/turn-<n>.lock    held by its supervisor while it lives
//! <dir>/runs/<thread>/turn-<n>.exit    how it ended, written by its supervisor
//! <dir>/runs/<thread>/git-token        the agent's push token (a GitHub App's)
//! <dir>/workspaces/<owner>__<name>/    the repository's workspace
//! <dir>/workspaces/<owner>__<name>.lock held while it is prepared
//! <dir>/workspaces/<owner>__<name>.token afk's fetch token (a GitHub App's)
//! ```
//!
//! The git credential never reaches a command line, a remote URL or a
//! `.git/config`: git and the agent get a credential helper through the
//! environment (`GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`,
//! scoped to the clone URLs' base), which reads the token from
//! `AFK_GIT_TOKEN_FILE` (re-read on every use) or `AFK_GIT_TOKEN`. With a
//! GitHub App ([`GitToken::PerRepo`]) each clone or fetch and each turn gets
//! a token minted for its one repository, in a file of its own (`0600`):
//! `workspaces/<owner>__<name>.token` for afk's git, `runs/<thread>/git-token`
//! for the agent.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use afk_process::reaper::Ended;
use afk_process::{locks, said};
use async_trait::async_trait;

use crate::host::{BadRecord, Host, Launch, Observed, Started, Workspace};
use crate::record::{Supervisor, ThreadRecord, TurnEnd};

/// Where the git credential comes from.
#[derive(Clone)]
pub enum GitToken {
    /// None (a `file://` base, or a machine whose git is set up already).
    None,
    /// A value (from `AFK_GITHUB_TOKEN`).
    Value(String),
    /// A file, re-read on every use (`AFK_GITHUB_TOKEN_FILE`).
    File(PathBuf),
    /// A token minted for each repository when it is needed (a GitHub
    /// App's installation token that can push to that repository only).
    PerRepo(std::sync::Arc<dyn RepoCredentials>),
}

/// Mints a credential that reaches one repository only.
#[async_trait]
pub trait RepoCredentials: Send + Sync {
    /// A token for `repo` (`owner/name`).
    ///
    /// # Errors
    /// Why none could be minted (never the credential).
    async fn token_for(&self, repo: &str) -> Result<String, String>;
}

/// The repository (`owner/name`) of a workspace directory named
/// `owner__name` (an owner never holds `_`).
fn repo_of_workspace(dir: &Path) -> Option<String> {
    let key = dir.file_name()?.to_str()?;
    let (owner, name) = key.split_once("__")?;
    Some(format!("{owner}/{name}"))
}

impl std::fmt::Debug for GitToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GitToken::None => f.write_str("GitToken(none)"),
            GitToken::Value(_) => f.write_str("GitToken(value, redacted)"),
            GitToken::File(p) => write!(f, "GitToken(file {})", p.display()),
            GitToken::PerRepo(_) => f.write_str("GitToken(minted per repository)"),
        }
    }
}

/// The OS host's settings.
#[derive(Debug, Clone)]
pub struct OsSettings {
    /// `AFK_LOCAL_DIR`.
    pub dir: PathBuf,
    /// The `afk-reaper` program.
    pub reaper: PathBuf,
    /// The git credential.
    pub token: GitToken,
    /// The base of clone URLs (the credential is offered only there).
    pub git_base: String,
    /// The environment agents and git start with (afk's own settings and
    /// secrets left out); the host adds the turn's and the credential's.
    pub env: Vec<(String, String)>,
    /// How long a clone or fetch may take.
    pub git_timeout: Duration,
}

/// The machine.
#[derive(Debug)]
pub struct OsHost {
    settings: OsSettings,
}

/// At most this much of a turn's standard output is read back (its end:
/// claude's result is its last message).
const OUT_TAIL: u64 = 4 << 20;
/// At most this much of its standard error.
const ERR_TAIL: u64 = 256 << 10;
/// How long a started supervisor may take to take its lock.
const START_WAIT: Duration = Duration::from_secs(10);
/// How long a stopped supervisor may take to kill its tree and go.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// The environment every agent and git command gets from afk's own: all
/// of it but afk's settings and secrets (`AFK_*`, which hold the tracker's
/// token, the doorbells' webhooks and topics).
pub fn inherited_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| !k.starts_with("AFK_"))
        .collect()
}

impl OsHost {
    /// The host over `settings.dir`, which it creates (`0700`) if needed.
    ///
    /// # Errors
    /// The directory cannot be created or written (named in the message).
    pub fn new(settings: OsSettings) -> Result<OsHost, String> {
        let host = OsHost { settings };
        for sub in ["runs", "workspaces"] {
            let dir = host.settings.dir.join(sub);
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        // Writable, really (a read-only mount passes the create above when
        // the directories exist).
        let probe = host.settings.dir.join("runs").join(".probe");
        std::fs::write(&probe, b"")
            .and_then(|()| std::fs::remove_file(&probe))
            .map_err(|e| format!("cannot write in {}: {e}", host.settings.dir.display()))?;
        Ok(host)
    }

    fn run_dir_path(&self, thread: &str) -> PathBuf {
        self.settings.dir.join("runs").join(thread)
    }

    fn turn_file(&self, thread: &str, step: u32, ext: &str) -> PathBuf {
        self.run_dir_path(thread).join(format!("turn-{step}.{ext}"))
    }

    /// The environment of git and of the agent: the inherited one, no
    /// terminal prompts, and the credential helper with its token source
    /// (the token itself only in `AFK_GIT_TOKEN`, when it is not a file).
    pub fn env(&self) -> Vec<(String, String)> {
        self.env_with(None)
    }

    /// [`OsHost::env`], with `minted` as the token file when the token is
    /// minted per repository.
    fn env_with(&self, minted: Option<&Path>) -> Vec<(String, String)> {
        let mut env = self.settings.env.clone();
        env.retain(|(k, _)| {
            !k.starts_with("GIT_CONFIG_") && k != "GIT_ASKPASS" && k != "GIT_TERMINAL_PROMPT"
        });
        env.push(("GIT_TERMINAL_PROMPT".into(), "0".into()));
        let scope = format!(
            "credential.{}.helper",
            self.settings.git_base.trim_end_matches('/')
        );
        let (count, source) = match &self.settings.token {
            GitToken::None => (0, None),
            GitToken::Value(v) => (2, Some(("AFK_GIT_TOKEN", v.clone()))),
            GitToken::File(p) => (2, Some(("AFK_GIT_TOKEN_FILE", p.display().to_string()))),
            GitToken::PerRepo(_) => match minted {
                Some(p) => (2, Some(("AFK_GIT_TOKEN_FILE", p.display().to_string()))),
                None => (0, None),
            },
        };
        env.push(("GIT_CONFIG_COUNT".into(), count.to_string()));
        if let Some((key, value)) = source {
            // The empty value first drops helpers configured elsewhere for
            // this host; then ours, which prints the token git asks for.
            env.push(("GIT_CONFIG_KEY_0".into(), scope.clone()));
            env.push(("GIT_CONFIG_VALUE_0".into(), String::new()));
            env.push(("GIT_CONFIG_KEY_1".into(), scope));
            env.push(("GIT_CONFIG_VALUE_1".into(), CREDENTIAL_HELPER.into()));
            env.push((key.into(), value));
        }
        env
    }

    /// The environment for work on the repository of `workspace`: with a
    /// token minted per repository, one is minted for it now and written to
    /// `file` (`0600`, whole or not at all).
    async fn repo_env(
        &self,
        workspace: &Path,
        file: &Path,
    ) -> Result<Vec<(String, String)>, String> {
        let GitToken::PerRepo(mint) = &self.settings.token else {
            return Ok(self.env());
        };
        let repo = repo_of_workspace(workspace)
            .ok_or_else(|| format!("{} names no repository", workspace.display()))?;
        let token = mint.token_for(&repo).await?;
        write_atomically(file, token.as_bytes())
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        Ok(self.env_with(Some(file)))
    }

    /// Runs git with `env`, in `dir`, with a deadline.
    async fn git(
        &self,
        env: &[(String, String)],
        dir: &Path,
        args: &[&str],
    ) -> Result<String, String> {
        let mut cmd = tokio::process::Command::new("git");
        cmd.args(args)
            .current_dir(dir)
            .env_clear()
            .envs(env.iter().cloned())
            .env("LC_ALL", "C")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let child = cmd
            .spawn()
            .map_err(|e| format!("cannot run git: {e} (is git installed?)"))?;
        let out = tokio::time::timeout(self.settings.git_timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                format!(
                    "git {} took longer than {} s",
                    args.first().copied().unwrap_or(""),
                    self.settings.git_timeout.as_secs()
                )
            })?
            .map_err(|e| format!("git {}: {e}", args.first().copied().unwrap_or("")))?;
        if out.status.success() {
            return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message");
        Err(format!(
            "git {} failed: {}",
            args.first().copied().unwrap_or(""),
            afk_core::prompt::one_line(why, 300)
        ))
    }
}

/// The credential helper git runs (`!` runs it through git's shell); it
/// answers `get` with the token from the file or the variable, nothing else.
const CREDENTIAL_HELPER: &str = r#"!f() { test "$1" = get || exit 0; echo username=x-access-token; if test -n "$AFK_GIT_TOKEN_FILE"; then printf 'password=%s\n' "$(cat "$AFK_GIT_TOKEN_FILE")"; else printf 'password=%s\n' "$AFK_GIT_TOKEN"; fi; }; f"#;

/// Writes `bytes` to `path` whole or not at all (`0600`).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    afk_process::files::replace_whole(path, bytes, 0o600)
}

/// The last `max` bytes of a file, as text ("" when it is missing).
fn tail(path: &Path, max: u64) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > max {
        let _ = f.seek(SeekFrom::Start(len - max));
    }
    let mut bytes = Vec::new();
    let _ = f.take(max).read_to_end(&mut bytes);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn read_record(path: &Path) -> std::io::Result<Option<Result<ThreadRecord, BadRecord>>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(ThreadRecord::parse(&text).map_err(|why| BadRecord {
            path: path.display().to_string(),
            why,
        }))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Ok(Some(Err(BadRecord {
            path: path.display().to_string(),
            why: "it is not UTF-8".into(),
        }))),
        Err(e) => Err(e),
    }
}

/// The supervisor holding `lock` now, with its start time.
fn holder(lock: &Path) -> Option<Supervisor> {
    locks::holders(lock)
        .into_iter()
        .find_map(|pid| afk_process::start_time(pid).map(|start| Supervisor { pid, start }))
}

/// Holds `path`'s lock for the guard's life, waiting up to `wait` for it.
async fn lock_file(path: &Path, wait: Duration) -> std::io::Result<File> {
    locks::hold(path, wait).await
}

#[async_trait]
impl Host for OsHost {
    async fn records(&self) -> std::io::Result<Vec<(String, Result<ThreadRecord, BadRecord>)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(self.settings.dir.join("runs"))? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if uuid::Uuid::parse_str(&name).is_err() {
                continue;
            }
            if let Some(record) = read_record(&entry.path().join("record.json"))? {
                out.push((name, record));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    async fn record(
        &self,
        thread: &str,
    ) -> std::io::Result<Option<Result<ThreadRecord, BadRecord>>> {
        read_record(&self.run_dir_path(thread).join("record.json"))
    }

    async fn save(&self, record: &ThreadRecord) -> std::io::Result<()> {
        let dir = self.run_dir_path(&record.thread_id);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        write_atomically(&dir.join("record.json"), record.to_json().as_bytes())
    }

    async fn prepare(&self, ws: &Workspace) -> Result<PathBuf, String> {
        let root = self.settings.dir.join("workspaces");
        let dir = root.join(&ws.key);
        let _guard = lock_file(
            &root.join(format!("{}.lock", ws.key)),
            Duration::from_secs(60),
        )
        .await
        .map_err(|e| format!("cannot lock the workspace: {e}"))?;
        let env = self
            .repo_env(&dir, &root.join(format!("{}.token", ws.key)))
            .await?;
        let env = env.as_slice();
        if !dir.join(".git").is_dir() {
            // Cloned beside it and renamed: a clone cut short leaves no
            // half workspace, only a scratch directory removed next time.
            let scratch = root.join(format!(".{}.clone", ws.key));
            if scratch.exists() {
                std::fs::remove_dir_all(&scratch)
                    .map_err(|e| format!("cannot remove {}: {e}", scratch.display()))?;
            }
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| {
                    format!("cannot remove the broken workspace {}: {e}", dir.display())
                })?;
            }
            let scratch_s = scratch.display().to_string();
            self.git(
                env,
                &root,
                &["clone", "--quiet", "--no-tags", "--", &ws.url, &scratch_s],
            )
            .await?;
            std::fs::rename(&scratch, &dir)
                .map_err(|e| format!("cannot move the clone into place: {e}"))?;
        } else {
            self.git(env, &dir, &["remote", "set-url", "origin", &ws.url])
                .await?;
        }
        // Whatever a killed agent left: a stale index lock, a rebase or a
        // merge in progress, changes, untracked files. All of it goes; none
        // of it is ever pushed.
        for stale in ["index.lock", "HEAD.lock"] {
            let _ = std::fs::remove_file(dir.join(".git").join(stale));
        }
        let _ = self.git(env, &dir, &["rebase", "--quit"]).await;
        let _ = self.git(env, &dir, &["merge", "--abort"]).await;
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", ws.branch);
        self.git(
            env,
            &dir,
            &[
                "fetch",
                "--quiet",
                "--prune",
                "--no-tags",
                "origin",
                &refspec,
            ],
        )
        .await?;
        let remote = format!("origin/{}", ws.branch);
        self.git(
            env,
            &dir,
            &["checkout", "--quiet", "--force", "-B", &ws.branch, &remote],
        )
        .await?;
        self.git(env, &dir, &["reset", "--quiet", "--hard", &remote])
            .await?;
        self.git(env, &dir, &["clean", "-ffdxq"]).await?;
        Ok(dir)
    }

    async fn start(&self, launch: &Launch) -> std::io::Result<Started> {
        let dir = self.run_dir_path(&launch.thread);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        let file = |ext: &str| self.turn_file(&launch.thread, launch.step, ext);
        let (lock, exit) = (file("lock"), file("exit"));
        if exit.exists() {
            return Ok(Started::Ended);
        }
        if let Some(sup) = holder(&lock) {
            return Ok(Started::Running(sup));
        }
        let prompt = file("prompt");
        write_atomically(&prompt, launch.prompt.as_bytes())?;
        // The agent's own token, minted for this turn's repository.
        let env = self
            .repo_env(&launch.workspace, &dir.join("git-token"))
            .await
            .map_err(std::io::Error::other)?;
        let append = |path: PathBuf| {
            OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o600)
                .open(path)
        };
        let mut cmd = tokio::process::Command::new(&self.settings.reaper);
        cmd.arg("--detach")
            .arg("--lock")
            .arg(&lock)
            .arg("--exit-file")
            .arg(&exit)
            .arg("--")
            .args(&launch.argv)
            .current_dir(&launch.workspace)
            .env_clear()
            .envs(env)
            .envs(launch.env.iter().cloned())
            // Tools that trust PWD over the real directory (opencode runs its
            // shell there) must see the workspace, never afk's directory.
            .env("PWD", &launch.workspace)
            .env_remove("OLDPWD")
            .stdin(File::open(&prompt)?)
            .stdout(append(file("out"))?)
            .stderr(append(file("err"))?)
            // The tree outlives this process: never killed with it.
            .kill_on_drop(false);
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let deadline = Instant::now() + START_WAIT;
        loop {
            if let Some(sup) = holder(&lock) {
                // Reaped by the runtime once it exits; never killed here.
                drop(child);
                return Ok(Started::Running(sup));
            }
            if let Ok(Some(_)) = child.try_wait() {
                // It ended before we saw it hold the lock: it ran and ended
                // (its exit file says how), or another supervisor runs the
                // turn (it holds the lock).
                if let Some(sup) = holder(&lock) {
                    return Ok(Started::Running(sup));
                }
                return if exit.exists() {
                    Ok(Started::Ended)
                } else {
                    Err(std::io::Error::other(format!(
                        "afk-reaper (pid {}) ended without starting the agent; see {}",
                        pid.unwrap_or(0),
                        file("err").display()
                    )))
                };
            }
            if Instant::now() >= deadline {
                return Err(std::io::Error::other(
                    "the agent's supervisor did not start within 10 s",
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn observe(&self, thread: &str, step: u32) -> std::io::Result<Observed> {
        // The lock first: a supervisor writes the exit file before it lets
        // go of the lock, so a turn seen without a holder and then without
        // an exit file did not end by itself.
        let holder = holder(&self.turn_file(thread, step, "lock"));
        let exit = self.turn_file(thread, step, "exit");
        let text = match std::fs::read_to_string(&exit) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Observed { holder, end: None });
            }
            Err(e) => return Err(e),
        };
        let Some(ended) = Ended::parse(&text) else {
            return Ok(Observed {
                holder,
                end: Some(TurnEnd {
                    code: None,
                    stopped: false,
                    reported_error: false,
                    said: Some(format!("{} cannot be read", exit.display())),
                    cost_micro_usd: None,
                }),
            });
        };
        let out = tail(&self.turn_file(thread, step, "out"), OUT_TAIL);
        let err = tail(&self.turn_file(thread, step, "err"), ERR_TAIL);
        let ending = said::ending(ended.code == 0 && !ended.stopped, &out, &err);
        Ok(Observed {
            holder,
            end: Some(TurnEnd {
                code: Some(ended.code),
                stopped: ended.stopped,
                reported_error: ending.reported_error,
                said: ending.said,
                cost_micro_usd: ending.cost.map(|c| c.micro_usd),
            }),
        })
    }

    async fn stop(&self, thread: &str, step: u32, sup: Supervisor) -> std::io::Result<()> {
        let lock = self.turn_file(thread, step, "lock");
        // Only the process that holds this turn's lock, started when the
        // record says: anything else is not ours to signal.
        let ours =
            || locks::holds(&lock, sup.pid) && afk_process::start_time(sup.pid) == Some(sup.start);
        if !ours() {
            return Ok(());
        }
        afk_process::terminate(sup.pid)?;
        let deadline = Instant::now() + STOP_WAIT;
        while ours() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if ours() {
            // It would not go: its tree first (it is their subreaper, so
            // all of it is below it), then itself.
            afk_process::tree::kill_descendants(sup.pid);
            afk_process::kill_process(sup.pid);
            let deadline = Instant::now() + Duration::from_secs(2);
            while ours() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        if ours() {
            return Err(std::io::Error::other(format!(
                "the agent's supervisor (pid {}) would not end",
                sup.pid
            )));
        }
        Ok(())
    }

    fn run_dir(&self, thread: &str) -> Option<String> {
        Some(self.run_dir_path(thread).display().to_string())
    }
}
