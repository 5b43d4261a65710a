//! Carrying an edit over from one version of a file to another: the
//! changes someone made to an old copy of the checklist (that afk had just
//! replaced) made again on the copy that replaced it, by a byte diff
//! (Myers' shortest edit) of each against the old one.
//!
//! Pure: the runner reads and writes the files ([`crate::files`]).

/// The changes from `from` to `to` made again on `onto`, a version of
/// `from` with changes of its own: each change of `from` → `to` goes where
/// the same bytes of `from` are in `onto`, and what `from` → `to` appended
/// at the end is appended at the end of `onto`. `None` when a change falls
/// on bytes that `onto` changed too (or the files differ too much to
/// compare, over [`MAX_DIFF`] bytes).
///
/// This carries another writer's edit from the file it reached (an old copy
/// that afk had just replaced) over to the file that replaced it.
pub fn replay(from: &[u8], to: &[u8], onto: &[u8]) -> Option<Vec<u8>> {
    if from == to {
        return Some(onto.to_vec());
    }
    let changes = equal_runs(from, to)?;
    let alignment = equal_runs(from, onto)?;
    // Where `from`'s range `start..end` is in `onto`, when all of it is in
    // one run of bytes the two share (an empty range: its position).
    let place = |start: usize, end: usize| {
        alignment
            .iter()
            .find(|run| run.0 <= start && end <= run.0 + run.2)
            .map(|run| run.1 + (start - run.0))
    };
    // The gaps between equal runs are the changes: (start, end) in `from`,
    // and what replaces it in `to`.
    let mut edits = Vec::new();
    let (mut at_from, mut at_to) = (0, 0);
    for &(run_from, run_to, len) in changes.iter().chain([(from.len(), to.len(), 0)].iter()) {
        if run_from > at_from || run_to > at_to {
            let inserted = &to[at_to..run_to];
            let target = if at_from == from.len() {
                // An append stays an append.
                onto.len()
            } else {
                place(at_from, run_from)?
            };
            edits.push((target, target + (run_from - at_from), inserted));
        }
        at_from = run_from + len;
        at_to = run_to + len;
    }
    let mut out = onto.to_vec();
    let mut limit = usize::MAX;
    for (start, end, inserted) in edits.into_iter().rev() {
        if end > limit {
            return None;
        }
        out.splice(start..end, inserted.iter().copied());
        limit = start;
    }
    Some(out)
}

/// The most bytes two versions of a file may differ by for [`replay`] to
/// compare them.
pub const MAX_DIFF: usize = 1024;

/// The runs of bytes `a` and `b` share in a shortest edit from `a` to `b`
/// (Myers' algorithm), as `(start in a, start in b, length)`, in order;
/// `None` past [`MAX_DIFF`] bytes of difference.
fn equal_runs(a: &[u8], b: &[u8]) -> Option<Vec<(usize, usize, usize)>> {
    // The common start and end are runs of their own; the search is over
    // what lies between.
    let head = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let room = a.len().min(b.len()) - head;
    let tail = a
        .iter()
        .rev()
        .zip(b.iter().rev())
        .take(room)
        .take_while(|(x, y)| x == y)
        .count();
    let (ma, mb) = (&a[head..a.len() - tail], &b[head..b.len() - tail]);
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    if head > 0 {
        runs.push((0, 0, head));
    }
    // Only one side has bytes between: they are all added (or removed).
    let pairs = if ma.is_empty() || mb.is_empty() {
        Vec::new()
    } else {
        shortest_edit(ma, mb)?
    };
    for (x, y) in pairs {
        let (x, y) = (x + head, y + head);
        match runs.last_mut() {
            Some(run) if run.0 + run.2 == x && run.1 + run.2 == y => run.2 += 1,
            _ => runs.push((x, y, 1)),
        }
    }
    if tail > 0 {
        let (x, y) = (a.len() - tail, b.len() - tail);
        match runs.last_mut() {
            Some(run) if run.0 + run.2 == x && run.1 + run.2 == y => run.2 += tail,
            _ => runs.push((x, y, tail)),
        }
    }
    Some(runs)
}

