//! The run state machine: what to do next with a run in flight.
//!
//! [`next_action`] is total over every input and returns a value; it never
//! performs an action. The watch tick gathers the facts into a [`RunState`],
//! asks, and then performs the effects the answer names, and nothing else:
//! every rule of the watcher is here (the kill switch, the busy agent, the
//! same thread or a new one), none is in the tick.
//!
//! This file is long because its table tests and property tests state every
//! row again, independently of the code; the machine itself is about 550
//! lines.
//!
//! First match wins:
//!
//! | # | condition | action |
//! | --- | --- | --- |
//! | 1 | the run record already holds an outcome | `Finish` (never decide again) |
//! | 2 | the stop label is on the issue | `Stop` |
//! | 3 | pushed, CI green | `CloseSuccess` (whatever the thread does) |
//! | 4 | pushed, CI red, a corrective turn for this red commit still running | `Wait` |
//! | 5 | pushed, CI red, budget left, kill switch on | `Wait` (paused) |
//! | 6 | pushed, CI red, budget left, the agent still busy | `Wait` (busy) |
//! | 7 | pushed, CI red, attempts < max and seconds since first red < max | `FixForward` |
//! | 8 | pushed, CI red, either bound reached | `FreezeEscalate` |
//! | 9 | pushed, no CI signal for ≥ the CI-start max since the push was seen | `FreezeEscalate` |
//! | 10 | pushed, CI pending, or no signal yet | `Wait` |
//! | 11 | nothing pushed, thread `Error`, `Idle`, `NeedsInput` or gone | `EscalatePrepush` |
//! | 12 | nothing pushed, seconds since dispatch ≥ prepush max | `EscalatePrepush` |
//! | 13 | otherwise | `Wait` |
//!
//! A run that lands through a pull request (`RunState::pull` is set) keeps
//! rows 1, 2, 4 to 13 (its commit is the pull request's head, or the run's
//! branch before one exists), and adds, once something is pushed:
//!
//! | # | condition | action |
//! | --- | --- | --- |
//! | 14 | no pull request yet | `OpenPullRequest` |
//! | 15 | merged, CI/deploy green on the merge commit | `CloseSuccess` |
//! | 16 | merged, red on the merge commit | `FreezeEscalate` (a human fixes the default branch) |
//! | 17 | closed without merging, retargeted to another branch, or opened by someone else | `EscalatePrepush` (handed back) |
//! | 18 | open, green, a corrective turn for this head still running | `Wait` |
//! | 19 | open and conflicting (whatever CI says: no pull-request CI runs on a conflict), or green and behind the default branch | `FixForward` (merge it and resolve), within the budget |
//! | 20 | open, green, a trusted reviewer requested changes | `FixForward` (the review's text), within the budget |
//! | 21 | open, green, a human's review required (or the rules block it, or refused afk's merge) | `HandOverForReview` once, then `Wait` |
//! | 22 | open, green, mergeability not computed yet | `Wait` |
//! | 23 | open, green, mergeable, kill switch on | `Wait` (paused) |
//! | 24 | open, green, mergeable | `Merge` |
//!
//! Row 4 is what keeps a CronJob that ticks every minute from sending a new
//! corrective turn for the same red commit on every tick and burning the whole
//! budget in minutes. A corrective turn goes to the same thread when it is
//! live and idle (it keeps its context), and to a new thread (attempt + 1)
//! when the old one errored, waits on a question, or is gone.

use std::fmt;

use crate::config::Config;
use crate::land::{Mergeable, PullFacts, PullState, ReviewState};
use crate::types::{CiStatus, ThreadStatus};

/// Everything the state machine looks at for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunState {
    /// The run record already holds a terminal outcome (a tick died while
    /// finishing it): finish it, never decide again.
    pub outcome_recorded: bool,
    /// The issue carries the stop label.
    pub stop_requested: bool,
    /// The kill switch is on: runs are observed and finalised, but no
    /// corrective turn is sent.
    pub kill_switch: bool,
    /// Liveness of the agent's thread; `None` is "no status yet".
    pub thread_status: Option<ThreadStatus>,
    /// The agent's thread is gone (deleted, or unknown to the executor): an
    /// agent that is gone is an agent that errored.
    pub thread_gone: bool,
    /// CI verdict of the newest pushed commit; `None` when not read.
    pub ci_status: Option<CiStatus>,
    /// Whether the agent pushed a commit for this run.
    pub pushed: bool,
    /// Corrective turns sent so far.
    pub fix_forward_attempts: u32,
    /// Whether the latest corrective turn was sent for the commit now red.
    pub corrective_turn_for_this_commit: bool,
    /// The current thread's attempt (0 for the first dispatch).
    pub attempt: u32,
    /// Follow-up turns already sent to the current thread.
    pub thread_turns: u32,
    /// Seconds since CI first went red on a pushed commit (0 if never).
    pub seconds_since_first_red: u64,
    /// Seconds since the run was first dispatched.
    pub seconds_since_dispatch: u64,
    /// Seconds since the loop first saw the newest pushed commit.
    pub seconds_since_push_seen: u64,
    /// The run lands through a pull request: what its pull request is
    /// (`None`: it lands by a push to the default branch).
    pub pull: Option<PullFacts>,
}

impl RunState {
    /// The thread's liveness as the rules read it: a thread that is gone
    /// errored.
    pub fn effective_status(&self) -> Option<ThreadStatus> {
        if self.thread_gone {
            Some(ThreadStatus::Error)
        } else {
            self.thread_status
        }
    }

    /// Whether the agent is still at work (running, or no status yet): a
    /// turn sent now would interrupt it or queue behind it.
    pub fn agent_busy(&self) -> bool {
        !self.thread_gone && matches!(self.thread_status, Some(ThreadStatus::Running) | None)
    }

