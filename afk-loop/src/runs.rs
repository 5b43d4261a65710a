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
    let scans = tracker
        .scan(&config.allowlist, None, &config.in_progress_label)
        .await;
    for (repo, scan) in config.allowlist.iter().zip(scans) {
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
            match tracker.progress_comment(repo, issue.number).await {
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
