//! The SUT checklist (`SUT-CHECKLIST.md`): a markdown backlog in tiers, read
//! and written in place.
//!
//! This file is long because the parser, the single-cell writer and the
//! proptests that hold them to "only this cell changed" belong together;
//! about half of it is tests.
//!
//! - A tier starts at a level-2 heading `## Tier <n>: <name>` and runs to the
//!   next one. Other headings and prose are kept as they are and ignored.
//! - A tier's items are the rows of its markdown tables. Columns are found by
//!   header name, case-insensitively, in any order: `Status`, `ID`, `Title`
//!   (or `Entry` / `Target`), `Priority`, `Risk`, optional `Industry`,
//!   `Deployment`; other columns are kept and passed on as-is.
//! - Status glyphs: `☐` (or empty) to do, `⏳` running, `✅` done, `❌` failed.
//!
//! [`parse`] returns what it could read plus every problem with its line
//! number (an unknown glyph, a duplicate id, a row with the wrong number of
//! cells, a table without an `ID` column), never a bare error on the first.
//! [`set_status`] changes only that row's status cell: every other byte of
//! the file stays as it was. This module does no I/O; writing the file
//! atomically is the caller's job.

use std::fmt;
use std::ops::Range;

/// The status of a backlog item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// `☐` or an empty cell.
    Todo,
    /// `⏳`.
    Running,
    /// `✅`.
    Done,
    /// `❌`.
    Failed,
}

impl Status {
    /// The glyph written for this status.
    pub fn glyph(self) -> &'static str {
        match self {
            Status::Todo => "☐",
            Status::Running => "⏳",
            Status::Done => "✅",
            Status::Failed => "❌",
        }
    }

    fn from_cell(text: &str) -> Option<Status> {
        match text.trim() {
            "" | "☐" => Some(Status::Todo),
            "⏳" => Some(Status::Running),
            "✅" => Some(Status::Done),
            "❌" => Some(Status::Failed),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.glyph())
    }
}

/// One backlog row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Its id (`CORE-001`).
    pub id: String,
    /// Title (or Entry / Target).
    pub title: String,
    /// Priority (`P0`…), empty when the table has no such column.
    pub priority: String,
    /// Risk, empty when absent.
    pub risk: String,
    /// Industry, when the table has the column.
    pub industry: Option<String>,
    /// Deployment, when the table has the column.
    pub deployment: Option<String>,
    /// Other columns, in table order: (header, value).
    pub extra: Vec<(String, String)>,
    /// Status.
    pub status: Status,
    /// The tier's number.
    pub tier: u32,
    /// The tier's name.
    pub tier_name: String,
    /// 1-based line number of the row.
    pub line: usize,
    /// Byte range of the status cell's content (between the pipes).
    pub status_span: Range<usize>,
}

/// One tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tier {
    /// Its number.
    pub number: u32,
    /// Its name.
    pub name: String,
    /// 1-based line of its heading.
    pub line: usize,
    /// The header cells of its last table, and the byte offset just after
    /// that table's last row (where new rows go), if it has a table.
    pub last_table: Option<(Vec<String>, usize)>,
}

/// A parsed checklist.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checklist {
    /// The tiers, in file order.
    pub tiers: Vec<Tier>,
    /// Every item, in file order.
    pub items: Vec<Item>,
}

/// A problem, with the line it is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line number.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// A line with its byte offset.
struct Line<'a> {
    number: usize,
    start: usize,
    text: &'a str,
}

fn lines(text: &str) -> Vec<Line<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let body = raw.strip_suffix('\n').unwrap_or(raw);
        let body = body.strip_suffix('\r').unwrap_or(body);
        out.push(Line {
            number: i + 1,
            start,
            text: body,
        });
        start += raw.len();
    }
    out
}

/// The cells of a table row, as byte ranges relative to the line.
fn cells(line: &str) -> Option<Vec<Range<usize>>> {
    let trimmed = line.trim_end();
    let lead = trimmed.len() - trimmed.trim_start().len();
    if !trimmed[lead..].starts_with('|') {
        return None;
    }
    let mut bounds: Vec<usize> = trimmed
        .char_indices()
        .filter(|(_, c)| *c == '|')
        .map(|(i, _)| i)
        .collect();
    // A row without a closing pipe still ends at the line's end.
    if !trimmed.ends_with('|') {
        bounds.push(trimmed.len());
    }
    Some(bounds.windows(2).map(|w| w[0] + 1..w[1]).collect())
}

