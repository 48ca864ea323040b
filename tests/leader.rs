//! High availability: two `bosun run` processes with `--leader-elect` against the real test cluster.
//! Exactly one acts; when the leader is killed (SIGKILL) or frozen past its lease (SIGSTOP) in the middle
//! of a canary, the standby takes over and finishes the upgrade from status, with no second migration
//! Job, and the frozen leader writes nothing when it wakes up.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bosun_core::model::{ManagedApplication, Phase};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use support::{TestNamespace, holds_for, install_crds, wait_until};

const LEASE_SECS: u64 = 4;

struct Replica {
    identity: String,
    port: u16,
    child: Child,
    log: std::path::PathBuf,
}

impl Replica {
    fn start(identity: &str, dir: &Path, ns: &str, logs: &Path) -> Replica {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("a free port")
            .local_addr()
            .expect("its address")
            .port();
        let log = logs.join(format!("{identity}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_bosun"))
            .args(["run", "--dir"])
            .arg(dir)
            .args(["--namespace", ns, "--engine-namespace", ns])
            .args([
                "--leader-elect",
                "--lease-namespace",
                ns,
                "--identity",
                identity,
            ])
            .args(["--lease-duration", &LEASE_SECS.to_string()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env(
                "KUBECONFIG",
                std::env::var("BOSUN_CLUSTER_KUBECONFIG").expect("test cluster"),
            )
            .stderr(std::fs::File::create(&log).expect("log file"))
            .stdout(Stdio::null())
            .spawn()
            .expect("bosun starts");
        Replica {
            identity: identity.into(),
            port,
            child,
            log,
        }
    }

    fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{sig}");
    }

    fn metric(&self, name: &str) -> Option<f64> {
        let body = http_get(self.port, "/metrics")?;
        body.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn app_yaml(version: &str) -> String {
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

async fn holder(ns: &TestNamespace) -> Option<String> {
    ns.api::<Lease>()
        .get_opt("bosun")
        .await
        .ok()??
        .spec?
        .holder_identity
}

async fn phase_is(ns: &TestNamespace, phase: Phase, version: &str) -> ManagedApplication {
    wait_until(&format!("phase {phase} at {version}"), || async {
        let app = ns.api::<ManagedApplication>().get("shop").await.ok()?;
        let s = app.status.as_ref()?;
        (s.phase == Some(phase) && s.target_version.as_deref() == Some(version)).then_some(app)
    })
    .await
}

/// Brings the app to a canary step waiting for promotion, under replica `a` as the leader.
async fn canary_waiting_under_a(
    ns: &TestNamespace,
    dir: &Path,
    logs: &Path,
) -> (Replica, Replica, String) {
    std::fs::write(dir.join("shop.yaml"), app_yaml("v1")).expect("write app");
    let a = Replica::start("a", dir, &ns.name, logs);
    wait_until("a holds the lease", || async {
        (holder(ns).await.as_deref() == Some("a")).then_some(())
    })
    .await;
    let b = Replica::start("b", dir, &ns.name, logs);
    phase_is(ns, Phase::Healthy, "v1").await;
    wait_until("b serves metrics", || async { b.metric("bosun_leader") }).await;
    assert_eq!(b.metric("bosun_leader"), Some(0.0), "b is a standby");
    assert_eq!(a.metric("bosun_leader"), Some(1.0), "a leads");

    std::fs::write(dir.join("shop.yaml"), app_yaml("v2")).expect("write app");
    wait_until("the canary step waits for promotion", || async {
        let app = ns.api::<ManagedApplication>().get("shop").await.ok()?;
        let s = app.status?;
        (s.target_version.as_deref() == Some("v2")
            && s.step_index == Some(0)
            && s.phase == Some(Phase::HealthChecking))
        .then_some(())
    })
    .await;
    let job_uid = ns
        .api::<Job>()
        .get("shop-migration-v2")
        .await
        .expect("the migration Job")
        .metadata
        .uid
        .expect("uid");
    (a, b, job_uid)
}

async fn promote_and_finish(ns: &TestNamespace, job_uid: &str) {
    ns.api::<ManagedApplication>()
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"bosun.dev/promote-step": "0"}}})),
        )
        .await
        .expect("promote");
    phase_is(ns, Phase::Healthy, "v2").await;
    let jobs = ns
        .api::<Job>()
        .list(&ListParams::default().labels("type=migration"))
        .await
        .expect("jobs");
    let names: Vec<_> = jobs.items.iter().map(|j| j.metadata.name.clone()).collect();
    assert_eq!(
        names
            .iter()
            .filter(|n| n.as_deref() == Some("shop-migration-v2"))
            .count(),
        1,
        "{names:?}"
    );
    let job = jobs
        .items
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some("shop-migration-v2"))
        .expect("v2 job");
    assert_eq!(
        job.metadata.uid.as_deref(),
        Some(job_uid),
        "the same Job, not a second run"
    );
}

async fn setup(prefix: &str) -> (TestNamespace, tempfile::TempDir, tempfile::TempDir) {
    let ns = TestNamespace::new(prefix).await;
    install_crds(&ns.client).await;
    (
        ns,
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("logs"),
    )
}

#[tokio::test]
async fn a_standby_finishes_a_canary_when_the_leader_is_killed() {
    let (ns, dir, logs) = setup("ha-kill").await;
    let (a, b, job_uid) = canary_waiting_under_a(&ns, dir.path(), logs.path()).await;
    holds_for(
        "b stays a standby while a renews",
        Duration::from_secs(LEASE_SECS + 2),
        || async { holder(&ns).await.as_deref() == Some("a") },
    )
    .await;

    a.signal("KILL");
    wait_until("b takes the lease", || async {
        (holder(&ns).await.as_deref() == Some("b")).then_some(())
    })
    .await;
    promote_and_finish(&ns, &job_uid).await;
    assert_eq!(b.metric("bosun_leader"), Some(1.0));
    assert!(!b.log().contains("forbidden"), "{}", b.log());
}

#[tokio::test]
async fn a_leader_frozen_past_its_lease_writes_nothing_when_it_wakes() {
    let (ns, dir, logs) = setup("ha-stop").await;
    let (mut a, b, job_uid) = canary_waiting_under_a(&ns, dir.path(), logs.path()).await;

    a.signal("STOP");
    wait_until("b takes the lease", || async {
        (holder(&ns).await.as_deref() == Some("b")).then_some(())
    })
    .await;
    promote_and_finish(&ns, &job_uid).await;

    a.signal("CONT");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exited = loop {
        if let Some(status) = a.child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the old leader did not exit"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(!exited.success(), "it exits with an error");
    let log = a.log();
    assert!(log.contains("leadership lost"), "{log}");
    assert_eq!(holder(&ns).await.as_deref(), Some("b"));
    assert_eq!(b.identity, "b");
    // The app is still as b left it: a did not fight over it.
    holds_for(
        "the app stays Healthy at v2",
        Duration::from_secs(3),
        || async {
            ns.api::<ManagedApplication>()
                .get("shop")
                .await
                .ok()
                .and_then(|app| app.status)
                .is_some_and(|s| s.phase == Some(Phase::Healthy))
        },
    )
    .await;
}
