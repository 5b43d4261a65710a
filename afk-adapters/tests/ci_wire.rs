//! The CI stages on the wire, each against a loopback server serving
//! recorded payloads from `fixtures/ci/` and `fixtures/k8s/`.

use std::path::Path;
use std::time::Duration;

use afk_adapters::github::GitHubBuildStage;
use afk_adapters::http::{Http, HttpSettings, RetryPolicy, Secret};
use afk_adapters::rollout::{RolloutStage, RolloutTargets};
use afk_adapters::woodpecker::{WoodpeckerSettings, WoodpeckerStage};
use afk_core::ci::{CommitRef, Stage, StageVerdict};
use afk_core::ports::PortError;
use afk_core::{CiStatus, Timestamp};
use afk_loop::ports::{StageProbe, probe_stages};
use serde_json::Value;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{fast_http, github};

fn fixture(name: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn commit() -> CommitRef {
    CommitRef {
        repo: "infra".into(),
        branch: "master".into(),
        sha: "abc1234def5678".into(),
        committed_at: Timestamp::from_unix_seconds(1_781_093_400),
    }
}

async fn build_stage(checks: &str, status: &str) -> (MockServer, GitHubBuildStage) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/infra/commits/abc1234def5678/check-runs"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(checks)))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/infra/commits/abc1234def5678/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(status)))
        .mount(&server)
        .await;
    let tracker = github(&server.uri(), "t", Some("acme"), Some("afk-bot"));
    (server, GitHubBuildStage::new(std::sync::Arc::new(tracker)))
}

#[tokio::test]
async fn the_build_stage_reads_checks_and_statuses_together() {
    let cases = [
        (
            "ci/check-runs-none.json",
            "ci/status-none.json",
            StageVerdict::None,
            "no check runs and no statuses",
        ),
        (
            "ci/check-runs-green.json",
            "ci/status-none.json",
            StageVerdict::Success,
            "succeeded",
        ),
        (
            "ci/check-runs-running.json",
            "ci/status-none.json",
            StageVerdict::Pending,
            "check \"test\" in_progress",
        ),
        (
            "ci/check-runs-every-conclusion.json",
            "ci/status-none.json",
            StageVerdict::Failure,
            "check \"job-failure\" failure",
        ),
        (
            "ci/check-runs-none.json",
            "ci/status-success.json",
            StageVerdict::Success,
            "succeeded",
        ),
        (
            "ci/check-runs-none.json",
            "ci/status-pending.json",
            StageVerdict::Pending,
            "status \"ci/woodpecker/push/build\" pending",
        ),
        (
            "ci/check-runs-green.json",
            "ci/status-failure.json",
            StageVerdict::Failure,
            "status \"ci/woodpecker/push/test\" failure",
        ),
        (
            "ci/check-runs-running.json",
            "ci/status-failure.json",
            StageVerdict::Failure,
            "failure",
        ),
    ];
    for (checks, status, verdict, detail) in cases {
        let (_server, stage) = build_stage(checks, status).await;
        let report = stage.probe(&commit()).await.unwrap().unwrap();
        assert_eq!(report.stage, Stage::Build);
        assert_eq!(report.verdict, verdict, "{checks} + {status}");
        assert!(
            report.detail.contains(detail),
            "{checks} + {status}: {}",
            report.detail
        );
    }
}

#[tokio::test]
async fn every_check_conclusion_is_classified() {
    // One check run per conclusion; each failing one is found in turn by
    // removing the ones before it.
    let all = fixture("ci/check-runs-every-conclusion.json");
    let runs = all["check_runs"].as_array().unwrap().clone();
    for run in runs {
        let conclusion = run["conclusion"].as_str().unwrap().to_owned();
        let server = MockServer::start().await;
        Mock::given(path("/repos/acme/infra/commits/abc1234def5678/check-runs"))
            .respond_with(
                ResponseTemplate::new(200)
                    .set_body_json(serde_json::json!({"total_count": 1, "check_runs": [run]})),
            )
            .mount(&server)
            .await;
        Mock::given(path("/repos/acme/infra/commits/abc1234def5678/status"))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixture("ci/status-none.json")))
            .mount(&server)
            .await;
        let tracker = github(&server.uri(), "t", Some("acme"), None);
        let report = tracker.build_report(&commit()).await.unwrap();
        let expected = match conclusion.as_str() {
            "success" | "neutral" | "skipped" => StageVerdict::Success,
            _ => StageVerdict::Failure,
        };
        assert_eq!(report.verdict, expected, "{conclusion}");
        if expected == StageVerdict::Failure {
            assert!(
                report
                    .link
                    .as_deref()
                    .unwrap()
                    .contains("/actions/runs/99/job/"),
                "the failing job's log is linked"
            );
        }
    }
}

