//! The git source against a real git server (`scripts/gitserver`): every transport, credentials and
//! host keys, what an unchanged remote costs, incremental and force-pushed fetches, and what a tree
//! may hold that Bosun refuses to read.
//!
//! Each test makes its own repository (named after the test) on the one server of this binary, and
//! its own cache directory.

mod support;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bosun::git::{
    Auth, ErrorKind, GitError, GitSource, Limit, Oid, Poll, RepoSpec, Secret, Snapshot,
    SourceLimits,
};
use support::gitserver::{self, GitServer, TestRepo};
use tempfile::TempDir;

fn server() -> &'static GitServer {
    gitserver::shared()
}

fn basic_auth() -> Auth {
    Auth::Basic {
        username: server().http_user.clone(),
        password: Secret::from(server().http_password.clone()),
    }
}

fn ssh_auth(known_hosts: PathBuf) -> Auth {
    Auth::SshKey {
        username: server().ssh_user.clone(),
        private_key: server().ssh_key.clone(),
        passphrase: None,
        known_hosts,
    }
}

fn spec(url: &str, path: &str, auth: Auth) -> RepoSpec {
    RepoSpec {
        url: url.to_owned(),
        branch: "main".to_owned(),
        path: path.to_owned(),
        auth,
        limits: SourceLimits::default(),
    }
}

/// A source with a cache directory of its own (kept alive by the returned `TempDir`).
fn open(spec: RepoSpec) -> (GitSource, TempDir) {
    let cache = tempfile::tempdir().expect("a cache directory");
    let source = GitSource::open(spec, cache.path()).expect("opening the source");
    (source, cache)
}

fn oid(hex: &str) -> Oid {
    Oid::from_str(hex).expect("git prints commit ids")
}

/// Polls a source that has seen nothing yet and reads the tip.
fn first_read(source: &mut GitSource) -> Snapshot {
    let revision = match source.poll(None).expect("the first poll") {
        Poll::Changed {
            revision, previous, ..
        } => {
            assert_eq!(previous, None);
            revision
        }
        other => panic!("a first poll always changes, got {other:?}"),
    };
    source.read_tree(revision).expect("reading the tip")
}

fn paths(entries: &[(String, String)]) -> Vec<&str> {
    entries.iter().map(|(p, _)| p.as_str()).collect()
}

fn requests_since(repo: &TestRepo, before: usize) -> Vec<String> {
    server().requests(&repo.name)[before..].to_vec()
}

const WEB: &str = "kind: App\nname: web\nversion: 1.0.0\n";

// --- cost of polling --------------------------------------------------------------------------

#[test]
fn an_unchanged_remote_costs_one_ref_advertisement_and_no_fetch() {
    let repo = server().create_repo("unchanged-remote", &[("apps/web.yaml", WEB)]);
    let (mut source, _cache) = open(spec(&repo.http_url, "apps", basic_auth()));
    let first = first_read(&mut source).revision;
    assert_eq!(first, oid(&repo.head()));

    let before = server().requests(&repo.name).len();
    assert_eq!(source.remote_head().expect("remote head"), first);
    let after_head = requests_since(&repo, before);
    assert_eq!(after_head.len(), 1, "remote_head: {after_head:?}");
    assert!(
        after_head[0].starts_with("GET ") && after_head[0].contains("info/refs"),
        "remote_head only reads the ref advertisement: {after_head:?}"
    );

    let before = server().requests(&repo.name).len();
    assert_eq!(
        source.poll(Some(first)).expect("polling"),
        Poll::Unchanged(first)
    );
    let after_poll = requests_since(&repo, before);
    assert_eq!(after_poll.len(), 1, "an unchanged poll: {after_poll:?}");
    assert!(
        after_poll[0].starts_with("GET ") && after_poll[0].contains("info/refs"),
        "an unchanged poll reads the advertisement and fetches nothing: {after_poll:?}"
    );
}

