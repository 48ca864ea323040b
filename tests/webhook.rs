//! The webhook receiver as a forge reaches it: a real HTTP server on loopback, raw requests.

use std::sync::Arc;
use std::time::Duration;

use bosun::commands::CommentEvent;
use bosun::webhook::{self, Watched, WebhookSecret, normalize_repo_url};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

const SECRET: &str = "webhook-test-secret";
/// The server's header read timeout in these tests (Bosun's own is 10 s).
const HEADER_TIMEOUT: Duration = Duration::from_millis(500);
const REPO: &str = "http://127.0.0.1:9/git/apps.git";

struct Server {
    addr: std::net::SocketAddr,
    wake: Arc<Notify>,
    pull_requests: Arc<Notify>,
    /// What the webhook hands the comment commands task.
    commands: tokio::sync::Mutex<mpsc::Receiver<CommentEvent>>,
}

async fn start(max_body: usize) -> Server {
    start_with(max_body, None).await
}

async fn start_with(max_body: usize, forwarding: Option<webhook::Forwarding>) -> Server {
    let wake = Arc::new(Notify::new());
    let pull_requests = Arc::new(Notify::new());
    let watched = vec![Watched {
        repo: normalize_repo_url(REPO),
        branch: "main".into(),
        wake: wake.clone(),
        pull_requests: pull_requests.clone(),
    }];
    let (tx, rx) = mpsc::channel(8);
    let app = webhook::router_with_commands(
        WebhookSecret::from(SECRET.as_bytes().to_vec()),
        watched,
        max_body,
        forwarding,
        Some(tx),
    );
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(bosun::run::serve(listener, app, HEADER_TIMEOUT));
    Server {
        addr,
        wake,
        pull_requests,
        commands: tokio::sync::Mutex::new(rx),
    }
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn push_body(repo: &str, branch: &str) -> Vec<u8> {
    serde_json::json!({
        "ref": format!("refs/heads/{branch}"),
        "after": "0123456789abcdef0123456789abcdef01234567",
        "repository": {"clone_url": repo, "full_name": "team/apps"}
    })
    .to_string()
    .into_bytes()
}

/// Sends one request and returns the status code and body.
async fn post(server: &Server, headers: &[(&str, String)], body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let mut req = format!(
        "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.expect("write head");
    // A server that refuses early may close before the whole body is sent.
    let _ = stream.write_all(body).await;
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

async fn woken(server: &Server) -> bool {
    tokio::time::timeout(Duration::from_millis(300), server.wake.notified())
        .await
        .is_ok()
}

#[tokio::test]
async fn a_signed_push_to_a_watched_branch_triggers_a_poll_at_once() {
    let server = start(webhook::DEFAULT_MAX_BODY).await;
    let body = push_body(REPO, "main");
    let (status, text) = post(
        &server,
        &[
            ("X-GitHub-Event", "push".into()),
            ("X-Hub-Signature-256", sign(&body)),
        ],
        &body,
    )
    .await;
    assert_eq!(status, 202, "{text}");
    assert!(woken(&server).await, "the poller was woken");
}

#[tokio::test]
async fn a_bad_signature_gets_401_and_does_nothing() {
    let server = start(webhook::DEFAULT_MAX_BODY).await;
    let body = push_body(REPO, "main");
    let forged = sign(b"another body");
    let (status, text) = post(&server, &[("X-Hub-Signature-256", forged)], &body).await;
    assert_eq!(status, 401);
    assert!(text.contains("does not match"), "{text}");
    assert!(!text.contains(SECRET));
    assert!(!woken(&server).await);
}

#[tokio::test]
async fn a_missing_signature_gets_401_and_does_nothing() {
    let server = start(webhook::DEFAULT_MAX_BODY).await;
    let body = push_body(REPO, "main");
    let (status, _) = post(&server, &[("X-GitHub-Event", "push".into())], &body).await;
    assert_eq!(status, 401);
    assert!(!woken(&server).await);
}

#[tokio::test]
async fn an_oversized_body_is_refused_before_it_is_read() {
    let server = start(1024).await;
    let mut body = push_body(REPO, "main");
    body.extend(std::iter::repeat_n(b' ', 4096));
    let (status, _) = post(&server, &[("X-Hub-Signature-256", sign(&body))], &body).await;
    assert_eq!(status, 413);
    assert!(!woken(&server).await);
}

#[tokio::test]
async fn a_push_to_another_branch_or_repository_wakes_nothing() {
    let server = start(webhook::DEFAULT_MAX_BODY).await;
    for body in [
        push_body(REPO, "feature"),
        push_body("https://github.com/other/repo.git", "main"),
    ] {
        let (status, text) = post(&server, &[("X-Hub-Signature-256", sign(&body))], &body).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("no source watches"), "{text}");
    }
    assert!(!woken(&server).await);
}

#[tokio::test]
async fn gitlab_and_gitea_forms_are_accepted() {
    let server = start(webhook::DEFAULT_MAX_BODY).await;
    let gitlab = serde_json::json!({"ref": "refs/heads/main", "project": {"git_http_url": REPO}})
        .to_string()
        .into_bytes();
    let (status, _) = post(
        &server,
        &[
            ("X-Gitlab-Event", "Push Hook".into()),
            ("X-Gitlab-Token", SECRET.into()),
        ],
        &gitlab,
    )
    .await;
    assert_eq!(status, 202);
    assert!(woken(&server).await);
    let body = push_body(REPO, "main");
    let hex_sig = sign(&body).trim_start_matches("sha256=").to_string();
    let (status, _) = post(
        &server,
        &[
            ("X-Gitea-Event", "push".into()),
            ("X-Gitea-Signature", hex_sig),
        ],
        &body,
    )
    .await;
    assert_eq!(status, 202);
    assert!(woken(&server).await);
}

async fn previews_woken(server: &Server) -> bool {
    tokio::time::timeout(Duration::from_millis(300), server.pull_requests.notified())
        .await
        .is_ok()
}

#[tokio::test]
async fn a_pull_request_into_the_watched_branch_wakes_its_previews_and_no_poll() {
    let server = start(webhook::DEFAULT_MAX_BODY).await;
    let github = serde_json::json!({
        "action": "synchronize",
        "number": 7,
        "pull_request": {"number": 7, "base": {"ref": "main"}, "head": {"ref": "bump", "sha": "0123456789abcdef0123456789abcdef01234567"}},
        "repository": {"clone_url": REPO, "full_name": "team/apps"}
    })
    .to_string()
    .into_bytes();
    let (status, text) = post(
        &server,
        &[
            ("X-GitHub-Event", "pull_request".into()),
            ("X-Hub-Signature-256", sign(&github)),
        ],
        &github,
    )
    .await;
    assert_eq!(status, 202, "{text}");
    assert!(text.contains("previewing"), "{text}");
    assert!(previews_woken(&server).await, "the previews were woken");
    assert!(!woken(&server).await, "no poll of the branch");

    let gitlab = serde_json::json!({
        "object_kind": "merge_request",
        "project": {"git_http_url": REPO},
        "object_attributes": {"iid": 7, "target_branch": "main", "source_branch": "bump"}
    })
    .to_string()
    .into_bytes();
    let (status, _) = post(
        &server,
        &[
            ("X-Gitlab-Event", "Merge Request Hook".into()),
            ("X-Gitlab-Token", SECRET.into()),
        ],
        &gitlab,
    )
    .await;
    assert_eq!(status, 202);
    assert!(previews_woken(&server).await);

    // Into another branch: nothing.
    let other = String::from_utf8(github)
        .expect("UTF-8")
        .replace("\"ref\":\"main\"", "\"ref\":\"release\"")
        .into_bytes();
    let (status, text) = post(
        &server,
        &[
            ("X-GitHub-Event", "pull_request".into()),
            ("X-Hub-Signature-256", sign(&other)),
        ],
        &other,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert!(!previews_woken(&server).await);
}

#[tokio::test]
async fn a_ping_is_answered() {
    let server = start(webhook::DEFAULT_MAX_BODY).await;
    let body = b"{\"zen\":\"hi\"}";
    let (status, text) = post(
        &server,
        &[
            ("X-GitHub-Event", "ping".into()),
            ("X-Hub-Signature-256", sign(body)),
        ],
        body,
    )
    .await;
    assert_eq!((status, text.as_str()), (200, "pong\n"));
}

/// A replica that does not hold the lease (its fence is closed), as in a Deployment of two; the
/// Lease names `leader_url` as the leader's.
async fn standby_of(leader_url: Option<String>) -> Server {
    let fence = bosun::leader::Fence::closed();
    fence.set_leader_url(leader_url);
    let forwarding = webhook::Forwarding {
        fence,
        identity: "bosun-standby".into(),
    };
    start_with(webhook::DEFAULT_MAX_BODY, Some(forwarding)).await
}

async fn standby() -> Server {
    standby_of(None).await
}

/// The replica that holds the lease.
async fn leader() -> Server {
    let forwarding = webhook::Forwarding {
        fence: bosun::leader::Fence::always(),
        identity: "bosun-leader".into(),
    };
    start_with(webhook::DEFAULT_MAX_BODY, Some(forwarding)).await
}

#[tokio::test]
async fn a_standby_whose_leader_advertised_no_url_accepts_and_says_the_poll_will_read_it() {
    let server = standby().await;
    let body = push_body(REPO, "main");
    let (status, text) = post(&server, &[("X-Hub-Signature-256", sign(&body))], &body).await;
    assert_eq!(status, 202, "{text}");
    assert!(
        text.contains("standby") && text.contains("next poll"),
        "{text}"
    );
}

#[tokio::test]
async fn a_standby_forwards_nothing_unsigned() {
    let server = standby().await;
    let body = push_body(REPO, "main");
    let (status, _) = post(&server, &[("X-GitHub-Event", "push".into())], &body).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_forwarded_push_is_never_forwarded_again_and_a_standby_says_it_does_not_lead() {
    let body = push_body(REPO, "main");
    let headers = [
        ("X-Hub-Signature-256", sign(&body)),
        (webhook::FORWARDED_HEADER, "bosun-other".into()),
    ];
    let leading = leader().await;
    let (status, text) = post(&leading, &headers, &body).await;
    assert_eq!(status, 202, "{text}");
    assert!(text.contains("polling 1 source(s) now"), "{text}");
    assert!(woken(&leading).await);
    // Sent to a replica that no longer (or never) led: the sender learns it.
    let (status, text) = post(&standby().await, &headers, &body).await;
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("not the leader"), "{text}");
}

#[tokio::test]
async fn a_standby_forwards_a_gitlab_push_signed_by_itself_and_the_leader_takes_it() {
    let leading = leader().await;
    let standby = standby_of(Some(format!("http://{}", leading.addr))).await;
    let body = push_body(REPO, "main");
    // GitLab sends the secret itself; the standby never passes it on, it signs the body instead.
    let (status, text) = post(
        &standby,
        &[
            ("X-Gitlab-Event", "Push Hook".into()),
            ("X-Gitlab-Token", SECRET.into()),
        ],
        &body,
    )
    .await;
    assert_eq!(status, 202, "{text}");
    assert!(
        text.contains("forwarded to the leader") && text.contains("answered 202"),
        "{text}"
    );
    assert!(woken(&leading).await, "the leader polls at once");
}

#[tokio::test]
async fn a_standby_does_not_forward_to_a_link_local_address() {
    let standby = standby_of(Some("http://169.254.169.254".into())).await;
    let body = push_body(REPO, "main");
    let (status, text) = post(&standby, &[("X-Hub-Signature-256", sign(&body))], &body).await;
    assert_eq!(status, 202, "{text}");
    assert!(text.contains("does not forward"), "{text}");
}

/// Reads until the server closes the connection; what it sent, or `None` if it kept it open `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut out = Vec::new();
    tokio::time::timeout(wait, stream.read_to_end(&mut out))
        .await
        .ok()
        .map(|_| String::from_utf8_lossy(&out).into_owned())
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let server = start(webhook::DEFAULT_MAX_BODY).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream
        .write_all(b"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .expect("write");
    assert!(
        closed_within(&mut stream, Duration::from_secs(5))
            .await
            .is_some(),
        "the connection is closed after the header timeout"
    );
    assert!(!woken(&server).await);
}

#[tokio::test]
async fn a_body_that_never_arrives_gets_408_and_does_nothing() {
    let server = start(webhook::DEFAULT_MAX_BODY).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let body = push_body(REPO, "main");
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Hub-Signature-256: {}\r\nContent-Length: {}\r\n\r\n",
        sign(&body),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(&body[..10]).await.expect("write");
    let answer = closed_within(&mut stream, Duration::from_secs(20))
        .await
        .expect("an answer within the body deadline");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(!woken(&server).await);
}

/// GitHub's `issue_comment` payload (docs.github.com webhook events): a comment created on issue 7,
/// which is a pull request when `issue.pull_request` is there.
fn github_comment(on_pull_request: bool, text: &str) -> Vec<u8> {
    let mut issue = serde_json::json!({"number": 7, "title": "shop 1.3.0"});
    if on_pull_request {
        issue["pull_request"] =
            serde_json::json!({"url": "https://api.github.com/repos/team/apps/pulls/7"});
    }
    serde_json::json!({
        "action": "created",
        "issue": issue,
        "comment": {"id": 9001, "body": text, "user": {"login": "octocat", "id": 583231}},
        "repository": {"clone_url": REPO, "full_name": "team/apps"},
        "sender": {"login": "octocat"}
    })
    .to_string()
    .into_bytes()
}

/// Posts a GitHub `issue_comment` event, signed, with `delivery` as its delivery id (none when empty).
async fn post_github_comment(server: &Server, delivery: &str, body: &[u8]) -> (u16, String) {
    let mut headers = vec![
        ("X-GitHub-Event", "issue_comment".to_string()),
        ("X-Hub-Signature-256", sign(body)),
    ];
    if !delivery.is_empty() {
        headers.push(("X-GitHub-Delivery", delivery.to_string()));
    }
    post(server, &headers, body).await
}

#[tokio::test]
async fn a_standby_that_cannot_hand_a_command_to_the_leader_asks_the_forge_to_deliver_it_again() {
    // A push is read by the leader's next poll; a command would be lost, so it is not accepted.
    let server = standby().await;
    let body = github_comment(true, "/bosun promote shop");
    let (status, text) = post_github_comment(&server, "delivery-standby-1", &body).await;
    assert_eq!(status, 503, "{text}");
    assert!(
        text.contains("the command was not carried out: redeliver it"),
        "{text}"
    );
}

async fn handed_over(server: &Server) -> Option<CommentEvent> {
    let mut rx = server.commands.lock().await;
    tokio::time::timeout(Duration::from_millis(300), rx.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn a_signed_comment_command_on_a_pull_request_is_handed_over_at_once() {
    let server = start(webhook::DEFAULT_MAX_BODY).await;
    let body = github_comment(true, "thanks!\n/bosun promote shop");
    let (status, text) =
        post_github_comment(&server, "72d3162e-cc78-11e3-81ab-4c9367dc0958", &body).await;
    assert_eq!(status, 202, "{text}");
    let event = handed_over(&server)
        .await
        .expect("the command is handed over");
    assert_eq!(event.delivery, "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!((event.pr, event.comment_id), (7, 9001));
    assert_eq!(event.author.login, "octocat");
    assert_eq!(event.author.id, Some(583231));
    assert!(event.body.contains("/bosun promote shop"));
    assert!(!woken(&server).await, "a comment polls nothing");
}

#[tokio::test]
async fn an_unsigned_comment_command_gets_401_and_is_not_handed_over() {
    let server = start(webhook::DEFAULT_MAX_BODY).await;
    let body = github_comment(true, "/bosun promote shop");
    let (status, _) = post(
        &server,
        &[("X-GitHub-Event", "issue_comment".into())],
        &body,
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(handed_over(&server).await, None);
}

#[tokio::test]
async fn comments_on_issues_edits_and_chatter_are_ignored() {
    let server = start(webhook::DEFAULT_MAX_BODY).await;
    let mut edited: serde_json::Value =
        serde_json::from_slice(&github_comment(true, "/bosun promote shop")).expect("json");
    edited["action"] = "edited".into();
    for body in [
        github_comment(false, "/bosun promote shop"),
        github_comment(true, "looks good to me"),
        edited.to_string().into_bytes(),
    ] {
        let (status, text) = post_github_comment(&server, "", &body).await;
        assert_eq!(status, 200, "{text}");
        assert!(text.contains("ignored"), "{text}");
    }
    assert_eq!(handed_over(&server).await, None);
}

#[tokio::test]
async fn gitea_and_gitlab_comment_commands_are_handed_over_with_their_delivery_ids() {
    let server = start(webhook::DEFAULT_MAX_BODY).await;
    // Gitea's issue_comment on a pull request says `is_pull: true`.
    let gitea = serde_json::json!({
        "action": "created",
        "is_pull": true,
        "issue": {"number": 3},
        "comment": {"id": 41, "body": "/bosun abort team/shop", "user": {"login": "dev", "id": 2}},
        "repository": {"clone_url": REPO}
    })
    .to_string()
    .into_bytes();
    let hex_sig = sign(&gitea).trim_start_matches("sha256=").to_string();
    let (status, text) = post(
        &server,
        &[
            ("X-Gitea-Event", "issue_comment".into()),
            ("X-Gitea-Delivery", "gitea-delivery-1".into()),
            ("X-Gitea-Signature", hex_sig),
        ],
        &gitea,
    )
    .await;
    assert_eq!(status, 202, "{text}");
    let event = handed_over(&server).await.expect("handed over");
    assert_eq!(
        (event.delivery.as_str(), event.pr, event.comment_id),
        ("gitea-delivery-1", 3, 41)
    );
    // GitLab's Note Hook on a merge request: the iid is the number, the user's id asks membership.
    let gitlab = serde_json::json!({
        "object_kind": "note",
        "user": {"id": 17, "username": "maintainer"},
        "project": {"git_http_url": REPO},
        "object_attributes": {"id": 1244, "note": "/bosun retry shop", "noteable_type": "MergeRequest"},
        "merge_request": {"id": 99, "iid": 12}
    })
    .to_string()
    .into_bytes();
    let (status, text) = post(
        &server,
        &[
            ("X-Gitlab-Event", "Note Hook".into()),
            ("X-Gitlab-Event-UUID", "gl-uuid-1".into()),
            ("X-Gitlab-Token", SECRET.into()),
        ],
        &gitlab,
    )
    .await;
    assert_eq!(status, 202, "{text}");
    let event = handed_over(&server).await.expect("handed over");
    assert_eq!(
        (event.delivery.as_str(), event.pr, event.comment_id),
        ("gl-uuid-1", 12, 1244)
    );
    assert_eq!(event.author.login, "maintainer");
    assert_eq!(event.author.id, Some(17));
    // A note on a commit or an issue is no command.
    let mut on_issue: serde_json::Value = serde_json::from_slice(&gitlab).expect("json");
    on_issue["object_attributes"]["noteable_type"] = "Issue".into();
    let on_issue = on_issue.to_string().into_bytes();
    let (status, _) = post(
        &server,
        &[
            ("X-Gitlab-Event", "Note Hook".into()),
            ("X-Gitlab-Token", SECRET.into()),
        ],
        &on_issue,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(handed_over(&server).await, None);
}

#[tokio::test]
async fn a_standby_forwards_a_comment_command_with_its_delivery_id_to_the_leader() {
    let leading = leader().await;
    let standby = standby_of(Some(format!("http://{}", leading.addr))).await;
    let body = github_comment(true, "/bosun promote shop");
    let (status, text) = post_github_comment(&standby, "d-42", &body).await;
    assert_eq!(status, 202, "{text}");
    assert!(
        text.contains("forwarded to the leader") && text.contains("answered 202"),
        "{text}"
    );
    assert_eq!(
        handed_over(&standby).await,
        None,
        "the standby acts on nothing"
    );
    let event = handed_over(&leading)
        .await
        .expect("the leader takes the command");
    assert_eq!(event.delivery, "d-42");
}
