//! The Bestie controller's executor: observe what a Bestie owns, ask `bosun_core::engine::bestie::plan`,
//! carry out its actions with server-side apply (field manager `bosun-bestie`), write status only when it
//! changed, and raise the planner's Events after the status write.
//!
//! The flow per reconcile: discover optional APIs (Crunchy `PostgresCluster`, OpenShift `Route`; re-checked
//! every [`DISCOVERY_TTL`]) → observe each owned object by its deterministic name, and the app's pods →
//! plan (pure) → act → report. Every owned object goes through one apply path, addressed by the planner's
//! `Part`; no per-kind apply loops here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_core::engine::bestie::{
    self as planner, Action, Apis, AppObs, DbObs, Input, JobObs, LABEL_COMPONENT, LABEL_INSTANCE,
    LABEL_MANAGED_BY, LABEL_VERSION, Live, Observed, Part, PodObs, Requeue,
};
use bosun_core::model::{Bestie, BestieStatus};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::{self, Action as RequeueAction, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::Mutex;
use tracing::{info, warn};

/// How long a discovery answer is trusted before the optional APIs are looked up again.
pub const DISCOVERY_TTL: Duration = Duration::from_secs(30);
/// A reconcile with nothing pending still looks again this often (a backstop for missed watch events).
const RESYNC: Duration = Duration::from_secs(300);
/// Besties reconciled at once, at most.
const CONCURRENT_RECONCILES: u16 = 64;
/// Length of a generated database password (alphanumeric: about 190 bits).
const PASSWORD_LEN: usize = 32;

/// What went wrong reconciling one Bestie. The variant names the step; none carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum BestieError {
    #[error("discovering whether the API {api} is served (for {bestie}): {error}; retrying")]
    Discover {
        bestie: String,
        api: String,
        #[source]
        error: kube::Error,
    },
    #[error("reading {kind} {name} of {bestie}: {error}; retrying")]
    Observe {
        bestie: String,
        kind: &'static str,
        name: String,
        #[source]
        error: kube::Error,
    },
    #[error(
        "{verb} {kind} {name} of {bestie}: {error} (check Bosun's RBAC for {kind} and that nothing else owns the object); retrying"
    )]
    Act {
        bestie: String,
        verb: &'static str,
        kind: &'static str,
        name: String,
        #[source]
        error: kube::Error,
    },
    #[error("writing the status of {bestie}: {error}; retrying")]
    WriteStatus {
        bestie: String,
        #[source]
        error: kube::Error,
    },
}

impl BestieError {
    /// Whether trying again may be enough ([`crate::backoff::kube_heals`]).
    pub fn heals(&self) -> bool {
        match self {
            BestieError::Discover { error, .. }
            | BestieError::Observe { error, .. }
            | BestieError::Act { error, .. }
            | BestieError::WriteStatus { error, .. } => crate::backoff::kube_heals(error),
        }
    }
}

/// Exactly the permissions the controller uses, in the namespaces it acts in (a Role there, or a
/// ClusterRole when it watches every namespace). Discovery of the optional APIs needs only what every
/// authenticated user has (`system:discovery`).
pub fn policy_rules() -> Vec<k8s_openapi::api::rbac::v1::PolicyRule> {
    let rule =
        |group: &str, resources: &[&str], verbs: &[&str]| k8s_openapi::api::rbac::v1::PolicyRule {
            api_groups: Some(vec![group.into()]),
            resources: Some(resources.iter().map(|r| r.to_string()).collect()),
            verbs: verbs.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        };
    vec![
        rule("pets.bestie.com", &["besties"], &["get", "list", "watch"]),
        rule("pets.bestie.com", &["besties/status"], &["patch"]),
        rule(
            "apps",
            &["deployments", "statefulsets"],
            &["get", "list", "watch", "create", "patch"],
        ),
        rule("batch", &["jobs"], &["get", "list", "watch", "create"]),
        rule("", &["pods"], &["list", "watch"]),
        rule("", &["services"], &["get", "create", "patch"]),
        rule("", &["secrets"], &["get", "create"]),
        rule(
            "networking.k8s.io",
            &["ingresses"],
            &["get", "create", "patch", "delete"],
        ),
        rule(
            "autoscaling",
            &["horizontalpodautoscalers"],
            &["get", "create", "patch", "delete"],
        ),
        rule(
            "route.openshift.io",
            &["routes"],
            &["get", "create", "patch"],
        ),
        rule(
            "postgres-operator.crunchydata.com",
            &["postgresclusters"],
            &["get", "create", "patch"],
        ),
        rule("events.k8s.io", &["events"], &["create", "patch"]),
    ]
}

