//! `/metrics` scraped by a real Prometheus (Debian's package, installed by `scripts/prometheus install`):
//! Bosun runs against a git repository of the test git server and the real test cluster, Prometheus
//! scrapes it every second, and the test asks Prometheus's query API what it stored.

mod support;

use support::gitserver;
use support::process::{Process, free_port, http_get, local};
use support::prometheus::Prometheus;
use support::{TestNamespace, install_crds, wait_until};

const APP: &str = "apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: shop
spec:
  version: \"v1\"
";

#[tokio::test]
async fn prometheus_scrapes_leader_git_and_kube_metrics() {
    let ns = TestNamespace::new("metrics").await;
    install_crds(&ns.client).await;
    let server = gitserver::shared();
    let repo = server.create_repo(&ns.name, &[("apps/shop.yaml", APP)]);
    let cache = tempfile::tempdir().expect("cache");
    let bosun_port = free_port();
    let _bosun = Process::bosun(|c| {
        c.args(["run", "--repo", &repo.file_url(), "--path", "apps"])
            .args(["--namespace", &ns.name, "--name", &ns.name])
            .args([
                "--engine-namespace",
                &ns.name,
                "--poll-interval",
                "1",
                "--prune",
            ])
            .args(["--listen", &format!("127.0.0.1:{bosun_port}")])
            .arg("--cache-dir")
            .arg(cache.path());
    });

    let prometheus = Prometheus::start(&[format!("127.0.0.1:{bosun_port}")]);

    wait_until("Prometheus scraped Bosun as up", || async {
        (prometheus.value("up{job=\"static\"}")? == 1.0).then_some(())
    })
    .await;
    let leader = wait_until("bosun_leader", || async {
        prometheus.value("bosun_leader")
    })
    .await;
    assert_eq!(leader, 1.0, "a single replica leads");
    let created = wait_until("the app's creation counted", || async {
        prometheus.value(&format!(
            "bosun_sync_applies_total{{source=\"{}\",action=\"create\"}}",
            ns.name
        ))
    })
    .await;
    assert_eq!(created, 1.0, "one ManagedApplication created");
    let polls = wait_until("unchanged git polls counted", || async {
        prometheus
            .value(&format!(
                "bosun_git_polls_total{{source=\"{}\",result=\"unchanged\"}}",
                ns.name
            ))
            .filter(|n| *n >= 2.0)
    })
    .await;
    assert!(polls >= 2.0);
    wait_until("a git poll duration histogram", || async {
        prometheus
            .value(&format!(
                "bosun_git_poll_duration_seconds_count{{source=\"{}\"}}",
                ns.name
            ))
            .filter(|n| *n >= 1.0)
    })
    .await;
    wait_until("the apply counted as a kube write", || async {
        prometheus
            .value(
                "sum(bosun_kube_requests_total{verb=\"patch\",resource=\"managedapplications\"})",
            )
            .filter(|n| *n >= 1.0)
    })
    .await;
    let healthy = wait_until("the app's phase", || async {
        prometheus
            .value(&format!(
                "bosun_app_phase{{namespace=\"{}\",app=\"shop\",phase=\"Healthy\"}}",
                ns.name
            ))
            .filter(|v| *v == 1.0)
    })
    .await;
    assert_eq!(healthy, 1.0);
    wait_until("the upgrade counted as succeeded", || async {
        prometheus
            .value("bosun_upgrades_total{result=\"succeeded\"}")
            .filter(|v| *v >= 1.0)
    })
    .await;
    wait_until("reconciles counted and timed", || async {
        prometheus
            .value("sum(bosun_reconcile_duration_seconds_count{controller=\"managedapplication\"})")
            .filter(|v| *v >= 1.0)
    })
    .await;
    assert_eq!(
        prometheus.value("bosun_kube_writes_refused_total"),
        Some(0.0),
        "nothing refused without leader election"
    );

    // The app is removed from git (another stays, so the revision is not empty): pruned, and its
    // phase series leave /metrics with it.
    repo.commit(
        "cart",
        &[("apps/cart.yaml", APP.replace("name: shop", "name: cart"))],
    );
    repo.remove("shop: gone", &["apps/shop.yaml"]);
    let shop_series = format!("bosun_app_phase{{namespace=\"{}\",app=\"shop\"", ns.name);
    wait_until("shop's phase series gone from /metrics", || async {
        let (_, body) = http_get(local(bosun_port), "/metrics")?;
        let cart = format!("bosun_app_phase{{namespace=\"{}\",app=\"cart\"", ns.name);
        (body.contains(&cart) && !body.contains(&shop_series)).then_some(())
    })
    .await;
}

