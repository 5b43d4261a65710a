//! The agent CLI as the gateway drives it (Claude Code 2.x): its argument
//! vector, the one message a turn writes to its standard input, and the
//! lines of its stream-json output that matter here. Pure: no process is
//! started here (that is `turn` and `pool`, on `afk-process`).
//!
//! Every turn runs `claude -p --agents <file> --agent conversational
//! --model M --setting-sources user --exclude-dynamic-system-prompt-sections`
//! with no tools, never `--dangerously-skip-permissions`, and a session
//! argument: `--session-id ID` (a conversation's first turn), `--resume ID`
//! (its later turns) or `--no-session-persistence` (a chat completion, whose
//! client re-sends the whole history every turn).
//!
//! "No tools" takes more than `--tools ""` (no built-in tool offered to the
//! model) and `--strict-mcp-config` (no MCP server brings any): Claude Code
//! 2.1 expands `@path` in a message by running its Read tool itself (and
//! `@dir/` by running `ls` through Bash) before the model sees anything, so
//! `@/etc/passwd` would send the file's contents, whatever `--tools` says.
//! A deny rule for every tool in `--settings` ([`DENY_ALL_TOOLS`]) stops
//! that: the mention then reaches the model as plain text (checked against
//! the real CLI in `bins/tests/real_gateway.rs`). `--disallowedTools Read`
//! does not stop it.
//!
//! The message goes to standard input as one stream-json user message
//! (`--input-format stream-json`), never into argv, so a message starting
//! with `-` is text. A message starting with `/` would still be taken for a
//! slash command (`--disable-slash-commands` only makes it answer "isn't
//! available" instead of sending it to the model), so [`user_message`]
//! sends it with one leading space, which the CLI passes on as text. That input format is also what makes a process started
//! ahead of time worth having: the CLI finishes its whole start-up before it
//! waits for a message (with plain-text input it reads standard input early
//! and still spends about 250 ms after the message arrives; measured in
//! `docs/gateway.md`). Output is always `--output-format stream-json
//! --include-partial-messages --verbose`: text deltas as the model streams
//! them, then one `result` line (its text, `is_error`, token usage), which
//! serves the non-streaming answers too.
//!
//! It does not decide what a failure means for a client (that is `server`).

use serde_json::{Value, json};

/// The agent's name in the `--agents` file.
pub const AGENT: &str = "conversational";

/// How a turn's process relates to a CLI session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Session {
    /// No session kept (`--no-session-persistence`): a chat completion.
    None,
    /// A new session with this id (`--session-id`): a conversation's first turn.
    New(uuid::Uuid),
    /// An existing session (`--resume`): a conversation's later turn.
    Resume(uuid::Uuid),
}

/// The settings every turn adds (`--settings`): every tool denied, so no
/// tool runs even when the CLI would run one by itself (an `@path`
/// mention).
pub const DENY_ALL_TOOLS: &str = r#"{"permissions":{"deny":["Read","Write","Edit","MultiEdit","NotebookEdit","Bash","Glob","Grep","LS","WebFetch","WebSearch","Task","Agent","Skill","TodoWrite"]}}"#;

/// The argument vector of one turn's process.
pub fn argv(bin: &str, agents_file: &str, model: &str, session: Session) -> Vec<String> {
    let mut argv: Vec<String> = [
        bin,
        "-p",
        "--agents",
        agents_file,
        "--agent",
        AGENT,
        "--model",
        model,
        "--setting-sources",
        "user",
        "--exclude-dynamic-system-prompt-sections",
        "--tools",
        "",
        "--settings",
        DENY_ALL_TOOLS,
        "--strict-mcp-config",
        "--disable-slash-commands",
        "--input-format",
        "stream-json",
        "--output-format",
        "stream-json",
        "--include-partial-messages",
        "--verbose",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    match session {
        Session::None => argv.push("--no-session-persistence".to_owned()),
        Session::New(id) => argv.extend(["--session-id".to_owned(), id.to_string()]),
        Session::Resume(id) => argv.extend(["--resume".to_owned(), id.to_string()]),
    }
    argv
}

/// The `--agents` file: the conversational agent, its instructions the
/// operator's.
pub fn agents_file(instructions: &str) -> String {
    json!({
        AGENT: {
            "description": "A spoken conversation partner: short, plain answers in the user's language.",
            "prompt": instructions,
        }
    })
    .to_string()
}

/// The one line a turn writes to the CLI's standard input: `text` as a
/// user message, with one space before it when it starts with `/` (so that
/// it is not taken for a slash command).
pub fn user_message(text: &str) -> String {
    let spaced;
    let text = if text.starts_with('/') {
        spaced = format!(" {text}");
        &spaced
    } else {
        text
    };
    let mut line = json!({
        "type": "user",
        "message": {"role": "user", "content": text},
    })
    .to_string();
    line.push('\n');
    line
}

/// The line that primes a process waiting for its turn: a blank user
/// message. Claude Code answers a blank prompt itself, without the model
/// ("Blank prompt — the message was only whitespace, so nothing was sent
/// to the model.", then a `result` with `num_turns: 0`), keeps nothing of
/// it in the conversation or its transcript, and has by then done the
/// work it otherwise does on its first message. Measured against Claude
/// Code 2.1.332 (docs/gateway.md): a primed process asks the model about
/// 40 % sooner.
pub const PRIME: &str = "{\"type\":\"user\",\"message\":{\"role\":\"user\",\"content\":\" \"}}\n";

/// Whether `outcome` answered [`PRIME`] as a blank prompt: no error and no
/// model turn. Anything else (a CLI that sent it to the model) means the
/// process must not serve a turn.
pub fn answered_blank(outcome: &Outcome) -> bool {
    !outcome.is_error
        && serde_json::from_str::<Value>(&outcome.line)
            .ok()
            .and_then(|v| v["num_turns"].as_u64())
            == Some(0)
}

/// Tokens the CLI reports for a turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Input tokens, cached or not.
    pub prompt_tokens: u64,
    /// Output tokens.
    pub completion_tokens: u64,
}

