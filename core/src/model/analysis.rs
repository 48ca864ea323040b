//! Metric analysis (`upgradeStrategy.analysis`, `canary.steps[].analysis`): Prometheus queries whose
//! results judge the new version, measured while it is checked; what they found is kept in
//! `status.analysisRuns`. The shape follows Argo Rollouts' AnalysisTemplate metrics (`name`,
//! `interval`, `count`, `successCondition`, `failureCondition`, `failureLimit`, `inconclusiveLimit`,
//! `provider.prometheus`), written inline.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::pause::parse_duration;

/// The metrics that judge the new version.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct Analysis {
    pub metrics: Vec<Metric>,
}

/// One metric: a query, how often it is measured, and the conditions its result is judged by.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Metric {
    /// The metric's name, as status, messages and the pull request comment say it (`error-rate`).
    pub name: String,
    pub provider: MetricProvider,
    /// Time between measurements: seconds (30) or a duration (30s, 1m). Defaults to 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Seconds>,
    /// Time from the start of the check to the first measurement. Defaults to 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<Seconds>,
    /// Conclusive measurements (successful or failed) that make a verdict; inconclusive ones are
    /// waited out up to `inconclusiveLimit` and do not count. Without it the metric is measured for
    /// as long as the step lasts (its pause, its promotion), and at least once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub count: Option<i32>,
    /// A measurement succeeds when this holds (`result < 0.01`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_condition: Option<String>,
    /// A measurement fails when this holds (`result >= 0.05`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated; one more fails the upgrade. Defaults to 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub failure_limit: Option<i32>,
    /// Inconclusive measurements tolerated (no data, Prometheus unreachable); one more fails the
    /// upgrade. Defaults to 3.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub inconclusive_limit: Option<i32>,
    /// What a result with no series means: Inconclusive (the default), Failed, or Successful (only
    /// when no traffic is fine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_result: Option<EmptyResult>,
}

/// Where a metric's values come from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricProvider {
    pub prometheus: PrometheusMetric,
}

/// A PromQL instant query.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusMetric {
    /// The Prometheus server (`http://prometheus.monitoring:9090`). Defaults to the daemon's
    /// `analysis.prometheus` setting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The query, with placeholders `{{app}}`, `{{namespace}}`, `{{version}}`, `{{revision}}` and
    /// `{{role}}` (canary or preview: the side being checked; stable for a direct rollout).
    pub query: String,
}

/// What a result with no series means.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum EmptyResult {
    #[default]
    Inconclusive,
    Failed,
    Successful,
}

/// A duration: seconds written as an integer (30) or as text (`30s`, `5m`, `1h30m`), kept as
/// written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seconds {
    pub seconds: u64,
    /// The text form, when it was written as one.
    pub text: Option<String>,
}

impl fmt::Display for Seconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.text {
            Some(t) => f.write_str(t),
            None => write!(f, "{}s", self.seconds),
        }
    }
}

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.text {
            Some(t) => s.serialize_str(t),
            None => s.serialize_u64(self.seconds),
        }
    }
}

impl<'de> Deserialize<'de> for Seconds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Seconds;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("seconds (30) or a duration (30s, 5m)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seconds, E> {
                Ok(Seconds {
                    seconds: v,
                    text: None,
                })
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seconds, E> {
                u64::try_from(v)
                    .map(|seconds| Seconds {
                        seconds,
                        text: None,
                    })
                    .map_err(|_| E::custom(format!("a duration cannot be negative, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seconds, E> {
                parse_duration(v)
                    .map(|seconds| Seconds {
                        seconds,
                        text: Some(v.to_string()),
                    })
                    .ok_or_else(|| {
                        E::custom(format!(
                            "{v:?} is not a duration: write seconds (30) or a duration (30s, 5m, 1h30m)"
                        ))
                    })
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Seconds {
    fn schema_name() -> Cow<'static, str> {
        "Seconds".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "description": "Seconds (30) or a duration (30s, 5m, 1h30m)."
        })
    }
}

/// The measurements of one metric in one stage of the current upgrade.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisRun {
    /// Which analysis: `background` (the whole rollout), `step-N` (canary step N), `preview`
    /// (blue-green before the switch) or `switched` (after it, while the old side is kept).
    pub scope: String,
    pub metric: String,
    /// When the run began: its `initialDelay` counts from here.
    pub started_at: Time,
    pub phase: AnalysisPhase,
    #[serde(default)]
    pub successful: i32,
    #[serde(default)]
    pub failed: i32,
    /// Inconclusive measurements and errors (Prometheus unreachable, a query it refused).
    #[serde(default)]
    pub inconclusive: i32,
    /// The latest measurements, oldest first (at most 10; the counts above keep the rest).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub measurements: Vec<Measurement>,
    /// Why it failed, or how it passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl AnalysisRun {
    pub fn taken(&self) -> i32 {
        self.successful + self.failed + self.inconclusive
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum AnalysisPhase {
    Running,
    Successful,
    Failed,
}

/// One measurement.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    pub time: Time,
    pub outcome: MeasurementOutcome,
    /// The values (`0.083`, `[0.2, 0.01]`), or the error instead of them.
    pub value: String,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum MeasurementOutcome {
    Successful,
    Failed,
    Inconclusive,
    Error,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_analysis_reads_as_argo_rollouts_users_write_it() {
        let a: Analysis = serde_json::from_value(serde_json::json!({"metrics": [
            {"name": "error-rate", "interval": "30s", "count": 5,
             "successCondition": "result < 0.01", "failureLimit": 1,
             "provider": {"prometheus": {"address": "http://prometheus.monitoring:9090",
                 "query": "sum(rate(http_requests_total{app=\"{{app}}\",code=~\"5..\"}[1m]))"}}},
            {"name": "latency", "interval": 10,
             "provider": {"prometheus": {"query": "histogram_quantile(0.99, rate(latency_bucket[1m]))"}}},
        ]}))
        .expect("an analysis");
        assert_eq!(a.metrics.len(), 2);
        let m = &a.metrics[0];
        assert_eq!(m.interval.as_ref().map(|s| s.seconds), Some(30));
        assert_eq!(m.count, Some(5));
        assert_eq!(a.metrics[1].interval.as_ref().map(|s| s.seconds), Some(10));
        assert_eq!(a.metrics[1].provider.prometheus.address, None);
        // Written back as written.
        let back = serde_json::to_value(&a).expect("serializes");
        assert_eq!(back["metrics"][0]["interval"], "30s");
        assert_eq!(back["metrics"][1]["interval"], 10);
        assert!(serde_json::from_value::<Seconds>(serde_json::json!("10x")).is_err());
        assert!(serde_json::from_value::<Seconds>(serde_json::json!(-1)).is_err());
    }
}
