//! `bosun run`: the daemon's git-to-cluster loop.
//!
//! For each configured source, a task runs the pipeline: poll (git) → read the tree → validate → observe
//! (what this source applied before) → plan (`bosun_core::sync`) → attribute (each changed object to the
//! commit that changed it, [`attribution`]) → apply → report. It waits between runs
//! for the poll interval (jittered so sources do not poll in step), or less when a webhook or, for a local
//! directory, a saved file wakes it. Failures are retried with capped, jittered backoff; the last applied
//! state stays in force meanwhile, and a failure that persists past the grace period is logged as such.

mod attribution;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bosun_core::sync::attribution::{Attribution, NotFound, WALK_BOUND};
use bosun_core::sync::{self, ApplyReason, Kept, Live, SyncAction, SyncPlan};
use bosun_core::validate::validate_files;
use bosun_core::yaml::Limits;
use tokio::sync::Notify;
use tracing::{Instrument, debug, error, info, info_span, warn};

use anyhow::Context;

use crate::backoff::{Backoff, spread};
use crate::cluster::Cluster;
pub use crate::config::{ForgeSettings, Origin, RunConfig, SourceConfig};
use crate::git::{self, GitSource, Poll};
use crate::leader::{Fence, WriteGate};
use crate::webhook::{self, Watched};

/// What one sync did, for logs and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncOutcome {
    pub revision: String,
    pub created: usize,
    pub updated: usize,
    pub pruned: usize,
    pub unchanged: usize,
    pub invalid_files: usize,
    pub errors: usize,
}

/// Runs the daemon until interrupted (or, with `once`, until every source synced once).
///
/// # Errors
/// When the cluster cannot be reached at start, or the webhook listener cannot bind.
pub async fn run(config: RunConfig) -> anyhow::Result<bool> {
    let kube_config = kube::Config::infer()
        .await
        .context("finding the cluster: set KUBECONFIG, or run in a pod with a ServiceAccount")?;
    let fence = match &config.leader_election {
        Some(_) => Fence::closed(),
        None => Fence::always(),
    };
    // Every write of the daemon goes through the gate: a replica without the lease cannot write.
    let client = WriteGate::new(fence.clone()).client(kube_config.clone())?;
    let cluster = Cluster::from_client(client.clone());
    let mut watched = Vec::new();
    let mut runners = Vec::new();
    let mut pull_request_wake = std::collections::HashMap::new();
    for source in config.sources.clone() {
        let wake = Arc::new(Notify::new());
        match &source.origin {
            Origin::Git(spec) => {
                let pull_requests = Arc::new(Notify::new());
                pull_request_wake.insert(source.name.clone(), pull_requests.clone());
                watched.push(Watched {
                    repo: webhook::normalize_repo_url(&spec.url),
                    branch: spec.branch.clone(),
                    wake: wake.clone(),
                    pull_requests,
                });
            }
            Origin::Dir(dir) => crate::watch::spawn(dir.clone(), wake.clone())?,
        }
        runners.push((SourceRunner::new(source, cluster.clone(), &config)?, wake));
    }
    if config.once {
        let mut tasks = Vec::new();
        for (runner, _) in runners {
            tasks.push(tokio::spawn(async move { runner.once().await }));
        }
        let mut ok = true;
        for t in tasks {
            ok &= t.await.unwrap_or(false);
        }
        return Ok(ok);
    }
    // Comment commands go from the webhook (on every replica) to one task on the leader, started
    // with the forge once the lease is held; the channel holds them meanwhile.
    let (command_tx, command_rx) = match &config.forge {
        Some(_) => {
            let (tx, rx) = tokio::sync::mpsc::channel(crate::commands::QUEUE);
            (Some(tx), Some(rx))
        }
        None => (None, None),
    };
    // One watch of the apps and one of the pods per process, read by the dashboard (on every
    // replica) and by the engine and the write-back (on the leader).
    let start_watches =
        || crate::engine::Watches::start(&client, config.engine_namespace.as_deref());
    let watches = (config.listen.is_some() && config.dashboard).then(start_watches);
    if let Some(addr) = config.listen {
        let watches = watches.as_ref();
        serve_http(
            addr,
            &config,
            watched,
            fence.clone(),
            command_tx,
            &client,
            watches,
        )
        .await?;
    }
    // Only the leader writes: wait for the lease before starting anything that does.
    let lost = match &config.leader_election {
        Some(lease) => {
            let plain = kube::Client::try_from(kube_config)?;
            let keeper = crate::leader::acquire(plain, lease.clone(), fence.clone()).await?;
            Some(keeper)
        }
        None => {
            crate::metrics::global().leader.set(1);
            None
        }
    };
    for (runner, wake) in runners {
        tokio::spawn(runner.forever(wake));
    }
    let source_windows: crate::engine::SourceWindows = config
        .sources
        .iter()
        .map(|s| (s.name.clone(), s.upgrade_windows.clone()))
        .collect();
    let watches = watches.unwrap_or_else(start_watches);
    tokio::spawn(crate::engine::run_with(
        client.clone(),
        config.engine_namespace.clone(),
        crate::engine::Settings {
            source_windows: source_windows.clone(),
            prometheus_url: config.prometheus_url.clone(),
        },
        watches.clone(),
    ));
    tokio::spawn(crate::bestie::run_for_sources(
        client.clone(),
        config.engine_namespace.clone(),
        source_windows,
    ));
    let targets = if config.git_write_back {
        crate::report::targets(&config.sources, &config.cache_dir)?
    } else {
        Default::default()
    };
    let forge = match &config.forge {
        Some(g) => Some(crate::report::ForgeReporting::start(g, &config.sources)?),
        None => None,
    };
    if let (Some(f), Some(settings)) = (&forge, &config.previews) {
        crate::preview::spawn(
            &config.sources,
            &config.cache_dir,
            f.client(),
            f.reporter(),
            settings,
            &pull_request_wake,
        )?;
    }
    if let (Some(f), Some(rx)) = (&forge, command_rx) {
        crate::commands::spawn(
            client.clone(),
            config.engine_namespace.clone(),
            f.client().clone(),
            rx,
        );
    }
    tokio::spawn(crate::report::run(
        client.clone(),
        watches.apps,
        targets,
        forge,
        fence.clone(),
    ));
    match lost {
        Some(keeper) => tokio::select! {
            r = tokio::signal::ctrl_c() => { r?; info!("interrupted; stopping"); Ok(true) }
            lost = keeper => {
                let e = lost.context("the lease keeper stopped")?;
                error!(error = %e, "leadership lost");
                Err(e.into())
            }
        },
        None => {
            tokio::signal::ctrl_c().await?;
            info!("interrupted; stopping");
            Ok(true)
        }
    }
}

