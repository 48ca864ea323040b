//! The start of an upgrade, and the requests of humans: the steady state, a new target (the fast
//! path when it already runs, the rollback window when it was healthy before, else a fresh upgrade
//! behind its start gates), retry and abort.

use super::action::{Action, JobKind};
use super::gate::{self, Moment};
use super::revision::{Revision, RevisionRef};
use super::rollback::{Failure, fail};
use super::status::{label, move_to, target_ref};
use super::strategy::{self, Plan, plan};
use super::{ANNOTATION_ABORT, ANNOTATION_RETRY, CONDITION_ROLLED_BACK, In, Out, Role};
use crate::model::{ManagedApplicationStatus, Phase};

/// The revision git asks for, as this decision sees it.
pub(super) struct Target {
    pub rev: RevisionRef,
    /// How messages name it.
    pub label: String,
    pub migration_hash: Option<String>,
    pub revision: Revision,
}

/// Whether moving from the revision serving to the target needs the target's up-migration: it has
/// one, and it is not the migration the revision serving already ran (a change of env alone needs none).
pub(super) fn needs_migration(next: &ManagedApplicationStatus, target: &Target) -> bool {
    let Some(hash) = &target.migration_hash else {
        return false;
    };
    let current = next.current_hash.as_deref();
    let ran = current.and_then(|c| {
        next.healthy_revisions
            .iter()
            .rev()
            .find(|r| r.hash == c)
            .map(|r| r.migration_hash.as_ref())
    });
    match ran {
        Some(ran) => ran != Some(hash),
        // Nothing runs yet, or what runs is not known: migrate.
        None => true,
    }
}

/// The first phase of a fresh upgrade: a pending down-migration (of a rolled-back upgrade) and the
/// target's up-migration run before anything is rolled out.
fn first_phase(next: &ManagedApplicationStatus, target: &Target) -> Phase {
    if needs_migration(next, target) || next.down_migration.is_some() {
        Phase::Migrating
    } else {
        Phase::Deploying
    }
}

/// `Pending`: the upgrade waits at its start gates ([`gate`]); once every one is open, it starts.
pub(super) fn pending(i: &In<'_>, o: &mut Out) {
    let tl = &i.target.label;
    match gate::at_start(i, &o.next) {
        Some(closed) => gate::wait(i, o.waiting(), closed),
        None => {
            let outside = gate::pass(i, &mut o.next, &mut o.actions, Moment::Start);
            let first = first_phase(&o.next, &i.target);
            let mut why = match first {
                Phase::Migrating => format!("migrating {tl}"),
                _ => format!("deploying {tl}"),
            };
            if let Some(note) = outside {
                why = format!("{why}: {note}");
            }
            o.transition = move_to(&mut o.next, first, why);
        }
    }
}

/// A human asks (`bosun retry`) for the failed revision again, from the start. Returns whether this
/// decision is a retry.
pub(super) fn retry(i: &In<'_>, o: &mut Out) -> bool {
    let (status, observed) = (i.status, i.observed);
    let (version, hash) = (i.spec.version.as_str(), i.target.rev.hash.as_str());
    let Out { next, actions, .. } = o;
    let retry = observed.retry.as_deref() == Some(version)
        && status.phase == Some(Phase::Failed)
        && next.failed_hash.as_deref() == Some(hash)
        && status.down_migration.is_none();
    if retry {
        actions.push(Action::ClearAnnotation {
            name: ANNOTATION_RETRY,
        });
        for kind in [JobKind::Up, JobKind::Down] {
            actions.push(Action::DeleteJob {
                kind,
                version: version.into(),
            });
        }
        next.failed_version = None;
        next.failed_hash = None;
    }
    retry
}

/// Steady: the target runs. Returns whether the decision is made.
pub(super) fn steady(i: &In<'_>, o: &mut Out, retry: bool) -> bool {
    let (spec, status, observed, now, target) = (i.spec, i.status, i.observed, i.now, &i.target);
    let Out {
        next,
        actions,
        requeue_after,
        transition,
        ..
    } = o;
    let (replicas, hash, tl) = (i.replicas, target.rev.hash.as_str(), &target.label);
    let _ = (spec, now, requeue_after, observed);
    if !retry
        && next.current_hash.as_deref() == Some(hash)
        && next.target_hash.as_deref() == Some(hash)
    {
        if status.phase != Some(Phase::Healthy) {
            *transition = move_to(next, Phase::Healthy, format!("{tl} is healthy"));
        }
        actions.push(Action::Run {
            role: Role::Stable,
            revision: target.rev.clone(),
            replicas,
        });
        if observed.canary.is_some() {
            strategy::remove_canary(spec, actions);
        }
        if observed.preview.is_some() {
            actions.push(Action::Remove {
                role: Role::Preview,
            });
        }
        next.canary_weight = None;
        next.step_index = None;
        next.health_check = None;
        return true;
    }
    false
}

