//! The upgrade engine's executor for ManagedApplications: observe the app's Deployments and migration
//! Job, ask `bosun_core::engine::app::decide`, carry out its actions with server-side apply, write status
//! only when it changed, and raise an Event per phase transition.
//!
//! Work in progress toward issue [D]: Rolling, Recreate and canary steps run; active HTTP health checks,
//! BlueGreen, down-migrations and Bestie come next.

use std::sync::Arc;
use std::time::Duration;

use bosun_core::engine::app::{self, Action, JobObs, Observed, Role, WorkloadObs};
use bosun_core::model::{ManagedApplication, StrategyType};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

/// The field manager of what the engine applies.
pub const FIELD_MANAGER: &str = "bosun-engine";
/// Annotation a human sets (through `bosun promote`) to the index of the canary step to promote.
pub const ANNOTATION_PROMOTE_STEP: &str = "bosun.dev/promote-step";

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
}

struct Ctx {
    client: Client,
    recorder: Recorder,
}

/// Runs the ManagedApplication controller until the stream ends, over every namespace or one.
pub async fn run(client: Client, namespace: Option<String>) {
    let recorder = Recorder::new(client.clone(), Reporter::from("bosun"));
    let ctx = Arc::new(Ctx {
        client: client.clone(),
        recorder,
    });
    fn api<K>(client: &Client, ns: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as Resource>::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let ns = namespace.as_deref();
    Controller::new(
        api::<ManagedApplication>(&client, ns),
        watcher::Config::default(),
    )
    .owns(api::<Deployment>(&client, ns), watcher::Config::default())
    .owns(api::<Job>(&client, ns), watcher::Config::default())
    .run(reconcile, error_policy, ctx)
    .for_each(|r| async move {
        if let Err(e) = r {
            warn!(error = %e, "reconcile failed");
        }
    })
    .await;
}

fn error_policy(_app: Arc<ManagedApplication>, error: &EngineError, _ctx: Arc<Ctx>) -> Requeue {
    warn!(%error, "will retry");
    Requeue::requeue(Duration::from_secs(5))
}

/// The deterministic name of an app's migration Job for a version: `<app>-migration-<version>`, made a
/// valid name (lowercase; `_` and other characters become `-`; at most 63 characters).
pub fn migration_job_name(app: &str, version: &str) -> String {
    let v: String = version
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut name = format!("{app}-migration-{v}");
    name.truncate(63);
    name.trim_end_matches(['-', '.']).to_string()
}

fn workload_name(app: &str, role: Role) -> String {
    match role {
        Role::Stable => app.to_string(),
        Role::Canary => format!("{app}-canary"),
    }
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::Stable => "stable",
        Role::Canary => "canary",
    }
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
    let stalled = status.conditions.unwrap_or_default().iter().any(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    WorkloadObs {
        version: d
            .labels()
            .get("bosun.dev/version")
            .cloned()
            .unwrap_or_default(),
        replicas: spec_replicas,
        ready,
        stalled,
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

    // observe
    let stable = deployments
        .get_opt(&workload_name(&name, Role::Stable))
        .await
        .map_err(observe_err)?;
    let canary = deployments
        .get_opt(&workload_name(&name, Role::Canary))
        .await
        .map_err(observe_err)?;
    let job = jobs
        .get_opt(&migration_job_name(&name, &app.spec.version))
        .await
        .map_err(observe_err)?;
    let migration = match job.and_then(|j| j.status) {
        None => JobObs::Absent,
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
    };
    let status = app.status.clone().unwrap_or_default();
    let promoted = app
        .annotations()
        .get(ANNOTATION_PROMOTE_STEP)
        .and_then(|v| v.parse::<i32>().ok())
        .is_some_and(|s| Some(s) == status.step_index);
    let observed = Observed {
        stable: stable.as_ref().map(observe_deployment),
        canary: canary.as_ref().map(observe_deployment),
        migration,
        // Readiness probes gate the pods; active HTTP checks come next ([D]).
        healthy: Some(true),
        promoted,
    };

    // decide
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let decision = app::decide(&app.spec, &status, &observed, &now);

    // act
    let owner = app
        .controller_owner_ref(&())
        .expect("a ManagedApplication from the API has a uid");
    let pp = PatchParams::apply(FIELD_MANAGER).force();
    ensure_service(&client, &app, &ns, &owner, &pp).await?;
    for action in &decision.actions {
        let act_err = |error| EngineError::Act {
            app: name.clone(),
            action: format!("{action:?}"),
            error,
        };
        match action {
            Action::RunMigration { version } => {
                let job = migration_job(&app, version, &owner);
                jobs.patch(
                    &migration_job_name(&name, version),
                    &pp,
                    &Patch::Apply(&job),
                )
                .await
                .map_err(act_err)?;
            }
            Action::Run {
                role,
                version,
                replicas,
            } => {
                let mut d = deployment(&app, *role, version, *replicas, &owner);
                let hash = stamp(&mut d);
                let live = match role {
                    Role::Stable => stable.as_ref(),
                    Role::Canary => canary.as_ref(),
                };
                // No write when the live object is what we last applied and still has its replica
                // count (a hand scale is corrected): a steady app costs reads only.
                let unchanged = live.is_some_and(|l| {
                    applied_hash(l) == Some(hash.as_str())
                        && l.spec.as_ref().and_then(|s| s.replicas) == Some(*replicas)
                });
                if !unchanged {
                    deployments
                        .patch(&workload_name(&name, *role), &pp, &Patch::Apply(&d))
                        .await
                        .map_err(act_err)?;
                }
            }
            Action::Remove { role } => match deployments
                .delete(&workload_name(&name, *role), &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(act_err(e)),
            },
            Action::CheckHealth { .. } => {}
        }
    }

    // report: status only when it changed, an Event per transition after the write succeeded
    let mut new_status = decision.status.clone();
    new_status.observed_generation = app.metadata.generation;
    if app.status.as_ref() != Some(&new_status) {
        let apps: Api<ManagedApplication> = Api::namespaced(client.clone(), &ns);
        apps.patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": new_status})),
        )
        .await
        .map_err(|error| EngineError::WriteStatus {
            app: name.clone(),
            error,
        })?;
    }
    if let Some(t) = &decision.transition {
        info!(app = %name, namespace = %ns, from = ?t.from, to = %t.to, message = %t.message, "phase changed");
        let event = Event {
            type_: if t.to == bosun_core::model::Phase::Failed {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: t.to.to_string(),
            note: Some(t.message.clone()),
            action: "Upgrade".into(),
            secondary: None,
        };
        if let Err(e) = ctx.recorder.publish(&event, &app.object_ref(&())).await {
            warn!(error = %e, "publishing an Event failed");
        }
    }
    Ok(match decision.requeue_after {
        Some(secs) => Requeue::requeue(Duration::from_secs(secs.max(1))),
        None => Requeue::requeue(Duration::from_secs(300)),
    })
}

/// Annotation holding the hash of what the engine last applied to an object.
const ANNOTATION_APPLIED_HASH: &str = "bosun.dev/applied-hash";

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

fn image_of(app: &ManagedApplication) -> String {
    app.spec.image.clone().unwrap_or_else(|| app.name_any())
}

fn container_port(app: &ManagedApplication) -> i32 {
    app.spec
        .ports
        .as_ref()
        .and_then(|p| p.first())
        .map_or(8080, |p| p.container_port)
}

fn deployment(
    app: &ManagedApplication,
    role: Role,
    version: &str,
    replicas: i32,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> serde_json::Value {
    let name = app.name_any();
    let strategy = &app.spec.upgrade_strategy;
    let ports: Vec<_> = match &app.spec.ports {
        Some(p) => p
            .iter()
            .map(|p| json!({"name": p.name, "containerPort": p.container_port}))
            .collect(),
        None => vec![json!({"name": "http", "containerPort": 8080})],
    };
    let mut container = json!({
        "name": "app",
        "image": format!("{}:{version}", image_of(app)),
        "ports": ports,
    });
    if let Some(env) = &app.spec.env {
        container["env"] = json!(env);
    }
    if let Some(r) = &app.spec.resources {
        container["resources"] = json!(r);
    }
    if let Some(h) = &strategy.health_check {
        container["readinessProbe"] = json!({
            "httpGet": {"path": h.http_get.path, "port": h.http_get.port},
            "periodSeconds": h.period_seconds.unwrap_or(10),
            "failureThreshold": h.failure_threshold.unwrap_or(3),
        });
    }
    let labels =
        json!({"app": name, "bosun.dev/role": role_label(role), "bosun.dev/version": version});
    let mut template = json!({
        "metadata": {"labels": labels},
        "spec": {"containers": [container]},
    });
    if let Some(patch) = &app.spec.pod_template {
        json_patch::merge(&mut template, patch);
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": workload_name(&name, role),
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": strategy.progress_deadline_seconds.unwrap_or(600),
            "strategy": if strategy.type_ == StrategyType::Recreate { json!({"type": "Recreate"}) } else { json!({"type": "RollingUpdate"}) },
            "selector": {"matchLabels": {"app": name, "bosun.dev/role": role_label(role)}},
            "template": template,
        }
    })
}

fn migration_job(
    app: &ManagedApplication,
    version: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> serde_json::Value {
    let m = app
        .spec
        .upgrade_strategy
        .migration_job
        .clone()
        .expect("a migration is decided only when configured");
    let mut container = json!({"name": "migration", "image": m.image});
    if let Some(c) = m.command {
        container["command"] = json!(c);
    }
    if let Some(a) = m.args {
        container["args"] = json!(a);
    }
    if let Some(e) = m.env {
        container["env"] = json!(e);
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": migration_job_name(&app.name_any(), version),
            "labels": {"app": app.name_any(), "type": "migration", "bosun.dev/version": version},
            "ownerReferences": [owner],
        },
        "spec": {
            "backoffLimit": m.backoff_limit.unwrap_or(0),
            "activeDeadlineSeconds": m.active_deadline_seconds.unwrap_or(600),
            "template": {
                "metadata": {"labels": {"app": app.name_any(), "type": "migration"}},
                "spec": {"restartPolicy": "Never", "containers": [container]}
            }
        }
    })
}

