//! Comment commands through the real `bosun run`, on the real test cluster and git server, with GitHub
//! played by wiremock (fixtures/github/): a canary paused until promoted goes on when someone who may
//! write comments `/bosun promote shop` on the pull request of the commit it rolls out, and Bosun
//! reacts and replies; the same delivery replayed does nothing more; a read-only user gets a polite
//! refusal and nothing happens.

mod support;

use bosun_core::model::{ManagedApplication, Phase};
use serde_json::json;
use support::forge::{body, fixture, github, requests};
use support::gitserver;
use support::process::{Process, free_port};
use support::webhook::{post_event, sign_push};
use support::{TestNamespace, holds_for, install_crds, wait_until};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const FILE: &str = "apps/shop.yaml";
/// The pull request `support::forge::github` says every commit belongs to.
const PR: u64 = 1347;
const SECRET: &str = "comment-commands-hook-secret";

fn app(version: &str) -> String {
    format!(
        "apiVersion: apps.example.com/v1alpha1\nkind: ManagedApplication\nmetadata:\n  name: shop\nspec:\n  version: \"{version}\"\n  replicas: 2\n  upgradeStrategy:\n    type: Canary\n    canary:\n      steps:\n        - weight: 50\n          pause: untilPromoted\n        - weight: 100\n"
    )
}

/// A comment created on pull request 1347, as GitHub's `issue_comment` webhook sends it.
fn comment(id: u64, login: &str, text: &str, repo_url: &str) -> String {
    json!({
        "action": "created",
        "issue": {"number": PR, "pull_request": {"url": format!("https://api.github.com/repos/team/apps/pulls/{PR}")}},
        "comment": {"id": id, "body": text, "user": {"login": login, "id": id + 1}},
        "repository": {"clone_url": repo_url, "full_name": "team/apps"}
    })
    .to_string()
}

async fn mount_permissions_and_reactions(gh: &MockServer) {
    for (user, fixture_name) in [
        ("octocat", "collaborator-permission-write.json"),
        ("visitor", "collaborator-permission-read.json"),
    ] {
        Mock::given(method("GET"))
            .and(path(format!(
                "/repos/team/apps/collaborators/{user}/permission"
            )))
            .respond_with(ResponseTemplate::new(200).set_body_json(fixture(fixture_name)))
            .mount(gh)
            .await;
    }
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(
            r"^/repos/team/apps/issues/comments/[0-9]+/reactions$",
        ))
        .respond_with(ResponseTemplate::new(201).set_body_json(fixture("reaction-created.json")))
        .mount(gh)
        .await;
}

/// Bosun's replies to commands: its comments on the pull request that mention someone.
async fn replies(gh: &MockServer) -> Vec<String> {
    requests(
        gh,
        "POST",
        &format!("/repos/team/apps/issues/{PR}/comments"),
    )
    .await
    .iter()
    .filter_map(|r| body(r)["body"].as_str().map(str::to_string))
    .filter(|b| b.starts_with('@'))
    .collect()
}

async fn reactions(gh: &MockServer, id: u64) -> usize {
    requests(
        gh,
        "POST",
        &format!("/repos/team/apps/issues/comments/{id}/reactions"),
    )
    .await
    .len()
}

/// Whether the comment `id` got exactly one reaction, and its author (`mention`) exactly one reply.
async fn answered_once(gh: &MockServer, mention: &str, id: u64) -> bool {
    replies(gh)
        .await
        .iter()
        .filter(|r| r.starts_with(mention))
        .count()
        == 1
        && reactions(gh, id).await == 1
}

