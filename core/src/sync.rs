//! Deciding what a git revision changes in the cluster: a pure function from (desired definitions, files
//! that failed validation, live objects of this source, settings) to a [`SyncPlan`].
//!
//! Rules, in the order they apply:
//! - a definition with no live object is created; one whose spec hash differs is updated; one whose hash
//!   matches costs nothing (no write at all, so 1,999 unchanged apps cost zero API calls);
//! - drift: a live object whose hash matches but whose `spec` no longer holds what git says (someone
//!   ran `kubectl edit`) is applied again, as Flux corrects drift at every interval. Fields git does
//!   not set (defaults the API server added) are not drift;
//! - a live object whose file failed validation keeps its last good state: it is neither changed nor
//!   pruned until the file is fixed;
//! - a live object no longer defined is pruned only when the source opted in, and never all at once when
//!   the revision suddenly yields no definitions at all (a typo in `path` must not empty the cluster),
//!   unless the source also allows an empty revision (as Argo CD's `allowEmpty`);
//! - an object applied again for drift keeps the revision its live object names: git did not change
//!   it. Which commit a created or updated object names is [`attribution`]'s to decide.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

pub mod attribution;

use sha2::{Digest, Sha256};

use crate::model::Kind;
pub use crate::names::{
    ANNOTATION_REVISION, ANNOTATION_SOURCE_PATH, ANNOTATION_SPEC_HASH, LABEL_SOURCE,
};
use crate::validate::{Definition, Resource};

/// Label on everything Bosun manages.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "bosun";

/// The condition that tells whether a resource's git source can be read. Written by the source loop
/// (field manager [`SOURCE_FIELD_MANAGER`]) only when its state flips: `False` once a failure outlasts the
/// grace period, `True` again when the source recovers.
pub const CONDITION_SOURCE_READY: &str = "SourceReady";
/// The field manager that owns the `SourceReady` condition in status.
pub const SOURCE_FIELD_MANAGER: &str = "bosun-source";

/// Builds the `SourceReady` condition. Pure: the caller passes the time.
pub fn source_ready_condition(
    ready: bool,
    reason: &str,
    message: &str,
    now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    // Kubernetes caps a condition's message at 32 KiB; keep it readable.
    let message: String = message.chars().take(1024).collect();
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        type_: CONDITION_SOURCE_READY.into(),
        status: if ready { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        last_transition_time: now,
        observed_generation: None,
    }
}

/// Identifies a resource in the cluster.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// A definition ready to apply: the object as JSON, with Bosun's labels and annotations.
#[derive(Clone, Debug, PartialEq)]
pub struct Desired {
    pub key: ObjectKey,
    pub source_path: String,
    pub spec_hash: String,
    pub object: serde_json::Value,
}

impl Desired {
    /// The commit the object names in [`ANNOTATION_REVISION`].
    pub fn revision(&self) -> Option<&str> {
        self.object["metadata"]["annotations"][ANNOTATION_REVISION].as_str()
    }

    /// Names another commit; the spec hash does not cover the revision, so nothing else changes.
    pub fn set_revision(&mut self, revision: &str) {
        self.object["metadata"]["annotations"][ANNOTATION_REVISION] = revision.into();
    }
}

/// What Bosun needs to know of a live object of this source.
#[derive(Clone, Debug, PartialEq)]
pub struct Live {
    pub key: ObjectKey,
    pub source_path: Option<String>,
    pub spec_hash: Option<String>,
    /// Its [`ANNOTATION_REVISION`]: the commit that last changed it, as far as Bosun knew.
    pub revision: Option<String>,
    /// Its `spec` as the cluster holds it; `None` when only its metadata was read (no drift check).
    pub spec: Option<serde_json::Value>,
}

/// Why an object is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyReason {
    Create,
    Update,
    /// Git did not change, the live object did: it is put back as git says.
    Drift,
}

/// One thing to do.
#[derive(Clone, Debug, PartialEq)]
pub enum SyncAction {
    Apply {
        desired: Box<Desired>,
        reason: ApplyReason,
    },
    Prune {
        key: ObjectKey,
    },
}

/// A live object left alone although git no longer defines it as it is, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kept {
    /// Its file failed validation: the last good state stays in force.
    InvalidFile { key: ObjectKey, file: String },
    /// Not defined any more, and pruning is off for this source.
    PruneDisabled { key: ObjectKey },
    /// Not defined any more, but the revision defines nothing at all: refused as a likely mistake.
    EmptyRevisionGuard { key: ObjectKey },
}

