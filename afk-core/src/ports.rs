//! The values that cross the ports: what the tracker and the executor
//! report, as plain domain values, and the errors every port call can end in.
//!
//! The port traits themselves (`Tracker`, `Executor`, `StageProbe`,
//! `Notifier`, `Clock`) live with the ticks that call them, in `afk-loop`;
//! this module holds only the values, so that the pure rules here can be
//! written over them. No adapter type appears here: every failure is a
//! [`PortError`] whose variant tells the caller what it may do next (retry
//! later, give up on this repository, report a bug).
//!
//! A failed read is an error, never "empty": treating a rate-limited answer
//! as "no issues" or "no comment" is how a loop closes or duplicates things.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::types::{Cost, ThreadStatus, Timestamp};

/// What went wrong talking to an external service, by what the caller can do
/// about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    /// The thing asked for does not exist (or the token may not see it).
    #[error("not found: {what}")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// The service asked us to slow down; try again after `retry_after` if
    /// the deadline allows, else fail this repository for this tick.
    #[error("rate limited{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    RateLimited {
        /// How long the service asked us to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// A passing fault (network, timeout, 5xx): the same request may succeed
    /// later.
    #[error("transient failure: {message}")]
    Transient {
        /// What happened, without secrets.
        message: String,
    },
    /// The service refused the request for a reason that will not go away by
    /// itself.
    #[error("permanent failure: {message}")]
    Permanent {
        /// What happened, without secrets.
        message: String,
    },
    /// The credential is missing, invalid, or lacks a permission or scope.
    #[error("not authorised: {message}")]
    Auth {
        /// What the service said (e.g. the scope it requires).
        message: String,
    },
    /// The service rejected the shape of our request, or answered in a shape
    /// we do not understand: a bug on one side, never retried.
    #[error("contract violation: {message}")]
    ContractViolation {
        /// What did not match.
        message: String,
    },
}

impl PortError {
    /// Whether repeating the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PortError::RateLimited { .. } | PortError::Transient { .. }
        )
    }

    /// The variant's short name, for logs and tests: `not_found`,
    /// `rate_limited`, `transient`, `permanent`, `auth`, `contract_violation`.
    pub fn kind(&self) -> &'static str {
        match self {
            PortError::NotFound { .. } => "not_found",
            PortError::RateLimited { .. } => "rate_limited",
            PortError::Transient { .. } => "transient",
            PortError::Permanent { .. } => "permanent",
            PortError::Auth { .. } => "auth",
            PortError::ContractViolation { .. } => "contract_violation",
        }
    }

    /// The wait the service asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            PortError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// Results of port calls.
pub type PortResult<T> = Result<T, PortError>;

/// An issue as the tracker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackedIssue {
    /// The repository, as the caller named it.
    pub repo: String,
    /// Issue number.
    pub number: u64,
    /// Title.
    pub title: String,
    /// Body text (markdown), empty when none.
    pub body: String,
    /// Every label on the issue.
    pub labels: Vec<String>,
    /// Whether the issue is open.
    pub open: bool,
}

impl TrackedIssue {
    /// Whether the issue carries `label` (case-insensitive, as GitHub).
    pub fn has_label(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l.eq_ignore_ascii_case(label))
    }
}

/// Whether the ready label on an issue may be trusted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trust {
    /// Trusted iff the most recent application of the label was made by a
    /// collaborator with write or admin permission (or an allowlisted bot),
    /// and neither the body nor the title was changed at or after it.
    pub trusted: bool,
    /// Who applied the label, when known.
    pub actor: Option<String>,
    /// Why, for the log.
    pub reason: String,
}

/// A comment by someone trusted (write or admin permission, or a trusted
/// bot), as the opening prompt quotes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedComment {
    /// The author's login.
    pub author: String,
    /// The text, as written.
    pub body: String,
}

/// A comment on an issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    /// The tracker's id for the comment.
    pub id: u64,
    /// Its body.
    pub body: String,
}

/// A commit on a branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedCommit {
    /// Full commit SHA.
    pub sha: String,
    /// The whole commit message.
    pub message: String,
    /// When it was committed, when the tracker says.
    pub committed_at: Option<Timestamp>,
}

// The pull-request values cross the tracker port too; they live with the
// landing rules that read them.
pub use crate::land::{MergeOutcome, NewPull, PullRequest, Review, ReviewVerdict};

/// How an issue was last closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closure {
    /// When.
    pub at: Timestamp,
    /// Who closed it, when known (`None`: a deleted account).
    pub actor: Option<String>,
    /// A commit (its closing keyword) or a pull request closed it, not a
    /// person's click.
    pub by_change: bool,
    /// afk's own identity closed it (a run that landed).
    pub by_afk: bool,
}

impl Closure {
    /// Whether a person closed the issue by hand: neither afk nor a change
    /// that landed. A run whose issue a person closed is stopped.
    pub fn by_a_person(&self) -> bool {
        !self.by_change && !self.by_afk
    }
}

/// What one repository holds for a tick, read in one batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepoScan {
    /// Open issues carrying the ready label (when it was asked for).
    pub ready: Vec<TrackedIssue>,
    /// Issues carrying the in-progress label, open or closed (a closing
    /// keyword can close an issue while its run is in flight). Their bodies
    /// are not read: `body` is empty.
    pub locked: Vec<TrackedIssue>,
}

/// The request budget the tracker last reported (GitHub's GraphQL
/// `rateLimit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateBudget {
    /// What the tick's reads cost so far (points).
    pub cost: u64,
    /// Points left in the window.
    pub remaining: u64,
    /// Points per window.
    pub limit: u64,
    /// When the window resets.
    pub reset_at: Option<Timestamp>,
}

