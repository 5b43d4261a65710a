//! The run record: everything the watcher needs to know about one run.
//!
//! The CronJobs keep no memory between ticks, so the record lives on the issue
//! itself, as a hidden line under the progress checklist. This module defines
//! what it holds; its JSON form and the marker line belong to the `checklist`
//! crate, which writes the comment.

use crate::ci::{CiVerdict, Stage};
use crate::machine::{Action, Escalation, Turn};
use crate::types::{CiStatus, Cost, Phase, Timestamp};

/// The terminal decision of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutcomeKind {
    /// The change landed and the issue was closed.
    Done,
    /// The run was handed back to a human before anything was pushed.
    NeedsHuman,
    /// CI stayed red (or never started); the run is frozen for a human.
    Frozen,
    /// A human stopped the run with the stop label (or `afk stop` / `afk
    /// halt`): the agent was interrupted and a human owns the issue.
    Stopped,
}

impl OutcomeKind {
    /// The short name afk's formats (and doorbells) use.
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Done => "done",
            OutcomeKind::NeedsHuman => "needs-human",
            OutcomeKind::Frozen => "frozen",
            OutcomeKind::Stopped => "stopped",
        }
    }

    /// Reads [`OutcomeKind::as_str`] back.
    pub fn parse(text: &str) -> Option<Self> {
        [
            OutcomeKind::Done,
            OutcomeKind::NeedsHuman,
            OutcomeKind::Frozen,
            OutcomeKind::Stopped,
        ]
        .into_iter()
        .find(|k| k.as_str() == text)
    }
}

/// A terminal decision with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Which end the run came to.
    pub kind: OutcomeKind,
    /// Why, in one line, for the doorbell and the log.
    pub reason: String,
    /// Who stopped the run (`Stopped` only: the stop label's actor, or the
    /// operator of `afk stop` / `afk halt`).
    pub by: Option<String>,
}

impl Outcome {
    /// A run stopped by `by` (when known).
    pub fn stopped(by: Option<String>) -> Self {
        Outcome {
            kind: OutcomeKind::Stopped,
            reason: format!(
                "stopped by {}: the agent was interrupted and a human owns the issue",
                by.as_deref().unwrap_or("an unknown account")
            ),
            by,
        }
    }

    /// The outcome of an escalation: `Frozen` once something was pushed,
    /// `NeedsHuman` before.
    pub fn from_escalation(escalation: Escalation, pushed: bool) -> Self {
        // A pull request closed unmerged is handed back: the human decided
        // on the change, nothing red waits for a fix.
        let frozen = pushed
            && !matches!(
                escalation,
                Escalation::PullRequestClosed
                    | Escalation::PullRequestRetargeted
                    | Escalation::ForeignPullRequest
            );
        Outcome {
            kind: if frozen {
                OutcomeKind::Frozen
            } else {
                OutcomeKind::NeedsHuman
            },
            reason: escalation.to_string(),
            by: None,
        }
    }
}

/// What the loop remembers about one run, between ticks.
///
/// The id of the comment that holds the record is not part of it: it is the
/// id of that comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// The executor thread currently working the issue.
    pub thread_id: String,
    /// When the issue was first dispatched.
    pub dispatched_at: Timestamp,
    /// 0 for the first dispatch, +1 for each corrective thread.
    pub attempt: u32,
    /// The newest commit the agent pushed for this issue, if any.
    pub commit: Option<String>,
    /// When the loop first saw `commit`.
    pub commit_seen_at: Option<Timestamp>,
    /// When CI first went red on a pushed commit, if ever.
    pub first_red_at: Option<Timestamp>,
    /// Corrective turns sent.
    pub fix_forward_attempts: u32,
    /// The red commit the last corrective turn was sent for.
    pub fix_forward_commit: Option<String>,
    /// When afk last sent a turn to `thread_id` (the opening turn's time is
    /// `dispatched_at`); liveness looks only at what happened since.
    pub turn_sent_at: Option<Timestamp>,
    /// Follow-up turns sent to the current thread: the next one is step
    /// `thread_turns + 1`, so a re-sent turn reuses its deterministic id.
    pub thread_turns: u32,
    /// The latest CI verdict the loop read for `commit`.
    pub last_ci: Option<CiStatus>,
    /// The terminal decision, once made.
    pub outcome: Option<Outcome>,
    /// Whether the terminal doorbell has rung.
    pub notified: bool,
    /// What the run cost so far, every thread's turns summed, where the
    /// runtime reports it; `None`: not reported.
    pub cost: Option<Cost>,
    /// The part of `cost` spent by the run's earlier threads (a corrective
    /// turn on a new thread starts counting from zero).
    pub earlier_threads_cost: Option<Cost>,
    /// The run lands through a pull request: its branch and pull request
    /// (`None`: it lands by a push to the default branch).
    pub landing: Option<Landing>,
}

/// What the record keeps of a run that lands through a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Landing {
    /// The run's branch (`crate::land::run_branch`), fixed at dispatch.
    pub branch: String,
    /// Its pull request, once opened or adopted.
    pub pull_request: Option<u64>,
    /// Whether it was handed over for a human's review (label and doorbell).
    pub handed_over: bool,
    /// The newest review requesting changes that a corrective turn answered.
    pub answered_review: Option<u64>,
    /// Where the pull request stood when the watcher last read it.
    pub pull_state: Option<crate::land::PullState>,
    /// An open pull request for the run's branch that someone other than
    /// afk opened: never adopted, the run is handed back.
    pub foreign_pull: Option<u64>,
    /// The repository's rules refused a merge afk asked for: the next
    /// decision hands the pull request over for review.
    pub merge_refused: bool,
}

