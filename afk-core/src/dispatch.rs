//! The dispatch policy: which ready issues may start now.
//!
//! [`select_dispatchable`] is the whole rule; [`plan_dispatch`] is the same
//! decision with the reason every other issue was passed over, for the log and
//! for policy developers. Neither mutates its inputs, and the result does not
//! depend on the order of the issues.
//!
//! The rules, in order:
//! 1. kill switch on: nothing, before looking at any issue;
//! 2. an issue is eligible iff it carries the ready label, its repository
//!    is allowlisted and not in flight, it carries neither the
//!    ready-for-human label (a run handed back to a human is not picked up
//!    again until a human removes that label) nor the stop label, its ready
//!    label was read as applied by a trusted collaborator (trust that was
//!    not read is not trusted), and it has no open blockers; a skipped
//!    issue names the first of these it fails, in this order: the facts
//!    every scan yields first, then trust, then blockers (the poll tick
//!    reads trust only for the issue that can win its repository's slot,
//!    and blockers only for a trusted one);
//! 3. at most one decision per repository: the best eligible issue wins the
//!    slot, so a more urgent but ineligible issue does not block it;
//! 4. ascending `(priority, number)`, then repository name, a total order.
//!
//! Speed (the issue's target: 10,000 issues in 200 repositories in under
//! 0.37 ms, ten times the Python policy this replaces), one pass over the
//! issues in input order does the per-issue work: the repository is found
//! in a small direct-mapped cache (length and last eight bytes, then one
//! compare a word at a time) in front of a table that normalises each
//! distinct name once and looks it up in the allowlist and in-flight sets;
//! the policy's three labels, prepared once, are matched in one pass over
//! the issue's labels (by length first, then eight bytes at a time); trust
//! and blockers become bits; the priority range is tracked. Then the total
//! order is one packed key per issue, squeezed to the bits the call uses and
//! radix-sorted as (key, index) pairs, 12 bits a pass (the rest of an issue
//! only breaks exact ties); a skip borrows from its issue and is built from
//! what the ordered pass holds, so none allocates; a decision's reason is
//! written once. [`select_dispatchable`] builds no skips at all: an
//! ineligible issue is dropped as soon as it is seen, and each repository's
//! best eligible issue is kept in one pass. Measured by
//! `cargo run --release -p afk-core --example bench_dispatch`.
//!
//! This file is long because its property tests check the fast path against
//! a plain per-issue oracle; the policy itself, with its fast paths, is
//! about 740 lines.

use std::fmt;

use crate::config::Config;
use crate::types::{Issue, LabelTrust};

/// One issue that may start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The repository, as the issue names it.
    pub repo: String,
    /// The issue number.
    pub number: u64,
    /// The issue's priority (lower runs first).
    pub priority: i64,
    /// Why it was chosen; for humans and logs, never parsed.
    pub reason: String,
}

/// Why an issue was passed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason<'a> {
    /// The kill switch is on.
    KillSwitch,
    /// The issue does not carry the ready label.
    NotReady,
    /// The ready label was not applied by a trusted collaborator (or who
    /// applied it is unknown).
    Untrusted,
    /// Who applied the ready label was not read: trust that was not read is
    /// not trusted.
    TrustNotRead,
    /// The repository is not on the allowlist.
    NotAllowlisted,
    /// Another run holds the repository's lock.
    RepoInFlight,
    /// Issues that block this one are still open.
    Blocked {
        /// Their numbers (borrowed from the issue: a skip allocates
        /// nothing).
        open_blockers: &'a [u64],
    },
    /// The issue was handed back to a human.
    HandedToHuman,
    /// The issue carries the stop label.
    Stopped,
    /// A better eligible issue in the same repository took the slot.
    LostSlot {
        /// The issue that took it.
        winner: u64,
    },
}

impl fmt::Display for SkipReason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::KillSwitch => f.write_str("kill switch is on"),
            SkipReason::NotReady => f.write_str("does not carry the ready label"),
            SkipReason::Untrusted => {
                f.write_str("ready label was not applied by a trusted collaborator")
            }
            SkipReason::TrustNotRead => {
                f.write_str("the ready label's trust was not read this tick")
            }
            SkipReason::NotAllowlisted => f.write_str("repository is not on the allowlist"),
            SkipReason::RepoInFlight => f.write_str("repository already has a run in flight"),
            SkipReason::Blocked { open_blockers } => {
                let list = open_blockers
                    .iter()
                    .map(|n| format!("#{n}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                write!(f, "blocked by open issue(s) {list}")
            }
            SkipReason::HandedToHuman => f.write_str("handed back to a human (ready-for-human)"),
            SkipReason::Stopped => f.write_str("carries the stop label"),
            SkipReason::LostSlot { winner } => {
                write!(f, "#{winner} takes this repository's slot first")
            }
        }
    }
}

