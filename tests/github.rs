//! The report stage against GitHub as a local wiremock server plays it, answering with the response
//! shapes of GitHub's REST documentation (fixtures/github/). Each test asserts the requests Bosun
//! makes, how many, and their bodies. The tests run on paused tokio time (the Reporter's waits —
//! settling, rate limits, backoff — pass at once and are measured exactly): there the GitHub client has
//! no request timeout (a timer would fire while a request waits for the real network), and the tests
//! wait with `Reporter::idle`, never with a timer. Only the timeout test runs in real time.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bosun::forge::{
    Call, Forge, ForgeConfig, ForgeError, ForgeKind, ForgeToken, RepoRef, Reporter, ReporterConfig,
    ReporterEvent, Update,
};
use bosun_core::model::Phase;
use bosun_core::report::{
    AppReport, ChangeSummary, CommitStatus, DESCRIPTION_LIMIT, Failure, Plan, Rollback, Rollout,
    StatusState, Transition, pr_comment,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use tokio::time::Instant;
use wiremock::matchers::{body_json, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const TOKEN: &str = "ghp_TESTonly0never1in2logs3or4errors";
const SHA: &str = "4f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39";
const REPO: &str = "/repos/team/apps";
const PR: u64 = 1347;
/// The id of Bosun's comment in the fixtures.
const COMMENT_ID: u64 = 1003;

fn fixture(name: &str) -> Value {
    let file = format!("{}/fixtures/github/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn json_response(status: u16, fixture_name: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(fixture(fixture_name))
}

fn github_at(api_url: &str, timeout: Option<Duration>) -> Forge {
    Forge::new(ForgeConfig {
        kind: ForgeKind::GitHub,
        api_url: api_url.into(),
        token: ForgeToken::from(TOKEN),
        repo: RepoRef::parse("https://github.com/team/apps.git").expect("a GitHub URL"),
        timeout,
    })
    .expect("a valid API URL")
}

fn github(server: &MockServer) -> Forge {
    github_at(&server.uri(), None)
}

fn config() -> ReporterConfig {
    ReporterConfig {
        branch: Some("main".into()),
        target_url: Some("https://bosun.example.com/{namespace}/{app}?commit={sha}".into()),
        ..ReporterConfig::default()
    }
}

async fn requests(server: &MockServer, verb: &str, path_is: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == path_is)
        .collect()
}

fn body(r: &Request) -> Value {
    serde_json::from_slice(&r.body).expect("a JSON request body")
}

fn drain(rx: &mut tokio::sync::broadcast::Receiver<ReporterEvent>) -> Vec<ReporterEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

fn at(hms: &str) -> Time {
    Time(
        format!("2026-11-03T{hms}Z")
            .parse()
            .expect("an RFC 3339 time"),
    )
}

fn tr(phase: Phase, time: &str, step: Option<i32>, weight: Option<i32>, msg: &str) -> Transition {
    Transition {
        phase,
        time: at(time),
        step,
        weight,
        message: msg.into(),
    }
}

/// shop/web going v1.4.0 → v1.5.0 through a migration and canary steps 10 % and 50 %; `upto` is how
/// many transitions happened so far (1..=6; the sixth is the failure).
fn web(upto: usize) -> AppReport {
    let all = vec![
        tr(
            Phase::Migrating,
            "12:00:00",
            Some(0),
            Some(0),
            "upgrading to v1.5.0",
        ),
        tr(
            Phase::Deploying,
            "12:00:40",
            Some(0),
            Some(0),
            "migration succeeded",
        ),
        tr(
            Phase::HealthChecking,
            "12:01:10",
            Some(0),
            Some(10),
            "step 1 at 10 %: pods ready",
        ),
        tr(
            Phase::Deploying,
            "12:03:10",
            Some(1),
            Some(10),
            "step 1 passed",
        ),
        tr(
            Phase::HealthChecking,
            "12:03:40",
            Some(1),
            Some(50),
            "step 2 at 50 %: pods ready",
        ),
        tr(
            Phase::Failed,
            "12:05:00",
            Some(1),
            Some(0),
            "health checks of v1.5.0 failed",
        ),
    ];
    let transitions: Vec<Transition> = all.into_iter().take(upto).collect();
    let phase = transitions
        .last()
        .map(|t| t.phase)
        .unwrap_or(Phase::Pending);
    let failed = phase == Phase::Failed;
    AppReport {
        namespace: "shop".into(),
        name: "web".into(),
        from_version: Some("v1.4.0".into()),
        to_version: "v1.5.0".into(),
        phase,
        transitions,
        plan: Plan {
            migration: true,
            rollout: Rollout::Canary {
                weights: vec![10, 50],
            },
        },
        failure: failed.then(|| Failure {
            reason: format!(
                "health checks of v1.5.0 failed: {}",
                "GET /healthz answered 503 Service Unavailable; ".repeat(5)
            ),
            pods: vec!["web-canary-7d9f8-x2x9k".into()],
            job: None,
        }),
        rollback: failed.then(|| Rollback::Commit {
            version: "v1.4.0".into(),
            sha: "9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b".into(),
            url: Some("https://github.com/team/apps/commit/9c8b7a6".into()),
        }),
        error: None,
        window: None,
    }
}

fn api_healthy() -> AppReport {
    AppReport {
        namespace: "shop".into(),
        name: "api".into(),
        from_version: Some("v2.0.0".into()),
        to_version: "v2.1.0".into(),
        phase: Phase::Healthy,
        transitions: vec![
            tr(
                Phase::Deploying,
                "09:00:00",
                None,
                None,
                "upgrading to v2.1.0",
            ),
            tr(Phase::Healthy, "09:01:30", None, None, "v2.1.0 is healthy"),
        ],
        plan: Plan {
            migration: false,
            rollout: Rollout::Rolling,
        },
        failure: None,
        rollback: None,
        error: None,
        window: None,
    }
}

fn summary(apps: Vec<AppReport>) -> ChangeSummary {
    ChangeSummary {
        commit: SHA.into(),
        apps,
        words: bosun_core::report::Words::PullRequest,
    }
}

fn comment_update(body: impl Into<String>) -> Update {
    Update::Comment {
        sha: SHA.into(),
        body: body.into(),
    }
}

fn status_update(context: &str, description: &str) -> Update {
    Update::Status {
        sha: SHA.into(),
        status: CommitStatus {
            context: context.into(),
            state: StatusState::Pending,
            description: description.into(),
        },
        target_url: None,
    }
}

async fn mount_statuses(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/statuses/{SHA}")))
        .respond_with(json_response(201, "status-created.json"))
        .mount(server)
        .await;
}

async fn mount_pull_of_commit(server: &MockServer) {
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/commits/{SHA}/pulls")))
        .respond_with(json_response(200, "commit-pulls.json"))
        .mount(server)
        .await;
}

async fn mount_comment_writes(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/issues/{PR}/comments")))
        .respond_with(json_response(201, "issue-comment-created.json"))
        .mount(server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{REPO}/issues/comments/{COMMENT_ID}")))
        .respond_with(json_response(200, "issue-comment-updated.json"))
        .mount(server)
        .await;
}

fn comments_path() -> String {
    format!("{REPO}/issues/{PR}/comments")
}

#[tokio::test(start_paused = true)]
async fn each_app_gets_a_commit_status_with_its_context_and_a_short_description() {
    let server = MockServer::start().await;
    mount_statuses(&server).await;
    mount_pull_of_commit(&server).await;
    Mock::given(method("GET"))
        .and(path(comments_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    mount_comment_writes(&server).await;
    let reporter = Reporter::spawn(github(&server), config());

    reporter.submit_summary(&summary(vec![web(6), api_healthy()]));
    reporter.idle().await;

    let statuses = requests(&server, "POST", &format!("{REPO}/statuses/{SHA}")).await;
    assert_eq!(statuses.len(), 2, "one status per app");
    let web = body(&statuses[0]);
    assert_eq!(web["context"], "bosun/shop/web");
    assert_eq!(web["state"], "failure");
    assert_eq!(
        web["target_url"],
        format!("https://bosun.example.com/shop/web?commit={SHA}")
    );
    let description = web["description"].as_str().expect("a description");
    assert_eq!(description.chars().count(), DESCRIPTION_LIMIT);
    assert!(description.starts_with("v1.4.0 → v1.5.0 failed at canary 50 %: health checks"));
    assert!(description.ends_with('…'));
    assert_eq!(
        body(&statuses[1]),
        json!({
            "state": "success",
            "target_url": format!("https://bosun.example.com/shop/api?commit={SHA}"),
            "description": "v2.0.0 → v2.1.0: healthy",
            "context": "bosun/shop/api",
        })
    );
    for r in &statuses {
        let auth = r
            .headers
            .get("authorization")
            .expect("an Authorization header");
        assert_eq!(auth.to_str().expect("ASCII"), format!("Bearer {TOKEN}"));
    }
    // And one comment holding both apps.
    let posted = requests(&server, "POST", &comments_path()).await;
    assert_eq!(posted.len(), 1);
    assert_eq!(
        body(&posted[0])["body"],
        pr_comment(&summary(vec![self::web(6), api_healthy()]))
    );
}

#[tokio::test(start_paused = true)]
async fn first_transition_creates_the_comment_and_later_ones_edit_the_same_comment() {
    let server = MockServer::start().await;
    mount_pull_of_commit(&server).await;
    Mock::given(method("GET"))
        .and(path(comments_path()))
        .respond_with(json_response(200, "issue-comments-page1.json"))
        .mount(&server)
        .await;
    mount_comment_writes(&server).await;
    let reporter = Reporter::spawn(github(&server), config());

    let bodies: Vec<String> = [1, 3, 5, 6]
        .into_iter()
        .map(|n| pr_comment(&summary(vec![web(n)])))
        .collect();
    for b in &bodies {
        reporter.submit(comment_update(b.clone()));
        reporter.idle().await;
    }
    // The same body again: GitHub already shows it, nothing is sent.
    reporter.submit(comment_update(bodies[3].clone()));
    reporter.idle().await;

    let posts = requests(&server, "POST", &comments_path()).await;
    assert_eq!(posts.len(), 1, "exactly one comment is created");
    assert_eq!(body(&posts[0]), json!({ "body": bodies[0] }));
    let patches = requests(
        &server,
        "PATCH",
        &format!("{REPO}/issues/comments/{COMMENT_ID}"),
    )
    .await;
    let patched: Vec<Value> = patches.iter().map(body).collect();
    assert_eq!(
        patched,
        vec![
            json!({ "body": bodies[1] }),
            json!({ "body": bodies[2] }),
            json!({ "body": bodies[3] }),
        ]
    );
    // The pull request of the commit and the comment id are looked up once, then cached.
    assert_eq!(
        requests(&server, "GET", &format!("{REPO}/commits/{SHA}/pulls"))
            .await
            .len(),
        1
    );
    assert_eq!(requests(&server, "GET", &comments_path()).await.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_reporter_finds_its_comment_on_page_two_and_edits_it() {
    let server = MockServer::start().await;
    mount_pull_of_commit(&server).await;
    Mock::given(method("GET"))
        .and(path(comments_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    mount_comment_writes(&server).await;
    let first = Reporter::spawn(github(&server), config());
    first.submit(comment_update(pr_comment(&summary(vec![web(1)]))));
    first.idle().await;
    assert_eq!(requests(&server, "POST", &comments_path()).await.len(), 1);
    drop(first);

    // Bosun restarts; meanwhile people commented, so its comment is now on page 2.
    server.reset().await;
    mount_pull_of_commit(&server).await;
    let page = |n: u32| {
        format!(
            "{}/repositories/1296269/issues/{PR}/comments?per_page=100&page={n}",
            server.uri()
        )
    };
    Mock::given(method("GET"))
        .and(path(comments_path()))
        .and(query_param("page", "1"))
        .respond_with(
            json_response(200, "issue-comments-page1.json").insert_header(
                "link",
                format!("<{}>; rel=\"next\", <{}>; rel=\"last\"", page(2), page(2)).as_str(),
            ),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(comments_path()))
        .and(query_param("page", "2"))
        .respond_with(
            json_response(200, "issue-comments-page2.json").insert_header(
                "link",
                format!("<{}>; rel=\"prev\", <{}>; rel=\"first\"", page(1), page(1)).as_str(),
            ),
        )
        .mount(&server)
        .await;
    mount_comment_writes(&server).await;
    let second = Reporter::spawn(github(&server), config());
    let later = pr_comment(&summary(vec![web(3)]));
    second.submit(comment_update(later.clone()));
    second.idle().await;

    let lists = requests(&server, "GET", &comments_path()).await;
    let pages: Vec<String> = lists
        .iter()
        .map(|r| {
            r.url
                .query_pairs()
                .find(|(k, _)| k == "page")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(pages, vec!["1", "2"]);
    assert_eq!(
        requests(&server, "POST", &comments_path()).await.len(),
        0,
        "no second comment after a restart"
    );
    let patches = requests(
        &server,
        "PATCH",
        &format!("{REPO}/issues/comments/{COMMENT_ID}"),
    )
    .await;
    assert_eq!(patches.len(), 1);
    assert_eq!(body(&patches[0]), json!({ "body": later }));
}

#[tokio::test(start_paused = true)]
async fn ten_rapid_updates_coalesce_into_at_most_two_requests() {
    let server = MockServer::start().await;
    mount_statuses(&server).await;
    mount_pull_of_commit(&server).await;
    Mock::given(method("GET"))
        .and(path(comments_path()))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    mount_comment_writes(&server).await;
    let reporter = Reporter::spawn(github(&server), config());

    let mut events = reporter.events();
    let update = |i: u32| {
        reporter.submit(status_update("bosun/shop/web", &format!("update {i}")));
        reporter.submit(comment_update(format!(
            "<!-- bosun:pr-comment -->\nupdate {i}"
        )));
    };
    // The first update goes out; the next nine arrive while it is in flight.
    update(1);
    loop {
        if let Ok(ReporterEvent::Attempt {
            call: Call::SetCommitStatus,
            ..
        }) = events.recv().await
        {
            break;
        }
    }
    for i in 2..=10 {
        update(i);
    }
    reporter.idle().await;

    let statuses = requests(&server, "POST", &format!("{REPO}/statuses/{SHA}")).await;
    let descriptions: Vec<Value> = statuses
        .iter()
        .map(|r| body(r)["description"].clone())
        .collect();
    assert_eq!(
        descriptions,
        vec!["update 1", "update 10"],
        "the one in flight, then only the latest"
    );
    let mut writes = requests(&server, "POST", &comments_path()).await;
    writes.extend(
        requests(
            &server,
            "PATCH",
            &format!("{REPO}/issues/comments/{COMMENT_ID}"),
        )
        .await,
    );
    assert_eq!(
        writes.len(),
        1,
        "the queued comment took the nine updates in"
    );
    assert_eq!(
        body(&writes[0]),
        json!({ "body": "<!-- bosun:pr-comment -->\nupdate 10" })
    );
}

/// The times of the calls of `call` the Reporter attempted, and of its failures.
fn timeline(events: &[ReporterEvent], of: Call) -> (Vec<Instant>, Vec<Instant>) {
    let attempts = events
        .iter()
        .filter_map(|e| match e {
            ReporterEvent::Attempt { call, at } if *call == of => Some(*at),
            _ => None,
        })
        .collect();
    let failures = events
        .iter()
        .filter_map(|e| match e {
            ReporterEvent::Failed { call, at, .. } if *call == of => Some(*at),
            _ => None,
        })
        .collect();
    (attempts, failures)
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_holds_every_request_for_that_long() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/statuses/{SHA}")))
        .respond_with(
            json_response(429, "rate-limit-secondary.json").insert_header("retry-after", "2"),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_statuses(&server).await;
    let reporter = Reporter::spawn(github(&server), config());
    let mut events = reporter.events();

    reporter.submit(status_update(
        "bosun/shop/web",
        "v1.4.0 → v1.5.0: migration in progress",
    ));
    reporter.submit(status_update(
        "bosun/shop/api",
        "v2.0.0 → v2.1.0: rolling update in progress",
    ));
    reporter.idle().await;

    let (attempts, failures) = timeline(&drain(&mut events), Call::SetCommitStatus);
    assert_eq!(
        (attempts.len(), failures.len()),
        (3, 1),
        "one 429, then both statuses"
    );
    let waited = attempts[1] - failures[0];
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_millis(2500),
        "next request {waited:?} after the 429"
    );
    assert!(attempts[2] >= failures[0] + Duration::from_secs(2));
    let sent = requests(&server, "POST", &format!("{REPO}/statuses/{SHA}")).await;
    let contexts: Vec<Value> = sent.iter().map(|r| body(r)["context"].clone()).collect();
    assert_eq!(
        contexts,
        vec!["bosun/shop/web", "bosun/shop/web", "bosun/shop/api"]
    );
}

#[tokio::test(start_paused = true)]
async fn a_403_primary_rate_limit_waits_until_the_reset_time() {
    let server = MockServer::start().await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/statuses/{SHA}")))
        .respond_with(
            json_response(403, "rate-limit-primary.json")
                .insert_header("x-ratelimit-limit", "5000")
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-used", "5000")
                .insert_header("x-ratelimit-resource", "core")
                .insert_header("x-ratelimit-reset", (now + 5).to_string().as_str()),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_statuses(&server).await;
    let reporter = Reporter::spawn(github(&server), config());
    let mut events = reporter.events();

    reporter.submit(status_update(
        "bosun/shop/web",
        "v1.4.0 → v1.5.0: migration in progress",
    ));
    reporter.idle().await;

    let events = drain(&mut events);
    let (attempts, failures) = timeline(&events, Call::SetCommitStatus);
    assert_eq!((attempts.len(), failures.len()), (2, 1));
    let waited = attempts[1] - failures[0];
    assert!(
        waited >= Duration::from_secs(4) && waited <= Duration::from_secs(7),
        "waited {waited:?} for a reset 5 s away"
    );
    let error = events
        .iter()
        .find_map(|e| match e {
            ReporterEvent::Failed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .expect("a failure event");
    assert!(
        error.starts_with(
            "GitHub set commit status: rate limited (HTTP 403): API rate limit exceeded"
        ),
        "{error}"
    );
}

#[tokio::test(start_paused = true)]
async fn server_errors_never_block_submit_and_are_retried_with_backoff() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/statuses/{SHA}")))
        .respond_with(json_response(500, "server-error.json"))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_statuses(&server).await;
    let reporter = Reporter::spawn(github(&server), config());
    let mut events = reporter.events();

    let started = std::time::Instant::now();
    for i in 0..500 {
        reporter.submit(status_update(
            &format!("bosun/shop/app-{}", i % 3),
            "in progress",
        ));
    }
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "submit took {:?}",
        started.elapsed()
    );
    reporter.idle().await;

    let (attempts, failures) = timeline(&drain(&mut events), Call::SetCommitStatus);
    assert_eq!(
        (attempts.len(), failures.len()),
        (5, 2),
        "2 failures, then 3 statuses"
    );
    // Backoff: 1 s, then 2 s (each jittered up to twice that).
    assert!(attempts[1] - failures[0] >= Duration::from_secs(1));
    assert!(attempts[2] - failures[1] >= Duration::from_secs(2));
    assert!(attempts[2] - failures[1] <= Duration::from_secs(4));
    assert_eq!(
        requests(&server, "POST", &format!("{REPO}/statuses/{SHA}"))
            .await
            .len(),
        5
    );
}

#[tokio::test]
async fn a_github_that_does_not_answer_times_out_and_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/statuses/{SHA}")))
        .respond_with(json_response(201, "status-created.json").set_delay(Duration::from_secs(5)))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    mount_statuses(&server).await;
    let reporter = Reporter::spawn(
        github_at(&server.uri(), Some(Duration::from_millis(300))),
        ReporterConfig {
            backoff_base: Duration::from_millis(20),
            settle: Duration::ZERO,
            ..config()
        },
    );
    let mut events = reporter.events();

    let started = std::time::Instant::now();
    reporter.submit(status_update("bosun/shop/web", "in progress"));
    assert!(started.elapsed() < Duration::from_millis(50));
    tokio::time::timeout(Duration::from_secs(4), reporter.idle())
        .await
        .expect("the hung request is cut at 300 ms and retried");

    let events = drain(&mut events);
    let errors: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            ReporterEvent::Failed {
                error, retry_in, ..
            } => {
                assert!(retry_in.is_some());
                Some(error.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        vec!["GitHub set commit status: no answer within 300 ms; retried with backoff"]
    );
    assert!(events.iter().any(|e| matches!(
        e,
        ReporterEvent::Sent {
            call: Call::SetCommitStatus,
            ..
        }
    )));
}

#[tokio::test(start_paused = true)]
async fn an_unreachable_github_is_retried_and_reported_by_its_address() {
    // Nothing listens there: the connection is refused at once.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr");
    drop(closed);
    let reporter = Reporter::spawn(github_at(&format!("http://{addr}"), None), config());
    let mut events = reporter.events();

    reporter.submit(status_update("bosun/shop/web", "in progress"));
    let mut failures = Vec::new();
    while failures.len() < 3 {
        if let Ok(ReporterEvent::Failed {
            error, retry_in, ..
        }) = events.recv().await
        {
            failures.push((error, retry_in.expect("retried")));
        }
    }
    for (error, _) in &failures {
        // The first call for a commit reads what GitHub already shows; it names the call all the same.
        assert!(
            error.starts_with("GitHub read commit statuses: ")
                && error.contains(&format!(": no answer from http://{addr}: ")),
            "{error}"
        );
    }
    let waits: Vec<Duration> = failures.iter().map(|f| f.1).collect();
    assert!(
        waits[0] >= Duration::from_secs(1)
            && waits[1] >= Duration::from_secs(2)
            && waits[2] >= Duration::from_secs(4),
        "{waits:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_commit_without_pull_request_gets_statuses_only() {
    let server = MockServer::start().await;
    mount_statuses(&server).await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/commits/{SHA}/pulls")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    let reporter = Reporter::spawn(github(&server), config());
    let mut events = reporter.events();

    reporter.submit_summary(&summary(vec![web(2)]));
    reporter.idle().await;

    assert_eq!(
        requests(&server, "POST", &format!("{REPO}/statuses/{SHA}"))
            .await
            .len(),
        1
    );
    let all = server.received_requests().await.expect("recording");
    assert!(
        all.iter().all(|r| !r.url.path().contains("/issues/")),
        "no comment requests: {:?}",
        all.iter()
            .map(|r| r.url.path().to_string())
            .collect::<Vec<_>>()
    );
    assert!(
        drain(&mut events)
            .iter()
            .any(|e| matches!(e, ReporterEvent::NoPullRequest { sha } if sha == SHA))
    );
}

#[tokio::test(start_paused = true)]
async fn a_403_that_is_not_a_rate_limit_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/statuses/{SHA}")))
        .respond_with(ResponseTemplate::new(403).set_body_json(json!({
            "message": "Resource not accessible by integration",
            "documentation_url": "https://docs.github.com/rest/commits/statuses#create-a-commit-status",
            "status": "403"
        })).insert_header("x-ratelimit-remaining", "4999"))
        .mount(&server)
        .await;
    let reporter = Reporter::spawn(github(&server), config());
    let mut events = reporter.events();

    reporter.submit(status_update("bosun/shop/web", "in progress"));
    reporter.idle().await;

    assert_eq!(
        requests(&server, "POST", &format!("{REPO}/statuses/{SHA}"))
            .await
            .len(),
        1
    );
    let dropped = drain(&mut events)
        .into_iter()
        .find_map(|e| match e {
            ReporterEvent::Dropped { reason, .. } => Some(reason),
            _ => None,
        })
        .expect("the update is dropped");
    assert_eq!(
        dropped,
        "GitHub set commit status: HTTP 403: Resource not accessible by integration; the token may not do this: it needs write access to commit statuses, issues and pull requests of the repository"
    );
}

#[tokio::test(start_paused = true)]
async fn open_pull_request_creates_one_or_returns_the_one_already_open() {
    let server = MockServer::start().await;
    let head = "bosun/rollback-shop-billing-v3.3.0";
    let request = json!({
        "title": "Roll back shop/billing to v3.2.0",
        "head": head,
        "base": "main",
        "body": "v3.3.0 failed: migration of v3.3.0 failed: BackoffLimitExceeded",
    });
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/pulls")))
        .and(body_json(&request))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(json_response(201, "pull-created.json"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    let gh = github(&server);
    let open = |gh: Forge| async move {
        gh.open_pull_request(
            head,
            "main",
            "Roll back shop/billing to v3.2.0",
            "v3.3.0 failed: migration of v3.3.0 failed: BackoffLimitExceeded",
        )
        .await
    };

    let pr = open(gh.clone()).await.expect("created");
    assert_eq!(
        (pr.number, pr.base_ref.as_str(), pr.head_ref.as_str()),
        (118, "main", head)
    );
    assert_eq!(pr.html_url, "https://github.com/team/apps/pull/118");

    // Second time: GitHub says it already exists; Bosun finds the open one.
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/pulls")))
        .respond_with(json_response(422, "pull-already-exists.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/pulls")))
        .and(query_param("state", "open"))
        .and(query_param("head", format!("team:{head}").as_str()))
        .and(query_param("base", "main"))
        .respond_with(json_response(200, "pulls-open.json"))
        .mount(&server)
        .await;
    let again = open(gh.clone()).await.expect("the existing one");
    assert_eq!(again, pr);
    assert_eq!(
        requests(&server, "POST", &format!("{REPO}/pulls"))
            .await
            .len(),
        2
    );
    assert_eq!(
        requests(&server, "GET", &format!("{REPO}/pulls"))
            .await
            .len(),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_422_other_than_already_exists_is_an_error_that_names_the_call() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/pulls")))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "message": "Validation Failed",
            "errors": [{ "resource": "PullRequest", "field": "base", "code": "invalid" }],
            "documentation_url": "https://docs.github.com/rest/pulls/pulls#create-a-pull-request",
            "status": "422"
        })))
        .mount(&server)
        .await;
    let err = github(&server)
        .open_pull_request("bosun/rollback", "nope", "t", "b")
        .await
        .expect_err("refused");
    assert!(matches!(err, ForgeError::Rejected { status: 422, .. }));
    assert_eq!(
        err.to_string(),
        r#"GitHub open pull request: HTTP 422: Validation Failed ({"code":"invalid","field":"base","resource":"PullRequest"}); the forge refused the request's content"#
    );
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("not poisoned").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(start_paused = true)]
async fn the_token_never_appears_in_errors_events_or_logs() {
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let server = MockServer::start().await;
    // A broken proxy echoing the request back, token and all.
    let echo = format!("upstream said: Authorization: Bearer {TOKEN}");
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/statuses/{SHA}")))
        .respond_with(ResponseTemplate::new(502).set_body_string(echo.clone()))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/statuses/{SHA}")))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({
            "message": format!("Bad credentials: {TOKEN}"),
            "documentation_url": "https://docs.github.com/rest",
            "status": "401"
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/commits/{SHA}/pulls")))
        .respond_with(ResponseTemplate::new(200).set_body_string(format!("not json {TOKEN}")))
        .mount(&server)
        .await;

    let gh = github(&server);
    let mut seen = vec![format!("{gh:?}")];
    let e502 = gh
        .set_commit_status(SHA, "bosun/shop/web", StatusState::Pending, "x", None)
        .await
        .expect_err("502");
    assert!(e502.is_transient());
    let e401 = gh
        .set_commit_status(SHA, "bosun/shop/web", StatusState::Pending, "x", None)
        .await
        .expect_err("401");
    assert!(!e401.is_transient());
    assert!(
        e401.to_string().contains(
            "HTTP 401: Bad credentials: ***; the token was refused: check --forge-token-file"
        ),
        "{e401}"
    );
    let ebad = gh
        .pull_requests_for_commit(SHA)
        .await
        .expect_err("not JSON");
    for e in [&e502, &e401, &ebad] {
        seen.push(e.to_string());
        seen.push(format!("{e:?}"));
    }

    let reporter = Reporter::spawn(
        gh,
        ReporterConfig {
            backoff_base: Duration::from_millis(10),
            ..config()
        },
    );
    let mut events = reporter.events();
    reporter.submit_summary(&summary(vec![web(2)]));
    reporter.idle().await;
    seen.extend(drain(&mut events).iter().map(|e| format!("{e:?}")));
    let logs = String::from_utf8(logs.0.lock().expect("not poisoned").clone()).expect("UTF-8");
    assert!(
        logs.contains("forge update dropped"),
        "the failures were logged:\n{logs}"
    );
    seen.push(logs);

    for text in &seen {
        assert!(!text.contains(TOKEN), "the token leaked into: {text}");
    }
    // The token did go where it belongs: in each request's Authorization header.
    let all = server.received_requests().await.expect("recording");
    assert!(all.len() >= 4);
    for r in all {
        assert_eq!(
            r.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {TOKEN}").as_str())
        );
    }
}

#[tokio::test(start_paused = true)]
async fn writes_are_paced_by_the_token_bucket() {
    let server = MockServer::start().await;
    mount_statuses(&server).await;
    let reporter = Reporter::spawn(
        github(&server),
        ReporterConfig {
            writes_per_minute: 6,
            burst: 1,
            ..config()
        },
    );
    let mut events = reporter.events();
    for app in ["web", "api", "billing"] {
        reporter.submit(status_update(&format!("bosun/shop/{app}"), "in progress"));
    }
    reporter.idle().await;

    let sent: Vec<Instant> = drain(&mut events)
        .iter()
        .filter_map(|e| match e {
            ReporterEvent::Sent { at, .. } => Some(*at),
            _ => None,
        })
        .collect();
    assert_eq!(sent.len(), 3);
    // 6 a minute: one every 10 s.
    assert!(
        sent[1] - sent[0] >= Duration::from_millis(9_900),
        "{:?}",
        sent[1] - sent[0]
    );
    assert!(
        sent[2] - sent[1] >= Duration::from_millis(9_900),
        "{:?}",
        sent[2] - sent[1]
    );
}

#[tokio::test(start_paused = true)]
async fn a_deleted_comment_is_posted_again() {
    let server = MockServer::start().await;
    mount_pull_of_commit(&server).await;
    Mock::given(method("GET"))
        .and(path(comments_path()))
        .respond_with(json_response(200, "issue-comments-page2.json"))
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{REPO}/issues/comments/{COMMENT_ID}")))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({
            "message": "Not Found",
            "documentation_url": "https://docs.github.com/rest/issues/comments#update-an-issue-comment",
            "status": "404"
        })))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(comments_path()))
        .respond_with(json_response(201, "issue-comment-created.json"))
        .mount(&server)
        .await;
    let reporter = Reporter::spawn(github(&server), config());

    let b = pr_comment(&summary(vec![web(4)]));
    reporter.submit(comment_update(b.clone()));
    reporter.idle().await;

    let patches = requests(
        &server,
        "PATCH",
        &format!("{REPO}/issues/comments/{COMMENT_ID}"),
    )
    .await;
    let posts = requests(&server, "POST", &comments_path()).await;
    assert_eq!((patches.len(), posts.len()), (1, 1));
    assert_eq!(body(&posts[0]), json!({ "body": b }));
}

#[tokio::test(start_paused = true)]
async fn upsert_edits_the_marked_comment_and_writes_nothing_when_it_already_says_it() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(comments_path()))
        .respond_with(json_response(200, "issue-comments-page2.json"))
        .mount(&server)
        .await;
    mount_comment_writes(&server).await;
    let gh = github(&server);
    let shown = fixture("issue-comments-page2.json")[0]["body"]
        .as_str()
        .expect("a body")
        .to_string();

    let same = gh.upsert_pr_comment(PR, &shown).await.expect("found");
    assert_eq!(same.id, COMMENT_ID);
    let new_body = pr_comment(&summary(vec![web(5)]));
    let edited = gh.upsert_pr_comment(PR, &new_body).await.expect("edited");
    assert_eq!(edited.id, COMMENT_ID);

    let patches = requests(
        &server,
        "PATCH",
        &format!("{REPO}/issues/comments/{COMMENT_ID}"),
    )
    .await;
    assert_eq!(patches.len(), 1, "only the changed body is written");
    assert_eq!(body(&patches[0]), json!({ "body": new_body }));
    assert_eq!(requests(&server, "POST", &comments_path()).await.len(), 0);
}

#[tokio::test(start_paused = true)]
async fn waiting_updates_are_bounded_and_the_oldest_is_dropped() {
    let server = MockServer::start().await;
    mount_statuses(&server).await;
    let reporter = Reporter::spawn(
        github(&server),
        ReporterConfig {
            max_pending: 2,
            ..config()
        },
    );
    let mut events = reporter.events();
    for app in ["a", "b", "c", "d", "e"] {
        reporter.submit(status_update(&format!("bosun/shop/{app}"), "in progress"));
    }
    reporter.idle().await;

    let dropped: Vec<String> = drain(&mut events)
        .into_iter()
        .filter_map(|e| match e {
            ReporterEvent::Dropped { key, .. } => Some(key),
            _ => None,
        })
        .collect();
    assert_eq!(
        dropped,
        ["a", "b", "c"]
            .map(|a| format!("status bosun/shop/{a} of {SHA}"))
            .to_vec()
    );
    let sent = requests(&server, "POST", &format!("{REPO}/statuses/{SHA}")).await;
    let contexts: Vec<Value> = sent.iter().map(|r| body(r)["context"].clone()).collect();
    assert_eq!(contexts, vec!["bosun/shop/d", "bosun/shop/e"]);
}

#[tokio::test(start_paused = true)]
async fn a_github_enterprise_api_path_is_kept_and_carries_the_token() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("/api/v3{REPO}/statuses/{SHA}")))
        .and(header("authorization", format!("Bearer {TOKEN}").as_str()))
        .respond_with(json_response(201, "status-created.json"))
        .expect(1)
        .mount(&server)
        .await;
    let gh = github_at(&format!("{}/api/v3/", server.uri()), None);
    let long = "x".repeat(300);
    gh.set_commit_status(SHA, "bosun/shop/web", StatusState::Success, &long, None)
        .await
        .expect("set");
    let sent = server.received_requests().await.expect("recording");
    let description = body(&sent[0])["description"]
        .as_str()
        .map(|d| d.chars().count());
    assert_eq!(
        description,
        Some(DESCRIPTION_LIMIT),
        "cut to what GitHub accepts"
    );
}

