//! The upgrade engine on the real test cluster, one test per scenario of issue [D]. Each test has a
//! namespace of its own and an engine of its own watching only that namespace (as
//! `bosun run --engine-namespace` does), real Deployments, ReplicaSets, Jobs and kwok pods:
//!
//! - images ending `-broken` never become ready; Job images ending `-fails` fail, `-hangs` run until
//!   their deadline, `-slow` succeed after 6 s (tests/cluster/kwok/stages.yaml);
//! - images ending `-unhealthy` become ready, but the test's health server (tests/support/health.rs)
//!   answers their HTTP health checks with 500.
//!
//! Pauses and deadlines are a few seconds so the whole file runs in a few minutes; the tests wait
//! mostly, so run them with many threads: `cargo test --test engine -- --test-threads 16`.

mod support;

use std::cell::{Cell, RefCell};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bosun::engine::{ANNOTATION_ABORT, ANNOTATION_PROMOTE_STEP, ANNOTATION_RETRY};
use bosun_core::model::{ManagedApplication, ManagedApplicationStatus, Phase};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::health::HealthServer;
use support::{TestNamespace, holds_for, install_crds, wait_until};

/// The app every scenario upgrades.
const APP: &str = "shop";
/// How long a scenario waits for the app's status to reach a state (more than support's WAIT: these
/// tests share two cores with the cluster and each other).
const STATUS_WAIT: Duration = Duration::from_secs(90);
/// How long a failed upgrade is watched for a retry loop.
const NO_LOOP: Duration = Duration::from_secs(4);

/// One scenario's namespace, engine and health server.
struct Scenario {
    ns: TestNamespace,
    engine: Option<tokio::task::JoinHandle<()>>,
    health: HealthServer,
}

impl Drop for Scenario {
    fn drop(&mut self) {
        if let Some(e) = self.engine.take() {
            e.abort();
        }
    }
}

