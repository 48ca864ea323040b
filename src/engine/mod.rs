//! The upgrade engine's executor for ManagedApplications, one reconcile per app in the order of the
//! pipeline: observe (its Deployments `<app>`, `<app>-canary`, `<app>-preview`, its migration Jobs, its
//! annotations) → probe (active HTTP health checks, when `bosun_core::engine::app::probe_target` says a
//! round is due) → measure (the queries of the metric analysis that are due, asked of Prometheus) →
//! decide (`bosun_core::engine::app::decide`, pure) → act (server-side apply with field
//! manager `bosun-engine`, skipping objects that already hold what would be applied) → report (status
//! merge-patched only when it changed, at most once per reconcile: `settle` folds the stages the same
//! observation passes into one decision; then an Event per milestone: start, end, failure, rollback).
//!
//! Every API request it makes is counted by the client's gate (`bosun_kube_requests_total{verb,
//! resource}`); a steady app costs no write (the idle benchmark counts them on the API server).

mod analysis;
pub(crate) mod depends;
mod probe;
mod routing;

use bosun_core::names::{ANNOTATION_APPLIED_HASH, LABEL_VERSION};
use bosun_core::rollout::objects;

use std::sync::Arc;
use std::time::Duration;

use bosun_core::engine::app::{self, Action, JobKind, JobObs, Observed, Role, WorkloadObs};
use bosun_core::engine::health::Thresholds;
use bosun_core::engine::revision::Revision;
use bosun_core::model::{ManagedApplication, Phase};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, Deployment};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{self, Action as Requeue, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

pub use bosun_core::engine::app::{
    ANNOTATION_ABORT, ANNOTATION_PROMOTE_NOW, ANNOTATION_PROMOTE_STEP, ANNOTATION_RETRY,
};
pub use objects::{job_name, migration_job_name};

/// The field manager of what the engine applies.
pub const FIELD_MANAGER: &str = "bosun-engine";
/// Apps reconciled at once, at most; the others wait their turn (each reconcile is a few API calls,
/// most of its time waiting for kube-apiserver's answers). An app's first reconcile waits longest, on
/// its Service (kube-apiserver allocates its IP): with 1,000 new apps, half the upgrades began 19 s
/// in. 512 at once began half within 3 s, but ended them no sooner (kube-apiserver's CPU is then
/// the limit) and took peak RSS past 100 MiB: `floor` bench, 2-core machine.
const CONCURRENT_RECONCILES: u16 = 128;
pub use bosun_core::names::ANNOTATION_REVISION;

/// What went wrong reconciling one app.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("reading the workloads of {app}: {error}")]
    Observe {
        app: String,
        #[source]
        error: kube::Error,
    },
    #[error("carrying out {action} for {app}: {error}")]
    Act {
        app: String,
        action: String,
        #[source]
        error: kube::Error,
    },
    #[error("writing the status of {app}: {error}")]
    WriteStatus {
        app: String,
        #[source]
        error: kube::Error,
    },
    #[error("routing the canary's traffic of {app}: {error}")]
    Route {
        app: String,
        #[source]
        error: routing::RouteError,
    },
}

impl EngineError {
    /// The variant's name: the metric label of the failure.
    pub fn reason(&self) -> &'static str {
        match self {
            EngineError::Observe { .. } => "Observe",
            EngineError::Act { .. } => "Act",
            EngineError::WriteStatus { .. } => "WriteStatus",
            EngineError::Route { .. } => "Route",
        }
    }

    /// Whether trying again may be enough ([`crate::backoff::kube_heals`]); a router's object that
    /// cannot carry the canary, or is missing, needs a human.
    pub fn heals(&self) -> bool {
        match self {
            EngineError::Observe { error, .. }
            | EngineError::Act { error, .. }
            | EngineError::WriteStatus { error, .. } => crate::backoff::kube_heals(error),
            EngineError::Route { error, .. } => match error {
                routing::RouteError::Api { error, .. } => crate::backoff::kube_heals(error),
                routing::RouteError::Routing(_) | routing::RouteError::Missing { .. } => false,
            },
        }
    }
}

struct Ctx {
    client: Client,
    /// The engine's Deployments and Services as the watches last saw them: a reconcile reads these
    /// instead of asking the API server (a quorum read from etcd each). They may lag behind a write by
    /// a moment; what that costs is at most one more idempotent apply or delete.
    deployments: Store<Deployment>,
    services: Store<Service>,
    /// The revisions kept for rollbacks (`<app>-<hash>`), without their data.
    revisions: Store<ControllerRevision>,
    /// The data of the kept revisions a rollback read, by `<namespace>/<name>`.
    revision_data: std::sync::Mutex<std::collections::HashMap<String, Arc<Revision>>>,
    /// The engine's migration Jobs (labelled with their version).
    jobs: Store<Job>,
    /// The Deployments and Services this engine applied lately.
    applied: Applied,
    /// The apps this engine wrote, and the `resourceVersion` each write was made against.
    written: Written,
    /// The uids of the Jobs this engine deleted, until its watch no longer holds them.
    deleted_jobs: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The pods of the engine's Deployments, as much of them as a probe needs, found by their app.
    pods: crate::cache::Pods,
    /// The ManagedApplications, as the controller's own watch last saw them: the apps a reconcile's
    /// app depends on and those that depend on it.
    apps: Store<ManagedApplication>,
    /// The apps that depend on each app with `rollbackTogether`, by the apps' watch.
    dependents: crate::cache::Index,
    /// The engine's Events on their way to kube-apiserver.
    events: Events,
    settings: Settings,
    /// The backoff of each app whose last reconcile failed.
    retries: crate::backoff::PerObject,
}

/// What the engine keeps of its Deployments: what `observe_deployment` and the applies read (the
/// metadata, the replica count, the status), not the pod template.
fn without_pods(d: &mut Deployment) {
    crate::cache::slim(d);
    if let Some(spec) = d.spec.as_mut() {
        spec.template = Default::default();
    }
}

/// What the engine keeps of its Services: their metadata (the hash of what was applied).
fn metadata_only(svc: &mut Service) {
    crate::cache::slim(svc);
    svc.spec = None;
    svc.status = None;
}

/// What the engine keeps of the revisions kept for rollbacks: their metadata and number. The data,
/// the whole template, is read when a rollback needs it ([`Ctx::kept_revision`]).
fn without_data(r: &mut ControllerRevision) {
    crate::cache::slim(r);
    r.data = None;
}

