//! Prometheus metrics, served at `/metrics` in the OpenMetrics text format.
//!
//! One registry per process ([`global`]); each component records into the families it owns. Labels
//! never carry secrets or unbounded values other than app and source names.

use std::sync::OnceLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label pairs of a metric sample.
pub type Labels = Vec<(String, String)>;

fn histogram() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

type HistogramFamily = Family<Labels, Histogram, fn() -> Histogram>;

/// Every metric Bosun exports.
pub struct Metrics {
    registry: Registry,
    /// Requests to the Kubernetes API, by `verb` (get, list, watch, create, patch, update, delete)
    /// and `resource`.
    pub kube_requests: Family<Labels, Counter>,
    /// Writes refused because this replica does not hold the lease.
    pub kube_writes_refused: Counter,
    /// Reconciles by `controller` and `result` (ok, error).
    pub reconciles: Family<Labels, Counter>,
    /// Reconcile errors by `controller` and `reason` (the error variant).
    pub reconcile_errors: Family<Labels, Counter>,
    /// How long a reconcile took, by `controller`.
    pub reconcile_duration: HistogramFamily,
    /// 1 for the phase each app is in, by `namespace`, `app`, `phase`.
    pub app_phase: Family<Labels, Gauge>,
    /// Upgrades by `result`: started, succeeded, rolled_back.
    pub upgrades: Family<Labels, Counter>,
    /// Git polls by `source` and `result` (unchanged, changed, error).
    pub git_polls: Family<Labels, Counter>,
    /// How long a git poll (and fetch, when there was something new) took, by `source`.
    pub git_poll_duration: HistogramFamily,
    /// Git failures by `source` and `reason`.
    pub git_failures: Family<Labels, Counter>,
    /// Objects applied by a source sync, by `source` and `action` (create, update, prune).
    pub sync_applies: Family<Labels, Counter>,
    /// Requests to GitHub by `call` and `status` (HTTP status or "error").
    pub forge_requests: Family<Labels, Counter>,
    /// Waits imposed by GitHub's rate limits.
    pub forge_rate_limit_waits: Counter,
    /// Git write-backs by `kind` (rollback, note) and `result`.
    pub git_writes: Family<Labels, Counter>,
    /// 1 while this replica holds the lease (or leader election is off), else 0.
    pub leader: Gauge,
    /// The engine's Events by `result`: published, failed (kube-apiserver refused it), dropped (the
    /// queue was full).
    pub events: Family<Labels, Counter>,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("bosun");
        let m = Metrics {
            kube_requests: Family::default(),
            kube_writes_refused: Counter::default(),
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(histogram),
            app_phase: Family::default(),
            upgrades: Family::default(),
            git_polls: Family::default(),
            git_poll_duration: Family::new_with_constructor(histogram),
            git_failures: Family::default(),
            sync_applies: Family::default(),
            forge_requests: Family::default(),
            forge_rate_limit_waits: Counter::default(),
            git_writes: Family::default(),
            leader: Gauge::default(),
            events: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "kube_requests",
            "Requests to the Kubernetes API by verb and resource",
            m.kube_requests.clone(),
        );
        registry.register(
            "kube_writes_refused",
            "Writes refused because this replica does not hold the lease",
            m.kube_writes_refused.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles by controller and result",
            m.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile errors by controller and reason",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile duration by controller",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "app_phase",
            "1 for the phase each ManagedApplication is in",
            m.app_phase.clone(),
        );
        registry.register(
            "upgrades",
            "Upgrades started, succeeded and rolled back",
            m.upgrades.clone(),
        );
        registry.register(
            "git_polls",
            "Git polls by source and result",
            m.git_polls.clone(),
        );
        registry.register(
            "git_poll_duration_seconds",
            "Git poll and fetch duration by source",
            m.git_poll_duration.clone(),
        );
        registry.register(
            "git_failures",
            "Git failures by source and reason",
            m.git_failures.clone(),
        );
        registry.register(
            "sync_applies",
            "Objects applied by source syncs, by source and action",
            m.sync_applies.clone(),
        );
        registry.register(
            "forge_requests",
            "Requests to the forge (GitHub, Gitea or GitLab) by forge, call and status",
            m.forge_requests.clone(),
        );
        registry.register(
            "forge_rate_limit_waits",
            "Waits imposed by the forge's rate limits",
            m.forge_rate_limit_waits.clone(),
        );
        registry.register(
            "git_writes",
            "Git write-backs by kind and result",
            m.git_writes.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the lease",
            m.leader.clone(),
        );
        registry.register(
            "events",
            "The engine's Events by result (published, failed, dropped)",
            m.events.clone(),
        );
        // At 0 from the start: an alert on a rate of drops has a series before the first drop.
        for result in EVENT_RESULTS {
            let _ = m.events.get_or_create(&labels(&[("result", result)]));
        }
        Metrics { registry, ..m }
    }

    /// The registry in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String does not fail");
        out
    }
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// Builds a label set from pairs.
pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

