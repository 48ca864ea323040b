//! Benchmark: Bosun against the cluster's own floor, on one test cluster, side by side; and, as a mode
//! of its own, Bosun alone with 10,000 apps.
//!
//! **The comparison** (the default):
//! 1. **The floor**: N plain Deployments, the pod template Bosun renders for a Rolling app with 1
//!    replica (`bosun_core::rollout::objects::deployment`), created by the bench itself, then their
//!    image changed, each timed until every Deployment is updated and available (`kubectl rollout
//!    status`'s test: observed generation, updated = available = replicas = 1). No controller of ours.
//!    Then, in a namespace of their own, the same N Deployments created each with the Service Bosun
//!    gives an app (`objects::active_service`), both at once: the floor of what Bosun creates. (A
//!    Service costs kube-apiserver an IP allocation, an `IPAddress` object, and it allocates them
//!    one at a time: on this machine about 30 a second.)
//!
//!    Then **the floor of Bosun's writes** (`floor+writes`), in a namespace of its own: the bench
//!    makes, for each app, the writes Bosun's upgrade makes, with Bosun's own write functions
//!    (`engine::write_status`, `engine::publish_event`) and no engine deciding them (no Bosun runs
//!    there): the app created (or its version patched); at once its status (Deploying), its
//!    ControllerRevision, an Event, the Deployment applied (and at a create the Service); then, when
//!    a watch sees the Deployment rolled out, its status (Healthy) and an Event. Timed until every
//!    app is Healthy at the version, as Bosun's phases are. What Bosun takes beyond this is the
//!    engine's own cost: its watches, its decisions, its waits.
//! 2. **Bosun**: N ManagedApplications (Rolling, 1 replica, no migration, no health check) created,
//!    then `spec.version` bumped on all, through the real `bosun run`, each timed until all are
//!    `Healthy` at the new version; then a steady reconcile of every app (below); then a canary
//!    variant of the bump (3 steps, no pauses).
//!
//! For each phase: the time, CPU seconds of Bosun, kube-apiserver and kube-controller-manager
//! (utime+stime of /proc/PID/stat; their pids from `$BOSUN_CLUSTER_DIR/pids`), and the writes
//! kube-apiserver counted (`apiserver_request_total`, which has no user label: the floor's are the
//! bench's and the controllers', Bosun's phases add Bosun's, so the difference per app is Bosun's
//! cost), and the requests it refused with 409 Conflict. For Bosun's phases also when the apps were
//! created, their upgrades started and they were Healthy, and how many reconciles the phase took, of
//! what mean length. Bosun's peak RSS (VmHWM). Targets, as ratios in the same run: create and bump ≤ 1.15 × the
//! floor; Bosun's CPU ≤ 10 % of the control plane's; peak RSS < 100 MiB at 1,000 apps.
//!
//! **Steady reconcile**: with every app Healthy at v2 and Bosun quiet (no reconcile finished for 3 s;
//! the bench waits for that at most 2 minutes and prints how long it waited), the bench annotates
//! every app (`bench.bosun.dev/touch`, a merge patch of metadata only, which wakes its reconcile) and
//! waits until Bosun's own counter of ManagedApplication reconciles
//! (`bosun_reconciles_total{controller="managedapplication",result="ok"}`) has grown by N, then until
//! Bosun is quiet again. It prints the reconciles counted, the requests Bosun made meanwhile by its
//! own count (`bosun_kube_requests_total{verb,resource}`, every request through its client), the
//! requests per reconcile (watches left out: they are long-running and counted when they start, so
//! they are printed apart) and the writes kube-apiserver counted (the bench's N patches taken off).
//! Target: no request at all (a steady reconcile reads only its caches).
//!
//! With `BOSUN_BENCH_RUNS` > 1 the whole comparison runs that many times, each in fresh namespaces
//! (the previous run's are deleted first, and the next run waits until they are gone), each run's
//! table printed, then the medians: per phase (time, CPU seconds, Bosun's share), of the ratios and of
//! the peak RSS.
//!
//! **At scale** (`BOSUN_BENCH_SCALE_APPS` set, say 10000: then only this runs): one `bosun run`, its
//! engine acting in every namespace, and apps spread over namespaces of
//! `BOSUN_BENCH_SCALE_PER_NAMESPACE` (default 100: the cluster's own controllers look through a
//! namespace's ReplicaSets and pods at each sync, and 10,000 in one took them hours), created in waves of `BOSUN_BENCH_SCALE_WAVE` (default 1,000); each wave timed until all apps so
//! far are Healthy, then Bosun's steady VmRSS sampled (the largest of 3 s of samples). Prints each
//! wave's time and RSS, the total create time, and the memory slope in MiB per 1,000 apps (a
//! least-squares fit over the waves, with its R²). Then bumps them all at once (v1 → v2), timed until
//! all are Healthy at v2, with the peak RSS (VmHWM) and the engine's Events by result (published,
//! failed, dropped: its queue holds 10,000); then, once Bosun is quiet, leaves them alone for
//! `BOSUN_BENCH_IDLE_SECS` (default 120) and prints Bosun's writes as kube-apiserver counted them
//! (filtered as `engine_scale` does: only Bosun writes those), Bosun's API requests by its own count,
//! and its CPU as % of one core over that window. Targets while idle: 0 writes, < 2 % of a core.
//! kwok's nodes advertise 1M pods each; `scripts/bench` runs this part on a fresh cluster of 10 nodes
//! whose controller-manager syncs 25 Deployments and ReplicaSets at once (`BOSUN_CLUSTER_SYNCS`;
//! upstream's 5 left 10,000 rollouts at once minutes behind their ready pods).
//!
//! Skips (exit 0, with a message) when `BOSUN_CLUSTER_KUBECONFIG` is unset.
//! Knobs: `BOSUN_BENCH_APPS` (default 1000), `BOSUN_BENCH_RUNS` (default 1),
//! `BOSUN_BENCH_TIMEOUT_SECS` (per phase, and per namespace deletion, default 900; `scripts/bench`
//! gives the at-scale part 3600);
//! `BOSUN_BENCH_SCALE_APPS` (unset: the comparison), `BOSUN_BENCH_SCALE_WAVE` (default 1000),
//! `BOSUN_BENCH_SCALE_PER_NAMESPACE` (default 100), `BOSUN_BENCH_IDLE_SECS` (default 120).

mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::{Duration, Instant};

use bosun::engine::{publish_event, write_status};
use bosun_core::model::{HistoryEntry, ManagedApplication, ManagedApplicationStatus, Phase};
use bosun_core::rollout::objects::{active_service, controller_revision, deployment};
use bosun_core::rollout::revision::Revision;
use bosun_core::rollout::{Role, Transition};
use common::{
    Bosun, WRITE_VERBS, act_until_done, bosun_writes, clock_ticks_per_second, cpu_ticks, diff,
    env_num, median, rss_mib, show, split_watches, status_mib,
};
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use support::{TestNamespace, install_crds, wait_up_to};

/// The phases of the floor of Bosun's writes ([`with_bosuns_writes`]).
const FLOOR_WRITES_CREATE: &str = "floor+writes: create";
const FLOOR_WRITES_BUMP: &str = "floor+writes: bump";

/// How many creates or patches the bench keeps in flight (kube's client default QPS is unlimited).
const IN_FLIGHT: usize = 64;

/// How long Bosun must have finished no reconcile to count as quiet.
const QUIET: Duration = Duration::from_secs(3);

/// How long the bench waits at most for Bosun to become quiet (then measures anyway: the settling
/// time printed says so).
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// The annotation the steady phase sets on every app: it changes nothing Bosun acts on.
const TOUCH: &str = "bench.bosun.dev/touch";

fn timeout() -> Duration {
    Duration::from_secs(env_num("BOSUN_BENCH_TIMEOUT_SECS", 900))
}

/// The writes that count: on the resources an upgrade touches.
async fn writes(client: &Client) -> BTreeMap<String, u64> {
    common::requests(client, &WRITE_VERBS, |resource, sub| match resource {
        "managedapplications" => sub.is_empty() || sub == "status",
        "deployments" | "replicasets" | "services" | "jobs" | "events" | "pods" => true,
        // What Bosun's own objects cost besides: its kept revisions, and a Service's IP and
        // endpoints (written by kube-apiserver and the controller-manager).
        "controllerrevisions" | "ipaddresses" | "endpoints" | "endpointslices" => true,
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
    /// The requests kube-apiserver refused with 409 (a write against an older object).
    refused: BTreeMap<String, u64>,
    /// When the phase began, by the wall clock (the times the cluster records are compared to it).
    began: k8s_openapi::jiff::Timestamp,
    /// Where the time went, when the objects say it.
    timeline: Option<String>,
}

impl Measured {
    /// Bosun's CPU as a share of the control plane's, in %.
    fn share(&self) -> f64 {
        self.cpu[0] / (self.cpu[1] + self.cpu[2]) * 100.0
    }
}

/// Runs `act` while a watch of `api` waits until `n` objects are `done`; measures.
async fn phase<K>(
    name: &'static str,
    client: &Client,
    procs: &Processes,
    api: &Api<K>,
    n: usize,
    act: impl std::future::Future<Output = ()>,
    done: impl Fn(&K) -> bool,
) -> Measured
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let ticks = procs.ticks();
    let writes_before = writes(client).await;
    let refused_before = common::refused(client).await;
    let began = k8s_openapi::jiff::Timestamp::now();
    let t0 = Instant::now();
    let count = act_until_done(api, n, timeout(), act, done).await;
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
        refused: diff(&common::refused(client).await, &refused_before),
        began,
        timeline: None,
    }
}

/// Seconds after `began` by which half and all of `times` had come (the cluster records whole
/// seconds: ±1 s).
fn spread(began: k8s_openapi::jiff::Timestamp, times: Vec<k8s_openapi::jiff::Timestamp>) -> String {
    let mut after: Vec<f64> = times
        .iter()
        .map(|t| t.duration_since(began).as_secs_f64().max(0.0))
        .collect();
    after.sort_by(f64::total_cmp);
    match after.len() {
        0 => "none".into(),
        n => format!(
            "half by +{:.0} s, all by +{:.0} s",
            after[n / 2],
            after[n - 1]
        ),
    }
}

