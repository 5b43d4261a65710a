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

/// A turn's supervisor as the local executor runs it: it holds the turn's
/// lock for its life, records how the agent ended before it lets go, and a
/// second supervisor of the same turn (a crashed tick's repeat) starts
/// nothing, whether the first still runs or already ended.
#[test]
fn one_supervisor_per_turn_and_its_end_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("turn-0.lock");
    let exit = dir.path().join("turn-0.exit");
    let ran = dir.path().join("ran");
    let script = format!("echo x >> {}; sleep 2; exit 7", ran.display());
    let lock_s = lock.to_str().unwrap();
    let exit_s = exit.to_str().unwrap();
    let args = [
        "--detach",
        "--lock",
        lock_s,
        "--exit-file",
        exit_s,
        "--",
        "sh",
        "-c",
        script.as_str(),
    ];
    let mut first = Command::new(env!("CARGO_BIN_EXE_afk-reaper"))
        .args(args)
        .spawn()
        .unwrap();
    // The first takes the lock; the lock names it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while afk_process::locks::holders(&lock).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the lock was never taken"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(afk_process::locks::holders(&lock), [first.id()]);
    // A second supervisor of the same turn while it runs: nothing started.
    let (code, err) = reaper(&args);
    assert_eq!(code, Some(afk_process::reaper::ALREADY));
    assert!(err.is_empty(), "a lost race is silent: {err}");
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(7));
    let ended =
        afk_process::reaper::Ended::parse(&std::fs::read_to_string(&exit).unwrap()).unwrap();
    assert_eq!(
        ended,
        afk_process::reaper::Ended {
            code: 7,
            stopped: false
        }
    );
    assert!(afk_process::locks::holders(&lock).is_empty());
    // And after it ended: the turn ran, nothing starts again.
    let (code, _) = reaper(&args);
    assert_eq!(code, Some(afk_process::reaper::ALREADY));
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap(),
        "x\n",
        "the agent ran once"
    );
}

/// Stopped by SIGTERM, a detached supervisor kills its tree (a `setsid`
/// escapee included) and records that it was stopped.
#[test]
fn a_stopped_turn_is_recorded_as_stopped_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lock = dir.path().join("turn-1.lock");
    let exit = dir.path().join("turn-1.exit");
    let pids = dir.path().join("pids");
    let script = format!(
        "setsid sh -c 'echo $$ >> {p}; exec sleep 600' & echo $$ >> {p}; sleep 600",
        p = pids.display()
    );
    let mut sup = Command::new(env!("CARGO_BIN_EXE_afk-reaper"))
        .args([
            "--detach",
            "--lock",
            lock.to_str().unwrap(),
            "--exit-file",
            exit.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let read_pids = || -> Vec<u32> {
        std::fs::read_to_string(&pids)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    while read_pids().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the tree never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    afk_process::terminate(sup.id()).unwrap();
    assert_eq!(sup.wait().unwrap().code(), Some(143));
    let ended =
        afk_process::reaper::Ended::parse(&std::fs::read_to_string(&exit).unwrap()).unwrap();
    assert!(ended.stopped);
    for pid in read_pids() {
        assert!(
            afk_process::ended(pid),
            "process {pid} of the tree survived"
        );
    }
}
