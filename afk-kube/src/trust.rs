//! What afk believes of what it reads back from the cluster. Anyone with
//! write access to the agents' namespace can edit a Job's labels and
//! annotations, or create a Job with afk's labels; nobody can change a
//! Job's name, its pod template's containers once created, or its status
//! (the Job controller's, behind another permission). So a Job is one of
//! a thread's turns only when its name and its agent's environment say so
//! and derive the thread's id; a recorded end is believed only when
//! Kubernetes' own status agrees; a thread's cost never drops below what
//! afk wrote, before each turn, into that turn's pod template. Pure: no
//! I/O. What an attacker with namespace write can still do is in
//! `docs/operations.md` ("Who can do what").

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;

use crate::Outcome;
use crate::job::{self, TurnSpec};
use crate::state::{self, TurnState};

/// What afk made a turn's Job for, read back from what nobody can change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `owner/name`, as afk wrote it.
    pub repo: String,
    /// The issue's number.
    pub issue: u64,
    /// The thread's attempt.
    pub attempt: u32,
    /// The branch the turn started from.
    pub branch: String,
}

fn label<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// A Job's annotation `key`, if any.
pub(crate) fn annotation<'a>(job: &'a Job, key: &str) -> Option<&'a str> {
    job.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// A Job's name (empty when it has none).
pub(crate) fn name_of(job: &Job) -> &str {
    job.metadata.name.as_deref().unwrap_or("")
}

