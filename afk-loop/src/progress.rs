//! The effects every run ends with, shared by the watcher and the stop:
//! writing the progress comment (only when its text changed), and finishing
//! a recorded outcome (labels and issue state, the doorbell, the lock last).
//! Every step is idempotent: a tick that dies anywhere in here is finished
//! by the next one, which finds the outcome recorded and never decides again.

use afk_core::Config;
use afk_core::ci::CiVerdict;
use afk_core::doorbell::Doorbell;
use afk_core::ports::PortResult;
use afk_core::record::OutcomeKind;
use afk_core::record::progress_phase;
use afk_core::types::Phase;

use crate::ports::ring_all;
use crate::report::{About, ReportAction, TickReport};
use crate::runs::Run;
use crate::{Ports, TickOptions};

/// Writes the progress comment for `phase` when its text changed; a tick
/// that changes nothing makes no write. Returns whether it wrote.
pub(crate) async fn write(
    ports: &Ports<'_>,
    run: &mut Run,
    branch: &str,
    phase: Phase,
    options: &TickOptions,
) -> PortResult<bool> {
    let body = checklist::progress_body(
        phase,
        &run.issue.repo,
        run.issue.number,
        branch,
        &run.record,
    );
    if body == run.comment.body || options.dry_run {
        return Ok(false);
    }
    ports
        .tracker
        .update_comment(&run.issue.repo, run.comment.id, &body)
        .await?;
    run.comment.body = body;
    Ok(true)
}

/// Finishes a recorded outcome: labels and issue state, the doorbell (then
/// `notified` recorded), and the in-progress label last.
pub(crate) async fn finish(
    ports: &Ports<'_>,
    config: &Config,
    options: &TickOptions,
    run: &mut Run,
    branch: &str,
    verdict: Option<&CiVerdict>,
    report: &mut TickReport,
) -> PortResult<()> {
    if options.dry_run {
        return Ok(());
    }
    let Some(outcome) = run.record.outcome.clone() else {
        return Ok(());
    };
    let (repo, number) = (run.issue.repo.clone(), run.issue.number);
    let tracker = ports.tracker;
    match outcome.kind {
        OutcomeKind::Done => {
            if run.issue.open {
                tracker.close_issue(&repo, number).await?;
                run.issue.open = false;
            }
        }
        OutcomeKind::NeedsHuman | OutcomeKind::Frozen | OutcomeKind::Stopped => {
            // The ready label goes too, or the next poll dispatches it again.
            tracker
                .remove_label(&repo, number, &config.ready_label)
                .await?;
            if outcome.kind == OutcomeKind::Stopped {
                tracker
                    .remove_label(&repo, number, &config.stop_label)
                    .await?;
            }
            tracker
                .add_label(&repo, number, &config.ready_for_human_label)
                .await?;
            // A frozen or handed-back run's issue is reopened for its
            // human; a stopped one is left as a person left it (a person
            // who closed it meant it).
            if !run.issue.open && outcome.kind != OutcomeKind::Stopped {
                tracker.reopen_issue(&repo, number).await?;
                run.issue.open = true;
            }
        }
    }
    if !run.record.notified {
        let bell = Doorbell {
            by: outcome.by.clone(),
            kind: outcome.kind,
            repo: repo.clone(),
            issue: number,
            reason: outcome.reason.clone(),
            thread_link: ports.executor.thread_link(&run.record.thread_id),
            cost: run.record.cost,
        };
        let rung = ring_all(ports.notifiers, &bell).await;
        let about = About::run(&repo, number, &run.record.thread_id);
        report.rang(about, ReportAction::Ring, &bell.title(), &rung)?;
        run.record.notified = true;
        let phase = progress_phase(&run.record, verdict);
        write(ports, run, branch, phase, options).await?;
    }
    // The run's pull request is left as it is (a human may be reviewing
    // it), only afk's own labels come off it.
    if let Some(pull) = run.record.landing.as_ref().and_then(|l| l.pull_request) {
        for label in [&config.in_progress_label, &config.ready_for_review_label] {
            tracker.remove_label(&repo, pull, label).await?;
        }
    }
    // Last: while the label is on, the next tick comes back to finish.
    tracker
        .remove_label(&repo, number, &config.in_progress_label)
        .await?;
    Ok(())
}
