//! Scenarios of canary traffic through a router: the objects are shaped as the API server returns
//! them (the CRDs' defaults filled in: a backendRef's `group: ""`, `kind: Service`, `weight: 1`; a
//! Route's `weight: 100`), each patch is applied to its object, and the object is read again.

use serde_json::{Value, json};

use super::*;
use crate::model::routing::RuleIndex;

fn services() -> RoutedServices {
    routed_services("shop")
}

fn w(percent: i32) -> Weight {
    Weight::new(percent).expect("a weight")
}

fn gateway(rules: &[i32]) -> GatewayApiRouting {
    GatewayApiRouting {
        http_route: "shop".into(),
        rules: rules.iter().copied().map(RuleIndex).collect(),
    }
}

/// `patch` applied to `object`, as the API server would.
fn applied(object: &Value, patch: &Patch) -> Value {
    let mut out = object.clone();
    json_patch::patch(&mut out, patch).expect("the patch applies to the object it was made from");
    out
}

/// An HTTPRoute as `kubectl get -o json` shows it: a header-matched rule for beta testers and a
/// catch-all rule, both to the app's Service, with per-rule filters and timeouts, and a status.
fn http_route() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "shop", "namespace": "shop-prod", "resourceVersion": "4711", "generation": 3},
        "spec": {
            "parentRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "infra"}],
            "hostnames": ["shop.example.com"],
            "rules": [
                {
                    "matches": [{"headers": [{"type": "Exact", "name": "x-beta", "value": "1"}], "path": {"type": "PathPrefix", "value": "/"}}],
                    "filters": [{"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-tier", "value": "beta"}]}}],
                    "backendRefs": [{"group": "", "kind": "Service", "name": "shop", "port": 80, "weight": 1}],
                },
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "timeouts": {"request": "10s"},
                    "backendRefs": [{
                        "group": "", "kind": "Service", "name": "shop", "port": 80, "weight": 1,
                        "filters": [{"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "x-served-by", "value": "shop"}]}}],
                    }],
                },
            ],
        },
        "status": {"parents": [{"parentRef": {"name": "public"}, "controllerName": "example.net/gateway", "conditions": []}]},
    })
}

fn backend_refs(route: &Value, rule: usize) -> &Value {
    &route["spec"]["rules"][rule]["backendRefs"]
}

#[test]
fn the_stable_service_selects_only_stable_pods_and_the_canary_service_only_canary_pods() {
    let s = services();
    assert_eq!(s.app, "shop");
    assert_eq!(s.stable.name, "shop");
    assert_eq!(s.canary.name, "shop-canary");
    let labels = |role: &str| {
        BTreeMap::from([
            ("app".to_string(), "shop".to_string()),
            ("bosun.dev/role".to_string(), role.to_string()),
        ])
    };
    assert_eq!(s.stable.selector, labels("stable"));
    assert_eq!(s.canary.selector, labels("canary"));
}

#[test]
fn every_router_takes_the_percentages_as_they_are() {
    for router in [Router::GatewayApi, Router::OpenshiftRoute, Router::Nginx] {
        for (canary, stable) in [(0, 100), (1, 99), (10, 90), (50, 50), (100, 0)] {
            assert_eq!(
                desired_weights(router, w(canary)),
                Weights { stable, canary },
                "{router:?} at {canary} %"
            );
        }
    }
    let routing = TrafficRouting::Nginx(NginxRouting {
        ingress: "shop".into(),
        annotation_prefix: None,
    });
    assert_eq!(Router::from(&routing), Router::Nginx);
}

#[test]
fn a_weight_is_a_percentage() {
    assert_eq!(Weight::new(0), Some(Weight::ZERO));
    assert_eq!(Weight::new(100), Some(Weight::FULL));
    assert_eq!(w(30).rest(), w(70));
    assert_eq!(Weight::new(101), None);
    assert_eq!(Weight::new(-1), None);
}

