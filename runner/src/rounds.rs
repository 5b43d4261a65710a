//! `afk run`: rounds of concurrent agents over the backlog.
//!
//! Each round takes a batch ([`crate::decide::select_batch`]), marks it ⏳,
//! runs one agent per row at once and judges each as it ends
//! ([`crate::decide::judge`]). The checklist is re-read before every write,
//! one cell changes per row, and the file is replaced atomically. The active
//! run file records the agents' process groups as they start, so a later
//! `--resume` or `afk cancel` can stop what a dead runner left behind.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use checklist::sut::{Item, Status};
use tokio::sync::{mpsc, watch};

use crate::agent::{self, AgentJob};
use crate::campaign::{Campaign, Mode, Settings, load_checklist, running_ids};
use crate::decide;
use crate::decide::progress::Counts;
use crate::event::{Event, Outcome};
use crate::live::{Live, stamp};
use crate::record::{finish_item, refuse_rows, settle};
use crate::state::{self, ActiveRun, InFlight, Session};
use crate::writer::{ChecklistWriter, read_checklist};
use crate::{Error, now_rfc3339, rel};

/// Why a run stops before its work runs out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StopReason {
    /// Ctrl-C (SIGINT).
    Interrupted = 1,
    /// `afk cancel` (SIGTERM).
    Cancelled = 2,
}

impl StopReason {
    fn outcome(self) -> Outcome {
        match self {
            StopReason::Interrupted => Outcome::Interrupted,
            StopReason::Cancelled => Outcome::Cancelled,
        }
    }
}

/// Where a stop comes from.
#[derive(Debug)]
pub enum Stops {
    /// This process's SIGINT and SIGTERM (the `afk` binary).
    Signals,
    /// A channel (tests and embedders): the first reason sent stops the run.
    Channel(watch::Receiver<Option<StopReason>>),
}

/// The stop reason shared by the signal task and the rounds.
#[derive(Debug, Clone, Default)]
struct StopFlag(Arc<AtomicU8>);

impl StopFlag {
    fn set(&self, why: StopReason) {
        let _ = self
            .0
            .compare_exchange(0, why as u8, Ordering::SeqCst, Ordering::SeqCst);
    }

    fn get(&self) -> Option<StopReason> {
        match self.0.load(Ordering::SeqCst) {
            1 => Some(StopReason::Interrupted),
            2 => Some(StopReason::Cancelled),
            _ => None,
        }
    }
}

