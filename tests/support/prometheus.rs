//! A real Prometheus (Debian's package, `scripts/prometheus install`) for a test: it scrapes every
//! second what the test lists, static targets or pods written to a file-based service discovery file
//! as the test finds them, and answers instant queries.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::PathBuf;
use std::process::Command;

use super::process::{Process, free_port, http_get, local};

/// One Prometheus server, stopped when dropped.
pub struct Prometheus {
    pub port: u16,
    targets: PathBuf,
    _process: Process,
    _data: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus scraping `static_targets` (`host:port`, job `static`) and whatever
    /// [`Prometheus::set_pods`] lists (job `pods`), every second.
    pub fn start(static_targets: &[String]) -> Prometheus {
        let bin = std::env::var("BOSUN_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
        let data = tempfile::tempdir().expect("prometheus data");
        let config = data.path().join("prometheus.yml");
        let targets = data.path().join("pods.json");
        std::fs::write(&targets, "[]").expect("an empty target list");
        let statics: Vec<String> = static_targets.iter().map(|t| format!("'{t}'")).collect();
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: static\n    static_configs:\n      - targets: [{}]\n  - job_name: pods\n    file_sd_configs:\n      - files: ['{}']\n        refresh_interval: 1s\n",
                statics.join(", "),
                targets.display()
            ),
        )
        .expect("config");
        let port = free_port();
        let mut command = Command::new(&bin);
        command
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                data.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let process = Process::spawn(
            command,
            &format!("{bin} (run `scripts/prometheus install`)"),
        );
        Prometheus {
            port,
            targets,
            _process: process,
            _data: data,
        }
    }

    /// The pods to scrape: `address` (`ip:port`) and their labels. Written whole each time (to a
    /// temporary file renamed over the list, so Prometheus never reads half of it).
    pub fn set_pods(&self, pods: &[(String, Vec<(&str, String)>)]) {
        let groups: Vec<serde_json::Value> = pods
            .iter()
            .map(|(address, labels)| {
                let labels: serde_json::Map<String, serde_json::Value> = labels
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), serde_json::Value::String(v.clone())))
                    .collect();
                serde_json::json!({"targets": [address], "labels": labels})
            })
            .collect();
        let tmp = self.targets.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec(&groups).expect("json")).expect("write targets");
        std::fs::rename(&tmp, &self.targets).expect("replace targets");
    }

    /// The values of an instant query, series in the order of their label sets; `None` when
    /// Prometheus does not answer (yet) or answers an error.
    pub fn query(&self, promql: &str) -> Option<Vec<f64>> {
        let encoded: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (_, body) = http_get(local(self.port), &format!("/api/v1/query?query={encoded}"))?;
        // Chunked transfer is possible: find the JSON object in the body.
        let json_start = body.find('{')?;
        let json_end = body.rfind('}')?;
        let v: serde_json::Value = serde_json::from_str(&body[json_start..=json_end]).ok()?;
        // Read as Bosun reads its answers.
        bosun::prometheus::values(&v).ok()
    }

    /// The value of an instant query that has exactly one sample.
    pub fn value(&self, promql: &str) -> Option<f64> {
        match self.query(promql)?.as_slice() {
            [v] => Some(*v),
            _ => None,
        }
    }
}
