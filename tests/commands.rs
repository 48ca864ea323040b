//! Comment commands through the real `bosun run`, on the real test cluster and git server, with GitHub
//! played by wiremock (fixtures/github/): a canary paused until promoted goes on when someone who may
//! write comments `/bosun promote shop` on the pull request of the commit it rolls out, and Bosun
//! reacts and replies; the same delivery replayed does nothing more; a read-only user gets a polite
//! refusal and nothing happens, once, even when the delivery is replayed to a restarted Bosun. A
//! Bestie held by a freeze starts its rollout on `/bosun promote --now bestie`.

mod support;

use bosun_core::model::{Bestie, ManagedApplication, Phase};
use kube::ResourceExt;
use serde_json::json;
use support::forge::{body, fixture, github, remember_comments, requests};
use support::gitserver;
use support::process::{Process, free_port};
use support::webhook::{post_event, sign_push};
use support::{TestNamespace, holds_for, install_crds, wait_explained, wait_until};
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

/// A namespace, its repository holding `file`, GitHub (with a memory of comments, permissions and
/// reactions), and what a Bosun of the scenario reads.
struct Scenario {
    ns: TestNamespace,
    repo: gitserver::TestRepo,
    dir: tempfile::TempDir,
    gh: MockServer,
    listen: String,
}

impl Scenario {
    async fn new(prefix: &str, file: &str, first: &str) -> Scenario {
        let ns = TestNamespace::new(prefix).await;
        install_crds(&ns.client).await;
        let repo = gitserver::shared().create_repo(&ns.name, &[(file, first)]);
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
        remember_comments(&gh, PR).await;
        let listen = format!("127.0.0.1:{}", free_port());
        Scenario {
            ns,
            repo,
            dir,
            gh,
            listen,
        }
    }

    /// `bosun run` on the repository, polling every second, hearing webhooks on `listen`.
    fn bosun(&self) -> Process {
        let (ns, dir) = (&self.ns.name, self.dir.path());
        Process::bosun(|c| {
            c.args(["run", "--repo", &self.repo.http_url, "--path", "apps"])
                .args(["--namespace", ns, "--name", ns])
                .args(["--engine-namespace", ns, "--poll-interval", "1"])
                .args(["--git-username", &gitserver::shared().http_user])
                .arg("--git-password-file")
                .arg(dir.join("password"))
                .arg("--cache-dir")
                .arg(dir.join("cache"))
                .args(["--listen", &self.listen])
                .arg("--webhook-secret-file")
                .arg(dir.join("secret"))
                .args([
                    "--github-api-url",
                    &self.gh.uri(),
                    "--github-repo",
                    "team/apps",
                ])
                .arg("--github-token-file")
                .arg(dir.join("token"));
        })
    }
}

