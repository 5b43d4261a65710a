//! The loop's Kubernetes executor (`AFK_EXECUTOR=kubernetes`): every agent
//! turn is a Job in the operator's namespace, so agents spread over the
//! cluster with its scheduling, quotas and cleanup.
//!
//! - A **thread** is the set of Jobs labelled with its id ([`job::THREAD`]);
//!   the id is a UUID derived from `(repository, issue, attempt)`, so a
//!   repeated dispatch finds it. What afk reads back from those Jobs is
//!   checked ([`trust`]): a Job is one of the thread's turns only when its
//!   name and its agent's environment, which nobody can change, derive the
//!   thread's id; a later turn's repository and branch come from there,
//!   and a thread with a Job changed or planted under its labels gets no
//!   more turns (the run is handed back, naming the Job).
//! - A **turn** is one Job ([`job::job`]), built from the operator's pod
//!   template, named from `(repository, issue, attempt, step)` so a repeated
//!   create answers `AlreadyExists` and is accepted only when the Job's
//!   labels say it is this turn's. Its prompt is in a ConfigMap the Job owns
//!   (collected with it), mounted, and given to the agent on standard input.
//!   `backoffLimit: 0`: a turn is never re-run blindly. A fix-forward turn is
//!   a new Job on the same branch.
//! - **Liveness** is the Job's ([`state::turn_state`]), read with two lists
//!   per tick (Jobs and pods, by label), whatever the number of runs. When a
//!   watched turn has just ended, its pod's log is read once (what the agent
//!   said, what it cost, through the same parsing as the local executor) and
//!   kept on the Job as an annotation ([`job::OUTCOME`]), before the pod goes.
//!   A turn whose pod never starts within `AFK_K8S_START_TIMEOUT` is an
//!   error with Kubernetes' reason, and its Job is suspended so that it
//!   cannot start later beside the next turn.
//! - **Stop** deletes the thread's unfinished Jobs with `propagationPolicy:
//!   Background` (without it the API orphans their pods, which run on) and
//!   marks what is left as stopped: no turn is sent to it again.
//!
//! The I/O is [`cluster::Cluster`]'s; [`api::KubeCluster`] is the API
//! server through kube-rs. What it relies on from Kubernetes, with sources,
//! is in `docs/contracts/kubernetes.md`.
//!
//! This file is long because each method says how it stays safe to repeat
//! after a crash at any of its calls.

pub mod api;
pub mod cluster;
pub mod job;
pub mod settings;
pub mod state;
pub mod trust;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use afk_core::ports::{
    ExecutorSnapshot, PortError, PortResult, ProjectInfo, ThreadInfo, ThreadSpec, WatchedThread,
};
use afk_core::{Cost, ThreadStatus, Timestamp};
use afk_loop::ports::{Clock, Executor};
use afk_process::runtime::{Runtime, Turn};
use async_trait::async_trait;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use serde::{Deserialize, Serialize};

use crate::cluster::{Cluster, Made};
use crate::job::{JobSettings, TurnSpec};
use crate::state::TurnState;
use crate::trust::{ThreadJobs, annotation, name_of};

/// What the Kubernetes executor is configured with.
#[derive(Debug, Clone)]
pub struct KubeSettings {
    /// The namespace (`AFK_K8S_NAMESPACE`), for what it shows humans.
    pub namespace: String,
    /// The Job every turn is built from.
    pub job: JobSettings,
    /// `AFK_K8S_START_TIMEOUT`, in seconds.
    pub start_timeout_seconds: i64,
    /// The agent a container without a `command` runs.
    pub runtime: Runtime,
    /// The base of clone URLs (`AFK_GIT_URL`, else the tracker's web URL).
    pub git_base: String,
    /// The owner of bare repository names.
    pub default_owner: Option<String>,
    /// Where each turn's push token is minted (a GitHub App's): then it is
    /// put in a Secret the turn's Job owns and given to the agent, in place
    /// of the template's `AFK_GIT_TOKEN`. `None`: the template's stands.
    pub push_tokens: Option<PushTokens>,
}

