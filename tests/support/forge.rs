//! The forges for the tests: a local wiremock server answering as GitHub's REST API does, and what
//! the GitHub and GitLab simulations share (their fixtures, the requests a server received).
#![allow(dead_code)] // each test binary uses its own part of the support module

use std::sync::{Arc, Mutex};

use serde_json::Value;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A response of fixtures/github/.
pub fn fixture(name: &str) -> Value {
    fixture_of("github", name)
}

/// A response of fixtures/FORGE/ (`github`, `gitlab`).
pub fn fixture_of(forge: &str, name: &str) -> Value {
    let file = format!("{}/fixtures/{forge}/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// GitHub, played by wiremock with the shapes of its REST documentation (fixtures/github/), for the
/// repository `team/apps` whose commits belong to pull request 1347.
pub async fn github() -> MockServer {
    let server = MockServer::start().await;
    mount_github(&server).await;
    server
}

/// Mounts on `server` what [`github`] answers.
pub async fn mount_github(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path_regex(r"^/repos/team/apps/commits/[0-9a-f]{40}/pulls$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("commit-pulls.json")))
        .mount(server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/team/apps/issues/1347/comments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/team/apps/issues/1347/comments"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(fixture("issue-comment-created.json")),
        )
        .mount(server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/team/apps/issues/comments/1003"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("issue-comment-updated.json")),
        )
        .mount(server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/team/apps/statuses/[0-9a-f]{40}$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("status-created.json")))
        .mount(server)
        .await;
}

/// The requests `server` received with `verb` on `path_is`.
pub async fn requests(server: &MockServer, verb: &str, path_is: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("recording")
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == path_is)
        .collect()
}

/// A request's JSON body.
pub fn body(r: &Request) -> Value {
    serde_json::from_slice(&r.body).expect("JSON body")
}

/// Makes `server` remember the comments of pull request `pr` of `team/apps`, over what [`github`]
/// answers: those posted (ids from 1003 up) are listed back and edited in place, as a Bosun
/// restarted since would find them. The comments, oldest first.
pub async fn remember_comments(server: &MockServer, pr: u64) -> Arc<Mutex<Vec<Value>>> {
    let comments: Arc<Mutex<Vec<Value>>> = Arc::default();
    let list = comments.clone();
    Mock::given(method("GET"))
        .and(path(format!("/repos/team/apps/issues/{pr}/comments")))
        .respond_with(move |_: &Request| {
            let all = list.lock().expect("the comments").clone();
            ResponseTemplate::new(200).set_body_json(all)
        })
        .with_priority(1)
        .mount(server)
        .await;
    let posted = comments.clone();
    Mock::given(method("POST"))
        .and(path(format!("/repos/team/apps/issues/{pr}/comments")))
        .respond_with(move |r: &Request| {
            let mut all = posted.lock().expect("the comments");
            let mut c = fixture("issue-comment-created.json");
            c["id"] = (1003 + all.len()).into();
            c["body"] = body(r)["body"].clone();
            all.push(c.clone());
            ResponseTemplate::new(201).set_body_json(c)
        })
        .with_priority(1)
        .mount(server)
        .await;
    let edited = comments.clone();
    Mock::given(method("PATCH"))
        .and(path_regex(r"^/repos/team/apps/issues/comments/[0-9]+$"))
        .respond_with(move |r: &Request| {
            let id: u64 = r
                .url
                .path()
                .rsplit('/')
                .next()
                .and_then(|i| i.parse().ok())
                .unwrap_or(0);
            let mut all = edited.lock().expect("the comments");
            match all.iter_mut().find(|c| c["id"] == id) {
                Some(c) => {
                    c["body"] = body(r)["body"].clone();
                    ResponseTemplate::new(200).set_body_json(c.clone())
                }
                None => ResponseTemplate::new(404).set_body_json(serde_json::json!({
                    "message": "Not Found",
                    "documentation_url": "https://docs.github.com/rest",
                })),
            }
        })
        .with_priority(1)
        .mount(server)
        .await;
    comments
}
