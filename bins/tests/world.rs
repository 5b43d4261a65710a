//! The simulated world of `bins::sim_world`, as the tests use it.

pub use bins::sim_world::{REPO, World, actions};
