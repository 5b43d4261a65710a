//! What an agent writes besides items: a tier's report once every row of the
//! tier is ✅, and, in infinite mode, new rows when the backlog runs dry.
//!
//! Which tiers are due is [`crate::decide::progress::tiers_due_for_report`];
//! which proposed rows are kept is [`crate::decide::parse_synthesis`]. This
//! module runs the agents and writes the results (atomically), keeping every
//! raw synthesis answer in `.afk/synthesis/`.

use checklist::sut::{self, Checklist, Item};
use tokio::sync::watch;

use crate::Error;
use crate::agent::{self, AgentJob};
use crate::campaign::{Campaign, SYNTHESIS_TEMPLATE, TIER_TEMPLATE};
use crate::decide::{self, progress};
use crate::event::Event;
use crate::files::atomic_write;
use crate::live::{Live, stamp};
use crate::rel;
use crate::state::{self, TierReportRecord};
use crate::writer::read_checklist;

/// At most this much of one item's report goes into a tier report's prompt.
const ITEM_REPORT_CHARS: usize = 20_000;

/// The report file of a tier.
fn report_path(campaign: &Campaign, tier: u32, name: &str) -> std::path::PathBuf {
    let slug = decide::slug(tier, name);
    campaign
        .tier_dir(tier, name)
        .join(format!("{slug}-FINAL-REPORT.md"))
}

/// Writes `runs/<tier-slug>/<tier-slug>-FINAL-REPORT.md` for every tier that
/// is due one (one attempt per tier per run).
pub(crate) async fn tier_reports(
    campaign: &Campaign,
    live: &mut Live<'_>,
    parsed: &Checklist,
    asked: &mut Vec<u32>,
    cancel: &watch::Receiver<bool>,
) -> Result<(), Error> {
    let due = progress::tiers_due_for_report(parsed, asked, |n, name| {
        report_path(campaign, n, name).exists()
    });
    for (tier, name) in due {
        asked.push(tier);
        let items: Vec<&Item> = parsed.items.iter().filter(|i| i.tier == tier).collect();
        let dir = campaign.tier_dir(tier, &name);
        let report = report_path(campaign, tier, &name);
        let mut reports = String::new();
        for item in &items {
            let text = std::fs::read_to_string(campaign.item_dir(item).join("FINAL_REPORT.md"))
                .unwrap_or_default();
            let text: String = text.chars().take(ITEM_REPORT_CHARS).collect();
            reports.push_str(&format!(
                "## {} — {}\n\n{}\n\n",
                item.id,
                item.title,
                text.trim()
            ));
        }
        let tier_number = tier.to_string();
        let path_text = report.display().to_string();
        let prompt = decide::render_template(
            TIER_TEMPLATE,
            &[
                ("mission_brief", campaign.brief.trim_end()),
                ("tier", &tier_number),
                ("tier_name", &name),
                ("item_reports", reports.trim_end()),
                ("report_path", &path_text),
            ],
        )
        .map_err(|e| Error::failed(format!("the tier report template: {e}")))?;
        // A tier directory linked out of the campaign is refused before
        // anything is created (or written) there.
        let results = crate::files::create_dir_inside(&campaign.root, &dir.join("results"))
            .map_err(|e| {
                Error::failed(format!("the run directory of tier {tier}'s report: {e}"))
            })?;
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
            max_budget_usd: live.session.spend.left(),
        };
        live.emit(Event::TierReportAsked { tier });
        let outcome = agent::run(&campaign.runtime, &job, cancel.clone(), |_| {}).await;
        if let Some((cost, cap)) = agent::charge_of(&campaign.runtime, &job, &outcome) {
            live.charge(cost, cap)?;
        }
        let verdict = match &outcome {
            Ok(run) if run.cancelled => return Ok(()),
            Ok(run) if run.exit_code == Some(0) => {
                let text = campaign.answer(run);
                if text.trim().is_empty() {
                    Err("the agent printed no report".to_owned())
                } else {
                    atomic_write(&report, text.as_bytes()).map_err(|e| {
                        Error::failed(format!("cannot write {}: {e}", report.display()))
                    })?;
                    Ok(())
                }
            }
            Ok(run) if run.timed_out => Err("killed at the timeout".to_owned()),
            Ok(run) => Err(match (run.exit_code, &run.said) {
                (Some(code), Some(said)) => format!("the agent exited with code {code}: {said}"),
                (Some(code), None) => format!("the agent exited with code {code}"),
                (None, _) => "the agent was killed by a signal".to_owned(),
            }),
            Err(e) => Err(e.to_string()),
        };
        let record = match verdict {
            Ok(()) => {
                let path = rel(&campaign.root, &report);
                live.emit(Event::TierReportWritten {
                    tier,
                    path: path.clone(),
                });
                TierReportRecord {
                    tier,
                    report: Some(path),
                    error: None,
                }
            }
            Err(reason) => {
                live.emit(Event::TierReportFailed {
                    tier,
                    reason: reason.clone(),
                    log: rel(&campaign.root, &job.log),
                });
                TierReportRecord {
                    tier,
                    report: None,
                    error: Some(reason),
                }
            }
        };
        live.session.tier_reports.push(record);
        live.save_session();
    }
    Ok(())
}

