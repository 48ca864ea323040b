//! Writing back to git: the "report" step's git half. After a rollback Bosun commits the restored
//! version to the watched branch, and it records what each source commit did as a git note.
//!
//! A [`GitWriter`] pushes to one branch of one repository, with the same [`Auth`], host key checks,
//! timeouts and redaction as [`super::GitSource`] (it shares its callbacks), from a bare cache
//! repository of its own in a state directory. Its calls are blocking (run them in
//! `tokio::task::spawn_blocking`) and serialised per writer:
//!
//! - [`GitWriter::commit_rollback`]: fetch the branch tip, read the application's file from the
//!   trees (never a checkout) of the tip, of the commit that asked for the failed revision and of
//!   the one that asked for the last healthy revision, let
//!   [`bosun_core::writeback::revert_document`] restore the application's document by a
//!   three-way merge (every other byte as at the tip), commit on top of the tip and push — never
//!   forced. Without the healthy revision's commit (or its document) the rollback falls back to
//!   [`bosun_core::writeback::set_version`], which edits only the version's bytes. A push that
//!   loses a race (someone pushed meanwhile) starts again from a fresh fetch, re-checking the
//!   file, with bounded jittered backoff. A push the server refuses for another reason (a
//!   protected branch's hook), and a restore that meets a human's edit of the same lines, go to a
//!   branch `bosun/rollback-<ns>-<app>-<version>` instead, for a pull request: a conflict never
//!   reaches the watched branch. A human's change of what the app runs is left alone; a rollback
//!   already on the branch is not made twice.
//! - [`GitWriter::add_note`]: folds a note into the commit's note under `refs/notes/bosun`
//!   ([`bosun_core::writeback::merge_note`]) and pushes that ref with the same race handling.
//!
//! Errors are [`WriteError`]s; [`WriteError::kind`] sorts them like [`GitError::kind`].

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bosun_core::writeback::{
    AppRef, BosunTrailers, ConflictHunk, Edit, EditError, Restoration, Revert, RollbackCommit,
    Texts, merge_note, parse_all_bosun_trailers, revert_document, set_version,
};
use git2::{ErrorCode, Oid, PushOptions, Repository, Signature, Tree};

use super::remote::{Session, Stage};
use super::tree::{
    MODE_BLOB, MODE_BLOB_GROUP_WRITABLE, MODE_EXECUTABLE, MODE_GITLINK, MODE_LINK, MODE_TREE,
};
use super::{Auth, ErrorKind, GitError, Inner, RepoSpec, SourceLimits};
use crate::backoff::Backoff;

/// The ref Bosun's notes live under: `git log --notes=bosun` shows them.
pub const NOTES_REF: &str = "refs/notes/bosun";

/// How many commits back from the tip a rollback already made is looked for.
const HISTORY_WALK_LIMIT: usize = 10_000;

/// Who Bosun's commits are by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Author {
    pub name: String,
    pub email: String,
}

impl Default for Author {
    fn default() -> Self {
        Author {
            name: "Bosun".to_owned(),
            email: "bosun@noreply.local".to_owned(),
        }
    }
}

/// Bounds on one writer's calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteLimits {
    /// Pushes tried per call when the branch keeps moving under Bosun.
    pub attempts: u32,
    /// The first wait between two attempts; it doubles up to `max_backoff`, jittered
    /// ([`crate::backoff`]).
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// The most one fetch or push may take.
    pub network_timeout: Duration,
    /// A larger file is not edited.
    pub max_file_bytes: u64,
}

impl Default for WriteLimits {
    fn default() -> Self {
        WriteLimits {
            attempts: 5,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(3),
            network_timeout: Duration::from_secs(60),
            max_file_bytes: SourceLimits::default().max_file_bytes,
        }
    }
}

/// Which repository and branch a writer pushes to, and as whom.
#[derive(Clone, Debug)]
pub struct WriterSpec {
    pub url: String,
    pub branch: String,
    pub auth: Auth,
    pub author: Author,
    pub limits: WriteLimits,
}

/// One rollback to write: the commit's content, and the kind of resource whose version it sets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackRequest {
    /// `ManagedApplication`, usually.
    pub kind: String,
    pub commit: RollbackCommit,
}

impl RollbackRequest {
    /// A rollback of a `ManagedApplication`.
    pub fn managed_application(commit: RollbackCommit) -> RollbackRequest {
        RollbackRequest {
            kind: "ManagedApplication".to_owned(),
            commit,
        }
    }
}

/// What [`GitWriter::commit_rollback`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The rollback commit is on the branch; `attempts` pushes were needed. `how` says what it
    /// restored: the app's definition, or only its version (and why).
    Committed {
        commit: Oid,
        attempts: u32,
        how: Restoration,
    },
    /// Nothing to do: the branch has this rollback already (`commit`, when it is Bosun's), or
    /// the file already asks for the restored revision.
    AlreadyDone { commit: Option<Oid> },
    /// Not Bosun's to change: a human changed what the app runs, or the application is gone.
    LeftAlone(LeftAlone),
    /// The rollback is on `branch`, for a pull request, and not on the watched branch: `reason`
    /// says why.
    NeedsPullRequest {
        branch: String,
        commit: Oid,
        reason: PullRequestReason,
    },
}

/// Why a rollback went to a branch for a pull request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PullRequestReason {
    /// The watched branch refused the push (in the server's words).
    Refused(String),
    /// A human edited lines of the app's definition that the restore changes too: Bosun did not
    /// try the watched branch. The branch holds the definition as at the healthy commit.
    Conflict {
        hunks: Vec<ConflictHunk>,
        /// When the merge was clean but could not be committed as it was: why.
        unreadable: Option<String>,
    },
}

/// Why a rollback was not written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeftAlone {
    /// Git asks for neither the failed nor the restored revision: a human changed it since.
    /// Holds the version the file has now.
    ChangedByHuman { current: String },
    /// The file or the application's document is gone, or has no version.
    NotFound { reason: String },
    /// The failure changed no version and the definition cannot be restored (its last healthy
    /// commit is not known, or cannot be read): a human must set it back. Why, in words.
    CannotRestore { reason: String },
}

