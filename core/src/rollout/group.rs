//! Coordinated rollback: the apps one commit changed together, joined by `spec.dependsOn` (unless
//! `rollbackTogether: false`), are a group. When one of them fails, the others fail with it and roll
//! back too: an app that depends on it at once (one that had not started never starts), an app it
//! depends on once the failed app's own rollback is over (reverse dependency order), each with its
//! down-migration. The executor finds the group's failures ([`GroupFailure`]); this module decides.

use super::rollback::{Failure, fail};
use super::{In, Out};
use crate::model::Phase;

/// Fails this app with its group when an app of the group failed at the same commit. Returns
/// whether it did (the rollback follows).
pub(super) fn fails_with_group(i: &In<'_>, o: &mut Out) -> bool {
    let next = &o.next;
    // Only the upgrade of the commit the failures are about: the executor compares them with the
    // commit of the spec, and the status must be at that commit's upgrade.
    if i.observed.revision.is_none() || next.target_revision != i.observed.revision {
        return false;
    }
    if next.target_hash.as_deref() != Some(i.target.rev.hash.as_str()) {
        return false;
    }
    let Some(f) = i
        .observed
        .group_failures
        .iter()
        .find(|f| !f.dependent || f.settled)
    else {
        return false;
    };
    let why = if f.dependent {
        format!(
            "{} depends on it and failed at the same commit: rolled back with its group",
            f.key
        )
    } else {
        format!(
            "its dependency {} failed at the same commit: rolled back with its group",
            f.key
        )
    };
    match next.phase {
        Some(Phase::Pending | Phase::Migrating | Phase::Deploying | Phase::HealthChecking) => {
            o.transition = fail(&mut o.next, &i.target, Failure::Group, why, i.now);
            true
        }
        Some(Phase::Healthy) if next.current_hash == next.target_hash => undo(i, o, why),
        _ => false,
    }
}

/// Rolls back an upgrade that had completed: the revision healthy before it comes back, and the
/// down-migration of what it migrated runs. `false` when nothing was healthy before (a first
/// install stays).
fn undo(i: &In<'_>, o: &mut Out, why: String) -> bool {
    let next = &mut o.next;
    let hash = i.target.rev.hash.as_str();
    let Some(before) = next
        .healthy_revisions
        .iter()
        .rev()
        .find(|r| r.hash != hash)
        .cloned()
    else {
        return false;
    };
    let done = next
        .healthy_revisions
        .iter()
        .find(|r| r.hash == hash)
        .cloned();
    // It is no longer a revision to go back to directly: a later attempt goes through its steps.
    next.healthy_revisions.retain(|r| r.hash != hash);
    next.last_healthy_hash = Some(before.hash.clone());
    next.last_healthy_version = Some(before.version.clone());
    // What serves from now on: the revision before (git's rollback commit then finds it running).
    next.current_hash = Some(before.hash.clone());
    next.current_version = Some(before.version.clone());
    let migrated = done.is_some_and(|d| d.migration_hash != before.migration_hash);
    let version = i.target.rev.version.as_str();
    if migrated
        && let Some(at) = next
            .down_migrations
            .iter()
            .position(|r| r.version == version)
    {
        next.down_migration = Some(next.down_migrations.remove(at));
    }
    let why = match &next.down_migration {
        Some(_) => format!("{why}; the down-migration of {version} runs once the rollback is done"),
        None => why,
    };
    o.transition = fail(next, &i.target, Failure::Group, why, i.now);
    true
}
