//! The deploy stage: the Woodpecker pipeline for a commit (facts in
//! `docs/contracts/ci-and-notifications.md`, Woodpecker).
//!
//! Woodpecker's pipeline listing has no commit filter, so the stage lists
//! push pipelines on the default branch (newest first, at most 50 a page) and
//! pages on until it finds the commit's, or the pipelines are older than the
//! commit, or the listing ends; past its page cap it is an error, never "no
//! pipeline" read from part of the listing. A restarted
//! pipeline gets a new, higher number for the same commit: the highest number
//! wins. A repository Woodpecker does not know is a stage that does not apply
//! (`Ok(None)`), not a pending one.

use std::collections::BTreeMap;
use std::sync::Mutex;

use afk_core::ci::{CommitRef, Stage, StageReport, StageVerdict};
use afk_core::ports::{PortError, PortResult};
use afk_loop::ports::StageProbe;
use async_trait::async_trait;
use reqwest::Url;
use serde_json::Value;

use crate::http::{Http, Secret, body_excerpt};

/// Pages read at most when looking for a commit's pipeline.
const MAX_PAGES: u32 = 20;
/// Woodpecker's page size cap.
const PER_PAGE: usize = 50;
/// Pipelines created this long before the commit cannot be for it (room for
/// clock skew between the forge and Woodpecker).
const SKEW_SECONDS: i64 = 3600;

/// How afk reaches Woodpecker.
#[derive(Debug, Clone)]
pub struct WoodpeckerSettings {
    /// Server base URL (the API is under `/api`).
    pub url: String,
    /// Personal access token.
    pub token: Secret,
    /// Owner for bare repository names.
    pub default_owner: Option<String>,
}

/// The Woodpecker deploy stage.
#[derive(Debug)]
pub struct WoodpeckerStage {
    http: Http,
    settings: WoodpeckerSettings,
    repo_ids: Mutex<BTreeMap<String, Option<u64>>>,
}

/// What a pipeline status means for the stage.
pub fn pipeline_verdict(status: &str) -> StageVerdict {
    match status {
        "success" | "skipped" => StageVerdict::Success,
        "failure" | "error" | "killed" | "declined" | "canceled" => StageVerdict::Failure,
        // created, pending, running, blocked (waits on a human), and anything
        // newer than this build knows.
        _ => StageVerdict::Pending,
    }
}

impl WoodpeckerStage {
    /// The stage.
    pub fn new(http: Http, settings: WoodpeckerSettings) -> Self {
        WoodpeckerStage {
            http,
            settings,
            repo_ids: Mutex::new(BTreeMap::new()),
        }
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> PortResult<Url> {
        crate::http::join_url(&self.settings.url, segments, query, "AFK_WOODPECKER_URL")
    }

    async fn get(&self, url: Url) -> PortResult<Option<Value>> {
        self.http
            .retrying(|| async {
                let token = self.settings.token.read()?.ok_or_else(|| PortError::Auth {
                    message: "no Woodpecker token configured (AFK_WOODPECKER_TOKEN or AFK_WOODPECKER_TOKEN_FILE)".into(),
                })?;
                let request = self
                    .http
                    .client()
                    .get(url.clone())
                    .header("Authorization", format!("Bearer {token}"));
                let response = self.http.send(request).await?;
                let status = response.status().as_u16();
                match status {
                    200 => response.json::<Value>().await.map(Some).map_err(|e| PortError::ContractViolation {
                        message: format!("Woodpecker answered with a body that is not JSON: {e}"),
                    }),
                    404 => Ok(None),
                    401 | 403 => Err(PortError::Auth {
                        message: format!("Woodpecker refused the token ({status})"),
                    }),
                    429 => Err(PortError::RateLimited { retry_after: None }),
                    500..=599 => Err(PortError::Transient {
                        message: format!("Woodpecker failed (HTTP {status})"),
                    }),
                    _ => Err(PortError::Permanent {
                        message: format!("Woodpecker answered HTTP {status}: {}", body_excerpt(response, 200).await),
                    }),
                }
            })
            .await
    }

    async fn repo_id(&self, repo: &str) -> PortResult<Option<u64>> {
        let (owner, name) = match repo.trim().split_once('/') {
            Some((o, n)) => (o.to_owned(), n.to_owned()),
            None => match self.settings.default_owner.as_deref() {
                Some(o) => (o.to_owned(), repo.trim().to_owned()),
                None => {
                    return Err(PortError::Permanent {
                        message: format!("repository {repo:?} has no owner: set AFK_GITHUB_OWNER"),
                    });
                }
            },
        };
        let key = format!("{owner}/{name}").to_ascii_lowercase();
        if let Some(id) = self
            .repo_ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
        {
            return Ok(*id);
        }
        let found = self
            .get(self.url(&["api", "repos", "lookup", &owner, &name], &[])?)
            .await?;
        let id = match found {
            Some(v) => Some(
                v["id"]
                    .as_u64()
                    .ok_or_else(|| PortError::ContractViolation {
                        message: "Woodpecker repository lookup answered without an id".into(),
                    })?,
            ),
            None => None,
        };
        self.repo_ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, id);
        Ok(id)
    }
}

