//! `POST /v1/chat/completions`: OpenAI's protocol, streaming and not, over
//! the scripted CLI; every refusal in OpenAI's error shape.

use serde_json::{Value, json};

use crate::common::{TOKEN, ask, events, json, settings, start, start_with};

/// A voice client's request: the whole history, re-sent.
fn history(stream: bool) -> Value {
    json!({
        "model": "sonnet",
        "stream": stream,
        "temperature": 0.7,
        "messages": [
            {"role": "system", "content": "Du bist ein Sprachassistent."},
            {"role": "user", "content": "Wie spät ist es?"},
            {"role": "assistant", "content": "Kurz nach drei."},
            {"role": "user", "content": "Und das Wetter? ☀️"},
        ],
    })
}

const DIALOGUE: &str = "Du bist ein Sprachassistent.\n\nUser: Wie spät ist es?\nAssistant: Kurz nach drei.\nUser: Und das Wetter? ☀️";

/// What the scripted CLI answers to the dialogue above.
const REPLY: &str = "Hallo! Du sagtest: User: Und das Wetter? ☀️ — Runde 1 👋";

#[tokio::test]
async fn a_streamed_answer_is_the_role_one_chunk_per_delta_a_stop_and_done() {
    let gateway = start("stream").await;
    let response = gateway.chat(history(true)).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = events(response).await;
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{events:?}"
    );
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let id = chunks[0]["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-"));
    for chunk in &chunks {
        assert_eq!(chunk["id"], id);
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["model"], "sonnet");
        assert!(chunk["created"].as_u64().is_some());
        assert_eq!(chunk["choices"][0]["index"], 0);
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant"})
    );
    assert_eq!(chunks[0]["choices"][0]["finish_reason"], Value::Null);
    let last = chunks.last().unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    let deltas: Vec<&str> = chunks[1..chunks.len() - 1]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    // One chunk per delta the CLI streamed (it streams word by word), and
    // the text intact, non-ASCII included.
    assert_eq!(deltas.concat(), REPLY);
    assert_eq!(deltas.len(), REPLY.split_whitespace().count(), "{deltas:?}");
    // The CLI got the dialogue, and no other message.
    let messages = gateway.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].1, DIALOGUE);
}

#[tokio::test]
async fn a_whole_answer_carries_the_reply_and_the_usage_the_cli_reports() {
    let gateway = start("whole").await;
    let (status, body) = json(gateway.chat(history(false)).await).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "sonnet");
    assert_eq!(
        body["choices"],
        json!([{"index": 0, "message": {"role": "assistant", "content": REPLY}, "finish_reason": "stop", "logprobs": null}])
    );
    // The scripted CLI reports 12 input, 3 cache-creation, 5 cache-read and
    // 7 output tokens.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27})
    );
}

#[tokio::test]
async fn a_stream_with_include_usage_ends_with_a_usage_chunk() {
    let gateway = start("usage").await;
    let mut request = history(true);
    request["stream_options"] = json!({"include_usage": true});
    let events = events(gateway.chat(request).await).await;
    let usage: Value = serde_json::from_str(&events[events.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["total_tokens"], 27);
    let stop: Value = serde_json::from_str(&events[events.len() - 3]).unwrap();
    assert_eq!(stop["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn each_turn_runs_lean_without_tools_in_an_empty_directory_removed_after() {
    let gateway = start("lean").await;
    let (status, _) = json(gateway.chat(ask("Hallo")).await).await;
    assert_eq!(status, 200);
    let (pid, _) = gateway.messages()[0].clone();
    let start = gateway.start_of(pid);
    let argv: Vec<&str> = start["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for (flag, value) in [
        ("--agent", Some("conversational")),
        ("--model", Some("sonnet")),
        ("--setting-sources", Some("user")),
        ("--tools", Some("")),
        ("--input-format", Some("stream-json")),
        ("--output-format", Some("stream-json")),
        ("--exclude-dynamic-system-prompt-sections", None),
        ("--include-partial-messages", None),
        ("--verbose", None),
        ("--strict-mcp-config", None),
        ("--no-session-persistence", None),
    ] {
        let at = argv
            .iter()
            .position(|a| *a == flag)
            .unwrap_or_else(|| panic!("{flag} missing: {argv:?}"));
        if let Some(value) = value {
            assert_eq!(argv[at + 1], value, "{argv:?}");
        }
    }
    assert!(!argv.iter().any(|a| a.contains("dangerously")), "{argv:?}");
    assert!(argv.contains(&"-p"));
    // The agent's instructions are the operator's.
    let agents = argv[argv.iter().position(|a| *a == "--agents").unwrap() + 1];
    let agents: Value = serde_json::from_str(&std::fs::read_to_string(agents).unwrap()).unwrap();
    assert_eq!(
        agents["conversational"]["prompt"],
        "Antworte kurz, in der Sprache des Nutzers."
    );
    // An empty directory of its own, gone once the turn is over.
    assert_eq!(start["cwd_entries"], json!([]));
    let cwd = std::path::PathBuf::from(start["cwd"].as_str().unwrap());
    assert!(cwd.starts_with(gateway.dir.join("work")), "{cwd:?}");
    crate::common::wait_until("the turn's directory to be removed", || !cwd.exists()).await;
}

#[tokio::test]
async fn an_agent_failure_is_one_clear_line_with_a_status_that_says_so() {
    let gateway = start("failures").await;
    for (message, status, kind, says) in [
        (
            "FAIL",
            502,
            "server_error",
            "the agent CLI failed: model overloaded, try again later (exit code 2)",
        ),
        (
            "APIERR",
            502,
            "server_error",
            "the agent CLI failed: claude: API Error: 401 invalid x-api-key",
        ),
        (
            "SILENT",
            502,
            "server_error",
            "it exited with code 0 without an answer",
        ),
    ] {
        for stream in [false, true] {
            let mut request = ask(message);
            request["stream"] = json!(stream);
            let (got, body) = json(gateway.chat(request).await).await;
            assert_eq!(got, status, "{message}: {body}");
            let error = &body["error"];
            assert_eq!(error["type"], kind, "{body}");
            let text = error["message"].as_str().unwrap();
            assert!(text.contains(says), "{message}: {text}");
            assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text:?}");
        }
    }
}

#[tokio::test]
async fn a_turn_past_its_timeout_is_stopped_and_answers_504() {
    let dir = crate::common::scratch("timeout");
    let mut s = settings(&dir);
    s.turn_timeout = std::time::Duration::from_secs(1);
    let gateway = start_with(dir, s).await;
    let (status, body) = json(gateway.chat(ask("HANG")).await).await;
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["type"], "timeout");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("timeout of 1 s")
    );
    crate::common::all_dead(&gateway.hung().await).await;
}

