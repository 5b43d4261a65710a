//! The one integration-test binary of `afk-adapters`: contract suites run
//! against the in-memory fakes and against the real adapters talking to
//! loopback servers that speak the real wire format.

// Helpers outside `#[test]` functions panic on a broken fixture on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ci_wire;
mod common;
mod executor_contract;
mod github_app;
mod github_conformance;
mod github_recorded;
mod github_wire;
mod notifier_contract;
mod notify_wire;
mod setup_labels;
mod stage_contract;
mod t3_fixture;
mod t3_wire;
mod tracker_contract;