/// What a rollback is to write at one tip, or what it found instead.
enum Planned {
    Commit { text: String, how: Restoration },
    Done(WriteOutcome),
}

/// What [`GitWriter::add_note`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoteOutcome {
    /// `refs/notes/bosun` moved to `notes_commit`.
    Added { notes_commit: Oid, attempts: u32 },
    /// The note already said all of it: no new notes commit.
    Unchanged,
}

/// Where a push is about to go (for [`GitWriter::before_push`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushTarget {
    Branch,
    PullRequestBranch(String),
    Notes,
}

/// A push about to start: what, and which attempt of the call (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushAttempt {
    pub target: PushTarget,
    pub attempt: u32,
}

type Hook = Arc<dyn Fn(&PushAttempt) + Send + Sync>;

/// Pushes rollback commits and notes to one branch of one repository. See the module docs.
pub struct GitWriter {
    inner: Arc<Inner>,
    busy: Arc<AtomicBool>,
    author: Author,
    limits: WriteLimits,
    before_push: Option<Hook>,
    /// One call at a time: they share the cache's refs.
    calls: Mutex<()>,
}

impl fmt::Debug for GitWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitWriter")
            .field("url", &self.inner.url())
            .field("branch", &self.inner.branch())
            .field("author", &self.author)
            .finish_non_exhaustive()
    }
}

/// How a push ended, when the server answered.
enum Pushed {
    Done,
    /// The ref moved since Bosun fetched it.
    Conflict(String),
    /// Refused for another reason (a hook, a protected branch).
    Refused(String),
}

impl GitWriter {
    /// Validates `spec` and opens (creating it when missing) the writer's cache under `state_dir`.
    /// No network.
    ///
    /// # Errors
    ///
    /// [`GitError::InvalidSpec`] (as [`WriteError::Remote`]) for a URL, branch, auth or author that
    /// cannot work; [`GitError::OpenCache`] when the cache cannot be created.
    pub fn open(spec: WriterSpec, state_dir: &Path) -> Result<GitWriter, WriteError> {
        let WriterSpec {
            url,
            branch,
            auth,
            author,
            limits,
        } = spec;
        let repo_spec = RepoSpec {
            url,
            branch,
            path: String::new(),
            auth,
            limits: SourceLimits {
                fetch_timeout: limits.network_timeout,
                max_file_bytes: limits.max_file_bytes,
                ..SourceLimits::default()
            },
        };
        let inner = Inner::new(repo_spec, state_dir, "writeback")?;
        let bad_identity = |s: &str| s.trim().is_empty() || s.contains(['<', '>', '\n', '\0']);
        if bad_identity(&author.name) || bad_identity(&author.email) {
            return Err(GitError::InvalidSpec {
                url: inner.url(),
                reason: format!(
                    "the commit author {:?} <{:?}> needs a name and an email without <, > or \
                     line breaks",
                    author.name, author.email
                ),
            }
            .into());
        }
        inner.open_cache_or_init()?;
        Ok(GitWriter {
            inner: Arc::new(inner),
            busy: Arc::new(AtomicBool::new(false)),
            author,
            limits,
            before_push: None,
            calls: Mutex::new(()),
        })
    }

    /// Calls `hook` before every push, after the commit was made: for tests that need another
    /// push to land exactly in between, and for instrumentation.
    pub fn before_push(mut self, hook: impl Fn(&PushAttempt) + Send + Sync + 'static) -> Self {
        self.before_push = Some(Arc::new(hook));
        self
    }

    /// Commits the rollback described by `request` to the branch. See the module documentation.
    ///
    /// # Errors
    ///
    /// [`WriteError`]: connecting, credentials, host keys, a file that is a link or not readable
    /// YAML, a push refused for both the branch and the pull request branch, or a branch that
    /// kept moving for every attempt.
    pub fn commit_rollback(&self, request: &RollbackRequest) -> Result<WriteOutcome, WriteError> {
        let _one_call = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        self.rollback_one(request)
    }