impl Scenario {
    async fn new(prefix: &str) -> Scenario {
        // The engine's logs go to the test's output (shown when it fails); RUST_LOG filters them.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "bosun=info".into()),
            )
            .with_test_writer()
            .try_init();
        let ns = TestNamespace::new(prefix).await;
        install_crds(&ns.client).await;
        let health = HealthServer::start(&ns).await;
        let mut s = Scenario {
            ns,
            engine: None,
            health,
        };
        s.start_engine();
        s
    }

    /// Starts an engine for this namespace (as a restarted Bosun would).
    fn start_engine(&mut self) {
        self.start_engine_with(Default::default());
    }

    /// Starts an engine with the settings of `bosun run` (the upgrade windows of whole sources, the
    /// default Prometheus).
    fn start_engine_with(&mut self, settings: bosun::engine::Settings) {
        assert!(self.engine.is_none(), "an engine already runs");
        self.engine = Some(tokio::spawn(bosun::engine::run(
            self.ns.client.clone(),
            Some(self.ns.name.clone()),
            settings,
        )));
    }

    /// Stops the engine at whatever it is doing, as a killed Bosun would.
    async fn kill_engine(&mut self) {
        let e = self.engine.take().expect("an engine runs");
        e.abort();
        let _ = e.await;
    }

    /// The health check every scenario's app gets: the test's health server answers it.
    fn health_check(&self) -> Value {
        json!({
            "httpGet": {"path": "/healthz", "port": self.health.port},
            // The first check waits a second after a pod is ready: the test's health server begins to
            // listen on a pod's address when its watch sees the address.
            "initialDelaySeconds": 1,
            "periodSeconds": 1,
            "failureThreshold": 2,
        })
    }

    async fn create(&self, spec: Value) {
        let app: ManagedApplication = serde_json::from_value(json!({
            "apiVersion": "apps.example.com/v1alpha1",
            "kind": "ManagedApplication",
            "metadata": {"name": APP},
            "spec": spec,
        }))
        .expect("a valid ManagedApplication");
        self.ns
            .api::<ManagedApplication>()
            .create(&PostParams::default(), &app)
            .await
            .expect("create app");
    }

    /// Merges `spec` into the app's spec (as a commit changing those fields would).
    async fn set_spec(&self, spec: Value) {
        self.ns
            .api::<ManagedApplication>()
            .patch(
                APP,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .expect("patch app spec");
    }

    async fn annotate(&self, key: &str, value: &str) {
        self.ns
            .api::<ManagedApplication>()
            .patch(
                APP,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
            )
            .await
            .expect("annotate app");
    }

    async fn status(&self) -> ManagedApplicationStatus {
        self.ns
            .api::<ManagedApplication>()
            .get(APP)
            .await
            .expect("get app")
            .status
            .unwrap_or_default()
    }

    /// Waits until the app is in `phase` with `version` as its target.
    async fn phase_is(&self, phase: Phase, version: &str) -> ManagedApplicationStatus {
        self.wait_status(&format!("phase {phase} at {version}"), |s| {
            s.phase == Some(phase) && s.target_version.as_deref() == Some(version)
        })
        .await
    }

    /// Polls `probe` until it returns `Some`, for up to [`STATUS_WAIT`]; on timeout, fails with the
    /// app's status and Deployments.
    async fn wait_for<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + STATUS_WAIT;
        loop {
            if let Some(v) = probe().await {
                return v;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {STATUS_WAIT:?} waiting for {what}; the status is {:#?}\n\
                     Deployments: {:#?}",
                    self.status().await,
                    self.deployment_summaries().await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the app's status satisfies `ok`; on timeout, fails with the last status seen.
    async fn wait_status(
        &self,
        what: &str,
        ok: impl Fn(&ManagedApplicationStatus) -> bool,
    ) -> ManagedApplicationStatus {
        let deadline = Instant::now() + STATUS_WAIT;
        loop {
            let s = self.status().await;
            if ok(&s) {
                return s;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {STATUS_WAIT:?} waiting for {what}; the status is {s:#?}\n\
                     Deployments: {:#?}",
                    self.deployment_summaries().await
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn deployment(&self, name: &str) -> Option<Deployment> {
        self.ns
            .api::<Deployment>()
            .get_opt(name)
            .await
            .expect("get Deployment")
    }

    async fn image(&self, deployment: &str) -> Option<String> {
        let d = self.deployment(deployment).await?;
        d.spec?.template.spec?.containers.first()?.image.clone()
    }

    /// The names of the app's Deployments.
    async fn deployments(&self) -> BTreeSet<String> {
        self.ns
            .api::<Deployment>()
            .list(&ListParams::default().labels(&format!("app={APP}")))
            .await
            .expect("list Deployments")
            .items
            .into_iter()
            .filter_map(|d| d.metadata.name)
            .collect()
    }

    async fn jobs(&self) -> Vec<Job> {
        self.ns
            .api::<Job>()
            .list(&ListParams::default())
            .await
            .expect("list Jobs")
            .items
    }

    /// The images of the namespace's pods, terminating ones included.
    async fn pod_images(&self) -> BTreeSet<String> {
        self.ns
            .api::<Pod>()
            .list(&ListParams::default().labels(&format!("app={APP}")))
            .await
            .expect("list pods")
            .items
            .into_iter()
            .filter_map(|p| p.spec?.containers.first()?.image.clone())
            .collect()
    }

    /// The names of the running, ready pods with `image`.
    async fn ready_pods_with_image(&self, image: &str) -> BTreeSet<String> {
        self.ns
            .api::<Pod>()
            .list(&ListParams::default())
            .await
            .expect("list pods")
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.containers.first()?.image.as_deref())
                    == Some(image)
            })
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|p| p.metadata.name)
            .collect()
    }

    /// The Events about the app, oldest first: (type, reason, note).
    async fn events(&self) -> Vec<(String, String, String)> {
        let mut events: Vec<Event> = self
            .ns
            .api::<Event>()
            .list(&ListParams::default())
            .await
            .expect("list Events")
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ManagedApplication")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(APP)
            })
            .collect();
        events.sort_by_key(|e| {
            e.event_time.as_ref().map(|t| t.0).or(e
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0))
        });
        events
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits until the stable Deployment runs `replicas` ready pods of `version` and nothing else, and
    /// the app has no other Deployment (the canary or green side is gone).
    async fn stable_serves(&self, version: &str, replicas: i32) {
        let image = format!("{APP}:{version}");
        self.wait_for(
            &format!("the stable Deployment alone, with {replicas} ready pods of {image}"),
            || async {
                let d = self.deployment(APP).await?;
                let spec = d.spec.as_ref()?;
                let st = d.status.as_ref()?;
                let ok = spec
                    .template
                    .spec
                    .as_ref()?
                    .containers
                    .first()?
                    .image
                    .as_deref()
                    == Some(image.as_str())
                    && spec.replicas == Some(replicas)
                    && st.observed_generation == d.metadata.generation
                    && st.updated_replicas == Some(replicas)
                    && st.ready_replicas.unwrap_or(0) == replicas
                    && st.replicas == Some(replicas)
                    && self.deployments().await == BTreeSet::from([APP.to_string()]);
                ok.then_some(())
            },
        )
        .await;
    }

    /// Asserts the upgrade to `failed` ended as a rollback: phase Failed, `failed` recorded, the message
    /// saying `why`, the stable side back on `stable` with every replica, no canary or green side; and
    /// that it stays so (no retry loop: no new Job, no new Deployment, no other phase). A Job may go:
    /// the up-migration of a version whose down-migration ran is deleted.
    async fn assert_rolled_back(&self, failed: &str, stable: &str, replicas: i32, why: &str) {
        let status = self.phase_is(Phase::Failed, failed).await;
        assert_eq!(status.failed_version.as_deref(), Some(failed), "{status:?}");
        let message = status.message.clone().unwrap_or_default();
        assert!(
            message.to_lowercase().contains(&why.to_lowercase()),
            "the message should say why ({why:?}): {message:?}"
        );
        self.stable_serves(stable, replicas).await;
        let jobs = self.job_names().await;
        let generation = self
            .deployment(APP)
            .await
            .and_then(|d| d.metadata.generation);
        let until = Instant::now() + NO_LOOP;
        while Instant::now() < until {
            let s = self.status().await;
            let now_jobs = self.job_names().await;
            let deployments = self.deployments().await;
            let now_generation = self
                .deployment(APP)
                .await
                .and_then(|d| d.metadata.generation);
            assert!(
                s.phase == Some(Phase::Failed)
                    && s.failed_version.as_deref() == Some(failed)
                    && now_jobs.is_subset(&jobs)
                    && deployments == BTreeSet::from([APP.to_string()])
                    && now_generation == generation,
                "a rolled-back upgrade should stay rolled back (no retry loop), but: phase {:?}, \
                 failedVersion {:?}, message {:?}, Jobs {now_jobs:?} (were {jobs:?}), Deployments \
                 {deployments:?}, stable generation {now_generation:?} (was {generation:?})",
                s.phase,
                s.failed_version,
                s.message,
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Name, image, replicas, status and conditions of each Deployment: what a failure message shows.
    async fn deployment_summaries(&self) -> Vec<String> {
        let list = self
            .ns
            .api::<Deployment>()
            .list(&ListParams::default())
            .await;
        list.map(|l| l.items)
            .unwrap_or_default()
            .into_iter()
            .map(|d| {
                let image = d
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.spec.as_ref()?.containers.first()?.image.clone());
                format!(
                    "{:?} created {:?} image {image:?} replicas {:?} generation {:?} status {:?}",
                    d.metadata.name,
                    d.metadata.creation_timestamp,
                    d.spec.as_ref().and_then(|s| s.replicas),
                    d.metadata.generation,
                    d.status
                )
            })
            .collect()
    }

    async fn job_names(&self) -> BTreeSet<String> {
        self.jobs()
            .await
            .into_iter()
            .filter_map(|j| j.metadata.name)
            .collect()
    }
}

/// An upgrade to `v2-broken` (pods that never become ready) with a short progress deadline. Only the
/// upgrade has it: on a busy machine, the first install may take longer than a few seconds.
fn broken_upgrade() -> Value {
    json!({"version": "v2-broken", "upgradeStrategy": {"progressDeadlineSeconds": 6}})
}

fn canary(steps: Value) -> Value {
    json!({"type": "Canary", "canary": {"steps": steps}})
}

/// When the upgrade moved on to its second canary step, from `status.history` (the step may pass too
/// fast to be caught live).
fn second_step(
    st: &ManagedApplicationStatus,
) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    st.history
        .iter()
        .find(|h| h.phase == Phase::Deploying && h.step == Some(1))
        .map(|h| h.time.clone())
}

fn seconds_since(t: &k8s_openapi::jiff::Timestamp) -> f64 {
    let now = k8s_openapi::jiff::Timestamp::now();
    (now.as_millisecond() - t.as_millisecond()) as f64 / 1000.0
}

// --- the test harness itself ---------------------------------------------------------------------

#[tokio::test]
async fn the_health_server_answers_from_the_pod_that_has_the_address_now() {
    let ns = TestNamespace::new("engine-harness").await;
    let health = HealthServer::start(&ns).await;
    let port = health.port;
    let pods = ns.api::<Pod>();
    for (name, image) in [("good", "x:v1"), ("bad", "x:v1-unhealthy")] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": image}]},
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create pod");
    }
    let ip_of = |name: &'static str| {
        let pods = pods.clone();
        async move {
            wait_until(&format!("pod {name} has an address"), || async {
                pods.get(name).await.ok()?.status?.pod_ip
            })
            .await
        }
    };
    let good = ip_of("good").await;
    let bad = ip_of("bad").await;
    assert!(good.starts_with("127."), "pod IPs are loopback: {good}");
    let get = |ip: String| async move {
        wait_until(&format!("an answer from {ip}"), || async {
            http_status(&format!("{ip}:{port}"), "/healthz").await
        })
        .await
    };
    assert_eq!(get(good.clone()).await, 200);
    assert_eq!(get(bad.clone()).await, 500);
    let seen = health.requests();
    assert!(
        seen.iter()
            .any(|r| r.pod.as_deref() == Some("bad") && r.status == 500 && r.path == "/healthz"),
        "{seen:?}"
    );
    health.force(Some(503));
    assert_eq!(get(good.clone()).await, 503);
    health.force(None);

    // The answer follows the pod, not the address: once `good` is gone, its address answers 503.
    pods.delete("good", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete pod");
    wait_until("the deleted pod's address answers 503", || async {
        (http_status(&format!("{good}:{port}"), "/healthz").await == Some(503)).then_some(())
    })
    .await;
}

/// GET `path` from `addr`; None when nothing listens (yet).
async fn http_status(addr: &str, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await.ok()?;
    out.split(' ').nth(1)?.parse().ok()
}

// --- migrations ----------------------------------------------------------------------------------

fn with_migration(image: &str) -> Value {
    json!({"type": "RollingWithMigration", "migrationJob": {"image": image}})
}

#[tokio::test]
async fn a_successful_migration_runs_to_completion_before_the_rollout() {
    let s = Scenario::new("engine-mig-ok").await;
    s.create(json!({"version": "v1", "upgradeStrategy": with_migration("migrate:v1")}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2", "upgradeStrategy": with_migration("migrate:v2")}))
        .await;
    let status = s.phase_is(Phase::Healthy, "v2").await;
    assert_eq!(status.current_version.as_deref(), Some("v2"));
    s.stable_serves("v2", 1).await;

    let job =
        s.ns.api::<Job>()
            .get("shop-migration-v2")
            .await
            .expect("the migration Job, named <app>-migration-<version>");
    let labels = job.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("app").map(String::as_str), Some(APP));
    assert_eq!(labels.get("type").map(String::as_str), Some("migration"));
    let spec = job.spec.clone().expect("job spec");
    assert!(
        spec.active_deadline_seconds.is_some(),
        "a migration has a deadline"
    );
    assert_eq!(
        spec.template
            .spec
            .as_ref()
            .and_then(|p| p.restart_policy.as_deref()),
        Some("Never")
    );
    let finished = job
        .status
        .and_then(|st| st.completion_time)
        .expect("the migration completed");
    // The rollout began after the migration ended: the ReplicaSet of v2 is younger than the Job's end.
    let v2_created =
        s.ns.api::<ReplicaSet>()
            .list(&ListParams::default().labels(&format!("app={APP}")))
            .await
            .expect("list ReplicaSets")
            .items
            .into_iter()
            .filter(|rs| {
                rs.spec
                    .as_ref()
                    .and_then(|s| {
                        s.template
                            .as_ref()?
                            .spec
                            .as_ref()?
                            .containers
                            .first()?
                            .image
                            .clone()
                    })
                    .as_deref()
                    == Some("shop:v2")
            })
            .filter_map(|rs| rs.metadata.creation_timestamp)
            .min()
            .expect("a ReplicaSet of v2");
    assert!(
        v2_created.0 >= finished.0,
        "v2 pods were created at {v2_created:?}, before the migration ended at {finished:?}"
    );
    assert_eq!(
        s.jobs().await.len(),
        2,
        "one Job per version, each run once"
    );
}

#[tokio::test]
async fn a_failed_migration_fails_the_upgrade_and_changes_no_workload() {
    let s = Scenario::new("engine-mig-fail").await;
    s.create(
        json!({"version": "v1", "replicas": 2, "upgradeStrategy": with_migration("migrate:v1")}),
    )
    .await;
    s.phase_is(Phase::Healthy, "v1").await;
    let generation = s.deployment(APP).await.and_then(|d| d.metadata.generation);

    s.set_spec(json!({"version": "v2", "upgradeStrategy": with_migration("migrate:v2-fails")}))
        .await;
    s.assert_rolled_back("v2", "v1", 2, "migration").await;
    assert_eq!(
        s.deployment(APP).await.and_then(|d| d.metadata.generation),
        generation,
        "no workload changed"
    );
    let job =
        s.ns.api::<Job>()
            .get("shop-migration-v2")
            .await
            .expect("the Job");
    let labels = job.metadata.labels.expect("labels");
    assert_eq!(labels.get("type").map(String::as_str), Some("migration"));
    assert_eq!(labels.get("app").map(String::as_str), Some(APP));
}

#[tokio::test]
async fn a_migration_past_its_deadline_fails_the_upgrade() {
    let s = Scenario::new("engine-mig-hang").await;
    s.create(json!({"version": "v1", "upgradeStrategy": with_migration("migrate:v1")}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2", "upgradeStrategy": {
        "type": "RollingWithMigration",
        "migrationJob": {"image": "migrate:v2-hangs", "activeDeadlineSeconds": 3},
    }}))
    .await;
    let status = s.phase_is(Phase::Migrating, "v2").await;
    assert_eq!(status.current_version.as_deref(), Some("v1"));
    s.assert_rolled_back("v2", "v1", 1, "DeadlineExceeded")
        .await;
}

// --- each strategy succeeding --------------------------------------------------------------------

#[tokio::test]
async fn a_rolling_upgrade_reaches_healthy_and_records_the_versions() {
    let s = Scenario::new("engine-rolling").await;
    s.create(json!({"version": "v1", "replicas": 2})).await;
    let status = s.phase_is(Phase::Healthy, "v1").await;
    assert_eq!(status.current_version.as_deref(), Some("v1"));
    s.stable_serves("v1", 2).await;

    s.set_spec(json!({"version": "v2"})).await;
    let status = s.phase_is(Phase::Healthy, "v2").await;
    assert_eq!(status.current_version.as_deref(), Some("v2"));
    assert_eq!(status.last_healthy_version.as_deref(), Some("v2"));
    assert_eq!(status.failed_version, None);
    s.stable_serves("v2", 2).await;
    let svc =
        s.ns.api::<Service>()
            .get(APP)
            .await
            .expect("the app's Service");
    let selector = svc.spec.and_then(|s| s.selector).unwrap_or_default();
    assert_eq!(selector.get("app").map(String::as_str), Some(APP));
}

/// The source sets `SourceReady` in the status the engine also writes. An engine status decided from
/// a copy read before that condition was set must not write its older list of conditions over it.
#[tokio::test]
async fn a_status_decided_before_source_ready_was_set_does_not_erase_it() {
    let mut s = Scenario::new("engine-conditions").await;
    s.create(json!({"version": "v1", "replicas": 1})).await;
    s.phase_is(Phase::Healthy, "v1").await;
    s.kill_engine().await;
    let apps = s.ns.api::<ManagedApplication>();
    let read_before = apps.get(APP).await.expect("get app");

    let key = bosun_core::sync::ObjectKey {
        kind: bosun_core::model::Kind::ManagedApplication,
        namespace: s.ns.name.clone(),
        name: APP.into(),
    };
    let now =
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    bosun::cluster::Cluster::from_client(s.ns.client.clone())
        .set_condition(
            std::slice::from_ref(&key),
            bosun_core::sync::SOURCE_FIELD_MANAGER,
            &bosun_core::sync::source_ready_condition(
                false,
                "Unreachable",
                "the git server is down",
                now,
            ),
        )
        .await
        .expect("set SourceReady");

    let mut decided = read_before.status.clone().unwrap_or_default();
    decided.message = Some("decided from the older copy".into());
    let written = bosun::engine::write_status(
        &apps,
        &read_before,
        read_before.metadata.resource_version.as_deref(),
        &decided,
    )
    .await
    .expect("write status");
    assert_eq!(written, bosun::engine::StatusWrite::Stale);
    let source_ready = |status: &ManagedApplicationStatus| {
        status
            .conditions
            .iter()
            .find(|c| c.type_ == bosun_core::sync::CONDITION_SOURCE_READY)
            .map(|c| c.status.clone())
    };
    let status = s.status().await;
    assert_eq!(
        source_ready(&status).as_deref(),
        Some("False"),
        "{status:#?}"
    );
    assert_ne!(
        status.message, decided.message,
        "the stale status was written"
    );

    // The engine, deciding from the newer copy, goes on and keeps the source's condition.
    s.start_engine();
    s.set_spec(json!({"version": "v2"})).await;
    let status = s.phase_is(Phase::Healthy, "v2").await;
    assert_eq!(
        source_ready(&status).as_deref(),
        Some("False"),
        "{status:#?}"
    );
}

#[tokio::test]
async fn a_rolling_upgrade_checks_the_health_of_every_new_pod_before_healthy() {
    let s = Scenario::new("engine-rolling-hc").await;
    let strategy = json!({"type": "Rolling", "healthCheck": s.health_check()});
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": strategy}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2"})).await;
    s.phase_is(Phase::Healthy, "v2").await;
    let new_pods = s.ready_pods_with_image("shop:v2").await;
    assert_eq!(new_pods.len(), 2);
    let checked = s.health.pods_checked_with_image("shop:v2");
    assert!(
        new_pods.iter().all(|p| checked.contains(p)),
        "every new pod is checked before the upgrade is Healthy: pods {new_pods:?}, checked {checked:?}"
    );
}

