//! `bosun run` end to end: a real git server, the real test cluster, the bosun binary.
//!
//! Each scenario commits to a repository on the git server and runs `bosun run --once` (or the daemon
//! with a webhook), then looks at what is in the cluster.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bosun_core::model::{Bestie, ManagedApplication};
use support::gitserver::{self, TestRepo};
use support::process::{Process, free_port, http_get, sample};
use support::webhook::{post_webhook, post_webhook_answer, sign_push};
use support::{TestNamespace, install_crds, wait_until};

fn app(name: &str, version: &str) -> String {
    format!(
        "apiVersion: apps.example.com/v1alpha1\nkind: ManagedApplication\nmetadata:\n  name: {name}\nspec:\n  version: {version}\n"
    )
}

const BESTIE: &str = "apiVersion: pets.bestie.com/v1\nkind: Bestie\nmetadata:\n  name: bestie\nspec:\n  size: 3\n  image: quay.io/opdev/bestie\n  version: \"1.3\"\n";

struct Scenario {
    ns: TestNamespace,
    repo: TestRepo,
    cache: tempfile::TempDir,
    password_file: tempfile::NamedTempFile,
}

impl Scenario {
    async fn new(prefix: &str, files: &[(&str, &str)]) -> Scenario {
        let ns = TestNamespace::new(prefix).await;
        install_crds(&ns.client).await;
        let server = gitserver::shared();
        let repo = server.create_repo(&ns.name, files);
        let password_file = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(password_file.path(), &server.http_password).expect("write password");
        Scenario {
            ns,
            repo,
            cache: tempfile::tempdir().expect("cache dir"),
            password_file,
        }
    }

    fn bosun_args(&self, extra: &[&str]) -> Vec<String> {
        let server = gitserver::shared();
        let mut args: Vec<String> = [
            "run",
            "--repo",
            &self.repo.http_url,
            "--path",
            "apps",
            "--namespace",
            &self.ns.name,
            "--name",
            &self.ns.name,
            "--engine-namespace",
            &self.ns.name,
            "--git-username",
            &server.http_user,
            "--git-password-file",
            self.password_file.path().to_str().expect("utf-8"),
            "--cache-dir",
            self.cache.path().to_str().expect("utf-8"),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// `bosun run --once`, as the admin of the test cluster.
    fn sync(&self, extra: &[&str]) -> Output {
        let mut args = self.bosun_args(extra);
        args.push("--once".into());
        let out = Command::new(env!("CARGO_BIN_EXE_bosun"))
            .args(&args)
            .env(
                "KUBECONFIG",
                std::env::var("BOSUN_CLUSTER_KUBECONFIG").expect("test cluster"),
            )
            .env("BOSUN_LOG", "info")
            .output()
            .expect("bosun runs");
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            !log.contains(&gitserver::shared().http_password),
            "the git password must never be logged:\n{log}"
        );
        out
    }

    async fn app(&self, name: &str) -> Option<ManagedApplication> {
        self.ns
            .api::<ManagedApplication>()
            .get_opt(name)
            .await
            .expect("get")
    }
}

fn head_of(repo: &TestRepo) -> String {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(repo.work_dir())
        .output()
        .expect("git rev-parse");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn log_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn annotation<'a>(obj: &'a impl kube::Resource, key: &str) -> Option<&'a str> {
    obj.meta()
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

#[tokio::test]
async fn a_commit_reaches_the_cluster_annotated_with_its_revision_and_file() {
    let s = Scenario::new(
        "sync-apply",
        &[
            ("apps/shop.yaml", &app("shop", "v1.0.0")),
            ("apps/pets/bestie.yaml", BESTIE),
        ],
    )
    .await;
    let out = s.sync(&[]);
    assert!(out.status.success(), "{}", log_of(&out));

    let shop = s.app("shop").await.expect("shop applied");
    assert_eq!(shop.spec.version, "v1.0.0");
    let head = head_of(&s.repo);
    assert_eq!(annotation(&shop, "bosun.dev/revision"), Some(head.as_str()));
    assert_eq!(
        annotation(&shop, "bosun.dev/source-path"),
        Some("apps/shop.yaml")
    );
    let bestie =
        s.ns.api::<Bestie>()
            .get("bestie")
            .await
            .expect("bestie applied");
    assert_eq!(bestie.spec.version, "1.3");

    // A version bump updates that app and writes nothing else.
    let bestie_rv = bestie.metadata.resource_version.clone();
    let bump = s
        .repo
        .commit("bump shop", &[("apps/shop.yaml", app("shop", "v1.1.0"))]);
    let out = s.sync(&[]);
    assert!(out.status.success(), "{}", log_of(&out));
    let shop = s.app("shop").await.expect("shop");
    assert_eq!(shop.spec.version, "v1.1.0");
    assert_eq!(annotation(&shop, "bosun.dev/revision"), Some(bump.as_str()));
    let bestie = s.ns.api::<Bestie>().get("bestie").await.expect("bestie");
    assert_eq!(
        bestie.metadata.resource_version, bestie_rv,
        "an unchanged definition is not written"
    );
    assert_eq!(
        annotation(&bestie, "bosun.dev/revision"),
        Some(head.as_str())
    );
}

/// Several apps in one file, as `---`-separated documents.
fn apps(defs: &[(&str, &str)]) -> String {
    defs.iter()
        .map(|(name, version)| app(name, version))
        .collect::<Vec<_>>()
        .join("---\n")
}

impl Scenario {
    /// The app's version and the commit its `bosun.dev/revision` names.
    async fn named(&self, name: &str) -> (String, String) {
        let app = self.app(name).await.expect("the app is applied");
        let revision = annotation(&app, "bosun.dev/revision").map(str::to_string);
        (app.spec.version, revision.expect("a revision annotation"))
    }