#[tokio::test]
async fn bad_requests_are_refused_in_openai_s_shape_before_any_cli_hears_of_them() {
    let gateway = start("refusals").await;
    let url = |path: &str| format!("{}{path}", gateway.url);
    let chat = url("/v1/chat/completions");
    let http = &gateway.http;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str, Option<&str>)> = vec![
        (
            http.post(&chat)
                .bearer_auth(TOKEN)
                .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]})),
            400,
            "supported models: sonnet, haiku",
            Some("model"),
        ),
        (
            http.post(&chat)
                .bearer_auth(TOKEN)
                .json(&json!({"model": "sonnet", "messages": [{"role": "tool", "content": "42"}]})),
            400,
            "runs no tools",
            Some("messages[0].role"),
        ),
        (
            http.post(&chat)
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body("{\"model\":"),
            400,
            "not valid JSON",
            None,
        ),
        (
            http.post(&chat)
                .bearer_auth(TOKEN)
                .header("content-type", "text/plain")
                .body("hi"),
            415,
            "must be JSON",
            None,
        ),
        (
            http.post(&chat).json(&ask("x")),
            401,
            "missing or wrong bearer token",
            None,
        ),
        (
            http.post(&chat).bearer_auth("wrong").json(&ask("x")),
            401,
            "missing or wrong bearer token",
            None,
        ),
        (
            http.post(&chat)
                .header("authorization", format!("Basic {TOKEN}"))
                .json(&ask("x")),
            401,
            "missing or wrong bearer token",
            None,
        ),
        (http.get(&chat).bearer_auth(TOKEN), 405, "not allowed", None),
        (
            http.get(url("/v1/nope")).bearer_auth(TOKEN),
            404,
            "no such route",
            None,
        ),
        (
            http.get(url("/v1/nope")),
            401,
            "missing or wrong bearer token",
            None,
        ),
        (
            http.post(url("/v1/conversational"))
                .bearer_auth(TOKEN)
                .json(&json!({"message": "x"})),
            400,
            "`session_id` is required",
            Some("session_id"),
        ),
    ];
    for (request, status, says, param) in cases {
        let response = request.send().await.unwrap();
        let got = response.status().as_u16();
        if got == 401 {
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
        }
        let body: Value = response.json().await.unwrap();
        assert_eq!(got, status, "{body}");
        let error = &body["error"];
        assert!(error["message"].as_str().unwrap().contains(says), "{body}");
        assert!(error["type"].as_str().is_some(), "{body}");
        assert_eq!(error["param"].as_str(), param, "{body}");
    }
    assert!(
        gateway.messages().is_empty(),
        "no CLI heard a refused request"
    );
    // The model list, and the health check that needs no token.
    let models: Value = http
        .get(url("/v1/models"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["sonnet", "haiku"]);
    assert_eq!(http.get(url("/health")).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn without_a_token_every_request_is_refused() {
    let dir = crate::common::scratch("no-token");
    let mut s = settings(&dir);
    s.token = afk_edge::auth::Bearer::new(None);
    let gateway = start_with(dir, s).await;
    for auth in ["", "Bearer ", "Bearer  ", &format!("Bearer {TOKEN}")] {
        let mut request = gateway
            .http
            .post(format!("{}/v1/chat/completions", gateway.url))
            .json(&ask("x"));
        if !auth.is_empty() {
            request = request.header("authorization", auth);
        }
        let (status, body) = json(request.send().await.unwrap()).await;
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no token configured")
        );
    }
    assert!(gateway.messages().is_empty());
}
