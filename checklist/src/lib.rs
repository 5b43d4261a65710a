//! Pure text for afk: what the loop writes on an issue and reads back.
//!
//! - [`phase`]: the progress checklist, rendered byte-for-byte stably;
//! - [`marker`]: the run record as one hidden `<!-- afk-run v1 {json} -->`
//!   line under the checklist, and reading it back strictly;
//! - [`sut`]: the SUT backlog (`SUT-CHECKLIST.md`) of the checklist runner,
//!   parsed with line-numbered diagnostics and written back one cell at a
//!   time (the runner's decisions over it are `runner::decide`);
//!
//! This crate does no I/O: it turns values into text and text into values
//! (the progress comment and the backlog; the operator commands' own output
//! formats are `afk-cli`'s).
//! Finding, creating and editing the comment on GitHub is the tracker
//! adapter's job; deciding what the record should say is the core's.

pub mod marker;
pub mod phase;
pub mod sut;

pub use marker::{MarkerError, comment_body, extract_record, has_marker, marker_line};
pub use phase::{ChecklistMeta, render};

use afk_core::{Cost, OutcomeKind, Phase, RunRecord};

/// The whole progress comment for a run: the visible checklist for `phase`
/// (with a line saying who stopped the run, once stopped), then the hidden
/// run record.
pub fn progress_body(
    phase: Phase,
    repo: &str,
    issue: u64,
    default_branch: &str,
    record: &RunRecord,
) -> String {
    let meta = ChecklistMeta {
        repo: Some(repo.to_owned()),
        issue: Some(issue),
        thread_id: Some(record.thread_id.clone()),
        fix_forward_attempts: record.fix_forward_attempts,
        // The branch the agent pushes to: the run's own when it lands
        // through a pull request.
        default_branch: Some(
            record
                .landing
                .as_ref()
                .map_or(default_branch, |l| l.branch.as_str())
                .to_owned(),
        ),
    };
    let mut text = render(phase, &meta);
    if let Some(landing) = &record.landing {
        // The branch name is afk's own (`afk/<n>-<slug>`), safe in code.
        text.push_str(&match landing.pull_request {
            None => format!(
                "\nLands through a pull request from `{}` (opened once the branch has a commit).\n",
                landing.branch
            ),
            Some(n) if landing.handed_over && record.outcome.is_none() => format!(
                "\nPull request: #{n} ({}) from `{}`, waiting for a human's review (it lands when merged).\n",
                landing.pull_state.map_or("open", |s| s.as_str()),
                landing.branch
            ),
            Some(n) => format!(
                "\nPull request: #{n} ({}) from `{}`.\n",
                landing.pull_state.map_or("open", |s| s.as_str()),
                landing.branch
            ),
        });
        if let (Some(n), Some(outcome)) = (landing.pull_request, &record.outcome)
            && outcome.kind != OutcomeKind::Done
        {
            text.push_str(&format!(
                "\n_Pull request #{n} is left as it is: afk closes nothing a human wrote._\n"
            ));
        }
    }
    match &record.outcome {
        Some(outcome) if outcome.kind == OutcomeKind::Stopped => {
            text.push_str(&format!(
                "\n_Stopped by {}: the agent was interrupted; a human owns this issue now._\n",
                outcome.by.as_deref().unwrap_or("an unknown account")
            ));
        }
        Some(outcome) if outcome.kind != OutcomeKind::Done => {
            // Why it was handed back, on one line the page cannot misread
            // (the reason may quote what an agent said).
            text.push_str(&format!(
                "\n_Handed to a human: {}._\n",
                markdown_inline(&outcome.reason)
            ));
        }
        _ => {}
    }
    text.push_str(&format!("\nCost: {}\n", Cost::describe(record.cost)));
    comment_body(&text, record)
}

/// `text` made safe for one line of markdown: on one line, at most 400
/// characters, with the characters that start markup, links, mentions or
/// HTML escaped (an agent's words must not ping people or render as a link).
fn markdown_inline(text: &str) -> String {
    let line = afk_core::prompt::one_line(text, 400);
    let mut out = String::with_capacity(line.len());
    for c in line.chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '@' | '|' | '!' | '~'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use afk_core::{Outcome, Timestamp};

    fn record() -> RunRecord {
        RunRecord::dispatched(
            "t-1",
            Timestamp::parse_rfc3339("2026-06-10T12:00:00Z").unwrap(),
        )
    }

    #[test]
    fn the_cost_is_shown_or_said_to_be_not_reported() {
        let body = progress_body(Phase::Worktree, "infra", 7, "main", &record());
        assert!(body.contains("\nCost: not reported\n"), "{body}");
        let mut paid = record();
        paid.cost = Some(Cost { micro_usd: 41_200 });
        let body = progress_body(Phase::Ci, "infra", 7, "main", &paid);
        assert!(body.contains("\nCost: $0.0412\n"), "{body}");
        // The figure survives the record's round trip.
        assert_eq!(extract_record(&body).unwrap().unwrap().cost, paid.cost);
    }

    #[test]
    fn a_hand_back_says_why_on_one_line_that_cannot_ping_or_link() {
        let mut r = record();
        r.outcome = Some(Outcome {
            kind: OutcomeKind::NeedsHuman,
            reason: "the agent's turn errored: claude: API Error: 401 @alice see [x](http://evil)\n<img src=x>".into(),
            by: None,
        });
        let body = progress_body(Phase::Worktree, "infra", 7, "main", &r);
        let line = body
            .lines()
            .find(|l| l.starts_with("_Handed to a human:"))
            .unwrap_or_else(|| panic!("{body}"));
        assert!(line.contains("claude: API Error: 401"), "{line}");
        assert!(line.contains("\\@alice"), "{line}");
        assert!(line.contains("\\[x\\](http://evil)"), "{line}");
        assert!(line.contains("\\<img src=x\\>"), "{line}");
        assert!(!line.contains("\n"));
        // A landed run says nothing of a hand-back.
        r.outcome = Some(Outcome {
            kind: OutcomeKind::Done,
            reason: "CI is green".into(),
            by: None,
        });
        assert!(!progress_body(Phase::Done, "infra", 7, "main", &r).contains("Handed"));
    }

    #[test]
    fn the_checklist_shows_the_pull_request_and_that_a_hand_back_leaves_it() {
        let mut r = record();
        r.landing = Some(afk_core::record::Landing::on("afk/7-rotate"));
        let body = progress_body(Phase::Worktree, "infra", 7, "main", &r);
        assert!(
            body.contains("Lands through a pull request from `afk/7-rotate`"),
            "{body}"
        );
        let landing = r.landing.as_mut().unwrap();
        landing.pull_request = Some(12);
        landing.handed_over = true;
        let body = progress_body(Phase::Ci, "infra", 7, "main", &r);
        assert!(body.contains(
            "Pull request: #12 (open) from `afk/7-rotate`, waiting for a human's review"
        ));
        r.outcome = Some(Outcome::stopped(Some("alice".into())));
        let body = progress_body(Phase::Ci, "infra", 7, "main", &r);
        assert!(body.contains("Pull request #12 is left as it is"), "{body}");
        assert!(!body.contains("waiting for a human's review"));
    }
}