impl Ctx {
    /// The revision kept as the ControllerRevision `name`, read once from the API (a rollback to it)
    /// and then remembered: a revision never changes. `None` when it is not kept.
    async fn kept_revision(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<Option<Arc<Revision>>, kube::Error> {
        let key = format!("{ns}/{name}");
        if let Some(r) = self.revision_data.lock().expect("not poisoned").get(&key) {
            return Ok(Some(r.clone()));
        }
        if self
            .revisions
            .get(&ObjectRef::new(name).within(ns))
            .is_none()
        {
            return Ok(None);
        }
        let read = Api::<ControllerRevision>::namespaced(self.client.clone(), ns)
            .get_opt(name)
            .await?;
        let Some(revision) = read
            .and_then(|r| serde_json::from_value::<Revision>(r.data?.0).ok())
            .map(Arc::new)
        else {
            return Ok(None);
        };
        self.revision_data
            .lock()
            .expect("not poisoned")
            .insert(key, revision.clone());
        Ok(Some(revision))
    }

    /// The Job `name` as the engine's watch last saw it; one this engine deleted since reads as
    /// being deleted, however late the watch reports it (a retry's failed Job must not fail it again).
    fn job(&self, ns: &str, name: &str) -> Option<Job> {
        let mut job = (*self.jobs.get(&ObjectRef::new(name).within(ns))?).clone();
        let uid = job.metadata.uid.as_deref().unwrap_or_default();
        if job.metadata.deletion_timestamp.is_none()
            && self
                .deleted_jobs
                .lock()
                .expect("not poisoned")
                .contains(uid)
        {
            job.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        }
        Some(job)
    }

    /// Remembers that `job` is being deleted (and forgets the Jobs the watch no longer holds).
    fn deleting(&self, job: &Job) {
        let held: std::collections::HashSet<String> = self
            .jobs
            .state()
            .iter()
            .filter_map(|j| j.metadata.uid.clone())
            .collect();
        let mut deleted = self.deleted_jobs.lock().expect("not poisoned");
        deleted.retain(|uid| held.contains(uid));
        deleted.extend(job.metadata.uid.clone());
    }
}

/// What `bosun run` sets for the whole engine.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// The upgrade windows of each source (by name, as in the `bosun.dev/source` label), which
    /// combine with each of its apps' own.
    pub source_windows: SourceWindows,
    /// The Prometheus a metric of an analysis asks when it names none.
    pub prometheus_url: Option<String>,
}

/// The upgrade windows the `bosun run` config sets for whole sources, by source name.
pub type SourceWindows = std::collections::BTreeMap<String, Vec<bosun_core::model::UpgradeWindow>>;

/// The spec the planner reads: the app's own, with its source's upgrade windows added.
fn with_source_windows<'a>(
    app: &'a ManagedApplication,
    windows: &SourceWindows,
) -> std::borrow::Cow<'a, bosun_core::model::ManagedApplicationSpec> {
    let source = app.labels().get(bosun_core::names::LABEL_SOURCE);
    match source
        .and_then(|s| windows.get(s))
        .filter(|w| !w.is_empty())
    {
        Some(extra) => {
            let mut spec = app.spec.clone();
            spec.upgrade_windows.extend(extra.iter().cloned());
            std::borrow::Cow::Owned(spec)
        }
        None => std::borrow::Cow::Borrowed(&app.spec),
    }
}

/// The watches the engine shares with the dashboard and the write-back: the ManagedApplications
/// (filed also by the apps they depend on with `rollbackTogether`) and the pods of Bosun's rollouts.
/// Started once per process: on a standby they keep the dashboard's pages; on the leader the engine
/// reads the same caches.
#[derive(Clone)]
pub struct Watches {
    pub apps: crate::cache::Feed<ManagedApplication>,
    /// The apps that depend on each app with `rollbackTogether`.
    pub dependents: crate::cache::Index,
    pub pods: crate::cache::Pods,
}

impl Watches {
    /// Starts the watches, of every namespace or of `namespace`.
    pub fn start(client: &Client, namespace: Option<&str>) -> Watches {
        use crate::cluster::api_in as api;
        let (dependents, indexer) = crate::cache::index(depends::together_with);
        Watches {
            apps: crate::cache::Feed::start(
                api::<ManagedApplication>(client, namespace),
                watcher::Config::default(),
                crate::cache::slim,
                Some(indexer),
            ),
            dependents,
            pods: crate::cache::Pods::reflect(
                api::<Pod>(client, namespace),
                watcher::Config::default().labels(objects::LABEL_ROLE),
            ),
        }
    }
}

/// One Event per transition, each its own object. (kube's `Recorder` folds Events of one reason into
/// a series that keeps the first note: the second "Deploying" would read like the first.)
///
/// # Errors
/// When kube-apiserver refuses the Event.
pub async fn publish_event(
    client: &Client,
    app: &ManagedApplication,
    t: &app::Transition,
) -> Result<(), kube::Error> {
    create_event(client, event_of(app, t)).await
}

async fn create_event(client: &Client, event: Event) -> Result<(), kube::Error> {
    let ns = event.metadata.namespace.clone().unwrap_or_default();
    Api::<Event>::namespaced(client.clone(), &ns)
        .create(&kube::api::PostParams::default(), &event)
        .await
        .map(|_| ())
}

/// How many Events the engine publishes at once; the others wait in [`Events`].
const EVENTS_AT_ONCE: usize = 16;

/// How many Events may wait in [`Events`]: one transition of 10,000 apps at once. Beyond, an Event is
/// dropped (as client-go's recorder drops past 1,000): it is a report, and the transition it tells
/// of is in the app's status history already.
const EVENTS_QUEUED: usize = 10_000;

/// The engine's Events on their way to kube-apiserver. A reconcile does not wait for its Events (they
/// are reports), and what waits is the Event alone (a few hundred bytes), not the reconcile's app:
/// when 10,000 apps move at once, the Events queue here instead of 10,000 requests at once. Counted
/// in `bosun_events_total{result}`.
struct Events {
    queue: tokio::sync::mpsc::Sender<Event>,
    /// Whether the last Event was dropped: one warning for a run of drops, not one for each.
    dropping: std::sync::atomic::AtomicBool,
}

impl Events {
    fn start(client: Client) -> Events {
        Events::start_with(move |event| {
            let client = client.clone();
            async move { create_event(&client, event).await }
        })
    }

    /// Events published by `publish`.
    fn start_with<F, P>(publish: P) -> Events
    where
        P: Fn(Event) -> F + Send + 'static,
        F: std::future::Future<Output = Result<(), kube::Error>> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::mpsc::channel::<Event>(EVENTS_QUEUED);
        let queued =
            futures::stream::unfold(rx, |mut rx| async { rx.recv().await.map(|e| (e, rx)) });
        tokio::spawn(queued.for_each_concurrent(EVENTS_AT_ONCE, move |event| {
            let published = publish(event);
            async move {
                let result = match published.await {
                    Ok(()) => "published",
                    Err(e) => {
                        warn!(error = %e, "publishing an Event failed");
                        "failed"
                    }
                };
                crate::metrics::event(result);
            }
        }));
        Events {
            queue: tx,
            dropping: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn publish(&self, app: &ManagedApplication, t: &app::Transition) {
        use std::sync::atomic::Ordering::Relaxed;
        use tokio::sync::mpsc::error::TrySendError;
        match self.queue.try_send(event_of(app, t)) {
            Ok(()) => self.dropping.store(false, Relaxed),
            // Closed only when the publisher ended, with the runtime.
            Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(_)) => {
                if !self.dropping.swap(true, Relaxed) {
                    warn!(app = %retry_key(app), reason = %t.reason, queued = EVENTS_QUEUED,
                        "dropping Events: {EVENTS_QUEUED} wait to be published already (kube-apiserver is slow or down); bosun_events_total{{result=\"dropped\"}} counts them");
                }
                crate::metrics::event("dropped");
            }
        }
    }
}