    async fn resource_version(&self, name: &str) -> Option<String> {
        self.app(name).await?.metadata.resource_version
    }
}

#[tokio::test]
async fn a_bump_pushed_with_unrelated_commits_names_the_bump_not_the_tip() {
    let s = Scenario::new(
        "sync-attribution",
        &[
            ("apps/a.yaml", &app("a", "v1")),
            ("apps/other.yaml", &app("other", "v1")),
            ("apps/shared.yaml", &apps(&[("b", "v1"), ("c", "v1")])),
        ],
    )
    .await;
    assert!(s.sync(&[]).status.success());
    let initial = head_of(&s.repo);

    // One push: a's bump, then a commit to another file.
    let bump_a = s
        .repo
        .commit_unpushed("bump a", &[("apps/a.yaml", app("a", "v2"))]);
    let bump_other = s
        .repo
        .commit_unpushed("bump other", &[("apps/other.yaml", app("other", "v2"))]);
    let docs = s
        .repo
        .commit_unpushed("docs", &[("README.md", "not desired state\n")]);
    assert_eq!(s.repo.push_commits(), docs);
    let b_before = s.resource_version("b").await;
    let out = s.sync(&[]);
    assert!(out.status.success(), "{}", log_of(&out));
    assert_eq!(
        s.named("a").await,
        ("v2".into(), bump_a.clone()),
        "{}",
        log_of(&out)
    );
    assert_eq!(s.named("other").await, ("v2".into(), bump_other));
    assert_eq!(s.named("b").await, ("v1".into(), initial.clone()));
    assert_eq!(
        s.resource_version("b").await,
        b_before,
        "an unchanged app is not written"
    );

    // One push: b's bump, then c's, in the file they share.
    let bump_b = s.repo.commit_unpushed(
        "bump b",
        &[("apps/shared.yaml", apps(&[("b", "v2"), ("c", "v1")]))],
    );
    let bump_c = s.repo.commit_unpushed(
        "bump c",
        &[("apps/shared.yaml", apps(&[("b", "v2"), ("c", "v2")]))],
    );
    assert_eq!(s.repo.push_commits(), bump_c);
    let out = s.sync(&[]);
    assert!(out.status.success(), "{}", log_of(&out));
    assert_eq!(
        s.named("b").await,
        ("v2".into(), bump_b),
        "b names its own commit, not the newest of its file:\n{}",
        log_of(&out)
    );
    assert_eq!(s.named("c").await, ("v2".into(), bump_c));
    assert_eq!(s.named("a").await, ("v2".into(), bump_a));
}

#[tokio::test]
async fn two_bumps_between_polls_name_the_newer_and_a_merge_names_the_branchs_commit() {
    let s = Scenario::new(
        "sync-attribution-newest",
        &[
            ("apps/a.yaml", &app("a", "v1")),
            ("apps/b.yaml", &app("b", "v1")),
        ],
    )
    .await;
    assert!(s.sync(&[]).status.success());

    s.repo
        .commit_unpushed("bump a to v2", &[("apps/a.yaml", app("a", "v2"))]);
    let newer = s
        .repo
        .commit_unpushed("bump a to v3", &[("apps/a.yaml", app("a", "v3"))]);
    s.repo
        .commit_unpushed("docs", &[("README.md", "not desired state\n")]);
    s.repo.push_commits();
    let out = s.sync(&[]);
    assert!(out.status.success(), "{}", log_of(&out));
    assert_eq!(s.named("a").await, ("v3".into(), newer), "{}", log_of(&out));

    // A branch bumps b and is merged (no fast-forward) after main moved on.
    s.repo.git(&["checkout", "-q", "-b", "feature"]);
    let on_branch = s
        .repo
        .commit_unpushed("bump b", &[("apps/b.yaml", app("b", "v2"))]);
    s.repo.git(&["checkout", "-q", "main"]);
    s.repo
        .commit_unpushed("more docs", &[("README.md", "still not desired state\n")]);
    s.repo
        .git(&["merge", "-q", "--no-ff", "-m", "merge feature", "feature"]);
    let merge = s.repo.push_commits();
    assert_ne!(merge, on_branch);
    let out = s.sync(&[]);
    assert!(out.status.success(), "{}", log_of(&out));
    assert_eq!(
        s.named("b").await,
        ("v2".into(), on_branch),
        "{}",
        log_of(&out)
    );
}

#[tokio::test]
async fn an_invalid_file_is_reported_and_every_other_app_still_applies() {
    let s = Scenario::new(
        "sync-invalid",
        &[
            ("apps/good.yaml", &app("good", "v1")),
            ("apps/bad.yaml", &app("bad", "v1")),
        ],
    )
    .await;
    assert!(s.sync(&[]).status.success());
    // Break bad.yaml and bump good.yaml in one commit.
    s.repo.commit(
        "break one, bump the other",
        &[
            ("apps/bad.yaml", app("bad", "1.10")),
            ("apps/good.yaml", app("good", "v2")),
        ],
    );
    let out = s.sync(&["--prune"]);
    let log = log_of(&out);
    assert!(
        log.contains("apps/bad.yaml:6:12"),
        "the finding names file, line and column:\n{log}"
    );
    assert!(log.contains("spec.version"), "{log}");
    assert_eq!(s.app("good").await.expect("good").spec.version, "v2");
    let bad = s
        .app("bad")
        .await
        .expect("the invalid app keeps its last good state, not pruned");
    assert_eq!(bad.spec.version, "v1");
}

#[tokio::test]
async fn a_removed_file_is_pruned_only_with_prune() {
    let s = Scenario::new(
        "sync-prune",
        &[
            ("apps/a.yaml", &app("a", "v1")),
            ("apps/b.yaml", &app("b", "v1")),
        ],
    )
    .await;
    assert!(s.sync(&[]).status.success());
    s.repo.remove("remove b", &["apps/b.yaml"]);
    let out = s.sync(&[]);
    assert!(out.status.success());
    assert!(
        s.app("b").await.is_some(),
        "without --prune, b stays:\n{}",
        log_of(&out)
    );
    assert!(log_of(&out).contains("not pruned (prune is off)"));
    let out = s.sync(&["--prune"]);
    assert!(out.status.success(), "{}", log_of(&out));
    wait_until("b to be pruned", || async {
        s.app("b").await.is_none().then_some(())
    })
    .await;
    assert!(s.app("a").await.is_some());
}

#[tokio::test]
async fn a_revision_that_suddenly_defines_nothing_prunes_nothing() {
    let s = Scenario::new("sync-empty", &[("apps/a.yaml", &app("a", "v1"))]).await;
    assert!(s.sync(&["--prune"]).status.success());
    // The definitions moved away; the directory holds only a file of another kind.
    s.repo.commit(
        "move everything away",
        &[
            ("elsewhere/a.yaml", app("a", "v1")),
            (
                "apps/notes.yaml",
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n".to_string(),
            ),
        ],
    );
    s.repo.remove("oops", &["apps/a.yaml"]);
    let out = s.sync(&["--prune"]);
    assert!(
        s.app("a").await.is_some(),
        "the guard kept a:\n{}",
        log_of(&out)
    );
    assert!(
        log_of(&out).contains("defines nothing at all"),
        "{}",
        log_of(&out)
    );
}

#[tokio::test]
async fn a_path_that_no_longer_exists_is_an_error_and_prunes_nothing() {
    let s = Scenario::new("sync-nopath", &[("apps/a.yaml", &app("a", "v1"))]).await;
    assert!(s.sync(&["--prune"]).status.success());
    s.repo.commit(
        "rename the directory",
        &[("applications/a.yaml", app("a", "v1"))],
    );
    s.repo.remove("rename the directory", &["apps/a.yaml"]);
    let out = s.sync(&["--prune"]);
    assert!(!out.status.success());
    assert!(
        log_of(&out).contains("does not exist at that revision"),
        "{}",
        log_of(&out)
    );
    assert!(s.app("a").await.is_some());
}

#[tokio::test]
async fn a_wrong_password_fails_without_touching_the_cluster_or_logging_the_secret() {
    let s = Scenario::new("sync-auth", &[("apps/a.yaml", &app("a", "v1"))]).await;
    std::fs::write(s.password_file.path(), "not-the-password").expect("write");
    let out = s.sync(&[]);
    assert!(!out.status.success());
    let log = log_of(&out);
    assert!(!log.contains("not-the-password"), "{log}");
    assert!(log.to_lowercase().contains("auth"), "{log}");
    assert!(s.app("a").await.is_none());
}

#[tokio::test]
async fn a_signed_webhook_applies_a_push_without_waiting_for_the_poll() {
    let s = Scenario::new("sync-webhook", &[("apps/a.yaml", &app("a", "v1"))]).await;
    let secret = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(secret.path(), "hook-secret").expect("write");
    let listen = format!("127.0.0.1:{}", free_port());
    let args = s.bosun_args(&[
        "--listen",
        &listen,
        "--webhook-secret-file",
        secret.path().to_str().expect("utf-8"),
        "--poll-interval",
        "3600",
    ]);
    let _daemon = Process::bosun(|c| {
        c.args(&args);
    });
    wait_until("the first sync", || async { s.app("a").await }).await;

    s.repo.commit("bump", &[("apps/a.yaml", app("a", "v2"))]);
    let body =
        serde_json::json!({"ref": "refs/heads/main", "repository": {"clone_url": s.repo.http_url}})
            .to_string();
    let sig = sign_push(b"hook-secret", &body);
    let sent = Instant::now();
    let status = post_webhook(&listen, &sig, &body).await;
    assert_eq!(status, 202);
    wait_until("the push to reach the cluster", || async {
        (s.app("a").await?.spec.version == "v2").then_some(())
    })
    .await;
    let took = sent.elapsed();
    // Polling is hourly here: only the webhook can explain a quick update.
    assert!(took < Duration::from_secs(30), "applied after {took:?}");
}

/// `GET /readyz` of a replica: `ok: leader`, or `ok: standby` and where the leader is.
async fn readyz(addr: &str) -> Option<String> {
    let (_, body) = http_get(addr.parse().ok()?, "/readyz")?;
    Some(body.trim().to_string())
}

#[tokio::test]
async fn a_webhook_that_reaches_the_standby_is_forwarded_to_the_leader() {
    let s = Scenario::new("sync-webhook-ha", &[("apps/a.yaml", &app("a", "v1"))]).await;
    let secret = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(secret.path(), "hook-secret").expect("write");
    let replicas: Vec<(String, String)> = ["replica-a", "replica-b"]
        .iter()
        .map(|id| (id.to_string(), format!("127.0.0.1:{}", free_port())))
        .collect();
    let daemons: Vec<Process> = replicas
        .iter()
        .map(|(id, listen)| {
            let args = s.bosun_args(&[
                "--listen",
                listen,
                "--webhook-secret-file",
                secret.path().to_str().expect("utf-8"),
                "--poll-interval",
                "3600",
                "--leader-elect",
                "--lease-namespace",
                &s.ns.name,
                "--identity",
                id,
                "--lease-duration",
                "5",
            ]);
            Process::bosun(|c| {
                c.args(&args);
            })
        })
        .collect();
    wait_until("the leader's first sync", || async { s.app("a").await }).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (leader, standby) = loop {
        let mut answers = Vec::new();
        for (_, listen) in &replicas {
            answers.push(readyz(listen).await);
        }
        // The standby knows where the leader is once it has read the Lease.
        let knows = |answer: &str, leader: &str| {
            answer == format!("ok: standby; the leader is at http://{leader}")
        };
        match (answers[0].as_deref(), answers[1].as_deref()) {
            (Some("ok: leader"), Some(b)) if knows(b, &replicas[0].1) => {
                break (replicas[0].clone(), replicas[1].clone());
            }
            (Some(a), Some("ok: leader")) if knows(a, &replicas[1].1) => {
                break (replicas[1].clone(), replicas[0].clone());
            }
            _ if Instant::now() > deadline => panic!(
                "no leader and standby: /readyz answered {answers:?}; logs:\n{}\n---\n{}",
                daemons[0].log(),
                daemons[1].log()
            ),
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let lease =
        s.ns.api::<k8s_openapi::api::coordination::v1::Lease>()
            .get("bosun")
            .await
            .expect("the Lease");
    assert_eq!(
        annotation(&lease, "bosun.dev/leader-url"),
        Some(format!("http://{}", leader.1).as_str()),
        "the leader advertises where it listens"
    );

    s.repo.commit("bump", &[("apps/a.yaml", app("a", "v2"))]);
    let body =
        serde_json::json!({"ref": "refs/heads/main", "repository": {"clone_url": s.repo.http_url}})
            .to_string();
    let sent = Instant::now();
    let (status, answer) =
        post_webhook_answer(&standby.1, &sign_push(b"hook-secret", &body), &body).await;
    assert_eq!(status, 202, "{answer}");
    assert!(
        answer.contains("forwarded to the leader") && answer.contains("answered 202"),
        "the standby hands the push to the leader: {answer}"
    );
    wait_until("the push to reach the cluster", || async {
        (s.app("a").await?.spec.version == "v2").then_some(())
    })
    .await;
    let took = sent.elapsed();
    // Polling is hourly and the standby does not sync: only the forwarded webhook explains this.
    assert!(took < Duration::from_secs(30), "applied after {took:?}");

    // A forged push is not forwarded: the standby refuses it itself.
    let (status, _) = post_webhook_answer(&standby.1, &sign_push(b"wrong", &body), &body).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_local_directory_is_reapplied_when_a_file_is_saved() {
    let ns = TestNamespace::new("sync-dir").await;
    install_crds(&ns.client).await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("a.yaml"), app("a", "v1")).expect("write");
    let port = free_port();
    let _daemon = Process::bosun(|c| {
        c.args([
            "run",
            "--dir",
            dir.path().to_str().expect("utf-8"),
            "--namespace",
            &ns.name,
            "--name",
            &ns.name,
            "--engine-namespace",
            &ns.name,
        ])
        .args([
            "--poll-interval",
            "3600",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ]);
    });
    let apps = ns.api::<ManagedApplication>();
    wait_until("the first sync", || async {
        apps.get_opt("a").await.ok().flatten()
    })
    .await;
    std::fs::write(dir.path().join("a.yaml"), app("a", "v2")).expect("save");
    // Polling is hourly: only the file watch explains the update.
    wait_until("the saved file to reach the cluster", || async {
        (apps.get_opt("a").await.ok()??.spec.version == "v2").then_some(())
    })
    .await;
}

fn source_ready(app: &ManagedApplication) -> Option<(String, String)> {
    app.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "SourceReady")
        .map(|c| (c.status.clone(), c.reason.clone()))
}

#[tokio::test]
async fn an_unreadable_source_is_surfaced_as_source_ready_false_then_true_again() {
    let s = Scenario::new("sync-down", &[("apps/a.yaml", &app("a", "v1"))]).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let args = s.bosun_args(&[
        "--grace",
        "0",
        "--poll-interval",
        "1",
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    let _daemon = Process::bosun(|c| {
        c.args(&args);
    });
    wait_until("the first sync", || async { s.app("a").await }).await;

    // The repository disappears from the server.
    let hidden = s.repo.bare.with_extension("hidden");
    std::fs::rename(&s.repo.bare, &hidden).expect("hide the repository");
    let (status, reason) = wait_until("SourceReady=False", || async {
        source_ready(&s.app("a").await?).filter(|(status, _)| status == "False")
    })
    .await;
    assert_eq!(status, "False");
    assert_eq!(reason, "FindRepository");
    assert_eq!(
        s.app("a").await.expect("kept").spec.version,
        "v1",
        "the last applied state stays"
    );

    std::fs::rename(&hidden, &s.repo.bare).expect("restore the repository");
    wait_until("SourceReady=True", || async {
        source_ready(&s.app("a").await?).filter(|(status, _)| status == "True")
    })
    .await;
}

#[test]
fn several_sources_come_from_a_config_file() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("bosun.yaml");
    std::fs::write(
        &config,
        "sources:\n  - {name: apps, repo: http://127.0.0.1:1/git/apps.git, path: apps, prune: true}\n  - {name: apps, dir: /tmp}\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["run", "--config", config.to_str().expect("utf-8"), "--once"])
        .output()
        .expect("bosun runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("two sources are named \"apps\""));

    std::fs::write(
        &config,
        "sources:\n  - {name: apps, repo: x, pruen: true}\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(["run", "--config", config.to_str().expect("utf-8"), "--once"])
        .output()
        .expect("bosun runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("unknown field `pruen`"), "{err}");
}

#[tokio::test]
async fn a_duplicate_definition_keeps_the_live_app_and_applies_neither_copy() {
    let s = Scenario::new("sync-dup", &[("apps/a.yaml", &app("shop", "v1"))]).await;
    assert!(s.sync(&["--prune"]).status.success());
    // The same app again in another file, once plainly and once with the default namespace spelled out.
    let explicit = app("shop", "v3").replace(
        "  name: shop\n",
        &format!("  name: shop\n  namespace: {}\n", s.ns.name),
    );
    for (file, text) in [
        ("apps/z.yaml", app("shop", "v2")),
        ("apps/z.yaml", explicit),
    ] {
        s.repo.commit("duplicate shop", &[(file, text)]);
        let out = s.sync(&["--prune"]);
        let log = log_of(&out);
        assert!(log.contains("defined twice"), "{log}");
        let shop = s.app("shop").await.expect("not pruned");
        assert_eq!(shop.spec.version, "v1", "neither copy applied:\n{log}");
    }
}

#[test]
fn an_empty_webhook_secret_is_refused_at_start() {
    let secret = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(secret.path(), "\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args([
            "run",
            "--repo",
            "http://127.0.0.1:1/x.git",
            "--once",
            "--webhook-secret-file",
        ])
        .arg(secret.path())
        .output()
        .expect("bosun runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the webhook secret is empty"));
}

/// `bosun_git_polls_total{source}` (every result) as a running daemon reports it.
fn polls(listen: &str, source: &str) -> Option<f64> {
    let (_, body) = http_get(listen.parse().expect("an address"), "/metrics")?;
    let count = ["unchanged", "changed", "error"]
        .iter()
        .filter_map(|result| {
            sample(
                &body,
                "bosun_git_polls_total",
                &[("source", source), ("result", result)],
            )
        })
        .sum();
    Some(count)
}

/// Returns once the daemon has polled (and so compared git with the cluster) twice more: a
/// sync that started before the caller's change is not counted.
async fn two_more_polls(listen: &str, source: &str) {
    let before = polls(listen, source).expect("metrics");
    wait_until("two more polls", || async {
        (polls(listen, source)? >= before + 2.0).then_some(())
    })
    .await;
}

/// `bosun_sync_applies_total{source,action}` as a running daemon reports it.
fn applies(listen: &str, source: &str, action: &str) -> Option<f64> {
    let (_, body) = http_get(listen.parse().expect("an address"), "/metrics")?;
    let labels = [("source", source), ("action", action)];
    Some(sample(&body, "bosun_sync_applies_total", &labels).unwrap_or(0.0))
}

#[tokio::test]
async fn an_app_edited_or_deleted_by_hand_is_put_back_as_git_says() {
    let s = Scenario::new("sync-drift", &[("apps/a.yaml", &app("a", "v1"))]).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let args = s.bosun_args(&["--listen", &listen, "--poll-interval", "1"]);
    let bosun = Process::bosun(|c| {
        c.args(&args);
    });
    let first = wait_until("the first sync", || async { s.app("a").await }).await;

    // kubectl edit: the version changed in the cluster, not in git.
    s.ns.api::<ManagedApplication>()
        .patch(
            "a",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"version": "v9"}})),
        )
        .await
        .expect("edit by hand");
    // The counter moves after the apply and its log line: once it reads 1, both are there.
    wait_until("the drift counted", || async {
        (applies(&listen, &s.ns.name, "drift")? == 1.0).then_some(())
    })
    .await;
    assert_eq!(s.app("a").await.expect("the app").spec.version, "v1");
    assert!(
        bosun.log().contains("changed in the cluster, not in git"),
        "{}",
        bosun.log()
    );
    // Once put back, nothing is applied again: one drift, one correction.
    two_more_polls(&listen, &s.ns.name).await;
    assert_eq!(applies(&listen, &s.ns.name, "drift"), Some(1.0));
    assert_eq!(applies(&listen, &s.ns.name, "update"), Some(0.0));

    // An emergency brake set by hand is not drift: git does not set `paused`.
    s.ns.api::<ManagedApplication>()
        .patch(
            "a",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"paused": true}})),
        )
        .await
        .expect("pause by hand");
    two_more_polls(&listen, &s.ns.name).await;
    assert!(
        s.app("a").await.expect("the app").spec.paused,
        "still paused"
    );
    assert_eq!(applies(&listen, &s.ns.name, "drift"), Some(1.0));

    // kubectl delete: created again at the next poll, without a commit.
    s.ns.api::<ManagedApplication>()
        .delete("a", &Default::default())
        .await
        .expect("delete by hand");
    let again = wait_until("the app created again", || async {
        let a = s.app("a").await?;
        (a.metadata.uid != first.metadata.uid && a.metadata.deletion_timestamp.is_none())
            .then_some(a)
    })
    .await;
    assert_eq!(again.spec.version, "v1");
    assert_eq!(applies(&listen, &s.ns.name, "create"), Some(2.0));
}

