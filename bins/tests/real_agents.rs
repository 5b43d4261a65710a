//! `afk run` with the **real** agent CLIs: Claude Code and opencode, the
//! pinned versions `.ci/run` installs from npm into
//! `fixtures/real-cli/node_modules` (`AFK_REAL_CLI_DIR` names another
//! `.bin` directory). They run offline against the scripted Anthropic
//! Messages API of `afk_sim::anthropic`, and do the work through their own
//! tools: the Write tool writes `FINAL_REPORT.md`, the Bash tool runs
//! `afk finding add`, a Bash `sleep` shows whether stopping stops the tree.
//!
//! Without the CLIs installed these tests say so and pass, except under
//! `CI=true`, where a missing CLI fails them: CI must run them.
//!
//! This file is long because each test drives two real third-party CLIs
//! through whole runs (a model server, homes and settings, process trees
//! watched in `/proc`, an SSE console), and that set-up cannot be shorter.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::campaign::{last_session, statuses, text};
use crate::processes::wait_until;

use crate::scratch::Scratch;

const AFK: &str = env!("CARGO_BIN_EXE_afk");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The real CLI `name`, or `None` (outside CI) when it is not installed.
#[allow(clippy::print_stderr)] // a skipped test must say so
pub(crate) fn cli(name: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("AFK_REAL_CLI_DIR").map_or_else(
        || repo().join("fixtures/real-cli/node_modules/.bin"),
        PathBuf::from,
    );
    let bin = dir.join(name);
    if bin.exists() {
        return Some(bin);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "the real {name} CLI is not installed at {}: run `npm install --prefix fixtures/real-cli --no-package-lock`",
        bin.display()
    );
    eprintln!(
        "skipped: the real {name} CLI is not installed (npm install --prefix fixtures/real-cli --no-package-lock)"
    );
    None
}

fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("real-{name}"))
}

/// A campaign with the sample brief and config and these rows in tier 1.
fn campaign(name: &str, rows: &[(&str, &str)]) -> Scratch {
    let dir = scratch(name).within("campaign");
    std::fs::create_dir_all(dir.join("config")).unwrap();
    let sample = repo().join("fixtures/checklists/sample");
    for f in ["SUT-PACKET.md", "config/run_config.json"] {
        std::fs::copy(sample.join(f), dir.join(f)).unwrap();
    }
    let mut md = String::from(
        "# Real agents\n\n## Tier 1: Core\n\n| Status | ID | Title | Priority | Risk |\n|--------|----|-------|----------|------|\n",
    );
    for (id, title) in rows {
        md.push_str(&format!("| ☐ | {id} | {title} | P1 | High |\n"));
    }
    std::fs::write(dir.join("SUT-CHECKLIST.md"), md).unwrap();
    dir
}

/// A real CLI's test rig: the scripted model, a campaign with these rows,
/// and the CLI's environment; `None` (outside CI) without the CLI.
async fn rig(
    runtime: &str,
    name: &str,
    rows: &[(&str, &str)],
) -> Option<(afk_sim::anthropic::Model, Scratch, Vec<(String, String)>)> {
    let bin = cli(runtime)?;
    let model = afk_sim::anthropic::Model::start().await;
    let dir = campaign(name, rows);
    let env = agent_env(runtime, &bin, &home(&dir), &model.uri());
    Some((model, dir, env))
}

/// The agents' home beside a campaign made by [`campaign`].
fn home(campaign: &Path) -> PathBuf {
    campaign.parent().unwrap().join("home")
}

