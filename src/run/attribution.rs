//! Attribution for a git source, between plan and apply: for each object the plan creates or updates,
//! the walk that `bosun_core::sync::attribution` decides, over the cache's history ([`git::History`]).
//!
//! Only the file that defines an object at the tip is read at older commits, each blob is parsed
//! once (several objects may share a file, and a file is the same blob across many commits), and a
//! walk ends at its answer.

use std::collections::{BTreeMap, HashMap};

use bosun_core::sync::ObjectKey;
use bosun_core::sync::attribution::{
    Attribution, CommitView, Target, WALK_BOUND, attribute, definitions_in,
};
use bosun_core::yaml::Limits;

use crate::git::{self, GitError, Oid};

/// Walks back from `tip` for each target; blocking (run it in `spawn_blocking`).
///
/// # Errors
/// [`GitError::ReadRevision`] when a commit, tree or blob the walk needs is not in the cache.
pub(super) fn walk(
    history: &git::History,
    tip: Oid,
    targets: &[Target],
    source: &str,
    default_namespace: &str,
) -> Result<Vec<(ObjectKey, Attribution<Oid>)>, GitError> {
    let mut reader = Reader {
        history,
        source,
        default_namespace,
        parents: HashMap::new(),
        blobs: HashMap::new(),
        definitions: HashMap::new(),
    };
    targets
        .iter()
        .map(|target| {
            // A revision that is not a commit id (a local directory's, or edited by hand) is never
            // reached: the walk goes on to its bound.
            let stop = target.stop.as_deref().and_then(|s| Oid::from_str(s).ok());
            let found = attribute(&tip, stop.as_ref(), WALK_BOUND, |commit| {
                reader.view(*commit, &target.file, &target.key)
            })?;
            Ok((target.key.clone(), found))
        })
        .collect()
}

/// What the walks have read so far.
struct Reader<'a> {
    history: &'a git::History,
    source: &'a str,
    default_namespace: &'a str,
    parents: HashMap<Oid, Vec<Oid>>,
    /// `(commit, file)`: the file's blob there, if the tip's rules would read it.
    blobs: HashMap<(Oid, String), Option<Oid>>,
    /// `(file, blob)`: the definitions it gives (the file's name is part of each spec hash).
    definitions: HashMap<(String, Oid), BTreeMap<ObjectKey, String>>,
}

impl Reader<'_> {
    fn view(
        &mut self,
        commit: Oid,
        file: &str,
        key: &ObjectKey,
    ) -> Result<CommitView<Oid>, GitError> {
        let parents = match self.parents.get(&commit) {
            Some(parents) => parents.clone(),
            None => {
                let parents = self.history.parents(commit)?;
                self.parents.insert(commit, parents.clone());
                parents
            }
        };
        let blob = match self.blobs.get(&(commit, file.to_owned())) {
            Some(blob) => *blob,
            None => {
                let blob = self.history.file_id(commit, file)?;
                self.blobs.insert((commit, file.to_owned()), blob);
                blob
            }
        };
        let Some(blob) = blob else {
            return Ok(CommitView {
                parents,
                definition: None,
            });
        };
        let cache_key = (file.to_owned(), blob);
        if !self.definitions.contains_key(&cache_key) {
            let found = match self.history.file_text(commit, file, blob)? {
                Some(text) => definitions_in(
                    file,
                    &text,
                    self.source,
                    self.default_namespace,
                    &Limits::default(),
                ),
                None => BTreeMap::new(),
            };
            self.definitions.insert(cache_key.clone(), found);
        }
        Ok(CommitView {
            parents,
            definition: self.definitions[&cache_key].get(key).cloned(),
        })
    }
}
