//! The one integration-test binary of `runner`: agents as real child
//! processes, and whole runs driven through the library with their events
//! asserted as values.

// Helpers outside `#[test]` functions panic on a broken fixture on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agents;
mod runs;
mod scratch;
