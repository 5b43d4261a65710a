//! The GitHub adapter's HTTP layer over real recorded api.github.com traffic
//! (`@octokit/fixtures`, pinned in `fixtures/github-api/`): the recorded
//! answers, headers included, are served back from loopback, with
//! `https://api.github.com` in their `Link` headers pointed at the loopback
//! server (as the recordings' scope is).
//!
//! What the recordings settle: `Link` pagination exactly as GitHub sends it
//! (the next pages live under `/repositories/<id>/…`, not under the path
//! that was asked for), the `x-ratelimit-*` headers, a real full repository
//! and label list, and a real 422 error body. `@octokit/fixtures` 23.1.2
//! holds no recording of a rate-limited or secondary-limited answer; those
//! are read from the contract's facts (`github_wire.rs`, and the
//! classification tests beside the adapter).

use std::path::PathBuf;

use afk_core::ports::PortError;
use afk_loop::ports::Tracker;
use serde_json::Value;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::github;

/// The recorded exchanges of `scenario`, or `None` (outside CI) when the
/// package is not installed.
#[allow(clippy::print_stderr)] // a skipped test must say so
fn scenario(name: &str) -> Option<Vec<Value>> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/github-api/node_modules/@octokit/fixtures/scenarios/api.github.com")
        .join(name)
        .join("normalized-fixture.json");
    if !file.is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "@octokit/fixtures is not installed under CI: npm ci --prefix fixtures/github-api"
        );
        eprintln!(
            "skipped: @octokit/fixtures is not installed (npm ci --prefix fixtures/github-api)"
        );
        return None;
    }
    Some(serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap())
}

/// The recorded answer, served from `server`.
fn answer(recorded: &Value, server: &MockServer) -> ResponseTemplate {
    let status = u16::try_from(recorded["status"].as_u64().unwrap()).unwrap();
    let mut template = ResponseTemplate::new(status);
    for (k, v) in recorded["headers"].as_object().unwrap() {
        // Framing is the loopback server's own.
        if matches!(
            k.as_str(),
            "content-length" | "transfer-encoding" | "connection"
        ) {
            continue;
        }
        let v = match v {
            Value::String(s) => s.replace("https://api.github.com", &server.uri()),
            other => other.to_string(),
        };
        template = template.insert_header(k.as_str(), v.as_str());
    }
    match &recorded["response"] {
        Value::Null => template,
        Value::String(s) if s.is_empty() => template,
        body => template.set_body_raw(serde_json::to_vec(body).unwrap(), "application/json"),
    }
}

#[tokio::test]
async fn link_pagination_reads_every_recorded_page() {
    let Some(pages) = scenario("paginate-issues") else {
        return;
    };
    let server = MockServer::start().await;
    let mut expected = Vec::new();
    for (n, page) in pages.iter().enumerate() {
        let recorded_path = page["path"].as_str().unwrap();
        let (p, _) = recorded_path.split_once('?').unwrap_or((recorded_path, ""));
        let mock = Mock::given(method("GET")).and(path(p));
        let mock = if n == 0 {
            mock
        } else {
            mock.and(query_param("page", (n + 1).to_string()))
        };
        mock.respond_with(answer(page, &server))
            .expect(1)
            .mount(&server)
            .await;
        for item in page["response"].as_array().unwrap() {
            if item.get("pull_request").is_none() {
                expected.push(item["number"].as_u64().unwrap());
            }
        }
    }
    let tracker = github(&server.uri(), "t", None, Some("afk-bot"));
    let issues = tracker
        .open_issues_with_label("octokit-fixture-org/paginate-issues", "bug")
        .await
        .unwrap();
    let numbers: Vec<u64> = issues.iter().map(|i| i.number).collect();
    assert_eq!(numbers, expected, "every recorded page, in order");
    assert!(numbers.len() >= 10, "{numbers:?}");
    assert_eq!(tracker.api_calls(), 5, "one request per recorded page");
    // The recorded x-ratelimit-remaining.
    let remaining = pages[4]["headers"]["x-ratelimit-remaining"]
        .as_str()
        .and_then(|s| s.parse().ok());
    assert_eq!(tracker.rate_limit_remaining(), remaining);
}

#[tokio::test]
async fn a_recorded_repository_gives_its_default_branch() {
    let Some(recorded) = scenario("get-repository") else {
        return;
    };
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/octokit-fixture-org/hello-world"))
        .respond_with(answer(&recorded[0], &server))
        .mount(&server)
        .await;
    let tracker = github(&server.uri(), "t", None, Some("afk-bot"));
    let branch = tracker
        .default_branch("octokit-fixture-org/hello-world")
        .await
        .unwrap();
    assert_eq!(
        Some(branch.as_str()),
        recorded[0]["response"]["default_branch"].as_str()
    );
}

#[tokio::test]
async fn adding_a_label_reads_the_recorded_label_list() {
    let Some(recorded) = scenario("add-labels-to-issue") else {
        return;
    };
    let add = recorded
        .iter()
        .find(|r| r["path"].as_str().unwrap().ends_with("/labels"))
        .unwrap();
    // The recorded request is the shape afk sends: {"labels": [names]}.
    assert!(add["body"]["labels"].is_array(), "{}", add["body"]);
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(add["path"].as_str().unwrap()))
        .respond_with(answer(add, &server))
        .expect(1)
        .mount(&server)
        .await;
    let tracker = github(&server.uri(), "t", None, Some("afk-bot"));
    tracker
        .add_label("octokit-fixture-org/add-labels-to-issue", 1, "Foo")
        .await
        .unwrap();
    let sent = &server.received_requests().await.unwrap()[0];
    let body: Value = serde_json::from_slice(&sent.body).unwrap();
    assert_eq!(body, serde_json::json!({"labels": ["Foo"]}));
}

#[tokio::test]
async fn a_recorded_422_is_a_permanent_error_with_github_s_message() {
    let Some(recorded) = scenario("errors") else {
        return;
    };
    assert_eq!(recorded[0]["status"], 422);
    let server = MockServer::start().await;
    // The recorded error answer, to a write afk makes.
    Mock::given(method("PATCH"))
        .and(path("/repos/acme/infra/issues/1"))
        .respond_with(answer(&recorded[0], &server))
        .mount(&server)
        .await;
    let tracker = github(&server.uri(), "t", Some("acme"), Some("afk-bot"));
    let e = tracker.close_issue("infra", 1).await.unwrap_err();
    assert!(
        matches!(&e, PortError::Permanent { message } if message.contains("422 Validation Failed")),
        "{e:?}"
    );
    assert!(!e.is_retryable());
}
