//! The one process toolkit of afk: how a local agent (a checklist-runner
//! item, a breakglass turn, a gateway turn) or a power verb is started,
//! watched and stopped. This file is long because its tests start, stop and
//! attack real process trees for every way a group can end; the code itself
//! is under 500 lines.
//!
//! - [`Group::spawn`] starts an argument vector (never a shell) in a process
//!   group of its own, with its input either closed or fed from memory;
//!   [`Group::spawn_waiting`] leaves the input a pipe for the caller to
//!   write later (a process started ahead of its work), without the
//!   environment variables the caller names (its own secrets).
//! - [`Group::supervise`] waits for the process to end, its timeout, or a
//!   cancel, and then stops the **whole tree**, whatever ended it.
//! - [`read_capped`] and [`pump`] read its output without ever blocking it
//!   on a full pipe; [`collect`] waits for them with a bounded grace.
//! - **A tree is found by ancestry** ([`tree`]). Every group is started
//!   under its own supervisor, [`reaper`] (the `afk-reaper` program), which
//!   makes itself the tree's child subreaper before it starts the agent: an
//!   orphan of the tree (a `setsid` shell tool, a double fork, a cleared
//!   environment) is reparented to it, never to init, so killing its
//!   descendants kills all of the tree and nothing else. The supervisor also
//!   watches the process that started it and takes the tree down when that
//!   process dies, even by SIGKILL: an agent never outlives the runner or
//!   server that started it.
//! - The starting process (the runner, the breakglass server) is a child
//!   subreaper too, and watches each tree while it runs: a process seen in a
//!   tree is killed with it (by pid and start time) even if the agent kills
//!   its supervisor and its orphans come back to the starting process. No
//!   process is ever signalled for what its environment carries.
//! - Ownership is the lifetime: a [`Group`] dropped before it was supervised
//!   to its end (a failed spawn loop, an aborted task, a panic) stops its
//!   whole tree.
//! - Where `afk-reaper` cannot be found (beside this program, or named by
//!   `AFK_REAPER_BIN`), a group is started directly with a small `/bin/sh`
//!   watchdog instead; the ancestry rules above still hold while the
//!   starting process lives.
//!
//! - [`runtime`] defines the agent runtimes once (`claude`, `opencode`, a
//!   command): their argument vectors, sessions and where their program is.
//! - [`said`] turns what an agent CLI printed about its failure into one
//!   line (claude's JSON `is_error`/`result`/`permission_denials`, else the
//!   last line it wrote), for its callers; [`lines`] reads its output line
//!   by line with a cap on one line's size.
//!
//! It does not decide whether a run succeeded: that is its callers' business
//! (`runner`, `breakglass`, `afk-gateway`).

pub mod files;
pub mod lines;
pub mod locks;
pub mod reaper;
pub mod runtime;
pub mod said;
pub mod tree;

use std::collections::BTreeSet;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What to start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    /// The program, then its arguments.
    pub argv: Vec<String>,
    /// The working directory (the caller's when `None`).
    pub cwd: Option<PathBuf>,
    /// Added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// Written to its standard input, which is then closed; `None` closes
    /// standard input at once.
    pub stdin: Option<Vec<u8>>,
}

/// What a new group's standard input is.
#[derive(Debug)]
enum Input {
    /// Closed at once.
    Closed,
    /// Written from memory, then closed.
    Fed(Vec<u8>),
    /// A pipe the caller writes.
    Open,
}

/// How a supervised process ended.
#[derive(Debug)]
pub enum End {
    /// It exited by itself (and its output reader finished).
    Exited(std::io::Result<ExitStatus>),
    /// It ran past its timeout and was killed.
    TimedOut,
    /// It was told to stop and was killed.
    Cancelled,
}

/// A running process tree: its leader leads its own process group.
#[derive(Debug)]
pub struct Group {
    child: Child,
    pgid: u32,
    /// The `/bin/sh` watchdog, when no supervisor program could be found.
    tether: Option<Child>,
    /// Whether the leader is the tree's supervisor (`afk-reaper`).
    supervised: bool,
    /// Every process seen in the tree while it ran, by pid and start time.
    seen: Arc<Mutex<BTreeSet<(u32, u64)>>>,
    /// Supervised to its end: the tree was killed and the leader reaped, so
    /// its group id may be reused and must never be signalled again.
    finished: bool,
}

