//! Canary replica arithmetic without a traffic router: the weight is carried by how many pods of each
//! version sit behind the one Service (as Argo Rollouts does for a basic canary).
//!
//! Rules:
//! - the canary gets `ceil(replicas × weight / 100)` pods, at least one for any weight above 0;
//! - the stable side keeps the rest, but never drops to zero before the weight reaches 100, so the
//!   version that is known to work always serves (with one replica and a 10 % step, the split is 1 + 1:
//!   the effective weight is then 50 %, and [`Split::effective_weight`] says so);
//! - at 100 the canary carries everything and the stable side is scaled to zero.

/// How many pods each side runs at one canary weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    pub stable: i32,
    pub canary: i32,
}

impl Split {
    /// The share of pods on the canary, in percent, rounded down: what the traffic split really is.
    pub fn effective_weight(self) -> i32 {
        let total = self.stable + self.canary;
        if total == 0 {
            0
        } else {
            // i64: 10,000 replicas × 100 does not overflow i32, but keep the arithmetic obviously safe.
            i32::try_from(i64::from(self.canary) * 100 / i64::from(total))
                .expect("a percentage fits in i32")
        }
    }
}

/// The split for `replicas` pods at `weight` percent (clamped to 0–100).
pub fn canary_split(replicas: i32, weight: i32) -> Split {
    let replicas = replicas.max(0);
    let weight = weight.clamp(0, 100);
    if replicas == 0 {
        return Split {
            stable: 0,
            canary: 0,
        };
    }
    if weight == 100 {
        return Split {
            stable: 0,
            canary: replicas,
        };
    }
    let canary = if weight == 0 {
        0
    } else {
        let exact = i64::from(replicas) * i64::from(weight);
        i32::try_from((exact + 99) / 100).expect("at most `replicas`")
    };
    Split {
        stable: (replicas - canary).max(1),
        canary,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_for_common_weights_and_sizes() {
        // (replicas, weight, stable, canary, effective weight)
        let table = [
            (10, 0, 10, 0, 0),
            (10, 10, 9, 1, 10),
            (10, 25, 7, 3, 30),
            (10, 50, 5, 5, 50),
            (10, 99, 1, 10, 90),
            (10, 100, 0, 10, 100),
            (4, 10, 3, 1, 25),
            (3, 50, 1, 2, 66),
            (1, 10, 1, 1, 50),
            (1, 100, 0, 1, 100),
            (2, 50, 1, 1, 50),
            (0, 50, 0, 0, 0),
            (5, 150, 0, 5, 100),
            (5, -5, 5, 0, 0),
            (10_000, 1, 9_900, 100, 1),
        ];
        for (replicas, weight, stable, canary, effective) in table {
            let split = canary_split(replicas, weight);
            assert_eq!(
                split,
                Split { stable, canary },
                "{replicas} replicas at {weight} %"
            );
            assert_eq!(
                split.effective_weight(),
                effective,
                "{replicas} replicas at {weight} %"
            );
        }
    }

    #[test]
    fn the_stable_side_serves_until_the_weight_reaches_100() {
        for replicas in 1..=20 {
            for weight in 0..100 {
                let split = canary_split(replicas, weight);
                assert!(split.stable >= 1, "{replicas} at {weight}");
                assert!(split.canary <= replicas);
                assert!(
                    split.stable + split.canary <= replicas + 1,
                    "at most one surge pod"
                );
            }
        }
    }

    #[test]
    fn more_weight_never_means_fewer_canary_pods() {
        for replicas in 1..=20 {
            let mut last = 0;
            for weight in 0..=100 {
                let c = canary_split(replicas, weight).canary;
                assert!(c >= last, "{replicas} at {weight}");
                last = c;
            }
        }
    }
}
