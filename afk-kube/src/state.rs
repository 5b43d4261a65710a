//! Where a turn's Job stands, from what the API shows of it and its pods.
//! Pure: the rule is written once, here, and table-tested.
//!
//! Kubernetes facts it relies on (sources in `docs/contracts/kubernetes.md`):
//! only the `Complete` and `Failed` conditions are final; `FailureTarget`
//! (and `SuccessCriteriaMet`) mean the Job is ending while its pods still
//! terminate; `DeadlineExceeded` is a `Failed` reason; a pod that cannot be
//! scheduled has `PodScheduled` `False` with reason `Unschedulable`; a
//! container that cannot start waits with a reason (`ImagePullBackOff`,
//! `ErrImagePull`, `CreateContainerConfigError`, …).

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;

/// Where a turn stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnState {
    /// Not final yet (starting, running, or ending with pods terminating).
    Running,
    /// The Job completed (its agent exited 0).
    Succeeded,
    /// The Job failed, in Kubernetes' own words (`DeadlineExceeded: …`).
    Failed(String),
    /// Its pod has not started within the start timeout, with Kubernetes'
    /// reason (`Unschedulable: 0/3 nodes are available…`).
    NeverStarted(String),
}

impl TurnState {
    /// Whether nothing of the turn runs any more, as far as afk is
    /// concerned.
    pub fn is_final(&self) -> bool {
        !matches!(self, TurnState::Running)
    }
}

fn condition_true<'a>(job: &'a Job, kind: &str) -> Option<(&'a str, &'a str)> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind && c.status == "True")
        .map(|c| {
            (
                c.reason.as_deref().unwrap_or(""),
                c.message.as_deref().unwrap_or(""),
            )
        })
}

fn words(reason: &str, message: &str) -> String {
    match (reason.trim(), message.trim()) {
        ("", "") => "no reason given".to_owned(),
        (r, "") => r.to_owned(),
        ("", m) => m.to_owned(),
        (r, m) => format!("{r}: {m}"),
    }
}

/// Why a pod has not started, when Kubernetes says.
fn why_not_started(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref().is_some_and(|p| p != "Pending") {
        return None;
    }
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        return Some(words(
            c.reason.as_deref().unwrap_or("Unschedulable"),
            c.message.as_deref().unwrap_or(""),
        ));
    }
    let waiting = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .find(|w| w.reason.as_deref() != Some("ContainerCreating"))?;
    Some(words(
        waiting.reason.as_deref().unwrap_or(""),
        waiting.message.as_deref().unwrap_or(""),
    ))
}

/// Whether a pod is being deleted and has not ended.
fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && !pod
            .status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed")
}

/// What the Job's own conditions decide: `Complete` or `Failed` (the only
/// final ones), else nothing.
pub fn job_verdict(job: &Job) -> Option<TurnState> {
    if condition_true(job, "Complete").is_some() {
        return Some(TurnState::Succeeded);
    }
    condition_true(job, "Failed").map(|(reason, message)| TurnState::Failed(words(reason, message)))
}

