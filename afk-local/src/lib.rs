//! The loop's local executor (`AFK_EXECUTOR=local`): every agent turn is a
//! process tree on this machine that outlives the tick that started it.
//!
//! - A **thread** is a run record (`<AFK_LOCAL_DIR>/runs/<thread>/`, see
//!   [`record`]) and its turns' process trees. Its id is a UUID derived from
//!   `(repository, issue, attempt)`, so a repeated dispatch finds it; it is
//!   also claude's session id.
//! - A **turn** runs the agent ([`afk_process::runtime`], the same
//!   definitions `afk run` uses) under `afk-reaper --detach`, in a session of
//!   its own, with the prompt on standard input and its output in files
//!   beside the record. The supervisor holds the turn's lock for its whole
//!   life and records how the agent ended before it lets go.
//! - **Liveness** is read from the machine, not believed from the record: a
//!   turn runs while a process holds its lock; it completed when its
//!   supervisor recorded exit 0 and the CLI did not report an error; it
//!   errored otherwise, with what the agent said ([`afk_process::said`]).
//! - One **workspace** per repository (`workspaces/<owner>__<name>`): cloned
//!   once, fetched and reset to the default branch before each new thread.
//!   A corrective turn to the same thread runs in it as the agent left it
//!   (claude resumes its session; the other runtimes start fresh).
//! - **Stop** signals only the process that holds the turn's lock with the
//!   recorded start time: it kills its whole tree, `setsid` escapees
//!   included (it is their subreaper). A forged or stale record signals
//!   nothing.
//! - At most `AFK_LOCAL_MAX_AGENTS` turns run at once: the snapshot reports
//!   the limit, and the core's policy holds the rest of a tick's plan.
//!
//! Every method is safe to repeat after a crash at any point: a turn's
//! intent is recorded before its supervisor starts, a second supervisor of
//! the same turn starts nothing, and the record is written whole or not at
//! all. The I/O is [`host::Host`]'s; [`os::OsHost`] is the machine itself.
//! What it relies on from git, the CLIs and Linux, with sources, is in
//! `docs/contracts/local.md`.
//! This file is long because each method says how it stays safe to repeat
//! after a crash at any of its steps.

pub mod host;
pub mod os;
pub mod record;
pub mod settings;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use afk_core::ports::{
    Capacity, ExecutorSnapshot, PortError, PortResult, ProjectInfo, ThreadInfo, ThreadSpec,
    WatchedThread,
};
use afk_core::{Cost, ThreadStatus, Timestamp};
use afk_loop::ports::Executor;
use afk_process::runtime::{Runtime, Turn};
use async_trait::async_trait;

use crate::host::{BadRecord, Host, Launch, Started, Workspace};
use crate::record::{ThreadRecord, TurnEnd, TurnRecord, VERSION};

/// What the local executor is configured with.
#[derive(Debug, Clone)]
pub struct LocalSettings {
    /// The agent runtime (`AFK_LOCAL_AGENT`).
    pub runtime: Runtime,
    /// At most this many turns at once (`AFK_LOCAL_MAX_AGENTS`).
    pub max_agents: u32,
    /// The base of clone URLs: `<base>/<owner>/<name>.git` (`AFK_GIT_URL`,
    /// else the tracker's web URL).
    pub git_base: String,
    /// The owner of bare repository names.
    pub default_owner: Option<String>,
}

/// The local executor over a [`Host`].
#[derive(Debug)]
pub struct LocalExecutor<H> {
    host: H,
    settings: LocalSettings,
    calls: AtomicU64,
}

/// The namespace of local thread ids (UUID v5).
const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6166_6b2d_6c6f_6361_6c2d_7468_7265_6164);

