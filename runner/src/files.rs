//! Files that must never be seen half-written: replaced whole, atomically.
//!
//! [`atomic_write`] writes a temporary file beside the target, flushes it to
//! disk, and renames it over the target (a rename within one directory is
//! atomic on POSIX file systems), then syncs the directory so the rename
//! itself survives a power loss. A reader sees the old file or the new one,
//! never a mixture; a crash leaves at most a stray temporary file, which the
//! next write of the same target does not trip over.
//!
//! [`replace_if_unchanged`] is the same replace for a file that people edit
//! while afk works on it (the checklist): it replaces only if the file is
//! still what was read, looking last immediately before the rename, and
//! reports an edit that reached the old file after that look (which
//! [`crate::decide::replay`] carries over to the new one).
//! [`overwrite_in_place_if_unchanged`] is its fallback on a full disk, for a
//! change that keeps the file's length.
//!
//! This file is long because each way of writing a file here (whole, only
//! if unchanged, in place) has its crash and race cases tested beside it.
//!
//! This module does not lock: callers that have several writers (the
//! findings ledger) take a lock around read-modify-write themselves.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn temp_path(target: &Path) -> io::Result<PathBuf> {
    let name = target.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", target.display()),
        )
    })?;
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(format!(".tmp-{}-{unique}", std::process::id()));
    Ok(target.with_file_name(temp))
}

/// Creates directory `path` (and its missing parents) under `root`, one
/// component at a time, refusing before anything is created wherever a
/// component that already exists leads outside `root` (a symbolic link to
/// elsewhere) or is not a directory. Returns the directory's real path.
///
/// # Errors
/// `InvalidInput` naming the component that leads outside, or that is not
/// under `root` at all; any error creating a component.
pub fn create_dir_inside(root: &Path, path: &Path) -> io::Result<PathBuf> {
    walk_inside(root, path, true)
}

/// Checks, creating nothing, that every component of `path` that exists
/// under `root` stays inside `root` and is a directory; the components that
/// do not exist yet are fine (a later [`create_dir_inside`] makes them).
///
/// # Errors
/// As [`create_dir_inside`], for the components that exist.
pub fn check_dir_inside(root: &Path, path: &Path) -> io::Result<()> {
    walk_inside(root, path, false).map(|_| ())
}

/// Refuses `path` when it is a symbolic link, wherever it points: a file
/// afk opens for writing (a lock) must be its own, or opening it would
/// create or change the file at the link's target. A missing `path` is
/// fine.
///
/// # Errors
/// `InvalidInput` naming the link and its target.
pub fn refuse_link(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is a symbolic link (to {}): refused",
                path.display(),
                fs::read_link(path).unwrap_or_default().display()
            ),
        )),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn walk_inside(root: &Path, path: &Path, create: bool) -> io::Result<PathBuf> {
    let root_real = fs::canonicalize(root)?;
    let rel = path
        .strip_prefix(root)
        .or_else(|_| path.strip_prefix(&root_real))
        .map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not under {}", path.display(), root.display()),
            )
        })?;
    let mut current = root_real.clone();
    for part in rel.components() {
        let std::path::Component::Normal(name) = part else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a plain path under {}",
                    path.display(),
                    root.display()
                ),
            ));
        };
        let next = current.join(name);
        match fs::symlink_metadata(&next) {
            Ok(_) => {
                let real = fs::canonicalize(&next).map_err(|e| {
                    io::Error::new(e.kind(), format!("{}: {e}: refused", next.display()))
                })?;
                if !real.starts_with(&root_real) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "{} leads to {}, outside {}: refused",
                            next.display(),
                            real.display(),
                            root_real.display()
                        ),
                    ));
                }
                if !real.is_dir() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("{} is not a directory", next.display()),
                    ));
                }
                current = real;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && !create => return Ok(current),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match fs::create_dir(&next) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        // Made meanwhile (another writer): check it like any.
                        return walk_inside(root, path, create);
                    }
                    Err(e) => return Err(e),
                }
                current = next;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(current)
}

