//! The watch tick: every run in flight driven one step (agent liveness, the
//! CI/deploy verdict of its commit, the state machine's decision), with the
//! outcome recorded before the doorbell, and the lock removed last.

use super::{
    About, Ports, ProgressCodec, ReportAction, TickOptions, TickReport, past, watch_disabled,
};
use crate::ci::{CiVerdict, CommitRef, Stage, probe_stages};
use crate::config::Config;
use crate::doorbell::{Doorbell, ring_all};
use crate::machine::{Action, RunState, WaitReason, next_action};
use crate::ports::{
    Comment, ExecutorSnapshot, PortError, PortResult, ThreadSpec, TrackedIssue, Tracker,
    WatchedThread,
};
use crate::prompt::corrective_prompt;
use crate::record::{Outcome, OutcomeKind, RunRecord};
use crate::types::{CiStatus, Phase, ThreadStatus, Timestamp};

/// One run in flight, as found on the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The issue carrying the in-progress label.
    pub issue: TrackedIssue,
    /// Its progress comment.
    pub comment: Comment,
    /// The run record in it.
    pub record: RunRecord,
}

impl Run {
    /// Its thread, as the executor snapshot watches it.
    pub fn watched(&self) -> WatchedThread {
        WatchedThread {
            thread_id: self.record.thread_id.clone(),
            turn_sent_at: self
                .record
                .turn_sent_at
                .unwrap_or(self.record.dispatched_at),
        }
    }
}

/// Finds the runs in flight: issues carrying the in-progress label, open or
/// closed, in allowlisted repositories, with a readable run record. An issue
/// with the label but no readable record is reported (warn) and left out; a
/// failed read is reported (error). `afk runs` lists exactly what the watcher
/// drives.
pub async fn find_runs(
    tracker: &dyn Tracker,
    codec: &dyn ProgressCodec,
    config: &Config,
    report: &mut TickReport,
) -> Vec<Run> {
    let mut runs = Vec::new();
    let scans = tracker
        .scan(&config.allowlist, None, &config.in_progress_label)
        .await;
    for (repo, scan) in config.allowlist.iter().zip(scans) {
        let issues = match scan {
            Ok(s) => s.locked,
            Err(e) => {
                report.error(
                    About::repo(repo),
                    ReportAction::Read,
                    format!("listing runs failed: {e}"),
                );
                continue;
            }
        };
        for issue in issues {
            match tracker.progress_comment(repo, issue.number).await {
                Ok(Some(comment)) => match codec.record(&comment.body) {
                    Ok(Some(record)) => runs.push(Run { issue, comment, record }),
                    Ok(None) => report.warn(About::issue(repo, issue.number), ReportAction::NoRecord, "carries the in-progress label but its progress comment has no run record; left alone"),
                    Err(why) => report.warn(About::issue(repo, issue.number), ReportAction::NoRecord, format!("carries the in-progress label but its run record cannot be read ({why}); left alone")),
                },
                Ok(None) => report.warn(About::issue(repo, issue.number), ReportAction::NoRecord, "carries the in-progress label but has no progress comment; left alone"),
                Err(e) => report.error(About::issue(repo, issue.number), ReportAction::Read, format!("reading the progress comment failed: {e}")),
            }
        }
    }
    runs
}

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
    let runs = find_runs(ports.tracker, ports.codec, config, &mut report).await;
    if runs.is_empty() {
        return report;
    }
    let watched: Vec<WatchedThread> = runs.iter().map(Run::watched).collect();
    // One executor read for all runs.
    let snapshot = match ports.executor.snapshot(&watched).await {
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
        if let Err(e) = drive(
            ports,
            config,
            options,
            snapshot.as_ref(),
            &mut run,
            &mut report,
        )
        .await
        {
            report.error(
                About::run(&repo, number, &thread),
                ReportAction::Run,
                format!("driving the run failed: {e}"),
            );
        }
    }
    report
}

pub(super) fn phase_for(record: &RunRecord, verdict: Option<&CiVerdict>) -> Phase {
    if record
        .outcome
        .as_ref()
        .is_some_and(|o| o.kind == OutcomeKind::Done)
    {
        return Phase::Done;
    }
    match (record.commit.as_ref(), verdict) {
        (None, _) => Phase::Worktree,
        (Some(_), Some(v)) if v.status == CiStatus::Pending && v.stage == Some(Stage::Rollout) => {
            Phase::Deployed
        }
        (Some(_), _) => Phase::Ci,
    }
}

