//! An issue's comments, read so that a flood of them can neither hide a
//! run's progress comment nor spend the token's budget: authors first,
//! bodies only of the comments afk uses, and the progress comment in a
//! bounded number of requests whatever the number of comments. Where to
//! look and what the reads prove is the core's rule (`afk_core::comments`);
//! this file gathers the facts through GraphQL.
//!
//! This file is long because it carries the four documents the look-up
//! sends, their wire shapes, the per-tick cache, and both port operations
//! that read comments.
//!
//! - **Authors first.** Comment reads select `id`, `fullDatabaseId`,
//!   `createdAt` and `author` only, never `body`, from the issue's timeline
//!   (`timelineItems(itemTypes: [ISSUE_COMMENT])`), which numbers the
//!   comments in order of creation and takes `skip`, so any comment can be
//!   read by its number. Bodies are read afterwards by node id
//!   (`nodes(ids:)`), only for afk's own comments (to find the marker) and
//!   for trusted authors' (the approved task text), [`BODY_CHUNK`] per
//!   request: ten bodies of 65,536 characters, even at 12 bytes a character
//!   (an escaped surrogate pair), are 7.5 MiB, under half the answer cap.
//! - **The progress comment** ([`GitHubTracker::find_progress_comment`]):
//!   one request reads the newest 100 comments' authors, the comment count
//!   and the issue's `labeled` events ([`HEAD_QUERY`]); if afk's own marker
//!   comment is among those comments (a body request tells), it is the one.
//!   Else the label anchors of `afk_core::comments` are located by a
//!   many-way search over the timeline (`probe.rs`: each request reads up to
//!   40 single comments and the windows that fit), and afk's own comments
//!   in their windows have their bodies read. Worst case, in requests:
//!   1 (head) + ⌈E/100⌉ − 1 (more `labeled` events, E of them) + R (rounds:
//!   ⌈log₄₁(n/300)⌉ + 1 for n comments, 2 up to about 12,000) + ⌈K/10⌉
//!   (bodies of afk's K own comments there, normally one). Not found within
//!   that is `Permanent`, never "none".
//! - **The approved comments** ([`GitHubTracker::newest_approved_comments`]):
//!   the trusted authors' comments among the newest 500, oldest first: the
//!   head's authors and, past a hundred comments, one more request for the
//!   rest; each login's permission once a tick (REST); bodies for afk's
//!   own (one may be its record, which is never the task) and the trusted
//!   ones only, ⌈T/10⌉ requests for T of them.
//! - A comment read is kept for the tick (each comment's author and each
//!   body asked once); a write to the repository's comments forgets them.
//! - A comment's id is its `fullDatabaseId` (a BigInt, sent as a string):
//!   `databaseId` is a 32-bit Int that today's comment ids overflow, and the
//!   REST update takes the full id.
//! - GraphQL spells a bot's login without REST's `[bot]` suffix; afk's own
//!   login and the trusted-bot list compare in either spelling.
//!
//! It does not judge anyone (the trust rule is the core's) and does not
//! decide where the record may be or when its absence is proved (the
//! core's comment rule); it reads.
//!
//! Facts from GitHub's GraphQL schema (`@octokit/graphql-schema`, which the
//! conformance test validates every document against): `Issue.timelineItems`
//! takes `first`, `last`, `after`, `skip` ("Skips the first _n_ elements in
//! the list") and `itemTypes` (`ISSUE_COMMENT`, `LABELED_EVENT`), and has a
//! `totalCount` (of the item types asked for, as clients count comments by
//! it); `IssueComment` has `id`, `fullDatabaseId`, `createdAt`, `body` and
//! `author`; `LabeledEvent` has `createdAt`, `label` and `actor`;
//! `Query.nodes(ids: [ID!]!)` answers `[Node]!`, an id that names nothing
//! (a comment deleted meanwhile) as `null` with a `NOT_FOUND` error, and
//! takes at most 100 ids. Only people with triage permission or more can
//! apply a label, so a commenter adds no `labeled` event.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;

