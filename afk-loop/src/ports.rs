//! The ports: what the ticks need from the outside world, as traits.
//!
//! The ticks are written once against these traits; adapters implement them
//! (T3 and GitHub over HTTP, CI stages, doorbells, and in-memory fakes for
//! tests). No adapter type appears in a signature: the arguments and results
//! are `afk-core`'s plain values, and every failure is an
//! [`afk_core::ports::PortError`] whose variant tells the caller what it may
//! do next.
//!
//! Besides the traits, the two small pieces of orchestration every tick uses
//! over them: [`probe_stages`] (the CI stages asked in order, stopping at the
//! first that decides, folded by the core's pure [`afk_core::ci::fold`]) and
//! [`ring_all`] (every notifier tried; rung only when one delivered).

use afk_core::Timestamp;
use afk_core::ci::{CiVerdict, CommitRef, Stage, StageReport, StageVerdict, fold};
use afk_core::doorbell::{Doorbell, Message};
use afk_core::land::MergeMethod;
use afk_core::ports::{
    ApprovedComment, Closure, Comment, ExecutorSnapshot, MergeOutcome, NewPull, PortError,
    PortResult, PullRequest, PushedCommit, RateBudget, RepoScan, Review, ThreadSpec, TrackedIssue,
    Trust, WatchedThread,
};
use afk_core::trust::LabelEvent;
use async_trait::async_trait;

/// The clock, as a port: the ticks never read time themselves (the demo and
/// the tests move a clock of their own).
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The issue tracker (GitHub).
///
/// Repositories are named as the allowlist names them (`name` or
/// `owner/name`); the adapter resolves bare names to its default owner.
#[async_trait]
pub trait Tracker: Send + Sync {
    /// Open issues carrying `label`, pull requests excluded.
    ///
    /// # Errors
    /// `NotFound` when the repository does not exist or is not visible;
    /// `RateLimited`, `Transient`, `Auth` as the service answers.
    async fn open_issues_with_label(
        &self,
        repo: &str,
        label: &str,
    ) -> PortResult<Vec<TrackedIssue>>;

    /// Issues carrying `label`, **open and closed** (a closing keyword can
    /// close an issue while its run is still in flight), pull requests
    /// excluded.
    async fn issues_with_label(&self, repo: &str, label: &str) -> PortResult<Vec<TrackedIssue>>;

    /// Reads many repositories at once: for each (in order), its open
    /// issues carrying `ready` (when given) and its issues carrying
    /// `locked`, open or closed. One result per repository: one that cannot
    /// be read fails alone, never the others.
    ///
    /// The default asks repository by repository; the GitHub adapter asks
    /// for many in one request.
    async fn scan(
        &self,
        repos: &[String],
        ready: Option<&str>,
        locked: &str,
    ) -> Vec<PortResult<RepoScan>> {
        let mut out = Vec::with_capacity(repos.len());
        for repo in repos {
            let read = async {
                let locked = self.issues_with_label(repo, locked).await?;
                let ready = match ready {
                    Some(label) => self.open_issues_with_label(repo, label).await?,
                    None => Vec::new(),
                };
                Ok(RepoScan { ready, locked })
            };
            out.push(read.await);
        }
        out
    }

    /// Whether the most recent application of `label` on the issue may be
    /// trusted. An issue with no attributable `labeled` event is untrusted
    /// (`Ok` with `trusted: false`), not an error.
    async fn label_trust(&self, repo: &str, number: u64, label: &str) -> PortResult<Trust>;

    /// Every application of a label to the issue (any label), oldest
    /// first: the watcher reads a stop label applied during the run even if
    /// someone removed it before the tick.
    ///
    /// # Errors
    /// `NotFound` for an unknown issue; a failed read is an error.
    async fn label_events(&self, repo: &str, number: u64) -> PortResult<Vec<LabelEvent>>;

    /// How the issue was last closed, `None` when it never was.
    ///
    /// # Errors
    /// `NotFound` for an unknown issue; a failed read is an error.
    async fn last_closure(&self, repo: &str, number: u64) -> PortResult<Option<Closure>>;

    /// Numbers of the issues that block `issue` and are still open: its
    /// "Blocked by #N" clauses plus the tracker's native dependencies.
    async fn open_blockers(&self, repo: &str, issue: &TrackedIssue) -> PortResult<Vec<u64>>;

    /// The repository's default branch.
    async fn default_branch(&self, repo: &str) -> PortResult<String>;

