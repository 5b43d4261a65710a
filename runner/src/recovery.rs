//! What a dead run leaves behind, tidied by `afk run --resume` and `afk
//! cancel`: its ⏳ rows, turned back to to-do. Its agents are never
//! signalled from here: each ran under its supervisor, which took its tree
//! down when the runner died; one still alive is waited for and reported.

use std::path::Path;

use checklist::sut::Status;

use crate::campaign::load_checklist;
use crate::campaign::running_ids;
use crate::state::{self, ActiveRun};
use crate::writer::ChecklistWriter;
use crate::{Error, rel};

/// Handles a run that died: waits (bounded) for the agents it recorded to
/// end with it, turns every ⏳ row back to to-do, and removes its active
/// file. Returns what it did.
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
        // Its agents are not signalled from here: each ran under its
        // supervisor, which takes its tree down when the runner that
        // started it dies. What is still alive is waited for (bounded), and
        // reported, never killed by a file's say-so.
        for f in &run.in_flight {
            let Some(pgid) = f.pgid else {
                continue;
            };
            let ours = pgid > 1
                && f.pgid_started.is_some()
                && afk_process::start_time(pgid) == f.pgid_started;
            if !ours {
                if pgid > 1 && afk_process::group_alive(pgid) {
                    notes.push(format!(
                        "left process group {pgid} (recorded for {}) alone: it is not the agent afk started",
                        f.id
                    ));
                }
                continue;
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while afk_process::group_alive(pgid) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            notes.push(if afk_process::group_alive(pgid) {
                format!(
                    "the agent of {} (process group {pgid}) still runs; it was left alone: stop the runner that started it (pid {})",
                    f.id, run.pid
                )
            } else {
                format!("the agent of {} ended with its runner (pid {})", f.id, run.pid)
            });
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
