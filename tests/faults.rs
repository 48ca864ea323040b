//! Faults, on the real parts: two `bosun run --leader-elect` replicas carry out an upgrade from a
//! repository on the real git server, on a Kubernetes control plane of the test's own (`scripts/cluster
//! up`, never the shared test cluster), and the test takes its API server away for 30 s (during a canary
//! pause, a migration, a rollback) or restarts its etcd mid-upgrade.
//!
//! Each time: the leader stops leading, and so writing, once it can no longer renew its lease; some
//! replica leads again within the lease duration (plus room for two busy cores) after the API is back;
//! a replica that exited is started again, as Kubernetes restarts a pod, and stands by; and the upgrade
//! ends as if nothing had happened: no canary step skipped or done twice (`status.history`), one
//! migration Job per revision (the same Job throughout), one rollback commit.
//!
//! The tests run one at a time: each brings up a control plane of its own (about 10 s), and two cores
//! are enough for one control plane and its two replicas, not for four.

mod support;

use std::time::{Duration, Instant};

use bosun_core::model::{ManagedApplicationStatus, Phase};
use support::gitserver::{self, TestRepo};
use support::health::HealthServer;
use support::private_cluster::PrivateCluster;
use support::process::{bosun_run_configured, write_git_password};
use support::replica::{Replica, leader_elect_args, lease_holder};
use support::upgrade::{
    APP_FILE, JobLedger, Timing, assert_every_step_taken, assert_no_step_twice, canary_app,
    job_names, job_running, step_paused_secs,
};
use support::{
    TestNamespace, holds_for, repo_scenario_in, until_status_within, wait_explained, wait_up_to,
};

/// The replicas' lease.
const LEASE: Duration = Duration::from_secs(6);
/// How long the API server (or etcd) stays down.
const OUTAGE: Duration = Duration::from_secs(30);
/// Room for two busy cores, on top of the lease, for a replica to lead again once the API is back.
const SLACK: Duration = Duration::from_secs(10);
/// How the app's upgrade is timed, its first pause apart. The cluster takes a while to recover from
/// the fault, and the app must outlast that, as its health check and progress deadline should in
/// production: the controller-manager acts on Deployments and Jobs again only when its watches, which
/// backed off while the API server was down, are back (a Job's status was seen to lag 90 s); and when
/// it missed a node's lease for its grace period it marks the node's pods not ready until their
/// "kubelet" (kwok here, also backing off) reports them again (seen: 25 s). So: pods ready within
/// 3 min, not ready for at most 90 s (30 rounds, 3 s apart). The 20 s and 2 s of `Timing::QUICK`
/// would fail the upgrade for the cluster's sake.
fn timing(first_pause: u64) -> Timing {
    Timing {
        first_pause,
        progress_deadline: 180,
        check_period: 3,
        failure_threshold: 30,
    }
}
/// How long an upgrade may take, the fault included.
const UPGRADE: Duration = Duration::from_secs(300);

/// One fault test at a time (see the module's documentation).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A private cluster, the app's repository and health server, and the replicas that run Bosun on them.
/// Dropped in this order: the replicas first, the cluster last.
struct Faulty {
    /// The replicas, each with the directory that holds its git password and cache (kept across
    /// restarts).
    replicas: Vec<(Replica, tempfile::TempDir)>,
    health: HealthServer,
    repo: TestRepo,
    ns: TestNamespace,
    /// The faults so far, for failure messages.
    faults: Vec<String>,
    jobs: JobLedger,
    /// When this test's turn came (see [`ONE_AT_A_TIME`]).
    began: Instant,
    cluster: PrivateCluster,
    _one_at_a_time: tokio::sync::MutexGuard<'static, ()>,
}

