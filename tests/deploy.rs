//! Installing Bosun in a cluster from `deploy/`.
//!
//! First the manifests as files: the Deployment's securityContext, probes, mounts and configuration fit
//! together; the RBAC has no wildcards and cannot enumerate Secrets; the kustomization lists every
//! manifest. Then on the real test cluster: `kubectl apply -k deploy/` (a server-side dry run, then for
//! real), and the real `bosun run` binary run as the ServiceAccount `deploy/` creates — with a token
//! from the TokenRequest API and the shipped configuration file — so that the RBAC of `deploy/` is what
//! is exercised: a full upgrade (and a canary routed through a Gateway API HTTPRoute) must succeed
//! with nothing forbidden, and what Bosun does not need is refused.
//!
//! The install is cluster-wide (namespace bosun-system, ClusterRoles), so the cluster tests of this
//! file take turns ([`INSTALL`]) and each removes it when done (never the CRDs, which other tests
//! share). The applications live in test namespaces.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bosun_core::model::{ManagedApplication, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, PostParams,
};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};
use support::deploy::{
    AsServiceAccount, DEPLOY, Installed, NAMESPACE, SERVICE_ACCOUNT, UID, config_files, deployment,
    documents, forbidden_lines, kubectl, no_namespace_terminating, only, read, shipped_config,
};
use support::gitserver::{self, TestRepo};
use support::process::{Process, free_port, http_get, local};
use support::{TestNamespace, wait_until};

