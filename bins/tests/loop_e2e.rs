//! The AFK loop end to end: the real poll and watch ticks with the real
//! GitHub, T3, checks, Slack and ntfy adapters, against the loopback
//! simulator, through every scenario of `shared/spec/03-loop.md`.

use afk_core::Config;
use afk_sim::lock;

use crate::world::{REPO, World, actions};

const IN_PROGRESS: &str = "agent-in-progress";
const READY: &str = "ready-for-agent";
const HUMAN: &str = "ready-for-human";

#[tokio::test]
async fn happy_path_to_a_closed_issue_with_one_comment_and_one_doorbell() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "Rotate the certificates.", "alice");

    let report = w.poll().await;
    assert_eq!(report.dispatched, ["infra#7"], "{:#?}", report.entries);
    assert!(!report.failed());
    assert_eq!(w.labels("infra", 7), [IN_PROGRESS, READY]);
    let thread = w.thread("infra", 7, 0);
    assert_eq!(w.turns(&thread), 1, "one opening turn");
    let opening = lock(&w.sim.t3).threads[&thread].messages[0]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        opening.contains("AFK-Issue: infra#7") && opening.contains("Your task is issue infra#7")
    );
    assert!(w.progress_comments("infra", 7)[0].contains("- [~] Worktree created"));

    // The agent works; nothing changed, so nothing is written.
    w.advance(300);
    let writes = w.writes().await;
    let report = w.watch().await;
    assert_eq!(actions(&report), ["wait infra#7"]);
    assert_eq!(
        w.writes().await,
        writes,
        "a tick that changes nothing writes nothing"
    );

    // A second poll does not dispatch again: the repository is locked.
    assert!(w.poll().await.dispatched.is_empty());

    // The agent pushes; CI runs.
    w.advance(600);
    w.push("infra", 7, "abc1234def");
    w.ci("infra", "abc1234def", "running");
    let report = w.watch().await;
    assert_eq!(actions(&report), ["wait infra#7"]);
    assert!(w.progress_comments("infra", 7)[0].contains("- [~] CI green on pushed commit"));

    // CI goes green: the issue closes, the lock goes, the doorbell rings once.
    w.advance(300);
    w.ci("infra", "abc1234def", "green");
    let report = w.watch().await;
    assert_eq!(
        actions(&report),
        ["close_success infra#7", "ring infra#7"],
        "{:#?}",
        report.entries
    );
    assert_eq!(w.state("infra", 7), "closed");
    assert_eq!(w.labels("infra", 7), [READY]);
    let comments = w.progress_comments("infra", 7);
    assert_eq!(comments.len(), 1, "one progress comment, edited in place");
    assert!(comments[0].contains("- [x] Done — issue closed"));
    assert!(comments[0].contains("\"outcome\":{\"kind\":\"done\""));
    assert!(comments[0].contains("\"notified\":true"));
    assert_eq!(w.slack().len(), 1);
    assert!(w.slack()[0].contains("[DONE] infra#7 landed"));
    assert!(w.slack()[0].contains(&format!("https://t3.example/{thread}")));
    assert_eq!(w.ntfy_titles(), ["[DONE] infra#7 landed"]);

    // Later ticks leave it alone.
    assert!(actions(&w.watch().await).is_empty());
    assert!(w.poll().await.dispatched.is_empty());
    assert_eq!(w.slack().len(), 1);
}

