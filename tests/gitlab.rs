//! The report stage against GitLab as a local wiremock server plays it, answering with the response
//! shapes of GitLab's REST documentation (fixtures/gitlab/): commit statuses named by `name` with
//! GitLab's states, merge requests found by commit, Bosun's one note on a merge request edited in place
//! with PUT, a merge request for a rollback. The project sits in a nested group, so every path carries
//! its id URL-encoded (`platform%2Fweb%2Fapps`). As in tests/github.rs the tests run on paused tokio
//! time and wait with `Reporter::idle`, never with a timer.

#[path = "support/forge.rs"]
mod forge_support;

use bosun::forge::{
    Forge, ForgeConfig, ForgeKind, ForgeToken, RepoRef, Reporter, ReporterConfig, ReporterEvent,
    Update,
};
use bosun_core::report::{COMMENT_MARKER, CommitStatus, StatusState};
use forge_support::{body, fixture_of, requests};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const TOKEN: &str = "glpat-TESTonly0never1in2logs";
const SHA: &str = "4f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39";
/// The project `platform/web/apps`, as GitLab's paths name it.
const PROJECT: &str = "/projects/platform%2Fweb%2Fapps";
/// The merge request that brought the commit to `main` (in the fixtures).
const MR: u64 = 7;
/// The id of Bosun's note in the fixtures.
const NOTE_ID: u64 = 1003;

fn json_response(status: u16, fixture_name: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(fixture_of("gitlab", fixture_name))
}

fn gitlab(server: &MockServer) -> Forge {
    Forge::new(ForgeConfig {
        kind: ForgeKind::GitLab,
        api_url: format!("{}/api/v4", server.uri()),
        token: ForgeToken::from(TOKEN),
        repo: RepoRef::parse_for(
            ForgeKind::GitLab,
            "https://gitlab.example.com/platform/web/apps.git",
        )
        .expect("a GitLab URL"),
        timeout: None,
    })
    .expect("a valid API URL")
}

fn config() -> ReporterConfig {
    ReporterConfig {
        branch: Some("main".into()),
        target_url: Some("https://bosun.example.com/{namespace}/{app}?commit={sha}".into()),
        ..ReporterConfig::default()
    }
}

fn api(rest: &str) -> String {
    format!("/api/v4{PROJECT}{rest}")
}

fn status(context: &str, state: StatusState, description: &str) -> Update {
    Update::Status {
        sha: SHA.into(),
        status: CommitStatus {
            context: context.into(),
            state,
            description: description.into(),
        },
        target_url: Some(format!("https://bosun.example.com/shop/web?commit={SHA}")),
    }
}

fn comment(text: &str) -> Update {
    Update::Comment {
        sha: SHA.into(),
        body: format!("{COMMENT_MARKER}\n{text}"),
    }
}

async fn mount_status_writes(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(api(&format!("/statuses/{SHA}"))))
        .respond_with(json_response(201, "status-created.json"))
        .mount(server)
        .await;
}

async fn mount_merge_requests_of_commit(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path(api(&format!(
            "/repository/commits/{SHA}/merge_requests"
        ))))
        .respond_with(json_response(200, "commit-merge-requests.json"))
        .mount(server)
        .await;
}

async fn mount_note_writes(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(api(&format!("/merge_requests/{MR}/notes"))))
        .respond_with(json_response(201, "note-created.json"))
        .mount(server)
        .await;
    Mock::given(method("PUT"))
        .and(path(api(&format!("/merge_requests/{MR}/notes/{NOTE_ID}"))))
        .respond_with(json_response(200, "note-updated.json"))
        .mount(server)
        .await;
}

#[tokio::test(start_paused = true)]
async fn each_app_gets_a_commit_status_named_by_its_context_in_gitlab_states() {
    let server = MockServer::start().await;
    mount_status_writes(&server).await;
    let reporter = Reporter::spawn(gitlab(&server), config());

    reporter.submit(status(
        "bosun/shop/web",
        StatusState::Pending,
        "canary 25 %",
    ));
    reporter.submit(status("bosun/shop/api", StatusState::Success, "healthy"));
    reporter.submit(status("bosun/shop/db", StatusState::Failure, "rolled back"));
    reporter.idle().await;

    let posted = requests(&server, "POST", &api(&format!("/statuses/{SHA}"))).await;
    let mut sent: Vec<Value> = posted.iter().map(body).collect();
    sent.sort_by_key(|b| b["name"].to_string());
    assert_eq!(
        sent,
        vec![
            json!({"state": "success", "name": "bosun/shop/api", "description": "healthy",
                   "target_url": format!("https://bosun.example.com/shop/web?commit={SHA}")}),
            json!({"state": "failed", "name": "bosun/shop/db", "description": "rolled back",
                   "target_url": format!("https://bosun.example.com/shop/web?commit={SHA}")}),
            json!({"state": "running", "name": "bosun/shop/web", "description": "canary 25 %",
                   "target_url": format!("https://bosun.example.com/shop/web?commit={SHA}")}),
        ]
    );
    for r in &posted {
        let auth = r
            .headers
            .get("authorization")
            .expect("an Authorization header");
        assert_eq!(auth.to_str().expect("ASCII"), format!("Bearer {TOKEN}"));
    }
}

