//! The T3 Code executor, over its orchestration HTTP API (v0.0.27; facts in
//! `docs/contracts/t3.md`).
//!
//! This file is long because every command of the v0.0.27 contract, its
//! deterministic ids and the liveness rule are one adapter; about a third of
//! it is unit tests of those rules.
//!
//! Two routes: `GET /api/orchestration/snapshot` and
//! `POST /api/orchestration/dispatch` (one bare command keyed by `type`).
//! Every id afk sends is deterministic (UUID v5): the project from the
//! repository, the thread from (repository, issue, attempt), and each
//! `commandId` / `messageId` from (thread, step). T3 deduplicates commands by
//! `commandId`, so a retried or re-run dispatch is harmless, and a fresh
//! `commandId` is never minted for a step that may already have been accepted.
//!
//! Liveness is not `latestTurn.state` alone: [`liveness`] combines the
//! session, the latest turn and the activities since afk's own turn.
//!
//! The wire structs here are private; nothing outside this module sees T3's
//! spelling of anything.

use std::collections::{BTreeMap, BTreeSet};

use afk_core::ports::{ExecutorSnapshot, PortError, PortResult, ThreadSpec, WatchedThread};
use afk_core::{ThreadStatus, Timestamp};
use afk_loop::ports::Executor;
use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::http::{Http, Secret, body_excerpt};

mod stream;

/// The fixed namespace of every id afk derives. Changing it would orphan
/// every thread in flight, so it never changes.
const NAMESPACE: Uuid = Uuid::from_u128(0x5b0e_7c1a_2f4d_4e8b_9a61_3c7d_0e2f_a4b9);

/// How afk reaches a T3 server.
#[derive(Debug, Clone)]
pub struct T3Settings {
    /// Server base URL, e.g. `http://t3:3773`.
    pub base_url: String,
    /// Base for thread links a human opens (defaults to `base_url`).
    pub web_url: String,
    /// Bearer token with `orchestration:read` and `orchestration:operate`.
    pub token: Secret,
    /// Model for new threads (`claude-sonnet-4-6`).
    pub model: String,
    /// Provider instance for new threads (`claudeAgent`).
    pub instance: String,
    /// Checkouts live at `<workspace_base>/<owner>__<name>`.
    pub workspace_base: String,
    /// Owner for bare repository names.
    pub default_owner: Option<String>,
}

/// The T3 executor.
#[derive(Debug, Clone)]
pub struct T3Executor {
    http: Http,
    settings: T3Settings,
}

/// `owner/name`, lower-case; a bare name takes the default owner when one is
/// configured.
pub fn canonical_repo(repo: &str, default_owner: Option<&str>) -> String {
    let repo = repo.trim();
    match (repo.contains('/'), default_owner) {
        (false, Some(owner)) if !owner.trim().is_empty() => {
            format!("{}/{}", owner.trim(), repo).to_ascii_lowercase()
        }
        _ => repo.to_ascii_lowercase(),
    }
}

fn v5(name: &str) -> String {
    Uuid::new_v5(&NAMESPACE, name.as_bytes()).to_string()
}

/// The project id for a repository.
pub fn project_id(canonical: &str) -> String {
    v5(&format!("project:{canonical}"))
}

/// The thread id for (repository, issue, attempt).
pub fn thread_id(canonical: &str, issue: u64, attempt: u32) -> String {
    v5(&format!("thread:{canonical}#{issue}/{attempt}"))
}

/// The `commandId` of one step of one subject (a project or thread id).
pub fn command_id(subject: &str, step: &str) -> String {
    v5(&format!("command:{subject}:{step}"))
}

/// The `messageId` of turn `step` of a thread.
pub fn message_id(thread: &str, step: u32) -> String {
    v5(&format!("message:{thread}:{step}"))
}

