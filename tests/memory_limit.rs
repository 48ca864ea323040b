//! Bosun under a memory limit (`prlimit --data`, as a container's limit bounds it) with a large
//! repository: 500 apps in 50 MiB of YAML. With room enough it fits and applies all of them in one
//! sync; with too little for what its sources may read it refuses to start, saying what to change,
//! and applies nothing; told to read less, it fits in that same limit.

mod support;

use std::process::{Command, Output};

use bosun_core::model::ManagedApplication;
use support::gitserver;
use support::{TestNamespace, install_crds};

const MIB: u64 = 1024 * 1024;

/// `bosun run --once` on `repo` into `ns`, its data segment limited to `limit` bytes.
fn sync_under(limit: u64, repo: &str, ns: &str, dir: &std::path::Path, extra: &[&str]) -> Output {
    let server = gitserver::shared();
    Command::new("prlimit")
        .arg(format!("--data={limit}"))
        .arg(env!("CARGO_BIN_EXE_bosun"))
        .args(["run", "--repo", repo, "--path", "apps", "--once"])
        .args(["--namespace", ns, "--engine-namespace", ns])
        .args(["--git-username", &server.http_user])
        .arg("--git-password-file")
        .arg(dir.join("password"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .args(["--listen", "127.0.0.1:0"])
        .args(extra)
        .env(
            "KUBECONFIG",
            std::env::var("BOSUN_CLUSTER_KUBECONFIG").expect("the test cluster"),
        )
        .output()
        .expect("prlimit runs bosun")
}

async fn apps_in(ns: &TestNamespace) -> usize {
    ns.api::<ManagedApplication>()
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .len()
}

#[tokio::test]
async fn a_large_repository_fits_its_limit_or_bosun_refuses_to_start_and_applies_nothing() {
    let ns = TestNamespace::new("memory").await;
    install_crds(&ns.client).await;
    // 500 apps of 100 KiB each (a long comment pads them): 50 MiB of YAML.
    let padding: String = (0..1200)
        .map(|i| format!("# padding {i:06} {}\n", ".".repeat(70)))
        .collect();
    let files: Vec<(String, String)> = (0..500)
        .map(|i| {
            (
                format!("apps/app-{i:03}.yaml"),
                format!(
                    "apiVersion: apps.example.com/v1alpha1\nkind: ManagedApplication\nmetadata:\n  \
                     name: app-{i:03}\nspec:\n  version: v1\n{padding}"
                ),
            )
        })
        .collect();
    let repo = gitserver::shared().create_repo(&ns.name, &[("README.md", "apps\n")]);
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    repo.commit("500 apps", &files);
    let dir = tempfile::tempdir().expect("dir");
    support::process::write_git_password(dir.path());

    // Too little for the 64 MiB of YAML a source may read by default: refused at once.
    let out = sync_under(128 * MIB, &repo.http_url, &ns.name, dir.path(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "the memory limit of 128 MiB (RLIMIT_DATA) is below the 240 MiB a sync may need"
        ),
        "{err}"
    );
    assert!(err.contains("lower --max-total-bytes"), "{err}");
    assert_eq!(apps_in(&ns).await, 0, "nothing applied");

    // Room enough: every app in one sync.
    let out = sync_under(512 * MIB, &repo.http_url, &ns.name, dir.path(), &[]);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("created=500"), "{log}");
    assert_eq!(apps_in(&ns).await, 500);

    // The same 128 MiB, with the sources bounded to what fits: it runs (and reads this repository:
    // 50 MiB of YAML is beyond 24 MiB, so the revision is refused whole, naming the limit).
    let out = sync_under(
        128 * MIB,
        &repo.http_url,
        &ns.name,
        dir.path(),
        &["--max-total-bytes", &(24 * MIB).to_string()],
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("(limit max_total_bytes)"), "{log}");
    assert!(!log.contains("memory allocation"), "{log}");
    assert_eq!(apps_in(&ns).await, 500, "what was applied stays");
}
