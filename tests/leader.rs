//! High availability: two `bosun run` processes with `--leader-elect` against the real test cluster.
//! Exactly one acts; when the leader is killed (SIGKILL) or frozen past its lease (SIGSTOP) in the middle
//! of a canary, the standby takes over and finishes the upgrade from status, with no second migration
//! Job, and the frozen leader writes nothing when it wakes up.

mod support;

use std::path::Path;
use std::time::Duration;

use bosun_core::model::{ManagedApplication, Phase};
use k8s_openapi::api::batch::v1::Job;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use support::replica::{Replica, lease_holder as holder};
use support::upgrade::promoted_canary;
use support::{TestNamespace, holds_for, install_crds, wait_until};

const LEASE: Duration = Duration::from_secs(4);

fn start(identity: &str, dir: &Path, ns: &str) -> Replica {
    support::replica::start_on_dir(identity, dir, ns, LEASE)
}

async fn phase_is(ns: &TestNamespace, phase: Phase, version: &str) -> ManagedApplication {
    wait_until(&format!("phase {phase} at {version}"), || async {
        let app = ns.api::<ManagedApplication>().get("shop").await.ok()?;
        let s = app.status.as_ref()?;
        (s.phase == Some(phase) && s.target_version.as_deref() == Some(version)).then_some(app)
    })
    .await
}

/// Brings the app to a canary step waiting for promotion, under replica `a` as the leader.
async fn canary_waiting_under_a(ns: &TestNamespace, dir: &Path) -> (Replica, Replica, String) {
    std::fs::write(dir.join("shop.yaml"), promoted_canary("v1")).expect("write app");
    let a = start("a", dir, &ns.name);
    wait_until("a holds the lease", || async {
        (holder(ns).await.as_deref() == Some("a")).then_some(())
    })
    .await;
    let b = start("b", dir, &ns.name);
    phase_is(ns, Phase::Healthy, "v1").await;
    wait_until("b serves metrics", || async { b.metric("bosun_leader") }).await;
    assert_eq!(b.metric("bosun_leader"), Some(0.0), "b is a standby");
    assert_eq!(a.metric("bosun_leader"), Some(1.0), "a leads");

    std::fs::write(dir.join("shop.yaml"), promoted_canary("v2")).expect("write app");
    wait_until("the canary step waits for promotion", || async {
        let app = ns.api::<ManagedApplication>().get("shop").await.ok()?;
        let s = app.status?;
        (s.target_version.as_deref() == Some("v2")
            && s.step_index == Some(0)
            && s.phase == Some(Phase::HealthChecking))
        .then_some(())
    })
    .await;
    let job_uid = ns
        .api::<Job>()
        .get("shop-migration-v2")
        .await
        .expect("the migration Job")
        .metadata
        .uid
        .expect("uid");
    (a, b, job_uid)
}

async fn promote_and_finish(ns: &TestNamespace, job_uid: &str) {
    ns.api::<ManagedApplication>()
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"bosun.dev/promote-step": "0"}}})),
        )
        .await
        .expect("promote");
    phase_is(ns, Phase::Healthy, "v2").await;
    let jobs = ns
        .api::<Job>()
        .list(&ListParams::default().labels("type=migration"))
        .await
        .expect("jobs");
    let names: Vec<_> = jobs.items.iter().map(|j| j.metadata.name.clone()).collect();
    assert_eq!(
        names
            .iter()
            .filter(|n| n.as_deref() == Some("shop-migration-v2"))
            .count(),
        1,
        "{names:?}"
    );
    let job = jobs
        .items
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some("shop-migration-v2"))
        .expect("v2 job");
    assert_eq!(
        job.metadata.uid.as_deref(),
        Some(job_uid),
        "the same Job, not a second run"
    );
}

async fn setup(prefix: &str) -> (TestNamespace, tempfile::TempDir) {
    let ns = TestNamespace::new(prefix).await;
    install_crds(&ns.client).await;
    (ns, tempfile::tempdir().expect("dir"))
}

#[tokio::test]
async fn a_standby_finishes_a_canary_when_the_leader_is_killed() {
    let (ns, dir) = setup("ha-kill").await;
    let (a, b, job_uid) = canary_waiting_under_a(&ns, dir.path()).await;
    holds_for(
        "b stays a standby while a renews",
        LEASE + Duration::from_secs(2),
        || async { holder(&ns).await.as_deref() == Some("a") },
    )
    .await;

    a.process.signal("KILL");
    wait_until("b takes the lease", || async {
        (holder(&ns).await.as_deref() == Some("b")).then_some(())
    })
    .await;
    promote_and_finish(&ns, &job_uid).await;
    assert_eq!(b.metric("bosun_leader"), Some(1.0));
    assert!(
        !b.process.log().contains("forbidden"),
        "{}",
        b.process.log()
    );
}

#[tokio::test]
async fn a_leader_frozen_past_its_lease_writes_nothing_when_it_wakes() {
    let (ns, dir) = setup("ha-stop").await;
    let (mut a, b, job_uid) = canary_waiting_under_a(&ns, dir.path()).await;

    a.process.signal("STOP");
    wait_until("b takes the lease", || async {
        (holder(&ns).await.as_deref() == Some("b")).then_some(())
    })
    .await;
    promote_and_finish(&ns, &job_uid).await;

    a.process.signal("CONT");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exited = loop {
        if let Some(status) = a.process.exited() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old leader did not exit"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!exited.success(), "it exits with an error");
    let log = a.process.log();
    assert!(log.contains("leadership lost"), "{log}");
    assert_eq!(holder(&ns).await.as_deref(), Some("b"));
    assert_eq!(b.identity, "b");
    // The app is still as b left it: a did not fight over it.
    holds_for(
        "the app stays Healthy at v2",
        Duration::from_secs(3),
        || async {
            ns.api::<ManagedApplication>()
                .get("shop")
                .await
                .ok()
                .and_then(|app| app.status)
                .is_some_and(|s| s.phase == Some(Phase::Healthy))
        },
    )
    .await;
}
