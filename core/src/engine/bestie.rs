//! The Bestie's decisions, pure: from (the Bestie, what was observed of the objects it owns, now) to a
//! [`Plan`]: the objects to apply or create, in order, the next status, the Events and when to look again.
//!
//! As seed 001's operator, [`plan`] runs ordered sub-reconcilers — database, seed Job, app Deployment,
//! Service, Ingress or Route, HPA — and combines their requeue results (the soonest wins). A later part
//! waits for the earlier ones: the seed Job runs only once the database is ready, and the app tier is
//! created only once the seed succeeded (or when it already exists: a running app is never held back).
//!
//! The unit of a rollout is the app's *template* ([`BestieTemplate`]: image, version, port and database
//! Secret, everything of the spec that shapes the app's pods), named by its hash. A change of any of them
//! is the Deployment's rolling update (maxUnavailable 0, gated by readiness). When the new pods are not
//! ready within the progress deadline (the Deployment reports `ProgressDeadlineExceeded`), the template's
//! hash is recorded in `status.failedHash` (its version in `failedVersion`) and the app rolls back to
//! `status.lastHealthyTemplate`, whole: the image, version and port that last ran, not the spec's. It is
//! not retried until the spec's template changes again. The executor (`bosun::bestie`) observes, calls
//! [`plan`] and carries the actions out; it never decides.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::model::{BestieSpec, BestieStatus, BestieTemplate};
pub use crate::names::{
    ANNOTATION_APPLIED_HASH, ANNOTATION_PROGRESS_DEADLINE, ANNOTATION_TEMPLATE_HASH, LABEL_VERSION,
};

/// The field manager of everything the Bestie controller applies, status included.
pub const FIELD_MANAGER: &str = "bosun-bestie";
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
pub const DEFAULT_PORT: i32 = 8000;
pub const DEFAULT_DB_IMAGE: &str = "postgres:16";
pub const DEFAULT_DB_STORAGE: &str = "1Gi";
/// Postgres major version of a Crunchy `PostgresCluster`.
pub const CRUNCHY_POSTGRES_VERSION: i32 = 16;
pub const POSTGRES_PORT: i32 = 5432;
/// The seed Job's retries before it is failed.
pub const SEED_BACKOFF_LIMIT: i32 = 2;

pub const CONDITION_READY: &str = "Ready";
pub const CONDITION_PROGRESSING: &str = "Progressing";

/// Condition and Event reasons (an Event's reason is its condition's).
pub mod reason {
    pub const WAITING_FOR_DATABASE: &str = "WaitingForDatabase";
    pub const SEEDING_DATABASE: &str = "SeedingDatabase";
    pub const SEED_FAILED: &str = "SeedFailed";
    pub const ROLLING_OUT: &str = "RollingOut";
    pub const ROLLING_BACK: &str = "RollingBack";
    pub const ROLLOUT_FAILED: &str = "RolloutFailed";
    pub const ROLLOUT_COMPLETE: &str = "RolloutComplete";
    pub const NAME_TAKEN: &str = "NameTaken";
    pub const WAITING_FOR_WINDOW: &str = "WaitingForWindow";
    pub const WAITING_FOR_DEPENDENCIES: &str = "WaitingForDependencies";
}

/// How long to wait before looking again when nothing we watch will wake us (a PostgresCluster, whose
/// CRD may not exist when the controller starts, is not watched).
const RECHECK_SECS: u64 = 5;

/// One object a Bestie owns. Each has a deterministic name derived from the Bestie's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    PostgresCluster,
    DatabaseSecret,
    DatabaseService,
    DatabaseStatefulSet,
    SeedJob,
    AppDeployment,
    AppService,
    Ingress,
    Route,
    Hpa,
}

/// Where a kind is served: what an executor needs to address it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gvk {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

impl Gvk {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

pub const POSTGRES_CLUSTER: Gvk = Gvk {
    group: "postgres-operator.crunchydata.com",
    version: "v1beta1",
    kind: "PostgresCluster",
    plural: "postgresclusters",
};
pub const ROUTE: Gvk = Gvk {
    group: "route.openshift.io",
    version: "v1",
    kind: "Route",
    plural: "routes",
};

impl Part {
    pub const ALL: [Part; 10] = [
        Part::PostgresCluster,
        Part::DatabaseSecret,
        Part::DatabaseService,
        Part::DatabaseStatefulSet,
        Part::SeedJob,
        Part::AppDeployment,
        Part::AppService,
        Part::Ingress,
        Part::Route,
        Part::Hpa,
    ];

    /// The object's name for the Bestie `bestie`.
    pub fn name(self, bestie: &str) -> String {
        match self {
            Part::PostgresCluster
            | Part::DatabaseSecret
            | Part::DatabaseService
            | Part::DatabaseStatefulSet => format!("{bestie}-db"),
            Part::SeedJob => format!("{bestie}-seed"),
            Part::AppDeployment | Part::AppService | Part::Ingress | Part::Route | Part::Hpa => {
                format!("{bestie}-app")
            }
        }
    }

    pub fn gvk(self) -> Gvk {
        let builtin = |group, version, kind, plural| Gvk {
            group,
            version,
            kind,
            plural,
        };
        match self {
            Part::PostgresCluster => POSTGRES_CLUSTER,
            Part::Route => ROUTE,
            Part::DatabaseSecret => builtin("", "v1", "Secret", "secrets"),
            Part::DatabaseService | Part::AppService => builtin("", "v1", "Service", "services"),
            Part::DatabaseStatefulSet => builtin("apps", "v1", "StatefulSet", "statefulsets"),
            Part::SeedJob => builtin("batch", "v1", "Job", "jobs"),
            Part::AppDeployment => builtin("apps", "v1", "Deployment", "deployments"),
            Part::Ingress => builtin("networking.k8s.io", "v1", "Ingress", "ingresses"),
            Part::Hpa => builtin(
                "autoscaling",
                "v2",
                "HorizontalPodAutoscaler",
                "horizontalpodautoscalers",
            ),
        }
    }

