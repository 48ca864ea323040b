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

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    use super::*;
    use crate::model::{Dependency, ManagedApplicationSpec, ManagedApplicationStatus};

    const COMMIT: &str = "c0ffee";

    /// `name` in shop, from source `apps`, at [`COMMIT`], depending on `deps` (name, together).
    fn app(
        name: &str,
        deps: &[(&str, bool)],
        status: ManagedApplicationStatus,
    ) -> ManagedApplication {
        let spec: ManagedApplicationSpec = serde_json::from_value(serde_json::json!({
            "version": "v2",
            "dependsOn": deps.iter().map(|(d, together)| Dependency {
                name: (*d).into(),
                namespace: None,
                kind: DependencyKind::ManagedApplication,
                rollback_together: (!together).then_some(false),
            }).collect::<Vec<_>>(),
        }))
        .expect("a spec");
        let mut a = ManagedApplication::new(name, spec);
        a.metadata.namespace = Some("shop".into());
        a.metadata.labels = Some([(LABEL_SOURCE.to_string(), "apps".to_string())].into());
        a.metadata.annotations =
            Some([(ANNOTATION_REVISION.to_string(), COMMIT.to_string())].into());
        a.status = Some(status);
        a
    }

    fn failed_at(secs: i64) -> ManagedApplicationStatus {
        ManagedApplicationStatus {
            failed_revision: Some(COMMIT.into()),
            conditions: vec![Condition {
                type_: crate::rollout::CONDITION_ROLLED_BACK.into(),
                status: "True".into(),
                reason: "RolledBack".into(),
                message: String::new(),
                last_transition_time: Time(
                    k8s_openapi::jiff::Timestamp::from_second(secs).expect("a time"),
                ),
                observed_generation: None,
            }],
            ..ManagedApplicationStatus::default()
        }
    }

    fn upgrading() -> ManagedApplicationStatus {
        ManagedApplicationStatus {
            target_revision: Some(COMMIT.into()),
            ..ManagedApplicationStatus::default()
        }
    }

    #[test]
    fn the_commit_waits_for_the_group_then_covers_every_app_that_failed_with_it() {
        let orders = app("orders", &[("db-api", true)], failed_at(1000));
        let db = app("db-api", &[], upgrading());
        let front = app("frontend", &[("orders", true)], failed_at(1001));
        let unrelated = app("ledger", &[], upgrading());
        let all = [&orders, &db, &front, &unrelated];
        assert_eq!(
            group_of(&orders, all, 1010),
            Group::Settling {
                waiting_for: vec!["shop/db-api".into()]
            },
            "db-api is still to roll back"
        );
        let db = app("db-api", &[], failed_at(1012));
        let all = [&orders, &db, &front, &unrelated];
        assert_eq!(
            group_of(&orders, all, 1015),
            Group::Settled {
                members: vec!["shop/db-api".into(), "shop/frontend".into()]
            }
        );
    }

    #[test]
    fn an_app_that_never_fails_holds_the_commit_a_minute_at_most() {
        let orders = app("orders", &[("db-api", true)], failed_at(1000));
        let db = app("db-api", &[], upgrading());
        assert!(matches!(
            group_of(&orders, [&orders, &db], 1000 + SETTLE_SECS - 1),
            Group::Settling { .. }
        ));
        assert_eq!(
            group_of(&orders, [&orders, &db], 1000 + SETTLE_SECS),
            Group::Settled { members: vec![] }
        );
    }

    #[test]
    fn rollback_together_false_and_other_commits_are_not_the_group() {
        let orders = app("orders", &[("db-api", false)], failed_at(1000));
        let db = app("db-api", &[], failed_at(1001));
        assert_eq!(
            group_of(&orders, [&orders, &db], 1005),
            Group::Settled { members: vec![] },
            "an edge with rollbackTogether: false"
        );
        let orders = app("orders", &[("db-api", true)], failed_at(1000));
        let mut other = app("db-api", &[], upgrading());
        other.status.as_mut().expect("status").target_revision = Some("later".into());
        other.metadata.annotations =
            Some([(ANNOTATION_REVISION.to_string(), "later".to_string())].into());
        assert_eq!(
            group_of(&orders, [&orders, &other], 1005),
            Group::Settled { members: vec![] },
            "db-api is at another commit"
        );
    }
}
