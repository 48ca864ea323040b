//! Active HTTP health checks, the verdict part (pure): when the next probe round is due, and how the
//! outcomes of the rounds fold into Healthy, Unhealthy or not yet decided. The executor (`bosun`'s
//! engine) makes the HTTP requests; [`super::app::decide`] folds their outcomes into `status.healthCheck`.
//!
//! Rules, as the kubelet counts probes:
//! - a stage is checked from `since` (the moment its pods were all ready) plus `initialDelaySeconds`,
//!   then every `periodSeconds`; one round probes every ready pod of the new side;
//! - a pod whose consecutive failures reach `failureThreshold` makes the stage Unhealthy;
//! - `successThreshold` consecutive rounds in which every pod passed make it Healthy (a pod that failed
//!   starts its count over, and so does the round);
//! - a stage that is Healthy but waits (a canary step's pause, a step or preview waiting for
//!   `bosun promote`) goes on being probed every period: a failing round sets its passes back to 0, so
//!   it waits until it passes `successThreshold` rounds again, and a pod that fails
//!   `failureThreshold` rounds in a row makes it Unhealthy and the upgrade rolls back, pause or not
//!   (as Argo Rollouts' background analysis does). Only an Unhealthy stage is not probed again. The
//!   passing rounds of a Healthy stage are not recorded (the decision keeps the count as it was), so
//!   a waiting stage costs no status write until something fails.
//! - a pod of the stage that is not ready (and not terminating) fails its round with "not ready": a
//!   pod that crashes during a pause is counted, not skipped.
//!
//! The counters live in the app's status (`status.healthCheck`: `since`, `lastProbeTime`, `passes`,
//! `failingPods`), not in memory: a restarted Bosun resumes the count where it was, neither passing a
//! stage on fewer successes nor failing it on fewer failures than configured.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::model::{HealthCheck, HealthCheckStatus, PodFailures};

/// The numbers of a health check, defaults filled in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    pub initial_delay: i64,
    pub period: i64,
    pub timeout: i64,
    pub failure: i32,
    pub success: i32,
}

impl Thresholds {
    pub fn of(h: &HealthCheck) -> Thresholds {
        Thresholds {
            initial_delay: i64::from(h.initial_delay_seconds.unwrap_or(0).max(0)),
            period: i64::from(h.period_seconds.unwrap_or(10).max(1)),
            timeout: i64::from(h.timeout_seconds.unwrap_or(1).max(1)),
            failure: h.failure_threshold.unwrap_or(3).max(1),
            success: h.success_threshold.unwrap_or(1).max(1),
        }
    }
}

/// The outcome of one HTTP probe of one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub pod: String,
    /// `Err` says why it failed: `HTTP 500`, `connection refused`, `timed out after 1 s`.
    pub outcome: Result<(), String>,
}

/// What the checks of a stage say so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Healthy,
    Unhealthy {
        pod: String,
        error: String,
        failures: i32,
    },
    Undecided,
}

/// A fresh count for a stage whose pods became ready at `since`.
pub fn start(since: &Time) -> HealthCheckStatus {
    HealthCheckStatus {
        since: since.clone(),
        last_probe_time: None,
        passes: 0,
        failing_pods: Vec::new(),
    }
}

/// Seconds until the next round is due: 0 means now; `None` means no more rounds (Unhealthy). A
/// Healthy stage still gets rounds: it is watched for as long as it waits.
pub fn due_in(t: &Thresholds, state: &HealthCheckStatus, now: &Time) -> Option<u64> {
    if matches!(verdict(t, state), Verdict::Unhealthy { .. }) {
        return None;
    }
    let now = now.0.as_second();
    let first = state.since.0.as_second() + t.initial_delay;
    let next = match &state.last_probe_time {
        None => first,
        Some(last) => (last.0.as_second() + t.period).max(first),
    };
    Some(u64::try_from(next - now).unwrap_or(0))
}

/// Folds one round of probes (every ready pod of the stage) into the count. An empty round (no ready
/// pod to probe) changes nothing.
pub fn fold(state: &mut HealthCheckStatus, probes: &[Probe], now: &Time) {
    if probes.is_empty() {
        return;
    }
    state.last_probe_time = Some(now.clone());
    let mut failing = Vec::new();
    for p in probes {
        if let Err(error) = &p.outcome {
            let before = state
                .failing_pods
                .iter()
                .find(|f| f.pod == p.pod)
                .map_or(0, |f| f.failures);
            failing.push(PodFailures {
                pod: p.pod.clone(),
                failures: before + 1,
                last_error: error.clone(),
            });
        }
    }
    state.passes = if failing.is_empty() {
        state.passes + 1
    } else {
        0
    };
    state.failing_pods = failing;
}

