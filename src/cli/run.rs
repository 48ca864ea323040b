//! `bosun run`: configuration from flags, environment variables (`BOSUN_*`) and a config file with the
//! same names, then the daemon.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bosun_core::sync::SyncPolicy;
use serde::Deserialize;

use crate::config::{Origin, RunConfig, SourceConfig};
use crate::git::{Auth, RepoSpec, Secret, SourceLimits};
use crate::webhook::WebhookSecret;

/// The flags of `bosun run` (each also read from the environment variable named beside it).
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// A YAML file of sources and settings (see README: "Configuring bosun run").
    #[arg(long, env = "BOSUN_CONFIG")]
    pub config: Option<PathBuf>,
    /// The repository to watch: https://, ssh://, user@host:path, git://, file:// or a local path.
    #[arg(long, env = "BOSUN_REPO", conflicts_with = "dir")]
    pub repo: Option<String>,
    /// A local directory to watch instead of a repository (reacts to saved files).
    #[arg(long, env = "BOSUN_DIR")]
    pub dir: Option<PathBuf>,
    #[arg(long, env = "BOSUN_BRANCH", default_value = "main")]
    pub branch: String,
    /// The directory of the repository that holds the definitions.
    #[arg(long, env = "BOSUN_PATH", default_value = "")]
    pub path: String,
    /// The source's name (label bosun.dev/source). Defaults to the repository's or directory's name.
    #[arg(long, env = "BOSUN_SOURCE_NAME")]
    pub name: Option<String>,
    /// Delete resources whose files were removed from git.
    #[arg(long, env = "BOSUN_PRUNE")]
    pub prune: bool,
    /// Let a revision that defines nothing prune everything (off: such a revision prunes nothing).
    #[arg(long, env = "BOSUN_ALLOW_EMPTY")]
    pub allow_empty: bool,
    /// The namespace of definitions that name none.
    #[arg(long, env = "BOSUN_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Seconds between polls (jittered by ±20 %).
    #[arg(long, env = "BOSUN_POLL_INTERVAL", default_value_t = 60)]
    pub poll_interval: u64,
    /// HTTP basic auth user for the repository.
    #[arg(long, env = "BOSUN_GIT_USERNAME")]
    pub git_username: Option<String>,
    /// A file holding the HTTP password (or set BOSUN_GIT_PASSWORD).
    #[arg(long, env = "BOSUN_GIT_PASSWORD_FILE")]
    pub git_password_file: Option<PathBuf>,
    /// A file holding a forge token (or set BOSUN_GIT_TOKEN).
    #[arg(long, env = "BOSUN_GIT_TOKEN_FILE")]
    pub git_token_file: Option<PathBuf>,
    /// An SSH private key for ssh:// repositories.
    #[arg(long, env = "BOSUN_SSH_KEY_FILE")]
    pub ssh_key_file: Option<PathBuf>,
    /// A file holding the SSH private key's passphrase, when it has one.
    #[arg(long, env = "BOSUN_SSH_KEY_PASSPHRASE_FILE")]
    pub ssh_key_passphrase_file: Option<PathBuf>,
    /// The known_hosts file the SSH server's host key must be in.
    #[arg(long, env = "BOSUN_KNOWN_HOSTS_FILE")]
    pub known_hosts_file: Option<PathBuf>,
    /// Where fetched repositories are cached [default: /tmp/bosun-cache].
    #[arg(long, env = "BOSUN_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Address for webhooks and /healthz [default: 127.0.0.1:8080].
    #[arg(long, env = "BOSUN_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// A file holding the webhook secret; without one, webhooks are off.
    #[arg(long, env = "BOSUN_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Seconds of failure before a source is reported unavailable [default: 120].
    #[arg(long, env = "BOSUN_GRACE")]
    pub grace: Option<u64>,
    /// Seconds one fetch may take.
    #[arg(long, env = "BOSUN_FETCH_TIMEOUT", default_value_t = 60)]
    pub fetch_timeout: u64,
    /// Most YAML files read from one revision.
    #[arg(long, env = "BOSUN_MAX_FILES", default_value_t = 5000)]
    pub max_files: usize,
    /// Most bytes read from one revision.
    #[arg(long, env = "BOSUN_MAX_TOTAL_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_total_bytes: u64,
    /// Run the upgrade engine only for ManagedApplications of this namespace (default: every namespace).
    #[arg(long, env = "BOSUN_ENGINE_NAMESPACE")]
    pub engine_namespace: Option<String>,
    /// Sync every source once and exit: 0 when all applied, 1 otherwise.
    #[arg(long)]
    pub once: bool,
    /// Write back to git sources: a rollback commit when an upgrade was rolled back, and a note under
    /// refs/notes/bosun on each source commit when its upgrade ended.
    #[arg(long, env = "BOSUN_GIT_WRITE_BACK", default_value_t = true, action = clap::ArgAction::Set)]
    pub git_write_back: bool,
    /// The forge Bosun reports to: `github`, `gitea` (Forgejo too) or `gitlab` (default: told by the
    /// repository's host: `gitlab` in it is GitLab; `gitea`, `forgejo` or codeberg.org is Gitea; else
    /// GitHub).
    #[arg(long, env = "BOSUN_FORGE")]
    pub forge: Option<String>,
    /// A file holding the forge's access token: turns on commit statuses and the pull request comment.
    #[arg(long, alias = "github-token-file", env = "BOSUN_FORGE_TOKEN_FILE")]
    pub forge_token_file: Option<PathBuf>,
    /// The forge's API (default: from the repository URL: https://api.github.com for github.com,
    /// https://HOST/api/v3 for GitHub Enterprise Server, https://HOST/api/v1 for Gitea,
    /// https://HOST/api/v4 for GitLab).
    #[arg(long, alias = "github-api-url", env = "BOSUN_FORGE_API_URL")]
    pub forge_api_url: Option<String>,
    /// The repository on the forge, `owner/name` (GitLab: `group/subgroup/project`; default: from the
    /// first git source's --repo URL).
    #[arg(long, alias = "github-repo", env = "BOSUN_FORGE_REPO")]
    pub forge_repo: Option<String>,
    /// Plan previews on open pull requests into a watched branch (with a forge token): a comment of
    /// what merging would do, and the commit status `bosun/plan` on the head.
    #[arg(long, env = "BOSUN_PLAN_PREVIEWS", default_value_t = true, action = clap::ArgAction::Set)]
    pub plan_previews: bool,
    /// Seconds between listings of the open pull requests (a pull request webhook previews at once).
    #[arg(long, env = "BOSUN_PREVIEW_INTERVAL", default_value_t = 60)]
    pub preview_interval: u64,
    /// The commit status link; `{namespace}`, `{app}` and `{sha}` are replaced.
    #[arg(long, env = "BOSUN_STATUS_TARGET_URL")]
    pub status_target_url: Option<String>,
    /// Content-creating forge requests per minute at most (GitHub allows about 80).
    #[arg(
        long,
        alias = "github-writes-per-minute",
        env = "BOSUN_FORGE_WRITES_PER_MINUTE",
        default_value_t = 80
    )]
    pub forge_writes_per_minute: u32,
    /// Elect a leader among replicas on a Lease: only the holder writes to the cluster, git and GitHub.
    #[arg(long, env = "BOSUN_LEADER_ELECT")]
    pub leader_elect: bool,
    /// The namespace of the Lease (default: $POD_NAMESPACE, else bosun-system).
    #[arg(long, env = "BOSUN_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// The name of the Lease.
    #[arg(long, env = "BOSUN_LEASE_NAME", default_value = "bosun")]
    pub lease_name: String,
    /// Seconds a leader's lease lasts without renewal: a standby takes over after this long.
    #[arg(long, env = "BOSUN_LEASE_DURATION", default_value_t = 15)]
    pub lease_duration: u64,
    /// This replica's identity in the Lease (default: $POD_NAME, else the host name and process id).
    #[arg(long, env = "BOSUN_IDENTITY")]
    pub identity: Option<String>,
    /// Where the other replicas reach this one's HTTP server, written to the Lease while it leads: a
    /// standby forwards the webhooks it receives there (default: http://$POD_IP:<listen port>, else
    /// the --listen address unless it is 0.0.0.0 or ::).
    #[arg(long, env = "BOSUN_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// The Prometheus server a metric of an app's analysis asks when it names none
    /// (`http://prometheus.monitoring:9090`).
    #[arg(long, env = "BOSUN_PROMETHEUS_URL")]
    pub prometheus_url: Option<String>,
    /// Serve the read-only dashboard (`/`, one page per app, live updates) on the listen address
    /// [default: true; also the config file's `dashboard`].
    #[arg(long, env = "BOSUN_DASHBOARD", action = clap::ArgAction::Set)]
    pub dashboard: Option<bool>,
}

