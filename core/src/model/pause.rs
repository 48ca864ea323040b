//! A canary step's pause: seconds, a duration, or "until promoted".

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The word that makes a step wait for `bosun promote`.
pub const UNTIL_PROMOTED: &str = "untilPromoted";

/// How long a canary step waits once it is healthy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pause {
    /// A number of seconds, written as an integer.
    Seconds(u64),
    /// A duration written as text (`90s`, `5m`, `1h30m`), kept as written.
    Duration { text: String, seconds: u64 },
    /// Wait until promoted (`bosun promote <app>`).
    UntilPromoted,
}

impl Pause {
    /// The wait in seconds, or `None` when the step waits until promoted.
    pub fn seconds(&self) -> Option<u64> {
        match self {
            Pause::Seconds(s) | Pause::Duration { seconds: s, .. } => Some(*s),
            Pause::UntilPromoted => None,
        }
    }

    /// Reads the text form of a pause.
    ///
    /// # Errors
    /// A message saying which forms are accepted.
    pub fn parse_text(text: &str) -> Result<Pause, String> {
        if text == UNTIL_PROMOTED {
            return Ok(Pause::UntilPromoted);
        }
        parse_duration(text)
            .map(|seconds| Pause::Duration {
                text: text.to_string(),
                seconds,
            })
            .ok_or_else(|| {
                format!(
                    "{text:?} is not a pause: write seconds (300), a duration (90s, 5m, 1h30m) or {UNTIL_PROMOTED}"
                )
            })
    }
}

/// Parses `1h30m15s`-style durations (units h, m, s; each at most once, in that order).
pub(crate) fn parse_duration(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut number = String::new();
    let mut last_unit = 0u8;
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let (rank, factor) = match c {
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return None,
        };
        if number.is_empty() || rank <= last_unit {
            return None;
        }
        let n: u64 = number.parse().ok()?;
        total = total.checked_add(n.checked_mul(factor)?)?;
        number.clear();
        last_unit = rank;
    }
    (number.is_empty() && last_unit != 0).then_some(total)
}

impl fmt::Display for Pause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pause::Seconds(s) => write!(f, "{s}s"),
            Pause::Duration { text, .. } => f.write_str(text),
            Pause::UntilPromoted => f.write_str("until promoted"),
        }
    }
}

impl Serialize for Pause {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Pause::Seconds(n) => s.serialize_u64(*n),
            Pause::Duration { text, .. } => s.serialize_str(text),
            Pause::UntilPromoted => s.serialize_str(UNTIL_PROMOTED),
        }
    }
}

impl<'de> Deserialize<'de> for Pause {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Pause;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "seconds (300), a duration (5m) or {UNTIL_PROMOTED}")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Pause, E> {
                Ok(Pause::Seconds(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Pause, E> {
                u64::try_from(v)
                    .map(Pause::Seconds)
                    .map_err(|_| E::custom(format!("a pause cannot be negative, got {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Pause, E> {
                Pause::parse_text(v).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Pause {
    fn schema_name() -> Cow<'static, str> {
        "Pause".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "description": "Seconds (300), a duration (5m, 1h30m), or untilPromoted."
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_read_from_numbers_durations_and_the_promotion_word() {
        let cases: [(serde_json::Value, Option<Option<u64>>); 9] = [
            (serde_json::json!(300), Some(Some(300))),
            (serde_json::json!(0), Some(Some(0))),
            (serde_json::json!("90s"), Some(Some(90))),
            (serde_json::json!("5m"), Some(Some(300))),
            (serde_json::json!("1h30m"), Some(Some(5400))),
            (serde_json::json!("untilPromoted"), Some(None)),
            (serde_json::json!(-5), None),
            (serde_json::json!("5x"), None),
            (serde_json::json!("30m1h"), None),
        ];
        for (input, want) in cases {
            let got = serde_json::from_value::<Pause>(input.clone())
                .ok()
                .map(|p| p.seconds());
            assert_eq!(got, want, "{input}");
        }
    }

    #[test]
    fn a_written_duration_round_trips_as_written() {
        let p: Pause = serde_json::from_value(serde_json::json!("1h30m")).expect("valid");
        assert_eq!(
            serde_json::to_value(&p).expect("serializes"),
            serde_json::json!("1h30m")
        );
    }
}