/// Bosun's own count of its API requests (`bosun_kube_requests_total`), by "verb resource", of the
/// resources the engine reads and writes; watches left out (they stay open, whatever is reconciled).
fn engine_requests(port: u16) -> Option<std::collections::BTreeMap<String, f64>> {
    let (_, body) = http_get(local(port), "/metrics")?;
    let engine = [
        "managedapplications",
        "deployments",
        "services",
        "jobs",
        "pods",
        "controllerrevisions",
        "events",
    ];
    let mut out = std::collections::BTreeMap::new();
    for line in body.lines() {
        let Some(rest) = line.strip_prefix("bosun_kube_requests_total{") else {
            continue;
        };
        let (labels, value) = rest.split_once("} ")?;
        let label = |key: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_string())
        };
        let (verb, resource) = (label("verb")?, label("resource")?);
        if verb != "watch" && engine.contains(&resource.as_str()) {
            out.insert(format!("{verb} {resource}"), value.parse().ok()?);
        }
    }
    Some(out)
}

#[tokio::test]
async fn a_steady_apps_reconcile_makes_no_api_call() {
    let ns = TestNamespace::new("steady-calls").await;
    install_crds(&ns.client).await;
    let dir = tempfile::tempdir().expect("a source directory");
    for name in ["shop", "cart", "blog"] {
        std::fs::write(
            dir.path().join(format!("{name}.yaml")),
            APP.replace("name: shop", &format!("name: {name}")),
        )
        .expect("writing an app");
    }
    let port = free_port();
    let _bosun = Process::bosun(|c| {
        c.args(["run", "--dir"])
            .arg(dir.path())
            .args(["--namespace", &ns.name, "--engine-namespace", &ns.name])
            .args(["--poll-interval", "3600"])
            .args(["--listen", &format!("127.0.0.1:{port}")]);
    });
    let apps = ns.api::<bosun_core::model::ManagedApplication>();
    wait_until("three apps Healthy", || async {
        let list = apps.list(&Default::default()).await.ok()?;
        let healthy = list.items.iter().filter(|a| {
            a.status.as_ref().and_then(|s| s.phase) == Some(bosun_core::model::Phase::Healthy)
        });
        (healthy.count() == 3).then_some(())
    })
    .await;
    let reconciles = || {
        let (_, body) = http_get(local(port), "/metrics")?;
        support::process::sample(
            &body,
            "bosun_reconciles_total",
            &[("controller", "managedapplication"), ("result", "ok")],
        )
    };
    // Settled: the reconcile that follows the last transition has run, and no write is left.
    let before = wait_until("the engine at rest", || async {
        let first = (reconciles()?, engine_requests(port)?);
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        let second = (reconciles()?, engine_requests(port)?);
        (first == second).then_some(second)
    })
    .await;

    // A change of the apps that changes nothing to upgrade: each is reconciled again.
    for name in ["shop", "cart", "blog"] {
        apps.patch(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({
                "metadata": {"annotations": {"example.com/touched": "yes"}}
            })),
        )
        .await
        .expect("annotating an app");
    }
    let after = wait_until("three more reconciles", || async {
        let now = (reconciles()?, engine_requests(port)?);
        (now.0 >= before.0 + 3.0).then_some(now)
    })
    .await;
    assert_eq!(
        after.1,
        before.1,
        "the engine's API requests before and after {} reconciles of steady apps",
        after.0 - before.0
    );
    // The count is taken where requests are made: the apps' creation was counted.
    assert!(
        before.1.keys().any(|k| k.starts_with("patch ")),
        "{:?}",
        before.1
    );
}