#[test]
fn a_route_with_a_header_match_rule_and_a_second_rule_keeps_both_only_the_weights_change() {
    let route = http_route();
    let patch = http_route_patch(&gateway(&[]), &route, &services(), w(10)).expect("a patch");
    let after = applied(&route, &patch);

    let mut expected = route.clone();
    for rule in [0, 1] {
        let refs = expected["spec"]["rules"][rule]["backendRefs"]
            .as_array_mut()
            .expect("a list");
        refs[0]["weight"] = json!(90);
        let mut canary = refs[0].clone();
        canary["name"] = json!("shop-canary");
        canary["weight"] = json!(10);
        refs.push(canary);
    }
    assert_eq!(after, expected);
    // The copy keeps what the stable backendRef had: group, kind, port, its own filters.
    assert_eq!(
        backend_refs(&after, 1)[1],
        json!({
            "group": "", "kind": "Service", "name": "shop-canary", "port": 80, "weight": 10,
            "filters": [{"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "x-served-by", "value": "shop"}]}}],
        })
    );
}

#[test]
fn only_the_listed_rules_change() {
    let route = http_route();
    let patch = http_route_patch(&gateway(&[1]), &route, &services(), w(25)).expect("a patch");
    let after = applied(&route, &patch);
    assert_eq!(backend_refs(&after, 0), backend_refs(&route, 0));
    let refs = backend_refs(&after, 1);
    assert_eq!(refs[0]["weight"], 75);
    assert_eq!(refs[1]["name"], "shop-canary");
    assert_eq!(refs[1]["weight"], 25);
}

#[test]
fn the_weight_moves_in_place_and_the_same_weight_again_is_no_write() {
    let services = services();
    let at_10 = applied(
        &http_route(),
        &http_route_patch(&gateway(&[]), &http_route(), &services, w(10)).expect("a patch"),
    );
    let to_50 = http_route_patch(&gateway(&[]), &at_10, &services, w(50)).expect("a patch");
    let ops: Vec<String> = to_50
        .0
        .iter()
        .map(|op| serde_json::to_string(op).expect("json"))
        .collect();
    assert!(
        ops.iter()
            .all(|op| op.contains("\"test\"") || op.contains("/weight")),
        "only weights change: {ops:?}"
    );
    let at_50 = applied(&at_10, &to_50);
    for rule in [0, 1] {
        assert_eq!(backend_refs(&at_50, rule)[0]["weight"], 50);
        assert_eq!(backend_refs(&at_50, rule)[1]["weight"], 50);
        assert_eq!(backend_refs(&at_50, rule).as_array().map(Vec::len), Some(2));
    }
    let again = http_route_patch(&gateway(&[]), &at_50, &services, w(50)).expect("a patch");
    assert!(again.0.is_empty(), "{again:?}");
}

#[test]
fn after_promotion_or_rollback_the_route_reads_as_the_user_wrote_it() {
    let services = services();
    let original = http_route();
    let mut route = original.clone();
    for weight in [10, 50, 100, 0] {
        let patch = http_route_patch(&gateway(&[]), &route, &services, w(weight)).expect("a patch");
        route = applied(&route, &patch);
        if weight == 100 {
            assert_eq!(
                backend_refs(&route, 1)[0]["weight"],
                0,
                "the stable backendRef stays, with no traffic"
            );
        }
    }
    assert_eq!(route, original);
    // A route written without weights (a server that did not default them) stays without.
    let mut bare = http_route();
    for rule in [0, 1] {
        bare["spec"]["rules"][rule]["backendRefs"][0]
            .as_object_mut()
            .expect("an object")
            .remove("weight");
    }
    let noop = http_route_patch(&gateway(&[]), &bare, &services, Weight::ZERO).expect("a patch");
    assert!(noop.0.is_empty(), "{noop:?}");
}

#[test]
fn a_route_edited_since_it_was_read_fails_the_patch_instead_of_changing_another_backend() {
    let services = services();
    let at_10 = applied(
        &http_route(),
        &http_route_patch(&gateway(&[]), &http_route(), &services, w(10)).expect("a patch"),
    );
    let to_50 = http_route_patch(&gateway(&[]), &at_10, &services, w(50)).expect("a patch");
    // Someone reorders the backendRefs of rule 1 before the patch lands.
    let mut edited = at_10.clone();
    edited["spec"]["rules"][1]["backendRefs"]
        .as_array_mut()
        .expect("a list")
        .reverse();
    let mut target = edited.clone();
    assert!(json_patch::patch(&mut target, &to_50).is_err());
}

#[test]
fn a_namespace_written_as_the_routes_own_is_the_same_service() {
    let mut route = http_route();
    route["spec"]["rules"][1]["backendRefs"][0]["namespace"] = json!("shop-prod");
    let patch = http_route_patch(&gateway(&[1]), &route, &services(), w(10)).expect("a patch");
    let after = applied(&route, &patch);
    assert_eq!(backend_refs(&after, 1)[1]["namespace"], "shop-prod");
}

#[test]
fn http_route_errors_name_the_route_and_the_field() {
    let services = services();
    let patch =
        |spec: &GatewayApiRouting, route: &Value| http_route_patch(spec, route, &services, w(10));

    let mut elsewhere = http_route();
    for rule in [0, 1] {
        elsewhere["spec"]["rules"][rule]["backendRefs"][0]["name"] = json!("shop-v1");
    }
    let e = patch(&gateway(&[]), &elsewhere).expect_err("no rule to the app");
    assert!(matches!(e, RoutingError::NoStableBackend { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "HTTPRoute shop: no rule sends traffic to Service shop (spec.rules[].backendRefs); point \
         the rule that serves the app at Service shop"
    );

    let e = patch(&gateway(&[0, 2]), &http_route()).expect_err("rule 2 is not there");
    assert_eq!(
        e.to_string(),
        "HTTPRoute shop: trafficRouting.gatewayAPI.rules lists rule 2, but the route has 2 rule(s) \
         (spec.rules[0] to spec.rules[2-1])"
    );

    let mut redirect = http_route();
    redirect["spec"]["rules"][0] =
        json!({"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]});
    let e = patch(&gateway(&[0]), &redirect).expect_err("rule 0 redirects");
    assert_eq!(
        e.to_string(),
        "HTTPRoute shop: spec.rules[0], listed in trafficRouting.gatewayAPI.rules, has no \
         backendRef to Service shop"
    );
    assert!(
        patch(&gateway(&[]), &redirect).is_ok(),
        "unlisted, a rule without the app is left alone"
    );

    let mut foreign = http_route();
    foreign["spec"]["rules"][1]["backendRefs"][0]["namespace"] = json!("shop-staging");
    let e = patch(&gateway(&[]), &foreign).expect_err("another namespace");
    assert_eq!(
        e.to_string(),
        "HTTPRoute shop: spec.rules[1].backendRefs[0] names Service shop in namespace \
         shop-staging; Bosun routes only to the app's own Services, in the namespace of the \
         HTTPRoute"
    );

    let mut shared = http_route();
    shared["spec"]["rules"][1]["backendRefs"][0]["weight"] = json!(9);
    shared["spec"]["rules"][1]["backendRefs"]
        .as_array_mut()
        .expect("a list")
        .push(
            json!({"group": "", "kind": "Service", "name": "shop-legacy", "port": 80, "weight": 1}),
        );
    let e = patch(&gateway(&[]), &shared).expect_err("a third backend");
    assert_eq!(
        e.to_string(),
        "HTTPRoute shop: spec.rules[1].backendRefs[1] sends traffic to Service shop-legacy beside \
         the app's Services; Bosun's weights are percentages and would change its share: give it \
         a rule of its own"
    );
    assert!(
        patch(&gateway(&[0]), &shared).is_ok(),
        "a rule left out of the list may share"
    );

    let mut import = http_route();
    import["spec"]["rules"][0]["backendRefs"]
        .as_array_mut()
        .expect("a list")
        .push(json!({"group": "multicluster.x-k8s.io", "kind": "ServiceImport", "name": "shop", "port": 80, "weight": 1}));
    let e = patch(&gateway(&[]), &import).expect_err("a ServiceImport of the same name");
    assert!(
        e.to_string()
            .contains("spec.rules[0].backendRefs[1] sends traffic to ServiceImport shop"),
        "{e}"
    );

    let mut twice = http_route();
    let first = twice["spec"]["rules"][0]["backendRefs"][0].clone();
    twice["spec"]["rules"][0]["backendRefs"]
        .as_array_mut()
        .expect("a list")
        .push(first);
    let e = patch(&gateway(&[]), &twice).expect_err("the app twice");
    assert_eq!(
        e.to_string(),
        "HTTPRoute shop: spec.rules[0].backendRefs names Service shop more than once; keep one"
    );

    let mut broken = http_route();
    broken["spec"]["rules"] = json!({"backendRefs": []});
    let e = patch(&gateway(&[]), &broken).expect_err("not a list");
    assert_eq!(e.to_string(), "HTTPRoute shop: spec.rules is not a list");
}

/// An OpenShift Route as the API server returns it.
fn openshift_route() -> Value {
    json!({
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {"name": "shop-web", "namespace": "shop-prod", "annotations": {"haproxy.router.openshift.io/balance": "roundrobin"}},
        "spec": {
            "host": "shop.apps.example.com",
            "path": "/",
            "to": {"kind": "Service", "name": "shop", "weight": 100},
            "port": {"targetPort": "http"},
            "tls": {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"},
            "wildcardPolicy": "None",
        },
        "status": {"ingress": [{"host": "shop.apps.example.com", "routerName": "default"}]},
    })
}

fn openshift() -> OpenshiftRouteRouting {
    OpenshiftRouteRouting {
        route: "shop-web".into(),
    }
}

#[test]
fn a_route_sends_the_canary_share_to_an_alternate_backend_and_drops_it_at_zero() {
    let services = services();
    let original = openshift_route();
    let at_10 = applied(
        &original,
        &openshift_route_patch(&openshift(), &original, &services, w(10)).expect("a patch"),
    );
    let mut expected = original.clone();
    expected["spec"]["to"]["weight"] = json!(90);
    expected["spec"]["alternateBackends"] =
        json!([{"kind": "Service", "name": "shop-canary", "weight": 10}]);
    assert_eq!(at_10, expected);

    let at_100 = applied(
        &at_10,
        &openshift_route_patch(&openshift(), &at_10, &services, w(100)).expect("a patch"),
    );
    assert_eq!(at_100["spec"]["to"]["weight"], 0);
    assert_eq!(at_100["spec"]["alternateBackends"][0]["weight"], 100);
    let again = openshift_route_patch(&openshift(), &at_100, &services, w(100)).expect("a patch");
    assert!(again.0.is_empty(), "{again:?}");

    let back = applied(
        &at_100,
        &openshift_route_patch(&openshift(), &at_100, &services, Weight::ZERO).expect("a patch"),
    );
    assert_eq!(back, original, "the Route reads as written");
}

#[test]
fn route_errors_name_the_route_and_the_field() {
    let services = services();
    let mut other = openshift_route();
    other["spec"]["to"]["name"] = json!("shop-v1");
    let e = openshift_route_patch(&openshift(), &other, &services, w(10)).expect_err("not stable");
    assert_eq!(
        e.to_string(),
        "Route shop-web: spec.to is Service shop-v1, not the app's stable Service shop; point \
         spec.to at Service shop"
    );

    let mut ab = openshift_route();
    ab["spec"]["alternateBackends"] =
        json!([{"kind": "Service", "name": "shop-experiment", "weight": 20}]);
    let e = openshift_route_patch(&openshift(), &ab, &services, w(10)).expect_err("shared");
    assert_eq!(
        e.to_string(),
        "Route shop-web: spec.alternateBackends[0] sends traffic to Service shop-experiment \
         beside the app's Services; Bosun's weights are percentages and would change its share: \
         give it a rule of its own"
    );
}

/// A primary Ingress for ingress-nginx: the app's host, an API path of another Service, an admin
/// host of another Service, TLS, and annotations of its own.
fn primary_ingress() -> Value {
    json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "shop-web",
            "namespace": "shop-prod",
            "annotations": {
                "nginx.ingress.kubernetes.io/proxy-body-size": "8m",
                "cert-manager.io/cluster-issuer": "letsencrypt",
            },
            "labels": {"team": "shop"},
        },
        "spec": {
            "ingressClassName": "nginx",
            "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
            "rules": [
                {"host": "shop.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "shop", "port": {"number": 80}}}},
                    {"path": "/api", "pathType": "Prefix", "backend": {"service": {"name": "shop-api", "port": {"name": "http"}}}},
                ]}},
                {"host": "admin.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "shop-admin", "port": {"number": 8080}}}},
                ]}},
            ],
        },
    })
}