    /// The `app.kubernetes.io/component` label of the object and its pods.
    pub fn component(self) -> &'static str {
        match self {
            Part::PostgresCluster
            | Part::DatabaseSecret
            | Part::DatabaseService
            | Part::DatabaseStatefulSet => "database",
            Part::SeedJob => "seed",
            Part::AppDeployment | Part::AppService | Part::Ingress | Part::Route | Part::Hpa => {
                "app"
            }
        }
    }
}

/// The Bestie as the planner needs it. Built once at the executor's boundary.
#[derive(Clone, Debug, PartialEq)]
pub struct Input<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub generation: Option<i64>,
    pub spec: &'a BestieSpec,
    pub status: &'a BestieStatus,
    /// The controller reference every owned object carries.
    pub owner: &'a OwnerReference,
    /// From [`ANNOTATION_PROGRESS_DEADLINE`], parsed by the executor.
    pub progress_deadline_seconds: i32,
    /// The upgrade windows of a rollout: the spec's, and its source's (`bosun run` config).
    pub windows: &'a [crate::model::UpgradeWindow],
    /// The `bosun.dev/promote-now` annotation: the version (or template hash) to roll out now,
    /// outside the windows.
    pub promote_now: Option<&'a str>,
    /// The apps of `spec.dependsOn` the same commit changed that are not Healthy at it yet (or a
    /// cycle), as the executor found them: a new template waits for them.
    pub dependencies_waiting: Option<String>,
}

/// Optional APIs found by discovery.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Apis {
    /// `postgres-operator.crunchydata.com/v1beta1` serves `postgresclusters`.
    pub postgres_cluster: bool,
    /// `route.openshift.io/v1` serves `routes`.
    pub route: bool,
}

/// What is known of one live owned object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// The [`ANNOTATION_APPLIED_HASH`] it carries.
    pub applied_hash: Option<String>,
}

/// The database, whichever kind runs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbObs {
    Absent,
    Starting,
    Ready,
}

/// The seed Job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobObs {
    Absent,
    Running,
    Succeeded,
    Failed { reason: String },
}

/// The app Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppObs {
    /// Its template's [`LABEL_VERSION`].
    pub version: String,
    /// Its [`ANNOTATION_TEMPLATE_HASH`]; `None` on a Deployment last applied by a Bosun that did not
    /// record it.
    pub template_hash: Option<String>,
    /// Its app container's image (`repository:tag`).
    pub image: String,
    /// `spec.replicas` (the HPA may have changed it).
    pub replicas: i32,
    /// `status.observedGeneration == metadata.generation`: the status describes the current template.
    pub current: bool,
    pub total: i32,
    pub updated: i32,
    pub ready: i32,
    /// Condition Progressing=False with reason ProgressDeadlineExceeded.
    pub stalled: bool,
}

impl AppObs {
    /// Its pod template is built from `template`. A Deployment without a template hash (applied by an
    /// older Bosun) is judged by its image and version, all it can tell.
    fn runs(&self, template: &BestieTemplate) -> bool {
        match &self.template_hash {
            Some(hash) => *hash == template.hash,
            None => self.version == template.version && self.image == template.image_ref(),
        }
    }

    /// Every pod runs `template` and is ready, as `kubectl rollout status` judges it.
    fn complete_at(&self, template: &BestieTemplate) -> bool {
        self.runs(template)
            && self.current
            && self.updated >= self.replicas
            && self.total == self.updated
            && self.ready >= self.replicas
    }
}

/// One app pod, for `status.podstatus`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodObs {
    pub name: String,
    pub phase: String,
    pub image: String,
}

/// Everything [`plan`] needs to know of the cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    pub apis: Apis,
    /// The owned objects that exist.
    pub live: BTreeMap<Part, Live>,
    /// Objects that have one of our names but another controller (or none): never written.
    pub foreign: BTreeSet<Part>,
    pub database: DbObs,
    pub seed_job: JobObs,
    pub app: Option<AppObs>,
    pub pods: Vec<PodObs>,
}

/// The database a Bestie uses, with the Secret its clients read (keys `host`, `port`, `dbname`, `user`,
/// `password`, `uri`, as Crunchy's user Secrets have them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbKind {
    /// A Crunchy `PostgresCluster`; its operator writes the Secret `<name>-db-pguser-<name>`.
    Crunchy,
    /// A StatefulSet with a headless Service and a generated Secret `<name>-db`.
    StatefulSet,
}

impl DbKind {
    /// The one in use: the one that exists (never switch a live database), else the Crunchy operator's
    /// when its API is served.
    pub fn choose(apis: Apis, live: &BTreeMap<Part, Live>) -> DbKind {
        if live.contains_key(&Part::PostgresCluster) {
            DbKind::Crunchy
        } else if live.contains_key(&Part::DatabaseStatefulSet) || !apis.postgres_cluster {
            DbKind::StatefulSet
        } else {
            DbKind::Crunchy
        }
    }

    pub fn secret_name(self, bestie: &str) -> String {
        match self {
            DbKind::Crunchy => format!("{bestie}-db-pguser-{bestie}"),
            DbKind::StatefulSet => Part::DatabaseSecret.name(bestie),
        }
    }
}

