//! The checklist runner's decisions, as plain functions over plain values.
//!
//! - [`select_batch`]: which to-do rows the next round takes (tier order,
//!   then priority P0 < P1 < P2 < anything else, then file order);
//! - [`judge`]: whether an agent's run finished an item, and if not why;
//! - [`render_template`]: the prompt template, `{{name}}` placeholders filled
//!   in one pass (a value is never expanded again);
//! - [`parse_synthesis`]: new backlog rows from an agent's answer, with code
//!   fences and ANSI escapes stripped and every dropped row explained;
//! - [`slug`]: the directory name of a tier;
//! - [`oversized_cell`]: a row too big to run (a cell over [`CELL_CAP`]);
//! - [`replay`]: an edit made to one version of a file, made again on
//!   another;
//! - [`progress`]: counts per status and per tier, and which tiers are due
//!   their report.
//!
//! Running agents, writing files and keeping state are the rest of the
//! crate's job; nothing here does I/O (a tidy test reads these files for
//! `std::fs`, `std::process`, `std::env`, `std::net` and tokio).

mod cells;
mod ids;
pub mod progress;
mod replay;
pub mod spend;

pub use cells::{CELL_CAP, oversized_cell};
pub use ids::{unsafe_id, valid_id};
pub use replay::{MAX_DIFF, replay};

use std::collections::HashSet;
use std::fmt;

use afk_core::prompt::strip_ansi;
use checklist::sut::{Checklist, Item, NewItem, Status};

/// The rank of a priority cell: `P0` first, unknown or empty last.
fn priority_rank(priority: &str) -> u32 {
    let p = priority.trim();
    p.strip_prefix(['P', 'p'])
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(u32::MAX)
}

/// Up to `size` to-do items for the next round: tier number first, then
/// priority, then the order they appear in the file.
pub fn select_batch(checklist: &Checklist, size: usize) -> Vec<&Item> {
    let mut todo: Vec<(usize, &Item)> = checklist
        .items
        .iter()
        .enumerate()
        .filter(|(_, i)| i.status == Status::Todo)
        .collect();
    todo.sort_by_key(|(index, item)| (item.tier, priority_rank(&item.priority), *index));
    todo.into_iter().take(size).map(|(_, i)| i).collect()
}

/// The directory-safe name of a tier: `Tier 1: Core reliability` →
/// `tier-1-core-reliability`.
pub fn slug(tier: u32, name: &str) -> String {
    let mut out = format!("tier-{tier}");
    let mut dash = true;
    let mut body = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            body.push(c.to_ascii_lowercase());
            dash = false;
        } else if !dash {
            body.push('-');
            dash = true;
        }
    }
    let body = body.trim_end_matches('-');
    if !body.is_empty() {
        out.push('-');
        out.push_str(body);
    }
    out
}

/// What an agent run produced, as the completion rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEvidence<'a> {
    /// The item's id.
    pub id: &'a str,
    /// The exit code; `None` when it was killed or died by a signal.
    pub exit_code: Option<i32>,
    /// Whether it was killed at the timeout.
    pub timed_out: bool,
    /// Its output (stdout and stderr).
    pub output: &'a str,
    /// The size in bytes of `FINAL_REPORT.md`, `None` when it does not exist.
    pub report_bytes: Option<u64>,
}

/// Why an item failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailReason {
    /// Killed at the timeout.
    TimedOut,
    /// Exited non-zero (or by a signal: `None`).
    ExitCode(Option<i32>),
    /// Exited 0 without printing `ITEM COMPLETE: <id>`.
    NoCompletionMarker,
    /// No `FINAL_REPORT.md`.
    NoReport,
    /// `FINAL_REPORT.md` is empty.
    EmptyReport,
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::TimedOut => f.write_str("killed at the timeout"),
            FailReason::ExitCode(Some(code)) => write!(f, "the agent exited with code {code}"),
            FailReason::ExitCode(None) => f.write_str("the agent was killed by a signal"),
            FailReason::NoCompletionMarker => {
                f.write_str("the agent exited 0 but never printed the completion marker")
            }
            FailReason::NoReport => f.write_str("the agent wrote no FINAL_REPORT.md"),
            FailReason::EmptyReport => f.write_str("FINAL_REPORT.md is empty"),
        }
    }
}

/// The marker an agent prints when it has finished an item.
pub fn completion_marker(id: &str) -> String {
    format!("ITEM COMPLETE: {id}")
}

