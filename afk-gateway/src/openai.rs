//! What the gateway answers in OpenAI's terms: `chat.completion`,
//! `chat.completion.chunk` events, the error object, the model list. Pure:
//! values in, JSON out, written with non-ASCII characters as they are
//! (serde_json never escapes them).
//!
//! It does not choose status codes or run turns (that is `routes`).

use serde_json::{Value, json};

use crate::cli::Usage;
use crate::settings::Models;

/// One server-sent event carrying `value`.
pub fn event(value: &Value) -> String {
    format!("data: {value}\n\n")
}

/// The stream's last event.
pub const DONE: &str = "data: [DONE]\n\n";

/// Ids and names shared by every chunk of one answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `chatcmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model asked for.
    pub model: String,
}

impl Answer {
    /// A new answer to a request for `model`.
    pub fn new(model: &str) -> Answer {
        Answer {
            id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: model.to_owned(),
        }
    }

    /// A `chat.completion.chunk` with this delta and finish reason.
    pub fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        })
    }

    /// The first chunk: the assistant's role.
    pub fn role_chunk(&self) -> Value {
        self.chunk(json!({"role": "assistant"}), None)
    }

    /// A chunk with a piece of the reply.
    pub fn content_chunk(&self, text: &str) -> Value {
        self.chunk(json!({"content": text}), None)
    }

    /// The last chunk of the reply: an empty delta, `finish_reason: "stop"`.
    pub fn stop_chunk(&self) -> Value {
        self.chunk(json!({}), Some("stop"))
    }

    /// The usage chunk (`stream_options.include_usage`): no choices.
    pub fn usage_chunk(&self, usage: Usage) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage_json(usage),
        })
    }

    /// The whole `chat.completion`.
    pub fn completion(&self, text: &str, usage: Usage) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
                "logprobs": null,
            }],
            "usage": usage_json(usage),
        })
    }
}

fn usage_json(usage: Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens.saturating_add(usage.completion_tokens),
    })
}

/// OpenAI's error object: `{"error": {"message", "type", "param", "code"}}`.
pub fn error(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": kind, "param": param, "code": code}})
}

/// The models list (`GET /v1/models`).
pub fn models(models: &Models) -> Value {
    let data: Vec<Value> = models
        .list()
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "afk-gateway"}))
        .collect();
    json!({"object": "list", "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_and_completions_have_openai_s_shape_and_keep_non_ascii() {
        let answer = Answer {
            id: "chatcmpl-1".into(),
            created: 7,
            model: "sonnet".into(),
        };
        assert_eq!(
            event(&answer.role_chunk()),
            "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":7,\"model\":\"sonnet\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"},\"finish_reason\":null}]}\n\n"
        );
        assert!(
            event(&answer.content_chunk("Grüß dich 👋"))
                .contains("\"delta\":{\"content\":\"Grüß dich 👋\"}")
        );
        assert!(event(&answer.stop_chunk()).contains("\"delta\":{},\"finish_reason\":\"stop\""));
        let usage = Usage {
            prompt_tokens: 10,
            completion_tokens: 5,
        };
        assert_eq!(answer.usage_chunk(usage)["usage"]["total_tokens"], 15);
        assert_eq!(answer.usage_chunk(usage)["choices"], json!([]));
        let done = answer.completion("Grüß", usage);
        assert_eq!(done["object"], "chat.completion");
        assert_eq!(
            done["choices"][0]["message"],
            json!({"role": "assistant", "content": "Grüß"})
        );
        assert_eq!(done["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            done["usage"],
            json!({"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15})
        );
        assert!(Answer::new("m").id.starts_with("chatcmpl-"));
        assert_eq!(
            error("bad", "invalid_request_error", Some("model"), None),
            json!({"error": {"message": "bad", "type": "invalid_request_error", "param": "model", "code": null}})
        );
    }
}
