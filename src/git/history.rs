//! Reading a source's history from the cache: the parents of a commit, and one YAML file at an older
//! commit, for attribution (`bosun_core::sync::attribution`), which walks back from the tip to the
//! commit that changed an object's definition.
//!
//! A file of an older commit is found and read by the same rules as the tip's ([`super::tree`]): under
//! the source's path, never through a symbolic link or submodule, no hidden or unsafe name, no deeper
//! than the tip may go, within `max_file_bytes`, UTF-8. A file those rules would not read counts as
//! absent. The whole-revision limits (`max_files`, `max_total_bytes`) do not apply: one file is read,
//! never a whole older revision.

use std::sync::Arc;

use git2::{Oid, Repository};

use super::tree::{self, Entry};
use super::{GitError, GitSource, Inner};

/// The cache's history, read without a checkout. Opened by [`GitSource::history`]; blocking.
pub struct History {
    inner: Arc<Inner>,
    repo: Repository,
}

impl GitSource {
    /// Opens the cache for reading commits older than the tip. No network, no lock on the source.
    ///
    /// # Errors
    /// [`GitError::OpenCache`] when the cache cannot be opened.
    pub fn history(&self) -> Result<History, GitError> {
        Ok(History {
            inner: Arc::clone(&self.inner),
            repo: self.inner.open_cache()?,
        })
    }
}

impl History {
    /// The parents of `commit`, first parent first.
    ///
    /// # Errors
    /// [`GitError::ReadRevision`] when the commit is not in the cache (poll first).
    pub fn parents(&self, commit: Oid) -> Result<Vec<Oid>, GitError> {
        let found = self
            .repo
            .find_commit(commit)
            .map_err(|e| self.read_error(commit, format!("reading the commit: {}", e.message())))?;
        Ok(found.parent_ids().collect())
    }

    /// The blob of the YAML file `path` (repository-relative, as [`super::Snapshot::files`] names it)
    /// at `commit`; `None` when the tip's rules would not read it there (missing, a link, a
    /// submodule, hidden, outside the source's path, too deep).
    ///
    /// # Errors
    /// [`GitError::ReadRevision`] when the commit or one of its trees is not in the cache.
    pub fn file_id(&self, commit: Oid, path: &str) -> Result<Option<Oid>, GitError> {
        let source = self.inner.path.as_str();
        let under = if source.is_empty() {
            Some(path)
        } else {
            path.strip_prefix(source)
                .and_then(|rest| rest.strip_prefix('/'))
        };
        let Some(under) = under else {
            return Ok(None);
        };
        let read_error =
            |e: git2::Error| self.read_error(commit, format!("reading {path}: {}", e.message()));
        let root = self
            .repo
            .find_commit(commit)
            .and_then(|c| c.tree())
            .map_err(read_error)?;
        let Ok(mut dir) = tree::source_dir(&self.repo, root, source) else {
            return Ok(None);
        };
        let components: Vec<&str> = under.split('/').collect();
        for (depth, name) in components.iter().enumerate() {
            let (mode, id) = match dir.get_name(name) {
                Some(entry) => (entry.filemode(), entry.id()),
                None => return Ok(None),
            };
            let last = depth + 1 == components.len();
            match (tree::classify(name, mode, depth), last) {
                (Entry::Yaml, true) => return Ok(Some(id)),
                (Entry::Directory, false) => dir = self.repo.find_tree(id).map_err(read_error)?,
                (Entry::Yaml | Entry::Directory | Entry::Ignored | Entry::Refused(_), _) => {
                    return Ok(None);
                }
            }
        }
        Ok(None)
    }

    /// The text of a YAML blob found by [`History::file_id`]; `None` when the tip's rules would refuse
    /// it (over `max_file_bytes`, not UTF-8).
    ///
    /// # Errors
    /// [`GitError::ReadRevision`] (naming `commit`) when the blob is not in the cache.
    pub fn file_text(&self, commit: Oid, path: &str, id: Oid) -> Result<Option<String>, GitError> {
        let read_error =
            |e: git2::Error| self.read_error(commit, format!("reading {path}: {}", e.message()));
        let (size, _) = self
            .repo
            .odb()
            .and_then(|odb| odb.read_header(id))
            .map_err(read_error)?;
        if tree::oversized(size as u64, &self.inner.spec.limits).is_some() {
            return Ok(None);
        }
        Ok(tree::text_of(&self.repo, id).map_err(read_error)?.ok())
    }

    fn read_error(&self, revision: Oid, detail: String) -> GitError {
        GitError::ReadRevision {
            url: self.inner.url(),
            branch: self.inner.branch(),
            revision,
            detail: self.inner.redact(&detail),
        }
    }
}
