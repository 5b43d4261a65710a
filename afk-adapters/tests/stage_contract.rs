//! The StageProbe port's contract, run unchanged against the in-memory fake
//! build stage and against every real stage talking to a loopback server
//! that speaks its wire format: GitHub checks (the simulator), Woodpecker
//! (the simulator) and the Kubernetes rollout (a loopback API server serving
//! recorded Deployment objects).
//!
//! What every stage promises (`afk_core::ci::StageProbe`): a commit with no
//! signal yet is `StageVerdict::None`, one being built is `Pending`, a pass is
//! `Success`, a failure is `Failure`, each report names its own stage, and a
//! failed read is an error, never "no signal".

use std::sync::{Arc, Mutex};

use afk_adapters::github::GitHubBuildStage;
use afk_adapters::http::Secret;
use afk_adapters::rollout::{RolloutStage, RolloutTargets};
use afk_adapters::woodpecker::{WoodpeckerSettings, WoodpeckerStage};
use afk_core::Timestamp;
use afk_core::ci::{CommitRef, Stage, StageVerdict};
use afk_loop::ports::StageProbe;
use afk_sim::fakes::FakeBuildStage;
use afk_sim::{GITHUB_TOKEN, Sim, WOODPECKER_TOKEN, lock};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::common::{fast_http, github};

/// What the world says about the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scripted {
    Nothing,
    Running,
    Passed,
    Failed,
    /// The service is down.
    Broken,
}

const SHA: &str = "abc1234def5678";

fn commit(branch: &str) -> CommitRef {
    CommitRef {
        repo: "infra".into(),
        branch: branch.into(),
        sha: SHA.into(),
        committed_at: Timestamp::from_unix_seconds(1_781_093_400),
    }
}

/// A stage and the means to script its world.
trait World {
    fn name(&self) -> &'static str;
    fn stage(&self) -> &dyn StageProbe;
    fn kind(&self) -> Stage;
    fn branch(&self) -> &'static str;
    fn script(&self, state: Scripted);
}

// ---- the worlds -------------------------------------------------------------------

/// The build stage over a GitHub model: in memory (the fake), or through the
/// simulator's HTTP face (the real adapter); both read the same check runs.
struct Checks {
    name: &'static str,
    model: Arc<Mutex<afk_sim::github::GitHubModel>>,
    stage: Box<dyn StageProbe>,
    _sim: Option<Sim>,
}

impl Checks {
    fn fake() -> Self {
        let model = Arc::new(Mutex::new(afk_sim::github::GitHubModel::new(
            GITHUB_TOKEN,
            "afk-bot",
        )));
        lock(&model).add_repo("acme/infra", "master");
        Checks {
            name: "fake build stage",
            stage: Box::new(FakeBuildStage::new(model.clone(), "acme")),
            model,
            _sim: None,
        }
    }

    async fn github() -> Self {
        let sim = Sim::start().await;
        lock(&sim.github).add_repo("acme/infra", "master");
        let tracker = github(&sim.uri(), GITHUB_TOKEN, Some("acme"), Some("afk-bot"));
        Checks {
            name: "GitHub checks over the simulator",
            model: sim.github.clone(),
            stage: Box::new(GitHubBuildStage::new(Arc::new(tracker))),
            _sim: Some(sim),
        }
    }
}

impl World for Checks {
    fn name(&self) -> &'static str {
        self.name
    }
    fn stage(&self) -> &dyn StageProbe {
        self.stage.as_ref()
    }
    fn kind(&self) -> Stage {
        Stage::Build
    }
    fn branch(&self) -> &'static str {
        "master"
    }
    fn script(&self, state: Scripted) {
        let mut m = lock(&self.model);
        m.broken_repos.clear();
        let runs: &[(&str, &str, Option<&str>)] = match state {
            Scripted::Nothing | Scripted::Broken => &[],
            Scripted::Running => &[("test", "in_progress", None)],
            Scripted::Passed => &[("test", "completed", Some("success"))],
            Scripted::Failed => &[("test", "completed", Some("failure"))],
        };
        m.set_checks("acme/infra", SHA, runs);
        if state == Scripted::Broken {
            m.broken_repos.push("acme/infra".into());
        }
    }
}