#[tokio::test]
async fn json_logs_name_the_app_and_the_commit_on_every_engine_line() {
    let s = Scenario::new("sync-json-logs", &[("apps/a.yaml", &app("a", "v1"))]).await;
    let args = s.bosun_args(&["--listen", "127.0.0.1:0"]);
    let bosun = Process::bosun(|c| {
        c.args(&args).env("BOSUN_LOG_FORMAT", "json");
    });
    wait_until("a Healthy", || async {
        let status = s.app("a").await?.status?;
        (status.phase == Some(bosun_core::model::Phase::Healthy)).then_some(())
    })
    .await;
    let head = head_of(&s.repo);
    let lines: Vec<serde_json::Value> = bosun
        .log()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let engine: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["target"].as_str().is_some_and(|t| t == "bosun::engine"))
        .collect();
    assert!(!engine.is_empty(), "the engine logged: {lines:#?}");
    for line in engine {
        assert_eq!(line["span"]["app"], "a", "{line}");
        assert_eq!(line["span"]["namespace"], s.ns.name.as_str(), "{line}");
        assert_eq!(line["span"]["revision"], head.as_str(), "{line}");
        assert_eq!(line["span"]["version"], "v1", "{line}");
    }
}

/// Commits, on top of `repo`'s `main`, `apps/` as the tree of `entries` (`mode type oid\tname`
/// lines, as `git mktree` reads them: names no working tree could hold), and pushes it.
fn commit_tree(repo: &TestRepo, entries: &[Vec<u8>]) -> String {
    let git = |args: &[&str], stdin: &[u8]| {
        let mut child = Command::new("git")
            .args(args)
            .current_dir(repo.work_dir())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("git runs");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), stdin).expect("stdin");
        let out = child.wait_with_output().expect("git ends");
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let listing: Vec<u8> = entries
        .iter()
        .flat_map(|e| [e.as_slice(), b"\n"].concat())
        .collect();
    let apps = git(&["mktree"], &listing);
    let root = git(
        &["mktree"],
        format!("040000 tree {apps}\tapps\n").as_bytes(),
    );
    let head = repo.head();
    let commit = git(&["commit-tree", &root, "-p", &head, "-m", "hostile"], b"");
    let bare = repo.bare.display().to_string();
    repo.git(&["push", "-q", &bare, &format!("{commit}:refs/heads/main")]);
    commit
}