// ---- wire shapes (private) -------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireProject {
    id: String,
    workspace_root: String,
    #[serde(default)]
    deleted_at: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireThread {
    id: String,
    project_id: String,
    #[serde(default)]
    latest_turn: Option<WireTurn>,
    #[serde(default)]
    session: Option<WireSession>,
    #[serde(default)]
    activities: Vec<WireActivity>,
    #[serde(default)]
    messages: Vec<WireMessage>,
    #[serde(default)]
    deleted_at: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireTurn {
    state: String,
    #[serde(default)]
    requested_at: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireSession {
    status: String,
    #[serde(default)]
    active_turn_id: Option<String>,
    /// Whether it holds an error, not the error: skipped as it is read.
    #[serde(default)]
    last_error: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    updated_at: Option<String>,
}

/// An activity, reduced as it is read: its payload keeps only the request
/// id the liveness rule pairs requests and resolutions by. Whatever else a
/// payload holds (a tool's whole output, at any depth) is skipped by the
/// parser without being built, so a snapshot's memory does not grow with
/// what afk does not keep.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireActivity {
    kind: String,
    #[serde(default)]
    payload: WirePayload,
    #[serde(default)]
    created_at: Option<String>,
}

/// The part of an activity's payload afk reads.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WirePayload {
    #[serde(default)]
    request_id: RequestId,
}

