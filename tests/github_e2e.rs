//! The whole loop on the real test cluster and git server, with GitHub played by a local wiremock server
//! answering with the shapes of GitHub's REST documentation (fixtures/github/): a canary that fails ends
//! with exactly one rollback commit, commit statuses ending in one failure, one pull request comment
//! created once and then edited through the steps, and a note on the commit. And the same when the
//! leader is killed in the middle of it: the standby that finishes adds no second comment, commit or
//! status.

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosun_core::model::{ManagedApplication, Phase};
use serde_json::Value;
use support::forge::{body, fixture, github, requests};
use support::gitserver::{self, TestRepo};
use support::process::Process;
use support::{TestNamespace, holds_for, install_crds, wait_until};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const FILE: &str = "apps/shop.yaml";

fn app(version: &str) -> String {
    app_with_deadline(version, 5)
}

fn app_with_deadline(version: &str, progress_deadline_secs: u32) -> String {
    support::upgrade::two_step_canary(version, progress_deadline_secs, None)
}

fn server_main(repo: &TestRepo) -> String {
    let bare = repo.bare.display().to_string();
    repo.git(&["fetch", "-q", &bare, "+main:refs/remotes/server/main"]);
    repo.git(&["rev-parse", "refs/remotes/server/main"])
}

/// A namespace, the app's repository, and the token and password files a Bosun of the scenario reads.
struct Scenario {
    ns: TestNamespace,
    repo: TestRepo,
    dir: tempfile::TempDir,
}