    /// The issue's comments written by collaborators with write or admin
    /// permission, or by trusted bots, oldest first; afk's own progress
    /// comment is not among them. Everyone else's comments are left out: they
    /// never reach an agent as its task.
    ///
    /// # Errors
    /// `NotFound` for an unknown issue; a failed read is an error, never an
    /// empty list.
    async fn approved_comments(&self, repo: &str, number: u64) -> PortResult<Vec<ApprovedComment>>;

    /// The issue's progress comment: the one comment, written by afk's own
    /// identity, that carries an afk-run marker. `None` when there is none.
    async fn progress_comment(&self, repo: &str, number: u64) -> PortResult<Option<Comment>>;

    /// Creates a comment. Not idempotent: callers re-read
    /// [`Tracker::progress_comment`] before creating again after a failure.
    async fn create_comment(&self, repo: &str, number: u64, body: &str) -> PortResult<Comment>;

    /// Replaces a comment's body in place.
    ///
    /// # Errors
    /// `NotFound` when the comment is gone.
    async fn update_comment(&self, repo: &str, comment_id: u64, body: &str) -> PortResult<()>;

    /// Adds a label (idempotent).
    async fn add_label(&self, repo: &str, number: u64, label: &str) -> PortResult<()>;

    /// Removes a label; a label that is already gone is success.
    async fn remove_label(&self, repo: &str, number: u64, label: &str) -> PortResult<()>;

    /// Closes the issue as completed (idempotent).
    async fn close_issue(&self, repo: &str, number: u64) -> PortResult<()>;

    /// Reopens the issue (idempotent).
    async fn reopen_issue(&self, repo: &str, number: u64) -> PortResult<()>;

    /// Commits on `branch` committed after `since`, newest first, whose
    /// message carries the trailer `AFK-Issue: <repo>#<issue>`.
    async fn commits_with_trailer(
        &self,
        repo: &str,
        branch: &str,
        since: Timestamp,
        issue: u64,
    ) -> PortResult<Vec<PushedCommit>>;

    /// The newest pull request whose head is `branch` of the repository
    /// itself (open, merged or closed), `None` when there is none.
    async fn pull_for_branch(&self, repo: &str, branch: &str) -> PortResult<Option<PullRequest>>;

    /// One pull request, with whether it can be merged now.
    ///
    /// # Errors
    /// `NotFound` for an unknown number.
    async fn pull_request(&self, repo: &str, number: u64) -> PortResult<PullRequest>;

    /// Opens a pull request. One already open for the same head is
    /// answered with that one (a re-run after a crash opens no second).
    async fn create_pull(&self, repo: &str, new: &NewPull) -> PortResult<PullRequest>;

    /// The pull request's reviews, oldest first, each with whether its
    /// author is trusted.
    async fn reviews(&self, repo: &str, number: u64) -> PortResult<Vec<Review>>;

    /// Merges the pull request if its head is still `head_sha`.
    ///
    /// # Errors
    /// A failed call; a refusal by the repository's rules or a moved head
    /// is an answer ([`MergeOutcome`]), not an error.
    async fn merge_pull(
        &self,
        repo: &str,
        number: u64,
        head_sha: &str,
        method: MergeMethod,
    ) -> PortResult<MergeOutcome>;

    /// Requests made so far (for the tick summary).
    fn api_calls(&self) -> u64 {
        0
    }

    /// The remaining request budget the service last reported, if any.
    fn rate_limit_remaining(&self) -> Option<u64> {
        None
    }

    /// The batched reads' budget as last reported, with what this tick's
    /// reads cost so far; `None` when the tracker reports none.
    fn rate_budget(&self) -> Option<RateBudget> {
        None
    }
}
/// The agent runtime (T3 Code, or local processes).
#[async_trait]
pub trait Executor: Send + Sync {
    /// The deterministic thread id for `(repo, issue, attempt)`: re-running a
    /// dispatch after a crash finds the thread it already created.
    fn thread_id(&self, repo: &str, issue: u64, attempt: u32) -> String;

    /// Reads everything once. `watched` names the threads whose liveness the
    /// caller needs, with the time of afk's latest turn to each.
    async fn snapshot(&self, watched: &[WatchedThread]) -> PortResult<ExecutorSnapshot>;

    /// Makes sure the thread for `spec` exists and its opening turn was
    /// started, using `snapshot` (read this tick) to skip what already
    /// happened. Safe to repeat: a re-run after a crash creates no second
    /// thread and starts no second turn. Returns the thread id.
    async fn ensure_thread(
        &self,
        snapshot: &ExecutorSnapshot,
        spec: &ThreadSpec,
    ) -> PortResult<String>;

