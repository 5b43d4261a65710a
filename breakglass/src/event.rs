//! The session event vocabulary, and the translation of the agent's
//! stream-json output into it.
//!
//! An event is a JSON object with an `id` (its position in the session log)
//! and a `type`:
//!
//! | type | fields | from |
//! | --- | --- | --- |
//! | `session` | `agent_session_id` | the agent's `system`/`init` line |
//! | `text` | `text` | one `text` block of an `assistant` line |
//! | `tool` | `name`, `input` | one `tool_use` block of an `assistant` line |
//! | `result` | `is_error`, `result`, `duration_ms` | the agent's `result` line |
//! | `user` | `prompt` | the prompt that started a turn |
//! | `error` | `message` | timeout, non-zero exit, a process that would not start |
//! | `cancelled` | | a turn stopped by cancel |
//! | `turn_end` | | the end of every turn, exactly once |
//!
//! [`translate`] is pure and total: hook lines, thinking blocks, tool
//! results, unknown types and lines that are not JSON yield nothing, never an
//! error, because one odd line must not end a repair session.

use serde_json::{Map, Value, json};

/// One translated event, before it gets its id.
pub type Body = Map<String, Value>;

/// The closed vocabulary of event types (the table above).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// The agent announced its session id.
    Session,
    /// A text block.
    Text,
    /// A tool call.
    Tool,
    /// The agent's result line.
    Result,
    /// The prompt that started a turn.
    User,
    /// A turn failed.
    Error,
    /// A turn was cancelled.
    Cancelled,
    /// A turn ended (exactly once per turn).
    TurnEnd,
}

impl EventType {
    /// Every type.
    pub const ALL: [EventType; 8] = [
        EventType::Session,
        EventType::Text,
        EventType::Tool,
        EventType::Result,
        EventType::User,
        EventType::Error,
        EventType::Cancelled,
        EventType::TurnEnd,
    ];

    /// Its `type` on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Session => "session",
            EventType::Text => "text",
            EventType::Tool => "tool",
            EventType::Result => "result",
            EventType::User => "user",
            EventType::Error => "error",
            EventType::Cancelled => "cancelled",
            EventType::TurnEnd => "turn_end",
        }
    }

    /// The type of `event`, when it has a known one.
    pub fn of(event: &Body) -> Option<EventType> {
        let name = event.get("type").and_then(Value::as_str)?;
        EventType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

/// An event of `kind` with `fields` (an object; anything else adds nothing).
fn body(kind: EventType, fields: Value) -> Body {
    let mut map = Map::new();
    map.insert("type".into(), Value::from(kind.as_str()));
    if let Value::Object(fields) = fields {
        map.extend(fields);
    }
    map
}

/// A `user` event.
pub fn user(prompt: &str) -> Body {
    body(EventType::User, json!({"prompt": prompt}))
}

/// An `error` event.
pub fn error(message: &str) -> Body {
    body(EventType::Error, json!({"message": message}))
}

/// A `cancelled` event.
pub fn cancelled() -> Body {
    body(EventType::Cancelled, Value::Null)
}

/// A `turn_end` event.
pub fn turn_end() -> Body {
    body(EventType::TurnEnd, Value::Null)
}

/// The events one line of the agent's stream-json output yields (often none).
pub fn translate(line: &str) -> Vec<Body> {
    let Ok(Value::Object(line)) = serde_json::from_str::<Value>(line.trim()) else {
        return Vec::new();
    };
    let kind = line.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "system" if line.get("subtype").and_then(Value::as_str) == Some("init") => {
            match line.get("session_id").and_then(Value::as_str) {
                Some(id) => vec![body(EventType::Session, json!({"agent_session_id": id}))],
                None => Vec::new(),
            }
        }
        "assistant" => line
            .get("message")
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array)
            .map(|blocks| blocks.iter().filter_map(block).collect())
            .unwrap_or_default(),
        "result" => vec![body(
            EventType::Result,
            json!({
                "is_error": line.get("is_error").and_then(Value::as_bool).unwrap_or(false),
                "result": line.get("result").and_then(Value::as_str).unwrap_or(""),
                "duration_ms": line.get("duration_ms").and_then(Value::as_u64),
            }),
        )],
        _ => Vec::new(),
    }
}

