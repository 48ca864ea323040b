//! The Bestie controller on the real test cluster: a controller of its own per test namespace, the seeds'
//! YAML verbatim, real Deployments, StatefulSets, Jobs and kwok pods (images ending `-broken` never become
//! ready). The test cluster has no volume provisioner, so a test hands the database its volume: a
//! PersistentVolume pre-bound to the StatefulSet's claim, as an administrator would.

mod support;

use std::time::Duration;

use bosun_core::engine::bestie::{
    ANNOTATION_PROGRESS_DEADLINE, ANNOTATION_TEMPLATE_HASH, CONDITION_READY, reason,
};
use bosun_core::model::Bestie;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::{TestNamespace, holds_for, install_crds, wait_until};

const SEED_000: &str = include_str!("../fixtures/seeds/000-bestie.yaml");
const SEED_001: &str = include_str!("../fixtures/seeds/001-bestie.yaml");

struct Running {
    ns: TestNamespace,
    controller: tokio::task::JoinHandle<()>,
    volume: Option<support::volume::BestieVolume>,
}

impl Running {
    fn restart(&mut self) {
        self.controller.abort();
        self.controller = spawn_controller(&self.ns);
    }

    fn stop(&mut self) {
        self.controller.abort();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.controller.abort();
    }
}

fn spawn_controller(ns: &TestNamespace) -> tokio::task::JoinHandle<()> {
    tokio::spawn(bosun::bestie::run(ns.client.clone(), Some(ns.name.clone())))
}

async fn start(prefix: &str) -> Running {
    let ns = TestNamespace::new(prefix).await;
    install_crds(&ns.client).await;
    let controller = spawn_controller(&ns);
    Running {
        ns,
        controller,
        volume: None,
    }
}

/// Hands the StatefulSet database of `bestie` its volume.
async fn provide_volume(r: &mut Running, bestie: &str) {
    r.volume = Some(support::volume::BestieVolume::provide(&r.ns, bestie).await);
}

/// Creates a Bestie from YAML, as `kubectl create -f` would.
async fn create_yaml(r: &Running, yaml: &str, annotations: serde_json::Value) {
    let mut value: serde_json::Value = serde_saphyr::from_str(yaml).expect("the seed's YAML");
    value["metadata"]["annotations"] = annotations;
    let bestie: Bestie = serde_json::from_value(value).expect("a Bestie");
    r.ns.api::<Bestie>()
        .create(&PostParams::default(), &bestie)
        .await
        .expect("create the Bestie");
}

async fn set_version(r: &Running, version: &str) {
    r.ns.api::<Bestie>()
        .patch(
            "bestie",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"version": version}})),
        )
        .await
        .expect("patch the Bestie");
}

async fn exists<K>(r: &Running, name: &str) -> Option<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    r.ns.api::<K>().get_opt(name).await.ok().flatten()
}

async fn appversion_is(r: &Running, version: &str) -> Bestie {
    wait_until(&format!("status.appversion {version}"), || async {
        let b = r.ns.api::<Bestie>().get("bestie").await.ok()?;
        (b.status.as_ref()?.appversion.as_deref() == Some(version)).then_some(b)
    })
    .await
}

async fn app_image(r: &Running) -> Option<String> {
    let d = exists::<Deployment>(r, "bestie-app").await?;
    d.spec?.template.spec?.containers.first()?.image.clone()
}

fn assert_owned(meta: &kube::api::ObjectMeta, what: &str) {
    let owner = meta
        .owner_references
        .as_ref()
        .and_then(|o| o.first())
        .unwrap_or_else(|| panic!("{what} has no owner"));
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str(), owner.controller),
        ("Bestie", "bestie", Some(true)),
        "{what}"
    );
    let labels = meta.labels.clone().unwrap_or_default();
    assert_eq!(
        labels
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("bosun"),
        "{what}"
    );
    assert_eq!(
        labels.get("app.kubernetes.io/instance").map(String::as_str),
        Some("bestie"),
        "{what}"
    );
}

/// A Bestie from `yaml`, its database given a volume, serving `1.3`.
async fn serving(prefix: &str, yaml: &str, annotations: serde_json::Value) -> Running {
    let mut r = start(prefix).await;
    provide_volume(&mut r, "bestie").await;
    create_yaml(&r, yaml, annotations).await;
    appversion_is(&r, "1.3").await;
    r
}

