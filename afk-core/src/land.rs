//! How a run's change lands: pushed straight to the default branch (`push`,
//! the seed's way) or through a pull request (`pull-request`, for
//! repositories whose default branch is protected).
//!
//! This module holds the values and the pure rules of landing: the modes and
//! merge methods (the settings `AFK_LAND`, `AFK_LAND_REPOS` and
//! `AFK_MERGE_METHOD` are read by `crate::config`), the run's branch name ([`run_branch`]), and the
//! facts about a pull request the state machine (`crate::machine`) decides
//! on ([`PullFacts`]). Effects (creating, merging) are the watch tick's.
//!
//! This file is long because each rule that reads what GitHub says of a
//! pull request (its state, mergeability, reviews, the commit to judge) is
//! table-tested here beside it.

use std::fmt;

/// How a repository's changes land.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LandMode {
    /// The agent pushes to the default branch (the default).
    #[default]
    Push,
    /// The agent pushes to the run's branch; afk opens a pull request and
    /// merges it, or hands it over for review.
    PullRequest,
}

impl LandMode {
    /// Its setting value.
    pub fn as_str(self) -> &'static str {
        match self {
            LandMode::Push => "push",
            LandMode::PullRequest => "pull-request",
        }
    }

    /// Reads a setting value (`push`, `pull-request`).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "push" => Some(LandMode::Push),
            "pull-request" => Some(LandMode::PullRequest),
            _ => None,
        }
    }
}

impl fmt::Display for LandMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// How afk merges a pull request (`AFK_MERGE_METHOD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeMethod {
    /// One commit on the default branch (the default).
    #[default]
    Squash,
    /// A merge commit.
    Merge,
    /// The branch's commits replayed on the default branch.
    Rebase,
}

impl MergeMethod {
    /// Its setting value, which is also GitHub's `merge_method`.
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::Squash => "squash",
            MergeMethod::Merge => "merge",
            MergeMethod::Rebase => "rebase",
        }
    }

    /// Reads a setting value.
    pub fn parse(text: &str) -> Option<Self> {
        [MergeMethod::Squash, MergeMethod::Merge, MergeMethod::Rebase]
            .into_iter()
            .find(|m| m.as_str() == text.trim())
    }
}

/// The most characters of the issue's title the branch name keeps.
const SLUG_MAX: usize = 40;

/// The run's branch: `afk/<issue>-<slug>`, the slug from the issue's title
/// in lower-case ASCII letters and digits joined by single dashes (at most
/// 40 characters, never ending in a dash): always a valid git ref name and
/// the same for the same issue and title. A title with nothing to keep
/// gives `afk/<issue>`.
pub fn run_branch(issue: u64, title: &str) -> String {
    let mut slug = String::new();
    let mut dash = false;
    for c in title.chars() {
        if c.is_ascii_alphanumeric() {
            let sep = dash && !slug.is_empty();
            if slug.len() + usize::from(sep) + 1 > SLUG_MAX {
                break;
            }
            if sep {
                slug.push('-');
            }
            dash = false;
            slug.push(c.to_ascii_lowercase());
        } else {
            dash = true;
        }
    }
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        format!("afk/{issue}")
    } else {
        format!("afk/{issue}-{slug}")
    }
}

