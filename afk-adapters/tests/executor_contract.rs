//! The Executor port's contract, run against the in-memory fake and against
//! the T3 adapter talking to the loopback T3 simulator (which validates every
//! command against the v0.0.27 schema and answers like the real server).

use afk_adapters::http::Secret;
use afk_adapters::t3::{T3Executor, T3Settings};
use afk_core::ThreadStatus;
use afk_core::ports::{PortError, ThreadSpec, WatchedThread};
use afk_loop::ports::Executor;
use afk_sim::fakes::FakeExecutor;
use afk_sim::{Sim, T3_TOKEN, lock};

use crate::common::{fast_http, ts};

/// A way to observe and script the executor's world.
trait World {
    fn executor(&self) -> &dyn Executor;
    /// Threads that exist (created once each).
    fn threads_created(&self) -> usize;
    /// Turns the thread accepted (distinct steps).
    fn turns(&self, thread: &str) -> usize;
    /// Plays the agent's side.
    fn script(&self, thread: &str, status: ThreadStatus, at: &str);
    fn delete(&self, thread: &str);
}

struct Fake(FakeExecutor);

impl World for Fake {
    fn executor(&self) -> &dyn Executor {
        &self.0
    }
    fn threads_created(&self) -> usize {
        lock(&self.0.state).creations.len()
    }
    fn turns(&self, thread: &str) -> usize {
        lock(&self.0.state)
            .threads
            .get(thread)
            .map_or(0, |t| t.turns.len())
    }
    fn script(&self, thread: &str, status: ThreadStatus, _at: &str) {
        self.0.set_status(thread, Some(status));
    }
    fn delete(&self, thread: &str) {
        self.0.delete(thread);
    }
}

struct T3World {
    sim: Sim,
    executor: T3Executor,
}

pub async fn t3_world() -> (Sim, T3Executor) {
    let sim = Sim::start().await;
    let executor = T3Executor::new(
        fast_http(),
        T3Settings {
            base_url: sim.uri(),
            web_url: "https://t3.example".into(),
            token: Secret::Value(T3_TOKEN.into()),
            model: "claude-sonnet-4-6".into(),
            instance: "claudeAgent".into(),
            workspace_base: "/data".into(),
            default_owner: Some("acme".into()),
        },
    );
    (sim, executor)
}

impl World for T3World {
    fn executor(&self) -> &dyn Executor {
        &self.executor
    }
    fn threads_created(&self) -> usize {
        lock(&self.sim.t3).threads_created()
    }
    fn turns(&self, thread: &str) -> usize {
        lock(&self.sim.t3)
            .threads
            .get(thread)
            .map_or(0, |t| t.turns_started.len())
    }
    fn script(&self, thread: &str, status: ThreadStatus, at: &str) {
        let mut m = lock(&self.sim.t3);
        match status {
            ThreadStatus::Running => m.run_turn(thread, at),
            ThreadStatus::Idle => m.finish_turn(thread, at),
            ThreadStatus::Error => m.fail_turn(thread, at),
            ThreadStatus::NeedsInput => m.request_input(thread, at),
        }
    }
    fn delete(&self, thread: &str) {
        lock(&self.sim.t3).delete_thread(thread);
    }
}

fn spec(attempt: u32) -> ThreadSpec {
    ThreadSpec {
        repo: "infra".into(),
        issue: 7,
        attempt,
        title: "infra#7: Rotate certificates".into(),
        prompt: "Work test-first. Read the issue: gh issue view 7 --repo acme/infra".into(),
        created_at: ts("2026-06-10T12:02:00Z"),
    }
}

async fn dispatch_creates_one_thread_with_its_opening_turn(w: &dyn World) {
    let e = w.executor();
    let before = e.snapshot(&[]).await.unwrap();
    let id = e.ensure_thread(&before, &spec(0)).await.unwrap();
    assert_eq!(id, e.thread_id("infra", 7, 0));
    assert_eq!(w.threads_created(), 1);
    assert_eq!(w.turns(&id), 1);
    let after = e.snapshot(&[]).await.unwrap();
    assert!(after.is_live(&id));
}

async fn a_rerun_after_a_crash_creates_nothing_new(w: &dyn World) {
    let e = w.executor();
    let stale = e.snapshot(&[]).await.unwrap();
    let id = e.ensure_thread(&stale, &spec(0)).await.unwrap();
    // The process died after dispatching; the next tick reads a new snapshot.
    let fresh = e.snapshot(&[]).await.unwrap();
    assert_eq!(e.ensure_thread(&fresh, &spec(0)).await.unwrap(), id);
    // Even a re-run on the snapshot read before the crash starts no twin.
    assert_eq!(e.ensure_thread(&stale, &spec(0)).await.unwrap(), id);
    assert_eq!(w.threads_created(), 1);
    assert_eq!(w.turns(&id), 1);
}

async fn attempts_get_their_own_threads(w: &dyn World) {
    let e = w.executor();
    let s = e.snapshot(&[]).await.unwrap();
    let first = e.ensure_thread(&s, &spec(0)).await.unwrap();
    let s = e.snapshot(&[]).await.unwrap();
    let second = e.ensure_thread(&s, &spec(1)).await.unwrap();
    assert_ne!(first, second);
    assert_eq!(w.threads_created(), 2);
}