#[test]
fn remote_head_downloads_no_objects() {
    let repo = server().create_repo("remote-head-no-objects", &[("apps/web.yaml", WEB)]);
    let (source, _cache) = open(spec(&repo.http_url, "apps", basic_auth()));
    let tip = source.remote_head().expect("remote head");
    assert_eq!(tip, oid(&repo.head()));
    match source.read_tree(tip) {
        Err(e @ GitError::ReadRevision { .. }) => assert!(e.to_string().contains("poll")),
        other => panic!("the cache must not have the commit before a poll: {other:?}"),
    }
}

#[test]
fn a_new_commit_is_fetched_incrementally_and_read_from_the_tree() {
    let many: Vec<(String, String)> = (0..30)
        .map(|i| (format!("apps/app{i:02}.yaml"), format!("name: app{i}\n")))
        .collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(p, c)| (p.as_str(), c.as_str())).collect();
    let repo = server().create_repo("incremental-fetch", &many);
    let (mut source, _cache) = open(spec(&repo.http_url, "apps", basic_auth()));
    let first = match source.poll(None).expect("first poll") {
        Poll::Changed {
            revision, transfer, ..
        } => {
            assert!(
                transfer.objects >= 30,
                "the first fetch is full: {transfer:?}"
            );
            revision
        }
        other => panic!("expected a change, got {other:?}"),
    };

    let second = repo.commit(
        "web 1.1.0",
        &[("apps/app00.yaml", "name: app0\nversion: 1.1.0\n")],
    );
    let before = server().requests(&repo.name).len();
    match source.poll(Some(first)).expect("second poll") {
        Poll::Changed {
            revision,
            previous,
            force_pushed,
            transfer,
        } => {
            assert_eq!(revision, oid(&second));
            assert_eq!(previous, Some(first));
            assert!(!force_pushed, "a fast-forward is not a force push");
            // One commit, the root tree, apps/ and one blob: nothing of the 29 unchanged files.
            assert!(
                transfer.objects > 0 && transfer.objects <= 4,
                "the second fetch is incremental: {transfer:?}"
            );
        }
        other => panic!("expected a change, got {other:?}"),
    }
    let requests = requests_since(&repo, before);
    let posts = requests.iter().filter(|r| r.starts_with("POST")).count();
    let gets = requests.iter().filter(|r| r.starts_with("GET")).count();
    assert_eq!(
        (gets, posts),
        (1, 1),
        "one advertisement and one upload-pack over the same connection: {requests:?}"
    );

    let snapshot = source.read_tree(oid(&second)).expect("reading the new tip");
    assert_eq!(snapshot.files.len(), 30);
    assert!(snapshot.files.contains(&(
        "apps/app00.yaml".to_owned(),
        "name: app0\nversion: 1.1.0\n".to_owned()
    )));
    assert!(snapshot.refused.is_empty(), "{:?}", snapshot.refused);
}

// --- transports and credentials ---------------------------------------------------------------

fn reads_web(url: &str, auth: Auth) {
    let (mut source, _cache) = open(spec(url, "apps", auth));
    let snapshot = first_read(&mut source);
    assert_eq!(
        snapshot.files,
        vec![("apps/web.yaml".to_owned(), WEB.to_owned())]
    );
}

#[test]
fn reads_over_http_with_basic_auth() {
    let repo = server().create_repo("http-basic", &[("apps/web.yaml", WEB)]);
    reads_web(&repo.http_url, basic_auth());
}

#[test]
fn reads_over_http_with_a_token() {
    let repo = server().create_repo("http-token", &[("apps/web.yaml", WEB)]);
    reads_web(
        &repo.http_url,
        Auth::Token(Secret::from(server().http_token.clone())),
    );
    let requests = server().requests(&repo.name);
    assert!(
        requests.iter().all(|r| r.ends_with(" x-access-token")),
        "the token is sent as x-access-token: {requests:?}"
    );
}

