//! Sessions: the server owns the conversation, clients attach (the tmux
//! model).
//!
//! This file is long because the event log, its spill file and the
//! detached turn share one lock and are tested together.
//!
//! A [`Session`] has a UUID, an append-only event log with sequential ids
//! (0, 1, 2, …), a watch of the log's length for attached clients, and at
//! most one running turn. An attaching client gets the log's length and a
//! receiver under the lock appends hold, then reads the log a page at a
//! time, the replay and the live tail alike: no event is lost or repeated
//! between them, and a client that falls behind holds nothing but its page
//! (there is no per-client queue of events). Every event is also written to
//! the session's spill file (`<session dir>/events.jsonl`), and memory holds
//! only the newest ones (at most 4,096 events or 8 MiB): a chatty turn does
//! not grow the server, and an old event is read back from the file.
//!
//! When the spill file cannot be written (a full disk) or opened, memory is
//! capped all the same: the oldest events leave it and are lost, the turn
//! goes on, an `error` event tells attached clients at once, and a replay
//! finds one `error` event in place of the lost ones (with the last lost
//! id). breakglass is what an operator reaches for when the machine is in
//! trouble, a full disk included: stopping the repair agent because its
//! transcript cannot be saved would fail them exactly then, and growing
//! without bound would take the console down with the disk.
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
use tokio::sync::watch;
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
    /// Event `id` with `body`: `{"id": id, …body}` on one line.
    fn new(id: u64, mut body: Body) -> Event {
        let mut map = serde_json::Map::with_capacity(body.len() + 1);
        map.insert("id".into(), json!(id));
        map.append(&mut body);
        Event {
            id,
            json: Value::Object(map).to_string(),
        }
    }

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
/// line), so memory holds only the newest ones.
#[derive(Debug)]
struct Spill {
    path: PathBuf,
    file: std::fs::File,
    /// Bytes of whole lines in the file; a failed write's part line after
    /// them is never read.
    written: u64,
    /// `(event id, byte offset)` of every [`INDEX_EVERY`]th event.
    index: Vec<(u64, u64)>,
    /// A write failed: nothing more is written (the file keeps events
    /// `0..State::spilled`, whole).
    broken: bool,
}

#[derive(Debug, Default)]
struct State {
    /// The newest events.
    held: std::collections::VecDeque<Arc<Event>>,
    /// The id of `held`'s first event.
    first_held: u64,
    /// The id the next event gets.
    next_id: u64,
    held_bytes: usize,
    spill: Option<Spill>,
    /// The spill file holds events `0..spilled`; those from `spilled` up to
    /// `first_held` are lost.
    spilled: u64,
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
    /// The log's length, for attached clients to wait on.
    appended: watch::Sender<u64>,
    /// When it was last used (an event appended, a client attached).
    last_active: Mutex<std::time::Instant>,
}

