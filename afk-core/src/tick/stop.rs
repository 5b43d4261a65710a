//! Stopping runs: the stop label (the watcher), `afk stop` and `afk halt`
//! all go through [`stop`], which interrupts the agent's turn and stops its
//! session before the run is recorded as `stopped` and handed back like
//! every hand-back (labels, doorbell, lock removed last).

use super::watch::{Run, find_runs, finish, phase_for, write};
use super::{About, Ports, ReportAction, TickOptions, TickReport};
use crate::config::Config;
use crate::ports::{ExecutorSnapshot, PortResult, WatchedThread};
use crate::record::Outcome;

/// Stops a run for a human: the agent's turn is interrupted and its session
/// stopped, the run recorded as `stopped` with who stopped it (`by`, or the
/// stop label's actor), then finished like every hand-back. The watcher runs
/// it for the stop label; `afk stop` and `afk halt` run it too (one path).
#[allow(clippy::too_many_arguments)]
pub(super) async fn stop(
    ports: &Ports<'_>,
    config: &Config,
    options: &TickOptions,
    snapshot: &ExecutorSnapshot,
    run: &mut Run,
    branch: &str,
    by: Option<String>,
    report: &mut TickReport,
) -> PortResult<()> {
    let (repo, number) = (run.issue.repo.clone(), run.issue.number);
    let by = match by {
        Some(by) => Some(by),
        None => {
            ports
                .tracker
                .label_trust(&repo, number, &config.stop_label)
                .await?
                .actor
        }
    };
    let outcome = Outcome::stopped(by);
    report.info(
        About::run(&repo, number, &run.record.thread_id),
        ReportAction::Stop,
        if options.dry_run {
            format!("dry run: would stop the run ({})", outcome.reason)
        } else {
            outcome.reason.clone()
        },
    );
    if options.dry_run {
        return Ok(());
    }
    ports
        .executor
        .stop_thread(snapshot, &run.record.thread_id, ports.clock.now())
        .await?;
    run.record.outcome = Some(outcome);
    let phase = phase_for(&run.record, None);
    write(ports, run, branch, phase, options).await?;
    finish(ports, config, options, run, branch, None, report).await
}

/// Which runs `afk stop` and `afk halt` stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopTarget {
    /// One run, by its issue (`repo#n`; the repository as allowlisted or as
    /// `owner/name`).
    One {
        /// The repository.
        repo: String,
        /// The issue number.
        issue: u64,
    },
    /// Every run in flight.
    All,
}

/// `afk stop` and `afk halt`: applies the stop label to the chosen runs in
/// flight, then stops each at once with the watcher's own stopping code.
/// `by` names the operator. A run that is not in flight is an error entry.
pub async fn stop_runs(
    ports: &Ports<'_>,
    config: &Config,
    options: &TickOptions,
    target: &StopTarget,
    by: &str,
) -> TickReport {
    let mut report = TickReport::default();
    let runs = find_runs(ports.tracker, ports.codec, config, &mut report).await;
    let chosen: Vec<Run> = runs
        .into_iter()
        .filter(|r| match target {
            StopTarget::All => true,
            StopTarget::One { repo, issue } => {
                r.issue.number == *issue && crate::types::same_repo(&r.issue.repo, repo)
            }
        })
        .collect();
    if let (StopTarget::One { repo, issue }, true) = (target, chosen.is_empty()) {
        report.error(
            About::issue(repo, *issue),
            ReportAction::Stop,
            "no run in flight for this issue (see `afk runs`)",
        );
    }
    let snapshot = if chosen.is_empty() {
        None
    } else {
        let watched: Vec<WatchedThread> = chosen.iter().map(Run::watched).collect();
        match ports.executor.snapshot(&watched).await {
            Ok(s) => Some(s),
            Err(e) => {
                report.error(
                    About::TICK,
                    ReportAction::Read,
                    format!("reading the executor failed: {e}; nothing was stopped"),
                );
                return report;
            }
        }
    };
    for mut run in chosen {
        let Some(snapshot) = snapshot.as_ref() else {
            break;
        };
        let (repo, number) = (run.issue.repo.clone(), run.issue.number);
        let thread = run.record.thread_id.clone();
        let result = async {
            let branch = ports.tracker.default_branch(&repo).await?;
            if !options.dry_run && run.record.outcome.is_none() {
                ports
                    .tracker
                    .add_label(&repo, number, &config.stop_label)
                    .await?;
                run.issue.labels.push(config.stop_label.clone());
            }
            if run.record.outcome.is_some() {
                // Already decided (a hand-back being cleaned up): finish it.
                return finish(ports, config, options, &mut run, &branch, None, &mut report).await;
            }
            stop(
                ports,
                config,
                options,
                snapshot,
                &mut run,
                &branch,
                Some(by.to_owned()),
                &mut report,
            )
            .await
        }
        .await;
        if let Err(e) = result {
            report.error(
                About::run(&repo, number, &thread),
                ReportAction::Stop,
                format!("stopping the run failed: {e}"),
            );
        }
    }
    report
}
