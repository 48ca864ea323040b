//! Benchmark: Bosun's own overhead per canary step, beyond the configured pause and pod readiness.
//!
//! On the test cluster, an engine (as `bosun run --engine-namespace` runs it) carries a 5-replica app
//! through canary steps of 20, 40, 60, 80 and 100 % with a pause of `PAUSE` seconds after each of the
//! first four, twice (v1 → v2 → v3). A watch on the namespace's Deployments timestamps every change.
//! For each step: overhead = (when the next step changed a Deployment) − (when this step's canary pods
//! were all ready) − the pause. After the last step, the "next change" is the promotion: the stable
//! Deployment taking the new version. Target: < 1 s per step.
//!
//! What is counted as overhead: noticing the pods are ready, deciding, writing status, the pause's
//! rounding (status times have whole seconds), requeue timing, and the apply of the next step.
//!
//! Skips (exit 0, with a message) when `BOSUN_CLUSTER_KUBECONFIG` is unset.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bosun_core::model::{ManagedApplication, Phase};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;
use support::{TestNamespace, install_crds, wait_until};

const PAUSE: u64 = 2;
const REPLICAS: i32 = 5;
const WEIGHTS: [i32; 5] = [20, 40, 60, 80, 100];

/// One observed state of a Deployment.
#[derive(Clone, Debug)]
struct Seen {
    at: Instant,
    name: String,
    image: String,
    replicas: i32,
    ready: i32,
    current: bool,
}

fn seen(d: &Deployment) -> Seen {
    let spec = d.spec.clone().unwrap_or_default();
    let st = d.status.clone().unwrap_or_default();
    Seen {
        at: Instant::now(),
        name: d.metadata.name.clone().unwrap_or_default(),
        image: spec
            .template
            .spec
            .and_then(|s| s.containers.first()?.image.clone())
            .unwrap_or_default(),
        replicas: spec.replicas.unwrap_or(1),
        ready: st.ready_replicas.unwrap_or(0),
        current: st.observed_generation == d.metadata.generation
            && st.updated_replicas == spec.replicas
            && st.replicas == spec.replicas,
    }
}

/// The canary's replica count at each step (the engine's arithmetic: ceil(replicas × weight / 100)).
fn canary_count(weight: i32) -> i32 {
    (REPLICAS * weight + 99) / 100
}

/// Per step: (step, overhead in seconds), from the timeline of one upgrade to `version`.
fn overheads(timeline: &[Seen], version: &str) -> Vec<(usize, f64)> {
    let image = format!("bench:{version}");
    let mut out = Vec::new();
    let mut from = 0;
    for (step, weight) in WEIGHTS.iter().enumerate() {
        let count = canary_count(*weight);
        let Some(ready) = timeline[from..].iter().position(|s| {
            s.name == "bench-canary"
                && s.image == image
                && s.replicas == count
                && s.current
                && s.ready >= count
        }) else {
            break;
        };
        let ready = from + ready;
        let pause = if step + 1 < WEIGHTS.len() { PAUSE } else { 0 };
        let next = timeline[ready..]
            .iter()
            .position(|s| match WEIGHTS.get(step + 1) {
                Some(w) => s.name == "bench-canary" && s.replicas == canary_count(*w),
                None => s.name == "bench" && s.image == image,
            });
        let Some(next) = next else { break };
        let next = ready + next;
        let gap = timeline[next].at - timeline[ready].at;
        out.push((step, gap.as_secs_f64() - pause as f64));
        from = next;
    }
    out
}

#[tokio::main]
async fn main() {
    if std::env::var_os("BOSUN_CLUSTER_KUBECONFIG").is_none() {
        println!(
            "engine_step_overhead: skipped: BOSUN_CLUSTER_KUBECONFIG is not set (run scripts/bench, \
             or `scripts/cluster up && eval \"$(scripts/cluster env)\"` first)"
        );
        return;
    }
    let ns = TestNamespace::new("bench-step").await;
    install_crds(&ns.client).await;
    let engine = tokio::spawn(bosun::engine::run(
        ns.client.clone(),
        Some(ns.name.clone()),
        Default::default(),
    ));

    let timeline = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let watch = {
        let timeline = timeline.clone();
        let deployments = ns.api::<Deployment>();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(
                watcher(deployments, watcher::Config::default())
                    .default_backoff()
                    .applied_objects()
            );
            while let Some(e) = events.next().await {
                if let Ok(d) = e {
                    timeline.lock().expect("timeline").push(seen(&d));
                }
            }
        })
    };

    let apps = ns.api::<ManagedApplication>();
    let steps: Vec<_> = WEIGHTS
        .iter()
        .enumerate()
        .map(|(i, w)| {
            if i + 1 < WEIGHTS.len() {
                json!({"weight": w, "pause": PAUSE})
            } else {
                json!({"weight": w})
            }
        })
        .collect();
    let app: ManagedApplication = serde_json::from_value(json!({
        "apiVersion": "apps.example.com/v1alpha1",
        "kind": "ManagedApplication",
        "metadata": {"name": "bench"},
        "spec": {"version": "v1", "replicas": REPLICAS,
                 "upgradeStrategy": {"type": "Canary", "canary": {"steps": steps}}},
    }))
    .expect("an app");
    apps.create(&PostParams::default(), &app)
        .await
        .expect("create");
    let healthy_at = |version: &'static str| {
        let apps = apps.clone();
        async move {
            wait_until(&format!("Healthy at {version}"), || async {
                let s = apps.get("bench").await.ok()?.status?;
                (s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some(version))
                    .then_some(())
            })
            .await
        }
    };
    healthy_at("v1").await;

    let mut rows = Vec::new();
    for version in ["v2", "v3"] {
        let started = Instant::now();
        apps.patch(
            "bench",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"version": version}})),
        )
        .await
        .expect("upgrade");
        healthy_at(version).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let total = started.elapsed();
        let t = timeline.lock().expect("timeline").clone();
        let o = overheads(&t, version);
        if o.len() < WEIGHTS.len() {
            println!(
                "warning: only {} of {} steps of {version} found in the watch",
                o.len(),
                WEIGHTS.len()
            );
        }
        rows.push((version, total, o));
    }
    engine.abort();
    watch.abort();

    println!(
        "engine_step_overhead: {REPLICAS} replicas, canary steps {WEIGHTS:?} %, pause {PAUSE} s after each but the last"
    );
    println!("| upgrade | step | weight | overhead beyond readiness + pause |");
    println!("|---------|------|--------|-----------------------------------|");
    let mut all = Vec::new();
    for (version, _, o) in &rows {
        for (step, secs) in o {
            println!(
                "| {version:<7} | {step:>4} | {:>5}% | {secs:>29.3} s   |",
                WEIGHTS[*step]
            );
            all.push(*secs);
        }
    }
    for (version, total, _) in &rows {
        println!(
            "upgrade to {version}: {:.1} s in all (pauses: {} s)",
            total.as_secs_f64(),
            PAUSE * 4
        );
    }
    if !all.is_empty() {
        all.sort_by(f64::total_cmp);
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        println!(
            "overhead per step: mean {mean:.3} s, median {:.3} s, max {:.3} s over {} steps (target < 1 s)",
            all[all.len() / 2],
            all[all.len() - 1],
            all.len()
        );
    }
}
