//! The planner's scenarios, walked on a tiny simulated cluster ([`World`]).

use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use super::objects::role_label;
use super::rollback::down_job;
use super::*;
use crate::engine::health::Probe;
use crate::model::{
    BlueGreenSpec, CanarySpec, CanaryStep, DownMigration, DownMigrationRecord, HealthCheck,
    HttpGet, MigrationJob, Pause, StrategyType, UpgradeStrategy,
};

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
        upgrade_windows: Vec::new(),
        depends_on: Vec::new(),
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
                analysis: None,
            })
            .collect(),
    });
    s
}

fn blue_green(version: &str, auto_promote: Option<bool>) -> ManagedApplicationSpec {
    let mut s = checked(spec(version));
    s.upgrade_strategy.type_ = StrategyType::BlueGreen;
    s.upgrade_strategy.blue_green = Some(BlueGreenSpec {
        auto_promote,
        scale_down_delay_seconds: Some(30),
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

fn with_down_migration(s: ManagedApplicationSpec) -> ManagedApplicationSpec {
    let mut s = with_migration(s);
    if let Some(m) = s.upgrade_strategy.migration_job.as_mut() {
        m.down = Some(DownMigration {
            image: None,
            command: Some(vec!["/migrate".into(), "down".into()]),
            args: None,
        });
    }
    s
}

/// An active HTTP check: every 10 s, 3 failures fail, 1 success passes.
fn checked(mut s: ManagedApplicationSpec) -> ManagedApplicationSpec {
    s.upgrade_strategy.health_check = Some(HealthCheck {
        http_get: HttpGet {
            path: "/health".into(),
            port: 8080,
            scheme: None,
        },
        initial_delay_seconds: None,
        period_seconds: Some(10),
        timeout_seconds: None,
        failure_threshold: Some(3),
        success_threshold: None,
    });
    s
}

/// A tiny, obedient cluster: runs what it is told at once, with chosen Job outcomes, and pods that
/// answer health probes with 500 for one version. Enough to walk the state machine; the real cluster
/// is for the executor's tests.
struct World {
    observed: Observed,
    status: ManagedApplicationStatus,
    now: i64,
    jobs: HashMap<(JobKind, String), JobObs>,
    job_outcome: JobObs,
    down_outcome: JobObs,
    unhealthy_version: Option<String>,
    never_ready_version: Option<String>,
    /// The never-ready version's Deployment never reports ProgressDeadlineExceeded (as the
    /// Deployment controller misses it for some Recreate rollouts and scale-ups).
    deadline_unreported: bool,
    /// The unhealthy version answers its checks well until a BlueGreen switch (step 1).
    unhealthy_after_switch: bool,
    phases: Vec<Phase>,
    reasons: Vec<String>,
    jobs_run: Vec<String>,
    probed: Vec<(Role, String)>,
    served: Option<String>,
    /// (version served, stable, preview) each time one of them changed.
    serving: Vec<(Option<String>, Option<String>, Option<String>)>,
    /// The revisions kept as ControllerRevisions.
    saved: std::collections::BTreeSet<String>,
    /// The migration each up Job was made for (its `bosun.dev/migration-hash` label).
    job_hashes: HashMap<String, Option<String>>,
    /// A revision (by hash) whose pods answer health probes with 500, whatever its version.
    unhealthy_hash: Option<String>,
    /// What Prometheus answers for the metrics of a version, or of `version/scope` (by default
    /// `[0]`).
    metric_values: HashMap<String, Result<Vec<f64>, String>>,
    /// Each measurement taken: (time, scope, metric, role).
    measured: Vec<(i64, String, String, Role)>,
    /// The router's canary weight (with `trafficRouting`).
    route: i32,
    /// The writes that move traffic or pods, in order: `route 10`, `stable v1 x3`, `canary v2 x1`,
    /// `remove canary`.
    writes: Vec<String>,
}

impl World {
    fn new() -> World {
        World {
            observed: Observed::default(),
            status: ManagedApplicationStatus::default(),
            now: 0,
            jobs: HashMap::new(),
            job_outcome: JobObs::Succeeded,
            down_outcome: JobObs::Succeeded,
            unhealthy_version: None,
            never_ready_version: None,
            deadline_unreported: false,
            unhealthy_after_switch: false,
            phases: Vec::new(),
            reasons: Vec::new(),
            jobs_run: Vec::new(),
            probed: Vec::new(),
            served: None,
            serving: Vec::new(),
            saved: Default::default(),
            job_hashes: HashMap::new(),
            unhealthy_hash: None,
            metric_values: HashMap::new(),
            measured: Vec::new(),
            route: 0,
            writes: Vec::new(),
        }
    }

    fn side(&self, role: Role) -> &Option<WorkloadObs> {
        match role {
            Role::Stable => &self.observed.stable,
            Role::Canary => &self.observed.canary,
            Role::Preview => &self.observed.preview,
        }
    }

    fn step(&mut self, spec: &ManagedApplicationSpec) -> Decision {
        let now = at(self.now);
        // observe, as the executor does
        let migration_hash = Revision::of(spec).migration_hash();
        self.observed.migration = match self.jobs.get(&(JobKind::Up, spec.version.clone())) {
            Some(_) if self.job_hashes.get(&spec.version) != Some(&migration_hash) => {
                JobObs::Foreign
            }
            Some(job) => job.clone(),
            None => JobObs::Absent,
        };
        self.observed.down_migration = self
            .status
            .down_migration
            .as_ref()
            .and_then(|r| self.jobs.get(&(JobKind::Down, r.version.clone())).cloned())
            .unwrap_or_default();
        self.observed.down_migration_of = self
            .status
            .down_migration
            .as_ref()
            .map(|r| r.version.clone());
        self.observed.probes = match probe_target(spec, &self.status, &now) {
            Some(role) => {
                let w = self.side(role).clone().expect("the probed side runs");
                self.probed.push((role, w.version.clone()));
                let bad = (self.unhealthy_version.as_deref() == Some(w.version.as_str())
                    || self.unhealthy_hash.as_deref() == Some(w.hash.as_str()))
                    && (!self.unhealthy_after_switch || self.status.step_index == Some(1));
                (0..w.ready)
                    .map(|i| Probe {
                        pod: format!("{}-{i}", w.version),
                        outcome: if bad { Err("HTTP 500".into()) } else { Ok(()) },
                    })
                    .collect()
            }
            None => Vec::new(),
        };
        self.observed.measurements = analyze::due(spec, &self.status, &now)
            .into_iter()
            .map(|due| {
                self.measured.push((
                    self.now,
                    due.scope.clone(),
                    due.metric.name.clone(),
                    due.role,
                ));
                analyze::Measured {
                    result: self
                        .metric_values
                        .get(&format!("{}/{}", spec.version, due.scope))
                        .or_else(|| self.metric_values.get(&spec.version))
                        .cloned()
                        .unwrap_or(Ok(vec![0.0])),
                    scope: due.scope,
                    metric: due.metric.name,
                }
            })
            .collect();
        // As the executor does: a stage the same observation passes is decided in the same step.
        let settled = settle(spec, &self.status, &self.observed, &now);
        self.observed.probes.clear();
        self.observed.measurements.clear();
        self.status = settled.status.clone();
        for t in &settled.transitions {
            self.phases.push(t.to);
            self.reasons.push(t.reason.clone());
        }
        let d = Decision {
            status: settled.status,
            actions: settled.actions,
            requeue_after: settled.requeue_after,
            transition: settled.transitions.last().cloned(),
        };
        let sides = |o: &Observed| (o.stable.clone(), o.canary.clone(), o.preview.clone());
        let sides_before = sides(&self.observed);
        for a in &d.actions {
            match a {
                Action::RunMigration { version } => {
                    let outcome = self.job_outcome.clone();
                    if !self.jobs.contains_key(&(JobKind::Up, version.clone())) {
                        self.jobs_run.push(format!("up {version}"));
                        self.job_hashes
                            .insert(version.clone(), migration_hash.clone());
                    }
                    self.jobs
                        .entry((JobKind::Up, version.clone()))
                        .or_insert(outcome);
                }
                Action::RunDownMigration { record } => {
                    let outcome = self.down_outcome.clone();
                    if !self
                        .jobs
                        .contains_key(&(JobKind::Down, record.version.clone()))
                    {
                        self.jobs_run.push(format!("down {}", record.version));
                    }
                    self.jobs
                        .entry((JobKind::Down, record.version.clone()))
                        .or_insert(outcome);
                }
                Action::DeleteJob { kind, version } => {
                    self.jobs.remove(&(*kind, version.clone()));
                }
                Action::Run {
                    role,
                    revision,
                    replicas,
                } => {
                    let version = &revision.version;
                    let never = self.never_ready_version.as_deref() == Some(version.as_str());
                    let w = WorkloadObs {
                        version: version.clone(),
                        hash: revision.hash.clone(),
                        replicas: *replicas,
                        ready: if never { 0 } else { *replicas },
                        stalled: never && !self.deadline_unreported,
                        progressed_at: None,
                        pods_ready: 0,
                    };
                    let before = self
                        .side(*role)
                        .as_ref()
                        .map(|s| (s.hash.clone(), s.replicas));
                    if before != Some((w.hash.clone(), w.replicas)) {
                        self.writes.push(format!(
                            "{} {} x{}",
                            role_label(*role),
                            w.version,
                            w.replicas
                        ));
                    }
                    match role {
                        Role::Stable => self.observed.stable = Some(w),
                        Role::Canary => self.observed.canary = Some(w),
                        Role::Preview => self.observed.preview = Some(w),
                    }
                }
                Action::Remove { role: Role::Canary } => {
                    if self.observed.canary.take().is_some() {
                        self.writes.push("remove canary".into());
                    }
                }
                Action::Remove { role: Role::Stable } => self.observed.stable = None,
                Action::Remove {
                    role: Role::Preview,
                } => self.observed.preview = None,
                Action::Serve { revision } => {
                    self.served = revision.as_ref().map(|r| r.version.clone())
                }
                Action::SaveRevision { revision } => {
                    self.saved.insert(revision.hash.clone());
                }
                Action::PruneRevisions { keep } => {
                    self.saved.retain(|h| {
                        keep.contains(h) || Some(h) == self.status.target_hash.as_ref()
                    });
                }
                Action::Route { weight } => {
                    if *weight != self.route {
                        self.writes.push(format!("route {weight}"));
                    }
                    self.route = *weight;
                }
                Action::ClearAnnotation { name } => {
                    if *name == ANNOTATION_ABORT {
                        self.observed.abort = None;
                    }
                    if *name == ANNOTATION_RETRY {
                        self.observed.retry = None;
                    }
                    if *name == ANNOTATION_PROMOTE_NOW {
                        self.observed.promote_now = None;
                    }
                }
            }
        }
        let seen = (
            self.served.clone(),
            self.observed.stable.as_ref().map(|s| s.version.clone()),
            self.observed.preview.as_ref().map(|s| s.version.clone()),
        );
        if self.serving.last() != Some(&seen) {
            self.serving.push(seen);
        }
        // A change of its Deployments wakes the app at once (the executor watches them); else it
        // looks again when the decision asked.
        if sides(&self.observed) != sides_before {
            self.now += 1;
        } else if let Some(secs) = d.requeue_after {
            self.now += secs as i64;
        }
        d
    }

    /// Steps until nothing changes any more and no timed wait runs (or 200 steps).
    fn settle(&mut self, spec: &ManagedApplicationSpec) {
        for _ in 0..200 {
            let before = (
                self.status.clone(),
                self.observed.clone(),
                self.jobs.clone(),
            );
            let d = self.step(spec);
            // A timed wait (a pause, BlueGreen's scale-down delay) is not settled: its end is coming.
            // So is a metric analysis that waits for its next measurement.
            let measuring = self
                .status
                .analysis_runs
                .iter()
                .any(|r| r.phase == crate::model::AnalysisPhase::Running);
            let waiting =
                d.requeue_after.is_some() && (self.status.pause_start_time.is_some() || measuring);
            if !waiting
                && (
                    self.status.clone(),
                    self.observed.clone(),
                    self.jobs.clone(),
                ) == before
            {
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
        w.reasons.clear();
        w.jobs_run.clear();
        w.probed.clear();
        w.serving.clear();
        w
    }

    fn stable(&self) -> Option<(&str, i32)> {
        self.observed
            .stable
            .as_ref()
            .map(|s| (s.version.as_str(), s.replicas))
    }
}
fn with_env(mut s: ManagedApplicationSpec, value: &str) -> ManagedApplicationSpec {
    s.env = Some(vec![k8s_openapi::api::core::v1::EnvVar {
        name: "MODE".into(),
        value: Some(value.into()),
        value_from: None,
    }]);
    s
}

fn hash_of(s: &ManagedApplicationSpec) -> String {
    Revision::of(s).hash()
}

#[test]
fn an_env_only_change_is_an_upgrade_through_the_canary_steps() {
    let steps = [(25, Some(Pause::Seconds(60))), (100, None)];
    let v1 = checked(canary("v1", &steps));
    let mut w = World::deployed(&with_env(v1.clone(), "old"));
    let old = hash_of(&with_env(v1.clone(), "old"));
    let new_spec = with_env(v1, "new");
    let new = hash_of(&new_spec);
    let mut canary_seen = false;
    for _ in 0..100 {
        w.step(&new_spec);
        let in_steps = w.status.step_index.is_some_and(|i| i < 2);
        if let (Some(c), true) = (&w.observed.canary, in_steps) {
            canary_seen = true;
            assert_eq!(c.hash, new, "the canary runs the new environment");
            let stable = w.observed.stable.as_ref().expect("stable runs");
            assert_eq!(
                stable.hash, old,
                "the stable side keeps the old environment"
            );
        }
        if w.status.phase == Some(Phase::Healthy) {
            break;
        }
    }
    assert!(canary_seen, "the change went through the canary step");
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert_eq!(w.status.current_hash.as_deref(), Some(new.as_str()));
    assert_eq!(
        w.observed.stable.as_ref().map(|s| s.hash.clone()),
        Some(new)
    );
    assert_eq!(
        w.status.history.first().map(|h| h.message.as_str()),
        Some(
            format!(
                "upgrading to v1 (revision {})",
                w.status.current_hash.clone().unwrap_or_default()
            )
            .as_str()
        ),
        "the history names the revision, since the version alone does not tell it"
    );
    assert!(
        w.probed.iter().any(|(role, _)| *role == Role::Canary),
        "the canary was checked"
    );
}

#[test]
fn a_failing_version_and_env_change_rolls_back_to_the_whole_last_healthy_revision() {
    let steps = [(25, None), (100, None)];
    let v1 = with_env(checked(canary("v1", &steps)), "old");
    let mut w = World::deployed(&v1);
    let healthy = hash_of(&v1);
    let broken = with_env(checked(canary("v2", &steps)), "broken");
    w.unhealthy_hash = Some(hash_of(&broken));
    for _ in 0..100 {
        w.step(&broken);
        if let Some(stable) = &w.observed.stable {
            assert_eq!(
                stable.hash, healthy,
                "the stable side never takes the new env mid-upgrade"
            );
        }
    }
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert_eq!(w.status.failed_hash, Some(hash_of(&broken)));
    assert_eq!(
        w.observed.stable.as_ref().map(|s| s.hash.clone()),
        Some(healthy.clone())
    );
    assert!(w.observed.canary.is_none());
    let rolled_back = w
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_ROLLED_BACK)
        .expect("a RolledBack condition");
    assert!(
        rolled_back
            .message
            .starts_with("v2 failed and was rolled back to v1: health checks"),
        "{}",
        rolled_back.message
    );
    assert!(w.saved.contains(&healthy), "the healthy revision is kept");
}

#[test]
fn a_failing_env_only_change_restores_the_old_env_and_the_story_stays_after_git_catches_up() {
    let v1 = checked(spec("v1"));
    let good = with_env(v1.clone(), "old");
    let mut w = World::deployed(&good);
    let bad = with_env(v1, "broken");
    w.unhealthy_hash = Some(hash_of(&bad));
    w.settle(&bad);
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert_eq!(w.stable().map(|s| s.0), Some("v1"));
    assert_eq!(
        w.observed.stable.as_ref().map(|s| s.hash.clone()),
        Some(hash_of(&good)),
        "the old env is back on every pod"
    );
    // Git catches up (the rollback commit): Healthy on the old revision, the failure still told.
    w.settle(&good);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    let condition = |w: &World, t: &str| w.status.conditions.iter().find(|c| c.type_ == t).cloned();
    let rolled_back = condition(&w, CONDITION_ROLLED_BACK).expect("kept after the fast path");
    assert_eq!(rolled_back.reason, "RolledBack");
    assert!(
        rolled_back.message.contains(&hash_of(&bad)),
        "names the failed revision: {}",
        rolled_back.message
    );
    assert_eq!(
        condition(&w, CONDITION_READY).map(|c| c.status),
        Some("True".into())
    );
    // The next upgrade ends the story.
    w.unhealthy_hash = None;
    w.settle(&with_env(checked(spec("v2")), "old"));
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert!(condition(&w, CONDITION_ROLLED_BACK).is_none());
}

#[test]
fn a_migration_changed_at_the_same_version_runs_afresh_and_an_env_change_runs_none() {
    let v1 = with_migration(spec("v1"));
    let mut w = World::deployed(&v1);
    assert_eq!(w.jobs_run, Vec::<String>::new());
    w.settle(&with_env(v1.clone(), "new"));
    assert_eq!(
        w.jobs_run,
        Vec::<String>::new(),
        "an env change needs no migration"
    );
    let mut changed = with_env(v1, "new");
    if let Some(m) = changed.upgrade_strategy.migration_job.as_mut() {
        m.command = Some(vec!["/migrate".into(), "--fix".into()]);
    }
    w.settle(&changed);
    assert_eq!(
        w.jobs_run,
        ["up v1"],
        "the Job of the old migration is not taken for this one"
    );
    assert_eq!(w.status.phase, Some(Phase::Healthy));
}

#[test]
fn a_rollback_commit_during_a_down_migration_waits_for_it_and_a_later_revert_runs_its_own() {
    let mut w = World::deployed(&with_down_migration(checked(spec("v1"))));
    w.settle(&with_down_migration(checked(spec("v2"))));
    assert_eq!(w.status.current_version.as_deref(), Some("v2"));
    w.unhealthy_version = Some("v3".into());
    w.down_outcome = JobObs::Running;
    w.settle(&with_down_migration(checked(spec("v3"))));
    assert_eq!(
        w.status.down_migration.as_ref().map(|r| r.version.as_str()),
        Some("v3")
    );
    // The rollback commit asks for v2 while v3's down-migration still runs.
    let v2 = with_down_migration(checked(spec("v2")));
    for _ in 0..5 {
        w.step(&v2);
    }
    assert_eq!(
        w.status.phase,
        Some(Phase::Failed),
        "the down-migration is not left half done"
    );
    w.jobs
        .insert((JobKind::Down, "v3".into()), JobObs::Succeeded);
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert_eq!(w.status.down_migration, None);
    // A revert to v1 runs v2's own down-migration, and says so only once it ran.
    w.reasons.clear();
    w.jobs_run.clear();
    w.down_outcome = JobObs::Succeeded;
    w.settle(&with_down_migration(checked(spec("v1"))));
    assert_eq!(w.jobs_run, ["down v2"]);
    assert_eq!(w.status.current_version.as_deref(), Some("v1"));
    assert_eq!(
        w.reasons
            .iter()
            .filter(|r| *r == "DownMigrationSucceeded")
            .count(),
        1
    );
    assert!(
        w.status
            .history
            .iter()
            .any(|h| h.message.contains("the down-migration of v2 succeeded"))
    );
}

#[test]
fn a_down_migration_job_of_another_version_is_never_taken_as_this_ones_result() {
    let record = DownMigrationRecord {
        version: "v2".into(),
        image: "m:v2".into(),
        command: None,
        args: None,
    };
    let observed = Observed {
        down_migration: JobObs::Succeeded,
        down_migration_of: Some("v3".into()),
        ..Default::default()
    };
    assert_eq!(down_job(&observed, &record), JobObs::Absent);
    let observed = Observed {
        down_migration_of: Some("v2".into()),
        ..observed
    };
    assert_eq!(down_job(&observed, &record), JobObs::Succeeded);
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

/// The app `shop/web` with this spec and status, as the write-back controller sees it.
fn app_named_web(
    spec: ManagedApplicationSpec,
    status: &ManagedApplicationStatus,
) -> crate::model::ManagedApplication {
    crate::model::ManagedApplication {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("web".into()),
            namespace: Some("shop".into()),
            ..Default::default()
        },
        spec,
        status: Some(status.clone()),
    }
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
    let rolled_back = w
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_ROLLED_BACK)
        .expect("RolledBack");
    assert_eq!(
        rolled_back.reason, REASON_MIGRATION_FAILED,
        "a typed reason, not words to search"
    );
    // The pull request comment names the migration Job to read.
    let app = app_named_web(with_migration(spec("v2")), &w.status);
    let report = crate::report::app_report(&app).expect("a report");
    assert_eq!(
        report.failure.and_then(|f| f.job).as_deref(),
        Some("web-migration-v2")
    );
}

#[test]
fn a_rollout_failure_names_no_migration_job_even_when_its_message_says_migration() {
    let mut w = World::deployed(&checked(spec("migration-v1")));
    w.unhealthy_version = Some("migration-v2".into());
    w.settle(&checked(spec("migration-v2")));
    assert_eq!(w.status.phase, Some(Phase::Failed));
    let app = app_named_web(checked(spec("migration-v2")), &w.status);
    let report = crate::report::app_report(&app).expect("a report");
    let failure = report.failure.expect("a failure");
    assert!(failure.reason.contains("migration"), "{}", failure.reason);
    assert_eq!(failure.job, None);
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
    let mut w = World::deployed(&checked(canary("v1", &[(25, None), (100, None)])));
    w.unhealthy_version = Some("v2".into());
    w.settle(&checked(canary("v2", &[(25, None), (100, None)])));
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

/// Steps until the app is Failed, for at most `secs` of simulated time; returns the time it took.
fn step_until_failed(w: &mut World, spec: &ManagedApplicationSpec, secs: i64) -> i64 {
    let began = w.now;
    while w.status.phase != Some(Phase::Failed) && w.now < began + secs {
        w.step(spec);
    }
    w.now - began
}

#[test]
fn pods_never_ready_fail_at_the_progress_deadline_even_when_the_deployment_does_not_say_so() {
    for strategy in [StrategyType::Rolling, StrategyType::Recreate] {
        let mut v1 = spec("v1");
        v1.upgrade_strategy.type_ = strategy;
        v1.upgrade_strategy.progress_deadline_seconds = Some(30);
        let mut w = World::deployed(&v1);
        w.never_ready_version = Some("v2-broken".into());
        w.deadline_unreported = true;
        let mut v2 = v1.clone();
        v2.version = "v2-broken".into();
        let took = step_until_failed(&mut w, &v2, 600);
        assert_eq!(w.phases, [Phase::Deploying, Phase::Failed], "{strategy:?}");
        assert!(
            (30..=36).contains(&took),
            "{strategy:?}: failed after {took} s"
        );
        assert!(
            w.status
                .message
                .as_deref()
                .unwrap_or("")
                .contains("ready in time")
        );
        assert_eq!(
            w.stable(),
            Some(("v1", v1.replicas.unwrap_or(1))),
            "{strategy:?}"
        );
    }
}

#[test]
fn a_canary_step_that_only_scales_up_fails_at_the_progress_deadline() {
    let steps = [(50, None), (100, None)];
    let with_two = |version: &str| {
        let mut s = canary(version, &steps);
        s.replicas = Some(2);
        s.upgrade_strategy.progress_deadline_seconds = Some(20);
        s
    };
    let mut w = World::deployed(&with_two("v1"));
    let v2 = with_two("v2");
    while w.status.step_index != Some(1) && w.now < 1000 {
        w.step(&v2);
    }
    assert_eq!(w.status.phase, Some(Phase::Deploying));
    // Step 2 scales the canary from 1 pod to 2; the new pod is never ready, and the Deployment
    // (same template, only scaled) never reports the deadline.
    let c = w.observed.canary.as_mut().expect("a canary");
    (c.replicas, c.ready, c.stalled) = (2, 1, false);
    let began = w.now;
    while w.status.phase == Some(Phase::Deploying) && w.now < began + 600 {
        let d = decide(&v2, &w.status, &w.observed, &at(w.now));
        w.status = d.status;
        w.now += d.requeue_after.unwrap_or(1) as i64;
    }
    assert_eq!(w.status.phase, Some(Phase::Failed), "{:?}", w.status);
    let took = w.now - began;
    assert!((20..=26).contains(&took), "failed after {took} s");
}

#[test]
fn an_app_last_rolled_out_long_ago_is_upgraded_not_failed_at_once() {
    // The Deployment's Progressing condition last moved at v1's rollout, a day before the bump (the
    // 10,000-app bench bumped apps created 10 minutes before, past the default deadline): the start
    // goes on to its first stage in the same decision, and that stage's clock starts now.
    for strategy in [StrategyType::Rolling, StrategyType::Recreate] {
        let mut v1 = spec("v1");
        v1.upgrade_strategy.type_ = strategy;
        v1.upgrade_strategy.progress_deadline_seconds = Some(600);
        let mut w = World::deployed(&v1);
        let a_day_ago = at(w.now - 86_400);
        w.observed.stable.as_mut().expect("v1 runs").progressed_at = Some(a_day_ago);
        let mut v2 = v1.clone();
        v2.version = "v2".into();
        w.settle(&v2);
        assert_eq!(
            w.status.phase,
            Some(Phase::Healthy),
            "{strategy:?}: {:?}",
            w.status
        );
        assert_eq!(
            w.stable(),
            Some(("v2", v1.replicas.unwrap_or(1))),
            "{strategy:?}"
        );
        assert!(
            !w.phases.contains(&Phase::Failed),
            "{strategy:?}: {:?}",
            w.phases
        );
    }
}

#[test]
fn the_progress_deadline_counts_from_the_later_of_the_stage_start_and_the_last_progress() {
    let obs = |stalled, progressed_at: Option<i64>| WorkloadObs {
        version: "v2".into(),
        hash: "h2".into(),
        replicas: 2,
        ready: 1,
        stalled,
        progressed_at: progressed_at.map(at),
        pods_ready: 0,
    };
    // (controller says stalled, last progress, stage start, now, stalled?)
    let table = [
        (true, None, None, 0, true),
        (false, None, None, 10_000, false),
        (false, None, Some(0), 30, false),
        (false, None, Some(0), 31, true),
        (false, Some(20), Some(0), 31, false),
        (false, Some(20), Some(0), 51, true),
        // A condition left over from the previous rollout, long before this stage.
        (false, Some(-5000), Some(0), 29, false),
        (false, Some(-5000), None, 29, true),
    ];
    for (stalled, progressed, since, now, want) in table {
        let got = obs(stalled, progressed).stalled(30, since.map(at).as_ref(), &at(now));
        assert_eq!(got, want, "{stalled} {progressed:?} {since:?} {now}");
    }
}

#[test]
fn a_rollout_whose_pods_are_ready_waits_for_a_busy_deployment_controller_and_is_not_failed() {
    use super::observed::{DeadlineClock, Rollout, rollout};
    // The 10,000-app bump: v2's pod was ready within seconds, but the controller-manager, minutes
    // behind, still counted the old pod too, and had last seen progress more than the deadline ago.
    let behind = |pods_ready, stalled| WorkloadObs {
        version: "v2".into(),
        hash: "h2".into(),
        replicas: 1,
        ready: 0,
        stalled,
        progressed_at: Some(at(0)),
        pods_ready,
    };
    assert!(behind(0, false).may_have_stalled(600, &at(601)));
    assert!(!behind(0, false).may_have_stalled(600, &at(500)));
    let clock = DeadlineClock {
        deadline: 600,
        since: Some(at(0)),
        now: at(700),
    };
    let gate = |w: WorkloadObs, hash: &str| rollout(Some(&w), hash, 1, &clock);
    assert!(matches!(gate(behind(1, false), "h2"), Rollout::Behind));
    // Nor the controller's own ProgressDeadlineExceeded, which it may write as it catches up.
    assert!(matches!(gate(behind(1, true), "h2"), Rollout::Behind));
    // Its pods not ready: the version is at fault.
    assert!(matches!(gate(behind(0, false), "h2"), Rollout::Stalled));
    // Ready pods of another revision are not this one's.
    assert!(matches!(gate(behind(1, false), "h3"), Rollout::Stalled));
}

#[test]
fn the_message_of_a_busy_deployment_controller_goes_when_the_rollout_is_back_on_its_way() {
    let mut w = World::deployed(&spec("v1"));
    w.never_ready_version = Some("v2".into());
    let v2 = spec("v2");
    w.step(&v2);
    assert_eq!(w.status.phase, Some(Phase::Deploying), "{:?}", w.status);
    let stage_message = w.status.message.clone();
    let mut side = w.observed.stable.clone().expect("v2 applied");
    assert_eq!(side.version, "v2");
    // Its pods are ready; the controller has not counted them, nor moved for longer than the
    // deadline.
    (side.ready, side.pods_ready) = (0, side.replicas);
    (side.stalled, side.progressed_at) = (false, Some(at(w.now - 10_000)));
    w.observed.stable = Some(side.clone());
    let behind = decide(&v2, &w.status, &w.observed, &at(w.now));
    let message = behind.status.message.clone().unwrap_or_default();
    assert!(
        message.contains("waiting for the Deployment controller"),
        "{message}"
    );
    // The controller moves (a sign of progress) and has not counted the pods yet: the rollout is on
    // its way again, and says what its stage says, not that it waits for the controller.
    (side.pods_ready, side.progressed_at) = (0, Some(at(w.now)));
    w.observed.stable = Some(side);
    let rolling = decide(&v2, &behind.status, &w.observed, &at(w.now + 1));
    assert_eq!(rolling.status.phase, Some(Phase::Deploying));
    assert_eq!(rolling.status.message, stage_message);
}

#[test]
fn a_rollout_on_its_way_is_looked_at_again_just_past_its_deadline_not_every_few_seconds() {
    use super::observed::{DeadlineClock, Rollout, rollout};
    // Its Deployment's changes wake the app; the timer is for the deadline alone.
    let rolling = |progressed_at: Option<i64>| WorkloadObs {
        version: "v2".into(),
        hash: "h2".into(),
        replicas: 1,
        ready: 0,
        stalled: false,
        progressed_at: progressed_at.map(at),
        pods_ready: 0,
    };
    let recheck = |w: Option<WorkloadObs>, since: Option<i64>, now: i64| {
        let clock = DeadlineClock {
            deadline: 60,
            since: since.map(at),
            now: at(now),
        };
        match rollout(w.as_ref(), "h2", 1, &clock) {
            Rollout::Rolling { recheck_secs } => recheck_secs,
            _ => panic!("not rolling"),
        }
    };
    assert_eq!(
        recheck(Some(rolling(None)), Some(0), 10),
        51,
        "just past the deadline"
    );
    assert_eq!(
        recheck(Some(rolling(Some(30))), Some(0), 40),
        51,
        "from the last progress"
    );
    assert_eq!(
        recheck(Some(rolling(None)), Some(0), 58),
        5,
        "never sooner than 5 s"
    );
    assert_eq!(recheck(None, None, 0), 60, "a guard of a minute, at most");
    let clock = DeadlineClock {
        deadline: 600,
        since: Some(at(0)),
        now: at(1),
    };
    assert!(matches!(
        rollout(Some(&rolling(None)), "h2", 1, &clock),
        Rollout::Rolling { recheck_secs: 60 }
    ));
}

#[test]
fn a_failed_version_is_not_retried_until_the_version_changes() {
    let mut w = World::deployed(&checked(spec("v1")));
    w.unhealthy_version = Some("v2".into());
    w.settle(&checked(spec("v2")));
    assert_eq!(w.status.phase, Some(Phase::Failed));
    w.phases.clear();
    for _ in 0..5 {
        w.step(&checked(spec("v2")));
    }
    assert!(w.phases.is_empty(), "no rollback loop: {:?}", w.phases);
    w.unhealthy_version = None;
    w.settle(&checked(spec("v3")));
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
    assert_eq!(
        w.observed.canary.as_ref().map(|c| c.version.as_str()),
        Some("v3"),
        "the canary of v2 is replaced"
    );
    w.settle(&canary("v3", &steps));
    assert_eq!(w.status.current_version.as_deref(), Some("v3"));
    assert_eq!(w.status.last_healthy_version.as_deref(), Some("v3"));
}

#[test]
fn history_records_each_transition_of_the_upgrade_and_its_revision() {
    let mut w = World::deployed(&with_migration(spec("v1")));
    assert_eq!(
        w.status.history.len(),
        4,
        "the first deployment's own history"
    );
    w.observed.revision = Some("abc123".into());
    w.settle(&with_migration(spec("v2")));
    assert_eq!(w.status.target_revision.as_deref(), Some("abc123"));
    let phases: Vec<Phase> = w.status.history.iter().map(|h| h.phase).collect();
    assert_eq!(
        phases,
        [
            Phase::Migrating,
            Phase::Deploying,
            Phase::HealthChecking,
            Phase::Healthy
        ],
        "reset for the new target, one entry per transition"
    );
    assert_eq!(w.status.history[0].message, "upgrading to v2");
    assert_eq!(w.status.history[3].message, "v2 is healthy");
}

#[test]
fn history_keeps_the_latest_fifty_entries() {
    let steps: Vec<(i32, Option<Pause>)> = (1..=40).map(|i| (i * 2, None)).collect();
    let mut w = World::deployed(&canary("v1", &steps));
    w.settle(&canary("v2", &steps));
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert_eq!(w.status.history.len(), HISTORY_CAP);
    assert_eq!(
        w.status.history.last().map(|h| h.message.as_str()),
        Some("v2 is healthy")
    );
}

#[test]
fn history_entries_carry_the_step_and_weight() {
    let steps = [(25, None), (100, None)];
    let mut w = World::deployed(&canary("v1", &steps));
    w.settle(&canary("v2", &steps));
    let first_check = w
        .status
        .history
        .iter()
        .find(|h| h.phase == Phase::HealthChecking)
        .expect("a health check entry");
    assert_eq!((first_check.step, first_check.weight), (Some(0), Some(25)));
}

#[test]
fn active_health_checks_probe_the_canary_and_pass_it() {
    let steps = [(25, None), (100, None)];
    let mut w = World::deployed(&checked(canary("v1", &steps)));
    w.settle(&checked(canary("v2", &steps)));
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert_eq!(
        w.probed,
        [
            (Role::Canary, "v2".to_string()),
            (Role::Canary, "v2".to_string()),
            (Role::Stable, "v2".to_string())
        ],
        "each step's new pods, then the promoted stable side"
    );
    assert_eq!(w.status.health_check, None, "cleared once decided");
}

#[test]
fn a_failing_health_check_fails_after_the_threshold_and_says_which_pod() {
    let mut w = World::deployed(&checked(spec("v1")));
    w.unhealthy_version = Some("v2".into());
    let start = w.now;
    w.settle(&checked(spec("v2")));
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert_eq!(w.probed.len(), 3, "failureThreshold rounds");
    assert!(
        w.now - start >= 20,
        "a period between rounds: {}",
        w.now - start
    );
    let message = w.status.message.clone().unwrap_or_default();
    assert!(
        message.contains("pod v2-")
            && message.contains("HTTP 500")
            && message.contains("3 in a row"),
        "{message}"
    );
    assert_eq!(w.stable(), Some(("v1", 4)), "rolled back");
}

#[test]
fn a_canary_that_fails_during_its_pause_rolls_back_before_the_pause_ends() {
    let steps = [(50, Some(Pause::Seconds(600))), (100, None)];
    let mut w = World::deployed(&checked(canary("v1", &steps)));
    let s2 = checked(canary("v2", &steps));
    while w.status.pause_start_time.is_none() {
        w.step(&s2);
    }
    let pause_began = w.now;
    let rounds_before = w.probed.len();
    // Healthy for a while into the pause: it is still probed every period.
    while w.now < pause_began + 100 {
        w.step(&s2);
    }
    assert!(
        w.probed.len() >= rounds_before + 9,
        "watched during the pause: {} rounds in 100 s",
        w.probed.len() - rounds_before
    );
    assert_eq!(w.status.phase, Some(Phase::HealthChecking));
    w.unhealthy_version = Some("v2".into());
    w.settle(&s2);
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert!(
        w.now - pause_began < 200,
        "failed within its failureThreshold rounds, not at the pause's end: {} s",
        w.now - pause_began
    );
    assert_eq!(w.stable(), Some(("v1", 4)), "rolled back");
    assert!(w.observed.canary.is_none(), "canary removed");
    let message = w.status.message.clone().unwrap_or_default();
    assert!(message.contains("3 in a row"), "{message}");
}

#[test]
fn a_healthy_stage_waiting_for_promotion_is_probed_every_period_without_a_status_write() {
    let steps = [(50, Some(Pause::UntilPromoted)), (100, None)];
    let mut w = World::deployed(&checked(canary("v1", &steps)));
    let s2 = checked(canary("v2", &steps));
    while !(w.status.phase == Some(Phase::HealthChecking)
        && w.status
            .health_check
            .as_ref()
            .is_some_and(|h| h.passes >= 1))
    {
        w.step(&s2);
    }
    let waiting = w.status.clone();
    let (rounds, began) = (w.probed.len(), w.now);
    for _ in 0..30 {
        let d = w.step(&s2);
        assert_eq!(d.requeue_after, Some(10), "a round each period");
    }
    assert_eq!(w.status, waiting, "nothing to write while it passes");
    assert_eq!(w.probed.len() - rounds, 30, "probed at every wake-up");
    assert_eq!(w.now - began, 300);
}

#[test]
fn a_pause_that_began_mid_second_is_not_cut_short() {
    // A start of 10.9 s rounded down to 10 s would let a 60 s pause pass after 59.1 s.
    let steps = [(50, Some(Pause::Seconds(60))), (100, None)];
    let mut w = World::deployed(&canary("v1", &steps));
    let s2 = canary("v2", &steps);
    while w.status.pause_start_time.is_none() {
        w.step(&s2);
    }
    let began = w.status.pause_start_time.clone().expect("a pause");
    let mid_second = began.0.as_millisecond() + 900;
    w.status.pause_start_time = Some(MicroTime(
        k8s_openapi::jiff::Timestamp::from_millisecond(mid_second).expect("a time"),
    ));
    let began_s = began.0.as_second() - at(0).0.as_second();
    w.now = began_s + 60;
    let d = w.step(&s2);
    assert_eq!(w.status.step_index, Some(0), "59.1 s into a 60 s pause");
    assert_eq!(d.requeue_after, Some(1), "what is left, rounded up");
    w.now = began_s + 61;
    w.step(&s2);
    assert_eq!(w.status.step_index, Some(1), "60.1 s: the pause is over");
}

#[test]
fn a_blip_during_a_pause_holds_the_step_until_it_passes_again() {
    let steps = [(50, Some(Pause::Seconds(15))), (100, None)];
    let mut w = World::deployed(&checked(canary("v1", &steps)));
    let s2 = checked(canary("v2", &steps));
    while w.status.pause_start_time.is_none() {
        w.step(&s2);
    }
    let pause_began = w.now;
    w.unhealthy_version = Some("v2".into());
    let failed_rounds_at = w.probed.len();
    while w.probed.len() < failed_rounds_at + 2 {
        w.step(&s2);
    }
    let message = w.status.message.clone().unwrap_or_default();
    assert!(
        message.contains("2 of 3 failures before a rollback"),
        "{message}"
    );
    // The pause has run out meanwhile, but the step waits for a passing round.
    assert!(w.now >= pause_began + 15, "{}", w.now - pause_began);
    assert_eq!(w.status.phase, Some(Phase::HealthChecking));
    assert_eq!(w.status.step_index, Some(0), "held while failing");
    w.unhealthy_version = None;
    w.settle(&s2);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert_eq!(w.stable(), Some(("v2", 4)));
}

#[test]
fn without_a_health_check_readiness_is_the_verdict() {
    let mut w = World::deployed(&spec("v1"));
    w.unhealthy_version = Some("v2".into());
    w.settle(&spec("v2"));
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert!(w.probed.is_empty(), "nothing probed");
}

#[test]
fn a_restart_during_health_checks_resumes_the_count() {
    let mut w = World::deployed(&checked(spec("v1")));
    w.unhealthy_version = Some("v2".into());
    let s2 = checked(spec("v2"));
    while w.probed.len() < 2 {
        w.step(&s2);
    }
    // A restarted executor has only the status: the two failures counted so far are in it.
    let saved = w.status.health_check.clone().expect("counts in status");
    assert_eq!(saved.failing_pods.first().map(|f| f.failures), Some(2));
    w.settle(&s2);
    assert_eq!(w.probed.len(), 3, "one more round fails it, not three");
}

#[test]
fn blue_green_runs_the_preview_checks_it_switches_at_once_then_scales_the_old_side_down() {
    let mut w = World::deployed(&blue_green("v1", None));
    assert_eq!(w.served.as_deref(), Some("v1"));
    let mut switch_at = None;
    let mut old_side_gone_at = None;
    let s2 = blue_green("v2", None);
    for _ in 0..100 {
        let before = w.now;
        let d = w.step(&s2);
        let serves_v2 = d
            .actions
            .iter()
            .any(|a| matches!(a, Action::Serve { revision: Some(r) } if r.version == "v2"));
        if serves_v2 && switch_at.is_none() {
            switch_at = Some(before);
            assert_eq!(
                w.stable(),
                Some(("v1", 4)),
                "the old side is kept after the switch"
            );
        }
        if w.stable() == Some(("v2", 4)) && old_side_gone_at.is_none() {
            old_side_gone_at = Some(before);
        }
        if w.status.phase == Some(Phase::Healthy) {
            break;
        }
    }
    assert_eq!(w.status.current_version.as_deref(), Some("v2"));
    assert_eq!(w.probed.first(), Some(&(Role::Preview, "v2".to_string())));
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        w.serving,
        [
            (some("v1"), some("v1"), some("v2")),
            (some("v2"), some("v1"), some("v2")),
            (some("v2"), some("v2"), some("v2")),
            (some("v2"), some("v2"), None),
        ],
        "(served, stable, preview): the preview is served only after its check, all at once"
    );
    let kept = old_side_gone_at.unwrap_or(0) - switch_at.unwrap_or(0);
    assert!(kept >= 30, "the scale-down delay: {kept} s");
}

#[test]
fn blue_green_failing_after_the_switch_switches_back_at_once_before_the_old_side_goes() {
    let mut w = World::deployed(&blue_green("v1", None));
    w.unhealthy_version = Some("v2".into());
    w.unhealthy_after_switch = true;
    let s2 = blue_green("v2", None);
    let mut switched_at = None;
    for _ in 0..300 {
        if w.status.phase == Some(Phase::Failed) {
            break;
        }
        w.step(&s2);
        if w.served.as_deref() == Some("v2") && switched_at.is_none() {
            switched_at = Some(w.now);
        }
    }
    let switched_at = switched_at.expect("the Service was switched to v2");
    assert_eq!(w.status.phase, Some(Phase::Failed));
    let message = w.status.message.clone().unwrap_or_default();
    assert!(message.contains("after the switch"), "{message}");
    // Three failures 10 s apart, within the 30 s the old side is kept: it never left.
    assert!(w.now - switched_at < 30, "{} s", w.now - switched_at);
    assert!(w.probed.contains(&(Role::Preview, "v2".to_string())));
    w.settle(&s2);
    assert_eq!(
        w.served.as_deref(),
        Some("v1"),
        "the active Service is back on v1"
    );
    assert_eq!(w.stable(), Some(("v1", 4)));
    assert!(w.observed.preview.is_none(), "the green side is removed");
    assert!(
        w.serving
            .iter()
            .all(|(_, stable, _)| stable.as_deref() == Some("v1")),
        "the old side was never scaled down: {:?}",
        w.serving
    );
}

#[test]
fn blue_green_with_an_unhealthy_preview_removes_it_and_never_moves_the_service() {
    let mut w = World::deployed(&blue_green("v1", None));
    w.unhealthy_version = Some("v2".into());
    w.settle(&blue_green("v2", None));
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert!(
        w.serving
            .iter()
            .all(|(served, _, _)| served.as_deref() == Some("v1"))
    );
    assert!(w.observed.preview.is_none(), "the preview is removed");
    assert_eq!(w.stable(), Some(("v1", 4)));
}

#[test]
fn blue_green_with_a_preview_never_ready_rolls_back() {
    let mut w = World::deployed(&blue_green("v1", None));
    w.never_ready_version = Some("v2-broken".into());
    w.settle(&blue_green("v2-broken", None));
    assert_eq!(w.phases, [Phase::Deploying, Phase::Failed]);
    assert!(w.observed.preview.is_none());
    assert_eq!(w.served.as_deref(), Some("v1"));
}

#[test]
fn blue_green_without_auto_promote_waits_for_a_human() {
    let mut w = World::deployed(&blue_green("v1", Some(false)));
    for _ in 0..20 {
        w.step(&blue_green("v2", Some(false)));
    }
    assert_eq!(w.status.phase, Some(Phase::HealthChecking));
    assert_eq!(w.served.as_deref(), Some("v1"));
    assert!(
        w.status
            .message
            .as_deref()
            .is_some_and(|m| m.contains("waiting for bosun promote"))
    );
    w.observed.promoted = true;
    w.settle(&blue_green("v2", Some(false)));
    assert_eq!(
        w.status.current_version.as_deref(),
        Some("v2"),
        "{:?}",
        w.status
    );
    assert_eq!(w.served.as_deref(), Some("v2"));
}

#[test]
fn blue_green_going_back_to_a_version_healthy_before_needs_no_promotion() {
    let mut w = World::deployed(&blue_green("v1", Some(false)));
    for _ in 0..20 {
        w.step(&blue_green("v2", Some(false)));
    }
    w.observed.promoted = true;
    w.settle(&blue_green("v2", Some(false)));
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    w.observed.promoted = false;
    // `git revert` of the bump: v1 was healthy before.
    w.settle(&blue_green("v1", Some(false)));
    assert_eq!(w.status.phase, Some(Phase::Healthy), "{:?}", w.status);
    assert_eq!(w.status.current_version.as_deref(), Some("v1"));
    assert_eq!(w.served.as_deref(), Some("v1"));
    assert!(
        w.probed
            .iter()
            .any(|(role, v)| *role == Role::Preview && v == "v1"),
        "the preview of v1 was still checked: {:?}",
        w.probed
    );
}

#[test]
fn canary_and_rolling_apps_are_served_by_every_pod() {
    let mut w = World::deployed(&canary("v1", &[(50, None)]));
    w.settle(&canary("v2", &[(50, None)]));
    assert!(w.serving.iter().all(|(served, _, _)| served.is_none()));
}

#[test]
fn reverting_to_the_version_that_runs_after_a_rollback_is_healthy_at_once() {
    let steps = [(25, None), (100, None)];
    let mut w = World::deployed(&with_migration(checked(canary("v1", &steps))));
    w.unhealthy_version = Some("v2".into());
    w.settle(&with_migration(checked(canary("v2", &steps))));
    assert_eq!(w.status.phase, Some(Phase::Failed));
    w.phases.clear();
    w.jobs_run.clear();
    w.probed.clear();
    w.settle(&with_migration(checked(canary("v1", &steps))));
    assert_eq!(w.phases, [Phase::Healthy], "no steps");
    assert!(w.jobs_run.is_empty(), "no migration");
    assert!(w.probed.is_empty(), "nothing to check");
    assert_eq!(w.status.failed_version, None);
    assert_eq!(
        w.status.message.as_deref(),
        Some("v1 already runs: nothing to roll out")
    );
}

#[test]
fn going_back_to_a_version_healthy_before_skips_the_steps_and_migrates_down_first() {
    let steps = [(25, Some(Pause::Seconds(300))), (100, None)];
    let mut w = World::deployed(&with_down_migration(canary("v1", &steps)));
    w.settle(&with_down_migration(canary("v2", &steps)));
    assert_eq!(w.status.current_version.as_deref(), Some("v2"));
    w.phases.clear();
    w.jobs_run.clear();
    let before = w.now;
    let mut canary_runs = false;
    for _ in 0..50 {
        w.step(&with_down_migration(canary("v1", &steps)));
        canary_runs |= w.observed.canary.is_some();
    }
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert_eq!(w.stable(), Some(("v1", 4)));
    assert!(!canary_runs, "no canary steps");
    assert!(w.now - before < 300, "no pause");
    assert_eq!(
        w.jobs_run,
        ["down v2"],
        "the down-migration of v2, no up-migration"
    );
    assert_eq!(
        w.phases,
        [
            Phase::Migrating,
            Phase::Deploying,
            Phase::HealthChecking,
            Phase::Healthy
        ]
    );
    // v2's schema was undone: going to v2 again is a full upgrade with its up-migration.
    w.jobs_run.clear();
    w.settle(&with_down_migration(canary("v2", &steps)));
    assert_eq!(w.jobs_run, ["up v2"]);
}

#[test]
fn a_rolled_back_upgrade_runs_its_down_migration_after_the_failed_side_is_gone() {
    let steps = [(25, None), (100, None)];
    let mut w = World::deployed(&with_down_migration(checked(canary("v1", &steps))));
    w.unhealthy_version = Some("v2".into());
    let s2 = with_down_migration(checked(canary("v2", &steps)));
    let mut canary_when_down_ran = None;
    for _ in 0..100 {
        w.step(&s2);
        if w.jobs_run.contains(&"down v2".to_string()) && canary_when_down_ran.is_none() {
            canary_when_down_ran = Some(w.observed.canary.is_some());
        }
    }
    assert_eq!(w.jobs_run, ["up v2", "down v2"]);
    assert_eq!(
        canary_when_down_ran,
        Some(false),
        "the canary was removed first"
    );
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert!(w.reasons.contains(&"DownMigrationSucceeded".to_string()));
    assert_eq!(
        w.status.message.as_deref(),
        Some("rolled back to v1; the down-migration of v2 succeeded")
    );
    assert_eq!(w.status.down_migration, None);
}

#[test]
fn a_failed_down_migration_leaves_the_app_failed_and_is_not_run_again() {
    let mut w = World::deployed(&with_down_migration(checked(spec("v1"))));
    w.unhealthy_version = Some("v2".into());
    w.down_outcome = JobObs::Failed {
        reason: "BackoffLimitExceeded".into(),
    };
    w.settle(&with_down_migration(checked(spec("v2"))));
    assert_eq!(w.status.phase, Some(Phase::Failed));
    let message = w.status.message.clone().unwrap_or_default();
    assert!(
        message.contains("down-migration of v2 failed (BackoffLimitExceeded)"),
        "{message}"
    );
    w.phases.clear();
    for _ in 0..5 {
        w.step(&with_down_migration(checked(spec("v2"))));
    }
    assert!(w.phases.is_empty(), "no loop");
    assert_eq!(w.jobs_run.iter().filter(|j| *j == "down v2").count(), 1);
}

#[test]
fn a_failed_up_migration_runs_no_down_migration() {
    let mut w = World::deployed(&with_down_migration(spec("v1")));
    w.job_outcome = JobObs::Failed {
        reason: "DeadlineExceeded".into(),
    };
    w.settle(&with_down_migration(spec("v2")));
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert_eq!(w.jobs_run, ["up v2"]);
}

#[test]
fn a_pause_frozen_by_spec_paused_resumes_with_its_remaining_time() {
    let steps = [(50, Some(Pause::Seconds(600))), (100, None)];
    let mut w = World::deployed(&canary("v1", &steps));
    let s2 = canary("v2", &steps);
    while w.status.pause_start_time.is_none() {
        w.step(&s2);
    }
    let pause_began = w
        .status
        .pause_start_time
        .clone()
        .expect("a pause")
        .0
        .as_second()
        - at(0).0.as_second();
    w.now = pause_began + 100;
    let mut paused = s2.clone();
    paused.paused = true;
    w.step(&paused);
    assert_eq!(w.status.paused_elapsed_seconds, Some(100));
    w.now += 5000;
    w.step(&paused);
    assert_eq!(
        w.status.step_index,
        Some(0),
        "frozen: the pause did not run out"
    );
    let resumed_at = w.now;
    let d = w.step(&s2);
    assert_eq!(d.requeue_after, Some(500), "the remaining 500 s");
    assert_eq!(
        w.status.pause_start_time,
        Some(MicroTime(at(resumed_at - 100).0)),
        "as if it began 100 s ago"
    );
    w.settle(&s2);
    assert_eq!(w.status.current_version.as_deref(), Some("v2"));
    assert!(w.now - pause_began >= 5600);
}

#[test]
fn an_abort_annotation_fails_the_running_upgrade_of_its_version_only() {
    let steps = [(50, Some(Pause::Seconds(600))), (100, None)];
    let mut w = World::deployed(&canary("v1", &steps));
    let s2 = canary("v2", &steps);
    for _ in 0..3 {
        w.step(&s2);
    }
    w.observed.abort = Some("v9".into());
    w.step(&s2);
    assert_ne!(
        w.status.phase,
        Some(Phase::Failed),
        "another version: ignored"
    );
    w.observed.abort = Some("v2".into());
    w.settle(&s2);
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert_eq!(w.status.message.as_deref(), Some("aborted by a user"));
    assert_eq!(w.status.failed_version.as_deref(), Some("v2"));
    assert_eq!(w.stable(), Some(("v1", 4)));
    assert!(w.observed.canary.is_none());
    assert_eq!(w.observed.abort, None, "the annotation is removed");
}

#[test]
fn a_retry_annotation_tries_the_failed_version_again_from_the_start() {
    let mut w = World::deployed(&with_migration(spec("v1")));
    w.job_outcome = JobObs::Failed {
        reason: "BackoffLimitExceeded".into(),
    };
    w.settle(&with_migration(spec("v2")));
    assert_eq!(w.status.phase, Some(Phase::Failed));
    w.observed.retry = Some("v1".into());
    w.step(&with_migration(spec("v2")));
    assert_eq!(
        w.status.phase,
        Some(Phase::Failed),
        "another version: ignored"
    );
    w.job_outcome = JobObs::Succeeded;
    w.observed.retry = Some("v2".into());
    w.phases.clear();
    w.jobs_run.clear();
    w.settle(&with_migration(spec("v2")));
    assert_eq!(w.status.current_version.as_deref(), Some("v2"));
    assert_eq!(w.jobs_run, ["up v2"], "the migration Job ran afresh");
    assert_eq!(w.phases.first(), Some(&Phase::Migrating));
    assert_eq!(w.status.history[0].message, "retrying v2 (bosun.dev/retry)");
    assert_eq!(w.observed.retry, None, "the annotation is removed");
}

#[test]
fn a_new_version_after_a_rollback_waits_for_its_down_migration_then_migrates_up() {
    let mut w = World::deployed(&with_down_migration(checked(spec("v1"))));
    w.unhealthy_version = Some("v2".into());
    w.down_outcome = JobObs::Running;
    w.settle(&with_down_migration(checked(spec("v2"))));
    assert!(
        w.status.down_migration.is_some(),
        "v2's down-migration runs"
    );
    w.jobs_run.clear();
    let s3 = with_down_migration(checked(spec("v3")));
    for _ in 0..5 {
        w.step(&s3);
    }
    // A down-migration under way is never left half done: the rollback holds until it ends.
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert_eq!(w.status.target_version.as_deref(), Some("v2"));
    assert!(w.jobs_run.is_empty(), "v3's up-migration waits");
    w.jobs
        .insert((JobKind::Down, "v2".into()), JobObs::Succeeded);
    w.settle(&s3);
    assert_eq!(w.jobs_run, ["up v3"]);
    assert_eq!(w.status.current_version.as_deref(), Some("v3"));
}

#[test]
fn an_abort_waits_for_a_running_down_migration() {
    let steps = [(25, None), (100, None)];
    let mut w = World::deployed(&with_down_migration(canary("v1", &steps)));
    w.settle(&with_down_migration(canary("v2", &steps)));
    w.down_outcome = JobObs::Running;
    w.observed.abort = Some("v1".into());
    for _ in 0..5 {
        w.step(&with_down_migration(canary("v1", &steps)));
    }
    assert_eq!(w.status.phase, Some(Phase::Migrating), "not interrupted");
    assert_eq!(w.observed.abort.as_deref(), Some("v1"), "kept for later");
}

/// The whole loop, engine and write-back, for ten minutes of simulated time: a canary whose pods
/// never become ready is rolled back once, git gets one rollback commit, the rollback commit (new
/// desired state, at the version already running) settles at once, and nothing starts again.
#[test]
fn a_rolled_back_canary_is_written_back_once_and_nothing_loops_for_ten_minutes() {
    use crate::writeback::{AppView, GitAction, git_actions};
    let mut w = World::new();
    let mut app = canary("v1", &[(50, Some(Pause::Seconds(30))), (100, None)]);
    app.upgrade_strategy.progress_deadline_seconds = Some(10);
    w.observed.revision = Some("c1".into());
    w.settle(&app);
    assert_eq!(w.status.phase, Some(Phase::Healthy));

    app.version = "v2-broken".into();
    w.observed.revision = Some("c2".into());
    w.never_ready_version = Some("v2-broken".into());
    let mut rollback_commits = Vec::new();
    let mut rolled_back = None;
    let mut rollback_commit = None;
    let started_at = w.now;
    while w.now < started_at + 600 {
        w.step(&app);
        let view = AppView {
            namespace: "shop".into(),
            app: "web".into(),
            spec_version: app.version.clone(),
            spec_hash: Revision::of(&app).hash(),
            status: w.status.clone(),
            source_path: Some("apps/web.yaml".into()),
            rolled_back: rolled_back.clone(),
            rollback_commit: rollback_commit.clone(),
        };
        for action in git_actions(&view) {
            if let GitAction::Rollback(rc) = action {
                // Bosun pushes the commit, then the source applies it as the new desired state.
                rollback_commits.push(rc.clone());
                rolled_back = Some(rc.undoes.clone());
                rollback_commit = Some("c3".to_string());
                app.version = rc.restored_version.clone();
                w.observed.revision = Some("c3".into());
            }
        }
        w.now += 5;
    }
    assert_eq!(rollback_commits.len(), 1, "{rollback_commits:?}");
    assert_eq!(rollback_commits[0].undoes, "c2");
    assert_eq!(rollback_commits[0].restored_version, "v1");
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert_eq!(w.status.current_version.as_deref(), Some("v1"));
    let starts = w
        .phases
        .iter()
        .filter(|p| matches!(p, Phase::Deploying | Phase::Migrating))
        .count();
    assert!(
        starts <= 3,
        "no upgrade started again and again: {:?}",
        w.phases
    );
    assert_eq!(
        w.observed.canary, None,
        "the canary of the failed version is gone"
    );
}

mod analysis;
mod groups;
mod routing;
mod settle;
mod windows;
