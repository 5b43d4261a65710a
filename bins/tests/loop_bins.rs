//! `afk-poller` and `afk-watcher` as an operator runs them: real processes,
//! settings from the environment, JSON logs on stdout, exit codes — against
//! the loopback simulator. This file is long because each setting an
//! operator can get wrong has its case, and each binary its run.

use std::process::Command;

use afk_sim::{GITHUB_TOKEN, T3_TOKEN, lock};
use serde_json::Value;

use crate::world::{REPO, World};

use crate::scratch::Scratch;

struct Run {
    code: i32,
    lines: Vec<Value>,
    stdout: String,
}

fn run(bin: &str, env: &[(&str, String)], args: &[&str]) -> Run {
    let path = match bin {
        "afk-poller" => env!("CARGO_BIN_EXE_afk-poller"),
        "afk" => env!("CARGO_BIN_EXE_afk"),
        _ => env!("CARGO_BIN_EXE_afk-watcher"),
    };
    let mut cmd = Command::new(path);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    Run {
        code: out.status.code().unwrap(),
        lines: stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        stdout,
    }
}

fn armed(w: &World) -> Vec<(&'static str, String)> {
    vec![
        ("AFK_KILL_SWITCH", "false".into()),
        ("AFK_ALLOWLIST", "infra".into()),
        ("AFK_GITHUB_API_URL", w.sim.uri()),
        ("AFK_GITHUB_TOKEN", GITHUB_TOKEN.into()),
        ("AFK_GITHUB_OWNER", "acme".into()),
        ("AFK_T3_URL", w.sim.uri()),
        ("AFK_T3_TOKEN", T3_TOKEN.into()),
        (
            "AFK_SLACK_WEBHOOK_URL",
            format!("{}{}", w.sim.uri(), afk_sim::SLACK_PATH),
        ),
    ]
}

