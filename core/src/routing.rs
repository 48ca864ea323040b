//! Canary traffic through a router (`upgradeStrategy.trafficRouting`), decided without a client: the
//! weights each router takes, what to write to the router's object for a weight, the order of the
//! writes of a step, a promotion and a rollback, and how many pods each side runs. The executor reads
//! the router's object, passes it here, and writes what comes back.
//!
//! With a router the stable and canary sides each get a Service ([`routed_services`]), and the router
//! splits traffic between the two Services by weight. The rules, per router:
//! - **Gateway API** (HTTPRoute, `gateway.networking.k8s.io/v1`): in every selected rule the stable
//!   Service's backendRef gets weight `100 - w` and the canary Service's backendRef `w`; the canary
//!   backendRef is added (a copy of the stable one, renamed) when a canary starts and removed when the
//!   weight goes back to 0. Weights are relative (0 to 1,000,000; the CRD's default is 1).
//! - **OpenShift Route** (`route.openshift.io/v1`): `spec.to` (the stable Service) gets weight
//!   `100 - w`, and an entry of `spec.alternateBackends` for the canary Service `w` (0 to 256; the
//!   CRD's default is 100).
//! - **NGINX Ingress**: a second Ingress `<ingress>-canary` with the primary's hosts and paths pointed
//!   at the canary Service, annotated `canary: "true"`, `canary-weight: "<w>"` and
//!   `canary-weight-total: "100"` (ingress-nginx's canary annotations); deleted when the weight goes
//!   back to 0.
//!
//! Weight 0 means "no canary backend": the route reads as the user wrote it again (the stable
//! backend at the CRD's default weight, no canary backend, no canary Ingress). That is where every
//! upgrade ends, promoted or rolled back; a canary step of weight 0 is the same state.
//!
//! Bosun changes only what it owns: the two backends' weights, the canary backend, the canary
//! Ingress. A rule (or Route) that also sends traffic to a third backend is refused rather than
//! changed, since percentages written beside it would change that backend's share.

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, TestOperation};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use crate::engine::replicas::Split;
use crate::model::{GatewayApiRouting, NginxRouting, OpenshiftRouteRouting, TrafficRouting};
use crate::names::{LABEL_APP, LABEL_ROLE};
use crate::rollout::Role;
use crate::rollout::objects::{role_label, workload_name};

/// The kind of a Gateway API HTTPRoute, as messages name it.
pub const HTTP_ROUTE: &str = "HTTPRoute";
/// The kind of an OpenShift Route.
pub const ROUTE: &str = "Route";
/// The kind of an Ingress.
pub const INGRESS: &str = "Ingress";
/// An HTTPRoute backendRef's weight when none is written (the CRD's default).
pub const GATEWAY_DEFAULT_WEIGHT: i64 = 1;
/// An OpenShift Route backend's weight when none is written (the CRD's default).
pub const ROUTE_DEFAULT_WEIGHT: i64 = 100;
/// The `canary-weight-total` Bosun writes: weights are percentages.
pub const NGINX_WEIGHT_TOTAL: i32 = 100;

/// A canary weight: the percentage of traffic (0 to 100) the canary side takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Weight(u8);

impl Weight {
    /// No traffic on the canary: the route as the user wrote it.
    pub const ZERO: Weight = Weight(0);
    /// All traffic on the canary.
    pub const FULL: Weight = Weight(100);

    /// The weight of `percent`, if it is 0 to 100.
    pub fn new(percent: i32) -> Option<Weight> {
        u8::try_from(percent).ok().filter(|p| *p <= 100).map(Weight)
    }

    pub fn percent(self) -> i32 {
        i32::from(self.0)
    }

    /// The stable side's share: `100 - self`.
    pub fn rest(self) -> Weight {
        Weight(100 - self.0)
    }
}

/// The weights written to a router for one canary weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weights {
    pub stable: i32,
    pub canary: i32,
}

/// The kind of router, for what does not depend on which object it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Router {
    GatewayApi,
    OpenshiftRoute,
    Nginx,
}

