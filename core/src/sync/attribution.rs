//! Attribution: which commit an applied object's `bosun.dev/revision` names.
//!
//! A busy branch gains several commits between two polls. Each object created or updated by a sync
//! names the newest commit that changed *its definition* (its spec hash, as [`super::desired_from`]
//! computes it), not the branch tip, and not the newest commit that touched its file: several objects
//! may share one file. Everything downstream (`status.targetRevision`, rollback commits, notes, commit
//! statuses, pull request comments) follows that annotation.
//!
//! The walk starts at the tip and, one commit at a time:
//! - at the stop (the revision the live object names) with the definition unchanged, the stop still
//!   stands: nothing since has changed the definition (this happens when the live object's spec hash
//!   differs for another reason, such as a Bosun upgrade that hashes differently);
//! - a commit whose definition equals a parent's did not change it, and the walk goes on to that
//!   parent (for a merge, git's own rule: the definition came in unchanged from that side);
//! - any other commit changed it (edited it, created it, moved it to this file, made it valid again):
//!   that is the answer. A root commit that defines the object created it;
//! - after [`WALK_BOUND`] commits without an answer (a long quiet history, or a force-push that took
//!   the stop away) the walk gives up: the caller names the tip, as before attribution, and logs why.
//!
//! The commits themselves are the caller's to read (git, in the `bosun` crate): [`attribute`] asks for
//! one commit at a time, so a walk ends as soon as its answer is known and reads nothing more. Objects
//! whose definition did not change are not walked at all ([`targets`]): an unchanged poll costs nothing.

use std::collections::BTreeMap;

use super::{ApplyReason, Desired, Live, ObjectKey, SyncAction, SyncPlan, desired_from};
use crate::validate::validate_files;
use crate::yaml::Limits;

/// The most commits one object's walk looks at before it falls back to the tip.
pub const WALK_BOUND: usize = 200;

/// What the walk needs to know of one commit, for one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitView<C> {
    pub parents: Vec<C>,
    /// The object's spec hash at this commit; `None` when the commit does not define it (or its file
    /// is one the sync would not read or apply).
    pub definition: Option<String>,
}

/// Which commit an object names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attribution<C> {
    /// The newest commit that changed the definition.
    ChangedBy(C),
    /// The walk reached the object's live revision with the definition unchanged: it still stands.
    Unchanged(C),
    /// No commit found: the tip is named, as before attribution.
    NotFound(NotFound),
}

/// Why no commit was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotFound {
    /// More than the bound of commits without a change: a long quiet history, or the live revision
    /// is no longer in the branch's history (a force-push).
    BeyondBound,
    /// The tip does not define the object, which the sync applies from it (a caller's mistake).
    NotDefinedAtTip,
}

impl<C> Attribution<C> {
    /// The commit to name in the annotation: the one found, else `tip`.
    pub fn commit(self, tip: C) -> C {
        match self {
            Attribution::ChangedBy(c) | Attribution::Unchanged(c) => c,
            Attribution::NotFound(_) => tip,
        }
    }
}

/// Walks back from `tip` to the newest commit that changed one object's definition, asking `view` for
/// each commit it looks at (see the module documentation for the rules). Pure but for `view`.
///
/// # Errors
/// Whatever `view` returns.
pub fn attribute<C: Clone + PartialEq, E>(
    tip: &C,
    stop: Option<&C>,
    bound: usize,
    mut view: impl FnMut(&C) -> Result<CommitView<C>, E>,
) -> Result<Attribution<C>, E> {
    let mut commit = tip.clone();
    let mut here = view(&commit)?;
    if here.definition.is_none() {
        return Ok(Attribution::NotFound(NotFound::NotDefinedAtTip));
    }
    for _ in 0..bound {
        if stop == Some(&commit) {
            return Ok(Attribution::Unchanged(commit));
        }
        let mut same = None;
        for parent in &here.parents {
            let there = view(parent)?;
            if there.definition == here.definition {
                same = Some((parent.clone(), there));
                break;
            }
        }
        match same {
            Some((parent, there)) => (commit, here) = (parent, there),
            None => return Ok(Attribution::ChangedBy(commit)),
        }
    }
    Ok(Attribution::NotFound(NotFound::BeyondBound))
}

/// An object a sync creates or updates, whose commit is found by a walk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub key: ObjectKey,
    /// The file that defines it at the tip: the only file the walk reads for it.
    pub file: String,
    /// Where its walk stops: the revision its live object names, if any.
    pub stop: Option<String>,
}