impl Landing {
    /// A run about to work on `branch`.
    pub fn on(branch: impl Into<String>) -> Self {
        Landing {
            branch: branch.into(),
            pull_request: None,
            handed_over: false,
            answered_review: None,
            pull_state: None,
            foreign_pull: None,
            merge_refused: false,
        }
    }
}

impl RunRecord {
    /// The record of a fresh dispatch.
    pub fn dispatched(thread_id: impl Into<String>, dispatched_at: Timestamp) -> Self {
        RunRecord {
            thread_id: thread_id.into(),
            dispatched_at,
            attempt: 0,
            commit: None,
            commit_seen_at: None,
            first_red_at: None,
            fix_forward_attempts: 0,
            fix_forward_commit: None,
            turn_sent_at: None,
            thread_turns: 0,
            last_ci: None,
            outcome: None,
            notified: false,
            cost: None,
            earlier_threads_cost: None,
            landing: None,
        }
    }
}

impl RunRecord {
    /// Notes the newest commit the agent pushed for the run (newest first
    /// from the tracker): a commit not seen before becomes the run's commit,
    /// seen `now`.
    pub fn observe_commit(&mut self, newest: Option<&str>, now: Timestamp) {
        if let Some(sha) = newest
            && self.commit.as_deref() != Some(sha)
        {
            self.commit = Some(sha.to_owned());
            self.commit_seen_at = Some(now);
        }
    }

    /// Notes the CI verdict of the run's commit; the first red one starts
    /// the fix-forward clock, once.
    pub fn observe_ci(&mut self, status: CiStatus, now: Timestamp) {
        self.last_ci = Some(status);
        if status == CiStatus::Red && self.first_red_at.is_none() {
            self.first_red_at = Some(now);
        }
    }

    /// Notes what the run's current thread cost so far, as its runtime
    /// reported it: the run's cost is that plus its earlier threads'. A
    /// thread that reports nothing leaves the figure as it was.
    pub fn observe_cost(&mut self, thread_cost: Option<Cost>) {
        if let Some(c) = thread_cost {
            self.cost = Some(self.earlier_threads_cost.unwrap_or_default().plus(c));
        }
    }

    /// Whether the latest corrective turn was sent for the run's current
    /// commit.
    pub fn corrective_turn_for_this_commit(&self) -> bool {
        self.fix_forward_commit.is_some() && self.fix_forward_commit == self.commit
    }

    /// Records a corrective turn sent at `now` for the run's commit: to the
    /// same thread as step `n`, or to `thread_id`, a new thread.
    pub fn record_corrective_turn(&mut self, turn: Turn, thread_id: &str, now: Timestamp) {
        match turn {
            Turn::SameThread { step } => self.thread_turns = step,
            Turn::NewThread { attempt } => {
                thread_id.clone_into(&mut self.thread_id);
                self.attempt = attempt;
                self.thread_turns = 0;
                self.earlier_threads_cost = self.cost;
            }
        }
        self.fix_forward_attempts = self.fix_forward_attempts.saturating_add(1);
        self.fix_forward_commit.clone_from(&self.commit);
        self.turn_sent_at = Some(now);
    }

    /// The terminal outcome an action ends the run with, if it ends it:
    /// `Done` for a close, `Frozen` or `NeedsHuman` for an escalation (by
    /// whether anything was pushed), `Stopped` (by `by`) for a stop. When
    /// the agent's turn errored, what its runtime said about it (`said`)
    /// ends the reason: the human it is handed to learns why.
    pub fn outcome_of(
        &self,
        action: &Action,
        by: Option<String>,
        said: Option<&str>,
    ) -> Option<Outcome> {
        if let Action::EscalatePrepush(Escalation::Errored)
        | Action::FreezeEscalate(Escalation::Errored) = action
            && let Some(said) = said.map(str::trim).filter(|s| !s.is_empty())
        {
            let mut outcome = Outcome::from_escalation(Escalation::Errored, self.commit.is_some());
            outcome.reason = format!("{}: {said}", outcome.reason);
            return Some(outcome);
        }
        match action {
            Action::CloseSuccess => Some(Outcome {
                kind: OutcomeKind::Done,
                reason: action.reason(),
                by: None,
            }),
            Action::FreezeEscalate(e) | Action::EscalatePrepush(e) => {
                Some(Outcome::from_escalation(*e, self.commit.is_some()))
            }
            Action::Stop => Some(Outcome::stopped(by)),
            Action::Wait(_)
            | Action::FixForward { .. }
            | Action::Finish
            | Action::OpenPullRequest
            | Action::Merge
            | Action::HandOverForReview => None,
        }
    }
}

/// The phase the progress checklist shows for a run: done once its outcome
/// is `Done`; before a push, the worktree; after it, CI, or deployed while
/// the rollout stage is the one still pending.
pub fn progress_phase(record: &RunRecord, verdict: Option<&CiVerdict>) -> Phase {
    if record
        .outcome
        .as_ref()
        .is_some_and(|o| o.kind == OutcomeKind::Done)
    {
        return Phase::Done;
    }
    match (record.commit.as_ref(), verdict) {
        (None, _) => Phase::Worktree,
        (Some(_), Some(v)) if v.status == CiStatus::Pending && v.stage == Some(Stage::Rollout) => {
            Phase::Deployed
        }
        (Some(_), _) => Phase::Ci,
    }
}
