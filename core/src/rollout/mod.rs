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
//!
//! # Layout
//!
//! [`decide`] reads as the flow: `spec.paused` ([`clock`]) → the requests of humans and the start
//! ([`start`]: retry, the rollback hold, steady, a new target, abort) → one stage by phase (`Pending`:
//! the start gates, [`gate`]; `Migrating`: [`migrate`]; `Deploying`: [`deploy`]; `HealthChecking`: [`verify`])
//! → the rollback after a failure ([`rollback`]) → the status and its history ([`status`]).
//! [`revision`] says what a revision is; [`strategy`] how an upgrade goes; [`observed`] and
//! [`action`] are the planner's inputs and outputs.

pub mod action;
pub mod analyze;
mod clock;
mod deploy;
pub mod gate;
mod group;
mod migrate;
pub mod objects;
pub mod observed;
pub mod revision;
pub mod rollback;
mod start;
mod status;
pub mod strategy;
mod verify;

#[cfg(test)]
mod tests;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

pub use crate::model::HistoryEntry;
use crate::model::{ManagedApplicationSpec, ManagedApplicationStatus, Phase};
pub use crate::names::{
    ANNOTATION_ABORT, ANNOTATION_PROMOTE_NOW, ANNOTATION_PROMOTE_STEP, ANNOTATION_RETRY,
};
pub use action::{Action, Decision, JobKind, Transition};
pub use observed::{
    DependencyObs, DependencyState, GroupFailure, JobObs, Observed, Role, WorkloadObs,
};
use revision::{Revision, RevisionRef};
pub use rollback::{Failure, REASON_MIGRATION_FAILED};
use start::Target;
pub use status::{current_ref, label, last_healthy_ref, target_ref};
pub use strategy::{Stage, probe_target, stage};

/// The condition that summarises the app: True once the revision git asks for runs and is healthy.
pub const CONDITION_READY: &str = "Ready";
/// The condition that tells, from a rollback until the next upgrade starts, which revision failed,
/// why and when, even after git (a rollback commit, a revert) asks again for what runs.
pub const CONDITION_ROLLED_BACK: &str = "RolledBack";

/// The most entries `status.history` keeps (the oldest go first).
pub const HISTORY_CAP: usize = 50;
const HEALTHY_REVISIONS_CAP: usize = 10;
const DOWN_MIGRATIONS_CAP: usize = 10;
const RECHECK_SECS: u64 = 5;

/// What one decision reads: the spec, the status as it was, what was observed, the time, and what
/// follows from them before anything is decided.
struct In<'a> {
    spec: &'a ManagedApplicationSpec,
    status: &'a ManagedApplicationStatus,
    observed: &'a Observed,
    now: &'a Time,
    replicas: i32,
    /// The revision git asks for.
    target: Target,
    /// The revision serving, if any.
    current: Option<RevisionRef>,
    /// What the stable side runs until the promotion: the revision serving (or, for a first
    /// deployment, the target), and how messages name it.
    stable: RevisionRef,
    stable_label: String,
}

/// What one decision builds.
struct Out {
    next: ManagedApplicationStatus,
    actions: Vec<Action>,
    requeue_after: Option<u64>,
    transition: Option<Transition>,
    /// The upgrade waits at a gate ([`gate::wait`]) in this decision.
    waiting: bool,
}

impl Out {
    /// Ends the decision ([`status::finish`]).
    fn finish(mut self, spec: &ManagedApplicationSpec, now: &Time) -> Decision {
        gate::settle(&mut self);
        status::finish(
            spec,
            self.next,
            self.actions,
            self.requeue_after,
            self.transition,
            now,
        )
    }
}

impl<'a> In<'a> {
    /// Reads the spec's revision (adopting it for a status from before revisions, in `next`).
    fn new(
        spec: &'a ManagedApplicationSpec,
        status: &'a ManagedApplicationStatus,
        observed: &'a Observed,
        now: &'a Time,
        next: &mut ManagedApplicationStatus,
    ) -> In<'a> {
        let revision = Revision::of(spec);
        let rev = revision.reference();
        status::adopt_versions(next, &rev);
        let current = current_ref(next);
        let target = Target {
            label: label(&rev, current.as_ref()),
            migration_hash: revision.migration_hash(),
            rev,
            revision,
        };
        let stable = current.clone().unwrap_or_else(|| target.rev.clone());
        let stable_label = label(&stable, Some(&target.rev));
        In {
            spec,
            status,
            observed,
            now,
            replicas: spec.replicas.unwrap_or(1),
            target,
            current,
            stable,
            stable_label,
        }
    }
}

