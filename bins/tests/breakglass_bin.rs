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

/// Creates a breakglass session at `url`; its id.
pub(crate) async fn create_session(http: &reqwest::Client, url: &str, token: &str) -> String {
    let created: serde_json::Value = http
        .post(format!("{url}/api/session"))
        .bearer_auth(token)
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    created["session_id"].as_str().unwrap().to_owned()
}

type Lines = std::io::Lines<BufReader<std::process::ChildStdout>>;

/// Starts the binary on 127.0.0.1 with the scripted agent; its log lines
/// and its URL (from the `listening` line).
fn serve(
    dir: &std::path::Path,
    token_env: (&str, &str),
) -> (std::process::Child, Lines, String, serde_json::Value) {
    serve_with(dir, token_env, &[])
}

/// [`serve`] with more settings.
fn serve_with(
    dir: &std::path::Path,
    token_env: (&str, &str),
    more: &[(&str, String)],
) -> (std::process::Child, Lines, String, serde_json::Value) {
    let mut child = Command::new(BIN)
        .env_clear()
        .env(token_env.0, token_env.1)
        .envs(more.iter().map(|(k, v)| (*k, v.as_str())))
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
    (child, lines, url, listening)
}

/// Creates a session and starts a turn that never ends (its agent and the
/// agent's child record their pids in `<session dir>/pids`); the pids file.
fn start_hanging_turn(url: &str, token: &str, dir: &std::path::Path) -> std::path::PathBuf {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let session_dir = runtime.block_on(async {
        let http = reqwest::Client::new();
        let health = http.get(format!("{url}/health")).send().await.unwrap();
        assert_eq!(health.status(), 200);
        let id = create_session(&http, url, token).await;
        let started = http
            .post(format!("{url}/api/session/{id}/prompt"))
            .bearer_auth(token)
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
    pids_file
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
    // It listens on loopback unless told otherwise.
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
}

/// A token with a line break (or another control character) inside can
/// never match a request: it is refused at start, exit 2, with the key
/// named and the token nowhere in the output. A token file's final newline
/// is fine (the serving tests use one).
#[test]
fn a_token_with_a_newline_inside_is_refused_naming_its_key() {
    let dir = crate::scratch::Scratch::new("breakglass-bad-token");
    let file = dir.join("token");
    std::fs::write(&file, "first-half\nsecond-half\n").unwrap();
    let file = file.display().to_string();
    for (key, value) in [
        ("BREAKGLASS_TOKEN", "first-half\nsecond-half"),
        ("BREAKGLASS_TOKEN", "first-half\u{1}second-half"),
        ("BREAKGLASS_TOKEN_FILE", file.as_str()),
    ] {
        // An address no machine here owns: a server that wrongly accepts
        // the token fails to listen (exit 1) instead of serving forever.
        let out = Command::new(BIN)
            .env_clear()
            .env(key, value)
            .env("BREAKGLASS_LISTEN", "192.0.2.1:9")
            .output()
            .unwrap();
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{key}: {output}");
        assert!(
            output.contains(&format!("{key}: ")) && !output.contains("(or the file"),
            "{key} alone is not named: {output}"
        );
        assert!(
            output.contains("control character"),
            "the problem is not said: {output}"
        );
        assert!(
            !output.contains("first-half") && !output.contains("second-half"),
            "the token is shown: {output}"
        );
    }
}

#[test]
fn it_serves_logs_without_the_token_and_stops_cleanly() {
    let secret = "bin-test-secret-token-42";
    let dir = crate::scratch::Scratch::new("breakglass-bin");
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{secret}\n")).unwrap();
    let token_file_text = token_file.display().to_string();
    let (mut child, lines, url, listening) =
        serve(&dir, ("BREAKGLASS_TOKEN_FILE", &token_file_text));
    // The token from the file (trailing newline trimmed) opens the API.
    let pids_file = start_hanging_turn(&url, secret, &dir);
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

/// A SIGKILLed server takes its agents with it (nothing keeps acting with
/// nobody attached), and every mutating call left an audit line: who, from
/// where, what, and the outcome.
#[test]
fn a_killed_server_leaves_no_agent_and_every_mutation_is_audited() {
    let dir = crate::scratch::Scratch::new("breakglass-kill");
    let (mut child, lines, url, _) = serve(&dir, ("BREAKGLASS_TOKEN", "kill-test-token"));
    let pids_file = start_hanging_turn(&url, "kill-test-token", &dir);
    child.kill().unwrap();
    child.wait().unwrap();
    for pid in std::fs::read_to_string(&pids_file).unwrap().lines() {
        let pid: u32 = pid.trim().parse().unwrap();
        wait_until(
            &format!("agent process {pid} to die with the server"),
            || dead(pid),
        );
    }
    let logs: Vec<serde_json::Value> = lines
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let audits: Vec<&serde_json::Value> = logs.iter().filter(|l| l["message"] == "audit").collect();
    assert_eq!(audits.len(), 2, "{logs:#?}");
    assert_eq!(audits[0]["who"], "token");
    assert_eq!(audits[0]["what"], "/api/session");
    assert_eq!(audits[0]["status"], 200);
    assert!(audits[1]["what"].as_str().unwrap().ends_with("/prompt"));
    assert!(
        audits[1]["from"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
}

/// A client that hangs up during a power verb does not stop it or free
/// its slot early (a second verb meanwhile is 409), and the verb is still
/// audited when it ends; a refused credential is audited too.
#[test]
fn a_verb_outlives_its_client_and_every_refusal_is_audited() {
    let dir = crate::scratch::Scratch::new("breakglass-verb");
    let token = "verb-test-token";
    let (mut child, lines, url, _) = serve_with(
        &dir,
        ("BREAKGLASS_TOKEN", token),
        &[
            ("BREAKGLASS_SSH_BIN", fixture("fake-ssh.sh")),
            ("BREAKGLASS_SSH_HOST", "pause-host".into()),
        ],
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let http = reqwest::Client::new();
        let post = |path: &str, wait: std::time::Duration| {
            http.post(format!("{url}{path}"))
                .bearer_auth(token)
                .json(&serde_json::json!({}))
                .timeout(wait)
                .send()
        };
        // The client gives up long before the verb's 2 s.
        let gone = post("/api/pve/status", std::time::Duration::from_millis(300)).await;
        assert!(gone.is_err(), "the client was meant to hang up");
        let busy = post("/api/pve/status", std::time::Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(busy.status(), 409, "the slot was freed by the hang-up");
        // Once the verb ended, the slot is free again.
        let mut freed = false;
        for _ in 0..100 {
            let again = post("/api/pve/status", std::time::Duration::from_secs(10))
                .await
                .unwrap();
            if again.status() == 200 {
                freed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(freed, "the slot never came free");
        let refused = http
            .post(format!("{url}/api/session"))
            .bearer_auth("wrong-token")
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 401);
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let logs: Vec<serde_json::Value> = lines
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect();
    let audits: Vec<&serde_json::Value> = logs.iter().filter(|l| l["message"] == "audit").collect();
    assert!(
        audits
            .iter()
            .any(|a| a["what"] == "/api/pve/status (client gone)"
                && a["status"] == 200
                && a["who"] == "token"),
        "{audits:#?}"
    );
    assert!(
        audits.iter().any(|a| a["who"] == "unauthenticated"
            && a["status"] == 401
            && a["what"] == "POST /api/session"),
        "{audits:#?}"
    );
    assert!(!logs.iter().any(|l| l.to_string().contains("wrong-token")));
}
