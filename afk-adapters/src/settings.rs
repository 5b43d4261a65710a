//! Checks of the loop's raw settings that every binary shares: which
//! executor runs the agents, whether an owner can be a GitHub login, where a
//! secret comes from, comma-separated lists. Each error names its setting
//! and never shows a secret's value. This file is long because every
//! setting an operator can get wrong is checked here, once, with its tests.

use crate::github::GitHubSettings;
pub use crate::github::app::AppArgs;
use crate::http::Secret;
use crate::services::{ExecutorSettings, NtfySettings};

/// The policy settings as flags and env vars: each key of
/// `afk_core::config::KEYS` (and the retired ones, refused by name), read
/// by the core's one parser.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PolicyArgs {
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
    /// At most this many runs in flight at once, across every repository. Default: no limit.
    #[arg(long, env = "AFK_MAX_RUNS", hide_env_values = true)]
    pub max_runs: Option<String>,
    /// At most this many new runs started by one poll tick. Default: no limit.
    #[arg(long, env = "AFK_MAX_DISPATCH_PER_TICK", hide_env_values = true)]
    pub max_dispatch_per_tick: Option<String>,
    /// Retired (T3 v0.0.27 takes no spend cap); setting it is an error.
    #[arg(long, env = "AFK_BUDGET_USD", hide = true, hide_env_values = true)]
    pub budget_usd: Option<String>,
    /// The label put on a run's pull request waiting for a human's review. Default: ready-for-review.
    #[arg(long, env = "AFK_READY_FOR_REVIEW_LABEL", hide_env_values = true)]
    pub ready_for_review_label: Option<String>,
    /// How changes land: push (to the default branch) or pull-request. Default: push.
    #[arg(long, env = "AFK_LAND", hide_env_values = true)]
    pub land: Option<String>,
    /// Per-repository AFK_LAND, e.g. infra=pull-request,web=push.
    #[arg(long, env = "AFK_LAND_REPOS", hide_env_values = true)]
    pub land_repos: Option<String>,
    /// How afk merges a run's pull request: squash, merge or rebase. Default: squash.
    #[arg(long, env = "AFK_MERGE_METHOD", hide_env_values = true)]
    pub merge_method: Option<String>,
}

impl PolicyArgs {
    /// The policy, through the one parser of `afk-core`.
    ///
    /// # Errors
    /// Every key that cannot be used, named.
    pub fn config(&self) -> Result<afk_core::Config, String> {
        let pairs = [
            ("AFK_KILL_SWITCH", &self.kill_switch),
            ("AFK_ALLOWLIST", &self.allowlist),
            ("AFK_READY_LABEL", &self.ready_label),
            ("AFK_IN_PROGRESS_LABEL", &self.in_progress_label),
            ("AFK_READY_FOR_HUMAN_LABEL", &self.ready_for_human_label),
            ("AFK_STOP_LABEL", &self.stop_label),
            ("AFK_READY_FOR_REVIEW_LABEL", &self.ready_for_review_label),
            (
                "AFK_FIX_FORWARD_MAX_ATTEMPTS",
                &self.fix_forward_max_attempts,
            ),
            ("AFK_FIX_FORWARD_MAX_SECONDS", &self.fix_forward_max_seconds),
            ("AFK_PREPUSH_MAX_SECONDS", &self.prepush_max_seconds),
            ("AFK_CI_START_MAX_SECONDS", &self.ci_start_max_seconds),
            ("AFK_RATE_FLOOR", &self.rate_floor),
            ("AFK_MAX_RUNS", &self.max_runs),
            ("AFK_MAX_DISPATCH_PER_TICK", &self.max_dispatch_per_tick),
            ("AFK_LAND", &self.land),
            ("AFK_LAND_REPOS", &self.land_repos),
            ("AFK_MERGE_METHOD", &self.merge_method),
            ("AFK_BUDGET_USD", &self.budget_usd),
        ];
        afk_core::Config::from_pairs(
            pairs
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (*k, v.as_str()))),
        )
        .map_err(|e| format!("bad configuration: {e}"))
    }
}

