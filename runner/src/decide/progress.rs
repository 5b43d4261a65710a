//! Where a backlog stands: counts per status, per tier, and which tiers are
//! due their report. Pure functions of a parsed checklist.

use std::collections::BTreeMap;
use std::fmt;

use checklist::sut::{Checklist, Status};

/// How many rows are in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every row.
    pub total: usize,
    /// ✅
    pub done: usize,
    /// ❌
    pub failed: usize,
    /// ⏳
    pub running: usize,
    /// ☐
    pub todo: usize,
}

impl Counts {
    /// The counts of `checklist`'s rows.
    pub fn of(checklist: &Checklist) -> Counts {
        let mut c = Counts::default();
        for item in &checklist.items {
            c.add(item.status);
        }
        c
    }

    fn add(&mut self, status: Status) {
        self.total += 1;
        match status {
            Status::Done => self.done += 1,
            Status::Failed => self.failed += 1,
            Status::Running => self.running += 1,
            Status::Todo => self.todo += 1,
        }
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} done, {} running, {} failed",
            self.done, self.total, self.running, self.failed
        )
    }
}

/// One tier's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierCounts {
    /// Its number.
    pub number: u32,
    /// Its name.
    pub name: String,
    /// Its rows' counts.
    pub counts: Counts,
}

/// Every tier (headings without rows included), in tier order.
pub fn tier_counts(checklist: &Checklist) -> Vec<TierCounts> {
    let mut out: BTreeMap<u32, TierCounts> = BTreeMap::new();
    for t in &checklist.tiers {
        out.entry(t.number).or_insert_with(|| TierCounts {
            number: t.number,
            name: t.name.clone(),
            counts: Counts::default(),
        });
    }
    for item in &checklist.items {
        out.entry(item.tier)
            .or_insert_with(|| TierCounts {
                number: item.tier,
                name: item.tier_name.clone(),
                counts: Counts::default(),
            })
            .counts
            .add(item.status);
    }
    out.into_values().collect()
}

/// The tiers due their report: every row ✅ (and at least one row), not
/// already asked for in this run, and with no report on disk
/// (`has_report(number, name)`, which the caller answers from the files).
pub fn tiers_due_for_report(
    checklist: &Checklist,
    asked: &[u32],
    has_report: impl Fn(u32, &str) -> bool,
) -> Vec<(u32, String)> {
    tier_counts(checklist)
        .into_iter()
        .filter(|t| t.counts.total > 0 && t.counts.done == t.counts.total)
        .filter(|t| !asked.contains(&t.number) && !has_report(t.number, &t.name))
        .map(|t| (t.number, t.name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use checklist::sut::parse;

    const FILE: &str = "## Tier 1: Core

| Status | ID | Title |
|---|---|---|
| ✅ | A-1 | a |
| ✅ | A-2 | b |

## Tier 2: Edge

| Status | ID | Title |
|---|---|---|
| ✅ | B-1 | c |
| ❌ | B-2 | d |
| ⏳ | B-3 | e |
| ☐ | B-4 | f |

## Tier 3: Empty
";

    #[test]
    fn counts_add_up_per_status_and_per_tier() {
        let (c, diagnostics) = parse(FILE);
        assert_eq!(diagnostics, vec![]);
        assert_eq!(
            Counts::of(&c),
            Counts {
                total: 6,
                done: 3,
                failed: 1,
                running: 1,
                todo: 1
            }
        );
        assert_eq!(Counts::of(&c).to_string(), "3/6 done, 1 running, 1 failed");
        let tiers: Vec<(u32, usize, usize)> = tier_counts(&c)
            .iter()
            .map(|t| (t.number, t.counts.total, t.counts.done))
            .collect();
        assert_eq!(tiers, [(1, 2, 2), (2, 4, 1), (3, 0, 0)]);
    }

    #[test]
    fn a_tier_is_due_its_report_once_when_all_its_rows_are_done() {
        let (c, _) = parse(FILE);
        let none = |_: u32, _: &str| false;
        assert_eq!(
            tiers_due_for_report(&c, &[], none),
            [(1, "Core".to_owned())]
        );
        assert_eq!(tiers_due_for_report(&c, &[1], none), []);
        assert_eq!(tiers_due_for_report(&c, &[], |n, _| n == 1), []);
    }
}