impl From<&TrafficRouting> for Router {
    fn from(routing: &TrafficRouting) -> Router {
        match routing {
            TrafficRouting::GatewayApi(_) => Router::GatewayApi,
            TrafficRouting::OpenshiftRoute(_) => Router::OpenshiftRoute,
            TrafficRouting::Nginx(_) => Router::Nginx,
        }
    }
}

/// The weights `router` takes for `canary` percent on the canary side.
///
/// All three routers take the percentages as they are: Gateway API weights are relative integers
/// (0 to 1,000,000), so `100 - w` and `w` split exactly; an OpenShift Route's weights are 0 to 256,
/// so 100 fits; NGINX takes only the canary's `canary-weight` out of a `canary-weight-total` of 100
/// (the stable side gets the rest), so `stable` is what NGINX gives it, not something written.
pub fn desired_weights(router: Router, canary: Weight) -> Weights {
    let percentages = Weights {
        stable: canary.rest().percent(),
        canary: canary.percent(),
    };
    match router {
        Router::GatewayApi | Router::OpenshiftRoute | Router::Nginx => percentages,
    }
}

/// One of the app's two Services under a router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutedService {
    pub name: String,
    /// The Service's selector: the app's pods of one role.
    pub selector: BTreeMap<String, String>,
}

/// The app's Services under a router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutedServices {
    pub app: String,
    pub stable: RoutedService,
    pub canary: RoutedService,
}

/// The Services of `app` under a router: `<app>` selects only the stable role's pods (without a
/// router it selects every pod of the app), `<app>-canary` only the canary role's. Named as the
/// Deployments are and selecting the labels their pods carry (`app`, `bosun.dev/role`), so that the
/// stable Service follows the stable Deployment through every revision, promotion included.
pub fn routed_services(app: &str) -> RoutedServices {
    let side = |role: Role| RoutedService {
        name: workload_name(app, role),
        selector: BTreeMap::from([
            ("app".to_string(), app.to_string()),
            (LABEL_ROLE.to_string(), role_label(role).to_string()),
        ]),
    };
    RoutedServices {
        app: app.to_string(),
        stable: side(Role::Stable),
        canary: side(Role::Canary),
    }
}

/// The name of the canary Ingress Bosun keeps beside the primary Ingress `ingress`.
pub fn canary_ingress_name(ingress: &str) -> String {
    format!("{ingress}-canary")
}

/// Why the router's object cannot carry the canary. Each names the object and the field; none is
/// cured by retrying: a human must change the object or `trafficRouting`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    #[error(
        "{kind} {name}: no rule sends traffic to Service {service} ({field}); point the rule that \
         serves the app at Service {service}"
    )]
    NoStableBackend {
        kind: &'static str,
        name: String,
        service: String,
        field: &'static str,
    },

    #[error(
        "HTTPRoute {route}: trafficRouting.gatewayAPI.rules lists rule {index}, but the route has \
         {count} rule(s) (spec.rules[0] to spec.rules[{count}-1])"
    )]
    RuleOutOfRange {
        route: String,
        index: i32,
        count: usize,
    },

    #[error(
        "HTTPRoute {route}: spec.rules[{index}], listed in trafficRouting.gatewayAPI.rules, has no \
         backendRef to Service {service}"
    )]
    RuleWithoutStable {
        route: String,
        index: usize,
        service: String,
    },

    #[error(
        "{kind} {name}: {field} names Service {service} in namespace {namespace}; Bosun routes \
         only to the app's own Services, in the namespace of the {kind}"
    )]
    OtherNamespace {
        kind: &'static str,
        name: String,
        field: String,
        service: String,
        namespace: String,
    },

    #[error(
        "{kind} {name}: {field} sends traffic to {other} beside the app's Services; Bosun's weights \
         are percentages and would change its share: give it a rule of its own"
    )]
    SharedBackends {
        kind: &'static str,
        name: String,
        field: String,
        other: String,
    },

    #[error("{kind} {name}: {field} names Service {service} more than once; keep one")]
    DuplicateBackend {
        kind: &'static str,
        name: String,
        field: String,
        service: String,
    },

    #[error(
        "Route {route}: spec.to is {found}, not the app's stable Service {service}; point spec.to \
         at Service {service}"
    )]
    ToNotStable {
        route: String,
        found: String,
        service: String,
    },

    #[error("{kind} {name}: {field} is not {expected}")]
    Malformed {
        kind: &'static str,
        name: String,
        field: String,
        expected: &'static str,
    },
}