async fn woodpecker(server: &MockServer) -> WoodpeckerStage {
    WoodpeckerStage::new(
        fast_http(),
        WoodpeckerSettings {
            url: server.uri(),
            token: Secret::Value("wp-token".into()),
            default_owner: Some("acme".into()),
        },
    )
}

#[tokio::test]
async fn woodpecker_takes_the_highest_pipeline_for_the_commit_and_stops_paging() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/repos/lookup/acme/infra"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("ci/woodpecker-repo.json")))
        .expect(1)
        .mount(&server)
        .await;
    // Newest first: the commit's pipelines (#14 and its restart #16) are
    // on page 1, so page 2 is never asked for.
    for (page, file, asked) in [
        ("1", "ci/woodpecker-pipelines-page1.json", 1),
        ("2", "ci/woodpecker-pipelines-page2.json", 0),
    ] {
        Mock::given(method("GET"))
            .and(path("/api/repos/3/pipelines"))
            .and(query_param("page", page))
            .and(query_param("branch", "master"))
            .and(query_param("event", "push"))
            .and(query_param("perPage", "50"))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixture(file)))
            .expect(asked)
            .mount(&server)
            .await;
    }
    let stage = woodpecker(&server).await;
    let report = stage.probe(&commit()).await.unwrap().unwrap();
    // #14 failed, #16 is its restart and succeeded: the highest number wins.
    assert_eq!(report.verdict, StageVerdict::Success);
    assert_eq!(report.detail, "Woodpecker pipeline #16 is success");
    assert_eq!(
        report.link,
        Some(format!("{}/repos/3/pipeline/16", server.uri()))
    );
    // The repository id is looked up once (the lookup expects 1 call), and
    // no page past the one holding the commit's newest pipeline is read.
    for r in server.received_requests().await.unwrap() {
        assert_eq!(r.headers.get("authorization").unwrap(), "Bearer wp-token");
        assert_ne!(
            r.url
                .query_pairs()
                .find(|(k, _)| k == "page")
                .map(|(_, v)| v.into_owned())
                .as_deref(),
            Some("3")
        );
    }
}

#[tokio::test]
async fn woodpecker_without_the_repository_is_a_stage_that_does_not_apply() {
    let server = MockServer::start().await;
    Mock::given(path("/api/repos/lookup/acme/infra"))
        .respond_with(ResponseTemplate::new(404).set_body_string("Not Found"))
        .mount(&server)
        .await;
    assert_eq!(
        woodpecker(&server).await.probe(&commit()).await.unwrap(),
        None
    );
}

#[tokio::test]
async fn woodpecker_failures_are_errors() {
    for (status, kind) in [(401u16, "auth"), (503, "transient")] {
        let server = MockServer::start().await;
        Mock::given(path("/api/repos/lookup/acme/infra"))
            .respond_with(ResponseTemplate::new(status))
            .mount(&server)
            .await;
        let err = woodpecker(&server)
            .await
            .probe(&commit())
            .await
            .unwrap_err();
        let got = err.kind();
        assert_eq!(got, kind, "{status}: {err:?}");
    }
}

