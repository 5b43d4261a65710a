//! The GitHub adapter on the wire: request counts, rate limits, retries,
//! escaping, secrets, and recorded payloads from `fixtures/github/`.
//!
//! This file is long because it holds one wire test per GitHub behaviour afk depends on.

use std::path::Path;

use afk_core::ports::PortError;
use afk_loop::ports::Tracker;
use afk_sim::lock;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::github;
use crate::tracker_contract::{REPO, http_world};

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/github")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

async fn count(sim: &afk_sim::Sim, method: &str, needle: &str) -> usize {
    sim.requests()
        .await
        .iter()
        .filter(|r| r.method.as_str() == method && r.url.path().contains(needle))
        .count()
}

#[tokio::test]
async fn listing_costs_one_request_per_hundred_issues() {
    let w = http_world().await;
    for n in 1..=250 {
        lock(&w.sim.github).add_issue(REPO, n, "t", "", &["ready-for-agent"]);
    }
    let issues = w
        .tracker
        .open_issues_with_label("infra", "ready-for-agent")
        .await
        .unwrap();
    assert_eq!(issues.len(), 250);
    assert_eq!(count(&w.sim, "GET", "/issues").await, 3);
    assert_eq!(w.tracker.api_calls(), 3);
    assert_eq!(w.tracker.rate_limit_remaining(), Some(4997));
}

#[tokio::test]
async fn a_secondary_rate_limit_is_waited_out_and_retried() {
    let w = http_world().await;
    lock(&w.sim.github).add_issue(REPO, 1, "t", "", &["ready-for-agent"]);
    lock(&w.sim.github).secondary_limit_next = 1;
    let issues = w
        .tracker
        .open_issues_with_label("infra", "ready-for-agent")
        .await
        .unwrap();
    assert_eq!(issues.len(), 1);
    assert_eq!(count(&w.sim, "GET", "/issues").await, 2);
}

#[tokio::test]
async fn a_primary_rate_limit_past_the_allowed_wait_fails_at_once() {
    let w = http_world().await;
    lock(&w.sim.github).rate_limit_next = 1;
    let err = w
        .tracker
        .open_issues_with_label("infra", "ready-for-agent")
        .await
        .unwrap_err();
    let PortError::RateLimited { retry_after } = err else {
        panic!("expected a rate limit, got {err:?}");
    };
    assert!(
        retry_after.unwrap().as_secs() > 3600,
        "the wait comes from x-ratelimit-reset"
    );
    assert_eq!(
        count(&w.sim, "GET", "/issues").await,
        1,
        "no retry past the allowed wait"
    );
}

#[tokio::test]
async fn creating_a_comment_is_not_retried() {
    let w = http_world().await;
    lock(&w.sim.github).add_issue(REPO, 7, "t", "", &[]);
    lock(&w.sim.github).fail_next = 1;
    let err = w
        .tracker
        .create_comment("infra", 7, "body")
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::Transient { .. }), "{err:?}");
    assert_eq!(count(&w.sim, "POST", "/comments").await, 1);
    // Idempotent writes are retried.
    lock(&w.sim.github).fail_next = 1;
    w.tracker
        .add_label("infra", 7, "agent-in-progress")
        .await
        .unwrap();
    assert_eq!(count(&w.sim, "POST", "/labels").await, 2);
}

#[tokio::test]
async fn permission_lookups_are_cached_for_the_tick() {
    let w = http_world().await;
    {
        let mut m = lock(&w.sim.github);
        for n in [1, 2, 3] {
            m.add_issue(REPO, n, "t", "", &[]);
            m.label(REPO, n, "ready-for-agent", "alice", "2026-06-09T10:00:00Z");
        }
    }
    for n in [1, 2, 3] {
        assert!(
            w.tracker
                .label_trust("infra", n, "ready-for-agent")
                .await
                .unwrap()
                .trusted
        );
    }
    assert_eq!(count(&w.sim, "GET", "/permission").await, 1);
    assert_eq!(count(&w.sim, "POST", "/graphql").await, 3);
}

