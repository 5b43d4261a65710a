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

impl Scratch {
    /// The same directory, read as its subdirectory `sub` (created); the
    /// whole directory is still removed when dropped.
    pub fn within(mut self, sub: &str) -> Scratch {
        self.path = self.path.join(sub);
        std::fs::create_dir_all(&self.path).unwrap();
        self
    }
}

impl Deref for Scratch {
    type Target = PathBuf;

    fn deref(&self) -> &PathBuf {
        &self.path
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}
