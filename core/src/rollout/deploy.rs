//! `Deploying`, one stage per strategy: a canary step (the stable side keeps exactly the revision
//! serving, only fewer pods), BlueGreen's preview and its switch (the new side stays checked until the
//! old one goes), and the final stage where the stable Deployment takes the target.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use super::action::Action;
use super::analyze;
use super::clock::seconds_left;
use super::observed::{DeadlineClock, Rollout, rollout};
use super::rollback::{Failure, fail, not_ready};
use super::status::move_to;
use super::strategy::{self, Plan, Stage};
use super::verify::{check_health, check_round, waiting_for_analysis};
use super::{In, Out, RECHECK_SECS, Role};
use crate::engine::health::{self, Thresholds, Verdict};
use crate::engine::replicas::canary_split;
use crate::model::{ManagedApplicationStatus, Phase};
use crate::routing::{Weight, canary_replicas};

/// One round of `Deploying` at `stage`.
pub(super) fn step(i: &In<'_>, o: &mut Out, plan: Plan<'_>, stage: &Stage) {
    let (spec, status, observed, now, target) = (i.spec, i.status, i.observed, i.now, &i.target);
    let Out {
        next,
        actions,
        requeue_after,
        transition,
        ..
    } = o;
    let (replicas, hash, tl) = (i.replicas, target.rev.hash.as_str(), &target.label);
    let (stable, sl) = (&i.stable, &i.stable_label);
    let deadline = spec.upgrade_strategy.progress_deadline_secs();
    // When this stage began: now, when this very decision begins it (an upgrade's start goes on to
    // its first stage at once, and the history it read still ends with the last upgrade's); else its
    // Deploying transition, the last entry of the history. Never the Deployment's last progress
    // alone: that is the previous rollout's, perhaps days ago.
    let stage_since = match transition {
        Some(t) if t.to == Phase::Deploying => Some(now.clone()),
        _ => status
            .history
            .last()
            .filter(|h| h.phase == Phase::Deploying)
            .map(|h| h.time.clone()),
    };
    let clock = DeadlineClock {
        deadline,
        since: stage_since,
        now: now.clone(),
    };
    match &stage {
        Stage::Canary { index, weight, .. } => {
            // Without a router the pods carry the weight (1 of 4 is 25 %); with one the router
            // carries it exactly, and the canary runs the pods its share needs.
            let routed = strategy::routed(spec);
            let (split, exact) = match Weight::new(*weight).filter(|_| routed) {
                Some(w) => (canary_replicas(replicas, w, false), w.percent()),
                None => {
                    let split = canary_split(replicas, *weight);
                    (split, split.effective_weight())
                }
            };
            actions.push(Action::Run {
                role: Role::Stable,
                revision: stable.clone(),
                replicas: split.stable,
            });
            actions.push(Action::Run {
                role: Role::Canary,
                revision: target.rev.clone(),
                replicas: split.canary,
            });
            next.canary_weight = Some(exact);
            match wait_on(
                rollout(observed.canary.as_ref(), hash, split.canary, &clock),
                next,
                requeue_after,
                tl,
            ) {
                Some(Settled::Ready) => {
                    // The canary's pods are ready before the router sends them their share.
                    if routed {
                        actions.push(Action::Route { weight: exact });
                    }
                    let why = format!("step {} at {exact} %: pods ready", index + 1);
                    *transition = check_health(next, now, why);
                }
                Some(Settled::Stalled) => *transition = not_ready(next, target, "canary pods", now),
                None => {}
            }
        }
        Stage::Preview => {
            actions.push(Action::Run {
                role: Role::Stable,
                revision: stable.clone(),
                replicas,
            });
            actions.push(Action::Run {
                role: Role::Preview,
                revision: target.rev.clone(),
                replicas,
            });
            next.canary_weight = Some(0);
            match wait_on(
                rollout(observed.preview.as_ref(), hash, replicas, &clock),
                next,
                requeue_after,
                tl,
            ) {
                Some(Settled::Ready) => {
                    let why = format!("preview of {tl} ready; checking its health");
                    *transition = check_health(next, now, why);
                }
                Some(Settled::Stalled) => {
                    *transition = not_ready(next, target, "preview pods", now)
                }
                None => {}
            }
        }
        Stage::Switched => {
            // The active Service already selects the new version; the old side stays for a
            // switch back until the delay has passed.
            let delay = match plan {
                Plan::BlueGreen { delay, .. } => delay,
                Plan::Direct | Plan::Canary(_) => 0,
            };
            actions.push(Action::Run {
                role: Role::Stable,
                revision: stable.clone(),
                replicas,
            });
            actions.push(Action::Run {
                role: Role::Preview,
                revision: target.rev.clone(),
                replicas,
            });
            next.canary_weight = Some(100);
            let start = next.pause_start_time.get_or_insert(MicroTime(now.0));
            let left = seconds_left(start, now, delay);
            // The new side, now serving, stays health-checked until the old side goes; a failure
            // switches the active Service back at once (the rollback serves the stable side).
            let mut due = None;
            let mut failed = false;
            let analysis = analyze::fold(spec, next, &observed.measurements, now);
            if let Some(why) = &analysis.failed {
                failed = true;
                let why = format!(
                    "analysis of {tl} failed after the switch: {why}; the active Service is back on {sl}"
                );
                *transition = fail(next, target, Failure::Analysis, why, now);
            }
            due = due.or(analysis.due_in);
            if let Some(hc) = spec
                .upgrade_strategy
                .health_check
                .as_ref()
                .filter(|_| !failed)
            {
                let t = Thresholds::of(hc);
                let verdict = check_round(next, &t, &observed.probes, now);
                let state = next
                    .health_check
                    .as_ref()
                    .expect("check_round keeps a state");
                let checks = match verdict {
                    Verdict::Healthy => u64::try_from(t.period).ok(),
                    _ => health::due_in(&t, state, now),
                };
                due = [due, checks].into_iter().flatten().min();
                if let Verdict::Unhealthy {
                    pod,
                    error,
                    failures,
                } = verdict
                {
                    failed = true;
                    let why = format!(
                        "health checks of {tl} failed after the switch: pod {pod}: \
                         {error} ({failures} in a row); the active Service is back on {sl}"
                    );
                    *transition = fail(next, target, Failure::Rollout, why, now);
                }
            }
            if failed {
                // The rollback follows.
            } else if left == 0 && !analysis.satisfied {
                next.message = Some(waiting_for_analysis(
                    &format!("{tl} after the switch"),
                    &analysis,
                ));
                *requeue_after = due.map(|d| d.max(1));
            } else if left == 0 {
                analyze::pass(next, &analysis);
                next.health_check = None;
                next.pause_start_time = None;
                next.step_index = Some(2);
                *transition = move_to(
                    next,
                    Phase::Deploying,
                    format!("scaling down {sl}: the stable Deployment takes {tl}"),
                );
            } else {
                let left = u64::try_from(left).unwrap_or(1);
                *requeue_after = Some(due.map_or(left, |d| d.max(1).min(left)));
            }
        }
        Stage::Final
            if strategy::routed(spec)
                && observed.canary.is_some()
                && observed.stable.as_ref().is_none_or(|s| s.hash != hash) =>
        {
            // The promotion of a routed canary: it runs every pod and takes all traffic before the
            // stable Deployment takes the target (and the stable side, still serving nothing,
            // can change at once).
            actions.push(Action::Run {
                role: Role::Canary,
                revision: target.rev.clone(),
                replicas,
            });
            next.canary_weight = Some(100);
            match wait_on(
                rollout(observed.canary.as_ref(), hash, replicas, &clock),
                next,
                requeue_after,
                tl,
            ) {
                Some(Settled::Ready) => {
                    actions.push(Action::Route { weight: 100 });
                    actions.push(Action::Run {
                        role: Role::Stable,
                        revision: target.rev.clone(),
                        replicas,
                    });
                    *requeue_after = Some(RECHECK_SECS);
                }
                Some(Settled::Stalled) => *transition = not_ready(next, target, "canary pods", now),
                None => {}
            }
        }
        Stage::Final => {
            // Rolling or Recreate, or the promotion of a canary or a preview: the stable Deployment
            // takes the target; the canary or preview serves until it is ready.
            actions.push(Action::Run {
                role: Role::Stable,
                revision: target.rev.clone(),
                replicas,
            });
            match wait_on(
                rollout(observed.stable.as_ref(), hash, replicas, &clock),
                next,
                requeue_after,
                tl,
            ) {
                Some(Settled::Ready) => {
                    if observed.canary.is_some() {
                        // With a router, traffic goes back to the stable Service (now the target)
                        // before the canary goes.
                        strategy::remove_canary(spec, actions);
                    }
                    if observed.preview.is_some() {
                        actions.push(Action::Remove {
                            role: Role::Preview,
                        });
                    }
                    let why = format!("{tl} rolled out; checking health");
                    *transition = check_health(next, now, why);
                }
                Some(Settled::Stalled) => *transition = not_ready(next, target, "pods", now),
                None => {}
            }
        }
    }
}

/// What a stage acts on of a side's rollout; the rest it waits for.
enum Settled {
    Ready,
    Stalled,
}

/// Waits for a side on its way, saying why when the Deployment controller is behind (its pods of the
/// target are all ready, and it has not counted them yet); gives back what the stage acts on.
fn wait_on(
    r: Rollout,
    next: &mut ManagedApplicationStatus,
    requeue_after: &mut Option<u64>,
    label: &str,
) -> Option<Settled> {
    let behind = format!(
        "the pods of {label} are ready; waiting for the Deployment controller (kube-controller-manager) to count them"
    );
    match r {
        Rollout::Ready => return Some(Settled::Ready),
        Rollout::Stalled => return Some(Settled::Stalled),
        Rollout::Rolling { recheck_secs } => {
            // Back on its way (the controller counted some of it): the stage's own message again.
            if next.message.as_deref() == Some(behind.as_str()) {
                next.message = next.history.last().map(|h| h.message.clone());
            }
            *requeue_after = Some(recheck_secs);
        }
        Rollout::Behind => {
            next.message = Some(behind);
            *requeue_after = Some(RECHECK_SECS);
        }
    }
    None
}
