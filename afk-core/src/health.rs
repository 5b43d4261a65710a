//! The loop's own health: when it cannot do its job, a human hears it, once
//! per cause.
//!
//! The ticks note what they saw ([`Signal`]: a cause seen failing, or seen
//! working); [`health_decide`] folds one tick's signals into what was
//! remembered ([`HealthMemory`]) and answers which doorbells ring. The rules:
//!
//! 1. A cause rings once it has been seen failing on [`HealthCause::ticks_to_ring`]
//!    ticks in a row (the executor: three, since one slow answer is not an
//!    outage; the others: the first).
//! 2. It rings once while it lasts, and at most once per
//!    [`COOLDOWN_SECONDS`] however often it comes and goes (a flapping
//!    cause never spams).
//! 3. A cause that rang and is then seen working rings a quiet "recovered".
//! 4. A tick that saw nothing of a cause (a quiet tick makes no executor
//!    call) changes nothing about it: only evidence moves the memory.
//!
//! Checked by `health_rings_once_per_cause` and its neighbours below.

use std::fmt;

use crate::doorbell::{Loudness, Message};
use crate::ports::PortError;
use crate::types::Timestamp;

/// At most one doorbell per cause in this many seconds.
pub const COOLDOWN_SECONDS: u64 = 6 * 60 * 60;

/// Why the loop cannot do its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthCause {
    /// GitHub refused afk's credentials, or they cannot be read.
    Credentials,
    /// The executor (T3, the cluster, the local agents' directory) cannot
    /// be read.
    Executor,
    /// The kill switch is off (armed) but no repository is enrolled: the
    /// operator believes it runs, and it does nothing.
    NothingEnrolled,
}

impl HealthCause {
    /// Every cause.
    pub const ALL: [HealthCause; 3] = [
        HealthCause::Credentials,
        HealthCause::Executor,
        HealthCause::NothingEnrolled,
    ];

    /// Its name in the state file, the logs and the metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthCause::Credentials => "credentials",
            HealthCause::Executor => "executor",
            HealthCause::NothingEnrolled => "nothing_enrolled",
        }
    }

    /// Reads a name [`Self::as_str`] wrote.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// How many ticks in a row it must be seen failing before it rings.
    pub fn ticks_to_ring(self) -> u32 {
        match self {
            HealthCause::Executor => 3,
            HealthCause::Credentials | HealthCause::NothingEnrolled => 1,
        }
    }

    /// What a human should do, in one line.
    fn advice(self) -> &'static str {
        match self {
            HealthCause::Credentials => {
                "GitHub refused afk's credentials or they cannot be read: nothing is dispatched or watched until they are fixed (runbook: Rotate a token)"
            }
            HealthCause::Executor => {
                "the executor cannot be read: runs are not driven and nothing is dispatched (runbook: Troubleshooting)"
            }
            HealthCause::NothingEnrolled => {
                "the kill switch is off but AFK_ALLOWLIST is empty: afk is armed and does nothing (enrol a repository, or turn the kill switch back on)"
            }
        }
    }
}

impl fmt::Display for HealthCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// What one tick saw of one cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Seen failing, with what failed (no secret: port errors carry none).
    Failing(HealthCause, String),
    /// Seen working (a request that needed it went through).
    Working(HealthCause),
}

impl Signal {
    fn cause(&self) -> HealthCause {
        match self {
            Signal::Failing(c, _) | Signal::Working(c) => *c,
        }
    }
}

/// What a tracker (GitHub) answer says of the credentials: a refusal (or a
/// credential that cannot be read, which the adapters report the same way)
/// is failing, any answer at all is working, other failures say nothing.
pub fn tracker_signal<T>(answer: &Result<T, PortError>) -> Option<Signal> {
    match answer {
        Ok(_) => Some(Signal::Working(HealthCause::Credentials)),
        Err(e) => tracker_error_signal(e),
    }
}

/// What a failed tracker call says of the credentials
/// ([`tracker_signal`]).
pub fn tracker_error_signal(e: &PortError) -> Option<Signal> {
    matches!(e, PortError::Auth { .. })
        .then(|| Signal::Failing(HealthCause::Credentials, e.to_string()))
}

/// What an executor read says of the executor: any failure is failing (it
/// cannot be driven), an answer is working.
pub fn executor_signal<T>(answer: &Result<T, PortError>) -> Signal {
    match answer {
        Ok(_) => Signal::Working(HealthCause::Executor),
        Err(e) => Signal::Failing(HealthCause::Executor, e.to_string()),
    }
}

