//! Whole runs through the library, with the scripted agents of
//! `fixtures/agents/` as real processes: the events are asserted as values,
//! not as parsed text.

use std::path::{Path, PathBuf};
use std::time::Duration;

use runner::agent::Runtime;
use runner::campaign::{Mode, Settings};
use runner::event::{Event, ItemEnd, Outcome};
use runner::rounds::{StopReason, Stops};
use runner::{Error, state};
use tokio::sync::watch;

use crate::scratch::Scratch;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Copies the tree at `from` into `to`.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A fresh copy of the whole sample campaign, removed when dropped.
fn campaign(name: &str) -> Scratch {
    let dir = Scratch::new(&format!("runner-{name}"));
    copy_tree(&fixtures().join("checklists/sample"), &dir);
    dir
}

fn settings(script: &str) -> Settings {
    Settings {
        checklist: "SUT-CHECKLIST.md".into(),
        mission_brief: "SUT-PACKET.md".into(),
        config: "config/run_config.json".into(),
        mode: Mode::Finite,
        batch_size: 3,
        runtime: Runtime::Command {
            argv: vec![
                "sh".into(),
                fixtures().join("agents").join(script).display().to_string(),
            ],
        },
        timeout: Duration::from_secs(30),
        idle_rounds: 2,
        prompt_template: None,
        dry_run: false,
        resume: false,
        afk_bin: String::new(),
        path_var: std::env::var("PATH").ok(),
        budget_usd: None,
    }
}

fn run(dir: &Path, settings: &Settings, stops: Stops) -> (Result<Outcome, Error>, Vec<Event>) {
    let mut events = Vec::new();
    let outcome = runner::run(dir, settings, stops, &mut |e| events.push(e));
    (outcome, events)
}

fn never() -> Stops {
    let (tx, rx) = watch::channel(None);
    // The sender lives as long as the test: no stop ever comes.
    std::mem::forget(tx);
    Stops::Channel(rx)
}

