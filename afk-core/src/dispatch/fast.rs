//! The machinery that makes the dispatch rules fast; it decides nothing.
//!
//! [`super`] holds the rules and reads each issue through what is here: its
//! [`Facts`] (the rules' inputs, packed in a byte) and its place in the
//! total order (an [`Entry`]'s packed key). The issue's target is 10,000
//! issues in 200 repositories in under 0.37 ms, measured by
//! `cargo run --release -p afk-core --example bench_dispatch`. How:
//!
//! - one pass over the issues in input order ([`Read::new`]) does the
//!   per-issue work: the repository is found in a small direct-mapped cache
//!   (length and last eight bytes, then one compare a word at a time) in
//!   front of a table that normalises each distinct name once and looks it
//!   up in the allowlist and in-flight sets; the policy's three labels,
//!   prepared once, are matched in one pass over the issue's labels (by
//!   length first, then eight bytes at a time); trust and blockers become
//!   bits; the priority range is tracked; an issue the caller does not keep
//!   (an ineligible one, when only decisions are wanted) is dropped there;
//! - the total order is one packed key per issue, `(priority, number,
//!   repository rank)`, squeezed to the bits the call uses and radix-sorted
//!   as (key, index) pairs, 12 bits a pass ([`Read::sort`]); the rest of an
//!   issue only breaks exact ties;
//! - a skip borrows from its issue and is built from what an entry holds
//!   (the repository's spelling, the number from the key) without reaching
//!   back into the issue; a decision's reason is written once, by hand.
//!
//! What this does not do: apply a rule. Which fact fails an issue, and
//! which issue takes a slot, is written in [`super`] only, and the tests
//! check both against an oracle that calls nothing here.
//!
//! This file is long because each of these tricks carries, beside it, the
//! reason it is there and the property test of its word-at-a-time parts.

use std::cmp::Ordering;

use rustc_hash::{FxHashMap, FxHashSet};

use super::{Skip, SkipReason};
use crate::config::Config;
use crate::types::{Issue, LabelTrust};

/// What the rules read about one issue, besides its blockers' numbers, as
/// bits: read while the issues are read in order, so the ordered pass
/// reaches back into an issue only to name its blockers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Facts(u8);

const READY: u8 = 1;
const HUMAN: u8 = 1 << 1;
const STOP: u8 = 1 << 2;
const ALLOWLISTED: u8 = 1 << 3;
const IN_FLIGHT: u8 = 1 << 4;
const UNTRUSTED: u8 = 1 << 5;
const TRUST_NOT_READ: u8 = 1 << 6;
const BLOCKED: u8 = 1 << 7;

impl Facts {
    /// The issue carries the ready label.
    pub(super) fn ready(self) -> bool {
        self.0 & READY != 0
    }

    /// Its repository is on the allowlist.
    pub(super) fn allowlisted(self) -> bool {
        self.0 & ALLOWLISTED != 0
    }

    /// Its repository has a run in flight.
    pub(super) fn repo_in_flight(self) -> bool {
        self.0 & IN_FLIGHT != 0
    }

    /// It carries the ready-for-human label.
    pub(super) fn handed_to_human(self) -> bool {
        self.0 & HUMAN != 0
    }

    /// It carries the stop label.
    pub(super) fn stopped(self) -> bool {
        self.0 & STOP != 0
    }

    /// Who applied its ready label, as the caller read it.
    pub(super) fn trust(self) -> LabelTrust {
        if self.0 & UNTRUSTED != 0 {
            LabelTrust::Untrusted
        } else if self.0 & TRUST_NOT_READ != 0 {
            LabelTrust::NotRead
        } else {
            LabelTrust::Trusted
        }
    }

    /// Issues that block it are still open.
    pub(super) fn blocked(self) -> bool {
        self.0 & BLOCKED != 0
    }

