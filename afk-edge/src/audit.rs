//! Audit lines: one per request that changes something or spends money,
//! on the `audit` tracing target, in one shape for every server, so an
//! operator can follow who did what from where with one filter.
//!
//! It writes what it is given: callers pass no secret (a token is never a
//! `who`; `token` is).

/// Writes one audit line: `who` (an identity, `token`, or `refused`), from
/// which peer address, `what` (method and path, or a verb), and the status
/// it was answered with.
pub fn line(who: &str, from: &str, what: &str, status: u16) {
    tracing::info!(target: "audit", who = %who, from = %from, what = %what, status, "audit");
}
