//! Plan previews through the real `bosun run`, on the real test cluster and git server, with GitHub
//! played by wiremock (fixtures/github/): an open pull request whose head changes definitions gets one
//! comment saying what merging it would do and a `bosun/plan` status on its head, both redone when the
//! pull request is pushed to; the head is read from the git server's `refs/pull/N/head`, and nothing
//! of it reaches the cluster before the merge.

mod support;

use bosun_core::model::{ManagedApplication, Phase};
use bosun_core::preview::{PREVIEW_CONTEXT, PREVIEW_MARKER};
use std::sync::{Arc, Mutex};

use serde_json::json;
use support::forge::{body, github, requests};
use support::gitserver::{self, TestRepo};
use support::process::Process;
use support::{TestNamespace, install_crds, wait_until};
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SHOP: &str = "apps/shop.yaml";
/// The pull request (the one `support::forge::github` answers comments of).
const PR: u64 = 1347;

fn app(name: &str, version: &str) -> String {
    format!(
        "apiVersion: apps.example.com/v1alpha1\nkind: ManagedApplication\nmetadata:\n  name: {name}\nspec:\n  version: \"{version}\"\n  replicas: 1\n  upgradeStrategy:\n    type: Canary\n    canary:\n      steps:\n        - weight: 50\n          pause: 30s\n"
    )
}

/// GitHub's answer to "the open pull requests into main": pull request `PR`, its head at whatever
/// `head` holds when asked.
async fn open_pull_request(gh: &MockServer, head: Arc<Mutex<String>>) {
    Mock::given(method("GET"))
        .and(path("/repos/team/apps/pulls"))
        .and(query_param("state", "open"))
        .and(query_param("base", "main"))
        .respond_with(move |_: &wiremock::Request| {
            let sha = head.lock().expect("not poisoned").clone();
            ResponseTemplate::new(200).set_body_json(json!([{
                "number": PR,
                "state": "open",
                "html_url": format!("https://github.com/team/apps/pull/{PR}"),
                "merged_at": null,
                "base": {"ref": "main", "sha": "0000000000000000000000000000000000000000"},
                "head": {"ref": "bump", "sha": sha},
            }]))
        })
        .mount(gh)
        .await;
}

/// Pushes the working copy's HEAD as the pull request's head, as GitHub serves it to git.
fn push_pull_request_head(repo: &TestRepo) -> String {
    let head = repo.head();
    let bare = repo.bare.display().to_string();
    repo.git(&[
        "push",
        "-q",
        "-f",
        &bare,
        &format!("HEAD:refs/pull/{PR}/head"),
    ]);
    head
}

fn previews(requests: &[wiremock::Request]) -> Vec<String> {
    requests
        .iter()
        .map(body)
        .filter_map(|b| b["body"].as_str().map(str::to_string))
        .filter(|b| b.starts_with(PREVIEW_MARKER))
        .collect()
}