/// Whether `branch` is one [`run_branch`] could have made for `issue`: the
/// only branches afk adopts a pull request from.
pub fn is_run_branch(branch: &str, issue: u64) -> bool {
    let Some(rest) = branch.strip_prefix(&format!("afk/{issue}")) else {
        return false;
    };
    rest.is_empty()
        || rest.strip_prefix('-').is_some_and(|slug| {
            !slug.is_empty()
                && slug.len() <= SLUG_MAX
                && !slug.ends_with('-')
                && !slug.contains("--")
                && slug
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// Whether `branch` is a run branch for some issue (`afk/<n>` or
/// `afk/<n>-<slug>`), as a record read back must hold.
pub fn is_run_branch_name(branch: &str) -> bool {
    let Some(rest) = branch.strip_prefix("afk/") else {
        return false;
    };
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    digits > 0
        && digits <= 20
        && rest[..digits]
            .parse::<u64>()
            .is_ok_and(|n| is_run_branch(branch, n))
}

/// Where a pull request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullState {
    /// Open (a draft counts as open).
    Open,
    /// Merged, by afk or by a human.
    Merged,
    /// Closed without being merged.
    ClosedUnmerged,
}

impl PullState {
    /// Its name in the run record and the progress comment.
    pub fn as_str(self) -> &'static str {
        match self {
            PullState::Open => "open",
            PullState::Merged => "merged",
            PullState::ClosedUnmerged => "closed",
        }
    }

    /// Reads [`Self::as_str`] back.
    pub fn parse(text: &str) -> Option<Self> {
        [
            PullState::Open,
            PullState::Merged,
            PullState::ClosedUnmerged,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    /// What the tracker's words mean: GitHub's `state` (`open`, `closed`)
    /// and whether it was merged (a merged pull request is `closed`).
    pub fn from_tracker(state: &str, merged: bool) -> Self {
        match (state, merged) {
            (_, true) => PullState::Merged,
            ("open", false) => PullState::Open,
            _ => PullState::ClosedUnmerged,
        }
    }
}

/// Whether the pull request can be merged now, as the tracker computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mergeable {
    /// Nothing stands in the way (GitHub's `clean`, `unstable`, `has_hooks`).
    Clean,
    /// The branch conflicts with the default branch (`dirty`).
    Conflicting,
    /// The branch is behind the default branch and the rules require it
    /// up to date (`behind`).
    Behind,
    /// The repository's rules block it: a review or a check afk does not
    /// see (`blocked`).
    Blocked,
    /// Not computed yet (`unknown`, or `mergeable: null`): ask again.
    Unknown,
}

/// What the reviews add up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewState {
    /// No review decision needed, or none yet where none is required.
    None,
    /// A required review approved it.
    Approved,
    /// A trusted reviewer (write or admin) requested changes, and the
    /// request has not been answered by a corrective turn yet.
    ChangesRequested,
    /// The rules need a human's review, not given yet.
    Required,
}

/// The pull request of a run in `pull-request` mode, as the state machine
/// sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullFacts {
    /// Whether the run's pull request exists (opened by afk or adopted).
    pub opened: bool,
    /// Where it stands (`Open` until opened).
    pub state: PullState,
    /// Whether it can be merged now.
    pub mergeable: Mergeable,
    /// What its reviews add up to.
    pub review: ReviewState,
    /// Whether it was already handed over for a human's review.
    pub handed_over: bool,
    /// It now merges into another branch than the default one (a human
    /// retargeted it): never merged there.
    pub retargeted: bool,
    /// The run's branch has an open pull request someone other than afk
    /// opened: never adopted (its author controls its title, body and
    /// state).
    pub foreign: bool,
    /// The repository's rules refused a merge afk asked for although
    /// GitHub called it mergeable (a rule its mergeability does not
    /// show): a human's review decides.
    pub merge_refused: bool,
}

impl PullFacts {
    /// A run whose branch has no pull request yet.
    pub const NONE: PullFacts = PullFacts {
        opened: false,
        state: PullState::Open,
        mergeable: Mergeable::Unknown,
        review: ReviewState::None,
        handed_over: false,
        retargeted: false,
        foreign: false,
        merge_refused: false,
    };
}

/// The commit a landing run is judged by, and the branch it is on: the
/// merge commit on the default branch once `pull` merged, its head while
/// it is open, else the newest commit the agent pushed to the run's branch
/// (`pushed`). `None`: nothing to judge yet (merged without a merge commit
/// reported, or nothing pushed).
pub fn commit_to_judge<'a>(
    pull: Option<&'a PullRequest>,
    pushed: Option<&'a str>,
    run_branch: &'a str,
    default_branch: &'a str,
) -> Option<(&'a str, &'a str)> {
    match pull {
        Some(p) if p.state == PullState::Merged => {
            p.merge_commit.as_deref().map(|sha| (sha, default_branch))
        }
        Some(p) if p.state == PullState::Open => Some((p.head_sha.as_str(), run_branch)),
        _ => pushed.map(|sha| (sha, run_branch)),
    }
}

