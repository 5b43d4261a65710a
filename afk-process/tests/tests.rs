//! The one integration-test binary of `afk-process`: the `afk-reaper`
//! program as its callers run it. (Its being built here is also what puts it
//! beside every other crate's tests, where `Group::spawn` finds it.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn reaper(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_afk-reaper"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_supervisor_passes_the_agent_s_end_on() {
    assert_eq!(reaper(&["--", "true"]).0, Some(0));
    assert_eq!(reaper(&["--", "sh", "-c", "exit 3"]).0, Some(3));
    // A signal that ended the agent reads as 128 plus the signal.
    assert_eq!(reaper(&["--", "sh", "-c", "kill -9 $$"]).0, Some(137));
    let (code, err) = reaper(&["--", "no-such-program-afk"]);
    assert_eq!(code, Some(127));
    assert!(err.contains("no-such-program-afk"), "{err}");
}

#[test]
fn a_bad_command_line_starts_nothing_and_says_why() {
    for (args, why) in [
        (&[][..], "usage"),
        (&["--owner", "abc", "--", "true"][..], "--owner"),
        (&["sleep", "60"][..], "unknown argument"),
    ] {
        let (code, err) = reaper(args);
        assert_eq!(code, Some(125), "{args:?}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
}

/// An owner that is not its parent (it died before the supervisor started)
/// starts nothing.
#[test]
fn an_owner_already_gone_starts_nothing() {
    let marker = tempfile::tempdir().unwrap();
    let file = marker.path().join("ran");
    let (code, _) = reaper(&["--owner", "2", "--", "touch", file.to_str().unwrap()]);
    assert_eq!(code, Some(143));
    assert!(!file.exists(), "the agent started without its owner");
}

/// The supervisor's children that outlive the agent are killed and reaped
/// before it exits: nothing of the tree is left, `setsid` or not.
#[test]
fn nothing_of_the_tree_outlives_the_supervisor() {
    let out = Command::new(env!("CARGO_BIN_EXE_afk-reaper"))
        .args(["--", "sh", "-c", "setsid sleep 60 & echo $!"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let pid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(
        afk_process::ended(pid),
        "the setsid'd sleep outlived the tree"
    );
}
