//! Sessions: the server owns the conversation, clients attach (the tmux
//! model).
//!
//! This file is long because the event log, its spill file and the
//! detached turn share one lock and are tested together.
//!
//! A [`Session`] has a UUID, an append-only event log with sequential ids
//! (0, 1, 2, …), a broadcast channel to attached subscribers, and at most one
//! running turn. Appending and subscribing happen under the same lock, so an
//! attaching client gets the log's length plus a receiver that starts
//! exactly after it, and reads the replay a page at a time: no event is
//! lost or repeated between replay and live tail. Every event is also
//! written to the session's spill file (`<session dir>/events.jsonl`), and
//! memory holds only the newest ones (at most 4,096 events or 8 MiB): a
//! chatty turn does not grow the server, and an old event is read back from
//! the file.
//!
//! A turn runs detached from any client: the agent (`claude -p
//! --output-format stream-json --verbose [--model m]`, the prompt on its
//! standard input, with `--session-id <id>` until the agent has announced its
//! session, `--resume <id>` after)
//! runs as an argument vector in the session's own directory and its own
//! process group. Its stdout lines are translated into events as they come.
//! Cancel and the turn timeout kill the group. Every turn appends exactly one
//! `turn_end`, whatever happened, as its last event.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::BufReader;
use tokio::sync::{broadcast, watch};
use uuid::Uuid;

use crate::event::{self, Body};
use afk_process::End;

/// How turns run.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    /// The agent program (`claude`).
    pub bin: String,
    /// `--model`, unless a prompt names its own.
    pub model: Option<String>,
    /// Each session works in `<sessions_dir>/<session id>/`.
    pub sessions_dir: PathBuf,
    /// A turn running longer is killed.
    pub turn_timeout: Duration,
}

/// One logged event: its id and its JSON text (with the id inside).
#[derive(Debug)]
pub struct Event {
    /// Its position in the log.
    pub id: u64,
    /// `{"id": n, "type": …, …}` on one line.
    pub json: String,
}

impl Event {
    /// The SSE frame for it: `id: <n>\ndata: <json>\n\n`.
    pub fn frame(&self) -> String {
        format!("id: {}\ndata: {}\n\n", self.id, self.json)
    }
}

#[derive(Debug)]
struct Turn {
    cancel: watch::Sender<bool>,
    done: watch::Receiver<bool>,
}

/// At most this many events are held in memory per session; older ones
/// are read back from the session's spill file.
const HELD_EVENTS: usize = 4096;
/// At most this many bytes of events are held in memory per session.
const HELD_BYTES: usize = 8 << 20;
/// A spill file index entry every this many events.
const INDEX_EVERY: u64 = 256;

/// The session's events on disk (`<session dir>/events.jsonl`, one event a
/// line, every event), so memory holds only the newest ones.
#[derive(Debug)]
struct Spill {
    path: PathBuf,
    file: std::fs::File,
    written: u64,
    /// `(event id, byte offset)` of every [`INDEX_EVERY`]th event.
    index: Vec<(u64, u64)>,
    /// A write failed: nothing more is dropped from memory (the file would
    /// miss it).
    broken: bool,
}

#[derive(Debug, Default)]
struct State {
    /// The newest events (all of them without a spill file).
    held: std::collections::VecDeque<Arc<Event>>,
    /// The id of `held`'s first event.
    first_held: u64,
    /// The id the next event gets.
    next_id: u64,
    held_bytes: usize,
    spill: Option<Spill>,
    turn: Option<Turn>,
    /// The agent announced its session (`system/init`): later turns resume.
    agent_knows_session: bool,
}

/// Why a turn could not start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// A turn is running.
    #[error("a turn is already running in this session")]
    Busy,
}

/// One session.
#[derive(Debug)]
pub struct Session {
    /// Its id.
    pub id: Uuid,
    state: Mutex<State>,
    tx: broadcast::Sender<Arc<Event>>,
    /// When it was last used (an event appended, a client attached).
    last_active: Mutex<std::time::Instant>,
}

/// How many events a slow subscriber may fall behind before it catches up
/// from the log instead.
const CHANNEL: usize = 1024;

