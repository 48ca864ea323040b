//! Push webhooks: a signed request from the forge makes Bosun poll that repository at once.
//!
//! The signature is checked on the raw body before anything else is read from it: GitHub's and Gitea's
//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`, Gitea's older `X-Gitea-Signature: <hex>`, or GitLab's
//! `X-Gitlab-Token: <secret>`; all compared in constant time. The body is capped before it is read. A bad
//! or missing signature gets 401 and does nothing. Polling stays on as the backstop: forges do not
//! redeliver a webhook that was lost.
//!
//! Pull request events wake the plan previews. A new comment on a pull request (GitHub's and Gitea's
//! `issue_comment`, GitLab's `Note Hook` on a merge request) that holds a `/bosun` command is handed,
//! with its delivery id, to the leader's [`crate::commands`] task over a channel: the forge gets 202 at
//! once, and the command is acted on in the background.
//!
//! With several replicas behind one Service, the forge's request may reach a standby, which does not
//! sync. A standby forwards a verified push, byte for byte with its signature headers, to the leader
//! named in the Lease ([`crate::leader::ANNOTATION_LEADER_URL`]); the leader checks the signature again.
//! A forwarded request carries `X-Bosun-Forwarded` and is never forwarded twice; a replica that gets
//! one without leading answers 503. The standby signs what it forwards itself (`X-Hub-Signature-256`
//! with the shared secret), so a GitLab token is never sent on, and it forwards only to a plain
//! `http://host:port` URL, never to a link-local, multicast or unspecified address.

use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::{Notify, mpsc};

use crate::commands::CommentEvent;
use crate::leader::Fence;

/// The largest webhook body read. GitHub caps payloads at 25 MB; a push of definitions is far smaller.
pub const DEFAULT_MAX_BODY: usize = 5 * 1024 * 1024;

/// The shared secret of the webhook (secrecy's: never printed, zeroed when dropped).
pub type WebhookSecret = secrecy::SecretSlice<u8>;

/// A watched repository and branch, and how to wake its poller.
#[derive(Clone, Debug)]
pub struct Watched {
    /// The repository, normalised by [`normalize_repo_url`].
    pub repo: String,
    pub branch: String,
    pub wake: Arc<Notify>,
    /// Wakes the source's plan previews: a pull request into the branch was opened or pushed to.
    pub pull_requests: Arc<Notify>,
}

/// How a standby reaches the leader: this replica's fence (is it the leader? where is the leader?)
/// and its identity, sent along in `X-Bosun-Forwarded`.
#[derive(Clone, Debug)]
pub struct Forwarding {
    pub fence: Arc<Fence>,
    pub identity: String,
}

/// The header that marks a webhook a standby forwarded.
pub const FORWARDED_HEADER: &str = "x-bosun-forwarded";

/// The request headers a forwarded webhook keeps: what the leader needs to read it. Signatures are not
/// among them: the standby signs the body itself.
const FORWARDED_HEADERS: [&str; 8] = [
    "content-type",
    "x-github-event",
    "x-gitea-event",
    "x-gitlab-event",
    "x-github-delivery",
    "x-gitea-delivery",
    "x-gitlab-event-uuid",
    "idempotency-key",
];

/// How long a standby waits for the leader to take a forwarded webhook.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a client may take to send a webhook's body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
struct WebhookState {
    secret: WebhookSecret,
    watched: Arc<Vec<Watched>>,
    forwarding: Option<Forwarding>,
    max_body: usize,
    /// Where verified comment commands go (the leader's [`crate::commands`] task); `None`: off.
    commands: Option<mpsc::Sender<CommentEvent>>,
}

/// The webhook route, `POST /webhook`, for every forge. With `forwarding`, a replica that does not
/// lead forwards the pushes it receives to the leader.
pub fn router(
    secret: WebhookSecret,
    watched: Vec<Watched>,
    max_body: usize,
    forwarding: Option<Forwarding>,
) -> Router {
    router_with_commands(secret, watched, max_body, forwarding, None)
}

