//! Metric analysis in the rollout: per step, in the background, around a blue-green switch, and
//! after a direct rollout. The World answers each measurement with what `metric_values` says for
//! the version (or `version/scope`), `[0]` by default; its clock jumps by each requeue.

use super::*;
use crate::model::{
    Analysis, AnalysisPhase, AnalysisRun, Metric, MetricProvider, PrometheusMetric, Seconds,
};

const QUERY: &str =
    r#"sum(rate(http_requests_total{app="{{app}}",role="{{role}}",code="500"}[1m]))"#;

/// `error-rate`, judged `result < 0.01`, every 30 s.
fn error_rate(count: Option<i32>) -> Metric {
    Metric {
        name: "error-rate".into(),
        provider: MetricProvider {
            prometheus: PrometheusMetric {
                address: None,
                query: QUERY.into(),
            },
        },
        interval: Some(Seconds {
            seconds: 30,
            text: Some("30s".into()),
        }),
        initial_delay: None,
        count,
        success_condition: Some("result < 0.01".into()),
        failure_condition: None,
        failure_limit: None,
        inconclusive_limit: None,
        empty_result: None,
    }
}

fn analysis(metrics: Vec<Metric>) -> Option<Analysis> {
    Some(Analysis { metrics })
}

/// Three canary steps (25 %, 50 %, 100 %), the second with its own analysis.
fn canary_analysed(version: &str, step_metric: Metric) -> ManagedApplicationSpec {
    let mut s = canary(
        version,
        &[(25, None), (50, Some(Pause::Seconds(60))), (100, None)],
    );
    if let Some(c) = s.upgrade_strategy.canary.as_mut() {
        c.steps[1].analysis = analysis(vec![step_metric]);
    }
    s
}

fn run<'w>(w: &'w World, scope: &str) -> &'w AnalysisRun {
    w.status
        .analysis_runs
        .iter()
        .find(|r| r.scope == scope)
        .unwrap_or_else(|| panic!("no {scope} run in {:?}", w.status.analysis_runs))
}

fn failure(w: &World) -> String {
    w.status
        .history
        .iter()
        .find(|h| h.phase == Phase::Failed)
        .map(|h| h.message.clone())
        .expect("a Failed transition")
}

#[test]
fn a_good_canary_passes_the_analysis_of_its_step_measured_count_times_an_interval_apart() {
    let mut w = World::deployed(&canary_analysed("v1", error_rate(Some(3))));
    let v2 = canary_analysed("v2", error_rate(Some(3)));
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Healthy), "{:?}", w.status);
    let step = run(&w, "step-2");
    assert_eq!(step.phase, AnalysisPhase::Successful);
    assert_eq!((step.successful, step.taken()), (3, 3));
    assert_eq!(
        step.message.as_deref(),
        Some("3 of 3 measurement(s) successful")
    );
    // Only at the step that has it, on the canary, 30 s apart; never twice at once.
    let times: Vec<i64> = w.measured.iter().map(|m| m.0).collect();
    assert!(
        w.measured
            .iter()
            .all(|m| m.1 == "step-2" && m.3 == Role::Canary)
    );
    assert_eq!(times.len(), 3, "{:?}", w.measured);
    assert!(times.windows(2).all(|t| t[1] - t[0] >= 30), "{times:?}");
}

#[test]
fn an_erroring_canary_is_rolled_back_at_the_step_that_checks_it_and_the_reason_says_why() {
    let mut w = World::deployed(&canary_analysed("v1", error_rate(Some(3))));
    w.metric_values.insert("v2".into(), Ok(vec![0.083_333]));
    let v2 = canary_analysed("v2", error_rate(Some(3)));
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert_eq!(w.stable(), Some(("v1", 4)), "the stable side runs v1 again");
    assert!(w.observed.canary.is_none());
    let why = failure(&w);
    assert!(
        why.contains("analysis of v2 failed at step 2: metric error-rate = 0.083, needs result < 0.01 (1 failed measurement(s), more than the 0 allowed); query: sum(rate("),
        "{why}"
    );
    assert!(
        w.reasons.iter().any(|r| r == "AnalysisFailed"),
        "{:?}",
        w.reasons
    );
    assert_eq!(run(&w, "step-2").phase, AnalysisPhase::Failed);
}

#[test]
fn prometheus_unreachable_is_inconclusive_first_and_fails_the_upgrade_after_the_limit() {
    let mut metric = error_rate(Some(5));
    metric.inconclusive_limit = Some(2);
    let mut w = World::deployed(&canary_analysed("v1", metric.clone()));
    let gone = "Prometheus at http://127.0.0.1:9/ unreachable: connection refused";
    w.metric_values.insert("v2".into(), Err(gone.into()));
    let v2 = canary_analysed("v2", metric);
    // Two inconclusive measurements are waited out: the step holds.
    while w.measured.len() < 2 {
        w.step(&v2);
    }
    assert_eq!(w.status.phase, Some(Phase::HealthChecking));
    assert_eq!(w.status.step_index, Some(1));
    let step = run(&w, "step-2");
    assert_eq!((step.phase, step.inconclusive), (AnalysisPhase::Running, 2));
    assert_eq!(
        step.measurements[1].value, gone,
        "the error is kept as the measurement"
    );
    // The third fails it, and says what was last seen.
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert_eq!(w.measured.len(), 3);
    let why = failure(&w);
    assert!(
        why.contains(&format!("metric error-rate: 3 inconclusive measurement(s), more than the 2 allowed (last: {gone})")),
        "{why}"
    );
}