/// One thing for the executor to do. Each is idempotent.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Server-side apply `object` (already stamped with its [`ANNOTATION_APPLIED_HASH`]).
    Apply { part: Part, object: Value },
    /// Create `object` unless it exists; never update it (a Job's template is immutable, and a Job
    /// created twice would run twice).
    Create { part: Part, object: Value },
    /// Create the database Secret unless it exists, with a password the executor generates (the planner
    /// never sees it). Fill it in with [`database_secret`].
    CreateDatabaseSecret,
    /// Delete an object we own that is no longer wanted.
    Delete { part: Part },
}

/// When to look again if nothing we watch changes. Combined over sub-reconcilers: the soonest wins (seed
/// 001 keeps the longest delay, which would miss the deadline of the sub-reconciler that asked sooner).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Requeue {
    /// Watches suffice.
    Idle,
    After(u64),
}

impl Requeue {
    pub fn combine(self, other: Requeue) -> Requeue {
        match (self, other) {
            (Requeue::Idle, r) | (r, Requeue::Idle) => r,
            (Requeue::After(a), Requeue::After(b)) => Requeue::After(a.min(b)),
        }
    }
}

/// An Event to raise after the status write succeeded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What [`plan`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub status: BestieStatus,
    pub requeue: Requeue,
    pub events: Vec<Note>,
}

/// Where the Bestie stands; the conditions are rendered from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Stage {
    WaitingForDatabase,
    Seeding,
    SeedFailed {
        reason: String,
    },
    /// The spec's template waits for an upgrade window; the last healthy one (if any) keeps serving.
    WaitingForWindow {
        version: String,
        why: String,
        /// `WaitingForWindow` or `WaitingForDependencies`.
        reason: &'static str,
    },
    /// The spec's template rolls out. Templates are named as messages name them
    /// (`version 1.4`, or its image, port and hash where the version is the last healthy one's).
    RollingOut {
        version: String,
        updated: i32,
        ready: i32,
        replicas: i32,
    },
    /// The spec's template failed; the last healthy one (`to`: `image:tag on port N`) rolls back.
    RollingBack {
        failed: String,
        to: String,
    },
    /// The failed template was rolled back; the last healthy one, `running`, serves.
    RolledBack {
        failed: String,
        running: String,
    },
    /// The failed template has nothing to roll back to (it was the first).
    FailedWithoutRollback {
        failed: String,
    },
    Serving {
        version: String,
        replicas: i32,
    },
    /// Objects with the names we need belong to someone else; we leave them alone.
    NameTaken {
        /// `Kind name`, one per object.
        objects: Vec<String>,
    },
}

/// The result of one sub-reconciler.
struct Step {
    actions: Vec<Action>,
    requeue: Requeue,
}

impl Step {
    fn idle() -> Step {
        Step {
            actions: Vec::new(),
            requeue: Requeue::Idle,
        }
    }
}

/// Decides what to do for one Bestie. Pure: no client, no clock (`now` is given), no randomness.
pub fn plan(input: &Input, observed: &Observed, now: &Time) -> Plan {
    let spec = input.spec;
    let mut status = input.status.clone();
    let db_enabled = spec
        .database
        .as_ref()
        .and_then(|d| d.enabled)
        .unwrap_or(true);
    let db_kind = DbKind::choose(observed.apis, &observed.live);

    let mut steps = Vec::new();
    let mut stage = None;

    // 1. The database.
    if db_enabled {
        steps.push(database(input, observed, db_kind));
        if observed.database != DbObs::Ready {
            stage = Some(Stage::WaitingForDatabase);
        }
    }

    // 2. The seed Job: once, after the database is ready.
    if db_enabled && stage.is_none() {
        let (step, seeded, waiting) = seed(input, observed, db_kind);
        steps.push(step);
        if seeded {
            status.database_seeded = Some(true);
        }
        stage = waiting;
    }

    // 3–6. The app tier, once the seed ran; a running app is never held back by its database.
    let app_tier = stage.is_none() || observed.live.contains_key(&Part::AppDeployment);
    if app_tier {
        let db = db_enabled.then_some(db_kind);
        let (step, rollout) = app(input, observed, db, &mut status, now);
        steps.push(step);
        stage = stage.or(Some(rollout));
        steps.push(apply_step(
            observed,
            Part::AppService,
            app_service(input),
            None,
        ));
        steps.push(exposure(input, observed));
        steps.push(hpa(input, observed));
    }

    let mut actions = Vec::new();
    let mut requeue = Requeue::Idle;
    for step in steps {
        actions.extend(step.actions);
        requeue = requeue.combine(step.requeue);
    }
    // Never write over an object of someone else's that holds one of our names.
    let mut taken = Vec::new();
    actions.retain(|a| {
        let part = match a {
            Action::Apply { part, .. } | Action::Create { part, .. } | Action::Delete { part } => {
                *part
            }
            Action::CreateDatabaseSecret => Part::DatabaseSecret,
        };
        let foreign = observed.foreign.contains(&part);
        if foreign {
            taken.push(format!("{} {}", part.gvk().kind, part.name(input.name)));
        }
        !foreign
    });

    status.podstatus = pod_lines(&observed.pods);
    status.observed_generation = input.generation;
    let stage = if taken.is_empty() {
        stage.unwrap_or(Stage::WaitingForDatabase)
    } else {
        Stage::NameTaken { objects: taken }
    };
    let events = set_conditions(&mut status, &stage, input, now);
    Plan {
        actions,
        status,
        requeue,
        events,
    }
}