fn is_separator(cells: &[Range<usize>], line: &str) -> bool {
    !cells.is_empty()
        && cells.iter().all(|c| {
            let t = line[c.clone()].trim();
            !t.is_empty() && t.chars().all(|ch| matches!(ch, '-' | ':' | ' '))
        })
}

fn tier_heading(line: &str) -> Option<(u32, String)> {
    let rest = line.strip_prefix("## ")?.trim();
    let rest = rest
        .strip_prefix("Tier ")
        .or_else(|| rest.strip_prefix("tier "))?;
    let (number, name) = rest.split_once(':')?;
    Some((number.trim().parse().ok()?, name.trim().to_owned()))
}

/// Reads a checklist: the items it could read and every problem found.
pub fn parse(text: &str) -> (Checklist, Vec<Diagnostic>) {
    let mut checklist = Checklist::default();
    let mut diagnostics = Vec::new();
    // Each id's first line: duplicates are found in constant time, so a
    // 10,000-row backlog parses in linear time.
    let mut first_line: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let all = lines(text);
    let mut i = 0;
    while i < all.len() {
        let line = &all[i];
        if let Some((number, name)) = tier_heading(line.text) {
            checklist.tiers.push(Tier {
                number,
                name,
                line: line.number,
                last_table: None,
            });
            i += 1;
            continue;
        }
        let header = cells(line.text);
        let separator = all
            .get(i + 1)
            .and_then(|next| cells(next.text).map(|c| (c, next.text)));
        let (Some(header), Some((sep_cells, sep_text))) = (header, separator) else {
            i += 1;
            continue;
        };
        if !is_separator(&sep_cells, sep_text) {
            i += 1;
            continue;
        }
        // A table: header, separator, rows.
        let names: Vec<String> = header
            .iter()
            .map(|c| line.text[c.clone()].trim().to_owned())
            .collect();
        let find = |wanted: &[&str]| {
            names
                .iter()
                .position(|n| wanted.iter().any(|w| n.eq_ignore_ascii_case(w)))
        };
        let id_col = find(&["id"]);
        let status_col = find(&["status"]);
        let title_col = find(&["title", "entry", "target"]);
        let priority_col = find(&["priority"]);
        let risk_col = find(&["risk"]);
        let industry_col = find(&["industry"]);
        let deployment_col = find(&["deployment"]);
        let mut j = i + 2;
        let mut end = all
            .get(i + 1)
            .map_or(text.len(), |l| l.start + l.text.len());
        while j < all.len() {
            let row = &all[j];
            let Some(row_cells) = cells(row.text) else {
                break;
            };
            end = row.start + row.text.len();
            let tier = checklist.tiers.last();
            let (Some(tier), Some(id_col), Some(status_col)) = (tier, id_col, status_col) else {
                j += 1;
                continue;
            };
            if row_cells.len() != names.len() {
                diagnostics.push(Diagnostic {
                    line: row.number,
                    message: format!(
                        "row has {} cells, its table has {} columns",
                        row_cells.len(),
                        names.len()
                    ),
                });
                j += 1;
                continue;
            }
            let cell = |col: usize| row.text[row_cells[col].clone()].trim().to_owned();
            let id = cell(id_col);
            let status_text = cell(status_col);
            let Some(status) = Status::from_cell(&status_text) else {
                diagnostics.push(Diagnostic {
                    line: row.number,
                    message: format!(
                        "unknown status {status_text:?} for {id} (expected ☐, ⏳, ✅, ❌ or empty)"
                    ),
                });
                j += 1;
                continue;
            };
            if id.is_empty() {
                diagnostics.push(Diagnostic {
                    line: row.number,
                    message: "row has an empty ID".into(),
                });
                j += 1;
                continue;
            }
            if let Some(first) = first_line.get(&id) {
                diagnostics.push(Diagnostic {
                    line: row.number,
                    message: format!("duplicate ID {id} (first on line {first})"),
                });
                j += 1;
                continue;
            }
            let known = [
                Some(id_col),
                Some(status_col),
                title_col,
                priority_col,
                risk_col,
                industry_col,
                deployment_col,
            ];
            let span = row_cells[status_col].clone();
            first_line.insert(id.clone(), row.number);
            checklist.items.push(Item {
                title: title_col.map(cell).unwrap_or_default(),
                priority: priority_col.map(cell).unwrap_or_default(),
                risk: risk_col.map(cell).unwrap_or_default(),
                industry: industry_col.map(cell),
                deployment: deployment_col.map(cell),
                extra: (0..names.len())
                    .filter(|c| !known.contains(&Some(*c)))
                    .map(|c| (names[c].clone(), cell(c)))
                    .collect(),
                status,
                tier: tier.number,
                tier_name: tier.name.clone(),
                line: row.number,
                status_span: row.start + span.start..row.start + span.end,
                id,
            });
            j += 1;
        }
        if let Some(tier) = checklist.tiers.last_mut() {
            if id_col.is_none() {
                diagnostics.push(Diagnostic {
                    line: line.number,
                    message: "table has no ID column".into(),
                });
            } else if status_col.is_none() {
                diagnostics.push(Diagnostic {
                    line: line.number,
                    message: "table has no Status column".into(),
                });
            }
            tier.last_table = Some((names.clone(), end));
        }
        i = j;
    }
    (checklist, diagnostics)
}

