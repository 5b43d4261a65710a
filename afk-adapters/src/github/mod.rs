//! The GitHub tracker: reads through GraphQL (the ticks' listings batched,
//! `batch.rs`; comments newest first, `comments.rs`; the trust check), writes
//! and the rest through REST. Facts in `docs/contracts/github.md`, and
//! GitHub's own API description, which the conformance test holds every
//! request to.
//!
//! This file is long because the tracker port has thirteen operations over
//! one client and one set of caches; the wire structs (`wire.rs`) and the
//! build stage (`stage.rs`) are beside it.
//!
//! - Lists follow the `Link` header; the issues listing also returns pull
//!   requests, which are dropped.
//! - Trust: the most recent `labeled` event for the ready label (GraphQL
//!   timeline, which also gives the body's `lastEditedAt`), then the
//!   collaborator permission endpoint: trusted iff `admin` or `write`. Bots
//!   are trusted only by login allowlist. A body edited after the label was
//!   applied is untrusted. Lookups are cached for the life of the adapter
//!   (one tick).
//! - A failed read is an error, never an empty list; a 403 or 429 with
//!   `x-ratelimit-remaining: 0`, a `retry-after`, or a secondary-limit message
//!   is a rate limit, not a permission error.
//! - Writes that are idempotent (labels, PATCH) are retried; creating a
//!   comment is not (the caller re-reads before creating again).
//! - The progress comment is the newest marker comment written by afk's own
//!   login; a marker in someone else's comment is ignored, so nobody can
//!   forge a run record by commenting.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use afk_core::Timestamp;
use afk_core::ci::LinkHosts;
use afk_core::ports::{
    ApprovedComment, Closure, Comment, MergeOutcome, NewPull, PortError, PortResult, PullRequest,
    PushedCommit, RateBudget, RepoScan, Review, TrackedIssue, Trust, has_issue_trailer,
};
use afk_core::trust::{
    self, Actor, CommentVerdict, LabelEvent, LabelFacts, LabelVerdict, Permission, Rename,
};
use afk_core::types::blocked_by_refs;
use afk_loop::ports::Tracker;
use async_trait::async_trait;
use reqwest::{Method, Url};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::http::{Http, Secret, now_unix, parse_retry_after};

pub mod app;
mod batch;
use batch::BlockerState;
mod comments;
mod probe;
mod pulls;
mod stage;
mod wire;

pub use batch::{BATCH, LABELS_QUERY, page_document, scan_document, states_document};
pub use comments::{
    BODIES_QUERY, BODY_CHUNK, CLOSED_QUERY, HEAD_QUERY, LABELED_QUERY, slices_document,
};

pub use stage::GitHubBuildStage;

/// Pages followed at most for one listing (100 items each).
const MAX_PAGES: usize = 50;

/// The largest answer afk reads from GitHub. A batched read of 25
/// repositories with 30 ready issues each, at GitHub's own body limit of
/// 65,536 characters, could exceed it; such a batch is asked again in halves.
pub const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// How afk reaches GitHub.
#[derive(Debug, Clone)]
pub struct GitHubSettings {
    /// REST base, `https://api.github.com` or `https://host/api/v3`.
    pub api_url: String,
    /// The token (`Secret::None` when afk acts as a GitHub App).
    pub token: Secret,
    /// The GitHub App afk acts as, instead of a token.
    pub app: Option<std::sync::Arc<app::AppAuth>>,
    /// Owner for bare repository names.
    pub default_owner: Option<String>,
    /// Bot logins whose ready label is trusted.
    pub trusted_bots: Vec<String>,
    /// afk's own login; asked of `GET /user` when not set.
    pub own_login: Option<String>,
    /// GitHub's web address, whose links (check logs) are passed on to an
    /// agent; by default `https://github.com` for `api.github.com`, and the
    /// API's own host for GitHub Enterprise Server.
    pub web_url: Option<String>,
    /// More hosts whose check and status links reach an agent: the
    /// configured CI stages' (the Woodpecker server) and the operator's
    /// (`AFK_CI_LINK_HOSTS`).
    pub ci_link_hosts: Vec<String>,
    /// The label that arms an issue (`AFK_READY_LABEL`) and the one that
    /// locks a repository (`AFK_IN_PROGRESS_LABEL`): their applications
    /// anchor the look-up of a run's progress comment.
    pub ready_label: String,
    /// See [`GitHubSettings::ready_label`].
    pub in_progress_label: String,
}