fn labels(input: &Input, part: Part) -> Value {
    json!({
        LABEL_MANAGED_BY: crate::sync::MANAGED_BY,
        LABEL_INSTANCE: input.name,
        LABEL_COMPONENT: part.component(),
    })
}

/// The common head of every owned object.
fn object(input: &Input, part: Part, spec_key: &str, spec: Value) -> Value {
    let gvk = part.gvk();
    let mut o = json!({
        "apiVersion": gvk.api_version(),
        "kind": gvk.kind,
        "metadata": {
            "name": part.name(input.name),
            "namespace": input.namespace,
            "labels": labels(input, part),
            "ownerReferences": [input.owner],
        },
    });
    o[spec_key] = spec;
    o
}

/// Stamps `object` with the hash of its content and returns the hash. `replicas` stays out of the hash
/// (the HPA owns it between our writes); the caller compares it separately.
pub fn stamp(object: &mut Value) -> String {
    let hash = crate::sync::hash_json(object);
    object["metadata"]["annotations"][ANNOTATION_APPLIED_HASH] = hash.clone().into();
    hash
}

/// An apply of `part`, skipped when the live object carries the same hash (and, for the Deployment, the
/// same replica count).
fn apply_step(observed: &Observed, part: Part, mut desired: Value, replicas: Option<i32>) -> Step {
    let hash = stamp(&mut desired);
    let same_hash = observed
        .live
        .get(&part)
        .is_some_and(|l| l.applied_hash.as_deref() == Some(hash.as_str()));
    let same_replicas = match replicas {
        None => true,
        Some(r) => {
            desired["spec"]["replicas"] = r.into();
            observed.app.as_ref().is_some_and(|a| a.replicas == r)
        }
    };
    let mut step = Step::idle();
    if !(same_hash && same_replicas) {
        step.actions.push(Action::Apply {
            part,
            object: desired,
        });
    }
    step
}

fn create_step(observed: &Observed, part: Part, object: Value) -> Step {
    let mut step = Step::idle();
    if !observed.live.contains_key(&part) {
        step.actions.push(Action::Create { part, object });
    }
    step
}

fn delete_step(observed: &Observed, part: Part) -> Step {
    let mut step = Step::idle();
    if observed.live.contains_key(&part) {
        step.actions.push(Action::Delete { part });
    }
    step
}

fn join(steps: Vec<Step>) -> Step {
    let mut all = Step::idle();
    for s in steps {
        all.actions.extend(s.actions);
        all.requeue = all.requeue.combine(s.requeue);
    }
    all
}

fn db_storage(spec: &BestieSpec) -> String {
    spec.database
        .as_ref()
        .and_then(|d| d.storage.clone())
        .unwrap_or_else(|| DEFAULT_DB_STORAGE.into())
}

/// The database sub-reconciler: a PostgresCluster, or Secret, headless Service and StatefulSet.
fn database(input: &Input, observed: &Observed, kind: DbKind) -> Step {
    let storage = db_storage(input.spec);
    let claim = json!({
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": storage}},
    });
    let mut step = match kind {
        DbKind::Crunchy => {
            let spec = json!({
                "postgresVersion": CRUNCHY_POSTGRES_VERSION,
                "instances": [{"name": "instance1", "replicas": 1, "dataVolumeClaimSpec": claim}],
                "users": [{"name": input.name, "databases": [input.name]}],
                "backups": {"pgbackrest": {"repos": [{"name": "repo1", "volume": {"volumeClaimSpec": claim}}]}},
            });
            apply_step(
                observed,
                Part::PostgresCluster,
                object(input, Part::PostgresCluster, "spec", spec),
                None,
            )
        }
        DbKind::StatefulSet => {
            let mut secret = Step::idle();
            if !observed.live.contains_key(&Part::DatabaseSecret) {
                secret.actions.push(Action::CreateDatabaseSecret);
            }
            join(vec![
                secret,
                apply_step(
                    observed,
                    Part::DatabaseService,
                    database_service(input),
                    None,
                ),
                apply_step(
                    observed,
                    Part::DatabaseStatefulSet,
                    database_statefulset(input, &claim),
                    None,
                ),
            ])
        }
    };
    if observed.database != DbObs::Ready {
        // A StatefulSet wakes us through its watch; a PostgresCluster is polled.
        step.requeue = Requeue::After(RECHECK_SECS);
    }
    step
}

fn database_service(input: &Input) -> Value {
    let part = Part::DatabaseService;
    object(
        input,
        part,
        "spec",
        json!({
            "clusterIP": "None",
            "selector": {LABEL_INSTANCE: input.name, LABEL_COMPONENT: part.component()},
            "ports": [{"name": "postgres", "port": POSTGRES_PORT, "targetPort": POSTGRES_PORT}],
        }),
    )
}

fn secret_env(secret: &str, pairs: &[(&str, &str)]) -> Vec<Value> {
    pairs
        .iter()
        .map(|(env, key)| json!({"name": env, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}))
        .collect()
}