/// Where `afk-reaper` is: `AFK_REAPER_BIN`, else beside this program, else
/// one directory up (a test binary runs from `target/<profile>/deps`).
fn reaper_bin() -> Option<&'static PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("AFK_REAPER_BIN").map(PathBuf::from) {
            return path.is_file().then_some(path);
        }
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?;
        [dir.join("afk-reaper"), dir.join("..").join("afk-reaper")]
            .into_iter()
            .find(|p| p.is_file())
    })
    .as_ref()
}

/// Whether groups are started under `afk-reaper` (else under the `/bin/sh`
/// watchdog).
pub fn supervisor_available() -> bool {
    reaper_bin().is_some()
}

/// Where the `afk-reaper` program is (`AFK_REAPER_BIN`, else beside this
/// program), when it is there.
pub fn reaper_path() -> Option<PathBuf> {
    reaper_bin().cloned()
}

/// Makes this process the child subreaper of the trees it starts, once.
fn own_orphans() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let _ = tree::become_subreaper();
    });
}

impl Drop for Group {
    fn drop(&mut self) {
        // Ownership is the lifetime: a group dropped before it was supervised
        // to its end (a failed spawn loop, an aborted task, a panic) takes
        // its whole tree with it. Its leader is not reaped yet (the child is
        // dropped after this), so its group id cannot have been reused.
        if !self.finished {
            self.kill_now();
        }
        // Kill the watchdog before its pipe closes: a closing pipe is how it
        // learns that we died, and it must not act on a normal end.
        if let Some(tether) = &mut self.tether {
            let _ = tether.start_kill();
        }
    }
}

