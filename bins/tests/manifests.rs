//! The deploy manifests (`docs/deploy/`) agree with the binaries: every env
//! name they set is one the binaries read, the secrets come from files, and
//! the ConfigMap ships disabled. (`.ci/run` also validates them against the
//! Kubernetes schema offline, with kubernetes-validate --strict.)

use std::collections::BTreeSet;
use std::path::Path;

use afk_core::Config;
use bins::loop_cmd::{LoopArgs, SECRET_ENV_NAMES};
use clap::Args;

fn deploy(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../docs/deploy")
            .join(name),
    )
    .unwrap()
}

/// Every env name the loop binaries read: clap's settings and the secrets.
fn read_by_binaries() -> BTreeSet<String> {
    let cmd = LoopArgs::augment_args(clap::Command::new("afk-loop"));
    let mut names: BTreeSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned())
        .collect();
    names.extend(SECRET_ENV_NAMES.iter().map(|s| (*s).to_owned()));
    names
}

/// `KEY: "value"` pairs under the ConfigMap's `data:`.
fn configmap_data() -> Vec<(String, String)> {
    let text = deploy("configmap.yaml");
    let data = text.split("\ndata:\n").nth(1).unwrap();
    data.lines()
        .filter(|l| l.starts_with("  ") && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim().split_once(": "))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

fn env_names_in(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("- name: "))
        .filter(|n| n.starts_with("AFK_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_env_name_the_manifests_set_is_read_by_the_binaries() {
    let known = read_by_binaries();
    let mut set: Vec<String> = configmap_data().into_iter().map(|(k, _)| k).collect();
    for cronjob in ["cronjob-poller.yaml", "cronjob-watcher.yaml"] {
        let names = env_names_in(&deploy(cronjob));
        assert!(
            names.contains(&"AFK_GITHUB_TOKEN_FILE".to_owned()),
            "{cronjob} mounts the GitHub token as a file"
        );
        set.extend(names);
    }
    assert!(set.len() > 20);
    let unknown: Vec<&String> = set.iter().filter(|n| !known.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "the manifests set env names no binary reads: {unknown:?}"
    );
    // No secret value is set inline: tokens come from files.
    for secret in SECRET_ENV_NAMES {
        assert!(
            !set.iter().any(|n| n == secret),
            "{secret} must come from a file, not inline"
        );
    }
}

#[test]
fn the_configmap_ships_disabled() {
    let data = configmap_data();
    let get = |k: &str| {
        data.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("AFK_KILL_SWITCH"), Some("true"));
    assert_eq!(get("AFK_ALLOWLIST"), Some(""));
    // Read by the same parser the binaries use: valid, and not armed.
    let config = Config::from_pairs(data.iter().map(|(k, v)| (k.as_str(), v.as_str()))).unwrap();
    assert!(!config.is_armed());
    assert!(config.kill_switch);
}

#[test]
fn the_cronjobs_are_safe_to_run_unattended() {
    for (file, period) in [("cronjob-poller.yaml", 300), ("cronjob-watcher.yaml", 120)] {
        let text = deploy(file);
        for needle in [
            "concurrencyPolicy: Forbid",
            "backoffLimit: 0",
            "readOnlyRootFilesystem: true",
            "runAsNonRoot: true",
            "allowPrivilegeEscalation: false",
            "successfulJobsHistoryLimit:",
            "failedJobsHistoryLimit:",
            "startingDeadlineSeconds:",
        ] {
            assert!(text.contains(needle), "{file} lacks {needle}");
        }
        let active: u64 = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("activeDeadlineSeconds: "))
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            active < period,
            "{file}: activeDeadlineSeconds {active} must stay below the period {period}"
        );
    }
    let deadline: u64 = configmap_data()
        .into_iter()
        .find(|(k, _)| k == "AFK_TICK_DEADLINE_SECONDS")
        .unwrap()
        .1
        .parse()
        .unwrap();
    assert!(
        deadline < 110,
        "the tick deadline stops new work before the watcher's job is killed"
    );
    let rbac = deploy("rbac.yaml");
    assert!(
        rbac.contains("verbs: [\"get\", \"list\"]")
            && rbac.contains("resources: [\"deployments\"]")
    );
    assert!(!rbac.contains("\"*\""), "no wildcard permissions");
}