#[tokio::test]
async fn a_recreate_upgrade_stops_every_old_pod_before_starting_new_ones() {
    let s = Scenario::new("engine-recreate").await;
    s.create(json!({"version": "v1", "replicas": 3, "upgradeStrategy": {"type": "Recreate"}}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;
    let strategy = s
        .deployment(APP)
        .await
        .and_then(|d| d.spec?.strategy?.type_);
    assert_eq!(strategy.as_deref(), Some("Recreate"));

    s.set_spec(json!({"version": "v2"})).await;
    let mixed = RefCell::new(None);
    s.wait_for("Healthy at v2, watching the pods", || async {
        let images = s.pod_images().await;
        if images.len() > 1 {
            *mixed.borrow_mut() = Some(images);
        }
        let st = s.status().await;
        (st.phase == Some(Phase::Healthy) && st.target_version.as_deref() == Some("v2"))
            .then_some(())
    })
    .await;
    assert_eq!(
        mixed.into_inner(),
        None,
        "old and new pods ran at the same time"
    );
    s.stable_serves("v2", 3).await;
}

/// The environment of a Deployment's app container, as (name, value) pairs.
async fn env_of(s: &Scenario, deployment: &str) -> Option<Vec<(String, String)>> {
    let d = s.deployment(deployment).await?;
    let c = d.spec?.template.spec?.containers.into_iter().next()?;
    Some(
        c.env
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name, e.value.unwrap_or_default()))
            .collect(),
    )
}

fn env(pairs: &[(&str, &str)]) -> Value {
    Value::Array(
        pairs
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v}))
            .collect(),
    )
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn env_only_version_and_env_and_failing_version_and_env_changes_each_roll_out_as_revisions() {
    let s = Scenario::new("engine-revision").await;
    let steps = json!([{"weight": 50, "pause": 2}, {"weight": 100}]);
    let old = [("MODE", "old")];
    s.create(json!({"version": "v1", "replicas": 2, "env": env(&old),
        "upgradeStrategy": {"type": "Canary", "canary": {"steps": steps},
                            "healthCheck": s.health_check()}}))
        .await;
    let first = s.phase_is(Phase::Healthy, "v1").await;

    // The same version with another environment: a new revision, through the canary step.
    let new = [("MODE", "new")];
    s.set_spec(json!({"env": env(&new)})).await;
    s.wait_for(
        "the canary with the new environment beside a stable side that kept the old one",
        || async {
            let (stable, canary) = (env_of(&s, APP).await?, env_of(&s, "shop-canary").await?);
            (stable == pairs(&old) && canary == pairs(&new)).then_some(())
        },
    )
    .await;
    let st = s
        .wait_status("Healthy on the new revision", |st| {
            st.phase == Some(Phase::Healthy) && st.current_hash != first.current_hash
        })
        .await;
    assert_eq!(env_of(&s, APP).await, Some(pairs(&new)));
    assert!(
        st.history
            .iter()
            .any(|h| h.phase == Phase::HealthChecking && h.step == Some(0)),
        "the canary step was health-checked: {:#?}",
        st.history
    );
    assert!(
        s.health.requests().iter().any(|r| r
            .pod
            .as_deref()
            .is_some_and(|p| p.starts_with("shop-canary"))),
        "the canary pods were probed"
    );

    // A new version whose environment breaks the app: the whole last healthy revision comes back.
    let broken = [("MODE", "new"), ("BOSUN_TEST_HEALTH", "500")];
    s.set_spec(json!({"version": "v2", "env": env(&broken)}))
        .await;
    s.wait_status("Failed at v2", |st| {
        st.phase == Some(Phase::Failed) && st.failed_version.as_deref() == Some("v2")
    })
    .await;
    s.stable_serves("v1", 2).await;
    assert_eq!(
        env_of(&s, APP).await,
        Some(pairs(&new)),
        "the stable side runs the last healthy environment, not the broken one"
    );

    // Git catches up (what Bosun's rollback commit writes): Healthy at once, the failure still told.
    s.set_spec(json!({"version": "v1", "env": env(&new)})).await;
    let st = s
        .wait_status("Healthy on the last healthy revision", |st| {
            st.phase == Some(Phase::Healthy) && st.target_version.as_deref() == Some("v1")
        })
        .await;
    let rolled_back = st
        .conditions
        .iter()
        .find(|c| c.type_ == "RolledBack")
        .expect("the RolledBack condition stays until the next upgrade");
    assert_eq!(rolled_back.status, "True");
    assert!(
        rolled_back
            .message
            .starts_with("v2 failed and was rolled back to v1"),
        "{}",
        rolled_back.message
    );
    let ready = st
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(ready.status, "True");

    // A new version with a new environment that works: the stable side keeps the old environment at
    // the canary step, and both come out together; the rollback's story ends with this upgrade.
    let next = [("MODE", "next")];
    s.set_spec(json!({"version": "v3", "env": env(&next)}))
        .await;
    s.wait_for(
        "the v3 canary with the new environment beside v1 with the old one",
        || async {
            let (stable, canary) = (env_of(&s, APP).await?, env_of(&s, "shop-canary").await?);
            let canary_image = s.image("shop-canary").await?;
            (stable == pairs(&new) && canary == pairs(&next) && canary_image == "shop:v3")
                .then_some(())
        },
    )
    .await;
    let st = s.phase_is(Phase::Healthy, "v3").await;
    s.stable_serves("v3", 2).await;
    assert_eq!(env_of(&s, APP).await, Some(pairs(&next)));
    assert!(
        !st.conditions.iter().any(|c| c.type_ == "RolledBack"),
        "the next upgrade ends the story: {:#?}",
        st.conditions
    );
}

