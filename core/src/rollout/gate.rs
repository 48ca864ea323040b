//! The gates an upgrade waits at: upgrade windows ([`crate::window`]) at its start and, for windows
//! with `gate: steps`, before each canary step and the blue-green switch. A rollback, a return to a
//! revision healthy before, and the fast path never wait at a gate; a human may start an upgrade
//! outside its windows with `bosun promote --now` (recorded in `status.windowOverride`).
//!
//! The dependency gate: an upgrade starts only when each app of `spec.dependsOn` that the same git
//! commit changed is Healthy at what that commit asks for (apps of one level go in parallel; an app
//! the commit did not change is not waited for), and never while `spec.dependsOn` makes a cycle.
//!
//! While an upgrade waits, the condition `WaitingForWindow` or `WaitingForDependencies` says why (and
//! when the window opens); it is removed by the first decision that does not wait.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::action::Action;
use super::{ANNOTATION_PROMOTE_NOW, DependencyObs, In, Out};
use crate::engine::bestie::set_condition;
use crate::model::ManagedApplicationStatus;
pub(super) use crate::window::Moment;
use crate::window::{self, State};

/// The condition of an upgrade that waits for a window to open.
pub const CONDITION_WAITING_FOR_WINDOW: &str = "WaitingForWindow";
/// The condition of an upgrade that waits for the apps it depends on (`spec.dependsOn`).
pub const CONDITION_WAITING_FOR_DEPENDENCIES: &str = "WaitingForDependencies";
/// How often an upgrade waiting for its dependencies looks again (their changes do not wake it).
const DEPENDENCY_RECHECK_SECS: u64 = 3;
/// What a start outside the windows is recorded as.
pub const OVERRIDE_NOTE: &str = "started outside its upgrade windows (bosun promote --now)";

/// A gate that holds the upgrade: its condition, why (for the status message) and when to look
/// again.
pub(super) struct Closed {
    pub condition: &'static str,
    pub reason: &'static str,
    pub message: String,
    pub recheck_secs: u64,
}

/// Whether a human asked to start this revision outside its windows, now or before.
fn overridden(i: &In<'_>, next: &ManagedApplicationStatus) -> bool {
    let hash = i.target.rev.hash.as_str();
    next.window_override.as_deref() == Some(hash)
        || i.observed
            .promote_now
            .as_deref()
            .is_some_and(|v| v == i.spec.version || v == hash)
}

/// The window gate of `moment`, at `i.now`: `None` when open.
fn windows(i: &In<'_>, next: &ManagedApplicationStatus, moment: Moment) -> Option<Closed> {
    if i.spec.upgrade_windows.is_empty() || overridden(i, next) {
        return None;
    }
    let (message, recheck_secs) = window::waiting(&i.spec.upgrade_windows, moment, i.now.0)?;
    Some(Closed {
        condition: CONDITION_WAITING_FOR_WINDOW,
        reason: "OutsideWindow",
        message,
        recheck_secs,
    })
}

/// The dependency gate: a cycle holds the upgrade; so does each app of `spec.dependsOn` that the
/// same commit changed until it is Healthy at it. `None` when open.
fn dependencies(i: &In<'_>) -> Option<Closed> {
    let closed = |message: String| Closed {
        condition: CONDITION_WAITING_FOR_DEPENDENCIES,
        reason: "DependenciesNotReady",
        message,
        recheck_secs: DEPENDENCY_RECHECK_SECS,
    };
    if let Some(cycle) = &i.observed.cycle {
        return Some(Closed {
            reason: "DependencyCycle",
            ..closed(format!(
                "cannot start: spec.dependsOn makes a cycle ({cycle}); remove one of its edges"
            ))
        });
    }
    let waits: Vec<String> = i
        .observed
        .dependencies
        .iter()
        .filter_map(DependencyObs::waits_for)
        .collect();
    (!waits.is_empty()).then(|| closed(format!("waits for dependencies: {}", waits.join(", "))))
}

