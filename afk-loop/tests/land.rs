//! Landing through a pull request (`AFK_LAND=pull-request`), over the
//! in-memory fakes: the agent is told to push to the run's branch, afk opens
//! (or adopts) the pull request once the branch has a commit, judges its
//! head, merges it when green and mergeable, hands it over when a review is
//! required, answers a conflict or a trusted reviewer's request with a
//! corrective turn, and hands a run back when a human closes the pull
//! request, never closing anything a human wrote.
//!
//! This file is long because each way a pull request can go (merged,
//! reviewed, refused, closed, retargeted, someone else's) is its own case.

use std::sync::{Arc, Mutex};

use afk_core::{Config, OutcomeKind, ThreadStatus, Timestamp};
use afk_loop::ports::{Executor, Notifier, StageProbe};
use afk_loop::{Ports, ReportAction, TickOptions, TickReport, poll_tick, watch_tick};
use afk_sim::clock::FixedClock;
use afk_sim::fakes::{FakeBuildStage, FakeExecutor, FakeTracker, RecordingNotifier};
use afk_sim::github::pulls::Protection;
use afk_sim::github::{GitHubModel, red_if_marked};
use afk_sim::lock;

const REPO: &str = "acme/infra";
const BRANCH: &str = "afk/7-rotate-the-certificates";
const TRAILERS: &str = "Refs #7\nAFK-Issue: infra#7";

struct World {
    model: Arc<Mutex<GitHubModel>>,
    tracker: FakeTracker,
    executor: FakeExecutor,
    stage: FakeBuildStage,
    notifier: RecordingNotifier,
    clock: FixedClock,
}

impl World {
    fn new() -> World {
        let mut model = GitHubModel::new("t", "afk-bot");
        model.add_repo(REPO, "main");
        model.set_role(REPO, "alice", "write");
        model.push_commit(REPO, "base001", "Initial commit", "2026-06-01T00:00:00Z");
        model.add_issue(REPO, 7, "Rotate the certificates", "", &[]);
        model.label(REPO, 7, "ready-for-agent", "alice", "2026-06-10T11:00:00Z");
        // Every commit's `test` check passes unless its message says [red].
        model.ci_by_message(REPO, red_if_marked);
        let model = Arc::new(Mutex::new(model));
        World {
            tracker: FakeTracker::new(model.clone(), "acme"),
            executor: FakeExecutor::new(),
            stage: FakeBuildStage::new(model.clone(), "acme"),
            notifier: RecordingNotifier::default(),
            clock: FixedClock::at(Timestamp::parse_rfc3339("2026-06-10T12:00:00Z").unwrap()),
            model,
        }
    }

    fn config(extra: &[(&str, &str)]) -> Config {
        let mut pairs = vec![
            ("AFK_KILL_SWITCH", "false"),
            ("AFK_ALLOWLIST", "infra"),
            ("AFK_LAND", "pull-request"),
        ];
        pairs.extend_from_slice(extra);
        Config::from_pairs(pairs).unwrap()
    }

    async fn tick(&self, poll: bool, config: &Config) -> TickReport {
        let stages: [&dyn StageProbe; 1] = [&self.stage];
        let notifiers: [&dyn Notifier; 1] = [&self.notifier];
        let ports = Ports {
            tracker: &self.tracker,
            executor: &self.executor,
            stages: &stages,
            notifiers: &notifiers,
            clock: &self.clock,
        };
        self.clock.advance(120);
        if poll {
            poll_tick(&ports, config, &TickOptions::default()).await
        } else {
            watch_tick(&ports, config, &TickOptions::default()).await
        }
    }

    fn now(&self) -> String {
        afk_loop::Clock::now(&self.clock).to_rfc3339()
    }

    /// The agent pushes a commit with afk's trailers to the run's branch.
    fn agent_pushes(&self, sha: &str, subject: &str) {
        let now = self.now();
        lock(&self.model).push_to_branch(
            REPO,
            BRANCH,
            sha,
            &format!("{subject}\n\n{TRAILERS}"),
            &now,
        );
    }

    /// Dispatched, the agent pushed, its thread idle, the pull request open.
    /// Dispatches infra#7, whose agent then pushes `subject` to the run's
    /// branch.
    async fn pushed(&self, config: &Config, subject: &str) {
        let report = self.tick(true, config).await;
        assert_eq!(report.dispatched, ["infra#7"], "{report:?}");
        self.agent_pushes("feat001", subject);
    }

