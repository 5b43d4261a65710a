//! `afk run` and its companions `status`, `history`, `dashboard`, `cancel`:
//! the checklist runner over a markdown backlog with local agents.
//!
//! Everything is relative to the campaign directory (the working directory,
//! or `-C DIR`): the checklist, the mission brief, `config/run_config.json`,
//! `runs/` (one directory per item and tier), `.afk/` (state) and
//! `findings/`. The decisions (which rows next, whether an item is done, the
//! prompts, synthesised rows) are `checklist::campaign`'s pure functions;
//! this module performs them: it reads and rewrites the checklist (always
//! re-read, one cell changed, replaced atomically), starts agents, and keeps
//! the state files. It does not share the AFK loop's ticks: a campaign is a
//! single long process, not a CronJob.

pub mod state;

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use afk_adapters::agent::{self, AgentJob, AgentRun, Runtime};
use afk_adapters::files::atomic_write;
use checklist::campaign::{self as decide, FailReason, RunEvidence};
use checklist::sut::{self, Checklist, Item, Status};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::exit;
use state::{ActiveRun, InFlight};

/// The prompt template shipped with afk for one item.
pub const ITEM_TEMPLATE: &str = include_str!("../../templates/item-prompt.md");
/// The prompt template for a tier report.
pub const TIER_TEMPLATE: &str = include_str!("../../templates/tier-report-prompt.md");
/// The prompt template for infinite-mode synthesis.
pub const SYNTHESIS_TEMPLATE: &str = include_str!("../../templates/synthesis-prompt.md");

/// Exit code of a run stopped by Ctrl-C or `afk cancel` (128 + SIGINT).
pub const STOPPED: u8 = 130;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Run the backlog as written.
    Finite,
    /// When the backlog is done, ask an agent for new rows.
    Infinite,
}

/// `afk run`'s settings.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The backlog.
    #[arg(long, default_value = "SUT-CHECKLIST.md")]
    pub checklist: PathBuf,
    /// The mission brief every prompt starts with.
    #[arg(long, default_value = "SUT-PACKET.md")]
    pub mission_brief: PathBuf,
    /// The campaign settings (sut_name, sut_version, access, datasets, …).
    #[arg(long, default_value = "config/run_config.json")]
    pub config: PathBuf,
    /// finite: stop when the backlog is done; infinite: synthesise new rows.
    #[arg(long, value_enum, default_value = "finite")]
    pub mode: Mode,
    /// Rows per round, each with its own agent, run concurrently.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub batch_size: u16,
    /// Which agent runs: claude, opencode, or command (--agent-command).
    #[arg(long, default_value = "claude")]
    pub runtime: String,
    /// The agent for --runtime command: '<program> <args>', split like a
    /// shell would but never run through one; the prompt goes to its stdin.
    #[arg(long)]
    pub agent_command: Option<String>,
    /// The model slug passed to claude or opencode.
    #[arg(long)]
    pub model: Option<String>,
    /// How long one agent may run (300s, 5m, 1h, or seconds).
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Infinite mode stops after this many synthesis rounds in a row that add nothing.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub idle_rounds: u32,
    /// Use this prompt template for items instead of the shipped one.
    #[arg(long)]
    pub prompt_template: Option<PathBuf>,
    /// Print the next round's rows and prompts; start nothing, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Turn ⏳ rows left by a run that died back to to-do (and stop its agents).
    #[arg(long)]
    pub resume: bool,
}

/// Parses `300s`, `5m`, `1h`, `1500ms` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map_or((t, ""), |i| t.split_at(i));
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 300s, 5m, 1h"))?;
    let d = match unit.trim() {
        "" | "s" => Duration::from_secs(n),
        "ms" => Duration::from_millis(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => return Err(format!("{text:?}: unknown unit (use ms, s, m or h)")),
    };
    if d.is_zero() {
        return Err(format!("{text:?}: a timeout must be longer than zero"));
    }
    Ok(d)
}

/// Now, as RFC 3339 UTC text.
pub fn now_rfc3339() -> String {
    afk_core::Timestamp::from_offset_date_time(time::OffsetDateTime::now_utc()).to_rfc3339()
}

fn stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        std::process::id()
    )
}

fn rel(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Checks `run_config.json`: valid JSON, an object, every required key
/// present and not null. The error names the first missing key.
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
pub fn load_checklist(path: &Path) -> Result<(String, Checklist), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the checklist {}: {e}", path.display()))?;
    let (checklist, diagnostics) = sut::parse(&text);
    if !diagnostics.is_empty() {
        let lines: Vec<String> = diagnostics
            .iter()
            .map(|d| format!("  {}:{}: {}", path.display(), d.line, d.message))
            .collect();
        return Err(format!(
            "the checklist has {} problem(s); nothing was started:\n{}",
            diagnostics.len(),
            lines.join("\n")
        ));
    }
    if checklist.tiers.is_empty() {
        return Err(format!(
            "{} has no tier (a `## Tier <n>: <name>` heading)",
            path.display()
        ));
    }
    Ok((text, checklist))
}

/// Everything a run needs, validated before any agent starts.
#[derive(Debug)]
struct Campaign {
    root: PathBuf,
    checklist_path: PathBuf,
    brief: String,
    runtime: Runtime,
    template: String,
    batch_size: usize,
    timeout: Duration,
    mode: Mode,
    idle_rounds: u32,
    afk_bin: String,
}

