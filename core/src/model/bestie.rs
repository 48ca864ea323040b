//! `Bestie` (`pets.bestie.com/v1`): the pet-adoption app of seeds 000 and 001.
//!
//! A Bestie owns a Deployment `<name>-app` running `<image>:<version>` with `size` replicas, a Service, an
//! Ingress (or an OpenShift Route), an HPA when `maxReplicas` is set, a Postgres database and a seed Job.
//! Its status reads as in seed 000: `appversion` and `podstatus` lines `pod : phase : image`.

// kube's printcolumn(...) lists repeat `type_ = ` by design; clippy reads them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The desired state of a Bestie app.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "pets.bestie.com",
    version = "v1",
    kind = "Bestie",
    plural = "besties",
    namespaced,
    derive = "PartialEq",
    status = "BestieStatus",
    category = "bosun",
    doc = "The Bestie app: Deployment, Service, Ingress or Route, HPA, Postgres and a seed Job.",
    printcolumn(name = "Version", type_ = "string", json_path = ".spec.version"),
    printcolumn(name = "Running", type_ = "string", json_path = ".status.appversion"),
    printcolumn(name = "Size", type_ = "integer", json_path = ".spec.size"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BestieSpec {
    /// How many pods run the app (the HPA's minimum when `maxReplicas` is set).
    #[schemars(range(min = 0, max = 10000))]
    pub size: i32,
    /// The image repository, without a tag.
    pub image: String,
    /// The image tag to run.
    #[schemars(regex(pattern = crate::names::IMAGE_TAG_PATTERN))]
    pub version: String,
    /// The HPA's maximum; no HPA when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_replicas: Option<i32>,
    /// The port the app listens on. Defaults to 8000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// The host name of the Ingress or Route. Without it the Ingress matches every host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The Postgres database and its seed Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<BestieDatabase>,
    /// When a rollout may start (`kind: allow`) and may not (`kind: deny`), as on a ManagedApplication.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upgrade_windows: Vec<super::UpgradeWindow>,
    /// The apps a rollout waits for when one commit changes them together, as on a
    /// ManagedApplication (a Bestie is not rolled back with its group).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<super::Dependency>,
}

/// The app's Postgres database.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct BestieDatabase {
    /// Set to false to run without a database (and without the seed Job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The Postgres image of the StatefulSet used when no Crunchy operator is installed. Defaults to
    /// `postgres:16`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The volume size. Defaults to `1Gi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// The seed Job's command, run in the app's image. Defaults to the image's entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed_command: Option<Vec<String>>,
}

/// What runs, as seed 000 shows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct BestieStatus {
    /// The version every ready pod runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub appversion: Option<String>,
    /// One line a pod: `pod : phase : image`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub podstatus: Vec<String>,
    /// The version of the last rollout that completed (`lastHealthyTemplate`'s version).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_healthy_version: Option<String>,
    /// The last rollout that completed, whole: the rollback target. A rollback runs exactly this
    /// template (image, version, port, database), whatever the spec says now. Absent when written by a
    /// Bosun that recorded only `lastHealthyVersion`: a rollback then runs that version with the spec's
    /// other fields, and the next completed rollout records it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_healthy_template: Option<BestieTemplate>,
    /// The version of the last rollout whose pods did not become ready within the progress deadline
    /// (`failedHash`'s version). It may equal `lastHealthyVersion` when only the image or port changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_version: Option<String>,
    /// The template hash of the last rollout whose pods did not become ready within the progress
    /// deadline. While it equals the spec's template hash the rollout is not retried (the app runs
    /// `lastHealthyTemplate`); a change of the template (image, version, port, database) clears it, so
    /// asking for the failed template again later is a new attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_hash: Option<String>,
    /// True once the seed Job succeeded: it never runs again, even when the Job is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_seeded: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions, one per type (a map list, so that separate writers can own separate types).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The template hash a human rolled out outside its upgrade windows (`bosun promote --now`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_override: Option<String>,
}

/// Everything that shapes a Bestie's app pods, resolved (the default port filled in), and its hash: the
/// identity of a rollout. A change of any field is a rollout through the Deployment; a rollback restores
/// all of them. `size`, `maxReplicas` and `host` shape no pod and are applied directly.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BestieTemplate {
    /// The image repository, without a tag.
    pub image: String,
    /// The image tag.
    pub version: String,
    /// The port the app listens on (probes and container port).
    pub port: i32,
    /// The Secret the pods read the database from (`DB_*`, `DATABASE_URL`); none without a database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_secret: Option<String>,
    /// 10 hex digits of the SHA-256 of the other fields' JSON.
    pub hash: String,
}