/// The file with `item`'s status cell set to `status`; every other byte is
/// unchanged. The cell keeps its padding: the glyph replaces the cell's
/// trimmed content.
pub fn set_status(text: &str, item: &Item, status: Status) -> String {
    let cell = &text[item.status_span.clone()];
    let lead = cell.len() - cell.trim_start().len();
    let content = cell.trim();
    let (before, after) = if content.is_empty() {
        // An empty cell: keep a space on each side when there is room.
        let inner = cell.len();
        let left = usize::from(inner > 0);
        (item.status_span.start + left, item.status_span.start + left)
    } else {
        let start = item.status_span.start + lead;
        (start, start + content.len())
    };
    let mut out = String::with_capacity(text.len() + 4);
    out.push_str(&text[..before]);
    out.push_str(status.glyph());
    if content.is_empty() && cell.len() <= 1 {
        out.push(' ');
    }
    out.push_str(&text[after..]);
    out
}

/// A row to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    /// Tier number (a new tier is created when none has it).
    pub tier: u32,
    /// Tier name, for a new tier.
    pub tier_name: String,
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Priority.
    pub priority: String,
    /// Risk.
    pub risk: String,
}

fn clean(cell: &str) -> String {
    cell.replace('|', "/")
        .replace(['\n', '\r'], " ")
        .trim()
        .to_owned()
}

fn row_for(columns: &[String], item: &NewItem) -> String {
    let mut row = String::from("|");
    for c in columns {
        let value = match c.to_ascii_lowercase().as_str() {
            "status" => Status::Todo.glyph().to_owned(),
            "id" => clean(&item.id),
            "title" | "entry" | "target" => clean(&item.title),
            "priority" => clean(&item.priority),
            "risk" => clean(&item.risk),
            _ => String::new(),
        };
        row.push_str(&format!(" {value} |"));
    }
    row
}

