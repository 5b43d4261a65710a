//! Pure text for afk: what the loop writes on an issue and reads back.
//!
//! - [`phase`]: the progress checklist, rendered byte-for-byte stably;
//! - [`marker`]: the run record as one hidden `<!-- afk-run v1 {json} -->`
//!   line under the checklist, and reading it back strictly;
//! - [`sut`]: the SUT backlog (`SUT-CHECKLIST.md`) of the checklist runner,
//!   parsed with line-numbered diagnostics and written back one cell at a
//!   time (the runner's decisions over it are `runner::decide`);
//!
//! This crate does no I/O: it turns values into text and text into values
//! (the progress comment and the backlog; the operator commands' own output
//! formats are `afk-cli`'s).
//! Finding, creating and editing the comment on GitHub is the tracker
//! adapter's job; deciding what the record should say is the core's.

pub mod marker;
pub mod phase;
pub mod sut;

pub use marker::{MarkerError, comment_body, extract_record, has_marker, marker_line};
pub use phase::{ChecklistMeta, render};

use afk_core::{OutcomeKind, Phase, RunRecord};

/// The whole progress comment for a run: the visible checklist for `phase`
/// (with a line saying who stopped the run, once stopped), then the hidden
/// run record.
pub fn progress_body(
    phase: Phase,
    repo: &str,
    issue: u64,
    default_branch: &str,
    record: &RunRecord,
) -> String {
    let meta = ChecklistMeta {
        repo: Some(repo.to_owned()),
        issue: Some(issue),
        thread_id: Some(record.thread_id.clone()),
        fix_forward_attempts: record.fix_forward_attempts,
        default_branch: Some(default_branch.to_owned()),
    };
    let mut text = render(phase, &meta);
    if let Some(outcome) = &record.outcome
        && outcome.kind == OutcomeKind::Stopped
    {
        text.push_str(&format!(
            "\n_Stopped by {}: the agent was interrupted; a human owns this issue now._\n",
            outcome.by.as_deref().unwrap_or("an unknown account")
        ));
    }
    comment_body(&text, record)
}