#[tokio::test]
async fn an_open_pull_request_gets_a_plan_preview_edited_on_each_push_and_nothing_reaches_the_cluster()
 {
    let ns = TestNamespace::new("previews").await;
    install_crds(&ns.client).await;
    let repo = gitserver::shared().create_repo(&ns.name, &[(SHOP, &app("shop", "v1"))]);
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("token"), "ghp_preview_TEST_token").expect("token");
    std::fs::write(
        dir.path().join("password"),
        &gitserver::shared().http_password,
    )
    .expect("password");
    let gh = github().await;
    let pr_head = Arc::new(Mutex::new(String::new()));
    open_pull_request(&gh, pr_head.clone()).await;
    let bosun = Process::bosun(|c| {
        c.args(["run", "--repo", &repo.http_url, "--path", "apps"])
            .args(["--namespace", &ns.name, "--name", &ns.name])
            .args(["--engine-namespace", &ns.name, "--poll-interval", "1"])
            .args(["--preview-interval", "1"])
            .args(["--git-username", &gitserver::shared().http_user])
            .arg("--git-password-file")
            .arg(dir.path().join("password"))
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(["--listen", "127.0.0.1:0"])
            .args(["--forge", "github", "--forge-api-url", &gh.uri()])
            .args(["--forge-repo", "team/apps"])
            .arg("--forge-token-file")
            .arg(dir.path().join("token"));
    });
    let apps = ns.api::<ManagedApplication>();
    wait_until("shop Healthy at v1 from main", || async {
        let s = apps.get("shop").await.ok()?.status?;
        (s.phase == Some(Phase::Healthy)).then_some(())
    })
    .await;

    // The pull request: shop to v2 and a new app, committed on a branch that is not main.
    repo.git(&["checkout", "-q", "-b", "bump"]);
    repo.commit_unpushed(
        "shop v2, cart",
        &[
            (SHOP, app("shop", "v2")),
            ("apps/cart.yaml", app("cart", "v1")),
        ],
    );
    let head = push_pull_request_head(&repo);
    *pr_head.lock().expect("not poisoned") = head.clone();

    let comments = format!("/repos/team/apps/issues/{PR}/comments");
    let preview = wait_until("the plan preview on the pull request", || async {
        previews(&requests(&gh, "POST", &comments).await).pop()
    })
    .await;
    let ns_name = &ns.name;
    for line in [
        format!(
            "### 🔭 Bosun: what merging this would do (`{}` into `main`",
            &head[..7]
        ),
        "Merged, this would create 1, change 1.".to_string(),
        format!(
            "- `~ upgrade` ManagedApplication `{ns_name}/shop`: `v1` → `v2` (`apps/shop.yaml`)"
        ),
        "  - canary: 50 %, pause 30s → 100 %".to_string(),
        format!("- `+ create` ManagedApplication `{ns_name}/cart` at `v1` (`apps/cart.yaml`)"),
    ] {
        assert!(preview.contains(&line), "no {line:?} in:\n{preview}");
    }
    let statuses = format!("/repos/team/apps/statuses/{head}");
    let status = wait_until("the bosun/plan status on the head", || async {
        requests(&gh, "POST", &statuses)
            .await
            .iter()
            .map(body)
            .find(|b| b["context"] == PREVIEW_CONTEXT)
    })
    .await;
    assert_eq!(status["state"], "success");
    assert_eq!(status["description"], "would create 1, change 1");

    // Nothing of the pull request reached the cluster: main still says v1, and there is no cart.
    let shop = apps.get("shop").await.expect("shop");
    assert_eq!(shop.spec.version, "v1");
    assert!(apps.get_opt("cart").await.expect("get cart").is_none());

    // A push to the pull request with an invalid definition: the same comment is edited, and the
    // status fails.
    repo.commit_unpushed(
        "cart: bad replicas",
        &[(
            "apps/cart.yaml",
            app("cart", "v1").replace("replicas: 1", "replicas: -1"),
        )],
    );
    let head2 = push_pull_request_head(&repo);
    *pr_head.lock().expect("not poisoned") = head2.clone();
    let edited = wait_until("the preview edited for the new head", || async {
        let edits = requests(&gh, "PATCH", "/repos/team/apps/issues/comments/1003").await;
        previews(&edits)
            .into_iter()
            .find(|b| b.contains(&head2[..7]))
    })
    .await;
    assert!(
        edited.contains("❌ **Invalid (1 finding):** `bosun validate` refuses `apps/cart.yaml`"),
        "{edited}"
    );
    assert!(edited.contains("spec.replicas"), "{edited}");
    let status = wait_until("a failing bosun/plan status on the new head", || async {
        requests(&gh, "POST", &format!("/repos/team/apps/statuses/{head2}"))
            .await
            .iter()
            .map(body)
            .find(|b| b["context"] == PREVIEW_CONTEXT)
    })
    .await;
    assert_eq!(status["state"], "failure");
    assert_eq!(
        previews(&requests(&gh, "POST", &comments).await).len(),
        1,
        "one preview comment, edited"
    );
    drop(bosun);
}