/// Replaces `target` with `contents` atomically. The file keeps the
/// permissions of the file it replaces (new files get the default). On error
/// the target is untouched and the temporary file is removed.
pub fn atomic_write(target: &Path, contents: &[u8]) -> io::Result<()> {
    replace_with(target, contents, |_| Ok(true)).map(|_| ())
}

/// Writes `contents` to a temporary file beside `target` and flushes it;
/// then, if `last_look` says so (it runs immediately before the rename),
/// renames it over `target` and syncs the directory. Returns whether it
/// replaced. On error, or when `last_look` says no, the target is untouched
/// and the temporary file is removed.
fn replace_with(
    target: &Path,
    contents: &[u8],
    last_look: impl FnOnce(&Path) -> io::Result<bool>,
) -> io::Result<bool> {
    let temp = temp_path(target)?;
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        if let Ok(meta) = fs::metadata(target) {
            file.set_permissions(meta.permissions())?;
        }
        file.write_all(contents)?;
        file.sync_all()?;
        if !last_look(target)? {
            return Ok(false);
        }
        fs::rename(&temp, target).map(|()| true)
    })();
    if !matches!(result, Ok(true)) {
        let _ = fs::remove_file(&temp);
        return result;
    }
    // The rename is durable once the directory entry is; a directory that
    // cannot be opened for syncing (some file systems) is not an error.
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(true)
}

/// A file as it was read, for [`replace_if_unchanged`]: its bytes, and the
/// open file they came from (which outlives a rename over its name).
#[derive(Debug)]
pub struct Snapshot {
    file: File,
    /// The content read.
    pub bytes: Vec<u8>,
}

/// Reads `target` for a later [`replace_if_unchanged`].
///
/// # Errors
/// The file cannot be opened or read.
pub fn snapshot(target: &Path) -> io::Result<Snapshot> {
    let mut file = File::open(target)?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(Snapshot { file, bytes })
}

impl Snapshot {
    /// The file's content now, read through the file kept open (after a
    /// rename over its name too).
    ///
    /// # Errors
    /// It cannot be read.
    pub fn reread(&self) -> io::Result<Vec<u8>> {
        read_all_at(&self.file)
    }
}

/// The whole content of `file`, read from its start.
fn read_all_at(file: &File) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut out = vec![0; usize::try_from(file.metadata()?.len()).unwrap_or(0)];
    let mut at = 0;
    loop {
        if at == out.len() {
            // It may have grown since its size was read.
            out.resize(at + 4096, 0);
        }
        let n = file.read_at(&mut out[at..], at as u64)?;
        if n == 0 {
            out.truncate(at);
            return Ok(out);
        }
        at += n;
    }
}

/// How [`replace_if_unchanged`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaced {
    /// Replaced, and nobody had changed the file since it was read.
    Done,
    /// The file changed after it was read: nothing was replaced.
    Changed,
    /// Replaced, but a writer that held the old file open wrote to it after
    /// the last look (an append, an edit in place): the old file's content
    /// now, with that edit, which the new file lacks.
    LateEdit(Vec<u8>),
}

/// Whether `e` says the disk (or the user's quota) is full.
pub fn is_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    )
}

/// Whether `dir`'s disk has room for a page: a probe file is written
/// there and removed. Only a full disk (or quota) says no; any other error
/// says yes (it is not this question's to answer).
pub fn has_room(dir: &Path) -> bool {
    let probe = dir.join(format!(".afk-room-probe-{}", std::process::id()));
    let wrote = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .and_then(|mut f| {
            f.write_all(&[0u8; 4096])?;
            f.sync_data()
        });
    let _ = fs::remove_file(&probe);
    !matches!(&wrote, Err(e) if is_full(e))
}

