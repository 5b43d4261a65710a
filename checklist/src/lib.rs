//! Pure text for afk: what the loop writes on an issue and reads back.
//!
//! - [`phase`]: the progress checklist, rendered byte-for-byte stably;
//! - [`marker`]: the run record as one hidden `<!-- afk-run v1 {json} -->`
//!   line under the checklist, and reading it back strictly.
//!
//! This crate does no I/O: it turns values into text and text into values.
//! Finding, creating and editing the comment on GitHub is the tracker
//! adapter's job; deciding what the record should say is the core's.

pub mod marker;
pub mod phase;

pub use marker::{MarkerError, comment_body, extract_record, has_marker, marker_line};
pub use phase::{ChecklistMeta, render};