/// The CLI's `result` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Whether the CLI says the turn failed.
    pub is_error: bool,
    /// The reply (or, on error, the CLI's own error text).
    pub text: String,
    /// The tokens it reports.
    pub usage: Usage,
    /// The line itself, for `afk_process::said`.
    pub line: String,
}

/// What one line of the CLI's output means here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A piece of the reply, as the model streamed it.
    Delta(String),
    /// The turn's result.
    Result(Outcome),
    /// Anything else (init, status, hooks, whole messages, other events,
    /// lines that are not JSON): not needed, never fatal.
    Other,
}

/// Reads one line of stream-json output.
pub fn parse(line: &str) -> Line {
    // A `Value`, never a `Map`: indexing a map by a missing key panics,
    // indexing a value yields null.
    let Ok(v) = serde_json::from_str::<Value>(line.trim()) else {
        return Line::Other;
    };
    match v.get("type").and_then(Value::as_str) {
        Some("stream_event") => {
            let event = &v["event"];
            if event["type"] == "content_block_delta"
                && event["delta"]["type"] == "text_delta"
                && let Some(text) = event["delta"]["text"].as_str()
            {
                return Line::Delta(text.to_owned());
            }
            Line::Other
        }
        Some("result") => {
            let usage = &v["usage"];
            let count = |k: &str| usage[k].as_u64().unwrap_or(0);
            Line::Result(Outcome {
                is_error: v["is_error"].as_bool().unwrap_or(true),
                text: v["result"].as_str().unwrap_or("").to_owned(),
                usage: Usage {
                    prompt_tokens: count("input_tokens")
                        .saturating_add(count("cache_creation_input_tokens"))
                        .saturating_add(count("cache_read_input_tokens")),
                    completion_tokens: count("output_tokens"),
                },
                line: line.trim().to_owned(),
            })
        }
        _ => Line::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_turn_is_lean_tool_less_and_never_skips_permissions() {
        let id = uuid::Uuid::nil();
        for (session, tail) in [
            (Session::None, vec!["--no-session-persistence"]),
            (
                Session::New(id),
                vec!["--session-id", "00000000-0000-0000-0000-000000000000"],
            ),
            (
                Session::Resume(id),
                vec!["--resume", "00000000-0000-0000-0000-000000000000"],
            ),
        ] {
            let argv = argv("claude", "/run/agents.json", "sonnet", session);
            let mut want = vec![
                "claude",
                "-p",
                "--agents",
                "/run/agents.json",
                "--agent",
                "conversational",
                "--model",
                "sonnet",
                "--setting-sources",
                "user",
                "--exclude-dynamic-system-prompt-sections",
                "--tools",
                "",
                "--settings",
                DENY_ALL_TOOLS,
                "--strict-mcp-config",
                "--disable-slash-commands",
                "--input-format",
                "stream-json",
                "--output-format",
                "stream-json",
                "--include-partial-messages",
                "--verbose",
            ];
            want.extend(tail);
            assert_eq!(argv, want);
            assert!(!argv.iter().any(|a| a.contains("dangerously")));
        }
        let settings: Value = serde_json::from_str(DENY_ALL_TOOLS).unwrap_or(Value::Null);
        let denied: Vec<&str> = settings["permissions"]["deny"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        for tool in ["Read", "Bash", "Write", "WebFetch", "Task"] {
            assert!(denied.contains(&tool), "{tool} is denied: {denied:?}");
        }
    }

    #[test]
    fn the_message_is_one_json_line_whatever_it_holds() {
        for text in [
            "-p --dangerously-skip-permissions",
            "/clear",
            "a\nb\u{2028}c",
            "Grüß Gott 👋",
            "\"}\n{",
        ] {
            let line = user_message(text);
            assert_eq!(line.matches('\n').count(), 1, "{line}");
            assert!(line.ends_with('\n'));
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            assert_eq!(v["type"], "user");
            let sent = v["message"]["content"].as_str().unwrap_or("");
            assert_eq!(sent.trim_start_matches(' '), text.trim_start_matches(' '));
            assert!(!sent.starts_with('/'), "{sent}");
        }
        let slash: Value = serde_json::from_str(&user_message("/clear")).unwrap_or(Value::Null);
        assert_eq!(slash["message"]["content"], " /clear");
        let dash: Value = serde_json::from_str(&user_message("-p")).unwrap_or(Value::Null);
        assert_eq!(dash["message"]["content"], "-p");
        // Non-ASCII text is written as it is.
        assert!(user_message("Grüß").contains("Grüß"));
    }

    #[test]
    fn the_prime_is_a_blank_message_and_only_a_blank_answer_counts() {
        let v: Value = serde_json::from_str(PRIME.trim_end()).unwrap();
        assert_eq!(v["type"], "user");
        assert!(v["message"]["content"].as_str().unwrap().trim().is_empty());
        assert!(PRIME.ends_with('\n') && PRIME.matches('\n').count() == 1);
        // What Claude Code 2.1.332 printed for a blank prompt (trimmed of
        // fields afk does not read), and for a turn it sent to the model.
        let blank = r#"{"type":"result","subtype":"success","is_error":false,"duration_api_ms":0,"num_turns":0,"result":"","session_id":"8dab609a-648b-4917-a8c1-21e660573982","total_cost_usd":0,"usage":{"input_tokens":0,"output_tokens":0}}"#;
        let asked = blank.replace(r#""num_turns":0"#, r#""num_turns":1"#);
        let failed = blank.replace(r#""is_error":false"#, r#""is_error":true"#);
        let outcome = |line: &str| match parse(line) {
            Line::Result(o) => o,
            other => panic!("{other:?}"),
        };
        assert!(answered_blank(&outcome(blank)));
        assert!(!answered_blank(&outcome(&asked)));
        assert!(!answered_blank(&outcome(&failed)));
        let unsaid = blank.replace(r#""num_turns":0,"#, "");
        assert!(!answered_blank(&outcome(&unsaid)));
    }

    #[test]
    fn the_agents_file_carries_the_instructions_verbatim() {
        let text = "Antworte kurz.\n\"Quoted\" and \\ backslash";
        let v: Value = serde_json::from_str(&agents_file(text)).unwrap_or(Value::Null);
        assert_eq!(v[AGENT]["prompt"], text);
        assert!(
            v[AGENT]["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }

    fn check(line: &str, want: Line) {
        assert_eq!(parse(line), want, "{line}");
    }

    #[test]
    fn deltas_and_the_result_are_read_and_everything_else_is_dropped() {
        check(
            r#"{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Grüß "}},"session_id":"s"}"#,
            Line::Delta("Grüß ".into()),
        );
        let result = r#"{"type":"result","subtype":"success","is_error":false,"result":"Hallo!","usage":{"input_tokens":10,"cache_creation_input_tokens":3,"cache_read_input_tokens":2,"output_tokens":5}}"#;
        check(
            result,
            Line::Result(Outcome {
                is_error: false,
                text: "Hallo!".into(),
                usage: Usage {
                    prompt_tokens: 15,
                    completion_tokens: 5,
                },
                line: result.into(),
            }),
        );
        // A result that does not say it succeeded is not taken for success.
        let bare = r#"{"type":"result"}"#;
        check(
            bare,
            Line::Result(Outcome {
                is_error: true,
                text: String::new(),
                usage: Usage::default(),
                line: bare.into(),
            }),
        );
        for other in [
            "",
            "not json",
            "[1]",
            r#"{"type":"system","subtype":"init","session_id":"s"}"#,
            r#"{"type":"stream_event","event":{"type":"content_block_delta","delta":{"type":"input_json_delta","partial_json":"{"}}}"#,
            r#"{"type":"stream_event","event":{"type":"content_block_delta","delta":{"type":"thinking_delta","thinking":"hm"}}}"#,
            r#"{"type":"stream_event","event":{"type":"content_block_delta","delta":{"type":"text_delta","text":7}}}"#,
            r#"{"type":"stream_event"}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"text","text":"whole"}]}}"#,
        ] {
            check(other, Line::Other);
        }
    }
}