/// The Event that tells of transition `t` of `app`.
fn event_of(app: &ManagedApplication, t: &app::Transition) -> Event {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
    let now = k8s_openapi::jiff::Timestamp::now();
    let ns = app.namespace().unwrap_or_else(|| "default".into());
    Event {
        action: Some("Upgrade".into()),
        reason: Some(t.reason.clone()),
        note: Some(t.message.chars().take(1024).collect()),
        event_time: Some(MicroTime(now)),
        regarding: Some(app.object_ref(&())),
        reporting_controller: Some("bosun".into()),
        reporting_instance: Some("bosun".into()),
        type_: Some(
            if t.to == Phase::Failed {
                "Warning"
            } else {
                "Normal"
            }
            .into(),
        ),
        metadata: ObjectMeta {
            name: Some(format!("{}.{:x}", app.name_any(), now.as_nanosecond())),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Runs the ManagedApplication controller until the stream ends, over every namespace or one.
pub async fn run(client: Client, namespace: Option<String>, settings: Settings) {
    let watches = Watches::start(&client, namespace.as_deref());
    run_with(client, namespace, settings, watches).await;
}

/// [`run`], reading the apps and pods from `watches` (those of the same namespace or namespaces).
pub async fn run_with(
    client: Client,
    namespace: Option<String>,
    settings: Settings,
    watches: Watches,
) {
    use crate::cache::Feed;
    let ns = namespace.as_deref();
    use crate::cluster::api_in as api;
    // Subscribed before the stores are read: no change falls between.
    let (own, dependents) = (watches.apps.changes(), watches.apps.changes());
    let deleted = watches.apps.subscribe();
    // Only what Bosun made is watched and cached: the cluster's other Deployments, Jobs and Pods
    // cost Bosun no memory, however many there are.
    let deployments = Feed::start(
        api::<Deployment>(&client, ns),
        watcher::Config::default().labels(objects::LABEL_ROLE),
        without_pods,
        None,
    );
    let deployment_changes = deployments.changes();
    let jobs = Feed::start(
        api::<Job>(&client, ns),
        watcher::Config::default().labels(LABEL_VERSION),
        crate::cache::slim,
        None,
    );
    let job_changes = jobs.changes();
    let services = Feed::start(
        api::<Service>(&client, ns),
        watcher::Config::default().labels("app"),
        metadata_only,
        None,
    );
    let revisions = Feed::start(
        api::<ControllerRevision>(&client, ns),
        watcher::Config::default().labels(objects::LABEL_APP),
        without_data,
        None,
    );
    let Watches {
        apps,
        dependents: dependents_index,
        pods,
    } = watches;
    for ready in [
        apps.wait_until_ready().await,
        deployments.wait_until_ready().await,
        jobs.wait_until_ready().await,
        services.wait_until_ready().await,
        revisions.wait_until_ready().await,
        pods.wait_until_ready().await,
    ] {
        if ready.is_err() {
            warn!("a watch of the engine ended before it was ready; the engine stops");
            return;
        }
    }
    let (apps, deployments, jobs) = (apps.store(), deployments.store(), jobs.store());
    let (services, revisions) = (services.store(), revisions.store());
    tokio::spawn(forget_deleted_apps(deleted, apps.clone()));
    // Every app is decided once at the start, then at each change of it or of what it owns.
    let every_app = futures::stream::iter(apps.state().into_iter().map(|a| Ok((*a).clone())));
    let controller = Controller::for_stream(every_app.chain(own), apps.clone())
        .with_config(controller::Config::default().concurrency(CONCURRENT_RECONCILES))
        .owns_stream(deployment_changes)
        .owns_stream(job_changes)
        // An app's change wakes the apps it depends on: a failure of its group rolls them back too.
        .watches_stream(dependents, |app| depends::wakes(&app));
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        deployments,
        services,
        revisions,
        jobs,
        deleted_jobs: Default::default(),
        applied: Default::default(),
        written: Default::default(),
        revision_data: Default::default(),
        pods,
        apps,
        dependents: dependents_index,
        events: Events::start(client.clone()),
        settings,
        retries: Default::default(),
    });
    controller
        .run(reconcile_measured, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                warn!(error = %e, "reconcile failed");
            }
        })
        .await;
}

/// Drops the metrics of deleted apps: at each delete, and after each (re)list, of every app the store
/// lacks (deleted while the watch was down).
async fn forget_deleted_apps(
    mut changes: futures::channel::mpsc::Receiver<crate::cache::Change<ManagedApplication>>,
    apps: Store<ManagedApplication>,
) {
    use crate::cache::Change;
    while let Some(change) = changes.next().await {
        match change {
            Change::Deleted(app) => {
                let gone = (app.namespace().unwrap_or_default(), app.name_any());
                crate::metrics::forget_apps(|ns, a| (ns, a) != (gone.0.as_str(), gone.1.as_str()));
            }
            Change::Listed => crate::metrics::forget_apps(|ns, a| {
                apps.get(&ObjectRef::new(a).within(ns)).is_some()
            }),
            Change::Applied(_) => {}
        }
    }
}

/// A span naming the app, its namespace, the version asked for and the commit that asked: every log
/// line of a reconcile carries them (and JSON logs carry them as fields).
pub(crate) fn app_span(what: &'static str, app: &ManagedApplication) -> tracing::Span {
    tracing::info_span!(
        "app",
        op = what,
        app = %app.name_any(),
        namespace = %app.namespace().unwrap_or_default(),
        version = %bosun_core::shown::Cut(&app.spec.version),
        revision = %app
            .annotations()
            .get(ANNOTATION_REVISION)
            .map_or("-", String::as_str),
    )
}

/// [`reconcile`], counted and timed for `/metrics`.
async fn reconcile_measured(
    app: Arc<ManagedApplication>,
    ctx: Arc<Ctx>,
) -> Result<Requeue, EngineError> {
    use tracing::Instrument;
    let started = std::time::Instant::now();
    let span = app_span("reconcile", &app);
    let key = retry_key(&app);
    let result = reconcile(app, ctx.clone()).instrument(span).await;
    if result.is_ok() {
        ctx.retries.succeeded(&key);
    }
    let m = crate::metrics::global();
    let controller = ("controller", "managedapplication");
    m.reconcile_duration
        .get_or_create(&crate::metrics::labels(&[controller]))
        .observe(started.elapsed().as_secs_f64());
    let outcome = if result.is_ok() { "ok" } else { "error" };
    m.reconciles
        .get_or_create(&crate::metrics::labels(&[controller, ("result", outcome)]))
        .inc();
    if let Err(e) = &result {
        m.reconcile_errors
            .get_or_create(&crate::metrics::labels(&[
                controller,
                ("reason", e.reason()),
            ]))
            .inc();
    }
    result
}

