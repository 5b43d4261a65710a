//! What someone with write access to the agents' namespace can no longer
//! make afk believe or do by editing what afk keeps on its Jobs: redirect a
//! thread's next turn (and its push token) to another repository or branch,
//! pass a Job of their own off as a later turn, report a failed or running
//! turn as done, or lower what a thread cost. What they still can is in
//! `docs/operations.md` ("Who can do what").

use std::sync::Arc;

use afk_core::ThreadStatus;
use afk_core::ports::{PortError, PortResult};
use afk_kube::cluster::Cluster;
use afk_loop::ports::Executor;
use afk_sim::contract::spec;
use afk_sim::lock;
use serde_json::json;

use crate::world::{Minter, World, claude_result, opening_turn, ts, world, world_minting};

/// A thread whose opening turn ran and succeeded (cost $1.50), as a watch
/// tick saw it: its id and its Job's name.
async fn finished_opening_turn(w: &World) -> (String, String) {
    let (id, job) = w.opened_thread().await;
    w.run_and_succeed(&job, &claude_result(false, "pushed", 1.5));
    let s = w.exec.snapshot(&World::watched(&id)).await.unwrap();
    assert_eq!(s.status(&id), Some(ThreadStatus::Idle));
    (id, job)
}

/// The name afk gives `thread`'s turn `step`.
fn turn_name(thread: &str, step: u32) -> String {
    let mut turn = opening_turn(thread);
    turn.step = step;
    afk_kube::job::job_name(&turn)
}

async fn send_next(w: &World, id: &str, step: u32) -> PortResult<()> {
    let s = w.exec.snapshot(&World::watched(id)).await.unwrap();
    w.exec
        .send_turn(
            &s,
            id,
            step,
            "CI is red: fix forward",
            ts("2026-06-10T12:30:00Z"),
        )
        .await
}

/// Nothing was made for the thread's next turn: no Job, prompt or Secret.
fn nothing_made_for(w: &World, id: &str, step: u32) {
    let name = turn_name(id, step);
    let m = lock(&w.model);
    assert!(m.job(&name).is_none(), "a Job {name} was created");
    assert!(m.config_map(&name).is_none(), "a prompt {name} was created");
    assert!(m.secret(&name).is_none(), "a Secret {name} was created");
    drop(m);
    assert_eq!(w.jobs_of(id).len(), 1, "{:?}", w.jobs_of(id));
}

fn refused_naming(e: &PortError, job: &str) {
    assert!(
        matches!(e, PortError::Permanent { message } if message.contains(job)),
        "{e:?}"
    );
}

#[tokio::test]
async fn patched_repository_or_branch_annotations_redirect_no_turn_and_mint_no_token() {
    for (key, forged) in [
        ("afk.dev/repo", "acme/secrets"),
        ("afk.dev/repo", "evil/infra"),
        ("afk.dev/branch", "release"),
    ] {
        let minter = Arc::new(Minter::default());
        let w = world_minting(minter.clone()).await;
        let (id, job) = finished_opening_turn(&w).await;
        let idle = w.exec.snapshot(&World::watched(&id)).await.unwrap();
        w.exec
            .cluster()
            .inner
            .patch_job(&job, &json!({"metadata": {"annotations": {key: forged}}}))
            .await
            .unwrap();
        // The watch tick reports the thread as failed, naming the Job.
        let s = w.exec.snapshot(&World::watched(&id)).await.unwrap();
        assert_eq!(s.status(&id), Some(ThreadStatus::Error), "{key}={forged}");
        let said = s.threads[&id].said.clone().unwrap();
        assert!(said.contains(&job) && said.contains(key), "{said}");
        // A turn sent on the tick before (its snapshot said idle) is
        // refused too: nothing is created, no token minted.
        let e = w
            .exec
            .send_turn(&idle, &id, 1, "fix forward", ts("2026-06-10T12:30:00Z"))
            .await
            .unwrap_err();
        refused_naming(&e, &job);
        assert_eq!(*lock(&minter.0), ["acme/infra"], "{key}={forged}");
        nothing_made_for(&w, &id, 1);
        w.assert_no_violations();
    }
}

