//! The rollout stage: a Kubernetes Deployment runs an image built from the
//! commit (facts in `docs/contracts/ci-and-notifications.md`, Kubernetes
//! rollout).
//!
//! [`rollout_state`] is pure and follows `kubectl rollout status` in its
//! order: spec observed, `ProgressDeadlineExceeded` fails, updated replicas,
//! no old replicas, available replicas. The stage is done only when that
//! holds **and** a container image of the same object read names the
//! commit. Auth is in-cluster (service-account token, re-read by kube when it
//! rotates); targets are configured per repository.

use std::collections::BTreeMap;

use afk_core::ci::{CommitRef, Stage, StageReport, StageVerdict};
use afk_core::ports::{PortError, PortResult};
use afk_loop::ports::StageProbe;
use async_trait::async_trait;
use k8s_openapi::api::apps::v1::Deployment;

/// The facts of a Deployment the rollout rule reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeploymentView {
    /// `metadata.generation`.
    pub generation: i64,
    /// `status.observedGeneration`.
    pub observed_generation: i64,
    /// `spec.replicas` (default 1).
    pub spec_replicas: i32,
    /// `status.replicas`.
    pub replicas: i32,
    /// `status.updatedReplicas`.
    pub updated_replicas: i32,
    /// `status.availableReplicas`.
    pub available_replicas: i32,
    /// `reason` of the `Progressing` condition, if any.
    pub progressing_reason: Option<String>,
    /// Images of the pod template's containers.
    pub images: Vec<String>,
}

impl From<&Deployment> for DeploymentView {
    fn from(d: &Deployment) -> Self {
        let status = d.status.clone().unwrap_or_default();
        let spec = d.spec.clone().unwrap_or_default();
        DeploymentView {
            generation: d.metadata.generation.unwrap_or(0),
            observed_generation: status.observed_generation.unwrap_or(0),
            spec_replicas: spec.replicas.unwrap_or(1),
            replicas: status.replicas.unwrap_or(0),
            updated_replicas: status.updated_replicas.unwrap_or(0),
            available_replicas: status.available_replicas.unwrap_or(0),
            progressing_reason: status
                .conditions
                .unwrap_or_default()
                .into_iter()
                .find(|c| c.type_ == "Progressing")
                .and_then(|c| c.reason),
            images: spec
                .template
                .spec
                .map(|p| p.containers.into_iter().filter_map(|c| c.image).collect())
                .unwrap_or_default(),
        }
    }
}

/// Where a rollout stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutState {
    /// Not done yet, and why.
    Waiting(String),
    /// Every replica updated and available, no old ones left.
    Done,
    /// The rollout failed.
    Failed(String),
}

/// kubectl's rollout rule, in kubectl's order.
pub fn rollout_state(d: &DeploymentView) -> RolloutState {
    if d.generation > d.observed_generation {
        return RolloutState::Waiting(
            "waiting for the deployment spec update to be observed".into(),
        );
    }
    if d.progressing_reason.as_deref() == Some("ProgressDeadlineExceeded") {
        return RolloutState::Failed(
            "the rollout exceeded its progress deadline (ProgressDeadlineExceeded)".into(),
        );
    }
    if d.updated_replicas < d.spec_replicas {
        return RolloutState::Waiting(format!(
            "{} of {} new replicas have been updated",
            d.updated_replicas, d.spec_replicas
        ));
    }
    if d.replicas > d.updated_replicas {
        return RolloutState::Waiting(format!(
            "{} old replicas are pending termination",
            d.replicas - d.updated_replicas
        ));
    }
    if d.available_replicas < d.updated_replicas {
        return RolloutState::Waiting(format!(
            "{} of {} updated replicas are available",
            d.available_replicas, d.updated_replicas
        ));
    }
    RolloutState::Done
}

/// Whether an image reference names the commit: its tag (or digest-less
/// reference) contains the commit's first seven characters.
pub fn image_names_commit(image: &str, sha: &str) -> bool {
    let short: String = sha.chars().take(7).collect();
    if short.len() < 7 {
        return false;
    }
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    match last_segment.split_once(':') {
        Some((_, tag)) => tag
            .to_ascii_lowercase()
            .contains(&short.to_ascii_lowercase()),
        None => false,
    }
}

/// Which Deployment each repository rolls out to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RolloutTargets(pub BTreeMap<String, (String, String)>);

