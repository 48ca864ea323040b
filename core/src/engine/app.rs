//! The ManagedApplication upgrade as one pure transition function: [`decide`] takes the spec, the status
//! (where the upgrade stands; it survives restarts), what the executor observed, and the time, and
//! returns the next status and the actions that move the cluster toward it. The executor (`bosun`'s
//! `engine` module) observes, probes, carries the actions out and writes the status.
//!
//! Phases, as seed 002 names them: `Pending → Migrating → Deploying → HealthChecking → Healthy`, or
//! `→ Failed` followed by a rollback to the last healthy version. Within an upgrade, `stepIndex` says
//! which stage runs ([`Stage`]):
//! - canary steps: `Deploying` and `HealthChecking` repeat per step, each step's pause counted from
//!   `pauseStartTime`; a step index equal to the number of steps means "promote": the stable side takes
//!   the new version and the canary is removed;
//! - BlueGreen: step 0 runs the new version fully in `<app>-preview` (behind the preview Service) and
//!   checks it; step 1 is the switch: the active Service selects the new version's pods at once, and the
//!   old side is kept `scaleDownDelaySeconds`; step 2 gives the stable Deployment the new version and
//!   removes the preview. A rollback before the switch never moved the active Service.
//!
//! Also decided here: the fast path (a `spec.version` the stable side already runs is Healthy at once,
//! as after a `git revert` of a version that was rolled back); the rollback window (a version that was
//! healthy before, in `status.healthyVersions`, is rolled out directly: no canary steps, no
//! up-migration, but first the down-migration of the version being left); down-migrations; `spec.paused`
//! (timers frozen and resumed with what remained); abort and retry through annotations; and
//! `status.history`, one entry per transition, from which the git write-back and the pull request
//! comment are rendered.
//!
//! # Down-migrations
//!
//! When an up-migration succeeds and `migrationJob.down` is configured, its down-migration (image,
//! command, args as configured then) is recorded in `status.downMigrations`. It runs, as Job
//! `<app>-migration-down-<version>`:
//! - when that upgrade is rolled back (pods never ready, health checks failing, an abort): after the
//!   failed side is removed and the stable side runs the last healthy version again;
//! - when `spec.version` goes back to a version that was healthy before (a revert): first, before the
//!   older version is rolled out; if it fails, nothing is rolled out.
//!
//! A failed up-migration runs no down-migration (it did not complete). A failed down-migration leaves
//! the app `Failed` with a message that says so; it is not run again (no loop).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

use super::health::{self, Probe, Thresholds, Verdict};
use super::replicas::canary_split;
pub use crate::model::HistoryEntry;
use crate::model::{
    CanaryStep, DownMigrationRecord, ManagedApplicationSpec, ManagedApplicationStatus, Pause,
    Phase, StrategyType,
};

/// Annotation a human sets (through `bosun promote`) to the index of the step to promote: a canary step
/// with `pause: untilPromoted`, or step 0 of a BlueGreen upgrade with `autoPromote: false`.
pub const ANNOTATION_PROMOTE_STEP: &str = "bosun.dev/promote-step";
/// Annotation a human sets (through `bosun abort`) to the target version whose running upgrade must
/// fail and roll back. Another version's name is ignored. Bosun removes it once acted on.
pub const ANNOTATION_ABORT: &str = "bosun.dev/abort";
/// Annotation a human sets (through `bosun retry`) to the failed version to try again from the start.
/// Another version's name is ignored. Bosun removes it once acted on.
pub const ANNOTATION_RETRY: &str = "bosun.dev/retry";

/// The most entries `status.history` keeps (the oldest go first).
pub const HISTORY_CAP: usize = 50;
const HEALTHY_VERSIONS_CAP: usize = 10;
const DOWN_MIGRATIONS_CAP: usize = 10;
const RECHECK_SECS: u64 = 5;
/// `progressDeadlineSeconds` when the spec sets none (the Deployment's own default).
pub const DEFAULT_PROGRESS_DEADLINE_SECS: i64 = 600;
const PAUSED_MESSAGE: &str = "paused: spec.paused is true";

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
    pub replicas: i32,
    pub ready: i32,
    /// The Deployment's progress deadline passed (condition Progressing=False, ProgressDeadlineExceeded).
    pub stalled: bool,
    /// When the Deployment controller last saw it progress (the `lastUpdateTime` of its Progressing
    /// condition while that is True).
    pub progressed_at: Option<Time>,
}

impl WorkloadObs {
    fn runs(&self, version: &str, replicas: i32) -> bool {
        self.version == version && self.replicas == replicas && self.ready >= replicas
    }

    /// Whether the rollout of this side made no progress for `deadline_secs`. The Deployment
    /// controller says so (ProgressDeadlineExceeded), but not always: when a Recreate rollout's
    /// "Created new replica set" status update loses a conflict, or when a canary is only scaled up,
    /// its Progressing condition keeps the previous rollout's NewReplicaSetAvailable and the controller
    /// takes the Deployment for complete and never times it out. So Bosun keeps its own clock as well,
    /// from the later of the stage's start (`stage_since`) and the controller's last sign of progress.
    fn stalled(&self, deadline_secs: i64, stage_since: Option<&Time>, now: &Time) -> bool {
        if self.stalled {
            return true;
        }
        let Some(since) = [stage_since, self.progressed_at.as_ref()]
            .into_iter()
            .flatten()
            .map(|t| t.0)
            .max()
        else {
            return false;
        };
        now.0.as_millisecond() - since.as_millisecond() > deadline_secs.saturating_mul(1000)
    }
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
}

/// Everything [`decide`] needs to know of the cluster and of the app's annotations.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Observed {
    pub stable: Option<WorkloadObs>,
    pub canary: Option<WorkloadObs>,
    pub preview: Option<WorkloadObs>,
    /// The up-migration Job of `spec.version`.
    pub migration: JobObs,
    /// The Job of `status.downMigration` (`Absent` when there is none).
    pub down_migration: JobObs,
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
}

/// One thing for an executor to do. Each is idempotent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the Job `<app>-migration-<version>` unless it exists.
    RunMigration { version: String },
    /// Create the Job `<app>-migration-down-<version>` unless it exists.
    RunDownMigration { record: DownMigrationRecord },
    /// Make the Deployment of `role` run `version` with `replicas` pods (with `Preview`, also the
    /// preview Service).
    Run {
        role: Role,
        version: String,
        replicas: i32,
    },
    /// Remove the Deployment of `role` (with `Preview`, also the preview Service).
    Remove { role: Role },
    /// The active Service `<app>` selects the pods of this version only, or every pod of the app
    /// (`None`: stable and canary share the traffic by pod count).
    Serve { version: Option<String> },
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

/// How the current upgrade goes.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Plan<'a> {
    /// The stable Deployment takes the new version (Rolling, Recreate, a first deployment).
    Direct,
    Canary(&'a [CanaryStep]),
    BlueGreen {
        auto_promote: bool,
        delay: i64,
    },
}

/// The stage of an upgrade at one step index.
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    /// A canary step: `weight` percent of the pods run the new version in `<app>-canary`.
    Canary {
        index: usize,
        weight: i32,
        pause: Option<Pause>,
    },
    /// BlueGreen before the switch: the new version runs fully in `<app>-preview`.
    Preview,
    /// BlueGreen after the switch: the old side is kept for `scaleDownDelaySeconds`.
    Switched,
    /// The stable Deployment takes the new version (and the canary or preview goes).
    Final,
}

fn canary_steps(spec: &ManagedApplicationSpec) -> Option<&[CanaryStep]> {
    let s = &spec.upgrade_strategy;
    let canary = s.canary.as_ref()?;
    let enabled = canary.enabled.unwrap_or(s.type_ == StrategyType::Canary);
    (enabled && !canary.steps.is_empty()).then_some(canary.steps.as_slice())
}

fn plan<'a>(spec: &'a ManagedApplicationSpec, status: &ManagedApplicationStatus) -> Plan<'a> {
    if status.current_version.is_none() {
        return Plan::Direct;
    }
    if spec.upgrade_strategy.type_ == StrategyType::BlueGreen {
        let bg = spec.upgrade_strategy.blue_green.clone().unwrap_or_default();
        return Plan::BlueGreen {
            auto_promote: bg.auto_promote.unwrap_or(true),
            delay: i64::from(bg.scale_down_delay_seconds.unwrap_or(30).max(0)),
        };
    }
    match canary_steps(spec) {
        Some(steps) => Plan::Canary(steps),
        None => Plan::Direct,
    }
}

fn stage_of(plan: Plan<'_>, step: usize) -> Stage {
    match plan {
        Plan::Direct => Stage::Final,
        Plan::Canary(steps) => match steps.get(step) {
            Some(s) => Stage::Canary {
                index: step,
                weight: s.weight,
                pause: s.pause.clone(),
            },
            None => Stage::Final,
        },
        Plan::BlueGreen { .. } => match step {
            0 => Stage::Preview,
            1 => Stage::Switched,
            _ => Stage::Final,
        },
    }
}

/// The stage the app's upgrade is at (meaningful while it is `Deploying` or `HealthChecking`).
pub fn stage(spec: &ManagedApplicationSpec, status: &ManagedApplicationStatus) -> Stage {
    let step = usize::try_from(status.step_index.unwrap_or(0)).unwrap_or(0);
    stage_of(plan(spec, status), step)
}

fn checked_role(stage: &Stage) -> Role {
    match stage {
        Stage::Canary { .. } => Role::Canary,
        Stage::Preview => Role::Preview,
        Stage::Switched | Stage::Final => Role::Stable,
    }
}

/// Which side the executor must probe now, if a round of active health checks is due: the new
/// version's pods of the stage being checked. `None` without a health check, outside
/// `HealthChecking`, while paused, or before the round is due.
pub fn probe_target(
    spec: &ManagedApplicationSpec,
    status: &ManagedApplicationStatus,
    now: &Time,
) -> Option<Role> {
    let hc = spec.upgrade_strategy.health_check.as_ref()?;
    let stage = stage(spec, status);
    // BlueGreen after the switch: the new side serves every request while the old one is kept, and
    // stays watched until the old one goes (Argo Rollouts' post-promotion analysis).
    let switched = status.phase == Some(Phase::Deploying) && stage == Stage::Switched;
    if spec.paused || !(status.phase == Some(Phase::HealthChecking) || switched) {
        return None;
    }
    let state = status.health_check.as_ref()?;
    (health::due_in(&Thresholds::of(hc), state, now) == Some(0)).then(|| match stage {
        Stage::Switched => Role::Preview,
        _ => checked_role(&stage),
    })
}

fn millis_between(from: &MicroTime, to: &Time) -> i64 {
    to.0.as_millisecond() - from.0.as_millisecond()
}

/// Whole seconds a wait of `secs` from `start` has still to run at `now`, rounded up; 0 when it is over.
/// The start is kept to the microsecond, so a wait never ends early.
fn seconds_left(start: &MicroTime, now: &Time, secs: i64) -> i64 {
    let left_ms = secs.saturating_mul(1000) - millis_between(start, now);
    if left_ms <= 0 {
        0
    } else {
        (left_ms + 999) / 1000
    }
}

