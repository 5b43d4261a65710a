//! `afk setup labels`: the labels afk uses, created (or checked) on every
//! enrolled repository, so the first ready label an operator applies is
//! one afk reads, and the lock and hand-back labels exist before the first
//! run needs them.

use afk_core::Config;

use crate::github::GitHubTracker;

/// One label afk uses: its name (from the settings), color and meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSpec {
    /// The name, as configured.
    pub name: String,
    /// Six hex digits.
    pub color: &'static str,
    /// What it means, on GitHub's label page.
    pub description: &'static str,
}

/// The labels afk uses, by the names `config` gives them.
pub fn afk_labels(config: &Config) -> Vec<LabelSpec> {
    vec![
        LabelSpec {
            name: config.ready_label.clone(),
            color: "0e8a16",
            description: "afk: an agent may implement this issue (applied by a maintainer)",
        },
        LabelSpec {
            name: config.in_progress_label.clone(),
            color: "fbca04",
            description: "afk: an agent run is in flight (the repository's lock)",
        },
        LabelSpec {
            name: config.ready_for_human_label.clone(),
            color: "d93f0b",
            description: "afk: handed back, a human owns this issue now",
        },
        LabelSpec {
            name: config.stop_label.clone(),
            color: "b60205",
            description: "afk: stop the agent working on this issue",
        },
        LabelSpec {
            name: config.ready_for_review_label.clone(),
            color: "1d76db",
            description: "afk: this run's pull request waits for a human's review",
        },
    ]
}

/// What became of one label on one repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelState {
    /// It was there.
    Exists,
    /// afk created it.
    Created,
    /// It is not there (`--check`: nothing was created).
    Missing,
    /// It could not be read or created: why.
    Failed(String),
}

/// Creates (or, with `check`, only looks for) every label of
/// [`afk_labels`] on every allowlisted repository, in order.
pub async fn labels(
    tracker: &GitHubTracker,
    config: &Config,
    check: bool,
) -> Vec<(String, String, LabelState)> {
    let mut out = Vec::new();
    for repo in &config.allowlist {
        for spec in afk_labels(config) {
            let state = match tracker.label_defined(repo, &spec.name).await {
                Ok(true) => LabelState::Exists,
                Ok(false) if check => LabelState::Missing,
                Ok(false) => match tracker
                    .create_label(repo, &spec.name, spec.color, spec.description)
                    .await
                {
                    Ok(true) => LabelState::Created,
                    Ok(false) => LabelState::Exists,
                    Err(e) => LabelState::Failed(e.to_string()),
                },
                Err(e) => LabelState::Failed(e.to_string()),
            };
            out.push((repo.clone(), spec.name, state));
        }
    }
    out
}

/// The report, one line per label, and whether the command failed (a label
/// that could not be read or created; with `check`, one missing).
pub fn render(rows: &[(String, String, LabelState)]) -> (String, bool) {
    let mut text = String::new();
    let mut failed = false;
    for (repo, label, state) in rows {
        let said = match state {
            LabelState::Exists => "exists".to_owned(),
            LabelState::Created => "created".to_owned(),
            LabelState::Missing => {
                failed = true;
                "MISSING (run `afk setup labels` without --check to create it)".to_owned()
            }
            LabelState::Failed(why) => {
                failed = true;
                format!("FAILED: {why}")
            }
        };
        text.push_str(&format!("{repo}: {label}: {said}\n"));
    }
    (text, failed)
}