#[derive(Debug, Default)]
struct Caches {
    permission: BTreeMap<(String, String), Permission>,
    open: BTreeMap<(String, u64), bool>,
    default_branch: BTreeMap<String, String>,
    own_login: Option<String>,
    rate_remaining: Option<u64>,
    budget: Option<RateBudget>,
    /// What this tick read of each issue's comments, by (repository,
    /// issue): a dispatch looks for the progress comment and then reads the
    /// approved comments, and both start at the newest page. A write to the
    /// repository's comments drops them.
    comments: BTreeMap<(String, u64), comments::IssueComments>,
    /// Comment bodies read this tick, by (repository, node id); `None` for
    /// a comment gone since it was listed.
    bodies: BTreeMap<(String, String), Option<String>>,
}

/// The GitHub tracker.
#[derive(Debug)]
pub struct GitHubTracker {
    http: Http,
    settings: GitHubSettings,
    caches: Mutex<Caches>,
}

fn lock(c: &Mutex<Caches>) -> std::sync::MutexGuard<'_, Caches> {
    c.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One answered request: status, the `next` link, the JSON body.
struct Page {
    status: u16,
    next: Option<String>,
    body: Value,
}

/// Counts one more page of `what`; past [`MAX_PAGES`] (of 100 items) an
/// error that says so: every paged read afk makes is bounded by it.
fn next_page(pages: &mut usize, what: &str) -> PortResult<()> {
    *pages += 1;
    if *pages > MAX_PAGES {
        return Err(PortError::Permanent {
            message: format!("{what}: more than {MAX_PAGES} pages of 100; refusing to read on"),
        });
    }
    Ok(())
}

/// The `next` URL of a `Link` header.
fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim() == "rel=\"next\"")
            .then(|| {
                url.trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
    })
}

impl GitHubTracker {
    /// A tracker using `http` (shared with the other adapters).
    pub fn new(http: Http, settings: GitHubSettings) -> Self {
        GitHubTracker {
            http,
            settings,
            caches: Mutex::new(Caches::default()),
        }
    }

