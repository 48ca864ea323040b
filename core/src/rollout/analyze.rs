//! Metric analysis in the rollout: which runs the stage has, which measurements are due (the
//! executor takes them, [`due`]), what a measurement found ([`fold`], into `status.analysisRuns`),
//! and whether the stage may pass.
//!
//! Runs, by stage (each run is one metric in one scope):
//! - a canary step: `step-N` with the step's own metrics (they gate the step), and `background`
//!   with `upgradeStrategy.analysis`, measured through every step and gating the last one, so the
//!   promotion waits for it;
//! - BlueGreen: `preview` before the switch (it gates the switch) and `switched` after it, while the
//!   old side is kept (it gates the scale-down); both measure `upgradeStrategy.analysis`;
//! - a direct rollout (Rolling, Recreate): `background` once the new pods are ready (it gates
//!   Healthy).
//!
//! A run with a `count` is done after that many measurements; one without measures for as long as
//! its stage lasts (its pause, its promotion), with one success at least. A failed run fails the upgrade at once.
//! Measurements are due by the status (the last one's time and the `interval`), so a restarted Bosun
//! takes the next one when it is due: none is repeated, none forgotten.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::Role;
use super::strategy::{self, Plan, Stage};
use crate::analysis::expr::Condition;
use crate::analysis::{self, DEFAULT_INCONCLUSIVE_LIMIT, Limits, Outcome, Tally, Verdict};
use crate::model::{
    AnalysisPhase, AnalysisRun, EmptyResult, ManagedApplicationSpec, ManagedApplicationStatus,
    Measurement, MeasurementOutcome, Metric, Phase,
};

/// A metric's `interval` when it sets none.
pub const DEFAULT_INTERVAL_SECS: u64 = 30;
/// The measurements a run keeps in status (its counts keep the rest).
pub const MEASUREMENTS_CAP: usize = 10;
/// The scope of the analysis of the whole rollout.
pub const BACKGROUND: &str = "background";

/// A measurement the executor takes now: the metric's query, rendered for `role`.
#[derive(Clone, Debug, PartialEq)]
pub struct Due {
    pub scope: String,
    pub metric: Metric,
    pub role: Role,
}

/// What one measurement found: the query's values (series in the order of their labels), or why
/// there are none (Prometheus unreachable, the query refused, no address).
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    pub scope: String,
    pub metric: String,
    pub result: Result<Vec<f64>, String>,
}

/// One run of the stage: its metrics, the side they measure, and whether the stage waits for them.
struct Scope<'a> {
    name: String,
    role: Role,
    metrics: &'a [Metric],
    gate: bool,
}

fn scopes<'a>(
    spec: &'a ManagedApplicationSpec,
    status: &ManagedApplicationStatus,
) -> Vec<Scope<'a>> {
    // Paused, nothing is measured. A first deployment has nothing to roll back to, and a revision
    // healthy before (a rollback window) is not analysed again: as Argo Rollouts skips the steps
    // and analysis of both.
    if spec.paused
        || status.current_hash.is_none()
        || status
            .target_hash
            .as_deref()
            .is_some_and(|h| status.was_healthy(h))
    {
        return Vec::new();
    }
    let background = spec
        .upgrade_strategy
        .analysis
        .as_ref()
        .map_or(&[][..], |a| a.metrics.as_slice());
    let plan = strategy::plan(spec, status);
    let step = usize::try_from(status.step_index.unwrap_or(0)).unwrap_or(0);
    let checking = status.phase == Some(Phase::HealthChecking);
    let scope = |name: &str, role, metrics, gate| Scope {
        name: name.to_string(),
        role,
        metrics,
        gate,
    };
    match (strategy::stage_of(plan, step), plan) {
        (Stage::Canary { index, .. }, Plan::Canary(steps)) if checking => {
            let own = steps[index]
                .analysis
                .as_ref()
                .map_or(&[][..], |a| a.metrics.as_slice());
            vec![
                scope(&step_scope(index), Role::Canary, own, true),
                scope(
                    BACKGROUND,
                    Role::Canary,
                    background,
                    index + 1 == steps.len(),
                ),
            ]
        }
        (Stage::Preview, _) if checking => vec![scope("preview", Role::Preview, background, true)],
        (Stage::Switched, _) if status.phase == Some(Phase::Deploying) => {
            vec![scope("switched", Role::Preview, background, true)]
        }
        (Stage::Final, Plan::Direct) if checking => {
            vec![scope(BACKGROUND, Role::Stable, background, true)]
        }
        _ => Vec::new(),
    }
}

fn step_scope(index: usize) -> String {
    format!("step-{}", index + 1)
}

fn find<'s>(runs: &'s [AnalysisRun], scope: &str, metric: &str) -> Option<&'s AnalysisRun> {
    runs.iter().find(|r| r.scope == scope && r.metric == metric)
}

