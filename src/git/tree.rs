//! Reading a revision's YAML files from git objects: the commit's tree, walked under the source's
//! path, never checked out, so no link is ever followed and nothing outside the path is read.

use git2::{Odb, Oid, Repository, Tree};

use super::{GitError, Inner, Limit, Snapshot};

/// Tree entry modes (git stores no others).
pub(super) const MODE_TREE: i32 = 0o040000;
pub(super) const MODE_BLOB: i32 = 0o100644;
pub(super) const MODE_BLOB_GROUP_WRITABLE: i32 = 0o100664;
pub(super) const MODE_EXECUTABLE: i32 = 0o100755;
pub(super) const MODE_LINK: i32 = 0o120000;
pub(super) const MODE_GITLINK: i32 = 0o160000;

/// Directories nested deeper than this under the path are refused, not walked.
const MAX_DEPTH: usize = 64;

/// Why a path component can never be read, whatever the repository says: `None` when it is fine.
pub(super) fn unsafe_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("empty")
    } else if name == "." || name == ".." {
        Some("`.` or `..`")
    } else if name.contains(['/', '\\', '\0']) {
        Some("a name with a slash, backslash or NUL")
    } else if name.eq_ignore_ascii_case(".git") {
        Some("`.git`")
    } else {
        None
    }
}

pub(super) fn read(inner: &Inner, revision: Oid) -> Result<Snapshot, GitError> {
    let repo = inner.open_cache()?;
    let read_error = |detail: String| GitError::ReadRevision {
        url: inner.url(),
        branch: inner.branch(),
        revision,
        detail,
    };
    let commit = repo.find_commit(revision).map_err(|e| {
        read_error(format!(
            "{}; the cache holds only what polls fetched, so poll the source first",
            e.message()
        ))
    })?;
    let root = commit
        .tree()
        .map_err(|e| read_error(e.message().to_owned()))?;
    let start = descend(inner, &repo, root, revision)?;
    let odb = repo.odb().map_err(|e| read_error(e.message().to_owned()))?;
    let mut walk = Walk {
        inner,
        repo: &repo,
        odb,
        revision,
        files: Vec::new(),
        refused: Vec::new(),
        seen_files: 0,
        total_bytes: 0,
    };
    walk.directory(&start, &inner.path, 0)?;
    let Walk {
        mut files,
        mut refused,
        ..
    } = walk;
    files.sort();
    refused.sort();
    Ok(Snapshot {
        revision,
        files,
        refused,
    })
}

/// The tree at the source's path: each component must be a directory, never a link.
fn descend<'r>(
    inner: &Inner,
    repo: &'r Repository,
    root: Tree<'r>,
    revision: Oid,
) -> Result<Tree<'r>, GitError> {
    source_dir(repo, root, &inner.path).map_err(|(path, problem)| match problem {
        NotADirectory::Missing => GitError::PathNotFound {
            url: inner.url(),
            branch: inner.branch(),
            revision,
            path,
        },
        NotADirectory::Other(what) => GitError::PathNotDirectory {
            url: inner.url(),
            branch: inner.branch(),
            revision,
            path,
            what,
        },
    })
}

/// Why a path is not a directory that can be read.
pub(super) enum NotADirectory {
    Missing,
    /// What it is instead.
    Other(&'static str),
}

/// The tree at `path` (normalised), each component a directory, never a link; else the path so far
/// and what it is.
pub(super) fn source_dir<'r>(
    repo: &'r Repository,
    root: Tree<'r>,
    path: &str,
) -> Result<Tree<'r>, (String, NotADirectory)> {
    let mut tree = root;
    let mut so_far = String::new();
    for component in path.split('/').filter(|c| !c.is_empty()) {
        if !so_far.is_empty() {
            so_far.push('/');
        }
        so_far.push_str(component);
        let (mode, id) = match tree.get_name(component) {
            Some(entry) => (entry.filemode(), entry.id()),
            None => return Err((so_far, NotADirectory::Missing)),
        };
        let what = match mode {
            MODE_TREE => None,
            MODE_LINK => Some("a symbolic link (links are not followed)"),
            MODE_GITLINK => Some("a submodule (submodules are not read)"),
            _ => Some("a file"),
        };
        if let Some(what) = what {
            return Err((so_far, NotADirectory::Other(what)));
        }
        tree = match repo.find_tree(id) {
            Ok(t) => t,
            Err(_) => return Err((so_far, NotADirectory::Missing)),
        };
    }
    Ok(tree)
}

/// What the reader makes of one entry under the source's path, `depth` directories down.
pub(super) enum Entry {
    Directory,
    Yaml,
    /// Not desired state: hidden, or not YAML.
    Ignored,
    /// Never read, and reported: why.
    Refused(String),
}

