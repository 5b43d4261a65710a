//! What a run reports as it goes, as values: the binary renders them (a
//! progress line on a terminal, plain lines otherwise) and tests assert on
//! them. [`Event`]'s `Display` is the line an operator reads.

use std::fmt;

use crate::decide::progress::Counts;

/// How a run ended (the session file's `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Still running (a session file written mid-run).
    Running,
    /// Every row it took is done.
    Finished,
    /// It ran to the end, and some rows failed.
    FinishedWithFailures,
    /// Ctrl-C.
    Interrupted,
    /// `afk cancel` (SIGTERM).
    Cancelled,
    /// It could not go on (a write failed, the checklist became unreadable).
    Error,
    /// `--budget-usd` was spent; nothing new was started.
    BudgetSpent,
}

impl Outcome {
    /// Its name in the session file and the last line.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Finished => "finished",
            Outcome::FinishedWithFailures => "finished-with-failures",
            Outcome::Interrupted => "interrupted",
            Outcome::Cancelled => "cancelled",
            Outcome::Error => "error",
            Outcome::BudgetSpent => "budget-spent",
        }
    }
}

/// How one item's attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemEnd {
    /// ✅
    Done,
    /// ❌, with the reason.
    Failed(String),
    /// Stopped by cancel or Ctrl-C: back to ☐.
    Stopped,
    /// Its agent's words or report could not be kept (the disk is full):
    /// back to ☐, with why, so `--resume` runs it again.
    Unkept(String),
}

