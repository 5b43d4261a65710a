//! The Executor port's contract (`afk_sim::contract`, which T3, the
//! in-memory fake and the local executor run too), on the simulated
//! cluster through the real kube-rs client.

use afk_core::ThreadStatus;
use afk_loop::ports::Executor;
use afk_sim::contract::ExecutorWorld;
use afk_sim::lock;

use crate::world::{World, claude_result, world};

impl ExecutorWorld for World {
    fn executor(&self) -> &dyn Executor {
        &self.exec
    }

    fn threads_created(&self) -> usize {
        let c = lock(&self.created);
        let mut threads: Vec<&String> = c.jobs.iter().map(|(_, t, _)| t).collect();
        threads.sort();
        threads.dedup();
        threads.len()
    }

    fn turns(&self, thread: &str) -> usize {
        // A turn counts once its Job and its prompt exist (the pod cannot
        // start without the prompt); a second Job for a step would show.
        let c = lock(&self.created);
        c.jobs
            .iter()
            .filter(|(name, t, _)| t == thread && c.maps.contains(name))
            .count()
    }

    fn script(&self, thread: &str, status: ThreadStatus, _at: &str) {
        let job = self.latest(thread);
        let mut m = lock(&self.model);
        match status {
            ThreadStatus::Running => m.run(&job),
            ThreadStatus::Idle => {
                m.run(&job);
                m.succeed(&job, &claude_result(false, "done", 0.25));
            }
            ThreadStatus::Error => {
                m.run(&job);
                m.fail(
                    &job,
                    1,
                    &claude_result(true, "the tests would not pass", 0.5),
                );
            }
            ThreadStatus::NeedsInput => panic!("a Job never waits for input"),
        }
    }

    fn delete(&self, _thread: &str) -> bool {
        // Only afk's stop deletes a thread's Jobs.
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
    ($($name:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $name() {
            let w = world().await;
            afk_sim::contract::$name(&w).await;
            w.assert_no_violations();
        }
    )*};
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
