//! `bosun status`, `promote`, `abort`, `retry` and `plan` as a user runs them, against the real test
//! cluster, with the upgrade engine running for the test's namespace.

mod support;

use std::process::{Command, Output};

use bosun_core::model::{ManagedApplication, Phase};
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
use support::gitserver;
use support::{TestNamespace, install_crds, wait_until};

struct Engine {
    ns: TestNamespace,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn engine(prefix: &str) -> Engine {
    let ns = TestNamespace::new(prefix).await;
    install_crds(&ns.client).await;
    let task = tokio::spawn(bosun::engine::run(
        ns.client.clone(),
        Some(ns.name.clone()),
        Default::default(),
    ));
    Engine { ns, task }
}

fn bosun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(args)
        .env(
            "KUBECONFIG",
            std::env::var("BOSUN_CLUSTER_KUBECONFIG").expect("test cluster"),
        )
        .output()
        .expect("bosun runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn create(ns: &TestNamespace, spec: serde_json::Value) {
    let app: ManagedApplication = serde_json::from_value(json!({
        "apiVersion": "apps.example.com/v1alpha1",
        "kind": "ManagedApplication",
        "metadata": {"name": "shop"},
        "spec": spec,
    }))
    .expect("app");
    ns.api::<ManagedApplication>()
        .create(&PostParams::default(), &app)
        .await
        .expect("create");
}

async fn phase_is(ns: &TestNamespace, phase: Phase, version: &str) {
    wait_until(&format!("{phase} at {version}"), || async {
        let s = ns
            .api::<ManagedApplication>()
            .get("shop")
            .await
            .ok()?
            .status?;
        (s.phase == Some(phase) && s.target_version.as_deref() == Some(version)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn status_shows_the_step_and_promote_moves_a_paused_canary_on() {
    let e = engine("cli-promote").await;
    let strategy = json!({"type": "Canary", "canary": {"steps": [
        {"weight": 50, "pause": "untilPromoted"}, {"weight": 100}]}});
    create(
        &e.ns,
        json!({"version": "v1", "replicas": 2, "upgradeStrategy": strategy}),
    )
    .await;
    phase_is(&e.ns, Phase::Healthy, "v1").await;

    let early = bosun(&["promote", "shop", "-n", &e.ns.name]);
    assert_eq!(early.status.code(), Some(1), "{}", text(&early));
    assert!(
        text(&early).contains("shop is not upgrading (phase Healthy)"),
        "{}",
        text(&early)
    );

    e.ns.api::<ManagedApplication>()
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"version": "v2"}})),
        )
        .await
        .expect("bump");
    phase_is(&e.ns, Phase::HealthChecking, "v2").await;
    let status = bosun(&["status", "-n", &e.ns.name]);
    assert!(status.status.success(), "{}", text(&status));
    let out = String::from_utf8_lossy(&status.stdout).to_string();
    let line = out
        .lines()
        .find(|l| l.contains("shop"))
        .unwrap_or_else(|| panic!("no row for shop in\n{out}"));
    for want in ["HealthChecking", "v1", "v2", "1/2", "50%"] {
        assert!(line.contains(want), "{want} missing from {line:?}");
    }

    let promoted = bosun(&["promote", "shop", "-n", &e.ns.name]);
    assert!(promoted.status.success(), "{}", text(&promoted));
    assert!(
        text(&promoted).contains("promoted step 1"),
        "{}",
        text(&promoted)
    );
    phase_is(&e.ns, Phase::Healthy, "v2").await;
}

#[tokio::test]
async fn commands_on_a_missing_app_say_how_to_find_apps() {
    let e = engine("cli-missing").await;
    for cmd in ["promote", "abort", "retry"] {
        let out = bosun(&[cmd, "nope", "-n", &e.ns.name]);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {}", text(&out));
        assert!(
            text(&out).contains(&format!(
                "no ManagedApplication nope in namespace {}",
                e.ns.name
            )),
            "{cmd}: {}",
            text(&out)
        );
    }
}