fn summary(r: &Run) -> &Value {
    r.lines
        .iter()
        .find(|l| l["action"] == "summary")
        .expect("a summary line")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_defaults_do_nothing_and_succeed() {
    for bin in ["afk-poller", "afk-watcher"] {
        let r = tokio::task::spawn_blocking(move || run(bin, &[], &[]))
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{bin}: {}", r.stdout);
        assert_eq!(summary(&r)["disabled"], true);
        assert_eq!(summary(&r)["api_calls"], 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_and_a_watch_through_the_binaries() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    let env = armed(&w);

    // A dry run decides but writes nothing.
    let e = env.clone();
    let dry = tokio::task::spawn_blocking(move || run("afk-poller", &e, &["--dry-run"]))
        .await
        .unwrap();
    assert_eq!(dry.code, 0, "{}", dry.stdout);
    assert!(dry.lines.iter().any(
        |l| l["action"] == "dispatch" && l["message"].as_str().unwrap().starts_with("dry run")
    ));
    assert!(lock(&w.sim.t3).threads.is_empty());
    assert!(w.progress_comments("infra", 7).is_empty());

    let e = env.clone();
    let r = tokio::task::spawn_blocking(move || run("afk-poller", &e, &[]))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.stdout);
    let dispatch = r
        .lines
        .iter()
        .find(|l| l["action"] == "dispatch")
        .expect("a dispatch line");
    assert_eq!(dispatch["repo"], "infra");
    assert_eq!(dispatch["issue"], 7);
    assert_eq!(dispatch["thread_id"], w.thread("infra", 7, 0).as_str());
    let s = summary(&r);
    assert_eq!(s["dispatched"], 1);
    assert!(s["api_calls"].as_u64().unwrap() > 5);
    assert!(s["duration_ms"].is_u64());
    assert!(s["rate_limit_remaining"].is_u64());
    // GitHub's GraphQL rateLimit, as the batched read reported it.
    assert!(s["graphql_cost"].as_u64().unwrap() >= 1, "{s}");
    assert!(s["graphql_remaining"].as_u64().unwrap() < 5000, "{s}");
    assert!(s["graphql_reset"].is_string(), "{s}");
    assert_eq!(
        w.labels("infra", 7),
        ["agent-in-progress", "ready-for-agent"]
    );

    // CI green: the watcher closes it and rings Slack. The binaries read the
    // real clock, so the agent's push happens in real time too.
    w.clock.set(
        afk_core::Timestamp::from_offset_date_time(time::OffsetDateTime::now_utc()).plus_seconds(5),
    );
    w.push("infra", 7, "abc1234def");
    w.ci("infra", "abc1234def", "green");
    let e = env.clone();
    let r = tokio::task::spawn_blocking(move || run("afk-watcher", &e, &[]))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.lines
            .iter()
            .any(|l| l["action"] == "close_success" && l["issue"] == 7)
    );
    assert_eq!(w.state("infra", 7), "closed");
    assert_eq!(w.slack().len(), 1);
    // No secret in any line.
    for text in [&r.stdout, &dry.stdout] {
        assert!(
            !text.contains(GITHUB_TOKEN)
                && !text.contains(T3_TOKEN)
                && !text.contains("/slack/services"),
            "{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_repository_exits_1_and_bad_settings_exit_2() {
    let w = World::new(&["infra", "web"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    lock(&w.sim.github).broken_repos = vec!["acme/web".into()];
    let mut env = armed(&w);
    env.push(("AFK_ALLOWLIST", "infra,web".into()));
    let e = env.clone();
    let r = tokio::task::spawn_blocking(move || run("afk-poller", &e, &[]))
        .await
        .unwrap();
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(
        summary(&r)["dispatched"],
        1,
        "the healthy repository still dispatched"
    );
    assert!(
        r.lines
            .iter()
            .any(|l| l["level"] == "ERROR" && l["repo"] == "web")
    );

    for (key, value, needle) in [
        (
            "AFK_FIX_FORWARD_MAX_ATTEMPTS",
            "lots",
            "AFK_FIX_FORWARD_MAX_ATTEMPTS: cannot use",
        ),
        // No executor at all: the key to set is named.
        ("AFK_T3_URL", "", "AFK_EXECUTOR is required"),
        (
            "AFK_EXECUTOR",
            "kubernetes",
            "AFK_K8S_POD_TEMPLATE is not set",
        ),
        ("AFK_EXECUTOR", "ssh", "names no executor"),
        ("AFK_GITHUB_TOKEN", "", "a GitHub identity is required"),
        (
            "AFK_ROLLOUT_TARGETS",
            "infra=prod",
            "AFK_ROLLOUT_TARGETS: cannot read",
        ),
        // A token with a line break inside would split its header: a
        // configuration error naming the key, never showing the value.
        (
            "AFK_GITHUB_TOKEN",
            "ghp_abc\nX-Injected: 1",
            "AFK_GITHUB_TOKEN: ",
        ),
        ("AFK_T3_TOKEN", "t3\r\nsecond", "AFK_T3_TOKEN: "),
        // Impossible owners and labels.
        ("AFK_GITHUB_OWNER", "..", "AFK_GITHUB_OWNER"),
        ("AFK_GITHUB_OWNER", "acme/evil", "AFK_GITHUB_OWNER"),
        ("AFK_STOP_LABEL", "..", "AFK_STOP_LABEL"),
        ("AFK_READY_LABEL", ".", "AFK_READY_LABEL"),
    ] {
        let mut e = env.clone();
        e.push((key, value.into()));
        let before = w.requests().await;
        let r = tokio::task::spawn_blocking(move || run("afk-watcher", &e, &[]))
            .await
            .unwrap();
        assert_eq!(r.code, 2, "{key}={value}: {}", r.stdout);
        assert!(r.stdout.contains(needle), "{key}: {}", r.stdout);
        assert!(
            !r.stdout.contains("X-Injected") && !r.stdout.contains("second"),
            "{key}: the value is never shown: {}",
            r.stdout
        );
        assert_eq!(
            w.requests().await,
            before,
            "nothing was done on bad configuration"
        );
    }
}

#[test]
fn help_lists_every_setting_with_its_env_name_and_no_secret() {
    let out = Command::new(env!("CARGO_BIN_EXE_afk-watcher"))
        .arg("--help")
        .env("AFK_GITHUB_TOKEN", "ghp_must_not_show")
        .env("AFK_ALLOWLIST", "secret-repo-list")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    for env_name in [
        "AFK_KILL_SWITCH",
        "AFK_ALLOWLIST",
        "AFK_READY_LABEL",
        "AFK_IN_PROGRESS_LABEL",
        "AFK_READY_FOR_HUMAN_LABEL",
        "AFK_STOP_LABEL",
        "AFK_FIX_FORWARD_MAX_ATTEMPTS",
        "AFK_FIX_FORWARD_MAX_SECONDS",
        "AFK_PREPUSH_MAX_SECONDS",
        "AFK_CI_START_MAX_SECONDS",
        "AFK_GITHUB_API_URL",
        "AFK_GITHUB_TOKEN_FILE",
        "AFK_GITHUB_APP_ID",
        "AFK_GITHUB_APP_PRIVATE_KEY_FILE",
        "AFK_GITHUB_APP_INSTALLATION_ID",
        "AFK_GITHUB_TOKEN_CACHE",
        "AFK_GITHUB_OWNER",
        "AFK_TRUSTED_BOTS",
        "AFK_T3_URL",
        "AFK_T3_TOKEN_FILE",
        "AFK_T3_WEB_URL",
        "AFK_T3_MODEL",
        "AFK_T3_INSTANCE",
        "AFK_T3_WORKSPACE_BASE",
        "AFK_WOODPECKER_URL",
        "AFK_WOODPECKER_TOKEN_FILE",
        "AFK_ROLLOUT_TARGETS",
        "AFK_SLACK_WEBHOOK_URL_FILE",
        "AFK_NTFY_URL",
        "AFK_NTFY_TOPIC",
        "AFK_NTFY_TOKEN_FILE",
        "AFK_REQUEST_TIMEOUT_SECONDS",
        "AFK_TICK_DEADLINE_SECONDS",
        "AFK_LOG_FORMAT",
    ] {
        assert!(
            help.contains(&format!("[env: {env_name}")),
            "--help lacks {env_name}"
        );
    }
    for default in [
        "https://api.github.com",
        "claude-sonnet-4-6",
        "claudeAgent",
        "/data",
        "[default: 30]",
        "[default: 240]",
        "[default: json]",
    ] {
        assert!(help.contains(default), "--help lacks the default {default}");
    }
    assert!(!help.contains("ghp_must_not_show") && !help.contains("secret-repo-list"));
    let _ = REPO;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn afk_demo_runs_on_simulated_services_and_says_so() {
    // The demo's own build links the simulated world; every other build
    // (these tests' and the image's) does not, so the script is run here as
    // `afk demo` runs it, and `.ci/run` runs the README's command itself.
    let mut out = Vec::new();
    afk_demo::demo::run(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("afk demo: the AFK loop against SIMULATED services."));
    for needle in [
        "dispatch         infra#7",
        "close_success    infra#7",
        "[DONE] infra#7 landed",
        "fix_forward      web#12",
        "[FROZEN] web#12 frozen",
        "mallory has read permission",
        "dispatch         web#13",
        "requests made by that tick: 0",
        "the progress comment is written by afk-demo[bot]",
        "acme/ops [contents:write]",
        ", owned by its Job, given to the agent as AFK_GIT_TOKEN",
        "tokens minted by the watch tick (a new process on a CronJob): 0",
    ] {
        assert!(text.contains(needle), "the demo lacks {needle:?}:\n{text}");
    }
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("demo: 3 dispatched, 1 closed, 1 frozen for a human, 1 stopped, 2 refused as untrusted, 3 doorbells"), "{last}");
}

#[test]
fn afk_demo_in_a_build_without_the_demo_says_how_to_run_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_afk"))
        .arg("demo")
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cargo run -q -p bins --features demo --bin afk -- demo"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_mounted_secret_switches_an_optional_notifier_off() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    let dir = Scratch::new("empty-secret");
    let empty = dir.join("slack-webhook-url");
    std::fs::write(&empty, "").unwrap();
    let mut env: Vec<(&str, String)> = armed(&w)
        .into_iter()
        .filter(|(k, _)| *k != "AFK_SLACK_WEBHOOK_URL")
        .collect();
    env.push(("AFK_SLACK_WEBHOOK_URL_FILE", empty.display().to_string()));
    let e = env.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || run("afk-poller", &e, &[]))
            .await
            .unwrap()
            .code,
        0
    );
    w.clock.set(
        afk_core::Timestamp::from_offset_date_time(time::OffsetDateTime::now_utc()).plus_seconds(5),
    );
    w.push("infra", 7, "abc1234def");
    w.ci("infra", "abc1234def", "green");
    let r = tokio::task::spawn_blocking(move || run("afk-watcher", &env, &[]))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.lines
            .iter()
            .any(|l| l["action"] == "ring" && l["message"].as_str().unwrap().ends_with("via log")),
        "{}",
        r.stdout
    );
    assert!(w.slack().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn afk_runs_lists_and_shows_the_runs_in_flight() {
    let w = World::new(&["infra", "web"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    let env = armed(&w);
    let e = env.clone();
    assert_eq!(
        tokio::task::spawn_blocking(move || run("afk-poller", &e, &[]))
            .await
            .unwrap()
            .code,
        0
    );
    // A lock without a record is reported, not listed.
    lock(&w.sim.github).add_issue(
        "acme/infra",
        9,
        "Locked by hand",
        "",
        &["agent-in-progress"],
    );

    let afk = |args: Vec<&'static str>, env: Vec<(&'static str, String)>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_afk"));
        cmd.env_clear().args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let e = env.clone();
    let (code, json, err) = tokio::task::spawn_blocking(move || afk(vec!["runs", "--json"], e))
        .await
        .unwrap();
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["runs"].as_array().unwrap().len(), 1);
    assert_eq!(v["runs"][0]["run"], "infra#7");
    assert_eq!(v["runs"][0]["phase"], "agent working, nothing pushed");
    assert_eq!(v["runs"][0]["thread_id"], w.thread("infra", 7, 0).as_str());
    assert_eq!(v["problems"][0]["issue"], 9);

    let e = env.clone();
    let (code, table, _) = tokio::task::spawn_blocking(move || afk(vec!["runs"], e))
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert!(table.starts_with("RUN "), "{table}");
    assert!(
        table.contains("infra#7") && table.contains("agent working, nothing pushed"),
        "{table}"
    );
    assert!(
        table.contains("! infra: carries the in-progress label but has no progress comment"),
        "{table}"
    );

    let e = env.clone();
    let (code, shown, _) =
        tokio::task::spawn_blocking(move || afk(vec!["runs", "show", "infra#7"], e))
            .await
            .unwrap();
    assert_eq!(code, 0);
    assert!(
        shown.contains("\"thread_id\": ") && shown.contains("- [~] Worktree created"),
        "{shown}"
    );
    let e = env.clone();
    let (code, _, err) =
        tokio::task::spawn_blocking(move || afk(vec!["runs", "show", "infra#99"], e))
            .await
            .unwrap();
    assert_eq!(code, 2);
    assert!(err.contains("no run in flight named \"infra#99\""), "{err}");
    // Read-only: nothing but GETs and the trust query's POST were sent by these commands.
    let writes_before = w.writes().await;
    let e = env.clone();
    tokio::task::spawn_blocking(move || afk(vec!["runs"], e))
        .await
        .unwrap();
    assert_eq!(w.writes().await, writes_before);
}

/// `afk stop` and `afk halt` apply the stop label and run the watcher's own
/// stopping code at once, with only the CronJobs' settings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn afk_stop_and_afk_halt_stop_runs_at_once() {
    let w = World::new(&["infra", "web"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    w.ready("web", 3, "", "alice");
    let mut dispatched = w.poll().await.dispatched;
    dispatched.sort();
    assert_eq!(dispatched, ["infra#7", "web#3"]);
    for (repo, n) in [("infra", 7), ("web", 3)] {
        let thread = w.thread(repo, n, 0);
        lock(&w.sim.t3).run_turn(&thread, &w.now());
    }
    let mut env = armed(&w);
    env.retain(|(k, _)| *k != "AFK_ALLOWLIST");
    env.push(("AFK_ALLOWLIST", "infra,web".into()));

    // A name that is not a run is bad input; one not in flight fails.
    let e = env.clone();
    let bad = tokio::task::spawn_blocking(move || run("afk", &e, &["stop", "infra-7"]))
        .await
        .unwrap();
    assert_eq!(bad.code, 2, "{}", bad.stdout);
    let e = env.clone();
    let missing = tokio::task::spawn_blocking(move || run("afk", &e, &["stop", "infra#99"]))
        .await
        .unwrap();
    assert_eq!(missing.code, 1, "{}", missing.stdout);
    assert!(
        missing.stdout.contains("no run in flight"),
        "{}",
        missing.stdout
    );

    let e = env.clone();
    let one = tokio::task::spawn_blocking(move || {
        run("afk", &e, &["stop", "infra#7", "--by", "ops-oncall"])
    })
    .await
    .unwrap();
    assert_eq!(one.code, 0, "{}", one.stdout);
    let infra = w.thread("infra", 7, 0);
    assert_eq!(lock(&w.sim.t3).threads[&infra].session["status"], "stopped");
    assert_eq!(w.labels("infra", 7), ["ready-for-human"]);
    assert!(w.slack()[0].contains("[STOPPED] infra#7 stopped by ops-oncall"));
    // web#3 still runs.
    let web = w.thread("web", 3, 0);
    assert_eq!(lock(&w.sim.t3).threads[&web].session["status"], "running");

    let e = env.clone();
    let all = tokio::task::spawn_blocking(move || run("afk", &e, &["halt", "--by", "ops-oncall"]))
        .await
        .unwrap();
    assert_eq!(all.code, 0, "{}", all.stdout);
    assert!(all.stdout.contains("AFK_KILL_SWITCH"), "{}", all.stdout);
    assert_eq!(lock(&w.sim.t3).threads[&web].session["status"], "stopped");
    assert_eq!(w.labels("web", 3), ["ready-for-human"]);
    assert_eq!(w.slack().len(), 2, "one doorbell per stopped run");
}

/// One slow repository among 30: its batch times out, is asked again in
/// halves, and every other repository is still read and dispatched before
/// the deadline; the slow one fails the tick (exit 1), never silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_repository_fails_alone_and_the_deadline_holds() {
    let (w, names) = World::fleet(30).await.unwrap();
    for n in &names {
        w.ready(n, 1, "", "alice");
    }
    lock(&w.sim.github).slow_repos =
        vec![("acme/svc005".into(), std::time::Duration::from_secs(60))];
    let mut env = armed(&w);
    env.retain(|(k, _)| *k != "AFK_ALLOWLIST");
    env.push(("AFK_ALLOWLIST", names.join(",")));
    env.push(("AFK_TICK_DEADLINE_SECONDS", "8".into()));
    let started = std::time::Instant::now();
    let r = tokio::task::spawn_blocking(move || run("afk-poller", &env, &[]))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(summary(&r)["dispatched"], 29, "{}", r.stdout);
    let failed: Vec<&Value> = r.lines.iter().filter(|l| l["level"] == "ERROR").collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0]["repo"], "svc005", "{failed:#?}");
    // The deadline held (with room for process start and the dispatches'
    // writes, which are not cut short once started).
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
}

/// The local executor's settings, as an operator gets them wrong: each is a
/// configuration error naming its key (exit 2, nothing done), and a
/// credential in a URL is never shown. An unknown executor is an error even
/// while the loop is disabled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_executor_s_bad_settings_are_named() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    let tmp = Scratch::new("local-settings");
    let a_file = tmp.join("a-file");
    std::fs::write(&a_file, "x").unwrap();
    let mut env = armed(&w);
    env.retain(|(k, _)| !k.starts_with("AFK_T3"));
    env.extend([
        ("AFK_EXECUTOR", "local".to_owned()),
        ("AFK_LOCAL_AGENT", "sh".to_owned()),
        ("AFK_LOCAL_DIR", tmp.join("local").display().to_string()),
        ("HOME", tmp.display().to_string()),
    ]);
    let cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![("AFK_LOCAL_AGENT", "no-such-agent-cli --fast".into())],
            "AFK_LOCAL_AGENT=\"no-such-agent-cli --fast\": cannot find the agent program",
        ),
        (
            vec![
                ("AFK_LOCAL_AGENT", "claude".into()),
                ("CLAUDE_BIN", "/nonexistent/claude".into()),
            ],
            "set CLAUDE_BIN",
        ),
        (
            vec![("AFK_LOCAL_AGENT", "'unclosed".into())],
            "AFK_LOCAL_AGENT \"'unclosed\": a quote is not closed",
        ),
        (
            vec![("AFK_LOCAL_DIR", a_file.join("local").display().to_string())],
            "AFK_LOCAL_DIR=",
        ),
        (
            vec![("AFK_LOCAL_MAX_AGENTS", "0".into())],
            "AFK_LOCAL_MAX_AGENTS=\"0\"",
        ),
        (
            vec![(
                "AFK_GIT_URL",
                "https://x-access-token:hunter2@github.com".into(),
            )],
            "AFK_GIT_URL: it must not hold a user or a password",
        ),
        (
            vec![("AFK_GIT_URL", "github.com".into())],
            "AFK_GIT_URL: expected a URL",
        ),
    ];
    for (extra, needle) in cases {
        let mut e = env.clone();
        e.retain(|(k, _)| !extra.iter().any(|(x, _)| x == k));
        e.extend(extra.iter().cloned());
        let before = w.requests().await;
        let r = tokio::task::spawn_blocking(move || run("afk-poller", &e, &[]))
            .await
            .unwrap();
        assert_eq!(r.code, 2, "{extra:?}: {}", r.stdout);
        let said: Vec<&str> = r
            .lines
            .iter()
            .filter_map(|l| l["message"].as_str())
            .collect();
        assert!(
            said.iter().any(|m| m.contains(needle)),
            "{extra:?}: {said:?}"
        );
        assert!(!r.stdout.contains("hunter2"), "{}", r.stdout);
        assert_eq!(w.requests().await, before, "nothing was done");
    }
    // Disabled, an executor that does not exist is still an error.
    let e = vec![("AFK_EXECUTOR", "k8s".to_owned())];
    let r = tokio::task::spawn_blocking(move || run("afk-watcher", &e, &[]))
        .await
        .unwrap();
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stdout.contains("names no executor"), "{}", r.stdout);
    // `afk loop` checks the same settings before its first tick.
    let mut e = env.clone();
    e.push(("AFK_LOCAL_MAX_AGENTS", "lots".into()));
    let r = tokio::task::spawn_blocking(move || run("afk", &e, &["loop"]))
        .await
        .unwrap();
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert!(r.stdout.contains("AFK_LOCAL_MAX_AGENTS"), "{}", r.stdout);
}