fn nginx(prefix: Option<&str>) -> NginxRouting {
    NginxRouting {
        ingress: "shop-web".into(),
        annotation_prefix: prefix.map(str::to_string),
    }
}

#[test]
fn the_canary_ingress_copies_the_hosts_and_paths_of_the_app_pointed_at_the_canary_service() {
    let owner = OwnerReference {
        api_version: "apps.example.com/v1alpha1".into(),
        kind: "ManagedApplication".into(),
        name: "shop".into(),
        uid: "6f1c".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let canary = nginx_canary_ingress(
        &nginx(None),
        &primary_ingress(),
        &services(),
        w(10),
        Some(&owner),
    )
    .expect("a canary Ingress");
    assert_eq!(
        canary,
        CanaryIngress::Apply(json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "shop-web-canary",
                "labels": {"app": "shop", "bosun.dev/app": "shop", "bosun.dev/role": "canary"},
                "annotations": {
                    "nginx.ingress.kubernetes.io/canary": "true",
                    "nginx.ingress.kubernetes.io/canary-weight": "10",
                    "nginx.ingress.kubernetes.io/canary-weight-total": "100",
                },
                "ownerReferences": [{
                    "apiVersion": "apps.example.com/v1alpha1", "kind": "ManagedApplication",
                    "name": "shop", "uid": "6f1c", "controller": true, "blockOwnerDeletion": true,
                }],
            },
            "spec": {
                "ingressClassName": "nginx",
                "tls": [{"hosts": ["shop.example.com"], "secretName": "shop-tls"}],
                "rules": [{"host": "shop.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "shop-canary", "port": {"number": 80}}}},
                ]}}],
            },
        }))
    );
}

