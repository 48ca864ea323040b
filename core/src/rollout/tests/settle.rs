//! One reconcile, one status write: a stage that the same observation already passes is decided in
//! the same reconcile ([`settle`]), and only the milestones of an upgrade are Events.

use super::*;

/// What one reconcile of `w` with `spec` writes: its transitions' phases.
fn one_reconcile(w: &mut World, spec: &ManagedApplicationSpec) -> Vec<Phase> {
    let before = w.phases.len();
    w.step(spec);
    w.phases[before..].to_vec()
}

#[test]
fn a_ready_rolling_side_without_checks_is_healthy_in_the_reconcile_that_sees_it_ready() {
    let mut w = World::deployed(&spec("v1"));
    let v2 = spec("v2");
    assert_eq!(one_reconcile(&mut w, &v2), [Phase::Deploying]);
    // The new pods are ready (the world applied the Deployment): checks begin and end at once.
    assert_eq!(
        one_reconcile(&mut w, &v2),
        [Phase::HealthChecking, Phase::Healthy]
    );
    assert_eq!(w.status.current_version.as_deref(), Some("v2"));
    // The history still tells every stage.
    let told: Vec<Phase> = w
        .status
        .history
        .iter()
        .rev()
        .take(3)
        .map(|h| h.phase)
        .collect();
    assert_eq!(
        told,
        [Phase::Healthy, Phase::HealthChecking, Phase::Deploying]
    );
}

#[test]
fn a_health_check_is_not_passed_before_its_first_probe() {
    let mut w = World::deployed(&checked(spec("v1")));
    let v2 = checked(spec("v2"));
    assert_eq!(one_reconcile(&mut w, &v2), [Phase::Deploying]);
    assert_eq!(one_reconcile(&mut w, &v2), [Phase::HealthChecking]);
    assert!(w.probed.is_empty(), "not probed yet: {:?}", w.probed);
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert!(!w.probed.is_empty());
}

#[test]
fn a_canary_step_without_a_pause_moves_to_the_next_in_the_same_reconcile() {
    let steps = [(25, None), (50, Some(Pause::Seconds(60))), (100, None)];
    let mut w = World::deployed(&canary("v1", &steps));
    let v2 = canary("v2", &steps);
    assert_eq!(one_reconcile(&mut w, &v2), [Phase::Deploying]);
    assert_eq!(
        one_reconcile(&mut w, &v2),
        [Phase::HealthChecking, Phase::Deploying]
    );
    assert_eq!(w.status.step_index, Some(1));
    // The next step needs a second canary pod: asked for in the same reconcile, waited for.
    assert_eq!(w.observed.canary.as_ref().map(|c| c.replicas), Some(2));
    // Its pause starts where its pods are ready, and holds it.
    assert_eq!(one_reconcile(&mut w, &v2), [Phase::HealthChecking]);
    assert!(w.status.pause_start_time.is_some());
    assert_eq!(w.status.step_index, Some(1));
}

#[test]
fn canary_steps_over_the_same_pods_go_by_in_one_reconcile() {
    // One replica: every step's canary is the same one pod.
    let one = |v: &str| {
        let mut s = canary(v, &[(33, None), (66, None), (100, None)]);
        s.replicas = Some(1);
        s
    };
    let mut w = World::deployed(&one("v1"));
    let v2 = one("v2");
    assert_eq!(one_reconcile(&mut w, &v2), [Phase::Deploying]);
    let phases = one_reconcile(&mut w, &v2);
    assert_eq!(
        phases
            .iter()
            .filter(|p| **p == Phase::HealthChecking)
            .count(),
        3,
        "{phases:?}"
    );
    // The promotion gives the stable side the new version: its pods are waited for.
    assert_eq!(phases.last(), Some(&Phase::Deploying), "{phases:?}");
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
}

#[test]
fn a_request_of_a_person_is_decided_alone() {
    let steps = [(25, None), (100, None)];
    let mut w = World::deployed(&canary("v1", &steps));
    let v2 = canary("v2", &steps);
    assert_eq!(one_reconcile(&mut w, &v2), [Phase::Deploying]);
    w.observed.abort = Some("v2".into());
    let now = at(w.now);
    let settled = settle(&v2, &w.status, &w.observed, &now);
    assert_eq!(settled.transitions.len(), 1, "{:?}", settled.transitions);
    assert_eq!(settled.transitions[0].to, Phase::Failed);
}

#[test]
fn events_are_raised_for_the_start_the_end_a_failure_and_the_rollback_only() {
    let t = |from: Option<Phase>, to: Phase| Transition {
        from,
        to,
        reason: to.to_string(),
        message: String::new(),
    };
    use Phase::*;
    for (from, to) in [
        (None, Deploying),
        (Some(Healthy), Migrating),
        (Some(Healthy), Pending),
        (Some(Pending), Deploying),
        (Some(Failed), Deploying),
        (Some(HealthChecking), Healthy),
        (Some(Deploying), Failed),
        (Some(Failed), Failed),
    ] {
        assert!(t(from, to).is_milestone(), "{from:?} -> {to:?}");
    }
    for (from, to) in [
        (Some(Migrating), Deploying),
        (Some(Deploying), HealthChecking),
        (Some(HealthChecking), Deploying),
    ] {
        assert!(!t(from, to).is_milestone(), "{from:?} -> {to:?}");
    }
}

#[test]
fn a_rolling_upgrade_raises_two_events() {
    let mut w = World::deployed(&spec("v1"));
    let v2 = spec("v2");
    let mut milestones = Vec::new();
    for _ in 0..10 {
        let now = at(w.now);
        milestones.extend(
            settle(&v2, &w.status, &w.observed, &now)
                .milestones()
                .map(|t| t.to),
        );
        w.step(&v2);
        if w.status.phase == Some(Phase::Healthy) {
            break;
        }
    }
    assert_eq!(milestones, [Phase::Deploying, Phase::Healthy]);
}
