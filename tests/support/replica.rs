//! Replicas of `bosun run --leader-elect`: several processes electing a leader on the Lease `bosun` of a
//! test namespace, each serving `/metrics` (`bosun_leader` says which one leads) on a port of its own.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;

use super::TestNamespace;
use super::process::{Process, free_port, http_get, local, sample};

/// One `bosun run` replica; stopped when dropped.
pub struct Replica {
    pub identity: String,
    pub port: u16,
    pub process: Process,
}

impl Replica {
    /// Starts replica `identity`: `run` starts `bosun run` listening on the address it is given.
    pub fn start(identity: &str, run: impl FnOnce(&str) -> Process) -> Replica {
        let port = free_port();
        let process = run(&format!("127.0.0.1:{port}"));
        Replica {
            identity: identity.into(),
            port,
            process,
        }
    }

    /// A sample without labels of the replica's `/metrics` (None while it does not answer).
    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http_get(local(self.port), "/metrics")?;
        sample(&body, name, &[])
    }

    /// Whether it says it leads (`bosun_leader` 1).
    pub fn leads(&self) -> bool {
        self.metric("bosun_leader") == Some(1.0)
    }
}

/// The arguments that make `bosun run` replica `identity`, electing a leader on the Lease `bosun` of
/// `ns` that lasts `lease`.
pub fn leader_elect_args(identity: &str, ns: &str, lease: Duration) -> Vec<String> {
    [
        "--leader-elect",
        "--lease-namespace",
        ns,
        "--identity",
        identity,
        "--lease-duration",
        &lease.as_secs().to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// `bosun run` on the local directory `dir` as replica `identity` of `ns` (apps applied and upgraded
/// in `ns`), with the shared test cluster.
pub fn start_on_dir(identity: &str, dir: &Path, ns: &str, lease: Duration) -> Replica {
    Replica::start(identity, |listen| {
        Process::bosun(|c| {
            c.args(["run", "--dir"])
                .arg(dir)
                .args(["--namespace", ns, "--engine-namespace", ns])
                .args(leader_elect_args(identity, ns, lease))
                .args(["--listen", listen]);
        })
    })
}

/// Who holds the Lease `bosun` of `ns`, as the API server says (None while it cannot be read).
pub async fn lease_holder(ns: &TestNamespace) -> Option<String> {
    ns.api::<Lease>()
        .get_opt("bosun")
        .await
        .ok()??
        .spec?
        .holder_identity
}