/// An RSA key pair made by openssl: (private PEM path, public PEM).
fn app_key(dir: &std::path::Path) -> (std::path::PathBuf, Vec<u8>) {
    let key = dir.join("app.pem");
    let ok = |c: &mut Command| assert!(c.status().unwrap().success());
    ok(Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key)
        .arg("2048")
        .stderr(std::process::Stdio::null()));
    let public = Command::new("openssl")
        .args(["rsa", "-pubout", "-in"])
        .arg(&key)
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap()
        .stdout;
    (key, public)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_acting_as_a_github_app_keeps_its_token_across_ticks() {
    use afk_sim::github::app::{App, Installation, default_permissions};
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = app_key(dir.path());
    {
        let mut app = App::new(31, "afk-sim", &public).unwrap();
        app.installations.push(Installation {
            id: 5,
            account: "acme".into(),
            repos: None,
            permissions: default_permissions(),
            suspended: false,
        });
        lock(&w.sim.github).enable_app(app);
    }
    let cache = dir.path().join("github-token.json");
    let mut env: Vec<(&str, String)> = armed(&w)
        .into_iter()
        .filter(|(k, _)| *k != "AFK_GITHUB_TOKEN")
        .collect();
    env.push(("AFK_GITHUB_APP_ID", "31".into()));
    env.push(("AFK_GITHUB_APP_PRIVATE_KEY_FILE", key.display().to_string()));
    env.push(("AFK_GITHUB_TOKEN_CACHE", cache.display().to_string()));
    let minted = || lock(&w.sim.github).app.as_ref().unwrap().tokens.len();
    let e = env.clone();
    let r = tokio::task::spawn_blocking(move || run("afk-poller", &e, &[]))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(summary(&r)["dispatched"], 1, "{}", r.stdout);
    assert_eq!(summary(&r)["github_budget"], "app");
    assert_eq!(minted(), 1);
    // The progress comment is the App's bot's, and the next tick (a new
    // process) finds it as afk's own with the cached token: nothing minted.
    let comments = lock(&w.sim.github).issue("acme/infra", 7).comments.clone();
    assert!(
        comments.iter().any(|c| c.user == "afk-sim[bot]"),
        "{comments:?}"
    );
    let e = env.clone();
    let r = tokio::task::spawn_blocking(move || run("afk-watcher", &e, &[]))
        .await
        .unwrap();
    assert!(r.code == 0, "{}", r.stdout);
    assert_eq!(minted(), 1, "the watcher reused the cached token");
    let text = std::fs::read_to_string(&key).unwrap();
    let middle = &text[40..80];
    assert!(!r.stdout.contains(middle));

    // Bad App settings: exit 2, the key named, the material never shown.
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(
        &garbage,
        "-----BEGIN RSA PRIVATE KEY-----\nS3CR3TMATERIAL\n-----END RSA PRIVATE KEY-----\n",
    )
    .unwrap();
    for (key, value, needle) in [
        (
            "AFK_GITHUB_TOKEN",
            GITHUB_TOKEN.to_owned(),
            "AFK_GITHUB_APP_ID",
        ),
        (
            "AFK_GITHUB_APP_ID",
            "Iv1.8a61f9b3a7aba766".into(),
            "is not a positive number (the App ID",
        ),
        (
            "AFK_GITHUB_APP_PRIVATE_KEY_FILE",
            garbage.display().to_string(),
            "holds no RSA private key",
        ),
        (
            "AFK_GITHUB_APP_PRIVATE_KEY_FILE",
            "/nonexistent/app.pem".into(),
            "/nonexistent/app.pem: no such file",
        ),
        (
            "AFK_GITHUB_APP_INSTALLATION_ID",
            "-1".into(),
            "AFK_GITHUB_APP_INSTALLATION_ID",
        ),
    ] {
        let mut e = env.clone();
        e.push((key, value.clone()));
        let r = tokio::task::spawn_blocking(move || run("afk-poller", &e, &[]))
            .await
            .unwrap();
        assert_eq!(r.code, 2, "{key}={value}: {}", r.stdout);
        assert!(r.stdout.contains(needle), "{key}: {}", r.stdout);
        assert!(
            !r.stdout.contains("S3CR3T") && !r.stdout.contains(middle),
            "{}",
            r.stdout
        );
    }
}