/// The config file: the same settings as the flags, and any number of sources.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    forge: Option<String>,
    #[serde(alias = "githubTokenFile")]
    forge_token_file: Option<PathBuf>,
    #[serde(alias = "githubApiUrl")]
    forge_api_url: Option<String>,
    #[serde(alias = "githubRepo")]
    forge_repo: Option<String>,
    status_target_url: Option<String>,
    prometheus_url: Option<String>,
    webhook_secret_file: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    grace: Option<u64>,
    dashboard: Option<bool>,
    #[serde(default)]
    sources: Vec<FileSource>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FileSource {
    name: Option<String>,
    repo: Option<String>,
    dir: Option<PathBuf>,
    branch: Option<String>,
    path: Option<String>,
    #[serde(default)]
    prune: bool,
    #[serde(default)]
    allow_empty: bool,
    namespace: Option<String>,
    poll_interval: Option<u64>,
    git_username: Option<String>,
    git_password_file: Option<PathBuf>,
    git_token_file: Option<PathBuf>,
    ssh_key_file: Option<PathBuf>,
    ssh_key_passphrase_file: Option<PathBuf>,
    known_hosts_file: Option<PathBuf>,
    fetch_timeout: Option<u64>,
    max_files: Option<usize>,
    max_total_bytes: Option<u64>,
    /// Upgrade windows of every app of this source, combined with each app's own.
    #[serde(default)]
    upgrade_windows: Vec<bosun_core::model::UpgradeWindow>,
}