/// The start of a pause of which `secs` had passed at `now`.
fn seconds_before(now: &Time, secs: i64) -> MicroTime {
    MicroTime(
        k8s_openapi::jiff::Timestamp::from_millisecond(now.0.as_millisecond() - secs * 1000)
            .unwrap_or(now.0),
    )
}

/// The version the active Service selects (BlueGreen) or `None` (every pod of the app).
fn served_version(
    spec: &ManagedApplicationSpec,
    next: &ManagedApplicationStatus,
) -> Option<String> {
    if spec.upgrade_strategy.type_ != StrategyType::BlueGreen {
        return None;
    }
    let target = next.target_version.clone();
    let current = next.current_version.clone();
    match next.phase {
        Some(Phase::Failed) => next.last_healthy_version.clone().or(current).or(target),
        Some(Phase::Deploying) | Some(Phase::HealthChecking)
            if current.is_some() && next.step_index.unwrap_or(0) >= 1 =>
        {
            target
        }
        _ => current.or(target),
    }
}

fn push_capped<T: PartialEq>(list: &mut Vec<T>, item: T, cap: usize) {
    list.retain(|x| *x != item);
    list.push(item);
    if list.len() > cap {
        let extra = list.len() - cap;
        list.drain(..extra);
    }
}

/// What the progress deadline of a Deploying stage is measured with.
struct DeadlineClock {
    deadline: i64,
    since: Option<Time>,
    now: Time,
}

/// Where the rollout of one side stands.
enum Rollout {
    /// Every pod of the version is ready.
    Ready,
    /// No progress for the progress deadline ([`WorkloadObs::stalled`]).
    Stalled,
    /// On its way.
    Rolling,
}

fn rollout(side: Option<&WorkloadObs>, version: &str, replicas: i32, c: &DeadlineClock) -> Rollout {
    match side {
        Some(w) if w.runs(version, replicas) => Rollout::Ready,
        Some(w) if w.stalled(c.deadline, c.since.as_ref(), &c.now) => Rollout::Stalled,
        _ => Rollout::Rolling,
    }
}

/// A side is ready: its health checks start.
fn check_health(
    next: &mut ManagedApplicationStatus,
    now: &Time,
    why: String,
) -> Option<Transition> {
    next.health_check = Some(health::start(now));
    move_to(next, Phase::HealthChecking, why)
}

/// Folds a round of probes into the stage's health-check counts (started now when there are none)
/// and returns the verdict. A stage already Healthy whose round passed again has nothing new to
/// record: a stage waiting a weekend for `bosun promote` must not write its status each period.
fn check_round(
    next: &mut ManagedApplicationStatus,
    t: &Thresholds,
    probes: &[Probe],
    now: &Time,
) -> Verdict {
    let state = next.health_check.get_or_insert_with(|| health::start(now));
    let before = state.clone();
    health::fold(state, probes, now);
    if health::verdict(t, &before) == Verdict::Healthy && probes.iter().all(|p| p.outcome.is_ok()) {
        *state = before;
    }
    health::verdict(t, state)
}

/// The `pods` of `target` missed the progress deadline: the upgrade fails.
fn not_ready(next: &mut ManagedApplicationStatus, target: &str, pods: &str) -> Option<Transition> {
    fail(
        next,
        target,
        "Failed",
        format!("{pods} of {target} did not become ready in time"),
    )
}

/// Sets the phase and message and returns the transition (reason: the phase).
fn move_to(next: &mut ManagedApplicationStatus, to: Phase, message: String) -> Option<Transition> {
    moved(next, to, to.to_string(), message)
}

fn moved(
    next: &mut ManagedApplicationStatus,
    to: Phase,
    reason: String,
    message: String,
) -> Option<Transition> {
    let t = Transition {
        from: next.phase,
        to,
        reason,
        message: message.clone(),
    };
    next.phase = Some(to);
    next.message = Some(message);
    Some(t)
}

/// Fails the upgrade of `target`: the rollback follows. The down-migration of the target's
/// up-migration, when one ran in this upgrade, is queued to run once the failed side is gone.
fn fail(
    next: &mut ManagedApplicationStatus,
    target: &str,
    reason: &str,
    why: String,
) -> Option<Transition> {
    next.failed_version = Some(target.into());
    next.canary_weight = Some(0);
    next.pause_start_time = None;
    next.health_check = None;
    let mut message = why;
    // A version in healthyVersions was rolled out without its up-migration: nothing to undo.
    if !next.healthy_revisions.iter().any(|r| r.version == target)
        && let Some(i) = next
            .down_migrations
            .iter()
            .position(|r| r.version == target)
    {
        let record = next.down_migrations.remove(i);
        message.push_str(&format!(
            "; the down-migration of {target} runs once the rollback is done"
        ));
        next.down_migration = Some(record);
    }
    moved(next, Phase::Failed, reason.into(), message)
}

/// The rollback, and after it the pending down-migration: every round while the app is Failed.
fn roll_back(
    spec: &ManagedApplicationSpec,
    next: &mut ManagedApplicationStatus,
    observed: &Observed,
    actions: &mut Vec<Action>,
    requeue_after: &mut Option<u64>,
) -> Option<Transition> {
    let replicas = spec.replicas.unwrap_or(1);
    let back = next
        .last_healthy_version
        .clone()
        .or(next.current_version.clone());
    if let Some(v) = &back {
        actions.push(Action::Run {
            role: Role::Stable,
            version: v.clone(),
            replicas,
        });
    }
    if observed.canary.is_some() {
        actions.push(Action::Remove { role: Role::Canary });
    }
    if observed.preview.is_some() {
        actions.push(Action::Remove {
            role: Role::Preview,
        });
    }
    let record = next.down_migration.clone()?;
    let done = observed.canary.is_none()
        && observed.preview.is_none()
        && back.as_ref().is_none_or(|v| {
            observed
                .stable
                .as_ref()
                .is_some_and(|s| s.runs(v, replicas))
        });
    if !done {
        *requeue_after = Some(RECHECK_SECS);
        return None;
    }
    let v = record.version.clone();
    let back = back.unwrap_or_else(|| "nothing".into());
    match &observed.down_migration {
        JobObs::Absent | JobObs::Running => {
            if observed.down_migration == JobObs::Absent {
                // Its up-migration must run afresh should the version come again.
                actions.push(Action::DeleteJob {
                    kind: JobKind::Up,
                    version: v.clone(),
                });
            }
            actions.push(Action::RunDownMigration { record });
            *requeue_after = Some(RECHECK_SECS);
            None
        }
        JobObs::Succeeded => {
            next.down_migration = None;
            next.healthy_revisions.retain(|h| h.version != v);
            moved(
                next,
                Phase::Failed,
                "DownMigrationSucceeded".into(),
                format!("rolled back to {back}; the down-migration of {v} succeeded"),
            )
        }
        JobObs::Failed { reason } => {
            next.down_migration = None;
            moved(
                next,
                Phase::Failed,
                "DownMigrationFailed".into(),
                format!(
                    "rolled back to {back}, but the down-migration of {v} failed ({reason}): the \
                     database may still have {v}'s schema; fix it by hand (see the Job labelled \
                     type=migration-down), it is not run again"
                ),
            )
        }
    }
}

/// Ends a decision: the history entry of the transition, the active Service's selector.
fn finish(
    spec: &ManagedApplicationSpec,
    mut next: ManagedApplicationStatus,
    mut actions: Vec<Action>,
    requeue_after: Option<u64>,
    transition: Option<Transition>,
    now: &Time,
) -> Decision {
    if let Some(t) = &transition {
        next.history.push(HistoryEntry {
            phase: t.to,
            time: now.clone(),
            step: next.step_index,
            weight: next.canary_weight,
            message: t.message.clone(),
        });
        if next.history.len() > HISTORY_CAP {
            let extra = next.history.len() - HISTORY_CAP;
            next.history.drain(..extra);
        }
    }
    actions.push(Action::Serve {
        version: served_version(spec, &next),
    });
    Decision {
        status: next,
        actions,
        requeue_after,
        transition,
    }
}