#[tokio::test]
async fn fix_forward_then_green() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    w.poll().await;
    let thread = w.thread("infra", 7, 0);
    w.advance(600);
    w.push("infra", 7, "bad0001aaa");
    w.ci("infra", "bad0001aaa", "red");
    lock(&w.sim.t3).finish_turn(&thread, &w.now());
    let report = w.watch().await;
    assert_eq!(
        actions(&report),
        ["fix_forward infra#7"],
        "{:#?}",
        report.entries
    );
    assert_eq!(
        w.turns(&thread),
        2,
        "the corrective turn went to the same, idle thread"
    );
    let corrective = lock(&w.sim.t3).threads[&thread].messages[1]["text"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        corrective.contains("red on commit bad0001aaa"),
        "{corrective}"
    );

    // The corrective turn is being worked on: no second turn, however often we tick.
    for _ in 0..3 {
        w.advance(60);
        let report = w.watch().await;
        assert_eq!(actions(&report), ["wait infra#7"]);
    }
    assert_eq!(w.turns(&thread), 2);

    // The fix lands and goes green.
    w.advance(600);
    w.push("infra", 7, "good002bbb");
    w.ci("infra", "good002bbb", "green");
    let report = w.watch().await;
    assert_eq!(actions(&report), ["close_success infra#7", "ring infra#7"]);
    let comment = &w.progress_comments("infra", 7)[0];
    assert!(
        comment.contains("_Fix-forward: 1 attempt(s)._"),
        "{comment}"
    );
    assert_eq!(w.state("infra", 7), "closed");
}

#[tokio::test]
async fn a_spent_budget_freezes_the_run_for_a_human() {
    let w = World::new(&["infra"], &[("AFK_FIX_FORWARD_MAX_ATTEMPTS", "1")])
        .await
        .unwrap();
    w.ready("infra", 7, "", "alice");
    w.poll().await;
    let thread = w.thread("infra", 7, 0);
    w.advance(600);
    w.push("infra", 7, "bad0001aaa");
    w.ci("infra", "bad0001aaa", "red");
    lock(&w.sim.t3).finish_turn(&thread, &w.now());
    assert_eq!(actions(&w.watch().await), ["fix_forward infra#7"]);
    // The agent finishes its corrective turn without fixing anything.
    w.advance(600);
    lock(&w.sim.t3).finish_turn(&thread, &w.now());
    let report = w.watch().await;
    assert_eq!(
        actions(&report),
        ["freeze_escalate infra#7", "ring infra#7"],
        "{:#?}",
        report.entries
    );
    assert_eq!(
        w.labels("infra", 7),
        [HUMAN],
        "in-progress and ready removed, ready-for-human added"
    );
    assert_eq!(w.state("infra", 7), "open");
    assert_eq!(
        w.ntfy_titles(),
        ["[FROZEN] infra#7 frozen — budget exhausted"]
    );
    assert!(w.slack()[0].contains("fix-forward budget spent"));
    // Handed to a human: never dispatched again.
    assert!(w.poll().await.dispatched.is_empty());
}

#[tokio::test]
async fn a_thread_that_errors_before_pushing_needs_a_human() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    w.poll().await;
    w.advance(120);
    lock(&w.sim.t3).fail_turn(&w.thread("infra", 7, 0), &w.now());
    let report = w.watch().await;
    assert_eq!(
        actions(&report),
        ["escalate_prepush infra#7", "ring infra#7"]
    );
    assert_eq!(w.labels("infra", 7), [HUMAN]);
    assert!(w.slack()[0].contains("[NEEDS-HUMAN] infra#7 needs a human"));
    assert!(w.slack()[0].contains("errored before anything was pushed"));
}

#[tokio::test]
async fn a_thread_waiting_for_input_needs_a_human() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    w.poll().await;
    w.advance(120);
    lock(&w.sim.t3).request_input(&w.thread("infra", 7, 0), &w.now());
    let report = w.watch().await;
    assert_eq!(
        actions(&report),
        ["escalate_prepush infra#7", "ring infra#7"]
    );
    assert!(w.slack()[0].contains("waiting for input"));
}