/// Serves `/healthz`, `/readyz`, `/metrics`, the dashboard (from `watches`, if any) and, with a
/// secret, `/webhook`, on every replica.
async fn serve_http(
    addr: SocketAddr,
    config: &RunConfig,
    watched: Vec<Watched>,
    fence: Arc<Fence>,
    commands: Option<tokio::sync::mpsc::Sender<crate::commands::CommentEvent>>,
    client: &kube::Client,
    watches: Option<&crate::engine::Watches>,
) -> anyhow::Result<()> {
    use axum::routing::get;
    let ready_fence = fence.clone();
    let dashboard = watches.map(|watches| {
        let links = crate::dashboard::Links {
            repos: config
                .sources
                .iter()
                .filter_map(|s| match &s.origin {
                    Origin::Git(spec) => {
                        Some((s.name.clone(), crate::dashboard::view::web_url(&spec.url)?))
                    }
                    Origin::Dir(_) => None,
                })
                .collect(),
            write_back: config.git_write_back,
        };
        crate::dashboard::Dashboard::start(
            client,
            crate::dashboard::Settings {
                namespace: config.engine_namespace.clone(),
                links,
            },
            watches,
        )
    });
    let mut app = axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let fence = ready_fence.clone();
                async move {
                    if fence.is_leader() {
                        "ok: leader\n".to_string()
                    } else {
                        match fence.leader_url() {
                            Some(url) => format!("ok: standby; the leader is at {url}\n"),
                            None => "ok: standby\n".to_string(),
                        }
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(|| async {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    crate::metrics::global().render(),
                )
            }),
        );
    match &config.webhook_secret {
        Some(secret) => {
            let forwarding = config
                .leader_election
                .as_ref()
                .map(|lease| webhook::Forwarding {
                    fence: fence.clone(),
                    identity: lease.identity.clone(),
                });
            app = app.merge(webhook::router_with_commands(
                secret.clone(),
                watched,
                webhook::DEFAULT_MAX_BODY,
                forwarding,
                commands,
            ));
        }
        None => warn!("no webhook secret configured: push webhooks are off, polling only"),
    }
    let served = match dashboard {
        Some(d) => {
            app = app.merge(d.router());
            "the dashboard (/), /healthz, /readyz, /metrics and webhooks"
        }
        None => "/healthz, /readyz, /metrics and webhooks",
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("listening on {addr}"))?;
    // The address bound (with port 0, the one the system picked): where to point a browser.
    let bound = listener.local_addr().unwrap_or(addr);
    info!(addr = %bound, "serving {served}");
    tokio::spawn(serve(listener, app, HEADER_READ_TIMEOUT));
    Ok(())
}

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one connection may stay open, whatever it does.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(300);

