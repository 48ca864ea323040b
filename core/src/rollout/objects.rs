//! What the engine creates for an app, built from its spec and its revisions with no client: the Deployments (`<app>`,
//! `<app>-canary`, `<app>-preview`), the Services (`<app>`, `<app>-preview`), and the migration Jobs
//! (`<app>-migration-<version>`, `<app>-migration-down-<version>`). Deterministic names, ownership
//! labels, an owner reference to the app.

use super::revision::Revision;
use super::{JobKind, Role};
use crate::model::{DownMigrationRecord, ManagedApplication, StrategyType};
pub use crate::names::{
    LABEL_APP, LABEL_MIGRATION_HASH, LABEL_REVISION_HASH, LABEL_ROLE, LABEL_VERSION,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use serde_json::json;

/// The deterministic name of an app's migration Job for a version: `<app>-migration-<version>` or
/// `<app>-migration-down-<version>`, made a valid name (lowercase; `_` and other characters become
/// `-`; at most 63 characters, which the Job controller's `job-name` pod label allows). When the
/// version had to be changed to fit, the name ends in a hash of the exact kind and version instead, so
/// that two versions never share a Job (a shared Job would pass one version's migration off as the
/// other's).
pub fn job_name(app: &str, kind: JobKind, version: &str) -> String {
    const MAX: usize = 63;
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
    let prefix = match kind {
        JobKind::Up => format!("{app}-migration-"),
        JobKind::Down => format!("{app}-migration-down-"),
    };
    let plain = format!("{prefix}{v}");
    let trimmed = plain.trim_end_matches(['-', '.']);
    if plain.len() <= MAX && v == version && trimmed.len() == plain.len() {
        return plain;
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{kind:?}\n{version}"));
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let mut head = plain;
    head.truncate(MAX - hash.len() - 1);
    format!("{}-{hash}", head.trim_end_matches(['-', '.']))
}

/// The up-migration Job's name (kept for callers of the first version of this module).
pub fn migration_job_name(app: &str, version: &str) -> String {
    job_name(app, JobKind::Up, version)
}

pub fn workload_name(app: &str, role: Role) -> String {
    match role {
        Role::Stable => app.to_string(),
        Role::Canary => format!("{app}-canary"),
        Role::Preview => format!("{app}-preview"),
    }
}

pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::Stable => "stable",
        Role::Canary => "canary",
        Role::Preview => "preview",
    }
}

fn container_port(app: &ManagedApplication) -> i32 {
    app.spec
        .ports
        .as_ref()
        .and_then(|p| p.first())
        .map_or(8080, |p| p.container_port)
}

/// Whether the app has Services at all (`spec.service.enabled: false` says no).
pub fn services_enabled(app: &ManagedApplication) -> bool {
    app.spec.service.as_ref().and_then(|s| s.enabled) != Some(false)
}

/// The Deployment of `role` running `revision`: its pod template is the revision's alone, so that a
/// revision kept from before renders byte for byte what it rendered then; what is not part of a
/// revision (replicas, strategy, progress deadline) is the app's now.
pub fn deployment(
    app: &ManagedApplication,
    role: Role,
    revision: &Revision,
    replicas: i32,
    owner: &OwnerReference,
) -> serde_json::Value {
    let name = app.name_any();
    let strategy = &app.spec.upgrade_strategy;
    let version = revision.version.as_str();
    let hash = revision.hash();
    let image = revision.image.clone().unwrap_or_else(|| name.clone());
    let ports: Vec<_> = match &revision.ports {
        Some(p) => p
            .iter()
            .map(|p| json!({"name": p.name, "containerPort": p.container_port}))
            .collect(),
        None => vec![json!({"name": "http", "containerPort": 8080})],
    };
    let mut container = json!({
        "name": "app",
        "image": format!("{image}:{version}"),
        "ports": ports,
    });
    if let Some(env) = &revision.env {
        container["env"] = json!(env);
    }
    if let Some(r) = &revision.resources {
        container["resources"] = json!(r);
    }
    if let Some(h) = &revision.readiness {
        container["readinessProbe"] = json!({
            "httpGet": {"path": h.path, "port": h.port},
            "periodSeconds": h.period_seconds,
            "failureThreshold": h.failure_threshold,
        });
        if let Some(scheme) = h.scheme {
            container["readinessProbe"]["httpGet"]["scheme"] = json!(scheme);
        }
    }
    let labels = json!({
        "app": name,
        LABEL_ROLE: role_label(role),
        LABEL_VERSION: version_label(version),
        LABEL_REVISION_HASH: hash,
    });
    let mut template = json!({
        "metadata": {"labels": labels},
        "spec": {"containers": [container]},
    });
    if let Some(patch) = &revision.pod_template {
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
            "progressDeadlineSeconds": strategy.progress_deadline_secs(),
            "strategy": if strategy.type_ == StrategyType::Recreate { json!({"type": "Recreate"}) } else { json!({"type": "RollingUpdate"}) },
            "selector": {"matchLabels": {"app": name, LABEL_ROLE: role_label(role)}},
            "template": template,
        }
    })
}

