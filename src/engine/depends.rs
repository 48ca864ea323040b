//! What the engine observes of an app's group (`spec.dependsOn`): the apps it depends on, the cycle
//! it may be part of, and the failures of its group at the commit its spec comes from. Read from the
//! controller's own store of ManagedApplications, with one GET per Bestie dependency. The apps joined
//! to an app are found by its edges and by an index of the apps that depend on it, never by a scan of
//! every app: at 10,000 apps a reconcile would scan them all.

use std::collections::HashSet;
use std::sync::Arc;

use bosun_core::engine::app::{DependencyObs, DependencyState, GroupFailure};
use bosun_core::engine::revision::Revision;
use bosun_core::model::{Bestie, DependencyKind, ManagedApplication, Phase};
use bosun_core::names::ANNOTATION_REVISION;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Api, Client, ResourceExt};

use crate::cache::{Index, Key};

/// The group facts [`bosun_core::engine::app::decide`] reads.
pub(super) struct Group {
    pub dependencies: Vec<DependencyObs>,
    pub cycle: Option<String>,
    pub group_failures: Vec<GroupFailure>,
    /// Whether an app joined to this one (`rollbackTogether`, either way) is still upgrading to the
    /// same commit: its failure may yet roll this one back. The reconcile then looks again soon,
    /// whatever woke it: the wake-up of the other app's change comes from a watch of its own, which
    /// may run ahead of the store the group is read from.
    pub in_flight: bool,
}

