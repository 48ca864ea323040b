//! The upstream CRDs the tests install are the real ones: Gateway API's standard channel, as
//! `sigs.k8s.io/gateway-api` ships it (fetched by `scripts/crds-upstream`), takes a canary split between
//! two Services and refuses what its schema forbids. CRDs are cluster-wide, so the tests of this binary
//! run one at a time, and remove them afterwards.

mod support;

use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use kube::core::GroupVersionKind;
use serde_json::json;
use support::TestNamespace;
use support::crds::{self, InstalledCrd};

/// One test at a time: the CRDs they install are cluster-wide.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Installs GatewayClass, Gateway and HTTPRoute of the standard channel.
async fn install_gateway_api(ns: &TestNamespace) -> Vec<InstalledCrd> {
    let mut installed = Vec::new();
    for file in [
        "gateway.networking.k8s.io_gatewayclasses.yaml",
        "gateway.networking.k8s.io_gateways.yaml",
        "gateway.networking.k8s.io_httproutes.yaml",
    ] {
        installed.extend(crds::install_upstream(&ns.client, file).await);
    }
    installed
}

fn gateway_api(ns: &TestNamespace, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(GATEWAY_GROUP, "v1", kind);
    let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
    if kind == "GatewayClass" {
        Api::all_with(ns.client.clone(), &ar)
    } else {
        Api::namespaced_with(ns.client.clone(), &ns.name, &ar)
    }
}

async fn create(
    api: &Api<DynamicObject>,
    object: serde_json::Value,
) -> kube::Result<DynamicObject> {
    let object: DynamicObject = serde_json::from_value(object).expect("an object");
    api.create(&PostParams::default(), &object).await
}

/// A GatewayClass (named after the namespace: it is cluster-wide) and a Gateway `web` of it, and the
/// Services `shop-stable` and `shop-canary`.
async fn gateway_and_services(ns: &TestNamespace) {
    create(
        &gateway_api(ns, "GatewayClass", "gatewayclasses"),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": {"name": ns.name},
            "spec": {"controllerName": "bosun.dev/test-gateway"},
        }),
    )
    .await
    .expect("the GatewayClass is accepted");
    create(
        &gateway_api(ns, "Gateway", "gateways"),
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "web"},
            "spec": {"gatewayClassName": ns.name,
                     "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
        }),
    )
    .await
    .expect("the Gateway is accepted");
    for name in ["shop-stable", "shop-canary"] {
        let service: Service = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]},
        }))
        .expect("a Service");
        ns.api::<Service>()
            .create(&PostParams::default(), &service)
            .await
            .unwrap_or_else(|e| panic!("creating Service {name}: {e}"));
    }
}

/// What each test starts from: a namespace of its own, the Gateway API CRDs (removed on drop), a
/// Gateway `web` and the Services `shop-stable` and `shop-canary`.
struct Scenario {
    ns: TestNamespace,
    _crds: Vec<InstalledCrd>,
}

impl Scenario {
    async fn new(prefix: &str) -> Scenario {
        let ns = TestNamespace::new(prefix).await;
        let crds = install_gateway_api(&ns).await;
        gateway_and_services(&ns).await;
        Scenario { ns, _crds: crds }
    }

    /// Creates the HTTPRoute `shop` on Gateway `web`, splitting traffic between the stable and canary
    /// Services.
    async fn create_canary_route(
        &self,
        stable_weight: i64,
        canary_weight: i64,
    ) -> kube::Result<DynamicObject> {
        let route = json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "shop"},
            "spec": {
                "parentRefs": [{"name": "web"}],
                "hostnames": ["shop.example.com"],
                "rules": [{"backendRefs": [
                    {"name": "shop-stable", "port": 80, "weight": stable_weight},
                    {"name": "shop-canary", "port": 80, "weight": canary_weight},
                ]}],
            },
        });
        create(&gateway_api(&self.ns, "HTTPRoute", "httproutes"), route).await
    }
}

#[tokio::test]
async fn an_httproute_splitting_traffic_between_stable_and_canary_is_accepted() {
    let _serial = SERIAL.lock().await;
    let scenario = Scenario::new("gateway-split").await;

    let route = scenario
        .create_canary_route(90, 10)
        .await
        .expect("an HTTPRoute with a 90/10 split is accepted");

    let backends = &route.data["spec"]["rules"][0]["backendRefs"];
    assert_eq!(backends[0]["name"], "shop-stable");
    assert_eq!(backends[0]["weight"], 90);
    assert_eq!(backends[1]["name"], "shop-canary");
    assert_eq!(backends[1]["weight"], 10);
    // Defaults only the real schema fills in: the backends' kind, and a rule's match on every path.
    assert_eq!(backends[1]["kind"], "Service", "{route:?}");
    assert_eq!(
        route.data["spec"]["rules"][0]["matches"][0]["path"],
        json!({"type": "PathPrefix", "value": "/"}),
        "{route:?}"
    );
}

#[tokio::test]
async fn an_httproute_with_a_negative_weight_is_refused_by_the_schema() {
    let _serial = SERIAL.lock().await;
    let scenario = Scenario::new("gateway-weight").await;

    let refused = scenario
        .create_canary_route(100, -1)
        .await
        .expect_err("a weight of -1 is refused");

    let kube::Error::Api(status) = &refused else {
        panic!("expected the API server's refusal, got {refused:?}");
    };
    assert_eq!(
        (status.code, status.reason.as_str()),
        (422, "Invalid"),
        "{status:?}"
    );
    assert!(
        status
            .message
            .contains("spec.rules[0].backendRefs[1].weight: Invalid value: -1")
            && status
                .message
                .contains("should be greater than or equal to 0"),
        "the schema names the field and its minimum: {}",
        status.message
    );
}
