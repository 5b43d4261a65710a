//! The supervisor of one agent tree (`afk-reaper`): the program afk starts
//! instead of the agent, which starts the agent and owns everything it
//! starts.
//!
//! `afk-reaper [--owner PID] [--detach] [--lock PATH] [--exit-file PATH] --
//! PROGRAM [ARGS…]`
//!
//! - It makes itself the tree's **child subreaper** before it starts the
//!   agent, so every process of the tree stays its descendant however it
//!   daemonises (`setsid`, double forks, a cleared environment): an orphan is
//!   reparented to it, not to init.
//! - It passes its standard input, output and error, directory and
//!   environment to the agent unchanged.
//! - When the agent exits, when it is told to stop (SIGTERM, SIGINT, SIGHUP)
//!   or, with `--owner`, when its parent is no longer that process (the
//!   runner or server that started it died, even by SIGKILL), it kills every
//!   descendant it has, again until none is left, reaps them, and exits: with
//!   the agent's exit code, or 128 plus the signal that ended the agent, or
//!   143 when it was stopped first.
//! - Without `--owner` it runs detached: the tick that started it may end
//!   and the agent goes on (the local executor's per-run supervisor). With
//!   `--detach` it starts a session of its own first, so no terminal's
//!   signals reach the tree.
//! - With `--lock PATH` it holds an exclusive lock on PATH for its whole
//!   life (not inherited by the agent): the lock is the tree's mark, which
//!   names its supervisor beyond doubt ([`crate::locks`]). When another
//!   process holds it, a second supervisor of the same turn is running: it
//!   starts nothing and exits [`ALREADY`], silently.
//! - With `--exit-file PATH` it writes how the agent ended there before it
//!   lets go of the lock (`{"code":N,"stopped":B}`, atomically); when that
//!   file exists already, the turn ran: it starts nothing and exits
//!   [`ALREADY`].
//!
//! It signals nothing but its own descendants. It does not read what the
//! agent prints (its caller does, through the inherited pipes or files).

use std::time::Duration;

use crate::tree;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Args {
    /// The process whose death ends the tree, when given.
    pub owner: Option<u32>,
    /// Start a session of its own first.
    pub detach: bool,
    /// The lock held for the supervisor's whole life, when given.
    pub lock: Option<std::path::PathBuf>,
    /// Where how the agent ended is written, when given.
    pub exit_file: Option<std::path::PathBuf>,
    /// The agent's program and arguments.
    pub argv: Vec<String>,
}

/// Exit code: the command line could not be read.
pub const USAGE: i32 = 125;
/// Exit code: the agent could not be started.
pub const CANNOT_START: i32 = 126;
/// Exit code: stopped before the agent ended by itself (128 + SIGTERM).
pub const STOPPED: i32 = 143;
/// Exit code: another supervisor holds the turn's lock, or the turn's exit
/// file exists already: nothing was started.
pub const ALREADY: i32 = 124;

/// Reads `[--owner PID] [--detach] [--lock PATH] [--exit-file PATH] --
/// PROGRAM [ARGS…]`.
///
/// # Errors
/// What is wrong with the command line, in one line.
pub fn parse(args: &[String]) -> Result<Args, String> {
    let mut out = Args::default();
    let mut rest = args;
    let path = |rest: &[String], flag: &str| {
        rest.get(1)
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
            .ok_or_else(|| format!("{flag} needs a path"))
    };
    loop {
        match rest.first().map(String::as_str) {
            Some("--owner") => {
                let pid = rest
                    .get(1)
                    .and_then(|p| p.parse::<u32>().ok())
                    .filter(|p| *p > 1)
                    .ok_or("--owner needs a process id above 1")?;
                out.owner = Some(pid);
                rest = &rest[2..];
            }
            Some("--detach") => {
                out.detach = true;
                rest = &rest[1..];
            }
            Some("--lock") => {
                out.lock = Some(path(rest, "--lock")?);
                rest = &rest[2..];
            }
            Some("--exit-file") => {
                out.exit_file = Some(path(rest, "--exit-file")?);
                rest = &rest[2..];
            }
            Some("--") => {
                rest = &rest[1..];
                break;
            }
            Some(other) => {
                return Err(format!(
                    "unknown argument {other:?} (expected --owner PID, --detach, --lock PATH, --exit-file PATH or --)"
                ));
            }
            None => {
                return Err(
                    "usage: afk-reaper [--owner PID] [--detach] [--lock PATH] [--exit-file PATH] -- PROGRAM [ARGS...]"
                        .into(),
                );
            }
        }
    }
    if rest.is_empty() {
        return Err("no program to run after --".into());
    }
    out.argv = rest.to_vec();
    Ok(out)
}

