//! Report: tell git what happened. A controller over ManagedApplications (beside the engine, on the
//! leader only) that, on every change of an app, asks `bosun_core::writeback::git_actions` what git
//! should say and does it: a rollback commit when an upgrade was rolled back (or a branch for a pull
//! request when the branch is protected), and a note on the source commit under `refs/notes/bosun` when
//! an upgrade ended. It records what it wrote in two annotations on the app (`bosun.dev/rollback-of`:
//! the source commit rolled back, `bosun.dev/rollback-commit`: what was written), so a restarted Bosun
//! writes nothing twice; the git writes themselves are idempotent too.
//!
//! A slow or failing git server delays only this controller, never the engine's reconciles.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosun_core::model::ManagedApplication;
use bosun_core::writeback::{AppView, CommitOutcome, GitAction, render_note};
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::git::writeback::{GitWriter, NoteOutcome, RollbackRequest, WriteOutcome, WriterSpec};
use crate::leader::Fence;

/// The source commit whose upgrade Bosun rolled back in git.
pub const ANNOTATION_ROLLBACK_OF: &str = "bosun.dev/rollback-of";
/// The rollback commit Bosun wrote (or `branch:<name>` when it went to a pull request branch).
pub const ANNOTATION_ROLLBACK_COMMIT: &str = "bosun.dev/rollback-commit";

/// What went wrong writing back.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("writing back to git for {app}: {error}")]
    Git {
        app: String,
        #[source]
        error: crate::git::writeback::WriteError,
    },
    #[error("recording the rollback on {app}: {error}")]
    Annotate {
        app: String,
        #[source]
        error: kube::Error,
    },
    #[error("the git writer task for {app} stopped: {error}")]
    Task {
        app: String,
        #[source]
        error: tokio::task::JoinError,
    },
}

/// One watched repository that Bosun may write to.
pub struct WriteTarget {
    pub writer: Arc<Mutex<GitWriter>>,
}

struct Ctx {
    client: Client,
    /// By source name (the `bosun.dev/source` label).
    targets: HashMap<String, WriteTarget>,
    fence: Arc<Fence>,
}

/// Opens a writer for every git source (`<cache>/writeback/<source>`).
///
/// # Errors
/// When a writer's cache cannot be created.
pub fn targets(
    sources: &[crate::run::SourceConfig],
    cache_dir: &std::path::Path,
) -> anyhow::Result<HashMap<String, WriteTarget>> {
    let mut out = HashMap::new();
    for s in sources {
        if let crate::run::Origin::Git(spec) = &s.origin {
            let dir: PathBuf = cache_dir.join("writeback").join(&s.name);
            let writer = GitWriter::open(
                WriterSpec {
                    url: spec.url.clone(),
                    branch: spec.branch.clone(),
                    auth: spec.auth.clone(),
                    author: crate::git::writeback::Author::default(),
                    limits: crate::git::writeback::WriteLimits::default(),
                },
                &dir,
            )?;
            out.insert(
                s.name.clone(),
                WriteTarget {
                    writer: Arc::new(Mutex::new(writer)),
                },
            );
        }
    }
    Ok(out)
}

/// Runs the write-back controller until its stream ends.
pub async fn run(
    client: Client,
    namespace: Option<String>,
    targets: HashMap<String, WriteTarget>,
    fence: Arc<Fence>,
) {
    if targets.is_empty() {
        return;
    }
    let api: Api<ManagedApplication> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let ctx = Arc::new(Ctx {
        client,
        targets,
        fence,
    });
    Controller::new(api, watcher::Config::default())
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                warn!(error = %e, "write-back failed");
            }
        })
        .await;
}

fn error_policy(_app: Arc<ManagedApplication>, error: &ReportError, _ctx: Arc<Ctx>) -> Requeue {
    warn!(%error, "write-back will be retried");
    crate::metrics::global()
        .git_writes
        .get_or_create(&crate::metrics::labels(&[
            ("kind", "any"),
            ("result", "error"),
        ]))
        .inc();
    Requeue::requeue(Duration::from_secs(15))
}

fn count(kind: &str, result: &str) {
    crate::metrics::global()
        .git_writes
        .get_or_create(&crate::metrics::labels(&[
            ("kind", kind),
            ("result", result),
        ]))
        .inc();
}

