//! The accept loop against connection churn and slow heads, on 127.0.0.1
//! with raw TCP clients: a request whose head is arriving keeps its
//! connection until its head deadline, whatever else connects.

// Helpers outside `#[test]` functions panic on a broken fixture on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use afk_edge::listen::{Limits, serve};
use axum::Router;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A server answering `GET /` with `ok`; its address and its stop switch.
async fn start(limits: Limits) -> (String, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let router = Router::new().route("/", get(|| async { "ok" }));
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(serve(
        listener,
        router,
        limits,
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
        || async {},
    ));
    (address, stop)
}

/// What the server sends until it closes the connection, or `None` when
/// it has not closed it within `wait`.
async fn answer(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut got = Vec::new();
    tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .ok()?;
    Some(String::from_utf8_lossy(&got).into_owned())
}

/// Half a request head: the rest (`HALF_REST`) may follow any time before
/// the head deadline.
const HALF: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n";
const HALF_REST: &[u8] = b"Connection: close\r\n\r\n";

async fn half_sent(address: &str) -> TcpStream {
    let mut c = TcpStream::connect(address).await.unwrap();
    c.write_all(HALF).await.unwrap();
    c
}

#[tokio::test]
async fn churn_never_evicts_a_request_whose_head_is_arriving() {
    let (address, _stop) = start(Limits {
        header_timeout: Duration::from_secs(5),
        max_connections: 8,
        ..Limits::default()
    })
    .await;
    // Eight requests whose heads are arriving fill the limit.
    let mut arriving = Vec::new();
    for _ in 0..8 {
        arriving.push(half_sent(&address).await);
    }
    // Forty requests come and go: each is refused at once with 503 rather
    // than taking the place of a head that is arriving.
    for n in 0..40 {
        let mut churn = TcpStream::connect(&address).await.unwrap();
        churn
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let refused = answer(&mut churn, Duration::from_secs(3)).await;
        let refused = refused.unwrap_or_else(|| panic!("churn {n} was admitted"));
        assert!(refused.starts_with("HTTP/1.1 503"), "churn {n}: {refused}");
        assert!(refused.contains("retry-after: 1"), "{refused}");
        // One clear line in OpenAI's error shape (the gateway's clients
        // read it as any other error).
        let body = refused.split("\r\n\r\n").nth(1).unwrap_or_default();
        let error: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(error["error"]["type"], "server_error", "{refused}");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("try again")
        );
    }
    // Every one of the eight is still there and is answered.
    for (n, mut c) in arriving.into_iter().enumerate() {
        c.write_all(HALF_REST).await.unwrap();
        let answered = answer(&mut c, Duration::from_secs(3)).await;
        let answered = answered.unwrap_or_else(|| panic!("head {n} got no answer"));
        assert!(
            answered.starts_with("HTTP/1.1 200") && answered.ends_with("ok"),
            "head {n}: {answered:?}"
        );
    }
}

#[tokio::test]
async fn an_idle_connection_makes_room_and_a_stalled_head_ends_at_its_deadline() {
    let (address, _stop) = start(Limits {
        header_timeout: Duration::from_secs(1),
        max_connections: 8,
        ..Limits::default()
    })
    .await;
    // A kept-alive connection, idle after its request.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // Seven stalled heads and the idle connection fill the limit.
    let mut stalled = Vec::new();
    for _ in 0..7 {
        stalled.push(half_sent(&address).await);
    }
    // A new request takes the idle connection's place.
    let mut newcomer = TcpStream::connect(&address).await.unwrap();
    newcomer
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answered = answer(&mut newcomer, Duration::from_secs(3)).await;
    assert!(
        answered.is_some_and(|a| a.starts_with("HTTP/1.1 200")),
        "the newcomer was not served"
    );
    assert!(
        answer(&mut idle, Duration::from_secs(3)).await.is_some(),
        "the idle connection was not closed to make room"
    );
    // A head that stalls is dropped at its deadline, and its room returns.
    for (n, mut c) in stalled.into_iter().enumerate() {
        assert!(
            answer(&mut c, Duration::from_secs(10)).await.is_some(),
            "stalled head {n} is still held"
        );
    }
    let mut after = TcpStream::connect(&address).await.unwrap();
    after
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answered = answer(&mut after, Duration::from_secs(3)).await;
    assert!(answered.is_some_and(|a| a.starts_with("HTTP/1.1 200")));
}
