//! Benchmark: the dashboard's pages with 1,000 apps (issue [N]). Pure: the view-model and the HTML of
//! the overview and of one app's page, built from 1,000 ManagedApplications (a third mid-canary, a
//! third failed, a third healthy, each with a full history of 50 transitions) and 3,000 pods, as the
//! watches' stores would hold them. Prints the median and worst render times and the page sizes, and
//! checks the pages stay correct at that size (every app listed, the filter, the failures shown).
//!
//! Knobs: `BOSUN_BENCH_APPS` (default 1000), `BOSUN_BENCH_ROUNDS` (default 30).

use std::time::{Duration, Instant};

use bosun::dashboard::{html, view};
use bosun_core::model::ManagedApplication;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn app(i: usize) -> ManagedApplication {
    let ns = format!("team-{}", i % 20);
    let history: Vec<_> = (0..50)
        .map(|h| {
            json!({"phase": "HealthChecking", "time": "2026-12-01T10:00:00Z", "step": 0, "weight": 25,
                   "message": format!("step 1 at 25 %: round {h} <passed> & \"ok\"")})
        })
        .collect();
    let status = match i % 3 {
        0 => json!({"phase": "HealthChecking", "currentVersion": "1.0.0", "targetVersion": "1.1.0",
                     "stepIndex": 0, "canaryWeight": 25, "history": history,
                     "currentHash": "0123456789ab", "targetHash": "ba9876543210",
                     "targetRevision": "0123456789abcdef0123456789abcdef01234567"}),
        1 => json!({"phase": "Failed", "currentVersion": "1.0.0", "targetVersion": "1.1.0-broken",
                     "history": history, "message": "rolled back"}),
        _ => json!({"phase": "Healthy", "currentVersion": "1.0.0", "targetVersion": "1.0.0",
                     "history": history}),
    };
    serde_json::from_value(json!({
        "apiVersion": "apps.example.com/v1alpha1", "kind": "ManagedApplication",
        "metadata": {"name": format!("app-{i}"), "namespace": ns, "labels": {"bosun.dev/source": "apps"}},
        "spec": {"version": "1.1.0", "upgradeStrategy": {"type": "Canary", "canary": {"steps": [
            {"weight": 25, "pause": "untilPromoted"}, {"weight": 100}]}}},
        "status": status,
    }))
    .expect("a ManagedApplication")
}

fn pod(i: usize, n: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("app-{i}-{n}"), "namespace": format!("team-{}", i % 20),
                     "labels": {"app": format!("app-{i}"), "bosun.dev/role": if n == 0 { "canary" } else { "stable" },
                                "bosun.dev/version": "1.0.0"}},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .expect("a pod")
}

/// Runs `f` `rounds` times; the median and the worst time.
fn time<T>(rounds: usize, mut f: impl FnMut() -> T) -> (Duration, Duration, T) {
    let mut times = Vec::with_capacity(rounds);
    let mut last = None;
    for _ in 0..rounds {
        let start = Instant::now();
        last = Some(f());
        times.push(start.elapsed());
    }
    times.sort();
    (
        times[times.len() / 2],
        times[times.len() - 1],
        last.expect("at least one round"),
    )
}

fn main() {
    let n = env_num("BOSUN_BENCH_APPS", 1000);
    let rounds = env_num("BOSUN_BENCH_ROUNDS", 30).max(1);
    let apps: Vec<ManagedApplication> = (0..n).map(app).collect();
    let pods: Vec<Pod> = (0..n)
        .flat_map(|i| (0..3).map(move |p| pod(i, p)))
        .collect();
    let links = view::Links {
        repos: [(
            "apps".to_string(),
            "https://git.example.com/acme/apps".to_string(),
        )]
        .into(),
        write_back: true,
    };

    let (median, worst, page) = time(rounds, || {
        let rows = apps.iter().map(view::app_row).collect();
        html::overview(&view::overview(rows, view::Filter::default()))
    });
    let listed = page.matches("<tr class=").count();
    let failures = page.matches("<p class=\"failure\">").count();
    assert_eq!(listed, n, "every app is listed");
    assert_eq!(
        failures,
        (0..n).filter(|i| i % 3 == 1).count(),
        "every failure is shown"
    );
    println!(
        "overview, {n} apps: median {:.1} ms, worst {:.1} ms, {} KiB of HTML",
        median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        page.len() / 1024
    );

    let filter = view::Filter {
        namespace: "team-3".into(),
        phase: "Failed".into(),
    };
    let (median, worst, page) = time(rounds, || {
        let rows = apps.iter().map(view::app_row).collect();
        html::overview(&view::overview(rows, filter.clone()))
    });
    let kept = apps
        .iter()
        .map(view::app_row)
        .filter(|r| filter.keeps(r))
        .count();
    assert_eq!(
        page.matches("<tr class=").count(),
        kept,
        "the filter keeps what it says"
    );
    println!(
        "overview filtered (namespace and phase, {kept} kept): median {:.1} ms, worst {:.1} ms",
        median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );

    let target = &apps[n / 2];
    let (median, worst, page) = time(rounds, || {
        let views = view::app_pods(target, pods.iter());
        html::detail(&view::app_detail(target, views, &links))
    });
    assert_eq!(
        page.matches("<td data-label=\"Side\">").count(),
        3,
        "its three pods"
    );
    assert!(!page.contains("<passed>"), "messages are escaped");
    println!(
        "one app's page among {n} apps and {} pods: median {:.2} ms, worst {:.2} ms, {} KiB of HTML",
        pods.len(),
        median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        page.len() / 1024
    );
}
