//! The pods' health endpoints, served by the test itself: kwok simulates pods but runs no containers, so
//! Bosun's active HTTP health checks need something to answer on each pod's address.
//!
//! [`HealthServer::start`] watches one test namespace's pods and, for every pod IP kwok hands out (a
//! loopback address in the cluster's pod CIDR, `127.X.0.0/17`, see `scripts/cluster`), listens on
//! `podIP:port`. Each request is answered from the pod that has that address *at the time of the
//! request* (kwok reuses a freed address at once): 200 by default, 500 when the pod's image tag ends in
//! `-unhealthy` or whose environment sets `BOSUN_TEST_HEALTH=500` (such pods still become Ready: kwok's
//! stock stage applies), 503 when no pod of the
//! namespace has the address (any more). Every request is recorded, so a test can assert that the checks
//! really ran against the new pods. `/metrics` answers with the pod's request counters (see
//! [`ERRORS_SUFFIX`]), for a real Prometheus to scrape ([`super::prometheus`]).
//!
//! Each server has a port of its own: it holds `127.0.0.1:port` for its lifetime, so no other server
//! (in this test binary or another one running at the same time) can pick the same port, and so never
//! the same `podIP:port` either.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::TestNamespace;

/// The image tag suffix that makes a pod's health endpoint answer 500.
pub const UNHEALTHY_SUFFIX: &str = "-unhealthy";
/// An environment variable of the app's container that makes its health endpoint answer 500 when it
/// is `"500"`: an app broken by its configuration, not its image.
pub const UNHEALTHY_ENV: &str = "BOSUN_TEST_HEALTH";
/// The image tag suffix whose pods report 20 % of their requests as errors on `/metrics`.
pub const ERRORS_SUFFIX: &str = "-errors";
/// The requests per second every pod reports on `/metrics`.
pub const REQUESTS_PER_SECOND: f64 = 10.0;

/// `/metrics` of a pod, in Prometheus's text format: `http_requests_total` by `code`, counted as if
/// the pod had served [`REQUESTS_PER_SECOND`] since it was created, 20 % of them `500` when its image
/// tag ends in [`ERRORS_SUFFIX`], none otherwise. Counters, so `rate()` reads the error ratio.
fn pod_metrics(pod: &Pod, image: Option<&str>) -> String {
    let created = pod
        .metadata
        .creation_timestamp
        .as_ref()
        .map_or(0, |t| t.0.as_second());
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    let total = ((now - created).max(0) as f64 * REQUESTS_PER_SECOND).floor();
    let error_ratio = if image.is_some_and(|i| i.ends_with(ERRORS_SUFFIX)) {
        0.2
    } else {
        0.0
    };
    let errors = (total * error_ratio).floor();
    format!(
        "# HELP http_requests_total Requests served, by status code.\n\
         # TYPE http_requests_total counter\n\
         http_requests_total{{code=\"200\"}} {}\n\
         http_requests_total{{code=\"500\"}} {errors}\n",
        total - errors
    )
}

fn env_says_unhealthy(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first()?.env.as_ref())
        .is_some_and(|env| {
            env.iter()
                .any(|e| e.name == UNHEALTHY_ENV && e.value.as_deref() == Some("500"))
        })
}

/// One request the server answered.
#[derive(Clone, Debug)]
pub struct HealthRequest {
    /// The pod address the request was sent to.
    pub ip: IpAddr,
    /// The pod that had the address when the request came (None: no pod of the namespace had it).
    pub pod: Option<String>,
    /// That pod's (first container's) image.
    pub image: Option<String>,
    /// The request line's path.
    pub path: String,
    /// The HTTP status answered.
    pub status: u16,
    pub at: Instant,
}

/// Answers health checks for every pod of a namespace, on one port. Stops when dropped.
pub struct HealthServer {
    pub port: u16,
    requests: Arc<Mutex<Vec<HealthRequest>>>,
    forced: Arc<Mutex<Option<u16>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    /// Holds 127.0.0.1:port so that no other server picks this port.
    _reservation: std::net::TcpListener,
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        for t in self.tasks.lock().expect("tasks lock").drain(..) {
            t.abort();
        }
    }
}

