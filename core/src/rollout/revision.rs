//! A revision: everything of a ManagedApplication's spec that shapes its pods and its migration, and
//! its hash, the identity of a rollout (as Argo Rollouts and Flagger roll out a new pod template,
//! whatever changed in it).
//!
//! What is in a revision: `version`, `image`, `ports`, `env`, `resources`, `podTemplate`, the readiness
//! probe that `healthCheck` gives the pods (path, port, scheme, period, failure threshold) and the
//! migration Job (`migrationJob` without its `down`, with a tagless image resolved to
//! `<image>:<version>`). A change of any of them is an upgrade through the app's strategy. What is
//! not in it shapes no pod and is applied directly: `replicas`, `service`, `paused`, the strategy and
//! its timings, the health check's other thresholds, the down-migration (recorded when its
//! up-migration succeeds).
//!
//! The executor keeps every revision it rolls out as a `ControllerRevision` `<app>-<hash>` owned by
//! the app, so that a rollback restores the last healthy revision byte for byte, whatever the spec
//! says now.

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{AppPort, ManagedApplicationSpec, MigrationJob, Scheme};

/// The pod-shaping part of a ManagedApplication's spec. Serialized into a `ControllerRevision`'s
/// `data`; its hash names it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Revision {
    pub version: String,
    /// The image repository (`spec.image`); `None`: the app's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<AppPort>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Readiness>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_template: Option<serde_json::Value>,
    /// The up-migration, its image resolved ([`migration_image`]) and without `down`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration: Option<MigrationJob>,
}

/// The readiness probe a health check gives the app's pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    pub path: String,
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
    pub period_seconds: i32,
    pub failure_threshold: i32,
}

/// Which revision: its hash (the identity) and its version (for people).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionRef {
    pub hash: String,
    pub version: String,
}

impl std::fmt::Display for RevisionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (revision {})", self.version, self.hash)
    }
}

/// The image a migration runs: `migrationJob.image` as written when it has a tag or a digest, else
/// `<image>:<version>`, so that a version bump is one line.
pub fn migration_image(image: &str, version: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || image.contains('@') {
        image.to_string()
    } else {
        format!("{image}:{version}")
    }
}

impl Revision {
    /// The revision a spec asks for.
    pub fn of(spec: &ManagedApplicationSpec) -> Revision {
        let strategy = &spec.upgrade_strategy;
        Revision {
            version: spec.version.clone(),
            image: spec.image.clone(),
            ports: spec.ports.clone(),
            env: spec.env.clone(),
            resources: spec.resources.clone(),
            readiness: strategy.health_check.as_ref().map(|h| Readiness {
                path: h.http_get.path.clone(),
                port: h.http_get.port,
                scheme: h.http_get.scheme,
                period_seconds: h.period_seconds.unwrap_or(10),
                failure_threshold: h.failure_threshold.unwrap_or(3),
            }),
            pod_template: spec.pod_template.clone(),
            migration: strategy.migration_job.as_ref().map(|m| MigrationJob {
                image: migration_image(&m.image, &spec.version),
                down: None,
                ..m.clone()
            }),
        }
    }

    /// The revision's identity: 10 hex digits of the SHA-256 of its JSON (object keys sorted).
    pub fn hash(&self) -> String {
        short_hash(&serde_json::to_value(self).expect("a revision serializes"))
    }

    /// Its hash and version.
    pub fn reference(&self) -> RevisionRef {
        RevisionRef {
            hash: self.hash(),
            version: self.version.clone(),
        }
    }

    /// The identity of its up-migration: its version and Job spec. `None` without a migration. Two
    /// revisions with the same migration hash need no migration between them.
    pub fn migration_hash(&self) -> Option<String> {
        let m = self.migration.as_ref()?;
        Some(short_hash(&serde_json::json!({
            "version": self.version,
            "job": m,
        })))
    }
}

