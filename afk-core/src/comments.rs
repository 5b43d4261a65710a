//! Which of an issue's comments afk reads, and what those reads prove: one
//! rule that the GitHub adapter and the simulator's fake both follow, so
//! that a flood of comments costs a bounded number of reads and the fake
//! answers as the adapter does.
//!
//! An issue's comments are numbered 0, 1, … in order of creation (the
//! tracker's timeline order). afk reads:
//!
//! - **The head**: the newest [`PAGE`] comments ([`head`]). Every look
//!   starts there, and a run's progress comment is there unless more than
//!   a page of comments came after it.
//! - **Windows beside the label anchors.** afk writes its progress comment
//!   once, at an issue's first dispatch, just before it applies the
//!   in-progress label (and edits it in place after). So the comment is
//!   among the [`WINDOW`] newest comments created at or before an
//!   application of the in-progress label ([`Anchor::Before`]; the oldest
//!   [`LOCK_ANCHORS`] applications count, as the first may be a person's
//!   hand-made lock), or, when a dispatch died before its lock, among the
//!   [`WINDOW`] oldest created at or after the latest application of the
//!   ready label ([`Anchor::After`]). Only people with triage permission or
//!   more can apply labels, so a commenter cannot move an anchor: however
//!   many comments they add, each window stays where it is.
//! - **The approved comments**: the trusted ones among the newest
//!   [`APPROVED_COMMENTS`] ([`approved_range`]).
//!
//! [`verdict`] says what the comments read prove: the progress comment (the
//! newest of afk's own marker comments among those read), its absence, or
//! neither. Neither is an error for the caller ([`not_found`] words it),
//! never "none": "none" makes the poll write a second run record.
//!
//! It reads nothing and judges no author: the tracker finds where each
//! anchor falls (the GitHub adapter by probing, the fake by looking) and
//! which comments are afk's own marker comments (`trust::is_own` and the
//! checklist's marker).

use std::ops::Range;

use crate::trust::LabelFacts;
use crate::types::Timestamp;

/// Comments in one read page (GitHub's largest page).
pub const PAGE: usize = 100;
/// Comments read on the far side of an anchor: three pages, so a run's
/// record is found even when a few hundred comments were written between
/// afk's comment and its lock (the seconds a dispatch takes).
pub const WINDOW: usize = 300;
/// Applications of the in-progress label used as anchors, oldest first.
pub const LOCK_ANCHORS: usize = 3;
/// The newest comments among which the approved ones are looked for: the
/// recent discussion (the prompt caps what it quotes anyway).
pub const APPROVED_COMMENTS: usize = 500;

/// A time beside which the progress comment is looked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// The [`WINDOW`] newest comments created at or before this time (an
    /// application of the in-progress label: the comment came just before).
    Before(Timestamp),
    /// The [`WINDOW`] oldest comments created at or after this time (the
    /// latest application of the ready label: a dispatch came after it).
    After(Timestamp),
}

impl Anchor {
    /// Whether a comment created at `created_at` falls before the anchor's
    /// point. Comments are in order of creation, so the ones that do are a
    /// prefix; its length is the anchor's *point*.
    pub fn precedes(&self, created_at: Timestamp) -> bool {
        match self {
            // Timestamps have second precision: a comment in the same second
            // as the lock may be afk's own, so it counts as before it.
            Anchor::Before(t) => created_at <= *t,
            // …and one in the same second as the ready label may have been
            // written after it, so it counts as after it.
            Anchor::After(t) => created_at < *t,
        }
    }

    /// The comments to read once the anchor's point is known, among `total`.
    pub fn window(&self, point: usize, total: usize) -> Range<usize> {
        let point = point.min(total);
        match self {
            Anchor::Before(_) => point.saturating_sub(WINDOW)..point,
            Anchor::After(_) => point..point.saturating_add(WINDOW).min(total),
        }
    }

    /// The anchor's time.
    pub fn at(&self) -> Timestamp {
        match self {
            Anchor::Before(t) | Anchor::After(t) => *t,
        }
    }
}

/// Where to look for an issue's progress comment beyond the head, from its
/// label history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The anchors, in the order given by [`plan`].
    pub anchors: Vec<Anchor>,
    /// Whether the in-progress label was ever applied.
    pub ever_locked: bool,
}

/// The anchors of an issue whose every `labeled` event is in `facts`: the
/// oldest [`LOCK_ANCHORS`] applications of `in_progress_label` (oldest
/// first), then the latest application of `ready_label`. Names compare as
/// GitHub compares them (case-insensitively).
pub fn plan(facts: &LabelFacts, ready_label: &str, in_progress_label: &str) -> Plan {
    let mut locks: Vec<Timestamp> = facts
        .labeled
        .iter()
        .filter(|e| e.label.eq_ignore_ascii_case(in_progress_label))
        .map(|e| e.at)
        .collect();
    locks.sort();
    locks.dedup();
    let ever_locked = !locks.is_empty();
    let mut anchors: Vec<Anchor> = locks
        .into_iter()
        .take(LOCK_ANCHORS)
        .map(Anchor::Before)
        .collect();
    if let Some(ready) = facts.latest(ready_label) {
        anchors.push(Anchor::After(ready.at));
    }
    Plan {
        anchors,
        ever_locked,
    }
}

