//! The official `openai` Python client as the caller: `.ci/run` installs
//! the pinned version from PyPI. Outside CI a machine without it skips
//! these tests and says so; under `CI=true` a missing client fails them.

use std::path::Path;

use serde_json::Value;

use crate::common::{TOKEN, start};

/// Runs the client script against `url`; its report, or `None` (outside
/// CI) when Python or the client is missing.
#[allow(clippy::print_stderr)] // a skipped test must say so
pub async fn run_client(url: &str, token: &str, model: &str) -> Option<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let probe = tokio::process::Command::new("python3")
        .args(["-c", "import openai"])
        .output()
        .await;
    if !probe.is_ok_and(|o| o.status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "the openai Python client is not installed: python3 -m pip install openai==3.63.0 (.ci/run does)"
        );
        eprintln!(
            "skipped: the openai Python client is not installed (python3 -m pip install openai==3.63.0)"
        );
        return None;
    }
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(300),
        tokio::process::Command::new("python3")
            .arg(&script)
            .env("GATEWAY_URL", url)
            .env("GATEWAY_TOKEN", token)
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
        "the client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}")))
}

/// What every report must say, whatever the CLI behind the gateway; the
/// reply's text is checked by `reply`.
pub fn check_report(report: &Value, model: &str, reply: impl Fn(&str)) {
    let whole = &report["whole"];
    assert_eq!(whole["object"], "chat.completion", "{report}");
    assert_eq!(whole["model"], model);
    assert_eq!(whole["role"], "assistant");
    assert_eq!(whole["finish_reason"], "stop");
    assert!(whole["id"].as_str().unwrap().starts_with("chatcmpl-"));
    reply(whole["content"].as_str().unwrap());
    let usage = &whole["usage"];
    let (p, c, t) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
        usage["total_tokens"].as_u64().unwrap(),
    );
    assert!(p > 0 && c > 0 && t == p + c, "{usage}");
    let stream = &report["stream"];
    assert_eq!(
        stream["ids"].as_array().unwrap().len(),
        1,
        "one id per answer"
    );
    assert_eq!(
        stream["objects"],
        serde_json::json!(["chat.completion.chunk"])
    );
    assert_eq!(stream["roles"], serde_json::json!(["assistant"]));
    assert_eq!(stream["finish_reasons"], serde_json::json!(["stop"]));
    let streamed: String = stream["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    reply(&streamed);
    assert_eq!(stream["usage"].as_array().unwrap().len(), 1, "{stream}");
    reply(report["helper"].as_str().unwrap());
    assert_eq!(report["bad_model"]["status"], 400, "{report}");
    assert!(
        report["bad_model"]["message"]
            .as_str()
            .unwrap()
            .contains("supported models"),
        "{report}"
    );
    assert_eq!(report["bad_key"]["status"], 401, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_openai_client_streams_and_not_and_reads_the_errors() {
    let gateway = start("openai-client").await;
    let Some(report) = run_client(&gateway.url, TOKEN, "sonnet").await else {
        return;
    };
    check_report(&report, "sonnet", |text| {
        assert_eq!(
            text, "Hallo! Du sagtest: User: Und das Wetter? ☀️ — Runde 1 👋",
            "{report}"
        );
    });
    // Several chunks: the CLI streamed word by word.
    assert!(
        report["stream"]["contents"].as_array().unwrap().len() > 3,
        "{report}"
    );
    assert!(report["version"].as_str().unwrap().starts_with('3'));
}