/// Mints a push token for one repository ([`afk_local::os::RepoCredentials`]).
#[derive(Clone)]
pub struct PushTokens(pub std::sync::Arc<dyn afk_local::os::RepoCredentials>);

impl std::fmt::Debug for PushTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PushTokens(minted per repository)")
    }
}

impl KubeSettings {
    /// Settings with afk's defaults: a pod has `AFK_K8S_START_TIMEOUT`'s
    /// default to start, a finished Job is kept a day
    /// ([`settings::TTL_SECONDS`]), and a container without a command runs
    /// `claude`.
    pub fn new(
        namespace: &str,
        template: k8s_openapi::api::core::v1::PodTemplateSpec,
        deadline_seconds: i64,
        git_base: &str,
        default_owner: Option<&str>,
    ) -> KubeSettings {
        KubeSettings {
            namespace: namespace.to_owned(),
            job: JobSettings {
                template,
                deadline_seconds,
                ttl_seconds: settings::TTL_SECONDS,
            },
            start_timeout_seconds: settings::START_TIMEOUT_SECONDS,
            runtime: Runtime::Claude {
                bin: "claude".into(),
                model: None,
            },
            git_base: git_base.to_owned(),
            default_owner: default_owner.map(str::to_owned),
            push_tokens: None,
        }
    }
}

/// How much of a finished pod's log is read: claude's report is its last
/// line.
const LOG_LINES: i64 = 200;
const LOG_BYTES: i64 = 1 << 20;

/// How a finished turn ended, as the executor read it once (kept on the
/// Job in the [`job::OUTCOME`] annotation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// The turn succeeded.
    pub ok: bool,
    /// Kubernetes' reason, when the Job failed or never started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// What the agent said (its failure, or the tools it was denied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub said: Option<String>,
    /// What the agent reports the turn cost, in millionths of a dollar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_micro_usd: Option<u64>,
}

impl Outcome {
    /// Where a turn with this recorded end stands.
    pub fn state(&self) -> TurnState {
        if self.ok {
            TurnState::Succeeded
        } else {
            TurnState::Failed(self.why.clone().unwrap_or_default())
        }
    }
}

/// The Kubernetes executor over a [`Cluster`].
pub struct KubeExecutor<C> {
    cluster: C,
    settings: KubeSettings,
    clock: Arc<dyn Clock>,
    calls: AtomicU64,
}

impl<C> std::fmt::Debug for KubeExecutor<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeExecutor")
            .field("namespace", &self.settings.namespace)
            .finish_non_exhaustive()
    }
}

/// The namespace of Kubernetes thread ids (UUID v5).
const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6166_6b2d_6b75_6265_2d74_6872_6561_6473);

fn permanent(message: impl Into<String>) -> PortError {
    PortError::Permanent {
        message: message.into(),
    }
}

fn transient(message: impl Into<String>) -> PortError {
    PortError::Transient {
        message: message.into(),
    }
}

/// The pods of `job`, newest first.
fn pods_of<'a>(job: &Job, pods: &'a [Pod]) -> Vec<&'a Pod> {
    let uid = job.metadata.uid.as_deref();
    let mut mine: Vec<&Pod> = pods
        .iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Job" && Some(o.uid.as_str()) == uid)
        })
        .collect();
    mine.sort_by(|a, b| {
        b.metadata
            .creation_timestamp
            .cmp(&a.metadata.creation_timestamp)
    });
    mine
}

/// Whether Kubernetes says the Job ended (`Complete` or `Failed`).
fn ended(job: &Job) -> bool {
    state::job_verdict(job).is_some()
}

/// The listed Jobs by the thread their label names.
fn by_thread(jobs: Vec<Job>) -> BTreeMap<String, Vec<Job>> {
    let mut threads: BTreeMap<String, Vec<Job>> = BTreeMap::new();
    for job in jobs {
        let thread = job
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(job::THREAD))
            .cloned();
        if let Some(thread) = thread {
            threads.entry(thread).or_default().push(job);
        }
    }
    threads
}