fn ended(events: &[Event]) -> Vec<(String, ItemEnd)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::ItemEnded { id, end, .. } => Some((id.clone(), end.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_finite_run_reports_each_item_and_tier_as_values() {
    let dir = campaign("finite");
    let (outcome, events) = run(&dir, &settings("complete.sh"), never());
    assert_eq!(outcome, Ok(Outcome::Finished));
    let mut done: Vec<String> = ended(&events)
        .into_iter()
        .map(|(id, end)| {
            assert_eq!(end, ItemEnd::Done, "{id}");
            id
        })
        .collect();
    done.sort();
    assert_eq!(
        done,
        ["CORE-001", "CORE-002", "CORE-003", "SEC-001", "SEC-002"]
    );
    let tiers: Vec<u32> = events
        .iter()
        .filter_map(|e| match e {
            Event::TierReportWritten { tier, .. } => Some(*tier),
            _ => None,
        })
        .collect();
    assert_eq!(tiers, [1, 2]);
    let Some(Event::Ended {
        outcome, counts, ..
    }) = events.last()
    else {
        panic!("the last event is not the end: {events:?}");
    };
    assert_eq!(*outcome, Outcome::Finished);
    assert_eq!((counts.done, counts.total), (5, 5));
    // The session file says the same, typed.
    let files = state::session_files(&dir);
    let session = state::read_session(files.last().unwrap()).unwrap();
    assert_eq!(session.outcome, Outcome::Finished);
    assert_eq!(session.items.len(), 5);
    assert_eq!(session.tier_reports.len(), 2);
    assert_eq!(state::read_active(&dir), Ok(None));
}

#[test]
fn a_failing_agent_ends_its_items_failed_with_the_exit_code() {
    let dir = campaign("failing");
    let (outcome, events) = run(&dir, &settings("fail.sh"), never());
    assert_eq!(outcome, Ok(Outcome::FinishedWithFailures));
    let ends = ended(&events);
    assert_eq!(ends.len(), 5);
    for (id, end) in ends {
        let ItemEnd::Failed(reason) = end else {
            panic!("{id} did not fail");
        };
        assert!(reason.contains("exited with"), "{id}: {reason}");
    }
}

#[test]
fn a_stop_puts_the_rows_back_and_ends_cancelled() {
    let dir = campaign("stopped");
    let (tx, rx) = watch::channel(None);
    let watched = dir.to_path_buf();
    let stopper = std::thread::spawn(move || {
        // Wait until an agent is recorded, then stop the run.
        let dir = watched;
        for _ in 0..200 {
            if state::read_active(&dir)
                .ok()
                .flatten()
                .is_some_and(|a| a.in_flight.iter().any(|f| f.pgid.is_some()))
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        tx.send(Some(StopReason::Cancelled)).unwrap();
    });
    let (outcome, events) = run(&dir, &settings("hang.sh"), Stops::Channel(rx));
    stopper.join().unwrap();
    assert_eq!(outcome, Ok(Outcome::Cancelled));
    let ends = ended(&events);
    assert!(!ends.is_empty());
    assert!(
        ends.iter().all(|(_, end)| *end == ItemEnd::Stopped),
        "{ends:?}"
    );
    let text = std::fs::read_to_string(dir.join("SUT-CHECKLIST.md")).unwrap();
    assert!(!text.contains('⏳'), "{text}");
}

#[test]
fn bad_input_is_an_input_error_and_changes_nothing() {
    let dir = campaign("bad");
    let before = std::fs::read_to_string(dir.join("SUT-CHECKLIST.md")).unwrap();
    let mut missing = settings("complete.sh");
    missing.mission_brief = "NOPE.md".into();
    let (outcome, events) = run(&dir, &missing, never());
    assert!(
        matches!(&outcome, Err(Error::Input(m)) if m.contains("NOPE.md")),
        "{outcome:?}"
    );
    assert_eq!(events, []);
    let mut bad_template = settings("complete.sh");
    std::fs::write(dir.join("t.md"), "{{id}} {{nonsense}}").unwrap();
    bad_template.prompt_template = Some("t.md".into());
    let (outcome, _) = run(&dir, &bad_template, never());
    assert!(
        matches!(&outcome, Err(Error::Input(m)) if m.contains("nonsense")),
        "{outcome:?}"
    );
    // A budget needs an agent that reports what it spends.
    let mut budget = settings("complete.sh");
    budget.budget_usd = Some(1.0);
    let (outcome, _) = run(&dir, &budget, never());
    assert!(
        matches!(&outcome, Err(Error::Input(m)) if m.contains("--budget-usd needs an agent that reports what it spends")),
        "{outcome:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("SUT-CHECKLIST.md")).unwrap(),
        before
    );
    assert!(!dir.join(".afk").exists());
}

/// Every job of a round is built before its first agent starts: a job that
/// cannot be built (its run directory is a link out of the campaign) fails
/// the round with no agent started and no row marked.
#[test]
fn a_job_that_cannot_be_built_starts_no_agent_of_its_round() {
    let dir = campaign("unbuildable");
    let outside = Scratch::new("unbuildable-outside");
    let tier = dir.join("runs/tier-1-core-reliability");
    std::fs::create_dir_all(&tier).unwrap();
    std::os::unix::fs::symlink(&*outside, tier.join("CORE-003")).unwrap();
    let before = std::fs::read_to_string(dir.join("SUT-CHECKLIST.md")).unwrap();
    let (outcome, events) = run(&dir, &settings("complete.sh"), never());
    assert!(matches!(outcome, Ok(Outcome::Error)), "{outcome:?}");
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ItemStarted { .. })),
        "{events:?}"
    );
    for id in ["CORE-001", "CORE-002"] {
        assert!(
            !tier.join(id).join("FINAL_REPORT.md").exists(),
            "{id}'s agent ran"
        );
    }
    let after = std::fs::read_to_string(dir.join("SUT-CHECKLIST.md")).unwrap();
    assert_eq!(before, after, "no row was marked");
    assert_eq!(std::fs::read_dir(&*outside).unwrap().count(), 0);
}

/// An agent program written for one test: `body` runs under `sh` with the
/// prompt on its standard input.
fn script_agent(dir: &Path, name: &str, body: &str) -> Runtime {
    let path = dir.join(format!("{name}.sh"));
    std::fs::write(&path, body).unwrap();
    Runtime::Command {
        argv: vec!["sh".into(), path.display().to_string()],
    }
}

