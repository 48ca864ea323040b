//! What can go wrong reading a git source, named for the action that failed.
//!
//! Every message names the repository by its redacted URL (no userinfo, no query), the branch, and
//! what a user can do. No variant carries a secret: details that come from libgit2 pass through the
//! source's redaction first.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use git2::Oid;

/// How a caller recovers from a [`GitError`] (see STYLE.md, principle 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The remote or the network may recover by itself: retry with backoff.
    Transient,
    /// A human must act (credentials, host keys, the source's configuration, the repository's
    /// content); retrying before the input changes fails the same way.
    Stalled,
}

/// Which limit of [`super::SourceLimits`] a revision exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `max_files`: YAML files under the source's path.
    Files,
    /// `max_total_bytes`: the sum of their sizes.
    TotalBytes,
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Limit::Files => f.write_str("max_files"),
            Limit::TotalBytes => f.write_str("max_total_bytes"),
        }
    }
}

/// An error of the git source. See [`GitError::kind`] for how to recover.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("invalid git source {url}: {reason}")]
    InvalidSpec { url: String, reason: String },

    #[error(
        "opening the cache {} of {url}: {detail}; check that the cache directory is writable \
         and has free space",
        cache.display()
    )]
    OpenCache {
        url: String,
        cache: PathBuf,
        detail: String,
    },

    #[error("connecting to {url} (branch {branch}): {detail}; will retry")]
    ConnectRemote {
        url: String,
        branch: String,
        detail: String,
    },

    #[error(
        "authenticating to {url} (branch {branch}): {detail}; check the credentials configured \
         for this source"
    )]
    Authenticate {
        url: String,
        branch: String,
        detail: String,
    },

    #[error(
        "verifying the SSH host key of {host} for {url}: {problem}; the key presented is \
         {fingerprint}. If you trust it, add it to {} (`ssh-keyscan` prints the line)",
        known_hosts.display()
    )]
    VerifyHostKey {
        url: String,
        host: String,
        fingerprint: String,
        known_hosts: PathBuf,
        problem: String,
    },

    #[error(
        "verifying the TLS certificate of {url}: {detail}; add the forge's CA to the system's \
         trust store, or point SSL_CERT_FILE at a bundle that has it before Bosun starts"
    )]
    VerifyCertificate { url: String, detail: String },

    #[error(
        "finding the repository {url}: {detail}; check the URL and that the configured \
         credentials may read it"
    )]
    FindRepository {
        url: String,
        branch: String,
        detail: String,
    },

    #[error("finding branch {branch} in {url}: the remote has no such branch ({available})")]
    FindBranch {
        url: String,
        branch: String,
        available: String,
    },

    #[error("fetching branch {branch} from {url}: {detail}; will retry")]
    FetchBranch {
        url: String,
        branch: String,
        detail: String,
    },

    #[error(
        "{action} {url} (branch {branch}) took longer than the fetch timeout of {timeout:?}; \
         will retry (raise fetch_timeout if the repository is large or the forge slow)"
    )]
    Timeout {
        url: String,
        branch: String,
        action: &'static str,
        timeout: Duration,
    },

    #[error("reading revision {revision} of {url} (branch {branch}): {detail}")]
    ReadRevision {
        url: String,
        branch: String,
        revision: Oid,
        detail: String,
    },

    #[error(
        "reading path {path:?} at revision {revision} of {url} (branch {branch}): it does not \
         exist at that revision; check the source's path"
    )]
    PathNotFound {
        url: String,
        branch: String,
        revision: Oid,
        path: String,
    },

    #[error(
        "reading path {path:?} at revision {revision} of {url} (branch {branch}): it is {what}, \
         not a directory"
    )]
    PathNotDirectory {
        url: String,
        branch: String,
        revision: Oid,
        path: String,
        what: &'static str,
    },

    #[error(
        "reading path {path:?} at revision {revision} of {url} (branch {branch}): more than \
         {allowed} {unit} (limit {limit}); raise the source's {limit} or point its path at a \
         smaller directory"
    )]
    LimitExceeded {
        url: String,
        branch: String,
        revision: Oid,
        path: String,
        limit: Limit,
        allowed: u64,
        unit: &'static str,
    },
}

impl GitError {
    /// How to recover: retry with backoff, or wait for a human.
    pub fn kind(&self) -> ErrorKind {
        match self {
            GitError::OpenCache { .. }
            | GitError::ConnectRemote { .. }
            | GitError::FetchBranch { .. }
            | GitError::Timeout { .. }
            | GitError::ReadRevision { .. } => ErrorKind::Transient,
            GitError::InvalidSpec { .. }
            | GitError::Authenticate { .. }
            | GitError::VerifyHostKey { .. }
            | GitError::VerifyCertificate { .. }
            | GitError::FindRepository { .. }
            | GitError::FindBranch { .. }
            | GitError::PathNotFound { .. }
            | GitError::PathNotDirectory { .. }
            | GitError::LimitExceeded { .. } => ErrorKind::Stalled,
        }
    }

    /// The variant's name: a metric label and an Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            GitError::InvalidSpec { .. } => "InvalidSpec",
            GitError::OpenCache { .. } => "OpenCache",
            GitError::ConnectRemote { .. } => "ConnectRemote",
            GitError::Authenticate { .. } => "Authenticate",
            GitError::VerifyHostKey { .. } => "VerifyHostKey",
            GitError::VerifyCertificate { .. } => "VerifyCertificate",
            GitError::FindRepository { .. } => "FindRepository",
            GitError::FindBranch { .. } => "FindBranch",
            GitError::FetchBranch { .. } => "FetchBranch",
            GitError::Timeout { .. } => "Timeout",
            GitError::ReadRevision { .. } => "ReadRevision",
            GitError::PathNotFound { .. } => "PathNotFound",
            GitError::PathNotDirectory { .. } => "PathNotDirectory",
            GitError::LimitExceeded { .. } => "LimitExceeded",
        }
    }
}
