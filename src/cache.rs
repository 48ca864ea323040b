//! What Bosun keeps of the objects it watches: each cache holds only what its readers read, so that
//! memory grows with the apps Bosun manages and by as little as possible per app. Objects are kept
//! without their `managedFields` (no reader looks at them; they are often an object's largest part),
//! and pods as far as a health probe and the dashboard read them.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource};

/// Drops what no reader of a cache looks at: the `managedFields`.
pub fn slim<K: Resource>(object: &mut K) {
    object.meta_mut().managed_fields = None;
}

/// What is kept of a pod: its name, namespace, labels and deletion, and of its status the phase, the
/// IP and the `Ready` condition.
pub fn pod_summary(pod: &mut Pod) {
    let meta = std::mem::take(&mut pod.metadata);
    let status = pod.status.take().unwrap_or_default();
    *pod = Pod {
        metadata: ObjectMeta {
            name: meta.name,
            namespace: meta.namespace,
            labels: meta.labels,
            deletion_timestamp: meta.deletion_timestamp,
            resource_version: meta.resource_version,
            ..ObjectMeta::default()
        },
        spec: None,
        status: Some(PodStatus {
            phase: status.phase,
            pod_ip: status.pod_ip,
            conditions: status
                .conditions
                .map(|c| c.into_iter().filter(|c| c.type_ == "Ready").collect()),
            ..PodStatus::default()
        }),
    };
}

/// What a cache can hold: an object of a watch of a static type.
pub trait Cached:
    Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Cached for K where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static
{
}

/// Keeps a store filled from a watch until the process ends, each object as `keep` leaves it.
pub fn reflect<K: Cached>(api: Api<K>, config: watcher::Config, keep: fn(&mut K)) -> Store<K> {
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).modify(keep)).default_backoff();
    tokio::spawn(stream.for_each(|_| futures::future::ready(())));
    store
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_summary_keeps_what_probes_and_the_dashboard_read_only() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "shop-7d9f", "namespace": "apps",
                "labels": {"app": "shop", "bosun.dev/role": "stable"},
                "managedFields": [{"manager": "kube-controller-manager"}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "shop-7d9f", "uid": "1"}],
            },
            "spec": {"containers": [{"name": "app", "image": "shop:v1"}]},
            "status": {
                "phase": "Running", "podIP": "127.1.0.1", "hostIP": "127.0.0.9",
                "conditions": [
                    {"type": "PodScheduled", "status": "True"},
                    {"type": "Ready", "status": "True"},
                ],
            },
        }))
        .expect("a pod");
        let full = serde_json::to_string(&pod).expect("json").len();
        pod_summary(&mut pod);
        assert_eq!(
            serde_json::to_value(&pod).expect("json"),
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {
                    "name": "shop-7d9f", "namespace": "apps",
                    "labels": {"app": "shop", "bosun.dev/role": "stable"},
                },
                "status": {
                    "phase": "Running", "podIP": "127.1.0.1",
                    "conditions": [{"type": "Ready", "status": "True"}],
                },
            })
        );
        assert!(serde_json::to_string(&pod).expect("json").len() < full);
    }
}