/// Serves `app` over HTTP/1.1 with deadlines, so that slow or silent clients cannot hold connections
/// (and memory) for ever: headers within `header_timeout` (which also closes a keep-alive connection
/// idle that long), a body within the handler's own deadline (the webhook's), a whole connection
/// within [`CONNECTION_LIFETIME`] (then it is closed after the request in flight).
pub async fn serve(listener: tokio::net::TcpListener, app: axum::Router, header_timeout: Duration) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone().map_request(
            |r: axum::http::Request<hyper::body::Incoming>| r.map(axum::body::Body::new),
        ));
        tokio::spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let mut connection =
                std::pin::pin!(builder.serve_connection(TokioIo::new(stream), service));
            let ended = tokio::select! {
                r = connection.as_mut() => r,
                () = tokio::time::sleep(CONNECTION_LIFETIME) => {
                    // Finish the request in flight, if any, then close.
                    connection.as_mut().graceful_shutdown();
                    tokio::time::timeout(header_timeout, connection.as_mut())
                        .await
                        .unwrap_or(Ok(()))
                }
            };
            if let Err(e) = ended {
                debug!(error = %e, "HTTP connection ended with an error");
            }
        });
    }
}

/// One source's loop and its state between runs.
struct SourceRunner {
    config: SourceConfig,
    cluster: Cluster,
    git: Option<Arc<std::sync::Mutex<GitSource>>>,
    last_applied: Option<String>,
    /// The last revision read: its findings were logged once, not at every interval.
    last_read: Option<String>,
    last_seen: Option<git::Oid>,
    grace: Duration,
}

impl SourceRunner {
    fn new(
        config: SourceConfig,
        cluster: Cluster,
        run: &RunConfig,
    ) -> anyhow::Result<SourceRunner> {
        let git = match &config.origin {
            Origin::Git(spec) => Some(Arc::new(std::sync::Mutex::new(GitSource::open(
                spec.clone(),
                &run.cache_dir,
            )?))),
            Origin::Dir(_) => None,
        };
        Ok(SourceRunner {
            config,
            cluster,
            git,
            last_applied: None,
            last_read: None,
            last_seen: None,
            grace: run.grace,
        })
    }

    async fn once(mut self) -> bool {
        let span = info_span!("sync", source = %self.config.name);
        match self.sync().instrument(span).await {
            Ok(outcome) => outcome.errors == 0,
            Err(e) => {
                error!(source = %self.config.name, error = %e, "sync failed");
                false
            }
        }
    }

