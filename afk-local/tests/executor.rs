//! The local executor's own promises, on the machine: where a turn runs,
//! what it is given and never given, what is read back from it, that a
//! stop leaves nothing, that a forged record signals nothing, that a crash
//! at any point starts no second agent, and that bad input is named.
//!
//! This file is long because each promise is a case on a real machine (real
//! git, real processes under afk-reaper), with the helpers they share.

use std::process::Command;

use afk_core::ports::{ExecutorSnapshot, PortError, ThreadSpec};
use afk_core::{Cost, ThreadStatus, Timestamp};
use afk_local::os::GitToken;
use afk_local::record::{Supervisor, ThreadRecord, TurnRecord};
use afk_loop::ports::Executor;

use crate::world::{Machine, bare_repo_named, git, machine, machine_with, wait_for};

fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

fn spec(repo: &str, issue: u64, attempt: u32) -> ThreadSpec {
    ThreadSpec {
        repo: repo.into(),
        issue,
        attempt,
        title: format!("{repo}#{issue}"),
        branch: "main".into(),
        prompt: format!("--settings=evil Fix {repo}#{issue}, attempt {attempt}.\n"),
        created_at: ts("2026-06-10T12:00:00Z"),
    }
}

async fn snap(m: &Machine) -> ExecutorSnapshot {
    m.exec.snapshot(&[]).await.unwrap()
}

