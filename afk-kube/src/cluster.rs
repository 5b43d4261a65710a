//! The Kubernetes calls the executor makes: its whole I/O edge. [`crate::api::KubeCluster`]
//! makes them with kube-rs against an API server; the simulator's in-memory
//! cluster makes them for the crash harness, which fails any of them.
//!
//! Every call is in the executor's one namespace. The verbs here are the
//! ones `docs/deploy/rbac-executor.yaml` grants, and no more (a test
//! compares them).

use afk_core::ports::{PortError, PortResult};
use async_trait::async_trait;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};

/// An API server's refusal (its HTTP status and `Status` body) as the
/// port's error, the one mapping both faces of the cluster use: 404 not
/// found; 429 rate limited; 401 and 403 refused credentials (a Role without
/// the verb); 409 (a conflicting write) and 5xx transient; 400, 405, 415 and
/// 422 a request Kubernetes will never take (afk's bug, not the weather);
/// anything else permanent. `what` names the call; Kubernetes' own words
/// follow.
pub fn refusal(
    what: &str,
    code: u16,
    reason: &str,
    message: &str,
    retry_after: Option<std::time::Duration>,
) -> PortError {
    let message = format!("{what}: {message} ({code} {reason})");
    match code {
        404 => PortError::NotFound { what: message },
        429 => PortError::RateLimited { retry_after },
        401 | 403 => PortError::Auth { message },
        409 | 500..=599 => PortError::Transient { message },
        400 | 405 | 415 | 422 => PortError::ContractViolation { message },
        _ => PortError::Permanent { message },
    }
}

/// What a create did.
#[derive(Debug, Clone, PartialEq)]
pub enum Made<T> {
    /// The object was created; the server's copy (with its uid).
    Created(T),
    /// An object of that name already exists (HTTP 409 `AlreadyExists`);
    /// the caller reads it and decides whether it is its own.
    Exists,
}

/// The Kubernetes API, as the executor uses it.
#[async_trait]
pub trait Cluster: Send + Sync {
    /// `list` Jobs matching a label selector.
    async fn list_jobs(&self, selector: &str) -> PortResult<Vec<Job>>;

    /// `list` Pods matching a label selector.
    async fn list_pods(&self, selector: &str) -> PortResult<Vec<Pod>>;

    /// `get` a Job; `None` when there is none of that name.
    async fn get_job(&self, name: &str) -> PortResult<Option<Job>>;

    /// `create` a Job.
    async fn create_job(&self, job: &Job) -> PortResult<Made<Job>>;

    /// `get` a ConfigMap; `None` when there is none of that name.
    async fn get_config_map(&self, name: &str) -> PortResult<Option<ConfigMap>>;

    /// `create` a ConfigMap.
    async fn create_config_map(&self, map: &ConfigMap) -> PortResult<Made<ConfigMap>>;

    /// `patch` a ConfigMap with a JSON merge patch (the executor sets its
    /// owner). A ConfigMap that is gone is `NotFound`.
    async fn patch_config_map(&self, name: &str, patch: &serde_json::Value) -> PortResult<()>;

    /// `get` a Secret; `None` when there is none of that name.
    async fn get_secret(&self, name: &str) -> PortResult<Option<Secret>>;

    /// `create` a Secret (a turn's push token, with a GitHub App).
    async fn create_secret(&self, secret: &Secret) -> PortResult<Made<Secret>>;

    /// `patch` a Secret with a JSON merge patch (a new token, its owner).
    /// A Secret that is gone is `NotFound`.
    async fn patch_secret(&self, name: &str, patch: &serde_json::Value) -> PortResult<()>;

    /// `patch` a Job with a JSON merge patch (RFC 7386,
    /// `application/merge-patch+json`): the executor sets annotations and
    /// `spec.suspend`. A Job that is gone is `NotFound`.
    async fn patch_job(&self, name: &str, patch: &serde_json::Value) -> PortResult<()>;

    /// The last `tail_lines` lines of a pod's container's log, at most
    /// `limit_bytes`; `None` when the pod or its log is gone or not there
    /// yet (Kubernetes answers 400 while the container is being created).
    async fn pod_log(
        &self,
        pod: &str,
        container: &str,
        tail_lines: i64,
        limit_bytes: i64,
    ) -> PortResult<Option<String>>;

    /// `delete` a Job with `propagationPolicy: Background` (without it the
    /// API orphans the Job's pods); a Job already gone is success.
    async fn delete_job(&self, name: &str) -> PortResult<()>;

    /// Requests made so far.
    fn api_calls(&self) -> u64 {
        0
    }
}