impl Scenario {
    async fn new(prefix: &str, first: &str) -> Scenario {
        let ns = TestNamespace::new(prefix).await;
        install_crds(&ns.client).await;
        let repo = gitserver::shared().create_repo(&ns.name, &[(FILE, first)]);
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("token"), "ghp_e2e_TEST_token_never_logged").expect("token");
        std::fs::write(
            dir.path().join("password"),
            &gitserver::shared().http_password,
        )
        .expect("password");
        Scenario { ns, repo, dir }
    }

    /// `bosun run` on the repository, polling every second, reporting to `github`; `extra` flags.
    fn bosun(&self, github: &str, cache: &str, extra: &[&str]) -> Process {
        Process::bosun(|c| {
            c.args(["run", "--repo", &self.repo.http_url, "--path", "apps"])
                .args(["--namespace", &self.ns.name, "--name", &self.ns.name])
                .args(["--engine-namespace", &self.ns.name, "--poll-interval", "1"])
                .args(["--git-username", &gitserver::shared().http_user])
                .arg("--git-password-file")
                .arg(self.dir.path().join("password"))
                .arg("--cache-dir")
                .arg(self.dir.path().join(cache))
                .args(["--listen", "127.0.0.1:0"])
                .args(["--github-api-url", github, "--github-repo", "team/apps"])
                .arg("--github-token-file")
                .arg(self.dir.path().join("token"))
                .args(extra);
        })
    }

    async fn phase_is(&self, phase: Phase, version: &str) {
        let api = self.ns.api::<ManagedApplication>();
        wait_until(&format!("{phase} at {version}"), || async {
            let s = api.get("shop").await.ok()?.status?;
            (s.phase == Some(phase) && s.target_version.as_deref() == Some(version)).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn a_failing_canary_ends_with_one_rollback_commit_one_failure_status_and_one_comment() {
    let sc = Scenario::new("gh-e2e", &app("v1")).await;
    let (ns, repo) = (&sc.ns, &sc.repo);
    let gh = github().await;
    let bosun = sc.bosun(&gh.uri(), "cache", &[]);
    sc.phase_is(Phase::Healthy, "v1").await;

    let bump = repo.commit("shop: v2-broken", &[(FILE, app("v2-broken"))]);
    sc.phase_is(Phase::Failed, "v2-broken").await;
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
        let tip = server_main(repo);
        repo.git(&["log", "-1", "--format=%s", &tip])
            .starts_with("Roll back ")
            .then_some(())
    })
    .await;
    let rollback = server_main(repo);
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
        || async { server_main(repo) == rollback },
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
    // The last edit tells the whole story: the step that failed and why, and the rollback commit.
    let failed_row = text
        .lines()
        .find(|l| l.starts_with("| ❌ |"))
        .unwrap_or_else(|| panic!("a failed step row: {text}"));
    assert!(
        failed_row.contains("Canary 50 %") && failed_row.contains("did not become ready"),
        "{failed_row}"
    );
    assert!(
        text.contains(&rollback[..7]),
        "links the rollback commit: {text}"
    );

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

#[tokio::test]
async fn a_protected_branch_gets_the_rollback_as_a_pull_request_named_in_the_comment_and_status() {
    let sc = Scenario::new("gh-protected", &app("v1")).await;
    let repo = &sc.repo;
    let gh = github().await;
    // GitHub opens the pull request it is asked for, as its documentation shows (#118).
    Mock::given(method("POST"))
        .and(wiremock::matchers::path("/repos/team/apps/pulls"))
        .respond_with(move |r: &Request| {
            let asked = body(r);
            let mut pull = fixture("pull-created.json");
            pull["head"]["ref"] = asked["head"].clone();
            pull["base"]["ref"] = asked["base"].clone();
            pull["title"] = asked["title"].clone();
            ResponseTemplate::new(201).set_body_json(pull)
        })
        .mount(&gh)
        .await;
    let _bosun = sc.bosun(&gh.uri(), "cache", &[]);
    sc.phase_is(Phase::Healthy, "v1").await;

    // Merged, then main is protected: only a pull request changes it from now on (the canary
    // fails after its progress deadline of 5 s, long after this).
    let bump = repo.commit("shop: v2-broken", &[(FILE, app("v2-broken"))]);
    gitserver::shared().protect(&repo.name, "main");
    sc.phase_is(Phase::Failed, "v2-broken").await;

    let opened = wait_until("a rollback pull request", || async {
        requests(&gh, "POST", "/repos/team/apps/pulls")
            .await
            .first()
            .map(body)
    })
    .await;
    assert_eq!(opened["base"], "main", "{opened}");
    let branch = opened["head"].as_str().expect("a head").to_string();
    assert!(branch.starts_with("bosun/rollback-"), "{branch}");
    let bare = repo.bare.display().to_string();
    let restored = repo.git(&[
        "--git-dir",
        &bare,
        "show",
        &format!("refs/heads/{branch}:{FILE}"),
    ]);
    assert_eq!(
        restored.trim_end(),
        app("v1").trim_end(),
        "the branch restores v1"
    );

    let statuses_path = format!("/repos/team/apps/statuses/{bump}");
    wait_until(
        "the failure status names the rollback pull request",
        || async {
            let last = requests(&gh, "POST", &statuses_path)
                .await
                .last()
                .map(body)?;
            (last["state"] == "failure"
                && last["description"].as_str()?.ends_with("rollback PR #118"))
            .then_some(())
        },
    )
    .await;
    wait_until("the comment links the rollback pull request", || async {
        let last = requests(&gh, "PATCH", "/repos/team/apps/issues/comments/1003")
            .await
            .last()
            .map(body)?;
        last["body"]
            .as_str()?
            .contains("waits in pull request [#118](https://github.com/team/apps/pull/118)")
            .then_some(())
    })
    .await;
    holds_for(
        "one pull request, main untouched",
        Duration::from_secs(6),
        || async {
            requests(&gh, "POST", "/repos/team/apps/pulls").await.len() == 1
                && server_main(repo) == bump
        },
    )
    .await;
    assert_eq!(
        requests(&gh, "POST", "/repos/team/apps/issues/1347/comments")
            .await
            .len(),
        1,
        "one comment created"
    );
}

/// GitHub with a memory, for a test where one Bosun takes over from another: the comments it was sent
/// are listed back, and the combined status of a commit is the latest status of each context.
#[derive(Clone, Default)]
struct RememberingGitHub {
    comments: Arc<Mutex<Vec<String>>>,
    statuses: Arc<Mutex<Vec<Value>>>,
}

impl Respond for RememberingGitHub {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let comment = |body: &str| {
            let mut c = fixture("issue-comment-created.json");
            c["body"] = body.into();
            c
        };
        match (r.method.as_str(), r.url.path()) {
            ("GET", p) if p.ends_with("/comments") => {
                let list: Vec<Value> = self
                    .comments
                    .lock()
                    .expect("the mock's memory")
                    .iter()
                    .map(|b| comment(b))
                    .collect();
                ResponseTemplate::new(200).set_body_json(list)
            }
            ("POST", p) if p.ends_with("/comments") => {
                let text = body(r)["body"].as_str().unwrap_or_default().to_string();
                self.comments
                    .lock()
                    .expect("the mock's memory")
                    .push(text.clone());
                ResponseTemplate::new(201).set_body_json(comment(&text))
            }
            ("PATCH", _) => {
                let text = body(r)["body"].as_str().unwrap_or_default().to_string();
                if let Some(first) = self.comments.lock().expect("the mock's memory").first_mut() {
                    *first = text.clone();
                }
                ResponseTemplate::new(200).set_body_json(comment(&text))
            }
            ("POST", p) if p.contains("/statuses/") => {
                self.statuses
                    .lock()
                    .expect("the mock's memory")
                    .push(body(r));
                ResponseTemplate::new(201).set_body_json(fixture("status-created.json"))
            }
            ("GET", p) if p.ends_with("/status") => {
                let mut latest: Vec<Value> = Vec::new();
                for s in self
                    .statuses
                    .lock()
                    .expect("the mock's memory")
                    .iter()
                    .rev()
                {
                    if !latest.iter().any(|l| l["context"] == s["context"]) {
                        latest.push(s.clone());
                    }
                }
                let mut combined = fixture("combined-status.json");
                combined["statuses"] = latest.into();
                ResponseTemplate::new(200).set_body_json(combined)
            }
            // GitHub's own 404 body.
            _ => ResponseTemplate::new(404).set_body_json(serde_json::json!({
                "message": "Not Found",
                "documentation_url": "https://docs.github.com/rest",
            })),
        }
    }
}

#[tokio::test]
async fn a_standby_that_takes_over_mid_canary_sends_no_second_comment_commit_or_status() {
    let sc = Scenario::new("gh-ha", &app_with_deadline("v1", 20)).await;
    let (ns, repo) = (&sc.ns, &sc.repo);
    let gh = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/repos/team/apps/commits/[0-9a-f]{40}/pulls$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(fixture("commit-pulls.json")))
        .mount(&gh)
        .await;
    let remembering = RememberingGitHub::default();
    Mock::given(path_regex(r"^/repos/team/apps/(issues|statuses|commits)/"))
        .respond_with(remembering.clone())
        .mount(&gh)
        .await;
    let replica = |identity: &str| {
        let lease = [
            "--leader-elect",
            "--lease-namespace",
            &ns.name,
            "--identity",
            identity,
            "--lease-duration",
            "4",
        ];
        sc.bosun(&gh.uri(), &format!("cache-{identity}"), &lease)
    };
    let holder = || async {
        ns.api::<k8s_openapi::api::coordination::v1::Lease>()
            .get_opt("bosun")
            .await
            .ok()??
            .spec?
            .holder_identity
    };
    let a = replica("a");
    wait_until("a leads", || async {
        (holder().await.as_deref() == Some("a")).then_some(())
    })
    .await;
    let _b = replica("b");
    sc.phase_is(Phase::Healthy, "v1").await;

    // v2-broken never becomes ready: the canary fails at its 20 s deadline. `a` starts it, reports
    // it on the pull request, and is killed; `b` takes over, rolls back and reports the end.
    let bump = repo.commit(
        "shop: v2-broken",
        &[(FILE, app_with_deadline("v2-broken", 20))],
    );
    wait_until("a's comment on the pull request", || async {
        (!remembering
            .comments
            .lock()
            .expect("the mock's memory")
            .is_empty())
        .then_some(())
    })
    .await;
    a.signal("KILL");
    wait_until("b takes the lease", || async {
        (holder().await.as_deref() == Some("b")).then_some(())
    })
    .await;
    sc.phase_is(Phase::Failed, "v2-broken").await;
    wait_until("the rollback commit on main", || async {
        let tip = server_main(repo);
        repo.git(&["log", "-1", "--format=%s", &tip])
            .starts_with("Roll back ")
            .then_some(())
    })
    .await;
    let rollback = server_main(repo);
    let context = format!("bosun/{}/shop", ns.name);
    wait_until("b's failure status", || async {
        remembering
            .statuses
            .lock()
            .expect("the mock's memory")
            .iter()
            .any(|s| s["state"] == "failure" && s["context"] == context.as_str())
            .then_some(())
    })
    .await;
    holds_for(
        "nothing more is written",
        Duration::from_secs(6),
        || async { server_main(repo) == rollback },
    )
    .await;

    let comments = remembering
        .comments
        .lock()
        .expect("the mock's memory")
        .clone();
    assert_eq!(
        comments.len(),
        1,
        "one comment, edited by both: {comments:#?}"
    );
    assert!(
        comments[0].contains(&rollback[..7]),
        "b's edit links the rollback: {}",
        comments[0]
    );
    let statuses = remembering
        .statuses
        .lock()
        .expect("the mock's memory")
        .clone();
    let said: Vec<(String, String)> = statuses
        .iter()
        .filter(|s| s["context"] == context.as_str())
        .map(|s| {
            (
                s["state"].as_str().unwrap_or_default().into(),
                s["description"].as_str().unwrap_or_default().into(),
            )
        })
        .collect();
    for (i, st) in said.iter().enumerate() {
        assert!(
            !said[..i].contains(st),
            "a status sent twice ({st:?}): {said:#?}"
        );
    }
    assert_eq!(
        said.iter().filter(|(s, _)| s == "failure").count(),
        1,
        "{said:#?}"
    );
    let subjects = repo.git(&["log", "--format=%s", &rollback]);
    assert_eq!(
        subjects
            .lines()
            .filter(|l| l.starts_with("Roll back "))
            .count(),
        1,
        "one rollback commit:\n{subjects}"
    );
    let bare = repo.bare.display().to_string();
    let note = Command::new("git")
        .args(["--git-dir", &bare, "notes", "--ref=bosun", "show", &bump])
        .output()
        .expect("git notes");
    assert!(String::from_utf8_lossy(&note.stdout).contains("rolled back to v1"));
}