/// A pull request, as the tracker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    /// Its number (shared with issues).
    pub number: u64,
    /// The branch it merges from (`head.ref`).
    pub head_branch: String,
    /// That branch's newest commit (`head.sha`).
    pub head_sha: String,
    /// The branch it merges into (`base.ref`).
    pub base_branch: String,
    /// Open, merged, or closed without merging.
    pub state: PullState,
    /// The commit it landed as, once merged.
    pub merge_commit: Option<String>,
    /// Whether it can be merged now (`Unknown` where the answer does not
    /// say, as a listing does not).
    pub mergeable: Mergeable,
    /// A draft (GitHub merges no draft).
    pub draft: bool,
    /// A link a human can open.
    pub link: Option<String>,
    /// Who opened it (`None`: a deleted account).
    pub author: Option<String>,
    /// afk's own identity opened it (`crate::trust::is_own`).
    pub by_afk: bool,
}

/// What a pull request review says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReviewVerdict {
    /// `APPROVED`.
    Approved,
    /// `CHANGES_REQUESTED`.
    ChangesRequested,
    /// Anything else (`COMMENTED`, `DISMISSED`, `PENDING`).
    Other,
}

impl ReviewVerdict {
    /// What a review's `state` says (GitHub's `APPROVED`,
    /// `CHANGES_REQUESTED`; anything else, `COMMENTED`, `DISMISSED`,
    /// `PENDING` or a word added later, decides nothing).
    pub fn from_tracker(state: &str) -> Self {
        match state {
            "APPROVED" => ReviewVerdict::Approved,
            "CHANGES_REQUESTED" => ReviewVerdict::ChangesRequested,
            _ => ReviewVerdict::Other,
        }
    }
}

/// One review of a pull request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Review {
    /// Its id (increasing in time).
    pub id: u64,
    /// Who wrote it (`None`: a deleted account).
    pub author: Option<String>,
    /// What it says.
    pub verdict: ReviewVerdict,
    /// Its text.
    pub body: String,
    /// Whether its author may push to the repository (write or admin, or
    /// a trusted bot), the same rule that arms an issue: only a trusted
    /// review becomes a corrective turn.
    pub trusted: bool,
}

/// A pull request to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPull {
    /// The branch to merge from.
    pub head: String,
    /// The branch to merge into.
    pub base: String,
    /// Its title.
    pub title: String,
    /// Its body.
    pub body: String,
}

/// What a merge request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// Merged, as this commit.
    Merged {
        /// The commit on the base branch.
        sha: String,
    },
    /// The repository's rules refuse it now (GitHub's 405: a required
    /// review or check, a draft), with what the tracker said.
    Refused {
        /// The tracker's words.
        message: String,
    },
    /// The branch moved since it was judged (GitHub's 409): judge again.
    HeadMoved,
}

/// What the reviews add up to (`reviews` oldest first; `answered`: the
/// newest review requesting changes that a corrective turn already
/// answered), with the reviews to answer (every trusted reviewer's open
/// request, oldest first) when it is [`ReviewState::ChangesRequested`].
/// Only trusted reviews count, and each reviewer's latest verdict (an
/// approval after a request for changes withdraws it; a comment changes
/// nothing). A request already answered is [`ReviewState::Required`]: the
/// reviewer looks again before anything merges.
pub fn review_state(reviews: &[Review], answered: Option<u64>) -> (ReviewState, Vec<&Review>) {
    use ReviewVerdict as V;
    let mut latest: Vec<&Review> = Vec::new();
    for r in reviews
        .iter()
        .filter(|r| r.trusted && r.verdict != V::Other)
    {
        latest.retain(|l| l.author != r.author);
        latest.push(r);
    }
    let mut open: Vec<&Review> = latest
        .iter()
        .copied()
        .filter(|r| r.verdict == V::ChangesRequested && answered.is_none_or(|a| r.id > a))
        .collect();
    open.sort_by_key(|r| r.id);
    if !open.is_empty() {
        return (ReviewState::ChangesRequested, open);
    }
    // Answered, but its reviewer has not looked again: theirs to approve,
    // never merged over their request.
    if latest.iter().any(|r| r.verdict == V::ChangesRequested) {
        return (ReviewState::Required, Vec::new());
    }
    if latest.iter().any(|r| r.verdict == V::Approved) {
        (ReviewState::Approved, Vec::new())
    } else {
        (ReviewState::None, Vec::new())
    }
}

