//! Pull requests over GitHub's REST API, for runs that land through one
//! (facts in `docs/contracts/github.md`, "Pull requests"): listed by head
//! (`head=owner:branch`, every item's `head.ref` checked again, since GitHub
//! ignores a `head` it cannot read), read one by one for `mergeable_state`,
//! opened (a 422 "A pull request already exists" answered with the one
//! that exists), reviewed (each review's author judged by the same trust
//! rule as a comment's), and merged with the head SHA it was judged on (405:
//! the rules refuse; 409: the head moved).

use afk_core::land::{MergeMethod, Mergeable, PullState, mergeable_from};
use afk_core::ports::{
    MergeOutcome, NewPull, PortError, PortResult, PullRequest, Review, ReviewVerdict,
};
use afk_core::trust::{Actor, CommentVerdict, comment_trust};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;

use super::GitHubTracker;
use super::wire::{self, decode};

#[derive(Debug, Deserialize)]
struct Pull {
    number: u64,
    state: String,
    #[serde(default)]
    merged_at: Option<String>,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merge_commit_sha: Option<String>,
    #[serde(default)]
    mergeable: Option<bool>,
    #[serde(default)]
    mergeable_state: Option<String>,
    #[serde(default)]
    draft: Option<bool>,
    html_url: Option<String>,
    #[serde(default)]
    user: Option<wire::User>,
    head: Ref,
    base: Ref,
}

#[derive(Debug, Deserialize)]
struct Ref {
    #[serde(rename = "ref")]
    name: String,
    sha: String,
    #[serde(default)]
    repo: Option<RefRepo>,
}

#[derive(Debug, Deserialize)]
struct RefRepo {
    full_name: String,
}

#[derive(Debug, Deserialize)]
struct PullReview {
    id: u64,
    #[serde(default)]
    user: Option<wire::User>,
    state: String,
    #[serde(default)]
    body: Option<String>,
}

/// A 422's body: `errors[].message` says what failed.
#[derive(Debug, Default, Deserialize)]
struct Refusal {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<RefusalError>,
}

#[derive(Debug, Deserialize)]
struct RefusalError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Merged {
    sha: String,
}

impl Pull {
    /// The port's view; `full` says whether the answer carries
    /// `mergeable_state` (a single read) or not (a listing); `own` is afk's
    /// own login.
    fn into_port(self, full: bool, own: &str) -> PullRequest {
        let author = self.user.as_ref().map(|u| Actor {
            login: u.login.clone(),
            typed_bot: u.kind.as_deref() == Some("Bot"),
        });
        let by_afk = author
            .as_ref()
            .is_some_and(|a| afk_core::trust::is_own(a, own));
        let merged = self.merged.unwrap_or(false) || self.merged_at.is_some();
        let state = PullState::from_tracker(&self.state, merged);
        PullRequest {
            number: self.number,
            head_branch: self.head.name,
            head_sha: self.head.sha,
            base_branch: self.base.name,
            state,
            merge_commit: if merged { self.merge_commit_sha } else { None },
            mergeable: if full {
                mergeable_from(self.mergeable_state.as_deref(), self.mergeable)
            } else {
                Mergeable::Unknown
            },
            draft: self.draft.unwrap_or(false),
            link: self.html_url,
            author: author.map(|a| a.login),
            by_afk,
        }
    }
}

impl GitHubTracker {
    /// The newest pull request from `branch` of `repo` itself.
    pub(super) async fn find_pull(
        &self,
        repo: &str,
        branch: &str,
    ) -> PortResult<Option<PullRequest>> {
        let (owner, name) = self.owner_name(repo)?;
        let head = format!("{owner}:{branch}");
        let url = self.repo_url(
            repo,
            &["pulls"],
            &[("head", &head), ("state", "all"), ("per_page", "100")],
        )?;
        let items: Vec<Pull> = self.list(url, "pull requests listing").await?;
        let own = self.own_login().await?;
        let full_name = format!("{owner}/{name}");
        Ok(items
            .into_iter()
            .filter(|p| {
                p.head.name == branch
                    && p.head
                        .repo
                        .as_ref()
                        .is_some_and(|r| r.full_name.eq_ignore_ascii_case(&full_name))
            })
            .max_by_key(|p| p.number)
            .map(|p| p.into_port(false, &own)))
    }