use crate::engine::SourceWindows;

struct Ctx {
    client: Client,
    recorder: Recorder,
    apis: Mutex<Option<(Instant, Apis)>>,
    discovery_ttl: Duration,
    /// The upgrade windows of each source, combined with each of its Besties' own.
    source_windows: SourceWindows,
    /// The backoff of each Bestie whose last reconcile failed.
    retries: crate::backoff::PerObject,
}

use crate::cluster::api_in as api;

/// Runs the Bestie controller until the stream ends, over every namespace or one.
pub async fn run(client: Client, namespace: Option<String>) {
    run_with(client, namespace, DISCOVERY_TTL).await
}

/// [`run`], with the upgrade windows `bosun run`'s config sets for whole sources.
pub async fn run_for_sources(
    client: Client,
    namespace: Option<String>,
    source_windows: SourceWindows,
) {
    serve(client, namespace, DISCOVERY_TTL, source_windows).await
}

/// [`run`], with the optional APIs looked up again every `discovery_ttl` instead of [`DISCOVERY_TTL`].
pub async fn run_with(client: Client, namespace: Option<String>, discovery_ttl: Duration) {
    serve(client, namespace, discovery_ttl, SourceWindows::default()).await
}

async fn serve(
    client: Client,
    namespace: Option<String>,
    discovery_ttl: Duration,
    source_windows: SourceWindows,
) {
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        recorder: Recorder::new(client.clone(), Reporter::from(planner::FIELD_MANAGER)),
        apis: Mutex::new(None),
        discovery_ttl,
        source_windows,
        retries: Default::default(),
    });
    let ns = namespace.as_deref();
    let app_pods = watcher::Config::default().labels(&format!(
        "{LABEL_MANAGED_BY}={},{LABEL_COMPONENT}={}",
        bosun_core::sync::MANAGED_BY,
        Part::AppDeployment.component()
    ));
    // Only what the controller made is watched and cached, not every Deployment of the cluster.
    let made = || {
        watcher::Config::default().labels(&format!(
            "{LABEL_MANAGED_BY}={}",
            bosun_core::sync::MANAGED_BY
        ))
    };
    Controller::new(api::<Bestie>(&client, ns), watcher::Config::default())
        .with_config(controller::Config::default().concurrency(CONCURRENT_RECONCILES))
        .owns(api::<Deployment>(&client, ns), made())
        .owns(api::<StatefulSet>(&client, ns), made())
        .owns(api::<Job>(&client, ns), made())
        .watches(api::<Pod>(&client, ns), app_pods, |pod: Pod| {
            let ns = pod.namespace();
            pod.labels().get(LABEL_INSTANCE).map(|name| {
                ObjectRef::<Bestie>::new(name).within(ns.as_deref().unwrap_or("default"))
            })
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                warn!(error = %e, "Bestie reconcile failed");
            }
        })
        .await;
}

/// Each Bestie backs off on its own, slowly when the error needs a human ([`BestieError::heals`]).
fn error_policy(b: Arc<Bestie>, error: &BestieError, ctx: Arc<Ctx>) -> RequeueAction {
    let heals = error.heals();
    let retry_in = ctx.retries.failed(&retry_key(&b), heals);
    warn!(%error, heals, ?retry_in, "will retry");
    RequeueAction::requeue(retry_in)
}

fn retry_key(b: &Bestie) -> String {
    format!("{}/{}", b.namespace().unwrap_or_default(), b.name_any())
}

fn resource(part: Part) -> ApiResource {
    let g = part.gvk();
    ApiResource {
        group: g.group.into(),
        version: g.version.into(),
        api_version: g.api_version(),
        kind: g.kind.into(),
        plural: g.plural.into(),
    }
}

fn dynamic(client: &Client, ns: &str, part: Part) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, &resource(part))
}

/// Whether `group_version` serves `plural`; a 404 means the API is not installed.
async fn serves(client: &Client, group_version: &str, plural: &str) -> Result<bool, kube::Error> {
    match client.list_api_group_resources(group_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == plural)),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(e) => Err(e),
    }
}

