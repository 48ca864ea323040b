//! Canary traffic through a router (issue [I]), end to end through the real `bosun run`, the test git
//! server and cluster, against the real upstream CRDs (Gateway API's standard channel, OpenShift's
//! Route; `scripts/crds-upstream install`) so that what Bosun writes must pass their schemas. There is
//! no data plane here: a gateway, router or ingress controller would apply the weights; the tests
//! check the objects Bosun writes and the order of its writes.
//!
//! Each scenario: `shop` at v1 behind the router, three pods; a commit asks for v2 with a 10 % step
//! that waits for `bosun promote`: the router says 90/10 exactly (one canary pod of three, the
//! stable side keeps its three), and nothing else in the router's object changes; promoted, v2 goes
//! out and the object reads as the user wrote it again. With Gateway API, a broken v3 is rolled back
//! and the canary's traffic is taken away before its Deployment goes.

mod support;

use std::time::Duration;

use bosun_core::model::{ManagedApplication, ManagedApplicationStatus, Phase};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use support::crds::install_upstream;
use support::gitserver::TestRepo;
use support::health::HealthServer;
use support::process::{Process, bosun_run};
use support::{TestNamespace, repo_scenario, wait_until};

/// `shop`: three pods, health-checked, a 10 % step until promoted, then 100 %, through `routing`.
fn shop(version: &str, health_port: u16, routing: &str) -> String {
    format!(
        "apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: shop
spec:
  version: \"{version}\"
  replicas: 3
  upgradeStrategy:
    type: Canary
    healthCheck:
      httpGet: {{path: /healthz, port: {health_port}}}
      periodSeconds: 1
      failureThreshold: 2
    trafficRouting:
      {routing}
    canary:
      steps:
        - weight: 10
          pause: untilPromoted
        - weight: 100
"
    )
}

struct Routed {
    ns: TestNamespace,
    repo: TestRepo,
    health: HealthServer,
    _dir: tempfile::TempDir,
    bosun: Process,
    routing: &'static str,
}

impl Routed {
    async fn new(prefix: &str, routing: &'static str) -> Routed {
        let (ns, repo, health, dir) = repo_scenario(prefix).await;
        let bosun = bosun_run(&repo.http_url, &ns.name, dir.path(), "127.0.0.1:0");
        Routed {
            ns,
            repo,
            health,
            _dir: dir,
            bosun,
            routing,
        }
    }

    fn commit(&self, version: &str) -> String {
        self.repo.commit(
            &format!("shop {version}"),
            &[(
                "apps/shop.yaml",
                shop(version, self.health.port, self.routing),
            )],
        )
    }

    async fn until(&self, what: &str, ok: impl Fn(&ManagedApplicationStatus) -> bool) {
        support::until_status(&self.ns, "shop", what, || self.bosun.log(), ok).await;
    }

    async fn healthy_at(&self, version: &str) {
        self.until(&format!("Healthy at {version}"), |s| {
            s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some(version)
        })
        .await;
    }

    /// v2's canary at its 10 % step, waiting to be promoted. (The router's weight is written before
    /// the step is checked: in the decision that moves it to HealthChecking.)
    async fn at_ten_percent(&self) {
        self.until("v2's canary at 10 %, waiting to be promoted", |s| {
            s.phase == Some(Phase::HealthChecking)
                && s.step_index == Some(0)
                && s.canary_weight == Some(10)
        })
        .await;
    }

    /// What `bosun promote` does: the step to promote, by annotation.
    async fn promote(&self) {
        self.ns
            .api::<ManagedApplication>()
            .patch(
                "shop",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"bosun.dev/promote-step": "0"}}}),
                ),
            )
            .await
            .expect("promote");
    }

    async fn replicas(&self, deployment: &str) -> Option<i32> {
        let d = self
            .ns
            .api::<Deployment>()
            .get_opt(deployment)
            .await
            .ok()??;
        d.spec?.replicas
    }

    async fn selector(&self, service: &str) -> Option<Value> {
        let s = self.ns.api::<Service>().get_opt(service).await.ok()??;
        serde_json::to_value(s.spec?.selector?).ok()
    }

    /// With the canary at 10 %: one canary pod of three, the stable side keeps its three, and each
    /// side has a Service of its own.
    async fn check_the_sides(&self) {
        assert_eq!(self.replicas("shop-canary").await, Some(1));
        assert_eq!(self.replicas("shop").await, Some(3));
        assert_eq!(
            self.selector("shop").await,
            Some(json!({"app": "shop", "bosun.dev/role": "stable"}))
        );
        assert_eq!(
            self.selector("shop-canary").await,
            Some(json!({"app": "shop", "bosun.dev/role": "canary"}))
        );
    }
}

/// Waits until `name` no longer exists.
async fn gone<K>(what: &str, api: &Api<K>, name: &str)
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_until(&format!("{what} gone"), || async {
        api.get_opt(name).await.ok()?.is_none().then_some(())
    })
    .await;
}

