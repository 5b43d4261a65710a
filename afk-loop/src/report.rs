//! What a tick did, as values: every decision, action and failure is one
//! [`Entry`] with a [`ReportAction`] from a closed vocabulary; the binary logs
//! each as one JSON line (`action` is [`ReportAction::as_str`]).

use std::fmt;

use afk_core::machine::ActionKind;

/// How serious a report entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A decision or action.
    Info,
    /// Something a human should look at that did not fail the tick.
    Warn,
    /// A failure: the tick exits non-zero.
    Error,
}

/// What an entry is about: the closed vocabulary of the `action` log field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReportAction {
    /// The tick could not start (its adapters could not be built).
    Start,
    /// The configuration disables the tick.
    Disabled,
    /// The kill switch pauses corrective turns.
    Paused,
    /// The tick deadline left work for the next tick.
    Deadline,
    /// A read failed.
    Read,
    /// The ready label was not applied by a trusted person.
    Untrusted,
    /// The policy passed an issue over.
    Skip,
    /// An issue was (or would be, or could not be) dispatched.
    Dispatch,
    /// An issue carries the in-progress label but no readable run record.
    NoRecord,
    /// Driving a run failed.
    Run,
    /// The run waits this tick.
    Wait,
    /// The run landed: the issue is closed.
    CloseSuccess,
    /// A corrective turn was (or would be) sent.
    FixForward,
    /// Pushed, but CI stayed red: frozen for a human.
    FreezeEscalate,
    /// Nothing pushed: handed to a human.
    EscalatePrepush,
    /// A doorbell rang, or a notifier failed.
    Ring,
    /// A run was stopped (the stop label, `afk stop`, `afk halt`).
    Stop,
    /// The tracker's request budget is below the floor: nothing new starts.
    RateFloor,
    /// A recorded outcome's clean-up was finished.
    Finish,
    /// A run's pull request was opened or adopted.
    OpenPullRequest,
    /// A run's pull request was merged (or the merge was refused).
    Merge,
    /// A run's pull request was handed over for a human's review.
    HandOverForReview,
}

impl ReportAction {
    /// Every action.
    pub const ALL: [ReportAction; 22] = [
        ReportAction::Start,
        ReportAction::Disabled,
        ReportAction::Paused,
        ReportAction::Deadline,
        ReportAction::Read,
        ReportAction::Untrusted,
        ReportAction::Skip,
        ReportAction::Dispatch,
        ReportAction::NoRecord,
        ReportAction::Run,
        ReportAction::Wait,
        ReportAction::CloseSuccess,
        ReportAction::FixForward,
        ReportAction::FreezeEscalate,
        ReportAction::EscalatePrepush,
        ReportAction::Ring,
        ReportAction::Stop,
        ReportAction::RateFloor,
        ReportAction::Finish,
        ReportAction::OpenPullRequest,
        ReportAction::Merge,
        ReportAction::HandOverForReview,
    ];

    /// Its name in the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportAction::Start => "start",
            ReportAction::Disabled => "disabled",
            ReportAction::Paused => "paused",
            ReportAction::Deadline => "deadline",
            ReportAction::Read => "read",
            ReportAction::Untrusted => "untrusted",
            ReportAction::Skip => "skip",
            ReportAction::Dispatch => "dispatch",
            ReportAction::NoRecord => "no_record",
            ReportAction::Run => "run",
            ReportAction::Wait => "wait",
            ReportAction::CloseSuccess => "close_success",
            ReportAction::FixForward => "fix_forward",
            ReportAction::FreezeEscalate => "freeze_escalate",
            ReportAction::EscalatePrepush => "escalate_prepush",
            ReportAction::Ring => "ring",
            ReportAction::Stop => "stop",
            ReportAction::RateFloor => "rate_floor",
            ReportAction::Finish => "finish",
            ReportAction::OpenPullRequest => "open_pull_request",
            ReportAction::Merge => "merge",
            ReportAction::HandOverForReview => "hand_over_review",
        }
    }
}

impl fmt::Display for ReportAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl From<ActionKind> for ReportAction {
    fn from(kind: ActionKind) -> Self {
        match kind {
            ActionKind::Wait => ReportAction::Wait,
            ActionKind::CloseSuccess => ReportAction::CloseSuccess,
            ActionKind::FixForward => ReportAction::FixForward,
            ActionKind::FreezeEscalate => ReportAction::FreezeEscalate,
            ActionKind::EscalatePrepush => ReportAction::EscalatePrepush,
            ActionKind::Stop => ReportAction::Stop,
            ActionKind::Finish => ReportAction::Finish,
            ActionKind::OpenPullRequest => ReportAction::OpenPullRequest,
            ActionKind::Merge => ReportAction::Merge,
            ActionKind::HandOverForReview => ReportAction::HandOverForReview,
        }
    }
}

/// One line of a tick's report (the binary logs each as one JSON line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Severity.
    pub level: Level,
    /// The repository, when the entry is about one.
    pub repo: Option<String>,
    /// The issue, when the entry is about one.
    pub issue: Option<u64>,
    /// The thread, when known.
    pub thread_id: Option<String>,
    /// What was decided or done.
    pub action: ReportAction,
    /// Why, for humans.
    pub message: String,
}

/// What an entry is about: the whole tick, a repository, an issue, or a run
/// (an issue and its thread).
#[derive(Debug, Clone, Copy)]
pub struct About<'a> {
    repo: Option<&'a str>,
    issue: Option<u64>,
    thread: Option<&'a str>,
}

