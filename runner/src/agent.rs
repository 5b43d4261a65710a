//! Local agent processes for the checklist runner: `claude`, `opencode`, or
//! any command.
//!
//! - [`Runtime`] says which program runs: `claude -p --output-format json
//!   [--model m]`, `opencode run [--model m]`, or an operator's command line
//!   ([`split_command`]: split like a POSIX shell would, but never run through
//!   one). The prompt always goes to standard input, never into argv.
//! - [`run`] starts one agent with the `afk-process` toolkit (its own
//!   process group), captures stdout and stderr into the item's log while it
//!   runs, and ends it at the timeout or on cancel. Whatever ended it, the
//!   whole group is killed, so a child the agent left behind does not
//!   outlive it.
//!
//! The runner adds no permission-bypass flags: how far an agent may go is the
//! operator's configuration of that agent. Whether a run finished its item is
//! not decided here (see [`crate::decide::judge`]).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use afk_process::{End, Group, Spec};
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
    /// The process could not be started, or its log created.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The process ran, but could not be waited for or its log read back:
    /// what it did (and spent) is unknown.
    #[error("{what}: {source}")]
    Lost {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl AgentError {
    /// Whether the agent process ran (and may have spent money) before the
    /// error.
    pub fn after_start(&self) -> bool {
        matches!(self, AgentError::Lost { .. })
    }
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let what = what.into();
    move |source| AgentError::Io { what, source }
}

fn lost(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> AgentError {
    let what = what.into();
    move |source| AgentError::Lost { what, source }
}

/// Which agent program runs, and how it gets the prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runtime {
    /// Anthropic's `claude` CLI (`claude -p`); the prompt goes on standard input.
    Claude {
        /// The program (`CLAUDE_BIN`, else `claude` on PATH).
        bin: String,
        /// `--model`, when given.
        model: Option<String>,
    },
    /// `opencode run`; the prompt goes on standard input.
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

    /// The argument vector (program first). The prompt is never an
    /// argument: it goes to standard input for every runtime, so a prompt
    /// that starts with `-` can never be read as an option (`--settings=…`
    /// once ran a shell command), and a prompt past Linux's 128 KiB limit
    /// for one argument still works. Both CLIs read a piped prompt in print
    /// mode: `claude -p` reads standard input when it is not a terminal and
    /// no prompt argument is given; `opencode run` reads a piped message.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Runtime::Claude { bin, model } => {
                let mut v = vec![
                    bin.clone(),
                    "-p".into(),
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
                v
            }
            Runtime::Command { argv } => argv.clone(),
        }
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

/// Splits a command line into words the way a POSIX shell would (`shlex`):
/// blanks separate, `'…'` is literal, `"…"` keeps blanks and honours `\"`,
/// `\\`, `\$` and `` \` ``, a backslash outside quotes escapes the next
/// character, and a word starting with `#` starts a comment. Nothing is
/// expanded (`$VAR`, `~`, globs stay as written) and no shell ever runs it.
pub fn split_command(text: &str) -> Result<Vec<String>, String> {
    let words = shlex::split(text)
        .ok_or_else(|| "a quote is not closed, or it ends with a lone backslash".to_owned())?;
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
    /// What is left of the run's budget: claude gets it as
    /// `--max-budget-usd` (the other runtimes have no such limit).
    pub max_budget_usd: Option<f64>,
}

/// The spending cap `job`'s agent is given (claude's `--max-budget-usd`);
/// `None` when its runtime takes none or there is no budget. An agent that
/// ran with a cap and reported no cost counts as having spent it
/// ([`crate::decide::spend`]).
pub fn budget_cap(runtime: &Runtime, job: &AgentJob) -> Option<f64> {
    match runtime {
        Runtime::Claude { .. } => job.max_budget_usd,
        Runtime::OpenCode { .. } | Runtime::Command { .. } => None,
    }
}

/// What one agent run is charged by the campaign's rule: its reported cost
/// and the cap it ran with; `None` when it never started (it spent
/// nothing).
pub fn charge_of(
    runtime: &Runtime,
    job: &AgentJob,
    result: &Result<AgentRun, AgentError>,
) -> Option<(Option<f64>, Option<f64>)> {
    match result {
        Ok(run) => Some((run.cost_usd, budget_cap(runtime, job))),
        Err(e) if e.after_start() => Some((None, budget_cap(runtime, job))),
        Err(_) => None,
    }
}

/// How an agent run ended.
#[derive(Debug, Clone, PartialEq)]
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
    /// What the agent said about how it went, on one line (its own error
    /// text, tools it was denied, else its last line of stderr or stdout;
    /// see `afk_process::said`).
    pub said: Option<String>,
    /// The cost it reported (claude's `total_cost_usd`); `None` when it
    /// reported none.
    pub cost_usd: Option<f64>,
    /// Wall time from start to end.
    pub duration: Duration,
    /// Its process id (and process group id).
    pub pid: u32,
}

