//! `afk-poller` and `afk-watcher` (one tick per process, then exit), and
//! `afk loop` (their ticks in rounds, in one process).
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
use afk_adapters::services::{ExecutorSettings, NtfySettings, ServiceSettings, SystemClock};
use afk_adapters::services::{TickOutputs, TickStart, finish_tick, run_tick, serve_rounds};
use afk_adapters::settings::{self, ExecutorKind, LocalArgs};
use afk_adapters::t3::T3Settings;
use afk_adapters::woodpecker::WoodpeckerSettings;
use afk_core::Config;
use afk_loop::{Clock, TickOptions, poll_disabled, watch_disabled};

use afk_kube::settings::KubeConfig;

use crate::exit;

/// Every setting of the loop binaries (`docs/deploy/configmap.yaml`,
/// `docs/operations.md`).
#[derive(Debug, Clone, clap::Args)]
pub struct LoopArgs {
    /// The policy settings (`afk_core::config::KEYS`).
    #[command(flatten)]
    pub policy: settings::PolicyArgs,

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
    /// Act as this GitHub App (its App ID, with its key file) instead of a token.
    #[arg(long, env = "AFK_GITHUB_APP_ID", hide_env_values = true)]
    pub github_app_id: Option<String>,
    /// The App's private key (PEM), re-read at every signing.
    #[arg(long, env = "AFK_GITHUB_APP_PRIVATE_KEY_FILE", hide_env_values = true)]
    pub github_app_private_key_file: Option<String>,
    /// The App's installation. Default: the allowlisted owners' own.
    #[arg(long, env = "AFK_GITHUB_APP_INSTALLATION_ID", hide_env_values = true)]
    pub github_app_installation_id: Option<String>,
    /// A file (mode 0600) keeping the App's token across ticks. Default: none.
    #[arg(long, env = "AFK_GITHUB_TOKEN_CACHE", hide_env_values = true)]
    pub github_token_cache: Option<String>,
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

    /// Where agents run: t3 (a T3 Code server), local (processes on this
    /// machine) or kubernetes (a Job per turn). Default: t3 when
    /// AFK_T3_URL is set; an armed loop without either is an error.
    #[arg(long, env = "AFK_EXECUTOR", hide_env_values = true)]
    pub executor: Option<String>,
    /// The local executor's agent: claude, opencode, or a command line
    /// (`<program> <args>`, split like a shell would, never run through
    /// one); the prompt goes to its standard input. Default: claude.
    #[arg(long, env = "AFK_LOCAL_AGENT", hide_env_values = true)]
    pub local_agent: Option<String>,
    /// Where the local executor keeps workspaces, logs and run records, and
    /// where `afk loop` takes its lock. Default: $XDG_STATE_HOME/afk (else
    /// ~/.local/state/afk).
    #[arg(long, env = "AFK_LOCAL_DIR", hide_env_values = true)]
    pub local_dir: Option<String>,
    /// At most this many local agents at once; issues past it wait for a
    /// later tick. Default: 2.
    #[arg(long, env = "AFK_LOCAL_MAX_AGENTS", hide_env_values = true)]
    pub local_max_agents: Option<String>,
    /// The base of clone URLs: <base>/<owner>/<name>.git. Default: GitHub's
    /// web address (AFK_GITHUB_WEB_URL). A file:// base is valid (mirrors,
    /// tests).
    #[arg(long, env = "AFK_GIT_URL", hide_env_values = true)]
    pub git_url: Option<String>,

