//! Benchmark: 1,000 ManagedApplications on the test cluster, driven by the real `bosun run` binary.
//!
//! 1. Creates 1,000 apps (Rolling, no migration, 1 replica) at once in a namespace of their own, with
//!    `bosun run --engine-namespace` running as a subprocess, and measures the time until all are
//!    Healthy and the process's peak RSS (VmHWM of /proc/<pid>/status). Targets: < 60 s, < 150 MiB.
//! 2. Leaves them alone (5 minutes; `BOSUN_BENCH_IDLE_SECS` shortens it) and measures Bosun's API writes
//!    and CPU time. Targets: zero writes, < 2 % of a core.
//!
//! Writes are counted by kube-apiserver itself (`apiserver_request_total` on its /metrics), which has no
//! user label, so the filter keeps what only Bosun writes in this namespace-isolated cluster:
//! mutating verbs (POST, PUT, PATCH, APPLY, DELETE, DELETECOLLECTION) on `managedapplications` (the object
//! and its `status` subresource: nobody else writes them), and on the main resource (no subresource) of
//! `deployments`, `services` and `jobs`. The `status` subresources of Deployments and Jobs are left out:
//! the controller-manager writes those (it also sets the Deployment revision annotation, but only when
//! a rollout creates a ReplicaSet, which a steady app never does). Events are left out: they are
//! reports, not changes. The counters are cluster-wide, so run this on a cluster of its own (as
//! `scripts/bench` does). The bench's own creates of the apps are subtracted. CPU is utime+stime of
//! /proc/<pid>/stat.
//!
//! Skips (exit 0, with a message) when `BOSUN_CLUSTER_KUBECONFIG` is unset.
//! Knobs: `BOSUN_BENCH_APPS` (default 1000), `BOSUN_BENCH_IDLE_SECS` (default 300).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bosun_core::model::{ManagedApplication, Phase};
use common::{
    Daemon, bosun_requests_seen, bosun_writes, clock_ticks_per_second, cpu_ticks, diff, env_num,
    show,
};
use futures::{StreamExt, stream};
use kube::ResourceExt;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use support::process::proc_status_kib;
use support::{TestNamespace, install_crds};