use afk_core::Timestamp;
use afk_core::comments::{self as reads, Anchor, Verdict};
use afk_core::ports::{ApprovedComment, Closure, Comment, PortError, PortResult};
use afk_core::trust::{self, Actor, LabelEvent, LabelFacts};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::probe::{self, Slice};
use super::{GitHubTracker, lock, next_page, wire};

/// Bodies asked for in one request.
pub const BODY_CHUNK: usize = 10;
/// Probing rounds at most (the search needs 4 for a million comments).
const MAX_ROUNDS: usize = 8;

/// The fields read of a comment: never its body.
macro_rules! comment_fragment {
    () => {
        "fragment AfkComment on IssueComment { id fullDatabaseId createdAt author { __typename login } }"
    };
}

/// The fields read of a `labeled` event.
macro_rules! labeled_fragment {
    () => {
        "fragment AfkLabeled on LabeledEvent { createdAt label { name } actor { __typename login } }"
    };
}

/// The head: the newest 100 comments' authors, the comment count, and the
/// first page of `labeled` events (public for the conformance test).
pub const HEAD_QUERY: &str = concat!(
    "query AfkCommentsHead($owner: String!, $name: String!, $number: Int!) { ",
    "rateLimit { cost limit remaining resetAt } ",
    "repository(owner: $owner, name: $name) { issue(number: $number) { ",
    "comments: timelineItems(itemTypes: [ISSUE_COMMENT], last: 100) { totalCount nodes { __typename ...AfkComment } } ",
    "labeled: timelineItems(itemTypes: [LABELED_EVENT], first: 100) { pageInfo { hasNextPage endCursor } nodes { __typename ...AfkLabeled } } } } } ",
    comment_fragment!(),
    " ",
    labeled_fragment!()
);

/// The `labeled` events after the cursor `$after` (public for the
/// conformance test).
pub const LABELED_QUERY: &str = concat!(
    "query AfkLabeled($owner: String!, $name: String!, $number: Int!, $after: String) { ",
    "rateLimit { cost limit remaining resetAt } ",
    "repository(owner: $owner, name: $name) { issue(number: $number) { ",
    "labeled: timelineItems(itemTypes: [LABELED_EVENT], first: 100, after: $after) { pageInfo { hasNextPage endCursor } nodes { __typename ...AfkLabeled } } } } } ",
    labeled_fragment!()
);

/// Bodies by node id, for up to [`BODY_CHUNK`] comments (public for the
/// conformance test).
pub const BODIES_QUERY: &str = "query AfkCommentBodies($ids: [ID!]!) { \
     rateLimit { cost limit remaining resetAt } \
     nodes(ids: $ids) { __typename ... on IssueComment { id body } } }";

/// The document reading the comments numbered `skip..skip + first` for
/// each `(skip, first)` of `slices` (aliases `c0`, `c1`, …; `first` at most
/// 100), authors only (public for the conformance test).
pub fn slices_document(slices: &[(usize, usize)]) -> String {
    let mut fields = String::new();
    for (i, (skip, first)) in slices.iter().enumerate() {
        let _ = write!(
            fields,
            " c{i}: timelineItems(itemTypes: [ISSUE_COMMENT], first: {first}, skip: {skip}) {{ nodes {{ __typename ...AfkComment }} }}"
        );
    }
    format!(
        "query AfkCommentSlices($owner: String!, $name: String!, $number: Int!) {{ \
         rateLimit {{ cost limit remaining resetAt }} \
         repository(owner: $owner, name: $name) {{ issue(number: $number) {{{fields} }} }} }} {}",
        comment_fragment!()
    )
}

#[derive(Debug, Deserialize)]
struct Data<T> {
    repository: Option<RepositoryNode<T>>,
}

#[derive(Debug, Deserialize)]
struct RepositoryNode<T> {
    issue: Option<T>,
}