/// At most this much of stdout and stderr is kept in memory (the log on disk
/// keeps everything).
const KEPT: usize = 8 << 20;

/// How long the output readers may take once the group is gone.
const GRACE: Duration = Duration::from_secs(5);

/// Runs one agent to its end: exit, timeout, or cancel, through the
/// `afk-process` toolkit (its own process group, killed whole at the end).
/// `on_start` gets the process id (which is also its process group id) as
/// soon as it runs, so the caller can record it for a later cleanup.
///
/// # Errors
/// `NotFound` when the program does not exist, `Io` when the log cannot be
/// written or the process cannot be started.
pub async fn run(
    runtime: &Runtime,
    job: &AgentJob,
    cancel: watch::Receiver<bool>,
    on_start: impl FnOnce(u32),
) -> Result<AgentRun, AgentError> {
    let mut argv = runtime.argv();
    if let Some(cap) = budget_cap(runtime, job) {
        argv.extend(["--max-budget-usd".to_owned(), format!("{cap:.4}")]);
    }
    let program = argv.first().cloned().unwrap_or_default();
    let log = File::create(&job.log).map_err(io_error(format!(
        "cannot create the agent log {}",
        job.log.display()
    )))?;
    let log = Arc::new(Mutex::new(log));
    let spec = Spec {
        argv,
        cwd: Some(job.cwd.clone()),
        env: job.env.clone(),
        stdin: Some(job.prompt.clone().into_bytes()),
    };
    let started = Instant::now();
    let mut group = Group::spawn(&spec).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AgentError::NotFound {
            program: program.clone(),
            hint: String::new(),
        },
        _ => AgentError::Io {
            what: format!("cannot start {program:?}"),
            source: e,
        },
    })?;
    let pid = group.pgid();
    on_start(pid);
    let out = afk_process::pump(group.take_stdout(), log.clone(), KEPT);
    let err = afk_process::pump(group.take_stderr(), log.clone(), KEPT);
    let end = group.supervise(async {}, job.timeout, Some(cancel)).await;
    let duration = started.elapsed();
    let (status, timed_out, cancelled) = match end {
        End::Exited(status) => (
            Some(status.map_err(lost("cannot wait for the agent"))?),
            false,
            false,
        ),
        End::TimedOut => (None, true, false),
        End::Cancelled => (None, false, true),
    };
    let stdout = afk_process::collect(out, GRACE).await;
    let stderr = afk_process::collect(err, GRACE).await;
    let output = std::fs::read(&job.log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(lost(format!(
            "cannot read the agent log {}",
            job.log.display()
        )))?;
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    let said = afk_process::said::failure(&stdout, &String::from_utf8_lossy(&stderr));
    let cost_usd = afk_process::said::cost(&stdout);
    Ok(AgentRun {
        exit_code: status.and_then(|s| s.code()),
        timed_out,
        cancelled,
        stdout,
        output,
        said,
        cost_usd,
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

    const QUOTE: &str = "a quote is not closed, or it ends with a lone backslash";

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
        check_split("a 'b", Err(QUOTE));
        check_split("a \"b", Err(QUOTE));
        check_split("a \\", Err(QUOTE));
        // A word starting with `#` starts a comment, as in a shell.
        check_split("agent --x # the rest", Ok(&["agent", "--x"]));
        check_split("agent a#b", Ok(&["agent", "a#b"]));
        check_split("# only a comment", Err("it names no program"));
    }

    fn env_none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn runtimes_build_their_argument_vectors() {
        let claude = Runtime::from_settings("claude", None, Some("opus"), env_none).unwrap();
        assert_eq!(
            claude.argv(),
            ["claude", "-p", "--output-format", "json", "--model", "opus"]
        );
        let opencode = Runtime::from_settings("opencode", None, None, |k| {
            (k == "OPENCODE_BIN").then(|| "/opt/oc".to_owned())
        })
        .unwrap();
        assert_eq!(opencode.argv(), ["/opt/oc", "run"]);
        let command =
            Runtime::from_settings("command", Some("bash x.sh --y"), None, env_none).unwrap();
        assert_eq!(command.argv(), ["bash", "x.sh", "--y"]);
    }

    #[test]
    fn bad_runtime_settings_are_named() {
        for (kind, command, want) in [
            ("gpt", None, "unknown runtime \"gpt\""),
            ("command", None, "needs --agent-command"),
            ("claude", Some("x"), "only for --runtime command"),
            ("command", Some("'x"), "a quote is not closed"),
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
