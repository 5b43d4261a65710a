//! The policy settings, read from a string→string map.
//!
//! The process environment and a mounted ConfigMap go through this one parser,
//! so the two can never drift. The defaults dispatch nothing: the kill switch
//! is on and the allowlist is empty, and arming needs both gates opened.
//!
//! This file is long because every policy key has its parser, its error
//! and its default here, with the tests that hold each to its word.
//!
//! A value that cannot be read is an error naming the key and the value, never
//! a guess. Every problem in the map is reported at once. Keys this parser does
//! not know (other settings, unrelated env vars) are ignored: they belong to
//! the binaries and adapters.

use std::fmt;

use crate::land::{LandMode, MergeMethod};

/// One policy setting: its env name, default and meaning. The binaries print
/// these in `--help` and the docs list them, so the table lives in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySpec {
    /// The env / ConfigMap key.
    pub key: &'static str,
    /// The default, as text.
    pub default: &'static str,
    /// What it means, one line.
    pub meaning: &'static str,
}

/// Every key this parser reads, in documentation order.
pub const KEYS: &[KeySpec] = &[
    KeySpec {
        key: "AFK_KILL_SWITCH",
        default: "true",
        meaning: "master off switch",
    },
    KeySpec {
        key: "AFK_ALLOWLIST",
        default: "",
        meaning: "comma-separated repositories that may be automated",
    },
    KeySpec {
        key: "AFK_READY_LABEL",
        default: "ready-for-agent",
        meaning: "the label that arms an issue",
    },
    KeySpec {
        key: "AFK_IN_PROGRESS_LABEL",
        default: "agent-in-progress",
        meaning: "the per-repository lock",
    },
    KeySpec {
        key: "AFK_READY_FOR_HUMAN_LABEL",
        default: "ready-for-human",
        meaning: "stamped when a run is handed back to a human",
    },
    KeySpec {
        key: "AFK_STOP_LABEL",
        default: "afk-stop",
        meaning: "stops a run: the agent is interrupted and a human owns the issue",
    },
    KeySpec {
        key: "AFK_READY_FOR_REVIEW_LABEL",
        default: "ready-for-review",
        meaning: "put on a run's pull request that waits for a human's review",
    },
    KeySpec {
        key: "AFK_MAX_RUNS",
        default: "",
        meaning: "at most this many runs in flight at once, across every repository and executor (empty: no limit)",
    },
    KeySpec {
        key: "AFK_MAX_DISPATCH_PER_TICK",
        default: "",
        meaning: "at most this many new runs started by one poll tick (empty: no limit)",
    },
    KeySpec {
        key: "AFK_FIX_FORWARD_MAX_ATTEMPTS",
        default: "5",
        meaning: "corrective turns after a red CI",
    },
    KeySpec {
        key: "AFK_FIX_FORWARD_MAX_SECONDS",
        default: "3600",
        meaning: "wall clock from the first red verdict",
    },
    KeySpec {
        key: "AFK_PREPUSH_MAX_SECONDS",
        default: "14400",
        meaning: "a run that has pushed nothing after this is stalled",
    },
    KeySpec {
        key: "AFK_CI_START_MAX_SECONDS",
        default: "900",
        meaning: "a pushed commit with no CI signal after this is escalated",
    },
    KeySpec {
        key: "AFK_RATE_FLOOR",
        default: "500",
        meaning: "below this many GitHub requests (or GraphQL points) left, the poller starts nothing new",
    },
    KeySpec {
        key: "AFK_LAND",
        default: "push",
        meaning: "how changes land: push (to the default branch) or pull-request (afk opens and merges a pull request)",
    },
    KeySpec {
        key: "AFK_LAND_REPOS",
        default: "",
        meaning: "per-repository AFK_LAND, e.g. infra=pull-request,web=push",
    },
    KeySpec {
        key: "AFK_MERGE_METHOD",
        default: "squash",
        meaning: "how afk merges a pull request: squash, merge or rebase",
    },
];

/// Keys afk no longer reads. Setting one is an error rather than silence:
/// an operator who set it believes it does something.
pub const RETIRED_KEYS: &[(&str, &str)] = &[(
    "AFK_BUDGET_USD",
    "nothing: this setting is retired (T3 v0.0.27 takes no spend cap, so no run was ever capped by it); remove it",
)];