fn view(app: &ManagedApplication) -> AppView {
    let a = app.annotations();
    AppView {
        namespace: app.namespace().unwrap_or_default(),
        app: app.name_any(),
        spec_version: app.spec.version.clone(),
        status: app.status.clone().unwrap_or_default(),
        source_path: a.get(bosun_core::sync::ANNOTATION_SOURCE_PATH).cloned(),
        rolled_back: a.get(ANNOTATION_ROLLBACK_OF).cloned(),
        rollback_commit: a.get(ANNOTATION_ROLLBACK_COMMIT).cloned(),
    }
}

async fn reconcile(app: Arc<ManagedApplication>, ctx: Arc<Ctx>) -> Result<Requeue, ReportError> {
    let name = format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any());
    let Some(target) = app
        .labels()
        .get(bosun_core::sync::LABEL_SOURCE)
        .and_then(|s| ctx.targets.get(s))
    else {
        return Ok(Requeue::await_change());
    };
    if !ctx.fence.may_write() {
        return Ok(Requeue::requeue(Duration::from_secs(5)));
    }
    for action in bosun_core::writeback::git_actions(&view(&app)) {
        let writer = target.writer.clone();
        match action {
            GitAction::Rollback(commit) => {
                let undoes = commit.undoes.clone();
                let request = RollbackRequest::managed_application(commit.clone());
                let outcome = tokio::task::spawn_blocking(move || {
                    writer
                        .lock()
                        .expect("writer lock")
                        .commit_rollback(&request)
                })
                .await
                .map_err(|error| ReportError::Task {
                    app: name.clone(),
                    error,
                })?
                .map_err(|error| ReportError::Git {
                    app: name.clone(),
                    error,
                })?;
                let written = match &outcome {
                    WriteOutcome::Committed {
                        commit: c,
                        attempts,
                    } => {
                        info!(app = %name, commit = %c, attempts, from = %commit.failed_version,
                            to = %commit.restored_version, "rollback committed to git");
                        count("rollback", "committed");
                        c.to_string()
                    }
                    WriteOutcome::AlreadyDone { commit: c } => {
                        count("rollback", "already_done");
                        c.map(|c| c.to_string()).unwrap_or_default()
                    }
                    WriteOutcome::LeftAlone(why) => {
                        info!(app = %name, ?why, "rollback not written: git no longer asks for the failed version");
                        count("rollback", "left_alone");
                        String::new()
                    }
                    WriteOutcome::NeedsPullRequest {
                        branch, refused, ..
                    } => {
                        warn!(app = %name, %branch, %refused,
                            "the branch refused the rollback commit; it is on a branch for a pull request");
                        count("rollback", "pull_request_branch");
                        format!("branch:{branch}")
                    }
                };
                let api: Api<ManagedApplication> =
                    Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
                let patch = json!({"metadata": {"annotations": {
                    ANNOTATION_ROLLBACK_OF: undoes,
                    ANNOTATION_ROLLBACK_COMMIT: written,
                }}});
                api.patch(
                    &app.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
                .map_err(|error| ReportError::Annotate {
                    app: name.clone(),
                    error,
                })?;
                // The annotation change wakes this controller again for the note.
            }
            GitAction::Note { revision, outcome } => {
                let Ok(oid) = crate::git::Oid::from_str(&revision) else {
                    // A local directory's revision is no commit: nothing to annotate.
                    continue;
                };
                let text = render_note(&CommitOutcome {
                    apps: vec![outcome],
                });
                let result = tokio::task::spawn_blocking(move || {
                    writer.lock().expect("writer lock").add_note(oid, &text)
                })
                .await
                .map_err(|error| ReportError::Task {
                    app: name.clone(),
                    error,
                })?
                .map_err(|error| ReportError::Git {
                    app: name.clone(),
                    error,
                })?;
                match result {
                    NoteOutcome::Added { .. } => {
                        info!(app = %name, %revision, "outcome noted in refs/notes/bosun");
                        count("note", "added");
                    }
                    NoteOutcome::Unchanged => count("note", "unchanged"),
                }
            }
        }
    }
    Ok(Requeue::await_change())
}
