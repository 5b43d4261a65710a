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
