//! Benchmark: Bosun against the cluster's own floor, on one test cluster, side by side.
//!
//! 1. **The floor**: N plain Deployments, the pod template Bosun renders for a Rolling app with 1
//!    replica (`bosun_core::rollout::objects::deployment`), created by the bench itself, then their
//!    image changed, each timed until every Deployment is updated and available (`kubectl rollout
//!    status`'s test: observed generation, updated = available = replicas = 1). No controller of ours.
//! 2. **Bosun**: N ManagedApplications (Rolling, 1 replica, no migration, no health check) created,
//!    then `spec.version` bumped on all, through the real `bosun run`, each timed until all are
//!    `Healthy` at the new version; then a canary variant of the bump (3 steps, no pauses).
//!
//! For each phase: the time, CPU seconds of Bosun, kube-apiserver and kube-controller-manager
//! (utime+stime of /proc/PID/stat; their pids from `$BOSUN_CLUSTER_DIR/pids`), and the writes
//! kube-apiserver counted (`apiserver_request_total`, which has no user label: the floor's are the
//! bench's and the controllers', Bosun's phases add Bosun's, so the difference per app is Bosun's
//! cost). Bosun's peak RSS (VmHWM). Targets, as ratios in the same run: create and bump ≤ 1.15 × the
//! floor; Bosun's CPU ≤ 10 % of the control plane's; peak RSS < 100 MiB at 1,000 apps.
//!
//! Skips (exit 0, with a message) when `BOSUN_CLUSTER_KUBECONFIG` is unset.
//! Knobs: `BOSUN_BENCH_APPS` (default 1000), `BOSUN_BENCH_TIMEOUT_SECS` (per phase, default 900).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bosun_core::model::{ManagedApplication, Phase};
use bosun_core::rollout::Role;
use bosun_core::rollout::objects::deployment;
use bosun_core::rollout::revision::Revision;
use common::{Daemon, WRITE_VERBS, clock_ticks_per_second, cpu_ticks, diff, env_num};
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use support::TestNamespace;
use support::process::proc_status_kib;

/// How many creates or patches the bench keeps in flight (kube's client default QPS is unlimited).
const IN_FLIGHT: usize = 64;

/// The writes that count: on the resources an upgrade touches.
async fn writes(client: &Client) -> BTreeMap<String, u64> {
    common::requests(client, &WRITE_VERBS, |resource, sub| match resource {
        "managedapplications" => sub.is_empty() || sub == "status",
        "deployments" | "replicasets" | "services" | "jobs" | "events" | "pods" => true,
        _ => false,
    })
    .await
}

/// The processes whose CPU a phase reports: Bosun (once it runs) and the control plane's.
struct Processes {
    bosun: Option<u32>,
    apiserver: Option<u32>,
    controller_manager: Option<u32>,
}

