//! Ordered multi-service upgrades through the real `bosun run`, the test git server and cluster
//! (issue [H]): one commit bumps a chain `db-api ← orders ← frontend` (each depends on the one
//! before); they go out in dependency order; the middle one fails its health checks; the first is
//! rolled back with it, the third never starts, and one commit sets git back for all three. Bosun is killed
//! while `orders` waits for `db-api`, and the restarted process goes on in order.

mod support;

use std::time::Duration;

use bosun_core::model::{ManagedApplicationStatus, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use support::gitserver::TestRepo;
use support::health::HealthServer;
use support::process::{Process, bosun_run};
use support::{TestNamespace, holds_for, repo_scenario, wait_until};

/// One app of the chain: `depends` is the app it depends on.
fn app(name: &str, version: &str, depends: Option<&str>, health_port: u16) -> String {
    let depends = depends.map_or_else(String::new, |d| format!("  dependsOn:\n    - name: {d}\n"));
    format!(
        "apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: {name}
spec:
  version: \"{version}\"
  replicas: 2
{depends}  upgradeStrategy:
    type: Canary
    healthCheck:
      httpGet: {{path: /healthz, port: {health_port}}}
      initialDelaySeconds: 1
      periodSeconds: 1
      failureThreshold: 2
    canary:
      steps:
        - weight: 50
          pause: 4
        - weight: 100
"
    )
}

struct Chain {
    ns: TestNamespace,
    repo: TestRepo,
    health: HealthServer,
    dir: tempfile::TempDir,
    bosun: Option<Process>,
}

impl Chain {
    async fn new() -> Chain {
        let (ns, repo, health, dir) = repo_scenario("groups").await;
        let mut c = Chain {
            ns,
            repo,
            health,
            dir,
            bosun: None,
        };
        c.start();
        c
    }

    fn start(&mut self) {
        let (ns, repo, dir) = (&self.ns.name, &self.repo.http_url, self.dir.path());
        self.bosun = Some(bosun_run(repo, ns, dir, "127.0.0.1:0"));
    }

    fn kill_and_restart(&mut self) {
        let p = self.bosun.take().expect("bosun runs");
        p.signal("KILL");
        drop(p);
        self.start();
    }

    /// Commits the three apps at these versions, in one commit.
    fn commit(&self, message: &str, versions: [&str; 3]) -> String {
        let port = self.health.port;
        self.repo.commit(
            message,
            &[
                ("apps/db-api.yaml", app("db-api", versions[0], None, port)),
                (
                    "apps/orders.yaml",
                    app("orders", versions[1], Some("db-api"), port),
                ),
                (
                    "apps/frontend.yaml",
                    app("frontend", versions[2], Some("orders"), port),
                ),
            ],
        )
    }

    async fn status(&self, app: &str) -> ManagedApplicationStatus {
        support::app_status(&self.ns, app).await
    }

    /// Waits until `app`'s status satisfies `ok`; on timeout, fails with every app's status.
    async fn until(&self, app: &str, what: &str, ok: impl Fn(&ManagedApplicationStatus) -> bool) {
        let deadline = std::time::Instant::now() + support::WAIT;
        while !ok(&self.status(app).await) {
            if std::time::Instant::now() > deadline {
                let mut all = String::new();
                for a in ["db-api", "orders", "frontend"] {
                    all.push_str(&format!("{a}: {:#?}\n", self.status(a).await));
                }
                panic!(
                    "timed out waiting for {app}: {what}\n{all}\nbosun's log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn image(&self, deployment: &str) -> Option<String> {
        let d = self
            .ns
            .api::<Deployment>()
            .get_opt(deployment)
            .await
            .ok()??;
        d.spec?.template.spec?.containers.first()?.image.clone()
    }

    /// The server's `main`, fetched.
    fn server_main(&self) -> String {
        let bare = self.repo.bare.display().to_string();
        self.repo
            .git(&["fetch", "-q", &bare, "+main:refs/remotes/server/main"]);
        self.repo.git(&["rev-parse", "refs/remotes/server/main"])
    }

    fn file_at_main(&self, path: &str) -> String {
        let tip = self.server_main();
        self.repo.git(&["show", &format!("{tip}:{path}")])
    }

    /// Every Event about the apps, oldest first: (app, reason, note, time).
    async fn events(&self) -> Vec<(String, String, String, k8s_openapi::jiff::Timestamp)> {
        let mut events: Vec<_> = self
            .ns
            .api::<Event>()
            .list(&ListParams::default())
            .await
            .expect("list Events")
            .items
            .into_iter()
            .filter_map(|e| {
                let app = e.regarding.as_ref()?.name.clone()?;
                let time = e.event_time.as_ref().map(|t| t.0)?;
                Some((app, e.reason?, e.note.unwrap_or_default(), time))
            })
            .collect();
        events.sort_by_key(|e| e.3);
        events
    }

    fn log(&self) -> String {
        self.bosun.as_ref().map(Process::log).unwrap_or_default()
    }
}

fn healthy_at(version: &str) -> impl Fn(&ManagedApplicationStatus) -> bool + '_ {
    move |s| s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some(version)
}

#[tokio::test]
async fn a_chain_bumped_in_one_commit_goes_out_in_order_and_rolls_back_together() {
    let mut c = Chain::new().await;
    c.commit("shop: v1", ["v1", "v1", "v1"]);
    for app in ["db-api", "orders", "frontend"] {
        c.until(app, "Healthy at v1", healthy_at("v1")).await;
    }

    // One commit bumps all three; orders' v2 fails its health checks.
    let bump = c.commit(
        "shop: db-api, orders and frontend to v2",
        ["v2", "v2-unhealthy", "v2"],
    );
    c.until("orders", "waiting for db-api", |s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "WaitingForDependencies" && c.message.contains("db-api"))
    })
    .await;
    // Killed while the group is under way: the restarted Bosun goes on in order.
    c.kill_and_restart();

    c.until("orders", "failed and rolled back", |s| {
        s.phase == Some(Phase::Failed) && s.failed_revision.as_deref() == Some(bump.as_str())
    })
    .await;
    c.until("db-api", "rolled back with its group", |s| {
        s.failed_revision.as_deref() == Some(bump.as_str())
    })
    .await;
    c.until("frontend", "failed without starting", |s| {
        s.failed_revision.as_deref() == Some(bump.as_str())
    })
    .await;

    // In order: orders started only once db-api was Healthy at v2 (the Events tell, durably).
    let events = c.events().await;
    let first = |app: &str, reason: &str, words: &str| {
        events
            .iter()
            .find(|(a, r, n, _)| a == app && r == reason && n.contains(words))
            .map(|e| e.3)
    };
    let db_healthy = first("db-api", "Healthy", "v2").expect("db-api was Healthy at v2");
    let orders_started = first("orders", "Deploying", "v2-unhealthy").expect("orders started");
    assert!(
        orders_started >= db_healthy,
        "orders started at {orders_started}, before db-api was healthy at {db_healthy}: {events:#?}"
    );
    assert_eq!(
        first("frontend", "Deploying", "v2"),
        None,
        "frontend never started: {events:#?}"
    );
    let (db, front) = (c.status("db-api").await, c.status("frontend").await);
    let rolled_back = |s: &ManagedApplicationStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "RolledBack")
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    let (reason, message) = rolled_back(&db).expect("db-api says it was rolled back");
    assert_eq!(reason, "GroupRolledBack", "{message}");
    assert!(message.contains("orders"), "{message}");
    let (reason, message) = rolled_back(&front).expect("frontend says why it never started");
    assert_eq!(reason, "GroupRolledBack", "{message}");

    // Git is set back for all three, and the cluster runs v1 everywhere.
    wait_until("git asks for v1 of every app again", || async {
        let all = ["apps/db-api.yaml", "apps/orders.yaml", "apps/frontend.yaml"]
            .iter()
            .all(|f| c.file_at_main(f).contains("version: \"v1\""));
        all.then_some(())
    })
    .await;
    // ... in one commit, with one trailer per app.
    let tip = c.server_main();
    let rollbacks: Vec<String> = c
        .repo
        .git(&["log", "--format=%H", &format!("{bump}..{tip}")])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(rollbacks.len(), 1, "one rollback commit: {rollbacks:?}");
    let message = c.repo.git(&["log", "-1", "--format=%B", &rollbacks[0]]);
    let apps: Vec<&str> = message
        .lines()
        .filter_map(|l| l.strip_prefix("Bosun-App: "))
        .collect();
    let ns = &c.ns.name;
    let mut want = vec![
        format!("{ns}/db-api"),
        format!("{ns}/frontend"),
        format!("{ns}/orders"),
    ];
    let mut got: Vec<String> = apps.iter().map(|a| a.to_string()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{message}");
    assert!(
        message.contains(&format!("Bosun-Rollback-Of: {bump}")),
        "{message}"
    );
    for app in ["db-api", "orders", "frontend"] {
        c.until(app, "Healthy at v1 again", healthy_at("v1")).await;
        assert_eq!(
            c.image(app).await.as_deref(),
            Some(format!("{app}:v1").as_str()),
            "{app} runs v1"
        );
    }
    holds_for(
        "frontend's v2 never ran",
        Duration::from_secs(2),
        || async { c.image("frontend-canary").await.is_none() },
    )
    .await;
    let log = c.log();
    assert!(!log.contains("panicked"), "{log}");
}