/// One synthesis round: ask for new rows, append the valid ones. Returns how
/// many were added.
pub(crate) async fn synthesise(
    campaign: &Campaign,
    live: &mut Live<'_>,
    parsed: &Checklist,
    cancel: &watch::Receiver<bool>,
) -> Result<usize, Error> {
    let root = &campaign.root;
    live.session.synthesis_rounds += 1;
    let round = live.session.synthesis_rounds;
    let dir = crate::files::create_dir_inside(root, &state::state_dir(root).join("synthesis"))
        .map_err(|e| Error::failed(format!("the synthesis directory: {e}")))?;
    let (text, _, _) = read_checklist(&campaign.checklist_path)?;
    let prompt = decide::render_template(
        SYNTHESIS_TEMPLATE,
        &[
            ("mission_brief", campaign.brief.trim_end()),
            ("checklist", text.trim_end()),
        ],
    )
    .map_err(|e| Error::failed(format!("the synthesis template: {e}")))?;
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
        max_budget_usd: live.session.spend.left(),
    };
    live.emit(Event::SynthesisAsked { round });
    let nothing = |live: &mut Live<'_>, reason: String| {
        live.emit(Event::SynthesisNothing { round, reason });
        Ok(0)
    };
    let run = agent::run(&campaign.runtime, &job, cancel.clone(), |_| {}).await;
    if let Some((cost, cap)) = agent::charge_of(&campaign.runtime, &job, &run) {
        live.charge(cost, cap)?;
    }
    let run = match run {
        Ok(run) if run.cancelled => return Ok(0),
        Ok(run) => run,
        Err(e) => return nothing(live, format!("failed: {e}")),
    };
    let raw = dir.join(format!("{name}.txt"));
    atomic_write(&raw, run.stdout.as_bytes())
        .map_err(|e| Error::failed(format!("cannot write {}: {e}", raw.display())))?;
    if run.exit_code != Some(0) {
        let how = if run.timed_out {
            "was killed at the timeout".to_owned()
        } else {
            format!("exited with {:?}", run.exit_code)
        };
        return nothing(
            live,
            format!(
                "the agent {how} (log: {}); nothing added",
                rel(root, &job.log)
            ),
        );
    }
    let answer = campaign.answer(&run);
    let synthesis = match decide::parse_synthesis(&answer, parsed) {
        Ok(s) => s,
        Err(e) => {
            return nothing(
                live,
                format!("{e} (raw answer: {}); nothing added", rel(root, &raw)),
            );
        }
    };
    for d in &synthesis.dropped {
        live.emit(Event::SynthesisDropped {
            round,
            index: d.index,
            reason: d.reason.clone(),
        });
    }
    if synthesis.rows.is_empty() {
        return nothing(live, "no new rows".into());
    }
    // Appended to the file as it is now, losing no edit made meanwhile.
    live.writer
        .rewrite(|current| (Some(sut::append_items(current, &synthesis.rows)), ()))?;
    let ids: Vec<String> = synthesis.rows.iter().map(|r| r.id.clone()).collect();
    live.session.rows_added += ids.len() as u64;
    live.emit(Event::SynthesisAdded { round, ids });
    live.save_session();
    Ok(synthesis.rows.len())
}
