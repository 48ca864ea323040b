//! Time in the planner, always given (`now`), never read: pauses to the microsecond, what is left of
//! a wait, and `spec.paused`, which freezes a pause and resumes it with what remained.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

use super::action::Decision;
use crate::model::{ManagedApplicationSpec, ManagedApplicationStatus};

const PAUSED_MESSAGE: &str = "paused: spec.paused is true";

pub(super) fn millis_between(from: &MicroTime, to: &Time) -> i64 {
    to.0.as_millisecond() - from.0.as_millisecond()
}

/// Whole seconds a wait of `secs` from `start` has still to run at `now`, rounded up; 0 when it is over.
/// The start is kept to the microsecond, so a wait never ends early.
pub(super) fn seconds_left(start: &MicroTime, now: &Time, secs: i64) -> i64 {
    let left_ms = secs.saturating_mul(1000) - millis_between(start, now);
    if left_ms <= 0 {
        0
    } else {
        (left_ms + 999) / 1000
    }
}

/// The start of a pause of which `secs` had passed at `now`.
pub(super) fn seconds_before(now: &Time, secs: i64) -> MicroTime {
    MicroTime(
        k8s_openapi::jiff::Timestamp::from_millisecond(now.0.as_millisecond() - secs * 1000)
            .unwrap_or(now.0),
    )
}

/// `spec.paused`: nothing moves; a running pause remembers how much of it had passed. Returns the
/// decision when paused.
pub(super) fn paused(
    spec: &ManagedApplicationSpec,
    next: &mut ManagedApplicationStatus,
    now: &Time,
) -> Option<Decision> {
    if !spec.paused {
        return None;
    }
    if let Some(start) = next.pause_start_time.take() {
        // Whole seconds, rounded down: what is left of the pause is never cut short.
        next.paused_elapsed_seconds = Some((millis_between(&start, now) / 1000).max(0));
    }
    next.message = Some(PAUSED_MESSAGE.into());
    Some(Decision {
        status: next.clone(),
        actions: Vec::new(),
        requeue_after: None,
        transition: None,
    })
}

/// `spec.paused` set back to false: a frozen pause resumes with what remained.
pub(super) fn resume(next: &mut ManagedApplicationStatus, now: &Time) {
    if let Some(elapsed) = next.paused_elapsed_seconds.take() {
        next.pause_start_time = Some(seconds_before(now, elapsed));
    }
    if next.message.as_deref() == Some(PAUSED_MESSAGE) {
        next.message = Some("resumed: spec.paused is false".into());
    }
}