    /// The facts of the issue itself; the repository's and the labels' are
    /// or-ed in by the caller.
    fn of_issue(issue: &Issue) -> u8 {
        let trust = match issue.label_trust {
            LabelTrust::Trusted => 0,
            LabelTrust::Untrusted => UNTRUSTED,
            LabelTrust::NotRead => TRUST_NOT_READ,
        };
        let blocked = if issue.open_blockers.is_empty() {
            0
        } else {
            BLOCKED
        };
        trust | blocked
    }
}

/// One issue, read: its place in the total order, its facts, and its
/// repository.
#[derive(Clone, Copy)]
pub(super) struct Entry<'a> {
    /// The packed key's high and low halves (two words rather than one
    /// `u128`, whose 16-byte alignment would make every entry 48 bytes):
    /// `(priority rank, number, repository rank)`, see [`pack`].
    key_hi: u64,
    key_lo: u64,
    /// The repository string's index in [`Read::repos`].
    spelling: u32,
    facts: Facts,
    issue: &'a Issue,
}

impl<'a> Entry<'a> {
    /// The issue.
    pub(super) fn issue(&self) -> &'a Issue {
        self.issue
    }

    /// Its facts.
    pub(super) fn facts(&self) -> Facts {
        self.facts
    }

    /// Its repository, as a number below [`Read::repositories`]: equal for
    /// names that denote the same repository.
    pub(super) fn repository(&self) -> usize {
        // The low 32 bits of the key hold the repository's rank.
        self.key_lo as u32 as usize
    }

    /// The issue's number, from the key (not from the issue, which may be
    /// far away in memory).
    pub(super) fn number(&self) -> u64 {
        ((self.key() >> 32) & u128::from(u64::MAX)) as u64
    }

    /// The total order of rule 4: the packed key, then the rest of the
    /// issue (for duplicates, such as a paginated read that shifted).
    pub(super) fn cmp(&self, other: &Self) -> Ordering {
        self.key()
            .cmp(&other.key())
            .then_with(|| rest_key(self.issue).cmp(&rest_key(other.issue)))
    }

    fn key(&self) -> u128 {
        (u128::from(self.key_hi) << 64) | u128::from(self.key_lo)
    }

    fn set_key(&mut self, key: u128) {
        self.key_hi = (key >> 64) as u64;
        self.key_lo = key as u64;
    }
}

/// `(priority rank, number, repository rank)` as one integer, in that
/// order of significance.
fn pack(priority_rank: u32, number: u64, repo_rank: u32) -> u128 {
    (u128::from(priority_rank) << 96) | (u128::from(number) << 32) | u128::from(repo_rank)
}

type RestKey<'a> = (&'a str, LabelTrust, &'a [u64], &'a [String], &'a str);

/// What breaks ties between issues whose priority, number and normalised
/// repository are equal.
fn rest_key(issue: &Issue) -> RestKey<'_> {
    (
        &issue.repo,
        issue.label_trust,
        &issue.open_blockers,
        &issue.labels,
        &issue.title,
    )
}

/// One distinct repository string of a call.
struct Repo<'a> {
    /// As spelt by the issues that name it (exactly).
    spelt: &'a str,
    /// Normalised: what is compared.
    name: String,
    /// Its rank among the distinct normalised names.
    rank: u32,
    /// [`ALLOWLISTED`] and [`IN_FLIGHT`], as they apply.
    facts: u8,
}

/// The issues of one call, read once: an [`Entry`] for each issue kept.
pub(super) struct Read<'a> {
    entries: Vec<Entry<'a>>,
    repos: Vec<Repo<'a>>,
    /// How many distinct normalised repository names there are.
    repositories: usize,
    /// The repository cache of [`Read::new`], kept as long as the read
    /// rather than freed when reading ends. This is allocator layout, not
    /// logic, measured with glibc and the benchmark's default run: freed
    /// early, it no longer parts the call's large blocks (entries, sort
    /// scratch, skips), which then merge at the top of the heap and go back
    /// to the system when the plan is dropped, so that each later call in
    /// the process faults about 80 pages back in (0.3 ms, as much again as
    /// the plan). The layout is fragile either way: with 2,000 calls in one
    /// benchmark process, this code and the single function it replaced
    /// both fault so.
    _cache: Vec<u32>,
}

