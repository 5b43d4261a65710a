//! The conversations of `/v1/conversational`: each client conversation id
//! maps to the CLI session its turns resume, and holds the lock that lets
//! one turn run at a time.
//!
//! A conversation's CLI session exists once its first turn has succeeded:
//! a failed first turn leaves none, so the next turn starts a new one. The
//! table is bounded: past [`crate::settings::Settings::max_conversations`]
//! the least recently used idle conversation is forgotten (its CLI
//! transcript stays where the CLI keeps it; this gateway stops resuming
//! it).
//!
//! It does not persist: after a restart every conversation starts anew. It
//! runs no turns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use uuid::Uuid;

/// What a conversation knows between turns.
#[derive(Debug, Default)]
pub struct State {
    /// The CLI session its turns resume (none before a first turn
    /// succeeded).
    pub session: Option<Uuid>,
}

/// One conversation.
#[derive(Debug)]
pub struct Conversation {
    /// Its state; holding the lock is holding the conversation's turn.
    pub state: Arc<tokio::sync::Mutex<State>>,
    last_used: Mutex<Instant>,
}

impl Conversation {
    fn touch(&self) {
        *self
            .last_used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }

    fn last_used(&self) -> Instant {
        *self
            .last_used
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether no turn holds it.
    fn idle(&self) -> bool {
        self.state.try_lock().is_ok()
    }
}

/// Every conversation is in use and the table is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many conversations are in use at once")]
pub struct Full;

/// The conversations.
#[derive(Debug)]
pub struct Conversations {
    map: Mutex<HashMap<String, Arc<Conversation>>>,
    max: usize,
}

impl Conversations {
    /// An empty table of at most `max` conversations.
    pub fn new(max: usize) -> Conversations {
        Conversations {
            map: Mutex::new(HashMap::new()),
            max: max.max(1),
        }
    }

    /// The conversation `id`, new if unknown, and the CLI session of a
    /// conversation forgotten to make room, if one was.
    ///
    /// # Errors
    /// [`Full`] when the table is full and every conversation is in a turn.
    pub fn get(&self, id: &str) -> Result<(Arc<Conversation>, Option<Uuid>), Full> {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(c) = map.get(id) {
            c.touch();
            return Ok((c.clone(), None));
        }
        let mut forgotten = None;
        if map.len() >= self.max {
            let oldest = map
                .iter()
                .filter(|(_, c)| c.idle())
                .min_by_key(|(_, c)| c.last_used())
                .map(|(k, _)| k.clone())
                .ok_or(Full)?;
            if let Some(gone) = map.remove(&oldest) {
                forgotten = gone.state.try_lock().ok().and_then(|s| s.session);
            }
        }
        let conversation = Arc::new(Conversation {
            state: Arc::new(tokio::sync::Mutex::new(State::default())),
            last_used: Mutex::new(Instant::now()),
        });
        map.insert(id.to_owned(), conversation.clone());
        Ok((conversation, forgotten))
    }

    /// How many conversations are remembered.
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_id_is_the_same_conversation() {
        let table = Conversations::new(4);
        let (a, _) = table.get("call-1").unwrap_or_else(|e| panic!("{e}"));
        let (b, _) = table.get("call-1").unwrap_or_else(|e| panic!("{e}"));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn at_the_cap_the_least_recently_used_idle_one_gives_way_and_a_busy_one_never() {
        let table = Conversations::new(2);
        let (a, _) = table.get("a").unwrap_or_else(|e| panic!("{e}"));
        let (b, _) = table.get("b").unwrap_or_else(|e| panic!("{e}"));
        let session = Uuid::new_v4();
        b.state
            .try_lock()
            .map(|mut s| s.session = Some(session))
            .unwrap_or_else(|_| panic!("idle"));
        // a is in a turn; b is idle: b goes, and its session is handed back.
        let _turn = a
            .state
            .clone()
            .try_lock_owned()
            .unwrap_or_else(|_| panic!("idle"));
        let (_, forgotten) = table.get("c").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(forgotten, Some(session));
        let (b_again, _) = table
            .get("b")
            .map_err(|_| ())
            .unwrap_or_else(|()| panic!("c idle makes room"));
        assert!(!Arc::ptr_eq(&b, &b_again), "b is new");
        // a and the new b both in turns: nothing can make room.
        let _busy = b_again
            .state
            .clone()
            .try_lock_owned()
            .unwrap_or_else(|_| panic!("idle"));
        assert_eq!(table.get("d").err(), Some(Full));
        assert_eq!(table.len(), 2);
    }
}