/// The verdict of the count so far.
pub fn verdict(t: &Thresholds, state: &HealthCheckStatus) -> Verdict {
    if let Some(f) = state
        .failing_pods
        .iter()
        .filter(|f| f.failures >= t.failure)
        .max_by_key(|f| f.failures)
    {
        return Verdict::Unhealthy {
            pod: f.pod.clone(),
            error: f.last_error.clone(),
            failures: f.failures,
        };
    }
    if state.passes >= t.success {
        Verdict::Healthy
    } else {
        Verdict::Undecided
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + secs).expect("valid time"))
    }

    fn thresholds(initial_delay: i64, period: i64, failure: i32, success: i32) -> Thresholds {
        Thresholds {
            initial_delay,
            period,
            timeout: 1,
            failure,
            success,
        }
    }

    fn ok(pod: &str) -> Probe {
        Probe {
            pod: pod.into(),
            outcome: Ok(()),
        }
    }

    fn bad(pod: &str) -> Probe {
        Probe {
            pod: pod.into(),
            outcome: Err("HTTP 500".into()),
        }
    }

    /// One table row: name, thresholds, rounds of probes, the verdict after each round.
    type Case = (&'static str, Thresholds, Vec<Vec<Probe>>, Vec<Verdict>);

    /// Runs rounds (one per entry) and returns the verdict after each.
    fn rounds(t: &Thresholds, rounds: &[Vec<Probe>]) -> Vec<Verdict> {
        let mut state = start(&at(0));
        rounds
            .iter()
            .enumerate()
            .map(|(i, r)| {
                fold(&mut state, r, &at(i as i64 * 10));
                verdict(t, &state)
            })
            .collect()
    }

    #[test]
    fn verdicts_follow_the_thresholds() {
        let h = Verdict::Healthy;
        let u = Verdict::Undecided;
        let unhealthy = |pod: &str, failures| Verdict::Unhealthy {
            pod: pod.into(),
            error: "HTTP 500".into(),
            failures,
        };
        let cases: Vec<Case> = vec![
            (
                "one success is enough by default",
                thresholds(0, 10, 3, 1),
                vec![vec![ok("a"), ok("b")]],
                vec![h.clone()],
            ),
            (
                "every pod must pass in the same round",
                thresholds(0, 10, 3, 1),
                vec![vec![ok("a"), bad("b")], vec![ok("a"), ok("b")]],
                vec![u.clone(), h.clone()],
            ),
            (
                "failures below the threshold leave it undecided",
                thresholds(0, 10, 3, 2),
                vec![vec![bad("a")], vec![bad("a")]],
                vec![u.clone(), u.clone()],
            ),
            (
                "consecutive failures of one pod reach the threshold",
                thresholds(0, 10, 3, 1),
                vec![
                    vec![bad("a"), ok("b")],
                    vec![bad("a"), ok("b")],
                    vec![bad("a"), ok("b")],
                ],
                vec![u.clone(), u.clone(), unhealthy("a", 3)],
            ),
            (
                "failures spread over pods are not consecutive for any pod",
                thresholds(0, 10, 2, 3),
                vec![
                    vec![bad("a"), ok("b")],
                    vec![ok("a"), bad("b")],
                    vec![bad("a"), ok("b")],
                ],
                vec![u.clone(), u.clone(), u.clone()],
            ),
            (
                "a success resets a pod's failures",
                thresholds(0, 10, 2, 3),
                vec![vec![bad("a")], vec![ok("a")], vec![bad("a")]],
                vec![u.clone(), u.clone(), u.clone()],
            ),
            (
                "a failure resets the passes",
                thresholds(0, 10, 3, 2),
                vec![vec![ok("a")], vec![bad("a")], vec![ok("a")], vec![ok("a")]],
                vec![u.clone(), u.clone(), u.clone(), h.clone()],
            ),
            (
                "an empty round changes nothing",
                thresholds(0, 10, 1, 1),
                vec![vec![], vec![ok("a")]],
                vec![u.clone(), h.clone()],
            ),
        ];
        for (name, t, r, want) in cases {
            assert_eq!(rounds(&t, &r), want, "{name}");
        }
    }

    #[test]
    fn rounds_are_due_after_the_initial_delay_then_every_period() {
        let t = thresholds(30, 10, 3, 2);
        let mut state = start(&at(100));
        assert_eq!(due_in(&t, &state, &at(100)), Some(30), "initial delay");
        assert_eq!(due_in(&t, &state, &at(131)), Some(0), "late is now");
        fold(&mut state, &[ok("a")], &at(131));
        assert_eq!(due_in(&t, &state, &at(131)), Some(10), "a period later");
        assert_eq!(due_in(&t, &state, &at(141)), Some(0));
        fold(&mut state, &[ok("a")], &at(141));
        assert_eq!(verdict(&t, &state), Verdict::Healthy);
        assert_eq!(
            due_in(&t, &state, &at(141)),
            Some(10),
            "healthy: still watched while the stage waits"
        );
        fold(&mut state, &[bad("a")], &at(151));
        assert_eq!(verdict(&t, &state), Verdict::Undecided, "passes start over");
        fold(&mut state, &[bad("a")], &at(161));
        fold(&mut state, &[bad("a")], &at(171));
        assert!(matches!(
            verdict(&t, &state),
            Verdict::Unhealthy { failures: 3, .. }
        ));
        assert_eq!(
            due_in(&t, &state, &at(181)),
            None,
            "unhealthy: no more rounds"
        );
    }

    #[test]
    fn a_count_read_back_from_status_resumes_where_it_was() {
        let t = thresholds(0, 10, 3, 1);
        let mut state = start(&at(0));
        fold(&mut state, &[bad("a")], &at(0));
        fold(&mut state, &[bad("a")], &at(10));
        let json = serde_json::to_value(&state).expect("serializes");
        let mut resumed: HealthCheckStatus = serde_json::from_value(json).expect("reads back");
        fold(&mut resumed, &[bad("a")], &at(20));
        assert!(matches!(
            verdict(&t, &resumed),
            Verdict::Unhealthy { failures: 3, .. }
        ));
    }
}
