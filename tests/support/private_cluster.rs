//! A Kubernetes cluster of one test's own, for tests that break the cluster itself: `scripts/cluster up`
//! in a fresh directory, one of whose components a test stops and starts again
//! ([`PrivateCluster::stop`], [`PrivateCluster::start`]) while Bosun runs against it. The shared test
//! cluster, which other tests use at the same time, is never touched.
//!
//! It is brought down when dropped, even when the test panics, and by a watcher once the test process
//! has exited, should it die before the drop.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/cluster")
}

/// A running cluster in a directory of its own; down on drop.
pub struct PrivateCluster {
    pub dir: PathBuf,
    /// The admin kubeconfig (`system:masters`).
    pub kubeconfig: PathBuf,
}

impl PrivateCluster {
    /// Starts a cluster (about 10 s with the binaries cached, which `scripts/test` sees to).
    pub fn up() -> PrivateCluster {
        let dir = tempfile::Builder::new()
            .prefix("bosun-private-cluster.")
            .tempdir()
            .expect("a directory for the cluster")
            .keep();
        // Before `up`, so that a cluster that fails half-way is stopped too.
        super::gitserver::run_after_exit(&[
            script().as_os_str(),
            "down".as_ref(),
            "--dir".as_ref(),
            dir.as_os_str(),
        ]);
        let cluster = PrivateCluster {
            kubeconfig: PathBuf::from(run(&dir, &["up"])),
            dir,
        };
        assert!(
            cluster.kubeconfig.is_file(),
            "`scripts/cluster up` printed {}, not a kubeconfig",
            cluster.kubeconfig.display()
        );
        cluster
    }

    /// Stops `component` (`etcd`, `kube-apiserver`, ...) and waits until its process is gone. Off the
    /// test's runtime, so that the test's own servers (a health server) keep answering meanwhile.
    pub async fn stop(&self, component: &str) {
        self.run_blocking(&["stop", component]).await;
    }

    /// Starts `component` again as `up` started it, and waits until it is healthy.
    pub async fn start(&self, component: &str) {
        self.run_blocking(&["start", component]).await;
    }

    async fn run_blocking(&self, args: &[&str]) {
        let dir = self.dir.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&dir, &args)
        })
        .await
        .expect("scripts/cluster ran");
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .args(["down", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
    }
}

/// `scripts/cluster COMMAND... --dir DIR`, which must succeed; its standard output, trimmed.
fn run(dir: &Path, args: &[&str]) -> String {
    let out = Command::new(script())
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script().display()));
    assert!(
        out.status.success(),
        "`scripts/cluster {} --dir {}` failed ({}):\n{}",
        args.join(" "),
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