    /// Whose rate limit this tracker spends: `app` (the App's
    /// installation, up to 12,500 requests an hour) or `token` (the token
    /// owner's 5,000, shared with everything else they run).
    pub fn budget_kind(&self) -> &'static str {
        if self.settings.app.is_some() {
            "app"
        } else {
            "token"
        }
    }

    /// Whether `repo` defines the label `name` (`GET
    /// /repos/{owner}/{repo}/labels/{name}`; names compare
    /// case-insensitively).
    ///
    /// # Errors
    /// As GitHub answers, a missing repository included.
    pub async fn label_defined(&self, repo: &str, name: &str) -> PortResult<bool> {
        let url = self.repo_url(repo, &["labels", name], &[])?;
        let repo_url = self.repo_url(repo, &[], &[])?;
        let page = self.get(url, &[404]).await?;
        if page.status == 404 {
            // A label that is not there and a repository that is not there
            // both answer 404: ask which.
            self.get(repo_url, &[]).await?;
            return Ok(false);
        }
        Ok(true)
    }

    /// Creates the label `name` on `repo` (`POST
    /// /repos/{owner}/{repo}/labels`); `false` when it exists already.
    ///
    /// # Errors
    /// As GitHub answers (a color or a name it refuses is `Permanent`).
    pub async fn create_label(
        &self,
        repo: &str,
        name: &str,
        color: &str,
        description: &str,
    ) -> PortResult<bool> {
        let url = self.repo_url(repo, &["labels"], &[])?;
        let body = json!({"name": name, "color": color, "description": description});
        let page = self.request(Method::POST, url, Some(&body), &[422]).await?;
        if page.status != 422 {
            return Ok(true);
        }
        let exists = page
            .body
            .pointer("/errors")
            .and_then(Value::as_array)
            .is_some_and(|e| e.iter().any(|e| e["code"] == "already_exists"));
        if exists {
            Ok(false)
        } else {
            Err(PortError::Permanent {
                message: format!(
                    "GitHub refused to create the label {name:?} on {repo} (422 {})",
                    page.body["message"].as_str().unwrap_or("")
                ),
            })
        }
    }

    /// `(owner, name)` of a repository named bare or as `owner/name`.
    fn owner_name(&self, repo: &str) -> PortResult<(String, String)> {
        let repo = repo.trim();
        if let Some((owner, name)) = repo.split_once('/') {
            return Ok((owner.to_owned(), name.to_owned()));
        }
        match self.settings.default_owner.as_deref().map(str::trim) {
            Some(owner) if !owner.is_empty() => Ok((owner.to_owned(), repo.to_owned())),
            _ => Err(PortError::Permanent {
                message: format!(
                    "repository {repo:?} has no owner: name it owner/name or set AFK_GITHUB_OWNER"
                ),
            }),
        }
    }

    /// The hosts whose links may reach an agent: GitHub's API and web
    /// hosts, and the configured CI stages' and operator's
    /// (`ci_link_hosts`).
    pub fn link_hosts(&self) -> LinkHosts {
        let web = match &self.settings.web_url {
            Some(url) => url.clone(),
            None => Url::parse(&self.settings.api_url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .map(|h| h.strip_prefix("api.").unwrap_or(&h).to_owned())
                .unwrap_or_default(),
        };
        let mut hosts = vec![self.settings.api_url.clone(), web];
        hosts.extend(self.settings.ci_link_hosts.iter().cloned());
        LinkHosts::new(&hosts)
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> PortResult<Url> {
        crate::http::join_url(
            &self.settings.api_url,
            segments,
            query,
            "AFK_GITHUB_API_URL",
        )
    }

    fn repo_url(&self, repo: &str, rest: &[&str], query: &[(&str, &str)]) -> PortResult<Url> {
        let (owner, name) = self.owner_name(repo)?;
        let mut segments = vec!["repos", owner.as_str(), name.as_str()];
        segments.extend_from_slice(rest);
        self.url(&segments, query)
    }

    fn graphql_url(&self) -> PortResult<Url> {
        let base = self.settings.api_url.trim_end_matches('/');
        let graphql = match base.strip_suffix("/api/v3") {
            Some(host) => format!("{host}/api/graphql"),
            None => format!("{base}/graphql"),
        };
        Url::parse(&graphql).map_err(|e| PortError::Permanent {
            message: format!("cannot build the GraphQL URL: {e}"),
        })
    }

    /// One request, classified. `Ok` for 2xx and for the statuses in
    /// `accept` (e.g. 404 where absence is an answer).
    async fn request(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        accept: &[u16],
    ) -> PortResult<Page> {
        self.request_within(method, url, body, accept, None).await
    }

    /// [`Self::request`] with a timeout of its own.
    async fn request_within(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        accept: &[u16],
        timeout: Option<Duration>,
    ) -> PortResult<Page> {
        match self
            .request_once(method.clone(), url.clone(), body, accept, timeout)
            .await
        {
            // An App's token GitHub no longer takes (revoked, or the cache
            // outlived it): dropped, and the request asked once more with a
            // new one.
            Err((PortError::Auth { .. }, Some(token))) if self.settings.app.is_some() => {
                if let Some(app) = &self.settings.app {
                    tracing::info!(
                        action = "token",
                        "GitHub answered 401 to the App's token; minting a new one"
                    );
                    app.drop_token(&token).await;
                }
                self.request_once(method, url, body, accept, timeout)
                    .await
                    .map_err(|(e, _)| e)
            }
            other => other.map_err(|(e, _)| e),
        }
    }

    /// The bearer token for the next request: the App's installation
    /// token, or the configured one.
    async fn bearer(&self) -> PortResult<String> {
        if let Some(app) = &self.settings.app {
            return app.token(&self.http).await;
        }
        self.settings.token.read()?.ok_or_else(|| PortError::Auth {
            message: "no GitHub token configured (AFK_GITHUB_TOKEN or AFK_GITHUB_TOKEN_FILE)"
                .into(),
        })
    }

    /// One request; a 401 comes back with the token it was sent with.
    async fn request_once(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        accept: &[u16],
        timeout: Option<Duration>,
    ) -> Result<Page, (PortError, Option<String>)> {
        let token = self.bearer().await.map_err(|e| (e, None))?;
        self.request_with(&token, method, url, body, accept, timeout)
            .await
            .map_err(|e| {
                let was_401 = matches!(&e, PortError::Auth { message } if message.contains("(401"));
                (e, was_401.then_some(token))
            })
    }

    /// One request with `token`.
    async fn request_with(
        &self,
        token: &str,
        method: Method,
        url: Url,
        body: Option<&Value>,
        accept: &[u16],
        timeout: Option<Duration>,
    ) -> PortResult<Page> {
        let mut request = self
            .http
            .client()
            .request(method, url)
            .header("Authorization", format!("Bearer {token}"))
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(b) = body {
            request = request.json(b);
        }
        let response = self.http.send_within(request, timeout).await?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let remaining = header("x-ratelimit-remaining").and_then(|v| v.parse::<u64>().ok());
        if let Some(r) = remaining {
            lock(&self.caches).rate_remaining = Some(r);
        }
        let retry_after = header("retry-after").and_then(|v| parse_retry_after(&v, now_unix()));
        let reset = header("x-ratelimit-reset").and_then(|v| v.parse::<i64>().ok());
        let next = header("link").and_then(|l| next_link(&l));
        let bytes = crate::http::read_capped(response, MAX_BODY_BYTES, "GitHub's answer").await?;
        let body: Value = if bytes.trim_ascii().is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|e| PortError::ContractViolation {
                message: format!("GitHub answered HTTP {status} with a body that is not JSON: {e}"),
            })?
        };
        if (200..300).contains(&status) || accept.contains(&status) {
            return Ok(Page { status, next, body });
        }
        // Error bodies vary (HTML from a proxy, empty from a 502): their
        // message is informative only, so an unreadable one is just absent.
        let message = serde_json::from_value::<wire::ErrorBody>(body)
            .unwrap_or_default()
            .message
            .unwrap_or_default();
        Err(classify(status, &message, remaining, retry_after, reset))
    }

    /// A GET that is retried.
    async fn get(&self, url: Url, accept: &[u16]) -> PortResult<Page> {
        self.http
            .retrying(|| self.request(Method::GET, url.clone(), None, accept))
            .await
    }

    /// Every page of a paginated listing, in order: the `Link` header's
    /// next page followed, only on the API's own origin (the token goes with
    /// every request), and past [`MAX_PAGES`] an error, never a part.
    async fn pages(&self, url: Url, what: &str) -> PortResult<Vec<Value>> {
        let mut bodies = Vec::new();
        let mut next = Some(url);
        let mut pages = 0;
        while let Some(url) = next.take() {
            next_page(&mut pages, what)?;
            let page = self.get(url, &[]).await?;
            bodies.push(page.body);
            next = match page.next {
                Some(link) => {
                    let url = Url::parse(&link).map_err(|e| PortError::ContractViolation {
                        message: format!("GitHub sent an unreadable Link header: {e}"),
                    })?;
                    let api = Url::parse(&self.settings.api_url).ok();
                    if api.map(|a| a.origin()) != Some(url.origin()) {
                        return Err(PortError::ContractViolation {
                            message: format!(
                                "GitHub's next-page link leaves the API ({}); not followed",
                                url.origin().ascii_serialization()
                            ),
                        });
                    }
                    Some(url)
                }
                None => None,
            };
        }
        Ok(bodies)
    }

    /// Every item of a paginated listing, each read as `T`.
    async fn list<T: DeserializeOwned>(&self, url: Url, what: &str) -> PortResult<Vec<T>> {
        let mut items = Vec::new();
        for (n, body) in self.pages(url, what).await?.into_iter().enumerate() {
            items.extend(wire::decode::<Vec<T>>(
                &format!("{what} (page {})", n + 1),
                body,
            )?);
        }
        Ok(items)
    }

    async fn issues(&self, repo: &str, label: &str, state: &str) -> PortResult<Vec<TrackedIssue>> {
        let url = self.repo_url(
            repo,
            &["issues"],
            &[("state", state), ("labels", label), ("per_page", "100")],
        )?;
        let items: Vec<wire::Issue> = self.list(url, "issues listing").await?;
        Ok(items
            .into_iter()
            .filter(|i| i.pull_request.is_none())
            .map(|i| TrackedIssue {
                repo: repo.to_owned(),
                number: i.number,
                title: i.title,
                body: i.body.unwrap_or_default(),
                labels: i.labels.into_iter().map(wire::Label::into_name).collect(),
                open: i.state == wire::IssueState::Open,
            })
            .collect())
    }

    async fn own_login(&self) -> PortResult<String> {
        if let Some(login) = &self.settings.own_login {
            return Ok(login.clone());
        }
        if let Some(login) = lock(&self.caches).own_login.clone() {
            return Ok(login);
        }
        if let Some(app) = &self.settings.app {
            let login = app.login(&self.http).await?;
            lock(&self.caches).own_login = Some(login.clone());
            return Ok(login);
        }
        let page = self
            .get(self.url(&["user"], &[])?, &[])
            .await
            .map_err(|e| match e {
                PortError::Auth { .. } | PortError::NotFound { .. } => PortError::Permanent {
                    message:
                        "cannot tell which comments are afk's own (GET /user refused, as for app \
                          tokens): set AFK_GITHUB_LOGIN to the login afk comments as"
                            .into(),
                },
                other => other,
            })?;
        let login = wire::decode::<wire::User>("GET /user answer", page.body)?.login;
        lock(&self.caches).own_login = Some(login.clone());
        Ok(login)
    }

    /// A collaborator's permission on `repo`, as GitHub reports it (read
    /// once a tick per login).
    async fn permission(&self, repo: &str, login: &str) -> PortResult<Permission> {
        let key = (repo.to_ascii_lowercase(), login.to_ascii_lowercase());
        if let Some(p) = lock(&self.caches).permission.get(&key) {
            return Ok(p.clone());
        }
        let url = self.repo_url(repo, &["collaborators", login, "permission"], &[])?;
        let permission = match self.get(url, &[404]).await {
            Ok(page) if page.status == 404 => Permission::NotCollaborator,
            Ok(page) => Permission::Level(
                wire::decode::<wire::Permission>("permission answer", page.body)?.permission,
            ),
            // The token may lack push access ("Must have push access to view
            // collaborator permission"): untrusted, with the reason.
            Err(PortError::Auth { message }) => Permission::Refused(message),
            Err(other) => return Err(other),
        };
        lock(&self.caches)
            .permission
            .insert(key, permission.clone());
        Ok(permission)
    }

    /// Whether a comment's author may speak for the task (the core's rule;
    /// the permission read only for a person).
    async fn approved_author(
        &self,
        repo: &str,
        author: Option<&Actor>,
        own: &str,
        is_progress: bool,
    ) -> PortResult<bool> {
        Ok(
            match trust::comment_trust(author, own, is_progress, &self.settings.trusted_bots) {
                CommentVerdict::Approved => true,
                CommentVerdict::Ignored => false,
                CommentVerdict::NeedsPermission { login } => {
                    self.permission(repo, &login).await?.may_approve()
                }
            },
        )
    }

    async fn write(
        &self,
        method: Method,
        url: Url,
        body: Option<Value>,
        accept: &[u16],
    ) -> PortResult<Page> {
        self.http
            .retrying(|| self.request(method.clone(), url.clone(), body.as_ref(), accept))
            .await
    }
}

