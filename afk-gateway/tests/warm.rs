//! Processes started ahead of turns: a turn takes a waiting one, which is
//! then replaced; one that dies or grows stale is replaced; a resumed
//! conversation's next turn finds its process waiting; the pool is bounded
//! and dies with the gateway; never two turns in one process.

use std::time::Duration;

use afk_gateway::pool::Waiting;

use crate::common::{
    Gateway, all_dead, ask, dead, json, pid, repo, scratch, settings, start, start_with,
    wait_until, wrapper,
};

/// The pid waiting as `what`, once one is.
async fn waiting(gateway: &Gateway, what: &str) -> u32 {
    let mut found = 0;
    wait_until(&format!("a process waiting as {what}"), || {
        found = gateway
            .app
            .pool()
            .waiting()
            .iter()
            .find(|w| w.what == what)
            .map_or(0, |w| w.pid);
        found != 0
    })
    .await;
    found
}

/// A pid waiting as `what` other than `old`, once one is.
async fn replaced(gateway: &Gateway, what: &str, old: u32) -> u32 {
    let mut found = 0;
    wait_until(&format!("{what} to be replaced"), || {
        found = gateway
            .app
            .pool()
            .waiting()
            .iter()
            .find(|w| w.what == what && w.pid != old)
            .map_or(0, |w| w.pid);
        found != 0
    })
    .await;
    found
}

#[tokio::test]
async fn a_turn_takes_the_waiting_process_and_another_takes_its_place() {
    let gateway = start("take").await;
    // The default model's two kinds wait from the start.
    let chat = waiting(&gateway, "chat sonnet").await;
    let conversation = waiting(&gateway, "conversation sonnet").await;
    let (status, _) = json(gateway.chat(ask("eins")).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        gateway.messages()[0].0,
        chat,
        "the waiting process answered"
    );
    assert!(dead(chat), "and it is gone after its one turn");
    let next = replaced(&gateway, "chat sonnet", chat).await;
    let (status, _) = json(gateway.chat(ask("zwei")).await).await;
    assert_eq!(status, 200);
    assert_eq!(gateway.messages()[1].0, next);
    // A conversation's first turn takes the conversation kind.
    let (status, _) = json(gateway.say("c", "hallo").await).await;
    assert_eq!(status, 200);
    assert_eq!(gateway.messages()[2].0, conversation);
    // Another model is started cold the first time, kept warm after.
    let mut haiku = ask("drei");
    haiku["model"] = "haiku".into();
    let (status, _) = json(gateway.chat(haiku.clone()).await).await;
    assert_eq!(status, 200);
    let warm_haiku = waiting(&gateway, "chat haiku").await;
    let (status, _) = json(gateway.chat(haiku).await).await;
    assert_eq!(status, 200);
    assert_eq!(gateway.messages()[4].0, warm_haiku);
}

#[tokio::test]
async fn never_two_turns_in_one_process_even_at_once() {
    let gateway = start("distinct").await;
    let turns: Vec<_> = (0..8)
        .map(|i| {
            let request = gateway
                .post("/v1/chat/completions")
                .json(&ask(&format!("SLOW 20 Nummer {i}")));
            tokio::spawn(async move { request.send().await.unwrap().status() })
        })
        .collect();
    for turn in turns {
        assert_eq!(turn.await.unwrap(), 200);
    }
    let messages = gateway.messages();
    assert_eq!(messages.len(), 8);
    let mut pids: Vec<u32> = messages.iter().map(|(p, _)| *p).collect();
    pids.sort_unstable();
    pids.dedup();
    assert_eq!(pids.len(), 8, "{messages:?}");
    // One waited, seven started cold; once they are over, the refills at
    // once start one waiting process between them, not one each.
    waiting(&gateway, "chat sonnet").await;
    let chat_starts = || {
        gateway
            .calls()
            .iter()
            .filter(|c| {
                c["argv"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == "--no-session-persistence"))
            })
            .count()
    };
    // The stand-in logs its start a moment after it runs: under load the
    // refill's line may trail its process.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while chat_starts() < 1 + 7 + 1 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(chat_starts(), 1 + 7 + 1);
}

#[tokio::test]
async fn a_waiting_process_that_dies_or_grows_stale_is_replaced() {
    let dir = scratch("replace");
    let mut s = settings(&dir);
    s.warm.max_age = Duration::from_secs(3);
    let gateway = start_with(dir, s).await;
    let first = waiting(&gateway, "chat sonnet").await;
    afk_process::terminate(first).unwrap();
    let second = replaced(&gateway, "chat sonnet", first).await;
    // Past its age it is killed and replaced too.
    let third = replaced(&gateway, "chat sonnet", second).await;
    all_dead(&[first, second]).await;
    assert!(!dead(third));
}

#[tokio::test]
async fn a_resumed_conversation_finds_its_process_waiting_and_the_waiting_are_bounded() {
    let dir = scratch("resume");
    let mut s = settings(&dir);
    s.warm.conversations = 1;
    let gateway = start_with(dir, s).await;
    let (status, _) = json(gateway.say("a", "eins").await).await;
    assert_eq!(status, 200);
    let resume_a = wait_resume(&gateway).await;
    let (status, _) = json(gateway.say("b", "eins").await).await;
    assert_eq!(status, 200);
    // Room for one: b's waits, a's is gone.
    let resume_b = wait_resume_other(&gateway, resume_a.pid).await;
    all_dead(&[resume_a.pid]).await;
    let (status, body) = json(gateway.say("b", "zwei").await).await;
    assert_eq!(status, 200);
    assert_eq!(body["reply"], "Hallo! Du sagtest: zwei — Runde 2 👋");
    assert_eq!(
        gateway.messages().last().unwrap().0,
        resume_b.pid,
        "the waiting process answered"
    );
    // a's next turn resumes cold, and still continues the conversation.
    let (_, body) = json(gateway.say("a", "zwei").await).await;
    assert_eq!(body["reply"], "Hallo! Du sagtest: zwei — Runde 2 👋");
}