/// The gates at the start of a fresh upgrade. `None`: it may start.
pub(super) fn at_start(i: &In<'_>, next: &ManagedApplicationStatus) -> Option<Closed> {
    dependencies(i).or_else(|| windows(i, next, Moment::Start))
}

/// Whether a gate holds the next canary step or the blue-green switch; when one does, the upgrade
/// waits at it ([`wait`]).
pub(super) fn held_at_step(i: &In<'_>, o: Waiting<'_>) -> bool {
    match windows(i, o.next, Moment::Step) {
        Some(closed) => {
            wait(i, o, closed);
            true
        }
        None => false,
    }
}

/// The upgrade waits at `closed`: the message, the condition, the next look.
pub(super) fn wait(i: &In<'_>, o: Waiting<'_>, closed: Closed) {
    let message = format!("{} {}", i.target.label, closed.message);
    if o.next.message.as_deref() != Some(message.as_str()) {
        o.next.message = Some(message.clone());
    }
    for other in [
        CONDITION_WAITING_FOR_WINDOW,
        CONDITION_WAITING_FOR_DEPENDENCIES,
    ] {
        if other != closed.condition {
            o.next.conditions.retain(|c| c.type_ != other);
        }
    }
    set_condition(
        &mut o.next.conditions,
        condition(closed.condition, closed.reason, message, i.now),
    );
    *o.waiting = true;
    let recheck = closed.recheck_secs.max(1);
    *o.requeue_after = Some(o.requeue_after.map_or(recheck, |r| r.min(recheck)));
}

/// What [`wait`] writes, borrowed from [`Out`].
pub(super) struct Waiting<'a> {
    pub next: &'a mut ManagedApplicationStatus,
    pub requeue_after: &'a mut Option<u64>,
    pub waiting: &'a mut bool,
}

impl<'a> Waiting<'a> {
    pub(super) fn of(
        next: &'a mut ManagedApplicationStatus,
        requeue_after: &'a mut Option<u64>,
        waiting: &'a mut bool,
    ) -> Waiting<'a> {
        Waiting {
            next,
            requeue_after,
            waiting,
        }
    }
}

impl Out {
    pub(super) fn waiting(&mut self) -> Waiting<'_> {
        Waiting::of(&mut self.next, &mut self.requeue_after, &mut self.waiting)
    }
}

/// The upgrade passes its gate at `moment`: a start (or step) outside the windows that a human asked
/// for is recorded, and the annotation that asked removed. Returns the words the transition adds when
/// it was such a start.
pub(super) fn pass(
    i: &In<'_>,
    next: &mut ManagedApplicationStatus,
    actions: &mut Vec<Action>,
    moment: Moment,
) -> Option<&'static str> {
    let hash = i.target.rev.hash.as_str();
    let asks = i
        .observed
        .promote_now
        .as_deref()
        .is_some_and(|v| v == i.spec.version || v == hash);
    if asks {
        actions.push(Action::ClearAnnotation {
            name: ANNOTATION_PROMOTE_NOW,
        });
    }
    let closed = !i.spec.upgrade_windows.is_empty()
        && window::state(&i.spec.upgrade_windows, moment, i.now.0) != State::Open;
    if asks && closed && next.window_override.as_deref() != Some(hash) {
        next.window_override = Some(hash.into());
        return Some(OVERRIDE_NOTE);
    }
    None
}

/// Ends a decision: the waiting conditions go once nothing waits.
pub(super) fn settle(o: &mut Out) {
    if !o.waiting {
        o.next.conditions.retain(|c| {
            c.type_ != CONDITION_WAITING_FOR_WINDOW && c.type_ != CONDITION_WAITING_FOR_DEPENDENCIES
        });
    }
}

fn condition(type_: &str, reason: &str, message: String, now: &Time) -> Condition {
    Condition {
        type_: type_.into(),
        status: "True".into(),
        reason: reason.into(),
        message,
        last_transition_time: now.clone(),
        observed_generation: None,
    }
}