/// Maps a non-2xx GitHub answer to a port error. A 403 is a rate limit when
/// the headers or the message say so, and only then.
fn classify(
    status: u16,
    message: &str,
    remaining: Option<u64>,
    retry_after: Option<Duration>,
    reset: Option<i64>,
) -> PortError {
    let secondary = message
        .to_ascii_lowercase()
        .contains("secondary rate limit");
    if matches!(status, 403 | 429)
        && (remaining == Some(0) || retry_after.is_some() || secondary || status == 429)
    {
        let wait = retry_after
            .or_else(|| {
                (remaining == Some(0))
                    .then(|| {
                        reset.map(|r| {
                            Duration::from_secs(u64::try_from(r - now_unix()).unwrap_or(0))
                        })
                    })
                    .flatten()
            })
            .or_else(|| secondary.then_some(Duration::from_secs(60)));
        return PortError::RateLimited { retry_after: wait };
    }
    match status {
        401 => PortError::Auth {
            message: format!("GitHub did not accept the token (401 {message})"),
        },
        403 => PortError::Auth {
            message: format!("GitHub refused the request (403 {message})"),
        },
        404 | 410 => PortError::NotFound {
            what: format!("GitHub resource ({status} {message})"),
        },
        422 => PortError::Permanent {
            message: format!("GitHub rejected the request (422 {message})"),
        },
        500..=599 => PortError::Transient {
            message: format!("GitHub failed (HTTP {status})"),
        },
        _ => PortError::Permanent {
            message: format!("GitHub answered HTTP {status} {message}"),
        },
    }
}

