//! The router of an app's canary traffic (`upgradeStrategy.trafficRouting`): reads its object, asks
//! [`bosun_core::routing`] what to write for a weight, and writes only that: a JSON patch guarded by
//! `test` operations for a Gateway API HTTPRoute or an OpenShift Route (nothing when it already
//! carries the weight), the canary Ingress for NGINX. The gateway, router or ingress controller
//! applies the weights; Bosun only writes them.

use bosun_core::model::{ManagedApplication, TrafficRouting};
use bosun_core::routing::{self, CanaryIngress, RoutingError, Weight};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};

/// What stopped a weight from being written.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The router's object cannot carry the canary as it is: a human must change it.
    #[error(transparent)]
    Routing(#[from] RoutingError),
    #[error(
        "{kind} {name} not found in namespace {namespace}: create it, or fix upgradeStrategy.trafficRouting"
    )]
    Missing {
        kind: &'static str,
        name: String,
        namespace: String,
    },
    #[error("{what}: {error}")]
    Api {
        what: String,
        #[source]
        error: kube::Error,
    },
}

fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> RouteError {
    let what = what.into();
    move |error| RouteError::Api { what, error }
}

/// The API of an HTTPRoute or a Route, which have no types in k8s-openapi.
fn dynamic(client: &Client, ns: &str, group: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(group, "v1", kind);
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

/// Sets the canary's share of traffic to `percent` at the app's router.
pub(super) async fn set_weight(
    client: &Client,
    app: &ManagedApplication,
    percent: i32,
    owner: &OwnerReference,
    field_manager: &str,
) -> Result<(), RouteError> {
    let Some(routing) = &app.spec.upgrade_strategy.traffic_routing else {
        return Ok(());
    };
    let ns = app.namespace().unwrap_or_else(|| "default".into());
    let services = routing::routed_services(&app.name_any());
    let weight = Weight::new(percent.clamp(0, 100)).expect("clamped to 0..=100");
    match routing {
        TrafficRouting::GatewayApi(spec) => {
            let api = dynamic(
                client,
                &ns,
                "gateway.networking.k8s.io",
                routing::HTTP_ROUTE,
                "httproutes",
            );
            let route = get(&api, routing::HTTP_ROUTE, &spec.http_route, &ns).await?;
            let patch = routing::http_route_patch(spec, &route, &services, weight)?;
            write_patch(&api, routing::HTTP_ROUTE, &spec.http_route, patch).await
        }
        TrafficRouting::OpenshiftRoute(spec) => {
            let api = dynamic(client, &ns, "route.openshift.io", routing::ROUTE, "routes");
            let route = get(&api, routing::ROUTE, &spec.route, &ns).await?;
            let patch = routing::openshift_route_patch(spec, &route, &services, weight)?;
            write_patch(&api, routing::ROUTE, &spec.route, patch).await
        }
        TrafficRouting::Nginx(spec) => {
            let api: Api<Ingress> = Api::namespaced(client.clone(), &ns);
            let primary = api
                .get_opt(&spec.ingress)
                .await
                .map_err(api_err(format!("reading Ingress {}", spec.ingress)))?
                .ok_or_else(|| RouteError::Missing {
                    kind: routing::INGRESS,
                    name: spec.ingress.clone(),
                    namespace: ns.clone(),
                })?;
            let primary = serde_json::to_value(&primary).expect("an Ingress serializes");
            match routing::nginx_canary_ingress(spec, &primary, &services, weight, Some(owner))? {
                CanaryIngress::Apply(object) => {
                    let name = object["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    api.patch(
                        &name,
                        &PatchParams::apply(field_manager).force(),
                        &Patch::Apply(&object),
                    )
                    .await
                    .map_err(api_err(format!("applying Ingress {name}")))?;
                }
                CanaryIngress::Delete { name } => {
                    super::delete(&api, &name, &DeleteParams::default())
                        .await
                        .map_err(api_err(format!("deleting Ingress {name}")))?;
                }
            }
            Ok(())
        }
    }
}

async fn get(
    api: &Api<DynamicObject>,
    kind: &'static str,
    name: &str,
    ns: &str,
) -> Result<serde_json::Value, RouteError> {
    let object = api
        .get_opt(name)
        .await
        .map_err(api_err(format!("reading {kind} {name}")))?
        .ok_or_else(|| RouteError::Missing {
            kind,
            name: name.to_string(),
            namespace: ns.to_string(),
        })?;
    Ok(serde_json::to_value(&object).expect("an object serializes"))
}

/// Writes `patch` unless it is empty (the route carries the weight already: no write).
async fn write_patch(
    api: &Api<DynamicObject>,
    kind: &'static str,
    name: &str,
    patch: json_patch::Patch,
) -> Result<(), RouteError> {
    if patch.0.is_empty() {
        return Ok(());
    }
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(api_err(format!("patching {kind} {name}")))?;
    Ok(())
}