    /// One commit that rolls back every app of a group (`spec.dependsOn`) that one commit changed
    /// together: `requests[0]`'s app and the others, each file restored as
    /// [`GitWriter::commit_rollback`] would, with one trailer per app
    /// ([`bosun_core::writeback::group_message`]). Apps already rolled back on the branch are left
    /// out; the outcome is `requests[0]`'s. When the restore of any app conflicts, or the branch
    /// refuses the push, `requests[0]` goes alone as [`GitWriter::commit_rollback`] does (a
    /// branch for a pull request); so does a group of one.
    ///
    /// # Errors
    ///
    /// As [`GitWriter::commit_rollback`].
    pub fn commit_group_rollback(
        &self,
        requests: &[RollbackRequest],
    ) -> Result<WriteOutcome, WriteError> {
        let _one_call = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let Some(own) = requests.first() else {
            return Ok(WriteOutcome::AlreadyDone { commit: None });
        };
        if requests.len() == 1 {
            return self.rollback_one(own);
        }
        let paths = requests
            .iter()
            .map(|r| self.check_request(r))
            .collect::<Result<Vec<_>, _>>()?;
        let branch_ref = format!("refs/heads/{}", self.inner.spec.branch);
        let mut backoff = self.backoff();
        for attempt in 1..=self.limits.attempts.max(1) {
            let tip = self.fetch_branch(&branch_ref)?;
            let repo = self.inner.open_cache()?;
            // What each app needs: nothing (done already, or git asks for something else), or a
            // restored file.
            let mut planned = Vec::new();
            for (request, path) in requests.iter().zip(&paths) {
                let trailers = request.commit.trailers();
                if let Some(done) = self
                    .find_rollback(&repo, tip, &trailers)
                    .map_err(|e| self.read_error(tip, path, e.message()))?
                {
                    if std::ptr::eq(request, own) {
                        return Ok(WriteOutcome::AlreadyDone { commit: Some(done) });
                    }
                    continue;
                }
                let Some(file) = self.read_file(&repo, tip, path)? else {
                    continue;
                };
                match self.plan(&repo, tip, path, &file, request)? {
                    Planned::Commit {
                        how: Restoration::Conflict { .. },
                        ..
                    } => {
                        drop(repo);
                        return self.rollback_one(own);
                    }
                    Planned::Commit { text, how } => {
                        planned.push((request, path.clone(), text, file.mode, how));
                    }
                    Planned::Done(outcome) if std::ptr::eq(request, own) => return Ok(outcome),
                    Planned::Done(_) => {}
                }
            }
            if planned.len() < 2 {
                drop(repo);
                return self.rollback_one(own);
            }
            let members: Vec<(RollbackCommit, Restoration)> = planned
                .iter()
                .map(|(r, _, _, _, how)| (r.commit.clone(), how.clone()))
                .collect();
            let message = bosun_core::writeback::group_message(&members);
            let files: Vec<(&str, &str, i32)> = planned
                .iter()
                .map(|(_, path, text, mode, _)| (path.as_str(), text.as_str(), *mode))
                .collect();
            let commit = self
                .make_commit_of(&repo, tip, &files, &message)
                .map_err(|e| self.objects_error(e.message()))?;
            let push_ref = "refs/bosun/push";
            repo.reference(push_ref, commit, true, "bosun: group rollback to push")
                .map_err(|e| self.objects_error(e.message()))?;
            drop(repo);
            self.hook(PushTarget::Branch, attempt);
            match self.push(push_ref, &branch_ref)? {
                Pushed::Done => {
                    let how = planned
                        .iter()
                        .find(|p| std::ptr::eq(p.0, own))
                        .map_or(Restoration::Definition, |p| p.4.clone());
                    return Ok(WriteOutcome::Committed {
                        commit,
                        attempts: attempt,
                        how,
                    });
                }
                Pushed::Conflict(_) => self.back_off(attempt, &mut backoff),
                Pushed::Refused(_) => return self.rollback_one(own),
            }
        }
        Err(WriteError::ConflictRetriesExhausted {
            url: self.inner.url(),
            refname: branch_ref,
            attempts: self.limits.attempts.max(1),
        })
    }

    /// Fetches the watched branch: its tip.
    fn fetch_branch(&self, branch_ref: &str) -> Result<Oid, WriteError> {
        self.fetch(branch_ref, branch_ref)?.ok_or_else(|| {
            WriteError::from(GitError::FindBranch {
                url: self.inner.url(),
                branch: self.inner.branch(),
                available: "it is gone from the remote".to_owned(),
            })
        })
    }

    fn rollback_one(&self, request: &RollbackRequest) -> Result<WriteOutcome, WriteError> {
        let rollback = &request.commit;
        let path = self.check_request(request)?;
        let trailers = rollback.trailers();
        let branch_ref = format!("refs/heads/{}", self.inner.spec.branch);
        let mut backoff = self.backoff();
        for attempt in 1..=self.limits.attempts.max(1) {
            let tip = self.fetch_branch(&branch_ref)?;
            let repo = self.inner.open_cache()?;
            if let Some(done) = self
                .find_rollback(&repo, tip, &trailers)
                .map_err(|e| self.read_error(tip, &path, e.message()))?
            {
                return Ok(WriteOutcome::AlreadyDone { commit: Some(done) });
            }
            let Some(file) = self.read_file(&repo, tip, &path)? else {
                return Ok(WriteOutcome::LeftAlone(LeftAlone::NotFound {
                    reason: format!("{path} does not exist at {tip}"),
                }));
            };
            let (new_text, how) = match self.plan(&repo, tip, &path, &file, request)? {
                Planned::Commit { text, how } => (text, how),
                Planned::Done(outcome) => return Ok(outcome),
            };
            let commit = self
                .make_commit(
                    &repo,
                    tip,
                    &path,
                    &new_text,
                    file.mode,
                    &rollback.message(&how),
                )
                .map_err(|e| self.objects_error(e.message()))?;
            if let Restoration::Conflict { hunks, unreadable } = how {
                drop(repo);
                let reason = PullRequestReason::Conflict { hunks, unreadable };
                return self.pull_request_branch(commit, rollback, &trailers, reason);
            }
            let push_ref = "refs/bosun/push";
            repo.reference(push_ref, commit, true, "bosun: rollback to push")
                .map_err(|e| self.objects_error(e.message()))?;
            drop(repo);
            self.hook(PushTarget::Branch, attempt);
            match self.push(push_ref, &branch_ref)? {
                Pushed::Done => {
                    return Ok(WriteOutcome::Committed {
                        commit,
                        attempts: attempt,
                        how,
                    });
                }
                Pushed::Conflict(_) => self.back_off(attempt, &mut backoff),
                Pushed::Refused(refused) => {
                    let reason = PullRequestReason::Refused(refused);
                    return self.pull_request_branch(commit, rollback, &trailers, reason);
                }
            }
        }
        Err(WriteError::ConflictRetriesExhausted {
            url: self.inner.url(),
            refname: branch_ref,
            attempts: self.limits.attempts.max(1),
        })
    }

