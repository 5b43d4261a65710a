//! The doorbells on the wire: Slack's plain-text `ok` and its error bodies,
//! ntfy's JSON publish form and error codes (fixtures in `fixtures/notify/`),
//! timeouts, fan-out, and secrets kept out of errors.

use std::path::Path;
use std::time::Duration;

use afk_adapters::http::{Http, HttpSettings, Secret};
use afk_adapters::notify::{LogNotifier, NtfyNotifier, SlackNotifier};
use afk_core::OutcomeKind;
use afk_core::doorbell::Doorbell;
use afk_loop::ports::{Notifier, ring_all};
use serde_json::Value;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::fast_http;

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/notify")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn bell(kind: OutcomeKind) -> Doorbell {
    Doorbell {
        by: None,
        kind,
        repo: "infra".into(),
        issue: 7,
        reason: "fix-forward budget spent: CI still red after 5 of 5 attempt(s)".into(),
        thread_link: Some("https://t3.example/thread-3".into()),
        cost: None,
    }
}

const HOOK_PATH: &str = "/services/T0001/B0002/XXXXsecretXXXX";

#[tokio::test]
async fn slack_posts_the_title_body_and_link_and_accepts_only_ok() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(HOOK_PATH))
        .and(header("content-type", "application/json"))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&server)
        .await;
    let slack = SlackNotifier::new(
        fast_http(),
        Secret::Value(format!("{}{HOOK_PATH}", server.uri())),
    );
    slack.ring(&bell(OutcomeKind::Frozen)).await.unwrap();
    let sent: Value =
        serde_json::from_slice(&server.received_requests().await.unwrap()[0].body).unwrap();
    let text = sent["text"].as_str().unwrap();
    assert!(
        text.contains("*[FROZEN] infra#7 frozen — budget exhausted*"),
        "{text}"
    );
    assert!(text.contains("fix-forward budget spent"));
    assert!(text.contains("Thread: https://t3.example/thread-3"));
}

#[tokio::test]
async fn slack_errors_are_failures_and_never_show_the_webhook() {
    for case in fixture("slack-errors.json").as_array().unwrap() {
        let server = MockServer::start().await;
        let mut template =
            ResponseTemplate::new(u16::try_from(case["status"].as_u64().unwrap()).unwrap())
                .set_body_raw(
                    case["body"].as_str().unwrap().as_bytes().to_vec(),
                    case["content_type"].as_str().unwrap(),
                );
        if case["status"] == 429 {
            template = template.insert_header("retry-after", "30");
        }
        Mock::given(method("POST"))
            .respond_with(template)
            .expect(1)
            .mount(&server)
            .await;
        let slack = SlackNotifier::new(
            fast_http(),
            Secret::Value(format!("{}{HOOK_PATH}", server.uri())),
        );
        let err = slack
            .ring(&bell(OutcomeKind::NeedsHuman))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), case["kind"].as_str().unwrap(), "{case}: {err}");
        for text in [err.to_string(), format!("{err:?}"), format!("{slack:?}")] {
            assert!(
                !text.contains("XXXXsecretXXXX"),
                "the webhook leaked: {text}"
            );
        }
    }
}

#[tokio::test]
async fn a_slack_timeout_is_transient_and_does_not_leak_the_webhook() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_string("ok")
                .set_delay(Duration::from_secs(5)),
        )
        .mount(&server)
        .await;
    let http = Http::new(&HttpSettings {
        request_timeout: Duration::from_millis(200),
        ..HttpSettings::default()
    })
    .unwrap();
    let slack = SlackNotifier::new(http, Secret::Value(format!("{}{HOOK_PATH}", server.uri())));
    let err = slack.ring(&bell(OutcomeKind::Done)).await.unwrap_err();
    assert_eq!(err.kind(), "transient", "{err}");
    assert!(!err.to_string().contains("XXXXsecretXXXX"), "{err}");
}