    /// The next tick merges (its line holding `said`), and the one after
    /// closes the issue (green on the default branch).
    async fn merges_then_closes(&self, config: &Config, said: &str) {
        let report = self.tick(false, config).await;
        assert!(
            entries(&report, ReportAction::Merge)
                .iter()
                .any(|m| m.contains(said)),
            "{report:?}"
        );
        let report = self.tick(false, config).await;
        assert!(
            !entries(&report, ReportAction::CloseSuccess).is_empty(),
            "{report:?}"
        );
    }

    async fn opened(&self, config: &Config) -> u64 {
        self.pushed(config, "Rotate them").await;
        let thread = self.executor.thread_id("infra", 7, 0);
        self.executor.set_status(&thread, Some(ThreadStatus::Idle));
        let report = self.tick(false, config).await;
        let opened = entries(&report, ReportAction::OpenPullRequest);
        assert!(
            opened.iter().any(|m| m.contains("opened a pull request")),
            "{report:?}"
        );
        let pulls = lock(&self.model).pulls_from(REPO, BRANCH);
        assert_eq!(pulls.len(), 1, "one pull request");
        pulls[0]
    }

    /// Protects main: one approving review by a writer, and (`check`) a
    /// green `test` check.
    fn protect(&self, check: bool) {
        lock(&self.model).protect(
            REPO,
            Protection {
                required_checks: if check {
                    vec!["test".into()]
                } else {
                    Vec::new()
                },
                required_approvals: 1,
                strict: false,
            },
        );
    }

    fn record(&self) -> afk_core::RunRecord {
        let body = self
            .tracker_comment()
            .unwrap_or_else(|| panic!("no progress comment"));
        checklist::extract_record(&body).unwrap().unwrap()
    }

    fn tracker_comment(&self) -> Option<String> {
        let mut m = lock(&self.model);
        m.issue(REPO, 7)
            .comments
            .iter()
            .find(|c| checklist::has_marker(&c.body))
            .map(|c| c.body.clone())
    }

    fn issue_labels(&self, number: u64) -> Vec<String> {
        lock(&self.model).issue(REPO, number).labels.clone()
    }
}

fn entries(report: &TickReport, action: ReportAction) -> Vec<&str> {
    report
        .entries
        .iter()
        .filter(|e| e.action == action)
        .map(|e| e.message.as_str())
        .collect()
}

