//! Trust: who may arm an issue, and whose comments are the task.
//!
//! The rules are written here once, over facts the tracker (or a fake of it)
//! only gathers:
//!
//! - **The ready label.** The most recent application of the label decides
//!   (the last `labeled` event with the latest time, in timeline order). It is
//!   trusted iff its actor is known, neither the body nor the title changed
//!   at or after it (timestamps have second precision: the same second counts
//!   as after, since in doubt afk does not run), and the actor is a trusted
//!   bot (on `AFK_TRUSTED_BOTS`, either spelling) or a collaborator whose
//!   permission is `admin` or `write` (GitHub folds `maintain` into `write`
//!   and `triage` into `read` in that field).
//! - **A bot** is an actor whose type is `Bot`, or whose login ends in
//!   `[bot]` (REST's spelling; GraphQL drops the suffix). A bot is trusted
//!   only by name, never by a permission lookup.
//! - **A comment** speaks for the task iff its author is a trusted bot or a
//!   collaborator with `admin` or `write` permission; afk's own progress
//!   comment is the loop's record, never the task.
//!
//! The rule asks for the permission lookup only when it needs it
//! ([`LabelVerdict::NeedsPermission`]), so the tracker spends that request
//! only for an actor who could be trusted.
//!
//! It does not read anything itself, and it knows no wire format.

use crate::ports::Trust;
use crate::types::{Timestamp, bot_login_key};

/// Who did something on the tracker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The login, in whichever spelling the tracker gave (`name[bot]` or
    /// `name` for a bot).
    pub login: String,
    /// Whether the tracker typed the account as a bot.
    pub typed_bot: bool,
}

impl Actor {
    /// A person's account.
    pub fn user(login: &str) -> Self {
        Actor {
            login: login.to_owned(),
            typed_bot: false,
        }
    }

    /// A bot's account.
    pub fn bot(login: &str) -> Self {
        Actor {
            login: login.to_owned(),
            typed_bot: true,
        }
    }

    /// Whether the account is a bot: typed so, or spelled so.
    pub fn is_bot(&self) -> bool {
        self.typed_bot || self.login.trim().ends_with("[bot]")
    }
}

/// One application of a label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelEvent {
    /// The label's name.
    pub label: String,
    /// When it was applied.
    pub at: Timestamp,
    /// Who applied it; `None` for a deleted account.
    pub actor: Option<Actor>,
}

/// A change of the title.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rename {
    /// When.
    pub at: Timestamp,
    /// By whom, when known.
    pub by: Option<String>,
}

/// What the tracker knows about an issue's labels and edits, in timeline
/// order (oldest first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelFacts {
    /// Every `labeled` event read (any label).
    pub labeled: Vec<LabelEvent>,
    /// When the body was last edited, if ever.
    pub body_edited_at: Option<Timestamp>,
    /// Every title change read.
    pub renames: Vec<Rename>,
}

impl LabelFacts {
    /// The most recent application of `label` (case-insensitive, as
    /// GitHub): the latest time, and of several at that time the last in
    /// timeline order.
    pub fn latest(&self, label: &str) -> Option<&LabelEvent> {
        let mut latest: Option<&LabelEvent> = None;
        for event in self
            .labeled
            .iter()
            .filter(|e| e.label.eq_ignore_ascii_case(label))
        {
            if latest.is_none_or(|best| event.at >= best.at) {
                latest = Some(event);
            }
        }
        latest
    }
}

/// A collaborator's standing on a repository, as the tracker reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// The base permission GitHub reports (`admin`, `write`, `read`,
    /// `none`): `maintain` already folded into `write`, `triage` into
    /// `read`.
    Level(String),
    /// Not a collaborator at all.
    NotCollaborator,
    /// The tracker refused to say (the token may not read permissions), with
    /// why.
    Refused(String),
}

impl Permission {
    /// Whether this permission may arm an issue or speak for its task.
    pub fn may_approve(&self) -> bool {
        matches!(self, Permission::Level(p) if p.eq_ignore_ascii_case("admin") || p.eq_ignore_ascii_case("write"))
    }

    fn describe(&self) -> String {
        match self {
            Permission::Level(p) => format!("has {p} permission"),
            Permission::NotCollaborator => "is not a collaborator".to_owned(),
            Permission::Refused(why) => format!("permission lookup refused: {why}"),
        }
    }
}