struct Woodpecker {
    sim: Sim,
    stage: WoodpeckerStage,
}

impl Woodpecker {
    async fn new() -> Self {
        let sim = Sim::start().await;
        lock(&sim.woodpecker).add_repo("acme/infra");
        let stage = WoodpeckerStage::new(
            fast_http(),
            WoodpeckerSettings {
                url: format!("{}/woodpecker", sim.uri()),
                token: Secret::Value(WOODPECKER_TOKEN.into()),
                default_owner: Some("acme".into()),
            },
        );
        Woodpecker { sim, stage }
    }
}

impl World for Woodpecker {
    fn name(&self) -> &'static str {
        "Woodpecker over the simulator"
    }
    fn stage(&self) -> &dyn StageProbe {
        &self.stage
    }
    fn kind(&self) -> Stage {
        Stage::Deploy
    }
    fn branch(&self) -> &'static str {
        // The simulator runs its pipelines on `main`.
        "main"
    }
    fn script(&self, state: Scripted) {
        let mut m = lock(&self.sim.woodpecker);
        m.broken = state == Scripted::Broken;
        m.pipelines.clear();
        let created = 1_781_093_460;
        match state {
            Scripted::Nothing | Scripted::Broken => {}
            Scripted::Running => m.run("acme/infra", SHA, "running", created),
            Scripted::Passed => m.run("acme/infra", SHA, "success", created),
            Scripted::Failed => m.run("acme/infra", SHA, "failure", created),
        }
    }
}

/// A loopback Kubernetes API server answering for one Deployment with the
/// recorded object that matches the scripted state.
struct KubeApi(Arc<Mutex<Scripted>>);

impl Respond for KubeApi {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        if request.url.path() != "/apis/apps/v1/namespaces/prod/deployments/api" {
            return ResponseTemplate::new(404);
        }
        let file = match *lock(&self.0) {
            Scripted::Broken => {
                return ResponseTemplate::new(500).set_body_json(serde_json::json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "etcdserver: request timed out", "reason": "InternalError", "code": 500}));
            }
            Scripted::Nothing => "deployment-old-image.json",
            Scripted::Running => "deployment-progressing.json",
            Scripted::Passed => "deployment-complete.json",
            Scripted::Failed => "deployment-deadline-exceeded.json",
        };
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/k8s")
            .join(file);
        let body: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        ResponseTemplate::new(200).set_body_json(body)
    }
}

struct Rollout {
    _server: MockServer,
    state: Arc<Mutex<Scripted>>,
    stage: RolloutStage,
}

impl Rollout {
    async fn new() -> Self {
        let server = MockServer::start().await;
        let state = Arc::new(Mutex::new(Scripted::Nothing));
        Mock::given(wiremock::matchers::any())
            .respond_with(KubeApi(state.clone()))
            .mount(&server)
            .await;
        let client =
            kube::Client::try_from(kube::Config::new(server.uri().parse().unwrap())).unwrap();
        let stage = RolloutStage::new(client, RolloutTargets::parse("infra=prod/api").unwrap());
        Rollout {
            _server: server,
            state,
            stage,
        }
    }
}

impl World for Rollout {
    fn name(&self) -> &'static str {
        "rollout over a loopback Kubernetes API"
    }
    fn stage(&self) -> &dyn StageProbe {
        &self.stage
    }
    fn kind(&self) -> Stage {
        Stage::Rollout
    }
    fn branch(&self) -> &'static str {
        "master"
    }
    fn script(&self, state: Scripted) {
        *lock(&self.state) = state;
    }
}

// ---- the contract -----------------------------------------------------------------