#[tokio::test(start_paused = true)]
async fn a_status_github_already_shows_is_not_sent_again_after_a_restart() {
    // A new leader (or a restarted Bosun) has sent nothing yet; GitHub shows the status already.
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/commits/{SHA}/status")))
        .respond_with(json_response(200, "combined-status.json"))
        .expect(1)
        .mount(&server)
        .await;
    mount_statuses(&server).await;
    let reporter = Reporter::spawn(github_at(&server.uri(), None), config());
    let mut events = reporter.events();

    reporter.submit(status_update("bosun/shop/web", "in progress"));
    loop {
        match events.recv().await {
            Ok(ReporterEvent::Unchanged { key }) => {
                assert!(key.contains("bosun/shop/web"), "{key}");
                break;
            }
            Ok(ReporterEvent::Sent { call, .. }) => panic!("sent {call} although GitHub shows it"),
            _ => {}
        }
    }
    // Something new is sent, once; the statuses are not read again.
    reporter.submit(status_update("bosun/shop/web", "canary 50 %"));
    reporter.idle().await;
    let posts = server
        .received_requests()
        .await
        .expect("recording")
        .into_iter()
        .filter(|r| r.method.as_str() == "POST")
        .count();
    assert_eq!(posts, 1);
}

#[tokio::test(start_paused = true)]
async fn who_may_write_is_asked_of_the_collaborator_permission() {
    let server = MockServer::start().await;
    let permission = |user: &str| format!("{REPO}/collaborators/{user}/permission");
    Mock::given(method("GET"))
        .and(path(permission("octocat")))
        .respond_with(json_response(200, "collaborator-permission-write.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(permission("visitor")))
        .respond_with(json_response(200, "collaborator-permission-read.json"))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(permission("stranger")))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})))
        .expect(1)
        .mount(&server)
        .await;
    let forge = github(&server);
    let user = |login: &str| bosun::forge::Commenter {
        login: login.into(),
        id: None,
    };
    assert!(forge.can_write(&user("octocat")).await.expect("asked"));
    assert!(!forge.can_write(&user("visitor")).await.expect("asked"));
    assert!(!forge.can_write(&user("stranger")).await.expect("asked"));
}

#[tokio::test(start_paused = true)]
async fn a_comment_acted_on_gets_a_thumbs_up_reaction() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(format!("{REPO}/issues/comments/9001/reactions")))
        .and(body_json(json!({"content": "+1"})))
        .respond_with(json_response(201, "reaction-created.json"))
        .expect(1)
        .mount(&server)
        .await;
    github(&server)
        .react_to_comment(PR, 9001)
        .await
        .expect("reacted");
}
