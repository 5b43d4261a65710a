//! Benchmark (not a test): parse and status write-back on a 10,000-row
//! `SUT-CHECKLIST.md`.
//!
//! Run: `cargo run --release -p checklist --example bench_sut [rows] [iterations]`
//!
//! Method: a generated checklist of `rows` rows (default 10,000) in 10 tiers,
//! each tier one table with the seven spec columns plus an unknown one. After
//! one warm-up pass, each step runs `iterations` times (default 30) and the
//! minimum, median and maximum wall times are printed:
//!
//! - `parse`: `sut::parse` of the whole file;
//! - `set_status`: one cell rewritten (the last row, the worst case for the
//!   copy), given an already parsed item;
//! - `write-back`: what the runner does per status change — read the file,
//!   parse it, find the row by id, rewrite the cell, and replace the file
//!   atomically (temporary file in the same directory, `fsync`, rename: the
//!   steps of `afk_adapters::files::atomic_write`), in the system temp
//!   directory.
//!
//! Every parse is checked to find every row with no diagnostic, and every
//! write-back to change exactly that cell, so a broken parser cannot produce
//! a fast number.

// A benchmark reports on standard output; that is its whole job.
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::time::{Duration, Instant};

use checklist::sut::{self, Status};

fn generate(rows: usize) -> String {
    let tiers = 10;
    let per_tier = rows.div_ceil(tiers);
    let mut out = String::from("# Generated backlog\n\nProse the parser keeps.\n");
    let mut n = 0;
    for t in 1..=tiers {
        out.push_str(&format!("\n## Tier {t}: Generated tier {t}\n\n"));
        out.push_str("| Status | ID | Title | Priority | Risk | Industry | Deployment | Notes |\n");
        out.push_str("|--------|----|-------|----------|------|----------|------------|-------|\n");
        for _ in 0..per_tier {
            if n == rows {
                break;
            }
            let glyph = ["☐", "✅", "❌", ""][n % 4];
            out.push_str(&format!(
                "| {glyph} | GEN-{n:05} | Generated item number {n} with a longer title | P{} | High | Retail | K8s | note {n} |\n",
                n % 3
            ));
            n += 1;
        }
    }
    out
}

fn stats(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let median = samples[samples.len() / 2];
    format!(
        "min {:>9.3?}  median {:>9.3?}  max {:>9.3?}",
        samples[0],
        median,
        samples[samples.len() - 1]
    )
}

fn atomic_replace(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension("md.tmp");
    let mut f = std::fs::File::create(&temp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&temp, path)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rows: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(10_000);
    let iterations: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(30)
        .max(1);
    let text = generate(rows);
    let (parsed, diagnostics) = sut::parse(&text);
    if parsed.items.len() != rows || !diagnostics.is_empty() {
        return Err(format!(
            "generator/parser mismatch: {} rows, {diagnostics:?}",
            parsed.items.len()
        )
        .into());
    }
    let last = parsed.items.last().ok_or("no rows")?.clone();

    let mut parse_times = Vec::new();
    for i in 0..=iterations {
        let start = Instant::now();
        let (c, _) = sut::parse(std::hint::black_box(&text));
        let took = start.elapsed();
        if c.items.len() != rows {
            return Err("parse lost rows".into());
        }
        if i > 0 {
            parse_times.push(took);
        }
    }

    let mut set_times = Vec::new();
    for i in 0..=iterations {
        let start = Instant::now();
        let out = sut::set_status(std::hint::black_box(&text), &last, Status::Done);
        let took = start.elapsed();
        if out.len() != text.len() && last.status != Status::Todo {
            return Err("set_status changed the length unexpectedly".into());
        }
        if i > 0 {
            set_times.push(took);
        }
    }

    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("SUT-CHECKLIST.md");
    std::fs::write(&path, &text)?;
    let mut write_times = Vec::new();
    for i in 0..=iterations {
        let target = &parsed.items[(i * 7919) % rows].id;
        let status = [Status::Running, Status::Done][i % 2];
        let start = Instant::now();
        let current = std::fs::read_to_string(&path)?;
        let (c, _) = sut::parse(&current);
        let item = c
            .items
            .iter()
            .find(|it| &it.id == target)
            .ok_or("row vanished")?;
        let updated = sut::set_status(&current, item, status);
        atomic_replace(&path, updated.as_bytes())?;
        let took = start.elapsed();
        let (after, _) = sut::parse(&std::fs::read_to_string(&path)?);
        if after
            .items
            .iter()
            .find(|it| &it.id == target)
            .map(|it| it.status)
            != Some(status)
        {
            return Err("write-back did not land".into());
        }
        if i > 0 {
            write_times.push(took);
        }
    }

    println!(
        "SUT checklist: {rows} rows, {} bytes, {iterations} iterations after one warm-up",
        text.len()
    );
    println!("parse       {}", stats(parse_times));
    println!("set_status  {}", stats(set_times));
    println!(
        "write-back  {}  (read + parse + set_status + fsync'd atomic replace)",
        stats(write_times)
    );
    Ok(())
}
