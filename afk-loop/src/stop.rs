//! Stopping runs: the stop label (the watcher), `afk stop` and `afk halt`
//! all go through [`stop`], which interrupts the agent's turn and stops its
//! session before the run is recorded as `stopped` and handed back like
//! every hand-back (labels, doorbell, lock removed last).

use afk_core::Config;
use afk_core::machine::Action;
use afk_core::ports::{ExecutorSnapshot, PortResult, WatchedThread};
use afk_core::record::progress_phase;

use crate::progress::{finish, write};
use crate::report::{About, ReportAction, TickReport};
use crate::runs::{Run, find_runs};
use crate::{Ports, TickOptions};

/// Stops a run for a human: the agent's turn is interrupted and its session
/// stopped, the run recorded as `stopped` with who stopped it (`by`, or the
/// stop label's actor), then finished like every hand-back. The watcher runs
/// it for the stop label; `afk stop` and `afk halt` run it too (one path).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn stop(
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

    let Some(outcome) = run.record.outcome_of(&Action::Stop, by, None) else {
        return Ok(());
    };
    run.record.observe_cost(
        snapshot
            .threads
            .get(&run.record.thread_id)
            .and_then(|t| t.cost),
    );
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
    let phase = progress_phase(&run.record, None);
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
    let runs = find_runs(ports.tracker, config, &mut report).await;
    let chosen: Vec<Run> = runs
        .into_iter()
        .filter(|r| match target {
            StopTarget::All => true,
            StopTarget::One { repo, issue } => {
                r.issue.number == *issue && afk_core::types::same_repo(&r.issue.repo, repo)
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
    // The stop label first, on every chosen run, before any executor call:
    // the label is the durable request, so a stop the executor refuses (or
    // that dies halfway) is finished by the watcher's next tick.
    let mut labelled = Vec::with_capacity(chosen.len());
    for mut run in chosen {
        let (repo, number) = (run.issue.repo.clone(), run.issue.number);
        if !options.dry_run
            && run.record.outcome.is_none()
            && !run.issue.has_label(&config.stop_label)
        {
            if let Err(e) = ports
                .tracker
                .add_label(&repo, number, &config.stop_label)
                .await
            {
                report.error(
                    About::run(&repo, number, &run.record.thread_id),
                    ReportAction::Stop,
                    format!("applying the stop label failed: {e}; this run was not stopped"),
                );
                continue;
            }
            run.issue.labels.push(config.stop_label.clone());
        }
        labelled.push(run);
    }
    if labelled.is_empty() {
        return report;
    }
    let watched: Vec<WatchedThread> = labelled.iter().map(Run::watched).collect();
    let snapshot = match ports.executor.snapshot(&watched).await {
        Ok(s) => s,
        Err(e) => {
            for run in &labelled {
                report.error(
                    About::run(&run.issue.repo, run.issue.number, &run.record.thread_id),
                    ReportAction::Stop,
                    format!(
                        "reading the executor failed ({e}): the stop label is on, and the watcher stops this run on its next tick"
                    ),
                );
            }
            return report;
        }
    };
    for mut run in labelled {
        let (repo, number) = (run.issue.repo.clone(), run.issue.number);
        let thread = run.record.thread_id.clone();
        let result = async {
            let branch = ports.tracker.default_branch(&repo).await?;
            if run.record.outcome.is_some() {
                // Already decided (a hand-back being cleaned up): finish it.
                return finish(ports, config, options, &mut run, &branch, None, &mut report).await;
            }
            stop(
                ports,
                config,
                options,
                &snapshot,
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
                format!(
                    "stopping the run failed: {e}; the stop label is on, and the watcher finishes the stop on its next tick"
                ),
            );
        }
    }
    report
}