/// A repository name as the local executor uses it: `owner/name`, both
/// parts safe as one path segment each (letters, digits, `-`, `_`, `.`;
/// never `.` or `..`), lower-cased (GitHub's names are case-insensitive).
///
/// # Errors
/// A bare name without a default owner, or a part that cannot be a
/// repository's.
pub fn canonical_repo(repo: &str, default_owner: Option<&str>) -> Result<(String, String), String> {
    let (owner, name) = match repo.split_once('/') {
        Some((o, n)) => (o, n),
        None => (
            default_owner.ok_or_else(|| {
                format!("{repo:?} names no owner: write owner/name, or set AFK_GITHUB_OWNER")
            })?,
            repo,
        ),
    };
    let ok = |part: &str| {
        !part.is_empty()
            && part.len() <= 100
            && part != "."
            && part != ".."
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    if !ok(owner) || !ok(name) {
        return Err(format!("{repo:?} cannot name a repository"));
    }
    Ok((owner.to_ascii_lowercase(), name.to_ascii_lowercase()))
}

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

fn io(what: &str) -> impl FnOnce(std::io::Error) -> PortError + '_ {
    move |e| transient(format!("{what}: {e}"))
}

fn bad(b: &BadRecord) -> PortError {
    permanent(format!(
        "the run record {} cannot be read ({}); fix or delete it",
        b.path, b.why
    ))
}

/// The words for a turn whose supervisor vanished without recording how
/// the agent ended.
const VANISHED: &str = "the agent's supervisor ended without recording how the agent ended (it was killed, or the machine restarted)";

impl<H: Host> LocalExecutor<H> {
    /// A local executor.
    pub fn new(host: H, settings: LocalSettings) -> Self {
        LocalExecutor {
            host,
            settings,
            calls: AtomicU64::new(0),
        }
    }

    /// The host it runs on.
    pub fn host(&self) -> &H {
        &self.host
    }

    fn count(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
    }

    fn repo(&self, repo: &str) -> PortResult<(String, String)> {
        canonical_repo(repo, self.settings.default_owner.as_deref()).map_err(permanent)
    }

    /// The thread's status now, settling what the machine shows into the
    /// record (`true` when the record changed): a turn that ended gets its
    /// end, a supervisor found holding a lock is recorded, one that
    /// vanished is an error.
    async fn judge(&self, record: &mut ThreadRecord) -> PortResult<(Option<ThreadStatus>, bool)> {
        let mut changed = false;
        for i in (0..record.turns.len()).rev() {
            if let Some(end) = &record.turns[i].end {
                return Ok((Some(status_of(end)), changed));
            }
            let step = record.turns[i].step;
            let seen = self
                .host
                .observe(&record.thread_id, step)
                .await
                .map_err(io("reading a turn's state"))?;
            let turn = &mut record.turns[i];
            if let Some(end) = seen.end {
                let status = status_of(&end);
                turn.end = Some(end);
                return Ok((Some(status), true));
            }
            if let Some(holder) = seen.holder {
                if turn.supervisor != Some(holder) {
                    turn.supervisor = Some(holder);
                    changed = true;
                }
                return Ok((Some(ThreadStatus::Running), changed));
            }
            if turn.supervisor.is_some() {
                turn.end = Some(TurnEnd {
                    code: None,
                    stopped: false,
                    reported_error: false,
                    said: Some(VANISHED.into()),
                    cost_micro_usd: None,
                });
                return Ok((Some(ThreadStatus::Error), true));
            }
            // Recorded but never started (the tick died in between): the
            // thread is as its earlier turn left it; a repeat starts it.
        }
        Ok((None, changed))
    }

    /// Starts turn `step` of `record` (recorded already) and records its
    /// supervisor.
    async fn launch(&self, record: &mut ThreadRecord, step: u32, prompt: &str) -> PortResult<()> {
        let session = if step == 0 {
            Turn::First(&record.thread_id)
        } else {
            Turn::Next(&record.thread_id)
        };
        let launch = Launch {
            thread: record.thread_id.clone(),
            step,
            workspace: record.workspace.clone().into(),
            argv: self.settings.runtime.turn_argv(session),
            prompt: prompt.to_owned(),
            env: vec![
                ("AFK_THREAD_ID".into(), record.thread_id.clone()),
                ("AFK_TURN".into(), step.to_string()),
                ("AFK_REPO".into(), record.repo.clone()),
                ("AFK_ISSUE".into(), record.issue.to_string()),
            ],
        };
        let started = self
            .host
            .start(&launch)
            .await
            .map_err(io("starting the agent"))?;
        if let Started::Running(sup) = started
            && let Some(turn) = record.turn_mut(step)
        {
            turn.supervisor = Some(sup);
            self.host
                .save(record)
                .await
                .map_err(io("recording the agent's supervisor"))?;
        }
        Ok(())
    }