impl Faulty {
    /// A private cluster with Bosun's CRDs, a repository holding `shop` at v1, and two replicas: `a`
    /// leading, `b` standing by; `shop` Healthy at v1.
    async fn new(prefix: &str) -> Faulty {
        let one_at_a_time = ONE_AT_A_TIME.lock().await;
        let began = Instant::now();
        let cluster = PrivateCluster::up();
        let ns = TestNamespace::in_cluster(&cluster.kubeconfig, prefix).await;
        let (ns, repo, health, dir) = repo_scenario_in(ns).await;
        let mut f = Faulty {
            replicas: Vec::new(),
            health,
            repo,
            ns,
            faults: Vec::new(),
            jobs: JobLedger::default(),
            began,
            cluster,
            _one_at_a_time: one_at_a_time,
        };
        f.commit("v1", 3);
        let a = f.replica("a", dir);
        f.replicas.push(a);
        wait_up_to(LEASE + SLACK, "a holds the lease", || async {
            (lease_holder(&f.ns).await.as_deref() == Some("a")).then_some(())
        })
        .await;
        let dir = tempfile::tempdir().expect("a directory for b");
        write_git_password(dir.path());
        let b = f.replica("b", dir);
        f.replicas.push(b);
        f.until("Healthy at v1", |s| f.healthy_at(s, "v1")).await;
        f
    }

    /// Starts replica `identity` on the private cluster, its git password and cache in `dir`.
    fn replica(&self, identity: &str, dir: tempfile::TempDir) -> (Replica, tempfile::TempDir) {
        let replica = Replica::start(identity, |listen| {
            bosun_run_configured(
                gitserver::shared(),
                &self.repo.http_url,
                &self.ns.name,
                dir.path(),
                listen,
                |c| {
                    c.env("KUBECONFIG", &self.cluster.kubeconfig)
                        .args(leader_elect_args(identity, &self.ns.name, LEASE));
                },
            )
        });
        (replica, dir)
    }

    /// Commits `shop` at `version`, its first canary step pausing `first_pause` seconds.
    fn commit(&self, version: &str, first_pause: u64) -> String {
        let app = canary_app(version, self.health.port, &timing(first_pause));
        self.repo
            .commit(&format!("shop: {version}"), &[(APP_FILE, app)])
    }

    fn healthy_at(&self, s: &ManagedApplicationStatus, version: &str) -> bool {
        s.phase == Some(Phase::Healthy)
            && s.current_version.as_deref() == Some(version)
            && s.target_version.as_deref() == Some(version)
    }

