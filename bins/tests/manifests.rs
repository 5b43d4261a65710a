//! The deploy manifests (`docs/deploy/`) agree with the binaries: every env
//! name they set is one the binaries read, the secrets come from files, and
//! the ConfigMap ships disabled. (`.ci/run` also validates them against the
//! Kubernetes schema offline, with kubernetes-validate --strict.)

use std::collections::BTreeSet;
use std::path::Path;

use afk_core::Config;
use afk_sim::lock;
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

/// A manifest as JSON (one document).
fn yaml(name: &str) -> serde_json::Value {
    serde_saphyr::from_str(&deploy(name)).unwrap()
}

/// The pod spec of a CronJob manifest.
fn cronjob_pod(name: &str) -> serde_json::Value {
    yaml(name)["spec"]["jobTemplate"]["spec"]["template"]["spec"].clone()
}

/// The CronJobs afk ships.
const CRONJOBS: [&str; 3] = [
    "cronjob-poller.yaml",
    "cronjob-watcher.yaml",
    "cronjob-halt.yaml",
];

/// Why `pod` would be refused by a namespace enforcing the `restricted`
/// Pod Security Standard (Kubernetes 1.33), one line per violation.
/// Source: https://kubernetes.io/docs/concepts/security/pod-security-standards/
/// ("Restricted" table, and the "Baseline" controls it includes).
fn restricted_violations(pod: &serde_json::Value) -> Vec<String> {
    use serde_json::Value;
    let mut out = Vec::new();
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod[host] == true {
            out.push(format!("{host} is true"));
        }
    }
    const VOLUMES: [&str; 8] = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for v in pod["volumes"].as_array().into_iter().flatten() {
        let kinds: Vec<&String> = v
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "name")
            .collect();
        if !kinds.iter().all(|k| VOLUMES.contains(&k.as_str())) {
            out.push(format!(
                "volume {} is of a restricted type {kinds:?}",
                v["name"]
            ));
        }
    }
    let pod_sc = &pod["securityContext"];
    let containers: Vec<&Value> = ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|k| pod[*k].as_array().into_iter().flatten())
        .collect();
    if containers.is_empty() {
        out.push("no containers".into());
    }
    for c in containers {
        let name = &c["name"];
        let sc = &c["securityContext"];
        let either = |field: &str| {
            if sc[field].is_null() {
                pod_sc[field].clone()
            } else {
                sc[field].clone()
            }
        };
        if sc["privileged"] == true {
            out.push(format!("{name}: privileged"));
        }
        if sc["allowPrivilegeEscalation"] != false {
            out.push(format!("{name}: allowPrivilegeEscalation is not false"));
        }
        if either("runAsNonRoot") != true {
            out.push(format!("{name}: runAsNonRoot is not true"));
        }
        if either("runAsUser") == 0 {
            out.push(format!("{name}: runAsUser is 0"));
        }
        let seccomp = either("seccompProfile");
        if !matches!(
            seccomp["type"].as_str(),
            Some("RuntimeDefault" | "Localhost")
        ) {
            out.push(format!(
                "{name}: seccompProfile is not RuntimeDefault or Localhost"
            ));
        }
        let caps = &sc["capabilities"];
        if !caps["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|c| c == "ALL"))
        {
            out.push(format!("{name}: capabilities do not drop ALL"));
        }
        if caps["add"]
            .as_array()
            .is_some_and(|a| a.iter().any(|c| c != "NET_BIND_SERVICE"))
        {
            out.push(format!("{name}: adds a capability beyond NET_BIND_SERVICE"));
        }
        for port in c["ports"].as_array().into_iter().flatten() {
            if port["hostPort"].as_u64().is_some_and(|p| p != 0) {
                out.push(format!("{name}: hostPort"));
            }
        }
    }
    out
}

