//! The real Gitea of `scripts/forge`, checked as the forge tests will use it (tests/support/gitea.rs):
//! the API answers each token as its user, a test repository clones over HTTP with git, the bot
//! standing for Bosun is refused on a protected `main`, and a push is delivered to a loopback webhook
//! signed as Gitea signs. Without `BOSUN_TEST_FORGE_*` (`scripts/forge env`) every test here fails.

mod support;

use std::time::Duration;

use support::gitea::{As, HookListener, git_command, gitea, hmac_sha256_hex};

#[tokio::test]
async fn api_answers_each_token_as_its_user() {
    let forge = gitea();
    let version = forge.api_ok(As::Admin, "GET", "/version", None).await;
    assert_eq!(version["version"], "1.27.3", "{version}");

    let admin = forge.api_ok(As::Admin, "GET", "/user", None).await;
    assert_eq!(admin["login"], forge.admin.as_str());
    assert_eq!(admin["is_admin"], true, "{admin}");

    let bot = forge.api_ok(As::Bot, "GET", "/user", None).await;
    assert_eq!(bot["login"], forge.bot.as_str());
    assert_eq!(
        bot["is_admin"], false,
        "Bosun's user must not be an admin: {bot}"
    );

    // The bot's token is not the admin's: site administration is out of its reach, and so is a
    // request without any token.
    let admin_only = forge.api(As::Bot, "GET", "/admin/users", None).await;
    assert_eq!(admin_only.status, 403, "{}", admin_only.text);
    let anonymous = forge.api(As::Anonymous, "GET", "/user", None).await;
    assert_eq!(anonymous.status, 401, "{}", anonymous.text);
}

#[tokio::test]
async fn a_test_repository_clones_over_http() {
    let forge = gitea();
    let repo = forge
        .create_repo(
            "a_test_repository_clones_over_http",
            &[
                ("apps/web.yaml", "image: web:1.0\n"),
                ("README.md", "apps\n"),
            ],
        )
        .await;
    let seeded = repo.git(&["rev-parse", "HEAD"]);
    assert_eq!(repo.branch_head("main").await, seeded);

    let into = tempfile::tempdir().expect("a temp dir");
    let clone = into.path().join("clone");
    let clone_arg = clone.to_str().expect("a UTF-8 path");
    let out = git_command(into.path(), Some((forge, As::Bot)))
        .args(["clone", "-q", &repo.clone_url, clone_arg])
        .output()
        .expect("running git clone");
    assert!(
        out.status.success(),
        "git clone {} as {}: {}",
        repo.clone_url,
        forge.bot,
        String::from_utf8_lossy(&out.stderr)
    );
    let web = std::fs::read_to_string(clone.join("apps/web.yaml")).expect("apps/web.yaml cloned");
    assert_eq!(web, "image: web:1.0\n");
    let head = git_command(&clone, None)
        .args(["rev-parse", "HEAD"])
        .output()
        .expect("git rev-parse");
    assert_eq!(String::from_utf8_lossy(&head.stdout).trim(), seeded);
    let branch = git_command(&clone, None)
        .args(["symbolic-ref", "--short", "HEAD"])
        .output()
        .expect("git symbolic-ref");
    assert_eq!(String::from_utf8_lossy(&branch.stdout).trim(), "main");

    // The repository is private: without credentials git is turned away.
    let anonymous = git_command(into.path(), Some((forge, As::Anonymous)))
        .args(["ls-remote", &repo.clone_url])
        .output()
        .expect("running git ls-remote");
    assert!(
        !anonymous.status.success(),
        "an anonymous ls-remote of a private repository succeeded"
    );
}

