//! Comments, read newest first through GraphQL (`comments(last:, before:)`),
//! so that an issue with 10,000 comments costs one request to find afk's
//! progress comment when it is among the newest hundred, which it is for a
//! run: it is written at dispatch, and the watcher reads it every tick.
//!
//! - The progress comment is the newest comment by afk's own login that
//!   carries an afk-run marker. Up to [`MAX_COMMENT_PAGES`] pages are read
//!   back; an issue with more comments than that and none of afk's among
//!   them is an error that says so (never "none": that would start a second
//!   run record).
//! - The approved comments are the trusted ones among the newest
//!   [`APPROVED_PAGES`] pages, oldest first: the task an agent reads is the
//!   recent discussion, and the prompt caps it anyway.
//! - A comment's id is its `fullDatabaseId` (a BigInt, sent as a string):
//!   `databaseId` is a 32-bit Int that today's comment ids overflow, and the
//!   REST update takes the full id.
//! - GraphQL spells a bot's login without REST's `[bot]` suffix; afk's own
//!   login and the trusted-bot list compare in either spelling.

use afk_core::ports::{ApprovedComment, Comment, PortError, PortResult};
use afk_core::trust::{self, Actor};
use serde::Deserialize;
use serde_json::json;

use super::{GitHubTracker, lock, wire};

/// Pages of 100 read back looking for the progress comment.
pub const MAX_COMMENT_PAGES: usize = 100;
/// Pages of 100 read back for the approved comments.
pub const APPROVED_PAGES: usize = 5;

/// The comments page document (public for the conformance test).
pub const COMMENTS_QUERY: &str = "query AfkComments($owner: String!, $name: String!, $number: Int!, $before: String) { \
     rateLimit { cost limit remaining resetAt } \
     repository(owner: $owner, name: $name) { issue(number: $number) { \
     comments(last: 100, before: $before) { totalCount pageInfo { hasPreviousPage startCursor } \
     nodes { fullDatabaseId body author { __typename login } } } } } }";

#[derive(Debug, Deserialize)]
struct Data {
    repository: Option<Repo>,
}

#[derive(Debug, Deserialize)]
struct Repo {
    issue: Option<IssueNode>,
}

#[derive(Debug, Deserialize)]
struct IssueNode {
    comments: Page,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    page_info: PageInfo,
    nodes: Vec<Node>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    has_previous_page: bool,
    start_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Node {
    full_database_id: Option<String>,
    body: String,
    /// `null` for a deleted account.
    author: Option<Author>,
}

#[derive(Debug, Deserialize)]
struct Author {
    #[serde(rename = "__typename")]
    typename: String,
    login: String,
}

/// One page of comments (oldest first) and the cursor of the page before.
pub(super) type CommentPage = (Vec<Read>, Option<String>);

/// One comment, newest pages first.
#[derive(Debug, Clone)]
pub(super) struct Read {
    pub id: u64,
    pub body: String,
    /// The author, in REST's spelling (`name[bot]` for a bot).
    pub author: Option<Actor>,
}

impl GitHubTracker {
    /// Forgets the comment pages read of `repo`'s issues (a comment was
    /// written).
    pub(super) fn forget_comments(&self, repo: &str) {
        let repo = repo.to_ascii_lowercase();
        lock(&self.caches)
            .comment_pages
            .retain(|(r, _, _), _| *r != repo);
    }

    /// One page of comments, oldest first within the page, and the cursor
    /// of the page before it (when there is one); a page read before in
    /// this tick is not asked again.
    async fn comment_page(
        &self,
        repo: &str,
        number: u64,
        before: Option<&str>,
    ) -> PortResult<CommentPage> {
        let key = (repo.to_ascii_lowercase(), number, before.map(str::to_owned));
        if let Some(page) = lock(&self.caches).comment_pages.get(&key) {
            return Ok(page.clone());
        }
        let page = self.read_comment_page(repo, number, before).await?;
        lock(&self.caches).comment_pages.insert(key, page.clone());
        Ok(page)
    }