    /// Whether the decision no longer depends on the agent or on CI (the
    /// outcome is recorded, or a human stopped the run): the tick need not
    /// read the commits or the CI verdict.
    pub fn settled(&self) -> bool {
        self.outcome_recorded || self.stop_requested
    }
}

/// The kind of an [`Action`], without its reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionKind {
    /// Do nothing this tick.
    Wait,
    /// The change landed: close the issue.
    CloseSuccess,
    /// CI is red and budget remains: send a corrective turn.
    FixForward,
    /// CI is red (or never started) and the budget is spent: freeze and hand
    /// to a human.
    FreezeEscalate,
    /// The run ended or stalled before pushing anything: hand to a human.
    EscalatePrepush,
    /// A human stopped the run: stop the agent and hand the issue back.
    Stop,
    /// The outcome is recorded: finish its clean-up.
    Finish,
    /// The run's branch has a commit: open its pull request.
    OpenPullRequest,
    /// The pull request is green and mergeable: merge it.
    Merge,
    /// The pull request needs a human's review: hand it over.
    HandOverForReview,
}

impl ActionKind {
    /// The short name afk's own formats use.
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Wait => "wait",
            ActionKind::CloseSuccess => "close_success",
            ActionKind::FixForward => "fix_forward",
            ActionKind::FreezeEscalate => "freeze_escalate",
            ActionKind::EscalatePrepush => "escalate_prepush",
            ActionKind::Stop => "stop",
            ActionKind::Finish => "finish",
            ActionKind::OpenPullRequest => "open_pull_request",
            ActionKind::Merge => "merge",
            ActionKind::HandOverForReview => "hand_over_review",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a run waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitReason {
    /// A corrective turn for the red commit is still being worked on.
    CorrectiveTurnRunning,
    /// CI is red and budget remains, but the kill switch pauses corrective
    /// turns.
    Paused,
    /// CI is red, but the agent's thread is still busy: the corrective turn
    /// waits for it.
    AgentBusy,
    /// CI is queued or running on the pushed commit.
    CiPending,
    /// No CI signal yet for the pushed commit, still within the start cap.
    CiNotStarted {
        /// Seconds since the push was seen.
        seconds: u64,
        /// The cap after which it is escalated.
        cap: u64,
    },
    /// The CI verdict was not read.
    CiUnknown,
    /// The pull request waits for a human's review (handed over).
    ReviewWaiting,
    /// GitHub has not computed whether the pull request can be merged.
    MergeabilityUnknown,
    /// The agent is still working and has not pushed yet.
    AgentWorking {
        /// Seconds since dispatch.
        seconds: u64,
        /// The prepush cap.
        cap: u64,
    },
}

/// Where a corrective turn goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// To the same thread, which is live and idle (it keeps its context), as
    /// its follow-up turn number `step`.
    SameThread {
        /// 1, 2, … after the opening turn 0; a re-send reuses it.
        step: u32,
    },
    /// To a new thread for `attempt` (the old one errored, waits on a
    /// question, or is gone).
    NewThread {
        /// The new thread's attempt.
        attempt: u32,
    },
}
/// What a corrective turn answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrective {
    /// CI (or deploy, or rollout) is red on the pushed commit.
    RedCi,
    /// The pull request's branch conflicts with (or is behind) the default
    /// branch: merge it and resolve.
    Conflict,
    /// A trusted reviewer requested changes.
    ChangesRequested,
}

/// Why a run is handed to a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escalation {
    /// The agent's turn failed before anything was pushed.
    Errored,
    /// The agent finished without pushing anything.
    FinishedWithoutPush,
    /// The agent waits for input that nobody will give.
    NeedsInput,
    /// Nothing was pushed within the prepush cap.
    StalledPrepush {
        /// Seconds since dispatch.
        seconds: u64,
        /// The cap.
        cap: u64,
    },
    /// A commit was pushed but no CI stage reported within the cap.
    CiNeverStarted {
        /// Seconds since the push was seen.
        seconds: u64,
        /// The cap.
        cap: u64,
    },
    /// The pull request was closed without being merged.
    PullRequestClosed,
    /// The pull request was retargeted to another branch than the default
    /// one.
    PullRequestRetargeted,
    /// Someone other than afk opened a pull request for the run's branch.
    ForeignPullRequest,
    /// The pull request was merged, and CI (or deploy) is red on the merge
    /// commit on the default branch.
    RedAfterMerge,
    /// CI stayed red and the fix-forward budget is spent.
    FixForwardBudgetSpent {
        /// Corrective turns sent.
        attempts: u32,
        /// The attempt cap.
        max_attempts: u32,
        /// Seconds since CI first went red.
        seconds: u64,
        /// The time cap.
        max_seconds: u64,
    },
}

