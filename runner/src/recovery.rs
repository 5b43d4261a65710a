//! What a dead run leaves behind, tidied by `afk run --resume` and `afk
//! cancel`: its agents, only while each is provably the process afk started
//! (same pid and start time, this campaign, never pgid 1), and its ⏳ rows,
//! turned back to to-do.

use std::path::Path;

use checklist::sut::Status;

use crate::campaign::load_checklist;
use crate::campaign::running_ids;
use crate::state::{self, ActiveRun};
use crate::writer::ChecklistWriter;
use crate::{Error, rel};

/// Handles a run that died: kills the agent groups it recorded, turns every
/// ⏳ row back to to-do, and removes its active file. Returns what it did.
///
/// # Errors
/// `Failed` when the checklist or the state cannot be rewritten.
pub fn clean_up_dead_run(
    root: &Path,
    checklist: &Path,
    dead: Option<&ActiveRun>,
) -> Result<Vec<String>, Error> {
    let mut notes = Vec::new();
    // A file copied from another campaign names that campaign's agents:
    // never signal them from here.
    let dead = match dead {
        Some(run) if !run.campaign.is_empty() && run.campaign != state::campaign_id(root) => {
            notes.push(format!(
                "the active-run file names another campaign ({}); its processes were left alone",
                run.campaign
            ));
            None
        }
        other => other,
    };
    if let Some(run) = dead {
        for f in &run.in_flight {
            let Some(pgid) = f.pgid else {
                continue;
            };
            // Only the group afk started: its leader must still be the very
            // process (same pid, same start time). A reused pid, a copied
            // campaign or a hand-edited file names someone else's process.
            let same = f.pgid_started.is_some() && afk_process::start_time(pgid) == f.pgid_started;
            if pgid <= 1 || !same {
                if afk_process::group_alive(pgid) && pgid > 1 {
                    notes.push(format!(
                        "left process group {pgid} (recorded for {}) alone: it is not the agent afk started",
                        f.id
                    ));
                }
                continue;
            }
            if afk_process::group_alive(pgid) {
                afk_process::kill_group(pgid);
                notes.push(format!(
                    "stopped the agent of {} left by pid {} (process group {pgid})",
                    f.id, run.pid
                ));
            }
        }
    }
    let (_, parsed) = load_checklist(checklist)?;
    let running = running_ids(&parsed);
    if !running.is_empty() {
        ChecklistWriter::new(checklist).mark(&running, Status::Todo)?;
        notes.push(format!("turned {} back to to-do", running.join(", ")));
    }
    state::clear_active(root)?;
    Ok(notes)
}

/// What a writer killed mid-write left half-written beside the checklist,
/// in `.afk/` and in `findings/` (temporary files of processes that no
/// longer run), removed, one note each. Called holding the campaign lock, so
/// nobody else writes there; the targets themselves were never touched.
pub fn sweep_stray_temps(root: &Path, checklist: &Path) -> Vec<String> {
    let checklist_dir = checklist.parent().unwrap_or(root).to_owned();
    let mut notes = Vec::new();
    for dir in [checklist_dir, state::state_dir(root), root.join("findings")] {
        // Never delete anything where a link out of the campaign leads.
        if crate::files::check_dir_inside(root, &dir).is_err() {
            continue;
        }
        for name in crate::files::sweep_stray_temps(&dir) {
            let at = rel(root, &dir);
            notes.push(format!(
                "removed {name} in {}, left half-written by a writer that crashed",
                if at.is_empty() { "." } else { at.as_str() }
            ));
        }
    }
    notes
}