#[tokio::test]
async fn a_promote_comment_moves_a_paused_canary_on_once_and_a_read_only_user_is_refused() {
    let sc = Scenario::new("cmds", FILE, &app("v1")).await;
    let (ns, repo, gh, listen) = (&sc.ns, &sc.repo, &sc.gh, &sc.listen);
    let start = || sc.bosun();
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
    let refused_signature = sign_push(SECRET.as_bytes(), &refused);
    let refused_headers = [
        ("X-GitHub-Event", "issue_comment"),
        ("X-GitHub-Delivery", "delivery-visitor"),
        ("X-Hub-Signature-256", refused_signature.as_str()),
    ];
    let (code, answer) = post_event(listen, &refused_headers, &refused).await;
    assert_eq!(code, 202, "{answer}");
    let refusal = wait_until("a refusal reply", || async {
        replies(gh)
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
    assert!(
        refusal.ends_with(&bosun::commands::reply_marker(5001)),
        "{refusal}"
    );
    assert_eq!(reactions(gh, 5001).await, 0);
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
    let (code, answer) = post_event(listen, &headers, &promote).await;
    assert_eq!(code, 202, "{answer}");
    wait_until("the canary goes on to v2", || {
        status_at(Phase::Healthy, "v2")
    })
    .await;
    let reply = wait_until("a reply saying what was done", || async {
        replies(gh)
            .await
            .into_iter()
            .find(|r| r.starts_with("@octocat"))
    })
    .await;
    assert!(
        reply.contains("Promoted step 1") && reply.contains("shop"),
        "{reply}"
    );
    assert_eq!(reactions(gh, 5002).await, 1);
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
    let (code, _) = post_event(listen, &headers, &promote).await;
    assert_eq!(code, 202);
    holds_for(
        "no second reply or reaction",
        std::time::Duration::from_secs(3),
        || answered_once(gh, "@octocat", 5002),
    )
    .await;
    let log = bosun.log();
    assert!(!log.contains("ghp_cmds_TEST_token"));

    // Replayed to a restarted Bosun, which remembers nothing: the app's annotation says it was done.
    drop(bosun);
    let restarted = start();
    let (code, answer) = post_event(listen, &headers, &promote).await;
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
        || answered_once(gh, "@octocat", 5002),
    )
    .await;

    // The refusal replayed to the restarted Bosun, which wrote nothing on the app for it: the
    // reply on the pull request says it was answered.
    let (code, answer) = post_event(listen, &refused_headers, &refused).await;
    assert_eq!(code, 202, "{answer}");
    wait_until("the restarted Bosun finds its refusal", || async {
        restarted
            .log()
            .contains("comment command already answered")
            .then_some(())
    })
    .await;
    let refusals = replies(gh).await;
    assert_eq!(
        refusals
            .iter()
            .filter(|r| r.starts_with("@visitor"))
            .count(),
        1,
        "one refusal: {refusals:#?}"
    );
}

/// Waits for `probe`, and on a timeout shows Bosun's log.
async fn until<T, Fut>(bosun: &Process, what: &str, probe: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_explained(
        std::time::Duration::from_secs(90),
        what,
        || bosun.log(),
        probe,
    )
    .await
}

fn bestie(version: &str, freeze: bool) -> String {
    let windows = if freeze {
        "  upgradeWindows:\n    - kind: deny\n      schedule: \"* * * * *\"\n      duration: 1h\n"
    } else {
        ""
    };
    format!(
        "apiVersion: pets.bestie.com/v1\nkind: Bestie\nmetadata:\n  name: bestie\nspec:\n  size: 1\n  image: quay.io/opdev/bestie\n  version: \"{version}\"\n{windows}"
    )
}

#[tokio::test]
async fn a_bestie_held_by_a_freeze_rolls_out_on_promote_now_and_takes_no_other_command() {
    const BESTIE: &str = "apps/bestie.yaml";
    let sc = Scenario::new("cmds-bestie", BESTIE, &bestie("1.3", false)).await;
    let (ns, repo, gh, listen) = (&sc.ns, &sc.repo, &sc.gh, &sc.listen);
    let bosun = sc.bosun();
    let _volume = support::volume::BestieVolume::provide(ns, "bestie").await;
    let api = ns.api::<Bestie>();
    until(&bosun, "the Bestie runs 1.3", || async {
        let s = api.get("bestie").await.ok()?.status?;
        (s.appversion.as_deref() == Some("1.3")).then_some(())
    })
    .await;

    // 1.4 under a freeze that never ends: it waits.
    let bump = repo.commit("bestie: 1.4, frozen", &[(BESTIE, bestie("1.4", true))]);
    until(
        &bosun,
        "the rollout of 1.4 waits for its window",
        || async {
            let b = api.get("bestie").await.ok()?;
            let applied = b.annotations().get("bosun.dev/revision") == Some(&bump);
            let waits = b.status?.conditions.iter().any(|c| {
                c.type_ == "WaitingForWindow" && c.status == "True" && c.message.contains("1.4")
            });
            (applied && waits).then_some(())
        },
    )
    .await;

    let send = |id: u64, text: &str| {
        let event = comment(id, "octocat", text, &repo.http_url);
        let listen = listen.clone();
        async move {
            let signature = sign_push(SECRET.as_bytes(), &event);
            let delivery = format!("delivery-{id}");
            let headers = [
                ("X-GitHub-Event", "issue_comment"),
                ("X-GitHub-Delivery", delivery.as_str()),
                ("X-Hub-Signature-256", signature.as_str()),
            ];
            let (code, answer) = post_event(&listen, &headers, &event).await;
            assert_eq!(code, 202, "{answer}");
        }
    };
    // A step promotion means nothing to a Bestie: a reply says what it takes.
    send(6001, "/bosun promote bestie").await;
    let why = until(&bosun, "a reply to the promote", || async {
        replies(gh)
            .await
            .into_iter()
            .find(|r| r.ends_with(&bosun::commands::reply_marker(6001)))
    })
    .await;
    assert!(
        why.contains("is a Bestie") && why.contains("/bosun promote --now bestie"),
        "{why}"
    );
    assert_eq!(reactions(gh, 6001).await, 0);

    // `--now`: the rollout starts in the freeze, and the Bestie records it.
    send(6002, "/bosun promote --now bestie").await;
    let status = until(&bosun, "the Bestie runs 1.4", || async {
        let s = api.get("bestie").await.ok()?.status?;
        (s.appversion.as_deref() == Some("1.4")).then_some(s)
    })
    .await;
    assert!(status.window_override.is_some(), "{status:#?}");
    let said = until(&bosun, "a reply saying the rollout started", || async {
        replies(gh)
            .await
            .into_iter()
            .find(|r| r.ends_with(&bosun::commands::reply_marker(6002)))
    })
    .await;
    assert!(
        said.contains("Starting the rollout of Bestie") && said.contains("1.4"),
        "{said}"
    );
    assert_eq!(reactions(gh, 6002).await, 1);
}