/// Which executor runs the agents (`AFK_EXECUTOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    /// A T3 Code server.
    T3,
    /// Processes on this machine.
    Local,
    /// Jobs in a Kubernetes cluster.
    Kubernetes,
}

/// `AFK_EXECUTOR`, else t3 when `AFK_T3_URL` is set; `None` when neither
/// says. A value that names no executor is an error, armed or not.
///
/// # Errors
/// A message naming `AFK_EXECUTOR`.
pub fn executor_kind(
    executor: Option<&str>,
    t3_url_set: bool,
) -> Result<Option<ExecutorKind>, String> {
    match executor.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") => Ok(t3_url_set.then_some(ExecutorKind::T3)),
        Some("t3") => Ok(Some(ExecutorKind::T3)),
        Some("local") => Ok(Some(ExecutorKind::Local)),
        Some("kubernetes") => Ok(Some(ExecutorKind::Kubernetes)),
        Some(other) => Err(format!(
            "AFK_EXECUTOR={other:?} names no executor (expected t3, local or kubernetes)"
        )),
    }
}

/// The local executor's settings as the operator wrote them
/// (`AFK_LOCAL_*`, `AFK_GIT_URL`).
#[derive(Debug, Clone, Default)]
pub struct LocalArgs {
    /// `AFK_LOCAL_AGENT`.
    pub agent: Option<String>,
    /// `AFK_LOCAL_DIR`, resolved.
    pub dir: std::path::PathBuf,
    /// `AFK_LOCAL_MAX_AGENTS`.
    pub max_agents: Option<String>,
    /// `AFK_GIT_URL`.
    pub git_url: Option<String>,
}

/// The local executor, checked (`afk_local::settings`); git gets the
/// tracker's token (re-read from its file when it is one).
///
/// # Errors
/// A message naming the setting that cannot be used.
pub fn local_executor(
    args: LocalArgs,
    github: &GitHubSettings,
) -> Result<ExecutorSettings, String> {
    use afk_local::os::GitToken;
    let token = if let Some(tokens) = agent_tokens(github)? {
        // With a GitHub App, each repository's git and agent get a token
        // minted for that repository alone, that can push and nothing more.
        GitToken::PerRepo(tokens)
    } else {
        match &github.token {
            Secret::File(path) => GitToken::File(path.clone()),
            other => other
                .read()
                .ok()
                .flatten()
                .map_or(GitToken::None, GitToken::Value),
        }
    };
    let config = afk_local::settings::LocalConfig {
        agent: args.agent,
        dir: args.dir,
        max_agents: args.max_agents,
        git_url: args.git_url,
        github_api_url: github.api_url.clone(),
        github_web_url: github.web_url.clone(),
        default_owner: github.default_owner.clone(),
        token,
    };
    let executor = config.build(|k| std::env::var(k).ok())?;
    Ok(ExecutorSettings::Built(Box::new(executor)))
}

/// Where agents' push tokens are minted: the GitHub App's, for one
/// repository each; `None` with a personal token.
fn agent_tokens(
    github: &GitHubSettings,
) -> Result<Option<std::sync::Arc<dyn afk_local::os::RepoCredentials>>, String> {
    let Some(app) = &github.app else {
        return Ok(None);
    };
    let http =
        crate::http::Http::new(&crate::http::HttpSettings::default()).map_err(|e| e.to_string())?;
    Ok(Some(std::sync::Arc::new(
        crate::github::app::AgentTokens::new(app.clone(), http),
    )))
}

/// The Kubernetes executor's settings, checked before anything runs (the
/// pod template read and validated): `kube` holds `AFK_K8S_NAMESPACE`,
/// `AFK_K8S_POD_TEMPLATE`, `AFK_K8S_START_TIMEOUT` and `AFK_GIT_URL`.
///
/// # Errors
/// A message naming the setting that cannot be used.
pub fn kube_executor(
    mut kube: afk_kube::settings::KubeConfig,
    github: &GitHubSettings,
) -> Result<ExecutorSettings, String> {
    let namespace = match kube.namespace.as_deref().map(str::trim) {
        Some(ns) if !ns.is_empty() => Some(afk_kube::settings::check_namespace(ns)?),
        _ => None,
    };
    kube.github_api_url.clone_from(&github.api_url);
    kube.github_web_url.clone_from(&github.web_url);
    kube.default_owner.clone_from(&github.default_owner);
    let mut settings = kube.settings(namespace.as_deref().unwrap_or(""))?;
    settings.push_tokens = agent_tokens(github)?.map(afk_kube::PushTokens);
    Ok(ExecutorSettings::Kubernetes(Box::new(settings), namespace))
}