/// One thing a run did, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The first line of a run in a campaign that spent money before: the
    /// run continues from it (`.afk/spend.json`).
    SpendCarried {
        /// What the campaign spent before this run.
        spent_usd: f64,
        /// This run's budget (the campaign's), when there is one.
        budget_usd: Option<f64>,
    },
    /// `--resume` tidied up after a dead run.
    Resumed(String),
    /// The backlog's counts, at the start of a round and after every item.
    Progress(Counts),
    /// An item's agent started.
    ItemStarted {
        /// The row's id.
        id: String,
        /// Its title.
        title: String,
        /// Its log, relative to the campaign directory.
        log: String,
    },
    /// A row of the batch left the checklist before its agent started.
    ItemVanished {
        /// The row's id.
        id: String,
    },
    /// An item's attempt ended.
    ItemEnded {
        /// The row's id.
        id: String,
        /// How.
        end: ItemEnd,
        /// How long its agent ran.
        seconds: f64,
        /// Its log, relative to the campaign directory.
        log: String,
        /// The backlog's counts afterwards.
        counts: Counts,
    },
    /// A tier is all done: its report is asked for.
    TierReportAsked {
        /// The tier.
        tier: u32,
    },
    /// A tier report was written.
    TierReportWritten {
        /// The tier.
        tier: u32,
        /// The report, relative to the campaign directory.
        path: String,
    },
    /// A tier report could not be had; it is asked for again on the next run.
    TierReportFailed {
        /// The tier.
        tier: u32,
        /// Why.
        reason: String,
        /// The agent's log, relative to the campaign directory.
        log: String,
    },
    /// Infinite mode: no to-do row is left and new ones are asked for.
    SynthesisAsked {
        /// The synthesis round (1, 2, …).
        round: u64,
    },
    /// A proposed row was dropped.
    SynthesisDropped {
        /// The synthesis round.
        round: u64,
        /// Its position in the answer.
        index: usize,
        /// Why.
        reason: String,
    },
    /// A synthesis round added nothing.
    SynthesisNothing {
        /// The synthesis round.
        round: u64,
        /// Why.
        reason: String,
    },
    /// Rows were appended to the checklist.
    SynthesisAdded {
        /// The synthesis round.
        round: u64,
        /// The new rows' ids.
        ids: Vec<String>,
    },
    /// The budget is spent: nothing new starts.
    BudgetSpent(crate::decide::spend::Spend),
    /// Infinite mode stopped after this many rounds that added nothing.
    IdleStop {
        /// How many.
        rounds: u32,
    },
    /// A line of the checklist that does not parse (someone is editing it):
    /// it is left as it is and nothing runs from it until it is fixed;
    /// reported once per run.
    ChecklistProblem {
        /// The checklist, relative to the campaign directory.
        path: String,
        /// The line (1-based).
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// Rows whose outcome could not be written to the checklist (a full
    /// disk): each with the status it was to get. They are still ⏳, and
    /// `--resume` runs them again.
    Unrecorded {
        /// The checklist, relative to the campaign directory.
        path: String,
        /// `(id, status)`, in the order they ended.
        rows: Vec<(String, checklist::sut::Status)>,
        /// Why the last write failed.
        reason: String,
    },
    /// Something that did not stop the run (a state file that could not be
    /// written).
    Warning(String),
    /// What stopped the run early.
    Error(String),
    /// The run ended.
    Ended {
        /// How.
        outcome: Outcome,
        /// The backlog's counts at the end.
        counts: Counts,
        /// The session file, relative to the campaign directory.
        session: String,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::SpendCarried {
                spent_usd,
                budget_usd,
            } => {
                write!(
                    f,
                    "this campaign spent ${spent_usd:.4} before this run (.afk/spend.json; \
                     delete it to count from $0 again)"
                )?;
                match budget_usd {
                    Some(b) => write!(
                        f,
                        ": ${:.4} of the ${b:.2} budget is left",
                        (b - spent_usd).max(0.0)
                    ),
                    None => Ok(()),
                }
            }
            Event::Resumed(note) => write!(f, "resume: {note}"),
            Event::Progress(counts) => write!(f, "{counts}"),
            Event::ItemStarted { id, title, log } => write!(f, "{id} ⏳ started: {title} ({log})"),
            Event::ItemVanished { id } => {
                write!(f, "{id} left the checklist before it started; skipped")
            }
            Event::ItemEnded {
                id,
                end,
                seconds,
                log,
                counts,
            } => match end {
                ItemEnd::Done => write!(f, "{id} ✅ done in {seconds:.1}s [{counts}]"),
                ItemEnd::Stopped => {
                    write!(f, "{id} ☐ stopped after {seconds:.1}s; back to to-do")
                }
                ItemEnd::Unkept(reason) => write!(
                    f,
                    "{id} ☐ back to to-do after {seconds:.1}s: {reason} [{counts}]"
                ),
                ItemEnd::Failed(reason) if log.is_empty() => {
                    write!(f, "{id} ❌ failed: {reason} [{counts}]")
                }
                ItemEnd::Failed(reason) => write!(
                    f,
                    "{id} ❌ failed after {seconds:.1}s: {reason} (log: {log}) [{counts}]"
                ),
            },
            Event::TierReportAsked { tier } => {
                write!(f, "tier {tier} is done; asking for its report")
            }
            Event::TierReportWritten { tier, path } => write!(f, "tier {tier} report: {path}"),
            Event::TierReportFailed { tier, reason, log } => write!(
                f,
                "tier {tier} report failed: {reason} (log: {log}); it is asked for again on the next run"
            ),
            Event::SynthesisAsked { round } => write!(
                f,
                "no to-do rows left; synthesis round {round}: asking for new rows"
            ),
            Event::SynthesisDropped {
                round,
                index,
                reason,
            } => write!(f, "synthesis round {round}: dropped row {index}: {reason}"),
            Event::SynthesisNothing { round, reason } => {
                write!(f, "synthesis round {round}: {reason}")
            }
            Event::SynthesisAdded { round, ids } => {
                write!(f, "synthesis round {round}: added {}", ids.join(", "))
            }
            Event::BudgetSpent(spend) => {
                write!(f, "the budget is spent ({spend}); nothing new starts")
            }
            Event::IdleStop { rounds } => write!(
                f,
                "infinite mode: {rounds} synthesis round(s) in a row added nothing; stopping"
            ),
            Event::ChecklistProblem {
                path,
                line,
                message,
            } => write!(
                f,
                "warning: {path}:{line}: {message}; afk leaves the line as it is and runs \
                 nothing from it until it is fixed"
            ),
            Event::Unrecorded { path, rows, reason } => {
                let rows: Vec<String> = rows
                    .iter()
                    .map(|(id, status)| format!("{id} {}", status.glyph()))
                    .collect();
                write!(
                    f,
                    "could not record {} in {path} ({reason}); they stay ⏳ until \
                     `afk run --resume` runs them again",
                    rows.join(", ")
                )
            }
            Event::Warning(message) => write!(f, "warning: {message}"),
            Event::Error(message) => write!(f, "error: {message}"),
            Event::Ended {
                outcome,
                counts,
                session,
            } => write!(f, "{}: {counts}; session {session}", outcome.as_str()),
        }
    }
}
