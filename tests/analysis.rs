//! Metric analysis against a real Prometheus scraping real per-pod metrics (issue [I], its parts
//! today: the conditions and placeholders of `bosun_core::analysis`, and Bosun's client of the query
//! API, `bosun::prometheus`). Two pods run in the test
//! cluster, one of a good image and one whose tag ends in `-errors`; the health server answers each
//! pod's `/metrics` (20 % errors for the second); Prometheus scrapes them through file-based service
//! discovery, every second; the metric's query, rendered for each role, and its condition judge what
//! Prometheus answers.

mod support;

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