async fn dispatch(m: &Machine, repo: &str, issue: u64, attempt: u32) -> String {
    let s = snap(m).await;
    let id = m
        .exec
        .ensure_thread(&s, &spec(repo, issue, attempt))
        .await
        .unwrap();
    wait_for(
        || m.starts().iter().any(|s| s.0 == id),
        "the agent to start",
    );
    id
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_runs_in_the_workspace_with_the_prompt_on_stdin_and_pushes() {
    let m = machine();
    let id = dispatch(&m, "infra", 7, 0).await;
    let (_, _, pid, pwd) = m.starts()[0].clone();
    let workspace = m.local_dir().join("workspaces/acme__infra");
    assert_eq!(pwd, workspace.display().to_string(), "PWD is the workspace");
    // The prompt came on stdin, whole; never on the command line.
    let prompt = std::fs::read_to_string(m.ctl.join(format!("{id}-0.prompt"))).unwrap();
    assert_eq!(prompt, spec("infra", 7, 0).prompt);
    assert!(
        !cmdline(pid).contains("--settings=evil"),
        "{}",
        cmdline(pid)
    );
    let s = snap(&m).await;
    assert_eq!(s.status(&id), Some(ThreadStatus::Running));
    assert_eq!(s.capacity.unwrap().running, 1);
    let record = m.record(&id);
    let sup = record.turns[0]
        .supervisor
        .expect("the supervisor is recorded");
    assert_eq!(afk_process::start_time(sup.pid), Some(sup.start));
    assert!(
        cmdline(sup.pid).contains("afk-reaper"),
        "{}",
        cmdline(sup.pid)
    );
    // The agent pushes; the turn completes.
    m.verdict(&id, 0, "push");
    m.wait_end(&id, 0);
    let s = snap(&m).await;
    assert_eq!(s.status(&id), Some(ThreadStatus::Idle));
    assert_eq!(s.capacity.unwrap().running, 0);
    assert_eq!(m.pushed()[0], "Change for acme/infra#7");
    let end = m.record(&id).turns[0].end.clone().unwrap();
    assert_eq!(end.code, Some(0));
    assert!(end.succeeded());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dirty_workspace_is_reset_and_never_pushed() {
    let m = machine();
    let first = dispatch(&m, "infra", 7, 0).await;
    m.verdict(&first, 0, "dirty");
    m.wait_end(&first, 0);
    let ws = m.local_dir().join("workspaces/acme__infra");
    assert!(ws.join("untracked.txt").exists());
    assert!(ws.join(".git/index.lock").exists());
    // The next thread in this repository starts from the default branch.
    let s = snap(&m).await;
    let second = m
        .exec
        .ensure_thread(&s, &spec("infra", 7, 1))
        .await
        .unwrap();
    assert_ne!(first, second);
    assert!(!ws.join("untracked.txt").exists());
    assert!(!ws.join(".git/index.lock").exists());
    assert_eq!(
        std::fs::read_to_string(ws.join("README.md")).unwrap(),
        "# infra\n"
    );
    assert_eq!(
        git(&ws, &["rev-parse", "HEAD"]),
        git(&ws, &["rev-parse", "origin/main"])
    );
    assert_eq!(git(&ws, &["status", "--porcelain"]), "");
    assert_eq!(
        m.pushed(),
        ["Seed"],
        "nothing the killed agent left was pushed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_reaches_git_only_through_the_credential_helper() {
    const TOKEN: &str = "ghs_local_executor_secret_0123456789";
    let m = machine_with(GitToken::Value(TOKEN.into()), 2, None);
    let id = dispatch(&m, "infra", 7, 0).await;
    let ws = m.local_dir().join("workspaces/acme__infra");
    let config = std::fs::read_to_string(ws.join(".git/config")).unwrap();
    assert!(!config.contains(TOKEN), "{config}");
    assert!(!git(&ws, &["remote", "get-url", "origin"]).contains('@'));
    let sup = m.record(&id).turns[0].supervisor.unwrap();
    let (_, _, agent, _) = m.starts()[0].clone();
    for pid in [sup.pid, agent] {
        assert!(!cmdline(pid).contains(TOKEN), "argv of {pid}");
    }
    for entry in walk(&m.local_dir().join("runs")) {
        let text = String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned();
        assert!(!text.contains(TOKEN), "{}", entry.display());
    }
    // And git gets it when it asks, for the clone URLs' host only.
    let https = machine_with(
        GitToken::Value(TOKEN.into()),
        2,
        Some("https://git.example.test".into()),
    );
    let asked = fill(&https, "git.example.test");
    assert!(asked.contains(&format!("password={TOKEN}")), "{asked}");
    assert!(asked.contains("username=x-access-token"), "{asked}");
    assert!(!fill(&https, "evil.example.test").contains(TOKEN));
    // A token file is read again on every use (a rotated token works).
    let file = https.root().join("token");
    std::fs::write(&file, "first-token\n").unwrap();
    let rotating = machine_with(
        GitToken::File(file.clone()),
        2,
        Some("https://git.example.test".into()),
    );
    assert!(fill(&rotating, "git.example.test").contains("password=first-token\n"));
    std::fs::write(&file, "second-token").unwrap();
    assert!(fill(&rotating, "git.example.test").contains("password=second-token\n"));
    assert!(
        !rotating
            .exec
            .host()
            .env()
            .iter()
            .any(|(_, v)| v.contains("token\n") || v == "second-token"),
        "a token file's content is never put in the environment"
    );
}

/// What `git credential fill` answers for `host` in the host's environment.
fn fill(m: &Machine, host: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("git")
        .args(["credential", "fill"])
        .env_clear()
        .envs(m.exec.host().env())
        .current_dir(m.root())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("protocol=https\nhost={host}\n\n").as_bytes())
        .unwrap();
    String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_that_fails_fails_that_repository_alone() {
    let m = machine();
    let s = snap(&m).await;
    let err = m
        .exec
        .ensure_thread(&s, &spec("missing", 3, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PortError::Transient { message } if message.contains("git clone failed")),
        "{err:?}"
    );
    assert!(!m.local_dir().join("workspaces/acme__missing").exists());
    assert!(
        !m.local_dir()
            .join("workspaces/.acme__missing.clone")
            .exists()
    );
    // Another repository is not affected.
    dispatch(&m, "infra", 7, 0).await;
    // A name that could leave the directory is refused before any I/O.
    for bad in ["../etc", "acme/..", "a b", "acme/x/y"] {
        let err = m
            .exec
            .ensure_thread(&s, &spec(bad, 1, 0))
            .await
            .unwrap_err();
        assert!(matches!(err, PortError::Permanent { .. }), "{bad}: {err:?}");
    }
}

/// Pushes a commit to the bare repository's `main` from its seed clone;
/// the commit's id.
fn push_upstream(m: &Machine, subject: &str) -> String {
    let seed = m.root().join("seed-infra");
    crate::world::seed_commit(&seed, "UPSTREAM.md", &format!("{subject}\n"), subject);
    let bare = m.root().join("git/acme/infra.git");
    git(&seed, &["push", "-q", bare.to_str().unwrap(), "main"]);
    git(&seed, &["rev-parse", "HEAD"]).trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workspace_is_cloned_once_then_fetched() {
    let m = machine();
    let first = dispatch(&m, "infra", 7, 0).await;
    m.verdict(&first, 0, "ok");
    m.wait_end(&first, 0);
    let ws = m.local_dir().join("workspaces/acme__infra");
    // A file only this clone's .git holds: a second clone would lose it.
    let marker = ws.join(".git/afk-test-marker");
    std::fs::write(&marker, "the first clone\n").unwrap();
    let upstream = push_upstream(&m, "Upstream change");
    let second = dispatch(&m, "infra", 7, 1).await;
    assert_ne!(first, second);
    assert!(marker.exists(), "the workspace was cloned again");
    assert_eq!(git(&ws, &["rev-parse", "HEAD"]).trim(), upstream);
    assert_eq!(
        std::fs::read_to_string(ws.join("UPSTREAM.md")).unwrap(),
        "Upstream change\n"
    );
    m.verdict(&second, 0, "ok");
    m.wait_end(&second, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_that_fails_fails_that_repository_alone() {
    let m = machine();
    bare_repo_named(m.root(), "web");
    let first = dispatch(&m, "infra", 7, 0).await;
    m.verdict(&first, 0, "ok");
    m.wait_end(&first, 0);
    // The remote goes away after the clone.
    let bare = m.root().join("git/acme/infra.git");
    std::fs::rename(&bare, m.root().join("git/acme/infra.git.gone")).unwrap();
    let s = snap(&m).await;
    let err = m
        .exec
        .ensure_thread(&s, &spec("infra", 7, 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PortError::Transient { message } if message.contains("git fetch failed")),
        "{err:?}"
    );
    assert_eq!(m.starts().len(), 1, "no agent started for the failed turn");
    // Another repository's turn in the same executor still starts.
    let other = dispatch(&m, "web", 8, 0).await;
    m.verdict(&other, 0, "ok");
    m.wait_end(&other, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_two_agents_run_when_the_setting_is_unset() {
    let tmp = tempfile::tempdir().unwrap();
    let config = |max: Option<&str>| afk_local::settings::LocalConfig {
        agent: Some("sh".into()),
        dir: tmp.path().join("local"),
        max_agents: max.map(str::to_owned),
        git_url: None,
        github_api_url: "https://api.github.com".into(),
        github_web_url: None,
        default_owner: Some("acme".into()),
        token: GitToken::None,
    };
    for (max, want) in [(None, 2), (Some(""), 2), (Some(" "), 2), (Some("5"), 5)] {
        let exec = config(max)
            .build(|k| (k == "PATH").then(|| "/usr/bin:/bin".to_owned()))
            .unwrap_or_else(|e| panic!("{max:?}: {e}"));
        let capacity = exec.snapshot(&[]).await.unwrap().capacity.unwrap();
        assert_eq!(capacity.max, want, "AFK_LOCAL_MAX_AGENTS={max:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_agent_said_and_what_it_cost_are_read_back() {
    let m = machine();
    let id = dispatch(&m, "infra", 7, 0).await;
    m.verdict(&id, 0, "claude-error");
    m.wait_end(&id, 0);
    let s = snap(&m).await;
    assert_eq!(s.status(&id), Some(ThreadStatus::Error));
    let info = &s.threads[&id];
    assert_eq!(
        info.said.as_deref(),
        Some("claude: API Error: 401 invalid x-api-key")
    );
    assert_eq!(info.cost, Cost::from_usd(0.01));
    // A plain failure says its last error line.
    let second = dispatch(&m, "infra", 7, 1).await;
    m.verdict(&second, 0, "fail");
    m.wait_end(&second, 0);
    let s = snap(&m).await;
    assert_eq!(
        s.threads[&second].said.as_deref(),
        Some("Error: the agent failed on purpose")
    );
    assert_eq!(s.threads[&second].cost, None, "not reported");
    // Costs add up over a thread's turns.
    let third = dispatch(&m, "infra", 7, 2).await;
    m.verdict(&third, 0, "claude");
    m.wait_end(&third, 0);
    let s = snap(&m).await;
    assert_eq!(s.status(&third), Some(ThreadStatus::Idle));
    m.exec
        .send_turn(
            &s,
            &third,
            1,
            "CI is red: fix forward.",
            ts("2026-06-10T13:00:00Z"),
        )
        .await
        .unwrap();
    wait_for(
        || m.starts().iter().any(|s| s.0 == third && s.1 == 1),
        "turn 1",
    );
    m.verdict(&third, 1, "claude");
    m.wait_end(&third, 1);
    let s = snap(&m).await;
    assert_eq!(s.threads[&third].cost, Cost::from_usd(0.5));
    assert_eq!(s.threads[&third].said, None);
    let prompt = std::fs::read_to_string(m.ctl.join(format!("{third}-1.prompt"))).unwrap();
    assert_eq!(prompt, "CI is red: fix forward.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_kills_the_whole_tree_setsid_escapees_included() {
    let m = machine();
    let id = dispatch(&m, "infra", 7, 0).await;
    m.verdict(&id, 0, "escape");
    let escapee = m.ctl.join("escapee");
    wait_for(
        || escapee.exists() && m.ctl.join("child").exists(),
        "the escapee",
    );
    let read = |f: &str| -> u32 {
        std::fs::read_to_string(m.ctl.join(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (escaped, agent) = (read("escapee"), m.starts()[0].2);
    assert!(!afk_process::ended(escaped));
    let s = snap(&m).await;
    m.exec
        .stop_thread(&s, &id, ts("2026-06-10T12:30:00Z"))
        .await
        .unwrap();
    for pid in [escaped, agent, read("child")] {
        wait_for(|| afk_process::ended(pid), &format!("process {pid} to end"));
    }
    let after = snap(&m).await;
    assert_ne!(after.status(&id), Some(ThreadStatus::Running));
    assert_eq!(
        after.threads[&id].said.as_deref(),
        Some("the agent was stopped before it finished")
    );
    // Again: nothing to do, no error.
    m.exec
        .stop_thread(&after, &id, ts("2026-06-10T12:31:00Z"))
        .await
        .unwrap();
    assert!(m.record(&id).stopped_at.is_some());
    // A stopped thread takes no more turns.
    let again = m
        .exec
        .send_turn(&after, &id, 1, "x", ts("2026-06-10T12:32:00Z"))
        .await;
    assert!(
        matches!(again, Err(PortError::NotFound { .. })),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_stale_record_signals_nothing() {
    let m = machine();
    let mut victim = Command::new("sleep").arg("600").spawn().unwrap();
    let pid = victim.id();
    let id = m.exec.thread_id("infra", 9, 0);
    let mut turn = TurnRecord::new(0, "2026-06-10T12:00:00Z");
    // Its real pid and start time: still not a process afk started.
    turn.supervisor = Some(Supervisor {
        pid,
        start: afk_process::start_time(pid).unwrap(),
    });
    let forged = ThreadRecord {
        version: afk_local::record::VERSION,
        thread_id: id.clone(),
        repo: "acme/infra".into(),
        issue: 9,
        attempt: 0,
        runtime: "command".into(),
        workspace: m.root().display().to_string(),
        turns: vec![turn],
        stopped_at: None,
    };
    let dir = m.local_dir().join("runs").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("record.json"), forged.to_json()).unwrap();
    let s = snap(&m).await;
    // It holds no lock of afk's: it is not the turn's supervisor.
    assert_eq!(s.status(&id), Some(ThreadStatus::Error));
    m.exec
        .stop_thread(&s, &id, ts("2026-06-10T12:30:00Z"))
        .await
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        victim.try_wait().unwrap().is_none(),
        "the victim was signalled"
    );
    victim.kill().unwrap();
    let _ = victim.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_at_any_point_of_a_start_runs_one_agent() {
    let m = machine();
    // Died after recording the turn, before starting it: the repeat starts
    // it, once, however many repeats race.
    let id = m.exec.thread_id("infra", 7, 0);
    let s = snap(&m).await;
    let first = m
        .exec
        .ensure_thread(&s, &spec("infra", 7, 0))
        .await
        .unwrap();
    assert_eq!(first, id);
    wait_for(|| m.starts().len() == 1, "the first agent");
    m.verdict(&id, 0, "ok");
    m.wait_end(&id, 0);
    let mut limbo = m.record(&id);
    limbo.turns.push(TurnRecord::new(1, "2026-06-10T13:00:00Z"));
    std::fs::write(
        m.local_dir().join("runs").join(&id).join("record.json"),
        limbo.to_json(),
    )
    .unwrap();
    // The thread is as its earlier turn left it, so the loop sends again.
    let s = snap(&m).await;
    assert_eq!(s.status(&id), Some(ThreadStatus::Idle));
    let at = ts("2026-06-10T13:00:00Z");
    let (a, b) = tokio::join!(
        m.exec.send_turn(&s, &id, 1, "again", at),
        m.exec.send_turn(&s, &id, 1, "again", at)
    );
    a.unwrap();
    b.unwrap();
    wait_for(|| m.starts().iter().any(|s| s.1 == 1), "turn 1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(m.starts().iter().filter(|s| s.1 == 1).count(), 1);
    // Died after the start, before recording its supervisor: the repeat
    // finds it holding the lock and starts nothing.
    let mut unrecorded = m.record(&id);
    unrecorded.turns[1].supervisor = None;
    std::fs::write(
        m.local_dir().join("runs").join(&id).join("record.json"),
        unrecorded.to_json(),
    )
    .unwrap();
    let s = snap(&m).await;
    assert_eq!(s.status(&id), Some(ThreadStatus::Running));
    m.exec.send_turn(&s, &id, 1, "again", at).await.unwrap();
    assert!(m.record(&id).turns[1].supervisor.is_some());
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(m.starts().iter().filter(|s| s.1 == 1).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_agents_are_counted_and_a_busy_workspace_is_not_reset() {
    let m = machine_with(GitToken::None, 2, None);
    bare_repo_named(m.root(), "web");
    let a = dispatch(&m, "infra", 7, 0).await;
    let b = dispatch(&m, "web", 8, 0).await;
    let s = snap(&m).await;
    let cap = s.capacity.unwrap();
    assert_eq!((cap.running, cap.max), (2, 2));
    // Another thread in infra's workspace while its agent works: refused.
    let err = m
        .exec
        .ensure_thread(&s, &spec("infra", 9, 0))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, PortError::Transient { message } if message.contains("still works")),
        "{err:?}"
    );
    for id in [&a, &b] {
        m.verdict(id, 0, "ok");
        m.wait_end(id, 0);
    }
    assert_eq!(snap(&m).await.capacity.unwrap().running, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_record_is_named_and_counted_as_running() {
    let m = machine();
    let id = m.exec.thread_id("infra", 7, 0);
    let dir = m.local_dir().join("runs").join(&id);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("record.json"), "{\"version\":1,").unwrap();
    let s = snap(&m).await;
    assert_eq!(s.status(&id), None, "no status: no action is taken on it");
    assert_eq!(s.capacity.unwrap().running, 1, "fail closed");
    let err = m
        .exec
        .ensure_thread(&s, &spec("infra", 7, 0))
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("record.json") && text.contains("fix or delete it"),
        "{text}"
    );
    assert!(m.starts().is_empty());
}

#[test]
fn an_unusable_local_dir_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let err = afk_local::os::OsHost::new(afk_local::os::OsSettings {
        dir: file.join("local"),
        reaper: crate::world::reaper(),
        token: GitToken::None,
        git_base: "file:///nowhere".into(),
        env: Vec::new(),
        git_timeout: std::time::Duration::from_secs(5),
    })
    .unwrap_err();
    assert!(
        err.contains(&file.join("local").join("runs").display().to_string()),
        "{err}"
    );
}

/// A full disk: a record write that finds no room fails, and the record
/// on disk is the one before it, whole; with room again the turn goes.
/// Needs to mount a tmpfs (root); elsewhere it says it skipped, and under
/// `CI=true` it fails: a skipped test never passes silently in CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // a skipped test must say so
async fn a_full_disk_loses_no_record() {
    let m = machine();
    let local = m.local_dir();
    let runs = local.join("runs");
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&runs)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        assert!(
            std::env::var_os("CI").is_none(),
            "the full-disk test cannot mount a tmpfs at {} (it needs root); under CI=true a skipped test fails",
            runs.display()
        );
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(runs.clone());
    let id = dispatch(&m, "infra", 7, 0).await;
    m.verdict(&id, 0, "ok");
    m.wait_end(&id, 0);
    let before = m.record(&id);
    let _ = snap(&m).await; // settles the turn's end into the record
    let settled = m.record(&id);
    assert!(settled.turns[0].end.is_some());
    let filler = runs.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    while std::io::Write::write_all(&mut file, &[b'x'; 4096]).is_ok() {}
    drop(file);
    let s = snap(&m).await;
    let err = m
        .exec
        .send_turn(&s, &id, 1, "fix forward", ts("2026-06-10T13:00:00Z"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("recording the turn"), "{err}");
    assert_eq!(
        m.record(&id),
        settled,
        "the record is the one before, whole"
    );
    assert_ne!(before.turns.len(), 0);
    assert!(
        std::fs::read_dir(runs.join(&id))
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().contains(".tmp")),
        "nothing half-written is left"
    );
    assert_eq!(m.starts().len(), 1, "no agent started without its record");
    std::fs::remove_file(&filler).unwrap();
    m.exec
        .send_turn(&s, &id, 1, "fix forward", ts("2026-06-10T13:00:00Z"))
        .await
        .unwrap();
    wait_for(|| m.starts().len() == 2, "the turn, once there is room");
}

/// Tokens minted per repository, as a GitHub App mints them: counted, and
/// each names the repository it was minted for.
struct Minter(std::sync::Mutex<Vec<String>>);

#[async_trait::async_trait]
impl afk_local::os::RepoCredentials for Minter {
    async fn token_for(&self, repo: &str) -> Result<String, String> {
        let mut asked = self.0.lock().unwrap();
        asked.push(repo.to_owned());
        Ok(format!(
            "ghs_minted_{}_{}",
            repo.replace('/', "_"),
            asked.len()
        ))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_app_git_and_the_agent_get_a_token_minted_for_their_repository() {
    use std::os::unix::fs::PermissionsExt;
    let minter = std::sync::Arc::new(Minter(std::sync::Mutex::new(Vec::new())));
    let m = machine_with(GitToken::PerRepo(minter.clone()), 2, None);
    let id = dispatch(&m, "infra", 7, 0).await;
    // One for afk's clone, one for the agent's turn: acme/infra only.
    assert_eq!(*minter.0.lock().unwrap(), ["acme/infra", "acme/infra"]);
    let agent_file = m.local_dir().join("runs").join(&id).join("git-token");
    assert_eq!(
        std::fs::read_to_string(&agent_file).unwrap(),
        "ghs_minted_acme_infra_2"
    );
    let mode = std::fs::metadata(&agent_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // The agent's environment names its file, never a token, and its git
    // credential helper answers with the minted one.
    let (_, _, agent, _) = m.starts()[0].clone();
    let environ = std::fs::read(format!("/proc/{agent}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.contains(&format!("AFK_GIT_TOKEN_FILE={}", agent_file.display())),
        "{environ}"
    );
    assert!(!environ.contains("ghs_minted"), "{environ}");
    assert!(!cmdline(agent).contains("ghs_minted"));
    let ws = m.local_dir().join("workspaces/acme__infra");
    assert!(
        !std::fs::read_to_string(ws.join(".git/config"))
            .unwrap()
            .contains("ghs_")
    );
    // A minter that fails stops the turn before it starts, with its reason.
    struct Refusing;
    #[async_trait::async_trait]
    impl afk_local::os::RepoCredentials for Refusing {
        async fn token_for(&self, repo: &str) -> Result<String, String> {
            Err(format!("the App is not installed on {repo}"))
        }
    }
    let m = machine_with(GitToken::PerRepo(std::sync::Arc::new(Refusing)), 2, None);
    let s = snap(&m).await;
    let err = m
        .exec
        .ensure_thread(&s, &spec("infra", 8, 0))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("not installed on acme/infra"),
        "{err}"
    );
    assert!(m.starts().is_empty());
}
