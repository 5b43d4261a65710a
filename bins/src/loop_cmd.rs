//! `afk-poller` and `afk-watcher`: one tick per process, then exit.
//!
//! Settings come from the environment (the ConfigMap is mounted as env) and
//! flags; a flag wins over its env var. Secrets are read only from env vars
//! or mounted files (re-read on every use) and are never flags, so they never
//! show in a process list, a log line or `--help`.
//!
//! Exit codes: 0 the tick ran (a disabled tick is a success), 1 the tick ran
//! but some repository or run failed, 2 bad configuration (nothing was done).

use std::sync::Arc;
use std::time::{Duration, Instant};

use afk_adapters::github::{GitHubBuildStage, GitHubSettings, GitHubTracker};
use afk_adapters::http::{Http, HttpSettings, RetryPolicy, Secret};
use afk_adapters::notify::{LogNotifier, NtfyNotifier, SlackNotifier};
use afk_adapters::rollout::{RolloutStage, RolloutTargets};
use afk_adapters::t3::{T3Executor, T3Settings};
use afk_adapters::woodpecker::{WoodpeckerSettings, WoodpeckerStage};
use afk_core::ci::StageProbe;
use afk_core::doorbell::Notifier;
use afk_core::tick::{
    Clock, Level, Ports, TickOptions, TickReport, poll_disabled, poll_tick, watch_disabled,
    watch_tick,
};
use afk_core::{Config, Timestamp};
use checklist::ProgressComment;

use crate::exit;

/// Which tick a binary runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TickKind {
    /// `afk-poller`.
    Poll,
    /// `afk-watcher`.
    Watch,
}

/// Every setting of the loop binaries (`07-deploy.md`).
#[derive(Debug, Clone, clap::Args)]
pub struct LoopArgs {
    /// Master off switch (true/false). Default: true — the loop ships disabled.
    #[arg(long, env = "AFK_KILL_SWITCH", hide_env_values = true)]
    pub kill_switch: Option<String>,
    /// Comma-separated repositories that may be automated. Default: empty.
    #[arg(long, env = "AFK_ALLOWLIST", hide_env_values = true)]
    pub allowlist: Option<String>,
    /// The label that arms an issue. Default: ready-for-agent.
    #[arg(long, env = "AFK_READY_LABEL", hide_env_values = true)]
    pub ready_label: Option<String>,
    /// The per-repository lock label. Default: agent-in-progress.
    #[arg(long, env = "AFK_IN_PROGRESS_LABEL", hide_env_values = true)]
    pub in_progress_label: Option<String>,
    /// The label stamped when a run is handed back. Default: ready-for-human.
    #[arg(long, env = "AFK_READY_FOR_HUMAN_LABEL", hide_env_values = true)]
    pub ready_for_human_label: Option<String>,
    /// Corrective turns after a red CI. Default: 5.
    #[arg(long, env = "AFK_FIX_FORWARD_MAX_ATTEMPTS", hide_env_values = true)]
    pub fix_forward_max_attempts: Option<String>,
    /// Seconds of fixing forward from the first red verdict. Default: 3600.
    #[arg(long, env = "AFK_FIX_FORWARD_MAX_SECONDS", hide_env_values = true)]
    pub fix_forward_max_seconds: Option<String>,
    /// Seconds after which a run that pushed nothing is stalled. Default: 14400.
    #[arg(long, env = "AFK_PREPUSH_MAX_SECONDS", hide_env_values = true)]
    pub prepush_max_seconds: Option<String>,
    /// Seconds after which a pushed commit with no CI signal is escalated. Default: 900.
    #[arg(long, env = "AFK_CI_START_MAX_SECONDS", hide_env_values = true)]
    pub ci_start_max_seconds: Option<String>,
    /// Retired (T3 v0.0.27 takes no spend cap); setting it is an error.
    #[arg(long, env = "AFK_BUDGET_USD", hide = true, hide_env_values = true)]
    pub budget_usd: Option<String>,

