//! The whole loop against the real Gitea of `scripts/forge`: `bosun run` as a process, watching a
//! Gitea repository over HTTP as the bot `bosun-bot` (its token as the git password), reporting to
//! that Gitea (`--forge gitea`) with the same token, on the shared test cluster. What is asserted is
//! read back from Gitea's API: commit statuses, the pull request's comments, the pull requests.
//!
//! - A version bump merged through a real pull request (squashed) fails its canary: the merge commit
//!   gets a `failure` status, the pull request one comment telling it; `main` is protected, so the
//!   bot's rollback push is refused and the rollback waits in one pull request from
//!   `bosun/rollback-…`.
//! - The live comment is edited in place, and found again by a Bosun started anew mid-canary. Here
//!   the pull request is merged with a merge commit, which changes no app: Bosun names the pull
//!   request's own commit (the one that changed the app), whose pull request Gitea does not look up.
//! - A push webhook that Gitea itself signs makes Bosun apply a change at once; one that Gitea signs
//!   with another secret is refused and changes nothing (Gitea 1.27's API lists no deliveries: the
//!   refusal is read in Bosun's log).
//! - Bosun's Gitea client on the answers those do not reach.
//! - An open pull request gets a plan preview and a `bosun/plan` status from the head Gitea serves at
//!   `refs/pull/N/head`, and nothing of it reaches the cluster.
//! - A writer's `/bosun promote shop` on the pull request whose commit is paused mid-canary promotes
//!   it, delivered by Gitea's own `issue_comment` webhook, and Bosun replies.
//!
//! Needs `BOSUN_TEST_FORGE_*` (`scripts/forge env`) and the test cluster (`scripts/cluster env`).

mod support;

use std::time::{Duration, Instant};

use bosun_core::model::{ManagedApplication, ManagedApplicationStatus, Phase};
use bosun_core::preview::{PREVIEW_CONTEXT, PREVIEW_MARKER};
use bosun_core::report::COMMENT_MARKER;
use serde_json::Value;
use support::gitea::{GiteaRepo, gitea};
use support::process::{Process, free_port};
use support::{TestNamespace, holds_for, install_crds, until_status_within, wait_explained};

const FILE: &str = "apps/shop.yaml";

/// The webhook secret Bosun is given.
const HOOK_SECRET: &str = "gitea-e2e-webhook-secret";

/// How long a scenario waits for Bosun and Gitea: an upgrade with a pause takes half a minute on
/// two busy cores.
const WAIT: Duration = Duration::from_secs(120);

/// The app `shop` at `version`, upgraded by a canary of two steps, 50 % (pausing `pause` seconds,
/// if any) and 100 %. A `-broken` version's pods never become ready: its canary fails after 5 s;
/// others get a minute (two busy cores may take more than 5 s to ready a pod).
fn app(version: &str, pause: Option<u32>) -> String {
    let deadline = if version.ends_with("-broken") { 5 } else { 60 };
    support::upgrade::two_step_canary(version, deadline, pause)
}

/// Polls `probe` until it returns `Some`, failing after [`WAIT`] with `what` and Bosun's log.
async fn until<T, Fut>(bosun: &Process, what: &str, probe: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_explained(WAIT, what, || bosun.log(), probe).await
}

/// A namespace, the app's repository on Gitea, and a directory for Bosun's caches and secrets.
struct Scenario {
    ns: TestNamespace,
    repo: GiteaRepo,
    dir: tempfile::TempDir,
}

impl Scenario {
    /// `test` names the repository, `prefix` the namespace; `main` holds the app at v1.
    async fn new(test: &str, prefix: &str) -> Scenario {
        let ns = TestNamespace::new(prefix).await;
        install_crds(&ns.client).await;
        let repo = gitea().create_repo(test, &[(FILE, &app("v1", None))]).await;
        let dir = tempfile::tempdir().expect("a directory for bosun");
        Scenario { ns, repo, dir }
    }

