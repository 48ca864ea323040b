//! The measurements of an app's metric analysis: each query the planner says is due
//! ([`bosun_core::rollout::analyze::due`]), rendered for the app and the side it checks, asked of
//! Prometheus ([`crate::prometheus`]). A measurement that cannot be taken (no address, Prometheus
//! unreachable or refusing the query) is recorded as an error: inconclusive, never a pass.

use std::time::Duration;

use bosun_core::analysis::{Vars, render};
use bosun_core::model::{ManagedApplication, ManagedApplicationStatus};
use bosun_core::rollout::analyze::{self, Measured};
use bosun_core::rollout::objects;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

/// How long one query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Takes the measurements due now, all at once.
pub(super) async fn measure(
    app: &ManagedApplication,
    status: &ManagedApplicationStatus,
    now: &Time,
    default_url: Option<&str>,
) -> Vec<Measured> {
    let due = analyze::due(&app.spec, status, now);
    if due.is_empty() {
        return Vec::new();
    }
    let name = app.name_any();
    let namespace = app.namespace().unwrap_or_default();
    let revision = status.target_hash.clone().unwrap_or_default();
    let queries = due.into_iter().map(|d| {
        let vars = Vars {
            app: &name,
            namespace: &namespace,
            version: &app.spec.version,
            revision: &revision,
            role: objects::role_label(d.role),
        };
        let query = render(&d.metric.provider.prometheus.query, &vars);
        let url = d
            .metric
            .provider
            .prometheus
            .address
            .clone()
            .or_else(|| default_url.map(str::to_string));
        async move {
            let result = match (url, query) {
                (None, _) => Err(
                    "no Prometheus to ask: set provider.prometheus.address, or bosun run \
                     --prometheus-url"
                        .to_string(),
                ),
                (_, Err(e)) => Err(format!("the query: {e}")),
                (Some(url), Ok(q)) => crate::prometheus::query(&url, &q, QUERY_TIMEOUT).await,
            };
            Measured {
                scope: d.scope,
                metric: d.metric.name,
                result,
            }
        }
    });
    futures::future::join_all(queries).await
}