impl<'a> Read<'a> {
    /// Reads `issues` in one pass, keeping those `keep` says yes to (given
    /// each issue's facts), each with its key in the total order.
    pub(super) fn new(
        issues: &'a [Issue],
        config: &Config,
        in_flight_repos: &[String],
        mut keep: impl FnMut(&'a Issue, Facts) -> bool,
    ) -> Self {
        // Each distinct repository string is normalised and looked up once.
        // FxHash: the keys are our own inputs, where SipHash's flooding
        // resistance buys nothing; nothing iterates these tables, so no
        // answer depends on the hash.
        let allowed: FxHashSet<String> = config.allowlist.iter().map(|r| norm(r)).collect();
        let flying: FxHashSet<String> = in_flight_repos.iter().map(|r| norm(r)).collect();
        let mut index: FxHashMap<&str, usize> = FxHashMap::default();
        let mut repos: Vec<Repo<'a>> = Vec::new();
        let mut entries: Vec<Entry<'a>> = Vec::with_capacity(issues.len());
        let labels = PolicyLabels::new(config);
        // A small direct-mapped cache in front of the table: a repository
        // string seen before is found by its length and last eight bytes and
        // one compare of its words, without hashing it.
        let mut cache = vec![0u32; 1 << CACHE_BITS];
        // The priorities' range: when it is narrow (`priority:<n>` labels), a
        // priority's distance from the lowest is its place in the packed key.
        let (mut low, mut high) = (i64::MAX, i64::MIN);
        for issue in issues {
            let repo = issue.repo.as_bytes();
            let slot = cache_slot(repo);
            let cached = cache[slot] as usize;
            let at = if cached != 0 && same_bytes(repos[cached - 1].spelt.as_bytes(), repo) {
                cached - 1
            } else {
                let next = repos.len();
                let at = *index.entry(issue.repo.as_str()).or_insert_with(|| {
                    let name = norm(&issue.repo);
                    let mut facts = 0;
                    if allowed.contains(&name) {
                        facts |= ALLOWLISTED;
                    }
                    if flying.contains(&name) {
                        facts |= IN_FLIGHT;
                    }
                    repos.push(Repo {
                        spelt: &issue.repo,
                        name,
                        rank: 0,
                        facts,
                    });
                    next
                });
                cache[slot] = u32::try_from(at + 1).unwrap_or(0);
                at
            };
            low = low.min(issue.priority);
            high = high.max(issue.priority);
            let facts = Facts(labels.of(issue) | repos[at].facts | Facts::of_issue(issue));
            if !keep(issue, facts) {
                continue;
            }
            entries.push(Entry {
                key_hi: 0,
                key_lo: 0,
                spelling: at as u32,
                facts,
                issue,
            });
        }
        // Rank the distinct names: equal names, equal rank.
        let mut by_name: Vec<usize> = (0..repos.len()).collect();
        by_name.sort_unstable_by(|a, b| repos[*a].name.cmp(&repos[*b].name));
        let mut rank = 0u32;
        for (i, at) in by_name.iter().enumerate() {
            if i > 0 && repos[*at].name != repos[by_name[i - 1]].name {
                rank += 1;
            }
            repos[*at].rank = rank;
        }
        // A wide range (priorities far apart) ranks the distinct values
        // instead: either way the packed key orders exactly as the
        // priorities do.
        let narrow = high
            .checked_sub(low)
            .is_some_and(|r| r < i64::from(u32::MAX));
        let mut distinct: Vec<i64> = Vec::new();
        if !narrow {
            distinct = entries.iter().map(|e| e.issue.priority).collect();
            distinct.sort_unstable();
            distinct.dedup();
        }
        for e in &mut entries {
            let p = if narrow {
                (e.issue.priority - low) as u32
            } else {
                distinct.binary_search(&e.issue.priority).unwrap_or(0) as u32
            };
            e.set_key(pack(p, e.issue.number, repos[e.spelling as usize].rank));
        }
        Read {
            entries,
            repositories: rank as usize + 1,
            repos,
            _cache: cache,
        }
    }

    /// The issues kept, in input order until [`Read::sort`], in the total
    /// order after.
    pub(super) fn entries(&self) -> &[Entry<'a>] {
        &self.entries
    }

    /// How many distinct repositories there are (an upper bound on
    /// [`Entry::repository`]).
    pub(super) fn repositories(&self) -> usize {
        self.repositories
    }

    /// The skip of `entry`, built without reaching into its issue (but for
    /// a reason that borrows from it).
    pub(super) fn skip(&self, entry: &Entry<'a>, reason: SkipReason<'a>) -> Skip<'a> {
        Skip {
            repo: self.repos[entry.spelling as usize].spelt,
            number: entry.number(),
            reason,
        }
    }

