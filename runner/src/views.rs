//! What `afk run --dry-run`, `status`, `history`, `dashboard` and `cancel`
//! show and do: the state files and the checklist read back, never changed
//! (but for `cancel`, which signals the runner, or tidies up after a dead
//! one).

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::campaign::running_ids;
use crate::campaign::{Campaign, Mode, Settings, load_checklist};
use crate::decide::progress::{Counts, tier_counts};
use crate::decide::{self, slug};
use crate::recovery::clean_up_dead_run;
use crate::state::{self, ItemStatus};
use crate::{Error, now, rel};

/// The next round's rows and prompts, as text; starts and changes nothing.
///
/// # Errors
/// `Input` for anything [`Campaign::prepare`] refuses.
pub fn dry_run(root: &Path, settings: &Settings) -> Result<String, Error> {
    let campaign = Campaign::prepare(root, settings)?;
    let (_, parsed) = load_checklist(&campaign.checklist_path)?;
    let running = running_ids(&parsed);
    let batch = decide::select_batch(&parsed, campaign.batch_size);
    let todo = Counts::of(&parsed).todo;
    let argv = campaign.runtime.argv();
    let mut out = format!(
        "afk run --dry-run: nothing is started and nothing changes.\nruntime: {} (prompt on stdin)\n",
        argv.join(" ")
    );
    if !running.is_empty() {
        out.push_str(&format!(
            "rows marked ⏳ (need --resume unless a run is active): {}\n",
            running.join(", ")
        ));
    }
    if batch.is_empty() {
        let next = match campaign.mode {
            Mode::Finite => "the run would finish at once",
            Mode::Infinite => "the next round would ask an agent for new rows",
        };
        out.push_str(&format!("no to-do rows: {next}.\n"));
        return Ok(out);
    }
    out.push_str(&format!(
        "the next round takes {} of {todo} to-do row(s) (batch size {}):\n",
        batch.len(),
        campaign.batch_size
    ));
    for item in &batch {
        if let Some(why) = decide::oversized_cell(item) {
            out.push_str(&format!(
                "\n## {} (tier {})\nwould fail at once, no agent started: {why}\n",
                item.id, item.tier
            ));
            continue;
        }
        let prompt = campaign
            .item_prompt(item)
            .map_err(|e| Error::input(format!("the prompt template: {e}")))?;
        out.push_str(&format!(
            "\n## {} — {} (tier {}, {})\nrun directory: {}\n----- prompt -----\n{}\n----- end of prompt -----\n",
            item.id,
            item.title,
            item.tier,
            if item.priority.is_empty() {
                "no priority"
            } else {
                &item.priority
            },
            rel(&campaign.root, &campaign.item_dir(item)),
            prompt.trim_end()
        ));
    }
    Ok(out)
}

fn elapsed_since(rfc3339: &str) -> String {
    afk_core::Timestamp::parse_rfc3339(rfc3339).map_or_else(
        |_| "?".into(),
        |then| afk_core::types::short_age(now().seconds_since(then)),
    )
}

fn counts_json(c: Counts) -> Value {
    json!({"total": c.total, "done": c.done, "failed": c.failed, "running": c.running})
}

/// The active run, described: `(text, json)`.
fn describe_active(root: &Path) -> Result<(String, Value), Error> {
    Ok(match state::read_active(root)? {
        None => ("no active run\n".into(), json!({"active": false})),
        Some(a) if !state::runner_alive(root) => (
            format!(
                "no active run: run pid {} (since {}) died without cleaning up; `afk run --resume` or `afk cancel` tidies it\n",
                a.pid, a.started_at
            ),
            json!({"active": false, "stale": a}),
        ),
        Some(a) => {
            let mut text = format!(
                "active run: pid {}, since {} ({})\n",
                a.pid,
                a.started_at,
                elapsed_since(&a.started_at)
            );
            for f in &a.in_flight {
                text.push_str(&format!(
                    "  ⏳ {:<14} for {:<8} log {}\n",
                    f.id,
                    elapsed_since(&f.started_at),
                    f.log
                ));
            }
            (text, json!({"active": true, "run": a}))
        }
    })
}

