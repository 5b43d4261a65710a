//! Processes started ahead of turns, so a turn does not pay for the CLI's
//! start (about 0.4 s of a voice turn's time to first word).
//!
//! - **Fresh**: per supported model and kind of turn (a chat completion, or
//!   a conversation's first turn with its own new session id),
//!   [`crate::settings::Warm::per_model`] processes wait on their input.
//!   A kind is kept warm once it has been asked for (the default model's
//!   two kinds from the start), and refilled after each of its turns, once
//!   that turn's process is gone, so the refill never competes with a turn
//!   for the CPU.
//! - **Resumed**: after a conversation's turn, a process resuming its
//!   session waits for the next turn; at most
//!   [`crate::settings::Warm::conversations`] of them, the oldest giving
//!   way.
//!
//! - **Primed**: a process started ahead is sent a blank message first,
//!   which the CLI answers itself without the model and keeps nothing of
//!   (`crate::cli::PRIME`), so its turn does not pay for the CLI's
//!   first-message work. A CLI that does not answer it so (one that asks
//!   the model, errs or stays silent) has that process killed, and
//!   priming is off for the rest of the gateway's life: the waiting
//!   processes are then unprimed, as a cold start is.
//!
//! A process is taken out of the pool for exactly one turn and never goes
//! back: two turns never share one. A waiting process that has died, or is
//! older than [`crate::settings::Warm::max_age`], is killed and replaced
//! ([`Pool::sweep`], and on every take). When none waits, a turn starts
//! one at once (cold). [`Pool::close`] kills them all and starts no more.
//!
//! It does not run turns (`turn` does) or know about HTTP.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;

use crate::cli::Session;
use crate::settings::Warm;
use crate::turn::{Launch, Process, StartError};

/// The kind of fresh turn a process waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A chat completion (no session kept).
    Chat,
    /// A conversation's first turn (a new session).
    Conversation,
}

/// Whether a turn got a process that was waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warmth {
    /// It was waiting.
    Warm,
    /// It was started for this turn.
    Cold,
}

impl Warmth {
    /// `warm` or `cold`.
    pub fn as_str(self) -> &'static str {
        match self {
            Warmth::Warm => "warm",
            Warmth::Cold => "cold",
        }
    }
}

#[derive(Debug, Default)]
struct State {
    fresh: HashMap<(String, Kind), VecDeque<Process>>,
    /// Processes being started for a kind right now (so that refills at
    /// once do not each start the missing ones).
    starting: HashMap<(String, Kind), usize>,
    wanted: HashSet<(String, Kind)>,
    resumed: VecDeque<(Uuid, Process)>,
    /// Conversations whose resuming process is being started and primed,
    /// with the ticket of that start: a turn taken, or the conversation
    /// forgotten, meanwhile withdraws it, so a process that read the
    /// session before that turn never waits for the next one.
    pending: HashMap<Uuid, u64>,
    tickets: u64,
    closed: bool,
}

/// How long a started process may take to answer the prime (its start
/// included).
const PRIME_WITHIN: Duration = Duration::from_secs(30);

/// The waiting processes.
#[derive(Debug)]
pub struct Pool {
    launch: Arc<Launch>,
    warm: Warm,
    state: Mutex<State>,
    /// Whether started processes are primed (off for good once the CLI
    /// does not answer the prime as a blank prompt).
    priming: AtomicBool,
}

/// One waiting process, as [`Pool::waiting`] shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// `chat <model>`, `conversation <model>` or `resume <session>`.
    pub what: String,
    /// Its process id.
    pub pid: u32,
}

impl Pool {
    /// An empty pool.
    pub fn new(launch: Arc<Launch>, warm: Warm) -> Pool {
        Pool {
            launch,
            warm,
            state: Mutex::new(State::default()),
            priming: AtomicBool::new(true),
        }
    }

    /// Whether processes started ahead are primed.
    pub fn priming(&self) -> bool {
        self.priming.load(Ordering::SeqCst)
    }

