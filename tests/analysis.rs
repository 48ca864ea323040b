//! Metric analysis against a real Prometheus scraping real per-pod metrics (issue [I]). The health
//! server answers each kwok pod's `/metrics` (20 % errors for an image whose tag ends in `-errors`);
//! Prometheus scrapes the pods through file-based service discovery, every second, labelled with
//! their app and role as a user's relabelling would.
//!
//! First the parts: the conditions and placeholders of `bosun_core::analysis` and Bosun's client of
//! the query API judge two pods. Then end to end, through the real `bosun run` and the test git
//! server: a good canary passes its analysed step and an erroring one is rolled back there, in the
//! cluster and in git; a Prometheus stopped mid-step gives inconclusive measurements, then a
//! rollback after the limit; a Bosun killed mid-analysis resumes the count.

mod support;

use std::time::Duration;

use bosun_core::model::{
    AnalysisPhase, AnalysisRun, ManagedApplicationStatus, MeasurementOutcome, Phase,
};
use support::gitserver::TestRepo;
use support::process::{Process, bosun_run_with};
use support::repo_scenario;

use bosun_core::analysis::expr::Condition;
use bosun_core::analysis::{Outcome, Vars, judge, render};
use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use serde_json::json;
use support::health::HealthServer;
use support::prometheus::Prometheus;
use support::{TestNamespace, wait_until};

const TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The error ratio of one role of the app over the last 10 s, as a user would write it.
const ERROR_RATE: &str = r#"sum(rate(http_requests_total{app="{{app}}",role="{{role}}",code="500"}[10s])) / sum(rate(http_requests_total{app="{{app}}",role="{{role}}"}[10s]))"#;

async fn pod(ns: &TestNamespace, name: &str, image: &str, port: u16) -> String {
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "shop"}},
        "spec": {"containers": [{"name": "app", "image": image,
                                 "ports": [{"containerPort": port}]}]},
    }))
    .expect("a pod");
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    wait_until(&format!("{name} has an address"), || async {
        let p = ns.api::<Pod>().get(name).await.ok()?;
        p.status?.pod_ip
    })
    .await
}

fn vars(role: &str) -> Vars<'_> {
    Vars {
        app: "shop",
        namespace: "shop",
        version: "",
        revision: "",
        role,
    }
}

#[tokio::test]
async fn an_erroring_canary_fails_the_error_rate_condition_the_stable_side_passes_and_an_empty_result_is_inconclusive()
 {
    let ns = TestNamespace::new("analysis").await;
    let health = HealthServer::start(&ns).await;
    let port = health.port;
    let stable = pod(&ns, "shop-stable", "shop:v1", port).await;
    let canary = pod(&ns, "shop-canary", "shop:v2-errors", port).await;
    let prometheus = Prometheus::start(&[]);
    prometheus.set_pods(&[
        (
            format!("{stable}:{port}"),
            vec![("app", "shop".into()), ("role", "stable".into())],
        ),
        (
            format!("{canary}:{port}"),
            vec![("app", "shop".into()), ("role", "canary".into())],
        ),
    ]);
    let condition = Condition::parse("result < 0.01").expect("a condition");
    let address = format!("http://127.0.0.1:{}", prometheus.port);
    // Measured as the engine will: Bosun's own client of the query API.
    let measure = |role: &str| {
        let query = render(ERROR_RATE, &vars(role)).expect("a query");
        let address = address.clone();
        async move { bosun::prometheus::query(&address, &query, TIMEOUT).await }
    };
    // Two scrapes of each make a rate.
    let canary_rate = wait_until("the canary's error rate", || async {
        measure("canary").await.ok().filter(|v| v.len() == 1)
    })
    .await;
    assert!(
        (canary_rate[0] - 0.2).abs() < 0.05,
        "the canary reports 20 % errors: {canary_rate:?}"
    );
    assert_eq!(
        judge(Some(&condition), None, Ok(&canary_rate)),
        Outcome::Failed
    );
    let stable_rate = wait_until("the stable side's error rate", || async {
        measure("stable").await.ok().filter(|v| v.len() == 1)
    })
    .await;
    assert_eq!(stable_rate, vec![0.0]);
    assert_eq!(
        judge(Some(&condition), None, Ok(&stable_rate)),
        Outcome::Successful
    );
    // A role no pod has: an empty result, inconclusive, never a pass.
    let none = measure("preview").await.expect("Prometheus answers");
    assert_eq!(none, Vec::<f64>::new());
    assert_eq!(
        judge(Some(&condition), None, Ok(&none)),
        Outcome::Inconclusive
    );
    // A query Prometheus refuses: its own words, an error measurement.
    let refused = bosun::prometheus::query(&address, "sum(rate(x[1m]", TIMEOUT)
        .await
        .expect_err("a parse error");
    assert!(refused.contains("bad_data"), "{refused}");
    // Prometheus gone: an error measurement that says where it looked.
    drop(prometheus);
    let gone = measure("canary").await.expect_err("no Prometheus");
    assert!(gone.contains(&address), "{gone}");
    assert!(matches!(
        judge(Some(&condition), None, Err(gone.as_str())),
        Outcome::Error(_)
    ));
}

