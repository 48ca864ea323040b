//! What tests that interrupt an upgrade (a killed Bosun, a stopped API server) build and check: a
//! canary app with a migration and a down-migration, and the guarantees that must hold afterwards:
//! no step done twice or skipped (`status.history`), no migration Job made twice.

use std::collections::BTreeMap;

use bosun_core::model::{ManagedApplicationStatus, Phase};
use k8s_openapi::api::batch::v1::Job;
use kube::api::ListParams;

use super::TestNamespace;

/// The file of the app `shop` in a test repository.
pub const APP_FILE: &str = "apps/shop.yaml";

/// How the canary app of [`canary_app`] times its upgrade.
pub struct Timing {
    /// Seconds the first canary step pauses (the second pauses 3).
    pub first_pause: u64,
    /// Seconds its new pods may take to become ready (`progressDeadlineSeconds`).
    pub progress_deadline: u64,
    /// Seconds between health check rounds (`periodSeconds`).
    pub check_period: u64,
    /// Failed rounds in a row that fail the upgrade (`failureThreshold`).
    pub failure_threshold: u64,
}

impl Timing {
    /// Quick: a 6 s pause, pods ready within 20 s, checked every second, failing at the second
    /// failure in a row.
    pub const QUICK: Timing = Timing {
        first_pause: 6,
        progress_deadline: 20,
        check_period: 1,
        failure_threshold: 2,
    };
}

/// A plain canary app `shop` at `version`: two replicas, no migration, no health check, upgraded in
/// two steps, 50 % (pausing `pause` seconds, if any) and 100 %, its new pods given
/// `progress_deadline` seconds to become ready.
pub fn two_step_canary(version: &str, progress_deadline: u32, pause: Option<u32>) -> String {
    let pause = pause
        .map(|p| format!("\n          pause: {p}"))
        .unwrap_or_default();
    format!(
        "apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: shop
spec:
  version: \"{version}\"
  replicas: 2
  upgradeStrategy:
    type: Canary
    progressDeadlineSeconds: {progress_deadline}
    canary:
      steps:
        - weight: 50{pause}
        - weight: 100
"
    )
}

/// A canary app `shop` with a migration (its image follows the version) and a slow down-migration,
/// checked over HTTP by the test's health server on `health_port`, in two steps (50 %, 100 %), timed
/// as `timing` says.
pub fn canary_app(version: &str, health_port: u16, timing: &Timing) -> String {
    let Timing {
        first_pause,
        progress_deadline,
        check_period,
        failure_threshold,
    } = timing;
    format!(
        "apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: shop
spec:
  version: \"{version}\"
  replicas: 2
  upgradeStrategy:
    type: RollingWithMigration
    progressDeadlineSeconds: {progress_deadline}
    migrationJob:
      image: migrate
      down:
        image: migrate-down:undo-slow
    healthCheck:
      httpGet: {{path: /healthz, port: {health_port}}}
      initialDelaySeconds: 1
      periodSeconds: {check_period}
      failureThreshold: {failure_threshold}
    canary:
      enabled: true
      steps:
        - weight: 50
          pause: {first_pause}
        - weight: 100
          pause: 3
"
    )
}

/// Fails when `status.history` tells a transition twice (the same phase, step and message): a step
/// done again after the interruptions `interruptions`.
pub fn assert_no_step_twice(s: &ManagedApplicationStatus, interruptions: &[String]) {
    let mut seen = BTreeMap::new();
    for h in &s.history {
        *seen
            .entry((h.phase.to_string(), h.step, h.message.clone()))
            .or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "steps done twice after {interruptions:?}: {twice:?}\nhistory: {:#?}",
        s.history
    );
}

/// Fails unless every canary step up to `steps` was checked (`HealthChecking` at that step) and
/// passed (`step N passed`), in order: none skipped.
pub fn assert_every_step_taken(s: &ManagedApplicationStatus, steps: i32) {
    let mut at = 0;
    for step in 0..steps {
        let checked = s.history[at..]
            .iter()
            .position(|h| h.phase == Phase::HealthChecking && h.step == Some(step));
        let passed = s.history[at..]
            .iter()
            .position(|h| h.message == format!("step {} passed", step + 1));
        match (checked, passed) {
            (Some(c), Some(p)) if c < p => at += p + 1,
            _ => panic!(
                "canary step {} was not checked and then passed: {:#?}",
                step + 1,
                s.history
            ),
        }
    }
}

/// The seconds between a step's check beginning and its passing: at least its pause.
pub fn step_paused_secs(s: &ManagedApplicationStatus, step: i32) -> i64 {
    let began = s
        .history
        .iter()
        .find(|h| h.phase == Phase::HealthChecking && h.step == Some(step))
        .unwrap_or_else(|| panic!("step {} checked: {:#?}", step + 1, s.history));
    let passed = s
        .history
        .iter()
        .find(|h| h.message == format!("step {} passed", step + 1))
        .unwrap_or_else(|| panic!("step {} passed: {:#?}", step + 1, s.history));
    passed.time.0.as_second() - began.time.0.as_second()
}

/// Every Job of the app `shop` seen so far, by name: a Job seen again with another uid was made
/// twice.
#[derive(Default)]
pub struct JobLedger {
    jobs: BTreeMap<String, String>,
}

impl JobLedger {
    /// Records the Jobs of `shop` that exist now; fails when one was made again since it was seen,
    /// naming the interruptions so far.
    pub async fn note(&mut self, ns: &TestNamespace, interruptions: &[String]) {
        for j in shop_jobs(ns).await {
            let (name, uid) = (
                j.metadata.name.unwrap_or_default(),
                j.metadata.uid.unwrap_or_default(),
            );
            let seen = self.jobs.entry(name.clone()).or_insert_with(|| uid.clone());
            assert_eq!(
                *seen, uid,
                "the Job {name} was made twice (interruptions so far: {interruptions:?})"
            );
        }
    }
}

/// The names of the Jobs of the app `shop` now, in order.
pub async fn job_names(ns: &TestNamespace) -> Vec<String> {
    shop_jobs(ns)
        .await
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect()
}

async fn shop_jobs(ns: &TestNamespace) -> Vec<Job> {
    ns.api::<Job>()
        .list(&ListParams::default().labels("app=shop"))
        .await
        .expect("list Jobs")
        .items
}

/// Whether Job `name` runs: a pod active and none succeeded.
pub async fn job_running(ns: &TestNamespace, name: &str) -> bool {
    let job = ns.api::<Job>().get_opt(name).await.ok().flatten();
    job.and_then(|j| j.status)
        .is_some_and(|s| s.active.unwrap_or(0) > 0 && s.succeeded.unwrap_or(0) == 0)
}

/// `shop` at `version`: a migration Job, then a canary whose first step (50 %) waits until it is
/// promoted (`bosun.dev/promote-step`), the second at 100 %.
pub fn promoted_canary(version: &str) -> String {
    format!(
        "apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: shop
spec:
  version: \"{version}\"
  replicas: 2
  upgradeStrategy:
    type: RollingWithMigration
    migrationJob:
      image: \"migrate:{version}\"
    canary:
      enabled: true
      steps:
        - weight: 50
          pause: untilPromoted
        - weight: 100
"
    )
}