impl<'a> About<'a> {
    /// The whole tick.
    pub const TICK: About<'static> = About {
        repo: None,
        issue: None,
        thread: None,
    };

    /// One repository.
    pub fn repo(repo: &'a str) -> Self {
        About {
            repo: Some(repo),
            ..About::TICK
        }
    }

    /// One issue.
    pub fn issue(repo: &'a str, issue: u64) -> Self {
        About {
            repo: Some(repo),
            issue: Some(issue),
            thread: None,
        }
    }

    /// One run: an issue and its thread.
    pub fn run(repo: &'a str, issue: u64, thread: &'a str) -> Self {
        About {
            repo: Some(repo),
            issue: Some(issue),
            thread: Some(thread),
        }
    }
}

/// What a tick did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TickReport {
    /// The kill switch (poller) or an empty allowlist stopped the tick before
    /// any work.
    pub disabled: bool,
    /// Issues dispatched (`repo#n`).
    pub dispatched: Vec<String>,
    /// Issues passed over.
    pub skipped: usize,
    /// Every decision, action, warning and failure, in order.
    pub entries: Vec<Entry>,
    /// What the tick saw of the loop's own health (credentials, executor,
    /// enrolment), for `afk_core::health::health_decide`.
    pub health: Vec<afk_core::health::Signal>,
}

impl TickReport {
    /// Entries at error level.
    pub fn failures(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.level == Level::Error)
    }

    /// Whether any part of the tick failed.
    pub fn failed(&self) -> bool {
        self.failures().next().is_some()
    }

    /// Adds an entry.
    pub fn record(
        &mut self,
        level: Level,
        about: About<'_>,
        action: ReportAction,
        message: impl Into<String>,
    ) {
        self.entries.push(Entry {
            level,
            repo: about.repo.map(str::to_owned),
            issue: about.issue,
            thread_id: about.thread.map(str::to_owned),
            action,
            message: message.into(),
        });
    }

    /// Notes what a tracker answer says of the credentials
    /// (`afk_core::health::tracker_signal`).
    pub fn saw_tracker<T>(&mut self, answer: &afk_core::ports::PortResult<T>) {
        self.health.extend(afk_core::health::tracker_signal(answer));
    }

    /// Notes each notifier that could not deliver `what` (a doorbell), then
    /// what `action` rang and where.
    ///
    /// # Errors
    /// Transient when no notifier delivered it: it rings again next tick
    /// (nothing is recorded as rung).
    pub fn rang(
        &mut self,
        about: About<'_>,
        action: ReportAction,
        what: &str,
        rung: &crate::ports::RingOutcome,
    ) -> afk_core::ports::PortResult<()> {
        for (name, e) in &rung.failed {
            self.warn(
                about,
                ReportAction::Ring,
                format!("{name} could not ring: {e}"),
            );
        }
        if !rung.rung() {
            return Err(afk_core::ports::PortError::Transient {
                message: format!("{what} failed on every notifier; it rings again next tick"),
            });
        }
        self.info(
            about,
            action,
            format!("{what} via {}", rung.delivered.join(", ")),
        );
        Ok(())
    }

    /// Notes what a failed tracker call says of the credentials.
    pub fn saw_tracker_error(&mut self, e: &afk_core::ports::PortError) {
        self.health
            .extend(afk_core::health::tracker_error_signal(e));
    }

    /// Notes what an executor read says of the executor
    /// (`afk_core::health::executor_signal`).
    pub fn saw_executor<T>(&mut self, answer: &afk_core::ports::PortResult<T>) {
        self.health.push(afk_core::health::executor_signal(answer));
    }

    /// Adds a decision or action.
    pub fn info(&mut self, about: About<'_>, action: ReportAction, message: impl Into<String>) {
        self.record(Level::Info, about, action, message);
    }

    /// Adds something a human should look at.
    pub fn warn(&mut self, about: About<'_>, action: ReportAction, message: impl Into<String>) {
        self.record(Level::Warn, about, action, message);
    }

    /// Adds a failure.
    pub fn error(&mut self, about: About<'_>, action: ReportAction, message: impl Into<String>) {
        self.record(Level::Error, about, action, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_a_distinct_log_name() {
        let mut names: Vec<&str> = ReportAction::ALL.iter().map(|a| a.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ReportAction::ALL.len());
        // The machine's actions log under the names the machine gives them.
        for kind in [
            ActionKind::Wait,
            ActionKind::CloseSuccess,
            ActionKind::FixForward,
            ActionKind::FreezeEscalate,
            ActionKind::EscalatePrepush,
            ActionKind::Stop,
            ActionKind::Finish,
            ActionKind::OpenPullRequest,
            ActionKind::Merge,
            ActionKind::HandOverForReview,
        ] {
            assert_eq!(ReportAction::from(kind).as_str(), kind.as_str());
        }
    }

    #[test]
    fn an_entry_carries_what_it_is_about() {
        let mut report = TickReport::default();
        report.warn(
            About::run("infra", 7, "t-1"),
            ReportAction::Ring,
            "slack down",
        );
        report.error(About::repo("web"), ReportAction::Read, "403");
        assert_eq!(
            report.entries[0],
            Entry {
                level: Level::Warn,
                repo: Some("infra".into()),
                issue: Some(7),
                thread_id: Some("t-1".into()),
                action: ReportAction::Ring,
                message: "slack down".into(),
            }
        );
        assert_eq!(report.entries[1].issue, None);
        assert!(report.failed());
        assert_eq!(report.failures().count(), 1);
    }
}