#[derive(Debug, Deserialize)]
struct HeadIssue {
    comments: HeadComments,
    labeled: LabeledPage,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct HeadComments {
    total_count: usize,
    nodes: Vec<TimelineComment>,
}

#[derive(Debug, Deserialize)]
struct LabeledIssue {
    labeled: LabeledPage,
}

#[derive(Debug, Deserialize)]
struct CommentNodes {
    nodes: Vec<TimelineComment>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LabeledPage {
    page_info: PageInfo,
    nodes: Vec<wire::TimelineItem>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

/// A node of the comment timeline: only comments are asked for.
#[derive(Debug, Deserialize)]
#[serde(tag = "__typename")]
enum TimelineComment {
    IssueComment(CommentNode),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct CommentNode {
    id: String,
    /// Nullable in GitHub's schema.
    full_database_id: Option<String>,
    created_at: String,
    /// `null` for a deleted account.
    author: Option<wire::Actor>,
}

#[derive(Debug, Deserialize)]
struct BodyNode {
    id: String,
    body: String,
}

/// One comment as read: who wrote it and when, never what.
#[derive(Debug, Clone)]
pub(super) struct Read {
    /// `fullDatabaseId`: the id REST updates it by.
    pub id: u64,
    /// The GraphQL node id its body is read by.
    pub node_id: String,
    pub created_at: Timestamp,
    /// The author, in REST's spelling (`name[bot]` for a bot).
    pub author: Option<Actor>,
}

/// What a tick has read of one issue's comments.
#[derive(Debug, Clone, Default)]
pub(super) struct IssueComments {
    /// How many comments the issue has.
    total: usize,
    /// The comments read, by number (0 is the oldest).
    known: BTreeMap<usize, Read>,
    /// The `labeled` events read, oldest first.
    labeled: Vec<LabelEvent>,
    /// Where the next page of `labeled` events starts, when there is one.
    labeled_after: Option<String>,
}

/// REST's spelling of an author's login (`name[bot]` for a bot), which the
/// approved comments carry and the trust rule compares.
fn author(a: wire::Actor) -> Actor {
    let bot = a.typename == "Bot";
    Actor {
        login: if bot && !a.login.ends_with("[bot]") {
            format!("{}[bot]", a.login)
        } else {
            a.login
        },
        typed_bot: bot,
    }
}

fn read(issue: &str, node: TimelineComment) -> PortResult<Read> {
    let TimelineComment::IssueComment(n) = node;
    let id = n
        .full_database_id
        .as_deref()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| PortError::ContractViolation {
            message: format!(
                "a comment on {issue} has no readable fullDatabaseId ({:?})",
                n.full_database_id
            ),
        })?;
    Ok(Read {
        id,
        node_id: n.id,
        created_at: super::parse_time("a comment's createdAt", &n.created_at)?,
        author: n.author.map(author),
    })
}

fn labeled_events(page: LabeledPage) -> PortResult<(Vec<LabelEvent>, Option<String>)> {
    let mut events = Vec::with_capacity(page.nodes.len());
    for item in page.nodes {
        if let wire::TimelineItem::LabeledEvent(e) = item {
            events.push(LabelEvent {
                at: super::parse_time("a labeled event's createdAt", &e.created_at)?,
                label: e.label.name,
                actor: e.actor.map(|a| Actor {
                    typed_bot: a.typename == "Bot",
                    login: a.login,
                }),
            });
        }
    }
    let after = Some(page.page_info)
        .filter(|p| p.has_next_page)
        .and_then(|p| p.end_cursor);
    Ok((events, after))
}

/// The issue's last close (public for the conformance test).
pub const CLOSED_QUERY: &str = "query AfkClosed($owner: String!, $name: String!, $number: Int!) { \
     repository(owner: $owner, name: $name) { issue(number: $number) { \
     closed: timelineItems(itemTypes: [CLOSED_EVENT], last: 1) { nodes { __typename \
     ... on ClosedEvent { createdAt actor { __typename login } closer { __typename } } } } } } }";

#[derive(Debug, Deserialize)]
struct ClosedIssue {
    closed: ClosedNodes,
}

#[derive(Debug, Deserialize)]
struct ClosedNodes {
    nodes: Vec<ClosedNode>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "__typename")]
enum ClosedNode {
    ClosedEvent(ClosedEvent),
    #[serde(other)]
    Other,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ClosedEvent {
    created_at: String,
    actor: Option<ClosedActor>,
    /// `Commit`, `PullRequest` or `ProjectV2`; `null` for a close by hand.
    closer: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
struct ClosedActor {
    #[serde(rename = "__typename")]
    typename: String,
    login: String,
}

/// The issue of a GraphQL answer about `issue`, or the error it carries:
/// `NotFound` when GitHub resolves no such repository or issue.
fn issue_of<T: serde::de::DeserializeOwned>(issue: &str, what: &str, body: Value) -> PortResult<T> {
    let answer: wire::GraphQl<Data<T>> = wire::decode(what, body)?;
    match answer.data.and_then(|d| d.repository).and_then(|r| r.issue) {
        Some(found) => Ok(found),
        None if answer
            .errors
            .iter()
            .all(|e| e.kind.as_deref() == Some("NOT_FOUND")) =>
        {
            Err(PortError::NotFound {
                what: issue.to_owned(),
            })
        }
        None => Err(super::batch::request_error(&answer.errors)),
    }
}

impl GitHubTracker {
    /// Forgets what was read of `repo`'s comments (a comment was written).
    pub(super) fn forget_comments(&self, repo: &str) {
        let repo = repo.to_ascii_lowercase();
        let mut caches = lock(&self.caches);
        caches.comments.retain(|(r, _), _| *r != repo);
        caches.bodies.retain(|(r, _), _| *r != repo);
    }

    /// `acme/infra#7`, as errors name an issue.
    fn issue_name(&self, repo: &str, number: u64) -> String {
        match self.owner_name(repo) {
            Ok((owner, name)) => format!("{owner}/{name}#{number}"),
            Err(_) => format!("{repo}#{number}"),
        }
    }

    fn comments_key(repo: &str, number: u64) -> (String, u64) {
        (repo.to_ascii_lowercase(), number)
    }

    /// What this tick has read of the issue's comments: the head is read
    /// first, once.
    async fn comments_read(&self, repo: &str, number: u64) -> PortResult<IssueComments> {
        let key = Self::comments_key(repo, number);
        if let Some(read) = lock(&self.caches).comments.get(&key) {
            return Ok(read.clone());
        }
        let issue = self.issue_name(repo, number);
        let (owner, name) = self.owner_name(repo)?;
        let body = self
            .graphql(
                HEAD_QUERY,
                json!({"owner": owner, "name": name, "number": number}),
            )
            .await?;
        let head: HeadIssue = issue_of(&issue, "comments answer", body)?;
        let len = head.comments.nodes.len();
        let total = head.comments.total_count;
        if len > total {
            return Err(PortError::ContractViolation {
                message: format!("{issue}: GitHub listed {len} newest comments of {total}"),
            });
        }
        let mut read_now = IssueComments {
            total,
            ..IssueComments::default()
        };
        for (k, node) in head.comments.nodes.into_iter().enumerate() {
            read_now.known.insert(total - len + k, read(&issue, node)?);
        }
        (read_now.labeled, read_now.labeled_after) = labeled_events(head.labeled)?;
        lock(&self.caches).comments.insert(key, read_now.clone());
        Ok(read_now)
    }

    /// Reads `slices` of the issue's comments in one request, into the
    /// tick's cache.
    async fn read_slices(&self, repo: &str, number: u64, slices: &[Slice]) -> PortResult<()> {
        if slices.is_empty() {
            return Ok(());
        }
        let issue = self.issue_name(repo, number);
        let (owner, name) = self.owner_name(repo)?;
        let pairs: Vec<(usize, usize)> = slices.iter().map(|s| (s.skip, s.first)).collect();
        let body = self
            .graphql(
                &slices_document(&pairs),
                json!({"owner": owner, "name": name, "number": number}),
            )
            .await?;
        let mut aliases: Map<String, Value> = issue_of(&issue, "comment slices answer", body)?;
        let mut found = Vec::new();
        for (i, s) in slices.iter().enumerate() {
            let page: CommentNodes = wire::decode(
                "a comment slice",
                aliases.remove(&format!("c{i}")).unwrap_or(Value::Null),
            )?;
            for (k, node) in page.nodes.into_iter().enumerate() {
                found.push((s.skip + k, read(&issue, node)?));
            }
        }
        // (Gone only if a comment was written meanwhile: the numbers may
        // have moved, and the head is read again.)
        if let Some(entry) = lock(&self.caches)
            .comments
            .get_mut(&Self::comments_key(repo, number))
        {
            entry.known.extend(found);
        }
        Ok(())
    }

    /// Makes sure every comment numbered in `ranges` is read (one request
    /// for the unread ones).
    async fn read_ranges(
        &self,
        repo: &str,
        number: u64,
        ranges: &[Range<usize>],
    ) -> PortResult<IssueComments> {
        let known = self.comments_read(repo, number).await?;
        let unread: std::collections::BTreeSet<usize> = ranges
            .iter()
            .flat_map(Clone::clone)
            .filter(|i| *i < known.total && !known.known.contains_key(i))
            .collect();
        let mut slices: Vec<Slice> = Vec::new();
        for i in unread {
            match slices.last_mut() {
                Some(s) if s.skip + s.first == i && s.first < reads::PAGE => s.first += 1,
                _ => slices.push(Slice { skip: i, first: 1 }),
            }
        }
        self.read_slices(repo, number, &slices).await?;
        self.comments_read(repo, number).await
    }

    /// How the issue was last closed (its last `ClosedEvent`), `None` when
    /// it never was.
    pub(super) async fn read_last_closure(
        &self,
        repo: &str,
        number: u64,
    ) -> PortResult<Option<Closure>> {
        let issue = self.issue_name(repo, number);
        let (owner, name) = self.owner_name(repo)?;
        let body = self
            .graphql(
                CLOSED_QUERY,
                json!({"owner": owner, "name": name, "number": number}),
            )
            .await?;
        let found: ClosedIssue = issue_of(&issue, "closed events answer", body)?;
        let Some(event) = found.closed.nodes.into_iter().rev().find_map(|n| match n {
            ClosedNode::ClosedEvent(e) => Some(e),
            ClosedNode::Other => None,
        }) else {
            return Ok(None);
        };
        let own = self.own_login().await?;
        let actor = event.actor.map(|a| Actor {
            typed_bot: a.typename == "Bot",
            login: a.login,
        });
        Ok(Some(Closure {
            at: super::parse_time("a closed event's createdAt", &event.created_at)?,
            by_afk: actor.as_ref().is_some_and(|a| trust::is_own(a, &own)),
            actor: actor.map(|a| a.login),
            by_change: event.closer.is_some(),
        }))
    }

    /// Every `labeled` event of the issue (further pages read as needed,
    /// at most [`super::MAX_PAGES`]).
    pub(super) async fn all_labeled(&self, repo: &str, number: u64) -> PortResult<Vec<LabelEvent>> {
        let mut read_so_far = self.comments_read(repo, number).await?;
        let issue = self.issue_name(repo, number);
        let (owner, name) = self.owner_name(repo)?;
        let mut pages = 1;
        while let Some(after) = read_so_far.labeled_after.take() {
            next_page(&mut pages, &format!("the labeled events of {issue}"))?;
            let body = self
                .graphql(
                    LABELED_QUERY,
                    json!({"owner": owner, "name": name, "number": number, "after": after}),
                )
                .await?;
            let page: LabeledIssue = issue_of(&issue, "labeled events answer", body)?;
            let (events, next) = labeled_events(page.labeled)?;
            read_so_far.labeled.extend(events);
            read_so_far.labeled_after = next;
            let mut caches = lock(&self.caches);
            if let Some(entry) = caches.comments.get_mut(&Self::comments_key(repo, number)) {
                entry.labeled.clone_from(&read_so_far.labeled);
                entry.labeled_after.clone_from(&read_so_far.labeled_after);
            }
        }
        Ok(read_so_far.labeled)
    }

    /// Each anchor's point among the issue's comments, its window read.
    async fn locate(&self, repo: &str, number: u64, anchors: &[Anchor]) -> PortResult<Vec<usize>> {
        for _ in 0..MAX_ROUNDS {
            let read_so_far = self.comments_read(repo, number).await?;
            let times: BTreeMap<usize, Timestamp> = read_so_far
                .known
                .iter()
                .map(|(i, c)| (*i, c.created_at))
                .collect();
            match probe::next(&times, anchors, read_so_far.total) {
                Ok(points) => return Ok(points),
                Err(slices) if slices.is_empty() => break,
                Err(slices) => self.read_slices(repo, number, &slices).await?,
            }
        }
        Err(PortError::Permanent {
            message: format!(
                "{}: the comments beside its labels could not be located in {MAX_ROUNDS} rounds (is its timeline out of order?)",
                self.issue_name(repo, number)
            ),
        })
    }

    /// The bodies of the comments with these node ids, [`BODY_CHUNK`] per
    /// request (each asked once a tick); `None` for a comment gone since.
    async fn bodies(
        &self,
        repo: &str,
        node_ids: &[String],
    ) -> PortResult<BTreeMap<String, Option<String>>> {
        let repo_key = repo.to_ascii_lowercase();
        let mut out = BTreeMap::new();
        let mut unread = Vec::new();
        {
            let caches = lock(&self.caches);
            for id in node_ids {
                match caches.bodies.get(&(repo_key.clone(), id.clone())) {
                    Some(body) => {
                        out.insert(id.clone(), body.clone());
                    }
                    None => unread.push(id.clone()),
                }
            }
        }
        for chunk in unread.chunks(BODY_CHUNK) {
            let body = self.graphql(BODIES_QUERY, json!({"ids": chunk})).await?;
            #[derive(Debug, Deserialize)]
            struct Nodes {
                nodes: Vec<Option<BodyNode>>,
            }
            let answer: wire::GraphQl<Nodes> = wire::decode("comment bodies answer", body)?;
            // A comment deleted since it was listed answers null with a
            // NOT_FOUND error: it is gone, not a failure.
            if answer
                .errors
                .iter()
                .any(|e| e.kind.as_deref() != Some("NOT_FOUND"))
                || answer.data.is_none()
            {
                return Err(super::batch::request_error(&answer.errors));
            }
            let mut got: BTreeMap<String, String> = answer
                .data
                .map(|d| d.nodes)
                .unwrap_or_default()
                .into_iter()
                .flatten()
                .map(|n| (n.id, n.body))
                .collect();
            let mut caches = lock(&self.caches);
            for id in chunk {
                let body = got.remove(id);
                caches
                    .bodies
                    .insert((repo_key.clone(), id.clone()), body.clone());
                out.insert(id.clone(), body);
            }
        }
        Ok(out)
    }

    /// The newest of afk's own comments numbered in `ranges` that carries
    /// a run marker: its number and the comment. Bodies are read newest
    /// first, a chunk at a time, until one carries the marker.
    async fn newest_marker(
        &self,
        repo: &str,
        number: u64,
        own: &str,
        ranges: &[Range<usize>],
    ) -> PortResult<Option<(usize, Comment)>> {
        let read_so_far = self.comments_read(repo, number).await?;
        let mut mine: Vec<(usize, Read)> = read_so_far
            .known
            .iter()
            .filter(|(i, c)| {
                ranges.iter().any(|r| r.contains(i))
                    && c.author.as_ref().is_some_and(|a| trust::is_own(a, own))
            })
            .map(|(i, c)| (*i, c.clone()))
            .collect();
        mine.reverse();
        for chunk in mine.chunks(BODY_CHUNK) {
            let ids: Vec<String> = chunk.iter().map(|(_, c)| c.node_id.clone()).collect();
            let bodies = self.bodies(repo, &ids).await?;
            for (i, c) in chunk {
                if let Some(Some(body)) = bodies.get(&c.node_id)
                    && checklist::has_marker(body)
                {
                    return Ok(Some((
                        *i,
                        Comment {
                            id: c.id,
                            body: body.clone(),
                        },
                    )));
                }
            }
        }
        Ok(None)
    }

    /// The progress comment: afk's own newest marker comment, looked for
    /// in the head, then beside the issue's label anchors (the core's rule,
    /// `afk_core::comments`). `Permanent` when the reads prove neither the
    /// comment nor its absence.
    pub(super) async fn find_progress_comment(
        &self,
        repo: &str,
        number: u64,
    ) -> PortResult<Option<Comment>> {
        let own = self.own_login().await?;
        let total = self.comments_read(repo, number).await?.total;
        let head = reads::head(total);
        if let Some((_, found)) = self
            .newest_marker(repo, number, &own, std::slice::from_ref(&head))
            .await?
        {
            return Ok(Some(found));
        }
        if head.start == 0 {
            // Every comment was in the head.
            return Ok(None);
        }
        let facts = LabelFacts {
            labeled: self.all_labeled(repo, number).await?,
            ..LabelFacts::default()
        };
        let plan = reads::plan(
            &facts,
            &self.settings.ready_label,
            &self.settings.in_progress_label,
        );
        let points = self.locate(repo, number, &plan.anchors).await?;
        let windows: Vec<Range<usize>> = plan
            .anchors
            .iter()
            .zip(points)
            .map(|(a, p)| a.window(p, total))
            .collect();
        let found = self.newest_marker(repo, number, &own, &windows).await?;
        match reads::verdict(total, found.as_ref().map(|(i, _)| *i), &plan, &windows) {
            Verdict::Found(_) => Ok(found.map(|(_, c)| c)),
            Verdict::Absent => Ok(None),
            Verdict::Unknown => Err(PortError::Permanent {
                message: reads::not_found(&self.issue_name(repo, number), total, &plan),
            }),
        }
    }

    /// The trusted authors' comments among the newest
    /// `afk_core::comments::APPROVED_COMMENTS`, oldest first: authors read
    /// first, bodies only for the trusted ones.
    pub(super) async fn newest_approved_comments(
        &self,
        repo: &str,
        number: u64,
    ) -> PortResult<Vec<ApprovedComment>> {
        let own = self.own_login().await?;
        let total = self.comments_read(repo, number).await?.total;
        let newest = reads::approved_range(total);
        let read_so_far = self
            .read_ranges(repo, number, std::slice::from_ref(&newest))
            .await?;
        let comments: Vec<Read> = read_so_far
            .known
            .range(newest)
            .map(|(_, c)| c.clone())
            .collect();
        let is_mine = |c: &Read| c.author.as_ref().is_some_and(|a| trust::is_own(a, &own));
        // afk's own comments are read whole (one is its record, never the
        // task); everyone else's are judged by author alone.
        let mine: Vec<String> = comments
            .iter()
            .filter(|c| is_mine(c))
            .map(|c| c.node_id.clone())
            .collect();
        let mut bodies = self.bodies(repo, &mine).await?;
        let mut trusted: Vec<Read> = Vec::new();
        for c in comments {
            let is_progress = is_mine(&c)
                && bodies
                    .get(&c.node_id)
                    .and_then(Option::as_deref)
                    .is_some_and(checklist::has_marker);
            if self
                .approved_author(repo, c.author.as_ref(), &own, is_progress)
                .await?
            {
                trusted.push(c);
            }
        }
        let unread: Vec<String> = trusted
            .iter()
            .filter(|c| !bodies.contains_key(&c.node_id))
            .map(|c| c.node_id.clone())
            .collect();
        bodies.extend(self.bodies(repo, &unread).await?);
        let mut approved = Vec::with_capacity(trusted.len());
        for c in trusted {
            // A comment deleted since it was listed is left out.
            if let (Some(Some(body)), Some(author)) = (bodies.remove(&c.node_id), c.author) {
                approved.push(ApprovedComment {
                    author: author.login,
                    body,
                });
            }
        }
        Ok(approved)
    }
}
