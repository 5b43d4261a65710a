//! The pure core of afk.
//!
//! Everything in this crate is deterministic: inputs in, decision out. It reads
//! no clock, no environment, no files and no network; the binaries and the
//! adapters gather the facts and hand them in as plain values (the current
//! time included). That is what makes the policy exhaustively testable and why
//! a policy change shows up in a snapshot.
//!
//! What lives here:
//! - [`types`]: the vocabulary (issues, thread and CI status, phases, times);
//! - [`config`]: the one parser for the policy settings, from env or a
//!   ConfigMap map, disabled by default;
//! - [`dispatch`]: which ready issues may start now;
//! - [`machine`]: what to do next with a run in flight;
//! - [`record`]: the run record the loop keeps on the issue;
//! - [`ports`]: the values that cross the ports (issues, comments, commits,
//!   thread liveness) and the errors every port call can end in (the traits
//!   themselves live with the ticks, in `afk-loop`);
//! - [`trust`]: who may arm an issue and whose comments are the task, over
//!   facts the tracker gathered;
//! - [`comments`]: which of an issue's comments afk reads (the progress
//!   comment beside its label anchors, in a bounded number of reads) and
//!   what those reads prove;
//! - [`ci`]: the CI/deploy stages and their pure fold into one verdict;
//! - [`doorbell`]: terminal doorbells and fanning them out to notifiers;
//! - [`land`]: how a change lands (a push, or a pull request afk opens and
//!   merges), the run's branch, what a pull request's state means;
//! - [`health`]: when the loop itself cannot work, which doorbell rings, once
//!   per cause;
//! - [`prompt`]: the versioned text afk sends to agents;
//! - [`visible`]: the text of markdown that renders visibly (what the
//!   labeller saw is the task);
//!
//! What deliberately does not live here: any wire format of an external
//! service, any I/O, and any serde attribute (the run record's own JSON form
//! belongs to the `checklist` crate, which writes the progress comment).

pub mod ci;
pub mod comments;
pub mod config;
pub mod dispatch;
pub mod doorbell;
pub mod health;
pub mod land;
pub mod machine;
pub mod ports;
pub mod prompt;
pub mod record;
pub mod trust;
pub mod types;
pub mod visible;

pub use config::{Config, ConfigError, ConfigErrors};
pub use dispatch::{
    Decision, DispatchPlan, Skip, SkipReason, hold_for_capacity, plan_dispatch, select_dispatchable,
};
pub use machine::{Action, ActionKind, Escalation, RunState, Turn, WaitReason, next_action};
pub use record::{Outcome, OutcomeKind, RunRecord};
pub use types::{
    CiStatus, Cost, Issue, LabelTrust, Phase, ThreadStatus, Timestamp, TimestampError,
};
