//! `afk setup labels` against the loopback GitHub: what is missing is
//! created with afk's colors and meanings, what exists is left alone,
//! `--check` creates nothing, and a label GitHub refuses is a failure that
//! names it. Its requests join the conformance test's.

use afk_adapters::setup::{LabelState, labels, render};
use afk_core::Config;
use afk_sim::{GITHUB_TOKEN, Sim, lock};

use crate::common::github;

async fn world() -> Sim {
    let sim = Sim::start().await;
    {
        let mut m = lock(&sim.github);
        m.add_repo("acme/infra", "main");
        m.add_repo("acme/web", "main");
        m.repo("acme/infra")
            .labels
            .insert("Ready-For-Agent".into(), ("00ff00".into(), None));
    }
    sim
}

fn config() -> Config {
    Config::from_pairs([("AFK_ALLOWLIST", "infra,web")]).unwrap()
}

async fn script(sim: &Sim) -> Vec<String> {
    let tracker = github(&sim.uri(), GITHUB_TOKEN, Some("acme"), Some("afk-bot"));
    let mut seen = Vec::new();
    for check in [true, false, false] {
        let rows = labels(&tracker, &config(), check).await;
        let (text, failed) = render(&rows);
        seen.push(format!("{failed} {text}"));
    }
    seen
}

/// The requests and answers of the script, for the conformance test.
pub async fn setup_exchanges() -> (
    Vec<wiremock::Request>,
    Vec<(String, String, u16, Option<serde_json::Value>)>,
) {
    let sim = world().await;
    lock(&sim.github).record_replies = true;
    script(&sim).await;
    let requests = sim.requests().await;
    let replies = std::mem::take(&mut lock(&sim.github).replies);
    (requests, replies)
}

#[tokio::test]
async fn missing_labels_are_created_and_existing_ones_left_alone() {
    let sim = world().await;
    let seen = script(&sim).await;
    // --check: nine missing, nothing created.
    assert!(seen[0].starts_with("true "), "{}", seen[0]);
    assert_eq!(seen[0].matches("MISSING").count(), 9, "{}", seen[0]);
    // The first run creates them, the ready label on infra (another case) stays.
    assert!(seen[1].starts_with("false "), "{}", seen[1]);
    assert_eq!(seen[1].matches(": created").count(), 9, "{}", seen[1]);
    assert!(
        seen[1].contains("acme/infra: ready-for-agent: exists")
            || seen[1].contains("infra: ready-for-agent: exists"),
        "{}",
        seen[1]
    );
    assert_eq!(seen[2].matches(": exists").count(), 10, "{}", seen[2]);
    let m = lock(&sim.github);
    let web = &m.repos["acme/web"].labels;
    assert_eq!(web["afk-stop"].0, "b60205");
    assert!(
        web["agent-in-progress"]
            .1
            .as_deref()
            .unwrap()
            .starts_with("afk:")
    );
    assert_eq!(
        m.repos["acme/infra"].labels["Ready-For-Agent"].0, "00ff00",
        "left as it was"
    );
}

#[tokio::test]
async fn a_failing_or_a_missing_repository_fails_and_is_named() {
    let sim = world().await;
    lock(&sim.github).broken_repos = vec!["acme/web".into()];
    let tracker = github(&sim.uri(), GITHUB_TOKEN, Some("acme"), Some("afk-bot"));
    let config = Config::from_pairs([("AFK_ALLOWLIST", "infra,web,gone")]).unwrap();
    let rows = labels(&tracker, &config, false).await;
    let (text, failed) = render(&rows);
    assert!(failed, "{text}");
    for repo in ["web", "gone"] {
        assert!(
            rows.iter()
                .filter(|(r, _, _)| r == repo)
                .all(|(_, _, s)| matches!(s, LabelState::Failed(_))),
            "{text}"
        );
        assert!(
            text.contains(&format!("{repo}: afk-stop: FAILED")),
            "{text}"
        );
    }
    // The healthy repository was still set up.
    assert!(text.contains("infra: afk-stop: created"), "{text}");
}