/// Seconds until the run's next measurement (0 or less: due).
fn due_in(run: Option<&AnalysisRun>, metric: &Metric, now: &Time) -> i64 {
    let secs = |s: Option<&crate::model::Seconds>, default: u64| {
        i64::try_from(s.map_or(default, |s| s.seconds)).unwrap_or(i64::MAX)
    };
    let (from, wait) = match run.and_then(|r| r.measurements.last()) {
        Some(m) => (
            &m.time,
            secs(metric.interval.as_ref(), DEFAULT_INTERVAL_SECS),
        ),
        None => match run {
            Some(r) => (&r.started_at, secs(metric.initial_delay.as_ref(), 0)),
            None => return secs(metric.initial_delay.as_ref(), 0),
        },
    };
    let elapsed_ms = now.0.as_millisecond() - from.0.as_millisecond();
    let left_ms = wait.saturating_mul(1000) - elapsed_ms;
    // Whole seconds, rounded up: a measurement is never taken early.
    left_ms.div_euclid(1000) + i64::from(left_ms.rem_euclid(1000) > 0)
}

/// The measurements due now, by the status as it is: what the executor queries before deciding.
pub fn due(
    spec: &ManagedApplicationSpec,
    status: &ManagedApplicationStatus,
    now: &Time,
) -> Vec<Due> {
    let mut out = Vec::new();
    for scope in scopes(spec, status) {
        for metric in scope.metrics {
            let run = find(&status.analysis_runs, &scope.name, &metric.name);
            if run.is_some_and(|r| r.phase != AnalysisPhase::Running) {
                continue;
            }
            if due_in(run, metric, now) <= 0 {
                out.push(Due {
                    scope: scope.name.clone(),
                    metric: metric.clone(),
                    role: scope.role,
                });
            }
        }
    }
    out
}

/// Where the analysis of the stage stands after this round's measurements.
#[derive(Debug, Default)]
pub(super) struct StageAnalysis {
    /// A run failed: why, naming the metric, its value, its condition and its query.
    pub failed: Option<String>,
    /// Every run the stage waits for is done (or, without a count, measured successfully at least once).
    pub satisfied: bool,
    /// Seconds until the next measurement.
    pub due_in: Option<u64>,
    /// What the stage waits for, when it is not satisfied (`error-rate 2 of 5`).
    pub waiting_for: Vec<String>,
    /// The scopes the stage waits for (done when the stage passes: [`pass`]).
    gates: Vec<String>,
}

/// Folds this round's measurements into the runs of the stage (starting the runs it has not
/// started) and says where the stage's analysis stands.
pub(super) fn fold(
    spec: &ManagedApplicationSpec,
    next: &mut ManagedApplicationStatus,
    measured: &[Measured],
    now: &Time,
) -> StageAnalysis {
    let scopes = scopes(spec, next);
    let mut out = StageAnalysis {
        satisfied: true,
        ..StageAnalysis::default()
    };
    for scope in &scopes {
        if scope.gate {
            out.gates.push(scope.name.clone());
        }
        for metric in scope.metrics {
            let i = match next
                .analysis_runs
                .iter()
                .position(|r| r.scope == scope.name && r.metric == metric.name)
            {
                Some(i) => i,
                None => {
                    next.analysis_runs.push(AnalysisRun {
                        scope: scope.name.clone(),
                        metric: metric.name.clone(),
                        started_at: now.clone(),
                        phase: AnalysisPhase::Running,
                        successful: 0,
                        failed: 0,
                        inconclusive: 0,
                        measurements: Vec::new(),
                        message: None,
                    });
                    next.analysis_runs.len() - 1
                }
            };
            let run = &mut next.analysis_runs[i];
            if run.phase == AnalysisPhase::Running
                && due_in(Some(run), metric, now) <= 0
                && let Some(m) = measured
                    .iter()
                    .find(|m| m.scope == scope.name && m.metric == metric.name)
            {
                record(run, metric, &m.result, now);
            }
            match run.phase {
                AnalysisPhase::Failed => {
                    if out.failed.is_none() {
                        out.failed = run.message.clone();
                    }
                }
                AnalysisPhase::Successful => {}
                AnalysisPhase::Running => {
                    let wait = u64::try_from(due_in(Some(run), metric, now).max(1)).unwrap_or(1);
                    out.due_in = Some(out.due_in.map_or(wait, |d| d.min(wait)));
                    let enough = metric.count.is_none() && run.successful > 0;
                    if scope.gate && !enough {
                        out.satisfied = false;
                        out.waiting_for.push(match metric.count {
                            Some(n) => {
                                format!("{} {} of {n}", metric.name, run.successful + run.failed)
                            }
                            None => format!("{} (a first successful measurement)", metric.name),
                        });
                    }
                }
            }
        }
    }
    out
}

