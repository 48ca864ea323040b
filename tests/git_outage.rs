//! The git server fails under a running `bosun run`, for real: its processes stopped (a server of the
//! test's own, `scripts/gitserver stop`), or stalled behind a loopback proxy that accepts and never
//! answers, then answers slowly. What was applied stays in force and nothing is pruned, the upgrade in
//! flight finishes from what was applied, retries back off, `--grace` turns the outage into an error
//! and a `SourceReady=False` condition, a rollback commit and note that could not be pushed are pushed
//! once the server is back, once, and the next push is applied.

mod support;

use std::process::Command;

use bosun_core::model::{ManagedApplication, ManagedApplicationStatus, Phase};
use support::gitserver::{GitServer, TestRepo};
use support::process::{bosun_run_on, free_port, http_get, write_git_password_of};
use support::proxy::{Mode, Proxy};
use support::{TestNamespace, install_crds, until_status, wait_until};

const SHOP: &str = "apps/shop.yaml";
const CART: &str = "apps/cart.yaml";

/// An app at `version`; a `-broken` version's pods never become ready, so its upgrade fails after 5 s.
fn app(name: &str, version: &str) -> String {
    let deadline = if version.ends_with("-broken") { 5 } else { 60 };
    format!(
        "apiVersion: apps.example.com/v1alpha1\nkind: ManagedApplication\nmetadata:\n  name: {name}\n\
         spec:\n  version: '{version}'\n  replicas: 1\n  upgradeStrategy:\n    type: Rolling\n    \
         progressDeadlineSeconds: {deadline}\n"
    )
}

fn source_ready(status: &ManagedApplicationStatus) -> Option<&str> {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == "SourceReady")
        .map(|c| c.status.as_str())
}

/// The subjects of Bosun's rollback commits on `main`, read from the bare repository on disk (the
/// server may be down).
fn rollback_commits(repo: &TestRepo) -> usize {
    let bare = repo.bare.display().to_string();
    let log = repo.git(&["--git-dir", &bare, "log", "--format=%s", "main"]);
    log.lines().filter(|s| s.starts_with("Roll back ")).count()
}

fn note_of(repo: &TestRepo, commit: &str) -> Option<String> {
    let bare = repo.bare.display().to_string();
    let out = Command::new("git")
        .args(["--git-dir", &bare, "notes", "--ref=bosun", "show", commit])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The waits Bosun logged between failed syncs (`retry_in=1.23s`), in order.
fn retry_waits(log: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|line| {
            let value = line.split("retry_in=").nth(1)?.split_whitespace().next()?;
            let (number, unit) = value.split_at(value.find(|c: char| c.is_alphabetic())?);
            let number: f64 = number.parse().ok()?;
            match unit {
                "s" => Some(number),
                "ms" => Some(number / 1000.0),
                _ => None,
            }
        })
        .collect()
}

