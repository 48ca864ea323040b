//! What a decision asks the executor to do, and what it tells (the transition, for an Event, a
//! history entry and a pull-request comment update).

use super::Role;
use super::revision::RevisionRef;
use crate::model::{DownMigrationRecord, ManagedApplicationStatus, Phase};

/// One thing for an executor to do. Each is idempotent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the Job `<app>-migration-<version>` unless it exists.
    RunMigration { version: String },
    /// Create the Job `<app>-migration-down-<version>` unless it exists.
    RunDownMigration { record: DownMigrationRecord },
    /// Make the Deployment of `role` run `revision` with `replicas` pods (with `Preview`, also the
    /// preview Service). The target revision is built from the spec; any other from its kept
    /// `ControllerRevision`, byte for byte.
    Run {
        role: Role,
        revision: RevisionRef,
        replicas: i32,
    },
    /// Keep the spec's revision as the `ControllerRevision` `<app>-<hash>` unless it is kept already.
    SaveRevision { revision: RevisionRef },
    /// Delete the app's `ControllerRevision`s but these.
    PruneRevisions { keep: Vec<String> },
    /// Remove the Deployment of `role` (with `Preview`, also the preview Service).
    Remove { role: Role },
    /// The active Service `<app>` selects the pods of this revision only, or every pod of the app
    /// (`None`: stable and canary share the traffic by pod count).
    Serve { revision: Option<RevisionRef> },
    /// Set the canary's share of traffic at the app's router (`upgradeStrategy.trafficRouting`), in
    /// percent; 0 removes the canary backend: the route reads as the user wrote it.
    Route { weight: i32 },
    /// Delete a migration Job of an earlier cycle, so that the next run of it is a fresh Job.
    DeleteJob { kind: JobKind, version: String },
    /// Remove an annotation of the app that has been acted on.
    ClearAnnotation { name: &'static str },
}

/// The two migration Jobs of a version: `<app>-migration-<version>` and `<app>-migration-down-<version>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobKind {
    Up,
    Down,
}

/// A change worth an Event, a history entry and a PR-comment update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Option<Phase>,
    pub to: Phase,
    /// The Event's reason: the phase entered, or what happened within it (`DownMigrationSucceeded`).
    pub reason: String,
    pub message: String,
}

/// What [`decide`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: ManagedApplicationStatus,
    pub actions: Vec<Action>,
    /// Look again after this many seconds even if nothing changes (pauses, probes, running Jobs).
    pub requeue_after: Option<u64>,
    pub transition: Option<Transition>,
}

impl Transition {
    /// Whether a person wants an Event of it: an upgrade starts (or waits to), ends Healthy,
    /// fails, or its rollback moves on. A move between the stages of an upgrade under way
    /// (`Migrating`, `Deploying`, `HealthChecking`, the canary's steps) is not one: it is kept in
    /// `status.history`.
    pub fn is_milestone(&self) -> bool {
        let under_way = |p: Phase| {
            matches!(
                p,
                Phase::Migrating | Phase::Deploying | Phase::HealthChecking
            )
        };
        !(self.from.is_some_and(under_way) && under_way(self.to))
    }
}
