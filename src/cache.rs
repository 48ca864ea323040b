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

/// The key an app's pods are filed under: their namespace and `app` label.
pub fn pod_app(pod: &Pod) -> Vec<Key> {
    let app = pod.labels().get("app");
    app.map(|a| (pod.namespace().unwrap_or_default(), a.clone()))
        .into_iter()
        .collect()
}

/// A cache of pods (each as [`pod_summary`] leaves it) that finds an app's pods by their namespace and
/// `app` label without a scan of every pod: at 10,000 apps the cache holds 10,000 pods and more, and
/// an app's readers (a probe round, a rollout that may have stalled, the dashboard) want its few.
#[derive(Clone)]
pub struct Pods {
    feed: Feed<Pod>,
    by_app: Index,
}

impl Pods {
    /// Keeps the cache filled from a watch of `api` until the process ends.
    pub fn reflect(api: Api<Pod>, config: watcher::Config) -> Pods {
        let (by_app, indexer) = index(pod_app);
        let feed = Feed::start(api, config, pod_summary, Some(indexer));
        Pods { feed, by_app }
    }

    /// Waits until the first list of the watch is in the cache.
    ///
    /// # Errors
    /// When the watch ended before it.
    pub async fn wait_until_ready(&self) -> Result<(), WatchEnded> {
        self.feed.wait_until_ready().await
    }

    /// The pods of app `app` in namespace `ns` (labelled `app: <app>`).
    pub fn of(&self, ns: &str, app: &str) -> Vec<Arc<Pod>> {
        let store = self.feed.store();
        self.by_app
            .under(ns, app)
            .into_iter()
            .filter_map(|(ns, name)| store.get(&ObjectRef::new(&name).within(&ns)))
            .collect()
    }

    /// The changes of the pods from now on (see [`Feed::subscribe`]).
    pub fn subscribe(&self) -> futures::channel::mpsc::Receiver<Change<Pod>> {
        self.feed.subscribe()
    }
}

/// What a [`Feed`] tells each subscriber, once its store holds it.
#[derive(Clone, Debug)]
pub enum Change<K> {
    /// Made or changed; or listed again after the watch was lost (it may have changed meanwhile).
    Applied(K),
    Deleted(K),
    /// The watch listed everything (at its start, or again after it was lost): the store now holds
    /// just what was listed, and objects deleted meanwhile are gone from it without a `Deleted`.
    Listed,
}

impl<K> Change<K> {
    /// The object that changed, if any.
    pub fn object(self) -> Option<K> {
        match self {
            Change::Applied(o) | Change::Deleted(o) => Some(o),
            Change::Listed => None,
        }
    }
}

/// How many changes may wait for a subscriber before the watch that reports them waits.
const FEED_BUFFER: usize = 1024;

/// One watch of a kind, kept in one store (and an [`Index`], if asked), whose changes each subscriber
/// is told: the engine, the dashboard and the write-back read one cache of the apps and one of the
/// pods instead of each watching them (every watch is one more copy in memory, and one more stream
/// kube-apiserver sends and Bosun decodes).
pub struct Feed<K: Cached> {
    store: Store<K>,
    subscribe: futures::channel::mpsc::UnboundedSender<futures::channel::mpsc::Sender<Change<K>>>,
    /// True once the first list is in the store. (Not the store's own `wait_until_ready`: kube-runtime
    /// 5 wakes only the last of the tasks that wait on it at once, and a feed has many readers.)
    listed: tokio::sync::watch::Receiver<bool>,
}

/// The watch of a [`Feed`] ended before its first list: the process is going down.
#[derive(Debug, thiserror::Error)]
#[error("the watch ended before its first list")]
pub struct WatchEnded;

impl<K: Cached> Clone for Feed<K> {
    fn clone(&self) -> Self {
        Feed {
            store: self.store.clone(),
            subscribe: self.subscribe.clone(),
            listed: self.listed.clone(),
        }
    }
}