#[test]
fn a_custom_prefix_and_the_legacy_class_annotation_are_carried_and_weight_zero_deletes() {
    let mut primary = primary_ingress();
    primary["spec"]
        .as_object_mut()
        .expect("an object")
        .remove("ingressClassName");
    primary["metadata"]["annotations"]["kubernetes.io/ingress.class"] = json!("nginx-internal");
    let Ok(CanaryIngress::Apply(canary)) = nginx_canary_ingress(
        &nginx(Some("internal.nginx.example.com")),
        &primary,
        &services(),
        w(35),
        None,
    ) else {
        panic!("a canary Ingress to apply")
    };
    assert_eq!(
        canary["metadata"]["annotations"],
        json!({
            "internal.nginx.example.com/canary": "true",
            "internal.nginx.example.com/canary-weight": "35",
            "internal.nginx.example.com/canary-weight-total": "100",
            "kubernetes.io/ingress.class": "nginx-internal",
        })
    );
    assert!(canary["metadata"].get("ownerReferences").is_none());
    assert!(canary["spec"].get("ingressClassName").is_none());

    assert_eq!(
        nginx_canary_ingress(&nginx(None), &primary, &services(), Weight::ZERO, None),
        Ok(CanaryIngress::Delete {
            name: "shop-web-canary".into()
        })
    );
}