/// An issue that was passed over, and why; it borrows from the issues it was
/// planned over, so a plan over 10,000 issues allocates no string per skip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip<'a> {
    /// The repository, as the issue names it.
    pub repo: &'a str,
    /// The issue number.
    pub number: u64,
    /// The first rule it failed.
    pub reason: SkipReason<'a>,
}

/// The decisions, in dispatch order, and every skipped issue with its reason
/// (in the same total order as the decisions).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DispatchPlan<'a> {
    /// The issues to dispatch now, in order.
    pub decisions: Vec<Decision>,
    /// Every other issue, and why.
    pub skipped: Vec<Skip<'a>>,
}

/// The issues to dispatch now, in order. See the module docs for the rules.
/// Skips are not built (nor sorted): only each repository's best eligible
/// issue is looked for.
pub fn select_dispatchable(
    issues: &[Issue],
    config: &Config,
    in_flight_repos: &[String],
) -> Vec<Decision> {
    plan(issues, config, in_flight_repos, false).decisions
}

/// [`select_dispatchable`] together with the reason every other issue was
/// passed over.
pub fn plan_dispatch<'a>(
    issues: &'a [Issue],
    config: &Config,
    in_flight_repos: &[String],
) -> DispatchPlan<'a> {
    plan(issues, config, in_flight_repos, true)
}

/// What one distinct repository string resolves to, computed once per call
/// (not once per issue): its rank among the normalised names (equal names,
/// equal rank), and whether it is allowlisted or in flight.
struct RepoFacts {
    rank: u32,
    allowed: bool,
    in_flight: bool,
}

// The per-call lookup tables use rustc's FxHash: their keys are repository
// names from our own inputs, looked up when the repository cache misses, where
// SipHash's flooding resistance buys nothing and costs most of the call.
// Nothing iterates these tables, so the result never depends on the hash.
type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;
type FastSet<K> = rustc_hash::FxHashSet<K>;

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

const READY: u8 = 1;
const HUMAN: u8 = 2;
const STOP: u8 = 4;
/// The ready label was read as not applied by a trusted collaborator.
const UNTRUSTED: u8 = 8;
/// Issues that block this one are still open.
const BLOCKED: u8 = 16;
/// Who applied the ready label was not read.
const TRUST_NOT_READ: u8 = 32;

/// Everything about an issue the rules look at besides its repository, as
/// bits, read while the issues are read in order: the ordered pass later
/// reaches back into an issue only for its blockers' numbers.
fn issue_bits(issue: &Issue, labels: u8) -> u8 {
    let mut bits = labels;
    bits |= match issue.label_trust {
        LabelTrust::Trusted => 0,
        LabelTrust::Untrusted => UNTRUSTED,
        LabelTrust::NotRead => TRUST_NOT_READ,
    };
    if !issue.open_blockers.is_empty() {
        bits |= BLOCKED;
    }
    bits
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
    /// length and first eight bytes already match.
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

/// The normalised repository name: GitHub compares them trimmed and
/// without regard to ASCII case ([`crate::types::same_repo`]).
fn norm(repo: &str) -> String {
    repo.trim().to_ascii_lowercase()
}

/// An issue's place in the total order: `(priority, number, repository
/// rank)` packed into one integer (the priority as its rank among the
/// call's distinct priorities), computed once; the rest of the issue only
/// breaks ties between otherwise equal issues (duplicates of a shifted
/// page).
#[derive(Clone, Copy)]
struct Keyed<'a> {
    /// The packed key's high and low halves (two words rather than one
    /// `u128`, whose 16-byte alignment would make every entry 48 bytes).
    key_hi: u64,
    key_lo: u64,
    facts: u32,
    labels: u8,
    issue: &'a Issue,
}

impl Keyed<'_> {
    fn key(&self) -> u128 {
        (u128::from(self.key_hi) << 64) | u128::from(self.key_lo)
    }

    /// The issue's number, from the key.
    fn number(&self) -> u64 {
        ((self.key() >> 32) & u128::from(u64::MAX)) as u64
    }

    fn set_key(&mut self, key: u128) {
        self.key_hi = (key >> 64) as u64;
        self.key_lo = key as u64;
    }

    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key()
            .cmp(&other.key())
            .then_with(|| rest_key(self.issue).cmp(&rest_key(other.issue)))
    }

    fn rank(&self) -> u32 {
        // The low 32 bits hold the repository's rank.
        self.key_lo as u32
    }
}

