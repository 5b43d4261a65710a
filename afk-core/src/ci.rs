//! CI and deploy verdicts: up to three stages folded into one [`CiStatus`].
//!
//! Stages in order, each optional per repository: **build** (GitHub check
//! runs and commit statuses), **deploy** (a Woodpecker pipeline), **rollout**
//! (a Kubernetes Deployment running an image built from the commit). Each
//! reports `None` (nothing yet), `Pending`, `Success` or `Failure`.
//!
//! The fold ([`fold`]) is pure: the first `Failure` is red; the first
//! unfinished stage is pending, or "no signal" when nothing at all has
//! reported; all `Success` is green. The loop (`afk-loop`) asks the stages in
//! order and stops as soon as one decides, so a later stage is never queried
//! once an earlier one has.

use std::fmt;

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

/// One check run on a commit, as the tracker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRunFact {
    /// Its name.
    pub name: String,
    /// `queued`, `in_progress`, `completed`, … as reported.
    pub status: String,
    /// Once completed: `success`, `failure`, `neutral`, … as reported.
    pub conclusion: Option<String>,
    /// Where its log may be read, in the tracker's order of preference
    /// (`details_url`, then `html_url`).
    pub links: Vec<String>,
}

/// One commit status (the legacy statuses API that Woodpecker, Jenkins and
/// many others report through).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFact {
    /// Its context (`ci/woodpecker/push/test`).
    pub context: String,
    /// `success`, `failure`, `error` or `pending`, as reported.
    pub state: String,
    /// Its `target_url`, when set.
    pub link: Option<String>,
}

/// What one check run says. `neutral` and `skipped` are not failures (a
/// skipped job is how a path filter says "not this time"); an unknown
/// conclusion is not a reason to act either way, so it stays pending.
pub fn check_run_verdict(run: &CheckRunFact) -> StageVerdict {
    if run.status != "completed" {
        return StageVerdict::Pending;
    }
    match run.conclusion.as_deref().unwrap_or("") {
        "success" | "neutral" | "skipped" => StageVerdict::Success,
        "failure" | "timed_out" | "cancelled" | "action_required" | "startup_failure" | "stale" => {
            StageVerdict::Failure
        }
        _ => StageVerdict::Pending,
    }
}

/// What one commit status says.
pub fn status_verdict(status: &StatusFact) -> StageVerdict {
    match status.state.as_str() {
        "success" => StageVerdict::Success,
        "failure" | "error" => StageVerdict::Failure,
        _ => StageVerdict::Pending,
    }
}

/// The hosts whose links may reach an agent: the tracker's own (web and
/// API), the configured CI stages' (a Woodpecker server), and those the
/// operator names (`AFK_CI_LINK_HOSTS`). Anything else a check's app chose
/// is dropped: a link is text an outside app wrote, and the agent opens it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkHosts {
    hosts: Vec<String>,
}

impl LinkHosts {
    /// The hosts of `urls` (each a URL such as `https://github.com`, or a
    /// bare host name); what names no host is left out.
    pub fn new<S: AsRef<str>>(urls: &[S]) -> Self {
        let mut hosts: Vec<String> = urls
            .iter()
            .filter_map(|u| {
                let u = u.as_ref().trim();
                host_of(u).or_else(|| host_of(&format!("https://{u}")))
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        LinkHosts { hosts }
    }

    /// Whether `link` is an `http(s)` URL, without credentials, on one of
    /// the hosts.
    pub fn allows(&self, link: &str) -> bool {
        let Ok(url) = url::Url::parse(link.trim()) else {
            return false;
        };
        if !matches!(url.scheme(), "https" | "http")
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return false;
        }
        url.host_str()
            .is_some_and(|h| self.hosts.iter().any(|a| a.eq_ignore_ascii_case(h)))
    }

    /// The first of `links` that may reach an agent.
    pub fn first_allowed<'a>(&self, links: impl IntoIterator<Item = &'a str>) -> Option<String> {
        links
            .into_iter()
            .find(|l| self.allows(l))
            .map(str::to_owned)
    }
}

fn host_of(text: &str) -> Option<String> {
    let url = url::Url::parse(text).ok()?;
    if !matches!(url.scheme(), "https" | "http") {
        return None;
    }
    url.host_str().map(str::to_ascii_lowercase)
}