#[test]
fn a_primary_ingress_without_a_path_to_the_app_is_refused() {
    let mut primary = primary_ingress();
    primary["spec"]["rules"][0]["http"]["paths"]
        .as_array_mut()
        .expect("a list")
        .remove(0);
    for weight in [w(10), Weight::ZERO] {
        let e = nginx_canary_ingress(&nginx(None), &primary, &services(), weight, None)
            .expect_err("no path to the app");
        assert_eq!(
            e.to_string(),
            "Ingress shop-web: no rule sends traffic to Service shop \
             (spec.rules[].http.paths[].backend.service.name); point the rule that serves the app \
             at Service shop"
        );
    }
}

#[test]
fn ten_percent_with_3_pods_is_exact() {
    // Without a router 3 pods can carry 0, 33, 66 or 100 %; with one, the route carries 10 % exactly
    // and the canary needs only the pods for its share.
    assert_eq!(
        desired_weights(Router::GatewayApi, w(10)),
        Weights {
            stable: 90,
            canary: 10
        }
    );
    assert_eq!(
        canary_replicas(3, w(10), false),
        Split {
            stable: 3,
            canary: 1
        }
    );
    assert_eq!(
        canary_replicas(3, w(10), true),
        Split {
            stable: 3,
            canary: 1
        }
    );
}

