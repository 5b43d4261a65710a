//! The vocabulary of the loop: issues, agent liveness, CI verdicts, run phases
//! and points in time.
//!
//! These are domain types. They know their own short names (the ones afk's
//! own formats use, such as `needs_input`) but nothing about how GitHub or T3
//! spell things: adapters map wire values into these types.

use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// An issue as the dispatch policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Repository, either `name` or `owner/name`, exactly as the allowlist
    /// names it (the adapter resolves bare names before this point).
    pub repo: String,
    /// Issue number within the repository.
    pub number: u64,
    /// Title, for humans only.
    pub title: String,
    /// Every label on the issue.
    pub labels: Vec<String>,
    /// Numbers of the issues that block this one and are still open.
    pub open_blockers: Vec<u64>,
    /// Whether the most recent application of the ready label was made by a
    /// trusted collaborator, as far as the caller read it. Only
    /// [`LabelTrust::Trusted`] may ever be dispatched: trust that was not
    /// read is not trusted.
    pub label_trust: LabelTrust,
    /// Lower runs first; see [`priority_from_labels`].
    pub priority: i64,
}

impl Issue {
    /// Whether the issue carries `label` (GitHub label names are
    /// case-insensitive).
    pub fn has_label(&self, label: &str) -> bool {
        self.labels.iter().any(|l| l.eq_ignore_ascii_case(label))
    }

    /// `repo#number`, the way humans and doorbells name an issue.
    pub fn key(&self) -> String {
        format!("{}#{}", self.repo, self.number)
    }
}

/// The hash the prompt's quoting tokens derive from: the 64-bit FNV-1a of
/// the `fnv` crate. Not meant to resist chosen collisions, but **stable**:
/// the same texts give the same prompt on every run, every machine and every
/// build. That is why this is not `rustc-hash`'s `FxHasher` (the
/// workspace's general-purpose fast hash): FxHash has no random state, so it
/// is deterministic within one build, but its output differs between 32- and
/// 64-bit targets and changed between its major versions (1.x to 2.x);
/// FNV-1a is a published function with published test vectors, checked
/// below.
pub(crate) type StableHasher = fnv::FnvHasher;

/// Whether two repository names denote the same repository. GitHub compares
/// owner and repository names case-insensitively, and so do we.
pub fn same_repo(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// The priority an issue's labels give it: the lowest numeric
/// `priority:<n>` label, or 0 without one. Non-numeric values such as
/// `priority:high` are ignored.
pub fn priority_from_labels<S: AsRef<str>>(labels: &[S]) -> i64 {
    labels
        .iter()
        .filter_map(|label| {
            let label = label.as_ref().trim();
            let (prefix, value) = label.split_once(':')?;
            if !prefix.trim().eq_ignore_ascii_case("priority") {
                return None;
            }
            value.trim().parse::<i64>().ok()
        })
        .min()
        .unwrap_or(0)
}

/// The issue numbers named by "Blocked by #N" clauses in an issue body.
///
/// A clause starts at the words `blocked by` (any case) and takes every `#N`
/// on the rest of that line. Numbers are de-duplicated and kept in order of
/// first mention. Whether a blocker still blocks (is it open?) is a fact the
/// tracker supplies; this only reads the text.
pub fn blocked_by_refs(body: &str) -> Vec<u64> {
    let mut found = Vec::new();
    for line in body.lines() {
        let lower = line.to_ascii_lowercase();
        let Some(start) = lower.find("blocked by") else {
            continue;
        };
        let rest = &line[start + "blocked by".len()..];
        let mut chars = rest.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c != '#' {
                continue;
            }
            let digits: String = rest[i + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            if let Ok(n) = digits.parse::<u64>()
                && n > 0
                && !found.contains(&n)
            {
                found.push(n);
            }
            while chars.peek().is_some_and(|(_, d)| d.is_ascii_digit()) {
                chars.next();
            }
        }
    }
    found
}

/// An error reading one of the short names below.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?} (expected one of: {expected})")]
pub struct UnknownName {
    /// What kind of name was being read.
    pub what: &'static str,
    /// The text that did not match.
    pub value: String,
    /// The accepted names, comma-separated.
    pub expected: String,
}

macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The short name afk's own formats use.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownName;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownName {
                        what: $what,
                        value: s.to_owned(),
                        expected: $name::ALL
                            .iter()
                            .map(|v| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            }
        }
    };
}