/// What a thread's turns cost (see [`trust::thread_cost`]), the latest's
/// as `latest_outcome` says (read this tick, perhaps).
fn cost_of(turns: &ThreadJobs, latest_outcome: Option<&Outcome>) -> Option<Cost> {
    let latest = turns.turns.keys().next_back().copied();
    let costs: Vec<_> = turns
        .turns
        .iter()
        .map(|(step, (job, _))| {
            let outcome = if Some(*step) == latest {
                latest_outcome.cloned()
            } else {
                trust::outcome_of(job)
            };
            (
                job::cost_before(job),
                outcome.and_then(|o| o.cost_micro_usd),
            )
        })
        .collect();
    trust::thread_cost(&costs).map(|micro_usd| Cost { micro_usd })
}

impl<C: Cluster> KubeExecutor<C> {
    /// A Kubernetes executor.
    pub fn new(cluster: C, settings: KubeSettings, clock: Arc<dyn Clock>) -> Self {
        KubeExecutor {
            cluster,
            settings,
            clock,
            calls: AtomicU64::new(0),
        }
    }

    /// The cluster it runs on.
    pub fn cluster(&self) -> &C {
        &self.cluster
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    fn age_seconds(&self, job: &Job) -> i64 {
        let now = self.clock.now().unix_seconds();
        job.metadata
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| now.saturating_sub(t.0.as_second()))
    }

    /// Where a turn stands: what afk recorded of its end (when Kubernetes
    /// agrees), else the rule.
    fn state(&self, job: &Job, pods: &[Pod]) -> TurnState {
        if let Some(o) = trust::outcome_of(job) {
            return o.state();
        }
        state::turn_state(
            job,
            &pods_of(job, pods),
            self.age_seconds(job),
            self.settings.start_timeout_seconds,
        )
    }

    /// Reads how a turn that just ended went (its pod's log), keeps it on
    /// the Job, and returns it. A turn that never started is suspended in
    /// the same patch, so that its pod cannot start after afk moved on.
    async fn settle(&self, job: &Job, pods: &[Pod], state: &TurnState) -> PortResult<Outcome> {
        let container = job::agent_container(&self.settings.job.template);
        let log = match (state, pods_of(job, pods).first()) {
            (TurnState::NeverStarted(_), _) | (_, None) => None,
            (_, Some(pod)) => {
                self.cluster
                    .pod_log(
                        pod.metadata.name.as_deref().unwrap_or(""),
                        &container,
                        LOG_LINES,
                        LOG_BYTES,
                    )
                    .await?
            }
        };
        let log = log.unwrap_or_default();
        let ending = afk_process::said::ending(matches!(state, TurnState::Succeeded), &log, "");
        let why = match state {
            TurnState::Failed(w) | TurnState::NeverStarted(w) => Some(w.clone()),
            TurnState::Running | TurnState::Succeeded => None,
        };
        // A reading that replaces one written before (unreadable, or not
        // believed) never lowers what that one said the turn cost.
        let before = trust::recorded_outcome(job).and_then(|o| o.cost_micro_usd);
        let outcome = Outcome {
            ok: matches!(state, TurnState::Succeeded) && !ending.reported_error,
            why,
            said: ending.said,
            cost_micro_usd: ending.cost.map(|c| c.micro_usd).max(before),
        };
        let text = serde_json::to_string(&outcome).unwrap_or_default();
        let mut patch = serde_json::json!({"metadata": {"annotations": {job::OUTCOME: text}}});
        if matches!(state, TurnState::NeverStarted(_)) {
            patch["spec"] = serde_json::json!({"suspend": true});
        }
        self.cluster.patch_job(name_of(job), &patch).await?;
        Ok(outcome)
    }

