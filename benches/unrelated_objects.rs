//! Benchmark: what the cluster's other Deployments cost Bosun's memory. Bosun watches only what it
//! made (label selectors on its watches), so 10,000 Deployments that are not its own must leave its
//! resident memory where it was. Measures `bosun run`'s RSS (VmRSS of /proc/<pid>/status, the largest
//! of a few seconds' samples) before and after creating them (0 replicas: no pods) in the very
//! namespace its engine watches, and prints the size of those objects as the API serves them: what a
//! watch without selectors would have cached. Target: the growth is a small fraction of that size.
//!
//! Skips (exit 0, with a message) when `BOSUN_CLUSTER_KUBECONFIG` is unset.
//! Knob: `BOSUN_BENCH_UNRELATED` (default 10000).

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use support::process::{Process, free_port, http_get, local, proc_status_kib};
use support::{TestNamespace, install_crds, wait_until};

/// The largest VmRSS of `pid` over `span`, in MiB.
async fn rss_mib(pid: u32, span: Duration) -> f64 {
    let end = Instant::now() + span;
    let mut most = 0;
    while Instant::now() < end {
        most = most.max(proc_status_kib(pid, "VmRSS:").unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    most as f64 / 1024.0
}

#[tokio::main]
async fn main() {
    if std::env::var_os("BOSUN_CLUSTER_KUBECONFIG").is_none() {
        println!(
            "unrelated_objects: skipped: BOSUN_CLUSTER_KUBECONFIG is not set (run scripts/bench)"
        );
        return;
    }
    let n: usize = std::env::var("BOSUN_BENCH_UNRELATED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let ns = TestNamespace::new("bench-unrelated").await;
    install_crds(&ns.client).await;
    let empty = tempfile::tempdir().expect("an empty source directory");
    let port = free_port();
    let bosun = Process::bosun(|c| {
        c.args(["run", "--dir"])
            .arg(empty.path())
            .args(["--namespace", &ns.name, "--engine-namespace", &ns.name])
            .args([
                "--poll-interval",
                "3600",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--cache-dir")
            .arg(empty.path().join(".cache"))
            .env("BOSUN_LOG", "warn");
    });
    wait_until("bosun ready", || async {
        let (code, _) = http_get(local(port), "/readyz")?;
        (code == 200).then_some(())
    })
    .await;
    let before = rss_mib(bosun.id(), Duration::from_secs(5)).await;

    let deployments = ns.api::<Deployment>();
    let t0 = Instant::now();
    stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let deployments = deployments.clone();
            async move {
                let name = format!("unrelated-{i:05}");
                let d: Deployment = serde_json::from_value(json!({
                    "metadata": {"name": name, "labels": {"app": name, "team": "someone-else"}},
                    "spec": {
                        "replicas": 0,
                        "selector": {"matchLabels": {"app": name}},
                        "template": {
                            "metadata": {"labels": {"app": name}},
                            "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.0"}]}
                        }
                    }
                }))
                .expect("a Deployment");
                deployments
                    .create(&PostParams::default(), &d)
                    .await
                    .expect("create a Deployment");
            }
        })
        .await;
    let created_in = t0.elapsed();
    let listed = deployments
        .list(&ListParams::default())
        .await
        .expect("list");
    assert_eq!(listed.items.len(), n, "all created");
    let served = serde_json::to_vec(&listed.items).expect("JSON").len() as f64 / 1024.0 / 1024.0;
    let after = rss_mib(bosun.id(), Duration::from_secs(10)).await;
    let peak = proc_status_kib(bosun.id(), "VmHWM:").unwrap_or(0) as f64 / 1024.0;

    println!("| unrelated Deployments in the watched namespace | {n:>10} |");
    println!(
        "| created in                                     | {:>8.1} s |",
        created_in.as_secs_f64()
    );
    println!("| their size as served (JSON)                    | {served:>6.1} MiB |");
    println!("| bosun RSS before                               | {before:>6.1} MiB |");
    println!("| bosun RSS after                                | {after:>6.1} MiB |");
    println!(
        "| growth                                         | {:>6.1} MiB |",
        after - before
    );
    println!("| bosun peak RSS (VmHWM)                         | {peak:>6.1} MiB |");
    drop(bosun);
    // The namespace (and its Deployments) goes with `ns`.
}