fn database_statefulset(input: &Input, claim: &Value) -> Value {
    let part = Part::DatabaseStatefulSet;
    let image = input
        .spec
        .database
        .as_ref()
        .and_then(|d| d.image.clone())
        .unwrap_or_else(|| DEFAULT_DB_IMAGE.into());
    let secret = DbKind::StatefulSet.secret_name(input.name);
    let mut env = secret_env(
        &secret,
        &[
            ("POSTGRES_USER", "user"),
            ("POSTGRES_PASSWORD", "password"),
            ("POSTGRES_DB", "dbname"),
        ],
    );
    env.push(json!({"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"}));
    let selector = json!({LABEL_INSTANCE: input.name, LABEL_COMPONENT: part.component()});
    let ready = json!({"exec": {"command": ["sh", "-c", "pg_isready -U \"$POSTGRES_USER\" -d \"$POSTGRES_DB\""]}, "periodSeconds": 5});
    object(
        input,
        part,
        "spec",
        json!({
            "serviceName": Part::DatabaseService.name(input.name),
            "replicas": 1,
            "selector": {"matchLabels": selector},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
            "template": {
                "metadata": {"labels": labels(input, part)},
                "spec": {
                    "containers": [{
                        "name": "postgres",
                        "image": image,
                        "ports": [{"name": "postgres", "containerPort": POSTGRES_PORT}],
                        "env": env,
                        "readinessProbe": ready,
                        "livenessProbe": {"tcpSocket": {"port": POSTGRES_PORT}, "initialDelaySeconds": 30, "periodSeconds": 10},
                        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                        "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
                    }],
                },
            },
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": claim}],
        }),
    )
}

/// The generated database Secret of a StatefulSet database, with the `password` the executor generated
/// once. Created, never updated, so it survives restarts.
pub fn database_secret(input: &Input, password: &str) -> Value {
    let user = input.name;
    let host = format!(
        "{}.{}.svc",
        Part::DatabaseService.name(input.name),
        input.namespace
    );
    let uri = format!("postgresql://{user}:{password}@{host}:{POSTGRES_PORT}/{user}");
    object(
        input,
        Part::DatabaseSecret,
        "stringData",
        json!({
            "host": host,
            "port": POSTGRES_PORT.to_string(),
            "dbname": user,
            "user": user,
            "password": password,
            "uri": uri,
        }),
    )
}

/// The app's database environment: the keys of the Secret `secret`, as Crunchy's user Secret also has
/// them.
fn database_env(secret: &str) -> Vec<Value> {
    secret_env(
        secret,
        &[
            ("DB_HOST", "host"),
            ("DB_PORT", "port"),
            ("DB_NAME", "dbname"),
            ("DB_USER", "user"),
            ("DB_PASSWORD", "password"),
            ("DATABASE_URL", "uri"),
        ],
    )
}

fn image(spec: &BestieSpec, version: &str) -> String {
    format!("{}:{version}", spec.image)
}

/// The seed sub-reconciler. Returns the step, whether the seed has succeeded (now or before), and the
/// stage that holds the app tier back, if any.
fn seed(input: &Input, observed: &Observed, kind: DbKind) -> (Step, bool, Option<Stage>) {
    if input.status.database_seeded == Some(true) {
        return (Step::idle(), true, None);
    }
    match &observed.seed_job {
        JobObs::Succeeded => (Step::idle(), true, None),
        JobObs::Failed { reason } => (
            Step::idle(),
            false,
            Some(Stage::SeedFailed {
                reason: reason.clone(),
            }),
        ),
        JobObs::Running => (Step::idle(), false, Some(Stage::Seeding)),
        JobObs::Absent => {
            let part = Part::SeedJob;
            let mut container = json!({
                "name": "seed",
                "image": image(input.spec, &input.spec.version),
                "env": database_env(&kind.secret_name(input.name)),
            });
            if let Some(cmd) = input
                .spec
                .database
                .as_ref()
                .and_then(|d| d.seed_command.clone())
            {
                container["command"] = json!(cmd);
            }
            let job = object(
                input,
                part,
                "spec",
                json!({
                    "backoffLimit": SEED_BACKOFF_LIMIT,
                    "activeDeadlineSeconds": 600,
                    "template": {
                        "metadata": {"labels": labels(input, part)},
                        "spec": {"restartPolicy": "Never", "containers": [container]},
                    },
                }),
            );
            (
                create_step(observed, part, job),
                false,
                Some(Stage::Seeding),
            )
        }
    }
}

/// The Deployment's replica count: `size`, or with an HPA whatever it chose within [size, maxReplicas].
pub fn app_replicas(spec: &BestieSpec, live: Option<i32>) -> i32 {
    match hpa_bounds(spec) {
        Some((min, max)) => live.map_or(min, |r| r.clamp(min, max)),
        None => spec.size,
    }
}

/// The HPA's (min, max), when there is one. None for size 0: an HPA cannot hold zero pods.
pub fn hpa_bounds(spec: &BestieSpec) -> Option<(i32, i32)> {
    let max = spec.max_replicas?;
    (spec.size > 0).then_some((spec.size, max.max(spec.size)))
}

impl BestieTemplate {
    /// The template of these fields, its hash computed: 10 hex digits of the SHA-256 of their JSON
    /// (object keys sorted). A field added later changes every hash: a rollout for each Bestie, and a
    /// held failure tried again.
    pub fn new(
        image: String,
        version: String,
        port: i32,
        database_secret: Option<String>,
    ) -> BestieTemplate {
        let mut template = BestieTemplate {
            image,
            version,
            port,
            database_secret,
            hash: String::new(),
        };
        let mut fields = serde_json::to_value(&template).expect("a template serializes");
        fields
            .as_object_mut()
            .expect("a template serializes to an object")
            .remove("hash");
        let digest = Sha256::digest(fields.to_string().as_bytes());
        template.hash = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
        template
    }

