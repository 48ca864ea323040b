//! What the engine creates for an app, built from its spec with no client: the Deployments (`<app>`,
//! `<app>-canary`, `<app>-preview`), the Services (`<app>`, `<app>-preview`), and the migration Jobs
//! (`<app>-migration-<version>`, `<app>-migration-down-<version>`). Deterministic names, ownership
//! labels, an owner reference to the app.

use bosun_core::engine::app::{DEFAULT_PROGRESS_DEADLINE_SECS, JobKind, Role};
use bosun_core::model::{DownMigrationRecord, ManagedApplication, StrategyType};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::ResourceExt;
use serde_json::json;

/// Label carrying the version a Deployment and its pods run.
pub const LABEL_VERSION: &str = "bosun.dev/version";
/// Label carrying which side (stable, canary, preview) a Deployment and its pods are.
pub const LABEL_ROLE: &str = "bosun.dev/role";

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
    let hash = hex::encode(&digest[..4]);
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

/// Whether the app has Services at all (`spec.service.enabled: false` says no).
pub fn services_enabled(app: &ManagedApplication) -> bool {
    app.spec.service.as_ref().and_then(|s| s.enabled) != Some(false)
}

pub fn deployment(
    app: &ManagedApplication,
    role: Role,
    version: &str,
    replicas: i32,
    owner: &OwnerReference,
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
        if let Some(scheme) = h.http_get.scheme {
            container["readinessProbe"]["httpGet"]["scheme"] = json!(scheme);
        }
    }
    let labels = json!({"app": name, LABEL_ROLE: role_label(role), LABEL_VERSION: version});
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
            "progressDeadlineSeconds": strategy.progress_deadline_seconds.map_or(DEFAULT_PROGRESS_DEADLINE_SECS, i64::from),
            "strategy": if strategy.type_ == StrategyType::Recreate { json!({"type": "Recreate"}) } else { json!({"type": "RollingUpdate"}) },
            "selector": {"matchLabels": {"app": name, LABEL_ROLE: role_label(role)}},
            "template": template,
        }
    })
}

/// The up-migration Job of `version`, from the app's `migrationJob`.
pub fn migration_job(
    app: &ManagedApplication,
    version: &str,
    owner: &OwnerReference,
) -> Option<serde_json::Value> {
    let m = app.spec.upgrade_strategy.migration_job.clone()?;
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
    Some(job(
        app,
        JobKind::Up,
        version,
        container,
        m.backoff_limit.unwrap_or(0),
        m.active_deadline_seconds.unwrap_or(600),
        owner,
    ))
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
            "labels": {"app": name, "type": type_, LABEL_VERSION: version},
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

/// The active Service `<app>`: every pod of the app, or (BlueGreen) the pods of one version.
pub fn active_service(
    app: &ManagedApplication,
    version: Option<&str>,
    owner: &OwnerReference,
) -> serde_json::Value {
    let name = app.name_any();
    let selector = match version {
        Some(v) => json!({"app": name, LABEL_VERSION: v}),
        None => json!({"app": name}),
    };
    service(app, &name, selector, owner)
}

/// The preview Service `<app>-preview` of a BlueGreen upgrade: the preview Deployment's pods of `version`.
pub fn preview_service(
    app: &ManagedApplication,
    version: &str,
    owner: &OwnerReference,
) -> serde_json::Value {
    let name = app.name_any();
    let selector =
        json!({"app": name, LABEL_ROLE: role_label(Role::Preview), LABEL_VERSION: version});
    service(app, &workload_name(&name, Role::Preview), selector, owner)
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
            assert!(
                n.len() <= 63 && bosun_core::names::is_dns1123_label(n),
                "{n}"
            );
        }
        let v = "1".repeat(40);
        assert_ne!(
            job_name("shop", JobKind::Up, &v),
            job_name("shop", JobKind::Up, &format!("{v}2"))
        );
    }
}
