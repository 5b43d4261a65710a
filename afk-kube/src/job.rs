//! What one turn's Job and its prompt's ConfigMap are: built from the
//! operator's pod template, with what afk owns filled in. Pure: no I/O.
//!
//! This file is long because its tests hold every field afk fills in
//! against templates that say otherwise.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, Secret,
    SecretKeySelector, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

/// The label every object afk creates carries: one selector lists them all.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "afk");
/// The label naming a turn's thread.
pub const THREAD: &str = "afk.dev/thread";
/// The label naming a turn's step (0 is the opening turn).
pub const STEP: &str = "afk.dev/step";
/// The label naming the issue's number.
pub const ISSUE: &str = "afk.dev/issue";
/// The label naming the thread's attempt.
pub const ATTEMPT: &str = "afk.dev/attempt";
/// The label naming the repository (`owner.name`, cut to a label's 63
/// characters); the annotation of the same key has it whole.
pub const REPO: &str = "afk.dev/repo";
/// The annotation naming the branch the thread works on, for people: a
/// later turn starts from the branch in the agent's environment (which
/// nobody can change), and a Job whose annotation differs is distrusted
/// ([`crate::trust`]).
pub const BRANCH: &str = "afk.dev/branch";
/// The annotation in which the executor keeps how a finished turn ended,
/// read from its pod's log before the pod goes (see [`crate::state`]).
pub const OUTCOME: &str = "afk.dev/outcome";
/// The annotation that marks a thread afk stopped: no turn is sent to it
/// again.
pub const STOPPED: &str = "afk.dev/stopped-at";
/// The pod template's annotation holding what the thread's earlier turns
/// cost (millionths of a dollar) when afk started this one: a Job's pod
/// template cannot be changed once it ran, so no edit of the outcomes
/// afk recorded on earlier Jobs lowers the thread's cost below it.
pub const COST_BEFORE: &str = "afk.dev/cost-before";

/// The container the agent runs in, when the template has more than one.
pub const AGENT_CONTAINER: &str = "agent";
/// Where the prompt is mounted, and the file the agent reads it from.
pub const PROMPT_DIR: &str = "/afk/prompt";
/// The key of the prompt in its ConfigMap (the file name under
/// [`PROMPT_DIR`]).
pub const PROMPT_KEY: &str = "prompt";
/// The key of the push token in its Secret, given to the agent container as
/// `AFK_GIT_TOKEN` (what the agent image's credential helper reads).
pub const TOKEN_KEY: &str = "token";
/// The variable the push token reaches the agent in.
pub const TOKEN_ENV: &str = "AFK_GIT_TOKEN";
/// Where the default command clones the repository (an `emptyDir`).
pub const WORKSPACE_DIR: &str = "/workspace";

/// What a container without a `command` runs: clone the branch, then the
/// agent with the prompt on standard input. Every value comes from the
/// environment, never from the script's text, so nothing in an issue or a
/// repository name is ever read as shell.
pub const DEFAULT_SCRIPT: &str = r#"set -eu
git clone --quiet --branch "$AFK_BRANCH" -- "$AFK_CLONE_URL" "$AFK_WORKSPACE"
cd "$AFK_WORKSPACE"
exec "$@" < "$AFK_PROMPT_FILE"
"#;

/// One turn: which Job it is and what it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnSpec {
    /// The thread's id.
    pub thread: String,
    /// `owner/name`.
    pub repo: String,
    /// The issue's number.
    pub issue: u64,
    /// The thread's attempt.
    pub attempt: u32,
    /// The turn's step (0 opens the thread).
    pub step: u32,
    /// The branch the agent starts from and pushes to.
    pub branch: String,
    /// The repository's clone URL.
    pub clone_url: String,
    /// The prompt (mounted from the ConfigMap; never argv or env).
    pub prompt: String,
    /// The agent's argument vector for the default command.
    pub agent_argv: Vec<String>,
    /// Whether the turn's push token is in a Secret of its own
    /// ([`token_secret`]), given to the agent as [`TOKEN_ENV`] in place
    /// of the template's.
    pub push_token: bool,
}