/// The environment each CLI needs to run unattended and offline: a home of
/// its own with its permission settings, the model server's address.
pub(crate) fn agent_env(
    runtime: &str,
    bin: &Path,
    home: &Path,
    model: &str,
) -> Vec<(String, String)> {
    let home_s = home.display().to_string();
    let mut env = vec![
        ("HOME".to_owned(), home_s.clone()),
        ("XDG_CONFIG_HOME".to_owned(), format!("{home_s}/.config")),
        ("XDG_DATA_HOME".to_owned(), format!("{home_s}/.local/share")),
        ("XDG_CACHE_HOME".to_owned(), format!("{home_s}/.cache")),
        (
            "XDG_STATE_HOME".to_owned(),
            format!("{home_s}/.local/state"),
        ),
    ];
    if runtime == "claude" {
        std::fs::create_dir_all(home.join(".claude")).unwrap();
        std::fs::write(
            home.join(".claude/settings.json"),
            include_str!("../../fixtures/real-cli/claude-settings.json"),
        )
        .unwrap();
        env.extend([
            ("CLAUDE_BIN".to_owned(), bin.display().to_string()),
            ("ANTHROPIC_BASE_URL".to_owned(), model.to_owned()),
            (
                "ANTHROPIC_API_KEY".to_owned(),
                "sk-loopback-test".to_owned(),
            ),
            (
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC".to_owned(),
                "1".to_owned(),
            ),
        ]);
    } else {
        std::fs::create_dir_all(home.join(".config/opencode")).unwrap();
        let config = include_str!("../../fixtures/real-cli/opencode.json")
            .replace("http://127.0.0.1:PORT", model);
        std::fs::write(home.join(".config/opencode/opencode.json"), config).unwrap();
        env.extend([
            ("OPENCODE_BIN".to_owned(), bin.display().to_string()),
            (
                "ANTHROPIC_API_KEY".to_owned(),
                "sk-loopback-test".to_owned(),
            ),
            ("OPENCODE_DISABLE_MODELS_FETCH".to_owned(), "1".to_owned()),
            ("OPENCODE_DISABLE_AUTOUPDATE".to_owned(), "1".to_owned()),
        ]);
        // opencode 1.18 creates its database on first start, and two first
        // starts at once fail ("Failed query: CREATE TABLE …"): the README's
        // setup runs it once first, as this does.
        let first = std::process::Command::new(bin)
            .args(["models", "anthropic"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        assert!(first.status.success(), "{}", text(&first.stderr));
    }
    env
}

/// `afk -C dir args…` in the CLI's environment, off the test's runtime.
async fn afk(dir: &Path, env: &[(String, String)], args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(AFK);
    cmd.arg("-C").arg(dir).args(args).env_remove("AFK_ITEM_ID");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.kill_on_drop(true);
    tokio::time::timeout(std::time::Duration::from_secs(300), cmd.output())
        .await
        .expect("afk run finished within 5 minutes")
        .unwrap()
}

/// Processes running `sleep 3600` in a directory under `dir`.
pub(crate) fn sleepers_under(dir: &Path) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline != b"sleep\x003600\x00" {
            continue;
        }
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
            && !crate::processes::dead(pid)
        {
            found.push(pid);
        }
    }
    found
}

/// Waits (off the runtime) until a `sleep 3600` runs under `dir`, or, with
/// `running` false, until none does.
async fn sleepers(dir: &Path, running: bool) {
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || {
        if running {
            wait_until("the agent's shell tool to start sleep", || {
                !sleepers_under(&dir).is_empty()
            });
        } else {
            wait_until("nothing of the agent's tree to run", || {
                sleepers_under(&dir).is_empty()
            });
        }
    })
    .await
    .unwrap();
}