/// The JSON patch (RFC 6902) that sets the weights of the app's Services in the live HTTPRoute
/// `route` for `canary` percent: in the rules `spec` lists, or else every rule with a backendRef to
/// the stable Service (a backendRef's `namespace`, when written, must be the route's). The stable
/// backendRef gets `100 - w`; the canary backendRef `w`, added as a
/// copy of the stable one (group, kind, port, filters) under the canary Service's name when missing,
/// and removed at weight 0, when the stable backendRef goes back to the CRD's default weight (1): the
/// route reads as it was written. Nothing else in the route is touched.
///
/// Every change follows a `test` of the backendRef's name at that index, so that a route edited
/// between the read and the write fails the patch instead of changing the wrong backend: read it
/// again and call this again. An empty patch means the route already carries the weight.
///
/// # Errors
///
/// [`RoutingError`]: no rule with a backendRef to the stable Service; a listed rule out of range or
/// without one; a backendRef to the app's Services in another namespace; a selected rule that also
/// sends traffic elsewhere; a Service named twice in one rule; `spec.rules` not a list.
pub fn http_route_patch(
    spec: &GatewayApiRouting,
    route: &Value,
    services: &RoutedServices,
    canary: Weight,
) -> Result<Patch, RoutingError> {
    let name = spec.http_route.as_str();
    let namespace = route.pointer("/metadata/namespace").and_then(Value::as_str);
    let rules = list_at(route, "/spec/rules", HTTP_ROUTE, name, "spec.rules")?;
    let refs_of = |i: usize| {
        let field = format!("spec.rules[{i}].backendRefs");
        let refs = list_at(&rules[i], "/backendRefs", HTTP_ROUTE, name, &field)?;
        let found = Backends::find(refs, &field, HTTP_ROUTE, name, services, |b| {
            let service = b.get("group").is_none_or(|g| g == "")
                && b.get("kind").is_none_or(|k| k == "Service");
            let ns = b.get("namespace").and_then(Value::as_str);
            (service, ns.filter(|ns| Some(*ns) != namespace))
        })?;
        Ok::<_, RoutingError>((refs, found))
    };
    let mut selected = Vec::new();
    if spec.rules.is_empty() {
        for i in 0..rules.len() {
            let (refs, found) = refs_of(i)?;
            if let Some(stable) = found.stable {
                selected.push((i, refs, stable, found));
            }
        }
    } else {
        let listed: BTreeSet<i32> = spec.rules.iter().map(|r| r.0).collect();
        for index in listed {
            let i = usize::try_from(index)
                .ok()
                .filter(|i| *i < rules.len())
                .ok_or_else(|| RoutingError::RuleOutOfRange {
                    route: name.into(),
                    index,
                    count: rules.len(),
                })?;
            let (refs, found) = refs_of(i)?;
            let stable = found
                .stable
                .ok_or_else(|| RoutingError::RuleWithoutStable {
                    route: name.into(),
                    index: i,
                    service: services.stable.name.clone(),
                })?;
            selected.push((i, refs, stable, found));
        }
    }
    if selected.is_empty() {
        return Err(RoutingError::NoStableBackend {
            kind: HTTP_ROUTE,
            name: name.into(),
            service: services.stable.name.clone(),
            field: "spec.rules[].backendRefs",
        });
    }
    let change = BackendChange::new(Router::GatewayApi, GATEWAY_DEFAULT_WEIGHT, canary);
    let mut ops = Vec::new();
    for (i, refs, stable, found) in selected {
        let field = format!("spec.rules[{i}].backendRefs");
        found.alone(refs, &field, HTTP_ROUTE, name)?;
        let list = pointer(&["spec", "rules", &i.to_string(), "backendRefs"]);
        let at = |j: usize| list.clone().with(&j.to_string());
        change.stable(&refs[stable], at(stable), &services.stable.name, &mut ops);
        match found.canary {
            Some(k) => change.canary(&refs[k], at(k), &services.canary.name, &mut ops),
            None if canary > Weight::ZERO => {
                let mut copy = refs[stable].clone();
                copy["name"] = json!(services.canary.name);
                copy["weight"] = json!(change.weights.canary);
                ops.push(add(list.clone().with("-"), copy));
            }
            None => {}
        }
    }
    Ok(Patch(ops))
}