/// What every Job gets, from the executor's settings. Its `Debug` names
/// the template's containers and images only: a template may hold literal
/// env values an operator meant to keep out of logs.
#[derive(Clone, PartialEq)]
pub struct JobSettings {
    /// The operator's pod template (validated by [`check_template`]).
    pub template: PodTemplateSpec,
    /// `activeDeadlineSeconds`: the turn's time limit.
    pub deadline_seconds: i64,
    /// `ttlSecondsAfterFinished`.
    pub ttl_seconds: i32,
}

impl std::fmt::Debug for JobSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let containers: Vec<String> = self
            .template
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .map(|c| format!("{}={}", c.name, c.image.as_deref().unwrap_or("?")))
            .collect();
        f.debug_struct("JobSettings")
            .field("containers", &containers)
            .field("deadline_seconds", &self.deadline_seconds)
            .field("ttl_seconds", &self.ttl_seconds)
            .finish_non_exhaustive()
    }
}

/// Checks the operator's template: it must have a container, and when it
/// has several, one named [`AGENT_CONTAINER`].
///
/// # Errors
/// What is wrong, in words.
pub fn check_template(template: &PodTemplateSpec) -> Result<(), String> {
    let Some(spec) = &template.spec else {
        return Err(
            "it has no spec (a pod template: metadata and spec, as under a Job's spec.template)"
                .into(),
        );
    };
    agent_index(&spec.containers).map(|_| ())
}

fn agent_index(containers: &[Container]) -> Result<usize, String> {
    match containers {
        [] => Err("its spec has no container".into()),
        [_] => Ok(0),
        many => many
            .iter()
            .position(|c| c.name == AGENT_CONTAINER)
            .ok_or_else(|| {
                format!(
                    "it has {} containers and none is named {AGENT_CONTAINER:?} (the agent's)",
                    many.len()
                )
            }),
    }
}

/// The name of the agent's container in `template` (checked).
pub fn agent_container(template: &PodTemplateSpec) -> String {
    template
        .spec
        .as_ref()
        .and_then(|s| {
            agent_index(&s.containers)
                .ok()
                .map(|i| s.containers[i].name.clone())
        })
        .unwrap_or_else(|| AGENT_CONTAINER.to_owned())
}

/// The turn's Job name: a DNS-1123 label of at most 63 characters, the
/// same for the same `(repository, issue, attempt, step)`, and distinct
/// between threads (it ends with the start of the thread's id, itself
/// derived from the repository, issue and attempt).
pub fn job_name(turn: &TurnSpec) -> String {
    let tail = format!(
        "-{}-{}-{}-{}",
        turn.issue,
        turn.attempt,
        turn.step,
        turn.thread
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(8)
            .collect::<String>()
            .to_ascii_lowercase()
    );
    let name = turn.repo.rsplit('/').next().unwrap_or(&turn.repo);
    let room = 63usize.saturating_sub("afk-".len() + tail.len());
    let slug = label_safe(name, '-', room);
    let slug = slug.trim_matches('-');
    if slug.is_empty() {
        format!("afk{tail}")
    } else {
        format!("afk-{slug}{tail}")
    }
}

/// `text` lower-cased with every character outside `[a-z0-9]` (and `.`,
/// `_` when `sep` is not `-`) replaced by `sep`, runs collapsed, cut to
/// `max` characters and trimmed to start and end alphanumeric.
fn label_safe(text: &str, sep: char, max: usize) -> String {
    let mut out = String::new();
    for c in text.chars().map(|c| c.to_ascii_lowercase()) {
        let keep = c.is_ascii_lowercase()
            || c.is_ascii_digit()
            || (sep != '-' && matches!(c, '.' | '_' | '-'));
        let c = if keep { c } else { sep };
        if c == sep && out.ends_with(sep) {
            continue;
        }
        out.push(c);
    }
    out.truncate(max);
    out.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

/// The labels of a turn's Job, its pod and its ConfigMap.
pub fn labels(turn: &TurnSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
        (THREAD.to_owned(), turn.thread.clone()),
        (STEP.to_owned(), turn.step.to_string()),
        (ISSUE.to_owned(), turn.issue.to_string()),
        (ATTEMPT.to_owned(), turn.attempt.to_string()),
        (
            REPO.to_owned(),
            label_safe(&turn.repo.replace('/', "."), '_', 63),
        ),
    ])
}

/// The selector of every object afk owns.
pub fn owned_selector() -> String {
    format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)
}

