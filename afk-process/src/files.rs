//! Files afk keeps and reads back (run records, exit files, the App's token
//! cache, the state and metrics files), each written whole and read with a
//! bound:
//!
//! - [`replace_whole`]: a new file beside the target (`O_EXCL`: never an
//!   existing one, never through a link), written, synced, renamed over the
//!   target, the directory synced; a reader sees the old content or the
//!   new, never part of it;
//! - [`read_small`]: a regular file's content up to a cap; a device, a pipe
//!   or a file past the cap is an error, never read on (`/dev/zero` named
//!   as a setting must not hang a tick).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Replaces `path` with `bytes`, whole, with permission bits `mode`. The
/// file beside it is `.<name>.<pid>.<n>.tmp`, removed when anything fails.
///
/// # Errors
/// What the file system said.
pub fn replace_whole(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A regular file's content, at most `cap` bytes.
///
/// # Errors
/// What the file system said; `IsADirectory`; `InvalidInput` for a file
/// that is not a regular one or is larger than `cap` (the message says
/// which).
pub fn read_small(path: &Path, cap: u64) -> std::io::Result<Vec<u8>> {
    // Looked at before it is opened: opening a pipe would wait for a writer.
    let meta = std::fs::metadata(path)?;
    if meta.is_dir() {
        return Err(std::io::Error::from(std::io::ErrorKind::IsADirectory));
    }
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "it is not a regular file",
        ));
    }
    let mut bytes = Vec::new();
    File::open(path)?.take(cap + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("it is larger than {} KiB", cap / 1024),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn a_file_is_replaced_whole_and_read_with_a_bound() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let path = dir.join("kept.json");
        replace_whole(&path, b"first", 0o600).unwrap();
        replace_whole(&path, b"second", 0o600).unwrap();
        assert_eq!(read_small(&path, 64).unwrap(), b"second");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir).unwrap().count(),
            1,
            "nothing left beside it"
        );
        let big = read_small(&path, 3).unwrap_err();
        assert!(big.to_string().contains("larger than"), "{big}");
        let dev = read_small(Path::new("/dev/zero"), 64).unwrap_err();
        assert!(dev.to_string().contains("not a regular file"), "{dev}");
        assert!(read_small(dir, 64).is_err());
        assert!(replace_whole(&dir.join("no/such/dir/x"), b"x", 0o600).is_err());
    }
}
