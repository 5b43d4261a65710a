//! The Kubernetes executor's settings, as the operator writes them,
//! checked before anything runs: every error names its setting.

use std::path::Path;

use k8s_openapi::api::core::v1::PodTemplateSpec;

use crate::KubeSettings;
use crate::job::check_template;

/// The largest pod template read (a template is a page of YAML).
const TEMPLATE_MAX_BYTES: u64 = 1 << 20;

/// How long a finished turn's Job (and its pod's log) is kept: long enough
/// for the watcher to read it and a human to look, short enough that a
/// namespace does not fill.
pub const TTL_SECONDS: i32 = 24 * 3600;

/// `AFK_K8S_START_TIMEOUT`'s default: ten minutes to schedule the pod and
/// pull the agent's image.
pub const START_TIMEOUT_SECONDS: i64 = 600;

/// What the operator set (each field's setting is named in its error).
#[derive(Debug, Clone, Default)]
pub struct KubeConfig {
    /// `AFK_K8S_NAMESPACE`; default: the configuration's (in a pod, its
    /// own).
    pub namespace: Option<String>,
    /// `AFK_K8S_POD_TEMPLATE`: the pod template's file (required).
    pub pod_template: Option<String>,
    /// `AFK_K8S_START_TIMEOUT`: seconds (or `90s`, `10m`, `1h`).
    pub start_timeout: Option<String>,
    /// `AFK_GIT_URL`, else the tracker's web address.
    pub git_url: Option<String>,
    /// `AFK_GITHUB_API_URL`.
    pub github_api_url: String,
    /// `AFK_GITHUB_WEB_URL`.
    pub github_web_url: Option<String>,
    /// `AFK_GITHUB_OWNER`.
    pub default_owner: Option<String>,
    /// The turn's time limit (`AFK_PREPUSH_MAX_SECONDS`).
    pub deadline_seconds: u64,
}

/// A duration setting: whole seconds, or a number with `s`, `m` or `h`.
///
/// # Errors
/// A text that is not one, naming `key`.
pub fn seconds(key: &str, text: &str) -> Result<i64, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().last() {
        Some((i, 's')) => (&t[..i], 1),
        Some((i, 'm')) => (&t[..i], 60),
        Some((i, 'h')) => (&t[..i], 3600),
        _ => (t, 1),
    };
    digits
        .parse::<i64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| (1..=7 * 24 * 3600).contains(n))
        .ok_or_else(|| {
            format!("{key}={text:?} is not a duration from 1s to 168h (write 600, 90s, 10m or 1h)")
        })
}