#[tokio::test]
async fn ntfy_publishes_json_with_priority_tags_and_click() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/"))
        .and(header("authorization", "Bearer tk_ntfytoken"))
        .and(body_partial_json(serde_json::json!({
            "topic": "afk-alerts", "title": "[NEEDS-HUMAN] infra#7 needs a human", "priority": 5,
            "tags": ["afk", "needs-human", "infra"], "click": "https://t3.example/thread-3"})))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"id": "x1", "event": "message", "topic": "afk-alerts"}),
        ))
        .expect(1)
        .mount(&server)
        .await;
    let ntfy = NtfyNotifier::new(
        fast_http(),
        server.uri(),
        Secret::Value("afk-alerts".into()),
        Secret::Value("tk_ntfytoken".into()),
    );
    ntfy.ring(&bell(OutcomeKind::NeedsHuman)).await.unwrap();

    // A thread that is not a URL (a kubectl command, a directory) is in
    // the message, never a click target.
    let no_click = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": "x3"})))
        .expect(1)
        .mount(&no_click)
        .await;
    let ntfy = NtfyNotifier::new(
        fast_http(),
        no_click.uri(),
        Secret::Value("afk-alerts".into()),
        Secret::None,
    );
    let mut kube = bell(OutcomeKind::NeedsHuman);
    kube.thread_link = Some("kubectl -n afk-agents get jobs -l afk.dev/thread=t".into());
    ntfy.ring(&kube).await.unwrap();
    let sent: serde_json::Value =
        serde_json::from_slice(&no_click.received_requests().await.unwrap()[0].body).unwrap();
    assert!(sent.get("click").is_none(), "{sent}");
    assert!(
        sent["message"]
            .as_str()
            .unwrap()
            .contains("kubectl -n afk-agents"),
        "{sent}"
    );

    // Done is quiet.
    let quiet = MockServer::start().await;
    Mock::given(body_partial_json(
        serde_json::json!({"priority": 3, "title": "[DONE] infra#7 landed"}),
    ))
    .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": "x2"})))
    .expect(1)
    .mount(&quiet)
    .await;
    let ntfy = NtfyNotifier::new(
        fast_http(),
        quiet.uri(),
        Secret::Value("afk-alerts".into()),
        Secret::None,
    );
    ntfy.ring(&bell(OutcomeKind::Done)).await.unwrap();
    assert!(
        quiet.received_requests().await.unwrap()[0]
            .headers
            .get("authorization")
            .is_none()
    );
}

#[tokio::test]
async fn ntfy_errors_are_classified_from_their_json() {
    for case in fixture("ntfy-errors.json").as_array().unwrap() {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(
                ResponseTemplate::new(u16::try_from(case["status"].as_u64().unwrap()).unwrap())
                    .set_body_json(case["body"].clone()),
            )
            .mount(&server)
            .await;
        let ntfy = NtfyNotifier::new(
            fast_http(),
            server.uri(),
            Secret::Value("secret-topic-name".into()),
            Secret::Value("tk_secret".into()),
        );
        let err = ntfy.ring(&bell(OutcomeKind::Frozen)).await.unwrap_err();
        assert_eq!(err.kind(), case["kind"].as_str().unwrap(), "{case}: {err}");
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(
                !text.contains("tk_secret") && !text.contains("secret-topic-name"),
                "a secret leaked: {text}"
            );
        }
    }
}

#[tokio::test]
async fn one_failing_notifier_does_not_stop_the_others() {
    let failing = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(404).set_body_string("no_service"))
        .mount(&failing)
        .await;
    let working = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"id": "1"})))
        .expect(1)
        .mount(&working)
        .await;
    let slack = SlackNotifier::new(
        fast_http(),
        Secret::Value(format!("{}{HOOK_PATH}", failing.uri())),
    );
    let ntfy = NtfyNotifier::new(
        fast_http(),
        working.uri(),
        Secret::Value("t".into()),
        Secret::None,
    );
    let outcome = ring_all(&[&slack, &ntfy, &LogNotifier], &bell(OutcomeKind::Frozen)).await;
    assert!(outcome.rung());
    assert_eq!(outcome.delivered, ["ntfy", "log"]);
    assert_eq!(outcome.failed.len(), 1);
    assert_eq!(outcome.failed[0].0, "slack");

    // Failing everywhere: not rung, so the next tick rings again.
    let outcome = ring_all(&[&slack], &bell(OutcomeKind::Frozen)).await;
    assert!(!outcome.rung());
}
