//! The JSON formats of `afk policy`, the policy developer's tool.
//!
//! This file is long because each command reads and checks its own input
//! shape, with a test per mistake a policy developer can make.
//!
//! Each command reads one JSON document, calls one pure function of
//! `afk-core` or `checklist`, and prints the answer. It exists so that a rule
//! change can be tried on a hand-written case without a cluster. The JSON
//! shapes here are this tool's own private serde structs (the core's types
//! carry no serde); `serde_path_to_error` puts the field's path in front of
//! every error (`issues[3].number: …`), since the tool is for people editing
//! JSON by hand.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use afk_core::config::{KEYS, RETIRED_KEYS};
use afk_core::machine::{Action, Turn, next_action_with_rule};
use afk_core::types::priority_from_labels;
use afk_core::{CiStatus, Config, Issue, LabelTrust, Phase, RunState, ThreadStatus, plan_dispatch};
use checklist::ChecklistMeta;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

/// The formats, for `afk policy --help` (docs/policy.md says the same at
/// more length).
pub const FORMATS_HELP: &str = "\
INPUT is a JSON file, or standard input when absent or `-`.

dispatch — which ready issues may start now
  in:  {\"config\": {\"AFK_KILL_SWITCH\": \"false\", \"AFK_ALLOWLIST\": \"infra,web\"},
        \"in_flight_repos\": [\"web\"],
        \"issues\": [{\"repo\": \"infra\", \"number\": 7, \"title\": \"…\",
                    \"labels\": [\"ready-for-agent\"], \"open_blockers\": [],
                    \"labeled_by_trusted\": true, \"priority\": 0}]}
       config is the env-style map (missing keys take their defaults, so an
       empty config is disabled); in the issues only repo and number are
       required; labeled_by_trusted is true, false, \"trusted\", \"untrusted\"
       or \"not_read\" (true is \"trusted\", false \"untrusted\"; absent:
       \"untrusted\"; only \"trusted\" is ever dispatched); priority defaults
       to the lowest priority:<n> label, else 0.
  out: {\"decisions\": [{\"repo\", \"number\", \"priority\", \"reason\"}, …] in dispatch
        order, \"skipped\": [{\"repo\", \"number\", \"reason\"}, …]}

next-action — what the watcher does next with one run
  in:  {\"config\": {…}, \"state\": {\"thread_status\": \"running\"|\"idle\"|\"error\"|
        \"needs_input\"|null, \"ci_status\": \"no_signal\"|\"pending\"|\"green\"|\"red\"|null,
        \"pushed\": bool, \"fix_forward_attempts\": n, \"seconds_since_first_red\": n,
        \"seconds_since_dispatch\": n, \"seconds_since_push_seen\": n,
        \"corrective_turn_for_this_commit\": bool, \"thread_gone\": bool,
        \"kill_switch\": bool, \"stop_requested\": bool, \"outcome_recorded\": bool,
        \"attempt\": n, \"thread_turns\": n,
        \"pull\": {\"opened\": bool, \"state\": \"open\"|\"merged\"|\"closed\",
                 \"mergeable\": \"clean\"|\"conflicting\"|\"behind\"|\"blocked\"|\"unknown\",
                 \"review\": \"none\"|\"approved\"|\"changes_requested\"|\"required\",
                 \"handed_over\": bool, \"retargeted\": bool, \"foreign\": bool,
                 \"merge_refused\": bool}
        (a run landing through a pull request)}}
       absent state fields are null / false / 0; corrective_turn_running is
       read as corrective_turn_for_this_commit.
  out: {\"action\": \"wait\"|\"close_success\"|\"fix_forward\"|\"freeze_escalate\"|
        \"escalate_prepush\"|\"stop\"|\"finish\"|\"open_pull_request\"|\"merge\"|
        \"hand_over_review\", \"reason\": \"…\", \"rule\": 1..24,
        \"turn\": {\"thread\": \"same\", \"step\": n} | {\"thread\": \"new\", \"attempt\": n}
        (fix_forward only)}

checklist — the progress checklist the loop keeps on an issue
  in:  {\"phase\": \"worktree\"|\"tests_red\"|\"green\"|\"pushed\"|\"ci\"|\"deployed\"|\"done\",
        \"repo\": \"infra\", \"issue\": 7, \"thread_id\": \"thread-3\",
        \"fix_forward_attempts\": 0, \"default_branch\": \"master\"}
       only phase is required; unknown keys are ignored.
  out: the markdown checklist.

Unknown fields are refused in dispatch and next-action inputs, so a typo never
silently takes a default. Bad input exits 2 with a message naming the field.";

/// One problem with the input, and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// Dotted path of the field (`issues[3].number`); empty for the whole input.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for InputError {}

fn at(path: &str, message: impl Into<String>) -> InputError {
    InputError {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// Reads the whole input into `T`, naming the field of any error.
fn read<T: DeserializeOwned>(text: &str) -> Result<T, InputError> {
    // An object is read straight from the text (an input of 10,000 issues
    // never exists as a JSON tree as well); anything else goes through a
    // tree, to say what it is instead.
    if text.trim_start().starts_with('{') {
        use serde_json::error::Category;
        let not_json = |e: serde_json::Error| at("", format!("input is not valid JSON: {e}"));
        let mut de = serde_json::Deserializer::from_str(text);
        let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            if matches!(
                e.inner().classify(),
                Category::Syntax | Category::Eof | Category::Io
            ) {
                return not_json(e.into_inner());
            }
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            // Read from text, serde adds where; the field path says more.
            let message = match message.rsplit_once(" at line ") {
                Some((m, place)) if place.split(" column ").all(|n| n.parse::<u64>().is_ok()) => {
                    m.to_owned()
                }
                _ => message,
            };
            path_error(path, message)
        })?;
        // Nothing but white space may follow the object.
        de.end().map_err(not_json)?;
        return Ok(value);
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| at("", format!("input is not valid JSON: {e}")))?;
    let kind = match &value {
        Value::Object(_) => None,
        Value::Array(_) => Some("an array"),
        Value::String(_) => Some("a string"),
        Value::Number(_) => Some("a number"),
        Value::Bool(_) => Some("a boolean"),
        Value::Null => Some("null"),
    };
    if let Some(kind) = kind {
        return Err(at("", format!("expected an object, got {kind}")));
    }
    serde_path_to_error::deserialize(value)
        .map_err(|e| path_error(e.path().to_string(), e.into_inner().to_string()))
}

/// An input error at serde's path, with a missing field named in the path.
fn path_error(mut path: String, mut message: String) -> InputError {
    if path == "." || path == "?" {
        path.clear();
    }
    // serde names a missing field in its message at the parent's path;
    // put it in the path, like every other error.
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        path = if path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        };
        message = "missing".to_owned();
    }
    InputError { path, message }
}

