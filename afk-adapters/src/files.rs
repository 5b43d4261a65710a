//! Files afk keeps between ticks (the App's token cache, the state file,
//! the metrics file), each replaced whole: a new file beside it (never an
//! existing one, never through a link), written, synced, and renamed over
//! it, so a reader (another tick, the textfile collector) sees the old
//! content or the new, never part of it.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Replaces `path` with `bytes`, whole, with permission bits `mode`. The
/// file beside it is `.<name>.<pid>.<random>.tmp`, removed when anything
/// fails.
///
/// # Errors
/// What the file system said.
pub fn replace_whole(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
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
        uuid::Uuid::new_v4().simple()
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