/// Decides the next step of one app. Pure: no client, no clock (`now` is given).
pub fn decide(
    spec: &ManagedApplicationSpec,
    status: &ManagedApplicationStatus,
    observed: &Observed,
    now: &Time,
) -> Decision {
    let replicas = spec.replicas.unwrap_or(1);
    let target = spec.version.as_str();
    let mut next = status.clone();
    let mut actions = Vec::new();
    let mut requeue_after = None;
    let mut transition = None;

    // Paused: nothing moves; a running pause remembers how much of it had passed.
    if spec.paused {
        if let Some(start) = next.pause_start_time.take() {
            // Whole seconds, rounded down: what is left of the pause is never cut short.
            next.paused_elapsed_seconds = Some((millis_between(&start, now) / 1000).max(0));
        }
        next.message = Some(PAUSED_MESSAGE.into());
        return Decision {
            status: next,
            actions,
            requeue_after: None,
            transition: None,
        };
    }
    if let Some(elapsed) = next.paused_elapsed_seconds.take() {
        next.pause_start_time = Some(seconds_before(now, elapsed));
    }
    if next.message.as_deref() == Some(PAUSED_MESSAGE) {
        next.message = Some("resumed: spec.paused is false".into());
    }

    let current = status.current_version.clone();

    // Retry: a human asks for the failed version again, from the start.
    let retry = observed.retry.as_deref() == Some(target)
        && status.phase == Some(Phase::Failed)
        && status.failed_version.as_deref() == Some(target)
        && status.down_migration.is_none();
    if retry {
        actions.push(Action::ClearAnnotation {
            name: ANNOTATION_RETRY,
        });
        for kind in [JobKind::Up, JobKind::Down] {
            actions.push(Action::DeleteJob {
                kind,
                version: target.into(),
            });
        }
        next.failed_version = None;
    }

    // A version that failed is not retried until spec.version changes again: the rollback holds, and
    // the down-migration of the failed upgrade runs.
    if !retry
        && status.phase == Some(Phase::Failed)
        && status.failed_version.as_deref() == Some(target)
    {
        let t = roll_back(spec, &mut next, observed, &mut actions, &mut requeue_after);
        return finish(spec, next, actions, requeue_after, t, now);
    }

    // Steady: the target runs.
    if !retry
        && current.as_deref() == Some(target)
        && status.target_version.as_deref() == Some(target)
    {
        if status.phase != Some(Phase::Healthy) {
            transition = move_to(&mut next, Phase::Healthy, format!("{target} is healthy"));
        }
        actions.push(Action::Run {
            role: Role::Stable,
            version: target.into(),
            replicas,
        });
        if observed.canary.is_some() {
            actions.push(Action::Remove { role: Role::Canary });
        }
        if observed.preview.is_some() {
            actions.push(Action::Remove {
                role: Role::Preview,
            });
        }
        next.canary_weight = None;
        next.step_index = None;
        next.health_check = None;
        return finish(spec, next, actions, requeue_after, transition, now);
    }

    // A new target (the first, one that supersedes a running upgrade, or a retry): start from stable.
    if retry || status.target_version.as_deref() != Some(target) {
        next.target_version = Some(target.into());
        next.target_revision = observed.revision.clone();
        next.history.clear();
        next.step_index = Some(0);
        next.canary_weight = Some(0);
        next.pause_start_time = None;
        next.paused_elapsed_seconds = None;
        next.health_check = None;
        if observed.canary.is_some() {
            actions.push(Action::Remove { role: Role::Canary });
        }
        if observed.preview.is_some() {
            actions.push(Action::Remove {
                role: Role::Preview,
            });
        }
        let runs_already = observed
            .stable
            .as_ref()
            .is_some_and(|s| s.version == target);
        if current.as_deref() == Some(target) && runs_already {
            // The fast path: e.g. a `git revert` after an automatic rollback asks for what runs.
            next.failed_version = None;
            next.canary_weight = None;
            next.step_index = None;
            transition = move_to(
                &mut next,
                Phase::Healthy,
                format!("{target} already runs: nothing to roll out"),
            );
            actions.push(Action::Run {
                role: Role::Stable,
                version: target.into(),
                replicas,
            });
            return finish(spec, next, actions, requeue_after, transition, now);
        }
        let earlier =
            current.is_some() && status.healthy_revisions.iter().any(|r| r.version == target);
        if earlier {
            // The rollback window: straight to the version that was healthy, no canary steps, no
            // up-migration; first the down-migration of the version being left, when it has one.
            if let Plan::Canary(steps) = plan(spec, &next) {
                next.step_index = Some(i32::try_from(steps.len()).unwrap_or(i32::MAX));
            }
            let left = current.clone().unwrap_or_default();
            let record = next
                .down_migrations
                .iter()
                .position(|r| r.version == left)
                .map(|i| next.down_migrations.remove(i));
            transition = match record {
                Some(record) => {
                    next.down_migration = Some(record);
                    move_to(
                        &mut next,
                        Phase::Migrating,
                        format!(
                            "returning to {target}, healthy before: the down-migration of {left} first"
                        ),
                    )
                }
                None => move_to(
                    &mut next,
                    Phase::Deploying,
                    format!("returning to {target}, healthy before: rolled out directly"),
                ),
            };
        } else {
            // A down-migration still pending (of a rolled-back upgrade) runs before anything else.
            let first =
                if spec.upgrade_strategy.migration_job.is_some() || next.down_migration.is_some() {
                    Phase::Migrating
                } else {
                    Phase::Deploying
                };
            let verb = match &status.target_version {
                _ if retry => format!("retrying {target} ({ANNOTATION_RETRY})"),
                Some(old)
                    if status.phase != Some(Phase::Healthy)
                        && status.phase != Some(Phase::Failed) =>
                {
                    format!("{target} supersedes {old}")
                }
                _ => format!("upgrading to {target}"),
            };
            transition = move_to(&mut next, first, verb);
        }
    }

    // Abort: a human fails the running upgrade of this version.
    let running = matches!(
        next.phase,
        Some(Phase::Pending | Phase::Migrating | Phase::Deploying | Phase::HealthChecking)
    );
    // A down-migration under way is not interrupted: the abort waits for it.
    if running && next.down_migration.is_none() && observed.abort.as_deref() == Some(target) {
        actions.push(Action::ClearAnnotation {
            name: ANNOTATION_ABORT,
        });
        transition = fail(&mut next, target, "Aborted", "aborted by a user".into());
    }

    let plan = plan(spec, &next);
    let step = usize::try_from(next.step_index.unwrap_or(0)).unwrap_or(0);
    let stage = stage_of(plan, step);
    let stable_version = current.clone().unwrap_or_else(|| target.into());

    match next.phase.unwrap_or(Phase::Pending) {
        Phase::Pending => {
            transition = move_to(&mut next, Phase::Deploying, format!("deploying {target}"));
        }
        Phase::Migrating => match next.down_migration.clone() {
            // A revert: the version being left is migrated down before the older one runs.
            Some(record) => match &observed.down_migration {
                JobObs::Succeeded => {
                    next.down_migration = None;
                    next.healthy_revisions
                        .retain(|h| h.version != record.version);
                    // A version that was healthy before needs no up-migration; any other does.
                    let earlier = next.healthy_revisions.iter().any(|r| r.version == target);
                    let (to, then) = if earlier || spec.upgrade_strategy.migration_job.is_none() {
                        (Phase::Deploying, format!("deploying {target}"))
                    } else {
                        (Phase::Migrating, format!("migrating up to {target}"))
                    };
                    transition = moved(
                        &mut next,
                        to,
                        "DownMigrationSucceeded".into(),
                        format!("the down-migration of {} succeeded; {then}", record.version),
                    );
                }
                JobObs::Failed { reason } => {
                    next.down_migration = None;
                    transition = fail(
                        &mut next,
                        target,
                        "DownMigrationFailed",
                        format!(
                            "the down-migration of {} failed ({reason}): {target} was not rolled out",
                            record.version
                        ),
                    );
                }
                JobObs::Absent | JobObs::Running => {
                    if observed.down_migration == JobObs::Absent {
                        actions.push(Action::DeleteJob {
                            kind: JobKind::Up,
                            version: record.version.clone(),
                        });
                    }
                    actions.push(Action::RunDownMigration { record });
                    requeue_after = Some(RECHECK_SECS);
                }
            },
            // In a retry's first round the Job seen is the failed one of before, being deleted.
            None => match if retry {
                &JobObs::Absent
            } else {
                &observed.migration
            } {
                JobObs::Succeeded => {
                    // A down Job of an earlier cycle must not pass for this cycle's.
                    actions.push(Action::DeleteJob {
                        kind: JobKind::Down,
                        version: target.into(),
                    });
                    if let Some(m) = &spec.upgrade_strategy.migration_job
                        && let Some(down) = &m.down
                    {
                        let record = DownMigrationRecord {
                            version: target.into(),
                            image: down.image.clone().unwrap_or_else(|| m.image.clone()),
                            command: down.command.clone(),
                            args: down.args.clone(),
                        };
                        next.down_migrations.retain(|r| r.version != target);
                        push_capped(&mut next.down_migrations, record, DOWN_MIGRATIONS_CAP);
                    }
                    transition = move_to(&mut next, Phase::Deploying, "migration succeeded".into());
                }
                JobObs::Failed { reason } => {
                    // Nothing was rolled out: the stable side never changed.
                    transition = fail(
                        &mut next,
                        target,
                        "Failed",
                        format!("migration of {target} failed: {reason}"),
                    );
                }
                JobObs::Absent | JobObs::Running => {
                    actions.push(Action::RunMigration {
                        version: target.into(),
                    });
                    requeue_after = Some(RECHECK_SECS);
                }
            },
        },
        Phase::Deploying => {
            let deadline = spec
                .upgrade_strategy
                .progress_deadline_seconds
                .map_or(DEFAULT_PROGRESS_DEADLINE_SECS, i64::from);
            // When this stage began: its Deploying transition is the last entry of the history.
            let stage_since = status
                .history
                .last()
                .filter(|h| h.phase == Phase::Deploying)
                .map(|h| h.time.clone());
            let clock = DeadlineClock {
                deadline,
                since: stage_since,
                now: now.clone(),
            };
            match &stage {
                Stage::Canary { index, weight, .. } => {
                    let split = canary_split(replicas, *weight);
                    actions.push(Action::Run {
                        role: Role::Stable,
                        version: stable_version,
                        replicas: split.stable,
                    });
                    actions.push(Action::Run {
                        role: Role::Canary,
                        version: target.into(),
                        replicas: split.canary,
                    });
                    next.canary_weight = Some(split.effective_weight());
                    match rollout(observed.canary.as_ref(), target, split.canary, &clock) {
                        Rollout::Ready => {
                            let weight = split.effective_weight();
                            let why = format!("step {} at {weight} %: pods ready", index + 1);
                            transition = check_health(&mut next, now, why);
                        }
                        Rollout::Stalled => {
                            transition = not_ready(&mut next, target, "canary pods")
                        }
                        Rollout::Rolling => requeue_after = Some(RECHECK_SECS),
                    }
                }
                Stage::Preview => {
                    actions.push(Action::Run {
                        role: Role::Stable,
                        version: stable_version,
                        replicas,
                    });
                    actions.push(Action::Run {
                        role: Role::Preview,
                        version: target.into(),
                        replicas,
                    });
                    next.canary_weight = Some(0);
                    match rollout(observed.preview.as_ref(), target, replicas, &clock) {
                        Rollout::Ready => {
                            let why = format!("preview of {target} ready; checking its health");
                            transition = check_health(&mut next, now, why);
                        }
                        Rollout::Stalled => {
                            transition = not_ready(&mut next, target, "preview pods")
                        }
                        Rollout::Rolling => requeue_after = Some(RECHECK_SECS),
                    }
                }
                Stage::Switched => {
                    // The active Service already selects the new version; the old side stays for a
                    // switch back until the delay has passed.
                    let delay = match plan {
                        Plan::BlueGreen { delay, .. } => delay,
                        Plan::Direct | Plan::Canary(_) => 0,
                    };
                    actions.push(Action::Run {
                        role: Role::Stable,
                        version: stable_version.clone(),
                        replicas,
                    });
                    actions.push(Action::Run {
                        role: Role::Preview,
                        version: target.into(),
                        replicas,
                    });
                    next.canary_weight = Some(100);
                    let start = next.pause_start_time.get_or_insert(MicroTime(now.0));
                    let left = seconds_left(start, now, delay);
                    // The new side, now serving, stays health-checked until the old side goes; a failure
                    // switches the active Service back at once (the rollback serves the stable side).
                    let mut due = None;
                    let mut failed = false;
                    if let Some(hc) = &spec.upgrade_strategy.health_check {
                        let t = Thresholds::of(hc);
                        let verdict = check_round(&mut next, &t, &observed.probes, now);
                        let state = next
                            .health_check
                            .as_ref()
                            .expect("check_round keeps a state");
                        due = match verdict {
                            Verdict::Healthy => u64::try_from(t.period).ok(),
                            _ => health::due_in(&t, state, now),
                        };
                        if let Verdict::Unhealthy {
                            pod,
                            error,
                            failures,
                        } = verdict
                        {
                            failed = true;
                            transition = fail(
                                &mut next,
                                target,
                                "Failed",
                                format!(
                                    "health checks of {target} failed after the switch: pod {pod}: \
                                     {error} ({failures} in a row); the active Service is back on \
                                     {stable_version}"
                                ),
                            );
                        }
                    }
                    if failed {
                        // The rollback follows.
                    } else if left == 0 {
                        next.health_check = None;
                        next.pause_start_time = None;
                        next.step_index = Some(2);
                        transition = move_to(
                            &mut next,
                            Phase::Deploying,
                            format!(
                                "scaling down {stable_version}: the stable Deployment takes {target}"
                            ),
                        );
                    } else {
                        let left = u64::try_from(left).unwrap_or(1);
                        requeue_after = Some(due.map_or(left, |d| d.max(1).min(left)));
                    }
                }
                Stage::Final => {
                    // Rolling or Recreate, or the promotion of a canary or a preview: the stable Deployment
                    // takes the target; the canary or preview serves until it is ready.
                    actions.push(Action::Run {
                        role: Role::Stable,
                        version: target.into(),
                        replicas,
                    });
                    match rollout(observed.stable.as_ref(), target, replicas, &clock) {
                        Rollout::Ready => {
                            if observed.canary.is_some() {
                                actions.push(Action::Remove { role: Role::Canary });
                            }
                            if observed.preview.is_some() {
                                actions.push(Action::Remove {
                                    role: Role::Preview,
                                });
                            }
                            let why = format!("{target} rolled out; checking health");
                            transition = check_health(&mut next, now, why);
                        }
                        Rollout::Stalled => transition = not_ready(&mut next, target, "pods"),
                        Rollout::Rolling => requeue_after = Some(RECHECK_SECS),
                    }
                }
            }
        }
        Phase::HealthChecking => {
            let verdict = match &spec.upgrade_strategy.health_check {
                // No active check: readiness (which gated Deploying) is the verdict.
                None => Verdict::Healthy,
                Some(hc) => {
                    let t = Thresholds::of(hc);
                    let v = check_round(&mut next, &t, &observed.probes, now);
                    if v == Verdict::Undecided
                        && let Some(state) = &next.health_check
                    {
                        requeue_after = health::due_in(&t, state, now).map(|s| s.max(1));
                    }
                    v
                }
            };
            match verdict {
                Verdict::Unhealthy {
                    pod,
                    error,
                    failures,
                } => {
                    transition = fail(
                        &mut next,
                        target,
                        "Failed",
                        format!(
                            "health checks of {target} failed: pod {pod}: {error} ({failures} in a row)"
                        ),
                    );
                }
                Verdict::Undecided => {
                    let t = spec
                        .upgrade_strategy
                        .health_check
                        .as_ref()
                        .map(Thresholds::of);
                    if let (Some(t), Some(f)) = (
                        t,
                        next.health_check
                            .as_ref()
                            .and_then(|s| s.failing_pods.iter().max_by_key(|f| f.failures)),
                    ) {
                        next.message = Some(format!(
                            "checking health of {target}: pod {}: {} ({} of {} failures before a \
                             rollback)",
                            f.pod, f.last_error, f.failures, t.failure
                        ));
                    }
                }
                Verdict::Healthy => match &stage {
                    Stage::Canary { index, pause, .. } => {
                        let waited = match (pause, &next.pause_start_time) {
                            (None, _) => true,
                            (Some(Pause::UntilPromoted), _) => observed.promoted,
                            (Some(p), Some(start)) => {
                                let secs = i64::try_from(p.seconds().unwrap_or(0)).unwrap_or(0);
                                let left = seconds_left(start, now, secs);
                                if left > 0 {
                                    requeue_after = u64::try_from(left).ok();
                                }
                                left == 0
                            }
                            (Some(p), None) => {
                                next.pause_start_time = Some(MicroTime(now.0));
                                requeue_after = p.seconds();
                                p.seconds() == Some(0)
                            }
                        };
                        if waited {
                            next.step_index = Some(i32::try_from(index + 1).unwrap_or(i32::MAX));
                            next.pause_start_time = None;
                            next.health_check = None;
                            transition = move_to(
                                &mut next,
                                Phase::Deploying,
                                format!("step {} passed", index + 1),
                            );
                        }
                    }
                    Stage::Preview => {
                        let auto = matches!(
                            plan,
                            Plan::BlueGreen {
                                auto_promote: true,
                                ..
                            }
                        );
                        // The rollback window: a version that was healthy before is switched to once
                        // its preview is healthy, without waiting for a promotion (as Argo Rollouts
                        // skips the pause of a rollback).
                        let window = next.healthy_revisions.iter().any(|r| r.version == target);
                        if auto || observed.promoted || window {
                            let delay = match plan {
                                Plan::BlueGreen { delay, .. } => delay,
                                Plan::Direct | Plan::Canary(_) => 0,
                            };
                            next.step_index = Some(1);
                            next.canary_weight = Some(100);
                            next.pause_start_time = Some(MicroTime(now.0));
                            // The new side stays watched after the switch: a fresh round of checks from now.
                            let watch = spec.upgrade_strategy.health_check.as_ref().map(|hc| {
                                let state = health::start(now);
                                let due = health::due_in(&Thresholds::of(hc), &state, now);
                                (state, due)
                            });
                            let mut wake = u64::try_from(delay).unwrap_or(0);
                            if let Some((_, Some(due))) = &watch {
                                wake = wake.min(*due);
                            }
                            next.health_check = watch.map(|(state, _)| state);
                            requeue_after = Some(wake.max(1));
                            transition = move_to(
                                &mut next,
                                Phase::Deploying,
                                format!(
                                    "switched the active Service to {target}; {stable_version} is kept {delay} s"
                                ),
                            );
                        } else {
                            next.message = Some(format!(
                                "{target} is healthy on the preview; waiting for bosun promote \
                                 ({ANNOTATION_PROMOTE_STEP}: \"0\")"
                            ));
                        }
                    }
                    Stage::Switched | Stage::Final => {
                        next.current_version = Some(target.into());
                        next.last_healthy_version = Some(target.into());
                        next.failed_version = None;
                        next.canary_weight = None;
                        next.step_index = None;
                        next.health_check = None;
                        next.healthy_revisions.retain(|r| r.version != target);
                        push_capped(
                            &mut next.healthy_revisions,
                            crate::model::HealthyRevision {
                                hash: String::new(),
                                version: target.to_string(),
                                commit: next.target_revision.clone(),
                                migration_hash: None,
                            },
                            HEALTHY_VERSIONS_CAP,
                        );
                        transition =
                            move_to(&mut next, Phase::Healthy, format!("{target} is healthy"));
                    }
                },
            }
            // A stage that waits (a pause, a promotion) stays watched: its next round wakes it. Once
            // Healthy, its passing rounds are not recorded, so a round is due at every wake-up: one
            // each period.
            if next.phase == Some(Phase::HealthChecking)
                && let (Some(hc), Some(state)) =
                    (&spec.upgrade_strategy.health_check, &next.health_check)
            {
                let t = Thresholds::of(hc);
                let due = match health::verdict(&t, state) {
                    Verdict::Healthy => u64::try_from(t.period).ok(),
                    _ => health::due_in(&t, state, now),
                };
                if let Some(due) = due {
                    let due = due.max(1);
                    requeue_after = Some(requeue_after.map_or(due, |r| r.min(due)));
                }
            }
        }
        Phase::Healthy | Phase::Failed => {}
    }

    // After a failure, roll back at once: stable gets every replica of the last healthy version back.
    if next.phase == Some(Phase::Failed) {
        actions.retain(|a| matches!(a, Action::ClearAnnotation { .. } | Action::DeleteJob { .. }));
        requeue_after = None;
        if let Some(t) = roll_back(spec, &mut next, observed, &mut actions, &mut requeue_after) {
            transition = Some(t);
        }
    }
    finish(spec, next, actions, requeue_after, transition, now)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::model::{
        BlueGreenSpec, CanarySpec, CanaryStep, DownMigration, HealthCheck, HttpGet, MigrationJob,
        Pause, UpgradeStrategy,
    };

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + secs).expect("valid time"))
    }

    fn spec(version: &str) -> ManagedApplicationSpec {
        ManagedApplicationSpec {
            version: version.into(),
            paused: false,
            image: None,
            replicas: Some(4),
            ports: None,
            env: None,
            resources: None,
            service: None,
            pod_template: None,
            upgrade_strategy: UpgradeStrategy::default(),
        }
    }

    fn canary(version: &str, steps: &[(i32, Option<Pause>)]) -> ManagedApplicationSpec {
        let mut s = spec(version);
        s.upgrade_strategy.type_ = StrategyType::Canary;
        s.upgrade_strategy.canary = Some(CanarySpec {
            enabled: None,
            steps: steps
                .iter()
                .map(|(w, p)| CanaryStep {
                    weight: *w,
                    pause: p.clone(),
                })
                .collect(),
        });
        s
    }

    fn blue_green(version: &str, auto_promote: Option<bool>) -> ManagedApplicationSpec {
        let mut s = checked(spec(version));
        s.upgrade_strategy.type_ = StrategyType::BlueGreen;
        s.upgrade_strategy.blue_green = Some(BlueGreenSpec {
            auto_promote,
            scale_down_delay_seconds: Some(30),
        });
        s
    }

    fn with_migration(mut s: ManagedApplicationSpec) -> ManagedApplicationSpec {
        s.upgrade_strategy.migration_job = Some(MigrationJob {
            image: "migrate:1".into(),
            command: None,
            args: None,
            env: None,
            active_deadline_seconds: None,
            backoff_limit: None,
            down: None,
        });
        s
    }

    fn with_down_migration(s: ManagedApplicationSpec) -> ManagedApplicationSpec {
        let mut s = with_migration(s);
        if let Some(m) = s.upgrade_strategy.migration_job.as_mut() {
            m.down = Some(DownMigration {
                image: None,
                command: Some(vec!["/migrate".into(), "down".into()]),
                args: None,
            });
        }
        s
    }

    /// An active HTTP check: every 10 s, 3 failures fail, 1 success passes.
    fn checked(mut s: ManagedApplicationSpec) -> ManagedApplicationSpec {
        s.upgrade_strategy.health_check = Some(HealthCheck {
            http_get: HttpGet {
                path: "/health".into(),
                port: 8080,
                scheme: None,
            },
            initial_delay_seconds: None,
            period_seconds: Some(10),
            timeout_seconds: None,
            failure_threshold: Some(3),
            success_threshold: None,
        });
        s
    }

    /// A tiny, obedient cluster: runs what it is told at once, with chosen Job outcomes, and pods that
    /// answer health probes with 500 for one version. Enough to walk the state machine; the real cluster
    /// is for the executor's tests.
    struct World {
        observed: Observed,
        status: ManagedApplicationStatus,
        now: i64,
        jobs: HashMap<(JobKind, String), JobObs>,
        job_outcome: JobObs,
        down_outcome: JobObs,
        unhealthy_version: Option<String>,
        never_ready_version: Option<String>,
        /// The never-ready version's Deployment never reports ProgressDeadlineExceeded (as the
        /// Deployment controller misses it for some Recreate rollouts and scale-ups).
        deadline_unreported: bool,
        /// The unhealthy version answers its checks well until a BlueGreen switch (step 1).
        unhealthy_after_switch: bool,
        phases: Vec<Phase>,
        reasons: Vec<String>,
        jobs_run: Vec<String>,
        probed: Vec<(Role, String)>,
        served: Option<String>,
        /// (version served, stable, preview) each time one of them changed.
        serving: Vec<(Option<String>, Option<String>, Option<String>)>,
    }

    impl World {
        fn new() -> World {
            World {
                observed: Observed::default(),
                status: ManagedApplicationStatus::default(),
                now: 0,
                jobs: HashMap::new(),
                job_outcome: JobObs::Succeeded,
                down_outcome: JobObs::Succeeded,
                unhealthy_version: None,
                never_ready_version: None,
                deadline_unreported: false,
                unhealthy_after_switch: false,
                phases: Vec::new(),
                reasons: Vec::new(),
                jobs_run: Vec::new(),
                probed: Vec::new(),
                served: None,
                serving: Vec::new(),
            }
        }

        fn side(&self, role: Role) -> &Option<WorkloadObs> {
            match role {
                Role::Stable => &self.observed.stable,
                Role::Canary => &self.observed.canary,
                Role::Preview => &self.observed.preview,
            }
        }

        fn step(&mut self, spec: &ManagedApplicationSpec) -> Decision {
            let now = at(self.now);
            // observe, as the executor does
            self.observed.migration = self
                .jobs
                .get(&(JobKind::Up, spec.version.clone()))
                .cloned()
                .unwrap_or_default();
            self.observed.down_migration = self
                .status
                .down_migration
                .as_ref()
                .and_then(|r| self.jobs.get(&(JobKind::Down, r.version.clone())).cloned())
                .unwrap_or_default();
            self.observed.probes = match probe_target(spec, &self.status, &now) {
                Some(role) => {
                    let w = self.side(role).clone().expect("the probed side runs");
                    self.probed.push((role, w.version.clone()));
                    let bad = self.unhealthy_version.as_deref() == Some(w.version.as_str())
                        && (!self.unhealthy_after_switch || self.status.step_index == Some(1));
                    (0..w.ready)
                        .map(|i| Probe {
                            pod: format!("{}-{i}", w.version),
                            outcome: if bad { Err("HTTP 500".into()) } else { Ok(()) },
                        })
                        .collect()
                }
                None => Vec::new(),
            };
            let d = decide(spec, &self.status, &self.observed, &now);
            self.observed.probes.clear();
            self.status = d.status.clone();
            if let Some(t) = &d.transition {
                self.phases.push(t.to);
                self.reasons.push(t.reason.clone());
            }
            for a in &d.actions {
                match a {
                    Action::RunMigration { version } => {
                        let outcome = self.job_outcome.clone();
                        if !self.jobs.contains_key(&(JobKind::Up, version.clone())) {
                            self.jobs_run.push(format!("up {version}"));
                        }
                        self.jobs
                            .entry((JobKind::Up, version.clone()))
                            .or_insert(outcome);
                    }
                    Action::RunDownMigration { record } => {
                        let outcome = self.down_outcome.clone();
                        if !self
                            .jobs
                            .contains_key(&(JobKind::Down, record.version.clone()))
                        {
                            self.jobs_run.push(format!("down {}", record.version));
                        }
                        self.jobs
                            .entry((JobKind::Down, record.version.clone()))
                            .or_insert(outcome);
                    }
                    Action::DeleteJob { kind, version } => {
                        self.jobs.remove(&(*kind, version.clone()));
                    }
                    Action::Run {
                        role,
                        version,
                        replicas,
                    } => {
                        let never = self.never_ready_version.as_deref() == Some(version.as_str());
                        let w = WorkloadObs {
                            version: version.clone(),
                            replicas: *replicas,
                            ready: if never { 0 } else { *replicas },
                            stalled: never && !self.deadline_unreported,
                            progressed_at: None,
                        };
                        match role {
                            Role::Stable => self.observed.stable = Some(w),
                            Role::Canary => self.observed.canary = Some(w),
                            Role::Preview => self.observed.preview = Some(w),
                        }
                    }
                    Action::Remove { role: Role::Canary } => self.observed.canary = None,
                    Action::Remove { role: Role::Stable } => self.observed.stable = None,
                    Action::Remove {
                        role: Role::Preview,
                    } => self.observed.preview = None,
                    Action::Serve { version } => self.served = version.clone(),
                    Action::ClearAnnotation { name } => {
                        if *name == ANNOTATION_ABORT {
                            self.observed.abort = None;
                        }
                        if *name == ANNOTATION_RETRY {
                            self.observed.retry = None;
                        }
                    }
                }
            }
            let seen = (
                self.served.clone(),
                self.observed.stable.as_ref().map(|s| s.version.clone()),
                self.observed.preview.as_ref().map(|s| s.version.clone()),
            );
            if self.serving.last() != Some(&seen) {
                self.serving.push(seen);
            }
            if let Some(secs) = d.requeue_after {
                self.now += secs as i64;
            }
            d
        }

        /// Steps until nothing changes any more and no timed wait runs (or 200 steps).
        fn settle(&mut self, spec: &ManagedApplicationSpec) {
            for _ in 0..200 {
                let before = (
                    self.status.clone(),
                    self.observed.clone(),
                    self.jobs.clone(),
                );
                let d = self.step(spec);
                // A timed wait (a pause, BlueGreen's scale-down delay) is not settled: its end is coming.
                let waiting = d.requeue_after.is_some() && self.status.pause_start_time.is_some();
                if !waiting
                    && (
                        self.status.clone(),
                        self.observed.clone(),
                        self.jobs.clone(),
                    ) == before
                {
                    return;
                }
            }
            panic!("did not settle: {:?}", self.status);
        }

        fn deployed(spec: &ManagedApplicationSpec) -> World {
            let mut w = World::new();
            w.settle(spec);
            assert_eq!(w.status.phase, Some(Phase::Healthy));
            w.phases.clear();
            w.reasons.clear();
            w.jobs_run.clear();
            w.probed.clear();
            w.serving.clear();
            w
        }

        fn stable(&self) -> Option<(&str, i32)> {
            self.observed
                .stable
                .as_ref()
                .map(|s| (s.version.as_str(), s.replicas))
        }
    }
    #[test]
    fn creating_an_app_deploys_its_version_and_checks_its_health() {
        let mut w = World::new();
        w.settle(&with_migration(spec("v1")));
        assert_eq!(
            w.phases,
            [
                Phase::Migrating,
                Phase::Deploying,
                Phase::HealthChecking,
                Phase::Healthy
            ]
        );
        assert_eq!(w.status.current_version.as_deref(), Some("v1"));
        assert_eq!(w.status.last_healthy_version.as_deref(), Some("v1"));
        assert_eq!(w.observed.stable.as_ref().map(|s| s.replicas), Some(4));
    }

    #[test]
    fn a_rolling_upgrade_goes_through_every_phase() {
        let mut w = World::deployed(&spec("v1"));
        w.settle(&with_migration(spec("v2")));
        assert_eq!(
            w.phases,
            [
                Phase::Migrating,
                Phase::Deploying,
                Phase::HealthChecking,
                Phase::Healthy
            ]
        );
        assert_eq!(w.status.current_version.as_deref(), Some("v2"));
    }

    #[test]
    fn a_failed_migration_fails_the_upgrade_and_changes_no_workload() {
        let mut w = World::deployed(&spec("v1"));
        w.job_outcome = JobObs::Failed {
            reason: "BackoffLimitExceeded".into(),
        };
        w.settle(&with_migration(spec("v2")));
        assert_eq!(w.phases, [Phase::Migrating, Phase::Failed]);
        assert_eq!(
            w.observed.stable.as_ref().map(|s| s.version.as_str()),
            Some("v1")
        );
        assert_eq!(w.status.failed_version.as_deref(), Some("v2"));
        assert!(
            w.status
                .message
                .as_deref()
                .is_some_and(|m| m.contains("BackoffLimitExceeded"))
        );
    }

    #[test]
    fn canary_steps_shift_weight_wait_their_pauses_and_promote() {
        let s1 = canary(
            "v1",
            &[
                (25, Some(Pause::Seconds(60))),
                (50, Some(Pause::Seconds(120))),
                (100, None),
            ],
        );
        let mut w = World::deployed(&s1);
        let s2 = canary(
            "v2",
            &[
                (25, Some(Pause::Seconds(60))),
                (50, Some(Pause::Seconds(120))),
                (100, None),
            ],
        );
        let mut weights = Vec::new();
        for _ in 0..40 {
            w.step(&s2);
            if let Some(c) = &w.observed.canary {
                weights.push((
                    c.replicas,
                    w.observed.stable.as_ref().map_or(0, |s| s.replicas),
                ));
            }
            if w.status.phase == Some(Phase::Healthy) {
                break;
            }
        }
        assert_eq!(w.status.phase, Some(Phase::Healthy), "{:?}", w.status);
        weights.dedup();
        // 25 %, 50 %, 100 %, then promotion: the stable side takes v2 at full size while the canary
        // still serves, and only then is the canary removed.
        assert_eq!(
            weights,
            [(1, 3), (2, 2), (4, 0), (4, 4)],
            "canary and stable pods per step"
        );
        assert!(w.now >= 180, "both pauses were waited: {}", w.now);
        assert!(
            w.observed.canary.is_none(),
            "the canary is removed after promotion"
        );
        assert_eq!(
            w.observed
                .stable
                .as_ref()
                .map(|s| (s.version.as_str(), s.replicas)),
            Some(("v2", 4))
        );
    }

    #[test]
    fn canary_with_failing_health_check_rolls_back_to_stable() {
        let mut w = World::deployed(&checked(canary("v1", &[(25, None), (100, None)])));
        w.unhealthy_version = Some("v2".into());
        w.settle(&checked(canary("v2", &[(25, None), (100, None)])));
        assert_eq!(
            w.phases,
            [Phase::Deploying, Phase::HealthChecking, Phase::Failed]
        );
        assert!(w.observed.canary.is_none());
        assert_eq!(
            w.observed
                .stable
                .as_ref()
                .map(|s| (s.version.as_str(), s.replicas)),
            Some(("v1", 4))
        );
        assert_eq!(w.status.failed_version.as_deref(), Some("v2"));
    }

    #[test]
    fn pods_that_never_become_ready_fail_the_rolling_upgrade_and_roll_back() {
        let mut w = World::deployed(&spec("v1"));
        w.never_ready_version = Some("v2-broken".into());
        w.settle(&spec("v2-broken"));
        assert_eq!(w.phases, [Phase::Deploying, Phase::Failed]);
        assert_eq!(
            w.observed.stable.as_ref().map(|s| s.version.as_str()),
            Some("v1")
        );
    }

    /// Steps until the app is Failed, for at most `secs` of simulated time; returns the time it took.
    fn step_until_failed(w: &mut World, spec: &ManagedApplicationSpec, secs: i64) -> i64 {
        let began = w.now;
        while w.status.phase != Some(Phase::Failed) && w.now < began + secs {
            w.step(spec);
        }
        w.now - began
    }

    #[test]
    fn pods_never_ready_fail_at_the_progress_deadline_even_when_the_deployment_does_not_say_so() {
        for strategy in [StrategyType::Rolling, StrategyType::Recreate] {
            let mut v1 = spec("v1");
            v1.upgrade_strategy.type_ = strategy;
            v1.upgrade_strategy.progress_deadline_seconds = Some(30);
            let mut w = World::deployed(&v1);
            w.never_ready_version = Some("v2-broken".into());
            w.deadline_unreported = true;
            let mut v2 = v1.clone();
            v2.version = "v2-broken".into();
            let took = step_until_failed(&mut w, &v2, 600);
            assert_eq!(w.phases, [Phase::Deploying, Phase::Failed], "{strategy:?}");
            assert!(
                (30..=36).contains(&took),
                "{strategy:?}: failed after {took} s"
            );
            assert!(
                w.status
                    .message
                    .as_deref()
                    .unwrap_or("")
                    .contains("ready in time")
            );
            assert_eq!(
                w.stable(),
                Some(("v1", v1.replicas.unwrap_or(1))),
                "{strategy:?}"
            );
        }
    }

    #[test]
    fn a_canary_step_that_only_scales_up_fails_at_the_progress_deadline() {
        let steps = [(50, None), (100, None)];
        let with_two = |version: &str| {
            let mut s = canary(version, &steps);
            s.replicas = Some(2);
            s.upgrade_strategy.progress_deadline_seconds = Some(20);
            s
        };
        let mut w = World::deployed(&with_two("v1"));
        let v2 = with_two("v2");
        while w.status.step_index != Some(1) && w.now < 1000 {
            w.step(&v2);
        }
        assert_eq!(w.status.phase, Some(Phase::Deploying));
        // Step 2 scales the canary from 1 pod to 2; the new pod is never ready, and the Deployment
        // (same template, only scaled) never reports the deadline.
        let c = w.observed.canary.as_mut().expect("a canary");
        (c.replicas, c.ready, c.stalled) = (2, 1, false);
        let began = w.now;
        while w.status.phase == Some(Phase::Deploying) && w.now < began + 600 {
            let d = decide(&v2, &w.status, &w.observed, &at(w.now));
            w.status = d.status;
            w.now += d.requeue_after.unwrap_or(1) as i64;
        }
        assert_eq!(w.status.phase, Some(Phase::Failed), "{:?}", w.status);
        let took = w.now - began;
        assert!((20..=26).contains(&took), "failed after {took} s");
    }

    #[test]
    fn the_progress_deadline_counts_from_the_later_of_the_stage_start_and_the_last_progress() {
        let obs = |stalled, progressed_at: Option<i64>| WorkloadObs {
            version: "v2".into(),
            replicas: 2,
            ready: 1,
            stalled,
            progressed_at: progressed_at.map(at),
        };
        // (controller says stalled, last progress, stage start, now, stalled?)
        let table = [
            (true, None, None, 0, true),
            (false, None, None, 10_000, false),
            (false, None, Some(0), 30, false),
            (false, None, Some(0), 31, true),
            (false, Some(20), Some(0), 31, false),
            (false, Some(20), Some(0), 51, true),
            // A condition left over from the previous rollout, long before this stage.
            (false, Some(-5000), Some(0), 29, false),
            (false, Some(-5000), None, 29, true),
        ];
        for (stalled, progressed, since, now, want) in table {
            let got = obs(stalled, progressed).stalled(30, since.map(at).as_ref(), &at(now));
            assert_eq!(got, want, "{stalled} {progressed:?} {since:?} {now}");
        }
    }

    #[test]
    fn a_failed_version_is_not_retried_until_the_version_changes() {
        let mut w = World::deployed(&checked(spec("v1")));
        w.unhealthy_version = Some("v2".into());
        w.settle(&checked(spec("v2")));
        assert_eq!(w.status.phase, Some(Phase::Failed));
        w.phases.clear();
        for _ in 0..5 {
            w.step(&checked(spec("v2")));
        }
        assert!(w.phases.is_empty(), "no rollback loop: {:?}", w.phases);
        w.unhealthy_version = None;
        w.settle(&checked(spec("v3")));
        assert_eq!(w.status.current_version.as_deref(), Some("v3"));
        assert_eq!(w.status.failed_version, None);
    }

    #[test]
    fn a_step_that_waits_until_promoted_waits_for_a_human() {
        let steps = [(50, Some(Pause::UntilPromoted)), (100, None)];
        let mut w = World::deployed(&canary("v1", &steps));
        for _ in 0..10 {
            w.step(&canary("v2", &steps));
        }
        assert_eq!(w.status.phase, Some(Phase::HealthChecking));
        assert_eq!(w.status.step_index, Some(0));
        w.observed.promoted = true;
        w.settle(&canary("v2", &steps));
        assert_eq!(w.status.current_version.as_deref(), Some("v2"));
    }

    #[test]
    fn paused_freezes_the_upgrade_where_it_is() {
        let steps = [(50, Some(Pause::Seconds(600))), (100, None)];
        let mut w = World::deployed(&canary("v1", &steps));
        for _ in 0..3 {
            w.step(&canary("v2", &steps));
        }
        let frozen = w.status.clone();
        let mut paused = canary("v2", &steps);
        paused.paused = true;
        let d = w.step(&paused);
        assert!(d.actions.is_empty());
        assert_eq!(w.status.step_index, frozen.step_index);
        assert_eq!(w.status.phase, frozen.phase);
    }

    #[test]
    fn a_new_version_during_an_upgrade_supersedes_it_from_stable() {
        let steps = [(50, Some(Pause::Seconds(600))), (100, None)];
        let mut w = World::deployed(&canary("v1", &steps));
        for _ in 0..3 {
            w.step(&canary("v2", &steps));
        }
        assert!(w.observed.canary.is_some());
        let d = w.step(&canary("v3", &steps));
        assert!(
            d.transition
                .is_some_and(|t| t.message == "v3 supersedes v2")
        );
        assert_eq!(
            w.observed.canary.as_ref().map(|c| c.version.as_str()),
            Some("v3"),
            "the canary of v2 is replaced"
        );
        w.settle(&canary("v3", &steps));
        assert_eq!(w.status.current_version.as_deref(), Some("v3"));
        assert_eq!(w.status.last_healthy_version.as_deref(), Some("v3"));
    }

    #[test]
    fn history_records_each_transition_of_the_upgrade_and_its_revision() {
        let mut w = World::deployed(&with_migration(spec("v1")));
        assert_eq!(
            w.status.history.len(),
            4,
            "the first deployment's own history"
        );
        w.observed.revision = Some("abc123".into());
        w.settle(&with_migration(spec("v2")));
        assert_eq!(w.status.target_revision.as_deref(), Some("abc123"));
        let phases: Vec<Phase> = w.status.history.iter().map(|h| h.phase).collect();
        assert_eq!(
            phases,
            [
                Phase::Migrating,
                Phase::Deploying,
                Phase::HealthChecking,
                Phase::Healthy
            ],
            "reset for the new target, one entry per transition"
        );
        assert_eq!(w.status.history[0].message, "upgrading to v2");
        assert_eq!(w.status.history[3].message, "v2 is healthy");
    }

    #[test]
    fn history_keeps_the_latest_fifty_entries() {
        let steps: Vec<(i32, Option<Pause>)> = (1..=40).map(|i| (i * 2, None)).collect();
        let mut w = World::deployed(&canary("v1", &steps));
        w.settle(&canary("v2", &steps));
        assert_eq!(w.status.phase, Some(Phase::Healthy));
        assert_eq!(w.status.history.len(), HISTORY_CAP);
        assert_eq!(
            w.status.history.last().map(|h| h.message.as_str()),
            Some("v2 is healthy")
        );
    }

    #[test]
    fn history_entries_carry_the_step_and_weight() {
        let steps = [(25, None), (100, None)];
        let mut w = World::deployed(&canary("v1", &steps));
        w.settle(&canary("v2", &steps));
        let first_check = w
            .status
            .history
            .iter()
            .find(|h| h.phase == Phase::HealthChecking)
            .expect("a health check entry");
        assert_eq!((first_check.step, first_check.weight), (Some(0), Some(25)));
    }

    #[test]
    fn active_health_checks_probe_the_canary_and_pass_it() {
        let steps = [(25, None), (100, None)];
        let mut w = World::deployed(&checked(canary("v1", &steps)));
        w.settle(&checked(canary("v2", &steps)));
        assert_eq!(w.status.phase, Some(Phase::Healthy));
        assert_eq!(
            w.probed,
            [
                (Role::Canary, "v2".to_string()),
                (Role::Canary, "v2".to_string()),
                (Role::Stable, "v2".to_string())
            ],
            "each step's new pods, then the promoted stable side"
        );
        assert_eq!(w.status.health_check, None, "cleared once decided");
    }

    #[test]
    fn a_failing_health_check_fails_after_the_threshold_and_says_which_pod() {
        let mut w = World::deployed(&checked(spec("v1")));
        w.unhealthy_version = Some("v2".into());
        let start = w.now;
        w.settle(&checked(spec("v2")));
        assert_eq!(w.status.phase, Some(Phase::Failed));
        assert_eq!(w.probed.len(), 3, "failureThreshold rounds");
        assert!(
            w.now - start >= 20,
            "a period between rounds: {}",
            w.now - start
        );
        let message = w.status.message.clone().unwrap_or_default();
        assert!(
            message.contains("pod v2-")
                && message.contains("HTTP 500")
                && message.contains("3 in a row"),
            "{message}"
        );
        assert_eq!(w.stable(), Some(("v1", 4)), "rolled back");
    }

    #[test]
    fn a_canary_that_fails_during_its_pause_rolls_back_before_the_pause_ends() {
        let steps = [(50, Some(Pause::Seconds(600))), (100, None)];
        let mut w = World::deployed(&checked(canary("v1", &steps)));
        let s2 = checked(canary("v2", &steps));
        while w.status.pause_start_time.is_none() {
            w.step(&s2);
        }
        let pause_began = w.now;
        let rounds_before = w.probed.len();
        // Healthy for a while into the pause: it is still probed every period.
        while w.now < pause_began + 100 {
            w.step(&s2);
        }
        assert!(
            w.probed.len() >= rounds_before + 9,
            "watched during the pause: {} rounds in 100 s",
            w.probed.len() - rounds_before
        );
        assert_eq!(w.status.phase, Some(Phase::HealthChecking));
        w.unhealthy_version = Some("v2".into());
        w.settle(&s2);
        assert_eq!(w.status.phase, Some(Phase::Failed));
        assert!(
            w.now - pause_began < 200,
            "failed within its failureThreshold rounds, not at the pause's end: {} s",
            w.now - pause_began
        );
        assert_eq!(w.stable(), Some(("v1", 4)), "rolled back");
        assert!(w.observed.canary.is_none(), "canary removed");
        let message = w.status.message.clone().unwrap_or_default();
        assert!(message.contains("3 in a row"), "{message}");
    }

    #[test]
    fn a_healthy_stage_waiting_for_promotion_is_probed_every_period_without_a_status_write() {
        let steps = [(50, Some(Pause::UntilPromoted)), (100, None)];
        let mut w = World::deployed(&checked(canary("v1", &steps)));
        let s2 = checked(canary("v2", &steps));
        while !(w.status.phase == Some(Phase::HealthChecking)
            && w.status
                .health_check
                .as_ref()
                .is_some_and(|h| h.passes >= 1))
        {
            w.step(&s2);
        }
        let waiting = w.status.clone();
        let (rounds, began) = (w.probed.len(), w.now);
        for _ in 0..30 {
            let d = w.step(&s2);
            assert_eq!(d.requeue_after, Some(10), "a round each period");
        }
        assert_eq!(w.status, waiting, "nothing to write while it passes");
        assert_eq!(w.probed.len() - rounds, 30, "probed at every wake-up");
        assert_eq!(w.now - began, 300);
    }

    #[test]
    fn a_pause_that_began_mid_second_is_not_cut_short() {
        // A start of 10.9 s rounded down to 10 s would let a 60 s pause pass after 59.1 s.
        let steps = [(50, Some(Pause::Seconds(60))), (100, None)];
        let mut w = World::deployed(&canary("v1", &steps));
        let s2 = canary("v2", &steps);
        while w.status.pause_start_time.is_none() {
            w.step(&s2);
        }
        let began = w.status.pause_start_time.clone().expect("a pause");
        let mid_second = began.0.as_millisecond() + 900;
        w.status.pause_start_time = Some(MicroTime(
            k8s_openapi::jiff::Timestamp::from_millisecond(mid_second).expect("a time"),
        ));
        let began_s = began.0.as_second() - at(0).0.as_second();
        w.now = began_s + 60;
        let d = w.step(&s2);
        assert_eq!(w.status.step_index, Some(0), "59.1 s into a 60 s pause");
        assert_eq!(d.requeue_after, Some(1), "what is left, rounded up");
        w.now = began_s + 61;
        w.step(&s2);
        assert_eq!(w.status.step_index, Some(1), "60.1 s: the pause is over");
    }

    #[test]
    fn a_blip_during_a_pause_holds_the_step_until_it_passes_again() {
        let steps = [(50, Some(Pause::Seconds(15))), (100, None)];
        let mut w = World::deployed(&checked(canary("v1", &steps)));
        let s2 = checked(canary("v2", &steps));
        while w.status.pause_start_time.is_none() {
            w.step(&s2);
        }
        let pause_began = w.now;
        w.unhealthy_version = Some("v2".into());
        let failed_rounds_at = w.probed.len();
        while w.probed.len() < failed_rounds_at + 2 {
            w.step(&s2);
        }
        let message = w.status.message.clone().unwrap_or_default();
        assert!(
            message.contains("2 of 3 failures before a rollback"),
            "{message}"
        );
        // The pause has run out meanwhile, but the step waits for a passing round.
        assert!(w.now >= pause_began + 15, "{}", w.now - pause_began);
        assert_eq!(w.status.phase, Some(Phase::HealthChecking));
        assert_eq!(w.status.step_index, Some(0), "held while failing");
        w.unhealthy_version = None;
        w.settle(&s2);
        assert_eq!(w.status.phase, Some(Phase::Healthy));
        assert_eq!(w.stable(), Some(("v2", 4)));
    }

    #[test]
    fn without_a_health_check_readiness_is_the_verdict() {
        let mut w = World::deployed(&spec("v1"));
        w.unhealthy_version = Some("v2".into());
        w.settle(&spec("v2"));
        assert_eq!(w.status.phase, Some(Phase::Healthy));
        assert!(w.probed.is_empty(), "nothing probed");
    }

    #[test]
    fn a_restart_during_health_checks_resumes_the_count() {
        let mut w = World::deployed(&checked(spec("v1")));
        w.unhealthy_version = Some("v2".into());
        let s2 = checked(spec("v2"));
        while w.probed.len() < 2 {
            w.step(&s2);
        }
        // A restarted executor has only the status: the two failures counted so far are in it.
        let saved = w.status.health_check.clone().expect("counts in status");
        assert_eq!(saved.failing_pods.first().map(|f| f.failures), Some(2));
        w.settle(&s2);
        assert_eq!(w.probed.len(), 3, "one more round fails it, not three");
    }

    #[test]
    fn blue_green_runs_the_preview_checks_it_switches_at_once_then_scales_the_old_side_down() {
        let mut w = World::deployed(&blue_green("v1", None));
        assert_eq!(w.served.as_deref(), Some("v1"));
        let mut switch_at = None;
        let mut old_side_gone_at = None;
        let s2 = blue_green("v2", None);
        for _ in 0..100 {
            let before = w.now;
            let d = w.step(&s2);
            let serves_v2 = d.actions.contains(&Action::Serve {
                version: Some("v2".into()),
            });
            if serves_v2 && switch_at.is_none() {
                switch_at = Some(before);
                assert_eq!(
                    w.stable(),
                    Some(("v1", 4)),
                    "the old side is kept after the switch"
                );
            }
            if w.stable() == Some(("v2", 4)) && old_side_gone_at.is_none() {
                old_side_gone_at = Some(before);
            }
            if w.status.phase == Some(Phase::Healthy) {
                break;
            }
        }
        assert_eq!(w.status.current_version.as_deref(), Some("v2"));
        assert_eq!(w.probed.first(), Some(&(Role::Preview, "v2".to_string())));
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            w.serving,
            [
                (some("v1"), some("v1"), some("v2")),
                (some("v2"), some("v1"), some("v2")),
                (some("v2"), some("v2"), some("v2")),
                (some("v2"), some("v2"), None),
            ],
            "(served, stable, preview): the preview is served only after its check, all at once"
        );
        let kept = old_side_gone_at.unwrap_or(0) - switch_at.unwrap_or(0);
        assert!(kept >= 30, "the scale-down delay: {kept} s");
    }

    #[test]
    fn blue_green_failing_after_the_switch_switches_back_at_once_before_the_old_side_goes() {
        let mut w = World::deployed(&blue_green("v1", None));
        w.unhealthy_version = Some("v2".into());
        w.unhealthy_after_switch = true;
        let s2 = blue_green("v2", None);
        let mut switched_at = None;
        for _ in 0..300 {
            if w.status.phase == Some(Phase::Failed) {
                break;
            }
            w.step(&s2);
            if w.served.as_deref() == Some("v2") && switched_at.is_none() {
                switched_at = Some(w.now);
            }
        }
        let switched_at = switched_at.expect("the Service was switched to v2");
        assert_eq!(w.status.phase, Some(Phase::Failed));
        let message = w.status.message.clone().unwrap_or_default();
        assert!(message.contains("after the switch"), "{message}");
        // Three failures 10 s apart, within the 30 s the old side is kept: it never left.
        assert!(w.now - switched_at < 30, "{} s", w.now - switched_at);
        assert!(w.probed.contains(&(Role::Preview, "v2".to_string())));
        w.settle(&s2);
        assert_eq!(
            w.served.as_deref(),
            Some("v1"),
            "the active Service is back on v1"
        );
        assert_eq!(w.stable(), Some(("v1", 4)));
        assert!(w.observed.preview.is_none(), "the green side is removed");
        assert!(
            w.serving
                .iter()
                .all(|(_, stable, _)| stable.as_deref() == Some("v1")),
            "the old side was never scaled down: {:?}",
            w.serving
        );
    }

    #[test]
    fn blue_green_with_an_unhealthy_preview_removes_it_and_never_moves_the_service() {
        let mut w = World::deployed(&blue_green("v1", None));
        w.unhealthy_version = Some("v2".into());
        w.settle(&blue_green("v2", None));
        assert_eq!(w.status.phase, Some(Phase::Failed));
        assert!(
            w.serving
                .iter()
                .all(|(served, _, _)| served.as_deref() == Some("v1"))
        );
        assert!(w.observed.preview.is_none(), "the preview is removed");
        assert_eq!(w.stable(), Some(("v1", 4)));
    }

    #[test]
    fn blue_green_with_a_preview_never_ready_rolls_back() {
        let mut w = World::deployed(&blue_green("v1", None));
        w.never_ready_version = Some("v2-broken".into());
        w.settle(&blue_green("v2-broken", None));
        assert_eq!(w.phases, [Phase::Deploying, Phase::Failed]);
        assert!(w.observed.preview.is_none());
        assert_eq!(w.served.as_deref(), Some("v1"));
    }

    #[test]
    fn blue_green_without_auto_promote_waits_for_a_human() {
        let mut w = World::deployed(&blue_green("v1", Some(false)));
        for _ in 0..20 {
            w.step(&blue_green("v2", Some(false)));
        }
        assert_eq!(w.status.phase, Some(Phase::HealthChecking));
        assert_eq!(w.served.as_deref(), Some("v1"));
        assert!(
            w.status
                .message
                .as_deref()
                .is_some_and(|m| m.contains("waiting for bosun promote"))
        );
        w.observed.promoted = true;
        w.settle(&blue_green("v2", Some(false)));
        assert_eq!(
            w.status.current_version.as_deref(),
            Some("v2"),
            "{:?}",
            w.status
        );
        assert_eq!(w.served.as_deref(), Some("v2"));
    }

    #[test]
    fn blue_green_going_back_to_a_version_healthy_before_needs_no_promotion() {
        let mut w = World::deployed(&blue_green("v1", Some(false)));
        for _ in 0..20 {
            w.step(&blue_green("v2", Some(false)));
        }
        w.observed.promoted = true;
        w.settle(&blue_green("v2", Some(false)));
        assert_eq!(w.status.phase, Some(Phase::Healthy));
        w.observed.promoted = false;
        // `git revert` of the bump: v1 was healthy before.
        w.settle(&blue_green("v1", Some(false)));
        assert_eq!(w.status.phase, Some(Phase::Healthy), "{:?}", w.status);
        assert_eq!(w.status.current_version.as_deref(), Some("v1"));
        assert_eq!(w.served.as_deref(), Some("v1"));
        assert!(
            w.probed
                .iter()
                .any(|(role, v)| *role == Role::Preview && v == "v1"),
            "the preview of v1 was still checked: {:?}",
            w.probed
        );
    }

    #[test]
    fn canary_and_rolling_apps_are_served_by_every_pod() {
        let mut w = World::deployed(&canary("v1", &[(50, None)]));
        w.settle(&canary("v2", &[(50, None)]));
        assert!(w.serving.iter().all(|(served, _, _)| served.is_none()));
    }

    #[test]
    fn reverting_to_the_version_that_runs_after_a_rollback_is_healthy_at_once() {
        let steps = [(25, None), (100, None)];
        let mut w = World::deployed(&with_migration(checked(canary("v1", &steps))));
        w.unhealthy_version = Some("v2".into());
        w.settle(&with_migration(checked(canary("v2", &steps))));
        assert_eq!(w.status.phase, Some(Phase::Failed));
        w.phases.clear();
        w.jobs_run.clear();
        w.probed.clear();
        w.settle(&with_migration(checked(canary("v1", &steps))));
        assert_eq!(w.phases, [Phase::Healthy], "no steps");
        assert!(w.jobs_run.is_empty(), "no migration");
        assert!(w.probed.is_empty(), "nothing to check");
        assert_eq!(w.status.failed_version, None);
        assert_eq!(
            w.status.message.as_deref(),
            Some("v1 already runs: nothing to roll out")
        );
    }

    #[test]
    fn going_back_to_a_version_healthy_before_skips_the_steps_and_migrates_down_first() {
        let steps = [(25, Some(Pause::Seconds(300))), (100, None)];
        let mut w = World::deployed(&with_down_migration(canary("v1", &steps)));
        w.settle(&with_down_migration(canary("v2", &steps)));
        assert_eq!(w.status.current_version.as_deref(), Some("v2"));
        w.phases.clear();
        w.jobs_run.clear();
        let before = w.now;
        let mut canary_runs = false;
        for _ in 0..50 {
            w.step(&with_down_migration(canary("v1", &steps)));
            canary_runs |= w.observed.canary.is_some();
        }
        assert_eq!(w.status.phase, Some(Phase::Healthy));
        assert_eq!(w.stable(), Some(("v1", 4)));
        assert!(!canary_runs, "no canary steps");
        assert!(w.now - before < 300, "no pause");
        assert_eq!(
            w.jobs_run,
            ["down v2"],
            "the down-migration of v2, no up-migration"
        );
        assert_eq!(
            w.phases,
            [
                Phase::Migrating,
                Phase::Deploying,
                Phase::HealthChecking,
                Phase::Healthy
            ]
        );
        // v2's schema was undone: going to v2 again is a full upgrade with its up-migration.
        w.jobs_run.clear();
        w.settle(&with_down_migration(canary("v2", &steps)));
        assert_eq!(w.jobs_run, ["up v2"]);
    }

    #[test]
    fn a_rolled_back_upgrade_runs_its_down_migration_after_the_failed_side_is_gone() {
        let steps = [(25, None), (100, None)];
        let mut w = World::deployed(&with_down_migration(checked(canary("v1", &steps))));
        w.unhealthy_version = Some("v2".into());
        let s2 = with_down_migration(checked(canary("v2", &steps)));
        let mut canary_when_down_ran = None;
        for _ in 0..100 {
            w.step(&s2);
            if w.jobs_run.contains(&"down v2".to_string()) && canary_when_down_ran.is_none() {
                canary_when_down_ran = Some(w.observed.canary.is_some());
            }
        }
        assert_eq!(w.jobs_run, ["up v2", "down v2"]);
        assert_eq!(
            canary_when_down_ran,
            Some(false),
            "the canary was removed first"
        );
        assert_eq!(w.status.phase, Some(Phase::Failed));
        assert!(w.reasons.contains(&"DownMigrationSucceeded".to_string()));
        assert_eq!(
            w.status.message.as_deref(),
            Some("rolled back to v1; the down-migration of v2 succeeded")
        );
        assert_eq!(w.status.down_migration, None);
    }

    #[test]
    fn a_failed_down_migration_leaves_the_app_failed_and_is_not_run_again() {
        let mut w = World::deployed(&with_down_migration(checked(spec("v1"))));
        w.unhealthy_version = Some("v2".into());
        w.down_outcome = JobObs::Failed {
            reason: "BackoffLimitExceeded".into(),
        };
        w.settle(&with_down_migration(checked(spec("v2"))));
        assert_eq!(w.status.phase, Some(Phase::Failed));
        let message = w.status.message.clone().unwrap_or_default();
        assert!(
            message.contains("down-migration of v2 failed (BackoffLimitExceeded)"),
            "{message}"
        );
        w.phases.clear();
        for _ in 0..5 {
            w.step(&with_down_migration(checked(spec("v2"))));
        }
        assert!(w.phases.is_empty(), "no loop");
        assert_eq!(w.jobs_run.iter().filter(|j| *j == "down v2").count(), 1);
    }

    #[test]
    fn a_failed_up_migration_runs_no_down_migration() {
        let mut w = World::deployed(&with_down_migration(spec("v1")));
        w.job_outcome = JobObs::Failed {
            reason: "DeadlineExceeded".into(),
        };
        w.settle(&with_down_migration(spec("v2")));
        assert_eq!(w.status.phase, Some(Phase::Failed));
        assert_eq!(w.jobs_run, ["up v2"]);
    }

    #[test]
    fn a_pause_frozen_by_spec_paused_resumes_with_its_remaining_time() {
        let steps = [(50, Some(Pause::Seconds(600))), (100, None)];
        let mut w = World::deployed(&canary("v1", &steps));
        let s2 = canary("v2", &steps);
        while w.status.pause_start_time.is_none() {
            w.step(&s2);
        }
        let pause_began = w
            .status
            .pause_start_time
            .clone()
            .expect("a pause")
            .0
            .as_second()
            - at(0).0.as_second();
        w.now = pause_began + 100;
        let mut paused = s2.clone();
        paused.paused = true;
        w.step(&paused);
        assert_eq!(w.status.paused_elapsed_seconds, Some(100));
        w.now += 5000;
        w.step(&paused);
        assert_eq!(
            w.status.step_index,
            Some(0),
            "frozen: the pause did not run out"
        );
        let resumed_at = w.now;
        let d = w.step(&s2);
        assert_eq!(d.requeue_after, Some(500), "the remaining 500 s");
        assert_eq!(
            w.status.pause_start_time,
            Some(MicroTime(at(resumed_at - 100).0)),
            "as if it began 100 s ago"
        );
        w.settle(&s2);
        assert_eq!(w.status.current_version.as_deref(), Some("v2"));
        assert!(w.now - pause_began >= 5600);
    }

    #[test]
    fn an_abort_annotation_fails_the_running_upgrade_of_its_version_only() {
        let steps = [(50, Some(Pause::Seconds(600))), (100, None)];
        let mut w = World::deployed(&canary("v1", &steps));
        let s2 = canary("v2", &steps);
        for _ in 0..3 {
            w.step(&s2);
        }
        w.observed.abort = Some("v9".into());
        w.step(&s2);
        assert_ne!(
            w.status.phase,
            Some(Phase::Failed),
            "another version: ignored"
        );
        w.observed.abort = Some("v2".into());
        w.settle(&s2);
        assert_eq!(w.status.phase, Some(Phase::Failed));
        assert_eq!(w.status.message.as_deref(), Some("aborted by a user"));
        assert_eq!(w.status.failed_version.as_deref(), Some("v2"));
        assert_eq!(w.stable(), Some(("v1", 4)));
        assert!(w.observed.canary.is_none());
        assert_eq!(w.observed.abort, None, "the annotation is removed");
    }

    #[test]
    fn a_retry_annotation_tries_the_failed_version_again_from_the_start() {
        let mut w = World::deployed(&with_migration(spec("v1")));
        w.job_outcome = JobObs::Failed {
            reason: "BackoffLimitExceeded".into(),
        };
        w.settle(&with_migration(spec("v2")));
        assert_eq!(w.status.phase, Some(Phase::Failed));
        w.observed.retry = Some("v1".into());
        w.step(&with_migration(spec("v2")));
        assert_eq!(
            w.status.phase,
            Some(Phase::Failed),
            "another version: ignored"
        );
        w.job_outcome = JobObs::Succeeded;
        w.observed.retry = Some("v2".into());
        w.phases.clear();
        w.jobs_run.clear();
        w.settle(&with_migration(spec("v2")));
        assert_eq!(w.status.current_version.as_deref(), Some("v2"));
        assert_eq!(w.jobs_run, ["up v2"], "the migration Job ran afresh");
        assert_eq!(w.phases.first(), Some(&Phase::Migrating));
        assert_eq!(w.status.history[0].message, "retrying v2 (bosun.dev/retry)");
        assert_eq!(w.observed.retry, None, "the annotation is removed");
    }

    #[test]
    fn a_new_version_after_a_rollback_waits_for_its_down_migration_then_migrates_up() {
        let mut w = World::deployed(&with_down_migration(checked(spec("v1"))));
        w.unhealthy_version = Some("v2".into());
        w.down_outcome = JobObs::Running;
        w.settle(&with_down_migration(checked(spec("v2"))));
        assert!(
            w.status.down_migration.is_some(),
            "v2's down-migration runs"
        );
        w.jobs_run.clear();
        let s3 = with_down_migration(checked(spec("v3")));
        for _ in 0..5 {
            w.step(&s3);
        }
        assert_eq!(w.status.phase, Some(Phase::Migrating));
        assert!(w.jobs_run.is_empty(), "v3's up-migration waits");
        w.jobs
            .insert((JobKind::Down, "v2".into()), JobObs::Succeeded);
        w.settle(&s3);
        assert_eq!(w.jobs_run, ["up v3"]);
        assert_eq!(w.status.current_version.as_deref(), Some("v3"));
    }

    #[test]
    fn an_abort_waits_for_a_running_down_migration() {
        let steps = [(25, None), (100, None)];
        let mut w = World::deployed(&with_down_migration(canary("v1", &steps)));
        w.settle(&with_down_migration(canary("v2", &steps)));
        w.down_outcome = JobObs::Running;
        w.observed.abort = Some("v1".into());
        for _ in 0..5 {
            w.step(&with_down_migration(canary("v1", &steps)));
        }
        assert_eq!(w.status.phase, Some(Phase::Migrating), "not interrupted");
        assert_eq!(w.observed.abort.as_deref(), Some("v1"), "kept for later");
    }

    /// The whole loop, engine and write-back, for ten minutes of simulated time: a canary whose pods
    /// never become ready is rolled back once, git gets one rollback commit, the rollback commit (new
    /// desired state, at the version already running) settles at once, and nothing starts again.
    #[test]
    fn a_rolled_back_canary_is_written_back_once_and_nothing_loops_for_ten_minutes() {
        use crate::writeback::{AppView, GitAction, git_actions};
        let mut w = World::new();
        let mut app = canary("v1", &[(50, Some(Pause::Seconds(30))), (100, None)]);
        app.upgrade_strategy.progress_deadline_seconds = Some(10);
        w.observed.revision = Some("c1".into());
        w.settle(&app);
        assert_eq!(w.status.phase, Some(Phase::Healthy));

        app.version = "v2-broken".into();
        w.observed.revision = Some("c2".into());
        w.never_ready_version = Some("v2-broken".into());
        let mut rollback_commits = Vec::new();
        let mut rolled_back = None;
        let mut rollback_commit = None;
        let started_at = w.now;
        while w.now < started_at + 600 {
            w.step(&app);
            let view = AppView {
                namespace: "shop".into(),
                app: "web".into(),
                spec_version: app.version.clone(),
                spec_hash: crate::engine::revision::Revision::of(&app).hash(),
                status: w.status.clone(),
                source_path: Some("apps/web.yaml".into()),
                rolled_back: rolled_back.clone(),
                rollback_commit: rollback_commit.clone(),
            };
            for action in git_actions(&view) {
                if let GitAction::Rollback(rc) = action {
                    // Bosun pushes the commit, then the source applies it as the new desired state.
                    rollback_commits.push(rc.clone());
                    rolled_back = Some(rc.undoes.clone());
                    rollback_commit = Some("c3".to_string());
                    app.version = rc.restored_version.clone();
                    w.observed.revision = Some("c3".into());
                }
            }
            w.now += 5;
        }
        assert_eq!(rollback_commits.len(), 1, "{rollback_commits:?}");
        assert_eq!(rollback_commits[0].undoes, "c2");
        assert_eq!(rollback_commits[0].restored_version, "v1");
        assert_eq!(w.status.phase, Some(Phase::Healthy));
        assert_eq!(w.status.current_version.as_deref(), Some("v1"));
        let starts = w
            .phases
            .iter()
            .filter(|p| matches!(p, Phase::Deploying | Phase::Migrating))
            .count();
        assert!(
            starts <= 3,
            "no upgrade started again and again: {:?}",
            w.phases
        );
        assert_eq!(
            w.observed.canary, None,
            "the canary of the failed version is gone"
        );
    }
}
