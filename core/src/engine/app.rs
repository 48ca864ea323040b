//! The ManagedApplication upgrade as one pure transition function: [`decide`] takes the spec, the status
//! (where the upgrade stands; it survives restarts), what the executor observed, and the time, and
//! returns the next status and the actions that move the cluster toward it.
//!
//! Phases, as seed 002 names them: `Pending → Migrating → Deploying → HealthChecking → Healthy`, or
//! `→ Failed` followed by a rollback to the last healthy version. With canary steps, `Deploying` and
//! `HealthChecking` repeat per step (`stepIndex`), each step's pause counted from `pauseStartTime`; a step
//! index equal to the number of steps means "promote": the stable side takes the new version and the
//! canary is removed.
//!
//! Work in progress toward issue [D]: the executors (Deployment, Job, health probes) that carry these
//! actions out are not built yet, and BlueGreen is not decided here yet.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::replicas::canary_split;
use crate::model::{ManagedApplicationSpec, ManagedApplicationStatus, Phase, StrategyType};

/// Which Deployment of the app an action is about: `<app>` (stable) or `<app>-canary`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Stable,
    Canary,
}

/// What the executor saw of one Deployment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadObs {
    pub version: String,
    pub replicas: i32,
    pub ready: i32,
    /// The Deployment's progress deadline passed (condition Progressing=False, ProgressDeadlineExceeded).
    pub stalled: bool,
}

impl WorkloadObs {
    fn runs(&self, version: &str, replicas: i32) -> bool {
        self.version == version && self.replicas == replicas && self.ready >= replicas
    }
}

/// What the executor saw of the migration Job of the target version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobObs {
    Absent,
    Running,
    Succeeded,
    Failed { reason: String },
}

/// Everything [`decide`] needs to know of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    pub stable: Option<WorkloadObs>,
    pub canary: Option<WorkloadObs>,
    pub migration: JobObs,
    /// The verdict of the active health checks on the new pods: `None` while undecided.
    pub healthy: Option<bool>,
    /// A human promoted the current step (`bosun promote`).
    pub promoted: bool,
}

/// One thing for an executor to do. Each is idempotent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the Job `<app>-migration-<version>` unless it exists.
    RunMigration { version: String },
    /// Make the Deployment of `role` run `version` with `replicas` pods.
    Run {
        role: Role,
        version: String,
        replicas: i32,
    },
    /// Remove the Deployment of `role`.
    Remove { role: Role },
    /// Probe the pods of `role` and report the verdict in the next observation.
    CheckHealth { role: Role },
}

/// A phase change worth an Event and a PR-comment update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    pub from: Option<Phase>,
    pub to: Phase,
    pub message: String,
}

/// What [`decide`] returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub status: ManagedApplicationStatus,
    pub actions: Vec<Action>,
    /// Look again after this many seconds even if nothing changes (pauses, probes, running Jobs).
    pub requeue_after: Option<u64>,
    pub transition: Option<Transition>,
}

const RECHECK_SECS: u64 = 5;

fn canary_steps(spec: &ManagedApplicationSpec) -> Option<&[crate::model::CanaryStep]> {
    let s = &spec.upgrade_strategy;
    let canary = s.canary.as_ref()?;
    let enabled = canary.enabled.unwrap_or(s.type_ == StrategyType::Canary);
    (enabled && !canary.steps.is_empty()).then_some(canary.steps.as_slice())
}

