//! A repository of 2,000 applications in which one file changes: how long parsing, validation and the
//! sync plan take, how many applies the plan makes, and the process's peak memory.
//!
//! Run: `cargo bench --bench sync_plan`. Prints figures; asserts nothing about time.

use std::collections::BTreeSet;
use std::time::Instant;

use bosun_core::sync::{self, Live, SyncAction, SyncPolicy};
use bosun_core::validate::validate_files;
use bosun_core::yaml::Limits;

const APPS: usize = 2000;
const ROUNDS: usize = 20;

fn app(i: usize, version: &str) -> String {
    format!(
        "# app {i}\napiVersion: apps.example.com/v1alpha1\nkind: ManagedApplication\nmetadata:\n  name: app-{i}\n  namespace: team-{}\n  labels: {{team: t{}}}\nspec:\n  version: {version}\n  replicas: 3\n  ports:\n    - {{name: http, containerPort: 8080}}\n  upgradeStrategy:\n    type: Canary\n    healthCheck:\n      httpGet: {{path: /health, port: 8080}}\n      periodSeconds: 10\n    canary:\n      steps:\n        - {{weight: 10, pause: 60}}\n        - {{weight: 50, pause: 5m}}\n        - {{weight: 100}}\n",
        i % 20,
        i % 7
    )
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

fn main() {
    let before: Vec<(String, String)> = (0..APPS)
        .map(|i| (format!("apps/app-{i}.yaml"), app(i, "v1.0.0")))
        .collect();
    let mut after = before.clone();
    after[1234].1 = app(1234, "v1.1.0");

    // What the cluster holds after the previous revision.
    let report = validate_files(
        before.iter().map(|(p, t)| (p.as_str(), t.as_str())),
        &Limits::default(),
    );
    let live: Vec<Live> = report
        .definitions
        .iter()
        .map(|d| sync::desired_from(d, "apps", "rev1", "default"))
        .map(|d| Live {
            spec: d.object.get("spec").cloned(),
            key: d.key,
            source_path: Some(d.source_path),
            spec_hash: Some(d.spec_hash),
            revision: Some("rev1".to_string()),
        })
        .collect();

    let mut times = Vec::new();
    let mut applies = 0;
    for _ in 0..ROUNDS {
        let start = Instant::now();
        let report = validate_files(
            after.iter().map(|(p, t)| (p.as_str(), t.as_str())),
            &Limits::default(),
        );
        let invalid: BTreeSet<String> = report.findings.iter().map(|f| f.file.clone()).collect();
        let desired: Vec<_> = report
            .definitions
            .iter()
            .map(|d| sync::desired_from(d, "apps", "rev2", "default"))
            .collect();
        let plan = sync::plan_sync(
            &desired,
            &invalid,
            &live,
            SyncPolicy {
                prune: true,
                allow_empty: false,
            },
        );
        times.push(start.elapsed());
        applies = plan
            .actions
            .iter()
            .filter(|a| matches!(a, SyncAction::Apply { .. }))
            .count();
        assert_eq!(plan.unchanged, APPS - 1);
    }
    times.sort();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
    println!("sync plan, {APPS} applications, one file changed ({ROUNDS} rounds):");
    println!(
        "  parse + validate + diff: median {:.1} ms, min {:.1} ms, max {:.1} ms",
        ms(times[ROUNDS / 2]),
        ms(times[0]),
        ms(times[ROUNDS - 1])
    );
    println!(
        "  applies planned: {applies}; unchanged: {} (zero writes)",
        APPS - 1
    );
    println!(
        "  peak RSS of the process: {:.1} MiB",
        peak_rss_kib() as f64 / 1024.0
    );
}
