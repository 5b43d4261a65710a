//! `POST /v1/conversational`: a conversation's first turn opens a CLI
//! session, later turns resume it; a failed first turn leaves none; a
//! message is text whatever it starts with.

use serde_json::{Value, json};

use crate::common::{json, start};

/// The session argument (`--session-id X` or `--resume X`) of process `pid`.
fn session_of(gateway: &crate::common::Gateway, pid: u32) -> (String, String) {
    let start = gateway.start_of(pid);
    let argv: Vec<&str> = start["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = argv
        .iter()
        .position(|a| *a == "--session-id" || *a == "--resume")
        .unwrap_or_else(|| panic!("no session argument: {argv:?}"));
    (argv[at].to_owned(), argv[at + 1].to_owned())
}

#[tokio::test]
async fn a_conversation_opens_its_session_then_resumes_it_turn_after_turn() {
    let gateway = start("conversation").await;
    let (status, first) = json(gateway.say("call-1", "Guten Tag").await).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(
        first,
        json!({"session_id": "call-1", "reply": "Hallo! Du sagtest: Guten Tag — Runde 1 👋"})
    );
    let (_, second) = json(gateway.say("call-1", "Wie geht's?").await).await;
    assert_eq!(
        second["reply"],
        "Hallo! Du sagtest: Wie geht's? — Runde 2 👋"
    );
    let (_, third) = json(gateway.say("call-1", "Tschüss").await).await;
    assert_eq!(third["reply"], "Hallo! Du sagtest: Tschüss — Runde 3 👋");
    // Another conversation is another session.
    let (_, other) = json(gateway.say("call-2", "Hallo").await).await;
    assert_eq!(other["reply"], "Hallo! Du sagtest: Hallo — Runde 1 👋");
    let messages = gateway.messages();
    let sessions: Vec<(String, String)> = messages
        .iter()
        .map(|(pid, _)| session_of(&gateway, *pid))
        .collect();
    assert_eq!(sessions[0].0, "--session-id");
    assert_eq!(sessions[1], ("--resume".to_owned(), sessions[0].1.clone()));
    assert_eq!(sessions[2], ("--resume".to_owned(), sessions[0].1.clone()));
    assert_eq!(sessions[3].0, "--session-id");
    assert_ne!(sessions[3].1, sessions[0].1);
    // Never two turns in one process.
    let mut pids: Vec<u32> = messages.iter().map(|(p, _)| *p).collect();
    pids.dedup();
    assert_eq!(pids.len(), messages.len());
}

#[tokio::test]
async fn a_failed_first_turn_is_retried_as_a_new_conversation() {
    let gateway = start("first-fails").await;
    let (status, failed) = json(gateway.say("call-9", "FAIL please").await).await;
    assert_eq!(status, 503, "{failed}");
    assert_eq!(failed["error"], "execution failed");
    let detail = failed["detail"].as_str().unwrap();
    assert!(
        detail.contains("model overloaded, try again later"),
        "{detail}"
    );
    let (status, retried) = json(gateway.say("call-9", "Noch einmal").await).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(
        retried["reply"],
        "Hallo! Du sagtest: Noch einmal — Runde 1 👋"
    );
    let messages = gateway.messages();
    let first = session_of(&gateway, messages[0].0);
    let retry = session_of(&gateway, messages[1].0);
    assert_eq!(first.0, "--session-id");
    assert_eq!(
        retry.0, "--session-id",
        "a new session, not a resume of the failed one"
    );
    assert_ne!(first.1, retry.1);
    // A later turn that fails keeps the conversation: the next one resumes.
    let (status, _) = json(gateway.say("call-9", "APIERR").await).await;
    assert_eq!(status, 503);
    let (_, after) = json(gateway.say("call-9", "Und jetzt?").await).await;
    assert_eq!(after["reply"], "Hallo! Du sagtest: Und jetzt? — Runde 3 👋");
}

#[tokio::test]
async fn a_message_is_text_whatever_it_starts_with_and_reads_no_file() {
    let gateway = start("text").await;
    let secret = gateway.dir.join("secret.txt");
    std::fs::write(&secret, "CANARY-7f3a\n").unwrap();
    for message in [
        "-p --dangerously-skip-permissions".to_owned(),
        "--settings={\"hooks\":{}} hallo".to_owned(),
        "/clear".to_owned(),
        format!("@{}", secret.display()),
        format!("was steht in @{} ?", secret.display()),
    ] {
        let (status, body) = json(gateway.say("text", &message).await).await;
        assert_eq!(status, 200, "{message}: {body}");
        let reply = body["reply"].as_str().unwrap();
        assert!(
            reply.contains(message.trim_start_matches('/')),
            "{message}: {reply}"
        );
        assert!(
            !reply.contains("isn't available"),
            "taken for a command: {reply}"
        );
        assert!(!reply.contains("CANARY"), "a file was read: {reply}");
    }
    // The CLI got each message as a message (a leading `/` after a space).
    let got: Vec<String> = gateway.messages().into_iter().map(|(_, m)| m).collect();
    assert_eq!(got[0], "-p --dangerously-skip-permissions");
    assert_eq!(got[2], " /clear");
}

#[tokio::test]
async fn bad_conversational_requests_are_refused_naming_the_field() {
    let gateway = start("conv-refusals").await;
    for (body, param) in [
        (json!({"message": "x"}), "session_id"),
        (json!({"session_id": "", "message": "x"}), "session_id"),
        (
            json!({"session_id": "a\u{0}b", "message": "x"}),
            "session_id",
        ),
        (json!({"session_id": "c"}), "message"),
        (json!({"session_id": "c", "message": 5}), "message"),
        (
            json!({"session_id": "c", "message": "x", "model": "gpt-4o"}),
            "model",
        ),
    ] {
        let (status, answer) = json(
            gateway
                .post("/v1/conversational")
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["param"], Value::from(param), "{answer}");
    }
    assert!(gateway.messages().is_empty());
}