    /// The agents' namespace. Default: the configuration's (in a pod, its own).
    #[arg(long, env = "AFK_K8S_NAMESPACE", hide_env_values = true)]
    pub k8s_namespace: Option<String>,
    /// The pod template (YAML) every agent's Job is built from (required with kubernetes).
    #[arg(long, env = "AFK_K8S_POD_TEMPLATE", hide_env_values = true)]
    pub k8s_pod_template: Option<String>,
    /// An agent's pod that has not started after this long is an error. Default: 10m.
    #[arg(long, env = "AFK_K8S_START_TIMEOUT", hide_env_values = true)]
    pub k8s_start_timeout: Option<String>,
    /// T3 Code server base URL (required once the loop is armed with AFK_EXECUTOR=t3).
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
    /// Where afk remembers its runs in flight: a de-enrolled repository's are still watched.
    #[arg(long, env = "AFK_STATE_FILE", hide_env_values = true)]
    pub state_file: Option<String>,
    /// After each tick, write its metrics here (Prometheus textfile format).
    #[arg(long, env = "AFK_METRICS_FILE", hide_env_values = true)]
    pub metrics_file: Option<String>,
    /// After each tick, push its metrics to this Pushgateway.
    #[arg(long, env = "AFK_METRICS_PUSH_URL", hide_env_values = true)]
    pub metrics_push_url: Option<String>,
    /// Decide and log, but write nothing and dispatch nothing (true/false).
    #[arg(long, env = "AFK_DRY_RUN", hide_env_values = true)]
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
        self.policy
            .config()
            .map(|c| afk_adapters::state::with_state(c, self.state_file.as_deref()))
            .map_err(BadConfig)
    }

    /// The tracker's settings (the one adapter `afk runs` needs).
    ///
    /// # Errors
    /// `BadConfig` when no token is configured, or the policy settings
    /// (whose labels the tracker reads by) cannot be used.
    pub fn github(&self) -> Result<GitHubSettings, BadConfig> {
        let args = settings::GitHubArgs {
            api_url: &self.github_api_url,
            token: secret(self.github_token_file.as_ref(), "AFK_GITHUB_TOKEN")?,
            owner: self.github_owner.as_deref(),
            login: self.github_login.as_deref(),
            web_url: self.github_web_url.as_deref(),
            trusted_bots: &self.trusted_bots,
            woodpecker_url: self.woodpecker_url.as_deref(),
            ci_link_hosts: self.ci_link_hosts.as_deref(),
            app: settings::AppArgs {
                app_id: self.github_app_id.as_deref(),
                key_file: self.github_app_private_key_file.as_deref(),
                installation_id: self.github_app_installation_id.as_deref(),
                cache_file: self.github_token_cache.as_deref(),
            },
        };
        // The labels anchor the look-up of a run's progress comment.
        settings::github(args, &self.policy()?).map_err(BadConfig)
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

    /// Which executor runs the agents (`afk_adapters::settings::executor_kind`).
    ///
    /// # Errors
    /// `BadConfig` naming `AFK_EXECUTOR`.
    pub fn executor_kind(&self) -> Result<Option<ExecutorKind>, BadConfig> {
        settings::executor_kind(self.executor.as_deref(), some(&self.t3_url).is_some())
            .map_err(BadConfig)
    }

    /// `AFK_LOCAL_DIR`, or its default (`settings::local_dir`).
    pub fn local_dir(&self) -> Result<std::path::PathBuf, BadConfig> {
        settings::local_dir(self.local_dir.as_deref()).map_err(BadConfig)
    }

    /// Everything an armed loop needs, checked.
    ///
    /// # Errors
    /// `BadConfig` naming the setting that is missing or unreadable.
    pub fn services(&self, deadline: Instant) -> Result<ServiceSettings, BadConfig> {
        let kind = self.executor_kind()?.ok_or_else(|| {
            BadConfig(
                "AFK_EXECUTOR is required once the loop is armed (the allowlist is not empty): set AFK_EXECUTOR=local to run agents on this machine, or AFK_EXECUTOR=t3 with AFK_T3_URL".into(),
            )
        })?;
        let github = self.github()?;
        let executor = match kind {
            ExecutorKind::Local => settings::local_executor(
                LocalArgs {
                    agent: some(&self.local_agent),
                    dir: self.local_dir()?,
                    max_agents: some(&self.local_max_agents),
                    git_url: some(&self.git_url),
                },
                &github,
            )
            .map_err(BadConfig)?,
            ExecutorKind::Kubernetes => settings::kube_executor(
                KubeConfig {
                    namespace: some(&self.k8s_namespace),
                    pod_template: some(&self.k8s_pod_template),
                    start_timeout: some(&self.k8s_start_timeout),
                    git_url: some(&self.git_url),
                    deadline_seconds: self.policy()?.prepush_max_seconds,
                    ..KubeConfig::default()
                },
                &github,
            )
            .map_err(BadConfig)?,
            ExecutorKind::T3 => ExecutorSettings::T3(self.t3()?),
        };
        let (slack, ntfy) = self.notify()?;
        Ok(ServiceSettings {
            http: self.http(Some(deadline)),
            github,
            executor,
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
            slack,
            ntfy,
        })
    }

    /// The doorbells' settings (Slack, ntfy), checked.
    fn notify(&self) -> Result<(Option<Secret>, Option<NtfySettings>), BadConfig> {
        let ntfy = (some(&self.ntfy_url), some(&self.ntfy_topic));
        let files = (
            self.slack_webhook_url_file.as_ref(),
            self.ntfy_token_file.as_ref(),
        );
        settings::notify_settings(files, ntfy).map_err(BadConfig)
    }

    /// The T3 executor's settings.
    fn t3(&self) -> Result<T3Settings, BadConfig> {
        let token = secret(self.t3_token_file.as_ref(), "AFK_T3_TOKEN")?;
        let names = [&self.t3_model, &self.t3_instance, &self.t3_workspace_base];
        let (url, web) = (some(&self.t3_url), some(&self.t3_web_url));
        settings::t3(url, web, token, names, self.github_owner.clone()).map_err(BadConfig)
    }
}