/// Writes `contents` over `target` in place, the differing bytes only, when
/// it is as long as what `read` holds and the file is still `read`'s with
/// the same bytes: for a full disk, where [`replace_if_unchanged`] cannot
/// make its temporary copy. A change of the same length (a status cell:
/// every status glyph is three bytes) needs no new block on a filesystem
/// that overwrites in place (tmpfs, ext4, xfs; not a copy-on-write one,
/// where it fails as the replace did). Each changed cell is one positional
/// write, so a crash leaves each cell old or new, never torn.
///
/// # Errors
/// `InvalidInput` when the lengths differ; any error opening, reading or
/// writing (the cells written before it stay written, each whole).
pub fn overwrite_in_place_if_unchanged(
    target: &Path,
    contents: &[u8],
    read: &Snapshot,
) -> io::Result<Replaced> {
    use std::os::unix::fs::{FileExt, MetadataExt};
    if contents.len() != read.bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "an in-place write must keep the file's length",
        ));
    }
    let file = OpenOptions::new().write(true).open(target)?;
    let (now, then) = (file.metadata()?, read.file.metadata()?);
    if (now.dev(), now.ino()) != (then.dev(), then.ino()) || read_all_at(&read.file)? != read.bytes
    {
        return Ok(Replaced::Changed);
    }
    for (start, end) in changed_spans(&read.bytes, contents) {
        file.write_all_at(&contents[start..end], start as u64)?;
    }
    file.sync_data()?;
    Ok(Replaced::Done)
}

/// The spans (`start..end`) where `new` differs from `old` (same length),
/// spans fewer than 8 bytes apart joined: one write per changed cell.
fn changed_spans(old: &[u8], new: &[u8]) -> Vec<(usize, usize)> {
    let mut spans: Vec<(usize, usize)> = Vec::new();
    for (i, (a, b)) in old.iter().zip(new).enumerate() {
        if a == b {
            continue;
        }
        match spans.last_mut() {
            Some((_, end)) if i - *end < 8 => *end = i + 1,
            _ => spans.push((i, i + 1)),
        }
    }
    spans
}

/// Replaces `target` with `contents`, atomically, only if it is still the
/// file `read` came from with the same bytes. That last look is taken after
/// the new content is written and flushed, immediately before the rename,
/// so the only window left for another writer is the rename itself; and a
/// writer that still held the old file and wrote to it in that window is
/// caught afterwards ([`Replaced::LateEdit`]) through the file `read` kept
/// open, for the caller to build on again.
///
/// # Errors
/// Writing, flushing or renaming failed: the target is untouched and the
/// temporary file removed.
pub fn replace_if_unchanged(
    target: &Path,
    contents: &[u8],
    read: &Snapshot,
) -> io::Result<Replaced> {
    replace_if_unchanged_then(target, contents, read, || {})
}

/// [`replace_if_unchanged`], running `in_the_window` between the last look
/// and the rename (the tests' other writer).
fn replace_if_unchanged_then(
    target: &Path,
    contents: &[u8],
    read: &Snapshot,
    in_the_window: impl FnOnce(),
) -> io::Result<Replaced> {
    use std::os::unix::fs::MetadataExt;
    let replaced = replace_with(target, contents, |target| {
        let now = match fs::metadata(target) {
            Ok(now) => now,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let then = read.file.metadata()?;
        let same = (now.dev(), now.ino()) == (then.dev(), then.ino())
            && read_all_at(&read.file)? == read.bytes;
        if same {
            in_the_window();
        }
        Ok(same)
    })?;
    if !replaced {
        return Ok(Replaced::Changed);
    }
    let after = read_all_at(&read.file)?;
    Ok(if after == read.bytes {
        Replaced::Done
    } else {
        Replaced::LateEdit(after)
    })
}

/// Removes the temporary files a crashed writer left in `dir`
/// (`.<name>.tmp-<pid>-<n>` of a process that no longer runs); returns
/// their names. Another live process's temporary file is left alone.
pub fn sweep_stray_temps(dir: &Path) -> Vec<String> {
    let mut removed = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return removed;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = stray_pid(&name) else {
            continue;
        };
        let alive = Path::new("/proc").join(pid.to_string()).exists();
        if !alive
            && entry.file_type().is_ok_and(|t| t.is_file())
            && fs::remove_file(entry.path()).is_ok()
        {
            removed.push(name);
        }
    }
    removed.sort();
    removed
}

