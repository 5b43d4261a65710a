//! What an agent CLI said about how its run went, fit for one line of a
//! status or an `error` event.
//!
//! `claude -p --output-format json` exits 1 with an empty stderr and puts
//! its error in stdout: one JSON object (or, with `--verbose`, an array of
//! messages; with `stream-json`, one message per line) whose `result`
//! message carries `is_error`, `subtype`, `result` and `permission_denials`.
//! A denied tool does not even make the run an error (claude reports
//! `is_error: false` and exit 0, the refusal only in `permission_denials`;
//! anthropics/claude-code#76867, #90578), so denials are named whatever the
//! exit. Any other CLI: the last line it wrote to stderr, else to stdout.

use serde_json::Value;

/// How many characters of what an agent said are kept.
pub const SAID_MAX: usize = 400;

/// What the agent said about its failure, on one line: its own error text
/// (claude's `result` when `is_error`), the tools it was denied and what to
/// configure; otherwise the last line of `stderr` (else of `stdout`) that
/// names an error, else its last line. `None` when it said nothing.
pub fn failure(stdout: &str, stderr: &str) -> Option<String> {
    if let Some(result) = claude_result(stdout) {
        let mut parts = Vec::new();
        if result.get("is_error").and_then(Value::as_bool) == Some(true) {
            let text = result
                .get("result")
                .and_then(Value::as_str)
                .filter(|t| !t.trim().is_empty())
                .or_else(|| result.get("subtype").and_then(Value::as_str))
                .unwrap_or("an error without text");
            parts.push(format!("claude: {text}"));
        }
        if let Some(denied) = denials(&result) {
            parts.push(denied);
        }
        if !parts.is_empty() {
            return Some(one_line(&parts.join("; "), SAID_MAX));
        }
    }
    [stderr, stdout]
        .into_iter()
        .find_map(last_line)
        .map(|line| one_line(line, SAID_MAX))
}

/// The last line that names an error, else the last line with text.
fn last_line(text: &str) -> Option<&str> {
    let mut lines = text
        .lines()
        .rev()
        .filter(|l| !afk_core::prompt::strip_ansi(l).trim().is_empty());
    let last = lines.clone().next()?;
    Some(
        lines
            .find(|l| {
                afk_core::prompt::strip_ansi(l)
                    .to_ascii_lowercase()
                    .contains("error")
            })
            .unwrap_or(last),
    )
}

/// The tools claude was denied in the run `stdout` reports, and where to
/// allow them, if any (claude counts a denied run as a success).
pub fn denied(stdout: &str) -> Option<String> {
    denials(&claude_result(stdout)?)
}

/// The tools claude was denied, and where to allow them, if any.
fn denials(result: &Value) -> Option<String> {
    let list = result.get("permission_denials")?.as_array()?;
    let mut names: Vec<String> = Vec::new();
    for denial in list {
        let Some(tool) = denial.get("tool_name").and_then(Value::as_str) else {
            continue;
        };
        let what = denial
            .get("tool_input")
            .and_then(|i| i.get("command").or_else(|| i.get("file_path")))
            .and_then(Value::as_str)
            .map(|c| format!("{tool} ({})", one_line(c, 60)))
            .unwrap_or_else(|| tool.to_owned());
        if !names.contains(&what) {
            names.push(what);
        }
    }
    if names.is_empty() {
        return None;
    }
    Some(format!(
        "claude was denied {}; allow the tool in the agent's settings \
         ($HOME/.claude/settings.json, permissions.allow)",
        names.join(", ")
    ))
}

/// Whether claude reported its run as an error (`is_error` of its
/// `result` message), whatever its exit code.
pub fn reported_error(stdout: &str) -> bool {
    claude_result(stdout)
        .and_then(|r| r.get("is_error").and_then(Value::as_bool))
        .unwrap_or(false)
}

/// The cost claude reports for its run (`total_cost_usd` of its `result`
/// message); `None` when it reports none (another CLI, or a run that died).
pub fn cost(stdout: &str) -> Option<f64> {
    claude_result(stdout)?
        .get("total_cost_usd")?
        .as_f64()
        .filter(|c| c.is_finite() && *c >= 0.0)
}

/// How an agent's run ended, read from what it printed: the one reading
/// both executors that run the CLIs themselves use (the local executor from
/// its turn's files, the Kubernetes executor from its pod's log).
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    /// claude reported the run as an error, whatever its exit.
    pub reported_error: bool,
    /// What it said: its failure when the run failed, else the tools it was
    /// denied, if any.
    pub said: Option<String>,
    /// What it reports the run cost.
    pub cost: Option<afk_core::Cost>,
}

/// How a run ended: `exited_ok` is what the process's exit says (exit 0,
/// not stopped); the CLI's own report can still make it a failure.
pub fn ending(exited_ok: bool, stdout: &str, stderr: &str) -> Ending {
    let reported_error = reported_error(stdout);
    let said = if exited_ok && !reported_error {
        denied(stdout)
    } else {
        failure(stdout, stderr)
    };
    Ending {
        reported_error,
        said,
        cost: cost(stdout).and_then(afk_core::Cost::from_usd),
    }
}