/// Starts the watchdog of group `pgid` (used only without `afk-reaper`): it
/// kills the group once its standard input (a pipe whose write end only this
/// process holds) reaches its end.
fn tether(pgid: u32) -> std::io::Result<Child> {
    const SCRIPT: &str = "read -r _ignored; kill -KILL \"-$1\" 2>/dev/null";
    tokio::process::Command::new("/bin/sh")
        .args(["-c", SCRIPT, "afk-tether", &pgid.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
}

impl Group {
    /// Starts `spec` in a new process group, stdout and stderr piped, under
    /// its supervisor (see the module docs).
    ///
    /// # Errors
    /// The spawn error (`NotFound` when the program does not exist); an empty
    /// argument vector is `InvalidInput`.
    pub fn spawn(spec: &Spec) -> std::io::Result<Group> {
        let input = match &spec.stdin {
            Some(bytes) => Input::Fed(bytes.clone()),
            None => Input::Closed,
        };
        Group::start(spec, input, &[])
    }

    /// Starts `spec` like [`Group::spawn`], but with its standard input a
    /// pipe left open for the caller to write later ([`Group::take_stdin`]),
    /// and without inheriting the variables named in `env_remove` (a
    /// server's own secrets). A process started ahead of its work waits on
    /// that pipe: its start-up is paid before anyone asks.
    ///
    /// # Errors
    /// As [`Group::spawn`]; `spec.stdin` set is `InvalidInput` (the input
    /// is the caller's to write).
    pub fn spawn_waiting(spec: &Spec, env_remove: &[&str]) -> std::io::Result<Group> {
        if spec.stdin.is_some() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a waiting process gets its input from the caller, not from its spec",
            ));
        }
        Group::start(spec, Input::Open, env_remove)
    }

    fn start(spec: &Spec, input: Input, env_remove: &[&str]) -> std::io::Result<Group> {
        let (program, args) = spec.argv.split_first().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "no program to run")
        })?;
        own_orphans();
        let supervisor = reaper_bin();
        let mut command = match supervisor {
            Some(reaper) => {
                // The supervisor starts nothing when the program does not
                // exist; say so here, as a direct spawn would.
                if !program_exists(program, spec.cwd.as_deref()) {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{program}: no such program"),
                    ));
                }
                let mut c = tokio::process::Command::new(reaper);
                c.args(["--owner", &std::process::id().to_string(), "--"])
                    .arg(program)
                    .args(args);
                c
            }
            None => {
                let mut c = tokio::process::Command::new(program);
                c.args(args);
                c
            }
        };
        for name in env_remove {
            command.env_remove(name);
        }
        command
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(if matches!(input, Input::Closed) {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // The supervisor is stopped with SIGTERM, so that it takes its
            // tree down; a direct child is killed outright.
            .kill_on_drop(supervisor.is_none());
        if let Some(dir) = &spec.cwd {
            command.current_dir(dir);
            // Programs that trust `$PWD` over their real directory (opencode
            // 1.18 runs its bash tool in `$PWD`) must not inherit ours.
            if !spec.env.iter().any(|(k, _)| k == "PWD") {
                command.env("PWD", std::path::absolute(dir)?);
            }
        }
        let mut child = command.spawn()?;
        let pgid = child.id().unwrap_or(0);
        let tether = if supervisor.is_some() {
            None
        } else {
            match tether(pgid) {
                Ok(t) => Some(t),
                Err(e) => {
                    // Without its watchdog the group must not run at all.
                    kill_group(pgid);
                    return Err(std::io::Error::new(
                        e.kind(),
                        format!(
                            "cannot start the watchdog (sh) that ties the agent to this process: {e}"
                        ),
                    ));
                }
            }
        };
        if let Input::Fed(bytes) = input
            && let Some(mut pipe) = child.stdin.take()
        {
            // A process that never reads its input is fine: a closed pipe is
            // not an error worth reporting.
            tokio::spawn(async move {
                let _ = pipe.write_all(&bytes).await;
                let _ = pipe.shutdown().await;
            });
        }
        Ok(Group {
            child,
            pgid,
            tether,
            supervised: supervisor.is_some(),
            seen: Arc::default(),
            finished: false,
        })
    }

    /// Its standard input, once: only a group started with
    /// [`Group::spawn_waiting`] has one to give.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Its process id (the supervisor's, when it has one), which is also its
    /// process group id.
    pub fn pgid(&self) -> u32 {
        self.pgid
    }

    /// Whether the tree runs under its supervisor (`afk-reaper`).
    pub fn supervised(&self) -> bool {
        self.supervised
    }

    /// Its standard output, once.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Its standard error, once.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Kills, without waiting: the supervisor is told to stop (it kills its
    /// descendants), and every process of the group, every descendant of
    /// those, and every process seen in the tree that still runs (same pid,
    /// same start time), with its descendants, is killed here too (the agent
    /// may have killed its supervisor). Only processes this group started
    /// are signalled: members of its group, their descendants, and what was
    /// seen among them.
    fn kill_now(&mut self) {
        if self.supervised
            && let Some(pid) = pid_of(self.pgid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let seen: BTreeSet<(u32, u64)> = self.seen.lock().map(|s| s.clone()).unwrap_or_default();
        for _ in 0..20 {
            // Found before any is killed: once a parent dies, its children
            // are reparented (to the supervisor, or here).
            let procs = tree::all();
            let mut roots: Vec<u32> = procs
                .values()
                .filter(|p| p.pgid == self.pgid || seen.contains(&(p.pid, p.start)))
                .map(|p| p.pid)
                .collect();
            if !self.supervised {
                roots.push(self.pgid);
            }
            let mut targets: BTreeSet<u32> = BTreeSet::new();
            for root in roots {
                targets.insert(root);
                targets.extend(tree::descendants(&procs, root).iter().map(|p| p.pid));
            }
            if self.supervised {
                // The supervisor stops itself, after its tree.
                targets.remove(&self.pgid);
            }
            let live: Vec<u32> = targets
                .into_iter()
                .filter(|pid| procs.get(pid).is_some_and(|p| !p.zombie))
                .collect();
            if live.is_empty() {
                break;
            }
            for pid in live {
                if let Some(p) = pid_of(pid) {
                    let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                }
            }
        }
    }

    /// Waits until the process has exited and `reading` (the caller's reader
    /// of its output, if it reads as it goes) has finished, or `timeout`
    /// passes, or `cancel` turns true. Then the whole tree is stopped (see
    /// the module docs) and the leader reaped, whatever ended it.
    pub async fn supervise(
        mut self,
        reading: impl Future<Output = ()>,
        timeout: Duration,
        cancel: Option<watch::Receiver<bool>>,
    ) -> End {
        let end = {
            let child = &mut self.child;
            let exited = async {
                reading.await;
                child.wait().await
            };
            tokio::pin!(exited);
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            let cancelled = cancelled(cancel);
            tokio::pin!(cancelled);
            let mut watch_tree = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    status = &mut exited => break End::Exited(status),
                    () = &mut deadline => break End::TimedOut,
                    () = &mut cancelled => break End::Cancelled,
                    _ = watch_tree.tick() => {
                        let observer = Observer { pgid: self.pgid, seen: self.seen.clone() };
                        observer.observe();
                    }
                }
            }
        };
        self.kill_now();
        if self.supervised {
            // The supervisor kills its tree and exits; give it a bounded
            // while, then make sure.
            let stopped = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
            if stopped.is_err() {
                tree::kill_descendants(self.pgid);
                kill_group(self.pgid);
                let _ = self.child.wait().await;
            }
        } else if !matches!(end, End::Exited(_)) {
            let _ = self.child.wait().await;
        }
        self.finished = true;
        end
    }
}