/// A version as a label value: as it is when it is one (`[A-Za-z0-9_.-]`, at most 63, alphanumeric at
/// both ends), else cut and trimmed. Nothing selects by it (selectors use the revision hash); it is
/// for people (`kubectl get pods -L bosun.dev/version`).
pub fn version_label(version: &str) -> String {
    let v: String = version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    v.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The up-migration Job of a revision, from its `migrationJob` (the image resolved: a tagless image
/// runs `<image>:<version>`), labelled with the migration's hash.
pub fn migration_job(
    app: &ManagedApplication,
    revision: &Revision,
    owner: &OwnerReference,
) -> Option<serde_json::Value> {
    let m = revision.migration.clone()?;
    let version = revision.version.as_str();
    let mut container = json!({"name": "migration", "image": m.image});
    if let Some(c) = m.command {
        container["command"] = json!(c);
    }
    if let Some(a) = m.args {
        container["args"] = json!(a);
    }
    if let Some(e) = &m.env {
        container["env"] = json!(e);
    }
    let mut job = job(
        app,
        JobKind::Up,
        version,
        container,
        m.backoff_limit.unwrap_or(0),
        m.active_deadline_seconds.unwrap_or(600),
        owner,
    );
    job["metadata"]["labels"][LABEL_MIGRATION_HASH] = revision.migration_hash().into();
    Some(job)
}

/// The down-migration Job of a recorded down-migration. Its environment, backoff and deadline are the
/// app's current `migrationJob`'s (defaults when it has none any more).
pub fn down_migration_job(
    app: &ManagedApplication,
    record: &DownMigrationRecord,
    owner: &OwnerReference,
) -> serde_json::Value {
    let m = app.spec.upgrade_strategy.migration_job.as_ref();
    let mut container = json!({"name": "migration-down", "image": record.image});
    if let Some(c) = &record.command {
        container["command"] = json!(c);
    }
    if let Some(a) = &record.args {
        container["args"] = json!(a);
    }
    if let Some(e) = m.and_then(|m| m.env.as_ref()) {
        container["env"] = json!(e);
    }
    job(
        app,
        JobKind::Down,
        &record.version,
        container,
        m.and_then(|m| m.backoff_limit).unwrap_or(0),
        m.and_then(|m| m.active_deadline_seconds).unwrap_or(600),
        owner,
    )
}

fn job(
    app: &ManagedApplication,
    kind: JobKind,
    version: &str,
    container: serde_json::Value,
    backoff_limit: i32,
    deadline: i64,
    owner: &OwnerReference,
) -> serde_json::Value {
    let type_ = match kind {
        JobKind::Up => "migration",
        JobKind::Down => "migration-down",
    };
    let name = app.name_any();
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(&name, kind, version),
            "labels": {"app": name, "type": type_, LABEL_VERSION: version_label(version)},
            "ownerReferences": [owner],
        },
        "spec": {
            "backoffLimit": backoff_limit,
            "activeDeadlineSeconds": deadline,
            "template": {
                "metadata": {"labels": {"app": name, "type": type_}},
                "spec": {"restartPolicy": "Never", "containers": [container]}
            }
        }
    })
}