/// `afk` with exactly `env`, its stdout and stderr apart.
fn afk(env: &[(&str, String)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_afk"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn afk_halt_reads_the_cronjobs_settings_and_tells_the_truth() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    assert_eq!(w.poll().await.dispatched, ["infra#7"]);
    let thread = w.thread("infra", 7, 0);
    lock(&w.sim.t3).run_turn(&thread, &w.now());
    let secrets = vec![
        ("AFK_GITHUB_TOKEN", GITHUB_TOKEN.to_owned()),
        ("AFK_T3_TOKEN", T3_TOKEN.to_owned()),
    ];
    let halted = "Every run in flight was told to stop";

    // A fresh shell: no allowlist. Nothing is done, and nothing claims it was.
    let s = secrets.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || afk(&s, &["halt"]))
        .await
        .unwrap();
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("afk halt needs AFK_ALLOWLIST") && err.contains("--env-file"),
        "{err}"
    );
    assert!(!out.contains(halted), "{out}");
    let s = secrets.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || afk(&s, &["runs"]))
        .await
        .unwrap();
    assert_eq!(code, 2, "{err}");

    // The CronJobs' ConfigMap, exported as an env file: a rollout stage an
    // operator's laptop cannot reach, a typo'd key.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("afk-config.env");
    std::fs::write(
        &file,
        format!(
            "# kubectl -n afk get configmap afk-config\nAFK_KILL_SWITCH=false\nAFK_ALLOWLIST=infra\nAFK_GITHUB_API_URL={0}\nAFK_GITHUB_OWNER=acme\nAFK_T3_URL={0}\nAFK_ROLLOUT_TARGETS=infra=acme/web\nAFK_PREPUSH_MAX_SECOND=600\nTZ=UTC\n",
            w.sim.uri()
        ),
    )
    .unwrap();
    let f = file.display().to_string();
    let s = secrets.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || afk(&s, &["runs", "--env-file", &f]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("infra#7"), "{out}");
    assert!(
        err.contains("AFK_PREPUSH_MAX_SECOND is not a setting of afk runs (did you mean AFK_PREPUSH_MAX_SECONDS?)"),
        "{err}"
    );
    assert!(!err.contains("TZ"), "only afk's keys are checked: {err}");

    // The executor unreachable: the stop label goes on, the banner does not
    // claim the stop, the exit code says it failed.
    let mut s = secrets.clone();
    s.push(("AFK_T3_URL", "http://127.0.0.1:9".to_owned()));
    let f = file.display().to_string();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || afk(&s, &["halt", "--env-file", &f]))
            .await
            .unwrap();
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        !out.contains(halted) && out.contains("NOT every run"),
        "{out}"
    );
    assert!(
        w.labels("infra", 7).contains(&"afk-stop".to_owned()),
        "{:?}",
        w.labels("infra", 7)
    );

    // With the executor there: stopped, and said so.
    let s = secrets.clone();
    let f = file.display().to_string();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || afk(&s, &["halt", "--env-file", &f]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(halted), "{out}");
    assert_eq!(
        lock(&w.sim.t3).threads[&thread].session["status"],
        "stopped"
    );

    // A secret in the file is refused, its value never shown; a bad line is
    // named by number.
    std::fs::write(
        &file,
        "AFK_ALLOWLIST=infra\nAFK_GITHUB_TOKEN=ghp_in_a_file\n",
    )
    .unwrap();
    for (text, says) in [
        (
            "AFK_ALLOWLIST=infra\nAFK_GITHUB_TOKEN=ghp_in_a_file\n",
            "AFK_GITHUB_TOKEN is a secret",
        ),
        ("AFK_ALLOWLIST=infra\nnot a line\n", "line 2"),
    ] {
        std::fs::write(&file, text).unwrap();
        let s = secrets.clone();
        let f = file.display().to_string();
        let (code, out, err) =
            tokio::task::spawn_blocking(move || afk(&s, &["stop", "infra#7", "--env-file", &f]))
                .await
                .unwrap();
        assert_eq!(code, 2, "{out}{err}");
        assert!(err.contains(says), "{err}");
        assert!(!err.contains("ghp_in_a_file") && !out.contains("ghp_in_a_file"));
    }
}

