//! Each tick's numbers for Prometheus: written to `AFK_METRICS_FILE` in the
//! node-exporter textfile format (replaced whole by a rename, as the
//! textfile collector requires), and/or pushed to a Pushgateway at
//! `AFK_METRICS_PUSH_URL` (`PUT <url>/metrics/job/afk/tick/<kind>`).
//!
//! Counters (`*_total`) add up across ticks: each tick reads the file it
//! wrote last and adds its own (a file that does not read starts them
//! again, as a restarted exporter would). Gauges are the tick's own:
//! its duration, the runs it drove by what it did with them, the GitHub
//! budget left.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use afk_core::health::Signal;
use afk_core::ports::PortResult;
use afk_loop::{Level, ReportAction};

use crate::http::Http;
use crate::tick::TickRun;

/// One tick, as the metrics see it.
#[derive(Debug, Clone, Copy)]
pub struct TickSample<'a> {
    /// `poll`, `watch` or `stop`.
    pub tick: &'a str,
    /// What it did.
    pub run: &'a TickRun,
    /// How long it took, in seconds.
    pub seconds: f64,
    /// When it ended (unix seconds).
    pub now: i64,
}

/// The series afk writes, with their help and type.
const SERIES: [(&str, &str, &str); 10] = [
    (
        "afk_ticks_total",
        "counter",
        "Ticks run, by kind and result (ok, failed, disabled).",
    ),
    (
        "afk_dispatches_total",
        "counter",
        "Issues dispatched (runs started).",
    ),
    (
        "afk_outcomes_total",
        "counter",
        "Runs ended, by outcome (landed, frozen, handed_back, stopped).",
    ),
    (
        "afk_tick_failures",
        "gauge",
        "Failures in the last tick of this kind (0: it ran clean).",
    ),
    (
        "afk_tick_duration_seconds",
        "gauge",
        "How long the last tick of this kind took.",
    ),
    (
        "afk_tick_last_timestamp_seconds",
        "gauge",
        "When the last tick of this kind ended (unix time).",
    ),
    (
        "afk_runs",
        "gauge",
        "Runs the last watch tick drove, by what it did with them.",
    ),
    (
        "afk_github_requests_remaining",
        "gauge",
        "GitHub's REST budget left this hour, as last reported.",
    ),
    (
        "afk_github_graphql_remaining",
        "gauge",
        "GitHub's GraphQL points left this hour, as last reported.",
    ),
    (
        "afk_health_failing",
        "gauge",
        "1 when the last tick of this kind saw the cause failing (credentials, executor, nothing_enrolled), 0 when it saw it working.",
    ),
];

/// A series key: its name and its rendered labels (`{tick="poll"}`).
type Key = (String, String);

/// The counters of a file afk wrote before (anything else in it is
/// ignored; a line that does not read is skipped).
fn previous_counters(text: &str) -> BTreeMap<Key, f64> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match series.find('{') {
            Some(i) => (&series[..i], &series[i..]),
            None => (series, ""),
        };
        if !name.ends_with("_total") || !SERIES.iter().any(|(n, _, _)| *n == name) {
            continue;
        }
        if let Ok(v) = value.trim().parse::<f64>()
            && v.is_finite()
            && v >= 0.0
        {
            out.insert((name.to_owned(), labels.to_owned()), v);
        }
    }
    out
}

/// The runs of a watch tick by what it last did with each.
fn runs_by_action(run: &TickRun) -> BTreeMap<&'static str, u64> {
    let mut last: BTreeMap<(String, u64), ReportAction> = BTreeMap::new();
    for e in &run.report.entries {
        if let (Some(repo), Some(issue)) = (&e.repo, e.issue)
            && e.thread_id.is_some()
        {
            last.insert((repo.clone(), issue), e.action);
        }
    }
    let mut out = BTreeMap::new();
    for action in last.values() {
        *out.entry(action.as_str()).or_insert(0) += 1;
    }
    out
}

