//! What Bosun keeps of the objects it watches: each cache holds only what its readers read, so that
//! memory grows with the apps Bosun manages and by as little as possible per app. Objects are kept
//! without their `managedFields` (no reader looks at them; they are often an object's largest part),
//! and pods as far as a health probe and the dashboard read them.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Resource, ResourceExt};

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

/// Whether the pod's `Ready` condition is `True`.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// A cache of pods (each as [`pod_summary`] leaves it) that finds an app's pods by their namespace and
/// `app` label without a scan of every pod: at 10,000 apps the cache holds 10,000 pods and more, and
/// an app's readers (a probe round, a rollout that may have stalled) want its few.
#[derive(Clone)]
pub struct Pods {
    store: Store<Pod>,
    by_app: Arc<RwLock<AppIndex>>,
}

/// The names of the pods of each (namespace, `app` label).
type AppIndex = HashMap<(String, String), BTreeSet<String>>;

impl Pods {
    /// Keeps the cache filled from a watch of `api` until the process ends.
    pub fn reflect(api: Api<Pod>, config: watcher::Config) -> Pods {
        let (store, writer) = reflector::store();
        let by_app = Arc::new(RwLock::new(AppIndex::new()));
        let mut index = Indexer {
            live: by_app.clone(),
            relisting: None,
        };
        let stream = reflector::reflector(writer, watcher(api, config).modify(pod_summary))
            .default_backoff();
        tokio::spawn(stream.for_each(move |event| {
            if let Ok(event) = event {
                index.apply(&event);
            }
            futures::future::ready(())
        }));
        Pods { store, by_app }
    }

    /// Waits until the first list of the watch is in the cache.
    ///
    /// # Errors
    /// When the watch ended before it.
    pub async fn wait_until_ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.store.wait_until_ready().await
    }

    /// Every pod in the cache.
    pub fn state(&self) -> Vec<Arc<Pod>> {
        self.store.state()
    }

    /// The pods of app `app` in namespace `ns` (labelled `app: <app>`).
    pub fn of(&self, ns: &str, app: &str) -> Vec<Arc<Pod>> {
        let index = self.by_app.read().expect("not poisoned");
        let Some(names) = index.get(&(ns.to_owned(), app.to_owned())) else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|name| self.store.get(&ObjectRef::new(name).within(ns)))
            .filter(|p| p.labels().get("app").map(String::as_str) == Some(app))
            .collect()
    }
}

/// Keeps an [`AppIndex`] as the reflector keeps its store: a relist builds a new index, which replaces
/// the live one when the list is done (pods deleted while the watch was down leave it then).
struct Indexer {
    live: Arc<RwLock<AppIndex>>,
    relisting: Option<AppIndex>,
}

impl Indexer {
    fn apply(&mut self, event: &watcher::Event<Pod>) {
        let key = |p: &Pod| {
            let app = p.labels().get("app")?;
            Some((
                (p.namespace().unwrap_or_default(), app.clone()),
                p.name_any(),
            ))
        };
        match event {
            watcher::Event::Apply(p) => {
                if let Some((k, name)) = key(p) {
                    let mut live = self.live.write().expect("not poisoned");
                    live.entry(k).or_default().insert(name);
                }
            }
            watcher::Event::Delete(p) => {
                if let Some((k, name)) = key(p) {
                    let mut live = self.live.write().expect("not poisoned");
                    if let Some(names) = live.get_mut(&k) {
                        names.remove(&name);
                        if names.is_empty() {
                            live.remove(&k);
                        }
                    }
                }
            }
            watcher::Event::Init => self.relisting = Some(AppIndex::new()),
            watcher::Event::InitApply(p) => {
                if let (Some(relisting), Some((k, name))) = (self.relisting.as_mut(), key(p)) {
                    relisting.entry(k).or_default().insert(name);
                }
            }
            watcher::Event::InitDone => {
                if let Some(relisted) = self.relisting.take() {
                    *self.live.write().expect("not poisoned") = relisted;
                }
            }
        }
    }
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

    fn pod(ns: &str, name: &str, app: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        }))
        .expect("a pod")
    }

    fn names(index: &Arc<RwLock<AppIndex>>, ns: &str, app: &str) -> Vec<String> {
        let index = index.read().expect("not poisoned");
        index
            .get(&(ns.to_owned(), app.to_owned()))
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default()
    }

    #[test]
    fn the_pod_index_follows_the_watch_and_a_relist_forgets_pods_deleted_while_it_was_down() {
        use watcher::Event;
        let live = Arc::new(RwLock::new(AppIndex::new()));
        let mut index = Indexer {
            live: live.clone(),
            relisting: None,
        };
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(pod("shop", "web-1", "web")));
        index.apply(&Event::InitApply(pod("shop", "api-1", "api")));
        index.apply(&Event::InitApply(pod("other", "web-9", "web")));
        assert!(
            names(&live, "shop", "web").is_empty(),
            "not before the list is done"
        );
        index.apply(&Event::InitDone);
        assert_eq!(names(&live, "shop", "web"), ["web-1"]);
        assert_eq!(names(&live, "other", "web"), ["web-9"]);

        index.apply(&Event::Apply(pod("shop", "web-2", "web")));
        index.apply(&Event::Delete(pod("shop", "web-1", "web")));
        assert_eq!(names(&live, "shop", "web"), ["web-2"]);
        index.apply(&Event::Delete(pod("shop", "api-1", "api")));
        assert!(
            live.read()
                .expect("not poisoned")
                .get(&("shop".into(), "api".into()))
                .is_none()
        );

        // The watch was down while web-2 was deleted and web-3 made: the relist knows only web-3,
        // and the live index keeps web-2 until the list is done.
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(pod("shop", "web-3", "web")));
        assert_eq!(names(&live, "shop", "web"), ["web-2"]);
        index.apply(&Event::InitDone);
        assert_eq!(names(&live, "shop", "web"), ["web-3"]);
        assert!(names(&live, "other", "web").is_empty());

        // A pod without an `app` label is not indexed.
        let mut unlabelled = pod("shop", "job-1", "x");
        unlabelled.metadata.labels = None;
        index.apply(&Event::Apply(unlabelled));
        assert_eq!(live.read().expect("not poisoned").len(), 1);
    }

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