#[test]
fn an_unknown_setting_is_warned_about_with_the_nearest_known_one() {
    let env = vec![
        ("AFK_PREPUSH_MAX_SECOND", "600".to_owned()),
        ("AFK_ALOWLIST", "infra".to_owned()),
        ("AFK_GATEWAY_LISTEN", "127.0.0.1:0".to_owned()),
        ("AFK_THREAD_ID", "x".to_owned()),
    ];
    let r = run("afk-poller", &env, &[]);
    assert_eq!(
        r.code, 0,
        "the shipped defaults still do nothing: {}",
        r.stdout
    );
    let warned: Vec<&str> = r
        .lines
        .iter()
        .filter(|l| l["level"] == "WARN" && l["action"] == "config")
        .filter_map(|l| l["message"].as_str())
        .collect();
    assert_eq!(
        warned,
        [
            "AFK_ALOWLIST is set but is not a setting of afk (did you mean AFK_ALLOWLIST?); it is ignored",
            "AFK_PREPUSH_MAX_SECOND is set but is not a setting of afk (did you mean AFK_PREPUSH_MAX_SECONDS?); it is ignored",
        ]
    );
}

/// A one-request HTTP server on loopback: what it was sent (request line
/// and body), answered 200.
fn one_request_server() -> (String, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .unwrap();
        format!(
            "{}\n{}",
            head.lines().next().unwrap_or(""),
            String::from_utf8_lossy(&body)
        )
    });
    (url, handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tick_writes_its_metrics_and_pushes_them() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("afk.prom");
    let (gateway, received) = one_request_server();
    let mut env = armed(&w);
    env.push(("AFK_METRICS_FILE", file.display().to_string()));
    env.push(("AFK_METRICS_PUSH_URL", gateway));
    let e = env.clone();
    let r = tokio::task::spawn_blocking(move || run("afk-poller", &e, &[]))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.stdout);
    let pushed = received.join().unwrap();
    assert!(
        pushed.starts_with("PUT /metrics/job/afk/tick/poll "),
        "{pushed}"
    );
    assert!(pushed.contains("afk_dispatches_total 1"), "{pushed}");
    env.retain(|(k, _)| *k != "AFK_METRICS_PUSH_URL");
    let r = tokio::task::spawn_blocking(move || run("afk-watcher", &env, &[]))
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{}", r.stdout);
    let text = std::fs::read_to_string(&file).unwrap();
    for line in [
        "afk_ticks_total{tick=\"poll\",result=\"ok\"} 1",
        "afk_ticks_total{tick=\"watch\",result=\"ok\"} 1",
        "afk_dispatches_total 1",
        "afk_runs{action=\"wait\"} 1",
        "# TYPE afk_tick_duration_seconds gauge",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
    }
}

