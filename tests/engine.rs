//! The upgrade engine on the real test cluster: a controller of its own per test namespace, real
//! Deployments, Jobs and kwok pods (images ending `-broken` never become ready, Job images ending
//! `-fails` fail).

mod support;

use bosun_core::model::{ManagedApplication, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use support::{TestNamespace, install_crds, wait_until};

struct Running {
    ns: TestNamespace,
    controller: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.controller.abort();
    }
}

async fn start(prefix: &str) -> Running {
    let ns = TestNamespace::new(prefix).await;
    install_crds(&ns.client).await;
    let controller = tokio::spawn(bosun::engine::run(ns.client.clone(), Some(ns.name.clone())));
    Running { ns, controller }
}

async fn create(r: &Running, spec: serde_json::Value) {
    let app: ManagedApplication = serde_json::from_value(json!({
        "apiVersion": "apps.example.com/v1alpha1",
        "kind": "ManagedApplication",
        "metadata": {"name": "shop"},
        "spec": spec,
    }))
    .expect("app");
    r.ns.api::<ManagedApplication>()
        .create(&PostParams::default(), &app)
        .await
        .expect("create app");
}

async fn set_spec(r: &Running, spec: serde_json::Value) {
    r.ns.api::<ManagedApplication>()
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": spec})),
        )
        .await
        .expect("patch app");
}

async fn phase_is(r: &Running, phase: Phase, version: &str) -> ManagedApplication {
    wait_until(&format!("phase {phase} at {version}"), || async {
        let app = r.ns.api::<ManagedApplication>().get("shop").await.ok()?;
        let s = app.status.as_ref()?;
        (s.phase == Some(phase) && s.target_version.as_deref() == Some(version)).then_some(app)
    })
    .await
}

async fn stable_image(r: &Running) -> Option<String> {
    let d = r.ns.api::<Deployment>().get_opt("shop").await.ok()??;
    d.spec?.template.spec?.containers.first()?.image.clone()
}

#[tokio::test]
async fn a_rolling_upgrade_reaches_healthy_and_records_the_versions() {
    let r = start("engine-rolling").await;
    create(&r, json!({"version": "v1", "replicas": 2})).await;
    let app = phase_is(&r, Phase::Healthy, "v1").await;
    assert_eq!(
        app.status.and_then(|s| s.current_version).as_deref(),
        Some("v1")
    );
    assert_eq!(stable_image(&r).await.as_deref(), Some("shop:v1"));

    set_spec(&r, json!({"version": "v2"})).await;
    let app = phase_is(&r, Phase::Healthy, "v2").await;
    let status = app.status.expect("status");
    assert_eq!(status.current_version.as_deref(), Some("v2"));
    assert_eq!(status.last_healthy_version.as_deref(), Some("v2"));
    assert_eq!(stable_image(&r).await.as_deref(), Some("shop:v2"));
}

#[tokio::test]
async fn a_failed_migration_fails_the_upgrade_and_changes_no_workload() {
    let r = start("engine-migfail").await;
    let strategy =
        |image: &str| json!({"type": "RollingWithMigration", "migrationJob": {"image": image}});
    create(
        &r,
        json!({"version": "v1", "upgradeStrategy": strategy("migrate:v1")}),
    )
    .await;
    phase_is(&r, Phase::Healthy, "v1").await;

    set_spec(
        &r,
        json!({"version": "v2", "upgradeStrategy": strategy("migrate:v2-fails")}),
    )
    .await;
    let app = phase_is(&r, Phase::Failed, "v2").await;
    let status = app.status.expect("status");
    assert_eq!(status.failed_version.as_deref(), Some("v2"));
    assert!(
        status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("migration")),
        "{status:?}"
    );
    assert_eq!(
        stable_image(&r).await.as_deref(),
        Some("shop:v1"),
        "no workload changed"
    );
    let job =
        r.ns.api::<Job>()
            .get("shop-migration-v2")
            .await
            .expect("the migration Job, named after app and version");
    let labels = job.metadata.labels.expect("labels");
    assert_eq!(labels.get("type").map(String::as_str), Some("migration"));
    assert_eq!(labels.get("app").map(String::as_str), Some("shop"));
}

#[tokio::test]
async fn pods_that_never_become_ready_roll_back_to_the_last_healthy_version() {
    let r = start("engine-broken").await;
    let strategy = json!({"type": "Rolling", "progressDeadlineSeconds": 5});
    create(
        &r,
        json!({"version": "v1", "replicas": 1, "upgradeStrategy": strategy}),
    )
    .await;
    phase_is(&r, Phase::Healthy, "v1").await;

    set_spec(&r, json!({"version": "v2-broken"})).await;
    let app = phase_is(&r, Phase::Failed, "v2-broken").await;
    assert_eq!(
        app.status.and_then(|s| s.last_healthy_version).as_deref(),
        Some("v1")
    );
    wait_until("the stable Deployment back on v1", || async {
        (stable_image(&r).await.as_deref() == Some("shop:v1")).then_some(())
    })
    .await;
}

#[tokio::test]
async fn canary_steps_end_with_the_new_version_stable_and_no_canary() {
    let r = start("engine-canary").await;
    let strategy =
        json!({"type": "Canary", "canary": {"steps": [{"weight": 50}, {"weight": 100}]}});
    create(
        &r,
        json!({"version": "v1", "replicas": 2, "upgradeStrategy": strategy}),
    )
    .await;
    phase_is(&r, Phase::Healthy, "v1").await;

    set_spec(&r, json!({"version": "v2"})).await;
    wait_until("a canary Deployment for v2", || async {
        r.ns.api::<Deployment>().get_opt("shop-canary").await.ok()?
    })
    .await;
    phase_is(&r, Phase::Healthy, "v2").await;
    assert_eq!(stable_image(&r).await.as_deref(), Some("shop:v2"));
    wait_until("the canary removed", || async {
        r.ns.api::<Deployment>()
            .get_opt("shop-canary")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}
