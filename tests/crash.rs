//! Crash anywhere, resume exactly: the real `bosun run` process, watching a repository on the real git
//! server, is killed with SIGKILL at each point of an upgrade and of a rollback, and the same binary is
//! started again (same arguments, same cache directory), as a crashed pod restarts.
//!
//! Kill points: the migration running, each canary step, mid-pause, health checking, BlueGreen after
//! the switch, the rollback, the down-migration, and between the push of the rollback commit and the push
//! of the note. Each scenario ends with one migration Job per revision (the same Job, never made
//! twice), no canary step done twice or skipped (`status.history`), one rollback commit and one note.

mod support;

use bosun_core::model::{ManagedApplication, ManagedApplicationStatus, Phase};
use support::gitserver::{self, TestRepo};
use support::health::HealthServer;
use support::process::{Process, bosun_run, free_port, http_get, local, sample};
use support::upgrade::{
    APP_FILE as FILE, JobLedger, Timing, assert_no_step_twice, job_names, job_running,
    step_paused_secs,
};
use support::{TestNamespace, repo_scenario, wait_until};

/// The canary app of [`support::upgrade::canary_app`], timed [`Timing::QUICK`].
fn canary_app(version: &str, health_port: u16) -> String {
    support::upgrade::canary_app(version, health_port, &Timing::QUICK)
}

fn blue_green_app(version: &str, health_port: u16) -> String {
    format!(
        "apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: shop
spec:
  version: \"{version}\"
  replicas: 2
  upgradeStrategy:
    type: BlueGreen
    healthCheck:
      httpGet: {{path: /healthz, port: {health_port}}}
      initialDelaySeconds: 1
      periodSeconds: 1
      failureThreshold: 2
    blueGreen:
      scaleDownDelaySeconds: 8
"
    )
}

/// One namespace, its repository, its health server, and the `bosun run` that a test kills.
struct Crashing {
    ns: TestNamespace,
    repo: TestRepo,
    health: HealthServer,
    dir: tempfile::TempDir,
    bosun: Option<Process>,
    /// The port the running `bosun run` serves `/metrics` on.
    port: u16,
    kills: Vec<String>,
    /// Every migration Job seen (a Job made twice would show a second uid).
    jobs: JobLedger,
}

impl Crashing {
    async fn new(prefix: &str) -> Crashing {
        let (ns, repo, health, dir) = repo_scenario(prefix).await;
        let mut c = Crashing {
            ns,
            repo,
            health,
            dir,
            bosun: None,
            port: 0,
            kills: Vec::new(),
            jobs: JobLedger::default(),
        };
        c.start();
        c
    }

    /// Starts `bosun run` on the repository: the same arguments and cache directory each time.
    fn start(&mut self) {
        assert!(self.bosun.is_none(), "bosun already runs");
        let (ns, repo, dir) = (&self.ns.name, &self.repo.http_url, self.dir.path());
        let port = free_port();
        self.port = port;
        let listen = format!("127.0.0.1:{port}");
        self.bosun = Some(bosun_run(repo, ns, dir, &listen));
    }

    /// A sample of the running process's `/metrics` (0 when it has none yet).
    fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let (_, body) = http_get(local(self.port), "/metrics")?;
        Some(sample(&body, name, labels).unwrap_or(0.0))
    }

    /// SIGKILL, then the same binary again.
    async fn kill_and_restart(&mut self, point: &str) {
        self.note_jobs().await;
        let p = self.bosun.take().expect("bosun runs");
        p.signal("KILL");
        drop(p);
        self.kills.push(point.to_string());
        self.start();
    }

    async fn status(&self) -> Option<ManagedApplicationStatus> {
        self.ns
            .api::<ManagedApplication>()
            .get_opt("shop")
            .await
            .ok()??
            .status
    }

    /// Waits until the app's status satisfies `ok` (up to support's wait).
    async fn until(&self, what: &str, ok: impl Fn(&ManagedApplicationStatus) -> bool) {
        wait_until(what, || async {
            self.status().await.filter(|s| ok(s)).map(|_| ())
        })
        .await;
    }

    /// Records the migration Jobs that exist now; a Job seen before with another uid was made twice.
    async fn note_jobs(&mut self) {
        self.jobs.note(&self.ns, &self.kills).await;
    }

    fn log(&self) -> String {
        self.bosun.as_ref().map(Process::log).unwrap_or_default()
    }
}