/// Counts an API write by the kube client (see [`crate::leader::WriteGate`]).
pub fn kube_request(verb: &str, resource: &str) {
    global()
        .kube_requests
        .get_or_create(&labels(&[("verb", verb), ("resource", resource)]))
        .inc();
}

/// What becomes of an Event of the engine's: `bosun_events_total`'s `result`.
const EVENT_RESULTS: [&str; 3] = ["published", "failed", "dropped"];

/// Counts an Event of the engine's by `result`, one of published, failed, dropped.
pub fn event(result: &str) {
    debug_assert!(EVENT_RESULTS.contains(&result), "an Event result: {result}");
    global()
        .events
        .get_or_create(&labels(&[("result", result)]))
        .inc();
}

/// The sum of API writes (create, patch, update, delete) made by this process so far.
pub fn kube_writes() -> u64 {
    // Family has no iteration API; the write verbs and resources are tracked separately for this.
    WRITES.load(std::sync::atomic::Ordering::Relaxed)
}

pub(crate) static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

const PHASES: [&str; 6] = [
    "Pending",
    "Migrating",
    "Deploying",
    "HealthChecking",
    "Healthy",
    "Failed",
];

/// The apps that have `bosun_app_phase` series: a Family cannot list its label sets.
static PHASED_APPS: std::sync::Mutex<std::collections::BTreeSet<(String, String)>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

fn phase_labels(namespace: &str, app: &str, phase: &str) -> Labels {
    labels(&[("namespace", namespace), ("app", app), ("phase", phase)])
}

/// Records the phase an app is in: 1 for `phase`, 0 for the others.
pub fn set_app_phase(namespace: &str, app: &str, phase: &str) {
    PHASED_APPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert((namespace.to_owned(), app.to_owned()));
    for p in PHASES {
        global()
            .app_phase
            .get_or_create(&phase_labels(namespace, app, p))
            .set(i64::from(p == phase));
    }
}

/// Removes the `bosun_app_phase` series of every app `exists` says is gone (deleted apps).
pub fn forget_apps(exists: impl Fn(&str, &str) -> bool) {
    let mut phased = PHASED_APPS.lock().unwrap_or_else(|e| e.into_inner());
    phased.retain(|(namespace, app)| {
        let keep = exists(namespace, app);
        if !keep {
            for p in PHASES {
                global().app_phase.remove(&phase_labels(namespace, app, p));
            }
        }
        keep
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_is_in_one_phase_at_a_time() {
        set_app_phase("shop", "orders", "Deploying");
        set_app_phase("shop", "orders", "Healthy");
        let text = global().render();
        assert!(
            text.contains(r#"bosun_app_phase{namespace="shop",app="orders",phase="Healthy"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"bosun_app_phase{namespace="shop",app="orders",phase="Deploying"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn a_deleted_app_has_no_phase_series_left() {
        set_app_phase("shop", "gone", "Healthy");
        set_app_phase("shop", "kept", "Healthy");
        forget_apps(|_, app| app != "gone");
        let text = global().render();
        assert!(!text.contains(r#"app="gone""#), "{text}");
        assert!(
            text.contains(r#"bosun_app_phase{namespace="shop",app="kept",phase="Healthy"} 1"#),
            "{text}"
        );
    }
}
