//! Every adapter a tick needs, built from typed, already validated settings:
//! one shared HTTP client, the GitHub tracker and build stage, the T3
//! executor, the optional deploy (Woodpecker) and rollout (Kubernetes)
//! stages, and the doorbells (Slack, ntfy, or the log when neither is set).
//!
//! The binaries turn flags and environment into [`ServiceSettings`] (and say
//! which setting is missing); this module only builds and runs. It decides
//! nothing: the tick it runs is `afk_core::tick`'s.

use std::sync::Arc;

use afk_core::{Config, Timestamp};
use afk_loop::ports::Notifier;
use afk_loop::ports::StageProbe;
use afk_loop::{
    Clock, Ports, StopTarget, TickOptions, TickReport, poll_tick, stop_runs, watch_tick,
};

use crate::github::{GitHubBuildStage, GitHubSettings, GitHubTracker};
use crate::http::{Http, HttpSettings, Secret};
use crate::notify::{LogNotifier, NtfyNotifier, SlackNotifier};
use crate::rollout::{RolloutStage, RolloutTargets};
use crate::t3::{T3Executor, T3Settings};
use crate::woodpecker::{WoodpeckerSettings, WoodpeckerStage};

/// Which tick runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickKind {
    /// `afk-poller`.
    Poll,
    /// `afk-watcher`.
    Watch,
    /// `afk stop` (one run) or `afk halt` (every run), by the named operator.
    Stop(StopTarget, String),
}

impl TickKind {
    /// `poll`, `watch` or `stop`.
    pub fn as_str(&self) -> &'static str {
        match self {
            TickKind::Poll => "poll",
            TickKind::Watch => "watch",
            TickKind::Stop(..) => "stop",
        }
    }
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_offset_date_time(time::OffsetDateTime::now_utc())
    }
}

/// ntfy's settings.
#[derive(Debug)]
pub struct NtfySettings {
    /// The server.
    pub url: String,
    /// The topic (on public servers a password).
    pub topic: Secret,
    /// The access token, or `Secret::None`.
    pub token: Secret,
}

/// Everything needed to build the adapters of an armed loop.
#[derive(Debug)]
pub struct ServiceSettings {
    /// The shared client's timeouts, retries and deadline.
    pub http: HttpSettings,
    /// The tracker.
    pub github: GitHubSettings,
    /// The executor.
    pub t3: T3Settings,
    /// The deploy stage, when configured.
    pub woodpecker: Option<WoodpeckerSettings>,
    /// The rollout stage's targets, when configured.
    pub rollout: Option<RolloutTargets>,
    /// The Slack webhook, when configured.
    pub slack: Option<Secret>,
    /// ntfy, when configured.
    pub ntfy: Option<NtfySettings>,
}

/// The built adapters.
pub struct Services {
    tracker: Arc<GitHubTracker>,
    executor: T3Executor,
    build: GitHubBuildStage,
    deploy: Option<WoodpeckerStage>,
    rollout: Option<RolloutStage>,
    notifiers: Vec<Box<dyn Notifier>>,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services").finish_non_exhaustive()
    }
}

impl Services {
    /// Builds every adapter.
    ///
    /// # Errors
    /// A message when the HTTP client or the in-cluster Kubernetes client
    /// cannot be built.
    pub fn build(settings: ServiceSettings) -> Result<Services, String> {
        let http = Http::new(&settings.http).map_err(|e| e.to_string())?;
        let tracker = Arc::new(GitHubTracker::new(http.clone(), settings.github));
        let executor = T3Executor::new(http.clone(), settings.t3);
        let deploy = settings
            .woodpecker
            .map(|w| WoodpeckerStage::new(http.clone(), w));
        let rollout = settings
            .rollout
            .map(RolloutStage::in_cluster)
            .transpose()
            .map_err(|e| e.to_string())?;
        let mut notifiers: Vec<Box<dyn Notifier>> = Vec::new();
        if let Some(webhook) = settings.slack {
            notifiers.push(Box::new(SlackNotifier::new(http.clone(), webhook)));
        }
        if let Some(n) = settings.ntfy {
            notifiers.push(Box::new(NtfyNotifier::new(
                http.clone(),
                n.url,
                n.topic,
                n.token,
            )));
        }
        if notifiers.is_empty() {
            notifiers.push(Box::new(LogNotifier));
        }
        Ok(Services {
            build: GitHubBuildStage::new(tracker.clone()),
            tracker,
            executor,
            deploy,
            rollout,
            notifiers,
        })
    }

    /// Runs one tick.
    pub async fn tick(
        &self,
        kind: &TickKind,
        config: &Config,
        options: &TickOptions,
    ) -> TickReport {
        let mut stages: Vec<&dyn StageProbe> = vec![&self.build];
        if let Some(d) = &self.deploy {
            stages.push(d);
        }
        if let Some(r) = &self.rollout {
            stages.push(r);
        }
        let notifiers: Vec<&dyn Notifier> = self.notifiers.iter().map(AsRef::as_ref).collect();
        let ports = Ports {
            tracker: self.tracker.as_ref(),
            executor: &self.executor,
            stages: &stages,
            notifiers: &notifiers,
            clock: &SystemClock,
        };
        match kind {
            TickKind::Poll => poll_tick(&ports, config, options).await,
            TickKind::Watch => watch_tick(&ports, config, options).await,
            TickKind::Stop(target, by) => stop_runs(&ports, config, options, target, by).await,
        }
    }

    /// Requests made so far, by every adapter (they share one client and
    /// one counter).
    pub fn api_calls(&self) -> u64 {
        afk_loop::ports::Tracker::api_calls(self.tracker.as_ref())
    }

    /// The GitHub budget the last answer reported.
    pub fn rate_limit_remaining(&self) -> Option<u64> {
        afk_loop::ports::Tracker::rate_limit_remaining(self.tracker.as_ref())
    }

    /// GitHub's GraphQL `rateLimit` as last reported, with this tick's cost.
    pub fn rate_budget(&self) -> Option<afk_core::ports::RateBudget> {
        afk_loop::ports::Tracker::rate_budget(self.tracker.as_ref())
    }
}
