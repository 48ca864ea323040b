//! `HealthChecking`: whether the stage's new pods pass, then the stage's wait (a pause, a promotion)
//! and the move to the next stage, or to Healthy. The seam of metric analysis (issue [I]): a stage
//! passes when *every* verification passes ([`combine`]); today the active HTTP health checks are
//! the one verification.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};

use super::action::{Action, Transition};
use super::analyze::{self, StageAnalysis};
use super::clock::seconds_left;
use super::gate::{self, Moment};
use super::rollback::{Failure, fail};
use super::status::{move_to, push_capped};
use super::strategy::{Plan, Stage};
use super::{ANNOTATION_PROMOTE_STEP, HEALTHY_REVISIONS_CAP, In, Out};
use crate::engine::health::{self, Probe, Thresholds, Verdict};
use crate::model::{HealthyRevision, ManagedApplicationStatus, Pause, Phase};

/// A side is ready: its health checks start.
pub(super) fn check_health(
    next: &mut ManagedApplicationStatus,
    now: &Time,
    why: String,
) -> Option<Transition> {
    next.health_check = Some(health::start(now));
    move_to(next, Phase::HealthChecking, why)
}

/// Folds a round of probes into the stage's health-check counts (started now when there are none)
/// and returns the verdict. A stage already Healthy whose round passed again has nothing new to
/// record: a stage waiting a weekend for `bosun promote` must not write its status each period.
pub(super) fn check_round(
    next: &mut ManagedApplicationStatus,
    t: &Thresholds,
    probes: &[Probe],
    now: &Time,
) -> Verdict {
    let state = next.health_check.get_or_insert_with(|| health::start(now));
    let before = state.clone();
    health::fold(state, probes, now);
    if health::verdict(t, &before) == Verdict::Healthy && probes.iter().all(|p| p.outcome.is_ok()) {
        *state = before;
    }
    health::verdict(t, state)
}

/// Verdicts of several verifications of one stage, as one: the first failure fails the stage; it
/// passes when every one passed; else it is undecided.
pub(super) fn combine(verdicts: Vec<Verdict>) -> Verdict {
    if let Some(failed) = verdicts
        .iter()
        .find(|v| matches!(v, Verdict::Unhealthy { .. }))
    {
        return failed.clone();
    }
    if verdicts.iter().all(|v| *v == Verdict::Healthy) {
        Verdict::Healthy
    } else {
        Verdict::Undecided
    }
}

/// What a stage whose other checks passed waits for in its analysis.
pub(super) fn waiting_for_analysis(what: &str, a: &StageAnalysis) -> String {
    format!(
        "{what} is healthy; waiting for its analysis: {}",
        a.waiting_for.join(", ")
    )
}