#[test]
fn reads_anonymously_from_a_public_http_remote() {
    let repo = server().create_repo("http-public", &[("apps/web.yaml", WEB)]);
    reads_web(&repo.http_public_url, Auth::None);
}

#[test]
fn reads_over_ssh_with_a_key_and_known_hosts() {
    let repo = server().create_repo("ssh-key", &[("apps/web.yaml", WEB)]);
    reads_web(&repo.ssh_url, ssh_auth(server().ssh_known_hosts.clone()));
}

#[test]
fn reads_over_ssh_with_a_passphrase_protected_key_and_names_no_passphrase_when_it_is_wrong() {
    let repo = server().create_repo("ssh-passphrase", &[("apps/web.yaml", WEB)]);
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("id_ed25519");
    std::fs::copy(&server().ssh_key, &key).expect("copying the key");
    std::fs::copy(
        format!("{}.pub", server().ssh_key.display()),
        dir.path().join("id_ed25519.pub"),
    )
    .expect("copying the public key");
    let passphrase = "correct horse battery 0xC0FFEE";
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", passphrase, "-f"])
        .arg(&key)
        .output()
        .expect("running ssh-keygen");
    assert!(out.status.success(), "ssh-keygen -p: {out:?}");
    let auth = |passphrase: &str| Auth::SshKey {
        username: server().ssh_user.clone(),
        private_key: key.clone(),
        passphrase: Some(Secret::from(passphrase)),
        known_hosts: server().ssh_known_hosts.clone(),
    };
    reads_web(&repo.ssh_url, auth(passphrase));

    let wrong = "not-the-passphrase-0xBAD";
    let (source, _cache) = open(spec(&repo.ssh_url, "apps", auth(wrong)));
    let err = source.remote_head().expect_err("a wrong passphrase");
    assert_eq!(err.kind(), ErrorKind::Stalled, "{err}");
    assert_names_no_secret(&err, &[wrong, passphrase]);
}

#[test]
fn reads_over_ssh_with_a_hashed_known_hosts_file() {
    // `ssh-keyscan -H` and `HashKnownHosts yes` write `|1|salt|hash` instead of the host name.
    let dir = tempfile::tempdir().expect("temp dir");
    let hashed = dir.path().join("known_hosts");
    std::fs::copy(&server().ssh_known_hosts, &hashed).expect("copying known_hosts");
    let out = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&hashed)
        .output()
        .expect("ssh-keygen runs");
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&hashed).expect("reading it back");
    assert!(text.lines().all(|l| l.starts_with("|1|")), "{text}");
    let repo = server().create_repo("ssh-hashed", &[("apps/web.yaml", WEB)]);
    reads_web(&repo.ssh_url, ssh_auth(hashed));
}

#[test]
fn reads_over_git_protocol() {
    let repo = server().create_repo("git-protocol", &[("apps/web.yaml", WEB)]);
    reads_web(&repo.git_url, Auth::None);
}

#[test]
fn reads_over_file_urls_and_plain_paths() {
    let repo = server().create_repo("file-url", &[("apps/web.yaml", WEB)]);
    reads_web(&repo.file_url(), Auth::None);
    reads_web(&repo.bare.display().to_string(), Auth::None);
}