fn short_hash(value: &serde_json::Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HealthCheck, HttpGet, UpgradeStrategy};

    fn spec() -> ManagedApplicationSpec {
        ManagedApplicationSpec {
            version: "1.0.0".into(),
            paused: false,
            image: Some("registry.example.com/shop/web".into()),
            replicas: Some(3),
            ports: None,
            env: None,
            resources: None,
            service: None,
            pod_template: None,
            upgrade_strategy: UpgradeStrategy::default(),
            upgrade_windows: Vec::new(),
            depends_on: Vec::new(),
        }
    }

    fn env(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            value_from: None,
        }
    }

    #[test]
    fn what_shapes_the_pods_makes_a_new_revision_and_what_does_not_keeps_it() {
        let base = Revision::of(&spec()).hash();
        type Change = Box<dyn Fn(&mut ManagedApplicationSpec)>;
        let changes: Vec<(&str, Change, bool)> = vec![
            ("version", Box::new(|s| s.version = "1.1.0".into()), true),
            (
                "env",
                Box::new(|s| s.env = Some(vec![env("MODE", "fast")])),
                true,
            ),
            (
                "image",
                Box::new(|s| s.image = Some("other/web".into())),
                true,
            ),
            (
                "podTemplate",
                Box::new(|s| {
                    s.pod_template = Some(serde_json::json!({"spec": {"nodeSelector": {"a": "b"}}}))
                }),
                true,
            ),
            (
                "healthCheck path",
                Box::new(|s| {
                    s.upgrade_strategy.health_check = Some(HealthCheck {
                        http_get: HttpGet {
                            path: "/health".into(),
                            port: 8080,
                            scheme: None,
                        },
                        initial_delay_seconds: None,
                        period_seconds: None,
                        timeout_seconds: None,
                        failure_threshold: None,
                        success_threshold: None,
                    })
                }),
                true,
            ),
            (
                "migrationJob",
                Box::new(|s| {
                    s.upgrade_strategy.migration_job = Some(MigrationJob {
                        image: "web-migrations".into(),
                        command: None,
                        args: None,
                        env: None,
                        active_deadline_seconds: None,
                        backoff_limit: None,
                        down: None,
                    })
                }),
                true,
            ),
            ("replicas", Box::new(|s| s.replicas = Some(10)), false),
            ("paused", Box::new(|s| s.paused = true), false),
            (
                "progressDeadlineSeconds",
                Box::new(|s| s.upgrade_strategy.progress_deadline_seconds = Some(60)),
                false,
            ),
        ];
        for (what, change, new_revision) in changes {
            let mut s = spec();
            change(&mut s);
            assert_eq!(
                Revision::of(&s).hash() != base,
                new_revision,
                "a change of {what} {} a new revision",
                if new_revision { "is" } else { "is not" }
            );
        }
    }

    #[test]
    fn a_migration_image_without_a_tag_follows_the_version() {
        let cases = [
            ("my-app-migrations", "1.2.0", "my-app-migrations:1.2.0"),
            (
                "my-app-migrations:v2.0.0",
                "1.2.0",
                "my-app-migrations:v2.0.0",
            ),
            (
                "registry:5000/team/migrate",
                "1.2.0",
                "registry:5000/team/migrate:1.2.0",
            ),
            (
                "registry:5000/team/migrate:7",
                "1.2.0",
                "registry:5000/team/migrate:7",
            ),
            (
                "team/migrate@sha256:abcd",
                "1.2.0",
                "team/migrate@sha256:abcd",
            ),
        ];
        for (image, version, expected) in cases {
            assert_eq!(migration_image(image, version), expected, "{image}");
        }
    }

    #[test]
    fn a_tagless_migration_changes_with_the_version_and_a_down_migration_is_not_part_of_it() {
        let mut s = spec();
        s.upgrade_strategy.migration_job = Some(MigrationJob {
            image: "web-migrations".into(),
            command: Some(vec!["/migrate".into()]),
            args: None,
            env: None,
            active_deadline_seconds: None,
            backoff_limit: None,
            down: None,
        });
        let before = Revision::of(&s);
        assert_eq!(
            before.migration.as_ref().map(|m| m.image.as_str()),
            Some("web-migrations:1.0.0")
        );
        let mut with_down = s.clone();
        with_down
            .upgrade_strategy
            .migration_job
            .as_mut()
            .expect("set")
            .down = Some(crate::model::DownMigration {
            image: None,
            command: Some(vec!["/down".into()]),
            args: None,
        });
        assert_eq!(Revision::of(&with_down).hash(), before.hash());
        let mut env_only = s.clone();
        env_only.env = Some(vec![env("A", "1")]);
        assert_eq!(
            Revision::of(&env_only).migration_hash(),
            before.migration_hash(),
            "an env change needs no migration"
        );
        s.version = "1.1.0".into();
        assert_ne!(Revision::of(&s).migration_hash(), before.migration_hash());
    }
}