/// The reader's rules for one entry, shared by whole revisions ([`read`]) and single files of older
/// commits (`history`), so that no commit is read more loosely than the tip.
pub(super) fn classify(name: &str, mode: i32, depth: usize) -> Entry {
    if let Some(reason) = unsafe_name(name) {
        return Entry::Refused(format!("an unsafe name ({reason})"));
    }
    if name.starts_with('.') {
        return Entry::Ignored; // hidden: .github/, .config.yaml and the like are not desired state
    }
    match mode {
        MODE_LINK => Entry::Refused("a symbolic link; links are not followed".to_owned()),
        MODE_GITLINK => Entry::Refused("a submodule; submodules are not read".to_owned()),
        MODE_TREE if depth + 1 >= MAX_DEPTH => Entry::Refused(format!(
            "a directory nested more than {MAX_DEPTH} levels deep"
        )),
        MODE_TREE => Entry::Directory,
        MODE_BLOB | MODE_BLOB_GROUP_WRITABLE | MODE_EXECUTABLE if is_yaml(name) => Entry::Yaml,
        MODE_BLOB | MODE_BLOB_GROUP_WRITABLE | MODE_EXECUTABLE => Entry::Ignored,
        other => Entry::Refused(format!("an unknown kind of entry (mode {other:o})")),
    }
}

/// Why a file of `size` bytes is refused on its own, if it is.
pub(super) fn oversized(size: u64, limits: &super::SourceLimits) -> Option<String> {
    (size > limits.max_file_bytes).then(|| {
        format!(
            "{size} bytes, over the limit of {} bytes per file (max_file_bytes)",
            limits.max_file_bytes
        )
    })
}

/// A blob's text, or why it is refused (not UTF-8).
pub(super) fn text_of(repo: &Repository, id: Oid) -> Result<Result<String, String>, git2::Error> {
    let blob = repo.find_blob(id)?;
    Ok(match std::str::from_utf8(blob.content()) {
        Ok(text) => Ok(text.to_owned()),
        Err(e) => Err(format!(
            "not UTF-8 text (byte {} is invalid)",
            e.valid_up_to()
        )),
    })
}

struct Walk<'a> {
    inner: &'a Inner,
    repo: &'a Repository,
    odb: Odb<'a>,
    revision: Oid,
    files: Vec<(String, String)>,
    refused: Vec<(String, String)>,
    seen_files: usize,
    total_bytes: u64,
}

impl Walk<'_> {
    fn directory(&mut self, tree: &Tree<'_>, prefix: &str, depth: usize) -> Result<(), GitError> {
        for entry in tree.iter() {
            let Ok(name) = entry.name() else {
                let lossy = String::from_utf8_lossy(entry.name_bytes()).into_owned();
                self.refuse(join(prefix, &lossy), "a name that is not UTF-8".to_owned());
                continue;
            };
            let path = join(prefix, name);
            match classify(name, entry.filemode(), depth) {
                Entry::Refused(reason) => self.refuse(path, reason),
                Entry::Ignored => {}
                Entry::Directory => {
                    let subtree = self
                        .repo
                        .find_tree(entry.id())
                        .map_err(|e| self.read_error(&path, e))?;
                    self.directory(&subtree, &path, depth + 1)?;
                }
                Entry::Yaml => self.file(path, entry.id())?,
            }
        }
        Ok(())
    }

    fn file(&mut self, path: String, id: Oid) -> Result<(), GitError> {
        let limits = &self.inner.spec.limits;
        self.seen_files += 1;
        if self.seen_files > limits.max_files {
            return Err(self.limit(Limit::Files, limits.max_files as u64, "YAML files"));
        }
        let (size, _) = self
            .odb
            .read_header(id)
            .map_err(|e| self.read_error(&path, e))?;
        let size = size as u64;
        if let Some(reason) = oversized(size, limits) {
            self.refuse(path, reason);
            return Ok(());
        }
        self.total_bytes += size;
        if self.total_bytes > limits.max_total_bytes {
            return Err(self.limit(Limit::TotalBytes, limits.max_total_bytes, "bytes of YAML"));
        }
        match text_of(self.repo, id).map_err(|e| self.read_error(&path, e))? {
            Ok(text) => self.files.push((path, text)),
            Err(reason) => self.refuse(path, reason),
        }
        Ok(())
    }

    fn refuse(&mut self, path: String, reason: String) {
        self.refused.push((path, reason));
    }

    fn limit(&self, limit: Limit, allowed: u64, unit: &'static str) -> GitError {
        GitError::LimitExceeded {
            url: self.inner.url(),
            branch: self.inner.branch(),
            revision: self.revision,
            path: self.inner.path.clone(),
            limit,
            allowed,
            unit,
        }
    }

    fn read_error(&self, path: &str, e: git2::Error) -> GitError {
        GitError::ReadRevision {
            url: self.inner.url(),
            branch: self.inner.branch(),
            revision: self.revision,
            detail: format!("reading {path}: {}", e.message()),
        }
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

fn is_yaml(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml")
}