    fn turn(
        &self,
        spec: &ThreadSpec,
        thread: &str,
        step: u32,
        prompt: &str,
    ) -> PortResult<TurnSpec> {
        let (owner, name) =
            afk_local::canonical_repo(&spec.repo, self.settings.default_owner.as_deref())
                .map_err(permanent)?;
        // The repository a turn clones, and its push token is minted for,
        // is the one the thread's id derives from, and no other.
        if self.thread_id(&spec.repo, spec.issue, spec.attempt) != thread {
            return Err(permanent(format!(
                "thread {thread} is not {owner}/{name}#{} (attempt {})'s; afk starts no turn of it there",
                spec.issue, spec.attempt
            )));
        }
        let session =
            uuid::Uuid::new_v5(&NAMESPACE, format!("{thread}/{step}").as_bytes()).to_string();
        Ok(TurnSpec {
            thread: thread.to_owned(),
            repo: format!("{owner}/{name}"),
            issue: spec.issue,
            attempt: spec.attempt,
            step,
            branch: spec.branch.clone(),
            clone_url: afk_local::clone_url(&self.settings.git_base, &owner, &name),
            prompt: prompt.to_owned(),
            // Each turn is a fresh pod: no session to resume.
            agent_argv: self.settings.runtime.turn_argv(Turn::First(&session)),
            push_token: self.settings.push_tokens.is_some(),
        })
    }

    /// Creates the turn's prompt and Job, or accepts what a repeat finds of
    /// them when it is this turn's; then makes the Job the prompt's owner.
    /// The prompt first: the pod never waits for its mount, so the start
    /// timeout measures only the cluster. A crash between the two leaves a
    /// prompt without a Job, which the repeat uses. `cost_before` is what
    /// the thread's earlier turns cost, written into the new Job's pod
    /// template ([`job::COST_BEFORE`]).
    async fn start(&self, turn: &TurnSpec, cost_before: u64) -> PortResult<()> {
        let name = job::job_name(turn);
        let map = match self
            .cluster
            .create_config_map(&job::prompt_map(turn))
            .await?
        {
            Made::Created(map) => map,
            Made::Exists => match self.cluster.get_config_map(&name).await? {
                Some(map) if job::is_turns_object(&map.metadata, turn, None) => {
                    // A prompt found under the turn's name is this turn's
                    // only with this turn's words: one written by someone
                    // else with afk's labels (or by an earlier try, before
                    // an approved comment changed the task) is rewritten
                    // before any Job can mount it.
                    let own_words = map
                        .data
                        .as_ref()
                        .and_then(|d| d.get(job::PROMPT_KEY))
                        .is_some_and(|p| *p == turn.prompt);
                    if !own_words {
                        let patch = serde_json::json!({"data": { job::PROMPT_KEY: turn.prompt }});
                        self.cluster.patch_config_map(&name, &patch).await?;
                    }
                    map
                }
                Some(_) => {
                    return Err(permanent(format!(
                        "a ConfigMap named {name} exists and is not this turn's prompt; afk does not touch it"
                    )));
                }
                None => {
                    return Err(transient(format!(
                        "ConfigMap {name} was there and is gone; the turn is started again next tick"
                    )));
                }
            },
        };
        let token = match &self.settings.push_tokens {
            Some(tokens) => Some(self.token_secret(turn, tokens).await?),
            None => None,
        };
        let mut made = job::job(turn, &self.settings.job);
        job::set_cost_before(&mut made, cost_before);
        let uid = match self.cluster.create_job(&made).await? {
            Made::Created(job) => job.metadata.uid,
            Made::Exists => {
                let Some(found) = self.cluster.get_job(&name).await? else {
                    return Err(transient(format!(
                        "Job {name} was there and is gone; the turn is started again next tick"
                    )));
                };
                let made_for_it =
                    trust::origin(&found, &turn.thread, |r, i, a| self.thread_id(r, i, a))
                        .is_ok_and(|(step, origin)| step == turn.step && origin.repo == turn.repo);
                if !made_for_it || !job::is_turns(found.metadata.labels.as_ref(), turn) {
                    return Err(permanent(format!(
                        "a Job named {name} exists and is not this turn's (thread {}, step {}); \
                         afk does not touch it",
                        turn.thread, turn.step
                    )));
                }
                found.metadata.uid
            }
        };
        let Some(uid) = uid else {
            return Err(transient(format!("Job {name} has no uid yet")));
        };
        if !job::is_turns_object(&map.metadata, turn, Some(&uid)) {
            return Err(permanent(format!(
                "ConfigMap {name} is owned by another Job; afk does not touch it"
            )));
        }
        if !job::is_owned_by(&map.metadata, &uid) {
            self.cluster
                .patch_config_map(&name, &job::owner_patch(turn, &uid))
                .await?;
        }
        if let Some(meta) = token {
            if !job::is_turns_object(&meta, turn, Some(&uid)) {
                return Err(permanent(format!(
                    "Secret {name} is owned by another Job; afk does not touch it"
                )));
            }
            if !job::is_owned_by(&meta, &uid) {
                self.cluster
                    .patch_secret(&name, &job::owner_patch(turn, &uid))
                    .await?;
            }
        }
        Ok(())
    }

