//! Talking to the remote: one connection per call, with callbacks for credentials, host keys and the
//! deadline, and the translation of whatever libgit2 reports into a [`GitError`].

use secrecy::ExposeSecret;
use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use git2::{
    AutotagOption, CertificateCheckStatus, Cred, CredentialType, Direction, ErrorClass, ErrorCode,
    FetchOptions, Oid, RemoteCallbacks, RemoteHead,
};

use super::known_hosts::{self, Verdict};
use super::{Auth, GitError, Inner, Poll, Transfer};

/// What the callbacks saw, read after libgit2 returns to name the real cause of a failure.
#[derive(Default)]
struct Seen {
    /// Credentials handed out; a second request means the first was rejected.
    credentials_given: u32,
    auth_refused: Option<String>,
    host_key_refused: Option<HostKeyRefusal>,
    timed_out: bool,
}

struct HostKeyRefusal {
    host: String,
    fingerprint: String,
    problem: String,
}

/// One call's callbacks and what they saw.
pub(super) struct Session<'a> {
    inner: &'a Inner,
    deadline: Instant,
    seen: Rc<RefCell<Seen>>,
}

/// Where the branch points, from one ref advertisement.
pub(super) fn remote_head(inner: &Inner, deadline: Instant) -> Result<Oid, GitError> {
    let session = Session::new(inner, deadline);
    let mut remote = git2::Remote::create_detached(inner.url.raw())
        .map_err(|e| session.error(Stage::Connect, &e))?;
    let connection = remote
        .connect_auth(Direction::Fetch, Some(session.callbacks()), None)
        .map_err(|e| session.error(Stage::Connect, &e))?;
    let heads = connection
        .list()
        .map_err(|e| session.error(Stage::Connect, &e))?;
    branch_tip(inner, heads)
}

/// Opens the cache, connects to the remote for a fetch and hands both to `then`.
fn fetching<T>(
    inner: &Inner,
    deadline: Instant,
    then: impl FnOnce(
        &git2::Repository,
        &Session<'_>,
        &mut git2::RemoteConnection<'_, '_, '_>,
    ) -> Result<T, GitError>,
) -> Result<T, GitError> {
    let repo = inner.open_cache()?;
    let session = Session::new(inner, deadline);
    let mut remote = repo
        .remote_anonymous(inner.url.raw())
        .map_err(|e| session.error(Stage::Connect, &e))?;
    let mut connection = remote
        .connect_auth(Direction::Fetch, Some(session.callbacks()), None)
        .map_err(|e| session.error(Stage::Connect, &e))?;
    then(&repo, &session, &mut connection)
}

/// Lists the branch; downloads over the same connection only when its tip is new to the cache.
pub(super) fn poll(
    inner: &Inner,
    last_seen: Option<Oid>,
    deadline: Instant,
) -> Result<Poll, GitError> {
    fetching(inner, deadline, |repo, session, connection| {
        poll_over(inner, last_seen, repo, session, connection)
    })
}

fn poll_over(
    inner: &Inner,
    last_seen: Option<Oid>,
    repo: &git2::Repository,
    session: &Session<'_>,
    connection: &mut git2::RemoteConnection<'_, '_, '_>,
) -> Result<Poll, GitError> {
    let tip = branch_tip(
        inner,
        connection
            .list()
            .map_err(|e| session.error(Stage::Connect, &e))?,
    )?;
    let cached = repo.find_commit(tip).is_ok();
    if cached && last_seen == Some(tip) {
        return Ok(Poll::Unchanged(tip));
    }
    let mut transfer = Transfer::default();
    if !cached {
        let branch = &inner.spec.branch;
        let refspec = format!("+refs/heads/{branch}:refs/heads/{branch}");
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(session.callbacks())
            .download_tags(AutotagOption::None)
            .update_fetchhead(false);
        let remote = connection.remote();
        remote
            .download(&[refspec], Some(&mut options))
            .map_err(|e| session.error(Stage::Download, &e))?;
        let stats = remote.stats();
        transfer = Transfer {
            objects: stats.received_objects(),
            bytes: stats.received_bytes(),
        };
    }
    let fetch_error = |detail: String| GitError::FetchBranch {
        url: inner.url(),
        branch: inner.branch(),
        detail,
    };
    repo.find_commit(tip)
        .map_err(|e| fetch_error(format!("the branch's tip {tip} is not a commit: {e}")))?;
    // A ref keeps the tip (and so its history, the base of the next incremental fetch) in the cache.
    repo.reference(
        &format!("refs/heads/{}", inner.spec.branch),
        tip,
        true,
        "bosun: the remote branch's tip",
    )
    .map_err(|e| inner.cache_error(e.message()))?;
    if last_seen == Some(tip) {
        return Ok(Poll::Unchanged(tip)); // only the cache was behind
    }
    let force_pushed = match last_seen {
        None => false,
        // A full fetch brings every ancestor of the tip: a last seen commit missing from the cache
        // is not one of them.
        Some(previous) if repo.find_commit(previous).is_err() => true,
        Some(previous) => !repo
            .graph_descendant_of(tip, previous)
            .map_err(|e| fetch_error(format!("comparing {tip} with {previous}: {e}")))?,
    };
    Ok(Poll::Changed {
        revision: tip,
        previous: last_seen,
        force_pushed,
        transfer,
    })
}