async fn contract(world: &dyn World) {
    let name = world.name();
    assert_eq!(world.stage().stage(), world.kind(), "{name}");
    let commit = commit(world.branch());
    for (state, verdict) in [
        (Scripted::Nothing, StageVerdict::None),
        (Scripted::Running, StageVerdict::Pending),
        (Scripted::Passed, StageVerdict::Success),
        (Scripted::Failed, StageVerdict::Failure),
    ] {
        world.script(state);
        let report = world
            .stage()
            .probe(&commit)
            .await
            .unwrap_or_else(|e| panic!("{name}, {state:?}: {e}"))
            .unwrap_or_else(|| panic!("{name}, {state:?}: the stage does not apply"));
        assert_eq!(report.verdict, verdict, "{name}, {state:?}: {report:?}");
        assert_eq!(report.stage, world.kind(), "{name}, {state:?}");
        assert!(!report.detail.is_empty(), "{name}, {state:?}: says why");
    }
    world.script(Scripted::Broken);
    let got = world.stage().probe(&commit).await;
    assert!(
        got.is_err(),
        "{name}: a failed read is an error, never \"no signal\": {got:?}"
    );
}

/// The build stage's own cases, on which the adapter and the old fake
/// disagreed (`neutral` and `skipped` read as failures, statuses ignored),
/// and those only a paged read gets right: a failure on a later page.
async fn build_contract(checks: &Checks) {
    let name = checks.name;
    let commit = commit("master");
    type Runs<'a> = Vec<(&'a str, &'a str, Option<&'a str>)>;
    type Statuses<'a> = Vec<(&'a str, &'a str, Option<&'a str>)>;
    let many_runs: Vec<String> = (0..150).map(|i| format!("job {i}")).collect();
    let mut paged_runs: Runs<'_> = many_runs
        .iter()
        .map(|n| (n.as_str(), "completed", Some("success")))
        .collect();
    paged_runs[149].2 = Some("failure");
    let many_contexts: Vec<String> = (0..150).map(|i| format!("ci/{i}")).collect();
    let mut paged_statuses: Statuses<'_> = many_contexts
        .iter()
        .map(|c| (c.as_str(), "success", None))
        .collect();
    paged_statuses[149].1 = "error";
    let cases: Vec<(&str, Runs<'_>, Statuses<'_>, StageVerdict)> = vec![
        (
            "neutral",
            vec![("lint", "completed", Some("neutral"))],
            vec![],
            StageVerdict::Success,
        ),
        (
            "skipped",
            vec![("docs", "completed", Some("skipped"))],
            vec![],
            StageVerdict::Success,
        ),
        (
            "a failed status",
            vec![],
            vec![("ci/woodpecker", "failure", Some("https://ci.example/1"))],
            StageVerdict::Failure,
        ),
        (
            "a pending status",
            vec![("test", "completed", Some("success"))],
            vec![("ci/woodpecker", "pending", None)],
            StageVerdict::Pending,
        ),
        (
            "statuses only, all good",
            vec![],
            vec![("ci/a", "success", None), ("ci/b", "success", None)],
            StageVerdict::Success,
        ),
        (
            "a failing check run on page 2",
            paged_runs,
            vec![],
            StageVerdict::Failure,
        ),
        (
            "an erroring status on page 2",
            vec![],
            paged_statuses,
            StageVerdict::Failure,
        ),
    ];
    for (case, runs, statuses, verdict) in cases {
        {
            let mut m = lock(&checks.model);
            m.set_checks("acme/infra", SHA, &runs);
            m.set_statuses("acme/infra", SHA, &statuses);
        }
        let report = checks
            .stage
            .probe(&commit)
            .await
            .unwrap_or_else(|e| panic!("{name}, {case}: {e}"))
            .unwrap_or_else(|| panic!("{name}, {case}: the stage does not apply"));
        assert_eq!(report.verdict, verdict, "{name}, {case}: {report:?}");
    }
}

#[tokio::test]
async fn the_fake_build_stage_keeps_the_contract() {
    contract(&Checks::fake()).await;
    build_contract(&Checks::fake()).await;
}

