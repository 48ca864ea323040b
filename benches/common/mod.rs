//! What the cluster benchmarks share: the daemon under test (and its own `/metrics`), its memory and
//! CPU time, the requests kube-apiserver counted (`apiserver_request_total` on its /metrics), and a
//! count of objects done, from a watch.
#![allow(dead_code)] // each bench uses its own part

use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::support::process::{Process, free_port, http_get, local, proc_status_kib, sample};
use crate::support::wait_until;

/// The verbs that write.
pub const WRITE_VERBS: [&str; 6] = [
    "POST",
    "PUT",
    "PATCH",
    "APPLY",
    "DELETE",
    "DELETECOLLECTION",
];

/// True, after saying so, when the test cluster is not there (`BOSUN_CLUSTER_KUBECONFIG` unset): the
/// bench `name` then skips, and exits 0.
pub fn no_cluster(name: &str) -> bool {
    let missing = std::env::var_os("BOSUN_CLUSTER_KUBECONFIG").is_none();
    if missing {
        println!(
            "{name}: skipped: BOSUN_CLUSTER_KUBECONFIG is not set (run scripts/bench, or \
             `scripts/cluster up && eval \"$(scripts/cluster env)\"` first)"
        );
    }
    missing
}

pub fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Kills the daemon when the bench ends, however it ends.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// utime + stime of the process, in clock ticks (0 once it is gone).
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name may hold spaces: the fields after it start after the last ')'.
    let Some(close) = stat.rfind(')') else {
        return 0;
    };
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    // After the name: state(3) ... utime(14) stime(15), counted from 1 with pid and name first.
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

pub fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// The requests kube-apiserver counted whose verb is one of `verbs` and whose resource and
/// subresource `keep` accepts, by "VERB resource[/subresource]".
pub async fn requests(
    client: &Client,
    verbs: &[&str],
    keep: impl Fn(&str, &str) -> bool,
) -> BTreeMap<String, u64> {
    counted(client, |verb, resource, sub, _| {
        verbs.contains(&verb) && keep(resource, sub)
    })
    .await
}

/// The requests kube-apiserver refused with 409 Conflict (a write made against an older object), by
/// "VERB resource[/subresource]".
pub async fn refused(client: &Client) -> BTreeMap<String, u64> {
    counted(client, |_, _, _, code| code == "409").await
}

/// The requests kube-apiserver counted (`apiserver_request_total`) whose verb, resource,
/// subresource and code `keep` accepts, by "VERB resource[/subresource]".
async fn counted(
    client: &Client,
    keep: impl Fn(&str, &str, &str, &str) -> bool,
) -> BTreeMap<String, u64> {
    let req = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a request");
    let text = client
        .request_text(req)
        .await
        .expect("kube-apiserver /metrics");
    let mut out = BTreeMap::new();
    for (labels, n) in counter_samples(&text, "apiserver_request_total") {
        let label = |name: &str| label_value(labels, name);
        let (verb, resource, sub) = (label("verb"), label("resource"), label("subresource"));
        if keep(&verb, &resource, &sub, &label("code")) {
            let key = if sub.is_empty() {
                format!("{verb} {resource}")
            } else {
                format!("{verb} {resource}/{sub}")
            };
            *out.entry(key).or_insert(0) += n;
        }
    }
    out
}

/// The samples of counter `name` (with labels) in a Prometheus text exposition: their labels
/// (`verb="GET",resource="pods"`) and values.
fn counter_samples<'a>(text: &'a str, name: &str) -> impl Iterator<Item = (&'a str, u64)> {
    let prefix = format!("{name}{{");
    text.lines().filter_map(move |line| {
        let (labels, value) = line.strip_prefix(&prefix)?.rsplit_once("} ")?;
        let n: f64 = value.trim().parse().unwrap_or(0.0);
        Some((labels, n as u64))
    })
}

pub fn diff(
    after: &BTreeMap<String, u64>,
    before: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}

