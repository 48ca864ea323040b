//! `upgradeStrategy.trafficRouting`: the router that carries a canary's exact traffic weight, instead
//! of the share of pods behind one Service. Exactly one of a Gateway API HTTPRoute, an OpenShift Route
//! or an NGINX Ingress; what Bosun writes to each is decided by [`crate::routing`].

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The NGINX Ingress controller's annotation prefix when its `--annotations-prefix` is not changed.
pub const NGINX_ANNOTATION_PREFIX: &str = "nginx.ingress.kubernetes.io";

/// The router a canary's traffic goes through. Written as a mapping with exactly one key
/// (`gatewayAPI`, `openshiftRoute` or `nginx`); the schema says so with `minProperties` and
/// `maxProperties` (see the [`JsonSchema`] impl).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum TrafficRouting {
    #[serde(rename = "gatewayAPI")]
    GatewayApi(GatewayApiRouting),
    OpenshiftRoute(OpenshiftRouteRouting),
    Nginx(NginxRouting),
}

/// A Gateway API HTTPRoute (`gateway.networking.k8s.io/v1`) in the app's namespace. Bosun sets the
/// `weight` of the backendRefs of the app's stable Service and canary Service in the route's rules,
/// adds the canary backendRef while a canary runs and removes it after, and changes nothing else in
/// the route.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayApiRouting {
    /// The HTTPRoute's name.
    pub http_route: String,
    /// The indexes (from 0) of the route's `spec.rules` whose weights Bosun sets. Absent or empty:
    /// every rule that has a backendRef to the app's Service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleIndex>,
}

/// The index of one rule in an HTTPRoute's `spec.rules`, from 0.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(transparent)]
pub struct RuleIndex(pub i32);

impl JsonSchema for RuleIndex {
    fn schema_name() -> Cow<'static, str> {
        "RuleIndex".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "integer", "format": "int32", "minimum": 0})
    }
}

/// An OpenShift Route (`route.openshift.io/v1`) in the app's namespace whose `spec.to` is the app's
/// stable Service. Bosun sets `spec.to.weight` and, while a canary runs, an entry of
/// `spec.alternateBackends` for the canary Service (weights 0 to 256).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OpenshiftRouteRouting {
    /// The Route's name.
    pub route: String,
}

/// An NGINX Ingress (ingress-nginx) in the app's namespace whose rules send traffic to the app's
/// stable Service. While a canary runs, Bosun keeps a second Ingress `<ingress>-canary` with the same
/// hosts and paths pointed at the canary Service, annotated `canary: "true"` and `canary-weight`; it
/// never changes the Ingress named here.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NginxRouting {
    /// The primary Ingress's name.
    pub ingress: String,
    /// The prefix of the NGINX annotations, when the controller runs with another
    /// `--annotations-prefix`. Defaults to `nginx.ingress.kubernetes.io`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation_prefix: Option<String>,
}

impl NginxRouting {
    /// The annotation prefix in force: the one written, else [`NGINX_ANNOTATION_PREFIX`].
    pub fn annotation_prefix(&self) -> &str {
        self.annotation_prefix
            .as_deref()
            .unwrap_or(NGINX_ANNOTATION_PREFIX)
    }
}

impl JsonSchema for TrafficRouting {
    fn schema_name() -> Cow<'static, str> {
        "TrafficRouting".into()
    }

    /// An object with the three routers as optional properties and exactly one of them set: the form
    /// a structural CRD schema can hold (a `oneOf` of objects cannot declare properties there), and
    /// one the API server enforces on its own.
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "The router that carries the canary's exact traffic weight: exactly one of \
                `gatewayAPI`, `openshiftRoute` or `nginx`. Without it, the weight is the share of pods \
                behind the app's one Service.",
            "type": "object",
            "properties": {
                "gatewayAPI": generator.subschema_for::<GatewayApiRouting>(),
                "openshiftRoute": generator.subschema_for::<OpenshiftRouteRouting>(),
                "nginx": generator.subschema_for::<NginxRouting>(),
            },
            "minProperties": 1,
            "maxProperties": 1,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(value: serde_json::Value) -> Result<TrafficRouting, serde_json::Error> {
        serde_json::from_value(value)
    }

    #[test]
    fn each_router_reads_as_written_in_the_crd() {
        assert_eq!(
            read(json!({"gatewayAPI": {"httpRoute": "shop", "rules": [0, 2]}})).expect("valid"),
            TrafficRouting::GatewayApi(GatewayApiRouting {
                http_route: "shop".into(),
                rules: vec![RuleIndex(0), RuleIndex(2)],
            })
        );
        assert_eq!(
            read(json!({"openshiftRoute": {"route": "shop"}})).expect("valid"),
            TrafficRouting::OpenshiftRoute(OpenshiftRouteRouting {
                route: "shop".into()
            })
        );
        let nginx = read(json!({"nginx": {"ingress": "shop"}})).expect("valid");
        let TrafficRouting::Nginx(n) = &nginx else {
            panic!("{nginx:?}")
        };
        assert_eq!(n.annotation_prefix(), "nginx.ingress.kubernetes.io");
        for written in [
            json!({"gatewayAPI": {"httpRoute": "shop"}}),
            json!({"nginx": {"ingress": "shop", "annotationPrefix": "custom.nginx.org"}}),
        ] {
            let back = serde_json::to_value(read(written.clone()).expect("valid")).expect("json");
            assert_eq!(back, written, "written back as it was read");
        }
    }

    #[test]
    fn no_router_or_two_routers_are_refused() {
        assert!(read(json!({})).is_err());
        assert!(
            read(json!({"gatewayAPI": {"httpRoute": "a"}, "nginx": {"ingress": "b"}})).is_err()
        );
        assert!(read(json!({"istio": {"virtualService": "a"}})).is_err());
    }

    /// A kind with nothing but the field, to see the schema as a CRD carries it.
    #[derive(kube::CustomResource, Serialize, Deserialize, Clone, Debug, JsonSchema)]
    #[kube(
        group = "test.bosun.dev",
        version = "v1",
        kind = "RoutingProbe",
        namespaced
    )]
    #[serde(rename_all = "camelCase")]
    struct RoutingProbeSpec {
        traffic_routing: TrafficRouting,
    }

    #[test]
    fn the_crd_schema_takes_exactly_one_router_with_its_fields_inline() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_value(RoutingProbe::crd()).expect("json");
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["trafficRouting"];
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["minProperties"], 1);
        assert_eq!(schema["maxProperties"], 1);
        let properties = schema["properties"].as_object().expect("properties");
        let keys: Vec<&str> = properties.keys().map(String::as_str).collect();
        assert_eq!(keys, ["gatewayAPI", "nginx", "openshiftRoute"]);
        assert!(schema.get("oneOf").is_none() && schema.get("anyOf").is_none());
        let gateway = &properties["gatewayAPI"];
        assert_eq!(gateway["required"], json!(["httpRoute"]));
        let minimum = gateway["properties"]["rules"]["items"]["minimum"].as_f64();
        assert_eq!(minimum, Some(0.0), "no negative rule index");
        assert!(
            gateway["description"]
                .as_str()
                .is_some_and(|d| d.contains("HTTPRoute")),
            "{gateway}"
        );
        assert_eq!(properties["openshiftRoute"]["required"], json!(["route"]));
        assert_eq!(properties["nginx"]["required"], json!(["ingress"]));
        assert!(!crd.to_string().contains("$ref"), "every subschema inline");
    }
}