#[test]
fn the_deployment_runs_two_non_root_replicas_with_a_read_only_root_and_no_capabilities() {
    let d = deployment();
    let spec = d.spec.expect("spec");
    assert_eq!(
        spec.replicas,
        Some(2),
        "two replicas: a leader and a standby"
    );
    let pod = spec.template.spec.expect("pod spec");
    assert_eq!(pod.service_account_name.as_deref(), Some(SERVICE_ACCOUNT));

    let psc = pod.security_context.expect("a pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert_eq!(psc.run_as_user, Some(UID));
    assert_eq!(
        psc.seccomp_profile.map(|s| s.type_).as_deref(),
        Some("RuntimeDefault")
    );

    assert!(!pod.containers.is_empty());
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        let sc = c
            .security_context
            .clone()
            .unwrap_or_else(|| panic!("container {} has a securityContext", c.name));
        assert_eq!(sc.allow_privilege_escalation, Some(false), "{}", c.name);
        assert_eq!(sc.read_only_root_filesystem, Some(true), "{}", c.name);
        assert_ne!(sc.privileged, Some(true), "{}", c.name);
        assert_ne!(sc.run_as_non_root, Some(false), "{}", c.name);
        assert!(matches!(sc.run_as_user, None | Some(UID)), "{}", c.name);
        let caps = sc.capabilities.expect("capabilities");
        assert_eq!(caps.drop, Some(vec!["ALL".to_string()]), "{}", c.name);
        assert!(caps.add.unwrap_or_default().is_empty(), "{}", c.name);
        if let Some(seccomp) = sc.seccomp_profile {
            assert_eq!(seccomp.type_, "RuntimeDefault", "{}", c.name);
        }
        let resources = c.resources.clone().expect("resources");
        for (what, list) in [
            ("requests", resources.requests),
            ("limits", resources.limits),
        ] {
            let list = list.unwrap_or_else(|| panic!("{}: resource {what}", c.name));
            for r in ["cpu", "memory"] {
                assert!(list.contains_key(r), "{}: {what} of {r}", c.name);
            }
        }
    }

    // The replicas spread over nodes.
    let anti = pod
        .affinity
        .and_then(|a| a.pod_anti_affinity)
        .expect("pod anti-affinity");
    let labels = spec
        .template
        .metadata
        .and_then(|m| m.labels)
        .expect("pod labels");
    let terms = anti
        .preferred_during_scheduling_ignored_during_execution
        .unwrap_or_default();
    assert!(
        terms.iter().any(|t| {
            t.pod_affinity_term.topology_key == "kubernetes.io/hostname"
                && t.pod_affinity_term
                    .label_selector
                    .as_ref()
                    .and_then(|s| s.match_labels.as_ref())
                    .is_some_and(|m| m.iter().all(|(k, v)| labels.get(k) == Some(v)))
        }),
        "anti-affinity by hostname over the pods' own labels: {terms:?}"
    );

    // The image agrees: it runs as the same user, `bosun run` as its entrypoint.
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("the Dockerfile");
    assert!(
        dockerfile
            .lines()
            .any(|l| l.trim() == format!("USER {UID}:{UID}")),
        "Dockerfile: USER {UID}:{UID}"
    );
    let entrypoint = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("Dockerfile: ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint).expect("exec-form ENTRYPOINT");
    assert_eq!(entrypoint.last().map(String::as_str), Some("run"));
    assert!(entrypoint[0].ends_with("/bosun"), "{entrypoint:?}");
    assert!(
        dockerfile.contains("cargo build --release --locked"),
        "the image is built from the lock file"
    );
}

#[test]
fn probes_mounts_secrets_and_the_config_file_fit_together() {
    let template = deployment().spec.expect("spec").template;
    let pod = template.spec.expect("pod spec");
    let pod_labels = template
        .metadata
        .and_then(|m| m.labels)
        .expect("pod labels");
    let c = &pod.containers[0];
    let volumes = pod.volumes.clone().unwrap_or_default();
    let mounts = c.volume_mounts.clone().unwrap_or_default();
    let mount_of = |pred: &dyn Fn(&k8s_openapi::api::core::v1::Volume) -> bool| {
        let v = volumes.iter().find(|v| pred(v))?;
        mounts.iter().find(|m| m.name == v.name).cloned()
    };

    // The configuration file: the ConfigMap bosun-config, passed with --config.
    let config_mount = mount_of(&|v| {
        v.config_map
            .as_ref()
            .is_some_and(|cm| cm.name == "bosun-config")
    })
    .expect("the ConfigMap bosun-config is mounted");
    assert_eq!(
        c.args.clone().unwrap_or_default(),
        vec![
            format!("--config={}/config.yaml", config_mount.mount_path),
            "--leader-elect".to_string()
        ],
        "the image's entrypoint is `bosun run`; the args name the config file and elect a leader"
    );
    let config = shipped_config();

    // The HTTP port: the config listens on it, the probes and the Service use it by name.
    let port = c
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("http"))
        .expect("a container port named http");
    let listen: std::net::SocketAddr = config["listen"]
        .as_str()
        .expect("config: listen")
        .parse()
        .expect("listen is an address");
    assert!(
        listen.ip().is_unspecified(),
        "the kubelet and the Service reach the pod on its IP, not on loopback: {listen}"
    );
    assert_eq!(i32::from(listen.port()), port.container_port);
    for (probe, path) in [
        (c.liveness_probe.clone(), "/healthz"),
        (c.readiness_probe.clone(), "/readyz"),
    ] {
        let get = probe.and_then(|p| p.http_get).expect("an HTTP probe");
        assert_eq!(get.path.as_deref(), Some(path));
        assert_eq!(get.port, IntOrString::String("http".into()));
    }
    let service: Service = only("service.yaml");
    let sspec = service.spec.expect("service spec");
    let selects = |selector: &std::collections::BTreeMap<String, String>| {
        !selector.is_empty() && selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v))
    };
    assert!(selects(&sspec.selector.clone().unwrap_or_default()));
    assert!(
        sspec
            .ports
            .iter()
            .flatten()
            .any(|p| p.target_port == Some(IntOrString::String("http".into())))
    );
    let pdb: PodDisruptionBudget = only("poddisruptionbudget.yaml");
    let pdb = pdb.spec.expect("pdb spec");
    assert_eq!(pdb.min_available, Some(IntOrString::Int(1)));
    assert!(selects(
        &pdb.selector
            .and_then(|s| s.match_labels)
            .unwrap_or_default()
    ));

    // Writable places are emptyDirs: the git cache and /tmp.
    let cache_dir = config["cacheDir"].as_str().expect("config: cacheDir");
    for path in [cache_dir, "/tmp"] {
        let m = mounts
            .iter()
            .find(|m| m.mount_path == path)
            .unwrap_or_else(|| panic!("{path} is mounted"));
        let v = volumes.iter().find(|v| v.name == m.name).expect("volume");
        assert!(v.empty_dir.is_some(), "{path} is an emptyDir");
    }

    // Every credential the config names is a file of a mounted Secret, read-only, readable by Bosun's
    // group only.
    let files = config_files(&config);
    assert!(!files.is_empty());
    for file in files {
        let m = mounts
            .iter()
            .find(|m| Path::new(&file).parent() == Some(Path::new(&m.mount_path)))
            .unwrap_or_else(|| panic!("{file} named by the config is in a mounted volume"));
        assert_eq!(m.read_only, Some(true), "{file}");
        let v = volumes.iter().find(|v| v.name == m.name).expect("volume");
        let secret = v
            .secret
            .as_ref()
            .unwrap_or_else(|| panic!("{file} comes from a Secret"));
        assert_eq!(secret.default_mode, Some(0o440), "{file}");
    }
    assert!(
        !read("configmap.yaml").contains("password:") && !read("configmap.yaml").contains("token:"),
        "no credential in the ConfigMap"
    );
}

