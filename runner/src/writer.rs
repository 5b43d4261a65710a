//! The one writer of the checklist while afk works on it: status cells (one
//! per row) and synthesised rows, written so that no edit a human makes
//! meanwhile is lost, and a row that does not parse is reported, never a
//! reason to lose a write.
//!
//! Each write edits the file as it is now and replaces it only if it is
//! still what was read ([`files::replace_if_unchanged`]: the last look is
//! immediately before the rename); an edit that reached the replaced copy
//! after that look is carried over ([`decide::replay`]). On a full disk a
//! change that keeps the file's length (status cells) is written in place
//! instead ([`files::overwrite_in_place_if_unchanged`]). It does not decide
//! which statuses to write (the rounds do).

use std::path::{Path, PathBuf};

use checklist::sut::{self, Checklist, Diagnostic, Status};

use crate::{Error, decide, files};

/// The checklist as it is now, read mid-run: the rows that parse, and the
/// problems (with their lines) of those that do not. A human may be editing
/// it; unlike [`load_checklist`] before a run, a problem is not an error.
///
/// # Errors
/// `Failed` when the file cannot be read.
pub(crate) fn read_checklist(path: &Path) -> Result<(String, Checklist, Vec<Diagnostic>), Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::failed(format!("cannot read the checklist {}: {e}", path.display())))?;
    let (checklist, diagnostics) = sut::parse(&text);
    Ok((text, checklist, diagnostics))
}

/// How many times a write of the checklist starts again because someone
/// changed the file meanwhile, before it gives up.
const ATTEMPTS: usize = 50;

/// The writer of the checklist during a run (and of `--resume`'s clean-up):
/// every change afk makes to it goes through [`ChecklistWriter::rewrite`],
/// which loses no edit someone makes meanwhile.
///
/// It keeps the file it last replaced open: an editor that still held that
/// file may write to it later (after afk's last look), and the next write
/// (or [`ChecklistWriter::catch_late_edit`]) carries such an edit over.
#[derive(Debug)]
pub(crate) struct ChecklistWriter {
    path: PathBuf,
    /// The file afk last replaced, with its content when afk replaced it.
    replaced: Option<files::Snapshot>,
    /// The disk was found full (written in place then): why.
    full: Option<String>,
}

impl ChecklistWriter {
    /// The writer of the checklist at `path`.
    pub(crate) fn new(path: &Path) -> ChecklistWriter {
        ChecklistWriter {
            path: path.to_owned(),
            replaced: None,
            full: None,
        }
    }

    /// Why the disk is full, once a write found it so: no new agent should
    /// start then (its work could not be kept).
    pub(crate) fn disk_full(&self) -> Option<&str> {
        self.full.as_deref()
    }