    /// Mints the turn's push token and puts it in the turn's Secret
    /// (created, or, when a repeat finds it and it is this turn's, given
    /// the new token); its metadata, for the owner check.
    async fn token_secret(
        &self,
        turn: &TurnSpec,
        tokens: &PushTokens,
    ) -> PortResult<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta> {
        let name = job::job_name(turn);
        let token = tokens.0.token_for(&turn.repo).await.map_err(|why| {
            transient(format!("no push token for {} this tick: {why}", turn.repo))
        })?;
        match self
            .cluster
            .create_secret(&job::token_secret(turn, &token))
            .await?
        {
            Made::Created(secret) => Ok(secret.metadata),
            Made::Exists => match self.cluster.get_secret(&name).await? {
                Some(found) if job::is_turns_object(&found.metadata, turn, None) => {
                    self.cluster
                        .patch_secret(&name, &job::token_patch(&token))
                        .await?;
                    Ok(found.metadata)
                }
                Some(_) => Err(permanent(format!(
                    "a Secret named {name} exists and is not this turn's; afk does not touch it"
                ))),
                None => Err(transient(format!(
                    "Secret {name} was there and is gone; the turn is started again next tick"
                ))),
            },
        }
    }

    /// The thread's Jobs, read now and sorted out.
    async fn jobs_of(&self, thread: &str) -> PortResult<ThreadJobs> {
        if uuid::Uuid::parse_str(thread).is_err() {
            return Ok(ThreadJobs::default());
        }
        let jobs = self
            .cluster
            .list_jobs(&job::thread_selector(thread))
            .await?;
        Ok(self.sort(thread, jobs))
    }

    fn sort(&self, thread: &str, jobs: Vec<Job>) -> ThreadJobs {
        ThreadJobs::sort(thread, jobs, |repo, issue, attempt| {
            self.thread_id(repo, issue, attempt)
        })
    }
}

#[async_trait]
impl<C: Cluster> Executor for KubeExecutor<C> {
    fn thread_id(&self, repo: &str, issue: u64, attempt: u32) -> String {
        let owner = self.settings.default_owner.as_deref();
        afk_local::thread_uuid(&NAMESPACE, "kubernetes", repo, owner, issue, attempt)
    }