/// How a supervised agent ended, as the exit file records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    /// The supervisor's exit code (the agent's, `128 + signal`, or one of
    /// this module's constants).
    pub code: i32,
    /// It was stopped before the agent ended by itself.
    pub stopped: bool,
}

impl Ended {
    /// The exit file's text.
    pub fn to_json(self) -> String {
        format!("{{\"code\":{},\"stopped\":{}}}\n", self.code, self.stopped)
    }

    /// Reads an exit file's text; `None` when it is not one.
    pub fn parse(text: &str) -> Option<Ended> {
        let v: serde_json::Value = serde_json::from_str(text.trim()).ok()?;
        Some(Ended {
            code: i32::try_from(v.get("code")?.as_i64()?).ok()?,
            stopped: v.get("stopped")?.as_bool()?,
        })
    }
}

/// Writes `text` to `path` whole or not at all ([`crate::files::replace_whole`]).
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    crate::files::replace_whole(path, text.as_bytes(), 0o600)
}

fn parent() -> u32 {
    rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get().unsigned_abs())
}

/// Reaps every child that has ended; returns the agent's wait status when
/// it was among them.
fn reap(agent: u32) -> Option<rustix::process::WaitStatus> {
    let mut agent_status = None;
    while let Ok(Some((pid, status))) = rustix::process::wait(rustix::process::WaitOptions::NOHANG)
    {
        if pid.as_raw_nonzero().get().unsigned_abs() == agent {
            agent_status = Some(status);
        }
    }
    agent_status
}

fn code_of(status: rustix::process::WaitStatus) -> i32 {
    status
        .exit_status()
        .or_else(|| status.terminating_signal().map(|s| 128 + s))
        .unwrap_or(STOPPED)
}

/// Runs the supervisor; returns its exit code.
pub fn run(args: &Args) -> i32 {
    if args.detach && rustix::process::setsid().is_err() {
        eprintln_safe("afk-reaper: cannot start a session of its own");
        return CANNOT_START;
    }
    // Held until this function returns: after the exit file is written.
    let _lock = match &args.lock {
        None => None,
        Some(path) => {
            let file = match std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(path)
            {
                Ok(f) => f,
                Err(e) => {
                    eprintln_safe(&format!(
                        "afk-reaper: cannot open the lock {}: {e}",
                        path.display()
                    ));
                    return CANNOT_START;
                }
            };
            match file.try_lock() {
                Ok(()) => Some(file),
                // Another supervisor of this turn runs: start nothing.
                Err(std::fs::TryLockError::WouldBlock) => return ALREADY,
                Err(std::fs::TryLockError::Error(e)) => {
                    eprintln_safe(&format!("afk-reaper: cannot lock {}: {e}", path.display()));
                    return CANNOT_START;
                }
            }
        }
    };
    if args.exit_file.as_ref().is_some_and(|f| f.exists()) {
        // The turn ran already.
        return ALREADY;
    }
    let ended = supervise(args);
    if let Some(path) = &args.exit_file
        && let Err(e) = write_atomically(path, &ended.to_json())
    {
        eprintln_safe(&format!(
            "afk-reaper: cannot record how the agent ended in {}: {e}",
            path.display()
        ));
    }
    ended.code
}