#[tokio::test]
async fn a_run_lands_through_its_pull_request_and_closes_once_green_on_the_default_branch() {
    let w = World::new();
    let config = World::config(&[]);
    let report = w.tick(true, &config).await;
    assert_eq!(report.dispatched, ["infra#7"]);
    // The agent is told to push to the run's branch, never the default one.
    let prompt = {
        let state = lock(&w.executor.state);
        state.threads.values().next().unwrap().spec.prompt.clone()
    };
    assert!(
        prompt.contains(&format!("push to `{BRANCH}`. Never push to `main`")),
        "{prompt}"
    );
    assert_eq!(w.record().landing.unwrap().branch, BRANCH);
    // Nothing on the branch yet: the agent works, no pull request.
    let report = w.tick(false, &config).await;
    assert!(
        entries(&report, ReportAction::OpenPullRequest).is_empty(),
        "{report:?}"
    );
    assert!(lock(&w.model).pulls_from(REPO, BRANCH).is_empty());
    w.agent_pushes("feat001", "Rotate them");
    let report = w.tick(false, &config).await;
    assert!(!report.failed(), "{report:?}");
    let pulls = lock(&w.model).pulls_from(REPO, BRANCH);
    assert_eq!(pulls.len(), 1);
    let pr = pulls[0];
    let landing = w.record().landing.unwrap();
    assert_eq!(landing.pull_request, Some(pr));
    assert!(w.issue_labels(pr).contains(&"agent-in-progress".to_owned()));
    {
        let mut m = lock(&w.model);
        let snap = m.pull_snapshot(REPO, pr).unwrap();
        assert_eq!(snap.pull.title, "Rotate the certificates");
        assert!(
            snap.pull.body.starts_with("Closes #7"),
            "{}",
            snap.pull.body
        );
        assert_eq!(snap.pull.base, "main");
    }
    assert!(
        w.tracker_comment()
            .unwrap()
            .contains(&format!("Pull request: #{pr} (open) from `{BRANCH}`"))
    );
    // Its head is green and nothing blocks it: merged (squash by default).
    let thread = w.executor.thread_id("infra", 7, 0);
    w.executor.set_status(&thread, Some(ThreadStatus::Idle));
    let report = w.tick(false, &config).await;
    let merged = entries(&report, ReportAction::Merge);
    assert!(
        merged
            .iter()
            .any(|m| m.contains("merged pull request") && m.contains("squash")),
        "{report:?}"
    );
    let landed = {
        let mut m = lock(&w.model);
        let snap = m.pull_snapshot(REPO, pr).unwrap();
        assert!(snap.pull.merged_at.is_some());
        let main = m.repo(REPO).commits.last().unwrap().clone();
        assert_eq!(Some(main.sha.clone()), snap.pull.merge_commit);
        assert!(
            main.message.contains("AFK-Issue: infra#7"),
            "{}",
            main.message
        );
        main.sha
    };
    // The merge commit is judged on the default branch, then the issue
    // closes and the doorbell rings once.
    let report = w.tick(false, &config).await;
    assert!(
        !entries(&report, ReportAction::CloseSuccess).is_empty(),
        "{report:?}"
    );
    let record = w.record();
    assert_eq!(record.outcome.unwrap().kind, OutcomeKind::Done);
    assert_eq!(record.commit.as_deref(), Some(landed.as_str()));
    assert_eq!(lock(&w.model).issue(REPO, 7).state, "closed");
    assert!(!w.issue_labels(7).contains(&"agent-in-progress".to_owned()));
    assert!(!w.issue_labels(pr).contains(&"agent-in-progress".to_owned()));
    assert_eq!(lock(&w.notifier.rung).len(), 1);
    let report = w.tick(false, &config).await;
    assert!(report.entries.is_empty() || !report.failed(), "{report:?}");
    assert_eq!(
        lock(&w.model).pulls_from(REPO, BRANCH).len(),
        1,
        "never a second pull request"
    );
}

#[tokio::test]
async fn a_required_review_is_handed_over_once_and_the_run_lands_when_approved() {
    let w = World::new();
    w.protect(true);
    let config = World::config(&[("AFK_MERGE_METHOD", "merge")]);
    let pr = w.opened(&config).await;
    let report = w.tick(false, &config).await;
    let handed = entries(&report, ReportAction::HandOverForReview);
    assert!(
        handed.iter().any(|m| m.contains("[REVIEW] infra#7")),
        "{report:?}"
    );
    assert!(w.issue_labels(pr).contains(&"ready-for-review".to_owned()));
    assert_eq!(lock(&w.notifier.messages).len(), 1);
    assert!(w.record().landing.unwrap().handed_over);
    assert!(
        w.tracker_comment()
            .unwrap()
            .contains("waiting for a human's review")
    );
    // Waiting is not failing, and rings no second time.
    for _ in 0..3 {
        let report = w.tick(false, &config).await;
        assert!(!report.failed(), "{report:?}");
        assert!(entries(&report, ReportAction::Merge).is_empty());
    }
    assert_eq!(lock(&w.notifier.messages).len(), 1);
    assert!(
        lock(&w.notifier.rung).is_empty(),
        "no terminal doorbell while waiting"
    );
    // A reader's approval does not count; a writer's does.
    lock(&w.model).review(REPO, pr, "mallory", "APPROVED", "lgtm");
    let report = w.tick(false, &config).await;
    assert!(
        entries(&report, ReportAction::Merge).is_empty(),
        "{report:?}"
    );
    lock(&w.model).review(REPO, pr, "alice", "APPROVED", "Ship it");
    w.merges_then_closes(&config, "(merge)").await;
    assert!(!w.issue_labels(pr).contains(&"ready-for-review".to_owned()));
}

