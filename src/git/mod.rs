//! Bosun's git source: the "fetch" step of the flow, and the only module that talks to git remotes.
//!
//! A [`GitSource`] follows one branch of one repository. It keeps a bare cache repository under a
//! cache directory (one per URL and branch, named by a hash of both), and offers three blocking
//! calls (run them in `tokio::task::spawn_blocking`):
//!
//! - [`GitSource::remote_head`]: one ref advertisement, no object transfer: where the branch is now.
//! - [`GitSource::poll`]: the same advertisement; only when the tip differs from the last seen
//!   revision (or is missing from the cache) it downloads the missing objects over the same
//!   connection, incrementally, and says whether the branch was force-pushed.
//! - [`GitSource::read_tree`]: the `.yaml`/`.yml` files under the source's path at a revision, read
//!   from git objects (never a checkout). Symbolic links, submodules, unsafe names, non-UTF-8 and
//!   oversized files are refused one by one and reported; too many files or bytes refuse the whole
//!   revision.
//! - [`GitSource::history`]: the cache's older commits, for attribution: parents, and one file at a
//!   time read by the same rules as the tip's.
//!
//! Transports: `https://`, `http://`, `ssh://user@host:port/path`, scp-like `user@host:path`,
//! `git://`, `file://` and plain paths. Credentials come from [`Auth`]; a rejected credential is not
//! offered twice. SSH host keys are checked against the [`Auth::SshKey`] `known_hosts` file by the
//! SHA-256 of the key (an unknown or changed key is refused), so an `ssh` source must use
//! [`Auth::SshKey`]. HTTPS certificates are verified by libgit2 with OpenSSL against the system's
//! trust store; to trust a private CA, put it there or set `SSL_CERT_FILE` to a bundle holding it in
//! the environment Bosun starts with (libgit2 reads it once; Bosun cannot set it safely later).
//!
//! Every network call is bounded by [`SourceLimits::fetch_timeout`]: the progress callbacks abort a
//! slow transfer, every socket libgit2 opens gives up on a connect or a read that hears nothing for
//! that long ([`bound_sockets`], set once before any thread starts), and a watchdog gives up on a call
//! that still has not returned. While an abandoned call still runs, the next call on this source fails
//! fast with [`GitError::Timeout`] rather than pile up threads; the socket bound ends it, so a server
//! that accepts and never answers (and holds the connection) cannot wedge the source for good.
//!
//! Errors are [`GitError`]s: each names the redacted URL and the branch and says what to do, and
//! [`GitError::kind`] sorts them into transient and stalled. [`Secret`]s print as `***` and never
//! reach a message.

mod error;
mod history;
mod known_hosts;
mod remote;
mod tree;
mod url;

/// The repository `url` names however it is spelled (`host/path`, see [`url::RemoteUrl::repository`]);
/// a URL that does not parse is itself, trimmed.
pub fn repository_of(url: &str) -> String {
    url::RemoteUrl::parse(url.trim()).map_or_else(|_| url.trim().to_owned(), |u| u.repository())
}

/// The path `url` names on its host (`org/app.git` of `git@github.com:org/app.git`), when it parses.
pub fn path_of(url: &str) -> Option<String> {
    url::RemoteUrl::parse(url.trim())
        .ok()
        .map(|u| u.path().to_owned())
}

/// `url` as it may appear in a message: no userinfo, password, query or fragment.
pub fn redact_url(url: &str) -> String {
    url::RemoteUrl::parse(url.trim())
        .map_or_else(|_| url::redact_unparsed(url), |u| u.redacted().to_owned())
}

/// The host `url` names (`github.com` of `git@github.com:org/app.git`), when it parses and has one.
pub fn host_of(url: &str) -> Option<String> {
    url::RemoteUrl::parse(url.trim())
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
}

/// The port of an `http(s)://` URL, when it names one (an SSH port says nothing of the web's).
pub fn http_port_of(url: &str) -> Option<u16> {
    let u = url::RemoteUrl::parse(url.trim()).ok()?;
    matches!(u.transport(), url::Transport::Http | url::Transport::Https)
        .then(|| u.port())
        .flatten()
}
pub mod writeback;

use secrecy::ExposeSecret;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub use error::{ErrorKind, GitError, Limit};
pub use git2::Oid;
pub use history::History;

use sha2::{Digest, Sha256};
use url::{RemoteUrl, Transport};

/// A password or token (secrecy's: `Debug` prints `[REDACTED]`, there is no `Display`, and the memory
/// is zeroed when dropped). Read only where it is sent.
pub type Secret = secrecy::SecretString;