impl HealthServer {
    /// Starts serving the pods of `ns` on a free port (see [`HealthServer::port`]), now and as they come.
    pub async fn start(ns: &TestNamespace) -> HealthServer {
        let reservation =
            std::net::TcpListener::bind("127.0.0.1:0").expect("reserving a port on 127.0.0.1");
        let port = reservation.local_addr().expect("a bound address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let forced = Arc::new(Mutex::new(None));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let (store, writer) = reflector::store::<Pod>();
        let pods: Api<Pod> = ns.api();
        let ready = Arc::new(tokio::sync::Notify::new());
        let watch = {
            let (requests, tasks, ready) = (requests.clone(), tasks.clone(), ready.clone());
            let forced = forced.clone();
            let store = store.clone();
            tokio::spawn(async move {
                let mut bound: HashSet<IpAddr> = HashSet::new();
                let mut events = std::pin::pin!(
                    reflector::reflector(
                        writer,
                        watcher(pods, watcher::Config::default()).default_backoff()
                    )
                    .touched_objects()
                );
                ready.notify_one();
                while let Some(event) = events.next().await {
                    let Ok(pod) = event else { continue };
                    for ip in pod_ips(&pod) {
                        if bound.contains(&ip) {
                            continue;
                        }
                        match TcpListener::bind(SocketAddr::new(ip, port)).await {
                            Ok(listener) => {
                                bound.insert(ip);
                                let t = tokio::spawn(serve(
                                    listener,
                                    ip,
                                    store.clone(),
                                    requests.clone(),
                                    forced.clone(),
                                ));
                                tasks.lock().expect("tasks lock").push(t);
                            }
                            Err(e) => eprintln!("health server: cannot listen on {ip}:{port}: {e}"),
                        }
                    }
                }
            })
        };
        tasks.lock().expect("tasks lock").push(watch);
        ready.notified().await;
        HealthServer {
            port,
            requests,
            forced,
            tasks,
            _reservation: reservation,
        }
    }

    /// Answers every request with `status` (whatever the pod's image) until set back to `None`: for
    /// a failure that goes away without a new version (a dependency down, then up again).
    pub fn force(&self, status: Option<u16>) {
        *self.forced.lock().expect("forced lock") = status;
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<HealthRequest> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// The names of the pods whose image is `image` that were checked at least once.
    pub fn pods_checked_with_image(&self, image: &str) -> HashSet<String> {
        self.requests()
            .into_iter()
            .filter(|r| r.image.as_deref() == Some(image))
            .filter_map(|r| r.pod)
            .collect()
    }

    /// How many requests were answered with `status`.
    pub fn count_status(&self, status: u16) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.status == status)
            .count()
    }
}

fn pod_ips(pod: &Pod) -> Vec<IpAddr> {
    let Some(status) = &pod.status else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = status
        .pod_ips
        .iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if let Some(ip) = status.pod_ip.as_ref().and_then(|ip| ip.parse().ok())
        && !ips.contains(&ip)
    {
        ips.push(ip);
    }
    // Only loopback: a test never listens on a real network.
    ips.retain(IpAddr::is_loopback);
    ips
}

/// The pod of the namespace that has `ip` now (the newest, should two briefly share it).
fn pod_at(store: &Store<Pod>, ip: IpAddr) -> Option<Arc<Pod>> {
    store
        .state()
        .into_iter()
        .filter(|p| pod_ips(p).contains(&ip))
        .max_by_key(|p| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

async fn serve(
    listener: TcpListener,
    ip: IpAddr,
    store: Store<Pod>,
    requests: Arc<Mutex<Vec<HealthRequest>>>,
    forced: Arc<Mutex<Option<u16>>>,
) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let store = store.clone();
        let requests = requests.clone();
        let forced = *forced.lock().expect("forced lock");
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(1024);
            let mut chunk = [0u8; 1024];
            // Read the request head (a health check has no body).
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
                match tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    stream.read(&mut chunk),
                )
                .await
                {
                    Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
                    Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buf);
            let path = head
                .lines()
                .next()
                .and_then(|l| l.split(' ').nth(1))
                .unwrap_or("")
                .to_string();
            let pod = pod_at(&store, ip);
            let image = pod
                .as_ref()
                .and_then(|p| p.spec.as_ref()?.containers.first()?.image.clone());
            if path == "/metrics"
                && let Some(p) = &pod
            {
                let body = pod_metrics(p, image.as_deref());
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
                return;
            }
            let (status, reason, body) = match (&pod, &image) {
                _ if forced.is_some_and(|f| f >= 500) => (
                    forced.unwrap_or(500),
                    "Internal Server Error",
                    "failing: forced by the test\n",
                ),
                _ if forced.is_some() => (forced.unwrap_or(200), "OK", "ok: forced by the test\n"),
                (None, _) => (503, "Service Unavailable", "no pod has this address\n"),
                (Some(p), _) if env_says_unhealthy(p) => (
                    500,
                    "Internal Server Error",
                    "unhealthy: the pod's environment sets BOSUN_TEST_HEALTH=500\n",
                ),
                (Some(_), Some(i)) if i.ends_with(UNHEALTHY_SUFFIX) => (
                    500,
                    "Internal Server Error",
                    "unhealthy: the image tag ends in -unhealthy\n",
                ),
                (Some(_), _) => (200, "OK", "ok\n"),
            };
            requests.lock().expect("requests lock").push(HealthRequest {
                ip,
                pod: pod.as_ref().and_then(|p| p.metadata.name.clone()),
                image,
                path,
                status,
                at: Instant::now(),
            });
            let response = format!(
                "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}