fn read_secret(path: &Path, what: &str) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the {what} from {}", path.display()))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

fn name_from(url_or_dir: &str) -> String {
    let last = url_or_dir
        .trim_end_matches('/')
        .rsplit(['/', ':'])
        .next()
        .unwrap_or("source");
    let name: String = last
        .trim_end_matches(".git")
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() {
        "source".into()
    } else {
        name
    }
}

impl FileSource {
    fn from_args(a: &RunArgs) -> FileSource {
        FileSource {
            name: a.name.clone(),
            repo: a.repo.clone(),
            dir: a.dir.clone(),
            branch: Some(a.branch.clone()),
            path: Some(a.path.clone()),
            prune: a.prune,
            allow_empty: a.allow_empty,
            namespace: Some(a.namespace.clone()),
            poll_interval: Some(a.poll_interval),
            git_username: a.git_username.clone(),
            git_password_file: a.git_password_file.clone(),
            git_token_file: a.git_token_file.clone(),
            ssh_key_file: a.ssh_key_file.clone(),
            ssh_key_passphrase_file: a.ssh_key_passphrase_file.clone(),
            known_hosts_file: a.known_hosts_file.clone(),
            fetch_timeout: Some(a.fetch_timeout),
            max_files: Some(a.max_files),
            max_total_bytes: Some(a.max_total_bytes),
            upgrade_windows: Vec::new(),
        }
    }

