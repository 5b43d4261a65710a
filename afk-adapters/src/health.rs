//! Ringing the loop's health (`afk_core::health`): after each poll and
//! watch tick, what it saw is folded into what `AFK_STATE_FILE` remembers
//! (under its lock, with the repositories in flight), and the doorbells the
//! core's rule names are sent on every notifier. A failing cause that no
//! notifier took is marked unrung, so the next tick tries again; a recovery
//! is sent once.
//!
//! Without a state file nothing can be remembered between two CronJob
//! ticks, so nothing rings (it would ring at every tick): each failing
//! cause is a warning line instead (`action=health`), and the metrics carry
//! `afk_health_failing` either way.

use std::path::Path;

use afk_core::Timestamp;
use afk_core::health::{HealthBell, Signal, health_decide};
use afk_loop::TickReport;
use afk_loop::ports::Notifier;

/// Remembers where runs are in flight (`poll` says which tick `report` is)
/// and the tick's health, under the state file's lock; returns the
/// doorbells to ring.
///
/// # Errors
/// The state file cannot be had (named).
pub async fn remember(
    path: &Path,
    poll: bool,
    report: &TickReport,
    now: Timestamp,
) -> Result<Vec<HealthBell>, String> {
    crate::state::update(path, |state| {
        state.repos = afk_loop::remembered_repos(&state.repos, poll, report);
        let (health, bells) = health_decide(&state.health, &report.health, now);
        state.health = health;
        bells
    })
    .await
}

/// Sends each of `bells` on every notifier `notifiers` builds (built only
/// when there is something to send), logging each; a failing bell that no
/// notifier took is marked unrung in the state file at `path`, so the next
/// tick sends it again.
pub async fn ring(
    path: &Path,
    bells: Vec<HealthBell>,
    now: Timestamp,
    notifiers: impl FnOnce() -> Result<Vec<Box<dyn Notifier>>, String>,
) {
    if bells.is_empty() {
        return;
    }
    let notifiers = notifiers().unwrap_or_else(|e| {
        tracing::warn!(action = "health", "cannot build the notifiers: {e}");
        Vec::new()
    });
    let notifiers: Vec<&dyn Notifier> = notifiers.iter().map(AsRef::as_ref).collect();
    for bell in bells {
        let message = bell.message();
        let rung = afk_loop::ports::deliver_all(&notifiers, &message).await;
        for (name, e) in &rung.failed {
            tracing::warn!(
                action = "health",
                cause = bell.cause.as_str(),
                "{name} could not send the health doorbell: {e}"
            );
        }
        let delivered = rung.delivered.join(",");
        if bell.failing {
            tracing::error!(action = "health", cause = bell.cause.as_str(), delivered = %delivered,
                "{}: {}", message.title, bell.detail);
        } else {
            tracing::info!(action = "health", cause = bell.cause.as_str(), delivered = %delivered,
                "{}", message.title);
        }
        if bell.failing && delivered.is_empty() {
            let cause = bell.cause;
            let unrung = crate::state::update(path, |state| {
                afk_core::health::undelivered(&mut state.health, cause, now);
            })
            .await;
            if let Err(e) = unrung {
                tracing::warn!(
                    action = "health",
                    "cannot mark the health doorbell unrung: {e}"
                );
            }
        }
    }
}

/// Without a state file: one warning per cause the tick saw failing.
pub fn warn_unremembered(report: &TickReport) {
    let mut said = Vec::new();
    for signal in &report.health {
        if let Signal::Failing(cause, detail) = signal
            && !said.contains(cause)
        {
            said.push(*cause);
            tracing::warn!(
                action = "health",
                cause = cause.as_str(),
                "{cause} failing: {detail} (no doorbell: set AFK_STATE_FILE to a file kept between ticks and it rings once per cause)"
            );
        }
    }
}