fn statuses(dir: &Path) -> Vec<(String, checklist::sut::Status)> {
    let text = std::fs::read_to_string(dir.join("SUT-CHECKLIST.md")).unwrap();
    checklist::sut::parse(&text)
        .0
        .items
        .iter()
        .map(|i| (i.id.clone(), i.status))
        .collect()
}

/// A human appends a broken row while an agent works: the runner reports
/// the line, keeps it as the human wrote it, and records every finished
/// row's ✅ all the same.
#[test]
fn a_malformed_row_appended_mid_run_is_reported_and_loses_no_finished_row() {
    let dir = Scratch::new("runner-malformed-row");
    copy_tree(&fixtures().join("checklists/sample"), &dir);
    let path = dir.join("SUT-CHECKLIST.md");
    let broken_line = std::fs::read_to_string(&path).unwrap().lines().count() + 1;
    let mut settings = settings("complete.sh");
    settings.batch_size = 1;
    // The first agent appends the row while it works (batch size 1: the
    // runner writes nothing while its one agent runs, so the append lands
    // mid-run every time).
    settings.runtime = script_agent(
        &dir,
        "appends",
        &format!(
            "[ \"$AFK_ITEM_ID\" = CORE-001 ] && printf '| ☐ | BROKEN |\\n' >> \"$AFK_CHECKLIST\"\nexec sh {}\n",
            fixtures().join("agents/complete.sh").display()
        ),
    );
    let (outcome, events) = run(&dir, &settings, never());
    assert_eq!(outcome, Ok(Outcome::Finished), "{events:#?}");
    assert!(
        statuses(&dir)
            .iter()
            .all(|(_, s)| *s == checklist::sut::Status::Done),
        "{:?}",
        statuses(&dir)
    );
    let reported: Vec<&Event> = events
        .iter()
        .filter(|e| matches!(e, Event::ChecklistProblem { line, .. } if *line == broken_line))
        .collect();
    assert_eq!(reported.len(), 1, "reported once: {events:#?}");
    assert_eq!(
        reported[0].to_string(),
        format!(
            "warning: SUT-CHECKLIST.md:{broken_line}: row has 2 cells, its table has 7 columns; \
             afk leaves the line as it is and runs nothing from it until it is fixed"
        )
    );
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.ends_with("| ☐ | BROKEN |\n"), "{text}");
}

/// A row whose title is a megabyte fails alone, with the cap as its reason;
/// the other rows of its round run and finish.
#[test]
fn a_one_megabyte_row_title_fails_only_its_row() {
    let dir = campaign("huge-title");
    let path = dir.join("SUT-CHECKLIST.md");
    let huge = "x".repeat(1 << 20);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("Idempotent order submission", &huge);
    std::fs::write(&path, text).unwrap();
    let mut settings = settings("complete.sh");
    settings.batch_size = 5;
    let (outcome, events) = run(&dir, &settings, never());
    assert_eq!(outcome, Ok(Outcome::FinishedWithFailures), "{outcome:?}");
    let mut ends = ended(&events);
    ends.sort_by(|a, b| a.0.cmp(&b.0));
    let reason = format!(
        "its Title cell is {} bytes, over the cap of 4096 bytes for one cell: shorten it \
         (no agent was started)",
        1 << 20
    );
    assert_eq!(
        ends,
        [
            ("CORE-001".to_owned(), ItemEnd::Done),
            ("CORE-002".to_owned(), ItemEnd::Failed(reason)),
            ("CORE-003".to_owned(), ItemEnd::Done),
            ("SEC-001".to_owned(), ItemEnd::Done),
            ("SEC-002".to_owned(), ItemEnd::Done),
        ]
    );
    assert!(
        !dir.join("runs/tier-1-core-reliability/CORE-002").exists(),
        "no agent ran for it"
    );
    // The title is the human's: kept as it was, only the status changed.
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(after.contains(&format!("| ❌ | CORE-002 | {huge} |")));
}