/// `afk status`: the active run and the checklist's totals.
///
/// # Errors
/// The checklist or the active-run file cannot be read.
pub fn status(root: &Path, checklist: &Path, as_json: bool) -> Result<String, Error> {
    let (text, mut value) = describe_active(root)?;
    let (_, parsed) = load_checklist(&root.join(checklist))?;
    let counts = Counts::of(&parsed);
    let last = state::session_files(root)
        .last()
        .and_then(|p| state::read_session(p).ok());
    if as_json {
        value["checklist"] = counts_json(counts);
        value["last_session"] = serde_json::to_value(&last).unwrap_or(Value::Null);
        return Ok(format!("{value:#}\n"));
    }
    let mut out = text;
    out.push_str(&format!("checklist: {counts}\n"));
    if let Some(s) = last {
        out.push_str(&format!(
            "last session: {} → {} ({})\n",
            s.started_at,
            s.ended_at.as_deref().unwrap_or("still running"),
            s.outcome.as_str()
        ));
        out.push_str(&format!("spend: {}\n", spent(&s)));
    }
    Ok(out)
}

/// A session's spend in words; a run whose agent reported no cost at all
/// says so rather than showing $0.
fn spent(s: &state::Session) -> String {
    if s.spend.spent_usd == 0.0 && s.spend.unreported > 0 {
        format!(
            "not reported by {} ({} agent run(s) without a cost)",
            s.runtime, s.spend.unreported
        )
    } else {
        s.spend.to_string()
    }
}

/// A session's spend in a table cell.
fn spent_cell(s: &state::Session) -> String {
    if s.spend.spent_usd == 0.0 && s.spend.unreported > 0 {
        "unreported".into()
    } else if s.spend.unreported > 0 {
        format!("${:.4}+?", s.spend.spent_usd)
    } else {
        format!("${:.4}", s.spend.spent_usd)
    }
}

/// `afk history`: one line per session, oldest first; a session file that
/// does not parse is shown with why, not skipped.
///
/// # Errors
/// Never for a bad session file; only the output encoding could fail.
pub fn history(root: &Path, as_json: bool) -> Result<String, Error> {
    let rows: Vec<(String, Result<state::Session, Error>)> = state::session_files(root)
        .into_iter()
        .map(|p| (rel(root, &p), state::read_session(&p)))
        .collect();
    if as_json {
        let list: Vec<Value> = rows
            .iter()
            .map(|(file, s)| match s {
                Ok(s) => serde_json::to_value(s).unwrap_or(Value::Null),
                Err(e) => json!({"file": file, "error": e.to_string()}),
            })
            .collect();
        return Ok(format!("{:#}\n", Value::Array(list)));
    }
    if rows.is_empty() {
        return Ok("no runs yet\n".into());
    }
    let mut out = format!(
        "{:<26} {:<24} {:>5} {:>5} {:>6} {:>11}  {}\n",
        "started", "outcome", "done", "fail", "added", "spent", "session"
    );
    for (file, s) in rows {
        match s {
            Ok(s) => out.push_str(&format!(
                "{:<26} {:<24} {:>5} {:>5} {:>6} {:>11}  {}\n",
                s.started_at,
                s.outcome.as_str(),
                s.count(ItemStatus::Done),
                s.count(ItemStatus::Failed),
                s.rows_added,
                spent_cell(&s),
                file
            )),
            Err(e) => out.push_str(&format!("{:<26} {e}\n", "?")),
        }
    }
    Ok(out)
}

/// `afk dashboard`: per-tier counts, tier reports, what is running, findings.
///
/// # Errors
/// The checklist or the active-run file cannot be read.
pub fn dashboard(root: &Path, checklist: &Path) -> Result<String, Error> {
    let (_, parsed) = load_checklist(&root.join(checklist))?;
    let mut out = format!(
        "{:<40} {:>5} {:>5} {:>5} {:>5}  report\n",
        "tier", "todo", "run", "done", "fail"
    );
    for t in tier_counts(&parsed) {
        let s = slug(t.number, &t.name);
        let report = root
            .join("runs")
            .join(&s)
            .join(format!("{s}-FINAL-REPORT.md"));
        let label: String = format!("Tier {}: {}", t.number, t.name)
            .chars()
            .take(40)
            .collect();
        let c = t.counts;
        out.push_str(&format!(
            "{label:<40} {:>5} {:>5} {:>5} {:>5}  {}\n",
            c.todo,
            c.running,
            c.done,
            c.failed,
            if report.exists() { "yes" } else { "-" }
        ));
    }
    out.push_str(&format!("total: {}\n\n", Counts::of(&parsed)));
    out.push_str(&describe_active(root)?.0);
    if let Some(s) = state::session_files(root)
        .last()
        .and_then(|p| state::read_session(p).ok())
    {
        out.push_str(&format!("spend (last run): {}\n", spent(&s)));
    }
    let (summary, _) = crate::findings::aggregate(root);
    out.push_str(&format!(
        "findings: {} {}\n",
        summary["total"], summary["by_kind"]
    ));
    Ok(out)
}

