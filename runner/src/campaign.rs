//! A campaign, validated: everything `afk run` needs is read and checked
//! before any agent starts (checklist diagnostics, the mission brief, the
//! run config's keys, the agent program, the prompt template), and the
//! prompts and environments of items are built here.
//!
//! Everything is relative to the campaign directory: the checklist, the
//! mission brief, `config/run_config.json`, `runs/` (one directory per tier
//! and item), `.afk/` (state) and `findings/`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use checklist::sut::{self, Checklist, Item, Status};
use serde_json::Value;

use crate::Error;
use crate::agent::{AgentRun, Runtime};
use crate::decide::{self, TemplateError};

/// The prompt template shipped with afk for one item.
pub const ITEM_TEMPLATE: &str = include_str!("../templates/item-prompt.md");
/// The prompt template for a tier report.
pub const TIER_TEMPLATE: &str = include_str!("../templates/tier-report-prompt.md");
/// The prompt template for infinite-mode synthesis.
pub const SYNTHESIS_TEMPLATE: &str = include_str!("../templates/synthesis-prompt.md");

/// The keys `run_config.json` must have (dotted for nesting).
pub const REQUIRED_CONFIG_KEYS: [&str; 7] = [
    "sut_name",
    "sut_version",
    "access.instructions",
    "access.credentials_key",
    "datasets",
    "environments",
    "success_criteria",
];

/// Finite: stop when no to-do row is left. Infinite: ask for new rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run the backlog as written.
    Finite,
    /// When the backlog is done, ask an agent for new rows.
    Infinite,
}

impl Mode {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Finite => "finite",
            Mode::Infinite => "infinite",
        }
    }
}

/// `afk run`'s settings, as typed values (the binary parses the flags).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The backlog, relative to the campaign directory.
    pub checklist: PathBuf,
    /// The mission brief every prompt starts with.
    pub mission_brief: PathBuf,
    /// The campaign settings file.
    pub config: PathBuf,
    /// Finite or infinite.
    pub mode: Mode,
    /// Rows per round (at least 1).
    pub batch_size: usize,
    /// Which agent runs.
    pub runtime: Runtime,
    /// How long one agent may run.
    pub timeout: Duration,
    /// Infinite mode stops after this many rounds in a row that add nothing.
    pub idle_rounds: u32,
    /// A prompt template for items instead of the shipped one.
    pub prompt_template: Option<PathBuf>,
    /// Print the next round and change nothing.
    pub dry_run: bool,
    /// Tidy up after a run that died before starting.
    pub resume: bool,
    /// The afk program agents may call (`afk finding add`).
    pub afk_bin: String,
    /// The PATH the agent program is looked up on.
    pub path_var: Option<String>,
    /// Dollars the run may spend (`--budget-usd`), counted from what the
    /// agents report.
    pub budget_usd: Option<f64>,
}

/// Checks `run_config.json`: valid JSON, an object, every required key
/// present and not null. The error names the first missing key.
///
/// # Errors
/// A message naming the file and the key.
pub fn validate_config(text: &str, path: &Path) -> Result<Value, String> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    if !value.is_object() {
        return Err(format!("{} must hold a JSON object", path.display()));
    }
    for key in REQUIRED_CONFIG_KEYS {
        let found = key
            .split('.')
            .try_fold(&value, |v, part| v.get(part))
            .is_some_and(|v| !v.is_null());
        if !found {
            return Err(format!(
                "{} has no {key:?} (required: {})",
                path.display(),
                REQUIRED_CONFIG_KEYS.join(", ")
            ));
        }
    }
    Ok(value)
}

/// Reads and parses the checklist; any diagnostic is an error listing them all.
///
/// # Errors
/// `Input` naming the file and every problem with its line.
pub fn load_checklist(path: &Path) -> Result<(String, Checklist), Error> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::input(format!("cannot read the checklist {}: {e}", path.display())))?;
    let (checklist, diagnostics) = sut::parse(&text);
    if !diagnostics.is_empty() {
        let lines: Vec<String> = diagnostics
            .iter()
            .map(|d| format!("  {}:{}: {}", path.display(), d.line, d.message))
            .collect();
        return Err(Error::input(format!(
            "the checklist has {} problem(s); nothing was started:\n{}",
            diagnostics.len(),
            lines.join("\n")
        )));
    }
    if checklist.tiers.is_empty() {
        return Err(Error::input(format!(
            "{} has no tier (a `## Tier <n>: <name>` heading)",
            path.display()
        )));
    }
    Ok((text, checklist))
}

/// Everything a run needs, validated before any agent starts.
#[derive(Debug)]
pub struct Campaign {
    /// The campaign directory.
    pub root: PathBuf,
    /// The checklist's full path.
    pub checklist_path: PathBuf,
    /// The mission brief's text.
    pub brief: String,
    /// The agent.
    pub runtime: Runtime,
    /// The item prompt template.
    pub template: String,
    /// Rows per round.
    pub batch_size: usize,
    /// One agent's time limit.
    pub timeout: Duration,
    /// Finite or infinite.
    pub mode: Mode,
    /// See [`Settings::idle_rounds`].
    pub idle_rounds: u32,
    /// See [`Settings::afk_bin`].
    pub afk_bin: String,
    /// See [`Settings::budget_usd`].
    pub budget_usd: Option<f64>,
}

