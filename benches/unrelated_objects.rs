//! Benchmark: what the cluster's other Deployments and Pods cost Bosun's memory. Bosun watches only
//! what it made (label selectors on its watches), so 10,000 Deployments and 10,000 Pods that are not
//! its own must leave its resident memory where it was. Measures `bosun run`'s RSS (VmRSS of
//! /proc/<pid>/status, the largest of a few seconds' samples) before and after creating them in the
//! very namespace its engine watches: first the Deployments (0 replicas: no pods), then bare Pods
//! (`nodeName` set to a kwok node, so no scheduler work; the bench waits, from a watch, until kwok has
//! made them all Running, so they carry a status as real pods do). Their labels are none that a watch
//! of Bosun's selects (`app`, `bosun.dev/role`, `bosun.dev/app`, `bosun.dev/version`,
//! `app.kubernetes.io/managed-by`). Prints the size of those objects as the API serves them: what a
//! watch without selectors would have cached. Target: each growth is a small fraction of that size.
//!
//! Skips (exit 0, with a message) when `BOSUN_CLUSTER_KUBECONFIG` is unset.
//! Knob: `BOSUN_BENCH_UNRELATED` (default 10000: as many Deployments, and as many Pods).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use common::{Bosun, act_until_done, env_num, rss_mib, status_mib};
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use support::{TestNamespace, install_crds};

/// Creates `n` objects, `make(i)` each, 32 at a time.
async fn create_all<K>(api: &Api<K>, n: usize, make: impl Fn(usize) -> K)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    stream::iter(0..n)
        .for_each_concurrent(32, |i| {
            let (api, object) = (api.clone(), make(i));
            async move {
                api.create(&PostParams::default(), &object)
                    .await
                    .expect("creating an unrelated object");
            }
        })
        .await;
}

/// How many objects `api` serves, and their size as JSON in MiB.
async fn served<K>(api: &Api<K>) -> (usize, f64)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let listed = api.list(&ListParams::default()).await.expect("list");
    let size = serde_json::to_vec(&listed.items).expect("JSON").len();
    (listed.items.len(), size as f64 / 1024.0 / 1024.0)
}

fn unrelated_deployment(i: usize) -> Deployment {
    let name = format!("unrelated-{i:05}");
    serde_json::from_value(json!({
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
    .expect("a Deployment")
}

fn unrelated_pod(i: usize, node: &str) -> Pod {
    let name = format!("unrelated-pod-{i:05}");
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"workload": name, "team": "someone-else"}},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "app", "image": "registry.example.com/app:1.0"}]
        }
    }))
    .expect("a Pod")
}

/// One row of the table.
fn row(what: &str, value: String) {
    println!("| {what:<52} | {value:>12} |");
}

#[tokio::main]
async fn main() {
    if common::no_cluster("unrelated_objects") {
        return;
    }
    let n = env_num("BOSUN_BENCH_UNRELATED", 10_000) as usize;
    let node = std::env::var("BOSUN_CLUSTER_NODE_NAMES")
        .ok()
        .and_then(|names| names.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "kwok-node-0".into());
    let ns = TestNamespace::new("bench-unrelated").await;
    install_crds(&ns.client).await;
    let bosun = Bosun::start(&ns.name).await;
    let pid = bosun.pid();
    let before = rss_mib(pid, Duration::from_secs(5)).await;

    let deployments = ns.api::<Deployment>();
    let t0 = Instant::now();
    create_all(&deployments, n, unrelated_deployment).await;
    let deployments_in = t0.elapsed().as_secs_f64();
    let (listed, deployments_size) = served(&deployments).await;
    assert_eq!(listed, n, "all Deployments created");
    let after_deployments = rss_mib(pid, Duration::from_secs(10)).await;

    let pods = ns.api::<Pod>();
    let t0 = Instant::now();
    let create = create_all(&pods, n, |i| unrelated_pod(i, &node));
    let running = act_until_done(&pods, n, Duration::from_secs(900), create, |p| {
        p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
    .await;
    let pods_in = t0.elapsed().as_secs_f64();
    let (listed, pods_size) = served(&pods).await;
    assert_eq!(listed, n, "all Pods created");
    let after_pods = rss_mib(pid, Duration::from_secs(10)).await;
    let peak = status_mib(pid, "VmHWM:");

    let mib = |v: f64| format!("{v:.1} MiB");
    row(
        "unrelated Deployments in the watched namespace",
        n.to_string(),
    );
    row("  created in", format!("{deployments_in:.1} s"));
    row("  their size as served (JSON)", mib(deployments_size));
    row(
        "unrelated Pods in the watched namespace, Running",
        format!("{running}/{n}"),
    );
    row("  created and Running in", format!("{pods_in:.1} s"));
    row("  their size as served (JSON)", mib(pods_size));
    row("bosun RSS before", mib(before));
    row("bosun RSS after the Deployments", mib(after_deployments));
    row(
        "  growth with the Deployments",
        mib(after_deployments - before),
    );
    row("bosun RSS after the Pods too", mib(after_pods));
    row(
        "  growth with the Pods",
        mib(after_pods - after_deployments),
    );
    row("bosun peak RSS (VmHWM)", mib(peak));
    drop(bosun);
    // The namespace (and its Deployments and Pods) goes with `ns`.
}
