//! `spec.dependsOn` across the files of a source: each dependency must be defined there, and the
//! dependencies must not make a cycle. Each finding points at the `dependsOn` entry at fault.

use std::collections::{BTreeMap, BTreeSet};

use super::{Definition, Finding, Resource, ResourceKey, key_of};
use crate::model::{Dependency, DependencyKind, Kind};

fn dependencies(d: &Definition) -> &[Dependency] {
    match &d.resource {
        Resource::ManagedApplication(a) => &a.spec.depends_on,
        Resource::Bestie(b) => &b.spec.depends_on,
    }
}

/// The key of the app `dep` names, from `d`.
fn target(d: &Definition, dep: &Dependency) -> ResourceKey {
    let kind = match dep.kind {
        DependencyKind::ManagedApplication => Kind::ManagedApplication,
        DependencyKind::Bestie => Kind::Bestie,
    };
    let ns = dep
        .namespace
        .clone()
        .or_else(|| d.namespace().map(str::to_string));
    (kind, ns, dep.name.clone())
}

fn name(k: &ResourceKey) -> String {
    match &k.1 {
        Some(ns) => format!("{ns}/{}", k.2),
        None => k.2.clone(),
    }
}

fn finding(d: &Definition, i: usize, reason: String, hint: &str) -> Finding {
    let at = d.source.depends_on_at.get(i).copied();
    Finding {
        file: d.source.file.clone(),
        document: Some(d.source.document),
        line: Some(at.map_or(d.source.line, |a| a.0)),
        column: at.map(|a| a.1),
        resource: Some(format!("{}/{}", d.kind(), d.name())),
        field: Some(format!("spec.dependsOn[{i}].name")),
        reason,
        hint: Some(hint.into()),
    }
}

/// Every missing dependency and every cycle, as findings keyed by the definition at fault.
pub(super) fn problems(defs: &[Definition]) -> Vec<(ResourceKey, Finding)> {
    let by_key: BTreeMap<ResourceKey, &Definition> = defs.iter().map(|d| (key_of(d), d)).collect();
    let mut out = Vec::new();
    for d in defs {
        for (i, dep) in dependencies(d).iter().enumerate() {
            let t = target(d, dep);
            if !by_key.contains_key(&t) {
                out.push((
                    key_of(d),
                    finding(
                        d,
                        i,
                        format!(
                            "depends on {} {}, which no file of this source defines",
                            t.0,
                            name(&t)
                        ),
                        "define it, fix the name, namespace or kind, or remove the dependency",
                    ),
                ));
            } else if let Some(cycle) = path_back(&by_key, &t, &key_of(d)) {
                let mut names = vec![name(&key_of(d))];
                names.extend(cycle.iter().map(name));
                out.push((
                    key_of(d),
                    finding(
                        d,
                        i,
                        format!("dependsOn makes a cycle: {}", names.join(" → ")),
                        "an app cannot wait for itself: remove one dependency of the cycle",
                    ),
                ));
            }
        }
    }
    out
}

/// A path of dependencies from `from` back to `to` (both included), if any.
fn path_back(
    by_key: &BTreeMap<ResourceKey, &Definition>,
    from: &ResourceKey,
    to: &ResourceKey,
) -> Option<Vec<ResourceKey>> {
    let mut seen = BTreeSet::new();
    let mut path = vec![from.clone()];
    let mut stack: Vec<Vec<ResourceKey>> = vec![next_of(by_key, from)];
    if from == to {
        return Some(path);
    }
    seen.insert(from.clone());
    while let Some(next) = stack.last_mut() {
        let Some(k) = next.pop() else {
            stack.pop();
            path.pop();
            continue;
        };
        if k == *to {
            path.push(k);
            return Some(path);
        }
        if seen.insert(k.clone()) {
            stack.push(next_of(by_key, &k));
            path.push(k);
        }
    }
    None
}

fn next_of(by_key: &BTreeMap<ResourceKey, &Definition>, k: &ResourceKey) -> Vec<ResourceKey> {
    by_key.get(k).map_or_else(Vec::new, |d| {
        dependencies(d).iter().map(|dep| target(d, dep)).collect()
    })
}