#[tokio::test]
async fn a_run_stalled_past_the_prepush_cap_needs_a_human() {
    let w = World::new(&["infra"], &[("AFK_PREPUSH_MAX_SECONDS", "3600")])
        .await
        .unwrap();
    w.ready("infra", 7, "", "alice");
    w.poll().await;
    w.advance(1800);
    lock(&w.sim.t3).run_turn(&w.thread("infra", 7, 0), &w.now());
    assert_eq!(actions(&w.watch().await), ["wait infra#7"]);
    w.advance(1800);
    let report = w.watch().await;
    assert_eq!(
        actions(&report),
        ["escalate_prepush infra#7", "ring infra#7"]
    );
    assert!(w.slack()[0].contains("stalled: nothing pushed 3600s after dispatch"));
}

#[tokio::test]
async fn ci_that_never_starts_is_escalated() {
    let w = World::new(&["infra"], &[("AFK_CI_START_MAX_SECONDS", "900")])
        .await
        .unwrap();
    w.ready("infra", 7, "", "alice");
    w.poll().await;
    w.advance(600);
    w.push("infra", 7, "abc1234def");
    assert_eq!(actions(&w.watch().await), ["wait infra#7"]);
    w.advance(900);
    let report = w.watch().await;
    assert_eq!(
        actions(&report),
        ["freeze_escalate infra#7", "ring infra#7"]
    );
    assert!(w.slack()[0].contains("CI never started"));
    assert_eq!(w.labels("infra", 7), [HUMAN]);
}

#[tokio::test]
async fn an_untrusted_label_is_never_dispatched() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "", "mallory");
    let report = w.poll().await;
    assert!(report.dispatched.is_empty());
    assert!(
        report
            .entries
            .iter()
            .any(|e| e.action == "untrusted" && e.message.contains("mallory has read permission"))
    );
    assert!(lock(&w.sim.t3).threads.is_empty());
    assert!(
        !w.sim
            .requests()
            .await
            .iter()
            .any(|r| r.url.path().starts_with("/api/orchestration")),
        "T3 was never called"
    );
    assert_eq!(w.labels("infra", 7), [READY]);
}

#[tokio::test]
async fn a_blocked_issue_waits_until_its_blocker_closes() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    lock(&w.sim.github).add_issue(REPO, 3, "Blocker", "", &[]);
    w.ready(
        "infra",
        7,
        "Needs the new CA first.\n\nBlocked by #3",
        "alice",
    );
    let report = w.poll().await;
    assert!(report.dispatched.is_empty());
    assert!(
        report
            .entries
            .iter()
            .any(|e| e.message.contains("blocked by open issue(s) #3"))
    );
    lock(&w.sim.github).issue(REPO, 3).state = "closed".into();
    assert_eq!(w.poll().await.dispatched, ["infra#7"]);
}

#[tokio::test]
async fn the_kill_switch_stops_the_poller_cold_and_pauses_fix_forward() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    let killed = Config {
        kill_switch: true,
        ..w.config.clone()
    };
    let report = w.poll_with(&killed).await;
    assert!(report.disabled);
    assert_eq!(
        w.requests().await,
        0,
        "the disabled poller makes no request at all"
    );

    // A run already in flight is still watched, but gets no corrective turn.
    w.poll().await;
    let thread = w.thread("infra", 7, 0);
    w.advance(600);
    w.push("infra", 7, "bad0001aaa");
    w.ci("infra", "bad0001aaa", "red");
    lock(&w.sim.t3).finish_turn(&thread, &w.now());
    let report = w.watch_with(&killed).await;
    assert!(
        actions(&report).contains(&"paused infra#7".to_owned()),
        "{:?}",
        actions(&report)
    );
    assert_eq!(
        w.turns(&thread),
        1,
        "no corrective turn under the kill switch"
    );
    // It still finalises: green closes.
    w.ci("infra", "bad0001aaa", "green");
    let report = w.watch_with(&killed).await;
    assert!(actions(&report).contains(&"close_success infra#7".to_owned()));
    assert_eq!(w.state("infra", 7), "closed");
}