#[test]
fn rbac_has_no_wildcards_no_escalation_and_cannot_enumerate_secrets() {
    let allowed_verbs: BTreeSet<&str> = [
        "get", "list", "watch", "create", "patch", "update", "delete",
    ]
    .into();
    let docs = documents("rbac.yaml");
    let mut secrets_roles = vec![];
    for doc in &docs {
        let kind = doc["kind"].as_str().expect("kind");
        let name = doc["metadata"]["name"].as_str().expect("name");
        match kind {
            "ClusterRole" | "Role" => {
                if kind == "Role" {
                    assert_eq!(doc["metadata"]["namespace"], NAMESPACE, "{name}");
                }
                assert!(doc.get("aggregationRule").is_none(), "{kind} {name}");
                for rule in doc["rules"].as_array().expect("rules") {
                    let list = |k: &str| -> Vec<String> {
                        rule[k]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .map(|v| v.as_str().expect("a string").to_string())
                            .collect()
                    };
                    let (groups, resources, verbs) =
                        (list("apiGroups"), list("resources"), list("verbs"));
                    assert!(
                        rule.get("nonResourceURLs").is_none(),
                        "{kind} {name}: {rule}"
                    );
                    assert!(
                        !resources.is_empty() && !verbs.is_empty() && !groups.is_empty(),
                        "{rule}"
                    );
                    for v in groups.iter().chain(&resources).chain(&verbs) {
                        assert!(!v.contains('*'), "{kind} {name}: a wildcard in {rule}");
                    }
                    for v in &verbs {
                        assert!(
                            allowed_verbs.contains(v.as_str()),
                            "{kind} {name}: verb {v} (escalate, bind, impersonate, deletecollection are never Bosun's)"
                        );
                    }
                    for r in &resources {
                        assert!(
                            ![
                                "clusterroles",
                                "clusterrolebindings",
                                "roles",
                                "rolebindings"
                            ]
                            .contains(&r.as_str()),
                            "Bosun grants no permissions: {rule}"
                        );
                    }
                    if resources.iter().any(|r| r == "secrets") {
                        secrets_roles.push(name.to_string());
                        assert!(
                            !verbs.iter().any(|v| v == "list" || v == "watch"),
                            "{kind} {name}: Secrets are never listed or watched: {rule}"
                        );
                    }
                    if resources.iter().any(|r| r == "leases") {
                        assert_eq!(kind, "Role", "Leases only in Bosun's own namespace");
                    }
                }
            }
            "ClusterRoleBinding" | "RoleBinding" => {
                assert_ne!(
                    doc["roleRef"]["name"], "cluster-admin",
                    "{kind} {name} binds cluster-admin"
                );
                assert_eq!(
                    doc["subjects"],
                    json!([{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}]),
                    "{kind} {name} binds Bosun's ServiceAccount only"
                );
            }
            other => panic!("deploy/rbac.yaml holds RBAC only, not {other}"),
        }
    }
    assert_eq!(
        secrets_roles,
        ["bosun-app-secrets"],
        "Secrets only through the ClusterRole kept apart for them"
    );
}

