//! The gates an upgrade waits at: upgrade windows ([`crate::window`]) at its start and, for windows
//! with `gate: steps`, before each canary step and the blue-green switch. A rollback, a return to a
//! revision healthy before, and the fast path never wait at a gate; a human may start an upgrade
//! outside its windows with `bosun promote --now` (recorded in `status.windowOverride`).
//!
//! While an upgrade waits, the condition `WaitingForWindow` says why and when the window opens; it is
//! removed by the first decision that does not wait.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::action::Action;
use super::{ANNOTATION_PROMOTE_NOW, In, Out};
use crate::engine::bestie::set_condition;
use crate::model::ManagedApplicationStatus;
pub(super) use crate::window::Moment;
use crate::window::{self, State};

/// The condition of an upgrade that waits for a window to open.
pub const CONDITION_WAITING_FOR_WINDOW: &str = "WaitingForWindow";
/// What a start outside the windows is recorded as.
pub const OVERRIDE_NOTE: &str = "started outside its upgrade windows (bosun promote --now)";

/// A gate that holds the upgrade: why (for the status message) and when to look again.
pub(super) struct Closed {
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
    let now = i.now.0;
    let state = window::state(&i.spec.upgrade_windows, moment, now);
    let recheck_secs = window::recheck_secs(&state, now);
    match state {
        State::Open => None,
        State::Closed { reason, opens, .. } => {
            let opens = if opens.is_empty() {
                "no opening found".to_string()
            } else {
                format!("opens {opens}")
            };
            Some(Closed {
                message: format!("waits for window: {opens} ({reason})"),
                recheck_secs,
            })
        }
    }
}

/// The gates at the start of a fresh upgrade. `None`: it may start.
pub(super) fn at_start(i: &In<'_>, next: &ManagedApplicationStatus) -> Option<Closed> {
    windows(i, next, Moment::Start)
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
    set_condition(
        &mut o.next.conditions,
        condition("True", "OutsideWindow", message, i.now),
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

/// Ends a decision: the `WaitingForWindow` condition goes once nothing waits.
pub(super) fn settle(o: &mut Out) {
    if !o.waiting {
        o.next
            .conditions
            .retain(|c| c.type_ != CONDITION_WAITING_FOR_WINDOW);
    }
}

fn condition(status: &str, reason: &str, message: String, now: &Time) -> Condition {
    Condition {
        type_: CONDITION_WAITING_FOR_WINDOW.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: now.clone(),
        observed_generation: None,
    }
}
