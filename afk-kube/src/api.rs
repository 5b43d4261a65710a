//! [`Cluster`] over a Kubernetes API server, through kube-rs: the
//! service account's credentials in a pod, else `KUBECONFIG` (or
//! `~/.kube/config`).

use std::sync::atomic::{AtomicU64, Ordering};

use afk_core::ports::{PortError, PortResult};
use async_trait::async_trait;
use futures_util::AsyncReadExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, LogParams, Patch, PatchParams, PostParams};

use crate::cluster::{Cluster, Made};

/// The cluster through kube-rs, in one namespace.
pub struct KubeCluster {
    jobs: Api<Job>,
    pods: Api<Pod>,
    maps: Api<ConfigMap>,
    secrets: Api<Secret>,
    namespace: String,
    calls: AtomicU64,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

/// A kube error as the port's: the API server's refusals as
/// [`crate::cluster::refusal`] says, an answer that does not read a
/// contract violation, the network transient.
fn port_error(what: &str, e: kube::Error) -> PortError {
    match e {
        kube::Error::Api(status) => {
            crate::cluster::refusal(what, status.code, &status.reason, &status.message, None)
        }
        kube::Error::SerdeError(e) => PortError::ContractViolation {
            message: format!("{what}: the answer does not read: {e}"),
        },
        other => PortError::Transient {
            message: format!("{what}: {other}"),
        },
    }
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Makes a configuration fit for a tick: no retries inside a call (kube's
/// default retries 429, 503 and 504 up to 15 times and sleeps as long as
/// the server's `Retry-After` asks, past any tick's deadline); the port
/// reports them and the next tick tries again. A call that hangs is cut
/// after 30 seconds.
pub fn bounded(config: &mut kube::Config) {
    config.default_retry = false;
    config.connect_timeout = Some(std::time::Duration::from_secs(10));
    config.read_timeout = Some(std::time::Duration::from_secs(30));
    config.write_timeout = Some(std::time::Duration::from_secs(30));
}

/// The configuration and the namespace, from what the process found:
/// `in_cluster` is the service account's configuration when it runs in a
/// pod (`None` elsewhere); the kubeconfig (`KUBECONFIG`, else
/// `~/.kube/config`) is read only when there is no in-cluster one. The
/// namespace is `namespace` (`AFK_K8S_NAMESPACE`) when given, else the
/// configuration's: in a pod, its own.
///
/// # Errors
/// Neither configuration, with both reasons.
async fn resolve(
    namespace: Option<&str>,
    in_cluster: Option<Result<kube::Config, String>>,
    kubeconfig: impl std::future::Future<Output = Result<kube::Config, String>>,
) -> Result<(kube::Config, String), String> {
    let config = match in_cluster {
        Some(Ok(config)) => config,
        in_cluster => {
            let in_cluster = match in_cluster {
                Some(Err(e)) => e,
                _ => "not in a pod".to_owned(),
            };
            kubeconfig.await.map_err(|e| {
                format!(
                    "no Kubernetes configuration: in-cluster: {in_cluster}; KUBECONFIG (or ~/.kube/config): {e}"
                )
            })?
        }
    };
    let namespace = namespace
        .map(str::to_owned)
        .unwrap_or_else(|| config.default_namespace.clone());
    Ok((config, namespace))
}

impl KubeCluster {
    /// The cluster `client` reaches, in `namespace`.
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        KubeCluster {
            jobs: Api::namespaced(client.clone(), namespace),
            pods: Api::namespaced(client.clone(), namespace),
            maps: Api::namespaced(client.clone(), namespace),
            secrets: Api::namespaced(client, namespace),
            namespace: namespace.to_owned(),
            calls: AtomicU64::new(0),
        }
    }

    /// The cluster this process is configured for: in a pod its service
    /// account, else `KUBECONFIG` (or `~/.kube/config`); and the namespace:
    /// `namespace` when given, else the configuration's (in a pod, its
    /// own).
    ///
    /// # Errors
    /// No configuration found, or one that does not read; in words.
    pub async fn from_environment(namespace: Option<&str>) -> Result<Self, String> {
        // In a pod, its service account (kube's `infer` would prefer a
        // kubeconfig file found in the image); elsewhere KUBECONFIG, else
        // ~/.kube/config.
        let in_pod = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
        let in_cluster = in_pod.then(|| kube::Config::incluster().map_err(|e| e.to_string()));
        let kubeconfig = async {
            kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| e.to_string())
        };
        let (mut config, namespace) = resolve(namespace, in_cluster, kubeconfig).await?;
        bounded(&mut config);
        let client = kube::Client::try_from(config)
            .map_err(|e| format!("the Kubernetes client cannot be built: {e}"))?;
        Ok(Self::new(client, &namespace))
    }

    /// The namespace it works in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }
}

#[async_trait]
impl Cluster for KubeCluster {
    async fn list_jobs(&self, selector: &str) -> PortResult<Vec<Job>> {
        self.count();
        let list = self
            .jobs
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| port_error("listing Jobs", e))?;
        Ok(list.items)
    }

