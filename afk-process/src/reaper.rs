//! The supervisor of one agent tree (`afk-reaper`): the program afk starts
//! instead of the agent, which starts the agent and owns everything it
//! starts.
//!
//! `afk-reaper [--owner PID] -- PROGRAM [ARGS…]`
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
//!   and the agent goes on (the local executor's per-run supervisor).
//!
//! It signals nothing but its own descendants. It does not read what the
//! agent prints (its caller does, through the inherited pipes).

use std::time::Duration;

use crate::tree;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The process whose death ends the tree, when given.
    pub owner: Option<u32>,
    /// The agent's program and arguments.
    pub argv: Vec<String>,
}

/// Exit code: the command line could not be read.
pub const USAGE: i32 = 125;
/// Exit code: the agent could not be started.
pub const CANNOT_START: i32 = 126;
/// Exit code: stopped before the agent ended by itself (128 + SIGTERM).
pub const STOPPED: i32 = 143;

/// Reads `[--owner PID] -- PROGRAM [ARGS…]`.
///
/// # Errors
/// What is wrong with the command line, in one line.
pub fn parse(args: &[String]) -> Result<Args, String> {
    let mut owner = None;
    let mut rest = args;
    loop {
        match rest.first().map(String::as_str) {
            Some("--owner") => {
                let pid = rest
                    .get(1)
                    .and_then(|p| p.parse::<u32>().ok())
                    .filter(|p| *p > 1)
                    .ok_or("--owner needs a process id above 1")?;
                owner = Some(pid);
                rest = &rest[2..];
            }
            Some("--") => {
                rest = &rest[1..];
                break;
            }
            Some(other) => {
                return Err(format!(
                    "unknown argument {other:?} (expected --owner PID or --)"
                ));
            }
            None => return Err("usage: afk-reaper [--owner PID] -- PROGRAM [ARGS...]".into()),
        }
    }
    if rest.is_empty() {
        return Err("no program to run after --".into());
    }
    Ok(Args {
        owner,
        argv: rest.to_vec(),
    })
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
    if let Err(e) = tree::become_subreaper() {
        eprintln_safe(&format!(
            "afk-reaper: cannot become the tree's subreaper: {e}"
        ));
        return CANNOT_START;
    }
    if args.owner.is_some_and(|o| parent() != o) {
        // The owner died before we started: start nothing.
        return STOPPED;
    }
    let child = match std::process::Command::new(&args.argv[0])
        .args(&args.argv[1..])
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln_safe(&format!("afk-reaper: cannot start {:?}: {e}", args.argv[0]));
            return if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                CANNOT_START
            };
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
            return CANNOT_START;
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
            return CANNOT_START;
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
            Some(s) if !stopped => code_of(s),
            _ => STOPPED,
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
                argv: args(&["claude", "-p"])
            })
        );
        assert_eq!(
            parse(&args(&["--", "sh", "--owner"])),
            Ok(Args {
                owner: None,
                argv: args(&["sh", "--owner"])
            })
        );
        for (bad, why) in [
            (&[][..], "usage"),
            (&["--"][..], "no program"),
            (&["--owner", "1", "--", "x"][..], "above 1"),
            (&["--owner", "x", "--", "x"][..], "above 1"),
            (&["--owner"][..], "above 1"),
            (&["sh"][..], "unknown argument"),
        ] {
            let err = parse(&args(bad)).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }
}