/// [`router`], handing the verified comment commands on pull requests to `commands`.
pub fn router_with_commands(
    secret: WebhookSecret,
    watched: Vec<Watched>,
    max_body: usize,
    forwarding: Option<Forwarding>,
    commands: Option<mpsc::Sender<CommentEvent>>,
) -> Router {
    Router::new()
        .route("/webhook", post(receive))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(WebhookState {
            secret,
            watched: Arc::new(watched),
            forwarding,
            max_body,
            commands,
        })
}

async fn receive(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Body,
) -> (StatusCode, String) {
    // The body is read within a deadline and a size cap, before anything else is done with it.
    let body: Bytes = match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        axum::body::to_bytes(body, state.max_body),
    )
    .await
    {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let too_large = e
                .into_inner()
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            return if too_large {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the body is over {} bytes\n", state.max_body),
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    "the body could not be read\n".into(),
                )
            };
        }
        Err(_) => {
            return (
                StatusCode::REQUEST_TIMEOUT,
                format!("the body did not arrive within {BODY_READ_TIMEOUT:?}\n"),
            );
        }
    };
    if let Err(why) = verify(&state.secret, &headers, &body) {
        tracing::warn!(reason = why, "webhook refused");
        return (StatusCode::UNAUTHORIZED, format!("{why}\n"));
    }
    let event = headers
        .get("x-github-event")
        .or_else(|| headers.get("x-gitea-event"))
        .or_else(|| headers.get("x-gitlab-event"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("push");
    if event == "ping" {
        return (StatusCode::OK, "pong\n".into());
    }
    // Gitea sends a comment on a pull request as `issue_comment` too (with `is_pull`).
    if matches!(event, "issue_comment" | "Note Hook") {
        return receive_comment(&state, &headers, &body).await;
    }
    let pull_request = matches!(event, "pull_request" | "Merge Request Hook");
    if !pull_request && !matches!(event, "push" | "Push Hook") {
        return (StatusCode::OK, format!("ignored event {event:?}\n"));
    }
    let parsed = if pull_request {
        Push::parse_pull_request(&body)
    } else {
        Push::parse(&body)
    };
    let Some(push) = parsed else {
        return (
            StatusCode::BAD_REQUEST,
            format!("not a {event} event: expected its branch and repository\n"),
        );
    };
    let mut woken = 0;
    for w in state.watched.iter() {
        if push.branch.as_deref() == Some(w.branch.as_str()) && push.repos.contains(&w.repo) {
            if pull_request {
                w.pull_requests.notify_one();
            } else {
                w.wake.notify_one();
            }
            woken += 1;
        }
    }
    tracing::info!(event, repos = ?push.repos, branch = ?push.branch, woken, "webhook received");
    match standby(&state, &headers) {
        Some(Err(refused)) => return refused,
        // A push not forwarded is read by the leader's next poll all the same.
        Some(Ok(f)) if woken > 0 => {
            return forward(f, &state.secret, &headers, &body)
                .await
                .unwrap_or_else(|not_forwarded| not_forwarded);
        }
        Some(Ok(_)) | None => {}
    }
    if woken == 0 {
        (
            StatusCode::OK,
            "no source watches this repository and branch\n".into(),
        )
    } else {
        let doing = if pull_request {
            "previewing the pull requests of"
        } else {
            "polling"
        };
        (
            StatusCode::ACCEPTED,
            format!("{doing} {woken} source(s) now\n"),
        )
    }
}

/// On a standby, how to forward (`Ok`), or the 503 for a request a replica already forwarded here,
/// taking this one for the leader, which it is not (any more). `None` on the leader.
fn standby<'a>(
    state: &'a WebhookState,
    headers: &HeaderMap,
) -> Option<Result<&'a Forwarding, (StatusCode, String)>> {
    let f = state.forwarding.as_ref().filter(|f| !f.fence.is_leader())?;
    Some(if headers.contains_key(FORWARDED_HEADER) {
        Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "this replica is not the leader\n".into(),
        ))
    } else {
        Ok(f)
    })
}

