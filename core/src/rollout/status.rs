//! The status a decision writes: the revisions it names (serving, target, last healthy), how
//! messages name them, the phase moves and their history entries, the `Ready` condition, and the
//! revision the active Service selects.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::action::{Action, Decision, Transition};
use super::revision::RevisionRef;
use super::{CONDITION_READY, HISTORY_CAP, HistoryEntry};
use crate::engine::bestie::set_condition;
use crate::model::{ManagedApplicationSpec, ManagedApplicationStatus, Phase, StrategyType};

/// The revision the active Service selects (BlueGreen) or `None` (every pod of the app).
pub(super) fn served_revision(
    spec: &ManagedApplicationSpec,
    next: &ManagedApplicationStatus,
) -> Option<RevisionRef> {
    if spec.upgrade_strategy.type_ != StrategyType::BlueGreen {
        return None;
    }
    let target = target_ref(next);
    let current = current_ref(next);
    match next.phase {
        Some(Phase::Failed) => last_healthy_ref(next).or(current).or(target),
        Some(Phase::Deploying) | Some(Phase::HealthChecking)
            if current.is_some() && next.step_index.unwrap_or(0) >= 1 =>
        {
            target
        }
        _ => current.or(target),
    }
}

pub(super) fn pair(hash: &Option<String>, version: &Option<String>) -> Option<RevisionRef> {
    match (hash, version) {
        (Some(hash), Some(version)) => Some(RevisionRef {
            hash: hash.clone(),
            version: version.clone(),
        }),
        // A status written before revisions: the version is all that is known; its hash names no
        // kept revision, so the executor leaves that Deployment's template as it is.
        (None, Some(version)) => Some(RevisionRef {
            hash: format!("version-{version}"),
            version: version.clone(),
        }),
        (_, None) => None,
    }
}

/// The revision serving (the stable side), if any.
pub fn current_ref(s: &ManagedApplicationStatus) -> Option<RevisionRef> {
    pair(&s.current_hash, &s.current_version)
}

/// The revision being rolled out, if any.
pub fn target_ref(s: &ManagedApplicationStatus) -> Option<RevisionRef> {
    pair(&s.target_hash, &s.target_version)
}

/// The revision a rollback restores, if any.
pub fn last_healthy_ref(s: &ManagedApplicationStatus) -> Option<RevisionRef> {
    pair(&s.last_healthy_hash, &s.last_healthy_version)
}

/// How a revision is named to people: its version, and its hash as well when the version alone
/// does not tell it from the other one in play (a change of env, resources, ... at the same version).
pub fn label(rev: &RevisionRef, other: Option<&RevisionRef>) -> String {
    match other {
        Some(o) if o.version == rev.version && o.hash != rev.hash => rev.to_string(),
        _ => rev.version.clone(),
    }
}

/// A status written before revisions knows versions only: where its version is the spec's, the
/// spec's revision is taken for it (what runs was built from that spec).
pub(super) fn adopt_versions(next: &mut ManagedApplicationStatus, rev: &RevisionRef) {
    let adopt = |version: &Option<String>, hash: &mut Option<String>| {
        if hash.is_none() && version.as_deref() == Some(rev.version.as_str()) {
            *hash = Some(rev.hash.clone());
        }
    };
    adopt(&next.current_version, &mut next.current_hash);
    adopt(&next.target_version, &mut next.target_hash);
    adopt(&next.last_healthy_version, &mut next.last_healthy_hash);
    adopt(&next.failed_version, &mut next.failed_hash);
}

pub(super) fn push_capped<T: PartialEq>(list: &mut Vec<T>, item: T, cap: usize) {
    list.retain(|x| *x != item);
    list.push(item);
    if list.len() > cap {
        let extra = list.len() - cap;
        list.drain(..extra);
    }
}

/// Sets the phase and message and returns the transition (reason: the phase).
pub(super) fn move_to(
    next: &mut ManagedApplicationStatus,
    to: Phase,
    message: String,
) -> Option<Transition> {
    moved(next, to, to.to_string(), message)
}

pub(super) fn moved(
    next: &mut ManagedApplicationStatus,
    to: Phase,
    reason: String,
    message: String,
) -> Option<Transition> {
    let t = Transition {
        from: next.phase,
        to,
        reason,
        message: message.clone(),
    };
    next.phase = Some(to);
    next.message = Some(message);
    Some(t)
}

/// The `Ready` condition, from the phase: True once the revision git asks for runs and is healthy.
pub(super) fn ready_condition(next: &ManagedApplicationStatus, now: &Time) -> Condition {
    let (status, reason, message) = match next.phase {
        Some(Phase::Healthy) => (
            "True",
            "RolloutComplete",
            format!(
                "{} runs and is healthy",
                current_ref(next).map_or_else(String::new, |c| c.to_string())
            ),
        ),
        Some(Phase::Failed) => (
            "False",
            "RolledBack",
            format!(
                "{} failed; {} runs",
                target_ref(next).map_or_else(String::new, |t| t.to_string()),
                last_healthy_ref(next).map_or_else(|| "nothing".into(), |c| c.to_string())
            ),
        ),
        Some(
            p @ (Phase::Pending | Phase::Migrating | Phase::Deploying | Phase::HealthChecking),
        ) => (
            "False",
            "Progressing",
            format!(
                "upgrading to {}: {p}",
                target_ref(next).map_or_else(String::new, |t| t.to_string())
            ),
        ),
        None => ("Unknown", "Pending", String::new()),
    };
    Condition {
        type_: CONDITION_READY.into(),
        status: status.into(),
        reason: reason.into(),
        message,
        last_transition_time: now.clone(),
        observed_generation: None,
    }
}

/// Ends a decision: the history entry of the transition, the conditions, the active Service's selector.
pub(super) fn finish(
    spec: &ManagedApplicationSpec,
    mut next: ManagedApplicationStatus,
    mut actions: Vec<Action>,
    requeue_after: Option<u64>,
    transition: Option<Transition>,
    now: &Time,
) -> Decision {
    if let Some(t) = &transition {
        next.history.push(HistoryEntry {
            phase: t.to,
            time: now.clone(),
            step: next.step_index,
            weight: next.canary_weight,
            message: t.message.clone(),
        });
        if next.history.len() > HISTORY_CAP {
            let extra = next.history.len() - HISTORY_CAP;
            next.history.drain(..extra);
        }
    }
    if transition.is_some() || !next.conditions.iter().any(|c| c.type_ == CONDITION_READY) {
        let ready = ready_condition(&next, now);
        set_condition(&mut next.conditions, ready);
    }
    actions.push(Action::Serve {
        revision: served_revision(spec, &next),
    });
    Decision {
        status: next,
        actions,
        requeue_after,
        transition,
    }
}