#[tokio::test(start_paused = true)]
async fn a_status_already_in_that_state_is_taken_as_shown_and_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(api(&format!("/statuses/{SHA}"))))
        .respond_with(json_response(400, "status-same-state.json"))
        .mount(&server)
        .await;
    let reporter = Reporter::spawn(gitlab(&server), config());
    let mut events = reporter.events();

    reporter.submit(status(
        "bosun/shop/web",
        StatusState::Pending,
        "canary 50 %",
    ));
    reporter.idle().await;

    assert_eq!(
        requests(&server, "POST", &api(&format!("/statuses/{SHA}")))
            .await
            .len(),
        1,
        "sent once"
    );
    let mut failed = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let ReporterEvent::Failed { error, .. } = e {
            failed.push(error);
        }
    }
    assert!(failed.is_empty(), "{failed:?}");
}

#[tokio::test(start_paused = true)]
async fn the_note_on_the_merged_request_is_created_once_then_edited_in_place() {
    let server = MockServer::start().await;
    mount_merge_requests_of_commit(&server).await;
    Mock::given(method("GET"))
        .and(path(api(&format!("/merge_requests/{MR}/notes"))))
        .respond_with(json_response(200, "notes-page1.json"))
        .mount(&server)
        .await;
    mount_note_writes(&server).await;
    let reporter = Reporter::spawn(gitlab(&server), config());

    for text in ["step 1", "step 2", "healthy"] {
        reporter.submit(comment(text));
        reporter.idle().await;
    }

    // Of the merge requests of the commit, the one merged into main (!7), not the open one into
    // `release` (!12).
    let created = requests(
        &server,
        "POST",
        &api(&format!("/merge_requests/{MR}/notes")),
    )
    .await;
    assert_eq!(created.len(), 1, "one note");
    assert_eq!(
        body(&created[0])["body"],
        format!("{COMMENT_MARKER}\nstep 1")
    );
    let edits = requests(
        &server,
        "PUT",
        &api(&format!("/merge_requests/{MR}/notes/{NOTE_ID}")),
    )
    .await;
    let edited: Vec<Value> = edits.iter().map(|r| body(r)["body"].clone()).collect();
    assert_eq!(
        edited,
        vec![
            json!(format!("{COMMENT_MARKER}\nstep 2")),
            json!(format!("{COMMENT_MARKER}\nhealthy")),
        ]
    );
    assert!(
        requests(&server, "POST", &api("/merge_requests/12/notes"))
            .await
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn a_restarted_reporter_finds_its_note_on_page_two_and_edits_it() {
    let server = MockServer::start().await;
    mount_merge_requests_of_commit(&server).await;
    let notes = api(&format!("/merge_requests/{MR}/notes"));
    let next = format!(
        "<{}/api/v4{PROJECT}/merge_requests/{MR}/notes?page=2&per_page=100>; rel=\"next\"",
        server.uri()
    );
    Mock::given(method("GET"))
        .and(path(notes.clone()))
        .and(query_param("page", "1"))
        .respond_with(
            json_response(200, "notes-page1.json")
                .insert_header("link", next.as_str())
                .insert_header("x-next-page", "2"),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(notes.clone()))
        .and(query_param("page", "2"))
        .respond_with(json_response(200, "notes-page2.json"))
        .mount(&server)
        .await;
    mount_note_writes(&server).await;
    let reporter = Reporter::spawn(gitlab(&server), config());

    reporter.submit(comment("after the restart"));
    reporter.idle().await;

    assert!(
        requests(&server, "POST", &notes).await.is_empty(),
        "no second note"
    );
    let edits = requests(&server, "PUT", &format!("{notes}/{NOTE_ID}")).await;
    assert_eq!(edits.len(), 1);
    assert_eq!(
        body(&edits[0])["body"],
        format!("{COMMENT_MARKER}\nafter the restart")
    );
}

#[tokio::test(start_paused = true)]
async fn the_statuses_gitlab_shows_are_read_newest_first_in_bosun_words() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(api(&format!("/repository/commits/{SHA}/statuses"))))
        .respond_with(json_response(200, "commit-statuses.json"))
        .mount(&server)
        .await;
    let shown = gitlab(&server)
        .commit_statuses(SHA)
        .await
        .expect("statuses");
    let seen: Vec<(&str, &str)> = shown
        .iter()
        .map(|s| (s.context.as_str(), s.state.as_str()))
        .collect();
    // The older `running` of bosun/shop/api is not its status any more.
    assert_eq!(
        seen,
        vec![("bosun/shop/api", "success"), ("lint", "failure")]
    );
}