/// Decides the next step of one app. Pure: no client, no clock (`now` is given).
pub fn decide(
    spec: &ManagedApplicationSpec,
    status: &ManagedApplicationStatus,
    observed: &Observed,
    now: &Time,
) -> Decision {
    let replicas = spec.replicas.unwrap_or(1);
    let target = spec.version.as_str();
    let mut next = status.clone();
    let mut actions = Vec::new();
    let mut requeue_after = None;
    let move_to = |next: &mut ManagedApplicationStatus, to: Phase, message: String| {
        let t = Transition {
            from: next.phase,
            to,
            message: message.clone(),
        };
        next.phase = Some(to);
        next.message = Some(message);
        Some(t)
    };

    if spec.paused {
        next.message = Some("paused: spec.paused is true".into());
        return Decision {
            status: next,
            actions,
            requeue_after: None,
            transition: None,
        };
    }

    let current = status.current_version.clone();
    let mut transition = None;

    // A version that failed is not retried until spec.version changes again.
    if status.phase == Some(Phase::Failed) && status.failed_version.as_deref() == Some(target) {
        let back_to = status.last_healthy_version.clone().or(current.clone());
        if let Some(v) = back_to {
            actions.push(Action::Run {
                role: Role::Stable,
                version: v,
                replicas,
            });
        }
        if observed.canary.is_some() {
            actions.push(Action::Remove { role: Role::Canary });
        }
        return Decision {
            status: next,
            actions,
            requeue_after: None,
            transition: None,
        };
    }

    // Steady: the target runs.
    if current.as_deref() == Some(target) && status.target_version.as_deref() == Some(target) {
        if status.phase != Some(Phase::Healthy) {
            transition = move_to(&mut next, Phase::Healthy, format!("{target} is healthy"));
        }
        actions.push(Action::Run {
            role: Role::Stable,
            version: target.into(),
            replicas,
        });
        if observed.canary.is_some() {
            actions.push(Action::Remove { role: Role::Canary });
        }
        next.canary_weight = None;
        next.step_index = None;
        return Decision {
            status: next,
            actions,
            requeue_after,
            transition,
        };
    }

    // A new target (the first, or one that supersedes a running upgrade): start from stable.
    if status.target_version.as_deref() != Some(target) {
        next.target_version = Some(target.into());
        next.step_index = Some(0);
        next.canary_weight = Some(0);
        next.pause_start_time = None;
        let first = if spec.upgrade_strategy.migration_job.is_some() {
            Phase::Migrating
        } else {
            Phase::Deploying
        };
        let verb = match &status.target_version {
            Some(old)
                if status.phase != Some(Phase::Healthy) && status.phase != Some(Phase::Failed) =>
            {
                format!("{target} supersedes {old}")
            }
            _ => format!("upgrading to {target}"),
        };
        transition = move_to(&mut next, first, verb);
        if observed.canary.is_some() {
            actions.push(Action::Remove { role: Role::Canary });
        }
    }

    let steps = if current.is_some() {
        canary_steps(spec)
    } else {
        None
    };
    let fail = |next: &mut ManagedApplicationStatus, why: String| {
        next.failed_version = Some(target.into());
        next.canary_weight = Some(0);
        next.pause_start_time = None;
        let t = Transition {
            from: next.phase,
            to: Phase::Failed,
            message: why.clone(),
        };
        next.phase = Some(Phase::Failed);
        next.message = Some(why);
        t
    };

    match next.phase.unwrap_or(Phase::Pending) {
        Phase::Pending => {
            transition = move_to(&mut next, Phase::Deploying, format!("deploying {target}"));
        }
        Phase::Migrating => match &observed.migration {
            JobObs::Succeeded => {
                transition = move_to(&mut next, Phase::Deploying, "migration succeeded".into());
            }
            JobObs::Failed { reason } => {
                // Nothing was rolled out: the stable side never changed.
                transition = Some(fail(
                    &mut next,
                    format!("migration of {target} failed: {reason}"),
                ));
            }
            JobObs::Absent | JobObs::Running => {
                actions.push(Action::RunMigration {
                    version: target.into(),
                });
                requeue_after = Some(RECHECK_SECS);
            }
        },
        Phase::Deploying => {
            let step = next.step_index.unwrap_or(0).max(0) as usize;
            match steps {
                Some(steps) if step < steps.len() => {
                    let split = canary_split(replicas, steps[step].weight);
                    let stable_version = current.clone().unwrap_or_else(|| target.into());
                    actions.push(Action::Run {
                        role: Role::Stable,
                        version: stable_version,
                        replicas: split.stable,
                    });
                    actions.push(Action::Run {
                        role: Role::Canary,
                        version: target.into(),
                        replicas: split.canary,
                    });
                    next.canary_weight = Some(split.effective_weight());
                    match &observed.canary {
                        Some(c) if c.stalled => {
                            transition = Some(fail(
                                &mut next,
                                format!("canary pods of {target} did not become ready in time"),
                            ));
                        }
                        Some(c) if c.runs(target, split.canary) => {
                            transition = move_to(
                                &mut next,
                                Phase::HealthChecking,
                                format!(
                                    "step {} at {} %: pods ready",
                                    step + 1,
                                    split.effective_weight()
                                ),
                            );
                        }
                        _ => requeue_after = Some(RECHECK_SECS),
                    }
                }
                _ => {
                    // Rolling or Recreate (or the canary's promotion): the stable Deployment takes the target.
                    actions.push(Action::Run {
                        role: Role::Stable,
                        version: target.into(),
                        replicas,
                    });
                    match &observed.stable {
                        Some(s) if s.stalled => {
                            transition = Some(fail(
                                &mut next,
                                format!("pods of {target} did not become ready in time"),
                            ));
                        }
                        Some(s) if s.runs(target, replicas) => {
                            if observed.canary.is_some() {
                                actions.push(Action::Remove { role: Role::Canary });
                            }
                            transition = move_to(
                                &mut next,
                                Phase::HealthChecking,
                                format!("{target} rolled out; checking health"),
                            );
                        }
                        _ => requeue_after = Some(RECHECK_SECS),
                    }
                }
            }
        }
        Phase::HealthChecking => {
            let step = next.step_index.unwrap_or(0).max(0) as usize;
            let in_canary = steps.is_some_and(|s| step < s.len());
            let role = if in_canary {
                Role::Canary
            } else {
                Role::Stable
            };
            match observed.healthy {
                Some(false) => {
                    transition = Some(fail(&mut next, format!("health checks of {target} failed")));
                }
                None => {
                    actions.push(Action::CheckHealth { role });
                    requeue_after = Some(RECHECK_SECS);
                }
                Some(true) if in_canary => {
                    let pause = steps.and_then(|s| s[step].pause.clone());
                    let waited = match (&pause, &next.pause_start_time) {
                        (None, _) => true,
                        (Some(crate::model::Pause::UntilPromoted), _) => observed.promoted,
                        (Some(p), Some(start)) => {
                            let elapsed = now.0.as_second() - start.0.as_second();
                            let secs = p.seconds().unwrap_or(0) as i64;
                            if elapsed < secs {
                                requeue_after = Some((secs - elapsed) as u64);
                            }
                            elapsed >= secs
                        }
                        (Some(p), None) => {
                            next.pause_start_time = Some(now.clone());
                            requeue_after = p.seconds();
                            p.seconds() == Some(0)
                        }
                    };
                    if waited {
                        next.step_index = Some(step as i32 + 1);
                        next.pause_start_time = None;
                        transition = move_to(
                            &mut next,
                            Phase::Deploying,
                            format!("step {} passed", step + 1),
                        );
                    }
                }
                Some(true) => {
                    next.current_version = Some(target.into());
                    next.last_healthy_version = Some(target.into());
                    next.failed_version = None;
                    next.canary_weight = None;
                    next.step_index = None;
                    transition = move_to(&mut next, Phase::Healthy, format!("{target} is healthy"));
                }
            }
        }
        Phase::Healthy | Phase::Failed => {}
    }

    // After a failure, roll back at once: stable gets every replica of the last healthy version back.
    if next.phase == Some(Phase::Failed) {
        actions.clear();
        if let Some(v) = next.last_healthy_version.clone().or(current) {
            actions.push(Action::Run {
                role: Role::Stable,
                version: v,
                replicas,
            });
        }
        if observed.canary.is_some() || steps.is_some() {
            actions.push(Action::Remove { role: Role::Canary });
        }
        requeue_after = None;
    }
    Decision {
        status: next,
        actions,
        requeue_after,
        transition,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{CanarySpec, CanaryStep, MigrationJob, Pause, UpgradeStrategy};

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + secs).expect("valid time"))
    }

    fn spec(version: &str) -> ManagedApplicationSpec {
        ManagedApplicationSpec {
            version: version.into(),
            paused: false,
            image: None,
            replicas: Some(4),
            ports: None,
            env: None,
            resources: None,
            service: None,
            pod_template: None,
            upgrade_strategy: UpgradeStrategy::default(),
        }
    }

    fn canary(version: &str, steps: &[(i32, Option<Pause>)]) -> ManagedApplicationSpec {
        let mut s = spec(version);
        s.upgrade_strategy.type_ = StrategyType::Canary;
        s.upgrade_strategy.canary = Some(CanarySpec {
            enabled: None,
            steps: steps
                .iter()
                .map(|(w, p)| CanaryStep {
                    weight: *w,
                    pause: p.clone(),
                })
                .collect(),
        });
        s
    }

    fn with_migration(mut s: ManagedApplicationSpec) -> ManagedApplicationSpec {
        s.upgrade_strategy.migration_job = Some(MigrationJob {
            image: "migrate:1".into(),
            command: None,
            args: None,
            env: None,
            active_deadline_seconds: None,
            backoff_limit: None,
            down: None,
        });
        s
    }

    /// A tiny, obedient cluster: runs what it is told at once, with a chosen health verdict and Job
    /// outcome. Enough to walk the state machine; the real cluster is for the executor's tests.
    struct World {
        observed: Observed,
        status: ManagedApplicationStatus,
        now: i64,
        job_outcome: JobObs,
        unhealthy_version: Option<String>,
        never_ready_version: Option<String>,
        phases: Vec<Phase>,
    }

    impl World {
        fn new() -> World {
            World {
                observed: Observed {
                    stable: None,
                    canary: None,
                    migration: JobObs::Absent,
                    healthy: None,
                    promoted: false,
                },
                status: ManagedApplicationStatus::default(),
                now: 0,
                job_outcome: JobObs::Succeeded,
                unhealthy_version: None,
                never_ready_version: None,
                phases: Vec::new(),
            }
        }

        fn step(&mut self, spec: &ManagedApplicationSpec) -> Decision {
            let d = decide(spec, &self.status, &self.observed, &at(self.now));
            self.status = d.status.clone();
            if let Some(t) = &d.transition {
                self.phases.push(t.to);
            }
            for a in &d.actions {
                match a {
                    Action::RunMigration { .. } => {
                        self.observed.migration = self.job_outcome.clone()
                    }
                    Action::Run {
                        role,
                        version,
                        replicas,
                    } => {
                        let never = self.never_ready_version.as_deref() == Some(version.as_str());
                        let w = WorkloadObs {
                            version: version.clone(),
                            replicas: *replicas,
                            ready: if never { 0 } else { *replicas },
                            stalled: never,
                        };
                        match role {
                            Role::Stable => self.observed.stable = Some(w),
                            Role::Canary => self.observed.canary = Some(w),
                        }
                        self.observed.healthy = None;
                    }
                    Action::Remove { role: Role::Canary } => self.observed.canary = None,
                    Action::Remove { role: Role::Stable } => self.observed.stable = None,
                    Action::CheckHealth { role } => {
                        let w = match role {
                            Role::Stable => &self.observed.stable,
                            Role::Canary => &self.observed.canary,
                        };
                        let bad = w
                            .as_ref()
                            .map(|w| Some(w.version.as_str()) == self.unhealthy_version.as_deref());
                        self.observed.healthy = Some(!bad.unwrap_or(false));
                    }
                }
            }
            if let Some(secs) = d.requeue_after {
                self.now += secs as i64;
            }
            d
        }

        /// Steps until nothing changes any more (or 100 steps).
        fn settle(&mut self, spec: &ManagedApplicationSpec) {
            for _ in 0..100 {
                let before = (self.status.clone(), self.observed.clone());
                self.step(spec);
                if (self.status.clone(), self.observed.clone()) == before {
                    return;
                }
            }
            panic!("did not settle: {:?}", self.status);
        }

        fn deployed(spec: &ManagedApplicationSpec) -> World {
            let mut w = World::new();
            w.settle(spec);
            assert_eq!(w.status.phase, Some(Phase::Healthy));
            w.phases.clear();
            w
        }
    }

    #[test]
    fn creating_an_app_deploys_its_version_and_checks_its_health() {
        let mut w = World::new();
        w.settle(&with_migration(spec("v1")));
        assert_eq!(
            w.phases,
            [
                Phase::Migrating,
                Phase::Deploying,
                Phase::HealthChecking,
                Phase::Healthy
            ]
        );
        assert_eq!(w.status.current_version.as_deref(), Some("v1"));
        assert_eq!(w.status.last_healthy_version.as_deref(), Some("v1"));
        assert_eq!(w.observed.stable.as_ref().map(|s| s.replicas), Some(4));
    }

    #[test]
    fn a_rolling_upgrade_goes_through_every_phase() {
        let mut w = World::deployed(&spec("v1"));
        w.settle(&with_migration(spec("v2")));
        assert_eq!(
            w.phases,
            [
                Phase::Migrating,
                Phase::Deploying,
                Phase::HealthChecking,
                Phase::Healthy
            ]
        );
        assert_eq!(w.status.current_version.as_deref(), Some("v2"));
    }

    #[test]
    fn a_failed_migration_fails_the_upgrade_and_changes_no_workload() {
        let mut w = World::deployed(&spec("v1"));
        w.job_outcome = JobObs::Failed {
            reason: "BackoffLimitExceeded".into(),
        };
        w.settle(&with_migration(spec("v2")));
        assert_eq!(w.phases, [Phase::Migrating, Phase::Failed]);
        assert_eq!(
            w.observed.stable.as_ref().map(|s| s.version.as_str()),
            Some("v1")
        );
        assert_eq!(w.status.failed_version.as_deref(), Some("v2"));
        assert!(
            w.status
                .message
                .as_deref()
                .is_some_and(|m| m.contains("BackoffLimitExceeded"))
        );
    }

    #[test]
    fn canary_steps_shift_weight_wait_their_pauses_and_promote() {
        let s1 = canary(
            "v1",
            &[
                (25, Some(Pause::Seconds(60))),
                (50, Some(Pause::Seconds(120))),
                (100, None),
            ],
        );
        let mut w = World::deployed(&s1);
        let s2 = canary(
            "v2",
            &[
                (25, Some(Pause::Seconds(60))),
                (50, Some(Pause::Seconds(120))),
                (100, None),
            ],
        );
        let mut weights = Vec::new();
        for _ in 0..40 {
            w.step(&s2);
            if let Some(c) = &w.observed.canary {
                weights.push((
                    c.replicas,
                    w.observed.stable.as_ref().map_or(0, |s| s.replicas),
                ));
            }
            if w.status.phase == Some(Phase::Healthy) {
                break;
            }
        }
        assert_eq!(w.status.phase, Some(Phase::Healthy), "{:?}", w.status);
        weights.dedup();
        // 25 %, 50 %, 100 %, then promotion: the stable side takes v2 at full size while the canary
        // still serves, and only then is the canary removed.
        assert_eq!(
            weights,
            [(1, 3), (2, 2), (4, 0), (4, 4)],
            "canary and stable pods per step"
        );
        assert!(w.now >= 180, "both pauses were waited: {}", w.now);
        assert!(
            w.observed.canary.is_none(),
            "the canary is removed after promotion"
        );
        assert_eq!(
            w.observed
                .stable
                .as_ref()
                .map(|s| (s.version.as_str(), s.replicas)),
            Some(("v2", 4))
        );
    }

    #[test]
    fn canary_with_failing_health_check_rolls_back_to_stable() {
        let mut w = World::deployed(&canary("v1", &[(25, None), (100, None)]));
        w.unhealthy_version = Some("v2".into());
        w.settle(&canary("v2", &[(25, None), (100, None)]));
        assert_eq!(
            w.phases,
            [Phase::Deploying, Phase::HealthChecking, Phase::Failed]
        );
        assert!(w.observed.canary.is_none());
        assert_eq!(
            w.observed
                .stable
                .as_ref()
                .map(|s| (s.version.as_str(), s.replicas)),
            Some(("v1", 4))
        );
        assert_eq!(w.status.failed_version.as_deref(), Some("v2"));
    }

    #[test]
    fn pods_that_never_become_ready_fail_the_rolling_upgrade_and_roll_back() {
        let mut w = World::deployed(&spec("v1"));
        w.never_ready_version = Some("v2-broken".into());
        w.settle(&spec("v2-broken"));
        assert_eq!(w.phases, [Phase::Deploying, Phase::Failed]);
        assert_eq!(
            w.observed.stable.as_ref().map(|s| s.version.as_str()),
            Some("v1")
        );
    }

    #[test]
    fn a_failed_version_is_not_retried_until_the_version_changes() {
        let mut w = World::deployed(&spec("v1"));
        w.unhealthy_version = Some("v2".into());
        w.settle(&spec("v2"));
        assert_eq!(w.status.phase, Some(Phase::Failed));
        w.phases.clear();
        for _ in 0..5 {
            w.step(&spec("v2"));
        }
        assert!(w.phases.is_empty(), "no rollback loop: {:?}", w.phases);
        w.unhealthy_version = None;
        w.settle(&spec("v3"));
        assert_eq!(w.status.current_version.as_deref(), Some("v3"));
        assert_eq!(w.status.failed_version, None);
    }

    #[test]
    fn a_step_that_waits_until_promoted_waits_for_a_human() {
        let steps = [(50, Some(Pause::UntilPromoted)), (100, None)];
        let mut w = World::deployed(&canary("v1", &steps));
        for _ in 0..10 {
            w.step(&canary("v2", &steps));
        }
        assert_eq!(w.status.phase, Some(Phase::HealthChecking));
        assert_eq!(w.status.step_index, Some(0));
        w.observed.promoted = true;
        w.settle(&canary("v2", &steps));
        assert_eq!(w.status.current_version.as_deref(), Some("v2"));
    }

    #[test]
    fn paused_freezes_the_upgrade_where_it_is() {
        let steps = [(50, Some(Pause::Seconds(600))), (100, None)];
        let mut w = World::deployed(&canary("v1", &steps));
        for _ in 0..3 {
            w.step(&canary("v2", &steps));
        }
        let frozen = w.status.clone();
        let mut paused = canary("v2", &steps);
        paused.paused = true;
        let d = w.step(&paused);
        assert!(d.actions.is_empty());
        assert_eq!(w.status.step_index, frozen.step_index);
        assert_eq!(w.status.phase, frozen.phase);
    }

    #[test]
    fn a_new_version_during_an_upgrade_supersedes_it_from_stable() {
        let steps = [(50, Some(Pause::Seconds(600))), (100, None)];
        let mut w = World::deployed(&canary("v1", &steps));
        for _ in 0..3 {
            w.step(&canary("v2", &steps));
        }
        assert!(w.observed.canary.is_some());
        let d = w.step(&canary("v3", &steps));
        assert!(
            d.transition
                .is_some_and(|t| t.message == "v3 supersedes v2")
        );
        w.settle(&canary("v3", &steps));
        assert_eq!(w.status.current_version.as_deref(), Some("v3"));
        assert_eq!(w.status.last_healthy_version.as_deref(), Some("v3"));
    }
}