/// The whole loop through each real CLI: every row done through its tools,
/// findings in the campaign ledger, the tier report, infinite-mode synthesis.
async fn completes_a_campaign(runtime: &str) {
    let Some((model, dir, env)) = rig(
        runtime,
        &format!("{runtime}-complete"),
        &[
            ("CORE-001", "First real item"),
            ("CORE-002", "Second real item"),
        ],
    )
    .await
    else {
        return;
    };
    let mode: &[&str] = if runtime == "claude" {
        &["--mode", "infinite"]
    } else {
        &[]
    };
    // The README's examples: `--model sonnet` for claude, a model the
    // pinned opencode knows by its full name.
    let model_name = if runtime == "claude" {
        "sonnet"
    } else {
        "anthropic/claude-sonnet-4-5"
    };
    let mut args = vec![
        "run",
        "--runtime",
        runtime,
        "--model",
        model_name,
        "--timeout",
        "2m",
    ];
    args.extend_from_slice(mode);
    let out = afk(&dir, &env, &args).await;
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}\n{}", text(&out.stdout));
    let mut ids = vec!["CORE-001", "CORE-002"];
    if runtime == "claude" {
        ids.push("CORE-901");
    }
    assert_eq!(
        statuses(&dir),
        ids.iter()
            .map(|id| ((*id).to_owned(), "✅".to_owned()))
            .collect::<Vec<_>>(),
        "{log}"
    );
    for id in &ids {
        let report = std::fs::read_to_string(
            dir.join("runs/tier-1-core")
                .join(id)
                .join("FINAL_REPORT.md"),
        )
        .unwrap_or_else(|e| panic!("{id}: {e}\n{log}"));
        assert!(report.contains("through its Write tool"), "{report}");
    }
    let ledger: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("findings/bug.json")).unwrap())
            .unwrap();
    let mut found: Vec<&str> = ledger
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["title"].as_str().unwrap())
        .collect();
    found.sort_unstable();
    let expected: Vec<String> = ids.iter().map(|id| format!("found by {id}")).collect();
    assert_eq!(found, expected, "the Bash tool ran afk finding add");
    let tier_report =
        std::fs::read_to_string(dir.join("runs/tier-1-core/tier-1-core-FINAL-REPORT.md"))
            .unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(tier_report.contains("# Tier report"), "{tier_report}");
    let asked = model.requests();
    assert!(asked.iter().all(|r| r.status == 200), "{asked:?}");
    assert!(asked.iter().all(|r| r.path.starts_with("/v1/messages")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_claude_completes_a_campaign_through_its_tools() {
    completes_a_campaign("claude").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_opencode_completes_a_campaign_through_its_tools() {
    completes_a_campaign("opencode").await;
}

/// The real claude, failing four ways: two API errors, a denied tool, a
/// shell command that outlives the timeout. Each row says why in claude's
/// own words, and the timed-out agent's `sleep` (started by claude's Bash
/// tool, in a session of its own) does not survive it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_claude_fails_explaining_itself_and_leaves_nothing_running() {
    let Some((_model, dir, mut env)) = rig(
        "claude",
        "claude-fails",
        &[
            ("BAD-001", "Refused key [api-401]"),
            ("BAD-002", "Needs curl [denied]"),
            ("BAD-003", "Sleeps forever [sleep]"),
            ("BAD-004", "Overloaded [api-529]"),
        ],
    )
    .await
    else {
        return;
    };
    // claude retries every API error (401 included) with a growing backoff;
    // an unattended run that should fail fast says so.
    env.push(("CLAUDE_CODE_MAX_RETRIES".to_owned(), "0".to_owned()));
    let run = afk(
        &dir,
        &env,
        &["run", "--runtime", "claude", "--timeout", "8s"],
    );
    // The sleep starts under claude's Bash tool while the run goes on.
    let runs = dir.join("runs");
    let (out, ()) = tokio::join!(run, sleepers(&runs, true));
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert_eq!(
        statuses(&dir),
        [
            ("BAD-001", "❌"),
            ("BAD-002", "❌"),
            ("BAD-003", "❌"),
            ("BAD-004", "❌")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .to_vec(),
        "{log}"
    );
    let line = |id: &str| {
        log.lines()
            .find(|l| l.contains(&format!("{id} ❌ failed")))
            .unwrap_or_else(|| panic!("{id}: {log}"))
            .to_owned()
    };
    let api = line("BAD-001");
    assert!(
        api.contains("the agent exited with code 1: claude: ") && api.contains("401"),
        "{api}"
    );
    let denied = line("BAD-002");
    assert!(
        denied.contains("claude was denied Bash (curl -s http://127.0.0.1:9/)")
            && denied.contains("permissions.allow"),
        "{denied}"
    );
    assert!(line("BAD-003").contains("killed at the timeout"), "{log}");
    let overloaded = line("BAD-004");
    assert!(
        overloaded.contains("the agent exited with code 1: claude: ") && overloaded.contains("529"),
        "{overloaded}"
    );
    sleepers(&runs, false).await;
}

/// `--budget-usd` with the real claude: it takes what is left as its own
/// `--max-budget-usd`, reports `total_cost_usd`, and once the reported spend
/// reaches the budget nothing new starts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_claude_spends_within_the_budget() {
    let Some((_model, dir, env)) = rig(
        "claude",
        "claude-budget",
        &[
            ("PAY-001", "First paid item"),
            ("PAY-002", "Second paid item"),
            ("PAY-003", "Third paid item"),
        ],
    )
    .await
    else {
        return;
    };
    let out = afk(
        &dir,
        &env,
        &[
            "run",
            "--runtime",
            "claude",
            "--batch-size",
            "1",
            "--budget-usd",
            "0.001",
        ],
    )
    .await;
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(log.contains("the budget is spent ($0.0"), "{log}");
    let rows = statuses(&dir);
    assert_eq!(rows[1].1, "☐", "{log}");
    assert_eq!(rows[2].1, "☐", "{log}");
    let session = last_session(&dir);
    assert_eq!(session["outcome"], "budget-spent");
    assert_eq!(
        session["spend"]["unreported"], 0,
        "claude reported its cost"
    );
    assert!(
        session["spend"]["spent_usd"].as_f64().unwrap() >= 0.001,
        "{session}"
    );
}

/// An SSE reader for breakglass's stream: `(id, event)` frames.
struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    async fn open(http: &reqwest::Client, url: &str, token: &str, id: &str) -> Stream {
        let response = http
            .get(format!("{url}/api/session/{id}/stream"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// Events up to and including the next `turn_end`.
    async fn turn(&mut self) -> Vec<Value> {
        let mut events = Vec::new();
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let data: String = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                if block.lines().any(|l| l == "event: caught-up") || data.is_empty() {
                    continue;
                }
                let event: Value = serde_json::from_str(&data).unwrap();
                let end = event["type"] == "turn_end";
                events.push(event);
                if end {
                    return events;
                }
            }
            let chunk =
                tokio::time::timeout(std::time::Duration::from_secs(60), self.response.chunk())
                    .await
                    .unwrap_or_else(|_| panic!("the stream stalled after {events:?}"))
                    .unwrap()
                    .unwrap_or_else(|| panic!("the stream ended after {events:?}"));
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

fn kinds(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect()
}

/// breakglass with the real claude: a session's first turn, a `--resume`d
/// second turn that claude accepts, a cancel that leaves nothing of the
/// turn's tree running (claude's Bash tool runs its command in a session of
/// its own), and a replay of everything to a phone that attaches late.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakglass_drives_the_real_claude() {
    let Some(bin) = cli("claude") else { return };
    let model = afk_sim::anthropic::Model::start().await;
    let dir = scratch("breakglass");
    let env = agent_env("claude", &bin, &dir.join("home"), &model.uri());
    let token = "real-cli-test-token";
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_breakglass"));
    server
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("BREAKGLASS_TOKEN", token)
        .env("BREAKGLASS_LISTEN", "127.0.0.1:0")
        .env("BREAKGLASS_AGENT_BIN", &bin)
        .env("BREAKGLASS_SESSIONS_DIR", dir.join("sessions"))
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut server = server.spawn().unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(server.stdout.take().unwrap()));
    let listening: Value =
        serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    let url = format!("http://{}", listening["address"].as_str().unwrap());
    // Keep reading its log so it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let http = reqwest::Client::new();
    let id = crate::breakglass_bin::create_session(&http, &url, token).await;
    let mut stream = Stream::open(&http, &url, token, &id).await;
    let prompt = |text: &str| {
        http.post(format!("{url}/api/session/{id}/prompt"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "prompt": text }))
            .send()
    };

    // A prompt that starts with `-` is a prompt, not an option.
    assert_eq!(
        prompt("--settings={\"hooks\":{}} how is the VM?")
            .await
            .unwrap()
            .status(),
        200
    );
    let first = stream.turn().await;
    assert!(!kinds(&first).contains(&"error"), "{first:?}");
    let result = first.iter().find(|e| e["type"] == "result").unwrap();
    assert_eq!(result["is_error"], false, "{first:?}");
    assert!(
        result["result"].as_str().unwrap().contains("Diagnosis"),
        "{first:?}"
    );

    assert_eq!(prompt("and now?").await.unwrap().status(), 200);
    let second = stream.turn().await;
    assert!(
        !kinds(&second).contains(&"error"),
        "claude resumed its session: {second:?}"
    );
    assert!(kinds(&second).contains(&"result"), "{second:?}");

    assert_eq!(
        prompt("[sleep] wait for the disk").await.unwrap().status(),
        200
    );
    let sessions = dir.join("sessions");
    sleepers(&sessions, true).await;
    let cancelled = http
        .post(format!("{url}/api/session/{id}/cancel"))
        .bearer_auth(token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    let third = stream.turn().await;
    assert!(kinds(&third).contains(&"cancelled"), "{third:?}");
    sleepers(&sessions, false).await;

    // A phone attaching now gets all three turns again, in order.
    let mut late = Stream::open(&http, &url, token, &id).await;
    let mut replayed = Vec::new();
    for _ in 0..3 {
        replayed.extend(late.turn().await);
    }
    let all: Vec<Value> = [first, second, third].concat();
    assert_eq!(kinds(&replayed), kinds(&all));
    server.kill().await.unwrap();
}

/// Every way of stopping `afk run` while the real claude's Bash tool runs a
/// long command leaves nothing of its tree behind: `afk cancel`, Ctrl-C, and
/// a SIGKILLed runner (its agents die with it), after which `--resume`
/// starts the row again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_way_of_stopping_the_real_claude_stops_its_whole_tree() {
    let Some((_model, dir, env)) = rig(
        "claude",
        "claude-stops",
        &[("HOLD-001", "Waits on the SUT [sleep]")],
    )
    .await
    else {
        return;
    };
    let runs = dir.join("runs");
    let start = |extra: &'static [&'static str]| {
        let mut cmd = tokio::process::Command::new(AFK);
        cmd.arg("-C")
            .arg(&dir)
            .args(["run", "--runtime", "claude"])
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd.spawn().unwrap()
    };
    let signal = |child: &tokio::process::Child, sig: rustix::process::Signal| {
        let pid = rustix::process::Pid::from_raw(i32::try_from(child.id().unwrap()).unwrap());
        rustix::process::kill_process(pid.unwrap(), sig).unwrap();
    };

    // afk cancel
    let runner = start(&["--timeout", "5m"]);
    sleepers(&runs, true).await;
    let cancel = afk(&dir, &env, &["cancel"]).await;
    assert_eq!(cancel.status.code(), Some(0), "{}", text(&cancel.stderr));
    let out = runner.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    sleepers(&runs, false).await;
    assert_eq!(statuses(&dir)[0].1, "☐");

    // Ctrl-C
    let runner = start(&["--timeout", "5m"]);
    sleepers(&runs, true).await;
    signal(&runner, rustix::process::Signal::INT);
    let out = runner.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    sleepers(&runs, false).await;
    assert_eq!(statuses(&dir)[0].1, "☐");

    // SIGKILL: the runner cannot clean up, its agents die with it anyway.
    let runner = start(&["--timeout", "5m"]);
    sleepers(&runs, true).await;
    signal(&runner, rustix::process::Signal::KILL);
    let _ = runner.wait_with_output().await.unwrap();
    sleepers(&runs, false).await;
    assert_eq!(statuses(&dir)[0].1, "⏳");
    let resumed = afk(
        &dir,
        &env,
        &["run", "--runtime", "claude", "--resume", "--timeout", "5s"],
    )
    .await;
    let log = text(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(1), "{log}");
    assert!(
        log.contains("HOLD-001 ❌ failed") && log.contains("killed at the timeout"),
        "{log}"
    );
    sleepers(&runs, false).await;
}

/// opencode's bash tool too: the command outlives nothing once the row's
/// timeout stops the agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_real_opencode_leaves_nothing_running() {
    let Some((_model, dir, env)) = rig(
        "opencode",
        "opencode-timeout",
        &[("HOLD-002", "Waits on the SUT [sleep]")],
    )
    .await
    else {
        return;
    };
    let runs = dir.join("runs");
    let run = afk(
        &dir,
        &env,
        &["run", "--runtime", "opencode", "--timeout", "10s"],
    );
    let (out, ()) = tokio::join!(run, sleepers(&runs, true));
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("HOLD-002 ❌ failed") && log.contains("killed at the timeout"),
        "{log}"
    );
    sleepers(&runs, false).await;
}

