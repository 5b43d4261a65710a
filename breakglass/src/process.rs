//! Child processes the server starts (agent turns, power verbs): each in its
//! own process group, so one signal ends it and everything it started.
//!
//! This module only starts, reads and kills; what a process's output means
//! is the caller's business.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Child;
use tokio::task::JoinHandle;

/// Starts `program args…` (an argument vector, never a shell) in a new
/// process group, stdin closed, stdout and stderr piped.
pub fn spawn_in_group(program: &str, args: &[&str], cwd: Option<&Path>) -> std::io::Result<Child> {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = cwd {
        command.current_dir(dir);
    }
    command.spawn()
}

/// Sends SIGKILL to process group `pgid`; a group that is gone is fine.
pub fn kill_group(pgid: u32) {
    if let Some(pid) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// At most this much of a stream is kept.
pub const OUTPUT_LIMIT: u64 = 64 * 1024;

/// Reads the first [`OUTPUT_LIMIT`] bytes of `stream` in the background and
/// drains the rest, so the child never blocks on a full pipe.
pub fn read_capped(stream: Option<impl AsyncRead + Unpin + Send + 'static>) -> JoinHandle<String> {
    tokio::spawn(async move {
        let Some(mut s) = stream else {
            return String::new();
        };
        let mut buf = Vec::new();
        let _ = (&mut s).take(OUTPUT_LIMIT).read_to_end(&mut buf).await;
        let _ = tokio::io::copy(&mut s, &mut tokio::io::sink()).await;
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// What a [`read_capped`] task read, waiting at most 5 s: once the group is
/// killed its pipes close, but a process that left the group (setsid) could
/// hold them open.
pub async fn collect(task: JoinHandle<String>) -> String {
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default()
}
