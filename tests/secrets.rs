//! No secret ever leaves Bosun, even at `BOSUN_LOG=trace`: one `bosun run` is given every kind of
//! secret it handles (the webhook secret, a git password, a GitHub token, an SSH key's passphrase)
//! and makes one more (a Bestie's database password), goes through a failed canary with a rollback
//! commit, a note, commit statuses and a pull request comment, a signed webhook and a forged one, and
//! then every place a value can surface is searched for each of them: the log, `/metrics`, the status
//! of every object, Events, the notes and commits in git, and every body sent to GitHub.

mod support;

use std::process::Command;

use bosun_core::model::{Bestie, ManagedApplication, Phase};
use k8s_openapi::api::core::v1::{Event, Secret};
use support::forge::github;
use support::gitserver::{self, TestRepo};
use support::process::{Process, free_port, http_get};
use support::webhook::{post_webhook, sign_push};
use support::{TestNamespace, install_crds, until_status, wait_until};

const WEBHOOK_SECRET: &str = "whsec-0xFEEDFACE-never-shown";
const GITHUB_TOKEN: &str = "ghp_0xDEADBEEF_never_shown";
const PASSPHRASE: &str = "ssh passphrase 0xC0FFEE never shown";

fn shop(version: &str) -> String {
    format!(
        "apiVersion: apps.example.com/v1alpha1\nkind: ManagedApplication\nmetadata:\n  name: shop\n\
         spec:\n  version: \"{version}\"\n  replicas: 2\n  upgradeStrategy:\n    type: Canary\n    \
         progressDeadlineSeconds: 5\n    canary:\n      steps:\n        - weight: 50\n        - weight: 100\n"
    )
}

const CART: &str = "apiVersion: apps.example.com/v1alpha1\nkind: ManagedApplication\nmetadata:\n  name: cart\nspec:\n  version: v1\n";

/// The seed's Bestie, verbatim.
fn bestie() -> String {
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/seeds/000-bestie.yaml"
    ))
    .expect("the seed Bestie")
}

/// A copy of the git server's SSH key, protected by [`PASSPHRASE`].
fn key_with_passphrase(dir: &std::path::Path) -> std::path::PathBuf {
    let key = dir.join("id_ed25519");
    let server = gitserver::shared();
    std::fs::copy(&server.ssh_key, &key).expect("copy the key");
    std::fs::copy(
        format!("{}.pub", server.ssh_key.display()),
        dir.join("id_ed25519.pub"),
    )
    .expect("copy the public key");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-p", "-P", "", "-N", PASSPHRASE, "-f"])
        .arg(&key)
        .output()
        .expect("ssh-keygen");
    assert!(out.status.success(), "ssh-keygen -p: {out:?}");
    key
}