#[test]
fn a_restart_mid_analysis_neither_repeats_nor_forgets_a_measurement() {
    let mut w = World::deployed(&canary_analysed("v1", error_rate(Some(3))));
    let v2 = canary_analysed("v2", error_rate(Some(3)));
    while w.measured.is_empty() {
        w.step(&v2);
    }
    let first = w.measured[0].0;
    // A restarted Bosun has only the status: nothing is due again before the interval.
    let status = w.status.clone();
    for secs in [0, 10, 29] {
        assert!(
            analyze::due(&v2, &status, &at(first + secs)).is_empty(),
            "{secs} s after the first measurement"
        );
    }
    let due = analyze::due(&v2, &status, &at(first + 30));
    assert_eq!(due.len(), 1);
    assert_eq!(
        (due[0].scope.as_str(), due[0].role),
        ("step-2", Role::Canary)
    );
    // And the count goes on from where it was.
    w.settle(&v2);
    assert_eq!(run(&w, "step-2").taken(), 3);
    assert_eq!(w.measured.len(), 3);
}

#[test]
fn a_metric_without_a_count_is_measured_through_the_pause_and_a_failure_ends_it_early() {
    let mut w = World::deployed(&canary_analysed("v1", error_rate(None)));
    let v2 = canary_analysed("v2", error_rate(None));
    // Good at first: measured every 30 s of the 60 s pause.
    while w.measured.len() < 2 {
        w.step(&v2);
    }
    assert_eq!(w.status.step_index, Some(1));
    // Then the canary starts erroring: it fails before the pause ends.
    w.metric_values.insert("v2".into(), Ok(vec![0.5]));
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert!(failure(&w).contains("error-rate = 0.5"), "{}", failure(&w));

    // A good one passes when its pause ends, measured each interval of it.
    let mut w = World::deployed(&canary_analysed("v1", error_rate(None)));
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    let step = run(&w, "step-2");
    assert_eq!(step.phase, AnalysisPhase::Successful);
    assert!(step.taken() >= 2, "{step:?}");
}

#[test]
fn background_analysis_runs_through_every_step_and_holds_the_promotion_until_it_passes() {
    let with_background = |version: &str| {
        let mut s = canary(version, &[(25, None), (50, None)]);
        s.upgrade_strategy.analysis = analysis(vec![error_rate(Some(3))]);
        s
    };
    let mut w = World::deployed(&with_background("v1"));
    let v2 = with_background("v2");
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    let background = run(&w, analyze::BACKGROUND);
    assert_eq!(
        (background.phase, background.taken()),
        (AnalysisPhase::Successful, 3)
    );
    // The steps have no pause: the first passes at once, the last waits for the analysis.
    let steps: Vec<_> = w.measured.iter().map(|m| w_step_of(m.0, &w)).collect();
    assert!(
        steps.contains(&Some(1)),
        "measured at the last step: {steps:?}"
    );

    // An erroring canary fails at the first step already.
    let mut w = World::deployed(&with_background("v1"));
    w.metric_values.insert("v2".into(), Ok(vec![0.2]));
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Failed));
    assert!(failure(&w).contains("failed at step 1"), "{}", failure(&w));
}

/// The step the upgrade was at, at `time` (from its history).
fn w_step_of(time: i64, w: &World) -> Option<i32> {
    w.status
        .history
        .iter()
        .rfind(|h| h.time.0.as_second() <= at(time).0.as_second() && h.step.is_some())
        .and_then(|h| h.step)
}

#[test]
fn blue_green_is_analysed_on_the_preview_before_the_switch_and_after_it() {
    let analysed = |version: &str| {
        let mut s = blue_green(version, Some(true));
        s.upgrade_strategy.analysis = analysis(vec![error_rate(Some(2))]);
        s
    };
    let mut w = World::deployed(&analysed("v1"));
    let v2 = analysed("v2");
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Healthy), "{:?}", w.status);
    assert_eq!(run(&w, "preview").phase, AnalysisPhase::Successful);
    assert_eq!(run(&w, "switched").phase, AnalysisPhase::Successful);
    assert!(w.measured.iter().all(|m| m.3 == Role::Preview));

    // Good on the preview, erroring once it serves: switched back to v1.
    let mut w = World::deployed(&analysed("v1"));
    w.metric_values.insert("v2/switched".into(), Ok(vec![0.3]));
    w.settle(&v2);
    assert_eq!(w.status.phase, Some(Phase::Failed));
    let why = failure(&w);
    assert!(why.contains("failed after the switch"), "{why}");
    assert_eq!(
        w.served.as_deref(),
        Some("v1"),
        "the active Service is back on v1"
    );
}

#[test]
fn a_direct_rollout_is_analysed_once_its_pods_are_ready_and_a_revert_is_not_analysed_again() {
    let analysed = |version: &str| {
        let mut s = spec(version);
        s.upgrade_strategy.analysis = analysis(vec![error_rate(Some(2))]);
        s
    };
    let mut w = World::deployed(&analysed("v1"));
    w.measured.clear();
    w.settle(&analysed("v2"));
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert!(w.measured.iter().all(|m| m.3 == Role::Stable));
    assert_eq!(w.measured.len(), 2);
    // Back to v1, healthy before: rolled out without analysis (a rollback window).
    w.measured.clear();
    w.settle(&analysed("v1"));
    assert_eq!(w.status.phase, Some(Phase::Healthy));
    assert!(w.measured.is_empty(), "{:?}", w.measured);
}

#[test]
fn paused_nothing_is_measured() {
    let mut w = World::deployed(&canary_analysed("v1", error_rate(None)));
    let v2 = canary_analysed("v2", error_rate(None));
    while w.measured.is_empty() {
        w.step(&v2);
    }
    let mut paused = v2.clone();
    paused.paused = true;
    let before = w.measured.len();
    for _ in 0..5 {
        w.step(&paused);
        w.now += 60;
    }
    assert_eq!(w.measured.len(), before);
}