    /// `from_flags`: only the source given by flags may take credentials from the environment
    /// (`BOSUN_GIT_TOKEN`, `BOSUN_GIT_PASSWORD`); a config-file source names its own.
    fn into_config(self, index: usize, from_flags: bool) -> anyhow::Result<SourceConfig> {
        let at = format!("source {}", index + 1);
        let (origin, default_name) = match (self.repo, self.dir) {
            (Some(url), None) => {
                let auth = match (&self.git_token_file, &self.git_password_file, &self.ssh_key_file) {
                    (Some(f), None, None) => Auth::Token(Secret::from(read_secret(f, "git token")?)),
                    (None, Some(f), None) => Auth::Basic {
                        username: self.git_username.clone().unwrap_or_else(|| "git".into()),
                        password: Secret::from(read_secret(f, "git password")?),
                    },
                    (None, None, Some(key)) => Auth::SshKey {
                        // None given: the URL's user (ssh://deploy@host/...), else `git`.
                        username: self.git_username.clone().unwrap_or_default(),
                        private_key: key.clone(),
                        passphrase: match &self.ssh_key_passphrase_file {
                            Some(f) => Some(Secret::from(read_secret(f, "SSH key passphrase")?)),
                            None => None,
                        },
                        known_hosts: self.known_hosts_file.clone().with_context(|| {
                            format!("{at}: an SSH key needs knownHostsFile (--known-hosts-file): Bosun checks the server's host key")
                        })?,
                    },
                    (None, None, None) if !from_flags => Auth::None,
                    (None, None, None) => match (std::env::var("BOSUN_GIT_TOKEN"), std::env::var("BOSUN_GIT_PASSWORD")) {
                        (Ok(t), _) => Auth::Token(Secret::from(t)),
                        (_, Ok(p)) => Auth::Basic {
                            username: self.git_username.clone().unwrap_or_else(|| "git".into()),
                            password: Secret::from(p),
                        },
                        _ => Auth::None,
                    },
                    _ => bail!("{at}: give one of gitTokenFile, gitPasswordFile, sshKeyFile"),
                };
                let defaults = SourceLimits::default();
                let spec = RepoSpec {
                    url: url.clone(),
                    branch: self.branch.unwrap_or_else(|| "main".into()),
                    path: self.path.unwrap_or_default(),
                    auth,
                    limits: SourceLimits {
                        max_files: self.max_files.unwrap_or(defaults.max_files),
                        max_total_bytes: self.max_total_bytes.unwrap_or(defaults.max_total_bytes),
                        max_file_bytes: defaults.max_file_bytes,
                        fetch_timeout: self
                            .fetch_timeout
                            .map_or(defaults.fetch_timeout, Duration::from_secs),
                    },
                };
                (Origin::Git(spec), name_from(&url))
            }
            (None, Some(dir)) => {
                let name = name_from(&dir.display().to_string());
                (Origin::Dir(dir), name)
            }
            (Some(_), Some(_)) => bail!("{at}: give either repo or dir, not both"),
            (None, None) => bail!("{at}: give a repo (--repo) or a local dir (--dir)"),
        };
        let name = self.name.unwrap_or(default_name);
        for (n, w) in self.upgrade_windows.iter().enumerate() {
            if let Some((field, reason)) = bosun_core::window::problems(w).into_iter().next() {
                bail!("{at}: upgradeWindows[{n}].{field}: {reason}");
            }
        }
        if !bosun_core::names::is_dns1123_label(&name) {
            bail!(
                "{at}: the source name {name:?} must be a DNS label (it is used as a label value)"
            );
        }
        Ok(SourceConfig {
            name,
            origin,
            policy: SyncPolicy {
                prune: self.prune,
                allow_empty: self.allow_empty,
            },
            default_namespace: self.namespace.unwrap_or_else(|| "default".into()),
            poll_interval: Duration::from_secs(self.poll_interval.unwrap_or(60).max(1)),
            upgrade_windows: self.upgrade_windows,
        })
    }
}