    async fn snapshot(&self, watched: &[WatchedThread]) -> PortResult<ExecutorSnapshot> {
        self.count();
        let selector = job::owned_selector();
        let jobs = self.cluster.list_jobs(&selector).await?;
        let pods = self.cluster.list_pods(&selector).await?;
        let mut threads = BTreeMap::new();
        let mut projects: BTreeMap<String, ProjectInfo> = BTreeMap::new();
        for (id, jobs) in by_thread(jobs) {
            let turns = self.sort(&id, jobs);
            let distrust = turns.distrust(&id);
            let Some((latest, origin)) = turns.latest() else {
                // Only Jobs afk did not make as the thread's turns: the
                // thread is reported failed, with why, and left alone.
                threads.insert(
                    id.clone(),
                    ThreadInfo {
                        project_id: String::new(),
                        deleted: false,
                        status: Some(ThreadStatus::Error),
                        message_ids: Vec::new(),
                        said: distrust,
                        cost: None,
                    },
                );
                continue;
            };
            let mut state = self.state(latest, &pods);
            let mut latest_outcome = trust::outcome_of(latest);
            let is_watched = watched.iter().any(|w| w.thread_id == id);
            let mut unread = None;
            if state.is_final() && latest_outcome.is_none() && is_watched {
                // A log that cannot be read (or a Job gone meanwhile) costs
                // this run its words and cost this tick, never the tick:
                // the state stands, and the next tick reads again.
                match self.settle(latest, &pods, &state).await {
                    Ok(outcome) => latest_outcome = Some(outcome),
                    Err(e) => unread = Some(e.to_string()),
                }
            }
            if let Some(o) = &latest_outcome {
                state = o.state();
            }
            let mut status = match state {
                TurnState::Running => ThreadStatus::Running,
                TurnState::Succeeded => ThreadStatus::Idle,
                TurnState::Failed(_) | TurnState::NeverStarted(_) => ThreadStatus::Error,
            };
            let said = match (&state, &latest_outcome) {
                (TurnState::Succeeded, Some(o)) => o.said.clone(),
                (TurnState::Failed(why) | TurnState::NeverStarted(why), o) => {
                    let said = o.as_ref().and_then(|o| o.said.clone());
                    match (why.trim(), said) {
                        ("", s) => s,
                        (w, None) => Some(format!("Kubernetes: {w}")),
                        (w, Some(s)) => Some(format!("{s} (Kubernetes: {w})")),
                    }
                }
                _ => None,
            };
            let mut said = match (said, unread) {
                (Some(s), Some(e)) => Some(format!("{s} (the agent's log was not read: {e})")),
                (None, Some(e)) if state.is_final() && !matches!(state, TurnState::Succeeded) => {
                    Some(format!("the agent's log was not read: {e}"))
                }
                (said, _) => said,
            };
            // Jobs changed or planted under the thread's labels: once its
            // agent is done, the run is handed back with why (a new
            // thread, if any, is built from the tracker, not from them).
            if let Some(why) = distrust
                && state.is_final()
            {
                status = ThreadStatus::Error;
                said = Some(why);
            }
            let cost = cost_of(&turns, latest_outcome.as_ref());
            let project = origin.repo.clone();
            projects
                .entry(project.clone())
                .or_insert_with(|| ProjectInfo {
                    id: project.clone(),
                    workspace_root: String::new(),
                    deleted: false,
                });
            threads.insert(
                id.clone(),
                ThreadInfo {
                    project_id: project,
                    deleted: false,
                    status: Some(status),
                    message_ids: turns
                        .turns
                        .keys()
                        .map(|step| format!("{id}:{step}"))
                        .collect(),
                    said,
                    cost,
                },
            );
        }
        Ok(ExecutorSnapshot {
            projects: projects.into_values().collect(),
            threads,
            // The cluster schedules; its quotas are its own limit.
            capacity: None,
        })
    }

