//! The daemon's configuration, as `bosun run` reads it from flags, the environment and a config file
//! (`cli::run`): its sources, where each reads from, and how Bosun reports to the forge. Plain data: the
//! source loop (`run`) and the write-back controller (`report`) both read it, neither owns it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bosun_core::sync::SyncPolicy;

use crate::git;
use crate::webhook::WebhookSecret;

/// Where a source reads its definitions.
#[derive(Clone, Debug)]
pub enum Origin {
    Git(git::RepoSpec),
    /// A local directory, re-read when a file in it is saved (for local development).
    Dir(PathBuf),
}

/// One source: where definitions come from and how they are applied.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// Names the source in labels (`bosun.dev/source`), logs and metrics.
    pub name: String,
    pub origin: Origin,
    pub policy: SyncPolicy,
    /// The namespace of definitions that name none.
    pub default_namespace: String,
    pub poll_interval: Duration,
    /// Upgrade windows of every app of the source (a platform team's change freeze), combined with
    /// each app's own `spec.upgradeWindows`.
    pub upgrade_windows: Vec<bosun_core::model::UpgradeWindow>,
}

/// The whole daemon's configuration.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub sources: Vec<SourceConfig>,
    pub cache_dir: PathBuf,
    pub listen: Option<SocketAddr>,
    pub webhook_secret: Option<WebhookSecret>,
    /// How long failures may last before they are reported as an outage.
    pub grace: Duration,
    /// Sync every source once and exit (exit code 1 when any failed).
    pub once: bool,
    /// The namespace the upgrade engine acts in; `None`: every namespace.
    pub engine_namespace: Option<String>,
    /// Leader election among replicas; `None`: this process is the only one and always writes.
    pub leader_election: Option<crate::leader::LeaseConfig>,
    /// Write rollback commits and notes to git sources.
    pub git_write_back: bool,
    /// Commit statuses and the pull request comment on the forge; `None`: off.
    pub forge: Option<ForgeSettings>,
    /// Plan previews on open pull requests (with a forge only); `None`: off.
    pub previews: Option<crate::preview::PreviewSettings>,
    /// The Prometheus a metric of an analysis asks when it names none.
    pub prometheus_url: Option<String>,
    /// Serve the read-only dashboard on the listen address.
    pub dashboard: bool,
}

/// How Bosun reports to the forge (GitHub, Gitea or GitLab).
#[derive(Clone, Debug)]
pub struct ForgeSettings {
    pub config: crate::forge::ForgeConfig,
    /// The commit status link; `{namespace}`, `{app}` and `{sha}` are replaced.
    pub target_url: Option<String>,
    pub writes_per_minute: u32,
}