/// The selector of one thread's objects.
pub fn thread_selector(thread: &str) -> String {
    format!("{},{THREAD}={thread}", owned_selector())
}

/// Whether `labels` say the object is this turn's.
pub fn is_turns(labels: Option<&BTreeMap<String, String>>, turn: &TurnSpec) -> bool {
    labels.is_some_and(|l| {
        l.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1)
            && l.get(THREAD) == Some(&turn.thread)
            && l.get(STEP) == Some(&turn.step.to_string())
    })
}

/// The turn's Job: the template, with what afk owns filled in.
pub fn job(turn: &TurnSpec, settings: &JobSettings) -> Job {
    let name = job_name(turn);
    let labels = labels(turn);
    let mut template = settings.template.clone();
    let meta = template.metadata.get_or_insert_with(ObjectMeta::default);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .extend(labels.clone());
    // A name is the Job controller's to give its pods.
    meta.name = None;
    meta.generate_name = None;
    let spec = template.spec.get_or_insert_with(Default::default);
    spec.restart_policy = Some("Never".into());
    spec.termination_grace_period_seconds.get_or_insert(10);
    spec.automount_service_account_token.get_or_insert(false);
    restrict(spec);
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    volumes.retain(|v| v.name != "afk-prompt" && v.name != "afk-workspace");
    volumes.push(Volume {
        name: "afk-prompt".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: name.clone(),
            ..Default::default()
        }),
        ..Default::default()
    });
    volumes.push(Volume {
        name: "afk-workspace".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
    if let Ok(i) = agent_index(&spec.containers) {
        fill_agent(&mut spec.containers[i], turn);
    }
    let mut annotations = BTreeMap::new();
    annotations.insert(REPO.to_owned(), turn.repo.clone());
    annotations.insert(BRANCH.to_owned(), turn.branch.clone());
    Job {
        metadata: ObjectMeta {
            name: Some(name),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            active_deadline_seconds: Some(settings.deadline_seconds.max(1)),
            ttl_seconds_after_finished: Some(settings.ttl_seconds.max(0)),
            template,
            ..Default::default()
        }),
        status: None,
    }
}

fn fill_agent(c: &mut Container, turn: &TurnSpec) {
    let env = [
        ("AFK_PROMPT_FILE", format!("{PROMPT_DIR}/{PROMPT_KEY}")),
        ("AFK_THREAD_ID", turn.thread.clone()),
        ("AFK_TURN", turn.step.to_string()),
        ("AFK_REPO", turn.repo.clone()),
        ("AFK_ISSUE", turn.issue.to_string()),
        ("AFK_BRANCH", turn.branch.clone()),
        ("AFK_CLONE_URL", turn.clone_url.clone()),
        ("AFK_WORKSPACE", format!("{WORKSPACE_DIR}/repo")),
    ];
    let vars = c.env.get_or_insert_with(Vec::new);
    vars.retain(|v| !env.iter().any(|(k, _)| v.name == *k));
    vars.extend(env.into_iter().map(|(k, v)| EnvVar {
        name: k.into(),
        value: Some(v),
        value_from: None,
    }));
    if turn.push_token {
        vars.retain(|v| v.name != TOKEN_ENV);
        vars.push(EnvVar {
            name: TOKEN_ENV.into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: job_name(turn),
                    key: TOKEN_KEY.into(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
        });
    }
    let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
    mounts.retain(|m| m.mount_path != PROMPT_DIR && m.mount_path != WORKSPACE_DIR);
    mounts.push(VolumeMount {
        name: "afk-prompt".into(),
        mount_path: PROMPT_DIR.into(),
        read_only: Some(true),
        ..Default::default()
    });
    mounts.push(VolumeMount {
        name: "afk-workspace".into(),
        mount_path: WORKSPACE_DIR.into(),
        ..Default::default()
    });
    if c.command.is_none() {
        c.command = Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            DEFAULT_SCRIPT.into(),
            "afk-agent".into(),
        ]);
        c.args = Some(turn.agent_argv.clone());
    }
}

fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        localhost_profile: None,
    }
}

