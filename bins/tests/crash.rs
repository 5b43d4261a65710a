//! Crash safety, proven by injection (03-loop.md, "what must hold").
//!
//! A scripted lifecycle — dispatch, the agent pushes a red commit, a
//! corrective turn, a green commit, close — runs through the real ticks over
//! in-memory fakes wrapped in a fault layer. For every I/O call N of the
//! lifecycle it runs again twice: once with call N failing before its effect,
//! once with call N failing **after** its effect (the pod died after the
//! write landed). Either way every later call of that tick fails too, as a
//! dead process's would; the next tick is a fresh process. After every tick
//! and at the end the invariants are checked.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use afk_core::ci::{CommitRef, StageProbe, StageReport};
use afk_core::doorbell::{Doorbell, Notifier};
use afk_core::ports::{
    Comment, Executor, ExecutorSnapshot, PortError, PortResult, PushedCommit, ThreadSpec,
    TrackedIssue, Tracker, Trust, WatchedThread,
};
use afk_core::tick::{Clock, FixedClock, Ports, ProgressCodec, TickOptions, poll_tick, watch_tick};
use afk_core::{Config, OutcomeKind, ThreadStatus, Timestamp};
use afk_sim::fakes::{FakeBuildStage, FakeExecutor, FakeTracker, RecordingNotifier};
use afk_sim::github::GitHubModel;
use afk_sim::{GITHUB_LOGIN, GITHUB_TOKEN, lock};
use async_trait::async_trait;
use checklist::ProgressComment;

const REPO: &str = "acme/infra";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The call fails and its effect does not happen.
    Before,
    /// The effect happens, then the process dies.
    After,
}

/// The fault plan shared by every wrapped port.
#[derive(Debug, Default)]
struct Faults {
    calls: AtomicUsize,
    fail_at: Mutex<Option<(usize, Mode)>>,
    dead: AtomicBool,
}

impl Faults {
    async fn call<T>(&self, effect: impl Future<Output = PortResult<T>>) -> PortResult<T> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let crash = || PortError::Transient {
            message: format!("process died at I/O call {n}"),
        };
        if self.dead.load(Ordering::SeqCst) {
            return Err(crash());
        }
        let plan = *lock(&self.fail_at);
        if let Some((at, mode)) = plan
            && at == n
        {
            self.dead.store(true, Ordering::SeqCst);
            if mode == Mode::After {
                let _ = effect.await;
            }
            return Err(crash());
        }
        effect.await
    }

    /// A new tick is a new process.
    fn restart(&self) {
        self.dead.store(false, Ordering::SeqCst);
    }
}

struct FaultyTracker<'a>(&'a FakeTracker, &'a Faults);
struct FaultyExecutor<'a>(&'a FakeExecutor, &'a Faults);
struct FaultyStage<'a>(&'a FakeBuildStage, &'a Faults);
struct FaultyNotifier<'a>(&'a RecordingNotifier, &'a Faults);

