//! `afk policy` driven as a user drives it: the real binary, JSON on stdin or
//! in a file, output on stdout, exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bins/ has a parent")
        .to_path_buf()
}

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn afk(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_afk"))
        .args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("afk starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("stdin accepts the input");
    let out = child.wait_with_output().expect("afk finishes");
    Output {
        code: out.status.code().expect("afk exits with a code"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// One line per decision and per skip, for a readable snapshot.
fn summarise(dispatch_output: &str) -> String {
    let v: Value = serde_json::from_str(dispatch_output).expect("dispatch prints JSON");
    let mut out = String::new();
    for d in v["decisions"].as_array().expect("decisions is an array") {
        out.push_str(&format!(
            "dispatch {}#{} (priority {})\n",
            d["repo"].as_str().unwrap(),
            d["number"],
            d["priority"]
        ));
    }
    for s in v["skipped"].as_array().expect("skipped is an array") {
        out.push_str(&format!(
            "skip {}#{}: {}\n",
            s["repo"].as_str().unwrap(),
            s["number"],
            s["reason"].as_str().unwrap()
        ));
    }
    out
}

#[test]
fn dispatch_over_the_realistic_fixture_set() {
    let out = afk(
        &["policy", "dispatch", "fixtures/policy/realistic.json"],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(summarise(&out.stdout), @r"
    dispatch mobile#50 (priority -1)
    dispatch search#12 (priority 0)
    dispatch infra#15 (priority 0)
    dispatch acme/billing#99 (priority 0)
    dispatch api#38 (priority 1)
    skip experiments#1: repository is not on the allowlist
    skip experiments#2: repository is not on the allowlist
    skip infra#3: blocked by open issue(s) #2
    skip web#4: repository already has a run in flight
    skip docs#5: ready label was not applied by a trusted collaborator
    skip docs#6: blocked by open issue(s) #5
    skip docs#8: does not carry the ready label
    skip web#9: repository already has a run in flight
    skip docs#10: handed back to a human (ready-for-human)
    skip infra#21: #15 takes this repository's slot first
    skip infra#22: ready label was not applied by a trusted collaborator
    skip infra#30: handed back to a human (ready-for-human)
    skip api#45: blocked by open issue(s) #40, #38
    skip mobile#52: #50 takes this repository's slot first
    skip mobile#53: ready label was not applied by a trusted collaborator
    skip data#70: blocked by open issue(s) #68, #69
    skip acme/billing#101: #99 takes this repository's slot first
    skip billing#101: repository is not on the allowlist
    skip infra#12: #15 takes this repository's slot first
    skip search#13: #12 takes this repository's slot first
    skip api#40: #38 takes this repository's slot first
    skip api#41: ready label was not applied by a trusted collaborator
    skip infra#7: #15 takes this repository's slot first
    skip acme/billing#120: #99 takes this repository's slot first
    skip web#11: repository already has a run in flight
    skip data#71: ready label was not applied by a trusted collaborator
    skip api#44: #38 takes this repository's slot first
    ");
}

#[test]
fn trust_written_as_a_boolean_or_a_name_decides_alike() {
    // The realistic fixture as policy developers have it (booleans), and
    // with each boolean written as its name: the same answer, byte for byte.
    let path = workspace_root().join("fixtures/policy/realistic.json");
    let text = std::fs::read_to_string(&path).expect("the fixture reads");
    let mut named: Value = serde_json::from_str(&text).expect("the fixture is JSON");
    let mut booleans = 0;
    for issue in named["issues"].as_array_mut().expect("issues is an array") {
        if let Some(trusted) = issue["labeled_by_trusted"].as_bool() {
            issue["labeled_by_trusted"] = if trusted { "trusted" } else { "untrusted" }.into();
            booleans += 1;
        }
    }
    assert!(booleans > 10, "the fixture writes trust as booleans");
    let as_booleans = afk(&["policy", "dispatch", "-"], &text);
    let as_names = afk(&["policy", "dispatch", "-"], &named.to_string());
    assert_eq!(as_booleans.code, 0, "{}", as_booleans.stderr);
    assert_eq!(as_names.code, 0, "{}", as_names.stderr);
    assert_eq!(as_names.stdout, as_booleans.stdout);
}

#[test]
fn trust_not_read_is_skipped_for_it_and_never_dispatched() {
    let input = r#"{"config": {"AFK_KILL_SWITCH": "false", "AFK_ALLOWLIST": "infra,web"},
        "in_flight_repos": ["web"],
        "issues": [
            {"repo": "infra", "number": 1, "labels": ["ready-for-agent"], "labeled_by_trusted": "not_read"},
            {"repo": "infra", "number": 2, "labels": ["ready-for-agent"], "labeled_by_trusted": "untrusted"},
            {"repo": "infra", "number": 3, "labels": ["ready-for-agent"], "labeled_by_trusted": "trusted"},
            {"repo": "infra", "number": 4, "labels": ["ready-for-agent", "afk-stop"], "labeled_by_trusted": "not_read"},
            {"repo": "web", "number": 5, "labels": ["ready-for-agent"], "labeled_by_trusted": "not_read"},
            {"repo": "infra", "number": 6, "labels": ["ready-for-agent"], "labeled_by_trusted": true}
        ]}"#;
    let out = afk(&["policy", "dispatch"], input);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(summarise(&out.stdout), @r"
    dispatch infra#3 (priority 0)
    skip infra#1: the ready label's trust was not read this tick
    skip infra#2: ready label was not applied by a trusted collaborator
    skip infra#4: carries the stop label
    skip web#5: repository already has a run in flight
    skip infra#6: #3 takes this repository's slot first
    ");
}

#[test]
fn the_issue_example_dispatches_infra_7() {
    let input = r#"{"config": {"AFK_KILL_SWITCH": "false", "AFK_ALLOWLIST": "infra,web"}, "in_flight_repos": ["web"], "issues": [{"repo": "infra", "number": 7, "title": "…", "labels": ["ready-for-agent"], "open_blockers": [], "labeled_by_trusted": true, "priority": 0}]}"#;
    let out = afk(&["policy", "dispatch"], input);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["decisions"].as_array().unwrap().len(), 1);
    assert_eq!(v["decisions"][0]["repo"], "infra");
    assert_eq!(v["decisions"][0]["number"], 7);
    assert!(!v["decisions"][0]["reason"].as_str().unwrap().is_empty());
}

#[test]
fn an_empty_config_is_disabled() {
    let input = r#"{"issues": [{"repo": "infra", "number": 7, "labels": ["ready-for-agent"], "labeled_by_trusted": true}]}"#;
    let out = afk(&["policy", "dispatch", "-"], input);
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(summarise(&out.stdout), @"skip infra#7: kill switch is on");
}

#[test]
fn next_action_from_a_file() {
    let out = afk(
        &[
            "policy",
            "next-action",
            "fixtures/policy/next-action-red.json",
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!(out.stdout, @r#"
    {
      "action": "fix_forward",
      "reason": "CI is red on the pushed commit: corrective turn 2, to the same thread",
      "rule": 7,
      "turn": {
        "thread": "same",
        "step": 1
      }
    }
    "#);
}

#[test]
fn next_action_names_every_action() {
    let cases = [
        (r#"{"pushed": true, "ci_status": "green"}"#, "close_success"),
        (
            r#"{"pushed": true, "ci_status": "red", "corrective_turn_running": true}"#,
            "wait",
        ),
        (
            r#"{"pushed": true, "ci_status": "red", "fix_forward_attempts": 5}"#,
            "freeze_escalate",
        ),
        (
            r#"{"pushed": true, "ci_status": "no_signal", "seconds_since_push_seen": 900}"#,
            "freeze_escalate",
        ),
        (r#"{"thread_status": "needs_input"}"#, "escalate_prepush"),
        (
            r#"{"thread_status": "running", "seconds_since_dispatch": 14400}"#,
            "escalate_prepush",
        ),
        (r#"{"thread_status": null, "ci_status": null}"#, "wait"),
        // A run landing through a pull request.
        (
            r#"{"pushed": true, "ci_status": "green", "pull": {}}"#,
            "open_pull_request",
        ),
        (
            r#"{"pushed": true, "ci_status": "green", "pull": {"opened": true, "mergeable": "clean"}}"#,
            "merge",
        ),
        (
            r#"{"pushed": true, "ci_status": "green", "pull": {"opened": true, "mergeable": "clean", "merge_refused": true}}"#,
            "hand_over_review",
        ),
        (
            r#"{"pushed": true, "ci_status": "green", "pull": {"opened": true, "mergeable": "blocked", "handed_over": true}}"#,
            "wait",
        ),
        (
            r#"{"pushed": true, "ci_status": "green", "pull": {"foreign": true}}"#,
            "escalate_prepush",
        ),
        (
            r#"{"pushed": true, "ci_status": "green", "pull": {"opened": true, "state": "merged"}}"#,
            "close_success",
        ),
    ];
    for (state, expected) in cases {
        let out = afk(
            &["policy", "next-action"],
            &format!(r#"{{"state": {state}}}"#),
        );
        assert_eq!(out.code, 0, "{state}: {}", out.stderr);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["action"], expected, "{state}");
    }
}

#[test]
fn checklist_matches_the_spec_byte_for_byte() {
    let out = afk(
        &["policy", "checklist", "fixtures/policy/checklist-ci.json"],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stdout,
        "### infra#7 — AFK run progress (thread thread-3)\n\
         \n\
         - [x] Worktree created\n\
         - [x] Failing test written (TDD red)\n\
         - [x] Implementation passing (TDD green)\n\
         - [x] Pushed to master\n\
         - [~] CI green on pushed commit\n\
         - [ ] Deployed / rolled out\n\
         - [ ] Done — issue closed\n"
    );
}

#[test]
fn checklist_ignores_unknown_meta() {
    let out = afk(
        &["policy", "checklist"],
        r#"{"phase": "done", "colour": "blue"}"#,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout
            .starts_with("### AFK run progress\n\n- [x] Worktree created\n")
    );
    assert!(!out.stdout.contains("blue"));
}

#[test]
fn bad_input_exits_2_naming_the_field() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["policy", "dispatch"],
            "not json",
            "afk: bad input: input is not valid JSON",
        ),
        (
            &["policy", "dispatch"],
            r#"{"issues": [{"number": 3}]}"#,
            "afk: bad input: issues[0].repo: missing",
        ),
        (
            &["policy", "dispatch"],
            r#"{"issues": [], "config": {"AFK_BUDGET_USD": "lots"}}"#,
            "afk: bad input: config: AFK_BUDGET_USD: cannot use \"lots\": expected nothing: this setting is retired",
        ),
        (
            &["policy", "next-action"],
            r#"{"state": {"ci_status": "amber"}}"#,
            "afk: bad input: state.ci_status: unknown CI status \"amber\"",
        ),
        (
            &["policy", "next-action"],
            r#"{"state": {"seconds_since_dispatch": -5}}"#,
            "afk: bad input: state.seconds_since_dispatch: invalid value: integer `-5`, expected u64",
        ),
        (
            &["policy", "next-action"],
            r#"{"state": {"pull": {"mergeable": "maybe"}}}"#,
            "afk: bad input: state.pull.mergeable: \"maybe\" is not one of clean, conflicting, behind, blocked, unknown",
        ),
        (
            &["policy", "checklist"],
            r#"{"repo": "infra"}"#,
            "afk: bad input: phase: missing",
        ),
        (
            &["policy", "checklist", "no/such/file.json"],
            "",
            "afk: cannot read input file no/such/file.json",
        ),
    ];
    for (args, input, expected) in cases {
        let out = afk(args, input);
        assert_eq!(out.code, 2, "{args:?} {input}");
        assert!(out.stdout.is_empty(), "nothing on stdout for bad input");
        assert!(
            out.stderr.starts_with(expected),
            "{args:?} {input}: {}",
            out.stderr
        );
    }
}

#[test]
fn help_documents_the_formats() {
    let out = afk(&["policy", "--help"], "");
    assert_eq!(out.code, 0);
    for needle in [
        "dispatch",
        "next-action",
        "checklist",
        "in_flight_repos",
        "not_read",
        "corrective_turn_running",
        "tests_red",
        "exits 2",
    ] {
        assert!(out.stdout.contains(needle), "help lacks {needle}");
    }
}