// --- end to end, through `bosun run` ------------------------------------------------------------

/// Keeps Prometheus's target list at the namespace's pods, labelled `app` and `role` from theirs,
/// until dropped.
struct Discovery(tokio::task::JoinHandle<()>);

impl Drop for Discovery {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn discover(ns: &TestNamespace, prometheus: std::sync::Arc<Prometheus>, port: u16) -> Discovery {
    let pods = ns.api::<Pod>();
    Discovery(tokio::spawn(async move {
        loop {
            if let Ok(list) = pods.list(&Default::default()).await {
                let targets: Vec<(String, Vec<(&str, String)>)> = list
                    .items
                    .iter()
                    .filter_map(|p| {
                        let ip = p.status.as_ref()?.pod_ip.clone()?;
                        let labels = p.metadata.labels.as_ref()?;
                        let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
                        Some((
                            format!("{ip}:{port}"),
                            vec![("app", label("app")), ("role", label("bosun.dev/role"))],
                        ))
                    })
                    .collect();
                prometheus.set_pods(&targets);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }))
}

/// `shop`, two replicas, canary steps of 50 % (analysed) and 100 %.
fn shop(version: &str, address: &str, count: u32, inconclusive_limit: u32) -> String {
    format!(
        r#"apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: shop
spec:
  version: "{version}"
  replicas: 2
  upgradeStrategy:
    type: Canary
    canary:
      steps:
        - weight: 50
          analysis:
            metrics:
              - name: error-rate
                initialDelay: 5s
                interval: 1s
                count: {count}
                successCondition: result < 0.05
                inconclusiveLimit: {inconclusive_limit}
                provider:
                  prometheus:
                    address: {address}
                    query: '{ERROR_RATE}'
        - weight: 100
"#
    )
}

struct Shop {
    ns: TestNamespace,
    repo: TestRepo,
    _health: HealthServer,
    dir: tempfile::TempDir,
    prometheus: Option<std::sync::Arc<Prometheus>>,
    _discovery: Option<Discovery>,
    bosun: Option<Process>,
}

impl Shop {
    async fn new(prefix: &str) -> Shop {
        let (ns, repo, health, dir) = repo_scenario(prefix).await;
        let prometheus = std::sync::Arc::new(Prometheus::start(&[]));
        let discovery = discover(&ns, prometheus.clone(), health.port);
        let mut s = Shop {
            ns,
            repo,
            _health: health,
            dir,
            prometheus: Some(prometheus),
            _discovery: Some(discovery),
            bosun: None,
        };
        s.start();
        s
    }

    fn address(&self) -> String {
        let p = self.prometheus.as_ref().expect("Prometheus runs");
        format!("http://127.0.0.1:{}", p.port)
    }

    fn start(&mut self) {
        let (ns, repo, dir) = (&self.ns.name, &self.repo.http_url, self.dir.path());
        self.bosun = Some(bosun_run_with(repo, ns, dir, "127.0.0.1:0", &[]));
    }

    fn kill_and_restart(&mut self) {
        let p = self.bosun.take().expect("bosun runs");
        p.signal("KILL");
        drop(p);
        self.start();
    }

    fn commit(&self, message: &str, yaml: String) -> String {
        self.repo.commit(message, &[("apps/shop.yaml", yaml)])
    }

    async fn status(&self) -> ManagedApplicationStatus {
        support::app_status(&self.ns, "shop").await
    }

    /// Waits until the status satisfies `ok`; on timeout, fails with the status and Bosun's log.
    async fn until(
        &self,
        what: &str,
        ok: impl Fn(&ManagedApplicationStatus) -> bool,
    ) -> ManagedApplicationStatus {
        let log = || self.bosun.as_ref().map(Process::log).unwrap_or_default();
        support::until_status(&self.ns, "shop", what, log, ok).await
    }

    async fn healthy_at(&self, version: &str) {
        self.until(&format!("Healthy at {version}"), |s| {
            s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some(version)
        })
        .await;
    }

    /// The server's `main`, fetched.
    fn server_main(&self) -> String {
        let bare = self.repo.bare.display().to_string();
        self.repo
            .git(&["fetch", "-q", &bare, "+main:refs/remotes/server/main"]);
        self.repo.git(&["rev-parse", "refs/remotes/server/main"])
    }
}

fn step_run(st: &ManagedApplicationStatus) -> Option<&AnalysisRun> {
    st.analysis_runs.iter().find(|r| r.scope == "step-1")
}

fn failure(st: &ManagedApplicationStatus) -> String {
    st.history
        .iter()
        .rfind(|h| h.phase == Phase::Failed)
        .map(|h| h.message.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_good_canary_passes_its_analysed_step_and_an_erroring_one_is_rolled_back_there_and_in_git()
 {
    let s = Shop::new("analysis-e2e").await;
    let address = s.address();
    s.commit("shop v1", shop("v1", &address, 3, 5));
    s.healthy_at("v1").await;

    // A good canary: three measurements of its error rate, all successful, then the promotion.
    s.commit("shop v2", shop("v2", &address, 3, 5));
    s.healthy_at("v2").await;
    let st = s.status().await;
    let run = step_run(&st).expect("the step's analysis run");
    assert_eq!(run.phase, AnalysisPhase::Successful, "{run:#?}");
    assert_eq!(run.successful, 3, "{run:#?}");
    // (A measurement before Prometheus has two scrapes of the new pods has no data: inconclusive,
    // waited out, not counted.)
    assert!(
        run.measurements
            .iter()
            .filter(|m| m.outcome == MeasurementOutcome::Successful)
            .all(|m| m.value == "0"),
        "the good canary answers no errors: {run:#?}"
    );

    // An erroring canary: rolled back at the step that checks it; the reason says what was seen.
    let bump = s.commit("shop v3: new checkout", shop("v3-errors", &address, 3, 5));
    let st = s
        .until("v3-errors rolled back", |s| {
            s.phase == Some(Phase::Failed) && s.failed_version.as_deref() == Some("v3-errors")
        })
        .await;
    let why = failure(&st);
    let seen: f64 = why
        .strip_prefix("analysis of v3-errors failed at step 1: metric error-rate = ")
        .and_then(|rest| rest.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the metric and its value: {why}"));
    // The canary's pods answer 20 % errors; a rate over a few scrapes of new pods is near that.
    assert!((0.05..=0.5).contains(&seen), "{why}");
    assert!(
        why.contains(", needs result < 0.05 (1 failed measurement(s)"),
        "{why}"
    );
    assert!(why.contains("query: sum(rate(http_requests_total"), "{why}");
    let rolled_back = st
        .conditions
        .iter()
        .find(|c| c.type_ == "RolledBack")
        .expect("a RolledBack condition");
    assert!(
        rolled_back
            .message
            .contains(&format!("error-rate = {seen}")),
        "{}",
        rolled_back.message
    );
    assert_eq!(
        step_run(&st).map(|r| r.phase),
        Some(AnalysisPhase::Failed),
        "{st:#?}"
    );
    s.healthy_at("v2").await;

    // Git is set back, and the rollback commit says why.
    let rollback = support::wait_until("the rollback commit", || async {
        let tip = s.server_main();
        (tip != bump).then_some(tip)
    })
    .await;
    let message = s.repo.git(&["log", "-1", "--format=%B", &rollback]);
    let flat = message.replace('\n', " ");
    assert!(flat.contains(&format!("error-rate = {seen}")), "{message}");
    assert!(
        flat.contains(&format!("Bosun-Rollback-Of: {bump}")),
        "{message}"
    );
}

#[tokio::test]
async fn a_restart_mid_analysis_resumes_the_count_and_a_stopped_prometheus_fails_it_after_the_limit()
 {
    let mut s = Shop::new("analysis-outage").await;
    let address = s.address();
    s.commit("shop v1", shop("v1", &address, 1000, 2));
    s.healthy_at("v1").await;

    // A long analysis (1000 measurements, one a second): killed after a few.
    s.commit("shop v2", shop("v2", &address, 1000, 2));
    let before = s
        .until("a few successful measurements", |st| {
            step_run(st).is_some_and(|r| r.successful >= 3)
        })
        .await;
    let taken = step_run(&before).expect("checked").taken();
    s.kill_and_restart();
    let after = s
        .until("measurements after the restart", |st| {
            step_run(st).is_some_and(|r| r.taken() >= taken + 3)
        })
        .await;
    let run = step_run(&after).expect("checked");
    // Resumed, not started over, and never two measurements within the interval.
    assert_eq!(
        run.started_at,
        step_run(&before).expect("checked").started_at
    );
    let times: Vec<i64> = run
        .measurements
        .iter()
        .map(|m| m.time.0.as_millisecond())
        .collect();
    assert!(
        times.windows(2).all(|t| t[1] - t[0] >= 1000),
        "one measurement a second at most: {times:?}"
    );

    // Prometheus goes away mid-step: inconclusive measurements, then a rollback after the limit.
    // (A measurement taken before Prometheus had two scrapes of the canary had no data: it counts
    // toward the limit too.)
    let waited_out = step_run(&s.status().await).map_or(0, |r| r.inconclusive);
    let prometheus = s.prometheus.take().expect("Prometheus runs");
    s._discovery.take();
    drop(prometheus);
    let st = s
        .until("v2 rolled back", |st| {
            st.phase == Some(Phase::Failed) && st.failed_version.as_deref() == Some("v2")
        })
        .await;
    let run = step_run(&st).expect("the run");
    let errors: Vec<_> = run
        .measurements
        .iter()
        .filter(|m| m.outcome == MeasurementOutcome::Error)
        .collect();
    assert_eq!(
        run.inconclusive, 3,
        "two waited out, the third fails it: {run:#?}"
    );
    assert_eq!(
        errors.len(),
        usize::try_from(3 - waited_out).expect("at most 2 before"),
        "{run:#?}"
    );
    assert!(errors[0].value.contains(&address), "{:?}", errors[0]);
    let why = failure(&st);
    assert!(
        why.contains(
            "metric error-rate: 3 inconclusive measurement(s), more than the 2 allowed (last: "
        ),
        "{why}"
    );
    s.healthy_at("v1").await;
}
