//! `afk-poller` and `afk-watcher` with `AFK_EXECUTOR=kubernetes`: the real
//! binaries find the cluster through `KUBECONFIG`, as outside a pod, and
//! run each agent turn as a Job in the simulated API server (which
//! validates every request against the Kubernetes 1.33 schemas).

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use afk_sim::clock::FixedClock;
use afk_sim::k8s::{Body, Call, K8sModel, K8sServer, Resource};
use afk_sim::{GITHUB_TOKEN, lock};

use crate::scratch::Scratch;
use crate::world::World;

const NS: &str = "afk-agents";

fn run(bin: &str, env: &[(String, String)]) -> (i32, String) {
    run_with(bin, env, &[])
}

fn run_with(bin: &str, env: &[(String, String)], args: &[&str]) -> (i32, String) {
    let path = match bin {
        "afk-poller" => env!("CARGO_BIN_EXE_afk-poller"),
        "afk" => env!("CARGO_BIN_EXE_afk"),
        _ => env!("CARGO_BIN_EXE_afk-watcher"),
    };
    let out = Command::new(path)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// A kubeconfig file naming the simulated API server.
fn kubeconfig(dir: &Path, server: &str) -> String {
    let path = dir.join("kubeconfig");
    std::fs::write(&path, afk_sim::k8s::kubeconfig(server, NS)).unwrap();
    path.display().to_string()
}

fn jobs(model: &Arc<Mutex<K8sModel>>) -> Vec<serde_json::Value> {
    let reply = lock(model).call(Call::List {
        namespace: NS.into(),
        resource: Resource::Jobs,
        label_selector: Some("app.kubernetes.io/managed-by=afk".into()),
    });
    match reply.body {
        Body::Json(v) => v["items"].as_array().cloned().unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A simulated cluster on the real clock (the binaries read it too), and
/// the settings that arm the loop over `allowlist` with the Kubernetes
/// executor, found through a kubeconfig in `dir`.
async fn armed_on_kubernetes(
    w: &World,
    allowlist: &str,
    dir: &Path,
) -> (K8sServer, Arc<Mutex<K8sModel>>, Vec<(String, String)>) {
    let now = afk_core::Timestamp::from_offset_date_time(time::OffsetDateTime::now_utc());
    let model = Arc::new(Mutex::new(K8sModel::new(NS, FixedClock::at(now))));
    lock(&model).apply_agent_secrets();
    let server = K8sServer::start(model.clone()).await;
    let template =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy/agent/pod-template.yaml");
    let env = [
        ("AFK_KILL_SWITCH", "false".to_owned()),
        ("AFK_ALLOWLIST", allowlist.to_owned()),
        ("AFK_GITHUB_API_URL", w.sim.uri()),
        ("AFK_GITHUB_TOKEN", GITHUB_TOKEN.into()),
        ("AFK_GITHUB_OWNER", "acme".into()),
        ("AFK_EXECUTOR", "kubernetes".into()),
        ("AFK_K8S_POD_TEMPLATE", template.display().to_string()),
        ("KUBECONFIG", kubeconfig(dir, &server.uri())),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    (server, model, env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cronjobs_run_each_agent_turn_as_a_job_and_land_the_run() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "Rotate the certificates.", "alice");
    let dir = Scratch::new("kube");
    let (_server, model, env) = armed_on_kubernetes(&w, "infra", &dir).await;

    let e = env.clone();
    let (code, out) = tokio::task::spawn_blocking(move || run("afk-poller", &e))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    let made = jobs(&model);
    assert_eq!(made.len(), 1, "{out}");
    let job = &made[0];
    assert_eq!(
        job["metadata"]["namespace"], NS,
        "the kubeconfig's namespace"
    );
    assert_eq!(job["metadata"]["labels"]["afk.dev/issue"], "7");
    assert!(
        !job.to_string().contains(GITHUB_TOKEN),
        "afk's own token never reaches the agent's Job"
    );
    let name = job["metadata"]["name"].as_str().unwrap().to_owned();
    let prompt = lock(&model).config_map(&name).unwrap()["data"]["prompt"].clone();
    assert!(prompt.as_str().unwrap().contains("Rotate"), "{prompt}");

    // The agent works, pushes, and its Job completes; CI is green.
    {
        let mut m = lock(&model);
        m.run(&name);
        m.succeed(
            &name,
            r#"{"type":"result","is_error":false,"result":"pushed","total_cost_usd":0.42}"#,
        );
    }
    w.clock.set(
        afk_core::Timestamp::from_offset_date_time(time::OffsetDateTime::now_utc()).plus_seconds(5),
    );
    w.push("infra", 7, "abc1234def");
    w.ci("infra", "abc1234def", "green");
    let e = env.clone();
    let (code, out) = tokio::task::spawn_blocking(move || run("afk-watcher", &e))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(w.state("infra", 7), "closed", "{out}");
    let comment = w.progress_comments("infra", 7).join("\n");
    assert!(
        comment.contains("$0.42"),
        "the cost read from the pod's log: {comment}"
    );
    let violations = lock(&model).violations();
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_kubernetes_settings_are_named_before_anything_is_done() {
    let w = World::new(&["infra"], &[]).await.unwrap();
    w.ready("infra", 7, "Rotate the certificates.", "alice");
    let dir = Scratch::new("kube-bad");
    let bad = dir.join("template.yaml");
    std::fs::write(&bad, "spec:\n  containers: []\n").unwrap();
    let base: Vec<(String, String)> = [
        ("AFK_KILL_SWITCH", "false".to_owned()),
        ("AFK_ALLOWLIST", "infra".into()),
        ("AFK_GITHUB_API_URL", w.sim.uri()),
        ("AFK_GITHUB_TOKEN", GITHUB_TOKEN.into()),
        ("AFK_GITHUB_OWNER", "acme".into()),
        ("AFK_EXECUTOR", "kubernetes".into()),
        ("KUBECONFIG", dir.join("missing").display().to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let sample =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy/agent/pod-template.yaml");
    for (extra, needle) in [
        (vec![], "AFK_K8S_POD_TEMPLATE is not set"),
        (
            vec![("AFK_K8S_POD_TEMPLATE", bad.display().to_string())],
            "no container",
        ),
        (
            vec![(
                "AFK_K8S_POD_TEMPLATE",
                dir.join("nope.yaml").display().to_string(),
            )],
            "cannot be read",
        ),
        (
            vec![
                ("AFK_K8S_POD_TEMPLATE", sample.display().to_string()),
                ("AFK_K8S_START_TIMEOUT", "soon".into()),
            ],
            "is not a duration from 1s",
        ),
        (
            vec![
                ("AFK_K8S_POD_TEMPLATE", sample.display().to_string()),
                ("AFK_K8S_NAMESPACE", "Agents!".into()),
            ],
            "AFK_K8S_NAMESPACE=",
        ),
    ] {
        let mut env = base.clone();
        env.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        let before = w.sim.requests().await.len();
        let (code, out) = tokio::task::spawn_blocking(move || run("afk-poller", &env))
            .await
            .unwrap();
        assert_eq!(code, 2, "{needle}: {out}");
        assert!(out.contains(needle), "{needle}: {out}");
        assert_eq!(w.sim.requests().await.len(), before, "nothing was done");
    }
    // Settings fine, no cluster to be found: named, and no GitHub write.
    let mut env = base.clone();
    env.push(("AFK_K8S_POD_TEMPLATE".into(), sample.display().to_string()));
    let (code, out) = tokio::task::spawn_blocking(move || run("afk-poller", &env))
        .await
        .unwrap();
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Kubernetes configuration"), "{out}");
    assert_eq!(w.writes().await, 0);
}

/// `afk stop` and `afk halt` on Kubernetes: the run's Job goes with
/// `propagationPolicy: Background`, so its pod goes too (a delete without it
/// would leave the agent running), and the issue is handed back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn afk_stop_and_halt_delete_the_agents_jobs_and_their_pods() {
    let w = World::new(&["infra", "web"], &[]).await.unwrap();
    w.ready("infra", 7, "Rotate the certificates.", "alice");
    w.ready("web", 3, "Lazy-load the images.", "alice");
    let dir = Scratch::new("kube-stop");
    let (_server, model, env) = armed_on_kubernetes(&w, "infra,web", &dir).await;
    let e = env.clone();
    let (code, out) = tokio::task::spawn_blocking(move || run("afk-poller", &e))
        .await
        .unwrap();
    assert_eq!(code, 0, "{out}");
    let names: Vec<(String, String)> = jobs(&model)
        .iter()
        .map(|j| {
            (
                j["metadata"]["name"].as_str().unwrap().to_owned(),
                j["metadata"]["annotations"]["afk.dev/repo"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    assert_eq!(names.len(), 2, "{out}");
    let mut pods = Vec::new();
    for (job, repo) in &names {
        lock(&model).run(job);
        pods.push((repo.clone(), lock(&model).pods_of(job)));
    }
    let e = env.clone();
    let (code, out) = tokio::task::spawn_blocking(move || {
        run_with("afk", &e, &["stop", "infra#7", "--by", "ops-oncall"])
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}");
    assert_eq!(w.labels("infra", 7), ["ready-for-human"]);
    let left: Vec<String> = jobs(&model)
        .iter()
        .map(|j| {
            j["metadata"]["annotations"]["afk.dev/repo"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(left, ["acme/web"], "only infra#7's Job went");
    let e = env.clone();
    let (code, out) =
        tokio::task::spawn_blocking(move || run_with("afk", &e, &["halt", "--by", "ops-oncall"]))
            .await
            .unwrap();
    assert_eq!(code, 0, "{out}");
    assert!(jobs(&model).is_empty(), "{out}");
    let m = lock(&model);
    for (repo, names) in &pods {
        for pod in names {
            assert!(m.pod(pod).is_none(), "{repo}'s agent pod {pod} still runs");
        }
    }
    assert!(m.violations().is_empty(), "{:#?}", m.violations());
}
