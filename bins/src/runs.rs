//! `afk runs`: the runs in flight, from their run records, read-only.
//!
//! It uses the same settings as the CronJob binaries and the same discovery
//! as the watcher (`afk_loop::find_runs`), so it lists exactly what the
//! watcher drives; `checklist::runs` renders them. It writes nothing.

use afk_adapters::github::GitHubTracker;
use afk_adapters::http::Http;
use afk_core::Config;
use afk_loop::{Entry, Run, TickReport, find_runs};

use crate::loop_cmd::{BadConfig, LoopArgs};

/// Reads the runs in flight.
///
/// # Errors
/// `BadConfig` for unusable settings.
pub async fn read(args: &LoopArgs) -> Result<(Config, Vec<Run>, Vec<Entry>), BadConfig> {
    let config = args.policy()?;
    let http = Http::new(&args.http(None)).map_err(|e| BadConfig(e.to_string()))?;
    let mut report = TickReport::default();
    afk_adapters::settings::operator_allowlist(&config, "afk runs").map_err(BadConfig)?;
    let tracker = GitHubTracker::new(http, args.github()?);
    let runs = find_runs(&tracker, &config, &mut report).await;
    Ok((config, runs, report.entries))
}
