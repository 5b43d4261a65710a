//! Benchmark (not a test): the gateway's own share of a voice turn's time
//! to first word, cold and warm, and its memory with 50 streams at once.
//!
//! Run: `cargo build --release -p bins --bin afk-gateway && cargo run
//! --release -p afk-gateway --example bench_gateway [runs] [ttft_ms]`
//! (defaults 10 and 300). It needs the real CLI in
//! `fixtures/real-cli/node_modules/.bin/claude` (`.ci/run` installs it).
//!
//! Method (also in `docs/gateway.md`):
//!
//! - The **real** `afk-gateway` binary (release build, a process of its
//!   own) runs the **real** `claude` CLI against the scripted model of
//!   `afk_sim::anthropic::Model::start_voice`, which answers every request
//!   after exactly `ttft_ms`: that is the model's own time to first token.
//! - The client sends a streamed chat completion (`stream: true`, one user
//!   message) and stops the clock at the first chunk that carries content.
//!   **Overhead = time to first content chunk − ttft**: what the gateway
//!   and the CLI add. It is split at the moment the model received the
//!   request: before (gateway, process hand-over, the CLI's own work before
//!   it asks the model) and after (the CLI parsing the answer, the gateway
//!   relaying it).
//! - **Cold**: no process waits (`AFK_GATEWAY_WARM_PER_MODEL=0`), every
//!   turn starts its CLI. **Warm**: the default pool; before each turn the
//!   client waits until a process is waiting again (a voice turn comes
//!   seconds after the last one). One unmeasured turn first, then `runs`
//!   turns, one at a time; minimum, median and maximum are reported.
//! - **Resumed conversation, warm**: `runs` turns of one conversation on
//!   `/v1/conversational` (not streamed): reply time − ttft.
//! - **The gateway's own share**: the same warm streamed turns with the
//!   scripted CLI (`fixtures/gateway/fake-claude.py`, a Python script that
//!   answers the moment it reads the message, no model behind it): time
//!   to first content chunk, which is the gateway plus one line of Python.
//! - **50 streams at once**: `AFK_GATEWAY_MAX_TURNS=50`, 50 clients send
//!   a streamed request together, each answered in ten deltas 100 ms apart
//!   by the scripted CLI (`fixtures/gateway/fake-claude.py`), so all 50 are
//!   open at once; every client must read `[DONE]`. Reported: the gateway
//!   process's peak resident set (`VmHWM` of `/proc/<pid>/status`, the
//!   gateway alone, not its CLIs), its resident set before, and the CLIs'
//!   resident sets summed at the peak (sampled every 50 ms).

// A benchmark reports on standard output; that is its whole job.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOKEN: &str = "bench-token-0123456789";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The release binary beside this example's own (`target/release`).
fn gateway_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("afk-gateway");
    assert!(
        bin.exists(),
        "{} is missing: cargo build --release -p bins --bin afk-gateway",
        bin.display()
    );
    bin
}

struct Gateway {
    child: tokio::process::Child,
    url: String,
    pid: u32,
    work: PathBuf,
}

