//! The run state machine: what to do next with a run in flight.
//!
//! [`next_action`] is total over every input and returns a value; it never
//! performs an action. The watch tick gathers the facts into a [`RunState`],
//! asks, and then performs the one effect the answer names.
//!
//! First match wins:
//!
//! | # | condition | action |
//! | --- | --- | --- |
//! | 1 | pushed, CI green | `CloseSuccess` (whatever the thread does) |
//! | 2 | pushed, CI red, a corrective turn for this red commit still running | `Wait` |
//! | 3 | pushed, CI red, attempts < max and seconds since first red < max | `FixForward` |
//! | 4 | pushed, CI red, either bound reached | `FreezeEscalate` |
//! | 5 | pushed, no CI signal for ≥ the CI-start max since the push was seen | `FreezeEscalate` |
//! | 6 | pushed, CI pending, or no signal yet | `Wait` |
//! | 7 | nothing pushed, thread `Error`, `Idle` or `NeedsInput` | `EscalatePrepush` |
//! | 8 | nothing pushed, seconds since dispatch ≥ prepush max | `EscalatePrepush` |
//! | 9 | otherwise | `Wait` |
//!
//! Row 2 is what keeps a CronJob that ticks every minute from sending a new
//! corrective turn for the same red commit on every tick and burning the whole
//! budget in minutes.

use std::fmt;

use crate::config::Config;
use crate::types::{CiStatus, ThreadStatus};

/// Everything the state machine looks at for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunState {
    /// Liveness of the agent's thread; `None` is "no status yet".
    pub thread_status: Option<ThreadStatus>,
    /// CI verdict of the newest pushed commit; `None` when not read.
    pub ci_status: Option<CiStatus>,
    /// Whether the agent pushed a commit for this run.
    pub pushed: bool,
    /// Corrective turns sent so far.
    pub fix_forward_attempts: u32,
    /// Seconds since CI first went red on a pushed commit (0 if never).
    pub seconds_since_first_red: u64,
    /// Seconds since the run was first dispatched.
    pub seconds_since_dispatch: u64,
    /// Seconds since the loop first saw the newest pushed commit.
    pub seconds_since_push_seen: u64,
    /// Whether a corrective turn for the current red commit is still being
    /// worked on.
    pub corrective_turn_running: bool,
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
    /// The agent is still working and has not pushed yet.
    AgentWorking {
        /// Seconds since dispatch.
        seconds: u64,
        /// The prepush cap.
        cap: u64,
    },
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
            WaitReason::CiPending => f.write_str("CI is running on the pushed commit"),
            WaitReason::CiNotStarted { seconds, cap } => write!(
                f,
                "no CI signal yet, {seconds}s after the push was seen (escalates at {cap}s)"
            ),
            WaitReason::CiUnknown => {
                f.write_str("the CI verdict of the pushed commit is not known yet")
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
    /// (1-based).
    FixForward {
        /// The number this corrective turn will have.
        attempt: u32,
    },
    /// Freeze the run and hand it to a human.
    FreezeEscalate(Escalation),
    /// Hand a run that pushed nothing to a human.
    EscalatePrepush(Escalation),
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
            Action::FixForward { attempt } => {
                format!("CI is red on the pushed commit: corrective turn {attempt}")
            }
            Action::FreezeEscalate(e) | Action::EscalatePrepush(e) => e.to_string(),
        }
    }
}