    /// Adds `text` to the note of `commit` under [`NOTES_REF`], replacing the sections of the
    /// applications it names and keeping the others (see
    /// [`bosun_core::writeback::merge_note`]), and pushes the notes ref. Never forced.
    ///
    /// # Errors
    ///
    /// As [`GitWriter::commit_rollback`]; [`WriteError::NotesRefused`] when the server refuses
    /// the notes ref.
    pub fn add_note(&self, commit: Oid, text: &str) -> Result<NoteOutcome, WriteError> {
        let _one_call = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        let mut backoff = self.backoff();
        for attempt in 1..=self.limits.attempts.max(1) {
            let notes_tip = self.fetch(NOTES_REF, NOTES_REF)?;
            let repo = self.inner.open_cache()?;
            let existing = match notes_tip {
                Some(_) => repo
                    .find_note(Some(NOTES_REF), commit)
                    .ok()
                    .map(|n| String::from_utf8_lossy(n.message_bytes()).into_owned()),
                None => None,
            };
            let Some(merged) = merge_note(existing.as_deref(), text) else {
                return Ok(NoteOutcome::Unchanged);
            };
            let signature = self.signature()?;
            repo.note(
                &signature,
                &signature,
                Some(NOTES_REF),
                commit,
                &merged,
                true,
            )
            .map_err(|e| self.objects_error(e.message()))?;
            let notes_commit = repo
                .refname_to_id(NOTES_REF)
                .map_err(|e| self.objects_error(e.message()))?;
            drop(repo);
            self.hook(PushTarget::Notes, attempt);
            match self.push(NOTES_REF, NOTES_REF)? {
                Pushed::Done => {
                    return Ok(NoteOutcome::Added {
                        notes_commit,
                        attempts: attempt,
                    });
                }
                Pushed::Conflict(_) => self.back_off(attempt, &mut backoff),
                Pushed::Refused(reason) => {
                    return Err(WriteError::NotesRefused {
                        url: self.inner.url(),
                        reason,
                    });
                }
            }
        }
        Err(WriteError::ConflictRetriesExhausted {
            url: self.inner.url(),
            refname: NOTES_REF.to_owned(),
            attempts: self.limits.attempts.max(1),
        })
    }

    /// What the rollback writes at `tip`, whose file is `file`: the app's definition restored by
    /// the three-way merge, else (without its healthy commit or document) its version alone.
    fn plan(
        &self,
        repo: &Repository,
        tip: Oid,
        path: &str,
        file: &FileAt,
        request: &RollbackRequest,
    ) -> Result<Planned, WriteError> {
        let rollback = &request.commit;
        let edit_error = |source: EditError| WriteError::EditFile {
            url: self.inner.url(),
            branch: self.inner.branch(),
            revision: tip,
            path: path.to_owned(),
            source: Box::new(source),
        };
        let no_merge = match self.texts_at(repo, path, rollback) {
            Ok((failed, healthy)) => {
                let texts = Texts {
                    failed: &failed,
                    tip: &file.text,
                    healthy: &healthy,
                };
                let app = AppRef {
                    kind: &request.kind,
                    namespace: Some(&rollback.namespace),
                    name: &rollback.app,
                };
                match revert_document(texts, app).map_err(edit_error)? {
                    Revert::Restored(text) => {
                        return Ok(Planned::Commit {
                            text,
                            how: Restoration::Definition,
                        });
                    }
                    Revert::Conflict(conflict) => {
                        return Ok(Planned::Commit {
                            text: conflict.text,
                            how: Restoration::Conflict {
                                hunks: conflict.hunks,
                                unreadable: conflict.unreadable,
                            },
                        });
                    }
                    Revert::AlreadyRestored => {
                        return Ok(Planned::Done(WriteOutcome::AlreadyDone { commit: None }));
                    }
                    Revert::ChangedByHuman(current) => {
                        return Ok(Planned::Done(WriteOutcome::LeftAlone(
                            LeftAlone::ChangedByHuman { current },
                        )));
                    }
                    Revert::NotFound(reason) => {
                        return Ok(Planned::Done(WriteOutcome::LeftAlone(
                            LeftAlone::NotFound {
                                reason: format!("{path}: {reason}"),
                            },
                        )));
                    }
                    Revert::CannotMerge(why) => why,
                }
            }
            Err(why) => why,
        };
        if rollback.failed_version == rollback.restored_version {
            return Ok(Planned::Done(WriteOutcome::LeftAlone(
                LeftAlone::CannotRestore {
                    reason: format!(
                        "the failure changed no version, so setting spec.version back restores \
                         nothing, and the definition in {path} cannot be restored: {no_merge}"
                    ),
                },
            )));
        }
        let edit = set_version(
            &file.text,
            &request.kind,
            Some(&rollback.namespace),
            &rollback.app,
            &rollback.failed_version,
            &rollback.restored_version,
        )
        .map_err(edit_error)?;
        Ok(Planned::Done(WriteOutcome::LeftAlone(match edit {
            Edit::Edited(text) => {
                return Ok(Planned::Commit {
                    text,
                    how: Restoration::VersionOnly { why: no_merge },
                });
            }
            Edit::AlreadyAt(_) => {
                return Ok(Planned::Done(WriteOutcome::AlreadyDone { commit: None }));
            }
            Edit::ChangedByHuman(current) => LeftAlone::ChangedByHuman { current },
            Edit::NotFound(reason) => LeftAlone::NotFound {
                reason: format!("{path}: {reason}"),
            },
        })))
    }

    /// The file at the commit that asked for the failed revision and at the one that asked for the
    /// healthy revision; why not, in words, when either cannot be read.
    fn texts_at(
        &self,
        repo: &Repository,
        path: &str,
        rollback: &RollbackCommit,
    ) -> Result<(String, String), String> {
        let restores = rollback.restores.as_deref().ok_or_else(|| {
            format!(
                "the commit that asked for {} is not known (a status written by an older Bosun)",
                rollback.restored_version
            )
        })?;
        let read = |which: &str, sha: &str| -> Result<String, String> {
            let oid = Oid::from_str(sha)
                .ok()
                .filter(|_| sha.len() == 40)
                .ok_or_else(|| format!("the {which} revision's commit {sha:?} is no commit id"))?;
            repo.find_commit(oid).map_err(|_| {
                format!("the {which} revision's commit {sha} is not in the branch's history")
            })?;
            match self.read_file(repo, oid, path) {
                Ok(Some(file)) => Ok(file.text),
                Ok(None) => Err(format!(
                    "{path} does not exist at the {which} revision's commit {sha}"
                )),
                Err(e) => Err(e.to_string()),
            }
        };
        Ok((
            read("failed", &rollback.undoes)?,
            read("healthy", restores)?,
        ))
    }