    /// Writes `SourceReady` to every object of this source. Called only when the state flips.
    async fn report_source(&self, ready: bool, reason: &str, message: &str) {
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        );
        let condition = sync::source_ready_condition(ready, reason, message, now);
        let keys: Vec<_> = match self.cluster.live_of_source(&self.config.name).await {
            Ok(live) => live.into_iter().map(|l| l.key).collect(),
            Err(e) => {
                warn!(error = %e, "cannot list the source's objects to report SourceReady");
                return;
            }
        };
        match self
            .cluster
            .set_condition(&keys, sync::SOURCE_FIELD_MANAGER, &condition)
            .await
        {
            Ok(()) => info!(ready, reason, objects = keys.len(), "SourceReady reported"),
            Err(e) => warn!(error = %e, "reporting SourceReady failed"),
        }
    }

    async fn forever(mut self, wake: Arc<Notify>) {
        let mut failing_since: Option<Instant> = None;
        // After a restart, an earlier SourceReady=False must still be cleared once the source reads.
        let mut reported_down = self.cluster.source_reported_down(&self.config.name).await;
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(300));
        loop {
            let span = info_span!("sync", source = %self.config.name);
            let wait = match self.sync().instrument(span).await {
                Ok(_) => {
                    if failing_since.take().is_some() {
                        info!(source = %self.config.name, "source recovered");
                    }
                    if reported_down {
                        self.report_source(true, "Fetched", "the source is read and applied again")
                            .await;
                        reported_down = false;
                    }
                    backoff.reset();
                    spread(self.config.poll_interval)
                }
                Err(e) => {
                    let reason = e
                        .downcast_ref::<git::GitError>()
                        .map_or("SyncFailed", git::GitError::reason);
                    crate::metrics::global()
                        .git_failures
                        .get_or_create(&crate::metrics::labels(&[
                            ("source", self.config.name.as_str()),
                            ("reason", reason),
                        ]))
                        .inc();
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    // A stalled error (credentials, host key, limits, path) does not heal by retrying
                    // fast: it is reported at once and retried at the poll interval.
                    let stalled = e
                        .downcast_ref::<git::GitError>()
                        .is_some_and(|g| g.kind() == git::ErrorKind::Stalled);
                    let wait = if stalled {
                        spread(self.config.poll_interval)
                    } else {
                        backoff.next_wait()
                    };
                    if stalled || since.elapsed() >= self.grace {
                        error!(source = %self.config.name, error = %e, failing_for = ?since.elapsed(),
                            retry_in = ?wait, "source unavailable; the last applied state stays in force");
                        if !reported_down {
                            let reason = e
                                .downcast_ref::<git::GitError>()
                                .map_or("SyncFailed", git::GitError::reason);
                            self.report_source(false, reason, &format!("{e:#}")).await;
                            reported_down = true;
                        }
                    } else {
                        warn!(source = %self.config.name, error = %e, retry_in = ?wait, "sync failed; retrying");
                    }
                    wait
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = wake.notified() => info!(source = %self.config.name, "woken by a webhook or a saved file"),
            }
        }
    }

    fn count_apply(&self, action: &str) {
        crate::metrics::global()
            .sync_applies
            .get_or_create(&crate::metrics::labels(&[
                ("source", self.config.name.as_str()),
                ("action", action),
            ]))
            .inc();
    }

    /// One pass of the pipeline.
    async fn sync(&mut self) -> anyhow::Result<SyncOutcome> {
        let prepared = self.prepare().await?;
        self.apply(prepared).await
    }

    /// fetch → parse and validate → observe → plan → attribute.
    async fn prepare(&mut self) -> anyhow::Result<Prepared> {
        // fetch
        let (revision, files, refused, attributed) = match (&self.config.origin, &self.git) {
            (Origin::Git(_), Some(git)) => {
                let git = git.clone();
                let last_seen = self.last_seen;
                let started = Instant::now();
                let source = [("source", self.config.name.as_str())];
                let poll = tokio::task::spawn_blocking({
                    let git = git.clone();
                    move || git.lock().expect("git source lock").poll(last_seen)
                })
                .await?;
                let m = crate::metrics::global();
                m.git_poll_duration
                    .get_or_create(&crate::metrics::labels(&source))
                    .observe(started.elapsed().as_secs_f64());
                let result = match &poll {
                    Ok(Poll::Unchanged(_)) => "unchanged",
                    Ok(Poll::Changed { .. }) => "changed",
                    Err(_) => "error",
                };
                m.git_polls
                    .get_or_create(&crate::metrics::labels(&[source[0], ("result", result)]))
                    .inc();
                let poll = poll?;
                let revision = match poll {
                    Poll::Unchanged(oid) => oid,
                    Poll::Changed {
                        revision,
                        force_pushed,
                        previous,
                        ..
                    } => {
                        if force_pushed {
                            warn!(?previous, %revision, "the branch was force-pushed; reading the new tip");
                        }
                        revision
                    }
                };
                self.last_seen = Some(revision);
                // An unchanged revision is read and planned all the same: the plan finds drift (an
                // object edited or deleted by hand) and costs no write when there is none.
                let snapshot = tokio::task::spawn_blocking({
                    let git = git.clone();
                    move || git.lock().expect("git source lock").read_tree(revision)
                })
                .await??;
                let attributed = Attributed::ToCommits { git, tip: revision };
                (
                    revision.to_string(),
                    snapshot.files,
                    snapshot.refused,
                    attributed,
                )
            }
            (Origin::Dir(dir), _) => {
                let (revision, files, refused) = read_dir(dir)?;
                (revision, files, refused, Attributed::ToContent)
            }
            (Origin::Git(_), None) => unreachable!("a git origin always has a git source"),
        };
        // A revision's findings are logged when it is first read, not again at every interval.
        let fresh = self.last_read.as_deref() != Some(revision.as_str());
        self.last_read = Some(revision.clone());

        // parse and validate
        let report = validate_files(
            files.iter().map(|(p, t)| (p.as_str(), t.as_str())),
            &Limits::default(),
        );
        let mut invalid_files: BTreeSet<String> =
            report.findings.iter().map(|f| f.file.clone()).collect();
        for finding in report.findings.iter().filter(|_| fresh) {
            warn!(file = %finding.file, finding = %finding, "invalid definition; its last good state stays in force");
        }
        for (path, why) in &refused {
            if fresh {
                warn!(file = %path, reason = %why, "file not read");
            }
            invalid_files.insert(path.clone());
        }
        let mut desired: Vec<_> = report
            .definitions
            .iter()
            .map(|d| {
                sync::desired_from(
                    d,
                    &self.config.name,
                    &revision,
                    &self.config.default_namespace,
                )
            })
            .collect();
        // One object defined twice once namespaces are defaulted (`shop` and `shop` in the default
        // namespace): neither copy is applied, and both files count as invalid.
        let mut seen = std::collections::BTreeMap::new();
        for d in &desired {
            seen.entry(d.key.clone())
                .or_insert_with(Vec::new)
                .push(d.source_path.clone());
        }
        for (key, files) in seen.into_iter().filter(|(_, f)| f.len() > 1) {
            if fresh {
                warn!(%key, files = ?files, "defined twice (once the default namespace is applied); neither copy is applied");
            }
            invalid_files.extend(files);
            desired.retain(|d| d.key != key);
        }

        // observe, plan, attribute
        let live = self.cluster.live_of_source(&self.config.name).await?;
        let mut plan = sync::plan_sync(&desired, &invalid_files, &live, self.config.policy);
        match attributed {
            Attributed::ToCommits { git, tip } => {
                self.attribute(&mut plan, &live, git, tip).await?
            }
            Attributed::ToContent => {}
        }
        Ok(Prepared {
            fresh,
            revision,
            plan,
            invalid_files,
            findings: report.findings.iter().map(ToString::to_string).collect(),
            refused,
        })
    }

    /// Names, in each object the plan creates or updates, the newest commit that changed its
    /// definition instead of the tip. Objects left alone and drift cost no walk; so does a plan
    /// that changes nothing.
    async fn attribute(
        &self,
        plan: &mut SyncPlan,
        live: &[Live],
        git: Arc<std::sync::Mutex<GitSource>>,
        tip: git::Oid,
    ) -> anyhow::Result<()> {
        let targets = sync::attribution::targets(plan, live);
        if targets.is_empty() {
            return Ok(());
        }
        let source = self.config.name.clone();
        let namespace = self.config.default_namespace.clone();
        let found = tokio::task::spawn_blocking(move || {
            let history = git.lock().expect("git source lock").history()?;
            attribution::walk(&history, tip, &targets, &source, &namespace)
        })
        .await??;
        let mut named = BTreeMap::new();
        let mut beyond_bound = Vec::new();
        for (key, attribution) in found {
            match attribution {
                Attribution::ChangedBy(commit) | Attribution::Unchanged(commit) => {
                    named.insert(key, commit.to_string());
                }
                Attribution::NotFound(NotFound::BeyondBound) => beyond_bound.push(key.to_string()),
                Attribution::NotFound(NotFound::NotDefinedAtTip) => {
                    warn!(%key, %tip, "the tip's file does not define this object as read for attribution; it names the tip")
                }
            }
        }
        if !beyond_bound.is_empty() {
            info!(objects = ?beyond_bound, bound = WALK_BOUND, %tip,
                "the commit that changed these definitions is further back than the bound (or history was rewritten): they name the tip");
        }
        sync::attribution::set_revisions(plan, &named);
        Ok(())
    }

    /// apply → report.
    async fn apply(&mut self, prepared: Prepared) -> anyhow::Result<SyncOutcome> {
        let Prepared {
            fresh,
            revision,
            plan,
            invalid_files,
            ..
        } = prepared;
        let mut outcome = SyncOutcome {
            revision: revision.clone(),
            unchanged: plan.unchanged,
            invalid_files: invalid_files.len(),
            ..SyncOutcome::default()
        };
        for kept in plan.kept.iter().filter(|_| fresh) {
            match kept {
                Kept::InvalidFile { key, file } => info!(%key, %file, "kept: its file is invalid"),
                Kept::PruneDisabled { key } => {
                    info!(%key, "no longer in git; not pruned (prune is off)")
                }
                Kept::EmptyRevisionGuard { key } => warn!(%key,
                    "not pruned: this revision defines nothing at all, which looks like a mistake (allow it with allowEmpty)"),
            }
        }

        // apply
        for action in &plan.actions {
            let result = match action {
                SyncAction::Apply { desired, reason } => {
                    let r = self.cluster.apply(desired).await;
                    if r.is_ok() {
                        let what = match reason {
                            ApplyReason::Create => {
                                outcome.created += 1;
                                "create"
                            }
                            ApplyReason::Update => {
                                outcome.updated += 1;
                                "update"
                            }
                            ApplyReason::Drift => {
                                outcome.updated += 1;
                                warn!(key = %desired.key, "changed in the cluster, not in git: put back as git says");
                                "drift"
                            }
                        };
                        self.count_apply(what);
                        let named = desired.revision().unwrap_or(&revision);
                        info!(key = %desired.key, ?reason, revision = %named, tip = %revision, "applied");
                    }
                    r
                }
                SyncAction::Prune { key } => {
                    let r = self.cluster.prune(key).await;
                    if r.is_ok() {
                        outcome.pruned += 1;
                        self.count_apply("prune");
                        info!(%key, "pruned: its file was removed from git");
                    }
                    r
                }
            };
            if let Err(e) = result {
                outcome.errors += 1;
                error!(error = %e, reason = e.reason(), "apply failed");
            }
        }
        let quiet = outcome.created + outcome.updated + outcome.pruned + outcome.errors == 0
            && self.last_applied.as_deref() == Some(revision.as_str());
        if outcome.errors == 0 {
            self.last_applied = Some(revision.clone());
        }
        if quiet {
            debug!(revision = %outcome.revision, unchanged = outcome.unchanged, "in sync");
        } else {
            info!(revision = %outcome.revision, created = outcome.created, updated = outcome.updated,
                pruned = outcome.pruned, unchanged = outcome.unchanged, invalid_files = outcome.invalid_files,
                errors = outcome.errors, "synced");
        }
        Ok(outcome)
    }
}

