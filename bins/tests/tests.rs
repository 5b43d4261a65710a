//! The one integration-test binary of the `bins` crate (one binary per crate
//! keeps link times down on two cores).

// A test that meets a broken fixture or a missing tool should stop loudly:
// helpers outside `#[test]` functions panic on purpose.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod architecture;
mod breakglass_bin;
mod campaign;
mod gateway_bin;
mod kube_bins;
mod loop_bins;
mod manifests;
mod policy_cli;
mod processes;
mod real_agents;
mod real_gateway;
mod real_loop;
mod scratch;
mod world;
