//! `Migrating`: the down-migration of the version being left (a revert, or a rolled-back upgrade
//! that migrated), then the target's up-migration, as Jobs run to completion before anything is
//! rolled out. A Job made for another migration is never taken as this one's result.

use super::action::{Action, JobKind};
use super::observed::JobObs;
use super::rollback::{Failure, down_job, fail, forget_migrated};
use super::start::needs_migration;
use super::status::{move_to, moved, push_capped};
use super::{DOWN_MIGRATIONS_CAP, In, Out, RECHECK_SECS};
use crate::model::{DownMigrationRecord, Phase};

/// One round of `Migrating`. `retry`: the first round of a retry, whose Job seen is the failed one of
/// before, being deleted.
pub(super) fn step(i: &In<'_>, o: &mut Out, retry: bool) {
    let (spec, status, observed, now, target) = (i.spec, i.status, i.observed, i.now, &i.target);
    let Out {
        next,
        actions,
        requeue_after,
        transition,
        ..
    } = o;
    let (version, hash, tl) = (
        spec.version.as_str(),
        target.rev.hash.as_str(),
        &target.label,
    );
    let _ = (status, now);
    match next.down_migration.clone() {
        // A revert: the version being left is migrated down before the older one runs.
        Some(record) => match down_job(observed, &record) {
            JobObs::Succeeded => {
                next.down_migration = None;
                forget_migrated(next, &record.version);
                // A revision that was healthy before needs no up-migration; any other does,
                // unless it has none or keeps the one that runs.
                let earlier = next.was_healthy(hash);
                let (to, then) = if earlier || !needs_migration(next, target) {
                    (Phase::Deploying, format!("deploying {tl}"))
                } else {
                    (Phase::Migrating, format!("migrating up to {tl}"))
                };
                *transition = moved(
                    next,
                    to,
                    "DownMigrationSucceeded".into(),
                    format!("the down-migration of {} succeeded; {then}", record.version),
                );
            }
            JobObs::Failed { reason } => {
                next.down_migration = None;
                let why = format!(
                    "the down-migration of {} failed ({reason}): {tl} was not rolled out",
                    record.version
                );
                *transition = fail(next, target, Failure::DownMigration, why, now);
            }
            job @ (JobObs::Absent | JobObs::Running | JobObs::Foreign) => {
                if job == JobObs::Absent {
                    actions.push(Action::DeleteJob {
                        kind: JobKind::Up,
                        version: record.version.clone(),
                    });
                }
                actions.push(Action::RunDownMigration { record });
                *requeue_after = Some(RECHECK_SECS);
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
                    version: version.into(),
                });
                if let (Some(m), Some(up)) = (
                    &spec.upgrade_strategy.migration_job,
                    &target.revision.migration,
                ) && let Some(down) = &m.down
                {
                    let record = DownMigrationRecord {
                        version: version.into(),
                        image: down.image.clone().unwrap_or_else(|| up.image.clone()),
                        command: down.command.clone(),
                        args: down.args.clone(),
                    };
                    next.down_migrations.retain(|r| r.version != version);
                    push_capped(&mut next.down_migrations, record, DOWN_MIGRATIONS_CAP);
                }
                *transition = move_to(next, Phase::Deploying, "migration succeeded".into());
            }
            JobObs::Failed { reason } => {
                // Nothing was rolled out: the stable side never changed.
                let why = format!("migration of {tl} failed: {reason}");
                *transition = fail(next, target, Failure::Migration, why, now);
            }
            JobObs::Foreign => {
                // A Job of this name made for another migration (the same version with another
                // migration spec): it goes, and this one runs afresh.
                actions.push(Action::DeleteJob {
                    kind: JobKind::Up,
                    version: version.into(),
                });
                *requeue_after = Some(RECHECK_SECS);
            }
            JobObs::Absent | JobObs::Running => {
                actions.push(Action::RunMigration {
                    version: version.into(),
                });
                *requeue_after = Some(RECHECK_SECS);
            }
        },
    }
}
