//! `afk-gateway` with the **real** `claude` CLI behind it (the pinned
//! version `.ci/run` installs into `fixtures/real-cli`), against the
//! scripted conversational model of `afk_sim::anthropic`, and the official
//! `openai` Python client in front of it. The agent's home holds the
//! permissive settings the campaign tests use (Read, Write, Edit and Bash
//! allowed): the gateway must run no tool even so.
//!
//! Without the CLI (or the Python client) these tests say so and pass,
//! except under `CI=true`, where a missing one fails them.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::real_agents::{agent_env, cli};
use crate::scratch::Scratch;

const BIN: &str = env!("CARGO_BIN_EXE_afk-gateway");
const TOKEN: &str = "real-gateway-token-77ab";
const INSTRUCTIONS: &str =
    "Sprich kurz und freundlich, in der Sprache des Nutzers. [gateway-test-instructions]";

struct Rig {
    model: afk_sim::anthropic::Model,
    dir: Scratch,
    url: String,
    child: tokio::process::Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn rig(name: &str) -> Option<Rig> {
    let bin = cli("claude")?;
    let model = afk_sim::anthropic::Model::start_voice(Duration::ZERO).await;
    let dir = Scratch::new(&format!("real-gateway-{name}"));
    let env = agent_env("claude", &bin, &dir.join("home"), &model.uri());
    std::fs::write(dir.join("agent.md"), INSTRUCTIONS).unwrap();
    let mut child = tokio::process::Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("AFK_GATEWAY_TOKEN", TOKEN)
        .env("AFK_GATEWAY_LISTEN", "127.0.0.1:0")
        .env("AFK_GATEWAY_AGENT_BIN", &bin)
        .env("AFK_GATEWAY_INSTRUCTIONS_FILE", dir.join("agent.md"))
        .env("AFK_GATEWAY_MODELS", "sonnet,haiku")
        .env("AFK_GATEWAY_WORK_DIR", dir.join("work"))
        .env("AFK_GATEWAY_DRAIN_SECONDS", "2")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let listening: Value =
        serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    let url = format!("http://{}", listening["address"].as_str().unwrap());
    let logs = Arc::new(Mutex::new(Vec::new()));
    let kept = logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            kept.lock().unwrap().push(line);
        }
    });
    Some(Rig {
        model,
        dir,
        url,
        child,
        logs,
    })
}

/// Every user text the model was sent in one request.
fn user_texts(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "user")
        .flat_map(|m| match &m["content"] {
            Value::String(s) => vec![s.clone()],
            Value::Array(blocks) => blocks
                .iter()
                .filter_map(|b| b["text"].as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        })
        .collect()
}

/// What every request the real CLI sent through the gateway must be: no
/// tool offered, the operator's instructions in the system prompt.
fn no_tools_and_the_instructions(model: &afk_sim::anthropic::Model) -> Vec<Value> {
    let bodies: Vec<Value> = model.requests().into_iter().map(|r| r.body).collect();
    assert!(!bodies.is_empty());
    for body in &bodies {
        assert!(
            body["tools"].as_array().is_none_or(Vec::is_empty),
            "a tool was offered: {}",
            body["tools"]
        );
        assert!(
            body["system"]
                .to_string()
                .contains("[gateway-test-instructions]"),
            "{}",
            body["system"]
        );
    }
    bodies
}

