//! A thread's run record on disk: `<AFK_LOCAL_DIR>/runs/<thread>/record.json`.
//!
//! One record per thread, written whole or not at all (the host writes a
//! temporary file, flushes it and renames it over the old one), so a kill or
//! a full disk leaves the previous record, never half of one. It holds what
//! the executor needs to find and judge the thread's turns again from any
//! later process: for each turn its step, when it was sent, its log, its
//! supervisor (process id and start time) once it runs, and how it ended
//! once it did. The tree's mark is the turn's lock file, which the
//! supervisor holds for its whole life (`afk_process::locks`): the record
//! never needs to be trusted to name a process.
//!
//! Reading is strict: an unknown field, a missing one or another version is
//! an error that names the file, never a guess.

use serde::{Deserialize, Serialize};

/// The record format this build writes and reads.
pub const VERSION: u32 = 1;

/// One thread's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThreadRecord {
    /// [`VERSION`].
    pub version: u32,
    /// The thread id (a UUID, also claude's session id).
    pub thread_id: String,
    /// `owner/name`.
    pub repo: String,
    /// The issue.
    pub issue: u64,
    /// 0 for the first dispatch, +1 for each corrective thread.
    pub attempt: u32,
    /// `claude`, `opencode` or `command`.
    pub runtime: String,
    /// The workspace the turns run in.
    pub workspace: String,
    /// The turns, by step.
    pub turns: Vec<TurnRecord>,
    /// When afk stopped the thread, once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
}

/// One turn of a thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnRecord {
    /// 0 for the opening turn, then the fix-forward steps.
    pub step: u32,
    /// When afk sent it (RFC 3339).
    pub sent_at: String,
    /// Its output, beside the record: `turn-<step>.out` and `.err`.
    pub log: String,
    /// The tree's mark: the lock file its supervisor holds
    /// (`turn-<step>.lock`, beside the record).
    pub lock: String,
    /// Its supervisor, once it was seen holding the lock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<Supervisor>,
    /// How it ended, once it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<TurnEnd>,
}

/// A supervisor process: its id and start time name one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supervisor {
    /// Its process id.
    pub pid: u32,
    /// Its start time, in clock ticks since boot.
    pub start: u64,
}

/// How a turn ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TurnEnd {
    /// The supervisor's exit code (the agent's, or `128 + signal`); `None`
    /// when it vanished without recording one.
    pub code: Option<i32>,
    /// Stopped by afk (or a human's signal to the supervisor).
    pub stopped: bool,
    /// The CLI reported the run as an error (claude's `is_error`).
    pub reported_error: bool,
    /// What the agent said about a failure (or the tools it was denied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub said: Option<String>,
    /// What the turn cost, where the runtime reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_micro_usd: Option<u64>,
}

impl TurnEnd {
    /// Whether the turn succeeded: exit 0, not stopped, and the CLI did not
    /// call it an error.
    pub fn succeeded(&self) -> bool {
        self.code == Some(0) && !self.stopped && !self.reported_error
    }
}

impl ThreadRecord {
    /// The record's JSON (one line).
    pub fn to_json(&self) -> String {
        // A struct of strings, numbers and options always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads a record.
    ///
    /// # Errors
    /// What is wrong with it, in one line.
    pub fn parse(text: &str) -> Result<ThreadRecord, String> {
        let record: ThreadRecord = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if record.version != VERSION {
            return Err(format!(
                "record version {} is not supported (this build reads {VERSION})",
                record.version
            ));
        }
        if record.turns.windows(2).any(|w| w[0].step >= w[1].step) {
            return Err("its turns are not in step order".into());
        }
        Ok(record)
    }

    /// The turn with this step.
    pub fn turn(&self, step: u32) -> Option<&TurnRecord> {
        self.turns.iter().find(|t| t.step == step)
    }

    /// The turn with this step, to update.
    pub fn turn_mut(&mut self, step: u32) -> Option<&mut TurnRecord> {
        self.turns.iter_mut().find(|t| t.step == step)
    }

    /// What its turns cost, summed; `None` when none reported a cost.
    pub fn cost_micro_usd(&self) -> Option<u64> {
        self.turns
            .iter()
            .filter_map(|t| t.end.as_ref().and_then(|e| e.cost_micro_usd))
            .reduce(u64::saturating_add)
    }
}

impl TurnRecord {
    /// A turn about to start: its files are named by its step.
    pub fn new(step: u32, sent_at: &str) -> TurnRecord {
        TurnRecord {
            step,
            sent_at: sent_at.to_owned(),
            log: format!("turn-{step}.out"),
            lock: format!("turn-{step}.lock"),
            supervisor: None,
            end: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ThreadRecord {
        let mut first = TurnRecord::new(0, "2026-06-10T12:00:00Z");
        first.supervisor = Some(Supervisor {
            pid: 4242,
            start: 99,
        });
        first.end = Some(TurnEnd {
            code: Some(1),
            stopped: false,
            reported_error: true,
            said: Some("claude: API Error: 401".into()),
            cost_micro_usd: Some(1600),
        });
        let mut second = TurnRecord::new(1, "2026-06-10T12:30:00Z");
        second.end = Some(TurnEnd {
            code: Some(0),
            stopped: false,
            reported_error: false,
            said: None,
            cost_micro_usd: Some(400),
        });
        ThreadRecord {
            version: VERSION,
            thread_id: "0b8e0f3a-1c2d-5e6f-8a9b-0c1d2e3f4a5b".into(),
            repo: "acme/infra".into(),
            issue: 7,
            attempt: 0,
            runtime: "claude".into(),
            workspace: "/var/afk/workspaces/acme__infra".into(),
            turns: vec![first, second],
            stopped_at: None,
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let r = sample();
        assert_eq!(ThreadRecord::parse(&r.to_json()), Ok(r.clone()));
        assert_eq!(r.cost_micro_usd(), Some(2000));
        assert!(!r.turns[0].end.as_ref().unwrap().succeeded());
        assert!(r.turns[1].end.as_ref().unwrap().succeeded());
        assert_eq!(r.turn(1).map(|t| t.log.as_str()), Some("turn-1.out"));
    }

    #[test]
    fn a_bad_record_is_an_error_not_a_guess() {
        let good = sample().to_json();
        for (bad, why) in [
            ("", "EOF"),
            ("{", "EOF"),
            (
                &good.replace("\"version\":1", "\"version\":2")[..],
                "version 2",
            ),
            (
                &good.replace("\"issue\":7", "\"issue\":7,\"x\":1")[..],
                "unknown field",
            ),
            (&good.replace("\"step\":1", "\"step\":0")[..], "step order"),
            (
                &good.replace("\"pid\":4242", "\"pid\":-1")[..],
                "invalid value",
            ),
        ] {
            let err = ThreadRecord::parse(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
