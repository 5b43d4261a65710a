//! The simulated world of `afk_demo::world`, as the tests use it.

pub use afk_demo::world::{REPO, World};
