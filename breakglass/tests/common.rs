//! A real breakglass server on 127.0.0.1 with the scripted agent and ssh of
//! `fixtures/breakglass/`, and a small SSE client.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use breakglass::auth::Auth;
use breakglass::power::PowerSettings;
use breakglass::server::{App, Settings, serve};
use breakglass::session::AgentSettings;
use serde_json::Value;

pub const TOKEN: &str = "test-token-0123456789";

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/breakglass")
}

/// A temporary directory (`tempfile`), removed when dropped; it reads as
/// its path.
#[derive(Debug)]
pub struct Scratch {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl std::ops::Deref for Scratch {
    type Target = PathBuf;

    fn deref(&self) -> &PathBuf {
        &self.path
    }
}

pub fn scratch(name: &str) -> Scratch {
    let dir = tempfile::Builder::new()
        .prefix(&format!("breakglass-{name}-"))
        .tempdir()
        .unwrap();
    let path = dir.path().to_path_buf();
    Scratch { _dir: dir, path }
}

/// An ssh stand-in that logs every call to `<dir>/calls.log` first.
pub fn logging_ssh(dir: &Path) -> String {
    let script = dir.join("ssh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\nexec sh {} \"$@\"\n",
            dir.join("calls.log").display(),
            fixtures().join("fake-ssh.sh").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script.display().to_string()
}

pub fn settings(dir: &Path) -> Settings {
    Settings {
        auth: Auth::new(Some(TOKEN), None, Default::default()).unwrap(),
        agent: AgentSettings {
            bin: fixtures().join("fake-claude.sh").display().to_string(),
            model: None,
            sessions_dir: dir.join("sessions"),
            turn_timeout: Duration::from_secs(60),
        },
        keepalive: Duration::from_secs(20),
        power: PowerSettings {
            ssh_bin: logging_ssh(dir),
            host: Some("pve".into()),
            timeout: Duration::from_secs(30),
        },
        limits: afk_edge::listen::Limits::default(),
        max_sessions: 64,
    }
}

pub struct Server {
    pub url: String,
    pub app: Arc<App>,
    pub dir: Scratch,
    pub http: reqwest::Client,
    stop: tokio::sync::watch::Sender<bool>,
    task: std::sync::Mutex<Option<tokio::task::JoinHandle<std::io::Result<()>>>>,
}

pub async fn start_with(dir: Scratch, settings: Settings) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = App::new(settings);
    let (stop, mut stopping) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(serve(listener, app.clone(), async move {
        let _ = stopping.wait_for(|s| *s).await;
    }));
    Server {
        url,
        app,
        dir,
        http: reqwest::Client::new(),
        stop,
        task: std::sync::Mutex::new(Some(task)),
    }
}

pub async fn start(name: &str) -> Server {
    let dir = scratch(name);
    let s = settings(&dir);
    start_with(dir, s).await
}

impl Server {
    /// Tells the server to stop (as SIGTERM does).
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Resolves when the server has stopped.
    pub async fn stopped(&self) {
        let task = self.task.lock().unwrap().take();
        if let Some(task) = task {
            task.await.unwrap().unwrap();
        }
    }

    /// A JSON POST (the only kind of mutating request the server takes),
    /// with an empty object for a body unless the caller sets one.
    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body("{}")
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(TOKEN)
    }

    pub async fn session(&self) -> String {
        let r: Value = self
            .post("/api/session")
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        r["session_id"].as_str().unwrap().to_owned()
    }

    pub async fn prompt(&self, session: &str, prompt: &str) -> reqwest::StatusCode {
        self.post(&format!("/api/session/{session}/prompt"))
            .json(&serde_json::json!({"prompt": prompt}))
            .send()
            .await
            .unwrap()
            .status()
    }

    /// `POST …/cancel`, its JSON answer.
    pub async fn cancel(&self, session: &str) -> Value {
        self.post(&format!("/api/session/{session}/cancel"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub fn session_dir(&self, session: &str) -> PathBuf {
        self.dir.join("sessions").join(session)
    }

    pub async fn attach(&self, session: &str, last_event_id: Option<&str>) -> Sse {
        let mut req = self.get(&format!("/api/session/{session}/stream"));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Sse {
            resp,
            buf: String::new(),
        }
    }
}

/// One SSE block.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `id:` + `data:` (the event JSON).
    Event(u64, Value),
    /// `event: caught-up`.
    CaughtUp,
    /// A `:` comment.
    Comment(String),
}

pub struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    /// The next block, waiting at most `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<Frame> {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                return Some(parse_block(block.trim_end()));
            }
            match tokio::time::timeout(wait, self.resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.push_str(std::str::from_utf8(&bytes).unwrap()),
                _ => return None,
            }
        }
    }

    /// Events up to and including the first that satisfies `stop`
    /// (other frames skipped).
    pub async fn events_until(&mut self, stop: impl Fn(&Value) -> bool) -> Vec<(u64, Value)> {
        let mut out = Vec::new();
        loop {
            match self.next(Duration::from_secs(20)).await {
                Some(Frame::Event(id, v)) => {
                    let done = stop(&v);
                    out.push((id, v));
                    if done {
                        return out;
                    }
                }
                Some(_) => {}
                None => panic!("the stream ended or stalled after {out:?}"),
            }
        }
    }
}

fn parse_block(block: &str) -> Frame {
    if let Some(comment) = block.strip_prefix(':') {
        return Frame::Comment(comment.trim().to_owned());
    }
    let mut id = None;
    let mut event = None;
    let mut data = String::new();
    for line in block.lines() {
        if let Some(v) = line.strip_prefix("id: ") {
            id = Some(v.parse().unwrap());
        } else if let Some(v) = line.strip_prefix("event: ") {
            event = Some(v.to_owned());
        } else if let Some(v) = line.strip_prefix("data: ") {
            data.push_str(v);
        } else {
            panic!("unexpected SSE line {line:?}");
        }
    }
    match (event.as_deref(), id) {
        (Some("caught-up"), None) => {
            assert_eq!(data, "{}");
            Frame::CaughtUp
        }
        (None, Some(id)) => {
            let v: Value = serde_json::from_str(&data).unwrap();
            assert_eq!(v["id"], id, "the frame id and the event id agree");
            Frame::Event(id, v)
        }
        other => panic!("unexpected SSE block {other:?}: {block}"),
    }
}

pub fn is_turn_end(v: &Value) -> bool {
    v["type"] == "turn_end"
}

pub fn types(events: &[(u64, Value)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, v)| v["type"].as_str().unwrap().to_owned())
        .collect()
}

/// Whether process `pid` is gone (an unreaped zombie counts as gone).
pub fn dead(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
    })
}

/// Awaits a condition, polling, for at most 20 s.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let result = tokio::time::timeout(Duration::from_secs(20), async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(result.is_ok(), "timed out waiting for {what}");
}

/// Awaits every pid listed in `file` (one per line) being gone.
pub async fn all_gone(file: &Path) {
    for pid in std::fs::read_to_string(file).unwrap().lines() {
        let pid: u32 = pid.trim().parse().unwrap();
        wait_until(&format!("process {pid} gone"), || dead(pid)).await;
    }
}