/// Done when the agent exited 0 within the timeout, printed
/// `ITEM COMPLETE: <id>` (the id whole, not a prefix of a longer one) and
/// wrote a non-empty report; otherwise the first reason it is not.
pub fn judge(evidence: &RunEvidence<'_>) -> Result<(), FailReason> {
    if evidence.timed_out {
        return Err(FailReason::TimedOut);
    }
    if evidence.exit_code != Some(0) {
        return Err(FailReason::ExitCode(evidence.exit_code));
    }
    let marker = completion_marker(evidence.id);
    let marked = evidence.output.match_indices(&marker).any(|(at, _)| {
        evidence.output[at + marker.len()..]
            .chars()
            .next()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    });
    if !marked {
        return Err(FailReason::NoCompletionMarker);
    }
    match evidence.report_bytes {
        None => Err(FailReason::NoReport),
        Some(0) => Err(FailReason::EmptyReport),
        Some(_) => Ok(()),
    }
}

/// A template problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// `{{name}}` with a name the runner does not fill.
    #[error("unknown placeholder {{{{{name}}}}} at byte {at} (known: {known})")]
    Unknown {
        /// The name.
        name: String,
        /// Its byte offset.
        at: usize,
        /// The names that are filled.
        known: String,
    },
    /// `{{` without `}}`.
    #[error("unclosed placeholder at byte {at}")]
    Unclosed {
        /// Its byte offset.
        at: usize,
    },
}

/// `template` with every `{{name}}` replaced by its value from `values`, in
/// one pass: text inserted from a value is never scanned again, so a mission
/// brief that happens to contain `{{id}}` stays as written.
pub fn render_template(template: &str, values: &[(&str, &str)]) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(template.len() + 1024);
    let mut rest = template;
    let mut offset = 0;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or(TemplateError::Unclosed { at: offset + open })?;
        let name = after[..close].trim();
        let value = values
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| TemplateError::Unknown {
                name: name.to_owned(),
                at: offset + open,
                known: values
                    .iter()
                    .map(|(k, _)| *k)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        out.push_str(value);
        let consumed = open + 2 + close + 2;
        rest = &rest[consumed..];
        offset += consumed;
    }
    out.push_str(rest);
    Ok(out)
}

/// `text` without markdown code-fence lines (```` ``` ```` or ```` ```json ````).
fn strip_fences(text: &str) -> String {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One row an agent proposed that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// Its position in the agent's array (0-based).
    pub index: usize,
    /// Why it was dropped.
    pub reason: String,
}

/// What came of a synthesis answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Synthesis {
    /// Rows to append, in the agent's order.
    pub rows: Vec<NewItem>,
    /// Rows not taken, each with its reason.
    pub dropped: Vec<Dropped>,
}

/// Why a synthesis answer could not be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SynthesisError {
    /// No `[` … `]` in the answer.
    #[error("the answer holds no JSON array")]
    NoArray,
    /// The array is not valid JSON (or never closed).
    #[error("the answer's JSON array does not parse: {0}")]
    Json(String),
}

