//! A cluster for the tests: the simulated API server, the real kube-rs
//! client in front of it, and a record of what the executor created.

use std::sync::{Arc, Mutex};

use afk_core::Timestamp;
use afk_core::ports::{PortResult, WatchedThread};
use afk_kube::api::KubeCluster;
use afk_kube::cluster::{Cluster, Made};
use afk_kube::job::THREAD;
use afk_kube::{KubeExecutor, KubeSettings};
use afk_sim::clock::FixedClock;
use afk_sim::k8s::{K8sModel, K8sServer};
use afk_sim::lock;
use async_trait::async_trait;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};

pub const NS: &str = "afk-agents";

pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse_rfc3339(s).unwrap()
}

/// The sample template operators start from.
pub fn sample_template() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/deploy/agent/pod-template.yaml"),
    )
    .unwrap()
}

/// The cluster calls the executor made that created something, by name.
#[derive(Debug, Default)]
pub struct Created {
    /// (Job name, thread, step) of every Job created.
    pub jobs: Vec<(String, String, String)>,
    /// Names of the ConfigMaps created.
    pub maps: Vec<String>,
}

/// [`KubeCluster`] with a record of what it created, and a switch that
/// makes log reads fail as a Role without `pods/log` would.
#[derive(Debug)]
pub struct Recording {
    pub inner: KubeCluster,
    pub created: Arc<Mutex<Created>>,
    pub logs_forbidden: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl Cluster for Recording {
    async fn list_jobs(&self, selector: &str) -> PortResult<Vec<Job>> {
        self.inner.list_jobs(selector).await
    }
    async fn list_pods(&self, selector: &str) -> PortResult<Vec<Pod>> {
        self.inner.list_pods(selector).await
    }
    async fn get_job(&self, name: &str) -> PortResult<Option<Job>> {
        self.inner.get_job(name).await
    }
    async fn create_job(&self, job: &Job) -> PortResult<Made<Job>> {
        let made = self.inner.create_job(job).await?;
        if let Made::Created(j) = &made {
            let labels = j.metadata.labels.clone().unwrap_or_default();
            lock(&self.created).jobs.push((
                j.metadata.name.clone().unwrap_or_default(),
                labels.get(THREAD).cloned().unwrap_or_default(),
                labels.get(afk_kube::job::STEP).cloned().unwrap_or_default(),
            ));
        }
        Ok(made)
    }
    async fn get_config_map(&self, name: &str) -> PortResult<Option<ConfigMap>> {
        self.inner.get_config_map(name).await
    }
    async fn create_config_map(&self, map: &ConfigMap) -> PortResult<Made<ConfigMap>> {
        let made = self.inner.create_config_map(map).await?;
        if let Made::Created(m) = &made {
            lock(&self.created)
                .maps
                .push(m.metadata.name.clone().unwrap_or_default());
        }
        Ok(made)
    }
    async fn patch_job(&self, name: &str, patch: &serde_json::Value) -> PortResult<()> {
        self.inner.patch_job(name, patch).await
    }
    async fn patch_config_map(&self, name: &str, patch: &serde_json::Value) -> PortResult<()> {
        self.inner.patch_config_map(name, patch).await
    }
    async fn get_secret(&self, name: &str) -> PortResult<Option<Secret>> {
        self.inner.get_secret(name).await
    }
    async fn create_secret(&self, secret: &Secret) -> PortResult<Made<Secret>> {
        self.inner.create_secret(secret).await
    }
    async fn patch_secret(&self, name: &str, patch: &serde_json::Value) -> PortResult<()> {
        self.inner.patch_secret(name, patch).await
    }
    async fn pod_log(
        &self,
        pod: &str,
        container: &str,
        tail_lines: i64,
        limit_bytes: i64,
    ) -> PortResult<Option<String>> {
        if self
            .logs_forbidden
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return Err(afk_core::ports::PortError::Permanent {
                message: "reading pod's log: pods \"x\" is forbidden (403 Forbidden)".into(),
            });
        }
        self.inner
            .pod_log(pod, container, tail_lines, limit_bytes)
            .await
    }
    async fn delete_job(&self, name: &str) -> PortResult<()> {
        self.inner.delete_job(name).await
    }
    fn api_calls(&self) -> u64 {
        self.inner.api_calls()
    }
}

/// The simulated cluster and an executor on it.
pub struct World {
    /// Serving while the world lives.
    pub _server: K8sServer,
    pub model: Arc<Mutex<K8sModel>>,
    pub clock: FixedClock,
    pub exec: KubeExecutor<Recording>,
    pub created: Arc<Mutex<Created>>,
}

pub fn settings(template: &str) -> KubeSettings {
    let template = afk_kube::settings::parse_template(template).unwrap();
    KubeSettings::new(NS, template, 14_400, "https://github.com", Some("acme"))
}

pub async fn world() -> World {
    world_with(&sample_template()).await
}

pub async fn world_with(template: &str) -> World {
    world_from(template, None).await
}

/// Tokens minted per repository, as a GitHub App mints them: each names
/// its repository and its number.
#[derive(Debug, Default)]
pub struct Minter(pub Mutex<Vec<String>>);

