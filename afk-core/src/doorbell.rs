//! Doorbells: telling a human, loudly and once, when a run ends.
//!
//! Only terminal outcomes ring: `done` (quiet), `needs-human`, `frozen` and
//! `stopped` (loud). The kinds are a closed type, so a non-terminal kind cannot be
//! built in code; [`DoorbellKind::parse`] refuses any other name before
//! anything is sent. Ringing them (every notifier tried, rung only when one
//! delivered) is the loop's job (`afk-loop`); this module holds the values.

use std::fmt;

use crate::record::OutcomeKind;
use crate::types::Cost;

/// The kinds that ring: exactly the terminal outcomes.
pub type DoorbellKind = OutcomeKind;

impl OutcomeKind {
    /// Reads a doorbell kind; anything but `done`, `needs-human`, `frozen` or
    /// `stopped` is refused.
    pub fn parse_doorbell(text: &str) -> Result<Self, NotTerminal> {
        OutcomeKind::parse(text).ok_or_else(|| NotTerminal(text.to_owned()))
    }
}

/// A kind that is not a terminal outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a doorbell kind: only done, needs-human, frozen and stopped ring")]
pub struct NotTerminal(pub String);

/// How loudly a doorbell should ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loudness {
    /// Good news, no action needed.
    Quiet,
    /// A human must act.
    Loud,
}

/// One doorbell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doorbell {
    /// Which end the run came to.
    pub kind: DoorbellKind,
    /// The repository.
    pub repo: String,
    /// The issue number.
    pub issue: u64,
    /// Why, in one line.
    pub reason: String,
    /// Deep link to the agent's thread, when one exists.
    pub thread_link: Option<String>,
    /// Who stopped the run (`stopped` only).
    pub by: Option<String>,
    /// What the run cost, where its runtime reported it.
    pub cost: Option<Cost>,
}

impl Doorbell {
    /// The title: `[DONE] repo#n landed`, `[NEEDS-HUMAN] repo#n needs a
    /// human`, `[FROZEN] repo#n frozen — budget exhausted`, `[STOPPED] repo#n
    /// stopped by alice`.
    pub fn title(&self) -> String {
        let key = format!("{}#{}", self.repo, self.issue);
        match self.kind {
            OutcomeKind::Done => format!("[DONE] {key} landed"),
            OutcomeKind::NeedsHuman => format!("[NEEDS-HUMAN] {key} needs a human"),
            OutcomeKind::Frozen => format!("[FROZEN] {key} frozen — budget exhausted"),
            OutcomeKind::Stopped => format!(
                "[STOPPED] {key} stopped by {}",
                self.by.as_deref().unwrap_or("an unknown account")
            ),
        }
    }

    /// The body: the reason, what the run cost (`not reported` when its
    /// runtime reports none), then the thread link when there is one.
    pub fn body(&self) -> String {
        let mut body = format!("{}\n\nCost: {}", self.reason, Cost::describe(self.cost));
        if let Some(link) = &self.thread_link {
            body.push_str(&format!("\nThread: {link}"));
        }
        body
    }

    /// Quiet for `done`, loud otherwise.
    pub fn loudness(&self) -> Loudness {
        match self.kind {
            OutcomeKind::Done => Loudness::Quiet,
            OutcomeKind::NeedsHuman | OutcomeKind::Frozen | OutcomeKind::Stopped => Loudness::Loud,
        }
    }

    /// Routing tags: `afk`, the kind, and the repository.
    pub fn tags(&self) -> Vec<String> {
        vec![
            "afk".to_owned(),
            self.kind.as_str().to_owned(),
            self.repo.clone(),
        ]
    }
}

/// What a notifier sends, whatever rang: a run's doorbell
/// ([`Doorbell::message`]) or the loop's health (`crate::health::HealthBell`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// One line.
    pub title: String,
    /// The rest.
    pub body: String,
    /// How loudly.
    pub loudness: Loudness,
    /// Routing tags.
    pub tags: Vec<String>,
    /// A link to open, when there is one.
    pub link: Option<String>,
}

impl Doorbell {
    /// The message a notifier sends for it.
    pub fn message(&self) -> Message {
        Message {
            title: self.title(),
            body: self.body(),
            loudness: self.loudness(),
            tags: self.tags(),
            link: self.thread_link.clone(),
        }
    }
}

impl fmt::Display for Doorbell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.title(), self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bell(kind: OutcomeKind, link: Option<&str>) -> Doorbell {
        Doorbell {
            by: None,
            kind,
            repo: "infra".into(),
            issue: 7,
            reason: "CI is green on the pushed commit".into(),
            thread_link: link.map(str::to_owned),
            cost: None,
        }
    }

    #[test]
    fn titles_bodies_and_loudness() {
        let done = bell(OutcomeKind::Done, Some("https://t3/thread-3"));
        assert_eq!(done.title(), "[DONE] infra#7 landed");
        assert_eq!(
            done.body(),
            "CI is green on the pushed commit\n\nCost: not reported\nThread: https://t3/thread-3"
        );
        assert_eq!(done.loudness(), Loudness::Quiet);
        assert_eq!(done.tags(), ["afk", "done", "infra"]);
        let human = bell(OutcomeKind::NeedsHuman, None);
        assert_eq!(human.title(), "[NEEDS-HUMAN] infra#7 needs a human");
        assert_eq!(
            human.body(),
            "CI is green on the pushed commit\n\nCost: not reported"
        );
        let paid = Doorbell {
            cost: Some(Cost { micro_usd: 41_200 }),
            ..bell(OutcomeKind::Done, None)
        };
        assert_eq!(
            paid.body(),
            "CI is green on the pushed commit\n\nCost: $0.0412"
        );
        assert_eq!(human.loudness(), Loudness::Loud);
        assert_eq!(
            bell(OutcomeKind::Frozen, None).title(),
            "[FROZEN] infra#7 frozen — budget exhausted"
        );
        let stopped = Doorbell {
            by: Some("alice".into()),
            ..bell(OutcomeKind::Stopped, None)
        };
        assert_eq!(stopped.title(), "[STOPPED] infra#7 stopped by alice");
        assert_eq!(stopped.loudness(), Loudness::Loud);
        assert_eq!(stopped.tags(), ["afk", "stopped", "infra"]);
    }

    #[test]
    fn only_terminal_kinds_parse() {
        assert_eq!(OutcomeKind::parse_doorbell("done"), Ok(OutcomeKind::Done));
        assert_eq!(
            OutcomeKind::parse_doorbell("needs-human"),
            Ok(OutcomeKind::NeedsHuman)
        );
        assert_eq!(
            OutcomeKind::parse_doorbell("frozen"),
            Ok(OutcomeKind::Frozen)
        );
        assert_eq!(
            OutcomeKind::parse_doorbell("stopped"),
            Ok(OutcomeKind::Stopped)
        );
        for other in ["wait", "fix_forward", "DONE", "", "progress"] {
            let err = OutcomeKind::parse_doorbell(other).unwrap_err();
            assert!(
                err.to_string()
                    .contains("only done, needs-human, frozen and stopped ring")
            );
        }
    }
}
