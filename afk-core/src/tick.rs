//! The poll tick and the watch tick, written once against the ports.
//!
//! A CronJob may run a tick twice, or not at all, and a pod can die at any
//! instruction, so both ticks are safe to repeat and to cut short anywhere:
//!
//! - **poll**: the progress comment with its run record first (found by its
//!   marker before one is created, so the dispatch time is durable before the
//!   agent starts), then the thread (deterministic id: a re-run finds it), and
//!   the in-progress label **last**, so a failed dispatch never leaves a lock;
//! - **watch**: a terminal outcome is written to the run record first, then
//!   the doorbell rings, then `notified` is recorded, and the in-progress
//!   label goes last (while it is on, the next tick finds the run and finishes
//!   the cleanup without deciding again); a corrective turn is sent before it
//!   is recorded, with a step number that makes a re-send a no-op.
//!
//! Decisions are values ([`crate::next_action`], [`crate::plan_dispatch`]); the
//! ticks perform one effect per decision. They log nothing themselves: every
//! decision, action and failure is an entry of the [`TickReport`], which the
//! binary logs.

use std::collections::{BTreeMap, BTreeSet};

use crate::ci::{CiVerdict, CommitRef, Stage, StageProbe, probe_stages};
use crate::config::Config;
use crate::dispatch::plan_dispatch;
use crate::doorbell::{Doorbell, Notifier, ring_all};
use crate::machine::{Action, RunState, WaitReason, next_action};
use crate::ports::{
    Comment, Executor, ExecutorSnapshot, PortError, PortResult, ThreadSpec, TrackedIssue, Tracker,
    WatchedThread,
};
use crate::prompt::{corrective_prompt, opening_prompt};
use crate::record::{Outcome, OutcomeKind, RunRecord};
use crate::types::{CiStatus, Issue, Phase, ThreadStatus, Timestamp, priority_from_labels};

/// The clock, as a port: the core never reads time itself.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// How the progress comment is written and read back (implemented by the
/// `checklist` crate; a port so that the core does not depend on it).
pub trait ProgressCodec: Send + Sync {
    /// The whole comment body: the visible checklist for `phase`, then the
    /// hidden run record.
    fn body(
        &self,
        phase: Phase,
        repo: &str,
        issue: u64,
        default_branch: &str,
        record: &RunRecord,
    ) -> String;

    /// The run record in a comment body; `Ok(None)` when it has none, `Err`
    /// with a reason when its marker cannot be read.
    fn record(&self, body: &str) -> Result<Option<RunRecord>, String>;
}

/// Everything a tick talks to.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    /// The issue tracker.
    pub tracker: &'a dyn Tracker,
    /// The agent runtime.
    pub executor: &'a dyn Executor,
    /// The CI stages, in order (build, deploy, rollout).
    pub stages: &'a [&'a dyn StageProbe],
    /// The doorbells.
    pub notifiers: &'a [&'a dyn Notifier],
    /// The progress comment's format.
    pub codec: &'a dyn ProgressCodec,
    /// The clock.
    pub clock: &'a dyn Clock,
}

impl std::fmt::Debug for Ports<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ports").finish_non_exhaustive()
    }
}

/// Options of one tick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TickOptions {
    /// Decide and report, but write nothing and dispatch nothing.
    pub dry_run: bool,
    /// Start no new work after this time.
    pub deadline: Option<Timestamp>,
}

/// How serious a report entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A decision or action.
    Info,
    /// Something a human should look at that did not fail the tick.
    Warn,
    /// A failure: the tick exits non-zero.
    Error,
}

/// One line of a tick's report (the binary logs each as one JSON line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Severity.
    pub level: Level,
    /// The repository, when the entry is about one.
    pub repo: Option<String>,
    /// The issue, when the entry is about one.
    pub issue: Option<u64>,
    /// The thread, when known.
    pub thread_id: Option<String>,
    /// What was decided or done (`dispatch`, `skip`, `wait`, `close_success`,
    /// `fix_forward`, `escalate_prepush`, `freeze_escalate`, `ring`, …).
    pub action: String,
    /// Why, for humans.
    pub message: String,
}