/// The newest [`PAGE`] of `total` comments.
pub fn head(total: usize) -> Range<usize> {
    total.saturating_sub(PAGE)..total
}

/// The newest [`APPROVED_COMMENTS`] of `total` comments.
pub fn approved_range(total: usize) -> Range<usize> {
    total.saturating_sub(APPROVED_COMMENTS)..total
}

/// What the comments read prove about the progress comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// This comment (its number) is the progress comment.
    Found(usize),
    /// The issue has no progress comment.
    Absent,
    /// The comments read do not say: an error for the caller, never
    /// "none".
    Unknown,
}

/// What was proved once the head and `windows` (one per anchor of `plan`,
/// in its order) were read: `newest_marker` is the newest of afk's own
/// marker comments among them.
///
/// The comment is absent when every comment was read, or when the issue was
/// never locked and either never armed or every comment since its latest
/// arming was read (a dispatch writes its comment after the ready label and
/// before its lock).
pub fn verdict(
    total: usize,
    newest_marker: Option<usize>,
    plan: &Plan,
    windows: &[Range<usize>],
) -> Verdict {
    if let Some(found) = newest_marker {
        return Verdict::Found(found);
    }
    let mut read: Vec<Range<usize>> = windows.to_vec();
    read.push(head(total));
    if covers(&mut read, total) {
        return Verdict::Absent;
    }
    if plan.ever_locked {
        return Verdict::Unknown;
    }
    let since_armed = plan
        .anchors
        .iter()
        .zip(windows)
        .find(|(a, _)| matches!(a, Anchor::After(_)))
        .map(|(_, w)| w);
    match since_armed {
        None => Verdict::Absent,
        Some(w) if w.end >= total => Verdict::Absent,
        Some(_) => Verdict::Unknown,
    }
}

/// Whether `ranges` together hold every number below `total`.
fn covers(ranges: &mut [Range<usize>], total: usize) -> bool {
    ranges.sort_by_key(|r| r.start);
    let mut next = 0;
    for r in ranges.iter() {
        if r.start > next {
            return false;
        }
        next = next.max(r.end);
    }
    next >= total
}