/// The trust check's document (public for the conformance test).
pub const TRUST_QUERY: &str = "query($owner: String!, $name: String!, $number: Int!) { \
    repository(owner: $owner, name: $name) { issue(number: $number) { lastEditedAt \
    timelineItems(last: 100, itemTypes: [LABELED_EVENT, RENAMED_TITLE_EVENT]) { nodes { \
    __typename ... on LabeledEvent { createdAt label { name } actor { __typename login } } \
    ... on RenamedTitleEvent { createdAt actor { login } } } } } } }";

fn parse_time(what: &str, text: &str) -> PortResult<Timestamp> {
    Timestamp::parse_rfc3339(text).map_err(|e| PortError::ContractViolation {
        message: format!("{what} does not read as a time: {e}"),
    })
}

#[async_trait]
impl Tracker for GitHubTracker {
    async fn open_issues_with_label(
        &self,
        repo: &str,
        label: &str,
    ) -> PortResult<Vec<TrackedIssue>> {
        self.issues(repo, label, "open").await
    }

    async fn issues_with_label(&self, repo: &str, label: &str) -> PortResult<Vec<TrackedIssue>> {
        self.issues(repo, label, "all").await
    }

    async fn scan(
        &self,
        repos: &[String],
        ready: Option<&str>,
        locked: &str,
    ) -> Vec<PortResult<RepoScan>> {
        // Batch by batch (`batch.rs`), in order.
        let mut out = Vec::with_capacity(repos.len());
        for chunk in repos.chunks(BATCH) {
            out.extend(self.scan_split(chunk, ready, locked).await);
        }
        out
    }