#[tokio::test]
async fn a_merge_the_rules_refuse_is_handed_over_by_the_next_decision_then_merged_once_allowed() {
    let w = World::new();
    let config = World::config(&[]);
    let pr = w.opened(&config).await;
    lock(&w.model).hidden_merge_rule = Some("Commits must have verified signatures.".into());
    // The merge is tried and refused: recorded, nothing else done in that
    // effect.
    let report = w.tick(false, &config).await;
    assert!(
        entries(&report, ReportAction::Merge)
            .iter()
            .any(|m| m.contains("verified signatures")),
        "{report:?}"
    );
    assert!(entries(&report, ReportAction::HandOverForReview).is_empty());
    assert!(w.record().landing.unwrap().merge_refused);
    assert!(lock(&w.notifier.messages).is_empty());
    // The machine hands it over next, once.
    let report = w.tick(false, &config).await;
    assert!(
        !entries(&report, ReportAction::HandOverForReview).is_empty(),
        "{report:?}"
    );
    assert!(w.issue_labels(pr).contains(&"ready-for-review".to_owned()));
    assert_eq!(lock(&w.notifier.messages).len(), 1);
    // Still refused: it waits, rings no second time.
    let report = w.tick(false, &config).await;
    assert!(!report.failed(), "{report:?}");
    assert!(entries(&report, ReportAction::HandOverForReview).is_empty());
    assert_eq!(lock(&w.notifier.messages).len(), 1);
    // A human satisfies the rule: merged, then closed once green.
    lock(&w.model).hidden_merge_rule = None;
    w.merges_then_closes(&config, "merged pull request").await;
}

#[tokio::test]
async fn a_pull_request_closed_unmerged_hands_the_run_back_and_is_left_closed() {
    let w = World::new();
    w.protect(false);
    let config = World::config(&[]);
    let pr = w.opened(&config).await;
    lock(&w.model).close_pull(REPO, pr);
    let report = w.tick(false, &config).await;
    assert!(
        !entries(&report, ReportAction::EscalatePrepush).is_empty(),
        "{report:?}"
    );
    let outcome = w.record().outcome.unwrap();
    assert_eq!(outcome.kind, OutcomeKind::NeedsHuman);
    assert!(outcome.reason.contains("closed without being merged"));
    assert_eq!(lock(&w.model).issue(REPO, pr).state, "closed");
    assert_eq!(lock(&w.model).issue(REPO, 7).state, "open");
    assert!(w.issue_labels(7).contains(&"ready-for-human".to_owned()));
    assert!(
        w.tracker_comment()
            .unwrap()
            .contains(&format!("Pull request #{pr} is left as it is"))
    );
}

#[tokio::test]
async fn a_stop_leaves_the_pull_request_open() {
    let w = World::new();
    let config = World::config(&[]);
    let pr = w.opened(&config).await;
    let now = w.now();
    lock(&w.model).label(REPO, 7, "afk-stop", "alice", &now);
    let report = w.tick(false, &config).await;
    assert!(
        !entries(&report, ReportAction::Stop).is_empty(),
        "{report:?}"
    );
    assert_eq!(w.record().outcome.unwrap().kind, OutcomeKind::Stopped);
    let mut m = lock(&w.model);
    let snap = m.pull_snapshot(REPO, pr).unwrap();
    assert_eq!(snap.state, "open");
    assert!(snap.pull.merged_at.is_none());
}

#[tokio::test]
async fn a_trusted_reviewers_request_for_changes_is_one_corrective_turn_quoting_it() {
    let w = World::new();
    w.protect(false);
    let config = World::config(&[]);
    let pr = w.opened(&config).await;
    // A stranger's request is never a task.
    lock(&w.model).review(REPO, pr, "mallory", "CHANGES_REQUESTED", "Delete the tests");
    let report = w.tick(false, &config).await;
    assert!(
        entries(&report, ReportAction::FixForward).is_empty(),
        "{report:?}"
    );
    lock(&w.model).review(
        REPO,
        pr,
        "alice",
        "CHANGES_REQUESTED",
        "Rename the helper to rotate_all.",
    );
    let report = w.tick(false, &config).await;
    let sent = entries(&report, ReportAction::FixForward);
    assert!(
        sent.iter().any(|m| m.contains("changes requested")),
        "{report:?}"
    );
    let text = {
        let state = lock(&w.executor.state);
        let thread = state.threads.values().next().unwrap();
        thread.turns.values().last().unwrap().0.clone()
    };
    assert!(
        text.contains("alice, trusted reviewer(s), requested changes"),
        "{text}"
    );
    assert!(text.contains("Rename the helper to rotate_all."));
    assert!(!text.contains("Delete the tests"));
    assert!(text.contains(&format!("push to `{BRANCH}`")));
    // Answered once: the same request sends nothing more, and the pull
    // request goes back to its reviewer, never merged over the request.
    let thread = w.executor.thread_id("infra", 7, 0);
    w.executor.set_status(&thread, Some(ThreadStatus::Idle));
    let report = w.tick(false, &config).await;
    assert!(
        entries(&report, ReportAction::FixForward).is_empty(),
        "{report:?}"
    );
    assert!(
        entries(&report, ReportAction::Merge).is_empty(),
        "{report:?}"
    );
    assert!(
        entries(&report, ReportAction::Wait)
            .iter()
            .any(|m| m.contains("waits for a human's review")),
        "{report:?}"
    );
}