/// Fills every field of the restricted Pod Security Standard that the
/// template leaves unset, one field at a time, so that a template setting
/// one of them (a `runAsUser`) keeps the others: in the pod, non-root and
/// the runtime's seccomp profile; in every container (init containers and
/// sidecars too), no privilege escalation and every capability dropped,
/// and non-root and the seccomp profile where neither it nor the pod says.
/// What the template sets explicitly stands.
fn restrict(spec: &mut PodSpec) {
    let pod = spec
        .security_context
        .get_or_insert_with(PodSecurityContext::default);
    // The pod's own choices, before afk fills them: a container that says
    // nothing follows what the template's pod says.
    let pod_says_non_root = pod.run_as_non_root.is_some();
    let pod_says_seccomp = pod.seccomp_profile.is_some();
    pod.run_as_non_root.get_or_insert(true);
    pod.seccomp_profile.get_or_insert_with(runtime_default);
    let containers = spec
        .init_containers
        .iter_mut()
        .flatten()
        .chain(spec.containers.iter_mut());
    for c in containers {
        let sc = c
            .security_context
            .get_or_insert_with(SecurityContext::default);
        sc.allow_privilege_escalation.get_or_insert(false);
        sc.capabilities
            .get_or_insert_with(Capabilities::default)
            .drop
            .get_or_insert_with(|| vec!["ALL".into()]);
        if !pod_says_non_root {
            sc.run_as_non_root.get_or_insert(true);
        }
        if !pod_says_seccomp {
            sc.seccomp_profile.get_or_insert_with(runtime_default);
        }
    }
}

/// The literal value of `key` in the environment of a Job's agent
/// container: what afk wrote there when it made the Job (Kubernetes
/// refuses any change to a Job's pod template's containers).
pub fn agent_env<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    let spec = job.spec.as_ref()?.template.spec.as_ref()?;
    let agent = &spec.containers[agent_index(&spec.containers).ok()?];
    agent
        .env
        .as_deref()?
        .iter()
        .find(|e| e.name == key)?
        .value
        .as_deref()
}

/// Writes what the thread's earlier turns cost, in millionths of a dollar,
/// into the Job's pod template ([`COST_BEFORE`]), afk's alone: 0 leaves
/// none (whatever the operator's template said).
pub fn set_cost_before(job: &mut Job, micro_usd: u64) {
    let Some(spec) = job.spec.as_mut() else {
        return;
    };
    let annotations = spec
        .template
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .annotations
        .get_or_insert_with(BTreeMap::new);
    if micro_usd == 0 {
        annotations.remove(COST_BEFORE);
    } else {
        annotations.insert(COST_BEFORE.to_owned(), micro_usd.to_string());
    }
}

/// What the thread's earlier turns cost when afk made this Job
/// ([`COST_BEFORE`]); `None` when it says nothing (an opening turn).
pub fn cost_before(job: &Job) -> Option<u64> {
    job.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(COST_BEFORE)?
        .parse()
        .ok()
}

/// The turn's prompt, in a ConfigMap of the Job's name. It is created
/// before the Job (so the pod never waits for its mount) and then given the
/// Job as its owner ([`owner_patch`]), so that it goes with the Job.
pub fn prompt_map(turn: &TurnSpec) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(job_name(turn)),
            labels: Some(labels(turn)),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            PROMPT_KEY.to_owned(),
            turn.prompt.clone(),
        )])),
        ..Default::default()
    }
}

/// The turn's push token (minted for its repository alone), in a Secret of
/// the Job's name, labelled as the turn's. Like the prompt, it is created
/// before the Job and then owned by it, so it goes with the Job.
pub fn token_secret(turn: &TurnSpec, token: &str) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(job_name(turn)),
            labels: Some(labels(turn)),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(
            TOKEN_KEY.to_owned(),
            k8s_openapi::ByteString(token.as_bytes().to_vec()),
        )])),
        ..Default::default()
    }
}

/// The merge patch that puts a new `token` in the turn's Secret.
pub fn token_patch(token: &str) -> serde_json::Value {
    let data = serde_json::to_value(k8s_openapi::ByteString(token.as_bytes().to_vec()))
        .unwrap_or_default();
    serde_json::json!({"data": {TOKEN_KEY: data}})
}

/// The merge patch that makes the Job `job_uid` the prompt's owner.
pub fn owner_patch(turn: &TurnSpec, job_uid: &str) -> serde_json::Value {
    let owner = OwnerReference {
        api_version: "batch/v1".into(),
        kind: "Job".into(),
        name: job_name(turn),
        uid: job_uid.to_owned(),
        ..Default::default()
    };
    serde_json::json!({"metadata": {"ownerReferences": [owner]}})
}