named_enum!(
    /// Who applied an issue's ready label, as far as the caller knows: three
    /// values, not a boolean, so that "not read" can never pass for
    /// "trusted". The poll tick reads it only for the issue that can win its
    /// repository's slot; every other issue is `NotRead`, and the dispatch
    /// policy skips it for that (or for an earlier rule it fails).
    LabelTrust, "label trust", {
        /// The latest application of the ready label was made by a trusted
        /// collaborator, and was read so.
        Trusted => "trusted",
        /// It was read, and it was not (or who applied it is unknown).
        Untrusted => "untrusted",
        /// Nobody read it.
        NotRead => "not_read",
    }
);

impl LabelTrust {
    /// What a read of the trust found: [`LabelTrust::Trusted`] or
    /// [`LabelTrust::Untrusted`], never [`LabelTrust::NotRead`].
    pub fn read(trusted: bool) -> Self {
        if trusted {
            LabelTrust::Trusted
        } else {
            LabelTrust::Untrusted
        }
    }
}

named_enum!(
    /// Liveness of the agent's thread, as the executor reports it. "No status
    /// yet" is `Option::None`, never one of these, and never triggers an action.
    ThreadStatus, "thread status", {
        /// A turn is being worked on.
        Running => "running",
        /// The turn finished.
        Idle => "idle",
        /// The turn failed.
        Error => "error",
        /// The agent waits on a question or an approval that nobody will
        /// answer while the owner is away.
        NeedsInput => "needs_input",
    }
);

named_enum!(
    /// The CI and deploy verdict of one pushed commit.
    CiStatus, "CI status", {
        /// No stage has reported anything for the commit yet. This is not
        /// "pending": some pushes never trigger CI at all.
        NoSignal => "no_signal",
        /// Some stage is queued or running.
        Pending => "pending",
        /// Every stage succeeded.
        Green => "green",
        /// A stage failed.
        Red => "red",
    }
);

named_enum!(
    /// The phases of a run, in order.
    Phase, "phase", {
        /// The agent's worktree exists.
        Worktree => "worktree",
        /// A failing test was written (TDD red).
        TestsRed => "tests_red",
        /// The implementation passes (TDD green).
        Green => "green",
        /// The change was pushed to the default branch.
        Pushed => "pushed",
        /// CI runs on the pushed commit.
        Ci => "ci",
        /// The change was deployed and rolled out.
        Deployed => "deployed",
        /// The issue is closed.
        Done => "done",
    }
);

/// What a run cost, as its agent runtime reported it, in millionths of a
/// US dollar (exact sums, no floating point in the record).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cost {
    /// Millionths of a US dollar.
    pub micro_usd: u64,
}

impl Cost {
    /// A cost in dollars, as a runtime reports it (claude's
    /// `total_cost_usd`); `None` for a negative, non-finite or absurd
    /// (above a million dollars) figure, which no run costs.
    pub fn from_usd(usd: f64) -> Option<Cost> {
        if !usd.is_finite() || !(0.0..=1_000_000.0).contains(&usd) {
            return None;
        }
        // In range, so the rounded product fits a u64 exactly.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let micro_usd = (usd * 1_000_000.0).round() as u64;
        Some(Cost { micro_usd })
    }

    /// The sum of two costs (saturating: a sum never wraps).
    #[must_use]
    pub fn plus(self, other: Cost) -> Cost {
        Cost {
            micro_usd: self.micro_usd.saturating_add(other.micro_usd),
        }
    }

