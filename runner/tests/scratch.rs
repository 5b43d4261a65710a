//! Temporary directories for the tests (`tempfile`): created fresh, and
//! removed with everything in them when the test is done with them.

use std::ops::Deref;
use std::path::PathBuf;

/// A temporary directory, removed when dropped; it reads as its path.
#[derive(Debug)]
pub struct Scratch {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Scratch {
    /// A new empty directory whose name starts with `afk-<name>-`.
    pub fn new(name: &str) -> Scratch {
        let dir = tempfile::Builder::new()
            .prefix(&format!("afk-{name}-"))
            .tempdir()
            .unwrap();
        let path = dir.path().to_path_buf();
        Scratch { _dir: dir, path }
    }
}

impl Deref for Scratch {
    type Target = PathBuf;

    fn deref(&self) -> &PathBuf {
        &self.path
    }
}