    /// One pull request, with its mergeability.
    pub(super) async fn get_pull(&self, repo: &str, number: u64) -> PortResult<PullRequest> {
        let url = self.repo_url(repo, &["pulls", &number.to_string()], &[])?;
        let page = self.get(url, &[]).await?;
        let own = self.own_login().await?;
        Ok(decode::<Pull>("pull request", page.body)?.into_port(true, &own))
    }

    /// Opens a pull request; one already open for the head is answered.
    pub(super) async fn open_pull(&self, repo: &str, new: &NewPull) -> PortResult<PullRequest> {
        let url = self.repo_url(repo, &["pulls"], &[])?;
        let body = json!({
            "title": new.title,
            "head": new.head,
            "base": new.base,
            "body": new.body,
            "maintainer_can_modify": false,
        });
        // Not retried: a create that timed out may have happened; the
        // next tick finds it by its branch.
        let page = self.request(Method::POST, url, Some(&body), &[422]).await?;
        if page.status != 422 {
            let own = self.own_login().await?;
            return Ok(decode::<Pull>("created pull request", page.body)?.into_port(true, &own));
        }
        // GitHub's 422 says "Validation Failed"; what failed is in `errors`.
        let refusal: Refusal = serde_json::from_value(page.body).unwrap_or_default();
        let why: Vec<String> = refusal
            .errors
            .into_iter()
            .filter_map(|e| e.message.or(e.code))
            .collect();
        let why = if why.is_empty() {
            refusal.message.unwrap_or_default()
        } else {
            why.join("; ")
        };
        if why.contains("already exists") {
            // Opened already (by the agent, or by a tick that died): that one.
            if let Some(open) = self
                .find_pull(repo, &new.head)
                .await?
                .filter(|p| p.state == PullState::Open)
            {
                return Ok(open);
            }
        }
        Err(PortError::Permanent {
            message: format!("GitHub refused to open the pull request (422 {why})"),
        })
    }

    /// The reviews, oldest first, each judged by the comment trust rule.
    pub(super) async fn pull_reviews(&self, repo: &str, number: u64) -> PortResult<Vec<Review>> {
        let url = self.repo_url(
            repo,
            &["pulls", &number.to_string(), "reviews"],
            &[("per_page", "100")],
        )?;
        let items: Vec<PullReview> = self.list(url, "reviews listing").await?;
        let own = self.own_login().await?;
        let mut reviews = Vec::with_capacity(items.len());
        for r in items {
            let author = r.user.as_ref().map(|u| Actor {
                login: u.login.clone(),
                typed_bot: u.kind.as_deref() == Some("Bot"),
            });
            let trusted =
                match comment_trust(author.as_ref(), &own, false, &self.settings.trusted_bots) {
                    CommentVerdict::Approved => true,
                    CommentVerdict::Ignored => false,
                    CommentVerdict::NeedsPermission { login } => {
                        self.permission(repo, &login).await?.may_approve()
                    }
                };
            reviews.push(Review {
                id: r.id,
                author: author.map(|a| a.login),
                verdict: ReviewVerdict::from_tracker(&r.state),
                body: r.body.unwrap_or_default(),
                trusted,
            });
        }
        Ok(reviews)
    }

    /// Merges with the head SHA it was judged on.
    pub(super) async fn merge(
        &self,
        repo: &str,
        number: u64,
        head_sha: &str,
        method: MergeMethod,
    ) -> PortResult<MergeOutcome> {
        let url = self.repo_url(repo, &["pulls", &number.to_string(), "merge"], &[])?;
        let body = json!({"sha": head_sha, "merge_method": method.as_str()});
        // Not retried blindly: a merge that timed out may have happened; the
        // next tick reads the pull request and sees it merged.
        let page = self
            .request(Method::PUT, url, Some(&body), &[405, 409])
            .await?;
        let message = || {
            serde_json::from_value::<wire::ErrorBody>(page.body.clone())
                .unwrap_or_default()
                .message
                .unwrap_or_default()
        };
        match page.status {
            405 => Ok(MergeOutcome::Refused { message: message() }),
            409 => Ok(MergeOutcome::HeadMoved),
            _ => Ok(MergeOutcome::Merged {
                sha: decode::<Merged>("merge answer", page.body)?.sha,
            }),
        }
    }
}