/// `bosun_git_failures_total`, every reason together.
fn failures(listen: &str) -> f64 {
    let Some((_, body)) = http_get(listen.parse().expect("an address"), "/metrics") else {
        return 0.0;
    };
    body.lines()
        .filter(|l| l.starts_with("bosun_git_failures_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_git_server_down_prunes_nothing_and_what_it_missed_is_written_once_it_is_back() {
    let server = GitServer::start();
    let ns = TestNamespace::new("git-down").await;
    install_crds(&ns.client).await;
    let repo = server.create_repo(
        &ns.name,
        &[
            (SHOP, app("shop", "v1").as_str()),
            (CART, app("cart", "v1").as_str()),
        ],
    );
    let dir = tempfile::tempdir().expect("a directory for bosun");
    write_git_password_of(&server, dir.path());
    let listen = format!("127.0.0.1:{}", free_port());
    let bosun = bosun_run_on(
        &server,
        &repo.http_url,
        &ns.name,
        dir.path(),
        &listen,
        &["--prune", "--grace", "4"],
    );
    let log = || bosun.log();
    until_status(&ns, "shop", "Healthy at v1", log, |s| {
        s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some("v1")
    })
    .await;

    // A bump that will fail is in flight when the server goes down.
    let bump = repo.commit("shop: v2-broken", &[(SHOP, app("shop", "v2-broken"))]);
    until_status(&ns, "shop", "the upgrade to v2-broken started", log, |s| {
        s.target_version.as_deref() == Some("v2-broken")
    })
    .await;
    server.stop_servers();
    let failed_before = failures(&listen);

    // The upgrade runs on from what was applied, and is rolled back in the cluster.
    until_status(
        &ns,
        "shop",
        "rolled back to v1 while git is down",
        log,
        |s| s.phase == Some(Phase::Failed) && s.current_version.as_deref() == Some("v1"),
    )
    .await;
    // Past the grace period: an error and a condition on every object of the source.
    for name in ["shop", "cart"] {
        until_status(&ns, name, "SourceReady=False", log, |s| {
            source_ready(s) == Some("False")
        })
        .await;
    }
    wait_until("three failed syncs more", || async {
        (failures(&listen) >= failed_before + 3.0).then_some(())
    })
    .await;
    let apps = ns.api::<ManagedApplication>();
    for name in ["shop", "cart"] {
        let app = apps.get_opt(name).await.expect("read").expect("not pruned");
        assert_eq!(app.metadata.deletion_timestamp, None, "{name} not pruned");
    }
    assert!(
        log().contains("source unavailable; the last applied state stays in force"),
        "{}",
        log()
    );
    // Each wait is longer than the one before (1 s doubling, jittered up to twice).
    let waits = retry_waits(&log());
    assert!(waits.len() >= 3, "{waits:?}\n{}", log());
    assert!(
        waits.windows(2).take(4).all(|w| w[1] > w[0]),
        "backoff grows: {waits:?}"
    );
    assert_eq!(rollback_commits(&repo), 0, "nothing could be pushed");

    server.start_servers();
    // The rollback commit, then the note, each once.
    let note = wait_until("the note on the failed commit", || async {
        note_of(&repo, &bump)
    })
    .await;
    assert!(note.contains("rolled back to v1"), "{note}");
    assert_eq!(rollback_commits(&repo), 1, "one rollback commit");
    // Every object of the source is ready again.
    for name in ["cart", "shop"] {
        until_status(&ns, name, "SourceReady=True", log, |s| {
            source_ready(s) == Some("True")
        })
        .await;
    }

    // The next push is applied.
    repo.pull();
    repo.commit("cart: v2", &[(CART, app("cart", "v2"))]);
    until_status(&ns, "cart", "Healthy at v2", log, |s| {
        s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some("v2")
    })
    .await;
    assert_eq!(rollback_commits(&repo), 1, "still one rollback commit");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_git_server_times_out_and_is_read_again_once_it_answers() {
    let server = GitServer::start();
    let ns = TestNamespace::new("git-stall").await;
    install_crds(&ns.client).await;
    let repo = server.create_repo(&ns.name, &[(SHOP, app("shop", "v1").as_str())]);
    // http://127.0.0.1:PORT/git/NAME.git, through the proxy.
    let (authority, path) = repo
        .http_url
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
        .expect("an http:// URL");
    let proxy = Proxy::start(authority.parse().expect("an address")).await;
    let through = format!("http://{}/{path}", proxy.addr);

    let dir = tempfile::tempdir().expect("a directory for bosun");
    write_git_password_of(&server, dir.path());
    let listen = format!("127.0.0.1:{}", free_port());
    let bosun = bosun_run_on(
        &server,
        &through,
        &ns.name,
        dir.path(),
        &listen,
        &["--prune", "--fetch-timeout", "2", "--grace", "3"],
    );
    let log = || bosun.log();
    until_status(&ns, "shop", "Healthy at v1", log, |s| {
        s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some("v1")
    })
    .await;

    // Accepts, never answers, holds the connections open.
    proxy.set(Mode::Stall);
    repo.commit("shop: v2", &[(SHOP, app("shop", "v2"))]);
    until_status(&ns, "shop", "SourceReady=False after timeouts", log, |s| {
        source_ready(s) == Some("False")
    })
    .await;
    // The reason is logged once every object of the source holds the condition: after the write
    // this test saw, a moment later.
    wait_until("SourceReady=False reported with reason Timeout", || async {
        log().contains("Timeout").then_some(())
    })
    .await;
    let shop = ns
        .api::<ManagedApplication>()
        .get("shop")
        .await
        .expect("shop");
    assert_eq!(shop.spec.version, "v1", "nothing new was read");

    // Answers again, slowly; the stalled connections are still held.
    proxy.set(Mode::Slow);
    until_status(&ns, "shop", "Healthy at v2, read slowly", log, |s| {
        s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some("v2")
    })
    .await;
    until_status(&ns, "shop", "SourceReady=True", log, |s| {
        source_ready(s) == Some("True")
    })
    .await;

    proxy.set(Mode::Forward);
    repo.commit("shop: v3", &[(SHOP, app("shop", "v3"))]);
    until_status(&ns, "shop", "Healthy at v3", log, |s| {
        s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some("v3")
    })
    .await;
}