/// Starts the agent and supervises its tree to the end.
fn supervise(args: &Args) -> Ended {
    let done = |code: i32| Ended {
        code,
        stopped: false,
    };
    let stop = Ended {
        code: STOPPED,
        stopped: true,
    };
    if let Err(e) = tree::become_subreaper() {
        eprintln_safe(&format!(
            "afk-reaper: cannot become the tree's subreaper: {e}"
        ));
        return done(CANNOT_START);
    }
    if args.owner.is_some_and(|o| parent() != o) {
        // The owner died before we started: start nothing.
        return stop;
    }
    let child = match std::process::Command::new(&args.argv[0])
        .args(&args.argv[1..])
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln_safe(&format!("afk-reaper: cannot start {:?}: {e}", args.argv[0]));
            return done(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                CANNOT_START
            });
        }
    };
    let agent = child.id();
    // The child is reaped by `reap` (every child of this process, the
    // agent and the orphans reparented here), never through `child`.
    drop(child);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln_safe(&format!("afk-reaper: no runtime: {e}"));
            tree::kill_descendants(std::process::id());
            return done(CANNOT_START);
        }
    };
    runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            tree::kill_descendants(std::process::id());
            return done(CANNOT_START);
        };
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let mut agent_status = None;
        let mut stopped = false;
        loop {
            tokio::select! {
                _ = term.recv() => stopped = true,
                _ = int.recv() => stopped = true,
                _ = hup.recv() => stopped = true,
                _ = tick.tick() => {}
            }
            if let Some(s) = reap(agent) {
                agent_status = Some(s);
            }
            if args.owner.is_some_and(|o| parent() != o) {
                stopped = true;
            }
            if stopped || agent_status.is_some() {
                break;
            }
        }
        // Whatever ended it: the whole tree goes, and is reaped.
        tree::kill_descendants(std::process::id());
        for _ in 0..100 {
            if let Some(s) = reap(agent) {
                agent_status = Some(s);
            }
            if tree::descendants(&tree::all(), std::process::id()).is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        match agent_status {
            Some(s) if !stopped => done(code_of(s)),
            _ => stop,
        }
    })
}

/// Writes one line to standard error, ignoring a closed pipe.
fn eprintln_safe(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| (*w).to_owned()).collect()
    }

    #[test]
    fn the_command_line_reads_strictly() {
        assert_eq!(
            parse(&args(&["--owner", "42", "--", "claude", "-p"])),
            Ok(Args {
                owner: Some(42),
                argv: args(&["claude", "-p"]),
                ..Args::default()
            })
        );
        assert_eq!(
            parse(&args(&["--", "sh", "--owner"])),
            Ok(Args {
                argv: args(&["sh", "--owner"]),
                ..Args::default()
            })
        );
        assert_eq!(
            parse(&args(&[
                "--detach",
                "--lock",
                "/r/turn-0.lock",
                "--exit-file",
                "/r/turn-0.exit",
                "--",
                "claude"
            ])),
            Ok(Args {
                detach: true,
                lock: Some("/r/turn-0.lock".into()),
                exit_file: Some("/r/turn-0.exit".into()),
                argv: args(&["claude"]),
                ..Args::default()
            })
        );
        for (bad, why) in [
            (&[][..], "usage"),
            (&["--"][..], "no program"),
            (&["--owner", "1", "--", "x"][..], "above 1"),
            (&["--owner", "x", "--", "x"][..], "above 1"),
            (&["--owner"][..], "above 1"),
            (&["sh"][..], "unknown argument"),
            (&["--lock"][..], "--lock needs a path"),
            (
                &["--exit-file", "", "--", "x"][..],
                "--exit-file needs a path",
            ),
        ] {
            let err = parse(&args(bad)).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn exit_files_read_back_and_nothing_else_does() {
        for e in [
            Ended {
                code: 0,
                stopped: false,
            },
            Ended {
                code: STOPPED,
                stopped: true,
            },
            Ended {
                code: 137,
                stopped: false,
            },
        ] {
            assert_eq!(Ended::parse(&e.to_json()), Some(e));
        }
        for bad in [
            "",
            "{}",
            "{\"code\":\"0\",\"stopped\":false}",
            "{\"code\":1}",
            "null",
        ] {
            assert_eq!(Ended::parse(bad), None, "{bad}");
        }
    }
}