/// What the configuration says of enrolment, for a poll tick: armed (the
/// kill switch off) with nothing enrolled is failing; anything else is
/// working.
pub fn enrolment_signal(kill_switch: bool, enrolled: usize) -> Signal {
    if !kill_switch && enrolled == 0 {
        Signal::Failing(
            HealthCause::NothingEnrolled,
            "AFK_KILL_SWITCH is off and AFK_ALLOWLIST is empty".to_owned(),
        )
    } else {
        Signal::Working(HealthCause::NothingEnrolled)
    }
}

/// What is remembered of one cause between ticks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CauseMemory {
    /// The cause.
    pub cause: HealthCause,
    /// Ticks in a row it was seen failing (0: it is not failing now).
    pub failing_ticks: u32,
    /// When it was first seen failing, this time.
    pub since: Option<Timestamp>,
    /// What failed, as last seen.
    pub detail: String,
    /// Whether this failure has rung.
    pub rung: bool,
    /// When it last rang (kept after it recovers: the cooldown).
    pub last_rung: Option<Timestamp>,
}

/// What is remembered of the loop's health (the state file keeps it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HealthMemory {
    /// One entry per cause ever seen failing.
    pub causes: Vec<CauseMemory>,
}

/// A health doorbell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthBell {
    /// The cause.
    pub cause: HealthCause,
    /// `true`: it failed (loud); `false`: it recovered (quiet).
    pub failing: bool,
    /// What failed, as last seen.
    pub detail: String,
    /// Since when (failing), or for how long it failed (recovered).
    pub since: Option<Timestamp>,
}

impl HealthBell {
    /// `[AFK-HEALTH] credentials failing` / `[AFK-HEALTH] credentials recovered`.
    pub fn title(&self) -> String {
        let state = if self.failing { "failing" } else { "recovered" };
        format!("[AFK-HEALTH] {} {state}", self.cause)
    }

    /// What failed, what to do, and since when.
    pub fn body(&self) -> String {
        let since = self
            .since
            .map(|t| format!("\nSince: {t}"))
            .unwrap_or_default();
        if self.failing {
            format!(
                "{}\n\nLast seen: {}{since}",
                self.cause.advice(),
                self.detail
            )
        } else {
            format!(
                "It works again (it had failed with: {}){since}",
                self.detail
            )
        }
    }

    /// The message a notifier sends: tagged `afk`, `health` and the cause.
    pub fn message(&self) -> Message {
        Message {
            title: self.title(),
            body: self.body(),
            loudness: self.loudness(),
            tags: vec!["afk".into(), "health".into(), self.cause.as_str().into()],
            link: None,
        }
    }

    /// Loud when failing, quiet when recovered.
    pub fn loudness(&self) -> Loudness {
        if self.failing {
            Loudness::Loud
        } else {
            Loudness::Quiet
        }
    }
}

/// Folds one tick's `signals`, seen at `now`, into `memory`: the memory to
/// keep, and the doorbells to ring (rules in the module's documentation).
/// A cause with a failing and a working signal in the same tick counts as
/// failing (one repository refusing the token is enough).
pub fn health_decide(
    memory: &HealthMemory,
    signals: &[Signal],
    now: Timestamp,
) -> (HealthMemory, Vec<HealthBell>) {
    let mut next = memory.clone();
    let mut bells = Vec::new();
    for cause in HealthCause::ALL {
        let mut seen = signals.iter().filter(|s| s.cause() == cause).peekable();
        if seen.peek().is_none() {
            continue;
        }
        let failing = seen.clone().find_map(|s| match s {
            Signal::Failing(_, detail) => Some(detail.clone()),
            Signal::Working(_) => None,
        });
        let at = match next.causes.iter().position(|c| c.cause == cause) {
            Some(at) => at,
            None if failing.is_none() => continue,
            None => {
                next.causes.push(CauseMemory {
                    cause,
                    failing_ticks: 0,
                    since: None,
                    detail: String::new(),
                    rung: false,
                    last_rung: None,
                });
                next.causes.len() - 1
            }
        };
        let m = &mut next.causes[at];
        match failing {
            Some(detail) => {
                m.failing_ticks = m.failing_ticks.saturating_add(1);
                m.since.get_or_insert(now);
                m.detail = detail;
                let cooled = m
                    .last_rung
                    .is_none_or(|t| now.seconds_since(t) >= COOLDOWN_SECONDS);
                if !m.rung && m.failing_ticks >= cause.ticks_to_ring() && cooled {
                    m.rung = true;
                    m.last_rung = Some(now);
                    bells.push(HealthBell {
                        cause,
                        failing: true,
                        detail: m.detail.clone(),
                        since: m.since,
                    });
                }
            }
            None => {
                if m.rung {
                    bells.push(HealthBell {
                        cause,
                        failing: false,
                        detail: m.detail.clone(),
                        since: m.since,
                    });
                }
                m.failing_ticks = 0;
                m.since = None;
                m.rung = false;
            }
        }
    }
    (next, bells)
}