    /// `bosun run` on the repository as the bot, with its cache in `cache`, polling every
    /// `poll_secs`, listening on `listen`, reporting to Gitea with the bot's token; `extra` flags.
    fn bosun(&self, cache: &str, poll_secs: u32, listen: &str, extra: &[&str]) -> Process {
        let forge = gitea();
        let ns = &self.ns.name;
        Process::bosun(|c| {
            c.args(["run", "--repo", &self.repo.clone_url, "--path", "apps"])
                .args(["--namespace", ns, "--name", ns, "--engine-namespace", ns])
                .args(["--poll-interval", &poll_secs.to_string()])
                .args(["--git-username", &forge.bot, "--git-password-file"])
                .arg(&forge.bot_token_file)
                .arg("--cache-dir")
                .arg(self.dir.path().join(cache))
                .args(["--listen", listen])
                .args(["--forge", "gitea", "--forge-repo", &self.repo.full_name()])
                .args(["--forge-api-url", &format!("{}/api/v1", forge.url)])
                .arg("--forge-token-file")
                .arg(&forge.bot_token_file)
                .args(extra);
        })
    }

    /// Bosun polling every second, listening on any free port; once it has applied v1.
    async fn bosun_at_v1(&self, cache: &str) -> Process {
        let bosun = self.bosun(cache, 1, "127.0.0.1:0", &[]);
        self.reaches(&bosun, Phase::Healthy, "v1").await;
        bosun
    }

    /// Waits until `shop` is `phase` at `version`; fails with Bosun's log.
    async fn reaches(
        &self,
        bosun: &Process,
        phase: Phase,
        version: &str,
    ) -> ManagedApplicationStatus {
        until_status_within(
            WAIT,
            &self.ns,
            "shop",
            &format!("{phase} at {version}"),
            || bosun.log(),
            |s| s.phase == Some(phase) && s.target_version.as_deref() == Some(version),
        )
        .await
    }

    /// The status context of `shop`.
    fn context(&self) -> String {
        format!("bosun/{}/shop", self.ns.name)
    }

    /// Bosun's comments on pull request `pr`: those that start with its marker.
    async fn bosun_comments(&self, pr: u64) -> Vec<Value> {
        self.repo
            .comments(pr)
            .await
            .into_iter()
            .filter(|c| {
                c["body"]
                    .as_str()
                    .is_some_and(|b| b.starts_with(COMMENT_MARKER))
            })
            .collect()
    }

    /// Waits until Bosun's one comment on `pr` satisfies `ok`; the comment. Fails with Bosun's log
    /// and what the pull request's comments were.
    async fn comment_until(
        &self,
        bosun: &Process,
        pr: u64,
        what: &str,
        ok: impl Fn(&str) -> bool,
    ) -> Value {
        until(bosun, what, || async {
            let comments = self.bosun_comments(pr).await;
            let [c] = comments.as_slice() else {
                assert!(
                    comments.len() < 2,
                    "more than one Bosun comment: {comments:#?}"
                );
                return None;
            };
            ok(c["body"].as_str()?).then(|| c.clone())
        })
        .await
    }

    /// Waits until the status of `shop` on `sha` (the latest of its context, as Gitea shows it)
    /// satisfies `ok`; that status.
    async fn status_until(
        &self,
        bosun: &Process,
        sha: &str,
        what: &str,
        ok: impl Fn(&Value) -> bool,
    ) -> Value {
        until(bosun, what, || async {
            let latest = self.told(sha).await.pop()?;
            ok(&latest).then_some(latest)
        })
        .await
    }

    /// The statuses of `shop` on `sha`, oldest first.
    async fn told(&self, sha: &str) -> Vec<Value> {
        let context = self.context();
        let mut told: Vec<Value> = self
            .repo
            .statuses(sha)
            .await
            .into_iter()
            .filter(|s| s["context"] == context.as_str())
            .collect();
        told.reverse();
        told
    }