    /// The request's path, normalised, when the request can be written at all.
    fn check_request(&self, request: &RollbackRequest) -> Result<String, WriteError> {
        let rollback = &request.commit;
        let invalid = |reason: String| WriteError::InvalidRequest {
            url: self.inner.url(),
            reason,
        };
        let path = super::normalise_path(&rollback.source_path).map_err(&invalid)?;
        if path.is_empty() {
            return Err(invalid("the source path names no file".to_owned()));
        }
        if Oid::from_str(&rollback.undoes).is_err() || rollback.undoes.len() != 40 {
            return Err(invalid(format!(
                "{:?} is not a full commit id; the rollback must name the commit it undoes",
                rollback.undoes
            )));
        }
        for (what, value) in [
            ("namespace", &rollback.namespace),
            ("app", &rollback.app),
            ("kind", &request.kind),
            ("failed version", &rollback.failed_version),
            ("restored version", &rollback.restored_version),
        ] {
            if value.trim().is_empty() || value.chars().any(char::is_control) {
                return Err(invalid(format!(
                    "the {what} {value:?} is empty or has control characters"
                )));
            }
        }
        Ok(path)
    }

    /// Fetches `remote_ref` into `local_ref` of the cache; `None` (and `local_ref` deleted) when
    /// the remote has no such ref.
    fn fetch(&self, remote_ref: &str, local_ref: &str) -> Result<Option<Oid>, WriteError> {
        let (remote_ref, local_ref) = (remote_ref.to_owned(), local_ref.to_owned());
        super::bounded(
            &self.inner,
            &self.busy,
            "fetching",
            move |inner, deadline| fetch_ref(inner, &remote_ref, &local_ref, deadline),
        )
        .map_err(WriteError::from)
    }

    fn push(&self, local_ref: &str, remote_ref: &str) -> Result<Pushed, WriteError> {
        let (local_ref, remote_ref) = (local_ref.to_owned(), remote_ref.to_owned());
        super::bounded(
            &self.inner,
            &self.busy,
            "pushing to",
            move |inner, deadline| push_ref(inner, &local_ref, &remote_ref, deadline),
        )
    }

    fn hook(&self, target: PushTarget, attempt: u32) {
        if let Some(hook) = &self.before_push {
            hook(&PushAttempt { target, attempt });
        }
    }

    /// Waits before attempt `attempt + 1`: doubling from `initial_backoff` up to `max_backoff`,
    /// a random half to all of it, so that writers that collided do not collide again.
    /// The waits between the attempts of one call.
    fn backoff(&self) -> Backoff {
        Backoff::new(self.limits.initial_backoff, self.limits.max_backoff)
    }

    /// Waits before attempt `attempt + 1`, if there is one. A writer's calls run on a blocking
    /// thread (`spawn_blocking`, as git2 needs) and hold the writer's lock, so the wait is a
    /// thread's sleep: nothing else of this writer could run meanwhile anyway.
    fn back_off(&self, attempt: u32, backoff: &mut Backoff) {
        if attempt < self.limits.attempts {
            std::thread::sleep(backoff.next_wait());
        }
    }

    /// The rollback commit already on the branch, if Bosun made it: one with the same trailers,
    /// made since the undone commit.
    fn find_rollback(
        &self,
        repo: &Repository,
        tip: Oid,
        wanted: &BosunTrailers,
    ) -> Result<Option<Oid>, git2::Error> {
        let mut walk = repo.revwalk()?;
        walk.push(tip)?;
        if let Ok(undone) = Oid::from_str(&wanted.rollback_of)
            && repo.find_commit(undone).is_ok()
        {
            walk.hide(undone)?;
        }
        for oid in walk.take(HISTORY_WALK_LIMIT) {
            let oid = oid?;
            let commit = repo.find_commit(oid)?;
            let message = String::from_utf8_lossy(commit.message_raw_bytes());
            let found = parse_all_bosun_trailers(&message).into_iter().any(|found| {
                found.rollback_of == wanted.rollback_of
                    && found.namespace == wanted.namespace
                    && found.app == wanted.app
            });
            if found {
                return Ok(Some(oid));
            }
        }
        Ok(None)
    }

    /// The file at `path` in `revision`'s tree; `None` when it does not exist. Links, submodules
    /// and directories on the way are refused, as the source reader refuses them.
    fn read_file(
        &self,
        repo: &Repository,
        revision: Oid,
        path: &str,
    ) -> Result<Option<FileAt>, WriteError> {
        let refuse = |reason: String| self.read_error(revision, path, &reason);
        let git = |e: git2::Error| self.read_error(revision, path, e.message());
        let mut tree = repo
            .find_commit(revision)
            .and_then(|c| c.tree())
            .map_err(git)?;
        let components: Vec<&str> = path.split('/').collect();
        let (file_name, dirs) = components
            .split_last()
            .expect("a normalised, non-empty path has a component");
        let mut so_far = String::new();
        for dir in dirs {
            so_far.push_str(dir);
            let Some((mode, id)) = tree.get_name(dir).map(|e| (e.filemode(), e.id())) else {
                return Ok(None);
            };
            match mode {
                MODE_TREE => tree = repo.find_tree(id).map_err(git)?,
                MODE_LINK => {
                    return Err(refuse(format!(
                        "{so_far} is a symbolic link; links are not followed"
                    )));
                }
                _ => return Err(refuse(format!("{so_far} is not a directory"))),
            }
            so_far.push('/');
        }
        let Some((mode, id)) = tree.get_name(file_name).map(|e| (e.filemode(), e.id())) else {
            return Ok(None);
        };
        match mode {
            MODE_BLOB | MODE_BLOB_GROUP_WRITABLE | MODE_EXECUTABLE => {}
            MODE_LINK => {
                return Err(refuse(
                    "it is a symbolic link; links are not followed".to_owned(),
                ));
            }
            MODE_GITLINK => return Err(refuse("it is a submodule".to_owned())),
            MODE_TREE => return Err(refuse("it is a directory".to_owned())),
            other => {
                return Err(refuse(format!(
                    "it is an unknown kind of entry ({other:o})"
                )));
            }
        }
        let odb = repo.odb().map_err(git)?;
        let (size, _) = odb.read_header(id).map_err(git)?;
        if size as u64 > self.limits.max_file_bytes {
            return Err(refuse(format!(
                "it is {size} bytes, over the limit of {} bytes",
                self.limits.max_file_bytes
            )));
        }
        let blob = repo.find_blob(id).map_err(git)?;
        let text = std::str::from_utf8(blob.content())
            .map_err(|e| {
                refuse(format!(
                    "it is not UTF-8 (byte {} is invalid)",
                    e.valid_up_to()
                ))
            })?
            .to_owned();
        Ok(Some(FileAt { text, mode }))
    }