#[tokio::test]
async fn a_triage_user_s_label_is_not_trusted_and_says_why() {
    let w = http_world().await;
    {
        let mut m = lock(&w.sim.github);
        m.add_issue(REPO, 4, "t", "", &[]);
        m.label(
            REPO,
            4,
            "ready-for-agent",
            "mallory",
            "2026-06-09T10:00:00Z",
        );
    }
    let trust = w
        .tracker
        .label_trust("infra", 4, "ready-for-agent")
        .await
        .unwrap();
    assert!(!trust.trusted);
    assert_eq!(trust.actor.as_deref(), Some("mallory"));
    insta::assert_snapshot!(trust.reason, @"mallory has read permission (admin or write needed)");
}

#[tokio::test]
async fn label_names_are_escaped_in_paths() {
    let w = http_world().await;
    lock(&w.sim.github).add_issue(REPO, 7, "t", "", &["needs review/ops", "keep"]);
    w.tracker
        .remove_label("infra", 7, "needs review/ops")
        .await
        .unwrap();
    assert_eq!(lock(&w.sim.github).issue(REPO, 7).labels, ["keep"]);
    let paths: Vec<String> = w
        .sim
        .requests()
        .await
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert!(
        paths
            .iter()
            .any(|p| p.ends_with("/labels/needs%20review%2Fops")),
        "{paths:?}"
    );
}

#[tokio::test]
async fn the_token_never_appears_in_errors_or_debug_output() {
    let w = http_world().await;
    let wrong = github(
        &w.sim.uri(),
        "ghp_wrong_and_secret_0123456789",
        Some("acme"),
        None,
    );
    let err = wrong
        .open_issues_with_label("infra", "ready-for-agent")
        .await
        .unwrap_err();
    assert!(matches!(err, PortError::Auth { .. }), "{err:?}");
    for text in [err.to_string(), format!("{err:?}"), format!("{wrong:?}")] {
        assert!(
            !text.contains("ghp_wrong_and_secret"),
            "the token leaked: {text}"
        );
    }
    assert!(!format!("{:?}", w.tracker).contains(afk_sim::GITHUB_TOKEN));
}

#[tokio::test]
async fn a_bare_name_without_an_owner_is_a_clear_error() {
    let w = http_world().await;
    let no_owner = github(&w.sim.uri(), afk_sim::GITHUB_TOKEN, None, None);
    let err = no_owner.default_branch("infra").await.unwrap_err();
    assert!(err.to_string().contains("AFK_GITHUB_OWNER"), "{err}");
    assert!(w.sim.requests().await.is_empty());
}

/// Recorded payload: a page of the issues listing with a pull request mixed
/// in, in GitHub's full shape.
#[tokio::test]
async fn a_recorded_issues_page_drops_the_pull_request() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/infra/issues"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("issues-page.json")))
        .mount(&server)
        .await;
    let tracker = github(&server.uri(), "t", Some("acme"), Some("afk-bot"));
    let issues = tracker
        .open_issues_with_label("infra", "ready-for-agent")
        .await
        .unwrap();
    let numbers: Vec<u64> = issues.iter().map(|i| i.number).collect();
    assert_eq!(numbers, [12, 15]);
    assert_eq!(issues[0].labels, ["ready-for-agent", "priority:1"]);
    assert_eq!(
        issues[0].body,
        "The nightly backup can fail silently.\n\nBlocked by #3"
    );
    assert_eq!(issues[1].body, "", "a null body reads as empty");
}

/// The trust query's answer in GitHub's shape (`__typename` on every node,
/// as the query asks): a triage user applied the label first and renamed the
/// issue; the last application, by a write user after the rename, decides.
#[tokio::test]
async fn a_recorded_trust_answer_uses_the_latest_label_event() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("trust-graphql.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/infra/collaborators/alice/permission"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"permission": "write", "role_name": "maintain", "user": {"login": "alice"}})))
        .expect(1)
        .mount(&server)
        .await;
    let tracker = github(&server.uri(), "t", Some("acme"), Some("afk-bot"));
    let trust = tracker
        .label_trust("infra", 12, "ready-for-agent")
        .await
        .unwrap();
    assert!(trust.trusted, "{}", trust.reason);
    assert_eq!(trust.actor.as_deref(), Some("alice"));
}