async fn follow_up_turns_are_sent_once_per_step(w: &dyn World) {
    let e = w.executor();
    let s = e.snapshot(&[]).await.unwrap();
    let id = e.ensure_thread(&s, &spec(0)).await.unwrap();
    let s = e.snapshot(&[]).await.unwrap();
    let at = ts("2026-06-10T13:00:00Z");
    e.send_turn(&s, &id, 1, "CI is red on abc123: fix forward.", at)
        .await
        .unwrap();
    e.send_turn(&s, &id, 1, "CI is red on abc123: fix forward.", at)
        .await
        .unwrap();
    let s = e.snapshot(&[]).await.unwrap();
    e.send_turn(&s, &id, 1, "CI is red on abc123: fix forward.", at)
        .await
        .unwrap();
    assert_eq!(w.turns(&id), 2);
}

async fn turns_to_missing_or_deleted_threads_are_not_found(w: &dyn World) {
    let e = w.executor();
    let s = e.snapshot(&[]).await.unwrap();
    let missing = e
        .send_turn(&s, "no-such-thread", 1, "x", ts("2026-06-10T13:00:00Z"))
        .await;
    assert!(
        matches!(missing, Err(PortError::NotFound { .. })),
        "{missing:?}"
    );
    let id = e.ensure_thread(&s, &spec(0)).await.unwrap();
    w.delete(&id);
    let s = e.snapshot(&[]).await.unwrap();
    let deleted = e
        .send_turn(&s, &id, 1, "x", ts("2026-06-10T13:00:00Z"))
        .await;
    assert!(
        matches!(deleted, Err(PortError::NotFound { .. })),
        "{deleted:?}"
    );
    // A deleted thread's id is never reused.
    let again = e.ensure_thread(&s, &spec(0)).await;
    assert!(
        matches!(again, Err(PortError::Permanent { .. })),
        "{again:?}"
    );
    assert_eq!(w.threads_created(), 1);
}

async fn liveness_is_reported(w: &dyn World) {
    let e = w.executor();
    let sent = "2026-06-10T12:02:00Z";
    for (status, issue_attempt) in [
        (ThreadStatus::Running, 0),
        (ThreadStatus::Idle, 1),
        (ThreadStatus::Error, 2),
        (ThreadStatus::NeedsInput, 3),
    ] {
        let s = e.snapshot(&[]).await.unwrap();
        let id = e.ensure_thread(&s, &spec(issue_attempt)).await.unwrap();
        w.script(&id, status, "2026-06-10T12:05:00Z");
        let watched = [WatchedThread {
            thread_id: id.clone(),
            turn_sent_at: ts(sent),
        }];
        let s = e.snapshot(&watched).await.unwrap();
        assert_eq!(s.status(&id), Some(status), "{status}");
    }
}

/// Stopping a running agent interrupts its turn and stops its session; its
/// status is no longer running. Stopping again changes nothing, and a thread
/// that is gone or was never made is already stopped.
async fn stopping_a_thread_stops_its_agent_and_is_safe_to_repeat(w: &dyn World) {
    let e = w.executor();
    let s = e.snapshot(&[]).await.unwrap();
    let id = e.ensure_thread(&s, &spec(0)).await.unwrap();
    w.script(&id, ThreadStatus::Running, "2026-06-10T12:03:00Z");
    let watched = [WatchedThread {
        thread_id: id.clone(),
        turn_sent_at: ts("2026-06-10T12:02:00Z"),
    }];
    let s = e.snapshot(&watched).await.unwrap();
    assert_eq!(s.status(&id), Some(ThreadStatus::Running));
    let at = ts("2026-06-10T12:10:00Z");
    e.stop_thread(&s, &id, at).await.unwrap();
    let after = e.snapshot(&watched).await.unwrap();
    assert_ne!(
        after.status(&id),
        Some(ThreadStatus::Running),
        "the agent still runs after a stop"
    );
    // A re-run after a crash sends the same commands: nothing changes.
    e.stop_thread(&s, &id, at).await.unwrap();
    e.stop_thread(&after, &id, at).await.unwrap();
    assert_eq!(
        e.snapshot(&watched).await.unwrap().status(&id),
        after.status(&id)
    );
    assert_eq!(w.turns(&id), 1, "stopping sends no turn");
    // Gone or never made: already stopped, no error.
    w.delete(&id);
    let gone = e.snapshot(&[]).await.unwrap();
    e.stop_thread(&gone, &id, at).await.unwrap();
    e.stop_thread(&gone, &e.thread_id("infra", 99, 0), at)
        .await
        .unwrap();
}

macro_rules! contract {
    ($($name:ident),+ $(,)?) => {
        mod fake {
            $(
                #[tokio::test]
                async fn $name() {
                    let w = super::Fake(super::FakeExecutor::new());
                    super::$name(&w).await;
                }
            )+
        }
        mod t3 {
            $(
                #[tokio::test]
                async fn $name() {
                    let (sim, executor) = super::t3_world().await;
                    let w = super::T3World { sim, executor };
                    super::$name(&w).await;
                    // Every command the adapter sent decoded and was accepted
                    // or deduplicated: the simulator answers a bad shape with
                    // an empty 400, which would fail here.
                    for d in &afk_sim::lock(&w.sim.t3).log {
                        assert!(d.status == 200, "T3 answered {} to {}", d.status, d.command);
                    }
                }
            )+
        }
    };
}

contract!(
    dispatch_creates_one_thread_with_its_opening_turn,
    a_rerun_after_a_crash_creates_nothing_new,
    attempts_get_their_own_threads,
    follow_up_turns_are_sent_once_per_step,
    turns_to_missing_or_deleted_threads_are_not_found,
    liveness_is_reported,
    stopping_a_thread_stops_its_agent_and_is_safe_to_repeat,
);
