//! Names the commit the binaries are built from, for `--version`:
//! `AFK_BUILD_COMMIT` when the build sets it (an image build without
//! `.git`), else git's own answer, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=AFK_BUILD_COMMIT");
    println!("cargo:rerun-if-changed=../.git/HEAD");
    println!("cargo:rerun-if-changed=../.git/refs/heads");
    let commit = std::env::var("AFK_BUILD_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .filter(|c| {
            c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=AFK_COMMIT={commit}");
}