/// Human edits while a run marks rows, at the worst moments: right after
/// each write of the runner, and again while its next write is under way
/// (its temporary file beside the checklist exists), a thread appends a
/// line or rewrites a title cell in place, in turn. Every edit is still in the file at the end, and
/// every row the run finished is ✅.
#[test]
fn human_edits_during_a_run_all_survive() {
    use std::io::Write;
    use std::os::unix::fs::{FileExt, MetadataExt};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const ROWS: usize = 80;
    let dir = Scratch::new("runner-human-hammer");
    copy_tree(&fixtures().join("checklists/sample"), &dir);
    let path = dir.join("SUT-CHECKLIST.md");
    let mut text = String::from(
        "## Tier 1: Hammered\n\n| Status | ID | Title | Priority | Risk |\n|---|---|---|---|---|\n",
    );
    for n in 0..ROWS {
        text.push_str(&format!(
            "| ☐ | H-{n:03} | title 0000 row {n:03} | P1 | Low |\n"
        ));
    }
    std::fs::write(&path, &text).unwrap();
    let mut settings = settings("complete.sh");
    settings.batch_size = 4;
    settings.runtime = script_agent(
        &dir,
        "quick",
        "cat >/dev/null\necho done > \"$AFK_RUN_DIR/FINAL_REPORT.md\"\necho \"ITEM COMPLETE: $AFK_ITEM_ID\"\n",
    );

    let done = Arc::new(AtomicBool::new(false));
    let human = {
        let dir = dir.to_path_buf();
        let path = path.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            // Where each row's title counter sits: status glyphs are all
            // three bytes, so a status write never moves it.
            let at: Vec<u64> = (0..ROWS)
                .map(|n| (text.find(&format!("row {n:03}")).unwrap() - 5) as u64)
                .collect();
            // The runner replaces the file whole (a new inode), through a
            // temporary file beside it.
            let inode = || std::fs::metadata(&path).map(|m| m.ino()).ok();
            let writing = || {
                std::fs::read_dir(&dir).unwrap().flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(".SUT-CHECKLIST.md.tmp-")
                })
            };
            let mut seen = inode();
            let mut armed = false;
            let mut last = vec![0usize; ROWS];
            let mut edits = 0usize;
            while !done.load(Ordering::SeqCst) {
                // Right after a write of the runner, and once more while
                // its next write is under way.
                let now = inode();
                if now != seen {
                    seen = now;
                    armed = true;
                } else if armed && writing() {
                    armed = false;
                } else {
                    std::thread::sleep(std::time::Duration::from_micros(100));
                    continue;
                }
                edits += 1;
                if edits % 2 == 1 {
                    // Append a line, as `echo >> file` does.
                    let mut f = std::fs::OpenOptions::new()
                        .append(true)
                        .open(&path)
                        .unwrap();
                    f.write_all(format!("human note {edits}\n").as_bytes())
                        .unwrap();
                } else {
                    // Rewrite a title cell in place.
                    let row = (edits / 2) % ROWS;
                    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                    f.write_all_at(format!("{:04}", edits % 10_000).as_bytes(), at[row])
                        .unwrap();
                    last[row] = edits % 10_000;
                }
            }
            (edits, last)
        })
    };
    let (outcome, events) = run(&dir, &settings, never());
    done.store(true, Ordering::SeqCst);
    let (edits, last) = human.join().unwrap();
    assert_eq!(outcome, Ok(Outcome::Finished), "{events:#?}");
    assert!(edits >= ROWS / 2, "only {edits} edits: not a hammer");
    let text = std::fs::read_to_string(&path).unwrap();
    let lost_notes: Vec<usize> = (1..=edits)
        .filter(|n| n % 2 == 1 && !text.contains(&format!("human note {n}\n")))
        .collect();
    let lost_titles: Vec<String> = (0..ROWS)
        .filter(|row| !text.contains(&format!("title {:04} row {row:03}", last[*row])))
        .map(|row| format!("row {row:03} (wanted {:04})", last[row]))
        .collect();
    assert!(
        lost_notes.is_empty() && lost_titles.is_empty(),
        "of {edits} human edits, lost notes {lost_notes:?} and titles {lost_titles:?}"
    );
    let (c, _) = checklist::sut::parse(&text);
    assert_eq!(c.items.len(), ROWS);
    assert!(
        c.items
            .iter()
            .all(|i| i.status == checklist::sut::Status::Done),
        "{text}"
    );
}