/// The pairs of equal bytes `(x in a, y in b)` along a shortest edit from
/// `a` to `b` (Myers' algorithm), in order; `None` past [`MAX_DIFF`].
fn shortest_edit(ma: &[u8], mb: &[u8]) -> Option<Vec<(usize, usize)>> {
    let (n, m) = (ma.len() as isize, mb.len() as isize);
    let max = isize::try_from(MAX_DIFF).ok()?;
    // v[k + max + 1]: the furthest x on diagonal k; one snapshot per step.
    let width = usize::try_from(2 * max + 3).ok()?;
    let at = |k: isize| usize::try_from(k + max + 1).unwrap_or(0);
    let mut v = vec![0isize; width];
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let mut found = None;
    'search: for d in 0..=max {
        trace.push(v.clone());
        let mut k = -d;
        while k <= d {
            let mut x = if k == -d || (k != d && v[at(k - 1)] < v[at(k + 1)]) {
                v[at(k + 1)]
            } else {
                v[at(k - 1)] + 1
            };
            let mut y = x - k;
            while x < n && y < m && ma[x as usize] == mb[y as usize] {
                x += 1;
                y += 1;
            }
            v[at(k)] = x;
            if x >= n && y >= m {
                found = Some(d);
                break 'search;
            }
            k += 2;
        }
    }
    found?;
    // Back from the end: each step's diagonal stretch is a shared run.
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let (mut x, mut y) = (n, m);
    for (d, v) in trace.iter().enumerate().rev() {
        let d = d as isize;
        let k = x - y;
        let prev_k = if k == -d || (k != d && v[at(k - 1)] < v[at(k + 1)]) {
            k + 1
        } else {
            k - 1
        };
        let prev_x = v[at(prev_k)];
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
            pairs.push((x as usize, y as usize));
        }
        if d > 0 {
            (x, y) = (prev_x, prev_y);
        }
    }
    pairs.reverse();
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (from, to, onto) → the edit from → to, made again on onto.
    fn check_replay(from: &str, to: &str, onto: &str, want: Option<&str>) {
        let got = replay(from.as_bytes(), to.as_bytes(), onto.as_bytes());
        assert_eq!(
            got.as_deref().map(|b| std::str::from_utf8(b).unwrap()),
            want,
            "{from:?} -> {to:?} onto {onto:?}"
        );
    }

    #[test]
    fn an_edit_is_carried_over_to_the_file_that_replaced_its_own() {
        let old = "| ☐ | A | title one |\n| ☐ | B | title two |\n";
        let ours = "| ✅ | A | title one |\n| ⏳ | B | title two |\n";
        // Nothing changed: nothing to carry.
        check_replay(old, old, ours, Some(ours));
        // An append stays at the end, after anything appended since.
        check_replay(
            old,
            &format!("{old}note 1\n"),
            &format!("{ours}note 2\n"),
            Some(&format!("{ours}note 2\nnote 1\n")),
        );
        // An edit in place lands at the same place.
        check_replay(
            old,
            &old.replace("title two", "TITLE two"),
            ours,
            Some(&ours.replace("title two", "TITLE two")),
        );
        // Several at once, even on a line that changed in `onto`, and where
        // something before it changed length.
        check_replay(
            old,
            &format!("{}note 1\n", old.replace("one", "1").replace("two", "2")),
            &format!("# added\n{ours}"),
            Some(&format!(
                "# added\n{}note 1\n",
                ours.replace("one", "1").replace("two", "2")
            )),
        );
        // Where `onto` changed the very bytes: not placed.
        check_replay(
            old,
            &old.replace("title two", "title 2"),
            &ours.replace("title two", "title zwei"),
            None,
        );
        check_replay("abc", "abXc", "", None);
        // A long append is still an append; versions too different to
        // compare are not replayed.
        let (xs, ys) = ("x".repeat(MAX_DIFF * 2), "y".repeat(MAX_DIFF * 2));
        check_replay("a", &format!("a{xs}"), "ab", Some(&format!("ab{xs}")));
        check_replay(&xs, &ys, &xs, None);
    }

    proptest::proptest! {
        /// Made again on the version it was made on, an edit gives what it
        /// gave; and an edit of one half carries over to a copy whose other
        /// half changed.
        #[test]
        fn a_replayed_edit_is_the_edit(
            a in "[ab\n|]{0,60}",
            b in "[ab\n|]{0,60}",
            other in "[cd]{0,20}",
        ) {
            let got = replay(a.as_bytes(), b.as_bytes(), a.as_bytes());
            proptest::prop_assert_eq!(got.as_deref(), Some(b.as_bytes()));
            let from = format!("{a}#{a}");
            let to = format!("{b}#{a}");
            let onto = format!("{a}#{other}");
            let got = replay(from.as_bytes(), to.as_bytes(), onto.as_bytes());
            let want = format!("{b}#{other}");
            proptest::prop_assert_eq!(got.as_deref(), Some(want.as_bytes()));
        }
    }
}