#[async_trait]
impl StageProbe for WoodpeckerStage {
    fn stage(&self) -> Stage {
        Stage::Deploy
    }

    async fn probe(&self, commit: &CommitRef) -> PortResult<Option<StageReport>> {
        let Some(id) = self.repo_id(&commit.repo).await? else {
            return Ok(None);
        };
        let id_text = id.to_string();
        let oldest_relevant = commit.committed_at.map(|t| t.unix_seconds() - SKEW_SECONDS);
        let mut best: Option<(u64, String)> = None;
        let mut read_to_the_end = false;
        for page in 1..=MAX_PAGES {
            let page_text = page.to_string();
            let per_page = PER_PAGE.to_string();
            let url = self.url(
                &["api", "repos", &id_text, "pipelines"],
                &[
                    ("branch", &commit.branch),
                    ("event", "push"),
                    ("page", &page_text),
                    ("perPage", &per_page),
                ],
            )?;
            let list = self.get(url).await?.unwrap_or(Value::Array(Vec::new()));
            let Some(pipelines) = list.as_array() else {
                return Err(PortError::ContractViolation {
                    message: "Woodpecker pipeline listing is not an array".into(),
                });
            };
            for p in pipelines {
                if p["commit"].as_str() == Some(commit.sha.as_str())
                    && let Some(number) = p["number"].as_u64()
                    && best.as_ref().is_none_or(|(n, _)| number > *n)
                {
                    best = Some((number, p["status"].as_str().unwrap_or("").to_owned()));
                }
            }
            if best.is_some() {
                // Newest first: the commit's newest pipeline (a restart's
                // higher number included) is on the first page it shows on.
                read_to_the_end = true;
                break;
            }
            let older_than_commit = match (
                oldest_relevant,
                pipelines.last().and_then(|p| p["created"].as_i64()),
            ) {
                (Some(limit), Some(created)) => created < limit,
                _ => false,
            };
            if pipelines.len() < PER_PAGE || older_than_commit {
                read_to_the_end = true;
                break;
            }
        }
        if !read_to_the_end {
            // Never "no pipeline" from part of the listing.
            return Err(PortError::Permanent {
                message: format!(
                    "Woodpecker lists more than {MAX_PAGES} pages of {PER_PAGE} pipelines newer than commit {} without it; refusing to guess its verdict",
                    commit.sha
                ),
            });
        }
        let base = self.settings.url.trim_end_matches('/');
        Ok(Some(match best {
            Some((number, status)) => StageReport {
                stage: Stage::Deploy,
                verdict: pipeline_verdict(&status),
                link: Some(format!("{base}/repos/{id}/pipeline/{number}")),
                detail: format!("Woodpecker pipeline #{number} is {status}"),
            },
            None => StageReport {
                stage: Stage::Deploy,
                verdict: StageVerdict::None,
                link: None,
                detail: "no Woodpecker pipeline for the commit yet".into(),
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_woodpecker_status_maps() {
        let table = [
            ("success", StageVerdict::Success),
            ("skipped", StageVerdict::Success),
            ("failure", StageVerdict::Failure),
            ("error", StageVerdict::Failure),
            ("killed", StageVerdict::Failure),
            ("declined", StageVerdict::Failure),
            ("canceled", StageVerdict::Failure),
            ("created", StageVerdict::Pending),
            ("pending", StageVerdict::Pending),
            ("running", StageVerdict::Pending),
            ("blocked", StageVerdict::Pending),
            ("something-new", StageVerdict::Pending),
        ];
        for (status, verdict) in table {
            assert_eq!(pipeline_verdict(status), verdict, "{status}");
        }
    }
}
