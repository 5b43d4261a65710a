//! The watch tick over the in-memory fakes: it performs exactly the effects
//! the core's answer names. The kill switch's pause, a busy agent, and the
//! choice of the same thread or a new one are decided by the state machine;
//! these tests hold the tick to carrying them out, and to saying what it did.

use std::sync::{Arc, Mutex};

use afk_core::{Config, ThreadStatus, Timestamp};
use afk_loop::ports::{Executor, Notifier, StageProbe};
use afk_loop::{Level, Ports, ReportAction, TickOptions, TickReport, poll_tick, watch_tick};
use afk_sim::clock::FixedClock;
use afk_sim::fakes::{FakeBuildStage, FakeExecutor, FakeTracker, RecordingNotifier};
use afk_sim::github::GitHubModel;
use afk_sim::lock;

const REPO: &str = "acme/infra";

/// One repository with one ready issue, and the fakes over it.
struct World {
    model: Arc<Mutex<GitHubModel>>,
    tracker: FakeTracker,
    executor: FakeExecutor,
    stage: FakeBuildStage,
    notifier: RecordingNotifier,
    clock: FixedClock,
}

impl World {
    fn new() -> World {
        let mut model = GitHubModel::new("t", "afk-bot");
        model.add_repo(REPO, "main");
        model.set_role(REPO, "alice", "write");
        model.add_issue(REPO, 7, "Rotate the certificates", "", &[]);
        model.label(REPO, 7, "ready-for-agent", "alice", "2026-06-10T11:00:00Z");
        let model = Arc::new(Mutex::new(model));
        World {
            tracker: FakeTracker::new(model.clone(), "acme"),
            executor: FakeExecutor::new(),
            stage: FakeBuildStage::new(model.clone(), "acme"),
            notifier: RecordingNotifier::default(),
            clock: FixedClock::at(Timestamp::parse_rfc3339("2026-06-10T12:00:00Z").unwrap()),
            model,
        }
    }

    fn config(kill_switch: bool) -> Config {
        Config::from_pairs([
            (
                "AFK_KILL_SWITCH",
                if kill_switch { "true" } else { "false" },
            ),
            ("AFK_ALLOWLIST", "infra"),
        ])
        .unwrap()
    }

    async fn tick(&self, poll: bool, config: &Config) -> TickReport {
        let stages: [&dyn StageProbe; 1] = [&self.stage];
        let notifiers: [&dyn Notifier; 1] = [&self.notifier];
        let ports = Ports {
            tracker: &self.tracker,
            executor: &self.executor,
            stages: &stages,
            notifiers: &notifiers,
            clock: &self.clock,
        };
        self.clock.advance(120);
        if poll {
            poll_tick(&ports, config, &TickOptions::default()).await
        } else {
            watch_tick(&ports, config, &TickOptions::default()).await
        }
    }

    /// Dispatched, then the agent pushed a commit whose CI is red, and its
    /// thread is in `status`.
    async fn red_run(&self, status: Option<ThreadStatus>) -> String {
        let report = self.tick(true, &World::config(false)).await;
        assert_eq!(report.dispatched, ["infra#7"], "{report:?}");
        let thread = self.executor.thread_id("infra", 7, 0);
        let now = afk_loop::Clock::now(&self.clock).to_rfc3339();
        {
            let mut m = lock(&self.model);
            m.push_commit(REPO, "red0001", "Try\n\nRefs #7\nAFK-Issue: infra#7", &now);
            m.set_checks(REPO, "red0001", &[("test", "completed", Some("failure"))]);
        }
        self.executor.set_status(&thread, status);
        thread
    }

    fn turns_sent(&self) -> usize {
        lock(&self.executor.state)
            .threads
            .values()
            .map(|t| t.turns.len())
            .sum()
    }

    fn threads(&self) -> usize {
        lock(&self.executor.state).threads.len()
    }

    fn writes(&self) -> u64 {
        self.tracker.writes()
    }
}

fn entries(report: &TickReport, action: ReportAction) -> Vec<&str> {
    report
        .entries
        .iter()
        .filter(|e| e.action == action)
        .map(|e| e.message.as_str())
        .collect()
}

#[tokio::test]
async fn the_kill_switch_pauses_a_red_run_and_says_so() {
    let w = World::new();
    w.red_run(Some(ThreadStatus::Idle)).await;
    let before = w.turns_sent();
    let report = w.tick(false, &World::config(true)).await;
    assert!(!report.failed(), "{report:?}");
    assert_eq!(w.turns_sent(), before, "no corrective turn while paused");
    let paused = entries(&report, ReportAction::Paused);
    assert!(
        paused
            .iter()
            .any(|m| m.contains("CI is red") && m.contains("kill switch")),
        "{paused:?}"
    );
    // Never the pending run's words for a red one.
    assert!(
        !report
            .entries
            .iter()
            .any(|e| e.message.contains("CI is running")),
        "{report:?}"
    );
    // Released, the same state sends the turn.
    let report = w.tick(false, &World::config(false)).await;
    assert_eq!(
        entries(&report, ReportAction::FixForward).len(),
        1,
        "{report:?}"
    );
    assert_eq!(w.turns_sent(), before + 1);
}

#[tokio::test]
async fn a_busy_agent_is_waited_for() {
    let w = World::new();
    w.red_run(Some(ThreadStatus::Running)).await;
    let before = w.turns_sent();
    let report = w.tick(false, &World::config(false)).await;
    assert_eq!(w.turns_sent(), before);
    let waits = entries(&report, ReportAction::Wait);
    assert!(
        waits.iter().any(|m| m.contains("thread is busy")),
        "{waits:?}"
    );
}

