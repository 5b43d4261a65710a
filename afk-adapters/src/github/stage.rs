//! The build stage of the CI probe: a commit's check runs and its legacy
//! commit statuses, read together through the tracker's client (GitHub
//! Actions reports only check runs; Woodpecker only statuses).

use afk_core::ci::{CommitRef, Stage, StageProbe, StageReport, StageVerdict};
use afk_core::ports::PortResult;
use async_trait::async_trait;
use reqwest::Url;

use super::{GitHubTracker, MAX_PAGES, wire};

/// The build stage of the CI probe: a commit's check runs and its legacy
/// commit statuses, read together (GitHub Actions reports only check runs;
/// Woodpecker only statuses). Zero check runs and zero statuses is
/// `None` — not pending, not green.
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

/// What one check run or status says.
fn check_run_verdict(run: &wire::CheckRun) -> StageVerdict {
    if run.status != "completed" {
        return StageVerdict::Pending;
    }
    match run.conclusion.as_deref().unwrap_or("") {
        "success" | "neutral" | "skipped" => StageVerdict::Success,
        "failure" | "timed_out" | "cancelled" | "action_required" | "startup_failure" | "stale" => {
            StageVerdict::Failure
        }
        // An unknown conclusion is not a reason to act either way.
        _ => StageVerdict::Pending,
    }
}

fn status_verdict(status: &wire::CommitStatus) -> StageVerdict {
    match status.state.as_str() {
        "success" => StageVerdict::Success,
        "failure" | "error" => StageVerdict::Failure,
        _ => StageVerdict::Pending,
    }
}

impl GitHubTracker {
    /// The build stage's report for a commit.
    pub async fn build_report(&self, commit: &CommitRef) -> PortResult<StageReport> {
        let url = self.repo_url(
            &commit.repo,
            &["commits", &commit.sha, "check-runs"],
            &[("per_page", "100")],
        )?;
        let mut runs = Vec::new();
        let mut next = Some(url);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                break;
            }
            let page = self.get(url, &[]).await?;
            runs.extend(wire::decode::<wire::CheckRuns>("check runs", page.body)?.check_runs);
            next = page.next.and_then(|l| Url::parse(&l).ok());
        }
        let status_url = self.repo_url(
            &commit.repo,
            &["commits", &commit.sha, "status"],
            &[("per_page", "100")],
        )?;
        let statuses = wire::decode::<wire::CombinedStatus>(
            "combined status",
            self.get(status_url, &[]).await?.body,
        )?
        .statuses;

        let mut signals: Vec<(StageVerdict, String, Option<String>)> = Vec::new();
        for run in &runs {
            signals.push((
                check_run_verdict(run),
                format!(
                    "check {:?} {}",
                    run.name,
                    run.conclusion.as_deref().unwrap_or(&run.status)
                ),
                // Only links on GitHub itself reach an agent: a check's
                // details_url is whatever its app chose.
                [&run.details_url, &run.html_url]
                    .into_iter()
                    .flatten()
                    .find(|l| self.is_github_link(l))
                    .cloned(),
            ));
        }
        for status in &statuses {
            signals.push((
                status_verdict(status),
                format!("status {:?} {}", status.context, status.state),
                status.target_url.clone().filter(|l| self.is_github_link(l)),
            ));
        }
        let report = |verdict, detail: String, link: Option<String>| StageReport {
            stage: Stage::Build,
            verdict,
            link,
            detail,
        };
        if signals.is_empty() {
            return Ok(report(
                StageVerdict::None,
                "no check runs and no statuses for the commit yet".into(),
                None,
            ));
        }
        for wanted in [StageVerdict::Failure, StageVerdict::Pending] {
            if let Some((_, detail, link)) = signals.iter().find(|(v, _, _)| *v == wanted) {
                return Ok(report(wanted, detail.clone(), link.clone()));
            }
        }
        Ok(report(
            StageVerdict::Success,
            format!("{} check(s) and status(es) succeeded", signals.len()),
            None,
        ))
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
