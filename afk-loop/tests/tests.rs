//! The one integration-test binary of `afk-loop`: the ticks and their
//! orchestration over the in-memory fakes.

// Helpers outside `#[test]` functions panic on a broken fixture on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod land;
mod poll;
mod stages;
mod watch;
