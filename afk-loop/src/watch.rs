//! The watch tick: every run in flight driven one step, as a reconcile:
//! gather the run's facts (its record, the stop label, the agent's liveness
//! from the one snapshot of the tick, the commit it pushed and that commit's
//! CI verdict), ask the core's state machine ([`next_action`]) what to do,
//! then perform the effects that answer names and nothing else. Whether the
//! agent is busy, whether a corrective turn goes to the same thread, what the
//! kill switch pauses: all of it is the machine's answer, none of it is here.
//!
//! Terminal outcomes are recorded before the doorbell, and the lock is
//! removed last ([`crate::progress::finish`]).

use afk_core::Config;
use afk_core::ci::{CiVerdict, CommitRef, Stage};
use afk_core::machine::{Action, Corrective, RunState, Turn, WaitReason, next_action};
use afk_core::ports::{ExecutorSnapshot, PortError, PortResult, ThreadSpec, WatchedThread};
use afk_core::prompt::{Branches, conflict_prompt, corrective_prompt, review_prompt};
use afk_core::record::progress_phase;

use crate::land::PullRead;
use crate::poll::watch_disabled;
use crate::ports::probe_stages;
use crate::progress::{finish, write};
use crate::report::{About, ReportAction, TickReport};
use crate::runs::{Run, find_runs};
use crate::{Ports, TickOptions, past};

/// The watch tick: drive every run in flight one step.
pub async fn watch_tick(ports: &Ports<'_>, config: &Config, options: &TickOptions) -> TickReport {
    if let Some(report) = watch_disabled(config) {
        return report;
    }
    let mut report = TickReport::default();
    if config.kill_switch {
        report.info(
            About::TICK,
            ReportAction::Paused,
            "the kill switch is on: runs are observed and finalised, no corrective turn is sent",
        );
    }
    let runs = find_runs(ports.tracker, config, &mut report).await;
    if runs.is_empty() {
        return report;
    }
    let watched: Vec<WatchedThread> = runs.iter().map(Run::watched).collect();
    // One executor read for all runs.
    let read = ports.executor.snapshot(&watched).await;
    report.saw_executor(&read);
    let snapshot = match read {
        Ok(s) => Some(s),
        Err(e) => {
            report.error(
                About::TICK,
                ReportAction::Read,
                format!("reading the executor failed: {e}"),
            );
            None
        }
    };
    for mut run in runs {
        if past(options.deadline, ports.clock.now()) {
            report.warn(
                About::issue(&run.issue.repo, run.issue.number),
                ReportAction::Deadline,
                "tick deadline reached: run left for the next tick",
            );
            continue;
        }
        let (repo, number) = (run.issue.repo.clone(), run.issue.number);
        let thread = run.record.thread_id.clone();
        let driven = drive(
            ports,
            config,
            options,
            snapshot.as_ref(),
            &mut run,
            &mut report,
        )
        .await;
        if let Err(e) = driven {
            report.error(
                About::run(&repo, number, &thread),
                ReportAction::Run,
                format!("driving the run failed: {e}"),
            );
        }
    }
    report
}