#[test]
fn every_pod_afk_ships_is_admitted_under_the_restricted_pod_security_standard() {
    let mut pods: Vec<(String, serde_json::Value)> = CRONJOBS
        .iter()
        .map(|c| ((*c).to_owned(), cronjob_pod(c)))
        .collect();
    let template = deploy("agent/pod-template.yaml");
    pods.push((
        "agent/pod-template.yaml".into(),
        serde_saphyr::from_str::<serde_json::Value>(&template).unwrap()["spec"].clone(),
    ));
    // The agent Job afk builds from the sample template, as sent.
    let turn = afk_kube::job::TurnSpec {
        thread: "0f1e2d3c-4b5a-5968-8776-655443322110".into(),
        repo: "acme/infra".into(),
        issue: 7,
        attempt: 0,
        step: 0,
        branch: "main".into(),
        clone_url: "https://github.com/acme/infra.git".into(),
        prompt: "p".into(),
        agent_argv: vec!["claude".into()],
        push_token: true,
    };
    let settings = afk_kube::job::JobSettings {
        template: afk_kube::settings::parse_template(&template).unwrap(),
        deadline_seconds: 600,
        ttl_seconds: 60,
    };
    let job = serde_json::to_value(afk_kube::job::job(&turn, &settings)).unwrap();
    pods.push((
        "the agent's Job".into(),
        job["spec"]["template"]["spec"].clone(),
    ));
    // And a bare template gets afk's own restricted defaults.
    let bare = afk_kube::job::JobSettings {
        template: afk_kube::settings::parse_template(
            "spec:\n  containers:\n  - name: agent\n    image: agent:1\n",
        )
        .unwrap(),
        ..settings
    };
    let job = serde_json::to_value(afk_kube::job::job(&turn, &bare)).unwrap();
    pods.push((
        "a bare template's Job".into(),
        job["spec"]["template"]["spec"].clone(),
    ));
    for (name, pod) in &pods {
        assert_eq!(restricted_violations(pod), Vec::<String>::new(), "{name}");
    }
    // The check can fail: a pod the restricted profile refuses.
    let bad = serde_json::json!({"hostNetwork": true, "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [{"name": "c", "securityContext": {"privileged": true, "capabilities": {"add": ["SYS_ADMIN"]}}}]});
    assert_eq!(
        restricted_violations(&bad).len(),
        8,
        "{:?}",
        restricted_violations(&bad)
    );
}

#[test]
fn the_halt_job_is_shipped_suspended_with_the_cronjobs_settings() {
    let halt = yaml("cronjob-halt.yaml");
    assert_eq!(
        halt["spec"]["suspend"], true,
        "it never runs on its schedule"
    );
    let pod = cronjob_pod("cronjob-halt.yaml");
    let watcher = cronjob_pod("cronjob-watcher.yaml");
    assert_eq!(
        pod["containers"][0]["command"],
        serde_json::json!(["/usr/local/bin/afk", "halt", "--by", "afk-halt Job"])
    );
    for same in ["envFrom", "env", "volumeMounts"] {
        assert_eq!(
            pod["containers"][0][same], watcher["containers"][0][same],
            "{same}"
        );
    }
    assert_eq!(pod["securityContext"], watcher["securityContext"]);
    assert_eq!(pod["serviceAccountName"], "afk");
}

/// The mounted secrets as the kubelet lays them out: `..data` a link to a
/// timestamped directory, each key a link through it; with `fsGroup` the
/// files' group is it and their mode is OR'd with rw-rw---- (the
/// `PodSecurityContext.fsGroup` description in the pinned schemas).
fn kubelet_secret_volume(dir: &Path, files: &[(&str, &str)], mode: u32, fs_group: Option<u32>) {
    use std::os::unix::fs::PermissionsExt;
    let stamp = dir.join("..2026_12_07_10_00_00.000000001");
    std::fs::create_dir_all(&stamp).unwrap();
    for (name, content) in files {
        let file = stamp.join(name);
        std::fs::write(&file, content).unwrap();
        let mode = match fs_group {
            Some(g) => {
                rustix::fs::chown(&file, None, Some(rustix::fs::Gid::from_raw(g))).unwrap();
                mode | 0o660
            }
            None => mode,
        };
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name)).unwrap();
    }
    std::os::unix::fs::symlink(stamp.file_name().unwrap(), dir.join("..data")).unwrap();
    for d in [dir, stamp.as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// An integer field of the pod's security context.
fn pod_id(pod: &serde_json::Value, field: &str) -> Option<u32> {
    pod["securityContext"][field]
        .as_u64()
        .map(|n| u32::try_from(n).unwrap())
}

/// Needs root and `setpriv` (to run the binary as the pod's user);
/// elsewhere it says it skipped, and under `CI=true` it fails: a skipped
/// test never passes silently in CI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stderr)] // a skipped test must say so
async fn the_cronjob_pods_read_their_own_secrets_as_the_non_root_user() {
    if !rustix::process::geteuid().is_root() || which("setpriv").is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "the secrets test needs root and setpriv to run the binary as the pod's user; under CI=true a skipped test fails"
        );
        eprintln!("skipped: needs root and setpriv to run the binary as the pod's user");
        return;
    }
    let w = crate::world::World::new(&["infra"], &[]).await.unwrap();
    for cronjob in CRONJOBS {
        let pod = cronjob_pod(cronjob);
        let user = pod_id(&pod, "runAsUser").unwrap();
        let group = pod_id(&pod, "runAsGroup").unwrap();
        let fs_group = pod_id(&pod, "fsGroup");
        // The secrets' mode as written (Kubernetes reads YAML 1.1, where a
        // leading 0 is octal).
        let text = deploy(cronjob);
        let written = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("defaultMode: "))
            .unwrap();
        let mode = match written.strip_prefix('0') {
            Some(octal) => u32::from_str_radix(octal, 8).unwrap(),
            None => written.parse().unwrap(),
        };
        assert_eq!(mode, 0o400, "{cronjob}: the secrets' mode as shipped");
        for (fs_group, readable) in [(fs_group, true), (None, false)] {
            let dir = tempfile::tempdir().unwrap();
            let mount = dir.path().join("secrets");
            std::fs::create_dir(&mount).unwrap();
            kubelet_secret_volume(
                &mount,
                &[
                    ("github-token", afk_sim::GITHUB_TOKEN),
                    ("t3-token", afk_sim::T3_TOKEN),
                ],
                mode,
                fs_group,
            );
            std::fs::set_permissions(
                dir.path(),
                std::os::unix::fs::PermissionsExt::from_mode(0o755),
            )
            .unwrap();
            let mut groups = vec![group];
            groups.extend(fs_group);
            let out = std::process::Command::new("setpriv")
                .arg(format!("--reuid={user}"))
                .arg(format!("--regid={group}"))
                .arg(format!(
                    "--groups={}",
                    groups
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                ))
                .arg("--")
                .arg(env!("CARGO_BIN_EXE_afk-watcher"))
                .env_clear()
                .env("AFK_KILL_SWITCH", "false")
                .env("AFK_ALLOWLIST", "infra")
                .env("AFK_GITHUB_OWNER", "acme")
                .env("AFK_GITHUB_API_URL", w.sim.uri())
                .env("AFK_T3_URL", w.sim.uri())
                .env("AFK_GITHUB_TOKEN_FILE", mount.join("github-token"))
                .env("AFK_T3_TOKEN_FILE", mount.join("t3-token"))
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            if readable {
                assert_eq!(out.status.code(), Some(0), "{cronjob} as {user}: {stdout}");
            } else {
                assert_ne!(
                    out.status.code(),
                    Some(0),
                    "{cronjob} without fsGroup: {stdout}"
                );
                assert!(
                    stdout.contains("Permission denied") || stdout.contains("permission denied"),
                    "{stdout}"
                );
            }
        }
    }
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(program))
            .find(|p| p.is_file())
    })
}