    /// Rewrites the checklist with `edit` applied to the file as it is
    /// now, and loses no edit someone makes meanwhile. `edit` gets the text
    /// and returns the new text (`None`: nothing to change) and a value,
    /// which is returned.
    ///
    /// The file is read, edited, and replaced only if it is still what was
    /// read (the last look is immediately before the rename); when it
    /// changed, it is read and edited again. An edit that reached the old
    /// file after that last look ([`files::Replaced::LateEdit`], or found at
    /// the next write) is carried over ([`decide::replay`]) and written with
    /// the next try, as is every edit made meanwhile to the file that lacks
    /// it.
    ///
    /// # Errors
    /// `Failed` when the file cannot be read or written, or kept changing
    /// for [`ATTEMPTS`] tries (nothing of afk's was written then).
    pub(crate) fn rewrite<T>(
        &mut self,
        mut edit: impl FnMut(&str) -> (Option<String>, T),
    ) -> Result<T, Error> {
        let path = self.path.clone();
        let path = path.as_path();
        let read_failed = |e: std::io::Error| {
            Error::failed(format!("cannot read the checklist {}: {e}", path.display()))
        };
        // `read` is the file at the path as last read; `base` is what to
        // edit: the same bytes, unless an edit that reached an old file
        // after afk's last look is owed (then `base` has it and the file
        // does not).
        let mut read = files::snapshot(path).map_err(read_failed)?;
        let mut base = read.bytes.clone();
        if let Some(old) = self.replaced.take()
            && let Ok(now) = old.reread()
            && now != old.bytes
        {
            base = decide::replay(&old.bytes, &now, &base).unwrap_or(base);
        }
        for _ in 0..ATTEMPTS {
            // Text cut mid-character is a write caught halfway: read again.
            let Ok(text) = std::str::from_utf8(&base) else {
                read = files::snapshot(path).map_err(read_failed)?;
                base = read.bytes.clone();
                continue;
            };
            let (new, value) = edit(text);
            let new = match new {
                Some(new) => new.into_bytes(),
                None if base == read.bytes => return Ok(value),
                // Nothing of afk's to change, but an edit is owed.
                None => base.clone(),
            };
            let write_failed = |e: std::io::Error| {
                Error::failed(format!(
                    "cannot write the checklist {}: {e}",
                    path.display()
                ))
            };
            let replaced = match files::replace_if_unchanged(path, &new, &read) {
                // A full disk has no room for the whole new copy, but a
                // change of status cells keeps the file's length: it is
                // written in place, so no finished row stays ⏳.
                Err(e) if files::is_full(&e) && new.len() == read.bytes.len() => {
                    self.full = Some(e.to_string());
                    files::overwrite_in_place_if_unchanged(path, &new, &read)
                        .map_err(|_| write_failed(e))?
                }
                other => other.map_err(write_failed)?,
            };
            let now = match replaced {
                files::Replaced::Done => {
                    self.replaced = Some(read);
                    return Ok(value);
                }
                files::Replaced::Changed => {
                    let now = files::snapshot(path).map_err(read_failed)?;
                    // Whatever was owed is made again on the file as it is.
                    base = if base == read.bytes {
                        now.bytes.clone()
                    } else {
                        decide::replay(&read.bytes, &now.bytes, &base)
                            .unwrap_or_else(|| now.bytes.clone())
                    };
                    now
                }
                files::Replaced::LateEdit(late) => {
                    // Afk's file is in place, but an edit reached the old
                    // one after the last look: owed from now on, with what
                    // was owed, and with anything that reached afk's file
                    // since.
                    let now = files::snapshot(path).map_err(read_failed)?;
                    let owed = decide::replay(&read.bytes, &late, &base).unwrap_or(late);
                    base = decide::replay(&new, &now.bytes, &owed)
                        .unwrap_or_else(|| now.bytes.clone());
                    now
                }
            };
            read = now;
        }
        Err(Error::failed(format!(
            "the checklist {} kept changing while afk tried to write it ({ATTEMPTS} tries); \
             afk's change was not written",
            path.display()
        )))
    }

    /// Carries over an edit that reached the file afk last replaced after
    /// it did (the end of a run: no later write would).
    ///
    /// # Errors
    /// As [`ChecklistWriter::rewrite`].
    pub(crate) fn catch_late_edit(&mut self) -> Result<(), Error> {
        self.rewrite(|_| (None, ()))
    }

    /// Sets the status of the rows `ids`, one cell per row and nothing
    /// else, through [`ChecklistWriter::rewrite`]: a human's edit made
    /// meanwhile is kept, and a row that does not parse elsewhere in the
    /// file is left as it is and reported, never a reason to lose this
    /// write.
    ///
    /// # Errors
    /// As [`ChecklistWriter::rewrite`].
    pub(crate) fn mark(&mut self, ids: &[&str], status: Status) -> Result<Marked, Error> {
        self.rewrite(|text| {
            let mut out = text.to_owned();
            let mut marked = Marked {
                missing: Vec::new(),
                problems: sut::parse(text).1,
            };
            for id in ids {
                let (checklist, _) = sut::parse(&out);
                match checklist.items.iter().find(|i| i.id == *id) {
                    Some(item) if item.status != status => {
                        out = sut::set_status(&out, item, status);
                    }
                    Some(_) => {}
                    None => marked.missing.push((*id).to_owned()),
                }
            }
            ((out != text).then_some(out), marked)
        })
    }
}

/// What a status write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Marked {
    /// The ids no longer in the file (someone removed or broke the row).
    pub(crate) missing: Vec<String>,
    /// The file's problems, each with its line: those rows were left as
    /// they are.
    pub(crate) problems: Vec<Diagnostic>,
}
