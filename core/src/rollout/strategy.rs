//! How an upgrade goes, by the app's strategy: the plan (direct, canary steps, blue-green) and the
//! stage at each step index; and which side a round of health checks probes.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::{Action, Role};
use crate::engine::health::{self, Thresholds};
use crate::model::{
    CanaryStep, ManagedApplicationSpec, ManagedApplicationStatus, Pause, Phase, StrategyType,
};

/// How the current upgrade goes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Plan<'a> {
    /// The stable Deployment takes the new version (Rolling, Recreate, a first deployment).
    Direct,
    Canary(&'a [CanaryStep]),
    BlueGreen {
        auto_promote: bool,
        delay: i64,
    },
}

/// The stage of an upgrade at one step index.
#[derive(Clone, Debug, PartialEq)]
pub enum Stage {
    /// A canary step: `weight` percent of the pods run the new version in `<app>-canary`.
    Canary {
        index: usize,
        weight: i32,
        pause: Option<Pause>,
    },
    /// BlueGreen before the switch: the new version runs fully in `<app>-preview`.
    Preview,
    /// BlueGreen after the switch: the old side is kept for `scaleDownDelaySeconds`.
    Switched,
    /// The stable Deployment takes the new version (and the canary or preview goes).
    Final,
}

/// The app's canary traffic goes through a router (`upgradeStrategy.trafficRouting`).
pub(super) fn routed(spec: &ManagedApplicationSpec) -> bool {
    spec.upgrade_strategy.traffic_routing.is_some()
}

/// Removes the canary; with a router, its traffic goes first, at once (`Route` to 0 before the
/// Deployment goes).
pub(super) fn remove_canary(spec: &ManagedApplicationSpec, actions: &mut Vec<Action>) {
    if routed(spec) {
        actions.push(Action::Route { weight: 0 });
    }
    actions.push(Action::Remove { role: Role::Canary });
}

pub(super) fn canary_steps(spec: &ManagedApplicationSpec) -> Option<&[CanaryStep]> {
    let s = &spec.upgrade_strategy;
    let canary = s.canary.as_ref()?;
    let enabled = canary.enabled.unwrap_or(s.type_ == StrategyType::Canary);
    (enabled && !canary.steps.is_empty()).then_some(canary.steps.as_slice())
}

pub(super) fn plan<'a>(
    spec: &'a ManagedApplicationSpec,
    status: &ManagedApplicationStatus,
) -> Plan<'a> {
    if status.current_version.is_none() {
        return Plan::Direct;
    }
    if spec.upgrade_strategy.type_ == StrategyType::BlueGreen {
        let bg = spec.upgrade_strategy.blue_green.clone().unwrap_or_default();
        return Plan::BlueGreen {
            auto_promote: bg.auto_promote.unwrap_or(true),
            delay: i64::from(bg.scale_down_delay_seconds.unwrap_or(30).max(0)),
        };
    }
    match canary_steps(spec) {
        Some(steps) => Plan::Canary(steps),
        None => Plan::Direct,
    }
}

pub(super) fn stage_of(plan: Plan<'_>, step: usize) -> Stage {
    match plan {
        Plan::Direct => Stage::Final,
        Plan::Canary(steps) => match steps.get(step) {
            Some(s) => Stage::Canary {
                index: step,
                weight: s.weight,
                pause: s.pause.clone(),
            },
            None => Stage::Final,
        },
        Plan::BlueGreen { .. } => match step {
            0 => Stage::Preview,
            1 => Stage::Switched,
            _ => Stage::Final,
        },
    }
}

/// The stage the app's upgrade is at (meaningful while it is `Deploying` or `HealthChecking`).
pub fn stage(spec: &ManagedApplicationSpec, status: &ManagedApplicationStatus) -> Stage {
    let step = usize::try_from(status.step_index.unwrap_or(0)).unwrap_or(0);
    stage_of(plan(spec, status), step)
}

pub(super) fn checked_role(stage: &Stage) -> Role {
    match stage {
        Stage::Canary { .. } => Role::Canary,
        Stage::Preview => Role::Preview,
        Stage::Switched | Stage::Final => Role::Stable,
    }
}

/// Which side the executor must probe now, if a round of active health checks is due: the new
/// version's pods of the stage being checked. `None` without a health check, outside
/// `HealthChecking`, while paused, or before the round is due.
pub fn probe_target(
    spec: &ManagedApplicationSpec,
    status: &ManagedApplicationStatus,
    now: &Time,
) -> Option<Role> {
    let hc = spec.upgrade_strategy.health_check.as_ref()?;
    let stage = stage(spec, status);
    // BlueGreen after the switch: the new side serves every request while the old one is kept, and
    // stays watched until the old one goes (Argo Rollouts' post-promotion analysis).
    let switched = status.phase == Some(Phase::Deploying) && stage == Stage::Switched;
    if spec.paused || !(status.phase == Some(Phase::HealthChecking) || switched) {
        return None;
    }
    let state = status.health_check.as_ref()?;
    (health::due_in(&Thresholds::of(hc), state, now) == Some(0)).then(|| match stage {
        Stage::Switched => Role::Preview,
        _ => checked_role(&stage),
    })
}