fn block(content: &Value) -> Option<Body> {
    match content.get("type").and_then(Value::as_str)? {
        "text" => {
            let text = content.get("text").and_then(Value::as_str)?;
            Some(body(EventType::Text, json!({"text": text})))
        }
        "tool_use" => Some(body(
            EventType::Tool,
            json!({
                "name": content.get("name").and_then(Value::as_str).unwrap_or("?"),
                "input": content.get("input").cloned().unwrap_or(Value::Null),
            }),
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_made_here_has_a_type_of_the_vocabulary() {
        let made = [
            user("p"),
            error("e"),
            cancelled(),
            turn_end(),
            translate(r#"{"type":"system","subtype":"init","session_id":"s"}"#).remove(0),
            translate(r#"{"type":"assistant","message":{"content":[{"type":"text","text":"t"},{"type":"tool_use","name":"Bash","input":{}}]}}"#).remove(1),
            translate(r#"{"type":"result","is_error":false,"result":"r","duration_ms":1}"#).remove(0),
        ];
        let kinds: Vec<Option<EventType>> = made.iter().map(EventType::of).collect();
        assert_eq!(
            kinds,
            [
                Some(EventType::User),
                Some(EventType::Error),
                Some(EventType::Cancelled),
                Some(EventType::TurnEnd),
                Some(EventType::Session),
                Some(EventType::Tool),
                Some(EventType::Result),
            ]
        );
        let mut names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len());
    }

    fn check(line: &str, want: Value) {
        let got: Vec<Value> = translate(line).into_iter().map(Value::Object).collect();
        assert_eq!(Value::Array(got), want, "{line}");
    }

    #[test]
    fn stream_json_lines_translate_to_the_small_vocabulary() {
        check(
            r#"{"type":"system","subtype":"init","session_id":"abc","tools":["Bash"],"model":"m"}"#,
            json!([{"type": "session", "agent_session_id": "abc"}]),
        );
        check(
            r#"{"type":"assistant","message":{"content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"Disk is full."},{"type":"tool_use","id":"t1","name":"Bash","input":{"command":"df -h"}}]}}"#,
            json!([
                {"type": "text", "text": "Disk is full."},
                {"type": "tool", "name": "Bash", "input": {"command": "df -h"}}
            ]),
        );
        check(
            r#"{"type":"result","subtype":"success","is_error":false,"result":"done","duration_ms":1234,"total_cost_usd":0.1}"#,
            json!([{"type": "result", "is_error": false, "result": "done", "duration_ms": 1234}]),
        );
        check(
            r#"{"type":"result","subtype":"error_max_turns","is_error":true}"#,
            json!([{"type": "result", "is_error": true, "result": "", "duration_ms": null}]),
        );
    }

    #[test]
    fn everything_else_is_dropped_never_fatal() {
        for line in [
            "",
            "not json at all",
            "[1,2]",
            "\"a string\"",
            r#"{"type":"system","subtype":"hook_response","hook":"x"}"#,
            r#"{"type":"system","subtype":"init"}"#,
            r#"{"type":"user","message":{"content":[{"type":"tool_result","content":"42"}]}}"#,
            r#"{"type":"assistant","message":{"content":[{"type":"thinking","thinking":"…"}]}}"#,
            r#"{"type":"assistant","message":{"content":"not a list"}}"#,
            r#"{"type":"assistant"}"#,
            r#"{"type":"stream_event","event":{}}"#,
            r#"{"no_type":true}"#,
            "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"text\"}]}}",
        ] {
            check(line, json!([]));
        }
    }
}
