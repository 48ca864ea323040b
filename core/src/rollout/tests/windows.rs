//! Upgrade windows at the start gate and, with `gate: steps`, at each step. The World's clock starts
//! at 1_800_000_000 (Friday 2027-01-15 08:00 UTC) and jumps by each decision's requeue.

use super::*;
use crate::model::{UpgradeWindow, WindowGate, WindowKind};
use crate::rollout::gate::{CONDITION_WAITING_FOR_WINDOW, OVERRIDE_NOTE};

/// Opens every day at `hour`:00 UTC for `duration`.
fn daily(hour: u32, duration: &str) -> UpgradeWindow {
    UpgradeWindow {
        kind: WindowKind::Allow,
        schedule: format!("0 {hour} * * *"),
        duration: duration.into(),
        time_zone: None,
        gate: WindowGate::Start,
    }
}

fn with_windows(mut s: ManagedApplicationSpec, w: &[UpgradeWindow]) -> ManagedApplicationSpec {
    s.upgrade_windows = w.to_vec();
    s
}

fn waiting(w: &World) -> Option<String> {
    w.status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_WAITING_FOR_WINDOW && c.status == "True")
        .map(|c| c.message.clone())
}

const HOUR: i64 = 3600;

/// One decision at the World's time, without letting its clock jump by the requeue (a wake-up by a
/// watch event, say).
fn look(w: &mut World, spec: &ManagedApplicationSpec) -> Decision {
    let now = w.now;
    let d = w.step(spec);
    w.now = now;
    d
}

#[test]
fn an_upgrade_outside_its_window_waits_in_pending_and_starts_when_the_window_opens() {
    // 08:00 now; the window opens at 10:00 for an hour.
    let windows = [daily(10, "1h")];
    let mut w = World::deployed(&spec("v1"));
    let v2 = with_windows(spec("v2"), &windows);
    let d = look(&mut w, &v2);
    assert_eq!(w.status.phase, Some(Phase::Pending));
    let why = waiting(&w).expect("a WaitingForWindow condition");
    assert!(
        why.contains("waits for window: opens Fri 10:00 UTC"),
        "{why}"
    );
    assert_eq!(w.status.message.as_deref(), Some(why.as_str()));
    assert_eq!(
        d.requeue_after,
        Some((2 * HOUR - w.now) as u64),
        "looks again when it opens"
    );
    assert_eq!(w.stable(), Some(("v1", 4)), "nothing moved while it waits");
    // Woken by its requeue, at the opening: the upgrade starts and completes.
    w.step(&v2);
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert_eq!(w.stable(), Some(("v2", 4)));
    assert!(w.now >= 2 * HOUR, "not before the window: {}", w.now);
    assert_eq!(waiting(&w), None, "the condition goes once it started");
}

#[test]
fn a_wait_writes_nothing_new_until_the_window_opens() {
    let mut w = World::deployed(&spec("v1"));
    let v2 = with_windows(spec("v2"), &[daily(10, "1h")]);
    look(&mut w, &v2);
    let before = w.status.clone();
    w.now += 60; // woken early (a watch event): the same wait, the same status
    look(&mut w, &v2);
    assert_eq!(w.status, before, "no status write while nothing changed");
}

#[test]
fn a_window_that_closes_mid_upgrade_lets_it_finish_and_the_next_one_waits() {
    // Open 08:00-08:01; the canary's pauses run well past it.
    let windows = [daily(8, "1m")];
    let steps = [(25, Some(Pause::Seconds(120))), (100, None)];
    let mut w = World::deployed(&canary("v1", &steps));
    let v2 = with_windows(canary("v2", &steps), &windows);
    w.settle(&v2);
    assert_eq!(
        w.status.phase,
        Some(Phase::Healthy),
        "{:?}",
        w.status.message
    );
    assert!(w.now > 60, "it ran past the window's end");
    let v3 = with_windows(canary("v3", &steps), &windows);
    w.step(&v3);
    assert_eq!(w.status.phase, Some(Phase::Pending));
    assert!(
        waiting(&w).is_some_and(|m| m.contains("opens Sat 08:00 UTC")),
        "{:?}",
        waiting(&w)
    );
}

#[test]
fn a_deny_window_holds_an_upgrade_even_inside_an_allow_window() {
    let deny = UpgradeWindow {
        kind: WindowKind::Deny,
        ..daily(7, "2h")
    };
    let mut w = World::deployed(&spec("v1"));
    let v2 = with_windows(spec("v2"), &[daily(0, "23h"), deny]);
    w.step(&v2);
    let why = waiting(&w).expect("held by the deny window");
    assert!(why.contains("opens Fri 09:00 UTC"), "{why}");
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert!(w.now >= HOUR, "{}", w.now);
}

#[test]
fn a_rollback_and_a_revert_to_a_healthy_revision_never_wait_for_a_window() {
    // The window is open now (08:00-08:30) and closes during the upgrade, which fails.
    let windows = [UpgradeWindow {
        gate: WindowGate::Steps,
        ..daily(8, "30m")
    }];
    let steps = [(25, Some(Pause::Seconds(10))), (100, None)];
    let v1 = with_windows(checked(canary("v1", &steps)), &windows);
    let mut w = World::deployed(&v1);
    let v2 = with_windows(checked(canary("v2", &steps)), &windows);
    w.unhealthy_version = Some("v2".into());
    w.now = 29 * 60; // 08:29
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Failed), "rolled back at once");
    assert_eq!(w.stable(), Some(("v1", 4)));
    assert!(w.now < 2 * HOUR, "the rollback did not wait for a window");
    // git asks for v1 again (the rollback commit): the fast path, at once.
    w.settle(&v1);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert_eq!(waiting(&w), None);
}