    /// The template `spec` asks for the Bestie `bestie`, its pods reading the database of kind `db`
    /// (`None`: no database).
    pub fn of(spec: &BestieSpec, bestie: &str, db: Option<DbKind>) -> BestieTemplate {
        BestieTemplate::new(
            spec.image.clone(),
            spec.version.clone(),
            app_port(spec),
            db.map(|kind| kind.secret_name(bestie)),
        )
    }

    /// The container image, `repository:tag`.
    pub fn image_ref(&self) -> String {
        format!("{}:{}", self.image, self.version)
    }

    /// What runs: `<image>:<version> on port <port>`.
    fn describe(&self) -> String {
        format!("{} on port {}", self.image_ref(), self.port)
    }

    /// How a message names it beside `other`: `version <v>`, or where the versions do not tell them
    /// apart (only the image, port or database changed), what runs and the hash.
    fn label(&self, other: Option<&BestieTemplate>) -> String {
        match other {
            Some(o) if o.version == self.version && o.hash != self.hash => format!(
                "{} on port {} (template {})",
                self.image_ref(),
                self.port,
                self.hash
            ),
            _ => format!("version {}", self.version),
        }
    }
}

/// The rollback target: the last healthy template, or, from a status written before templates were
/// recorded, the last healthy version with the spec's other fields (all such a status can tell).
fn last_healthy(status: &BestieStatus, wanted: &BestieTemplate) -> Option<BestieTemplate> {
    status.last_healthy_template.clone().or_else(|| {
        status.last_healthy_version.as_ref().map(|version| {
            BestieTemplate::new(
                wanted.image.clone(),
                version.clone(),
                wanted.port,
                wanted.database_secret.clone(),
            )
        })
    })
}

/// The app sub-reconciler: the Deployment and the rollout state (appversion, lastHealthyVersion and
/// lastHealthyTemplate, failedVersion and failedHash).
fn app(
    input: &Input,
    observed: &Observed,
    db: Option<DbKind>,
    status: &mut BestieStatus,
    now: &Time,
) -> (Step, Stage) {
    let wanted = BestieTemplate::of(input.spec, input.name, db);
    let live = observed.app.as_ref();
    // A hold written before templates names a version only: it holds while that version is asked for,
    // as it did then.
    if status.failed_hash.is_none()
        && let Some(version) = status.failed_version.as_deref()
    {
        if version == wanted.version {
            status.failed_hash = Some(wanted.hash.clone());
        } else {
            status.failed_version = None;
        }
    }
    // A hold lasts until the template changes: another template (even the failed one again, later) is a
    // new attempt.
    if status
        .failed_hash
        .as_deref()
        .is_some_and(|f| f != wanted.hash)
    {
        status.failed_hash = None;
        status.failed_version = None;
    }
    let mut failed = status.failed_hash.as_deref() == Some(wanted.hash.as_str());
    // A new failure: the wanted template's rollout passed its progress deadline.
    if !failed && live.is_some_and(|a| a.runs(&wanted) && a.current && a.stalled) {
        failed = true;
        status.failed_hash = Some(wanted.hash.clone());
        status.failed_version = Some(wanted.version.clone());
    }
    let healthy = last_healthy(status, &wanted);
    // Upgrade windows hold a new template: not a rollback, not the last healthy one (a revert), not
    // one already rolling out (a window that closes mid-rollout lets it finish).
    let new_template = !failed
        && healthy.as_ref().is_none_or(|h| h.hash != wanted.hash)
        && !live.is_some_and(|a| a.runs(&wanted));
    let dependencies = input.dependencies_waiting.as_ref().map(|w| {
        let why = format!("waits for dependencies: {w}");
        (reason::WAITING_FOR_DEPENDENCIES, why, 3)
    });
    let windows = || {
        window_gate(input, &wanted, now)
            .map(|(why, recheck)| (reason::WAITING_FOR_WINDOW, why, recheck))
    };
    let waits = new_template
        .then(|| dependencies.or_else(windows))
        .flatten();
    status.conditions.retain(|c| {
        let waiting = [reason::WAITING_FOR_WINDOW, reason::WAITING_FOR_DEPENDENCIES];
        !waiting.contains(&c.type_.as_str()) || waits.as_ref().is_some_and(|w| w.0 == c.type_)
    });
    if let Some((type_, why, recheck)) = waits {
        let version = wanted.label(healthy.as_ref());
        let message = format!("{version} {why}");
        set_condition(
            &mut status.conditions,
            Condition {
                type_: type_.into(),
                status: "True".into(),
                reason: type_.into(),
                message,
                last_transition_time: now.clone(),
                observed_generation: input.generation,
            },
        );
        let replicas = app_replicas(input.spec, live.map(|a| a.replicas));
        // What ran before keeps running; a first install creates nothing yet.
        let mut step = match &healthy {
            Some(h) => apply_step(
                observed,
                Part::AppDeployment,
                app_deployment(input, h),
                Some(replicas),
            ),
            None => Step::idle(),
        };
        step.requeue = step.requeue.combine(Requeue::After(recheck));
        return (
            step,
            Stage::WaitingForWindow {
                version,
                why,
                reason: type_,
            },
        );
    }
    if new_template && !input.windows.is_empty() && input.promote_now.is_some() {
        let outside = crate::window::state(input.windows, crate::window::Moment::Start, now.0)
            != crate::window::State::Open;
        if outside {
            status.window_override = Some(wanted.hash.clone());
        }
    }
    let rollback_to = healthy.clone().filter(|t| failed && t.hash != wanted.hash);
    let running = rollback_to.clone().unwrap_or_else(|| wanted.clone());
    let replicas = app_replicas(input.spec, live.map(|a| a.replicas));
    let complete = live.is_some_and(|a| a.complete_at(&running));
    if complete {
        status.appversion = Some(running.version.clone());
        if !failed {
            status.last_healthy_version = Some(wanted.version.clone());
            status.last_healthy_template = Some(wanted.clone());
        }
    }
    // How messages name the spec's template: beside the last healthy one.
    let wanted_label = || wanted.label(healthy.as_ref());
    let stage = match (failed, rollback_to, complete) {
        (false, _, true) => Stage::Serving {
            version: running.version.clone(),
            replicas,
        },
        (false, _, false) => Stage::RollingOut {
            version: wanted_label(),
            updated: live.filter(|a| a.runs(&running)).map_or(0, |a| a.updated),
            ready: live.filter(|a| a.runs(&running)).map_or(0, |a| a.ready),
            replicas,
        },
        (true, Some(to), false) => Stage::RollingBack {
            failed: wanted_label(),
            to: to.describe(),
        },
        (true, Some(to), true) => Stage::RolledBack {
            failed: wanted_label(),
            running: to.describe(),
        },
        (true, None, _) => Stage::FailedWithoutRollback {
            failed: wanted_label(),
        },
    };
    let deployment = app_deployment(input, &running);
    let mut step = apply_step(observed, Part::AppDeployment, deployment, Some(replicas));
    if matches!(stage, Stage::RollingOut { .. } | Stage::RollingBack { .. }) {
        // The Deployment's status changes wake us; the requeue is a backstop for a missed watch event.
        step.requeue = Requeue::After(30);
    }
    (step, stage)
}

