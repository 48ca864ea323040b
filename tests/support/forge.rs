//! The forges for the tests: a local wiremock server answering as GitHub's REST API does, and what
//! the GitHub and GitLab simulations share (their fixtures, the requests a server received).
#![allow(dead_code)] // each test binary uses its own part of the support module

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
