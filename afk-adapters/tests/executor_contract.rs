//! The Executor port's contract (`afk_sim::contract`), run against the
//! in-memory fake and against the T3 adapter talking to the loopback T3
//! simulator (which validates every command against the v0.0.27 schema and
//! answers like the real server). The local executor runs it in its own
//! crate's tests, with real processes.

use afk_adapters::http::Secret;
use afk_adapters::t3::{T3Executor, T3Settings};
use afk_core::ThreadStatus;
use afk_loop::ports::Executor;
use afk_sim::fakes::FakeExecutor;
use afk_sim::{Sim, T3_TOKEN, lock};

use crate::common::fast_http;

use afk_sim::contract::ExecutorWorld as World;

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
    fn delete(&self, thread: &str) -> bool {
        self.0.delete(thread);
        true
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
    fn delete(&self, thread: &str) -> bool {
        lock(&self.sim.t3).delete_thread(thread);
        true
    }
}

macro_rules! contract {
    ($($name:ident),+ $(,)?) => {
        mod fake {
            $(
                #[tokio::test]
                async fn $name() {
                    let w = super::Fake(super::FakeExecutor::new());
                    afk_sim::contract::$name(&w).await;
                }
            )+
        }
        mod t3 {
            $(
                #[tokio::test]
                async fn $name() {
                    let (sim, executor) = super::t3_world().await;
                    let w = super::T3World { sim, executor };
                    afk_sim::contract::$name(&w).await;
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
