//! `afk run` and friends as an operator runs them: the real `afk` binary on a
//! copy of the sample campaign in `fixtures/checklists/sample/`, with the
//! scripted agents of `fixtures/agents/` as real child processes.
//!
//! This file is long because each test drives the real binary through a
//! whole campaign (start, agents, state files, clean-up) with real processes.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

use crate::processes::{dead, wait_until};

use crate::scratch::Scratch;

const AFK: &str = env!("CARGO_BIN_EXE_afk");

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn agent(script: &str) -> String {
    format!("sh {}", fixtures().join("agents").join(script).display())
}

/// A fresh copy of the sample campaign.
fn campaign(name: &str) -> Scratch {
    let dir = Scratch::new(&format!("campaign-{name}"));
    std::fs::create_dir_all(dir.join("config")).unwrap();
    let sample = fixtures().join("checklists/sample");
    for f in [
        "SUT-CHECKLIST.md",
        "SUT-PACKET.md",
        "config/run_config.json",
    ] {
        std::fs::copy(sample.join(f), dir.join(f)).unwrap();
    }
    dir
}

fn afk_cmd(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(AFK);
    cmd.arg("-C").arg(dir).args(args).env_remove("AFK_ITEM_ID");
    cmd
}

fn afk(dir: &Path, args: &[&str]) -> Output {
    afk_cmd(dir, args).output().unwrap()
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run_with(dir: &Path, script: &str, extra: &[&str]) -> Output {
    let command = agent(script);
    let mut args = vec!["run", "--runtime", "command", "--agent-command", &command];
    args.extend_from_slice(extra);
    afk(dir, &args)
}

pub(crate) fn read(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path.as_ref())
        .unwrap_or_else(|e| panic!("{}: {e}", path.as_ref().display()))
}

pub(crate) fn statuses(dir: &Path) -> Vec<(String, String)> {
    let (c, d) = checklist::sut::parse(&read(dir.join("SUT-CHECKLIST.md")));
    assert!(d.is_empty(), "{d:?}");
    c.items
        .iter()
        .map(|i| (i.id.clone(), i.status.glyph().to_owned()))
        .collect()
}

fn all(dir: &Path, glyph: &str) -> bool {
    statuses(dir).iter().all(|(_, g)| g == glyph)
}

pub(crate) fn last_session(dir: &Path) -> Value {
    let mut files: Vec<_> = std::fs::read_dir(dir.join(".afk"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("session-")
        })
        .collect();
    files.sort();
    serde_json::from_str(&read(files.last().unwrap())).unwrap()
}