/// The facts of one run, the record updated with what was observed, and the
/// CI verdict read (none for a settled run: its decision needs no CI).
/// The facts of one run, the record updated with what was observed, the
/// CI verdict read (none for a settled run: its decision needs no CI), and
/// who stopped it, when someone did.
async fn gather(
    ports: &Ports<'_>,
    config: &Config,
    snapshot: Option<&ExecutorSnapshot>,
    run: &mut Run,
    branch: &str,
    report: &mut TickReport,
) -> PortResult<(RunState, Option<CiVerdict>, Option<String>, PullRead)> {
    let record = &run.record;
    let (repo, number) = (run.issue.repo.as_str(), run.issue.number);
    let mut state = RunState {
        outcome_recorded: record.outcome.is_some(),
        stop_requested: run.issue.has_label(&config.stop_label),
        kill_switch: config.kill_switch,
        fix_forward_attempts: record.fix_forward_attempts,
        attempt: record.attempt,
        thread_turns: record.thread_turns,
        ..RunState::default()
    };
    if state.outcome_recorded {
        return Ok((state, None, None, PullRead::default()));
    }
    // A stop asked for during the run counts even if the label was removed
    // before this tick; so does a person closing the issue by hand.
    let events = ports.tracker.label_events(repo, number).await?;
    let stop_event = events
        .iter()
        .rev()
        .find(|e| e.label.eq_ignore_ascii_case(&config.stop_label) && e.at >= record.dispatched_at);
    let closed_by_hand = if run.issue.open {
        None
    } else {
        ports
            .tracker
            .last_closure(repo, number)
            .await?
            .filter(|c| c.by_a_person() && c.at >= record.dispatched_at)
    };
    state.stop_requested |= stop_event.is_some() || closed_by_hand.is_some();
    let stopped_by = match (&closed_by_hand, stop_event) {
        (Some(c), _) => Some(format!(
            "{}, who closed the issue",
            c.actor.as_deref().unwrap_or("an unknown account")
        )),
        (None, Some(e)) => e.actor.as_ref().map(|a| a.login.clone()),
        (None, None) => None,
    };
    if state.settled() {
        return Ok((state, None, stopped_by, PullRead::default()));
    }
    let snapshot = snapshot.ok_or_else(|| PortError::Transient {
        message: "no executor snapshot this tick".into(),
    })?;
    let now = ports.clock.now();
    // Landing through a pull request, the agent's commits are on the run's
    // branch, which does not exist until it pushes.
    let landing = run.record.landing.clone();
    let target = landing.as_ref().map_or(branch, |l| l.branch.as_str());
    let commits = match ports
        .tracker
        .commits_with_trailer(repo, target, run.record.dispatched_at, number)
        .await
    {
        Err(PortError::NotFound { .. }) if landing.is_some() => Vec::new(),
        other => other?,
    };
    let pushed = commits.first().map(|c| c.sha.as_str());
    let pull = crate::land::read(ports, run, branch, pushed.is_some())
        .await
        .map_err(|e| crate::land::noted(report, e))?;
    if let Some(landing) = run.record.landing.as_mut() {
        if let Some(p) = &pull.pull {
            landing.pull_state = Some(p.state);
        }
        landing.foreign_pull = landing.foreign_pull.or(pull.foreign);
    }
    let judged = afk_core::land::commit_to_judge(pull.pull.as_ref(), pushed, target, branch)
        .map(|(sha, on)| (sha.to_owned(), on.to_owned()));
    run.record
        .observe_commit(judged.as_ref().map(|(sha, _)| sha.as_str()), now);
    let verdict = match (run.record.commit.clone(), judged) {
        (Some(sha), Some((_, on))) => {
            let committed_at = commits
                .iter()
                .find(|c| c.sha == sha)
                .and_then(|c| c.committed_at);
            // A pull request's head is judged by its checks alone: nothing
            // deploys or rolls out from a branch that has not landed.
            let head_only = on != branch;
            let stages: Vec<&dyn crate::ports::StageProbe> = ports
                .stages
                .iter()
                .copied()
                .filter(|s| !head_only || s.stage() == Stage::Build)
                .collect();
            let commit = CommitRef {
                repo: repo.to_owned(),
                branch: on,
                sha,
                committed_at,
            };
            Some(probe_stages(&stages, &commit).await?)
        }
        _ => None,
    };
    if let Some(v) = &verdict {
        run.record.observe_ci(v.status, now);
    }
    run.record.observe_cost(
        snapshot
            .threads
            .get(&run.record.thread_id)
            .and_then(|t| t.cost),
    );
    let record = &run.record;
    let since = |t: Option<afk_core::Timestamp>| t.map_or(0, |t| now.seconds_since(t));
    state.thread_gone = !snapshot.is_live(&record.thread_id);
    state.thread_status = snapshot.status(&record.thread_id);
    state.ci_status = verdict.as_ref().map(|v| v.status);
    state.pushed = record.commit.is_some();
    state.corrective_turn_for_this_commit = record.corrective_turn_for_this_commit();
    state.seconds_since_first_red = since(record.first_red_at);
    state.seconds_since_dispatch = now.seconds_since(record.dispatched_at);
    state.seconds_since_push_seen = since(record.commit_seen_at);
    state.pull = pull.facts;
    Ok((state, verdict, stopped_by, pull))
}

