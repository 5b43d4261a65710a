//! Sessions and attach, with the scripted agent as a real child process.

use std::sync::Arc;
use std::time::Duration;

use breakglass::session::Sessions;
use futures_util::StreamExt;
use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn a_turn_streams_translated_events_and_ends_exactly_once() {
    let server = start("turn").await;
    let id = server.session().await;
    let mut sse = server.attach(&id, None).await;
    assert_eq!(
        sse.next(Duration::from_secs(5)).await,
        Some(Frame::CaughtUp)
    );
    assert_eq!(server.prompt(&id, "triage the VM").await, 200);
    let events = sse.events_until(is_turn_end).await;
    assert_eq!(
        types(&events),
        [
            "user", "session", "text", "tool", "text", "result", "turn_end"
        ]
    );
    let ids: Vec<u64> = events.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids, (0..7).collect::<Vec<_>>());
    assert_eq!(events[0].1["prompt"], "triage the VM");
    assert_eq!(events[1].1["agent_session_id"], id.as_str());
    assert_eq!(
        events[3].1,
        json!({"id": 3, "type": "tool", "name": "Bash", "input": {"command": "uptime"}})
    );
    assert_eq!(
        events[5].1,
        json!({"id": 5, "type": "result", "is_error": false, "result": "Diagnosis: the VM is healthy; load is low.", "duration_ms": 42})
    );
    // Nothing more: one turn_end.
    match sse.next(Duration::from_millis(300)).await {
        None | Some(Frame::Comment(_)) => {}
        other => panic!("an event after turn_end: {other:?}"),
    }
}