/// The scripted model itself, without a CLI: it refuses what the real API
/// refuses, answers without streaming too, fails and hangs on demand, and
/// keeps every request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scripted_model_refuses_what_the_api_refuses() {
    let model = afk_sim::anthropic::Model::start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/v1/messages", model.uri());
    let item = |title: &str| {
        serde_json::json!({
            "model": "claude-sonnet-4-5", "max_tokens": 1024,
            "messages": [{"role": "user", "content":
                format!("Work on exactly one\nbacklog item, then stop.\n- ID: X-1\n- Title: {title}\n")}],
        })
    };
    let send = |body: Value, key: bool, version: bool| {
        let mut req = http.post(&url).json(&body);
        if key {
            req = req.header("x-api-key", "sk-test");
        }
        if version {
            req = req.header("anthropic-version", "2023-06-01");
        }
        req.send()
    };
    let no_key = send(item("t"), false, true).await.unwrap();
    assert_eq!(no_key.status(), 401);
    let body: Value = no_key.json().await.unwrap();
    assert_eq!(body["error"]["type"], "authentication_error");
    assert_eq!(send(item("t"), true, false).await.unwrap().status(), 400);
    let no_model = send(serde_json::json!({"messages": []}), true, true)
        .await
        .unwrap();
    assert_eq!(no_model.status(), 400);
    // Without "stream", one JSON message; no tools, so a plain answer.
    let plain: Value = send(item("t"), true, true)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(plain["type"], "message");
    assert_eq!(plain["content"][0]["type"], "text");
    for (word, status) in [("[api-429]", 429), ("[api-500]", 500), ("[api-529]", 529)] {
        let failed = send(item(word), true, true).await.unwrap();
        assert_eq!(failed.status(), status);
        let body: Value = failed.json().await.unwrap();
        assert_eq!(body["type"], "error");
    }
    let hang = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        send(item("[hang]"), true, true),
    )
    .await;
    assert!(hang.is_err(), "a [hang] answer never comes");
    let seen = model.requests();
    assert!(seen.len() >= 7, "{seen:?}");
    assert_eq!(seen[0].status, 401);
}