fn prepare(root: &Path, args: &RunArgs) -> Result<Campaign, String> {
    let checklist_path = root.join(&args.checklist);
    load_checklist(&checklist_path)?;
    let brief_path = root.join(&args.mission_brief);
    let brief = std::fs::read_to_string(&brief_path).map_err(|e| {
        format!(
            "cannot read the mission brief {}: {e}",
            brief_path.display()
        )
    })?;
    if brief.trim().is_empty() {
        return Err(format!(
            "the mission brief {} is empty",
            brief_path.display()
        ));
    }
    let config_path = root.join(&args.config);
    let config = std::fs::read_to_string(&config_path)
        .map_err(|e| format!("cannot read the run config {}: {e}", config_path.display()))?;
    validate_config(&config, &config_path)?;
    let runtime = Runtime::from_settings(
        &args.runtime,
        args.agent_command.as_deref(),
        args.model.as_deref(),
        |k| std::env::var(k).ok(),
    )
    .map_err(|e| e.to_string())?;
    runtime
        .resolve(std::env::var("PATH").ok().as_deref())
        .map_err(|e| e.to_string())?;
    let template = match &args.prompt_template {
        Some(p) => std::fs::read_to_string(root.join(p))
            .map_err(|e| format!("cannot read the prompt template {}: {e}", p.display()))?,
        None => ITEM_TEMPLATE.to_owned(),
    };
    let afk_bin = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "afk".into());
    let campaign = Campaign {
        root: root.to_owned(),
        checklist_path,
        brief,
        runtime,
        template,
        batch_size: usize::from(args.batch_size),
        timeout: args.timeout,
        mode: args.mode,
        idle_rounds: args.idle_rounds,
        afk_bin,
    };
    // A template with an unknown placeholder fails now, not mid-run.
    let probe = checklist::sut::parse("## Tier 1: t\n\n| Status | ID |\n|---|---|\n| ☐ | X |\n").0;
    if let Some(item) = probe.items.first() {
        campaign
            .item_prompt(item)
            .map_err(|e| format!("the prompt template: {e}"))?;
    }
    Ok(campaign)
}

impl Campaign {
    fn tier_dir(&self, tier: u32, name: &str) -> PathBuf {
        self.root.join("runs").join(decide::slug(tier, name))
    }

    fn item_dir(&self, item: &Item) -> PathBuf {
        self.tier_dir(item.tier, &item.tier_name).join(&item.id)
    }