/// Matches every request while on: GitHub down.
#[derive(Clone, Default)]
struct Outage(Arc<std::sync::atomic::AtomicBool>);

impl Outage {
    fn set(&self, down: bool) {
        self.0.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

impl wiremock::Match for Outage {
    fn matches(&self, _: &Request) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// How long GitHub is down in [`github_down_for_minutes_holds_up_no_upgrade_and_the_pull_request_catches_up`]:
/// 10 minutes, far past the reporter's longest backoff (`BOSUN_TEST_GITHUB_OUTAGE_SECS` shortens it).
fn outage() -> Duration {
    Duration::from_secs(
        std::env::var("BOSUN_TEST_GITHUB_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(600),
    )
}

#[tokio::test]
async fn github_down_for_minutes_holds_up_no_upgrade_and_the_pull_request_catches_up() {
    let named =
        |name: &str, version: &str| app(version).replace("name: shop", &format!("name: {name}"));
    let sc = Scenario::new("gh-outage", &app("v1")).await;
    let (ns, repo) = (&sc.ns, &sc.repo);
    repo.commit(
        "cart and search",
        &[
            ("apps/cart.yaml", named("cart", "v1")),
            ("apps/search.yaml", named("search", "v1")),
        ],
    );
    let gh = github().await;
    let bosun = sc.bosun(&gh.uri(), "cache", &[]);
    let apps = ns.api::<ManagedApplication>();
    let settled = |name: &'static str, phase: Phase, version: &'static str| {
        let apps = apps.clone();
        async move {
            wait_until(&format!("{name} {phase} at {version}"), || async {
                let s = apps.get(name).await.ok()?.status?;
                (s.phase == Some(phase) && s.target_version.as_deref() == Some(version))
                    .then_some(())
            })
            .await
        }
    };
    for name in ["shop", "cart", "search"] {
        settled(name, Phase::Healthy, "v1").await;
    }

    // GitHub answers 503 to everything; three apps upgrade in one commit, one of them fails.
    // (A switch, not a scoped mock: wiremock 0.6.5 sorts its mocks by priority and then deactivates
    // a dropped scoped mock by its old index, which is another mock's.)
    let down = Outage::default();
    Mock::given(down.clone())
        .respond_with(ResponseTemplate::new(503).set_body_string("unavailable"))
        .with_priority(1)
        .mount(&gh)
        .await;
    let before = gh.received_requests().await.expect("recording").len();
    down.set(true);
    let went_down = std::time::Instant::now();
    let bump = repo.commit(
        "shop, cart and search: v2",
        &[
            (FILE, app("v2-broken")),
            ("apps/cart.yaml", named("cart", "v2")),
            ("apps/search.yaml", named("search", "v2")),
        ],
    );
    settled("shop", Phase::Failed, "v2-broken").await;
    settled("cart", Phase::Healthy, "v2").await;
    settled("search", Phase::Healthy, "v2").await;
    assert!(
        went_down.elapsed() < outage(),
        "the upgrades finished while GitHub was down, after {:?}",
        went_down.elapsed()
    );
    let rollback = wait_until("the rollback commit, GitHub or not", || async {
        let tip = server_main(repo);
        repo.git(&["log", "-1", "--format=%s", &tip])
            .starts_with("Roll back ")
            .then_some(tip)
    })
    .await;
    let tried = gh.received_requests().await.expect("recording").len();
    assert!(tried > 0, "Bosun kept trying GitHub");
    tokio::time::sleep(outage().saturating_sub(went_down.elapsed())).await; // the outage itself
    let during = gh.received_requests().await.expect("recording").len();
    down.set(false);
    let back = std::time::Instant::now();
    let statuses_path = format!("/repos/team/apps/statuses/{bump}");

    // Within two minutes of GitHub's return: each app's last status is its outcome, and the one
    // comment tells all three.
    let deadline = back + Duration::from_secs(180);
    let answered = |r: &Request| r.url.path() == statuses_path;
    loop {
        let sent = gh.received_requests().await.expect("recording");
        let last_state = |context: &str| {
            sent.iter()
                .filter(|r| answered(r))
                .map(body)
                .rfind(|b| b["context"] == format!("bosun/{}/{context}", ns.name))
                .and_then(|b| b["state"].as_str().map(str::to_owned))
        };
        let states = ["shop", "cart", "search"].map(last_state);
        let comment = sent
            .iter()
            .filter(|r| r.url.path().contains("/comments") && r.method.as_str() != "GET")
            .filter_map(|r| body(r)["body"].as_str().map(str::to_owned))
            .next_back()
            .unwrap_or_default();
        let done = states
            == [
                Some("failure".to_owned()),
                Some("success".to_owned()),
                Some("success".to_owned()),
            ]
            && comment.contains(&rollback[..7])
            && ["shop", "cart", "search"]
                .iter()
                .all(|a| comment.contains(a));
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "GitHub back for {:?}: statuses {states:?}, comment:\n{comment}\nbosun's log:\n{}",
            back.elapsed(),
            bosun.log()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Every answer during the outage was a 503: what was created is what GitHub received before it
    // and since its return, and that is one comment (created for the first commit or after the
    // outage, then edited in place).
    let sent = gh.received_requests().await.expect("recording");
    let created = sent[..before]
        .iter()
        .chain(&sent[during..])
        .filter(|r| r.method.as_str() == "POST" && r.url.path().ends_with("/issues/1347/comments"))
        .count();
    assert_eq!(created, 1, "one comment, no duplicate");
}
