//! Batched reads: the ticks' per-repository listings as one GraphQL request
//! for up to [`BATCH`] repositories (aliases `r0`, `r1`, …), so a quiet tick
//! over R repositories costs ⌈R/25⌉ requests instead of 2·R.
//!
//! Isolation (`docs/architecture.md`, `afk-adapters`): a repository GitHub
//! cannot resolve fails alone (its alias is `null` with an error naming its
//! path, the rest of the answer stands; `docs/contracts/github.md`, GraphQL
//! answers); a batch whose whole request fails (a timeout, a 5xx, an answer
//! over the size cap) is split in halves and each half asked again, down to
//! single repositories, so one bad repository costs O(log R) extra requests
//! and never the others' reads. A rate limit or an auth failure is not split:
//! it would fail every half alike.
//!
//! This file is long because the batched read carries its documents, its
//! wire shapes, the split, and the follow-up pages (issues, labels, blocker
//! states) that keep it exact.
//!
//! Facts from GitHub's GraphQL schema (`@octokit/graphql-schema`, which the
//! conformance test validates every document against): `Repository.issues`
//! takes `first`, `after`, `labels`, `states`, `orderBy`; a label filter
//! matches issues with any of the names; `Query.rateLimit` reports `cost`,
//! `limit`, `remaining` and `resetAt`.

use std::fmt::Write as _;

use afk_core::Timestamp;
use afk_core::ports::{PortError, PortResult, RateBudget, RepoScan, TrackedIssue};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{GitHubTracker, lock, next_page, wire};

/// Repositories per request.
pub const BATCH: usize = 25;
/// Ready issues per repository in the batched read (more are paged per
/// repository).
const READY_PAGE: u32 = 30;
/// Locked issues per repository in the batched read (normally one).
const LOCKED_PAGE: u32 = 10;

/// An issue's labels: the first page, and where the next one starts (an
/// issue with more is read to the end: its stop label may be past the
/// first page).
const LABELS: &str =
    "labels(first: 100) { totalCount pageInfo { hasNextPage endCursor } nodes { name } }";
const READY_FRAGMENT: &str = "fragment Ready on Issue { number title body state LABELS }";
const LOCKED_FRAGMENT: &str = "fragment Locked on Issue { number title state LABELS }";

/// The rest of one issue's labels, after the first page.
pub const LABELS_QUERY: &str = "query AfkLabels($owner: String!, $name: String!, $number: Int!, $after: String) { \
     rateLimit { cost limit remaining resetAt } \
     repository(owner: $owner, name: $name) { issue(number: $number) { \
     labels(first: 100, after: $after) { totalCount pageInfo { hasNextPage endCursor } nodes { name } } } } }";

/// The batched document for `n` repositories; `ready` adds the ready
/// issues (the poller) to the locked ones (both ticks).
pub fn scan_document(n: usize, ready: bool) -> String {
    let mut vars = String::from("$locked: [String!]");
    if ready {
        vars.push_str(", $ready: [String!]");
    }
    let mut repos = String::new();
    for i in 0..n {
        let _ = write!(vars, ", $o{i}: String!, $n{i}: String!");
        let _ = write!(
            repos,
            " r{i}: repository(owner: $o{i}, name: $n{i}) {{ ...Scan }}"
        );
    }
    let order = "orderBy: {field: CREATED_AT, direction: ASC}";
    let page = "totalCount pageInfo { hasNextPage endCursor }";
    let ready_part = if ready {
        format!(
            " ready: issues(first: {READY_PAGE}, states: [OPEN], labels: $ready, {order}) {{ {page} nodes {{ ...Ready }} }}"
        )
    } else {
        String::new()
    };
    let mut doc = format!(
        "query AfkScan({vars}) {{ rateLimit {{ cost limit remaining resetAt }}{repos} }} \
         fragment Scan on Repository {{ defaultBranchRef {{ name }}{ready_part} \
         locked: issues(first: {LOCKED_PAGE}, labels: $locked, {order}) {{ {page} nodes {{ ...Locked }} }} }} {LOCKED_FRAGMENT}"
    );
    if ready {
        doc.push(' ');
        doc.push_str(READY_FRAGMENT);
    }
    doc.replace("LABELS", LABELS)
}