    /// A commit on top of `parent` whose tree differs only in the file at `path`.
    fn make_commit(
        &self,
        repo: &Repository,
        parent: Oid,
        path: &str,
        text: &str,
        mode: i32,
        message: &str,
    ) -> Result<Oid, git2::Error> {
        self.make_commit_of(repo, parent, &[(path, text, mode)], message)
    }

    /// A commit on `parent` whose tree has each `(path, text, mode)` replaced.
    fn make_commit_of(
        &self,
        repo: &Repository,
        parent: Oid,
        files: &[(&str, &str, i32)],
        message: &str,
    ) -> Result<Oid, git2::Error> {
        let parent = repo.find_commit(parent)?;
        let mut root = parent.tree()?.id();
        for (path, text, mode) in files {
            let blob = repo.blob(text.as_bytes())?;
            let components: Vec<&str> = path.split('/').collect();
            root = replace_in_tree(repo, &repo.find_tree(root)?, &components, blob, *mode)?;
        }
        let tree = repo.find_tree(root)?;
        let signature = Signature::now(&self.author.name, &self.author.email)?;
        repo.commit(None, &signature, &signature, message, &tree, &[&parent])
    }

    /// Pushes the rollback to its own branch, for a pull request: the watched branch refused it, or
    /// a human's edit conflicts with it.
    fn pull_request_branch(
        &self,
        commit: Oid,
        rollback: &RollbackCommit,
        trailers: &BosunTrailers,
        reason: PullRequestReason,
    ) -> Result<WriteOutcome, WriteError> {
        let branch = rollback.branch_name();
        let remote_ref = format!("refs/heads/{branch}");
        let local_ref = format!("refs/bosun/pull-request/{branch}");
        if let Some(existing) = self.fetch(&remote_ref, &local_ref)? {
            let repo = self.inner.open_cache()?;
            let found = self
                .find_rollback(&repo, existing, trailers)
                .map_err(|e| self.objects_error(e.message()))?;
            return match found {
                Some(commit) => Ok(WriteOutcome::NeedsPullRequest {
                    branch,
                    commit,
                    reason,
                }),
                None => Err(WriteError::BranchTaken {
                    url: self.inner.url(),
                    branch,
                    app: format!("{}/{}", rollback.namespace, rollback.app),
                }),
            };
        }
        let repo = self.inner.open_cache()?;
        repo.reference(
            &local_ref,
            commit,
            true,
            "bosun: rollback for a pull request",
        )
        .map_err(|e| self.objects_error(e.message()))?;
        drop(repo);
        self.hook(PushTarget::PullRequestBranch(branch.clone()), 1);
        match self.push(&local_ref, &remote_ref)? {
            Pushed::Done => Ok(WriteOutcome::NeedsPullRequest {
                branch,
                commit,
                reason,
            }),
            Pushed::Conflict(detail) => Err(WriteError::Push {
                url: self.inner.url(),
                refname: remote_ref,
                detail: format!("someone created it meanwhile ({detail})"),
            }),
            Pushed::Refused(fallback_refused) => Err(match reason {
                PullRequestReason::Refused(refused) => WriteError::PushRefused {
                    url: self.inner.url(),
                    refname: format!("refs/heads/{}", self.inner.spec.branch),
                    refused,
                    fallback: branch,
                    fallback_refused,
                },
                PullRequestReason::Conflict { .. } => WriteError::ConflictBranchRefused {
                    url: self.inner.url(),
                    app: format!("{}/{}", rollback.namespace, rollback.app),
                    branch,
                    refused: fallback_refused,
                },
            }),
        }
    }

    fn signature(&self) -> Result<Signature<'static>, WriteError> {
        Signature::now(&self.author.name, &self.author.email)
            .map_err(|e| self.objects_error(e.message()))
    }

    fn read_error(&self, revision: Oid, path: &str, reason: &str) -> WriteError {
        WriteError::ReadFile {
            url: self.inner.url(),
            branch: self.inner.branch(),
            revision,
            path: path.to_owned(),
            reason: self.inner.redact(reason),
        }
    }

    fn objects_error(&self, detail: &str) -> WriteError {
        WriteError::WriteObjects {
            url: self.inner.url(),
            cache: self.inner.cache.clone(),
            detail: self.inner.redact(detail),
        }
    }
}

struct FileAt {
    text: String,
    mode: i32,
}

fn replace_in_tree(
    repo: &Repository,
    tree: &Tree<'_>,
    components: &[&str],
    blob: Oid,
    mode: i32,
) -> Result<Oid, git2::Error> {
    let mut builder = repo.treebuilder(Some(tree))?;
    match components {
        [] => return Err(git2::Error::from_str("an empty path")),
        [name] => {
            builder.insert(name, blob, mode)?;
        }
        [dir, rest @ ..] => {
            let id = tree
                .get_name(dir)
                .map(|e| e.id())
                .ok_or_else(|| git2::Error::from_str("a directory vanished from the tree"))?;
            let subtree = repo.find_tree(id)?;
            let new_id = replace_in_tree(repo, &subtree, rest, blob, mode)?;
            builder.insert(dir, new_id, MODE_TREE)?;
        }
    }
    builder.write()
}

