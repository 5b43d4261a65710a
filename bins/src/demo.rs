//! `afk demo`: the AFK loop on a simulated world, as an operator would see it.
//!
//! It starts the loopback simulator in-process (GitHub, T3 Code, CI checks,
//! Slack, ntfy: every service is simulated, nothing leaves 127.0.0.1) and runs
//! real poll and watch ticks, with the real adapters, through a few scenarios:
//! what the poller decides, the progress checklist as it changes, and the
//! doorbells. It needs nothing installed and no network.

use std::io::Write;

use afk_core::tick::{Level, TickReport};
use afk_sim::lock;

use crate::sim_world::World;

struct Tally {
    dispatched: usize,
    closed: usize,
    handed_back: usize,
    refused: usize,
}

fn show(out: &mut dyn Write, label: &str, report: &TickReport) -> std::io::Result<()> {
    writeln!(out, "  {label}:")?;
    let mut any = false;
    for e in &report.entries {
        if e.action == "skip" && !e.message.contains("trusted") && !e.message.contains("blocked") {
            continue;
        }
        any = true;
        let key = match (&e.repo, e.issue) {
            (Some(r), Some(n)) => format!("{r}#{n}"),
            (Some(r), None) => r.clone(),
            _ => String::new(),
        };
        let mark = match e.level {
            Level::Info => " ",
            Level::Warn => "!",
            Level::Error => "x",
        };
        writeln!(out, "   {mark} {:<16} {key:<10} {}", e.action, e.message)?;
    }
    if !any {
        writeln!(out, "     (nothing to do)")?;
    }
    Ok(())
}

fn checklist(out: &mut dyn Write, w: &World, repo: &str, number: u64) -> std::io::Result<()> {
    if let Some(body) = w.progress_comments(repo, number).first() {
        writeln!(out, "  progress comment on {repo}#{number}:")?;
        for line in body
            .lines()
            .filter(|l| !l.starts_with("<!--") && !l.trim().is_empty())
        {
            writeln!(out, "    | {line}")?;
        }
    }
    Ok(())
}

fn bells(out: &mut dyn Write, w: &World, seen: &mut usize) -> std::io::Result<()> {
    let all = w.ntfy_titles();
    for title in all.iter().skip(*seen) {
        writeln!(out, "  doorbell (Slack + ntfy): {title}")?;
    }
    *seen = all.len();
    Ok(())
}

/// Runs the demo, writing what an operator would see to `out`.
///
/// # Errors
/// When the simulator cannot start or the output cannot be written.
pub async fn run(out: &mut dyn Write) -> anyhow::Result<()> {
    writeln!(out, "afk demo: the AFK loop against SIMULATED services.")?;
    writeln!(
        out,
        "GitHub, T3 Code, CI checks, Slack and ntfy are simulated in-process on 127.0.0.1;"
    )?;
    writeln!(
        out,
        "the poll and watch ticks and every adapter are the real ones. Nothing leaves this machine.\n"
    )?;

    let w = World::new(
        &["infra", "web", "docs"],
        &[("AFK_FIX_FORWARD_MAX_ATTEMPTS", "1")],
    )
    .await?;
    let mut tally = Tally {
        dispatched: 0,
        closed: 0,
        handed_back: 0,
        refused: 0,
    };
    let mut rung = 0;

    writeln!(
        out,
        "Setup: infra#7 labelled ready by alice (write); web#12 by alice; docs#3 by mallory (triage);"
    )?;
    writeln!(
        out,
        "       web#13 by alice but blocked by open web#11. Fix-forward budget: 1 attempt.\n"
    )?;
    w.ready("infra", 7, "Rotate the ingress certificates.", "alice");
    w.ready("web", 12, "Lazy-load the product images.", "alice");
    w.ready("docs", 3, "Explain the kill switch.", "mallory");
    lock(&w.sim.github).add_issue("acme/web", 11, "Image CDN", "", &[]);
    w.ready("web", 13, "Serve AVIF.\n\nBlocked by #11", "alice");

    writeln!(
        out,
        "1. The poller picks trusted, unblocked work, one issue per repository."
    )?;
    let report = w.poll().await;
    tally.dispatched += report.dispatched.len();
    tally.refused += report
        .entries
        .iter()
        .filter(|e| e.action == "untrusted")
        .count();
    show(out, "poll tick", &report)?;
    checklist(out, &w, "infra", 7)?;

    writeln!(
        out,
        "\n2. infra#7: the agent pushes, CI runs, CI goes green; the loop closes the issue."
    )?;
    w.advance(900);
    w.push("infra", 7, "a1b2c3d4e5f6");
    w.ci("infra", "a1b2c3d4e5f6", "running");
    let thread = w.thread("web", 12, 0);
    lock(&w.sim.t3).run_turn(&thread, &w.now());
    show(out, "watch tick", &w.watch().await)?;
    checklist(out, &w, "infra", 7)?;
    w.advance(300);
    w.ci("infra", "a1b2c3d4e5f6", "green");
    let report = w.watch().await;
    tally.closed += report
        .entries
        .iter()
        .filter(|e| e.action == "close_success")
        .count();
    show(out, "watch tick", &report)?;
    checklist(out, &w, "infra", 7)?;
    bells(out, &w, &mut rung)?;

    writeln!(
        out,
        "\n3. web#12: CI goes red; one corrective turn; still red; the run is frozen for a human."
    )?;
    w.push("web", 12, "bad0c0ffee01");
    w.ci("web", "bad0c0ffee01", "red");
    lock(&w.sim.t3).finish_turn(&thread, &w.now());
    show(out, "watch tick", &w.watch().await)?;
    w.advance(600);
    lock(&w.sim.t3).finish_turn(&thread, &w.now());
    let report = w.watch().await;
    tally.handed_back += report
        .entries
        .iter()
        .filter(|e| e.action == "freeze_escalate")
        .count();
    show(out, "watch tick", &report)?;
    checklist(out, &w, "web", 12)?;
    bells(out, &w, &mut rung)?;
    writeln!(
        out,
        "  labels on web#12 now: {}",
        w.labels("web", 12).join(", ")
    )?;

    writeln!(
        out,
        "\n4. The blocker web#11 closes; the next poll starts web#13. docs#3 stays untouched."
    )?;
    lock(&w.sim.github).issue("acme/web", 11).state = "closed".into();
    let report = w.poll().await;
    tally.dispatched += report.dispatched.len();
    show(out, "poll tick", &report)?;

    writeln!(out, "\n5. The kill switch: the poller does nothing at all.")?;
    let before = w.requests().await;
    let killed = afk_core::Config {
        kill_switch: true,
        ..w.config.clone()
    };
    show(out, "poll tick", &w.poll_with(&killed).await)?;
    writeln!(
        out,
        "  requests made by that tick: {}",
        w.requests().await - before
    )?;

    writeln!(
        out,
        "\ndemo: {} dispatched, {} closed, {} frozen for a human, {} refused as untrusted, {} doorbells, {} simulated API requests (all services simulated)",
        tally.dispatched,
        tally.closed,
        tally.handed_back,
        tally.refused,
        rung,
        w.requests().await
    )?;
    Ok(())
}