impl<K: Cached> Feed<K> {
    /// Keeps a store filled from a watch of `api` until the process ends, each object as `keep`
    /// leaves it, filed by `indexer` if any.
    pub fn start(
        api: Api<K>,
        config: watcher::Config,
        keep: fn(&mut K),
        mut indexer: Option<Indexer<K>>,
    ) -> Feed<K> {
        use futures::SinkExt;
        let (store, writer) = reflector::store();
        let (subscribe, mut joining) = futures::channel::mpsc::unbounded();
        let (listed_tx, listed_rx) = tokio::sync::watch::channel(false);
        let events =
            reflector::reflector(writer, watcher(api, config).modify(keep)).default_backoff();
        tokio::spawn(async move {
            futures::pin_mut!(events);
            let mut subscribers: Vec<futures::channel::mpsc::Sender<Change<K>>> = Vec::new();
            let mut listed = false;
            while let Some(event) = events.next().await {
                if let (Some(indexer), Ok(event)) = (indexer.as_mut(), &event) {
                    indexer.apply(event);
                }
                let change = match event {
                    Ok(watcher::Event::Apply(o)) => Change::Applied(o),
                    Ok(watcher::Event::Delete(o)) => Change::Deleted(o),
                    // The first list fills the store without telling each object: a subscriber
                    // reads the store when it starts.
                    Ok(watcher::Event::InitApply(o)) if listed => Change::Applied(o),
                    Ok(watcher::Event::InitDone) => {
                        listed = true;
                        listed_tx.send_replace(true);
                        Change::Listed
                    }
                    Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => continue,
                    Err(e) => {
                        tracing::debug!(kind = %K::kind(&()), error = %e, "a watch failed; retrying");
                        continue;
                    }
                };
                // Whoever subscribed before the store took this change is told of it.
                while let Ok(s) = joining.try_recv() {
                    subscribers.push(s);
                }
                let mut gone = Vec::new();
                for (i, s) in subscribers.iter_mut().enumerate() {
                    if s.send(change.clone()).await.is_err() {
                        gone.push(i);
                    }
                }
                for i in gone.into_iter().rev() {
                    subscribers.swap_remove(i);
                }
            }
        });
        Feed {
            store,
            subscribe,
            listed: listed_rx,
        }
    }

    /// The store, as the watch keeps it.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Waits until the first list of the watch is in the store. Wait on this, not on the store's
    /// own `wait_until_ready` (see [`Feed`]'s `listed`); a controller given the store is started only
    /// after it.
    ///
    /// # Errors
    /// When the watch ended before it.
    pub async fn wait_until_ready(&self) -> Result<(), WatchEnded> {
        let mut listed = self.listed.clone();
        listed
            .wait_for(|l| *l)
            .await
            .map(|_| ())
            .map_err(|_| WatchEnded)
    }

    /// Every change the store takes from now on, in order. A change the store took before this call
    /// is in the store: read it after subscribing, and nothing is missed. The watch waits for a
    /// subscriber that lags [`FEED_BUFFER`] changes behind; drop the receiver to leave.
    pub fn subscribe(&self) -> futures::channel::mpsc::Receiver<Change<K>> {
        let (tx, rx) = futures::channel::mpsc::channel(FEED_BUFFER);
        // The feed's task ended only with the process.
        let _ = self.subscribe.unbounded_send(tx);
        rx
    }

    /// The objects [`Feed::subscribe`] tells of from now on (made, changed or deleted), as a
    /// controller's trigger stream.
    pub fn changes(
        &self,
    ) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + use<K> {
        self.subscribe()
            .filter_map(|c| futures::future::ready(c.object().map(Ok)))
    }
}

/// A namespace and a name.
pub type Key = (String, String);

/// The objects of a watch filed under the keys each gives (an app's pods under the app, the apps that
/// depend on an app under it): what a reader finds without a scan of the whole cache. Kept by an
/// [`Indexer`] from the watch's events.
#[derive(Clone)]
pub struct Index(Arc<RwLock<Filed>>);