/// One ref advertisement; downloads `remote_ref`'s objects only when they are new to the cache.
fn fetch_ref(
    inner: &Inner,
    remote_ref: &str,
    local_ref: &str,
    deadline: Instant,
) -> Result<Option<Oid>, GitError> {
    let repo = inner.open_cache()?;
    let session = Session::new(inner, deadline);
    let mut remote = repo
        .remote_anonymous(inner.url.raw())
        .map_err(|e| session.error(Stage::Connect, &e))?;
    let mut connection = remote
        .connect_auth(git2::Direction::Fetch, Some(session.callbacks()), None)
        .map_err(|e| session.error(Stage::Connect, &e))?;
    let tip = connection
        .list()
        .map_err(|e| session.error(Stage::Connect, &e))?
        .iter()
        .find(|head| head.name() == remote_ref)
        .map(|head| head.oid());
    let Some(tip) = tip else {
        drop(connection);
        if let Ok(mut stale) = repo.find_reference(local_ref) {
            stale.delete().map_err(|e| inner.cache_error(e.message()))?;
        }
        return Ok(None);
    };
    if repo.find_commit(tip).is_err() {
        let mut options = git2::FetchOptions::new();
        options
            .remote_callbacks(session.callbacks())
            .download_tags(git2::AutotagOption::None)
            .update_fetchhead(false);
        connection
            .remote()
            .download(&[format!("+{remote_ref}:{local_ref}")], Some(&mut options))
            .map_err(|e| session.error(Stage::Download, &e))?;
    }
    drop(connection);
    repo.find_commit(tip).map_err(|e| GitError::FetchBranch {
        url: inner.url(),
        branch: inner.branch(),
        detail: format!("{remote_ref} points at {tip}, which is not a commit: {e}"),
    })?;
    repo.reference(local_ref, tip, true, "bosun: the remote's ref")
        .map_err(|e| inner.cache_error(e.message()))?;
    Ok(Some(tip))
}

/// A ref the server answered for, and its error (`None`: updated).
type RefStatus = (String, Option<String>);

/// Pushes `local_ref` to `remote_ref`, never forced, and reads the server's verdict.
fn push_ref(
    inner: &Inner,
    local_ref: &str,
    remote_ref: &str,
    deadline: Instant,
) -> Result<Pushed, WriteError> {
    let repo = inner.open_cache()?;
    let session = Session::new(inner, deadline);
    let mut remote = repo
        .remote_anonymous(inner.url.raw())
        .map_err(|e| session.error(Stage::Connect, &e))?;
    let statuses: Rc<RefCell<Vec<RefStatus>>> = Rc::default();
    let sideband: Rc<RefCell<String>> = Rc::default();
    let mut callbacks = session.callbacks();
    let seen_statuses = Rc::clone(&statuses);
    callbacks.push_update_reference(move |name, status| {
        seen_statuses
            .borrow_mut()
            .push((name.to_owned(), status.map(str::to_owned)));
        Ok(())
    });
    let seen_sideband = Rc::clone(&sideband);
    let in_time = session.progress_check();
    callbacks.sideband_progress(move |data| {
        let mut text = seen_sideband.borrow_mut();
        if text.len() < 4096 {
            text.push_str(&String::from_utf8_lossy(data));
        }
        in_time()
    });
    let mut options = PushOptions::new();
    options.remote_callbacks(callbacks);
    // No `+`: libgit2 refuses a non-fast-forward itself, and so does the server.
    let refspec = format!("{local_ref}:{remote_ref}");
    if let Err(e) = remote.push(&[refspec.as_str()], Some(&mut options)) {
        if e.code() == ErrorCode::NotFastForward {
            return Ok(Pushed::Conflict(inner.redact(e.message())));
        }
        return Err(match session.error(Stage::Connect, &e) {
            GitError::ConnectRemote { detail, .. } => WriteError::Push {
                url: inner.url(),
                refname: remote_ref.to_owned(),
                detail,
            },
            other => WriteError::from(other),
        });
    }
    let status = statuses
        .borrow()
        .iter()
        .find(|(name, _)| name == remote_ref)
        .and_then(|(_, status)| status.clone());
    let Some(status) = status else {
        return Ok(Pushed::Done);
    };
    let server_said = server_lines(&sideband.borrow());
    let detail = inner.redact(&if server_said.is_empty() {
        status.clone()
    } else {
        format!("{status}: {server_said}")
    });
    Ok(verdict(&status, detail))
}

/// Sorts a ref the server did not update: lost a race (fetch again and retry), or refused.
/// The statuses are git receive-pack's and libgit2's words.
fn verdict(status: &str, detail: String) -> Pushed {
    let lower = status.to_ascii_lowercase();
    let lost_race = [
        "non-fast-forward",
        "fetch first",
        "stale info",
        "failed to update ref",
        "failed to lock",
        "cannot lock ref",
        "incorrect old value",
    ]
    .iter()
    .any(|s| lower.contains(s));
    if lost_race {
        Pushed::Conflict(detail)
    } else {
        Pushed::Refused(detail)
    }
}

/// What the server printed on the sideband, as one line: `remote:`/`error:` prefixes and control
/// characters dropped, at most 500 characters.
fn server_lines(sideband: &str) -> String {
    let lines: Vec<String> = sideband
        .split(['\n', '\r'])
        .map(|l| l.trim().trim_start_matches("remote:").trim())
        .map(|l| l.trim_start_matches("error:").trim())
        .filter(|l| !l.is_empty())
        .map(|l| l.chars().filter(|c| !c.is_control()).collect())
        .collect();
    let joined = lines.join(" ");
    if joined.chars().count() > 500 {
        let mut cut: String = joined.chars().take(499).collect();
        cut.push('…');
        cut
    } else {
        joined
    }
}