    /// Resumes turn `step` after a crash: nothing when it runs or ran
    /// (recording what is seen), started again when it never was.
    async fn resume(&self, record: &mut ThreadRecord, step: u32, prompt: &str) -> PortResult<()> {
        let Some(turn) = record.turn(step) else {
            return Ok(());
        };
        if turn.end.is_some() || turn.supervisor.is_some() {
            return Ok(());
        }
        let seen = self
            .host
            .observe(&record.thread_id, step)
            .await
            .map_err(io("reading a turn's state"))?;
        if seen.end.is_some() || seen.holder.is_some() {
            if let Some(turn) = record.turn_mut(step) {
                turn.end = seen.end;
                turn.supervisor = seen.holder;
            }
            return self
                .host
                .save(record)
                .await
                .map_err(io("recording the agent's supervisor"));
        }
        self.launch(record, step, prompt).await
    }

    async fn load(&self, thread: &str) -> PortResult<Option<ThreadRecord>> {
        if uuid::Uuid::parse_str(thread).is_err() {
            return Ok(None);
        }
        match self
            .host
            .record(thread)
            .await
            .map_err(io("reading the run record"))?
        {
            None => Ok(None),
            Some(Ok(r)) => Ok(Some(r)),
            Some(Err(b)) => Err(bad(&b)),
        }
    }
}

/// A turn's end as a liveness.
fn status_of(end: &TurnEnd) -> ThreadStatus {
    if end.succeeded() {
        ThreadStatus::Idle
    } else {
        ThreadStatus::Error
    }
}

/// What the thread's latest ended turn said, when it failed or was denied
/// tools.
fn said_of(record: &ThreadRecord) -> Option<String> {
    record
        .turns
        .iter()
        .rev()
        .find_map(|t| t.end.as_ref())
        .and_then(|e| {
            if e.stopped {
                Some("the agent was stopped before it finished".to_owned())
            } else {
                e.said.clone()
            }
        })
}

#[async_trait]
impl<H: Host> Executor for LocalExecutor<H> {
    fn thread_id(&self, repo: &str, issue: u64, attempt: u32) -> String {
        let owner = self.settings.default_owner.as_deref();
        thread_uuid(&NAMESPACE, "local", repo, owner, issue, attempt)
    }

    async fn snapshot(&self, _watched: &[WatchedThread]) -> PortResult<ExecutorSnapshot> {
        self.count();
        let records = self
            .host
            .records()
            .await
            .map_err(io("listing the run records"))?;
        let mut threads = BTreeMap::new();
        let mut projects: BTreeMap<String, ProjectInfo> = BTreeMap::new();
        let mut running = 0u32;
        for (id, record) in records {
            let mut record = match record {
                Ok(r) => r,
                Err(_) => {
                    // Unreadable: it may run; count it (fail closed) and
                    // report no status (which never triggers an action).
                    running = running.saturating_add(1);
                    threads.insert(
                        id,
                        ThreadInfo {
                            project_id: String::new(),
                            deleted: false,
                            status: None,
                            message_ids: Vec::new(),
                            said: None,
                            cost: None,
                        },
                    );
                    continue;
                }
            };
            let (status, changed) = self.judge(&mut record).await?;
            if changed {
                // Best effort: what was seen is seen again next tick.
                let _ = self.host.save(&record).await;
            }
            if status == Some(ThreadStatus::Running) {
                running = running.saturating_add(1);
            }
            let project = record.repo.replace('/', "__");
            projects
                .entry(project.clone())
                .or_insert_with(|| ProjectInfo {
                    id: project.clone(),
                    workspace_root: record.workspace.clone(),
                    deleted: false,
                });
            threads.insert(
                id,
                ThreadInfo {
                    project_id: project,
                    deleted: false,
                    status,
                    message_ids: record
                        .turns
                        .iter()
                        .map(|t| format!("{}:{}", record.thread_id, t.step))
                        .collect(),
                    said: said_of(&record),
                    cost: record.cost_micro_usd().map(|micro_usd| Cost { micro_usd }),
                },
            );
        }
        Ok(ExecutorSnapshot {
            projects: projects.into_values().collect(),
            threads,
            capacity: Some(Capacity {
                running,
                max: self.settings.max_agents,
            }),
        })
    }