fn pids(file: &Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

fn item_dir(dir: &Path, id: &str) -> PathBuf {
    let tier = if id.starts_with("SEC") {
        "tier-2-security"
    } else {
        "tier-1-core-reliability"
    };
    dir.join("runs").join(tier).join(id)
}

#[test]
fn a_finite_run_ticks_every_box_and_writes_each_tier_report_once() {
    let dir = campaign("finite");
    let before = read(dir.join("SUT-CHECKLIST.md"));
    let out = run_with(&dir, "complete.sh", &["--batch-size", "2"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(all(&dir, "✅"), "{:?}", statuses(&dir));
    // Only the status cells changed.
    assert_eq!(
        read(dir.join("SUT-CHECKLIST.md")),
        before.replace("| ☐ |", "| ✅ |")
    );
    // Priority order inside tier 1: P0 first.
    let started: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("⏳ started"))
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(
        started,
        ["CORE-001", "CORE-002", "CORE-003", "SEC-002", "SEC-001"],
        "{log}"
    );
    for id in ["CORE-001", "SEC-002"] {
        let d = item_dir(&dir, id);
        assert!(read(d.join("FINAL_REPORT.md")).contains(id));
        let agent_log = read(d.join("results/agent-1.log"));
        assert!(
            agent_log.contains(&format!("ITEM COMPLETE: {id}")),
            "{agent_log}"
        );
    }
    // The agent got the rendered prompt on stdin (its report says how long).
    assert!(read(item_dir(&dir, "CORE-001").join("FINAL_REPORT.md")).contains("bytes"));
    let t1 = dir.join("runs/tier-1-core-reliability/tier-1-core-reliability-FINAL-REPORT.md");
    let t2 = dir.join("runs/tier-2-security/tier-2-security-FINAL-REPORT.md");
    assert!(read(&t1).starts_with("# Tier 1 report"));
    assert!(read(&t2).starts_with("# Tier 2 report"));
    let session = last_session(&dir);
    assert_eq!(session["outcome"], "finished");
    assert_eq!(session["items"].as_array().unwrap().len(), 5);
    assert_eq!(session["tier_reports"].as_array().unwrap().len(), 2);
    assert!(!dir.join(".afk/active-run.json").exists());

    // Once per tier: a second run asks for no report again and runs nothing.
    std::fs::write(&t1, "kept by the operator").unwrap();
    let again = run_with(&dir, "complete.sh", &[]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert_eq!(read(&t1), "kept by the operator");
    let second = last_session(&dir);
    assert_eq!(second["items"].as_array().unwrap().len(), 0);
    assert_eq!(second["tier_reports"].as_array().unwrap().len(), 0);

    // The agents' findings are in the campaign's one ledger, their ids
    // unique across the campaign (five agents, STR-001 to STR-005).
    let agg = afk(&dir, &["finding", "aggregate"]);
    let summary: Value = serde_json::from_slice(&agg.stdout).unwrap();
    assert_eq!(summary["total"], 5);
    assert_eq!(summary["by_kind"]["strength"], 5);
    assert_eq!(summary["by_severity"]["info"], 5);
    assert_eq!(
        summary["files"],
        serde_json::json!(["findings/strength.json"])
    );
    let mut ids: Vec<&str> = summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, ["STR-001", "STR-002", "STR-003", "STR-004", "STR-005"]);
    let mut items: Vec<&str> = summary["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["entry_id"].as_str().unwrap())
        .collect();
    items.sort_unstable();
    assert_eq!(
        items,
        ["CORE-001", "CORE-002", "CORE-003", "SEC-001", "SEC-002"]
    );

    // status, history and dashboard read it back.
    let status = text(&afk(&dir, &["status"]).stdout);
    assert!(
        status.contains("no active run") && status.contains("5/5 done"),
        "{status}"
    );
    let history = text(&afk(&dir, &["history"]).stdout);
    assert_eq!(
        history.lines().filter(|l| l.contains("finished")).count(),
        2,
        "{history}"
    );
    let dash = text(&afk(&dir, &["dashboard"]).stdout);
    assert!(
        dash.contains("Tier 1: Core reliability") && dash.contains("yes"),
        "{dash}"
    );
}

/// claude fails with an empty stderr and its error in the JSON on stdout;
/// a denied tool does not even fail its run. The ❌ reason carries claude's
/// own words on one line, names what to configure, and says where the log is.
#[test]
fn a_real_claude_failure_explains_itself() {
    let bin = fixtures().join("agents").join("claude-says.sh");
    for (says, expected) in [
        (
            "api",
            "the agent exited with code 1: claude: API Error: 401 {\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"invalid x-api-key\"}}",
        ),
        (
            "denied",
            "the agent exited 0 but never printed the completion marker: claude was denied Bash (afk finding add --severity high --title x); allow the tool in the agent's settings ($HOME/.claude/settings.json, permissions.allow)",
        ),
    ] {
        let dir = campaign(says);
        let out = afk_cmd(&dir, &["run", "--runtime", "claude"])
            .env("CLAUDE_BIN", &bin)
            .env("CLAUDE_SAYS", says)
            .output()
            .unwrap();
        let log = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{log}");
        let line = log
            .lines()
            .find(|l| l.contains("CORE-001 ❌ failed"))
            .unwrap_or_else(|| panic!("{log}"));
        assert!(line.contains(expected), "{says}: {line}");
        assert!(!line.contains('\u{1b}'), "{line}");
        assert!(
            line.contains("(log: runs/tier-1-core-reliability/CORE-001/results/agent-1.log)"),
            "{line}"
        );
        let session = last_session(&dir);
        let reason = session["items"][0]["reason"].as_str().unwrap();
        assert!(reason.contains(expected), "{reason}");
    }
}

/// `--budget-usd`: claude's reported costs are summed, each agent gets what
/// is left as `--max-budget-usd`, nothing new starts once it is spent, and
/// status, history and dashboard show the spend.
#[test]
fn a_budget_is_counted_passed_on_and_stops_new_work() {
    let bin = fixtures().join("agents").join("claude-says.sh");
    let dir = campaign("budget");
    let out = afk_cmd(
        &dir,
        &[
            "run",
            "--runtime",
            "claude",
            "--batch-size",
            "1",
            "--budget-usd",
            "1",
        ],
    )
    .env("CLAUDE_BIN", &bin)
    .output()
    .unwrap();
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        log.contains("the budget is spent ($1.2000 of $1.00); nothing new starts"),
        "{log}"
    );
    assert_eq!(
        statuses(&dir),
        [
            ("CORE-002", "✅"),
            ("CORE-001", "✅"),
            ("CORE-003", "✅"),
            ("SEC-001", "☐"),
            ("SEC-002", "☐"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .to_vec(),
        "{log}"
    );
    // Each agent was given what was left when it started.
    let argv = |id: &str| {
        read(
            dir.join("runs/tier-1-core-reliability")
                .join(id)
                .join("argv.log"),
        )
    };
    assert_eq!(
        argv("CORE-001"),
        "-p --output-format json --max-budget-usd 1.0000\n"
    );
    assert_eq!(
        argv("CORE-002"),
        "-p --output-format json --max-budget-usd 0.6000\n"
    );
    assert_eq!(
        argv("CORE-003"),
        "-p --output-format json --max-budget-usd 0.2000\n"
    );
    // The tier was done, but its report costs money too: not asked for.
    assert!(
        !dir.join("runs/tier-1-core-reliability/tier-1-core-reliability-FINAL-REPORT.md")
            .exists()
    );
    let session = last_session(&dir);
    assert_eq!(session["outcome"], "budget-spent");
    assert_eq!(session["spend"]["budget_usd"], 1.0);
    assert_eq!(session["spend"]["unreported"], 0);
    assert_eq!(session["items"][0]["cost_usd"], 0.4);
    let status = text(&afk(&dir, &["status"]).stdout);
    assert!(status.contains("spend: $1.2000 of $1.00"), "{status}");
    let history = text(&afk(&dir, &["history"]).stdout);
    assert!(
        history.contains("budget-spent") && history.contains("$1.2000"),
        "{history}"
    );
    let dash = text(&afk(&dir, &["dashboard"]).stdout);
    assert!(
        dash.contains("spend (last run): $1.2000 of $1.00"),
        "{dash}"
    );

    // A runtime that reports no cost says so instead of showing $0, and a
    // budget it could not keep is refused before anything starts.
    let dir = campaign("unpriced");
    let out = run_with(&dir, "complete.sh", &["--budget-usd", "5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--budget-usd needs an agent that reports what it spends"),
        "{}",
        text(&out.stderr)
    );
    let out = run_with(&dir, "complete.sh", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // Five items and two tier reports, none priced.
    let status = text(&afk(&dir, &["status"]).stdout);
    assert!(
        status.contains("spend: not reported by sh (7 agent run(s) without a cost)"),
        "{status}"
    );
    let history = text(&afk(&dir, &["history"]).stdout);
    assert!(history.contains("unreported"), "{history}");
    for bad in ["0", "-2", "lots"] {
        let flag = format!("--budget-usd={bad}");
        let out = afk(&dir, &["run", &flag]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            text(&out.stderr).contains(&format!("{bad:?}")),
            "{}",
            text(&out.stderr)
        );
    }
}

/// An agent given a cap (`--max-budget-usd`) that reports nothing (it
/// crashed, or was killed at the timeout) may have spent up to its cap: it
/// counts as having spent it, so nothing new starts on money nobody counted.
#[test]
fn an_agent_that_reports_no_cost_counts_its_whole_cap() {
    let bin = fixtures().join("agents").join("claude-says.sh");
    for (says, extra) in [("crash", "5m"), ("hang", "1s")] {
        let dir = campaign(&format!("cap-{says}"));
        let out = afk_cmd(
            &dir,
            &[
                "run",
                "--runtime",
                "claude",
                "--batch-size",
                "1",
                "--budget-usd",
                "1",
                "--timeout",
                extra,
            ],
        )
        .env("CLAUDE_BIN", &bin)
        .env("CLAUDE_SAYS", says)
        .output()
        .unwrap();
        let log = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{says}: {log}");
        assert!(
            log.contains(
                "the budget is spent ($1.0000 of $1.00; $1.0000 of it is the cap of 1 agent run \
                 that reported no cost); nothing new starts"
            ),
            "{says}: {log}"
        );
        // Only the first row ran; it failed, and nothing else started.
        let glyphs: Vec<String> = statuses(&dir).into_iter().map(|(_, g)| g).collect();
        assert_eq!(glyphs, ["☐", "❌", "☐", "☐", "☐"], "{says}: {log}");
        let session = last_session(&dir);
        assert_eq!(session["outcome"], "budget-spent", "{says}");
        assert_eq!(session["spend"]["spent_usd"], 1.0, "{says}");
        assert_eq!(session["spend"]["capped"], 1, "{says}");
        assert_eq!(session["spend"]["unreported"], 0, "{says}");
    }
}

/// The campaign's spend outlives a run (`.afk/spend.json`): the same
/// command run again continues from what was spent and says so first; a
/// larger budget continues from there; deleting the file starts from $0.
#[test]
fn the_campaign_s_spend_carries_over_to_the_next_run() {
    let bin = fixtures().join("agents").join("claude-says.sh");
    let dir = campaign("spend-carried");
    let budget_run = |budget: &str| {
        afk_cmd(
            &dir,
            &[
                "run",
                "--runtime",
                "claude",
                "--batch-size",
                "1",
                "--budget-usd",
                budget,
            ],
        )
        .env("CLAUDE_BIN", &bin)
        .output()
        .unwrap()
    };
    let argv = |path: &str| read(dir.join("runs").join(path).join("argv.log"));
    let first = budget_run("1");
    assert_eq!(first.status.code(), Some(1), "{}", text(&first.stderr));
    let spend: Value = serde_json::from_str(&read(dir.join(".afk/spend.json"))).unwrap();
    let spent = spend["spent_usd"].as_f64().unwrap();
    assert!((spent - 1.2).abs() < 1e-9, "{spend}");

    // Again, the same budget: nothing is left, and nothing starts.
    let again = budget_run("1");
    let log = text(&again.stderr);
    assert_eq!(again.status.code(), Some(1), "{log}");
    assert_eq!(
        log.lines().next(),
        Some(
            "afk run: this campaign spent $1.2000 before this run (.afk/spend.json; delete it \
             to count from $0 again): $0.0000 of the $1.00 budget is left"
        ),
        "{log}"
    );
    assert!(log.contains("the budget is spent"), "{log}");
    assert!(!log.contains("started"), "{log}");
    assert!(!dir.join("runs/tier-2-security").exists(), "{log}");

    // A larger budget continues from what was spent: tier 1's report (its
    // rows are done), then SEC-002, and then it is spent again.
    let more = budget_run("2");
    let log = text(&more.stderr);
    assert!(
        log.starts_with("afk run: this campaign spent $1.2000 before this run"),
        "{log}"
    );
    assert_eq!(
        argv("tier-1-core-reliability"),
        "-p --output-format json --max-budget-usd 0.8000\n"
    );
    assert_eq!(
        argv("tier-2-security/SEC-002"),
        "-p --output-format json --max-budget-usd 0.4000\n"
    );
    assert!(!dir.join("runs/tier-2-security/SEC-001").exists(), "{log}");
    let status = text(&afk(&dir, &["status"]).stdout);
    assert!(
        status.contains("spend: $2.0000 of $2.00 ($1.2000 before this run)"),
        "{status}"
    );
    let history = text(&afk(&dir, &["history"]).stdout);
    let spent: Vec<&str> = history
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    assert_eq!(spent, ["$1.2000", "$0.0000", "$0.8000"], "{history}");

    // Deleting the file starts the count again: the row left gets the
    // whole budget.
    std::fs::remove_file(dir.join(".afk/spend.json")).unwrap();
    let reset = budget_run("1");
    let log = text(&reset.stderr);
    assert!(!log.contains("before this run"), "{log}");
    assert_eq!(
        argv("tier-2-security/SEC-001"),
        "-p --output-format json --max-budget-usd 1.0000\n",
        "{log}"
    );
}

/// A writer killed mid-write leaves a temporary file beside its target; the
/// next run sweeps it (saying so) and leaves another live writer's alone.
#[test]
fn a_crashed_writer_s_temporary_files_are_swept_by_the_next_run() {
    let dir = campaign("stray");
    let stray = ".SUT-CHECKLIST.md.tmp-4194305-3";
    std::fs::write(dir.join(stray), "| ☐ | HALF").unwrap();
    std::fs::create_dir_all(dir.join(".afk")).unwrap();
    let live = format!(".active-run.json.tmp-{}-0", std::process::id());
    std::fs::write(dir.join(".afk").join(&live), "{").unwrap();
    let out = run_with(&dir, "complete.sh", &[]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(
        log.contains(&format!(
            "removed {stray} in ., left half-written by a writer that crashed"
        )),
        "{log}"
    );
    assert!(!dir.join(stray).exists());
    assert!(
        dir.join(".afk").join(&live).exists(),
        "a live writer's file is kept"
    );
}

/// A full disk: the campaign on a tiny tmpfs that fills up mid-run. The run
/// stops with an error, the checklist still parses with every row, nothing
/// half-written is left, no finished row is left ⏳ (a status cell is
/// written in place when no whole copy fits), and once there is room again
/// `--resume` finishes.
/// Needs to mount a tmpfs (root); elsewhere it says it skipped, and under
/// `CI=true` it fails: a skipped test never passes silently in CI.
#[test]
#[allow(clippy::print_stderr)] // a skipped test must say so
fn a_full_disk_leaves_the_campaign_consistent() {
    let tmp = Scratch::new("full-disk");
    let dir = tmp.to_path_buf();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&dir)
        .output()
        .is_ok_and(|o| o.status.success());
    if !mounted {
        assert!(
            std::env::var_os("CI").is_none(),
            "the full-disk test cannot mount a tmpfs at {} (it needs root); under CI=true a skipped test fails",
            dir.display()
        );
        eprintln!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(dir.clone());
    let sample = campaign("full-disk-source");
    // The disk fills at a different step each time: before the first
    // status write, between agents, at the tier report, at the session file.
    for pages in [0u64, 1, 2, 3, 5, 8, 13] {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
        std::fs::create_dir_all(dir.join("config")).unwrap();
        for f in [
            "SUT-CHECKLIST.md",
            "SUT-PACKET.md",
            "config/run_config.json",
        ] {
            std::fs::copy(sample.join(f), dir.join(f)).unwrap();
        }
        let before = read(dir.join("SUT-CHECKLIST.md"));
        // Fill the disk, then give back `pages` pages.
        let filler = dir.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        while std::io::Write::write_all(&mut file, &[b'x'; 4096]).is_ok() {}
        drop(file);
        let len = std::fs::metadata(&filler).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .unwrap()
            .set_len(len.saturating_sub(pages * 4096))
            .unwrap();
        let out = run_with(&dir, "complete.sh", &["--batch-size", "5"]);
        let log = text(&out.stderr);
        assert_ne!(
            out.status.code(),
            Some(0),
            "{pages} pages: the disk was full: {log}"
        );
        // The checklist is whole: it parses, and every row is still there.
        let after = read(dir.join("SUT-CHECKLIST.md"));
        let (c, d) = checklist::sut::parse(&after);
        assert!(d.is_empty(), "{pages} pages: {d:?}\n{after}");
        let (c0, _) = checklist::sut::parse(&before);
        assert_eq!(
            c.items.iter().map(|i| &i.id).collect::<Vec<_>>(),
            c0.items.iter().map(|i| &i.id).collect::<Vec<_>>(),
            "{pages} pages"
        );
        let strays: Vec<PathBuf> = walk(&dir)
            .into_iter()
            .filter(|p| p.to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(
            strays.is_empty(),
            "{pages} pages: half-written files left: {strays:?}\n{log}"
        );
        // No row is left ⏳ unsaid: a row whose agent finished is ✅ or ❌,
        // or its outcome could not be written and the run names it, with
        // the status it meant to write; the run names no other row.
        let mut left: Vec<&str> = c
            .items
            .iter()
            .filter(|i| i.status == checklist::sut::Status::Running)
            .map(|i| i.id.as_str())
            .collect();
        left.sort_unstable();
        let mut named: Vec<&str> = log
            .lines()
            .filter_map(|l| l.strip_prefix("afk run: could not record "))
            .flat_map(|l| l.split(" in ").next().unwrap_or("").split(", "))
            .filter_map(|row| row.split_whitespace().next())
            .collect();
        named.sort_unstable();
        named.dedup();
        assert_eq!(left, named, "{pages} pages: rows left ⏳\n{log}");
        // Status cells keep the checklist's length: they are written in
        // place on a full disk, so no finished row is left ⏳ at all.
        assert!(
            left.is_empty(),
            "{pages} pages: rows left ⏳: {left:?}\n{log}"
        );
        // Room again: `--resume` runs the rows left ⏳ (and those never
        // started); a row recorded ❌ (its agent failed on the full disk,
        // and said so) stays ❌ until someone sets it back to ☐.
        let before_resume = statuses(&dir);
        std::fs::remove_file(&filler).unwrap();
        let out = run_with(&dir, "complete.sh", &["--resume"]);
        let log = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{pages} pages: {log}");
        let want: Vec<(String, String)> = before_resume
            .into_iter()
            .map(|(id, glyph)| {
                let glyph = if glyph == "❌" {
                    glyph
                } else {
                    "✅".to_owned()
                };
                (id, glyph)
            })
            .collect();
        assert_eq!(statuses(&dir), want, "{pages} pages: {log}");
    }

    // The disk fills as an agent finishes (it grows the checklist, then
    // fills the disk): its row is still recorded (a status cell keeps the
    // file's length: written in place), and the run stops there, saying the
    // disk is full, with no new agent started.
    let script = Scratch::new("full-disk-agent");
    let fills = script.join("fills.sh");
    std::fs::write(
        &fills,
        "cat >/dev/null\necho \"# $AFK_ITEM_ID\" > \"$AFK_RUN_DIR/FINAL_REPORT.md\"\n\
         head -c 8192 /dev/zero | tr '\\0' x >> \"$AFK_CHECKLIST\"\n\
         echo >> \"$AFK_CHECKLIST\"\n\
         dd if=/dev/zero of=\"$AFK_CAMPAIGN_DIR/filler\" bs=4096 2>/dev/null\n\
         echo \"ITEM COMPLETE: $AFK_ITEM_ID\"\n",
    )
    .unwrap();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
    }
    std::fs::create_dir_all(dir.join("config")).unwrap();
    for f in [
        "SUT-CHECKLIST.md",
        "SUT-PACKET.md",
        "config/run_config.json",
    ] {
        std::fs::copy(sample.join(f), dir.join(f)).unwrap();
    }
    let command = format!("sh {}", fills.display());
    let out = afk(
        &dir,
        &[
            "run",
            "--runtime",
            "command",
            "--agent-command",
            &command,
            "--batch-size",
            "1",
        ],
    );
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(
        !log.contains("could not record"),
        "every row was recorded: {log}"
    );
    assert!(
        log.contains("the disk holding the checklist is full")
            && log.contains("no new agent starts"),
        "{log}"
    );
    let after = statuses(&dir);
    assert!(after.iter().all(|(_, g)| g != "⏳"), "{after:?}\n{log}");
    // Its completion marker went to a log on the full disk: not the
    // agent's failure, so back to to-do (never ❌ for a lost result), and
    // no agent starts after it.
    assert!(after.iter().all(|(_, g)| g == "☐"), "{after:?}\n{log}");
    assert!(
        log.contains("CORE-001 ☐ back to to-do") && log.contains("the disk is full"),
        "{log}"
    );
    assert_eq!(
        log.matches(" ⏳ started").count(),
        1,
        "one agent ran: {log}"
    );
    // The agent's own line in the checklist is kept.
    assert!(read(dir.join("SUT-CHECKLIST.md")).contains(&"x".repeat(8192)));
    std::fs::remove_file(dir.join("filler")).unwrap();
    let out = run_with(&dir, "complete.sh", &["--resume"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(all(&dir, "✅"), "{:?}", statuses(&dir));
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_failing_agent_marks_its_row_failed_with_the_reason() {
    let dir = campaign("fail");
    let out = run_with(&dir, "fail.sh", &[]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(all(&dir, "❌"), "{:?}", statuses(&dir));
    assert!(
        log.contains("CORE-001 ❌ failed") && log.contains("exited with code 3"),
        "{log}"
    );
    assert!(log.contains("cannot reach the system under test"), "{log}");
    let session = last_session(&dir);
    assert_eq!(session["outcome"], "finished-with-failures");
    assert!(
        session["items"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("code 3")
    );
    assert!(
        !dir.join("runs/tier-1-core-reliability/tier-1-core-reliability-FINAL-REPORT.md")
            .exists()
    );
}

#[test]
fn a_completion_claim_without_a_report_fails() {
    let dir = campaign("noreport");
    let out = run_with(&dir, "no-report.sh", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(all(&dir, "❌"));
    assert!(text(&out.stderr).contains("no FINAL_REPORT.md"));
}

#[test]
fn a_hanging_agent_is_killed_at_the_timeout_with_no_orphan() {
    let dir = campaign("hang");
    std::fs::write(
        dir.join("SUT-CHECKLIST.md"),
        "## Tier 1: Core reliability\n\n| Status | ID | Title | Priority | Risk |\n|---|---|---|---|---|\n| ☐ | CORE-001 | Hang | P0 | High |\n",
    )
    .unwrap();
    let out = run_with(&dir, "hang.sh", &["--timeout", "1s"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{log}");
    assert!(all(&dir, "❌"));
    assert!(log.contains("killed at the timeout"), "{log}");
    let pids = pids(&item_dir(&dir, "CORE-001").join("pids"));
    assert_eq!(pids.len(), 2, "the agent and its child");
    for pid in pids {
        wait_until(&format!("process {pid} to be gone"), || dead(pid));
    }
}

#[test]
fn infinite_mode_adds_rows_until_rounds_add_nothing() {
    let dir = campaign("infinite");
    let out = run_with(
        &dir,
        "synthesise.sh",
        &["--mode", "infinite", "--idle-rounds", "2"],
    );
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let ids: Vec<String> = statuses(&dir).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids,
        [
            "CORE-002",
            "CORE-001",
            "CORE-003",
            "CORE-010",
            "SEC-001",
            "SEC-002",
            "CHAOS-001"
        ]
    );
    assert!(all(&dir, "✅"));
    let file = read(dir.join("SUT-CHECKLIST.md"));
    assert!(file.contains("## Tier 3: Chaos"), "{file}");
    assert!(
        log.contains("dropped row 2: CORE-001: the id is already in the checklist"),
        "{log}"
    );
    assert!(log.contains("dropped row 3"), "{log}");
    assert!(
        log.contains("2 synthesis round(s) in a row added nothing"),
        "{log}"
    );
    // Three rounds (one that added, two idle), each answer kept raw.
    let raw: Vec<_> = std::fs::read_dir(dir.join(".afk/synthesis"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "txt"))
        .collect();
    assert_eq!(raw.len(), 3);
    assert_eq!(last_session(&dir)["rows_added"], 2);
    assert!(
        dir.join("runs/tier-3-chaos/tier-3-chaos-FINAL-REPORT.md")
            .exists()
    );
}

#[test]
fn malformed_synthesis_adds_nothing_and_is_logged() {
    let dir = campaign("malformed");
    let before_rows = statuses(&dir).len();
    let out = run_with(
        &dir,
        "malformed-synthesis.sh",
        &["--mode", "infinite", "--idle-rounds", "1"],
    );
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("does not parse"), "{log}");
    assert_eq!(statuses(&dir).len(), before_rows);
}

fn spawn_run(dir: &Path, script: &str, extra: &[&str]) -> Child {
    let command = agent(script);
    let mut args = vec!["run", "--runtime", "command", "--agent-command", &command];
    args.extend_from_slice(extra);
    afk_cmd(dir, &args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the run has `n` agents started and recorded with their groups.
fn wait_for_agents(dir: &Path, n: usize) -> Vec<u32> {
    let mut found = Vec::new();
    wait_until("agents in flight", || {
        let Ok(t) = std::fs::read_to_string(dir.join(".afk/active-run.json")) else {
            return false;
        };
        let Ok(v) = serde_json::from_str::<Value>(&t) else {
            return false;
        };
        found = v["in_flight"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|f| f["pgid"].as_u64())
                    .map(|p| p as u32)
                    .collect()
            })
            .unwrap_or_default();
        found.len() == n
    });
    found
}

#[test]
fn resume_after_a_killed_run_puts_its_rows_back_and_stops_its_agents() {
    let dir = campaign("resume");
    let mut child = spawn_run(&dir, "slow.sh", &["--batch-size", "2"]);
    let groups = wait_for_agents(&dir, 2);
    child.kill().unwrap();
    child.wait().unwrap();
    // The agents die with their runner, even by SIGKILL (their tether).
    for pgid in &groups {
        wait_until("the killed runner's agents to die with it", || dead(*pgid));
    }
    assert_eq!(statuses(&dir).iter().filter(|(_, g)| g == "⏳").count(), 2);

    // Without --resume the runner refuses and says what to do.
    let refused = run_with(&dir, "complete.sh", &[]);
    assert_eq!(refused.status.code(), Some(2));
    let why = text(&refused.stderr);
    assert!(
        why.contains("died") && why.contains("--resume") && why.contains("CORE-001"),
        "{why}"
    );
    let status = text(&afk(&dir, &["status"]).stdout);
    assert!(status.contains("died without cleaning up"), "{status}");

    let out = run_with(&dir, "complete.sh", &["--resume"]);
    let log = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    let turned = log
        .lines()
        .find(|l| l.contains("resume: turned"))
        .unwrap_or_default();
    assert!(
        turned.contains("CORE-001") && turned.contains("CORE-002"),
        "{log}"
    );
    assert!(all(&dir, "✅"));
}

/// A recorded process group is signalled only while it is provably the agent
/// afk started: never pgid 1, never a stranger whose pid was reused, never
/// another campaign's agents named by a copied file.
#[test]
fn a_hostile_or_stale_active_run_file_never_makes_afk_signal_a_stranger() {
    let dir = campaign("hostile-state");
    let mut stranger = Command::new("sleep")
        .arg("60")
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = stranger.id();
    std::fs::create_dir_all(dir.join(".afk")).unwrap();
    let forged = serde_json::json!({
        "pid": 999_999, "started_at": "2026-11-21T10:00:00Z", "session": ".afk/s.json",
        "checklist": "SUT-CHECKLIST.md",
        "in_flight": [
            {"id": "CORE-001", "pgid": pgid, "pgid_started": 1, "started_at": "t", "log": "l"},
            {"id": "CORE-002", "pgid": 1, "pgid_started": 1, "started_at": "t", "log": "l"},
            {"id": "CORE-003", "pgid": pgid, "started_at": "t", "log": "l"}
        ]
    });
    std::fs::write(dir.join(".afk/active-run.json"), forged.to_string()).unwrap();
    let out = afk(&dir, &["cancel"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!("left process group {pgid}")),
        "{said}"
    );
    assert!(!dead(pgid), "a stranger was signalled");

    // A file copied from a live campaign names that campaign's agents.
    let a = campaign("live-a");
    let b = campaign("copy-b");
    let mut running = spawn_run(&a, "slow.sh", &["--batch-size", "1"]);
    let groups = wait_for_agents(&a, 1);
    std::fs::create_dir_all(b.join(".afk")).unwrap();
    std::fs::copy(
        a.join(".afk/active-run.json"),
        b.join(".afk/active-run.json"),
    )
    .unwrap();
    let out = afk(&b, &["cancel"]);
    let said = text(&out.stdout);
    assert!(said.contains("names another campaign"), "{said}");
    assert!(!dead(groups[0]), "campaign A's agent was stopped from B");
    assert!(
        running.try_wait().unwrap().is_none(),
        "campaign A's runner was stopped from B"
    );
    let stop = afk(&a, &["cancel"]);
    assert_eq!(stop.status.code(), Some(0));
    running.wait().unwrap();
    stranger.kill().unwrap();
    stranger.wait().unwrap();
}

/// `afk cancel` signals only the runner that holds this campaign's lock: a
/// forged active-run file naming a live process, with that process's real
/// start time and this campaign's id, signals nothing. And `cancel` and
/// `--resume` never signal agents themselves.
#[test]
fn a_forged_file_with_a_real_start_time_signals_nothing() {
    let dir = campaign("forged-start");
    let mut victim = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = victim.id();
    let started = afk_process::start_time(pid).unwrap();
    let campaign_id = std::fs::canonicalize(&*dir).unwrap().display().to_string();
    std::fs::create_dir_all(dir.join(".afk")).unwrap();
    // Someone else holds the lock, so cancel takes the live-runner path.
    let holder = std::fs::File::create(dir.join(".afk/lock")).unwrap();
    holder.try_lock().unwrap();
    let forged = serde_json::json!({
        "pid": pid, "runner_started": started, "campaign": campaign_id,
        "started_at": "2026-11-21T10:00:00Z", "session": ".afk/s.json",
        "checklist": "SUT-CHECKLIST.md",
        "in_flight": [{"id": "CORE-001", "pgid": pid, "pgid_started": started, "started_at": "t", "log": "l"}]
    });
    std::fs::write(dir.join(".afk/active-run.json"), forged.to_string()).unwrap();
    let out = afk(&dir, &["cancel"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("nothing was signalled"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dead(pid), "a process the forged file named was signalled");
    drop(holder);
    // With the lock free, the "dead run" it names is tidied, and its
    // recorded agent (the same live process) is still not signalled.
    let out = afk(&dir, &["cancel"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(!dead(pid), "a process the forged file named was signalled");
    victim.kill().unwrap();
    victim.wait().unwrap();
}

/// Removing `.afk/lock` under a running campaign does not let a second
/// runner take it over, nor stop the first one's agents.
#[test]
fn removing_the_lock_file_mid_run_lets_no_second_runner_stop_the_first() {
    let dir = campaign("lock-removed");
    let mut first = spawn_run(&dir, "slow.sh", &["--batch-size", "1"]);
    let groups = wait_for_agents(&dir, 1);
    std::fs::remove_file(dir.join(".afk/lock")).unwrap();
    for args in [&["--resume"][..], &[][..]] {
        let second = run_with(&dir, "complete.sh", args);
        assert_eq!(
            second.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&second.stderr)
        );
        assert!(
            text(&second.stderr).contains("still works this campaign"),
            "{}",
            text(&second.stderr)
        );
        assert!(
            !dead(groups[0]),
            "{args:?}: the first runner's agent was stopped"
        );
    }
    let cancel = afk(&dir, &["cancel"]);
    assert_eq!(cancel.status.code(), Some(2), "{}", text(&cancel.stdout));
    assert!(
        !dead(groups[0]),
        "cancel stopped an agent without its runner"
    );
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first runner was stopped"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    wait_until("the first runner's agent to die with it", || {
        dead(groups[0])
    });
}

/// One runner per campaign, whatever the entry point: two resumes at once
/// run every item once.
#[test]
fn two_resumes_at_once_run_each_item_once() {
    let dir = campaign("double-resume");
    let mut child = spawn_run(&dir, "slow.sh", &["--batch-size", "2"]);
    wait_for_agents(&dir, 2);
    child.kill().unwrap();
    child.wait().unwrap();
    let first = spawn_run(&dir, "complete.sh", &["--resume", "--batch-size", "5"]);
    let second = spawn_run(&dir, "complete.sh", &["--resume", "--batch-size", "5"]);
    let codes = [
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    ];
    let mut got: Vec<i32> = codes.iter().map(|o| o.status.code().unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, [0, 2], "one resume runs, the other is refused");
    assert!(all(&dir, "✅"));
    // Each item's agent ran once after the resume: one log per item from
    // the resumed run, besides the killed run's.
    for id in ["CORE-001", "CORE-002", "CORE-003", "SEC-001", "SEC-002"] {
        let results = item_dir(&dir, id).join("results");
        let logs = std::fs::read_dir(results).unwrap().count();
        assert!(logs <= 2, "{id} ran {logs} times");
    }
}

/// Ids name directories: one that is not a single safe path component is
/// refused before anything starts; a checklist linked outside the campaign
/// is refused, one linked inside is followed and stays a link.
#[test]
fn unsafe_ids_and_links_outside_the_campaign_are_refused() {
    let dir = campaign("unsafe-id");
    let path = dir.join("SUT-CHECKLIST.md");
    let text_before = read(&path).replace("CORE-003", "../../../x");
    std::fs::write(&path, &text_before).unwrap();
    let out = run_with(&dir, "complete.sh", &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("\"../../../x\": it holds a path separator"),
        "{err}"
    );
    assert!(!dir.join("runs").exists());
    assert_eq!(read(&path), text_before);

    let outside = campaign("link-target");
    let linked = campaign("linked");
    std::fs::remove_file(linked.join("SUT-CHECKLIST.md")).unwrap();
    std::os::unix::fs::symlink(
        outside.join("SUT-CHECKLIST.md"),
        linked.join("SUT-CHECKLIST.md"),
    )
    .unwrap();
    let out = run_with(&linked, "complete.sh", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("outside the campaign"),
        "{}",
        text(&out.stderr)
    );

    let inside = campaign("linked-inside");
    std::fs::create_dir_all(inside.join("backlog")).unwrap();
    std::fs::rename(
        inside.join("SUT-CHECKLIST.md"),
        inside.join("backlog/real.md"),
    )
    .unwrap();
    std::os::unix::fs::symlink("backlog/real.md", inside.join("SUT-CHECKLIST.md")).unwrap();
    let out = run_with(&inside, "complete.sh", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        std::fs::symlink_metadata(inside.join("SUT-CHECKLIST.md"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(read(inside.join("backlog/real.md")).contains("✅"));
}

/// A link out of the campaign wherever afk writes (`.afk`, `.afk/lock`,
/// `findings/`, a tier's or an item's run directory) is refused before
/// anything is created where it points: the command fails naming the link,
/// and the directory it leads to stays empty.
#[test]
fn links_out_of_the_campaign_are_refused_before_anything_is_written_there() {
    // (the link in the campaign, the name it points to in the outside
    // directory ("" for the directory itself), commands besides `afk run`
    // that must refuse it too)
    let finding: &[&str] = &[
        "finding", "add", "--kind", "bug", "--agent", "a", "--entry", "{}",
    ];
    let cases: [(&str, &str, &[&[&str]]); 5] = [
        (".afk", "", &[&["status"], &["cancel"]]),
        (".afk/lock", "lock", &[&["status"], &["cancel"]]),
        ("findings", "", &[finding]),
        // Tier 1 is done: its report is due, in the linked directory.
        ("runs/tier-1-core-reliability", "", &[]),
        ("runs/tier-2-security/SEC-002", "", &[]),
    ];
    for (link, target, others) in cases {
        let dir = campaign("link-out");
        let outside = Scratch::new("link-out-target");
        if link.starts_with("runs/tier-1") {
            let text = read(dir.join("SUT-CHECKLIST.md"));
            let text = text
                .replace("| ☐ | CORE", "| ✅ | CORE")
                .replace("| ☐ | SEC", "| ❌ | SEC");
            std::fs::write(dir.join("SUT-CHECKLIST.md"), text).unwrap();
        }
        let at = dir.join(link);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(outside.join(target), &at).unwrap();
        let named = std::fs::canonicalize(&*dir).unwrap().join(link);
        let out = run_with(&dir, "complete.sh", &[]);
        let err = text(&out.stderr);
        assert_ne!(out.status.code(), Some(0), "{link}: {err}");
        assert!(
            err.contains(&named.display().to_string()) && err.contains("refused"),
            "{link}: the error names the link: {err}"
        );
        for args in others {
            let out = afk(&dir, args);
            if args[0] == "finding" {
                let err = text(&out.stderr);
                assert_eq!(out.status.code(), Some(2), "{link} {args:?}: {err}");
                assert!(
                    err.contains(&named.display().to_string()),
                    "{link} {args:?}: {err}"
                );
            }
        }
        let left: Vec<_> = std::fs::read_dir(&*outside)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{link}: written outside: {left:?}");
    }
}

#[test]
fn cancel_from_a_second_process_stops_the_run_and_puts_rows_back() {
    let dir = campaign("cancel");
    let mut child = spawn_run(&dir, "slow.sh", &["--batch-size", "2"]);
    let groups = wait_for_agents(&dir, 2);

    // A second runner is refused while this one is alive.
    let second = run_with(&dir, "complete.sh", &[]);
    assert_eq!(second.status.code(), Some(2));
    assert!(text(&second.stderr).contains("already active"));
    let status = text(&afk(&dir, &["status"]).stdout);
    assert!(
        status.contains("active run: pid") && status.contains("CORE-001"),
        "{status}"
    );

    let out = afk(&dir, &["cancel"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let said = text(&out.stdout);
    assert!(said.contains("back to to-do: CORE-001, CORE-002"), "{said}");
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(130));
    assert!(all(&dir, "☐"), "{:?}", statuses(&dir));
    assert!(!dir.join(".afk/active-run.json").exists());
    assert_eq!(last_session(&dir)["outcome"], "cancelled");
    for pgid in groups {
        wait_until("cancelled agents to be gone", || dead(pgid));
    }
    assert!(text(&afk(&dir, &["cancel"]).stdout).contains("no active run"));
}

#[test]
fn ctrl_c_stops_cleanly() {
    let dir = campaign("ctrlc");
    let mut child = spawn_run(&dir, "slow.sh", &["--batch-size", "1"]);
    let groups = wait_for_agents(&dir, 1);
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(130));
    assert!(all(&dir, "☐"));
    assert_eq!(last_session(&dir)["outcome"], "interrupted");
    wait_until("the agent to be gone", || dead(groups[0]));
}

#[test]
fn nothing_starts_when_the_input_is_bad() {
    let check = |name: &str, prepare: &dyn Fn(&Path), args: &[&str], want: &[&str]| {
        let dir = campaign(name);
        prepare(&dir);
        let before = std::fs::read(dir.join("SUT-CHECKLIST.md")).unwrap_or_default();
        let command = agent("complete.sh");
        let mut all_args = vec!["run", "--agent-command", &command];
        all_args.extend_from_slice(args);
        let out = afk(&dir, &all_args);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        for w in want {
            assert!(err.contains(w), "{name}: wanted {w:?} in {err}");
        }
        assert!(!dir.join("runs").exists(), "{name}: an agent ran");
        assert_eq!(
            std::fs::read(dir.join("SUT-CHECKLIST.md")).unwrap_or_default(),
            before,
            "{name}"
        );
    };
    let cmd = ["--runtime", "command"];
    check(
        "config",
        &|d| {
            let c =
                read(d.join("config/run_config.json")).replace("\"credentials_key\"", "\"key\"");
            std::fs::write(d.join("config/run_config.json"), c).unwrap();
        },
        &cmd,
        &["has no \"access.credentials_key\""],
    );
    check(
        "checklist",
        &|d| {
            let c = read(d.join("SUT-CHECKLIST.md"))
                .replace("| ☐ | CORE-003", "| ? | CORE-003")
                .replace("SEC-002", "SEC-001");
            std::fs::write(d.join("SUT-CHECKLIST.md"), c).unwrap();
        },
        &cmd,
        &[
            "2 problem(s)",
            "SUT-CHECKLIST.md:12:",
            "SUT-CHECKLIST.md:19:",
            "SEC-001",
        ],
    );
    check(
        "brief",
        &|d| std::fs::remove_file(d.join("SUT-PACKET.md")).unwrap(),
        &cmd,
        &["cannot read the mission brief", "SUT-PACKET.md"],
    );
    let dir = campaign("claude");
    let out = afk_cmd(&dir, &["run"])
        .env("CLAUDE_BIN", "/nonexistent/claude")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("set CLAUDE_BIN"),
        "{}",
        text(&out.stderr)
    );
    check(
        "runtime",
        &|_| {},
        &["--runtime", "gpt"],
        &["unknown runtime \"gpt\""],
    );
    check(
        "template",
        &|d| std::fs::write(d.join("t.md"), "{{nope}}").unwrap(),
        &["--runtime", "command", "--prompt-template", "t.md"],
        &["unknown placeholder {{nope}}"],
    );
}

#[test]
fn a_dry_run_shows_the_next_round_and_changes_nothing() {
    let dir = campaign("dry");
    let before = read(dir.join("SUT-CHECKLIST.md"));
    let out = run_with(&dir, "complete.sh", &["--dry-run", "--batch-size", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("takes 2 of 5 to-do row(s)"), "{shown}");
    assert!(
        shown.contains("## CORE-001 — Retry storm under partial outage (tier 1, P0)"),
        "{shown}"
    );
    assert!(shown.contains("## CORE-002"), "{shown}");
    assert!(!shown.contains("## CORE-003"), "{shown}");
    // The prompt: brief, fields, where to write, the marker.
    assert!(
        shown.contains("Mission brief: checkout service reliability"),
        "{shown}"
    );
    assert!(shown.contains("ITEM COMPLETE: CORE-001"), "{shown}");
    assert!(
        shown.contains("runs/tier-1-core-reliability/CORE-001/FINAL_REPORT.md"),
        "{shown}"
    );
    assert_eq!(read(dir.join("SUT-CHECKLIST.md")), before);
    assert!(!dir.join("runs").exists() && !dir.join(".afk").exists());
}

#[test]
fn concurrent_finding_writers_get_unique_ids() {
    let dir = campaign("findings");
    let children: Vec<Child> = (0..20)
        .map(|n| {
            afk_cmd(
                &dir,
                &[
                    "finding",
                    "add",
                    "--kind",
                    "bug",
                    "--agent",
                    &format!("agent-{n}"),
                    "--entry",
                    &format!("{{\"title\": \"bug {n}\", \"severity\": \"high\"}}"),
                ],
            )
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let mut ids: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert_eq!(out.status.code(), Some(0));
            text(&out.stdout).trim().to_owned()
        })
        .collect();
    ids.sort();
    let want: Vec<String> = (1..=20).map(|n| format!("BUG-{n:03}")).collect();
    assert_eq!(ids, want);
    let ledger: Value = serde_json::from_str(&read(dir.join("findings/bug.json"))).unwrap();
    assert_eq!(ledger.as_array().unwrap().len(), 20);
    assert!(ledger[0]["created_at"].as_str().unwrap().starts_with("20"));

    // Other kinds count on their own.
    let out = afk(
        &dir,
        &[
            "finding",
            "add",
            "--kind",
            "improvement",
            "--agent",
            "a",
            "--entry",
            "{\"title\": \"t\"}",
            "--entry-id",
            "CORE-001",
        ],
    );
    assert_eq!(text(&out.stdout), "IMP-001\n");
    let list = text(&afk(&dir, &["finding", "list", "--kind", "improvement"]).stdout);
    assert!(
        list.starts_with("IMP-001") && list.contains("CORE-001"),
        "{list}"
    );

    // Bad input: a clear error, nothing written.
    let ledger_before = read(dir.join("findings/bug.json"));
    for (entry, want) in [
        ("not json", "not valid JSON"),
        ("[1]", "must be a JSON object"),
        ("{\"id\": \"BUG-999\"}", "afk stamps itself"),
    ] {
        let out = afk(
            &dir,
            &[
                "finding", "add", "--kind", "bug", "--agent", "a", "--entry", entry,
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{entry}");
        assert!(
            text(&out.stderr).contains(want),
            "{entry}: {}",
            text(&out.stderr)
        );
    }
    assert_eq!(read(dir.join("findings/bug.json")), ledger_before);
    // A corrupt ledger is never overwritten.
    std::fs::write(dir.join("findings/dx.json"), "[{broken").unwrap();
    let out = afk(
        &dir,
        &[
            "finding", "add", "--kind", "dx", "--agent", "a", "--entry", "{}",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("does not parse"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(read(dir.join("findings/dx.json")), "[{broken");
    let agg = afk(&dir, &["finding", "aggregate"]);
    assert_eq!(
        agg.status.code(),
        Some(1),
        "an unreadable ledger is reported"
    );
    let summary: Value = serde_json::from_slice(&agg.stdout).unwrap();
    assert_eq!(summary["total"], 21);
    assert_eq!(summary["unreadable"].as_array().unwrap().len(), 1);
}

/// The backlog stays the user's: rows a human appends while a run works are
/// all still there at the end.
#[test]
fn rows_a_human_appends_during_a_run_are_never_lost() {
    let dir = campaign("human-edits");
    let path = dir.join("SUT-CHECKLIST.md");
    let mut child = spawn_run(&dir, "complete.sh", &["--batch-size", "1"]);
    let writer = {
        let path = path.clone();
        std::thread::spawn(move || {
            for n in 0..15 {
                // As an editor saves: read, change, replace whole.
                let text = std::fs::read_to_string(&path).unwrap();
                let tmp = path.with_extension(format!("edit{n}"));
                std::fs::write(
                    &tmp,
                    format!("{text}| ☐ | HUMAN-{n:03} | added by hand | P2 | Low |\n"),
                )
                .unwrap();
                std::fs::rename(&tmp, &path).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(15));
            }
        })
    };
    writer.join().unwrap();
    let status = child.wait().unwrap();
    assert!(status.code().is_some(), "the run ended");
    let text = read(&path);
    for n in 0..15 {
        assert!(
            text.contains(&format!("HUMAN-{n:03}")),
            "HUMAN-{n:03} was lost:\n{text}"
        );
    }
}