/// The objects of `plan` whose definition changed (created or updated), each with its stop. An object
/// applied for drift is not among them: git did not change it ([`super::plan_sync`] keeps its revision).
pub fn targets(plan: &SyncPlan, live: &[Live]) -> Vec<Target> {
    let revisions: BTreeMap<&ObjectKey, &str> = live
        .iter()
        .filter_map(|l| Some((&l.key, l.revision.as_deref()?)))
        .collect();
    plan.actions
        .iter()
        .filter_map(|action| match action {
            SyncAction::Apply {
                desired,
                reason: ApplyReason::Create | ApplyReason::Update,
            } => Some(Target {
                key: desired.key.clone(),
                file: desired.source_path.clone(),
                stop: revisions.get(&desired.key).map(|r| (*r).to_string()),
            }),
            SyncAction::Apply {
                reason: ApplyReason::Drift,
                ..
            }
            | SyncAction::Prune { .. } => None,
        })
        .collect()
}

/// Names the commits found in the plan's applies; objects not in `found` keep what they name.
pub fn set_revisions(plan: &mut SyncPlan, found: &BTreeMap<ObjectKey, String>) {
    for action in &mut plan.actions {
        if let SyncAction::Apply { desired, .. } = action
            && let Some(revision) = found.get(&desired.key)
        {
            desired.set_revision(revision);
        }
    }
}