/// What the supervision loop records the tree with (the group itself is
/// borrowed by the wait).
struct Observer {
    pgid: u32,
    seen: Arc<Mutex<BTreeSet<(u32, u64)>>>,
}

impl Observer {
    fn observe(&self) {
        let procs = tree::all();
        let found: Vec<(u32, u64)> = tree::descendants(&procs, self.pgid)
            .into_iter()
            .chain(procs.values().filter(|p| p.pgid == self.pgid).copied())
            .filter(|p| !p.zombie)
            .map(|p| (p.pid, p.start))
            .collect();
        if let Ok(mut seen) = self.seen.lock() {
            seen.extend(found);
        }
    }
}

/// Whether `program` names something that can be run: a path to a file, or
/// a name found on `PATH`.
fn program_exists(program: &str, cwd: Option<&std::path::Path>) -> bool {
    if program.contains('/') {
        let path = std::path::Path::new(program);
        let path = match (path.is_relative(), cwd) {
            (true, Some(dir)) => dir.join(path),
            _ => path.to_path_buf(),
        };
        return path.is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Sends SIGKILL to process group `pgid`; a group that is gone is fine.
pub fn kill_group(pgid: u32) {
    if let Some(pid) = pid_of(pgid) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Whether any process of group `pgid` is still alive (zombies included).
pub fn group_alive(pgid: u32) -> bool {
    pid_of(pgid).is_some_and(|pid| rustix::process::test_kill_process_group(pid).is_ok())
}

/// Whether process `pid` has ended: no such process, or a zombie that
/// nobody has reaped yet (it runs nothing any more). Linux `/proc` only.
pub fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// When process `pid` started, in clock ticks since boot (`/proc/<pid>/stat`
/// field 22), or `None` when there is no such process. A pid and its start
/// time together name one process: a reused pid has a later start time.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces and parentheses)
    // start at field 3 (the state); the start time is field 22.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Sends SIGTERM to process `pid` (not its group).
///
/// # Errors
/// The signal could not be sent (no such process, not permitted).
pub fn terminate(pid: u32) -> std::io::Result<()> {
    let pid = pid_of(pid).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("bad pid {pid}"))
    })?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).map_err(Into::into)
}