/// `path` with symlinks followed, when it stays inside the campaign `root`:
/// a checklist (or run directory) linked to a target inside the campaign is
/// used there, and replaced there; one linked outside is refused, so an
/// atomic replace never turns a link into a file or writes outside.
///
/// # Errors
/// `Input` naming the path when it leads outside the campaign.
pub fn inside(root: &Path, path: &Path, what: &str) -> Result<PathBuf, Error> {
    let Ok(real) = std::fs::canonicalize(path) else {
        // Missing: reading it reports that, naming the file.
        return Ok(path.to_owned());
    };
    let root_real = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_owned());
    if real.starts_with(&root_real) {
        Ok(real)
    } else {
        Err(Error::input(format!(
            "{what} {} leads to {}, outside the campaign {}: refused",
            path.display(),
            real.display(),
            root_real.display()
        )))
    }
}

fn read_text(what: &str, path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::input(format!("cannot read the {what} {}: {e}", path.display())))
}

/// Refuses a campaign where a place afk writes leads out of it: `.afk`,
/// `findings/`, `runs/` and `.afk/synthesis/` linked elsewhere, or a lock
/// file (`.afk/lock`, `findings/.lock`) that is a link. Creates nothing.
/// (Tier and item directories are checked as they are created, one
/// component at a time.)
///
/// # Errors
/// `Input` naming the link.
pub fn refuse_links_out(root: &Path) -> Result<(), Error> {
    let afk = crate::state::state_dir(root);
    let findings = root.join("findings");
    for dir in [&afk, &afk.join("synthesis"), &findings, &root.join("runs")] {
        crate::files::check_dir_inside(root, dir)
            .map_err(|e| Error::input(format!("{e}; nothing was started")))?;
    }
    for lock in [afk.join("lock"), findings.join(".lock")] {
        crate::files::refuse_link(&lock)
            .map_err(|e| Error::input(format!("{e}; nothing was started")))?;
    }
    Ok(())
}

impl Campaign {
    /// Reads and checks everything in `settings` under `root`.
    ///
    /// # Errors
    /// `Input` naming the first file, key or setting that is wrong.
    pub fn prepare(root: &Path, settings: &Settings) -> Result<Campaign, Error> {
        refuse_links_out(root)?;
        let checklist_path = inside(root, &root.join(&settings.checklist), "the checklist")?;
        let (_, parsed) = load_checklist(&checklist_path)?;
        // Every id names a directory: one that is not a single safe path
        // component (`..`, `/`, control characters) would put an agent, and
        // afk's writes, outside the campaign.
        let bad: Vec<String> = parsed
            .items
            .iter()
            .filter_map(|i| {
                decide::unsafe_id(&i.id).map(|why| format!("  line {}: {:?}: {why}", i.line, i.id))
            })
            .collect();
        if !bad.is_empty() {
            return Err(Error::input(format!(
                "{} has row ids that cannot name a run directory; nothing was started:\n{}",
                checklist_path.display(),
                bad.join("\n")
            )));
        }
        let brief_path = root.join(&settings.mission_brief);
        let brief = read_text("mission brief", &brief_path)?;
        if brief.trim().is_empty() {
            return Err(Error::input(format!(
                "the mission brief {} is empty",
                brief_path.display()
            )));
        }
        let config_path = root.join(&settings.config);
        validate_config(&read_text("run config", &config_path)?, &config_path)
            .map_err(Error::Input)?;
        settings
            .runtime
            .resolve(settings.path_var.as_deref())
            .map_err(|e| Error::input(e.to_string()))?;
        if let Some(budget) = settings.budget_usd {
            decide::spend::check_budget(budget).map_err(Error::Input)?;
            // A budget nobody can count would be a promise afk cannot keep.
            if !matches!(settings.runtime, Runtime::Claude { .. }) {
                return Err(Error::input(format!(
                    "--budget-usd needs an agent that reports what it spends: claude does \
                     (total_cost_usd); {} does not, so afk cannot keep the budget",
                    settings.runtime.program()
                )));
            }
        }
        let template = match &settings.prompt_template {
            Some(p) => read_text("prompt template", &root.join(p))?,
            None => ITEM_TEMPLATE.to_owned(),
        };
        let campaign = Campaign {
            root: root.to_owned(),
            checklist_path,
            brief,
            runtime: settings.runtime.clone(),
            template,
            batch_size: settings.batch_size.max(1),
            timeout: settings.timeout,
            mode: settings.mode,
            idle_rounds: settings.idle_rounds.max(1),
            afk_bin: settings.afk_bin.clone(),
            budget_usd: settings.budget_usd,
        };
        // A template with an unknown placeholder fails now, not mid-run.
        let probe = sut::parse("## Tier 1: t\n\n| Status | ID |\n|---|---|\n| ☐ | X |\n").0;
        if let Some(item) = probe.items.first() {
            campaign
                .item_prompt(item)
                .map_err(|e| Error::input(format!("the prompt template: {e}")))?;
        }
        Ok(campaign)
    }

