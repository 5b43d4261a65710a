//! Where an anchor's point lies among an issue's comments when only some
//! of them have been read, and which to read next: the search behind the
//! progress comment's bounded look-up (`comments.rs`).
//!
//! GitHub gives no way to ask "the comments created before time t", but its
//! comment timeline takes `skip`, so one request can read any comment by
//! its number, many at a time (aliases). Each round, the anchors still in
//! doubt are narrowed by [`PROBES`] single-comment reads spread evenly over
//! where their points may be (a many-way search: each round divides the
//! doubt by 41, where halving would divide it by 2); once an anchor's doubt
//! and window fit in [`DIRECT_READ`] comments, they are read whole instead.
//! So the points among n comments are found in ⌈log₄₁(n / 300)⌉ + 1 rounds
//! of one request each when the anchors lie close together, as a run's
//! arming and lock do (with k anchors far apart, the base is 40/k + 1):
//! 1 round up to about 300 comments, 2 up to about 12,000, 4 for a
//! million.
//!
//! It is pure: it decides what to read, and the caller reads it.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use afk_core::Timestamp;
use afk_core::comments::{Anchor, PAGE, WINDOW};

/// Single-comment reads per round, shared by the anchors in doubt.
pub const PROBES: usize = 40;
/// An anchor whose doubt and window hold at most this many unread comments
/// has them read whole (six pages) rather than probed again.
pub const DIRECT_READ: usize = 600;

/// One read: `first` comments from number `skip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slice {
    /// The number of the first comment read.
    pub skip: usize,
    /// How many (at most [`PAGE`]).
    pub first: usize,
}

/// Where `anchor`'s point may lie given the creation times `known` (by
/// comment number): `lo..=hi`. `lo` is one past the last known comment
/// that precedes it, `hi` the first known one that does not.
fn bounds(known: &BTreeMap<usize, Timestamp>, anchor: &Anchor, total: usize) -> (usize, usize) {
    let lo = known
        .iter()
        .rev()
        .find(|(_, t)| anchor.precedes(**t))
        .map_or(0, |(i, _)| i + 1);
    let hi = known
        .iter()
        .find(|(_, t)| !anchor.precedes(**t))
        .map_or(total, |(i, _)| *i);
    (lo, hi)
}

/// The numbers in `range` not yet read.
fn unread(known: &BTreeMap<usize, Timestamp>, range: &Range<usize>) -> usize {
    range.len() - known.range(range.clone()).count()
}

/// Each anchor's point, when every one is known with its window read;
/// otherwise what to read next (never a comment already read).
pub fn next(
    known: &BTreeMap<usize, Timestamp>,
    anchors: &[Anchor],
    total: usize,
) -> Result<Vec<usize>, Vec<Slice>> {
    let mut points = Vec::with_capacity(anchors.len());
    let mut whole: Vec<Range<usize>> = Vec::new();
    let mut doubt: Vec<Range<usize>> = Vec::new();
    for anchor in anchors {
        let (lo, hi) = bounds(known, anchor, total);
        if lo >= hi {
            // Known exactly (`lo > hi` only if the timeline were out of
            // order; the window then starts after the last comment that
            // precedes the anchor).
            points.push(lo);
            whole.push(anchor.window(lo, total));
            continue;
        }
        let reach = match anchor {
            Anchor::Before(_) => lo.saturating_sub(WINDOW)..hi,
            Anchor::After(_) => lo..hi.saturating_add(WINDOW).min(total),
        };
        if unread(known, &reach) <= DIRECT_READ {
            whole.push(reach);
        } else {
            doubt.push(lo..hi);
        }
    }
    let mut wanted: BTreeSet<usize> = BTreeSet::new();
    for r in &whole {
        wanted.extend(r.clone().filter(|i| !known.contains_key(i)));
    }
    let mut slices = runs(&wanted);
    for i in probes(&doubt) {
        if !known.contains_key(&i) && !wanted.contains(&i) {
            slices.push(Slice { skip: i, first: 1 });
        }
    }
    if slices.is_empty() && doubt.is_empty() {
        Ok(points)
    } else {
        slices.sort();
        Err(slices)
    }
}

/// Consecutive numbers as slices of at most a page.
fn runs(numbers: &BTreeSet<usize>) -> Vec<Slice> {
    let mut out: Vec<Slice> = Vec::new();
    for &i in numbers {
        match out.last_mut() {
            Some(s) if s.skip + s.first == i && s.first < PAGE => s.first += 1,
            _ => out.push(Slice { skip: i, first: 1 }),
        }
    }
    out
}

