//! GitHub's JSON, as private typed structs: a field GitHub always sends that
//! is missing or of the wrong type is a `ContractViolation` naming the field
//! (`[3].commit.message: missing field`), never a default. Fields that
//! GitHub's own description marks nullable are `Option`s.
//!
//! Facts from `docs/contracts/github.md` and GitHub's REST description
//! (`issue`, `issue-comment`, `commit`, `check-run`,
//! `combined-commit-status`, `repository`,
//! `repository-collaborator-permission` schemas).

use afk_core::ports::{PortError, PortResult};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde_json::Value;

/// Reads `body` as `T`; `what` names the answer in the error.
pub(super) fn decode<T: DeserializeOwned>(what: &str, body: Value) -> PortResult<T> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let path = e.path().to_string();
        PortError::ContractViolation {
            message: format!(
                "GitHub's {what} does not read as documented: {}{}",
                if path == "." {
                    String::new()
                } else {
                    format!("{path}: ")
                },
                e.into_inner()
            ),
        }
    })
}

/// `open` or `closed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum IssueState {
    Open,
    Closed,
}

/// A label as the issues API lists it: an object with a name (the
/// description also allows a bare string).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Label {
    Object { name: String },
    Name(String),
}

impl Label {
    pub(super) fn into_name(self) -> String {
        match self {
            Label::Object { name } | Label::Name(name) => name,
        }
    }
}

/// An item of `GET /repos/{owner}/{repo}/issues` (pull requests included:
/// they carry `pull_request`).
#[derive(Debug, Deserialize)]
pub(super) struct Issue {
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    pub labels: Vec<Label>,
    pub state: IssueState,
    pub pull_request: Option<IgnoredAny>,
}

/// `GET /repos/{owner}/{repo}/issues/{n}`, and the items of the blocked-by
/// dependencies listing: only the state is read.
#[derive(Debug, Deserialize)]
pub(super) struct IssueStateOnly {
    pub number: u64,
    pub state: IssueState,
}

/// `GET /user`: only the login is read.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct User {
    pub login: String,
    /// `User`, `Bot` or `Organization`.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

/// `GET /repos/{owner}/{repo}/collaborators/{login}/permission`.
#[derive(Debug, Deserialize)]
pub(super) struct Permission {
    pub permission: String,
}

/// `GET /repos/{owner}/{repo}`.
#[derive(Debug, Deserialize)]
pub(super) struct Repository {
    pub default_branch: String,
}

/// An issue comment, as create answers it.
#[derive(Debug, Deserialize)]
pub(super) struct IssueComment {
    pub id: u64,
    pub body: Option<String>,
}

/// An item of `GET /repos/{owner}/{repo}/commits`.
#[derive(Debug, Deserialize)]
pub(super) struct Commit {
    pub sha: String,
    pub commit: GitCommit,
}

#[derive(Debug, Deserialize)]
pub(super) struct GitCommit {
    pub message: String,
    /// Nullable in GitHub's description.
    pub committer: Option<GitActor>,
}

#[derive(Debug, Deserialize)]
pub(super) struct GitActor {
    pub date: Option<String>,
}

/// `GET /repos/{owner}/{repo}/commits/{sha}/check-runs`.
#[derive(Debug, Deserialize)]
pub(super) struct CheckRuns {
    pub check_runs: Vec<CheckRun>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CheckRun {
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub details_url: Option<String>,
    pub html_url: Option<String>,
}

/// `GET /repos/{owner}/{repo}/commits/{sha}/status`.
#[derive(Debug, Deserialize)]
pub(super) struct CombinedStatus {
    pub total_count: u64,
    pub statuses: Vec<CommitStatus>,
}

#[derive(Debug, Deserialize)]
pub(super) struct CommitStatus {
    pub context: String,
    pub state: String,
    pub target_url: Option<String>,
}

/// An error body (`{"message": …}`); absent on some answers.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ErrorBody {
    #[serde(default)]
    pub message: Option<String>,
}

/// A GraphQL answer.
#[derive(Debug, Deserialize)]
pub(super) struct GraphQl<T> {
    pub data: Option<T>,
    #[serde(default)]
    pub errors: Vec<GraphQlError>,
}

#[derive(Debug, Deserialize)]
pub(super) struct GraphQlError {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub message: String,
}

/// The trust query's data.
#[derive(Debug, Deserialize)]
pub(super) struct TrustData {
    pub repository: Option<TrustRepository>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TrustRepository {
    pub issue: Option<TrustIssue>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TrustIssue {
    pub last_edited_at: Option<String>,
    pub timeline_items: Nodes<TimelineItem>,
}

/// The timeline items the trust query asks for, told apart by `__typename`.
#[derive(Debug, Deserialize)]
#[serde(tag = "__typename")]
pub(super) enum TimelineItem {
    LabeledEvent(LabeledEvent),
    RenamedTitleEvent(RenamedTitleEvent),
}

/// `RenamedTitleEvent { createdAt actor { login } }`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RenamedTitleEvent {
    pub created_at: String,
    pub actor: Option<Login>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Login {
    pub login: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Nodes<T> {
    pub nodes: Vec<T>,
}

/// `LabeledEvent { createdAt label { name } actor { __typename login } }`;
/// the actor is nullable (a deleted account).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct LabeledEvent {
    pub created_at: String,
    pub label: Named,
    pub actor: Option<Actor>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Named {
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub(super) struct Actor {
    #[serde(rename = "__typename")]
    pub typename: String,
    pub login: String,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[track_caller]
    fn violation<T: DeserializeOwned + std::fmt::Debug>(body: Value, names: &str) {
        let err = decode::<T>("answer", body).unwrap_err();
        match &err {
            PortError::ContractViolation { message } => {
                assert!(message.contains(names), "{message}");
            }
            other => panic!("not a contract violation: {other:?}"),
        }
    }

    #[test]
    fn a_missing_or_mistyped_field_is_named_never_defaulted() {
        violation::<Vec<Commit>>(
            json!([{"sha": "a", "commit": {"message": "m", "committer": null}}, {"commit": {"message": "m"}}]),
            "[1]: missing field `sha`",
        );
        violation::<Vec<Issue>>(
            json!([{"number": 1, "title": "t", "body": null, "labels": []}]),
            "[0]: missing field `state`",
        );
        violation::<Vec<Issue>>(
            json!([{"number": 1, "title": "t", "body": null, "labels": [], "state": "locked"}]),
            "[0].state: unknown variant `locked`",
        );
        violation::<Repository>(json!({"default_branch": 3}), "default_branch: invalid type");
        violation::<CheckRuns>(json!({"total_count": 0}), "missing field `check_runs`");
    }

    #[test]
    fn nullable_fields_read_as_absent() {
        let c: Vec<IssueComment> =
            decode("comments", json!([{"id": 5, "user": null, "body": null}])).unwrap();
        assert!(c[0].body.is_none());
        let i: Vec<Issue> = decode(
            "issues",
            json!([{"number": 2, "title": "t", "body": null, "labels": [{"name": "x"}, "y"], "state": "open", "pull_request": {}}]),
        )
        .unwrap();
        assert!(i[0].pull_request.is_some());
        let names: Vec<String> = i
            .into_iter()
            .flat_map(|i| i.labels)
            .map(Label::into_name)
            .collect();
        assert_eq!(names, ["x", "y"]);
    }
}