#[test]
fn help_and_the_runbook_name_afk_log_and_every_log_action() {
    let help = Command::new(env!("CARGO_BIN_EXE_afk-watcher"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(help.stdout).unwrap().replace('\n', " ");
    let runbook = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )
    .unwrap();
    use afk_loop::ReportAction as A;
    let actions = [
        A::Start,
        A::Disabled,
        A::Paused,
        A::Deadline,
        A::Read,
        A::Untrusted,
        A::Skip,
        A::Dispatch,
        A::NoRecord,
        A::Run,
        A::Wait,
        A::CloseSuccess,
        A::FixForward,
        A::FreezeEscalate,
        A::EscalatePrepush,
        A::Ring,
        A::Stop,
        A::RateFloor,
        A::Finish,
        A::OpenPullRequest,
        A::Merge,
        A::HandOverForReview,
    ];
    let mut names: Vec<&str> = actions.iter().map(|a| a.as_str()).collect();
    names.extend(["summary", "config", "token", "clock", "metrics", "health"]);
    assert!(help.contains("AFK_LOG sets") && runbook.contains("`AFK_LOG` sets"));
    for name in names {
        assert!(
            help.contains(&format!(" {name},")) || help.contains(&format!(" {name} ")),
            "--help lacks {name}"
        );
        assert!(
            runbook.contains(&format!("`{name}`")),
            "the runbook lacks {name}"
        );
    }
}

/// A repository dropped from the allowlist keeps its run in flight watched
/// to its end (AFK_STATE_FILE remembers where runs are), `afk runs` shows
/// it, and nothing new starts there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repository_dropped_from_the_allowlist_keeps_its_run_watched_to_its_end() {
    let w = World::new(&["infra", "web"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let mut env = armed(&w);
    env.push(("AFK_STATE_FILE", state.display().to_string()));
    let e = env.clone();
    let r = tokio::task::spawn_blocking(move || run("afk-poller", &e, &[]))
        .await
        .unwrap();
    assert_eq!(summary(&r)["dispatched"], 1, "{}", r.stdout);
    assert!(std::fs::read_to_string(&state).unwrap().contains("infra"));

    // The operator de-enrols infra (web stays), then empties the allowlist.
    for allowlist in ["web", ""] {
        let mut e = env.clone();
        e.retain(|(k, _)| *k != "AFK_ALLOWLIST");
        e.push(("AFK_ALLOWLIST", allowlist.into()));
        let r = tokio::task::spawn_blocking(move || run("afk-watcher", &e, &[]))
            .await
            .unwrap();
        assert_eq!(r.code, 0, "{}", r.stdout);
        assert!(
            r.lines
                .iter()
                .any(|l| l["repo"] == "infra" && l["issue"] == 7 && l["action"] == "wait"),
            "allowlist {allowlist:?}: the run is still watched: {}",
            r.stdout
        );
        let mut e2 = env.clone();
        e2.retain(|(k, _)| *k != "AFK_ALLOWLIST");
        e2.push(("AFK_ALLOWLIST", allowlist.into()));
        let (code, out, err) = tokio::task::spawn_blocking(move || afk(&e2, &["runs"]))
            .await
            .unwrap();
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("infra#7"), "afk runs shows it: {out}");
    }
    // Nothing new starts in a repository that is winding down.
    w.ready("infra", 8, "", "alice");
    let mut e = env.clone();
    e.retain(|(k, _)| *k != "AFK_ALLOWLIST");
    e.push(("AFK_ALLOWLIST", "web".into()));
    let r = tokio::task::spawn_blocking(move || run("afk-poller", &e, &[]))
        .await
        .unwrap();
    assert_eq!(summary(&r)["dispatched"], 0, "{}", r.stdout);

    // It lands: closed, and forgotten.
    w.clock.set(
        afk_core::Timestamp::from_offset_date_time(time::OffsetDateTime::now_utc()).plus_seconds(5),
    );
    w.push("infra", 7, "abc1234def");
    w.ci("infra", "abc1234def", "green");
    let mut e = env.clone();
    e.retain(|(k, _)| *k != "AFK_ALLOWLIST");
    e.push(("AFK_ALLOWLIST", "".into()));
    let r = tokio::task::spawn_blocking(move || run("afk-watcher", &e, &[]))
        .await
        .unwrap();
    assert!(
        r.lines
            .iter()
            .any(|l| l["action"] == "close_success" && l["issue"] == 7),
        "{}",
        r.stdout
    );
    assert_eq!(w.state("infra", 7), "closed");
    assert!(!std::fs::read_to_string(&state).unwrap().contains("infra"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn afk_setup_labels_creates_them_on_every_enrolled_repository() {
    let w = World::new(&["infra", "web"], &[]).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("afk-config.env");
    std::fs::write(
        &file,
        format!(
            "AFK_ALLOWLIST=infra,web\nAFK_GITHUB_OWNER=acme\nAFK_GITHUB_API_URL={}\nAFK_STOP_LABEL=halt-agent\n",
            w.sim.uri()
        ),
    )
    .unwrap();
    let secrets = vec![("AFK_GITHUB_TOKEN", GITHUB_TOKEN.to_owned())];
    let f = file.display().to_string();
    let s = secrets.clone();
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        afk(&s, &["setup", "labels", "--check", "--env-file", &f])
    })
    .await
    .unwrap();
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(out.matches("MISSING").count(), 10, "{out}");
    assert!(
        out.contains("web: halt-agent: MISSING"),
        "the settings' names: {out}"
    );
    let f = file.display().to_string();
    let s = secrets.clone();
    let (code, out, err) =
        tokio::task::spawn_blocking(move || afk(&s, &["setup", "labels", "--env-file", &f]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.matches(": created").count(), 10, "{out}");
    assert!(
        lock(&w.sim.github).repos["acme/infra"]
            .labels
            .contains_key("halt-agent")
    );
    // Without an allowlist: exit 2, nothing asked of GitHub.
    let (code, _, err) = tokio::task::spawn_blocking(move || afk(&secrets, &["setup", "labels"]))
        .await
        .unwrap();
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("afk setup labels needs AFK_ALLOWLIST"),
        "{err}"
    );
}

/// The loop's own health rings a doorbell once per cause (AFK_STATE_FILE
/// remembers what rang), a quiet one when it recovers, and none at all
/// without a state file (a warning line instead: it would ring every tick).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_rings_once_per_cause_and_once_when_it_recovers() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let health = |w: &World, what: &str| {
        w.slack()
            .iter()
            .filter(|m| m.contains(&format!("[AFK-HEALTH] {what}")))
            .count()
    };
    let tick = |bin: &'static str, env: Vec<(&'static str, String)>| {
        tokio::task::spawn_blocking(move || run(bin, &env, &[]))
    };
    let mut env = armed(&w);
    env.push(("AFK_STATE_FILE", state.display().to_string()));
    // A refused token, without a state file: warned at every tick, never rung.
    let mut refused = env.clone();
    refused.retain(|(k, _)| !matches!(*k, "AFK_GITHUB_TOKEN" | "AFK_STATE_FILE"));
    refused.push(("AFK_GITHUB_TOKEN", "revoked-token".into()));
    let mut unreadable = refused.clone();
    unreadable.retain(|(k, _)| *k != "AFK_GITHUB_TOKEN");
    let missing = dir.path().join("no-such-token");
    unreadable.push(("AFK_GITHUB_TOKEN_FILE", missing.display().to_string()));
    for env in [refused.clone(), unreadable] {
        let r = tick("afk-poller", env).await.unwrap();
        assert_eq!(r.code, 1, "{}", r.stdout);
        let warned = r
            .lines
            .iter()
            .find(|l| l["action"] == "health" && l["cause"] == "credentials")
            .unwrap_or_else(|| panic!("no health line in {}", r.stdout));
        assert!(
            warned["message"]
                .as_str()
                .unwrap()
                .contains("AFK_STATE_FILE")
        );
        assert!(!r.stdout.contains("revoked-token"), "a secret in the logs");
    }
    assert_eq!(health(&w, "credentials failing"), 0);
    // With the state file: one doorbell for three refused ticks of either kind.
    refused.push(("AFK_STATE_FILE", state.display().to_string()));
    for bin in ["afk-poller", "afk-watcher", "afk-poller"] {
        let r = tick(bin, refused.clone()).await.unwrap();
        assert_eq!(r.code, 1, "{}", r.stdout);
    }
    assert_eq!(health(&w, "credentials failing"), 1, "{:?}", w.slack());
    let bell = w
        .slack()
        .into_iter()
        .find(|m| m.contains("AFK-HEALTH"))
        .unwrap();
    assert!(bell.contains("Bad credentials"), "{bell}");
    assert!(!bell.contains("revoked-token"), "a secret in a doorbell");
    // The token works again: one quiet recovery, then silence.
    for _ in 0..2 {
        let r = tick("afk-watcher", env.clone()).await.unwrap();
        assert_eq!(r.code, 0, "{}", r.stdout);
    }
    assert_eq!(health(&w, "credentials recovered"), 1, "{:?}", w.slack());
    // Armed with nothing enrolled: a disabled tick, and one doorbell.
    let mut empty = env.clone();
    empty.retain(|(k, _)| *k != "AFK_ALLOWLIST");
    empty.push(("AFK_ALLOWLIST", String::new()));
    for _ in 0..3 {
        let r = tick("afk-poller", empty.clone()).await.unwrap();
        assert_eq!(r.code, 0, "{}", r.stdout);
    }
    assert_eq!(health(&w, "nothing_enrolled failing"), 1);
    // The executor unreachable: it rings on the third tick in a row.
    let mut dead = env.clone();
    dead.retain(|(k, _)| *k != "AFK_T3_URL");
    dead.push(("AFK_T3_URL", "http://127.0.0.1:9".into()));
    for n in 1..=4 {
        let r = tick("afk-poller", dead.clone()).await.unwrap();
        assert_eq!(r.code, 1, "{}", r.stdout);
        let rung = health(&w, "executor failing");
        assert_eq!(rung, usize::from(n >= 3), "after tick {n}");
    }
    let text = std::fs::read_to_string(&state).unwrap();
    let kept: Value = serde_json::from_str(&text).unwrap();
    assert!(
        kept["health"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["cause"] == "executor" && c["rung"] == true),
        "{text}"
    );
}
