//! breakglass against a hostile network: each attack that once broke it,
//! against a real server on 127.0.0.1.

use std::time::Duration;

use afk_edge::listen::Limits;
use breakglass::auth::{Auth, Proxies};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{
    Frame, TOKEN, dead, is_turn_end, scratch, settings, start, start_with, wait_until,
};

fn tight() -> Limits {
    Limits {
        header_timeout: Duration::from_secs(1),
        write_timeout: Duration::from_secs(1),
        max_connections: 16,
        shutdown_grace: Duration::from_secs(2),
    }
}

/// Reads until the peer closes; `true` when it did within `wait`.
async fn closed_by_peer(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = vec![0u8; 64 * 1024];
    tokio::time::timeout(wait, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A flood of half-sent requests cannot cut off the owner's signed-in
/// connection, nor hold the server past the head deadline; a new
/// connection meanwhile is answered at once (503 while the heads still
/// arrive, never left hanging), and is served once they have ended. No
/// head that is arriving is cut short to make room (afk-edge's churn test).
#[tokio::test]
async fn half_sent_requests_cannot_cut_off_the_owner_or_hold_the_server() {
    let dir = scratch("slowloris");
    let mut s = settings(&dir);
    s.limits = Limits {
        // Long enough that the owner's kept-alive connection outlives the
        // attack's setup, short enough to wait for.
        header_timeout: Duration::from_secs(3),
        ..tight()
    };
    let server = start_with(dir, s).await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    // The owner is signed in: an authenticated, kept-alive connection.
    let verb = server.post("/api/pve/status").send().await.unwrap();
    assert_eq!(verb.status(), 200);
    // Ten times the connection limit, each holding half a request head.
    let mut attackers = Vec::new();
    for _ in 0..160 {
        if let Ok(mut c) = TcpStream::connect(&addr).await {
            let _ = c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n").await;
            attackers.push(c);
        }
    }
    let verb = server.post("/api/pve/status").send().await.unwrap();
    assert_eq!(
        verb.status(),
        200,
        "the owner's power verb runs during the attack"
    );
    let fresh = || {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap()
            .get(format!("{}/health", server.url))
            .send()
    };
    let during = fresh().await.expect("a new connection is answered at once");
    match during.status().as_u16() {
        503 => assert_eq!(during.headers()["retry-after"], "1"),
        // The heads reached their deadline already (a slow machine).
        200 => {}
        other => panic!("/health during the attack: {other}"),
    }
    // Every half-sent request is dropped at its head deadline.
    for mut c in attackers {
        assert!(
            closed_by_peer(&mut c, Duration::from_secs(10)).await,
            "a half-sent request is still held"
        );
    }
    let after = fresh().await.unwrap();
    assert_eq!(after.status(), 200, "/health after the attack");
}

#[tokio::test]
async fn a_reader_that_stops_reading_is_disconnected_and_comes_back_with_last_event_id() {
    let dir = scratch("slow-reader");
    let mut s = settings(&dir);
    s.limits = tight();
    let server = start_with(dir, s).await;
    let id = server.session().await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    // A small receive window, so the server's writes block soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stuck = socket.connect(addr.parse().unwrap()).await.unwrap();
    stuck
        .write_all(
            format!(
                "GET /api/session/{id}/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    // 100,000 events (megabytes, more than the kernel buffers) pour in
    // while this reader reads nothing.
    assert_eq!(server.prompt(&id, "MANY 100000").await, 200);
    // A reader that reads, but slower than the flood, may be disconnected
    // too: it comes back from where it was until the turn ends, with no
    // gap and no repeat.
    let mut last: Option<u64> = None;
    let mut reconnects = 0;
    'follow: loop {
        let from = last.map(|l| l.to_string());
        let mut watcher = server.attach(&id, from.as_deref()).await;
        loop {
            match watcher.next(Duration::from_secs(20)).await {
                Some(Frame::Event(n, v)) => {
                    assert_eq!(n, last.map_or(0, |l| l + 1), "a gap or a repeat");
                    last = Some(n);
                    if is_turn_end(&v) {
                        break 'follow;
                    }
                }
                Some(_) => {}
                None => {
                    reconnects += 1;
                    assert!(reconnects < 100, "the follower never got through");
                    continue 'follow;
                }
            }
        }
    }
    assert!(
        closed_by_peer(&mut stuck, Duration::from_secs(20)).await,
        "a reader that stopped reading is disconnected"
    );
    // It comes back where it was and misses nothing.
    let mut back = server.attach(&id, Some("100")).await;
    let rest = back.events_until(is_turn_end).await;
    let ids: Vec<u64> = rest.iter().map(|(i, _)| *i).collect();
    assert_eq!(ids.first(), Some(&101));
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "no gap, no repeat"
    );
}

#[tokio::test]
async fn one_power_verb_runs_at_a_time_and_shutdown_kills_it() {
    let dir = scratch("verbs");
    let mut s = settings(&dir);
    s.power.host = Some("slow-host".into());
    s.limits = tight();
    let server = start_with(dir, s).await;
    let first = tokio::spawn({
        let req = server.post("/api/pve/start");
        async move { req.send().await.map(|r| r.status().as_u16()) }
    });
    wait_until("the first verb to run", || {
        std::fs::read_to_string(server.dir.join("calls.log")).is_ok_and(|t| !t.is_empty())
    })
    .await;
    let mut refused = 0;
    for _ in 0..20 {
        let r = server.post("/api/pve/reset").send().await.unwrap();
        assert_eq!(r.status(), 409, "a second verb while one runs");
        refused += 1;
    }
    assert_eq!(refused, 20);
    let log = std::fs::read_to_string(server.dir.join("calls.log")).unwrap();
    assert_eq!(log.lines().count(), 1, "exactly one ssh ran: {log}");
    // Shutdown kills the running verb at once, not at its timeout.
    assert_eq!(server.app.shut_down().await, 0);
    let status = tokio::time::timeout(Duration::from_secs(10), first)
        .await
        .expect("the verb ended with the shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(status, 502);
}

#[tokio::test]
async fn identity_header_mode_trusts_only_the_proxy_and_same_origin_json() {
    let dir = scratch("sso-hostile");
    let mut s = settings(&dir);
    s.auth = Auth::new(
        None,
        Some("X-authentik-username"),
        Proxies::parse("127.0.0.1").unwrap(),
    )
    .unwrap();
    let server = start_with(dir, s).await;
    let host = server.url.trim_start_matches("http://").to_owned();
    let post = |content_type: &str, extra: &[(&str, String)]| {
        let mut req = server
            .http
            .post(format!("{}/api/pve/stop", server.url))
            .header("X-authentik-username", "alice")
            .header("content-type", content_type)
            .body(if content_type == "application/json" {
                "{}"
            } else {
                "a=b"
            });
        for (k, v) in extra {
            req = req.header(*k, v);
        }
        req.send()
    };
    let form = post("application/x-www-form-urlencoded", &[])
        .await
        .unwrap();
    assert_eq!(
        form.status(),
        415,
        "a form post (a cross-site page's) is refused"
    );
    let cross = post(
        "application/json",
        &[("sec-fetch-site", "cross-site".into())],
    )
    .await
    .unwrap();
    assert_eq!(cross.status(), 403);
    let evil = post(
        "application/json",
        &[("origin", "http://evil.example".into())],
    )
    .await
    .unwrap();
    assert_eq!(evil.status(), 403);
    let ours = post(
        "application/json",
        &[
            ("origin", format!("http://{host}")),
            ("sec-fetch-site", "same-origin".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(ours.status(), 200);
    // Only the proxy's header is an identity.
    let dir = scratch("sso-elsewhere");
    let mut s = settings(&dir);
    s.auth = Auth::new(
        None,
        Some("X-authentik-username"),
        Proxies::parse("10.9.9.9").unwrap(),
    )
    .unwrap();
    let elsewhere = start_with(dir, s).await;
    let r = elsewhere
        .http
        .post(format!("{}/api/pve/stop", elsewhere.url))
        .header("X-authentik-username", "alice")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "a header from a peer that is not the proxy"
    );
}

#[tokio::test]
async fn sessions_are_capped_and_a_huge_output_line_is_cut() {
    let dir = scratch("caps");
    let mut s = settings(&dir);
    s.max_sessions = 2;
    let server = start_with(dir, s).await;
    let a = server.session().await;
    let b = server.session().await;
    let _in_use_a = server.attach(&a, None).await;
    let _in_use_b = server.attach(&b, None).await;
    let third = server.post("/api/session").send().await.unwrap();
    assert_eq!(
        third.status(),
        429,
        "every session in use: refused, and said so"
    );
    let body: Value = third.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("too many sessions")
    );

    assert_eq!(server.prompt(&a, "BIGLINE 3000000").await, 200);
    let mut sse = server.attach(&a, None).await;
    let events = sse.events_until(is_turn_end).await;
    let cut = events
        .iter()
        .find(|(_, v)| v["type"] == "error")
        .map(|(_, v)| v["message"].as_str().unwrap().to_owned())
        .expect("the long line is reported");
    assert!(cut.contains("a line of 3000000 bytes"), "{cut}");
    assert!(
        events.iter().all(|(_, v)| v.to_string().len() < 2 << 20),
        "no event carries the huge line"
    );
    assert!(
        events.iter().any(|(_, v)| v["type"] == "result"),
        "the turn went on"
    );
}

#[tokio::test]
async fn shutdown_ends_within_its_grace_whatever_is_open() {
    let dir = scratch("grace");
    let mut s = settings(&dir);
    s.limits = tight();
    let server = start_with(dir, s).await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut half = TcpStream::connect(&addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let id = server.session().await;
    let _attached = server.attach(&id, None).await;
    assert_eq!(server.prompt(&id, "HANG").await, 200);
    let pids = server.session_dir(&id).join("pids");
    wait_until("the agent", || {
        std::fs::read_to_string(&pids).is_ok_and(|t| t.lines().count() == 2)
    })
    .await;
    server.stop();
    let done = tokio::time::timeout(Duration::from_secs(15), server.stopped()).await;
    assert!(done.is_ok(), "the server did not stop within its grace");
    for pid in std::fs::read_to_string(&pids).unwrap().lines() {
        let pid: u32 = pid.trim().parse().unwrap();
        wait_until("the agent to die", || dead(pid)).await;
    }
    let _ = start;
}
