//! The one process toolkit of afk: how a local agent (a checklist-runner
//! item, a breakglass turn) or a power verb is started, watched and stopped.
//!
//! - [`Group::spawn`] starts an argument vector (never a shell) in a process
//!   group of its own, with its input either closed or fed from memory;
//!   [`Group::spawn_waiting`] leaves the input a pipe for the caller to
//!   write later (a process started ahead of its work), without the
//!   environment variables the caller names (its own secrets).
//! - [`Group::supervise`] waits for the process to end, its timeout, or a
//!   cancel, and then kills the whole group, whatever ended it, so nothing the
//!   process started in its group outlives it.
//! - [`read_capped`] and [`pump`] read its output without ever blocking it
//!   on a full pipe; [`collect`] waits for them with a bounded grace.
//! - Stopping stops the **whole tree**. Agent CLIs run their shell tool's
//!   commands in a session of their own (`setsid`), out of the agent's
//!   process group, so killing the group is not enough: every process
//!   started here carries a marker in its environment
//!   (`AFK_PROCESS_TREE=<id>`, inherited by everything it starts), and
//!   [`kill_tree`] kills the group and then every process of this user whose
//!   environment carries the marker, wherever it was reparented to.
//! - Every group is **tethered** to this process: a small watchdog (`sh`,
//!   in a group of its own) waits on a pipe that only this process holds.
//!   If this process dies in any way (SIGKILL included), the pipe closes and
//!   the watchdog kills the whole group, so an agent never outlives the
//!   runner or server that started it. When the group ends normally the
//!   watchdog is killed first, so it never signals a reused group id.
//!
//! - [`said`] turns what an agent CLI printed about its failure into one
//!   line (claude's JSON `is_error`/`result`/`permission_denials`, else the
//!   last line it wrote), for its callers; [`lines`] reads its output line
//!   by line with a cap on one line's size.
//!
//! This file is long because its tests start, stop and tether real process
//! trees for every way a group can end; the code itself is under 400 lines.
//!
//! It does not decide whether a run succeeded: that is its callers' business
//! (`runner`, `breakglass`, `afk-gateway`).

pub mod lines;
pub mod said;

use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
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

/// A running process that leads its own process group.
#[derive(Debug)]
pub struct Group {
    child: Child,
    pgid: u32,
    tether: Option<Child>,
    tree: String,
}

/// The environment variable that marks every process of one tree.
pub const TREE_VAR: &str = "AFK_PROCESS_TREE";

/// A marker unique to one tree: this process, the time, a counter.
fn tree_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// Kills process group `pgid` and then every process whose environment
/// carries `AFK_PROCESS_TREE=<tree>` (a command the tree started in a
/// session of its own, reparented anywhere). Scans `/proc` until a pass finds
/// nothing left, at most a few times. Returns how many processes outside the
/// group it killed.
pub fn kill_tree(pgid: u32, tree: &str) -> usize {
    kill_group(pgid);
    let needle = format!("{TREE_VAR}={tree}");
    let me = std::process::id();
    let mut killed = 0;
    for _ in 0..5 {
        let mut found = 0;
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return killed;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == me || ended(pid) {
                continue;
            }
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            if environ
                .split(|b| *b == 0)
                .any(|var| var == needle.as_bytes())
                && let Some(p) = pid_of(pid)
            {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
                found += 1;
            }
        }
        killed += found;
        if found == 0 {
            break;
        }
    }
    killed
}

impl Drop for Group {
    fn drop(&mut self) {
        // Kill the watchdog before its pipe closes: a closing pipe is how it
        // learns that we died, and it must not act on a normal end.
        if let Some(tether) = &mut self.tether {
            let _ = tether.start_kill();
        }
    }
}

/// Starts the watchdog of group `pgid`: it kills the group once its standard
/// input (a pipe whose write end only this process holds) reaches its end.
fn tether(pgid: u32, tree: &str) -> std::io::Result<Child> {
    // On our death: the group, then every process marked as of this tree.
    const SCRIPT: &str = "read -r _ignored; kill -KILL \"-$1\" 2>/dev/null; \
        for p in /proc/[0-9]*; do \
        if tr '\\0' '\\n' < \"$p/environ\" 2>/dev/null | grep -qx \"$2\"; then \
        kill -KILL \"${p#/proc/}\" 2>/dev/null; fi; done";
    tokio::process::Command::new("/bin/sh")
        .args([
            "-c",
            SCRIPT,
            "afk-tether",
            &pgid.to_string(),
            &format!("{TREE_VAR}={tree}"),
        ])
        .env_remove(TREE_VAR)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
}

