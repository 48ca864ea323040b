//! Report: tell git what happened. A controller over ManagedApplications (beside the engine, on the
//! leader only) that, on every change of an app, asks `bosun_core::writeback::git_actions` what git
//! should say and does it: a rollback commit when an upgrade was rolled back (or a branch for a pull
//! request when the branch is protected), and a note on the source commit under `refs/notes/bosun` when
//! an upgrade ended. It records what it wrote in two annotations on the app (`bosun.dev/rollback-of`:
//! the source commit rolled back, `bosun.dev/rollback-commit`: what was written), so a restarted Bosun
//! writes nothing twice; the git writes themselves are idempotent too.
//!
//! With a forge configured (GitHub, Gitea or GitLab), every change of an app also refreshes the commit
//! status of its source commit (`status.targetRevision`) and Bosun's one comment on the pull request
//! that brought the commit, with every app that commit changed; the forge `Reporter` coalesces and
//! paces those writes in the background. A rollback refused by a protected branch becomes a pull
//! request (a merge request on GitLab).
//!
//! A slow or failing git server delays only this controller, never the engine's reconciles; the forge
//! never delays anything.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosun_core::engine::revision::Revision;
use bosun_core::model::ManagedApplication;
pub use bosun_core::names::{
    ANNOTATION_ROLLBACK_COMMIT, ANNOTATION_ROLLBACK_CONFLICT, ANNOTATION_ROLLBACK_OF,
    ANNOTATION_ROLLBACK_PR,
};
use bosun_core::writeback::group::{Group, group_of};
use bosun_core::writeback::{
    AppView, CommitOutcome, GitAction, Restoration, RolledBack, conflict_listing, render_note,
    rollback_pull_request,
};
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action as Requeue, Controller};
use kube::runtime::reflector::Store;
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tracing::{info, warn};

use crate::forge::{Forge, Reporter, ReporterConfig};
use crate::git::writeback::{
    GitWriter, NoteOutcome, PullRequestReason, RollbackRequest, WriteOutcome, WriterSpec,
};
use crate::leader::Fence;

/// The longest conflict explanation kept in [`ANNOTATION_ROLLBACK_CONFLICT`] (characters).
const MAX_CONFLICT_CHARS: usize = 4000;

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
    #[error("opening the rollback pull request for {app}: {error}")]
    Forge {
        app: String,
        #[source]
        error: crate::forge::ForgeError,
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
    forge: Option<ForgeReporting>,
    /// Every app, to gather the apps one commit changed into one comment.
    store: Store<ManagedApplication>,
    fence: Arc<Fence>,
}

/// The forge: the background reporter for statuses and comments, and the client for rollback pull
/// requests.
pub struct ForgeReporting {
    reporter: Reporter,
    client: Forge,
    /// The watched branch, the base of rollback pull requests.
    branch: String,
}

impl ForgeReporting {
    /// The background reporter (clones share it).
    pub fn reporter(&self) -> &Reporter {
        &self.reporter
    }

    /// The forge client.
    pub fn client(&self) -> &Forge {
        &self.client
    }

