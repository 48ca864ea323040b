//! The whole loop on the real test cluster and git server, with GitHub played by a local wiremock server
//! answering with the shapes of GitHub's REST documentation (fixtures/github/): a canary that fails ends
//! with exactly one rollback commit, commit statuses ending in one failure, one pull request comment
//! created once and then edited through the steps, and a note on the commit.

mod support;

use std::process::Command;
use std::time::Duration;

use bosun_core::model::{ManagedApplication, Phase};
use serde_json::Value;
use support::gitserver::{self, TestRepo};
use support::process::Process;
use support::{TestNamespace, holds_for, install_crds, wait_until};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const FILE: &str = "apps/shop.yaml";

fn app(version: &str) -> String {
    [
        "apiVersion: apps.example.com/v1alpha1",
        "kind: ManagedApplication",
        "metadata:",
        "  name: shop",
        "spec:",
        &format!("  version: \"{version}\""),
        "  replicas: 2",
        "  upgradeStrategy:",
        "    type: Canary",
        "    progressDeadlineSeconds: 5",
        "    canary:",
        "      steps:",
        "        - weight: 50",
        "        - weight: 100",
        "",
    ]
    .join("\n")
}

fn fixture(name: &str) -> Value {
    let file = format!("{}/fixtures/github/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&file).expect("fixture")).expect("JSON")
}

async fn github() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/repos/team/apps/commits/[0-9a-f]{40}/pulls$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("commit-pulls.json")))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/team/apps/issues/1347/comments"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!([])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/repos/team/apps/issues/1347/comments"))
        .respond_with(
            ResponseTemplate::new(201).set_body_json(fixture("issue-comment-created.json")),
        )
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/team/apps/issues/comments/1003"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(fixture("issue-comment-updated.json")),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex(r"^/repos/team/apps/statuses/[0-9a-f]{40}$"))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("status-created.json")))
        .mount(&server)
        .await;
    server
}

async fn requests(server: &MockServer, verb: &str, path_is: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("recording")
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == path_is)
        .collect()
}

fn body(r: &Request) -> Value {
    serde_json::from_slice(&r.body).expect("JSON body")
}

fn server_main(repo: &TestRepo) -> String {
    let bare = repo.bare.display().to_string();
    repo.git(&["fetch", "-q", &bare, "+main:refs/remotes/server/main"]);
    repo.git(&["rev-parse", "refs/remotes/server/main"])
}

#[tokio::test]
async fn a_failing_canary_ends_with_one_rollback_commit_one_failure_status_and_one_comment() {
    let ns = TestNamespace::new("gh-e2e").await;
    install_crds(&ns.client).await;
    let repo = gitserver::shared().create_repo(&ns.name, &[(FILE, app("v1").as_str())]);
    let gh = github().await;
    let dir = tempfile::tempdir().expect("dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "ghp_e2e_TEST_token_never_logged").expect("token");
    let password = dir.path().join("password");
    std::fs::write(&password, &gitserver::shared().http_password).expect("password");
    let bosun = Process::bosun(|c| {
        c.args(["run", "--repo", &repo.http_url, "--path", "apps"])
            .args(["--namespace", &ns.name, "--name", &ns.name])
            .args(["--engine-namespace", &ns.name, "--poll-interval", "1"])
            .args(["--git-username", &gitserver::shared().http_user])
            .arg("--git-password-file")
            .arg(&password)
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(["--listen", "127.0.0.1:0"])
            .args(["--github-api-url", &gh.uri(), "--github-repo", "team/apps"])
            .arg("--github-token-file")
            .arg(&token);
    });
    let phase_is = |phase: Phase, version: &'static str| {
        let api = ns.api::<ManagedApplication>();
        async move {
            wait_until(&format!("{phase} at {version}"), || async {
                let s = api.get("shop").await.ok()?.status?;
                (s.phase == Some(phase) && s.target_version.as_deref() == Some(version))
                    .then_some(())
            })
            .await;
        }
    };
    phase_is(Phase::Healthy, "v1").await;

    let bump = repo.commit("shop: v2-broken", &[(FILE, app("v2-broken"))]);
    phase_is(Phase::Failed, "v2-broken").await;
    let statuses_path = format!("/repos/team/apps/statuses/{bump}");
    let failure = wait_until("a failure status on the commit", || async {
        requests(&gh, "POST", &statuses_path)
            .await
            .iter()
            .map(body)
            .find(|b| b["state"] == "failure")
    })
    .await;
    assert_eq!(failure["context"], format!("bosun/{}/shop", ns.name));
    let description = failure["description"].as_str().expect("description");
    assert!(description.chars().count() <= 140, "{description}");

    wait_until("one rollback commit on main", || async {
        let tip = server_main(&repo);
        repo.git(&["log", "-1", "--format=%s", &tip])
            .starts_with("Roll back ")
            .then_some(())
    })
    .await;
    let rollback = server_main(&repo);
    wait_until("the comment links the rollback commit", || async {
        let patches = requests(&gh, "PATCH", "/repos/team/apps/issues/comments/1003").await;
        let last = patches.last().map(body)?;
        last["body"]
            .as_str()?
            .contains(&rollback[..7])
            .then_some(())
    })
    .await;

    // Let everything settle, then count: nothing loops.
    holds_for(
        "no second rollback commit",
        Duration::from_secs(6),
        || async { server_main(&repo) == rollback },
    )
    .await;
    let statuses: Vec<Value> = requests(&gh, "POST", &statuses_path)
        .await
        .iter()
        .map(body)
        .collect();
    let states: Vec<&str> = statuses
        .iter()
        .filter_map(|b| b["state"].as_str())
        .collect();
    assert_eq!(
        states.iter().filter(|s| **s == "failure").count(),
        1,
        "one failure status: {states:?}"
    );
    assert_eq!(states.first(), Some(&"pending"), "{states:?}");
    assert_eq!(
        requests(&gh, "POST", "/repos/team/apps/issues/1347/comments")
            .await
            .len(),
        1,
        "one comment created"
    );
    let patches = requests(&gh, "PATCH", "/repos/team/apps/issues/comments/1003").await;
    assert!(!patches.is_empty(), "the comment is edited in place");
    let last = body(patches.last().expect("a PATCH"));
    let text = last["body"].as_str().expect("body");
    assert!(text.starts_with("<!-- bosun:pr-comment -->"), "{text}");
    assert!(text.contains("v2-broken"), "{text}");

    let bare = repo.bare.display().to_string();
    let note = Command::new("git")
        .args(["--git-dir", &bare, "notes", "--ref=bosun", "show", &bump])
        .output()
        .expect("git notes");
    assert!(
        String::from_utf8_lossy(&note.stdout).contains("rolled back to v1"),
        "{}",
        String::from_utf8_lossy(&note.stderr)
    );
    let logged = bosun.log();
    assert!(!logged.contains("ghp_e2e_TEST_token_never_logged"));
    // Every request carried the token, as GitHub needs.
    for r in gh.received_requests().await.expect("recording") {
        assert_eq!(
            r.headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.ends_with("ghp_e2e_TEST_token_never_logged")),
            Some(true),
            "{} {}",
            r.method,
            r.url
        );
    }
}
