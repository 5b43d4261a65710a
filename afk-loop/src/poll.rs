//! The poll tick: which trusted, unblocked, allowlisted ready issues start
//! now (one per repository, by priority), and their dispatch in crash-safe
//! order: run record, thread, lock.

use std::collections::BTreeMap;

use afk_core::Config;
use afk_core::dispatch::{hold_for_capacity, hold_for_limits, plan_dispatch};
use afk_core::land::{LandMode, run_branch};
use afk_core::ports::{
    ExecutorSnapshot, PortError, PortResult, RepoScan, ThreadSpec, TrackedIssue,
};
use afk_core::prompt::{ApprovedTask, Branches, one_line, opening_prompt};
use afk_core::record::Landing;
use afk_core::record::RunRecord;
use afk_core::types::{Issue, LabelTrust, Phase, blocked_by_refs, priority_from_labels};

use crate::ports::Tracker;
use crate::report::{About, ReportAction, TickReport};
use crate::{Ports, TickOptions, past};

/// What the poll tick learned about one repository.
struct RepoFacts {
    in_flight: bool,
    issues: Vec<(Issue, TrackedIssue)>,
}

/// "Blocked by #N" references past this many are not read one by one: the
/// issue counts as blocked, and the report says why (a body can name
/// thousands, and each one read is a request).
pub const MAX_BLOCKER_REFS: usize = 50;

/// Trust and blockers for the issues that could win the repository's slot;
/// the batched scan already read the rest.
async fn gather(
    tracker: &dyn Tracker,
    config: &Config,
    repo: &str,
    scan: RepoScan,
    report: &mut TickReport,
) -> PortResult<RepoFacts> {
    let in_flight = !scan.locked.is_empty();
    let mut ready = scan.ready;
    ready.sort_by_key(|t| (priority_from_labels(&t.labels), t.number));
    let mut facts = RepoFacts {
        in_flight,
        issues: Vec::new(),
    };
    let mut found = false;
    for tracked in ready {
        let mut issue = Issue {
            repo: repo.to_owned(),
            number: tracked.number,
            title: tracked.title.clone(),
            labels: tracked.labels.clone(),
            open_blockers: Vec::new(),
            // Read below only for the issue that can win the slot; every
            // other one (its repository is locked, it is handed back or
            // stopped, or a better one already won) stays not read, which
            // the policy never dispatches: it skips the issue for the
            // earlier rule it fails, or because its trust was not read.
            label_trust: LabelTrust::NotRead,
            priority: priority_from_labels(&tracked.labels),
        };
        let worth_reading = !in_flight
            && !found
            && !tracked.has_label(&config.ready_for_human_label)
            && !tracked.has_label(&config.stop_label);
        if worth_reading {
            // An issue that cannot be read fails alone: it stays not read
            // (never dispatched) and the next candidate gets its chance.
            // Only a rate limit or a refused credential, which every read
            // would meet, fails the repository.
            let trust = match tracker
                .label_trust(repo, tracked.number, &config.ready_label)
                .await
            {
                Ok(t) => t,
                Err(e) if fails_alone(&e) => {
                    report.error(
                        About::issue(repo, tracked.number),
                        ReportAction::Read,
                        format!("reading who applied its ready label failed: {e}; the next candidate is considered"),
                    );
                    facts.issues.push((issue, tracked));
                    continue;
                }
                Err(e) => return Err(e),
            };
            issue.label_trust = LabelTrust::read(trust.trusted);
            if !trust.trusted {
                report.info(
                    About::issue(repo, tracked.number),
                    ReportAction::Untrusted,
                    trust.reason,
                );
            } else {
                let refs = blocked_by_refs(&tracked.body);
                if refs.len() > MAX_BLOCKER_REFS {
                    report.warn(
                        About::issue(repo, tracked.number),
                        ReportAction::Skip,
                        format!(
                            "counts as blocked: its body names {} blocker references, more than the {MAX_BLOCKER_REFS} afk reads; trim the list or use GitHub's issue dependencies",
                            refs.len()
                        ),
                    );
                    issue.open_blockers = refs.into_iter().take(MAX_BLOCKER_REFS).collect();
                } else {
                    match tracker.open_blockers(repo, &tracked).await {
                        Ok(open) => issue.open_blockers = open,
                        Err(e) if fails_alone(&e) => {
                            report.error(
                                About::issue(repo, tracked.number),
                                ReportAction::Read,
                                format!("reading its blockers failed: {e}; the next candidate is considered"),
                            );
                            issue.label_trust = LabelTrust::NotRead;
                            facts.issues.push((issue, tracked));
                            continue;
                        }
                        Err(e) => return Err(e),
                    }
                }
                found = issue.open_blockers.is_empty();
            }
        }
        facts.issues.push((issue, tracked));
    }
    Ok(facts)
}

/// Whether a read's failure is the issue's own (it fails alone), not one
/// every read of the repository would meet (a rate limit, a refused
/// credential).
fn fails_alone(e: &PortError) -> bool {
    !matches!(e, PortError::RateLimited { .. } | PortError::Auth { .. })
}