/// One round of `HealthChecking` at `stage`.
pub(super) fn step(i: &In<'_>, o: &mut Out, plan: Plan<'_>, stage: &Stage) {
    let (spec, status, observed, now, target) = (i.spec, i.status, i.observed, i.now, &i.target);
    let Out {
        next,
        actions,
        requeue_after,
        transition,
        waiting,
    } = o;
    let (version, hash, tl) = (
        spec.version.as_str(),
        target.rev.hash.as_str(),
        &target.label,
    );
    let (_, sl) = (status, &i.stable_label);
    // The metric analysis of the stage: a failed metric fails the upgrade at once.
    let analysis = analyze::fold(spec, next, &observed.measurements, now);
    if let Some(why) = &analysis.failed {
        let at = match stage {
            Stage::Canary { index, .. } => format!("step {}", index + 1),
            Stage::Preview => "the preview".into(),
            Stage::Switched | Stage::Final => "the rollout".into(),
        };
        let why = format!("analysis of {tl} failed at {at}: {why}");
        *transition = fail(next, target, Failure::Analysis, why, now);
        return;
    }
    // Every verification of the stage; readiness (which gated Deploying) is the first.
    let mut verdicts = vec![Verdict::Healthy];
    if let Some(hc) = &spec.upgrade_strategy.health_check {
        let t = Thresholds::of(hc);
        let v = check_round(next, &t, &observed.probes, now);
        if v == Verdict::Undecided
            && let Some(state) = &next.health_check
        {
            *requeue_after = health::due_in(&t, state, now).map(|s| s.max(1));
        }
        verdicts.push(v);
    }
    match combine(verdicts) {
        Verdict::Unhealthy {
            pod,
            error,
            failures,
        } => {
            let why =
                format!("health checks of {tl} failed: pod {pod}: {error} ({failures} in a row)");
            *transition = fail(next, target, Failure::Rollout, why, now);
        }
        Verdict::Undecided => {
            let t = spec
                .upgrade_strategy
                .health_check
                .as_ref()
                .map(Thresholds::of);
            if let (Some(t), Some(f)) = (
                t,
                next.health_check
                    .as_ref()
                    .and_then(|s| s.failing_pods.iter().max_by_key(|f| f.failures)),
            ) {
                next.message = Some(format!(
                    "checking health of {tl}: pod {}: {} ({} of {} failures before a \
                     rollback)",
                    f.pod, f.last_error, f.failures, t.failure
                ));
            }
        }
        Verdict::Healthy => match &stage {
            Stage::Canary { index, pause, .. } => {
                let waited = match (pause, &next.pause_start_time) {
                    (None, _) => true,
                    (Some(Pause::UntilPromoted), _) => observed.promoted,
                    (Some(p), Some(start)) => {
                        let secs = i64::try_from(p.seconds().unwrap_or(0)).unwrap_or(0);
                        let left = seconds_left(start, now, secs);
                        if left > 0 {
                            *requeue_after = u64::try_from(left).ok();
                        }
                        left == 0
                    }
                    (Some(p), None) => {
                        next.pause_start_time = Some(MicroTime(now.0));
                        *requeue_after = p.seconds();
                        p.seconds() == Some(0)
                    }
                };
                // A window with `gate: steps` holds the next step (the canary stays checked).
                let held = waited
                    && !next.was_healthy(hash)
                    && gate::held_at_step(i, gate::Waiting::of(next, requeue_after, waiting));
                if waited && !held && !analysis.satisfied {
                    next.message = Some(waiting_for_analysis(
                        &format!("step {}", index + 1),
                        &analysis,
                    ));
                } else if waited && !held {
                    analyze::pass(next, &analysis);
                    let outside = gate::pass(i, next, actions, Moment::Step);
                    let why = match outside {
                        Some(note) => format!("step {} passed: {note}", index + 1),
                        None => format!("step {} passed", index + 1),
                    };
                    next.step_index = Some(i32::try_from(index + 1).unwrap_or(i32::MAX));
                    next.pause_start_time = None;
                    next.health_check = None;
                    *transition = move_to(next, Phase::Deploying, why);
                }
            }
            Stage::Preview => {
                let auto = matches!(
                    plan,
                    Plan::BlueGreen {
                        auto_promote: true,
                        ..
                    }
                );
                // The rollback window: a version that was healthy before is switched to once
                // its preview is healthy, without waiting for a promotion (as Argo Rollouts
                // skips the pause of a rollback).
                let window = next.was_healthy(hash);
                // A window with `gate: steps` holds the switch (the preview stays checked).
                let held = (auto || observed.promoted)
                    && !window
                    && gate::held_at_step(i, gate::Waiting::of(next, requeue_after, waiting));
                if held {
                    // It waits for the window, checked meanwhile.
                } else if (auto || observed.promoted || window) && !analysis.satisfied {
                    next.message = Some(waiting_for_analysis("the preview", &analysis));
                } else if auto || observed.promoted || window {
                    analyze::pass(next, &analysis);
                    let outside = gate::pass(i, next, actions, Moment::Step);
                    let delay = match plan {
                        Plan::BlueGreen { delay, .. } => delay,
                        Plan::Direct | Plan::Canary(_) => 0,
                    };
                    next.step_index = Some(1);
                    next.canary_weight = Some(100);
                    next.pause_start_time = Some(MicroTime(now.0));
                    // The new side stays watched after the switch: a fresh round of checks from now.
                    let watch = spec.upgrade_strategy.health_check.as_ref().map(|hc| {
                        let state = health::start(now);
                        let due = health::due_in(&Thresholds::of(hc), &state, now);
                        (state, due)
                    });
                    let mut wake = u64::try_from(delay).unwrap_or(0);
                    if let Some((_, Some(due))) = &watch {
                        wake = wake.min(*due);
                    }
                    next.health_check = watch.map(|(state, _)| state);
                    *requeue_after = Some(wake.max(1));
                    *transition = move_to(
                        next,
                        Phase::Deploying,
                        match outside {
                            Some(note) => format!(
                                "switched the active Service to {tl}; {sl} is kept {delay} s: {note}"
                            ),
                            None => format!(
                                "switched the active Service to {tl}; {sl} is kept {delay} s"
                            ),
                        },
                    );
                } else {
                    next.message = Some(format!(
                        "{tl} is healthy on the preview; waiting for bosun promote \
                         ({ANNOTATION_PROMOTE_STEP}: \"0\")"
                    ));
                }
            }
            Stage::Switched | Stage::Final if !analysis.satisfied => {
                next.message = Some(waiting_for_analysis(tl, &analysis));
            }
            Stage::Switched | Stage::Final => {
                analyze::pass(next, &analysis);
                next.current_version = Some(version.into());
                next.current_hash = Some(hash.into());
                next.last_healthy_version = Some(version.into());
                next.last_healthy_hash = Some(hash.into());
                next.failed_version = None;
                next.failed_hash = None;
                next.canary_weight = None;
                next.step_index = None;
                next.health_check = None;
                let record = HealthyRevision {
                    hash: hash.into(),
                    version: version.into(),
                    commit: next.target_revision.clone(),
                    migration_hash: target.migration_hash.clone(),
                };
                next.healthy_revisions.retain(|r| r.hash != hash);
                push_capped(&mut next.healthy_revisions, record, HEALTHY_REVISIONS_CAP);
                // Kept: the revisions a rollback or a revert may go back to.
                actions.push(Action::PruneRevisions {
                    keep: next
                        .healthy_revisions
                        .iter()
                        .map(|r| r.hash.clone())
                        .collect(),
                });
                *transition = move_to(next, Phase::Healthy, format!("{tl} is healthy"));
            }
        },
    }
    // The next measurement wakes the stage too.
    if next.phase == Some(Phase::HealthChecking)
        && let Some(due) = analysis.due_in
    {
        *requeue_after = Some(requeue_after.map_or(due, |r| r.min(due)));
    }
    // A stage that waits (a pause, a promotion) stays watched: its next round wakes it. Once
    // Healthy, its passing rounds are not recorded, so a round is due at every wake-up: one
    // each period.
    if next.phase == Some(Phase::HealthChecking)
        && let (Some(hc), Some(state)) = (&spec.upgrade_strategy.health_check, &next.health_check)
    {
        let t = Thresholds::of(hc);
        let due = match health::verdict(&t, state) {
            Verdict::Healthy => u64::try_from(t.period).ok(),
            _ => health::due_in(&t, state, now),
        };
        if let Some(due) = due {
            let due = due.max(1);
            *requeue_after = Some(requeue_after.map_or(due, |r| r.min(due)));
        }
    }
}