    /// Sorts the entries by [`Entry::cmp`]: a least-significant-digit radix
    /// sort on the packed key, one pass per 12 bits in which the keys differ
    /// (two or three for 10,000 issues, against fourteen comparisons per
    /// issue for a comparison sort), then equal keys (duplicate issues) by
    /// the rest of the issue.
    pub(super) fn sort(&mut self) {
        let entries = &mut self.entries;
        // The three fields of the packed key, squeezed to the bits they use:
        // usually a few dozen, so two or three radix passes of 12 bits.
        let (mut top_p, mut low_n, mut top_n, mut top_r) = (0u128, u64::MAX, 0u64, 0u32);
        for e in entries.iter() {
            top_p = top_p.max(e.key() >> 96);
            let n = (e.key() >> 32) as u64;
            low_n = low_n.min(n);
            top_n = top_n.max(n);
            top_r = top_r.max(e.key_lo as u32);
        }
        let bits = |x: u128| 128 - x.leading_zeros();
        let (pb, nb, rb) = (
            bits(top_p),
            bits(u128::from(top_n.saturating_sub(low_n))),
            bits(u128::from(top_r)),
        );
        let total = pb + nb + rb;
        if total > 64 || u32::try_from(entries.len()).is_err() {
            entries.sort_unstable_by(Entry::cmp);
            return;
        }
        let compact = |key: u128| {
            let p = (key >> 96) as u64;
            let n = ((key >> 32) as u64) - low_n;
            let r = u64::from(key as u32);
            // A field shifted by 64 is a field of zero bits (its value is
            // 0): `checked_shl` keeps the full-width case from overflowing.
            p.checked_shl(nb + rb).unwrap_or(0) | n.checked_shl(rb).unwrap_or(0) | r
        };
        let mut pairs: Vec<(u64, u32)> = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (compact(e.key()), i as u32))
            .collect();
        let mut spare = pairs.clone();
        const DIGIT: u32 = 12;
        let mut starts = vec![0u32; (1 << DIGIT) + 1];
        let mut shift = 0;
        while shift < total {
            let digit = |p: &(u64, u32)| ((p.0 >> shift) & ((1 << DIGIT) - 1)) as usize;
            starts.fill(0);
            for p in &pairs {
                starts[digit(p) + 1] += 1;
            }
            for d in 0..(1 << DIGIT) {
                starts[d + 1] += starts[d];
            }
            for p in &pairs {
                let d = digit(p);
                spare[starts[d] as usize] = *p;
                starts[d] += 1;
            }
            std::mem::swap(&mut pairs, &mut spare);
            shift += DIGIT;
        }
        let sorted: Vec<Entry<'a>> = pairs.iter().map(|(_, i)| entries[*i as usize]).collect();
        *entries = sorted;
        let mut at = 0;
        while at < entries.len() {
            let mut end = at + 1;
            while end < entries.len() && entries[end].key() == entries[at].key() {
                end += 1;
            }
            if end - at > 1 {
                entries[at..end].sort_unstable_by(Entry::cmp);
            }
            at = end;
        }
    }
}