/// Builds the daemon's configuration from the config file (if any) and the flags.
///
/// # Errors
/// A message naming the file, the source and the setting at fault.
pub fn config(args: &RunArgs) -> anyhow::Result<RunConfig> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let docs =
                bosun_core::yaml::parse_documents(&text, &bosun_core::yaml::Limits::default())
                    .with_context(|| format!("{}: not valid YAML", path.display()))?;
            let json = docs
                .into_iter()
                .find_map(|d| d.root)
                .map(|n| n.to_json())
                .unwrap_or_default();
            serde_json::from_value::<FileConfig>(json)
                .with_context(|| format!("{}: invalid configuration", path.display()))?
        }
        None => FileConfig::default(),
    };
    let mut sources: Vec<(FileSource, bool)> =
        file.sources.into_iter().map(|s| (s, false)).collect();
    if args.repo.is_some() || args.dir.is_some() {
        sources.push((FileSource::from_args(args), true));
    }
    if sources.is_empty() {
        bail!("nothing to watch: give --repo URL (or --dir PATH), or sources in --config FILE");
    }
    let sources: Vec<SourceConfig> = sources
        .into_iter()
        .enumerate()
        .map(|(i, (s, from_flags))| s.into_config(i, from_flags))
        .collect::<anyhow::Result<_>>()?;
    let mut names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!(
            "two sources are named {:?}: give each a name of its own",
            w[0]
        );
    }
    let secret_file = args
        .webhook_secret_file
        .clone()
        .or(file.webhook_secret_file);
    let webhook_secret = match secret_file {
        Some(f) => Some(read_secret(&f, "webhook secret")?),
        None => std::env::var("BOSUN_WEBHOOK_SECRET").ok(),
    };
    // An empty secret would accept anything: an empty X-Gitlab-Token, or an HMAC anyone can compute.
    if webhook_secret
        .as_deref()
        .is_some_and(|s| s.trim().is_empty())
    {
        bail!(
            "the webhook secret is empty: put a long random value in it, or give none to turn webhooks off"
        );
    }
    let webhook_secret = webhook_secret.map(|s| WebhookSecret::from(s.into_bytes()));
    let forge = match args.forge_token_file.clone().or(file.forge_token_file) {
        None => None,
        Some(token_file) => Some(forge_settings(
            args,
            &sources,
            token_file,
            file.forge,
            file.forge_repo,
            file.forge_api_url,
            file.status_target_url.clone(),
        )?),
    };
    let listen = args
        .listen
        .or(file.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    // A flag (or its environment variable) wins over the file, the file over the default.
    Ok(RunConfig {
        sources,
        cache_dir: args
            .cache_dir
            .clone()
            .or(file.cache_dir)
            .unwrap_or_else(|| PathBuf::from("/tmp/bosun-cache")),
        listen: Some(listen),
        webhook_secret,
        grace: Duration::from_secs(args.grace.or(file.grace).unwrap_or(120)),
        once: args.once,
        engine_namespace: args.engine_namespace.clone(),
        leader_election: args.leader_elect.then(|| lease_config(args, listen)),
        git_write_back: args.git_write_back,
        previews: (forge.is_some() && args.plan_previews).then(|| {
            crate::preview::PreviewSettings {
                interval: Duration::from_secs(args.preview_interval.max(1)),
                ..Default::default()
            }
        }),
        forge,
        prometheus_url: prometheus_url(args.prometheus_url.clone().or(file.prometheus_url))?,
        dashboard: args.dashboard.or(file.dashboard).unwrap_or(true),
    })
}