/// Writes the progress comment when its text changed; a tick that changes
/// nothing makes no write.
pub(super) async fn write(
    ports: &Ports<'_>,
    run: &mut Run,
    branch: &str,
    phase: Phase,
    options: &TickOptions,
) -> PortResult<bool> {
    let body = ports.codec.body(
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
    if run.record.outcome.is_some() {
        // Decided before (a tick died during cleanup): finish, never decide again.
        return finish(ports, config, options, run, &branch, None, report).await;
    }
    let snapshot = snapshot.ok_or_else(|| PortError::Transient {
        message: "no executor snapshot this tick".into(),
    })?;
    // A human's stop takes precedence over every other decision.
    if run.issue.has_label(&config.stop_label) {
        return super::stop::stop(ports, config, options, snapshot, run, &branch, None, report)
            .await;
    }
    let now = ports.clock.now();
    let commits = ports
        .tracker
        .commits_with_trailer(&repo, &branch, run.record.dispatched_at, number)
        .await?;
    if let Some(newest) = commits.first()
        && run.record.commit.as_deref() != Some(newest.sha.as_str())
    {
        run.record.commit = Some(newest.sha.clone());
        run.record.commit_seen_at = Some(now);
    }
    let verdict = match run.record.commit.clone() {
        Some(sha) => {
            let committed_at = commits
                .iter()
                .find(|c| c.sha == sha)
                .and_then(|c| c.committed_at);
            let commit = CommitRef {
                repo: repo.clone(),
                branch: branch.clone(),
                sha,
                committed_at,
            };
            Some(probe_stages(ports.stages, &commit).await?)
        }
        None => None,
    };
    if let Some(v) = &verdict {
        run.record.last_ci = Some(v.status);
        if v.status == CiStatus::Red && run.record.first_red_at.is_none() {
            run.record.first_red_at = Some(now);
        }
    }
    let thread = run.record.thread_id.clone();
    let live = snapshot.is_live(&thread);
    // A thread that vanished is an agent that is gone.
    let status = if live {
        snapshot.status(&thread)
    } else {
        Some(ThreadStatus::Error)
    };
    let corrective_turn_running = run.record.fix_forward_commit.is_some()
        && run.record.fix_forward_commit == run.record.commit
        && live
        && matches!(status, Some(ThreadStatus::Running) | None);
    let since = |t: Option<Timestamp>| t.map_or(0, |t| now.seconds_since(t));
    let state = RunState {
        thread_status: status,
        ci_status: verdict.as_ref().map(|v| v.status),
        pushed: run.record.commit.is_some(),
        fix_forward_attempts: run.record.fix_forward_attempts,
        seconds_since_first_red: since(run.record.first_red_at),
        seconds_since_dispatch: now.seconds_since(run.record.dispatched_at),
        seconds_since_push_seen: since(run.record.commit_seen_at),
        corrective_turn_running,
    };
    let mut action = next_action(&state, config);
    if config.kill_switch && matches!(action, Action::FixForward { .. }) {
        report.info(
            About::run(&repo, number, &thread),
            ReportAction::Paused,
            "fix-forward is paused by the kill switch",
        );
        action = Action::Wait(WaitReason::CiPending);
    }
    let phase = phase_for(&run.record, verdict.as_ref());
    let kind = action.kind();
    match action {
        Action::Wait(_) => {
            let wrote = write(ports, run, &branch, phase, options).await?;
            let message = if wrote {
                format!("{} (progress updated)", action.reason())
            } else {
                action.reason()
            };
            report.info(
                About::run(&repo, number, &thread),
                ReportAction::from(kind),
                message,
            );
            Ok(())
        }
        Action::CloseSuccess | Action::FreezeEscalate(_) | Action::EscalatePrepush(_) => {
            report.info(
                About::run(&repo, number, &thread),
                ReportAction::from(kind),
                action.reason(),
            );
            if options.dry_run {
                return Ok(());
            }
            if action.escalation().is_some() {
                // Nothing runs unsupervised once a human owns the issue: the
                // agent is stopped before the hand-back is recorded (a re-run
                // sends the same commands, which T3 answers from receipts).
                ports.executor.stop_thread(snapshot, &thread, now).await?;
            }
            run.record.outcome = Some(match action.escalation() {
                Some(e) => Outcome::from_escalation(e, run.record.commit.is_some()),
                None => Outcome {
                    kind: OutcomeKind::Done,
                    reason: action.reason(),
                    by: None,
                },
            });
            let final_phase = phase_for(&run.record, verdict.as_ref());
            // The outcome is recorded before anything else, so a re-run
            // finishes it without deciding again.
            write(ports, run, &branch, final_phase, options).await?;
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
        Action::FixForward { attempt } => {
            fix_forward(
                ports,
                options,
                snapshot,
                run,
                &branch,
                verdict.as_ref(),
                status,
                live,
                attempt,
                phase,
                report,
            )
            .await
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn fix_forward(
    ports: &Ports<'_>,
    options: &TickOptions,
    snapshot: &ExecutorSnapshot,
    run: &mut Run,
    branch: &str,
    verdict: Option<&CiVerdict>,
    status: Option<ThreadStatus>,
    live: bool,
    attempt: u32,
    phase: Phase,
    report: &mut TickReport,
) -> PortResult<()> {
    let (repo, number) = (run.issue.repo.clone(), run.issue.number);
    let commit = run.record.commit.clone().unwrap_or_default();
    let prompt = corrective_prompt(
        &repo,
        number,
        branch,
        &commit,
        verdict.and_then(|v| v.stage).map_or("CI", Stage::as_str),
        verdict.and_then(|v| v.link.as_deref()),
        verdict.map_or("", |v| v.detail.as_str()),
    );
    let now = ports.clock.now();
    let busy = live && matches!(status, Some(ThreadStatus::Running) | None);
    if busy {
        // The agent is still at work (perhaps on this very failure): a turn
        // sent now would interrupt or queue behind it.
        write(ports, run, branch, phase, options).await?;
        report.info(
            About::run(&repo, number, &run.record.thread_id),
            ReportAction::Wait,
            "CI is red but the agent's thread is busy: the corrective turn waits for it",
        );
        return Ok(());
    }
    if options.dry_run {
        report.info(
            About::run(&repo, number, &run.record.thread_id),
            ReportAction::FixForward,
            format!("dry run: would send corrective turn {attempt}"),
        );
        return Ok(());
    }
    if live && status == Some(ThreadStatus::Idle) {
        // Same thread: it keeps its context. Sent before it is recorded; the
        // step number makes a re-send after a crash a no-op.
        let step = run.record.thread_turns.saturating_add(1);
        ports
            .executor
            .send_turn(snapshot, &run.record.thread_id, step, &prompt, now)
            .await?;
        run.record.thread_turns = step;
    } else {
        // The thread errored, waits on a question, or is gone: a new thread.
        let next = run.record.attempt.saturating_add(1);
        let spec = ThreadSpec {
            repo: repo.clone(),
            issue: number,
            attempt: next,
            title: format!("{repo}#{number}: fix forward (attempt {next})"),
            prompt,
            created_at: now,
        };
        run.record.thread_id = ports.executor.ensure_thread(snapshot, &spec).await?;
        run.record.attempt = next;
        run.record.thread_turns = 0;
    }
    run.record.fix_forward_attempts = run.record.fix_forward_attempts.saturating_add(1);
    run.record.fix_forward_commit = Some(commit.clone());
    run.record.turn_sent_at = Some(now);
    write(ports, run, branch, phase, options).await?;
    report.info(
        About::run(&repo, number, &run.record.thread_id),
        ReportAction::FixForward,
        format!("corrective turn {attempt} sent for red commit {commit}"),
    );
    Ok(())
}

/// Finishes a recorded outcome: labels and issue state, the doorbell, and the
/// in-progress label last. Every step is idempotent.
pub(super) async fn finish(
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
            if !run.issue.open {
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
        };
        let rung = ring_all(ports.notifiers, &bell).await;
        for (name, e) in &rung.failed {
            report.warn(
                About::run(&repo, number, &run.record.thread_id),
                ReportAction::Ring,
                format!("{name} could not ring: {e}"),
            );
        }
        if !rung.rung() {
            return Err(PortError::Transient {
                message: "the doorbell failed on every notifier; it rings again next tick".into(),
            });
        }
        report.info(
            About::run(&repo, number, &run.record.thread_id),
            ReportAction::Ring,
            format!("{} via {}", bell.title(), rung.delivered.join(", ")),
        );
        run.record.notified = true;
        let phase = match outcome.kind {
            OutcomeKind::Done => Phase::Done,
            _ => phase_for(&run.record, verdict),
        };
        write(ports, run, branch, phase, options).await?;
    }
    // Last: while the label is on, the next tick comes back to finish.
    tracker
        .remove_label(&repo, number, &config.in_progress_label)
        .await?;
    Ok(())
}