/// Everything git holds: every commit message and note of every ref of `repo`.
fn all_of_git(repo: &TestRepo) -> String {
    let bare = repo.bare.display().to_string();
    let log = repo.git(&["--git-dir", &bare, "log", "--all", "--format=%H%n%B"]);
    let notes = Command::new("git")
        .args(["--git-dir", &bare, "log", "-p", "refs/notes/bosun"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    format!("{log}\n{notes}")
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_appears_in_logs_metrics_status_events_git_or_pull_request_comments() {
    let ns = TestNamespace::new("secrets").await;
    install_crds(&ns.client).await;
    let server = gitserver::shared();
    let (first, bestie) = (shop("v1"), bestie());
    let http_repo = server.create_repo(
        &ns.name,
        &[
            ("apps/shop.yaml", first.as_str()),
            ("apps/bestie.yaml", bestie.as_str()),
        ],
    );
    let ssh_repo = server.create_repo(&format!("{}-ssh", ns.name), &[("apps/cart.yaml", CART)]);
    let gh = github().await;

    let dir = tempfile::tempdir().expect("dir");
    let file = |name: &str, content: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).expect("write");
        path.display().to_string()
    };
    let key = key_with_passphrase(dir.path());
    let listen = format!("127.0.0.1:{}", free_port());
    let config = file(
        "bosun.yaml",
        &format!(
            "listen: {listen}\nwebhookSecretFile: {}\ngithubTokenFile: {}\ngithubApiUrl: {}\n\
             githubRepo: team/apps\ncacheDir: {}\nsources:\n\
             - {{name: web, repo: {}, path: apps, namespace: {ns}, pollInterval: 1, gitUsername: {}, gitPasswordFile: {}}}\n\
             - {{name: cart, repo: {}, path: apps, namespace: {ns}, pollInterval: 1, sshKeyFile: {}, sshKeyPassphraseFile: {}, knownHostsFile: {}}}\n",
            file("webhook", WEBHOOK_SECRET),
            file("token", GITHUB_TOKEN),
            gh.uri(),
            dir.path().join("cache").display(),
            http_repo.http_url,
            server.http_user,
            file("password", &server.http_password),
            ssh_repo.ssh_url,
            key.display(),
            file("passphrase", PASSPHRASE),
            server.ssh_known_hosts.display(),
            ns = ns.name,
        ),
    );
    let bosun = Process::bosun(|c| {
        c.args(["run", "--config", &config, "--engine-namespace", &ns.name])
            .env("BOSUN_LOG", "trace");
    });
    let log = || bosun.log();
    until_status(&ns, "shop", "Healthy at v1", log, |s| {
        s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some("v1")
    })
    .await;
    until_status(&ns, "cart", "Healthy at v1, read over SSH", log, |s| {
        s.phase == Some(Phase::Healthy)
    })
    .await;
    let database_password = wait_until("the Bestie's database password", || async {
        let secrets = ns.api::<Secret>().list(&Default::default()).await.ok()?;
        secrets.items.iter().find_map(|s| {
            let bytes = s.data.as_ref()?.get("password")?;
            Some(String::from_utf8_lossy(&bytes.0).into_owned())
        })
    })
    .await;

    // A failing canary, announced by a signed webhook (and a forged one, refused).
    let bump = http_repo.commit("shop: v2-broken", &[("apps/shop.yaml", shop("v2-broken"))]);
    let push = serde_json::json!({"ref": "refs/heads/main", "repository": {"clone_url": http_repo.http_url}})
        .to_string();
    assert_eq!(
        post_webhook(&listen, &sign_push(b"forged", &push), &push).await,
        401
    );
    assert_eq!(
        post_webhook(&listen, &sign_push(WEBHOOK_SECRET.as_bytes(), &push), &push).await,
        202
    );
    until_status(&ns, "shop", "rolled back", log, |s| {
        s.phase == Some(Phase::Failed)
    })
    .await;
    let bare = http_repo.bare.display().to_string();
    wait_until("the note on the failed commit", || async {
        Command::new("git")
            .args(["--git-dir", &bare, "notes", "--ref=bosun", "show", &bump])
            .output()
            .ok()?
            .status
            .success()
            .then_some(())
    })
    .await;
    wait_until("a pull request comment", || async {
        gh.received_requests()
            .await?
            .iter()
            .any(|r| r.url.path().ends_with("/comments") && r.method.as_str() == "POST")
            .then_some(())
    })
    .await;

    // Everywhere a value can surface.
    let mut seen = vec![("the log", log())];
    let metrics = http_get(listen.parse().expect("address"), "/metrics").expect("/metrics");
    seen.push(("/metrics", metrics.1));
    let apps = ns
        .api::<ManagedApplication>()
        .list(&Default::default())
        .await;
    seen.push((
        "the apps",
        serde_json::to_string(&apps.expect("apps").items).expect("JSON"),
    ));
    let besties = ns.api::<Bestie>().list(&Default::default()).await;
    seen.push((
        "the Besties",
        serde_json::to_string(&besties.expect("Besties").items).expect("JSON"),
    ));
    let events = ns
        .api::<Event>()
        .list(&Default::default())
        .await
        .expect("Events");
    assert!(!events.items.is_empty(), "Bosun records Events");
    seen.push((
        "the Events",
        serde_json::to_string(&events.items).expect("JSON"),
    ));
    seen.push(("git", all_of_git(&http_repo) + &all_of_git(&ssh_repo)));
    let sent: Vec<String> = gh
        .received_requests()
        .await
        .expect("recorded")
        .iter()
        .map(|r| {
            format!(
                "{} {}\n{}",
                r.method,
                r.url,
                String::from_utf8_lossy(&r.body)
            )
        })
        .collect();
    assert!(!sent.is_empty());
    seen.push(("what GitHub was sent", sent.join("\n")));

    let secrets = [
        ("the webhook secret", WEBHOOK_SECRET.to_owned()),
        ("the git password", server.http_password.clone()),
        ("the GitHub token", GITHUB_TOKEN.to_owned()),
        ("the SSH key passphrase", PASSPHRASE.to_owned()),
        ("the Bestie's database password", database_password),
    ];
    for (place, text) in &seen {
        assert!(!text.is_empty(), "{place} is empty: nothing was searched");
        for (secret, value) in &secrets {
            assert!(
                !text.contains(value.as_str()),
                "{secret} appears in {place}"
            );
        }
    }
    assert!(
        log().contains("TRACE"),
        "the log was written at trace level"
    );
    assert!(
        !log().contains('\x1b'),
        "no ANSI colours in a log that is not a terminal"
    );
}