    /// Bosun with webhooks on (secret [`HOOK_SECRET`]), polling every 10 minutes: its first poll at
    /// the start, the next far after the test. Once it has applied v1: the process, and the URL
    /// for a webhook.
    async fn bosun_hearing_webhooks(&self) -> (Process, String) {
        let secret = self.dir.path().join("webhook-secret");
        std::fs::write(&secret, HOOK_SECRET).expect("writing the webhook secret");
        let listen = format!("127.0.0.1:{}", free_port());
        let flags = ["--webhook-secret-file", secret.to_str().expect("UTF-8")];
        let bosun = self.bosun("cache", 600, &listen, &flags);
        self.reaches(&bosun, Phase::Healthy, "v1").await;
        (bosun, format!("http://{listen}/webhook"))
    }
}

#[tokio::test]
async fn a_merged_bump_that_fails_its_canary_is_told_on_gitea_and_rolled_back_by_a_pull_request() {
    let sc = Scenario::new("gitea_e2e_failed_canary", "gitea-fail").await;
    let (repo, bot) = (&sc.repo, gitea().bot.as_str());
    sc.repo.protect_main().await;
    let bosun = sc.bosun_at_v1("cache").await;

    // A person bumps the version in a pull request and merges it (squashed: the merge commit is
    // the one commit that changes the app); the canary of v2-broken fails.
    let merged = repo
        .merge_change(
            "bump-shop",
            "shop: v2-broken",
            &[(FILE, &app("v2-broken", None))],
            "squash",
        )
        .await;
    let (pr, merge) = (merged.number, merged.commit.as_str());
    let failed = sc.reaches(&bosun, Phase::Failed, "v2-broken").await;
    assert_eq!(failed.target_revision.as_deref(), Some(merge));

    // The merge commit's status, as Gitea shows it, set by the bot.
    let failure = sc
        .status_until(&bosun, merge, "a failure status on the merge commit", |s| {
            s["status"] == "failure"
        })
        .await;
    assert_eq!(failure["creator"]["login"], bot, "{failure}");

    // The bot may not push to main: the rollback waits in a pull request from a branch of its own.
    let rollback = until(&bosun, "a rollback pull request", || async {
        repo.pull_requests().await.into_iter().find(|p| {
            p["head"]["ref"]
                .as_str()
                .is_some_and(|r| r.starts_with("bosun/rollback-"))
        })
    })
    .await;
    let rollback_number = rollback["number"].as_u64().expect("a number");
    assert_eq!(rollback["base"]["ref"], "main", "{rollback}");
    assert_eq!(rollback["state"], "open", "{rollback}");
    assert_eq!(rollback["user"]["login"], bot, "{rollback}");
    let branch = rollback["head"]["ref"]
        .as_str()
        .expect("a branch")
        .to_owned();
    assert_eq!(
        repo.file(&branch, FILE).await,
        app("v1", None),
        "the branch restores v1"
    );

    let rollback_pr = format!("rollback PR #{rollback_number}");
    sc.status_until(
        &bosun,
        merge,
        "the status names the rollback pull request",
        |s| {
            s["status"] == "failure"
                && s["description"]
                    .as_str()
                    .is_some_and(|d| d.contains(&rollback_pr))
        },
    )
    .await;

    // The pull request that brought the bump has one comment of Bosun's telling all of it.
    let comment = sc
        .comment_until(
            &bosun,
            pr,
            "the comment names the rollback pull request",
            |b| b.contains(&format!("pull request [#{rollback_number}]")),
        )
        .await;
    assert_eq!(comment["user"]["login"], bot, "{comment}");
    let text = comment["body"].as_str().expect("a body");
    assert!(text.contains("v2-broken"), "{text}");
    let failed_row = text
        .lines()
        .find(|l| l.starts_with("| ❌ |"))
        .unwrap_or_else(|| panic!("a failed step row: {text}"));
    assert!(
        failed_row.contains("Canary 50 %") && failed_row.contains("did not become ready"),
        "{failed_row}"
    );

    // Let everything settle, then count: nothing loops, nothing is written twice.
    let pulls_then = repo.pull_requests().await.len();
    holds_for(
        "main unchanged, nothing more opened",
        Duration::from_secs(6),
        || async {
            repo.branch_head("main").await == merge
                && repo.pull_requests().await.len() == pulls_then
        },
    )
    .await;
    let rollbacks: Vec<Value> = repo
        .pull_requests()
        .await
        .into_iter()
        .filter(|p| {
            p["head"]["ref"]
                .as_str()
                .is_some_and(|r| r.starts_with("bosun/"))
        })
        .collect();
    assert_eq!(
        rollbacks.len(),
        1,
        "one rollback pull request: {rollbacks:#?}"
    );
    assert_eq!(sc.bosun_comments(pr).await.len(), 1, "one Bosun comment");
    let told: Vec<(Value, Value)> = sc
        .told(merge)
        .await
        .into_iter()
        .map(|s| (s["status"].clone(), s["description"].clone()))
        .collect();
    let last = told.last().expect("statuses");
    assert_eq!(last.0, "failure", "{told:#?}");
    assert!(
        last.1.as_str().is_some_and(|d| d.contains(&rollback_pr)),
        "the last status names the rollback pull request: {told:#?}"
    );
    // Each said once, and failed for good once failed (the description gains the rollback pull
    // request once it is open: one status more, or none if it was open before the first was sent).
    for (i, t) in told.iter().enumerate() {
        assert!(!told[..i].contains(t), "{t:?} sent twice: {told:#?}");
    }
    let failed_at = told
        .iter()
        .position(|t| t.0 == "failure")
        .expect("a failure");
    assert!(
        told[failed_at..].iter().all(|t| t.0 == "failure"),
        "{told:#?}"
    );
    assert!(told.len() - failed_at <= 2, "{told:#?}");
    let log = bosun.log();
    assert!(
        log.contains("Not allowed to push to protected branch main"),
        "Gitea refused the bot's push to main, and Bosun says so:\n{log}"
    );
    let token = gitea()
        .token(support::gitea::As::Bot)
        .expect("the bot's token");
    assert!(!log.contains(token), "the token is never logged");
    no_forge_trouble(&log);
}

