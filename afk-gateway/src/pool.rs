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
//! A process is taken out of the pool for exactly one turn and never goes
//! back: two turns never share one. A waiting process that has died, or is
//! older than [`crate::settings::Warm::max_age`], is killed and replaced
//! ([`Pool::sweep`], and on every take). When none waits, a turn starts
//! one at once (cold). [`Pool::close`] kills them all and starts no more.
//!
//! It does not run turns (`turn` does) or know about HTTP.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

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
    closed: bool,
}

/// The waiting processes.
#[derive(Debug)]
pub struct Pool {
    launch: Arc<Launch>,
    warm: Warm,
    state: Mutex<State>,
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
    pub fn refill(&self, model: &str, kind: Kind) {
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
            match Process::start(&self.launch, model, Self::session(kind)) {
                Ok(p) => started.push(p),
                Err(e) => {
                    tracing::warn!(error = %e, model, "cannot start a waiting agent CLI");
                    break;
                }
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
    pub fn want(&self, model: &str, kind: Kind) {
        {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state.wanted.insert((model.to_owned(), kind));
        }
        self.refill(model, kind);
    }

    /// Starts a process resuming session `id` on `model`, to wait for the
    /// conversation's next turn (the oldest waiting one gives way past the
    /// number kept).
    pub fn keep_warm(&self, model: &str, id: Uuid) {
        if self.warm.conversations == 0 {
            return;
        }
        self.forget(id);
        if self.lock().closed {
            return;
        }
        let process = match Process::start(&self.launch, model, Session::Resume(id)) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, model, "cannot start a waiting agent CLI");
                return;
            }
        };
        let mut state = self.lock();
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
            let at = state.resumed.iter().position(|(s, _)| *s == id);
            at.and_then(|at| state.resumed.remove(at))
        };
        drop(gone);
    }

    /// Kills every waiting process that died or grew stale, then refills
    /// the kinds kept warm.
    pub fn sweep(&self) {
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
            self.refill(&model, kind);
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