/// The error text for [`Verdict::Unknown`] on `issue` (`acme/infra#7`).
pub fn not_found(issue: &str, total: usize, plan: &Plan) -> String {
    let mut places: Vec<String> = plan
        .anchors
        .iter()
        .map(|a| match a {
            Anchor::Before(t) => format!("before the in-progress label's application at {t}"),
            Anchor::After(t) => format!("after the ready label's latest application at {t}"),
        })
        .collect();
    if places.is_empty() {
        places.push("no label anchors".to_owned());
    }
    format!(
        "{issue} has {total} comments and afk's progress comment is not among the newest {PAGE} nor among the {WINDOW} {}; refusing to guess (a second run record would follow)",
        places.join(", nor ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::LabelEvent;
    use proptest::prelude::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_780_000_000 + seconds).unwrap()
    }

    fn labeled(label: &str, seconds: i64) -> LabelEvent {
        LabelEvent {
            label: label.into(),
            at: at(seconds),
            actor: None,
        }
    }

    fn facts(events: &[(&str, i64)]) -> LabelFacts {
        LabelFacts {
            labeled: events.iter().map(|(l, s)| labeled(l, *s)).collect(),
            ..LabelFacts::default()
        }
    }

    fn planned(events: &[(&str, i64)]) -> Plan {
        plan(&facts(events), "ready-for-agent", "agent-in-progress")
    }

    #[test]
    fn the_anchors_are_the_oldest_locks_then_the_latest_arming() {
        let p = planned(&[
            ("ready-for-agent", 0),
            ("Agent-In-Progress", 10),
            ("bug", 11),
            ("agent-in-progress", 50),
            ("ready-for-agent", 40),
            ("agent-in-progress", 30),
            ("agent-in-progress", 90),
        ]);
        assert_eq!(
            p.anchors,
            [
                Anchor::Before(at(10)),
                Anchor::Before(at(30)),
                Anchor::Before(at(50)),
                Anchor::After(at(40)),
            ]
        );
        assert!(p.ever_locked);
        let p = planned(&[("ready-for-agent", 0)]);
        assert_eq!(p.anchors, [Anchor::After(at(0))]);
        assert!(!p.ever_locked);
        assert_eq!(planned(&[("bug", 0)]).anchors, []);
    }

    #[test]
    fn a_window_lies_on_the_far_side_of_its_point() {
        let before = Anchor::Before(at(0));
        let after = Anchor::After(at(0));
        assert_eq!(before.window(1_000, 5_000), 700..1_000);
        assert_eq!(before.window(120, 5_000), 0..120);
        assert_eq!(after.window(1_000, 5_000), 1_000..1_300);
        assert_eq!(after.window(4_900, 5_000), 4_900..5_000);
        assert_eq!(after.window(9_999, 5_000), 5_000..5_000);
        // The same second counts as before a lock and after an arming.
        assert!(before.precedes(at(0)) && !before.precedes(at(1)));
        assert!(!after.precedes(at(0)) && after.precedes(at(-1)));
        assert_eq!(head(250), 150..250);
        assert_eq!(head(30), 0..30);
        assert_eq!(approved_range(10_100), 9_600..10_100);
    }

    #[track_caller]
    fn check(
        total: usize,
        marker: Option<usize>,
        events: &[(&str, i64)],
        windows: &[Range<usize>],
        expected: Verdict,
    ) {
        let p = planned(events);
        assert_eq!(p.anchors.len(), windows.len(), "one window per anchor");
        assert_eq!(verdict(total, marker, &p, windows), expected);
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // one window per anchor
    fn what_the_reads_prove() {
        use Verdict::{Absent, Found, Unknown};
        let armed = [("ready-for-agent", 0)];
        let locked = [("ready-for-agent", 0), ("agent-in-progress", 5)];
        // A marker read is the comment, whatever else holds.
        check(10_100, Some(7), &locked, &[0..8, 8..308], Found(7));
        // Every comment read: absent.
        check(100, None, &locked, &[0..10, 10..100], Absent);
        check(0, None, &[], &[], Absent);
        check(700, None, &locked, &[300..600, 0..300], Absent);
        // Locked, and comments left unread: unknown, never absent.
        check(701, None, &locked, &[300..600, 0..300], Unknown);
        check(
            10_100,
            None,
            &locked,
            &[9_000..9_300, 9_300..9_600],
            Unknown,
        );
        // Never locked: absent when never armed, or when every comment since
        // the arming was read.
        check(10_100, None, &[("bug", 0)], &[], Absent);
        check(10_100, None, &armed, &[9_900..10_100], Absent);
        check(10_100, None, &armed, &[9_700..10_000], Unknown);
        check(10_100, None, &armed, &[0..300], Unknown);
    }

    #[test]
    fn the_error_names_the_issue_and_where_afk_looked() {
        let p = planned(&[("ready-for-agent", 0), ("agent-in-progress", 5)]);
        let message = not_found("acme/infra#7", 10_100, &p);
        assert!(
            message.starts_with("acme/infra#7 has 10100 comments"),
            "{message}"
        );
        assert!(message.contains("2026-05-28T20:26:45Z"), "{message}");
        assert!(message.contains("refusing to guess"), "{message}");
    }

    proptest! {
        /// Wherever afk's comment lies before its lock, with at most
        /// WINDOW − 1 comments between them, the lock's window holds it,
        /// and a verdict over that window finds it.
        #[test]
        fn the_lock_window_holds_a_comment_written_just_before_the_lock(
            before in 0usize..3_000,
            between in 0usize..WINDOW,
            after in 0usize..3_000,
            lock_second_shared in any::<bool>(),
        ) {
            // Creation times: `before` comments at second 0, afk's at 10,
            // `between` more up to the lock at 20 (in its second, or
            // earlier), then `after` at 30.
            let mut times = vec![at(0); before];
            times.push(at(10));
            let between_at = if lock_second_shared { at(20) } else { at(15) };
            times.extend(std::iter::repeat_n(between_at, between));
            times.extend(std::iter::repeat_n(at(30), after));
            let mine = before;
            let p = planned(&[("ready-for-agent", 0), ("agent-in-progress", 20)]);
            let windows: Vec<Range<usize>> = p
                .anchors
                .iter()
                .map(|a| a.window(times.partition_point(|t| a.precedes(*t)), times.len()))
                .collect();
            prop_assert!(windows[0].contains(&mine));
            prop_assert_eq!(
                verdict(times.len(), Some(mine), &p, &windows),
                Verdict::Found(mine)
            );
        }

        /// Absent is said only when afk's comment could not be among the
        /// comments left unread.
        #[test]
        fn absent_only_when_nothing_unread_could_hold_it(
            total in 0usize..2_000,
            windows in proptest::collection::vec((0usize..2_000, 0usize..400), 2),
            locked in any::<bool>(),
        ) {
            let windows: Vec<Range<usize>> = windows
                .into_iter()
                .map(|(s, len)| s.min(total)..(s + len).min(total))
                .collect();
            let mut events = vec![("ready-for-agent", 0)];
            if locked {
                events.push(("agent-in-progress", 5));
            }
            let p = planned(&events);
            let windows = &windows[..p.anchors.len()];
            let mut unread: Vec<usize> = (0..total)
                .filter(|i| !head(total).contains(i) && !windows.iter().any(|w| w.contains(i)))
                .collect();
            if verdict(total, None, &p, windows) == Verdict::Absent && !unread.is_empty() {
                // Only an issue never locked, with every comment since its
                // arming read, may leave older comments unread.
                prop_assert!(!p.ever_locked);
                let since = p.anchors.iter().zip(windows).find(|(a, _)| matches!(a, Anchor::After(_)));
                if let Some((_, w)) = since {
                    prop_assert!(w.end >= total);
                    unread.retain(|i| *i >= w.start);
                    prop_assert!(unread.is_empty());
                }
            }
        }
    }
}