    async fn list_pods(&self, selector: &str) -> PortResult<Vec<Pod>> {
        self.count();
        let list = self
            .pods
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| port_error("listing pods", e))?;
        Ok(list.items)
    }

    async fn get_job(&self, name: &str) -> PortResult<Option<Job>> {
        self.count();
        match self.jobs.get(name).await {
            Ok(job) => Ok(Some(job)),
            Err(e) if status_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(port_error(&format!("reading Job {name}"), e)),
        }
    }

    async fn create_job(&self, job: &Job) -> PortResult<Made<Job>> {
        self.count();
        match self.jobs.create(&PostParams::default(), job).await {
            Ok(job) => Ok(Made::Created(job)),
            Err(e) if status_code(&e) == Some(409) => Ok(Made::Exists),
            Err(e) => Err(port_error("creating a Job", e)),
        }
    }

    async fn get_config_map(&self, name: &str) -> PortResult<Option<ConfigMap>> {
        self.count();
        match self.maps.get(name).await {
            Ok(map) => Ok(Some(map)),
            Err(e) if status_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(port_error(&format!("reading ConfigMap {name}"), e)),
        }
    }

    async fn create_config_map(&self, map: &ConfigMap) -> PortResult<Made<ConfigMap>> {
        self.count();
        match self.maps.create(&PostParams::default(), map).await {
            Ok(map) => Ok(Made::Created(map)),
            Err(e) if status_code(&e) == Some(409) => Ok(Made::Exists),
            Err(e) => Err(port_error("creating the prompt's ConfigMap", e)),
        }
    }

    async fn patch_job(&self, name: &str, patch: &serde_json::Value) -> PortResult<()> {
        self.count();
        self.jobs
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(drop)
            .map_err(|e| port_error(&format!("updating Job {name}"), e))
    }

    async fn get_secret(&self, name: &str) -> PortResult<Option<Secret>> {
        self.count();
        match self.secrets.get(name).await {
            Ok(secret) => Ok(Some(secret)),
            Err(e) if status_code(&e) == Some(404) => Ok(None),
            Err(e) => Err(port_error(&format!("reading Secret {name}"), e)),
        }
    }

    async fn create_secret(&self, secret: &Secret) -> PortResult<Made<Secret>> {
        self.count();
        match self.secrets.create(&PostParams::default(), secret).await {
            Ok(secret) => Ok(Made::Created(secret)),
            Err(e) if status_code(&e) == Some(409) => Ok(Made::Exists),
            Err(e) => Err(port_error("creating the push token's Secret", e)),
        }
    }

    async fn patch_secret(&self, name: &str, patch: &serde_json::Value) -> PortResult<()> {
        self.count();
        self.secrets
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(drop)
            .map_err(|e| port_error(&format!("updating Secret {name}"), e))
    }

    async fn patch_config_map(&self, name: &str, patch: &serde_json::Value) -> PortResult<()> {
        self.count();
        self.maps
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map(drop)
            .map_err(|e| port_error(&format!("updating ConfigMap {name}"), e))
    }

    async fn pod_log(
        &self,
        pod: &str,
        container: &str,
        tail_lines: i64,
        limit_bytes: i64,
    ) -> PortResult<Option<String>> {
        self.count();
        let params = LogParams {
            container: Some(container.to_owned()),
            tail_lines: Some(tail_lines),
            limit_bytes: Some(limit_bytes),
            ..LogParams::default()
        };
        // Read as bytes, at most `limit_bytes` whatever the server sends,
        // and decoded leniently: `limitBytes` may cut a character in two,
        // which kube's `logs` (strict UTF-8) would refuse on every tick.
        let stream = match self.pods.log_stream(pod, &params).await {
            Ok(stream) => stream,
            // 400: the container is not there (yet); 404: the pod is gone.
            Err(e) if matches!(status_code(&e), Some(400 | 404)) => return Ok(None),
            Err(e) => return Err(port_error(&format!("reading pod {pod}'s log"), e)),
        };
        let mut bytes = Vec::new();
        Box::pin(stream)
            .take(u64::try_from(limit_bytes).unwrap_or(0))
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| PortError::Transient {
                message: format!("reading pod {pod}'s log: {e}"),
            })?;
        Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
    }

    async fn delete_job(&self, name: &str) -> PortResult<()> {
        self.count();
        // Background: the Job goes now and the garbage collector takes its
        // pods (and the prompt's ConfigMap); without a policy the API
        // orphans the pods, which run on.
        match self.jobs.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(port_error(&format!("deleting Job {name}"), e)),
        }
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn config(default_namespace: &str) -> kube::Config {
        let mut config = kube::Config::new("https://10.0.0.1".parse().unwrap());
        default_namespace.clone_into(&mut config.default_namespace);
        config
    }

    async fn check(
        namespace: Option<&str>,
        in_cluster: Option<Result<kube::Config, String>>,
        kubeconfig: Result<kube::Config, String>,
        want: Result<&str, &str>,
    ) {
        let got = resolve(namespace, in_cluster, async { kubeconfig })
            .await
            .map(|(_, ns)| ns);
        match (got, want) {
            (Ok(ns), Ok(want)) => assert_eq!(ns, want),
            (Err(e), Err(want)) => assert!(e.contains(want), "{e}"),
            (got, want) => panic!("{got:?}, wanted {want:?}"),
        }
    }

    /// In a pod its service account wins over a kubeconfig in the image,
    /// and the namespace defaults to the pod's own; `AFK_K8S_NAMESPACE`
    /// wins over both.
    #[tokio::test]
    async fn the_service_account_comes_first_and_gives_the_default_namespace() {
        let pod = || Some(Ok(config("afk")));
        let file = || Ok(config("from-kubeconfig"));
        check(None, pod(), file(), Ok("afk")).await;
        check(Some("afk-agents"), pod(), file(), Ok("afk-agents")).await;
        check(None, None, file(), Ok("from-kubeconfig")).await;
        check(Some("afk-agents"), None, file(), Ok("afk-agents")).await;
        let broken = || Some(Err("no token file".to_owned()));
        check(None, broken(), file(), Ok("from-kubeconfig")).await;
        check(
            None,
            broken(),
            Err("no such file".into()),
            Err("in-cluster: no token file; KUBECONFIG (or ~/.kube/config): no such file"),
        )
        .await;
        check(
            None,
            None,
            Err("no such file".into()),
            Err("in-cluster: not in a pod"),
        )
        .await;
    }

    /// The kubeconfig is not read at all when the service account's
    /// configuration is there.
    #[tokio::test]
    async fn a_kubeconfig_is_not_read_in_a_pod() {
        let read = std::sync::atomic::AtomicBool::new(false);
        let kubeconfig = async {
            read.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(config("from-kubeconfig"))
        };
        resolve(None, Some(Ok(config("afk"))), kubeconfig)
            .await
            .unwrap();
        assert!(!read.load(std::sync::atomic::Ordering::SeqCst));
    }
}