/// A failing doorbell for `cause`, decided at `rung_at`, that no notifier
/// took: it is marked unrung (and its cooldown forgotten), so the next tick
/// that sees the cause failing sends it again.
pub fn undelivered(memory: &mut HealthMemory, cause: HealthCause, rung_at: Timestamp) {
    if let Some(m) = memory
        .causes
        .iter_mut()
        .find(|m| m.cause == cause && m.rung && m.last_rung == Some(rung_at))
    {
        m.rung = false;
        m.last_rung = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minutes: u64) -> Timestamp {
        Timestamp::parse_rfc3339("2026-12-07T00:00:00Z")
            .expect("a valid time")
            .plus_seconds(minutes * 60)
    }

    fn fail(cause: HealthCause) -> Signal {
        Signal::Failing(cause, format!("{cause} broke"))
    }

    /// Runs `ticks` (each a list of signals, one minute apart) and returns
    /// every bell rung, with the minute it rang at.
    fn run(ticks: &[Vec<Signal>]) -> Vec<(u64, HealthBell)> {
        let mut memory = HealthMemory::default();
        let mut rung = Vec::new();
        for (minute, signals) in (0u64..).zip(ticks) {
            let (next, bells) = health_decide(&memory, signals, at(minute));
            memory = next;
            rung.extend(bells.into_iter().map(|b| (minute, b)));
        }
        rung
    }

    #[test]
    fn health_rings_once_per_cause() {
        let ticks: Vec<Vec<Signal>> = (0..100)
            .map(|_| vec![fail(HealthCause::Credentials)])
            .collect();
        let rung = run(&ticks);
        assert_eq!(rung.len(), 1, "{rung:?}");
        assert_eq!(rung[0].0, 0);
        assert!(rung[0].1.failing);
        assert_eq!(rung[0].1.title(), "[AFK-HEALTH] credentials failing");
        assert!(rung[0].1.body().contains("credentials broke"));
        assert_eq!(rung[0].1.loudness(), Loudness::Loud);
    }

    #[test]
    fn the_executor_rings_after_three_ticks_in_a_row() {
        let e = || vec![fail(HealthCause::Executor)];
        let ok = || vec![Signal::Working(HealthCause::Executor)];
        // Two failures, a success, two failures: never three in a row.
        assert!(run(&[e(), e(), ok(), e(), e()]).is_empty());
        // Ticks that saw nothing of it neither count nor reset.
        let rung = run(&[e(), vec![], e(), vec![], e()]);
        assert_eq!(rung.len(), 1);
        assert_eq!(rung[0].0, 4);
        assert_eq!(rung[0].1.since, Some(at(0)));
    }

    #[test]
    fn a_recovery_rings_quietly_once_and_only_after_a_failure_rang() {
        let e = || vec![fail(HealthCause::NothingEnrolled)];
        let ok = || vec![Signal::Working(HealthCause::NothingEnrolled)];
        let rung = run(&[ok(), e(), e(), ok(), ok()]);
        assert_eq!(rung.len(), 2, "{rung:?}");
        assert!(!rung[1].1.failing);
        assert_eq!(rung[1].0, 3);
        assert_eq!(rung[1].1.title(), "[AFK-HEALTH] nothing_enrolled recovered");
        assert_eq!(rung[1].1.loudness(), Loudness::Quiet);
        // An executor failure too short to ring recovers silently.
        let ex = || vec![fail(HealthCause::Executor)];
        assert!(run(&[ex(), ex(), vec![Signal::Working(HealthCause::Executor)]]).is_empty());
    }

    #[test]
    fn a_flapping_cause_rings_at_most_once_per_cooldown() {
        // Fails and recovers every other minute for a day.
        let ticks: Vec<Vec<Signal>> = (0..24 * 60)
            .map(|m| {
                if m % 2 == 0 {
                    vec![fail(HealthCause::Credentials)]
                } else {
                    vec![Signal::Working(HealthCause::Credentials)]
                }
            })
            .collect();
        let failing: Vec<u64> = run(&ticks)
            .into_iter()
            .filter(|(_, b)| b.failing)
            .map(|(m, _)| m)
            .collect();
        assert_eq!(failing, vec![0, 360, 720, 1080]);
    }

    #[test]
    fn failing_wins_within_a_tick_and_causes_are_independent() {
        let rung = run(&[vec![
            Signal::Working(HealthCause::Credentials),
            fail(HealthCause::Credentials),
            Signal::Working(HealthCause::Executor),
            fail(HealthCause::NothingEnrolled),
        ]]);
        let causes: Vec<HealthCause> = rung.iter().map(|(_, b)| b.cause).collect();
        assert_eq!(
            causes,
            vec![HealthCause::Credentials, HealthCause::NothingEnrolled]
        );
    }

    proptest::proptest! {
        /// Whatever the ticks saw, a cause rings failing at most once per
        /// cooldown, and every recovery follows a failure that rang.
        #[test]
        fn never_more_than_once_per_cooldown(
            ticks in proptest::collection::vec(proptest::collection::vec((0usize..3, proptest::bool::ANY), 0..4), 0..400)
        ) {
            let ticks: Vec<Vec<Signal>> = ticks
                .iter()
                .map(|t| t.iter().map(|&(c, bad)| {
                    let cause = HealthCause::ALL[c];
                    if bad { fail(cause) } else { Signal::Working(cause) }
                }).collect())
                .collect();
            let rung = run(&ticks);
            for cause in HealthCause::ALL {
                let mut last_failing: Option<u64> = None;
                let mut open = false;
                for (minute, bell) in rung.iter().filter(|(_, b)| b.cause == cause) {
                    if bell.failing {
                        proptest::prop_assert!(!open);
                        if let Some(last) = last_failing {
                            proptest::prop_assert!((minute - last) * 60 >= COOLDOWN_SECONDS);
                        }
                        last_failing = Some(*minute);
                        open = true;
                    } else {
                        proptest::prop_assert!(open);
                        open = false;
                    }
                }
            }
        }
    }

    #[test]
    fn only_refusals_and_unreadable_credentials_are_credential_failures() {
        let auth: Result<(), PortError> = Err(PortError::Auth {
            message: "cannot read the credential file /etc/afk/token: NotFound".into(),
        });
        assert!(matches!(
            tracker_signal(&auth),
            Some(Signal::Failing(HealthCause::Credentials, m)) if m.contains("/etc/afk/token")
        ));
        let slow: Result<(), PortError> = Err(PortError::Transient {
            message: "timeout".into(),
        });
        assert_eq!(tracker_signal(&slow), None);
        assert_eq!(
            tracker_signal(&Ok::<(), PortError>(())),
            Some(Signal::Working(HealthCause::Credentials))
        );
        assert!(matches!(
            executor_signal(&slow),
            Signal::Failing(HealthCause::Executor, _)
        ));
        assert!(matches!(
            enrolment_signal(false, 0),
            Signal::Failing(HealthCause::NothingEnrolled, _)
        ));
        assert_eq!(
            enrolment_signal(true, 0),
            Signal::Working(HealthCause::NothingEnrolled)
        );
        assert_eq!(
            enrolment_signal(false, 2),
            Signal::Working(HealthCause::NothingEnrolled)
        );
    }

    #[test]
    fn an_undelivered_doorbell_is_sent_again_next_tick() {
        let signals = [fail(HealthCause::Credentials)];
        let (mut memory, bells) = health_decide(&HealthMemory::default(), &signals, at(0));
        assert_eq!(bells.len(), 1);
        // Another tick's doorbell (a later time) is not undone.
        undelivered(&mut memory, HealthCause::Credentials, at(5));
        assert!(
            memory
                .causes
                .iter()
                .any(|m| m.cause == HealthCause::Credentials && m.rung)
        );
        undelivered(&mut memory, HealthCause::Credentials, at(0));
        let (memory, bells) = health_decide(&memory, &signals, at(1));
        assert_eq!(bells.len(), 1);
        let (_, bells) = health_decide(&memory, &signals, at(2));
        assert!(bells.is_empty());
    }

    #[test]
    fn cause_names_round_trip() {
        for c in HealthCause::ALL {
            assert_eq!(HealthCause::parse(c.as_str()), Some(c));
        }
        assert_eq!(HealthCause::parse("disk"), None);
    }
}
