//! The attach stream: `GET /api/session/{id}/stream` as Server-Sent Events.
//!
//! 1. replay the log (all of it, or after `Last-Event-ID`), each frame
//!    `id: <n>\ndata: <json>\n\n`, several frames per chunk;
//! 2. `event: caught-up\ndata: {}\n\n`;
//! 3. the live tail: never an id twice, never one skipped. It is read from
//!    the log a page at a time, like the replay, whenever the session says
//!    the log grew; a client that falls behind holds no queue of events, only
//!    the page it is sending (where events were lost to a failed spill
//!    file, the log's `error` event stands in for them);
//! 4. `: keepalive` after each quiet interval.
//!
//! The stream ends when the server shuts down. It does not authenticate
//! (the router does) and does not parse `Last-Event-ID` leniently: anything
//! but a plain decimal id is treated as absent, which replays everything
//! (the page renders by id, so a full replay never duplicates a message).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use futures_util::Stream;
use tokio::sync::watch;

use crate::session::{Event, Session};

/// The `caught-up` frame.
pub const CAUGHT_UP: &str = "event: caught-up\ndata: {}\n\n";
/// The keepalive comment.
pub const KEEPALIVE: &str = ": keepalive\n\n";

/// Reads `Last-Event-ID`: a decimal event id, or `None` for anything else.
pub fn last_event_id(value: Option<&str>) -> Option<u64> {
    let v = value?.trim();
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Frames are sent in chunks of about this many bytes during replay.
const CHUNK: usize = 16 * 1024;

enum Phase {
    Replay,
    CaughtUp,
    Live,
    Done,
}

struct Attach {
    session: Arc<Session>,
    phase: Phase,
    pending: VecDeque<Arc<Event>>,
    /// The log's length, changed on every append.
    appended: watch::Receiver<u64>,
    next: u64,
    /// The replay ends before this id (the log's length at the attach).
    replay_end: u64,
    keepalive: Duration,
    shutdown: watch::Receiver<bool>,
}

fn chunk_of(pending: &mut VecDeque<Arc<Event>>, next: &mut u64) -> String {
    let mut out = String::new();
    while let Some(e) = pending.front() {
        if out.len() >= CHUNK {
            break;
        }
        if e.id >= *next {
            out.push_str(&e.frame());
            *next = e.id + 1;
        }
        pending.pop_front();
    }
    out
}

impl Attach {
    async fn step(&mut self) -> Option<String> {
        loop {
            match self.phase {
                Phase::Replay => {
                    if self.pending.is_empty() {
                        if self.next >= self.replay_end {
                            self.phase = Phase::CaughtUp;
                            continue;
                        }
                        // The replay is read a page at a time (from the
                        // spill file for old events): memory holds one page.
                        let page: Vec<Arc<Event>> = self
                            .session
                            .events_from(self.next, 4 * CHUNK)
                            .into_iter()
                            .take_while(|e| e.id < self.replay_end)
                            .collect();
                        if page.is_empty() {
                            // Nothing readable before the end (a lost
                            // spill): go live rather than wait.
                            self.next = self.replay_end;
                            self.phase = Phase::CaughtUp;
                            continue;
                        }
                        self.pending.extend(page);
                    }
                    return Some(chunk_of(&mut self.pending, &mut self.next));
                }
                Phase::CaughtUp => {
                    self.phase = Phase::Live;
                    return Some(CAUGHT_UP.to_owned());
                }
                Phase::Done => return None,
                Phase::Live => {
                    if !self.pending.is_empty() {
                        let out = chunk_of(&mut self.pending, &mut self.next);
                        if !out.is_empty() {
                            return Some(out);
                        }
                        continue;
                    }
                    // Seen before reading, so an append right after the
                    // read still wakes the wait below.
                    self.appended.borrow_and_update();
                    let page = self.session.events_from(self.next, 4 * CHUNK);
                    if !page.is_empty() {
                        self.pending.extend(page);
                        continue;
                    }
                    tokio::select! {
                        grew = self.appended.changed() => if grew.is_err() {
                            self.phase = Phase::Done;
                        },
                        () = tokio::time::sleep(self.keepalive) => return Some(KEEPALIVE.to_owned()),
                        _ = self.shutdown.wait_for(|s| *s) => self.phase = Phase::Done,
                    }
                }
            }
        }
    }
}

/// The SSE body for one attach: replay after `after`, `caught-up`, live tail
/// with keepalives, until `shutdown` turns true.
pub fn stream(
    session: Arc<Session>,
    after: Option<u64>,
    keepalive: Duration,
    shutdown: watch::Receiver<bool>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    let (replay_end, appended) = session.attach();
    let next = after.map_or(0, |a| a.saturating_add(1));
    let state = Attach {
        session,
        phase: Phase::Replay,
        pending: VecDeque::new(),
        appended,
        next,
        replay_end,
        keepalive,
        shutdown,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        let chunk = state.step().await?;
        Some((Ok(Bytes::from(chunk)), state))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_event_id_is_a_plain_decimal_or_absent() {
        for (value, want) in [
            (Some("0"), Some(0)),
            (Some("41"), Some(41)),
            (Some(" 7 "), Some(7)),
            (None, None),
            (Some(""), None),
            (Some("-1"), None),
            (Some("1e3"), None),
            (Some("abc"), None),
            (Some("99999999999999999999999"), None),
        ] {
            assert_eq!(last_event_id(value), want, "{value:?}");
        }
    }
}