    async fn label_trust(&self, repo: &str, number: u64, label: &str) -> PortResult<Trust> {
        let (owner, name) = self.owner_name(repo)?;
        let body = self
            .graphql(
                TRUST_QUERY,
                json!({"owner": owner, "name": name, "number": number}),
            )
            .await?;
        let answer: wire::GraphQl<wire::TrustData> = wire::decode("trust query answer", body)?;
        if !answer.errors.is_empty() {
            let kinds: Vec<&str> = answer
                .errors
                .iter()
                .filter_map(|e| e.kind.as_deref())
                .collect();
            if kinds.contains(&"RATE_LIMITED") {
                return Err(PortError::RateLimited { retry_after: None });
            }
            if kinds.contains(&"NOT_FOUND") {
                return Err(PortError::NotFound {
                    what: format!("{repo}#{number}"),
                });
            }
            let messages: Vec<&str> = answer.errors.iter().map(|e| e.message.as_str()).collect();
            return Err(PortError::Permanent {
                message: format!("GitHub GraphQL errors: {}", messages.join("; ")),
            });
        }
        let Some(issue) = answer.data.and_then(|d| d.repository).and_then(|r| r.issue) else {
            return Err(PortError::NotFound {
                what: format!("{repo}#{number}"),
            });
        };
        // Gather the facts; the rule is the core's.
        let mut facts = LabelFacts {
            body_edited_at: issue
                .last_edited_at
                .as_deref()
                .map(|t| parse_time("the issue's lastEditedAt", t))
                .transpose()?,
            ..LabelFacts::default()
        };
        for item in issue.timeline_items.nodes {
            match item {
                wire::TimelineItem::LabeledEvent(event) => facts.labeled.push(LabelEvent {
                    at: parse_time("a labeled event's createdAt", &event.created_at)?,
                    label: event.label.name,
                    actor: event.actor.map(|a| Actor {
                        typed_bot: a.typename == "Bot",
                        login: a.login,
                    }),
                }),
                wire::TimelineItem::RenamedTitleEvent(event) => facts.renames.push(Rename {
                    at: parse_time("a renamed event's createdAt", &event.created_at)?,
                    by: event.actor.map(|a| a.login),
                }),
            }
        }
        match trust::label_trust(&facts, label, &self.settings.trusted_bots) {
            LabelVerdict::Decided(t) => Ok(t),
            LabelVerdict::NeedsPermission { login } => Ok(trust::label_trust_by_permission(
                &login,
                &self.permission(repo, &login).await?,
            )),
        }
    }

    async fn label_events(&self, repo: &str, number: u64) -> PortResult<Vec<LabelEvent>> {
        self.all_labeled(repo, number).await
    }

    async fn last_closure(&self, repo: &str, number: u64) -> PortResult<Option<Closure>> {
        self.read_last_closure(repo, number).await
    }