#[tokio::test]
async fn the_bot_is_refused_on_a_protected_main() {
    let forge = gitea();
    let repo = forge
        .create_repo(
            "the_bot_is_refused_on_a_protected_main",
            &[("apps/web.yaml", "image: web:1.0\n")],
        )
        .await;
    let seeded = repo.branch_head("main").await;
    let rule = repo.protect_main().await;
    assert_eq!(rule["rule_name"], "main", "{rule}");

    let change = repo.commit_unpushed("bump web", &[("apps/web.yaml", "image: web:1.1\n")]);
    let refused = repo
        .push(As::Bot, "HEAD:refs/heads/main")
        .expect_err("the bot's push to the protected main went through");
    assert!(
        refused.contains("Not allowed to push to protected branch main"),
        "git's error does not name the protection:\n{refused}"
    );
    assert!(refused.contains("pre-receive hook declined"), "{refused}");
    assert_eq!(
        repo.branch_head("main").await,
        seeded,
        "main moved after a refused push"
    );

    // Refused by the protection, not for want of access: the same commit goes to another branch,
    // and the admin, whom the rule allows, pushes it to main.
    repo.push(As::Bot, "HEAD:refs/heads/bosun/rollback")
        .unwrap_or_else(|e| panic!("the bot, a write collaborator, could not push a branch:\n{e}"));
    repo.wait_branch("bosun/rollback", &change).await;
    repo.push(As::Admin, "HEAD:refs/heads/main")
        .unwrap_or_else(|e| panic!("the admin's push to main was refused:\n{e}"));
    repo.wait_branch("main", &change).await;
}

#[tokio::test]
async fn a_push_reaches_a_loopback_webhook_signed() {
    let forge = gitea();
    let repo = forge
        .create_repo(
            "a_push_reaches_a_loopback_webhook_signed",
            &[("README.md", "apps\n")],
        )
        .await;
    let mut listener = HookListener::start().await;
    let secret = "gitea-webhook-secret-for-the-test";
    repo.add_webhook(&listener.url, secret, &["push"]).await;

    let pushed = repo.commit_unpushed("bump web", &[("apps/web.yaml", "image: web:2.0\n")]);
    repo.push(As::Bot, "HEAD:refs/heads/feature")
        .unwrap_or_else(|e| panic!("the bot's push of a branch failed:\n{e}"));

    // Every delivery is signed. The one of this push names its branch: Gitea may still deliver the
    // seeding push to main (it prepares a push's webhooks just after it marks the repository as not
    // empty, which is what create_repo waits for), never more than that one before it.
    let mut seen = Vec::new();
    let (delivery, push) = loop {
        let delivery = listener.next(Duration::from_secs(30)).await;
        assert_eq!(delivery.header("x-gitea-event"), "push");
        assert_eq!(delivery.header("content-type"), "application/json");
        let signature = delivery.header("x-gitea-signature");
        assert_eq!(
            signature,
            hmac_sha256_hex(secret.as_bytes(), &delivery.body),
            "X-Gitea-Signature is not the HMAC-SHA256 of the body with the secret"
        );
        assert_ne!(
            signature,
            hmac_sha256_hex(b"another secret", &delivery.body)
        );
        let push = delivery.json();
        if push["ref"] == "refs/heads/feature" {
            break (delivery, push);
        }
        seen.push(push["ref"].clone());
        assert!(
            seen.len() == 1 && seen[0] == "refs/heads/main",
            "deliveries of other pushes: {seen:?}"
        );
    };
    let signature = delivery.header("x-gitea-signature");
    assert_eq!(push["after"], pushed.as_str(), "{push}");
    assert_eq!(push["repository"]["full_name"], repo.full_name().as_str());
    assert_eq!(push["pusher"]["login"], forge.bot.as_str());

    // Bosun's own check accepts the delivery as it came, and with Gitea's header alone.
    let secret = bosun::webhook::WebhookSecret::from(secret.as_bytes().to_vec());
    assert_eq!(
        bosun::webhook::verify(&secret, &delivery.headers, &delivery.body),
        Ok(())
    );
    let mut gitea_only = http::HeaderMap::new();
    gitea_only.insert(
        "x-gitea-signature",
        signature.parse().expect("a header value"),
    );
    assert_eq!(
        bosun::webhook::verify(&secret, &gitea_only, &delivery.body),
        Ok(())
    );
}