#[tokio::test]
async fn canary_steps_shift_pods_step_by_step_and_end_with_the_new_version_stable() {
    let s = Scenario::new("engine-canary").await;
    let steps = json!([{"weight": 25, "pause": 2}, {"weight": 50, "pause": 2}, {"weight": 100}]);
    s.create(json!({"version": "v1", "replicas": 4, "upgradeStrategy": canary(steps)}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2"})).await;
    let seen = RefCell::new(BTreeSet::new());
    let weights = RefCell::new(BTreeSet::new());
    let deadline = Instant::now() + STATUS_WAIT;
    loop {
        let (stable, canary) = (s.deployment(APP).await, s.deployment("shop-canary").await);
        let replicas = |d: &Option<Deployment>| d.as_ref().and_then(|d| d.spec.as_ref()?.replicas);
        if canary.is_some() {
            seen.borrow_mut()
                .insert((replicas(&stable), replicas(&canary)));
        }
        let st = s.status().await;
        if let Some(w) = st.canary_weight {
            weights.borrow_mut().insert(w);
        }
        if st.phase == Some(Phase::Healthy) && st.target_version.as_deref() == Some("v2") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for Healthy at v2; replicas seen {seen:?}, status {st:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let seen = seen.into_inner();
    assert!(
        seen.contains(&(Some(3), Some(1))) && seen.contains(&(Some(2), Some(2))),
        "stable+canary replicas seen: {seen:?}"
    );
    let weights = weights.into_inner();
    assert!(
        weights.contains(&25) && weights.contains(&50),
        "status.canaryWeight (kubectl's Weight column) moved through the steps: {weights:?}"
    );
    s.stable_serves("v2", 4).await;
    let st = s.status().await;
    assert_eq!(st.canary_weight, None);
    assert_eq!(st.step_index, None);
}

#[tokio::test]
async fn a_canary_step_without_a_pause_duration_waits_until_promoted() {
    let s = Scenario::new("engine-promote").await;
    let steps = json!([{"weight": 50, "pause": "untilPromoted"}, {"weight": 100}]);
    let strategy =
        json!({"type": "Canary", "healthCheck": s.health_check(), "canary": {"steps": steps}});
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": strategy}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2"})).await;
    s.wait_for("the canary at step 0, healthy, waiting", || async {
        let st = s.status().await;
        (st.step_index == Some(0)
            && st.phase == Some(Phase::HealthChecking)
            && !s.health.pods_checked_with_image("shop:v2").is_empty())
        .then_some(())
    })
    .await;
    holds_for(
        "the step waits for a promotion",
        Duration::from_secs(4),
        || async {
            let st = s.status().await;
            st.step_index == Some(0) && st.phase != Some(Phase::Healthy)
        },
    )
    .await;
    assert_eq!(s.image(APP).await.as_deref(), Some("shop:v1"));
    assert_eq!(s.image("shop-canary").await.as_deref(), Some("shop:v2"));

    s.annotate(ANNOTATION_PROMOTE_STEP, "0").await;
    s.phase_is(Phase::Healthy, "v2").await;
    s.stable_serves("v2", 2).await;
}

// --- BlueGreen -----------------------------------------------------------------------------------

const PREVIEW: &str = "shop-preview";

fn blue_green(extra: Value) -> Value {
    let mut s = json!({"type": "BlueGreen", "blueGreen": {"scaleDownDelaySeconds": 2}});
    json_patch::merge(&mut s, &extra);
    s
}

/// The version label of the pods the Service `name` selects.
/// The version of the revision a Service selects (by its `bosun.dev/revision-hash`), read from the
/// ControllerRevision that keeps that revision.
async fn service_version(s: &Scenario, name: &str) -> Option<String> {
    let svc = s.ns.api::<Service>().get_opt(name).await.ok()??;
    let hash = svc
        .spec?
        .selector?
        .get("bosun.dev/revision-hash")
        .cloned()?;
    let revisions = s
        .ns
        .api::<k8s_openapi::api::apps::v1::ControllerRevision>()
        .list(&kube::api::ListParams::default().labels(&format!("bosun.dev/revision-hash={hash}")))
        .await
        .ok()?;
    let kept = revisions.items.into_iter().next()?;
    let revision: bosun_core::engine::revision::Revision =
        serde_json::from_value(kept.data?.0).ok()?;
    Some(revision.version)
}

#[tokio::test]
async fn blue_green_switches_the_service_at_once_after_the_preview_is_healthy() {
    let s = Scenario::new("engine-bg").await;
    s.create(json!({"version": "v1", "replicas": 2,
        "upgradeStrategy": blue_green(json!({"healthCheck": s.health_check()}))}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2"})).await;
    // While the green side is checked, the active Service still selects v1 and the preview v2.
    let switched_before_checked = Cell::new(false);
    let saw_preview = Cell::new(false);
    s.wait_for("Healthy at v2", || async {
        let active = service_version(&s, APP).await;
        let preview_svc = s.ns.api::<Service>().get_opt(PREVIEW).await.ok().flatten();
        if preview_svc.is_some() && s.image(PREVIEW).await.as_deref() == Some("shop:v2") {
            saw_preview.set(true);
        }
        if active.as_deref() == Some("v2") && s.health.pods_checked_with_image("shop:v2").is_empty()
        {
            switched_before_checked.set(true);
        }
        let st = s.status().await;
        (st.phase == Some(Phase::Healthy) && st.target_version.as_deref() == Some("v2"))
            .then_some(())
    })
    .await;
    assert!(
        saw_preview.get(),
        "the preview Service selected the new version"
    );
    assert!(
        !switched_before_checked.get(),
        "the switch came before any health check"
    );
    assert_eq!(service_version(&s, APP).await.as_deref(), Some("v2"));
    // After the scale-down delay, only v2 pods run.
    s.wait_for("only v2 pods left", || async {
        (s.pod_images().await == BTreeSet::from(["shop:v2".to_string()])).then_some(())
    })
    .await;
}

#[tokio::test]
async fn blue_green_without_auto_promote_switches_only_when_promoted() {
    let s = Scenario::new("engine-bg-manual").await;
    s.create(
        json!({"version": "v1", "replicas": 2, "upgradeStrategy": blue_green(json!({
        "healthCheck": s.health_check(), "blueGreen": {"autoPromote": false}}))}),
    )
    .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2"})).await;
    s.wait_for("the preview checked", || async {
        (!s.health.pods_checked_with_image("shop:v2").is_empty()).then_some(())
    })
    .await;
    holds_for(
        "the active Service stays on v1 until promoted",
        Duration::from_secs(4),
        || async { service_version(&s, APP).await.as_deref() == Some("v1") },
    )
    .await;
    assert_eq!(s.image(PREVIEW).await.as_deref(), Some("shop:v2"));

    s.annotate(ANNOTATION_PROMOTE_STEP, "0").await;
    s.phase_is(Phase::Healthy, "v2").await;
    assert_eq!(service_version(&s, APP).await.as_deref(), Some("v2"));
    s.stable_serves("v2", 2).await;
}

#[tokio::test]
async fn blue_green_with_pods_never_ready_rolls_back_to_blue() {
    let s = Scenario::new("engine-bg-broken").await;
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": blue_green(json!({}))}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(broken_upgrade()).await;
    s.assert_rolled_back("v2-broken", "v1", 2, "ready").await;
    assert_eq!(service_version(&s, APP).await.as_deref(), Some("v1"));
}

#[tokio::test]
async fn blue_green_failing_after_the_switch_switches_back_to_blue_at_once() {
    let s = Scenario::new("engine-bg-after-switch").await;
    let strategy =
        json!({"healthCheck": s.health_check(), "blueGreen": {"scaleDownDelaySeconds": 60}});
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": blue_green(strategy)}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2"})).await;
    s.wait_for("the active Service on v2", || async {
        (service_version(&s, APP).await.as_deref() == Some("v2")).then_some(())
    })
    .await;
    // Green serves everything now; blue is kept for 60 s. Green starts failing its checks.
    s.health.force(Some(500));
    s.assert_rolled_back("v2", "v1", 2, "after the switch")
        .await;
    s.health.force(None);
    assert_eq!(service_version(&s, APP).await.as_deref(), Some("v1"));
    assert_eq!(
        s.image(APP).await.as_deref(),
        Some("shop:v1"),
        "blue was never replaced"
    );
    let st = s.status().await;
    let failed_at = st.history.last().map(|h| h.time.0);
    let switched_at = st
        .history
        .iter()
        .find(|h| h.phase == Phase::Deploying && h.step == Some(1))
        .map(|h| h.time.0);
    let (Some(failed_at), Some(switched_at)) = (failed_at, switched_at) else {
        panic!(
            "the history shows the switch and the failure: {:?}",
            st.history
        );
    };
    assert!(
        failed_at.duration_since(switched_at).as_secs() < 60,
        "failed within the scale-down delay: {:?}",
        st.history
    );
}