#[tokio::test]
async fn a_promote_comment_moves_a_paused_canary_on_once_and_a_read_only_user_is_refused() {
    let ns = TestNamespace::new("cmds").await;
    install_crds(&ns.client).await;
    let repo = gitserver::shared().create_repo(&ns.name, &[(FILE, &app("v1"))]);
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("token"), "ghp_cmds_TEST_token").expect("token");
    std::fs::write(
        dir.path().join("password"),
        &gitserver::shared().http_password,
    )
    .expect("password");
    std::fs::write(dir.path().join("secret"), SECRET).expect("secret");
    let gh = github().await;
    mount_permissions_and_reactions(&gh).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let start = || {
        Process::bosun(|c| {
            c.args(["run", "--repo", &repo.http_url, "--path", "apps"])
                .args(["--namespace", &ns.name, "--name", &ns.name])
                .args(["--engine-namespace", &ns.name, "--poll-interval", "1"])
                .args(["--git-username", &gitserver::shared().http_user])
                .arg("--git-password-file")
                .arg(dir.path().join("password"))
                .arg("--cache-dir")
                .arg(dir.path().join("cache"))
                .args(["--listen", &listen])
                .arg("--webhook-secret-file")
                .arg(dir.path().join("secret"))
                .args(["--github-api-url", &gh.uri(), "--github-repo", "team/apps"])
                .arg("--github-token-file")
                .arg(dir.path().join("token"));
        })
    };
    let bosun = start();
    let api = ns.api::<ManagedApplication>();
    let status_at = |phase: Phase, version: &'static str| {
        let api = api.clone();
        async move {
            let s = api.get("shop").await.ok()?.status?;
            (s.phase == Some(phase) && s.target_version.as_deref() == Some(version)).then_some(s)
        }
    };
    wait_until("shop healthy at v1", || status_at(Phase::Healthy, "v1")).await;
    let bump = repo.commit("shop: v2", &[(FILE, app("v2"))]);
    let paused = wait_until("the canary paused at its first step", || async {
        let s = status_at(Phase::HealthChecking, "v2").await?;
        (s.step_index == Some(0) && s.target_revision.as_deref() == Some(bump.as_str()))
            .then_some(s)
    })
    .await;
    assert_eq!(paused.canary_weight, Some(50));

    // A read-only user: a polite refusal, and the canary stays.
    let refused = comment(5001, "visitor", "/bosun promote shop", &repo.http_url);
    let (code, answer) = post_event(
        &listen,
        &[
            ("X-GitHub-Event", "issue_comment"),
            ("X-GitHub-Delivery", "delivery-visitor"),
            (
                "X-Hub-Signature-256",
                &sign_push(SECRET.as_bytes(), &refused),
            ),
        ],
        &refused,
    )
    .await;
    assert_eq!(code, 202, "{answer}");
    let refusal = wait_until("a refusal reply", || async {
        replies(&gh)
            .await
            .into_iter()
            .find(|r| r.starts_with("@visitor"))
    })
    .await;
    assert!(
        refusal.contains("sorry") && refusal.contains("write"),
        "{refusal}"
    );
    assert!(refusal.contains("nothing was done"), "{refusal}");
    assert_eq!(reactions(&gh, 5001).await, 0);
    holds_for(
        "the canary waits after the refusal",
        std::time::Duration::from_secs(3),
        || async {
            status_at(Phase::HealthChecking, "v2")
                .await
                .and_then(|s| s.step_index)
                == Some(0)
        },
    )
    .await;

    // Someone who may write: the canary goes on, a 👍 and a reply saying what was done.
    let promote = comment(
        5002,
        "octocat",
        "Looks good.\n/bosun promote shop",
        &repo.http_url,
    );
    let signature = sign_push(SECRET.as_bytes(), &promote);
    let headers = [
        ("X-GitHub-Event", "issue_comment"),
        ("X-GitHub-Delivery", "delivery-octocat"),
        ("X-Hub-Signature-256", signature.as_str()),
    ];
    let (code, answer) = post_event(&listen, &headers, &promote).await;
    assert_eq!(code, 202, "{answer}");
    wait_until("the canary goes on to v2", || {
        status_at(Phase::Healthy, "v2")
    })
    .await;
    let reply = wait_until("a reply saying what was done", || async {
        replies(&gh)
            .await
            .into_iter()
            .find(|r| r.starts_with("@octocat"))
    })
    .await;
    assert!(
        reply.contains("Promoted step 1") && reply.contains("shop"),
        "{reply}"
    );
    assert_eq!(reactions(&gh, 5002).await, 1);
    let app = api.get("shop").await.expect("shop");
    let deliveries = app
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(bosun::commands::ANNOTATION_DELIVERIES))
        .cloned()
        .unwrap_or_default();
    assert!(deliveries.contains("delivery-octocat"), "{deliveries}");

    // The same delivery again: answered 202, acted on and replied to never again.
    let (code, _) = post_event(&listen, &headers, &promote).await;
    assert_eq!(code, 202);
    holds_for(
        "no second reply or reaction",
        std::time::Duration::from_secs(3),
        || answered_once(&gh, "@octocat", 5002),
    )
    .await;
    let log = bosun.log();
    assert!(!log.contains("ghp_cmds_TEST_token"));

    // Replayed to a restarted Bosun, which remembers nothing: the app's annotation says it was done.
    drop(bosun);
    let restarted = start();
    let (code, answer) = post_event(&listen, &headers, &promote).await;
    assert_eq!(code, 202, "{answer}");
    wait_until(
        "the restarted Bosun reads the delivery on the app",
        || async {
            restarted
                .log()
                .contains("comment delivery already acted on")
                .then_some(())
        },
    )
    .await;
    holds_for(
        "no reply or reaction after the restart either",
        std::time::Duration::from_secs(4),
        || answered_once(&gh, "@octocat", 5002),
    )
    .await;
}
