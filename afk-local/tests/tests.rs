//! The local executor on this machine: real git repositories, real process
//! trees under `afk-reaper` (built by `afk-process`; `cargo test
//! --workspace` builds it), a scripted agent command in place of a CLI (the
//! real CLIs drive it end to end in `bins`' tests).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod contract;
mod executor;
mod world;