impl Ctx {
    async fn apis(&self, bestie: &str) -> Result<Apis, BestieError> {
        let mut cached = self.apis.lock().await;
        if let Some((at, apis)) = *cached
            && at.elapsed() < self.discovery_ttl
        {
            return Ok(apis);
        }
        let mut apis = Apis::default();
        for (gvk, found) in [
            (planner::POSTGRES_CLUSTER, &mut apis.postgres_cluster),
            (planner::ROUTE, &mut apis.route),
        ] {
            *found = serves(&self.client, &gvk.api_version(), gvk.plural)
                .await
                .map_err(|error| BestieError::Discover {
                    bestie: bestie.into(),
                    api: gvk.api_version(),
                    error,
                })?;
        }
        *cached = Some((Instant::now(), apis));
        Ok(apis)
    }
}

fn applied_hash(o: &DynamicObject) -> Option<String> {
    o.annotations()
        .get(planner::ANNOTATION_APPLIED_HASH)
        .cloned()
}

fn observe_app(d: &Deployment) -> AppObs {
    let status = d.status.clone().unwrap_or_default();
    AppObs {
        version: d
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get(LABEL_VERSION))
            .cloned()
            .unwrap_or_default(),
        template_hash: d
            .annotations()
            .get(planner::ANNOTATION_TEMPLATE_HASH)
            .cloned(),
        image: d
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.clone())
            .unwrap_or_default(),
        replicas: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        current: status.observed_generation.is_some()
            && status.observed_generation >= d.metadata.generation,
        total: status.replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        ready: status.ready_replicas.unwrap_or(0),
        stalled: status.conditions.unwrap_or_default().iter().any(|c| {
            c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        }),
    }
}

fn observe_job(j: &Job) -> JobObs {
    let status = j.status.clone().unwrap_or_default();
    if status.succeeded.unwrap_or(0) > 0 {
        return JobObs::Succeeded;
    }
    match status
        .conditions
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "Failed" && c.status == "True")
    {
        Some(c) => JobObs::Failed {
            reason: c.reason.clone().unwrap_or_else(|| "Failed".into()),
        },
        None => JobObs::Running,
    }
}

fn parse<K: Resource + serde::de::DeserializeOwned>(o: &DynamicObject) -> Option<K> {
    o.clone().try_parse::<K>().ok()
}

async fn observe(
    client: &Client,
    ns: &str,
    name: &str,
    uid: &str,
    apis: Apis,
) -> Result<Observed, BestieError> {
    let mut objects: BTreeMap<Part, DynamicObject> = BTreeMap::new();
    let mut foreign = std::collections::BTreeSet::new();
    for part in Part::ALL {
        let served = match part {
            Part::PostgresCluster => apis.postgres_cluster,
            Part::Route => apis.route,
            _ => true,
        };
        if !served {
            continue;
        }
        let object_name = part.name(name);
        let objects_api = dynamic(client, ns, part);
        // The Secret's metadata only: its password never passes through the controller after creation.
        let found = match part {
            Part::DatabaseSecret => objects_api.get_metadata_opt(&object_name).await.map(|m| {
                m.map(|m| {
                    let mut o = DynamicObject::new(&object_name, &resource(part));
                    o.metadata = m.metadata;
                    o
                })
            }),
            _ => objects_api.get_opt(&object_name).await,
        }
        .map_err(|error| BestieError::Observe {
            bestie: name.into(),
            kind: part.gvk().kind,
            name: object_name,
            error,
        })?;
        // Only what we own counts: a same-named object of someone else is never written.
        if let Some(o) = found {
            if o.owner_references()
                .iter()
                .any(|r| r.uid == uid && r.controller == Some(true))
            {
                objects.insert(part, o);
            } else {
                foreign.insert(part);
            }
        }
    }
    let database = if let Some(pg) = objects.get(&Part::PostgresCluster) {
        if planner::postgres_cluster_ready(pg.data.get("status")) {
            DbObs::Ready
        } else {
            DbObs::Starting
        }
    } else if let Some(sts) = objects.get(&Part::DatabaseStatefulSet) {
        let ready = parse::<StatefulSet>(sts)
            .and_then(|s| s.status)
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        if ready > 0 {
            DbObs::Ready
        } else {
            DbObs::Starting
        }
    } else {
        DbObs::Absent
    };
    let seed_job = objects
        .get(&Part::SeedJob)
        .and_then(parse::<Job>)
        .map_or(JobObs::Absent, |j| observe_job(&j));
    let app = objects
        .get(&Part::AppDeployment)
        .and_then(parse::<Deployment>)
        .map(|d| observe_app(&d));
    let selector = format!(
        "{LABEL_INSTANCE}={name},{LABEL_COMPONENT}={}",
        Part::AppDeployment.component()
    );
    let pods = Api::<Pod>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|error| BestieError::Observe {
            bestie: name.into(),
            kind: "Pod",
            name: selector.clone(),
            error,
        })?
        .items
        .into_iter()
        .map(|p| PodObs {
            name: p.name_any(),
            phase: p
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".into()),
            image: p
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default(),
        })
        .collect();
    Ok(Observed {
        apis,
        live: objects
            .iter()
            .map(|(p, o)| {
                (
                    *p,
                    Live {
                        applied_hash: applied_hash(o),
                    },
                )
            })
            .collect(),
        foreign,
        database,
        seed_job,
        app,
        pods,
    })
}