#[tokio::test]
async fn seed_001_creates_the_database_then_the_seed_job_then_the_app() {
    let mut r = start("bestie-order").await;
    create_yaml(&r, SEED_001, json!({})).await;

    // 1. The database first: without its volume it cannot start, and nothing else is created.
    let sts = wait_until("the database StatefulSet", || {
        exists::<StatefulSet>(&r, "bestie-db")
    })
    .await;
    assert_owned(&sts.metadata, "StatefulSet bestie-db");
    let secret = exists::<Secret>(&r, "bestie-db")
        .await
        .expect("the database Secret, created before the StatefulSet");
    assert_owned(&secret.metadata, "Secret bestie-db");
    let headless = exists::<Service>(&r, "bestie-db")
        .await
        .expect("the database's headless Service");
    assert_eq!(
        headless.spec.and_then(|s| s.cluster_ip).as_deref(),
        Some("None")
    );
    holds_for(
        "no seed Job and no app while the database is not ready",
        Duration::from_secs(3),
        || async {
            exists::<Job>(&r, "bestie-seed").await.is_none()
                && exists::<Deployment>(&r, "bestie-app").await.is_none()
        },
    )
    .await;

    // 2. The seed Job once the database is ready; 3. the app after the seed succeeded.
    provide_volume(&mut r, "bestie").await;
    let job = wait_until("the seed Job", || exists::<Job>(&r, "bestie-seed")).await;
    assert_owned(&job.metadata, "Job bestie-seed");
    let job_spec = job.spec.clone().expect("a Job spec");
    assert_eq!(
        job_spec
            .template
            .spec
            .as_ref()
            .and_then(|s| s.restart_policy.as_deref()),
        Some("Never")
    );
    assert!(job_spec.backoff_limit.is_some_and(|b| b <= 3));
    let deployment = wait_until("the app Deployment", || {
        exists::<Deployment>(&r, "bestie-app")
    })
    .await;
    let completed = wait_until("the seed Job's completion time", || async {
        exists::<Job>(&r, "bestie-seed")
            .await?
            .status?
            .completion_time
    })
    .await;
    let created = deployment
        .metadata
        .creation_timestamp
        .clone()
        .expect("a creation time");
    assert!(
        created.0 >= completed.0,
        "the app ({created:?}) was created after the seed Job completed ({completed:?})"
    );
    assert_owned(&deployment.metadata, "Deployment bestie-app");
    let spec = deployment.spec.expect("a Deployment spec");
    assert_eq!(spec.replicas, Some(3));
    let container = &spec.template.spec.expect("a pod spec").containers[0];
    assert_eq!(container.image.as_deref(), Some("quay.io/opdev/bestie:1.3"));
    assert!(container.readiness_probe.is_some() && container.liveness_probe.is_some());
    assert!(
        container
            .env
            .iter()
            .flatten()
            .any(|e| e.name == "DB_PASSWORD"
                && e.value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .is_some_and(|s| s.name == "bestie-db")),
        "the app reads its password from the database Secret"
    );

    // 4., 5. Service, Ingress, HPA.
    let svc = wait_until("the app Service", || exists::<Service>(&r, "bestie-app")).await;
    assert_owned(&svc.metadata, "Service bestie-app");
    let ingress = wait_until("the Ingress", || exists::<Ingress>(&r, "bestie-app")).await;
    assert_owned(&ingress.metadata, "Ingress bestie-app");
    let hpa = wait_until("the HPA", || {
        exists::<HorizontalPodAutoscaler>(&r, "bestie-app")
    })
    .await;
    assert_owned(&hpa.metadata, "HPA bestie-app");
    let hpa_spec = hpa.spec;
    assert_eq!(
        (hpa_spec.min_replicas, hpa_spec.max_replicas),
        (Some(3), 10)
    );

    let b = appversion_is(&r, "1.3").await;
    let ready = b
        .status
        .expect("status")
        .conditions
        .into_iter()
        .find(|c| c.type_ == CONDITION_READY)
        .expect("a Ready condition");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", reason::ROLLOUT_COMPLETE)
    );
}