/// Bounds every socket libgit2 opens (HTTP, HTTPS, SSH): a connect, and each read or write, that
/// takes longer than `timeout` fails. Call it once, before any thread is started (a `bosun run` or
/// `bosun plan` does, before its runtime): libgit2's options are process-wide.
///
/// # Errors
/// When libgit2 refuses the option (a libgit2 older than 1.7).
#[allow(unsafe_code)]
pub fn bound_sockets(timeout: Duration) -> Result<(), git2::Error> {
    let ms = i32::try_from(timeout.as_millis())
        .unwrap_or(i32::MAX)
        .max(1);
    // SAFETY: these set C globals of libgit2 without synchronisation; the caller runs this before
    // any thread exists (and so before any git call), as the functions require.
    unsafe {
        git2::opts::set_server_connect_timeout_in_milliseconds(ms)?;
        git2::opts::set_server_timeout_in_milliseconds(ms)
    }
}

/// How to authenticate to the remote.
#[derive(Clone, Debug)]
pub enum Auth {
    /// Anonymous: public HTTP(S), `git://`, local repositories.
    None,
    /// HTTP(S) basic auth.
    Basic { username: String, password: Secret },
    /// A forge token, sent as HTTP basic auth `x-access-token:<token>`.
    Token(Secret),
    /// An SSH key (OpenSSH or PEM format, with its passphrase when it has one) and the `known_hosts`
    /// file the server's host key must be listed in. `<private_key>.pub` is used as the public key
    /// when it exists.
    SshKey {
        username: String,
        private_key: PathBuf,
        passphrase: Option<Secret>,
        known_hosts: PathBuf,
    },
}

/// Bounds on what one source may cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceLimits {
    /// YAML files under the path; more fail the revision ([`Limit::Files`]).
    pub max_files: usize,
    /// Their total size; more fail the revision ([`Limit::TotalBytes`]).
    pub max_total_bytes: u64,
    /// A larger file is refused on its own and reported in [`Snapshot::refused`].
    pub max_file_bytes: u64,
    /// The most one network call ([`GitSource::remote_head`], [`GitSource::poll`]) may take.
    pub fetch_timeout: Duration,
}

impl Default for SourceLimits {
    fn default() -> Self {
        SourceLimits {
            max_files: 5000,
            max_total_bytes: 64 * 1024 * 1024,
            max_file_bytes: 1024 * 1024,
            fetch_timeout: Duration::from_secs(60),
        }
    }
}

/// Which repository, branch and directory a source follows, and how.
#[derive(Clone, Debug)]
pub struct RepoSpec {
    pub url: String,
    pub branch: String,
    /// A directory of the repository, `/`-separated, relative to its root; `""` is the root.
    pub path: String,
    pub auth: Auth,
    pub limits: SourceLimits,
}

/// What a poll found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// The branch is still at the last seen revision; nothing was downloaded.
    Unchanged(Oid),
    /// The branch moved; its new tip is in the cache and [`GitSource::read_tree`] can read it.
    Changed {
        revision: Oid,
        previous: Option<Oid>,
        /// The new tip does not descend from `previous`: history was rewritten.
        force_pushed: bool,
        /// What this poll downloaded (zero when the cache had the objects already).
        transfer: Transfer,
    },
}

/// Objects and bytes one fetch received.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Transfer {
    pub objects: usize,
    pub bytes: usize,
}

/// The YAML files under the source's path at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    pub revision: Oid,
    /// `(repository-relative path, UTF-8 text)`, sorted by path.
    pub files: Vec<(String, String)>,
    /// `(repository-relative path, why it was not read)`: links, submodules, unsafe names,
    /// non-UTF-8 and oversized files.
    pub refused: Vec<(String, String)>,
}

/// One branch of one repository, cached in a bare repository. See the module documentation.
pub struct GitSource {
    inner: Arc<Inner>,
    /// Set while a network call runs in its worker thread, including one abandoned after a timeout.
    busy: Arc<AtomicBool>,
}

/// What the worker threads share: the validated spec and where its cache lives.
struct Inner {
    spec: RepoSpec,
    url: RemoteUrl,
    /// `spec.path` normalised: no leading, trailing or doubled `/`.
    path: String,
    cache: PathBuf,
}

/// How long the watchdog waits beyond the deadline the callbacks enforce themselves.
const WATCHDOG_GRACE: Duration = Duration::from_millis(500);

impl GitSource {
    /// Validates `spec` and opens (creating it when missing) its cache under `cache_dir`. No network.
    ///
    /// # Errors
    ///
    /// [`GitError::InvalidSpec`] for a URL, branch or path that cannot work, or auth that does not
    /// fit the transport; [`GitError::OpenCache`] when the cache cannot be created or opened.
    pub fn open(spec: RepoSpec, cache_dir: &Path) -> Result<GitSource, GitError> {
        GitSource::open_for(spec, cache_dir, "")
    }