    /// Starts the background reporter.
    ///
    /// # Errors
    /// When the forge client cannot be built.
    pub fn start(
        settings: &crate::config::ForgeSettings,
        sources: &[crate::config::SourceConfig],
    ) -> anyhow::Result<ForgeReporting> {
        let branch = sources
            .iter()
            .find_map(|s| match &s.origin {
                crate::config::Origin::Git(spec) => Some(spec.branch.clone()),
                crate::config::Origin::Dir(_) => None,
            })
            .unwrap_or_else(|| "main".into());
        let client = Forge::new(settings.config.clone())?;
        let reporter = Reporter::spawn(
            Forge::new(settings.config.clone())?,
            ReporterConfig {
                writes_per_minute: settings.writes_per_minute,
                branch: Some(branch.clone()),
                target_url: settings.target_url.clone(),
                ..ReporterConfig::default()
            },
        );
        // The forge's requests, failures and rate-limit waits, for /metrics.
        let forge = settings.config.kind;
        let mut events = reporter.events();
        tokio::spawn(async move {
            use crate::forge::ReporterEvent;
            let m = crate::metrics::global();
            loop {
                match events.recv().await {
                    Ok(ReporterEvent::Sent { call, .. }) => {
                        m.forge_requests
                            .get_or_create(&crate::metrics::labels(&[
                                ("forge", forge.name()),
                                ("call", call.as_str()),
                                ("status", "ok"),
                            ]))
                            .inc();
                    }
                    Ok(ReporterEvent::Failed { call, error, .. }) => {
                        m.forge_requests
                            .get_or_create(&crate::metrics::labels(&[
                                ("forge", forge.name()),
                                ("call", call.as_str()),
                                ("status", "error"),
                            ]))
                            .inc();
                        if error.contains("rate limited") {
                            m.forge_rate_limit_waits.inc();
                        }
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(ForgeReporting {
            reporter,
            client,
            branch,
        })
    }
}

/// Opens a writer for every git source (`<cache>/writeback/<source>`).
///
/// # Errors
/// When a writer's cache cannot be created.
pub fn targets(
    sources: &[crate::config::SourceConfig],
    cache_dir: &std::path::Path,
) -> anyhow::Result<HashMap<String, WriteTarget>> {
    let mut out = HashMap::new();
    for s in sources {
        if let crate::config::Origin::Git(spec) = &s.origin {
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
    apps: crate::cache::Feed<ManagedApplication>,
    targets: HashMap<String, WriteTarget>,
    forge: Option<ForgeReporting>,
    fence: Arc<Fence>,
) {
    if targets.is_empty() && forge.is_none() {
        return;
    }
    // The apps as the engine's watch keeps them (see `crate::engine::Watches`): each at the start,
    // then at each change.
    let changes = apps.changes();
    if apps.wait_until_ready().await.is_err() {
        return;
    }
    let store = apps.store();
    let every_app = futures::stream::iter(store.state().into_iter().map(|a| Ok((*a).clone())));
    let apps = every_app.chain(changes);
    let controller = Controller::for_stream(apps, store.clone());
    let ctx = Arc::new(Ctx {
        client,
        targets,
        forge,
        store,
        fence,
    });
    controller
        .run(reconcile, error_policy, ctx)
        .for_each(|r| async move {
            if let Err(e) = r {
                warn!(error = %e, "write-back failed");
            }
        })
        .await;
}

fn error_policy(app: Arc<ManagedApplication>, error: &ReportError, _ctx: Arc<Ctx>) -> Requeue {
    let _in = crate::engine::app_span("write-back", &app).entered();
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

/// What the write-back decisions read of an app (also the dashboard's, for the note it shows).
pub(crate) fn view(app: &ManagedApplication) -> AppView {
    let a = app.annotations();
    AppView {
        namespace: app.namespace().unwrap_or_default(),
        app: app.name_any(),
        spec_version: app.spec.version.clone(),
        spec_hash: Revision::of(&app.spec).hash(),
        status: app.status.clone().unwrap_or_default(),
        source_path: a.get(bosun_core::sync::ANNOTATION_SOURCE_PATH).cloned(),
        rolled_back: a.get(ANNOTATION_ROLLBACK_OF).cloned(),
        rollback_commit: a.get(ANNOTATION_ROLLBACK_COMMIT).cloned(),
    }
}

async fn reconcile(app: Arc<ManagedApplication>, ctx: Arc<Ctx>) -> Result<Requeue, ReportError> {
    use tracing::Instrument;
    let span = crate::engine::app_span("write-back", &app);
    reconcile_in_span(app, ctx).instrument(span).await
}

async fn reconcile_in_span(
    app: Arc<ManagedApplication>,
    ctx: Arc<Ctx>,
) -> Result<Requeue, ReportError> {
    let name = format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any());
    if !ctx.fence.may_write() {
        return Ok(Requeue::requeue(Duration::from_secs(5)));
    }
    if let Some(gh) = &ctx.forge {
        open_rollback_pull_request(&app, gh, &ctx.client).await?;
        if let Some(summary) = summary_of(&app, &ctx.store) {
            gh.reporter.submit_summary(&summary);
        }
    }
    let Some(target) = app
        .labels()
        .get(bosun_core::sync::LABEL_SOURCE)
        .and_then(|s| ctx.targets.get(s))
    else {
        return Ok(Requeue::await_change());
    };
    for action in bosun_core::writeback::git_actions(&view(&app)) {
        let writer = target.writer.clone();
        match action {
            GitAction::Rollback(commit) => {
                let undoes = commit.undoes.clone();
                // The apps of its group (`spec.dependsOn`) go back in the same commit, once they
                // have all failed.
                let now = k8s_openapi::jiff::Timestamp::now().as_second();
                let all = ctx.store.state();
                let members = match group_of(&app, all.iter().map(AsRef::as_ref), now) {
                    Group::Settling { waiting_for } => {
                        info!(app = %name, ?waiting_for, "the rollback commit waits for the rest of the group to roll back");
                        return Ok(Requeue::requeue(Duration::from_secs(2)));
                    }
                    Group::Settled { members } => members,
                };
                let mut requests = vec![RollbackRequest::managed_application(commit.clone())];
                for member in all.iter().filter(|a| {
                    members.contains(&format!(
                        "{}/{}",
                        a.namespace().unwrap_or_default(),
                        a.name_any()
                    ))
                }) {
                    for action in bosun_core::writeback::git_actions(&view(member)) {
                        if let GitAction::Rollback(c) = action
                            && c.undoes == undoes
                        {
                            requests.push(RollbackRequest::managed_application(c));
                        }
                    }
                }
                let outcome = tokio::task::spawn_blocking(move || {
                    writer
                        .lock()
                        .expect("writer lock")
                        .commit_group_rollback(&requests)
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
                let subject = commit.subject();
                let mut conflict = None;
                let written = match &outcome {
                    WriteOutcome::Committed {
                        commit: c,
                        attempts,
                        how,
                    } => {
                        match how {
                            Restoration::VersionOnly { why } => {
                                info!(app = %name, commit = %c, attempts, %subject, %why,
                                    "rollback committed to git: spec.version only, the definition could not be restored");
                            }
                            Restoration::Definition | Restoration::Conflict { .. } => {
                                info!(app = %name, commit = %c, attempts, %subject,
                                    "rollback committed to git: the app's definition restored");
                            }
                        }
                        count("rollback", "committed");
                        c.to_string()
                    }
                    WriteOutcome::AlreadyDone { commit: c } => {
                        count("rollback", "already_done");
                        c.map(|c| c.to_string()).unwrap_or_default()
                    }
                    WriteOutcome::LeftAlone(why) => {
                        info!(app = %name, ?why, "rollback not written: git no longer asks for the failed revision, or cannot be set back");
                        count("rollback", "left_alone");
                        String::new()
                    }
                    WriteOutcome::NeedsPullRequest {
                        branch,
                        reason: PullRequestReason::Refused(refused),
                        ..
                    } => {
                        warn!(app = %name, %branch, %refused,
                            "the branch refused the rollback commit; it is on a branch for a pull request");
                        count("rollback", "pull_request_branch");
                        format!("branch:{branch}")
                    }
                    WriteOutcome::NeedsPullRequest {
                        branch,
                        reason: PullRequestReason::Conflict { hunks, unreadable },
                        ..
                    } => {
                        let path = &commit.source_path;
                        let mut text = conflict_listing(path, hunks);
                        if let Some(why) = unreadable {
                            text = format!(
                                "The merged definition could not be committed as it was: {why}.\n{text}"
                            );
                        }
                        warn!(app = %name, %branch, conflict = %text,
                            "a human edited the lines the rollback restores; it is on a branch for a pull request, for a human to resolve");
                        count("rollback", "conflict_branch");
                        conflict = Some(bosun_core::report::truncate(&text, MAX_CONFLICT_CHARS));
                        format!("branch:{branch}")
                    }
                };
                let api: Api<ManagedApplication> =
                    Api::namespaced(ctx.client.clone(), &app.namespace().unwrap_or_default());
                let patch = json!({"metadata": {"annotations": {
                    ANNOTATION_ROLLBACK_OF: undoes,
                    ANNOTATION_ROLLBACK_COMMIT: written,
                    ANNOTATION_ROLLBACK_CONFLICT: conflict,
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

/// Opens the pull request of a rollback that a protected branch refused, once, and records it.
async fn open_rollback_pull_request(
    app: &ManagedApplication,
    gh: &ForgeReporting,
    client: &Client,
) -> Result<(), ReportError> {
    let a = app.annotations();
    let Some(branch) = a
        .get(ANNOTATION_ROLLBACK_COMMIT)
        .and_then(|c| c.strip_prefix("branch:"))
    else {
        return Ok(());
    };
    if a.contains_key(ANNOTATION_ROLLBACK_PR) {
        return Ok(());
    }
    let name = format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any());
    let s = app.status.clone().unwrap_or_default();
    let Some(rb) = RolledBack::of(&s) else {
        return Ok(());
    };
    let (title, body) = rollback_pull_request(
        &app.namespace().unwrap_or_default(),
        &app.name_any(),
        &rb,
        s.message.as_deref().unwrap_or_default(),
        &gh.branch,
        a.get(ANNOTATION_ROLLBACK_CONFLICT).map(String::as_str),
    );
    let pr = gh
        .client
        .open_pull_request(branch, &gh.branch, &title, &body)
        .await
        .map_err(|error| ReportError::Forge {
            app: name.clone(),
            error,
        })?;
    info!(app = %name, number = pr.number, url = %pr.html_url, "rollback pull request opened");
    let api: Api<ManagedApplication> =
        Api::namespaced(client.clone(), &app.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"annotations": {
        ANNOTATION_ROLLBACK_PR: format!("{} {}", pr.number, pr.html_url),
    }}});
    api.patch(
        &app.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map_err(|error| ReportError::Annotate { app: name, error })?;
    Ok(())
}

/// The change summary of the commit that started `app`'s upgrade: every app that commit changed.
fn summary_of(
    app: &ManagedApplication,
    store: &Store<ManagedApplication>,
) -> Option<bosun_core::report::ChangeSummary> {
    let commit = app.status.as_ref()?.target_revision.clone()?;
    // A local directory's revision is no commit.
    crate::git::Oid::from_str(&commit).ok()?;
    // Bosun's own rollback commit is no new work: its outcome is told on the commit it undid.
    if app.annotations().get(ANNOTATION_ROLLBACK_COMMIT) == Some(&commit) {
        return None;
    }
    let mut apps: Vec<Arc<ManagedApplication>> = store
        .state()
        .into_iter()
        .filter(|a| {
            a.status.as_ref().and_then(|s| s.target_revision.as_deref()) == Some(commit.as_str())
        })
        .collect();
    if !apps.iter().any(|a| a.uid() == app.uid()) {
        apps.push(Arc::new(app.clone()));
    }
    apps.sort_by_key(|a| (a.namespace(), a.name_any()));
    let reports = apps
        .iter()
        .filter_map(|a| bosun_core::report::app_report(a))
        .collect();
    Some(bosun_core::report::ChangeSummary {
        commit,
        apps: reports,
        words: bosun_core::report::Words::default(),
    })
}