impl fmt::Display for Escalation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Escalation::Errored => {
                f.write_str("the agent's turn errored before anything was pushed")
            }
            Escalation::FinishedWithoutPush => {
                f.write_str("the agent finished its turn without pushing a commit")
            }
            Escalation::NeedsInput => {
                f.write_str("the agent is waiting for input or an approval that nobody will give")
            }
            Escalation::StalledPrepush { seconds, cap } => write!(
                f,
                "stalled: nothing pushed {seconds}s after dispatch (cap {cap}s)"
            ),
            Escalation::CiNeverStarted { seconds, cap } => write!(
                f,
                "CI never started: no signal {seconds}s after the push was seen (cap {cap}s)"
            ),
            Escalation::PullRequestClosed => f.write_str(
                "the pull request was closed without being merged: handed back (it is left as it is)",
            ),
            Escalation::PullRequestRetargeted => f.write_str(
                "the pull request now merges into another branch than the default one: handed back (it is left as it is)",
            ),
            Escalation::ForeignPullRequest => f.write_str(
                "someone other than afk opened a pull request for the run's branch: handed back (afk adopts only its own)",
            ),
            Escalation::RedAfterMerge => f.write_str(
                "the pull request was merged, and CI is red on the merge commit of the default branch",
            ),
            Escalation::FixForwardBudgetSpent {
                attempts,
                max_attempts,
                seconds,
                max_seconds,
            } => write!(
                f,
                "fix-forward budget spent: CI still red after {attempts} of {max_attempts} \
                 attempt(s) and {seconds}s of {max_seconds}s since the first red verdict"
            ),
        }
    }
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::CorrectiveTurnRunning => {
                f.write_str("a corrective turn for the red commit is still running")
            }
            WaitReason::Paused => f.write_str(
                "CI is red on the pushed commit, but the kill switch pauses corrective turns",
            ),
            WaitReason::AgentBusy => f.write_str(
                "CI is red but the agent's thread is busy: the corrective turn waits for it",
            ),
            WaitReason::CiPending => f.write_str("CI is running on the pushed commit"),
            WaitReason::CiNotStarted { seconds, cap } => write!(
                f,
                "no CI signal yet, {seconds}s after the push was seen (escalates at {cap}s)"
            ),
            WaitReason::CiUnknown => {
                f.write_str("the CI verdict of the pushed commit is not known yet")
            }
            WaitReason::ReviewWaiting => f.write_str(
                "the pull request waits for a human's review (it lands when merged, and is handed back if closed)",
            ),
            WaitReason::MergeabilityUnknown => {
                f.write_str("the pull request is green; GitHub is still computing whether it can be merged")
            }
            WaitReason::AgentWorking { seconds, cap } => write!(
                f,
                "the agent is working, nothing pushed yet ({seconds}s of {cap}s)"
            ),
        }
    }
}

/// What to do next with a run, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Do nothing this tick.
    Wait(WaitReason),
    /// CI is green on the pushed commit: close the issue.
    CloseSuccess,
    /// CI is red and budget remains: send corrective turn number `attempt`
    /// (1-based), where `turn` says.
    FixForward {
        /// The number this corrective turn will have.
        attempt: u32,
        /// The same thread or a new one.
        turn: Turn,
        /// What it answers.
        why: Corrective,
    },
    /// Freeze the run and hand it to a human.
    FreezeEscalate(Escalation),
    /// Hand a run that pushed nothing to a human.
    EscalatePrepush(Escalation),
    /// A human stopped the run (the stop label): stop the agent, record it
    /// as stopped, hand the issue back.
    Stop,
    /// The outcome is already recorded: finish the clean-up (labels,
    /// doorbell, lock) without deciding again.
    Finish,
    /// Open the run's pull request (or adopt the one open for its branch).
    OpenPullRequest,
    /// Merge the pull request (`AFK_MERGE_METHOD`).
    Merge,
    /// Hand the pull request over for a human's review: the review label
    /// and a doorbell, once; the run then waits for the merge.
    HandOverForReview,
}

impl Action {
    /// The kind of action, without its reason.
    pub fn kind(&self) -> ActionKind {
        match self {
            Action::Wait(_) => ActionKind::Wait,
            Action::CloseSuccess => ActionKind::CloseSuccess,
            Action::FixForward { .. } => ActionKind::FixForward,
            Action::FreezeEscalate(_) => ActionKind::FreezeEscalate,
            Action::EscalatePrepush(_) => ActionKind::EscalatePrepush,
            Action::Stop => ActionKind::Stop,
            Action::Finish => ActionKind::Finish,
            Action::OpenPullRequest => ActionKind::OpenPullRequest,
            Action::Merge => ActionKind::Merge,
            Action::HandOverForReview => ActionKind::HandOverForReview,
        }
    }

    /// The escalation reason, for the two escalating actions.
    pub fn escalation(&self) -> Option<Escalation> {
        match self {
            Action::FreezeEscalate(e) | Action::EscalatePrepush(e) => Some(*e),
            _ => None,
        }
    }

    /// A one-line explanation for the log and the doorbell.
    pub fn reason(&self) -> String {
        match self {
            Action::Wait(w) => w.to_string(),
            Action::CloseSuccess => "CI is green on the pushed commit".to_owned(),
            Action::FixForward { attempt, turn, why } => {
                let to = match turn {
                    Turn::SameThread { .. } => "to the same thread",
                    Turn::NewThread { .. } => "to a new thread",
                };
                let what = match why {
                    Corrective::RedCi => "CI is red on the pushed commit",
                    Corrective::Conflict => {
                        "the pull request's branch conflicts with the default branch"
                    }
                    Corrective::ChangesRequested => "a reviewer requested changes",
                };
                format!("{what}: corrective turn {attempt}, {to}")
            }
            Action::FreezeEscalate(e) | Action::EscalatePrepush(e) => e.to_string(),
            Action::Stop => "the stop label is on the issue: the run is stopped".to_owned(),
            Action::Finish => "the outcome is recorded: finishing its clean-up".to_owned(),
            Action::OpenPullRequest => {
                "the run's branch has a commit: opening its pull request".to_owned()
            }
            Action::Merge => "the pull request is green and mergeable: merging it".to_owned(),
            Action::HandOverForReview => {
                "the pull request is green and needs a human's review: handing it over".to_owned()
            }
        }
    }
}

