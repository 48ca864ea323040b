//! The test cluster itself: a real control plane with kwok nodes behaves as the other tests rely on.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde_json::json;
use support::{TestNamespace, holds_for, restricted_client, wait_until};

fn deployment(name: &str, image: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image}]}
            }
        }
    }))
    .expect("deployment object")
}

fn job(name: &str, image: &str) -> Job {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "job", "image": image}]
            }}
        }
    }))
    .expect("job object")
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn pods_of(ns: &TestNamespace, app: &str) -> Vec<Pod> {
    ns.api::<Pod>()
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .expect("list pods")
        .items
}

#[tokio::test]
async fn a_deployment_is_scheduled_onto_a_kwok_node_and_becomes_ready() {
    let ns = TestNamespace::new("cluster-deploy").await;
    ns.api::<Deployment>()
        .create(&PostParams::default(), &deployment("web", "nginx:1.0", 2))
        .await
        .expect("create deployment");

    let ready = wait_until("web's 2 pods Ready", || async {
        let pods = pods_of(&ns, "web").await;
        (pods.len() == 2 && pods.iter().all(is_ready)).then_some(pods)
    })
    .await;

    let rs = ns
        .api::<ReplicaSet>()
        .list(&ListParams::default())
        .await
        .expect("list rs");
    assert_eq!(
        rs.items.len(),
        1,
        "the Deployment controller made one ReplicaSet"
    );
    let nodes = Api::<Node>::all(ns.client.clone())
        .list(&ListParams::default())
        .await
        .expect("nodes");
    let node_names: Vec<_> = nodes
        .items
        .iter()
        .filter_map(|n| n.metadata.name.clone())
        .collect();
    for pod in &ready {
        let spec = pod.spec.as_ref().expect("spec");
        let node = spec.node_name.as_deref().expect("scheduled");
        assert!(
            node_names.iter().any(|n| n == node),
            "scheduled onto a kwok node, got {node}"
        );
        let ip: std::net::IpAddr = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .expect("a pod IP")
            .parse()
            .expect("an IP address");
        assert!(
            ip.is_loopback(),
            "pod addresses are loopback addresses, got {ip}"
        );
    }
    wait_until("the Deployment reports 2 ready replicas", || async {
        let d = ns.api::<Deployment>().get("web").await.ok()?;
        (d.status?.ready_replicas? == 2).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_job_completes() {
    let ns = TestNamespace::new("cluster-job").await;
    ns.api::<Job>()
        .create(&PostParams::default(), &job("migrate", "migrate:1.0"))
        .await
        .expect("create job");
    wait_until("the Job to succeed", || async {
        let j = ns.api::<Job>().get("migrate").await.ok()?;
        (j.status?.succeeded? == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_job_whose_image_tag_ends_in_fails_fails() {
    let ns = TestNamespace::new("cluster-jobfail").await;
    ns.api::<Job>()
        .create(&PostParams::default(), &job("migrate", "migrate:1.0-fails"))
        .await
        .expect("create job");
    let status = wait_until("the Job to fail", || async {
        let j = ns.api::<Job>().get("migrate").await.ok()?;
        let s = j.status?;
        s.conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "Failed" && c.status == "True")
            .then_some(s)
    })
    .await;
    assert_eq!(status.succeeded.unwrap_or(0), 0);
}

#[tokio::test]
async fn pods_of_a_broken_image_never_become_ready() {
    let ns = TestNamespace::new("cluster-broken").await;
    ns.api::<Deployment>()
        .create(
            &PostParams::default(),
            &deployment("bad", "app:2.0-broken", 1),
        )
        .await
        .expect("create deployment");
    wait_until("the broken pod to be running on a node", || async {
        let pods = pods_of(&ns, "bad").await;
        pods.iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .then_some(())
    })
    .await;
    holds_for(
        "the broken pod staying unready",
        Duration::from_secs(5),
        || async {
            let pods = pods_of(&ns, "bad").await;
            !pods.is_empty() && !pods.iter().any(is_ready)
        },
    )
    .await;
}

#[tokio::test]
async fn the_restricted_identity_is_refused_what_rbac_does_not_allow() {
    let ns = TestNamespace::new("cluster-rbac").await;
    let restricted: Api<Pod> = Api::namespaced(restricted_client().await, &ns.name);
    let err = restricted
        .list(&ListParams::default())
        .await
        .expect_err("no permission yet");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 403),
        "forbidden, got {err:?}"
    );

    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "read-pods"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]
    }))
    .expect("role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "read-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-pods"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "bosun-restricted"}]
    }))
    .expect("binding");
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .expect("role");
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding");

    wait_until("the granted list to be allowed", || async {
        restricted.list(&ListParams::default()).await.ok()
    })
    .await;
    let err = Api::<Deployment>::namespaced(restricted_client().await, &ns.name)
        .list(&ListParams::default())
        .await
        .expect_err("deployments were not granted");
    assert!(
        matches!(&err, kube::Error::Api(s) if s.code == 403),
        "forbidden, got {err:?}"
    );
}