/// The validated policy settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Master off switch. On by default.
    pub kill_switch: bool,
    /// Repositories that may be automated. Empty by default.
    pub allowlist: Vec<String>,
    /// The label that arms an issue.
    pub ready_label: String,
    /// The label that locks a repository while a run is in flight.
    pub in_progress_label: String,
    /// The label stamped on an issue handed back to a human.
    pub ready_for_human_label: String,
    /// The label that stops a run (whoever applies it).
    pub stop_label: String,
    /// The label on a run's pull request that waits for a human's review.
    pub ready_for_review_label: String,
    /// Corrective turns allowed after a red CI verdict.
    pub fix_forward_max_attempts: u32,
    /// Seconds allowed for fixing forward, from the first red verdict.
    pub fix_forward_max_seconds: u64,
    /// Seconds after dispatch at which a run that pushed nothing is stalled.
    pub prepush_max_seconds: u64,
    /// Seconds after a push at which a commit without CI signal is escalated.
    pub ci_start_max_seconds: u64,
    /// Below this many requests (REST) or points (GraphQL) left in the
    /// tracker's hour, the poller starts nothing new; the watcher, which
    /// finishes runs, carries on.
    pub rate_floor: u64,
    /// At most this many runs in flight at once, across every repository
    /// and executor; `None`: no limit.
    pub max_runs: Option<u32>,
    /// At most this many new runs started by one poll tick; `None`: no
    /// limit.
    pub max_dispatch_per_tick: Option<u32>,
    /// How changes land, unless `land_repos` says otherwise.
    pub land: LandMode,
    /// Per-repository exceptions to `land`.
    pub land_repos: Vec<(String, LandMode)>,
    /// How afk merges a pull request.
    pub merge_method: MergeMethod,
    /// Repositories no longer on the allowlist whose runs in flight are
    /// still watched to their end (afk remembers where it has runs: the
    /// adapters fill this from `AFK_STATE_FILE`). Never dispatched to.
    pub winding_down: Vec<String>,
}

impl Default for Config {
    /// The shipped configuration: disabled, nothing enrolled.
    fn default() -> Self {
        Config {
            kill_switch: true,
            allowlist: Vec::new(),
            ready_label: "ready-for-agent".to_owned(),
            in_progress_label: "agent-in-progress".to_owned(),
            ready_for_human_label: "ready-for-human".to_owned(),
            stop_label: "afk-stop".to_owned(),
            ready_for_review_label: "ready-for-review".to_owned(),
            fix_forward_max_attempts: 5,
            fix_forward_max_seconds: 3600,
            prepush_max_seconds: 14_400,
            ci_start_max_seconds: 900,
            rate_floor: 500,
            max_runs: None,
            max_dispatch_per_tick: None,
            land: LandMode::Push,
            land_repos: Vec::new(),
            merge_method: MergeMethod::Squash,
            winding_down: Vec::new(),
        }
    }
}

/// One key whose value could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key.
    pub key: &'static str,
    /// The value as given.
    pub value: String,
    /// What was expected instead.
    pub expected: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: cannot use {:?}: expected {}",
            self.key, self.value, self.expected
        )
    }
}

impl std::error::Error for ConfigError {}

/// Every key of a map that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_errors(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn render_errors(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

const BOOL_EXPECTED: &str = "a boolean (1, true, yes, on / 0, false, no, off)";
const COUNT_EXPECTED: &str = "a whole number from 0 to 4294967295";
const LIMIT_EXPECTED: &str = "a whole number from 1 to 4294967295, or empty for no limit (to start nothing, turn the kill switch on)";
const SECONDS_EXPECTED: &str = "a whole number of seconds, 0 or more";
const LABEL_EXPECTED: &str = "a label name of at most 50 characters, without commas or control characters, and not '.' or '..'";
const LAND_EXPECTED: &str = "push or pull-request";
const LAND_REPOS_EXPECTED: &str =
    "comma-separated repo=mode pairs, each mode push or pull-request (e.g. infra=pull-request)";
const MERGE_EXPECTED: &str = "squash, merge or rebase";
const ALLOWLIST_EXPECTED: &str = "comma-separated repositories, each `name` or `owner/name` of letters, digits, '.', '-' and '_' (not '.' or '..')";

