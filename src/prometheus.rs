//! Prometheus's HTTP query API, as metric analysis reads it: one instant query, its values. Plain
//! `http://` through hyper's client (a Prometheus behind TLS is not supported yet: the error says
//! so). The values come back in the order of their series' label sets, as `result[i]` in a
//! condition counts them (`bosun_core::analysis::expr`).

use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::http_client::error_chain;

/// The most of an answer read: a query that returns more series than this holds is refused.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// Asks the Prometheus at `base` (`http://host:port`, with any path prefix) for `promql` now.
///
/// # Errors
/// In words, for the measurement's record: the URL, the connection, a timeout, an answer that is not
/// Prometheus's, or the error Prometheus gave (`bad_data: parse error …`).
pub async fn query(base: &str, promql: &str, timeout: Duration) -> Result<Vec<f64>, String> {
    let base = base.trim_end_matches('/');
    if !base.starts_with("http://") {
        return Err(format!(
            "{base:?}: only http:// Prometheus addresses are supported (put a TLS one behind a \
             local proxy)"
        ));
    }
    let url = format!("{base}/api/v1/query?query={}", encode(promql));
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{base:?} is not a URL: {e}"))?;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let answer = tokio::time::timeout(timeout, async {
        let response = client
            .get(uri)
            .await
            .map_err(|e| format!("Prometheus at {base}: {}", error_chain(&e)))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| format!("Prometheus at {base}: reading the answer: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    })
    .await
    .map_err(|_| format!("Prometheus at {base}: no answer within {timeout:?}"))??;
    let (status, body) = answer;
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
        format!("Prometheus at {base}: HTTP {status}, not an answer of its query API")
    })?;
    values(&json).map_err(|e| format!("Prometheus at {base}: {e}"))
}

/// The values of a query API answer (`status: success`), or its error.
pub fn values(answer: &serde_json::Value) -> Result<Vec<f64>, String> {
    if answer["status"] != "success" {
        return Err(format!(
            "{}: {}",
            answer["errorType"].as_str().unwrap_or("error"),
            answer["error"].as_str().unwrap_or("no reason given")
        ));
    }
    let data = &answer["data"];
    let number = |v: &serde_json::Value| -> Result<f64, String> {
        v[1].as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("a sample that is no number: {v}"))
    };
    match data["resultType"].as_str() {
        Some("scalar") => Ok(vec![number(&data["result"])?]),
        Some("vector") => {
            let mut series = Vec::new();
            for s in data["result"].as_array().into_iter().flatten() {
                series.push((label_set(&s["metric"]), number(&s["value"])?));
            }
            series.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(series.into_iter().map(|(_, v)| v).collect())
        }
        other => Err(format!(
            "the query returned a {} (write an instant vector or a scalar)",
            other.unwrap_or("nothing")
        )),
    }
}

/// `{a="1",b="2"}` with the labels in name order: the order of series.
fn label_set(metric: &serde_json::Value) -> String {
    let mut labels: Vec<(String, String)> = metric
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    labels.sort();
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Percent-encodes a query string value (RFC 3986 unreserved characters kept).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char);
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_become_values_in_label_order_and_errors_say_why() {
        let vector = json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"role": "stable"}, "value": [1.0, "0"]},
            {"metric": {"role": "canary"}, "value": [1.0, "0.2"]},
        ]}});
        assert_eq!(values(&vector), Ok(vec![0.2, 0.0]), "canary < stable");
        let scalar =
            json!({"status": "success", "data": {"resultType": "scalar", "result": [1.0, "NaN"]}});
        assert!(values(&scalar).expect("a scalar")[0].is_nan());
        let error = json!({"status": "error", "errorType": "bad_data", "error": "parse error"});
        assert_eq!(values(&error), Err("bad_data: parse error".into()));
        let matrix = json!({"status": "success", "data": {"resultType": "matrix", "result": []}});
        assert!(
            values(&matrix)
                .expect_err("a range")
                .contains("instant vector")
        );
        assert_eq!(encode("a b{c=\"d\"}"), "a%20b%7Bc%3D%22d%22%7D");
    }
}