fn generate_password() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), PASSWORD_LEN)
}

async fn act(client: &Client, input: &Input<'_>, action: &Action) -> Result<(), BestieError> {
    let ns = input.namespace;
    let err = |verb: &'static str, part: Part| {
        let bestie = input.name.to_string();
        move |error| BestieError::Act {
            bestie,
            verb,
            kind: part.gvk().kind,
            name: part.name(input.name),
            error,
        }
    };
    let pp = PatchParams::apply(planner::FIELD_MANAGER).force();
    match action {
        Action::Apply { part, object } => {
            dynamic(client, ns, *part)
                .patch(&part.name(input.name), &pp, &Patch::Apply(object))
                .await
                .map_err(err("applying", *part))?;
            info!(bestie = %input.name, namespace = %ns, kind = part.gvk().kind, name = %part.name(input.name), "applied");
        }
        Action::Create { part, object } => create(client, input, *part, object.clone()).await?,
        Action::CreateDatabaseSecret => {
            let secret = planner::database_secret(input, &generate_password());
            create(client, input, Part::DatabaseSecret, secret).await?;
        }
        Action::Delete { part } => {
            match dynamic(client, ns, *part)
                .delete(&part.name(input.name), &DeleteParams::background())
                .await
            {
                Ok(_) => {
                    info!(bestie = %input.name, namespace = %ns, kind = part.gvk().kind, name = %part.name(input.name), "deleted")
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(err("deleting", *part)(e)),
            }
        }
    }
    Ok(())
}

/// Creates `object` unless it exists (409 is success: create-only objects are never changed).
async fn create(
    client: &Client,
    input: &Input<'_>,
    part: Part,
    object: serde_json::Value,
) -> Result<(), BestieError> {
    let name = part.name(input.name);
    let act_err = |error| BestieError::Act {
        bestie: input.name.into(),
        verb: "creating",
        kind: part.gvk().kind,
        name: name.clone(),
        error,
    };
    let object: DynamicObject =
        serde_json::from_value(object).map_err(|e| act_err(kube::Error::SerdeError(e)))?;
    match dynamic(client, input.namespace, part)
        .create(&PostParams::default(), &object)
        .await
    {
        Ok(_) => {
            info!(bestie = %input.name, namespace = %input.namespace, kind = part.gvk().kind, %name, "created");
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(act_err(e)),
    }
}

/// The status as this controller owns it: conditions of other writers (`SourceReady`) left out. The
/// waiting conditions are its own: `bosun promote --now` reads `WaitingForWindow`, and a wait that
/// ended leaves the applied list, which removes it.
fn owned_status(status: &BestieStatus) -> BestieStatus {
    let mut s = status.clone();
    s.conditions.retain(|c| {
        [
            planner::CONDITION_READY,
            planner::CONDITION_PROGRESSING,
            planner::reason::WAITING_FOR_WINDOW,
            planner::reason::WAITING_FOR_DEPENDENCIES,
        ]
        .contains(&c.type_.as_str())
    });
    s
}

async fn reconcile(bestie: Arc<Bestie>, ctx: Arc<Ctx>) -> Result<RequeueAction, BestieError> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "reconcile_bestie",
        bestie = %bestie.name_any(),
        namespace = %bestie.namespace().unwrap_or_default(),
        version = %bosun_core::shown::Cut(&bestie.spec.version),
        revision = %bestie
            .annotations()
            .get(bosun_core::sync::ANNOTATION_REVISION)
            .map_or("-", String::as_str),
    );
    let key = retry_key(&bestie);
    let result = reconcile_in_span(bestie, ctx.clone())
        .instrument(span)
        .await;
    if result.is_ok() {
        ctx.retries.succeeded(&key);
    }
    result
}