/// Sends SIGKILL to process `pid` (not its group); a process that is gone
/// already is not an error.
pub fn kill_process(pid: u32) {
    if let Some(pid) = pid_of(pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

pub(crate) fn pid_of(raw: u32) -> Option<rustix::process::Pid> {
    // 0 and 1 would signal our own group or every process: never.
    i32::try_from(raw)
        .ok()
        .filter(|p| *p > 1)
        .and_then(rustix::process::Pid::from_raw)
}

/// Resolves when `cancel` turns true (never, without a receiver or once its
/// sender is gone).
pub async fn cancelled(cancel: Option<watch::Receiver<bool>>) {
    let Some(mut cancel) = cancel else {
        return std::future::pending().await;
    };
    loop {
        if *cancel.borrow_and_update() {
            return;
        }
        if cancel.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Reads the first `limit` bytes of `stream` in the background and drains the
/// rest, so the process never blocks on a full pipe.
pub fn read_capped(
    stream: Option<impl AsyncRead + Unpin + Send + 'static>,
    limit: u64,
) -> JoinHandle<std::io::Result<Vec<u8>>> {
    tokio::spawn(async move {
        let Some(mut s) = stream else {
            return Ok(Vec::new());
        };
        let mut kept = Vec::new();
        (&mut s).take(limit).read_to_end(&mut kept).await?;
        tokio::io::copy(&mut s, &mut tokio::io::sink()).await?;
        Ok(kept)
    })
}

/// Copies everything `stream` produces into `log` as it comes (the log keeps
/// it all), and returns the first `limit` bytes.
pub fn pump(
    stream: Option<impl AsyncRead + Unpin + Send + 'static>,
    log: Arc<Mutex<std::fs::File>>,
    limit: usize,
) -> JoinHandle<std::io::Result<Vec<u8>>> {
    tokio::spawn(async move {
        let Some(mut s) = stream else {
            return Ok(Vec::new());
        };
        let mut kept = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = s.read(&mut buf).await?;
            if n == 0 {
                return Ok(kept);
            }
            log.lock()
                .map_err(|_| std::io::Error::other("log lock poisoned"))?
                .write_all(&buf[..n])?;
            let room = limit.saturating_sub(kept.len()).min(n);
            kept.extend_from_slice(&buf[..room]);
        }
    })
}

/// What a [`read_capped`] or [`pump`] task read, waiting at most `grace`:
/// once the group is killed its pipes close, but a process that left the
/// group (`setsid`) could hold them open. A failed read yields what is known:
/// nothing.
pub async fn collect(task: JoinHandle<std::io::Result<Vec<u8>>>, grace: Duration) -> Vec<u8> {
    match tokio::time::timeout(grace, task).await {
        Ok(Ok(Ok(bytes))) => bytes,
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn spec(script: &str) -> Spec {
        Spec {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            ..Spec::default()
        }
    }

    /// opencode runs its bash tool in `$PWD`: a group started in a directory
    /// gets that directory as `$PWD`, not its parent's.
    #[tokio::test]
    async fn a_group_s_pwd_is_its_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        // `env`, not a shell: a shell would fix a wrong $PWD itself.
        let mut group = Group::spawn(&Spec {
            argv: vec!["env".into()],
            cwd: Some(dir.clone()),
            ..Spec::default()
        })
        .unwrap();
        let out = read_capped(group.take_stdout(), 1 << 20);
        let _ = group
            .supervise(async {}, Duration::from_secs(10), None)
            .await;
        let out = collect(out, Duration::from_secs(5)).await;
        let env = String::from_utf8_lossy(&out).into_owned();
        assert!(
            env.lines().any(|l| l == format!("PWD={}", dir.display())),
            "{env}"
        );
    }

    #[tokio::test]
    async fn an_exit_is_reported_with_its_output() {
        let mut group = Group::spawn(&Spec {
            stdin: Some(b"from stdin".to_vec()),
            ..spec("cat; echo oops >&2; exit 3")
        })
        .unwrap();
        let out = read_capped(group.take_stdout(), 4);
        let err = read_capped(group.take_stderr(), 100);
        let end = group
            .supervise(async {}, Duration::from_secs(10), None)
            .await;
        assert!(
            matches!(end, End::Exited(Ok(s)) if s.code() == Some(3)),
            "{end:?}"
        );
        assert_eq!(collect(out, Duration::from_secs(5)).await, b"from");
        assert_eq!(collect(err, Duration::from_secs(5)).await, b"oops\n");
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let mut group = Group::spawn(&spec("sleep 30 & echo $!; wait")).unwrap();
        let pgid = group.pgid();
        let out = read_capped(group.take_stdout(), 100);
        let end = group
            .supervise(async {}, Duration::from_millis(300), None)
            .await;
        assert!(matches!(end, End::TimedOut), "{end:?}");
        let grandchild: u32 = String::from_utf8(collect(out, Duration::from_secs(5)).await)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SIGKILL is delivered asynchronously: the end is awaited, bounded.
        let all_ended = tokio::time::timeout(Duration::from_secs(10), async {
            while !(ended(pgid) && ended(grandchild)) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        assert!(all_ended.await.is_ok(), "the group outlived its timeout");
    }

    #[tokio::test]
    async fn a_cancel_kills_the_whole_group() {
        let group = Group::spawn(&spec("sleep 30")).unwrap();
        let pgid = group.pgid();
        let (tx, rx) = watch::channel(false);
        let waiting = tokio::spawn(group.supervise(async {}, Duration::from_secs(30), Some(rx)));
        tx.send(true).unwrap();
        let end = waiting.await.unwrap();
        assert!(matches!(end, End::Cancelled), "{end:?}");
        assert!(ended(pgid));
    }

    /// Polls until `pid` has ended, for at most 10 s.
    async fn ends_soon(pid: u32) -> bool {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !ended(pid) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .is_ok()
    }

    /// The pids a script prints, one per line, until it prints `ready`.
    async fn printed_pids(group: &mut Group) -> Vec<u32> {
        use tokio::io::AsyncBufReadExt;
        let mut out = tokio::io::BufReader::new(group.take_stdout().unwrap());
        let mut pids = Vec::new();
        loop {
            let mut line = String::new();
            if out.read_line(&mut line).await.unwrap() == 0 || line.trim() == "ready" {
                return pids;
            }
            if let Ok(pid) = line.trim().parse() {
                pids.push(pid);
            }
        }
    }

    /// Under `cargo test` the supervisor program is built beside the tests:
    /// every group below runs under it.
    #[test]
    fn groups_run_under_their_supervisor() {
        assert!(
            supervisor_available(),
            "afk-reaper was not found beside {:?}; build it (cargo build -p afk-process)",
            std::env::current_exe()
        );
    }

    /// The process that started a group dies (SIGKILL: no clean-up of its
    /// own): the supervisor sees its parent change and takes the tree down,
    /// what left the group with `setsid` included.
    #[tokio::test]
    async fn a_tree_dies_with_the_process_that_started_it() {
        let reaper = reaper_bin().unwrap().display().to_string();
        // An owner of our own, started here: it starts the supervisor with
        // `--owner` itself, prints the escaped grandchild, and waits.
        let script =
            format!("{reaper} --owner $$ -- sh -c 'setsid sleep 60 & echo $!; wait' & wait");
        let mut owner = Group::spawn(&spec(&script)).unwrap();
        let owner_pid = owner.pgid();
        let escaped = first_pid(&mut owner).await;
        assert!(!ended(escaped));
        // The owner's own leader is its supervisor; kill the shell below it
        // that plays the owner, as a SIGKILL would.
        let shell = tree::descendants(&tree::all(), owner_pid)
            .into_iter()
            .find(|p| p.ppid == owner_pid)
            .unwrap();
        rustix::process::kill_process(pid_of(shell.pid).unwrap(), rustix::process::Signal::KILL)
            .unwrap();
        assert!(ends_soon(escaped).await, "the tree outlived its owner");
        drop(owner);
    }

    /// A process outside every tree is never signalled, whatever its
    /// environment says (the old marker is not a licence to kill).
    #[tokio::test]
    async fn a_process_outside_the_tree_is_never_signalled() {
        let outsider = std::process::Command::new("sleep")
            .arg("60")
            .env("AFK_PROCESS_TREE", "anything")
            .spawn()
            .unwrap();
        let group = Group::spawn(&spec("exit 0")).unwrap();
        let _ = group
            .supervise(async {}, Duration::from_secs(10), None)
            .await;
        let dropped = Group::spawn(&spec("sleep 60")).unwrap();
        let leader = dropped.pgid();
        drop(dropped);
        assert!(ends_soon(leader).await);
        assert!(!ended(outsider.id()), "an outside process was killed");
        let mut outsider = outsider;
        let _ = outsider.kill();
        let _ = outsider.wait();
    }

    /// The ways an agent tries to outlive its stop: a cleared environment
    /// and a session of its own, forks in a burst, and killing its own
    /// supervisor. Every way of stopping stops them all.
    #[tokio::test]
    async fn no_escape_survives_a_stop() {
        let attacks = [
            // Leaves the session and clears its environment.
            "env -i setsid sleep 60 & echo $!; echo ready; wait",
            // Forks in a burst, each in a session of its own.
            "for i in 1 2 3 4 5 6 7 8 9 10; do setsid sh -c 'sleep 60' & echo $!; done; echo ready; wait",
            // Double fork: the middle process exits at once.
            "sh -c 'setsid sleep 60 & echo $!' ; echo ready; wait",
            // Kills its own supervisor, then leaves the session.
            "env -i setsid sleep 60 & echo $!; kill -9 $PPID; echo ready; sleep 60",
        ];
        for (n, script) in attacks.iter().enumerate() {
            for how in ["cancel", "timeout", "drop"] {
                let mut group = Group::spawn(&spec(script)).unwrap();
                let escaped = printed_pids(&mut group).await;
                assert!(!escaped.is_empty(), "attack {n}: nothing printed");
                let (tx, rx) = watch::channel(false);
                match how {
                    "cancel" => {
                        tx.send(true).unwrap();
                        let _ = group
                            .supervise(async {}, Duration::from_secs(60), Some(rx))
                            .await;
                    }
                    "timeout" => {
                        let _ = group
                            .supervise(async {}, Duration::from_millis(300), None)
                            .await;
                    }
                    _ => drop(group),
                }
                for pid in escaped {
                    assert!(
                        ends_soon(pid).await,
                        "attack {n} ({how}): {pid} outlived the stop"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn stopping_stops_what_escaped_the_group_with_setsid() {
        for end in ["timeout", "cancel", "exit"] {
            let script = if end == "exit" {
                "setsid sh -c 'sleep 60' & echo $!; sleep 0.2"
            } else {
                "setsid sh -c 'sleep 60' & echo $!; sleep 60"
            };
            let mut group = Group::spawn(&spec(script)).unwrap();
            let mut out = tokio::io::BufReader::new(group.take_stdout().unwrap());
            let mut line = String::new();
            tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)
                .await
                .unwrap();
            let escaped: u32 = line.trim().parse().unwrap();
            assert!(!ended(escaped), "{end}: the escaped command runs");
            let (tx, rx) = watch::channel(false);
            if end == "cancel" {
                tx.send(true).unwrap();
            }
            let _ = group
                .supervise(async {}, Duration::from_millis(500), Some(rx))
                .await;
            let gone = tokio::time::timeout(Duration::from_secs(10), async {
                while !ended(escaped) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            assert!(
                gone.await.is_ok(),
                "{end}: the setsid'd command outlived its agent"
            );
        }
    }

    /// Reads the pid the script echoes first.
    async fn first_pid(group: &mut Group) -> u32 {
        let mut out = tokio::io::BufReader::new(group.take_stdout().unwrap());
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut out, &mut line)
            .await
            .unwrap();
        line.trim().parse().unwrap()
    }

    async fn gone_soon(pid: u32) -> bool {
        tokio::time::timeout(Duration::from_secs(10), async {
            while !ended(pid) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .is_ok()
    }

    /// Ownership is the lifetime: a group dropped before it was supervised
    /// (a spawn loop that fails half-way, a panic) kills its whole tree, the
    /// commands it started with `setsid` included.
    #[tokio::test]
    async fn a_dropped_group_kills_its_whole_tree() {
        let mut group = Group::spawn(&spec("setsid sh -c 'sleep 60' & echo $!; sleep 60")).unwrap();
        let escaped = first_pid(&mut group).await;
        let leader = group.pgid();
        assert!(!ended(escaped) && !ended(leader));
        drop(group);
        assert!(
            gone_soon(escaped).await,
            "the setsid'd command outlived the drop"
        );
        assert!(gone_soon(leader).await, "the leader outlived the drop");
    }

    /// An aborted task drops the group it was supervising: the tree dies.
    #[tokio::test]
    async fn an_aborted_supervision_kills_the_tree() {
        let mut group = Group::spawn(&spec("setsid sh -c 'sleep 60' & echo $!; sleep 60")).unwrap();
        let escaped = first_pid(&mut group).await;
        let task = tokio::spawn(group.supervise(async {}, Duration::from_secs(600), None));
        tokio::time::sleep(Duration::from_millis(50)).await;
        task.abort();
        let _ = task.await;
        assert!(
            gone_soon(escaped).await,
            "the tree outlived its aborted task"
        );
    }

    /// A panic while a group runs unwinds through it and kills its tree.
    #[tokio::test]
    async fn a_panic_kills_the_tree_of_the_group_it_unwinds_through() {
        let mut group = Group::spawn(&spec("setsid sh -c 'sleep 60' & echo $!; sleep 60")).unwrap();
        let escaped = first_pid(&mut group).await;
        let task = tokio::spawn(async move {
            let _owned = group;
            panic!("a bug while the agent runs");
        });
        assert!(task.await.is_err());
        assert!(gone_soon(escaped).await, "the tree outlived the panic");
    }

    /// A process started ahead of its work waits on its input, gets what is
    /// written later, and inherits nothing the caller named.
    #[tokio::test]
    async fn a_waiting_group_reads_what_is_written_later_without_the_removed_variables() {
        // cargo runs tests with CARGO_PKG_NAME and CARGO_PKG_VERSION set: the
        // removed one must not reach the child, the other must.
        let mut group = Group::spawn_waiting(
            &spec("read -r line; echo \"got:$line\"; echo \"name:${CARGO_PKG_NAME:-unset}\"; echo \"version:$CARGO_PKG_VERSION\""),
            &["CARGO_PKG_NAME"],
        )
        .unwrap();
        let out = read_capped(group.take_stdout(), 1 << 16);
        let mut input = group.take_stdin().unwrap();
        assert!(group.take_stdin().is_none(), "once");
        input.write_all(b"-p --flag\n").await.unwrap();
        drop(input);
        let end = group
            .supervise(async {}, Duration::from_secs(10), None)
            .await;
        assert!(matches!(end, End::Exited(Ok(s)) if s.success()), "{end:?}");
        let out = String::from_utf8(collect(out, Duration::from_secs(5)).await).unwrap();
        assert_eq!(
            out,
            format!(
                "got:-p --flag\nname:unset\nversion:{}\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        let fed = Spec {
            stdin: Some(b"x".to_vec()),
            ..spec("cat")
        };
        assert_eq!(
            Group::spawn_waiting(&fed, &[]).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        let mut closed = Group::spawn(&spec("true")).unwrap();
        assert!(closed.take_stdin().is_none());
        let _ = closed
            .supervise(async {}, Duration::from_secs(10), None)
            .await;
    }

    #[test]
    fn a_start_time_names_one_process() {
        let me = std::process::id();
        let t = start_time(me).unwrap();
        assert_eq!(start_time(me), Some(t), "stable for the same process");
        assert!(start_time(u32::MAX).is_none());
    }

    #[test]
    fn nothing_is_started_for_an_empty_command_and_no_one_is_signalled_by_accident() {
        let err = Group::spawn(&Spec::default()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        // 0 and 1 never reach kill(2): they would mean our own group or init.
        assert!(!group_alive(0));
        assert!(terminate(0).is_err());
        assert!(terminate(1).is_err());
    }
}