/// When the tracker's budget is below the floor, why nothing new starts.
fn below_floor(tracker: &dyn Tracker, config: &Config) -> Option<String> {
    if let Some(b) = tracker.rate_budget()
        && b.remaining < config.rate_floor
    {
        let reset = b
            .reset_at
            .map(|t| format!(" (the window resets at {t})"))
            .unwrap_or_default();
        return Some(format!(
            "GitHub's GraphQL budget has {} of {} points left, below AFK_RATE_FLOOR={}: nothing new starts this tick{reset}; runs in flight are still driven by the watcher",
            b.remaining, b.limit, config.rate_floor
        ));
    }
    if let Some(left) = tracker.rate_limit_remaining()
        && left < config.rate_floor
    {
        return Some(format!(
            "GitHub's REST budget has {left} requests left, below AFK_RATE_FLOOR={}: nothing new starts this tick; runs in flight are still driven by the watcher",
            config.rate_floor
        ));
    }
    None
}

fn disabled(message: &str) -> TickReport {
    let mut report = TickReport {
        disabled: true,
        ..TickReport::default()
    };
    report.info(About::TICK, ReportAction::Disabled, message);
    report
}

/// The report of a poll tick that the configuration disables (kill switch on,
/// or nothing enrolled), before any I/O; `None` when the poller is armed.
pub fn poll_disabled(config: &Config) -> Option<TickReport> {
    let mut report = if config.kill_switch {
        disabled("the kill switch is on: the poller does nothing")
    } else if config.allowlist.is_empty() {
        // Repositories winding down are watched, never dispatched to.
        disabled("the allowlist is empty: no repository is enrolled")
    } else {
        return None;
    };
    report.health.push(afk_core::health::enrolment_signal(
        config.kill_switch,
        config.allowlist.len(),
    ));
    Some(report)
}

/// The report of a watch tick that the configuration disables (nothing
/// enrolled); `None` otherwise. The kill switch does not disable the
/// watcher: it still observes and finalises runs.
pub fn watch_disabled(config: &Config) -> Option<TickReport> {
    (config.allowlist.is_empty() && config.winding_down.is_empty())
        .then(|| disabled("the allowlist is empty: no repository is enrolled"))
}

/// The poll tick: decide which ready issues may start now and dispatch them.
pub async fn poll_tick(ports: &Ports<'_>, config: &Config, options: &TickOptions) -> TickReport {
    if let Some(report) = poll_disabled(config) {
        return report;
    }
    let mut report = TickReport::default();
    report.health.push(afk_core::health::enrolment_signal(
        config.kill_switch,
        config.allowlist.len(),
    ));
    let mut issues = Vec::new();
    let mut tracked: BTreeMap<(String, u64), TrackedIssue> = BTreeMap::new();
    let mut in_flight = Vec::new();
    let mut uncounted = false;
    // One batched read of every repository's ready and locked issues.
    let scans = ports
        .tracker
        .scan(
            &config.allowlist,
            Some(&config.ready_label),
            &config.in_progress_label,
        )
        .await;
    if let Some(why) = below_floor(ports.tracker, config) {
        report.warn(About::TICK, ReportAction::RateFloor, why);
        return report;
    }
    for (repo, scan) in config.allowlist.iter().zip(scans) {
        report.saw_tracker(&scan);
        let scan = match scan {
            Ok(s) => s,
            Err(e) => {
                report.error(
                    About::repo(repo),
                    ReportAction::Read,
                    format!("reading the repository failed: {e}"),
                );
                continue;
            }
        };
        if past(options.deadline, ports.clock.now()) {
            // A repository not read within the deadline fails the tick: it
            // is never skipped silently.
            report.error(
                About::repo(repo),
                ReportAction::Deadline,
                "tick deadline reached before this repository's candidates were read; it is read next tick",
            );
            continue;
        }
        match gather(ports.tracker, config, repo, scan, &mut report).await {
            Ok(facts) => {
                for (_, t) in facts
                    .issues
                    .iter()
                    .filter(|(_, t)| t.has_label(&config.stop_label))
                {
                    if let Err(e) =
                        lock_stopped_dispatch(ports, config, options, t, &mut report).await
                    {
                        report.error(
                            About::issue(repo, t.number),
                            ReportAction::Stop,
                            format!(
                                "checking a stopped issue for an unlocked dispatch failed: {e}"
                            ),
                        );
                    }
                }
                if facts.in_flight {
                    in_flight.push(repo.clone());
                }
                for (issue, t) in facts.issues {
                    tracked.insert((repo.clone(), issue.number), t);
                    issues.push(issue);
                }
            }
            Err(e) => {
                uncounted = true;
                report.saw_tracker_error(&e);
                report.error(
                    About::repo(repo),
                    ReportAction::Read,
                    format!("reading the repository failed: {e}"),
                );
            }
        }
    }
    let plan = plan_dispatch(&issues, config, &in_flight);
    report.skipped = plan.skipped.len();
    for s in &plan.skipped {
        report.info(
            About::issue(s.repo, s.number),
            ReportAction::Skip,
            s.reason.to_string(),
        );
    }
    // The operator's limits (rule 7 of the core's policy), dry run or not.
    let counted = (!uncounted).then_some(in_flight.len());
    let (start, held) = hold_for_limits(plan.decisions, config, counted);
    for (d, hold) in &held {
        report.info(
            About::issue(&d.repo, d.number),
            ReportAction::Wait,
            hold.to_string(),
        );
    }
    // One executor read before any dispatch: its limit on agents at once
    // decides which decisions start now (rule 6 of the core's policy).
    let mut snapshot: Option<ExecutorSnapshot> = None;
    let mut decisions = start;
    if !decisions.is_empty() && !options.dry_run {
        let read = ports.executor.snapshot(&[]).await;
        report.saw_executor(&read);
        match read {
            Ok(s) => {
                let (start, wait) = hold_for_capacity(decisions, s.capacity);
                for d in &wait {
                    let limit = s.capacity.map_or(0, |c| c.max);
                    report.info(
                        About::issue(&d.repo, d.number),
                        ReportAction::Wait,
                        format!(
                            "waits for a free agent slot: {limit} agent(s) at most run at once (AFK_LOCAL_MAX_AGENTS); it starts on a later tick"
                        ),
                    );
                }
                decisions = start;
                snapshot = Some(s);
            }
            Err(e) => {
                report.error(
                    About::TICK,
                    ReportAction::Read,
                    format!("reading the executor failed: {e}; nothing was dispatched"),
                );
                return report;
            }
        }
    }
    for d in &decisions {
        let key = (d.repo.clone(), d.number);
        if options.dry_run {
            report.info(
                About::issue(&d.repo, d.number),
                ReportAction::Dispatch,
                format!("dry run: would dispatch ({})", d.reason),
            );
            continue;
        }
        if past(options.deadline, ports.clock.now()) {
            report.warn(
                About::issue(&d.repo, d.number),
                ReportAction::Deadline,
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
                report.info(
                    About::run(&d.repo, d.number, &thread),
                    ReportAction::Dispatch,
                    d.reason.clone(),
                );
            }
            Err(e) => report.error(
                About::issue(&d.repo, d.number),
                ReportAction::Dispatch,
                format!("dispatch failed: {e}"),
            ),
        }
    }
    report
}