/// Reads and checks a pod template file.
///
/// # Errors
/// One line naming `AFK_K8S_POD_TEMPLATE` and what is wrong.
pub fn read_template(path: &Path) -> Result<PodTemplateSpec, String> {
    let bad = |why: String| format!("AFK_K8S_POD_TEMPLATE={}: {why}", path.display());
    let meta = std::fs::metadata(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    if !meta.is_file() {
        return Err(bad("is not a file".into()));
    }
    if meta.len() > TEMPLATE_MAX_BYTES {
        return Err(bad(format!("is larger than {TEMPLATE_MAX_BYTES} bytes")));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
    parse_template(&text).map_err(bad)
}

/// Parses and checks a pod template's YAML.
///
/// # Errors
/// What is wrong, in words.
pub fn parse_template(text: &str) -> Result<PodTemplateSpec, String> {
    let template: PodTemplateSpec = serde_saphyr::from_str(text).map_err(|e| {
        format!("is not a pod template (YAML with metadata and spec, as under a Job's spec.template): {e}")
    })?;
    check_template(&template)?;
    // What the typed template does not hold was dropped as it was read:
    // a misspelt field (`resouces`) would silently do nothing.
    let written: serde_json::Value = serde_saphyr::from_str(text)
        .map_err(|e| format!("is not a pod template (YAML with metadata and spec): {e}"))?;
    let kept = serde_json::to_value(&template).map_err(|e| format!("cannot be read back: {e}"))?;
    let mut unknown = Vec::new();
    not_kept(&written, &kept, String::new(), &mut unknown);
    if let Some(first) = unknown.first() {
        return Err(format!(
            "{first} is not a field of a pod template (misspelt?){}",
            match unknown.len() {
                1 => String::new(),
                n => format!(", nor {} other(s)", n - 1),
            }
        ));
    }
    Ok(template)
}

/// The paths (`spec.containers[0].resouces`) of what `written` holds and
/// `kept` does not: fields the typed template has no place for. Nulls and
/// empty values count as unset.
fn not_kept(
    written: &serde_json::Value,
    kept: &serde_json::Value,
    at: String,
    unknown: &mut Vec<String>,
) {
    use serde_json::Value;
    match (written, kept) {
        (Value::Object(w), Value::Object(k)) => {
            for (key, value) in w {
                let unset = match value {
                    Value::Null => true,
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    _ => false,
                };
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                match k.get(key) {
                    Some(kept) => not_kept(value, kept, path, unknown),
                    None if unset => {}
                    None => unknown.push(path),
                }
            }
        }
        (Value::Array(w), Value::Array(k)) => {
            for (i, (value, kept)) in w.iter().zip(k).enumerate() {
                not_kept(value, kept, format!("{at}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

impl KubeConfig {
    /// The executor's settings, checked (the template read and validated).
    ///
    /// # Errors
    /// One line naming the setting that cannot be used.
    pub fn settings(&self, namespace: &str) -> Result<KubeSettings, String> {
        let path = self
            .pod_template
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .ok_or("AFK_K8S_POD_TEMPLATE is not set: name the pod template every agent's Job is built from (docs/deploy/agent/pod-template.yaml is a sample)")?;
        let template = read_template(Path::new(path))?;
        let start_timeout_seconds = match self.start_timeout.as_deref().map(str::trim) {
            None | Some("") => START_TIMEOUT_SECONDS,
            Some(t) => seconds("AFK_K8S_START_TIMEOUT", t)?,
        };
        let git_base = match self.git_url.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => afk_local::settings::check_git_url(url)?,
            _ => afk_local::settings::default_git_base(
                &self.github_api_url,
                self.github_web_url.as_deref(),
            ),
        };
        let deadline = i64::try_from(self.deadline_seconds.max(1)).unwrap_or(i64::MAX);
        let mut settings = KubeSettings::new(
            namespace,
            template,
            deadline,
            &git_base,
            self.default_owner.as_deref(),
        );
        settings.start_timeout_seconds = start_timeout_seconds;
        Ok(settings)
    }
}

/// `AFK_K8S_NAMESPACE`, checked: a DNS-1123 label.
///
/// # Errors
/// Naming the setting.
pub fn check_namespace(ns: &str) -> Result<String, String> {
    let ok = !ns.is_empty()
        && ns.len() <= 63
        && ns
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !ns.starts_with('-')
        && !ns.ends_with('-');
    if ok {
        Ok(ns.to_owned())
    } else {
        Err(format!(
            "AFK_K8S_NAMESPACE={ns:?} is not a namespace name (lower-case letters, digits and -, at most 63)"
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn durations_read_as_operators_write_them() {
        assert_eq!(seconds("K", "600"), Ok(600));
        assert_eq!(seconds("K", "90s"), Ok(90));
        assert_eq!(seconds("K", "10m"), Ok(600));
        assert_eq!(seconds("K", " 1h "), Ok(3600));
        for bad in ["", "0", "-5", "ten", "10d", "9999999999h", "1.5m"] {
            let e = seconds("AFK_K8S_START_TIMEOUT", bad).unwrap_err();
            assert!(e.starts_with("AFK_K8S_START_TIMEOUT="), "{e}");
        }
    }

    #[test]
    fn bad_templates_are_named_with_the_reason() {
        for (text, want) in [
            ("spec: [", "is not a pod template"),
            ("- a\n- b\n", "is not a pod template"),
            ("metadata: {}\n", "no spec"),
            ("spec:\n  containers: []\n", "no container"),
            (
                "spec:\n  containers:\n  - name: x\n    image: 7\n    resources: nope\n",
                "is not a pod template",
            ),
        ] {
            let e = parse_template(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        // A misspelt field is named by its path, not dropped in silence;
        // maps of any keys (labels, limits) and unset values are fine.
        let e = parse_template(
            "spec:\n  containers:\n  - name: agent\n    image: a:1\n    resouces:\n      limits: {cpu: '1'}\n  nodeSelecter: {pool: agents}\n",
        )
        .unwrap_err();
        assert!(
            e.starts_with("spec.containers[0].resouces is not a field of a pod template"),
            "{e}"
        );
        assert!(e.ends_with("nor 1 other(s)"), "{e}");
        parse_template(
            "metadata:\n  labels: {team: ops, any-key: x}\n  annotations: null\nspec:\n  nodeSelector: {pool: agents}\n  tolerations: []\n  containers:\n  - name: agent\n    image: a:1\n    resources:\n      limits: {cpu: '1', memory: 2Gi}\n    env: []\n",
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let e = read_template(&dir.path().join("missing.yaml")).unwrap_err();
        assert!(e.starts_with("AFK_K8S_POD_TEMPLATE="), "{e}");
        let e = read_template(dir.path()).unwrap_err();
        assert!(e.contains("is not a file"), "{e}");
    }

    /// The sample a missing setting points at is there, and is a template
    /// afk takes.
    #[test]
    fn a_missing_template_names_a_sample_that_exists() {
        let e = KubeConfig::default().settings("afk-agents").unwrap_err();
        assert!(e.starts_with("AFK_K8S_POD_TEMPLATE is not set"), "{e}");
        let sample = e
            .split_whitespace()
            .map(|w| w.trim_start_matches('('))
            .find(|w| w.starts_with("docs/"))
            .unwrap();
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(sample);
        read_template(&path).unwrap();
    }

    #[test]
    fn namespaces_are_checked() {
        assert!(check_namespace("afk-agents").is_ok());
        for bad in ["", "Afk", "-a", "a_b", &"a".repeat(64)] {
            assert!(
                check_namespace(bad)
                    .unwrap_err()
                    .starts_with("AFK_K8S_NAMESPACE=")
            );
        }
    }
}