impl Processes {
    fn of_cluster() -> Processes {
        let pid = |name: &str| {
            let dir = std::env::var("BOSUN_CLUSTER_DIR").ok()?;
            std::fs::read_to_string(format!("{dir}/pids/{name}.pid"))
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        Processes {
            bosun: None,
            apiserver: pid("kube-apiserver"),
            controller_manager: pid("kube-controller-manager"),
        }
    }

    fn ticks(&self) -> [u64; 3] {
        let of = |p: Option<u32>| p.map_or(0, cpu_ticks);
        [
            of(self.bosun),
            of(self.apiserver),
            of(self.controller_manager),
        ]
    }
}

/// What one phase measured.
struct Measured {
    name: &'static str,
    secs: f64,
    done: usize,
    /// CPU seconds of Bosun, kube-apiserver, kube-controller-manager.
    cpu: [f64; 3],
    writes: BTreeMap<String, u64>,
}

/// Runs `act`, then waits with `done` over a watch of `api` until `n` objects are done; measures.
async fn phase<K, A, Fut>(
    name: &'static str,
    client: &Client,
    procs: &Processes,
    api: &Api<K>,
    n: usize,
    act: A,
    done: impl Fn(&K) -> bool,
) -> Measured
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
    A: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let timeout = Duration::from_secs(env_num("BOSUN_BENCH_TIMEOUT_SECS", 900));
    let ticks = procs.ticks();
    let writes_before = writes(client).await;
    let t0 = Instant::now();
    // The watch starts first, so that nothing done is missed.
    let mut events = std::pin::pin!(
        watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    let mut finished: BTreeMap<String, bool> = BTreeMap::new();
    let acting = act();
    let mut acting = std::pin::pin!(acting);
    let mut acted = false;
    let mut count = 0;
    while count < n || !acted {
        let left = timeout.saturating_sub(t0.elapsed());
        tokio::select! {
            () = &mut acting, if !acted => acted = true,
            next = tokio::time::timeout(left, events.next()) => match next {
                Ok(Some(Ok(o))) => {
                    finished.insert(o.name_any(), done(&o));
                    count = finished.values().filter(|d| **d).count();
                }
                Ok(Some(Err(_))) => {}
                Ok(None) | Err(_) => break,
            },
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let after = procs.ticks();
    let hz = clock_ticks_per_second();
    let cpu = [0, 1, 2].map(|i| after[i].saturating_sub(ticks[i]) as f64 / hz);
    Measured {
        name,
        secs,
        done: count,
        cpu,
        writes: diff(&writes(client).await, &writes_before),
    }
}

/// The Deployment Bosun renders for app `name` (Rolling, 1 replica) at `version`, without its owner.
fn plain_deployment(name: &str, version: &str) -> Deployment {
    let app = managed_app(name, version);
    let owner = OwnerReference {
        api_version: "apps.example.com/v1alpha1".into(),
        kind: "ManagedApplication".into(),
        name: name.into(),
        uid: "00000000-0000-0000-0000-000000000000".into(),
        ..OwnerReference::default()
    };
    let mut d = deployment(&app, Role::Stable, &Revision::of(&app.spec), 1, &owner);
    d["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("ownerReferences");
    serde_json::from_value(d).expect("a Deployment")
}

fn managed_app(name: &str, version: &str) -> ManagedApplication {
    serde_json::from_value(json!({
        "apiVersion": "apps.example.com/v1alpha1",
        "kind": "ManagedApplication",
        "metadata": {"name": name},
        "spec": {"version": version, "replicas": 1, "upgradeStrategy": {"type": "Rolling"}},
    }))
    .expect("an app")
}

/// `kubectl rollout status`'s test, and the image at `version`.
fn rolled_out(d: &Deployment, version: &str) -> bool {
    let image_ok = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.containers.first())
        .and_then(|c| c.image.as_deref())
        .is_some_and(|i| i.ends_with(&format!(":{version}")));
    let Some(s) = &d.status else {
        return false;
    };
    image_ok
        && s.observed_generation >= d.metadata.generation
        && s.updated_replicas == Some(1)
        && s.available_replicas == Some(1)
        && s.replicas == Some(1)
}

fn healthy_at(app: &ManagedApplication, version: &str) -> bool {
    app.status.as_ref().is_some_and(|s| {
        s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some(version)
    })
}

async fn for_all(n: usize, each: impl Fn(usize) -> futures::future::BoxFuture<'static, ()>) {
    stream::iter(0..n)
        .for_each_concurrent(IN_FLIGHT, each)
        .await;
}

fn name(i: usize) -> String {
    format!("app-{i:05}")
}

#[tokio::main]
async fn main() {
    if std::env::var_os("BOSUN_CLUSTER_KUBECONFIG").is_none() {
        println!(
            "floor: skipped: BOSUN_CLUSTER_KUBECONFIG is not set (run scripts/bench, or \
             `scripts/cluster up && eval \"$(scripts/cluster env)\"` first)"
        );
        return;
    }
    let n = env_num("BOSUN_BENCH_APPS", 1000) as usize;
    let mut procs = Processes::of_cluster();
    let mut results = Vec::new();

    // 1. The floor.
    let floor_ns = TestNamespace::new("bench-floor").await;
    let client = floor_ns.client.clone();
    let deployments: Api<Deployment> = floor_ns.api();
    let create = {
        let api = deployments.clone();
        move || async move {
            for_all(n, |i| {
                let api = api.clone();
                Box::pin(async move {
                    api.create(&PostParams::default(), &plain_deployment(&name(i), "v1"))
                        .await
                        .expect("creating a Deployment");
                })
            })
            .await;
        }
    };
    results.push(
        phase(
            "floor: create",
            &client,
            &procs,
            &deployments,
            n,
            create,
            |d| rolled_out(d, "v1"),
        )
        .await,
    );
    let bump = {
        let api = deployments.clone();
        move || async move {
            for_all(n, |i| {
                let api = api.clone();
                Box::pin(async move {
                    let image = plain_deployment(&name(i), "v2");
                    let template = &image.spec.expect("a spec").template;
                    let patch = json!({"spec": {"template": template}});
                    api.patch(&name(i), &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .expect("changing a Deployment's image");
                })
            })
            .await;
        }
    };
    results.push(
        phase("floor: bump", &client, &procs, &deployments, n, bump, |d| {
            rolled_out(d, "v2")
        })
        .await,
    );

    // 2. Bosun, in a namespace of its own.
    let ns = TestNamespace::new("bench-bosun").await;
    support::install_crds(&ns.client).await;
    let empty = tempfile::tempdir().expect("an empty source directory");
    let cache = tempfile::tempdir().expect("a cache directory");
    let daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_bosun"))
            .args(["run", "--dir"])
            .arg(empty.path())
            .args(["--namespace", &ns.name, "--name", "bench"])
            .args(["--engine-namespace", &ns.name])
            .args(["--poll-interval", "3600", "--listen", "127.0.0.1:0"])
            .arg("--cache-dir")
            .arg(cache.path())
            .env(
                "KUBECONFIG",
                std::env::var("BOSUN_CLUSTER_KUBECONFIG").expect("checked above"),
            )
            .env("BOSUN_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting bosun run"),
    );
    let pid = daemon.0.id();
    procs.bosun = Some(pid);
    let apps: Api<ManagedApplication> = ns.api();
    let create = {
        let api = apps.clone();
        move || async move {
            for_all(n, |i| {
                let api = api.clone();
                Box::pin(async move {
                    api.create(&PostParams::default(), &managed_app(&name(i), "v1"))
                        .await
                        .expect("creating an app");
                })
            })
            .await;
        }
    };
    results.push(
        phase("bosun: create", &client, &procs, &apps, n, create, |a| {
            healthy_at(a, "v1")
        })
        .await,
    );
    let patch_all = |spec: serde_json::Value| {
        let api = apps.clone();
        move || async move {
            for_all(n, |i| {
                let (api, spec) = (api.clone(), spec.clone());
                Box::pin(async move {
                    let patch = json!({"spec": spec});
                    api.patch(&name(i), &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                        .expect("bumping an app");
                })
            })
            .await;
        }
    };
    results.push(
        phase(
            "bosun: bump",
            &client,
            &procs,
            &apps,
            n,
            patch_all(json!({"version": "v2"})),
            |a| healthy_at(a, "v2"),
        )
        .await,
    );
    let canary = json!({"version": "v3", "upgradeStrategy": {"type": "Canary", "canary": {"steps": [
        {"weight": 33}, {"weight": 66}, {"weight": 100}
    ]}}});
    results.push(
        phase(
            "bosun: canary bump",
            &client,
            &procs,
            &apps,
            n,
            patch_all(canary),
            |a| healthy_at(a, "v3"),
        )
        .await,
    );
    let peak_rss = proc_status_kib(pid, "VmHWM:").unwrap_or(0) as f64 / 1024.0;
    drop(daemon);

    println!(
        "floor: {n} apps (Rolling, 1 replica, no migration, no health check) on one test cluster"
    );
    println!(
        "| phase              | time (s) | done      | CPU s: Bosun | apiserver | controller-manager | Bosun / control plane |"
    );
    println!(
        "|--------------------|----------|-----------|--------------|-----------|--------------------|-----------------------|"
    );
    for m in &results {
        let plane = m.cpu[1] + m.cpu[2];
        let share = if plane > 0.0 {
            format!("{:.1} %", m.cpu[0] / plane * 100.0)
        } else {
            "n/a".into()
        };
        println!(
            "| {:<18} | {:>8.1} | {:>4}/{:<4} | {:>12.1} | {:>9.1} | {:>18.1} | {:>21} |",
            m.name, m.secs, m.done, n, m.cpu[0], m.cpu[1], m.cpu[2], share
        );
    }
    let time = |name: &str| {
        results
            .iter()
            .find(|m| m.name == name)
            .map_or(f64::NAN, |m| m.secs)
    };
    println!(
        "ratios (target ≤ 1.15): create {:.2} × the floor, bump {:.2} ×, canary bump {:.2} × the floor's bump",
        time("bosun: create") / time("floor: create"),
        time("bosun: bump") / time("floor: bump"),
        time("bosun: canary bump") / time("floor: bump"),
    );
    println!("Bosun's peak RSS (VmHWM): {peak_rss:.1} MiB (target < 100 MiB at 1,000 apps)");
    println!(
        "writes per app, as kube-apiserver counted them (the floor's are the bench's and the controllers'):"
    );
    for m in &results {
        let per_app: Vec<String> = m
            .writes
            .iter()
            .map(|(k, v)| format!("{k} {:.2}", *v as f64 / n as f64))
            .collect();
        println!("  {}: {}", m.name, per_app.join(", "));
    }
}