    /// How a cost is shown: `$0.0016`, `$12.3400` (four decimals: agent
    /// turns often cost fractions of a cent).
    pub fn to_usd_text(self) -> String {
        let hundredths_of_cent = self.micro_usd.saturating_add(50) / 100;
        format!(
            "${}.{:04}",
            hundredths_of_cent / 10_000,
            hundredths_of_cent % 10_000
        )
    }

    /// How a run's cost reads in the progress comment and the doorbell:
    /// the figure, or `not reported` when the runtime reported none.
    pub fn describe(cost: Option<Cost>) -> String {
        cost.map_or_else(|| "not reported".to_owned(), Cost::to_usd_text)
    }
}

/// A point in time, UTC, read and written as RFC 3339.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

/// An RFC 3339 text that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not an RFC 3339 time (expected e.g. 2026-06-10T12:00:00Z)")]
pub struct TimestampError {
    /// The text that did not parse.
    pub value: String,
}

/// The key a bot is known by, however GitHub spells its login: REST writes
/// `renovate[bot]`, GraphQL writes `renovate` (with `__typename: Bot`); an
/// operator may configure either. Two spellings name the same bot iff their
/// keys are equal.
pub fn bot_login_key(login: &str) -> String {
    let login = login.trim();
    login
        .strip_suffix("[bot]")
        .unwrap_or(login)
        .to_ascii_lowercase()
}