/// Fetches one ref the remote advertises (a pull request's head, `refs/pull/7/head`) into the cache
/// as `local_ref`, downloading only when its commit is new to the cache; returns its commit.
pub(super) fn fetch_ref(
    inner: &Inner,
    remote_ref: &str,
    local_ref: &str,
    deadline: Instant,
) -> Result<Oid, GitError> {
    fetching(inner, deadline, |repo, session, connection| {
        fetch_ref_over(inner, remote_ref, local_ref, repo, session, connection)
    })
}

fn fetch_ref_over(
    inner: &Inner,
    remote_ref: &str,
    local_ref: &str,
    repo: &git2::Repository,
    session: &Session<'_>,
    connection: &mut git2::RemoteConnection<'_, '_, '_>,
) -> Result<Oid, GitError> {
    let fetch_error = |detail: String| GitError::FetchBranch {
        url: inner.url(),
        branch: remote_ref.to_owned(),
        detail,
    };
    let tip = connection
        .list()
        .map_err(|e| session.error(Stage::Connect, &e))?
        .iter()
        .find(|h| h.name() == remote_ref)
        .map(RemoteHead::oid)
        .ok_or_else(|| fetch_error("the remote does not advertise it".to_owned()))?;
    if repo.find_commit(tip).is_err() {
        let refspec = format!("+{remote_ref}:{local_ref}");
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(session.callbacks())
            .download_tags(AutotagOption::None)
            .update_fetchhead(false);
        connection
            .remote()
            .download(&[refspec], Some(&mut options))
            .map_err(|e| session.error(Stage::Download, &e))?;
    }
    repo.find_commit(tip)
        .map_err(|e| fetch_error(format!("its tip {tip} is not a commit: {e}")))?;
    repo.reference(local_ref, tip, true, "bosun: a pull request's head")
        .map_err(|e| inner.cache_error(e.message()))?;
    Ok(tip)
}