async fn reconcile_in_span(
    bestie: Arc<Bestie>,
    ctx: Arc<Ctx>,
) -> Result<RequeueAction, BestieError> {
    let name = bestie.name_any();
    let ns = bestie.namespace().unwrap_or_else(|| "default".into());
    let client = &ctx.client;
    let deadline = match planner::progress_deadline(
        bestie
            .annotations()
            .get(planner::ANNOTATION_PROGRESS_DEADLINE)
            .map(String::as_str),
    ) {
        Ok(d) => d,
        Err(why) => {
            warn!(bestie = %name, namespace = %ns, "{why}");
            planner::DEFAULT_PROGRESS_DEADLINE_SECONDS
        }
    };
    let owner = bestie
        .controller_owner_ref(&())
        .expect("a Bestie read from the API has a uid");
    let status = bestie.status.clone().unwrap_or_default();
    let mut windows = bestie.spec.upgrade_windows.clone();
    if let Some(extra) = bestie
        .labels()
        .get(bosun_core::names::LABEL_SOURCE)
        .and_then(|s| ctx.source_windows.get(s))
    {
        windows.extend(extra.iter().cloned());
    }
    let dependencies_waiting = crate::engine::depends::waiting_for(
        client,
        &ns,
        bestie
            .annotations()
            .get(bosun_core::names::ANNOTATION_REVISION)
            .map(String::as_str),
        &bestie.spec.depends_on,
    )
    .await
    .map_err(|error| BestieError::Observe {
        bestie: name.clone(),
        kind: "dependency (spec.dependsOn)",
        name: bestie
            .spec
            .depends_on
            .iter()
            .map(|d| d.name.clone())
            .collect::<Vec<_>>()
            .join(", "),
        error,
    })?;
    let input = Input {
        name: &name,
        namespace: &ns,
        generation: bestie.metadata.generation,
        spec: &bestie.spec,
        status: &status,
        owner: &owner,
        progress_deadline_seconds: deadline,
        windows: &windows,
        promote_now: bestie
            .annotations()
            .get(bosun_core::names::ANNOTATION_PROMOTE_NOW)
            .map(String::as_str),
        dependencies_waiting,
    };

    // discover, observe
    let apis = ctx.apis(&name).await?;
    let observed = observe(client, &ns, &name, &owner.uid, apis).await?;

    // decide
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let plan = planner::plan(&input, &observed, &now);

    // act
    for action in &plan.actions {
        act(client, &input, action).await?;
    }

    // report: status only when it changed, Events after the write succeeded
    if bestie.status.as_ref() != Some(&plan.status) {
        let body = json!({
            "apiVersion": "pets.bestie.com/v1",
            "kind": "Bestie",
            "metadata": {"name": name},
            "status": owned_status(&plan.status),
        });
        Api::<Bestie>::namespaced(client.clone(), &ns)
            .patch_status(
                &name,
                &PatchParams::apply(planner::FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|error| BestieError::WriteStatus {
                bestie: name.clone(),
                error,
            })?;
    }
    for note in &plan.events {
        info!(bestie = %name, namespace = %ns, reason = note.reason, message = %note.message, "Bestie transition");
        let event = Event {
            type_: if note.warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: note.reason.into(),
            note: Some(note.message.clone()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &bestie.object_ref(&())).await {
            warn!(error = %e, "publishing an Event failed");
        }
    }
    Ok(match plan.requeue {
        Requeue::After(secs) => RequeueAction::requeue(Duration::from_secs(secs.max(1))),
        Requeue::Idle => RequeueAction::requeue(RESYNC),
    })
}