    /// GitHub REST base URL.
    #[arg(
        long,
        env = "AFK_GITHUB_API_URL",
        default_value = "https://api.github.com",
        hide_env_values = true
    )]
    pub github_api_url: String,
    /// File holding the GitHub token (re-read on every use). The token itself
    /// is read from AFK_GITHUB_TOKEN, never from a flag.
    #[arg(long, env = "AFK_GITHUB_TOKEN_FILE", hide_env_values = true)]
    pub github_token_file: Option<String>,
    /// Owner for bare repository names in the allowlist.
    #[arg(long, env = "AFK_GITHUB_OWNER", hide_env_values = true)]
    pub github_owner: Option<String>,
    /// The login afk comments as (asked of GET /user when unset; set it for app tokens).
    #[arg(long, env = "AFK_GITHUB_LOGIN", hide_env_values = true)]
    pub github_login: Option<String>,
    /// Comma-separated bot logins whose ready label is trusted. Default: none.
    #[arg(
        long,
        env = "AFK_TRUSTED_BOTS",
        default_value = "",
        hide_env_values = true
    )]
    pub trusted_bots: String,

    /// T3 Code server base URL (required once the loop is armed).
    #[arg(long, env = "AFK_T3_URL", hide_env_values = true)]
    pub t3_url: Option<String>,
    /// File holding the T3 token (else AFK_T3_TOKEN).
    #[arg(long, env = "AFK_T3_TOKEN_FILE", hide_env_values = true)]
    pub t3_token_file: Option<String>,
    /// Base for thread links in doorbells. Default: AFK_T3_URL.
    #[arg(long, env = "AFK_T3_WEB_URL", hide_env_values = true)]
    pub t3_web_url: Option<String>,
    /// Model for new threads.
    #[arg(
        long,
        env = "AFK_T3_MODEL",
        default_value = "claude-sonnet-4-6",
        hide_env_values = true
    )]
    pub t3_model: String,
    /// Provider instance for new threads.
    #[arg(
        long,
        env = "AFK_T3_INSTANCE",
        default_value = "claudeAgent",
        hide_env_values = true
    )]
    pub t3_instance: String,
    /// Checkouts live at <base>/<owner>__<name> on the T3 host.
    #[arg(
        long,
        env = "AFK_T3_WORKSPACE_BASE",
        default_value = "/data",
        hide_env_values = true
    )]
    pub t3_workspace_base: String,

    /// Woodpecker base URL (the deploy stage is off when unset).
    #[arg(long, env = "AFK_WOODPECKER_URL", hide_env_values = true)]
    pub woodpecker_url: Option<String>,
    /// File holding the Woodpecker token (else AFK_WOODPECKER_TOKEN).
    #[arg(long, env = "AFK_WOODPECKER_TOKEN_FILE", hide_env_values = true)]
    pub woodpecker_token_file: Option<String>,
    /// repo=namespace/deployment,… (the rollout stage is off when unset).
    #[arg(long, env = "AFK_ROLLOUT_TARGETS", hide_env_values = true)]
    pub rollout_targets: Option<String>,

    /// File holding the Slack webhook URL (else AFK_SLACK_WEBHOOK_URL; off when neither).
    #[arg(long, env = "AFK_SLACK_WEBHOOK_URL_FILE", hide_env_values = true)]
    pub slack_webhook_url_file: Option<String>,
    /// ntfy server URL (off when unset).
    #[arg(long, env = "AFK_NTFY_URL", hide_env_values = true)]
    pub ntfy_url: Option<String>,
    /// ntfy topic (on public servers the topic is a password: prefer the env var).
    #[arg(long, env = "AFK_NTFY_TOPIC", hide_env_values = true)]
    pub ntfy_topic: Option<String>,
    /// File holding the ntfy access token (else AFK_NTFY_TOKEN).
    #[arg(long, env = "AFK_NTFY_TOKEN_FILE", hide_env_values = true)]
    pub ntfy_token_file: Option<String>,

    /// Per-request timeout in seconds.
    #[arg(
        long,
        env = "AFK_REQUEST_TIMEOUT_SECONDS",
        default_value_t = 30,
        hide_env_values = true
    )]
    pub request_timeout_seconds: u64,
    /// A tick starts no new work after this many seconds.
    #[arg(
        long,
        env = "AFK_TICK_DEADLINE_SECONDS",
        default_value_t = 240,
        hide_env_values = true
    )]
    pub tick_deadline_seconds: u64,
    /// Log format: json (one object per line, for Loki) or text.
    #[arg(long, env = "AFK_LOG_FORMAT", default_value = "json", value_parser = ["json", "text"], hide_env_values = true)]
    pub log_format: String,
    /// Decide and log, but write nothing and dispatch nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// A setting that cannot be used; the binary exits 2 with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadConfig(pub String);

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_offset_date_time(time::OffsetDateTime::now_utc())
    }
}