/// The words of rule 5, built by hand rather than by `format!`: one of
/// these per decision is a measurable part of a call.
pub(super) fn reason(priority: i64, competitors: usize, repo: &str) -> String {
    const MIDDLE: &str =
        ", ready label applied by a trusted collaborator, no open blockers; best of ";
    let mut out = String::with_capacity(120 + repo.len());
    out.push_str("priority ");
    out.push_str(&priority.to_string());
    out.push_str(MIDDLE);
    out.push_str(&competitors.to_string());
    out.push_str(" eligible issue(s) in ");
    out.push_str(repo);
    out
}

/// The normalised repository name: GitHub compares them trimmed and
/// without regard to ASCII case ([`crate::types::same_repo`]).
fn norm(repo: &str) -> String {
    repo.trim().to_ascii_lowercase()
}

/// Eight bytes with their ASCII capitals made small (other bytes, non-ASCII
/// ones included, unchanged), all at once.
fn lower8(x: u64) -> u64 {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let low7 = x & !HIGH;
    let from_a = low7 + 0x3f3f_3f3f_3f3f_3f3f; // high bit set iff byte >= 'A'
    let past_z = low7 + 0x2525_2525_2525_2525; // high bit set iff byte > 'Z'
    let upper = from_a & !past_z & !x & HIGH;
    x | (upper >> 2)
}

/// The first (up to) eight bytes of `b` as a little-endian word.
fn head_word(b: &[u8]) -> u64 {
    match b.first_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        None => b
            .iter()
            .rev()
            .fold(0u64, |acc, x| (acc << 8) | u64::from(*x)),
    }
}

/// The last (up to) eight bytes of `b` as a little-endian word.
fn tail_word(b: &[u8]) -> u64 {
    match b.last_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        None => head_word(b),
    }
}

/// Slots of the repository cache (as a power of two): roomy enough that
/// a few hundred names rarely share one.
const CACHE_BITS: u32 = 12;

/// The repository cache's slot for a name: its length and last eight
/// bytes, mixed.
fn cache_slot(repo: &[u8]) -> usize {
    let mixed =
        (tail_word(repo) ^ (repo.len() as u64).rotate_left(40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (mixed >> (64 - CACHE_BITS)) as usize
}

/// `a == b`, a word at a time and inline (names are short; a library call
/// per issue costs more than the compare).
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() < 8 {
        return head_word(a) == head_word(b);
    }
    // Whole words, then the last eight bytes (overlapping the last word):
    // no byte loop for the remainder.
    let (wa, wb) = (a.chunks_exact(8), b.chunks_exact(8));
    wa.zip(wb).all(|(x, y)| head_word(x) == head_word(y)) && tail_word(a) == tail_word(b)
}

/// One of the policy's labels, prepared once per call: its length, its
/// first eight bytes in lower case, and the rest.
struct Wanted<'c> {
    len: usize,
    head: u64,
    /// The last eight bytes in lower case (overlapping `head` when the
    /// label is shorter than 16 bytes).
    last: u64,
    tail: &'c [u8],
}

impl<'c> Wanted<'c> {
    fn new(label: &'c str) -> Self {
        let b = label.as_bytes();
        Wanted {
            len: b.len(),
            head: lower8(head_word(b)),
            last: lower8(tail_word(b)),
            tail: b.get(8..).unwrap_or(&[]),
        }
    }
}

/// The policy's three labels, prepared.
struct PolicyLabels<'c>([(u8, Wanted<'c>); 3]);

impl<'c> PolicyLabels<'c> {
    fn new(config: &'c Config) -> Self {
        PolicyLabels([
            (READY, Wanted::new(&config.ready_label)),
            (HUMAN, Wanted::new(&config.ready_for_human_label)),
            (STOP, Wanted::new(&config.stop_label)),
        ])
    }

