//! The one retry policy of everything Bosun retries (a git source that fails, a forge call, a push that
//! lost a race, a reconcile that failed): backon's exponential backoff, from a first delay doubling up
//! to a cap, each wait jittered between the delay and twice it so that many Bosuns do not retry in step.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// Successive waits of one retried thing; [`Backoff::reset`] after a success.
#[derive(Debug)]
pub struct Backoff {
    builder: ExponentialBuilder,
    waits: ExponentialBackoff,
}

impl Backoff {
    /// Waits from `first`, doubling up to `cap` (each jittered up to twice its delay), forever.
    pub fn new(first: Duration, cap: Duration) -> Backoff {
        let builder = ExponentialBuilder::default()
            .with_min_delay(first)
            .with_max_delay(cap.max(first))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Backoff {
            waits: builder.build(),
            builder,
        }
    }

    /// The next wait.
    pub fn next_wait(&mut self) -> Duration {
        // Without a limit on the number of times, backon never ends the sequence.
        self.waits
            .next()
            .unwrap_or_else(|| self.builder.build().next().unwrap_or_default())
    }

    /// Starts again from the first delay.
    pub fn reset(&mut self) {
        self.waits = self.builder.build();
    }
}

/// `d` give or take a fifth, at random: a poll interval, so that sources polled at the same period do
/// not poll in step.
pub fn spread(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.8..1.2))
}

/// Whether a failed Kubernetes call may succeed when simply tried again: a timeout, a lost connection,
/// a server error, a conflict or a rate limit may; a request the server refused as bad, unauthorized,
/// forbidden or naming a resource it does not serve needs a human (RBAC, a CRD, the spec) first.
pub fn kube_heals(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(status) => !matches!(status.code, 400 | 401 | 403 | 404 | 405 | 422),
        _ => true,
    }
}

/// A failed call that may heal by itself is tried again after 1 s, doubling to a minute; one that
/// needs a human, after 30 s doubling to 5 min (it is still retried: the human may have fixed it).
const HEALS: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));
const NEEDS_A_HUMAN: (Duration, Duration) = (Duration::from_secs(30), Duration::from_secs(300));

/// The backoff of each object a controller failed to reconcile, kept from one failure to the next
/// and forgotten at its first success (or deletion).
#[derive(Debug, Default)]
pub struct PerObject {
    failing: std::sync::Mutex<std::collections::HashMap<String, (bool, Backoff)>>,
}

impl PerObject {
    /// How long until `key` is tried again after this failure; `heals` as [`kube_heals`] says.
    pub fn failed(&self, key: &str, heals: bool) -> Duration {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        let new = |heals| {
            let (first, cap) = if heals { HEALS } else { NEEDS_A_HUMAN };
            (heals, Backoff::new(first, cap))
        };
        let entry = failing.entry(key.to_owned()).or_insert_with(|| new(heals));
        // Another kind of failure starts its own sequence.
        if entry.0 != heals {
            *entry = new(heals);
        }
        entry.1.next_wait()
    }

    /// `key` was reconciled (or is gone): its next failure starts from the first delay.
    pub fn succeeded(&self, key: &str) {
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        failing.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_failing_again_waits_longer_and_a_success_starts_it_over() {
        let retries = PerObject::default();
        let first = retries.failed("shop/web", true);
        assert!(first < Duration::from_secs(2), "{first:?}");
        let second = retries.failed("shop/web", true);
        assert!(second >= Duration::from_secs(2), "{second:?}");
        // Another object has its own count.
        assert!(retries.failed("shop/db", true) < Duration::from_secs(2));
        retries.succeeded("shop/web");
        assert!(retries.failed("shop/web", true) < Duration::from_secs(2));
    }

    #[test]
    fn what_needs_a_human_is_retried_slowly_and_what_heals_quickly() {
        let retries = PerObject::default();
        let api = |message, reason, code| {
            kube::Error::Api(Box::new(
                kube::core::Status::failure(message, reason).with_code(code),
            ))
        };
        let forbidden = api("deployments is forbidden", "Forbidden", 403);
        let unavailable = api("etcdserver: leader changed", "ServiceUnavailable", 503);
        assert!(!kube_heals(&forbidden));
        assert!(kube_heals(&unavailable));
        assert!(retries.failed("a", kube_heals(&forbidden)) >= Duration::from_secs(30));
        assert!(retries.failed("b", kube_heals(&unavailable)) < Duration::from_secs(2));
        // Fixed RBAC, then a server error: the quick sequence.
        assert!(retries.failed("a", true) < Duration::from_secs(2));
    }

    #[test]
    fn waits_double_up_to_the_cap_with_jitter_and_start_again_after_a_reset() {
        let second = Duration::from_secs(1);
        let mut b = Backoff::new(second, Duration::from_secs(8));
        let waits: Vec<Duration> = (0..7).map(|_| b.next_wait()).collect();
        for (wait, delay) in waits.iter().zip([1, 2, 4, 8, 8, 8, 8]) {
            let delay = Duration::from_secs(delay);
            assert!(
                *wait >= delay && *wait < delay * 2,
                "{wait:?} for {delay:?}: {waits:?}"
            );
        }
        b.reset();
        assert!(b.next_wait() < second * 2);
    }

    #[test]
    fn a_cap_below_the_first_delay_is_the_first_delay() {
        let mut b = Backoff::new(Duration::from_secs(2), Duration::from_secs(1));
        for _ in 0..3 {
            let wait = b.next_wait();
            assert!(wait >= Duration::from_secs(2) && wait < Duration::from_secs(4));
        }
    }
}