impl LoopArgs {
    /// The policy settings, through the one parser of `afk-core`.
    pub fn policy(&self) -> Result<Config, BadConfig> {
        let pairs = [
            ("AFK_KILL_SWITCH", &self.kill_switch),
            ("AFK_ALLOWLIST", &self.allowlist),
            ("AFK_READY_LABEL", &self.ready_label),
            ("AFK_IN_PROGRESS_LABEL", &self.in_progress_label),
            ("AFK_READY_FOR_HUMAN_LABEL", &self.ready_for_human_label),
            (
                "AFK_FIX_FORWARD_MAX_ATTEMPTS",
                &self.fix_forward_max_attempts,
            ),
            ("AFK_FIX_FORWARD_MAX_SECONDS", &self.fix_forward_max_seconds),
            ("AFK_PREPUSH_MAX_SECONDS", &self.prepush_max_seconds),
            ("AFK_CI_START_MAX_SECONDS", &self.ci_start_max_seconds),
            ("AFK_BUDGET_USD", &self.budget_usd),
        ];
        Config::from_pairs(
            pairs
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v.as_str()))),
        )
        .map_err(|e| BadConfig(format!("bad configuration: {e}")))
    }
}

fn secret(file: Option<&String>, env_name: &str) -> Secret {
    match file.map(|f| f.trim()).filter(|f| !f.is_empty()) {
        Some(path) => Secret::File(path.into()),
        None => Secret::from_settings(env_name, |k| std::env::var(k).ok()),
    }
}

/// An optional service's secret: on only when it can be read and is not
/// empty now (the manifests mount every key, empty ones included; an empty
/// Slack webhook must switch Slack off, not fail every doorbell).
fn optional_secret(file: Option<&String>, env_name: &str) -> Option<Secret> {
    let s = secret(file, env_name);
    matches!(s.read(), Ok(Some(_))).then_some(s)
}

/// The secrets read straight from the environment (never flags); their
/// `*_FILE` variants are flags too.
pub const SECRET_ENV_NAMES: &[&str] = &[
    "AFK_GITHUB_TOKEN",
    "AFK_T3_TOKEN",
    "AFK_SLACK_WEBHOOK_URL",
    "AFK_NTFY_TOKEN",
    "AFK_WOODPECKER_TOKEN",
];

fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The GitHub tracker from the settings (the one adapter `afk runs` needs).
///
/// # Errors
/// `BadConfig` when no token is configured.
pub fn github_tracker(args: &LoopArgs, http: &Http) -> Result<GitHubTracker, BadConfig> {
    let token = secret(args.github_token_file.as_ref(), "AFK_GITHUB_TOKEN");
    if !token.is_configured() {
        return Err(BadConfig(
            "a GitHub token is required: set AFK_GITHUB_TOKEN or AFK_GITHUB_TOKEN_FILE".into(),
        ));
    }
    Ok(GitHubTracker::new(
        http.clone(),
        GitHubSettings {
            api_url: args.github_api_url.clone(),
            token,
            default_owner: args.github_owner.clone().filter(|o| !o.trim().is_empty()),
            trusted_bots: list(&args.trusted_bots),
            own_login: args.github_login.clone().filter(|l| !l.trim().is_empty()),
        },
    ))
}

/// Everything a tick needs, built from the settings.
pub struct Wiring {
    tracker: Arc<GitHubTracker>,
    executor: T3Executor,
    build: GitHubBuildStage,
    deploy: Option<WoodpeckerStage>,
    rollout: Option<RolloutStage>,
    notifiers: Vec<Box<dyn Notifier>>,
}

impl std::fmt::Debug for Wiring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wiring").finish_non_exhaustive()
    }
}

impl Wiring {
    /// Builds the adapters. Checks what an armed loop needs.
    ///
    /// # Errors
    /// `BadConfig` naming the setting that is missing or unreadable.
    pub fn build(args: &LoopArgs, deadline: Instant) -> Result<Wiring, BadConfig> {
        let http = Http::new(&HttpSettings {
            connect_timeout: Duration::from_secs(5)
                .min(Duration::from_secs(args.request_timeout_seconds.max(1))),
            request_timeout: Duration::from_secs(args.request_timeout_seconds.max(1)),
            retry: RetryPolicy::default(),
            deadline: Some(deadline),
        })
        .map_err(|e| BadConfig(e.to_string()))?;
        let t3_url = args
            .t3_url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .ok_or_else(|| {
                BadConfig(
                    "AFK_T3_URL is required once the loop is armed (the allowlist is not empty)"
                        .into(),
                )
            })?;
        let tracker = Arc::new(github_tracker(args, &http)?);
        let t3_token = secret(args.t3_token_file.as_ref(), "AFK_T3_TOKEN");
        if !t3_token.is_configured() {
            return Err(BadConfig(
                "a T3 token is required once the loop is armed: set AFK_T3_TOKEN or AFK_T3_TOKEN_FILE".into(),
            ));
        }
        let executor = T3Executor::new(
            http.clone(),
            T3Settings {
                web_url: args.t3_web_url.clone().unwrap_or_else(|| t3_url.clone()),
                base_url: t3_url,
                token: t3_token,
                model: args.t3_model.clone(),
                instance: args.t3_instance.clone(),
                workspace_base: args.t3_workspace_base.clone(),
                default_owner: args.github_owner.clone(),
            },
        );
        let deploy = args
            .woodpecker_url
            .as_ref()
            .filter(|u| !u.trim().is_empty())
            .map(|url| {
                WoodpeckerStage::new(
                    http.clone(),
                    WoodpeckerSettings {
                        url: url.clone(),
                        token: secret(args.woodpecker_token_file.as_ref(), "AFK_WOODPECKER_TOKEN"),
                        default_owner: args.github_owner.clone(),
                    },
                )
            });
        let rollout = match args
            .rollout_targets
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
        {
            Some(text) => {
                let targets = RolloutTargets::parse(text).map_err(BadConfig)?;
                Some(RolloutStage::in_cluster(targets).map_err(|e| BadConfig(e.to_string()))?)
            }
            None => None,
        };
        let mut notifiers: Vec<Box<dyn Notifier>> = Vec::new();
        if let Some(slack) = optional_secret(
            args.slack_webhook_url_file.as_ref(),
            "AFK_SLACK_WEBHOOK_URL",
        ) {
            notifiers.push(Box::new(SlackNotifier::new(http.clone(), slack)));
        }
        if let Some(url) = args.ntfy_url.as_ref().filter(|u| !u.trim().is_empty()) {
            let topic = args
                .ntfy_topic
                .clone()
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| BadConfig("AFK_NTFY_URL is set but AFK_NTFY_TOPIC is not".into()))?;
            notifiers.push(Box::new(NtfyNotifier::new(
                http.clone(),
                url.clone(),
                Secret::Value(topic),
                optional_secret(args.ntfy_token_file.as_ref(), "AFK_NTFY_TOKEN")
                    .unwrap_or(Secret::None),
            )));
        }
        if notifiers.is_empty() {
            notifiers.push(Box::new(LogNotifier));
        }
        Ok(Wiring {
            build: GitHubBuildStage::new(tracker.clone()),
            tracker,
            executor,
            deploy,
            rollout,
            notifiers,
        })
    }

    /// Runs one tick.
    pub async fn tick(&self, kind: TickKind, config: &Config, options: &TickOptions) -> TickReport {
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
            codec: &ProgressComment,
            clock: &SystemClock,
        };
        match kind {
            TickKind::Poll => poll_tick(&ports, config, options).await,
            TickKind::Watch => watch_tick(&ports, config, options).await,
        }
    }

    /// Requests made so far, by every adapter.
    pub fn api_calls(&self) -> u64 {
        // The adapters share one client and one counter.
        afk_core::ports::Tracker::api_calls(self.tracker.as_ref())
    }

    /// The GitHub budget the last answer reported.
    pub fn rate_limit_remaining(&self) -> Option<u64> {
        afk_core::ports::Tracker::rate_limit_remaining(self.tracker.as_ref())
    }
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