#[tokio::test]
async fn plan_shows_a_version_bump_and_changes_nothing() {
    let ns = TestNamespace::new("cli-plan").await;
    install_crds(&ns.client).await;
    let app = |v: &str| {
        format!(
            "apiVersion: apps.example.com/v1alpha1\nkind: ManagedApplication\nmetadata:\n  name: shop\nspec:\n  version: \"{v}\"\n"
        )
    };
    let repo = gitserver::shared().create_repo(&ns.name, &[("apps/shop.yaml", &app("v1"))]);
    let cache = tempfile::tempdir().expect("cache");
    let source = [
        "--repo",
        &repo.file_url(),
        "--path",
        "apps",
        "--namespace",
        &ns.name,
        "--name",
        &ns.name,
        "--cache-dir",
        cache.path().to_str().expect("utf-8"),
    ];
    let first = bosun(&[&["plan"][..], &source].concat());
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains(&format!("+ create ManagedApplication/{}/shop", ns.name)),
        "{}",
        text(&first)
    );
    let synced = bosun(&[&["run", "--once"][..], &source].concat());
    assert!(synced.status.success(), "{}", text(&synced));

    repo.commit("bump shop to v2", &[("apps/shop.yaml", app("v2"))]);
    let second = bosun(&[&["plan"][..], &source].concat());
    assert!(second.status.success(), "{}", text(&second));
    let out = text(&second);
    assert!(
        out.contains(&format!("~ update ManagedApplication/{}/shop", ns.name)),
        "{out}"
    );
    assert!(out.contains(r#"spec.version: "v1" → "v2""#), "{out}");
    let live = ns
        .api::<ManagedApplication>()
        .get("shop")
        .await
        .expect("app");
    assert_eq!(live.spec.version, "v1", "plan changed nothing");

    repo.commit("break it", &[("apps/shop.yaml", "kind: ManagedApplication\napiVersion: apps.example.com/v1alpha1\nmetadata: {name: shop}\nspec: {version: 1.10}\n")]);
    let invalid = bosun(&[&["plan"][..], &source].concat());
    assert_eq!(invalid.status.code(), Some(1), "{}", text(&invalid));
    assert!(
        text(&invalid).contains("invalid: apps/shop.yaml"),
        "{}",
        text(&invalid)
    );
}

#[tokio::test]
async fn promote_now_starts_a_bestie_waiting_for_its_window_and_refuses_one_that_is_not() {
    let ns = TestNamespace::new("cli-bestie-now").await;
    install_crds(&ns.client).await;
    let bestie: bosun_core::model::Bestie = serde_json::from_value(json!({
        "apiVersion": "pets.bestie.com/v1",
        "kind": "Bestie",
        "metadata": {"name": "bestie"},
        "spec": {"size": 1, "image": "quay.io/opdev/bestie", "version": "1.4"},
    }))
    .expect("a Bestie");
    let api = ns.api::<bosun_core::model::Bestie>();
    api.create(&PostParams::default(), &bestie)
        .await
        .expect("create the Bestie");
    let o = bosun(&["promote", "--now", "bestie", "-n", &ns.name]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("waits for no upgrade window"),
        "{}",
        text(&o)
    );

    // What the Bestie controller writes while a new template waits for its window.
    let waiting = json!({"status": {"conditions": [{
        "type": "WaitingForWindow", "status": "True", "reason": "WaitingForWindow",
        "message": "version 1.4 waits for window: opens Mon 22:00 CET",
        "lastTransitionTime": "2026-12-05T00:00:00Z",
    }]}});
    api.patch_status("bestie", &PatchParams::default(), &Patch::Merge(&waiting))
        .await
        .expect("status");
    let o = bosun(&["promote", "--now", "bestie", "-n", &ns.name]);
    assert!(o.status.success(), "{}", text(&o));
    let annotated = api.get("bestie").await.expect("the Bestie");
    assert_eq!(
        annotated
            .metadata
            .annotations
            .unwrap_or_default()
            .get("bosun.dev/promote-now")
            .map(String::as_str),
        Some("1.4")
    );
}
