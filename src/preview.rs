//! Plan previews on open pull requests: for every open pull request into a git source's branch whose
//! head changes definitions under the source's path, Bosun comments what merging it would do and sets
//! the commit status `bosun/plan` on its head (`failure` when `bosun validate` refuses a definition, so
//! that branch protection can require it), and edits that comment on every push to the pull request.
//!
//! Thin: the forge lists the open pull requests; git fetches each head from the forge's
//! `refs/pull/N/head` (`refs/merge-requests/N/head` on GitLab) into a cache of its own, never checking
//! anything out; [`bosun_core::preview`] decides and renders; the [`Reporter`] writes, coalesced and
//! paced like every other forge write. It never reads or writes the cluster. It runs on the leader
//! only, every `interval` and at once when a pull request webhook arrives.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosun_core::preview::{PREVIEW_CONTEXT, Request, Side, preview};
use bosun_core::report::{CommitStatus, StatusState};
use tokio::sync::Notify;
use tracing::{info, warn};

use crate::config::{Origin, SourceConfig};
use crate::forge::{Forge, Reporter, Update};
use crate::git::{GitSource, Oid, Snapshot};

/// How previews are made.
#[derive(Clone, Debug)]
pub struct PreviewSettings {
    /// How often the open pull requests are listed (a pull request webhook wakes it sooner).
    pub interval: Duration,
    /// At most this many open pull requests (the most recently updated) are previewed.
    pub max_pull_requests: usize,
}

impl Default for PreviewSettings {
    fn default() -> Self {
        PreviewSettings {
            interval: Duration::from_secs(60),
            max_pull_requests: 20,
        }
    }
}

/// One source's previewer.
struct Previewer {
    source: SourceConfig,
    branch: String,
    git: Arc<Mutex<GitSource>>,
    forge: Forge,
    reporter: Reporter,
    settings: PreviewSettings,
    /// Per pull request, the (head, base) last previewed: nothing is fetched or sent again for them.
    done: HashMap<u64, (Oid, Oid)>,
}

/// Starts the previewer of every git source; `wake` holds, per source name, what a pull request
/// webhook notifies.
///
/// # Errors
/// When a source's preview cache cannot be opened.
pub fn spawn(
    sources: &[SourceConfig],
    cache_dir: &Path,
    forge: &Forge,
    reporter: &Reporter,
    settings: &PreviewSettings,
    wake: &HashMap<String, Arc<Notify>>,
) -> anyhow::Result<()> {
    for source in sources {
        let Origin::Git(spec) = &source.origin else {
            continue;
        };
        let git = GitSource::open_for(spec.clone(), cache_dir, "previews")?;
        let previewer = Previewer {
            branch: spec.branch.clone(),
            source: source.clone(),
            git: Arc::new(Mutex::new(git)),
            forge: forge.clone(),
            reporter: reporter.clone(),
            settings: settings.clone(),
            done: HashMap::new(),
        };
        let wake = wake.get(&source.name).cloned().unwrap_or_default();
        tokio::spawn(previewer.forever(wake));
    }
    Ok(())
}

impl Previewer {
    async fn forever(mut self, wake: Arc<Notify>) {
        use tracing::Instrument;
        // Instrumented, not entered: a span entered across an await leaks into whatever else runs
        // on the thread.
        let span = tracing::info_span!("previews", source = %self.source.name);
        async move {
            loop {
                self.round().await;
                tokio::select! {
                    () = tokio::time::sleep(self.settings.interval) => {}
                    () = wake.notified() => {}
                }
            }
        }
        .instrument(span)
        .await;
    }

    /// Lists the open pull requests and previews each one whose head or base moved.
    async fn round(&mut self) {
        let prs = match self
            .forge
            .open_pull_requests(&self.branch, self.settings.max_pull_requests)
            .await
        {
            Ok(prs) => prs,
            Err(e) => {
                warn!(error = %e, "listing open pull requests failed; previews wait for the next round");
                return;
            }
        };
        let open: Vec<u64> = prs.iter().map(|p| p.number).collect();
        self.done.retain(|pr, _| open.contains(pr));
        if prs.is_empty() {
            return;
        }
        let base = match self.read(None).await {
            Ok(Ok(base)) => base,
            Ok(Err(e)) => {
                warn!(error = %e, "reading the watched branch failed; previews wait for the next round");
                return;
            }
            Err(e) => {
                warn!(error = %e, "fetching the watched branch failed; previews wait for the next round");
                return;
            }
        };
        for pr in prs {
            let head_ref = self.forge.head_ref_of(pr.number);
            let head = match self.read(Some(head_ref)).await {
                Ok(Ok(head)) => head,
                // Fetched, but its definitions cannot be read (a missing path, too many files):
                // the pull request is told why.
                Ok(Err(e)) => {
                    let head = pr.head_sha.clone();
                    if !head.is_empty() {
                        let why = format!("Bosun cannot read this head: {e}");
                        let body = format!(
                            "{}\n### 🔭 Bosun: what merging this would do\n\n❌ {}\n",
                            bosun_core::preview::PREVIEW_MARKER,
                            bosun_core::shown::cut_to(&why, 1000)
                        );
                        self.send(pr.number, &head, StatusState::Failure, why, body);
                    }
                    continue;
                }
                Err(e) => {
                    warn!(pr = pr.number, error = %e, "fetching the pull request's head failed");
                    continue;
                }
            };
            if self.done.get(&pr.number) == Some(&(head.revision, base.revision)) {
                continue;
            }
            self.done.insert(pr.number, (head.revision, base.revision));
            let (base_commit, head_commit) = (base.revision.to_string(), head.revision.to_string());
            let request = Request {
                branch: &self.branch,
                base: Side {
                    commit: &base_commit,
                    files: &base.files,
                    refused: &base.refused,
                },
                head: Side {
                    commit: &head_commit,
                    files: &head.files,
                    refused: &head.refused,
                },
                default_namespace: &self.source.default_namespace,
                policy: self.source.policy,
                windows: &self.source.upgrade_windows,
                now: k8s_openapi::jiff::Timestamp::now(),
            };
            let Some(p) = preview(&request) else {
                continue;
            };
            info!(pr = pr.number, head = %head_commit, state = p.state.as_str(), description = %p.description, "plan preview");
            self.send(pr.number, &head_commit, p.state, p.description, p.body);
        }
    }

    fn send(&self, pr: u64, head: &str, state: StatusState, description: String, body: String) {
        self.reporter.submit(Update::Status {
            sha: head.to_string(),
            status: CommitStatus {
                context: PREVIEW_CONTEXT.into(),
                state,
                description,
            },
            target_url: None,
        });
        self.reporter.submit(Update::Preview { pr, body });
    }

    /// The definitions at the tip of the watched branch (`None`) or of a pull request's head ref:
    /// the outer error is the fetch's, the inner one the reading's.
    async fn read(
        &self,
        remote_ref: Option<String>,
    ) -> anyhow::Result<Result<Snapshot, crate::git::GitError>> {
        let git = self.git.clone();
        tokio::task::spawn_blocking(move || {
            let mut git = git.lock().expect("preview git lock");
            let revision = match remote_ref {
                None => match git.poll(None)? {
                    crate::git::Poll::Unchanged(tip) => tip,
                    crate::git::Poll::Changed { revision, .. } => revision,
                },
                Some(r) => git.fetch_ref(&r)?,
            };
            Ok(git.read_tree(revision))
        })
        .await?
    }
}