#[test]
fn the_kustomization_lists_every_manifest_of_deploy() {
    let k: Value = documents("kustomization.yaml").remove(0);
    let listed: BTreeSet<String> = k["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a path").to_string())
        .collect();
    let mut present = BTreeSet::new();
    for dir in ["", "crds"] {
        for entry in std::fs::read_dir(Path::new(DEPLOY).join(dir)).expect("deploy/") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|n| n.to_str()).expect("a name");
            if name.ends_with(".yaml") && name != "kustomization.yaml" {
                present.insert(if dir.is_empty() {
                    name.to_string()
                } else {
                    format!("{dir}/{name}")
                });
            }
        }
    }
    assert_eq!(
        listed, present,
        "deploy/kustomization.yaml lists exactly the manifests of deploy/"
    );
}

#[tokio::test]
async fn deploy_applies_with_a_server_dry_run_then_for_real_and_its_pods_are_admitted() {
    let installed = Installed::new().await;
    let objects: Vec<&str> = installed
        .applied
        .lines()
        .filter(|l| l.ends_with(" serverside-applied"))
        .collect();
    let dry: Vec<&str> = installed
        .dry_run
        .lines()
        .filter(|l| l.ends_with(" serverside-applied (server dry run)"))
        .collect();
    // Every document of every manifest, CRDs included, is applied.
    let expected: usize = documents("kustomization.yaml")[0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| documents(r.as_str().expect("path")).len())
        .sum();
    assert_eq!(objects.len(), expected, "{}", installed.applied);
    assert_eq!(dry.len(), expected, "{}", installed.dry_run);
    if !installed.cluster_role_before_dry_run {
        assert!(
            !installed.cluster_role_after_dry_run,
            "a dry run creates nothing"
        );
    }

    // The pods meet the namespace's "restricted" Pod Security level (or they would not be created) and
    // both replicas run.
    let deployments: Api<Deployment> = Api::namespaced(installed.admin.clone(), NAMESPACE);
    wait_until("Deployment bosun with 2 available replicas", || async {
        let d = deployments.get("bosun").await.ok()?;
        (d.status?.available_replicas? == 2).then_some(())
    })
    .await;
    let ns = Api::<Namespace>::all(installed.admin.clone())
        .get(NAMESPACE)
        .await
        .expect("namespace");
    assert_eq!(
        ns.metadata
            .labels
            .unwrap_or_default()
            .get("pod-security.kubernetes.io/enforce")
            .map(String::as_str),
        Some("restricted")
    );

    // Applying again changes nothing and fails nothing: the install is idempotent.
    let again = kubectl(&["apply", "--server-side", "--force-conflicts", "-k", DEPLOY]);
    assert_eq!(
        again
            .lines()
            .filter(|l| l.ends_with(" serverside-applied"))
            .count(),
        expected
    );
}

/// An app that uses every kind of object the engine writes: a migration Job with a down-migration (a
/// rollback deletes the up Job and runs the down Job), BlueGreen (a preview Deployment and Service,
/// deleted after the switch).
fn shop(version: &str) -> String {
    format!(
        "apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: shop
spec:
  version: {version}
  replicas: 2
  upgradeStrategy:
    type: BlueGreen
    progressDeadlineSeconds: 6
    migrationJob:
      image: shop-migrations:1
      down:
        command: [migrate, down]
    blueGreen:
      scaleDownDelaySeconds: 1
"
    )
}

