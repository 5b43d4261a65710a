//! The run record, embedded in the progress comment as one hidden line:
//! `<!-- afk-run v1 {json} -->`.
//!
//! The JSON form here is afk's own and versioned. Reading is strict: a marker
//! that cannot be read (another version, broken JSON, an unknown field, a bad
//! time, two markers in one body) is an error naming the line, never a guess.
//! An unknown field is refused rather than skipped because the watcher writes
//! the record back: skipping would silently drop what a newer writer stored.
//!
//! The JSON is written on one line with `<`, `>` and `&` escaped as `\u003c`,
//! `\u003e` and `\u0026`, so no value (a reason quoting `-->`, say) can end
//! the HTML comment early or be read as markup.

use afk_core::record::Landing;
use afk_core::{CiStatus, Cost, Outcome, OutcomeKind, RunRecord, Timestamp};
use serde::{Deserialize, Serialize};

const PREFIX: &str = "<!-- afk-run";
const VERSION: &str = "v1";
const SUFFIX: &str = "-->";

/// A marker that is present but cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MarkerError {
    /// The marker line does not end with `-->`.
    #[error("line {line}: the afk-run marker is not closed with -->")]
    Unterminated {
        /// 1-based line number in the comment body.
        line: usize,
    },
    /// The marker names a version this build cannot read.
    #[error(
        "line {line}: afk-run marker version {version:?} is not supported (this build reads v1)"
    )]
    UnsupportedVersion {
        /// 1-based line number.
        line: usize,
        /// The version token found.
        version: String,
    },
    /// The JSON does not match the v1 record.
    #[error("line {line}: afk-run v1 record cannot be read: {message}")]
    Invalid {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The body carries more than one marker, so which one is current is
    /// unknowable.
    #[error("lines {first} and {second}: more than one afk-run marker in one comment")]
    Duplicate {
        /// The first marker's line.
        first: usize,
        /// The second marker's line.
        second: usize,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireOutcome {
    kind: String,
    reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    by: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRecord {
    thread_id: String,
    dispatched_at: String,
    attempt: u32,
    #[serde(default)]
    commit: Option<String>,
    #[serde(default)]
    commit_seen_at: Option<String>,
    #[serde(default)]
    first_red_at: Option<String>,
    #[serde(default)]
    fix_forward_attempts: u32,
    #[serde(default)]
    fix_forward_commit: Option<String>,
    #[serde(default)]
    turn_sent_at: Option<String>,
    #[serde(default)]
    thread_turns: u32,
    #[serde(default)]
    last_ci: Option<String>,
    #[serde(default)]
    outcome: Option<WireOutcome>,
    #[serde(default)]
    notified: bool,
    /// What the run cost so far, in millionths of a US dollar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cost_micro_usd: Option<u64>,
    /// The part of it its earlier threads spent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    earlier_threads_cost_micro_usd: Option<u64>,
    /// The run's branch and pull request, when it lands through one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    landing: Option<WireLanding>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireLanding {
    branch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pull_request: Option<u64>,
    #[serde(default)]
    handed_over: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    answered_review: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pull_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    foreign_pull: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    merge_refused: bool,
}

impl From<&RunRecord> for WireRecord {
    fn from(r: &RunRecord) -> Self {
        WireRecord {
            thread_id: r.thread_id.clone(),
            dispatched_at: r.dispatched_at.to_rfc3339(),
            attempt: r.attempt,
            commit: r.commit.clone(),
            commit_seen_at: r.commit_seen_at.map(Timestamp::to_rfc3339),
            first_red_at: r.first_red_at.map(Timestamp::to_rfc3339),
            fix_forward_attempts: r.fix_forward_attempts,
            fix_forward_commit: r.fix_forward_commit.clone(),
            turn_sent_at: r.turn_sent_at.map(Timestamp::to_rfc3339),
            thread_turns: r.thread_turns,
            last_ci: r.last_ci.map(|c| c.as_str().to_owned()),
            outcome: r.outcome.as_ref().map(|o| WireOutcome {
                kind: o.kind.as_str().to_owned(),
                reason: o.reason.clone(),
                by: o.by.clone(),
            }),
            notified: r.notified,
            cost_micro_usd: r.cost.map(|c| c.micro_usd),
            earlier_threads_cost_micro_usd: r.earlier_threads_cost.map(|c| c.micro_usd),
            landing: r.landing.as_ref().map(|l| WireLanding {
                branch: l.branch.clone(),
                pull_request: l.pull_request,
                handed_over: l.handed_over,
                answered_review: l.answered_review,
                pull_state: l.pull_state.map(|p| p.as_str().to_owned()),
                foreign_pull: l.foreign_pull,
                merge_refused: l.merge_refused,
            }),
        }
    }
}

impl WireRecord {
    fn into_record(self) -> Result<RunRecord, String> {
        let time = |field: &str, value: &str| {
            Timestamp::parse_rfc3339(value).map_err(|e| format!("{field}: {e}"))
        };
        let optional_time =
            |field: &str, value: Option<String>| value.map(|v| time(field, &v)).transpose();
        if self.thread_id.trim().is_empty() {
            return Err("thread_id: must not be empty".to_owned());
        }
        Ok(RunRecord {
            thread_id: self.thread_id,
            dispatched_at: time("dispatched_at", &self.dispatched_at)?,
            attempt: self.attempt,
            commit: self.commit,
            commit_seen_at: optional_time("commit_seen_at", self.commit_seen_at)?,
            first_red_at: optional_time("first_red_at", self.first_red_at)?,
            fix_forward_attempts: self.fix_forward_attempts,
            fix_forward_commit: self.fix_forward_commit,
            turn_sent_at: optional_time("turn_sent_at", self.turn_sent_at)?,
            thread_turns: self.thread_turns,
            last_ci: self
                .last_ci
                .map(|c| c.parse::<CiStatus>().map_err(|e| format!("last_ci: {e}")))
                .transpose()?,
            outcome: self
                .outcome
                .map(|o| {
                    OutcomeKind::parse(&o.kind)
                        .map(|kind| Outcome {
                            kind,
                            reason: o.reason,
                            by: o.by,
                        })
                        .ok_or_else(|| {
                            format!(
                                "outcome.kind: unknown outcome {:?} (expected done, needs-human, frozen or stopped)",
                                o.kind
                            )
                        })
                })
                .transpose()?,
            notified: self.notified,
            cost: self.cost_micro_usd.map(|micro_usd| Cost { micro_usd }),
            earlier_threads_cost: self
                .earlier_threads_cost_micro_usd
                .map(|micro_usd| Cost { micro_usd }),
            landing: self
                .landing
                .map(|l| {
                    let pull_state = l
                        .pull_state
                        .map(|p| {
                            afk_core::land::PullState::parse(&p).ok_or_else(|| {
                                format!("landing.pull_state: {p:?} is not open, merged or closed")
                            })
                        })
                        .transpose()?;
                    if afk_core::land::is_run_branch_name(&l.branch) {
                        Ok(Landing {
                            branch: l.branch,
                            pull_request: l.pull_request,
                            handed_over: l.handed_over,
                            answered_review: l.answered_review,
                            pull_state,
                            foreign_pull: l.foreign_pull,
                            merge_refused: l.merge_refused,
                        })
                    } else {
                        Err(format!("landing.branch: {:?} is not a run branch (afk/<issue>-<slug>)", l.branch))
                    }
                })
                .transpose()?,
        })
    }
}

/// The marker line for `record`, without a trailing newline.
pub fn marker_line(record: &RunRecord) -> String {
    // Serialising a struct of strings, numbers and options cannot fail.
    let json = serde_json::to_string(&WireRecord::from(record)).unwrap_or_default();
    // `<`, `>` and `&` only occur inside JSON strings, where these escapes
    // mean the same characters.
    let json = json
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026");
    format!("{PREFIX} {VERSION} {json} {SUFFIX}")
}

/// The whole progress comment: the visible checklist, a blank line, and the
/// hidden run record.
pub fn comment_body(checklist: &str, record: &RunRecord) -> String {
    let mut body = checklist.to_owned();
    if !body.ends_with('\n') {
        body.push('\n');
    }
    body.push('\n');
    body.push_str(&marker_line(record));
    body.push('\n');
    body
}

/// Whether `body` carries an afk-run marker at all (readable or not). This is
/// how the progress comment is found among an issue's comments.
pub fn has_marker(body: &str) -> bool {
    body.lines().any(|l| l.trim_start().starts_with(PREFIX))
}

/// Reads the run record out of a whole comment body. Text around the marker
/// is ignored. `Ok(None)` means the body has no marker at all.
pub fn extract_record(body: &str) -> Result<Option<RunRecord>, MarkerError> {
    let mut found: Option<(usize, &str)> = None;
    for (index, line) in body.lines().enumerate() {
        let line_no = index + 1;
        let trimmed = line.trim();
        if !trimmed.starts_with(PREFIX) {
            continue;
        }
        if let Some((first, _)) = found {
            return Err(MarkerError::Duplicate {
                first,
                second: line_no,
            });
        }
        found = Some((line_no, trimmed));
    }
    let Some((line, text)) = found else {
        return Ok(None);
    };
    let inner = text
        .strip_suffix(SUFFIX)
        .ok_or(MarkerError::Unterminated { line })?;
    let inner = inner[PREFIX.len()..].trim();
    let (version, json) = inner.split_once(char::is_whitespace).unwrap_or((inner, ""));
    if version != VERSION {
        return Err(MarkerError::UnsupportedVersion {
            line,
            version: version.to_owned(),
        });
    }
    let wire: WireRecord = serde_json::from_str(json.trim()).map_err(|e| MarkerError::Invalid {
        line,
        message: e.to_string(),
    })?;
    wire.into_record()
        .map(Some)
        .map_err(|message| MarkerError::Invalid { line, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn sample() -> RunRecord {
        RunRecord {
            thread_id: "5f0c1c9e-3b0d-5c55-9a5e-2d1f8b7a6c4e".into(),
            dispatched_at: ts("2026-06-10T12:00:00Z"),
            attempt: 1,
            commit: Some("a1b2c3d4e5f6".into()),
            commit_seen_at: Some(ts("2026-06-10T12:30:00Z")),
            first_red_at: Some(ts("2026-06-10T12:35:00Z")),
            fix_forward_attempts: 2,
            fix_forward_commit: Some("a1b2c3d4e5f6".into()),
            turn_sent_at: Some(ts("2026-06-10T12:40:00Z")),
            thread_turns: 2,
            last_ci: Some(CiStatus::Red),
            outcome: Some(Outcome {
                kind: OutcomeKind::Frozen,
                reason: "budget <spent> --> & gone".into(),
                by: None,
            }),
            notified: false,
            cost: None,
            earlier_threads_cost: None,
            landing: None,
        }
    }

    #[test]
    fn the_marker_line_is_stable() {
        insta::assert_snapshot!(marker_line(&sample()), @r#"<!-- afk-run v1 {"thread_id":"5f0c1c9e-3b0d-5c55-9a5e-2d1f8b7a6c4e","dispatched_at":"2026-06-10T12:00:00Z","attempt":1,"commit":"a1b2c3d4e5f6","commit_seen_at":"2026-06-10T12:30:00Z","first_red_at":"2026-06-10T12:35:00Z","fix_forward_attempts":2,"fix_forward_commit":"a1b2c3d4e5f6","turn_sent_at":"2026-06-10T12:40:00Z","thread_turns":2,"last_ci":"red","outcome":{"kind":"frozen","reason":"budget \u003cspent\u003e --\u003e \u0026 gone"},"notified":false} -->"#);
    }

    #[test]
    fn round_trip_through_a_whole_body_with_text_around() {
        let body = format!(
            "Some intro a human wrote.\n\n{}\ntrailing text\n",
            comment_body(
                "### AFK run progress\n\n- [~] Worktree created\n",
                &sample()
            )
        );
        assert!(has_marker(&body));
        assert_eq!(extract_record(&body), Ok(Some(sample())));
        // Windows line endings from a web edit read the same.
        assert_eq!(
            extract_record(&body.replace('\n', "\r\n")),
            Ok(Some(sample()))
        );
    }

    #[test]
    fn no_marker_is_none() {
        assert_eq!(extract_record("just a comment\n<!-- other -->"), Ok(None));
        assert!(!has_marker("just a comment"));
    }

    #[track_caller]
    fn check_err(body: &str, expected: &str) {
        let err = extract_record(body).unwrap_err();
        assert_eq!(err.to_string(), expected);
    }

    #[test]
    fn unreadable_markers_are_errors_not_guesses() {
        let ok = r#"{"thread_id":"t","dispatched_at":"2026-06-10T12:00:00Z","attempt":0}"#;
        assert!(
            extract_record(&format!("<!-- afk-run v1 {ok} -->"))
                .unwrap()
                .is_some()
        );
        check_err(
            &format!("x\n<!-- afk-run v2 {ok} -->"),
            "line 2: afk-run marker version \"v2\" is not supported (this build reads v1)",
        );
        check_err(
            &format!("<!-- afk-run v1 {ok}"),
            "line 1: the afk-run marker is not closed with -->",
        );
        check_err(
            "<!-- afk-run v1 {\"thread_id\":\"t\"} -->",
            "line 1: afk-run v1 record cannot be read: missing field `dispatched_at` at line 1 column 17",
        );
        check_err(
            r#"<!-- afk-run v1 {"thread_id":"t","dispatched_at":"noon","attempt":0} -->"#,
            "line 1: afk-run v1 record cannot be read: dispatched_at: \"noon\" is not an RFC 3339 time (expected e.g. 2026-06-10T12:00:00Z)",
        );
        check_err(
            r#"<!-- afk-run v1 {"thread_id":"t","dispatched_at":"2026-06-10T12:00:00Z","attempt":0,"extra":1} -->"#,
            "line 1: afk-run v1 record cannot be read: unknown field `extra`, expected one of `thread_id`, `dispatched_at`, `attempt`, `commit`, `commit_seen_at`, `first_red_at`, `fix_forward_attempts`, `fix_forward_commit`, `turn_sent_at`, `thread_turns`, `last_ci`, `outcome`, `notified`, `cost_micro_usd`, `earlier_threads_cost_micro_usd`, `landing` at line 1 column 75",
        );
        check_err(
            r#"<!-- afk-run v1 {"thread_id":"t","dispatched_at":"2026-06-10T12:00:00Z","attempt":-1} -->"#,
            "line 1: afk-run v1 record cannot be read: invalid value: integer `-1`, expected u32 at line 1 column 68",
        );
        check_err(
            r#"<!-- afk-run v1 {"thread_id":"t","dispatched_at":"2026-06-10T12:00:00Z","attempt":0,"outcome":{"kind":"won","reason":""}} -->"#,
            "line 1: afk-run v1 record cannot be read: outcome.kind: unknown outcome \"won\" (expected done, needs-human, frozen or stopped)",
        );
        check_err(
            r#"<!-- afk-run v1 {"thread_id":" ","dispatched_at":"2026-06-10T12:00:00Z","attempt":0} -->"#,
            "line 1: afk-run v1 record cannot be read: thread_id: must not be empty",
        );
        check_err(
            &format!("<!-- afk-run v1 {ok} -->\n<!-- afk-run v1 {ok} -->"),
            "lines 1 and 2: more than one afk-run marker in one comment",
        );
        check_err(
            "<!-- afk-run v1 -->",
            "line 1: afk-run v1 record cannot be read: EOF while parsing a value at line 1 column 0",
        );
    }

    fn arb_time() -> impl Strategy<Value = Timestamp> {
        // 1970 .. 2200, whole seconds.
        (0i64..7_258_118_400).prop_map(|s| Timestamp::from_unix_seconds(s).unwrap())
    }

    fn arb_record() -> impl Strategy<Value = RunRecord> {
        let head = (
            "\\PC{1,40}".prop_filter("non-blank", |s: &String| !s.trim().is_empty()),
            arb_time(),
            any::<u32>(),
            prop::option::of("[0-9a-f]{7,40}"),
            prop::option::of(arb_time()),
            prop::option::of(arb_time()),
            any::<u32>(),
            prop::option::of("\\PC{0,12}"),
        );
        let tail = (
            prop::option::of(arb_time()),
            any::<u32>(),
            prop::option::of(prop::sample::select(CiStatus::ALL.to_vec())),
            prop::option::of((
                prop::sample::select(vec![
                    OutcomeKind::Done,
                    OutcomeKind::NeedsHuman,
                    OutcomeKind::Frozen,
                    OutcomeKind::Stopped,
                ]),
                ".{0,60}",
                prop::option::of("[a-z\\[\\]-]{1,20}"),
            )),
            any::<bool>(),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u64>()),
        );
        (head, tail).prop_map(|(head, tail)| {
            let (thread_id, dispatched_at, attempt, commit, seen, red, ff, ff_commit) = head;
            let (turn_sent_at, thread_turns, last_ci, outcome, notified, cost, earlier) = tail;
            RunRecord {
                thread_id,
                dispatched_at,
                attempt,
                commit,
                commit_seen_at: seen,
                first_red_at: red,
                fix_forward_attempts: ff,
                fix_forward_commit: ff_commit,
                turn_sent_at,
                thread_turns,
                last_ci,
                outcome: outcome.map(|(kind, reason, by)| Outcome { kind, reason, by }),
                notified,
                cost: cost.map(|micro_usd| Cost { micro_usd }),
                earlier_threads_cost: earlier.map(|micro_usd| Cost { micro_usd }),
                landing: None,
            }
        })
    }

    #[test]
    fn a_landing_round_trips_and_a_foreign_branch_is_refused() {
        let record = RunRecord {
            landing: Some(Landing {
                branch: "afk/7-fix-login".into(),
                pull_request: Some(12),
                handed_over: true,
                answered_review: Some(99),
                pull_state: Some(afk_core::land::PullState::Open),
                foreign_pull: None,
                merge_refused: true,
            }),
            ..sample()
        };
        let line = marker_line(&record);
        assert!(line.contains(r#""landing":{"branch":"afk/7-fix-login","pull_request":12,"handed_over":true,"answered_review":99,"pull_state":"open","merge_refused":true}"#), "{line}");
        assert_eq!(extract_record(&line).unwrap(), Some(record));
        let forged = line.replace("afk/7-fix-login", "main");
        let err = extract_record(&forged).unwrap_err();
        assert!(err.to_string().contains("landing.branch"), "{err}");
    }

    proptest! {
        #[test]
        fn records_round_trip(record in arb_record(), before in "[^<]{0,40}", after in "[^<]{0,40}") {
            let body = format!("{before}\n{}{after}", comment_body("### AFK run progress\n", &record));
            prop_assert_eq!(extract_record(&body), Ok(Some(record.clone())));
            // The marker is one line and no value closes the comment early.
            let line = marker_line(&record);
            prop_assert!(!line.contains('\n'));
            prop_assert_eq!(line.matches("-->").count(), 1);
        }

        #[test]
        fn extraction_never_panics(body in "(\\PC|\n){0,200}") {
            let _ = extract_record(&body);
            let _ = extract_record(&format!("<!-- afk-run v1 {body} -->"));
        }
    }
}