#[tokio::test]
async fn blue_green_with_failing_health_check_rolls_back_to_blue() {
    let s = Scenario::new("engine-bg-unhealthy").await;
    s.create(json!({"version": "v1", "replicas": 2,
        "upgradeStrategy": blue_green(json!({"healthCheck": s.health_check()}))}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2-unhealthy"})).await;
    s.assert_rolled_back("v2-unhealthy", "v1", 2, "health")
        .await;
    assert_eq!(service_version(&s, APP).await.as_deref(), Some("v1"));
    assert!(s.health.count_status(500) >= 2, "the failing checks ran");
}

// --- each strategy failing at each stage, and rolling back ----------------------------------------

#[tokio::test]
async fn rolling_with_pods_never_ready_rolls_back_to_stable() {
    let s = Scenario::new("engine-rolling-broken").await;
    let strategy = json!({"type": "Rolling"});
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": strategy}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(broken_upgrade()).await;
    s.assert_rolled_back("v2-broken", "v1", 2, "ready").await;
    assert_eq!(s.status().await.last_healthy_version.as_deref(), Some("v1"));
}

/// The 10,000-app bump: a controller-manager minutes behind left Deployments' status behind pods of
/// the new version that had long been ready, and Bosun rolled healthy versions back when the progress
/// deadline passed. Here the Deployment controller is held back by pausing the Deployment (as
/// `kubectl rollout pause` does: the controller then rolls nothing out and reports no progress), and
/// the test makes v2's pod itself. Past the deadline, the upgrade waits and says why; when the
/// controller goes on, it ends Healthy at v2, never Failed.
#[tokio::test]
async fn ready_pods_of_the_version_with_the_deployment_controller_behind_are_waited_for_not_rolled_back()
 {
    // Long enough for the test to make v2's pod and kwok to make it ready on two busy cores.
    const DEADLINE: i64 = 15;
    let s = Scenario::new("engine-controller-behind").await;
    s.create(json!({"version": "v1", "replicas": 1})).await;
    s.phase_is(Phase::Healthy, "v1").await;
    let deployments = s.ns.api::<Deployment>();
    let pause = |paused: bool| {
        let deployments = deployments.clone();
        async move {
            deployments
                .patch(
                    APP,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"paused": paused}})),
                )
                .await
                .expect("pause or resume the Deployment");
        }
    };
    // A field Bosun's applies do not set, so they leave it as the test set it.
    pause(true).await;
    s.set_spec(json!({"version": "v2", "upgradeStrategy": {"progressDeadlineSeconds": DEADLINE}}))
        .await;
    let template = s
        .wait_for("Bosun's apply of v2 to the paused Deployment", || async {
            let t = s.deployment(APP).await?.spec?.template;
            let image = t.spec.as_ref()?.containers.first()?.image.as_deref()?;
            (image == "shop:v2").then_some(t)
        })
        .await;
    // v2's pod, as the ReplicaSet controller would have made it.
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some("shop-v2-made-by-the-test".into()),
            labels: template.metadata.and_then(|m| m.labels),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    };
    s.ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .expect("create v2's pod");

    let no_failure = |st: &ManagedApplicationStatus| {
        assert_ne!(st.phase, Some(Phase::Failed), "rolled back: {st:#?}");
    };
    let st = s
        .wait_status("the upgrade waiting for the Deployment controller", |st| {
            no_failure(st);
            st.message
                .as_deref()
                .is_some_and(|m| m.contains("waiting for the Deployment controller"))
        })
        .await;
    assert_eq!(st.phase, Some(Phase::Deploying), "{st:#?}");
    let began = st
        .history
        .iter()
        .rev()
        .find(|h| h.phase == Phase::Deploying)
        .map(|h| h.time.0)
        .expect("the upgrade's Deploying entry");
    // Past the deadline, and two of the engine's looks after it (one each 5 s), it still waits.
    let past = began.as_millisecond() + (DEADLINE + 12) * 1000;
    let left = past - k8s_openapi::jiff::Timestamp::now().as_millisecond();
    holds_for(
        "the upgrade waiting past its progress deadline",
        Duration::from_millis(left.max(0).unsigned_abs()),
        || async {
            let st = s.status().await;
            no_failure(&st);
            st.phase == Some(Phase::Deploying)
        },
    )
    .await;

    pause(false).await;
    let st = s.phase_is(Phase::Healthy, "v2").await;
    assert!(
        st.history.iter().all(|h| h.phase != Phase::Failed),
        "{:#?}",
        st.history
    );
    assert_eq!(st.failed_version, None);
}

#[tokio::test]
async fn recreate_with_pods_never_ready_rolls_back_to_stable() {
    let s = Scenario::new("engine-recreate-broken").await;
    let strategy = json!({"type": "Recreate"});
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": strategy}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(broken_upgrade()).await;
    s.assert_rolled_back("v2-broken", "v1", 2, "ready").await;
}

#[tokio::test]
async fn recreate_with_failing_health_check_rolls_back_to_stable() {
    let s = Scenario::new("engine-recreate-unhealthy").await;
    let strategy = json!({"type": "Recreate", "healthCheck": s.health_check()});
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": strategy}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2-unhealthy"})).await;
    s.assert_rolled_back("v2-unhealthy", "v1", 2, "health")
        .await;
}

#[tokio::test]
async fn rolling_with_failing_health_check_rolls_back_to_stable() {
    let s = Scenario::new("engine-rolling-unhealthy").await;
    let strategy = json!({"type": "Rolling", "healthCheck": s.health_check()});
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": strategy}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2-unhealthy"})).await;
    s.assert_rolled_back("v2-unhealthy", "v1", 2, "health")
        .await;
    let failing: Vec<_> = s
        .health
        .requests()
        .into_iter()
        .filter(|r| r.image.as_deref() == Some("shop:v2-unhealthy") && r.status == 500)
        .collect();
    assert!(failing.len() >= 2, "failureThreshold 2: {failing:?}");
}

#[tokio::test]
async fn canary_with_pods_never_ready_rolls_back_to_stable() {
    let s = Scenario::new("engine-canary-broken").await;
    let steps = json!([{"weight": 50, "pause": 2}, {"weight": 100}]);
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": canary(steps)}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(broken_upgrade()).await;
    s.wait_for("a canary of v2-broken", || async {
        (s.image("shop-canary").await.as_deref() == Some("shop:v2-broken")).then_some(())
    })
    .await;
    s.assert_rolled_back("v2-broken", "v1", 2, "ready").await;
}

#[tokio::test]
async fn canary_with_failing_health_check_rolls_back_to_stable() {
    let s = Scenario::new("engine-canary-unhealthy").await;
    let steps = json!([{"weight": 50, "pause": 2}, {"weight": 100}]);
    let strategy =
        json!({"type": "Canary", "healthCheck": s.health_check(), "canary": {"steps": steps}});
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": strategy}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2-unhealthy"})).await;
    s.assert_rolled_back("v2-unhealthy", "v1", 2, "health")
        .await;
    let st = s.status().await;
    assert_eq!(
        st.step_index.unwrap_or(0),
        0,
        "it failed at the first step: {st:?}"
    );
    assert!(
        s.health.count_status(500) >= 2,
        "the failing checks ran at the canary step"
    );
}

#[tokio::test]
async fn canary_failing_health_checks_at_a_later_step_rolls_back_to_stable() {
    let s = Scenario::new("engine-canary-late").await;
    let steps = json!([{"weight": 50, "pause": 1}, {"weight": 100}]);
    let strategy =
        json!({"type": "Canary", "healthCheck": s.health_check(), "canary": {"steps": steps}});
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": strategy}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    // The first step passes; then the dependency goes down: the second step's checks fail.
    s.set_spec(json!({"version": "v2"})).await;
    s.wait_status("the second step", |st| st.step_index == Some(1))
        .await;
    s.health.force(Some(500));
    s.assert_rolled_back("v2", "v1", 2, "health").await;
}

#[tokio::test]
async fn a_canary_failing_during_its_pause_rolls_back_without_waiting_for_the_pause_to_end() {
    let s = Scenario::new("engine-canary-pause-watch").await;
    let steps = json!([{"weight": 50, "pause": 300}, {"weight": 100}]);
    let strategy =
        json!({"type": "Canary", "healthCheck": s.health_check(), "canary": {"steps": steps}});
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": strategy}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    // The first step passes its checks and its 5-minute pause begins; then the canary starts failing.
    s.set_spec(json!({"version": "v2"})).await;
    let began = s
        .wait_status("the first step's pause", |st| st.pause_start_time.is_some())
        .await
        .pause_start_time
        .expect("checked");
    let answered = s.health.count_status(200);
    wait_until("the canary still probed while its pause runs", || async {
        (s.health.count_status(200) > answered).then_some(())
    })
    .await;
    s.health.force(Some(500));
    s.assert_rolled_back("v2", "v1", 2, "health").await;
    let failed_after = seconds_since(&began.0);
    assert!(
        failed_after < 120.0,
        "rolled back {failed_after:.0} s into a 300 s pause: while it ran, not at its end"
    );
    assert!(
        s.deployment("shop-canary").await.is_none(),
        "canary removed"
    );
}

// --- pause and resume ----------------------------------------------------------------------------

#[tokio::test]
async fn spec_paused_freezes_a_canary_pause_and_resuming_waits_only_the_remaining_time() {
    // Long enough that a busy machine sees spec.paused well before the pause would have ended.
    const PAUSE: f64 = 12.0;
    let s = Scenario::new("engine-paused").await;
    let steps = json!([{"weight": 50, "pause": PAUSE as u64}, {"weight": 100}]);
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": canary(steps)}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2"})).await;
    let start = s
        .wait_status("the first step's pause", |st| st.pause_start_time.is_some())
        .await
        .pause_start_time
        .expect("checked");
    let waited = seconds_since(&start.0);
    tokio::time::sleep(Duration::from_secs_f64((3.0 - waited).max(0.0))).await;
    s.set_spec(json!({"paused": true})).await;
    // Frozen for longer than the whole pause: nothing moves.
    holds_for(
        "a paused upgrade stays where it is",
        Duration::from_secs_f64(PAUSE),
        || async {
            let st = s.status().await;
            st.step_index == Some(0) && st.phase != Some(Phase::Healthy)
        },
    )
    .await;
    assert_eq!(s.image(APP).await.as_deref(), Some("shop:v1"));
    assert_eq!(s.image("shop-canary").await.as_deref(), Some("shop:v2"));

    s.set_spec(json!({"paused": false})).await;
    let resumed_at = k8s_openapi::jiff::Timestamp::now();
    // The pause goes on from where it was frozen: its start is put back by the ~3 s already waited.
    let rebased = s
        .wait_status("the pause running again", |st| {
            st.pause_start_time.is_some()
        })
        .await
        .pause_start_time
        .expect("checked");
    // Between the ~3 s waited and the whole pause: 0 would be a restarted pause, the whole pause or
    // more one that counted the paused time (the engine freezes it when it sees spec.paused, so a
    // busy machine adds a little).
    let waited_before = (resumed_at.as_millisecond() - rebased.0.as_millisecond()) as f64 / 1000.0;
    assert!(
        (1.5..PAUSE - 1.0).contains(&waited_before),
        "the resumed pause should count the ~3 s waited before spec.paused, counts {waited_before:.1} s"
    );
    let next = s
        .wait_status("the next step after the rest of the pause", |st| {
            second_step(st).is_some()
        })
        .await;
    let moved = second_step(&next).expect("checked");
    let rest = (moved.0.as_millisecond() - resumed_at.as_millisecond()) as f64 / 1000.0;
    // What was left of the pause is waited, not skipped (0 s).
    let left = PAUSE - waited_before;
    assert!(
        rest >= left - 1.5,
        "resuming should wait the remaining ~{left:.0} s of the pause, waited {rest:.1} s"
    );
    s.phase_is(Phase::Healthy, "v2").await;
}