    async fn ensure_thread(
        &self,
        _snapshot: &ExecutorSnapshot,
        spec: &ThreadSpec,
    ) -> PortResult<String> {
        self.count();
        let id = self.thread_id(&spec.repo, spec.issue, spec.attempt);
        let turn = self.turn(spec, &id, 0, &spec.prompt)?;
        let jobs = self.jobs_of(&id).await?;
        if let Some(why) = jobs.distrust(&id) {
            return Err(permanent(why));
        }
        if jobs
            .turns
            .values()
            .any(|(j, _)| annotation(j, job::STOPPED).is_some())
        {
            return Err(permanent(format!(
                "thread {id} was stopped; its id is never started again"
            )));
        }
        if !jobs.turns.is_empty() && !jobs.turns.contains_key(&0) {
            // The thread's turns but no opening one: an opening Job long
            // expired. It is not started again.
            return Err(permanent(format!(
                "thread {id} has Jobs ({}) but no opening turn; afk does not start it again",
                jobs.turns
                    .values()
                    .map(|(j, _)| name_of(j))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        self.start(&turn, 0).await?;
        Ok(id)
    }

    async fn send_turn(
        &self,
        snapshot: &ExecutorSnapshot,
        thread_id: &str,
        step: u32,
        text: &str,
        created_at: Timestamp,
    ) -> PortResult<()> {
        self.count();
        let jobs = self.jobs_of(thread_id).await?;
        // Nothing read back from a Job the thread's id does not vouch for
        // (or that was changed since afk made it) becomes a turn: no clone
        // of another repository or branch, no token minted for one.
        if let Some(why) = jobs.distrust(thread_id) {
            return Err(permanent(why));
        }
        let Some((latest, origin)) = jobs.latest() else {
            return Err(PortError::NotFound {
                what: format!("thread {thread_id}"),
            });
        };
        if jobs
            .turns
            .values()
            .any(|(j, _)| annotation(j, job::STOPPED).is_some())
        {
            return Err(PortError::NotFound {
                what: format!("thread {thread_id} (it was stopped)"),
            });
        }
        let spec = ThreadSpec {
            repo: origin.repo.clone(),
            issue: origin.issue,
            attempt: origin.attempt,
            title: String::new(),
            branch: origin.branch.clone(),
            prompt: String::new(),
            created_at,
        };
        let turn = self.turn(&spec, thread_id, step, text)?;
        let cost_before = jobs.cost_before(step).unwrap_or(0);
        if jobs.turns.contains_key(&step) {
            // A repeat: finish what the first try began.
            return self.start(&turn, cost_before).await;
        }
        let latest_step = jobs.turns.keys().next_back().copied().unwrap_or(0);
        if latest_step > step {
            return Err(permanent(format!(
                "thread {thread_id} already has a later turn than {step}"
            )));
        }
        // Pods are not read again here: this tick's snapshot read them (a
        // pod still terminating keeps the turn running), and a turn whose
        // pod never started was settled (and suspended) by the snapshot
        // that reported it.
        let running = snapshot.status(thread_id) == Some(ThreadStatus::Running);
        if running || (!ended(latest) && trust::outcome_of(latest).is_none()) {
            return Err(transient(format!(
                "thread {thread_id}'s agent is still at work; turn {step} waits"
            )));
        }
        self.start(&turn, cost_before).await
    }

    async fn stop_thread(
        &self,
        _snapshot: &ExecutorSnapshot,
        thread_id: &str,
        at: Timestamp,
    ) -> PortResult<()> {
        self.count();
        // Only the thread's own turns are deleted: a Job afk did not make
        // is not afk's to touch.
        let jobs = self.jobs_of(thread_id).await?;
        let mut kept = None;
        for (job, _) in jobs.turns.values() {
            // A suspended turn that never started is deleted too: it must
            // not start later.
            if ended(job) {
                kept = Some(job);
            } else {
                self.cluster.delete_job(name_of(job)).await?;
            }
        }
        // What is left of the thread is marked, so that no turn is sent to
        // it again (once per thread: its latest ended Job).
        if let Some(job) = kept
            && !jobs
                .turns
                .values()
                .any(|(j, _)| annotation(j, job::STOPPED).is_some())
        {
            let patch =
                serde_json::json!({"metadata": {"annotations": {job::STOPPED: at.to_rfc3339()}}});
            self.cluster.patch_job(name_of(job), &patch).await?;
        }
        Ok(())
    }

    fn thread_link(&self, thread_id: &str) -> Option<String> {
        Some(format!(
            "kubectl -n {} get jobs -l {}={thread_id}",
            self.settings.namespace,
            job::THREAD
        ))
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}