/// How `afk cancel` ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// Nothing was running.
    NothingActive,
    /// The runner had died; what was tidied after it.
    TidiedDeadRun {
        /// The dead runner's pid.
        pid: u32,
        /// What was done.
        notes: Vec<String>,
    },
    /// The runner stopped; these rows went back to to-do.
    Stopped {
        /// The runner's pid.
        pid: u32,
        /// The rows that were in flight.
        back_to_todo: Vec<String>,
    },
    /// The runner was told to stop but was still running at the deadline.
    StillRunning {
        /// The runner's pid.
        pid: u32,
    },
}

/// `afk cancel`: stops the active run (its agents are killed and their rows
/// go back to to-do) and waits up to `wait` for it to finish. A run that
/// already died is tidied up here instead.
///
/// # Errors
/// The state cannot be read, or the runner cannot be signalled.
pub fn cancel(root: &Path, checklist: &Path, wait: Duration) -> Result<Cancelled, Error> {
    let Some(active) = state::read_active(root)? else {
        return Ok(Cancelled::NothingActive);
    };
    let same_process = active.pid > 1
        && active.runner_started.is_some()
        && afk_process::start_time(active.pid) == active.runner_started;
    let same_campaign = active.campaign == state::campaign_id(root);
    if let Some(_lock) = state::lock_campaign(root)? {
        if same_process && same_campaign {
            // The runner the file names still runs, yet nobody holds the
            // lock: its lock file was removed under it. It is not dead, and
            // nothing of it is signalled by a file's say-so.
            return Err(Error::input(format!(
                "run pid {} still runs but does not hold {} (was the lock file removed?); nothing was signalled: stop that runner itself",
                active.pid,
                state::state_dir(root).join("lock").display()
            )));
        }
        // Nobody runs this campaign: tidy up after the dead run, holding the
        // lock so that no runner starts meanwhile. Nothing is signalled.
        let notes = clean_up_dead_run(root, &root.join(checklist), Some(&active))?;
        return Ok(Cancelled::TidiedDeadRun {
            pid: active.pid,
            notes,
        });
    }
    // A live runner holds this campaign: signal it only when the file names
    // that very process (same pid and start time), of this campaign, and
    // that process holds this campaign's lock (a copied or forged file,
    // even one with a real start time, must not make afk signal anyone
    // else). The runner stops its own agents; afk never signals them.
    if !(same_campaign && same_process && state::holds_campaign_lock(root, active.pid)) {
        return Err(Error::input(format!(
            "{} names run pid {} of {:?}, which is not the runner of this campaign; nothing was signalled",
            state::active_path(root).display(),
            active.pid,
            active.campaign
        )));
    }
    afk_process::terminate(active.pid)
        .map_err(|e| Error::failed(format!("cannot signal run pid {}: {e}", active.pid)))?;
    let started = Instant::now();
    while started.elapsed() < wait {
        if state::read_active(root)?.is_none_or(|a| a.pid != active.pid) {
            return Ok(Cancelled::Stopped {
                pid: active.pid,
                back_to_todo: active.in_flight.iter().map(|f| f.id.clone()).collect(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(Cancelled::StillRunning { pid: active.pid })
}

impl std::fmt::Display for Cancelled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cancelled::NothingActive => writeln!(f, "no active run; nothing to cancel"),
            Cancelled::TidiedDeadRun { pid, notes } => {
                writeln!(f, "run pid {pid} had died; tidied up after it")?;
                notes.iter().try_for_each(|n| writeln!(f, "  {n}"))
            }
            Cancelled::Stopped { pid, back_to_todo } => writeln!(
                f,
                "cancelled run pid {pid}; back to to-do: {}",
                if back_to_todo.is_empty() {
                    "none".into()
                } else {
                    back_to_todo.join(", ")
                }
            ),
            Cancelled::StillRunning { pid } => {
                writeln!(f, "run pid {pid} was told to stop but is still running")
            }
        }
    }
}