/// What one revision changes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncPlan {
    pub actions: Vec<SyncAction>,
    pub kept: Vec<Kept>,
    /// Definitions whose live object already matches.
    pub unchanged: usize,
}

/// The settings of one source that shape a plan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncPolicy {
    pub prune: bool,
    pub allow_empty: bool,
}

/// Decides what to apply and prune. Pure: no client, no clock.
pub fn plan_sync(
    desired: &[Desired],
    invalid_files: &BTreeSet<String>,
    live: &[Live],
    policy: SyncPolicy,
) -> SyncPlan {
    let mut plan = SyncPlan::default();
    let live_by_key: BTreeMap<&ObjectKey, &Live> = live.iter().map(|l| (&l.key, l)).collect();
    let desired_keys: BTreeSet<&ObjectKey> = desired.iter().map(|d| &d.key).collect();

    for d in desired {
        match live_by_key.get(&d.key) {
            Some(l) if l.spec_hash.as_deref() == Some(d.spec_hash.as_str()) => {
                let desired_spec = d.object.get("spec").unwrap_or(&serde_json::Value::Null);
                if l.spec.as_ref().is_none_or(|s| holds(s, desired_spec)) {
                    plan.unchanged += 1;
                } else {
                    let mut d = d.clone();
                    if let Some(revision) = &l.revision {
                        d.set_revision(revision);
                    }
                    plan.actions.push(SyncAction::Apply {
                        desired: Box::new(d),
                        reason: ApplyReason::Drift,
                    });
                }
            }
            Some(_) => plan.actions.push(SyncAction::Apply {
                desired: Box::new(d.clone()),
                reason: ApplyReason::Update,
            }),
            None => plan.actions.push(SyncAction::Apply {
                desired: Box::new(d.clone()),
                reason: ApplyReason::Create,
            }),
        }
    }

    order_by_dependencies(&mut plan.actions);

    // Objects of invalid files are kept by the first arm below; what is left of an empty revision would
    // all be pruned, which is the mistake the guard is for.
    let empty_revision = desired.is_empty();
    for l in live.iter().filter(|l| !desired_keys.contains(&l.key)) {
        let key = l.key.clone();
        match &l.source_path {
            Some(file) if invalid_files.contains(file) => plan.kept.push(Kept::InvalidFile {
                key,
                file: file.clone(),
            }),
            _ if !policy.prune => plan.kept.push(Kept::PruneDisabled { key }),
            _ if empty_revision && !policy.allow_empty => {
                plan.kept.push(Kept::EmptyRevisionGuard { key })
            }
            _ => plan.actions.push(SyncAction::Prune { key }),
        }
    }
    plan
}

/// The keys of the apps `d`'s `spec.dependsOn` names.
fn dependency_keys(d: &Desired) -> Vec<ObjectKey> {
    let Some(deps) = d.object["spec"]["dependsOn"].as_array() else {
        return Vec::new();
    };
    deps.iter()
        .filter_map(|dep| {
            let kind = match dep["kind"].as_str() {
                None | Some("ManagedApplication") => Kind::ManagedApplication,
                Some("Bestie") => Kind::Bestie,
                Some(_) => return None,
            };
            Some(ObjectKey {
                kind,
                namespace: dep["namespace"]
                    .as_str()
                    .unwrap_or(&d.key.namespace)
                    .to_string(),
                name: dep["name"].as_str()?.to_string(),
            })
        })
        .collect()
}