/// The file with `items` appended: to the end of their tier's last table, or
/// under a new tier heading and table at the end of the file.
pub fn append_items(text: &str, items: &[NewItem]) -> String {
    let mut out = text.to_owned();
    for item in items {
        let (checklist, _) = parse(&out);
        match checklist
            .tiers
            .iter()
            .find(|t| t.number == item.tier)
            .and_then(|t| t.last_table.clone())
        {
            Some((columns, end)) => {
                let insert = format!("\n{}", row_for(&columns, item));
                out.insert_str(end, &insert);
            }
            None => {
                let columns: Vec<String> = ["Status", "ID", "Title", "Priority", "Risk"]
                    .iter()
                    .map(|s| (*s).to_owned())
                    .collect();
                if !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                let heading = if checklist.tiers.iter().any(|t| t.number == item.tier) {
                    String::new()
                } else {
                    format!("\n## Tier {}: {}\n", item.tier, clean(&item.tier_name))
                };
                out.push_str(&format!(
                    "{heading}\n| Status | ID | Title | Priority | Risk |\n|--------|----|-------|----------|------|\n{}\n",
                    row_for(&columns, item)
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "# Checkout service — reliability backlog

Some prose the parser keeps and ignores.

## Tier 1: Core reliability

| Status | ID | Title | Priority | Risk |
|--------|----|-------|----------|------|
| ☐ | CORE-001 | Retry storm under partial outage | P0 | Catastrophic |
| ✅ | CORE-002 | Idempotent order submission | P0 | Severe |

### Notes

Not a tier.

## Tier 2: Security

| Status | ID | Title | Priority | Risk | Industry | Deployment |
|--------|----|-------|----------|------|----------|------------|
| ❌ | SEC-001 | Prompt injection through product reviews | P1 | High | Retail | K8s |
";

    #[test]
    fn the_spec_example_reads() {
        let (c, d) = parse(SAMPLE);
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(c.tiers.len(), 2);
        assert_eq!(
            (c.tiers[1].number, c.tiers[1].name.as_str()),
            (2, "Security")
        );
        let ids: Vec<(&str, Status, u32)> = c
            .items
            .iter()
            .map(|i| (i.id.as_str(), i.status, i.tier))
            .collect();
        assert_eq!(
            ids,
            [
                ("CORE-001", Status::Todo, 1),
                ("CORE-002", Status::Done, 1),
                ("SEC-001", Status::Failed, 2)
            ]
        );
        assert_eq!(c.items[2].industry.as_deref(), Some("Retail"));
        assert_eq!(c.items[2].deployment.as_deref(), Some("K8s"));
        assert_eq!(c.items[0].industry, None);
        assert_eq!(c.items[0].line, 9);
    }

    #[test]
    fn columns_are_found_by_name_in_any_order_and_unknown_ones_kept() {
        let text = "## Tier 3: Odd\n\n| id | Owner | target | STATUS |\n|---|---|---|---|\n| X-1 | ana | Cache | ⏳ |\n";
        let (c, d) = parse(text);
        assert!(d.is_empty(), "{d:?}");
        let item = &c.items[0];
        assert_eq!(
            (item.id.as_str(), item.title.as_str(), item.status),
            ("X-1", "Cache", Status::Running)
        );
        assert_eq!(item.extra, [("Owner".to_owned(), "ana".to_owned())]);
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = "## Tier 1: A\n\n| Status | ID | Title |\n|---|---|---|\n| ☐ | A-1 | one |\n| 🤷 | A-2 | two |\n| ☐ | A-1 | again |\n| ☐ | A-3 |\n\n| Status | Title |\n|---|---|\n| ☐ | no id |\n";
        let (c, d) = parse(text);
        let got: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "line 6: unknown status \"🤷\" for A-2 (expected ☐, ⏳, ✅, ❌ or empty)",
                "line 7: duplicate ID A-1 (first on line 5)",
                "line 8: row has 2 cells, its table has 3 columns",
                "line 10: table has no ID column",
            ]
        );
        assert_eq!(c.items.len(), 1, "what could be read was read");
    }

    #[test]
    fn writing_a_status_changes_only_that_cell() {
        let (c, _) = parse(SAMPLE);
        let out = set_status(SAMPLE, &c.items[0], Status::Running);
        assert_eq!(out, SAMPLE.replacen("| ☐ | CORE-001", "| ⏳ | CORE-001", 1));
        let (c2, d) = parse(&out);
        assert!(d.is_empty());
        assert_eq!(c2.items[0].status, Status::Running);
        // An empty cell gets the glyph.
        let text = "## Tier 1: A\n\n| Status | ID |\n|---|---|\n|  | A-1 |\n||A-2|\n";
        let (c, _) = parse(text);
        assert_eq!(c.items.len(), 2);
        let out = set_status(text, &c.items[0], Status::Done);
        assert_eq!(
            out,
            "## Tier 1: A\n\n| Status | ID |\n|---|---|\n| ✅ | A-1 |\n||A-2|\n"
        );
        let out = set_status(&out, &parse(&out).0.items[1], Status::Failed);
        assert_eq!(parse(&out).0.items[1].status, Status::Failed);
    }

    #[test]
    fn new_items_go_to_their_tier_or_a_new_one() {
        let out = append_items(
            SAMPLE,
            &[
                NewItem {
                    tier: 1,
                    tier_name: "ignored".into(),
                    id: "CORE-003".into(),
                    title: "Cache | stampede".into(),
                    priority: "P1".into(),
                    risk: "High".into(),
                },
                NewItem {
                    tier: 4,
                    tier_name: "Scale".into(),
                    id: "SCALE-001".into(),
                    title: "10x traffic".into(),
                    priority: "P2".into(),
                    risk: "Medium".into(),
                },
            ],
        );
        let (c, d) = parse(&out);
        assert!(d.is_empty(), "{d:?}");
        let ids: Vec<(&str, u32)> = c.items.iter().map(|i| (i.id.as_str(), i.tier)).collect();
        assert_eq!(
            ids,
            [
                ("CORE-001", 1),
                ("CORE-002", 1),
                ("CORE-003", 1),
                ("SEC-001", 2),
                ("SCALE-001", 4)
            ]
        );
        assert!(out.contains("| Idempotent order submission | P0 | Severe |\n| ☐ | CORE-003 | Cache / stampede | P1 | High |\n\n### Notes"));
        assert!(out.ends_with("## Tier 4: Scale\n\n| Status | ID | Title | Priority | Risk |\n|--------|----|-------|----------|------|\n| ☐ | SCALE-001 | 10x traffic | P2 | Medium |\n"));
        assert!(
            out.starts_with(&SAMPLE[..SAMPLE.find("### Notes").unwrap() - 2]),
            "nothing before the insertion point moved"
        );
    }

    fn arb_cell() -> impl Strategy<Value = String> {
        "[A-Za-z0-9 .,()-]{0,12}"
    }

    /// Arbitrary checklists: prose, tiers, tables with random padding and
    /// glyphs, CRLF or LF.
    fn arb_file() -> impl Strategy<Value = String> {
        let row = (
            prop::sample::select(vec!["☐", "⏳", "✅", "❌", ""]),
            arb_cell(),
            0usize..3,
            0usize..3,
        );
        let table = prop::collection::vec(row, 1..6);
        let tier = (
            1u32..9,
            "[A-Za-z ]{1,10}",
            "[A-Za-z .]{0,30}",
            prop::collection::vec(table, 0..3),
        );
        (prop::collection::vec(tier, 1..4), any::<bool>()).prop_map(|(tiers, crlf)| {
            let mut out = String::from("# Backlog\n\nIntro prose.\n");
            let mut n = 0;
            for (number, name, prose, tables) in tiers {
                out.push_str(&format!("\n## Tier {number}: {name}\n\n{prose}\n"));
                for rows in tables {
                    out.push_str("\n| Status | ID | Title |\n|:---|---|---:|\n");
                    for (glyph, title, pad_l, pad_r) in rows {
                        n += 1;
                        out.push_str(&format!(
                            "|{}{glyph}{}| ID-{n} | {title} |\n",
                            " ".repeat(pad_l),
                            " ".repeat(pad_r)
                        ));
                    }
                }
            }
            if crlf { out.replace('\n', "\r\n") } else { out }
        })
    }

    proptest! {
        #[test]
        fn a_status_write_changes_only_that_cell(file in arb_file(), pick in any::<prop::sample::Index>(), status in prop::sample::select(vec![Status::Todo, Status::Running, Status::Done, Status::Failed])) {
            let (c, d) = parse(&file);
            prop_assert!(d.is_empty(), "{:?}", d);
            prop_assume!(!c.items.is_empty());
            let item = &c.items[pick.index(c.items.len())];
            let out = set_status(&file, item, status);
            // Everything outside the cell is byte-identical.
            let span = item.status_span.clone();
            prop_assert_eq!(&out[..span.start], &file[..span.start]);
            let tail = file.len() - span.end;
            prop_assert_eq!(&out[out.len() - tail..], &file[span.end..]);
            // And the file reads back with only that status changed.
            let (c2, d2) = parse(&out);
            prop_assert!(d2.is_empty());
            prop_assert_eq!(c2.items.len(), c.items.len());
            for (a, b) in c.items.iter().zip(&c2.items) {
                let expected = if a.id == item.id { status } else { a.status };
                prop_assert_eq!(b.status, expected);
                prop_assert_eq!(&a.id, &b.id);
            }
        }

        #[test]
        fn parsing_never_panics(text in "(\\PC|\n|\\|){0,300}") {
            let _ = parse(&text);
        }
    }
}
