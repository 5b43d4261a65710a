//! Benchmark (not a test): the dispatch policy over an organisation.
//!
//! Run: `cargo run --release -p afk-core --example bench_dispatch [issues] [repos] [iterations]`
//!
//! Method: `issues` ready-ish issues (default 10,000) spread over `repos`
//! repositories (default 200), generated from a fixed seed: about 80 % carry
//! the ready label, 85 % of those were labelled by a trusted collaborator,
//! one in ten has open blockers, one in fifty was handed back to a human,
//! priorities 0-3 from `priority:<n>` labels, repository names in mixed case;
//! three quarters of the repositories are allowlisted (written in another
//! case, with spaces around some), and one in ten is in flight. After one
//! warm-up call, `plan_dispatch` (decisions and every skip with its reason)
//! and `select_dispatchable` (decisions only) each run `iterations` times
//! (default 200) in this process; the minimum, median and maximum wall time
//! per call are printed. The decisions of both are checked to be equal and
//! to hold one issue per eligible repository, so a broken policy cannot
//! produce a fast number. The machines are shared virtual machines: run it
//! a few times, and read the median of a quiet run (the minimum shows the
//! code without the neighbours).
//!
//! With `AFK_BENCH_POLICY_INPUT=<path>` it also writes the same world as an
//! `afk policy dispatch` input, for measuring the command's peak memory:
//! `/usr/bin/time -v target/release/afk policy dispatch <path> > /dev/null`
//! ("Maximum resident set size").

// A benchmark reports on standard output; that is its whole job.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use afk_core::config::Config;
use afk_core::dispatch::{plan_dispatch, select_dispatchable};
use afk_core::types::{Issue, LabelTrust, priority_from_labels};

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n)
    }
}

fn world(issues: usize, repos: usize) -> (Vec<Issue>, Config, Vec<String>) {
    let mut rng = Lcg(42);
    let names: Vec<String> = (0..repos)
        .map(|r| format!("Acme-Org/Service-{r:03}"))
        .collect();
    let mut out = Vec::with_capacity(issues);
    for n in 0..issues {
        let repo = names[rng.next() as usize % repos].clone();
        let mut labels = vec!["bug".to_owned()];
        if !rng.one_in(5) {
            labels.push("Ready-For-Agent".to_owned());
        }
        labels.push(format!("priority:{}", rng.next() % 4));
        if rng.one_in(50) {
            labels.push("ready-for-human".to_owned());
        }
        let open_blockers = if rng.one_in(10) {
            vec![rng.next() % 10_000 + 1]
        } else {
            Vec::new()
        };
        out.push(Issue {
            repo,
            number: n as u64 + 1,
            title: format!("Generated issue {n}"),
            priority: priority_from_labels(&labels),
            labels,
            open_blockers,
            label_trust: LabelTrust::read(!rng.one_in(7)),
        });
    }
    let allowlist = names
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 != 0)
        .map(|(i, n)| {
            if i % 3 == 0 {
                format!(" {} ", n.to_ascii_lowercase())
            } else {
                n.to_ascii_uppercase()
            }
        })
        .collect();
    let in_flight = names.iter().step_by(10).cloned().collect();
    let config = Config {
        kill_switch: false,
        allowlist,
        ..Config::default()
    };
    (out, config, in_flight)
}

fn stats(mut times: Vec<Duration>) -> String {
    times.sort();
    format!(
        "min {:>9.3} ms  median {:>9.3} ms  max {:>9.3} ms",
        times[0].as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3
    )
}

/// The world as `afk policy dispatch` input JSON (names and labels hold no
/// character that needs escaping).
fn policy_input(issues: &[Issue], config: &Config, in_flight: &[String]) -> String {
    let list = |items: &[String]| {
        items
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let rows: Vec<String> = issues
        .iter()
        .map(|i| {
            let blockers: Vec<String> = i.open_blockers.iter().map(u64::to_string).collect();
            format!(
                "{{\"repo\":{:?},\"number\":{},\"title\":{:?},\"labels\":[{}],\"open_blockers\":[{}],\"labeled_by_trusted\":{}}}",
                i.repo,
                i.number,
                i.title,
                list(&i.labels),
                blockers.join(","),
                i.label_trust == LabelTrust::Trusted
            )
        })
        .collect();
    format!(
        "{{\"config\":{{\"AFK_KILL_SWITCH\":false,\"AFK_ALLOWLIST\":{:?}}},\"in_flight_repos\":[{}],\"issues\":[\n{}\n]}}\n",
        config.allowlist.join(","),
        list(in_flight),
        rows.join(",\n")
    )
}

fn main() {
    let mut args = std::env::args().skip(1);
    let issues: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let repos: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let iterations: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let (issues_v, config, in_flight) = world(issues, repos);
    if let Some(path) = std::env::var_os("AFK_BENCH_POLICY_INPUT") {
        std::fs::write(&path, policy_input(&issues_v, &config, &in_flight))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.to_string_lossy()));
    }

    let warm = plan_dispatch(&issues_v, &config, &in_flight);
    let decisions = select_dispatchable(&issues_v, &config, &in_flight);
    assert_eq!(warm.decisions, decisions, "both entry points decide alike");
    assert_eq!(warm.decisions.len() + warm.skipped.len(), issues);
    let mut repos_seen: Vec<String> = decisions
        .iter()
        .map(|d| d.repo.to_ascii_lowercase())
        .collect();
    repos_seen.sort();
    repos_seen.dedup();
    assert_eq!(
        repos_seen.len(),
        decisions.len(),
        "one decision per repository"
    );
    assert!(
        !decisions.is_empty(),
        "the generated world has eligible issues"
    );

    let mut plan_times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        let plan = plan_dispatch(&issues_v, &config, &in_flight);
        plan_times.push(start.elapsed());
        assert_eq!(plan.decisions.len(), decisions.len());
    }
    let mut select_times = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = Instant::now();
        let picked = select_dispatchable(&issues_v, &config, &in_flight);
        select_times.push(start.elapsed());
        assert_eq!(picked.len(), decisions.len());
    }
    println!(
        "dispatch policy: {issues} issues in {repos} repositories, {} decisions, {} skips, {iterations} calls each",
        decisions.len(),
        warm.skipped.len()
    );
    println!("plan_dispatch        {}", stats(plan_times));
    println!("select_dispatchable  {}", stats(select_times));
}