fn log_entries(report: &TickReport) {
    for e in &report.entries {
        // Absent fields are left out of the line, not logged empty.
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

/// The whole `main` of `afk-poller` and `afk-watcher`: logs, a runtime, one
/// tick, the exit code.
pub fn main(kind: TickKind, settings: &LoopArgs) -> std::process::ExitCode {
    init_logs(&settings.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(action = "start", "cannot start the async runtime: {e}");
            return std::process::ExitCode::from(exit::PARTIAL);
        }
    };
    std::process::ExitCode::from(runtime.block_on(run(kind, settings)))
}

/// Runs one tick of `kind` and returns the exit code.
pub async fn run(kind: TickKind, args: &LoopArgs) -> u8 {
    let started = Instant::now();
    let config = match args.policy() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(action = "config", "{e}");
            return exit::BAD_INPUT;
        }
    };
    let name = match kind {
        TickKind::Poll => "poll",
        TickKind::Watch => "watch",
    };
    let options = TickOptions {
        dry_run: args.dry_run,
        deadline: Some(SystemClock.now().plus_seconds(args.tick_deadline_seconds)),
    };
    // A disabled tick needs no adapters at all: the shipped configuration
    // runs with nothing else configured, and makes no request.
    let disabled = match kind {
        TickKind::Poll => poll_disabled(&config),
        TickKind::Watch => watch_disabled(&config),
    };
    let (report, calls, remaining) = if let Some(report) = disabled {
        (report, 0, None)
    } else {
        let wiring = match Wiring::build(
            args,
            started + Duration::from_secs(args.tick_deadline_seconds),
        ) {
            Ok(w) => w,
            Err(e) => {
                tracing::error!(action = "config", "{e}");
                return exit::BAD_INPUT;
            }
        };
        let report = wiring.tick(kind, &config, &options).await;
        (report, wiring.api_calls(), wiring.rate_limit_remaining())
    };
    log_entries(&report);
    let failed = report.failures().count();
    tracing::info!(
        action = "summary",
        tick = name,
        disabled = report.disabled,
        dry_run = args.dry_run,
        dispatched = report.dispatched.len(),
        skipped = report.skipped,
        failed,
        duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        api_calls = calls,
        rate_limit_remaining = remaining,
        "{name} tick finished"
    );
    if failed > 0 { exit::PARTIAL } else { exit::OK }
}