/// What a tick did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TickReport {
    /// The kill switch (poller) or an empty allowlist stopped the tick before
    /// any work.
    pub disabled: bool,
    /// Issues dispatched (`repo#n`).
    pub dispatched: Vec<String>,
    /// Issues passed over.
    pub skipped: usize,
    /// Every decision, action, warning and failure, in order.
    pub entries: Vec<Entry>,
}

impl TickReport {
    /// Entries at error level.
    pub fn failures(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.level == Level::Error)
    }

    /// Whether any part of the tick failed.
    pub fn failed(&self) -> bool {
        self.failures().next().is_some()
    }

    fn push(
        &mut self,
        level: Level,
        repo: Option<&str>,
        issue: Option<u64>,
        thread: Option<&str>,
        action: &str,
        message: impl Into<String>,
    ) {
        self.entries.push(Entry {
            level,
            repo: repo.map(str::to_owned),
            issue,
            thread_id: thread.map(str::to_owned),
            action: action.to_owned(),
            message: message.into(),
        });
    }
}

fn past(deadline: Option<Timestamp>, now: Timestamp) -> bool {
    deadline.is_some_and(|d| now >= d)
}

// ---- poll ------------------------------------------------------------------------

/// What the poll tick learned about one repository.
struct RepoFacts {
    in_flight: bool,
    issues: Vec<(Issue, TrackedIssue)>,
    /// Issues whose trust and blockers were actually read.
    verified: BTreeSet<u64>,
}

async fn gather(
    tracker: &dyn Tracker,
    config: &Config,
    repo: &str,
    report: &mut TickReport,
) -> PortResult<RepoFacts> {
    // The lock is asked for directly, open or closed: a closing keyword can
    // close an issue while its run is still in flight.
    let in_flight = !tracker
        .issues_with_label(repo, &config.in_progress_label)
        .await?
        .is_empty();
    let mut ready = tracker
        .open_issues_with_label(repo, &config.ready_label)
        .await?;
    ready.sort_by_key(|t| (priority_from_labels(&t.labels), t.number));
    let mut facts = RepoFacts {
        in_flight,
        issues: Vec::new(),
        verified: BTreeSet::new(),
    };
    let mut found = false;
    for tracked in ready {
        let mut issue = Issue {
            repo: repo.to_owned(),
            number: tracked.number,
            title: tracked.title.clone(),
            labels: tracked.labels.clone(),
            open_blockers: Vec::new(),
            // Not read for issues that cannot win the slot anyway (the
            // repository is locked, the issue is handed back, or a better one
            // already won): the policy passes them over for that reason.
            labeled_by_trusted: true,
            priority: priority_from_labels(&tracked.labels),
        };
        let worth_reading =
            !in_flight && !found && !tracked.has_label(&config.ready_for_human_label);
        if worth_reading {
            let trust = tracker
                .label_trust(repo, tracked.number, &config.ready_label)
                .await?;
            issue.labeled_by_trusted = trust.trusted;
            if !trust.trusted {
                report.push(
                    Level::Info,
                    Some(repo),
                    Some(tracked.number),
                    None,
                    "untrusted",
                    trust.reason,
                );
            } else {
                issue.open_blockers = tracker.open_blockers(repo, &tracked).await?;
                found = issue.open_blockers.is_empty();
            }
            facts.verified.insert(tracked.number);
        }
        facts.issues.push((issue, tracked));
    }
    Ok(facts)
}

fn disabled(message: &str) -> TickReport {
    let mut report = TickReport {
        disabled: true,
        ..TickReport::default()
    };
    report.push(Level::Info, None, None, None, "disabled", message);
    report
}

/// The report of a poll tick that the configuration disables (kill switch on,
/// or nothing enrolled), before any I/O; `None` when the poller is armed.
pub fn poll_disabled(config: &Config) -> Option<TickReport> {
    if config.kill_switch {
        return Some(disabled("the kill switch is on: the poller does nothing"));
    }
    watch_disabled(config)
}

