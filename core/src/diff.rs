//! Field-level differences between two JSON values, for `bosun plan` (and the PR plan previews to
//! come): `spec.version: "v1" → "v2"`. Objects are compared key by key; arrays and scalars as wholes.

use std::fmt;

use serde_json::Value;

/// One changed field.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Dotted path from the compared root, e.g. `spec.upgradeStrategy.type`.
    pub path: String,
    /// `None`: the field is added.
    pub old: Option<Value>,
    /// `None`: the field is removed.
    pub new: Option<Value>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.old, &self.new) {
            (Some(o), Some(n)) => write!(f, "{}: {o} → {n}", self.path),
            (None, Some(n)) => write!(f, "{}: + {n}", self.path),
            (Some(o), None) => write!(f, "{}: - {o}", self.path),
            (None, None) => write!(f, "{}", self.path),
        }
    }
}

/// The fields that differ between `old` and `new`, in key order, under the path `root`.
pub fn changes(root: &str, old: &Value, new: &Value) -> Vec<Change> {
    let mut out = Vec::new();
    walk(root, Some(old), Some(new), &mut out);
    out
}

fn walk(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Change>) {
    match (old, new) {
        (Some(Value::Object(o)), Some(Value::Object(n))) => {
            let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(&p, o.get(k), n.get(k), out);
            }
        }
        (o, n) if o == n => {}
        (o, n) => out.push(Change {
            path: path.to_string(),
            old: o.cloned(),
            new: n.cloned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_version_bump_is_one_change() {
        let old = json!({"version": "v1", "replicas": 2, "upgradeStrategy": {"type": "Rolling"}});
        let new = json!({"version": "v2", "replicas": 2, "upgradeStrategy": {"type": "Rolling"}});
        let c = changes("spec", &old, &new);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].to_string(), r#"spec.version: "v1" → "v2""#);
    }

    #[test]
    fn added_and_removed_fields_are_marked() {
        let old = json!({"paused": true, "strategy": {"type": "Rolling"}});
        let new = json!({"strategy": {"type": "Canary", "steps": [10]}});
        let shown: Vec<String> = changes("spec", &old, &new)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            shown,
            [
                "spec.paused: - true",
                "spec.strategy.steps: + [10]",
                r#"spec.strategy.type: "Rolling" → "Canary""#,
            ]
        );
    }

    #[test]
    fn equal_values_have_no_changes() {
        let v = json!({"a": [1, 2], "b": {"c": null}});
        assert!(changes("", &v, &v).is_empty());
    }
}