/// Decides the next step of one app. Pure: no client, no clock (`now` is given).
pub fn decide(
    spec: &ManagedApplicationSpec,
    status: &ManagedApplicationStatus,
    observed: &Observed,
    now: &Time,
) -> Decision {
    let mut o = Out {
        next: status.clone(),
        actions: Vec::new(),
        requeue_after: None,
        transition: None,
        waiting: false,
    };
    if let Some(d) = clock::paused(spec, &mut o.next, now) {
        return d;
    }
    clock::resume(&mut o.next, now);
    let i = In::new(spec, status, observed, now, &mut o.next);

    let retry = start::retry(&i, &mut o);
    // A revision that failed is not retried until the spec's revision changes again: the rollback
    // holds, and the down-migration of the failed upgrade runs. A down-migration under way is never
    // left half done, whatever git asks for meanwhile (a rollback commit, a revert): it finishes first.
    let held = status.phase == Some(Phase::Failed)
        && (o.next.failed_hash.as_deref() == Some(i.target.rev.hash.as_str())
            || o.next.down_migration.is_some());
    // An app of its group (same commit, dependsOn) failed: this one fails and rolls back too.
    if !retry && !held && group::fails_with_group(&i, &mut o) {
        rollback::after_failure(spec, observed, &mut o);
        return o.finish(spec, now);
    }
    if !retry && held {
        o.transition = rollback::roll_back(
            spec,
            &mut o.next,
            observed,
            &mut o.actions,
            &mut o.requeue_after,
        );
        return o.finish(spec, now);
    }
    if start::steady(&i, &mut o, retry) || start::new_target(&i, &mut o, retry) {
        return o.finish(spec, now);
    }
    start::abort(&i, &mut o);

    let plan = strategy::plan(spec, &o.next);
    let step = usize::try_from(o.next.step_index.unwrap_or(0)).unwrap_or(0);
    let stage = strategy::stage_of(plan, step);
    match o.next.phase.unwrap_or(Phase::Pending) {
        Phase::Pending => start::pending(&i, &mut o),
        Phase::Migrating => migrate::step(&i, &mut o, retry),
        Phase::Deploying => deploy::step(&i, &mut o, plan, &stage),
        Phase::HealthChecking => verify::step(&i, &mut o, plan, &stage),
        Phase::Healthy | Phase::Failed => {}
    }
    if o.next.phase == Some(Phase::Failed) {
        rollback::after_failure(spec, observed, &mut o);
    }
    o.finish(spec, now)
}

/// What [`settle`] returns: the decisions of one reconcile, folded into one status write.
#[derive(Clone, Debug, PartialEq)]
pub struct Settled {
    /// The status after the last decision (its history holds an entry per transition).
    pub status: ManagedApplicationStatus,
    /// The actions of every decision, in order, each one once (the later copy is kept).
    pub actions: Vec<Action>,
    /// The last decision's.
    pub requeue_after: Option<u64>,
    /// Every transition, in order.
    pub transitions: Vec<Transition>,
}

impl Settled {
    /// The Events a person reads: an upgrade's start, its end (Healthy), a failure and what the
    /// rollback did; the stages between them are in `status.history` only.
    pub fn milestones(&self) -> impl Iterator<Item = &Transition> {
        self.transitions.iter().filter(|t| t.is_milestone())
    }
}

/// [`decide`], and at once again while a decision only began the next stage of an upgrade (a ready
/// side enters `HealthChecking`; a passed step moves to the next), which the same observation may
/// already pass or start: a stage with nothing to wait for (no health check, no analysis, no pause,
/// no new pods) moves on in the same reconcile. One status write, and no wait for the next wake-up,
/// instead of one of each per stage.
///
/// A later decision reads the same observation as the first. It is taken only when that observation
/// holds no one-time input a decision may consume (a person's request, a round of probes,
/// measurements), and when the new stage has no probe round or measurement due, which the executor
/// would gather first. A stage that needs other pods than those observed waits for them, as it
/// would in the next reconcile.
pub fn settle(
    spec: &ManagedApplicationSpec,
    status: &ManagedApplicationStatus,
    observed: &Observed,
    now: &Time,
) -> Settled {
    let once = observed.abort.is_none()
        && observed.retry.is_none()
        && observed.promote_now.is_none()
        && !observed.promoted
        && observed.probes.is_empty()
        && observed.measurements.is_empty();
    let first = decide(spec, status, observed, now);
    let mut settled = Settled {
        status: first.status,
        actions: first.actions,
        requeue_after: first.requeue_after,
        transitions: first.transition.into_iter().collect(),
    };
    for _ in 0..SETTLE_DECISIONS {
        let began_stage = settled.transitions.last().is_some_and(|t| {
            matches!(
                (t.from, t.to),
                (Some(Phase::Deploying), Phase::HealthChecking)
                    | (Some(Phase::HealthChecking), Phase::Deploying)
            )
        });
        let consumed = settled
            .actions
            .iter()
            .any(|a| matches!(a, Action::ClearAnnotation { .. }));
        let due = probe_target(spec, &settled.status, now).is_some()
            || !analyze::due(spec, &settled.status, now).is_empty();
        if !began_stage || !once || consumed || due {
            break;
        }
        let next = decide(spec, &settled.status, observed, now);
        settled.actions.retain(|a| !next.actions.contains(a));
        settled.actions.extend(next.actions);
        settled.status = next.status;
        settled.requeue_after = next.requeue_after;
        match next.transition {
            Some(t) => settled.transitions.push(t),
            None => break,
        }
    }
    settled
}

/// The most decisions [`settle`] adds to the first: a canary's steps, each two stages.
const SETTLE_DECISIONS: usize = 16;