/// A whole number, 1 or more (issue numbers).
#[derive(Debug, Clone, Copy)]
struct Positive(u64);

impl<'de> Deserialize<'de> for Positive {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        match value.as_u64() {
            Some(n) if n >= 1 => Ok(Positive(n)),
            _ => Err(D::Error::custom(format!(
                "expected a whole number, 1 or more, got {value}"
            ))),
        }
    }
}

/// An absent `labeled_by_trusted`: unknown means untrusted.
fn untrusted() -> LabelTrust {
    LabelTrust::Untrusted
}

/// `labeled_by_trusted`: the boolean that inputs written before trust had
/// three values hold (`true` is trusted, `false` untrusted), or a name.
fn label_trust<'de, D: Deserializer<'de>>(d: D) -> Result<LabelTrust, D::Error> {
    let value = Value::deserialize(d)?;
    match &value {
        Value::Bool(trusted) => return Ok(LabelTrust::read(*trusted)),
        Value::String(name) => {
            if let Ok(trust) = name.parse() {
                return Ok(trust);
            }
        }
        _ => {}
    }
    Err(D::Error::custom(format!(
        "expected true, false, \"trusted\", \"untrusted\" or \"not_read\", got {value}"
    )))
}

/// A name from one of afk's closed vocabularies (`running`, `green`, …).
fn named<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = afk_core::types::UnknownName>,
{
    Option::<String>::deserialize(d)?
        .map(|s| s.parse::<T>().map_err(D::Error::custom))
        .transpose()
}