/// Which row of the table decided, with the action (rows are numbered as in
/// the module docs). Exposed so that tests and policy tools can show the rule.
pub fn next_action_with_rule(state: &RunState, config: &Config) -> (u8, Action) {
    let s = state;
    if s.outcome_recorded {
        return (1, Action::Finish);
    }
    if s.stop_requested {
        return (2, Action::Stop);
    }
    if s.pushed
        && let Some(pull) = s.pull
        && let Some(decided) = landing(s, &pull, config)
    {
        return decided;
    }
    if s.pushed {
        match s.ci_status {
            Some(CiStatus::Green) => return (3, Action::CloseSuccess),
            Some(CiStatus::Red) => {
                if s.corrective_turn_for_this_commit && s.agent_busy() {
                    return (4, Action::Wait(WaitReason::CorrectiveTurnRunning));
                }
                return corrective(s, config, Corrective::RedCi, 7)
                    .unwrap_or_else(|spent| (8, Action::FreezeEscalate(spent)));
            }
            Some(CiStatus::NoSignal) => {
                if s.seconds_since_push_seen >= config.ci_start_max_seconds {
                    return (
                        9,
                        Action::FreezeEscalate(Escalation::CiNeverStarted {
                            seconds: s.seconds_since_push_seen,
                            cap: config.ci_start_max_seconds,
                        }),
                    );
                }
                return (
                    10,
                    Action::Wait(WaitReason::CiNotStarted {
                        seconds: s.seconds_since_push_seen,
                        cap: config.ci_start_max_seconds,
                    }),
                );
            }
            Some(CiStatus::Pending) => return (10, Action::Wait(WaitReason::CiPending)),
            // An unread verdict is never a reason to act.
            None => return (10, Action::Wait(WaitReason::CiUnknown)),
        }
    }
    match s.effective_status() {
        Some(ThreadStatus::Error) => return (11, Action::EscalatePrepush(Escalation::Errored)),
        Some(ThreadStatus::Idle) => {
            return (11, Action::EscalatePrepush(Escalation::FinishedWithoutPush));
        }
        Some(ThreadStatus::NeedsInput) => {
            return (11, Action::EscalatePrepush(Escalation::NeedsInput));
        }
        Some(ThreadStatus::Running) | None => {}
    }
    if s.seconds_since_dispatch >= config.prepush_max_seconds {
        return (
            12,
            Action::EscalatePrepush(Escalation::StalledPrepush {
                seconds: s.seconds_since_dispatch,
                cap: config.prepush_max_seconds,
            }),
        );
    }
    (
        13,
        Action::Wait(WaitReason::AgentWorking {
            seconds: s.seconds_since_dispatch,
            cap: config.prepush_max_seconds,
        }),
    )
}

/// Rows 14 to 24: a run landing through `pull`, once something is pushed.
/// `None` where the push rows decide as for a direct push (CI red, pending
/// or not started on an open pull request's head).
fn landing(s: &RunState, pull: &PullFacts, config: &Config) -> Option<(u8, Action)> {
    if pull.foreign {
        return Some((17, Action::EscalatePrepush(Escalation::ForeignPullRequest)));
    }
    if !pull.opened {
        return Some((14, Action::OpenPullRequest));
    }
    if pull.retargeted && pull.state == PullState::Open {
        return Some((
            17,
            Action::EscalatePrepush(Escalation::PullRequestRetargeted),
        ));
    }
    match pull.state {
        PullState::Merged => {
            return match s.ci_status {
                Some(CiStatus::Green) => Some((15, Action::CloseSuccess)),
                Some(CiStatus::Red) => {
                    Some((16, Action::FreezeEscalate(Escalation::RedAfterMerge)))
                }
                // Not started, pending or unread: rows 9 and 10 as for a push.
                _ => None,
            };
        }
        PullState::ClosedUnmerged => {
            return Some((17, Action::EscalatePrepush(Escalation::PullRequestClosed)));
        }
        PullState::Open => {}
    }
    let freeze = |spent| Action::FreezeEscalate(spent);
    // A conflict first, whatever CI says: GitHub runs no pull-request
    // checks on a branch that conflicts, so its CI never starts until the
    // conflict is resolved.
    if pull.mergeable == Mergeable::Conflicting {
        if s.corrective_turn_for_this_commit && s.agent_busy() {
            return Some((18, Action::Wait(WaitReason::CorrectiveTurnRunning)));
        }
        return Some(
            corrective(s, config, Corrective::Conflict, 19).unwrap_or_else(|e| (19, freeze(e))),
        );
    }
    if s.ci_status != Some(CiStatus::Green) {
        return None;
    }
    if s.corrective_turn_for_this_commit && s.agent_busy() {
        return Some((18, Action::Wait(WaitReason::CorrectiveTurnRunning)));
    }
    if pull.mergeable == Mergeable::Behind {
        return Some(
            corrective(s, config, Corrective::Conflict, 19).unwrap_or_else(|e| (19, freeze(e))),
        );
    }
    if pull.review == ReviewState::ChangesRequested {
        return Some(
            corrective(s, config, Corrective::ChangesRequested, 20)
                .unwrap_or_else(|e| (20, freeze(e))),
        );
    }
    // A merge the rules refused although GitHub called it mergeable is a
    // human's to review; once handed over, a mergeable pull request is
    // asked again (their approval may be what the rules waited for).
    let refused = pull.merge_refused && !pull.handed_over;
    if pull.review == ReviewState::Required || pull.mergeable == Mergeable::Blocked || refused {
        return Some(if pull.handed_over {
            (21, Action::Wait(WaitReason::ReviewWaiting))
        } else {
            (21, Action::HandOverForReview)
        });
    }
    if pull.mergeable == Mergeable::Unknown {
        return Some((22, Action::Wait(WaitReason::MergeabilityUnknown)));
    }
    if s.kill_switch {
        return Some((23, Action::Wait(WaitReason::Paused)));
    }
    Some((24, Action::Merge))
}