/// Whether `login` is on the trusted-bot list, comparing either spelling on
/// either side (`name[bot]` and `name`).
pub fn is_trusted_bot(login: &str, trusted_bots: &[String]) -> bool {
    let key = bot_login_key(login);
    !key.is_empty() && trusted_bots.iter().any(|b| bot_login_key(b) == key)
}

/// Whether `author` is afk's own identity `own` (as `GET /user`,
/// `AFK_GITHUB_LOGIN` or an App's slug spell it).
pub fn is_own(author: &Actor, own: &str) -> bool {
    if author.is_bot() {
        bot_login_key(&author.login) == bot_login_key(own)
    } else {
        author.login.trim().eq_ignore_ascii_case(own.trim())
    }
}

/// The ready label's verdict, or the one fact it still needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelVerdict {
    /// Decided without a permission lookup.
    Decided(Trust),
    /// The actor is a person: trusted iff their permission allows it (ask
    /// [`label_trust_by_permission`]).
    NeedsPermission {
        /// Whose permission.
        login: String,
    },
}

/// The ready label's trust, as far as the label facts decide it.
pub fn label_trust(facts: &LabelFacts, label: &str, trusted_bots: &[String]) -> LabelVerdict {
    let Some(event) = facts.latest(label) else {
        return LabelVerdict::Decided(Trust {
            trusted: false,
            actor: None,
            reason: format!("no attributable `labeled` event for {label}"),
        });
    };
    let Some(actor) = &event.actor else {
        return LabelVerdict::Decided(Trust {
            trusted: false,
            actor: None,
            reason: "the label's actor is unknown (deleted account?)".to_owned(),
        });
    };
    let who = actor.login.as_str();
    let untrusted = |reason: String| {
        LabelVerdict::Decided(Trust {
            trusted: false,
            actor: Some(who.to_owned()),
            reason,
        })
    };
    let labeled_at = event.at;
    if let Some(edited) = facts.body_edited_at
        && edited >= labeled_at
    {
        return untrusted(format!(
            "the body was edited at {edited}, at or after {who} applied {label} at {labeled_at}; re-apply the label to approve it"
        ));
    }
    if let Some(rename) = facts
        .renames
        .iter()
        .filter(|r| r.at >= labeled_at)
        .max_by_key(|r| r.at)
    {
        return untrusted(format!(
            "the title was changed at {} by {}, at or after {who} applied {label} at {labeled_at}; re-apply the label to approve it",
            rename.at,
            rename.by.as_deref().unwrap_or("an unknown account")
        ));
    }
    if actor.is_bot() {
        return if is_trusted_bot(who, trusted_bots) {
            LabelVerdict::Decided(Trust {
                trusted: true,
                actor: Some(who.to_owned()),
                reason: format!("{who} is a trusted bot"),
            })
        } else {
            untrusted(format!("{who} is a bot not on AFK_TRUSTED_BOTS"))
        };
    }
    LabelVerdict::NeedsPermission {
        login: who.to_owned(),
    }
}

/// The ready label's trust once the actor's permission is known.
pub fn label_trust_by_permission(login: &str, permission: &Permission) -> Trust {
    let trusted = permission.may_approve();
    Trust {
        trusted,
        actor: Some(login.to_owned()),
        reason: if trusted || matches!(permission, Permission::Level(_)) {
            let p = permission.describe();
            if trusted {
                format!("{login} {p}")
            } else {
                format!("{login} {p} (admin or write needed)")
            }
        } else {
            format!("{login} {}", permission.describe())
        },
    }
}

/// Whose comment speaks for the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommentVerdict {
    /// Quoted to the agent as approved task text.
    Approved,
    /// Left out.
    Ignored,
    /// Decided by the author's permission (ask [`Permission::may_approve`]).
    NeedsPermission {
        /// Whose permission.
        login: String,
    },
}