    fn item_prompt(&self, item: &Item) -> Result<String, decide::TemplateError> {
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

    fn item_env(&self, item: &Item) -> Vec<(String, String)> {
        vec![
            ("AFK_TASK".into(), "item".into()),
            ("AFK_ITEM_ID".into(), item.id.clone()),
            ("AFK_ITEM_TITLE".into(), item.title.clone()),
            ("AFK_ITEM_TIER".into(), item.tier.to_string()),
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
    fn answer(&self, run: &AgentRun) -> String {
        if matches!(self.runtime, Runtime::Claude { .. })
            && let Ok(v) = serde_json::from_str::<Value>(run.stdout.trim())
            && let Some(result) = v.get("result").and_then(Value::as_str)
        {
            return result.to_owned();
        }
        run.stdout.clone()
    }
}

/// The next free `agent-<n>.log` in `results`.
fn next_log(results: &Path) -> PathBuf {
    let n = (1..)
        .find(|n| !results.join(format!("agent-{n}.log")).exists())
        .unwrap_or(1);
    results.join(format!("agent-{n}.log"))
}

/// Shows progress: one line rewritten in place on a terminal, plain lines
/// otherwise.
#[derive(Debug)]
struct Reporter {
    tty: bool,
    shown: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    total: usize,
    done: usize,
    failed: usize,
    running: usize,
}

impl Counts {
    fn of(checklist: &Checklist) -> Counts {
        let mut c = Counts {
            total: checklist.items.len(),
            ..Counts::default()
        };
        for i in &checklist.items {
            match i.status {
                Status::Done => c.done += 1,
                Status::Failed => c.failed += 1,
                Status::Running => c.running += 1,
                Status::Todo => {}
            }
        }
        c
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} done, {} running, {} failed",
            self.done, self.total, self.running, self.failed
        )
    }
}

impl Reporter {
    fn new() -> Reporter {
        Reporter {
            tty: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn line(&mut self, message: &str) {
        let mut err = std::io::stderr().lock();
        if self.shown {
            let _ = write!(err, "\r\x1b[2K");
            self.shown = false;
        }
        let _ = writeln!(err, "afk run: {message}");
    }

    fn progress(&mut self, counts: Counts) {
        if self.tty {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K[afk] {counts}");
            let _ = err.flush();
            self.shown = true;
        }
    }

    fn done(&mut self) {
        if self.shown {
            let _ = writeln!(std::io::stderr().lock());
            self.shown = false;
        }
    }
}

/// Sets the status of the rows `ids` in the checklist file: re-read, one
/// cell changed per row, replaced atomically. Ids no longer in the file are
/// returned (someone removed the row meanwhile).
fn mark(path: &Path, ids: &[&str], status: Status) -> Result<Vec<String>, String> {
    let (mut text, _) = load_checklist(path)?;
    let mut missing = Vec::new();
    for id in ids {
        let (checklist, _) = sut::parse(&text);
        match checklist.items.iter().find(|i| i.id == *id) {
            Some(item) if item.status != status => text = sut::set_status(&text, item, status),
            Some(_) => {}
            None => missing.push((*id).to_owned()),
        }
    }
    atomic_write(path, text.as_bytes())
        .map_err(|e| format!("cannot write the checklist {}: {e}", path.display()))?;
    Ok(missing)
}

/// Why the run is stopping early.
const STOP_NONE: u8 = 0;
const STOP_INTERRUPTED: u8 = 1;
const STOP_CANCELLED: u8 = 2;

/// The live run: its state files and progress.
#[derive(Debug)]
struct Live {
    active: ActiveRun,
    session_path: PathBuf,
    session: Value,
    reporter: Reporter,
}

impl Live {
    fn save_active(&self, root: &Path) {
        if let Err(e) = state::write_active(root, &self.active) {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "afk run: warning: {e}");
        }
    }

    fn save_session(&mut self) {
        let text = format!("{:#}\n", self.session);
        if let Err(e) = atomic_write(&self.session_path, text.as_bytes()) {
            self.reporter.line(&format!(
                "warning: cannot write {}: {e}",
                self.session_path.display()
            ));
        }
    }

    /// How many items failed in this run (from the session's record).
    fn failed(&self) -> usize {
        self.session["items"].as_array().map_or(0, |items| {
            items.iter().filter(|i| i["status"] == "failed").count()
        })
    }

    fn record(&mut self, entry: Value) {
        if let Some(items) = self.session.get_mut("items").and_then(Value::as_array_mut) {
            items.push(entry);
        }
        self.save_session();
    }
}

/// The ids of the rows marked ⏳.
fn running_ids(checklist: &Checklist) -> Vec<&str> {
    checklist
        .items
        .iter()
        .filter(|i| i.status == Status::Running)
        .map(|i| i.id.as_str())
        .collect()
}

/// Handles a run that died: kills the agent groups it recorded, turns every
/// ⏳ row back to to-do, and removes its active file. Returns what it did.
fn clean_up_dead_run(
    root: &Path,
    checklist: &Path,
    dead: Option<&ActiveRun>,
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    if let Some(run) = dead {
        for f in &run.in_flight {
            if let Some(pgid) = f.pgid
                && agent::group_alive(pgid)
            {
                agent::kill_group(pgid);
                notes.push(format!(
                    "stopped the agent of {} left by pid {} (process group {pgid})",
                    f.id, run.pid
                ));
            }
        }
    }
    let (_, parsed) = load_checklist(checklist)?;
    let running = running_ids(&parsed);
    if !running.is_empty() {
        mark(checklist, &running, Status::Todo)?;
        notes.push(format!("turned {} back to to-do", running.join(", ")));
    }
    state::clear_active(root)?;
    Ok(notes)
}

/// `afk run`: returns the exit code; `Err` is bad input or settings (exit 2).
pub fn run(root: &Path, args: &RunArgs, out: &mut dyn Write) -> Result<u8, String> {
    let campaign = prepare(root, args)?;
    let path = campaign.checklist_path.clone();

    // Another runner, or the remains of a dead one?
    let active = state::read_active(root)?;
    if let Some(a) = &active
        && state::runner_alive(a.pid)
    {
        return Err(format!(
            "a run is already active (pid {}, since {}); `afk status` shows it, `afk cancel` stops it",
            a.pid, a.started_at
        ));
    }
    let (_, parsed) = load_checklist(&path)?;
    let running = running_ids(&parsed);
    if args.dry_run {
        return dry_run(&campaign, &parsed, &running, out).map(|()| exit::OK);
    }
    if !args.resume && (active.is_some() || !running.is_empty()) {
        let who = active
            .as_ref()
            .map(|a| format!("run pid {} died without cleaning up", a.pid))
            .unwrap_or_else(|| "no run is active".into());
        return Err(format!(
            "{who}; rows marked ⏳: {}. `afk run --resume` turns them back to to-do and starts again",
            if running.is_empty() {
                "none".into()
            } else {
                running.join(", ")
            }
        ));
    }
    let mut reporter = Reporter::new();
    if args.resume {
        for note in clean_up_dead_run(root, &path, active.as_ref())? {
            reporter.line(&format!("resume: {note}"));
        }
    }

    let session_path = state::state_dir(root).join(format!("session-{}.json", stamp()));
    let started_at = now_rfc3339();
    let active = ActiveRun {
        pid: std::process::id(),
        started_at: started_at.clone(),
        session: rel(root, &session_path),
        checklist: rel(root, &path),
        in_flight: Vec::new(),
    };
    if !state::claim_active(root, &active)? {
        return Err("another run claimed this campaign a moment ago; `afk status` shows it".into());
    }
    let session = json!({
        "started_at": started_at,
        "ended_at": null,
        "pid": std::process::id(),
        "checklist": rel(root, &path),
        "mode": match campaign.mode { Mode::Finite => "finite", Mode::Infinite => "infinite" },
        "runtime": campaign.runtime.program(),
        "batch_size": campaign.batch_size,
        "timeout_seconds": campaign.timeout.as_secs_f64(),
        "outcome": "running",
        "rounds": 0,
        "synthesis_rounds": 0,
        "rows_added": 0,
        "items": [],
        "tier_reports": [],
    });
    let mut live = Live {
        active,
        session_path,
        session,
        reporter,
    };
    live.save_session();

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let result = tokio.block_on(drive(&campaign, &mut live));
    let (outcome, code) = match &result {
        Ok(STOP_INTERRUPTED) => ("interrupted", STOPPED),
        Ok(STOP_CANCELLED) => ("cancelled", STOPPED),
        Ok(_) if live.failed() > 0 => ("finished-with-failures", exit::PARTIAL),
        Ok(_) => ("finished", exit::OK),
        Err(_) => ("error", exit::PARTIAL),
    };
    if let Err(e) = &result {
        live.reporter.line(&format!("error: {e}"));
    }
    live.session["outcome"] = json!(outcome);
    live.session["ended_at"] = json!(now_rfc3339());
    live.save_session();
    if let Err(e) = state::clear_active(root) {
        live.reporter.line(&format!("warning: {e}"));
    }
    live.reporter.done();
    let counts = load_checklist(&path)
        .map(|(_, c)| Counts::of(&c))
        .unwrap_or_default();
    live.reporter.line(&format!(
        "{outcome}: {counts}; session {}",
        rel(root, &live.session_path)
    ));
    Ok(code)
}

fn dry_run(
    campaign: &Campaign,
    parsed: &Checklist,
    running: &[&str],
    out: &mut dyn Write,
) -> Result<(), String> {
    let w = |out: &mut dyn Write, s: String| {
        out.write_all(s.as_bytes())
            .map_err(|e| format!("cannot write the dry run: {e}"))
    };
    let batch = decide::select_batch(parsed, campaign.batch_size);
    let todo = parsed
        .items
        .iter()
        .filter(|i| i.status == Status::Todo)
        .count();
    let argv = campaign.runtime.argv("<prompt>");
    w(
        out,
        format!(
            "afk run --dry-run: nothing is started and nothing changes.\nruntime: {}{}\n",
            argv.join(" "),
            if campaign.runtime.prompt_on_stdin() {
                " (prompt on stdin)"
            } else {
                ""
            }
        ),
    )?;
    if !running.is_empty() {
        w(
            out,
            format!(
                "rows marked ⏳ (need --resume unless a run is active): {}\n",
                running.join(", ")
            ),
        )?;
    }
    if batch.is_empty() {
        let next = match campaign.mode {
            Mode::Finite => "the run would finish at once",
            Mode::Infinite => "the next round would ask an agent for new rows",
        };
        return w(out, format!("no to-do rows: {next}.\n"));
    }
    w(
        out,
        format!(
            "the next round takes {} of {todo} to-do row(s) (batch size {}):\n",
            batch.len(),
            campaign.batch_size
        ),
    )?;
    for item in &batch {
        let prompt = campaign
            .item_prompt(item)
            .map_err(|e| format!("the prompt template: {e}"))?;
        w(
            out,
            format!(
                "\n## {} — {} (tier {}, {})\nrun directory: {}\n----- prompt -----\n{}\n----- end of prompt -----\n",
                item.id,
                item.title,
                item.tier,
                if item.priority.is_empty() {
                    "no priority"
                } else {
                    &item.priority
                },
                rel(&campaign.root, &campaign.item_dir(item)),
                prompt.trim_end()
            ),
        )?;
    }
    Ok(())
}

/// Listens for Ctrl-C (SIGINT) and `afk cancel` (SIGTERM): records which,
/// and tells every agent to stop.
fn watch_signals(cancel: watch::Sender<bool>, reason: Arc<AtomicU8>) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int =
        signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;
    let mut term =
        signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
    tokio::spawn(async move {
        let why = tokio::select! {
            _ = int.recv() => STOP_INTERRUPTED,
            _ = term.recv() => STOP_CANCELLED,
        };
        let _ = reason.compare_exchange(STOP_NONE, why, Ordering::SeqCst, Ordering::SeqCst);
        let _ = cancel.send(true);
    });
    Ok(())
}

/// The rounds: returns why it stopped (`STOP_NONE` when the work ran out).
async fn drive(campaign: &Campaign, live: &mut Live) -> Result<u8, String> {
    let (cancel_tx, cancel) = watch::channel(false);
    let reason = Arc::new(AtomicU8::new(STOP_NONE));
    watch_signals(cancel_tx, reason.clone())?;
    let stopped = || reason.load(Ordering::SeqCst);
    let path = &campaign.checklist_path;
    let mut reported: Vec<u32> = Vec::new();
    let mut idle = 0;
    let mut rounds = 0u64;
    loop {
        if stopped() != STOP_NONE {
            return Ok(stopped());
        }
        let (_, parsed) = load_checklist(path)?;
        live.reporter.progress(Counts::of(&parsed));
        tier_reports(campaign, live, &parsed, &mut reported, &cancel).await?;
        if stopped() != STOP_NONE {
            return Ok(stopped());
        }
        let batch: Vec<Item> = decide::select_batch(&parsed, campaign.batch_size)
            .into_iter()
            .cloned()
            .collect();
        if batch.is_empty() {
            if campaign.mode == Mode::Finite {
                return Ok(STOP_NONE);
            }
            let added = synthesise(campaign, live, &parsed, &cancel).await?;
            if added == 0 {
                idle += 1;
                if idle >= campaign.idle_rounds {
                    live.reporter.line(&format!(
                        "infinite mode: {idle} synthesis round(s) in a row added nothing; stopping"
                    ));
                    return Ok(stopped());
                }
            } else {
                idle = 0;
            }
            continue;
        }
        rounds += 1;
        live.session["rounds"] = json!(rounds);
        run_round(campaign, live, &batch, &cancel).await?;
    }
}

/// One round: mark the batch ⏳, run one agent per row concurrently, judge
/// each as it ends.
async fn run_round(
    campaign: &Campaign,
    live: &mut Live,
    batch: &[Item],
    cancel: &watch::Receiver<bool>,
) -> Result<(), String> {
    let root = &campaign.root;
    let path = &campaign.checklist_path;
    let ids: Vec<&str> = batch.iter().map(|i| i.id.as_str()).collect();
    for gone in mark(path, &ids, Status::Running)? {
        live.reporter.line(&format!(
            "{gone} left the checklist before it started; skipped"
        ));
    }
    let (pid_tx, mut pid_rx) = mpsc::unbounded_channel::<(String, u32)>();
    let mut set = tokio::task::JoinSet::new();
    for item in batch {
        let dir = campaign.item_dir(item);
        let results = dir.join("results");
        std::fs::create_dir_all(&results)
            .map_err(|e| format!("cannot create {}: {e}", results.display()))?;
        let log = next_log(&results);
        // A report left by an earlier attempt must not pass this one: keep
        // it beside that attempt's log instead.
        let report = dir.join("FINAL_REPORT.md");
        if report.exists() {
            let kept = results.join(format!(
                "FINAL_REPORT.before-{}.md",
                log.file_stem().and_then(|s| s.to_str()).unwrap_or("agent")
            ));
            std::fs::rename(&report, &kept)
                .map_err(|e| format!("cannot move the old report {}: {e}", report.display()))?;
        }
        let prompt = campaign
            .item_prompt(item)
            .map_err(|e| format!("the prompt template: {e}"))?;
        let job = AgentJob {
            prompt,
            env: campaign.item_env(item),
            cwd: dir.clone(),
            log: log.clone(),
            timeout: campaign.timeout,
        };
        live.active.in_flight.push(InFlight {
            id: item.id.clone(),
            pgid: None,
            started_at: now_rfc3339(),
            log: rel(root, &log),
        });
        live.reporter.line(&format!(
            "{} ⏳ started: {} ({})",
            item.id,
            item.title,
            rel(root, &log)
        ));
        let runtime = campaign.runtime.clone();
        let cancel = cancel.clone();
        let tx = pid_tx.clone();
        let item = item.clone();
        set.spawn(async move {
            let id = item.id.clone();
            let result = agent::run(&runtime, &job, cancel, move |pid| {
                let _ = tx.send((id, pid));
            })
            .await;
            (item, job, result)
        });
    }
    live.save_active(root);
    while !set.is_empty() {
        tokio::select! {
            Some((id, pgid)) = pid_rx.recv() => {
                if let Some(f) = live.active.in_flight.iter_mut().find(|f| f.id == id) {
                    f.pgid = Some(pgid);
                }
                live.save_active(root);
            }
            Some(joined) = set.join_next() => {
                let (item, job, result) = joined.map_err(|e| format!("an agent task failed: {e}"))?;
                finish_item(campaign, live, &item, &job, result)?;
            }
        }
    }
    Ok(())
}

fn finish_item(
    campaign: &Campaign,
    live: &mut Live,
    item: &Item,
    job: &AgentJob,
    result: Result<AgentRun, agent::AgentError>,
) -> Result<(), String> {
    let root = &campaign.root;
    let path = &campaign.checklist_path;
    live.active.in_flight.retain(|f| f.id != item.id);
    let log = rel(root, &job.log);
    // An agent that never ran fails its row with the reason; the round goes on.
    let (status, reason) = match &result {
        Err(e) => (Status::Failed, Some(e.to_string())),
        Ok(run) if run.cancelled => (Status::Todo, Some("stopped; back to to-do".to_owned())),
        Ok(run) => {
            let report = campaign.item_dir(item).join("FINAL_REPORT.md");
            let evidence = RunEvidence {
                id: &item.id,
                exit_code: run.exit_code,
                timed_out: run.timed_out,
                output: &run.output,
                report_bytes: std::fs::metadata(&report).ok().map(|m| m.len()),
            };
            match decide::judge(&evidence) {
                Ok(()) => (Status::Done, None),
                Err(FailReason::TimedOut) => (
                    Status::Failed,
                    Some(format!("killed at the timeout ({:?})", campaign.timeout)),
                ),
                Err(reason) => {
                    let mut why = reason.to_string();
                    if matches!(reason, FailReason::ExitCode(_))
                        && !run.stderr_head.trim().is_empty()
                    {
                        why.push_str(&format!("; stderr: {}", run.stderr_head.trim()));
                    }
                    (Status::Failed, Some(why))
                }
            }
        }
    };
    mark(path, &[&item.id], status)?;
    live.save_active(root);
    let run = result.as_ref().ok();
    let duration = run.map_or(Duration::ZERO, |r| r.duration);
    let secs = duration.as_secs_f64();
    let (_, parsed) = load_checklist(path)?;
    let counts = Counts::of(&parsed);
    live.reporter.line(&match status {
        Status::Done => format!("{} ✅ done in {secs:.1}s [{counts}]", item.id),
        Status::Todo => format!("{} ☐ stopped after {secs:.1}s; back to to-do", item.id),
        _ => format!(
            "{} ❌ failed after {secs:.1}s: {} (log: {log}) [{counts}]",
            item.id,
            reason.as_deref().unwrap_or("unknown")
        ),
    });
    live.record(json!({
        "id": item.id,
        "tier": item.tier,
        "status": match status { Status::Done => "done", Status::Todo => "stopped", _ => "failed" },
        "reason": reason,
        "exit_code": run.and_then(|r| r.exit_code),
        "duration_ms": u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
        "log": log,
    }));
    live.reporter.progress(counts);
    Ok(())
}

/// Writes `runs/<tier-slug>/<tier-slug>-FINAL-REPORT.md` for every tier that
/// is all ✅ and has none yet (one attempt per tier per run).
async fn tier_reports(
    campaign: &Campaign,
    live: &mut Live,
    parsed: &Checklist,
    attempted: &mut Vec<u32>,
    cancel: &watch::Receiver<bool>,
) -> Result<(), String> {
    for tier in &parsed.tiers {
        let items: Vec<&Item> = parsed
            .items
            .iter()
            .filter(|i| i.tier == tier.number)
            .collect();
        if items.is_empty()
            || items.iter().any(|i| i.status != Status::Done)
            || attempted.contains(&tier.number)
        {
            continue;
        }
        let slug = decide::slug(tier.number, &tier.name);
        let dir = campaign.tier_dir(tier.number, &tier.name);
        let report = dir.join(format!("{slug}-FINAL-REPORT.md"));
        if report.exists() {
            continue;
        }
        attempted.push(tier.number);
        let mut reports = String::new();
        for item in &items {
            let text = std::fs::read_to_string(campaign.item_dir(item).join("FINAL_REPORT.md"))
                .unwrap_or_default();
            let text: String = text.chars().take(20_000).collect();
            reports.push_str(&format!(
                "## {} — {}\n\n{}\n\n",
                item.id,
                item.title,
                text.trim()
            ));
        }
        let tier_number = tier.number.to_string();
        let report_path = report.display().to_string();
        let prompt = decide::render_template(
            TIER_TEMPLATE,
            &[
                ("mission_brief", campaign.brief.trim_end()),
                ("tier", &tier_number),
                ("tier_name", &tier.name),
                ("item_reports", reports.trim_end()),
                ("report_path", &report_path),
            ],
        )
        .map_err(|e| format!("the tier report template: {e}"))?;
        let results = dir.join("results");
        std::fs::create_dir_all(&results)
            .map_err(|e| format!("cannot create {}: {e}", results.display()))?;
        let job = AgentJob {
            prompt,
            env: vec![
                ("AFK_TASK".into(), "tier-report".into()),
                ("AFK_ITEM_TIER".into(), tier_number.clone()),
                ("AFK_RUN_DIR".into(), dir.display().to_string()),
                (
                    "AFK_CHECKLIST".into(),
                    campaign.checklist_path.display().to_string(),
                ),
            ],
            cwd: dir.clone(),
            log: results.join("tier-report.log"),
            timeout: campaign.timeout,
        };
        live.reporter.line(&format!(
            "tier {} is done; asking for its report",
            tier.number
        ));
        let outcome = agent::run(&campaign.runtime, &job, cancel.clone(), |_| {}).await;
        let verdict = match &outcome {
            Ok(run) if run.cancelled => return Ok(()),
            Ok(run) if run.exit_code == Some(0) => {
                let text = campaign.answer(run);
                if text.trim().is_empty() {
                    Err("the agent printed no report".to_owned())
                } else {
                    atomic_write(&report, text.as_bytes())
                        .map_err(|e| format!("cannot write {}: {e}", report.display()))?;
                    Ok(())
                }
            }
            Ok(run) if run.timed_out => Err("killed at the timeout".to_owned()),
            Ok(run) => Err(format!(
                "the agent exited with {:?}: {}",
                run.exit_code,
                run.stderr_head.trim()
            )),
            Err(e) => Err(e.to_string()),
        };
        let entry = match &verdict {
            Ok(()) => {
                live.reporter.line(&format!(
                    "tier {} report: {}",
                    tier.number,
                    rel(&campaign.root, &report)
                ));
                json!({"tier": tier.number, "report": rel(&campaign.root, &report)})
            }
            Err(why) => {
                live.reporter.line(&format!(
                    "tier {} report failed: {why} (log: {}); it is asked for again on the next run",
                    tier.number,
                    rel(&campaign.root, &job.log)
                ));
                json!({"tier": tier.number, "error": why})
            }
        };
        if let Some(list) = live
            .session
            .get_mut("tier_reports")
            .and_then(Value::as_array_mut)
        {
            list.push(entry);
        }
        live.save_session();
    }
    Ok(())
}

/// One synthesis round: ask for new rows, append the valid ones. Returns how
/// many were added.
async fn synthesise(
    campaign: &Campaign,
    live: &mut Live,
    parsed: &Checklist,
    cancel: &watch::Receiver<bool>,
) -> Result<usize, String> {
    let root = &campaign.root;
    let round = live.session["synthesis_rounds"].as_u64().unwrap_or(0) + 1;
    live.session["synthesis_rounds"] = json!(round);
    let dir = state::state_dir(root).join("synthesis");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let (text, _) = load_checklist(&campaign.checklist_path)?;
    let prompt = decide::render_template(
        SYNTHESIS_TEMPLATE,
        &[
            ("mission_brief", campaign.brief.trim_end()),
            ("checklist", text.trim_end()),
        ],
    )
    .map_err(|e| format!("the synthesis template: {e}"))?;
    let name = format!("{}-round-{round}", stamp());
    let job = AgentJob {
        prompt,
        env: vec![
            ("AFK_TASK".into(), "synthesis".into()),
            (
                "AFK_RUN_DIR".into(),
                root.join("runs").display().to_string(),
            ),
            (
                "AFK_CHECKLIST".into(),
                campaign.checklist_path.display().to_string(),
            ),
        ],
        cwd: dir.clone(),
        log: dir.join(format!("{name}.log")),
        timeout: campaign.timeout,
    };
    live.reporter.line(&format!(
        "no to-do rows left; synthesis round {round}: asking for new rows"
    ));
    let run = match agent::run(&campaign.runtime, &job, cancel.clone(), |_| {}).await {
        Ok(run) if run.cancelled => return Ok(0),
        Ok(run) => run,
        Err(e) => {
            live.reporter
                .line(&format!("synthesis round {round} failed: {e}"));
            return Ok(0);
        }
    };
    let raw = dir.join(format!("{name}.txt"));
    atomic_write(&raw, run.stdout.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", raw.display()))?;
    if run.exit_code != Some(0) {
        live.reporter.line(&format!(
            "synthesis round {round}: the agent {} (log: {}); nothing added",
            if run.timed_out {
                "was killed at the timeout".to_owned()
            } else {
                format!("exited with {:?}", run.exit_code)
            },
            rel(root, &job.log)
        ));
        return Ok(0);
    }
    let answer = campaign.answer(&run);
    let synthesis = match decide::parse_synthesis(&answer, parsed) {
        Ok(s) => s,
        Err(e) => {
            live.reporter.line(&format!(
                "synthesis round {round}: {e} (raw answer: {}); nothing added",
                rel(root, &raw)
            ));
            return Ok(0);
        }
    };
    for d in &synthesis.dropped {
        live.reporter.line(&format!(
            "synthesis round {round}: dropped row {}: {}",
            d.index, d.reason
        ));
    }
    if synthesis.rows.is_empty() {
        live.reporter
            .line(&format!("synthesis round {round}: no new rows"));
        return Ok(0);
    }
    // Re-read: append to the file as it is now.
    let (current, _) = load_checklist(&campaign.checklist_path)?;
    let updated = sut::append_items(&current, &synthesis.rows);
    atomic_write(&campaign.checklist_path, updated.as_bytes()).map_err(|e| {
        format!(
            "cannot write the checklist {}: {e}",
            campaign.checklist_path.display()
        )
    })?;
    let ids: Vec<&str> = synthesis.rows.iter().map(|r| r.id.as_str()).collect();
    live.reporter.line(&format!(
        "synthesis round {round}: added {}",
        ids.join(", ")
    ));
    let added = live.session["rows_added"].as_u64().unwrap_or(0) + ids.len() as u64;
    live.session["rows_added"] = json!(added);
    live.save_session();
    Ok(synthesis.rows.len())
}

/// Per-tier counts of a checklist: (tier, name, to do, running, done, failed).
fn tier_counts(checklist: &Checklist) -> Vec<(u32, String, [usize; 4])> {
    let mut out: BTreeMap<u32, (String, [usize; 4])> = BTreeMap::new();
    for t in &checklist.tiers {
        out.entry(t.number)
            .or_insert_with(|| (t.name.clone(), [0; 4]));
    }
    for i in &checklist.items {
        let slot = match i.status {
            Status::Todo => 0,
            Status::Running => 1,
            Status::Done => 2,
            Status::Failed => 3,
        };
        out.entry(i.tier)
            .or_insert_with(|| (i.tier_name.clone(), [0; 4]))
            .1[slot] += 1;
    }
    out.into_iter().map(|(n, (name, c))| (n, name, c)).collect()
}

fn elapsed_since(rfc3339: &str) -> String {
    let now = afk_core::Timestamp::from_offset_date_time(time::OffsetDateTime::now_utc());
    afk_core::Timestamp::parse_rfc3339(rfc3339).map_or_else(
        |_| "?".into(),
        |then| crate::runs::age(now.seconds_since(then)),
    )
}

/// The active run, described: `(text, json)`.
fn describe_active(root: &Path) -> Result<(String, Value), String> {
    Ok(match state::read_active(root)? {
        None => ("no active run\n".into(), json!({"active": false})),
        Some(a) if !state::runner_alive(a.pid) => (
            format!(
                "no active run: run pid {} (since {}) died without cleaning up; `afk run --resume` or `afk cancel` tidies it\n",
                a.pid, a.started_at
            ),
            json!({"active": false, "stale": a.to_json()}),
        ),
        Some(a) => {
            let mut text = format!(
                "active run: pid {}, since {} ({})\n",
                a.pid,
                a.started_at,
                elapsed_since(&a.started_at)
            );
            for f in &a.in_flight {
                text.push_str(&format!(
                    "  ⏳ {:<14} for {:<8} log {}\n",
                    f.id,
                    elapsed_since(&f.started_at),
                    f.log
                ));
            }
            (text, json!({"active": true, "run": a.to_json()}))
        }
    })
}

/// `afk status`: the active run and the checklist's totals.
pub fn status(root: &Path, checklist: &Path, as_json: bool) -> Result<String, String> {
    let (text, mut value) = describe_active(root)?;
    let (_, parsed) = load_checklist(&root.join(checklist))?;
    let counts = Counts::of(&parsed);
    let last = state::session_files(root).last().and_then(|p| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
    });
    if as_json {
        value["checklist"] = json!({"total": counts.total, "done": counts.done, "failed": counts.failed, "running": counts.running});
        value["last_session"] = last.unwrap_or(Value::Null);
        return Ok(format!("{value:#}\n"));
    }
    let mut out = text;
    out.push_str(&format!("checklist: {counts}\n"));
    if let Some(s) = last {
        out.push_str(&format!(
            "last session: {} → {} ({})\n",
            s["started_at"].as_str().unwrap_or("?"),
            s["ended_at"].as_str().unwrap_or("still running"),
            s["outcome"].as_str().unwrap_or("?")
        ));
    }
    Ok(out)
}

/// `afk history`: one line per session, oldest first.
pub fn history(root: &Path, as_json: bool) -> Result<String, String> {
    let mut rows = Vec::new();
    for path in state::session_files(root) {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value: Value = match serde_json::from_str(&text) {
            Ok(v) => v,
            Err(e) => json!({"file": rel(root, &path), "error": format!("does not parse: {e}")}),
        };
        rows.push((rel(root, &path), value));
    }
    if as_json {
        return Ok(format!(
            "{:#}\n",
            Value::Array(rows.into_iter().map(|(_, v)| v).collect())
        ));
    }
    if rows.is_empty() {
        return Ok("no runs yet\n".into());
    }
    let mut out = format!(
        "{:<26} {:<24} {:>5} {:>5} {:>6}  {}\n",
        "started", "outcome", "done", "fail", "added", "session"
    );
    for (file, s) in rows {
        let items = s["items"].as_array().map(Vec::as_slice).unwrap_or_default();
        let count = |st: &str| items.iter().filter(|i| i["status"] == st).count();
        out.push_str(&format!(
            "{:<26} {:<24} {:>5} {:>5} {:>6}  {}\n",
            s["started_at"].as_str().unwrap_or("?"),
            s["outcome"].as_str().or(s["error"].as_str()).unwrap_or("?"),
            count("done"),
            count("failed"),
            s["rows_added"].as_u64().unwrap_or(0),
            file
        ));
    }
    Ok(out)
}

/// `afk dashboard`: per-tier counts, tier reports, what is running, findings.
pub fn dashboard(root: &Path, checklist: &Path) -> Result<String, String> {
    let (_, parsed) = load_checklist(&root.join(checklist))?;
    let mut out = format!(
        "{:<40} {:>5} {:>5} {:>5} {:>5}  report\n",
        "tier", "todo", "run", "done", "fail"
    );
    for (n, name, [todo, running, done, failed]) in tier_counts(&parsed) {
        let slug = decide::slug(n, &name);
        let report = root
            .join("runs")
            .join(&slug)
            .join(format!("{slug}-FINAL-REPORT.md"));
        let label: String = format!("Tier {n}: {name}").chars().take(40).collect();
        out.push_str(&format!(
            "{label:<40} {todo:>5} {running:>5} {done:>5} {failed:>5}  {}\n",
            if report.exists() { "yes" } else { "-" }
        ));
    }
    out.push_str(&format!("total: {}\n\n", Counts::of(&parsed)));
    out.push_str(&describe_active(root)?.0);
    let (summary, _) = crate::findings::aggregate(root);
    out.push_str(&format!(
        "findings: {} {}\n",
        summary["total"], summary["by_kind"]
    ));
    Ok(out)
}

/// `afk cancel`: stops the active run (its agents are killed and their rows
/// go back to to-do) and waits up to `wait` for it to finish. A run that
/// already died is tidied up here instead.
pub fn cancel(root: &Path, checklist: &Path, wait: Duration) -> Result<(String, u8), String> {
    let Some(active) = state::read_active(root)? else {
        return Ok(("no active run; nothing to cancel\n".into(), exit::OK));
    };
    if !state::runner_alive(active.pid) {
        let notes = clean_up_dead_run(root, &root.join(checklist), Some(&active))?;
        let mut out = format!("run pid {} had died; tidied up after it\n", active.pid);
        for n in notes {
            out.push_str(&format!("  {n}\n"));
        }
        return Ok((out, exit::OK));
    }
    let pid = i32::try_from(active.pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| format!("bad pid {} in the active-run file", active.pid))?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)
        .map_err(|e| format!("cannot signal run pid {}: {e}", active.pid))?;
    let started = Instant::now();
    while started.elapsed() < wait {
        if state::read_active(root)?.is_none_or(|a| a.pid != active.pid) {
            let ids: Vec<&str> = active.in_flight.iter().map(|f| f.id.as_str()).collect();
            return Ok((
                format!(
                    "cancelled run pid {}; back to to-do: {}\n",
                    active.pid,
                    if ids.is_empty() {
                        "none".into()
                    } else {
                        ids.join(", ")
                    }
                ),
                exit::OK,
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((
        format!(
            "run pid {} was told to stop but is still running after {wait:?}\n",
            active.pid
        ),
        exit::PARTIAL,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn durations() {
        for (text, want) in [
            ("300s", Ok(Duration::from_secs(300))),
            ("300", Ok(Duration::from_secs(300))),
            ("5m", Ok(Duration::from_secs(300))),
            ("1h", Ok(Duration::from_secs(3600))),
            ("1500ms", Ok(Duration::from_millis(1500))),
        ] {
            assert_eq!(parse_duration(text), want, "{text}");
        }
        for bad in ["", "s", "5 minutes", "-1s", "0s", "1.5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

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
