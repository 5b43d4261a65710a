//! `afk loop`'s rounds: the poll tick, then the watch tick, then a pause,
//! again and again, until the operator says stop.
//!
//! Stopping is counted, not flagged: the first stop request lets the tick
//! that runs finish (a tick is bounded by its deadline) and ends the loop
//! after it; a second one abandons the tick at once (every tick is safe to
//! cut short anywhere: what it began, the next tick finishes). A stop during
//! the pause ends the loop at once. Agents are never touched here: they run
//! on, and the next loop picks them up.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Which tick a round runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// The poll tick.
    Poll,
    /// The watch tick.
    Watch,
}

/// How the rounds ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Told to stop between ticks, or after the tick it let finish.
    Stopped,
    /// Told to stop twice: the running tick was abandoned.
    Abandoned,
}

/// Runs rounds of `tick(Poll)` then `tick(Watch)`, `every` apart, until
/// `stops` (a count of stop requests) says stop; `on_stop_during_tick` is
/// called when the first request arrives while a tick runs.
pub async fn rounds<F, Fut>(
    every: Duration,
    stops: watch::Receiver<u32>,
    mut tick: F,
    mut on_stop_during_tick: impl FnMut(),
) -> Ended
where
    F: FnMut(Tick) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        for which in [Tick::Poll, Tick::Watch] {
            if *stops.borrow() > 0 {
                return Ended::Stopped;
            }
            let mut signals = stops.clone();
            let running = tick(which);
            tokio::pin!(running);
            loop {
                tokio::select! {
                    () = &mut running => break,
                    changed = signals.changed() => {
                        if changed.is_err() || *signals.borrow() >= 2 {
                            return Ended::Abandoned;
                        }
                        on_stop_during_tick();
                    }
                }
            }
        }
        if *stops.borrow() > 0 {
            return Ended::Stopped;
        }
        let mut signals = stops.clone();
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = signals.changed() => return Ended::Stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    fn log() -> Arc<Mutex<Vec<String>>> {
        Arc::new(Mutex::new(Vec::new()))
    }

    fn push(log: &Arc<Mutex<Vec<String>>>, what: String) {
        log.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(what);
    }

    fn seen(log: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
        log.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    #[tokio::test(start_paused = true)]
    async fn rounds_run_poll_then_watch_every_interval_until_stopped() {
        let (tx, rx) = watch::channel(0u32);
        let ticks = log();
        let t = ticks.clone();
        let stopper = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(150)).await;
            tx.send_modify(|n| *n += 1);
            tx
        });
        let ended = rounds(
            Duration::from_secs(60),
            rx,
            |which| {
                let t = t.clone();
                async move {
                    push(&t, format!("{which:?}"));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            },
            || {},
        )
        .await;
        assert_eq!(ended, Ended::Stopped);
        // Rounds at 0 s, 62 s and 124 s; the stop at 150 s ends the pause.
        assert_eq!(
            seen(&ticks),
            ["Poll", "Watch", "Poll", "Watch", "Poll", "Watch"]
        );
        drop(stopper.await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_during_a_tick_lets_it_finish_and_a_second_abandons_it() {
        for (requests, expected) in [(1u32, Ended::Stopped), (2, Ended::Abandoned)] {
            let (tx, rx) = watch::channel(0u32);
            let ticks = log();
            let t = ticks.clone();
            let noted = log();
            let n = noted.clone();
            let stopper = tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(5)).await;
                for _ in 0..requests {
                    tx.send_modify(|c| *c += 1);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                tx
            });
            let ended = rounds(
                Duration::from_secs(60),
                rx,
                |which| {
                    let t = t.clone();
                    async move {
                        push(&t, format!("{which:?} started"));
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        push(&t, format!("{which:?} finished"));
                    }
                },
                || push(&n, "stopping after this tick".into()),
            )
            .await;
            assert_eq!(ended, expected, "{requests} request(s)");
            let ran = seen(&ticks);
            if expected == Ended::Stopped {
                // The poll tick finished; the watch tick never started.
                assert_eq!(ran, ["Poll started", "Poll finished"]);
            } else {
                assert_eq!(ran, ["Poll started"], "abandoned mid-tick");
            }
            assert_eq!(seen(&noted), ["stopping after this tick"]);
            drop(stopper.await);
        }
    }
}