/// A verified comment event: a command on a pull request of a watched repository goes to the
/// commands task (on the leader) or is forwarded (by a standby); anything else is ignored.
async fn receive_comment(
    state: &WebhookState,
    headers: &HeaderMap,
    body: &[u8],
) -> (StatusCode, String) {
    let Some(comment) = parse_comment(headers, body) else {
        return (
            StatusCode::OK,
            "ignored: not a new comment on a pull request\n".into(),
        );
    };
    if crate::commands::parse(&comment.body).is_none() {
        return (StatusCode::OK, "ignored: not a /bosun command\n".into());
    }
    let watched = state
        .watched
        .iter()
        .any(|w| comment.repos.contains(&w.repo));
    if !watched {
        return (StatusCode::OK, "no source watches this repository\n".into());
    }
    tracing::info!(pr = comment.pr, delivery = %bosun_core::shown::cut(&comment.delivery), "comment command received");
    match standby(state, headers) {
        Some(Err(refused)) => return refused,
        // A command not forwarded would be lost: the forge is told to deliver it again.
        Some(Ok(f)) => {
            return forward(f, &state.secret, headers, body)
                .await
                .unwrap_or_else(|(_, why)| {
                    let why = why.replace(
                        "the leader reads the push at its next poll",
                        "the command was not carried out: redeliver it once the leader is reachable",
                    );
                    (StatusCode::SERVICE_UNAVAILABLE, why)
                });
        }
        None => {}
    }
    let Some(commands) = &state.commands else {
        return (
            StatusCode::OK,
            "comment commands are off: Bosun has no forge to answer on (--forge)\n".into(),
        );
    };
    match commands.try_send(comment) {
        Ok(()) => (StatusCode::ACCEPTED, "command handed over\n".into()),
        Err(e) => {
            tracing::warn!(error = %e, "a comment command was dropped: the queue is full or closed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "busy: the command was not taken; redeliver it\n".into(),
            )
        }
    }
}

/// A new comment on a pull request: GitHub's and Gitea's `issue_comment` (`action: created` on an
/// issue with `pull_request`, or Gitea's `is_pull: true`), GitLab's `Note Hook` on a `MergeRequest`.
/// `None` for anything else (an issue, an edit, a deletion).
fn parse_comment(headers: &HeaderMap, body: &[u8]) -> Option<CommentEvent> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let str_at = |p: &str| v.pointer(p).and_then(|x| x.as_str());
    let u64_at = |p: &str| v.pointer(p).and_then(serde_json::Value::as_u64);
    let (pr, comment_id, text, login, id) = if let Some(note) = v.get("object_attributes") {
        if note.get("noteable_type").and_then(|t| t.as_str()) != Some("MergeRequest")
            || note
                .get("action")
                .and_then(|a| a.as_str())
                .is_some_and(|a| a != "create")
        {
            return None;
        }
        (
            u64_at("/merge_request/iid")?,
            u64_at("/object_attributes/id")?,
            str_at("/object_attributes/note")?,
            str_at("/user/username")?,
            u64_at("/user/id").or_else(|| u64_at("/object_attributes/author_id")),
        )
    } else {
        let on_pull = v
            .pointer("/issue/pull_request")
            .is_some_and(|p| !p.is_null())
            || v.get("is_pull").and_then(serde_json::Value::as_bool) == Some(true);
        if !on_pull || str_at("/action") != Some("created") {
            return None;
        }
        (
            u64_at("/issue/number")?,
            u64_at("/comment/id")?,
            str_at("/comment/body")?,
            str_at("/comment/user/login")?,
            u64_at("/comment/user/id"),
        )
    };
    let delivery = [
        "x-github-delivery",
        "x-gitea-delivery",
        "x-gitlab-event-uuid",
        "idempotency-key",
    ]
    .iter()
    .find_map(|h| headers.get(*h).and_then(|x| x.to_str().ok()))
    .filter(|d| !d.is_empty())
    .map_or_else(|| format!("comment-{comment_id}"), str::to_string);
    Some(CommentEvent {
        delivery,
        repos: Push::repos(&v)?,
        pr,
        comment_id,
        author: crate::forge::client::Commenter {
            login: login.to_string(),
            id,
        },
        body: text.to_string(),
    })
}