    /// Which of them `issue` carries ([`Issue::has_label`] for each, in one
    /// pass over its labels): a label is compared in full only when its
    /// length and first eight bytes already match. Inlined into each of
    /// [`Read::new`]'s two uses: a call per issue costs more than the match.
    #[inline(always)]
    fn of(&self, issue: &Issue) -> u8 {
        let mut bits = 0;
        let [(_, r), (_, h), (_, s)] = &self.0;
        for l in &issue.labels {
            let b = l.as_bytes();
            // Most labels (`bug`, `priority:1`) match none by length alone.
            if b.len() != r.len && b.len() != h.len && b.len() != s.len {
                continue;
            }
            let head = lower8(head_word(b));
            for (bit, want) in &self.0 {
                if (b.len() == want.len) & (head == want.head)
                    && match b.len() {
                        0..=8 => true,
                        // The last eight bytes cover the rest.
                        9..=16 => lower8(tail_word(b)) == want.last,
                        _ => b.get(8..).unwrap_or(&[]).eq_ignore_ascii_case(want.tail),
                    }
                {
                    bits |= bit;
                }
            }
        }
        bits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_word_at_a_time_label_check_is_eq_ignore_ascii_case(
            a in "[a-zA-Z@\\[`{Z\\-:0-9é ]{0,20}",
            flips in prop::collection::vec(any::<bool>(), 20),
        ) {
            // `b` is `a` with some letters' case flipped, or a neighbour of a
            // letter ('@' for 'A', '[' for 'Z', '`' for 'a', '{' for 'z').
            let b: String = a.chars().zip(flips.iter().cycle()).map(|(c, flip)| match (c, flip) {
                (c, true) if c.is_ascii_lowercase() => c.to_ascii_uppercase(),
                (c, true) if c.is_ascii_uppercase() => c.to_ascii_lowercase(),
                ('@', true) => 'a',
                ('[', true) => '{',
                ('`', true) => 'A',
                (c, _) => c,
            }).collect();
            // As the policy's ready label, `a` is found on an issue
            // carrying `b` exactly when GitHub's comparison says so.
            let config = Config { ready_label: a.clone(), ..Config::default() };
            let mut i = Issue {
                repo: "infra".into(),
                number: 1,
                title: String::new(),
                labels: vec!["bug".into(), b.clone()],
                open_blockers: Vec::new(),
                label_trust: LabelTrust::Trusted,
                priority: 0,
            };
            let found = PolicyLabels::new(&config).of(&i) & READY != 0;
            prop_assert_eq!(found, i.has_label(&a), "{:?} {:?}", a, b);
            i.labels = vec![a.clone()];
            prop_assert!(PolicyLabels::new(&config).of(&i) & READY != 0);
        }

        #[test]
        fn repository_names_compare_a_word_at_a_time_like_slices(
            a in prop::collection::vec(any::<u8>(), 0..24),
            b in prop::collection::vec(any::<u8>(), 0..24),
            same in any::<bool>(),
        ) {
            let b = if same { a.clone() } else { b };
            prop_assert_eq!(same_bytes(&a, &b), a == b);
        }
    }

    #[test]
    fn trust_and_every_other_fact_survive_the_packing() {
        for trust in LabelTrust::ALL {
            for blockers in [vec![], vec![3]] {
                let issue = Issue {
                    repo: "infra".into(),
                    number: 1,
                    title: String::new(),
                    labels: Vec::new(),
                    open_blockers: blockers.clone(),
                    label_trust: *trust,
                    priority: 0,
                };
                let facts = Facts(Facts::of_issue(&issue));
                assert_eq!(facts.trust(), *trust);
                assert_eq!(facts.blocked(), !blockers.is_empty());
                assert!(!facts.ready() && !facts.allowlisted() && !facts.repo_in_flight());
                assert!(!facts.handed_to_human() && !facts.stopped());
            }
        }
    }
}