/// Counts upgrades started, succeeded and rolled back, from one transition.
fn count_upgrade(t: &app::Transition) {
    let result = match (t.from, t.to) {
        (
            None | Some(Phase::Healthy | Phase::Failed | Phase::Pending),
            Phase::Migrating | Phase::Deploying,
        ) => "started",
        (Some(from), Phase::Healthy) if from != Phase::Healthy => "succeeded",
        (Some(from), Phase::Failed) if from != Phase::Failed => "rolled_back",
        _ => return,
    };
    crate::metrics::global()
        .upgrades
        .get_or_create(&crate::metrics::labels(&[("result", result)]))
        .inc();
}

/// Each app backs off on its own, slowly when the error needs a human ([`EngineError::heals`]).
fn error_policy(app: Arc<ManagedApplication>, error: &EngineError, ctx: Arc<Ctx>) -> Requeue {
    let _in = app_span("reconcile", &app).entered();
    let heals = error.heals();
    let retry_in = ctx.retries.failed(&retry_key(&app), heals);
    warn!(%error, heals, ?retry_in, "will retry");
    Requeue::requeue(retry_in)
}

fn retry_key(app: &ManagedApplication) -> String {
    format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any())
}

fn observe_deployment(d: &Deployment) -> WorkloadObs {
    let spec_replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let status = d.status.clone().unwrap_or_default();
    let current = status.observed_generation == d.metadata.generation;
    // Ready pods of the current template only: while old pods remain (total > updated), a ready count
    // may be theirs, as `kubectl rollout status` also reasons.
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = if current && status.replicas.unwrap_or(0) == updated {
        status.ready_replicas.unwrap_or(0).min(updated)
    } else {
        0
    };
    let conditions = status.conditions.unwrap_or_default();
    let progressing = conditions.iter().find(|c| c.type_ == "Progressing");
    let stalled = progressing.is_some_and(|c| {
        c.status == "False" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    let progressed_at = progressing
        .filter(|c| c.status == "True")
        .and_then(|c| c.last_update_time.clone());
    let label = |key: &str| d.labels().get(key).cloned().unwrap_or_default();
    WorkloadObs {
        version: label(objects::LABEL_VERSION),
        hash: label(objects::LABEL_REVISION_HASH),
        replicas: spec_replicas,
        ready,
        stalled,
        progressed_at,
        pods_ready: 0,
    }
}

/// What the engine sees, at `now`, of the app's `role` Deployment `d`; with its ready pods counted
/// from the pod cache when the Deployment may have stalled (only then).
fn observe_side(
    ctx: &Ctx,
    app: &ManagedApplication,
    role: Role,
    d: &Deployment,
    now: &Time,
) -> WorkloadObs {
    let mut obs = observe_deployment(d);
    let deadline = app.spec.upgrade_strategy.progress_deadline_secs();
    if obs.may_have_stalled(deadline, now) {
        let (ns, name) = (app.namespace().unwrap_or_default(), app.name_any());
        obs.pods_ready = ready_pods(&ctx.pods.of(&ns, &name), &ns, &name, role, &obs.hash);
    }
    obs
}

/// How many of [`pods_of`] are ready and not being deleted.
fn ready_pods(pods: &[Arc<Pod>], ns: &str, name: &str, role: Role, hash: &str) -> i32 {
    let ready = pods_of(pods, ns, name, role, hash)
        .filter(|p| p.metadata.deletion_timestamp.is_none() && crate::cache::is_ready(p));
    i32::try_from(ready.count()).unwrap_or(i32::MAX)
}

/// The pods of app `name`'s `role` at revision `hash`, of `pods` (the app's pods in the pod cache).
fn pods_of<'a>(
    pods: &'a [Arc<Pod>],
    ns: &'a str,
    name: &'a str,
    role: Role,
    hash: &'a str,
) -> impl Iterator<Item = &'a Arc<Pod>> + 'a {
    pods.iter().filter(move |p| {
        let label = |key: &str| p.labels().get(key).map(String::as_str);
        p.namespace().as_deref() == Some(ns)
            && label("app") == Some(name)
            && label(objects::LABEL_ROLE) == Some(objects::role_label(role))
            && label(objects::LABEL_REVISION_HASH) == Some(hash)
    })
}

/// What a migration Job says of its outcome. `migration`: the migration it must have been made for
/// (its `bosun.dev/migration-hash` label); a Job made for another is `Foreign`. A Job without the
/// label, made by a Bosun from before the label, is taken as it is.
fn observe_job(job: Option<Job>, migration: Option<&str>) -> JobObs {
    let Some(job) = job else {
        return JobObs::Absent;
    };
    if let (Some(want), Some(made_for)) =
        (migration, job.labels().get(objects::LABEL_MIGRATION_HASH))
        && want != made_for
    {
        return JobObs::Foreign;
    }
    // A Job being deleted (a retry's cleanup) is not this cycle's outcome.
    if job.metadata.deletion_timestamp.is_some() {
        return JobObs::Running;
    }
    match job.status {
        None => JobObs::Running,
        Some(s) if s.succeeded.unwrap_or(0) > 0 => JobObs::Succeeded,
        Some(s) => match s
            .conditions
            .unwrap_or_default()
            .iter()
            .find(|c| c.type_ == "Failed" && c.status == "True")
        {
            Some(c) => JobObs::Failed {
                reason: c.reason.clone().unwrap_or_else(|| "Failed".into()),
            },
            None => JobObs::Running,
        },
    }
}

async fn reconcile(app: Arc<ManagedApplication>, ctx: Arc<Ctx>) -> Result<Requeue, EngineError> {
    let name = app.name_any();
    let ns = app.namespace().unwrap_or_else(|| "default".into());
    let client = ctx.client.clone();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    let observe_err = |error| EngineError::Observe {
        app: name.clone(),
        error,
    };
    // This engine's own last write to the app is not in the store yet: what the store holds is the
    // app before it, and a decision on it would redo the last one and be refused (409). The watch
    // brings the newer app and wakes it; the requeue is only a guard.
    if ctx
        .written
        .outdated(&ns, &name, app.metadata.resource_version.as_deref())
    {
        return Ok(Requeue::requeue(Duration::from_secs(OUTDATED_RECHECK_SECS)));
    }
    let status = app.status.clone().unwrap_or_default();
    let now = Time(k8s_openapi::jiff::Timestamp::now());

    // observe
    let mut live = std::collections::HashMap::new();
    for role in [Role::Stable, Role::Canary, Role::Preview] {
        let key = ObjectRef::new(&objects::workload_name(&name, role)).within(&ns);
        if let Some(d) = ctx.deployments.get(&key) {
            live.insert(objects::role_label(role), d);
        }
    }
    let side = |role: Role| live.get(objects::role_label(role)).map(|d| d.as_ref());
    let revision = Revision::of(&app.spec);
    let hash = revision.hash();
    // Jobs are looked at only when the decision reads them: while migrating, or when an upgrade starts
    // or is retried.
    let starting = status.target_hash.as_deref() != Some(hash.as_str())
        || app.annotations().contains_key(ANNOTATION_RETRY);
    let migrating = status.phase == Some(Phase::Migrating) || starting;
    let migration_hash = revision.migration_hash();
    let migration = if migration_hash.is_some() && migrating {
        observe_job(
            ctx.job(&ns, &job_name(&name, JobKind::Up, &app.spec.version)),
            migration_hash.as_deref(),
        )
    } else {
        JobObs::Absent
    };
    let down_migration = match &status.down_migration {
        Some(r) => observe_job(
            ctx.job(&ns, &job_name(&name, JobKind::Down, &r.version)),
            None,
        ),
        None => JobObs::Absent,
    };
    let down_migration_of = status.down_migration.as_ref().map(|r| r.version.clone());
    let annotation = |key: &str| app.annotations().get(key).cloned();
    let promoted = annotation(ANNOTATION_PROMOTE_STEP)
        .and_then(|v| v.trim().parse::<i32>().ok())
        .is_some_and(|s| Some(s) == status.step_index);

    // probe, when a round is due
    let mut probes = Vec::new();
    if let Some(role) = app::probe_target(&app.spec, &status, &now)
        && let Some(hc) = &app.spec.upgrade_strategy.health_check
    {
        let target = status.target_hash.clone().unwrap_or_default();
        let cached = ctx.pods.of(&ns, &name);
        let pods: Vec<Pod> = pods_of(&cached, &ns, &name, role, &target)
            .map(|p| (**p).clone())
            .collect();
        let targets = probe::probe_targets(&pods);
        let timeout = Duration::from_secs(Thresholds::of(hc).timeout.unsigned_abs());
        probes = probe::probe_all(&targets, &hc.http_get, timeout).await;
    }

    // measure, when the metric analysis has measurements due
    let measurements =
        analysis::measure(&app, &status, &now, ctx.settings.prometheus_url.as_deref()).await;

    let group = depends::observe(&app, &ctx.apps, &ctx.dependents, &client)
        .await
        .map_err(observe_err)?;
    let group_in_flight = group.in_flight;
    let observed = Observed {
        stable: side(Role::Stable).map(|d| observe_side(&ctx, &app, Role::Stable, d, &now)),
        canary: side(Role::Canary).map(|d| observe_side(&ctx, &app, Role::Canary, d, &now)),
        preview: side(Role::Preview).map(|d| observe_side(&ctx, &app, Role::Preview, d, &now)),
        migration,
        down_migration,
        down_migration_of,
        probes,
        promoted,
        revision: annotation(ANNOTATION_REVISION),
        abort: annotation(ANNOTATION_ABORT),
        retry: annotation(ANNOTATION_RETRY),
        promote_now: annotation(ANNOTATION_PROMOTE_NOW),
        dependencies: group.dependencies,
        cycle: group.cycle,
        group_failures: group.group_failures,
        measurements,
    };

    // decide
    let spec = with_source_windows(&app, &ctx.settings.source_windows);
    let decision = app::settle(&spec, &status, &observed, &now);

    // act
    let owner = app
        .controller_owner_ref(&())
        .expect("a ManagedApplication from the API has a uid");
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    let routed = app.spec.upgrade_strategy.traffic_routing.is_some();
    let services = Api::<Service>::namespaced(client.clone(), &ns);
    // The version of the app this decision was made from; an action that writes the app itself moves
    // it on, and the status is written only if no one else wrote the app in between.
    let mut read_at = app.metadata.resource_version.clone();
    let act = async {
        for action in &decision.actions {
            let act_err = |error| EngineError::Act {
                app: name.clone(),
                action: format!("{action:?}"),
                error,
            };
            match action {
                Action::RunMigration { version } => {
                    if let Some(job) = objects::migration_job(&app, &revision, &owner) {
                        let job_name = job_name(&name, JobKind::Up, version);
                        if ctx.job(&ns, &job_name).is_none() {
                            apply_new(&jobs, &job_name, &job, &pp)
                                .await
                                .map_err(act_err)?;
                        }
                    }
                }
                Action::RunDownMigration { record } => {
                    let job = objects::down_migration_job(&app, record, &owner);
                    let job_name = job_name(&name, JobKind::Down, &record.version);
                    if ctx.job(&ns, &job_name).is_none() {
                        apply_new(&jobs, &job_name, &job, &pp)
                            .await
                            .map_err(act_err)?;
                    }
                }
                Action::DeleteJob { kind, version } => {
                    let job_name = job_name(&name, *kind, version);
                    if let Some(job) = ctx.job(&ns, &job_name) {
                        ctx.deleting(&job);
                        delete(&jobs, &job_name, &DeleteParams::background())
                            .await
                            .map_err(act_err)?;
                    }
                }
                Action::Run {
                    role,
                    revision: wanted,
                    replicas,
                } => {
                    let kept;
                    let revision = if wanted.hash == hash {
                        &revision
                    } else {
                        match ctx
                            .kept_revision(&ns, &objects::revision_name(&name, &wanted.hash))
                            .await
                            .map_err(act_err)?
                        {
                            Some(r) => {
                                kept = r;
                                &*kept
                            }
                            None => {
                                // Not kept (a status from before revisions, or deleted by hand): the
                                // Deployment keeps the template it has; only its replica count is set.
                                warn!(revision = %wanted, role = ?role, "no ControllerRevision keeps this revision: scaling the Deployment without changing its pods");
                                if side(*role).is_some_and(|l| {
                                    l.spec.as_ref().and_then(|s| s.replicas) != Some(*replicas)
                                }) {
                                    deployments
                                        .patch(
                                            &objects::workload_name(&name, *role),
                                            &PatchParams::default(),
                                            &Patch::Merge(json!({"spec": {"replicas": replicas}})),
                                        )
                                        .await
                                        .map_err(act_err)?;
                                }
                                continue;
                            }
                        }
                    };
                    let mut d = objects::deployment(&app, *role, revision, *replicas, &owner);
                    let applied = stamp(&mut d);
                    // No write when the live object is what we last applied and still has its replica
                    // count (a hand scale is corrected): a steady app costs reads only.
                    let workload = objects::workload_name(&name, *role);
                    let live = side(*role);
                    let unchanged = live.is_some_and(|l| {
                        applied_hash(l) == Some(applied.as_str())
                            && l.spec.as_ref().and_then(|s| s.replicas) == Some(*replicas)
                    });
                    // Applied a moment ago, and the watch has not brought it yet: not again.
                    let in_flight = live.is_none_or(|l| applied_hash(l) != Some(applied.as_str()))
                        && ctx.applied.lately("Deployment", &ns, &workload, &applied);
                    if !unchanged && !in_flight {
                        deployments
                            .patch(&workload, &pp, &Patch::Apply(&d))
                            .await
                            .map_err(act_err)?;
                        ctx.applied.remember("Deployment", &ns, &workload, applied);
                    }
                    if *role == Role::Preview && objects::services_enabled(&app) {
                        let svc = objects::preview_service(&app, &wanted.hash, &owner);
                        apply_if_changed(&services, &ctx.services, &ctx.applied, &ns, svc, &pp)
                            .await
                            .map_err(act_err)?;
                    }
                    if *role == Role::Canary && routed {
                        let svc = objects::routed_service(&app, Role::Canary, &owner);
                        apply_if_changed(&services, &ctx.services, &ctx.applied, &ns, svc, &pp)
                            .await
                            .map_err(act_err)?;
                    }
                }
                Action::Remove { role } => {
                    let workload = objects::workload_name(&name, *role);
                    ctx.applied.forget(&ns, &workload);
                    delete(&deployments, &workload, &DeleteParams::background())
                        .await
                        .map_err(act_err)?;
                    if *role == Role::Preview || (*role == Role::Canary && routed) {
                        delete(&services, &workload, &DeleteParams::default())
                            .await
                            .map_err(act_err)?;
                    }
                }
                // Kept beside the others (below): nothing else here reads or writes them.
                Action::SaveRevision { .. } | Action::PruneRevisions { .. } => {}
                Action::Serve { revision: serving } => {
                    if objects::services_enabled(&app) {
                        let svc = objects::active_service(
                            &app,
                            serving.as_ref().map(|r| r.hash.as_str()),
                            &owner,
                        );
                        apply_if_changed(&services, &ctx.services, &ctx.applied, &ns, svc, &pp)
                            .await
                            .map_err(act_err)?;
                    }
                }
                Action::Route { weight } => {
                    routing::set_weight(&client, &app, *weight, &owner, FIELD_MANAGER)
                        .await
                        .map_err(|error| EngineError::Route {
                            app: name.clone(),
                            error,
                        })?;
                }
                Action::ClearAnnotation { name: key } => {
                    let apps: Api<ManagedApplication> = Api::namespaced(client.clone(), &ns);
                    let patch = json!({"metadata": {
                        "resourceVersion": read_at,
                        "annotations": {*key: null},
                    }});
                    match apps
                        .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                        .await
                    {
                        Ok(written) => {
                            read_at = written.metadata.resource_version;
                            ctx.written.remember(
                                &ns,
                                &name,
                                app.metadata.resource_version.as_deref(),
                                read_at.as_deref(),
                            );
                        }
                        // Changed since it was read: decided again from the newer object.
                        Err(kube::Error::Api(s)) if s.code == 409 => {
                            return Ok(Some(Requeue::requeue(Duration::from_secs(1))));
                        }
                        Err(error) => return Err(act_err(error)),
                    }
                }
            }
        }
        Ok(None)
    };
    // The revisions are written at once with the rest: an upgrade's start is one round trip shorter.
    let kept = keep_revisions(&ctx, &app, &decision.actions, &revision, &owner);
    let (acted, kept) = futures::join!(act, kept);
    kept?;
    if let Some(requeue) = acted? {
        return Ok(requeue);
    }

    // report: status only when it changed, an Event per transition after the write succeeded
    let mut new_status = decision.status.clone();
    new_status.observed_generation = app.metadata.generation;
    if app.status.as_ref() != Some(&new_status) {
        let apps: Api<ManagedApplication> = Api::namespaced(client.clone(), &ns);
        match write_status(&apps, &app, read_at.as_deref(), &new_status).await {
            Ok(StatusWrite::Written { resource_version }) => ctx.written.remember(
                &ns,
                &name,
                app.metadata.resource_version.as_deref(),
                resource_version.as_deref(),
            ),
            Ok(StatusWrite::Stale) => {
                debug!(app = %name, namespace = %ns, "status changed since it was read; deciding again");
                return Ok(Requeue::requeue(Duration::from_secs(1)));
            }
            Err(error) => {
                return Err(EngineError::WriteStatus {
                    app: name.clone(),
                    error,
                });
            }
        }
    }
    if let Some(phase) = new_status.phase {
        crate::metrics::set_app_phase(&ns, &name, &phase.to_string());
    }
    let moved = !decision.transitions.is_empty();
    for t in &decision.transitions {
        count_upgrade(t);
        info!(app = %name, namespace = %ns, from = ?t.from, to = %t.to, reason = %t.reason, message = %t.message, "upgrade moved");
    }
    // Events for what a person reads (the start, the end, a failure, the rollback); every stage
    // between is in the status's history. They are reports: the reconcile does not wait for them.
    for t in decision.milestones() {
        ctx.events.publish(&app, t);
    }
    // While its group is still upgrading to the same commit, an app looks again within a few
    // seconds: a failure there rolls it back too, however late its wake-up was.
    let requeue_after = match (decision.requeue_after, group_in_flight) {
        (Some(secs), true) => Some(secs.min(GROUP_RECHECK_SECS)),
        (None, true) if !moved => Some(GROUP_RECHECK_SECS),
        (r, _) => r,
    };
    Ok(match requeue_after {
        Some(secs) => Requeue::requeue(Duration::from_secs(secs.max(1))),
        // A stage that just began (HealthChecking, say) is looked at again soon, not only when the
        // watch delivers the status just written: a restarted Bosun's first write can race its
        // watch's start, and the app then sat in its new stage until the 300 s resync.
        None if moved => Requeue::requeue(Duration::from_secs(1)),
        None => Requeue::requeue(Duration::from_secs(300)),
    })
}

/// Saves the revision an upgrade starts (`SaveRevision`) and deletes those no longer kept
/// (`PruneRevisions`): ControllerRevisions, which no other action reads or writes.
async fn keep_revisions(
    ctx: &Ctx,
    app: &ManagedApplication,
    actions: &[Action],
    revision: &Revision,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Result<(), EngineError> {
    let name = app.name_any();
    let ns = app.namespace().unwrap_or_else(|| "default".into());
    let hash = revision.hash();
    let revisions: Api<ControllerRevision> = Api::namespaced(ctx.client.clone(), &ns);
    for action in actions {
        let act_err = |error| EngineError::Act {
            app: name.clone(),
            action: format!("{action:?}"),
            error,
        };
        match action {
            Action::SaveRevision { revision: wanted } => {
                let rev_name = objects::revision_name(&name, &wanted.hash);
                let key = ObjectRef::new(&rev_name).within(&ns);
                if wanted.hash == hash && ctx.revisions.get(&key).is_none() {
                    let number = ctx
                        .revisions
                        .state()
                        .iter()
                        .filter(|r| {
                            r.namespace().as_deref() == Some(ns.as_str())
                                && r.labels().get(objects::LABEL_APP) == Some(&name)
                        })
                        .map(|r| r.revision)
                        .max()
                        .unwrap_or(0)
                        + 1;
                    let cr = objects::controller_revision(app, revision, number, owner);
                    match revisions
                        .create(
                            &kube::api::PostParams::default(),
                            &serde_json::from_value(cr).expect("a ControllerRevision"),
                        )
                        .await
                    {
                        Ok(_) => {}
                        // Kept already (the watch had not seen it yet): a revision never changes.
                        Err(kube::Error::Api(s)) if s.code == 409 => {}
                        Err(e) => return Err(act_err(e)),
                    }
                }
            }
            Action::PruneRevisions { keep } => {
                for r in ctx.revisions.state() {
                    let ours = r.namespace().as_deref() == Some(ns.as_str())
                        && r.labels().get(objects::LABEL_APP) == Some(&name);
                    let r_hash = r
                        .labels()
                        .get(objects::LABEL_REVISION_HASH)
                        .cloned()
                        .unwrap_or_default();
                    if ours && !keep.contains(&r_hash) && r_hash != hash {
                        ctx.revision_data
                            .lock()
                            .expect("not poisoned")
                            .remove(&format!("{ns}/{}", r.name_any()));
                        delete(&revisions, &r.name_any(), &DeleteParams::default())
                            .await
                            .map_err(act_err)?;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// How soon an app whose group is still upgrading to its commit looks again.
const GROUP_RECHECK_SECS: u64 = 3;

/// What became of a status write.
#[derive(Debug, PartialEq, Eq)]
pub enum StatusWrite {
    /// Written; the app is now at `resource_version` (the same as before when nothing changed).
    Written { resource_version: Option<String> },
    /// The object changed since `app` was read (another writer's condition, or this engine's own
    /// last write not yet in its watch cache): nothing was written, and the app is to be decided
    /// again from the newer object, which the watch delivers.
    Stale,
}

/// Writes `new` as the status of `app`, only if the cluster still holds `app` at `read_at` (its
/// `resourceVersion` when read, or after this engine's own writes to it since).
///
/// # Errors
/// When kube-apiserver refuses the write for any reason but a newer object.
pub async fn write_status(
    apps: &Api<ManagedApplication>,
    app: &ManagedApplication,
    read_at: Option<&str>,
    new: &bosun_core::model::ManagedApplicationStatus,
) -> Result<StatusWrite, kube::Error> {
    let patch = status_patch(app.status.as_ref(), new, read_at);
    match apps
        .patch_status(
            &app.name_any(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(written) => Ok(StatusWrite::Written {
            resource_version: written.metadata.resource_version,
        }),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(StatusWrite::Stale),
        Err(error) => Err(error),
    }
}

/// A merge patch that sets `new` and removes the fields `old` had and `new` has not (a merge patch of
/// `new` alone would leave them: `pauseStartTime`, `healthCheck`, `downMigration` must go away).
///
/// A merge patch replaces `conditions` whole, so the patch carries the `resourceVersion` `old` was
/// read at: kube-apiserver refuses it (409) when anyone wrote since, and a `SourceReady` another
/// writer set in between is never overwritten by the list this decision read before it.
fn status_patch(
    old: Option<&bosun_core::model::ManagedApplicationStatus>,
    new: &bosun_core::model::ManagedApplicationStatus,
    read_at: Option<&str>,
) -> serde_json::Value {
    let mut status = serde_json::to_value(new).expect("a status serializes");
    if let (Some(old), Some(fields)) = (
        old.and_then(|o| serde_json::to_value(o).ok()),
        status.as_object_mut(),
    ) && let Some(old) = old.as_object()
    {
        for key in old.keys() {
            if !fields.contains_key(key) {
                fields.insert(key.clone(), serde_json::Value::Null);
            }
        }
    }
    match read_at {
        Some(rv) => json!({ "metadata": {"resourceVersion": rv}, "status": status }),
        None => json!({ "status": status }),
    }
}

/// Creates a Job that the engine's watch has not seen. (A Job's template cannot change: it is never
/// re-applied. One created a moment ago, not yet seen, gets the same Job applied again: no change.)
async fn apply_new(
    jobs: &Api<Job>,
    name: &str,
    job: &serde_json::Value,
    pp: &PatchParams,
) -> Result<(), kube::Error> {
    jobs.patch(name, pp, &Patch::Apply(job)).await.map(|_| ())
}

async fn apply_if_changed(
    services: &Api<Service>,
    known: &Store<Service>,
    applied: &Applied,
    ns: &str,
    mut svc: serde_json::Value,
    pp: &PatchParams,
) -> Result<(), kube::Error> {
    let hash = stamp(&mut svc);
    let name = svc["metadata"]["name"]
        .as_str()
        .expect("built with a name")
        .to_string();
    let live = known.get(&ObjectRef::new(&name).within(ns));
    if live.is_some_and(|l| applied_hash(l.as_ref()) == Some(hash.as_str()))
        || applied.lately("Service", ns, &name, &hash)
    {
        return Ok(());
    }
    services.patch(&name, pp, &Patch::Apply(&svc)).await?;
    applied.remember("Service", ns, &name, hash);
    Ok(())
}

/// What this engine applied in the last [`APPLIED_MEMORY`], by object (`<kind>/<namespace>/<name>`
/// of a Deployment or Service) and hash: a reconcile that runs before the watch delivers an object this
/// engine just applied does not apply it again. Past that time, the watch's copy decides.
#[derive(Default)]
struct Applied(std::sync::Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>);

/// The `resourceVersion` each app had when this engine last wrote it (its status, or an annotation
/// it cleared), by `<namespace>/<name>`: an app the store still holds at that version is older than
/// what this engine knows, and is not decided on until the watch brings the newer one.
/// (`resourceVersion`s are only compared for equality, as the API conventions ask.)
#[derive(Default)]
struct Written(std::sync::Mutex<std::collections::HashMap<String, String>>);

/// How soon an app the store holds from before this engine's last write looks again, should its
/// watch not wake it first (it does, as soon as it brings the write).
const OUTDATED_RECHECK_SECS: u64 = 5;

impl Written {
    /// Whether `at` is the version the last write to the app was made against. Once the store holds
    /// another, the write is forgotten.
    fn outdated(&self, ns: &str, name: &str, at: Option<&str>) -> bool {
        let mut known = self.0.lock().expect("not poisoned");
        let key = format!("{ns}/{name}");
        match (known.get(&key), at) {
            (Some(before), Some(at)) if before == at => true,
            (Some(_), _) => {
                known.remove(&key);
                false
            }
            (None, _) => false,
        }
    }

    /// Remembers that a write moved the app from version `at` to `now`. A write that changed
    /// nothing (`now` is `at`: kube-apiserver keeps the version of an object a patch leaves as it
    /// was) or whose versions are not known is not remembered: the store already holds it, or
    /// nothing tells whether it does.
    fn remember(&self, ns: &str, name: &str, at: Option<&str>, now: Option<&str>) {
        if let (Some(at), Some(now)) = (at, now)
            && at != now
        {
            let mut known = self.0.lock().expect("not poisoned");
            known.insert(format!("{ns}/{name}"), at.to_owned());
        }
    }
}

/// How long [`Applied`] trusts what it remembers over a watch that has not caught up yet.
const APPLIED_MEMORY: Duration = Duration::from_secs(15);

impl Applied {
    fn lately(&self, kind: &str, ns: &str, name: &str, hash: &str) -> bool {
        let known = self.0.lock().expect("not poisoned");
        known
            .get(&format!("{kind}/{ns}/{name}"))
            .is_some_and(|(h, at)| h == hash && at.elapsed() < APPLIED_MEMORY)
    }

    /// Forgets the Deployment `name` and the Service of the same name, which are being deleted.
    fn forget(&self, ns: &str, name: &str) {
        let mut known = self.0.lock().expect("not poisoned");
        for kind in ["Deployment", "Service"] {
            known.remove(&format!("{kind}/{ns}/{name}"));
        }
    }

    fn remember(&self, kind: &str, ns: &str, name: &str, hash: String) {
        let mut known = self.0.lock().expect("not poisoned");
        known.retain(|_, (_, at)| at.elapsed() < APPLIED_MEMORY);
        known.insert(
            format!("{kind}/{ns}/{name}"),
            (hash, std::time::Instant::now()),
        );
    }
}

/// Deletes `name`; one already gone is no error.
async fn delete<K>(api: &Api<K>, name: &str, dp: &DeleteParams) -> Result<(), kube::Error>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Puts the hash of `object` (as built, before the annotation) into its annotations and returns it.
fn stamp(object: &mut serde_json::Value) -> String {
    let hash = bosun_core::sync::hash_json(object);
    object["metadata"]["annotations"][ANNOTATION_APPLIED_HASH] = hash.clone().into();
    hash
}

fn applied_hash(object: &impl Resource) -> Option<&str> {
    object
        .meta()
        .annotations
        .as_ref()?
        .get(ANNOTATION_APPLIED_HASH)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_core::model::ManagedApplicationStatus;

    fn events_counted(result: &str) -> u64 {
        crate::metrics::global()
            .events
            .get_or_create(&crate::metrics::labels(&[("result", result)]))
            .get()
    }

    #[tokio::test]
    async fn events_past_a_full_queue_are_dropped_and_counted_and_the_queued_ones_are_published() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let (dropped, published) = (events_counted("dropped"), events_counted("published"));
        // kube-apiserver, stuck until released.
        let (release, released) = tokio::sync::watch::channel(false);
        let sent = Arc::new(AtomicUsize::new(0));
        let events = Events::start_with({
            let sent = sent.clone();
            move |_event| {
                let (mut released, sent) = (released.clone(), sent.clone());
                async move {
                    let _ = released.wait_for(|r| *r).await;
                    sent.fetch_add(1, Ordering::SeqCst);
                    Ok(())
                }
            }
        });
        let app: ManagedApplication = serde_json::from_value(json!({
            "apiVersion": "apps.example.com/v1alpha1", "kind": "ManagedApplication",
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"version": "v2", "image": "registry.example.com/web"},
        }))
        .expect("an app");
        let deploying = app::Transition {
            from: Some(Phase::Healthy),
            to: Phase::Deploying,
            reason: "Deploying".into(),
            message: "deploying v2".into(),
        };

        // This test's runtime has one thread: the publisher takes nothing from the queue until the
        // test waits, so the queue holds all it can and the 3 after are dropped at once.
        for _ in 0..EVENTS_QUEUED + 3 {
            events.publish(&app, &deploying);
        }
        assert_eq!(events_counted("dropped") - dropped, 3);

        release.send_replace(true);
        tokio::time::timeout(Duration::from_secs(60), async {
            while sent.load(Ordering::SeqCst) < EVENTS_QUEUED {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("the queued Events published once kube-apiserver answers");
        tokio::task::yield_now().await;
        assert_eq!(
            events_counted("published") - published,
            EVENTS_QUEUED as u64
        );
        assert_eq!(events_counted("dropped") - dropped, 3, "no more dropped");
    }

    #[test]
    fn only_ready_pods_of_the_app_its_role_and_revision_count_as_ready() {
        let pod = |name: &str, app: &str, role: &str, hash: &str, ready: &str, deleting: bool| {
            let mut p: Pod = serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "shop", "labels": {
                    "app": app, objects::LABEL_ROLE: role, objects::LABEL_REVISION_HASH: hash,
                }},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]},
            }))
            .expect("a pod");
            if deleting {
                p.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
            }
            Arc::new(p)
        };
        let pods = [
            pod("web-1", "web", "stable", "h2", "True", false),
            pod("web-2", "web", "stable", "h2", "True", false),
            pod("web-3", "web", "stable", "h2", "False", false),
            pod("web-4", "web", "stable", "h2", "True", true),
            pod("web-5", "web", "stable", "h1", "True", false),
            pod("web-6", "web", "canary", "h2", "True", false),
            pod("api-1", "api", "stable", "h2", "True", false),
        ];
        assert_eq!(ready_pods(&pods, "shop", "web", Role::Stable, "h2"), 2);
        assert_eq!(ready_pods(&pods, "shop", "web", Role::Canary, "h2"), 1);
        assert_eq!(ready_pods(&pods, "shop", "web", Role::Stable, "h3"), 0);
        assert_eq!(ready_pods(&pods, "other", "web", Role::Stable, "h2"), 0);
    }

    #[test]
    fn what_was_applied_lately_is_not_applied_again_until_deleted_or_changed() {
        let applied = Applied::default();
        assert!(!applied.lately("Deployment", "shop", "web", "h1"));
        applied.remember("Deployment", "shop", "web", "h1".into());
        assert!(applied.lately("Deployment", "shop", "web", "h1"));
        // Another hash, another kind, another namespace: not the same object as applied.
        assert!(!applied.lately("Deployment", "shop", "web", "h2"));
        assert!(!applied.lately("Service", "shop", "web", "h1"));
        assert!(!applied.lately("Deployment", "other", "web", "h1"));
        // Deleted: applying the same again is a new object.
        applied.forget("shop", "web");
        assert!(!applied.lately("Deployment", "shop", "web", "h1"));
    }

    #[test]
    fn an_app_held_from_before_this_engines_last_write_is_outdated_until_the_watch_brings_another()
    {
        let written = Written::default();
        assert!(
            !written.outdated("shop", "web", Some("41")),
            "never written"
        );
        written.remember("shop", "web", Some("41"), Some("42"));
        assert!(written.outdated("shop", "web", Some("41")));
        assert!(
            written.outdated("shop", "web", Some("41")),
            "until another comes"
        );
        assert!(!written.outdated("shop", "api", Some("41")), "another app");
        assert!(
            !written.outdated("shop", "web", Some("42")),
            "the write, or a later one"
        );
        assert!(
            !written.outdated("shop", "web", Some("41")),
            "forgotten once a newer one was seen"
        );
        written.remember("shop", "web", Some("41"), None);
        assert!(
            !written.outdated("shop", "web", Some("41")),
            "no version known"
        );
        written.remember("shop", "web", Some("41"), Some("41"));
        assert!(
            !written.outdated("shop", "web", Some("41")),
            "a write that changed nothing: the store holds what it left"
        );
    }

    #[test]
    fn a_status_patch_removes_fields_that_are_gone() {
        let old = ManagedApplicationStatus {
            pause_start_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
                k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
            )),
            message: Some("pausing".into()),
            ..Default::default()
        };
        let new = ManagedApplicationStatus {
            message: Some("step 2".into()),
            ..Default::default()
        };
        let patch = status_patch(Some(&old), &new, Some("41"));
        assert_eq!(
            patch,
            json!({
                "metadata": {"resourceVersion": "41"},
                "status": {"message": "step 2", "pauseStartTime": null},
            })
        );
    }
}