    /// Sends turn number `step` (1, 2, … after the opening turn 0) to an
    /// existing thread. Safe to repeat with the same `step`.
    ///
    /// # Errors
    /// `NotFound` when the thread does not exist or was deleted.
    async fn send_turn(
        &self,
        snapshot: &ExecutorSnapshot,
        thread_id: &str,
        step: u32,
        text: &str,
        created_at: Timestamp,
    ) -> PortResult<()>;

    /// Interrupts the thread's running turn and stops its session, so that
    /// nothing runs unsupervised once a human owns the issue. Safe to repeat:
    /// a re-run sends the same commands (the same ids) and the runtime
    /// answers them from its receipts. A thread with no live session, or one
    /// that is gone (not live in `snapshot`), is already stopped: `Ok`,
    /// without a call.
    ///
    /// # Errors
    /// A failed call; the caller tries again next tick before handing back.
    async fn stop_thread(
        &self,
        snapshot: &ExecutorSnapshot,
        thread_id: &str,
        at: Timestamp,
    ) -> PortResult<()>;

    /// A link a human can open to watch the thread, when the runtime has one.
    fn thread_link(&self, thread_id: &str) -> Option<String> {
        let _ = thread_id;
        None
    }

    /// Requests made so far (for the tick summary).
    fn api_calls(&self) -> u64 {
        0
    }
}
/// One stage's probe (an adapter).
#[async_trait]
pub trait StageProbe: Send + Sync {
    /// Which stage this is.
    fn stage(&self) -> Stage;

    /// The stage's report for the commit, or `Ok(None)` when the stage does
    /// not apply to this repository (not configured, not registered).
    ///
    /// # Errors
    /// A failed read is an error, never `StageVerdict::None`.
    async fn probe(&self, commit: &CommitRef) -> PortResult<Option<StageReport>>;
}

/// Queries `stages` in order and folds their reports, stopping at the first
/// stage that decides (anything but `Success`). Stages that do not apply are
/// skipped.
pub async fn probe_stages(stages: &[&dyn StageProbe], commit: &CommitRef) -> PortResult<CiVerdict> {
    let mut reports = Vec::new();
    for stage in stages {
        let Some(report) = stage.probe(commit).await? else {
            continue;
        };
        let decided = report.verdict != StageVerdict::Success;
        reports.push(report);
        if decided {
            break;
        }
    }
    Ok(fold(&reports))
}

/// One way to ring (Slack, ntfy, the log).
#[async_trait]
pub trait Notifier: Send + Sync {
    /// A short name for logs (`slack`, `ntfy`, `log`).
    fn name(&self) -> &str;

    /// Sends one message.
    ///
    /// # Errors
    /// Any failure to deliver.
    async fn deliver(&self, message: &Message) -> PortResult<()>;

    /// Delivers a run's doorbell (its [`Doorbell::message`]).
    ///
    /// # Errors
    /// Any failure to deliver; the caller tries again next tick.
    async fn ring(&self, bell: &Doorbell) -> PortResult<()> {
        self.deliver(&bell.message()).await
    }
}

/// What ringing every notifier came to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RingOutcome {
    /// Notifiers that delivered.
    pub delivered: Vec<String>,
    /// Notifiers that failed, with why.
    pub failed: Vec<(String, PortError)>,
}

impl RingOutcome {
    /// Rung iff at least one notifier delivered.
    pub fn rung(&self) -> bool {
        !self.delivered.is_empty()
    }
}

/// Sends `message` on every notifier in turn ([`ring_all`] for any message:
/// a review's or the loop's health).
pub async fn deliver_all(notifiers: &[&dyn Notifier], message: &Message) -> RingOutcome {
    each(notifiers, |n| n.deliver(message)).await
}

/// Tries every notifier in turn; one failing does not stop the others.
pub async fn ring_all(notifiers: &[&dyn Notifier], bell: &Doorbell) -> RingOutcome {
    each(notifiers, |n| n.ring(bell)).await
}

/// `send` on every notifier in turn, each failure kept beside the others.
async fn each<'a, F>(notifiers: &[&'a dyn Notifier], send: F) -> RingOutcome
where
    F: Fn(&'a dyn Notifier) -> std::pin::Pin<Box<dyn Future<Output = PortResult<()>> + Send + 'a>>,
{
    let mut outcome = RingOutcome::default();
    for n in notifiers {
        match send(*n).await {
            Ok(()) => outcome.delivered.push(n.name().to_owned()),
            Err(e) => outcome.failed.push((n.name().to_owned(), e)),
        }
    }
    outcome
}