/// The active Service `<app>`: every pod of the app (with a router, the stable pods), or (BlueGreen)
/// the pods of one revision.
pub fn active_service(
    app: &ManagedApplication,
    hash: Option<&str>,
    owner: &OwnerReference,
) -> serde_json::Value {
    let name = app.name_any();
    let selector = match hash {
        Some(h) => json!({"app": name, LABEL_REVISION_HASH: h}),
        None if app.spec.upgrade_strategy.traffic_routing.is_some() => {
            return routed_service(app, Role::Stable, owner);
        }
        None => json!({"app": name}),
    };
    service(app, &name, selector, owner)
}

/// With a router (`upgradeStrategy.trafficRouting`), the Service of one side
/// ([`crate::routing::routed_services`]): `<app>` selects the stable pods only, `<app>-canary` the
/// canary's; the router splits traffic between the two.
pub fn routed_service(
    app: &ManagedApplication,
    role: Role,
    owner: &OwnerReference,
) -> serde_json::Value {
    let services = crate::routing::routed_services(&app.name_any());
    let side = match role {
        Role::Canary => &services.canary,
        Role::Stable | Role::Preview => &services.stable,
    };
    service(app, &side.name, json!(side.selector), owner)
}

/// The preview Service `<app>-preview` of a BlueGreen upgrade: the preview Deployment's pods of a revision.
pub fn preview_service(
    app: &ManagedApplication,
    hash: &str,
    owner: &OwnerReference,
) -> serde_json::Value {
    let name = app.name_any();
    let selector =
        json!({"app": name, LABEL_ROLE: role_label(Role::Preview), LABEL_REVISION_HASH: hash});
    service(app, &workload_name(&name, Role::Preview), selector, owner)
}

/// The ControllerRevision `<app>-<hash>` that keeps a revision whole, owned by the app.
pub fn controller_revision(
    app: &ManagedApplication,
    revision: &Revision,
    number: i64,
    owner: &OwnerReference,
) -> serde_json::Value {
    let name = app.name_any();
    let hash = revision.hash();
    json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": revision_name(&name, &hash),
            "labels": {"app": name, LABEL_APP: name, LABEL_REVISION_HASH: hash, LABEL_VERSION: version_label(&revision.version)},
            "ownerReferences": [owner],
        },
        "data": revision,
        "revision": number,
    })
}

/// The name of the ControllerRevision of an app's revision.
pub fn revision_name(app: &str, hash: &str) -> String {
    format!("{app}-{hash}")
}

fn service(
    app: &ManagedApplication,
    name: &str,
    selector: serde_json::Value,
    owner: &OwnerReference,
) -> serde_json::Value {
    let spec = app.spec.service.clone().unwrap_or_default();
    let mut svc_spec = json!({
        "selector": selector,
        "ports": [{"name": "http", "port": spec.port.unwrap_or(80), "targetPort": container_port(app)}],
    });
    if let Some(t) = spec.type_ {
        svc_spec["type"] = json!(t);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"app": app.name_any()}, "ownerReferences": [owner]},
        "spec": svc_spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_jobs_are_named_after_the_app_and_version() {
        assert_eq!(
            job_name("my-app", JobKind::Up, "v2.0.0"),
            "my-app-migration-v2.0.0"
        );
        assert_eq!(
            job_name("my-app", JobKind::Down, "v2.0.0"),
            "my-app-migration-down-v2.0.0"
        );
    }

    #[test]
    fn a_version_changed_to_fit_a_name_gets_a_hash_so_that_no_two_versions_share_a_job() {
        let up = job_name("shop", JobKind::Up, "V2_RC1");
        assert!(up.starts_with("shop-migration-v2-rc1-"), "{up}");
        assert_ne!(up, job_name("shop", JobKind::Up, "v2-rc1"));
        assert_ne!(up, job_name("shop", JobKind::Up, "v2_rc1"));
        let long_app = "a".repeat(50);
        let names: std::collections::BTreeSet<String> = ["1.0.0", "1.0.1", "2.0.0"]
            .iter()
            .flat_map(|v| [JobKind::Up, JobKind::Down].map(|k| job_name(&long_app, k, v)))
            .collect();
        assert_eq!(names.len(), 6, "{names:?}");
        for n in &names {
            assert!(n.len() <= 63 && crate::names::is_dns1123_label(n), "{n}");
        }
        let v = "1".repeat(40);
        assert_ne!(
            job_name("shop", JobKind::Up, &v),
            job_name("shop", JobKind::Up, &format!("{v}2"))
        );
    }
}