impl Config {
    /// Reads the policy settings from `(key, value)` pairs (the process env,
    /// or the data of a ConfigMap). Later pairs win over earlier ones for the
    /// same key. Empty (or blank) values mean "use the default".
    ///
    /// Returns every unreadable key at once.
    pub fn from_pairs<I, K, V>(pairs: I) -> Result<Config, ConfigErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut config = Config::default();
        let mut errors = Vec::new();
        // Keep the last value per known key, so the result does not depend on
        // how many times a key was given before.
        let mut values: Vec<(&'static str, String)> = Vec::new();
        for (key, value) in pairs {
            if let Some((retired, expected)) = RETIRED_KEYS.iter().find(|(k, _)| *k == key.as_ref())
                && !value.as_ref().trim().is_empty()
            {
                errors.push(ConfigError {
                    key: retired,
                    value: value.as_ref().to_owned(),
                    expected,
                });
                continue;
            }
            let Some(spec) = KEYS.iter().find(|s| s.key == key.as_ref()) else {
                continue;
            };
            values.retain(|(k, _)| *k != spec.key);
            values.push((spec.key, value.as_ref().to_owned()));
        }
        for (key, raw) in values {
            let value = raw.trim();
            if value.is_empty() {
                continue;
            }
            let bad = |expected| ConfigError {
                key,
                value: raw.clone(),
                expected,
            };
            let result = match key {
                "AFK_KILL_SWITCH" => parse_bool(value)
                    .map(|v| config.kill_switch = v)
                    .ok_or_else(|| bad(BOOL_EXPECTED)),
                "AFK_ALLOWLIST" => {
                    let list = parse_list(value);
                    if list.iter().all(|r| repo_name_ok(r)) {
                        config.allowlist = list;
                        Ok(())
                    } else {
                        Err(bad(ALLOWLIST_EXPECTED))
                    }
                }
                "AFK_READY_LABEL" => parse_label(value)
                    .map(|v| config.ready_label = v)
                    .ok_or_else(|| bad(LABEL_EXPECTED)),
                "AFK_IN_PROGRESS_LABEL" => parse_label(value)
                    .map(|v| config.in_progress_label = v)
                    .ok_or_else(|| bad(LABEL_EXPECTED)),
                "AFK_READY_FOR_HUMAN_LABEL" => parse_label(value)
                    .map(|v| config.ready_for_human_label = v)
                    .ok_or_else(|| bad(LABEL_EXPECTED)),
                "AFK_STOP_LABEL" => parse_label(value)
                    .map(|v| config.stop_label = v)
                    .ok_or_else(|| bad(LABEL_EXPECTED)),
                "AFK_READY_FOR_REVIEW_LABEL" => parse_label(value)
                    .map(|v| config.ready_for_review_label = v)
                    .ok_or_else(|| bad(LABEL_EXPECTED)),
                "AFK_FIX_FORWARD_MAX_ATTEMPTS" => value
                    .parse::<u32>()
                    .map(|v| config.fix_forward_max_attempts = v)
                    .map_err(|_| bad(COUNT_EXPECTED)),
                "AFK_FIX_FORWARD_MAX_SECONDS" => value
                    .parse::<u64>()
                    .map(|v| config.fix_forward_max_seconds = v)
                    .map_err(|_| bad(SECONDS_EXPECTED)),
                "AFK_PREPUSH_MAX_SECONDS" => value
                    .parse::<u64>()
                    .map(|v| config.prepush_max_seconds = v)
                    .map_err(|_| bad(SECONDS_EXPECTED)),
                "AFK_CI_START_MAX_SECONDS" => value
                    .parse::<u64>()
                    .map(|v| config.ci_start_max_seconds = v)
                    .map_err(|_| bad(SECONDS_EXPECTED)),
                "AFK_MAX_RUNS" => parse_limit(value)
                    .map(|v| config.max_runs = Some(v))
                    .ok_or_else(|| bad(LIMIT_EXPECTED)),
                "AFK_MAX_DISPATCH_PER_TICK" => parse_limit(value)
                    .map(|v| config.max_dispatch_per_tick = Some(v))
                    .ok_or_else(|| bad(LIMIT_EXPECTED)),
                "AFK_LAND" => LandMode::parse(value)
                    .map(|v| config.land = v)
                    .ok_or_else(|| bad(LAND_EXPECTED)),
                "AFK_LAND_REPOS" => parse_land_repos(value)
                    .map(|v| config.land_repos = v)
                    .map_err(|_| bad(LAND_REPOS_EXPECTED)),
                "AFK_MERGE_METHOD" => MergeMethod::parse(value)
                    .map(|v| config.merge_method = v)
                    .ok_or_else(|| bad(MERGE_EXPECTED)),
                "AFK_RATE_FLOOR" => value
                    .parse::<u32>()
                    .map(|v| config.rate_floor = u64::from(v))
                    .map_err(|_| bad(COUNT_EXPECTED)),
                _ => Ok(()),
            };
            if let Err(e) = result {
                errors.push(e);
            }
        }
        errors.extend(distinct_labels(&config));
        // An entry the allowlist does not name (`acme/infra` beside
        // `infra`) would silently change nothing.
        if let Some((r, _)) = config.land_repos.iter().find(|(r, _)| !config.allows(r)) {
            errors.push(ConfigError {
                key: "AFK_LAND_REPOS",
                value: r.clone(),
                expected: "repositories named as AFK_ALLOWLIST names them",
            });
        }
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// Both gates open: the kill switch is off and at least one repository is
    /// enrolled. Either gate alone leaves the loop inert.
    pub fn is_armed(&self) -> bool {
        !self.kill_switch && !self.allowlist.is_empty()
    }

    /// How `repo` (named as the allowlist names it) lands: its
    /// `AFK_LAND_REPOS` entry, else `AFK_LAND`.
    pub fn land_mode(&self, repo: &str) -> LandMode {
        self.land_repos
            .iter()
            .find(|(r, _)| crate::types::same_repo(r, repo))
            .map_or(self.land, |(_, m)| *m)
    }

    /// Every repository whose runs in flight are watched: the allowlist,
    /// then those winding down (each once).
    pub fn watched_repos(&self) -> Vec<String> {
        let mut out = self.allowlist.clone();
        for r in &self.winding_down {
            if !out.iter().any(|a| crate::types::same_repo(a, r)) {
                out.push(r.clone());
            }
        }
        out
    }

    /// Whether `repo` is on the allowlist (names compare case-insensitively,
    /// and exactly: `infra` does not admit `someone/infra`).
    pub fn allows(&self, repo: &str) -> bool {
        self.allowlist
            .iter()
            .any(|a| crate::types::same_repo(a, repo))
    }
}

/// A limit: a positive whole number.
fn parse_limit(value: &str) -> Option<u32> {
    value.parse::<u32>().ok().filter(|v| *v > 0)
}

fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn parse_list(value: &str) -> Vec<String> {
    let mut items: Vec<String> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !items.iter().any(|i| crate::types::same_repo(i, item)) {
            items.push(item.to_owned());
        }
    }
    items
}