#[tokio::test]
async fn one_repository_failing_does_not_stop_another() {
    let w = World::new(&["infra", "web"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    w.ready("web", 9, "", "alice");
    lock(&w.sim.github).broken_repos = vec!["acme/web".into()];
    let report = w.poll().await;
    assert_eq!(report.dispatched, ["infra#7"]);
    assert!(report.failed());
    assert!(report.failures().any(|e| e.repo.as_deref() == Some("web")));
    // The watcher, too, carries on with the healthy repository.
    w.advance(600);
    w.push("infra", 7, "abc1234def");
    w.ci("infra", "abc1234def", "green");
    let report = w.watch().await;
    assert!(actions(&report).contains(&"close_success infra#7".to_owned()));
    assert!(report.failed());
}

#[tokio::test]
async fn a_failed_doorbell_is_rung_again_next_tick() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    w.poll().await;
    w.advance(600);
    w.push("infra", 7, "abc1234def");
    w.ci("infra", "abc1234def", "green");
    {
        let mut d = lock(&w.sim.doorbells);
        d.slack_broken = true;
        d.ntfy_broken = true;
    }
    let report = w.watch().await;
    assert!(
        report.failed(),
        "a doorbell that failed everywhere fails the run"
    );
    assert_eq!(
        w.labels("infra", 7),
        [IN_PROGRESS, READY],
        "the lock stays so the next tick comes back"
    );
    {
        let mut d = lock(&w.sim.doorbells);
        d.slack_broken = false;
        d.ntfy_broken = false;
    }
    let report = w.watch().await;
    assert_eq!(
        actions(&report),
        ["ring infra#7"],
        "finishes the recorded outcome without deciding again"
    );
    assert_eq!(w.slack().len(), 1);
    assert_eq!(w.labels("infra", 7), [READY]);
}

#[tokio::test]
async fn a_quiet_poll_costs_requests_per_repository_not_per_issue() {
    let mut counts = Vec::new();
    for issues_per_repo in [3u64, 40] {
        let repos: Vec<String> = (1..=20).map(|i| format!("svc{i:02}")).collect();
        let names: Vec<&str> = repos.iter().map(String::as_str).collect();
        let w = World::new(&names, &[]).await.unwrap();
        for r in &repos {
            // Every repository already has a run in flight: nothing can start.
            w.ready(r, 1000, "", "alice");
            lock(&w.sim.github)
                .issue(&format!("acme/{r}"), 1000)
                .labels
                .push(IN_PROGRESS.into());
            for n in 1..=issues_per_repo {
                w.ready(r, n, "", "alice");
            }
        }
        let report = w.poll().await;
        assert!(report.dispatched.is_empty() && !report.failed());
        counts.push(w.requests().await);
    }
    println!(
        "quiet poll tick, 20 repositories: {} requests with 3 ready issues each, {} with 40 each",
        counts[0], counts[1]
    );
    assert_eq!(counts[0], counts[1], "requests do not grow with issues");
    assert_eq!(counts[0], 40, "two listings per repository");
}

#[tokio::test]
async fn a_deploy_stage_holds_the_close_until_the_pipeline_succeeds() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    lock(&w.sim.woodpecker).add_repo(REPO);
    w.ready("infra", 7, "", "alice");
    w.poll().await;
    w.advance(600);
    w.push("infra", 7, "abc1234def");
    w.ci("infra", "abc1234def", "green");
    let created = afk_core::Timestamp::parse_rfc3339(&w.now())
        .unwrap()
        .unix_seconds();
    lock(&w.sim.woodpecker).run(REPO, "abc1234def", "failure", created);
    // A failed deploy pipeline, then its restart, still running: pending.
    lock(&w.sim.woodpecker).run(REPO, "abc1234def", "running", created + 60);
    let report = w.watch().await;
    assert_eq!(actions(&report), ["wait infra#7"], "{:#?}", report.entries);
    assert_eq!(w.state("infra", 7), "open");
    lock(&w.sim.woodpecker).set_status(REPO, "abc1234def", "success");
    let report = w.watch().await;
    assert_eq!(actions(&report), ["close_success infra#7", "ring infra#7"]);
}