impl Index {
    /// The objects filed under `ns/name`, sorted.
    pub fn under(&self, ns: &str, name: &str) -> Vec<Key> {
        let filed = self.0.read().expect("not poisoned");
        filed
            .by_key
            .get(&(ns.to_owned(), name.to_owned()))
            .map(|objects| objects.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[derive(Default)]
struct Filed {
    /// The objects under each key.
    by_key: HashMap<Key, BTreeSet<Key>>,
    /// The keys of each object: what to take it from when it changes or goes.
    keys_of: HashMap<Key, Vec<Key>>,
}

impl Filed {
    fn put(&mut self, object: Key, keys: Vec<Key>) {
        self.remove(&object);
        if keys.is_empty() {
            return;
        }
        for k in &keys {
            self.by_key
                .entry(k.clone())
                .or_default()
                .insert(object.clone());
        }
        self.keys_of.insert(object, keys);
    }

    fn remove(&mut self, object: &Key) {
        for k in self.keys_of.remove(object).unwrap_or_default() {
            if let Some(objects) = self.by_key.get_mut(&k) {
                objects.remove(object);
                if objects.is_empty() {
                    self.by_key.remove(&k);
                }
            }
        }
    }
}

/// An empty index of objects under the keys `keys` gives, and what keeps it from a watch's events.
pub fn index<K>(keys: fn(&K) -> Vec<Key>) -> (Index, Indexer<K>) {
    let live = Arc::new(RwLock::new(Filed::default()));
    let indexer = Indexer {
        keys,
        live: live.clone(),
        relisting: None,
    };
    (Index(live), indexer)
}

/// Keeps an [`Index`] as the reflector keeps its store: a relist files anew, and replaces the live
/// index when the list is done (objects deleted while the watch was down leave it then).
pub struct Indexer<K> {
    keys: fn(&K) -> Vec<Key>,
    live: Arc<RwLock<Filed>>,
    relisting: Option<Filed>,
}

impl<K: Resource> Indexer<K> {
    pub fn apply(&mut self, event: &watcher::Event<K>) {
        let object = |o: &K| (o.namespace().unwrap_or_default(), o.name_any());
        match event {
            watcher::Event::Apply(o) => {
                let keys = (self.keys)(o);
                self.live
                    .write()
                    .expect("not poisoned")
                    .put(object(o), keys);
            }
            watcher::Event::Delete(o) => {
                self.live.write().expect("not poisoned").remove(&object(o));
            }
            watcher::Event::Init => self.relisting = Some(Filed::default()),
            watcher::Event::InitApply(o) => {
                if let Some(relisting) = self.relisting.as_mut() {
                    relisting.put(object(o), (self.keys)(o));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(ns: &str, name: &str, app: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
        }))
        .expect("a pod")
    }

    fn names(index: &Index, ns: &str, app: &str) -> Vec<String> {
        index.under(ns, app).into_iter().map(|(_, n)| n).collect()
    }

    #[test]
    fn the_index_follows_the_watch_and_a_relist_forgets_objects_deleted_while_it_was_down() {
        use watcher::Event;
        let (index, mut indexer) = index(pod_app);
        indexer.apply(&Event::Init);
        indexer.apply(&Event::InitApply(pod("shop", "web-1", "web")));
        indexer.apply(&Event::InitApply(pod("shop", "api-1", "api")));
        indexer.apply(&Event::InitApply(pod("other", "web-9", "web")));
        assert!(
            names(&index, "shop", "web").is_empty(),
            "not before the list is done"
        );
        indexer.apply(&Event::InitDone);
        assert_eq!(names(&index, "shop", "web"), ["web-1"]);
        assert_eq!(names(&index, "other", "web"), ["web-9"]);

        indexer.apply(&Event::Apply(pod("shop", "web-2", "web")));
        indexer.apply(&Event::Delete(pod("shop", "web-1", "web")));
        assert_eq!(names(&index, "shop", "web"), ["web-2"]);
        // An object whose keys change leaves its old ones.
        indexer.apply(&Event::Apply(pod("shop", "api-1", "web")));
        assert_eq!(names(&index, "shop", "web"), ["api-1", "web-2"]);
        assert!(names(&index, "shop", "api").is_empty());
        assert!(
            !index
                .0
                .read()
                .expect("not poisoned")
                .by_key
                .contains_key(&("shop".into(), "api".into()))
        );

        // The watch was down while web-2 and api-1 were deleted and web-3 made: the relist knows only
        // web-3, and the live index keeps the others until the list is done.
        indexer.apply(&Event::Init);
        indexer.apply(&Event::InitApply(pod("shop", "web-3", "web")));
        assert_eq!(names(&index, "shop", "web"), ["api-1", "web-2"]);
        indexer.apply(&Event::InitDone);
        assert_eq!(names(&index, "shop", "web"), ["web-3"]);
        assert!(names(&index, "other", "web").is_empty());

        // An object without keys is not filed.
        let mut unlabelled = pod("shop", "job-1", "x");
        unlabelled.metadata.labels = None;
        indexer.apply(&Event::Apply(unlabelled));
        let filed = index.0.read().expect("not poisoned");
        assert_eq!((filed.by_key.len(), filed.keys_of.len()), (1, 1));
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