async fn start(dir: &Path, agent: &Path, env: &[(&str, String)]) -> Gateway {
    let work = dir.join("work");
    let mut command = tokio::process::Command::new(gateway_bin());
    command
        .env("AFK_GATEWAY_TOKEN", TOKEN)
        .env("AFK_GATEWAY_LISTEN", "127.0.0.1:0")
        .env("AFK_GATEWAY_AGENT_BIN", agent)
        .env("AFK_GATEWAY_INSTRUCTIONS_FILE", dir.join("agent.md"))
        .env("AFK_GATEWAY_MODELS", "sonnet")
        .env("AFK_GATEWAY_WORK_DIR", &work)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let url = loop {
        let line = lines.next_line().await.unwrap().expect("the gateway logs");
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["message"] == "listening"
        {
            break format!("http://{}", v["address"].as_str().unwrap());
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let pid = child.id().unwrap();
    Gateway {
        child,
        url,
        pid,
        work,
    }
}

/// Processes whose working directory is under `dir`: (pid, command line).
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
        if afk_process::ended(pid) {
            continue;
        }
        if std::fs::read_link(entry.path().join("cwd")).is_ok_and(|c| c.starts_with(dir)) {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    found
}

/// Waits until a process runs under `dir` whose command line holds `flag`.
async fn until_waiting(dir: &Path, flag: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !processes_under(dir).iter().any(|(_, c)| c.contains(flag)) {
        assert!(Instant::now() < deadline, "no process waits with {flag}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Started is not ready: give the waiting CLI time to finish its start.
    tokio::time::sleep(Duration::from_millis(1500)).await;
}

fn kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One streamed turn: (time to first content chunk, time to the model's
/// receipt of the request), both from the request's start.
async fn streamed(
    http: &reqwest::Client,
    url: &str,
    text: &str,
    model: &afk_sim::anthropic::Model,
) -> (Duration, Duration) {
    let before = model.requests().len();
    let start = Instant::now();
    let mut response = http
        .post(format!("{url}/v1/chat/completions"))
        .bearer_auth(TOKEN)
        .json(&json!({"model": "sonnet", "stream": true, "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut seen = String::new();
    let mut first = None;
    while let Some(chunk) = response.chunk().await.unwrap() {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if first.is_none() && seen.contains("\"delta\":{\"content\"") {
            first = Some(start.elapsed());
        }
    }
    assert!(seen.ends_with("data: [DONE]\n\n"), "{seen}");
    let asked = model.requests()[before..]
        .first()
        .map(|s| s.at.duration_since(start))
        .expect("the model was asked");
    (first.expect("a content chunk"), asked)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn summary(label: &str, mut values: Vec<f64>) {
    values.sort_by(f64::total_cmp);
    let median = values[values.len() / 2];
    println!(
        "{label:<44} min {:7.1}  median {:7.1}  max {:7.1} ms  (n = {})",
        values[0],
        median,
        values[values.len() - 1],
        values.len()
    );
}

async fn turns(
    label: &str,
    gateway: &Gateway,
    model: &afk_sim::anthropic::Model,
    ttft: Duration,
    runs: usize,
    warm: bool,
) {
    let http = reqwest::Client::new();
    let mut overhead = Vec::new();
    let mut before = Vec::new();
    for i in 0..=runs {
        if warm {
            until_waiting(&gateway.work, "--no-session-persistence").await;
        } else {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let (first, asked) =
            streamed(&http, &gateway.url, &format!("Wie geht's? ({i})"), model).await;
        if i > 0 {
            overhead.push(ms(first) - ms(ttft));
            before.push(ms(asked));
        }
    }
    summary(&format!("{label}: first content − ttft"), overhead);
    summary(&format!("{label}: request → model asked"), before);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runs: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let ttft = Duration::from_millis(args.get(2).and_then(|a| a.parse().ok()).unwrap_or(300));
    let claude = repo().join("fixtures/real-cli/node_modules/.bin/claude");
    assert!(
        claude.exists(),
        "the real CLI is missing: npm install --prefix fixtures/real-cli --no-package-lock"
    );
    let tmp = tempfile::Builder::new()
        .prefix("afk-gateway-bench-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().to_path_buf();
    std::fs::create_dir_all(dir.join("home/.claude")).unwrap();
    std::fs::write(dir.join("home/.claude/settings.json"), "{}").unwrap();
    std::fs::write(
        dir.join("agent.md"),
        "Sprich kurz, in der Sprache des Nutzers.",
    )
    .unwrap();
    let model = afk_sim::anthropic::Model::start_voice(ttft).await;
    let cli_env = vec![
        ("HOME", dir.join("home").display().to_string()),
        ("ANTHROPIC_BASE_URL", model.uri()),
        ("ANTHROPIC_API_KEY", "sk-loopback-bench".to_owned()),
        ("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1".to_owned()),
    ];
    println!(
        "afk-gateway benchmark: real claude CLI, model ttft {} ms, {runs} runs each",
        ms(ttft)
    );

    let mut cold_env = cli_env.clone();
    cold_env.push(("AFK_GATEWAY_WARM_PER_MODEL", "0".to_owned()));
    cold_env.push(("AFK_GATEWAY_WARM_CONVERSATIONS", "0".to_owned()));
    std::fs::create_dir_all(dir.join("cold")).unwrap();
    std::fs::copy(dir.join("agent.md"), dir.join("cold/agent.md")).unwrap();
    let cold = start(&dir.join("cold"), &claude, &cold_env).await;
    turns(
        "cold (no process waiting)",
        &cold,
        &model,
        ttft,
        runs,
        false,
    )
    .await;
    drop(cold);

    std::fs::create_dir_all(dir.join("warm")).unwrap();
    std::fs::copy(dir.join("agent.md"), dir.join("warm/agent.md")).unwrap();
    let warm = start(&dir.join("warm"), &claude, &cli_env).await;
    turns("warm (a process waiting)", &warm, &model, ttft, runs, true).await;
    let waiting_rss: Vec<u64> = processes_under(&warm.work)
        .iter()
        .map(|(p, _)| kib(*p, "VmRSS:"))
        .collect();
    println!(
        "waiting CLI processes: {} using {} MiB resident in all",
        waiting_rss.len(),
        waiting_rss.iter().sum::<u64>() / 1024
    );

    // A conversation: its first turn, then resumed turns found waiting.
    let http = reqwest::Client::new();
    let mut resumed = Vec::new();
    for i in 0..=runs {
        if i > 0 {
            until_waiting(&warm.work, "--resume").await;
        }
        let start = Instant::now();
        let answer = http
            .post(format!("{}/v1/conversational", warm.url))
            .bearer_auth(TOKEN)
            .json(&json!({"session_id": "bench-call", "message": format!("Und jetzt? ({i})")}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let took = start.elapsed();
        if i > 0 {
            resumed.push(ms(took) - ms(ttft));
        }
    }
    summary("resumed conversation, warm: reply − ttft", resumed);
    drop(warm);

    // The gateway's own share: the same warm turns with the scripted CLI,
    // which answers the moment it reads the message (no model behind it).
    let own = dir.join("own");
    std::fs::create_dir_all(own.join("home")).unwrap();
    std::fs::copy(dir.join("agent.md"), own.join("agent.md")).unwrap();
    let fake = repo().join("fixtures/gateway/fake-claude.py");
    let scripted = start(
        &own,
        &fake,
        &[("HOME", own.join("home").display().to_string())],
    )
    .await;
    let mut shares = Vec::new();
    for i in 0..=runs {
        until_waiting(&scripted.work, "--no-session-persistence").await;
        let start = Instant::now();
        let mut response = http
            .post(format!("{}/v1/chat/completions", scripted.url))
            .bearer_auth(TOKEN)
            .json(&json!({"model": "sonnet", "stream": true, "messages": [{"role": "user", "content": format!("Hallo ({i})")}]}))
            .send()
            .await
            .unwrap();
        let mut seen = String::new();
        let mut first = None;
        while let Some(chunk) = response.chunk().await.unwrap() {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if first.is_none() && seen.contains("\"delta\":{\"content\"") {
                first = Some(start.elapsed());
            }
        }
        if i > 0 {
            shares.push(ms(first.expect("a content chunk")));
        }
    }
    summary("warm, scripted CLI: first content (gateway)", shares);
    drop(scripted);

    // 50 streams at once, the scripted CLI behind the gateway.
    let fifty = dir.join("fifty");
    std::fs::create_dir_all(fifty.join("home")).unwrap();
    std::fs::copy(dir.join("agent.md"), fifty.join("agent.md")).unwrap();
    let gateway = start(
        &fifty,
        &fake,
        &[
            ("HOME", fifty.join("home").display().to_string()),
            ("AFK_GATEWAY_MAX_TURNS", "50".to_owned()),
            ("AFK_GATEWAY_MAX_CONNECTIONS", "256".to_owned()),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = kib(gateway.pid, "VmRSS:");
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let url = gateway.url.clone();
            let http = http.clone();
            tokio::spawn(async move {
                let mut response = http
                    .post(format!("{url}/v1/chat/completions"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"model": "sonnet", "stream": true, "messages": [{"role": "user", "content": format!("SLOW 100 MANY 10 Strom {i}")}]}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 200);
                let mut seen = String::new();
                while let Some(chunk) = response.chunk().await.unwrap() {
                    seen.push_str(&String::from_utf8_lossy(&chunk));
                }
                assert!(seen.ends_with("data: [DONE]\n\n"));
            })
        })
        .collect();
    let mut peak_clis = 0u64;
    let mut peak_open = 0usize;
    while clients.iter().any(|c| !c.is_finished()) {
        let clis: Vec<(u32, String)> = processes_under(&gateway.work)
            .into_iter()
            .filter(|(_, cmd)| cmd.contains("fake-claude"))
            .collect();
        let sum: u64 = clis.iter().map(|(p, _)| kib(*p, "VmRSS:")).sum();
        if sum > peak_clis {
            peak_clis = sum;
        }
        peak_open = peak_open.max(clis.len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for c in clients {
        c.await.unwrap();
    }
    println!(
        "50 streams at once: gateway resident {:.1} MiB before, peak {:.1} MiB (VmHWM); {} CLI processes at most, {:.0} MiB resident in all at the peak",
        rss_before as f64 / 1024.0,
        kib(gateway.pid, "VmHWM:") as f64 / 1024.0,
        peak_open,
        peak_clis as f64 / 1024.0
    );
    let mut gateway = gateway;
    let _ = gateway.child.start_kill();
    let _ = std::fs::remove_dir_all(&dir);
}