async fn wait_resume(gateway: &Gateway) -> Waiting {
    wait_resume_other(gateway, 0).await
}

async fn wait_resume_other(gateway: &Gateway, not: u32) -> Waiting {
    let mut found = None;
    wait_until("a resumed process to wait", || {
        found = gateway
            .app
            .pool()
            .waiting()
            .into_iter()
            .find(|w| w.what.starts_with("resume ") && w.pid != not);
        found.is_some()
    })
    .await;
    found.unwrap()
}

#[tokio::test]
async fn shutting_down_kills_every_waiting_process_and_removes_only_its_own_directory() {
    let gateway = start("shutdown").await;
    // Something of someone else's in the work directory stays.
    let theirs = gateway.dir.join("work/theirs.txt");
    std::fs::write(&theirs, "keep me").unwrap();
    let (status, _) = json(gateway.say("c", "eins").await).await;
    assert_eq!(status, 200);
    wait_resume(&gateway).await;
    waiting(&gateway, "chat sonnet").await;
    waiting(&gateway, "conversation sonnet").await;
    let pids: Vec<u32> = gateway.app.pool().waiting().iter().map(|w| w.pid).collect();
    assert_eq!(pids.len(), 3);
    gateway.stop();
    gateway.stopped().await;
    gateway.app.shut_down(Duration::from_secs(5)).await;
    all_dead(&pids).await;
    assert!(gateway.app.pool().waiting().is_empty());
    let left: Vec<_> = std::fs::read_dir(gateway.dir.join("work"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        left,
        ["theirs.txt"],
        "only the run's own directory is removed"
    );
    // Nothing new is started once closed.
    gateway
        .app
        .pool()
        .refill("sonnet", afk_gateway::pool::Kind::Chat)
        .await;
    assert!(gateway.app.pool().waiting().is_empty());
}

/// What process `pid` was told, in order: `blank` for the prime, else the
/// message.
fn told(gateway: &Gateway, of: u32) -> Vec<String> {
    gateway
        .calls()
        .iter()
        .filter(|c| pid(c) == Some(of))
        .filter_map(|c| {
            if c.get("blank").is_some() {
                Some("blank".to_owned())
            } else {
                c["message"].as_str().map(str::to_owned)
            }
        })
        .collect()
}

#[tokio::test]
async fn a_waiting_process_is_primed_with_a_blank_message_before_its_turn() {
    let gateway = start("primed").await;
    let chat = waiting(&gateway, "chat sonnet").await;
    assert!(gateway.app.pool().priming());
    assert_eq!(told(&gateway, chat), ["blank"], "primed while it waits");
    let (status, body) = json(gateway.chat(ask("eins")).await).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hallo! Du sagtest: User: eins — Runde 1 👋"
    );
    assert_eq!(told(&gateway, chat), ["blank", "User: eins"]);
    // A resumed conversation's process is primed too, and its turn still
    // continues the conversation (the prime is no turn of it).
    let (status, _) = json(gateway.say("c", "eins").await).await;
    assert_eq!(status, 200);
    let resume = wait_resume(&gateway).await;
    assert_eq!(told(&gateway, resume.pid), ["blank"]);
    let (_, body) = json(gateway.say("c", "zwei").await).await;
    assert_eq!(body["reply"], "Hallo! Du sagtest: zwei — Runde 2 👋");
    assert_eq!(told(&gateway, resume.pid), ["blank", "zwei"]);
}

#[tokio::test]
async fn a_cli_that_sends_the_prime_to_the_model_never_serves_a_turn_and_priming_stops() {
    let dir = scratch("prime-asked");
    let mut s = settings(&dir);
    let home = dir.join("home");
    s.agent_bin = wrapper(
        &dir,
        &repo().join("fixtures/gateway/fake-claude.py"),
        &[
            ("HOME", home.display().to_string()),
            ("FAKE_CLAUDE_BLANK", "model".to_owned()),
        ],
    )
    .display()
    .to_string();
    let gateway = start_with(dir, s).await;
    wait_until("priming to be turned off", || !gateway.app.pool().priming()).await;
    let chat = waiting(&gateway, "chat sonnet").await;
    let (status, body) = json(gateway.chat(ask("eins")).await).await;
    assert_eq!(status, 200, "{body}");
    // Every process that got the prime as a turn was killed unused; the
    // one that answered waited unprimed.
    let primed: Vec<u32> = gateway
        .calls()
        .iter()
        .filter(|c| c["message"].as_str() == Some(" "))
        .filter_map(pid)
        .collect();
    assert!(!primed.is_empty());
    all_dead(&primed).await;
    let answered: Vec<u32> = gateway
        .messages()
        .into_iter()
        .filter(|(_, m)| m == "User: eins")
        .map(|(p, _)| p)
        .collect();
    assert_eq!(answered, [chat]);
    assert!(!primed.contains(&chat));
}