/// The tracker's settings as the operator wrote them.
#[derive(Debug, Clone)]
pub struct GitHubArgs<'a> {
    /// `AFK_GITHUB_API_URL`.
    pub api_url: &'a str,
    /// `AFK_GITHUB_TOKEN` / `AFK_GITHUB_TOKEN_FILE`, as a source.
    pub token: Secret,
    /// `AFK_GITHUB_OWNER`.
    pub owner: Option<&'a str>,
    /// `AFK_GITHUB_LOGIN`.
    pub login: Option<&'a str>,
    /// `AFK_GITHUB_WEB_URL`.
    pub web_url: Option<&'a str>,
    /// `AFK_TRUSTED_BOTS`.
    pub trusted_bots: &'a str,
    /// `AFK_WOODPECKER_URL`, whose links reach an agent.
    pub woodpecker_url: Option<&'a str>,
    /// `AFK_CI_LINK_HOSTS`: more hosts whose links reach an agent.
    pub ci_link_hosts: Option<&'a str>,
    /// The GitHub App settings (`AFK_GITHUB_APP_*`, `AFK_GITHUB_TOKEN_CACHE`).
    pub app: crate::github::app::AppArgs<'a>,
}

/// The tracker's settings, checked: a token or a GitHub App (its key read
/// and checked now), never both and never neither; an owner that can be a
/// login. The App's token covers `policy`'s allowlist.
///
/// # Errors
/// A message naming the setting that cannot be used.
pub fn github(args: GitHubArgs<'_>, policy: &afk_core::Config) -> Result<GitHubSettings, String> {
    use crate::github::app::{AppAuth, AppSettings};
    let nonblank = |v: Option<&str>| {
        v.map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let owner = nonblank(args.owner);
    if let Some(o) = &owner
        && !owner_name_ok(o)
    {
        return Err(format!(
            "AFK_GITHUB_OWNER={o:?} cannot name a GitHub account: letters, digits and '-', at most 39"
        ));
    }
    let repos: Vec<String> = policy
        .watched_repos()
        .iter()
        .map(|r| match (r.split_once('/'), &owner) {
            (Some(_), _) | (None, None) => r.clone(),
            (None, Some(o)) => format!("{o}/{r}"),
        })
        .collect();
    let lands = policy.land == afk_core::land::LandMode::PullRequest
        || policy
            .land_repos
            .iter()
            .any(|(_, m)| *m == afk_core::land::LandMode::PullRequest);
    let app = AppSettings::parse(&args.app, args.token.is_configured(), args.api_url, repos)?
        .map(|s| AppSettings {
            lands_pull_requests: lands,
            ..s
        })
        .map(AppAuth::shared)
        .transpose()?;
    if app.is_none() && !args.token.is_configured() {
        return Err("a GitHub identity is required: set AFK_GITHUB_TOKEN or AFK_GITHUB_TOKEN_FILE, or a GitHub App (AFK_GITHUB_APP_ID and AFK_GITHUB_APP_PRIVATE_KEY_FILE)".into());
    }
    Ok(GitHubSettings {
        api_url: args.api_url.to_owned(),
        token: args.token,
        app,
        default_owner: owner,
        trusted_bots: list(args.trusted_bots),
        own_login: nonblank(args.login),
        web_url: nonblank(args.web_url),
        ci_link_hosts: args
            .woodpecker_url
            .into_iter()
            .flat_map(list)
            .chain(link_hosts(args.ci_link_hosts.unwrap_or(""))?)
            .collect(),
        ready_label: policy.ready_label.clone(),
        in_progress_label: policy.in_progress_label.clone(),
    })
}

/// `AFK_CI_LINK_HOSTS`: each entry a host name (`ci.example.com`) or an
/// http(s) address on one (`https://ci.example.com`), without credentials.
/// An entry that names no host is refused, not dropped: a log link the
/// operator meant to pass would otherwise never reach an agent, silently.
///
/// # Errors
/// A message naming the key and the entry (never an entry's credentials).
fn link_hosts(text: &str) -> Result<Vec<String>, String> {
    list(text)
        .into_iter()
        .map(|entry| {
            let address = if entry.contains("://") {
                entry.clone()
            } else {
                format!("https://{entry}")
            };
            match reqwest::Url::parse(&address) {
                Ok(url) if !url.username().is_empty() || url.password().is_some() => Err(
                    "AFK_CI_LINK_HOSTS: an entry carries credentials (user:password@): name the host only"
                        .to_owned(),
                ),
                Ok(url)
                    if matches!(url.scheme(), "https" | "http")
                        && url.host_str().is_some_and(|h| !h.is_empty()) =>
                {
                    Ok(entry)
                }
                _ => Err(format!(
                    "AFK_CI_LINK_HOSTS: {entry:?} is not a host name (ci.example.com) or an http(s) address on one (https://ci.example.com)"
                )),
            }
        })
        .collect()
}

/// `AFK_LOCAL_DIR`, or its default under `$XDG_STATE_HOME` or `$HOME`.
///
/// # Errors
/// Neither is set.
pub fn local_dir(explicit: Option<&str>) -> Result<std::path::PathBuf, String> {
    match explicit.map(str::trim).filter(|d| !d.is_empty()) {
        Some(dir) => Ok(dir.into()),
        None => afk_local::settings::default_dir(|k| std::env::var(k).ok())
            .ok_or_else(|| "AFK_LOCAL_DIR is not set, and neither is HOME".to_owned()),
    }
}

/// The T3 executor's settings, checked once the loop is armed with it:
/// `AFK_T3_URL` and a token are required. `names` are the model, the
/// provider instance and the workspace base.
///
/// # Errors
/// A message naming the setting that is missing.
pub fn t3(
    url: Option<String>,
    web_url: Option<String>,
    token: Secret,
    names: [&String; 3],
    default_owner: Option<String>,
) -> Result<crate::t3::T3Settings, String> {
    let url = url.ok_or("AFK_T3_URL is required once the loop is armed with AFK_EXECUTOR=t3 (the allowlist is not empty)")?;
    if !token.is_configured() {
        return Err(
            "a T3 token is required once the loop is armed: set AFK_T3_TOKEN or AFK_T3_TOKEN_FILE"
                .into(),
        );
    }
    let [model, instance, workspace_base] = names.map(Clone::clone);
    Ok(crate::t3::T3Settings {
        web_url: web_url.unwrap_or_else(|| url.clone()),
        base_url: url,
        token,
        model,
        instance,
        workspace_base,
        default_owner,
    })
}

/// Whether `owner` can be a GitHub user or organisation login: letters,
/// digits and single hyphens, at most 39 characters (so never `.` or `..`,
/// which would change the URL it is put in).
pub fn owner_name_ok(owner: &str) -> bool {
    !owner.is_empty()
        && owner.len() <= 39
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !owner.starts_with('-')
        && !owner.ends_with('-')
}

/// A secret's source: the file when one is named, else the variable
/// `env_name` (read through `env`). A value that holds a line break is an
/// error naming the key (never the value).
///
/// # Errors
/// The message, naming `env_name`.
pub fn secret(
    file: Option<&str>,
    env_name: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Secret, String> {
    let s = match file.map(str::trim).filter(|f| !f.is_empty()) {
        Some(path) => Secret::File(path.into()),
        None => Secret::from_settings(env_name, env),
    };
    s.check_format()
        .map_err(|why| format!("{env_name}: {why}"))?;
    Ok(s)
}

/// An optional service's secret: on only when it can be read and is not
/// empty now (the manifests mount every key, empty ones included; an empty
/// Slack webhook must switch Slack off, not fail every doorbell).
///
/// # Errors
/// As [`secret`].
pub fn optional_secret(
    file: Option<&str>,
    env_name: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Secret>, String> {
    let s = secret(file, env_name, env)?;
    Ok(matches!(s.read(), Ok(Some(_))).then_some(s))
}

/// [`secret`] (`optional`: [`optional_secret`]) read from this process's
/// environment; a required one is always `Some`.
///
/// # Errors
/// The message, naming `env_name`.
pub fn env_secret(
    file: Option<&String>,
    env_name: &str,
    optional: bool,
) -> Result<Option<Secret>, String> {
    let file = file.map(String::as_str);
    let env = |k: &str| std::env::var(k).ok();
    if optional {
        optional_secret(file, env_name, env)
    } else {
        secret(file, env_name, env).map(Some)
    }
}

/// The doorbells' settings from this process's environment: Slack's
/// webhook (`files.0`, else `AFK_SLACK_WEBHOOK_URL`), ntfy's server and
/// topic (`ntfy`) and token (`files.1`, else `AFK_NTFY_TOKEN`).
///
/// # Errors
/// A secret that cannot be used, or ntfy's server without a topic (named).
pub fn notify_settings(
    files: (Option<&String>, Option<&String>),
    ntfy: (Option<String>, Option<String>),
) -> Result<(Option<Secret>, Option<NtfySettings>), String> {
    let slack = env_secret(files.0, "AFK_SLACK_WEBHOOK_URL", true)?;
    let (Some(url), topic) = ntfy else {
        return Ok((slack, None));
    };
    let topic = topic.ok_or("AFK_NTFY_URL is set but AFK_NTFY_TOPIC is not")?;
    let token = env_secret(files.1, "AFK_NTFY_TOKEN", true)?.unwrap_or(Secret::None);
    let topic = Secret::Value(topic);
    Ok((slack, Some(NtfySettings { url, topic, token })))
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

/// The settings of an env file, as `kubectl create configmap
/// --from-env-file` reads one: a `KEY=VALUE` per line, the value taken as
/// written (quotes are part of it), blank lines and `#` comments skipped, a
/// line with a key alone taking its value from `env`.
///
/// # Errors
/// The line that cannot be read, by number (never its value).
pub fn env_file(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.strip_prefix('\u{feff}').unwrap_or(line);
        let line = line.trim_start().trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((k, v)) => (k.trim_end(), Some(v)),
            None => (line.trim_end(), None),
        };
        let name_ok = key
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !name_ok {
            return Err(format!(
                "line {}: {:?} is not a variable name (KEY=VALUE expected)",
                n + 1,
                prompt_safe(key)
            ));
        }
        let value = match value {
            Some(v) => v.to_owned(),
            None => match env(key) {
                Some(v) => v,
                None => continue,
            },
        };
        // A key given twice: the later line wins, as kubectl takes it.
        out.retain(|(k, _): &(String, String)| k != key);
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

fn prompt_safe(text: &str) -> String {
    afk_core::prompt::one_line(text, 60)
}

/// The known key nearest to `name` (at most a third of its letters off,
/// and at most 4), for "did you mean" in a warning.
pub fn nearest_key<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    let limit = (name.len() / 3).clamp(1, 4);
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance, by bytes (keys are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// The `AFK_*` names in `names` that are not in `known`, each with the
/// nearest known key: what a typo'd setting (silently ignored otherwise)
/// is warned as.
pub fn unknown_settings(
    names: impl IntoIterator<Item = String>,
    known: &[&str],
) -> Vec<(String, Option<String>)> {
    let mut out: Vec<(String, Option<String>)> = names
        .into_iter()
        .filter(|n| n.starts_with("AFK_") && !known.contains(&n.as_str()))
        .map(|n| {
            let near = nearest_key(&n, known).map(str::to_owned);
            (n, near)
        })
        .collect();
    out.sort();
    out
}

/// `AFK_*` names other parts of afk read (the gateway, breakglass, the
/// campaign runner, what afk gives an agent): never warned about.
const OTHER_KEYS: &[&str] = &[
    "AFK_LOG",
    "AFK_CAMPAIGN_DIR",
    "AFK_ITEM_ID",
    "AFK_ITEM_TIER",
    "AFK_ITEM_TITLE",
    "AFK_RUN_DIR",
    "AFK_TASK",
    "AFK_CHECKLIST",
    "AFK_BIN",
    "AFK_REAPER_BIN",
    "AFK_REAL_CLI_DIR",
    "AFK_PROCESS_TREE",
    "AFK_THREAD_ID",
    "AFK_TURN",
    "AFK_REPO",
    "AFK_ISSUE",
    "AFK_BRANCH",
    "AFK_CLONE_URL",
    "AFK_WORKSPACE",
    "AFK_PROMPT_FILE",
    "AFK_GIT_TOKEN",
    "AFK_GIT_TOKEN_FILE",
];
/// Prefixes of other binaries' settings.
const OTHER_PREFIXES: &[&str] = &["AFK_GATEWAY_", "AFK_BREAKGLASS_"];

/// Logs a warning for each `AFK_*` variable of this process's environment
/// that no part of afk reads, with the nearest of `loop_keys` (the loop's
/// settings): a typo'd setting would otherwise be ignored in silence.
pub fn warn_unknown_env(loop_keys: &[String]) {
    let mut known: Vec<&str> = loop_keys.iter().map(String::as_str).collect();
    known.extend(SECRET_ENV_NAMES);
    let names = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| {
            !OTHER_KEYS.contains(&k.as_str()) && !OTHER_PREFIXES.iter().any(|p| k.starts_with(p))
        });
    for (name, near) in unknown_settings(names, &known) {
        tracing::warn!(
            action = "config",
            setting = %name,
            "{name} is set but is not a setting of afk{}; it is ignored",
            near.map(|n| format!(" (did you mean {n}?)")).unwrap_or_default()
        );
    }
}

/// Refuses an operator command (`afk stop`, `afk halt`, `afk runs`) that
/// has no allowlist: it would find nothing and say nothing was wrong.
///
/// # Errors
/// The message saying what is missing and how to give it.
pub fn operator_allowlist(config: &afk_core::Config, command: &str) -> Result<(), String> {
    if config.allowlist.is_empty() && config.winding_down.is_empty() {
        return Err(format!(
            "{command} needs AFK_ALLOWLIST (the repositories whose runs it looks at): \
             run it with the CronJobs' settings (--env-file afk-config.env, exported from the \
             afk-config ConfigMap as the runbook's \"Stop it\" shows), or set AFK_ALLOWLIST"
        ));
    }
    Ok(())
}

/// A comma-separated list, blanks dropped.
pub fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod env_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_env_file_reads_as_kubectl_reads_it() {
        let text = "\u{feff}# afk-config\n\nAFK_KILL_SWITCH=false\n  AFK_ALLOWLIST=infra,web\r\nAFK_READY_LABEL=\"ready\"\nFROM_ENV\nMISSING\nEMPTY=\n";
        let got = env_file(text, |k| (k == "FROM_ENV").then(|| "x".to_owned())).unwrap();
        assert_eq!(
            got,
            [
                ("AFK_KILL_SWITCH".to_owned(), "false".to_owned()),
                ("AFK_ALLOWLIST".to_owned(), "infra,web".to_owned()),
                ("AFK_READY_LABEL".to_owned(), "\"ready\"".to_owned()),
                ("FROM_ENV".to_owned(), "x".to_owned()),
                ("EMPTY".to_owned(), String::new()),
            ]
        );
        let twice = env_file("A=1\nB=2\nA=3\n", |_| None).unwrap();
        assert_eq!(
            twice,
            [
                ("B".to_owned(), "2".to_owned()),
                ("A".to_owned(), "3".to_owned())
            ]
        );
        for (bad, line) in [("=v", "line 1"), ("a\n1X=y", "line 2"), ("A B=c", "line 1")] {
            let err = env_file(bad, |_| None).unwrap_err();
            assert!(err.starts_with(line), "{bad:?}: {err}");
        }
    }

    #[test]
    fn an_unknown_setting_is_named_with_the_nearest_known_one() {
        let known = [
            "AFK_PREPUSH_MAX_SECONDS",
            "AFK_ALLOWLIST",
            "AFK_KILL_SWITCH",
        ];
        let got = unknown_settings(
            [
                "AFK_PREPUSH_MAX_SECOND".to_owned(),
                "AFK_ALOWLIST".to_owned(),
                "AFK_ALLOWLIST".to_owned(),
                "AFK_SOMETHING_ELSE_ENTIRELY".to_owned(),
                "HOME".to_owned(),
            ],
            &known,
        );
        assert_eq!(
            got,
            [
                ("AFK_ALOWLIST".to_owned(), Some("AFK_ALLOWLIST".to_owned())),
                (
                    "AFK_PREPUSH_MAX_SECOND".to_owned(),
                    Some("AFK_PREPUSH_MAX_SECONDS".to_owned())
                ),
                ("AFK_SOMETHING_ELSE_ENTIRELY".to_owned(), None),
            ]
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executor_is_named_or_follows_the_t3_url() {
        assert_eq!(executor_kind(None, false), Ok(None));
        assert_eq!(executor_kind(None, true), Ok(Some(ExecutorKind::T3)));
        assert_eq!(
            executor_kind(Some(" Local "), true),
            Ok(Some(ExecutorKind::Local))
        );
        assert_eq!(executor_kind(Some("t3"), false), Ok(Some(ExecutorKind::T3)));
        assert_eq!(
            executor_kind(Some("Kubernetes"), true),
            Ok(Some(ExecutorKind::Kubernetes))
        );
        let other = executor_kind(Some("ssh"), true).unwrap_err();
        assert!(other.starts_with("AFK_EXECUTOR=\"ssh\""), "{other}");
    }

    #[test]
    fn owners_and_lists_read_strictly() {
        assert!(owner_name_ok("acme-corp"));
        for bad in ["", ".", "..", "-a", "a-", "a/b", &"x".repeat(40)] {
            assert!(!owner_name_ok(bad), "{bad}");
        }
        assert_eq!(list(" a, ,b ,"), ["a", "b"]);
    }

    /// The tracker's settings with these CI link settings, the rest minimal.
    fn with_links(
        woodpecker_url: Option<&str>,
        ci_link_hosts: Option<&str>,
    ) -> Result<GitHubSettings, String> {
        let args = GitHubArgs {
            api_url: "https://api.github.com",
            token: Secret::Value("ghp-test".into()),
            owner: Some("acme"),
            login: None,
            web_url: None,
            trusted_bots: "",
            woodpecker_url,
            ci_link_hosts,
            app: AppArgs::default(),
        };
        github(args, &afk_core::Config::default())
    }

    #[test]
    fn ci_links_reach_an_agent_from_the_woodpecker_host_and_the_named_hosts() {
        let s = with_links(
            Some("https://ci.example.com/woodpecker"),
            Some(" logs.example.org, https://build.example.net:8443 ,"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let hosts = afk_core::ci::LinkHosts::new(&s.ci_link_hosts);
        for allowed in [
            "https://ci.example.com/repos/1/pipeline/2",
            "https://logs.example.org/run/7",
            "https://build.example.net:8443/job/3",
        ] {
            assert!(hosts.allows(allowed), "{allowed} in {:?}", s.ci_link_hosts);
        }
        assert!(!hosts.allows("https://evil.example.com/run/7"));
        // Neither set: no host beyond the tracker's own.
        let none = with_links(None, None).unwrap_or_else(|e| panic!("{e}"));
        assert!(none.ci_link_hosts.is_empty(), "{:?}", none.ci_link_hosts);
    }

    #[test]
    fn a_ci_link_host_that_names_no_host_is_refused_by_its_key() {
        for bad in [
            "logs.example.org, not a host",
            "ftp://logs.example.org",
            "https://",
            "https://user:pass@logs.example.org",
        ] {
            let e = with_links(None, Some(bad)).err().unwrap_or_default();
            assert!(e.starts_with("AFK_CI_LINK_HOSTS: "), "{bad:?}: {e}");
            assert!(!e.contains("pass@"), "{bad:?}: {e}");
        }
    }
}
