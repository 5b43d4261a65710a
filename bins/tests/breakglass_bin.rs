//! The `breakglass` binary as an operator starts it: settings from env and
//! flags, refusal without credentials, JSON logs without the token, and a
//! clean stop on SIGTERM that kills a running turn.

use crate::processes::{dead, wait_until};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_breakglass");

fn fixture(name: &str) -> String {
    format!(
        "{}/../fixtures/breakglass/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn refused(env: &[(&str, &str)], args: &[&str], want: &str) {
    let out = Command::new(BIN)
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{env:?} {args:?}");
    let logs = String::from_utf8_lossy(&out.stdout);
    assert!(logs.contains(want), "wanted {want:?} in {logs}");
}

#[test]
fn bad_settings_are_refused_before_listening() {
    refused(&[], &[], "no credentials are configured");
    refused(
        &[("BREAKGLASS_TOKEN", "  ")],
        &[],
        "no credentials are configured",
    );
    refused(
        &[("BREAKGLASS_TOKEN_FILE", "/nonexistent/token")],
        &[],
        "cannot read BREAKGLASS_TOKEN_FILE /nonexistent/token",
    );
    refused(
        &[
            ("BREAKGLASS_TOKEN", "t"),
            ("BREAKGLASS_LISTEN", "localhost"),
        ],
        &[],
        "is not an address",
    );
    refused(
        &[],
        &["--identity-header", "bad header"],
        "not a valid header name",
    );
    let out = Command::new(BIN)
        .args(["--turn-timeout-seconds", "0"])
        .env("BREAKGLASS_TOKEN", "t")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap refuses a zero timeout");
}

#[test]
fn it_serves_logs_without_the_token_and_stops_cleanly() {
    let secret = "bin-test-secret-token-42";
    let dir = std::env::temp_dir().join(format!("breakglass-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{secret}\n")).unwrap();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("BREAKGLASS_TOKEN_FILE", &token_file)
        .env("BREAKGLASS_LISTEN", "127.0.0.1:0")
        .env("BREAKGLASS_AGENT_BIN", fixture("fake-claude.sh"))
        .env("BREAKGLASS_SESSIONS_DIR", dir.join("sessions"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listening: serde_json::Value =
        serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(listening["message"], "listening");
    let url = format!("http://{}", listening["address"].as_str().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let session_dir = runtime.block_on(async {
        let http = reqwest::Client::new();
        let health = http.get(format!("{url}/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        // The token from the file (trailing newline trimmed) opens the API.
        let created: serde_json::Value = http
            .post(format!("{url}/api/session"))
            .bearer_auth(secret)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["session_id"].as_str().unwrap().to_owned();
        let started = http
            .post(format!("{url}/api/session/{id}/prompt"))
            .bearer_auth(secret)
            .json(&serde_json::json!({"prompt": "HANG"}))
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), 200);
        dir.join("sessions").join(id)
    });
    let pids_file = session_dir.join("pids");
    wait_until("the agent to start", || {
        std::fs::read_to_string(&pids_file).is_ok_and(|t| t.lines().count() == 2)
    });
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|l| l.contains("\"turns_stopped\":1")),
        "{rest:?}"
    );
    assert!(
        !rest
            .iter()
            .chain([&listening.to_string()])
            .any(|l| l.contains(secret)),
        "the token is never logged"
    );
    // SIGKILL lands asynchronously: "gone" is awaited (bounded), not sampled.
    for pid in std::fs::read_to_string(&pids_file).unwrap().lines() {
        let pid: u32 = pid.trim().parse().unwrap();
        wait_until(&format!("agent process {pid} to be gone"), || dead(pid));
    }
}