#[async_trait]
impl Tracker for FaultyTracker<'_> {
    async fn open_issues_with_label(&self, r: &str, l: &str) -> PortResult<Vec<TrackedIssue>> {
        self.1.call(self.0.open_issues_with_label(r, l)).await
    }
    async fn issues_with_label(&self, r: &str, l: &str) -> PortResult<Vec<TrackedIssue>> {
        self.1.call(self.0.issues_with_label(r, l)).await
    }
    async fn label_trust(&self, r: &str, n: u64, l: &str) -> PortResult<Trust> {
        self.1.call(self.0.label_trust(r, n, l)).await
    }
    async fn open_blockers(&self, r: &str, i: &TrackedIssue) -> PortResult<Vec<u64>> {
        self.1.call(self.0.open_blockers(r, i)).await
    }
    async fn default_branch(&self, r: &str) -> PortResult<String> {
        self.1.call(self.0.default_branch(r)).await
    }
    async fn progress_comment(&self, r: &str, n: u64) -> PortResult<Option<Comment>> {
        self.1.call(self.0.progress_comment(r, n)).await
    }
    async fn create_comment(&self, r: &str, n: u64, b: &str) -> PortResult<Comment> {
        self.1.call(self.0.create_comment(r, n, b)).await
    }
    async fn update_comment(&self, r: &str, id: u64, b: &str) -> PortResult<()> {
        self.1.call(self.0.update_comment(r, id, b)).await
    }
    async fn add_label(&self, r: &str, n: u64, l: &str) -> PortResult<()> {
        self.1.call(self.0.add_label(r, n, l)).await
    }
    async fn remove_label(&self, r: &str, n: u64, l: &str) -> PortResult<()> {
        self.1.call(self.0.remove_label(r, n, l)).await
    }
    async fn close_issue(&self, r: &str, n: u64) -> PortResult<()> {
        self.1.call(self.0.close_issue(r, n)).await
    }
    async fn reopen_issue(&self, r: &str, n: u64) -> PortResult<()> {
        self.1.call(self.0.reopen_issue(r, n)).await
    }
    async fn commits_with_trailer(
        &self,
        r: &str,
        b: &str,
        s: Timestamp,
        n: u64,
    ) -> PortResult<Vec<PushedCommit>> {
        self.1.call(self.0.commits_with_trailer(r, b, s, n)).await
    }
}

#[async_trait]
impl Executor for FaultyExecutor<'_> {
    fn thread_id(&self, r: &str, n: u64, a: u32) -> String {
        self.0.thread_id(r, n, a)
    }
    async fn snapshot(&self, w: &[WatchedThread]) -> PortResult<ExecutorSnapshot> {
        self.1.call(self.0.snapshot(w)).await
    }
    async fn ensure_thread(&self, s: &ExecutorSnapshot, spec: &ThreadSpec) -> PortResult<String> {
        self.1.call(self.0.ensure_thread(s, spec)).await
    }
    async fn send_turn(
        &self,
        s: &ExecutorSnapshot,
        t: &str,
        step: u32,
        text: &str,
        at: Timestamp,
    ) -> PortResult<()> {
        self.1.call(self.0.send_turn(s, t, step, text, at)).await
    }
}

#[async_trait]
impl StageProbe for FaultyStage<'_> {
    fn stage(&self) -> afk_core::ci::Stage {
        self.0.stage()
    }
    async fn probe(&self, c: &CommitRef) -> PortResult<Option<StageReport>> {
        self.1.call(self.0.probe(c)).await
    }
}

#[async_trait]
impl Notifier for FaultyNotifier<'_> {
    fn name(&self) -> &str {
        "recording"
    }
    async fn ring(&self, b: &Doorbell) -> PortResult<()> {
        self.1.call(self.0.ring(b)).await
    }
}

struct Lifecycle {
    model: Arc<Mutex<GitHubModel>>,
    tracker: FakeTracker,
    executor: FakeExecutor,
    stage: FakeBuildStage,
    notifier: RecordingNotifier,
    faults: Faults,
    clock: FixedClock,
    config: Config,
    agent: Mutex<AgentProgress>,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Poll,
    Watch,
    /// The scripted agent takes its next step, if it can.
    Agent,
}

/// One round: dispatch and drive a run to its end when nothing fails.
const ROUND: &[Step] = &[
    Step::Poll,
    Step::Watch,
    Step::Agent,
    Step::Watch,
    Step::Agent,
    Step::Watch,
    Step::Agent,
    Step::Watch,
];

/// What the scripted agent has done so far.
#[derive(Debug, Default, Clone, Copy)]
struct AgentProgress {
    pushed_red: bool,
    working: bool,
    pushed_green: bool,
}