/// `(priority rank, number, repository rank)` as one integer, in that
/// order of significance.
fn pack(priority_rank: u32, number: u64, repo_rank: u32) -> u128 {
    (u128::from(priority_rank) << 96) | (u128::from(number) << 32) | u128::from(repo_rank)
}

type RestKey<'a> = (&'a str, LabelTrust, &'a [u64], &'a [String], &'a str);

fn rest_key(issue: &Issue) -> RestKey<'_> {
    (
        &issue.repo,
        issue.label_trust,
        &issue.open_blockers,
        &issue.labels,
        &issue.title,
    )
}

/// Sorts by [`Keyed::cmp`]: a least-significant-digit radix sort on the
/// packed key, one pass per byte in which the keys differ (about four for
/// 10,000 issues, against fourteen comparisons per issue for a comparison
/// sort), then equal keys (duplicate issues) by the rest of the issue.
fn sort_keyed(keyed: &mut Vec<Keyed<'_>>) {
    // The three fields of the packed key, squeezed to the bits they use:
    // usually a few dozen, so two or three radix passes of 12 bits.
    let (mut top_p, mut low_n, mut top_n, mut top_r) = (0u128, u64::MAX, 0u64, 0u32);
    for k in keyed.iter() {
        top_p = top_p.max(k.key() >> 96);
        let n = (k.key() >> 32) as u64;
        low_n = low_n.min(n);
        top_n = top_n.max(n);
        top_r = top_r.max(k.key_lo as u32);
    }
    let bits = |x: u128| 128 - x.leading_zeros();
    let (pb, nb, rb) = (
        bits(top_p),
        bits(u128::from(top_n.saturating_sub(low_n))),
        bits(u128::from(top_r)),
    );
    let total = pb + nb + rb;
    if total > 64 || u32::try_from(keyed.len()).is_err() {
        keyed.sort_unstable_by(Keyed::cmp);
        return;
    }
    let compact = |key: u128| {
        let p = (key >> 96) as u64;
        let n = ((key >> 32) as u64) - low_n;
        let r = u64::from(key as u32);
        (p << (nb + rb)) | (n << rb) | r
    };
    let mut pairs: Vec<(u64, u32)> = keyed
        .iter()
        .enumerate()
        .map(|(i, k)| (compact(k.key()), i as u32))
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
    let sorted: Vec<Keyed<'_>> = pairs.iter().map(|(_, i)| keyed[*i as usize]).collect();
    *keyed = sorted;
    let mut at = 0;
    while at < keyed.len() {
        let mut end = at + 1;
        while end < keyed.len() && keyed[end].key() == keyed[at].key() {
            end += 1;
        }
        if end - at > 1 {
            keyed[at..end].sort_unstable_by(Keyed::cmp);
        }
        at = end;
    }
}