/// The build stage's report over every check run and commit status of a
/// commit (all pages: the caller reads them all, or fails): the first
/// failure is red, else the first unfinished one is pending; with none at
/// all, nothing has reported ("no signal", never green). Its link is the
/// deciding signal's first link on an allowed host.
pub fn build_report(
    runs: &[CheckRunFact],
    statuses: &[StatusFact],
    hosts: &LinkHosts,
) -> StageReport {
    let signals = runs
        .iter()
        .map(|run| {
            (
                check_run_verdict(run),
                format!(
                    "check {:?} {}",
                    run.name,
                    run.conclusion.as_deref().unwrap_or(&run.status)
                ),
                hosts.first_allowed(run.links.iter().map(String::as_str)),
            )
        })
        .chain(statuses.iter().map(|status| {
            (
                status_verdict(status),
                format!("status {:?} {}", status.context, status.state),
                hosts.first_allowed(status.link.as_deref()),
            )
        }));
    let mut count = 0usize;
    let mut pending = None;
    for (verdict, detail, link) in signals {
        count += 1;
        match verdict {
            StageVerdict::Failure => {
                return StageReport {
                    stage: Stage::Build,
                    verdict,
                    link,
                    detail,
                };
            }
            StageVerdict::Pending if pending.is_none() => pending = Some((detail, link)),
            _ => {}
        }
    }
    let (verdict, detail, link) = match (count, pending) {
        (0, _) => (
            StageVerdict::None,
            "no check runs and no statuses for the commit yet".to_owned(),
            None,
        ),
        (_, Some((detail, link))) => (StageVerdict::Pending, detail, link),
        (n, None) => (
            StageVerdict::Success,
            format!("{n} check(s) and status(es) succeeded"),
            None,
        ),
    };
    StageReport {
        stage: Stage::Build,
        verdict,
        link,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expected status and deciding report, stated independently of
    /// `fold`.
    fn expected(verdicts: &[StageVerdict]) -> (CiStatus, Option<usize>) {
        for (i, v) in verdicts.iter().enumerate() {
            match v {
                StageVerdict::Failure => return (CiStatus::Red, Some(i)),
                StageVerdict::Pending => return (CiStatus::Pending, Some(i)),
                StageVerdict::None if i == 0 => return (CiStatus::NoSignal, Some(i)),
                StageVerdict::None => return (CiStatus::Pending, Some(i)),
                StageVerdict::Success => {}
            }
        }
        if verdicts.is_empty() {
            (CiStatus::NoSignal, None)
        } else {
            (CiStatus::Green, None)
        }
    }

    #[test]
    fn every_sequence_of_up_to_three_reports_folds_as_stated() {
        let all = [
            StageVerdict::None,
            StageVerdict::Pending,
            StageVerdict::Success,
            StageVerdict::Failure,
        ];
        let stages = [Stage::Build, Stage::Deploy, Stage::Rollout];
        let mut sequences: Vec<Vec<StageVerdict>> = vec![vec![]];
        for len in 1..=3 {
            let mut next = Vec::new();
            for s in sequences.iter().filter(|s| s.len() == len - 1) {
                for v in all {
                    let mut longer = s.clone();
                    longer.push(v);
                    next.push(longer);
                }
            }
            sequences.extend(next);
        }
        assert_eq!(sequences.len(), 1 + 4 + 16 + 64);
        for verdicts in sequences {
            let reports: Vec<StageReport> = verdicts
                .iter()
                .zip(stages)
                .map(|(v, stage)| StageReport {
                    stage,
                    verdict: *v,
                    link: Some(format!("https://ci/{stage}")),
                    detail: format!("{stage} said {v:?}"),
                })
                .collect();
            let folded = fold(&reports);
            let (status, deciding) = expected(&verdicts);
            assert_eq!(folded.status, status, "{verdicts:?}");
            assert_eq!(folded.stage, deciding.map(|i| stages[i]), "{verdicts:?}");
            assert_eq!(
                folded.link,
                deciding.map(|i| format!("https://ci/{}", stages[i])),
                "{verdicts:?}"
            );
        }
    }

    fn run(name: &str, status: &str, conclusion: Option<&str>, link: &str) -> CheckRunFact {
        CheckRunFact {
            name: name.into(),
            status: status.into(),
            conclusion: conclusion.map(str::to_owned),
            links: vec![link.into()],
        }
    }

    fn status(context: &str, state: &str, link: &str) -> StatusFact {
        StatusFact {
            context: context.into(),
            state: state.into(),
            link: Some(link.into()),
        }
    }

    fn hosts() -> LinkHosts {
        LinkHosts::new(&[
            "https://github.com",
            "https://api.github.com",
            "ci.example.org",
        ])
    }

    #[test]
    fn check_runs_and_statuses_fold_into_the_build_stage() {
        let gh = "https://github.com/acme/infra/actions/runs/1";
        let wp = "https://ci.example.org/repos/3/pipeline/9";
        let check = |runs: &[CheckRunFact], statuses: &[StatusFact], verdict, detail: &str| {
            let r = build_report(runs, statuses, &hosts());
            assert_eq!(r.verdict, verdict, "{runs:?} {statuses:?}");
            assert!(r.detail.contains(detail), "{} lacks {detail}", r.detail);
        };
        check(&[], &[], StageVerdict::None, "no check runs");
        check(
            &[run("test", "completed", Some("success"), gh)],
            &[],
            StageVerdict::Success,
            "1 check",
        );
        // neutral and skipped are not failures (the old fake read them as
        // failures).
        for c in ["neutral", "skipped"] {
            check(
                &[run("lint", "completed", Some(c), gh)],
                &[],
                StageVerdict::Success,
                "succeeded",
            );
        }
        for c in [
            "failure",
            "timed_out",
            "cancelled",
            "action_required",
            "startup_failure",
            "stale",
        ] {
            check(
                &[run("test", "completed", Some(c), gh)],
                &[],
                StageVerdict::Failure,
                c,
            );
        }
        check(
            &[run("test", "completed", Some("brand_new"), gh)],
            &[],
            StageVerdict::Pending,
            "brand_new",
        );
        check(
            &[run("test", "in_progress", None, gh)],
            &[],
            StageVerdict::Pending,
            "in_progress",
        );
        // Statuses count too (the old fake ignored them): Woodpecker reports
        // only statuses.
        check(
            &[],
            &[status("ci/woodpecker", "failure", wp)],
            StageVerdict::Failure,
            "ci/woodpecker",
        );
        check(
            &[],
            &[status("ci/woodpecker", "error", wp)],
            StageVerdict::Failure,
            "error",
        );
        check(
            &[],
            &[status("ci/woodpecker", "pending", wp)],
            StageVerdict::Pending,
            "pending",
        );
        check(
            &[run("test", "completed", Some("success"), gh)],
            &[status("ci/woodpecker", "failure", wp)],
            StageVerdict::Failure,
            "woodpecker",
        );
        // A failure anywhere beats a pending before it.
        check(
            &[
                run("slow", "queued", None, gh),
                run("test", "completed", Some("failure"), gh),
            ],
            &[],
            StageVerdict::Failure,
            "\"test\"",
        );
        // The Woodpecker status's link reaches the agent (its host is a
        // configured CI stage's); an unknown app's link does not.
        let r = build_report(&[], &[status("ci/woodpecker", "failure", wp)], &hosts());
        assert_eq!(r.link.as_deref(), Some(wp));
        let r = build_report(
            &[run(
                "x",
                "completed",
                Some("failure"),
                "https://evil.example/x",
            )],
            &[],
            &hosts(),
        );
        assert_eq!(r.link, None);
    }

    #[test]
    fn links_reach_the_agent_only_on_allowed_hosts() {
        let h = hosts();
        for (link, allowed) in [
            ("https://github.com/acme/infra/runs/1", true),
            ("https://GITHUB.com/x", true),
            ("http://ci.example.org:8000/x", true),
            ("https://api.github.com/repos/a/b", true),
            ("https://github.com.evil.example/x", false),
            ("https://evil.example/?https://github.com", false),
            ("https://user:pw@github.com/x", false),
            ("https://github.com@evil.example/x", false),
            ("javascript:alert(1)", false),
            ("ftp://github.com/x", false),
            ("github.com/x", false),
            ("", false),
        ] {
            assert_eq!(h.allows(link), allowed, "{link}");
        }
        assert!(!LinkHosts::default().allows("https://github.com/x"));
        assert!(LinkHosts::new(&["gitea.example:3000"]).allows("https://gitea.example/x"));
    }
}
