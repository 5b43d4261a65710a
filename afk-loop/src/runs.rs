//! Finding the runs in flight: issues carrying the in-progress label, open
//! or closed, in allowlisted repositories, with a readable run record. The
//! watcher drives exactly these, `afk stop` and `afk halt` stop them, and
//! `afk runs` lists them.

use afk_core::Config;
use afk_core::ports::{Comment, TrackedIssue, WatchedThread};
use afk_core::record::RunRecord;

use crate::ports::Tracker;
use crate::report::{About, ReportAction, TickReport};

/// One run in flight, as found on the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// The issue carrying the in-progress label.
    pub issue: TrackedIssue,
    /// Its progress comment.
    pub comment: Comment,
    /// The run record in it.
    pub record: RunRecord,
}

impl Run {
    /// Its thread, as the executor snapshot watches it.
    pub fn watched(&self) -> WatchedThread {
        WatchedThread {
            thread_id: self.record.thread_id.clone(),
            turn_sent_at: self
                .record
                .turn_sent_at
                .unwrap_or(self.record.dispatched_at),
        }
    }
}

/// Finds the runs in flight. An issue with the label but no readable record
/// is reported (warn) and left out; a failed read is reported (error).
pub async fn find_runs(
    tracker: &dyn Tracker,
    config: &Config,
    report: &mut TickReport,
) -> Vec<Run> {
    let mut runs = Vec::new();
    // The allowlist and the repositories winding down: a repository
    // dropped from the allowlist keeps its runs watched to their end.
    let repos = config.watched_repos();
    let scans = tracker.scan(&repos, None, &config.in_progress_label).await;
    for (repo, scan) in repos.iter().zip(scans) {
        report.saw_tracker(&scan);
        let issues = match scan {
            Ok(s) => s.locked,
            Err(e) => {
                report.error(
                    About::repo(repo),
                    ReportAction::Read,
                    format!("listing runs failed: {e}"),
                );
                continue;
            }
        };
        for issue in issues {
            let about = About::issue(repo, issue.number);
            let comment = tracker.progress_comment(repo, issue.number).await;
            report.saw_tracker(&comment);
            match comment {
                Ok(Some(comment)) => match checklist::extract_record(&comment.body) {
                    Ok(Some(record)) => runs.push(Run {
                        issue,
                        comment,
                        record,
                    }),
                    Ok(None) => report.warn(
                        about,
                        ReportAction::NoRecord,
                        "carries the in-progress label but its progress comment has no run record; left alone",
                    ),
                    Err(why) => report.warn(
                        about,
                        ReportAction::NoRecord,
                        format!(
                            "carries the in-progress label but its run record cannot be read ({why}); left alone"
                        ),
                    ),
                },
                Ok(None) => report.warn(
                    about,
                    ReportAction::NoRecord,
                    "carries the in-progress label but has no progress comment; left alone",
                ),
                Err(e) => report.error(
                    about,
                    ReportAction::Read,
                    format!("reading the progress comment failed: {e}"),
                ),
            }
        }
    }
    runs
}

/// Where afk has runs in flight after a tick, for `AFK_STATE_FILE`: what it
/// remembered before (`previous`), the repositories it dispatched to, and,
/// after a watch tick, exactly those whose runs it saw still going, and
/// those it remembered but could not read. A watch tick cut short by its
/// deadline, or that did not run, forgets nothing. `poll` says which tick
/// `report` is.
pub fn remembered_repos(previous: &[String], poll: bool, report: &TickReport) -> Vec<String> {
    use crate::report::{Level, ReportAction as A};
    let mut keep: Vec<String> = Vec::new();
    let add = |keep: &mut Vec<String>, repo: &str| {
        if !keep.iter().any(|k| afk_core::types::same_repo(k, repo)) {
            keep.push(repo.to_owned());
        }
    };
    let cut_short = report.disabled
        || report
            .entries
            .iter()
            .any(|e| matches!(e.action, A::Deadline | A::Start));
    if poll || cut_short {
        for r in previous {
            add(&mut keep, r);
        }
    }
    for d in &report.dispatched {
        if let Some((repo, _)) = d.rsplit_once('#') {
            add(&mut keep, repo);
        }
    }
    if poll || cut_short {
        return keep;
    }
    // A run that ended this tick (landed, frozen, handed back, stopped)
    // is gone; any other run seen is still going.
    let mut runs: Vec<(&str, u64, bool)> = Vec::new();
    for e in &report.entries {
        if let (Some(repo), Some(issue)) = (e.repo.as_deref(), e.issue) {
            let ended = e.level != Level::Error
                && matches!(
                    e.action,
                    A::CloseSuccess | A::FreezeEscalate | A::EscalatePrepush | A::Stop
                );
            match runs
                .iter_mut()
                .find(|(r, i, _)| *i == issue && afk_core::types::same_repo(r, repo))
            {
                Some(run) => run.2 |= ended,
                None => runs.push((repo, issue, ended)),
            }
        }
    }
    for (repo, _, ended) in runs {
        if !ended {
            add(&mut keep, repo);
        }
    }
    // A repository that could not be read may still have runs.
    for e in report
        .entries
        .iter()
        .filter(|e| e.level == Level::Error && e.issue.is_none())
    {
        if let Some(repo) = e.repo.as_deref()
            && previous.iter().any(|p| afk_core::types::same_repo(p, repo))
        {
            add(&mut keep, repo);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{About, ReportAction as A};

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn what_is_remembered_is_where_runs_are_still_going() {
        let before = names(&["old", "infra"]);
        // A poll adds where it dispatched and forgets nothing.
        let poll = TickReport {
            dispatched: vec!["web#3".into()],
            ..TickReport::default()
        };
        assert_eq!(
            remembered_repos(&before, true, &poll),
            names(&["old", "infra", "web"])
        );
        // A watch keeps the runs still going, drops the ended ones and the
        // repositories with none, and keeps one it could not read.
        let mut watch = TickReport::default();
        watch.info(About::run("infra", 7, "t"), A::Wait, "working");
        watch.info(About::run("web", 3, "t"), A::CloseSuccess, "landed");
        watch.info(About::run("web", 3, "t"), A::Ring, "rang");
        watch.error(About::repo("old"), A::Read, "502");
        watch.error(About::repo("never"), A::Read, "502");
        assert_eq!(
            remembered_repos(&names(&["old", "infra", "web"]), false, &watch),
            names(&["infra", "old"])
        );
        // A stop that failed leaves the run going.
        let mut failed = TickReport::default();
        failed.error(About::run("web", 3, "t"), A::Stop, "the executor refused");
        assert_eq!(remembered_repos(&[], false, &failed), names(&["web"]));
        // A watch cut short forgets nothing.
        let mut short = TickReport::default();
        short.warn(About::TICK, A::Deadline, "out of time");
        assert_eq!(remembered_repos(&before, false, &short), before);
        let disabled = TickReport {
            disabled: true,
            ..TickReport::default()
        };
        assert_eq!(remembered_repos(&before, false, &disabled), before);
    }
}