/// A short age for tables: `45s`, `12m`, `3h05m`.
pub fn short_age(seconds: u64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

impl Timestamp {
    /// Reads an RFC 3339 time such as `2026-06-10T12:00:00Z`; any offset is
    /// converted to UTC.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        OffsetDateTime::parse(text.trim(), &Rfc3339)
            .map(|t| Timestamp(t.to_offset(time::UtcOffset::UTC)))
            .map_err(|_| TimestampError {
                value: text.to_owned(),
            })
    }

    /// The time `seconds` after the Unix epoch, or `None` when out of range.
    pub fn from_unix_seconds(seconds: i64) -> Option<Self> {
        OffsetDateTime::from_unix_timestamp(seconds)
            .ok()
            .map(Timestamp)
    }

    /// Wraps a time the caller already has (the binaries read the clock).
    pub fn from_offset_date_time(t: OffsetDateTime) -> Self {
        Timestamp(t.to_offset(time::UtcOffset::UTC))
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// Whole seconds from `earlier` to `self`; 0 when `earlier` is later
    /// (clocks disagree a little between machines).
    pub fn seconds_since(self, earlier: Timestamp) -> u64 {
        let delta = (self.0 - earlier.0).whole_seconds();
        u64::try_from(delta).unwrap_or(0)
    }

    /// The time `seconds` after this one (saturating at the far future).
    pub fn plus_seconds(self, seconds: u64) -> Timestamp {
        let seconds = i64::try_from(seconds).unwrap_or(i64::MAX);
        self.0
            .checked_add(time::Duration::seconds(seconds))
            .map(Timestamp)
            .unwrap_or(self)
    }

    /// RFC 3339 text, UTC, with a `Z` suffix.
    pub fn to_rfc3339(self) -> String {
        // Formatting a UTC time as RFC 3339 only fails for years outside
        // 0..=9999, which `parse_rfc3339` cannot produce; fall back to the
        // Unix seconds rather than panic.
        self.0
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.0.unix_timestamp().to_string())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_priority(labels: &[&str], expected: i64) {
        assert_eq!(priority_from_labels(labels), expected, "labels {labels:?}");
    }

    #[test]
    fn priority_is_the_lowest_numeric_label_or_zero() {
        check_priority(&[], 0);
        check_priority(&["bug"], 0);
        check_priority(&["priority:3"], 3);
        check_priority(&["priority:3", "priority:1"], 1);
        check_priority(&["priority:high"], 0);
        check_priority(&["priority:high", "priority:2"], 2);
        check_priority(&["Priority: 4"], 4);
        check_priority(&["priority:-1", "priority:5"], -1);
        check_priority(&["priority:"], 0);
        check_priority(&["prio:1"], 0);
    }

    fn check_blockers(body: &str, expected: &[u64]) {
        assert_eq!(blocked_by_refs(body), expected, "body {body:?}");
    }

    #[test]
    fn blocked_by_clauses_take_every_number_on_the_rest_of_the_line() {
        check_blockers("", &[]);
        check_blockers("Blocked by #12", &[12]);
        check_blockers("blocked BY #3, #4 and #3", &[3, 4]);
        check_blockers("Refs #9\nBlocked by #1\nsee #2", &[1]);
        check_blockers("#5 is not a blocker. Blocked by #6", &[6]);
        check_blockers("Blocked by nothing", &[]);
        check_blockers("Blocked by #0 #x #77x", &[77]);
        check_blockers("- Blocked by #2\n- Blocked by #1 and #2", &[2, 1]);
        check_blockers("Blocked by #99999999999999999999999", &[]);
    }

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for s in ThreadStatus::ALL {
            assert_eq!(s.as_str().parse::<ThreadStatus>(), Ok(*s));
        }
        for s in CiStatus::ALL {
            assert_eq!(s.as_str().parse::<CiStatus>(), Ok(*s));
        }
        for p in Phase::ALL {
            assert_eq!(p.as_str().parse::<Phase>(), Ok(*p));
        }
        for t in LabelTrust::ALL {
            assert_eq!(t.as_str().parse::<LabelTrust>(), Ok(*t));
        }
        let err = "errored".parse::<ThreadStatus>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown thread status \"errored\" (expected one of: running, idle, error, needs_input)"
        );
    }

    #[test]
    fn costs_read_exactly_and_show_four_decimals() {
        assert_eq!(Cost::from_usd(0.0016), Some(Cost { micro_usd: 1600 }));
        assert_eq!(Cost::from_usd(0.0), Some(Cost { micro_usd: 0 }));
        for bad in [-0.01, f64::NAN, f64::INFINITY, 2e6] {
            assert_eq!(Cost::from_usd(bad), None, "{bad}");
        }
        assert_eq!(Cost { micro_usd: 1600 }.to_usd_text(), "$0.0016");
        assert_eq!(
            Cost {
                micro_usd: 12_340_000
            }
            .to_usd_text(),
            "$12.3400"
        );
        assert_eq!(Cost { micro_usd: 49 }.to_usd_text(), "$0.0000");
        assert_eq!(Cost { micro_usd: 50 }.to_usd_text(), "$0.0001");
        assert_eq!(Cost::describe(None), "not reported");
        let max = Cost {
            micro_usd: u64::MAX,
        };
        assert_eq!(max.plus(Cost { micro_usd: 1 }), max);
        assert!(max.to_usd_text().starts_with('$'));
    }

    fn check_fnv1a(input: &[u8], expected: u64) {
        let mut h = StableHasher::default();
        std::hash::Hasher::write(&mut h, input);
        assert_eq!(std::hash::Hasher::finish(&h), expected, "{input:?}");
    }

    #[test]
    fn fnv1a_gives_the_published_test_vectors() {
        // From the FNV reference (Fowler, Noll, Vo), 64-bit FNV-1a.
        check_fnv1a(b"", 0xcbf2_9ce4_8422_2325);
        check_fnv1a(b"a", 0xaf63_dc4c_8601_ec8c);
        check_fnv1a(b"foobar", 0x8594_4171_f739_67e8);
    }

    #[test]
    fn timestamps_read_rfc3339_and_count_seconds() {
        let a = Timestamp::parse_rfc3339("2026-06-10T12:00:00Z").unwrap();
        let b = Timestamp::parse_rfc3339("2026-06-10T14:00:30+02:00").unwrap();
        assert_eq!(b.seconds_since(a), 30);
        assert_eq!(a.seconds_since(b), 0);
        assert_eq!(b.to_rfc3339(), "2026-06-10T12:00:30Z");
        assert_eq!(a.plus_seconds(90).to_rfc3339(), "2026-06-10T12:01:30Z");
        assert!(Timestamp::parse_rfc3339("yesterday").is_err());
        assert!(Timestamp::parse_rfc3339("2026-06-10 12:00:00").is_err());
    }
}
