//! The live run: its state files (the active-run file, the session file)
//! and where its events go, shared by the rounds and the reports they
//! trigger; and the stamp that names a run's files.

use std::path::{Path, PathBuf};

use checklist::sut::{Diagnostic, Status};

use crate::Error;
use crate::decide::spend::Tally;
use crate::event::Event;
use crate::state::{self, ActiveRun, Session};

/// A timestamp for file names: `20261121T100000Z-<pid>`.
pub(crate) fn stamp() -> String {
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let now = time::OffsetDateTime::now_utc();
    // Formatting a UTC time with fixed-width fields only fails for years
    // past 9999.
    let text = now
        .format(&format)
        .unwrap_or_else(|_| now.unix_timestamp().to_string());
    format!("{text}-{}", std::process::id())
}

/// The live run: its state files and where its events go.
pub(crate) struct Live<'a> {
    pub(crate) root: PathBuf,
    /// The checklist, relative to the campaign directory.
    pub(crate) checklist: String,
    /// The one writer of the checklist.
    pub(crate) writer: crate::writer::ChecklistWriter,
    pub(crate) active: ActiveRun,
    /// What the campaign spent before this run (`.afk/spend.json`).
    pub(crate) spend_before: Tally,
    pub(crate) session_path: PathBuf,
    pub(crate) session: Session,
    pub(crate) events: &'a mut dyn FnMut(Event),
    /// The checklist problems already reported: `(line, message)`.
    pub(crate) problems_seen: std::collections::HashSet<(usize, String)>,
    /// Rows this run marked ⏳ whose outcome is not written yet, with the
    /// status they are owed once their agent ended (`None`: still running).
    pub(crate) owed: Vec<(String, Option<Status>)>,
}

impl std::fmt::Debug for Live<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("active", &self.active)
            .field("session_path", &self.session_path)
            .finish_non_exhaustive()
    }
}

impl Live<'_> {
    pub(crate) fn emit(&mut self, event: Event) {
        (self.events)(event);
    }

    pub(crate) fn save_active(&mut self, root: &Path) {
        if let Err(e) = state::write_active(root, &self.active) {
            self.emit(Event::Warning(e.to_string()));
        }
    }

    /// Whether the budget is spent (and if so, says so): nothing new may
    /// start.
    pub(crate) fn budget_spent(&mut self) -> bool {
        let spent = self.session.spend.exhausted();
        if spent {
            self.emit(Event::BudgetSpent(self.session.spend.clone()));
        }
        spent
    }

    /// Counts one agent run's cost (see [`crate::decide::spend`]) and
    /// records the campaign's new total in `.afk/spend.json` at once, so a
    /// runner that dies later has not forgotten it.
    ///
    /// # Errors
    /// `Failed` when the spend cannot be recorded and there is money to
    /// keep (a budget, or dollars spent): nothing new should start on money
    /// afk could not count. Agent runs that reported nothing, with no
    /// budget, are only a warning.
    pub(crate) fn charge(&mut self, cost: Option<f64>, cap: Option<f64>) -> Result<(), Error> {
        self.session.spend.charge(cost, cap);
        match self.save_spend() {
            Ok(()) => Ok(()),
            Err(e)
                if self.session.spend.budget_usd.is_none()
                    && self.session.spend.campaign_usd() == 0.0 =>
            {
                self.emit(Event::Warning(e.to_string()));
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Writes the campaign's spend: before this run, and this run's.
    pub(crate) fn save_spend(&self) -> Result<(), Error> {
        let total = self.spend_before.plus(&self.session.spend.tally());
        state::write_spend(&self.root, &total)
    }

    /// Reports each checklist problem once per run.
    pub(crate) fn report_problems(&mut self, problems: &[Diagnostic]) {
        for p in problems {
            if self.problems_seen.insert((p.line, p.message.clone())) {
                let path = self.checklist.clone();
                self.emit(Event::ChecklistProblem {
                    path,
                    line: p.line,
                    message: p.message.clone(),
                });
            }
        }
    }

    /// Writes one row's outcome to the checklist; a row that cannot be
    /// written stays owed (and is named at the end of the run).
    ///
    /// # Errors
    /// `Failed` when the write failed.
    pub(crate) fn record(&mut self, id: &str, status: Status) -> Result<(), Error> {
        match self.writer.mark(&[id], status) {
            Ok(marked) => {
                self.report_problems(&marked.problems);
                self.owed.retain(|(owed, _)| owed != id);
                Ok(())
            }
            Err(e) => {
                match self.owed.iter_mut().find(|(owed, _)| owed == id) {
                    Some(entry) => entry.1 = Some(status),
                    None => self.owed.push((id.to_owned(), Some(status))),
                }
                Err(e)
            }
        }
    }

    pub(crate) fn save_session(&mut self) {
        if let Err(e) = state::write_session(&self.session_path, &self.session) {
            self.emit(Event::Warning(e.to_string()));
        }
    }
}
