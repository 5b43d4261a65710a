//! The `afk-gateway` binary as an operator starts it: settings refused
//! before listening, the token neither logged nor inherited by the CLI,
//! secrets of the environment redacted from answers, audit lines, and a
//! SIGTERM that drains running turns and kills what outlives the grace.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::processes::{dead, wait_until};
use crate::scratch::Scratch;

const BIN: &str = env!("CARGO_BIN_EXE_afk-gateway");
const TOKEN: &str = "gateway-bin-token-5e1f";
const KEY: &str = "sk-ant-test-key-0f9e8d7c";

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/gateway/fake-claude.py")
}

fn scratch(name: &str) -> Scratch {
    let dir = Scratch::new(&format!("gateway-bin-{name}"));
    std::fs::create_dir_all(dir.join("home")).unwrap();
    std::fs::write(dir.join("agent.md"), "Antworte kurz.\n").unwrap();
    dir
}

fn refused(env: &[(&str, &str)], args: &[&str], want: &str) {
    let dir = scratch("refused");
    let out = Command::new(BIN)
        .env_clear()
        .env("AFK_GATEWAY_INSTRUCTIONS_FILE", dir.join("agent.md"))
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{env:?} {args:?}: {logs}");
    assert!(logs.contains(want), "wanted {want:?} in {logs}");
    assert!(!logs.contains(TOKEN), "{logs}");
}

#[test]
fn bad_gateway_settings_are_refused_before_listening() {
    refused(
        &[("AFK_GATEWAY_LISTEN", "localhost")],
        &[],
        "AFK_GATEWAY_LISTEN",
    );
    refused(
        &[("AFK_GATEWAY_INSTRUCTIONS_FILE", "")],
        &[],
        "instructions-file",
    );
    refused(
        &[("AFK_GATEWAY_INSTRUCTIONS_FILE", "/nonexistent/agent.md")],
        &[],
        "cannot read it",
    );
    refused(
        &[("AFK_GATEWAY_MODELS", "sonnet,,opus")],
        &[],
        "AFK_GATEWAY_MODELS",
    );
    refused(
        &[
            ("AFK_GATEWAY_TOKEN", TOKEN),
            ("AFK_GATEWAY_TOKEN_FILE", "/x"),
        ],
        &[],
        "not both",
    );
    refused(
        &[("AFK_GATEWAY_TOKEN_FILE", "/nonexistent/token")],
        &[],
        "cannot read AFK_GATEWAY_TOKEN_FILE",
    );
    refused(&[("AFK_GATEWAY_MAX_TURNS", "0")], &[], "max-turns");
    refused(
        &[],
        &["--turn-timeout-seconds", "0"],
        "turn-timeout-seconds",
    );
}

type Lines = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// The binary on 127.0.0.1 with the scripted CLI; its log and URL.
fn serve(dir: &Path, drain: &str) -> (std::process::Child, Lines, String) {
    let mut child = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.join("home"))
        .env("AFK_GATEWAY_TOKEN", TOKEN)
        .env("ANTHROPIC_API_KEY", KEY)
        .env("AFK_GATEWAY_LISTEN", "127.0.0.1:0")
        .env("AFK_GATEWAY_AGENT_BIN", fixture())
        .env("AFK_GATEWAY_INSTRUCTIONS_FILE", dir.join("agent.md"))
        .env("AFK_GATEWAY_MODELS", "sonnet,haiku")
        .env("AFK_GATEWAY_WORK_DIR", dir.join("work"))
        .env("AFK_GATEWAY_DRAIN_SECONDS", drain)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(listening["message"], "listening", "{listening}");
    let url = format!("http://{}", listening["address"].as_str().unwrap());
    (child, lines, url)
}

fn calls(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("home/.fake-claude/calls.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The pids a `HANG` turn logged (the CLI, its child, its `setsid`
/// grandchild), once it has.
fn hung_tree(dir: &Path) -> Vec<u32> {
    let mut tree = Vec::new();
    wait_until("the hanging CLI to log its tree", || {
        tree = calls(dir)
            .iter()
            .filter_map(|c| c["hang"].as_array().cloned())
            .next_back()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_u64())
                    .map(|p| p as u32)
                    .collect()
            })
            .unwrap_or_default();
        !tree.is_empty()
    });
    tree
}

fn chat(text: &str, stream: bool) -> Value {
    json!({"model": "sonnet", "stream": stream, "messages": [{"role": "user", "content": text}]})
}

#[test]
fn sigterm_drains_running_turns_and_kills_what_outlives_the_grace() {
    let dir = scratch("drain");
    let (mut child, lines, url) = serve(&dir, "5");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let post = |body: Value| {
        http.post(format!("{url}/v1/chat/completions"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
    };
    runtime.block_on(async {
        // A failing CLI's own words reach the client, its key blotted out.
        let failed = post(chat("APIERR", false)).await.unwrap();
        assert_eq!(failed.status(), 502);
        let text = failed.text().await.unwrap();
        assert!(text.contains("invalid x-api-key <redacted>"), "{text}");
        assert!(!text.contains(KEY), "{text}");
        let refused = http
            .post(format!("{url}/v1/chat/completions"))
            .bearer_auth("nope")
            .json(&chat("x", false))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
    });
    // The CLI inherits the environment (its model key) less the token.
    let starts: Vec<Value> = calls(&dir)
        .into_iter()
        .filter(|c| c.get("env").is_some())
        .collect();
    assert!(!starts.is_empty());
    for start in &starts {
        let env = start["env"].as_object().unwrap();
        assert!(!env.contains_key("AFK_GATEWAY_TOKEN"), "{env:?}");
        assert!(
            !env.values()
                .any(|v| v.as_str().is_some_and(|v| v.contains(TOKEN)))
        );
        assert_eq!(env["ANTHROPIC_API_KEY"], KEY);
    }
    // Two turns run when SIGTERM comes: one finishes within the grace and
    // is answered whole; one never would, and is killed at its end.
    let (finished, hung) = runtime.block_on(async {
        let mut slow = post(chat("SLOW 150 bitte langsam", true)).await.unwrap();
        assert_eq!(slow.status(), 200);
        let first = slow.chunk().await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&first).contains("assistant"));
        let hanging = tokio::spawn(post(chat("HANG", false)));
        let home = dir.to_path_buf();
        let tree = tokio::task::spawn_blocking(move || hung_tree(&home))
            .await
            .unwrap();
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let rest = slow.text().await.unwrap();
        let _ = hanging.await;
        (rest, tree)
    });
    assert!(
        finished.contains("\"finish_reason\":\"stop\""),
        "{finished}"
    );
    assert!(finished.ends_with("data: [DONE]\n\n"), "{finished}");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    for pid in &hung {
        wait_until(&format!("{pid} to be gone"), || dead(*pid));
    }
    assert_eq!(
        std::fs::read_dir(dir.join("work")).unwrap().count(),
        0,
        "the run's directory is removed"
    );
    let logs: Vec<Value> = lines
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let text = logs.iter().map(Value::to_string).collect::<String>();
    assert!(!text.contains(TOKEN) && !text.contains(KEY), "{text}");
    let audits: Vec<&Value> = logs.iter().filter(|l| l["target"] == "audit").collect();
    assert!(
        audits
            .iter()
            .any(|a| a["who"] == "refused" && a["status"] == 401),
        "{audits:?}"
    );
    assert!(
        audits
            .iter()
            .any(|a| a["who"] == "token" && a["what"] == "POST /v1/chat/completions"),
        "{audits:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l["message"] == "draining: no new turns"),
        "{text}"
    );
}