#[tokio::main]
async fn main() {
    if common::no_cluster("engine_scale") {
        return;
    }
    let apps_n = env_num("BOSUN_BENCH_APPS", 1000) as usize;
    let idle = Duration::from_secs(env_num("BOSUN_BENCH_IDLE_SECS", 300));
    let ns = TestNamespace::new("bench-scale").await;
    install_crds(&ns.client).await;
    let client = ns.client.clone();

    let empty = tempfile::tempdir().expect("an empty source directory");
    let cache = tempfile::tempdir().expect("a cache directory");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("addr")
        .port();
    let mut daemon = Daemon(
        Command::new(env!("CARGO_BIN_EXE_bosun"))
            .args(["run", "--dir"])
            .arg(empty.path())
            .args(["--namespace", &ns.name, "--name", "bench"])
            .args(["--engine-namespace", &ns.name])
            .args([
                "--poll-interval",
                "3600",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
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
    tokio::time::sleep(Duration::from_secs(2)).await;
    if let Ok(Some(status)) = daemon.0.try_wait() {
        panic!("bosun run exited at start: {status}");
    }
    let rss_start = proc_status_kib(pid, "VmRSS:").unwrap_or(0);

    // 1. Create them all at once, until all are Healthy.
    let apps = ns.api::<ManagedApplication>();
    let writes_before = bosun_writes(&client).await;
    let gets_before = bosun_requests_seen(&client, &["GET"]).await;
    let t0 = Instant::now();
    stream::iter(0..apps_n)
        .for_each_concurrent(64, |i| {
            let apps = apps.clone();
            async move {
                let app: ManagedApplication = serde_json::from_value(json!({
                    "apiVersion": "apps.example.com/v1alpha1",
                    "kind": "ManagedApplication",
                    "metadata": {"name": format!("app-{i:04}")},
                    "spec": {"version": "v1", "replicas": 1, "upgradeStrategy": {"type": "Rolling"}},
                }))
                .expect("an app");
                apps.create(&PostParams::default(), &app)
                    .await
                    .expect("creating an app");
            }
        })
        .await;
    let created = t0.elapsed();
    // Count Healthy apps from a watch: polling a list of 1,000 apps would load the API server more
    // than Bosun does.
    let deadline = Duration::from_secs(600);
    let mut phases: BTreeMap<String, Option<Phase>> = BTreeMap::new();
    let mut healthy = 0;
    {
        let mut events = std::pin::pin!(
            watcher(apps.clone(), watcher::Config::default())
                .default_backoff()
                .applied_objects()
        );
        while healthy < apps_n {
            let left = deadline.saturating_sub(t0.elapsed());
            match tokio::time::timeout(left, events.next()).await {
                Ok(Some(Ok(app))) => {
                    let phase = app.status.as_ref().and_then(|s| s.phase);
                    phases.insert(app.name_any(), phase);
                    healthy = phases
                        .values()
                        .filter(|p| **p == Some(Phase::Healthy))
                        .count();
                }
                Ok(Some(Err(_))) => {}
                Ok(None) | Err(_) => break,
            }
            if daemon.0.try_wait().ok().flatten().is_some() {
                panic!("bosun run died");
            }
        }
    }
    let all_healthy = t0.elapsed();
    let peak_rss = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    let mut writes_rollout = diff(&bosun_writes(&client).await, &writes_before);
    // The bench created the apps itself: those POSTs are not Bosun's.
    if let Some(n) = writes_rollout.get_mut("POST managedapplications") {
        *n = n.saturating_sub(apps_n as u64);
    }
    writes_rollout.retain(|_, n| *n > 0);
    let gets_rollout = diff(&bosun_requests_seen(&client, &["GET"]).await, &gets_before);

    // 2. Leave them alone.
    let ticks_before = cpu_ticks(pid);
    let writes_idle_before = bosun_writes(&client).await;
    let t_idle = Instant::now();
    tokio::time::sleep(idle).await;
    let idle_elapsed = t_idle.elapsed();
    let writes_idle = diff(&bosun_writes(&client).await, &writes_idle_before);
    let cpu_secs = (cpu_ticks(pid) - ticks_before) as f64 / clock_ticks_per_second();
    let cpu_share = cpu_secs / idle_elapsed.as_secs_f64() * 100.0;
    let rss_end = proc_status_kib(pid, "VmRSS:").unwrap_or(0);
    let peak_rss_end = proc_status_kib(pid, "VmHWM:").unwrap_or(0);
    drop(daemon);

    let idle_total: u64 = writes_idle.values().sum();
    let mib = |kib: u64| kib as f64 / 1024.0;
    println!(
        "engine_scale: {apps_n} ManagedApplications (Rolling, no migration, 1 replica), bosun run pid {pid}"
    );
    println!("| figure                                  | value            | target    |");
    println!("|-----------------------------------------|------------------|-----------|");
    println!(
        "| all created (client side)               | {:>12.1} s   |           |",
        created.as_secs_f64()
    );
    println!(
        "| all Healthy (from first create)         | {:>12.1} s   | < 60 s    |{}",
        all_healthy.as_secs_f64(),
        if healthy == apps_n {
            String::new()
        } else {
            format!(" only {healthy}/{apps_n} Healthy")
        }
    );
    println!(
        "| RSS at start                            | {:>12.1} MiB |           |",
        mib(rss_start)
    );
    println!(
        "| peak RSS (VmHWM) until all Healthy      | {:>12.1} MiB | < 150 MiB |",
        mib(peak_rss)
    );
    println!(
        "| Bosun writes during the rollout         | {:>12}     |           |",
        writes_rollout.values().sum::<u64>()
    );
    println!(
        "| idle window                             | {:>12.1} s   | 300 s     |",
        idle_elapsed.as_secs_f64()
    );
    println!("| Bosun writes while idle                 | {idle_total:>12}     | 0         |");
    println!("| CPU while idle (utime+stime)            | {cpu_share:>12.3} %   | < 2 %     |");
    println!(
        "| RSS after idle / peak RSS overall       | {:>5.1} / {:>5.1} MiB |           |",
        mib(rss_end),
        mib(peak_rss_end)
    );
    println!("writes during the rollout: {}", show(&writes_rollout));
    println!(
        "GETs during the rollout (nearly all Bosun's: controllers read from watches): {}",
        show(&gets_rollout)
    );
    println!("writes while idle: {}", show(&writes_idle));
}
