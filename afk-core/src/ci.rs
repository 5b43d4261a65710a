//! CI and deploy verdicts: up to three stages folded into one [`CiStatus`].
//!
//! Stages in order, each optional per repository: **build** (GitHub check
//! runs and commit statuses), **deploy** (a Woodpecker pipeline), **rollout**
//! (a Kubernetes Deployment running an image built from the commit). Each
//! reports `None` (nothing yet), `Pending`, `Success` or `Failure`.
//!
//! The fold ([`fold`]) is pure: the first `Failure` is red; the first
//! unfinished stage is pending, or "no signal" when nothing at all has
//! reported; all `Success` is green. [`probe_stages`] queries the stages in
//! order and stops as soon as one decides, so a later stage is never queried
//! once an earlier one has.

use std::fmt;

use async_trait::async_trait;

use crate::ports::PortResult;
use crate::types::{CiStatus, Timestamp};

/// A CI/deploy stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stage {
    /// Checks and statuses on the commit.
    Build,
    /// The deploy pipeline for the commit.
    Deploy,
    /// The rollout of an image built from the commit.
    Rollout,
}

impl Stage {
    /// The short name used in logs and prompts.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Build => "build",
            Stage::Deploy => "deploy",
            Stage::Rollout => "rollout",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one stage says about the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageVerdict {
    /// Nothing has reported for the commit yet.
    None,
    /// Queued or running.
    Pending,
    /// Finished well.
    Success,
    /// Finished badly.
    Failure,
}

/// One stage's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageReport {
    /// Which stage.
    pub stage: Stage,
    /// Its verdict.
    pub verdict: StageVerdict,
    /// Where a human (or the agent) reads its log, when known.
    pub link: Option<String>,
    /// One line on what it saw (the failing check's name, the pipeline's
    /// status, the rollout's wait reason).
    pub detail: String,
}

/// The folded verdict of a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiVerdict {
    /// The folded status.
    pub status: CiStatus,
    /// The stage that decided it (the failing or the first unfinished one);
    /// `None` when green or when nothing reported.
    pub stage: Option<Stage>,
    /// That stage's link.
    pub link: Option<String>,
    /// That stage's detail.
    pub detail: String,
}

/// The commit a probe looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRef {
    /// The repository.
    pub repo: String,
    /// The default branch it was pushed to.
    pub branch: String,
    /// Full SHA.
    pub sha: String,
    /// When it was committed (bounds how far back a pipeline listing reads).
    pub committed_at: Option<Timestamp>,
}

/// Folds stage reports, in stage order, into one verdict.
pub fn fold(reports: &[StageReport]) -> CiVerdict {
    let mut anything_reported = false;
    for report in reports {
        let decided = |status| CiVerdict {
            status,
            stage: Some(report.stage),
            link: report.link.clone(),
            detail: report.detail.clone(),
        };
        match report.verdict {
            StageVerdict::Failure => return decided(CiStatus::Red),
            StageVerdict::Pending => return decided(CiStatus::Pending),
            StageVerdict::None if anything_reported => return decided(CiStatus::Pending),
            StageVerdict::None => return decided(CiStatus::NoSignal),
            StageVerdict::Success => anything_reported = true,
        }
    }
    if anything_reported {
        CiVerdict {
            status: CiStatus::Green,
            stage: None,
            link: None,
            detail: "every stage succeeded".to_owned(),
        }
    } else {
        CiVerdict {
            status: CiStatus::NoSignal,
            stage: None,
            link: None,
            detail: "no CI stage is configured for this repository".to_owned(),
        }
    }
}

/// One stage's probe (an adapter).
#[async_trait]
pub trait StageProbe: Send + Sync {
    /// Which stage this is.
    fn stage(&self) -> Stage;

    /// The stage's report for the commit, or `Ok(None)` when the stage does
    /// not apply to this repository (not configured, not registered).
    ///
    /// # Errors
    /// A failed read is an error, never `StageVerdict::None`.
    async fn probe(&self, commit: &CommitRef) -> PortResult<Option<StageReport>>;
}