#[tokio::test]
async fn the_live_comment_is_edited_in_place_and_found_again_by_a_restarted_bosun() {
    let sc = Scenario::new("gitea_e2e_restart", "gitea-restart").await;
    let repo = &sc.repo;
    let first = sc.bosun_at_v1("cache-first").await;

    // v2's canary pauses 20 s at 50 %: the first Bosun tells it on the pull request, and is killed
    // during the pause. The pull request is merged with a merge commit, which changes no app: the
    // upgrade's commit is the pull request's own, which Gitea does not look up by itself.
    let merged = repo
        .merge_change(
            "bump-shop",
            "shop: v2",
            &[(FILE, &app("v2", Some(20)))],
            "merge",
        )
        .await;
    let pr = merged.number;
    let told = sc
        .comment_until(&first, pr, "the comment on the upgrade under way", |b| {
            b.contains("`v1` → `v2`, in progress")
        })
        .await;
    until_status_within(
        WAIT,
        &sc.ns,
        "shop",
        "the canary's pause",
        || first.log(),
        |s| s.pause_start_time.is_some() && s.target_version.as_deref() == Some("v2"),
    )
    .await;
    first.signal("KILL");
    no_forge_trouble(&first.log());
    drop(first);

    // A new Bosun, with a new cache, finishes the upgrade and edits the same comment.
    let second = sc.bosun("cache-second", 1, "127.0.0.1:0", &[]);
    sc.reaches(&second, Phase::Healthy, "v2").await;
    let healthy = sc
        .comment_until(&second, pr, "the comment telling v2 healthy", |b| {
            b.contains("`v1` → `v2`, healthy")
        })
        .await;
    assert_eq!(
        healthy["id"], told["id"],
        "the same comment, edited in place"
    );
    let text = healthy["body"].as_str().expect("a body");
    assert!(
        text.lines().any(|l| l.starts_with("| ✅ | Healthy |")),
        "{text}"
    );
    let done = support::app_status(&sc.ns, "shop").await;
    assert_eq!(done.target_revision.as_deref(), Some(merged.head.as_str()));
    let success = sc
        .status_until(&second, &merged.head, "a success status", |s| {
            s["status"] == "success"
        })
        .await;
    assert_eq!(success["creator"]["login"], gitea().bot.as_str());

    holds_for("one comment of Bosun's", Duration::from_secs(4), || async {
        sc.bosun_comments(pr).await.len() == 1
    })
    .await;
    no_forge_trouble(&second.log());
}