    async fn ensure_thread(
        &self,
        snapshot: &ExecutorSnapshot,
        spec: &ThreadSpec,
    ) -> PortResult<String> {
        self.count();
        let id = self.thread_id(&spec.repo, spec.issue, spec.attempt);
        let (owner, name) = self.repo(&spec.repo)?;
        if let Some(mut record) = self.load(&id).await? {
            if record.stopped_at.is_some() {
                return Err(permanent(format!(
                    "thread {id} was stopped; its id is never started again"
                )));
            }
            let turn0_unstarted = record
                .turn(0)
                .is_some_and(|t| t.end.is_none() && t.supervisor.is_none());
            if turn0_unstarted {
                // The dispatch died between recording the turn and its
                // start: the workspace is prepared again (nothing runs in
                // it) and the turn started, unless it runs after all.
                let seen = self
                    .host
                    .observe(&id, 0)
                    .await
                    .map_err(io("reading a turn's state"))?;
                if seen.end.is_none() && seen.holder.is_none() {
                    let workspace = Workspace {
                        key: format!("{owner}__{name}"),
                        url: clone_url(&self.settings.git_base, &owner, &name),
                        branch: spec.branch.clone(),
                    };
                    self.host
                        .prepare(&workspace)
                        .await
                        .map_err(|e| transient(format!("preparing the workspace: {e}")))?;
                }
                self.resume(&mut record, 0, &spec.prompt).await?;
            }
            return Ok(id);
        }
        // One agent per workspace: another thread's agent still at work in
        // this repository's directory must not have it reset under it.
        let project = format!("{owner}/{name}").replace('/', "__");
        if let Some((busy, _)) = snapshot.threads.iter().find(|(t, info)| {
            **t != id
                && info.project_id == project
                && matches!(info.status, Some(ThreadStatus::Running) | None)
        }) {
            return Err(transient(format!(
                "an agent still works in {owner}/{name}'s workspace (thread {busy}); the dispatch waits for it"
            )));
        }
        let workspace = Workspace {
            key: project,
            url: clone_url(&self.settings.git_base, &owner, &name),
            branch: spec.branch.clone(),
        };
        let dir = self
            .host
            .prepare(&workspace)
            .await
            .map_err(|e| transient(format!("preparing the workspace: {e}")))?;
        let mut record = ThreadRecord {
            version: VERSION,
            thread_id: id.clone(),
            repo: format!("{owner}/{name}"),
            issue: spec.issue,
            attempt: spec.attempt,
            runtime: self.settings.runtime.kind().to_owned(),
            workspace: dir.display().to_string(),
            turns: vec![TurnRecord::new(0, &spec.created_at.to_rfc3339())],
            stopped_at: None,
        };
        // The intent first: a crash after the start finds the turn, and a
        // repeat starts nothing twice.
        self.host
            .save(&record)
            .await
            .map_err(io("recording the thread"))?;
        self.launch(&mut record, 0, &spec.prompt).await?;
        Ok(id)
    }