/// Puts the applies in dependency order (an app after those it depends on), keeping the given order
/// otherwise: when one commit changes several apps of a chain, each app's dependencies carry the
/// commit before the app does, so the engine never sees the app at the new commit beside a
/// dependency still at the old one.
fn order_by_dependencies(actions: &mut Vec<SyncAction>) {
    let depends = |a: &SyncAction| match a {
        SyncAction::Apply { desired, .. } => !dependency_keys(desired).is_empty(),
        SyncAction::Prune { .. } => false,
    };
    if !actions.iter().any(depends) {
        return;
    }
    let applies: BTreeSet<ObjectKey> = actions
        .iter()
        .filter_map(|a| match a {
            SyncAction::Apply { desired, .. } => Some(desired.key.clone()),
            SyncAction::Prune { .. } => None,
        })
        .collect();
    let mut placed: BTreeSet<ObjectKey> = BTreeSet::new();
    let mut ordered = Vec::with_capacity(actions.len());
    let mut rest: Vec<SyncAction> = std::mem::take(actions);
    while !rest.is_empty() {
        let ready = rest.iter().position(|a| match a {
            SyncAction::Apply { desired, .. } => dependency_keys(desired)
                .iter()
                .all(|k| placed.contains(k) || !applies.contains(k)),
            SyncAction::Prune { .. } => true,
        });
        // A cycle (refused by validation) keeps its given order.
        let a = rest.remove(ready.unwrap_or(0));
        if let SyncAction::Apply { desired, .. } = &a {
            placed.insert(desired.key.clone());
        }
        ordered.push(a);
    }
    *actions = ordered;
}

/// Whether `live` holds everything `desired` sets: every key of an object (a `null` in `desired` is
/// no requirement), every element of a list of the same length, equal scalars (numbers by value).
/// What `live` has beyond that (defaults) does not matter.
pub fn holds(live: &serde_json::Value, desired: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (live, desired) {
        (_, Value::Null) => true,
        (Value::Object(l), Value::Object(d)) => d
            .iter()
            .all(|(k, dv)| dv.is_null() || l.get(k).is_some_and(|lv| holds(lv, dv))),
        (Value::Array(l), Value::Array(d)) => {
            l.len() == d.len() && l.iter().zip(d).all(|(lv, dv)| holds(lv, dv))
        }
        (Value::Number(l), Value::Number(d)) => l.as_f64() == d.as_f64(),
        (l, d) => l == d,
    }
}

/// Turns a validated definition into what is applied: the typed resource as JSON, in `default_namespace`
/// when it names none, with Bosun's labels and annotations, and the hash that decides whether it changed.
pub fn desired_from(
    def: &Definition,
    source: &str,
    revision: &str,
    default_namespace: &str,
) -> Desired {
    let mut object = match &def.resource {
        Resource::ManagedApplication(r) => serde_json::to_value(r),
        Resource::Bestie(r) => serde_json::to_value(r),
    }
    .expect("typed resources serialize to JSON");
    let namespace = def.namespace().unwrap_or(default_namespace).to_string();
    if let Some(obj) = object.as_object_mut() {
        obj.remove("status");
    }
    let meta = &mut object["metadata"];
    meta["namespace"] = namespace.clone().into();
    meta["labels"][LABEL_SOURCE] = source.into();
    meta["labels"][LABEL_MANAGED_BY] = MANAGED_BY.into();
    meta["annotations"][ANNOTATION_SOURCE_PATH] = def.source.file.clone().into();
    // The hash covers everything applied except the revision, so a commit that does not touch an
    // object does not rewrite it.
    let spec_hash = hash_json(&object);
    let meta = &mut object["metadata"];
    meta["annotations"][ANNOTATION_SPEC_HASH] = spec_hash.clone().into();
    meta["annotations"][ANNOTATION_REVISION] = revision.into();
    Desired {
        key: ObjectKey {
            kind: def.kind(),
            namespace,
            name: def.name().to_string(),
        },
        source_path: def.source.file.clone(),
        spec_hash,
        object,
    }
}