#[tokio::test]
async fn seed_000_status_shows_appversion_and_a_podstatus_line_per_pod() {
    let r = serving("bestie-status", SEED_000, json!({})).await;
    let b = wait_until("three podstatus lines", || async {
        let b = r.ns.api::<Bestie>().get("bestie").await.ok()?;
        (b.status.as_ref()?.podstatus.len() == 3).then_some(b)
    })
    .await;
    let status = b.status.expect("status");
    assert_eq!(status.appversion.as_deref(), Some("1.3"));
    for line in &status.podstatus {
        let parts: Vec<&str> = line.split(" : ").collect();
        assert_eq!(parts.len(), 3, "{line:?} reads `pod : phase : image`");
        assert!(parts[0].starts_with("bestie-app-"), "{line}");
        assert_eq!(parts[1], "Running", "{line}");
        assert_eq!(parts[2], "quay.io/opdev/bestie:1.3", "{line}");
    }
    assert!(
        exists::<HorizontalPodAutoscaler>(&r, "bestie-app")
            .await
            .is_none(),
        "seed 000 sets no maxReplicas: no HPA"
    );

    // Left alone, a serving Bestie stays as it is: wake the controller with a harmless annotation and
    // watch that neither the Bestie's status nor anything it owns changes (no churn of timestamps or
    // hashes; that no request is sent at all is the planner's `a_serving_bestie_plans_no_writes...`).
    let rv = |o: Option<kube::api::ObjectMeta>| o.and_then(|m| m.resource_version);
    let deployment_rv = rv(exists::<Deployment>(&r, "bestie-app")
        .await
        .map(|d| d.metadata));
    let sts_rv = rv(exists::<StatefulSet>(&r, "bestie-db")
        .await
        .map(|d| d.metadata));
    let touched =
        r.ns.api::<Bestie>()
            .patch(
                "bestie",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"touch": "1"}}})),
            )
            .await
            .expect("annotate the Bestie");
    let bestie_rv = touched.metadata.resource_version;
    holds_for(
        "a serving Bestie and what it owns unchanged",
        Duration::from_secs(4),
        || async {
            rv(exists::<Bestie>(&r, "bestie").await.map(|b| b.metadata)) == bestie_rv
                && rv(exists::<Deployment>(&r, "bestie-app")
                    .await
                    .map(|d| d.metadata))
                    == deployment_rv
                && rv(exists::<StatefulSet>(&r, "bestie-db")
                    .await
                    .map(|d| d.metadata))
                    == sts_rv
        },
    )
    .await;
}

#[tokio::test]
async fn a_version_change_rolls_out_and_becomes_the_appversion() {
    let r = serving("bestie-upgrade", SEED_000, json!({})).await;
    set_version(&r, "1.4").await;
    let b = appversion_is(&r, "1.4").await;
    let status = b.status.expect("status");
    assert_eq!(status.last_healthy_version.as_deref(), Some("1.4"));
    assert_eq!(
        app_image(&r).await.as_deref(),
        Some("quay.io/opdev/bestie:1.4")
    );
    wait_until("every podstatus line on 1.4", || async {
        let b = r.ns.api::<Bestie>().get("bestie").await.ok()?;
        let lines = b.status?.podstatus;
        (lines.len() == 3
            && lines
                .iter()
                .all(|l| l.ends_with(" : quay.io/opdev/bestie:1.4")))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_broken_version_rolls_back_and_is_not_retried() {
    let r = serving(
        "bestie-broken",
        SEED_000,
        json!({ANNOTATION_PROGRESS_DEADLINE: "5"}),
    )
    .await;
    set_version(&r, "1.4-broken").await;
    // While the pods roll, podstatus shows both versions side by side, as seed 000 does.
    wait_until("podstatus with 1.3 and 1.4-broken pods", || async {
        let lines =
            r.ns.api::<Bestie>()
                .get("bestie")
                .await
                .ok()?
                .status?
                .podstatus;
        let old = lines.iter().filter(|l| l.ends_with(":1.3")).count();
        let new = lines.iter().filter(|l| l.ends_with(":1.4-broken")).count();
        (old == 3 && new == 1).then_some(())
    })
    .await;
    let b = wait_until("failedVersion 1.4-broken", || async {
        let b = r.ns.api::<Bestie>().get("bestie").await.ok()?;
        (b.status.as_ref()?.failed_version.as_deref() == Some("1.4-broken")).then_some(b)
    })
    .await;
    let ready = b
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == CONDITION_READY))
        .expect("a Ready condition")
        .clone();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason::ROLLOUT_FAILED)
    );
    assert!(ready.message.contains("1.4-broken"), "{}", ready.message);
    wait_until("the app back on 1.3", || async {
        (app_image(&r).await.as_deref() == Some("quay.io/opdev/bestie:1.3")).then_some(())
    })
    .await;
    appversion_is(&r, "1.3").await;
    let event = wait_until("a RolloutFailed Event naming the version", || async {
        let events = r.ns.api::<Event>().list(&Default::default()).await.ok()?;
        events.items.into_iter().find(|e| {
            e.reason.as_deref() == Some(reason::ROLLOUT_FAILED)
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.contains("1.4-broken"))
        })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    // The deadline is 5 s: a retry loop would put 1.4-broken back within this window.
    holds_for(
        "the failed version not retried",
        Duration::from_secs(10),
        || async { app_image(&r).await.as_deref() == Some("quay.io/opdev/bestie:1.3") },
    )
    .await;

    set_version(&r, "1.5").await;
    appversion_is(&r, "1.5").await;
}