fn branch_tip(inner: &Inner, heads: &[RemoteHead<'_>]) -> Result<Oid, GitError> {
    let wanted = format!("refs/heads/{}", inner.spec.branch);
    if let Some(head) = heads.iter().find(|h| h.name() == wanted) {
        return Ok(head.oid());
    }
    let branches: Vec<&str> = heads
        .iter()
        .filter_map(|h| h.name().strip_prefix("refs/heads/"))
        .collect();
    let available = match branches.len() {
        0 => "it has no branches at all".to_owned(),
        n if n <= 10 => format!("it has: {}", branches.join(", ")),
        n => format!("it has {n} others, e.g. {}", branches[..10].join(", ")),
    };
    Err(GitError::FindBranch {
        url: inner.url(),
        branch: inner.branch(),
        available,
    })
}

#[derive(Clone, Copy)]
pub(super) enum Stage {
    Connect,
    Download,
}

impl<'a> Session<'a> {
    pub(super) fn new(inner: &'a Inner, deadline: Instant) -> Session<'a> {
        Session {
            inner,
            deadline,
            seen: Rc::default(),
        }
    }

    /// A fresh set of callbacks sharing this session's record (libgit2 takes them by value).
    pub(super) fn callbacks(&self) -> RemoteCallbacks<'static> {
        let mut callbacks = RemoteCallbacks::new();
        let deadline = self.deadline;

        let seen = Rc::clone(&self.seen);
        let auth = self.inner.spec.auth.clone();
        let url_user = self.inner.url.user().map(str::to_owned);
        callbacks.credentials(move |_url, user_from_url, allowed| {
            let mut seen = seen.borrow_mut();
            if Instant::now() > deadline {
                seen.timed_out = true;
                return Err(git2::Error::from_str("the fetch timeout passed"));
            }
            let user = user_from_url.map(str::to_owned).or(url_user.clone());
            credentials(&auth, user.as_deref(), allowed, &mut seen)
        });

        let seen = Rc::clone(&self.seen);
        let host = self.inner.url.host().unwrap_or_default().to_owned();
        let port = self.inner.url.ssh_port();
        let known_hosts = match &self.inner.spec.auth {
            Auth::SshKey { known_hosts, .. } => Some(known_hosts.clone()),
            _ => None,
        };
        callbacks.certificate_check(move |cert, _hostname| {
            let Some(hostkey) = cert.as_hostkey() else {
                // X.509: libgit2 has verified the chain against the trust store; keep its verdict.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let presented = match (hostkey.hostkey(), hostkey.hash_sha256()) {
                (Some(blob), _) => known_hosts::sha256(blob),
                (None, Some(hash)) => *hash,
                (None, None) => [0; 32],
            };
            match check_host_key(known_hosts.as_deref(), &host, port, &presented) {
                Ok(()) => Ok(CertificateCheckStatus::CertificateOk),
                Err(problem) => {
                    let message = format!("host key refused: {problem}");
                    seen.borrow_mut().host_key_refused = Some(HostKeyRefusal {
                        host: if port == 22 {
                            host.clone()
                        } else {
                            format!("[{host}]:{port}")
                        },
                        fingerprint: known_hosts::fingerprint(&presented),
                        problem,
                    });
                    Err(git2::Error::from_str(&message))
                }
            }
        });

        let seen = Rc::clone(&self.seen);
        callbacks.transfer_progress(move |_| within(deadline, &seen));
        let seen = Rc::clone(&self.seen);
        callbacks.sideband_progress(move |_| within(deadline, &seen));
        callbacks
    }

    /// A progress check for callbacks set by the caller (push's sideband): `false`, which aborts
    /// the transfer, once the deadline has passed.
    pub(super) fn progress_check(&self) -> impl Fn() -> bool + 'static {
        let deadline = self.deadline;
        let seen = Rc::clone(&self.seen);
        move || within(deadline, &seen)
    }

    /// Names the real cause of a libgit2 failure, from what the callbacks saw first.
    pub(super) fn error(&self, stage: Stage, e: &git2::Error) -> GitError {
        let inner = self.inner;
        let seen = self.seen.borrow();
        let detail = inner.redact(e.message());
        if seen.timed_out || Instant::now() > self.deadline {
            return inner.timeout(match stage {
                Stage::Connect => "listing the branches of",
                Stage::Download => "fetching",
            });
        }
        if let Some(refusal) = &seen.host_key_refused {
            return GitError::VerifyHostKey {
                url: inner.url(),
                host: refusal.host.clone(),
                fingerprint: refusal.fingerprint.clone(),
                known_hosts: match &inner.spec.auth {
                    Auth::SshKey { known_hosts, .. } => known_hosts.clone(),
                    _ => Default::default(),
                },
                problem: refusal.problem.clone(),
            };
        }
        if let Some(reason) = &seen.auth_refused {
            return GitError::Authenticate {
                url: inner.url(),
                branch: inner.branch(),
                detail: reason.clone(),
            };
        }
        let lower = detail.to_ascii_lowercase();
        // libgit2 1.9 reports an unverifiable chain as class Ssl, code GenericError.
        if e.code() == ErrorCode::Certificate
            || (e.class() == ErrorClass::Ssl && lower.contains("certificate"))
        {
            return GitError::VerifyCertificate {
                url: inner.url(),
                detail,
            };
        }
        if e.code() == ErrorCode::Auth
            || lower.contains("status code: 401")
            || lower.contains("status code: 403")
        {
            return GitError::Authenticate {
                url: inner.url(),
                branch: inner.branch(),
                detail,
            };
        }
        if lower.contains("status code: 404")
            || lower.contains("not found")
            || lower.contains("does not appear to be a git repository")
            || lower.contains("not exported")
            || (e.class() == ErrorClass::Repository && e.code() == ErrorCode::NotFound)
        {
            return GitError::FindRepository {
                url: inner.url(),
                branch: inner.branch(),
                detail,
            };
        }
        match stage {
            Stage::Connect => GitError::ConnectRemote {
                url: inner.url(),
                branch: inner.branch(),
                detail,
            },
            Stage::Download => GitError::FetchBranch {
                url: inner.url(),
                branch: inner.branch(),
                detail,
            },
        }
    }
}

