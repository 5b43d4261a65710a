//! The contract's example snapshot (`fixtures/t3/snapshot-v0.0.27-example.json`,
//! from `docs/contracts/t3.md`, The snapshot) read through the adapter: a
//! finished thread is idle, a thread whose provider failed to start is in
//! error, a deleted thread is known but not live.

use std::path::Path;

use afk_adapters::http::Secret;
use afk_adapters::t3::{T3Executor, T3Settings};
use afk_core::ThreadStatus;
use afk_core::ports::WatchedThread;
use afk_loop::ports::Executor;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{fast_http, ts};

#[tokio::test]
async fn the_contract_example_snapshot_reads_as_documented() {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/t3/snapshot-v0.0.27-example.json");
    let body: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/orchestration/snapshot"))
        .and(header("authorization", "Bearer t3-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .expect(1)
        .mount(&server)
        .await;
    let t3 = T3Executor::new(
        fast_http(),
        T3Settings {
            base_url: server.uri(),
            web_url: "https://t3.example".into(),
            token: Secret::Value("t3-token".into()),
            model: "claude-sonnet-4-6".into(),
            instance: "claudeAgent".into(),
            workspace_base: "/srv/checkouts".into(),
            default_owner: None,
        },
    );
    let watched = [
        WatchedThread {
            thread_id: "9a8b7c6d-5e4f-4321-8fed-cba987654321".into(),
            turn_sent_at: ts("2026-06-10T12:02:00Z"),
        },
        WatchedThread {
            thread_id: "task-1234".into(),
            turn_sent_at: ts("2026-06-10T12:02:05Z"),
        },
    ];
    let snapshot = t3.snapshot(&watched).await.unwrap();
    assert_eq!(
        snapshot.status("9a8b7c6d-5e4f-4321-8fed-cba987654321"),
        Some(ThreadStatus::Idle)
    );
    assert_eq!(snapshot.status("task-1234"), Some(ThreadStatus::Error));
    assert!(snapshot.threads.contains_key("old-thread-1"));
    assert!(!snapshot.is_live("old-thread-1"));
    assert_eq!(snapshot.status("old-thread-1"), None);
    assert_eq!(
        snapshot.projects[0].workspace_root,
        "/srv/checkouts/acme-api"
    );
    assert_eq!(
        t3.thread_link("task-1234").as_deref(),
        Some("https://t3.example/task-1234")
    );
}