/// The app container of the Deployment `bestie-app`: (image, containerPort, readiness probe port).
async fn app_container(r: &Running) -> Option<(String, i32, Option<i32>)> {
    let d = exists::<Deployment>(r, "bestie-app").await?;
    let c = d.spec?.template.spec?.containers.into_iter().next()?;
    let port = c.ports.as_ref()?.first()?.container_port;
    let probe_port = c
        .readiness_probe
        .and_then(|p| p.http_get)
        .and_then(|h| match h.port {
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(p) => Some(p),
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String(_) => None,
        });
    Some((c.image?, port, probe_port))
}

#[tokio::test]
async fn a_new_image_and_a_broken_version_together_roll_back_to_the_old_image_and_port_whole() {
    let r = serving(
        "bestie-template",
        SEED_000,
        json!({ANNOTATION_PROGRESS_DEADLINE: "5"}),
    )
    .await;
    let healthy = wait_until("lastHealthyTemplate recorded", || async {
        r.ns.api::<Bestie>()
            .get("bestie")
            .await
            .ok()?
            .status?
            .last_healthy_template
    })
    .await;
    assert_eq!(
        (
            healthy.image.as_str(),
            healthy.version.as_str(),
            healthy.port
        ),
        ("quay.io/opdev/bestie", "1.3", 8000)
    );

    // One commit changes the repository, the tag and the port together; the new pods never get ready.
    r.ns.api::<Bestie>()
        .patch(
            "bestie",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "image": "quay.io/other/bestie",
                "version": "1.4-broken",
                "port": 9000,
            }})),
        )
        .await
        .expect("patch the Bestie");
    wait_until("the new template rolling out", || async {
        let (image, port, _) = app_container(&r).await?;
        (image == "quay.io/other/bestie:1.4-broken" && port == 9000).then_some(())
    })
    .await;
    let b = wait_until("failedVersion 1.4-broken", || async {
        let b = r.ns.api::<Bestie>().get("bestie").await.ok()?;
        (b.status.as_ref()?.failed_version.as_deref() == Some("1.4-broken")).then_some(b)
    })
    .await;
    let status = b.status.expect("status");
    assert!(status.failed_hash.is_some(), "{status:?}");
    assert_ne!(status.failed_hash.as_ref(), Some(&healthy.hash));

    // The rollback runs exactly what last ran: the old repository, tag and port, not the new image at
    // the old tag (pods that never ran).
    wait_until(
        "the app back on quay.io/opdev/bestie:1.3, port 8000",
        || async {
            let (image, port, probe) = app_container(&r).await?;
            (image == "quay.io/opdev/bestie:1.3" && port == 8000 && probe == Some(8000))
                .then_some(())
        },
    )
    .await;
    let b = appversion_is(&r, "1.3").await;
    let status = b.status.expect("status");
    assert_eq!(status.last_healthy_template.as_ref(), Some(&healthy));
    assert_eq!(status.last_healthy_version.as_deref(), Some("1.3"));
    assert_eq!(status.failed_version.as_deref(), Some("1.4-broken"));
    let d = exists::<Deployment>(&r, "bestie-app")
        .await
        .expect("the Deployment");
    assert_eq!(
        d.annotations().get(ANNOTATION_TEMPLATE_HASH),
        Some(&healthy.hash)
    );
    wait_until(
        "every podstatus line on quay.io/opdev/bestie:1.3",
        || async {
            let lines =
                r.ns.api::<Bestie>()
                    .get("bestie")
                    .await
                    .ok()?
                    .status?
                    .podstatus;
            (lines.len() == 3
                && lines
                    .iter()
                    .all(|l| l.ends_with(" : quay.io/opdev/bestie:1.3")))
            .then_some(())
        },
    )
    .await;
    // The deadline is 5 s: a retry would put the new template back within this window.
    holds_for(
        "the failed template not retried",
        Duration::from_secs(7),
        || async {
            app_container(&r)
                .await
                .is_some_and(|(image, port, _)| image == "quay.io/opdev/bestie:1.3" && port == 8000)
        },
    )
    .await;
}