async fn ensure_service(
    client: &Client,
    app: &ManagedApplication,
    ns: &str,
    owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
    pp: &PatchParams,
) -> Result<(), EngineError> {
    let service = app.spec.service.clone().unwrap_or_default();
    if service.enabled == Some(false) {
        return Ok(());
    }
    let name = app.name_any();
    let svc = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": name}, "ownerReferences": [owner]},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": service.port.unwrap_or(80), "targetPort": container_port(app)}],
        }
    });
    let mut svc = svc;
    let hash = stamp(&mut svc);
    let services = Api::<Service>::namespaced(client.clone(), ns);
    let act_err = |error| EngineError::Act {
        app: name.clone(),
        action: "ApplyService".into(),
        error,
    };
    let live = services.get_opt(&name).await.map_err(act_err)?;
    if live.is_some_and(|l| applied_hash(&l) == Some(hash.as_str())) {
        return Ok(());
    }
    services
        .patch(&name, pp, &Patch::Apply(&svc))
        .await
        .map(|_| ())
        .map_err(act_err)
}

#[cfg(test)]
mod tests {
    use super::migration_job_name;

    #[test]
    fn migration_jobs_are_named_after_the_app_and_version() {
        assert_eq!(
            migration_job_name("my-app", "v2.0.0"),
            "my-app-migration-v2.0.0"
        );
        assert_eq!(
            migration_job_name("shop", "V2_RC1"),
            "shop-migration-v2-rc1"
        );
        assert!(migration_job_name(&"a".repeat(50), &"1".repeat(40)).len() <= 63);
    }
}
