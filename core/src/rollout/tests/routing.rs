//! Canary traffic through a router (`trafficRouting`): exact weights whatever the pod count, and the
//! order of the writes — pods before traffic on a step, all traffic to the canary before the stable
//! Deployment changes on a promotion, and the canary's traffic gone first on a rollback. The World
//! keeps the router's weight and the writes in order (`writes`).

use super::*;
use crate::model::{GatewayApiRouting, TrafficRouting};

/// Three pods, canary steps of 10 % (until promoted) and 50 %, through an HTTPRoute.
fn routed(version: &str) -> ManagedApplicationSpec {
    let mut s = checked(canary(
        version,
        &[(10, Some(Pause::UntilPromoted)), (50, None)],
    ));
    s.replicas = Some(3);
    s.upgrade_strategy.traffic_routing = Some(TrafficRouting::GatewayApi(GatewayApiRouting {
        http_route: "shop".into(),
        rules: Vec::new(),
    }));
    s
}

#[test]
fn ten_percent_of_three_pods_is_exact_and_the_canary_is_ready_before_it_takes_traffic() {
    let mut w = World::deployed(&routed("v1"));
    w.writes.clear();
    let v2 = routed("v2");
    w.settle(&v2);
    assert_eq!(w.status.step_index, Some(0), "waits to be promoted");
    assert_eq!(w.status.canary_weight, Some(10));
    assert_eq!(w.route, 10);
    // One canary pod, all three stable pods kept; the weight only once the canary is ready.
    assert_eq!(w.writes, ["canary v2 x1", "route 10"]);
    assert_eq!(w.stable(), Some(("v1", 3)));
}

#[test]
fn a_promotion_sends_all_traffic_to_the_canary_before_the_stable_deployment_changes() {
    let mut w = World::deployed(&routed("v1"));
    let v2 = routed("v2");
    w.settle(&v2);
    w.writes.clear();
    w.observed.promoted = true;
    w.settle(&v2);
    w.observed.promoted = false;
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Healthy), "{:?}", w.status);
    assert_eq!(
        w.writes,
        [
            "canary v2 x2",
            "route 50",
            "canary v2 x3",
            "route 100",
            "stable v2 x3",
            "route 0",
            "remove canary"
        ]
    );
    assert_eq!(w.route, 0, "the route reads as the user wrote it");
}

#[test]
fn a_rollback_takes_the_canarys_traffic_away_first() {
    let mut w = World::deployed(&routed("v1"));
    w.unhealthy_version = Some("v2".into());
    w.writes.clear();
    let v2 = routed("v2");
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Failed));
    // The canary never took traffic (it failed its checks at step 1, after the weight was set):
    // the weight goes to 0 before the canary is removed.
    let route_0 = w.writes.iter().position(|x| x == "route 0");
    let removed = w.writes.iter().position(|x| x == "remove canary");
    assert!(route_0.is_some() && route_0 < removed, "{:?}", w.writes);
    assert_eq!(w.route, 0);
    assert_eq!(w.stable(), Some(("v1", 3)));
}

#[test]
fn without_a_router_the_pods_carry_the_weight_as_before() {
    let mut s1 = routed("v1");
    s1.upgrade_strategy.traffic_routing = None;
    let mut w = World::deployed(&s1);
    let mut v2 = routed("v2");
    v2.upgrade_strategy.traffic_routing = None;
    w.settle(&v2);
    // 10 % of 3 pods: one canary pod of three, 33 %.
    assert_eq!(w.status.canary_weight, Some(33));
    assert!(
        w.writes.iter().all(|x| !x.starts_with("route")),
        "{:?}",
        w.writes
    );
}