/// `git hash-object -w` of `content` in `repo`.
fn blob(repo: &TestRepo, content: &[u8]) -> String {
    let file = repo.work_dir().join(".blob");
    std::fs::write(&file, content).expect("write");
    let oid = repo.git(&["hash-object", "-w", ".blob"]);
    std::fs::remove_file(file).expect("remove");
    oid
}

#[tokio::test]
async fn hostile_entries_are_each_refused_by_name_and_every_good_app_still_applies() {
    let s = Scenario::new("sync-hostile", &[("README.md", "apps\n")]).await;
    let ok = blob(&s.repo, app("ok", "v1").as_bytes());
    let big = blob(
        &s.repo,
        "# padding\n".repeat(5 * 1024 * 1024 / 10).as_bytes(),
    );
    let link = blob(&s.repo, b"loop.yaml");
    let head = s.repo.head();
    let mut bad_name = format!("100644 blob {ok}\tbad").into_bytes();
    bad_name.extend_from_slice(b"\xff.yaml");
    let entries = vec![
        format!("100644 blob {ok}\tok.yaml").into_bytes(),
        format!("100644 blob {big}\tbig.yaml").into_bytes(),
        format!("120000 blob {link}\tloop.yaml").into_bytes(),
        format!("160000 commit {head}\tsub").into_bytes(),
        format!("100644 blob {ok}\t..").into_bytes(),
        bad_name,
    ];
    let commit = commit_tree(&s.repo, &entries);

    let out = s.sync(&[]);
    let log = log_of(&out);
    for (name, why) in [
        ("apps/big.yaml", "over the limit of 1048576 bytes per file"),
        ("apps/loop.yaml", "a symbolic link; links are not followed"),
        ("apps/sub", "a submodule; submodules are not read"),
        ("apps/..", "an unsafe name"),
        ("apps/bad\u{FFFD}.yaml", "a name that is not UTF-8"),
    ] {
        assert!(
            log.lines()
                .any(|l| l.contains("file not read") && l.contains(name) && l.contains(why)),
            "{name}: {why}\n{log}"
        );
    }
    let applied = s.app("ok").await.expect("the good app applies");
    assert_eq!(applied.spec.version, "v1");
    assert_eq!(
        annotation(&applied, bosun_core::sync::ANNOTATION_REVISION),
        Some(commit.as_str())
    );
}

#[tokio::test]
async fn twenty_thousand_files_are_refused_whole_naming_the_limit_and_nothing_is_applied() {
    let s = Scenario::new("sync-20k", &[("README.md", "apps\n")]).await;
    let a = blob(&s.repo, app("a", "v1").as_bytes());
    let entries: Vec<Vec<u8>> = (0..20_000)
        .map(|i| format!("100644 blob {a}\tapp-{i:05}.yaml").into_bytes())
        .collect();
    commit_tree(&s.repo, &entries);
    let out = s.sync(&["--prune"]);
    let log = log_of(&out);
    assert!(!out.status.success(), "{log}");
    assert!(
        log.contains("more than 5000 YAML files (limit max_files)"),
        "{log}"
    );
    assert!(
        s.app("a").await.is_none(),
        "nothing applied from a refused revision"
    );
}
