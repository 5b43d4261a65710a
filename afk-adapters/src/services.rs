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
use afk_loop::ports::StageProbe;
use afk_loop::ports::{Executor, Notifier};
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

/// Which executor runs the agents.
pub enum ExecutorSettings {
    /// A T3 Code server (`AFK_EXECUTOR=t3`), over the shared client.
    T3(T3Settings),
    /// Kubernetes Jobs (`AFK_EXECUTOR=kubernetes`): the settings, checked,
    /// and `AFK_K8S_NAMESPACE` when set; the client is built with the tick
    /// (in a pod its service account, else `KUBECONFIG`).
    Kubernetes(Box<afk_kube::KubeSettings>, Option<String>),
    /// One built elsewhere (the local executor: it needs no HTTP client).
    Built(Box<dyn Executor>),
}

impl std::fmt::Debug for ExecutorSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExecutorSettings::T3(t3) => f.debug_tuple("T3").field(t3).finish(),
            ExecutorSettings::Kubernetes(k, ns) => {
                f.debug_tuple("Kubernetes").field(k).field(ns).finish()
            }
            ExecutorSettings::Built(_) => f.write_str("Built(..)"),
        }
    }
}

/// Everything needed to build the adapters of an armed loop.
#[derive(Debug)]
pub struct ServiceSettings {
    /// The shared client's timeouts, retries and deadline.
    pub http: HttpSettings,
    /// The tracker.
    pub github: GitHubSettings,
    /// The executor.
    pub executor: ExecutorSettings,
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
    executor: Box<dyn Executor>,
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
    pub async fn build(settings: ServiceSettings) -> Result<Services, String> {
        let http = Http::new(&settings.http).map_err(|e| e.to_string())?;
        let tracker = Arc::new(GitHubTracker::new(http.clone(), settings.github));
        let executor: Box<dyn Executor> = match settings.executor {
            ExecutorSettings::T3(t3) => Box::new(T3Executor::new(http.clone(), t3)),
            ExecutorSettings::Kubernetes(kube, namespace) => {
                let mut kube = *kube;
                let cluster =
                    afk_kube::api::KubeCluster::from_environment(namespace.as_deref()).await?;
                kube.namespace = cluster.namespace().to_owned();
                Box::new(afk_kube::KubeExecutor::new(
                    cluster,
                    kube,
                    Arc::new(SystemClock),
                ))
            }
            ExecutorSettings::Built(e) => e,
        };
        let deploy = settings
            .woodpecker
            .map(|w| WoodpeckerStage::new(http.clone(), w));
        let rollout = settings
            .rollout
            .map(RolloutStage::in_cluster)
            .transpose()
            .map_err(|e| e.to_string())?;
        let notifiers = build_notifiers(&http, settings.slack, settings.ntfy);
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
            executor: self.executor.as_ref(),
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

/// Logs every entry of a tick's report, one line each (absent fields are
/// left out of the line, not logged empty).
pub fn log_entries(report: &TickReport) {
    use afk_loop::Level;
    for e in &report.entries {
        let repo = e.repo.as_deref();
        let thread = e.thread_id.as_deref();
        let issue = e.issue;
        match e.level {
            Level::Info => {
                tracing::info!(repo, issue, thread_id = thread, action = %e.action, "{}", e.message)
            }
            Level::Warn => {
                tracing::warn!(repo, issue, thread_id = thread, action = %e.action, "{}", e.message)
            }
            Level::Error => {
                tracing::error!(repo, issue, thread_id = thread, action = %e.action, "{}", e.message)
            }
        }
    }
}

pub use crate::tick::TickRun;

/// Why a tick could not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TickStart {
    /// A setting cannot be used (exit 2: nothing was done).
    BadSettings(String),
    /// The settings were valid; the environment (no in-cluster credentials,
    /// a TLS set-up failure) is what failed (exit 1).
    CannotStart(String),
}

/// Runs one tick of `kind`: a disabled one (the kill switch, an empty
/// allowlist) needs no adapters and makes no request; otherwise the
/// adapters are built from `settings` and the tick runs with them.
/// Stopping is not disabled by the kill switch: it is what an operator
/// reaches for when something runs away.
///
/// # Errors
/// [`TickStart`]: the settings could not be used, or the adapters built.
pub async fn run_tick(
    kind: &TickKind,
    config: &Config,
    options: &TickOptions,
    settings: impl FnOnce() -> Result<ServiceSettings, String>,
) -> Result<TickRun, TickStart> {
    let disabled = match kind {
        TickKind::Poll => afk_loop::poll_disabled(config),
        TickKind::Watch | TickKind::Stop(..) => afk_loop::watch_disabled(config),
    };
    if let Some(report) = disabled {
        return Ok(TickRun {
            report,
            api_calls: 0,
            rate_limit_remaining: None,
            rate_budget: None,
            github_budget: None,
        });
    }
    let mut settings = settings().map_err(TickStart::BadSettings)?;
    if matches!(kind, TickKind::Stop(..)) {
        // A stop needs the tracker and the executor only: an operator's
        // laptop has no in-cluster credentials for the rollout stage.
        settings.rollout = None;
        settings.woodpecker = None;
    }
    let services = Services::build(settings)
        .await
        .map_err(TickStart::CannotStart)?;
    let report = services.tick(kind, config, options).await;
    Ok(TickRun {
        report,
        api_calls: services.api_calls(),
        rate_limit_remaining: services.rate_limit_remaining(),
        rate_budget: services.rate_budget(),
        github_budget: Some(services.tracker.budget_kind()),
    })
}

/// Logs a tick: each entry of its report, then one summary line (the
/// counts an operator's dashboard reads).
pub fn log_tick(kind: &TickKind, run: &TickRun, dry_run: bool, elapsed: std::time::Duration) {
    log_entries(&run.report);
    let name = kind.as_str();
    let budget = run.rate_budget;
    tracing::info!(
        action = "summary",
        tick = name,
        disabled = run.report.disabled,
        dry_run,
        dispatched = run.report.dispatched.len(),
        skipped = run.report.skipped,
        failed = run.report.failures().count(),
        duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        api_calls = run.api_calls,
        github_budget = run.github_budget,
        rate_limit_remaining = run.rate_limit_remaining,
        graphql_cost = budget.map(|b| b.cost),
        graphql_remaining = budget.map(|b| b.remaining),
        graphql_reset = budget.and_then(|b| b.reset_at).map(|t| t.to_string()),
        "{name} tick finished"
    );
}

/// What `--help` says about the logs: `AFK_LOG` and every `action` a line
/// can carry (the runbook's "Read the logs" lists the same).
pub const LOGS_HELP: &str = "\
Logs: one JSON object per line on stdout (AFK_LOG_FORMAT=text for people).
AFK_LOG sets the level filter, as RUST_LOG does (default: info; e.g.
AFK_LOG=debug, or AFK_LOG=info,afk_adapters=debug).
Every line has an action: start, config, disabled, paused, deadline, read,
untrusted, skip, dispatch, no_record, run, wait, close_success, fix_forward,
freeze_escalate, escalate_prepush, ring, stop, rate_floor, finish,
open_pull_request, merge, hand_over_review, token,
clock, metrics, health (the loop's own health: credentials, executor,
enrolment), and summary (the last line of every tick).";

/// Where a tick's results go besides its log lines: its metrics
/// (`AFK_METRICS_FILE`, `AFK_METRICS_PUSH_URL`) and what is remembered for
/// the next tick (`AFK_STATE_FILE`).
#[derive(Debug, Clone, Copy, Default)]
pub struct TickOutputs<'a> {
    /// `AFK_METRICS_FILE`.
    pub metrics_file: Option<&'a str>,
    /// `AFK_METRICS_PUSH_URL`.
    pub metrics_push_url: Option<&'a str>,
    /// `AFK_STATE_FILE`.
    pub state_file: Option<&'a str>,
}