/// The HTTPS server's certificate is signed by a CA the system does not know: refused.
#[test]
fn an_https_certificate_from_an_unknown_ca_is_refused() {
    let repo = server().create_repo("https-untrusted", &[("apps/web.yaml", WEB)]);
    let (source, _cache) = open(spec(&repo.https_url, "apps", basic_auth()));
    let err = source.remote_head().expect_err("an untrusted certificate");
    assert!(
        matches!(err, GitError::VerifyCertificate { .. }),
        "expected VerifyCertificate, got {err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Stalled);
    assert!(err.to_string().contains("SSL_CERT_FILE"), "{err}");
}

/// libgit2 reads `SSL_CERT_FILE` once, and a test cannot set it safely in a running process: the
/// test runs itself again in a child process started with it set (which is how Bosun is pointed at
/// a private CA too), and the child does the read.
#[test]
fn reads_over_https_when_ssl_cert_file_trusts_the_ca() {
    let var = |k: &str| std::env::var(k).unwrap_or_else(|_| panic!("{k} is set by the parent"));
    if std::env::var_os("BOSUN_TEST_HTTPS_URL").is_some() {
        // The child, with SSL_CERT_FILE set.
        let auth = Auth::Basic {
            username: var("BOSUN_TEST_HTTPS_USER"),
            password: Secret::from(var("BOSUN_TEST_HTTPS_PASSWORD")),
        };
        reads_web(&var("BOSUN_TEST_HTTPS_URL"), auth);
    } else {
        let repo = server().create_repo("https-trusted", &[("apps/web.yaml", WEB)]);
        let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "--exact",
                "reads_over_https_when_ssl_cert_file_trusts_the_ca",
                "--nocapture",
            ])
            .env("SSL_CERT_FILE", &server().tls_ca)
            .env("BOSUN_TEST_HTTPS_URL", &repo.https_url)
            .env("BOSUN_TEST_HTTPS_USER", &server().http_user)
            .env("BOSUN_TEST_HTTPS_PASSWORD", &server().http_password)
            .output()
            .expect("running the child test");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && stdout.contains("1 passed"),
            "child test failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn assert_names_no_secret(err: &GitError, secrets: &[&str]) {
    let shown = format!("{err}\n{err:?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret:?} leaked into: {shown}");
    }
}

