//! Test support shared by the integration tests.
//!
//! Tests that touch Kubernetes run against the real test cluster of `scripts/cluster` (`scripts/test`
//! brings it up and exports `BOSUN_CLUSTER_KUBECONFIG`). Each test gets its own namespace, deleted when
//! the [`TestNamespace`] is dropped, so tests run in parallel without seeing each other. A test that
//! breaks the cluster itself (stops its API server, say) gets a cluster of its own:
//! [`private_cluster::PrivateCluster`].
#![allow(dead_code)] // each test binary uses its own part of this module

pub mod browser;
pub mod crds;
pub mod deploy;
pub mod forge;
pub mod gitea;
pub mod gitserver;
pub mod health;
pub mod private_cluster;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod replica;
pub mod upgrade;
pub mod volume;
pub mod webhook;

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

/// How long a test waits for the cluster to reach a state before it fails.
pub const WAIT: Duration = Duration::from_secs(60);

fn kubeconfig_path(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: these tests need the real test cluster. Run `scripts/test`, or \
             `scripts/cluster up && eval \"$(scripts/cluster env)\"` before `cargo test`."
        )
    })
}

async fn client_from(var: &str) -> Client {
    client_of(Path::new(&kubeconfig_path(var))).await
}

/// A client as the kubeconfig at `path` says.
pub async fn client_of(path: &Path) -> Client {
    let shown = path.display();
    let kubeconfig = Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("reading {shown}: {e}"));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {shown}: {e}"));
    Client::try_from(config).expect("a client from the test kubeconfig")
}

/// A client acting as the cluster's administrator.
pub async fn admin_client() -> Client {
    client_from("BOSUN_CLUSTER_KUBECONFIG").await
}

/// A client acting as `bosun-restricted`, a user with no permissions until a test grants some.
pub async fn restricted_client() -> Client {
    client_from("BOSUN_CLUSTER_RESTRICTED_KUBECONFIG").await
}

/// A namespace of the test's own, deleted on drop (in the shared test cluster).
pub struct TestNamespace {
    pub client: Client,
    pub name: String,
    /// It is in the shared test cluster, not in a cluster that goes with its test.
    shared: bool,
}

impl TestNamespace {
    /// Creates `<prefix>-<random>` in the shared test cluster and waits until its `default`
    /// ServiceAccount exists (pods need it).
    pub async fn new(prefix: &str) -> TestNamespace {
        TestNamespace::create(admin_client().await, true, prefix).await
    }

    /// [`TestNamespace::new`] in the test's own cluster, whose admin kubeconfig is at `kubeconfig`
    /// ([`private_cluster::PrivateCluster`]). Not deleted on drop: it goes with its cluster (which may
    /// be broken by then: its etcd stopped, say).
    pub async fn in_cluster(kubeconfig: &Path, prefix: &str) -> TestNamespace {
        TestNamespace::create(client_of(kubeconfig).await, false, prefix).await
    }

    async fn create(client: Client, shared: bool, prefix: &str) -> TestNamespace {
        let name = format!("{prefix}-{:08x}", unique_suffix());
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"bosun.dev/test": "true"}}
        }))
        .expect("namespace object");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        wait_until(&format!("ServiceAccount default in {name}"), || async {
            sas.get_opt("default").await.ok().flatten()
        })
        .await;
        TestNamespace {
            client,
            name,
            shared,
        }
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        if !self.shared {
            return;
        }
        let name = self.name.clone();
        cleanup(move |admin| async move {
            let _ = Api::<Namespace>::all(admin)
                .delete(&name, &DeleteParams::background())
                .await;
        });
    }
}

/// A number for a name that no other test of this run, nor of a run before on the same cluster or
/// forge, is likely to have: the clock's nanoseconds, the process id and a counter, mixed.
pub fn unique_suffix() -> u32 {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time after 1970")
        .subsec_nanos();
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    nanos ^ std::process::id().rotate_left(16) ^ n.wrapping_mul(0x9E37_79B9)
}