/// Maps GitHub's `mergeable_state` (and `mergeable`) to [`Mergeable`]:
/// the tracker's words are facts, this is the rule that reads them.
pub fn mergeable_from(state: Option<&str>, mergeable: Option<bool>) -> Mergeable {
    match (state, mergeable) {
        (Some("dirty"), _) | (_, Some(false)) => Mergeable::Conflicting,
        (Some("behind"), _) => Mergeable::Behind,
        // A draft merges only once a human marks it ready: theirs to do.
        (Some("blocked" | "draft"), _) => Mergeable::Blocked,
        (Some("clean" | "unstable" | "has_hooks"), _) => Mergeable::Clean,
        // `unknown`, null, or a word GitHub adds later: not yet.
        _ => Mergeable::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_commit_judged_follows_the_pull_request() {
        let pull = |state, merge_commit: Option<&str>| PullRequest {
            number: 12,
            head_branch: "afk/7-x".into(),
            head_sha: "head1".into(),
            base_branch: "main".into(),
            state,
            merge_commit: merge_commit.map(str::to_owned),
            mergeable: Mergeable::Clean,
            draft: false,
            link: None,
            author: Some("afk-bot".into()),
            by_afk: true,
        };
        fn judge<'a>(
            p: Option<&'a PullRequest>,
            pushed: Option<&'a str>,
        ) -> Option<(&'a str, &'a str)> {
            commit_to_judge(p, pushed, "afk/7-x", "main")
        }
        assert_eq!(judge(None, None), None);
        assert_eq!(judge(None, Some("push1")), Some(("push1", "afk/7-x")));
        let open = pull(PullState::Open, None);
        assert_eq!(
            judge(Some(&open), Some("push1")),
            Some(("head1", "afk/7-x"))
        );
        let merged = pull(PullState::Merged, Some("merge1"));
        assert_eq!(
            judge(Some(&merged), Some("push1")),
            Some(("merge1", "main"))
        );
        // Merged, its merge commit not reported yet: nothing is judged
        // (never the branch's head in its place).
        let unreported = pull(PullState::Merged, None);
        assert_eq!(judge(Some(&unreported), Some("push1")), None);
        let closed = pull(PullState::ClosedUnmerged, None);
        assert_eq!(
            judge(Some(&closed), Some("push1")),
            Some(("push1", "afk/7-x"))
        );
    }

    #[test]
    fn modes_and_methods_read_their_setting_values_only() {
        assert_eq!(LandMode::parse("pull-request"), Some(LandMode::PullRequest));
        assert_eq!(LandMode::parse(" push "), Some(LandMode::Push));
        for bad in ["pr", "Push", "pull_request", ""] {
            assert_eq!(LandMode::parse(bad), None, "{bad}");
        }
        assert_eq!(MergeMethod::parse("rebase"), Some(MergeMethod::Rebase));
        assert_eq!(MergeMethod::parse("fast-forward"), None);
        assert_eq!(MergeMethod::default().as_str(), "squash");
    }

    #[test]
    fn the_run_branch_is_a_safe_ref_and_recognised_again() {
        assert_eq!(
            run_branch(7, "Fix the flaky `login` test!"),
            "afk/7-fix-the-flaky-login-test"
        );
        assert_eq!(run_branch(8, "日本語のみ"), "afk/8");
        assert_eq!(run_branch(9, "--x..y.lock"), "afk/9-x-y-lock");
        let long = run_branch(10, &"word ".repeat(40));
        assert!(long.len() <= "afk/10-".len() + SLUG_MAX, "{long}");
        assert!(!long.ends_with('-'));
        for (n, title) in [
            (7, "Fix the flaky `login` test!"),
            (8, "日本語のみ"),
            (10, &*"word ".repeat(40)),
        ] {
            assert!(is_run_branch(&run_branch(n, title), n));
        }
        assert!(is_run_branch_name("afk/70-x") && is_run_branch_name("afk/7"));
        for other in [
            "afk/",
            "afk/x-7",
            "afk/7-a b",
            "afk/7-$(rm)",
            "main",
            "afk/07x",
        ] {
            assert!(!is_run_branch_name(other), "{other}");
        }
        for other in [
            "main",
            "afk/70-x",
            "afk/7-Upper",
            "afk/7-",
            "afk/7-a--b",
            "feature/afk/7-x",
        ] {
            assert!(!is_run_branch(other, 7), "{other}");
        }
    }

    #[test]
    fn only_a_trusted_reviewers_latest_request_is_answered_once() {
        use ReviewVerdict as V;
        let r = |id, who: &str, verdict, trusted| Review {
            id,
            author: Some(who.into()),
            verdict,
            body: format!("review {id}"),
            trusted,
        };
        // A stranger's request for changes is never a task.
        let reviews = [r(1, "mallory", V::ChangesRequested, false)];
        assert_eq!(review_state(&reviews, None).0, ReviewState::None);
        // A trusted one is, until a corrective turn answered it.
        let reviews = [
            r(1, "alice", V::ChangesRequested, true),
            r(2, "bob", V::Other, true),
        ];
        let (state, open) = review_state(&reviews, None);
        let ids: Vec<u64> = open.iter().map(|r| r.id).collect();
        assert_eq!((state, ids), (ReviewState::ChangesRequested, vec![1]));
        assert_eq!(review_state(&reviews, Some(1)).0, ReviewState::Required);
        // Approving afterwards withdraws it; a new request asks again.
        let reviews = [
            r(1, "alice", V::ChangesRequested, true),
            r(3, "alice", V::Approved, true),
        ];
        assert_eq!(review_state(&reviews, None).0, ReviewState::Approved);
        let reviews = [
            r(1, "alice", V::ChangesRequested, true),
            r(4, "carol", V::Approved, true),
            r(5, "alice", V::ChangesRequested, true),
        ];
        let (state, open) = review_state(&reviews, Some(1));
        let ids: Vec<u64> = open.iter().map(|r| r.id).collect();
        assert_eq!((state, ids), (ReviewState::ChangesRequested, vec![5]));
        // Two reviewers at once: both requests reach the agent, in one turn.
        let reviews = [
            r(5, "alice", V::ChangesRequested, true),
            r(6, "bob", V::ChangesRequested, true),
        ];
        let (_, open) = review_state(&reviews, None);
        let ids: Vec<u64> = open.iter().map(|r| r.id).collect();
        assert_eq!(ids, vec![5, 6]);
    }

    #[test]
    fn the_trackers_words_for_state_and_verdict() {
        assert_eq!(PullState::from_tracker("closed", true), PullState::Merged);
        assert_eq!(PullState::from_tracker("open", false), PullState::Open);
        assert_eq!(
            PullState::from_tracker("closed", false),
            PullState::ClosedUnmerged
        );
        assert_eq!(
            PullState::from_tracker("locked?", false),
            PullState::ClosedUnmerged
        );
        assert_eq!(
            ReviewVerdict::from_tracker("APPROVED"),
            ReviewVerdict::Approved
        );
        assert_eq!(
            ReviewVerdict::from_tracker("CHANGES_REQUESTED"),
            ReviewVerdict::ChangesRequested
        );
        for other in ["COMMENTED", "DISMISSED", "PENDING", "approved", ""] {
            assert_eq!(
                ReviewVerdict::from_tracker(other),
                ReviewVerdict::Other,
                "{other}"
            );
        }
        for s in [
            PullState::Open,
            PullState::Merged,
            PullState::ClosedUnmerged,
        ] {
            assert_eq!(PullState::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn mergeability_reads_githubs_words() {
        assert_eq!(mergeable_from(Some("clean"), Some(true)), Mergeable::Clean);
        assert_eq!(
            mergeable_from(Some("unstable"), Some(true)),
            Mergeable::Clean
        );
        assert_eq!(mergeable_from(Some("dirty"), None), Mergeable::Conflicting);
        assert_eq!(
            mergeable_from(Some("unknown"), Some(false)),
            Mergeable::Conflicting
        );
        assert_eq!(
            mergeable_from(Some("behind"), Some(true)),
            Mergeable::Behind
        );
        assert_eq!(
            mergeable_from(Some("blocked"), Some(true)),
            Mergeable::Blocked
        );
        assert_eq!(mergeable_from(None, None), Mergeable::Unknown);
        assert_eq!(
            mergeable_from(Some("draft"), Some(true)),
            Mergeable::Blocked
        );
        assert_eq!(
            mergeable_from(Some("new-word"), Some(true)),
            Mergeable::Unknown
        );
    }
}