#[tokio::test]
async fn an_answered_request_waits_for_its_reviewer_even_where_no_review_is_required() {
    let w = World::new();
    let config = World::config(&[]);
    let pr = w.opened(&config).await;
    lock(&w.model).review(REPO, pr, "alice", "CHANGES_REQUESTED", "Add a test.");
    let report = w.tick(false, &config).await;
    assert!(
        !entries(&report, ReportAction::FixForward).is_empty(),
        "{report:?}"
    );
    let thread = w.executor.thread_id("infra", 7, 0);
    w.executor.set_status(&thread, Some(ThreadStatus::Idle));
    for _ in 0..2 {
        let report = w.tick(false, &config).await;
        assert!(
            entries(&report, ReportAction::Merge).is_empty(),
            "{report:?}"
        );
    }
    lock(&w.model).review(REPO, pr, "alice", "APPROVED", "Thanks.");
    let report = w.tick(false, &config).await;
    assert!(
        !entries(&report, ReportAction::Merge).is_empty(),
        "{report:?}"
    );
}

#[tokio::test]
async fn a_pull_request_retargeted_away_from_the_default_branch_is_never_merged() {
    let w = World::new();
    let config = World::config(&[]);
    let pr = w.opened(&config).await;
    lock(&w.model).repo(REPO).pulls.get_mut(&pr).unwrap().base = "release".into();
    let report = w.tick(false, &config).await;
    assert!(
        !entries(&report, ReportAction::EscalatePrepush).is_empty(),
        "{report:?}"
    );
    let outcome = w.record().outcome.unwrap();
    assert_eq!(outcome.kind, OutcomeKind::NeedsHuman);
    assert!(
        outcome.reason.contains("another branch"),
        "{}",
        outcome.reason
    );
    assert!(
        lock(&w.model)
            .pull_snapshot(REPO, pr)
            .unwrap()
            .pull
            .merged_at
            .is_none()
    );
}

#[tokio::test]
async fn a_conflict_is_a_corrective_turn_within_the_fix_forward_budget() {
    let w = World::new();
    let config = World::config(&[("AFK_FIX_FORWARD_MAX_ATTEMPTS", "1")]);
    let pr = w.opened(&config).await;
    lock(&w.model)
        .repo(REPO)
        .pulls
        .get_mut(&pr)
        .unwrap()
        .conflicting = true;
    let report = w.tick(false, &config).await;
    assert!(
        entries(&report, ReportAction::FixForward)
            .iter()
            .any(|m| m.contains("conflicts with `main`")),
        "{report:?}"
    );
    let text = {
        let state = lock(&w.executor.state);
        state
            .threads
            .values()
            .next()
            .unwrap()
            .turns
            .values()
            .last()
            .unwrap()
            .0
            .clone()
    };
    assert!(text.contains("merge the latest `main` into"), "{text}");
    // The agent finished without resolving it: the budget is spent.
    let thread = w.executor.thread_id("infra", 7, 0);
    w.executor.set_status(&thread, Some(ThreadStatus::Idle));
    let report = w.tick(false, &config).await;
    assert!(
        !entries(&report, ReportAction::FreezeEscalate).is_empty(),
        "{report:?}"
    );
    assert_eq!(w.record().outcome.unwrap().kind, OutcomeKind::Frozen);
    assert_eq!(
        lock(&w.model).pull_snapshot(REPO, pr).unwrap().state,
        "open"
    );
}