    /// Every replica's log, for failure messages.
    fn logs(&self) -> String {
        self.replicas
            .iter()
            .map(|(r, _)| format!("--- replica {}:\n{}", r.identity, r.process.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn until(
        &self,
        what: &str,
        ok: impl Fn(&ManagedApplicationStatus) -> bool,
    ) -> ManagedApplicationStatus {
        until_status_within(UPGRADE, &self.ns, "shop", what, || self.logs(), ok).await
    }

    /// The index of the replica that holds the lease (and says so).
    async fn leader(&self) -> usize {
        let holder = wait_up_to(LEASE + SLACK, "a lease holder", || async {
            lease_holder(&self.ns).await
        })
        .await;
        let i = self
            .replicas
            .iter()
            .position(|(r, _)| r.identity == holder)
            .unwrap_or_else(|| panic!("the lease holder {holder} is none of the replicas"));
        wait_up_to(LEASE + SLACK, "the holder says it leads", || async {
            self.replicas[i].0.leads().then_some(())
        })
        .await;
        i
    }

    /// Stops `component` of the cluster for [`OUTAGE`], then starts it again. Asserts that the leader
    /// stops leading while it is down, that no replica leads then, and that some replica leads again
    /// within the lease (plus [`SLACK`]) once the API serves again; then starts a replica that exited
    /// again, and sees it stand by.
    async fn outage(&mut self, component: &str, during: &str) {
        self.jobs.note(&self.ns, &self.faults).await;
        let leader = self.leader().await;
        let identity = self.replicas[leader].0.identity.clone();
        self.faults.push(format!("{component} down {during}"));
        let began = Instant::now();
        let (_, stopped) = tokio::join!(
            self.cluster.stop(component),
            stops_leading(&mut self.replicas[leader].0, began, component)
        );
        tokio::time::sleep_until((began + OUTAGE).into()).await;
        for (r, _) in &self.replicas {
            assert!(
                !r.leads(),
                "{} leads while {component} is down:\n{}",
                r.identity,
                self.logs()
            );
        }
        let starting = Instant::now();
        self.cluster.start(component).await;
        // The API is back when it serves a read again: an API server takes a while to reconnect to
        // a restarted etcd (its client backs off while etcd is down).
        wait_explained(
            UPGRADE,
            &format!("the API serving again after {component} came back"),
            || self.logs(),
            || async {
                let read = tokio::time::timeout(Duration::from_secs(2), lease_holder(&self.ns));
                read.await.ok().flatten().map(|_| ())
            },
        )
        .await;
        let back = Instant::now();

        wait_explained(
            LEASE + SLACK,
            &format!("a replica leading again after {component} came back"),
            || self.logs(),
            || async { self.replicas.iter().any(|(r, _)| r.leads()).then_some(()) },
        )
        .await;
        let resumed = back.elapsed();
        let new_leader = self.leader().await;

        // A replica that exited is started again, as Kubernetes restarts a pod: it stands by.
        let mut restarted = Vec::new();
        for i in 0..self.replicas.len() {
            if self.replicas[i].0.process.exited().is_none() {
                continue;
            }
            let (old, dir) = self.replicas.remove(i);
            let log = old.process.log();
            assert!(
                log.contains("leadership lost"),
                "{} exited without saying it lost the lease:\n{log}",
                old.identity
            );
            let name = old.identity.clone();
            drop(old);
            let again = self.replica(&name, dir);
            self.replicas.insert(i, again);
            restarted.push(name);
        }
        for name in &restarted {
            let (r, _) = self
                .replicas
                .iter()
                .find(|(r, _)| &r.identity == name)
                .expect("restarted");
            wait_up_to(
                LEASE + SLACK,
                "the restarted replica standing by",
                || async { (r.metric("bosun_leader") == Some(0.0)).then_some(()) },
            )
            .await;
        }
        eprintln!(
            "{component} down {during}: {identity} stopped leading {stopped:.1?} after the stop \
             began; the API served again {:.1?} after {component}'s start began; {} led \
             {resumed:.1?} after that; restarted as standbys: {restarted:?}",
            back - starting,
            self.replicas[new_leader].0.identity
        );
    }

    /// The upgrade to v2 ends Healthy, every canary step taken once, the first one's pause of
    /// `first_pause` seconds neither skipped nor cut, one migration Job per revision.
    async fn v2_ends_intact(&mut self, first_pause: i64) {
        let s = self
            .until("Healthy at v2", |s| self.healthy_at(s, "v2"))
            .await;
        assert_every_step_taken(&s, 2);
        assert!(
            step_paused_secs(&s, 0) >= first_pause,
            "the pause was neither skipped nor cut by {:?}: {:#?}",
            self.faults,
            s.history
        );
        self.assert_upgrade_intact(&s, &["shop-migration-v1", "shop-migration-v2"])
            .await;
    }

    /// After the upgrade: no transition told twice, no Job made twice, and exactly the Jobs `jobs`.
    /// Says how long the test took, its cluster's start included.
    async fn assert_upgrade_intact(&mut self, s: &ManagedApplicationStatus, jobs: &[&str]) {
        assert_no_step_twice(s, &self.faults);
        self.jobs.note(&self.ns, &self.faults).await;
        assert_eq!(job_names(&self.ns).await, jobs, "after {:?}", self.faults);
        eprintln!("{:?}: took {:.0?}", self.faults, self.began.elapsed());
    }
}

/// Waits until `leader` stops leading (it exits, or says it no longer leads) and returns when that was,
/// since `began`; fails after [`OUTAGE`].
async fn stops_leading(leader: &mut Replica, began: Instant, component: &str) -> Duration {
    loop {
        if leader.process.exited().is_some() || leader.metric("bosun_leader") == Some(0.0) {
            return began.elapsed();
        }
        assert!(
            began.elapsed() < OUTAGE,
            "{} still leads {OUTAGE:?} into the outage ({component} down):\n{}",
            leader.identity,
            leader.process.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_api_server_down_30s_in_a_canary_pause_skips_and_repeats_no_step() {
    let mut f = Faulty::new("fault-pause").await;
    f.commit("v2", 60);
    f.until("step 1 pausing at v2", |s| {
        s.target_version.as_deref() == Some("v2")
            && s.step_index == Some(0)
            && s.pause_start_time.is_some()
    })
    .await;
    f.outage("kube-apiserver", "in the pause of step 1").await;
    f.v2_ends_intact(60).await;
}

#[tokio::test]
async fn the_api_server_down_30s_during_a_migration_runs_it_once() {
    let mut f = Faulty::new("fault-migration").await;
    // Its migration runs 6 s (`-slow`).
    f.commit("v2-slow", 3);
    let job = "shop-migration-v2-slow";
    wait_up_to(UPGRADE, "the migration running", || async {
        let migrating = support::app_status(&f.ns, "shop").await.phase == Some(Phase::Migrating);
        (migrating && job_running(&f.ns, job).await).then_some(())
    })
    .await;
    f.outage("kube-apiserver", "during the migration").await;
    let s = f
        .until("Healthy at v2-slow", |s| f.healthy_at(s, "v2-slow"))
        .await;

    assert_every_step_taken(&s, 2);
    f.assert_upgrade_intact(&s, &["shop-migration-v1", "shop-migration-v2-slow"])
        .await;
}

#[tokio::test]
async fn the_api_server_down_30s_during_a_rollback_leaves_one_rollback_commit() {
    let mut f = Faulty::new("fault-rollback").await;
    // Its pods answer the health checks with 500: the first step fails and the upgrade is rolled
    // back, its down-migration (6 s) run, and git gets a rollback commit.
    let broken = f.commit("v2-unhealthy", 3);
    f.until("Failed at v2-unhealthy", |s| {
        s.phase == Some(Phase::Failed) && s.failed_version.as_deref() == Some("v2-unhealthy")
    })
    .await;
    f.outage("kube-apiserver", "during the rollback").await;
    let s = f
        .until("Healthy at v1 again (the rollback commit)", |s| {
            f.healthy_at(s, "v1")
        })
        .await;
    let note = wait_up_to(UPGRADE, "the note on the failed commit", || async {
        f.repo.note_of(&broken)
    })
    .await;

    holds_for(
        "exactly one rollback commit",
        Duration::from_secs(10),
        || async { f.repo.rollback_commits() == 1 },
    )
    .await;
    assert_eq!(
        note.lines().filter(|l| l.starts_with("bosun ")).count(),
        1,
        "one section for the app: {note}"
    );
    assert!(note.contains("rolled back to v1"), "{note}");
    // The up Job of v2-unhealthy was deleted when its down-migration ran.
    f.assert_upgrade_intact(
        &s,
        &["shop-migration-down-v2-unhealthy", "shop-migration-v1"],
    )
    .await;
}

#[tokio::test]
async fn etcd_restarted_mid_upgrade_skips_and_repeats_no_step() {
    let mut f = Faulty::new("fault-etcd").await;
    f.commit("v2", 6);
    f.until("step 1 checked at v2", |s| {
        s.target_version.as_deref() == Some("v2")
            && s.step_index == Some(0)
            && s.phase == Some(Phase::HealthChecking)
    })
    .await;
    f.outage("etcd", "while step 1 is checked").await;
    f.v2_ends_intact(6).await;
}