/// Progress callbacks: keep going while the deadline has not passed.
fn within(deadline: Instant, seen: &RefCell<Seen>) -> bool {
    let ok = Instant::now() <= deadline;
    if !ok {
        seen.borrow_mut().timed_out = true;
    }
    ok
}

/// The credentials callback. libgit2 asks again after a rejection; a second answer would only be
/// rejected again (and an endless loop of them is what libgit2 does over HTTP), so we give up.
fn credentials(
    auth: &Auth,
    user: Option<&str>,
    allowed: CredentialType,
    seen: &mut Seen,
) -> Result<Cred, git2::Error> {
    match auth {
        Auth::None => refuse(
            seen,
            "the remote asks for credentials, but none are configured for this source".to_owned(),
        ),
        Auth::Basic { username, password }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
        {
            if seen.credentials_given > 0 {
                return refuse(
                    seen,
                    format!("the remote rejected the password of user {username:?}"),
                );
            }
            seen.credentials_given += 1;
            Cred::userpass_plaintext(username, password.expose_secret())
        }
        Auth::Token(token) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
            if seen.credentials_given > 0 {
                return refuse(seen, "the remote rejected the token".to_owned());
            }
            seen.credentials_given += 1;
            Cred::userpass_plaintext("x-access-token", token.expose_secret())
        }
        Auth::SshKey {
            username,
            private_key,
            passphrase,
            ..
        } => {
            let user = if username.is_empty() {
                user.unwrap_or("git")
            } else {
                username.as_str()
            };
            if allowed.contains(CredentialType::USERNAME) {
                return Cred::username(user);
            }
            if !allowed.contains(CredentialType::SSH_KEY) {
                return refuse(
                    seen,
                    format!(
                        "the server offers no public key authentication (it allows {allowed:?})"
                    ),
                );
            }
            if seen.credentials_given > 0 {
                return refuse(
                    seen,
                    format!(
                        "the server rejected the key {} for user {user:?}",
                        private_key.display()
                    ),
                );
            }
            if !private_key.is_file() {
                return refuse(
                    seen,
                    format!(
                        "the private key {} does not exist or is not a file",
                        private_key.display()
                    ),
                );
            }
            seen.credentials_given += 1;
            let public_key = public_key_of(private_key);
            let passphrase = passphrase.as_ref().map(ExposeSecret::expose_secret);
            Cred::ssh_key(user, public_key.as_deref(), private_key, passphrase)
        }
        Auth::Basic { .. } | Auth::Token(_) => refuse(
            seen,
            format!(
                "the remote asks for {allowed:?} credentials, which a password or token cannot give"
            ),
        ),
    }
}

fn refuse(seen: &mut Seen, reason: String) -> Result<Cred, git2::Error> {
    let error = git2::Error::from_str(&reason);
    seen.auth_refused = Some(reason);
    Err(error)
}

fn public_key_of(private_key: &Path) -> Option<std::path::PathBuf> {
    let mut name = private_key.as_os_str().to_owned();
    name.push(".pub");
    let public = std::path::PathBuf::from(name);
    public.is_file().then_some(public)
}

/// `Ok` when `known_hosts` lists the key for the host, else what is wrong, in words.
fn check_host_key(
    known_hosts: Option<&Path>,
    host: &str,
    port: u16,
    presented: &[u8; 32],
) -> Result<(), String> {
    let Some(path) = known_hosts else {
        return Err("no known_hosts file is configured".to_owned());
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the known_hosts file {}: {e}", path.display()))?;
    match known_hosts::check(&text, host, port, presented) {
        Verdict::Trusted => Ok(()),
        Verdict::Unknown => Err(format!(
            "{} is not listed in the known_hosts file {} (by name or hashed); add its key: \
             ssh-keyscan -p {port} {host} >> {}",
            if port == 22 {
                host.to_owned()
            } else {
                format!("[{host}]:{port}")
            },
            path.display(),
            path.display()
        )),
        Verdict::Mismatch => Err(
            "known_hosts lists other keys for this host: the key changed, \
                                  or someone is in between"
                .to_owned(),
        ),
        Verdict::Revoked => Err("known_hosts marks this key @revoked".to_owned()),
    }
}