/// `web`: a canary whose 20 % go through the Gateway API HTTPRoute `web` (exact, with 2 pods).
fn web(version: &str) -> String {
    format!(
        "apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: web
spec:
  version: {version}
  replicas: 2
  upgradeStrategy:
    type: Canary
    trafficRouting:
      gatewayAPI: {{httpRoute: web}}
    canary:
      steps:
        - weight: 20
        - weight: 100
"
    )
}

/// The shipped config.yaml, pointed at the test's repository, namespace and temporary files; every other
/// setting as shipped.
fn localized_config(
    repo: &TestRepo,
    namespace: &str,
    listen: std::net::SocketAddr,
    dir: &Path,
) -> PathBuf {
    let mut config = shipped_config();
    let token = dir.join("git-token");
    std::fs::write(&token, &gitserver::shared().http_token).expect("write token");
    let webhook = dir.join("webhook-secret");
    std::fs::write(&webhook, "a-long-random-webhook-secret-for-tests").expect("write secret");
    let cache = dir.join("cache");
    // Each replaced setting must be one the shipped file has: the test runs the file as shipped.
    let set = |value: &mut Value, key: &str, new: Value| {
        assert!(
            value.get(key).is_some(),
            "the shipped config.yaml has no {key}"
        );
        value[key] = new;
    };
    set(&mut config, "listen", json!(listen.to_string()));
    set(&mut config, "cacheDir", json!(cache));
    set(&mut config, "webhookSecretFile", json!(webhook));
    let source = &mut config["sources"][0];
    set(source, "repo", json!(repo.http_url));
    set(source, "namespace", json!(namespace));
    set(source, "gitTokenFile", json!(token));
    set(source, "pollInterval", json!(1));
    set(source, "path", json!("apps"));
    // The source's name labels what it applies; one of the test's own keeps tests apart.
    set(source, "name", json!(namespace));
    let path = dir.join("config.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&config).expect("json")).expect("write");
    path
}

/// Waits for shop to reach `phase` at `version` ([`phase_of`]).
async fn phase_is(bosun: &Process, apps: &Api<ManagedApplication>, phase: Phase, version: &str) {
    phase_of(bosun, apps, "shop", phase, version).await;
}

/// Waits for the app to reach `phase` at `version`; fails at once, with the lines, when Bosun's log shows
/// a refusal (a missing rule would otherwise show only as a timeout).
async fn phase_of(
    bosun: &Process,
    apps: &Api<ManagedApplication>,
    app: &str,
    phase: Phase,
    version: &str,
) {
    wait_until(&format!("{app} {phase} at {version}"), || async {
        let log = bosun.log();
        let refused = forbidden_lines(&log);
        assert!(
            refused.is_empty(),
            "Bosun was refused something it needs (deploy/rbac.yaml):\n{}",
            refused.join("\n")
        );
        let s = apps.get(app).await.ok()?.status?;
        (s.phase == Some(phase) && s.current_version.as_deref() == Some(version)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn bosun_as_its_service_account_upgrades_an_app_with_nothing_forbidden() {
    let installed = Installed::new().await;
    let admin = installed.admin.clone();
    no_namespace_terminating(&admin).await;
    let ns = TestNamespace::new("deploy-sa").await;
    let sa = AsServiceAccount::new(&admin).await;
    // A routed canary too: the real Gateway API CRDs, and the HTTPRoute its team wrote.
    let _gateway_api =
        support::crds::install_upstream(&admin, "gateway.networking.k8s.io_httproutes.yaml").await;
    let route_api = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
        "httproutes",
    );
    let routes: Api<DynamicObject> = Api::namespaced_with(admin.clone(), &ns.name, &route_api);
    let route: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "web"},
        "spec": {"parentRefs": [{"name": "gateway"}],
                 "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]},
    }))
    .expect("an HTTPRoute");
    let route = routes
        .create(&PostParams::default(), &route)
        .await
        .expect("create the HTTPRoute");
    let repo = gitserver::shared().create_repo(
        &ns.name,
        &[
            ("apps/shop.yaml", shop("v1").as_str()),
            ("apps/web.yaml", web("v1").as_str()),
        ],
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = local(free_port());
    let config = localized_config(&repo, &ns.name, listen, dir.path());
    let bosun = Process::bosun(|c| {
        c.args(["run", "--config"])
            .arg(&config)
            // As the Deployment runs it: leader election on the Lease bosun-system/bosun.
            .args(["--leader-elect", "--lease-duration", "5"])
            .env("POD_NAMESPACE", NAMESPACE)
            .env("POD_NAME", format!("deploy-test-{}", std::process::id()))
            .env("KUBECONFIG", sa.file.path())
            .env("BOSUN_LOG", "info")
            .env("NO_COLOR", "1");
    });

    let apps: Api<ManagedApplication> = Api::namespaced(admin.clone(), &ns.name);
    phase_is(&bosun, &apps, Phase::Healthy, "v1").await;
    phase_of(&bosun, &apps, "web", Phase::Healthy, "v1").await;
    repo.commit(
        "shop and web v2",
        &[("apps/shop.yaml", shop("v2")), ("apps/web.yaml", web("v2"))],
    );
    phase_is(&bosun, &apps, Phase::Healthy, "v2").await;
    // The routed canary went through its 20 % step (the route's weights, the canary's Service) and
    // the route reads as written again.
    phase_of(&bosun, &apps, "web", Phase::Healthy, "v2").await;
    let web_status = apps
        .get("web")
        .await
        .expect("web")
        .status
        .expect("a status");
    assert!(
        web_status
            .history
            .iter()
            .any(|h| h.weight == Some(20) && h.message.contains("step 1 at 20 %")),
        "{:#?}",
        web_status.history
    );
    let after = routes.get("web").await.expect("the HTTPRoute");
    assert_eq!(after.data["spec"]["rules"], route.data["spec"]["rules"]);
    let d = Api::<Deployment>::namespaced(admin.clone(), &ns.name)
        .get("shop")
        .await
        .expect("the shop Deployment");
    let image = d
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.containers.first().and_then(|c| c.image.clone()));
    assert_eq!(image.as_deref(), Some("shop:v2"));
    let deployments = Api::<Deployment>::namespaced(admin.clone(), &ns.name);
    assert!(
        deployments
            .get_opt("shop-preview")
            .await
            .expect("get")
            .is_none(),
        "the preview is removed after the switch"
    );
    // A broken version: rolled back, its down-migration run (its up Job deleted first), and the
    // rollback committed to git (the shipped configuration writes back), which brings the app to v2.
    repo.commit("shop v3-broken", &[("apps/shop.yaml", shop("v3-broken"))]);
    let jobs = Api::<Job>::namespaced(admin.clone(), &ns.name);
    wait_until(
        "v3-broken rolled back, migrated down and reverted in git",
        || async {
            assert!(forbidden_lines(&bosun.log()).is_empty(), "{}", bosun.log());
            let app = apps.get("shop").await.ok()?;
            let reverted = app.annotations().contains_key("bosun.dev/rollback-of");
            let s = app.status?;
            let down = jobs.get_opt("shop-migration-down-v3-broken").await.ok()??;
            (reverted
                && app.spec.version == "v2"
                && s.phase == Some(Phase::Healthy)
                && down.status?.succeeded == Some(1))
            .then_some(())
        },
    )
    .await;
    assert!(
        jobs.get_opt("shop-migration-v3-broken")
            .await
            .expect("get")
            .is_none(),
        "the up Job of the rolled-back version was deleted"
    );
    // The engine's Events (events.k8s.io) were written as the ServiceAccount too.
    let events = Api::<Event>::namespaced(admin.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .expect("events");
    assert!(
        events.items.iter().any(|e| {
            e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("shop")
                && e.reporting_controller.as_deref() == Some("bosun")
        }),
        "Bosun's Events on shop: {:?}",
        events.items.iter().map(|e| &e.reason).collect::<Vec<_>>()
    );
    // The shipped listen setting serves health checks.
    let (status, body) =
        wait_until("GET /healthz", || async { http_get(listen, "/healthz") }).await;
    assert_eq!((status, body.trim()), (200, "ok"));

    let text = bosun.log();
    drop(bosun);
    let forbidden = forbidden_lines(&text);
    assert!(
        forbidden.is_empty(),
        "Bosun was refused something it needs (deploy/rbac.yaml):\n{}",
        forbidden.join("\n")
    );
    assert!(text.contains("synced"), "Bosun ran:\n{text}");
    for secret in [sa.token.as_str(), gitserver::shared().http_token.as_str()] {
        assert!(!text.contains(secret), "a credential reached the log");
    }
}

fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

#[tokio::test]
async fn the_service_account_is_refused_what_bosun_does_not_need() {
    let installed = Installed::new().await;
    let ns = TestNamespace::new("deploy-refused").await;
    let sa = AsServiceAccount::new(&installed.admin).await.client;

    // What it needs works (so the refusals below are RBAC's, not a broken token).
    Api::<ManagedApplication>::all(sa.clone())
        .list(&ListParams::default())
        .await
        .expect("listing ManagedApplications everywhere");
    let discovery = kube::Discovery::new(sa.clone())
        .run()
        .await
        .expect("API discovery needs no rule of Bosun's own");
    assert!(
        discovery.groups().any(|g| g.name() == "apps.example.com"),
        "discovery finds Bosun's API group"
    );
    let leases: Api<Lease> = Api::namespaced(sa.clone(), NAMESPACE);
    let lease: Lease =
        serde_json::from_value(json!({"metadata": {"name": "bosun"}})).expect("lease");
    leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("creating its Lease");
    leases.get("bosun").await.expect("reading its Lease");
    // Bestie's database Secret: created, and read by name, in an app's namespace.
    let secrets: Api<Secret> = Api::namespaced(sa.clone(), &ns.name);
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "bestie-db"}, "stringData": {"password": "generated"}}),
    )
    .expect("secret");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("creating a Bestie's database Secret");
    secrets.get("bestie-db").await.expect("reading it by name");

    // What it does not need is refused.
    refused(
        "listing Secrets in an app's namespace",
        secrets.list(&ListParams::default()).await,
    );
    refused(
        "listing Secrets everywhere",
        Api::<Secret>::all(sa.clone())
            .list(&ListParams::default())
            .await,
    );
    refused(
        "listing Secrets of kube-system",
        Api::<Secret>::namespaced(sa.clone(), "kube-system")
            .list(&ListParams::default())
            .await,
    );
    refused(
        "deleting a Secret",
        secrets.delete("bestie-db", &DeleteParams::default()).await,
    );
    refused(
        "deleting a namespace",
        Api::<Namespace>::all(sa.clone())
            .delete(&ns.name, &DeleteParams::default())
            .await,
    );
    let binding: ClusterRoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "bosun-escalates"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}],
    }))
    .expect("binding");
    refused(
        "creating a ClusterRoleBinding to cluster-admin",
        Api::<ClusterRoleBinding>::all(sa.clone())
            .create(&PostParams::default(), &binding)
            .await,
    );
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "not-bosuns"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))
    .expect("pod");
    refused(
        "creating a Pod (Bosun creates Deployments and Jobs, never Pods)",
        Api::<Pod>::namespaced(sa.clone(), &ns.name)
            .create(&PostParams::default(), &pod)
            .await,
    );
    refused(
        "reading its own ConfigMap through the API (it is a mounted file)",
        Api::<ConfigMap>::namespaced(sa.clone(), NAMESPACE)
            .get("bosun-config")
            .await,
    );
    refused("reading another Lease", leases.get("someone-elses").await);
    refused("listing Leases", leases.list(&ListParams::default()).await);
    refused(
        "deleting its Lease",
        leases.delete("bosun", &DeleteParams::default()).await,
    );
}
