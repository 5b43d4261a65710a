//! Local agent processes for the checklist runner: `claude`, `opencode`, or
//! any command.
//!
//! - [`Runtime`] says which program runs and how the prompt reaches it:
//!   `claude -p <prompt> --output-format json [--model m]`,
//!   `opencode run [--model m] <prompt>`, or an operator's command line
//!   ([`split_command`]: split like a POSIX shell would, but never run through
//!   one) with the prompt on standard input.
//! - [`run`] starts one agent in its own process group, captures stdout and
//!   stderr into the item's log while it runs, and ends it at the timeout or
//!   on cancel by killing the whole group. After any ending the group is
//!   killed once more, so a child the agent left behind does not outlive it.
//!
//! The runner adds no permission-bypass flags: how far an agent may go is the
//! operator's configuration of that agent. Whether a run finished its item is
//! not decided here (see `checklist::campaign::judge`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// Why an agent could not be run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The `--agent-command` text does not split.
    #[error("--agent-command {command:?}: {problem}")]
    BadCommand {
        /// The text.
        command: String,
        /// What is wrong with it.
        problem: String,
    },
    /// An unknown runtime name.
    #[error("unknown runtime {0:?} (expected claude, opencode or command)")]
    UnknownRuntime(String),
    /// The program is not on PATH (or the configured path does not exist).
    #[error("cannot find the agent program {program:?}{hint}")]
    NotFound {
        /// The program.
        program: String,
        /// Where to set it.
        hint: String,
    },
    /// The process could not be started or watched, or its log written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let what = what.into();
    move |source| AgentError::Io { what, source }
}

/// Which agent program runs, and how it gets the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// Anthropic's `claude` CLI; the prompt is an argument.
    Claude {
        /// The program (`CLAUDE_BIN`, else `claude` on PATH).
        bin: String,
        /// `--model`, when given.
        model: Option<String>,
    },
    /// `opencode run`; the prompt is an argument.
    OpenCode {
        /// The program (`OPENCODE_BIN`, else `opencode` on PATH).
        bin: String,
        /// `--model`, when given.
        model: Option<String>,
    },
    /// Any program; the prompt goes to its standard input.
    Command {
        /// The program and its arguments.
        argv: Vec<String>,
    },
}