/// What can go wrong writing back to git, named for the action that failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Connecting, credentials, host keys, certificates, the cache, fetching, timeouts: as for a
    /// git source.
    #[error(transparent)]
    Remote(Box<GitError>),

    #[error("invalid write-back request for {url}: {reason}")]
    InvalidRequest { url: String, reason: String },

    #[error(
        "reading {path} at {revision} of {url} (branch {branch}): {reason}; Bosun does not \
         write through it, so set the version back by hand"
    )]
    ReadFile {
        url: String,
        branch: String,
        revision: Oid,
        path: String,
        reason: String,
    },

    #[error("editing {path} at {revision} of {url} (branch {branch}): {source}")]
    EditFile {
        url: String,
        branch: String,
        revision: Oid,
        path: String,
        source: Box<EditError>,
    },

    #[error(
        "writing commits to the cache {} of {url}: {detail}; check that the state directory is \
         writable and has free space",
        cache.display()
    )]
    WriteObjects {
        url: String,
        cache: PathBuf,
        detail: String,
    },

    #[error("pushing {refname} to {url}: {detail}; will retry")]
    Push {
        url: String,
        refname: String,
        detail: String,
    },

    #[error(
        "pushing {refname} to {url}: it moved under Bosun on each of {attempts} attempts; will \
         retry later"
    )]
    ConflictRetriesExhausted {
        url: String,
        refname: String,
        attempts: u32,
    },

    #[error(
        "pushing to {url}: the server refused {refname} ({refused}) and also the branch \
         {fallback} meant for a pull request ({fallback_refused}); allow Bosun to push bosun/* \
         branches, or set the version back by hand"
    )]
    PushRefused {
        url: String,
        refname: String,
        refused: String,
        fallback: String,
        fallback_refused: String,
    },

    #[error(
        "pushing the rollback of {app} to {url}: a human edited lines of its definition that the \
         rollback restores too, so it goes to the branch {branch} for a pull request, which the \
         server refused ({refused}); allow Bosun to push bosun/* branches, or restore the \
         definition by hand"
    )]
    ConflictBranchRefused {
        url: String,
        app: String,
        branch: String,
        refused: String,
    },

    #[error(
        "pushing {} to {url}: the server refused it ({reason}); allow Bosun to push that ref",
        NOTES_REF
    )]
    NotesRefused { url: String, reason: String },

    #[error(
        "pushing the rollback of {app} to {url}: the branch {branch} exists and holds something \
         else; merge or delete it, and Bosun pushes the rollback there again"
    )]
    BranchTaken {
        url: String,
        branch: String,
        app: String,
    },
}

impl From<GitError> for WriteError {
    fn from(e: GitError) -> Self {
        WriteError::Remote(Box::new(e))
    }
}

impl WriteError {
    /// How to recover: retry with backoff, or wait for a human.
    pub fn kind(&self) -> ErrorKind {
        match self {
            WriteError::Remote(e) => e.kind(),
            WriteError::WriteObjects { .. }
            | WriteError::Push { .. }
            | WriteError::ConflictRetriesExhausted { .. } => ErrorKind::Transient,
            WriteError::InvalidRequest { .. }
            | WriteError::ReadFile { .. }
            | WriteError::EditFile { .. }
            | WriteError::PushRefused { .. }
            | WriteError::ConflictBranchRefused { .. }
            | WriteError::NotesRefused { .. }
            | WriteError::BranchTaken { .. } => ErrorKind::Stalled,
        }
    }

    /// The variant's name: a metric label and an Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            WriteError::Remote(e) => e.reason(),
            WriteError::InvalidRequest { .. } => "InvalidRequest",
            WriteError::ReadFile { .. } => "ReadFile",
            WriteError::EditFile { .. } => "EditFile",
            WriteError::WriteObjects { .. } => "WriteObjects",
            WriteError::Push { .. } => "Push",
            WriteError::ConflictRetriesExhausted { .. } => "ConflictRetriesExhausted",
            WriteError::PushRefused { .. } => "PushRefused",
            WriteError::ConflictBranchRefused { .. } => "ConflictBranchRefused",
            WriteError::NotesRefused { .. } => "NotesRefused",
            WriteError::BranchTaken { .. } => "BranchTaken",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lost_race_is_retried_and_anything_else_is_a_refusal() {
        let conflicts = [
            "non-fast-forward",
            "failed to update ref",
            "failed to lock",
            "cannot lock ref 'refs/heads/main': is at 1234 but expected 5678",
        ];
        for status in conflicts {
            assert!(
                matches!(verdict(status, String::new()), Pushed::Conflict(_)),
                "{status}"
            );
        }
        for status in [
            "pre-receive hook declined",
            "hook declined",
            "deny updating a hidden ref",
            "protected branch hook declined",
        ] {
            assert!(
                matches!(verdict(status, String::new()), Pushed::Refused(_)),
                "{status}"
            );
        }
    }

    #[test]
    fn the_servers_words_become_one_line() {
        let sideband = "remote: error: GH006: Protected branch update failed for refs/heads/main.\n\
                        error: bosun-gitserver: refs/heads/main is a protected branch; open a pull request instead.\r\n";
        assert_eq!(
            server_lines(sideband),
            "GH006: Protected branch update failed for refs/heads/main. bosun-gitserver: \
             refs/heads/main is a protected branch; open a pull request instead."
        );
    }

    #[test]
    fn a_writer_needs_a_sane_author() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let spec = |name: &str, email: &str| WriterSpec {
            url: "https://h/r.git".to_owned(),
            branch: "main".to_owned(),
            auth: Auth::None,
            author: Author {
                name: name.to_owned(),
                email: email.to_owned(),
            },
            limits: WriteLimits::default(),
        };
        assert!(GitWriter::open(spec("Bosun", "bosun@noreply.local"), dir.path()).is_ok());
        for (name, email) in [("", "a@b"), ("Bo<sun>", "a@b"), ("Bosun", "a\n@b")] {
            let err = GitWriter::open(spec(name, email), dir.path()).expect_err("refused");
            assert_eq!(err.reason(), "InvalidSpec", "{err}");
        }
    }
}