/// A corrective turn for `why`, decided as rows 5 to 7 decide (paused by
/// the kill switch, waiting for a busy agent, else sent to the same thread
/// when it is live and idle, to a new one otherwise), under rule number
/// `rule`; `Err` with the escalation when the fix-forward budget is spent.
fn corrective(
    s: &RunState,
    config: &Config,
    why: Corrective,
    rule: u8,
) -> Result<(u8, Action), Escalation> {
    // The time window runs from the first red verdict: it bounds fixing
    // CI, not answering a reviewer or a moved default branch.
    if s.fix_forward_attempts >= config.fix_forward_max_attempts
        || (why == Corrective::RedCi && s.seconds_since_first_red >= config.fix_forward_max_seconds)
    {
        return Err(Escalation::FixForwardBudgetSpent {
            attempts: s.fix_forward_attempts,
            max_attempts: config.fix_forward_max_attempts,
            seconds: s.seconds_since_first_red,
            max_seconds: config.fix_forward_max_seconds,
        });
    }
    if s.kill_switch {
        return Ok((
            if why == Corrective::RedCi { 5 } else { rule },
            Action::Wait(WaitReason::Paused),
        ));
    }
    if s.agent_busy() {
        return Ok((
            if why == Corrective::RedCi { 6 } else { rule },
            Action::Wait(WaitReason::AgentBusy),
        ));
    }
    let turn = if s.thread_status == Some(ThreadStatus::Idle) && !s.thread_gone {
        Turn::SameThread {
            step: s.thread_turns.saturating_add(1),
        }
    } else {
        Turn::NewThread {
            attempt: s.attempt.saturating_add(1),
        }
    };
    let attempt = s.fix_forward_attempts.saturating_add(1);
    Ok((rule, Action::FixForward { attempt, turn, why }))
}

