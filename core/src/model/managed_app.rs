//! `ManagedApplication` (`apps.example.com/v1alpha1`): one application whose upgrades Bosun carries out.
//!
//! The fields of seed 002 (`version`, `paused`, `upgradeStrategy` with `migrationJob`, `healthCheck` and
//! `canary`) are kept as written there; the rest is what a real workload needs. Ranges are part of the
//! schema so that the API server enforces them too; rules that span fields live in `validate`.

// kube's printcolumn(...) lists repeat `type_ = ` by design; clippy reads them as duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::fmt;

use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::analysis::{Analysis, AnalysisRun};
use super::pause::Pause;
use super::window::UpgradeWindow;

/// The desired state of one application.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "apps.example.com",
    version = "v1alpha1",
    kind = "ManagedApplication",
    namespaced,
    derive = "PartialEq",
    status = "ManagedApplicationStatus",
    shortname = "mapp",
    category = "bosun",
    doc = "An application whose upgrades Bosun carries out: migration, rollout, health checks, rollback.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Current",
        type_ = "string",
        json_path = ".status.currentVersion"
    ),
    printcolumn(name = "Target", type_ = "string", json_path = ".status.targetVersion"),
    printcolumn(name = "Weight", type_ = "integer", json_path = ".status.canaryWeight"),
    printcolumn(
        name = "Step",
        type_ = "integer",
        json_path = ".status.stepIndex",
        priority = 1
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.message",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ManagedApplicationSpec {
    /// The version to run. It is the image tag: the app runs `<image>:<version>`.
    #[schemars(regex(pattern = crate::names::IMAGE_TAG_PATTERN))]
    pub version: String,
    /// Freezes the upgrade where it is, timers included, while true. Not written when false, so that a
    /// `spec.paused: true` set by hand (an emergency brake) is not Bosun's field to undo.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// The image repository, without a tag. Defaults to the resource's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How many pods run the app when it is not mid-upgrade. Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10000))]
    pub replicas: Option<i32>,
    /// The container's ports. Defaults to one port named `http`, 8080.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<AppPort>>,
    /// Environment variables of the app's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// CPU and memory requests and limits of the app's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// The Service in front of the app. One is created unless `enabled: false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<AppService>,
    /// A JSON merge patch (RFC 7386) applied to the pod template Bosun generates, for what the fields
    /// above do not cover (node selectors, volumes, sidecars, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::preserve_unknown_object")]
    pub pod_template: Option<serde_json::Value>,
    /// How a new version is rolled out. Defaults to `type: Rolling`.
    #[serde(default)]
    pub upgrade_strategy: UpgradeStrategy,
    /// When upgrades may start (`kind: allow`) and may not (`kind: deny`); see [`UpgradeWindow`]. None:
    /// at any time (unless the `bosun run` config sets windows for the whole source).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upgrade_windows: Vec<UpgradeWindow>,
    /// The apps this app's upgrades wait for when one commit changes them together (and roll back
    /// with); see [`super::Dependency`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<super::Dependency>,
}

/// A container port.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppPort {
    /// The port's name (an IANA service name: lowercase letters, digits, dashes; at most 15).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[schemars(range(min = 1, max = 65535))]
    pub container_port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

/// The Service Bosun creates for the app (named like the app).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct AppService {
    /// Set to false to create no Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<ServiceType>,
    /// The Service's port. Defaults to 80; it forwards to the first container port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    ClusterIP,
    NodePort,
    LoadBalancer,
}

/// How a new version is rolled out.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeStrategy {
    #[serde(rename = "type", default)]
    pub type_: StrategyType,
    /// A Job run to completion before the new version is rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_job: Option<MigrationJob>,
    /// The HTTP check Bosun runs against the new pods, also used as their readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Canary steps. With `enabled: true` the rollout of a Rolling type goes step by step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanarySpec>,
    /// Settings of the BlueGreen type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenSpec>,
    /// How long new pods may take to become ready before the upgrade fails. Defaults to 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub progress_deadline_seconds: Option<i32>,
    /// Metrics that judge the new version during the whole rollout: every canary step (and they
    /// must pass before the promotion), the blue-green preview before the switch and after it,
    /// or a direct rollout once its pods are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// The router that carries a canary's exact traffic weight (Gateway API HTTPRoute, OpenShift
    /// Route, NGINX Ingress), instead of the share of pods behind one Service. With it the canary
    /// gets its own Service `<app>-canary` and runs the pods its weight needs (at least one); the
    /// stable side keeps all its pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<super::routing::TrafficRouting>,
}

/// `progressDeadlineSeconds` when the spec sets none (the Deployment's own default).
pub const DEFAULT_PROGRESS_DEADLINE_SECS: i64 = 600;

