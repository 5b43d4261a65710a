//! Local agents as real child processes: the prompt on stdin, the item in the
//! environment, output in the log while it runs, and the timeout or a cancel
//! killing the whole process group (no orphan left).

use std::path::Path;
use std::time::Duration;

use runner::agent::{AgentJob, Runtime, run};
use tokio::sync::watch;

use crate::scratch::Scratch;

fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("agent-{name}"))
}

fn sh(script: &str) -> Runtime {
    Runtime::Command {
        argv: vec!["sh".into(), "-c".into(), script.into()],
    }
}

fn job(dir: &Path, timeout: Duration) -> AgentJob {
    AgentJob {
        prompt: "Test the retry storm.\n".into(),
        env: vec![
            ("AFK_ITEM_ID".into(), "CORE-001".into()),
            ("AFK_RUN_DIR".into(), dir.display().to_string()),
        ],
        cwd: dir.to_owned(),
        log: dir.join("agent-1.log"),
        timeout,
        max_budget_usd: None,
    }
}

/// Whether process `pid` is gone (a zombie nobody reaped counts as gone).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// Waits (bounded) until process `pid` is gone: SIGKILL is delivered
/// asynchronously, so "gone" is awaited, not sampled.
async fn gone(pid: u32) -> bool {
    tokio::time::timeout(Duration::from_secs(10), async {
        while !dead(pid) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .is_ok()
}

/// Waits (bounded) until `path` exists and holds a line per expected pid.
async fn pids_in(path: &Path, count: usize) -> Vec<u32> {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(text) = std::fs::read_to_string(path) {
                let pids: Vec<u32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
                if pids.len() >= count {
                    return pids;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the agent never wrote its pids")
}

#[tokio::test]
async fn the_prompt_arrives_on_stdin_and_the_item_in_the_environment() {
    let dir = scratch("stdin");
    let (_tx, rx) = watch::channel(false);
    let script = "cat > prompt.txt; echo \"id=$AFK_ITEM_ID\"; echo oops >&2; exit 7";
    let mut started = None;
    let out = run(
        &sh(script),
        &job(&dir, Duration::from_secs(30)),
        rx,
        |pid| started = Some(pid),
    )
    .await
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("prompt.txt")).unwrap(),
        "Test the retry storm.\n"
    );
    assert_eq!(out.exit_code, Some(7));
    assert!(!out.timed_out && !out.cancelled);
    assert_eq!(out.stdout, "id=CORE-001\n");
    assert_eq!(out.said.as_deref(), Some("oops"));
    // The log holds both streams.
    let log = std::fs::read_to_string(dir.join("agent-1.log")).unwrap();
    assert!(log.contains("id=CORE-001") && log.contains("oops"), "{log}");
    assert_eq!(out.output, log);
    assert_eq!(started, Some(out.pid));
}

#[tokio::test]
async fn output_reaches_the_log_while_the_agent_still_runs() {
    let dir = scratch("live");
    let (tx, rx) = watch::channel(false);
    let log = dir.join("agent-1.log");
    let runtime = sh("echo first-line; sleep 30");
    let j = job(&dir, Duration::from_secs(60));
    let task = tokio::spawn(async move { run(&runtime, &j, rx, |_| {}).await });
    tokio::time::timeout(Duration::from_secs(10), async {
        while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("first-line")) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the log never showed the line");
    tx.send(true).unwrap();
    let out = task.await.unwrap().unwrap();
    assert!(out.cancelled);
    assert_eq!(out.exit_code, None);
}

#[tokio::test]
async fn a_timeout_kills_the_whole_process_group() {
    let dir = scratch("timeout");
    let (_tx, rx) = watch::channel(false);
    // The agent leaves a grandchild behind and then hangs itself.
    // It also says which process group it runs in: the one afk reports.
    let script = "sleep 600 & echo $! > pids; echo $$ >> pids; cut -d' ' -f5 /proc/$$/stat > pgid; sleep 600";
    let runtime = sh(script);
    let j = job(&dir, Duration::from_millis(700));
    let out = run(&runtime, &j, rx, |_| {}).await.unwrap();
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    let pids = pids_in(&dir.join("pids"), 2).await;
    let pgid = pids_in(&dir.join("pgid"), 1).await;
    assert_eq!(pgid, [out.pid], "the reported group is the agent's");
    for pid in &pids {
        assert!(gone(*pid).await, "process {pid} outlived the timeout");
    }
}

#[tokio::test]
async fn an_agent_that_exits_leaves_no_child_behind() {
    let dir = scratch("leftover");
    let (_tx, rx) = watch::channel(false);
    let out = run(
        &sh("sleep 600 & echo $! > pids; echo done"),
        &job(&dir, Duration::from_secs(30)),
        rx,
        |_| {},
    )
    .await
    .unwrap();
    assert_eq!(out.exit_code, Some(0));
    let pids = pids_in(&dir.join("pids"), 1).await;
    assert!(
        gone(pids[0]).await,
        "the agent's background child survived it"
    );
}

#[tokio::test]
async fn cancel_kills_the_agent_and_says_so() {
    let dir = scratch("cancel");
    let (tx, rx) = watch::channel(false);
    let runtime = sh("echo $$ > pids; sleep 600");
    let j = job(&dir, Duration::from_secs(600));
    let pidfile = dir.join("pids");
    let task = tokio::spawn(async move { run(&runtime, &j, rx, |_| {}).await });
    let pids = pids_in(&pidfile, 1).await;
    tx.send(true).unwrap();
    let out = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(out.cancelled && !out.timed_out);
    assert!(gone(pids[0]).await);
}

#[tokio::test]
async fn a_missing_program_or_log_directory_is_a_clear_error() {
    let dir = scratch("missing");
    let (_tx, rx) = watch::channel(false);
    let runtime = Runtime::Command {
        argv: vec!["/nonexistent/agent-binary".into()],
    };
    let err = run(
        &runtime,
        &job(&dir, Duration::from_secs(5)),
        rx.clone(),
        |_| {},
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent/agent-binary"),
        "{err}"
    );
    let mut bad = job(&dir, Duration::from_secs(5));
    bad.log = dir.join("no-such-dir").join("agent-1.log");
    let err = run(&sh("true"), &bad, rx, |_| {}).await.unwrap_err();
    assert!(
        err.to_string().contains("cannot create the agent log"),
        "{err}"
    );
}

/// The prompt is never an argument: one that starts with `-` cannot become
/// an option, and one past Linux's 128 KiB limit for an argument still
/// reaches the agent whole.
#[tokio::test]
async fn a_prompt_is_never_an_argument_however_it_starts_and_however_long() {
    let dir = scratch("prompt-not-argv");
    let fake = dir.join("claude");
    std::fs::write(
        &fake,
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > argv.txt\ncat > prompt.txt\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let runtime = Runtime::Claude {
        bin: fake.display().to_string(),
        model: None,
    };
    let prompt = format!("--settings={{\"hooks\":{{}}}}\n{}", "x".repeat(200_000));
    let mut job = job(&dir, Duration::from_secs(30));
    job.prompt = prompt.clone();
    let (_tx, rx) = watch::channel(false);
    let ran = run(&runtime, &job, rx, |_| {}).await.unwrap();
    assert_eq!(ran.exit_code, Some(0), "{}", ran.output);
    assert_eq!(
        std::fs::read_to_string(dir.join("argv.txt")).unwrap(),
        "-p\n--output-format\njson\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("prompt.txt")).unwrap(),
        prompt
    );

    // What is left of the budget reaches claude as its own limit.
    job.max_budget_usd = Some(0.25);
    let (_tx, rx) = watch::channel(false);
    run(&runtime, &job, rx, |_| {}).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("argv.txt")).unwrap(),
        "-p\n--output-format\njson\n--max-budget-usd\n0.2500\n"
    );
    // Other runtimes have no such flag and get none.
    let (_tx, rx) = watch::channel(false);
    let opencode = Runtime::OpenCode {
        bin: fake.display().to_string(),
        model: None,
    };
    run(&opencode, &job, rx, |_| {}).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("argv.txt")).unwrap(),
        "run\n"
    );
}