    /// `runs/<tier-slug>/`.
    pub fn tier_dir(&self, tier: u32, name: &str) -> PathBuf {
        self.root.join("runs").join(decide::slug(tier, name))
    }

    /// `runs/<tier-slug>/<ID>/`, the item's agent's working directory.
    pub fn item_dir(&self, item: &Item) -> PathBuf {
        self.tier_dir(item.tier, &item.tier_name).join(&item.id)
    }

    /// The item's prompt.
    ///
    /// # Errors
    /// The template names a placeholder that does not exist.
    pub fn item_prompt(&self, item: &Item) -> Result<String, TemplateError> {
        let dir = self.item_dir(item);
        let extra: String = item
            .extra
            .iter()
            .map(|(k, v)| format!("- {k}: {v}\n"))
            .collect();
        let tier = item.tier.to_string();
        let run_dir = dir.display().to_string();
        let report = dir.join("FINAL_REPORT.md").display().to_string();
        let checklist = self.checklist_path.display().to_string();
        let marker = decide::completion_marker(&item.id);
        decide::render_template(
            &self.template,
            &[
                ("mission_brief", self.brief.trim_end()),
                ("id", &item.id),
                ("title", &item.title),
                ("priority", &item.priority),
                ("risk", &item.risk),
                ("industry", item.industry.as_deref().unwrap_or("-")),
                ("deployment", item.deployment.as_deref().unwrap_or("-")),
                ("tier", &tier),
                ("tier_name", &item.tier_name),
                ("extra", &extra),
                ("checklist_path", &checklist),
                ("run_dir", &run_dir),
                ("report_path", &report),
                ("completion_marker", &marker),
                ("afk_bin", &self.afk_bin),
            ],
        )
    }

    /// The item agent's environment on top of afk's own.
    pub fn item_env(&self, item: &Item) -> Vec<(String, String)> {
        vec![
            ("AFK_TASK".into(), "item".into()),
            ("AFK_ITEM_ID".into(), item.id.clone()),
            ("AFK_ITEM_TITLE".into(), item.title.clone()),
            ("AFK_ITEM_TIER".into(), item.tier.to_string()),
            // `afk finding add` writes to the campaign's one ledger, so ids
            // are unique across the campaign.
            ("AFK_CAMPAIGN_DIR".into(), self.root.display().to_string()),
            (
                "AFK_RUN_DIR".into(),
                self.item_dir(item).display().to_string(),
            ),
            (
                "AFK_CHECKLIST".into(),
                self.checklist_path.display().to_string(),
            ),
            ("AFK_BIN".into(), self.afk_bin.clone()),
        ]
    }

    /// The text an agent answered: claude's JSON envelope's `result`, else
    /// stdout as printed.
    pub fn answer(&self, run: &AgentRun) -> String {
        if matches!(self.runtime, Runtime::Claude { .. })
            && let Ok(v) = serde_json::from_str::<Value>(run.stdout.trim())
            && let Some(result) = v.get("result").and_then(Value::as_str)
        {
            return result.to_owned();
        }
        run.stdout.clone()
    }
}

/// The ids of the rows marked ⏳.
pub(crate) fn running_ids(checklist: &Checklist) -> Vec<&str> {
    checklist
        .items
        .iter()
        .filter(|i| i.status == Status::Running)
        .map(|i| i.id.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn check_config(text: &str, want: Result<(), &str>) {
        let got = validate_config(text, Path::new("config/run_config.json")).map(|_| ());
        match want {
            Ok(()) => assert_eq!(got, Ok(()), "{text}"),
            Err(part) => {
                let err = got.unwrap_err();
                assert!(err.contains(part), "{text}: {err}");
            }
        }
    }

    #[test]
    fn the_run_config_must_name_every_required_key() {
        let full = r#"{"sut_name":"shop","sut_version":"1.2","access":{"instructions":"vpn","credentials_key":"SHOP_KEY"},"datasets":[],"environments":["staging"],"success_criteria":"no P0"}"#;
        check_config(full, Ok(()));
        check_config(
            &full.replace("\"sut_version\":\"1.2\",", ""),
            Err("has no \"sut_version\""),
        );
        check_config(
            &full.replace("\"credentials_key\":\"SHOP_KEY\"", "\"x\":1"),
            Err("has no \"access.credentials_key\""),
        );
        check_config(
            &full.replace("\"datasets\":[]", "\"datasets\":null"),
            Err("has no \"datasets\""),
        );
        check_config("[1]", Err("must hold a JSON object"));
        check_config("{", Err("is not valid JSON"));
    }
}
