//! `/metrics` scraped by a real Prometheus (Debian's package, installed by `scripts/prometheus install`):
//! Bosun runs against a git repository of the test git server and the real test cluster, Prometheus
//! scrapes it every second, and the test asks Prometheus's query API what it stored.

mod support;

use std::process::Command;

use support::gitserver;
use support::process::{Process, free_port, http_get, local};
use support::{TestNamespace, install_crds, wait_until};

const APP: &str = "apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: shop
spec:
  version: \"v1\"
";

/// The value Prometheus holds for an instant query, if it has exactly one sample.
fn query(prometheus: u16, promql: &str) -> Option<f64> {
    let encoded: String = promql
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (_, body) = http_get(local(prometheus), &format!("/api/v1/query?query={encoded}"))?;
    // Chunked transfer is possible: find the JSON object in the body.
    let json_start = body.find('{')?;
    let json_end = body.rfind('}')?;
    let v: serde_json::Value = serde_json::from_str(&body[json_start..=json_end]).ok()?;
    let result = v["data"]["result"].as_array()?;
    if result.len() != 1 {
        return None;
    }
    result[0]["value"][1].as_str()?.parse().ok()
}

#[tokio::test]
async fn prometheus_scrapes_leader_git_and_kube_metrics() {
    let prometheus_bin = std::env::var("BOSUN_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let ns = TestNamespace::new("metrics").await;
    install_crds(&ns.client).await;
    let server = gitserver::shared();
    let repo = server.create_repo(&ns.name, &[("apps/shop.yaml", APP)]);
    let cache = tempfile::tempdir().expect("cache");
    let bosun_port = free_port();
    let _bosun = Process::bosun(|c| {
        c.args(["run", "--repo", &repo.file_url(), "--path", "apps"])
            .args(["--namespace", &ns.name, "--name", &ns.name])
            .args(["--engine-namespace", &ns.name, "--poll-interval", "1"])
            .args(["--listen", &format!("127.0.0.1:{bosun_port}")])
            .arg("--cache-dir")
            .arg(cache.path());
    });

    let data = tempfile::tempdir().expect("prometheus data");
    let config = data.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: bosun\n    static_configs:\n      - targets: ['127.0.0.1:{bosun_port}']\n"
        ),
    )
    .expect("config");
    let prometheus_port = free_port();
    let mut prometheus = Command::new(&prometheus_bin);
    prometheus
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            data.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"));
    let _prometheus = Process::spawn(
        prometheus,
        &format!("{prometheus_bin} (run `scripts/prometheus install`)"),
    );

    wait_until("Prometheus scraped Bosun as up", || async {
        (query(prometheus_port, "up{job=\"bosun\"}")? == 1.0).then_some(())
    })
    .await;
    let leader = wait_until("bosun_leader", || async {
        query(prometheus_port, "bosun_leader")
    })
    .await;
    assert_eq!(leader, 1.0, "a single replica leads");
    let created = wait_until("the app's creation counted", || async {
        query(
            prometheus_port,
            &format!(
                "bosun_sync_applies_total{{source=\"{}\",action=\"create\"}}",
                ns.name
            ),
        )
    })
    .await;
    assert_eq!(created, 1.0, "one ManagedApplication created");
    let polls = wait_until("unchanged git polls counted", || async {
        query(
            prometheus_port,
            &format!(
                "bosun_git_polls_total{{source=\"{}\",result=\"unchanged\"}}",
                ns.name
            ),
        )
        .filter(|n| *n >= 2.0)
    })
    .await;
    assert!(polls >= 2.0);
    wait_until("a git poll duration histogram", || async {
        query(
            prometheus_port,
            &format!(
                "bosun_git_poll_duration_seconds_count{{source=\"{}\"}}",
                ns.name
            ),
        )
        .filter(|n| *n >= 1.0)
    })
    .await;
    wait_until("the apply counted as a kube write", || async {
        query(
            prometheus_port,
            "sum(bosun_kube_requests_total{verb=\"patch\",resource=\"managedapplications\"})",
        )
        .filter(|n| *n >= 1.0)
    })
    .await;
    let healthy = wait_until("the app's phase", || async {
        query(
            prometheus_port,
            &format!(
                "bosun_app_phase{{namespace=\"{}\",app=\"shop\",phase=\"Healthy\"}}",
                ns.name
            ),
        )
        .filter(|v| *v == 1.0)
    })
    .await;
    assert_eq!(healthy, 1.0);
    wait_until("the upgrade counted as succeeded", || async {
        query(
            prometheus_port,
            "bosun_upgrades_total{result=\"succeeded\"}",
        )
        .filter(|v| *v >= 1.0)
    })
    .await;
    wait_until("reconciles counted and timed", || async {
        query(
            prometheus_port,
            "sum(bosun_reconcile_duration_seconds_count{controller=\"managedapplication\"})",
        )
        .filter(|v| *v >= 1.0)
    })
    .await;
    assert_eq!(
        query(prometheus_port, "bosun_kube_writes_refused_total"),
        Some(0.0),
        "nothing refused without leader election"
    );
}