/// Whether `repo` can name a GitHub repository: `name` or `owner/name`,
/// each part of the characters GitHub allows and neither `.` nor `..` (a
/// dot segment would change the URL it is put in).
/// Reads `AFK_LAND_REPOS`: comma-separated `repo=mode` pairs
/// (`infra=pull-request,acme/web=push`). `Err` names the first entry that
/// does not read.
fn parse_land_repos(text: &str) -> Result<Vec<(String, LandMode)>, String> {
    let mut out: Vec<(String, LandMode)> = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry.split_once('=').and_then(|(repo, mode)| {
            let repo = repo.trim();
            repo_name_ok(repo)
                .then_some(())
                .and(LandMode::parse(mode).map(|m| (repo.to_owned(), m)))
        });
        let Some((repo, mode)) = parsed else {
            return Err(entry.to_owned());
        };
        out.retain(|(r, _)| !crate::types::same_repo(r, &repo));
        out.push((repo, mode));
    }
    Ok(out)
}

fn repo_name_ok(repo: &str) -> bool {
    let part_ok = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    let mut parts = repo.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, None) => part_ok(name),
        (Some(owner), Some(name), None) => part_ok(owner) && part_ok(name),
        _ => false,
    }
}

/// A label name GitHub can hold and afk can put in a URL path: at most 50
/// characters (GitHub's limit), no commas (the listing filter's separator),
/// no control characters, and not `.` or `..` (a dot segment changes the URL
/// it is put in: removing the label `..` would remove every label).
fn parse_label(value: &str) -> Option<String> {
    let ok = value.chars().count() <= 50
        && value != "."
        && value != ".."
        && !value.contains(',')
        && !value.chars().any(char::is_control);
    ok.then(|| value.to_owned())
}

