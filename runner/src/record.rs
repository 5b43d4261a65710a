//! What a run records as items end: each attempt's verdict (the
//! completion rule over what its agent did), its row's status, its spend
//! and its line in the session; rows refused before an agent starts; and,
//! at the end, every row the run left ⏳ written or named.
//!
//! It does not start or stop agents (the rounds do).

use std::path::Path;
use std::time::Duration;

use checklist::sut::{Item, Status};

use crate::agent::{self, AgentJob, AgentRun};
use crate::campaign::{Campaign, running_ids};
use crate::decide::progress::Counts;
use crate::decide::{self, FailReason, RunEvidence};
use crate::event::{Event, ItemEnd};
use crate::files;
use crate::live::Live;
use crate::state::{ItemRecord, ItemStatus};
use crate::writer::read_checklist;
use crate::{Error, rel};

/// How one attempt ended, from its agent's run.
fn verdict(
    campaign: &Campaign,
    item: &Item,
    result: &Result<AgentRun, agent::AgentError>,
) -> ItemEnd {
    match result {
        Err(e) => ItemEnd::Failed(e.to_string()),
        Ok(run) if run.cancelled => ItemEnd::Stopped,
        Ok(run) => {
            let report = campaign.item_dir(item).join("FINAL_REPORT.md");
            let evidence = RunEvidence {
                id: &item.id,
                exit_code: run.exit_code,
                timed_out: run.timed_out,
                output: &run.output,
                report_bytes: std::fs::metadata(&report).ok().map(|m| m.len()),
            };
            match decide::judge(&evidence) {
                Ok(()) => ItemEnd::Done,
                Err(FailReason::TimedOut) => {
                    ItemEnd::Failed(format!("killed at the timeout ({:?})", campaign.timeout))
                }
                // What a full disk swallows (the marker in the agent's log,
                // its report) is not the agent's failure: the row goes back
                // to to-do, never ❌ for a result that was lost.
                Err(
                    reason @ (FailReason::NoCompletionMarker
                    | FailReason::NoReport
                    | FailReason::EmptyReport),
                ) if !files::has_room(&campaign.root) => ItemEnd::Unkept(format!(
                    "{reason}, and the disk is full: what it wrote may be lost; `afk run --resume` runs it again"
                )),
                Err(reason) => {
                    // The agent's own words (its error, a denied tool and
                    // what to configure), whatever rule it failed.
                    let mut why = reason.to_string();
                    if let Some(said) = &run.said {
                        why.push_str(": ");
                        why.push_str(said);
                    }
                    ItemEnd::Failed(why)
                }
            }
        }
    }
}

pub(crate) fn finish_item(
    campaign: &Campaign,
    live: &mut Live<'_>,
    item: &Item,
    job: &AgentJob,
    result: Result<AgentRun, agent::AgentError>,
) -> Result<(), Error> {
    let root = &campaign.root;
    let path = &campaign.checklist_path;
    live.active.in_flight.retain(|f| f.id != item.id);
    let log = rel(root, &job.log);
    let end = verdict(campaign, item, &result);
    let (status, recorded, reason) = match &end {
        ItemEnd::Done => (Status::Done, ItemStatus::Done, None),
        ItemEnd::Stopped => (
            Status::Todo,
            ItemStatus::Stopped,
            Some("stopped; back to to-do".to_owned()),
        ),
        ItemEnd::Failed(why) => (Status::Failed, ItemStatus::Failed, Some(why.clone())),
        ItemEnd::Unkept(why) => (Status::Todo, ItemStatus::Stopped, Some(why.clone())),
    };
    // The money is spent whether or not the row can be recorded, and the
    // row is recorded whether or not the money can: both are tried, and
    // what failed ends the run after this item is accounted for.
    let charged = match agent::charge_of(&campaign.runtime, job, &result) {
        Some((cost, cap)) => live.charge(cost, cap),
        None => Ok(()),
    };
    let marked = live.record(&item.id, status);
    live.save_active(root);
    let run = result.as_ref().ok();
    let duration = run.map_or(Duration::ZERO, |r| r.duration);
    let cost_usd = run.and_then(|r| r.cost_usd);
    let counts = read_checklist(path)
        .map(|(_, c, _)| Counts::of(&c))
        .unwrap_or_default();
    live.emit(Event::ItemEnded {
        id: item.id.clone(),
        end,
        seconds: duration.as_secs_f64(),
        log: log.clone(),
        counts,
    });
    live.session.items.push(ItemRecord {
        id: item.id.clone(),
        tier: item.tier,
        status: recorded,
        reason,
        exit_code: run.and_then(|r| r.exit_code),
        duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        log,
        cost_usd,
    });
    live.save_session();
    live.emit(Event::Progress(counts));
    charged.and(marked)
}