/// The definitions one file gives at some commit, as a sync would apply them from `source` into
/// `default_namespace`: each object with its spec hash. What a sync would not apply is left out (an
/// invalid document, an object the file defines twice), so that making it valid again is a change.
pub fn definitions_in(
    path: &str,
    text: &str,
    source: &str,
    default_namespace: &str,
    limits: &Limits,
) -> BTreeMap<ObjectKey, String> {
    let report = validate_files([(path, text)], limits);
    let mut hashes: BTreeMap<ObjectKey, Option<String>> = BTreeMap::new();
    for def in &report.definitions {
        let Desired { key, spec_hash, .. } = desired_from(def, source, "", default_namespace);
        // Twice once the default namespace is applied: the sync applies neither copy.
        hashes
            .entry(key)
            .and_modify(|h| *h = None)
            .or_insert(Some(spec_hash));
    }
    hashes
        .into_iter()
        .filter_map(|(k, h)| Some((k, h?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::model::Kind;
    use crate::sync::{SyncPolicy, plan_sync};

    /// A history written newest last: `(commit, parents, the object's definition there)`.
    type History<'a> = &'a [(&'a str, &'a [&'a str], Option<&'a str>)];

    /// Walks `history` from its last commit; also returns the commits the walk looked at.
    fn walk(
        history: History<'_>,
        stop: Option<&str>,
        bound: usize,
    ) -> (Attribution<String>, Vec<String>) {
        let tip = history.last().expect("a history has a tip").0.to_string();
        let stop = stop.map(str::to_string);
        let looked = RefCell::new(Vec::new());
        let found = attribute(&tip, stop.as_ref(), bound, |c: &String| {
            looked.borrow_mut().push(c.clone());
            let (_, parents, definition) = history
                .iter()
                .find(|(id, _, _)| id == c)
                .ok_or_else(|| format!("{c} is not in the history"))?;
            Ok::<_, String>(CommitView {
                parents: parents.iter().map(|p| p.to_string()).collect(),
                definition: definition.map(str::to_string),
            })
        })
        .expect("every commit walked is in the history");
        (found, looked.into_inner())
    }

    fn changed_by(c: &str) -> Attribution<String> {
        Attribution::ChangedBy(c.to_string())
    }

    #[test]
    fn each_object_names_the_newest_commit_that_changed_its_definition() {
        let cases: [(&str, History<'_>, Option<&str>, Attribution<String>); 12] = [
            (
                "a bump, then an unrelated commit: the bump",
                &[
                    ("c0", &[], Some("v1")),
                    ("bump", &["c0"], Some("v2")),
                    ("other", &["bump"], Some("v2")),
                ],
                Some("c0"),
                changed_by("bump"),
            ),
            (
                "bumped by the tip itself: the tip",
                &[("c0", &[], Some("v1")), ("bump", &["c0"], Some("v2"))],
                Some("c0"),
                changed_by("bump"),
            ),
            (
                "two bumps between polls: the newer",
                &[
                    ("c0", &[], Some("v1")),
                    ("first", &["c0"], Some("v2")),
                    ("second", &["first"], Some("v3")),
                    ("other", &["second"], Some("v3")),
                ],
                Some("c0"),
                changed_by("second"),
            ),
            (
                "changed and changed back: the commit that changed it back",
                &[
                    ("c0", &[], Some("v1")),
                    ("live", &["c0"], Some("v2")),
                    ("revert", &["live"], Some("v1")),
                    ("other", &["revert"], Some("v1")),
                ],
                Some("live"),
                changed_by("revert"),
            ),
            (
                "created: the commit that added it",
                &[
                    ("c0", &[], None),
                    ("add", &["c0"], Some("v1")),
                    ("other", &["add"], Some("v1")),
                ],
                None,
                changed_by("add"),
            ),
            (
                "defined since the root commit: the root",
                &[("root", &[], Some("v1")), ("other", &["root"], Some("v1"))],
                None,
                changed_by("root"),
            ),
            (
                "the live revision reached unchanged: it stands",
                &[
                    ("c0", &[], Some("v0")),
                    ("live", &["c0"], Some("v1")),
                    ("other", &["live"], Some("v1")),
                ],
                Some("live"),
                Attribution::Unchanged("live".to_string()),
            ),
            (
                "a merge that brought a branch's change: the branch's commit",
                &[
                    ("c0", &[], Some("v1")),
                    ("main", &["c0"], Some("v1")),
                    ("feature", &["c0"], Some("v2")),
                    ("merge", &["main", "feature"], Some("v2")),
                ],
                Some("c0"),
                changed_by("feature"),
            ),
            (
                "a merge of a branch that did not touch it: the main line's commit",
                &[
                    ("c0", &[], Some("v1")),
                    ("bump", &["c0"], Some("v2")),
                    ("feature", &["c0"], Some("v1")),
                    ("merge", &["bump", "feature"], Some("v2")),
                ],
                Some("c0"),
                changed_by("bump"),
            ),
            (
                "a merge that resolved a conflict: the merge",
                &[
                    ("c0", &[], Some("v1")),
                    ("main", &["c0"], Some("v2")),
                    ("feature", &["c0"], Some("v3")),
                    ("merge", &["main", "feature"], Some("v4")),
                ],
                Some("c0"),
                changed_by("merge"),
            ),
            (
                "the live revision gone after a force-push: found all the same",
                &[
                    ("c0", &[], Some("v1")),
                    ("bump", &["c0"], Some("v2")),
                    ("other", &["bump"], Some("v2")),
                ],
                Some("rewritten"),
                changed_by("bump"),
            ),
            (
                "not defined at the tip: nothing found",
                &[("c0", &[], Some("v1")), ("gone", &["c0"], None)],
                Some("c0"),
                Attribution::NotFound(NotFound::NotDefinedAtTip),
            ),
        ];
        for (name, history, stop, want) in cases {
            let (got, _) = walk(history, stop, WALK_BOUND);
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn a_walk_reads_only_the_commits_up_to_its_answer() {
        let history: History<'_> = &[
            ("old", &[], Some("v0")),
            ("c0", &["old"], Some("v1")),
            ("bump", &["c0"], Some("v2")),
            ("other", &["bump"], Some("v2")),
        ];
        let (found, looked) = walk(history, Some("old"), WALK_BOUND);
        assert_eq!(found, changed_by("bump"));
        assert_eq!(looked, ["other", "bump", "c0"], "`old` is never read");
    }

    #[test]
    fn a_change_further_back_than_the_bound_falls_back_to_the_tip() {
        let history: History<'_> = &[
            ("add", &[], Some("v1")),
            ("c1", &["add"], Some("v1")),
            ("c2", &["c1"], Some("v1")),
            ("tip", &["c2"], Some("v1")),
        ];
        let (found, looked) = walk(history, Some("rewritten"), 3);
        assert_eq!(found, Attribution::NotFound(NotFound::BeyondBound));
        assert_eq!(found.commit("tip".to_string()), "tip");
        assert_eq!(looked, ["tip", "c2", "c1", "add"], "3 commits and a parent");
        assert_eq!(walk(history, None, 4).0, changed_by("add"));
    }

    const SHARED: &str = "apiVersion: apps.example.com/v1alpha1\nkind: ManagedApplication\nmetadata: {name: a}\nspec: {version: v1}\n---\napiVersion: apps.example.com/v1alpha1\nkind: ManagedApplication\nmetadata: {name: b}\nspec: {version: v1}\n";

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            kind: Kind::ManagedApplication,
            namespace: "shop".into(),
            name: name.into(),
        }
    }

    fn hashes(text: &str) -> BTreeMap<ObjectKey, String> {
        definitions_in("apps/shared.yaml", text, "repo", "shop", &Limits::default())
    }

    #[test]
    fn apps_sharing_a_file_change_one_by_one() {
        let before = hashes(SHARED);
        assert_eq!(before.keys().collect::<Vec<_>>(), [&key("a"), &key("b")]);
        let b_bumped = hashes(&SHARED.replacen(
            "{name: b}\nspec: {version: v1}",
            "{name: b}\nspec: {version: v2}",
            1,
        ));
        assert_eq!(before[&key("a")], b_bumped[&key("a")], "a did not change");
        assert_ne!(before[&key("b")], b_bumped[&key("b")], "b did");
    }

    #[test]
    fn a_file_gives_the_hashes_the_sync_applies_and_nothing_it_would_not() {
        let report = crate::validate::validate_file("apps/shared.yaml", SHARED, &Limits::default());
        let applied = desired_from(&report.definitions[0], "repo", "tip", "shop");
        assert_eq!(hashes(SHARED)[&key("a")], applied.spec_hash);

        let invalid = SHARED.replacen("{version: v1}", "{version: 1.10}", 1);
        assert!(
            !hashes(&invalid).contains_key(&key("a")),
            "invalid: not applied"
        );
        let twice = SHARED.replace("{name: b}", "{name: a}");
        assert!(hashes(&twice).is_empty(), "defined twice: neither applied");
    }

    fn desired(name: &str, hash: &str) -> Desired {
        Desired {
            key: key(name),
            source_path: format!("apps/{name}.yaml"),
            spec_hash: hash.into(),
            object: serde_json::json!({"spec": {"version": hash}}),
        }
    }

    fn live(name: &str, hash: &str, revision: Option<&str>) -> Live {
        Live {
            key: key(name),
            source_path: Some(format!("apps/{name}.yaml")),
            spec_hash: Some(hash.into()),
            revision: revision.map(str::to_string),
            spec: Some(serde_json::json!({"version": hash})),
        }
    }

    #[test]
    fn only_created_and_updated_objects_are_walked_each_up_to_its_live_revision() {
        let live = [
            live("same", "h1", Some("r-same")),
            live("bumped", "h1", Some("r-bumped")),
            Live {
                spec: Some(serde_json::json!({"version": "edited"})),
                ..live("drifted", "h1", Some("r-drifted"))
            },
        ];
        let desired = [
            desired("same", "h1"),
            desired("bumped", "h2"),
            desired("drifted", "h1"),
            desired("new", "h1"),
        ];
        let plan = plan_sync(&desired, &Default::default(), &live, SyncPolicy::default());
        let targets = targets(&plan, &live);
        assert_eq!(
            targets,
            [
                Target {
                    key: key("bumped"),
                    file: "apps/bumped.yaml".into(),
                    stop: Some("r-bumped".into()),
                },
                Target {
                    key: key("new"),
                    file: "apps/new.yaml".into(),
                    stop: None,
                },
            ]
        );
        let unchanged = plan_sync(
            &desired[..1],
            &Default::default(),
            &live,
            Default::default(),
        );
        assert!(super::targets(&unchanged, &live).is_empty(), "no walk");
    }

    #[test]
    fn found_commits_are_named_and_the_others_keep_theirs() {
        let mut tip_named: Vec<Desired> = [desired("a", "h1"), desired("b", "h1")].into();
        for d in &mut tip_named {
            d.set_revision("tip");
        }
        let mut plan = plan_sync(&tip_named, &Default::default(), &[], Default::default());
        set_revisions(&mut plan, &[(key("a"), "bump".to_string())].into());
        let named: Vec<_> = plan
            .actions
            .iter()
            .filter_map(|a| match a {
                SyncAction::Apply { desired, .. } => Some(desired.revision()),
                SyncAction::Prune { .. } => None,
            })
            .collect();
        assert_eq!(named, [Some("bump"), Some("tip")]);
    }
}