/// The window gate of a new template at `now`: why it waits and when to look again, or `None` when
/// it may roll out (no window closed, or `bosun promote --now` named it).
fn window_gate(input: &Input, wanted: &BestieTemplate, now: &Time) -> Option<(String, u64)> {
    let overridden = input
        .promote_now
        .is_some_and(|v| v == wanted.version || v == wanted.hash);
    if overridden {
        return None;
    }
    crate::window::waiting(input.windows, crate::window::Moment::Start, now.0)
}

fn app_port(spec: &BestieSpec) -> i32 {
    spec.port.unwrap_or(DEFAULT_PORT)
}

/// The app Deployment running `template` (and nothing else of the spec in its pods), without
/// `spec.replicas` (see [`stamp`]).
fn app_deployment(input: &Input, template: &BestieTemplate) -> Value {
    let part = Part::AppDeployment;
    let port = template.port;
    let version = template.version.as_str();
    let mut pod_labels = labels(input, part);
    pod_labels[LABEL_VERSION] = version.into();
    let mut container = json!({
        "name": "app",
        "image": template.image_ref(),
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/", "port": port}, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"tcpSocket": {"port": port}, "initialDelaySeconds": 15, "periodSeconds": 10},
    });
    if let Some(secret) = &template.database_secret {
        container["env"] = json!(database_env(secret));
    }
    let mut d = object(
        input,
        part,
        "spec",
        json!({
            "progressDeadlineSeconds": input.progress_deadline_seconds,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "selector": {"matchLabels": {LABEL_INSTANCE: input.name, LABEL_COMPONENT: part.component()}},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {"containers": [container]},
            },
        }),
    );
    d["metadata"]["labels"][LABEL_VERSION] = version.into();
    d["metadata"]["annotations"][ANNOTATION_TEMPLATE_HASH] = template.hash.clone().into();
    d
}

fn app_service(input: &Input) -> Value {
    let part = Part::AppService;
    object(
        input,
        part,
        "spec",
        json!({
            "selector": {LABEL_INSTANCE: input.name, LABEL_COMPONENT: part.component()},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        }),
    )
}

/// The Ingress, or the Route where OpenShift's API is served (and then no Ingress).
fn exposure(input: &Input, observed: &Observed) -> Step {
    let service = Part::AppService.name(input.name);
    if observed.apis.route {
        let mut spec = json!({
            "to": {"kind": "Service", "name": service, "weight": 100},
            "port": {"targetPort": "http"},
        });
        if let Some(host) = &input.spec.host {
            spec["host"] = host.clone().into();
        }
        join(vec![
            apply_step(
                observed,
                Part::Route,
                object(input, Part::Route, "spec", spec),
                None,
            ),
            delete_step(observed, Part::Ingress),
        ])
    } else {
        let mut rule = json!({"http": {"paths": [{
            "path": "/",
            "pathType": "Prefix",
            "backend": {"service": {"name": service, "port": {"name": "http"}}},
        }]}});
        if let Some(host) = &input.spec.host {
            rule["host"] = host.clone().into();
        }
        apply_step(
            observed,
            Part::Ingress,
            object(input, Part::Ingress, "spec", json!({"rules": [rule]})),
            None,
        )
    }
}

fn hpa(input: &Input, observed: &Observed) -> Step {
    match hpa_bounds(input.spec) {
        Some((min, max)) => apply_step(
            observed,
            Part::Hpa,
            object(
                input,
                Part::Hpa,
                "spec",
                json!({
                    "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": Part::AppDeployment.name(input.name)},
                    "minReplicas": min,
                    "maxReplicas": max,
                    "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}],
                }),
            ),
            None,
        ),
        None => delete_step(observed, Part::Hpa),
    }
}

/// `pod : phase : image`, one line a pod, ordered by name so that an unchanged set writes nothing.
pub fn pod_lines(pods: &[PodObs]) -> Vec<String> {
    let mut lines: Vec<String> = pods
        .iter()
        .map(|p| format!("{} : {} : {}", p.name, p.phase, p.image))
        .collect();
    lines.sort();
    lines
}