impl Lifecycle {
    fn new() -> Self {
        let mut model = GitHubModel::new(GITHUB_TOKEN, GITHUB_LOGIN);
        model.add_repo(REPO, "main");
        model.set_role(REPO, "alice", "write");
        model.add_issue(REPO, 7, "Rotate the certificates", "", &[]);
        model.label(REPO, 7, "ready-for-agent", "alice", "2026-06-10T11:00:00Z");
        let model = Arc::new(Mutex::new(model));
        Lifecycle {
            tracker: FakeTracker::new(model.clone(), "acme"),
            executor: FakeExecutor::new(),
            stage: FakeBuildStage {
                model: model.clone(),
                default_owner: "acme".into(),
            },
            notifier: RecordingNotifier::default(),
            faults: Faults::default(),
            clock: FixedClock::at(Timestamp::parse_rfc3339("2026-06-10T12:00:00Z").unwrap()),
            config: Config::from_pairs([("AFK_KILL_SWITCH", "false"), ("AFK_ALLOWLIST", "infra")])
                .unwrap(),
            agent: Mutex::new(AgentProgress::default()),
            model,
        }
    }

    /// Runs the script; returns the ticks that crashed.
    async fn run(&self, plan: Option<(usize, Mode)>) -> Vec<usize> {
        *lock(&self.faults.fail_at) = plan;
        let tracker = FaultyTracker(&self.tracker, &self.faults);
        let executor = FaultyExecutor(&self.executor, &self.faults);
        let stage = FaultyStage(&self.stage, &self.faults);
        let notifier = FaultyNotifier(&self.notifier, &self.faults);
        let stages: [&dyn StageProbe; 1] = [&stage];
        let notifiers: [&dyn Notifier; 1] = [&notifier];
        let ports = Ports {
            tracker: &tracker,
            executor: &executor,
            stages: &stages,
            notifiers: &notifiers,
            codec: &ProgressComment,
            clock: &self.clock,
        };
        let thread = self.executor.thread_id("infra", 7, 0);
        let mut crashed_ticks = Vec::new();
        // Three rounds: whatever a crash cut short is finished by the next.
        let script: Vec<Step> = ROUND.iter().chain(ROUND).chain(ROUND).copied().collect();
        for (i, step) in script.iter().enumerate() {
            self.clock.advance(120);
            let now = self.clock.now().to_rfc3339();
            match step {
                Step::Poll | Step::Watch => {
                    self.faults.restart();
                    let report = if matches!(step, Step::Poll) {
                        poll_tick(&ports, &self.config, &TickOptions::default()).await
                    } else {
                        watch_tick(&ports, &self.config, &TickOptions::default()).await
                    };
                    let crashed = self.faults.dead.load(Ordering::SeqCst);
                    if crashed {
                        crashed_ticks.push(i);
                    } else {
                        assert!(
                            !report.failed(),
                            "tick {i} ({step:?}) failed without a crash: {:#?}",
                            report.entries
                        );
                        self.check_after_tick(i);
                    }
                }
                Step::Agent => self.agent_step(&thread, &now),
            }
        }
        crashed_ticks
    }

    /// The agent acts only on what it was actually given: it pushes a red
    /// commit once dispatched, works once it received a corrective turn, then
    /// pushes the fix.
    fn agent_step(&self, thread: &str, now: &str) {
        let (dispatched, corrected) = {
            let state = lock(&self.executor.state);
            let t = state.threads.get(thread);
            (t.is_some(), t.is_some_and(|t| t.turns.contains_key(&1)))
        };
        let mut agent = lock(&self.agent);
        if !dispatched || agent.pushed_green {
            return;
        }
        if !agent.pushed_red {
            let mut m = lock(&self.model);
            m.push_commit(REPO, "red0001", "Try\n\nRefs #7\nAFK-Issue: infra#7", now);
            m.set_checks(REPO, "red0001", &[("test", "completed", Some("failure"))]);
            drop(m);
            self.executor.set_status(thread, Some(ThreadStatus::Idle));
            agent.pushed_red = true;
        } else if corrected && !agent.working {
            self.executor
                .set_status(thread, Some(ThreadStatus::Running));
            agent.working = true;
        } else if agent.working {
            let mut m = lock(&self.model);
            m.push_commit(REPO, "green02", "Fix\n\nRefs #7\nAFK-Issue: infra#7", now);
            m.set_checks(REPO, "green02", &[("test", "completed", Some("success"))]);
            drop(m);
            self.executor.set_status(thread, Some(ThreadStatus::Idle));
            agent.pushed_green = true;
        }
    }

