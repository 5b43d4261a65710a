//! File locks (`flock`): taken with a deadline ([`hold`]), and who holds
//! one, read from Linux's `/proc/locks` ([`holders`]).
//!
//! A lock names its holder beyond doubt: a process holds a lock on one
//! file (device and inode) only if it took it. So where afk must signal a
//! process it started earlier (a runner, an agent's supervisor), it signals
//! only the process that holds that run's lock now: a forged or stale
//! record naming another process (even with its real start time) signals
//! nothing.

use std::path::Path;
use std::time::{Duration, Instant};

/// Holds `path`'s lock (the file created `0600` if it is not there) for the
/// returned file's life, waiting up to `wait` for another holder to let go.
///
/// # Errors
/// The file cannot be opened; `WouldBlock`, naming the file, when another
/// process still holds it after `wait`.
pub async fn hold(path: &Path, wait: Duration) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)?;
    let deadline = Instant::now() + wait;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    format!("{} is held by another afk", path.display()),
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// The processes holding a lock on `path` now (a waiting lock is not held);
/// empty when nobody does, the file is gone, or `/proc/locks` cannot be
/// read.
pub fn holders(path: &Path) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(path) else {
        return Vec::new();
    };
    let dev = meta.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let Ok(locks) = std::fs::read_to_string("/proc/locks") else {
        return Vec::new();
    };
    locks
        .lines()
        .filter_map(|line| {
            // `1: FLOCK  ADVISORY  WRITE 4242 08:02:131073 0 EOF` (a waiting
            // lock has `->` before the type: it is not held).
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(1) == Some(&"->") {
                return None;
            }
            let (holder, file) = (fields.get(4)?, fields.get(5)?);
            let mut parts = file.split(':');
            let (maj, min, ino) = (parts.next()?, parts.next()?, parts.next()?);
            let same_file = u64::from_str_radix(maj, 16).ok() == Some(major)
                && u64::from_str_radix(min, 16).ok() == Some(minor)
                && ino.parse::<u64>().ok() == Some(meta.ino());
            same_file.then(|| holder.parse::<u32>().ok()).flatten()
        })
        .collect()
}

/// Whether process `pid` holds a lock on `path` now.
pub fn holds(path: &Path, pid: u32) -> bool {
    holders(path).contains(&pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_of_a_lock_is_found_and_nobody_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let file = std::fs::File::create(&path).unwrap();
        assert!(holders(&path).is_empty());
        file.try_lock().unwrap();
        assert_eq!(holders(&path), [std::process::id()]);
        assert!(holds(&path, std::process::id()));
        assert!(!holds(&path, 1));
        // Another file's lock is not this one's.
        let other = dir.path().join("other");
        std::fs::File::create(&other).unwrap();
        assert!(holders(&other).is_empty());
        file.unlock().unwrap();
        assert!(holders(&path).is_empty());
        assert!(holders(&dir.path().join("missing")).is_empty());
    }
}