#[test]
fn replicas_per_side_with_and_without_dynamic_stable_scale() {
    // (total, weight, canary, stable, stable with dynamicStableScale)
    let table = [
        (10, 0, 0, 10, 10),
        (10, 10, 1, 10, 9),
        (10, 25, 3, 10, 8),
        (10, 50, 5, 10, 5),
        (10, 99, 10, 10, 1),
        (10, 100, 10, 10, 0),
        (4, 10, 1, 4, 4),
        (1, 1, 1, 1, 1),
        (1, 100, 1, 1, 0),
        (0, 50, 0, 0, 0),
        (-3, 50, 0, 0, 0),
        (10_000, 1, 100, 10_000, 9_900),
    ];
    for (total, weight, canary, stable, dynamic) in table {
        assert_eq!(
            canary_replicas(total, w(weight), false),
            Split { stable, canary },
            "{total} pods at {weight} %"
        );
        assert_eq!(
            canary_replicas(total, w(weight), true),
            Split {
                stable: dynamic,
                canary
            },
            "{total} pods at {weight} %, dynamicStableScale"
        );
    }
    for total in 1..=20 {
        for weight in 1..=100 {
            let split = canary_replicas(total, w(weight), true);
            assert!(split.canary >= 1, "{total} at {weight}");
            assert!(
                split.stable + split.canary <= total + 1,
                "rounding both up costs at most one pod"
            );
        }
    }
}

#[test]
fn a_step_scales_the_canary_up_and_waits_for_it_before_it_takes_traffic() {
    assert_eq!(
        step_writes(10, w(10), w(30), false),
        [
            Write::ScaleCanary(3),
            Write::AwaitCanaryReady,
            Write::SetWeight(w(30))
        ]
    );
    assert_eq!(
        step_writes(10, w(10), w(30), true),
        [
            Write::ScaleCanary(3),
            Write::AwaitCanaryReady,
            Write::SetWeight(w(30)),
            Write::ScaleStable(7),
        ],
        "the stable side shrinks only once the traffic has left it"
    );
}

#[test]
fn a_step_down_gives_the_stable_side_its_pods_back_before_its_traffic() {
    assert_eq!(
        step_writes(10, w(50), w(20), true),
        [
            Write::ScaleStable(8),
            Write::AwaitStableReady,
            Write::SetWeight(w(20)),
            Write::ScaleCanary(2),
        ]
    );
    assert_eq!(
        step_writes(10, w(50), w(20), false),
        [Write::SetWeight(w(20)), Write::ScaleCanary(2)]
    );
}

#[test]
fn promotion_moves_all_traffic_to_the_canary_then_back_to_the_promoted_stable_side() {
    assert_eq!(
        promotion_writes(4, w(50), false),
        [
            Write::ScaleCanary(4),
            Write::AwaitCanaryReady,
            Write::SetWeight(Weight::FULL),
            Write::StableTakesTarget { replicas: 4 },
            Write::AwaitStableReady,
            Write::SetWeight(Weight::ZERO),
            Write::ScaleCanary(0),
        ]
    );
}

#[test]
fn rollback_sets_the_canary_weight_to_0_before_anything_else() {
    for dynamic in [false, true] {
        for weight in [1, 10, 50, 99] {
            let writes = rollback_writes(10, RollbackFrom::Step(w(weight)), dynamic);
            assert_eq!(
                writes.first(),
                Some(&Write::SetWeight(Weight::ZERO)),
                "{weight} %"
            );
            assert_eq!(writes.last(), Some(&Write::ScaleCanary(0)));
            assert!(!writes.contains(&Write::AwaitCanaryReady));
        }
    }
    assert_eq!(
        rollback_writes(10, RollbackFrom::Step(w(40)), true),
        [
            Write::SetWeight(Weight::ZERO),
            Write::ScaleStable(10),
            Write::ScaleCanary(0)
        ]
    );
}