/// Where a phase's time went in Bosun: when each app was created (in a create), when its upgrade
/// started (its first history entry of the phase) and when it was Healthy.
async fn app_timeline(apps: &Api<ManagedApplication>, m: &mut Measured) {
    let list = match apps.list(&Default::default()).await {
        Ok(list) => list,
        Err(e) => {
            m.timeline = Some(format!("not read: {e}"));
            return;
        }
    };
    let since = m.began - k8s_openapi::jiff::SignedDuration::from_secs(1);
    let (mut created, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
    for a in &list.items {
        created.extend(
            a.metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .filter(|t| *t >= since),
        );
        let history = a.status.iter().flat_map(|s| &s.history);
        let this: Vec<_> = history.filter(|h| h.time.0 >= since).collect();
        starts.extend(this.first().map(|h| h.time.0));
        ends.extend(
            this.iter()
                .rev()
                .find(|h| h.phase == Phase::Healthy)
                .map(|h| h.time.0),
        );
    }
    let created = if created.is_empty() {
        String::new()
    } else {
        format!("created: {}; ", spread(m.began, created))
    };
    m.timeline = Some(format!(
        "{created}upgrades started: {}; Healthy: {}",
        spread(m.began, starts),
        spread(m.began, ends)
    ));
}

/// Measures a phase of the floor's, done when every Deployment is rolled out at `version`, and where
/// its time went.
async fn floor_phase(
    name: &'static str,
    client: &Client,
    procs: &Processes,
    deployments: &Api<Deployment>,
    n: usize,
    act: impl std::future::Future<Output = ()>,
    version: &str,
) -> Measured {
    let mut m = phase(name, client, procs, deployments, n, act, |d| {
        rolled_out(d, version)
    })
    .await;
    deployment_timeline(deployments, &mut m).await;
    m
}

/// Measures a phase of Bosun's: where its time went, and how many reconciles it took, of what
/// length on average.
async fn bosun_phase(
    m: impl std::future::Future<Output = Measured>,
    bosun: &Bosun,
    apps: &Api<ManagedApplication>,
) -> Measured {
    let (count0, secs0) = bosun.reconcile_time();
    let mut m = m.await;
    app_timeline(apps, &mut m).await;
    let (count, secs) = bosun.reconcile_time();
    let count = count - count0;
    if let Some(t) = m.timeline.as_mut() {
        t.push_str(&format!(
            "; {count} reconciles, {:.0} ms each on average",
            (secs - secs0) / count.max(1) as f64 * 1000.0
        ));
    }
    m
}

/// Where a phase's time went in the floor: when each Deployment's rollout completed (its
/// `Progressing` condition's last update).
async fn deployment_timeline(deployments: &Api<Deployment>, m: &mut Measured) {
    let list = match deployments.list(&Default::default()).await {
        Ok(list) => list,
        Err(e) => {
            m.timeline = Some(format!("not read: {e}"));
            return;
        }
    };
    let done = list.items.iter().filter_map(|d| {
        let conditions = d.status.as_ref()?.conditions.as_ref()?;
        let c = conditions.iter().find(|c| c.type_ == "Progressing")?;
        Some(c.last_update_time.as_ref()?.0)
    });
    m.timeline = Some(format!(
        "rollouts complete: {}",
        spread(m.began, done.collect())
    ));
}

/// A phase of Bosun's that did not finish: its log says why.
fn explain_short(m: &Measured, n: usize, bosun: &Bosun) {
    if m.done < n {
        println!(
            "floor: {}: only {}/{n} done before the timeout; bosun's log ends:\n{}",
            m.name,
            m.done,
            bosun.log_tail()
        );
    }
}

/// The Deployment Bosun renders for app `name` (Rolling, 1 replica) at `version`, without its owner.
fn plain_deployment(name: &str, version: &str) -> Deployment {
    let app = managed_app(name, version);
    let d = deployment(
        &app,
        Role::Stable,
        &Revision::of(&app.spec),
        1,
        &no_owner(name),
    );
    serde_json::from_value(without_owner(d)).expect("a Deployment")
}

/// The Service Bosun renders for the app `name` at `version`, as the floor's.
fn plain_service(name: &str, version: &str) -> Service {
    let app = managed_app(name, version);
    let hash = Revision::of(&app.spec).hash();
    let svc = active_service(&app, Some(&hash), &no_owner(name));
    serde_json::from_value(without_owner(svc)).expect("a Service")
}

/// An owner for the renderers, which the floor's objects go without.
fn no_owner(name: &str) -> OwnerReference {
    OwnerReference {
        api_version: "apps.example.com/v1alpha1".into(),
        kind: "ManagedApplication".into(),
        name: name.into(),
        uid: "00000000-0000-0000-0000-000000000000".into(),
        ..OwnerReference::default()
    }
}

fn without_owner(mut object: serde_json::Value) -> serde_json::Value {
    object["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("ownerReferences");
    object
}

/// An app as the floor's Deployment, with the Service every app has unless
/// `BOSUN_BENCH_SERVICES=off` (the floor has none: this shows what the Services cost).
fn managed_app(name: &str, version: &str) -> ManagedApplication {
    let mut spec =
        json!({"version": version, "replicas": 1, "upgradeStrategy": {"type": "Rolling"}});
    if std::env::var("BOSUN_BENCH_SERVICES").as_deref() == Ok("off") {
        spec["service"] = json!({"enabled": false});
    }
    serde_json::from_value(json!({
        "apiVersion": "apps.example.com/v1alpha1",
        "kind": "ManagedApplication",
        "metadata": {"name": name},
        "spec": spec,
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

async fn for_all<Fut: std::future::Future<Output = ()>>(
    range: Range<usize>,
    each: impl FnMut(usize) -> Fut,
) {
    stream::iter(range)
        .for_each_concurrent(IN_FLIGHT, each)
        .await;
}

fn name(i: usize) -> String {
    format!("app-{i:05}")
}

async fn create_deployments(api: Api<Deployment>, n: usize) {
    for_all(0..n, |i| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &plain_deployment(&name(i), "v1"))
                .await
                .expect("creating a Deployment");
        }
    })
    .await;
}

/// Each Deployment with the Service Bosun gives it, both at once (as `kubectl apply` of the two).
async fn create_deployments_and_services(
    deployments: Api<Deployment>,
    services: Api<Service>,
    n: usize,
) {
    for_all(0..n, |i| {
        let (deployments, services) = (deployments.clone(), services.clone());
        async move {
            let pp = PostParams::default();
            let (d, s) = (
                plain_deployment(&name(i), "v1"),
                plain_service(&name(i), "v1"),
            );
            let (d, s) = futures::join!(deployments.create(&pp, &d), services.create(&pp, &s));
            d.expect("creating a Deployment");
            s.expect("creating a Service");
        }
    })
    .await;
}

async fn bump_deployments(api: Api<Deployment>, n: usize) {
    for_all(0..n, |i| {
        let api = api.clone();
        async move {
            let image = plain_deployment(&name(i), "v2");
            let template = &image.spec.expect("a spec").template;
            let patch = json!({"spec": {"template": template}});
            api.patch(&name(i), &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("changing a Deployment's image");
        }
    })
    .await;
}

async fn create_apps(api: Api<ManagedApplication>, range: Range<usize>) {
    create_apps_in(|_| api.clone(), range).await;
}

/// Creates the apps of `range`, each with the API `api_of` gives it (its namespace's).
async fn create_apps_in(api_of: impl Fn(usize) -> Api<ManagedApplication>, range: Range<usize>) {
    for_all(range, |i| {
        let api = api_of(i);
        async move {
            api.create(&PostParams::default(), &managed_app(&name(i), "v1"))
                .await
                .expect("creating an app");
        }
    })
    .await;
}

/// A merge patch of every app in `range`.
async fn patch_apps(api: Api<ManagedApplication>, range: Range<usize>, patch: serde_json::Value) {
    patch_apps_in(|_| api.clone(), range, patch).await;
}

/// [`patch_apps`], each app with the API `api_of` gives it.
async fn patch_apps_in(
    api_of: impl Fn(usize) -> Api<ManagedApplication>,
    range: Range<usize>,
    patch: serde_json::Value,
) {
    for_all(range, |i| {
        let (api, patch) = (api_of(i), patch.clone());
        async move {
            api.patch(&name(i), &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("patching an app");
        }
    })
    .await;
}

/// The floor of Bosun's writes: for each app, the bench itself makes the writes Bosun's upgrade makes,
/// with the engine's own write functions, and no engine deciding them. At the start: the app
/// created (`create`) or its version patched (the user's write), then at once its status
/// (Deploying), its revision, an Event, the Deployment applied and, at a create, the Service. When
/// the Deployment is rolled out at `version` (a watch, as Bosun's): the status (Healthy) and an
/// Event. Done when every app is Healthy at `version`, as Bosun's phases are.
async fn with_bosuns_writes(
    client: Client,
    ns: String,
    n: usize,
    version: &'static str,
    create: bool,
) {
    let apps: Api<ManagedApplication> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), &ns);
    let apply = PatchParams::apply("bosun-bench").force();
    let status = |phase: Phase, message: &str| ManagedApplicationStatus {
        phase: Some(phase),
        target_version: Some(version.into()),
        current_version: (phase == Phase::Healthy).then(|| version.into()),
        message: Some(message.into()),
        history: vec![HistoryEntry {
            phase,
            time: Time(k8s_openapi::jiff::Timestamp::now()),
            step: None,
            weight: None,
            message: message.into(),
        }],
        ..ManagedApplicationStatus::default()
    };
    let transition = |to: Phase, message: &str| Transition {
        from: None,
        to,
        reason: to.to_string(),
        message: message.into(),
    };
    // Each app's Deploying entry, kept in the history its Healthy status writes, as Bosun's does.
    let started = std::sync::Mutex::new(std::collections::HashMap::new());
    let started = &started;
    let start = for_all(0..n, |i| {
        let (client, apps, deployments, services, revisions, apply) = (
            client.clone(),
            apps.clone(),
            deployments.clone(),
            services.clone(),
            revisions.clone(),
            apply.clone(),
        );
        async move {
            let name = name(i);
            let app = if create {
                apps.create(&PostParams::default(), &managed_app(&name, version))
                    .await
            } else {
                let patch = json!({"spec": {"version": version}});
                apps.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
            }
            .expect("writing an app");
            let message = format!("deploying {version}");
            let revision = Revision::of(&app.spec);
            let number = if create { 1 } else { 2 };
            let cr = controller_revision(&app, &revision, number, &no_owner(&name));
            let cr: ControllerRevision =
                serde_json::from_value(without_owner(cr)).expect("a ControllerRevision");
            let service = async {
                if create {
                    let svc = plain_service(&name, version);
                    services.patch(&name, &apply, &Patch::Apply(&svc)).await?;
                }
                Ok::<_, kube::Error>(())
            };
            let (new, pp) = (status(Phase::Deploying, &message), PostParams::default());
            started
                .lock()
                .expect("not poisoned")
                .insert(name.clone(), new.history.clone());
            let (t, d) = (
                transition(Phase::Deploying, &message),
                Patch::Apply(plain_deployment(&name, version)),
            );
            let (s, r, e, d, svc) = futures::join!(
                write_status(&apps, &app, None, &new),
                revisions.create(&pp, &cr),
                publish_event(&client, &app, &t),
                deployments.patch(&name, &apply, &d),
                service,
            );
            s.expect("writing a status");
            r.expect("creating a ControllerRevision");
            e.expect("creating an Event");
            d.expect("applying a Deployment");
            svc.expect("applying a Service");
        }
    });
    let finish = async {
        let mut seen = std::collections::HashSet::new();
        watcher(deployments.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects()
            .filter_map(|d| {
                let fresh =
                    matches!(&d, Ok(d) if rolled_out(d, version) && seen.insert(d.name_any()));
                futures::future::ready(fresh.then(|| d.expect("an object").name_any()))
            })
            .take(n)
            .for_each_concurrent(IN_FLIGHT, |name| {
                let (client, apps, ns) = (client.clone(), apps.clone(), ns.clone());
                async move {
                    let mut app = managed_app(&name, version);
                    app.metadata.namespace = Some(ns.clone());
                    let message = format!("{version} is healthy");
                    let mut new = status(Phase::Healthy, &message);
                    let before = started.lock().expect("not poisoned").remove(&name);
                    new.history.splice(0..0, before.unwrap_or_default());
                    let t = transition(Phase::Healthy, &message);
                    let (s, e) = futures::join!(
                        write_status(&apps, &app, None, &new),
                        publish_event(&client, &app, &t),
                    );
                    s.expect("writing a status");
                    e.expect("creating an Event");
                }
            })
            .await;
    };
    futures::join!(start, finish);
}

/// What the steady phase measured.
struct Steady {
    /// How long Bosun took to become quiet before the touch.
    settled: f64,
    /// From the first patch until N more reconciles were counted.
    secs: f64,
    ok: u64,
    errors: u64,
    /// Bosun's own count, by "verb resource", watches left out.
    requests: BTreeMap<String, u64>,
    /// Watches Bosun started meanwhile.
    watches: u64,
    /// kube-apiserver's count, the bench's patches taken off.
    writes: BTreeMap<String, u64>,
}

impl Steady {
    fn per_reconcile(&self) -> f64 {
        self.requests.values().sum::<u64>() as f64 / self.ok.max(1) as f64
    }
}

/// Touches every app, counts the reconciles and requests that follow (see the module doc).
async fn steady(
    client: &Client,
    bosun: &Bosun,
    apps: &Api<ManagedApplication>,
    n: usize,
) -> Steady {
    let settled = bosun.settle(QUIET, SETTLE_LIMIT).await.as_secs_f64();
    let (ok0, errors0) = bosun.reconciles();
    let requests0 = bosun.kube_requests();
    let writes0 = writes(client).await;
    let t0 = Instant::now();
    let touch = json!({"metadata": {"annotations": {TOUCH: "1"}}});
    patch_apps(apps.clone(), 0..n, touch).await;
    while bosun.reconciles().0 < ok0 + n as u64 && t0.elapsed() < timeout() {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let secs = t0.elapsed().as_secs_f64();
    // Reconciles the first ones caused (a status write, say) count too.
    bosun.settle(QUIET, SETTLE_LIMIT).await;
    let (ok, errors) = bosun.reconciles();
    let (requests, watches) = split_watches(&diff(&bosun.kube_requests(), &requests0));
    let mut writes = diff(&writes(client).await, &writes0);
    if let Some(patches) = writes.get_mut("PATCH managedapplications") {
        *patches = patches.saturating_sub(n as u64);
    }
    writes.retain(|_, v| *v > 0);
    Steady {
        settled,
        secs,
        ok: ok - ok0,
        errors: errors - errors0,
        requests,
        watches,
        writes,
    }
}

/// One run of the comparison.
struct Run {
    phases: Vec<Measured>,
    peak_rss: f64,
    steady: Steady,
}

impl Run {
    fn time(&self, name: &str) -> f64 {
        self.phases
            .iter()
            .find(|m| m.name == name)
            .map_or(f64::NAN, |m| m.secs)
    }

    /// Bosun's create, bump and canary bump against the floor's create and bump; its create against
    /// the floor's create of the same Deployments with their Services; its create and bump against
    /// the floor of its writes.
    fn ratios(&self) -> [f64; 6] {
        [
            self.time("bosun: create") / self.time("floor: create"),
            self.time("bosun: bump") / self.time("floor: bump"),
            self.time("bosun: canary bump") / self.time("floor: bump"),
            self.time("bosun: create") / self.time("floor: create + Services"),
            self.time("bosun: create") / self.time(FLOOR_WRITES_CREATE),
            self.time("bosun: bump") / self.time(FLOOR_WRITES_BUMP),
        ]
    }
}

/// The floor, then Bosun, in two fresh namespaces: deleted (in the background) when it returns their
/// names.
async fn one_run(n: usize) -> (Run, [String; 4]) {
    let mut procs = Processes::of_cluster();
    let mut phases = Vec::new();

    // 1. The floor.
    let floor_ns = TestNamespace::new("bench-floor").await;
    let client = floor_ns.client.clone();
    let deployments: Api<Deployment> = floor_ns.api();
    let create = create_deployments(deployments.clone(), n);
    let m = floor_phase(
        "floor: create",
        &client,
        &procs,
        &deployments,
        n,
        create,
        "v1",
    );
    phases.push(m.await);
    let bump = bump_deployments(deployments.clone(), n);
    let m = floor_phase("floor: bump", &client, &procs, &deployments, n, bump, "v2");
    phases.push(m.await);

    // 1b. The floor of what Bosun creates: each Deployment with its Service.
    let services_ns = TestNamespace::new("bench-floor-services").await;
    let with_services: Api<Deployment> = services_ns.api();
    let create = create_deployments_and_services(with_services.clone(), services_ns.api(), n);
    let m = floor_phase(
        "floor: create + Services",
        &client,
        &procs,
        &with_services,
        n,
        create,
        "v1",
    );
    phases.push(m.await);

    // 1c. The floor of Bosun's writes: what Bosun writes for each app, written by the bench.
    install_crds(&client).await;
    let writes_ns = TestNamespace::new("bench-floor-writes").await;
    let written: Api<ManagedApplication> = writes_ns.api();
    for (name, version, create) in [
        (FLOOR_WRITES_CREATE, "v1", true),
        (FLOOR_WRITES_BUMP, "v2", false),
    ] {
        let act = with_bosuns_writes(client.clone(), writes_ns.name.clone(), n, version, create);
        let mut m = phase(name, &client, &procs, &written, n, act, |a| {
            healthy_at(a, version)
        })
        .await;
        app_timeline(&written, &mut m).await;
        phases.push(m);
    }

    // 2. Bosun, in a namespace of its own.
    let ns = TestNamespace::new("bench-bosun").await;
    let bosun = Bosun::start(&ns.name).await;
    procs.bosun = Some(bosun.pid());
    let apps: Api<ManagedApplication> = ns.api();
    let create = create_apps(apps.clone(), 0..n);
    let m = phase("bosun: create", &client, &procs, &apps, n, create, |a| {
        healthy_at(a, "v1")
    });
    phases.push(bosun_phase(m, &bosun, &apps).await);
    let bump = patch_apps(apps.clone(), 0..n, json!({"spec": {"version": "v2"}}));
    let m = phase("bosun: bump", &client, &procs, &apps, n, bump, |a| {
        healthy_at(a, "v2")
    });
    phases.push(bosun_phase(m, &bosun, &apps).await);
    let steady = steady(&client, &bosun, &apps, n).await;
    let canary = json!({"spec": {"version": "v3", "upgradeStrategy": {"type": "Canary", "canary": {"steps": [
        {"weight": 33}, {"weight": 66}, {"weight": 100}
    ]}}}});
    let canary = patch_apps(apps.clone(), 0..n, canary);
    let m = phase(
        "bosun: canary bump",
        &client,
        &procs,
        &apps,
        n,
        canary,
        |a| healthy_at(a, "v3"),
    );
    phases.push(bosun_phase(m, &bosun, &apps).await);
    for m in phases.iter().filter(|m| m.name.starts_with("bosun")) {
        explain_short(m, n, &bosun);
    }
    let peak_rss = status_mib(bosun.pid(), "VmHWM:");
    drop(bosun);
    let run = Run {
        phases,
        peak_rss,
        steady,
    };
    (
        run,
        [
            floor_ns.name.clone(),
            services_ns.name.clone(),
            writes_ns.name.clone(),
            ns.name.clone(),
        ],
    )
}

/// Waits until the namespaces `names` are gone (404), at most [`timeout`].
async fn wait_gone(client: &Client, names: &[String]) {
    let namespaces = Api::<Namespace>::all(client.clone());
    let t0 = Instant::now();
    wait_up_to(
        timeout(),
        "the previous run's namespaces to be deleted",
        || {
            let namespaces = namespaces.clone();
            async move {
                for name in names {
                    if namespaces.get_opt(name).await.ok()?.is_some() {
                        return None;
                    }
                }
                Some(())
            }
        },
    )
    .await;
    println!(
        "(the previous run's namespaces were gone after {:.0} s)",
        t0.elapsed().as_secs_f64()
    );
}

const TABLE_HEAD: &str = "| phase                    | time (s) | done        | CPU s: Bosun | apiserver | controller-manager | Bosun / control plane |
|--------------------------|----------|-------------|--------------|-----------|--------------------|-----------------------|";

fn print_run(run: &Run, n: usize) {
    println!("{TABLE_HEAD}");
    for m in &run.phases {
        println!(
            "| {:<24} | {:>8.1} | {:>5}/{:<5} | {:>12.1} | {:>9.1} | {:>18.1} | {:>19.1} % |",
            m.name,
            m.secs,
            m.done,
            n,
            m.cpu[0],
            m.cpu[1],
            m.cpu[2],
            m.share()
        );
    }
    let [
        create,
        bump,
        canary,
        create_services,
        create_writes,
        bump_writes,
    ] = run.ratios();
    println!(
        "ratios (target ≤ 1.15): create {create:.2} × the floor ({create_services:.2} × the floor with Services), bump {bump:.2} ×, \
         canary bump {canary:.2} × the floor's bump; against the floor of Bosun's writes: create {create_writes:.2} ×, \
         bump {bump_writes:.2} ×; Bosun's peak RSS (VmHWM) {:.1} MiB (target < 100 MiB at 1,000 apps)",
        run.peak_rss
    );
    let s = &run.steady;
    println!(
        "steady reconcile (every app touched, after {:.1} s of settling): {} reconciles ok, {} failed, \
         in {:.1} s; Bosun's API requests: {} ({:.2} per reconcile, target 0), watches started: {}; \
         writes kube-apiserver counted (the bench's patches off): {}",
        s.settled,
        s.ok,
        s.errors,
        s.secs,
        show(&s.requests),
        s.per_reconcile(),
        s.watches,
        show(&s.writes)
    );
    println!("where the time went:");
    for m in &run.phases {
        if let Some(t) = &m.timeline {
            println!("  {}: {t}", m.name);
        }
    }
    println!(
        "writes per app, as kube-apiserver counted them (the floor's: the bench's and the controllers'):"
    );
    for m in &run.phases {
        let per_app: Vec<String> = m
            .writes
            .iter()
            .map(|(k, v)| format!("{k} {:.2}", *v as f64 / n as f64))
            .collect();
        println!("  {}: {}", m.name, per_app.join(", "));
    }
    println!("refused with 409 Conflict (a write made against an older object), in all:");
    for m in &run.phases {
        println!("  {}: {}", m.name, show(&m.refused));
    }
}

fn print_medians(runs: &[Run]) {
    println!("medians of {} runs:", runs.len());
    println!(
        "| phase                    | time (s) | CPU s: Bosun | apiserver | controller-manager | Bosun / control plane |"
    );
    println!(
        "|--------------------------|----------|--------------|-----------|--------------------|-----------------------|"
    );
    let of = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    for (i, m) in runs[0].phases.iter().enumerate() {
        let cpu = |p: usize| of(&|r| r.phases[i].cpu[p]);
        println!(
            "| {:<24} | {:>8.1} | {:>12.1} | {:>9.1} | {:>18.1} | {:>19.1} % |",
            m.name,
            of(&|r| r.phases[i].secs),
            cpu(0),
            cpu(1),
            cpu(2),
            of(&|r| r.phases[i].share())
        );
    }
    let ratio = |i: usize| of(&|r| r.ratios()[i]);
    println!(
        "median ratios (target ≤ 1.15): create {:.2} × the floor ({:.2} × the floor with Services), bump {:.2} ×, \
         canary bump {:.2} × the floor's bump; against the floor of Bosun's writes: create {:.2} ×, bump {:.2} ×",
        ratio(0),
        ratio(3),
        ratio(1),
        ratio(2),
        ratio(4),
        ratio(5)
    );
    println!(
        "median peak RSS (VmHWM): {:.1} MiB; median API requests per steady reconcile: {:.2}",
        of(&|r| r.peak_rss),
        of(&|r| r.steady.per_reconcile())
    );
}

async fn comparison(n: usize, runs: usize) {
    let client = support::admin_client().await;
    let mut done: Vec<Run> = Vec::new();
    let mut previous: Option<[String; 4]> = None;
    for i in 1..=runs {
        if let Some(names) = previous.take() {
            wait_gone(&client, &names).await;
        }
        let (run, names) = one_run(n).await;
        println!(
            "floor, run {i} of {runs}: {n} apps (Rolling, 1 replica, no migration, no health check) on one test cluster"
        );
        print_run(&run, n);
        done.push(run);
        previous = Some(names);
    }
    if runs > 1 {
        print_medians(&done);
    }
}

/// The least-squares line through `points`: (slope, R²).
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let k = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / k,
        points.iter().map(|p| p.1).sum::<f64>() / k,
    );
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let syy: f64 = points.iter().map(|p| (p.1 - my).powi(2)).sum();
    (sxy / sxx, sxy * sxy / (sxx * syy))
}

/// The 10,000-app part (see the module doc).
async fn at_scale(total: usize, wave: usize) {
    let idle = Duration::from_secs(env_num("BOSUN_BENCH_IDLE_SECS", 120));
    let per_ns = (env_num("BOSUN_BENCH_SCALE_PER_NAMESPACE", 100) as usize).max(1);
    let ns = TestNamespace::new("bench-scale").await;
    install_crds(&ns.client).await;
    let client = ns.client.clone();
    // The apps spread over namespaces of `per_ns`, as teams' apps are: the Deployment and ReplicaSet
    // controllers look through a namespace's ReplicaSets and pods at each sync, and 10,000 rollouts
    // in one namespace took the cluster's own controller-manager hours (1,195 Deployments synced in
    // the first 11 minutes of a bump), whoever asked for them.
    let spaces: Vec<String> = (0..total.div_ceil(per_ns))
        .map(|k| format!("{}-{k:03}", ns.name))
        .collect();
    let namespaces = Api::<Namespace>::all(client.clone());
    for space in &spaces {
        let body: Namespace =
            serde_json::from_value(json!({"metadata": {"name": space}})).expect("a namespace");
        namespaces
            .create(&PostParams::default(), &body)
            .await
            .expect("creating a namespace of the apps");
    }
    let api_of = |i: usize| -> Api<ManagedApplication> {
        Api::namespaced(client.clone(), &spaces[i / per_ns])
    };
    // One engine for every namespace, as `deploy/` runs it.
    let bosun = Bosun::start_with_engine_in(&ns.name, None).await;
    let pid = bosun.pid();
    let procs = Processes {
        bosun: Some(pid),
        ..Processes::of_cluster()
    };
    let apps: Api<ManagedApplication> = Api::all(client.clone());
    let rss_start = rss_mib(pid, QUIET).await;
    println!(
        "floor at scale: {total} apps (Rolling, 1 replica) in {} namespaces of {per_ns}, in waves of {wave}, one bosun run (RSS at start {rss_start:.1} MiB)",
        spaces.len()
    );
    println!(
        "| wave | apps Healthy | Healthy in (s) | CPU s: Bosun | apiserver | controller-manager | steady RSS (MiB) |"
    );
    println!(
        "|------|--------------|----------------|--------------|-----------|--------------------|------------------|"
    );
    let mut points = Vec::new();
    let mut create_secs = 0.0;
    for (w, start) in (0..total).step_by(wave).enumerate() {
        let end = (start + wave).min(total);
        let create = create_apps_in(api_of, start..end);
        let m = phase("scale: wave", &client, &procs, &apps, end, create, |a| {
            healthy_at(a, "v1")
        })
        .await;
        let rss = rss_mib(pid, QUIET).await;
        println!(
            "| {:>4} | {:>12} | {:>14.1} | {:>12.1} | {:>9.1} | {:>18.1} | {:>16.1} |",
            w + 1,
            format!("{}/{end}", m.done),
            m.secs,
            m.cpu[0],
            m.cpu[1],
            m.cpu[2],
            rss
        );
        explain_short(&m, end, &bosun);
        points.push((end as f64 / 1000.0, rss));
        create_secs += m.secs;
    }
    let (slope, r2) = fit(&points);
    println!(
        "created in {create_secs:.1} s in all; memory slope {slope:.2} MiB per 1,000 apps (least squares over {} waves, R² {r2:.3})",
        points.len()
    );

    let bump = patch_apps_in(api_of, 0..total, json!({"spec": {"version": "v2"}}));
    let m = phase("scale: bump", &client, &procs, &apps, total, bump, |a| {
        healthy_at(a, "v2")
    })
    .await;
    explain_short(&m, total, &bosun);
    println!(
        "bump of all {total} at once: {}/{total} Healthy at v2 in {:.1} s (CPU s: Bosun {:.1}, apiserver {:.1}, controller-manager {:.1}); peak RSS (VmHWM) {:.1} MiB; the engine's Events since it started: {}",
        m.done,
        m.secs,
        m.cpu[0],
        m.cpu[1],
        m.cpu[2],
        status_mib(pid, "VmHWM:"),
        bosun.events()
    );

    let settled = bosun.settle(QUIET, SETTLE_LIMIT).await.as_secs_f64();
    let requests0 = bosun.kube_requests();
    let ticks0 = cpu_ticks(pid);
    let writes0 = bosun_writes(&client).await;
    let t0 = Instant::now();
    tokio::time::sleep(idle).await;
    let window = t0.elapsed().as_secs_f64();
    let ticks = cpu_ticks(pid).saturating_sub(ticks0);
    let writes = diff(&bosun_writes(&client).await, &writes0);
    let (requests, watches) = split_watches(&diff(&bosun.kube_requests(), &requests0));
    let cpu = ticks as f64 / clock_ticks_per_second() / window * 100.0;
    println!(
        "idle for {window:.0} s (after {settled:.1} s of settling): Bosun's writes as kube-apiserver counted them: {} \
         ({} in all, target 0); its CPU {cpu:.2} % of one core (target < 2 %); its API requests by its own count: {}, \
         watches started: {watches}; RSS {:.1} MiB",
        show(&writes),
        writes.values().sum::<u64>(),
        show(&requests),
        status_mib(pid, "VmRSS:")
    );
}

#[tokio::main]
async fn main() {
    if common::no_cluster("floor") {
        return;
    }
    match env_num("BOSUN_BENCH_SCALE_APPS", 0) as usize {
        0 => {
            let n = env_num("BOSUN_BENCH_APPS", 1000) as usize;
            let runs = env_num("BOSUN_BENCH_RUNS", 1).max(1) as usize;
            comparison(n, runs).await;
        }
        total => {
            let wave = env_num("BOSUN_BENCH_SCALE_WAVE", 1000).max(1) as usize;
            at_scale(total, wave).await;
        }
    }
}
