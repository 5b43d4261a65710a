//! The CI stages asked in order: a later stage is never asked once an
//! earlier one decided, and a failed read is an error, never a verdict.

use std::sync::atomic::{AtomicUsize, Ordering};

use afk_core::CiStatus;
use afk_core::ci::{CommitRef, Stage, StageReport, StageVerdict};
use afk_core::ports::{PortError, PortResult};
use afk_loop::ports::{StageProbe, probe_stages};
use async_trait::async_trait;

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

/// Runs a future on a small runtime of its own.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
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
