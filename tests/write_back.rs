//! Git tells what runs, end to end: `bosun run` watching a repository of the real git server (smart
//! HTTP, basic auth) on the real test cluster. A version that fails is rolled back in the cluster and
//! then in git by exactly one rollback commit that restores the app's document as it was at the
//! healthy commit (here only the version's bytes differ), the outcome is noted under
//! `refs/notes/bosun`, and nothing loops; a human `git revert` is a normal change; a protected branch
//! gets the rollback on a branch for a pull request instead.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use bosun_core::model::{ManagedApplication, Phase};
use support::gitserver::{self, TestRepo};
use support::process::Process;
use support::{TestNamespace, holds_for, install_crds, wait_until};

const FILE: &str = "apps/shop.yaml";

/// The app at `version`. A `-broken` version's pods never become ready: its upgrade fails after 5 s;
/// others get a minute (two busy cores may take more than 5 s to ready a pod).
fn app(version: &str) -> String {
    let deadline = if version.ends_with("-broken") { 5 } else { 60 };
    [
        "# The shop's front end. Owned by team web.",
        "apiVersion: apps.example.com/v1alpha1",
        "kind: ManagedApplication",
        "metadata:",
        "  name: shop",
        "spec:",
        &format!("  version: '{version}'   # bumped by CI"),
        "  replicas: 1",
        "  upgradeStrategy:",
        "    type: Rolling",
        &format!("    progressDeadlineSeconds: {deadline}"),
        "",
    ]
    .join("\n")
}

/// `bosun run` on the repository, polling every second, with the files it needs.
struct Bosun {
    process: Process,
    _cache: tempfile::TempDir,
    _password: tempfile::NamedTempFile,
}

impl Bosun {
    fn start(ns: &TestNamespace, repo: &TestRepo) -> Bosun {
        let server = gitserver::shared();
        let cache = tempfile::tempdir().expect("cache");
        let password = tempfile::NamedTempFile::new().expect("password file");
        std::fs::write(password.path(), &server.http_password).expect("password");
        let process = Process::bosun(|c| {
            c.args(["run", "--repo", &repo.http_url, "--path", "apps"])
                .args(["--namespace", &ns.name, "--name", &ns.name])
                .args(["--engine-namespace", &ns.name, "--poll-interval", "1"])
                .args(["--git-username", &server.http_user, "--git-password-file"])
                .arg(password.path())
                .arg("--cache-dir")
                .arg(cache.path())
                .args(["--listen", "127.0.0.1:0"]);
        });
        Bosun {
            process,
            _cache: cache,
            _password: password,
        }
    }

    fn log(&self) -> String {
        self.process.log()
    }
}

/// The server's `main` as seen by a fresh fetch into the working copy.
fn fetch(repo: &TestRepo) -> String {
    let bare = repo.bare.display().to_string();
    repo.git(&["fetch", "-q", &bare, "+main:refs/remotes/server/main"]);
    repo.git(&["rev-parse", "refs/remotes/server/main"])
}

/// The subjects of the commits on the server's `main`, newest first.
fn subjects(repo: &TestRepo) -> Vec<String> {
    fetch(repo);
    repo.git(&["log", "--format=%s", "refs/remotes/server/main"])
        .lines()
        .map(str::to_owned)
        .collect()
}

fn rollback_subjects(repo: &TestRepo) -> Vec<String> {
    subjects(repo)
        .into_iter()
        .filter(|s| s.starts_with("Roll back "))
        .collect()
}

async fn phase_is(ns: &TestNamespace, phase: Phase, version: &str) -> ManagedApplication {
    wait_until(&format!("{phase} at {version}"), || async {
        let app = ns.api::<ManagedApplication>().get("shop").await.ok()?;
        let s = app.status.as_ref()?;
        (s.phase == Some(phase) && s.target_version.as_deref() == Some(version)).then_some(app)
    })
    .await
}

async fn scenario(prefix: &str) -> (TestNamespace, TestRepo) {
    let ns = TestNamespace::new(prefix).await;
    install_crds(&ns.client).await;
    let repo = gitserver::shared().create_repo(&ns.name, &[(FILE, app("v1").as_str())]);
    (ns, repo)
}