type Read = (String, Vec<(String, String)>, Vec<(String, String)>);

/// Which revision an applied object names.
enum Attributed {
    /// The newest commit that changed its definition, found in the git source's history.
    ToCommits {
        git: Arc<std::sync::Mutex<GitSource>>,
        tip: git::Oid,
    },
    /// The directory's content hash, as read: a local directory has no history.
    ToContent,
}

/// What one source's current revision asks for, before anything is applied.
#[derive(Debug)]
pub struct Prepared {
    /// The revision is read for the first time (not a drift check of one already read).
    pub fresh: bool,
    pub revision: String,
    pub plan: sync::SyncPlan,
    pub invalid_files: BTreeSet<String>,
    /// Every validation finding, rendered as `file:line:col: ...`.
    pub findings: Vec<String>,
    /// Files not read (symlinks, submodules, limits), with why.
    pub refused: Vec<(String, String)>,
}

/// `bosun plan`: what each source's current revision would change in the cluster, changing nothing.
///
/// # Errors
/// When a source cannot be read or the cluster cannot be listed.
pub async fn plan(config: RunConfig) -> anyhow::Result<Vec<(String, Prepared)>> {
    let cluster = Cluster::connect().await?;
    let mut out = Vec::new();
    for source in config.sources.clone() {
        let name = source.name.clone();
        let mut runner = SourceRunner::new(source, cluster.clone(), &config)?;
        out.push((name, runner.prepare().await?));
    }
    Ok(out)
}

/// Reads a local directory as a source: files relative to it, the revision a hash of their contents.
fn read_dir(dir: &std::path::Path) -> anyhow::Result<Read> {
    let found = crate::files::collect(&[dir.to_path_buf()], Limits::default().max_bytes)?;
    let mut files = Vec::new();
    let mut refused = Vec::new();
    for f in found {
        let rel = f
            .path
            .strip_prefix(dir)
            .unwrap_or(&f.path)
            .display()
            .to_string();
        match f.text {
            Ok(text) => files.push((rel, text)),
            Err(why) => refused.push((rel, why)),
        }
    }
    let revision = sync::hash_json(&serde_json::json!(files));
    Ok((format!("dir-{revision}"), files, refused))
}