/// The runbook's dry run ("Arm it"): the ConfigMap as shipped, armed with
/// `AFK_DRY_RUN: "true"`, run as the Job `kubectl create job
/// --from=cronjob/afk-poller` makes (the ConfigMap as env, the tokens as
/// files): it decides and says so, and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runbooks_dry_run_decides_and_writes_nothing() {
    let w = crate::world::World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "", "alice");
    let labels = w.labels("infra", 7);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("github-token"), afk_sim::GITHUB_TOKEN).unwrap();
    std::fs::write(dir.path().join("t3-token"), afk_sim::T3_TOKEN).unwrap();
    let mut env: Vec<(String, String)> = configmap_data();
    for (k, v) in [
        ("AFK_KILL_SWITCH", "false".to_owned()),
        ("AFK_ALLOWLIST", "infra".to_owned()),
        ("AFK_GITHUB_OWNER", "acme".to_owned()),
        ("AFK_DRY_RUN", "true".to_owned()),
        ("AFK_GITHUB_API_URL", w.sim.uri()),
        ("AFK_T3_URL", w.sim.uri()),
    ] {
        env.retain(|(key, _)| key != k);
        env.push((k.to_owned(), v));
    }
    for (file, key) in [
        ("github-token", "AFK_GITHUB_TOKEN_FILE"),
        ("t3-token", "AFK_T3_TOKEN_FILE"),
    ] {
        env.push((key.to_owned(), dir.path().join(file).display().to_string()));
    }
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_afk-poller"))
            .env_clear()
            .envs(env)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("dry run: would dispatch"), "{stdout}");
    assert!(stdout.contains("\"dry_run\":true"), "{stdout}");
    assert_eq!(w.labels("infra", 7), labels, "nothing written");
    assert!(lock(&w.sim.t3).threads.is_empty(), "nothing dispatched");
}

#[test]
fn the_kustomize_base_holds_what_the_runbook_applies_at_one_pinned_version() {
    let base = yaml("kustomization.yaml");
    let resources: Vec<&str> = base["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    let runbook = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )
    .unwrap();
    for name in [
        "rbac.yaml",
        "configmap.yaml",
        "cronjob-poller.yaml",
        "cronjob-watcher.yaml",
        "cronjob-halt.yaml",
    ] {
        assert!(resources.contains(&name), "the base lacks {name}");
        assert!(
            runbook.contains(&format!("docs/deploy/{name}")),
            "the runbook does not apply {name}"
        );
    }
    assert_eq!(base["namespace"], "afk");
    // One version everywhere: the release's, never a moving tag.
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(base["images"][0]["newTag"], version);
    for cronjob in CRONJOBS {
        let image = cronjob_pod(cronjob)["containers"][0]["image"].clone();
        let image = image.as_str().unwrap();
        assert_eq!(
            image,
            format!("{}:{version}", base["images"][0]["name"].as_str().unwrap()),
            "{cronjob}"
        );
    }
}

#[test]
fn version_names_the_release_and_the_commit() {
    for bin in [
        env!("CARGO_BIN_EXE_afk"),
        env!("CARGO_BIN_EXE_afk-poller"),
        env!("CARGO_BIN_EXE_afk-watcher"),
    ] {
        let out = std::process::Command::new(bin)
            .arg("--version")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let expected = format!(" {} (commit ", env!("CARGO_PKG_VERSION"));
        assert!(
            text.contains(&expected) && text.trim_end().ends_with(')'),
            "{text}"
        );
        let commit = text
            .split("(commit ")
            .nth(1)
            .unwrap()
            .trim_end()
            .trim_end_matches(')');
        assert!(!commit.is_empty(), "{text}");
    }
}