#[tokio::test]
async fn an_idle_thread_gets_the_turn_and_an_errored_one_a_new_thread() {
    for (status, new_thread) in [
        (Some(ThreadStatus::Idle), false),
        (Some(ThreadStatus::Error), true),
        (Some(ThreadStatus::NeedsInput), true),
    ] {
        let w = World::new();
        let first = w.red_run(status).await;
        let threads = w.threads();
        let report = w.tick(false, &World::config(false)).await;
        assert!(!report.failed(), "{status:?}: {report:?}");
        let sent = entries(&report, ReportAction::FixForward);
        assert_eq!(sent.len(), 1, "{status:?}: {report:?}");
        if new_thread {
            assert_eq!(w.threads(), threads + 1, "{status:?}");
            let fix = report
                .entries
                .iter()
                .find(|e| e.action == ReportAction::FixForward)
                .and_then(|e| e.thread_id.clone());
            assert_eq!(fix, Some(w.executor.thread_id("infra", 7, 1)), "{status:?}");
        } else {
            assert_eq!(w.threads(), threads, "{status:?}");
            let steps: Vec<u32> = lock(&w.executor.state).threads[&first]
                .turns
                .keys()
                .copied()
                .collect();
            assert_eq!(steps, [0, 1], "{status:?}: the same thread got step 1");
        }
    }
}

#[tokio::test]
async fn a_tick_that_changes_nothing_writes_nothing() {
    let w = World::new();
    w.red_run(Some(ThreadStatus::Running)).await;
    w.tick(false, &World::config(false)).await;
    let writes = w.writes();
    let report = w.tick(false, &World::config(false)).await;
    assert!(report.entries.iter().all(|e| e.level != Level::Error));
    assert_eq!(w.writes(), writes, "{report:?}");
}

impl World {
    fn now(&self) -> String {
        afk_loop::Clock::now(&self.clock).to_rfc3339()
    }

    fn outcome(&self) -> Option<afk_core::Outcome> {
        let model = lock(&self.model);
        let issue = model.repos["acme/infra"].issues.get(&7).unwrap();
        issue
            .comments
            .iter()
            .find_map(|c| checklist::extract_record(&c.body).ok().flatten())
            .and_then(|r| r.outcome)
    }

    fn issue_open(&self) -> bool {
        lock(&self.model).repos["acme/infra"].issues[&7].state == "open"
    }

    fn agent_stopped(&self, thread: &str) -> bool {
        lock(&self.executor.state).threads[thread].stops > 0
    }
}

/// A stop label applied during the run and removed again before the watch
/// tick still stops the run (its `labeled` event is read), naming who.
#[tokio::test]
async fn a_stop_label_removed_before_the_tick_still_stops_the_run() {
    let w = World::new();
    let thread = w.red_run(Some(ThreadStatus::Running)).await;
    {
        let now = w.now();
        let mut m = lock(&w.model);
        m.label(REPO, 7, "afk-stop", "alice", &now);
        m.issue(REPO, 7).labels.retain(|l| l != "afk-stop");
    }
    let report = w.tick(false, &World::config(false)).await;
    assert!(!report.failed(), "{report:?}");
    let outcome = w.outcome().expect("the run was stopped");
    assert_eq!(outcome.kind, afk_core::OutcomeKind::Stopped);
    assert_eq!(outcome.by.as_deref(), Some("alice"));
    assert!(w.agent_stopped(&thread), "the agent was stopped");
    assert_eq!(w.notifier.rung.lock().unwrap().len(), 1);
}

/// A stop label from before this run (an earlier run's) does not stop it.
#[tokio::test]
async fn an_old_stop_label_event_does_not_stop_a_new_run() {
    let w = World::new();
    lock(&w.model).label(REPO, 7, "afk-stop", "alice", "2026-06-10T10:00:00Z");
    lock(&w.model)
        .issue(REPO, 7)
        .labels
        .retain(|l| l != "afk-stop");
    w.red_run(Some(ThreadStatus::Running)).await;
    w.tick(false, &World::config(false)).await;
    assert_eq!(w.outcome(), None);
}

/// A person closing the in-flight issue by hand stops its run: the agent
/// is stopped, the run recorded as stopped by them, and nothing reopens the
/// issue. A close by a commit's closing keyword is not a stop.
#[tokio::test]
async fn an_issue_closed_by_a_person_stops_its_run_and_stays_closed() {
    let w = World::new();
    let thread = w.red_run(Some(ThreadStatus::Running)).await;
    {
        let now = w.now();
        lock(&w.model).close(REPO, 7, "alice", None, &now);
    }
    let report = w.tick(false, &World::config(false)).await;
    assert!(!report.failed(), "{report:?}");
    let outcome = w.outcome().expect("the run was stopped");
    assert_eq!(outcome.kind, afk_core::OutcomeKind::Stopped);
    assert!(
        outcome.by.as_deref().is_some_and(|b| b.contains("alice")),
        "{outcome:?}"
    );
    assert!(w.agent_stopped(&thread));
    assert!(!w.issue_open(), "the issue was reopened");
    // Later ticks leave it closed too.
    w.tick(false, &World::config(false)).await;
    assert!(!w.issue_open());

    let w = World::new();
    w.red_run(Some(ThreadStatus::Running)).await;
    {
        let now = w.now();
        lock(&w.model).close(REPO, 7, "alice", Some("red0001"), &now);
    }
    w.tick(false, &World::config(false)).await;
    assert_eq!(w.outcome(), None, "a closing keyword is not a stop");
}
