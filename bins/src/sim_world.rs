//! A scripted world on the loopback simulator: GitHub, T3, checks, Slack and
//! ntfy (all simulated, on 127.0.0.1), a clock the script moves, and fresh
//! real adapters for every tick, as a new CronJob process would build them.
//!
//! `afk demo` plays its scenarios in it, and the end-to-end tests use it, so
//! the demo shows exactly what the tests prove.

use std::sync::Arc;
use std::time::Duration;

use afk_adapters::github::{GitHubBuildStage, GitHubSettings, GitHubTracker};
use afk_adapters::http::{Http, HttpSettings, RetryPolicy, Secret};
use afk_adapters::notify::{NtfyNotifier, SlackNotifier};
use afk_adapters::t3::{T3Executor, T3Settings};
use afk_adapters::woodpecker::{WoodpeckerSettings, WoodpeckerStage};
use afk_core::ci::StageProbe;
use afk_core::doorbell::Notifier;
use afk_core::tick::{FixedClock, Ports, TickOptions, TickReport, poll_tick, watch_tick};
use afk_core::{Config, Timestamp};
use afk_sim::{GITHUB_TOKEN, SLACK_PATH, Sim, T3_TOKEN, WOODPECKER_TOKEN, lock};
use checklist::ProgressComment;

/// The repository most scenarios use.
pub const REPO: &str = "acme/infra";
/// When the simulated world starts.
pub const T0: &str = "2026-06-10T12:00:00Z";

/// The simulated world.
#[derive(Debug)]
pub struct World {
    /// The simulator.
    pub sim: Sim,
    /// The clock the ticks read.
    pub clock: FixedClock,
    /// The policy the ticks run with.
    pub config: Config,
}

/// A client with short timeouts and millisecond backoff (loopback only).
pub fn http() -> anyhow::Result<Http> {
    Ok(Http::new(&HttpSettings {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_retries: 2,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_wait: Duration::from_millis(500),
        },
        deadline: None,
    })?)
}

impl World {
    /// A world with `repos` (bare names under `acme`), alice (write) and
    /// mallory (triage) on each, and the loop armed for all of them.
    pub async fn new(repos: &[&str], extra: &[(&str, &str)]) -> anyhow::Result<World> {
        let sim = Sim::start().await;
        let owner_repos: Vec<String> = repos.iter().map(|r| format!("acme/{r}")).collect();
        {
            let mut m = lock(&sim.github);
            m.now = T0.into();
            for r in &owner_repos {
                m.add_repo(r, "main");
                m.set_role(r, "alice", "write");
                m.set_role(r, "mallory", "triage");
            }
        }
        let mut pairs = vec![
            ("AFK_KILL_SWITCH".to_owned(), "false".to_owned()),
            ("AFK_ALLOWLIST".to_owned(), repos.join(",")),
        ];
        pairs.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        let config = Config::from_pairs(pairs)?;
        Ok(World {
            sim,
            clock: FixedClock::at(Timestamp::parse_rfc3339(T0)?),
            config,
        })
    }

    /// The simulated time, RFC 3339.
    pub fn now(&self) -> String {
        afk_core::tick::Clock::now(&self.clock).to_rfc3339()
    }

    /// Moves the clock forward.
    pub fn advance(&self, seconds: u64) {
        self.clock.advance(seconds);
    }

    /// A ready issue in `repo` whose label `labeler` applied.
    pub fn ready(&self, repo: &str, number: u64, body: &str, labeler: &str) {
        let mut m = lock(&self.sim.github);
        let r = format!("acme/{repo}");
        m.add_issue(&r, number, &format!("Task {number}"), body, &[]);
        let now = self.now();
        m.label(&r, number, "ready-for-agent", labeler, &now);
    }

    async fn tick(&self, poll: bool, config: &Config) -> TickReport {
        match self.try_tick(poll, config).await {
            Ok(report) => report,
            Err(e) => {
                let mut report = TickReport::default();
                report.entries.push(afk_core::tick::Entry {
                    level: afk_core::tick::Level::Error,
                    repo: None,
                    issue: None,
                    thread_id: None,
                    action: "start".into(),
                    message: format!("cannot build the adapters: {e}"),
                });
                report
            }
        }
    }

