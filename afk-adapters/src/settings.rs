//! Checks of the loop's raw settings that every binary shares: which
//! executor runs the agents, whether an owner can be a GitHub login, where a
//! secret comes from, comma-separated lists. Each error names its setting
//! and never shows a secret's value.

use crate::http::Secret;

/// Which executor runs the agents (`AFK_EXECUTOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecutorKind {
    /// A T3 Code server.
    T3,
    /// Processes on this machine.
    Local,
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
        Some("kubernetes") => Err(
            "AFK_EXECUTOR=kubernetes is not available in this version yet (issue #24): use local or t3"
                .into(),
        ),
        Some(other) => Err(format!(
            "AFK_EXECUTOR={other:?} names no executor (expected t3, local or kubernetes)"
        )),
    }
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
        let k8s = executor_kind(Some("kubernetes"), false).unwrap_err();
        assert!(k8s.contains("not available"), "{k8s}");
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
