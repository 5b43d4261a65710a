//! The poll tick over the in-memory fakes: an issue that cannot be read
//! fails alone, never its repository's other issues.

use std::sync::{Arc, Mutex};

use afk_core::ports::{
    ApprovedComment, Closure, Comment, PortError, PortResult, PushedCommit, RepoScan, TrackedIssue,
    Trust,
};
use afk_core::trust::LabelEvent;
use afk_core::{Config, Timestamp};
use afk_loop::ports::{Notifier, StageProbe, Tracker};
use afk_loop::{Level, Ports, ReportAction, TickOptions, poll_tick};
use afk_sim::clock::FixedClock;
use afk_sim::fakes::{FakeBuildStage, FakeExecutor, FakeTracker, RecordingNotifier};
use afk_sim::github::GitHubModel;
use async_trait::async_trait;

/// The fake tracker, except that reading issue `broken`'s trust fails as
/// GitHub fails one issue (a transient error).
struct OneUnreadable {
    inner: FakeTracker,
    broken: u64,
}

#[async_trait]
impl Tracker for OneUnreadable {
    async fn open_issues_with_label(&self, r: &str, l: &str) -> PortResult<Vec<TrackedIssue>> {
        self.inner.open_issues_with_label(r, l).await
    }
    async fn issues_with_label(&self, r: &str, l: &str) -> PortResult<Vec<TrackedIssue>> {
        self.inner.issues_with_label(r, l).await
    }
    async fn scan(
        &self,
        repos: &[String],
        ready: Option<&str>,
        locked: &str,
    ) -> Vec<PortResult<RepoScan>> {
        self.inner.scan(repos, ready, locked).await
    }
    async fn label_trust(&self, r: &str, n: u64, l: &str) -> PortResult<Trust> {
        if n == self.broken {
            return Err(PortError::Transient {
                message: "HTTP 502".into(),
            });
        }
        self.inner.label_trust(r, n, l).await
    }
    async fn label_events(&self, r: &str, n: u64) -> PortResult<Vec<LabelEvent>> {
        self.inner.label_events(r, n).await
    }
    async fn last_closure(&self, r: &str, n: u64) -> PortResult<Option<Closure>> {
        self.inner.last_closure(r, n).await
    }
    async fn open_blockers(&self, r: &str, i: &TrackedIssue) -> PortResult<Vec<u64>> {
        self.inner.open_blockers(r, i).await
    }
    async fn default_branch(&self, r: &str) -> PortResult<String> {
        self.inner.default_branch(r).await
    }
    async fn approved_comments(&self, r: &str, n: u64) -> PortResult<Vec<ApprovedComment>> {
        self.inner.approved_comments(r, n).await
    }
    async fn progress_comment(&self, r: &str, n: u64) -> PortResult<Option<Comment>> {
        self.inner.progress_comment(r, n).await
    }
    async fn create_comment(&self, r: &str, n: u64, b: &str) -> PortResult<Comment> {
        self.inner.create_comment(r, n, b).await
    }
    async fn update_comment(&self, r: &str, id: u64, b: &str) -> PortResult<()> {
        self.inner.update_comment(r, id, b).await
    }
    async fn add_label(&self, r: &str, n: u64, l: &str) -> PortResult<()> {
        self.inner.add_label(r, n, l).await
    }
    async fn remove_label(&self, r: &str, n: u64, l: &str) -> PortResult<()> {
        self.inner.remove_label(r, n, l).await
    }
    async fn close_issue(&self, r: &str, n: u64) -> PortResult<()> {
        self.inner.close_issue(r, n).await
    }
    async fn reopen_issue(&self, r: &str, n: u64) -> PortResult<()> {
        self.inner.reopen_issue(r, n).await
    }
    async fn commits_with_trailer(
        &self,
        r: &str,
        b: &str,
        s: Timestamp,
        n: u64,
    ) -> PortResult<Vec<PushedCommit>> {
        self.inner.commits_with_trailer(r, b, s, n).await
    }
    async fn pull_for_branch(
        &self,
        r: &str,
        b: &str,
    ) -> PortResult<Option<afk_core::ports::PullRequest>> {
        self.inner.pull_for_branch(r, b).await
    }
    async fn pull_request(&self, r: &str, n: u64) -> PortResult<afk_core::ports::PullRequest> {
        self.inner.pull_request(r, n).await
    }
    async fn create_pull(
        &self,
        r: &str,
        p: &afk_core::ports::NewPull,
    ) -> PortResult<afk_core::ports::PullRequest> {
        self.inner.create_pull(r, p).await
    }
    async fn reviews(&self, r: &str, n: u64) -> PortResult<Vec<afk_core::ports::Review>> {
        self.inner.reviews(r, n).await
    }
    async fn merge_pull(
        &self,
        r: &str,
        n: u64,
        sha: &str,
        m: afk_core::land::MergeMethod,
    ) -> PortResult<afk_core::ports::MergeOutcome> {
        self.inner.merge_pull(r, n, sha, m).await
    }
}

#[tokio::test]
async fn an_issue_that_cannot_be_read_fails_alone() {
    let mut model = GitHubModel::new("t", "afk-bot");
    model.add_repo("acme/infra", "main");
    model.set_role("acme/infra", "alice", "write");
    // #3 is the more urgent one, and its trust cannot be read.
    model.add_issue("acme/infra", 3, "Urgent", "", &["priority:0"]);
    model.label(
        "acme/infra",
        3,
        "ready-for-agent",
        "alice",
        "2026-06-10T11:00:00Z",
    );
    model.add_issue("acme/infra", 4, "Next", "", &["priority:1"]);
    model.label(
        "acme/infra",
        4,
        "ready-for-agent",
        "alice",
        "2026-06-10T11:00:00Z",
    );
    let model = Arc::new(Mutex::new(model));
    let tracker = OneUnreadable {
        inner: FakeTracker::new(model.clone(), "acme"),
        broken: 3,
    };
    let executor = FakeExecutor::new();
    let stage = FakeBuildStage::new(model.clone(), "acme");
    let notifier = RecordingNotifier::default();
    let clock = FixedClock::at(Timestamp::parse_rfc3339("2026-06-10T12:00:00Z").unwrap());
    let stages: [&dyn StageProbe; 1] = [&stage];
    let notifiers: [&dyn Notifier; 1] = [&notifier];
    let ports = Ports {
        tracker: &tracker,
        executor: &executor,
        stages: &stages,
        notifiers: &notifiers,
        clock: &clock,
    };
    let config =
        Config::from_pairs([("AFK_KILL_SWITCH", "false"), ("AFK_ALLOWLIST", "infra")]).unwrap();
    let report = poll_tick(&ports, &config, &TickOptions::default()).await;
    assert_eq!(report.dispatched, ["infra#4"], "{report:#?}");
    let failed: Vec<_> = report
        .entries
        .iter()
        .filter(|e| e.level == Level::Error)
        .collect();
    assert_eq!(failed.len(), 1, "{report:#?}");
    assert_eq!(failed[0].issue, Some(3));
    assert_eq!(failed[0].action, ReportAction::Read);
}
