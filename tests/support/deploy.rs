//! `deploy/` as the tests read and install it: its manifests as files (the Deployment, the shipped
//! `bosun run` configuration of the ConfigMap), applied to the test cluster ([`Installed`], one test at
//! a time, removed when done), and Bosun's ServiceAccount with a token from the TokenRequest API
//! ([`AsServiceAccount`]), exactly what a pod of the Deployment gets.
#![allow(dead_code)] // each test binary uses its own part of the support module

use std::io::Write;
use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use serde_json::Value;

use super::wait_until;

pub const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");
pub const NAMESPACE: &str = "bosun-system";
pub const SERVICE_ACCOUNT: &str = "bosun";
/// The user the image runs as (Dockerfile `USER`, the Deployment's `runAsUser`).
pub const UID: i64 = 65532;

// --- the manifests, as files -----------------------------------------------------------------------

pub fn read(rel: &str) -> String {
    let path = Path::new(DEPLOY).join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The documents of a manifest, read as kubectl reads YAML (1.1: `0440` is octal).
pub fn documents(rel: &str) -> Vec<Value> {
    let text = read(rel);
    bosun_core::yaml::parse_documents(&text, &bosun_core::yaml::Limits::default())
        .unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
        .into_iter()
        .filter_map(|d| d.root.map(|n| n.to_json()))
        .collect()
}

pub fn only<T: serde::de::DeserializeOwned>(rel: &str) -> T {
    let docs = documents(rel);
    assert_eq!(docs.len(), 1, "deploy/{rel} holds one object");
    serde_json::from_value(docs[0].clone()).unwrap_or_else(|e| panic!("deploy/{rel}: {e}"))
}

pub fn deployment() -> Deployment {
    only("deployment.yaml")
}

/// The shipped `bosun run` configuration: the ConfigMap's `config.yaml`.
pub fn shipped_config() -> Value {
    let cm: ConfigMap = only("configmap.yaml");
    assert_eq!(cm.metadata.name.as_deref(), Some("bosun-config"));
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("config.yaml"))
        .expect("the ConfigMap bosun-config has a key config.yaml");
    let docs = bosun_core::yaml::parse_documents(text, &bosun_core::yaml::Limits::default())
        .expect("config.yaml is YAML");
    docs.into_iter()
        .find_map(|d| d.root)
        .expect("config.yaml is not empty")
        .to_json()
}

/// Every file the configuration names (`…File` keys, at the top or in a source: credentials, the
/// webhook secret, and any added later).
pub fn config_files(config: &Value) -> Vec<String> {
    let sources = config["sources"].as_array().into_iter().flatten();
    std::iter::once(config)
        .chain(sources)
        .filter_map(Value::as_object)
        .flat_map(|o| o.iter())
        .filter(|(k, _)| k.ends_with("File"))
        .map(|(k, v)| {
            v.as_str()
                .unwrap_or_else(|| panic!("config {k}: a path"))
                .to_string()
        })
        .collect()
}

// --- on the test cluster -------------------------------------------------------------------------

/// The install is cluster-wide: one test at a time holds it.
pub static INSTALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub fn kubeconfig() -> String {
    std::env::var("BOSUN_CLUSTER_KUBECONFIG").expect(
        "BOSUN_CLUSTER_KUBECONFIG is not set: run `scripts/test`, or `scripts/cluster up` and \
         `eval \"$(scripts/cluster env)\"` first",
    )
}

/// The test cluster's own kubectl (its version), else the one on PATH.
pub fn kubectl_bin() -> String {
    std::env::var("BOSUN_CLUSTER_KUBECTL").unwrap_or_else(|_| "kubectl".into())
}

