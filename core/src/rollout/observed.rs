//! What the executor observed of the app's Deployments, migration Jobs, probes and annotations, and
//! the one gate every side's rollout passes: ready, stalled (past the progress deadline) or rolling.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::RECHECK_SECS;
use crate::engine::health::Probe;

/// Which Deployment of the app an action is about: `<app>` (stable), `<app>-canary` or `<app>-preview`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Stable,
    Canary,
    Preview,
}

/// What the executor saw of one Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadObs {
    pub version: String,
    /// The revision hash its pods run (`bosun.dev/revision-hash`).
    pub hash: String,
    pub replicas: i32,
    pub ready: i32,
    /// The Deployment's progress deadline passed (condition Progressing=False, ProgressDeadlineExceeded).
    pub stalled: bool,
    /// When the Deployment controller last saw it progress (the `lastUpdateTime` of its Progressing
    /// condition while that is True).
    pub progressed_at: Option<Time>,
    /// Its pods of `hash` that are ready, by the executor's own watch of pods: counted only when the
    /// Deployment [may have stalled](Self::may_have_stalled), else 0. A busy controller-manager can
    /// leave a Deployment's status minutes behind its pods.
    pub pods_ready: i32,
}

impl WorkloadObs {
    pub(super) fn runs(&self, hash: &str, replicas: i32) -> bool {
        self.hash == hash && self.replicas == replicas && self.ready >= replicas
    }

    /// Whether its pods may be worth counting ([`Self::pods_ready`]): not all ready by the
    /// Deployment's status, and no progress from the controller for `deadline_secs` (or none yet).
    pub fn may_have_stalled(&self, deadline_secs: i64, now: &Time) -> bool {
        self.ready < self.replicas
            && (self.progressed_at.is_none() || self.stalled(deadline_secs, None, now))
    }

    /// Whether the rollout of this side made no progress for `deadline_secs`. The Deployment
    /// controller says so (ProgressDeadlineExceeded), but not always: when a Recreate rollout's
    /// "Created new replica set" status update loses a conflict, or when a canary is only scaled up,
    /// its Progressing condition keeps the previous rollout's NewReplicaSetAvailable and the controller
    /// takes the Deployment for complete and never times it out. So Bosun keeps its own clock as well,
    /// from the later of the stage's start (`stage_since`) and the controller's last sign of progress.
    pub(super) fn stalled(
        &self,
        deadline_secs: i64,
        stage_since: Option<&Time>,
        now: &Time,
    ) -> bool {
        if self.stalled {
            return true;
        }
        deadline_at(deadline_secs, [stage_since, self.progressed_at.as_ref()])
            .is_some_and(|at| now.0.as_millisecond() > at)
    }
}

/// When Bosun's own progress clock runs out (in ms since the epoch): `deadline_secs` after the later
/// of a stage's start and the controller's last sign of progress, as far as they are known.
fn deadline_at(deadline_secs: i64, since: [Option<&Time>; 2]) -> Option<i64> {
    let since = since
        .into_iter()
        .flatten()
        .map(|t| t.0.as_millisecond())
        .max()?;
    Some(since.saturating_add(deadline_secs.saturating_mul(1000)))
}

/// What the executor saw of a migration Job.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum JobObs {
    #[default]
    Absent,
    Running,
    Succeeded,
    Failed {
        reason: String,
    },
    /// A Job of that name exists but was made for another migration (the same version with another
    /// migration spec, or another cycle): never taken as this migration's result.
    Foreign,
}

/// Everything [`decide`] needs to know of the cluster and of the app's annotations.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Observed {
    pub stable: Option<WorkloadObs>,
    pub canary: Option<WorkloadObs>,
    pub preview: Option<WorkloadObs>,
    /// The up-migration Job of `spec.version`.
    pub migration: JobObs,
    /// The Job of `status.downMigration` (`Absent` when there is none).
    pub down_migration: JobObs,
    /// The version whose down-migration Job `down_migration` is: a Job observed for another record
    /// is never taken as this one's result.
    pub down_migration_of: Option<String>,
    /// This round's HTTP probes of the ready pods of the side [`probe_target`] named; empty when no
    /// round was due.
    pub probes: Vec<Probe>,
    /// A human promoted the current step (`bosun.dev/promote-step` equals `status.stepIndex`).
    pub promoted: bool,
    /// The app's `bosun.dev/revision` annotation: the git commit that asked for this spec.
    pub revision: Option<String>,
    /// The app's `bosun.dev/abort` annotation.
    pub abort: Option<String>,
    /// The app's `bosun.dev/retry` annotation.
    pub retry: Option<String>,
    /// The app's `bosun.dev/promote-now` annotation: the version to start outside its windows.
    pub promote_now: Option<String>,
    /// The apps of `spec.dependsOn`, as found, in the order the spec names them.
    pub dependencies: Vec<DependencyObs>,
    /// The dependency cycle this app is part of (`a → b → a`), if any: its upgrades cannot start.
    pub cycle: Option<String>,
    /// The apps of this app's group (dependencies and dependents, `rollbackTogether`) whose upgrade
    /// from the same commit as this app's failed.
    pub group_failures: Vec<GroupFailure>,
    /// This round's measurements of the metric analysis ([`super::analyze::due`]); empty when none
    /// was due.
    pub measurements: Vec<super::analyze::Measured>,
}