fn plan<'a>(
    issues: &'a [Issue],
    config: &Config,
    in_flight_repos: &[String],
    want_skips: bool,
) -> DispatchPlan<'a> {
    if config.kill_switch && !want_skips {
        return DispatchPlan::default();
    }
    // Each distinct repository string is normalised and looked up once.
    let allowed: FastSet<String> = config.allowlist.iter().map(|r| norm(r)).collect();
    let flying: FastSet<String> = in_flight_repos.iter().map(|r| norm(r)).collect();
    let mut index: FastMap<&str, usize> = FastMap::default();
    let mut names: Vec<String> = Vec::new();
    // The spelling each entry of `names` was first seen in, for the cache.
    let mut spelt: Vec<&str> = Vec::new();
    let mut keyed: Vec<Keyed<'_>> = Vec::with_capacity(issues.len());
    let wanted = PolicyLabels::new(config);
    // A small direct-mapped cache in front of the table: a repository
    // string seen before is found by its length and last eight bytes and
    // one compare of its words, without hashing it.
    let mut cache = vec![0u32; 1 << CACHE_BITS];
    // Each distinct repository's facts (its rank comes once all are known).
    let mut facts: Vec<RepoFacts> = Vec::new();
    // The priorities' range: when it is narrow (`priority:<n>` labels), a
    // priority's distance from the lowest is its place in the packed key.
    let (mut low, mut high) = (i64::MAX, i64::MIN);
    for issue in issues {
        let repo = issue.repo.as_bytes();
        let slot = cache_slot(repo);
        let cached = cache[slot] as usize;
        let facts_at = if cached != 0 && same_bytes(spelt[cached - 1].as_bytes(), repo) {
            cached - 1
        } else {
            let next = names.len();
            let at = *index.entry(issue.repo.as_str()).or_insert_with(|| {
                let name = norm(&issue.repo);
                facts.push(RepoFacts {
                    rank: 0,
                    allowed: allowed.contains(&name),
                    in_flight: flying.contains(&name),
                });
                names.push(name);
                spelt.push(&issue.repo);
                next
            });
            if same_bytes(spelt[at].as_bytes(), repo) {
                cache[slot] = u32::try_from(at + 1).unwrap_or(0);
            }
            at
        };
        low = low.min(issue.priority);
        high = high.max(issue.priority);
        let labels = issue_bits(issue, wanted.of(issue));
        // Decisions only: an ineligible issue plays no further part.
        if !want_skips && ineligibility(issue, labels, &facts[facts_at]).is_some() {
            continue;
        }
        keyed.push(Keyed {
            key_hi: 0,
            key_lo: 0,
            facts: facts_at as u32,
            labels,
            issue,
        });
    }
    let mut by_name: Vec<usize> = (0..names.len()).collect();
    by_name.sort_unstable_by(|a, b| names[*a].cmp(&names[*b]));
    let mut rank = 0u32;
    for (i, at) in by_name.iter().enumerate() {
        if i > 0 && names[*at] != names[by_name[i - 1]] {
            rank += 1;
        }
        facts[*at].rank = rank;
    }
    // A wide range (priorities far apart) ranks the distinct values instead:
    // either way the packed key orders exactly as the priorities do.
    let narrow = high
        .checked_sub(low)
        .is_some_and(|r| r < i64::from(u32::MAX));
    let mut distinct: Vec<i64> = Vec::new();
    if !narrow {
        distinct = keyed.iter().map(|k| k.issue.priority).collect();
        distinct.sort_unstable();
        distinct.dedup();
    }
    for k in &mut keyed {
        let p = if narrow {
            (k.issue.priority - low) as u32
        } else {
            distinct.binary_search(&k.issue.priority).unwrap_or(0) as u32
        };
        let key = pack(p, k.issue.number, facts[k.facts as usize].rank);
        k.set_key(key);
    }

    if !want_skips {
        // Only each repository's best eligible issue matters: one pass.
        let mut best: Vec<Option<(Keyed<'_>, usize)>> = vec![None; rank as usize + 1];
        for k in &keyed {
            if ineligibility(k.issue, k.labels, &facts[k.facts as usize]).is_some() {
                continue;
            }
            match &mut best[k.rank() as usize] {
                Some((winner, n)) => {
                    *n += 1;
                    if k.cmp(winner).is_lt() {
                        *winner = *k;
                    }
                }
                free @ None => *free = Some((*k, 1)),
            }
        }
        let mut winners: Vec<(Keyed<'_>, usize)> = best.into_iter().flatten().collect();
        winners.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        return DispatchPlan {
            decisions: winners
                .into_iter()
                .map(|(k, n)| decision(k.issue, n))
                .collect(),
            skipped: Vec::new(),
        };
    }

    // A total order over whole issues, so that even duplicates (a paginated
    // read that shifted) are visited in an order that does not depend on the
    // input's order.
    sort_keyed(&mut keyed);
    if config.kill_switch {
        return DispatchPlan {
            decisions: Vec::new(),
            skipped: keyed
                .iter()
                .map(|k| skip_of(k, &spelt, SkipReason::KillSwitch))
                .collect(),
        };
    }
    let mut plan = DispatchPlan::default();
    // Repository rank → the issue that won its slot (its index in the
    // decisions), with how many eligible issues competed for it.
    let mut slots: Vec<Option<(usize, usize)>> = vec![None; rank as usize + 1];
    plan.skipped.reserve(keyed.len());
    for k in &keyed {
        if let Some(reason) = ineligibility(k.issue, k.labels, &facts[k.facts as usize]) {
            plan.skipped.push(skip_of(k, &spelt, reason));
            continue;
        }
        match &mut slots[k.rank() as usize] {
            Some((at, n)) => {
                *n += 1;
                let winner = plan.decisions[*at].number;
                plan.skipped
                    .push(skip_of(k, &spelt, SkipReason::LostSlot { winner }));
            }
            free @ None => {
                *free = Some((plan.decisions.len(), 1));
                plan.decisions.push(undecided(k.issue));
            }
        }
    }
    for (at, competitors) in slots.into_iter().flatten() {
        let d = &mut plan.decisions[at];
        d.reason = reason(d.priority, competitors, &d.repo);
    }
    plan
}

fn reason(priority: i64, competitors: usize, repo: &str) -> String {
    // Built by hand, not by `format!`: one of these per decision is a
    // measurable part of a call.
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

fn decision(issue: &Issue, competitors: usize) -> Decision {
    let mut d = undecided(issue);
    d.reason = reason(issue.priority, competitors, &issue.repo);
    d
}

/// A decision whose reason is written once its competitors are counted.
fn undecided(issue: &Issue) -> Decision {
    Decision {
        repo: issue.repo.clone(),
        number: issue.number,
        priority: issue.priority,
        reason: String::new(),
    }
}

/// A skip, built from what the ordered pass already holds: the repository's
/// spelling (the issue's own, exactly) and the number from the key.
fn skip_of<'a>(k: &Keyed<'a>, spelt: &[&'a str], reason: SkipReason<'a>) -> Skip<'a> {
    Skip {
        repo: spelt[k.facts as usize],
        number: k.number(),
        reason,
    }
}

/// The first eligibility rule `issue` fails, if any, given its bits
/// ([`PolicyLabels::of`], [`issue_bits`]).
fn ineligibility<'a>(issue: &'a Issue, labels: u8, repo: &RepoFacts) -> Option<SkipReason<'a>> {
    if labels & READY == 0 {
        return Some(SkipReason::NotReady);
    }
    if !repo.allowed {
        return Some(SkipReason::NotAllowlisted);
    }
    if repo.in_flight {
        return Some(SkipReason::RepoInFlight);
    }
    if labels & HUMAN != 0 {
        return Some(SkipReason::HandedToHuman);
    }
    if labels & STOP != 0 {
        return Some(SkipReason::Stopped);
    }
    if labels & UNTRUSTED != 0 {
        return Some(SkipReason::Untrusted);
    }
    if labels & TRUST_NOT_READ != 0 {
        return Some(SkipReason::TrustNotRead);
    }
    if labels & BLOCKED != 0 {
        return Some(SkipReason::Blocked {
            open_blockers: &issue.open_blockers,
        });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::same_repo;
    use proptest::prelude::*;

    /// The first rule an issue fails, by the plain rules: the oracle the
    /// prepared label checks and lookup tables are checked against.
    fn slow_ineligibility<'a>(
        issue: &'a Issue,
        config: &Config,
        in_flight: &[String],
    ) -> Option<SkipReason<'a>> {
        let repo = slow_facts(issue, config, in_flight);
        let mut labels = 0;
        for (bit, label) in [
            (READY, &config.ready_label),
            (HUMAN, &config.ready_for_human_label),
            (STOP, &config.stop_label),
        ] {
            if issue.has_label(label) {
                labels |= bit;
            }
        }
        labels |= match issue.label_trust {
            LabelTrust::Trusted => 0,
            LabelTrust::Untrusted => UNTRUSTED,
            LabelTrust::NotRead => TRUST_NOT_READ,
        };
        if !issue.open_blockers.is_empty() {
            labels |= BLOCKED;
        }
        ineligibility(issue, labels, &repo)
    }

    /// The repository facts by the plain rule, one scan per issue: the
    /// oracle the per-call lookup tables are checked against.
    fn slow_facts(issue: &Issue, config: &Config, in_flight: &[String]) -> RepoFacts {
        RepoFacts {
            rank: 0,
            allowed: config.allows(&issue.repo),
            in_flight: in_flight.iter().any(|r| same_repo(r, &issue.repo)),
        }
    }

    fn armed(allowlist: &[&str]) -> Config {
        Config {
            kill_switch: false,
            allowlist: allowlist.iter().map(|s| (*s).to_owned()).collect(),
            ..Config::default()
        }
    }

    fn issue(repo: &str, number: u64) -> Issue {
        Issue {
            repo: repo.to_owned(),
            number,
            title: format!("issue {number}"),
            labels: vec!["ready-for-agent".to_owned()],
            open_blockers: Vec::new(),
            label_trust: LabelTrust::Trusted,
            priority: 0,
        }
    }

    fn picked(issues: &[Issue], config: &Config, in_flight: &[&str]) -> Vec<String> {
        let in_flight: Vec<String> = in_flight.iter().map(|s| (*s).to_owned()).collect();
        select_dispatchable(issues, config, &in_flight)
            .into_iter()
            .map(|d| format!("{}#{}", d.repo, d.number))
            .collect()
    }

    #[test]
    fn kill_switch_dispatches_nothing() {
        let config = Config {
            allowlist: vec!["infra".into()],
            ..Config::default()
        };
        assert!(picked(&[issue("infra", 1)], &config, &[]).is_empty());
    }

    #[test]
    fn each_eligibility_rule_excludes() {
        let config = armed(&["infra", "web"]);
        let check = |i: Issue, in_flight: &[&str], expected: Option<SkipReason<'_>>| {
            let in_flight_owned: Vec<String> = in_flight.iter().map(|s| (*s).to_owned()).collect();
            let plan = plan_dispatch(std::slice::from_ref(&i), &config, &in_flight_owned);
            match expected {
                None => assert_eq!(plan.decisions.len(), 1, "{i:?}"),
                Some(reason) => {
                    assert!(plan.decisions.is_empty(), "{i:?}");
                    assert_eq!(plan.skipped[0].reason, reason);
                }
            }
        };
        check(issue("infra", 1), &[], None);
        check(
            Issue {
                labels: vec![],
                ..issue("infra", 1)
            },
            &[],
            Some(SkipReason::NotReady),
        );
        check(
            Issue {
                label_trust: LabelTrust::Untrusted,
                ..issue("infra", 1)
            },
            &[],
            Some(SkipReason::Untrusted),
        );
        check(issue("other", 1), &[], Some(SkipReason::NotAllowlisted));
        check(
            issue("acme/infra", 1),
            &[],
            Some(SkipReason::NotAllowlisted),
        );
        check(
            issue("infra", 1),
            &["INFRA"],
            Some(SkipReason::RepoInFlight),
        );
        check(
            Issue {
                open_blockers: vec![3],
                ..issue("infra", 1)
            },
            &[],
            Some(SkipReason::Blocked {
                open_blockers: &[3],
            }),
        );
        check(
            Issue {
                labels: vec!["ready-for-agent".into(), "Ready-For-Human".into()],
                ..issue("infra", 1)
            },
            &[],
            Some(SkipReason::HandedToHuman),
        );
    }

    #[test]
    fn one_per_repository_best_eligible_wins() {
        let config = armed(&["infra", "web"]);
        let urgent_but_blocked = Issue {
            priority: -5,
            open_blockers: vec![1],
            ..issue("infra", 2)
        };
        let issues = vec![
            issue("infra", 9),
            Issue {
                priority: 1,
                ..issue("infra", 3)
            },
            urgent_but_blocked,
            issue("web", 4),
            issue("infra", 5),
        ];
        assert_eq!(picked(&issues, &config, &[]), ["web#4", "infra#5"]);
    }

    #[test]
    fn reasons_are_snapshotted() {
        let config = armed(&["infra", "web"]);
        let issues = vec![
            issue("infra", 9),
            issue("infra", 5),
            Issue {
                label_trust: LabelTrust::Untrusted,
                ..issue("web", 1)
            },
            issue("web", 2),
            Issue {
                label_trust: LabelTrust::NotRead,
                ..issue("infra", 3)
            },
            Issue {
                label_trust: LabelTrust::Untrusted,
                priority: -1,
                ..issue("infra", 4)
            },
        ];
        let plan = plan_dispatch(&issues, &config, &["web".to_owned()]);
        let mut out = String::new();
        for d in &plan.decisions {
            out.push_str(&format!("dispatch {}#{}: {}\n", d.repo, d.number, d.reason));
        }
        for s in &plan.skipped {
            out.push_str(&format!("skip {}#{}: {}\n", s.repo, s.number, s.reason));
        }
        insta::assert_snapshot!(out, @r"
        dispatch infra#5: priority 0, ready label applied by a trusted collaborator, no open blockers; best of 2 eligible issue(s) in infra
        skip infra#4: ready label was not applied by a trusted collaborator
        skip web#1: repository already has a run in flight
        skip web#2: repository already has a run in flight
        skip infra#3: the ready label's trust was not read this tick
        skip infra#9: #5 takes this repository's slot first
        ");
    }

    fn arb_issue() -> impl Strategy<Value = Issue> {
        (
            prop::sample::select(vec!["infra", "web", "api", "Infra", "docs"]),
            1u64..40,
            -2i64..4,
            prop::sample::select(LabelTrust::ALL),
            prop::collection::vec(1u64..5, 0..2),
            prop::sample::select(vec![
                vec![],
                vec!["ready-for-agent"],
                vec!["ready-for-agent", "ready-for-human"],
                vec!["bug", "ready-for-agent"],
            ]),
        )
            .prop_map(
                |(repo, number, priority, trusted, blockers, labels)| Issue {
                    repo: repo.to_owned(),
                    number,
                    title: String::new(),
                    labels: labels.into_iter().map(str::to_owned).collect(),
                    open_blockers: blockers,
                    label_trust: trusted,
                    priority,
                },
            )
    }

    fn arb_config() -> impl Strategy<Value = Config> {
        (
            any::<bool>(),
            prop::sample::subsequence(vec!["infra", "web", "api", "docs"], 0..4),
        )
            .prop_map(|(kill_switch, allow)| Config {
                kill_switch,
                allowlist: allow.into_iter().map(str::to_owned).collect(),
                ..Config::default()
            })
    }

    proptest! {
        #[test]
        fn dispatch_laws(
            issues in prop::collection::vec(arb_issue(), 0..25),
            config in arb_config(),
            in_flight in prop::sample::subsequence(vec!["infra".to_owned(), "web".to_owned()], 0..2),
            seed in any::<u64>(),
        ) {
            let before = issues.clone();
            let decisions = select_dispatchable(&issues, &config, &in_flight);
            // The fast path (no skips) decides exactly as the full plan.
            prop_assert_eq!(&plan_dispatch(&issues, &config, &in_flight).decisions, &decisions);
            // Inputs untouched.
            prop_assert_eq!(&issues, &before);
            // Empty under the kill switch.
            if config.kill_switch {
                prop_assert!(decisions.is_empty());
            }
            // A subset of the input, each decision an eligible issue.
            for d in &decisions {
                let eligible_source = issues.iter().any(|i| {
                    i.repo == d.repo && i.number == d.number && i.priority == d.priority
                        && slow_ineligibility(i, &config, &in_flight).is_none()
                });
                prop_assert!(eligible_source, "{:?} is not an eligible input issue", d);
            }
            // At most one per repository.
            let mut repos: Vec<String> = decisions.iter().map(|d| d.repo.to_ascii_lowercase()).collect();
            repos.sort();
            let n = repos.len();
            repos.dedup();
            prop_assert_eq!(repos.len(), n);
            // Ordered by (priority, number).
            for pair in decisions.windows(2) {
                prop_assert!((pair[0].priority, pair[0].number) <= (pair[1].priority, pair[1].number));
            }
            // Each decision is the best eligible issue of its repository.
            for d in &decisions {
                let best = issues.iter()
                    .filter(|i| same_repo(&i.repo, &d.repo)
                        && slow_ineligibility(i, &config, &in_flight).is_none())
                    .map(|i| (i.priority, i.number))
                    .min();
                prop_assert_eq!(best, Some((d.priority, d.number)));
            }
            // Independent of input order.
            let mut shuffled = issues.clone();
            let len = shuffled.len();
            if len > 1 {
                let mut state = seed;
                for i in (1..len).rev() {
                    state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let j = usize::try_from(state >> 33).unwrap_or(0) % (i + 1);
                    shuffled.swap(i, j);
                }
            }
            prop_assert_eq!(select_dispatchable(&shuffled, &config, &in_flight), decisions);
        }

        #[test]
        fn no_decision_is_made_on_trust_that_is_not_read_as_trusted(
            issues in prop::collection::vec(arb_issue(), 0..30),
            doubts in prop::collection::vec(prop::option::of(prop::sample::select(vec![LabelTrust::Untrusted, LabelTrust::NotRead])), 30),
            config in arb_config(),
            in_flight in prop::sample::subsequence(vec!["infra".to_owned(), "web".to_owned()], 0..2),
        ) {
            // Whatever else holds of an issue, trust that is untrusted or
            // not read is never dispatched, and its skip names a rule at or
            // before trust, never a lost slot.
            let mut issues = issues;
            for (i, (issue, doubt)) in issues.iter_mut().zip(&doubts).enumerate() {
                issue.number = i as u64 + 1;
                if let Some(doubt) = doubt {
                    issue.label_trust = *doubt;
                }
            }
            let plan = plan_dispatch(&issues, &config, &in_flight);
            prop_assert_eq!(&select_dispatchable(&issues, &config, &in_flight), &plan.decisions);
            for d in &plan.decisions {
                let i = &issues[usize::try_from(d.number - 1).unwrap_or(usize::MAX)];
                prop_assert_eq!(i.label_trust, LabelTrust::Trusted, "{:?}", d);
            }
            for s in &plan.skipped {
                let i = &issues[usize::try_from(s.number - 1).unwrap_or(usize::MAX)];
                let allowed = match i.label_trust {
                    LabelTrust::Trusted => true,
                    LabelTrust::Untrusted => s.reason != SkipReason::TrustNotRead,
                    LabelTrust::NotRead => s.reason != SkipReason::Untrusted,
                } && (i.label_trust == LabelTrust::Trusted
                    || !matches!(s.reason, SkipReason::LostSlot { .. } | SkipReason::Blocked { .. }));
                prop_assert!(allowed, "{:?} skipped for {:?}", i, s.reason);
            }
            if issues.iter().all(|i| i.label_trust != LabelTrust::Trusted) {
                prop_assert!(plan.decisions.is_empty());
            }
        }

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
            let mut i = issue("infra", 1);
            i.labels = vec!["bug".into(), b.clone()];
            let found = PolicyLabels::new(&config).of(&i) & READY != 0;
            prop_assert_eq!(found, i.has_label(&a), "{:?} {:?}", a, b);
            i.labels = vec![a.clone()];
            prop_assert!(PolicyLabels::new(&config).of(&i) & READY != 0);
        }

        #[test]
        fn every_issue_is_planned_once_in_the_total_order(
            issues in prop::collection::vec(arb_issue(), 0..40),
            priorities in prop::collection::vec(prop::sample::select(vec![i64::MIN, -1, 0, 3, i64::MAX]), 40),
            numbers in prop::collection::vec(prop::sample::select(vec![0, 1, 7, u64::MAX]), 40),
            config in arb_config(),
        ) {
            let mut issues = issues;
            for (i, issue) in issues.iter_mut().enumerate() {
                if i % 3 == 0 {
                    issue.priority = priorities[i];
                    issue.number = numbers[i];
                }
            }
            let plan = plan_dispatch(&issues, &config, &[]);
            prop_assert_eq!(plan.decisions.len() + plan.skipped.len(), issues.len());
            // The skips come in the plain order: (priority, number,
            // normalised repository), then the rest of the issue.
            let mut oracle: Vec<&Issue> = issues.iter().collect();
            oracle.sort_by(|a, b| (a.priority, a.number, norm(&a.repo)).cmp(&(b.priority, b.number, norm(&b.repo)))
                .then_with(|| rest_key(a).cmp(&rest_key(b))));
            let planned: Vec<(&str, u64)> = plan.skipped.iter().map(|s| (s.repo, s.number)).collect();
            let expected: Vec<(&str, u64)> = oracle.iter()
                .filter(|i| !plan.decisions.iter().any(|d| d.repo == i.repo && d.number == i.number))
                .map(|i| (i.repo.as_str(), i.number))
                .collect();
            if issues.iter().all(|i| issues.iter().filter(|j| j.repo == i.repo && j.number == i.number).count() == 1) {
                prop_assert_eq!(planned, expected);
            }
        }

        #[test]
        fn many_repositories_decide_like_the_plain_rules(
            picks in prop::collection::vec((0u32..700, 1u64..5, any::<bool>(), -1i64..3), 0..300),
            allowed in prop::collection::vec(0u32..700, 0..400),
        ) {
            // Hundreds of repositories, named alike but for their last
            // characters and their case: the repository cache's slots are
            // shared and evicted, and must never mix two names up.
            let name = |n: u32, upper: bool| {
                let s = format!("Acme-Org/service-{n:04}");
                if upper { s.to_ascii_uppercase() } else { s }
            };
            let issues: Vec<Issue> = picks.iter().map(|(r, number, upper, priority)| Issue {
                priority: *priority,
                ..issue(&name(*r, *upper), *number)
            }).collect();
            let config = armed(&allowed.iter().map(|r| name(*r, false)).collect::<Vec<_>>().iter().map(String::as_str).collect::<Vec<_>>());
            let decisions = select_dispatchable(&issues, &config, &[]);
            prop_assert_eq!(&plan_dispatch(&issues, &config, &[]).decisions, &decisions);
            let mut expected: Vec<(String, i64, u64)> = Vec::new();
            for i in &issues {
                if slow_ineligibility(i, &config, &[]).is_some() {
                    continue;
                }
                let key = i.repo.to_ascii_lowercase();
                match expected.iter_mut().find(|(r, _, _)| *r == key) {
                    Some(best) => if (i.priority, i.number) < (best.1, best.2) { *best = (key, i.priority, i.number) },
                    None => expected.push((key, i.priority, i.number)),
                }
            }
            let mut got: Vec<(String, i64, u64)> = decisions.iter().map(|d| (d.repo.to_ascii_lowercase(), d.priority, d.number)).collect();
            got.sort();
            expected.sort();
            prop_assert_eq!(got, expected);
        }
    }
}