/// Runs a cleanup from a `Drop`, which cannot await: on a thread and runtime of its own, with an
/// admin client of its own (a client is bound to the runtime that made it, which is blocked here).
pub fn cleanup<F, Fut>(work: F)
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for cleanup");
        rt.block_on(async { work(admin_client().await).await });
    })
    .join();
}

/// Installs (server-side applies) Bosun's CRDs and waits until the API server serves them.
pub async fn install_crds(client: &Client) {
    for crd in bosun_core::model::crds() {
        let crd = serde_json::to_value(&crd).expect("a CRD serializes");
        // Shared by every test: kept, never deleted.
        crds::install(client, &crd).await.keep();
    }
}

/// Polls `probe` until it returns `Some`, failing the test with `what` after [`WAIT`].
pub async fn wait_until<T, F, Fut>(what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_up_to(WAIT, what, probe).await
}

/// [`wait_until`], failing after `limit` instead.
pub async fn wait_up_to<T, F, Fut>(limit: Duration, what: &str, probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_explained(limit, what, String::new, probe).await
}

/// [`wait_up_to`], its failure followed by what `explain` says then (processes' logs, say).
pub async fn wait_explained<T, F, Fut>(
    limit: Duration,
    what: &str,
    explain: impl Fn() -> String,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}\n{}",
            explain()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The status of the ManagedApplication `app` of `ns` (empty while it has none, or does not exist).
pub async fn app_status(
    ns: &TestNamespace,
    app: &str,
) -> bosun_core::model::ManagedApplicationStatus {
    ns.api::<bosun_core::model::ManagedApplication>()
        .get_opt(app)
        .await
        .ok()
        .flatten()
        .and_then(|a| a.status)
        .unwrap_or_default()
}

/// Waits until the status of `app` satisfies `ok` and returns it; on timeout, fails with the status
/// and `log()` (Bosun's log, say).
pub async fn until_status(
    ns: &TestNamespace,
    app: &str,
    what: &str,
    log: impl Fn() -> String,
    ok: impl Fn(&bosun_core::model::ManagedApplicationStatus) -> bool,
) -> bosun_core::model::ManagedApplicationStatus {
    until_status_within(WAIT, ns, app, what, log, ok).await
}

/// [`until_status`], failing after `limit` instead.
pub async fn until_status_within(
    limit: Duration,
    ns: &TestNamespace,
    app: &str,
    what: &str,
    log: impl Fn() -> String,
    ok: impl Fn(&bosun_core::model::ManagedApplicationStatus) -> bool,
) -> bosun_core::model::ManagedApplicationStatus {
    let deadline = Instant::now() + limit;
    loop {
        let st = app_status(ns, app).await;
        if ok(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {app}: {what}: {st:#?}\nbosun's log:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Keeps checking that `probe` holds for `duration`; fails the test the moment it does not.
pub async fn holds_for<F, Fut>(what: &str, duration: Duration, mut probe: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        assert!(probe().await, "{what} stopped holding");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What an end-to-end test of `bosun run` starts from: a namespace with the CRDs, a health server,
/// a repository on the test git server named like the namespace, and a directory holding the git
/// password (for [`process::bosun_run`]).
pub async fn repo_scenario(
    prefix: &str,
) -> (
    TestNamespace,
    gitserver::TestRepo,
    health::HealthServer,
    tempfile::TempDir,
) {
    repo_scenario_in(TestNamespace::new(prefix).await).await
}

/// [`repo_scenario`] in the namespace `ns` (of any cluster).
pub async fn repo_scenario_in(
    ns: TestNamespace,
) -> (
    TestNamespace,
    gitserver::TestRepo,
    health::HealthServer,
    tempfile::TempDir,
) {
    install_crds(&ns.client).await;
    let health = health::HealthServer::start(&ns).await;
    let repo = gitserver::shared().create_repo(&ns.name, &[("README.md", "apps\n")]);
    let dir = tempfile::tempdir().expect("a directory for bosun");
    process::write_git_password(dir.path());
    (ns, repo, health, dir)
}