/// A value of the env-style config map.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ConfigValue {
    Text(String),
    Flag(bool),
    Number(serde_json::Number),
    Null(()),
}

/// The `config` map of an input (absent: the shipped defaults).
fn config(map: Option<BTreeMap<String, ConfigValue>>) -> Result<Config, InputError> {
    let Some(map) = map else {
        return Ok(Config::default());
    };
    let mut pairs = Vec::new();
    for (key, value) in map {
        let known =
            KEYS.iter().any(|k| k.key == key) || RETIRED_KEYS.iter().any(|(k, _)| *k == key);
        if key.starts_with("AFK_") && !known {
            return Err(at(
                &format!("config.{key}"),
                format!(
                    "not a policy key (expected one of: {})",
                    KEYS.iter().map(|k| k.key).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        let text = match value {
            ConfigValue::Text(s) => s,
            ConfigValue::Flag(b) => b.to_string(),
            ConfigValue::Number(n) => n.to_string(),
            ConfigValue::Null(()) => String::new(),
        };
        pairs.push((key, text));
    }
    Config::from_pairs(pairs).map_err(|errors| at("config", errors.to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DispatchInput {
    config: Option<BTreeMap<String, ConfigValue>>,
    #[serde(default)]
    in_flight_repos: Vec<String>,
    issues: Vec<IssueInput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueInput {
    repo: String,
    number: Positive,
    #[serde(default)]
    title: String,
    #[serde(default)]
    labels: Vec<String>,
    #[serde(default)]
    open_blockers: Vec<Positive>,
    #[serde(default = "untrusted", deserialize_with = "label_trust")]
    labeled_by_trusted: LabelTrust,
    priority: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NextActionInput {
    config: Option<BTreeMap<String, ConfigValue>>,
    state: StateInput,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateInput {
    #[serde(default, deserialize_with = "named")]
    thread_status: Option<ThreadStatus>,
    #[serde(default, deserialize_with = "named")]
    ci_status: Option<CiStatus>,
    #[serde(default)]
    pushed: bool,
    #[serde(default)]
    fix_forward_attempts: u32,
    #[serde(default)]
    seconds_since_first_red: u64,
    #[serde(default)]
    seconds_since_dispatch: u64,
    #[serde(default)]
    seconds_since_push_seen: u64,
    /// The name older inputs use for `corrective_turn_for_this_commit`.
    #[serde(default)]
    corrective_turn_running: bool,
    #[serde(default)]
    corrective_turn_for_this_commit: bool,
    #[serde(default)]
    outcome_recorded: bool,
    #[serde(default)]
    stop_requested: bool,
    #[serde(default)]
    kill_switch: bool,
    #[serde(default)]
    thread_gone: bool,
    #[serde(default)]
    attempt: u32,
    #[serde(default)]
    thread_turns: u32,
    #[serde(default)]
    pull: Option<PullInput>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PullInput {
    #[serde(default)]
    opened: bool,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    mergeable: Option<String>,
    #[serde(default)]
    review: Option<String>,
    #[serde(default)]
    handed_over: bool,
    #[serde(default)]
    retargeted: bool,
    #[serde(default)]
    foreign: bool,
    #[serde(default)]
    merge_refused: bool,
}

impl PullInput {
    fn facts(&self) -> Result<afk_core::land::PullFacts, InputError> {
        use afk_core::land::{Mergeable as M, PullFacts, PullState as P, ReviewState as R};
        let bad = |field: &str, value: &str, expected: &str| InputError {
            path: format!("state.pull.{field}"),
            message: format!("{value:?} is not one of {expected}"),
        };
        let state = match self.state.as_deref().unwrap_or("open") {
            "open" => P::Open,
            "merged" => P::Merged,
            "closed" => P::ClosedUnmerged,
            other => return Err(bad("state", other, "open, merged, closed")),
        };
        let mergeable = match self.mergeable.as_deref().unwrap_or("unknown") {
            "clean" => M::Clean,
            "conflicting" => M::Conflicting,
            "behind" => M::Behind,
            "blocked" => M::Blocked,
            "unknown" => M::Unknown,
            other => {
                return Err(bad(
                    "mergeable",
                    other,
                    "clean, conflicting, behind, blocked, unknown",
                ));
            }
        };
        let review = match self.review.as_deref().unwrap_or("none") {
            "none" => R::None,
            "approved" => R::Approved,
            "changes_requested" => R::ChangesRequested,
            "required" => R::Required,
            other => {
                return Err(bad(
                    "review",
                    other,
                    "none, approved, changes_requested, required",
                ));
            }
        };
        Ok(PullFacts {
            opened: self.opened,
            state,
            mergeable,
            review,
            handed_over: self.handed_over,
            retargeted: self.retargeted,
            foreign: self.foreign,
            merge_refused: self.merge_refused,
        })
    }
}

/// Unknown keys are ignored here (a run record can be pasted whole).
#[derive(Debug, Deserialize)]
struct ChecklistInput {
    #[serde(default, deserialize_with = "named")]
    phase: Option<Phase>,
    repo: Option<String>,
    issue: Option<Positive>,
    thread_id: Option<String>,
    #[serde(default)]
    fix_forward_attempts: u32,
    default_branch: Option<String>,
}

/// `afk policy dispatch`: input JSON text in, output JSON text out.
///
/// # Errors
/// An [`InputError`] naming the field.
pub fn dispatch(input: &str) -> Result<String, InputError> {
    let input: DispatchInput = read(input)?;
    let config = config(input.config)?;
    let issues: Vec<Issue> = input
        .issues
        .into_iter()
        .map(|i| Issue {
            priority: i
                .priority
                .unwrap_or_else(|| priority_from_labels(&i.labels)),
            repo: i.repo.trim().to_owned(),
            number: i.number.0,
            title: i.title,
            labels: i.labels,
            open_blockers: i.open_blockers.into_iter().map(|b| b.0).collect(),
            label_trust: i.labeled_by_trusted,
        })
        .collect();
    let plan = plan_dispatch(&issues, &config, &input.in_flight_repos);
    // Written straight from the plan, without a JSON tree in between: an
    // answer for 10,000 issues is one string, not a tree and a string.
    #[derive(serde::Serialize)]
    struct Decided<'a> {
        repo: &'a str,
        number: u64,
        priority: i64,
        reason: &'a str,
    }
    #[derive(serde::Serialize)]
    struct Skipped<'a> {
        repo: &'a str,
        number: u64,
        #[serde(serialize_with = "display")]
        reason: &'a afk_core::SkipReason<'a>,
    }
    #[derive(serde::Serialize)]
    struct Answer<'a> {
        decisions: Vec<Decided<'a>>,
        skipped: Vec<Skipped<'a>>,
    }
    let answer = Answer {
        decisions: plan
            .decisions
            .iter()
            .map(|d| Decided {
                repo: &d.repo,
                number: d.number,
                priority: d.priority,
                reason: &d.reason,
            })
            .collect(),
        skipped: plan
            .skipped
            .iter()
            .map(|s| Skipped {
                repo: s.repo,
                number: s.number,
                reason: &s.reason,
            })
            .collect(),
    };
    // Serialising these plain structs cannot fail.
    let mut text = serde_json::to_string_pretty(&answer).unwrap_or_default();
    text.push('\n');
    Ok(text)
}

fn display<T: fmt::Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

/// `afk policy next-action`: input JSON text in, output JSON text out.
///
/// # Errors
/// An [`InputError`] naming the field.
pub fn next_action(input: &str) -> Result<String, InputError> {
    let input: NextActionInput = read(input)?;
    let config = config(input.config)?;
    let s = input.state;
    let run = RunState {
        outcome_recorded: s.outcome_recorded,
        stop_requested: s.stop_requested,
        kill_switch: s.kill_switch,
        thread_status: s.thread_status,
        thread_gone: s.thread_gone,
        ci_status: s.ci_status,
        pushed: s.pushed,
        fix_forward_attempts: s.fix_forward_attempts,
        corrective_turn_for_this_commit: s.corrective_turn_for_this_commit
            || s.corrective_turn_running,
        attempt: s.attempt,
        thread_turns: s.thread_turns,
        seconds_since_first_red: s.seconds_since_first_red,
        seconds_since_dispatch: s.seconds_since_dispatch,
        seconds_since_push_seen: s.seconds_since_push_seen,
        pull: s.pull.as_ref().map(PullInput::facts).transpose()?,
    };
    let (rule, action) = next_action_with_rule(&run, &config);
    let mut answer = json!({
        "action": action.kind().as_str(),
        "reason": action.reason(),
        "rule": rule,
    });
    if let Action::FixForward { turn, .. } = action {
        answer["turn"] = match turn {
            Turn::SameThread { step } => json!({"thread": "same", "step": step}),
            Turn::NewThread { attempt } => json!({"thread": "new", "attempt": attempt}),
        };
    }
    Ok(pretty(&answer))
}

/// `afk policy checklist`: input JSON text in, markdown out.
///
/// # Errors
/// An [`InputError`] naming the field.
pub fn checklist(input: &str) -> Result<String, InputError> {
    let input: ChecklistInput = read(input)?;
    let phase = input.phase.ok_or_else(|| {
        at(
            "phase",
            "missing (expected one of: worktree, tests_red, green, pushed, ci, deployed, done)",
        )
    })?;
    let meta = ChecklistMeta {
        repo: input.repo,
        issue: input.issue.map(|i| i.0),
        thread_id: input.thread_id,
        fix_forward_attempts: input.fix_forward_attempts,
        default_branch: input.default_branch,
    };
    Ok(checklist::render(phase, &meta))
}

fn pretty(value: &Value) -> String {
    // Pretty-printing a `Value` cannot fail.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_err(result: Result<String, InputError>, expected: &str) {
        let got = result.unwrap_err().to_string();
        assert_eq!(got, expected);
    }

    #[test]
    fn bad_inputs_name_the_field() {
        check_err(
            dispatch("{"),
            "input is not valid JSON: EOF while parsing an object at line 1 column 1",
        );
        check_err(dispatch("[]"), "expected an object, got an array");
        check_err(dispatch("{}"), "issues: missing");
        check_err(
            dispatch(r#"{"issues": [{"repo": "infra", "number": 0}]}"#),
            "issues[0].number: expected a whole number, 1 or more, got 0",
        );
        check_err(
            dispatch(r#"{"issues": [{"repo": "infra", "number": 1, "labled_by_trusted": true}]}"#),
            "issues[0].labled_by_trusted: unknown field `labled_by_trusted`, expected one of `repo`, `number`, `title`, `labels`, `open_blockers`, `labeled_by_trusted`, `priority`",
        );
        check_err(
            dispatch(r#"{"config": {"AFK_KILL_SWITCH": "maybe"}, "issues": []}"#),
            "config: AFK_KILL_SWITCH: cannot use \"maybe\": expected a boolean (1, true, yes, on / 0, false, no, off)",
        );
        check_err(
            dispatch(r#"{"config": {"AFK_ALOWLIST": "infra"}, "issues": []}"#),
            "config.AFK_ALOWLIST: not a policy key (expected one of: AFK_KILL_SWITCH, AFK_ALLOWLIST, AFK_READY_LABEL, AFK_IN_PROGRESS_LABEL, AFK_READY_FOR_HUMAN_LABEL, AFK_STOP_LABEL, AFK_READY_FOR_REVIEW_LABEL, AFK_MAX_RUNS, AFK_MAX_DISPATCH_PER_TICK, AFK_FIX_FORWARD_MAX_ATTEMPTS, AFK_FIX_FORWARD_MAX_SECONDS, AFK_PREPUSH_MAX_SECONDS, AFK_CI_START_MAX_SECONDS, AFK_RATE_FLOOR, AFK_LAND, AFK_LAND_REPOS, AFK_MERGE_METHOD)",
        );
        check_err(
            next_action(r#"{"state": {"thread_status": "errored"}}"#),
            "state.thread_status: unknown thread status \"errored\" (expected one of: running, idle, error, needs_input)",
        );
        check_err(
            next_action(r#"{"state": {"pushed": "yes"}}"#),
            "state.pushed: invalid type: string \"yes\", expected a boolean",
        );
        check_err(next_action("{}"), "state: missing");
        check_err(
            checklist(r#"{"phase": "shipping"}"#),
            "phase: unknown phase \"shipping\" (expected one of: worktree, tests_red, green, pushed, ci, deployed, done)",
        );
        check_err(
            checklist(r#"{"phase": "ci", "issue": "7"}"#),
            "issue: expected a whole number, 1 or more, got \"7\"",
        );
    }

    /// The one answer for a single ready issue in an armed repository,
    /// with `field` (`, "labeled_by_trusted": …` or nothing) in it.
    #[track_caller]
    fn check_trust(field: &str, expected: &str) {
        let out = dispatch(&format!(
            r#"{{"config": {{"AFK_KILL_SWITCH": false, "AFK_ALLOWLIST": "infra"}},
                "issues": [{{"repo": "infra", "number": 7, "labels": ["ready-for-agent"]{field}}}]}}"#
        ))
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        let got = match (v["decisions"].get(0), v["skipped"].get(0)) {
            (Some(_), None) => "dispatch",
            (None, Some(s)) => s["reason"].as_str().unwrap(),
            _ => panic!("not one answer: {out}"),
        };
        assert_eq!(got, expected, "{field}");
    }

    #[test]
    fn label_trust_reads_the_boolean_and_the_three_names() {
        let untrusted = "ready label was not applied by a trusted collaborator";
        check_trust(r#", "labeled_by_trusted": true"#, "dispatch");
        check_trust(r#", "labeled_by_trusted": "trusted""#, "dispatch");
        check_trust(r#", "labeled_by_trusted": false"#, untrusted);
        check_trust(r#", "labeled_by_trusted": "untrusted""#, untrusted);
        check_trust("", untrusted);
        check_trust(
            r#", "labeled_by_trusted": "not_read""#,
            "the ready label's trust was not read this tick",
        );
    }

    #[test]
    fn label_trust_refuses_anything_else_naming_the_field() {
        for value in [r#""yes""#, r#""Trusted""#, "1", "null", "[true]"] {
            check_err(
                dispatch(&format!(
                    r#"{{"issues": [{{"repo": "infra", "number": 1, "labeled_by_trusted": {value}}}]}}"#
                )),
                &format!(
                    r#"issues[0].labeled_by_trusted: expected true, false, "trusted", "untrusted" or "not_read", got {value}"#
                ),
            );
        }
    }

    #[test]
    fn priority_defaults_to_the_labels() {
        let out = dispatch(
            r#"{"config": {"AFK_KILL_SWITCH": false, "AFK_ALLOWLIST": "infra"},
                "issues": [{"repo": "infra", "number": 2, "labels": ["ready-for-agent", "priority:3"], "labeled_by_trusted": true},
                           {"repo": "infra", "number": 9, "labels": ["ready-for-agent", "priority:1"], "labeled_by_trusted": true}]}"#,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["decisions"][0]["number"], 9);
        assert_eq!(v["decisions"][0]["priority"], 1);
    }
}