/// A field GitHub always sends that is missing or mistyped is a contract
/// violation naming it, never a default (a missing `sha` once read as "",
/// a missing `state` as closed).
#[tokio::test]
async fn a_missing_field_is_a_contract_violation_naming_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/infra/commits"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
            {"commit": {"message": "fix\n\nCloses: acme/infra#7", "committer": {"date": "2026-06-10T12:00:00Z"}}}
        ])))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/infra/issues"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([
            {"number": 7, "title": "t", "body": null, "labels": [{"name": "ready-for-agent"}]}
        ])))
        .mount(&server)
        .await;
    let tracker = github(&server.uri(), "t", Some("acme"), Some("afk-bot"));
    let since = afk_core::Timestamp::parse_rfc3339("2026-06-10T00:00:00Z").unwrap();
    for (what, err, field) in [
        (
            "commits",
            tracker
                .commits_with_trailer("infra", "master", since, 7)
                .await
                .unwrap_err(),
            "[0]: missing field `sha`",
        ),
        (
            "issues",
            tracker
                .open_issues_with_label("infra", "ready-for-agent")
                .await
                .unwrap_err(),
            "[0]: missing field `state`",
        ),
    ] {
        match &err {
            PortError::ContractViolation { message } => {
                assert!(message.contains(field), "{what}: {message}");
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

/// An answer over the cap is refused with an error that names the cap, and
/// is not read into memory whole.
#[tokio::test]
async fn an_answer_over_the_body_cap_is_refused_naming_the_cap() {
    let server = MockServer::start().await;
    let huge = format!(
        "{{\"default_branch\": \"main\", \"description\": \"{}\"}}",
        "x".repeat(afk_adapters::github::MAX_BODY_BYTES + 1)
    );
    Mock::given(method("GET"))
        .and(path("/repos/acme/infra"))
        .respond_with(ResponseTemplate::new(200).set_body_string(huge))
        .mount(&server)
        .await;
    let tracker = github(&server.uri(), "t", Some("acme"), Some("afk-bot"));
    let e = tracker.default_branch("infra").await.unwrap_err();
    assert!(
        matches!(&e, PortError::Permanent { message } if message.contains("larger than the 16 MiB")),
        "{e:?}"
    );
    // Just under the cap is read.
    let server = MockServer::start().await;
    let fits = format!(
        "{{\"default_branch\": \"main\", \"description\": \"{}\"}}",
        "x".repeat(afk_adapters::github::MAX_BODY_BYTES - 100)
    );
    Mock::given(method("GET"))
        .and(path("/repos/acme/infra"))
        .respond_with(ResponseTemplate::new(200).set_body_string(fits))
        .mount(&server)
        .await;
    let tracker = github(&server.uri(), "t", Some("acme"), Some("afk-bot"));
    assert_eq!(tracker.default_branch("infra").await.unwrap(), "main");
}

/// Forty "Blocked by" references cost one GraphQL read, not forty; a pull
/// request counts by its state, a missing number is ignored.
#[tokio::test]
async fn blocker_states_are_read_a_hundred_per_request() {
    let w = http_world().await;
    let body: String = (1..=40).map(|n| format!("Blocked by #{n}\n")).collect();
    {
        let mut m = lock(&w.sim.github);
        m.add_issue(REPO, 100, "t", &body, &["ready-for-agent"]);
        for n in 1..=38 {
            m.add_issue(REPO, n, "blocker", "", &[]);
            if n % 2 == 0 {
                m.issue(REPO, n).state = "closed".into();
            }
        }
        m.add_pull_request(REPO, 39, &[]);
        // #40 does not exist.
    }
    let issue = w
        .tracker
        .open_issues_with_label("infra", "ready-for-agent")
        .await
        .unwrap()
        .remove(0);
    let before = w.sim.requests().await.len();
    let open = w.tracker.open_blockers("infra", &issue).await.unwrap();
    let mut expected: Vec<u64> = (1..=38).filter(|n| n % 2 == 1).collect();
    expected.push(39);
    assert_eq!(open, expected);
    let made = w.sim.requests().await.len() - before;
    assert_eq!(
        made, 2,
        "the native dependency listing and one GraphQL read"
    );
}

/// The token goes with every request, so a next-page link to another host
/// is refused, not followed.
#[tokio::test]
async fn a_next_page_link_to_another_host_is_not_followed() {
    let server = MockServer::start().await;
    let elsewhere = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/infra/issues"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!([]))
                .insert_header(
                    "link",
                    format!("<{}/steal?page=2>; rel=\"next\"", elsewhere.uri()).as_str(),
                ),
        )
        .mount(&server)
        .await;
    let tracker = github(&server.uri(), "t", Some("acme"), Some("afk-bot"));
    let e = tracker
        .open_issues_with_label("infra", "ready-for-agent")
        .await
        .unwrap_err();
    assert!(
        matches!(&e, PortError::ContractViolation { message } if message.contains("leaves the API")),
        "{e:?}"
    );
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}

/// A dispatch looks for the progress comment, then reads the approved
/// comments: the newest page is asked once, and each body once. Writing a
/// comment drops what was read, so the next look sees it.
#[tokio::test]
async fn a_comment_page_is_read_once_a_tick_until_a_comment_is_written() {
    let w = http_world().await;
    {
        let mut m = lock(&w.sim.github);
        m.add_issue(REPO, 7, "t", "", &["ready-for-agent"]);
        m.add_comment(REPO, 7, "Use the staging CA.", "alice");
    }
    let comment_reads = || async {
        w.sim
            .requests()
            .await
            .iter()
            .filter(|r| String::from_utf8_lossy(&r.body).contains("AfkCommentsHead"))
            .count()
    };
    assert_eq!(w.tracker.progress_comment("infra", 7).await.unwrap(), None);
    let approved = w.tracker.approved_comments("infra", 7).await.unwrap();
    assert_eq!(approved.len(), 1);
    assert_eq!(
        w.tracker.approved_comments("infra", 7).await.unwrap(),
        approved
    );
    assert_eq!(comment_reads().await, 1, "the newest page, once");
    assert_eq!(
        count(&w.sim, "POST", "/graphql").await,
        2,
        "and one body read"
    );
    w.tracker
        .create_comment("infra", 7, "a comment by afk")
        .await
        .unwrap();
    assert_eq!(w.tracker.progress_comment("infra", 7).await.unwrap(), None);
    assert_eq!(comment_reads().await, 2, "read again after a write");
}

/// Fail closed: a blocker GitHub answers with an error other than
/// NOT_FOUND (a timeout on one alias, a permission error) is a blocker that
/// could not be read, and it blocks; only NOT_FOUND means "no such issue".
/// (GraphQL answers a failed field with `null` and an error naming its path:
/// <https://spec.graphql.org/October2021/#sec-Errors>.)
#[tokio::test]
async fn an_unreadable_blocker_blocks_and_only_a_missing_one_does_not() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/infra/issues/100/dependencies/blocked_by"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/graphql"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "data": {"repository": {
                "n0": null,
                "n1": null,
                "n2": {"__typename": "Issue", "issueState": "CLOSED"},
                "n3": null
            }},
            "errors": [
                {"type": "NOT_FOUND", "path": ["repository", "n0"],
                 "message": "Could not resolve to an issue or pull request with the number of 5."},
                {"type": "SERVICE_UNAVAILABLE", "path": ["repository", "n1"],
                 "message": "Something went wrong while executing your query."}
            ]
        })))
        .mount(&server)
        .await;
    let tracker = github(&server.uri(), "t", Some("acme"), Some("afk-bot"));
    let issue = afk_core::ports::TrackedIssue {
        repo: "infra".into(),
        number: 100,
        title: "t".into(),
        body: "Blocked by #5\nBlocked by #6\nBlocked by #7\nBlocked by #8".into(),
        labels: vec![],
        open: true,
    };
    let open = tracker.open_blockers("infra", &issue).await.unwrap();
    // #5 does not exist; #6 failed to read; #7 is closed; #8 came back null
    // with no error at all.
    assert_eq!(open, [6, 8]);
}