/// Which row of the table decided, with the action (rows are numbered as in
/// the module docs). Exposed so that tests and policy tools can show the rule.
pub fn next_action_with_rule(state: &RunState, config: &Config) -> (u8, Action) {
    let s = state;
    if s.pushed {
        match s.ci_status {
            Some(CiStatus::Green) => return (1, Action::CloseSuccess),
            Some(CiStatus::Red) => {
                if s.corrective_turn_running {
                    return (2, Action::Wait(WaitReason::CorrectiveTurnRunning));
                }
                if s.fix_forward_attempts < config.fix_forward_max_attempts
                    && s.seconds_since_first_red < config.fix_forward_max_seconds
                {
                    return (
                        3,
                        Action::FixForward {
                            attempt: s.fix_forward_attempts.saturating_add(1),
                        },
                    );
                }
                return (
                    4,
                    Action::FreezeEscalate(Escalation::FixForwardBudgetSpent {
                        attempts: s.fix_forward_attempts,
                        max_attempts: config.fix_forward_max_attempts,
                        seconds: s.seconds_since_first_red,
                        max_seconds: config.fix_forward_max_seconds,
                    }),
                );
            }
            Some(CiStatus::NoSignal) => {
                if s.seconds_since_push_seen >= config.ci_start_max_seconds {
                    return (
                        5,
                        Action::FreezeEscalate(Escalation::CiNeverStarted {
                            seconds: s.seconds_since_push_seen,
                            cap: config.ci_start_max_seconds,
                        }),
                    );
                }
                return (
                    6,
                    Action::Wait(WaitReason::CiNotStarted {
                        seconds: s.seconds_since_push_seen,
                        cap: config.ci_start_max_seconds,
                    }),
                );
            }
            Some(CiStatus::Pending) => return (6, Action::Wait(WaitReason::CiPending)),
            // An unread verdict is never a reason to act.
            None => return (6, Action::Wait(WaitReason::CiUnknown)),
        }
    }
    match s.thread_status {
        Some(ThreadStatus::Error) => return (7, Action::EscalatePrepush(Escalation::Errored)),
        Some(ThreadStatus::Idle) => {
            return (7, Action::EscalatePrepush(Escalation::FinishedWithoutPush));
        }
        Some(ThreadStatus::NeedsInput) => {
            return (7, Action::EscalatePrepush(Escalation::NeedsInput));
        }
        Some(ThreadStatus::Running) | None => {}
    }
    if s.seconds_since_dispatch >= config.prepush_max_seconds {
        return (
            8,
            Action::EscalatePrepush(Escalation::StalledPrepush {
                seconds: s.seconds_since_dispatch,
                cap: config.prepush_max_seconds,
            }),
        );
    }
    (
        9,
        Action::Wait(WaitReason::AgentWorking {
            seconds: s.seconds_since_dispatch,
            cap: config.prepush_max_seconds,
        }),
    )
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
        // 1: green closes whatever the thread does.
        check(pushed(CiStatus::Green), 1, CloseSuccess);
        check(
            RunState {
                thread_status: Some(T::Error),
                ..pushed(CiStatus::Green)
            },
            1,
            CloseSuccess,
        );
        // 2: a corrective turn still running.
        check(
            RunState {
                corrective_turn_running: true,
                fix_forward_attempts: 9,
                ..pushed(CiStatus::Red)
            },
            2,
            Wait,
        );
        // 3: budget left on both bounds.
        check(pushed(CiStatus::Red), 3, FixForward);
        check(
            RunState {
                fix_forward_attempts: 2,
                seconds_since_first_red: 599,
                ..pushed(CiStatus::Red)
            },
            3,
            FixForward,
        );
        // 4: either bound reached (strict <).
        check(
            RunState {
                fix_forward_attempts: 3,
                ..pushed(CiStatus::Red)
            },
            4,
            FreezeEscalate,
        );
        check(
            RunState {
                seconds_since_first_red: 600,
                ..pushed(CiStatus::Red)
            },
            4,
            FreezeEscalate,
        );
        // 5: no signal for at least the CI-start cap.
        check(
            RunState {
                seconds_since_push_seen: 100,
                ..pushed(CiStatus::NoSignal)
            },
            5,
            FreezeEscalate,
        );
        // 6: pending, or no signal within the cap, or unknown.
        check(pushed(CiStatus::Pending), 6, Wait);
        check(
            RunState {
                seconds_since_push_seen: 5000,
                ..pushed(CiStatus::Pending)
            },
            6,
            Wait,
        );
        check(
            RunState {
                seconds_since_push_seen: 99,
                ..pushed(CiStatus::NoSignal)
            },
            6,
            Wait,
        );
        check(
            RunState {
                pushed: true,
                seconds_since_push_seen: 5000,
                ..RunState::default()
            },
            6,
            Wait,
        );
        // 7: nothing pushed and the thread stopped.
        for status in [T::Error, T::Idle, T::NeedsInput] {
            check(
                RunState {
                    thread_status: Some(status),
                    ..RunState::default()
                },
                7,
                EscalatePrepush,
            );
        }
        // 8: stalled.
        check(
            RunState {
                thread_status: Some(T::Running),
                seconds_since_dispatch: 1000,
                ..RunState::default()
            },
            8,
            EscalatePrepush,
        );
        check(
            RunState {
                seconds_since_dispatch: 1000,
                ..RunState::default()
            },
            8,
            EscalatePrepush,
        );
        // 9: otherwise.
        check(RunState::default(), 9, Wait);
        check(
            RunState {
                thread_status: Some(T::Running),
                seconds_since_dispatch: 999,
                ..RunState::default()
            },
            9,
            Wait,
        );
    }

    #[test]
    fn escalation_reasons_read_well() {
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
        let fix = next_action(&pushed(CiStatus::Red), &c);
        assert_eq!(fix, Action::FixForward { attempt: 1 });
    }

    fn arb_state() -> impl Strategy<Value = RunState> {
        (
            prop::option::of(prop::sample::select(ThreadStatus::ALL.to_vec())),
            prop::option::of(prop::sample::select(CiStatus::ALL.to_vec())),
            any::<bool>(),
            prop_oneof![0u32..6, any::<u32>()],
            prop_oneof![0u64..1200, any::<u64>()],
            prop_oneof![0u64..2000, any::<u64>()],
            prop_oneof![0u64..200, any::<u64>()],
            any::<bool>(),
        )
            .prop_map(
                |(t, c, pushed, attempts, red, dispatch, push, running)| RunState {
                    thread_status: t,
                    ci_status: c,
                    pushed,
                    fix_forward_attempts: attempts,
                    seconds_since_first_red: red,
                    seconds_since_dispatch: dispatch,
                    seconds_since_push_seen: push,
                    corrective_turn_running: running,
                },
            )
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
            let rows = [
                s.pushed && s.ci_status == Some(CiStatus::Green),
                red && s.corrective_turn_running,
                red && s.fix_forward_attempts < c.fix_forward_max_attempts && s.seconds_since_first_red < c.fix_forward_max_seconds,
                red,
                s.pushed && s.ci_status == Some(CiStatus::NoSignal) && s.seconds_since_push_seen >= c.ci_start_max_seconds,
                s.pushed,
                !s.pushed && matches!(s.thread_status, Some(ThreadStatus::Error | ThreadStatus::Idle | ThreadStatus::NeedsInput)),
                !s.pushed && s.seconds_since_dispatch >= c.prepush_max_seconds,
                true,
            ];
            let expected_rule = rows.iter().position(|r| *r).map(|i| i + 1);
            let (rule, action) = next_action_with_rule(&s, &c);
            prop_assert_eq!(Some(usize::from(rule)), expected_rule);
            let expected_kind = match rule {
                1 => ActionKind::CloseSuccess,
                3 => ActionKind::FixForward,
                4 | 5 => ActionKind::FreezeEscalate,
                7 | 8 => ActionKind::EscalatePrepush,
                _ => ActionKind::Wait,
            };
            prop_assert_eq!(action.kind(), expected_kind);
            prop_assert!(!action.reason().is_empty());
        }

        /// Without a thread status and within every cap, nothing ever escalates:
        /// a missing status is "no status yet", never an action.
        #[test]
        fn no_status_yet_never_escalates_early(mut s in arb_state()) {
            s.thread_status = None;
            s.pushed = false;
            s.seconds_since_dispatch %= config().prepush_max_seconds;
            prop_assert_eq!(next_action(&s, &config()).kind(), ActionKind::Wait);
        }
    }
}
