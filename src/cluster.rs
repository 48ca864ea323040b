//! Kubernetes, for the git source: list what a source applied, apply definitions with server-side apply,
//! prune what the source no longer defines. Decisions are `bosun_core::sync`'s; this only acts.

use bosun_core::model::{Bestie, Kind, ManagedApplication};
use bosun_core::sync::{
    ANNOTATION_REVISION, ANNOTATION_SOURCE_PATH, ANNOTATION_SPEC_HASH, Desired, LABEL_SOURCE, Live,
    ObjectKey,
};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject};
use kube::{Api, Client};

/// The field manager of everything Bosun applies from git.
pub const FIELD_MANAGER: &str = "bosun";

/// What went wrong talking to the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot connect to Kubernetes: {0} (set KUBECONFIG, or run in a cluster)")]
    Connect(#[source] kube::Error),
    #[error("listing {kind} objects of source {source_name}: {error}")]
    ListSource {
        kind: Kind,
        source_name: String,
        #[source]
        error: kube::Error,
    },
    #[error("applying {key}: {error}")]
    Apply {
        key: ObjectKey,
        #[source]
        error: kube::Error,
    },
    #[error("setting the SourceReady condition of {key}: {error}")]
    SetCondition {
        key: ObjectKey,
        #[source]
        error: kube::Error,
    },
    #[error("reading {key}: {error}")]
    Get {
        key: ObjectKey,
        #[source]
        error: kube::Error,
    },
    #[error("pruning {key}: {error}")]
    Prune {
        key: ObjectKey,
        #[source]
        error: kube::Error,
    },
}

impl ClusterError {
    /// The reason, as metric label and log field.
    pub fn reason(&self) -> &'static str {
        match self {
            ClusterError::Connect(_) => "Connect",
            ClusterError::ListSource { .. } => "ListSource",
            ClusterError::Apply { .. } => "Apply",
            ClusterError::Get { .. } => "Get",
            ClusterError::Prune { .. } => "Prune",
            ClusterError::SetCondition { .. } => "SetCondition",
        }
    }
}

/// A handle on the cluster.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
}

fn api_resource(kind: Kind) -> ApiResource {
    match kind {
        Kind::ManagedApplication => ApiResource::erase::<ManagedApplication>(&()),
        Kind::Bestie => ApiResource::erase::<Bestie>(&()),
    }
}

impl Cluster {
    /// Connects with the usual rules: `KUBECONFIG` or `~/.kube/config`, else the in-cluster account.
    ///
    /// # Errors
    /// When no configuration is found or it is unusable.
    pub async fn connect() -> Result<Cluster, ClusterError> {
        let client = Client::try_default().await.map_err(ClusterError::Connect)?;
        Ok(Cluster { client })
    }

    pub fn from_client(client: Client) -> Cluster {
        Cluster { client }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The objects a source applied: their keys, files, spec hashes and specs (for the drift check).
    ///
    /// # Errors
    /// When a list call fails.
    pub async fn live_of_source(&self, source: &str) -> Result<Vec<Live>, ClusterError> {
        let mut out = Vec::new();
        let params = ListParams::default().labels(&format!("{LABEL_SOURCE}={source}"));
        for kind in Kind::ALL {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &api_resource(kind));
            // Whole objects, not only metadata: their spec is checked for drift.
            let list = api
                .list(&params)
                .await
                .map_err(|error| ClusterError::ListSource {
                    kind,
                    source_name: source.to_string(),
                    error,
                })?;
            for item in list.items {
                let spec = item.data.get("spec").cloned();
                let meta = item.metadata;
                let annotation =
                    |k: &str| meta.annotations.as_ref().and_then(|a| a.get(k)).cloned();
                out.push(Live {
                    key: ObjectKey {
                        kind,
                        namespace: meta.namespace.clone().unwrap_or_default(),
                        name: meta.name.clone().unwrap_or_default(),
                    },
                    source_path: annotation(ANNOTATION_SOURCE_PATH),
                    spec_hash: annotation(ANNOTATION_SPEC_HASH),
                    revision: annotation(ANNOTATION_REVISION),
                    spec,
                });
            }
        }
        Ok(out)
    }

    /// Whether any object of the source carries `SourceReady=False` (written before a restart).
    /// A failed list counts as yes: writing `True` once more is harmless.
    pub async fn source_reported_down(&self, source: &str) -> bool {
        let params = ListParams::default().labels(&format!("{LABEL_SOURCE}={source}"));
        for kind in Kind::ALL {
            let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &api_resource(kind));
            let Ok(list) = api.list(&params).await else {
                return true;
            };
            let down = list.items.iter().any(|o| {
                o.data["status"]["conditions"].as_array().is_some_and(|cs| {
                    cs.iter().any(|c| {
                        c["type"] == bosun_core::sync::CONDITION_SOURCE_READY
                            && c["status"] == "False"
                    })
                })
            });
            if down {
                return true;
            }
        }
        false
    }

    /// The live object of `key` as JSON, if it exists.
    ///
    /// # Errors
    /// When the API server cannot be read.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<serde_json::Value>, ClusterError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &key.namespace, &api_resource(key.kind));
        let object = api
            .get_opt(&key.name)
            .await
            .map_err(|error| ClusterError::Get {
                key: key.clone(),
                error,
            })?;
        Ok(object.map(|o| serde_json::to_value(o).expect("a DynamicObject serializes")))
    }

    /// Server-side applies one definition with Bosun's field manager.
    ///
    /// # Errors
    /// When the API server refuses the object (a missing namespace, say).
    pub async fn apply(&self, desired: &Desired) -> Result<(), ClusterError> {
        let key = &desired.key;
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &key.namespace, &api_resource(key.kind));
        api.patch(
            &key.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&desired.object),
        )
        .await
        .map(|_| ())
        .map_err(|error| ClusterError::Apply {
            key: key.clone(),
            error,
        })
    }

    /// Sets one condition in the status of each object, owning only that condition's entry (server-side
    /// apply on the status subresource, conditions being a map list keyed by type).
    ///
    /// # Errors
    /// The first refused write; the others are still attempted.
    pub async fn set_condition(
        &self,
        objects: &[ObjectKey],
        field_manager: &str,
        condition: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition,
    ) -> Result<(), ClusterError> {
        let mut first_error = None;
        for key in objects {
            let ar = api_resource(key.kind);
            let api: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), &key.namespace, &ar);
            let patch = serde_json::json!({
                "apiVersion": ar.api_version,
                "kind": ar.kind,
                "status": {"conditions": [condition]},
            });
            let result = api
                .patch_status(
                    &key.name,
                    &PatchParams::apply(field_manager).force(),
                    &Patch::Apply(&patch),
                )
                .await;
            if let Err(error) = result
                && first_error.is_none()
            {
                first_error = Some(ClusterError::SetCondition {
                    key: key.clone(),
                    error,
                });
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Deletes an object the source no longer defines. Already gone counts as done.
    ///
    /// # Errors
    /// When the delete is refused.
    pub async fn prune(&self, key: &ObjectKey) -> Result<(), ClusterError> {
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &key.namespace, &api_resource(key.kind));
        match api.delete(&key.name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
            Err(error) => Err(ClusterError::Prune {
                key: key.clone(),
                error,
            }),
        }
    }
}

/// The API of `K` in namespace `ns`, or in every namespace.
pub fn api_in<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}
