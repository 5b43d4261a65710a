//! `afk-poller` and `afk-watcher`: one tick per process, then exit.
//!
//! Settings come from the environment (the ConfigMap is mounted as env) and
//! flags; a flag wins over its env var. Secrets are read only from env vars
//! or mounted files (re-read on every use) and are never flags, so they never
//! show in a process list, a log line or `--help`.
//!
//! Exit codes: 0 the tick ran (a disabled tick is a success), 1 the tick ran
//! but some repository or run failed, 2 bad configuration (nothing was done).

use std::time::{Duration, Instant};

use afk_adapters::github::GitHubSettings;
use afk_adapters::http::{HttpSettings, RetryPolicy, Secret};
use afk_adapters::rollout::RolloutTargets;
pub use afk_adapters::services::TickKind;
use afk_adapters::services::{NtfySettings, ServiceSettings, Services, SystemClock};
use afk_adapters::t3::T3Settings;
use afk_adapters::woodpecker::WoodpeckerSettings;
use afk_core::Config;
use afk_loop::{Clock, Level, TickOptions, TickReport, poll_disabled, watch_disabled};

use crate::exit;

/// Every setting of the loop binaries (`docs/deploy/configmap.yaml`,
/// `docs/operations.md`).
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
    /// The label that stops a run, whoever applies it. Default: afk-stop.
    #[arg(long, env = "AFK_STOP_LABEL", hide_env_values = true)]
    pub stop_label: Option<String>,
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
    /// Below this many GitHub requests or GraphQL points left, the poller
    /// starts nothing new (the watcher carries on). Default: 500.
    #[arg(long, env = "AFK_RATE_FLOOR", hide_env_values = true)]
    pub rate_floor: Option<String>,
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
    /// GitHub's web address; only links on it (or the API host) reach an agent.
    /// Default: https://github.com for api.github.com, else the API's host.
    #[arg(long, env = "AFK_GITHUB_WEB_URL", hide_env_values = true)]
    pub github_web_url: Option<String>,
    /// Comma-separated bot logins whose ready label is trusted, in either
    /// spelling (`renovate` or `renovate[bot]`). Default: none.
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
    /// More hosts whose CI log links reach an agent, comma-separated
    /// (GitHub's own and the Woodpecker server's always do).
    #[arg(long, env = "AFK_CI_LINK_HOSTS", hide_env_values = true)]
    pub ci_link_hosts: Option<String>,
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

impl LoopArgs {
    /// The policy settings, through the one parser of `afk-core`.
    ///
    /// # Errors
    /// `BadConfig` naming every key that cannot be used.
    pub fn policy(&self) -> Result<Config, BadConfig> {
        let pairs = [
            ("AFK_KILL_SWITCH", &self.kill_switch),
            ("AFK_ALLOWLIST", &self.allowlist),
            ("AFK_READY_LABEL", &self.ready_label),
            ("AFK_IN_PROGRESS_LABEL", &self.in_progress_label),
            ("AFK_READY_FOR_HUMAN_LABEL", &self.ready_for_human_label),
            ("AFK_STOP_LABEL", &self.stop_label),
            (
                "AFK_FIX_FORWARD_MAX_ATTEMPTS",
                &self.fix_forward_max_attempts,
            ),
            ("AFK_FIX_FORWARD_MAX_SECONDS", &self.fix_forward_max_seconds),
            ("AFK_PREPUSH_MAX_SECONDS", &self.prepush_max_seconds),
            ("AFK_CI_START_MAX_SECONDS", &self.ci_start_max_seconds),
            ("AFK_RATE_FLOOR", &self.rate_floor),
            ("AFK_BUDGET_USD", &self.budget_usd),
        ];
        Config::from_pairs(
            pairs
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v.as_str()))),
        )
        .map_err(|e| BadConfig(format!("bad configuration: {e}")))
    }

    /// The tracker's settings (the one adapter `afk runs` needs).
    ///
    /// # Errors
    /// `BadConfig` when no token is configured, or the policy settings
    /// (whose labels the tracker reads by) cannot be used.
    pub fn github(&self) -> Result<GitHubSettings, BadConfig> {
        let token = secret(self.github_token_file.as_ref(), "AFK_GITHUB_TOKEN")?;
        if !token.is_configured() {
            return Err(BadConfig(
                "a GitHub token is required: set AFK_GITHUB_TOKEN or AFK_GITHUB_TOKEN_FILE".into(),
            ));
        }
        let owner = some(&self.github_owner).map(|o| o.trim().to_owned());
        if let Some(o) = &owner
            && !owner_name_ok(o)
        {
            return Err(BadConfig(format!(
                "AFK_GITHUB_OWNER={o:?} cannot name a GitHub account: letters, digits and '-', at most 39"
            )));
        }
        // The labels anchor the look-up of a run's progress comment.
        let policy = self.policy()?;
        Ok(GitHubSettings {
            api_url: self.github_api_url.clone(),
            token,
            default_owner: owner,
            trusted_bots: list(&self.trusted_bots),
            own_login: some(&self.github_login),
            web_url: some(&self.github_web_url),
            ci_link_hosts: some(&self.woodpecker_url)
                .into_iter()
                .chain(self.ci_link_hosts.as_deref().map(list).unwrap_or_default())
                .collect(),
            ready_label: policy.ready_label,
            in_progress_label: policy.in_progress_label,
        })
    }

    /// The client's timeouts, with the tick's deadline.
    pub fn http(&self, deadline: Option<Instant>) -> HttpSettings {
        let request = Duration::from_secs(self.request_timeout_seconds.max(1));
        HttpSettings {
            connect_timeout: Duration::from_secs(5).min(request),
            request_timeout: request,
            retry: RetryPolicy::default(),
            deadline,
        }
    }

    /// Everything an armed loop needs, checked.
    ///
    /// # Errors
    /// `BadConfig` naming the setting that is missing or unreadable.
    pub fn services(&self, deadline: Instant) -> Result<ServiceSettings, BadConfig> {
        let t3_url = some(&self.t3_url).ok_or_else(|| {
            BadConfig(
                "AFK_T3_URL is required once the loop is armed (the allowlist is not empty)".into(),
            )
        })?;
        let github = self.github()?;
        let t3_token = secret(self.t3_token_file.as_ref(), "AFK_T3_TOKEN")?;
        if !t3_token.is_configured() {
            return Err(BadConfig(
                "a T3 token is required once the loop is armed: set AFK_T3_TOKEN or AFK_T3_TOKEN_FILE".into(),
            ));
        }
        let ntfy = match some(&self.ntfy_url) {
            None => None,
            Some(url) => Some(NtfySettings {
                url,
                topic: Secret::Value(some(&self.ntfy_topic).ok_or_else(|| {
                    BadConfig("AFK_NTFY_URL is set but AFK_NTFY_TOPIC is not".into())
                })?),
                token: optional_secret(self.ntfy_token_file.as_ref(), "AFK_NTFY_TOKEN")?
                    .unwrap_or(Secret::None),
            }),
        };
        Ok(ServiceSettings {
            http: self.http(Some(deadline)),
            github,
            t3: T3Settings {
                web_url: some(&self.t3_web_url).unwrap_or_else(|| t3_url.clone()),
                base_url: t3_url,
                token: t3_token,
                model: self.t3_model.clone(),
                instance: self.t3_instance.clone(),
                workspace_base: self.t3_workspace_base.clone(),
                default_owner: self.github_owner.clone(),
            },
            woodpecker: match some(&self.woodpecker_url) {
                Some(url) => Some(WoodpeckerSettings {
                    url,
                    token: secret(self.woodpecker_token_file.as_ref(), "AFK_WOODPECKER_TOKEN")?,
                    default_owner: self.github_owner.clone(),
                }),
                None => None,
            },
            rollout: some(&self.rollout_targets)
                .map(|t| RolloutTargets::parse(&t))
                .transpose()
                .map_err(BadConfig)?,
            slack: optional_secret(
                self.slack_webhook_url_file.as_ref(),
                "AFK_SLACK_WEBHOOK_URL",
            )?,
            ntfy,
        })
    }
}