impl Runtime {
    /// The runtime named `kind`. `env` reads `CLAUDE_BIN` / `OPENCODE_BIN`;
    /// `agent_command` is required (and only allowed) for `command`.
    pub fn from_settings(
        kind: &str,
        agent_command: Option<&str>,
        model: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Runtime, AgentError> {
        let model = model.map(str::to_owned).filter(|m| !m.trim().is_empty());
        let bin = |var: &str, default: &str| {
            env(var)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        match (kind, agent_command) {
            ("command", Some(text)) => Ok(Runtime::Command {
                argv: split_command(text).map_err(|problem| AgentError::BadCommand {
                    command: text.to_owned(),
                    problem,
                })?,
            }),
            ("command", None) => Err(AgentError::BadCommand {
                command: String::new(),
                problem: "the command runtime needs --agent-command '<program> <args>'".into(),
            }),
            ("claude" | "opencode", Some(text)) => Err(AgentError::BadCommand {
                command: text.to_owned(),
                problem: format!("--agent-command is only for --runtime command, not {kind}"),
            }),
            ("claude", None) => Ok(Runtime::Claude {
                bin: bin("CLAUDE_BIN", "claude"),
                model,
            }),
            ("opencode", None) => Ok(Runtime::OpenCode {
                bin: bin("OPENCODE_BIN", "opencode"),
                model,
            }),
            (other, _) => Err(AgentError::UnknownRuntime(other.to_owned())),
        }
    }

    /// The program this runtime starts.
    pub fn program(&self) -> &str {
        match self {
            Runtime::Claude { bin, .. } | Runtime::OpenCode { bin, .. } => bin,
            Runtime::Command { argv } => argv.first().map_or("", String::as_str),
        }
    }

    /// The argument vector for `prompt` (program first).
    pub fn argv(&self, prompt: &str) -> Vec<String> {
        match self {
            Runtime::Claude { bin, model } => {
                let mut v = vec![
                    bin.clone(),
                    "-p".into(),
                    prompt.into(),
                    "--output-format".into(),
                    "json".into(),
                ];
                if let Some(m) = model {
                    v.extend(["--model".into(), m.clone()]);
                }
                v
            }
            Runtime::OpenCode { bin, model } => {
                let mut v = vec![bin.clone(), "run".into()];
                if let Some(m) = model {
                    v.extend(["--model".into(), m.clone()]);
                }
                v.push(prompt.into());
                v
            }
            Runtime::Command { argv } => argv.clone(),
        }
    }

    /// Whether the prompt goes to standard input (else it is an argument).
    pub fn prompt_on_stdin(&self) -> bool {
        matches!(self, Runtime::Command { .. })
    }

    /// The program's path: as given when it holds a `/`, else the first
    /// executable match on `path` (the PATH variable's value).
    pub fn resolve(&self, path: Option<&str>) -> Result<PathBuf, AgentError> {
        let program = self.program();
        let hint = match self {
            Runtime::Claude { .. } => " (put it on PATH or set CLAUDE_BIN)",
            Runtime::OpenCode { .. } => " (put it on PATH or set OPENCODE_BIN)",
            Runtime::Command { .. } => " (give a path or put it on PATH)",
        };
        let not_found = || AgentError::NotFound {
            program: program.to_owned(),
            hint: hint.to_owned(),
        };
        if program.contains('/') {
            let p = PathBuf::from(program);
            return if is_executable(&p) {
                Ok(p)
            } else {
                Err(not_found())
            };
        }
        path.unwrap_or("")
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| Path::new(d).join(program))
            .find(|p| is_executable(p))
            .ok_or_else(not_found)
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Splits a command line into words the way a POSIX shell would for simple
/// words: blanks separate, `'…'` is literal, `"…"` keeps blanks and honours
/// `\"`, `\\`, `\$` and `` \` ``, a backslash outside quotes escapes the next
/// character. Nothing is expanded (`$VAR`, `~`, globs stay as written) and no
/// shell ever runs it.
pub fn split_command(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("a single quote is not closed".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => word.push(c),
                            Some('\n') => {}
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("a double quote is not closed".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("a double quote is not closed".into()),
                    }
                }
            }
            '\\' => match chars.next() {
                Some('\n') => {}
                Some(c) => {
                    in_word = true;
                    word.push(c);
                }
                None => return Err("it ends with a lone backslash".into()),
            },
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    if words.is_empty() {
        return Err("it names no program".into());
    }
    Ok(words)
}

/// One agent run to perform.
#[derive(Debug, Clone)]
pub struct AgentJob {
    /// The prompt.
    pub prompt: String,
    /// Extra environment (`AFK_ITEM_ID`, …), on top of afk's own.
    pub env: Vec<(String, String)>,
    /// The working directory.
    pub cwd: PathBuf,
    /// Where stdout and stderr go while it runs (created or truncated).
    pub log: PathBuf,
    /// How long it may run.
    pub timeout: Duration,
}

/// How an agent run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRun {
    /// The exit code; `None` when it was killed or died by a signal.
    pub exit_code: Option<i32>,
    /// Killed at the timeout.
    pub timed_out: bool,
    /// Killed because the runner was told to stop.
    pub cancelled: bool,
    /// Its standard output alone (what reports and synthesis read).
    pub stdout: String,
    /// Its stdout and stderr as written to the log.
    pub output: String,
    /// The first 500 characters of its stderr.
    pub stderr_head: String,
    /// Wall time from start to end.
    pub duration: Duration,
    /// Its process id (and process group id).
    pub pid: u32,
}

/// Stops a process group with SIGKILL; a group that is already gone is fine.
pub fn kill_group(pgid: u32) {
    let Some(pid) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
}

/// Whether any process of group `pgid` is still alive (zombies included).
pub fn group_alive(pgid: u32) -> bool {
    i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .is_some_and(|pid| rustix::process::test_kill_process_group(pid).is_ok())
}

/// A bounded copy of what a stream produced: at most `LIMIT` bytes are kept
/// (the log on disk keeps everything).
const LIMIT: usize = 8 << 20;

async fn pump(
    mut stream: impl AsyncRead + Unpin,
    log: Arc<Mutex<File>>,
) -> std::io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(kept);
        }
        {
            let mut file = log
                .lock()
                .map_err(|_| std::io::Error::other("log lock poisoned"))?;
            file.write_all(&buf[..n])?;
        }
        let room = LIMIT.saturating_sub(kept.len()).min(n);
        kept.extend_from_slice(&buf[..room]);
    }
}