#[test]
fn a_revert_to_a_revision_healthy_before_rolls_out_directly_outside_the_windows() {
    let mut w = World::deployed(&spec("v1"));
    w.settle(&spec("v2"));
    let windows = [daily(10, "1h")];
    let back = with_windows(spec("v1"), &windows);
    w.step(&back);
    assert_ne!(w.status.phase, Some(Phase::Pending), "no wait to go back");
    w.settle(&back);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert_eq!(w.stable(), Some(("v1", 4)));
    assert!(w.now < 2 * HOUR, "went back before the window opened");
}

#[test]
fn with_gate_steps_a_closed_window_holds_the_next_canary_step_and_keeps_checking_the_canary() {
    // Open 08:00-08:01 and again tomorrow; steps are gated.
    let windows = [UpgradeWindow {
        gate: WindowGate::Steps,
        ..daily(8, "1m")
    }];
    let steps = [(25, Some(Pause::Seconds(120))), (100, None)];
    let mut w = World::deployed(&checked(canary("v1", &steps)));
    let v2 = with_windows(checked(canary("v2", &steps)), &windows);
    for _ in 0..20 {
        w.step(&v2);
        if waiting(&w).is_some() {
            break;
        }
    }
    let why = waiting(&w).expect("the second step waits for the window");
    assert!(why.contains("opens Sat 08:00 UTC"), "{why}");
    assert_eq!(w.status.step_index, Some(0), "still at step 1");
    assert_eq!(w.status.phase, Some(Phase::HealthChecking));
    // While it waits, the canary keeps being checked: when it breaks, it is rolled back at once.
    w.probed.clear();
    w.unhealthy_version = Some("v2".into());
    let before = w.now;
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert!(
        w.now - before < HOUR,
        "rolled back within the checks, not at the window"
    );
    assert!(w.probed.iter().any(|(role, _)| *role == Role::Canary));
}

#[test]
fn gate_start_windows_do_not_hold_steps() {
    let windows = [daily(8, "1m")];
    let steps = [(25, Some(Pause::Seconds(120))), (100, None)];
    let mut w = World::deployed(&canary("v1", &steps));
    let v2 = with_windows(canary("v2", &steps), &windows);
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert!(w.now < HOUR, "{}", w.now);
}

#[test]
fn promote_now_starts_a_waiting_upgrade_outside_its_window_and_says_so() {
    let windows = [UpgradeWindow {
        gate: WindowGate::Steps,
        ..daily(10, "1h")
    }];
    let steps = [(25, Some(Pause::Seconds(30))), (100, None)];
    let mut w = World::deployed(&canary("v1", &steps));
    let v2 = with_windows(canary("v2", &steps), &windows);
    look(&mut w, &v2);
    assert_eq!(w.status.phase, Some(Phase::Pending));
    // `bosun promote --now` names the target revision.
    w.observed.promote_now = w.status.target_hash.clone();
    w.settle(&v2);
    assert_eq!(
        w.status.phase,
        Some(Phase::Healthy),
        "steps went on too: {:?}",
        w.status.message
    );
    assert!(w.now < 2 * HOUR, "before the window opened: {}", w.now);
    assert_eq!(w.status.window_override, Some(hash_of(&v2)));
    assert_eq!(w.observed.promote_now, None, "the annotation was removed");
    assert!(
        w.status
            .history
            .iter()
            .any(|h| h.message.contains(OVERRIDE_NOTE)),
        "the history (Events, note, comment) records it: {:?}",
        w.status.history
    );
    // The next upgrade waits again.
    let v3 = with_windows(canary("v3", &steps), &windows);
    look(&mut w, &v3);
    assert_eq!(w.status.phase, Some(Phase::Pending));
    assert_eq!(w.status.window_override, None);
}

#[test]
fn a_promote_now_for_another_version_is_ignored() {
    let mut w = World::deployed(&spec("v1"));
    let v2 = with_windows(spec("v2"), &[daily(10, "1h")]);
    w.observed.promote_now = Some("v9".into());
    look(&mut w, &v2);
    look(&mut w, &v2);
    assert_eq!(w.status.phase, Some(Phase::Pending));
}

#[test]
fn a_first_install_waits_for_its_window_too() {
    let mut w = World::new();
    let v1 = with_windows(spec("v1"), &[daily(10, "1h")]);
    w.step(&v1);
    assert_eq!(w.status.phase, Some(Phase::Pending));
    assert_eq!(w.observed.stable, None, "nothing runs before the window");
    w.settle(&v1);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert!(w.now >= 2 * HOUR);
}

#[test]
fn an_invalid_window_holds_the_upgrade_and_says_why() {
    let bad = UpgradeWindow {
        time_zone: Some("Mars/Olympus".into()),
        ..daily(10, "1h")
    };
    let mut w = World::deployed(&spec("v1"));
    let v2 = with_windows(spec("v2"), &[bad]);
    w.step(&v2);
    assert_eq!(w.status.phase, Some(Phase::Pending));
    let why = waiting(&w).expect("held");
    assert!(why.contains("Mars/Olympus"), "{why}");
}