    async fn send_turn(
        &self,
        _snapshot: &ExecutorSnapshot,
        thread_id: &str,
        step: u32,
        text: &str,
        created_at: Timestamp,
    ) -> PortResult<()> {
        self.count();
        let Some(mut record) = self.load(thread_id).await? else {
            return Err(PortError::NotFound {
                what: format!("thread {thread_id}"),
            });
        };
        if record.stopped_at.is_some() {
            return Err(PortError::NotFound {
                what: format!("thread {thread_id} (it was stopped)"),
            });
        }
        if record.turn(step).is_some() {
            return self.resume(&mut record, step, text).await;
        }
        let (status, changed) = self.judge(&mut record).await?;
        if changed {
            self.host
                .save(&record)
                .await
                .map_err(io("recording a turn's end"))?;
        }
        if status == Some(ThreadStatus::Running) {
            return Err(transient(format!(
                "thread {thread_id}'s agent is still at work; turn {step} waits"
            )));
        }
        if record.turns.last().is_some_and(|t| t.step > step) {
            return Err(permanent(format!(
                "thread {thread_id} already has a later turn than {step}"
            )));
        }
        record
            .turns
            .push(TurnRecord::new(step, &created_at.to_rfc3339()));
        self.host
            .save(&record)
            .await
            .map_err(io("recording the turn"))?;
        self.launch(&mut record, step, text).await
    }

    async fn stop_thread(
        &self,
        _snapshot: &ExecutorSnapshot,
        thread_id: &str,
        at: Timestamp,
    ) -> PortResult<()> {
        self.count();
        let Some(mut record) = self.load(thread_id).await? else {
            return Ok(());
        };
        let mut changed = record.stopped_at.is_none();
        for i in 0..record.turns.len() {
            if record.turns[i].end.is_some() {
                continue;
            }
            let step = record.turns[i].step;
            let seen = self
                .host
                .observe(thread_id, step)
                .await
                .map_err(io("reading a turn's state"))?;
            if let Some(holder) = seen.holder {
                self.host
                    .stop(thread_id, step, holder)
                    .await
                    .map_err(io("stopping the agent"))?;
                // Its supervisor recorded the stop; read it back.
                let after = self
                    .host
                    .observe(thread_id, step)
                    .await
                    .map_err(io("reading a turn's state"))?;
                record.turns[i].end = after.end.or(Some(TurnEnd {
                    code: None,
                    stopped: true,
                    reported_error: false,
                    said: None,
                    cost_micro_usd: None,
                }));
            } else {
                // Ended, vanished or never started: nothing runs.
                record.turns[i].end = seen.end.or(Some(TurnEnd {
                    code: None,
                    stopped: true,
                    reported_error: false,
                    said: None,
                    cost_micro_usd: None,
                }));
            }
            changed = true;
        }
        if changed {
            record.stopped_at.get_or_insert_with(|| at.to_rfc3339());
            self.host
                .save(&record)
                .await
                .map_err(io("recording the stop"))?;
        }
        Ok(())
    }

    fn thread_link(&self, thread_id: &str) -> Option<String> {
        self.host.run_dir(thread_id)
    }

    fn api_calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

/// A thread's id for an executor that names its threads itself: a UUID v5
/// in the executor's `namespace` of `<kind>:<owner/name>#<issue>/<attempt>`
/// (the repository canonical, so `infra` and `Acme/Infra` name one thread),
/// so a repeated dispatch finds the thread it made.
pub fn thread_uuid(
    namespace: &uuid::Uuid,
    kind: &str,
    repo: &str,
    default_owner: Option<&str>,
    issue: u64,
    attempt: u32,
) -> String {
    let canonical = canonical_repo(repo, default_owner)
        .map_or_else(|_| repo.to_ascii_lowercase(), |(o, n)| format!("{o}/{n}"));
    uuid::Uuid::new_v5(
        namespace,
        format!("{kind}:{canonical}#{issue}/{attempt}").as_bytes(),
    )
    .to_string()
}

/// A repository's clone URL: `<base>/<owner>/<name>.git`.
pub fn clone_url(base: &str, owner: &str, name: &str) -> String {
    format!("{}/{owner}/{name}.git", base.trim_end_matches('/'))
}