/// `afk run`: works the backlog until it is done (finite), until synthesis
/// stops adding rows (infinite), or until it is stopped. Returns how it
/// ended; every step is reported to `events` as it happens.
///
/// # Errors
/// `Input` when the campaign is not valid or another runner holds it
/// (nothing was started or changed); `Failed` when the runtime cannot start.
pub fn run(
    root: &Path,
    settings: &Settings,
    stops: Stops,
    events: &mut dyn FnMut(Event),
) -> Result<Outcome, Error> {
    let campaign = Campaign::prepare(root, settings)?;
    let path = campaign.checklist_path.clone();

    // One runner per campaign, whatever the entry point (run, --resume, two
    // resumes at once): the lock is held until this function returns, and
    // the kernel drops it if this process dies.
    let active = state::read_active(root)?;
    let Some(_lock) = state::lock_campaign(root)? else {
        return Err(Error::input(match &active {
            Some(a) => format!(
                "a run is already active (pid {}, since {}); `afk status` shows it, `afk cancel` stops it",
                a.pid, a.started_at
            ),
            None => "a run is already active in this campaign; `afk status` shows it".to_owned(),
        }));
    };
    // A runner the active file names that still runs (same pid and start
    // time) is alive even when its lock file was removed: never taken over,
    // never resumed over.
    if let Some(a) = &active
        && a.pid > 1
        && a.pid != std::process::id()
        && a.runner_started.is_some()
        && afk_process::start_time(a.pid) == a.runner_started
        && a.campaign == state::campaign_id(root)
    {
        return Err(Error::input(format!(
            "run pid {} (since {}) still works this campaign, though it holds no lock (was {} removed?); stop it first",
            a.pid,
            a.started_at,
            state::state_dir(root).join("lock").display()
        )));
    }
    // What the campaign spent before: this run continues from it.
    let spend_before = state::read_spend(root)?;
    let (_, parsed) = load_checklist(&path)?;
    let running = running_ids(&parsed);
    if !settings.resume && (active.is_some() || !running.is_empty()) {
        let who = active
            .as_ref()
            .map(|a| format!("run pid {} died without cleaning up", a.pid))
            .unwrap_or_else(|| "no run is active".into());
        return Err(Error::input(format!(
            "{who}; rows marked ⏳: {}. `afk run --resume` turns them back to to-do and starts again",
            if running.is_empty() {
                "none".into()
            } else {
                running.join(", ")
            }
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::failed(format!("cannot start the async runtime: {e}")))?;
    if let Some(before) = &spend_before
        && (before.spent_usd > 0.0 || campaign.budget_usd.is_some())
    {
        events(Event::SpendCarried {
            spent_usd: before.spent_usd,
            budget_usd: campaign.budget_usd,
        });
    }
    let spend_before = spend_before.unwrap_or_default();
    if settings.resume {
        for note in crate::recovery::clean_up_dead_run(root, &path, active.as_ref())? {
            events(Event::Resumed(note));
        }
    }
    for note in crate::recovery::sweep_stray_temps(root, &path) {
        events(Event::Warning(note));
    }

    let session_path = state::state_dir(root).join(format!("session-{}.json", stamp()));
    let started_at = now_rfc3339();
    let active = ActiveRun {
        campaign: state::campaign_id(root),
        runner_started: afk_process::start_time(std::process::id()),
        pid: std::process::id(),
        started_at: started_at.clone(),
        session: rel(root, &session_path),
        checklist: rel(root, &path),
        in_flight: Vec::new(),
    };
    if !state::claim_active(root, &active)? {
        return Err(Error::input(
            "another run claimed this campaign a moment ago; `afk status` shows it",
        ));
    }
    let session = Session {
        started_at,
        ended_at: None,
        pid: std::process::id(),
        checklist: rel(root, &path),
        mode: campaign.mode.as_str().to_owned(),
        runtime: campaign.runtime.program().to_owned(),
        batch_size: campaign.batch_size,
        timeout_seconds: campaign.timeout.as_secs_f64(),
        outcome: Outcome::Running,
        rounds: 0,
        synthesis_rounds: 0,
        rows_added: 0,
        items: Vec::new(),
        tier_reports: Vec::new(),
        spend: crate::decide::spend::Spend::with_budget(campaign.budget_usd)
            .carrying(spend_before.spent_usd),
    };
    let mut live = Live {
        root: root.to_owned(),
        checklist: rel(root, &path),
        writer: ChecklistWriter::new(&path),
        active,
        spend_before,
        session_path,
        session,
        events,
        problems_seen: Default::default(),
        owed: Vec::new(),
    };
    live.save_session();

    let result = runtime.block_on(async {
        let flag = StopFlag::default();
        let (cancel_tx, cancel) = watch::channel(false);
        watch_stops(stops, flag.clone(), cancel_tx)?;
        drive(&campaign, &mut live, &flag, &cancel).await
    });
    let outcome = match &result {
        Ok(Some(why)) => why.outcome(),
        Ok(None) if live.session.spend.exhausted() => Outcome::BudgetSpent,
        Ok(None) if live.session.failed() > 0 => Outcome::FinishedWithFailures,
        Ok(None) => Outcome::Finished,
        Err(e) => {
            live.emit(Event::Error(e.to_string()));
            Outcome::Error
        }
    };
    // Every row this run marked ⏳ gets its outcome written, or is named.
    settle(&mut live, &path);
    live.session.outcome = outcome;
    live.session.ended_at = Some(now_rfc3339());
    live.save_session();
    // An agent stopped mid-write (a full disk ends the run at any step, and
    // stopping kills the agents' trees) may have left a temporary file of
    // its own (`afk finding add`): swept while this run still holds the
    // lock, so nothing half-written outlives the run.
    for note in crate::recovery::sweep_stray_temps(root, &path) {
        live.emit(Event::Warning(note));
    }
    if let Err(e) = state::clear_active(root) {
        live.emit(Event::Warning(e.to_string()));
    }
    let counts = read_checklist(&path)
        .map(|(_, c, _)| Counts::of(&c))
        .unwrap_or_default();
    let session = rel(root, &live.session_path);
    live.emit(Event::Ended {
        outcome,
        counts,
        session,
    });
    Ok(outcome)
}

/// Turns the stop source into the shared flag and the agents' cancel.
fn watch_stops(stops: Stops, flag: StopFlag, cancel: watch::Sender<bool>) -> Result<(), Error> {
    match stops {
        Stops::Signals => {
            use tokio::signal::unix::{SignalKind, signal};
            let mut int = signal(SignalKind::interrupt())
                .map_err(|e| Error::failed(format!("cannot handle Ctrl-C: {e}")))?;
            let mut term = signal(SignalKind::terminate())
                .map_err(|e| Error::failed(format!("cannot handle SIGTERM: {e}")))?;
            tokio::spawn(async move {
                let why = tokio::select! {
                    _ = int.recv() => StopReason::Interrupted,
                    _ = term.recv() => StopReason::Cancelled,
                };
                flag.set(why);
                let _ = cancel.send(true);
            });
        }
        Stops::Channel(mut rx) => {
            tokio::spawn(async move {
                loop {
                    if let Some(why) = *rx.borrow_and_update() {
                        flag.set(why);
                        let _ = cancel.send(true);
                        return;
                    }
                    if rx.changed().await.is_err() {
                        return;
                    }
                }
            });
        }
    }
    Ok(())
}

/// The rounds: returns why it stopped (`None` when the work ran out).
async fn drive(
    campaign: &Campaign,
    live: &mut Live<'_>,
    flag: &StopFlag,
    cancel: &watch::Receiver<bool>,
) -> Result<Option<StopReason>, Error> {
    let path = &campaign.checklist_path;
    let mut asked: Vec<u32> = Vec::new();
    let mut idle = 0;
    loop {
        if let Some(why) = flag.get() {
            return Ok(Some(why));
        }
        if live.budget_spent() {
            return Ok(None);
        }
        if let Some(why) = live.writer.disk_full() {
            return Err(Error::failed(format!(
                "the disk holding the checklist is full ({why}): its rows were recorded \
                 in place, and no new agent starts; free some space, then `afk run --resume`"
            )));
        }
        // As it is now: someone may have edited it, and a row that does not
        // parse is reported and left alone, not a reason to stop.
        let (_, parsed, problems) = read_checklist(path)?;
        live.report_problems(&problems);
        live.emit(Event::Progress(Counts::of(&parsed)));
        crate::reports::tier_reports(campaign, live, &parsed, &mut asked, cancel).await?;
        if let Some(why) = flag.get() {
            return Ok(Some(why));
        }
        // The tier reports may have spent the rest.
        if live.budget_spent() {
            return Ok(None);
        }
        let batch: Vec<Item> = decide::select_batch(&parsed, campaign.batch_size)
            .into_iter()
            .cloned()
            .collect();
        if batch.is_empty() {
            if campaign.mode == Mode::Finite {
                return Ok(None);
            }
            let added = crate::reports::synthesise(campaign, live, &parsed, cancel).await?;
            if added == 0 {
                idle += 1;
                if idle >= campaign.idle_rounds {
                    live.emit(Event::IdleStop { rounds: idle });
                    return Ok(flag.get());
                }
            } else {
                idle = 0;
            }
            continue;
        }
        live.session.rounds += 1;
        run_round(campaign, live, &batch, cancel).await?;
    }
}

/// The next free `agent-<n>.log` in `results`.
fn next_log(results: &Path) -> PathBuf {
    let n = (1..)
        .find(|n| !results.join(format!("agent-{n}.log")).exists())
        .unwrap_or(1);
    results.join(format!("agent-{n}.log"))
}

/// Prepares one item's directory and job: its results folder, a fresh log,
/// and any report of an earlier attempt moved aside (it must not pass this
/// one).
fn item_job(campaign: &Campaign, item: &Item, left: Option<f64>) -> Result<AgentJob, Error> {
    // A run directory (or a parent) linked outside the campaign is refused
    // before anything is created there: the agent would work, and afk would
    // write, elsewhere.
    let results =
        crate::files::create_dir_inside(&campaign.root, &campaign.item_dir(item).join("results"))
            .map_err(|e| Error::failed(format!("the run directory of {}: {e}", item.id)))?;
    let dir = results
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| Error::failed(format!("the run directory of {} has no parent", item.id)))?;
    let log = next_log(&results);
    let report = dir.join("FINAL_REPORT.md");
    if report.exists() {
        let kept = results.join(format!(
            "FINAL_REPORT.before-{}.md",
            log.file_stem().and_then(|s| s.to_str()).unwrap_or("agent")
        ));
        std::fs::rename(&report, &kept).map_err(|e| {
            Error::failed(format!(
                "cannot move the old report {}: {e}",
                report.display()
            ))
        })?;
    }
    let prompt = campaign
        .item_prompt(item)
        .map_err(|e| Error::input(format!("the prompt template: {e}")))?;
    Ok(AgentJob {
        prompt,
        env: campaign.item_env(item),
        cwd: dir,
        log,
        timeout: campaign.timeout,
        max_budget_usd: left,
    })
}

/// One round: mark the batch ⏳, run one agent per row concurrently, judge
/// each as it ends.
async fn run_round(
    campaign: &Campaign,
    live: &mut Live<'_>,
    batch: &[Item],
    cancel: &watch::Receiver<bool>,
) -> Result<(), Error> {
    let root = &campaign.root;
    // A row with a cell over the cap fails at once, alone: its agent would
    // get a title it cannot take (the environment's limit) for no good.
    let (refused, batch): (Vec<&Item>, Vec<&Item>) = batch
        .iter()
        .partition(|item| decide::oversized_cell(item).is_some());
    // Every job is built before the first agent starts (and before a row is
    // marked): a job that cannot be built fails the round with nothing
    // started and nothing marked.
    let mut jobs = Vec::with_capacity(batch.len());
    for item in &batch {
        jobs.push((*item, item_job(campaign, item, live.session.spend.left())?));
    }
    if !refused.is_empty() {
        refuse_rows(campaign, live, &refused)?;
    }
    if batch.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = batch.iter().map(|i| i.id.as_str()).collect();
    let marked = live.writer.mark(&ids, Status::Running)?;
    live.report_problems(&marked.problems);
    let vanished = marked.missing;
    for id in &vanished {
        live.emit(Event::ItemVanished { id: id.clone() });
    }
    live.owed.extend(
        ids.iter()
            .filter(|id| !vanished.iter().any(|v| v == *id))
            .map(|id| ((*id).to_owned(), None)),
    );
    let (pid_tx, mut pid_rx) = mpsc::unbounded_channel::<(String, u32)>();
    // The round's own stop, raised by the run's (Ctrl-C, `afk cancel`) or
    // by a failure of the round itself: then every agent still at work is
    // stopped, and waited for, before the error ends the run. No agent
    // outlives its runner writing into the campaign.
    let (stop_tx, stop) = watch::channel(false);
    let forward = {
        let mut run_stop = cancel.clone();
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            if run_stop.wait_for(|c| *c).await.is_ok() {
                let _ = stop_tx.send(true);
            }
        })
    };
    let mut set = tokio::task::JoinSet::new();
    for (item, job) in jobs.into_iter().filter(|(i, _)| !vanished.contains(&i.id)) {
        live.active.in_flight.push(InFlight {
            id: item.id.clone(),
            pgid: None,
            pgid_started: None,
            started_at: now_rfc3339(),
            log: rel(root, &job.log),
        });
        live.emit(Event::ItemStarted {
            id: item.id.clone(),
            title: item.title.clone(),
            log: rel(root, &job.log),
        });
        let runtime = campaign.runtime.clone();
        let cancel = stop.clone();
        let tx = pid_tx.clone();
        let item = item.clone();
        set.spawn(async move {
            let id = item.id.clone();
            let result = agent::run(&runtime, &job, cancel, move |pid| {
                let _ = tx.send((id, pid));
            })
            .await;
            (item, job, result)
        });
    }
    live.save_active(root);
    let mut failure: Option<Error> = None;
    while !set.is_empty() {
        tokio::select! {
            Some((id, pgid)) = pid_rx.recv() => {
                if let Some(f) = live.active.in_flight.iter_mut().find(|f| f.id == id) {
                    f.pgid = Some(pgid);
                    f.pgid_started = afk_process::start_time(pgid);
                }
                live.save_active(root);
            }
            Some(joined) = set.join_next() => {
                // After a failure the others are stopped, and each is still
                // recorded as it ends (what cannot be, the run names).
                let finished = joined
                    .map_err(|e| Error::failed(format!("an agent task failed: {e}")))
                    .and_then(|(item, job, result)| finish_item(campaign, live, &item, &job, result));
                if let Err(e) = finished {
                    let _ = stop_tx.send(true);
                    failure.get_or_insert(e);
                }
            }
        }
    }
    forward.abort();
    failure.map_or(Ok(()), Err)
}