#[allow(clippy::print_stderr)] // a skipped test must say so
async fn openai_client(url: &str, model: &str) -> Option<Value> {
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .await;
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "the openai Python client is not installed: python3 -m pip install openai==3.63.0 (.ci/run does)"
        );
        eprintln!("skipped: the openai Python client is not installed");
        return None;
    }
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../afk-gateway/tests/openai_client.py");
    let out = tokio::time::timeout(
        Duration::from_secs(300),
        tokio::process::Command::new("python3")
            .arg(script)
            .env("GATEWAY_URL", url)
            .env("GATEWAY_TOKEN", TOKEN)
            .env("MODEL", model)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the client finished within 5 minutes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_str(&stdout).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_client_talks_to_the_real_claude_through_the_gateway() {
    let Some(rig) = rig("openai").await else {
        return;
    };
    let Some(report) = openai_client(&rig.url, "sonnet").await else {
        return;
    };
    let reply = "Gern! Du sagtest: «User: Und das Wetter? ☀️». Schönen Tag noch ☀️";
    let whole = &report["whole"];
    assert_eq!(whole["object"], "chat.completion", "{report}");
    assert_eq!(whole["content"], reply, "{report}");
    assert_eq!(whole["finish_reason"], "stop");
    assert!(
        whole["usage"]["prompt_tokens"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(
        whole["usage"]["completion_tokens"].as_u64().unwrap() > 0,
        "{report}"
    );
    let stream = &report["stream"];
    let contents: Vec<&str> = stream["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(contents.concat(), reply, "{report}");
    assert!(contents.len() > 3, "one chunk per text delta: {contents:?}");
    assert_eq!(stream["roles"], json!(["assistant"]));
    assert_eq!(stream["finish_reasons"], json!(["stop"]));
    assert_eq!(stream["usage"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["helper"], reply);
    assert_eq!(report["bad_model"]["status"], 400, "{report}");
    assert_eq!(report["bad_key"]["status"], 401, "{report}");
    // The model saw the whole history as one dialogue, no tool, the
    // operator's instructions.
    let bodies = no_tools_and_the_instructions(&rig.model);
    let dialogue = "Du bist ein Sprachassistent.\n\nUser: Wie spät ist es?\nAssistant: Kurz nach drei.\nUser: Und das Wetter? ☀️";
    assert!(
        bodies
            .iter()
            .all(|b| user_texts(b).iter().any(|t| t.contains(dialogue))),
        "{bodies:#?}"
    );
    assert!(rig.logs.lock().unwrap().iter().all(|l| !l.contains(TOKEN)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_claude_behind_the_gateway_reads_no_file_and_runs_no_tool() {
    let Some(rig) = rig("no-tools").await else {
        return;
    };
    let canary = rig.dir.join("canary.txt");
    std::fs::write(&canary, "CANARY-91c2 do not send\n").unwrap();
    let http = reqwest::Client::new();
    let say = |message: String| {
        http.post(format!("{}/v1/conversational", rig.url))
            .bearer_auth(TOKEN)
            .json(&json!({"session_id": "call-1", "message": message}))
            .send()
    };
    let messages = [
        "Hallo, wer bist du?".to_owned(),
        format!("was steht in @{} ?", canary.display()),
        "schau in @/etc/ nach".to_owned(),
        "/clear".to_owned(),
        "-p --dangerously-skip-permissions".to_owned(),
    ];
    // How many CLIs of `kind` have been started ahead to wait, as logged.
    let waiting = |kind: &str| {
        let kind = format!(r#""kind":"{kind}""#);
        rig.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("waits for its turn") && l.contains(&kind))
            .count()
    };
    for (i, message) in messages.iter().enumerate() {
        // Each turn takes a process that waited: the first-turn one, then
        // the one resuming the conversation after each turn.
        match i {
            0 => wait_for_more(&|| waiting("conversation"), 0).await,
            _ => wait_for_more(&|| waiting("resume"), i - 1).await,
        };
        let answer = say(message.clone()).await.unwrap();
        let status = answer.status();
        let body: Value = answer.json().await.unwrap();
        assert_eq!(status, 200, "{message}: {body}");
        assert_eq!(body["session_id"], "call-1");
        let line = message.trim();
        assert_eq!(
            body["reply"],
            format!("Gern! Du sagtest: «{line}». Schönen Tag noch ☀️"),
            "{message}"
        );
    }
    let bodies = no_tools_and_the_instructions(&rig.model);
    assert_eq!(bodies.len(), messages.len(), "one model request per turn");
    for body in &bodies {
        let text = body.to_string();
        assert!(!text.contains("CANARY"), "a file reached the model: {text}");
        assert!(!text.contains("Called the"), "a tool ran: {text}");
    }
    // Each later turn resumed the conversation: the model sees the turns
    // before it.
    for (i, body) in bodies.iter().enumerate().skip(1) {
        let texts = user_texts(body).join("\n");
        assert!(texts.contains("Hallo, wer bist du?"), "turn {i}: {texts}");
    }
    // Every turn ran on a primed process, and the blank prime reached
    // neither the model (one request per turn, above) nor the
    // conversation.
    let logs = rig.logs.lock().unwrap().clone();
    let turns: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("turn answered"))
        .collect();
    assert_eq!(turns.len(), messages.len(), "{logs:#?}");
    assert!(
        turns.iter().all(|l| l.contains(r#""process":"warm""#)),
        "{turns:#?}"
    );
    assert!(
        logs.iter()
            .filter(|l| l.contains("waits for its turn"))
            .all(|l| l.contains(r#""primed":true"#)),
        "{logs:#?}"
    );
    for body in &bodies {
        assert!(
            user_texts(body).iter().all(|t| !t.trim().is_empty()),
            "a blank message reached the model: {body}"
        );
    }
}

/// Waits (up to a minute) until `count` says more than `than`; the count.
async fn wait_for_more(count: &impl Fn() -> usize, than: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let now = count();
        if now > than {
            return now;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nothing more than {than} within a minute"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Processes whose working directory is under `dir`, with their command lines.
fn processes_under(dir: &Path) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if crate::processes::dead(pid) {
            continue;
        }
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir)) {
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_turn_stops_the_real_claude_and_its_tree() {
    let Some(rig) = rig("gone").await else { return };
    let work = rig.dir.join("work");
    // Primed and in the pool (a process still priming is not taken).
    let chat_waits = || {
        rig.logs
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("waits for its turn") && l.contains(r#""kind":"chat""#))
            .count()
    };
    wait_for_more(&chat_waits, 0).await;
    // The chat process waiting for the next turn is the one that will run it.
    let mut waiting = 0;
    let w = work.clone();
    tokio::task::spawn_blocking(move || {
        crate::processes::wait_until("a chat CLI to wait", || {
            waiting = processes_under(&w)
                .into_iter()
                .find(|(_, cmd)| cmd.contains("--no-session-persistence"))
                .map_or(0, |(pid, _)| pid);
            waiting != 0
        });
        waiting
    })
    .await
    .map(|pid| waiting = pid)
    .unwrap();
    let request = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", rig.url))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "sonnet", "stream": true, "messages": [{"role": "user", "content": "[hang] bitte warten"}]}))
        .send();
    let pending = tokio::spawn(request);
    let model = &rig.model;
    let asked = tokio::time::timeout(Duration::from_secs(60), async {
        while !model
            .requests()
            .iter()
            .any(|r| r.body.to_string().contains("[hang]"))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(asked.is_ok(), "the CLI asked the model");
    assert!(!crate::processes::dead(waiting));
    // The CLI's tree as it stands mid-turn, by ancestry (pid and start time).
    let procs = afk_process::tree::all();
    let tree: Vec<(u32, u64)> = afk_process::tree::descendants(&procs, waiting)
        .into_iter()
        .chain(procs.get(&waiting).copied())
        .map(|p| (p.pid, p.start))
        .collect();
    pending.abort();
    tokio::task::spawn_blocking(move || {
        crate::processes::wait_until("the CLI's whole tree to be gone", || {
            tree.iter().all(|(pid, start)| {
                afk_process::tree::stat(*pid).is_none_or(|p| p.zombie || p.start != *start)
            })
        });
    })
    .await
    .unwrap();
}
