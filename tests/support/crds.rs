//! Installing CustomResourceDefinitions of outside APIs for a test: the real ones, as their projects ship
//! them ([`install_upstream`]), or a stand-in a test builds itself ([`install`]).
//!
//! The upstream files are fetched by `scripts/crds-upstream install` through the Go module proxy into a
//! cache directory, which `scripts/test` exports as `BOSUN_UPSTREAM_CRDS`; a test run by hand asks
//! `scripts/crds-upstream dir`. Every CRD installed here is deleted when its [`InstalledCrd`] drops: CRDs
//! are cluster-wide, so the tests of a binary that installs them run one at a time.

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::{Api, Client};

use super::wait_until;

/// A CRD installed for one test, deleted on drop (even when the test fails).
pub struct InstalledCrd {
    name: String,
}

impl InstalledCrd {
    /// Leaves the CRD installed (for CRDs every test shares).
    pub fn keep(self) {
        std::mem::forget(self);
    }
}

impl Drop for InstalledCrd {
    fn drop(&mut self) {
        let name = self.name.clone();
        super::cleanup(move |admin| async move {
            let crds: Api<CustomResourceDefinition> = Api::all(admin);
            let _ = crds.delete(&name, &DeleteParams::background()).await;
            // Wait until it is gone, so that the next test starts without it.
            for _ in 0..100 {
                if crds.get_opt(&name).await.ok().flatten().is_none() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }
}

/// Server-side applies `crd` (a CRD document, as JSON) and waits until it is Established and every
/// version it serves lists its plural in discovery.
pub async fn install(client: &Client, crd: &serde_json::Value) -> InstalledCrd {
    let name = crd["metadata"]["name"]
        .as_str()
        .expect("a CRD has a metadata.name")
        .to_string();
    let group = crd["spec"]["group"].as_str().expect("a CRD has a group");
    let plural = crd["spec"]["names"]["plural"]
        .as_str()
        .expect("a CRD has a plural");
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.patch(
        &name,
        &PatchParams::apply("bosun-tests").force(),
        &Patch::Apply(crd),
    )
    .await
    .unwrap_or_else(|e| panic!("installing CRD {name}: {e}"));
    let installed = InstalledCrd { name: name.clone() };
    wait_until(&format!("CRD {name} established"), || async {
        let c = crds.get(&name).await.ok()?;
        c.status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True")
            .then_some(())
    })
    .await;
    let served = crd["spec"]["versions"]
        .as_array()
        .expect("a CRD has versions")
        .iter()
        .filter(|v| v["served"] == true)
        .filter_map(|v| v["name"].as_str());
    for version in served {
        let gv = format!("{group}/{version}");
        wait_until(&format!("{gv} {plural} served"), || async {
            let list = client.list_api_group_resources(&gv).await.ok()?;
            list.resources
                .iter()
                .any(|r| r.name == plural)
                .then_some(())
        })
        .await;
    }
    installed
}

/// Installs every CRD in the upstream file `file` (a name in `scripts/crds-upstream dir`, such as
/// `route.openshift.io_routes.yaml` or `gateway.networking.k8s.io_httproutes.yaml`), as upstream ships
/// it, and waits until each is served.
pub async fn install_upstream(client: &Client, file: &str) -> Vec<InstalledCrd> {
    let path = upstream_dir().join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading upstream CRD file {}: {e} (is it among the files `scripts/crds-upstream` pins?)",
            path.display()
        )
    });
    let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    let mut installed = Vec::new();
    for crd in documents
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
    {
        installed.push(install(client, crd).await);
    }
    assert!(
        !installed.is_empty(),
        "{} holds no CustomResourceDefinition",
        path.display()
    );
    installed
}

/// The directory of upstream CRD files: `BOSUN_UPSTREAM_CRDS`, else what `scripts/crds-upstream dir`
/// says.
pub fn upstream_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BOSUN_UPSTREAM_CRDS") {
        return PathBuf::from(dir);
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/crds-upstream");
    let out = std::process::Command::new(&script)
        .arg("dir")
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "the upstream CRDs are not installed: run `scripts/crds-upstream install` (or `scripts/test`) \
         first. {} dir said: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