#[tokio::test]
async fn a_failed_upgrade_ends_with_one_rollback_commit_and_a_note() {
    let (ns, repo) = scenario("wb-rollback").await;
    let bosun = Bosun::start(&ns, &repo);
    phase_is(&ns, Phase::Healthy, "v1").await;

    let bump = repo.commit("shop: v2-broken", &[(FILE, app("v2-broken"))]);
    let failed = phase_is(&ns, Phase::Failed, "v2-broken").await;
    assert_eq!(
        failed.status.and_then(|s| s.target_revision).as_deref(),
        Some(bump.as_str()),
        "the upgrade knows the commit that asked for it"
    );
    wait_until("a rollback commit on main", || async {
        (!rollback_subjects(&repo).is_empty()).then_some(())
    })
    .await;
    let tip = fetch(&repo);
    let message = repo.git(&["log", "-1", "--format=%B", &tip]);
    assert!(
        message.starts_with(&format!("Roll back {}/shop from v2-broken to v1", ns.name)),
        "{message}"
    );
    assert!(
        message.contains(&format!("Bosun-Rollback-Of: {bump}")),
        "{message}"
    );
    assert!(
        message.contains(&format!("restores its definition in {FILE}")),
        "the app's document restored as at the healthy commit: {message}"
    );
    let file = repo.git(&["show", &format!("{tip}:{FILE}")]);
    assert_eq!(
        format!("{file}\n"),
        app("v1"),
        "the file as it was at v1: comment, quotes and order kept"
    );

    // The rollback commit is desired state like any other: the cluster stays on v1, Healthy.
    wait_until("the app at v1 again, from git", || async {
        let app = ns.api::<ManagedApplication>().get("shop").await.ok()?;
        let s = app.status?;
        (app.spec.version == "v1"
            && s.phase == Some(Phase::Healthy)
            && s.current_version.as_deref() == Some("v1"))
        .then_some(())
    })
    .await;

    let bare = repo.bare.display().to_string();
    let note = wait_until("a note on the failed commit", || async {
        let out = Command::new("git")
            .args(["--git-dir", &bare, "notes", "--ref=bosun", "show", &bump])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    })
    .await;
    assert!(
        note.contains(&format!(
            "bosun {}/shop: v1 -> v2-broken, rolled back to v1",
            ns.name
        )),
        "{note}"
    );
    assert!(note.contains("rollback commit: "), "{note}");

    holds_for(
        "exactly one rollback commit, and no new commit of Bosun's",
        Duration::from_secs(8),
        || async { rollback_subjects(&repo).len() == 1 && fetch(&repo) == tip },
    )
    .await;
    assert!(!bosun.log().contains("forbidden"), "{}", bosun.log());
}

#[tokio::test]
async fn a_human_revert_rolls_the_app_back_without_a_commit_of_bosuns() {
    let (ns, repo) = scenario("wb-revert").await;
    let _bosun = Bosun::start(&ns, &repo);
    phase_is(&ns, Phase::Healthy, "v1").await;
    let bump = repo.commit("shop: v2", &[(FILE, app("v2"))]);
    phase_is(&ns, Phase::Healthy, "v2").await;

    repo.git(&["revert", "--no-edit", &bump]);
    let bare = repo.bare.display().to_string();
    repo.git(&["push", "-q", &bare, "HEAD:refs/heads/main"]);
    let revert = repo.head();
    let app = phase_is(&ns, Phase::Healthy, "v1").await;
    assert_eq!(
        app.status.and_then(|s| s.current_version).as_deref(),
        Some("v1")
    );
    holds_for("no rollback commit", Duration::from_secs(3), || async {
        rollback_subjects(&repo).is_empty() && fetch(&repo) == revert
    })
    .await;
}

#[tokio::test]
async fn a_protected_branch_gets_the_rollback_on_a_branch_and_nothing_loops() {
    let (ns, repo) = scenario("wb-protected").await;
    let bosun = Bosun::start(&ns, &repo);
    phase_is(&ns, Phase::Healthy, "v1").await;
    let out = Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/gitserver"))
        .args(["protect", &repo.name, "main", "--dir"])
        .arg(&gitserver::shared().dir)
        .output()
        .expect("gitserver protect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The protect hook refuses humans too: push the bump straight into the bare repository.
    std::fs::write(repo.work_dir().join(FILE), app("v2-broken")).expect("write");
    repo.git(&["commit", "-q", "-a", "-m", "shop: v2-broken"]);
    let bump = repo.head();
    let bare = repo.bare.display().to_string();
    Command::new("git")
        .args(["--git-dir", &bare, "fetch", "-q"])
        .arg(repo.work_dir())
        .arg(format!("+{bump}:refs/heads/main"))
        .status()
        .expect("git fetch into the bare repository");
    assert_eq!(fetch(&repo), bump);

    phase_is(&ns, Phase::Failed, "v2-broken").await;
    let branch = wait_until("the rollback branch recorded on the app", || async {
        let app = ns.api::<ManagedApplication>().get("shop").await.ok()?;
        app.metadata
            .annotations?
            .get("bosun.dev/rollback-commit")?
            .strip_prefix("branch:")
            .map(str::to_owned)
    })
    .await;
    assert!(branch.starts_with("bosun/rollback-"), "{branch}");
    let on_branch = repo.git(&["ls-remote", &bare, &format!("refs/heads/{branch}")]);
    assert!(!on_branch.is_empty(), "the branch is on the server");
    holds_for(
        "main unchanged and the failed version not retried",
        Duration::from_secs(6),
        || async {
            let app = ns.api::<ManagedApplication>().get("shop").await.ok();
            fetch(&repo) == bump
                && app
                    .and_then(|a| a.status)
                    .is_some_and(|s| s.phase == Some(Phase::Failed))
        },
    )
    .await;
    assert!(!bosun.log().contains("forbidden"), "{}", bosun.log());
}