/// A standby hands a verified push to the leader. Whatever happens, the forge gets 202: the push is
/// known, and the leader's poll reads it at the latest.
/// Whether `url` is somewhere a leader can be: `http://host:port`, nothing more, and not a link-local,
/// multicast or unspecified address (the Lease annotation is data, not a command).
fn leader_url_is_plain(url: &str) -> Result<(), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let authority = uri.authority().ok_or("no host")?;
    if uri.scheme_str() != Some("http") || authority.as_str().contains('@') {
        return Err("only http://host:port is forwarded to".into());
    }
    if uri
        .path_and_query()
        .is_some_and(|p| p.as_str() != "/" && !p.as_str().is_empty())
    {
        return Err("a path or query is not forwarded to".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        let link_local = match ip {
            std::net::IpAddr::V4(v4) => v4.is_link_local() || v4.is_broadcast(),
            std::net::IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
        };
        if link_local || ip.is_multicast() || ip.is_unspecified() {
            return Err(format!("{ip} is not an address a leader listens on"));
        }
    }
    Ok(())
}

async fn forward(
    f: &Forwarding,
    secret: &WebhookSecret,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(StatusCode, String), (StatusCode, String)> {
    let Some(leader) = f.fence.leader_url() else {
        tracing::warn!(
            "webhook received by a standby, and the leader advertised no URL (--advertise-url): the \
             leader reads the push at its next poll"
        );
        return Err((
            StatusCode::ACCEPTED,
            "this replica is a standby and the leader advertised no URL; the leader reads the push \
             at its next poll\n"
                .into(),
        ));
    };
    if let Err(why) = leader_url_is_plain(&leader) {
        tracing::warn!(leader = %leader, reason = %why, "the Lease names a leader URL Bosun does not forward to; the leader reads the push at its next poll");
        return Err((
            StatusCode::ACCEPTED,
            format!(
                "this replica is a standby and does not forward to {leader:?} ({why}); the leader \
                 reads the push at its next poll\n"
            ),
        ));
    }
    let signature = {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret())
            .expect("HMAC takes a key of any length");
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let mut kept: Vec<(&str, &str)> = FORWARDED_HEADERS
        .iter()
        .filter_map(|name| Some((*name, headers.get(*name)?.to_str().ok()?)))
        .collect();
    kept.push(("x-hub-signature-256", signature.as_str()));
    kept.push((FORWARDED_HEADER, f.identity.as_str()));
    let url = format!("{}/webhook", leader.trim_end_matches('/'));
    match crate::http_client::post(&url, &kept, body, FORWARD_TIMEOUT).await {
        Ok(code) if (200..300).contains(&code) => {
            tracing::info!(leader = %url, code, "webhook forwarded to the leader");
            Ok((
                StatusCode::ACCEPTED,
                format!("forwarded to the leader at {url}, which answered {code}\n"),
            ))
        }
        Ok(code) => {
            tracing::warn!(leader = %url, code, "the leader refused a forwarded webhook (another secret? not the leader any more?); it reads the push at its next poll");
            Err((
                StatusCode::ACCEPTED,
                format!(
                    "this replica is a standby; the leader at {url} answered {code}; the leader \
                     reads the push at its next poll\n"
                ),
            ))
        }
        Err(error) => {
            tracing::warn!(leader = %url, %error, "forwarding a webhook to the leader failed; it reads the push at its next poll");
            Err((
                StatusCode::ACCEPTED,
                format!(
                    "this replica is a standby and could not reach the leader at {url} ({error}); \
                     the leader reads the push at its next poll\n"
                ),
            ))
        }
    }
}

/// Checks the request's signature against the raw body.
///
/// # Errors
/// A short reason, safe to return to the caller (it never holds the secret).
pub fn verify(
    secret: &WebhookSecret,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), &'static str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(sig) = header("x-hub-signature-256") {
        let hex_sig = sig
            .strip_prefix("sha256=")
            .ok_or("X-Hub-Signature-256 must start with sha256=")?;
        return check_hmac(secret, body, hex_sig);
    }
    if let Some(sig) = header("x-gitea-signature") {
        return check_hmac(secret, body, sig);
    }
    if let Some(token) = header("x-gitlab-token") {
        return if bool::from(token.as_bytes().ct_eq(secret.expose_secret())) {
            Ok(())
        } else {
            Err("X-Gitlab-Token does not match")
        };
    }
    Err("missing signature: expected X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token")
}