/// A setting that is set and not blank.
fn some(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.trim().is_empty())
}

/// A secret's source from this process's environment
/// (`afk_adapters::settings::secret`).
fn secret(file: Option<&String>, env_name: &str) -> Result<Secret, BadConfig> {
    settings::env_secret(file, env_name, false)
        .map(|s| s.unwrap_or(Secret::None))
        .map_err(BadConfig)
}

pub use afk_adapters::settings::SECRET_ENV_NAMES;

/// A runtime for one command, with its logs installed; `None` (logged)
/// when it cannot be built.
fn runtime(log_format: &str) -> Option<tokio::runtime::Runtime> {
    afk_adapters::services::init_logs(log_format);
    let cmd = <LoopArgs as clap::Args>::augment_args(clap::Command::new("afk"));
    let keys = cmd
        .get_arguments()
        .filter_map(|a| a.get_env()?.to_str().map(str::to_owned));
    settings::warn_unknown_env(&keys.collect::<Vec<_>>());
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| tracing::error!(action = "start", "cannot start the async runtime: {e}"))
        .ok()
}

/// The whole `main` of `afk-poller` and `afk-watcher`: logs, a runtime, one
/// tick, the exit code.
pub fn main(kind: TickKind, settings: &LoopArgs) -> u8 {
    runtime(&settings.log_format).map_or(exit::PARTIAL, |rt| rt.block_on(run(kind, settings)))
}

/// Runs one tick of `kind` and returns the exit code.
pub async fn run(kind: TickKind, args: &LoopArgs) -> u8 {
    let started = Instant::now();
    let config = match args.policy().and_then(|c| args.executor_kind().map(|_| c)) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(action = "config", "{e}");
            return exit::BAD_INPUT;
        }
    };
    let options = TickOptions {
        dry_run: args.dry_run,
        deadline: Some(SystemClock.now().plus_seconds(args.tick_deadline_seconds)),
    };
    let deadline = started + Duration::from_secs(args.tick_deadline_seconds);
    let settings = || args.services(deadline).map_err(|e| e.0);
    match run_tick(&kind, &config, &options, settings).await {
        Ok(tick) => {
            let outputs = TickOutputs {
                metrics_file: args.metrics_file.as_deref(),
                metrics_push_url: args.metrics_push_url.as_deref(),
                state_file: args.state_file.as_deref(),
            };
            let notifiers = || {
                let (slack, ntfy) = args.notify().map_err(|e| e.0)?;
                afk_adapters::services::notifiers(&args.http(Some(deadline)), slack, ntfy)
            };
            let failed = finish_tick(&kind, &tick, args.dry_run, started, outputs, notifiers).await;
            if failed { exit::PARTIAL } else { exit::OK }
        }
        Err(TickStart::BadSettings(e)) => {
            tracing::error!(action = "config", "{e}");
            exit::BAD_INPUT
        }
        Err(TickStart::CannotStart(e)) => {
            tracing::error!(action = "start", "{e}");
            exit::PARTIAL
        }
    }
}

/// `afk loop` (`afk_adapters::services::serve_rounds`), one per
/// `AFK_LOCAL_DIR`: 0 once stopped, 2 on bad configuration or a second loop,
/// 1 when it could not start.
pub fn run_loop(args: &LoopArgs, every: Duration) -> u8 {
    runtime(&args.log_format).map_or(exit::PARTIAL, |rt| rt.block_on(looping(args, every)))
}

async fn looping(args: &LoopArgs, every: Duration) -> u8 {
    // Bad settings are found before the first tick, not at every one.
    let checked = args.policy().and_then(|config| {
        args.executor_kind()?;
        if poll_disabled(&config).is_none() || watch_disabled(&config).is_none() {
            let deadline = Instant::now() + Duration::from_secs(args.tick_deadline_seconds);
            args.services(deadline)?;
        }
        args.local_dir()
    });
    let held = checked.and_then(|dir| {
        afk_local::settings::lock_loop(&dir)
            .map(|lock| (dir, lock))
            .map_err(BadConfig)
    });
    let (dir, _lock) = match held {
        Ok(held) => held,
        Err(e) => {
            tracing::error!(action = "config", "{e}");
            return exit::BAD_INPUT;
        }
    };
    tracing::info!(action = "start", local_dir = %dir.display(), "afk loop started, every {every:?}");
    // Where runs are in flight is remembered beside the loop's own files.
    let mut args = args.clone();
    let state = dir.join("state.json").display().to_string();
    args.state_file.get_or_insert(state);
    let args = &args;
    serve_rounds(every, |tick| async move {
        let kind = match tick {
            afk_adapters::rounds::Tick::Poll => TickKind::Poll,
            afk_adapters::rounds::Tick::Watch => TickKind::Watch,
        };
        run(kind, args).await;
    })
    .await;
    exit::OK
}