#[tokio::test]
async fn the_first_turn_names_the_session_and_later_turns_resume_it() {
    let server = start("resume").await;
    let id = server.session().await;
    let mut sse = server.attach(&id, None).await;
    assert_eq!(server.prompt(&id, "first").await, 200);
    sse.events_until(is_turn_end).await;
    let resp = server
        .post(&format!("/api/session/{id}/prompt"))
        .json(&json!({"prompt": "second", "model": "opus"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    sse.events_until(is_turn_end).await;
    let argv = std::fs::read_to_string(server.session_dir(&id).join("argv.log")).unwrap();
    assert_eq!(
        argv,
        format!("--session-id {id}\n--model opus\n--resume {id}\n")
    );
}

#[tokio::test]
async fn a_prompt_while_a_turn_runs_is_refused_and_the_turn_goes_on() {
    let server = start("busy").await;
    let id = server.session().await;
    let mut sse = server.attach(&id, None).await;
    assert_eq!(server.prompt(&id, "GATE first").await, 200);
    sse.events_until(|v| v["type"] == "tool").await;
    assert_eq!(server.prompt(&id, "second").await, 409);
    std::fs::write(server.session_dir(&id).join("go"), "").unwrap();
    let rest = sse.events_until(is_turn_end).await;
    assert_eq!(types(&rest), ["text", "result", "turn_end"]);
    assert_eq!(server.prompt(&id, "third").await, 200);
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_gets_exactly_the_missed_events_mid_turn() {
    let server = start("reconnect").await;
    let id = server.session().await;
    let mut first = server.attach(&id, None).await;
    assert_eq!(server.prompt(&id, "GATE please").await, 200);
    // The phone sees the first answer, then its connection drops.
    let seen = first.events_until(|v| v["type"] == "text").await;
    let last_seen = seen.last().unwrap().0;
    drop(first);
    // The turn is still running (waiting on the gate) and has produced more.
    let dir = server.session_dir(&id);
    let app = server.app.clone();
    let sid = id.clone();
    wait_until("the tool event", move || {
        app.sessions
            .get(&sid)
            .is_some_and(|s| s.len() > last_seen + 1)
    })
    .await;

    let mut second = server.attach(&id, Some(&last_seen.to_string())).await;
    let mut replayed = Vec::new();
    loop {
        match second.next(Duration::from_secs(10)).await.unwrap() {
            Frame::Event(i, v) => replayed.push((i, v)),
            Frame::CaughtUp => break,
            Frame::Comment(_) => {}
        }
    }
    assert_eq!(types(&replayed), ["tool"], "exactly the missed events");
    std::fs::write(dir.join("go"), "").unwrap();
    let live = second.events_until(is_turn_end).await;

    let mut ids: Vec<u64> = seen
        .iter()
        .chain(&replayed)
        .chain(&live)
        .map(|(i, _)| *i)
        .collect();
    let total = ids.len() as u64;
    assert_eq!(ids, (0..total).collect::<Vec<_>>(), "no gap, no duplicate");
    // A fresh attach replays the same log.
    let mut fresh = server.attach(&id, None).await;
    let all = fresh.events_until(is_turn_end).await;
    ids.clear();
    ids.extend(all.iter().map(|(i, _)| *i));
    assert_eq!(ids, (0..total).collect::<Vec<_>>());
    // A malformed Last-Event-ID counts as absent: everything again.
    let mut bad = server.attach(&id, Some("not-a-number")).await;
    assert_eq!(bad.events_until(is_turn_end).await.len() as u64, total);
}

/// Collects a stream until it has delivered event `last`.
async fn collect_until<S>(stream: S, last: u64) -> Vec<u64>
where
    S: futures_util::Stream<Item = Result<axum::body::Bytes, std::convert::Infallible>>,
{
    let mut stream = std::pin::pin!(stream);
    let mut text = String::new();
    let mut ids = Vec::new();
    while ids.last() != Some(&last) {
        let chunk = tokio::time::timeout(Duration::from_secs(20), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            if let Some(rest) = block.strip_prefix("id: ") {
                ids.push(rest.lines().next().unwrap().parse().unwrap());
            }
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaching_while_events_pour_in_never_loses_or_repeats_one() {
    // More events than memory holds: readers that fall behind read the
    // session's file.
    let dir = tempfile::tempdir().unwrap();
    let sessions = Sessions::spilling_to(dir.path());
    let session = sessions.create(1).unwrap();
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    const N: u64 = 5000;
    let writer = {
        let s = session.clone();
        tokio::spawn(async move {
            for n in 0..N {
                s.append(breakglass::event::error(&format!("event {n}")));
                if n % 100 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        })
    };
    // Attach at many points while the writer runs, some resuming mid-log.
    let mut readers = Vec::new();
    for k in 0..20u64 {
        let after = (k % 3 == 1)
            .then(|| session.len().saturating_sub(2))
            .filter(|_| !session.is_empty());
        let stream = breakglass::sse::stream(
            session.clone(),
            after,
            Duration::from_secs(20),
            shutdown.clone(),
        );
        readers.push(tokio::spawn(async move {
            let ids = collect_until(stream, N - 1).await;
            (after, ids)
        }));
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    for r in readers {
        let (after, ids) = r.await.unwrap();
        let start = after.map_or(0, |a| a + 1);
        assert_eq!(
            ids,
            (start..N).collect::<Vec<_>>(),
            "attached after {after:?}"
        );
    }
    let _ = Arc::strong_count(&session);
}

#[tokio::test]
async fn cancel_kills_the_agent_and_its_children_then_ends_the_turn() {
    let server = start("cancel").await;
    let id = server.session().await;
    let mut sse = server.attach(&id, None).await;
    assert_eq!(server.prompt(&id, "HANG").await, 200);
    sse.events_until(|v| v["type"] == "text").await;
    let pids_file = server.session_dir(&id).join("pids");
    wait_until("the agent's pids", || {
        std::fs::read_to_string(&pids_file).is_ok_and(|t| t.lines().count() == 2)
    })
    .await;
    assert_eq!(server.cancel(&id).await, json!({"cancelled": true}));
    let rest = sse.events_until(is_turn_end).await;
    assert_eq!(types(&rest), ["cancelled", "turn_end"]);
    all_gone(&pids_file).await;
    assert_eq!(server.cancel(&id).await, json!({"cancelled": false}));
    assert_eq!(server.prompt(&id, "after cancel").await, 200);
}

#[tokio::test]
async fn a_turn_past_its_timeout_is_killed_and_says_so() {
    let dir = scratch("timeout");
    let mut s = settings(&dir);
    s.agent.turn_timeout = Duration::from_secs(1);
    let server = start_with(dir, s).await;
    let id = server.session().await;
    let mut sse = server.attach(&id, None).await;
    assert_eq!(server.prompt(&id, "HANG").await, 200);
    let events = sse.events_until(is_turn_end).await;
    let kinds = types(&events);
    assert_eq!(&kinds[kinds.len() - 2..], ["error", "turn_end"]);
    let message = events[events.len() - 2].1["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("timeout of 1 s"), "{message}");
    all_gone(&server.session_dir(&id).join("pids")).await;
}

#[tokio::test]
async fn a_failing_agent_reports_its_stderr_and_a_missing_one_says_so() {
    let server = start("fail").await;
    let id = server.session().await;
    let mut sse = server.attach(&id, None).await;
    assert_eq!(server.prompt(&id, "FAIL").await, 200);
    let events = sse.events_until(is_turn_end).await;
    assert_eq!(types(&events), ["user", "session", "error", "turn_end"]);
    let message = events[2].1["message"].as_str().unwrap();
    assert!(
        message.contains("exited with code 2") && message.contains("model overloaded"),
        "{message}"
    );
    // The failed turn had started the agent's session, so the next turn must
    // resume it (the agent refuses a second --session-id for it).
    assert_eq!(server.prompt(&id, "try again").await, 200);
    let retry = sse.events_until(is_turn_end).await;
    assert_eq!(
        types(&retry)[retry.len() - 2..],
        ["result", "turn_end"],
        "{retry:?}"
    );
    let argv = std::fs::read_to_string(server.session_dir(&id).join("argv.log")).unwrap();
    assert_eq!(argv, format!("--session-id {id}\n--resume {id}\n"));

    let dir = scratch("missing");
    let mut s = settings(&dir);
    s.agent.bin = "/nonexistent/claude".into();
    let server = start_with(dir, s).await;
    let id = server.session().await;
    let mut sse = server.attach(&id, None).await;
    assert_eq!(server.prompt(&id, "anything").await, 200);
    let events = sse.events_until(is_turn_end).await;
    assert_eq!(types(&events), ["user", "error", "turn_end"]);
    assert!(
        events[1].1["message"]
            .as_str()
            .unwrap()
            .contains("cannot start the agent")
    );
    assert_eq!(
        server.prompt(&id, "again").await,
        200,
        "the session is usable after"
    );
}

/// The real CLI puts an API failure in its `result` line on stdout and
/// leaves stderr empty; a denied tool does not even fail the turn. Both reach
/// the phone as the agent's own words, one line, without colour codes.
#[tokio::test]
async fn an_agent_s_own_error_and_a_denied_tool_reach_the_phone() {
    let server = start("said").await;
    let id = server.session().await;
    let mut sse = server.attach(&id, None).await;
    assert_eq!(server.prompt(&id, "APIERR").await, 200);
    let events = sse.events_until(is_turn_end).await;
    let kinds = types(&events);
    assert_eq!(&kinds[kinds.len() - 3..], ["result", "error", "turn_end"]);
    let message = events[events.len() - 2].1["message"].as_str().unwrap();
    assert_eq!(
        message,
        "the agent exited with code 1: claude: API Error: 529 \
         {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}} retry later"
    );

    assert_eq!(server.prompt(&id, "DENIED").await, 200);
    let events = sse.events_until(is_turn_end).await;
    let kinds = types(&events);
    assert_eq!(&kinds[kinds.len() - 3..], ["result", "error", "turn_end"]);
    let message = events[events.len() - 2].1["message"].as_str().unwrap();
    assert!(
        message.starts_with("claude was denied Bash (systemctl restart app)")
            && message.contains("permissions.allow"),
        "{message}"
    );
}

#[tokio::test]
async fn a_quiet_stream_gets_keepalive_comments() {
    let dir = scratch("keepalive");
    let mut s = settings(&dir);
    s.keepalive = Duration::from_millis(150);
    let server = start_with(dir, s).await;
    let id = server.session().await;
    let mut sse = server.attach(&id, None).await;
    assert_eq!(
        sse.next(Duration::from_secs(5)).await,
        Some(Frame::CaughtUp)
    );
    assert_eq!(
        sse.next(Duration::from_secs(5)).await,
        Some(Frame::Comment("keepalive".into()))
    );
    assert_eq!(
        sse.next(Duration::from_secs(5)).await,
        Some(Frame::Comment("keepalive".into()))
    );
}

#[tokio::test]
async fn shutdown_kills_running_turns_and_ends_streams() {
    let server = start("shutdown").await;
    let id = server.session().await;
    let mut sse = server.attach(&id, None).await;
    assert_eq!(server.prompt(&id, "HANG").await, 200);
    sse.events_until(|v| v["type"] == "text").await;
    assert_eq!(server.app.shut_down().await, 1);
    let session = server.app.sessions.get(&id).unwrap();
    assert!(!session.turn_running());
    let mut tail = server.attach(&id, None).await;
    let events = tail.events_until(is_turn_end).await;
    assert_eq!(
        &types(&events)[events.len() - 2..],
        ["cancelled", "turn_end"]
    );
    assert_eq!(
        tail.next(Duration::from_secs(5)).await,
        Some(Frame::CaughtUp)
    );
    assert_eq!(
        tail.next(Duration::from_secs(5)).await,
        None,
        "the stream ends at shutdown"
    );
}