/// The stage passes: its runs without a count, measured while it lasted, are done.
pub(super) fn pass(next: &mut ManagedApplicationStatus, a: &StageAnalysis) {
    for run in &mut next.analysis_runs {
        if run.phase == AnalysisPhase::Running && a.gates.contains(&run.scope) {
            run.phase = AnalysisPhase::Successful;
            run.message = Some(format!(
                "{} of {} measurement(s) successful while the stage lasted",
                run.successful,
                run.taken()
            ));
        }
    }
}

fn limits(metric: &Metric) -> Limits {
    let count = |v: Option<i32>, default: u32| v.map_or(default, |n| u32::try_from(n).unwrap_or(0));
    Limits {
        count: metric.count.map(|n| u32::try_from(n).unwrap_or(1)),
        failure_limit: count(metric.failure_limit, 0),
        inconclusive_limit: count(metric.inconclusive_limit, DEFAULT_INCONCLUSIVE_LIMIT),
    }
}

/// Judges one measurement and adds it to the run; the run ends when its limits say so.
fn record(run: &mut AnalysisRun, metric: &Metric, result: &Result<Vec<f64>, String>, now: &Time) {
    let parse = |c: &Option<String>| c.as_deref().map(Condition::parse).transpose();
    let outcome = match (
        parse(&metric.success_condition),
        parse(&metric.failure_condition),
    ) {
        (Ok(success), Ok(failure)) => match result {
            Ok(values) if values.is_empty() => match metric.empty_result.unwrap_or_default() {
                EmptyResult::Inconclusive => Outcome::Inconclusive,
                EmptyResult::Failed => Outcome::Failed,
                EmptyResult::Successful => Outcome::Successful,
            },
            Ok(values) => analysis::judge(success.as_ref(), failure.as_ref(), Ok(values)),
            Err(e) => Outcome::Error(e.clone()),
        },
        // `bosun validate` refuses these; a definition applied by hand still fails clearly.
        (Err(e), _) => Outcome::Error(format!("successCondition: {e}")),
        (_, Err(e)) => Outcome::Error(format!("failureCondition: {e}")),
    };
    let (value, kind) = match (&outcome, result) {
        (Outcome::Error(e), _) => (e.clone(), MeasurementOutcome::Error),
        (o, Ok(values)) => (
            analysis::show_values(values),
            match o {
                Outcome::Successful => MeasurementOutcome::Successful,
                Outcome::Failed => MeasurementOutcome::Failed,
                _ => MeasurementOutcome::Inconclusive,
            },
        ),
        (_, Err(e)) => (e.clone(), MeasurementOutcome::Error),
    };
    match kind {
        MeasurementOutcome::Successful => run.successful += 1,
        MeasurementOutcome::Failed => run.failed += 1,
        MeasurementOutcome::Inconclusive | MeasurementOutcome::Error => run.inconclusive += 1,
    }
    let measurement = Measurement {
        time: now.clone(),
        outcome: kind,
        value: value.clone(),
    };
    run.measurements.push(measurement);
    if run.measurements.len() > MEASUREMENTS_CAP {
        let extra = run.measurements.len() - MEASUREMENTS_CAP;
        run.measurements.drain(..extra);
    }
    let tally = Tally {
        taken: u32::try_from(run.taken()).unwrap_or(0),
        failed: u32::try_from(run.failed).unwrap_or(0),
        inconclusive: u32::try_from(run.inconclusive).unwrap_or(0),
        last_error: match &outcome {
            Outcome::Error(e) => Some(e.clone()),
            _ => None,
        },
    };
    match analysis::verdict(&tally, limits(metric)) {
        Verdict::Running => {}
        Verdict::Passed => {
            run.phase = AnalysisPhase::Successful;
            run.message = Some(format!(
                "{} of {} measurement(s) successful",
                run.successful,
                run.taken()
            ));
        }
        Verdict::Failed(why) => {
            run.phase = AnalysisPhase::Failed;
            let conclusive = matches!(
                kind,
                MeasurementOutcome::Successful | MeasurementOutcome::Failed
            );
            run.message = Some(failure_message(metric, conclusive.then_some(&*value), &why));
        }
    }
}

/// `error-rate = 0.083, needs result < 0.01 (1 failed measurement(s), more than the 0 allowed);
/// query: …`
/// or, when the last measurement had no value, `error-rate: 4 inconclusive measurement(s), … (last:
/// …); query: …`.
fn failure_message(metric: &Metric, value: Option<&str>, why: &str) -> String {
    let condition = match (&metric.success_condition, &metric.failure_condition) {
        (Some(s), _) => format!(", needs {s}"),
        (None, Some(f)) => format!(", fails when {f}"),
        (None, None) => String::new(),
    };
    let query = &metric.provider.prometheus.query;
    match value {
        Some(value) => format!(
            "metric {} = {value}{condition} ({why}); query: {query}",
            metric.name
        ),
        None => format!("metric {}: {why}; query: {query}", metric.name),
    }
}