// --- superseding version -------------------------------------------------------------------------

#[tokio::test]
async fn a_new_version_mid_canary_supersedes_it_and_starts_again_from_stable() {
    let s = Scenario::new("engine-supersede").await;
    let steps = json!([{"weight": 50, "pause": "untilPromoted"}, {"weight": 100}]);
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": canary(steps)}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2"})).await;
    s.wait_status("v2 waiting at its first step", |st| {
        st.step_index == Some(0) && st.phase == Some(Phase::HealthChecking)
    })
    .await;

    s.set_spec(json!({"version": "v3"})).await;
    let stable_images = RefCell::new(BTreeSet::new());
    s.wait_for("v3 waiting at its first step", || async {
        if let Some(i) = s.image(APP).await {
            stable_images.borrow_mut().insert(i);
        }
        let st = s.status().await;
        (st.target_version.as_deref() == Some("v3")
            && st.step_index == Some(0)
            && st.phase == Some(Phase::HealthChecking)
            && s.image("shop-canary").await.as_deref() == Some("shop:v3"))
        .then_some(())
    })
    .await;
    assert_eq!(
        stable_images.into_inner(),
        BTreeSet::from(["shop:v1".to_string()])
    );
    let st = s.status().await;
    assert_eq!(st.current_version.as_deref(), Some("v1"));
    assert_eq!(
        st.last_healthy_version.as_deref(),
        Some("v1"),
        "the rollback target"
    );
    assert!(
        st.history.iter().any(|h| h.message == "v3 supersedes v2"),
        "the history says v3 superseded v2: {:?}",
        st.history
    );

    s.annotate(ANNOTATION_PROMOTE_STEP, "0").await;
    s.phase_is(Phase::Healthy, "v3").await;
    s.stable_serves("v3", 2).await;
}

// --- restarts ------------------------------------------------------------------------------------