#[tokio::test]
async fn deleting_the_bestie_garbage_collects_everything_it_owns() {
    let r = serving("bestie-delete", SEED_001, json!({})).await;
    wait_until("the HPA", || {
        exists::<HorizontalPodAutoscaler>(&r, "bestie-app")
    })
    .await;
    r.ns.api::<Bestie>()
        .delete("bestie", &DeleteParams::foreground())
        .await
        .expect("delete the Bestie");
    wait_until("everything the Bestie owned gone", || async {
        let gone = exists::<Deployment>(&r, "bestie-app").await.is_none()
            && exists::<Service>(&r, "bestie-app").await.is_none()
            && exists::<Ingress>(&r, "bestie-app").await.is_none()
            && exists::<HorizontalPodAutoscaler>(&r, "bestie-app")
                .await
                .is_none()
            && exists::<Job>(&r, "bestie-seed").await.is_none()
            && exists::<StatefulSet>(&r, "bestie-db").await.is_none()
            && exists::<Service>(&r, "bestie-db").await.is_none()
            && exists::<Secret>(&r, "bestie-db").await.is_none()
            && exists::<Bestie>(&r, "bestie").await.is_none();
        gone.then_some(())
    })
    .await;
}

fn password(secret: &Secret) -> ByteString {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get("password"))
        .cloned()
        .expect("a password in the database Secret")
}

#[tokio::test]
async fn a_restart_keeps_the_password_and_never_reruns_the_seed_job() {
    let mut r = serving("bestie-restart", SEED_000, json!({})).await;
    let secret = exists::<Secret>(&r, "bestie-db").await.expect("the Secret");
    let before = password(&secret);
    assert!(before.0.len() >= 16, "a generated password of some length");
    let job = exists::<Job>(&r, "bestie-seed")
        .await
        .expect("the seed Job");
    let job_uid = job.uid().expect("a uid");

    // A restart with the Job still there: nothing is recreated.
    r.restart();
    r.ns.api::<Bestie>()
        .patch(
            "bestie",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 2}})),
        )
        .await
        .expect("patch size");
    wait_until("the restarted controller at work (size 2)", || async {
        let d = exists::<Deployment>(&r, "bestie-app").await?;
        (d.spec?.replicas == Some(2)).then_some(())
    })
    .await;
    let after = exists::<Secret>(&r, "bestie-db").await.expect("the Secret");
    assert_eq!(
        password(&after),
        before,
        "the password survived the restart"
    );
    assert_eq!(after.uid(), secret.uid(), "the same Secret");
    assert_eq!(
        exists::<Job>(&r, "bestie-seed").await.and_then(|j| j.uid()),
        Some(job_uid),
        "the same seed Job, not a second run"
    );

    // Even with the finished Job removed while Bosun is down, a restart does not seed again.
    r.stop();
    r.ns.api::<Job>()
        .delete("bestie-seed", &DeleteParams::background())
        .await
        .expect("delete the seed Job");
    wait_until("the seed Job gone", || async {
        exists::<Job>(&r, "bestie-seed")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    r.restart();
    r.ns.api::<Bestie>()
        .patch(
            "bestie",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"size": 3}})),
        )
        .await
        .expect("patch size");
    wait_until("the restarted controller at work (size 3)", || async {
        let d = exists::<Deployment>(&r, "bestie-app").await?;
        (d.spec?.replicas == Some(3)).then_some(())
    })
    .await;
    holds_for("no second seed Job", Duration::from_secs(3), || async {
        exists::<Job>(&r, "bestie-seed").await.is_none()
    })
    .await;
    let b =
        r.ns.api::<Bestie>()
            .get("bestie")
            .await
            .expect("the Bestie");
    assert_eq!(b.status.and_then(|s| s.database_seeded), Some(true));
}