impl Session {
    fn new(id: Uuid, spill_dir: Option<&Path>) -> Session {
        let (tx, _) = broadcast::channel(CHANNEL);
        let mut state = State::default();
        if let Some(dir) = spill_dir {
            let dir = dir.join(id.to_string());
            let path = dir.join("events.jsonl");
            let opened = std::fs::create_dir_all(&dir).and_then(|()| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
            });
            match opened {
                Ok(file) => {
                    state.spill = Some(Spill {
                        path,
                        file,
                        written: 0,
                        index: Vec::new(),
                        broken: false,
                    });
                }
                Err(e) => {
                    tracing::warn!(session = %id, error = %e, "no spill file: events stay in memory");
                }
            }
        }
        Session {
            id,
            state: Mutex::new(state),
            tx,
            last_active: Mutex::new(std::time::Instant::now()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the log half-appended
        // (push is the last step), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn touch(&self) {
        *self
            .last_active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = std::time::Instant::now();
    }

    fn last_active(&self) -> std::time::Instant {
        *self
            .last_active
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Idle: no turn runs and no client is attached, so it may be evicted.
    pub fn idle(&self) -> bool {
        !self.turn_running() && self.tx.receiver_count() == 0
    }

    fn append_locked(&self, state: &mut State, mut body: Body) -> Arc<Event> {
        self.touch();
        let id = state.next_id;
        let mut map = serde_json::Map::with_capacity(body.len() + 1);
        map.insert("id".into(), json!(id));
        map.append(&mut body);
        let event = Arc::new(Event {
            id,
            json: Value::Object(map).to_string(),
        });
        if let Some(spill) = state.spill.as_mut().filter(|s| !s.broken) {
            use std::io::Write;
            let line = format!("{}\n", event.json);
            match spill.file.write_all(line.as_bytes()) {
                Ok(()) => {
                    if id.is_multiple_of(INDEX_EVERY) {
                        spill.index.push((id, spill.written));
                    }
                    spill.written += line.len() as u64;
                }
                Err(e) => {
                    spill.broken = true;
                    tracing::warn!(session = %self.id, error = %e, "the spill file failed: events stay in memory");
                }
            }
        }
        state.next_id += 1;
        state.held_bytes += event.json.len();
        state.held.push_back(event.clone());
        // Only what the spill file holds may leave memory.
        if state.spill.as_ref().is_some_and(|s| !s.broken) {
            while state.held.len() > HELD_EVENTS || state.held_bytes > HELD_BYTES {
                let Some(old) = state.held.pop_front() else {
                    break;
                };
                state.held_bytes -= old.json.len();
                state.first_held += 1;
            }
        }
        // No subscriber is fine: the log keeps it for the next attach.
        let _ = self.tx.send(event.clone());
        event
    }

    /// Appends an event and broadcasts it.
    pub fn append(&self, body: Body) -> Arc<Event> {
        let mut state = self.lock();
        self.append_locked(&mut state, body)
    }

    /// The id the next event will get, and a receiver that yields exactly
    /// the events appended from then on. Everything before it is read with
    /// [`Session::events_from`].
    pub fn attach(&self) -> (u64, broadcast::Receiver<Arc<Event>>) {
        self.touch();
        let state = self.lock();
        (state.next_id, self.tx.subscribe())
    }

    /// The events from id `from` on, in order, at most about `max_bytes` of
    /// them (at least one when there is one): older ones read back from the
    /// spill file, newer ones from memory. A caller pages on from the last
    /// id it got.
    pub fn events_from(&self, from: u64, max_bytes: usize) -> Vec<Arc<Event>> {
        let (first_held, path, offset) = {
            let state = self.lock();
            if from >= state.first_held {
                let start = usize::try_from(from - state.first_held).unwrap_or(usize::MAX);
                let mut out = Vec::new();
                let mut bytes = 0;
                for e in state.held.iter().skip(start) {
                    if bytes >= max_bytes && !out.is_empty() {
                        break;
                    }
                    bytes += e.json.len();
                    out.push(e.clone());
                }
                return out;
            }
            let Some(spill) = &state.spill else {
                return Vec::new();
            };
            let offset = spill
                .index
                .iter()
                .rev()
                .find(|(id, _)| *id <= from)
                .map_or(0, |(_, o)| *o);
            (state.first_held, spill.path.clone(), offset)
        };
        // Outside the lock: appends go on while the file is read.
        read_spilled(&path, offset, from, first_held, max_bytes)
    }

    /// How many events the log holds (memory and file).
    pub fn len(&self) -> u64 {
        self.lock().next_id
    }

    /// How many events are held in memory.
    pub fn held(&self) -> usize {
        self.lock().held.len()
    }

    /// Whether the log is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a turn is running.
    pub fn turn_running(&self) -> bool {
        self.lock().turn.is_some()
    }

    /// Starts a detached turn: appends the `user` event and runs the agent.
    pub fn start_turn(
        self: &Arc<Self>,
        prompt: &str,
        model: Option<&str>,
        settings: &AgentSettings,
    ) -> Result<(), StartError> {
        let (cancel_tx, cancel_rx) = watch::channel(false);
        let (done_tx, done_rx) = watch::channel(false);
        let resume = {
            let mut state = self.lock();
            if state.turn.is_some() {
                return Err(StartError::Busy);
            }
            state.turn = Some(Turn {
                cancel: cancel_tx,
                done: done_rx,
            });
            self.append_locked(&mut state, event::user(prompt));
            state.agent_knows_session
        };
        // The prompt goes to standard input, never into argv: a prompt that
        // starts with `-` must not become an option (`--settings=…` runs
        // hooks), and a long one must not hit the 128 KiB argument limit.
        let mut argv = vec![
            settings.bin.clone(),
            "-p".into(),
            "--output-format".into(),
            "stream-json".into(),
            "--verbose".into(),
        ];
        if let Some(m) = model.or(settings.model.as_deref()) {
            argv.extend(["--model".into(), m.to_owned()]);
        }
        argv.extend([
            if resume { "--resume" } else { "--session-id" }.to_owned(),
            self.id.to_string(),
        ]);
        let session = self.clone();
        let dir = settings.sessions_dir.join(self.id.to_string());
        let timeout = settings.turn_timeout;
        let input = prompt.as_bytes().to_vec();
        tokio::spawn(async move {
            // Whatever ends the turn (its end, an abort, a panic in it), the
            // guard appends `turn_end` and frees the session; the agent's
            // process group, dropped on the way out, takes its tree with it.
            let _end = TurnEnd {
                session: session.clone(),
                done: done_tx,
            };
            run_turn(&session, argv, input, dir, timeout, cancel_rx).await;
        });
        Ok(())
    }

    /// Appends `turn_end` and frees the session for the next turn.
    fn finish_turn(&self) {
        let mut state = self.lock();
        self.append_locked(&mut state, event::turn_end());
        state.turn = None;
    }

    /// Cancels the running turn and waits (up to `wait`) until it has
    /// appended its `turn_end`. `false` when no turn was running.
    pub async fn cancel(&self, wait: Duration) -> bool {
        let done = {
            let state = self.lock();
            match &state.turn {
                None => return false,
                Some(turn) => {
                    let _ = turn.cancel.send(true);
                    turn.done.clone()
                }
            }
        };
        let mut done = done;
        let _ = tokio::time::timeout(wait, done.wait_for(|d| *d)).await;
        true
    }

    fn saw_session(&self) {
        self.lock().agent_knows_session = true;
    }
}

/// At most this much of an agent's stderr is kept for its error event.
const STDERR_KEPT: u64 = 64 * 1024;

/// At most this much of one stdout line is held; a longer line is dropped
/// (its length reported), so one huge line cannot exhaust memory.
pub const LINE_KEPT: usize = 1 << 20;

/// Ends a turn when dropped: `turn_end` appended exactly once, the session
/// freed, waiters told. Held by the turn's task, so a turn that panics or is
/// aborted still ends.
struct TurnEnd {
    session: Arc<Session>,
    done: watch::Sender<bool>,
}

impl Drop for TurnEnd {
    fn drop(&mut self) {
        self.session.finish_turn();
        let _ = self.done.send(true);
    }
}

/// Runs one agent process to its end, appending what it says. Does not
/// append `turn_end` (the caller does, exactly once).
async fn run_turn(
    session: &Session,
    argv: Vec<String>,
    input: Vec<u8>,
    dir: PathBuf,
    timeout: Duration,
    cancel: watch::Receiver<bool>,
) {
    if let Err(e) = std::fs::create_dir_all(&dir) {
        session.append(event::error(&format!(
            "cannot create the session directory {}: {e}",
            dir.display()
        )));
        return;
    }
    let Some(program) = argv.first() else {
        return;
    };
    let spec = afk_process::Spec {
        argv: argv.clone(),
        cwd: Some(dir.clone()),
        env: Vec::new(),
        stdin: Some(input),
    };
    let mut group = match afk_process::Group::spawn(&spec) {
        Ok(g) => g,
        Err(e) => {
            session.append(event::error(&format!(
                "cannot start the agent {program:?}: {e}"
            )));
            return;
        }
    };
    let stderr = afk_process::read_capped(group.take_stderr(), STDERR_KEPT);
    let stdout = group.take_stdout();
    // claude's `result` line: what it says about a failure (its error text,
    // the tools it was denied) is read from it once the turn ends.
    let mut result_line = String::new();
    let reading = async {
        if let Some(out) = stdout {
            let mut out = BufReader::new(out);
            let mut line = Vec::new();
            while let Ok(Some(cut)) =
                afk_process::lines::read_line_capped(&mut out, &mut line, LINE_KEPT).await
            {
                if cut > 0 {
                    // A line that long cannot be shown (or parsed, cut):
                    // say so instead of holding it in memory.
                    session.append(event::error(&format!(
                        "the agent printed a line of {} bytes; only lines up to {LINE_KEPT} bytes are shown",
                        line.len() as u64 + cut
                    )));
                    continue;
                }
                let line = String::from_utf8_lossy(&line);
                for body in event::translate(&line) {
                    match event::EventType::of(&body) {
                        Some(event::EventType::Session) => session.saw_session(),
                        Some(event::EventType::Result) => result_line = line.clone().into_owned(),
                        _ => {}
                    }
                    session.append(body);
                }
            }
        }
    };
    // Whatever ends it, nothing of its group outlives the turn.
    let end = group.supervise(reading, timeout, Some(cancel)).await;
    let stderr = String::from_utf8_lossy(
        &afk_process::collect(stderr, std::time::Duration::from_secs(5)).await,
    )
    .into_owned();
    match end {
        End::TimedOut => {
            session.append(event::error(&format!(
                "the turn ran past its timeout of {} s and was stopped",
                timeout.as_secs()
            )));
        }
        End::Cancelled => {
            session.append(event::cancelled());
        }
        End::Exited(Err(e)) => {
            session.append(event::error(&format!("cannot wait for the agent: {e}")));
        }
        End::Exited(Ok(status)) if !status.success() => {
            let code = status
                .code()
                .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}"));
            let said = afk_process::said::failure(&result_line, &stderr)
                .map(|s| format!(": {s}"))
                .unwrap_or_default();
            session.append(event::error(&format!("the agent exited with {code}{said}")));
        }
        End::Exited(Ok(_)) => {
            // A denied tool does not fail claude's turn; say so anyway.
            if let Some(denied) = afk_process::said::denied(&result_line) {
                session.append(event::error(&denied));
            }
        }
    }
}

/// Events `from..until` of a spill file, reading from byte `offset` (an
/// index point at or before `from`), at most about `max_bytes`.
fn read_spilled(
    path: &Path,
    offset: u64,
    from: u64,
    until: u64,
    max_bytes: usize,
) -> Vec<Arc<Event>> {
    use std::io::{BufRead, Seek};
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    if file.seek(std::io::SeekFrom::Start(offset)).is_err() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut bytes = 0;
    for line in std::io::BufReader::new(file).lines() {
        let Ok(json) = line else {
            break;
        };
        // Every line starts `{"id":N,`: the id is read without parsing the
        // rest.
        let Some(id) = json
            .strip_prefix("{\"id\":")
            .and_then(|rest| rest.split([',', '}']).next())
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if id < from {
            continue;
        }
        if id >= until || (bytes >= max_bytes && !out.is_empty()) {
            break;
        }
        bytes += json.len();
        out.push(Arc::new(Event { id, json }));
    }
    out
}

/// Every session of this server.
#[derive(Debug, Default)]
pub struct Sessions {
    map: RwLock<HashMap<Uuid, Arc<Session>>>,
    /// Where each session spills its events (`<dir>/<id>/events.jsonl`);
    /// without one, every event stays in memory.
    spill_dir: Option<PathBuf>,
}

impl Sessions {
    /// Sessions that spill their events under `dir` (the sessions
    /// directory), holding only the newest in memory.
    pub fn spilling_to(dir: &Path) -> Sessions {
        Sessions {
            map: RwLock::default(),
            spill_dir: Some(dir.to_owned()),
        }
    }