    async fn open_blockers(&self, repo: &str, issue: &TrackedIssue) -> PortResult<Vec<u64>> {
        let mut candidates = blocked_by_refs(&issue.body);
        // Native dependencies (REST "List dependencies an issue is blocked
        // by"); a server without the feature answers 404, which means none.
        let url = self.repo_url(
            repo,
            &[
                "issues",
                &issue.number.to_string(),
                "dependencies",
                "blocked_by",
            ],
            &[("per_page", "100")],
        )?;
        let native: Vec<wire::IssueStateOnly> = match self.list(url, "blocked-by listing").await {
            Ok(items) => items,
            Err(PortError::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        for item in &native {
            lock(&self.caches).open.insert(
                (repo.to_ascii_lowercase(), item.number),
                item.state == wire::IssueState::Open,
            );
            if !candidates.contains(&item.number) {
                candidates.push(item.number);
            }
        }
        // The states afk does not know yet, a hundred per GraphQL request.
        let unknown: Vec<u64> = {
            let caches = lock(&self.caches);
            candidates
                .iter()
                .copied()
                .filter(|n| !caches.open.contains_key(&(repo.to_ascii_lowercase(), *n)))
                .collect()
        };
        let mut missing = Vec::new();
        let mut unreadable = Vec::new();
        for (n, state) in self.states(repo, &unknown).await? {
            let open = match state {
                BlockerState::Open => true,
                BlockerState::Closed => false,
                BlockerState::Missing => {
                    missing.push(n);
                    continue;
                }
                BlockerState::Unreadable(why) => {
                    // Fail closed, and not cached: it is read again next tick.
                    tracing::warn!(
                        repo,
                        issue = issue.number,
                        blocker = n,
                        why = why.as_str(),
                        "a blocker could not be read; it counts as open"
                    );
                    unreadable.push(n);
                    continue;
                }
            };
            lock(&self.caches)
                .open
                .insert((repo.to_ascii_lowercase(), n), open);
        }
        for n in &missing {
            tracing::warn!(
                repo,
                issue = issue.number,
                blocker = n,
                "blocker does not exist; ignored"
            );
        }
        let caches = lock(&self.caches);
        Ok(candidates
            .into_iter()
            .filter(|n| {
                unreadable.contains(n)
                    || caches.open.get(&(repo.to_ascii_lowercase(), *n)) == Some(&true)
            })
            .collect())
    }

    async fn default_branch(&self, repo: &str) -> PortResult<String> {
        if let Some(b) = lock(&self.caches)
            .default_branch
            .get(&repo.to_ascii_lowercase())
        {
            return Ok(b.clone());
        }
        let page = self.get(self.repo_url(repo, &[], &[])?, &[]).await?;
        let branch = wire::decode::<wire::Repository>("repository", page.body)?.default_branch;
        lock(&self.caches)
            .default_branch
            .insert(repo.to_ascii_lowercase(), branch.clone());
        Ok(branch)
    }

    async fn approved_comments(&self, repo: &str, number: u64) -> PortResult<Vec<ApprovedComment>> {
        self.newest_approved_comments(repo, number).await
    }

    async fn progress_comment(&self, repo: &str, number: u64) -> PortResult<Option<Comment>> {
        self.find_progress_comment(repo, number).await
    }

    async fn create_comment(&self, repo: &str, number: u64, body: &str) -> PortResult<Comment> {
        self.forget_comments(repo);
        let url = self.repo_url(repo, &["issues", &number.to_string(), "comments"], &[])?;
        // Not retried: a create that timed out may have happened.
        let page = self
            .request(Method::POST, url, Some(&json!({"body": body})), &[])
            .await?;
        let created: wire::IssueComment = wire::decode("created comment", page.body)?;
        Ok(Comment {
            id: created.id,
            body: created.body.unwrap_or_else(|| body.to_owned()),
        })
    }

    async fn update_comment(&self, repo: &str, comment_id: u64, body: &str) -> PortResult<()> {
        self.forget_comments(repo);
        let url = self.repo_url(repo, &["issues", "comments", &comment_id.to_string()], &[])?;
        self.write(Method::PATCH, url, Some(json!({"body": body})), &[])
            .await
            .map(|_| ())
    }

    async fn add_label(&self, repo: &str, number: u64, label: &str) -> PortResult<()> {
        // A `labeled` event the comment look-up anchors on may follow.
        self.forget_comments(repo);
        let url = self.repo_url(repo, &["issues", &number.to_string(), "labels"], &[])?;
        self.write(Method::POST, url, Some(json!({"labels": [label]})), &[])
            .await
            .map(|_| ())
    }

    async fn remove_label(&self, repo: &str, number: u64, label: &str) -> PortResult<()> {
        let url = self.repo_url(repo, &["issues", &number.to_string(), "labels", label], &[])?;
        // A label that is already gone answers 404: the wanted state holds.
        self.write(Method::DELETE, url, None, &[404])
            .await
            .map(|_| ())
    }

    async fn close_issue(&self, repo: &str, number: u64) -> PortResult<()> {
        let url = self.repo_url(repo, &["issues", &number.to_string()], &[])?;
        self.write(
            Method::PATCH,
            url,
            Some(json!({"state": "closed", "state_reason": "completed"})),
            &[],
        )
        .await
        .map(|_| ())
    }

    async fn reopen_issue(&self, repo: &str, number: u64) -> PortResult<()> {
        let url = self.repo_url(repo, &["issues", &number.to_string()], &[])?;
        self.write(Method::PATCH, url, Some(json!({"state": "open"})), &[])
            .await
            .map(|_| ())
    }

    async fn commits_with_trailer(
        &self,
        repo: &str,
        branch: &str,
        since: Timestamp,
        issue: u64,
    ) -> PortResult<Vec<PushedCommit>> {
        let since_text = since.to_rfc3339();
        let url = self.repo_url(
            repo,
            &["commits"],
            &[("sha", branch), ("since", &since_text), ("per_page", "100")],
        )?;
        let items: Vec<wire::Commit> = self.list(url, "commits listing").await?;
        let mut pushed = Vec::new();
        for c in items {
            if !has_issue_trailer(&c.commit.message, repo, issue) {
                continue;
            }
            let committed_at = match c.commit.committer.and_then(|a| a.date) {
                Some(date) => Some(Timestamp::parse_rfc3339(&date).map_err(|e| {
                    PortError::ContractViolation {
                        message: format!("commit {}: committer.date does not read: {e}", c.sha),
                    }
                })?),
                None => None,
            };
            pushed.push(PushedCommit {
                sha: c.sha,
                message: c.commit.message,
                committed_at,
            });
        }
        Ok(pushed)
    }

    async fn pull_for_branch(&self, repo: &str, branch: &str) -> PortResult<Option<PullRequest>> {
        self.find_pull(repo, branch).await
    }

    async fn pull_request(&self, repo: &str, number: u64) -> PortResult<PullRequest> {
        self.get_pull(repo, number).await
    }

    async fn create_pull(&self, repo: &str, new: &NewPull) -> PortResult<PullRequest> {
        self.open_pull(repo, new).await
    }

    async fn reviews(&self, repo: &str, number: u64) -> PortResult<Vec<Review>> {
        self.pull_reviews(repo, number).await
    }

    async fn merge_pull(
        &self,
        repo: &str,
        number: u64,
        head_sha: &str,
        method: afk_core::land::MergeMethod,
    ) -> PortResult<MergeOutcome> {
        self.merge(repo, number, head_sha, method).await
    }

    fn api_calls(&self) -> u64 {
        self.http.calls()
    }

    fn rate_limit_remaining(&self) -> Option<u64> {
        lock(&self.caches).rate_remaining
    }

    fn rate_budget(&self) -> Option<RateBudget> {
        lock(&self.caches).budget
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_others() {
        let header = r#"<https://api.github.com/repos/a/b/issues?page=3>; rel="next", <https://api.github.com/repos/a/b/issues?page=9>; rel="last""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://api.github.com/repos/a/b/issues?page=3")
        );
        assert_eq!(next_link(r#"<https://x/?page=1>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
    }

    #[test]
    fn graphql_lives_beside_the_rest_base() {
        let tracker = |api: &str| {
            GitHubTracker::new(
                Http::new(&crate::http::HttpSettings::default()).unwrap(),
                GitHubSettings {
                    api_url: api.into(),
                    token: Secret::None,
                    app: None,
                    default_owner: None,
                    trusted_bots: vec![],
                    own_login: None,
                    web_url: None,
                    ci_link_hosts: vec![],
                    ready_label: "ready-for-agent".into(),
                    in_progress_label: "agent-in-progress".into(),
                },
            )
        };
        assert_eq!(
            tracker("https://api.github.com")
                .graphql_url()
                .unwrap()
                .as_str(),
            "https://api.github.com/graphql"
        );
        assert_eq!(
            tracker("https://ghe.example/api/v3/")
                .graphql_url()
                .unwrap()
                .as_str(),
            "https://ghe.example/api/graphql"
        );
        assert_eq!(
            tracker("https://ghe.example/api/v3")
                .repo_url("acme/infra", &["issues"], &[("labels", "a b")])
                .unwrap()
                .as_str(),
            "https://ghe.example/api/v3/repos/acme/infra/issues?labels=a+b"
        );
    }

    #[track_caller]
    fn check(
        status: u16,
        message: &str,
        remaining: Option<u64>,
        retry_after: Option<u64>,
        expected: &str,
    ) {
        let e = classify(
            status,
            message,
            remaining,
            retry_after.map(Duration::from_secs),
            None,
        );
        let kind = e.kind();
        assert_eq!(
            kind, expected,
            "{status} {message} {remaining:?} {retry_after:?}"
        );
    }

    #[test]
    fn a_403_is_a_rate_limit_only_when_github_says_so() {
        check(
            403,
            "API rate limit exceeded",
            Some(0),
            None,
            "rate_limited",
        );
        check(429, "", Some(0), None, "rate_limited");
        check(
            403,
            "You have exceeded a secondary rate limit",
            Some(4000),
            None,
            "rate_limited",
        );
        check(403, "", None, Some(30), "rate_limited");
        check(429, "", None, None, "rate_limited");
        check(
            403,
            "Must have push access to view collaborator permission.",
            Some(4999),
            None,
            "auth",
        );
        check(401, "Bad credentials", None, None, "auth");
        check(404, "Not Found", Some(4999), None, "not_found");
        check(422, "Validation Failed", None, None, "permanent");
        check(502, "", None, None, "transient");
    }
}