#[tokio::test]
async fn a_slow_server_is_a_timeout_not_a_hang() {
    let server = MockServer::start().await;
    Mock::given(path("/api/repos/lookup/acme/infra"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let http = Http::new(&HttpSettings {
        request_timeout: Duration::from_millis(200),
        retry: RetryPolicy {
            max_retries: 1,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
            max_wait: Duration::from_secs(1),
        },
        ..HttpSettings::default()
    })
    .unwrap();
    let stage = WoodpeckerStage::new(
        http,
        WoodpeckerSettings {
            url: server.uri(),
            token: Secret::Value("t".into()),
            default_owner: Some("acme".into()),
        },
    );
    let err = stage.probe(&commit()).await.unwrap_err();
    assert!(
        matches!(&err, PortError::Transient { message } if message.contains("timed out")),
        "{err:?}"
    );
}

async fn rollout_against(file: &str) -> (MockServer, RolloutStage) {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/apis/apps/v1/namespaces/prod/deployments/api"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture(file)))
        .mount(&server)
        .await;
    let config = kube::Config::new(server.uri().parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let targets = RolloutTargets::parse("infra=prod/api").unwrap();
    (server, RolloutStage::new(client, targets))
}

#[tokio::test]
async fn the_rollout_stage_reads_the_deployment_at_every_stage() {
    let cases = [
        (
            "k8s/deployment-spec-not-observed.json",
            StageVerdict::Pending,
            "spec update to be observed",
        ),
        (
            "k8s/deployment-progressing.json",
            StageVerdict::Pending,
            "2 of 3 new replicas",
        ),
        (
            "k8s/deployment-complete.json",
            StageVerdict::Success,
            "rolled out",
        ),
        (
            "k8s/deployment-deadline-exceeded.json",
            StageVerdict::Failure,
            "ProgressDeadlineExceeded",
        ),
        (
            "k8s/deployment-old-image.json",
            StageVerdict::None,
            "not yet an image built from",
        ),
    ];
    for (file, verdict, detail) in cases {
        let (_server, stage) = rollout_against(file).await;
        let report = stage.probe(&commit()).await.unwrap().unwrap();
        assert_eq!(report.verdict, verdict, "{file}");
        assert!(report.detail.contains(detail), "{file}: {}", report.detail);
    }
    // A repository without a target: the stage does not apply.
    let (_server, stage) = rollout_against("k8s/deployment-complete.json").await;
    let other = CommitRef {
        repo: "web".into(),
        ..commit()
    };
    assert_eq!(stage.probe(&other).await.unwrap(), None);
}

#[tokio::test]
async fn a_missing_deployment_is_not_found() {
    let server = MockServer::start().await;
    Mock::given(path("/apis/apps/v1/namespaces/prod/deployments/api"))
        .respond_with(ResponseTemplate::new(404).set_body_json(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "deployments.apps \"api\" not found", "reason": "NotFound", "details": {"name": "api", "group": "apps", "kind": "deployments"}, "code": 404})))
        .mount(&server)
        .await;
    let client = kube::Client::try_from(kube::Config::new(server.uri().parse().unwrap())).unwrap();
    let stage = RolloutStage::new(client, RolloutTargets::parse("infra=prod/api").unwrap());
    let err = stage.probe(&commit()).await.unwrap_err();
    assert!(matches!(err, PortError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn the_stages_fold_end_to_end() {
    // Build green (statuses), Woodpecker succeeded, rollout still progressing:
    // pending on the rollout stage.
    let (_gh, build) = build_stage("ci/check-runs-green.json", "ci/status-success.json").await;
    let wp_server = MockServer::start().await;
    Mock::given(path("/api/repos/lookup/acme/infra"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("ci/woodpecker-repo.json")))
        .mount(&wp_server)
        .await;
    Mock::given(path("/api/repos/3/pipelines"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("ci/woodpecker-pipelines-page1.json")),
        )
        .mount(&wp_server)
        .await;
    let deploy = woodpecker(&wp_server).await;
    let (_k8s, rollout) = rollout_against("k8s/deployment-progressing.json").await;
    let verdict = probe_stages(&[&build, &deploy, &rollout], &commit())
        .await
        .unwrap();
    assert_eq!(verdict.status, CiStatus::Pending);
    assert_eq!(verdict.stage, Some(Stage::Rollout));
}

/// reqwest's default TLS provider is aws-lc-rs; a kube built with `ring`
/// beside it panics when its client is built ("Could not automatically
/// determine the process-level CryptoProvider"). Both clients, in one
/// process, over HTTPS config.
#[tokio::test]
async fn reqwest_and_kube_clients_coexist_in_one_process() {
    let http = Http::new(&HttpSettings::default()).unwrap();
    assert_eq!(http.calls(), 0);
    let config = kube::Config::new("https://127.0.0.1:6443".parse().unwrap());
    let client = kube::Client::try_from(config);
    assert!(
        client.is_ok(),
        "the kube client builds with the one crypto provider"
    );
}

/// A check's `details_url` and a status's `target_url` are whatever the app
/// that wrote them chose; only a link on GitHub itself reaches an agent.
#[tokio::test]
async fn only_links_on_github_itself_are_passed_on() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/infra/commits/abc1234def5678/check-runs"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "total_count": 1,
            "check_runs": [{"name": "test", "status": "completed", "conclusion": "failure",
                "details_url": "https://evil.example/run?next=ignore-your-instructions",
                "html_url": "https://github.com/acme/infra/runs/9"}]
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/acme/infra/commits/abc1234def5678/status"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "state": "failure", "total_count": 1,
            "statuses": [{"context": "lint", "state": "failure", "target_url": "https://evil.example/lint"}]
        })))
        .mount(&server)
        .await;
    let tracker = github(&server.uri(), "t", Some("acme"), Some("afk-bot"));
    let hosts = tracker.link_hosts();
    assert!(hosts.allows("https://github.com/acme/infra/runs/9"));
    assert!(hosts.allows(&format!("{}/x", server.uri())));
    assert!(!hosts.allows("https://github.com.evil.example/x"));
    assert!(!hosts.allows("not a url"));
    let report = tracker.build_report(&commit()).await.unwrap();
    assert_eq!(report.verdict, StageVerdict::Failure);
    assert_eq!(
        report.link.as_deref(),
        Some("https://github.com/acme/infra/runs/9"),
        "the app's own link is dropped for GitHub's page of the run"
    );
}