/// Whether an object (the prompt's ConfigMap, the token's Secret) is this
/// turn's: its labels say so, and it has no owner yet or only the turn's
/// Job (`job_uid`, when known).
pub fn is_turns_object(meta: &ObjectMeta, turn: &TurnSpec, job_uid: Option<&str>) -> bool {
    let owners = meta.owner_references.as_deref().unwrap_or_default();
    is_turns(meta.labels.as_ref(), turn)
        && owners.iter().all(|r| {
            r.kind == "Job" && r.name == job_name(turn) && job_uid.is_none_or(|u| r.uid == u)
        })
}

/// Whether an object is owned by the Job `job_uid` already.
pub fn is_owned_by(meta: &ObjectMeta, job_uid: &str) -> bool {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|r| r.uid == job_uid)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn turn(repo: &str, step: u32) -> TurnSpec {
        TurnSpec {
            thread: "0f1e2d3c-4b5a-5968-8776-655443322110".into(),
            repo: repo.into(),
            issue: 7,
            attempt: 1,
            step,
            branch: "main".into(),
            clone_url: "https://github.com/acme/infra.git".into(),
            prompt: "--settings=evil; $(rm -rf /)".into(),
            agent_argv: vec!["claude".into(), "-p".into()],
            push_token: false,
        }
    }

    fn dns_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && s.as_bytes()[0].is_ascii_alphanumeric()
            && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()
    }

    fn label_value(s: &str) -> bool {
        s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && (s.is_empty()
                || (s.as_bytes()[0].is_ascii_alphanumeric()
                    && s.as_bytes()[s.len() - 1].is_ascii_alphanumeric()))
    }

    #[test]
    fn names_are_dns_labels_for_any_repository_name() {
        let long = "x".repeat(100);
        for repo in [
            "acme/infra",
            "Acme/My.Repo_Name",
            "acme/---",
            "acme/.github",
            &format!("acme/{long}"),
            "acme/ünïcode",
        ] {
            for step in [0, 7, 4_000_000_000] {
                let t = turn(repo, step);
                let name = job_name(&t);
                assert!(dns_label(&name), "{repo} → {name:?}");
                for (k, v) in labels(&t) {
                    assert!(label_value(&v), "{k}={v:?}");
                }
            }
        }
        assert_eq!(job_name(&turn("acme/infra", 2)), "afk-infra-7-1-2-0f1e2d3c");
    }

    #[test]
    fn names_differ_per_turn_and_thread_and_repeat_per_turn() {
        let a = turn("acme/infra", 0);
        let mut other = a.clone();
        other.thread = "9f1e2d3c-0000-5968-8776-655443322110".into();
        assert_eq!(job_name(&a), job_name(&a.clone()));
        assert_ne!(job_name(&a), job_name(&turn("acme/infra", 1)));
        assert_ne!(job_name(&a), job_name(&other));
    }

    fn template(yaml: &str) -> PodTemplateSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    /// The pod spec of a turn's Job built from `template`.
    fn pod_of(template: PodTemplateSpec) -> k8s_openapi::api::core::v1::PodSpec {
        let settings = JobSettings {
            template,
            deadline_seconds: 60,
            ttl_seconds: 60,
        };
        job(&turn("acme/infra", 0), &settings)
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
    }

    #[test]
    fn the_job_holds_the_rules_whatever_the_template_says_of_them() {
        let t = template(
            "spec:\n  restartPolicy: OnFailure\n  containers:\n  - name: agent\n    image: agent:1\n    env:\n    - name: AFK_REPO\n      value: forged\n",
        );
        let settings = JobSettings {
            template: t,
            deadline_seconds: 3600,
            ttl_seconds: 86400,
        };
        let job = job(&turn("acme/infra", 0), &settings);
        let spec = job.spec.unwrap();
        assert_eq!(
            spec.backoff_limit,
            Some(0),
            "a turn is never re-run blindly"
        );
        assert_eq!(spec.active_deadline_seconds, Some(3600));
        assert_eq!(spec.ttl_seconds_after_finished, Some(86400));
        let pod = spec.template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(pod.termination_grace_period_seconds, Some(10));
        assert_eq!(pod.security_context.unwrap().run_as_non_root, Some(true));
        let c = &pod.containers[0];
        let sc = c.security_context.clone().unwrap();
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".into()]));
        let env = c.env.clone().unwrap();
        let repo: Vec<_> = env.iter().filter(|e| e.name == "AFK_REPO").collect();
        assert_eq!(repo.len(), 1);
        assert_eq!(repo[0].value.as_deref(), Some("acme/infra"));
        // The prompt is in none of argv, env or the script.
        let text = serde_json::to_string(c).unwrap();
        assert!(!text.contains("rm -rf"), "{text}");
        assert_eq!(c.command.as_ref().unwrap()[0], "/bin/sh");
        assert_eq!(
            c.args.as_ref().unwrap(),
            &vec!["claude".to_owned(), "-p".to_owned()]
        );
        let labels = spec.template.metadata.unwrap().labels.unwrap();
        assert_eq!(
            labels.get(THREAD).unwrap(),
            "0f1e2d3c-4b5a-5968-8776-655443322110"
        );
    }

    #[test]
    fn what_the_template_sets_for_itself_is_kept() {
        let t = template(
            "metadata:\n  labels:\n    team: infra\nspec:\n  automountServiceAccountToken: true\n  securityContext:\n    runAsUser: 1000\n  containers:\n  - name: sidecar\n    image: s:1\n  - name: agent\n    image: agent:1\n    command: [/entry]\n    securityContext:\n      privileged: false\n",
        );
        let settings = JobSettings {
            template: t,
            deadline_seconds: 60,
            ttl_seconds: 60,
        };
        let job = job(&turn("acme/infra", 0), &settings);
        let spec = job.spec.unwrap().template;
        assert_eq!(
            spec.metadata.unwrap().labels.unwrap().get("team").unwrap(),
            "infra"
        );
        let pod = spec.spec.unwrap();
        assert_eq!(pod.automount_service_account_token, Some(true));
        assert_eq!(pod.security_context.unwrap().run_as_user, Some(1000));
        assert!(
            pod.containers[0].env.is_none(),
            "the sidecar is not the agent"
        );
        let agent = &pod.containers[1];
        assert_eq!(agent.command, Some(vec!["/entry".to_owned()]));
        assert_eq!(agent.args, None);
        assert_eq!(
            agent.security_context.as_ref().unwrap().privileged,
            Some(false)
        );
        assert!(
            agent
                .env
                .as_ref()
                .unwrap()
                .iter()
                .any(|e| e.name == "AFK_PROMPT_FILE")
        );
    }

    /// A template that sets part of a security context keeps what it sets
    /// and still gets every restricted field it leaves unset, in the pod
    /// and in every container: init containers and sidecars too.
    #[test]
    fn a_partial_security_context_is_completed_field_by_field() {
        let t = template(
            "spec:
  securityContext:
    runAsUser: 1000
  initContainers:
  - name: fetch
    image: f:1
  - name: proxy
    image: p:1
    restartPolicy: Always
    securityContext:
      capabilities:
        add: [NET_BIND_SERVICE]
  containers:
  - name: agent
    image: agent:1
    securityContext:
      runAsUser: 2000
  - name: sidecar
    image: s:1
    securityContext:
      readOnlyRootFilesystem: true
",
        );
        let pod = pod_of(t);
        let sc = pod.security_context.unwrap();
        assert_eq!(sc.run_as_user, Some(1000), "the template's own");
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(sc.seccomp_profile.unwrap().type_, "RuntimeDefault");
        let containers: Vec<&Container> = pod
            .init_containers
            .iter()
            .flatten()
            .chain(&pod.containers)
            .collect();
        assert_eq!(containers.len(), 4);
        for c in containers {
            let sc = c.security_context.clone().unwrap_or_default();
            assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
            assert_eq!(sc.run_as_non_root, Some(true), "{}", c.name);
            assert_eq!(
                sc.seccomp_profile.map(|p| p.type_).as_deref(),
                Some("RuntimeDefault"),
                "{}",
                c.name
            );
            let caps = sc.capabilities.unwrap_or_default();
            assert_eq!(caps.drop, Some(vec!["ALL".to_owned()]), "{}", c.name);
        }
        let proxy = &pod.init_containers.as_ref().unwrap()[1];
        let caps = proxy
            .security_context
            .clone()
            .unwrap()
            .capabilities
            .unwrap();
        assert_eq!(caps.add, Some(vec!["NET_BIND_SERVICE".to_owned()]));
        let agent = &pod.containers[0];
        assert_eq!(
            agent.security_context.as_ref().unwrap().run_as_user,
            Some(2000)
        );
        let sidecar = &pod.containers[1];
        assert_eq!(
            sidecar
                .security_context
                .as_ref()
                .unwrap()
                .read_only_root_filesystem,
            Some(true)
        );
    }

    /// What a template says explicitly of a restricted field stands (the
    /// operator's choice, and Pod Security admission's to refuse), and a
    /// pod-level choice stands for the containers that say nothing.
    #[test]
    fn a_restricted_field_the_template_sets_is_kept() {
        let t = template(
            "spec:
  securityContext:
    runAsNonRoot: false
    seccompProfile:
      type: Unconfined
  containers:
  - name: agent
    image: agent:1
    securityContext:
      allowPrivilegeEscalation: true
      capabilities:
        drop: [NET_RAW]
  - name: sidecar
    image: s:1
    securityContext:
      runAsNonRoot: true
      seccompProfile:
        type: Localhost
        localhostProfile: p.json
",
        );
        let pod = pod_of(t);
        let sc = pod.security_context.unwrap();
        assert_eq!(sc.run_as_non_root, Some(false));
        assert_eq!(sc.seccomp_profile.unwrap().type_, "Unconfined");
        let agent = pod.containers[0].security_context.clone().unwrap();
        assert_eq!(agent.allow_privilege_escalation, Some(true));
        assert_eq!(
            agent.capabilities.unwrap().drop,
            Some(vec!["NET_RAW".to_owned()])
        );
        assert_eq!(agent.run_as_non_root, None, "the pod's choice stands");
        assert_eq!(agent.seccomp_profile, None, "the pod's choice stands");
        let sidecar = pod.containers[1].security_context.clone().unwrap();
        assert_eq!(sidecar.run_as_non_root, Some(true));
        assert_eq!(sidecar.seccomp_profile.unwrap().type_, "Localhost");
        assert_eq!(sidecar.allow_privilege_escalation, Some(false));
    }

    #[test]
    fn the_settings_debug_output_holds_no_env_value() {
        let t = template(
            "spec:\n  containers:\n  - name: agent\n    image: agent:1\n    env:\n    - name: ANTHROPIC_API_KEY\n      value: sk-ant-secret\n",
        );
        let settings = JobSettings {
            template: t,
            deadline_seconds: 1,
            ttl_seconds: 1,
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("sk-ant-secret"), "{shown}");
        assert!(shown.contains("agent=agent:1"), "{shown}");
    }

    #[test]
    fn templates_without_an_agent_are_refused_with_the_reason() {
        let none = template("metadata: {}\n");
        assert!(check_template(&none).unwrap_err().contains("no spec"));
        let empty = template("spec:\n  containers: []\n");
        assert!(check_template(&empty).unwrap_err().contains("no container"));
        let two = template("spec:\n  containers:\n  - name: a\n  - name: b\n");
        assert!(check_template(&two).unwrap_err().contains("\"agent\""));
    }

    #[test]
    fn the_prompt_map_is_the_turn_s_and_then_its_job_s() {
        let t = turn("acme/infra", 3);
        let mut map = prompt_map(&t);
        assert!(is_turns_object(&map.metadata, &t, None));
        assert!(
            is_turns_object(&map.metadata, &t, Some("uid-1")),
            "not owned yet"
        );
        assert!(!is_turns_object(
            &map.metadata,
            &turn("acme/infra", 4),
            None
        ));
        let patch = owner_patch(&t, "uid-1");
        map.metadata.owner_references =
            serde_json::from_value(patch["metadata"]["ownerReferences"].clone()).unwrap();
        assert!(is_owned_by(&map.metadata, "uid-1"));
        assert!(is_turns_object(&map.metadata, &t, Some("uid-1")));
        assert!(
            !is_turns_object(&map.metadata, &t, Some("uid-2")),
            "another Job's"
        );
        assert_eq!(map.data.unwrap().get(PROMPT_KEY).unwrap(), &t.prompt);
    }
}
