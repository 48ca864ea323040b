//! `spec.dependsOn`: the dependency gate, and the group that fails and rolls back together.

use super::*;
use crate::rollout::gate::CONDITION_WAITING_FOR_DEPENDENCIES;
use crate::rollout::observed::{DependencyObs, DependencyState, GroupFailure};

const COMMIT: &str = "c0ffee";

fn dependency(key: &str, state: DependencyState) -> DependencyObs {
    DependencyObs {
        key: key.into(),
        state,
    }
}

fn waiting_for_dependencies(w: &World) -> Option<String> {
    w.status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_WAITING_FOR_DEPENDENCIES && c.status == "True")
        .map(|c| c.message.clone())
}

/// Deployed at v1, then git's commit [`COMMIT`] asks for `next`.
fn upgraded_by_the_commit(v1: &ManagedApplicationSpec) -> World {
    let mut w = World::deployed(v1);
    w.observed.revision = Some(COMMIT.into());
    w
}

#[test]
fn an_upgrade_waits_for_a_dependency_the_same_commit_changed_until_it_is_healthy() {
    let mut w = upgraded_by_the_commit(&spec("v1"));
    w.observed.dependencies = vec![dependency(
        "shop/db-api",
        DependencyState::Waiting("Deploying".into()),
    )];
    w.step(&spec("v2"));
    w.step(&spec("v2"));
    assert_eq!(w.status.phase, Some(Phase::Pending));
    let why = waiting_for_dependencies(&w).expect("a WaitingForDependencies condition");
    assert!(
        why.contains("waits for dependencies: shop/db-api (Deploying)"),
        "{why}"
    );
    assert_eq!(w.stable(), Some(("v1", 4)), "nothing moved");
    w.observed.dependencies[0].state = DependencyState::Ready;
    w.settle(&spec("v2"));
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert_eq!(w.stable(), Some(("v2", 4)));
    assert_eq!(waiting_for_dependencies(&w), None);
}

#[test]
fn a_dependency_the_commit_did_not_change_holds_nothing() {
    let mut w = upgraded_by_the_commit(&spec("v1"));
    w.observed.dependencies = vec![dependency("shop/db-api", DependencyState::Unrelated)];
    w.settle(&spec("v2"));
    assert_eq!(w.status.phase, Some(Phase::Healthy));
}

#[test]
fn a_missing_dependency_and_a_cycle_hold_the_upgrade_and_say_why() {
    let mut w = upgraded_by_the_commit(&spec("v1"));
    w.observed.dependencies = vec![dependency("shop/db-api", DependencyState::Missing)];
    w.step(&spec("v2"));
    let why = waiting_for_dependencies(&w).expect("held");
    assert!(why.contains("shop/db-api (not found)"), "{why}");

    let mut w = upgraded_by_the_commit(&spec("v1"));
    w.observed.cycle = Some("shop/a → shop/b → shop/a".into());
    w.step(&spec("v2"));
    w.step(&spec("v2"));
    assert_eq!(w.status.phase, Some(Phase::Pending));
    let why = waiting_for_dependencies(&w).expect("held");
    assert!(why.contains("cycle (shop/a → shop/b → shop/a)"), "{why}");
}

#[test]
fn an_app_whose_dependency_failed_at_the_same_commit_never_starts() {
    let mut w = upgraded_by_the_commit(&spec("v1"));
    w.observed.dependencies = vec![dependency(
        "shop/orders",
        DependencyState::Waiting("HealthChecking".into()),
    )];
    w.step(&spec("v2"));
    assert_eq!(w.status.phase, Some(Phase::Pending));
    // orders fails at the commit.
    w.observed.dependencies[0].state = DependencyState::Waiting("Failed".into());
    w.observed.group_failures = vec![GroupFailure {
        key: "shop/orders".into(),
        dependent: false,
        settled: false,
    }];
    w.settle(&spec("v2"));
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert_eq!(w.status.failed_revision.as_deref(), Some(COMMIT));
    assert_eq!(w.stable(), Some(("v1", 4)), "v2 never ran");
    assert!(
        w.status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("its dependency shop/orders failed at the same commit")),
        "{:?}",
        w.status.message
    );
    let rolled_back = w
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_ROLLED_BACK)
        .expect("RolledBack");
    assert_eq!(rolled_back.reason, "GroupRolledBack");
}

#[test]
fn a_completed_dependency_rolls_back_with_its_down_migration_once_the_dependent_has() {
    let v1 = with_down_migration(with_migration(spec("v1")));
    let v2 = with_down_migration(with_migration(spec("v2")));
    let mut w = World::deployed(&v1);
    w.observed.revision = Some(COMMIT.into());
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert_eq!(w.stable(), Some(("v2", 4)));
    // Its dependent failed at the same commit, still rolling back: this one waits (reverse order).
    w.observed.group_failures = vec![GroupFailure {
        key: "shop/frontend".into(),
        dependent: true,
        settled: false,
    }];
    w.settle(&v2);
    assert_eq!(
        w.status.phase,
        Some(Phase::Healthy),
        "not before the dependent"
    );
    // The dependent's rollback is over: this one goes back to v1, and undoes v2's migration.
    w.observed.group_failures[0].settled = true;
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert_eq!(w.stable(), Some(("v1", 4)), "v1 serves again");
    assert!(
        w.jobs_run.contains(&"down v2".to_string()),
        "{:?}",
        w.jobs_run
    );
    assert_eq!(w.status.failed_hash, Some(hash_of(&v2)));
    assert!(!w.status.was_healthy(&hash_of(&v2)));
    // Git is set back (the rollback commit): v1 again, at once, and the story stays.
    w.observed.revision = Some("r011bac".into());
    w.observed.group_failures.clear(); // the executor reports failures of the spec's commit only
    w.settle(&v1);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert_eq!(w.stable(), Some(("v1", 4)));
    assert_eq!(
        w.jobs_run.iter().filter(|j| j.starts_with("down")).count(),
        1,
        "one down-migration: {:?}",
        w.jobs_run
    );
}

#[test]
fn a_failure_of_another_commit_is_not_this_groups() {
    let mut w = upgraded_by_the_commit(&spec("v1"));
    w.settle(&spec("v2"));
    // The executor reports failures of this app's commit only; a later commit's upgrade of this
    // app, not started yet, is not failed by them.
    w.observed.revision = Some("later".into());
    w.observed.group_failures = vec![GroupFailure {
        key: "shop/frontend".into(),
        dependent: true,
        settled: true,
    }];
    w.step(&spec("v3"));
    assert_eq!(
        w.status.phase,
        Some(Phase::Deploying),
        "the status was at another commit's upgrade when the failure was reported"
    );
}
