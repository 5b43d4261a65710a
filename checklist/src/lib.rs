//! Pure text for afk: what the loop writes on an issue and reads back.
//!
//! - [`phase`]: the progress checklist, rendered byte-for-byte stably;
//! - [`marker`]: the run record as one hidden `<!-- afk-run v1 {json} -->`
//!   line under the checklist, and reading it back strictly;
//! - [`sut`]: the SUT backlog (`SUT-CHECKLIST.md`) of the checklist runner,
//!   parsed with line-numbered diagnostics and written back one cell at a
//!   time (the runner's decisions over it are `runner::decide`);
//! - [`runs`]: the runs in flight as a table, JSON, or one in full;
//! - [`policy`]: the JSON formats of `afk policy` (inputs read by private
//!   serde structs, every error naming its field), around the pure policy.
//!
//! This crate does no I/O: it turns values into text and text into values
//! (every format afk writes or reads that is its own).
//! Finding, creating and editing the comment on GitHub is the tracker
//! adapter's job; deciding what the record should say is the core's.

pub mod marker;
pub mod phase;
pub mod policy;
pub mod runs;
pub mod sut;

pub use marker::{MarkerError, comment_body, extract_record, has_marker, marker_line};
pub use phase::{ChecklistMeta, render};

use afk_core::tick::ProgressCodec;
use afk_core::{Phase, RunRecord};

/// The progress comment's format, as the ticks' [`ProgressCodec`] port: the
/// checklist for the phase, then the hidden run record.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProgressComment;

impl ProgressCodec for ProgressComment {
    fn body(
        &self,
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
            && outcome.kind == afk_core::OutcomeKind::Stopped
        {
            text.push_str(&format!(
                "\n_Stopped by {}: the agent was interrupted; a human owns this issue now._\n",
                outcome.by.as_deref().unwrap_or("an unknown account")
            ));
        }
        comment_body(&text, record)
    }

    fn record(&self, body: &str) -> Result<Option<RunRecord>, String> {
        extract_record(body).map_err(|e| e.to_string())
    }
}