/// A ready issue that carries the stop label may hold a dispatch that died
/// between starting its agent and taking the lock: its run record exists but
/// nothing watches it. Lock it, so that the watcher's next tick stops the
/// agent like any stopped run (the stop label keeps the poller from
/// finishing the dispatch).
async fn lock_stopped_dispatch(
    ports: &Ports<'_>,
    config: &Config,
    options: &TickOptions,
    issue: &TrackedIssue,
    report: &mut TickReport,
) -> PortResult<()> {
    let (repo, number) = (issue.repo.as_str(), issue.number);
    if issue.has_label(&config.in_progress_label) {
        return Ok(());
    }
    let Some(comment) = ports.tracker.progress_comment(repo, number).await? else {
        return Ok(());
    };
    let unfinished =
        matches!(checklist::extract_record(&comment.body), Ok(Some(r)) if r.outcome.is_none());
    if !unfinished {
        return Ok(());
    }
    report.warn(
        About::issue(repo, number),
        ReportAction::Stop,
        if options.dry_run {
            "dry run: would lock a stopped issue whose dispatch died before its lock"
        } else {
            "a stopped issue holds a dispatch that died before its lock: locked, so the watcher stops its agent"
        },
    );
    if !options.dry_run {
        ports
            .tracker
            .add_label(repo, number, &config.in_progress_label)
            .await?;
    }
    Ok(())
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
    // Only what a trusted person approved becomes the task: the title and
    // body the trust check proved unchanged, and trusted collaborators'
    // comments. Read before afk writes its own comment, from the same pages
    // the progress comment was looked for on (the tracker reads them once).
    let comments = ports.tracker.approved_comments(repo, number).await?;
    let prior = match &existing {
        Some(c) => checklist::extract_record(&c.body).map_err(|why| PortError::Permanent {
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
    // Where the change lands is fixed at dispatch: a setting changed
    // mid-run does not move a run's work to another branch.
    if record.landing.is_none() && config.land_mode(repo) == LandMode::PullRequest {
        record.landing = Some(Landing::on(run_branch(number, &issue.title)));
    }
    let run_branch = record.landing.as_ref().map(|l| l.branch.clone());
    // The record first, the thread second. The thread id is deterministic,
    // so the record can name it before it exists; and once the thread exists
    // the agent is at work, so the dispatch time must already be durable: a
    // re-run after a crash keeps it, and the watcher finds commits pushed
    // since. (Thread first would let a crash in between re-stamp the
    // dispatch later than the agent's first push.)
    let body = checklist::progress_body(Phase::Worktree, repo, number, &branch, &record);
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
        title: format!("{repo}#{number}: {}", one_line(&issue.title, 120)),
        branch: branch.clone(),
        prompt: opening_prompt(&ApprovedTask {
            repo,
            issue: number,
            title: &issue.title,
            body: &issue.body,
            comments: &comments,
            branches: Branches {
                base: &branch,
                run: run_branch.as_deref(),
            },
        }),
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