/// Resolves when `cancel` turns true (never, if its sender is gone).
async fn cancelled(mut cancel: watch::Receiver<bool>) {
    loop {
        if *cancel.borrow_and_update() {
            return;
        }
        if cancel.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Runs one agent to its end: exit, timeout, or cancel. `on_start` gets the
/// process id (which is also its process group id) as soon as it runs, so the
/// caller can record it for a later cleanup.
pub async fn run(
    runtime: &Runtime,
    job: &AgentJob,
    cancel: watch::Receiver<bool>,
    on_start: impl FnOnce(u32),
) -> Result<AgentRun, AgentError> {
    let argv = runtime.argv(&job.prompt);
    let (program, args) = argv.split_first().ok_or_else(|| AgentError::BadCommand {
        command: String::new(),
        problem: "it names no program".into(),
    })?;
    let log = File::create(&job.log).map_err(io_error(format!(
        "cannot create the agent log {}",
        job.log.display()
    )))?;
    let log = Arc::new(Mutex::new(log));
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(job.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&job.cwd)
        .stdin(if runtime.prompt_on_stdin() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            AgentError::NotFound {
                program: program.clone(),
                hint: String::new(),
            }
        } else {
            AgentError::Io {
                what: format!("cannot start {program:?}"),
                source: e,
            }
        }
    })?;
    let pid = child.id().unwrap_or(0);
    on_start(pid);
    if let Some(mut stdin) = child.stdin.take() {
        let prompt = job.prompt.clone();
        // An agent that never reads its input is fine: a closed pipe is not
        // an error worth reporting.
        tokio::spawn(async move {
            let _ = stdin.write_all(prompt.as_bytes()).await;
            let _ = stdin.shutdown().await;
        });
    }
    let out = child
        .stdout
        .take()
        .map(|s| tokio::spawn(pump(s, log.clone())));
    let err = child
        .stderr
        .take()
        .map(|s| tokio::spawn(pump(s, log.clone())));

    enum End {
        Exited(std::io::Result<std::process::ExitStatus>),
        TimedOut,
        Cancelled,
    }
    let end = tokio::select! {
        status = child.wait() => End::Exited(status),
        () = tokio::time::sleep(job.timeout) => End::TimedOut,
        () = cancelled(cancel) => End::Cancelled,
    };
    // Whatever ended it, nothing of its group may outlive it.
    kill_group(pid);
    let (timed_out, was_cancelled) = (matches!(end, End::TimedOut), matches!(end, End::Cancelled));
    let status = match end {
        End::Exited(status) => Some(status.map_err(io_error("cannot wait for the agent"))?),
        End::TimedOut | End::Cancelled => {
            let _ = child.wait().await;
            None
        }
    };
    let duration = started.elapsed();
    // With the group gone the pipes close; a process that escaped the group
    // (setsid) could hold them open, so the wait is bounded.
    let collect = |task: Option<tokio::task::JoinHandle<std::io::Result<Vec<u8>>>>| async move {
        match task {
            Some(t) => match tokio::time::timeout(Duration::from_secs(5), t).await {
                Ok(Ok(Ok(bytes))) => bytes,
                _ => Vec::new(),
            },
            None => Vec::new(),
        }
    };
    let stdout = collect(out).await;
    let stderr = collect(err).await;
    let output = std::fs::read(&job.log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(io_error(format!(
            "cannot read the agent log {}",
            job.log.display()
        )))?;
    Ok(AgentRun {
        exit_code: status.and_then(|s| s.code()),
        timed_out,
        cancelled: was_cancelled,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        output,
        stderr_head: String::from_utf8_lossy(&stderr).chars().take(500).collect(),
        duration,
        pid,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn check_split(text: &str, want: Result<&[&str], &str>) {
        let got = split_command(text);
        match want {
            Ok(words) => assert_eq!(
                got,
                Ok(words.iter().map(|w| (*w).to_owned()).collect()),
                "{text:?}"
            ),
            Err(problem) => assert_eq!(got, Err(problem.to_owned()), "{text:?}"),
        }
    }

    #[test]
    fn command_lines_split_like_a_shell_without_one() {
        check_split("agent --fast", Ok(&["agent", "--fast"]));
        check_split("  a   b\tc  ", Ok(&["a", "b", "c"]));
        check_split(
            "sh -c 'echo $HOME; rm -rf x'",
            Ok(&["sh", "-c", "echo $HOME; rm -rf x"]),
        );
        check_split(
            r#"say "two words" "q\"uote" "back\\slash" "\n""#,
            Ok(&["say", "two words", "q\"uote", "back\\slash", "\\n"]),
        );
        check_split(r"a\ b c\'d", Ok(&["a b", "c'd"]));
        check_split("''", Ok(&[""]));
        check_split("a''b", Ok(&["ab"]));
        check_split("~/bin/x *.md $PATH", Ok(&["~/bin/x", "*.md", "$PATH"]));
        check_split("a; b | c", Ok(&["a;", "b", "|", "c"]));
        check_split("", Err("it names no program"));
        check_split("   ", Err("it names no program"));
        check_split("a 'b", Err("a single quote is not closed"));
        check_split("a \"b", Err("a double quote is not closed"));
        check_split("a \\", Err("it ends with a lone backslash"));
    }

    fn env_none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn runtimes_build_their_argument_vectors() {
        let claude = Runtime::from_settings("claude", None, Some("opus"), env_none).unwrap();
        assert_eq!(
            claude.argv("do it"),
            [
                "claude",
                "-p",
                "do it",
                "--output-format",
                "json",
                "--model",
                "opus"
            ]
        );
        assert!(!claude.prompt_on_stdin());
        let opencode = Runtime::from_settings("opencode", None, None, |k| {
            (k == "OPENCODE_BIN").then(|| "/opt/oc".to_owned())
        })
        .unwrap();
        assert_eq!(opencode.argv("p"), ["/opt/oc", "run", "p"]);
        let command =
            Runtime::from_settings("command", Some("bash x.sh --y"), None, env_none).unwrap();
        assert_eq!(command.argv("ignored"), ["bash", "x.sh", "--y"]);
        assert!(command.prompt_on_stdin());
    }

    #[test]
    fn bad_runtime_settings_are_named() {
        for (kind, command, want) in [
            ("gpt", None, "unknown runtime \"gpt\""),
            ("command", None, "needs --agent-command"),
            ("claude", Some("x"), "only for --runtime command"),
            ("command", Some("'x"), "single quote is not closed"),
        ] {
            let err = Runtime::from_settings(kind, command, None, env_none).unwrap_err();
            assert!(err.to_string().contains(want), "{kind}: {err}");
        }
    }

    #[test]
    fn programs_resolve_on_path_or_say_where_to_set_them() {
        let sh = Runtime::Command {
            argv: vec!["sh".into()],
        };
        assert!(sh.resolve(Some("/nonexistent:/bin:/usr/bin")).is_ok());
        let claude = Runtime::from_settings("claude", None, None, env_none).unwrap();
        let err = claude.resolve(Some("/nonexistent")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot find the agent program \"claude\" (put it on PATH or set CLAUDE_BIN)"
        );
        let abs = Runtime::Command {
            argv: vec!["/nonexistent/agent".into()],
        };
        assert!(abs.resolve(Some("/bin")).is_err());
    }
}