#[tokio::test]
async fn the_controller_works_with_exactly_the_documented_permissions() {
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let ns = TestNamespace::new("bestie-rbac").await;
    install_crds(&ns.client).await;
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "bosun-bestie"},
        "rules": bosun::bestie::policy_rules(),
    }))
    .expect("a Role");
    ns.api::<Role>()
        .create(&PostParams::default(), &role)
        .await
        .expect("create the Role");
    let user = std::env::var("BOSUN_CLUSTER_RESTRICTED_USER").unwrap_or("bosun-restricted".into());
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "bosun-bestie"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "bosun-bestie"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }))
    .expect("a RoleBinding");
    ns.api::<RoleBinding>()
        .create(&PostParams::default(), &binding)
        .await
        .expect("create the RoleBinding");
    let restricted = support::restricted_client().await;
    let controller = tokio::spawn(bosun::bestie::run(restricted, Some(ns.name.clone())));
    let mut r = Running {
        ns,
        controller,
        volume: None,
    };
    provide_volume(&mut r, "bestie").await;
    let yaml = SEED_001.replace(
        "version: \"1.3\"",
        "version: \"1.3\"\n  host: pets.example.com",
    );
    create_yaml(&r, &yaml, json!({ANNOTATION_PROGRESS_DEADLINE: "5"})).await;
    appversion_is(&r, "1.3").await;
    wait_until("the HPA", || {
        exists::<HorizontalPodAutoscaler>(&r, "bestie-app")
    })
    .await;
    // A rollback (Events with a warning, status writes) and removing the HPA (delete) also pass.
    set_version(&r, "1.4-broken").await;
    wait_until("a RolloutFailed Event", || async {
        let events = r.ns.api::<Event>().list(&Default::default()).await.ok()?;
        events
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some(reason::ROLLOUT_FAILED))
    })
    .await;
    r.ns.api::<Bestie>()
        .patch(
            "bestie",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"maxReplicas": null}})),
        )
        .await
        .expect("remove maxReplicas");
    wait_until("the HPA removed", || async {
        exists::<HorizontalPodAutoscaler>(&r, "bestie-app")
            .await
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_object_of_someone_else_with_our_name_is_left_alone_and_reported() {
    let r = start("bestie-taken").await;
    let theirs: Service = serde_json::from_value(json!({
        "metadata": {"name": "bestie-app", "labels": {"owner": "someone-else"}},
        "spec": {"ports": [{"port": 9999}]},
    }))
    .expect("a Service");
    r.ns.api::<Service>()
        .create(&PostParams::default(), &theirs)
        .await
        .expect("create their Service");
    create_yaml(
        &r,
        "apiVersion: pets.bestie.com/v1\nkind: Bestie\nmetadata:\n  name: bestie\nspec:\n  size: 1\n  \
         image: quay.io/opdev/bestie\n  version: \"1.3\"\n  database:\n    enabled: false\n",
        json!({}),
    )
    .await;
    let ready = wait_until("Ready=False NameTaken", || async {
        let b = r.ns.api::<Bestie>().get("bestie").await.ok()?;
        b.status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == CONDITION_READY && c.reason == reason::NAME_TAKEN)
    })
    .await;
    assert!(
        ready.message.contains("Service bestie-app"),
        "{}",
        ready.message
    );
    wait_until("the rest of the app created", || {
        exists::<Deployment>(&r, "bestie-app")
    })
    .await;
    let svc = exists::<Service>(&r, "bestie-app")
        .await
        .expect("their Service");
    assert!(svc.metadata.owner_references.is_none(), "not taken over");
    assert_eq!(
        svc.spec.and_then(|s| s.ports).map(|p| p[0].port),
        Some(9999),
        "not changed"
    );
}