/// The four labels afk writes must differ (case-insensitively, as GitHub
/// compares them): a ready label that is also the lock would start what it
/// locks.
fn distinct_labels(config: &Config) -> Vec<ConfigError> {
    let labels = [
        ("AFK_READY_LABEL", &config.ready_label),
        ("AFK_IN_PROGRESS_LABEL", &config.in_progress_label),
        ("AFK_READY_FOR_HUMAN_LABEL", &config.ready_for_human_label),
        ("AFK_STOP_LABEL", &config.stop_label),
        ("AFK_READY_FOR_REVIEW_LABEL", &config.ready_for_review_label),
    ];
    let mut errors = Vec::new();
    for (i, (key, label)) in labels.iter().enumerate() {
        if let Some((other, _)) = labels[..i]
            .iter()
            .find(|(_, l)| l.eq_ignore_ascii_case(label))
        {
            errors.push(ConfigError {
                key,
                value: (*label).clone(),
                expected: match *other {
                    "AFK_READY_LABEL" => "a label other than AFK_READY_LABEL's",
                    "AFK_IN_PROGRESS_LABEL" => "a label other than AFK_IN_PROGRESS_LABEL's",
                    "AFK_READY_FOR_HUMAN_LABEL" => "a label other than AFK_READY_FOR_HUMAN_LABEL's",
                    _ => "a label other than AFK_STOP_LABEL's",
                },
            });
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        Config::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn the_default_is_disabled_and_inert() {
        let config = parse(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert!(config.kill_switch);
        assert!(config.allowlist.is_empty());
        assert!(!config.is_armed());
    }

    #[test]
    fn either_gate_alone_is_inert() {
        let switch_off = parse(&[("AFK_KILL_SWITCH", "false")]).unwrap();
        assert!(!switch_off.is_armed());
        let enrolled = parse(&[("AFK_ALLOWLIST", "infra")]).unwrap();
        assert!(!enrolled.is_armed());
        let both = parse(&[("AFK_KILL_SWITCH", "off"), ("AFK_ALLOWLIST", "infra")]).unwrap();
        assert!(both.is_armed());
    }

    fn check_bool(value: &str, expected: Option<bool>) {
        let result = parse(&[("AFK_KILL_SWITCH", value)]);
        match expected {
            Some(b) => assert_eq!(result.unwrap().kill_switch, b, "value {value:?}"),
            None => {
                let errors = result.unwrap_err();
                assert_eq!(errors.0.len(), 1);
                assert_eq!(errors.0[0].key, "AFK_KILL_SWITCH");
                assert_eq!(errors.0[0].value, value);
            }
        }
    }

    #[test]
    fn an_allowlist_names_repositories_and_nothing_else() {
        let ok = parse(&[("AFK_ALLOWLIST", "infra, acme/web,Acme-Org/svc_1.io")]).unwrap();
        assert_eq!(ok.allowlist, ["infra", "acme/web", "Acme-Org/svc_1.io"]);
        // A dot segment would change the URL it is put in; a third part,
        // an empty part or a character GitHub does not allow names nothing.
        for bad in [
            "acme/..",
            "..",
            "acme/.",
            "../infra",
            "acme/web/extra",
            "/infra",
            "acme/",
            "acme/we b",
            "acme/web?x=1",
            "acme/web#7",
            "-infra, acme/%2e%2e",
        ] {
            let errors = parse(&[("AFK_ALLOWLIST", bad)]).unwrap_err();
            assert_eq!(errors.0[0].key, "AFK_ALLOWLIST", "{bad}");
            assert!(errors.to_string().contains("owner/name"), "{bad}: {errors}");
        }
        // A name may start with '-' on GitHub's side; afk passes it as data.
        assert_eq!(
            parse(&[("AFK_ALLOWLIST", "-infra")]).unwrap().allowlist,
            ["-infra"]
        );
    }

    #[test]
    fn booleans_are_strict() {
        for v in ["1", "true", "TRUE", " yes ", "On"] {
            check_bool(v, Some(true));
        }
        for v in ["0", "false", "No", "OFF", " off\n"] {
            check_bool(v, Some(false));
        }
        for v in ["2", "y", "enabled", "truee", "-1", "nope"] {
            check_bool(v, None);
        }
        // Empty means "use the default", which is on.
        check_bool("", Some(true));
        check_bool("   ", Some(true));
    }

    #[test]
    fn numbers_that_do_not_parse_are_errors_naming_key_and_value() {
        let err = parse(&[
            ("AFK_FIX_FORWARD_MAX_ATTEMPTS", "five"),
            ("AFK_PREPUSH_MAX_SECONDS", "-1"),
            ("AFK_CI_START_MAX_SECONDS", "60"),
        ])
        .unwrap_err();
        insta::assert_snapshot!(err.to_string(), @r#"AFK_FIX_FORWARD_MAX_ATTEMPTS: cannot use "five": expected a whole number from 0 to 4294967295; AFK_PREPUSH_MAX_SECONDS: cannot use "-1": expected a whole number of seconds, 0 or more"#);
    }

    #[test]
    fn every_key_is_read() {
        let config = parse(&[
            ("AFK_KILL_SWITCH", "no"),
            ("AFK_ALLOWLIST", " infra , ,acme/web,,INFRA"),
            ("AFK_READY_LABEL", "go"),
            ("AFK_IN_PROGRESS_LABEL", "busy"),
            ("AFK_READY_FOR_HUMAN_LABEL", "human"),
            ("AFK_STOP_LABEL", "halt-now"),
            ("AFK_FIX_FORWARD_MAX_ATTEMPTS", "2"),
            ("AFK_FIX_FORWARD_MAX_SECONDS", "60"),
            ("AFK_PREPUSH_MAX_SECONDS", "120"),
            ("AFK_CI_START_MAX_SECONDS", "30"),
            ("AFK_RATE_FLOOR", "40"),
            ("AFK_MAX_RUNS", "7"),
            ("AFK_MAX_DISPATCH_PER_TICK", "2"),
            ("AFK_LAND", "pull-request"),
            ("AFK_LAND_REPOS", "acme/web=push"),
            ("AFK_MERGE_METHOD", "rebase"),
            ("PATH", "/usr/bin"),
        ])
        .unwrap();
        assert_eq!(
            config,
            Config {
                kill_switch: false,
                allowlist: vec!["infra".into(), "acme/web".into()],
                ready_label: "go".into(),
                in_progress_label: "busy".into(),
                ready_for_human_label: "human".into(),
                stop_label: "halt-now".into(),
                ready_for_review_label: "ready-for-review".into(),
                fix_forward_max_attempts: 2,
                fix_forward_max_seconds: 60,
                prepush_max_seconds: 120,
                ci_start_max_seconds: 30,
                rate_floor: 40,
                max_runs: Some(7),
                max_dispatch_per_tick: Some(2),
                land: LandMode::PullRequest,
                land_repos: vec![("acme/web".into(), LandMode::Push)],
                merge_method: MergeMethod::Rebase,
                winding_down: Vec::new(),
            }
        );
        assert_eq!(config.land_mode("infra"), LandMode::PullRequest);
        assert_eq!(config.land_mode("acme/web"), LandMode::Push);
        // An entry the allowlist does not name is an error, never a no-op.
        let err = Config::from_pairs([
            ("AFK_ALLOWLIST", "infra"),
            ("AFK_LAND_REPOS", "acme/infra=pull-request"),
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("AFK_LAND_REPOS") && err.contains("acme/infra"),
            "{err}"
        );
        assert!(config.allows("Infra"));
        assert!(!config.allows("evil/infra"));
        // The KEYS table names exactly the keys the parser reads.
        assert_eq!(KEYS.len(), 17);
    }

    #[test]
    fn a_retired_key_is_an_error_not_silence() {
        let err = parse(&[("AFK_BUDGET_USD", "100"), ("AFK_KILL_SWITCH", "off")]).unwrap_err();
        insta::assert_snapshot!(err.to_string(), @r#"AFK_BUDGET_USD: cannot use "100": expected nothing: this setting is retired (T3 v0.0.27 takes no spend cap, so no run was ever capped by it); remove it"#);
        // Empty is "not set", as for every key.
        assert!(parse(&[("AFK_BUDGET_USD", " ")]).is_ok());
    }

    #[test]
    fn the_last_value_for_a_key_wins() {
        let config = parse(&[("AFK_KILL_SWITCH", "bogus"), ("AFK_KILL_SWITCH", "off")]).unwrap();
        assert!(!config.kill_switch);
    }

    #[test]
    fn impossible_label_names_are_refused() {
        let long = "x".repeat(51);
        for bad in ["a,b", ".", "..", "a\nb", "tab\there", long.as_str()] {
            for key in [
                "AFK_READY_LABEL",
                "AFK_IN_PROGRESS_LABEL",
                "AFK_READY_FOR_HUMAN_LABEL",
                "AFK_STOP_LABEL",
            ] {
                let err = parse(&[(key, bad)]).unwrap_err();
                assert_eq!(err.0[0].key, key, "{bad:?}");
                assert!(err.to_string().contains("not '.' or '..'"), "{err}");
            }
        }
        for good in ["area/ci", "needs: review", "🤖 agent", "x.y", "..."] {
            assert_eq!(
                parse(&[("AFK_READY_LABEL", good)]).unwrap().ready_label,
                good
            );
        }
    }

    #[test]
    fn the_labels_afk_writes_must_differ() {
        let err = parse(&[("AFK_IN_PROGRESS_LABEL", "Ready-For-Agent")]).unwrap_err();
        assert_eq!(err.0[0].key, "AFK_IN_PROGRESS_LABEL");
        assert!(err.to_string().contains("AFK_READY_LABEL"), "{err}");
        let err = parse(&[("AFK_STOP_LABEL", "ready-for-human")]).unwrap_err();
        assert_eq!(err.0[0].key, "AFK_STOP_LABEL");
    }

    proptest! {
        #[test]
        fn the_parser_never_panics(pairs in proptest::collection::vec(
            (prop::sample::select(KEYS.iter().map(|k| k.key.to_owned()).chain(["OTHER".to_owned()]).collect::<Vec<_>>()), ".*"),
            0..12,
        )) {
            let _ = Config::from_pairs(pairs);
        }

        #[test]
        fn unreadable_values_never_arm_the_loop(value in ".*") {
            // Whatever garbage the kill switch holds, the loop is armed only
            // when the value explicitly says off.
            if let Ok(config) = Config::from_pairs([("AFK_KILL_SWITCH", value.as_str()), ("AFK_ALLOWLIST", "infra")]) {
                prop_assert_eq!(config.is_armed(), parse_bool(value.trim()) == Some(false));
            }
        }
    }

    #[test]
    fn the_run_limits_are_positive_or_unset() {
        let c = Config::from_pairs([("AFK_MAX_RUNS", "3"), ("AFK_MAX_DISPATCH_PER_TICK", " 1 ")])
            .unwrap();
        assert_eq!((c.max_runs, c.max_dispatch_per_tick), (Some(3), Some(1)));
        let c = Config::from_pairs([("AFK_MAX_RUNS", ""), ("AFK_MAX_DISPATCH_PER_TICK", "  ")])
            .unwrap();
        assert_eq!((c.max_runs, c.max_dispatch_per_tick), (None, None));
        for bad in ["0", "-1", "three", "1.5", "99999999999"] {
            for key in ["AFK_MAX_RUNS", "AFK_MAX_DISPATCH_PER_TICK"] {
                let err = Config::from_pairs([(key, bad)]).unwrap_err().to_string();
                assert!(
                    err.contains(key) && err.contains("kill switch"),
                    "{key}={bad}: {err}"
                );
            }
        }
    }

    #[test]
    fn land_repos_read_pairs_and_name_the_bad_entry() {
        assert_eq!(
            parse_land_repos("infra=pull-request, acme/web=push,infra=push").unwrap(),
            vec![
                ("acme/web".to_owned(), LandMode::Push),
                ("infra".to_owned(), LandMode::Push)
            ]
        );
        assert_eq!(parse_land_repos("").unwrap(), vec![]);
        assert_eq!(
            parse_land_repos("infra=pull-request,web").unwrap_err(),
            "web"
        );
        assert_eq!(parse_land_repos("infra=merge").unwrap_err(), "infra=merge");
        assert_eq!(parse_land_repos("../x=push").unwrap_err(), "../x=push");
    }
}