/// (Ready status, Ready reason, Progressing status, Progressing reason, message) of a stage.
fn render(stage: &Stage, deadline: i32) -> (bool, &'static str, bool, &'static str, String) {
    use reason::*;
    match stage {
        Stage::WaitingForDatabase => (
            false,
            WAITING_FOR_DATABASE,
            true,
            WAITING_FOR_DATABASE,
            "waiting for the database to become ready".into(),
        ),
        Stage::Seeding => (
            false,
            SEEDING_DATABASE,
            true,
            SEEDING_DATABASE,
            "the seed Job is running".into(),
        ),
        Stage::SeedFailed { reason } => (
            false,
            SEED_FAILED,
            false,
            SEED_FAILED,
            format!(
                "the seed Job failed ({reason}); the app waits for it. Fix the cause, then delete the Job \
                 to run it again"
            ),
        ),
        Stage::WaitingForWindow {
            version,
            why,
            reason,
        } => (false, reason, true, reason, format!("{version} {why}")),
        Stage::RollingOut {
            version,
            updated,
            ready,
            replicas,
        } => (
            false,
            ROLLING_OUT,
            true,
            ROLLING_OUT,
            format!("rolling out {version}: {updated}/{replicas} pods updated, {ready} ready"),
        ),
        Stage::RollingBack { failed, to } => (
            false,
            ROLLOUT_FAILED,
            true,
            ROLLING_BACK,
            format!(
                "{failed} did not become ready within {deadline}s (ProgressDeadlineExceeded); rolling \
                 back to the last healthy template, {to}"
            ),
        ),
        Stage::RolledBack { failed, running } => (
            false,
            ROLLOUT_FAILED,
            false,
            ROLLOUT_FAILED,
            format!(
                "{failed} did not become ready within {deadline}s and was rolled back to the last healthy \
                 template; {running} is serving. It is not retried until the spec's image, version, port or \
                 database changes"
            ),
        ),
        Stage::FailedWithoutRollback { failed } => (
            false,
            ROLLOUT_FAILED,
            false,
            ROLLOUT_FAILED,
            format!(
                "{failed} did not become ready within {deadline}s and there is no earlier healthy version \
                 to roll back to; set spec.version (or image, port) to a working one"
            ),
        ),
        Stage::NameTaken { objects } => (
            false,
            NAME_TAKEN,
            false,
            NAME_TAKEN,
            format!(
                "{} already exist(s) and not owned by this Bestie; Bosun leaves them alone. Delete or rename \
                 them, and Bosun creates its own",
                objects.join(", ")
            ),
        ),
        Stage::Serving { version, replicas } => (
            true,
            ROLLOUT_COMPLETE,
            false,
            ROLLOUT_COMPLETE,
            format!("{version} is serving: {replicas}/{replicas} pods ready"),
        ),
    }
}

fn is_warning(reason: &str) -> bool {
    reason == reason::ROLLOUT_FAILED
        || reason == reason::SEED_FAILED
        || reason == reason::NAME_TAKEN
}

/// Sets `Ready` and `Progressing` from the stage (other writers' conditions are kept) and returns an Event
/// for each condition whose status or reason changed, one per reason.
fn set_conditions(
    status: &mut BestieStatus,
    stage: &Stage,
    input: &Input,
    now: &Time,
) -> Vec<Note> {
    let (ready, ready_reason, progressing, progressing_reason, message) =
        render(stage, input.progress_deadline_seconds);
    let mut events: Vec<Note> = Vec::new();
    for (type_, on, reason) in [
        (CONDITION_READY, ready, ready_reason),
        (CONDITION_PROGRESSING, progressing, progressing_reason),
    ] {
        let changed = set_condition(
            &mut status.conditions,
            Condition {
                type_: type_.into(),
                status: if on { "True" } else { "False" }.into(),
                reason: reason.into(),
                message: message.clone(),
                last_transition_time: now.clone(),
                observed_generation: input.generation,
            },
        );
        if changed && !events.iter().any(|e| e.reason == reason) {
            events.push(Note {
                warning: is_warning(reason),
                reason,
                message: message.clone(),
            });
        }
    }
    events
}

/// Puts `new` in place of the condition of its type, keeping `lastTransitionTime` unless the status
/// flipped. Returns whether the status or reason changed.
pub fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            let changed = old.status != new.status || old.reason != new.reason;
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
            changed
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

/// Whether a Crunchy `PostgresCluster`'s status says an instance is ready.
pub fn postgres_cluster_ready(status: Option<&Value>) -> bool {
    status
        .and_then(|s| s.get("instances"))
        .and_then(Value::as_array)
        .is_some_and(|instances| {
            instances.iter().any(|i| {
                i.get("readyReplicas")
                    .and_then(Value::as_i64)
                    .is_some_and(|r| r > 0)
            })
        })
}

/// Parses [`ANNOTATION_PROGRESS_DEADLINE`]: `Err` names what is wrong with the value.
pub fn progress_deadline(annotation: Option<&str>) -> Result<i32, String> {
    match annotation {
        None => Ok(DEFAULT_PROGRESS_DEADLINE_SECONDS),
        Some(v) => match v.trim().parse::<i32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!(
                "annotation {ANNOTATION_PROGRESS_DEADLINE}: {v:?} is not a whole number of seconds ≥ 1; \
                 using {DEFAULT_PROGRESS_DEADLINE_SECONDS}"
            )),
        },
    }
}

#[cfg(test)]
mod tests;