fn dynamic(ns: &TestNamespace, group: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, "v1", kind);
    Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

async fn create(api: &Api<DynamicObject>, object: Value) {
    let object: DynamicObject = serde_json::from_value(object).expect("an object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create the router's object");
}

async fn spec_of(api: &Api<DynamicObject>, name: &str) -> Value {
    api.get(name).await.expect("the router's object").data["spec"].clone()
}

/// The backendRefs of an HTTPRoute's rule, as (name, weight).
fn backends(spec: &Value, rule: usize) -> Vec<(String, Option<i64>)> {
    spec["rules"][rule]["backendRefs"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .map(|r| {
                    (
                        r["name"].as_str().unwrap_or_default().to_string(),
                        r["weight"].as_i64(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn gateway_api_weights_are_exact_promotion_restores_the_route_and_a_rollback_takes_traffic_away_first()
 {
    let r = Routed::new("routing-gateway", "gatewayAPI: {httpRoute: shop}").await;
    let _crds = [
        install_upstream(
            &r.ns.client,
            "gateway.networking.k8s.io_gatewayclasses.yaml",
        )
        .await,
        install_upstream(&r.ns.client, "gateway.networking.k8s.io_gateways.yaml").await,
        install_upstream(&r.ns.client, "gateway.networking.k8s.io_httproutes.yaml").await,
    ];
    let routes = dynamic(
        &r.ns,
        "gateway.networking.k8s.io",
        "HTTPRoute",
        "httproutes",
    );
    // A route with two rules: beta testers (a header) go to another Service; everyone else to shop.
    create(
        &routes,
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "shop"},
            "spec": {
                "parentRefs": [{"name": "gateway"}],
                "hostnames": ["shop.example.com"],
                "rules": [
                    {"matches": [{"headers": [{"name": "x-beta", "value": "1"}]}],
                     "backendRefs": [{"name": "shop-beta", "port": 80}]},
                    {"backendRefs": [{"name": "shop", "port": 80}]},
                ],
            },
        }),
    )
    .await;
    let written = spec_of(&routes, "shop").await;

    r.commit("v1");
    r.healthy_at("v1").await;
    assert_eq!(
        spec_of(&routes, "shop").await,
        written,
        "a first deployment leaves the route alone"
    );

    r.commit("v2");
    r.at_ten_percent().await;
    let spec = spec_of(&routes, "shop").await;
    assert_eq!(
        backends(&spec, 1),
        [("shop".into(), Some(90)), ("shop-canary".into(), Some(10))]
    );
    assert_eq!(
        spec["rules"][0], written["rules"][0],
        "the other rule is untouched"
    );
    assert_eq!(spec["hostnames"], written["hostnames"]);
    r.check_the_sides().await;

    r.promote().await;
    r.healthy_at("v2").await;
    assert_eq!(
        spec_of(&routes, "shop").await,
        written,
        "the route reads as written again"
    );
    assert!(
        r.ns.api::<Service>()
            .get_opt("shop-canary")
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        r.ns.api::<Deployment>()
            .get_opt("shop-canary")
            .await
            .expect("get")
            .is_none()
    );

    // A broken v3: its canary takes 10 %, fails its checks, and is rolled back. Every change of the
    // route and of the canary Deployment is recorded in the order the API server made them (its
    // resourceVersions, one etcd revision each): the canary's traffic goes before its Deployment.
    let changes = record_changes(&r.ns, routes.clone());
    r.commit("v3-unhealthy");
    r.until("v3-unhealthy rolled back", |s| {
        s.phase == Some(Phase::Failed) && s.failed_version.as_deref() == Some("v3-unhealthy")
    })
    .await;
    gone(
        "the canary Deployment",
        &r.ns.api::<Deployment>(),
        "shop-canary",
    )
    .await;
    let seen = changes.stop().await;
    let weighted = seen
        .iter()
        .position(|c| c == "route: shop-canary 10")
        .unwrap_or_else(|| panic!("the canary took its 10 %: {seen:?}"));
    let unweighted = seen[weighted..]
        .iter()
        .position(|c| c == "route: no canary")
        .map(|i| i + weighted)
        .unwrap_or_else(|| panic!("the canary's traffic was taken away: {seen:?}"));
    let deleted = seen
        .iter()
        .position(|c| c == "canary Deployment deleted")
        .unwrap_or_else(|| panic!("the canary Deployment was deleted: {seen:?}"));
    assert!(
        unweighted < deleted,
        "traffic first, then the pods: {seen:?}"
    );
    assert_eq!(spec_of(&routes, "shop").await, written);
}

/// Records, in resourceVersion order, what changed in the route's backends and whether the canary
/// Deployment was deleted, until stopped.
struct Changes {
    task: tokio::task::JoinHandle<()>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<(u64, String)>>>,
}

impl Changes {
    async fn stop(self) -> Vec<String> {
        // Let the watches deliver what the last writes did.
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.task.abort();
        let mut seen = self.seen.lock().expect("lock").clone();
        seen.sort_by_key(|(rv, _)| *rv);
        let mut out: Vec<String> = seen.into_iter().map(|(_, what)| what).collect();
        out.dedup();
        out
    }
}

fn record_changes(ns: &TestNamespace, routes: Api<DynamicObject>) -> Changes {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let deployments = ns.api::<Deployment>();
    let (a, b) = (seen.clone(), seen.clone());
    let task = tokio::spawn(async move {
        let route_changes = watcher(
            routes,
            watcher::Config::default().fields("metadata.name=shop"),
        )
        .touched_objects()
        .for_each(move |o| {
            if let Ok(route) = o {
                let rv = route
                    .resource_version()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let refs = backends(&route.data["spec"], 1);
                let what = match refs.iter().find(|(n, _)| n == "shop-canary") {
                    Some((_, w)) => format!("route: shop-canary {}", w.unwrap_or(1)),
                    None => "route: no canary".to_string(),
                };
                a.lock().expect("lock").push((rv, what));
            }
            futures::future::ready(())
        });
        let deployment_changes = watcher(
            deployments,
            watcher::Config::default().fields("metadata.name=shop-canary"),
        )
        .for_each(move |e| {
            if let Ok(watcher::Event::Delete(d)) = e {
                let rv = d
                    .resource_version()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                b.lock()
                    .expect("lock")
                    .push((rv, "canary Deployment deleted".to_string()));
            }
            futures::future::ready(())
        });
        futures::join!(route_changes, deployment_changes);
    });
    Changes { task, seen }
}

#[tokio::test]
async fn an_openshift_route_carries_the_canary_as_an_alternate_backend() {
    let r = Routed::new("routing-openshift", "openshiftRoute: {route: shop}").await;
    let _crd = install_upstream(&r.ns.client, "route.openshift.io_routes.yaml").await;
    let routes = dynamic(&r.ns, "route.openshift.io", "Route", "routes");
    create(
        &routes,
        json!({
            "apiVersion": "route.openshift.io/v1",
            "kind": "Route",
            "metadata": {"name": "shop"},
            "spec": {
                "host": "shop.apps.example.com",
                "to": {"kind": "Service", "name": "shop"},
                "port": {"targetPort": "http"},
            },
        }),
    )
    .await;
    let written = spec_of(&routes, "shop").await;

    r.commit("v1");
    r.healthy_at("v1").await;
    r.commit("v2");
    r.at_ten_percent().await;
    let spec = spec_of(&routes, "shop").await;
    assert_eq!(spec["to"]["weight"], 90, "{spec}");
    assert_eq!(
        spec["alternateBackends"],
        json!([{"kind": "Service", "name": "shop-canary", "weight": 10}])
    );
    assert_eq!(spec["host"], written["host"]);
    r.check_the_sides().await;

    r.promote().await;
    r.healthy_at("v2").await;
    let spec = spec_of(&routes, "shop").await;
    assert!(spec.get("alternateBackends").is_none(), "{spec}");
    assert_eq!(spec["to"]["name"], "shop");
}

#[tokio::test]
async fn nginx_gets_a_canary_ingress_with_the_weight_and_loses_it_after_the_promotion() {
    let r = Routed::new("routing-nginx", "nginx: {ingress: shop}").await;
    let ingresses = r.ns.api::<Ingress>();
    let primary: Ingress = serde_json::from_value(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": "shop"},
        "spec": {
            "ingressClassName": "nginx",
            "rules": [{"host": "shop.example.com", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "shop", "port": {"number": 80}}}},
            ]}}],
        },
    }))
    .expect("an Ingress");
    ingresses
        .create(&PostParams::default(), &primary)
        .await
        .expect("create the Ingress");

    r.commit("v1");
    r.healthy_at("v1").await;
    r.commit("v2");
    r.at_ten_percent().await;
    let canary = ingresses
        .get("shop-canary")
        .await
        .expect("the canary Ingress");
    let annotations = canary.annotations();
    assert_eq!(
        annotations
            .get("nginx.ingress.kubernetes.io/canary")
            .map(String::as_str),
        Some("true")
    );
    assert_eq!(
        annotations
            .get("nginx.ingress.kubernetes.io/canary-weight")
            .map(String::as_str),
        Some("10")
    );
    let spec = serde_json::to_value(canary.spec.expect("a spec")).expect("json");
    assert_eq!(spec["ingressClassName"], "nginx");
    assert_eq!(spec["rules"][0]["host"], "shop.example.com");
    assert_eq!(
        spec["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
        "shop-canary"
    );
    r.check_the_sides().await;

    r.promote().await;
    r.healthy_at("v2").await;
    gone("the canary Ingress", &ingresses, "shop-canary").await;
    let still = ingresses.get("shop").await.expect("the primary Ingress");
    assert_eq!(
        serde_json::to_value(still.spec).expect("json"),
        serde_json::to_value(primary.spec).expect("json"),
        "the primary Ingress is untouched"
    );
}