/// The JSON patch that sets the weights of the live OpenShift Route `route` for `canary` percent:
/// `spec.to` (which must be the stable Service) gets `100 - w`, and the canary Service's entry of
/// `spec.alternateBackends` `w`, added when missing and removed at weight 0 (with the list, when it
/// was its only entry), when `spec.to` goes back to the CRD's default weight (100). Changes follow a
/// `test` of the name they expect, as in [`http_route_patch`]; an empty patch means nothing to do.
///
/// # Errors
///
/// [`RoutingError`]: `spec.to` is not the stable Service; `spec.alternateBackends` holds another
/// backend, or the canary Service twice, or is not a list.
pub fn openshift_route_patch(
    spec: &OpenshiftRouteRouting,
    route: &Value,
    services: &RoutedServices,
    canary: Weight,
) -> Result<Patch, RoutingError> {
    let name = spec.route.as_str();
    let is_service = |b: &Value| b.get("kind").is_none_or(|k| k == "Service" || k == "");
    let to = route.pointer("/spec/to").unwrap_or(&Value::Null);
    if !(is_service(to) && to.get("name").is_some_and(|n| *n == *services.stable.name)) {
        return Err(RoutingError::ToNotStable {
            route: name.into(),
            found: match to.get("name").and_then(Value::as_str) {
                Some(n) => format!(
                    "{} {n}",
                    to.get("kind").and_then(Value::as_str).unwrap_or("Service")
                ),
                None => "not set".into(),
            },
            service: services.stable.name.clone(),
        });
    }
    let field = "spec.alternateBackends";
    let alternates = list_at(route, "/spec/alternateBackends", ROUTE, name, field)?;
    let found = Backends::find(alternates, field, ROUTE, name, services, |b| {
        (is_service(b), None)
    })?;
    found.alone(alternates, field, ROUTE, name)?;
    if found.stable.is_some() {
        return Err(RoutingError::DuplicateBackend {
            kind: ROUTE,
            name: name.into(),
            field: "spec.to and spec.alternateBackends".into(),
            service: services.stable.name.clone(),
        });
    }
    let change = BackendChange::new(Router::OpenshiftRoute, ROUTE_DEFAULT_WEIGHT, canary);
    let mut ops = Vec::new();
    change.stable(
        to,
        pointer(&["spec", "to"]),
        &services.stable.name,
        &mut ops,
    );
    let list = pointer(&["spec", "alternateBackends"]);
    match found.canary {
        // Its only entry: the list goes with it, as a route without a canary is written.
        Some(k) if canary == Weight::ZERO && alternates.len() == 1 => {
            let at = list.clone().with(&k.to_string());
            ops.push(test(at.with("name"), json!(services.canary.name)));
            ops.push(remove(list));
        }
        Some(k) => {
            let at = list.with(&k.to_string());
            change.canary(&alternates[k], at, &services.canary.name, &mut ops);
        }
        None if canary > Weight::ZERO => {
            let entry = json!({
                "kind": "Service",
                "name": services.canary.name,
                "weight": change.weights.canary,
            });
            if alternates.is_empty() {
                ops.push(add(list, json!([entry])));
            } else {
                ops.push(add(list.with("-"), entry));
            }
        }
        None => {}
    }
    Ok(Patch(ops))
}

