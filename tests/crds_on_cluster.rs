//! The CRDs in deploy/crds on a real API server: what `bosun validate` accepts, the API server accepts;
//! what the schema forbids, the API server refuses too.

mod support;

use bosun_core::validate::{Resource, validate_file};
use bosun_core::yaml::Limits;
use kube::Api;
use kube::api::PostParams;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use support::{TestNamespace, install_crds};

fn api_for(ns: &TestNamespace, api_version: &str, kind: &str) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').expect("group/version");
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    Api::namespaced_with(ns.client.clone(), &ns.name, &ar)
}

async fn create(ns: &TestNamespace, json: serde_json::Value) -> Result<DynamicObject, kube::Error> {
    let api = api_for(
        ns,
        json["apiVersion"].as_str().expect("apiVersion"),
        json["kind"].as_str().expect("kind"),
    );
    let obj: DynamicObject = serde_json::from_value(json).expect("object");
    api.create(&PostParams::default(), &obj).await
}

#[tokio::test]
async fn what_validate_accepts_the_api_server_accepts() {
    let ns = TestNamespace::new("crds-accept").await;
    install_crds(&ns.client).await;
    let files = [
        "fixtures/seeds/000-bestie.yaml",
        "fixtures/seeds/002-my-app.yaml",
        "examples/apps/shop/frontend.yaml",
        "examples/apps/shop/orders.yaml",
    ];
    for file in files {
        let text = std::fs::read_to_string(file).expect("fixture");
        let report = validate_file(file, &text, &Limits::default());
        assert!(report.findings.is_empty(), "{file}: {:?}", report.findings);
        for def in report.definitions {
            // What Bosun will apply: the typed resource, re-serialized, in the test namespace.
            let mut json = match &def.resource {
                Resource::ManagedApplication(r) => serde_json::to_value(r),
                Resource::Bestie(r) => serde_json::to_value(r),
            }
            .expect("serializes");
            json["metadata"]["namespace"] = serde_json::Value::Null;
            let created = create(&ns, json).await.unwrap_or_else(|e| {
                panic!("{file}: the API server refused a valid definition: {e}")
            });
            assert_eq!(created.metadata.name.as_deref(), Some(def.name()));
        }
    }
}

#[tokio::test]
async fn what_the_schema_forbids_the_api_server_refuses_too() {
    let ns = TestNamespace::new("crds-refuse").await;
    install_crds(&ns.client).await;
    let base = serde_json::json!({
        "apiVersion": "apps.example.com/v1alpha1",
        "kind": "ManagedApplication",
        "metadata": {"name": "shop"},
        "spec": {"version": "v1", "upgradeStrategy": {"type": "Canary", "canary": {"steps": [{"weight": 10}]}}}
    });
    let mut cases = Vec::new();
    let mut weight = base.clone();
    weight["spec"]["upgradeStrategy"]["canary"]["steps"][0]["weight"] = 150.into();
    cases.push(("weight 150", weight));
    let mut strategy = base.clone();
    strategy["spec"]["upgradeStrategy"]["type"] = "FastForward".into();
    cases.push(("unknown strategy", strategy));
    let mut version = base.clone();
    version["spec"]["version"] = 1.1.into();
    cases.push(("numeric version", version));
    let mut missing = base.clone();
    missing["spec"]
        .as_object_mut()
        .expect("object")
        .remove("version");
    cases.push(("missing version", missing));
    let mut path = base.clone();
    path["spec"]["upgradeStrategy"]["healthCheck"] =
        serde_json::json!({"httpGet": {"path": "/health\r\nX-Injected: 1", "port": 8080}});
    cases.push(("a health check path with CR LF", path));
    let mut huge = base.clone();
    huge["spec"]["version"] = "x".repeat(200 * 1024).into();
    cases.push(("a 200 KB version (kubectl edit)", huge));
    let mut spaced = base.clone();
    spaced["spec"]["version"] = "v1 beta".into();
    cases.push(("a version that is no image tag", spaced));
    for (what, json) in cases {
        let err = create(&ns, json).await.expect_err(what);
        assert!(
            matches!(&err, kube::Error::Api(s) if s.code == 422),
            "{what}: {err:?}"
        );
    }
    create(&ns, base).await.expect("the base object is valid");
}