/// How Bosun reports to the forge: which forge (the flag, else the repository's host), the repository
/// (the flag, else the first git source's URL) and the API (the flag, else from the repository URL).
#[allow(clippy::too_many_arguments)]
fn forge_settings(
    args: &RunArgs,
    sources: &[SourceConfig],
    token_file: PathBuf,
    file_forge: Option<String>,
    file_repo: Option<String>,
    file_api_url: Option<String>,
    file_target_url: Option<String>,
) -> anyhow::Result<crate::config::ForgeSettings> {
    use crate::forge::{ForgeConfig, ForgeKind, RepoRef, token_from_file};
    let token = token_from_file(&token_file)?;
    let source_url = sources.iter().find_map(|s| match &s.origin {
        Origin::Git(spec) => Some(spec.url.clone()),
        Origin::Dir(_) => None,
    });
    let repo_text = args.forge_repo.clone().or(file_repo).or(source_url.clone());
    let Some(repo_text) = repo_text else {
        bail!("--forge-token-file is set but no repository: give --forge-repo OWNER/NAME");
    };
    let kind = match args.forge.clone().or(file_forge) {
        Some(word) => ForgeKind::parse(&word).map_err(|e| anyhow::anyhow!("--forge: {e}"))?,
        None => ForgeKind::of_url(&repo_text),
    };
    let repo = RepoRef::parse_for(kind, &repo_text)
        .with_context(|| format!("--forge-repo {:?}", crate::git::redact_url(&repo_text)))?;
    let api_url = match args.forge_api_url.clone().or(file_api_url) {
        Some(url) => url,
        None => match (
            kind,
            source_url.as_deref().and_then(|u| kind.api_url_for(u)),
        ) {
            (_, Some(url)) => url,
            (ForgeKind::GitHub, None) => crate::forge::DEFAULT_API_URL.into(),
            (ForgeKind::GitLab, None) => "https://gitlab.com/api/v4".into(),
            (ForgeKind::Gitea, None) => {
                bail!("--forge gitea needs the API URL: give --forge-api-url https://HOST/api/v1")
            }
        },
    };
    Ok(crate::config::ForgeSettings {
        config: ForgeConfig::of(kind, &api_url, token, repo),
        target_url: args.status_target_url.clone().or(file_target_url),
        writes_per_minute: args.forge_writes_per_minute.max(1),
    })
}

/// The daemon's default Prometheus, checked as `bosun validate` checks an app's own address.
fn prometheus_url(url: Option<String>) -> anyhow::Result<Option<String>> {
    match url {
        Some(u) if !u.starts_with("http://") => bail!(
            "--prometheus-url {u:?}: Prometheus is asked over plain HTTP; write http://HOST:PORT"
        ),
        other => Ok(other.map(|u| u.trim_end_matches('/').to_string())),
    }
}

/// The URL other replicas reach this one at: the flag, else the pod's IP, else the listen address.
fn advertise_url(flag: Option<&str>, pod_ip: Option<&str>, listen: SocketAddr) -> Option<String> {
    if let Some(url) = flag {
        return Some(url.trim_end_matches('/').to_string());
    }
    let port = listen.port();
    if let Some(ip) = pod_ip.and_then(|ip| ip.trim().parse::<std::net::IpAddr>().ok()) {
        return Some(format!("http://{}", SocketAddr::new(ip, port)));
    }
    (!listen.ip().is_unspecified()).then(|| format!("http://{listen}"))
}