/// claude's `result` message in `stdout`, whichever output format it used.
fn claude_result(stdout: &str) -> Option<Value> {
    let is_result = |v: &Value| v.get("type").and_then(Value::as_str) == Some("result");
    let trimmed = stdout.trim();
    if let Ok(whole) = serde_json::from_str::<Value>(trimmed) {
        return match whole {
            Value::Array(messages) => messages.into_iter().rev().find(is_result),
            one => Some(one).filter(is_result),
        };
    }
    trimmed
        .lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(is_result)
}

/// `text` on one line: ANSI sequences and control characters removed,
/// whitespace folded, at most `max` characters (`…` when cut).
fn one_line(text: &str, max: usize) -> String {
    afk_core::prompt::one_line(&afk_core::prompt::strip_ansi(text), max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of a real `claude -p --output-format json` error result
    /// (Claude Code 2.1: `type`, `subtype`, `is_error`, `result`,
    /// `permission_denials` of `{tool_name, tool_use_id, tool_input}`).
    const API_ERROR: &str = r#"{"type":"result","subtype":"success","is_error":true,"duration_ms":812,"num_turns":1,"result":"API Error: 401 {\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"invalid x-api-key\"}}","session_id":"0b8e","total_cost_usd":0,"permission_denials":[]}"#;

    #[test]
    fn claude_s_own_error_text_is_the_reason() {
        let said = failure(API_ERROR, "").unwrap();
        assert!(said.starts_with("claude: API Error: 401"), "{said}");
        assert!(said.contains("invalid x-api-key"), "{said}");
    }

    #[test]
    fn a_denied_tool_is_named_with_what_to_configure_even_on_success() {
        let out = r#"{"type":"result","subtype":"success","is_error":false,"result":"I could not run the command.","permission_denials":[{"tool_name":"Bash","tool_use_id":"t1","tool_input":{"command":"afk finding add --severity high\nsecond line"}},{"tool_name":"Bash","tool_use_id":"t2","tool_input":{"command":"afk finding add --severity high\nsecond line"}},{"tool_name":"Write","tool_use_id":"t3","tool_input":{"file_path":"FINAL_REPORT.md","content":"x"}}]}"#;
        let said = failure(out, "").unwrap();
        assert_eq!(
            said,
            "claude was denied Bash (afk finding add --severity high second line), \
             Write (FINAL_REPORT.md); allow the tool in the agent's settings \
             ($HOME/.claude/settings.json, permissions.allow)"
        );
    }

    #[test]
    fn verbose_arrays_and_stream_lines_are_read_too() {
        let array = format!(r#"[{{"type":"system","subtype":"init"}},{API_ERROR}]"#);
        assert!(failure(&array, "").unwrap().contains("invalid x-api-key"));
        let lines = format!("{{\"type\":\"system\"}}\nnot json\n{API_ERROR}\n");
        assert!(failure(&lines, "").unwrap().contains("invalid x-api-key"));
    }

    #[test]
    fn an_error_without_text_says_its_subtype() {
        let out = r#"{"type":"result","subtype":"error_max_turns","is_error":true}"#;
        assert_eq!(failure(out, "").unwrap(), "claude: error_max_turns");
    }

    #[test]
    fn other_clis_give_their_last_line_without_colours() {
        let stderr = "starting\n\u{1b}[31mError:\u{1b}[0m Model not found: \u{1b}]8;;http://x\u{7}anthropic/x\u{1b}]8;;\u{7}\n\n";
        assert_eq!(
            failure("some output", stderr).unwrap(),
            "Error: Model not found: anthropic/x"
        );
        assert_eq!(failure("last words\n", " \n").unwrap(), "last words");
        // opencode's database error: the error line, not the dump after it.
        let dump = "\u{1b}[91m\u{1b}[1mError: \u{1b}[0mUnexpected error\n\nFailed query:\n  CREATE TABLE `workspace` (\n  );\nparams: \n";
        assert_eq!(failure(dump, "").unwrap(), "Error: Unexpected error");
        assert_eq!(failure("", ""), None);
        // A successful claude result with nothing denied says nothing of its own.
        let fine = r#"{"type":"result","is_error":false,"result":"done","permission_denials":[]}"#;
        assert_eq!(failure(fine, "").unwrap().len(), fine.len());
    }

    #[test]
    fn claude_s_own_error_flag_is_read() {
        assert!(reported_error(API_ERROR));
        assert!(!reported_error(r#"{"type":"result","is_error":false}"#));
        assert!(!reported_error("Error: something"));
        assert!(!reported_error(""));
    }

    #[test]
    fn claude_s_cost_is_read_and_nothing_else_is_guessed() {
        assert_eq!(cost(API_ERROR), Some(0.0));
        let paid = r#"{"type":"result","is_error":false,"total_cost_usd":0.0016}"#;
        assert_eq!(cost(paid), Some(0.0016));
        assert_eq!(cost(r#"{"type":"result","total_cost_usd":-1}"#), None);
        assert_eq!(cost(r#"{"type":"result","total_cost_usd":"0.1"}"#), None);
        assert_eq!(cost("Done. ITEM COMPLETE: X"), None);
    }

    #[test]
    fn one_line_is_one_line_and_bounded() {
        assert_eq!(one_line("a\r\n\tb\u{0}c  ", 100), "a bc");
        let long = "é".repeat(1000);
        let cut = one_line(&long, 10);
        assert_eq!(cut.chars().count(), 10);
        assert!(cut.ends_with('…'));
        assert_eq!(one_line("\u{1b}[1;31m\u{1b}", 10), "");
    }
}