/// Queries `stages` in order and folds their reports, stopping at the first
/// stage that decides (anything but `Success`). Stages that do not apply are
/// skipped.
pub async fn probe_stages(stages: &[&dyn StageProbe], commit: &CommitRef) -> PortResult<CiVerdict> {
    let mut reports = Vec::new();
    for stage in stages {
        let Some(report) = stage.probe(commit).await? else {
            continue;
        };
        let decided = report.verdict != StageVerdict::Success;
        reports.push(report);
        if decided {
            break;
        }
    }
    Ok(fold(&reports))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crate::ports::PortError;

    /// A scripted stage that counts how often it is asked.
    struct Scripted {
        stage: Stage,
        answer: Option<StageVerdict>,
        asked: AtomicUsize,
    }

    #[async_trait]
    impl StageProbe for Scripted {
        fn stage(&self) -> Stage {
            self.stage
        }
        async fn probe(&self, _commit: &CommitRef) -> PortResult<Option<StageReport>> {
            self.asked.fetch_add(1, Ordering::Relaxed);
            Ok(self.answer.map(|verdict| StageReport {
                stage: self.stage,
                verdict,
                link: Some(format!("https://ci/{}", self.stage)),
                detail: format!("{} said {verdict:?}", self.stage),
            }))
        }
    }

    struct Broken;

    #[async_trait]
    impl StageProbe for Broken {
        fn stage(&self) -> Stage {
            Stage::Deploy
        }
        async fn probe(&self, _commit: &CommitRef) -> PortResult<Option<StageReport>> {
            Err(PortError::Transient {
                message: "woodpecker is down".into(),
            })
        }
    }

    fn commit() -> CommitRef {
        CommitRef {
            repo: "infra".into(),
            branch: "master".into(),
            sha: "abc1234".into(),
            committed_at: None,
        }
    }

    /// Runs a tiny executor for a future that never waits (the scripted
    /// probes complete immediately).
    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    /// The expected status, stated independently of `fold`: over the stages
    /// that apply, in order.
    fn expected(answers: &[Option<StageVerdict>]) -> (CiStatus, Option<usize>) {
        let applied: Vec<(usize, StageVerdict)> = answers
            .iter()
            .enumerate()
            .filter_map(|(i, a)| a.map(|v| (i, v)))
            .collect();
        for (pos, (i, v)) in applied.iter().enumerate() {
            match v {
                StageVerdict::Failure => return (CiStatus::Red, Some(*i)),
                StageVerdict::Pending => return (CiStatus::Pending, Some(*i)),
                StageVerdict::None if pos == 0 => return (CiStatus::NoSignal, Some(*i)),
                StageVerdict::None => return (CiStatus::Pending, Some(*i)),
                StageVerdict::Success => {}
            }
        }
        if applied.is_empty() {
            (CiStatus::NoSignal, None)
        } else {
            (CiStatus::Green, None)
        }
    }

    #[test]
    fn every_combination_of_three_optional_stages() {
        let options = [
            None,
            Some(StageVerdict::None),
            Some(StageVerdict::Pending),
            Some(StageVerdict::Success),
            Some(StageVerdict::Failure),
        ];
        let stages = [Stage::Build, Stage::Deploy, Stage::Rollout];
        let mut combinations = 0;
        for a in options {
            for b in options {
                for c in options {
                    combinations += 1;
                    let answers = [a, b, c];
                    let probes: Vec<Scripted> = stages
                        .iter()
                        .zip(answers)
                        .map(|(stage, answer)| Scripted {
                            stage: *stage,
                            answer,
                            asked: AtomicUsize::new(0),
                        })
                        .collect();
                    let refs: Vec<&dyn StageProbe> =
                        probes.iter().map(|p| p as &dyn StageProbe).collect();
                    let verdict = block_on(probe_stages(&refs, &commit())).unwrap();
                    let (status, deciding) = expected(&answers);
                    assert_eq!(verdict.status, status, "{answers:?}");
                    assert_eq!(verdict.stage, deciding.map(|i| stages[i]), "{answers:?}");
                    // Stages after the deciding one were never asked; every
                    // stage up to it was asked once.
                    for (i, p) in probes.iter().enumerate() {
                        let asked = p.asked.load(Ordering::Relaxed);
                        let should = deciding.is_none_or(|d| i <= d);
                        assert_eq!(asked, usize::from(should), "stage {i} of {answers:?}");
                    }
                    if let Some(d) = deciding {
                        assert_eq!(
                            verdict.link.as_deref(),
                            Some(format!("https://ci/{}", stages[d]).as_str())
                        );
                    }
                }
            }
        }
        assert_eq!(combinations, 125);
    }

    #[test]
    fn a_failed_read_is_an_error_not_a_verdict() {
        let build = Scripted {
            stage: Stage::Build,
            answer: Some(StageVerdict::Success),
            asked: AtomicUsize::new(0),
        };
        let result = block_on(probe_stages(&[&build, &Broken], &commit()));
        assert!(matches!(result, Err(PortError::Transient { .. })));
    }
}