/// Where the turn stands. `pods` are the Job's pods (any number: a Job's
/// program may be started twice); `age_seconds` is how long ago the Job was
/// created; `start_timeout` is `AFK_K8S_START_TIMEOUT` in seconds.
pub fn turn_state(job: &Job, pods: &[&Pod], age_seconds: i64, start_timeout: i64) -> TurnState {
    // A pod still terminating may still be writing to the branch: whatever
    // the Job says, nothing new starts beside it (older API servers mark a
    // Job failed before its pods are gone).
    if pods.iter().any(|p| terminating(p)) {
        return TurnState::Running;
    }
    if let Some(verdict) = job_verdict(job) {
        return verdict;
    }
    if condition_true(job, "FailureTarget").is_some()
        || condition_true(job, "SuccessCriteriaMet").is_some()
    {
        return TurnState::Running;
    }
    let started = pods.iter().any(|p| {
        p.status
            .as_ref()
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|phase| phase != "Pending")
    });
    if !started && age_seconds >= start_timeout {
        let why = pods
            .iter()
            .find_map(|p| why_not_started(p))
            .unwrap_or_else(|| {
                if pods.is_empty() {
                    "no pod was created (a quota or an admission policy may refuse it; kubectl describe job shows why)".to_owned()
                } else {
                    "its pod is still pending".to_owned()
                }
            });
        return TurnState::NeverStarted(format!(
            "the agent's pod did not start within {start_timeout}s: {why}"
        ));
    }
    TurnState::Running
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn job(conditions: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "metadata": {"name": "j"},
            "status": {"conditions": conditions}
        }))
        .unwrap()
    }

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
    }

    fn cond(kind: &str, status: &str, reason: &str) -> serde_json::Value {
        json!({"type": kind, "status": status, "reason": reason, "message": "m"})
    }

    #[test]
    fn the_job_s_conditions_decide_first() {
        let running = pod(json!({"phase": "Running"}));
        let table = [
            (
                json!([
                    cond("SuccessCriteriaMet", "True", "CompletionsReached"),
                    cond("Complete", "True", "CompletionsReached")
                ]),
                TurnState::Succeeded,
            ),
            (
                json!([
                    cond("FailureTarget", "True", "DeadlineExceeded"),
                    cond("Failed", "True", "DeadlineExceeded")
                ]),
                TurnState::Failed("DeadlineExceeded: m".into()),
            ),
            (
                json!([cond("Failed", "True", "BackoffLimitExceeded")]),
                TurnState::Failed("BackoffLimitExceeded: m".into()),
            ),
            // Ending, pods still terminating: not final.
            (
                json!([cond("FailureTarget", "True", "BackoffLimitExceeded")]),
                TurnState::Running,
            ),
            (
                json!([cond("SuccessCriteriaMet", "True", "CompletionsReached")]),
                TurnState::Running,
            ),
            // A condition that is not true decides nothing.
            (
                json!([
                    cond("Failed", "False", "x"),
                    cond("Complete", "Unknown", "x")
                ]),
                TurnState::Running,
            ),
            (json!([]), TurnState::Running),
        ];
        for (conditions, want) in table {
            let j = job(conditions.clone());
            assert_eq!(
                turn_state(&j, &[&running], 10_000, 600),
                want,
                "{conditions}"
            );
        }
    }

    #[test]
    fn a_pod_that_never_starts_is_an_error_after_the_timeout_with_kubernetes_reason() {
        let j = job(json!([]));
        let unschedulable = pod(json!({"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available"}
        ]}));
        assert_eq!(
            turn_state(&j, &[&unschedulable], 599, 600),
            TurnState::Running
        );
        let TurnState::NeverStarted(why) = turn_state(&j, &[&unschedulable], 600, 600) else {
            panic!()
        };
        assert!(
            why.contains("Unschedulable: 0/3 nodes are available"),
            "{why}"
        );
        let pulling = pod(json!({"phase": "Pending", "containerStatuses": [
            {"name": "agent", "image": "a", "imageID": "", "ready": false, "restartCount": 0,
             "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}
        ]}));
        let TurnState::NeverStarted(why) = turn_state(&j, &[&pulling], 700, 600) else {
            panic!()
        };
        assert!(
            why.contains("ImagePullBackOff: Back-off pulling image"),
            "{why}"
        );
        let TurnState::NeverStarted(why) = turn_state(&j, &[], 700, 600) else {
            panic!()
        };
        assert!(why.contains("no pod was created"), "{why}");
    }

    #[test]
    fn a_pod_still_terminating_keeps_the_turn_running_whatever_the_job_says() {
        let failed = job(json!([cond("Failed", "True", "BackoffLimitExceeded")]));
        let mut going: Pod = pod(json!({"phase": "Running"}));
        going.metadata.deletion_timestamp = failed
            .metadata
            .creation_timestamp
            .clone()
            .or_else(|| serde_json::from_value(json!("2026-06-10T12:00:00Z")).ok());
        assert_eq!(turn_state(&failed, &[&going], 10, 600), TurnState::Running);
        let mut gone = going.clone();
        gone.status = Some(serde_json::from_value(json!({"phase": "Failed"})).unwrap());
        assert!(matches!(
            turn_state(&failed, &[&gone], 10, 600),
            TurnState::Failed(_)
        ));
    }

    #[test]
    fn a_second_pod_that_runs_means_the_turn_started() {
        let j = job(json!([]));
        let pending = pod(json!({"phase": "Pending"}));
        let running = pod(json!({"phase": "Running"}));
        assert_eq!(
            turn_state(&j, &[&pending, &running], 10_000, 600),
            TurnState::Running
        );
        assert!(matches!(
            turn_state(&j, &[&pending], 10_000, 600),
            TurnState::NeverStarted(_)
        ));
    }
}