/// Rows with a cell over the cap: ❌ at once with the reason, no agent
/// started.
pub(crate) fn refuse_rows(
    campaign: &Campaign,
    live: &mut Live<'_>,
    rows: &[&Item],
) -> Result<(), Error> {
    let path = &campaign.checklist_path;
    let ids: Vec<&str> = rows.iter().map(|i| i.id.as_str()).collect();
    let marked = live.writer.mark(&ids, Status::Failed)?;
    live.report_problems(&marked.problems);
    let counts = read_checklist(path)
        .map(|(_, c, _)| Counts::of(&c))
        .unwrap_or_default();
    for item in rows.iter().filter(|i| !marked.missing.contains(&i.id)) {
        let why = decide::oversized_cell(item).unwrap_or_default();
        let reason = format!("{why} (no agent was started)");
        live.emit(Event::ItemEnded {
            id: item.id.clone(),
            end: ItemEnd::Failed(reason.clone()),
            seconds: 0.0,
            log: String::new(),
            counts,
        });
        live.session.items.push(ItemRecord {
            id: item.id.clone(),
            tier: item.tier,
            status: ItemStatus::Failed,
            reason: Some(reason),
            exit_code: None,
            duration_ms: 0,
            log: String::new(),
            cost_usd: None,
        });
    }
    live.save_session();
    Ok(())
}

/// At the end of a run: every row it marked ⏳ and could not record is
/// tried once more (a full disk may have room again), grouped by the
/// status it is owed; those still ⏳ are named, with that status, so that
/// nothing is left ⏳ unsaid. `--resume` runs them again.
pub(crate) fn settle(live: &mut Live<'_>, path: &Path) {
    // An edit that reached the file afk replaced last, after it did, is
    // carried over now: no later write of this run would.
    if let Err(e) = live.writer.catch_late_edit() {
        live.emit(Event::Warning(e.to_string()));
    }
    if live.owed.is_empty() {
        return;
    }
    let owed: Vec<(String, Status)> = live
        .owed
        .iter()
        .map(|(id, status)| (id.clone(), status.unwrap_or(Status::Todo)))
        .collect();
    let mut reason = String::new();
    for status in [Status::Done, Status::Failed, Status::Todo] {
        let ids: Vec<&str> = owed
            .iter()
            .filter(|(_, s)| *s == status)
            .map(|(id, _)| id.as_str())
            .collect();
        if !ids.is_empty()
            && let Err(e) = live.writer.mark(&ids, status)
        {
            reason = e.to_string();
        }
    }
    let still: Vec<String> = read_checklist(path)
        .map(|(_, c, _)| running_ids(&c).into_iter().map(str::to_owned).collect())
        .unwrap_or_else(|_| owed.iter().map(|(id, _)| id.clone()).collect());
    let rows: Vec<(String, Status)> = owed
        .into_iter()
        .filter(|(id, _)| still.contains(id))
        .collect();
    live.owed.clear();
    if !rows.is_empty() {
        let path = live.checklist.clone();
        live.emit(Event::Unrecorded { path, rows, reason });
    }
}