#[tokio::test(start_paused = true)]
async fn a_commit_without_merge_request_gets_statuses_only() {
    let server = MockServer::start().await;
    mount_status_writes(&server).await;
    Mock::given(method("GET"))
        .and(path(api(&format!(
            "/repository/commits/{SHA}/merge_requests"
        ))))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    let reporter = Reporter::spawn(gitlab(&server), config());

    reporter.submit(status("bosun/shop/web", StatusState::Success, "healthy"));
    reporter.submit(comment("healthy"));
    reporter.idle().await;

    assert_eq!(
        requests(&server, "POST", &api(&format!("/statuses/{SHA}")))
            .await
            .len(),
        1
    );
    let writes: Vec<String> = server
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .filter(|r| r.url.path().contains("/notes"))
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}

#[tokio::test(start_paused = true)]
async fn a_rollback_merge_request_is_opened_or_the_open_one_is_returned() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(api("/merge_requests")))
        .respond_with(json_response(201, "merge-request-created.json"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(api("/merge_requests")))
        .respond_with(json_response(409, "merge-request-exists.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(api("/merge_requests")))
        .and(query_param("state", "opened"))
        .and(query_param("source_branch", "bosun/rollback-shop-web"))
        .and(query_param("target_branch", "main"))
        .respond_with(json_response(200, "merge-requests-open.json"))
        .mount(&server)
        .await;
    let gl = gitlab(&server);

    let opened = gl
        .open_pull_request("bosun/rollback-shop-web", "main", "Roll back web", "why")
        .await
        .expect("opened");
    let again = gl
        .open_pull_request("bosun/rollback-shop-web", "main", "Roll back web", "why")
        .await
        .expect("the open one");

    assert_eq!(opened.number, 9);
    assert_eq!(again, opened);
    assert_eq!(
        opened.html_url,
        "https://gitlab.example.com/platform/web/apps/-/merge_requests/9"
    );
    let posts = requests(&server, "POST", &api("/merge_requests")).await;
    assert_eq!(
        body(&posts[0]),
        json!({"title": "Roll back web", "source_branch": "bosun/rollback-shop-web",
               "target_branch": "main", "description": "why"})
    );
}

#[tokio::test(start_paused = true)]
async fn errors_name_gitlab_the_call_and_the_status_never_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(api("/merge_requests")))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({"message": "403 Forbidden"})))
        .mount(&server)
        .await;
    let e = gitlab(&server)
        .open_pull_request("b", "main", "t", "b")
        .await
        .expect_err("refused")
        .to_string();
    assert_eq!(
        e,
        "GitLab open pull request: HTTP 403: 403 Forbidden; the token may not do this: it needs the api scope and the Developer role on the project"
    );
    assert!(!e.contains(TOKEN));
}

#[tokio::test(start_paused = true)]
async fn who_may_write_is_a_member_with_at_least_the_developer_role() {
    let server = MockServer::start().await;
    for (id, fixture) in [(17, "member-developer.json"), (18, "member-reporter.json")] {
        Mock::given(method("GET"))
            .and(path(api(&format!("/members/all/{id}"))))
            .respond_with(json_response(200, fixture))
            .expect(1)
            .mount(&server)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(api("/members/all/19")))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "404 Not found"})))
        .expect(1)
        .mount(&server)
        .await;
    let forge = gitlab(&server);
    let user = |login: &str, id: u64| bosun::forge::Commenter {
        login: login.into(),
        id: Some(id),
    };
    assert!(
        forge
            .can_write(&user("maintainer", 17))
            .await
            .expect("asked")
    );
    assert!(!forge.can_write(&user("reporter", 18)).await.expect("asked"));
    assert!(!forge.can_write(&user("stranger", 19)).await.expect("asked"));
    // Without the user's id nobody is trusted, and GitLab is not asked.
    let anonymous = bosun::forge::Commenter {
        login: "maintainer".into(),
        id: None,
    };
    assert!(!forge.can_write(&anonymous).await.expect("not asked"));
}

#[tokio::test(start_paused = true)]
async fn a_note_acted_on_gets_a_thumbsup_award() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(api(&format!(
            "/merge_requests/{MR}/notes/1244/award_emoji"
        ))))
        .and(body_json(json!({"name": "thumbsup"})))
        .respond_with(json_response(201, "award-emoji-created.json"))
        .expect(1)
        .mount(&server)
        .await;
    gitlab(&server)
        .react_to_comment(MR, 1244)
        .await
        .expect("awarded");
}