/// A value someone else may have written, as an error shows it: quoted,
/// and cut short.
fn shown(text: &str) -> String {
    let cut: String = text.chars().take(80).collect();
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// The attempt in a name afk gives (`…-<issue>-<attempt>-<step>-<thread>`).
fn attempt_in_name(name: &str) -> Option<u32> {
    name.rsplit('-').nth(2)?.parse().ok()
}

/// Which of `thread`'s turns `job` is, and what afk made it for, read from
/// the Job's name and its agent's environment, and checked against the
/// thread's id (`thread_id` of the repository, issue and attempt: no other
/// repository gives it). `Err` says why the Job is none of the thread's
/// turns.
///
/// # Errors
/// Why, in words.
pub fn origin(
    job: &Job,
    thread: &str,
    thread_id: impl Fn(&str, u64, u32) -> String,
) -> Result<(u32, Origin), String> {
    let env = |key: &str| {
        job::agent_env(job, key).ok_or_else(|| format!("its agent's environment has no {key}"))
    };
    let number = |key: &str| {
        env(key)?
            .parse::<u64>()
            .map_err(|_| format!("its {key} is not a number"))
    };
    let step = u32::try_from(number("AFK_TURN")?).map_err(|_| "AFK_TURN is too large")?;
    let issue = number("AFK_ISSUE")?;
    let repo = env("AFK_REPO")?;
    let attempt = attempt_in_name(name_of(job)).ok_or("its name is not one afk gives")?;
    if env("AFK_THREAD_ID")? != thread || thread_id(repo, issue, attempt) != thread {
        return Err(format!(
            "it was made for {}#{issue} (attempt {attempt}), not for this thread",
            shown(repo)
        ));
    }
    let origin = Origin {
        repo: repo.to_owned(),
        issue,
        attempt,
        branch: env("AFK_BRANCH")?.to_owned(),
    };
    let expected = job::job_name(&turn(thread, step, &origin));
    if name_of(job) != expected {
        return Err(format!("afk names turn {step} {expected}"));
    }
    Ok((step, origin))
}

fn turn(thread: &str, step: u32, origin: &Origin) -> TurnSpec {
    TurnSpec {
        thread: thread.to_owned(),
        repo: origin.repo.clone(),
        issue: origin.issue,
        attempt: origin.attempt,
        step,
        branch: origin.branch.clone(),
        clone_url: String::new(),
        prompt: String::new(),
        agent_argv: Vec::new(),
        push_token: false,
    }
}

/// What was changed on a turn's Job since afk made it, among what people
/// and selectors read (its labels, the repository and branch
/// annotations); `None` when nothing.
pub fn edited(job: &Job, thread: &str, step: u32, origin: &Origin) -> Option<String> {
    for (key, want) in job::labels(&turn(thread, step, origin)) {
        let found = label(job, &key);
        if found != Some(want.as_str()) {
            return Some(format!(
                "its {key} label says {}, afk wrote {want:?}",
                found.map_or_else(|| "nothing".to_owned(), shown)
            ));
        }
    }
    for (key, want) in [(job::REPO, &origin.repo), (job::BRANCH, &origin.branch)] {
        let found = annotation(job, key);
        if found != Some(want.as_str()) {
            return Some(format!(
                "its {key} annotation says {}, afk wrote {want:?}",
                found.map_or_else(|| "nothing".to_owned(), shown)
            ));
        }
    }
    None
}

/// The outcome written on the Job, whoever wrote it.
pub fn recorded_outcome(job: &Job) -> Option<Outcome> {
    serde_json::from_str(annotation(job, job::OUTCOME)?).ok()
}

fn suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

/// The outcome recorded on the Job, when Kubernetes' status of the Job
/// (which a patch of the Job cannot change) agrees: a success only on a
/// Job that completed; on a Job that has not ended, only the failure afk
/// records as it suspends a turn that never started. Anything else
/// (unreadable, or not what afk wrote) counts as not recorded, and is
/// read again.
pub fn outcome_of(job: &Job) -> Option<Outcome> {
    let outcome = recorded_outcome(job)?;
    let agrees = match state::job_verdict(job) {
        Some(TurnState::Succeeded) => true,
        Some(_) => !outcome.ok,
        None => !outcome.ok && suspended(job),
    };
    agrees.then_some(outcome)
}

/// A thread's Jobs, sorted out.
#[derive(Debug, Default)]
pub struct ThreadJobs {
    /// Its turns, by step: the Job and what afk made it for.
    pub turns: BTreeMap<u32, (Job, Origin)>,
    /// Every Job labelled as the thread's that is none of its turns, or
    /// was edited since afk made it: `Job <name>: <why>`.
    pub distrusted: Vec<String>,
}

impl ThreadJobs {
    /// Sorts out the Jobs labelled as `thread`'s.
    pub fn sort(
        thread: &str,
        jobs: impl IntoIterator<Item = Job>,
        thread_id: impl Fn(&str, u64, u32) -> String,
    ) -> ThreadJobs {
        let mut sorted = ThreadJobs::default();
        for job in jobs {
            match origin(&job, thread, &thread_id) {
                Ok((step, origin)) => {
                    if let Some(why) = edited(&job, thread, step, &origin) {
                        sorted
                            .distrusted
                            .push(format!("Job {}: {why}", name_of(&job)));
                    }
                    sorted.turns.insert(step, (job, origin));
                }
                Err(why) => sorted.distrusted.push(format!(
                    "Job {} is labelled as its turn and is not one afk made: {why}",
                    name_of(&job)
                )),
            }
        }
        sorted
    }

    /// The newest turn.
    pub fn latest(&self) -> Option<&(Job, Origin)> {
        self.turns.values().next_back()
    }

    /// Why afk builds nothing more on the thread, when it distrusts any
    /// of its Jobs.
    pub fn distrust(&self, thread: &str) -> Option<String> {
        (!self.distrusted.is_empty()).then(|| {
            format!(
                "afk does not trust thread {thread}'s Jobs, and starts no turn on them (someone with write access to the namespace made or changed them): {}",
                self.distrusted.join("; ")
            )
        })
    }

    /// What the turns before `step` cost, as [`thread_cost`] says.
    pub fn cost_before(&self, step: u32) -> Option<u64> {
        let turns: Vec<_> = self
            .turns
            .range(..step)
            .map(|(_, (job, _))| {
                (
                    job::cost_before(job),
                    outcome_of(job).and_then(|o| o.cost_micro_usd),
                )
            })
            .collect();
        thread_cost(&turns)
    }
}

/// What a thread cost, in millionths of a dollar, from its turns in step
/// order, each `(cost before it, its own cost)`: the cost afk wrote into a
/// turn's pod template before it started ([`job::COST_BEFORE`]) plus what
/// that turn and the later ones recorded, the most of these. An outcome
/// edited lower on an earlier Job does not lower it; a later turn's
/// record cannot raise an earlier one's. `None` when nothing was reported.
pub fn thread_cost(turns: &[(Option<u64>, Option<u64>)]) -> Option<u64> {
    let mut most: Option<u64> = None;
    let mut since: Option<u64> = None;
    for (before, own) in turns.iter().rev() {
        if let Some(own) = own {
            since = Some(since.unwrap_or(0).saturating_add(*own));
        }
        let here = match (before.filter(|b| *b > 0), since) {
            (None, None) => None,
            (b, s) => Some(b.unwrap_or(0).saturating_add(s.unwrap_or(0))),
        };
        most = most.max(here);
    }
    most
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn check(turns: &[(Option<u64>, Option<u64>)], want: Option<u64>) {
        assert_eq!(thread_cost(turns), want, "{turns:?}");
    }

    #[test]
    fn a_thread_costs_what_its_turns_cost_and_never_less_than_afk_wrote() {
        check(&[], None);
        check(&[(None, None)], None);
        check(&[(None, Some(5))], Some(5));
        check(&[(None, Some(5)), (Some(5), Some(2))], Some(7));
        // The first turn's outcome edited down (or away): the second turn's
        // pod template still says it cost 5.
        check(&[(None, Some(0)), (Some(5), Some(2))], Some(7));
        check(&[(None, None), (Some(5), Some(2))], Some(7));
        check(&[(None, None), (Some(5), None)], Some(5));
        // An outcome above what was known stands (more is never hidden).
        check(&[(None, Some(9)), (Some(5), Some(2))], Some(11));
        // Three turns, the middle one edited down.
        check(
            &[(None, Some(1)), (Some(1), Some(0)), (Some(4), Some(2))],
            Some(6),
        );
        // An opening turn's zero is no report.
        check(&[(Some(0), None)], None);
    }

    /// An outcome edited on the Job is believed only when the Job's status
    /// (which no patch of the Job changes) agrees with it.
    #[test]
    fn an_outcome_is_believed_only_when_the_job_s_status_agrees() {
        fn check(verdict: Option<&str>, suspend: bool, outcome: &str, believed: bool) {
            let conditions: Vec<_> = verdict
                .map(|v| serde_json::json!({"type": v, "status": "True", "reason": "R"}))
                .into_iter()
                .collect();
            let job: Job = serde_json::from_value(serde_json::json!({
                "metadata": {"name": "j", "annotations": {job::OUTCOME: outcome}},
                "spec": {"suspend": suspend, "template": {}},
                "status": {"conditions": conditions},
            }))
            .unwrap();
            assert_eq!(
                outcome_of(&job).is_some(),
                believed,
                "{verdict:?} suspended={suspend} {outcome}"
            );
        }
        let ok = r#"{"ok":true,"cost_micro_usd":1}"#;
        let failed = r#"{"ok":false,"why":"x"}"#;
        check(Some("Complete"), false, ok, true);
        check(Some("Complete"), false, failed, true);
        check(Some("Failed"), false, ok, false);
        check(Some("Failed"), false, failed, true);
        // Not ended: only afk's record of a turn it suspended.
        check(None, true, failed, true);
        check(None, false, failed, false);
        check(None, true, ok, false);
        check(None, false, ok, false);
        check(Some("FailureTarget"), false, failed, false);
        check(Some("Complete"), false, "not json", false);
    }

    #[test]
    fn the_attempt_is_read_from_the_name_afk_gives() {
        assert_eq!(attempt_in_name("afk-infra-7-2-3-0f1e2d3c"), Some(2));
        assert_eq!(attempt_in_name("afk-7-0-3-0f1e2d3c"), Some(0));
        assert_eq!(attempt_in_name("afk-forged"), None);
    }
}
