//! Checks of the loop's raw settings that every binary shares: which
//! executor runs the agents, whether an owner can be a GitHub login, where a
//! secret comes from, comma-separated lists. Each error names its setting
//! and never shows a secret's value.

use crate::github::GitHubSettings;
use crate::http::Secret;
use crate::services::ExecutorSettings;

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
    let token = match &github.token {
        Secret::File(path) => GitToken::File(path.clone()),
        other => other
            .read()
            .ok()
            .flatten()
            .map_or(GitToken::None, GitToken::Value),
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
    let settings = kube.settings(namespace.as_deref().unwrap_or(""))?;
    Ok(ExecutorSettings::Kubernetes(Box::new(settings), namespace))
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

/// The secrets read straight from the environment (never flags); their
/// `*_FILE` variants are flags too.
pub const SECRET_ENV_NAMES: &[&str] = &[
    "AFK_GITHUB_TOKEN",
    "AFK_T3_TOKEN",
    "AFK_SLACK_WEBHOOK_URL",
    "AFK_NTFY_TOKEN",
    "AFK_WOODPECKER_TOKEN",
];

/// A comma-separated list, blanks dropped.
pub fn list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
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
}