/// The report vocabulary of an action (a paused wait is logged as paused).
fn report_action(action: &Action) -> ReportAction {
    match action {
        Action::Wait(WaitReason::Paused) => ReportAction::Paused,
        other => ReportAction::from(other.kind()),
    }
}

async fn drive(
    ports: &Ports<'_>,
    config: &Config,
    options: &TickOptions,
    snapshot: Option<&ExecutorSnapshot>,
    run: &mut Run,
    report: &mut TickReport,
) -> PortResult<()> {
    let (repo, number) = (run.issue.repo.clone(), run.issue.number);
    let branch = ports.tracker.default_branch(&repo).await?;
    let (state, verdict, stopped_by, pull) =
        gather(ports, config, snapshot, run, &branch, report).await?;
    let action = next_action(&state, config);
    let thread = run.record.thread_id.clone();
    let about = About::run(&repo, number, &thread);
    for note in &pull.notes {
        report.warn(about, report_action(&action), note.clone());
    }
    match action {
        Action::Finish => {
            // Decided before (a tick died during clean-up): finish it.
            finish(ports, config, options, run, &branch, None, report).await
        }
        Action::Stop => {
            let snapshot = snapshot.ok_or_else(|| PortError::Transient {
                message: "no executor snapshot this tick: the stop is finished next tick".into(),
            })?;
            crate::stop::stop(
                ports, config, options, snapshot, run, &branch, stopped_by, report,
            )
            .await
        }
        Action::Wait(_) => {
            let phase = progress_phase(&run.record, verdict.as_ref());
            let wrote = write(ports, run, &branch, phase, options).await?;
            let mut message = action.reason();
            if wrote {
                message.push_str(" (progress updated)");
            }
            report.info(about, report_action(&action), message);
            Ok(())
        }
        Action::CloseSuccess | Action::FreezeEscalate(_) | Action::EscalatePrepush(_) => {
            report.info(about, report_action(&action), action.reason());
            if options.dry_run {
                return Ok(());
            }
            if action.escalation().is_some() {
                // Nothing runs unsupervised once a human owns the issue: the
                // agent is stopped before the hand-back is recorded (a re-run
                // sends the same commands, which the executor answers from
                // its receipts).
                let snapshot = snapshot.ok_or_else(|| PortError::Transient {
                    message: "no executor snapshot this tick".into(),
                })?;
                ports
                    .executor
                    .stop_thread(snapshot, &thread, ports.clock.now())
                    .await?;
            }
            // What the runtime said about a failed turn ends the reason.
            let said = snapshot
                .and_then(|s| s.threads.get(&thread))
                .and_then(|t| t.said.as_deref());
            run.record.outcome = run.record.outcome_of(&action, None, said);
            // The outcome is recorded before anything else, so a re-run
            // finishes it without deciding again.
            let phase = progress_phase(&run.record, verdict.as_ref());
            write(ports, run, &branch, phase, options).await?;
            finish(
                ports,
                config,
                options,
                run,
                &branch,
                verdict.as_ref(),
                report,
            )
            .await
        }
        Action::FixForward { attempt, turn, why } => {
            if options.dry_run {
                report.info(
                    about,
                    ReportAction::FixForward,
                    format!("dry run: would send corrective turn {attempt}"),
                );
                return Ok(());
            }
            let snapshot = snapshot.ok_or_else(|| PortError::Transient {
                message: "no executor snapshot this tick".into(),
            })?;
            let commit = run.record.commit.clone().unwrap_or_default();
            let landing = run.record.landing.clone();
            let branches = Branches {
                base: &branch,
                run: landing.as_ref().map(|l| l.branch.as_str()),
            };
            let pull_number = landing.as_ref().and_then(|l| l.pull_request).unwrap_or(0);
            let reviews: Vec<(&str, &str)> = pull
                .reviews
                .iter()
                .map(|r| {
                    (
                        r.author.as_deref().unwrap_or("a deleted account"),
                        r.body.as_str(),
                    )
                })
                .collect();
            let prompt = match why {
                Corrective::Conflict => conflict_prompt(&repo, number, branches, pull_number),
                // The machine asks for changes only with reviews to answer
                // (`afk_core::land::review_state`).
                Corrective::ChangesRequested => {
                    review_prompt(&repo, number, branches, pull_number, &reviews)
                }
                Corrective::RedCi => corrective_prompt(
                    &repo,
                    number,
                    branches,
                    &commit,
                    verdict
                        .as_ref()
                        .and_then(|v| v.stage)
                        .map_or("CI", Stage::as_str),
                    verdict.as_ref().and_then(|v| v.link.as_deref()),
                    verdict.as_ref().map_or("", |v| v.detail.as_str()),
                ),
            };
            let now = ports.clock.now();
            // Sent before it is recorded: the step (or the new thread's
            // deterministic id) makes a re-send after a crash a no-op.
            let thread_id = match turn {
                Turn::SameThread { step } => {
                    ports
                        .executor
                        .send_turn(snapshot, &thread, step, &prompt, now)
                        .await?;
                    thread.clone()
                }
                Turn::NewThread { attempt: next } => {
                    let spec = ThreadSpec {
                        repo: repo.clone(),
                        issue: number,
                        attempt: next,
                        title: format!("{repo}#{number}: fix forward (attempt {next})"),
                        branch: branch.to_owned(),
                        prompt,
                        created_at: now,
                    };
                    ports.executor.ensure_thread(snapshot, &spec).await?
                }
            };
            run.record.record_corrective_turn(turn, &thread_id, now);
            if let (Corrective::ChangesRequested, Some(newest), Some(l)) = (
                why,
                pull.reviews.iter().map(|r| r.id).max(),
                run.record.landing.as_mut(),
            ) {
                l.answered_review = Some(newest);
            }
            let phase = progress_phase(&run.record, verdict.as_ref());
            write(ports, run, &branch, phase, options).await?;
            let what = match why {
                Corrective::RedCi => format!("red commit {commit}"),
                Corrective::Conflict => {
                    format!("pull request #{pull_number}, which conflicts with `{branch}`")
                }
                Corrective::ChangesRequested => {
                    format!("the changes requested on pull request #{pull_number}")
                }
            };
            report.info(
                About::run(&repo, number, &thread_id),
                ReportAction::FixForward,
                format!("corrective turn {attempt} sent for {what}"),
            );
            Ok(())
        }
        Action::OpenPullRequest | Action::Merge | Action::HandOverForReview => {
            report.info(about, report_action(&action), action.reason());
            if options.dry_run {
                return Ok(());
            }
            match (action, pull.pull.as_ref()) {
                (Action::OpenPullRequest, _) => {
                    let found = pull.unrecorded.as_ref();
                    crate::land::open(ports, config, run, &branch, found, report).await?;
                }
                (Action::Merge, Some(p)) => {
                    crate::land::merge(ports, config, run, p, report).await?
                }
                (Action::HandOverForReview, Some(p)) => {
                    crate::land::hand_over(ports, config, run, p, report).await?;
                }
                _ => {}
            }
            let phase = progress_phase(&run.record, verdict.as_ref());
            write(ports, run, &branch, phase, options).await?;
            Ok(())
        }
    }
}