/// One app of `spec.dependsOn`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DependencyObs {
    /// `namespace/name`.
    pub key: String,
    pub state: DependencyState,
}

impl DependencyObs {
    /// What an upgrade waits for in it, as messages say it (`shop/db-api (Deploying)`); `None`
    /// when it holds nothing up.
    pub fn waits_for(&self) -> Option<String> {
        match &self.state {
            DependencyState::Missing => Some(format!("{} (not found)", self.key)),
            DependencyState::Waiting(at) => Some(format!("{} ({at})", self.key)),
            DependencyState::Unrelated | DependencyState::Ready => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DependencyState {
    /// No such app.
    Missing,
    /// Not changed by the commit this app's spec comes from: not waited for.
    Unrelated,
    /// Changed by the same commit, and Healthy at what it asks for.
    Ready,
    /// Changed by the same commit, not Healthy at it yet: where it stands (its phase).
    Waiting(String),
}

/// An app of the group whose upgrade from the same commit failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupFailure {
    /// `namespace/name`.
    pub key: String,
    /// It depends on this app (else this app depends on it).
    pub dependent: bool,
    /// Its own rollback is over: an app it depends on rolls back only then (reverse order).
    pub settled: bool,
}

/// What the progress deadline of a Deploying stage is measured with.
pub(super) struct DeadlineClock {
    pub deadline: i64,
    pub since: Option<Time>,
    pub now: Time,
}

/// The longest a rollout on its way goes unlooked at: a guard, should a wake-up be lost.
const ROLLING_RECHECK_MAX_SECS: i64 = 60;

impl DeadlineClock {
    /// When a rollout on its way is looked at again. Each change of its Deployment wakes the app
    /// (the executor watches them), so only its deadline needs a timer: just past it, at least
    /// [`RECHECK_SECS`] and at most [`ROLLING_RECHECK_MAX_SECS`] from now. (A look every few seconds
    /// made 10,000 rolling apps 2,000 reconciles a second, for nothing.)
    fn recheck_secs(&self, side: Option<&WorkloadObs>) -> u64 {
        let progressed = side.and_then(|w| w.progressed_at.as_ref());
        let deadline_at = deadline_at(self.deadline, [self.since.as_ref(), progressed]);
        let secs = deadline_at.map_or(ROLLING_RECHECK_MAX_SECS, |at| {
            (at - self.now.0.as_millisecond()).div_euclid(1000) + 1
        });
        let least = i64::try_from(RECHECK_SECS).unwrap_or(i64::MAX);
        secs.clamp(least, ROLLING_RECHECK_MAX_SECS).unsigned_abs()
    }
}

/// Where the rollout of one side stands.
pub(super) enum Rollout {
    /// Every pod of the version is ready.
    Ready,
    /// No progress for the progress deadline ([`WorkloadObs::stalled`]).
    Stalled,
    /// On its way: looked at again in `recheck_secs` ([`DeadlineClock::recheck_secs`]), or at the
    /// next change of its Deployment.
    Rolling { recheck_secs: u64 },
    /// Its pods of the version are all ready, but the Deployment controller has not counted them
    /// (a busy controller-manager): the version is not at fault, and is waited for.
    Behind,
}

pub(super) fn rollout(
    side: Option<&WorkloadObs>,
    hash: &str,
    replicas: i32,
    c: &DeadlineClock,
) -> Rollout {
    match side {
        Some(w) if w.runs(hash, replicas) => Rollout::Ready,
        // Its pods are ready: the Deployment controller is behind (a busy controller-manager), and
        // the version is not at fault. It is waited for, never rolled back for the delay.
        Some(w) if w.hash == hash && replicas > 0 && w.pods_ready >= replicas => Rollout::Behind,
        Some(w) if w.stalled(c.deadline, c.since.as_ref(), &c.now) => Rollout::Stalled,
        _ => Rollout::Rolling {
            recheck_secs: c.recheck_secs(side),
        },
    }
}
