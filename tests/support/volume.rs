//! The test cluster has no volume provisioner: a test hands a Bestie's StatefulSet database its
//! volume, a PersistentVolume pre-bound to the claim, as an administrator would.
#![allow(dead_code)] // each test binary uses its own part of the support module

use k8s_openapi::api::core::v1::PersistentVolume;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;

use super::TestNamespace;

/// A PersistentVolume bound to Bestie `bestie`'s database claim in `ns`, deleted when dropped.
pub struct BestieVolume {
    pub name: String,
}

impl BestieVolume {
    pub async fn provide(ns: &TestNamespace, bestie: &str) -> BestieVolume {
        let name = format!("{}-{bestie}", ns.name);
        let pv: PersistentVolume = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"bosun.dev/test": "true"}},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "hostPath": {"path": format!("/tmp/{name}")},
                "claimRef": {"namespace": ns.name, "name": format!("data-{bestie}-db-0")},
            }
        }))
        .expect("a PersistentVolume");
        Api::<PersistentVolume>::all(ns.client.clone())
            .create(&PostParams::default(), &pv)
            .await
            .expect("create the PersistentVolume");
        BestieVolume { name }
    }
}

impl Drop for BestieVolume {
    fn drop(&mut self) {
        let pv = self.name.clone();
        super::cleanup(move |admin| async move {
            let _ = Api::<PersistentVolume>::all(admin)
                .delete(&pv, &DeleteParams::background())
                .await;
        });
    }
}