/// What to do with the canary Ingress of an NGINX router.
#[derive(Clone, Debug, PartialEq)]
pub enum CanaryIngress {
    /// Create or update it to this object.
    Apply(Value),
    /// Delete it (if it exists): the weight is 0.
    Delete { name: String },
}

/// The canary Ingress `<ingress>-canary` for the live primary Ingress `primary` at `canary` percent.
///
/// It holds the primary's `ingressClassName` (and its `kubernetes.io/ingress.class` annotation, which
/// older setups use instead), its TLS, and the rules that send traffic to the stable Service, each
/// with only those paths, pointed at the canary Service on the same port. Its annotations are the
/// canary ones under `spec`'s prefix: `canary: "true"`, `canary-weight: "<w>"`,
/// `canary-weight-total: "100"`. ingress-nginx takes a canary Ingress's other settings from its
/// primary, except `load-balance`, `upstream-hash-by` and session affinity, which are not copied
/// (the canary uses the controller's defaults for those). Labelled `app`, `bosun.dev/app` and `bosun.dev/role: canary`; `owner`, when given, is its
/// owner reference (the caller decides). At weight 0 it is to be deleted.
///
/// # Errors
///
/// [`RoutingError::NoStableBackend`] when no path of the primary's rules has the stable Service as
/// its backend; [`RoutingError::Malformed`] when its rules are not lists.
pub fn nginx_canary_ingress(
    spec: &NginxRouting,
    primary: &Value,
    services: &RoutedServices,
    canary: Weight,
    owner: Option<&OwnerReference>,
) -> Result<CanaryIngress, RoutingError> {
    let name = spec.ingress.as_str();
    let mut rules = Vec::new();
    for (i, rule) in list_at(primary, "/spec/rules", INGRESS, name, "spec.rules")?
        .iter()
        .enumerate()
    {
        let field = format!("spec.rules[{i}].http.paths");
        let paths: Vec<Value> = list_at(rule, "/http/paths", INGRESS, name, &field)?
            .iter()
            .filter(|p| {
                p.pointer("/backend/service/name")
                    .is_some_and(|n| *n == *services.stable.name)
            })
            .map(|p| {
                let mut path = p.clone();
                path["backend"]["service"]["name"] = json!(services.canary.name);
                path
            })
            .collect();
        if !paths.is_empty() {
            let mut copy = json!({"http": {"paths": paths}});
            if let Some(host) = rule.get("host") {
                copy["host"] = host.clone();
            }
            rules.push(copy);
        }
    }
    if rules.is_empty() {
        return Err(RoutingError::NoStableBackend {
            kind: INGRESS,
            name: name.into(),
            service: services.stable.name.clone(),
            field: "spec.rules[].http.paths[].backend.service.name",
        });
    }
    let canary_name = canary_ingress_name(name);
    if canary == Weight::ZERO {
        return Ok(CanaryIngress::Delete { name: canary_name });
    }
    let prefix = spec.annotation_prefix();
    let weights = desired_weights(Router::Nginx, canary);
    let mut annotations = json!({
        format!("{prefix}/canary"): "true",
        format!("{prefix}/canary-weight"): weights.canary.to_string(),
        format!("{prefix}/canary-weight-total"): NGINX_WEIGHT_TOTAL.to_string(),
    });
    const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";
    if let Some(class) = primary
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(CLASS_ANNOTATION))
    {
        annotations[CLASS_ANNOTATION] = class.clone();
    }
    let app = services.app.as_str();
    let mut metadata = json!({
        "name": canary_name,
        "labels": {"app": app, LABEL_APP: app, LABEL_ROLE: role_label(Role::Canary)},
        "annotations": annotations,
    });
    if let Some(owner) = owner {
        metadata["ownerReferences"] = json!([owner]);
    }
    let mut ingress_spec = json!({"rules": rules});
    for key in ["ingressClassName", "tls"] {
        if let Some(v) = primary.pointer(&format!("/spec/{key}")) {
            ingress_spec[key] = v.clone();
        }
    }
    Ok(CanaryIngress::Apply(json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": metadata,
        "spec": ingress_spec,
    })))
}