fn check_hmac(secret: &WebhookSecret, body: &[u8], hex_sig: &str) -> Result<(), &'static str> {
    let given = hex::decode(hex_sig.trim()).map_err(|_| "signature is not hexadecimal")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret())
        .expect("HMAC takes a key of any length");
    mac.update(body);
    // verify_slice compares in constant time.
    mac.verify_slice(&given)
        .map_err(|_| "signature does not match the body")
}

/// The parts of a push (or pull request) event Bosun uses.
#[derive(Debug, PartialEq, Eq)]
struct Push {
    /// Every URL the forge gave for the repository, normalised.
    repos: Vec<String>,
    /// The branch pushed to (for a pull request: the branch it merges into).
    branch: Option<String>,
}

impl Push {
    fn parse(body: &[u8]) -> Option<Push> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let git_ref = v.get("ref")?.as_str()?;
        Some(Push {
            repos: Push::repos(&v)?,
            branch: git_ref.strip_prefix("refs/heads/").map(str::to_string),
        })
    }

    /// A pull request event: GitHub's and Gitea's `pull_request.base.ref`, GitLab's
    /// `object_attributes.target_branch`.
    fn parse_pull_request(body: &[u8]) -> Option<Push> {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let base = v
            .pointer("/pull_request/base/ref")
            .or_else(|| v.pointer("/object_attributes/target_branch"))?
            .as_str()?;
        Some(Push {
            repos: Push::repos(&v)?,
            branch: Some(base.to_string()),
        })
    }

    /// Every URL of the repository: GitHub's and Gitea's `repository`; GitLab's `project` and its
    /// older `repository` (whose `url` is the SSH one), both read.
    fn repos(v: &serde_json::Value) -> Option<Vec<String>> {
        let objects: Vec<&serde_json::Value> = ["repository", "project"]
            .iter()
            .filter_map(|k| v.get(*k))
            .collect();
        if objects.is_empty() {
            return None;
        }
        let mut repos: Vec<String> = Vec::new();
        for repo in objects {
            for k in [
                "clone_url",
                "ssh_url",
                "git_url",
                "html_url",
                "git_http_url",
                "git_ssh_url",
                "url",
            ] {
                if let Some(u) = repo.get(k).and_then(|u| u.as_str()) {
                    let u = normalize_repo_url(u);
                    if !repos.contains(&u) {
                        repos.push(u);
                    }
                }
            }
        }
        Some(repos)
    }
}

