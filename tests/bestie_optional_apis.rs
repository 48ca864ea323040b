//! The Bestie controller where optional APIs are served: OpenShift's `Route` and Crunchy's
//! `PostgresCluster`. Each test installs the CRD of that API (no operator behind it; the test plays the
//! operator's part where one is needed) and removes it afterwards: the real Route CRD as
//! `github.com/openshift/api` ships it (fetched by `scripts/crds-upstream`), so that its schema judges
//! what Bestie writes, and a schemaless stand-in for `PostgresCluster`. CRDs are cluster-wide, so the
//! tests of this binary run one at a time, and no other test binary runs beside them (`cargo test` runs
//! binaries one after another).

mod support;

use std::time::Duration;

use bosun_core::model::Bestie;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::{Api, Client};
use serde_json::json;
use support::crds::{self, InstalledCrd};
use support::{TestNamespace, holds_for, install_crds, wait_until};

const SEED_001: &str = include_str!("../fixtures/seeds/001-bestie.yaml");

/// One test at a time: the CRDs they install are cluster-wide.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// OpenShift's Route CRD as `github.com/openshift/api` ships it (`scripts/crds-upstream`).
const ROUTE_CRD: &str = "route.openshift.io_routes.yaml";

/// Crunchy's `PostgresCluster`: group, version, kind, plural.
const POSTGRES_CLUSTER: (&str, &str, &str, &str) = (
    "postgres-operator.crunchydata.com",
    "v1beta1",
    "PostgresCluster",
    "postgresclusters",
);

/// A stand-in for Crunchy's `PostgresCluster` CRD: schemaless, with a status subresource. The real one
/// is not to be had here: the Go module proxy serves no version of `postgres-operator` that has it.
async fn install_postgres_cluster_stand_in(client: &Client) -> InstalledCrd {
    let (group, version, kind, plural) = POSTGRES_CLUSTER;
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{group}")},
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase(), "listKind": format!("{kind}List")},
            "versions": [{
                "name": version,
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
            }],
        }
    });
    crds::install(client, &crd).await
}

fn dynamic(
    ns: &TestNamespace,
    group: &str,
    version: &str,
    kind: &str,
    plural: &str,
) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(ns.client.clone(), &ns.name, &ar)
}

async fn create_bestie(ns: &TestNamespace, value: serde_json::Value) {
    let bestie: Bestie = serde_json::from_value(value).expect("a Bestie");
    ns.api::<Bestie>()
        .create(&PostParams::default(), &bestie)
        .await
        .expect("create the Bestie");
}

fn owned_by_bestie(o: &DynamicObject) -> bool {
    o.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|r| r.kind == "Bestie" && r.name == "bestie" && r.controller == Some(true))
}

#[tokio::test]
async fn a_route_is_created_instead_of_an_ingress_where_openshift_routes_exist() {
    let _serial = SERIAL.lock().await;
    let ns = TestNamespace::new("bestie-route").await;
    install_crds(&ns.client).await;
    let _crd = crds::install_upstream(&ns.client, ROUTE_CRD).await;
    let controller = tokio::spawn(bosun::bestie::run(ns.client.clone(), Some(ns.name.clone())));

    create_bestie(
        &ns,
        json!({
            "apiVersion": "pets.bestie.com/v1",
            "kind": "Bestie",
            "metadata": {"name": "bestie"},
            "spec": {"size": 1, "image": "quay.io/opdev/bestie", "version": "1.3",
                     "host": "pets.example.com", "database": {"enabled": false}},
        }),
    )
    .await;
    let routes = dynamic(&ns, "route.openshift.io", "v1", "Route", "routes");
    let route = wait_until("the Route", || async {
        routes.get_opt("bestie-app").await.ok().flatten()
    })
    .await;
    assert!(owned_by_bestie(&route));
    assert_eq!(route.data["spec"]["host"], "pets.example.com");
    assert_eq!(route.data["spec"]["to"]["name"], "bestie-app");
    holds_for(
        "no Ingress beside the Route",
        Duration::from_secs(3),
        || async {
            ns.api::<Ingress>()
                .get_opt("bestie-app")
                .await
                .ok()
                .flatten()
                .is_none()
        },
    )
    .await;
    controller.abort();
}