#[tokio::test]
async fn killed_at_every_stage_of_a_canary_upgrade_and_its_rollback_bosun_resumes_exactly() {
    let mut c = Crashing::new("crash-canary").await;
    let port = c.health.port;
    c.repo.commit("shop: v1", &[(FILE, canary_app("v1", port))]);
    c.until("Healthy at v1", |s| {
        s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some("v1")
    })
    .await;

    // v2: its migration takes 6 s (`-slow`), then the canary steps.
    c.repo
        .commit("shop: v2-slow", &[(FILE, canary_app("v2-slow", port))]);
    let up = "shop-migration-v2-slow";
    wait_until("the migration running", || async {
        job_running(&c.ns, up).await.then_some(())
    })
    .await;
    c.kill_and_restart("migration running").await;
    // Deploying may last less than a poll (kwok readies pods at once): wait for step 1 deploying or
    // checking, which lasts through its pause, and kill there.
    c.until("step 1 deploying or checking", |s| {
        s.step_index == Some(0) && matches!(s.phase, Some(Phase::Deploying | Phase::HealthChecking))
    })
    .await;
    c.kill_and_restart("step 1").await;
    c.until("step 1 health checking", |s| {
        s.step_index == Some(0) && s.phase == Some(Phase::HealthChecking)
    })
    .await;
    c.kill_and_restart("health checking").await;
    c.until("step 1 pausing", |s| {
        s.step_index == Some(0) && s.pause_start_time.is_some()
    })
    .await;
    c.kill_and_restart("mid-pause").await;
    // What was applied before the kill is not applied again: the restarted process's first reconcile
    // of the app, still within the pause, writes no Deployment.
    wait_until("the restarted bosun's first reconcile", || async {
        let n = c.metric(
            "bosun_reconciles_total",
            &[("controller", "managedapplication")],
        )?;
        (n >= 1.0).then_some(())
    })
    .await;
    let patches = c
        .metric(
            "bosun_kube_requests_total",
            &[("verb", "patch"), ("resource", "deployments")],
        )
        .expect("metrics");
    let still_pausing = c
        .status()
        .await
        .is_some_and(|s| s.step_index == Some(0) && s.pause_start_time.is_some());
    if still_pausing {
        assert_eq!(
            patches, 0.0,
            "a Deployment was written again after the restart"
        );
    }
    c.until("step 2", |s| s.step_index == Some(1)).await;
    c.kill_and_restart("step 2").await;
    c.until("Healthy at v2-slow", |s| {
        s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some("v2-slow")
    })
    .await;
    c.note_jobs().await;
    let s = c.status().await.expect("status");
    assert_no_step_twice(&s, &c.kills);
    assert!(
        step_paused_secs(&s, 0) >= 6,
        "the pause was neither skipped nor cut by the kill: {:#?}",
        s.history
    );

    // v3: unhealthy: rolled back, its down-migration runs (6 s), Bosun writes the rollback to git.
    // The note's push is refused until the test lets it through, so that Bosun can be killed between
    // the rollback commit and the note.
    gitserver::shared().protect(&c.repo.name, "refs/notes/bosun");
    let broken = c.repo.commit(
        "shop: v3-unhealthy",
        &[(FILE, canary_app("v3-unhealthy", port))],
    );
    c.until("Failed at v3-unhealthy", |s| {
        s.phase == Some(Phase::Failed) && s.failed_version.as_deref() == Some("v3-unhealthy")
    })
    .await;
    c.kill_and_restart("rollback").await;
    let down = "shop-migration-down-v3-unhealthy";
    wait_until("the down-migration running", || async {
        job_running(&c.ns, down).await.then_some(())
    })
    .await;
    c.kill_and_restart("down-migration").await;
    wait_until("the rollback commit on main", || async {
        (c.repo.rollback_commits() == 1).then_some(())
    })
    .await;
    assert_eq!(c.repo.note_of(&broken), None, "the note waits (refused)");
    c.kill_and_restart("between the rollback commit and the note")
        .await;
    gitserver::shared().unprotect(&c.repo.name);
    let note = wait_until("the note on the failed commit", || async {
        c.repo.note_of(&broken)
    })
    .await;
    c.until("Healthy at v2-slow again (the rollback commit)", |s| {
        s.phase == Some(Phase::Healthy) && s.target_version.as_deref() == Some("v2-slow")
    })
    .await;
    c.note_jobs().await;

    // One rollback commit, one note with one section for the app, one Job per migration.
    assert_eq!(c.repo.rollback_commits(), 1, "log: {}", c.log());
    assert_eq!(
        note.lines().filter(|l| l.starts_with("bosun ")).count(),
        1,
        "one section for the app: {note}"
    );
    assert!(note.contains("rolled back to v2-slow"), "{note}");
    // The up Job of v3 was deleted when its down-migration ran (so that v3, should it come again,
    // migrates afresh); every other Job is the one first made.
    assert_eq!(
        job_names(&c.ns).await,
        [
            "shop-migration-down-v3-unhealthy",
            "shop-migration-v1",
            "shop-migration-v2-slow",
        ],
        "kills at {:?}",
        c.kills
    );
    let s = c.status().await.expect("status");
    assert!(
        s.conditions.iter().any(|c| c.type_ == "RolledBack"),
        "the rollback is still told: {s:#?}"
    );
}

#[tokio::test]
async fn killed_after_a_blue_green_switch_bosun_keeps_the_switch_and_ends_it_once() {
    let mut c = Crashing::new("crash-bg").await;
    let port = c.health.port;
    c.repo
        .commit("shop: v1", &[(FILE, blue_green_app("v1", port))]);
    c.until("Healthy at v1", |s| {
        s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some("v1")
    })
    .await;
    c.repo
        .commit("shop: v2", &[(FILE, blue_green_app("v2", port))]);
    c.until("switched to v2", |s| {
        s.step_index == Some(1) && s.phase == Some(Phase::Deploying)
    })
    .await;
    c.kill_and_restart("blue-green after the switch").await;
    c.until("Healthy at v2", |s| {
        s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some("v2")
    })
    .await;
    let s = c.status().await.expect("status");
    assert_no_step_twice(&s, &c.kills);
    let switches = s
        .history
        .iter()
        .filter(|h| h.message.starts_with("switched the active Service"))
        .count();
    assert_eq!(switches, 1, "{:#?}", s.history);
    let ended = s
        .history
        .iter()
        .filter(|h| h.message.starts_with("scaling down"))
        .count();
    assert_eq!(ended, 1, "{:#?}", s.history);
}