/// Reduces a repository URL to `host/path` so the forms of one repository compare equal:
/// `https://user@github.com/org/app.git`, `git@github.com:org/app`, `ssh://git@github.com:22/org/app.git`
/// all become `github.com/org/app`. The port is dropped (HTTP and SSH of one forge differ in it). The
/// same parser reads a source's URL ([`crate::git::repository_of`]), so a push always finds its source.
pub fn normalize_repo_url(url: &str) -> String {
    crate::git::repository_of(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_github_push_names_its_repository_and_branch() {
        let body = br#"{"ref":"refs/heads/main","after":"abc","repository":{"clone_url":"https://github.com/org/app.git","ssh_url":"git@github.com:org/app.git"}}"#;
        let push = Push::parse(body).expect("a push");
        assert_eq!(push.branch.as_deref(), Some("main"));
        assert!(push.repos.contains(&"github.com/org/app".to_string()));
    }

    #[test]
    fn a_gitlab_hook_names_its_project_by_every_url_of_project_and_repository() {
        // GitLab's Push Hook as documented: `repository.url` is the SSH URL, `project.git_http_url`
        // the HTTP one a source usually watches; a Note Hook's `repository` has no HTTP URL at all.
        let body = br#"{"object_kind":"push","ref":"refs/heads/main","repository":{"name":"apps","url":"git@gitlab.example.com:platform/web/apps.git","homepage":"https://gitlab.example.com/platform/web/apps"},"project":{"git_http_url":"https://gitlab.example.com:8443/platform/web/apps.git","git_ssh_url":"git@gitlab.example.com:platform/web/apps.git"}}"#;
        let push = Push::parse(body).expect("a push");
        assert_eq!(push.branch.as_deref(), Some("main"));
        assert_eq!(
            push.repos,
            vec!["gitlab.example.com/platform/web/apps".to_string()]
        );
        let mirror = br#"{"ref":"refs/heads/main","repository":{"url":"git@ssh.gitlab.example.com:platform/web/apps.git"},"project":{"git_http_url":"https://gitlab.example.com/platform/web/apps.git"}}"#;
        let push = Push::parse(mirror).expect("a push");
        assert!(
            push.repos
                .contains(&"gitlab.example.com/platform/web/apps".to_string()),
            "{:?}",
            push.repos
        );
        assert!(Push::parse(br#"{"ref":"refs/heads/main"}"#).is_none());
    }

    #[test]
    fn signatures_are_checked_against_the_body() {
        let secret = WebhookSecret::from(b"s3cret".to_vec());
        let body = b"{}";
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").expect("key");
        mac.update(body);
        let good = hex::encode(mac.finalize().into_bytes());
        let mut h = HeaderMap::new();
        h.insert(
            "x-hub-signature-256",
            format!("sha256={good}").parse().expect("header"),
        );
        assert_eq!(verify(&secret, &h, body), Ok(()));
        assert_eq!(
            verify(&secret, &h, b"{ }"),
            Err("signature does not match the body")
        );
        let mut gitea = HeaderMap::new();
        gitea.insert("x-gitea-signature", good.parse().expect("header"));
        assert_eq!(verify(&secret, &gitea, body), Ok(()));
        let mut gitlab = HeaderMap::new();
        gitlab.insert("x-gitlab-token", "wrong".parse().expect("header"));
        assert!(verify(&secret, &gitlab, body).is_err());
        assert!(verify(&secret, &HeaderMap::new(), body).is_err());
        assert!(!format!("{secret:?}").contains("s3cret"));
    }

    #[test]
    fn only_a_plain_http_host_and_port_is_forwarded_to() {
        for ok in [
            "http://10.0.0.7:8080",
            "http://127.0.0.1:9000/",
            "http://[fd00::7]:8080",
            "http://bosun-0.bosun:8080",
        ] {
            assert_eq!(leader_url_is_plain(ok), Ok(()), "{ok}");
        }
        for bad in [
            "https://10.0.0.7:8080",
            "http://user:pw@10.0.0.7:8080",
            "http://10.0.0.7:8080/hook",
            "http://10.0.0.7:8080/?x=1",
            "http://169.254.169.254",
            "http://[fe80::1]:8080",
            "http://0.0.0.0:8080",
            "http://224.0.0.1:8080",
            "not a url",
        ] {
            assert!(leader_url_is_plain(bad).is_err(), "{bad}");
        }
    }
}
