//! The one integration-test binary of `breakglass`: a real server on
//! 127.0.0.1, the scripted agent and ssh of `fixtures/breakglass/` as real
//! child processes, and an SSE client reading the wire format.

// Helpers outside `#[test]` functions panic on a broken fixture on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod hostile;
mod routes;
mod sessions;