impl UpgradeStrategy {
    /// How long new pods may take to become ready: `progressDeadlineSeconds`, or the Deployment's
    /// default. The planner's deadline, the engine's and the Deployment's are this one.
    pub fn progress_deadline_secs(&self) -> i64 {
        self.progress_deadline_seconds
            .map_or(DEFAULT_PROGRESS_DEADLINE_SECS, i64::from)
    }
}

/// The kinds of rollout.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum StrategyType {
    /// Replace pods gradually, gated by readiness.
    #[default]
    Rolling,
    /// Rolling, with a migration Job that must succeed first (`migrationJob` is required).
    RollingWithMigration,
    /// Stop every old pod, then start the new ones.
    Recreate,
    /// Shift a share of pods (and so of traffic) to the new version in steps.
    Canary,
    /// Run the new version fully beside the old, then switch the Service at once.
    BlueGreen,
}

impl fmt::Display for StrategyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            StrategyType::Rolling => "Rolling",
            StrategyType::RollingWithMigration => "RollingWithMigration",
            StrategyType::Recreate => "Recreate",
            StrategyType::Canary => "Canary",
            StrategyType::BlueGreen => "BlueGreen",
        };
        f.write_str(s)
    }
}

/// The database migration run before a rollout, as a Job `<app>-migration-<version>`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MigrationJob {
    /// The migration's image. Without a tag it runs `<image>:<spec.version>`, so that a version bump
    /// is one line; with a tag (or a digest) it runs as written.
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    /// How long the Job may run before it is failed. Defaults to 600.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub active_deadline_seconds: Option<i64>,
    /// Retries of a failed migration pod. Defaults to 0: a migration that fails is not run twice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 10))]
    pub backoff_limit: Option<i32>,
    /// The down-migration run when an upgrade that ran this migration is rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<DownMigration>,
}

/// A down-migration: by default the migration's image with another command.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownMigration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
}

/// An HTTP health check.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    pub http_get: HttpGet,
    /// Seconds after a pod is ready before the first check. Defaults to 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub initial_delay_seconds: Option<i32>,
    /// Seconds between checks. Defaults to 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub period_seconds: Option<i32>,
    /// Seconds one check may take. Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub timeout_seconds: Option<i32>,
    /// Consecutive failures that fail the upgrade. Defaults to 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub failure_threshold: Option<i32>,
    /// Consecutive successes that pass the check. Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub success_threshold: Option<i32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpGet {
    /// The request path: `/`, then visible ASCII other than `"` `<` `>` `` ` ``. Percent-encode
    /// those, spaces, control characters and anything beyond ASCII.
    #[schemars(regex(pattern = crate::names::HTTP_PATH_PATTERN))]
    pub path: String,
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Scheme {
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
}

/// Canary steps.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// Whether the rollout goes by these steps. Defaults to true when `type` is Canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub steps: Vec<CanaryStep>,
}

/// One canary step: shift `weight` percent to the new version, check it, then wait `pause`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percent of pods (and so of traffic) on the new version, 0 to 100.
    #[schemars(range(min = 0, max = 100))]
    pub weight: i32,
    /// How long to wait after the step is healthy: seconds (`300`), a duration (`5m`, `1h30m`), or
    /// `untilPromoted` to wait for `bosun promote`. No pause: go on at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    /// Metrics that judge this step: measured while it is checked and paused; it passes once they
    /// pass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
}

/// Settings of the BlueGreen type.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenSpec {
    /// Switch the active Service as soon as the new side is healthy. Defaults to true; false waits for
    /// `bosun promote`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_promote: Option<bool>,
    /// Seconds the old side keeps running after the switch, for a fast switch back. Defaults to 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub scale_down_delay_seconds: Option<i32>,
}

/// Where an upgrade is, as seed 002 names the phases.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    Pending,
    Migrating,
    Deploying,
    HealthChecking,
    Healthy,
    Failed,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Phase::Pending => "Pending",
            Phase::Migrating => "Migrating",
            Phase::Deploying => "Deploying",
            Phase::HealthChecking => "HealthChecking",
            Phase::Healthy => "Healthy",
            Phase::Failed => "Failed",
        };
        f.write_str(s)
    }
}

