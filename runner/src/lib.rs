//! The checklist runner behind `afk run`: a markdown backlog
//! (`SUT-CHECKLIST.md`) worked in rounds by local agent processes, on one
//! machine, with no cluster and no tracker.
//!
//! The crate is split the way the AFK loop is, decisions first:
//!
//! - [`decide`] is pure (no files, processes, clock or environment; a tidy
//!   test checks it): which rows the next round takes, whether an agent's run
//!   finished its item, which tiers are due a report, counts, prompt
//!   templates, and synthesised rows.
//! - [`campaign`] validates everything a run needs before any agent starts
//!   and builds the prompts; [`rounds`] performs the decisions: it marks rows,
//!   starts agents ([`agent`], on the `afk-process` toolkit), judges each as
//!   it ends and records it (`record`, through the checklist's one writer,
//!   `writer`), and keeps the state files ([`state`]); [`reports`] asks for tier
//!   reports and, in infinite mode, new rows; [`recovery`] tidies after a
//!   run that died.
//! - [`views`] reads the state back for `afk status`, `history`, `dashboard`
//!   and `cancel`; [`findings`] is the ledger agents write with `afk finding`.
//!
//! Progress is reported as typed [`Event`]s that the binary renders; this
//! crate never writes to a terminal. It does not parse arguments (the `afk`
//! binary turns them into [`campaign::Settings`]) and it does not share the
//! AFK loop's ticks: a campaign is one long process, not a CronJob.

pub mod agent;
pub mod campaign;
pub mod decide;
pub mod event;
pub mod files;
pub mod findings;
mod live;
mod record;
pub mod recovery;
pub mod reports;
pub mod rounds;
pub mod state;
pub mod views;
mod writer;

pub use event::{Event, Outcome};
pub use rounds::run;

/// Why a runner command failed; the binary maps the variant to its exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Bad input or settings (a missing file, a checklist with problems, an
    /// unknown placeholder, a second runner): nothing was started or changed.
    #[error("{0}")]
    Input(String),
    /// Something failed while working (a write, a process, the runtime):
    /// what had been done is recorded, and the state says where it stopped.
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// An input error from anything printable.
    pub fn input(message: impl Into<String>) -> Error {
        Error::Input(message.into())
    }

    /// A working failure from anything printable.
    pub fn failed(message: impl Into<String>) -> Error {
        Error::Failed(message.into())
    }
}

/// Now, as RFC 3339 UTC text (the runner's state files and findings).
pub fn now_rfc3339() -> String {
    now().to_rfc3339()
}

fn now() -> afk_core::Timestamp {
    afk_core::Timestamp::from_offset_date_time(time::OffsetDateTime::now_utc())
}

/// `path` relative to the campaign directory `root`, for messages.
fn rel(root: &std::path::Path, path: &std::path::Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}