    /// A process for the pool: started, then primed while priming is on;
    /// `None` when it could not be (logged; a failed prime turns priming
    /// off and kills the process).
    async fn start_ahead(&self, model: &str, session: Session) -> Option<Process> {
        let kind = match session {
            Session::None => "chat",
            Session::New(_) => "conversation",
            Session::Resume(_) => "resume",
        };
        let mut process = match Process::start(&self.launch, model, session) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, model, "cannot start a waiting agent CLI");
                return None;
            }
        };
        if !self.priming() {
            tracing::info!(
                model,
                kind,
                pid = process.pid(),
                primed = false,
                "an agent CLI waits for its turn"
            );
            return Some(process);
        }
        match process.prime(PRIME_WITHIN).await {
            Ok(()) => {
                tracing::info!(
                    model,
                    kind,
                    pid = process.pid(),
                    primed = true,
                    "an agent CLI waits for its turn"
                );
                Some(process)
            }
            Err(e) => {
                if self.priming.swap(false, Ordering::SeqCst) {
                    tracing::warn!(
                        error = %e,
                        model,
                        "priming waiting agent CLIs is off from now on; they wait unprimed"
                    );
                }
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn usable(&self, process: &Process) -> bool {
        process.alive() && process.age() < self.warm.max_age
    }

    fn session(kind: Kind) -> Session {
        match kind {
            Kind::Chat => Session::None,
            Kind::Conversation => Session::New(Uuid::new_v4()),
        }
    }

    /// A process for a fresh turn of `kind` on `model`: a waiting one if
    /// one is usable, else one started now. The kind is kept warm from now
    /// on.
    ///
    /// # Errors
    /// A process could not be started.
    pub fn fresh(&self, model: &str, kind: Kind) -> Result<(Process, Warmth), StartError> {
        let waiting = {
            let mut state = self.lock();
            let key = (model.to_owned(), kind);
            if !state.closed {
                state.wanted.insert(key.clone());
            }
            let mut found = None;
            if let Some(queue) = state.fresh.get_mut(&key) {
                // The unusable ones are dropped, which kills them.
                while let Some(process) = queue.pop_front() {
                    if self.usable(&process) {
                        found = Some(process);
                        break;
                    }
                }
            }
            found
        };
        match waiting {
            Some(process) => Ok((process, Warmth::Warm)),
            None => Ok((
                Process::start(&self.launch, model, Self::session(kind))?,
                Warmth::Cold,
            )),
        }
    }

    /// A process resuming session `id` on `model`: the one waiting for it
    /// if usable, else one started now.
    ///
    /// # Errors
    /// A process could not be started.
    pub fn resume(&self, model: &str, id: Uuid) -> Result<(Process, Warmth), StartError> {
        let waiting = {
            let mut state = self.lock();
            state.pending.remove(&id);
            let at = state.resumed.iter().position(|(s, _)| *s == id);
            at.and_then(|at| state.resumed.remove(at))
                .map(|(_, p)| p)
                .filter(|p| p.model == model && self.usable(p))
        };
        match waiting {
            Some(process) => Ok((process, Warmth::Warm)),
            None => Ok((
                Process::start(&self.launch, model, Session::Resume(id))?,
                Warmth::Cold,
            )),
        }
    }

    /// Starts waiting processes for `kind` on `model` up to the number
    /// kept (counting those being started), unless the pool is closed.
    pub async fn refill(&self, model: &str, kind: Kind) {
        let key = (model.to_owned(), kind);
        let missing = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            let have = state.fresh.get(&key).map_or(0, VecDeque::len)
                + state.starting.get(&key).copied().unwrap_or(0);
            let missing = self.warm.per_model.saturating_sub(have);
            *state.starting.entry(key.clone()).or_default() += missing;
            missing
        };
        if missing == 0 {
            return;
        }
        let mut started = Vec::with_capacity(missing);
        for _ in 0..missing {
            match self.start_ahead(model, Self::session(kind)).await {
                Some(p) => started.push(p),
                None => break,
            }
        }
        let mut state = self.lock();
        if let Some(n) = state.starting.get_mut(&key) {
            *n = n.saturating_sub(missing);
        }
        if state.closed {
            return;
        }
        let queue = state.fresh.entry(key).or_default();
        queue.extend(started);
        while queue.len() > self.warm.per_model {
            queue.pop_back();
        }
    }

    /// Keeps `kind` on `model` warm from now on, and fills it.
    pub async fn want(&self, model: &str, kind: Kind) {
        {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state.wanted.insert((model.to_owned(), kind));
        }
        self.refill(model, kind).await;
    }

    /// Starts a process resuming session `id` on `model`, to wait for the
    /// conversation's next turn (the oldest waiting one gives way past the
    /// number kept).
    pub async fn keep_warm(&self, model: &str, id: Uuid) {
        if self.warm.conversations == 0 {
            return;
        }
        self.forget(id);
        let ticket = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state.tickets += 1;
            let ticket = state.tickets;
            state.pending.insert(id, ticket);
            ticket
        };
        let process = self.start_ahead(model, Session::Resume(id)).await;
        let mut state = self.lock();
        if state.pending.get(&id) != Some(&ticket) {
            // A turn of the conversation was taken (or it was forgotten)
            // meanwhile: this process read the session before it.
            return;
        }
        state.pending.remove(&id);
        let Some(process) = process else { return };
        if state.closed {
            return;
        }
        state.resumed.push_back((id, process));
        while state.resumed.len() > self.warm.conversations {
            state.resumed.pop_front();
        }
    }

    /// Kills the process waiting for session `id`, if any.
    pub fn forget(&self, id: Uuid) {
        let gone = {
            let mut state = self.lock();
            state.pending.remove(&id);
            let at = state.resumed.iter().position(|(s, _)| *s == id);
            at.and_then(|at| state.resumed.remove(at))
        };
        drop(gone);
    }

    /// Kills every waiting process that died or grew stale, then refills
    /// the kinds kept warm.
    pub async fn sweep(&self) {
        let wanted: Vec<(String, Kind)> = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            for queue in state.fresh.values_mut() {
                queue.retain(|p| self.usable(p));
            }
            state.resumed.retain(|(_, p)| self.usable(p));
            state.wanted.iter().cloned().collect()
        };
        for (model, kind) in wanted {
            self.refill(&model, kind).await;
        }
    }

    /// Kills every waiting process and starts no more; how many it killed.
    pub fn close(&self) -> usize {
        let (fresh, resumed) = {
            let mut state = self.lock();
            state.closed = true;
            state.wanted.clear();
            (
                std::mem::take(&mut state.fresh),
                std::mem::take(&mut state.resumed),
            )
        };
        fresh.values().map(VecDeque::len).sum::<usize>() + resumed.len()
    }

    /// Every waiting process.
    pub fn waiting(&self) -> Vec<Waiting> {
        let state = self.lock();
        let mut out: Vec<Waiting> = state
            .fresh
            .iter()
            .flat_map(|((model, kind), queue)| {
                let what = match kind {
                    Kind::Chat => format!("chat {model}"),
                    Kind::Conversation => format!("conversation {model}"),
                };
                queue.iter().map(move |p| Waiting {
                    what: what.clone(),
                    pid: p.pid(),
                })
            })
            .chain(state.resumed.iter().map(|(id, p)| Waiting {
                what: format!("resume {id}"),
                pid: p.pid(),
            }))
            .collect();
        out.sort_by(|a, b| a.what.cmp(&b.what).then(a.pid.cmp(&b.pid)));
        out
    }
}