    async fn read_comment_page(
        &self,
        repo: &str,
        number: u64,
        before: Option<&str>,
    ) -> PortResult<CommentPage> {
        let (owner, name) = self.owner_name(repo)?;
        let body = self
            .graphql(
                COMMENTS_QUERY,
                json!({"owner": owner, "name": name, "number": number, "before": before}),
            )
            .await?;
        let answer: wire::GraphQl<Data> = wire::decode("comments answer", body)?;
        let issue = answer.data.and_then(|d| d.repository).and_then(|r| r.issue);
        let Some(issue) = issue else {
            if answer
                .errors
                .iter()
                .all(|e| e.kind.as_deref() == Some("NOT_FOUND"))
            {
                return Err(PortError::NotFound {
                    what: format!("{repo}#{number}"),
                });
            }
            return Err(super::batch::request_error(&answer.errors));
        };
        let mut out = Vec::with_capacity(issue.comments.nodes.len());
        for n in issue.comments.nodes {
            let id = n
                .full_database_id
                .as_deref()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| PortError::ContractViolation {
                    message: format!(
                        "a comment on {repo}#{number} has no readable fullDatabaseId ({:?})",
                        n.full_database_id
                    ),
                })?;
            // REST's spelling of a bot's login (`name[bot]`), which the
            // approved comments carry.
            let author = n.author.map(|a| {
                let bot = a.typename == "Bot";
                Actor {
                    login: if bot && !a.login.ends_with("[bot]") {
                        format!("{}[bot]", a.login)
                    } else {
                        a.login
                    },
                    typed_bot: bot,
                }
            });
            out.push(Read {
                id,
                body: n.body,
                author,
            });
        }
        let info = issue.comments.page_info;
        let before = if info.has_previous_page {
            info.start_cursor
        } else {
            None
        };
        Ok((out, before))
    }

    pub(super) async fn find_progress_comment(
        &self,
        repo: &str,
        number: u64,
    ) -> PortResult<Option<Comment>> {
        let own = self.own_login().await?;
        let mut before: Option<String> = None;
        for _ in 0..MAX_COMMENT_PAGES {
            let (page, earlier) = self.comment_page(repo, number, before.as_deref()).await?;
            let found = page.into_iter().rev().find(|c| {
                c.author.as_ref().is_some_and(|a| trust::is_own(a, &own))
                    && checklist::has_marker(&c.body)
            });
            if let Some(c) = found {
                return Ok(Some(Comment {
                    id: c.id,
                    body: c.body,
                }));
            }
            match earlier {
                Some(cursor) => before = Some(cursor),
                None => return Ok(None),
            }
        }
        Err(PortError::Permanent {
            message: format!(
                "{repo}#{number} has more than {} comments and afk's progress comment is not among the newest {0}; refusing to guess (a second run record would follow)",
                MAX_COMMENT_PAGES * 100
            ),
        })
    }

    pub(super) async fn newest_approved_comments(
        &self,
        repo: &str,
        number: u64,
    ) -> PortResult<Vec<ApprovedComment>> {
        let own = self.own_login().await?;
        let mut pages = Vec::new();
        let mut before: Option<String> = None;
        for _ in 0..APPROVED_PAGES {
            let (page, earlier) = self.comment_page(repo, number, before.as_deref()).await?;
            pages.push(page);
            match earlier {
                Some(cursor) => before = Some(cursor),
                None => break,
            }
        }
        let mut approved = Vec::new();
        for c in pages.into_iter().rev().flatten() {
            let is_progress = checklist::has_marker(&c.body);
            if self
                .approved_author(repo, c.author.as_ref(), &own, is_progress)
                .await?
                && let Some(author) = c.author
            {
                approved.push(ApprovedComment {
                    author: author.login,
                    body: c.body,
                });
            }
        }
        Ok(approved)
    }
}