/// The GraphQL requests `w`'s simulator has answered.
async fn graphql_requests(w: &crate::tracker_contract::Http) -> usize {
    count(&w.sim, "POST", "/graphql").await
}

/// Issue #21: finding a run's progress comment costs a bounded number of
/// requests, however many comments came after it. Measured for 10, 1,000
/// and 10,100 comments (printed with `--nocapture`), and held to the bound
/// `github/comments.rs` documents: the head and one body read when the
/// comment is among the newest hundred; else the head, one round of probes,
/// one read of the windows and one body read. Asking again in the same tick
/// costs nothing.
#[tokio::test]
#[allow(clippy::print_stderr)] // the measured counts
async fn the_progress_comment_costs_a_bounded_number_of_requests() {
    let record = checklist::comment_body(
        "### AFK run progress",
        &afk_core::RunRecord::dispatched("t-1", crate::common::ts("2026-06-09T10:05:00Z")),
    );
    let mut counts = Vec::new();
    for after in [10, 1_000, 10_100] {
        let w = http_world().await;
        let id = {
            let mut m = lock(&w.sim.github);
            m.add_issue(REPO, 7, "t", "", &[]);
            m.label(REPO, 7, "ready-for-agent", "alice", "2026-06-09T10:00:00Z");
            m.now = "2026-06-09T10:05:00Z".into();
            let id = m.add_comment(REPO, 7, &record, afk_sim::GITHUB_LOGIN);
            m.label(
                REPO,
                7,
                "agent-in-progress",
                afk_sim::GITHUB_LOGIN,
                "2026-06-09T10:05:02Z",
            );
            m.now = "2026-06-09T11:00:00Z".into();
            for i in 0..after {
                m.add_comment(REPO, 7, &format!("comment {i}"), "bystander");
            }
            id
        };
        let found = w.tracker.progress_comment("infra", 7).await.unwrap();
        assert_eq!(found.map(|c| c.id), id, "{after} comments after it");
        let spent = graphql_requests(&w).await;
        w.tracker.progress_comment("infra", 7).await.unwrap();
        assert_eq!(graphql_requests(&w).await, spent, "once a tick");
        counts.push((after, spent));
    }
    eprintln!("GraphQL requests to find the progress comment, by comments after it: {counts:?}");
    assert_eq!(counts[0], (10, 2), "the head and the body");
    for (after, spent) in &counts[1..] {
        assert!(*spent <= 4, "{after} comments after it: {spent} requests");
    }
}