fn field<'a>(row: &'a serde_json::Map<String, serde_json::Value>, key: &str) -> Option<&'a str> {
    row.get(key)
        .and_then(|v| v.as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// The tier a synthesised row names: a number, a numeric string, or
/// `"Tier 3: Name"`.
fn tier_of(value: Option<&serde_json::Value>) -> Option<(u32, Option<String>)> {
    match value? {
        serde_json::Value::Number(n) => n
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(|n| (n, None)),
        serde_json::Value::String(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse() {
                return Some((n, None));
            }
            let rest = s
                .strip_prefix("Tier ")
                .or_else(|| s.strip_prefix("tier "))?;
            let (n, name) = rest.split_once(':').unwrap_or((rest, ""));
            let name = name.trim();
            Some((
                n.trim().parse().ok()?,
                (!name.is_empty()).then(|| name.to_owned()),
            ))
        }
        _ => None,
    }
}

/// New rows from an agent's answer. The answer may be wrapped in code fences
/// and coloured with ANSI escapes; the JSON array is the text from the first
/// `[` to the last `]`. A row is dropped (with its reason) when it is not an
/// object, lacks a tier, id, title or priority, has an id unsafe as a
/// directory name, a priority other than `P<n>`, or an id already in
/// `existing` or earlier in the answer. The tier's name comes from the
/// checklist when the tier exists, else from the row (`tier_name`, or the
/// `"Tier n: Name"` form), else `Synthesised`.
pub fn parse_synthesis(answer: &str, checklist: &Checklist) -> Result<Synthesis, SynthesisError> {
    let text = strip_fences(&strip_ansi(answer));
    let start = text.find('[').ok_or(SynthesisError::NoArray)?;
    let end = text
        .rfind(']')
        .filter(|e| *e > start)
        .ok_or_else(|| SynthesisError::Json("the array is never closed with ']'".into()))?;
    let values: Vec<serde_json::Value> = serde_json::from_str(&text[start..=end])
        .map_err(|e| SynthesisError::Json(e.to_string()))?;
    let mut seen: HashSet<String> = checklist.items.iter().map(|i| i.id.clone()).collect();
    let mut out = Synthesis::default();
    for (index, value) in values.iter().enumerate() {
        let drop = |reason: String| Dropped { index, reason };
        let Some(row) = value.as_object() else {
            out.dropped.push(drop("not a JSON object".into()));
            continue;
        };
        let Some((tier, named)) = tier_of(row.get("tier")) else {
            out.dropped
                .push(drop("no tier (a number or \"Tier n: Name\")".into()));
            continue;
        };
        let (Some(id), Some(title), Some(priority)) = (
            field(row, "id"),
            field(row, "title"),
            field(row, "priority"),
        ) else {
            out.dropped
                .push(drop("missing one of id, title, priority".into()));
            continue;
        };
        if !valid_id(id) {
            out.dropped.push(drop(format!(
                "id {id:?} is not letters, digits, '-', '_' or '.'"
            )));
            continue;
        }
        if priority_rank(priority) == u32::MAX {
            out.dropped.push(drop(format!(
                "{id}: priority {priority:?} is not P0, P1, P2…"
            )));
            continue;
        }
        if !seen.insert(id.to_owned()) {
            out.dropped
                .push(drop(format!("{id}: the id is already in the checklist")));
            continue;
        }
        let tier_name = checklist
            .tiers
            .iter()
            .find(|t| t.number == tier)
            .map(|t| t.name.clone())
            .or(named)
            .or_else(|| field(row, "tier_name").map(str::to_owned))
            .unwrap_or_else(|| "Synthesised".to_owned());
        out.rows.push(NewItem {
            tier,
            tier_name,
            id: id.to_owned(),
            title: title.to_owned(),
            priority: priority.to_ascii_uppercase(),
            risk: field(row, "risk").unwrap_or("").to_owned(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use checklist::sut::parse;

    const FILE: &str = "## Tier 2: Security

| Status | ID | Title | Priority | Risk |
|---|---|---|---|---|
| ☐ | SEC-2 | b | P2 | x |
| ☐ | SEC-1 | a | P0 | x |
| ✅ | SEC-0 | done | P0 | x |

## Tier 1: Core

| Status | ID | Title | Priority | Risk |
|---|---|---|---|---|
| ☐ | C-3 | none | | x |
| ⏳ | C-4 | running | P0 | x |
| ☐ | C-1 | a | P1 | x |
| ❌ | C-5 | failed | P0 | x |
| ☐ | C-2 | b | P1 | x |
";

    fn batch(size: usize) -> Vec<String> {
        let (c, d) = parse(FILE);
        assert!(d.is_empty(), "{d:?}");
        select_batch(&c, size)
            .iter()
            .map(|i| i.id.clone())
            .collect()
    }

    #[test]
    fn batches_go_by_tier_then_priority_then_file_order() {
        assert_eq!(batch(10), ["C-1", "C-2", "C-3", "SEC-1", "SEC-2"]);
        assert_eq!(batch(2), ["C-1", "C-2"]);
        assert!(batch(0).is_empty());
    }

    #[test]
    fn slugs() {
        for (tier, name, want) in [
            (1, "Core reliability", "tier-1-core-reliability"),
            (2, "  Security & Privacy!! ", "tier-2-security-privacy"),
            (3, "", "tier-3"),
            (4, "Ünïcode / ok", "tier-4-n-code-ok"),
        ] {
            assert_eq!(slug(tier, name), want, "{name:?}");
        }
    }

    fn check_judge(
        exit_code: Option<i32>,
        timed_out: bool,
        output: &str,
        report: Option<u64>,
        want: Result<(), FailReason>,
    ) {
        let evidence = RunEvidence {
            id: "CORE-001",
            exit_code,
            timed_out,
            output,
            report_bytes: report,
        };
        assert_eq!(judge(&evidence), want, "{evidence:?}");
    }

    #[test]
    fn the_completion_rule() {
        let ok = "work…\nITEM COMPLETE: CORE-001\n";
        check_judge(Some(0), false, ok, Some(10), Ok(()));
        check_judge(Some(0), false, "ITEM COMPLETE: CORE-001", Some(1), Ok(()));
        check_judge(Some(0), true, ok, Some(10), Err(FailReason::TimedOut));
        check_judge(
            Some(1),
            false,
            ok,
            Some(10),
            Err(FailReason::ExitCode(Some(1))),
        );
        check_judge(None, false, ok, Some(10), Err(FailReason::ExitCode(None)));
        check_judge(
            Some(0),
            false,
            "done",
            Some(10),
            Err(FailReason::NoCompletionMarker),
        );
        // Another item's marker, or a longer id, is not this item's.
        check_judge(
            Some(0),
            false,
            "ITEM COMPLETE: CORE-0011",
            Some(10),
            Err(FailReason::NoCompletionMarker),
        );
        check_judge(
            Some(0),
            false,
            "ITEM COMPLETE: CORE-002",
            Some(10),
            Err(FailReason::NoCompletionMarker),
        );
        check_judge(Some(0), false, ok, None, Err(FailReason::NoReport));
        check_judge(Some(0), false, ok, Some(0), Err(FailReason::EmptyReport));
    }

    #[test]
    fn templates_fill_once_and_name_unknown_placeholders() {
        let values = [("id", "X-1"), ("brief", "say {{id}}")];
        assert_eq!(
            render_template("{{ id }}: {{brief}}!", &values).as_deref(),
            Ok("X-1: say {{id}}!")
        );
        assert_eq!(
            render_template("a {{nope}}", &values),
            Err(TemplateError::Unknown {
                name: "nope".into(),
                at: 2,
                known: "id, brief".into()
            })
        );
        assert_eq!(
            render_template("a {{id", &values),
            Err(TemplateError::Unclosed { at: 2 })
        );
        assert_eq!(
            render_template("plain { } }}", &values).as_deref(),
            Ok("plain { } }}")
        );
    }

    #[test]
    fn ansi_escapes_are_stripped() {
        for (input, want) in [
            ("\u{1b}[1;32mgreen\u{1b}[0m", "green"),
            ("\u{1b}]0;title\u{7}text", "text"),
            ("\u{1b}]8;;http://x\u{1b}\\link", "link"),
            ("no escapes [1]", "no escapes [1]"),
            ("\u{1b}", ""),
        ] {
            assert_eq!(strip_ansi(input), want, "{input:?}");
        }
    }

    #[test]
    fn synthesis_takes_valid_new_rows_and_explains_the_rest() {
        let (c, _) = parse(FILE);
        let answer = "Here you go:\n\u{1b}[36m```json\n[\n\
            {\"tier\": 1, \"id\": \"C-9\", \"title\": \"new core\", \"priority\": \"p1\", \"risk\": \"High\"},\n\
            {\"tier\": \"Tier 7: Chaos\", \"id\": \"CH-1\", \"title\": \"chaos\", \"priority\": \"P0\"},\n\
            {\"tier\": 1, \"id\": \"C-1\", \"title\": \"dup of checklist\", \"priority\": \"P1\"},\n\
            {\"tier\": 1, \"id\": \"C-9\", \"title\": \"dup in answer\", \"priority\": \"P1\"},\n\
            {\"tier\": 1, \"id\": \"../etc\", \"title\": \"escape\", \"priority\": \"P1\"},\n\
            {\"tier\": 1, \"id\": \"C-10\", \"title\": \"bad priority\", \"priority\": \"urgent\"},\n\
            {\"id\": \"C-11\", \"title\": \"no tier\", \"priority\": \"P1\"},\n\
            {\"tier\": 1, \"id\": \"C-12\", \"priority\": \"P1\"},\n\
            \"a string\"\n]\n```\u{1b}[0m\n";
        let s = parse_synthesis(answer, &c).unwrap();
        let ids: Vec<_> = s
            .rows
            .iter()
            .map(|r| {
                (
                    r.id.as_str(),
                    r.tier,
                    r.tier_name.as_str(),
                    r.priority.as_str(),
                )
            })
            .collect();
        assert_eq!(ids, [("C-9", 1, "Core", "P1"), ("CH-1", 7, "Chaos", "P0")]);
        let dropped: Vec<_> = s.dropped.iter().map(|d| d.index).collect();
        assert_eq!(dropped, [2, 3, 4, 5, 6, 7, 8]);
        assert!(s.dropped[0].reason.contains("already"), "{:?}", s.dropped);
    }

    #[test]
    fn unreadable_synthesis_answers_are_errors() {
        let (c, _) = parse(FILE);
        assert_eq!(
            parse_synthesis("no rows today", &c),
            Err(SynthesisError::NoArray)
        );
        assert!(matches!(
            parse_synthesis("[{\"tier\": 1, \"id\": \"cut off", &c),
            Err(SynthesisError::Json(_))
        ));
        assert!(matches!(
            parse_synthesis("[{\"tier\": 1,]", &c),
            Err(SynthesisError::Json(_))
        ));
        assert_eq!(
            parse_synthesis("```\n[]\n```", &c),
            Ok(Synthesis::default())
        );
    }
}