fn revision_of<K: ResourceExt>(o: &K) -> Option<&str> {
    o.annotations().get(ANNOTATION_REVISION).map(String::as_str)
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// Observes the group of `app`. `dependents`: the apps that depend on each app with
/// `rollbackTogether` ([`together_with`]).
pub(super) async fn observe(
    app: &ManagedApplication,
    apps: &Store<ManagedApplication>,
    dependents: &Index,
    client: &Client,
) -> Result<Group, kube::Error> {
    let ns = app.namespace().unwrap_or_else(|| "default".into());
    let commit = revision_of(app);
    let dependencies = dependencies(client, Some(apps), &ns, commit, &app.spec.depends_on).await?;
    let dependents = || {
        dependents
            .under(&ns, &app.name_any())
            .into_iter()
            .filter_map(|(qns, q)| apps.get(&ObjectRef::new(&q).within(&qns)))
    };
    Ok(Group {
        dependencies,
        cycle: cycle(app, apps),
        group_failures: commit.map_or_else(Vec::new, |c| failures(app, &ns, c, apps, dependents())),
        in_flight: commit.is_some_and(|c| in_flight(app, &ns, c, apps, dependents())),
    })
}

/// The apps `app` depends on with `rollbackTogether`, as (namespace, name): what the index of
/// dependents files it under.
pub(super) fn together_with(app: &ManagedApplication) -> Vec<Key> {
    let ns = app.namespace().unwrap_or_default();
    app.spec
        .depends_on
        .iter()
        .filter(|d| d.together() && d.kind == DependencyKind::ManagedApplication)
        .map(|d| {
            (
                d.namespace.clone().unwrap_or_else(|| ns.clone()),
                d.name.clone(),
            )
        })
        .collect()
}

/// Whether an app joined to `app` by a `rollbackTogether` edge (it depends on `app`, or `app` on
/// it), whose spec also comes from `commit`, has not settled its upgrade to it: neither Healthy at
/// it nor Failed with its rollback over. `dependents`: the apps that depend on `app` so, by the index.
fn in_flight(
    app: &ManagedApplication,
    ns: &str,
    commit: &str,
    apps: &Store<ManagedApplication>,
    dependents: impl Iterator<Item = Arc<ManagedApplication>>,
) -> bool {
    let name = app.name_any();
    let joined = |q: &ManagedApplication| {
        let qns = q.namespace().unwrap_or_default();
        rolls_back_with(q, &qns, &name, ns) || rolls_back_with(app, ns, &q.name_any(), &qns)
    };
    let depended_on = together_with(app)
        .into_iter()
        .filter_map(|(qns, q)| apps.get(&ObjectRef::new(&q).within(&qns)));
    let settled = |q: &ManagedApplication| {
        let s = q.status.clone().unwrap_or_default();
        match s.phase {
            Some(Phase::Healthy) => s.target_revision.as_deref() == Some(commit),
            Some(Phase::Failed) => s.down_migration.is_none(),
            _ => false,
        }
    };
    dependents
        .chain(depended_on)
        .any(|q| revision_of(&*q) == Some(commit) && joined(&q) && !settled(&q))
}

/// The apps of `deps` (of an app in `ns` whose spec comes from `commit`) as found: ManagedApplications
/// from `apps` when given (the engine's store), else with a GET; Besties with a GET.
async fn dependencies(
    client: &Client,
    apps: Option<&Store<ManagedApplication>>,
    ns: &str,
    commit: Option<&str>,
    deps: &[bosun_core::model::Dependency],
) -> Result<Vec<DependencyObs>, kube::Error> {
    let mut out = Vec::with_capacity(deps.len());
    for d in deps {
        let dns = d.namespace.as_deref().unwrap_or(ns);
        // Changed by another commit than this app's: not waited for.
        let unrelated = |revision: Option<&str>| commit.is_none() || revision != commit;
        let state = match d.kind {
            DependencyKind::ManagedApplication => {
                let found = match apps {
                    Some(store) => store
                        .get(&ObjectRef::new(&d.name).within(dns))
                        .map(|a| (*a).clone()),
                    None => {
                        Api::<ManagedApplication>::namespaced(client.clone(), dns)
                            .get_opt(&d.name)
                            .await?
                    }
                };
                match found {
                    None => DependencyState::Missing,
                    Some(a) if unrelated(revision_of(&a)) => DependencyState::Unrelated,
                    Some(a) => app_state(&a),
                }
            }
            DependencyKind::Bestie => {
                match Api::<Bestie>::namespaced(client.clone(), dns)
                    .get_opt(&d.name)
                    .await?
                {
                    None => DependencyState::Missing,
                    Some(b) if unrelated(revision_of(&b)) => DependencyState::Unrelated,
                    Some(b) => bestie_state(&b),
                }
            }
        };
        out.push(DependencyObs {
            key: key(dns, &d.name),
            state,
        });
    }
    Ok(out)
}

/// Healthy at what its spec asks for, or where it stands.
fn app_state(dep: &ManagedApplication) -> DependencyState {
    let s = dep.status.clone().unwrap_or_default();
    let hash = Revision::of(&dep.spec).hash();
    if s.phase == Some(Phase::Healthy) && s.current_hash.as_deref() == Some(hash.as_str()) {
        DependencyState::Ready
    } else {
        DependencyState::Waiting(
            s.phase
                .map_or_else(|| "not started".into(), |p| p.to_string()),
        )
    }
}

fn bestie_state(b: &Bestie) -> DependencyState {
    let s = b.status.clone().unwrap_or_default();
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready");
    match ready {
        Some(c)
            if c.status == "True" && s.appversion.as_deref() == Some(b.spec.version.as_str()) =>
        {
            DependencyState::Ready
        }
        Some(c) => DependencyState::Waiting(c.reason.clone()),
        None => DependencyState::Waiting("not started".into()),
    }
}

/// The ManagedApplications `app` depends on, as store keys.
fn edges(app: &ManagedApplication, ns: &str) -> Vec<ObjectRef<ManagedApplication>> {
    app.spec
        .depends_on
        .iter()
        .filter(|d| d.kind == DependencyKind::ManagedApplication)
        .map(|d| ObjectRef::new(&d.name).within(d.namespace.as_deref().unwrap_or(ns)))
        .collect()
}

/// The cycle of `spec.dependsOn` edges through `app`, if any: `ns/a → ns/b → ns/a`.
fn cycle(app: &ManagedApplication, apps: &Store<ManagedApplication>) -> Option<String> {
    let ns = app.namespace().unwrap_or_default();
    let start = ObjectRef::<ManagedApplication>::new(&app.name_any()).within(&ns);
    // Depth-first, with the path kept; each app is entered once.
    let mut seen = HashSet::new();
    let mut path = vec![start.clone()];
    let mut stack = vec![edges(app, &ns)];
    while let Some(next) = stack.last_mut() {
        let Some(r) = next.pop() else {
            stack.pop();
            path.pop();
            continue;
        };
        if r == start {
            let mut names: Vec<String> = path
                .iter()
                .map(|p| key(p.namespace.as_deref().unwrap_or_default(), &p.name))
                .collect();
            names.push(key(&ns, &start.name));
            return Some(names.join(" → "));
        }
        if !seen.insert(r.clone()) {
            continue;
        }
        if let Some(dep) = apps.get(&r) {
            let dns = dep.namespace().unwrap_or_default();
            stack.push(edges(&dep, &dns));
            path.push(r);
        }
    }
    None
}

/// The apps of the group (edges with `rollbackTogether`) whose upgrade from `commit` failed.
fn failures(
    app: &ManagedApplication,
    ns: &str,
    commit: &str,
    apps: &Store<ManagedApplication>,
    dependents: impl Iterator<Item = Arc<ManagedApplication>>,
) -> Vec<GroupFailure> {
    let failed_here = |a: &ManagedApplication| {
        a.status
            .as_ref()
            .is_some_and(|s| s.failed_revision.as_deref() == Some(commit))
    };
    let mut out = Vec::new();
    for (dns, dname) in together_with(app) {
        if let Some(dep) = apps.get(&ObjectRef::new(&dname).within(&dns))
            && failed_here(&dep)
        {
            out.push(GroupFailure {
                key: key(&dns, &dname),
                dependent: false,
                settled: true,
            });
        }
    }
    let name = app.name_any();
    // Only apps that failed at this commit can be among its failures: that test first.
    for q in dependents.filter(|q| failed_here(q)) {
        let qns = q.namespace().unwrap_or_default();
        if rolls_back_with(&q, &qns, &name, ns) {
            let s = q.status.clone().unwrap_or_default();
            let settled = match s.phase {
                Some(Phase::Failed) => s.down_migration.is_none(),
                Some(Phase::Healthy) => true,
                _ => false,
            };
            out.push(GroupFailure {
                key: key(&qns, &q.name_any()),
                dependent: true,
                settled,
            });
        }
    }
    out
}

/// For a Bestie's rollout (read with one GET per dependency): the apps of `deps` that the commit
/// `commit` changed and that are not Healthy at it yet, as `ns/name (phase)`; `None` when none.
pub(crate) async fn waiting_for(
    client: &Client,
    ns: &str,
    commit: Option<&str>,
    deps: &[bosun_core::model::Dependency],
) -> Result<Option<String>, kube::Error> {
    let found = dependencies(client, None, ns, commit, deps).await?;
    let waits: Vec<String> = found.iter().filter_map(DependencyObs::waits_for).collect();
    Ok((!waits.is_empty()).then(|| waits.join(", ")))
}

/// The apps to reconcile when `app` changes: those it depends on (so that they learn of its
/// failure). Those that depend on it look again by themselves while they wait.
pub(super) fn wakes(app: &ManagedApplication) -> Vec<ObjectRef<ManagedApplication>> {
    let ns = app.namespace().unwrap_or_default();
    edges(app, &ns)
}

/// Whether `q` (in namespace `qns`) depends on the app `name` of namespace `ns` with
/// `rollbackTogether`.
fn rolls_back_with(q: &ManagedApplication, qns: &str, name: &str, ns: &str) -> bool {
    q.spec.depends_on.iter().any(|d| {
        d.together()
            && d.kind == DependencyKind::ManagedApplication
            && d.name == name
            && d.namespace.as_deref().unwrap_or(qns) == ns
    })
}