/// The report of a watch tick that the configuration disables (nothing
/// enrolled); `None` otherwise. The kill switch does not disable the
/// watcher: it still observes and finalises runs.
pub fn watch_disabled(config: &Config) -> Option<TickReport> {
    config
        .allowlist
        .is_empty()
        .then(|| disabled("the allowlist is empty: no repository is enrolled"))
}

/// The poll tick: decide which ready issues may start now and dispatch them.
pub async fn poll_tick(ports: &Ports<'_>, config: &Config, options: &TickOptions) -> TickReport {
    if let Some(report) = poll_disabled(config) {
        return report;
    }
    let mut report = TickReport::default();
    let mut issues = Vec::new();
    let mut tracked: BTreeMap<(String, u64), TrackedIssue> = BTreeMap::new();
    let mut verified: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut in_flight = Vec::new();
    for repo in &config.allowlist {
        if past(options.deadline, ports.clock.now()) {
            report.push(
                Level::Warn,
                Some(repo),
                None,
                None,
                "deadline",
                "tick deadline reached: repository not read this tick",
            );
            continue;
        }
        match gather(ports.tracker, config, repo, &mut report).await {
            Ok(facts) => {
                if facts.in_flight {
                    in_flight.push(repo.clone());
                }
                verified.extend(facts.verified.iter().map(|n| (repo.clone(), *n)));
                for (issue, t) in facts.issues {
                    tracked.insert((repo.clone(), issue.number), t);
                    issues.push(issue);
                }
            }
            Err(e) => report.push(
                Level::Error,
                Some(repo),
                None,
                None,
                "read",
                format!("reading the repository failed: {e}"),
            ),
        }
    }
    let plan = plan_dispatch(&issues, config, &in_flight);
    report.skipped = plan.skipped.len();
    for s in &plan.skipped {
        report.push(
            Level::Info,
            Some(&s.repo),
            Some(s.number),
            None,
            "skip",
            s.reason.to_string(),
        );
    }
    let mut snapshot: Option<ExecutorSnapshot> = None;
    for d in &plan.decisions {
        let key = (d.repo.clone(), d.number);
        if !verified.contains(&key) {
            // The policy chose an issue whose trust was never read: a bug in
            // this tick, never a reason to dispatch.
            report.push(
                Level::Error,
                Some(&d.repo),
                Some(d.number),
                None,
                "dispatch",
                "refused: trust was not verified for this issue",
            );
            continue;
        }
        if options.dry_run {
            report.push(
                Level::Info,
                Some(&d.repo),
                Some(d.number),
                None,
                "dispatch",
                format!("dry run: would dispatch ({})", d.reason),
            );
            continue;
        }
        if past(options.deadline, ports.clock.now()) {
            report.push(
                Level::Warn,
                Some(&d.repo),
                Some(d.number),
                None,
                "deadline",
                "tick deadline reached: dispatch left for the next tick",
            );
            continue;
        }
        let Some(issue) = tracked.get(&key) else {
            continue;
        };
        match dispatch_one(ports, config, &mut snapshot, issue).await {
            Ok(thread) => {
                report.dispatched.push(format!("{}#{}", d.repo, d.number));
                report.push(
                    Level::Info,
                    Some(&d.repo),
                    Some(d.number),
                    Some(&thread),
                    "dispatch",
                    d.reason.clone(),
                );
            }
            Err(e) => report.push(
                Level::Error,
                Some(&d.repo),
                Some(d.number),
                None,
                "dispatch",
                format!("dispatch failed: {e}"),
            ),
        }
    }
    report
}