/// Issue #22: comment reads select authors only, and bodies are read by
/// node id only for the comments afk uses: its own (the record) and the
/// trusted authors' (the task). A hundred giant comments by others are
/// never downloaded.
#[tokio::test]
async fn only_the_bodies_afk_uses_are_read() {
    let w = http_world().await;
    let (mine, trusted) = {
        let mut m = lock(&w.sim.github);
        m.add_issue(REPO, 7, "t", "", &[]);
        let mut trusted = Vec::new();
        for i in 0..100 {
            m.add_comment(REPO, 7, &"x".repeat(65_536), "stranger");
            if i % 40 == 0 {
                trusted.extend(m.add_comment(REPO, 7, "Do it this way.", "alice"));
            }
        }
        let mine = m.add_comment(REPO, 7, "<!-- afk-run v1 {} -->", afk_sim::GITHUB_LOGIN);
        (mine, trusted)
    };
    assert!(
        w.tracker
            .progress_comment("infra", 7)
            .await
            .unwrap()
            .is_some()
    );
    let approved = w.tracker.approved_comments("infra", 7).await.unwrap();
    assert_eq!(approved.len(), 3);
    let mut asked: Vec<String> = Vec::new();
    for r in w.sim.requests().await {
        let body: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let query = body["query"].as_str().unwrap_or_default();
        if query.contains("AfkCommentBodies") {
            asked.extend(
                body["variables"]["ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned()),
            );
        } else {
            assert!(
                !query.contains(" body "),
                "a comment read that selects bodies: {query}"
            );
        }
    }
    let mut expected: Vec<String> = mine
        .into_iter()
        .chain(trusted)
        .map(|id| format!("IC_{id}"))
        .collect();
    expected.sort();
    asked.sort();
    assert_eq!(asked, expected, "each body used, once");
}