/// A Job labelled as one of the thread's turns that afk did not make as
/// that turn (another name, another repository, a relabelled step).
#[tokio::test]
async fn a_job_afk_did_not_make_as_the_thread_s_turn_is_not_believed() {
    type Forge = fn(&str, &str) -> ForgedJob;
    let cases: [(&str, Forge); 3] = [
        ("a later step under a name of its own", |id, _| {
            ForgedJob::Create(json!({
                "metadata": {
                    "name": "afk-infra-7-0-5-forged",
                    "labels": labels(id, 5),
                    "annotations": {"afk.dev/repo": "acme/infra", "afk.dev/branch": "main"},
                },
                "spec": {"template": {"spec": {"restartPolicy": "Never",
                    "containers": [{"name": "agent", "image": "evil:1"}]}}}
            }))
        }),
        ("the next step's name, for another repository", |id, _| {
            let mut turn = opening_turn(id);
            turn.step = 1;
            turn.repo = "acme/secrets".into();
            let name = turn_name(id, 1);
            let mut job = afk_kube::job::job(
                &turn,
                &crate::world::settings(&crate::world::sample_template()).job,
            );
            job.metadata.name = Some(name);
            ForgedJob::Create(serde_json::to_value(job).unwrap())
        }),
        (
            "afk's own Job relabelled as a later step, marked stopped",
            |_, job| {
                ForgedJob::Patch(
                    job.to_owned(),
                    json!({"metadata": {
                        "labels": {"afk.dev/step": "5"},
                        "annotations": {"afk.dev/stopped-at": "2026-06-10T12:10:00Z"},
                    }}),
                )
            },
        ),
    ];
    for (case, forge) in cases {
        let minter = Arc::new(Minter::default());
        let w = world_minting(minter.clone()).await;
        let (id, job) = finished_opening_turn(&w).await;
        let forged_name = match forge(&id, &job) {
            ForgedJob::Create(value) => {
                let forged: k8s_openapi::api::batch::v1::Job =
                    serde_json::from_value(value).unwrap();
                let name = forged.metadata.name.clone().unwrap();
                w.exec.cluster().inner.create_job(&forged).await.unwrap();
                name
            }
            ForgedJob::Patch(name, patch) => {
                w.exec
                    .cluster()
                    .inner
                    .patch_job(&name, &patch)
                    .await
                    .unwrap();
                name
            }
        };
        let s = w.exec.snapshot(&World::watched(&id)).await.unwrap();
        assert_eq!(s.status(&id), Some(ThreadStatus::Error), "{case}");
        let said = s.threads[&id].said.clone().unwrap();
        assert!(said.contains(&forged_name), "{case}: {said}");
        let e = send_next(&w, &id, 1).await.unwrap_err();
        refused_naming(&e, &forged_name);
        assert_eq!(*lock(&minter.0), ["acme/infra"], "{case}");
        let m = lock(&w.model);
        assert!(m.config_map(&turn_name(&id, 1)).is_none(), "{case}");
        assert!(m.secret(&turn_name(&id, 1)).is_none(), "{case}");
    }
}

enum ForgedJob {
    Create(serde_json::Value),
    Patch(String, serde_json::Value),
}

fn labels(thread: &str, step: u32) -> serde_json::Value {
    json!({
        "app.kubernetes.io/managed-by": "afk",
        "afk.dev/thread": thread,
        "afk.dev/step": step.to_string(),
        "afk.dev/issue": "7",
        "afk.dev/attempt": "0",
        "afk.dev/repo": "acme.infra",
    })
}

fn forge_outcome(outcome: serde_json::Value) -> serde_json::Value {
    json!({"metadata": {"annotations": {"afk.dev/outcome": outcome.to_string()}}})
}

#[tokio::test]
async fn a_forged_success_on_a_failed_turn_is_read_again_and_its_cost_stays() {
    let w = world().await;
    let (id, job) = w.failed_opening_turn(1.5).await;
    let watched = World::watched(&id);
    let s = w.exec.snapshot(&watched).await.unwrap();
    assert_eq!(s.threads[&id].cost.unwrap().micro_usd, 1_500_000);
    w.exec
        .cluster()
        .inner
        .patch_job(
            &job,
            &forge_outcome(json!({"ok": true, "said": "all green", "cost_micro_usd": 1})),
        )
        .await
        .unwrap();
    let s = w.exec.snapshot(&watched).await.unwrap();
    let t = &s.threads[&id];
    assert_eq!(t.status, Some(ThreadStatus::Error));
    let said = t.said.clone().unwrap();
    assert!(said.contains("the tests would not pass"), "{said}");
    assert!(!said.contains("all green"), "{said}");
    assert_eq!(t.cost.unwrap().micro_usd, 1_500_000);
    w.assert_no_violations();
}