async fn dispatch_one(
    ports: &Ports<'_>,
    config: &Config,
    snapshot: &mut Option<ExecutorSnapshot>,
    issue: &TrackedIssue,
) -> PortResult<String> {
    let (repo, number) = (issue.repo.as_str(), issue.number);
    let now = ports.clock.now();
    let existing = ports.tracker.progress_comment(repo, number).await?;
    let prior = match &existing {
        Some(c) => ports
            .codec
            .record(&c.body)
            .map_err(|why| PortError::Permanent {
                message: format!(
                    "the progress comment's run record cannot be read ({why}); fix or delete it"
                ),
            })?,
        None => None,
    };
    let mut record = match prior {
        // A dispatch that died before it locked the repository: finish it,
        // keeping its time and thread.
        Some(r) if r.outcome.is_none() => r,
        // A finished run whose issue a human armed again: a new attempt.
        Some(r) => {
            let attempt = r.attempt.saturating_add(1);
            let mut fresh =
                RunRecord::dispatched(ports.executor.thread_id(repo, number, attempt), now);
            fresh.attempt = attempt;
            fresh
        }
        None => RunRecord::dispatched(ports.executor.thread_id(repo, number, 0), now),
    };
    let branch = ports.tracker.default_branch(repo).await?;
    record.turn_sent_at = Some(record.dispatched_at);
    // The record first, the thread second. The thread id is deterministic,
    // so the record can name it before it exists; and once the thread exists
    // the agent is at work, so the dispatch time must already be durable: a
    // re-run after a crash keeps it, and the watcher finds commits pushed
    // since. (Thread first would let a crash in between re-stamp the
    // dispatch later than the agent's first push.)
    let body = ports
        .codec
        .body(Phase::Worktree, repo, number, &branch, &record);
    match existing {
        Some(c) if c.body == body => {}
        Some(c) => ports.tracker.update_comment(repo, c.id, &body).await?,
        None => {
            ports.tracker.create_comment(repo, number, &body).await?;
        }
    }
    if snapshot.is_none() {
        *snapshot = Some(ports.executor.snapshot(&[]).await?);
    }
    let snap = snapshot.as_ref().ok_or_else(|| PortError::Transient {
        message: "no executor snapshot".into(),
    })?;
    let spec = ThreadSpec {
        repo: repo.to_owned(),
        issue: number,
        attempt: record.attempt,
        title: format!("{repo}#{number}: {}", issue.title),
        prompt: opening_prompt(repo, number, &issue.title, &branch),
        created_at: record.dispatched_at,
    };
    let thread = ports.executor.ensure_thread(snap, &spec).await?;
    if thread != record.thread_id {
        return Err(PortError::ContractViolation {
            message: format!(
                "the executor made thread {thread}, but its id for this attempt is {}",
                record.thread_id
            ),
        });
    }
    // Last: a dispatch that failed before this point leaves no lock.
    ports
        .tracker
        .add_label(repo, number, &config.in_progress_label)
        .await?;
    Ok(record.thread_id)
}

