//! A real gateway on 127.0.0.1 with the scripted CLI
//! (`fixtures/gateway/fake-claude.py`, each test with a home of its own),
//! and the helpers its tests share: SSE reading, the CLI's call log,
//! waiting for processes to end.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use afk_edge::auth::Bearer;
use afk_gateway::server::{App, serve};
use afk_gateway::settings::{Models, Settings};
use serde_json::Value;

pub const TOKEN: &str = "gateway-test-token-0123456789";

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A test's own directory (`tempfile`), removed with everything in it when
/// dropped; it reads as its path.
#[derive(Debug)]
pub struct Scratch(tempfile::TempDir);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.path()
    }
}

pub fn scratch(name: &str) -> Scratch {
    Scratch(
        tempfile::Builder::new()
            .prefix(&format!("afk-gateway-test-{name}-"))
            .tempdir()
            .unwrap(),
    )
}

/// A script that runs `program` with these variables set (the gateway's
/// own environment is the test runner's, which a test cannot change).
pub fn wrapper(dir: &Path, program: &Path, env: &[(&str, String)]) -> PathBuf {
    let script = dir.join("agent.sh");
    let mut text = String::from("#!/bin/sh\n");
    for (k, v) in env {
        text.push_str(&format!("export {k}='{v}'\n"));
    }
    text.push_str(&format!("exec '{}' \"$@\"\n", program.display()));
    std::fs::write(&script, text).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

pub fn settings(dir: &Path) -> Settings {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let agent = wrapper(
        dir,
        &repo().join("fixtures/gateway/fake-claude.py"),
        &[("HOME", home.display().to_string())],
    );
    let mut s = Settings::new(
        &agent.display().to_string(),
        "Antworte kurz, in der Sprache des Nutzers.",
        Models::parse("sonnet,haiku").unwrap(),
        Bearer::new(Some(TOKEN)),
    );
    s.work_dir = dir.join("work");
    s.turn_timeout = Duration::from_secs(30);
    s
}

pub struct Gateway {
    pub url: String,
    pub app: Arc<App>,
    pub dir: Scratch,
    pub http: reqwest::Client,
    stop: tokio::sync::watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
}

pub async fn start_with(dir: Scratch, settings: Settings) -> Gateway {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = App::start(settings).unwrap();
    let (stop, mut stopping) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(serve(listener, app.clone(), async move {
        let _ = stopping.wait_for(|s| *s).await;
    }));
    Gateway {
        url,
        app,
        dir,
        http: reqwest::Client::new(),
        stop,
        task: std::sync::Mutex::new(Some(task)),
    }
}

pub async fn start(name: &str) -> Gateway {
    let dir = scratch(name);
    let s = settings(&dir);
    start_with(dir, s).await
}

impl Gateway {
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
    }

    pub async fn chat(&self, body: Value) -> reqwest::Response {
        self.post("/v1/chat/completions")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn say(&self, session: &str, message: &str) -> reqwest::Response {
        self.post("/v1/conversational")
            .json(&serde_json::json!({"session_id": session, "message": message}))
            .send()
            .await
            .unwrap()
    }

    /// Every line the scripted CLI logged: one per start, one per message.
    pub fn calls(&self) -> Vec<Value> {
        calls(&self.dir.join("home"))
    }

    /// The messages the CLI got, with the pid that got each.
    pub fn messages(&self) -> Vec<(u32, String)> {
        self.calls()
            .iter()
            .filter_map(|c| Some((pid(c)?, c["message"].as_str()?.to_owned())))
            .collect()
    }

    /// The start line of process `pid`.
    pub fn start_of(&self, pid: u32) -> Value {
        self.calls()
            .into_iter()
            .find(|c| self::pid(c) == Some(pid) && c.get("argv").is_some())
            .unwrap_or_else(|| panic!("no start logged for {pid}"))
    }

    /// The pids a `HANG` turn logged (the CLI, its child, its `setsid`
    /// grandchild), once it has.
    pub async fn hung(&self) -> Vec<u32> {
        let home = self.dir.join("home");
        let mut found = Vec::new();
        wait_until("the CLI to log its hanging tree", || {
            found = calls(&home)
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
            !found.is_empty()
        })
        .await;
        found
    }

    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    pub async fn stopped(&self) {
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            task.await.unwrap().unwrap();
        }
    }
}

pub fn pid(call: &Value) -> Option<u32> {
    call["pid"].as_u64().map(|p| p as u32)
}

pub fn calls(home: &Path) -> Vec<Value> {
    std::fs::read_to_string(home.join(".fake-claude/calls.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits (polling, at most 20 s) until `done` holds.
pub async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out waiting for {what}");
}

pub fn dead(pid: u32) -> bool {
    afk_process::ended(pid)
}

/// Waits until every process of `pids` has ended.
pub async fn all_dead(pids: &[u32]) {
    wait_until(&format!("{pids:?} to end"), || {
        pids.iter().all(|p| dead(*p))
    })
    .await;
}

/// The `data:` payloads of an SSE response, up to its end.
pub async fn events(response: reqwest::Response) -> Vec<String> {
    let text = tokio::time::timeout(Duration::from_secs(30), response.text())
        .await
        .expect("the stream ended within 30 s")
        .unwrap();
    parse_events(&text)
}

pub fn parse_events(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            block
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .collect()
}

/// The JSON of a response, with its status.
pub async fn json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    (status, value)
}

/// The chat request for one user message.
pub fn ask(text: &str) -> Value {
    serde_json::json!({"model": "sonnet", "messages": [{"role": "user", "content": text}]})
}