    /// As [`GitSource::open`], with a cache of its own for `purpose` (`previews`), so that its
    /// fetches never wait for the source's.
    ///
    /// # Errors
    /// As [`GitSource::open`].
    pub fn open_for(
        spec: RepoSpec,
        cache_dir: &Path,
        purpose: &str,
    ) -> Result<GitSource, GitError> {
        let inner = Inner::new(spec, cache_dir, purpose)?;
        inner.open_cache_or_init()?;
        Ok(GitSource {
            inner: Arc::new(inner),
            busy: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Where the branch points on the remote now: one ref advertisement, no objects downloaded.
    ///
    /// # Errors
    ///
    /// Connecting, authenticating, host key or certificate verification, a missing repository or
    /// branch, or the fetch timeout.
    pub fn remote_head(&self) -> Result<Oid, GitError> {
        self.bounded("listing the branches of", remote::remote_head)
    }

    /// Compares the remote branch with `last_seen` and downloads what is new, only when it moved.
    ///
    /// # Errors
    ///
    /// As [`GitSource::remote_head`], plus [`GitError::FetchBranch`] when the download fails.
    pub fn poll(&mut self, last_seen: Option<Oid>) -> Result<Poll, GitError> {
        self.bounded("fetching", move |inner, deadline| {
            remote::poll(inner, last_seen, deadline)
        })
    }

    /// Fetches `remote_ref` (a ref the remote advertises, such as a pull request's head
    /// `refs/pull/7/head`) into the cache under `refs/bosun/fetched/…`, and returns its commit, which
    /// [`GitSource::read_tree`] can then read. Never checks anything out.
    ///
    /// # Errors
    ///
    /// As [`GitSource::poll`]; [`GitError::FetchBranch`] when the remote does not advertise the ref.
    pub fn fetch_ref(&self, remote_ref: &str) -> Result<Oid, GitError> {
        let safe: String = remote_ref
            .trim_start_matches("refs/")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let local = format!("refs/bosun/fetched/{safe}");
        let remote_ref = remote_ref.to_owned();
        self.bounded("fetching", move |inner, deadline| {
            remote::fetch_ref(inner, &remote_ref, &local, deadline)
        })
    }

    /// The YAML files under the source's path at `revision`, from the cache's objects.
    ///
    /// # Errors
    ///
    /// [`GitError::ReadRevision`] when the revision is not in the cache (poll first),
    /// [`GitError::PathNotFound`] / [`GitError::PathNotDirectory`] for a path that is missing or a
    /// link or file, [`GitError::LimitExceeded`] for too many files or bytes.
    pub fn read_tree(&self, revision: Oid) -> Result<Snapshot, GitError> {
        tree::read(&self.inner, revision)
    }

    /// Runs a network call in a worker thread and gives up on it after the fetch timeout.
    fn bounded<T, F>(&self, action: &'static str, call: F) -> Result<T, GitError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner, Instant) -> Result<T, GitError> + Send + 'static,
    {
        bounded(&self.inner, &self.busy, action, call)
    }
}

/// Runs a network call of `inner` in a worker thread and gives up on it after the fetch timeout;
/// `busy` is set while it runs (shared by [`GitSource`] and [`writeback::GitWriter`]).
fn bounded<T, E, F>(
    inner: &Arc<Inner>,
    busy: &Arc<AtomicBool>,
    action: &'static str,
    call: F,
) -> Result<T, E>
where
    T: Send + 'static,
    E: From<GitError> + Send + 'static,
    F: FnOnce(&Inner, Instant) -> Result<T, E> + Send + 'static,
{
    let timeout = inner.spec.limits.fetch_timeout;
    let timed_out = || E::from(inner.timeout(action));
    if busy.swap(true, Ordering::SeqCst) {
        // An earlier call timed out and still runs: don't start a second one beside it.
        return Err(timed_out());
    }
    let deadline = Instant::now() + timeout;
    let (tx, rx) = mpsc::channel();
    let worker_inner = Arc::clone(inner);
    let worker_busy = Arc::clone(busy);
    let spawned = std::thread::Builder::new()
        .name("bosun-git".to_owned())
        .spawn(move || {
            let result = call(&worker_inner, deadline);
            worker_busy.store(false, Ordering::SeqCst);
            // After a timeout nobody listens any more; the result is dropped.
            let _ = tx.send(result);
        });
    if let Err(e) = spawned {
        busy.store(false, Ordering::SeqCst);
        return Err(E::from(
            inner.connect_error(format!("starting a worker thread: {e}")),
        ));
    }
    match rx.recv_timeout(timeout + WATCHDOG_GRACE) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(timed_out()),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(E::from(
            inner.connect_error("the git worker thread panicked".to_owned()),
        )),
    }
}

impl Inner {
    /// Validates `spec` and names its cache under `cache_dir`: one per URL and branch, and per
    /// `purpose` (`""` for sources, so existing caches keep their names). No I/O.
    fn new(spec: RepoSpec, cache_dir: &Path, purpose: &str) -> Result<Inner, GitError> {
        let url = RemoteUrl::parse(&spec.url).map_err(|reason| GitError::InvalidSpec {
            url: url::redact_unparsed(&spec.url),
            reason,
        })?;
        let invalid = |reason: String| GitError::InvalidSpec {
            url: url.redacted().to_owned(),
            reason,
        };
        if spec.branch.is_empty()
            || !git2::Reference::is_valid_name(&format!("refs/heads/{}", spec.branch))
        {
            return Err(invalid(format!(
                "{:?} is not a valid branch name",
                spec.branch
            )));
        }
        let path = normalise_path(&spec.path).map_err(&invalid)?;
        check_auth_fits(&url, &spec.auth).map_err(&invalid)?;
        let key = if purpose.is_empty() {
            Sha256::digest(format!("{}\n{}", url.redacted(), spec.branch))
        } else {
            Sha256::digest(format!("{purpose}\n{}\n{}", url.redacted(), spec.branch))
        };
        let name: String = key[..12].iter().map(|b| format!("{b:02x}")).collect();
        let cache = cache_dir.join(format!("{name}.git"));
        Ok(Inner {
            spec,
            url,
            path,
            cache,
        })
    }

    fn url(&self) -> String {
        self.url.redacted().to_owned()
    }

    fn branch(&self) -> String {
        self.spec.branch.clone()
    }

    /// Replaces every secret this source knows (password, token, the raw URL) in `text`.
    fn redact(&self, text: &str) -> String {
        let mut out = text.replace(self.url.raw(), self.url.redacted());
        let secret = match &self.spec.auth {
            Auth::Basic { password, .. } => Some(password.expose_secret()),
            Auth::Token(token) => Some(token.expose_secret()),
            Auth::None | Auth::SshKey { .. } => None,
        };
        if let Some(secret) = secret.filter(|s| !s.is_empty()) {
            out = out.replace(secret, "***");
        }
        out
    }

    /// Opens the cache, creating it when missing. The new repository is made beside it and renamed
    /// into place, so another process (or source) opening the same cache meanwhile sees either no
    /// repository or a whole one, never one half made; whoever renames second keeps the winner's.
    fn open_cache_or_init(&self) -> Result<git2::Repository, GitError> {
        if self.cache.exists() {
            return self.open_cache();
        }
        let parent = self
            .cache
            .parent()
            .ok_or_else(|| self.cache_error("the cache has no parent directory"))?;
        std::fs::create_dir_all(parent).map_err(|e| self.cache_error(e.to_string()))?;
        let name = self
            .cache
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let staging = parent.join(format!(".{name}.init-{}-{nanos}", std::process::id()));
        let made = git2::Repository::init_bare(&staging)
            .map_err(|e| self.cache_error(e.message()))
            .and_then(|_| match std::fs::rename(&staging, &self.cache) {
                Ok(()) => Ok(()),
                // Someone else's cache got there first: use it.
                Err(_) if self.cache.exists() => Ok(()),
                Err(e) => Err(self.cache_error(e.to_string())),
            });
        if staging.exists() {
            let _ = std::fs::remove_dir_all(&staging);
        }
        made?;
        self.open_cache()
    }

    fn open_cache(&self) -> Result<git2::Repository, GitError> {
        git2::Repository::open_bare(&self.cache).map_err(|e| self.cache_error(e.message()))
    }

    fn cache_error(&self, detail: impl AsRef<str>) -> GitError {
        GitError::OpenCache {
            url: self.url(),
            cache: self.cache.clone(),
            detail: self.redact(detail.as_ref()),
        }
    }

    fn connect_error(&self, detail: String) -> GitError {
        GitError::ConnectRemote {
            url: self.url(),
            branch: self.branch(),
            detail: self.redact(&detail),
        }
    }

    fn timeout(&self, action: &'static str) -> GitError {
        GitError::Timeout {
            url: self.url(),
            branch: self.branch(),
            action,
            timeout: self.spec.limits.fetch_timeout,
        }
    }
}

/// `apps/`, `/apps` and `apps//web` are refused rather than guessed at; `""` and `"."` are the root.
fn normalise_path(path: &str) -> Result<String, String> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        return Ok(String::new());
    }
    if trimmed.starts_with('/') {
        return Err(format!(
            "the path {path:?} is absolute; give it relative to the repository's root"
        ));
    }
    for component in trimmed.split('/') {
        if let Some(reason) = tree::unsafe_name(component) {
            return Err(format!(
                "the path {path:?} has a component that is {reason}"
            ));
        }
    }
    Ok(trimmed.to_owned())
}

fn check_auth_fits(url: &RemoteUrl, auth: &Auth) -> Result<(), String> {
    match (url.transport(), auth) {
        (Transport::Ssh, Auth::SshKey { .. }) => Ok(()),
        (Transport::Ssh, _) => Err(
            "an ssh remote needs an SSH key and a known_hosts file to check the server's host key"
                .to_owned(),
        ),
        (_, Auth::SshKey { .. }) => {
            Err("an SSH key can only be used with an ssh remote".to_owned())
        }
        (Transport::Http | Transport::Https, _) => Ok(()),
        (Transport::Git | Transport::Local, Auth::None) => Ok(()),
        (Transport::Git | Transport::Local, _) => Err(
            "git:// and local remotes take no credentials; remove them or use https://".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(url: &str, path: &str, auth: Auth) -> RepoSpec {
        RepoSpec {
            url: url.to_owned(),
            branch: "main".to_owned(),
            path: path.to_owned(),
            auth,
            limits: SourceLimits::default(),
        }
    }

    #[test]
    fn secrets_print_as_stars() {
        let auth = Auth::Basic {
            username: "bosun".to_owned(),
            password: Secret::from("hunter2"),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }

    #[test]
    fn a_spec_that_cannot_work_is_refused_before_any_network() {
        let cache = tempfile::tempdir().expect("a temp dir");
        let refused = |s: RepoSpec| match GitSource::open(s, cache.path()) {
            Err(e @ GitError::InvalidSpec { .. }) => e.to_string(),
            Err(e) => panic!("expected InvalidSpec, got {e}"),
            Ok(_) => panic!("expected InvalidSpec, got a source"),
        };
        let msg = refused(spec("https://u:pw@h/r.git", "../etc", Auth::None));
        assert!(msg.contains(".."), "{msg}");
        assert!(!msg.contains("pw"), "{msg}");
        refused(spec("https://h/r.git", "/abs", Auth::None));
        refused(spec("https://h/r.git", "a/.git/b", Auth::None));
        refused(spec("ssh://git@h/r.git", "", Auth::None));
        refused(spec("git://h/r.git", "", Auth::Token(Secret::from("t"))));
        let mut bad_branch = spec("https://h/r.git", "", Auth::None);
        bad_branch.branch = "a..b".to_owned();
        refused(bad_branch);
    }

    #[test]
    fn one_url_and_branch_share_one_cache() {
        let cache = tempfile::tempdir().expect("a temp dir");
        let a = GitSource::open(spec("https://h/r.git", "", Auth::None), cache.path())
            .expect("a source");
        let b = GitSource::open(spec("https://h/r.git", "apps", Auth::None), cache.path())
            .expect("a source");
        let mut other = spec("https://h/r.git", "", Auth::None);
        other.branch = "dev".to_owned();
        let c = GitSource::open(other, cache.path()).expect("a source");
        assert_eq!(a.inner.cache, b.inner.cache);
        assert_ne!(a.inner.cache, c.inner.cache);
    }

    #[test]
    fn sources_opening_one_new_cache_at_once_all_get_a_whole_repository() {
        // Two replicas (or sources) starting together once saw each other's half-made cache.
        for _ in 0..20 {
            let cache = tempfile::tempdir().expect("a temp dir");
            let opened: Vec<Result<GitSource, GitError>> = std::thread::scope(|scope| {
                let handles: Vec<_> = (0..8)
                    .map(|_| {
                        scope.spawn(|| {
                            GitSource::open(spec("https://h/r.git", "", Auth::None), cache.path())
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("no panic"))
                    .collect()
            });
            for o in &opened {
                assert!(o.is_ok(), "{:?}", o.as_ref().err().map(ToString::to_string));
            }
            let left: Vec<_> = std::fs::read_dir(cache.path())
                .expect("the cache directory")
                .filter_map(Result::ok)
                .map(|e| e.file_name())
                .collect();
            assert_eq!(left.len(), 1, "one cache, no staging left over: {left:?}");
        }
    }
}