/// What to do next with a run. Total: every state has exactly one answer.
pub fn next_action(state: &RunState, config: &Config) -> Action {
    next_action_with_rule(state, config).1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn config() -> Config {
        Config {
            fix_forward_max_attempts: 3,
            fix_forward_max_seconds: 600,
            prepush_max_seconds: 1000,
            ci_start_max_seconds: 100,
            ..Config::default()
        }
    }

    fn pushed(ci: CiStatus) -> RunState {
        RunState {
            pushed: true,
            ci_status: Some(ci),
            thread_status: Some(ThreadStatus::Idle),
            ..RunState::default()
        }
    }

    #[track_caller]
    fn check(state: RunState, expected_rule: u8, expected: ActionKind) {
        let (rule, action) = next_action_with_rule(&state, &config());
        assert_eq!(
            (rule, action.kind()),
            (expected_rule, expected),
            "{state:?}"
        );
    }

    #[test]
    fn every_row() {
        use ActionKind::*;
        use ThreadStatus as T;
        // 1: a recorded outcome is finished, whatever else holds.
        check(
            RunState {
                outcome_recorded: true,
                stop_requested: true,
                ..pushed(CiStatus::Red)
            },
            1,
            Finish,
        );
        // 2: the stop label beats every other decision.
        check(
            RunState {
                stop_requested: true,
                ..pushed(CiStatus::Green)
            },
            2,
            Stop,
        );
        // 3: green closes whatever the thread does.
        check(pushed(CiStatus::Green), 3, CloseSuccess);
        check(
            RunState {
                thread_status: Some(T::Error),
                thread_gone: true,
                ..pushed(CiStatus::Green)
            },
            3,
            CloseSuccess,
        );
        // 4: a corrective turn for this commit still running, even with the
        // budget spent.
        check(
            RunState {
                corrective_turn_for_this_commit: true,
                thread_status: Some(T::Running),
                fix_forward_attempts: 9,
                ..pushed(CiStatus::Red)
            },
            4,
            Wait,
        );
        // A corrective turn for this commit that ended does not hold it.
        check(
            RunState {
                corrective_turn_for_this_commit: true,
                ..pushed(CiStatus::Red)
            },
            7,
            FixForward,
        );
        // 5: paused by the kill switch, with budget left.
        check(
            RunState {
                kill_switch: true,
                ..pushed(CiStatus::Red)
            },
            5,
            Wait,
        );
        // 6: the agent is still busy (running, or no status yet).
        for status in [Some(T::Running), None] {
            check(
                RunState {
                    thread_status: status,
                    ..pushed(CiStatus::Red)
                },
                6,
                Wait,
            );
        }
        // 7: budget left on both bounds.
        check(pushed(CiStatus::Red), 7, FixForward);
        check(
            RunState {
                fix_forward_attempts: 2,
                seconds_since_first_red: 599,
                ..pushed(CiStatus::Red)
            },
            7,
            FixForward,
        );
        // 8: either bound reached (strict <), kill switch or not.
        for kill_switch in [false, true] {
            check(
                RunState {
                    fix_forward_attempts: 3,
                    kill_switch,
                    ..pushed(CiStatus::Red)
                },
                8,
                FreezeEscalate,
            );
        }
        check(
            RunState {
                seconds_since_first_red: 600,
                ..pushed(CiStatus::Red)
            },
            8,
            FreezeEscalate,
        );
        // 9: no signal for at least the CI-start cap.
        check(
            RunState {
                seconds_since_push_seen: 100,
                ..pushed(CiStatus::NoSignal)
            },
            9,
            FreezeEscalate,
        );
        // 10: pending, or no signal within the cap, or unknown.
        check(pushed(CiStatus::Pending), 10, Wait);
        check(
            RunState {
                seconds_since_push_seen: 5000,
                ..pushed(CiStatus::Pending)
            },
            10,
            Wait,
        );
        check(
            RunState {
                seconds_since_push_seen: 99,
                ..pushed(CiStatus::NoSignal)
            },
            10,
            Wait,
        );
        check(
            RunState {
                pushed: true,
                seconds_since_push_seen: 5000,
                ..RunState::default()
            },
            10,
            Wait,
        );
        // 11: nothing pushed and the thread stopped, or gone.
        for status in [T::Error, T::Idle, T::NeedsInput] {
            check(
                RunState {
                    thread_status: Some(status),
                    ..RunState::default()
                },
                11,
                EscalatePrepush,
            );
        }
        check(
            RunState {
                thread_status: Some(T::Running),
                thread_gone: true,
                ..RunState::default()
            },
            11,
            EscalatePrepush,
        );
        // 12: stalled.
        check(
            RunState {
                thread_status: Some(T::Running),
                seconds_since_dispatch: 1000,
                ..RunState::default()
            },
            12,
            EscalatePrepush,
        );
        check(
            RunState {
                seconds_since_dispatch: 1000,
                ..RunState::default()
            },
            12,
            EscalatePrepush,
        );
        // 13: otherwise.
        check(RunState::default(), 13, Wait);
        check(
            RunState {
                thread_status: Some(T::Running),
                seconds_since_dispatch: 999,
                ..RunState::default()
            },
            13,
            Wait,
        );
    }

    #[test]
    fn a_corrective_turn_goes_to_the_same_thread_only_when_it_is_live_and_idle() {
        let c = config();
        let same = next_action(
            &RunState {
                thread_turns: 2,
                attempt: 1,
                ..pushed(CiStatus::Red)
            },
            &c,
        );
        assert_eq!(
            same,
            Action::FixForward {
                attempt: 1,
                turn: Turn::SameThread { step: 3 },
                why: Corrective::RedCi,
            }
        );
        for (status, gone) in [
            (Some(ThreadStatus::Error), false),
            (Some(ThreadStatus::NeedsInput), false),
            (Some(ThreadStatus::Idle), true),
        ] {
            let new = next_action(
                &RunState {
                    thread_status: status,
                    thread_gone: gone,
                    thread_turns: 2,
                    attempt: 1,
                    fix_forward_attempts: 1,
                    ..pushed(CiStatus::Red)
                },
                &c,
            );
            assert_eq!(
                new,
                Action::FixForward {
                    attempt: 2,
                    turn: Turn::NewThread { attempt: 2 },
                    why: Corrective::RedCi,
                },
                "{status:?} gone={gone}"
            );
        }
    }

    #[test]
    fn reasons_read_well() {
        let c = config();
        let budget = next_action(
            &RunState {
                fix_forward_attempts: 3,
                seconds_since_first_red: 42,
                ..pushed(CiStatus::Red)
            },
            &c,
        );
        insta::assert_snapshot!(budget.reason(), @"fix-forward budget spent: CI still red after 3 of 3 attempt(s) and 42s of 600s since the first red verdict");
        let never = next_action(
            &RunState {
                seconds_since_push_seen: 120,
                ..pushed(CiStatus::NoSignal)
            },
            &c,
        );
        insta::assert_snapshot!(never.reason(), @"CI never started: no signal 120s after the push was seen (cap 100s)");
        // The kill switch's wait says what it is, never "CI is running".
        let paused = next_action(
            &RunState {
                kill_switch: true,
                ..pushed(CiStatus::Red)
            },
            &c,
        );
        insta::assert_snapshot!(paused.reason(), @"CI is red on the pushed commit, but the kill switch pauses corrective turns");
    }

    fn arb_state() -> impl Strategy<Value = RunState> {
        (
            (
                any::<bool>(),
                any::<bool>(),
                any::<bool>(),
                prop::option::of(prop::sample::select(ThreadStatus::ALL.to_vec())),
                any::<bool>(),
                prop::option::of(prop::sample::select(CiStatus::ALL.to_vec())),
                any::<bool>(),
            ),
            (
                prop_oneof![0u32..6, any::<u32>()],
                any::<bool>(),
                prop_oneof![0u32..4, any::<u32>()],
                prop_oneof![0u32..4, any::<u32>()],
                prop_oneof![0u64..1200, any::<u64>()],
                prop_oneof![0u64..2000, any::<u64>()],
                prop_oneof![0u64..200, any::<u64>()],
            ),
        )
            .prop_map(
                |(
                    (outcome, stop, kill, status, gone, ci, pushed),
                    (attempts, for_this, attempt, turns, red, dispatch, push),
                )| RunState {
                    outcome_recorded: outcome,
                    stop_requested: stop,
                    kill_switch: kill,
                    thread_status: status,
                    thread_gone: gone,
                    ci_status: ci,
                    pushed,
                    fix_forward_attempts: attempts,
                    corrective_turn_for_this_commit: for_this,
                    attempt,
                    thread_turns: turns,
                    seconds_since_first_red: red,
                    seconds_since_dispatch: dispatch,
                    seconds_since_push_seen: push,
                    pull: None,
                },
            )
    }

    fn pull(state: PullState, mergeable: Mergeable, review: ReviewState) -> PullFacts {
        PullFacts {
            opened: true,
            state,
            mergeable,
            review,
            handed_over: false,
            retargeted: false,
            foreign: false,
            merge_refused: false,
        }
    }

    fn landing_state(ci: CiStatus, p: PullFacts) -> RunState {
        RunState {
            pull: Some(p),
            ..pushed(ci)
        }
    }

    #[test]
    fn every_landing_row() {
        use ActionKind::*;
        use Mergeable as M;
        use PullState as P;
        use ReviewState as R;
        let open = |m, r| pull(P::Open, m, r);
        // Nothing pushed yet: the push rows (the agent works).
        let mut s = landing_state(CiStatus::Green, PullFacts::NONE);
        s.pushed = false;
        s.thread_status = Some(ThreadStatus::Running);
        check(s, 13, Wait);
        // 14: pushed, no pull request, whatever CI says.
        check(
            landing_state(CiStatus::Red, PullFacts::NONE),
            14,
            OpenPullRequest,
        );
        // 15-16: merged (by anyone): the merge commit's verdict decides.
        check(
            landing_state(CiStatus::Green, pull(P::Merged, M::Unknown, R::None)),
            15,
            CloseSuccess,
        );
        check(
            landing_state(CiStatus::Red, pull(P::Merged, M::Clean, R::None)),
            16,
            FreezeEscalate,
        );
        check(
            landing_state(CiStatus::Pending, pull(P::Merged, M::Clean, R::None)),
            10,
            Wait,
        );
        // 17: closed unmerged: handed back, as needs-human.
        let (rule, closed) = next_action_with_rule(
            &landing_state(CiStatus::Green, pull(P::ClosedUnmerged, M::Clean, R::None)),
            &config(),
        );
        assert_eq!(
            (rule, closed),
            (17, Action::EscalatePrepush(Escalation::PullRequestClosed))
        );
        // Open and red: the push rows fix forward on the same branch.
        check(
            landing_state(CiStatus::Red, open(M::Clean, R::None)),
            7,
            FixForward,
        );
        check(
            landing_state(CiStatus::Pending, open(M::Clean, R::None)),
            10,
            Wait,
        );
        // 18: a corrective turn for this head still running.
        let mut busy = landing_state(CiStatus::Green, open(M::Conflicting, R::None));
        busy.corrective_turn_for_this_commit = true;
        busy.thread_status = Some(ThreadStatus::Running);
        check(busy, 18, Wait);
        // 19: conflicting or behind: a corrective turn, within the budget.
        for m in [M::Conflicting, M::Behind] {
            let (rule, action) =
                next_action_with_rule(&landing_state(CiStatus::Green, open(m, R::None)), &config());
            assert_eq!(rule, 19);
            assert!(
                matches!(
                    action,
                    Action::FixForward {
                        why: Corrective::Conflict,
                        ..
                    }
                ),
                "{action:?}"
            );
        }
        let mut spent = landing_state(CiStatus::Green, open(M::Conflicting, R::None));
        spent.fix_forward_attempts = 3;
        check(spent, 19, FreezeEscalate);
        // 20: changes requested by a trusted reviewer.
        let (rule, action) = next_action_with_rule(
            &landing_state(CiStatus::Green, open(M::Blocked, R::ChangesRequested)),
            &config(),
        );
        assert_eq!(rule, 20);
        assert!(matches!(
            action,
            Action::FixForward {
                why: Corrective::ChangesRequested,
                ..
            }
        ));
        // 21: a human's review: handed over once, then waits.
        check(
            landing_state(CiStatus::Green, open(M::Blocked, R::Required)),
            21,
            HandOverForReview,
        );
        check(
            landing_state(CiStatus::Green, open(M::Blocked, R::None)),
            21,
            HandOverForReview,
        );
        let mut handed = open(M::Blocked, R::Required);
        handed.handed_over = true;
        check(landing_state(CiStatus::Green, handed), 21, Wait);
        // 21: the rules refused afk's merge of a mergeable pull request:
        // handed over, then merged again once it may be (never handed over
        // twice).
        let mut refused = open(M::Clean, R::None);
        refused.merge_refused = true;
        check(
            landing_state(CiStatus::Green, refused),
            21,
            HandOverForReview,
        );
        refused.handed_over = true;
        check(landing_state(CiStatus::Green, refused), 24, Merge);
        // 22: not computed yet.
        check(
            landing_state(CiStatus::Green, open(M::Unknown, R::None)),
            22,
            Wait,
        );
        // 23: the kill switch holds a merge.
        let mut paused = landing_state(CiStatus::Green, open(M::Clean, R::Approved));
        paused.kill_switch = true;
        check(paused, 23, Wait);
        // 24: green and mergeable: merged.
        check(
            landing_state(CiStatus::Green, open(M::Clean, R::Approved)),
            24,
            Merge,
        );
        check(
            landing_state(CiStatus::Green, open(M::Clean, R::None)),
            24,
            Merge,
        );
        // A conflict is answered before any CI verdict (none comes).
        for ci in [CiStatus::NoSignal, CiStatus::Red, CiStatus::Pending] {
            let mut c = landing_state(ci, open(M::Conflicting, R::None));
            c.seconds_since_push_seen = 100_000;
            check(c, 19, FixForward);
        }
        // Retargeted, or opened by someone else: handed back, never merged.
        let mut retargeted = open(M::Clean, R::Approved);
        retargeted.retargeted = true;
        let (rule, action) =
            next_action_with_rule(&landing_state(CiStatus::Green, retargeted), &config());
        assert_eq!(
            (rule, action),
            (
                17,
                Action::EscalatePrepush(Escalation::PullRequestRetargeted)
            )
        );
        let foreign = PullFacts {
            foreign: true,
            ..PullFacts::NONE
        };
        let (rule, action) =
            next_action_with_rule(&landing_state(CiStatus::Green, foreign), &config());
        assert_eq!(
            (rule, action),
            (17, Action::EscalatePrepush(Escalation::ForeignPullRequest))
        );
        // A review or a conflict is answered past the time window of a red
        // verdict long fixed (the attempts still bound it).
        let mut late = landing_state(CiStatus::Green, open(M::Conflicting, R::None));
        late.seconds_since_first_red = 100_000;
        check(late, 19, FixForward);
        // The stop label and a recorded outcome still come first.
        let mut stopped = landing_state(CiStatus::Green, open(M::Clean, R::None));
        stopped.stop_requested = true;
        check(stopped, 2, Stop);
    }

    fn arb_pull() -> impl Strategy<Value = Option<PullFacts>> {
        let state = prop::sample::select(vec![
            PullState::Open,
            PullState::Merged,
            PullState::ClosedUnmerged,
        ]);
        let mergeable = prop::sample::select(vec![
            Mergeable::Clean,
            Mergeable::Conflicting,
            Mergeable::Behind,
            Mergeable::Blocked,
            Mergeable::Unknown,
        ]);
        let review = prop::sample::select(vec![
            ReviewState::None,
            ReviewState::Approved,
            ReviewState::ChangesRequested,
            ReviewState::Required,
        ]);
        let flags = (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>());
        prop::option::of((any::<bool>(), state, mergeable, review, flags).prop_map(
            |(
                opened,
                state,
                mergeable,
                review,
                (handed_over, retargeted, foreign, merge_refused),
            )| {
                PullFacts {
                    opened,
                    state,
                    mergeable,
                    review,
                    handed_over,
                    retargeted,
                    foreign,
                    merge_refused,
                }
            },
        ))
    }

    proptest! {
        /// Whatever a pull request's facts, afk merges only an open, green,
        /// mergeable pull request with the kill switch off and no change
        /// requested; closes the issue only once it is merged and green; and
        /// never opens a second pull request.
        #[test]
        fn landing_never_merges_or_closes_early(s in arb_state(), p in arb_pull()) {
            let s = RunState { pull: p, ..s };
            let action = next_action(&s, &config());
            if let Some(p) = p {
                if action == Action::Merge {
                    prop_assert!(s.pushed && p.opened && p.state == PullState::Open);
                    prop_assert!(!p.retargeted && !p.foreign);
                    prop_assert_eq!(s.ci_status, Some(CiStatus::Green));
                    prop_assert_eq!(p.mergeable, Mergeable::Clean);
                    prop_assert!(p.review != ReviewState::ChangesRequested && p.review != ReviewState::Required);
                    prop_assert!(!s.kill_switch && !s.stop_requested && !s.outcome_recorded);
                    // A refused merge is asked again only after a human
                    // was told.
                    prop_assert!(!p.merge_refused || p.handed_over);
                }
                if action == Action::HandOverForReview {
                    prop_assert!(!p.handed_over);
                }
                if action == Action::CloseSuccess {
                    prop_assert!(p.opened && p.state == PullState::Merged);
                    prop_assert_eq!(s.ci_status, Some(CiStatus::Green));
                }
                if action == Action::OpenPullRequest {
                    prop_assert!(!p.opened && s.pushed);
                }
            } else {
                prop_assert!(!matches!(action, Action::Merge | Action::OpenPullRequest | Action::HandOverForReview));
            }
        }
    }

    proptest! {
        /// Each row is checked independently of the implementation: the
        /// condition of the first matching row, written out again, must name
        /// the rule the machine reports. Since the conditions of all rows are
        /// evaluated here, this is also totality and precedence.
        #[test]
        fn row_precedence_holds(s in arb_state(), max_attempts in 0u32..6, max_red in 0u64..1200) {
            let c = Config { fix_forward_max_attempts: max_attempts, fix_forward_max_seconds: max_red, ..config() };
            let red = s.pushed && s.ci_status == Some(CiStatus::Red);
            let busy = !s.thread_gone && matches!(s.thread_status, None | Some(ThreadStatus::Running));
            let budget = s.fix_forward_attempts < c.fix_forward_max_attempts && s.seconds_since_first_red < c.fix_forward_max_seconds;
            let stopped_thread = s.thread_gone || matches!(s.thread_status, Some(ThreadStatus::Error | ThreadStatus::Idle | ThreadStatus::NeedsInput));
            let rows = [
                s.outcome_recorded,
                s.stop_requested,
                s.pushed && s.ci_status == Some(CiStatus::Green),
                red && s.corrective_turn_for_this_commit && busy,
                red && budget && s.kill_switch,
                red && budget && busy,
                red && budget,
                red,
                s.pushed && s.ci_status == Some(CiStatus::NoSignal) && s.seconds_since_push_seen >= c.ci_start_max_seconds,
                s.pushed,
                !s.pushed && stopped_thread,
                !s.pushed && s.seconds_since_dispatch >= c.prepush_max_seconds,
                true,
            ];
            let expected_rule = rows.iter().position(|r| *r).map(|i| i + 1);
            let (rule, action) = next_action_with_rule(&s, &c);
            prop_assert_eq!(Some(usize::from(rule)), expected_rule);
            let expected_kind = match rule {
                1 => ActionKind::Finish,
                2 => ActionKind::Stop,
                3 => ActionKind::CloseSuccess,
                7 => ActionKind::FixForward,
                8 | 9 => ActionKind::FreezeEscalate,
                11 | 12 => ActionKind::EscalatePrepush,
                _ => ActionKind::Wait,
            };
            prop_assert_eq!(action.kind(), expected_kind);
            prop_assert!(!action.reason().is_empty());
            // A corrective turn never goes to a busy thread, and never while
            // the kill switch is on.
            if let Action::FixForward { turn, .. } = action {
                prop_assert!(!busy && !s.kill_switch);
                let same = matches!(turn, Turn::SameThread { .. });
                prop_assert_eq!(same, s.thread_status == Some(ThreadStatus::Idle) && !s.thread_gone);
            }
        }

        /// Without a thread status and within every cap, nothing ever escalates:
        /// a missing status is "no status yet", never an action.
        #[test]
        fn no_status_yet_never_escalates_early(mut s in arb_state()) {
            s.thread_status = None;
            s.thread_gone = false;
            s.pushed = false;
            s.outcome_recorded = false;
            s.stop_requested = false;
            s.seconds_since_dispatch %= config().prepush_max_seconds;
            prop_assert_eq!(next_action(&s, &config()).kind(), ActionKind::Wait);
        }
    }
}