/// [`PROBES`] numbers spread evenly over the ranges in doubt (merged where
/// they overlap), each range getting a share by its length, at least one.
fn probes(doubt: &[Range<usize>]) -> BTreeSet<usize> {
    let mut merged: Vec<Range<usize>> = Vec::new();
    let mut sorted = doubt.to_vec();
    sorted.sort_by_key(|r| r.start);
    for r in sorted {
        match merged.last_mut() {
            Some(m) if r.start <= m.end => m.end = m.end.max(r.end),
            _ => merged.push(r),
        }
    }
    let length: usize = merged.iter().map(ExactSizeIterator::len).sum();
    let mut out = BTreeSet::new();
    for r in merged {
        let share = (PROBES * r.len()).div_ceil(length.max(1)).clamp(1, PROBES);
        for k in 1..=share {
            out.insert(r.start + r.len() * k / (share + 1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_780_000_000 + seconds).unwrap()
    }

    /// Runs the search over `times` the way the adapter does (the newest
    /// page known first), reading each answer from `times`: the points, the
    /// rounds it took, and every number read.
    fn search(times: &[Timestamp], anchors: &[Anchor]) -> (Vec<usize>, usize, Vec<usize>) {
        let total = times.len();
        let mut known: BTreeMap<usize, Timestamp> = (total.saturating_sub(PAGE)..total)
            .map(|i| (i, times[i]))
            .collect();
        let mut read = Vec::new();
        for round in 0..20 {
            match next(&known, anchors, total) {
                Ok(points) => return (points, round, read),
                Err(slices) => {
                    for s in slices {
                        assert!(s.first >= 1 && s.first <= PAGE, "{s:?}");
                        assert!(s.skip + s.first <= times.len(), "{s:?} past the end");
                        for (i, t) in times.iter().enumerate().skip(s.skip).take(s.first) {
                            assert!(known.insert(i, *t).is_none(), "{i} read twice");
                            read.push(i);
                        }
                    }
                }
            }
        }
        panic!("no answer in 20 rounds");
    }

    #[test]
    fn a_flood_after_the_lock_costs_two_rounds() {
        // afk's comment at 10 and its lock at 20, then 10,100 comments.
        let mut times = vec![at(0); 5];
        times.push(at(10));
        times.extend(std::iter::repeat_n(at(30), 10_100));
        let anchors = [Anchor::Before(at(20)), Anchor::After(at(5))];
        let (points, rounds, read) = search(&times, &anchors);
        assert_eq!(points, [6, 5]);
        assert_eq!(rounds, 2, "probes, then the windows");
        assert!(read.len() < 1_000, "{} comments read", read.len());
        assert!(read.contains(&5));
    }

    #[test]
    fn a_point_in_the_head_needs_no_round_but_its_window() {
        let mut times = vec![at(0); 1_000];
        times.extend(std::iter::repeat_n(at(30), 50));
        let (points, rounds, read) = search(&times, &[Anchor::Before(at(20))]);
        assert_eq!(points, [1_000]);
        assert_eq!(rounds, 1, "the window's older comments, in one read");
        assert_eq!(read.len(), 250);
        let mut times = vec![at(0); 10];
        times.extend(std::iter::repeat_n(at(30), 50));
        let (points, rounds, _) = search(&times, &[Anchor::Before(at(20))]);
        assert_eq!((points, rounds), (vec![10], 0), "all known from the head");
    }

    #[test]
    fn slices_are_runs_of_at_most_a_page() {
        let numbers: BTreeSet<usize> = (5..260).chain([300, 301]).collect();
        assert_eq!(
            runs(&numbers),
            [
                Slice {
                    skip: 5,
                    first: 100
                },
                Slice {
                    skip: 105,
                    first: 100
                },
                Slice {
                    skip: 205,
                    first: 55
                },
                Slice {
                    skip: 300,
                    first: 2
                },
            ]
        );
        let spread = probes(&[0..10_000, 5_000..12_000, 20_000..20_003]);
        assert!(spread.len() <= PROBES + 2, "{}", spread.len());
        assert!(spread.iter().any(|i| (20_000..20_003).contains(i)));
        assert!(
            spread
                .iter()
                .all(|i| *i < 12_000 || (20_000..20_003).contains(i))
        );
    }

    proptest! {
        /// Whatever the timeline, the search ends with each anchor's true
        /// point and its window read, reads no comment twice, and takes no
        /// more rounds than the bound the docs give.
        #[test]
        fn the_search_finds_every_point_within_its_bound(
            steps in proptest::collection::vec(0i64..3, 0..4_000),
            anchor_seconds in proptest::collection::vec((0i64..4_000, any::<bool>()), 1..4),
        ) {
            let mut second = 0;
            let times: Vec<Timestamp> = steps
                .iter()
                .map(|s| {
                    second += s;
                    at(second)
                })
                .collect();
            let anchors: Vec<Anchor> = anchor_seconds
                .iter()
                .map(|(s, before)| if *before { Anchor::Before(at(*s)) } else { Anchor::After(at(*s)) })
                .collect();
            let (points, rounds, read) = search(&times, &anchors);
            let total = times.len();
            let read: BTreeSet<usize> = read.into_iter().chain(total.saturating_sub(PAGE)..total).collect();
            for (a, p) in anchors.iter().zip(&points) {
                prop_assert_eq!(*p, times.partition_point(|t| a.precedes(*t)));
                prop_assert!(a.window(*p, total).all(|i| read.contains(&i)));
            }
            // ⌈log_b(n / 300)⌉ + 1, b = 40/k + 1 for k anchors far apart
            // (b is taken one lower here: a share rounds).
            let mut bound = 1;
            let mut reach = DIRECT_READ - WINDOW;
            while reach < total {
                reach *= PROBES / anchors.len();
                bound += 1;
            }
            prop_assert!(rounds <= bound, "{} rounds for {} comments", rounds, total);
        }
    }
}
