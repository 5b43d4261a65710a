//! Every route's status codes, auth failures, and the power verbs (fuzzed:
//! nothing is spawned unless the verb is exact).

use std::time::Duration;

use breakglass::auth::Auth;
use breakglass::power::{self, PowerSettings};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn health_and_the_page_need_no_credentials() {
    let server = start("open").await;
    let health = server
        .http
        .get(format!("{}/health", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({"status": "ok", "service": "breakglass"})
    );
    let page = server
        .http
        .get(format!("{}/", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("breakglass") && html.contains("/api/session"),
        "the embedded page"
    );
    let missing = server
        .http
        .get(format!("{}/nope", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn every_api_route_refuses_missing_or_wrong_credentials() {
    let server = start("auth").await;
    let id = server.session().await;
    let routes = [
        ("POST", "/api/session".to_owned()),
        ("GET", format!("/api/session/{id}/stream")),
        ("POST", format!("/api/session/{id}/prompt")),
        ("POST", format!("/api/session/{id}/cancel")),
        ("GET", "/api/pve/verbs".to_owned()),
        ("POST", "/api/pve/status".to_owned()),
    ];
    for (method, path) in &routes {
        for auth in [
            None,
            Some("Bearer wrong-token"),
            Some("Bearer "),
            Some(TOKEN),
            Some("Basic dGVzdA=="),
        ] {
            let mut req = server
                .http
                .request(method.parse().unwrap(), format!("{}{path}", server.url));
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            let resp = req.send().await.unwrap();
            assert_eq!(resp.status(), 401, "{method} {path} with {auth:?}");
            assert_eq!(resp.headers()["www-authenticate"], "Bearer");
            let body: Value = resp.json().await.unwrap();
            assert!(!body.to_string().contains(TOKEN));
        }
    }
    // Nothing ran: the verb was never spawned, no turn started.
    assert!(!server.dir.join("calls.log").exists());
    assert!(!server.app.sessions.get(&id).unwrap().turn_running());
}

#[tokio::test]
async fn an_sso_identity_header_works_only_when_enabled() {
    let dir = scratch("sso");
    let mut s = settings(&dir);
    s.auth = Auth::new(
        None,
        Some("X-authentik-username"),
        breakglass::auth::Proxies::parse("127.0.0.1").unwrap(),
    )
    .unwrap();
    let server = start_with(dir, s).await;
    let post = |header: Option<(&str, &str)>| {
        let mut req = server
            .http
            .post(format!("{}/api/session", server.url))
            .header("content-type", "application/json")
            .body("{}");
        if let Some((k, v)) = header {
            req = req.header(k, v);
        }
        req.send()
    };
    assert_eq!(
        post(Some(("X-authentik-username", "alice")))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(
        post(Some(("Authorization", &format!("Bearer {TOKEN}"))))
            .await
            .unwrap()
            .status(),
        401
    );
    // With token mode only, the header is not trusted.
    let plain = start("sso-off").await;
    let resp = plain
        .http
        .post(format!("{}/api/session", plain.url))
        .header("X-authentik-username", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn session_routes_answer_with_the_spec_status_codes() {
    let server = start("codes").await;
    let id = server.session().await;
    let unknown = "6f1c3f5e-6a7b-4c55-9a57-000000000000";
    for bad in [unknown, "not-a-uuid"] {
        assert_eq!(
            server
                .get(&format!("/api/session/{bad}/stream"))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
        assert_eq!(server.prompt(bad, "x").await, 404);
        assert_eq!(
            server
                .post(&format!("/api/session/{bad}/cancel"))
                .send()
                .await
                .unwrap()
                .status(),
            404
        );
    }
    let prompt = |body: &'static str| {
        server
            .post(&format!("/api/session/{id}/prompt"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (body, status) in [
        ("not json", 400),
        ("", 400),
        ("{}", 422),
        ("{\"prompt\": \"\"}", 422),
        ("{\"prompt\": \"   \"}", 422),
        ("{\"prompt\": 7}", 422),
        ("{\"prompt\": \"x\", \"model\": 3}", 422),
        ("[\"prompt\"]", 422),
    ] {
        let resp = prompt(body).await.unwrap();
        assert_eq!(resp.status(), status, "{body:?}");
        assert!(resp.json::<Value>().await.unwrap()["error"].is_string());
    }
    assert!(
        !server.app.sessions.get(&id).unwrap().turn_running(),
        "no bad body started a turn"
    );
    assert_eq!(server.cancel(&id).await, json!({"cancelled": false}));
    let resp = prompt("{\"prompt\": \"GATE hello\"}").await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"status": "started"})
    );
    assert_eq!(
        prompt("{\"prompt\": \"again\"}").await.unwrap().status(),
        409
    );
    assert_eq!(server.cancel(&id).await, json!({"cancelled": true}));
}

#[tokio::test]
async fn power_verbs_run_over_ssh_with_the_spec_status_codes() {
    let server = start("verbs").await;
    let list: Value = server
        .get("/api/pve/verbs")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list,
        json!({"verbs": ["status", "forensics", "reset", "stop", "start", "cycle"], "mutating": ["reset", "stop", "start", "cycle"]})
    );
    let resp = server.post("/api/pve/status").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"verb": "status", "exit_code": 0, "stdout": "status: running\n", "stderr": "", "rejected": false})
    );
    for bad in [
        "STATUS",
        "status%20now",
        "stop;reboot",
        "reboot",
        "status%0A",
        "%20stop",
    ] {
        let resp = server
            .post(&format!("/api/pve/{bad}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["rejected"], true);
        assert_eq!(body["exit_code"], Value::Null);
    }
    let calls = std::fs::read_to_string(server.dir.join("calls.log")).unwrap();
    assert_eq!(calls, "pve status\n", "only the exact verb was spawned");

    // ssh fails: 502 with its stderr.
    let dir = scratch("verbs-fail");
    let mut s = settings(&dir);
    s.power.host = Some("fail-host".into());
    let failing = start_with(dir, s).await;
    let resp = failing.post("/api/pve/reset").send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["exit_code"], 255);
    assert!(
        body["stderr"]
            .as_str()
            .unwrap()
            .contains("Connection refused")
    );

    // ssh hangs: killed at the verb timeout, 502.
    let dir = scratch("verbs-slow");
    let mut s = settings(&dir);
    s.power.host = Some("slow-host".into());
    s.power.timeout = Duration::from_millis(500);
    let slow = start_with(dir, s).await;
    let resp = slow.post("/api/pve/status").send().await.unwrap();
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["stderr"]
            .as_str()
            .unwrap()
            .contains("killed after the verb timeout"),
        "{body}"
    );

    // No host configured: 502 saying so, nothing spawned.
    let dir = scratch("verbs-nohost");
    let mut s = settings(&dir);
    s.power.host = None;
    let nohost = start_with(dir, s).await;
    let resp = nohost.post("/api/pve/stop").send().await.unwrap();
    assert_eq!(resp.status(), 502);
    assert!(
        resp.json::<Value>().await.unwrap()["stderr"]
            .as_str()
            .unwrap()
            .contains("BREAKGLASS_SSH_HOST")
    );
    assert!(!nohost.dir.join("calls.log").exists());
}

fn verb_strategy() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[a-z]{0,10}",
        prop::sample::select(power::VERBS.to_vec()).prop_map(str::to_owned),
        (
            prop::sample::select(power::VERBS.to_vec()),
            "[ ;\\n\\t&|]",
            "[a-z]{0,4}"
        )
            .prop_map(|(v, sep, tail)| format!("{v}{sep}{tail}")),
        prop::sample::select(power::VERBS.to_vec()).prop_map(str::to_uppercase),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn fuzzed_verbs_spawn_nothing_unless_exact(verbs in prop::collection::vec(verb_strategy(), 1..6)) {
        let dir = scratch("fuzz");
        let settings = PowerSettings {
            ssh_bin: logging_ssh(&dir),
            host: Some("pve".into()),
            timeout: Duration::from_secs(10),
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut expected = String::new();
        for verb in &verbs {
            let outcome = runtime.block_on(power::run_verb(&settings, verb, None));
            let exact = power::VERBS.contains(&verb.as_str());
            prop_assert_eq!(outcome.rejected, !exact, "{:?}", verb);
            if exact {
                prop_assert_eq!(outcome.exit_code, Some(0));
                expected.push_str(&format!("pve {verb}\n"));
            } else {
                prop_assert_eq!(outcome.exit_code, None);
            }
        }
        let calls = std::fs::read_to_string(dir.join("calls.log")).unwrap_or_default();
        prop_assert_eq!(calls, expected);
    }
}