/// The follow-up page of one repository's listing.
pub fn page_document(ready: bool) -> String {
    let (fragment, states) = if ready {
        (READY_FRAGMENT, "states: [OPEN], ")
    } else {
        (LOCKED_FRAGMENT, "")
    };
    let name = if ready { "Ready" } else { "Locked" };
    format!(
        "query AfkIssuesPage($owner: String!, $name: String!, $labels: [String!], $after: String) {{ \
         rateLimit {{ cost limit remaining resetAt }} \
         repository(owner: $owner, name: $name) {{ issues(first: 100, after: $after, {states}labels: $labels, \
         orderBy: {{field: CREATED_AT, direction: ASC}}) {{ totalCount pageInfo {{ hasNextPage endCursor }} \
         nodes {{ ...{name} }} }} }} }} {fragment}"
    )
    .replace("LABELS", LABELS)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rate {
    cost: u64,
    limit: u64,
    remaining: u64,
    reset_at: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Labels {
    total_count: u64,
    page_info: PageInfo,
    nodes: Vec<LabelNode>,
}

#[derive(Debug, Deserialize)]
struct LabelNode {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
enum State {
    Open,
    Closed,
}

#[derive(Debug, Deserialize)]
struct IssueNode {
    number: u64,
    title: String,
    #[serde(default)]
    body: Option<String>,
    state: State,
    labels: Labels,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct IssuePage {
    page_info: PageInfo,
    nodes: Vec<IssueNode>,
}

#[derive(Debug, Deserialize)]
struct BranchRef {
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RepoNode {
    default_branch_ref: Option<BranchRef>,
    ready: Option<IssuePage>,
    locked: IssuePage,
}

#[derive(Debug, Deserialize)]
struct PageData {
    repository: Option<PageRepo>,
}

#[derive(Debug, Deserialize)]
struct PageRepo {
    issues: IssuePage,
}

/// The issue as the tracker port reports it, with where the rest of its
/// labels starts when it has more than a page (read after, by
/// [`GitHubTracker::rest_of_labels`]).
fn tracked(repo: &str, node: IssueNode) -> (TrackedIssue, Option<String>) {
    let more = (node.labels.total_count > node.labels.nodes.len() as u64)
        .then_some(node.labels.page_info)
        .filter(|p| p.has_next_page)
        .and_then(|p| p.end_cursor);
    let issue = TrackedIssue {
        repo: repo.to_owned(),
        number: node.number,
        title: node.title,
        body: node.body.unwrap_or_default(),
        labels: node.labels.nodes.into_iter().map(|l| l.name).collect(),
        open: matches!(node.state, State::Open),
    };
    (issue, more)
}

/// A failed batch worth asking again in halves: a failure that one
/// repository can cause (a timeout, a 5xx, an answer too big).
fn splittable(e: &PortError) -> bool {
    matches!(
        e,
        PortError::Transient { .. }
            | PortError::Permanent { .. }
            | PortError::ContractViolation { .. }
    )
}

/// The port error for GraphQL errors that concern the whole request.
pub(super) fn request_error(errors: &[wire::GraphQlError]) -> PortError {
    if errors
        .iter()
        .any(|e| e.kind.as_deref() == Some("RATE_LIMITED"))
    {
        return PortError::RateLimited { retry_after: None };
    }
    let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
    PortError::Permanent {
        message: format!("GitHub GraphQL errors: {}", messages.join("; ")),
    }
}

#[derive(Debug, Deserialize)]
struct Answer {
    data: Option<Map<String, Value>>,
    #[serde(default)]
    errors: Vec<AliasError>,
}

/// The errors without their paths.
fn plain(errors: Vec<AliasError>) -> Vec<wire::GraphQlError> {
    errors
        .into_iter()
        .map(|e| wire::GraphQlError {
            kind: e.kind,
            message: e.message,
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct AliasError {
    #[serde(rename = "type")]
    kind: Option<String>,
    message: String,
    #[serde(default)]
    path: Vec<Value>,
}

/// What GitHub said about one blocker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BlockerState {
    /// Open: it blocks.
    Open,
    /// Closed: it no longer blocks.
    Closed,
    /// No such issue or pull request (GitHub's NOT_FOUND): it blocks nothing.
    Missing,
    /// It could not be read (another error, or no answer): it blocks, since
    /// an issue must never start while a blocker may be open.
    Unreadable(String),
}

/// The document asking the state of `numbers` (at most 100) in one
/// repository: each as `issueOrPullRequest` (a "Blocked by #N" may name a
/// pull request), aliased `n0`, `n1`, …. The two `state` fields have
/// different types (`IssueState`, `PullRequestState`), so GraphQL requires
/// them under different names.
pub fn states_document(numbers: &[u64]) -> String {
    let mut fields = String::new();
    for (i, n) in numbers.iter().enumerate() {
        let _ = write!(
            fields,
            " n{i}: issueOrPullRequest(number: {n}) {{ ... on Issue {{ issueState: state }} ... on PullRequest {{ pullState: state }} }}"
        );
    }
    format!(
        "query AfkStates($owner: String!, $name: String!) {{ rateLimit {{ cost limit remaining resetAt }} \
         repository(owner: $owner, name: $name) {{{fields} }} }}"
    )
}

impl GitHubTracker {
    /// Whether each of `numbers` is open (`None`: it does not exist), a
    /// hundred per request.
    pub(super) async fn states(
        &self,
        repo: &str,
        numbers: &[u64],
    ) -> PortResult<Vec<(u64, BlockerState)>> {
        let (owner, name) = self.owner_name(repo)?;
        let mut out = Vec::with_capacity(numbers.len());
        // GraphQL's Int is 32 bits: a larger number names no issue.
        let (asked, too_big): (Vec<u64>, Vec<u64>) =
            numbers.iter().partition(|n| i32::try_from(**n).is_ok());
        out.extend(too_big.into_iter().map(|n| (n, BlockerState::Missing)));
        for chunk in asked.chunks(100) {
            let body = self
                .graphql(
                    &states_document(chunk),
                    json!({"owner": owner, "name": name}),
                )
                .await?;
            let answer: Answer = wire::decode("states answer", body)?;
            let alias_errors: Vec<(String, Option<String>, String)> = answer
                .errors
                .iter()
                .filter_map(|e| {
                    let alias = e.path.get(1).and_then(Value::as_str)?;
                    Some((alias.to_owned(), e.kind.clone(), e.message.clone()))
                })
                .collect();
            let Some(mut repository) = answer
                .data
                .and_then(|mut d| d.remove("repository"))
                .and_then(|r| match r {
                    Value::Object(m) => Some(m),
                    _ => None,
                })
            else {
                let errors = plain(answer.errors);
                return Err(
                    if errors
                        .iter()
                        .all(|e| e.kind.as_deref() == Some("NOT_FOUND"))
                    {
                        PortError::NotFound {
                            what: format!("repository {repo}"),
                        }
                    } else {
                        request_error(&errors)
                    },
                );
            };
            for (i, n) in chunk.iter().enumerate() {
                let alias = format!("n{i}");
                let state = repository.remove(&alias).and_then(|v| {
                    v.get("issueState")
                        .or_else(|| v.get("pullState"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                });
                let errors: Vec<&(String, Option<String>, String)> = alias_errors
                    .iter()
                    .filter(|(a, _, _)| *a == alias)
                    .collect();
                // Fail closed: only GitHub's own NOT_FOUND (and nothing
                // else) says a blocker does not exist; any other error, or a
                // null without one, is a blocker that could not be read.
                out.push((
                    *n,
                    match state {
                        Some(s) => {
                            if s == "OPEN" {
                                BlockerState::Open
                            } else {
                                BlockerState::Closed
                            }
                        }
                        None if !errors.is_empty()
                            && errors
                                .iter()
                                .all(|(_, k, _)| k.as_deref() == Some("NOT_FOUND")) =>
                        {
                            BlockerState::Missing
                        }
                        None => BlockerState::Unreadable(
                            errors
                                .iter()
                                .map(|(_, _, m)| m.as_str())
                                .collect::<Vec<_>>()
                                .join("; "),
                        ),
                    },
                ));
            }
        }
        Ok(out)
    }

    /// One GraphQL request, its `rateLimit` recorded.
    pub(super) async fn graphql(&self, query: &str, variables: Value) -> PortResult<Value> {
        self.graphql_within(query, variables, None, true).await
    }

    /// [`Self::graphql`] with a timeout of its own.
    async fn graphql_within(
        &self,
        query: &str,
        variables: Value,
        timeout: Option<std::time::Duration>,
        retry: bool,
    ) -> PortResult<Value> {
        let body = json!({"query": query, "variables": variables});
        let url = self.graphql_url()?;
        // A GraphQL query is a read: safe to retry. A batch of several
        // repositories is not retried whole: it is asked again in halves.
        let page = if retry {
            self.http
                .retrying(|| {
                    self.request_within(Method::POST, url.clone(), Some(&body), &[], timeout)
                })
                .await?
        } else {
            self.request_within(Method::POST, url, Some(&body), &[], timeout)
                .await?
        };
        if let Some(rate) = page.body.pointer("/data/rateLimit").cloned()
            && let Ok(rate) = serde_json::from_value::<Rate>(rate)
        {
            let mut caches = lock(&self.caches);
            let spent = caches.budget.map_or(0, |b| b.cost);
            caches.budget = Some(RateBudget {
                cost: spent + rate.cost,
                remaining: rate.remaining,
                limit: rate.limit,
                reset_at: Timestamp::parse_rfc3339(&rate.reset_at).ok(),
            });
        }
        Ok(page.body)
    }

    /// One batch, split in halves when its request fails as a whole.
    pub(super) async fn scan_split(
        &self,
        repos: &[String],
        ready: Option<&str>,
        locked: &str,
    ) -> Vec<PortResult<RepoScan>> {
        // (where the part starts in `repos`, the part)
        let mut stack = vec![(0, repos)];
        let mut done: Vec<(usize, PortResult<RepoScan>)> = Vec::new();
        while let Some((offset, part)) = stack.pop() {
            // Only a batch that was never split is retried: a part of a
            // failed batch has had its retry (the split itself).
            let whole = part.len() == repos.len();
            match self.scan_batch(part, ready, locked, whole).await {
                Ok(results) => {
                    done.extend(
                        results
                            .into_iter()
                            .enumerate()
                            .map(|(i, r)| (offset + i, r)),
                    );
                }
                Err(e) if part.len() > 1 && splittable(&e) && !self.http.past_deadline() => {
                    tracing::warn!(
                        repositories = part.len(),
                        error = %e,
                        "a batched read failed as a whole; asking again in halves"
                    );
                    let half = part.len() / 2;
                    let (a, b) = part.split_at(half);
                    stack.push((offset + half, b));
                    stack.push((offset, a));
                }
                Err(e) => done.extend((0..part.len()).map(|i| (offset + i, Err(e.clone())))),
            }
        }
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, r)| r).collect()
    }

    /// One request for `repos`: `Err` when the request failed as a whole,
    /// else one result per repository.
    async fn scan_batch(
        &self,
        repos: &[String],
        ready: Option<&str>,
        locked: &str,
        whole: bool,
    ) -> PortResult<Vec<PortResult<RepoScan>>> {
        let mut names = Vec::with_capacity(repos.len());
        let mut vars = Map::new();
        vars.insert("locked".into(), json!([locked]));
        if let Some(label) = ready {
            vars.insert("ready".into(), json!([label]));
        }
        // Names are resolved first: a repository named without an owner
        // fails alone, and the batch asks only for the rest.
        let mut asked = Vec::new();
        let mut results: Vec<Option<PortResult<RepoScan>>> = Vec::new();
        for repo in repos {
            match self.owner_name(repo) {
                Ok((owner, name)) => {
                    let i = asked.len();
                    vars.insert(format!("o{i}"), json!(owner));
                    vars.insert(format!("n{i}"), json!(name));
                    asked.push(results.len());
                    names.push(repo.as_str());
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if !asked.is_empty() {
            let doc = scan_document(asked.len(), ready.is_some());
            // A batch of several repositories may take an eighth of the time
            // left: when one slow repository stalls it, the chain of halves
            // that holds it (at most five deep for 25) takes under half the
            // time left (1 − (7/8)⁵ ≈ 0.49), and the rest of the tick (trust,
            // dispatch) keeps the other half.
            let timeout = self.http.time_left().map(|left| left / 8);
            let body = self
                .graphql_within(
                    &doc,
                    Value::Object(vars),
                    timeout,
                    whole && asked.len() == 1,
                )
                .await?;
            let answer: Answer = wire::decode("batched read answer", body)?;
            let Some(mut data) = answer.data else {
                let errors = plain(answer.errors);
                return Err(request_error(&errors));
            };
            for (i, slot) in asked.iter().enumerate() {
                let alias = format!("r{i}");
                let repo = names[i];
                let error = answer
                    .errors
                    .iter()
                    .find(|e| e.path.first().and_then(Value::as_str) == Some(alias.as_str()));
                let node = data.remove(&alias).unwrap_or(Value::Null);
                let result = if node.is_null() {
                    Err(match error {
                        Some(e) if e.kind.as_deref() == Some("NOT_FOUND") => PortError::NotFound {
                            what: format!("repository {repo} ({})", e.message),
                        },
                        Some(e) => PortError::Permanent {
                            message: format!("GitHub could not read {repo}: {}", e.message),
                        },
                        None => PortError::NotFound {
                            what: format!("repository {repo}"),
                        },
                    })
                } else {
                    match wire::decode::<RepoNode>(&format!("batched read of {repo}"), node) {
                        Ok(node) => self.finish(repo, node, ready, locked).await,
                        Err(e) => Err(e),
                    }
                };
                results[*slot] = Some(result);
            }
        }
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(PortError::ContractViolation {
                        message: "a repository of the batch was not answered".into(),
                    })
                })
            })
            .collect())
    }

    /// One repository's answer, with any further pages read.
    async fn finish(
        &self,
        repo: &str,
        node: RepoNode,
        ready: Option<&str>,
        locked: &str,
    ) -> PortResult<RepoScan> {
        if let Some(branch) = node.default_branch_ref {
            lock(&self.caches)
                .default_branch
                .insert(repo.to_ascii_lowercase(), branch.name);
        }
        let mut scan = RepoScan::default();
        if let (Some(page), Some(label)) = (node.ready, ready) {
            scan.ready = self.rest_of(repo, page, label, true).await?;
        }
        scan.locked = self.rest_of(repo, node.locked, locked, false).await?;
        Ok(scan)
    }

    /// The issues of a first page and of every page after it.
    async fn rest_of(
        &self,
        repo: &str,
        first: IssuePage,
        label: &str,
        ready: bool,
    ) -> PortResult<Vec<TrackedIssue>> {
        let mut issues: Vec<(TrackedIssue, Option<String>)> =
            first.nodes.into_iter().map(|n| tracked(repo, n)).collect();
        let mut info = first.page_info;
        let mut pages = 1;
        while info.has_next_page {
            next_page(&mut pages, &format!("{repo}'s issues labelled {label}"))?;
            let (owner, name) = self.owner_name(repo)?;
            let body = self
                .graphql(
                    &page_document(ready),
                    json!({"owner": owner, "name": name, "labels": [label], "after": info.end_cursor}),
                )
                .await?;
            let answer: wire::GraphQl<PageData> = wire::decode("issues page answer", body)?;
            if !answer.errors.is_empty() {
                return Err(request_error(&answer.errors));
            }
            let Some(repository) = answer.data.and_then(|d| d.repository) else {
                return Err(PortError::NotFound {
                    what: format!("repository {repo}"),
                });
            };
            issues.extend(
                repository
                    .issues
                    .nodes
                    .into_iter()
                    .map(|n| tracked(repo, n)),
            );
            info = repository.issues.page_info;
        }
        let mut out = Vec::with_capacity(issues.len());
        for (mut issue, more) in issues {
            if let Some(after) = more {
                let rest = self.rest_of_labels(repo, issue.number, after).await?;
                issue.labels.extend(rest);
            }
            out.push(issue);
        }
        Ok(out)
    }

    /// The labels of `number` after the cursor `after`, every page.
    async fn rest_of_labels(
        &self,
        repo: &str,
        number: u64,
        after: String,
    ) -> PortResult<Vec<String>> {
        #[derive(Debug, Deserialize)]
        struct Data {
            repository: Option<LabelsRepo>,
        }
        #[derive(Debug, Deserialize)]
        struct LabelsRepo {
            issue: Option<LabelsIssue>,
        }
        #[derive(Debug, Deserialize)]
        struct LabelsIssue {
            labels: Labels,
        }
        let (owner, name) = self.owner_name(repo)?;
        let mut labels = Vec::new();
        let mut after = Some(after);
        let mut pages = 0;
        while let Some(cursor) = after.take() {
            next_page(&mut pages, &format!("the labels of {repo}#{number}"))?;
            let body = self
                .graphql(
                    LABELS_QUERY,
                    json!({"owner": owner, "name": name, "number": number, "after": cursor}),
                )
                .await?;
            let answer: wire::GraphQl<Data> = wire::decode("labels answer", body)?;
            let Some(page) = answer
                .data
                .and_then(|d| d.repository)
                .and_then(|r| r.issue)
                .map(|i| i.labels)
            else {
                return Err(request_error(&answer.errors));
            };
            labels.extend(page.nodes.into_iter().map(|l| l.name));
            after = Some(page.page_info)
                .filter(|p| p.has_next_page)
                .and_then(|p| p.end_cursor);
        }
        Ok(labels)
    }
}