/// The text of the metrics file after `sample`, given what the file held
/// before (`previous`, empty when there was none).
pub fn render(previous: &str, sample: &TickSample<'_>) -> String {
    let tick = sample.tick;
    let report = &sample.run.report;
    let mut counters = previous_counters(previous);
    let mut add = |name: &str, labels: String, n: f64| {
        *counters.entry((name.to_owned(), labels)).or_insert(0.0) += n;
    };
    let failures = report.failures().count();
    let result = if report.disabled {
        "disabled"
    } else if failures > 0 {
        "failed"
    } else {
        "ok"
    };
    add(
        "afk_ticks_total",
        format!("{{tick=\"{tick}\",result=\"{result}\"}}"),
        1.0,
    );
    add(
        "afk_dispatches_total",
        String::new(),
        report.dispatched.len() as f64,
    );
    for e in report.entries.iter().filter(|e| e.level != Level::Error) {
        let outcome = match e.action {
            ReportAction::CloseSuccess => "landed",
            ReportAction::FreezeEscalate => "frozen",
            ReportAction::EscalatePrepush => "handed_back",
            ReportAction::Stop if tick != "poll" => "stopped",
            _ => continue,
        };
        add(
            "afk_outcomes_total",
            format!("{{outcome=\"{outcome}\"}}"),
            1.0,
        );
    }
    let mut gauges: Vec<(String, String, f64)> = vec![
        (
            "afk_tick_failures".into(),
            format!("{{tick=\"{tick}\"}}"),
            failures as f64,
        ),
        (
            "afk_tick_duration_seconds".into(),
            format!("{{tick=\"{tick}\"}}"),
            sample.seconds,
        ),
        (
            "afk_tick_last_timestamp_seconds".into(),
            format!("{{tick=\"{tick}\"}}"),
            sample.now as f64,
        ),
    ];
    if tick == "watch" {
        for (action, n) in runs_by_action(sample.run) {
            gauges.push((
                "afk_runs".into(),
                format!("{{action=\"{action}\"}}"),
                n as f64,
            ));
        }
    }
    let budget = sample.run.github_budget.unwrap_or("token");
    if let Some(left) = sample.run.rate_limit_remaining {
        gauges.push((
            "afk_github_requests_remaining".into(),
            format!("{{budget=\"{budget}\"}}"),
            left as f64,
        ));
    }
    if let Some(b) = sample.run.rate_budget {
        gauges.push((
            "afk_github_graphql_remaining".into(),
            format!("{{budget=\"{budget}\"}}"),
            b.remaining as f64,
        ));
    }
    for cause in afk_core::health::HealthCause::ALL {
        let seen = report.health.iter().filter_map(|s| match s {
            Signal::Failing(c, _) if *c == cause => Some(1.0),
            Signal::Working(c) if *c == cause => Some(0.0),
            _ => None,
        });
        if let Some(v) = seen.reduce(f64::max) {
            gauges.push((
                "afk_health_failing".into(),
                format!("{{tick=\"{tick}\",cause=\"{cause}\"}}"),
                v,
            ));
        }
    }
    let mut out = String::new();
    for (name, kind, help) in SERIES {
        let lines: Vec<String> = if kind == "counter" {
            counters
                .iter()
                .filter(|((n, _), _)| n == name)
                .map(|((n, labels), v)| format!("{n}{labels} {v}"))
                .collect()
        } else {
            gauges
                .iter()
                .filter(|(n, _, _)| n == name)
                .map(|(n, labels, v)| format!("{n}{labels} {v}"))
                .collect()
        };
        if lines.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for l in lines {
            let _ = writeln!(out, "{l}");
        }
    }
    out
}

/// Writes the metrics after a tick to `path`: read what was there, add,
/// replace it whole (a new file beside it, renamed over it).
///
/// # Errors
/// The file cannot be written (named in the message).
pub fn write_file(path: &Path, sample: &TickSample<'_>) -> Result<(), String> {
    let previous = afk_process::files::read_small(path, 1 << 20)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let text = render(&previous, sample);
    // Replaced whole: the textfile collector never reads it half-written.
    afk_process::files::replace_whole(path, text.as_bytes(), 0o644)
        .map_err(|e| format!("AFK_METRICS_FILE {}: {e}", path.display()))
}

/// Pushes the tick's metrics to a Pushgateway: `PUT
/// <url>/metrics/job/afk/tick/<kind>` (one group per tick kind, replaced
/// each time).
///
/// # Errors
/// The gateway did not take them.
pub async fn push(http: &Http, url: &str, sample: &TickSample<'_>) -> PortResult<()> {
    let url = crate::http::join_url(
        url,
        &["metrics", "job", "afk", "tick", sample.tick],
        &[],
        "AFK_METRICS_PUSH_URL",
    )?;
    let body = render("", sample);
    let response = http
        .send(
            http.client()
                .put(url)
                .header("Content-Type", "text/plain; version=0.0.4")
                .body(body),
        )
        .await?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(afk_core::ports::PortError::Transient {
            message: format!("the Pushgateway answered HTTP {status}"),
        })
    }
}