impl RolloutTargets {
    /// Reads `repo=namespace/deployment,…`; every bad entry is named.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut targets = BTreeMap::new();
        let mut bad = Vec::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let parsed = entry.split_once('=').and_then(|(repo, target)| {
                let (ns, name) = target.trim().split_once('/')?;
                let valid =
                    |s: &str| !s.is_empty() && !s.contains('/') && !s.contains(char::is_whitespace);
                (valid(ns.trim()) && valid(name.trim()) && !repo.trim().is_empty()).then(|| {
                    (
                        repo.trim().to_ascii_lowercase(),
                        (ns.trim().to_owned(), name.trim().to_owned()),
                    )
                })
            });
            match parsed {
                Some((repo, target)) => {
                    targets.insert(repo, target);
                }
                None => bad.push(entry.to_owned()),
            }
        }
        if bad.is_empty() {
            Ok(RolloutTargets(targets))
        } else {
            Err(format!(
                "AFK_ROLLOUT_TARGETS: cannot read {bad:?} (expected repo=namespace/deployment, comma-separated)"
            ))
        }
    }

    fn get(&self, repo: &str) -> Option<&(String, String)> {
        let repo = repo.to_ascii_lowercase();
        let bare = repo.rsplit('/').next().unwrap_or(&repo).to_owned();
        self.0.get(&repo).or_else(|| self.0.get(&bare))
    }
}

/// The rollout stage.
#[derive(Clone)]
pub struct RolloutStage {
    client: kube::Client,
    targets: RolloutTargets,
}

impl std::fmt::Debug for RolloutStage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RolloutStage")
            .field("targets", &self.targets)
            .finish_non_exhaustive()
    }
}

fn kube_error(e: kube::Error, what: &str) -> PortError {
    match e {
        kube::Error::Api(status) => match status.code {
            404 => PortError::NotFound {
                what: what.to_owned(),
            },
            401 | 403 => PortError::Auth {
                message: format!(
                    "Kubernetes refused to read {what} ({}): {}",
                    status.code, status.message
                ),
            },
            429 => PortError::RateLimited { retry_after: None },
            code if code >= 500 => PortError::Transient {
                message: format!("Kubernetes failed reading {what} ({code})"),
            },
            code => PortError::Permanent {
                message: format!(
                    "Kubernetes answered {code} reading {what}: {}",
                    status.message
                ),
            },
        },
        other => PortError::Transient {
            message: format!("cannot reach Kubernetes reading {what}: {other}"),
        },
    }
}

impl RolloutStage {
    /// A stage using `client` (in-cluster, or any configured client).
    pub fn new(client: kube::Client, targets: RolloutTargets) -> Self {
        RolloutStage { client, targets }
    }

    /// A stage with the in-cluster service-account client.
    ///
    /// # Errors
    /// `Permanent` when not running in a cluster or the config is unreadable.
    pub fn in_cluster(targets: RolloutTargets) -> PortResult<Self> {
        let config = kube::Config::incluster().map_err(|e| PortError::Permanent {
            message: format!("the rollout stage needs in-cluster credentials: {e}"),
        })?;
        let client = kube::Client::try_from(config).map_err(|e| PortError::Permanent {
            message: format!("cannot build the Kubernetes client: {e}"),
        })?;
        Ok(RolloutStage::new(client, targets))
    }
}

#[async_trait]
impl StageProbe for RolloutStage {
    fn stage(&self) -> Stage {
        Stage::Rollout
    }

