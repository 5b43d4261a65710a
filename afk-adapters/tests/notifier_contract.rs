//! The Notifier port's contract, run unchanged against the recording fake and
//! against the Slack and ntfy doorbells talking to the loopback simulator.
//!
//! What every doorbell promises (`afk_core::doorbell::Notifier`): one ring
//! delivers one message that carries the title and the thread link; a
//! service that is down is an error (the tick rings again next time), with
//! nothing delivered and no secret in the error; a service that recovers
//! delivers again.

use afk_adapters::http::Secret;
use afk_adapters::notify::{NtfyNotifier, SlackNotifier};
use afk_core::OutcomeKind;
use afk_core::doorbell::Doorbell;
use afk_loop::ports::Notifier;
use afk_sim::fakes::RecordingNotifier;
use afk_sim::{SLACK_PATH, Sim, lock};

use crate::common::fast_http;

fn bell() -> Doorbell {
    Doorbell {
        by: None,
        kind: OutcomeKind::NeedsHuman,
        repo: "infra".into(),
        issue: 7,
        reason: "the agent asked a question nobody will answer".into(),
        thread_link: Some("https://t3.example/thread-3".into()),
        cost: None,
    }
}

/// A doorbell and the means to observe and break its service.
trait World {
    fn notifier(&self) -> &dyn Notifier;
    /// Every message delivered so far, as text.
    fn delivered(&self) -> Vec<String>;
    fn set_down(&self, down: bool);
    /// What must never appear in an error.
    fn secret(&self) -> Option<String>;
}

struct Recording(RecordingNotifier);

impl World for Recording {
    fn notifier(&self) -> &dyn Notifier {
        &self.0
    }
    fn delivered(&self) -> Vec<String> {
        lock(&self.0.rung)
            .iter()
            .map(|b| {
                format!(
                    "{}\n{}",
                    b.title(),
                    b.thread_link.clone().unwrap_or_default()
                )
            })
            .collect()
    }
    fn set_down(&self, down: bool) {
        self.0.set_failing(down);
    }
    fn secret(&self) -> Option<String> {
        None
    }
}

struct Slack {
    sim: Sim,
    slack: SlackNotifier,
}

impl World for Slack {
    fn notifier(&self) -> &dyn Notifier {
        &self.slack
    }
    fn delivered(&self) -> Vec<String> {
        lock(&self.sim.doorbells).slack.clone()
    }
    fn set_down(&self, down: bool) {
        lock(&self.sim.doorbells).slack_broken = down;
    }
    fn secret(&self) -> Option<String> {
        Some(SLACK_PATH.to_owned())
    }
}

struct Ntfy {
    sim: Sim,
    ntfy: NtfyNotifier,
}

const TOPIC: &str = "afk-alerts-7f3a9c";

impl World for Ntfy {
    fn notifier(&self) -> &dyn Notifier {
        &self.ntfy
    }
    fn delivered(&self) -> Vec<String> {
        lock(&self.sim.doorbells)
            .ntfy
            .iter()
            .map(|body| body.to_string())
            .collect()
    }
    fn set_down(&self, down: bool) {
        lock(&self.sim.doorbells).ntfy_broken = down;
    }
    fn secret(&self) -> Option<String> {
        Some(TOPIC.to_owned())
    }
}

async fn contract(world: &dyn World) {
    let name = world.notifier().name().to_owned();
    assert!(
        !name.trim().is_empty(),
        "a doorbell names itself for the logs"
    );
    let bell = bell();
    world.notifier().ring(&bell).await.unwrap();
    let delivered = world.delivered();
    assert_eq!(delivered.len(), 1, "{name}: one ring, one message");
    assert!(
        delivered[0].contains("[NEEDS-HUMAN] infra#7"),
        "{name}: the title: {}",
        delivered[0]
    );
    assert!(
        delivered[0].contains("https://t3.example/thread-3"),
        "{name}: the thread link: {}",
        delivered[0]
    );

    world.set_down(true);
    let err = world.notifier().ring(&bell).await.unwrap_err();
    assert_eq!(
        world.delivered().len(),
        1,
        "{name}: nothing delivered while down"
    );
    if let Some(secret) = world.secret() {
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains(&secret), "{name} leaks its secret: {text}");
        }
    }

    world.set_down(false);
    world.notifier().ring(&bell).await.unwrap();
    assert_eq!(
        world.delivered().len(),
        2,
        "{name}: a recovered service delivers"
    );
}

#[tokio::test]
async fn the_recording_doorbell_keeps_the_contract() {
    contract(&Recording(RecordingNotifier::default())).await;
}

#[tokio::test]
async fn slack_keeps_the_contract() {
    let sim = Sim::start().await;
    let slack = SlackNotifier::new(
        fast_http(),
        Secret::Value(format!("{}{SLACK_PATH}", sim.uri())),
    );
    contract(&Slack { sim, slack }).await;
}

#[tokio::test]
async fn ntfy_keeps_the_contract() {
    let sim = Sim::start().await;
    let ntfy = NtfyNotifier::new(
        fast_http(),
        format!("{}/ntfy/", sim.uri()),
        Secret::Value(TOPIC.into()),
        Secret::None,
    );
    contract(&Ntfy { sim, ntfy }).await;
}
