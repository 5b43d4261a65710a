//! The gateway against hostile clients and a runaway CLI: disconnects
//! mid-turn, huge and slow bodies, endless output, floods past the caps,
//! two turns on one conversation, half-sent requests.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{TOKEN, all_dead, ask, json, scratch, settings, start, start_with};

fn address(url: &str) -> String {
    url.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_stops_the_cli_s_whole_tree_at_once() {
    let gateway = start("drop-stream").await;
    let mut request = ask("HANG");
    request["stream"] = json!(true);
    let mut response = gateway.chat(request).await;
    assert_eq!(response.status(), 200);
    // The first word arrives; then the client goes away.
    let first = tokio::time::timeout(Duration::from_secs(20), response.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("Einen Moment"));
    let tree = gateway.hung().await;
    assert_eq!(tree.len(), 3);
    drop(response);
    // The CLI, its child, and the grandchild that left the group with
    // setsid: all gone, and the turn with them.
    all_dead(&tree).await;
    crate::common::wait_until("the turn to end", || gateway.app.running() == 0).await;
}

#[tokio::test]
async fn a_client_that_disconnects_while_waiting_for_a_whole_answer_stops_the_tree() {
    let gateway = start("drop-whole").await;
    let body = ask("HANG").to_string();
    let mut socket = TcpStream::connect(address(&gateway.url)).await.unwrap();
    socket
        .write_all(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let tree = gateway.hung().await;
    drop(socket);
    all_dead(&tree).await;
    crate::common::wait_until("the turn to end", || gateway.app.running() == 0).await;
}

#[tokio::test]
async fn huge_and_slow_bodies_are_refused_without_a_turn() {
    let dir = scratch("bodies");
    let mut s = settings(&dir);
    s.max_body = 64 * 1024;
    s.body_timeout = Duration::from_secs(1);
    let gateway = start_with(dir, s).await;
    // Declared too large: refused before reading.
    let big =
        json!({"model": "sonnet", "messages": [{"role": "user", "content": "x".repeat(100_000)}]});
    let (status, body) = json(gateway.chat(big).await).await;
    assert_eq!(status, 413, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than 65536 bytes")
    );
    // Chunked, with no length declared: cut off at the cap.
    let mut socket = TcpStream::connect(address(&gateway.url)).await.unwrap();
    socket
        .write_all(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let chunk = format!("1000\r\n{}\r\n", " ".repeat(4096));
    for _ in 0..100 {
        if socket.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), socket.read(&mut answer))
        .await
        .unwrap()
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A body that never finishes arriving: 408 once its time is over.
    let mut socket = TcpStream::connect(address(&gateway.url)).await.unwrap();
    socket
        .write_all(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"model\""
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(20), socket.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(gateway.messages().is_empty(), "no CLI heard of them");
}

#[tokio::test]
async fn endless_output_is_stopped_at_the_reply_cap_and_a_huge_line_is_skipped() {
    let gateway = start("endless").await;
    let (status, body) = json(gateway.chat(ask("ENDLESS")).await).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the reply passed 1048576 bytes")
    );
    assert_eq!(body["error"]["code"], "reply_too_long");
    let pid = gateway.messages()[0].0;
    all_dead(&[pid]).await;
    // A line past the line cap is skipped; the reply after it comes through.
    let (status, body) = json(gateway.chat(ask("BIGLINE 3000000")).await).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("Du sagtest")
    );
}

#[tokio::test]
async fn past_the_turn_cap_requests_wait_then_get_429_or_503_with_retry_after() {
    let dir = scratch("caps");
    let mut s = settings(&dir);
    s.max_turns = 1;
    s.max_waiting = 1;
    s.queue_wait = Duration::from_secs(1);
    let gateway = start_with(dir, s).await;
    // One turn holds the only slot.
    let mut holding = ask("HANG");
    holding["stream"] = json!(true);
    let held = gateway.chat(holding).await;
    assert_eq!(held.status(), 200);
    assert_eq!(gateway.app.running(), 1);
    // One request waits in the queue; the next finds it full.
    let waiting = tokio::spawn({
        let request = gateway.post("/v1/chat/completions").json(&ask("hello"));
        async move { request.send().await.unwrap() }
    });
    crate::common::wait_until("a request to wait", || gateway.app.waiting() == 1).await;
    let full = gateway.chat(ask("hello")).await;
    assert_eq!(full.status(), 429);
    assert_eq!(full.headers()["retry-after"], "1");
    let (_, body) = json(full).await;
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let waited = waiting.await.unwrap();
    assert_eq!(waited.status(), 503);
    assert_eq!(waited.headers()["retry-after"], "1");
    let (_, body) = json(waited).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no turn came free within 1 s")
    );
    // The slot frees when the turn's client goes away; a turn runs again.
    drop(held);
    crate::common::wait_until("the slot to free", || gateway.app.running() == 0).await;
    let (status, _) = json(gateway.chat(ask("hello")).await).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_second_turn_of_one_conversation_waits_for_the_first_then_409() {
    let dir = scratch("one-at-a-time");
    let mut s = settings(&dir);
    s.conversation_wait = Duration::from_secs(1);
    let gateway = start_with(dir, s).await;
    // A slow first turn: the second waits for it and then resumes.
    let first = tokio::spawn({
        let request = gateway
            .post("/v1/conversational")
            .json(&json!({"session_id": "c", "message": "SLOW 50"}));
        async move { request.send().await.unwrap() }
    });
    crate::common::wait_until("the first turn to start", || !gateway.messages().is_empty()).await;
    let (status, second) = json(gateway.say("c", "danach").await).await;
    assert_eq!(status, 200, "{second}");
    assert_eq!(second["reply"], "Hallo! Du sagtest: danach — Runde 2 👋");
    assert_eq!(first.await.unwrap().status(), 200);
    // A turn that never ends: the next one waits its time, then 409.
    let hanging = tokio::spawn({
        let request = gateway
            .post("/v1/conversational")
            .json(&json!({"session_id": "c", "message": "HANG"}));
        async move { request.send().await }
    });
    let tree = gateway.hung().await;
    let (status, busy) = json(gateway.say("c", "hallo?").await).await;
    assert_eq!(status, 409, "{busy}");
    assert!(
        busy["error"]["message"]
            .as_str()
            .unwrap()
            .contains("one turn at a time")
    );
    // Another conversation is not held up.
    let (status, _) = json(gateway.say("other", "hallo").await).await;
    assert_eq!(status, 200);
    hanging.abort();
    let _ = hanging.await;
    all_dead(&tree).await;
}

#[tokio::test]
async fn half_sent_requests_cannot_lock_out_the_owner() {
    let dir = scratch("slowloris");
    let mut s = settings(&dir);
    s.limits.header_timeout = Duration::from_secs(1);
    s.limits.max_connections = 16;
    let gateway = start_with(dir, s).await;
    // The owner's client has a connection open, proven by its token.
    let (status, _) = json(gateway.chat(ask("vorher")).await).await;
    assert_eq!(status, 200);
    let mut attackers = Vec::new();
    for _ in 0..160 {
        if let Ok(mut c) = TcpStream::connect(address(&gateway.url)).await {
            let _ = c
                .write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
                .await;
            attackers.push(c);
        }
    }
    let (status, _) = json(gateway.chat(ask("hallo")).await).await;
    assert_eq!(status, 200, "the owner's turn runs during the attack");
    // A new connection is never left hanging: refused at once with
    // Retry-After while the half-sent heads hold the room (none of them is
    // cut short), and let in once their header timeout has closed them.
    let fresh = || async {
        reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", gateway.url))
            .bearer_auth(crate::common::TOKEN)
            .json(&ask("neu"))
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .unwrap()
    };
    let during = fresh().await;
    if during.status() == 503 {
        assert!(during.headers().contains_key("retry-after"), "{during:?}");
        // In OpenAI's error shape, as every other error of the gateway.
        let error: serde_json::Value = during.json().await.unwrap();
        assert_eq!(error["error"]["type"], "server_error", "{error}");
    } else {
        assert_eq!(during.status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fresh().await.status(), 200, "room again after the timeout");
    drop(attackers);
}