/// A new target (the first, one that supersedes a running upgrade, or a retry) starts from stable.
/// Returns whether the decision is made (the fast path: it runs already).
pub(super) fn new_target(i: &In<'_>, o: &mut Out, retry: bool) -> bool {
    let (spec, status, observed, now, target) = (i.spec, i.status, i.observed, i.now, &i.target);
    let Out {
        next,
        actions,
        requeue_after,
        transition,
        ..
    } = o;
    let (replicas, version) = (i.replicas, spec.version.as_str());
    let (hash, tl) = (target.rev.hash.as_str(), &target.label);
    let current = &i.current;
    let _ = (now, requeue_after);
    if !(retry || next.target_hash.as_deref() != Some(hash)) {
        return false;
    }
    {
        let superseded = target_ref(next);
        next.target_version = Some(version.into());
        next.target_hash = Some(hash.into());
        next.target_revision = observed.revision.clone();
        next.history.clear();
        next.analysis_runs.clear();
        next.step_index = Some(0);
        next.canary_weight = Some(0);
        next.pause_start_time = None;
        next.paused_elapsed_seconds = None;
        next.health_check = None;
        actions.push(Action::SaveRevision {
            revision: target.rev.clone(),
        });
        if observed.canary.is_some() {
            strategy::remove_canary(spec, actions);
        }
        if observed.preview.is_some() {
            actions.push(Action::Remove {
                role: Role::Preview,
            });
        }
        let runs_already = observed.stable.as_ref().is_some_and(|s| s.hash == hash);
        if next.current_hash.as_deref() == Some(hash) && runs_already {
            // The fast path: e.g. a `git revert` or Bosun's rollback commit asks for what runs. The
            // RolledBack condition stays: it tells what failed until the next upgrade.
            next.failed_version = None;
            next.failed_hash = None;
            next.canary_weight = None;
            next.step_index = None;
            *transition = move_to(
                next,
                Phase::Healthy,
                format!("{tl} already runs: nothing to roll out"),
            );
            actions.push(Action::Run {
                role: Role::Stable,
                revision: target.rev.clone(),
                replicas,
            });
            return true;
        }
        // A new upgrade: what failed before is history now.
        next.conditions.retain(|c| c.type_ != CONDITION_ROLLED_BACK);
        next.window_override = None;
        next.failed_revision = None;
        let earlier = current.is_some() && next.was_healthy(hash);
        if earlier {
            // The rollback window: straight to the revision that was healthy, no canary steps, no
            // up-migration; first the down-migration of the version being left, when it ran one
            // that the target did not.
            if let Plan::Canary(steps) = plan(spec, next) {
                next.step_index = Some(i32::try_from(steps.len()).unwrap_or(i32::MAX));
            }
            let left = current.clone().expect("earlier implies a current revision");
            let same_migration = next
                .healthy_revisions
                .iter()
                .find(|r| r.hash == hash)
                .map(|r| r.migration_hash.clone())
                == next
                    .healthy_revisions
                    .iter()
                    .find(|r| r.hash == left.hash)
                    .map(|r| r.migration_hash.clone());
            let record = if same_migration {
                None
            } else {
                next.down_migrations
                    .iter()
                    .position(|r| r.version == left.version)
                    .map(|i| next.down_migrations.remove(i))
            };
            let left = label(&left, Some(&target.rev));
            *transition = match record {
                Some(record) => {
                    next.down_migration = Some(record);
                    move_to(
                        next,
                        Phase::Migrating,
                        format!(
                            "returning to {tl}, healthy before: the down-migration of {left} first"
                        ),
                    )
                }
                None => move_to(
                    next,
                    Phase::Deploying,
                    format!("returning to {tl}, healthy before: rolled out directly"),
                ),
            };
        } else {
            // A down-migration still pending (of a rolled-back upgrade) runs before anything else.
            // A start gate that is closed holds the upgrade in Pending ([`pending`] says why).
            let first = match gate::at_start(i, next) {
                Some(_) => Phase::Pending,
                None => first_phase(next, target),
            };
            let verb = match superseded {
                _ if retry => format!("retrying {tl} ({ANNOTATION_RETRY})"),
                Some(old)
                    if status.phase != Some(Phase::Healthy)
                        && status.phase != Some(Phase::Failed) =>
                {
                    format!("{tl} supersedes {}", label(&old, Some(&target.rev)))
                }
                _ => format!("upgrading to {tl}"),
            };
            let verb = match first {
                Phase::Pending => verb,
                _ => match gate::pass(i, next, actions, Moment::Start) {
                    Some(note) => format!("{verb}: {note}"),
                    None => verb,
                },
            };
            *transition = move_to(next, first, verb);
        }
    }
    false
}

/// A human fails the running upgrade of this version (`bosun abort`).
pub(super) fn abort(i: &In<'_>, o: &mut Out) {
    let (spec, status, observed, now, target) = (i.spec, i.status, i.observed, i.now, &i.target);
    let Out {
        next,
        actions,
        requeue_after,
        transition,
        ..
    } = o;
    let version = spec.version.as_str();
    let _ = (status, requeue_after);
    let running = matches!(
        next.phase,
        Some(Phase::Pending | Phase::Migrating | Phase::Deploying | Phase::HealthChecking)
    );
    // A down-migration under way is not interrupted: the abort waits for it.
    if running && next.down_migration.is_none() && observed.abort.as_deref() == Some(version) {
        actions.push(Action::ClearAnnotation {
            name: ANNOTATION_ABORT,
        });
        *transition = fail(
            next,
            target,
            Failure::Aborted,
            "aborted by a user".into(),
            now,
        );
    }
}