#[tokio::test]
async fn restarting_mid_migration_keeps_the_one_running_job() {
    let mut s = Scenario::new("engine-restart-mig").await;
    s.create(json!({"version": "v1", "upgradeStrategy": with_migration("migrate:v1")}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2", "upgradeStrategy": with_migration("migrate:v2-slow")}))
        .await;
    let job = s
        .wait_for("the migration Job of v2", || async {
            s.ns.api::<Job>().get_opt("shop-migration-v2").await.ok()?
        })
        .await;
    let uid = job.metadata.uid.clone();
    s.kill_engine().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    s.start_engine();

    holds_for(
        "the same, single migration Job",
        Duration::from_secs(2),
        || async {
            let jobs: Vec<_> = s
                .jobs()
                .await
                .into_iter()
                .filter(|j| j.metadata.name.as_deref() != Some("shop-migration-v1"))
                .collect();
            jobs.len() == 1 && jobs[0].metadata.uid == uid
        },
    )
    .await;
    s.phase_is(Phase::Healthy, "v2").await;
    let job =
        s.ns.api::<Job>()
            .get("shop-migration-v2")
            .await
            .expect("job");
    assert_eq!(job.metadata.uid, uid, "the Job was never recreated");
    assert_eq!(s.jobs().await.len(), 2);
}

#[tokio::test]
async fn restarting_mid_pause_neither_restarts_nor_skips_the_pause() {
    const PAUSE: f64 = 15.0;
    let mut s = Scenario::new("engine-restart-pause").await;
    let steps = json!([{"weight": 50, "pause": PAUSE as u64}, {"weight": 100}]);
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": canary(steps)}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    s.set_spec(json!({"version": "v2"})).await;
    let start = s
        .wait_status("the first step's pause", |st| st.pause_start_time.is_some())
        .await
        .pause_start_time
        .expect("checked");
    s.kill_engine().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    s.start_engine();

    // While the pause still has time to run, the restarted engine keeps it as it was: same start,
    // same step. The check stops a second before the pause ends, however long a busy machine took
    // to get here, so that a pause which legitimately ended is never read as one that was skipped.
    let left = PAUSE - 1.0 - seconds_since(&start.0);
    assert!(
        left > 0.0,
        "the machine took {:.1} s to restart the engine: too slow to check a {PAUSE} s pause",
        PAUSE - left
    );
    holds_for(
        "the pause is kept",
        Duration::from_secs_f64(left.min(3.0)),
        || async {
            let st = s.status().await;
            st.pause_start_time.as_ref() == Some(&start) && st.step_index == Some(0)
        },
    )
    .await;
    // The step after the pause is short (no pause of its own): read its time from status.history
    // rather than catch it live.
    let next = s
        .wait_status("the step after the pause", |st| second_step(st).is_some())
        .await;
    let moved = second_step(&next).expect("checked");
    let after = (moved.0.as_millisecond() - start.0.as_millisecond()) as f64 / 1000.0;
    // Not skipped: the step passes no sooner than the pause after it began (pauseStartTime has
    // microseconds, the history entry's time whole seconds: so a second less at the least). Not
    // restarted: pauseStartTime stayed as it was (checked above); the upper bound is loose because
    // a busy machine delays the restarted engine's first look.
    assert!(
        (PAUSE - 1.0..PAUSE + 15.0).contains(&after),
        "the {PAUSE} s pause should end ~{PAUSE} s after it began, ended after {after:.1} s"
    );
    s.phase_is(Phase::Healthy, "v2").await;
}

// --- deletion and what kubectl shows -------------------------------------------------------------

#[tokio::test]
async fn deleting_the_app_garbage_collects_its_deployments_services_and_jobs() {
    let s = Scenario::new("engine-delete").await;
    let steps = json!([{"weight": 50, "pause": "untilPromoted"}, {"weight": 100}]);
    let mut strategy = canary(steps);
    strategy["migrationJob"] = json!({"image": "migrate:v1"});
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": strategy}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;
    s.set_spec(json!({"version": "v2"})).await;
    s.wait_for("a canary of v2", || async {
        s.deployment("shop-canary").await.map(|_| ())
    })
    .await;
    assert!(!s.jobs().await.is_empty());
    assert!(
        s.ns.api::<Service>()
            .get_opt(APP)
            .await
            .expect("get")
            .is_some()
    );

    s.ns.api::<ManagedApplication>()
        .delete(APP, &DeleteParams::background())
        .await
        .expect("delete app");
    s.wait_for(
        "the app's Deployments, Services, Jobs and pods collected",
        || async {
            let lp = ListParams::default();
            let d = s.ns.api::<Deployment>().list(&lp).await.ok()?.items.len();
            let svc = s.ns.api::<Service>().list(&lp).await.ok()?.items.len();
            let j = s.ns.api::<Job>().list(&lp).await.ok()?.items.len();
            let rs = s.ns.api::<ReplicaSet>().list(&lp).await.ok()?.items.len();
            (d + svc + j + rs == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn an_upgrade_raises_events_for_its_start_its_end_and_its_failure_only() {
    let s = Scenario::new("engine-events").await;
    s.create(json!({"version": "v1", "upgradeStrategy": with_migration("migrate:v1")}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;
    s.set_spec(json!({"version": "v2", "upgradeStrategy": with_migration("migrate:v2")}))
        .await;
    s.phase_is(Phase::Healthy, "v2").await;
    let v2_history = s.status().await.history;
    s.set_spec(json!({"version": "v3", "upgradeStrategy": with_migration("migrate:v3-fails")}))
        .await;
    s.phase_is(Phase::Failed, "v3").await;

    let events = s
        .wait_for("the Failed Event", || async {
            let e = s.events().await;
            e.iter()
                .any(|(_, reason, _)| reason == "Failed")
                .then_some(e)
        })
        .await;
    let reasons: BTreeSet<&str> = events.iter().map(|(_, r, _)| r.as_str()).collect();
    // Each upgrade starts by migrating, and ends Healthy or Failed.
    for phase in ["Migrating", "Healthy", "Failed"] {
        assert!(reasons.contains(phase), "no {phase} Event: {events:?}");
    }
    // The stages between are in the status's history, not Events: each Event is a write the
    // whole cluster pays for.
    for stage in ["Deploying", "HealthChecking"] {
        assert!(!reasons.contains(stage), "a {stage} Event: {events:?}");
    }
    for stage in [Phase::Deploying, Phase::HealthChecking] {
        assert!(
            v2_history.iter().any(|h| h.phase == stage),
            "{stage} is in v2's history: {v2_history:?}"
        );
    }
    let failed = events
        .iter()
        .find(|(_, r, _)| r == "Failed")
        .expect("the Failed Event");
    assert_eq!(failed.0, "Warning");
    assert!(failed.2.contains("migration"), "{failed:?}");
    // The v2 upgrade's Events mention it.
    assert!(
        events
            .iter()
            .any(|(_, r, n)| r == "Healthy" && n.contains("v2")),
        "{events:?}"
    );
}

// --- after a rollback: revert, down-migration, abort, retry ---------------------------------------

#[tokio::test]
async fn reverting_spec_version_after_a_rollback_is_healthy_at_once_without_canary_steps() {
    let s = Scenario::new("engine-revert").await;
    let steps = json!([{"weight": 50, "pause": 30}, {"weight": 100}]);
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": canary(steps)}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;
    s.set_spec(broken_upgrade()).await;
    s.assert_rolled_back("v2-broken", "v1", 2, "ready").await;
    let generation = s.deployment(APP).await.and_then(|d| d.metadata.generation);

    // A human puts spec.version back to what runs.
    s.set_spec(json!({"version": "v1"})).await;
    let canary_seen = Cell::new(false);
    s.wait_for("Healthy at v1", || async {
        if s.deployment("shop-canary").await.is_some() {
            canary_seen.set(true);
        }
        let st = s.status().await;
        (st.phase == Some(Phase::Healthy) && st.target_version.as_deref() == Some("v1"))
            .then_some(())
    })
    .await;
    assert!(
        !canary_seen.get(),
        "a revert to the running version runs no canary step"
    );
    assert_eq!(
        s.deployment(APP).await.and_then(|d| d.metadata.generation),
        generation,
        "the stable Deployment was left alone"
    );
    let st = s.status().await;
    assert_eq!(st.current_version.as_deref(), Some("v1"));
    assert_eq!(st.failed_version, None, "{st:?}");
}

const DOWN_JOB: &str = "shop-migration-down-v2-broken";

#[tokio::test]
async fn a_rolled_back_upgrade_that_migrated_runs_its_down_migration() {
    let s = Scenario::new("engine-down").await;
    let strategy = |image: &str| {
        json!({"type": "RollingWithMigration", "migrationJob": {
            "image": image, "down": {"command": ["migrate", "down"]}}})
    };
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": strategy("migrate:v1")}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    let mut upgrade = strategy("migrate:v2");
    upgrade["progressDeadlineSeconds"] = json!(6);
    s.set_spec(json!({"version": "v2-broken", "upgradeStrategy": upgrade}))
        .await;
    s.phase_is(Phase::Failed, "v2-broken").await;
    let job = s
        .wait_for(&format!("the down-migration Job {DOWN_JOB}"), || async {
            s.ns.api::<Job>().get_opt(DOWN_JOB).await.ok()?
        })
        .await;
    let labels = job.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels.get("app").map(String::as_str), Some(APP));
    let container = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref()?.containers.first().cloned())
        .expect("a container");
    assert_eq!(container.image.as_deref(), Some("migrate:v2"));
    assert_eq!(
        container.command,
        Some(vec!["migrate".into(), "down".into()])
    );
    s.assert_rolled_back("v2-broken", "v1", 2, "ready").await;
    s.wait_for("the down-migration done", || async {
        let j = s.ns.api::<Job>().get(DOWN_JOB).await.ok()?;
        (j.status?.succeeded.unwrap_or(0) == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn going_back_to_a_version_that_was_healthy_migrates_down_first_and_skips_the_canary() {
    let s = Scenario::new("engine-back").await;
    let steps = json!([{"weight": 50, "pause": 1}, {"weight": 100}]);
    let strategy = |image: &str| {
        let mut c = canary(steps.clone());
        c["migrationJob"] = json!({"image": image, "down": {"command": ["migrate", "down"]}});
        c
    };
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": strategy("migrate:v1")}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;
    s.set_spec(json!({"version": "v2", "upgradeStrategy": strategy("migrate:v2")}))
        .await;
    s.phase_is(Phase::Healthy, "v2").await;
    s.stable_serves("v2", 2).await;

    // v2 turns out bad in production: a revert commit puts v1 back.
    s.set_spec(json!({"version": "v1", "upgradeStrategy": strategy("migrate:v1")}))
        .await;
    let canary_seen = Cell::new(false);
    let stable_moved_before_down = Cell::new(false);
    s.wait_for("Healthy at v1", || async {
        if s.deployment("shop-canary").await.is_some() {
            canary_seen.set(true);
        }
        let down_done =
            s.ns.api::<Job>()
                .get_opt("shop-migration-down-v2")
                .await
                .ok()
                .flatten()
                .and_then(|j| j.status?.succeeded)
                .unwrap_or(0)
                > 0;
        if s.image(APP).await.as_deref() == Some("shop:v1") && !down_done {
            stable_moved_before_down.set(true);
        }
        let st = s.status().await;
        (st.phase == Some(Phase::Healthy) && st.target_version.as_deref() == Some("v1"))
            .then_some(())
    })
    .await;
    assert!(
        !canary_seen.get(),
        "a version healthy before is rolled out directly"
    );
    assert!(
        !stable_moved_before_down.get(),
        "v1 ran before the down-migration of v2 finished"
    );
    let st = s.status().await;
    assert!(
        st.history
            .iter()
            .any(|h| h.message.contains("down-migration of v2")),
        "{:?}",
        st.history
    );
    s.stable_serves("v1", 2).await;
}

#[tokio::test]
async fn a_failed_migration_runs_no_down_migration() {
    let s = Scenario::new("engine-nodown").await;
    let strategy = |image: &str| {
        json!({"type": "RollingWithMigration", "migrationJob": {
            "image": image, "down": {"command": ["migrate", "down"]}}})
    };
    s.create(json!({"version": "v1", "upgradeStrategy": strategy("migrate:v1")}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;
    s.set_spec(json!({"version": "v2", "upgradeStrategy": strategy("migrate:v2-fails")}))
        .await;
    s.assert_rolled_back("v2", "v1", 1, "migration").await;
    let names: Vec<_> = s
        .jobs()
        .await
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    assert!(
        !names.iter().any(|n| n.contains("down")),
        "a migration that failed changed nothing to undo: {names:?}"
    );
}

#[tokio::test]
async fn the_abort_annotation_rolls_back_a_running_upgrade() {
    let s = Scenario::new("engine-abort").await;
    let steps = json!([{"weight": 50, "pause": "untilPromoted"}, {"weight": 100}]);
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": canary(steps)}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;
    s.set_spec(json!({"version": "v2"})).await;
    s.wait_status("v2 waiting at its first step", |st| {
        st.step_index == Some(0) && st.phase == Some(Phase::HealthChecking)
    })
    .await;

    // The abort names the version whose upgrade must stop; another version's name is ignored.
    s.annotate(ANNOTATION_ABORT, "v1").await;
    holds_for(
        "an abort of another version is ignored",
        Duration::from_secs(3),
        || async { s.status().await.phase == Some(Phase::HealthChecking) },
    )
    .await;
    s.annotate(ANNOTATION_ABORT, "v2").await;
    s.assert_rolled_back("v2", "v1", 2, "abort").await;
}

#[tokio::test]
async fn the_retry_annotation_runs_a_failed_version_again() {
    let s = Scenario::new("engine-retry").await;
    let strategy = json!({"type": "Rolling", "healthCheck": s.health_check()});
    s.create(json!({"version": "v1", "replicas": 2, "upgradeStrategy": strategy}))
        .await;
    s.phase_is(Phase::Healthy, "v1").await;

    // v2 fails its checks while a dependency is down...
    s.health.force(Some(500));
    s.set_spec(json!({"version": "v2"})).await;
    s.assert_rolled_back("v2", "v1", 2, "health").await;
    // ...which comes back; a human asks for another try of the same version.
    s.health.force(None);
    let before = s.health.requests().len();
    s.annotate(ANNOTATION_RETRY, "v2").await;
    let st = s.phase_is(Phase::Healthy, "v2").await;
    assert_eq!(st.failed_version, None);
    assert!(
        s.health.requests()[before..]
            .iter()
            .any(|r| r.status == 200 && r.image.as_deref() == Some("shop:v2")),
        "the retry checked the new pods again"
    );
    s.stable_serves("v2", 2).await;
}

// --- Upgrade windows -----------------------------------------------------------------------------

/// A daily window in UTC that opens at the first whole minute at least `lead` from now, for
/// `duration`, and the instant it opens.
fn window_opening_in(lead: Duration, duration: &str) -> (Value, k8s_openapi::jiff::Timestamp) {
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let lead = i64::try_from(lead.as_secs()).expect("a short lead");
    let opens = (now + lead + 59) / 60 * 60;
    let (hour, minute) = ((opens / 3600) % 24, (opens / 60) % 60);
    let window = json!({"schedule": format!("{minute} {hour} * * *"), "duration": duration});
    let at = k8s_openapi::jiff::Timestamp::from_second(opens).expect("a valid time");
    (window, at)
}

fn waiting_for_window(st: &ManagedApplicationStatus) -> Option<String> {
    st.conditions
        .iter()
        .find(|c| c.type_ == "WaitingForWindow" && c.status == "True")
        .map(|c| c.message.clone())
}

#[tokio::test]
async fn an_upgrade_outside_its_window_waits_through_a_restart_and_starts_when_the_window_opens() {
    let mut s = Scenario::new("engine-window").await;
    s.create(json!({"version": "v1", "replicas": 2})).await;
    s.phase_is(Phase::Healthy, "v1").await;

    // The window opens a minute or two from now (cron has minutes, not seconds).
    let (window, opens) = window_opening_in(Duration::from_secs(70), "10m");
    s.set_spec(json!({"version": "v2", "upgradeWindows": [window]}))
        .await;
    let st = s
        .wait_status("waiting for the window", |st| {
            st.phase == Some(Phase::Pending) && waiting_for_window(st).is_some()
        })
        .await;
    let why = waiting_for_window(&st).expect("the condition");
    assert!(why.contains("waits for window: opens"), "{why}");
    assert_eq!(st.message.as_deref(), Some(why.as_str()));

    // Killed and restarted while it waits: it still waits, and nothing was rolled out.
    s.kill_engine().await;
    s.start_engine();
    holds_for("the upgrade waits", Duration::from_secs(3), || async {
        let st = s.status().await;
        st.phase == Some(Phase::Pending) && waiting_for_window(&st).is_some()
    })
    .await;
    assert_eq!(s.image(APP).await.as_deref(), Some("shop:v1"));

    // The window opens: the upgrade starts on its own (within the requeue Bosun set for it).
    let deadline = Instant::now() + Duration::from_secs(240);
    let st = loop {
        let st = s.status().await;
        if st.phase == Some(Phase::Healthy) && st.target_version.as_deref() == Some("v2") {
            break st;
        }
        assert!(Instant::now() < deadline, "not Healthy at v2: {st:#?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let started = st
        .history
        .iter()
        .find(|h| h.phase == Phase::Deploying)
        .expect("a Deploying transition");
    assert!(
        started.time.0 >= opens,
        "started at {} before the window opened at {opens}",
        started.time.0
    );
    assert_eq!(waiting_for_window(&st), None, "the condition is gone");
    s.stable_serves("v2", 2).await;
}

#[tokio::test]
async fn promote_now_starts_an_upgrade_during_a_freeze_and_it_is_recorded() {
    let s = Scenario::new("engine-window-now").await;
    s.create(json!({"version": "v1", "replicas": 2})).await;
    s.phase_is(Phase::Healthy, "v1").await;
    // A freeze that is always on: it opens every minute for an hour.
    let freeze =
        json!({"kind": "deny", "schedule": "* * * * *", "duration": "1h", "gate": "steps"});
    s.set_spec(json!({"version": "v2", "upgradeWindows": [freeze]}))
        .await;
    let st = s
        .wait_status("held by the freeze", |st| waiting_for_window(st).is_some())
        .await;
    assert_eq!(st.phase, Some(Phase::Pending));
    holds_for("the freeze holds", Duration::from_secs(3), || async {
        s.status().await.phase == Some(Phase::Pending)
    })
    .await;

    let target = st.target_hash.clone().expect("a target revision");
    s.annotate(bosun::engine::ANNOTATION_PROMOTE_NOW, &target)
        .await;
    let st = s.phase_is(Phase::Healthy, "v2").await;
    assert_eq!(st.window_override.as_deref(), Some(target.as_str()));
    let note = bosun_core::rollout::gate::OVERRIDE_NOTE;
    assert!(
        s.events().await.iter().any(|(_, _, n)| n.contains(note)),
        "an Event says it started outside its windows: {:#?}",
        s.events().await
    );
    let app =
        s.ns.api::<ManagedApplication>()
            .get(APP)
            .await
            .expect("app");
    assert!(
        !app.annotations()
            .contains_key(bosun::engine::ANNOTATION_PROMOTE_NOW),
        "the annotation was acted on and removed"
    );
    s.stable_serves("v2", 2).await;
}

// --- Dependencies --------------------------------------------------------------------------------

#[tokio::test]
async fn a_dependency_cycle_found_in_the_cluster_holds_only_the_apps_in_it() {
    let s = Scenario::new("engine-cycle").await;
    // `bosun validate` refuses a cycle within one source; two sources (or kubectl) can still make
    // one in the cluster.
    let app = |name: &str, depends: Option<&str>| -> ManagedApplication {
        let depends: Vec<Value> = depends.into_iter().map(|d| json!({"name": d})).collect();
        serde_json::from_value(json!({
            "apiVersion": "apps.example.com/v1alpha1",
            "kind": "ManagedApplication",
            "metadata": {"name": name, "annotations": {"bosun.dev/revision": "c1"}},
            "spec": {"version": "v1", "replicas": 1, "dependsOn": depends},
        }))
        .expect("a valid ManagedApplication")
    };
    let api = s.ns.api::<ManagedApplication>();
    for a in [
        app(APP, Some("billing")),
        app("billing", Some(APP)),
        app("catalog", None),
    ] {
        api.create(&PostParams::default(), &a)
            .await
            .expect("create app");
    }
    let st = s
        .wait_status("held by the cycle", |st| {
            st.conditions
                .iter()
                .any(|c| c.type_ == "WaitingForDependencies" && c.reason == "DependencyCycle")
        })
        .await;
    let ns = &s.ns.name;
    let message = st.message.clone().unwrap_or_default();
    assert!(
        message.contains(&format!("({ns}/shop → {ns}/billing → {ns}/shop)")),
        "{message}"
    );
    assert_eq!(st.phase, Some(Phase::Pending));
    s.wait_for("catalog, outside the cycle, Healthy", || async {
        let c = api.get("catalog").await.ok()?;
        (c.status?.phase == Some(Phase::Healthy)).then_some(())
    })
    .await;
    holds_for(
        "nothing of the cycle runs",
        Duration::from_secs(3),
        || async { s.deployment(APP).await.is_none() && s.deployment("billing").await.is_none() },
    )
    .await;
}

#[tokio::test]
async fn a_freeze_set_for_the_whole_source_holds_its_apps_and_only_them() {
    let mut s = Scenario::new("engine-source-freeze").await;
    s.kill_engine().await;
    let freeze: bosun_core::model::UpgradeWindow =
        serde_json::from_value(json!({"kind": "deny", "schedule": "* * * * *", "duration": "1h"}))
            .expect("a window");
    s.start_engine_with(bosun::engine::Settings {
        source_windows: [("platform".to_string(), vec![freeze])].into(),
        ..Default::default()
    });
    let app = |name: &str, source: &str| -> ManagedApplication {
        serde_json::from_value(json!({
            "apiVersion": "apps.example.com/v1alpha1",
            "kind": "ManagedApplication",
            "metadata": {"name": name, "labels": {"bosun.dev/source": source}},
            "spec": {"version": "v1", "replicas": 1},
        }))
        .expect("a valid ManagedApplication")
    };
    let api = s.ns.api::<ManagedApplication>();
    for a in [app(APP, "platform"), app("catalog", "team")] {
        api.create(&PostParams::default(), &a)
            .await
            .expect("create app");
    }
    let st = s
        .wait_status("held by the source's freeze", |st| {
            waiting_for_window(st).is_some()
        })
        .await;
    assert_eq!(st.phase, Some(Phase::Pending));
    s.wait_for("catalog, of another source, Healthy", || async {
        let c = api.get("catalog").await.ok()?;
        (c.status?.phase == Some(Phase::Healthy)).then_some(())
    })
    .await;
}

/// The engine, the dashboard and the write-back read one watch of the apps and one of the pods
/// (`bosun::cache::Feed`): each subscriber is told every change made after it subscribed, in order,
/// once the store holds it; one that leaves stops nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_watch_tells_each_subscriber_every_change_made_after_it_subscribed() {
    use bosun::cache::{Change, Feed};
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector::ObjectRef;
    let ns = TestNamespace::new("feed").await;
    let maps = ns.api::<ConfigMap>();
    let map = |name: &str, value: &str| -> ConfigMap {
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "data": {"v": value},
        }))
        .expect("a ConfigMap")
    };
    let pp = PostParams::default();
    maps.create(&pp, &map("before", "1"))
        .await
        .expect("creating");
    let feed = Feed::start(maps.clone(), Default::default(), |_| {}, None);
    // Its readers (the engine, the write-back, their controllers) wait for the first list at once,
    // each in its own task: each is woken.
    let waiting: Vec<_> = (0..3)
        .map(|_| {
            let feed = feed.clone();
            tokio::spawn(async move { feed.wait_until_ready().await })
        })
        .collect();
    for w in waiting {
        tokio::time::timeout(STATUS_WAIT, w)
            .await
            .expect("every reader woken")
            .expect("the task ran")
            .expect("listed");
    }
    let store = feed.store();
    assert!(
        store
            .get(&ObjectRef::new("before").within(&ns.name))
            .is_some()
    );

    // What a subscriber is told, as "applied a=2" / "deleted b" (the first list's `Listed` skipped:
    // it may come before or after the subscription).
    async fn next(rx: &mut futures::channel::mpsc::Receiver<Change<ConfigMap>>) -> String {
        loop {
            let change = tokio::time::timeout(STATUS_WAIT, rx.next())
                .await
                .expect("a change in time")
                .expect("the feed goes on");
            let told = |o: &ConfigMap| {
                let v = o.data.as_ref().and_then(|d| d.get("v")).cloned();
                format!("{}={}", o.name_any(), v.unwrap_or_default())
            };
            match change {
                Change::Applied(o) => return format!("applied {}", told(&o)),
                Change::Deleted(o) => return format!("deleted {}", told(&o)),
                Change::Listed => continue,
            }
        }
    }
    let mut first = feed.subscribe();
    maps.create(&pp, &map("a", "1")).await.expect("creating");
    assert_eq!(next(&mut first).await, "applied a=1");
    let mut second = feed.subscribe();
    let merge = |v: &str| Patch::Merge(json!({"data": {"v": v}}));
    maps.patch("a", &PatchParams::default(), &merge("2"))
        .await
        .expect("patching");
    maps.delete("before", &DeleteParams::default())
        .await
        .expect("deleting");
    for rx in [&mut first, &mut second] {
        assert_eq!(next(rx).await, "applied a=2");
        assert_eq!(next(rx).await, "deleted before=1");
    }
    // What a subscriber is told, the store already holds.
    let a = store.get(&ObjectRef::new("a").within(&ns.name));
    assert_eq!(
        a.and_then(|a| a.data.clone())
            .and_then(|d| d.get("v").cloned())
            .as_deref(),
        Some("2")
    );
    assert!(
        store
            .get(&ObjectRef::new("before").within(&ns.name))
            .is_none()
    );
    // One leaves; the other is still told.
    drop(first);
    maps.patch("a", &PatchParams::default(), &merge("3"))
        .await
        .expect("patching");
    assert_eq!(next(&mut second).await, "applied a=3");
}
