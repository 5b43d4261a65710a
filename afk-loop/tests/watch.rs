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

#[tokio::test]
async fn what_a_failed_agent_said_and_what_it_cost_reach_the_issue_and_the_doorbell() {
    let w = World::new();
    let report = w.tick(true, &World::config(false)).await;
    assert_eq!(report.dispatched, ["infra#7"], "{report:?}");
    let thread = w.executor.thread_id("infra", 7, 0);
    w.executor.set_status(&thread, Some(ThreadStatus::Error));
    w.executor.set_report(
        &thread,
        Some("claude: API Error: 401 invalid x-api-key"),
        afk_core::Cost::from_usd(0.0412),
    );
    let report = w.tick(false, &World::config(false)).await;
    assert!(!report.failed(), "{report:?}");
    let rung = lock(&w.notifier.rung).clone();
    assert_eq!(rung.len(), 1, "{report:?}");
    assert!(
        rung[0].reason.ends_with(
            "errored before anything was pushed: claude: API Error: 401 invalid x-api-key"
        ),
        "{}",
        rung[0].reason
    );
    assert!(
        rung[0].body().contains("Cost: $0.0412"),
        "{}",
        rung[0].body()
    );
    let comment = lock(&w.model)
        .issue(REPO, 7)
        .comments
        .iter()
        .map(|c| c.body.clone())
        .find(|b| checklist::has_marker(b))
        .unwrap();
    assert!(comment.contains("401 invalid x-api-key"), "{comment}");
    assert!(comment.contains("Cost: $0.0412"), "{comment}");
}

#[tokio::test]
async fn a_run_on_a_new_thread_adds_the_earlier_threads_cost() {
    let w = World::new();
    let first = w.red_run(Some(ThreadStatus::Error)).await;
    w.executor
        .set_report(&first, None, afk_core::Cost::from_usd(0.5));
    // The errored thread's red commit gets a corrective turn on a new thread.
    let report = w.tick(false, &World::config(false)).await;
    assert_eq!(
        entries(&report, ReportAction::FixForward).len(),
        1,
        "{report:?}"
    );
    let second = w.executor.thread_id("infra", 7, 1);
    w.executor.set_status(&second, Some(ThreadStatus::Running));
    w.executor
        .set_report(&second, None, afk_core::Cost::from_usd(0.25));
    w.tick(false, &World::config(false)).await;
    let comment = lock(&w.model)
        .issue(REPO, 7)
        .comments
        .iter()
        .map(|c| c.body.clone())
        .find(|b| checklist::has_marker(b))
        .unwrap();
    let record = checklist::extract_record(&comment).unwrap().unwrap();
    assert_eq!(record.cost, afk_core::Cost::from_usd(0.75), "{comment}");
    assert!(comment.contains("Cost: $0.7500"), "{comment}");
}

#[tokio::test]
async fn past_the_executor_s_limit_an_issue_waits_and_nothing_is_written() {
    let w = World::new();
    lock(&w.model).add_repo("acme/web", "main");
    lock(&w.model).set_role("acme/web", "alice", "write");
    lock(&w.model).add_issue("acme/web", 9, "Elsewhere", "", &[]);
    lock(&w.model).label(
        "acme/web",
        9,
        "ready-for-agent",
        "alice",
        "2026-06-10T11:00:00Z",
    );
    lock(&w.executor.state).max_agents = Some(1);
    let config =
        Config::from_pairs([("AFK_KILL_SWITCH", "false"), ("AFK_ALLOWLIST", "infra,web")]).unwrap();
    let report = w.tick(true, &config).await;
    assert!(!report.failed(), "{report:?}");
    assert_eq!(report.dispatched.len(), 1, "{report:?}");
    let waits = entries(&report, ReportAction::Wait);
    assert_eq!(waits.len(), 1, "{report:?}");
    assert!(waits[0].contains("AFK_LOCAL_MAX_AGENTS"), "{waits:?}");
    let started = &report.dispatched[0];
    let (waiting_repo, waiting) = if started == "infra#7" {
        ("acme/web", 9)
    } else {
        (REPO, 7)
    };
    let untouched = lock(&w.model).issue(waiting_repo, waiting).clone();
    assert!(
        untouched.comments.is_empty(),
        "a waiting issue gets no comment"
    );
    assert!(!untouched.labels.iter().any(|l| l == "agent-in-progress"));
    // The slot frees once the first agent is done; the waiting issue starts.
    let first = lock(&w.executor.state)
        .threads
        .keys()
        .next()
        .cloned()
        .unwrap();
    w.executor.set_status(&first, Some(ThreadStatus::Running));
    let report = w.tick(true, &config).await;
    assert!(report.dispatched.is_empty(), "{report:?}");
    w.executor.set_status(&first, Some(ThreadStatus::Idle));
    let report = w.tick(true, &config).await;
    assert_eq!(
        report.dispatched,
        [format!(
            "{}#{waiting}",
            waiting_repo.trim_start_matches("acme/")
        )],
        "{report:?}"
    );
}