/// A project (workspace) known to the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectInfo {
    /// The executor's id for it.
    pub id: String,
    /// The directory the agents work in.
    pub workspace_root: String,
    /// Whether it was deleted.
    pub deleted: bool,
}

/// A thread known to the executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadInfo {
    /// The project it belongs to.
    pub project_id: String,
    /// Deleted threads stay known: their ids can never be reused.
    pub deleted: bool,
    /// Liveness; `None` is "no status yet" and never triggers an action.
    pub status: Option<ThreadStatus>,
    /// Ids of the messages the thread holds, where the executor reports
    /// them.
    pub message_ids: Vec<String>,
    /// What the runtime said about its latest turn's failure (its own error
    /// text, the tools it was denied, its last error line), when the
    /// executor can read it; one line.
    pub said: Option<String>,
    /// What the thread's turns cost so far, summed, where the runtime
    /// reports it (claude's `total_cost_usd`); `None`: not reported.
    pub cost: Option<Cost>,
}

/// How many agents an executor may run at once, and how many run now (an
/// executor on one machine has a limit; a remote runtime reports none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Agents running now.
    pub running: u32,
    /// At most this many at once.
    pub max: u32,
}

impl Capacity {
    /// Agents that may still start.
    pub fn free(self) -> u32 {
        self.max.saturating_sub(self.running)
    }
}

/// Everything the executor knows, read once per tick.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecutorSnapshot {
    /// Projects, deleted ones included.
    pub projects: Vec<ProjectInfo>,
    /// Threads by id, deleted ones included.
    pub threads: BTreeMap<String, ThreadInfo>,
    /// The executor's limit on agents at once, when it has one.
    pub capacity: Option<Capacity>,
}

impl ExecutorSnapshot {
    /// The liveness of a thread that exists and is not deleted.
    pub fn status(&self, thread_id: &str) -> Option<ThreadStatus> {
        self.threads
            .get(thread_id)
            .filter(|t| !t.deleted)
            .and_then(|t| t.status)
    }

    /// Whether the thread exists and was not deleted.
    pub fn is_live(&self, thread_id: &str) -> bool {
        self.threads.get(thread_id).is_some_and(|t| !t.deleted)
    }
}

/// A thread the caller watches, with the time it last sent it a turn (the
/// liveness rule looks only at what happened since).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedThread {
    /// The thread.
    pub thread_id: String,
    /// When afk sent its latest turn to it.
    pub turn_sent_at: Timestamp,
}

/// What a new thread is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadSpec {
    /// The repository.
    pub repo: String,
    /// The issue number.
    pub issue: u64,
    /// 0 for the first dispatch, +1 for each corrective thread.
    pub attempt: u32,
    /// The thread's title.
    pub title: String,
    /// The repository's default branch (the one the agent works from and
    /// pushes to; an executor with a checkout of its own resets it there).
    pub branch: String,
    /// The opening prompt.
    pub prompt: String,
    /// When the dispatch happened (becomes the commands' `createdAt`).
    pub created_at: Timestamp,
}

/// Whether a commit message carries the trailer `AFK-Issue: <repo>#<issue>`.
///
/// The key compares case-insensitively; the repository may be written bare
/// (`infra`) or with its owner (`acme/infra`) and matches when it names the
/// same repository as `repo` (either form).
pub fn has_issue_trailer(message: &str, repo: &str, issue: u64) -> bool {
    let bare = |r: &str| r.rsplit('/').next().unwrap_or(r).to_ascii_lowercase();
    message.lines().any(|line| {
        let Some((key, value)) = line.split_once(':') else {
            return false;
        };
        if !key.trim().eq_ignore_ascii_case("AFK-Issue") {
            return false;
        }
        let Some((named_repo, number)) = value.trim().rsplit_once('#') else {
            return false;
        };
        if number.trim().parse::<u64>().ok() != Some(issue) {
            return false;
        }
        let named_repo = named_repo.trim();
        if named_repo.contains('/') && repo.contains('/') {
            named_repo.eq_ignore_ascii_case(repo)
        } else {
            bare(named_repo) == bare(repo)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(message: &str, repo: &str, issue: u64, expected: bool) {
        assert_eq!(
            has_issue_trailer(message, repo, issue),
            expected,
            "{message:?}"
        );
    }

    #[test]
    fn trailers_match_the_issue_and_repository() {
        let msg = "Fix the thing\n\nBecause.\n\nRefs #7\nAFK-Issue: infra#7\n";
        check(msg, "infra", 7, true);
        check(msg, "acme/infra", 7, true);
        check(msg, "infra", 70, false);
        check(msg, "web", 7, false);
        check("x\n\nafk-issue:  acme/infra#7", "acme/infra", 7, true);
        check("x\n\nAFK-Issue: other/infra#7", "acme/infra", 7, false);
        check("x\n\nAFK-Issue: acme/infra#7", "infra", 7, true);
        check("Refs #7", "infra", 7, false);
        check("AFK-Issue infra#7", "infra", 7, false);
        check("AFK-Issue: infra#seven", "infra", 7, false);
    }

    #[test]
    fn only_rate_limits_and_transient_faults_are_retryable() {
        assert!(PortError::RateLimited { retry_after: None }.is_retryable());
        assert!(
            PortError::Transient {
                message: String::new()
            }
            .is_retryable()
        );
        for e in [
            PortError::NotFound {
                what: String::new(),
            },
            PortError::Permanent {
                message: String::new(),
            },
            PortError::Auth {
                message: String::new(),
            },
            PortError::ContractViolation {
                message: String::new(),
            },
        ] {
            assert!(!e.is_retryable(), "{e}");
        }
        assert_eq!(
            PortError::RateLimited {
                retry_after: Some(Duration::from_secs(30))
            }
            .to_string(),
            "rate limited (retry after 30s)"
        );
    }
}