/// The writer's pid of a temporary file name made by [`atomic_write`].
fn stray_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".tmp-")?;
    let (pid, unique) = tail.split_once('-')?;
    unique.parse::<u64>().ok()?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A temporary directory, removed when dropped.
    fn scratch(name: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("afk-{name}-"))
            .tempdir()
            .unwrap()
    }

    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary() {
        let dir_tmp = scratch("replace");
        let dir = dir_tmp.path();
        let target = dir.join("SUT-CHECKLIST.md");
        fs::write(&target, "old old old old").unwrap();
        atomic_write(&target, b"new").unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        let names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["SUT-CHECKLIST.md"]);
    }

    #[test]
    fn an_in_place_write_changes_only_the_cells_of_a_file_still_as_read() {
        let dir_tmp = scratch("in-place");
        let target = dir_tmp.path().join("SUT-CHECKLIST.md");
        fs::write(&target, "| ⏳ | A |\n| ☐ | B |\n").unwrap();
        let read = snapshot(&target).unwrap();
        let inode = || std::os::unix::fs::MetadataExt::ino(&fs::metadata(&target).unwrap());
        let before = inode();
        let new = "| ✅ | A |\n| ❌ | B |\n";
        assert_eq!(
            overwrite_in_place_if_unchanged(&target, new.as_bytes(), &read).unwrap(),
            Replaced::Done
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), new);
        assert_eq!(inode(), before, "the same file, written in place");
        assert_eq!(changed_spans(b"ab-cd-ef", b"aX-cd-eY"), [(1, 8)]);
        assert_eq!(
            changed_spans(b"a.........b", b"X.........Y"),
            [(0, 1), (10, 11)]
        );
        // Changed since it was read (a human's edit): nothing written.
        let read = snapshot(&target).unwrap();
        fs::write(&target, "| ✅ | A |\n| ❌ | C |\n").unwrap();
        assert_eq!(
            overwrite_in_place_if_unchanged(&target, "| ⏳ | A |\n| ❌ | B |\n".as_bytes(), &read)
                .unwrap(),
            Replaced::Changed
        );
        assert_eq!(
            fs::read_to_string(&target).unwrap(),
            "| ✅ | A |\n| ❌ | C |\n"
        );
        // Another length is never written in place.
        let read = snapshot(&target).unwrap();
        let err = overwrite_in_place_if_unchanged(&target, b"| | A |\n", &read).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(
            fs::read_to_string(&target).unwrap(),
            "| ✅ | A |\n| ❌ | C |\n"
        );
    }

    #[test]
    fn a_disk_with_room_says_so_and_keeps_no_probe() {
        let dir_tmp = scratch("room");
        assert!(has_room(dir_tmp.path()));
        assert_eq!(fs::read_dir(dir_tmp.path()).unwrap().count(), 0);
        // Not a full disk (no such directory): not this question's to say no.
        assert!(has_room(&dir_tmp.path().join("missing")));
    }

    #[test]
    fn a_failed_write_leaves_the_target_as_it_was() {
        let dir_tmp = scratch("fail");
        let dir = dir_tmp.path();
        // The target's directory does not exist: nothing is written anywhere.
        let missing = dir.join("no-such-dir").join("f.md");
        assert!(atomic_write(&missing, b"x").is_err());
        // The target is a directory: the rename fails, the temp file goes.
        let target = dir.join("is-a-dir");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("keep"), "kept").unwrap();
        let err = atomic_write(&target, b"x").unwrap_err();
        assert_ne!(err.kind(), io::ErrorKind::NotFound, "{err}");
        assert_eq!(fs::read_to_string(target.join("keep")).unwrap(), "kept");
        let names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["is-a-dir"]);
    }

    #[test]
    fn a_crash_s_temporary_files_are_swept_and_nothing_else() {
        let dir_tmp = scratch("sweep");
        let dir = dir_tmp.path();
        // A pid that cannot be running (above the kernel's pid limit).
        let dead = ".SUT-CHECKLIST.md.tmp-4194305-7";
        let live = format!(".SUT-CHECKLIST.md.tmp-{}-0", std::process::id());
        for name in [
            dead,
            live.as_str(),
            "SUT-CHECKLIST.md",
            ".notes.tmp-x-1",
            ".tmp-1-2",
        ] {
            fs::write(dir.join(name), "x").unwrap();
        }
        assert_eq!(sweep_stray_temps(dir), [dead]);
        let mut left: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        let mut kept = vec![
            ".notes.tmp-x-1",
            live.as_str(),
            ".tmp-1-2",
            "SUT-CHECKLIST.md",
        ];
        kept.sort_unstable();
        assert_eq!(left, kept);
        assert!(sweep_stray_temps(&dir.join("missing")).is_empty());
    }

    #[test]
    fn links_out_of_the_root_are_refused_and_nothing_is_created() {
        let root_tmp = scratch("inside");
        let outside_tmp = scratch("outside");
        let (root, outside) = (root_tmp.path(), outside_tmp.path());
        fs::create_dir(root.join("real")).unwrap();
        std::os::unix::fs::symlink(outside, root.join("out")).unwrap();
        std::os::unix::fs::symlink(root.join("real"), root.join("in")).unwrap();
        std::os::unix::fs::symlink(outside.join("gone"), root.join("dangling")).unwrap();
        fs::write(root.join("file"), "x").unwrap();
        // (path under the root, refused?) for a check that creates nothing.
        for (path, refused) in [
            ("out", true),
            ("out/deeper/still", true),
            ("dangling", true),
            ("file/x", true),
            ("in/new/dirs", false),
            ("real", false),
            ("missing/dirs", false),
        ] {
            let got = check_dir_inside(root, &root.join(path));
            assert_eq!(got.is_err(), refused, "{path}: {got:?}");
            if let Err(e) = got {
                assert!(e.to_string().contains(&root.display().to_string()), "{e}");
            }
        }
        assert!(!root.join("missing").exists() && !root.join("real/new").exists());
        for (path, refused) in [
            ("out", true),
            ("in", true),
            ("file", false),
            ("none", false),
        ] {
            assert_eq!(refuse_link(&root.join(path)).is_err(), refused, "{path}");
        }
        assert_eq!(fs::read_dir(outside).unwrap().count(), 0);
    }

    #[test]
    fn a_replace_happens_only_over_the_file_that_was_read() {
        use std::io::Write as _;
        let dir_tmp = scratch("replace-if");
        let target = dir_tmp.path().join("SUT-CHECKLIST.md");
        let append = |text: &str| {
            let mut f = OpenOptions::new().append(true).open(&target).unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };
        // Nobody else wrote: replaced.
        fs::write(&target, "a\n").unwrap();
        let read = snapshot(&target).unwrap();
        assert_eq!(
            replace_if_unchanged(&target, b"A\n", &read).unwrap(),
            Replaced::Done
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "A\n");
        // Edited in place, or replaced by another file, after the read:
        // nothing is replaced, and the edit stays.
        let read = snapshot(&target).unwrap();
        append("human\n");
        assert_eq!(
            replace_if_unchanged(&target, b"mine\n", &read).unwrap(),
            Replaced::Changed
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "A\nhuman\n");
        let read = snapshot(&target).unwrap();
        atomic_write(&target, b"saved by an editor\n").unwrap();
        assert_eq!(
            replace_if_unchanged(&target, b"mine\n", &read).unwrap(),
            Replaced::Changed
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "saved by an editor\n");
        // A writer holding the old file writes after the last look: the
        // file is replaced, and its edit is handed back.
        let read = snapshot(&target).unwrap();
        let mut late = OpenOptions::new().append(true).open(&target).unwrap();
        let got = replace_if_unchanged_then(&target, b"mine\n", &read, || {
            late.write_all(b"late\n").unwrap();
        })
        .unwrap();
        assert_eq!(
            got,
            Replaced::LateEdit(b"saved by an editor\nlate\n".to_vec())
        );
        assert_eq!(fs::read_to_string(&target).unwrap(), "mine\n");
        // Gone meanwhile: changed, and nothing is created.
        let read = snapshot(&target).unwrap();
        fs::remove_file(&target).unwrap();
        assert_eq!(
            replace_if_unchanged(&target, b"mine\n", &read).unwrap(),
            Replaced::Changed
        );
        assert!(!target.exists());
        assert_eq!(
            fs::read_dir(dir_tmp.path()).unwrap().count(),
            0,
            "no temporary left"
        );
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        let err = atomic_write(Path::new("/"), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