    async fn try_tick(&self, poll: bool, config: &Config) -> anyhow::Result<TickReport> {
        let tracker = Arc::new(GitHubTracker::new(
            http()?,
            GitHubSettings {
                api_url: self.sim.uri(),
                token: Secret::Value(GITHUB_TOKEN.into()),
                default_owner: Some("acme".into()),
                trusted_bots: vec![],
                own_login: None,
            },
        ));
        let executor = T3Executor::new(
            http()?,
            T3Settings {
                base_url: self.sim.uri(),
                web_url: "https://t3.example".into(),
                token: Secret::Value(T3_TOKEN.into()),
                model: "claude-sonnet-4-6".into(),
                instance: "claudeAgent".into(),
                workspace_base: "/data".into(),
                default_owner: Some("acme".into()),
            },
        );
        let build = GitHubBuildStage::new(tracker.clone());
        let slack = SlackNotifier::new(
            http()?,
            Secret::Value(format!("{}{SLACK_PATH}", self.sim.uri())),
        );
        let ntfy = NtfyNotifier::new(
            http()?,
            format!("{}/ntfy", self.sim.uri()),
            Secret::Value("afk".into()),
            Secret::None,
        );
        // The deploy stage applies to repositories registered in the
        // simulated Woodpecker only.
        let deploy = WoodpeckerStage::new(
            http()?,
            WoodpeckerSettings {
                url: format!("{}/woodpecker", self.sim.uri()),
                token: Secret::Value(WOODPECKER_TOKEN.into()),
                default_owner: Some("acme".into()),
            },
        );
        let stages: [&dyn StageProbe; 2] = [&build, &deploy];
        let notifiers: [&dyn Notifier; 2] = [&slack, &ntfy];
        let ports = Ports {
            tracker: tracker.as_ref(),
            executor: &executor,
            stages: &stages,
            notifiers: &notifiers,
            codec: &ProgressComment,
            clock: &self.clock,
        };
        let options = TickOptions::default();
        Ok(if poll {
            poll_tick(&ports, config, &options).await
        } else {
            watch_tick(&ports, config, &options).await
        })
    }

    /// One poll tick.
    pub async fn poll(&self) -> TickReport {
        self.tick(true, &self.config).await
    }

    /// One watch tick.
    pub async fn watch(&self) -> TickReport {
        self.tick(false, &self.config).await
    }

    /// One poll tick with another policy.
    pub async fn poll_with(&self, config: &Config) -> TickReport {
        self.tick(true, config).await
    }

    /// One watch tick with another policy.
    pub async fn watch_with(&self, config: &Config) -> TickReport {
        self.tick(false, config).await
    }

    /// The T3 thread id of (issue, attempt) in `repo`.
    pub fn thread(&self, repo: &str, number: u64, attempt: u32) -> String {
        afk_adapters::t3::thread_id(&format!("acme/{repo}"), number, attempt)
    }

    /// The agent pushes a commit carrying the issue's trailer.
    pub fn push(&self, repo: &str, number: u64, sha: &str) {
        let now = self.now();
        lock(&self.sim.github).push_commit(
            &format!("acme/{repo}"),
            sha,
            &format!("Fix the thing\n\nBecause.\n\nRefs #{number}\nAFK-Issue: {repo}#{number}"),
            &now,
        );
    }

    /// Sets the commit's one check run.
    pub fn ci(&self, repo: &str, sha: &str, state: &str) {
        let (status, conclusion) = match state {
            "running" => ("in_progress", None),
            "green" => ("completed", Some("success")),
            "red" => ("completed", Some("failure")),
            _ => ("queued", None),
        };
        lock(&self.sim.github).set_checks(
            &format!("acme/{repo}"),
            sha,
            &[("test", status, conclusion)],
        );
    }

    /// The issue's labels, sorted.
    pub fn labels(&self, repo: &str, number: u64) -> Vec<String> {
        let mut l = lock(&self.sim.github)
            .issue(&format!("acme/{repo}"), number)
            .labels
            .clone();
        l.sort();
        l
    }

    /// The issue's state, `open` or `closed`.
    pub fn state(&self, repo: &str, number: u64) -> String {
        lock(&self.sim.github)
            .issue(&format!("acme/{repo}"), number)
            .state
            .clone()
    }

    /// afk's progress comments on the issue (there must be at most one).
    pub fn progress_comments(&self, repo: &str, number: u64) -> Vec<String> {
        lock(&self.sim.github)
            .issue(&format!("acme/{repo}"), number)
            .comments
            .iter()
            .filter(|c| c.user == afk_sim::GITHUB_LOGIN && checklist::has_marker(&c.body))
            .map(|c| c.body.clone())
            .collect()
    }

    /// Slack messages received.
    pub fn slack(&self) -> Vec<String> {
        lock(&self.sim.doorbells).slack.clone()
    }

    /// ntfy titles received.
    pub fn ntfy_titles(&self) -> Vec<String> {
        lock(&self.sim.doorbells)
            .ntfy
            .iter()
            .map(|b| b["title"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Turns the T3 thread accepted.
    pub fn turns(&self, thread: &str) -> usize {
        lock(&self.sim.t3)
            .threads
            .get(thread)
            .map_or(0, |t| t.turns_started.len())
    }

    /// Requests the simulator received.
    pub async fn requests(&self) -> usize {
        self.sim.requests().await.len()
    }

    /// Requests that were writes.
    pub async fn writes(&self) -> usize {
        self.sim
            .requests()
            .await
            .iter()
            .filter(|r| r.method.as_str() != "GET" && r.url.path() != "/graphql")
            .count()
    }
}

/// The actions a report took, as `action repo#n` lines (skips left out).
pub fn actions(report: &TickReport) -> Vec<String> {
    report
        .entries
        .iter()
        .filter(|e| e.action != "skip")
        .map(|e| match (&e.repo, e.issue) {
            (Some(r), Some(n)) => format!("{} {r}#{n}", e.action),
            (Some(r), None) => format!("{} {r}", e.action),
            _ => e.action.clone(),
        })
        .collect()
}
