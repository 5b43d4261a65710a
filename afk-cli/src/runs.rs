//! The runs in flight, for people: `afk runs` shows them from their run
//! records as a table, as JSON, or one in full (record and checklist).
//! Pure text from values; finding the runs is the watcher's own discovery
//! (`afk_loop::find_runs`), called by the binary.

use std::fmt::Write as _;

use afk_core::Timestamp;
use afk_core::types::short_age;
use afk_loop::{Entry, Level, Run};
use serde_json::{Value, json};

/// One run, summarised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    /// `repo#n`.
    pub key: String,
    /// Where it stands, in a few words.
    pub phase: String,
    /// The thread working it.
    pub thread_id: String,
    /// Seconds since the first dispatch.
    pub age_seconds: u64,
    /// Thread attempt (0 = the first thread).
    pub attempt: u32,
    /// Corrective turns sent.
    pub fix_forward_attempts: u32,
    /// The last CI verdict read, if any.
    pub last_ci: Option<String>,
    /// The newest commit pushed for it.
    pub commit: Option<String>,
    /// Its pull request and where it stands (`#12 open`), when it lands
    /// through one.
    pub pull_request: Option<String>,
}

/// Summarises a run at `now`.
pub fn row(run: &Run, now: Timestamp) -> RunRow {
    let r = &run.record;
    let pull = r.landing.as_ref().and_then(|l| {
        l.pull_request.map(|n| {
            let state = l.pull_state.map_or("open", |s| s.as_str());
            (n, state, l.handed_over)
        })
    });
    let phase = match (&r.outcome, &r.commit, pull) {
        (Some(o), _, _) if r.notified => format!("{}: cleaning up", o.kind.as_str()),
        (Some(o), _, _) => format!("{}: doorbell pending", o.kind.as_str()),
        (None, _, Some((n, "open", true))) => format!("PR #{n} waiting for review"),
        (None, _, Some((n, state, _))) => format!(
            "PR #{n} {state}, CI {}",
            r.last_ci.map_or("not read yet", |c| c.as_str())
        ),
        (None, None, None) => "agent working, nothing pushed".to_owned(),
        (None, Some(_), None) => format!(
            "pushed, CI {}",
            r.last_ci.map_or("not read yet", |c| c.as_str())
        ),
    };
    RunRow {
        key: format!("{}#{}", run.issue.repo, run.issue.number),
        phase,
        thread_id: r.thread_id.clone(),
        age_seconds: now.seconds_since(r.dispatched_at),
        attempt: r.attempt,
        fix_forward_attempts: r.fix_forward_attempts,
        last_ci: r.last_ci.map(|c| c.as_str().to_owned()),
        commit: r.commit.clone(),
        pull_request: pull.map(|(n, state, _)| format!("#{n} {state}")),
    }
}

/// A table for a terminal.
pub fn table(rows: &[RunRow]) -> String {
    if rows.is_empty() {
        return "no runs in flight\n".to_owned();
    }
    let mut out = format!(
        "{:<22} {:<34} {:>7} {:>8}  {:<10} {}\n",
        "RUN", "PHASE", "AGE", "ATTEMPTS", "COMMIT", "THREAD"
    );
    for r in rows {
        let attempts = format!("{}/{}", r.attempt, r.fix_forward_attempts);
        let commit: String = r
            .commit
            .as_deref()
            .unwrap_or("-")
            .chars()
            .take(10)
            .collect();
        let _ = writeln!(
            out,
            "{:<22} {:<34} {:>7} {:>8}  {:<10} {}",
            r.key,
            r.phase,
            short_age(r.age_seconds),
            attempts,
            commit,
            r.thread_id
        );
    }
    out
}

/// The JSON form (`--json`).
pub fn to_json(rows: &[RunRow], problems: &[Entry]) -> Value {
    json!({
        "runs": rows.iter().map(|r| json!({
            "run": r.key, "phase": r.phase, "thread_id": r.thread_id, "age_seconds": r.age_seconds,
            "attempt": r.attempt, "fix_forward_attempts": r.fix_forward_attempts,
            "last_ci": r.last_ci, "commit": r.commit, "pull_request": r.pull_request,
        })).collect::<Vec<_>>(),
        "problems": problems.iter().map(|e| json!({
            "level": match e.level { Level::Info => "info", Level::Warn => "warn", Level::Error => "error" },
            "repo": e.repo, "issue": e.issue, "message": e.message,
        })).collect::<Vec<_>>(),
    })
}

/// `afk runs show repo#n`: the run's record (JSON) and its checklist.
pub fn show(run: &Run) -> String {
    let checklist: String = run
        .comment
        .body
        .lines()
        .filter(|l| !l.trim_start().starts_with("<!-- afk-run"))
        .map(|l| format!("{l}\n"))
        .collect();
    let record = checklist::marker_line(&run.record);
    let json = record
        .trim_start_matches("<!-- afk-run v1 ")
        .trim_end_matches(" -->")
        .replace("\\u003c", "<")
        .replace("\\u003e", ">")
        .replace("\\u0026", "&");
    let pretty = serde_json::from_str::<Value>(&json)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(json);
    format!(
        "{}#{} ({})\n\nrun record:\n{pretty}\n\n{}",
        run.issue.repo,
        run.issue.number,
        if run.issue.open { "open" } else { "closed" },
        checklist.trim_end()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use afk_core::ports::{Comment, TrackedIssue};
    use afk_core::record::Landing;
    use afk_core::{CiStatus, RunRecord};

    fn run(record: RunRecord) -> Run {
        Run {
            issue: TrackedIssue {
                repo: "infra".into(),
                number: 7,
                title: "Rotate".into(),
                body: String::new(),
                labels: vec![],
                open: true,
            },
            comment: Comment {
                id: 1,
                body: String::new(),
            },
            record,
        }
    }

    #[test]
    fn a_run_landing_through_a_pull_request_shows_it() {
        let at = Timestamp::from_unix_seconds(1_800_000_000).unwrap_or_else(|| unreachable!());
        let mut record = RunRecord::dispatched("t-1", at);
        assert_eq!(
            row(&run(record.clone()), at).phase,
            "agent working, nothing pushed"
        );
        record.commit = Some("abc".into());
        record.last_ci = Some(CiStatus::Green);
        let mut landing = Landing::on("afk/7-rotate");
        landing.pull_request = Some(12);
        record.landing = Some(landing.clone());
        let r = row(&run(record.clone()), at);
        assert_eq!(r.phase, "PR #12 open, CI green");
        assert_eq!(r.pull_request.as_deref(), Some("#12 open"));
        landing.handed_over = true;
        record.landing = Some(landing);
        assert_eq!(
            row(&run(record.clone()), at).phase,
            "PR #12 waiting for review"
        );
        let json = to_json(&[row(&run(record), at)], &[]);
        assert_eq!(json["runs"][0]["pull_request"], "#12 open");
    }
}
