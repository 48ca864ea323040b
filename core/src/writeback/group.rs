//! Which apps one rollback commit covers: the app that failed and the apps of its group
//! (`spec.dependsOn` edges with `rollbackTogether`, in either direction, among the apps of the same
//! source that the same commit changed). The commit waits until the group has settled (each of them
//! failed and rolled back, or a minute passed), so that git is set back once for all of them.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::model::{DependencyKind, ManagedApplication};
use crate::names::{ANNOTATION_REVISION, LABEL_SOURCE};

/// How long a rollback commit waits for the rest of its group to fail and roll back (a dependency
/// that has nothing to go back to never does).
pub const SETTLE_SECS: i64 = 60;

/// What the group of a failed app looks like now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Group {
    /// Apps of the group that the same commit changed are still upgrading or about to roll back:
    /// the rollback commit waits for them.
    Settling { waiting_for: Vec<String> },
    /// The other apps (`namespace/name`) whose rollback goes in the same commit, those failed at
    /// the same commit; empty when the app is alone.
    Settled { members: Vec<String> },
}

fn key(a: &ManagedApplication) -> String {
    format!(
        "{}/{}",
        a.metadata.namespace.as_deref().unwrap_or_default(),
        a.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The group of `app`, failed at its `status.failedRevision`, among `all`, at `now` (seconds).
pub fn group_of<'a>(
    app: &ManagedApplication,
    all: impl IntoIterator<Item = &'a ManagedApplication>,
    now: i64,
) -> Group {
    let settled = |members| Group::Settled { members };
    let status = app.status.clone().unwrap_or_default();
    let Some(commit) = status.failed_revision.as_deref() else {
        return settled(Vec::new());
    };
    let source = app
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_SOURCE));
    let at_commit = |a: &ManagedApplication| {
        let s = a.status.as_ref();
        s.is_some_and(|s| {
            s.failed_revision.as_deref() == Some(commit)
                || s.target_revision.as_deref() == Some(commit)
        }) || a
            .metadata
            .annotations
            .as_ref()
            .and_then(|m| m.get(ANNOTATION_REVISION))
            .is_some_and(|r| r == commit)
    };
    let apps: BTreeMap<String, &ManagedApplication> = all
        .into_iter()
        .filter(|a| a.metadata.labels.as_ref().and_then(|l| l.get(LABEL_SOURCE)) == source)
        .filter(|a| at_commit(a))
        .map(|a| (key(a), a))
        .collect();
    // Edges both ways: each app's dependencies that roll back with it.
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (k, a) in &apps {
        let ns = a.metadata.namespace.as_deref().unwrap_or_default();
        for d in a.spec.depends_on.iter().filter(|d| d.together()) {
            if d.kind != DependencyKind::ManagedApplication {
                continue;
            }
            let other = d.key(ns);
            if apps.contains_key(&other) {
                edges.entry(k.clone()).or_default().insert(other.clone());
                edges.entry(other).or_default().insert(k.clone());
            }
        }
    }
    let own = key(app);
    let mut seen = BTreeSet::from([own.clone()]);
    let mut queue = VecDeque::from([own.clone()]);
    while let Some(k) = queue.pop_front() {
        for next in edges.get(&k).into_iter().flatten() {
            if seen.insert(next.clone()) {
                queue.push_back(next.clone());
            }
        }
    }
    seen.remove(&own);
    let failed_since = status
        .conditions
        .iter()
        .find(|c| c.type_ == crate::rollout::CONDITION_ROLLED_BACK)
        .map_or(now, |c| c.last_transition_time.0.as_second());
    let mut members = Vec::new();
    let mut waiting_for = Vec::new();
    for k in seen {
        let s = apps[&k].status.clone().unwrap_or_default();
        if s.failed_revision.as_deref() == Some(commit) {
            members.push(k);
        } else {
            waiting_for.push(k);
        }
    }
    if !waiting_for.is_empty() && now - failed_since < SETTLE_SECS {
        return Group::Settling { waiting_for };
    }
    settled(members)
}