    fn issue(&self) -> afk_sim::github::Issue {
        lock(&self.model).issue(REPO, 7).clone()
    }

    fn progress_comments(&self) -> Vec<String> {
        self.issue()
            .comments
            .iter()
            .filter(|c| c.user == GITHUB_LOGIN && checklist::has_marker(&c.body))
            .map(|c| c.body.clone())
            .collect()
    }

    /// After a tick that did not crash.
    fn check_after_tick(&self, tick: usize) {
        let issue = self.issue();
        let comments = self.progress_comments();
        assert!(
            comments.len() <= 1,
            "tick {tick}: {} progress comments",
            comments.len()
        );
        if issue.labels.iter().any(|l| l == "agent-in-progress") {
            // Never a lock without a run record past the tick after a crash,
            // and never a lock on an issue that was not dispatched.
            let record = comments
                .first()
                .and_then(|c| ProgressComment.record(c).ok().flatten())
                .unwrap_or_else(|| panic!("tick {tick}: locked without a readable run record"));
            let state = lock(&self.executor.state);
            assert!(
                state.threads.contains_key(&record.thread_id),
                "tick {tick}: locked but its thread was never created"
            );
        }
    }

    fn check_end(&self, plan: Option<(usize, Mode)>) -> usize {
        let issue = self.issue();
        let label = format!("{plan:?}");
        assert_eq!(issue.state, "closed", "{label}: the run did not finish");
        assert!(
            !issue.labels.iter().any(|l| l == "agent-in-progress"),
            "{label}: still locked"
        );
        let comments = self.progress_comments();
        assert_eq!(comments.len(), 1, "{label}: progress comments");
        let state = lock(&self.executor.state);
        let mut created = state.creations.clone();
        created.sort();
        created.dedup();
        assert_eq!(
            created.len(),
            state.creations.len(),
            "{label}: a thread was created twice"
        );
        assert_eq!(
            state.creations.len(),
            1,
            "{label}: one thread for the one attempt"
        );
        let turns: usize = state.threads.values().map(|t| t.turns.len()).sum();
        assert!(turns <= 2, "{label}: {turns} turns for one red commit");
        let rung: Vec<OutcomeKind> = lock(&self.notifier.rung).iter().map(|b| b.kind).collect();
        assert!(!rung.is_empty(), "{label}: the terminal doorbell was lost");
        assert!(
            rung.iter().all(|k| *k == OutcomeKind::Done),
            "{label}: {rung:?}"
        );
        assert!(rung.len() <= 2, "{label}: rang {} times", rung.len());
        rung.len()
    }
}

#[tokio::test]
async fn every_crash_point_of_a_lifecycle_keeps_the_invariants() {
    // A clean run first: it must finish, and it counts the I/O calls.
    let clean = Lifecycle::new();
    assert!(clean.run(None).await.is_empty());
    assert_eq!(clean.check_end(None), 1);
    let total = clean.faults.calls.load(Ordering::SeqCst);
    assert!(total > 20, "the lifecycle makes {total} calls");

    let mut exercised = 0;
    let mut double_rings = 0;
    for n in 0..total {
        for mode in [Mode::Before, Mode::After] {
            let life = Lifecycle::new();
            let crashed = life.run(Some((n, mode))).await;
            assert_eq!(crashed.len(), 1, "call {n} {mode:?}: the fault fired once");
            if life.check_end(Some((n, mode))) == 2 {
                double_rings += 1;
            }
            exercised += 1;
        }
    }
    println!(
        "crash harness: {exercised} crash points exercised ({total} I/O calls x before/after the effect); \
         {double_rings} rang twice (death between the ring and recording it)"
    );
    assert!(
        double_rings <= 2,
        "only a death between the ring and its record rings twice"
    );
}
