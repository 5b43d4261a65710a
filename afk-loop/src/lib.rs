//! The AFK loop: the poll tick and the watch tick, written once against the
//! ports, over the pure core's decisions.
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
//! Every tick has one shape, as a Kubernetes controller's reconcile: gather
//! the facts through the ports, ask the core for a decision
//! ([`afk_core::plan_dispatch`], [`afk_core::next_action`]), then perform
//! the effects that decision names, and nothing else. No rule is written
//! here: what to do is always the core's answer. The ticks log nothing
//! themselves: every decision, action and failure is an entry of the
//! [`TickReport`], which the binary logs.
//!
//! - [`ports`]: the traits the ticks reach the world through;
//! - [`poll`]: which ready issues start now, and their dispatch;
//! - [`watch`]: every run in flight driven one step;
//! - [`stop`]: a run stopped for a human (the stop label, `afk stop`,
//!   `afk halt`);
//! - [`runs`]: finding the runs in flight (the watcher's and `afk runs`'
//!   view);
//! - `land`: a run landing through a pull request (its facts, and opening,
//!   merging or handing it over for review);
//! - [`progress`]: writing the progress comment and finishing a recorded
//!   outcome (labels, doorbell, lock), shared by the watcher and the stop;
//! - [`report`]: the report's closed vocabulary.
//!
//! It does not talk to any service itself (the adapters do), decide policy
//! (the core does), or read the environment (the binaries do).

pub(crate) mod land;
pub mod poll;
pub mod ports;
pub mod progress;
pub mod report;
pub mod runs;
pub mod stop;
pub mod watch;

pub use poll::{poll_disabled, poll_tick, watch_disabled};
pub use ports::{Clock, Executor, Notifier, StageProbe, Tracker};
pub use report::{About, Entry, Level, ReportAction, TickReport};
pub use runs::{Run, find_runs, remembered_repos};
pub use stop::{StopTarget, stop_runs};
pub use watch::watch_tick;

use afk_core::Timestamp;

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