/// A short, stable hash of a JSON value (object keys are sorted by serde_json's map).
pub fn hash_json(value: &serde_json::Value) -> String {
    let digest = Sha256::digest(value.to_string().as_bytes());
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            kind: Kind::ManagedApplication,
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    fn desired(name: &str, hash: &str) -> Desired {
        Desired {
            key: key(name),
            source_path: format!("apps/{name}.yaml"),
            spec_hash: hash.into(),
            object: serde_json::json!({}),
        }
    }

    fn live(name: &str, hash: &str) -> Live {
        Live {
            key: key(name),
            source_path: Some(format!("apps/{name}.yaml")),
            spec_hash: Some(hash.into()),
            revision: Some("c0ffee".into()),
            spec: None,
        }
    }

    #[test]
    fn a_spec_edited_by_hand_is_drift_and_defaults_are_not() {
        let mut d = desired("shop", "h1");
        d.object = serde_json::json!({"spec": {"version": "v1", "replicas": 2,
            "upgradeStrategy": {"type": "Canary", "canary": {"steps": [{"weight": 50}]}}}});
        let with = |spec: serde_json::Value| Live {
            spec: Some(spec),
            ..live("shop", "h1")
        };
        let cases = [
            (
                "as git says",
                serde_json::json!({"version": "v1", "replicas": 2,
                    "upgradeStrategy": {"type": "Canary", "canary": {"steps": [{"weight": 50}]}}}),
                None,
            ),
            (
                "defaults added by the API server",
                serde_json::json!({"version": "v1", "replicas": 2.0, "paused": false,
                    "upgradeStrategy": {"type": "Canary", "progressDeadlineSeconds": 600,
                        "canary": {"steps": [{"weight": 50, "pause": null}]}}}),
                None,
            ),
            (
                "version edited",
                serde_json::json!({"version": "v9", "replicas": 2,
                    "upgradeStrategy": {"type": "Canary", "canary": {"steps": [{"weight": 50}]}}}),
                Some(ApplyReason::Drift),
            ),
            (
                "a step removed",
                serde_json::json!({"version": "v1", "replicas": 2,
                    "upgradeStrategy": {"type": "Canary", "canary": {"steps": []}}}),
                Some(ApplyReason::Drift),
            ),
            (
                "a field git sets, gone",
                serde_json::json!({"version": "v1",
                    "upgradeStrategy": {"type": "Canary", "canary": {"steps": [{"weight": 50}]}}}),
                Some(ApplyReason::Drift),
            ),
        ];
        for (name, spec, want) in cases {
            let plan = plan_sync(
                std::slice::from_ref(&d),
                &BTreeSet::new(),
                &[with(spec)],
                SyncPolicy::default(),
            );
            let got = applied(&plan).first().map(|(_, r)| *r);
            assert_eq!(got, want, "{name}");
            assert_eq!(plan.unchanged, usize::from(want.is_none()), "{name}");
        }
    }

    #[test]
    fn drift_is_put_back_under_the_revision_the_live_object_names_not_the_tip() {
        let mut d = desired("shop", "h1");
        d.object = serde_json::json!({"spec": {"version": "v1"}});
        d.set_revision("tip");
        let edited = Live {
            spec: Some(serde_json::json!({"version": "v9"})),
            ..live("shop", "h1")
        };
        let plan = plan_sync(&[d], &BTreeSet::new(), &[edited], SyncPolicy::default());
        let [SyncAction::Apply { desired, reason }] = plan.actions.as_slice() else {
            panic!("one apply expected: {plan:?}");
        };
        assert_eq!(*reason, ApplyReason::Drift);
        assert_eq!(desired.revision(), Some("c0ffee"));
    }

    fn applied(plan: &SyncPlan) -> Vec<(String, ApplyReason)> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                SyncAction::Apply { desired, reason } => Some((desired.key.name.clone(), *reason)),
                SyncAction::Prune { .. } => None,
            })
            .collect()
    }

    fn pruned(plan: &SyncPlan) -> Vec<String> {
        plan.actions
            .iter()
            .filter_map(|a| match a {
                SyncAction::Prune { key } => Some(key.name.clone()),
                SyncAction::Apply { .. } => None,
            })
            .collect()
    }

    const PRUNE: SyncPolicy = SyncPolicy {
        prune: true,
        allow_empty: false,
    };

    #[test]
    fn one_changed_file_among_many_is_one_apply_and_no_other_write() {
        let mut d: Vec<_> = (0..2000)
            .map(|i| desired(&format!("app{i}"), "h1"))
            .collect();
        let l: Vec<_> = (0..2000).map(|i| live(&format!("app{i}"), "h1")).collect();
        d[1234].spec_hash = "h2".into();
        let plan = plan_sync(&d, &BTreeSet::new(), &l, PRUNE);
        assert_eq!(
            applied(&plan),
            [("app1234".to_string(), ApplyReason::Update)]
        );
        assert_eq!(plan.unchanged, 1999);
        assert!(plan.kept.is_empty());
    }

    #[test]
    fn apps_are_applied_after_the_apps_they_depend_on() {
        let depending = |name: &str, deps: &[&str]| {
            let mut d = desired(name, "h");
            let deps: Vec<_> = deps
                .iter()
                .map(|n| serde_json::json!({"name": n}))
                .collect();
            d.object = serde_json::json!({"spec": {"dependsOn": deps}});
            d
        };
        // Files in name order: frontend → orders → db-api, and an unrelated app in between.
        let want = [
            depending("frontend", &["orders"]),
            depending("metrics", &[]),
            depending("orders", &["db-api", "ledger"]),
            depending("db-api", &[]),
        ];
        let plan = plan_sync(&want, &BTreeSet::new(), &[], SyncPolicy::default());
        let order: Vec<String> = applied(&plan).into_iter().map(|(n, _)| n).collect();
        // ledger is not applied by this plan: it holds nothing up.
        assert_eq!(order, ["metrics", "db-api", "orders", "frontend"]);
    }

    #[test]
    fn new_definitions_are_created() {
        let plan = plan_sync(&[desired("a", "h")], &BTreeSet::new(), &[], PRUNE);
        assert_eq!(applied(&plan), [("a".to_string(), ApplyReason::Create)]);
    }

    #[test]
    fn removed_files_are_pruned_only_when_the_source_opted_in() {
        let d = [desired("a", "h")];
        let l = [live("a", "h"), live("gone", "h")];
        assert_eq!(
            pruned(&plan_sync(&d, &BTreeSet::new(), &l, PRUNE)),
            ["gone"]
        );
        let keep = plan_sync(&d, &BTreeSet::new(), &l, SyncPolicy::default());
        assert!(pruned(&keep).is_empty());
        assert_eq!(keep.kept, [Kept::PruneDisabled { key: key("gone") }]);
    }

    #[test]
    fn an_invalid_file_keeps_its_last_good_state() {
        let invalid: BTreeSet<String> = ["apps/b.yaml".to_string()].into();
        let plan = plan_sync(
            &[desired("a", "h")],
            &invalid,
            &[live("a", "h"), live("b", "h")],
            PRUNE,
        );
        assert!(plan.actions.is_empty(), "{plan:?}");
        assert_eq!(
            plan.kept,
            [Kept::InvalidFile {
                key: key("b"),
                file: "apps/b.yaml".into()
            }]
        );
    }

    #[test]
    fn a_refused_file_beside_an_emptied_path_does_not_disable_the_guard() {
        let invalid: BTreeSet<String> = ["apps/link.yaml".to_string()].into();
        let plan = plan_sync(&[], &invalid, &[live("a", "h")], PRUNE);
        assert!(plan.actions.is_empty(), "{plan:?}");
        assert!(matches!(plan.kept[0], Kept::EmptyRevisionGuard { .. }));
    }

    #[test]
    fn a_revision_that_suddenly_defines_nothing_prunes_nothing() {
        let l = [live("a", "h"), live("b", "h")];
        let plan = plan_sync(&[], &BTreeSet::new(), &l, PRUNE);
        assert!(plan.actions.is_empty());
        assert_eq!(plan.kept.len(), 2);
        assert!(matches!(plan.kept[0], Kept::EmptyRevisionGuard { .. }));
        let allowed = plan_sync(
            &[],
            &BTreeSet::new(),
            &l,
            SyncPolicy {
                prune: true,
                allow_empty: true,
            },
        );
        assert_eq!(pruned(&allowed), ["a", "b"]);
    }

    #[test]
    fn the_spec_hash_ignores_the_revision_but_not_the_spec() {
        let text = "apiVersion: apps.example.com/v1alpha1\nkind: ManagedApplication\nmetadata: {name: shop}\nspec: {version: v1}\n";
        let report =
            crate::validate::validate_file("apps/shop.yaml", text, &crate::yaml::Limits::default());
        let def = &report.definitions[0];
        let a = desired_from(def, "repo", "aaa", "default");
        let b = desired_from(def, "repo", "bbb", "default");
        assert_eq!(a.spec_hash, b.spec_hash);
        assert_eq!(a.key.namespace, "default");
        assert_eq!(a.object["metadata"]["labels"][LABEL_SOURCE], "repo");
        assert_eq!(
            a.object["metadata"]["annotations"][ANNOTATION_REVISION],
            "aaa"
        );
        let report = crate::validate::validate_file(
            "apps/shop.yaml",
            &text.replace("v1}", "v2}"),
            &crate::yaml::Limits::default(),
        );
        let c = desired_from(&report.definitions[0], "repo", "aaa", "default");
        assert_ne!(a.spec_hash, c.spec_hash);
    }
}