// ---- watch -----------------------------------------------------------------------

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
    for repo in &config.allowlist {
        let issues = match tracker
            .issues_with_label(repo, &config.in_progress_label)
            .await
        {
            Ok(i) => i,
            Err(e) => {
                report.push(
                    Level::Error,
                    Some(repo),
                    None,
                    None,
                    "read",
                    format!("listing runs failed: {e}"),
                );
                continue;
            }
        };
        for issue in issues {
            match tracker.progress_comment(repo, issue.number).await {
                Ok(Some(comment)) => match codec.record(&comment.body) {
                    Ok(Some(record)) => runs.push(Run { issue, comment, record }),
                    Ok(None) => report.push(Level::Warn, Some(repo), Some(issue.number), None, "no_record", "carries the in-progress label but its progress comment has no run record; left alone"),
                    Err(why) => report.push(Level::Warn, Some(repo), Some(issue.number), None, "no_record", format!("carries the in-progress label but its run record cannot be read ({why}); left alone")),
                },
                Ok(None) => report.push(Level::Warn, Some(repo), Some(issue.number), None, "no_record", "carries the in-progress label but has no progress comment; left alone"),
                Err(e) => report.push(Level::Error, Some(repo), Some(issue.number), None, "read", format!("reading the progress comment failed: {e}")),
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
        report.push(
            Level::Info,
            None,
            None,
            None,
            "paused",
            "the kill switch is on: runs are observed and finalised, no corrective turn is sent",
        );
    }
    let runs = find_runs(ports.tracker, ports.codec, config, &mut report).await;
    if runs.is_empty() {
        return report;
    }
    let watched: Vec<WatchedThread> = runs
        .iter()
        .map(|r| WatchedThread {
            thread_id: r.record.thread_id.clone(),
            turn_sent_at: r.record.turn_sent_at.unwrap_or(r.record.dispatched_at),
        })
        .collect();
    // One executor read for all runs.
    let snapshot = match ports.executor.snapshot(&watched).await {
        Ok(s) => Some(s),
        Err(e) => {
            report.push(
                Level::Error,
                None,
                None,
                None,
                "read",
                format!("reading the executor failed: {e}"),
            );
            None
        }
    };
    for mut run in runs {
        if past(options.deadline, ports.clock.now()) {
            report.push(
                Level::Warn,
                Some(&run.issue.repo),
                Some(run.issue.number),
                None,
                "deadline",
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
            report.push(
                Level::Error,
                Some(&repo),
                Some(number),
                Some(&thread),
                "run",
                format!("driving the run failed: {e}"),
            );
        }
    }
    report
}

fn phase_for(record: &RunRecord, verdict: Option<&CiVerdict>) -> Phase {
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
async fn write(
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
        report.push(
            Level::Info,
            Some(&repo),
            Some(number),
            Some(&thread),
            "paused",
            "fix-forward is paused by the kill switch",
        );
        action = Action::Wait(WaitReason::CiPending);
    }
    let phase = phase_for(&run.record, verdict.as_ref());
    let kind = action.kind().as_str();
    match action {
        Action::Wait(_) => {
            let wrote = write(ports, run, &branch, phase, options).await?;
            let message = if wrote {
                format!("{} (progress updated)", action.reason())
            } else {
                action.reason()
            };
            report.push(
                Level::Info,
                Some(&repo),
                Some(number),
                Some(&thread),
                kind,
                message,
            );
            Ok(())
        }
        Action::CloseSuccess | Action::FreezeEscalate(_) | Action::EscalatePrepush(_) => {
            report.push(
                Level::Info,
                Some(&repo),
                Some(number),
                Some(&thread),
                kind,
                action.reason(),
            );
            if options.dry_run {
                return Ok(());
            }
            run.record.outcome = Some(match action.escalation() {
                Some(e) => Outcome::from_escalation(e, run.record.commit.is_some()),
                None => Outcome {
                    kind: OutcomeKind::Done,
                    reason: action.reason(),
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
        report.push(
            Level::Info,
            Some(&repo),
            Some(number),
            Some(&run.record.thread_id),
            "wait",
            "CI is red but the agent's thread is busy: the corrective turn waits for it",
        );
        return Ok(());
    }
    if options.dry_run {
        report.push(
            Level::Info,
            Some(&repo),
            Some(number),
            Some(&run.record.thread_id),
            "fix_forward",
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
    report.push(
        Level::Info,
        Some(&repo),
        Some(number),
        Some(&run.record.thread_id),
        "fix_forward",
        format!("corrective turn {attempt} sent for red commit {commit}"),
    );
    Ok(())
}

/// Finishes a recorded outcome: labels and issue state, the doorbell, and the
/// in-progress label last. Every step is idempotent.
async fn finish(
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
        OutcomeKind::NeedsHuman | OutcomeKind::Frozen => {
            // The ready label goes too, or the next poll dispatches it again.
            tracker
                .remove_label(&repo, number, &config.ready_label)
                .await?;
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
            kind: outcome.kind,
            repo: repo.clone(),
            issue: number,
            reason: outcome.reason.clone(),
            thread_link: ports.executor.thread_link(&run.record.thread_id),
        };
        let rung = ring_all(ports.notifiers, &bell).await;
        for (name, e) in &rung.failed {
            report.push(
                Level::Warn,
                Some(&repo),
                Some(number),
                Some(&run.record.thread_id),
                "ring",
                format!("{name} could not ring: {e}"),
            );
        }
        if !rung.rung() {
            return Err(PortError::Transient {
                message: "the doorbell failed on every notifier; it rings again next tick".into(),
            });
        }
        report.push(
            Level::Info,
            Some(&repo),
            Some(number),
            Some(&run.record.thread_id),
            "ring",
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