#[tokio::test]
async fn a_forged_end_of_a_running_turn_starts_nothing_beside_it() {
    let w = world().await;
    let (id, job) = w.opened_thread().await;
    lock(&w.model).run(&job);
    for forged in [
        json!({"ok": true, "said": "done"}),
        json!({"ok": false, "why": "the agent's pod did not start within 600s"}),
    ] {
        w.exec
            .cluster()
            .inner
            .patch_job(&job, &forge_outcome(forged.clone()))
            .await
            .unwrap();
        let s = w.exec.snapshot(&World::watched(&id)).await.unwrap();
        assert_eq!(s.status(&id), Some(ThreadStatus::Running), "{forged}");
        let e = w
            .exec
            .send_turn(&s, &id, 1, "more", ts("2026-06-10T12:30:00Z"))
            .await
            .unwrap_err();
        assert!(matches!(e, PortError::Transient { .. }), "{forged}: {e:?}");
        nothing_made_for(&w, &id, 1);
    }
    w.assert_no_violations();
}

#[tokio::test]
async fn a_forged_lower_cost_of_an_earlier_turn_does_not_lower_the_thread_s() {
    let w = world().await;
    let (id, first) = finished_opening_turn(&w).await;
    send_next(&w, &id, 1).await.unwrap();
    let second = w.job_name(&id, 1);
    w.run_and_succeed(&second, &claude_result(false, "pushed again", 0.25));
    let watched = World::watched(&id);
    let s = w.exec.snapshot(&watched).await.unwrap();
    assert_eq!(s.threads[&id].cost.unwrap().micro_usd, 1_750_000);
    for forged in [
        forge_outcome(json!({"ok": true, "cost_micro_usd": 0})),
        json!({"metadata": {"annotations": {"afk.dev/outcome": null}}}),
    ] {
        w.exec
            .cluster()
            .inner
            .patch_job(&first, &forged)
            .await
            .unwrap();
        let s = w.exec.snapshot(&watched).await.unwrap();
        assert_eq!(
            s.threads[&id].cost.unwrap().micro_usd,
            1_750_000,
            "{forged}"
        );
    }
    w.assert_no_violations();
}

/// A stop whose Job is already gone (deleted by hand, or by its TTL) is
/// done: the real client's 404 is success.
#[tokio::test]
async fn deleting_a_job_that_is_already_gone_is_ok() {
    let w = world().await;
    let (id, job) = w.opened_thread().await;
    let cluster = &w.exec.cluster().inner;
    cluster.delete_job(&job).await.unwrap();
    assert!(lock(&w.model).job(&job).is_none());
    cluster.delete_job(&job).await.unwrap();
    cluster
        .delete_job("afk-never-was-7-0-0-00000000")
        .await
        .unwrap();
    let s = w.exec.snapshot(&[]).await.unwrap();
    w.exec
        .stop_thread(&s, &id, ts("2026-06-10T12:40:00Z"))
        .await
        .unwrap();
    w.assert_no_violations();
}

/// Someone's ConfigMap under the turn's name, without afk's labels: afk
/// neither rewrites it nor mounts it; the turn fails, naming it.
#[tokio::test]
async fn a_config_map_under_the_turn_s_name_without_afk_s_labels_is_refused_untouched() {
    let minter = Arc::new(Minter::default());
    let w = world_minting(minter.clone()).await;
    let id = w.exec.thread_id("infra", 7, 0);
    let name = afk_kube::job::job_name(&opening_turn(&id));
    let theirs: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"team": "infra"}},
        "data": {"prompt": "their own words"}
    }))
    .unwrap();
    w.exec
        .cluster()
        .inner
        .create_config_map(&theirs)
        .await
        .unwrap();
    let s = w.exec.snapshot(&[]).await.unwrap();
    let e = w.exec.ensure_thread(&s, &spec(0)).await.unwrap_err();
    assert!(
        matches!(&e, PortError::Permanent { message }
            if message.contains(&format!("ConfigMap named {name}"))),
        "{e:?}"
    );
    let m = lock(&w.model);
    let map = m.config_map(&name).unwrap();
    assert_eq!(map["data"]["prompt"], "their own words");
    assert_eq!(map["metadata"]["labels"], json!({"team": "infra"}));
    assert!(map["metadata"].get("ownerReferences").is_none(), "{map}");
    assert!(m.job(&name).is_none(), "a Job would mount it");
    assert!(m.secret(&name).is_none());
    drop(m);
    assert!(lock(&minter.0).is_empty(), "no token minted");
    w.assert_no_violations();
}