impl Group {
    /// Starts `spec` in a new process group, stdout and stderr piped.
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
        let tree = tree_id();
        let mut command = tokio::process::Command::new(program);
        for name in env_remove {
            command.env_remove(name);
        }
        command
            .args(args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .env(TREE_VAR, &tree)
            .stdin(if matches!(input, Input::Closed) {
                Stdio::null()
            } else {
                Stdio::piped()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
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
        let tether = match tether(pgid, &tree) {
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
            tree,
        })
    }

    /// Its standard input, once: only a group started with
    /// [`Group::spawn_waiting`] has one to give.
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    /// Its process id, which is also its process group id.
    pub fn pgid(&self) -> u32 {
        self.pgid
    }

    /// The marker its whole tree carries (see [`kill_tree`]).
    pub fn tree(&self) -> &str {
        &self.tree
    }

    /// Its standard output, once.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// Its standard error, once.
    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Waits until the process has exited and `reading` (the caller's reader
    /// of its output, if it reads as it goes) has finished, or `timeout`
    /// passes, or `cancel` turns true. Then the whole tree is killed (the
    /// group and every process marked as of this tree, see [`kill_tree`]) and
    /// the process reaped, whatever ended it.
    pub async fn supervise(
        mut self,
        reading: impl Future<Output = ()>,
        timeout: Duration,
        cancel: Option<watch::Receiver<bool>>,
    ) -> End {
        let child = &mut self.child;
        let exited = async {
            reading.await;
            child.wait().await
        };
        let end = tokio::select! {
            status = exited => End::Exited(status),
            () = tokio::time::sleep(timeout) => End::TimedOut,
            () = cancelled(cancel) => End::Cancelled,
        };
        kill_tree(self.pgid, &self.tree);
        if !matches!(end, End::Exited(_)) {
            let _ = self.child.wait().await;
        }
        end
    }
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

fn pid_of(raw: u32) -> Option<rustix::process::Pid> {
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
        let dir = std::env::temp_dir().join(format!("afk-process-pwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
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

    /// A process that dies without cleaning up (here: the watchdog's pipe
    /// closes without the watchdog being stopped first, as when this
    /// process is SIGKILLed) takes its groups with it.
    #[tokio::test]
    async fn a_group_dies_with_the_process_that_started_it() {
        use tokio::io::AsyncBufReadExt;
        let mut group = Group::spawn(&spec("sleep 30 & echo $!; wait")).unwrap();
        let pgid = group.pgid();
        let mut out = tokio::io::BufReader::new(group.take_stdout().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).await.unwrap();
        let grandchild: u32 = line.trim().parse().unwrap();
        // Simulate our death: close the watchdog's pipe without stopping it
        // first, as the kernel does when this process is SIGKILLed.
        let mut tether = group.tether.take().unwrap();
        drop(tether.stdin.take());
        let all_ended = tokio::time::timeout(Duration::from_secs(10), async {
            while !(ended(pgid) && ended(grandchild)) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        assert!(all_ended.await.is_ok(), "the group outlived its parent");
        let _ = tether.wait().await;
        drop(group);
    }

    #[tokio::test]
    async fn a_normal_end_stops_the_watchdog_before_it_could_act() {
        let group = Group::spawn(&spec("exit 0")).unwrap();
        let watchdog = group.tether.as_ref().and_then(Child::id).unwrap();
        let end = group
            .supervise(async {}, Duration::from_secs(10), None)
            .await;
        assert!(matches!(end, End::Exited(Ok(s)) if s.success()));
        let gone = tokio::time::timeout(Duration::from_secs(10), async {
            while !ended(watchdog) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        assert!(gone.await.is_ok(), "the watchdog outlived its group");
    }

    /// Agent CLIs run their shell tool in a session of its own: killing the
    /// agent's group is not enough; the tree's marker finds what escaped.
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
        // A waiting group's input is the caller's: a spec that feeds one is
        // refused, and a fed or closed group has no input to give.
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
