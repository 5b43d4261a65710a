//! The code behind afk's thin binaries.
//!
//! Each binary in `src/bin/` parses its arguments, builds what it needs, calls
//! one function from here, and maps the result to an exit code. Nothing here
//! decides policy: that is `afk-core`'s. This crate is where I/O (standard
//! input and output, files, the environment) is allowed.

pub mod breakglass_cmd;
pub mod campaign_cmd;
pub mod loop_cmd;
pub mod runs;

/// Resolves on SIGTERM or Ctrl-C (never, when the handlers cannot be set:
/// the server then runs until killed).
pub async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        _ => std::future::pending().await,
    }
}

/// What `--version` says: the release and the commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("AFK_COMMIT"),
    ")"
);

/// Exit codes shared by every afk binary.
pub mod exit {
    /// The command ran.
    pub const OK: u8 = 0;
    /// The command ran but some part of it failed (the rest was processed).
    pub const PARTIAL: u8 = 1;
    /// Bad input or configuration: nothing was done.
    pub const BAD_INPUT: u8 = 2;
}
