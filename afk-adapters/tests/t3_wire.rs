//! The T3 adapter on the wire: exactly which requests it sends, and how it
//! reads each kind of failure (`docs/contracts/t3.md`, Answers and errors,
//! Idempotency).

use afk_adapters::http::Secret;
use afk_adapters::t3::{T3Executor, T3Settings};
use afk_core::ports::{PortError, ThreadSpec};
use afk_loop::ports::Executor;
use afk_sim::lock;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{fast_http, ts};
use crate::executor_contract::t3_world;

fn spec() -> ThreadSpec {
    ThreadSpec {
        repo: "infra".into(),
        issue: 7,
        attempt: 0,
        title: "infra#7".into(),
        branch: "main".into(),
        prompt: "prompt".into(),
        created_at: ts("2026-06-10T12:02:00Z"),
    }
}

async fn dispatched_types(sim: &afk_sim::Sim) -> Vec<String> {
    sim.requests()
        .await
        .iter()
        .filter(|r| r.url.path() == "/api/orchestration/dispatch")
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            v["type"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn a_rerun_after_a_crash_sends_no_second_thread_create_and_no_second_turn() {
    let (sim, t3) = t3_world().await;
    let snapshot = t3.snapshot(&[]).await.unwrap();
    t3.ensure_thread(&snapshot, &spec()).await.unwrap();
    assert_eq!(
        dispatched_types(&sim).await,
        ["project.create", "thread.create", "thread.turn.start"]
    );
    // The pod dies here. The next tick reads a fresh snapshot and re-runs.
    let snapshot = t3.snapshot(&[]).await.unwrap();
    t3.ensure_thread(&snapshot, &spec()).await.unwrap();
    assert_eq!(
        dispatched_types(&sim).await,
        ["project.create", "thread.create", "thread.turn.start"],
        "the re-run sent nothing new"
    );
}

#[tokio::test]
async fn commands_carry_the_contract_fields() {
    let (sim, t3) = t3_world().await;
    let snapshot = t3.snapshot(&[]).await.unwrap();
    let id = t3.ensure_thread(&snapshot, &spec()).await.unwrap();
    let bodies: Vec<Value> = sim
        .requests()
        .await
        .iter()
        .filter(|r| r.url.path() == "/api/orchestration/dispatch")
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    let project = &bodies[0];
    assert_eq!(project["workspaceRoot"], "/data/acme__infra");
    assert_eq!(project["createWorkspaceRootIfMissing"], true);
    let thread = &bodies[1];
    assert_eq!(thread["threadId"], id.as_str());
    assert_eq!(thread["projectId"], project["projectId"]);
    assert_eq!(thread["runtimeMode"], "full-access");
    assert_eq!(thread["interactionMode"], "default");
    assert_eq!(thread["modelSelection"]["instanceId"], "claudeAgent");
    assert!(thread["branch"].is_null() && thread["worktreePath"].is_null());
    let turn = &bodies[2];
    assert_eq!(turn["message"]["role"], "user");
    assert_eq!(turn["message"]["attachments"], Value::Array(vec![]));
    assert_eq!(turn["createdAt"], "2026-06-10T12:02:00.000Z");
    // Every request carried the bearer token.
    for r in sim.requests().await {
        assert_eq!(
            r.headers.get("authorization").unwrap(),
            "Bearer t3-sim-token"
        );
    }
}

#[tokio::test]
async fn a_project_the_server_made_for_the_checkout_is_reused() {
    let (sim, t3) = t3_world().await;
    {
        let mut m = lock(&sim.t3);
        m.existing_dirs.insert("/data/acme__infra".into());
        let body = serde_json::json!({"type": "project.create", "commandId": "server-boot",
            "projectId": "server-made", "title": "infra", "workspaceRoot": "/data/acme__infra",
            "createdAt": "2026-06-10T11:00:00.000Z"});
        assert_eq!(
            m.dispatch(
                Some("Bearer t3-sim-token"),
                &serde_json::to_vec(&body).unwrap()
            )
            .0,
            200
        );
    }
    let snapshot = t3.snapshot(&[]).await.unwrap();
    t3.ensure_thread(&snapshot, &spec()).await.unwrap();
    assert_eq!(
        dispatched_types(&sim).await,
        ["thread.create", "thread.turn.start"]
    );
    assert_eq!(
        lock(&sim.t3).threads.values().next().unwrap().project_id,
        "server-made"
    );
}

#[tokio::test]
async fn a_storage_fault_is_retried_with_the_same_command_id() {
    let (sim, t3) = t3_world().await;
    lock(&sim.t3).fail_next_dispatches = 2;
    let snapshot = t3.snapshot(&[]).await.unwrap();
    t3.ensure_thread(&snapshot, &spec()).await.unwrap();
    let ids: Vec<String> = sim
        .requests()
        .await
        .iter()
        .filter(|r| r.url.path() == "/api/orchestration/dispatch")
        .map(|r| {
            serde_json::from_slice::<Value>(&r.body).unwrap()["commandId"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids.len(), 5, "two failed tries, then three commands");
    assert_eq!(ids[0], ids[1]);
    assert_eq!(ids[1], ids[2]);
    assert_eq!(lock(&sim.t3).threads_created(), 1);
}

#[tokio::test]
async fn a_snapshot_read_is_retried() {
    let (sim, t3) = t3_world().await;
    lock(&sim.t3).fail_next_snapshots = 2;
    assert!(t3.snapshot(&[]).await.is_ok());
    lock(&sim.t3).fail_next_snapshots = 10;
    let err = t3.snapshot(&[]).await.unwrap_err();
    assert!(matches!(err, PortError::Transient { .. }), "{err:?}");
}

async fn against(status: u16, body: Option<&str>) -> (MockServer, T3Executor) {
    let server = MockServer::start().await;
    let template = match body {
        Some(b) => ResponseTemplate::new(status).set_body_raw(b.to_owned(), "application/json"),
        None => ResponseTemplate::new(status),
    };
    Mock::given(method("POST"))
        .and(path("/api/orchestration/dispatch"))
        .respond_with(template)
        .mount(&server)
        .await;
    let t3 = T3Executor::new(
        fast_http(),
        T3Settings {
            base_url: server.uri(),
            web_url: server.uri(),
            token: Secret::Value("t3-secret-token-value".into()),
            model: "m".into(),
            instance: "claudeAgent".into(),
            workspace_base: "/data".into(),
            default_owner: None,
        },
    );
    (server, t3)
}

#[track_caller]
fn check_error(err: &PortError, expected_kind: &str, needle: &str) {
    let kind = err.kind();
    assert_eq!(kind, expected_kind, "{err}");
    assert!(err.to_string().contains(needle), "{err}");
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(
            !text.contains("t3-secret-token-value"),
            "the token leaked: {text}"
        );
    }
}

#[tokio::test]
async fn failures_are_classified_as_the_contract_says() {
    let cases: &[(u16, Option<&str>, &str, &str, usize)] = &[
        (400, None, "contract_violation", "400 with an empty body", 1),
        (
            400,
            Some(
                r#"{"_tag":"EnvironmentRequestInvalidError","code":"invalid_request","reason":"invalid_command","traceId":"t1"}"#,
            ),
            "permanent",
            "invalid_command",
            1,
        ),
        (
            401,
            Some(
                r#"{"_tag":"EnvironmentAuthInvalidError","code":"auth_invalid","reason":"invalid_credential","traceId":"t"}"#,
            ),
            "auth",
            "invalid_credential",
            1,
        ),
        (
            403,
            Some(
                r#"{"_tag":"EnvironmentScopeRequiredError","code":"insufficient_scope","requiredScope":"orchestration:operate","traceId":"t"}"#,
            ),
            "auth",
            "orchestration:operate",
            1,
        ),
        (
            500,
            Some(
                r#"{"_tag":"EnvironmentInternalError","code":"internal_error","reason":"orchestration_dispatch_failed","traceId":"t"}"#,
            ),
            "permanent",
            "rejected invariant",
            4,
        ),
    ];
    for (status, body, kind, needle, expected_requests) in cases {
        let (server, t3) = against(*status, *body).await;
        let snapshot = afk_core::ports::ExecutorSnapshot {
            projects: vec![afk_core::ports::ProjectInfo {
                id: "p".into(),
                workspace_root: "/data/infra".into(),
                deleted: false,
            }],
            ..Default::default()
        };
        let err = t3.ensure_thread(&snapshot, &spec()).await.unwrap_err();
        check_error(&err, kind, needle);
        let sent = server.received_requests().await.unwrap().len();
        assert_eq!(
            sent, *expected_requests,
            "HTTP {status}: only a 500 is retried"
        );
    }
}

#[tokio::test]
async fn a_missing_token_is_an_auth_error_before_any_request() {
    let (server, _configured) = against(200, Some(r#"{"sequence": 1}"#)).await;
    let t3 = T3Executor::new(
        fast_http(),
        T3Settings {
            base_url: server.uri(),
            web_url: server.uri(),
            token: Secret::None,
            model: "m".into(),
            instance: "claudeAgent".into(),
            workspace_base: "/data".into(),
            default_owner: None,
        },
    );
    let err = t3.snapshot(&[]).await.unwrap_err();
    check_error(&err, "auth", "AFK_T3_TOKEN");
    assert!(server.received_requests().await.unwrap().is_empty());
}