fn lease_config(args: &RunArgs, listen: SocketAddr) -> crate::leader::LeaseConfig {
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("POD_NAME").ok())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "bosun".into());
            format!("{host}-{}", std::process::id())
        });
    crate::leader::LeaseConfig {
        namespace: args
            .lease_namespace
            .clone()
            .or_else(|| std::env::var("POD_NAMESPACE").ok())
            .unwrap_or_else(|| "bosun-system".into()),
        name: args.lease_name.clone(),
        identity,
        duration: Duration::from_secs(args.lease_duration.max(3)),
        url: advertise_url(
            args.advertise_url.as_deref(),
            std::env::var("POD_IP").ok().as_deref(),
            listen,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_advertised_url_is_the_flag_else_the_pod_ip_else_a_specific_listen_address() {
        let any: SocketAddr = "0.0.0.0:8080".parse().expect("an address");
        let local: SocketAddr = "127.0.0.1:9090".parse().expect("an address");
        assert_eq!(
            advertise_url(Some("http://bosun-0.bosun:8080/"), Some("10.0.0.7"), any).as_deref(),
            Some("http://bosun-0.bosun:8080")
        );
        assert_eq!(
            advertise_url(None, Some("10.0.0.7"), any).as_deref(),
            Some("http://10.0.0.7:8080")
        );
        assert_eq!(
            advertise_url(None, Some("fd00::7"), any).as_deref(),
            Some("http://[fd00::7]:8080")
        );
        assert_eq!(
            advertise_url(None, None, local).as_deref(),
            Some("http://127.0.0.1:9090")
        );
        assert_eq!(
            advertise_url(None, None, any),
            None,
            "0.0.0.0 reaches no one"
        );
    }

    fn config_from(text: &str) -> anyhow::Result<RunConfig> {
        config_with(text, &[])
    }

    /// The config of `bosun run --config FILE FLAGS...`, FILE holding `text`; `TOKEN` in it and in the
    /// flags is the path of a token file.
    fn config_with(text: &str, flags: &[&str]) -> anyhow::Result<RunConfig> {
        use clap::Parser;
        let dir = tempfile::tempdir().expect("a temporary directory");
        let token = dir.path().join("token");
        std::fs::write(&token, "t0ken\n").expect("write the token");
        let token = token.to_str().expect("a UTF-8 path");
        let path = dir.path().join("bosun.yaml");
        std::fs::write(&path, text.replace("TOKEN", token)).expect("write the config");
        let mut argv = vec![
            "bosun",
            "run",
            "--config",
            path.to_str().expect("a UTF-8 path"),
        ];
        let flags: Vec<String> = flags.iter().map(|f| f.replace("TOKEN", token)).collect();
        argv.extend(flags.iter().map(String::as_str));
        let cli = crate::cli::Cli::try_parse_from(argv).expect("valid arguments");
        match cli.command {
            crate::cli::Command::Run(args) => config(&args),
            _ => unreachable!("a run command"),
        }
    }

    fn forge_of(text: &str, flags: &[&str]) -> (crate::forge::ForgeKind, String, String) {
        let config = config_with(text, flags).expect("a valid config");
        let forge = config.forge.expect("a forge").config;
        (forge.kind, forge.api_url, forge.repo.to_string())
    }

    #[test]
    fn the_forge_its_api_and_repository_are_told_by_the_source_url() {
        use crate::forge::ForgeKind::{GitHub, GitLab, Gitea};
        let with = |url: &str| {
            format!("forgeTokenFile: TOKEN\nsources:\n  - repo: {url}\n    branch: main\n")
        };
        let cases = [
            (
                "https://github.com/team/apps.git",
                GitHub,
                "https://api.github.com",
                "team/apps",
            ),
            (
                "git@ghe.corp.example:team/apps.git",
                GitHub,
                "https://ghe.corp.example/api/v3",
                "team/apps",
            ),
            (
                "https://gitlab.com/platform/web/apps.git",
                GitLab,
                "https://gitlab.com/api/v4",
                "platform/web/apps",
            ),
            (
                "http://gitea.local:3000/team/apps.git",
                Gitea,
                "http://gitea.local:3000/api/v1",
                "team/apps",
            ),
        ];
        for (url, kind, api, repo) in cases {
            assert_eq!(
                forge_of(&with(url), &[]),
                (kind, api.to_string(), repo.to_string()),
                "{url}"
            );
        }
    }

    #[test]
    fn the_forge_flags_win_and_the_github_names_still_work() {
        let file = "sources:\n  - repo: http://127.0.0.1:3000/team/apps.git\n    branch: main\n";
        assert_eq!(
            forge_of(file, &["--forge", "gitea", "--forge-token-file", "TOKEN"]),
            (
                crate::forge::ForgeKind::Gitea,
                "http://127.0.0.1:3000/api/v1".to_string(),
                "team/apps".to_string()
            )
        );
        assert_eq!(
            forge_of(
                file,
                &[
                    "--github-token-file",
                    "TOKEN",
                    "--github-api-url",
                    "https://ghe.example/api/v3",
                    "--github-repo",
                    "o/r"
                ]
            ),
            (
                crate::forge::ForgeKind::GitHub,
                "https://ghe.example/api/v3".to_string(),
                "o/r".to_string()
            )
        );
        let old_keys = "githubTokenFile: TOKEN\ngithubRepo: o/r\nsources:\n  - dir: /srv/apps\n";
        assert_eq!(forge_of(old_keys, &[]).2, "o/r");
    }

    #[test]
    fn a_bad_forge_says_which_ones_there_are() {
        let file = "forgeTokenFile: TOKEN\nforge: bitbucket\nsources:\n  - repo: https://example.com/o/r.git\n    branch: main\n";
        let e = format!(
            "{:#}",
            config_with(file, &[]).expect_err("an unknown forge")
        );
        assert!(
            e.contains("--forge") && e.contains("give github, gitea or gitlab"),
            "{e}"
        );
        let file =
            "forgeTokenFile: TOKEN\nforge: gitea\nforgeRepo: o/r\nsources:\n  - dir: /srv/apps\n";
        let e = format!("{:#}", config_with(file, &[]).expect_err("no API URL"));
        assert!(e.contains("--forge-api-url https://HOST/api/v1"), "{e}");
    }

    #[test]
    fn a_source_sets_upgrade_windows_for_all_its_apps() {
        let config = config_from(
            "sources:\n  - dir: /srv/apps\n    name: apps\n    upgradeWindows:\n      - kind: deny\n        schedule: \"0 18 * * 5\"\n        duration: 63h\n        timeZone: Europe/Berlin\n",
        )
        .expect("a valid config");
        let windows = &config.sources[0].upgrade_windows;
        assert_eq!(windows.len(), 1);
        assert_eq!(windows[0].kind, bosun_core::model::WindowKind::Deny);
        assert_eq!(windows[0].time_zone.as_deref(), Some("Europe/Berlin"));
    }

    #[test]
    fn a_bad_source_window_is_refused_naming_the_source_and_the_field() {
        let e = config_from(
            "sources:\n  - dir: /srv/apps\n    upgradeWindows:\n      - {schedule: \"0 18 * * 5\", duration: 63h, timeZone: Europe/Berlinn}\n",
        )
        .expect_err("an unknown time zone");
        let e = format!("{e:#}");
        assert!(
            e.contains("source 1: upgradeWindows[0].timeZone") && e.contains("Europe/Berlinn"),
            "{e}"
        );
    }

    #[test]
    fn the_dashboard_is_on_unless_the_flag_or_the_file_turns_it_off() {
        let file = "sources:\n  - dir: /srv/apps\n";
        let on = config_with(file, &[]).expect("a valid config");
        assert!(on.dashboard);
        let off = config_with(file, &["--dashboard=false"]).expect("a valid config");
        assert!(!off.dashboard);
        let file_off =
            config_with(&format!("dashboard: false\n{file}"), &[]).expect("a valid config");
        assert!(!file_off.dashboard);
        let flag_wins = config_with(&format!("dashboard: false\n{file}"), &["--dashboard=true"])
            .expect("a valid config");
        assert!(flag_wins.dashboard, "a flag wins over the file");
    }
}
