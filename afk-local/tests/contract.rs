//! The Executor port's contract (`afk_sim::contract`, which the T3 adapter
//! and the in-memory fake run too), with real process trees and git.

use afk_core::ThreadStatus;
use afk_loop::ports::Executor;
use afk_sim::contract::ExecutorWorld;

use crate::world::{Machine, machine, wait_for};

impl ExecutorWorld for Machine {
    fn executor(&self) -> &dyn Executor {
        &self.exec
    }

    fn threads_created(&self) -> usize {
        std::fs::read_dir(self.local_dir().join("runs"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().join("record.json").exists())
            })
            .count()
    }

    fn turns(&self, thread: &str) -> usize {
        // A turn counts once its agent started (each start is logged by
        // the agent itself: a twin would show). The agent runs detached:
        // wait until every turn the record says was started has logged its
        // start (on a loaded machine that takes a moment).
        let started = self
            .record(thread)
            .turns
            .iter()
            .filter(|t| t.supervisor.is_some() || t.end.is_some())
            .count();
        let count = || self.starts().iter().filter(|s| s.0 == thread).count();
        wait_for(
            || count() >= started,
            "every started agent to log its start",
        );
        count()
    }

    fn script(&self, thread: &str, status: ThreadStatus, _at: &str) {
        let step = self.record(thread).turns.last().unwrap().step;
        // The agent must have started before it is told anything.
        wait_for(
            || self.starts().iter().any(|s| s.0 == thread && s.1 == step),
            "the agent to start",
        );
        match status {
            ThreadStatus::Running => {}
            ThreadStatus::Idle => {
                self.verdict(thread, step, "ok");
                self.wait_end(thread, step);
            }
            ThreadStatus::Error => {
                self.verdict(thread, step, "fail");
                self.wait_end(thread, step);
            }
            ThreadStatus::NeedsInput => panic!("a local agent never waits for input"),
        }
    }

    fn delete(&self, _thread: &str) -> bool {
        // A local thread is never deleted: its record stays.
        false
    }

    fn statuses(&self) -> Vec<ThreadStatus> {
        vec![
            ThreadStatus::Running,
            ThreadStatus::Idle,
            ThreadStatus::Error,
        ]
    }
}

macro_rules! contract {
    ($($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let w = machine();
                afk_sim::contract::$name(&w).await;
            }
        )+
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