#[tokio::test]
async fn an_ingress_gives_way_to_a_route_once_the_route_api_is_installed() {
    let _serial = SERIAL.lock().await;
    let ns = TestNamespace::new("bestie-route-later").await;
    install_crds(&ns.client).await;
    let controller = tokio::spawn(bosun::bestie::run_with(
        ns.client.clone(),
        Some(ns.name.clone()),
        Duration::from_secs(1),
    ));
    create_bestie(
        &ns,
        json!({
            "apiVersion": "pets.bestie.com/v1",
            "kind": "Bestie",
            "metadata": {"name": "bestie"},
            "spec": {"size": 1, "image": "quay.io/opdev/bestie", "version": "1.3", "database": {"enabled": false}},
        }),
    )
    .await;
    wait_until("the Ingress, while no Route API exists", || async {
        ns.api::<Ingress>()
            .get_opt("bestie-app")
            .await
            .ok()
            .flatten()
    })
    .await;

    let _crd = crds::install_upstream(&ns.client, ROUTE_CRD).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // past the discovery TTL
    // Nothing the controller watches changes when an API appears: wake it as any edit would.
    ns.api::<Bestie>()
        .patch(
            "bestie",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touch": "1"}}})),
        )
        .await
        .expect("annotate the Bestie");
    let routes = dynamic(&ns, "route.openshift.io", "v1", "Route", "routes");
    wait_until("the Route, and the Ingress removed", || async {
        let route = routes.get_opt("bestie-app").await.ok().flatten()?;
        let ingress = ns.api::<Ingress>().get_opt("bestie-app").await.ok()?;
        (owned_by_bestie(&route) && ingress.is_none()).then_some(())
    })
    .await;
    controller.abort();
}

#[tokio::test]
async fn a_postgres_cluster_is_the_database_where_the_crunchy_operator_is_installed() {
    let _serial = SERIAL.lock().await;
    let ns = TestNamespace::new("bestie-crunchy").await;
    install_crds(&ns.client).await;
    let (group, version, kind, plural) = POSTGRES_CLUSTER;
    let _crd = install_postgres_cluster_stand_in(&ns.client).await;
    let controller = tokio::spawn(bosun::bestie::run(ns.client.clone(), Some(ns.name.clone())));

    let seed: serde_json::Value = serde_saphyr::from_str(SEED_001).expect("seed 001's YAML");
    create_bestie(&ns, seed).await;
    let clusters = dynamic(&ns, group, version, kind, plural);
    let pg = wait_until("the PostgresCluster", || async {
        clusters.get_opt("bestie-db").await.ok().flatten()
    })
    .await;
    assert!(owned_by_bestie(&pg));
    assert_eq!(pg.data["spec"]["users"][0]["name"], "bestie");
    holds_for(
        "no StatefulSet, no generated Secret, no seed Job while the cluster is not ready",
        Duration::from_secs(3),
        || async {
            ns.api::<StatefulSet>()
                .get_opt("bestie-db")
                .await
                .ok()
                .flatten()
                .is_none()
                && ns
                    .api::<Secret>()
                    .get_opt("bestie-db")
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                && ns
                    .api::<Job>()
                    .get_opt("bestie-seed")
                    .await
                    .ok()
                    .flatten()
                    .is_none()
        },
    )
    .await;

    // The operator's part: the user Secret, and an instance ready.
    let user_secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "bestie-db-pguser-bestie"},
        "stringData": {"host": "bestie-db-primary", "port": "5432", "dbname": "bestie", "user": "bestie",
                       "password": "from-the-operator", "uri": "postgresql://bestie@bestie-db-primary/bestie"},
    }))
    .expect("a Secret");
    ns.api::<Secret>()
        .create(&PostParams::default(), &user_secret)
        .await
        .expect("create the operator's user Secret");
    clusters
        .patch_status(
            "bestie-db",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"instances": [{"name": "instance1", "replicas": 1, "readyReplicas": 1}]}})),
        )
        .await
        .expect("mark the PostgresCluster ready");

    let job = wait_until("the seed Job", || async {
        ns.api::<Job>().get_opt("bestie-seed").await.ok().flatten()
    })
    .await;
    let env = job
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers[0].env.clone().unwrap_or_default())
        .unwrap_or_default();
    assert!(
        env.iter().any(|e| e
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
            .is_some_and(|s| s.name == "bestie-db-pguser-bestie")),
        "the seed reads the operator's user Secret: {env:?}"
    );
    wait_until("the app Deployment", || async {
        ns.api::<Deployment>()
            .get_opt("bestie-app")
            .await
            .ok()
            .flatten()
    })
    .await;
    assert!(
        ns.api::<StatefulSet>()
            .get_opt("bestie-db")
            .await
            .expect("get")
            .is_none(),
        "no StatefulSet database beside the PostgresCluster"
    );
    controller.abort();
}
