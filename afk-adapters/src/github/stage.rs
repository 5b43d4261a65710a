//! The build stage of the CI probe: a commit's check runs and its commit
//! statuses (GitHub Actions reports only check runs; Woodpecker and many
//! others only statuses), every page of both, folded by the core's
//! [`build_report`]. A listing longer than afk reads is an error, never a
//! verdict from part of the data: a failing check on page 51 must not read
//! as green.

use afk_core::ci::{CheckRunFact, CommitRef, Stage, StageReport, StatusFact, build_report};
use afk_core::ports::{PortError, PortResult};
use afk_loop::ports::StageProbe;
use async_trait::async_trait;

use super::{GitHubTracker, wire};

/// The build stage of the CI probe, sharing the tracker's client and caches.
#[derive(Debug, Clone)]
pub struct GitHubBuildStage {
    tracker: std::sync::Arc<GitHubTracker>,
}

impl GitHubBuildStage {
    /// The build stage, sharing the tracker's client and caches.
    pub fn new(tracker: std::sync::Arc<GitHubTracker>) -> Self {
        GitHubBuildStage { tracker }
    }
}

impl GitHubTracker {
    /// Every check run of a commit, every page (`Link` followed on the API's
    /// own origin), or an error past the page cap.
    async fn check_runs(&self, commit: &CommitRef) -> PortResult<Vec<CheckRunFact>> {
        let url = self.repo_url(
            &commit.repo,
            &["commits", &commit.sha, "check-runs"],
            &[("per_page", "100")],
        )?;
        let mut runs = Vec::new();
        for page in self.pages(url, "check runs").await? {
            runs.extend(
                wire::decode::<wire::CheckRuns>("check runs", page)?
                    .check_runs
                    .into_iter()
                    .map(|r| CheckRunFact {
                        name: r.name,
                        status: r.status,
                        conclusion: r.conclusion,
                        links: r.details_url.into_iter().chain(r.html_url).collect(),
                    }),
            );
        }
        Ok(runs)
    }

    /// Every commit status of a commit (the combined status's `statuses`,
    /// every page), or an error past the page cap. GitHub pages them with a
    /// `Link` header like any listing, and says how many there are in
    /// `total_count`: fewer read than that is an error.
    async fn statuses(&self, commit: &CommitRef) -> PortResult<Vec<StatusFact>> {
        let url = self.repo_url(
            &commit.repo,
            &["commits", &commit.sha, "status"],
            &[("per_page", "100")],
        )?;
        let mut statuses = Vec::new();
        let mut total = 0;
        for page in self.pages(url, "commit statuses").await? {
            let combined = wire::decode::<wire::CombinedStatus>("combined status", page)?;
            total = combined.total_count;
            statuses.extend(combined.statuses.into_iter().map(|s| StatusFact {
                context: s.context,
                state: s.state,
                link: s.target_url,
            }));
        }
        if (statuses.len() as u64) < total {
            return Err(PortError::ContractViolation {
                message: format!(
                    "GitHub counts {total} statuses for commit {} but its pages held {}; refusing a verdict from part of them",
                    commit.sha,
                    statuses.len()
                ),
            });
        }
        Ok(statuses)
    }

    /// The build stage's report for a commit.
    pub async fn build_report(&self, commit: &CommitRef) -> PortResult<StageReport> {
        let runs = self.check_runs(commit).await?;
        let statuses = self.statuses(commit).await?;
        Ok(build_report(&runs, &statuses, &self.link_hosts()))
    }
}

#[async_trait]
impl StageProbe for GitHubBuildStage {
    fn stage(&self) -> Stage {
        Stage::Build
    }

    async fn probe(&self, commit: &CommitRef) -> PortResult<Option<StageReport>> {
        self.tracker.build_report(commit).await.map(Some)
    }
}