/// How many pods each side runs at `canary` percent with a router: the canary `ceil(total × w / 100)`
/// (so at least one for any weight above 0, when `total` is above 0), and the stable side all `total`
/// of its pods, so that a rollback can send every request back to it at once. With
/// `dynamic_stable_scale` the stable side is scaled as its traffic shrinks instead, to
/// `ceil(total × (100 - w) / 100)`, as Argo Rollouts' `dynamicStableScale` does (there the stable
/// ReplicaSet "scales down as the traffic weight increases to canary"; its
/// `CalculateReplicaCountsForTrafficRoutedCanary` rounds both sides up): fewer pods in all, at the
/// price of a stable side that must grow again before it can take traffic back (see
/// [`step_writes`] and [`rollback_writes`] for the order that keeps each side able to serve its
/// share). A negative `total` counts as 0.
///
/// Unlike [`crate::engine::replicas::canary_split`], the pods do not carry the weight here, so
/// [`Split::effective_weight`] is the share of pods, not of traffic.
pub fn canary_replicas(total: i32, canary: Weight, dynamic_stable_scale: bool) -> Split {
    let total = total.max(0);
    let share = |w: Weight| {
        let exact = i64::from(total) * i64::from(w.percent());
        i32::try_from((exact + 99) / 100).expect("at most `total`")
    };
    Split {
        stable: if dynamic_stable_scale {
            share(canary.rest())
        } else {
            total
        },
        canary: share(canary),
    }
}

/// One write the engine makes to move traffic, or a wait between two writes. [`step_writes`],
/// [`promotion_writes`] and [`rollback_writes`] give them in the order they must happen; a write
/// waits for every write before it (and a wait, for its Deployment to be ready).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Scale the canary Deployment to this many pods (0: the canary Deployment may be removed).
    ScaleCanary(i32),
    /// Scale the stable Deployment to this many pods.
    ScaleStable(i32),
    /// Wait until the canary Deployment's pods are all ready.
    AwaitCanaryReady,
    /// Wait until the stable Deployment's pods are all ready.
    AwaitStableReady,
    /// Set the router to this canary weight: [`http_route_patch`], [`openshift_route_patch`] or
    /// [`nginx_canary_ingress`]. Weight 0 removes the canary backend.
    SetWeight(Weight),
    /// Give the stable Deployment the target revision, with this many pods (the promotion).
    StableTakesTarget { replicas: i32 },
    /// Give the stable Deployment the last healthy revision back, with this many pods.
    StableRestoresLastHealthy { replicas: i32 },
}