/// The end of a tick: its log lines ([`log_tick`]); what is remembered for
/// the next tick and the health doorbells that rings ([`crate::health`],
/// with the notifiers `notifiers` builds); its metrics. Whether any part of
/// it failed.
pub async fn finish_tick(
    kind: &TickKind,
    run: &TickRun,
    dry_run: bool,
    started: std::time::Instant,
    outputs: TickOutputs<'_>,
    notifiers: impl FnOnce() -> Result<Vec<Box<dyn Notifier>>, String>,
) -> bool {
    log_tick(kind, run, dry_run, started.elapsed());
    let poll = matches!(kind, TickKind::Poll);
    let state = outputs.state_file.map(str::trim).filter(|p| !p.is_empty());
    match state {
        // Where runs are in flight now, and the loop's health.
        Some(path) if !dry_run && (poll || matches!(kind, TickKind::Watch)) => {
            let (path, now) = (std::path::Path::new(path), SystemClock.now());
            match crate::health::remember(path, poll, &run.report, now).await {
                Ok(bells) => crate::health::ring(path, bells, now, notifiers).await,
                Err(e) => tracing::warn!(
                    action = "config",
                    "cannot remember where runs are in flight: {e}"
                ),
            }
        }
        _ => crate::health::warn_unremembered(&run.report),
    }
    let sample = crate::metrics::TickSample {
        tick: kind.as_str(),
        run,
        seconds: started.elapsed().as_secs_f64(),
        now: crate::http::now_unix(),
    };
    crate::metrics::publish(outputs.metrics_file, outputs.metrics_push_url, &sample).await;
    run.report.failures().count() > 0
}