/// A request id: a string or a number as T3 sends it; anything else reads
/// as none, skipped without being built.
#[derive(Default, PartialEq, Eq)]
struct RequestId(Option<String>);

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Id;
        impl<'de> serde::de::Visitor<'de> for Id {
            type Value = RequestId;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a request id")
            }
            fn visit_str<E>(self, v: &str) -> Result<RequestId, E> {
                Ok(RequestId(Some(v.to_owned())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<RequestId, E> {
                Ok(RequestId(Some(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<RequestId, E> {
                Ok(RequestId(Some(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<RequestId, E> {
                Ok(RequestId(Some(v.to_string())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<RequestId, E> {
                Ok(RequestId(Some(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<RequestId, E> {
                Ok(RequestId(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<RequestId, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(RequestId(None))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RequestId, A::Error> {
                while map
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(RequestId(None))
            }
        }
        d.deserialize_any(Id)
    }
}

#[derive(Deserialize)]
struct WireMessage {
    id: String,
}

// ---- liveness ----------------------------------------------------------------

fn at_or_after(time: Option<&str>, since: Option<Timestamp>) -> bool {
    match since {
        None => true,
        // An unreadable time (T3 does not validate them) is not evidence of
        // anything that happened after our turn.
        Some(t) => time
            .and_then(|s| Timestamp::parse_rfc3339(s).ok())
            .is_some_and(|x| x >= t),
    }
}

fn strictly_after(time: Option<&str>, since: Timestamp) -> bool {
    time.and_then(|s| Timestamp::parse_rfc3339(s).ok())
        .is_some_and(|x| x > since)
}

fn pending_requests(activities: &[WireActivity]) -> bool {
    let mut open: BTreeSet<(String, String)> = BTreeSet::new();
    for a in activities {
        let request = a.payload.request_id.0.clone().unwrap_or_default();
        match a.kind.as_str() {
            "user-input.requested" => {
                open.insert(("user-input".into(), request));
            }
            "approval.requested" => {
                open.insert(("approval".into(), request));
            }
            "user-input.resolved" => {
                open.remove(&("user-input".to_owned(), request));
            }
            "approval.resolved" => {
                open.remove(&("approval".to_owned(), request));
            }
            _ => {}
        }
    }
    !open.is_empty()
}

/// The liveness of a thread, by the combined rule of `docs/contracts/t3.md`
/// (Liveness), given the time afk last sent it a turn (`None` when
/// unknown). `None` means "no status yet": an unknown value never triggers
/// an action.
fn liveness(thread: &WireThread, since: Option<Timestamp>) -> Option<ThreadStatus> {
    if pending_requests(&thread.activities) {
        return Some(ThreadStatus::NeedsInput);
    }
    let session = thread.session.as_ref();
    let session_after = session.is_some_and(|s| at_or_after(s.updated_at.as_deref(), since));
    let turn_after = thread
        .latest_turn
        .as_ref()
        .is_some_and(|t| at_or_after(t.requested_at.as_deref(), since));
    let failed_after = thread.activities.iter().any(|a| {
        matches!(
            a.kind.as_str(),
            "provider.turn.start.failed" | "runtime.error"
        ) && at_or_after(a.created_at.as_deref(), since)
    });
    let errored = failed_after
        || (session.is_some_and(|s| s.status == "error") && session_after)
        || (thread
            .latest_turn
            .as_ref()
            .is_some_and(|t| t.state == "error")
            && turn_after)
        || (session.is_some_and(|s| s.last_error.is_some()) && session_after && since.is_some());
    if errored {
        return Some(ThreadStatus::Error);
    }
    let settled = |s: &WireSession| {
        matches!(
            s.status.as_str(),
            "ready" | "idle" | "stopped" | "interrupted"
        )
    };
    let running = session.is_some_and(|s| matches!(s.status.as_str(), "starting" | "running"))
        || thread.latest_turn.as_ref().is_some_and(|t| t.state == "running")
        // The pending gap: our turn was accepted but nothing has reported on
        // it yet. A session that settled in the same instant the turn was
        // sent settled on the previous turn: only a later one counts.
        || since.is_some_and(|t| {
            !turn_after && !session.is_some_and(|s| settled(s) && strictly_after(s.updated_at.as_deref(), t))
        });
    if running {
        return Some(ThreadStatus::Running);
    }
    if session.is_some_and(|s| settled(s) && s.active_turn_id.is_none()) {
        return Some(ThreadStatus::Idle);
    }
    None
}

// ---- the adapter -------------------------------------------------------------

impl T3Executor {
    /// An executor using `http` (shared with the other adapters).
    pub fn new(http: Http, settings: T3Settings) -> Self {
        T3Executor { http, settings }
    }

    fn canonical(&self, repo: &str) -> String {
        canonical_repo(repo, self.settings.default_owner.as_deref())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base_url.trim_end_matches('/'))
    }

    fn bearer(&self) -> PortResult<String> {
        match self.settings.token.read()? {
            Some(token) => Ok(format!("Bearer {token}")),
            None => Err(PortError::Auth {
                message: "no T3 token configured (AFK_T3_TOKEN or AFK_T3_TOKEN_FILE)".into(),
            }),
        }
    }

    /// Where the checkout of `canonical` lives on the T3 host.
    fn workspace_root(&self, canonical: &str) -> String {
        format!(
            "{}/{}",
            self.settings.workspace_base.trim_end_matches('/'),
            canonical.replace('/', "__")
        )
    }

    /// The snapshot, parsed as it arrives (`stream.rs`); `since` is the
    /// time of afk's latest turn to each watched thread.
    async fn read_snapshot(
        &self,
        since: &BTreeMap<String, Timestamp>,
    ) -> PortResult<ExecutorSnapshot> {
        self.http
            .retrying(|| async {
                let request = self
                    .http
                    .client()
                    .get(self.url("/api/orchestration/snapshot"))
                    .header("Authorization", self.bearer()?);
                let response = self.http.send(request).await?;
                let status = response.status();
                if status.is_success() {
                    return stream::parse(response, since.clone()).await;
                }
                Err(classify(
                    status.as_u16(),
                    &body_excerpt(response, 500).await,
                    "snapshot",
                ))
            })
            .await
    }

    /// Sends one command. Every command afk sends has a deterministic
    /// `commandId`, so it is retried with the same id on transient failures.
    async fn dispatch(&self, command: &Value) -> PortResult<u64> {
        let kind = command["type"].as_str().unwrap_or("command").to_owned();
        let result = self
            .http
            .retrying(|| async {
                let request = self
                    .http
                    .client()
                    .post(self.url("/api/orchestration/dispatch"))
                    .header("Authorization", self.bearer()?)
                    .json(command);
                let response = self.http.send(request).await?;
                let status = response.status();
                if status.is_success() {
                    let body: Value =
                        response
                            .json()
                            .await
                            .map_err(|e| PortError::ContractViolation {
                                message: format!(
                                    "T3 answered {kind} with a body that is not JSON: {e}"
                                ),
                            })?;
                    return body["sequence"]
                        .as_u64()
                        .ok_or_else(|| PortError::ContractViolation {
                            message: format!("T3 answered {kind} without a sequence: {body}"),
                        });
                }
                Err(classify(
                    status.as_u16(),
                    &body_excerpt(response, 500).await,
                    &kind,
                ))
            })
            .await;
        match result {
            // Still failing after the retries: a 500 is either a rejected
            // invariant (sticky) or a lasting storage fault; both need a human.
            Err(PortError::Transient { message })
                if message.contains("orchestration_dispatch_failed") =>
            {
                Err(PortError::Permanent {
                    message: format!(
                        "{message}; still failing after retries with the same commandId: a rejected \
                         invariant (e.g. the id already exists) or a storage fault, see the T3 server log"
                    ),
                })
            }
            other => other,
        }
    }

    async fn start_turn(
        &self,
        thread: &str,
        step: u32,
        text: &str,
        created_at: Timestamp,
    ) -> PortResult<()> {
        let command = json!({
            "type": "thread.turn.start",
            "commandId": command_id(thread, &format!("turn:{step}")),
            "threadId": thread,
            "message": {
                "messageId": message_id(thread, step),
                "role": "user",
                "text": text,
                "attachments": [],
            },
            // Required by the client variant, though T3 takes both from the
            // thread (set on thread.create).
            "runtimeMode": "full-access",
            "interactionMode": "default",
            "createdAt": t3_time(created_at),
        });
        self.dispatch(&command).await.map(|_| ())
    }
}

/// T3 stores `createdAt` unvalidated; send RFC 3339 UTC with milliseconds, as
/// its own clients do.
fn t3_time(t: Timestamp) -> String {
    let text = t.to_rfc3339();
    match text.strip_suffix('Z') {
        Some(base) if !base.contains('.') => format!("{base}.000Z"),
        _ => text,
    }
}

/// Maps a non-2xx T3 answer to a port error (`docs/contracts/t3.md`,
/// Answers and errors).
fn classify(status: u16, body: &str, what: &str) -> PortError {
    let parsed: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let field = |k: &str| {
        parsed
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    match status {
        400 if body.trim().is_empty() => PortError::ContractViolation {
            message: format!(
                "T3 rejected the shape of {what} (400 with an empty body): a bug in afk or a T3 version mismatch"
            ),
        },
        400 => PortError::Permanent {
            message: format!(
                "T3 refused {what} (400 {} {}): {}",
                field("code"),
                field("reason"),
                field("traceId")
            ),
        },
        401 => PortError::Auth {
            message: format!(
                "T3 did not accept the token for {what} (401 {})",
                field("reason")
            ),
        },
        403 => PortError::Auth {
            message: format!(
                "the T3 token lacks scope {} for {what} (403)",
                field("requiredScope")
            ),
        },
        404 => PortError::NotFound {
            what: format!("the T3 route for {what}"),
        },
        429 => PortError::RateLimited { retry_after: None },
        500..=599 => PortError::Transient {
            message: format!(
                "T3 failed {what} ({status} {} {}, traceId {})",
                field("code"),
                field("reason"),
                field("traceId")
            ),
        },
        _ => PortError::Permanent {
            message: format!("T3 answered {what} with HTTP {status}"),
        },
    }
}

#[async_trait]
impl Executor for T3Executor {
    fn thread_id(&self, repo: &str, issue: u64, attempt: u32) -> String {
        thread_id(&self.canonical(repo), issue, attempt)
    }

    async fn snapshot(&self, watched: &[WatchedThread]) -> PortResult<ExecutorSnapshot> {
        let since: BTreeMap<String, Timestamp> = watched
            .iter()
            .map(|w| (w.thread_id.clone(), w.turn_sent_at))
            .collect();
        self.read_snapshot(&since).await
    }

    async fn ensure_thread(
        &self,
        snapshot: &ExecutorSnapshot,
        spec: &ThreadSpec,
    ) -> PortResult<String> {
        let canonical = self.canonical(&spec.repo);
        let workspace_root = self.workspace_root(&canonical);
        let own_project = project_id(&canonical);
        // The server may have made a project for the checkout itself: use it.
        let project = snapshot
            .projects
            .iter()
            .filter(|p| !p.deleted)
            .find(|p| p.id == own_project)
            .or_else(|| {
                snapshot
                    .projects
                    .iter()
                    .filter(|p| !p.deleted)
                    .find(|p| p.workspace_root.trim_end_matches('/') == workspace_root)
            })
            .map(|p| p.id.clone());
        let project = match project {
            Some(id) => id,
            None => {
                self.dispatch(&json!({
                    "type": "project.create",
                    "commandId": command_id(&own_project, "project.create"),
                    "projectId": own_project,
                    "title": canonical,
                    "workspaceRoot": workspace_root,
                    "createWorkspaceRootIfMissing": true,
                    "createdAt": t3_time(spec.created_at),
                }))
                .await?;
                own_project
            }
        };

        let thread = thread_id(&canonical, spec.issue, spec.attempt);
        match snapshot.threads.get(&thread) {
            Some(existing) if existing.deleted => {
                return Err(PortError::Permanent {
                    message: format!(
                        "thread {thread} for {canonical}#{} attempt {} was deleted; its id can never be reused",
                        spec.issue, spec.attempt
                    ),
                });
            }
            Some(existing) if existing.message_ids.contains(&message_id(&thread, 0)) => {
                // Created and its opening turn already accepted.
                return Ok(thread);
            }
            Some(_) => {}
            None => {
                self.dispatch(&json!({
                    "type": "thread.create",
                    "commandId": command_id(&thread, "thread.create"),
                    "threadId": thread,
                    "projectId": project,
                    "title": spec.title,
                    "modelSelection": {"instanceId": self.settings.instance, "model": self.settings.model},
                    "runtimeMode": "full-access",
                    "interactionMode": "default",
                    "branch": Value::Null,
                    "worktreePath": Value::Null,
                    "createdAt": t3_time(spec.created_at),
                }))
                .await?;
            }
        }
        // Sent again with the same commandId when the snapshot cannot show
        // whether it was accepted: T3 answers a known commandId with the
        // original sequence and starts nothing.
        self.start_turn(&thread, 0, &spec.prompt, spec.created_at)
            .await?;
        Ok(thread)
    }

    async fn send_turn(
        &self,
        snapshot: &ExecutorSnapshot,
        thread_id: &str,
        step: u32,
        text: &str,
        created_at: Timestamp,
    ) -> PortResult<()> {
        if !snapshot.is_live(thread_id) {
            return Err(PortError::NotFound {
                what: format!("T3 thread {thread_id}"),
            });
        }
        let thread = snapshot.threads.get(thread_id);
        if thread.is_some_and(|t| t.message_ids.contains(&message_id(thread_id, step))) {
            return Ok(());
        }
        self.start_turn(thread_id, step, text, created_at).await
    }

    async fn stop_thread(
        &self,
        snapshot: &ExecutorSnapshot,
        thread_id: &str,
        at: Timestamp,
    ) -> PortResult<()> {
        // A deleted or unknown thread runs nothing, and a command to it would
        // fail T3's invariant (a sticky 500): nothing to send.
        if !snapshot.is_live(thread_id) {
            return Ok(());
        }
        // `docs/contracts/t3.md`, Interrupting and stopping: interrupts go
        // by session, so no turnId is needed; with no live session T3 still
        // answers 200 and records an activity.
        // Fixed commandIds make a re-run a receipt lookup, never a second
        // interrupt of a later turn.
        for (kind, step) in [
            ("thread.turn.interrupt", "stop:interrupt"),
            ("thread.session.stop", "stop:session"),
        ] {
            let command = json!({
                "type": kind,
                "commandId": command_id(thread_id, step),
                "threadId": thread_id,
                "createdAt": t3_time(at),
            });
            self.dispatch(&command).await?;
        }
        Ok(())
    }

    fn thread_link(&self, thread_id: &str) -> Option<String> {
        Some(format!(
            "{}/{thread_id}",
            self.settings.web_url.trim_end_matches('/')
        ))
    }

    fn api_calls(&self) -> u64 {
        self.http.calls()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn thread(json: Value) -> WireThread {
        let mut base = json!({"id": "t", "projectId": "p"});
        if let (Some(b), Some(extra)) = (base.as_object_mut(), json.as_object()) {
            for (k, v) in extra {
                b.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(base).unwrap()
    }

    #[track_caller]
    fn check(t: Value, since: Option<&str>, expected: Option<ThreadStatus>) {
        assert_eq!(liveness(&thread(t.clone()), since.map(ts)), expected, "{t}");
    }

    const T: &str = "2026-06-10T12:02:00.000Z";

    #[test]
    fn liveness_combines_session_turn_and_activities() {
        use ThreadStatus::*;
        // Nothing known, nothing sent: no status yet.
        check(json!({}), None, None);
        // The pending gap after our turn: running.
        check(json!({}), Some(T), Some(Running));
        check(
            json!({"latestTurn": {"state": "completed", "requestedAt": "2026-06-10T11:00:00Z"},
                   "session": {"status": "ready", "activeTurnId": null, "updatedAt": "2026-06-10T11:00:05Z"}}),
            Some(T),
            Some(Running),
        );
        // The previous turn settled in the very instant ours was sent: ours
        // has not reported yet.
        check(
            json!({"latestTurn": {"state": "completed", "requestedAt": "2026-06-10T11:00:00Z"},
                   "session": {"status": "ready", "activeTurnId": null, "updatedAt": T}}),
            Some(T),
            Some(Running),
        );
        // A finished turn after ours: idle.
        check(
            json!({"latestTurn": {"state": "completed", "requestedAt": T},
                   "session": {"status": "ready", "activeTurnId": null, "updatedAt": "2026-06-10T12:06:41Z"}}),
            Some(T),
            Some(Idle),
        );
        // Non-git workspace on v0.0.27: latestTurn cleared, session settled after T.
        check(
            json!({"latestTurn": null, "session": {"status": "ready", "activeTurnId": null, "updatedAt": "2026-06-10T12:06:41Z"}}),
            Some(T),
            Some(Idle),
        );
        // Session running, or the turn running.
        check(
            json!({"session": {"status": "running", "activeTurnId": "x", "updatedAt": T}}),
            Some(T),
            Some(Running),
        );
        check(
            json!({"session": {"status": "starting", "updatedAt": T}}),
            None,
            Some(Running),
        );
        check(
            json!({"latestTurn": {"state": "running", "requestedAt": T}}),
            Some(T),
            Some(Running),
        );
        // Turn start failed: session stays ready with lastError, activity says error.
        check(
            json!({"activities": [{"kind": "provider.turn.start.failed", "payload": {"detail": "no provider"}, "createdAt": T}],
                   "session": null, "latestTurn": null}),
            Some(T),
            Some(Error),
        );
        // ...but an old failure before our turn is not an error now.
        check(
            json!({"activities": [{"kind": "provider.turn.start.failed", "payload": {}, "createdAt": "2026-06-10T11:00:00Z"}]}),
            Some(T),
            Some(Running),
        );
        check(
            json!({"session": {"status": "error", "updatedAt": T}}),
            Some(T),
            Some(Error),
        );
        check(
            json!({"latestTurn": {"state": "error", "requestedAt": T}}),
            Some(T),
            Some(Error),
        );
        check(
            json!({"session": {"status": "ready", "activeTurnId": null, "lastError": "boom", "updatedAt": "2026-06-10T12:03:00Z"}}),
            Some(T),
            Some(Error),
        );
        check(
            json!({"activities": [{"kind": "runtime.error", "payload": {}, "createdAt": "2026-06-10T12:05:00Z"}]}),
            Some(T),
            Some(Error),
        );
        // Unresolved requests: needs input; resolved: not.
        check(
            json!({"session": {"status": "running", "activeTurnId": "x", "updatedAt": T},
                   "activities": [{"kind": "user-input.requested", "payload": {"requestId": "r1"}, "createdAt": T}]}),
            Some(T),
            Some(NeedsInput),
        );
        check(
            json!({"session": {"status": "ready", "activeTurnId": null, "updatedAt": "2026-06-10T12:09:00Z"},
                   "latestTurn": {"state": "completed", "requestedAt": T},
                   "activities": [{"kind": "approval.requested", "payload": {"requestId": "0"}, "createdAt": T},
                                  {"kind": "approval.resolved", "payload": {"requestId": "0"}, "createdAt": T}]}),
            Some(T),
            Some(Idle),
        );
        // Interrupted and stopped sessions settle to idle.
        check(
            json!({"session": {"status": "interrupted", "activeTurnId": null, "updatedAt": "2026-06-10T12:09:00Z"}, "latestTurn": {"state": "interrupted", "requestedAt": T}}),
            Some(T),
            Some(Idle),
        );
        // An unknown session status is no status, never an action.
        check(
            json!({"session": {"status": "hibernating", "activeTurnId": null, "updatedAt": T}, "latestTurn": {"state": "completed", "requestedAt": T}}),
            Some(T),
            None,
        );
    }

    /// A tool's whole output in an activity's payload (MiBs, nested in
    /// objects and arrays at any depth, beside the request id or instead
    /// of it) is read past, and the requests still pair; a request id that
    /// is not a string or a number is no id, never an error.
    #[test]
    fn payloads_are_read_past_at_any_depth_and_requests_still_pair() {
        let big = "x".repeat(3 << 20);
        let deep =
            format!(r#"{{"a":[{{"b":[[{{"c":"{big}","d":[1,2.5,-3,true,null,{{}}]}}]]}}]}}"#);
        let activity = |kind: &str, payload: String| {
            format!(r#"{{"kind":"{kind}","payload":{payload},"createdAt":"{T}"}}"#)
        };
        let parse = |activities: &[String]| -> WireThread {
            let text = format!(
                r#"{{"id":"t","projectId":"p","session":{{"status":"running","activeTurnId":"x","updatedAt":"{T}"}},"activities":[{}]}}"#,
                activities.join(",")
            );
            serde_json::from_str(&text).unwrap()
        };
        let asked = activity(
            "user-input.requested",
            format!(r#"{{"output":{deep},"requestId":"r1","more":{deep}}}"#),
        );
        let answered = activity(
            "user-input.resolved",
            format!(r#"{{"answers":{deep},"requestId":"r1"}}"#),
        );
        let tool = activity("tool.completed", format!(r#"{{"requestId":{deep}}}"#));
        let since = Some(ts(T));
        assert_eq!(
            liveness(&parse(&[asked.clone(), tool.clone()]), since),
            Some(ThreadStatus::NeedsInput)
        );
        assert_eq!(
            liveness(&parse(&[asked, tool, answered]), since),
            Some(ThreadStatus::Running)
        );
        // An id that is an object or a list names no request.
        let odd = parse(&[activity(
            "approval.requested",
            format!(r#"{{"requestId":[{deep}]}}"#),
        )]);
        assert!(odd.activities[0].payload.request_id == RequestId(None));
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let a = thread_id("acme/infra", 7, 0);
        assert_eq!(a, thread_id("acme/infra", 7, 0));
        assert_ne!(a, thread_id("acme/infra", 7, 1));
        assert_ne!(a, thread_id("acme/infra", 8, 0));
        assert_ne!(command_id(&a, "thread.create"), command_id(&a, "turn:0"));
        assert_ne!(message_id(&a, 0), message_id(&a, 1));
        assert_eq!(canonical_repo("Infra", Some("Acme")), "acme/infra");
        assert_eq!(canonical_repo("acme/Infra", Some("other")), "acme/infra");
        assert_eq!(canonical_repo("infra", None), "infra");
        // Pinned: a change here would orphan every run in flight.
        insta::assert_snapshot!(thread_id("acme/infra", 7, 0), @"3929ff34-7f04-5cbb-9cc5-0665d764c747");
    }

    #[test]
    fn times_carry_milliseconds() {
        assert_eq!(
            t3_time(ts("2026-06-10T12:00:00Z")),
            "2026-06-10T12:00:00.000Z"
        );
    }
}