/// The writes that move a canary with a router from weight `from` to `to`, for `total` pods.
///
/// Capacity comes before traffic: the side whose share grows is scaled first and waited for, then
/// the weight is set, then the side whose share shrinks is scaled down. Without
/// `dynamic_stable_scale` the stable side keeps all its pods and is not written to.
pub fn step_writes(total: i32, from: Weight, to: Weight, dynamic_stable_scale: bool) -> Vec<Write> {
    let pods = canary_replicas(total, to, dynamic_stable_scale);
    let stable = dynamic_stable_scale.then_some(Write::ScaleStable(pods.stable));
    if to >= from {
        [
            Some(Write::ScaleCanary(pods.canary)),
            Some(Write::AwaitCanaryReady),
            Some(Write::SetWeight(to)),
            stable,
        ]
        .into_iter()
        .flatten()
        .collect()
    } else {
        [
            stable,
            stable.map(|_| Write::AwaitStableReady),
            Some(Write::SetWeight(to)),
            Some(Write::ScaleCanary(pods.canary)),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// The writes of a promotion with a router, from the last step's weight `from`: the canary takes all
/// the traffic (a step to 100), the stable Deployment takes the target revision with all `total`
/// pods meanwhile, and once it is ready the route goes back to the stable Service alone (weight 0:
/// the canary backend removed, the route as written) and the canary is scaled to 0.
pub fn promotion_writes(total: i32, from: Weight, dynamic_stable_scale: bool) -> Vec<Write> {
    let mut writes = step_writes(total, from, Weight::FULL, dynamic_stable_scale);
    writes.extend([
        Write::StableTakesTarget {
            replicas: total.max(0),
        },
        Write::AwaitStableReady,
        Write::SetWeight(Weight::ZERO),
        Write::ScaleCanary(0),
    ]);
    writes
}

/// Where an upgrade with a router stands when it is rolled back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RollbackFrom {
    /// A canary step: the canary has this weight; the stable Deployment runs the last healthy
    /// revision, with the pods [`canary_replicas`] gives it at that weight.
    Step(Weight),
    /// The promotion has given the stable Deployment the target revision.
    Promotion,
}

/// The writes of a rollback with a router, for `total` pods.
///
/// The canary weight goes to 0 first, at once, before anything is scaled: the canary is what
/// failed, and every request it takes from then on is one more failed request. Then the stable side
/// gets all its pods back (with `dynamic_stable_scale`; Argo Rollouts instead moves the traffic back
/// only as fast as the stable side becomes available, trading failed requests for capacity) and the
/// canary is scaled to 0.
///
/// Two states have no stable side to send traffic to, and there the stable side comes back first,
/// the traffic staying where it is until it is ready: a step at 100 with `dynamic_stable_scale` (the
/// stable side has no pods), and [`RollbackFrom::Promotion`] (the stable Deployment runs the failed
/// revision).
pub fn rollback_writes(total: i32, from: RollbackFrom, dynamic_stable_scale: bool) -> Vec<Write> {
    let total = total.max(0);
    let stable_first = match from {
        RollbackFrom::Step(w) => {
            let pods = canary_replicas(total, w, dynamic_stable_scale);
            (pods.stable == 0 && total > 0).then_some(Write::ScaleStable(total))
        }
        RollbackFrom::Promotion => Some(Write::StableRestoresLastHealthy { replicas: total }),
    };
    match stable_first {
        Some(restore) => vec![
            restore,
            Write::AwaitStableReady,
            Write::SetWeight(Weight::ZERO),
            Write::ScaleCanary(0),
        ],
        None => [
            Some(Write::SetWeight(Weight::ZERO)),
            dynamic_stable_scale.then_some(Write::ScaleStable(total)),
            Some(Write::ScaleCanary(0)),
        ]
        .into_iter()
        .flatten()
        .collect(),
    }
}

/// Where the app's two Services stand in one list of backends, and what else is there.
struct Backends {
    stable: Option<usize>,
    canary: Option<usize>,
    /// Indexes of backends that are neither.
    others: Vec<usize>,
}

impl Backends {
    /// Finds the app's Services in `list` (at `field` of the `kind` named `name`). `classify` says of
    /// one backend whether it is a Service and, if it is in another namespace, which.
    fn find(
        list: &[Value],
        field: &str,
        kind: &'static str,
        name: &str,
        services: &RoutedServices,
        classify: impl Fn(&Value) -> (bool, Option<&str>),
    ) -> Result<Backends, RoutingError> {
        let mut found = Backends {
            stable: None,
            canary: None,
            others: Vec::new(),
        };
        for (j, backend) in list.iter().enumerate() {
            let (is_service, foreign) = classify(backend);
            let backend_name = backend.get("name").and_then(Value::as_str);
            let slot = match backend_name {
                Some(n) if is_service && n == services.stable.name => &mut found.stable,
                Some(n) if is_service && n == services.canary.name => &mut found.canary,
                _ => {
                    found.others.push(j);
                    continue;
                }
            };
            let service = backend_name.unwrap_or_default().to_string();
            if let Some(namespace) = foreign {
                return Err(RoutingError::OtherNamespace {
                    kind,
                    name: name.into(),
                    field: format!("{field}[{j}]"),
                    service,
                    namespace: namespace.into(),
                });
            }
            if slot.replace(j).is_some() {
                return Err(RoutingError::DuplicateBackend {
                    kind,
                    name: name.into(),
                    field: field.into(),
                    service,
                });
            }
        }
        Ok(found)
    }

    /// Refuses a list (found as `self` in `list`) that also sends traffic to another backend.
    fn alone(
        &self,
        list: &[Value],
        field: &str,
        kind: &'static str,
        name: &str,
    ) -> Result<(), RoutingError> {
        match self.others.first() {
            None => Ok(()),
            Some(j) => Err(RoutingError::SharedBackends {
                kind,
                name: name.into(),
                field: format!("{field}[{j}]"),
                other: describe(&list[*j]),
            }),
        }
    }
}

/// How the app's backends in one router change for one canary weight.
struct BackendChange {
    /// The router's weight for a backend written without one (the CRD's default).
    default: i64,
    weights: Weights,
    canary: Weight,
}

impl BackendChange {
    /// The change of `router`'s backends, whose weight is `default` when none is written, to `canary`.
    fn new(router: Router, default: i64, canary: Weight) -> BackendChange {
        BackendChange {
            default,
            weights: desired_weights(router, canary),
            canary,
        }
    }

    /// The stable backend `backend` (at `at`, named `name`) to `100 - w`, or to the default at 0.
    fn stable(&self, backend: &Value, at: PointerBuf, name: &str, ops: &mut Vec<PatchOperation>) {
        let want = if self.canary == Weight::ZERO {
            self.default
        } else {
            i64::from(self.weights.stable)
        };
        self.set_weight(backend, at, name, want, ops);
    }

    /// The canary backend found at `at` to `w`, or removed at 0.
    fn canary(&self, backend: &Value, at: PointerBuf, name: &str, ops: &mut Vec<PatchOperation>) {
        if self.canary == Weight::ZERO {
            ops.push(test(at.clone().with("name"), json!(name)));
            ops.push(remove(at));
        } else {
            let want = i64::from(self.weights.canary);
            self.set_weight(backend, at, name, want, ops);
        }
    }

    fn set_weight(
        &self,
        backend: &Value,
        at: PointerBuf,
        name: &str,
        want: i64,
        ops: &mut Vec<PatchOperation>,
    ) {
        let now = backend
            .get("weight")
            .and_then(Value::as_i64)
            .unwrap_or(self.default);
        if now != want {
            ops.push(test(at.clone().with("name"), json!(name)));
            // `add` on a member that exists replaces it (RFC 6902, 4.1).
            ops.push(add(at.with("weight"), json!(want)));
        }
    }
}

/// The list at `at` in `value` (absent: empty), or why it is not one.
fn list_at<'v>(
    value: &'v Value,
    at: &str,
    kind: &'static str,
    name: &str,
    field: &str,
) -> Result<&'v [Value], RoutingError> {
    match value.pointer(at) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(RoutingError::Malformed {
            kind,
            name: name.into(),
            field: field.into(),
            expected: "a list",
        }),
    }
}

/// A backend as messages name it: `Service legacy`, `ServiceImport shop`.
fn describe(backend: &Value) -> String {
    let kind = backend
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("Service");
    let name = backend
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("(no name)");
    format!("{kind} {name}")
}

/// A JSON pointer one token longer.
trait With {
    fn with(self, token: &str) -> PointerBuf;
}

impl With for PointerBuf {
    fn with(mut self, token: &str) -> PointerBuf {
        self.push_back(token.to_string());
        self
    }
}

fn pointer(tokens: &[&str]) -> PointerBuf {
    PointerBuf::from_tokens(tokens.iter().map(|t| t.to_string()))
}

fn test(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Test(TestOperation { path, value })
}

fn add(path: PointerBuf, value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation { path, value })
}

fn remove(path: PointerBuf) -> PatchOperation {
    PatchOperation::Remove(RemoveOperation { path })
}
