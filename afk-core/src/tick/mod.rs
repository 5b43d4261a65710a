//! The poll tick and the watch tick, written once against the ports.
//!
//! A CronJob may run a tick twice, or not at all, and a pod can die at any
//! instruction, so both ticks are safe to repeat and to cut short anywhere:
//!
//! - **poll**: the progress comment with its run record first (found by its
//!   marker before one is created, so the dispatch time is durable before the
//!   agent starts), then the thread (deterministic id: a re-run finds it), and
//!   the in-progress label **last**, so a failed dispatch never leaves a lock;
//! - **watch**: a terminal outcome is written to the run record first, then
//!   the doorbell rings, then `notified` is recorded, and the in-progress
//!   label goes last (while it is on, the next tick finds the run and finishes
//!   the cleanup without deciding again); a corrective turn is sent before it
//!   is recorded, with a step number that makes a re-send a no-op.
//!
//! Decisions are values ([`crate::next_action`], [`crate::plan_dispatch`]); the
//! ticks perform one effect per decision. They log nothing themselves: every
//! decision, action and failure is an entry of the [`TickReport`], which the
//! binary logs.
//!
//! - [`poll`]: which ready issues start now, and their dispatch;
//! - [`watch`]: every run in flight driven one step;
//! - [`stop`]: a run stopped for a human (the stop label, `afk stop`, `afk halt`);
//! - [`report`]: the report's closed vocabulary.

mod poll;
pub mod report;
mod stop;
mod watch;

pub use poll::{poll_disabled, poll_tick, watch_disabled};
pub use report::{About, Entry, Level, ReportAction, TickReport};
pub use stop::{StopTarget, stop_runs};
pub use watch::{Run, find_runs, watch_tick};

use crate::ci::StageProbe;
use crate::doorbell::Notifier;
use crate::ports::{Executor, Tracker};
use crate::record::RunRecord;
use crate::types::{Phase, Timestamp};

/// The clock, as a port: the core never reads time itself.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// How the progress comment is written and read back (implemented by the
/// `checklist` crate; a port so that the core does not depend on it).
pub trait ProgressCodec: Send + Sync {
    /// The whole comment body: the visible checklist for `phase`, then the
    /// hidden run record.
    fn body(
        &self,
        phase: Phase,
        repo: &str,
        issue: u64,
        default_branch: &str,
        record: &RunRecord,
    ) -> String;

    /// The run record in a comment body; `Ok(None)` when it has none, `Err`
    /// with a reason when its marker cannot be read.
    fn record(&self, body: &str) -> Result<Option<RunRecord>, String>;
}

/// Everything a tick talks to.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    /// The issue tracker.
    pub tracker: &'a dyn Tracker,
    /// The agent runtime.
    pub executor: &'a dyn Executor,
    /// The CI stages, in order (build, deploy, rollout).
    pub stages: &'a [&'a dyn StageProbe],
    /// The doorbells.
    pub notifiers: &'a [&'a dyn Notifier],
    /// The progress comment's format.
    pub codec: &'a dyn ProgressCodec,
    /// The clock.
    pub clock: &'a dyn Clock,
}

impl std::fmt::Debug for Ports<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// Options of one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickOptions {
    /// Decide and report, but write nothing and dispatch nothing.
    pub dry_run: bool,
    /// Start no new work after this time.
    pub deadline: Option<Timestamp>,
}

fn past(deadline: Option<Timestamp>, now: Timestamp) -> bool {
    deadline.is_some_and(|d| now >= d)
}
