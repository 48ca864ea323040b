//! Failing an upgrade and rolling it back: the whole last healthy revision comes back on the stable
//! side, the canary or preview goes, and then the down-migration of what this upgrade migrated runs.
//! A down-migration under way is never left half done, and a Job observed for another version is
//! never taken as this one's result.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::action::{Action, JobKind, Transition};
use super::observed::{JobObs, Observed};
use super::start::{Target, needs_migration};
use super::status::{current_ref, label, last_healthy_ref, moved};
use super::strategy;
use super::{CONDITION_ROLLED_BACK, RECHECK_SECS, Role};
use crate::engine::bestie::set_condition;
use crate::model::{DownMigrationRecord, ManagedApplicationSpec, ManagedApplicationStatus, Phase};

/// The `pods` of `target` missed the progress deadline: the upgrade fails.
pub(super) fn not_ready(
    next: &mut ManagedApplicationStatus,
    target: &Target,
    pods: &str,
    now: &Time,
) -> Option<Transition> {
    let why = format!("{pods} of {} did not become ready in time", target.label);
    fail(next, target, Failure::Rollout, why, now)
}

/// What failed an upgrade: the reason of its transition (and Event) and of its `RolledBack`
/// condition, a typed value rather than words to search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Pods never ready in time, or failing their verifications.
    Rollout,
    /// The up-migration Job failed: nothing was rolled out.
    Migration,
    /// The down-migration of the version being left failed (a revert).
    DownMigration,
    /// A human aborted it (`bosun abort`).
    Aborted,
    /// Another app of its group (`spec.dependsOn`, the same commit) failed.
    Group,
    /// A metric of its analysis failed (or stayed inconclusive past its limit).
    Analysis,
}

impl Failure {
    /// The reason of the transition and its Event.
    fn event_reason(self) -> &'static str {
        match self {
            Failure::Rollout | Failure::Migration => "Failed",
            Failure::DownMigration => "DownMigrationFailed",
            Failure::Aborted => "Aborted",
            Failure::Group => "GroupRolledBack",
            Failure::Analysis => "AnalysisFailed",
        }
    }

    /// The reason of the `RolledBack` condition.
    pub fn condition_reason(self) -> &'static str {
        match self {
            Failure::Rollout => "RolledBack",
            Failure::Migration => REASON_MIGRATION_FAILED,
            Failure::DownMigration => "DownMigrationFailed",
            Failure::Aborted => "Aborted",
            Failure::Group => "GroupRolledBack",
            Failure::Analysis => "AnalysisFailed",
        }
    }
}

/// The `RolledBack` condition's reason when the up-migration failed.
pub const REASON_MIGRATION_FAILED: &str = "MigrationFailed";

/// Fails the upgrade of `target`: the rollback follows. The down-migration of the target's
/// up-migration, when one ran in this upgrade, is queued to run once the failed side is gone.
pub(super) fn fail(
    next: &mut ManagedApplicationStatus,
    target: &Target,
    failure: Failure,
    why: String,
    now: &Time,
) -> Option<Transition> {
    let version = target.rev.version.as_str();
    next.failed_version = Some(version.into());
    next.failed_hash = Some(target.rev.hash.clone());
    next.failed_revision = next.target_revision.clone();
    next.canary_weight = Some(0);
    next.pause_start_time = None;
    next.health_check = None;
    let mut message = why.clone();
    // Only an up-migration this upgrade ran is undone: a revision healthy before was rolled out
    // without one, and a change that kept the migration of the revision serving (env, say) ran none.
    // (A completed upgrade rolled back with its group queued its own: `group::undo`.)
    let completed = next.current_hash.as_deref() == Some(target.rev.hash.as_str());
    if !completed
        && !next.was_healthy(&target.rev.hash)
        && needs_migration(next, target)
        && let Some(i) = next
            .down_migrations
            .iter()
            .position(|r| r.version == version)
    {
        let record = next.down_migrations.remove(i);
        message.push_str(&format!(
            "; the down-migration of {version} runs once the rollback is done"
        ));
        next.down_migration = Some(record);
    }
    let back = last_healthy_ref(next).or_else(|| current_ref(next));
    let back = back.map_or_else(|| "nothing".to_string(), |b| label(&b, Some(&target.rev)));
    set_condition(
        &mut next.conditions,
        Condition {
            type_: CONDITION_ROLLED_BACK.into(),
            status: "True".into(),
            reason: failure.condition_reason().into(),
            message: format!(
                "{} failed and was rolled back to {back}: {why}",
                target.label
            )
            .chars()
            .take(1024)
            .collect(),
            last_transition_time: now.clone(),
            observed_generation: None,
        },
    );
    moved(next, Phase::Failed, failure.event_reason().into(), message)
}

/// The rollback, and after it the pending down-migration: every round while the app is Failed.
pub(super) fn roll_back(
    spec: &ManagedApplicationSpec,
    next: &mut ManagedApplicationStatus,
    observed: &Observed,
    actions: &mut Vec<Action>,
    requeue_after: &mut Option<u64>,
) -> Option<Transition> {
    let replicas = spec.replicas.unwrap_or(1);
    // With a router, the canary's traffic goes first, at once, before any pod changes.
    if observed.canary.is_some() && strategy::routed(spec) {
        actions.push(Action::Route { weight: 0 });
    }
    // The whole last healthy revision comes back, not only its version.
    let back = last_healthy_ref(next).or_else(|| current_ref(next));
    if let Some(rev) = &back {
        actions.push(Action::Run {
            role: Role::Stable,
            revision: rev.clone(),
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
        && back.as_ref().is_none_or(|rev| {
            observed
                .stable
                .as_ref()
                .is_some_and(|s| s.runs(&rev.hash, replicas))
        });
    if !done {
        *requeue_after = Some(RECHECK_SECS);
        return None;
    }
    let v = record.version.clone();
    let back = back.map_or_else(|| "nothing".into(), |b| b.version);
    let job = down_job(observed, &record);
    match &job {
        JobObs::Absent | JobObs::Running | JobObs::Foreign => {
            if job == JobObs::Absent {
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
            forget_migrated(next, &v);
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

/// The observed down-migration Job, if it is the Job of `record`'s version; else `Absent` (not seen
/// yet: what follows, creating it, is idempotent). The Job of another version, observed before the
/// record changed, is never taken as this one's result.
pub(super) fn down_job(observed: &Observed, record: &DownMigrationRecord) -> JobObs {
    if observed.down_migration_of.as_deref() == Some(record.version.as_str()) {
        observed.down_migration.clone()
    } else {
        JobObs::Absent
    }
}

/// A version's migration was undone: its revisions are no longer a rollback window (their schema is
/// gone), and going to one of them again runs its up-migration.
pub(super) fn forget_migrated(next: &mut ManagedApplicationStatus, version: &str) {
    next.healthy_revisions.retain(|h| h.version != version);
}

/// After a failure, roll back at once: stable gets every replica of the last healthy revision back.
pub(super) fn after_failure(
    spec: &ManagedApplicationSpec,
    observed: &Observed,
    o: &mut super::Out,
) {
    o.actions
        .retain(|a| matches!(a, Action::ClearAnnotation { .. } | Action::DeleteJob { .. }));
    o.requeue_after = None;
    if let Some(t) = roll_back(
        spec,
        &mut o.next,
        observed,
        &mut o.actions,
        &mut o.requeue_after,
    ) {
        o.transition = Some(t);
    }
}