    /// A new, empty session. At `max` sessions the least recently used idle
    /// one (no turn, no client attached) is removed to make room, and its
    /// memory returned; `None` when every session is in use.
    pub fn create(&self, max: usize) -> Option<Arc<Session>> {
        let mut map = self
            .map
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() >= max.max(1) {
            let evict = map
                .values()
                .filter(|s| s.idle())
                .min_by_key(|s| s.last_active())
                .map(|s| s.id)?;
            map.remove(&evict);
            map.shrink_to_fit();
            tracing::info!(session = %evict, "idle session evicted to make room");
        }
        let session = Arc::new(Session::new(Uuid::new_v4(), self.spill_dir.as_deref()));
        map.insert(session.id, session.clone());
        Some(session)
    }

    /// How many sessions there are.
    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The session with this id (any text that is not a UUID finds none).
    pub fn get(&self, id: &str) -> Option<Arc<Session>> {
        let id = Uuid::parse_str(id).ok()?;
        self.map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// Cancels every running turn and waits for each to end (shutdown).
    pub async fn cancel_all(&self, wait: Duration) -> usize {
        let all: Vec<Arc<Session>> = self
            .map
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut n = 0;
        for s in all {
            if s.cancel(wait).await {
                n += 1;
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A turn whose task panics (or is aborted) still ends: `turn_end`
    /// appended once, last, and the session free for the next turn.
    #[tokio::test]
    async fn a_turn_that_panics_still_ends_exactly_once() {
        let sessions = Sessions::default();
        let session = sessions.create(2).unwrap_or_else(|| panic!("room"));
        let (done_tx, mut done_rx) = watch::channel(false);
        session.lock().turn = Some(Turn {
            cancel: watch::channel(false).0,
            done: done_rx.clone(),
        });
        let in_task = session.clone();
        let task = tokio::spawn(async move {
            let _end = TurnEnd {
                session: in_task,
                done: done_tx,
            };
            panic!("a bug in the middle of a turn");
        });
        assert!(task.await.is_err());
        assert!(*done_rx.borrow_and_update(), "waiters are told");
        assert!(!session.turn_running(), "the session is free again");
        let ends: Vec<_> = session
            .events_from(0, usize::MAX)
            .into_iter()
            .filter(|e| e.json.contains("\"turn_end\""))
            .collect();
        assert_eq!(ends.len(), 1);
        assert_eq!(
            session.events_from(0, usize::MAX).last().map(|e| e.id),
            Some(ends[0].id)
        );
    }

    #[test]
    fn at_the_cap_an_idle_session_makes_room_and_a_busy_one_does_not() {
        let sessions = Sessions::default();
        let a = sessions.create(2).unwrap_or_else(|| panic!("room"));
        let b = sessions.create(2).unwrap_or_else(|| panic!("room"));
        // a has a client attached; b is idle: b goes.
        let (_, _attached) = a.attach();
        let c = sessions.create(2).unwrap_or_else(|| panic!("b makes room"));
        assert!(sessions.get(&b.id.to_string()).is_none());
        assert!(sessions.get(&a.id.to_string()).is_some());
        // c idle too, but attach to it: nobody is idle any more.
        let (_, _also) = c.attach();
        assert!(
            sessions.create(2).is_none(),
            "every session in use: refused"
        );
        assert_eq!(sessions.len(), 2);
        drop(b);
    }

    /// A chatty session keeps only its newest events in memory and spills
    /// every event to its file; a replay from the start reads them all
    /// back, in order, a page at a time.
    #[test]
    fn a_chatty_session_spills_and_replays_every_event() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = Sessions::spilling_to(dir.path());
        let session = sessions.create(2).unwrap_or_else(|| panic!("room"));
        let text = "x".repeat(1000);
        let total = (HELD_EVENTS * 3) as u64;
        for _ in 0..total {
            session.append(event::error(&text));
        }
        assert_eq!(session.len(), total);
        assert!(session.held() <= HELD_EVENTS, "{} held", session.held());
        let lines =
            std::fs::read_to_string(dir.path().join(session.id.to_string()).join("events.jsonl"))
                .unwrap()
                .lines()
                .count();
        assert_eq!(lines as u64, total, "every event is in the file");
        // Paged from any point: ids in order, none missing or repeated.
        for start in [0, 1, 255, 256, 5000, total - 10] {
            let mut next = start;
            while next < total {
                let page = session.events_from(next, 64 * 1024);
                assert!(!page.is_empty(), "from {next}");
                for e in &page {
                    assert_eq!(e.id, next);
                    assert!(e.json.starts_with(&format!("{{\"id\":{next},")));
                    next += 1;
                }
            }
            assert_eq!(next, total);
        }
        assert!(session.events_from(total, 1024).is_empty());
    }
}