/// More check runs than afk reads (50 pages of 100) is an error, never a
/// verdict from the part read: a failure past the cap must not read green.
#[tokio::test]
async fn a_check_run_listing_past_the_page_cap_is_an_error_never_green() {
    let checks = Checks::github().await;
    let names: Vec<String> = (0..5_001).map(|i| format!("job {i}")).collect();
    let runs: Vec<(&str, &str, Option<&str>)> = names
        .iter()
        .map(|n| (n.as_str(), "completed", Some("success")))
        .collect();
    lock(&checks.model).set_checks("acme/infra", SHA, &runs);
    let err = checks.stage.probe(&commit("master")).await.unwrap_err();
    assert!(err.to_string().contains("more than 50 pages"), "{err}");
}

/// Commit statuses likewise, cut short either way: more than afk reads (50
/// pages of 100), or fewer on the pages than GitHub's `total_count` says
/// there are. All that was read is green; the verdict must not be.
#[tokio::test]
async fn a_status_listing_cut_short_is_an_error_never_green() {
    let checks = Checks::github().await;
    let contexts: Vec<String> = (0..5_001).map(|i| format!("ci/{i}")).collect();
    let statuses: Vec<(&str, &str, Option<&str>)> = contexts
        .iter()
        .map(|c| (c.as_str(), "success", None))
        .collect();
    lock(&checks.model).set_statuses("acme/infra", SHA, &statuses);
    let err = checks.stage.probe(&commit("master")).await.unwrap_err();
    assert!(err.to_string().contains("more than 50 pages"), "{err}");

    // One page of 100 green statuses, no next page, and a count of 250.
    let server = MockServer::start().await;
    let base = format!("/repos/acme/infra/commits/{SHA}");
    Mock::given(wiremock::matchers::path(format!("{base}/check-runs")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"total_count": 0, "check_runs": []})),
        )
        .mount(&server)
        .await;
    let page: Vec<serde_json::Value> = (0..100)
        .map(|i| {
            serde_json::json!({"context": format!("ci/{i}"), "state": "success", "target_url": null})
        })
        .collect();
    Mock::given(wiremock::matchers::path(format!("{base}/status")))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "state": "success", "sha": SHA, "total_count": 250, "statuses": page,
        })))
        .mount(&server)
        .await;
    let tracker = github(&server.uri(), GITHUB_TOKEN, Some("acme"), Some("afk-bot"));
    let stage = GitHubBuildStage::new(Arc::new(tracker));
    let err = stage.probe(&commit("master")).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("counts 250 statuses for commit abc1234def5678 but its pages held 100"),
        "{err}"
    );
}

/// The GitHub build stage's contract over the simulator: the requests it
/// made and the REST answers it was given, for the conformance test.
pub async fn github_stage_exchanges() -> (
    Vec<wiremock::Request>,
    Vec<(String, String, u16, Option<serde_json::Value>)>,
) {
    let world = Checks::github().await;
    lock(&world.model).record_replies = true;
    contract(&world).await;
    let sim = world
        ._sim
        .as_ref()
        .expect("the GitHub world has a simulator");
    let requests = sim.requests().await;
    let replies = std::mem::take(&mut lock(&world.model).replies);
    (requests, replies)
}

#[tokio::test]
async fn github_checks_keep_the_contract() {
    contract(&Checks::github().await).await;
    build_contract(&Checks::github().await).await;
}

#[tokio::test]
async fn woodpecker_keeps_the_contract() {
    contract(&Woodpecker::new().await).await;
}

#[tokio::test]
async fn the_rollout_stage_keeps_the_contract() {
    contract(&Rollout::new().await).await;
}

/// Woodpecker likewise: more pipelines newer than the commit than afk reads
/// (20 pages of 50), none of them the commit's, is an error, never "no
/// pipeline" from part of the listing.
#[tokio::test]
async fn a_woodpecker_listing_past_the_page_cap_is_an_error() {
    let world = Woodpecker::new().await;
    let committed = commit(world.branch()).committed_at.unwrap().unix_seconds();
    {
        let mut wp = lock(&world.sim.woodpecker);
        for i in 0..1_001 {
            wp.run(
                "acme/infra",
                &format!("other{i:04}"),
                "success",
                committed + i,
            );
        }
    }
    let err = world
        .stage
        .probe(&commit(world.branch()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("more than 20 pages"), "{err}");
}