/// Whether `owner` can be a GitHub user or organisation login: letters,
/// digits and single hyphens, at most 39 characters (so never `.` or `..`,
/// which would change the URL it is put in).
fn owner_name_ok(owner: &str) -> bool {
    !owner.is_empty()
        && owner.len() <= 39
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !owner.starts_with('-')
        && !owner.ends_with('-')
}

/// A setting that is set and not blank.
fn some(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.trim().is_empty())
}

/// A secret's source; a value that holds a line break is a configuration
/// error naming its key (never the value).
fn secret(file: Option<&String>, env_name: &str) -> Result<Secret, BadConfig> {
    let s = match file.map(|f| f.trim()).filter(|f| !f.is_empty()) {
        Some(path) => Secret::File(path.into()),
        None => Secret::from_settings(env_name, |k| std::env::var(k).ok()),
    };
    s.check_format()
        .map_err(|why| BadConfig(format!("{env_name}: {why}")))?;
    Ok(s)
}

/// An optional service's secret: on only when it can be read and is not
/// empty now (the manifests mount every key, empty ones included; an empty
/// Slack webhook must switch Slack off, not fail every doorbell).
fn optional_secret(file: Option<&String>, env_name: &str) -> Result<Option<Secret>, BadConfig> {
    let s = secret(file, env_name)?;
    Ok(matches!(s.read(), Ok(Some(_))).then_some(s))
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
pub fn main(kind: TickKind, settings: &LoopArgs) -> u8 {
    init_logs(&settings.log_format);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(action = "start", "cannot start the async runtime: {e}");
            return exit::PARTIAL;
        }
    };
    runtime.block_on(run(kind, settings))
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
    let name = kind.as_str();
    let options = TickOptions {
        dry_run: args.dry_run,
        deadline: Some(SystemClock.now().plus_seconds(args.tick_deadline_seconds)),
    };
    // A disabled tick needs no adapters at all: the shipped configuration
    // runs with nothing else configured, and makes no request.
    // Stopping is not disabled by the kill switch: it is what an operator
    // reaches for when something runs away.
    let disabled = match kind {
        TickKind::Poll => poll_disabled(&config),
        TickKind::Watch | TickKind::Stop(..) => watch_disabled(&config),
    };
    let (report, calls, remaining, budget) = if let Some(report) = disabled {
        (report, 0, None, None)
    } else {
        let deadline = started + Duration::from_secs(args.tick_deadline_seconds);
        let services = match args.services(deadline) {
            Ok(settings) => match Services::build(settings) {
                Ok(s) => s,
                // The settings were valid; the environment (no in-cluster
                // credentials, a TLS set-up failure) is what failed.
                Err(e) => {
                    tracing::error!(action = "start", "{e}");
                    return exit::PARTIAL;
                }
            },
            Err(e) => {
                tracing::error!(action = "config", "{e}");
                return exit::BAD_INPUT;
            }
        };
        let report = services.tick(&kind, &config, &options).await;
        (
            report,
            services.api_calls(),
            services.rate_limit_remaining(),
            services.rate_budget(),
        )
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
        graphql_cost = budget.map(|b| b.cost),
        graphql_remaining = budget.map(|b| b.remaining),
        graphql_reset = budget.and_then(|b| b.reset_at).map(|t| t.to_string()),
        "{name} tick finished"
    );
    if failed > 0 { exit::PARTIAL } else { exit::OK }
}