/// Publishes a tick's metrics where the settings say (`file`,
/// `push_url`); a failure is logged, never the tick's.
pub async fn publish(file: Option<&str>, push_url: Option<&str>, sample: &TickSample<'_>) {
    if let Some(path) = file.map(str::trim).filter(|p| !p.is_empty())
        && let Err(e) = write_file(Path::new(path), sample)
    {
        tracing::warn!(action = "metrics", "cannot write the metrics: {e}");
    }
    if let Some(url) = push_url.map(str::trim).filter(|u| !u.is_empty()) {
        let pushed = match Http::new(&crate::http::HttpSettings::default()) {
            Ok(http) => push(&http, url, sample).await,
            Err(e) => Err(e),
        };
        if let Err(e) = pushed {
            tracing::warn!(
                action = "metrics",
                "cannot push the metrics to AFK_METRICS_PUSH_URL: {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use afk_loop::{About, TickReport};

    fn run(report: TickReport) -> TickRun {
        TickRun {
            report,
            api_calls: 3,
            rate_limit_remaining: Some(4900),
            rate_budget: None,
            github_budget: Some("app"),
        }
    }

    #[test]
    fn counters_add_up_across_ticks_and_gauges_are_the_last_ticks() {
        let first = run(TickReport {
            dispatched: vec!["infra#7".into()],
            ..TickReport::default()
        });
        let sample = TickSample {
            tick: "poll",
            run: &first,
            seconds: 0.5,
            now: 1_800_000_000,
        };
        let text = render("", &sample);
        insta::assert_snapshot!(text, @r#"
        # HELP afk_ticks_total Ticks run, by kind and result (ok, failed, disabled).
        # TYPE afk_ticks_total counter
        afk_ticks_total{tick="poll",result="ok"} 1
        # HELP afk_dispatches_total Issues dispatched (runs started).
        # TYPE afk_dispatches_total counter
        afk_dispatches_total 1
        # HELP afk_tick_failures Failures in the last tick of this kind (0: it ran clean).
        # TYPE afk_tick_failures gauge
        afk_tick_failures{tick="poll"} 0
        # HELP afk_tick_duration_seconds How long the last tick of this kind took.
        # TYPE afk_tick_duration_seconds gauge
        afk_tick_duration_seconds{tick="poll"} 0.5
        # HELP afk_tick_last_timestamp_seconds When the last tick of this kind ended (unix time).
        # TYPE afk_tick_last_timestamp_seconds gauge
        afk_tick_last_timestamp_seconds{tick="poll"} 1800000000
        # HELP afk_github_requests_remaining GitHub's REST budget left this hour, as last reported.
        # TYPE afk_github_requests_remaining gauge
        afk_github_requests_remaining{budget="app"} 4900
        "#);
        let mut report = TickReport::default();
        report.error(About::TICK, ReportAction::Read, "GitHub failed");
        report.health = vec![
            Signal::Working(afk_core::health::HealthCause::Credentials),
            Signal::Failing(afk_core::health::HealthCause::Executor, "down".into()),
            Signal::Working(afk_core::health::HealthCause::Executor),
        ];
        report.info(
            About::run("infra", 7, "t-1"),
            ReportAction::CloseSuccess,
            "landed",
        );
        let second = run(report);
        let sample = TickSample {
            tick: "watch",
            run: &second,
            seconds: 1.0,
            now: 1_800_000_060,
        };
        let text = render(&text, &sample);
        for line in [
            "afk_ticks_total{tick=\"poll\",result=\"ok\"} 1",
            "afk_ticks_total{tick=\"watch\",result=\"failed\"} 1",
            "afk_dispatches_total 1",
            "afk_outcomes_total{outcome=\"landed\"} 1",
            "afk_tick_failures{tick=\"watch\"} 1",
            "afk_runs{action=\"close_success\"} 1",
            "afk_health_failing{tick=\"watch\",cause=\"credentials\"} 0",
            "afk_health_failing{tick=\"watch\",cause=\"executor\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
        // A torn or foreign file starts the counters again, never fails.
        let text = render(
            "afk_ticks_total{tick=\"poll\",result=\"ok\"} NaN\ngarbage\n",
            &sample,
        );
        assert!(text.contains("afk_ticks_total{tick=\"watch\",result=\"failed\"} 1"));
        assert!(!text.contains("NaN"));
    }

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("afk.prom");
        let r = run(TickReport::default());
        let sample = TickSample {
            tick: "poll",
            run: &r,
            seconds: 0.1,
            now: 1,
        };
        write_file(&path, &sample).unwrap();
        write_file(&path, &sample).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("afk_ticks_total{tick=\"poll\",result=\"ok\"} 2"),
            "{text}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "nothing left beside it"
        );
        let err = write_file(&dir.path().join("no/such/dir/afk.prom"), &sample).unwrap_err();
        assert!(err.contains("AFK_METRICS_FILE"), "{err}");
    }
}