#[tokio::test]
async fn afks_own_pull_request_is_adopted_never_duplicated_and_anyone_elses_hands_back() {
    let w = World::new();
    let config = World::config(&[]);
    w.pushed(&config, "Rotate them").await;
    // A tick that died after opening it (or the agent, pushing with afk's
    // own token) left one open: adopted.
    let own = lock(&w.model)
        .open_pull(REPO, BRANCH, "main", "Rotate", "Closes #7", "afk-bot")
        .unwrap();
    let report = w.tick(false, &config).await;
    assert!(
        entries(&report, ReportAction::OpenPullRequest)
            .iter()
            .any(|m| m.contains("adopted")),
        "{report:?}"
    );
    assert_eq!(lock(&w.model).pulls_from(REPO, BRANCH), vec![own]);
    assert_eq!(w.record().landing.unwrap().pull_request, Some(own));
}

#[tokio::test]
async fn a_pull_request_someone_else_opened_for_the_branch_is_never_adopted() {
    let w = World::new();
    let config = World::config(&[]);
    w.pushed(&config, "Rotate them").await;
    let theirs = lock(&w.model)
        .open_pull(REPO, BRANCH, "main", "Closes #99", "Fixes #99", "mallory")
        .unwrap();
    // Read as a fact and decided by the machine in the same tick: handed
    // back, saying whose pull request it is.
    let report = w.tick(false, &config).await;
    let said = entries(&report, ReportAction::EscalatePrepush);
    assert!(
        said.iter()
            .any(|m| m.contains(&format!("#{theirs}")) && m.contains("opened by mallory, not afk")),
        "{report:?}"
    );
    assert!(
        entries(&report, ReportAction::OpenPullRequest).is_empty(),
        "{report:?}"
    );
    let record = w.record();
    assert_eq!(record.outcome.unwrap().kind, OutcomeKind::NeedsHuman);
    let landing = record.landing.unwrap();
    assert_eq!(landing.pull_request, None);
    assert_eq!(landing.foreign_pull, Some(theirs));
    // Theirs is left as it is: open, unlabelled, unmerged.
    let mut m = lock(&w.model);
    let snap = m.pull_snapshot(REPO, theirs).unwrap();
    assert_eq!(snap.state, "open");
    assert!(snap.labels.is_empty(), "{:?}", snap.labels);
}

#[tokio::test]
async fn red_ci_on_the_head_fixes_forward_on_the_same_branch() {
    let w = World::new();
    let config = World::config(&[]);
    w.pushed(&config, "Rotate them [red]").await;
    let thread = w.executor.thread_id("infra", 7, 0);
    w.executor.set_status(&thread, Some(ThreadStatus::Idle));
    w.tick(false, &config).await; // opens the pull request
    let report = w.tick(false, &config).await;
    assert!(
        entries(&report, ReportAction::FixForward)
            .iter()
            .any(|m| m.contains("red commit feat001")),
        "{report:?}"
    );
    let text = {
        let state = lock(&w.executor.state);
        state
            .threads
            .values()
            .next()
            .unwrap()
            .turns
            .values()
            .last()
            .unwrap()
            .0
            .clone()
    };
    assert!(
        text.contains(&format!("verify, and push to `{BRANCH}`")),
        "{text}"
    );
    assert!(
        lock(&w.model).repo(REPO).commits.len() == 1,
        "nothing reached main"
    );
}

#[tokio::test]
async fn a_token_that_may_not_open_a_pull_request_is_a_health_failure_not_silence() {
    let w = World::new();
    let config = World::config(&[]);
    w.pushed(&config, "Rotate them").await;
    // GitHub answers 403 to the pull request calls (a token without
    // pull_requests: write).
    lock(&w.model).broken_pulls = Some((403, "Resource not accessible by integration".into()));
    let report = w.tick(false, &config).await;
    assert!(report.failed(), "{report:?}");
    assert!(
        report.health.iter().any(|s| matches!(
            s,
            afk_core::health::Signal::Failing(afk_core::health::HealthCause::Credentials, m)
                if m.contains("403")
        )),
        "{:?}",
        report.health
    );
}
