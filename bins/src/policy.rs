//! `afk policy`: the policy developer's tool.
//!
//! Each command reads one JSON document, calls one pure function of
//! `afk-core` or `checklist`, and prints the answer. It exists so that a rule
//! change can be tried on a hand-written case without a cluster. The JSON
//! shapes here are this tool's own; the core's types carry no serde.

use afk_core::config::KEYS;
use afk_core::machine::next_action_with_rule;
use afk_core::types::priority_from_labels;
use afk_core::{CiStatus, Config, Issue, Phase, RunState, ThreadStatus, plan_dispatch};
use checklist::ChecklistMeta;
use serde_json::{Value, json};

use crate::json_input::{InputError, Obj, parse_document, positive_item, string_item};

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
       required; labeled_by_trusted defaults to false; priority defaults to
       the lowest priority:<n> label, else 0.
  out: {\"decisions\": [{\"repo\", \"number\", \"priority\", \"reason\"}, …] in dispatch
        order, \"skipped\": [{\"repo\", \"number\", \"reason\"}, …]}

next-action — what the watcher does next with one run
  in:  {\"config\": {…}, \"state\": {\"thread_status\": \"running\"|\"idle\"|\"error\"|
        \"needs_input\"|null, \"ci_status\": \"no_signal\"|\"pending\"|\"green\"|\"red\"|null,
        \"pushed\": bool, \"fix_forward_attempts\": n, \"seconds_since_first_red\": n,
        \"seconds_since_dispatch\": n, \"seconds_since_push_seen\": n,
        \"corrective_turn_running\": bool}}
       absent state fields are null / false / 0.
  out: {\"action\": \"wait\"|\"close_success\"|\"fix_forward\"|\"freeze_escalate\"|
        \"escalate_prepush\", \"reason\": \"…\", \"rule\": 1..9}

checklist — the progress checklist the loop keeps on an issue
  in:  {\"phase\": \"worktree\"|\"tests_red\"|\"green\"|\"pushed\"|\"ci\"|\"deployed\"|\"done\",
        \"repo\": \"infra\", \"issue\": 7, \"thread_id\": \"thread-3\",
        \"fix_forward_attempts\": 0, \"default_branch\": \"master\"}
       only phase is required; unknown keys are ignored.
  out: the markdown checklist.

Unknown fields are refused in dispatch and next-action inputs, so a typo never
silently takes a default. Bad input exits 2 with a message naming the field.";

/// Reads the `config` map of an input (absent: the shipped defaults).
fn read_config(root: &Obj<'_>) -> Result<Config, InputError> {
    let Some(value) = root.get("config") else {
        return Ok(Config::default());
    };
    let map = Obj::new(root.path_of("config"), value)?;
    let mut pairs = Vec::new();
    for (key, value) in map.entries() {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            Value::Null => String::new(),
            _ => {
                return Err(InputError {
                    path: map.path_of(key),
                    message: "expected a string (the config is an env-style map)".to_owned(),
                });
            }
        };
        if key.starts_with("AFK_") && !KEYS.iter().any(|k| k.key == key) {
            return Err(InputError {
                path: map.path_of(key),
                message: format!(
                    "not a policy key (expected one of: {})",
                    KEYS.iter().map(|k| k.key).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        pairs.push((key.clone(), text));
    }
    Config::from_pairs(pairs).map_err(|errors| InputError {
        path: root.path_of("config"),
        message: errors.to_string(),
    })
}

fn read_issue(path: String, value: &Value) -> Result<Issue, InputError> {
    let obj = Obj::new(path, value)?;
    obj.deny_unknown(&[
        "repo",
        "number",
        "title",
        "labels",
        "open_blockers",
        "labeled_by_trusted",
        "priority",
    ])?;
    let labels = obj.opt_list("labels", string_item)?.unwrap_or_default();
    let priority = match obj.opt_i64("priority")? {
        Some(p) => p,
        None => priority_from_labels(&labels),
    };
    Ok(Issue {
        repo: obj.req_str("repo")?.trim().to_owned(),
        number: obj.req_positive("number")?,
        title: obj.opt_str("title")?.unwrap_or_default().to_owned(),
        labels,
        open_blockers: obj
            .opt_list("open_blockers", positive_item)?
            .unwrap_or_default(),
        labeled_by_trusted: obj.opt_bool("labeled_by_trusted")?.unwrap_or(false),
        priority,
    })
}

/// `afk policy dispatch`: input JSON text in, output JSON text out.
pub fn dispatch(input: &str) -> Result<String, InputError> {
    let doc = parse_document(input)?;
    let root = Obj::new("", &doc)?;
    root.deny_unknown(&["config", "in_flight_repos", "issues"])?;
    let config = read_config(&root)?;
    let in_flight = root
        .opt_list("in_flight_repos", string_item)?
        .unwrap_or_default();
    let issues = root
        .opt_list("issues", read_issue)?
        .ok_or_else(|| InputError {
            path: "issues".to_owned(),
            message: "missing (expected an array of issues)".to_owned(),
        })?;
    let plan = plan_dispatch(&issues, &config, &in_flight);
    let out = json!({
        "decisions": plan.decisions.iter().map(|d| json!({
            "repo": d.repo,
            "number": d.number,
            "priority": d.priority,
            "reason": d.reason,
        })).collect::<Vec<_>>(),
        "skipped": plan.skipped.iter().map(|s| json!({
            "repo": s.repo,
            "number": s.number,
            "reason": s.reason.to_string(),
        })).collect::<Vec<_>>(),
    });
    Ok(pretty(&out))
}

fn read_named<T: std::str::FromStr<Err = afk_core::types::UnknownName>>(
    obj: &Obj<'_>,
    key: &str,
) -> Result<Option<T>, InputError> {
    obj.opt_str(key)?
        .map(|s| {
            s.parse::<T>().map_err(|e| InputError {
                path: obj.path_of(key),
                message: e.to_string(),
            })
        })
        .transpose()
}

/// `afk policy next-action`: input JSON text in, output JSON text out.
pub fn next_action(input: &str) -> Result<String, InputError> {
    let doc = parse_document(input)?;
    let root = Obj::new("", &doc)?;
    root.deny_unknown(&["config", "state"])?;
    let config = read_config(&root)?;
    let state = Obj::new("state", root.required("state", "an object")?)?;
    state.deny_unknown(&[
        "thread_status",
        "ci_status",
        "pushed",
        "fix_forward_attempts",
        "seconds_since_first_red",
        "seconds_since_dispatch",
        "seconds_since_push_seen",
        "corrective_turn_running",
    ])?;
    let run = RunState {
        thread_status: read_named::<ThreadStatus>(&state, "thread_status")?,
        ci_status: read_named::<CiStatus>(&state, "ci_status")?,
        pushed: state.opt_bool("pushed")?.unwrap_or(false),
        fix_forward_attempts: state.opt_u32("fix_forward_attempts")?.unwrap_or(0),
        seconds_since_first_red: state.opt_u64("seconds_since_first_red")?.unwrap_or(0),
        seconds_since_dispatch: state.opt_u64("seconds_since_dispatch")?.unwrap_or(0),
        seconds_since_push_seen: state.opt_u64("seconds_since_push_seen")?.unwrap_or(0),
        corrective_turn_running: state.opt_bool("corrective_turn_running")?.unwrap_or(false),
    };
    let (rule, action) = next_action_with_rule(&run, &config);
    Ok(pretty(&json!({
        "action": action.kind().as_str(),
        "reason": action.reason(),
        "rule": rule,
    })))
}

/// `afk policy checklist`: input JSON text in, markdown out.
pub fn checklist(input: &str) -> Result<String, InputError> {
    let doc = parse_document(input)?;
    let root = Obj::new("", &doc)?;
    let phase = read_named::<Phase>(&root, "phase")?.ok_or_else(|| InputError {
        path: "phase".to_owned(),
        message:
            "missing (expected one of: worktree, tests_red, green, pushed, ci, deployed, done)"
                .to_owned(),
    })?;
    let meta = ChecklistMeta {
        repo: root.opt_str("repo")?.map(str::to_owned),
        issue: match root.get("issue") {
            None => None,
            Some(_) => Some(root.req_positive("issue")?),
        },
        thread_id: root.opt_str("thread_id")?.map(str::to_owned),
        fix_forward_attempts: root.opt_u32("fix_forward_attempts")?.unwrap_or(0),
        default_branch: root.opt_str("default_branch")?.map(str::to_owned),
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
        assert_eq!(result.unwrap_err().to_string(), expected);
    }

    #[test]
    fn bad_inputs_name_the_field() {
        check_err(
            dispatch("{"),
            "input is not valid JSON: EOF while parsing an object at line 1 column 1",
        );
        check_err(dispatch("[]"), "expected an object, got an array");
        check_err(
            dispatch("{}"),
            "issues: missing (expected an array of issues)",
        );
        check_err(
            dispatch(r#"{"issues": [{"repo": "infra", "number": 0}]}"#),
            "issues[0].number: expected a whole number, 1 or more, got a number",
        );
        check_err(
            dispatch(r#"{"issues": [{"repo": "infra", "number": 1, "labled_by_trusted": true}]}"#),
            "issues[0].labled_by_trusted: unknown field (expected one of: repo, number, title, labels, open_blockers, labeled_by_trusted, priority)",
        );
        check_err(
            dispatch(r#"{"config": {"AFK_KILL_SWITCH": "maybe"}, "issues": []}"#),
            "config: AFK_KILL_SWITCH: cannot use \"maybe\": expected a boolean (1, true, yes, on / 0, false, no, off)",
        );
        check_err(
            dispatch(r#"{"config": {"AFK_ALOWLIST": "infra"}, "issues": []}"#),
            "config.AFK_ALOWLIST: not a policy key (expected one of: AFK_KILL_SWITCH, AFK_ALLOWLIST, AFK_READY_LABEL, AFK_IN_PROGRESS_LABEL, AFK_READY_FOR_HUMAN_LABEL, AFK_FIX_FORWARD_MAX_ATTEMPTS, AFK_FIX_FORWARD_MAX_SECONDS, AFK_PREPUSH_MAX_SECONDS, AFK_CI_START_MAX_SECONDS, AFK_BUDGET_USD)",
        );
        check_err(
            next_action(r#"{"state": {"thread_status": "errored"}}"#),
            "state.thread_status: unknown thread status \"errored\" (expected one of: running, idle, error, needs_input)",
        );
        check_err(
            next_action(r#"{"state": {"pushed": "yes"}}"#),
            "state.pushed: expected a boolean, got a string",
        );
        check_err(next_action("{}"), "state: missing (expected an object)");
        check_err(
            checklist(r#"{"phase": "shipping"}"#),
            "phase: unknown phase \"shipping\" (expected one of: worktree, tests_red, green, pushed, ci, deployed, done)",
        );
        check_err(
            checklist(r#"{"phase": "ci", "issue": "7"}"#),
            "issue: expected a whole number, 1 or more, got a string",
        );
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