#[test]
fn a_rollback_with_no_stable_side_to_serve_brings_it_back_before_the_traffic() {
    assert_eq!(
        rollback_writes(6, RollbackFrom::Step(Weight::FULL), true),
        [
            Write::ScaleStable(6),
            Write::AwaitStableReady,
            Write::SetWeight(Weight::ZERO),
            Write::ScaleCanary(0),
        ]
    );
    assert_eq!(
        rollback_writes(6, RollbackFrom::Promotion, false),
        [
            Write::StableRestoresLastHealthy { replicas: 6 },
            Write::AwaitStableReady,
            Write::SetWeight(Weight::ZERO),
            Write::ScaleCanary(0),
        ]
    );
}

/// What each side can serve while writes are carried out: pods asked for, and pods known ready.
#[derive(Debug)]
struct Sides {
    canary: (i32, i32),
    stable: (i32, i32),
    weight: Weight,
}

impl Sides {
    fn run(&mut self, writes: &[Write], check: impl Fn(&Sides, Weight)) {
        let scale = |(_, ready): (i32, i32), n: i32| (n, ready.min(n));
        for write in writes {
            match *write {
                Write::ScaleCanary(n) => self.canary = scale(self.canary, n),
                Write::ScaleStable(n) => self.stable = scale(self.stable, n),
                Write::AwaitCanaryReady => self.canary.1 = self.canary.0,
                Write::AwaitStableReady => self.stable.1 = self.stable.0,
                Write::StableTakesTarget { replicas } => self.stable = (replicas, 0),
                Write::StableRestoresLastHealthy { replicas } => self.stable = (replicas, 0),
                Write::SetWeight(to) => {
                    check(self, to);
                    self.weight = to;
                }
            }
        }
    }
}

#[test]
fn every_step_and_promotion_keeps_each_side_able_to_carry_its_share() {
    let weights = [0, 1, 10, 25, 50, 75, 99, 100];
    for dynamic in [false, true] {
        for total in 1..=7 {
            for from in weights {
                let start = canary_replicas(total, w(from), dynamic);
                let plans = weights
                    .iter()
                    .map(|to| step_writes(total, w(from), w(*to), dynamic))
                    .chain([promotion_writes(total, w(from), dynamic)]);
                for writes in plans {
                    let mut sides = Sides {
                        canary: (start.canary, start.canary),
                        stable: (start.stable, start.stable),
                        weight: w(from),
                    };
                    sides.run(&writes, |s, to| {
                        let need = canary_replicas(total, to, true);
                        assert!(
                            s.canary.1 >= need.canary && s.stable.1 >= need.stable,
                            "{total} pods, {from} % → {to:?}, dynamic {dynamic}: {s:?} in {writes:?}"
                        );
                    });
                }
            }
        }
    }
}

#[test]
fn a_rollback_never_sends_traffic_to_a_side_without_ready_pods() {
    for dynamic in [false, true] {
        for total in 1..=7 {
            for from in [1, 10, 50, 99, 100] {
                let start = canary_replicas(total, w(from), dynamic);
                let mut sides = Sides {
                    canary: (start.canary, start.canary),
                    stable: (start.stable, start.stable),
                    weight: w(from),
                };
                let writes = rollback_writes(total, RollbackFrom::Step(w(from)), dynamic);
                sides.run(&writes, |s, to| {
                    assert_eq!(to, Weight::ZERO);
                    assert!(s.stable.1 >= 1, "{total} pods at {from} %: {s:?}");
                });
                assert_eq!(sides.weight, Weight::ZERO);
                assert_eq!(sides.canary.0, 0);
                assert_eq!(sides.stable.0, total);
            }
            let mut promoting = Sides {
                canary: (total, total),
                stable: (total, 0),
                weight: Weight::FULL,
            };
            let writes = rollback_writes(total, RollbackFrom::Promotion, dynamic);
            promoting.run(&writes, |s, _| {
                assert_eq!(s.stable.1, total, "{s:?}");
            });
        }
    }
}