/// The notifiers the settings name: Slack, ntfy, or (neither set) the log.
///
/// # Errors
/// The HTTP client cannot be built.
pub fn notifiers(
    http: &HttpSettings,
    slack: Option<Secret>,
    ntfy: Option<NtfySettings>,
) -> Result<Vec<Box<dyn Notifier>>, String> {
    let http = Http::new(http).map_err(|e| e.to_string())?;
    Ok(build_notifiers(&http, slack, ntfy))
}

fn build_notifiers(
    http: &Http,
    slack: Option<Secret>,
    ntfy: Option<NtfySettings>,
) -> Vec<Box<dyn Notifier>> {
    let mut notifiers: Vec<Box<dyn Notifier>> = Vec::new();
    if let Some(webhook) = slack {
        notifiers.push(Box::new(SlackNotifier::new(http.clone(), webhook)));
    }
    if let Some(n) = ntfy {
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
    notifiers
}

/// `afk loop`'s rounds ([`crate::rounds`]) under SIGTERM and Ctrl-C, with
/// their log lines: `tick` runs one tick; the first signal lets it finish,
/// a second abandons it, and the agents keep running either way.
pub async fn serve_rounds<F, Fut>(every: std::time::Duration, tick: F)
where
    F: FnMut(crate::rounds::Tick) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use tokio::signal::unix::{SignalKind, signal};
    let (stops_tx, stops) = tokio::sync::watch::channel(0u32);
    if let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = int.recv() => {},
                }
                stops_tx.send_modify(|n| *n += 1);
            }
        });
    }
    let ended = crate::rounds::rounds(every, stops, tick, || {
        tracing::info!(
            action = "stop",
            "stopping after this tick (Ctrl-C again to stop now); agents keep running"
        );
    })
    .await;
    if ended == crate::rounds::Ended::Abandoned {
        tracing::warn!(
            action = "stop",
            "tick abandoned: what it had begun, the next tick finishes"
        );
    }
    tracing::info!(
        action = "stop",
        "afk loop stopped; agents keep running (the next afk loop picks them up, afk halt stops them)"
    );
}

/// Installs the log subscriber: JSON lines on stdout, or text.
pub fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AFK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stdout);
    // A second init (tests) is not an error worth failing on.
    let _ = if format == "text" {
        builder.with_target(false).try_init()
    } else {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init()
    };
}