/// What Bosun observed and where the upgrade stands: enough to resume after a restart.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct ManagedApplicationStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The version serving now (the stable side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_version: Option<String>,
    /// The version being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// The last version that completed an upgrade: the rollback target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_healthy_version: Option<String>,
    /// A version that failed and was rolled back; not retried until `spec.version` changes again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_version: Option<String>,
    /// Percent of pods on the target version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<i32>,
    /// Index of the canary step in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_index: Option<i32>,
    /// When the current pause began, to the microsecond (a pause never ends early by rounding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_start_time: Option<MicroTime>,
    /// A human-readable summary of where the upgrade stands or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Standard conditions, one per type (a map list, so that separate writers can own separate types).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The git commit whose definition asked for `targetVersion` (the source's `bosun.dev/revision`
    /// when the upgrade started): where commit statuses and the pull request comment go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_revision: Option<String>,
    /// The transitions of the current (or last) upgrade, oldest first; reset when a new target starts,
    /// at most 50 entries. What the pull request comment and the git note are rendered from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
    /// The active health checks of the stage being checked: kept here so that a restarted Bosun resumes
    /// the count (consecutive passes and failures) instead of starting it over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheckStatus>,
    /// The revision serving now (the stable side): the hash of everything that shapes the pods and
    /// the migration (`bosun_core::engine::revision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_hash: Option<String>,
    /// The revision being rolled out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_hash: Option<String>,
    /// The last revision that completed an upgrade: what a rollback restores, byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_healthy_hash: Option<String>,
    /// A revision that failed and was rolled back; not retried until the spec's revision changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_hash: Option<String>,
    /// Revisions that reached Healthy, oldest first, at most 10: going back to one of them is rolled
    /// out directly, without canary steps or its up-migration (a rollback window). Each is kept as a
    /// `ControllerRevision` `<app>-<hash>` owned by the app.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub healthy_revisions: Vec<HealthyRevision>,
    /// The down-migrations of versions whose up-migration succeeded, oldest first, at most 10: what
    /// Bosun runs when it leaves such a version by a rollback or a revert.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub down_migrations: Vec<DownMigrationRecord>,
    /// The down-migration to run now (or running): Job `<app>-migration-down-<version>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down_migration: Option<DownMigrationRecord>,
    /// Seconds of the current pause that had passed when `spec.paused` froze it; the pause resumes
    /// with what remains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_elapsed_seconds: Option<i64>,
    /// The revision (hash) a human started outside its upgrade windows (`bosun promote --now`): its
    /// upgrade goes on regardless of windows, steps included. Cleared when the next upgrade starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_override: Option<String>,
    /// The git commit whose upgrade of this app failed (or was rolled back with its group): kept
    /// until the next upgrade starts, so that the apps it depends on and that depend on it roll back
    /// with it even after git has been set back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_revision: Option<String>,
    /// The metric analysis of the current (or last) upgrade, one run per metric and stage: what was
    /// measured, so that a restart neither repeats nor forgets a measurement. Reset when a new
    /// upgrade starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub analysis_runs: Vec<AnalysisRun>,
}

/// A revision that reached Healthy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthyRevision {
    /// Its hash: the `ControllerRevision` `<app>-<hash>` holds it whole.
    pub hash: String,
    pub version: String,
    /// The git commit whose definition asked for it (`bosun.dev/revision` when it started), if any:
    /// what a rollback commit restores the app's document to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The identity of its up-migration (`Revision::migration_hash`), if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migration_hash: Option<String>,
}

/// Where the active health checks of one stage stand.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckStatus {
    /// When the checked pods were all ready: the initial delay counts from here.
    pub since: Time,
    /// When the pods were last probed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_probe_time: Option<Time>,
    /// Consecutive rounds in which every pod passed.
    #[serde(default)]
    pub passes: i32,
    /// Pods whose latest probes failed, with their consecutive failures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failing_pods: Vec<PodFailures>,
}

/// Consecutive failed probes of one pod.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodFailures {
    pub pod: String,
    pub failures: i32,
    /// The latest failure, for humans (`HTTP 500`, `connection refused`, `timed out after 1 s`).
    pub last_error: String,
}

/// A down-migration as it was configured when the version's up-migration ran.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownMigrationRecord {
    /// The version whose migration it undoes.
    pub version: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
}

impl ManagedApplicationStatus {
    /// Why the upgrade failed: the message of its first Failed transition (later messages say how the
    /// rollback went), else the status message.
    pub fn failure_reason(&self) -> String {
        self.history
            .iter()
            .find(|h| h.phase == Phase::Failed)
            .map(|h| h.message.clone())
            .or_else(|| self.message.clone())
            .unwrap_or_default()
    }

    /// The record of the last healthy revision, if it is still kept.
    pub fn last_healthy(&self) -> Option<&HealthyRevision> {
        let hash = self.last_healthy_hash.as_deref()?;
        self.healthy_revisions.iter().rev().find(|r| r.hash == hash)
    }

    /// Whether a revision reached Healthy before (and is still kept).
    pub fn was_healthy(&self, hash: &str) -> bool {
        self.healthy_revisions.iter().any(|r| r.hash == hash)
    }
}

/// One transition of an upgrade, as recorded in `status.history`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The phase entered.
    pub phase: Phase,
    /// When it was entered.
    pub time: Time,
    /// The canary step (0-based) this entry belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<i32>,
    /// The canary weight at that moment, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// What happened, for humans.
    pub message: String,
}