/// Runs kubectl as the test cluster's admin; fails the test with its output unless it succeeds.
pub fn kubectl(args: &[&str]) -> String {
    let out = Command::new(kubectl_bin())
        .arg("--kubeconfig")
        .arg(kubeconfig())
        .args(args)
        .output()
        .expect("kubectl runs (scripts/cluster builds it; `scripts/cluster env` names it)");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kubectl {}: {}\n{stdout}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The manifests of deploy/ other than the CRDs, which other tests share and are never removed.
pub fn own_manifests() -> Vec<String> {
    let k: Value = documents("kustomization.yaml").remove(0);
    k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .filter_map(|r| r.as_str())
        .filter(|r| !r.starts_with("crds/"))
        .map(|r| format!("{DEPLOY}/{r}"))
        .collect()
}

/// `deploy/` applied to the test cluster; removed on drop (the CRDs stay).
pub struct Installed {
    _turn: tokio::sync::MutexGuard<'static, ()>,
    pub admin: Client,
    /// Whether the ClusterRole `bosun` existed before the server-side dry run, and after it.
    pub cluster_role_before_dry_run: bool,
    pub cluster_role_after_dry_run: bool,
    pub dry_run: String,
    pub applied: String,
}

pub async fn cluster_role_exists(admin: &Client) -> bool {
    Api::<k8s_openapi::api::rbac::v1::ClusterRole>::all(admin.clone())
        .get_opt("bosun")
        .await
        .expect("get clusterrole")
        .is_some()
}

impl Installed {
    pub async fn new() -> Installed {
        let turn = INSTALL.lock().await;
        let admin = super::admin_client().await;
        // A namespace being deleted (by an earlier test) refuses new objects: wait until it is gone.
        let namespaces: Api<Namespace> = Api::all(admin.clone());
        wait_until(
            &format!("namespace {NAMESPACE} not terminating"),
            || async {
                let ns = namespaces.get_opt(NAMESPACE).await.ok()?;
                let terminating = ns
                    .and_then(|n| n.status)
                    .and_then(|s| s.phase)
                    .is_some_and(|p| p == "Terminating");
                (!terminating).then_some(())
            },
        )
        .await;
        // The dry run of namespaced objects needs their namespace (the API server checks it exists).
        kubectl(&[
            "apply",
            "--server-side",
            "-f",
            &format!("{DEPLOY}/namespace.yaml"),
        ]);
        let before = cluster_role_exists(&admin).await;
        // The CRDs are also applied by other tests under another field manager: take them over.
        let dry_run = kubectl(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-k",
            DEPLOY,
        ]);
        let after = cluster_role_exists(&admin).await;
        let applied = kubectl(&["apply", "--server-side", "--force-conflicts", "-k", DEPLOY]);
        Installed {
            _turn: turn,
            admin,
            cluster_role_before_dry_run: before,
            cluster_role_after_dry_run: after,
            dry_run,
            applied,
        }
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let mut args = vec![
            "--kubeconfig".to_string(),
            kubeconfig(),
            "delete".into(),
            "--ignore-not-found".into(),
            "--wait=false".into(),
        ];
        for f in own_manifests() {
            args.push("-f".into());
            args.push(f);
        }
        let _ = Command::new(kubectl_bin()).args(&args).output();
    }
}

/// A kubeconfig (file and client) acting as Bosun's ServiceAccount, with a token from the
/// TokenRequest API: exactly what a pod of the Deployment gets.
pub struct AsServiceAccount {
    pub file: tempfile::NamedTempFile,
    pub client: Client,
    pub token: String,
}

impl AsServiceAccount {
    pub async fn new(admin: &Client) -> AsServiceAccount {
        let sas: Api<ServiceAccount> = Api::namespaced(admin.clone(), NAMESPACE);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let token = sas
            .create_token_request(SERVICE_ACCOUNT, &PostParams::default(), &request)
            .await
            .expect("a token for the ServiceAccount bosun")
            .status
            .expect("TokenRequest status")
            .token
            .expect("a token");
        let admin_config = Kubeconfig::read_from(kubeconfig()).expect("admin kubeconfig");
        let cluster = admin_config.clusters[0].cluster.clone().expect("a cluster");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority-data: {}\nusers:\n- name: bosun\n  user:\n    token: {token}\ncontexts:\n- name: bosun\n  context:\n    cluster: test\n    user: bosun\n    namespace: {NAMESPACE}\ncurrent-context: bosun\n",
            cluster.server.expect("server"),
            cluster
                .certificate_authority_data
                .expect("certificate-authority-data"),
        );
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write kubeconfig");
        let config = Config::from_custom_kubeconfig(
            Kubeconfig::from_yaml(&text).expect("kubeconfig"),
            &KubeConfigOptions::default(),
        )
        .await
        .expect("config");
        let client = Client::try_from(config).expect("client");
        AsServiceAccount {
            file,
            client,
            token,
        }
    }
}

pub fn forbidden_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.to_ascii_lowercase().contains("forbidden"))
        .collect()
}

/// Waits until no namespace but bosun-system is being deleted. Bosun watches every namespace, as
/// deployed, and namespaces other tests are still deleting refuse new content (403 "being
/// terminated"): let them go first, so that any "forbidden" in Bosun's log is its RBAC's.
pub async fn no_namespace_terminating(admin: &Client) {
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    wait_until("no namespace terminating", || async {
        let list = namespaces.list(&ListParams::default()).await.ok()?;
        list.items
            .iter()
            .all(|n| {
                n.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
                    || n.metadata.name.as_deref() == Some(NAMESPACE)
            })
            .then_some(())
    })
    .await;
}