impl Session {
    /// A session, its events spilled under `spill_dir` when there is one;
    /// the error when the file cannot be opened there.
    fn new(id: Uuid, spill_dir: Option<&Path>) -> (Session, Option<String>) {
        let mut state = State::default();
        let mut failed = None;
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
                    tracing::warn!(session = %id, error = %e, "no spill file: only the newest events are kept");
                    failed = Some(format!(
                        "cannot open the session's event file {}: {e}",
                        path.display()
                    ));
                }
            }
        }
        let session = Session {
            id,
            state: Mutex::new(state),
            appended: watch::channel(0).0,
            last_active: Mutex::new(std::time::Instant::now()),
        };
        (session, failed)
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
        !self.turn_running() && self.appended.receiver_count() == 0
    }

    fn append_locked(&self, state: &mut State, body: Body) -> Arc<Event> {
        self.touch();
        let id = state.next_id;
        let event = Arc::new(Event::new(id, body));
        let mut failed = None;
        if let Some(spill) = state.spill.as_mut().filter(|s| !s.broken) {
            use std::io::Write;
            let line = format!("{}\n", event.json);
            match spill.file.write_all(line.as_bytes()) {
                Ok(()) => {
                    if id.is_multiple_of(INDEX_EVERY) {
                        spill.index.push((id, spill.written));
                    }
                    spill.written += line.len() as u64;
                    state.spilled = id + 1;
                }
                Err(e) => {
                    // Not retried: the file stays a whole prefix of the log.
                    spill.broken = true;
                    tracing::warn!(session = %self.id, error = %e, "the spill file failed: only the newest events are kept");
                    failed = Some(format!(
                        "cannot write the session's event file {}: {e}",
                        spill.path.display()
                    ));
                }
            }
        }
        state.next_id += 1;
        state.held_bytes += event.json.len();
        state.held.push_back(event.clone());
        // Memory holds the newest events whatever the file does (the newest
        // one always, however large): what the file does not hold is lost.
        while state.held.len() > 1
            && (state.held.len() > HELD_EVENTS || state.held_bytes > HELD_BYTES)
        {
            let Some(old) = state.held.pop_front() else {
                break;
            };
            state.held_bytes -= old.json.len();
            state.first_held += 1;
        }
        // No client attached is fine: the log keeps it for the next attach.
        self.appended.send_replace(state.next_id);
        if let Some(failed) = failed {
            self.append_locked(state, event::error(&lost_from_now(&failed)));
        }
        event
    }

    /// Appends an event and wakes attached clients.
    pub fn append(&self, body: Body) -> Arc<Event> {
        let mut state = self.lock();
        self.append_locked(&mut state, body)
    }

    /// The id the next event will get, and a receiver of the log's length
    /// that wakes on every append from then on. Events are read with
    /// [`Session::events_from`], from the log: a client that falls behind
    /// holds no queue of its own.
    pub fn attach(&self) -> (u64, watch::Receiver<u64>) {
        self.touch();
        let state = self.lock();
        (state.next_id, self.appended.subscribe())
    }

    /// The events from id `from` on, in order, at most about `max_bytes` of
    /// them (at least one when there is one): older ones read back from the
    /// spill file, newer ones from memory. Where events were lost (the file
    /// failed and they left memory), one `error` event with the last lost
    /// id stands for them. A caller pages on from the last id it got.
    pub fn events_from(&self, from: u64, max_bytes: usize) -> Vec<Arc<Event>> {
        let (first_held, path, offset, end) = {
            let state = self.lock();
            if from >= state.first_held {
                return held_from(&state, from, max_bytes);
            }
            match &state.spill {
                Some(spill) if from < state.spilled => {
                    let offset = spill
                        .index
                        .iter()
                        .rev()
                        .find(|(id, _)| *id <= from)
                        .map_or(0, |(_, o)| *o);
                    (state.first_held, spill.path.clone(), offset, spill.written)
                }
                _ => return lost_then_held(&state, from, max_bytes),
            }
        };
        // Outside the lock: appends go on while the file is read.
        let read = read_spilled(&path, offset, end, from, first_held, max_bytes);
        if read.is_empty() {
            // The file is gone or unreadable: what it held is lost too.
            return lost_then_held(&self.lock(), from, max_bytes);
        }
        read
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

/// The text of the `error` event appended when the spill file fails.
fn lost_from_now(failed: &str) -> String {
    format!(
        "{failed}; from now on only the newest {HELD_EVENTS} events ({} MiB) of this session are kept, and older ones are lost (the turn goes on)",
        HELD_BYTES >> 20
    )
}

/// The held events from `from` (at least `first_held`) on, at most about
/// `max_bytes` (at least one when there is one).
fn held_from(state: &State, from: u64, max_bytes: usize) -> Vec<Arc<Event>> {
    let start = usize::try_from(from.saturating_sub(state.first_held)).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut bytes = 0;
    for e in state.held.range(start.min(state.held.len())..) {
        if bytes >= max_bytes && !out.is_empty() {
            break;
        }
        bytes += e.json.len();
        out.push(e.clone());
    }
    out
}

/// For `from` before `first_held` with nothing to read there: one `error`
/// event standing for the lost events `from..first_held` (it takes the
/// last lost id, so a client resumes after it), then the held ones.
fn lost_then_held(state: &State, from: u64, max_bytes: usize) -> Vec<Arc<Event>> {
    let last = state.first_held.saturating_sub(1);
    let mut out = vec![Arc::new(Event::new(
        last,
        event::error(&format!(
            "events {from} to {last} of this session are lost: its event file does not hold them, and memory keeps only the newest {HELD_EVENTS}"
        )),
    ))];
    out.extend(held_from(state, state.first_held, max_bytes));
    out
}

/// Events `from..until` of a spill file, reading the whole lines between
/// byte `offset` (an index point at or before `from`) and `end`, at most
/// about `max_bytes`.
fn read_spilled(
    path: &Path,
    offset: u64,
    end: u64,
    from: u64,
    until: u64,
    max_bytes: usize,
) -> Vec<Arc<Event>> {
    use std::io::{BufRead, Read, Seek};
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    if file.seek(std::io::SeekFrom::Start(offset)).is_err() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut bytes = 0;
    let whole_lines = file.take(end.saturating_sub(offset));
    for line in std::io::BufReader::new(whole_lines).lines() {
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
    /// without one, only the newest events are kept.
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
        let (session, failed) = Session::new(Uuid::new_v4(), self.spill_dir.as_deref());
        let session = Arc::new(session);
        if let Some(failed) = failed {
            session.append(event::error(&lost_from_now(&failed)));
        }
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

    /// An attached client that reads nothing pins no event beyond what the
    /// session holds anyway: it reads from the log when it reads.
    #[test]
    fn a_client_that_reads_nothing_holds_no_event_memory_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = Sessions::spilling_to(dir.path());
        let session = sessions.create(2).unwrap_or_else(|| panic!("room"));
        let (_, _reads_nothing) = session.attach();
        let big = "x".repeat(512 << 10);
        let appended: Vec<std::sync::Weak<Event>> = (0..64)
            .map(|_| Arc::downgrade(&session.append(event::error(&big))))
            .collect();
        let alive: usize = appended
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .map(|e| e.json.len())
            .sum();
        assert!(
            alive <= HELD_BYTES,
            "{alive} bytes of events kept alive for a client that reads nothing"
        );
        assert_eq!(session.events_from(0, 1).len(), 1, "paged");
        assert_eq!(session.len(), 64);
    }

    /// The spill file fails (a full disk): memory stays capped, the turn
    /// goes on, the attached operator is told at once, and a replay says
    /// where events were lost, in their place.
    #[test]
    fn a_failing_spill_file_keeps_memory_capped_and_says_what_was_lost() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = Sessions::spilling_to(dir.path());
        let session = sessions.create(2).unwrap_or_else(|| panic!("room"));
        for n in 0..100 {
            session.append(event::error(&format!("before {n}")));
        }
        let full = std::fs::OpenOptions::new()
            .append(true)
            .open("/dev/full")
            .unwrap();
        if let Some(spill) = session.lock().spill.as_mut() {
            spill.file = full;
        }
        // The first event the file misses: the attached operator is told
        // at once, by the next event.
        assert_eq!(session.append(event::error("unsaved")).id, 100);
        let live = session.events_from(101, 1);
        let live: Value = serde_json::from_str(&live[0].json).unwrap();
        let live = live["message"].as_str().unwrap_or_default();
        assert!(
            live.contains("cannot write the session's event file") && live.contains("turn goes on"),
            "{live}"
        );
        let text = "x".repeat(1000);
        let total = (HELD_EVENTS * 3) as u64;
        for _ in 0..total {
            session.append(event::error(&text));
        }
        {
            let state = session.lock();
            assert!(state.held.len() <= HELD_EVENTS, "{} held", state.held.len());
            assert!(
                state.held_bytes <= HELD_BYTES,
                "{} bytes held",
                state.held_bytes
            );
        }
        let told = session.events_from(101, 1);
        // The live notice (id 101) has left memory since; what a replay
        // finds there is the notice of the gap, then what memory holds.
        assert_eq!(told.len(), 2);
        assert_eq!(told[1].id, session.lock().first_held);
        let message: Value = serde_json::from_str(&told[0].json).unwrap();
        assert_eq!(message["type"], "error");
        let message = message["message"].as_str().unwrap_or_default();
        assert!(message.contains("are lost"), "{message}");
        // A replay from the start: the file's events, one notice in place
        // of the lost ones, then every held event to the end.
        let mut ids = Vec::new();
        let mut next = 0;
        while next < session.len() {
            let page = session.events_from(next, 64 * 1024);
            assert!(!page.is_empty(), "from {next}");
            for e in page {
                assert!(e.id >= next, "{} after {next}", e.id);
                ids.push(e.id);
                next = e.id + 1;
            }
        }
        assert_eq!(&ids[..100], (0..100).collect::<Vec<_>>());
        let first_held = session.lock().first_held;
        assert_eq!(ids[100], first_held - 1, "one notice for the gap");
        assert_eq!(&ids[101..], (first_held..session.len()).collect::<Vec<_>>());
        let live_notice =
            std::fs::read_to_string(dir.path().join(session.id.to_string()).join("events.jsonl"))
                .unwrap();
        assert_eq!(
            live_notice.lines().count(),
            100,
            "the file keeps what it had"
        );
    }
}