#[async_trait]
impl afk_local::os::RepoCredentials for Minter {
    async fn token_for(&self, repo: &str) -> Result<String, String> {
        let mut asked = lock(&self.0);
        asked.push(repo.to_owned());
        Ok(format!("ghs_{}_{}", repo.replace('/', "_"), asked.len()))
    }
}

/// A world whose turns get push tokens from `minter`.
pub async fn world_minting(minter: Arc<Minter>) -> World {
    world_from(&sample_template(), Some(afk_kube::PushTokens(minter))).await
}

pub async fn world_from(template: &str, push_tokens: Option<afk_kube::PushTokens>) -> World {
    let clock = FixedClock::at(ts("2026-06-10T12:00:00Z"));
    let model = Arc::new(Mutex::new(K8sModel::new(NS, clock.clone())));
    lock(&model).apply_agent_secrets();
    let server = K8sServer::start(model.clone()).await;
    let mut config = kube::Config::new(server.uri().parse().unwrap());
    afk_kube::api::bounded(&mut config);
    let client = kube::Client::try_from(config).unwrap();
    let created = Arc::new(Mutex::new(Created::default()));
    let cluster = Recording {
        inner: KubeCluster::new(client, NS),
        created: created.clone(),
        logs_forbidden: std::sync::atomic::AtomicBool::new(false),
    };
    let mut settings = settings(template);
    settings.push_tokens = push_tokens;
    let exec = KubeExecutor::new(cluster, settings, Arc::new(clock.clone()));
    World {
        _server: server,
        model,
        clock,
        exec,
        created,
    }
}

impl World {
    /// A thread made for the contract's first spec: its id and the Job of
    /// its opening turn.
    pub async fn opened_thread(&self) -> (String, String) {
        use afk_loop::ports::Executor;
        let s = self.exec.snapshot(&[]).await.unwrap();
        let id = self
            .exec
            .ensure_thread(&s, &afk_sim::contract::spec(0))
            .await
            .unwrap();
        let job = self.job_name(&id, 0);
        (id, job)
    }

    /// A thread whose opening turn ran and failed, claude saying "the
    /// tests would not pass" at `cost` dollars: its id and its Job.
    pub async fn failed_opening_turn(&self, cost: f64) -> (String, String) {
        let (id, job) = self.opened_thread().await;
        let mut m = lock(&self.model);
        m.run(&job);
        m.fail(
            &job,
            1,
            &claude_result(true, "the tests would not pass", cost),
        );
        (id, job)
    }

    /// The Jobs created for `thread`, by step order of creation.
    pub fn jobs_of(&self, thread: &str) -> Vec<(String, u32)> {
        lock(&self.created)
            .jobs
            .iter()
            .filter(|(_, t, _)| t == thread)
            .map(|(name, _, step)| (name.clone(), step.parse().unwrap()))
            .collect()
    }

    /// The Job of `thread`'s turn `step`.
    pub fn job_name(&self, thread: &str, step: u32) -> String {
        self.jobs_of(thread)
            .into_iter()
            .find(|(_, s)| *s == step)
            .unwrap_or_else(|| panic!("no Job for {thread} step {step}"))
            .0
    }

    /// The newest Job of `thread`.
    pub fn latest(&self, thread: &str) -> String {
        self.jobs_of(thread)
            .into_iter()
            .max_by_key(|(_, s)| *s)
            .unwrap()
            .0
    }

    /// The Job `job`'s pod runs, prints `log` and completes.
    pub fn run_and_succeed(&self, job: &str, log: &str) {
        let mut m = lock(&self.model);
        m.run(job);
        m.succeed(job, log);
    }

    pub fn requests(&self) -> u64 {
        lock(&self.model).requests()
    }

    /// The model's record of contract violations must be empty.
    pub fn assert_no_violations(&self) {
        let v = lock(&self.model).violations();
        assert!(v.is_empty(), "requests Kubernetes would refuse: {v:#?}");
    }

    pub fn watched(thread: &str) -> Vec<WatchedThread> {
        vec![WatchedThread {
            thread_id: thread.to_owned(),
            turn_sent_at: ts("2026-06-10T12:00:00Z"),
        }]
    }
}

/// claude's report of a run (`claude -p --output-format json`), as its pod
/// log's last line.
pub fn claude_result(is_error: bool, text: &str, cost: f64) -> String {
    serde_json::json!({
        "type": "result",
        "subtype": if is_error { "error_during_execution" } else { "success" },
        "is_error": is_error,
        "result": text,
        "total_cost_usd": cost,
    })
    .to_string()
}

/// The opening turn of `thread` (infra#7, attempt 0), as the executor
/// names it.
pub fn opening_turn(thread: &str) -> afk_kube::job::TurnSpec {
    afk_kube::job::TurnSpec {
        thread: thread.to_owned(),
        repo: "acme/infra".into(),
        issue: 7,
        attempt: 0,
        step: 0,
        branch: "main".into(),
        clone_url: "https://github.com/acme/infra.git".into(),
        prompt: "p".into(),
        agent_argv: vec!["claude".into()],
        push_token: false,
    }
}