/// Fails unless every forge update of Bosun's went through at the first try: Gitea answered each
/// request as the dialect expects.
fn no_forge_trouble(log: &str) {
    for trouble in [
        "forge update dropped",
        "forge update delayed",
        "forge updates pile up",
    ] {
        assert_eq!(said(log, trouble), 0, "{trouble}:\n{log}");
    }
}

/// Counts the lines of `log` that say `what`.
fn said(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

#[tokio::test]
async fn a_push_webhook_signed_by_gitea_is_applied_long_before_the_next_poll() {
    let sc = Scenario::new("gitea_e2e_webhook", "gitea-hook").await;
    let repo = &sc.repo;
    let (bosun, url) = sc.bosun_hearing_webhooks().await;
    repo.add_webhook(&url, HOOK_SECRET, &["push"]).await;

    let pushed = Instant::now();
    let bump = repo.commit("shop: v2", &[(FILE, &app("v2", None))]).await;
    let applied = until_status_within(
        WAIT,
        &sc.ns,
        "shop",
        "the push applied",
        || bosun.log(),
        |s| s.target_revision.as_deref() == Some(bump.as_str()),
    )
    .await;
    let took = pushed.elapsed();
    assert_eq!(applied.target_version.as_deref(), Some("v2"));
    assert!(
        took < Duration::from_secs(60),
        "applied after {took:?}: a poll, not the webhook"
    );
    let log = bosun.log();
    assert!(said(&log, "webhook received") >= 1, "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("webhook received") && l.contains("woken=1")),
        "the push woke the source: {log}"
    );
    assert_eq!(said(&log, "webhook refused"), 0, "{log}");
    sc.reaches(&bosun, Phase::Healthy, "v2").await;
    no_forge_trouble(&bosun.log());
}

#[tokio::test]
async fn a_webhook_that_gitea_signs_with_another_secret_is_refused_and_changes_nothing() {
    let sc = Scenario::new("gitea_e2e_webhook_refused", "gitea-hook-refused").await;
    let repo = &sc.repo;
    let (bosun, url) = sc.bosun_hearing_webhooks().await;
    let wrong = repo.add_webhook(&url, "not-the-secret", &["push"]).await;

    repo.commit("shop: v2", &[(FILE, &app("v2", None))]).await;
    let refusal = until(&bosun, "Bosun refuses the delivery", || async {
        bosun
            .log()
            .lines()
            .find(|l| l.contains("webhook refused"))
            .map(str::to_owned)
    })
    .await;
    assert!(
        refusal.contains("signature does not match the body"),
        "{refusal}"
    );
    holds_for("shop stays at v1", Duration::from_secs(3), || async {
        support::app_status(&sc.ns, "shop")
            .await
            .target_version
            .as_deref()
            == Some("v1")
    })
    .await;
    assert_eq!(said(&bosun.log(), "webhook received"), 0, "{}", bosun.log());

    // What held v2 back was the signature alone: the same delivery from a webhook with the right
    // secret (Gitea's test delivery of main's head) is applied at once.
    repo.delete_webhook(wrong).await;
    let right = repo.add_webhook(&url, HOOK_SECRET, &["push"]).await;
    repo.test_webhook(right).await;
    sc.reaches(&bosun, Phase::Healthy, "v2").await;
    assert!(
        said(&bosun.log(), "webhook received") >= 1,
        "{}",
        bosun.log()
    );
    no_forge_trouble(&bosun.log());
}

/// Bosun's Gitea client, as the report stage uses it, on the answers the scenarios above do not
/// reach: a commit with no status (Gitea's `statuses: null`), the pull request of each commit a merge
/// brings in (Gitea looks up only the merge commit), none for a commit pushed straight to `main`, and a
/// rollback pull request opened twice (Gitea's 409, then found by base and a head with a slash).
#[tokio::test]
async fn bosun_s_gitea_client_finds_the_pull_request_of_each_commit_and_opens_one_once() {
    use bosun::forge::{Forge, ForgeConfig, ForgeKind, RepoRef, token_from_file};
    let forge = gitea();
    let repo = forge
        .create_repo("gitea_e2e_client", &[(FILE, &app("v1", None))])
        .await;
    let client = Forge::new(ForgeConfig::of(
        ForgeKind::Gitea,
        &format!("{}/api/v1", forge.url),
        token_from_file(&forge.bot_token_file).expect("the bot's token"),
        RepoRef::parse_for(ForgeKind::Gitea, &repo.full_name()).expect("owner/name"),
    ))
    .expect("a Gitea client");

    let seeded = repo.branch_head("main").await;
    assert_eq!(client.commit_statuses(&seeded).await.expect("statuses"), []);
    let none = client
        .pull_requests_for_commit(&seeded)
        .await
        .expect("pulls");
    assert!(
        none.is_empty(),
        "a commit pushed to main has no pull request: {none:?}"
    );

    // A pull request of two commits, merged with a merge commit: each of the three finds it.
    let bump = repo.commit_unpushed("shop: v2", &[(FILE, &app("v2", None))]);
    let docs = repo.commit_unpushed("docs", &[("README.md", "shop\n")]);
    let number = repo
        .open_pull_request("bump-and-docs", "shop: v2, and docs")
        .await;
    let merge = repo.merge_pull_request(number, "merge").await;
    for (which, sha) in [
        ("merge commit", &merge),
        ("head", &docs),
        ("first commit", &bump),
    ] {
        let prs = client.pull_requests_for_commit(sha).await.expect("pulls");
        let picked = bosun::forge::pick_pull_request(&prs, Some("main"))
            .unwrap_or_else(|| panic!("the {which} {sha} finds no pull request: {prs:?}"));
        assert_eq!(picked.number, number, "the {which}: {prs:?}");
        assert!(picked.merged && picked.base_ref == "main", "{picked:?}");
    }

    // A rollback pull request from a branch of the bot's: opened once, found again when asked twice.
    repo.commit_unpushed("Roll back shop", &[(FILE, &app("v1", None))]);
    let branch = "bosun/rollback-shop-v2";
    repo.push(
        support::gitea::As::Bot,
        &format!("HEAD:refs/heads/{branch}"),
    )
    .unwrap_or_else(|e| panic!("the bot's push of {branch}: {e}"));
    repo.wait_branch(branch, &repo.git(&["rev-parse", "HEAD"]))
        .await;
    let opened = client
        .open_pull_request(branch, "main", "Roll back shop", "v2 failed")
        .await
        .expect("opened");
    let again = client
        .open_pull_request(branch, "main", "Roll back shop", "v2 failed")
        .await
        .expect("the open one, found again");
    assert_eq!(again, opened);
    assert_eq!(
        (opened.head_ref.as_str(), opened.base_ref.as_str()),
        (branch, "main")
    );
    let rollbacks = repo
        .pull_requests()
        .await
        .into_iter()
        .filter(|p| p["head"]["ref"] == branch)
        .count();
    assert_eq!(rollbacks, 1);
}

/// Bosun's plan previews on `pr`: the comments that start with the preview's marker.
async fn previews_on(repo: &GiteaRepo, pr: u64) -> Vec<String> {
    repo.comments(pr)
        .await
        .iter()
        .filter_map(|c| c["body"].as_str().map(str::to_string))
        .filter(|b| b.starts_with(PREVIEW_MARKER))
        .collect()
}

#[tokio::test]
async fn an_open_pull_request_on_gitea_gets_a_plan_preview_and_a_plan_status() {
    let sc = Scenario::new("gitea-preview", "gitea-preview").await;
    let bosun = sc.bosun("cache", 1, "127.0.0.1:0", &["--preview-interval", "1"]);
    sc.reaches(&bosun, Phase::Healthy, "v1").await;

    // A pull request, not merged: shop to v2, as Gitea serves it to git at refs/pull/N/head.
    let head = sc
        .repo
        .commit_unpushed("shop: v2", &[(FILE, &app("v2", Some(30)))]);
    let pr = sc.repo.open_pull_request("bump-v2", "shop: v2").await;

    let preview = until(&bosun, "the plan preview on the pull request", || async {
        let previews = previews_on(&sc.repo, pr).await;
        assert!(previews.len() < 2, "more than one preview: {previews:#?}");
        previews.into_iter().next()
    })
    .await;
    let ns = &sc.ns.name;
    let upgrade = format!("- `~ upgrade` ManagedApplication `{ns}/shop`: `v1` → `v2` (`{FILE}`)");
    assert!(preview.contains(&upgrade), "no {upgrade:?} in:\n{preview}");
    assert!(
        preview.contains("  - canary: 50 %, pause 30s → 100 % → 100 %"),
        "{preview}"
    );
    let status = until(&bosun, "the bosun/plan status on the head", || async {
        sc.repo
            .statuses(&head)
            .await
            .into_iter()
            .find(|s| s["context"] == PREVIEW_CONTEXT)
    })
    .await;
    assert_eq!(status["status"], "success", "{status:#}");
    assert_eq!(
        status["creator"]["login"],
        gitea().bot.as_str(),
        "{status:#}"
    );

    // Nothing of the pull request reached the cluster.
    let st = sc.reaches(&bosun, Phase::Healthy, "v1").await;
    assert_eq!(st.current_version.as_deref(), Some("v1"));
    no_forge_trouble(&bosun.log());
}

#[tokio::test]
async fn a_writer_s_comment_on_gitea_promotes_a_paused_canary_and_is_answered() {
    let sc = Scenario::new("gitea-command", "gitea-command").await;
    // Gitea tells someone else's permission only to a repository admin: Bosun's account is one here.
    gitea()
        .api(
            support::gitea::As::Admin,
            "PUT",
            &sc.repo.api_path(&format!("/collaborators/{}", gitea().bot)),
            Some(&serde_json::json!({"permission": "admin"})),
        )
        .await;
    let (bosun, url) = sc.bosun_hearing_webhooks().await;
    sc.repo
        .add_webhook(
            &url,
            HOOK_SECRET,
            &["push", "issue_comment", "pull_request_comment"],
        )
        .await;
    let paused = app("v2", Some(1)).replace("pause: 1", "pause: untilPromoted");
    let merged = sc
        .repo
        .merge_change(
            "promote-me",
            "shop: v2, promoted by hand",
            &[(FILE, &paused)],
            "merge",
        )
        .await;
    until(&bosun, "the canary paused at its first step", || async {
        let s = sc
            .ns
            .api::<ManagedApplication>()
            .get("shop")
            .await
            .ok()?
            .status?;
        (s.step_index == Some(0)
            && s.target_version.as_deref() == Some("v2")
            && s.phase == Some(Phase::HealthChecking))
        .then_some(())
    })
    .await;

    // The admin (the repository's owner) asks in a comment on the pull request.
    let comment = gitea()
        .api_ok(
            support::gitea::As::Admin,
            "POST",
            &sc.repo
                .api_path(&format!("/issues/{}/comments", merged.number)),
            Some(&serde_json::json!({"body": "/bosun promote shop"})),
        )
        .await;
    assert!(comment["id"].as_u64().is_some(), "{comment:#}");
    sc.reaches(&bosun, Phase::Healthy, "v2").await;
    let reply = until(&bosun, "Bosun's reply on the pull request", || async {
        sc.repo
            .comments(merged.number)
            .await
            .iter()
            .filter_map(|c| c["body"].as_str().map(str::to_string))
            .find(|b| b.contains("Promoted step 1"))
    })
    .await;
    assert!(reply.contains(&format!("@{}", gitea().admin)), "{reply}");
    no_forge_trouble(&bosun.log());
}