pub fn show(writes: &BTreeMap<String, u64>) -> String {
    if writes.is_empty() {
        return "none".into();
    }
    writes
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The value of label `name` in the labels of a sample (`verb="GET",resource="pods"`), or "".
fn label_value(labels: &str, name: &str) -> String {
    labels
        .split("\",")
        .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_default()
}

/// Bosun's writes as kube-apiserver counted them, by "VERB resource[/subresource]": mutating verbs on
/// `managedapplications` (the object and its `status`: nobody else writes them) and on the main
/// resource (no subresource) of `deployments`, `services` and `jobs`. The `status` subresources of
/// Deployments and Jobs are left out: the controller-manager writes those (it also sets the Deployment
/// revision annotation, but only when a rollout creates a ReplicaSet, which a steady app never does).
/// Events are left out: they are reports, not changes. The counters are cluster-wide: the figure is
/// Bosun's only while nothing else writes those resources.
pub async fn bosun_writes(client: &Client) -> BTreeMap<String, u64> {
    bosun_requests_seen(client, &WRITE_VERBS).await
}

/// Requests with one of `verbs` on the resources [`bosun_writes`] counts.
pub async fn bosun_requests_seen(client: &Client, verbs: &[&str]) -> BTreeMap<String, u64> {
    requests(client, verbs, |resource, sub| match resource {
        "managedapplications" => sub.is_empty() || sub == "status",
        "deployments" | "services" | "jobs" => sub.is_empty(),
        _ => false,
    })
    .await
}

/// `bosun run` as the cluster benchmarks run it: an empty source directory, its engine acting in
/// namespace `ns`, `/metrics` on a port of its own, its stderr in a log file. Killed when dropped.
pub struct Bosun {
    pub process: Process,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Bosun {
    /// Starts it and waits until it answers `/readyz`.
    pub async fn start(ns: &str) -> Bosun {
        Bosun::start_with_engine_in(ns, Some(ns)).await
    }

    /// Starts it with its engine acting in `engine_ns`, or in every namespace (`None`).
    pub async fn start_with_engine_in(ns: &str, engine_ns: Option<&str>) -> Bosun {
        let dir = tempfile::tempdir().expect("a directory for the source and cache");
        let source = dir.path().join("source");
        std::fs::create_dir(&source).expect("an empty source directory");
        let port = free_port();
        let process = Process::bosun(|c| {
            c.args(["run", "--dir"])
                .arg(&source)
                .args(["--namespace", ns, "--name", "bench"])
                .args(
                    engine_ns
                        .map(|e| ["--engine-namespace", e])
                        .into_iter()
                        .flatten(),
                )
                .args(["--poll-interval", "3600"])
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .arg("--cache-dir")
                .arg(dir.path().join("cache"))
                .env("BOSUN_LOG", "warn");
        });
        wait_until("bosun ready", || async {
            let (code, _) = http_get(local(port), "/readyz")?;
            (code == 200).then_some(())
        })
        .await;
        Bosun {
            process,
            port,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.id()
    }

    /// Its `/metrics`.
    pub fn metrics(&self) -> String {
        match http_get(local(self.port), "/metrics") {
            Some((200, body)) => body,
            other => panic!(
                "bosun's /metrics did not answer: {other:?}\n{}",
                self.log_tail()
            ),
        }
    }

    /// ManagedApplication reconciles so far: (ok, error).
    pub fn reconciles(&self) -> (u64, u64) {
        let text = self.metrics();
        let count = |result: &str| {
            let labels = [("controller", "managedapplication"), ("result", result)];
            sample(&text, "bosun_reconciles_total", &labels).unwrap_or(0.0) as u64
        };
        (count("ok"), count("error"))
    }

    /// The ManagedApplication reconciles Bosun finished so far, and the seconds they took in all.
    pub fn reconcile_time(&self) -> (u64, f64) {
        let text = self.metrics();
        let labels = [("controller", "managedapplication")];
        let of = |name: &str| sample(&text, name, &labels).unwrap_or(0.0);
        (
            of("bosun_reconcile_duration_seconds_count") as u64,
            of("bosun_reconcile_duration_seconds_sum"),
        )
    }

    /// The requests Bosun made to the Kubernetes API so far (its own count, every request through
    /// its client), by "verb resource".
    pub fn kube_requests(&self) -> BTreeMap<String, u64> {
        let text = self.metrics();
        let mut out = BTreeMap::new();
        for (labels, n) in counter_samples(&text, "bosun_kube_requests_total") {
            let key = format!(
                "{} {}",
                label_value(labels, "verb"),
                label_value(labels, "resource")
            );
            *out.entry(key).or_insert(0) += n;
        }
        out
    }

    /// The engine's Events so far, by result, as "published N, dropped N" (or "none").
    pub fn events(&self) -> String {
        let text = self.metrics();
        let counted: Vec<String> = counter_samples(&text, "bosun_events_total")
            .map(|(labels, n)| format!("{} {n}", label_value(labels, "result")))
            .collect();
        if counted.is_empty() {
            "none".into()
        } else {
            counted.join(", ")
        }
    }

    /// Waits until no ManagedApplication reconcile has finished for `quiet` (polling its counter),
    /// at most `limit`; returns how long that took. What was still settling (old ReplicaSets scaled
    /// down after a rollout, the status updates they cause) is over when a measurement starts.
    pub async fn settle(&self, quiet: Duration, limit: Duration) -> Duration {
        let t0 = Instant::now();
        let total = || {
            let (ok, error) = self.reconciles();
            ok + error
        };
        let (mut last, mut since) = (total(), Instant::now());
        while since.elapsed() < quiet && t0.elapsed() < limit {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = total();
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        t0.elapsed()
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let log = self.process.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// Requests by "verb resource" (Bosun's own count), split into the others and the number of watches
/// (long-running: counted once, when they start).
pub fn split_watches(requests: &BTreeMap<String, u64>) -> (BTreeMap<String, u64>, u64) {
    let watches = requests
        .iter()
        .filter(|(k, _)| k.starts_with("watch "))
        .map(|(_, v)| v)
        .sum();
    let others = requests
        .iter()
        .filter(|(k, _)| !k.starts_with("watch "))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    (others, watches)
}

/// A field of `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`) in MiB (0 once the process is gone).
pub fn status_mib(pid: u32, field: &str) -> f64 {
    proc_status_kib(pid, field).unwrap_or(0) as f64 / 1024.0
}

/// The largest VmRSS of `pid` over `span`, in MiB.
pub async fn rss_mib(pid: u32, span: Duration) -> f64 {
    let end = Instant::now() + span;
    let mut most: f64 = 0.0;
    while Instant::now() < end {
        most = most.max(status_mib(pid, "VmRSS:"));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    most
}

/// Runs `act` while a watch of `api` (started first, so that nothing is missed) counts the objects
/// `done` accepts, until `n` are done and `act` has finished, or `timeout` passed; the count.
pub async fn act_until_done<K>(
    api: &Api<K>,
    n: usize,
    timeout: Duration,
    act: impl std::future::Future<Output = ()>,
    done: impl Fn(&K) -> bool,
) -> usize
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let t0 = Instant::now();
    let mut events = std::pin::pin!(
        watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    let mut finished: BTreeMap<String, bool> = BTreeMap::new();
    let mut acting = std::pin::pin!(act);
    let mut acted = false;
    let mut count = 0;
    while count < n || !acted {
        let left = timeout.saturating_sub(t0.elapsed());
        tokio::select! {
            () = &mut acting, if !acted => acted = true,
            next = tokio::time::timeout(left, events.next()) => match next {
                Ok(Some(Ok(o))) => {
                    finished.insert(o.name_any(), done(&o));
                    count = finished.values().filter(|d| **d).count();
                }
                Ok(Some(Err(_))) => {}
                Ok(None) | Err(_) => break,
            },
        }
    }
    count
}

/// The median (the mean of the middle two of an even count); NaN of none.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => values[n / 2],
        _ => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}
