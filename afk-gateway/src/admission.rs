//! How many turns run at once: at most
//! [`crate::settings::Settings::max_turns`]; past that a request waits in
//! a bounded queue for a limited time.
//!
//! - The queue is full: refused at once, 429 with `Retry-After`.
//! - It waited its time without a turn coming free: 503 with
//!   `Retry-After`.
//!
//! A permit is held for the whole turn, until its process is gone. It does
//! not count waiting processes of the pool (they run no turn).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a request gets no turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Every turn is taken and the queue is full.
    #[error(
        "{running} turns are running and {waiting} requests are waiting, the most this gateway takes; try again shortly"
    )]
    QueueFull {
        /// Turns at once.
        running: usize,
        /// Requests waiting.
        waiting: usize,
    },
    /// No turn came free in time.
    #[error("no turn came free within {0} s; try again shortly")]
    Waited(u64),
}

/// The turn slots and their queue.
#[derive(Debug)]
pub struct Admission {
    slots: Arc<Semaphore>,
    max_turns: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
    wait: Duration,
}

/// Counts a waiting request while it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Admission {
    /// `max_turns` at once, `max_waiting` waiting at most `wait` each.
    pub fn new(max_turns: usize, max_waiting: usize, wait: Duration) -> Admission {
        let max_turns = max_turns.max(1);
        Admission {
            slots: Arc::new(Semaphore::new(max_turns)),
            max_turns,
            waiting: AtomicUsize::new(0),
            max_waiting,
            wait,
        }
    }

    /// A turn slot, at once or after waiting.
    ///
    /// # Errors
    /// [`Refused`] when the queue is full or the wait is over.
    pub async fn enter(&self) -> Result<OwnedSemaphorePermit, Refused> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let before = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        if before >= self.max_waiting {
            return Err(Refused::QueueFull {
                running: self.max_turns,
                waiting: before,
            });
        }
        match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(Refused::Waited(self.wait.as_secs())),
        }
    }

    /// How many requests wait.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn past_the_slots_requests_wait_then_are_refused_and_a_freed_slot_is_taken() {
        let admission = Arc::new(Admission::new(1, 1, Duration::from_millis(200)));
        let first = admission.enter().await.unwrap_or_else(|e| panic!("{e}"));
        // The second waits; the third finds the queue full at once.
        let second = tokio::spawn({
            let a = admission.clone();
            async move { a.enter().await }
        });
        let queued = tokio::time::timeout(Duration::from_secs(5), async {
            while admission.waiting() == 0 {
                tokio::task::yield_now().await;
            }
        });
        assert!(queued.await.is_ok());
        assert_eq!(
            admission.enter().await.err(),
            Some(Refused::QueueFull {
                running: 1,
                waiting: 1
            })
        );
        // Freed: the waiting one gets it.
        drop(first);
        let second = second.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(second.is_ok());
        // Nobody frees it now: a waiter is refused once its time is over.
        assert_eq!(admission.enter().await.err(), Some(Refused::Waited(0)));
        assert_eq!(admission.waiting(), 0);
    }
}
