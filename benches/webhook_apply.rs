//! Webhook received → the changed resource applied in the cluster: latency over repeated pushes, with
//! `bosun run` as a process, the real git server and the real test cluster (polling set to an hour, so
//! only the webhook explains an update).
//!
//! Run: `scripts/bench` (or `cargo bench --bench webhook_apply` with the test cluster's environment).

#[path = "../tests/support/gitserver.rs"]
mod gitserver;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bosun_core::model::ManagedApplication;
use hmac::{Hmac, Mac};
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

const ROUNDS: usize = 30;

fn app(version: &str) -> String {
    format!(
        "apiVersion: apps.example.com/v1alpha1\nkind: ManagedApplication\nmetadata:\n  name: bench\nspec:\n  version: {version}\n"
    )
}

fn post(addr: &str, secret: &[u8], body: &str) -> u16 {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("key");
    mac.update(body.as_bytes());
    let sig = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
    let mut s = std::net::TcpStream::connect(addr).expect("connect to bosun");
    write!(s, "POST /webhook HTTP/1.1\r\nHost: {addr}\r\nX-GitHub-Event: push\r\nX-Hub-Signature-256: {sig}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).expect("write");
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let kubeconfig = std::env::var("BOSUN_CLUSTER_KUBECONFIG")
        .expect("run scripts/bench: it brings up the test cluster");
    let client = Client::try_default()
        .await
        .expect("cluster client (KUBECONFIG)");
    let ns = format!("bench-webhook-{}", std::process::id());
    let nsapi: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    nsapi
        .patch(&ns, &PatchParams::apply("bench"), &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})))
        .await
        .expect("namespace");
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> = Api::all(client.clone());
    for crd in bosun_core::model::crds() {
        let name = crd.metadata.name.clone().expect("named");
        crds.patch(
            &name,
            &PatchParams::apply("bench").force(),
            &Patch::Apply(&crd),
        )
        .await
        .expect("CRD");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let server = gitserver::GitServer::start();
    let repo = server.create_repo("bench", &[("apps/bench.yaml", app("v0").as_str())]);
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("secret"), "bench-secret").expect("write");
    std::fs::write(dir.path().join("password"), &server.http_password).expect("write");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut daemon = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args([
            "run",
            "--repo",
            &repo.http_url,
            "--path",
            "apps",
            "--namespace",
            &ns,
            "--name",
            "bench",
        ])
        .args(["--git-username", &server.http_user, "--git-password-file"])
        .arg(dir.path().join("password"))
        .args(["--webhook-secret-file"])
        .arg(dir.path().join("secret"))
        .args(["--cache-dir"])
        .arg(dir.path().join("cache"))
        .args([
            "--poll-interval",
            "3600",
            "--listen",
            &addr,
            "--engine-namespace",
            &ns,
        ])
        .env("KUBECONFIG", &kubeconfig)
        .env("BOSUN_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .expect("bosun starts");

    let apps: Api<ManagedApplication> = Api::namespaced(client.clone(), &ns);
    let version_is = |v: String| {
        let apps = apps.clone();
        async move {
            apps.get_opt("bench")
                .await
                .ok()
                .flatten()
                .is_some_and(|a| a.spec.version == v)
        }
    };
    let start = Instant::now();
    while !version_is("v0".into()).await {
        assert!(start.elapsed() < Duration::from_secs(30), "first sync");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let body =
        serde_json::json!({"ref": "refs/heads/main", "repository": {"clone_url": repo.http_url}})
            .to_string();
    let mut times = Vec::new();
    for round in 1..=ROUNDS {
        let v = format!("v{round}");
        repo.commit("bump", &[("apps/bench.yaml", app(&v))]);
        let sent = Instant::now();
        assert_eq!(post(&addr, b"bench-secret", &body), 202);
        while !version_is(v.clone()).await {
            assert!(
                sent.elapsed() < Duration::from_secs(30),
                "round {round} never applied"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        times.push(sent.elapsed());
    }
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = nsapi.delete(&ns, &Default::default()).await;

    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let p99 = times[(times.len() * 99 / 100).min(times.len() - 1)];
    println!("webhook received -> resource applied ({ROUNDS} pushes, HTTP git, real API server):");
    println!(
        "  median {:.1} ms, p99 {:.1} ms, max {:.1} ms (measured until a client sees the new version)",
        ms(times[ROUNDS / 2]),
        ms(p99),
        ms(times[ROUNDS - 1])
    );
}
