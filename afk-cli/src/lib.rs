//! The operator's formats: what `afk runs` and `afk policy` print, and what
//! `afk policy` reads.
//!
//! - [`runs`]: the runs in flight as a table, JSON, or one in full (the
//!   watcher's own discovery, `afk_loop::find_runs`, finds them);
//! - [`policy`]: the JSON formats of `afk policy`, the policy developer's
//!   tool (inputs read by private serde structs, every error naming its
//!   field), around the core's pure decisions.
//!
//! Pure text from values and values from text: it reads no file, no
//! environment and no network (the binary does), and it decides nothing
//! (the core does).

pub mod policy;
pub mod runs;