#[test]
fn a_wrong_password_is_an_authentication_error_that_names_no_secret() {
    let repo = server().create_repo("wrong-password", &[("apps/web.yaml", WEB)]);
    let wrong = "not-the-password-0xC0FFEE";
    let (mut source, _cache) = open(spec(
        &repo.http_url,
        "apps",
        Auth::Basic {
            username: server().http_user.clone(),
            password: Secret::from(wrong),
        },
    ));
    let err = source.poll(None).expect_err("a wrong password");
    assert!(
        matches!(err, GitError::Authenticate { .. }),
        "expected Authenticate, got {err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Stalled);
    assert!(err.to_string().contains(&repo.http_url), "{err}");
    assert_names_no_secret(&err, &[wrong, &server().http_password]);

    let bad_token = "ghp_not-the-token-0xBADBAD";
    let (source, _cache) = open(spec(
        &repo.http_url,
        "apps",
        Auth::Token(Secret::from(bad_token)),
    ));
    let err = source.remote_head().expect_err("a wrong token");
    assert!(matches!(err, GitError::Authenticate { .. }), "{err:?}");
    assert_names_no_secret(&err, &[bad_token, &server().http_token]);
}

#[test]
fn credentials_in_the_url_never_reach_a_message() {
    let repo = server().create_repo("url-credentials", &[("apps/web.yaml", WEB)]);
    let in_url = "url-secret-0xFEED";
    let url = repo
        .http_url
        .replacen("http://", &format!("http://bosun:{in_url}@"), 1);
    let (source, _cache) = open(spec(&url, "apps", Auth::None));
    let err = source
        .remote_head()
        .expect_err("a wrong password in the URL");
    assert_eq!(err.kind(), ErrorKind::Stalled, "{err}");
    assert!(err.to_string().contains(&repo.http_url), "{err}");
    assert_names_no_secret(&err, &[in_url]);
}

#[test]
fn no_credentials_for_a_private_remote_is_an_authentication_error() {
    let repo = server().create_repo("no-credentials", &[("apps/web.yaml", WEB)]);
    let (source, _cache) = open(spec(&repo.http_url, "apps", Auth::None));
    let err = source.remote_head().expect_err("credentials are needed");
    assert!(matches!(err, GitError::Authenticate { .. }), "{err:?}");
    assert!(err.to_string().contains("none are configured"), "{err}");
}

#[test]
fn an_unknown_ssh_host_key_is_refused() {
    let repo = server().create_repo("unknown-host-key", &[("apps/web.yaml", WEB)]);
    let dir = tempfile::tempdir().expect("a temp dir");

    let empty = dir.path().join("known_hosts_empty");
    std::fs::write(&empty, "").expect("writing known_hosts");
    let (source, _cache) = open(spec(&repo.ssh_url, "apps", ssh_auth(empty.clone())));
    let err = source.remote_head().expect_err("an unknown host");
    match &err {
        GitError::VerifyHostKey {
            fingerprint,
            known_hosts,
            ..
        } => {
            assert_eq!(fingerprint, &server().ssh_host_key_sha256);
            assert_eq!(known_hosts, &empty);
        }
        other => panic!("expected VerifyHostKey, got {other:?}"),
    }
    assert_eq!(err.kind(), ErrorKind::Stalled);
    let message = err.to_string();
    assert!(message.contains("not listed"), "{err}");
    // What to do, not a limit that is no longer one: hashed entries are read.
    assert!(message.contains("ssh-keyscan -p "), "{err}");
    assert!(!message.contains("not read"), "{err}");

    // The host is listed, with another key: someone in between, or a rotated key.
    let other_key = dir.path().join("known_hosts_other");
    std::fs::write(
        &other_key,
        format!(
            "[127.0.0.1]:{} ssh-ed25519 \
             AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n",
            server().ssh_port
        ),
    )
    .expect("writing known_hosts");
    let (mut source, _cache) = open(spec(&repo.ssh_url, "apps", ssh_auth(other_key)));
    let err = source.poll(None).expect_err("a changed host key");
    assert!(matches!(err, GitError::VerifyHostKey { .. }), "{err:?}");
    assert!(err.to_string().contains("other keys"), "{err}");
}

#[test]
fn a_wrong_ssh_key_is_an_authentication_error() {
    let repo = server().create_repo("wrong-ssh-key", &[("apps/web.yaml", WEB)]);
    let dir = tempfile::tempdir().expect("a temp dir");
    let key = dir.path().join("id_ed25519");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .expect("running ssh-keygen");
    assert!(out.status.success(), "ssh-keygen failed");
    let (source, _cache) = open(spec(
        &repo.ssh_url,
        "apps",
        Auth::SshKey {
            username: server().ssh_user.clone(),
            private_key: key,
            passphrase: None,
            known_hosts: server().ssh_known_hosts.clone(),
        },
    ));
    let err = source
        .remote_head()
        .expect_err("a key the server does not know");
    assert!(
        matches!(err, GitError::Authenticate { .. }),
        "expected Authenticate, got {err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Stalled);
}

// --- failures that heal by themselves ---------------------------------------------------------

/// A loopback port nobody listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a port");
    listener.local_addr().expect("its address").port()
}

#[test]
fn an_unreachable_remote_is_a_transient_error() {
    let port = closed_port();
    for url in [
        format!("http://127.0.0.1:{port}/git/r.git"),
        format!("git://127.0.0.1:{port}/r.git"),
    ] {
        let (mut source, _cache) = open(spec(&url, "", Auth::None));
        let err = source.poll(None).expect_err("nobody listens");
        assert!(
            matches!(err, GitError::ConnectRemote { .. }),
            "{url}: expected ConnectRemote, got {err:?}"
        );
        assert_eq!(err.kind(), ErrorKind::Transient, "{err}");
    }
}

#[test]
fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding a port");
    let port = listener.local_addr().expect("its address").port();
    // Accepts connections and says nothing, for a while.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept() {
            held.push(stream);
            if held.len() == 2 {
                break;
            }
        }
        std::thread::sleep(Duration::from_secs(5));
    });
    let mut spec = spec(
        &format!("http://127.0.0.1:{port}/git/r.git"),
        "",
        Auth::None,
    );
    spec.limits.fetch_timeout = Duration::from_secs(1);
    let (mut source, _cache) = open(spec);

    let started = Instant::now();
    let err = source.poll(None).expect_err("a silent server");
    let took = started.elapsed();
    assert!(matches!(err, GitError::Timeout { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Transient);
    assert!(
        took < Duration::from_secs(3),
        "gave up after {took:?}, not ~1 s"
    );
    // The abandoned call still waits on its socket: the next one fails fast instead of piling up.
    let started = Instant::now();
    let err = source.remote_head().expect_err("still busy");
    assert!(matches!(err, GitError::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(100));
}

// --- history ----------------------------------------------------------------------------------

#[test]
fn a_force_push_is_detected_and_the_new_tip_is_read() {
    let repo = server().create_repo("force-push", &[("apps/web.yaml", WEB)]);
    let old = oid(&repo.commit(
        "web 2.0.0",
        &[("apps/web.yaml", "name: web\nversion: 2.0.0\n")],
    ));
    let (mut source, _cache) = open(spec(&repo.git_url, "apps", Auth::None));
    assert_eq!(first_read(&mut source).revision, old);

    let rewritten = oid(&repo.force_push(
        "web 2.0.1 (rewritten)",
        &[("apps/web.yaml", "name: web\nversion: 2.0.1\n")],
    ));
    match source
        .poll(Some(old))
        .expect("polling after the force push")
    {
        Poll::Changed {
            revision,
            previous,
            force_pushed,
            ..
        } => {
            assert_eq!(revision, rewritten);
            assert_eq!(previous, Some(old));
            assert!(force_pushed, "the new tip does not descend from {old}");
        }
        other => panic!("expected a change, got {other:?}"),
    }
    let snapshot = source.read_tree(rewritten).expect("reading the new tip");
    assert_eq!(
        snapshot.files,
        vec![(
            "apps/web.yaml".to_owned(),
            "name: web\nversion: 2.0.1\n".to_owned()
        )]
    );

    // A fresh cache (Bosun restarted) never saw the old commit: still a force push.
    let (mut fresh, _cache) = open(spec(&repo.git_url, "apps", Auth::None));
    match fresh.poll(Some(old)).expect("polling with a fresh cache") {
        Poll::Changed { force_pushed, .. } => assert!(force_pushed),
        other => panic!("expected a change, got {other:?}"),
    }
    // And with a fresh cache, an unchanged tip is fetched (so it can be read) but unchanged.
    let (mut fresh, _cache) = open(spec(&repo.git_url, "apps", Auth::None));
    assert_eq!(
        fresh.poll(Some(rewritten)).expect("polling"),
        Poll::Unchanged(rewritten)
    );
    fresh.read_tree(rewritten).expect("the tip is in the cache");
}

// --- what a tree may hold ---------------------------------------------------------------------

#[test]
fn a_symlink_pointing_outside_the_path_is_refused_not_followed() {
    let repo = server().create_repo(
        "symlinks",
        &[
            ("apps/web.yaml", WEB),
            ("secrets/db.yaml", "password: hunter2-in-the-repo\n"),
        ],
    );
    repo.commit_symlink("escape the repo", "apps/evil.yaml", "../../etc/passwd");
    repo.commit_symlink("escape the path", "apps/inside.yaml", "../secrets/db.yaml");
    let tip = oid(&repo.commit_symlink("a linked directory", "apps/linked", "../secrets"));

    let (mut source, _cache) = open(spec(&repo.file_url(), "apps", Auth::None));
    let snapshot = first_read(&mut source);
    assert_eq!(snapshot.revision, tip);
    assert_eq!(paths(&snapshot.files), vec!["apps/web.yaml"]);
    assert_eq!(
        paths(&snapshot.refused),
        vec!["apps/evil.yaml", "apps/inside.yaml", "apps/linked"]
    );
    for (path, reason) in &snapshot.refused {
        assert_eq!(reason, "a symbolic link; links are not followed", "{path}");
    }
    let everything = format!("{snapshot:?}");
    assert!(!everything.contains("hunter2") && !everything.contains("root:"));
}

#[test]
fn a_path_that_is_a_symlink_or_a_file_is_an_error() {
    let repo = server().create_repo(
        "path-is-link",
        &[("real/web.yaml", WEB), ("file.yaml", WEB)],
    );
    repo.commit_symlink("link the path", "apps", "real");
    let (mut source, _cache) = open(spec(&repo.file_url(), "apps", Auth::None));
    let Poll::Changed { revision, .. } = source.poll(None).expect("poll") else {
        panic!("a first poll changes")
    };
    match source.read_tree(revision) {
        Err(GitError::PathNotDirectory { path, what, .. }) => {
            assert_eq!(path, "apps");
            assert!(what.contains("symbolic link"), "{what}");
        }
        other => panic!("expected PathNotDirectory, got {other:?}"),
    }
    let (mut source, _cache) = open(spec(&repo.file_url(), "file.yaml", Auth::None));
    let revision = first_revision(&mut source);
    assert!(matches!(
        source.read_tree(revision),
        Err(GitError::PathNotDirectory { what: "a file", .. })
    ));
}

#[test]
fn an_older_commit_is_read_file_by_file_by_the_rules_of_the_tip() {
    let big = format!("data: {}\n", "x".repeat(2000));
    let repo = server().create_repo(
        "history",
        &[
            ("apps/web.yaml", WEB),
            ("apps/big.yaml", big.as_str()),
            ("secrets/db.yaml", "password: hunter2-in-the-repo\n"),
        ],
    );
    let first = oid(&repo.head());
    let removed = oid(&repo.remove("no web", &["apps/web.yaml"]));
    let linked = oid(&repo.commit_symlink("web, a link", "apps/web.yaml", "../secrets/db.yaml"));
    repo.remove("no link", &["apps/web.yaml"]);
    let again = WEB.replace("web", "web2");
    let tip = oid(&repo.commit("web again", &[("apps/web.yaml", again.as_str())]));

    let mut spec = spec(&repo.file_url(), "apps", Auth::None);
    spec.limits.max_file_bytes = 1024;
    let (mut source, _cache) = open(spec);
    assert_eq!(first_read(&mut source).revision, tip);
    let history = source.history().expect("the cache opens");
    let text_at = |commit: Oid, path: &str| {
        let id = history.file_id(commit, path).expect("reading the tree")?;
        history
            .file_text(commit, path, id)
            .expect("reading the blob")
    };

    assert_eq!(history.parents(first).expect("the root"), Vec::<Oid>::new());
    assert_eq!(history.parents(removed).expect("a commit"), [first]);
    assert_eq!(text_at(first, "apps/web.yaml").as_deref(), Some(WEB));
    assert_eq!(text_at(tip, "apps/web.yaml"), Some(again));
    assert_eq!(text_at(removed, "apps/web.yaml"), None, "missing");
    assert_eq!(
        text_at(linked, "apps/web.yaml"),
        None,
        "a link is not followed"
    );
    assert!(
        history
            .file_id(first, "apps/big.yaml")
            .expect("tree")
            .is_some()
    );
    assert_eq!(text_at(first, "apps/big.yaml"), None, "over max_file_bytes");
    assert_eq!(text_at(first, "secrets/db.yaml"), None, "outside the path");
}

fn first_revision(source: &mut GitSource) -> Oid {
    match source.poll(None).expect("poll") {
        Poll::Changed { revision, .. } | Poll::Unchanged(revision) => revision,
    }
}

#[test]
fn non_utf8_and_oversized_files_are_refused_one_by_one() {
    let big = format!("data: {}\n", "x".repeat(2000));
    let repo = server().create_repo("refused-files", &[("apps/web.yaml", WEB)]);
    repo.commit(
        "odd files",
        &[
            ("apps/latin1.yaml", b"name: caf\xe9\n".as_slice()),
            ("apps/big.yml", big.as_bytes()),
            ("apps/README.md", b"not yaml, not read".as_slice()),
            ("apps/.github/ci.yaml", b"hidden: true\n".as_slice()),
            ("apps/nested/db.YML", b"name: db\n".as_slice()),
        ],
    );
    let mut spec = spec(&repo.file_url(), "apps", Auth::None);
    spec.limits.max_file_bytes = 1024;
    let (mut source, _cache) = open(spec);
    let snapshot = first_read(&mut source);
    assert_eq!(
        paths(&snapshot.files),
        vec!["apps/nested/db.YML", "apps/web.yaml"]
    );
    assert_eq!(
        paths(&snapshot.refused),
        vec!["apps/big.yml", "apps/latin1.yaml"]
    );
    assert!(
        snapshot.refused[0].1.contains("max_file_bytes"),
        "{:?}",
        snapshot.refused
    );
    assert!(
        snapshot.refused[1].1.contains("not UTF-8"),
        "{:?}",
        snapshot.refused
    );
}

#[test]
fn too_many_files_or_bytes_is_an_error_naming_the_limit() {
    let repo = server().create_repo(
        "too-many-files",
        &[
            ("apps/a.yaml", WEB),
            ("apps/b.yaml", WEB),
            ("apps/c.yaml", WEB),
            ("apps/d.yaml", WEB),
        ],
    );
    let mut few_files = spec(&repo.file_url(), "apps", Auth::None);
    few_files.limits.max_files = 3;
    let (mut source, _cache) = open(few_files);
    let revision = first_revision(&mut source);
    let err = source
        .read_tree(revision)
        .expect_err("4 files over a limit of 3");
    assert!(
        matches!(
            err,
            GitError::LimitExceeded {
                limit: Limit::Files,
                allowed: 3,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.kind(), ErrorKind::Stalled);
    assert!(err.to_string().contains("max_files"), "{err}");

    let mut few_bytes = spec(&repo.file_url(), "apps", Auth::None);
    few_bytes.limits.max_total_bytes = (WEB.len() * 3) as u64;
    let (mut source, _cache) = open(few_bytes);
    let revision = first_revision(&mut source);
    let err = source
        .read_tree(revision)
        .expect_err("4 files over 3 files' bytes");
    assert!(
        matches!(
            err,
            GitError::LimitExceeded {
                limit: Limit::TotalBytes,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("max_total_bytes"), "{err}");

    // Exactly at the limits is fine.
    let mut at_limit = spec(&repo.file_url(), "apps", Auth::None);
    at_limit.limits.max_files = 4;
    at_limit.limits.max_total_bytes = (WEB.len() * 4) as u64;
    let (mut source, _cache) = open(at_limit);
    assert_eq!(first_read(&mut source).files.len(), 4);
}

#[test]
fn a_missing_branch_and_a_missing_path_are_clear_errors() {
    let repo = server().create_repo("missing-things", &[("apps/web.yaml", WEB)]);
    let mut release = spec(&repo.http_url, "apps", basic_auth());
    release.branch = "release".to_owned();
    let (mut source, _cache) = open(release);
    let err = source.poll(None).expect_err("no branch release");
    assert!(matches!(err, GitError::FindBranch { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("release") && msg.contains("it has: main"),
        "{msg}"
    );
    assert_eq!(err.kind(), ErrorKind::Stalled);

    let (mut source, _cache) = open(spec(&repo.http_url, "deploy/prod", basic_auth()));
    let revision = first_revision(&mut source);
    let err = source.read_tree(revision).expect_err("no directory deploy");
    assert!(matches!(err, GitError::PathNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("\"deploy\""), "{err}");
    assert_eq!(err.kind(), ErrorKind::Stalled);

    let missing_repo = repo.http_url.replace("missing-things", "no-such-repo");
    let (source, _cache) = open(spec(&missing_repo, "", basic_auth()));
    let err = source.remote_head().expect_err("no such repository");
    assert!(matches!(err, GitError::FindRepository { .. }), "{err:?}");
    assert_eq!(err.kind(), ErrorKind::Stalled);
}
