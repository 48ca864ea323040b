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