    async fn probe(&self, commit: &CommitRef) -> PortResult<Option<StageReport>> {
        let Some((namespace, name)) = self.targets.get(&commit.repo) else {
            return Ok(None);
        };
        let api: kube::Api<Deployment> = kube::Api::namespaced(self.client.clone(), namespace);
        let what = format!("deployment {namespace}/{name}");
        let deployment = api.get(name).await.map_err(|e| kube_error(e, &what))?;
        let view = DeploymentView::from(&deployment);
        let report = |verdict, detail: String| StageReport {
            stage: Stage::Rollout,
            verdict,
            link: None,
            detail,
        };
        // The rule is read from the same object as the image, so the status
        // cannot belong to another spec.
        if !view
            .images
            .iter()
            .any(|i| image_names_commit(i, &commit.sha))
        {
            return Ok(Some(report(
                StageVerdict::None,
                format!(
                    "{what} runs {:?}, not yet an image built from {}",
                    view.images, &commit.sha
                ),
            )));
        }
        Ok(Some(match rollout_state(&view) {
            RolloutState::Done => report(StageVerdict::Success, format!("{what} rolled out")),
            RolloutState::Waiting(why) => report(StageVerdict::Pending, format!("{what}: {why}")),
            RolloutState::Failed(why) => report(StageVerdict::Failure, format!("{what}: {why}")),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done() -> DeploymentView {
        DeploymentView {
            generation: 4,
            observed_generation: 4,
            spec_replicas: 3,
            replicas: 3,
            updated_replicas: 3,
            available_replicas: 3,
            progressing_reason: Some("NewReplicaSetAvailable".into()),
            images: vec!["ghcr.io/acme/infra:abc1234".into()],
        }
    }

    #[track_caller]
    fn check(view: DeploymentView, expected: &str) {
        let got = match rollout_state(&view) {
            RolloutState::Done => "done".to_owned(),
            RolloutState::Waiting(w) => format!("waiting: {w}"),
            RolloutState::Failed(f) => format!("failed: {f}"),
        };
        assert_eq!(got, expected, "{view:?}");
    }

    #[test]
    fn kubectl_s_rule_in_kubectl_s_order() {
        check(done(), "done");
        // 1. spec not observed yet wins over everything else.
        check(
            DeploymentView {
                generation: 5,
                progressing_reason: Some("ProgressDeadlineExceeded".into()),
                updated_replicas: 0,
                ..done()
            },
            "waiting: waiting for the deployment spec update to be observed",
        );
        // 2. deadline exceeded fails, even with replicas missing.
        check(
            DeploymentView {
                progressing_reason: Some("ProgressDeadlineExceeded".into()),
                updated_replicas: 1,
                ..done()
            },
            "failed: the rollout exceeded its progress deadline (ProgressDeadlineExceeded)",
        );
        // 3. not every replica updated.
        check(
            DeploymentView {
                updated_replicas: 1,
                replicas: 4,
                ..done()
            },
            "waiting: 1 of 3 new replicas have been updated",
        );
        // 4. old replicas still terminating.
        check(
            DeploymentView {
                replicas: 4,
                ..done()
            },
            "waiting: 1 old replicas are pending termination",
        );
        // 5. updated but not yet available.
        check(
            DeploymentView {
                available_replicas: 2,
                ..done()
            },
            "waiting: 2 of 3 updated replicas are available",
        );
        // A scaled-to-zero deployment is trivially rolled out.
        check(
            DeploymentView {
                spec_replicas: 0,
                replicas: 0,
                updated_replicas: 0,
                available_replicas: 0,
                ..done()
            },
            "done",
        );
        // Observed generation ahead (a stale read of generation) is not waiting.
        check(
            DeploymentView {
                observed_generation: 5,
                ..done()
            },
            "done",
        );
    }

    #[test]
    fn images_name_the_commit_by_tag() {
        let sha = "abc1234def5678";
        assert!(image_names_commit("ghcr.io/acme/infra:abc1234", sha));
        assert!(image_names_commit(
            "registry:5000/acme/infra:v1.2-abc1234def",
            sha
        ));
        assert!(image_names_commit("infra:sha-ABC1234", sha));
        assert!(image_names_commit("infra:abc1234@sha256:0123", sha));
        assert!(!image_names_commit("ghcr.io/acme/infra:latest", sha));
        assert!(
            !image_names_commit("registry:abc1234/acme/infra:latest", sha),
            "a registry port is not a tag"
        );
        assert!(!image_names_commit("ghcr.io/acme/infra", sha));
        assert!(
            !image_names_commit("infra:abc", "abc"),
            "too short a sha names nothing"
        );
    }

    #[test]
    fn targets_parse_and_name_bad_entries() {
        let t = RolloutTargets::parse(" infra=prod/api, acme/web = web/frontend ,").unwrap();
        assert_eq!(
            t.get("acme/infra"),
            Some(&("prod".to_owned(), "api".to_owned()))
        );
        assert_eq!(
            t.get("ACME/web"),
            Some(&("web".to_owned(), "frontend".to_owned()))
        );
        assert_eq!(t.get("other"), None);
        let err = RolloutTargets::parse("infra=prod, web=a/b/c, ok=x/y").unwrap_err();
        assert!(
            err.contains("\"infra=prod\"")
                && err.contains("\"web=a/b/c\"")
                && !err.contains("ok=x/y"),
            "{err}"
        );
        assert_eq!(
            RolloutTargets::parse("").unwrap(),
            RolloutTargets::default()
        );
    }
}
