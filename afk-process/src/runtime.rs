//! The agent runtimes afk starts on this machine, defined once: `claude`,
//! `opencode`, or an operator's command. The checklist runner (`afk run`)
//! and the loop's local executor both start agents through these
//! definitions, so both build the same argument vectors, find the program
//! the same way, and read what it said ([`crate::said`]: errors, denials,
//! cost) the same way.
//!
//! - [`Runtime::argv`]: `claude -p --output-format json [--model m]`,
//!   `opencode run [--model m]`, or the operator's command line
//!   ([`split_command`]: split like a POSIX shell would, but never run
//!   through one). The prompt always goes to standard input, never argv.
//! - [`Runtime::turn_argv`]: the same for one turn of a conversation that
//!   may continue: claude names its session (`--session-id` on the first
//!   turn, `--resume` after), so a corrective turn continues where the agent
//!   stopped; the other runtimes start fresh every turn.
//! - [`Runtime::resolve`]: where the program is, or which setting to set.
//!
//! No permission-bypass flag is ever added: how far an agent may go is the
//! operator's configuration of that agent.

use std::path::{Path, PathBuf};

/// Why a runtime cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The command text does not split.
    #[error("{setting} {command:?}: {problem}")]
    BadCommand {
        /// Where it was given (`--agent-command`, `AFK_LOCAL_AGENT`).
        setting: String,
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

/// Which turn of a conversation a run is (see [`Runtime::turn_argv`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn<'a> {
    /// The conversation's first turn, under this session id (a UUID).
    First(&'a str),
    /// A later turn of the conversation with this session id.
    Next(&'a str),
}

impl Runtime {
    /// The runtime named `kind` (`afk run --runtime`). `env` reads
    /// `CLAUDE_BIN` / `OPENCODE_BIN`; `agent_command` is required (and only
    /// allowed) for `command`.
    ///
    /// # Errors
    /// An unknown kind, or a command that is missing, misplaced or does not
    /// split.
    pub fn from_settings(
        kind: &str,
        agent_command: Option<&str>,
        model: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Runtime, RuntimeError> {
        let bad = |command: &str, problem: String| RuntimeError::BadCommand {
            setting: "--agent-command".into(),
            command: command.to_owned(),
            problem,
        };
        match (kind, agent_command) {
            ("command", Some(text)) => Ok(Runtime::Command {
                argv: split_command(text).map_err(|problem| bad(text, problem))?,
            }),
            ("command", None) => Err(bad(
                "",
                "the command runtime needs --agent-command '<program> <args>'".into(),
            )),
            ("claude" | "opencode", Some(text)) => Err(bad(
                text,
                format!("--agent-command is only for --runtime command, not {kind}"),
            )),
            ("claude" | "opencode", None) => Self::named(kind, model, &env)
                .ok_or_else(|| RuntimeError::UnknownRuntime(kind.to_owned())),
            (other, _) => Err(RuntimeError::UnknownRuntime(other.to_owned())),
        }
    }

    /// The runtime an `AFK_LOCAL_AGENT` value names: `claude`, `opencode`,
    /// or any other text as a command line (`<program> <args>`, split like a
    /// shell would, never run through one). `env` reads `CLAUDE_BIN` /
    /// `OPENCODE_BIN`.
    ///
    /// # Errors
    /// A command line that names no program or does not split.
    pub fn from_agent_setting(
        setting: &str,
        text: &str,
        model: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Runtime, RuntimeError> {
        let text = text.trim();
        if let Some(named) = Self::named(text, model, &env) {
            return Ok(named);
        }
        Ok(Runtime::Command {
            argv: split_command(text).map_err(|problem| RuntimeError::BadCommand {
                setting: setting.to_owned(),
                command: text.to_owned(),
                problem,
            })?,
        })
    }

    /// `claude` or `opencode` with their program from `env`; `None` for
    /// any other name.
    fn named(
        kind: &str,
        model: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<Self> {
        let model = model.map(str::to_owned).filter(|m| !m.trim().is_empty());
        let bin = |var: &str, default: &str| {
            env(var)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        match kind {
            "claude" => Some(Runtime::Claude {
                bin: bin("CLAUDE_BIN", "claude"),
                model,
            }),
            "opencode" => Some(Runtime::OpenCode {
                bin: bin("OPENCODE_BIN", "opencode"),
                model,
            }),
            _ => None,
        }
    }

    /// The program this runtime starts.
    pub fn program(&self) -> &str {
        match self {
            Runtime::Claude { bin, .. } | Runtime::OpenCode { bin, .. } => bin,
            Runtime::Command { argv } => argv.first().map_or("", String::as_str),
        }
    }

    /// A short name for logs and records: `claude`, `opencode`, `command`.
    pub fn kind(&self) -> &'static str {
        match self {
            Runtime::Claude { .. } => "claude",
            Runtime::OpenCode { .. } => "opencode",
            Runtime::Command { .. } => "command",
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

    /// Whether a later turn continues the first turn's conversation
    /// (claude: `--resume`); otherwise every turn starts fresh, with the
    /// later turn's prompt alone.
    pub fn continues_sessions(&self) -> bool {
        matches!(self, Runtime::Claude { .. })
    }

    /// The argument vector of one turn of a conversation: claude's first
    /// turn names its session (`--session-id <uuid>`), a later one resumes
    /// it (`--resume <uuid>`); the other runtimes' turns are [`Self::argv`]
    /// (they start fresh).
    pub fn turn_argv(&self, turn: Turn<'_>) -> Vec<String> {
        let mut v = self.argv();
        if self.continues_sessions() {
            match turn {
                Turn::First(id) => v.extend(["--session-id".into(), id.to_owned()]),
                Turn::Next(id) => v.extend(["--resume".into(), id.to_owned()]),
            }
        }
        v
    }

    /// The program's path: as given when it holds a `/`, else the first
    /// executable match on `path` (the PATH variable's value).
    ///
    /// # Errors
    /// `NotFound`, saying which setting names the program.
    pub fn resolve(&self, path: Option<&str>) -> Result<PathBuf, RuntimeError> {
        let program = self.program();
        let hint = match self {
            Runtime::Claude { .. } => " (put it on PATH or set CLAUDE_BIN)",
            Runtime::OpenCode { .. } => " (put it on PATH or set OPENCODE_BIN)",
            Runtime::Command { .. } => " (give a path or put it on PATH)",
        };
        let not_found = || RuntimeError::NotFound {
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
///
/// # Errors
/// An unclosed quote, a lone trailing backslash, or no program at all.
pub fn split_command(text: &str) -> Result<Vec<String>, String> {
    let words = shlex::split(text)
        .ok_or_else(|| "a quote is not closed, or it ends with a lone backslash".to_owned())?;
    if words.is_empty() {
        return Err("it names no program".into());
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
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
    fn claude_continues_its_session_and_the_others_start_fresh() {
        let id = "0b8e0f3a-1c2d-5e6f-8a9b-0c1d2e3f4a5b";
        let claude =
            Runtime::from_agent_setting("AFK_LOCAL_AGENT", "claude", None, env_none).unwrap();
        assert_eq!(
            claude.turn_argv(Turn::First(id)),
            [
                "claude",
                "-p",
                "--output-format",
                "json",
                "--session-id",
                id
            ]
        );
        assert_eq!(
            claude.turn_argv(Turn::Next(id)),
            ["claude", "-p", "--output-format", "json", "--resume", id]
        );
        let opencode =
            Runtime::from_agent_setting("AFK_LOCAL_AGENT", " opencode ", None, env_none).unwrap();
        assert_eq!(opencode.turn_argv(Turn::Next(id)), ["opencode", "run"]);
        assert!(!opencode.continues_sessions());
        let command =
            Runtime::from_agent_setting("AFK_LOCAL_AGENT", "my-agent --fast 'a b'", None, env_none)
                .unwrap();
        assert_eq!(
            command.turn_argv(Turn::First(id)),
            ["my-agent", "--fast", "a b"]
        );
        assert_eq!(command.kind(), "command");
        let err = Runtime::from_agent_setting("AFK_LOCAL_AGENT", "'", None, env_none).unwrap_err();
        assert_eq!(
            err.to_string(),
            "AFK_LOCAL_AGENT \"'\": a quote is not closed, or it ends with a lone backslash"
        );
        let err = Runtime::from_agent_setting("AFK_LOCAL_AGENT", "  ", None, env_none).unwrap_err();
        assert!(err.to_string().contains("names no program"), "{err}");
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