/// Whether a comment by `author` is approved task text. `is_progress` says
/// whether the comment carries afk's run-record marker: afk's own such
/// comment is the loop's record, not the task.
pub fn comment_trust(
    author: Option<&Actor>,
    own: &str,
    is_progress: bool,
    trusted_bots: &[String],
) -> CommentVerdict {
    let Some(author) = author else {
        return CommentVerdict::Ignored;
    };
    if is_progress && is_own(author, own) {
        return CommentVerdict::Ignored;
    }
    if author.is_bot() {
        return if is_trusted_bot(&author.login, trusted_bots) {
            CommentVerdict::Approved
        } else {
            CommentVerdict::Ignored
        };
    }
    CommentVerdict::NeedsPermission {
        login: author.login.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_unix_seconds(1_780_000_000 + seconds).unwrap()
    }

    fn labeled(label: &str, seconds: i64, actor: Option<Actor>) -> LabelEvent {
        LabelEvent {
            label: label.into(),
            at: at(seconds),
            actor,
        }
    }

    fn bots() -> Vec<String> {
        vec!["renovate[bot]".into(), "afk-helper".into()]
    }

    /// The verdict as one line: `trusted`, `untrusted: <reason start>`, or
    /// `ask <login>`.
    fn verdict(facts: &LabelFacts) -> String {
        match label_trust(facts, "ready-for-agent", &bots()) {
            LabelVerdict::Decided(t) if t.trusted => "trusted".to_owned(),
            LabelVerdict::Decided(t) => format!("untrusted: {}", t.reason),
            LabelVerdict::NeedsPermission { login } => format!("ask {login}"),
        }
    }

    #[track_caller]
    fn check(facts: LabelFacts, expected: &str) {
        let got = verdict(&facts);
        assert!(
            got.starts_with(expected),
            "{got:?} does not start with {expected:?}"
        );
    }

    #[test]
    fn the_ready_label_rule() {
        let alice = Some(Actor::user("alice"));
        // No event, an unknown actor.
        check(LabelFacts::default(), "untrusted: no attributable");
        check(
            LabelFacts {
                labeled: vec![labeled("ready-for-agent", 0, None)],
                ..LabelFacts::default()
            },
            "untrusted: the label's actor is unknown",
        );
        // Another label does not count; the name compares case-insensitively.
        check(
            LabelFacts {
                labeled: vec![labeled("bug", 0, alice.clone())],
                ..LabelFacts::default()
            },
            "untrusted: no attributable",
        );
        check(
            LabelFacts {
                labeled: vec![labeled("Ready-For-Agent", 0, alice.clone())],
                ..LabelFacts::default()
            },
            "ask alice",
        );
        // The latest application decides: mallory re-applied it after alice.
        check(
            LabelFacts {
                labeled: vec![
                    labeled("ready-for-agent", 0, alice.clone()),
                    labeled("ready-for-agent", 5, Some(Actor::user("mallory"))),
                ],
                ..LabelFacts::default()
            },
            "ask mallory",
        );
        // Two in the same second: the later in timeline order (the two old
        // versions disagreed: the adapter kept the first, the fake the last).
        check(
            LabelFacts {
                labeled: vec![
                    labeled("ready-for-agent", 5, alice.clone()),
                    labeled("ready-for-agent", 5, Some(Actor::user("mallory"))),
                ],
                ..LabelFacts::default()
            },
            "ask mallory",
        );
        // Edits at or after the label, never before.
        for (edit, expected) in [
            (-1, "ask alice"),
            (0, "untrusted: the body"),
            (9, "untrusted: the body"),
        ] {
            check(
                LabelFacts {
                    labeled: vec![labeled("ready-for-agent", 0, alice.clone())],
                    body_edited_at: Some(at(edit)),
                    ..LabelFacts::default()
                },
                expected,
            );
        }
        for (rename, expected) in [
            (-1, "ask alice"),
            (0, "untrusted: the title"),
            (9, "untrusted: the title"),
        ] {
            check(
                LabelFacts {
                    labeled: vec![labeled("ready-for-agent", 0, alice.clone())],
                    renames: vec![Rename {
                        at: at(rename),
                        by: Some("mallory".into()),
                    }],
                    ..LabelFacts::default()
                },
                expected,
            );
        }
        // Bots: by name only, typed or spelled, in either spelling on either
        // side (the old fake missed a `[bot]` login not typed as a bot).
        for (actor, expected) in [
            (Actor::bot("renovate"), "trusted"),
            (Actor::bot("renovate[bot]"), "trusted"),
            (Actor::user("renovate[bot]"), "trusted"),
            (Actor::bot("afk-helper[bot]"), "trusted"),
            (Actor::bot("dependabot"), "untrusted: dependabot is a bot"),
            (
                Actor::user("dependabot[bot]"),
                "untrusted: dependabot[bot] is a bot",
            ),
        ] {
            check(
                LabelFacts {
                    labeled: vec![labeled("ready-for-agent", 0, Some(actor))],
                    ..LabelFacts::default()
                },
                expected,
            );
        }
    }

    #[test]
    fn permissions_that_may_approve() {
        for (permission, trusted) in [
            (Permission::Level("admin".into()), true),
            (Permission::Level("write".into()), true),
            (Permission::Level("WRITE".into()), true),
            // GitHub folds maintain into write and triage into read in the
            // `permission` field; a raw role name never approves by itself.
            (Permission::Level("maintain".into()), false),
            (Permission::Level("triage".into()), false),
            (Permission::Level("read".into()), false),
            (Permission::Level("none".into()), false),
            (Permission::NotCollaborator, false),
            (Permission::Refused("403".into()), false),
        ] {
            let t = label_trust_by_permission("alice", &permission);
            assert_eq!(t.trusted, trusted, "{permission:?}");
            assert_eq!(t.actor.as_deref(), Some("alice"));
            assert!(t.reason.starts_with("alice "), "{}", t.reason);
        }
    }

    #[test]
    fn whose_comments_are_the_task() {
        let own = "afk-bot[bot]";
        let check = |author: Option<Actor>, progress: bool, expected: CommentVerdict| {
            assert_eq!(
                comment_trust(author.as_ref(), own, progress, &bots()),
                expected,
                "{author:?} progress={progress}"
            );
        };
        let ask = |login: &str| CommentVerdict::NeedsPermission {
            login: login.into(),
        };
        check(None, false, CommentVerdict::Ignored);
        check(Some(Actor::bot("afk-bot")), true, CommentVerdict::Ignored);
        check(
            Some(Actor::user("afk-bot[bot]")),
            true,
            CommentVerdict::Ignored,
        );
        // afk's own comment without a marker is a bot's comment like any.
        check(Some(Actor::bot("afk-bot")), false, CommentVerdict::Ignored);
        check(
            Some(Actor::bot("renovate")),
            false,
            CommentVerdict::Approved,
        );
        check(
            Some(Actor::user("renovate[bot]")),
            false,
            CommentVerdict::Approved,
        );
        check(Some(Actor::user("alice")), false, ask("alice"));
        // A person's comment that carries a marker is still theirs to judge.
        check(Some(Actor::user("alice")), true, ask("alice"));
        assert!(is_own(&Actor::user("Afk-Bot"), "afk-bot"));
        // A person whose login is the App's slug is not the App.
        assert!(!is_own(&Actor::user("afk-bot"), "afk-bot[bot]"));
        assert!(is_own(&Actor::bot("afk-bot"), "afk-bot[bot]"));
        assert!(!is_trusted_bot("", &["".into()]));
    }

    proptest! {
        /// Any edit of the body or the title at or after the latest label
        /// makes it untrusted, whoever applied it.
        #[test]
        fn any_edit_at_or_after_the_label_is_untrusted(
            label_at in 0i64..1_000,
            edits in prop::collection::vec((0i64..2_000, any::<bool>()), 1..5),
            earlier in prop::collection::vec(0i64..1_000, 0..4),
            bot in any::<bool>(),
        ) {
            let actor = if bot { Actor::bot("renovate") } else { Actor::user("alice") };
            let mut facts = LabelFacts::default();
            for t in earlier.iter().filter(|t| **t < label_at) {
                facts.labeled.push(labeled("ready-for-agent", *t, Some(Actor::user("bob"))));
            }
            facts.labeled.push(labeled("ready-for-agent", label_at, Some(actor)));
            for (t, body) in &edits {
                if *body {
                    facts.body_edited_at = Some(facts.body_edited_at.map_or(at(*t), |e| e.max(at(*t))));
                } else {
                    facts.renames.push(Rename { at: at(*t), by: None });
                }
            }
            let any_after = edits.iter().any(|(t, _)| *t >= label_at);
            let v = label_trust(&facts, "ready-for-agent", &bots());
            if any_after {
                prop_assert!(matches!(v, LabelVerdict::Decided(Trust { trusted: false, .. })), "{v:?}");
            } else {
                prop_assert!(!matches!(v, LabelVerdict::Decided(Trust { trusted: false, .. })), "{v:?}");
            }
        }
    }
}
