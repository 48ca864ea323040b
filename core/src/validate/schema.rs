//! Structural checks of a YAML tree against a CRD's OpenAPI v3 schema: types, unknown fields, required
//! fields, enums and ranges. The schema is the one the API server enforces, so a definition that passes
//! here is one the API server accepts; the messages are ours, with positions and suggestions.

use serde_json::Value as J;

use super::Problem;
use crate::yaml::{Node, PathSeg, Value};

/// Checks `node` against `schema`, pushing one [`Problem`] per thing wrong.
pub(crate) fn check(schema: &J, node: &Node, path: &mut Vec<PathSeg>, out: &mut Vec<Problem>) {
    if let Value::Null = node.value {
        // Null is what the API server prunes: the field counts as absent. Required-ness is checked by
        // the parent, which sees the null entry as missing.
        return;
    }
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&J::Bool(true))
        && schema.get("properties").is_none()
    {
        if schema.get("type").and_then(J::as_str) == Some("object")
            && !matches!(node.value, Value::Map(_))
        {
            out.push(Problem::at(
                node,
                path,
                format!("expected a mapping, found {}", node.describe()),
            ));
        }
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&J::Bool(true)) {
        if !matches!(node.value, Value::Int(_) | Value::Str(_)) {
            out.push(Problem::at(
                node,
                path,
                format!(
                    "expected a whole number or a string, found {}",
                    node.describe()
                ),
            ));
        }
        return;
    }
    if let Some(options) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(J::as_array)
    {
        let fits = options.iter().any(|option| {
            let mut scratch = Vec::new();
            check(option, node, &mut path.clone(), &mut scratch);
            scratch.is_empty()
        });
        if !fits {
            out.push(Problem::at(
                node,
                path,
                format!("{} fits none of the accepted forms", node.describe()),
            ));
        }
        return;
    }
    match schema.get("type").and_then(J::as_str) {
        Some("object") => check_object(schema, node, path, out),
        Some("array") => match &node.value {
            Value::Seq(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        path.push(PathSeg::Index(i));
                        check(item_schema, item, path, out);
                        path.pop();
                    }
                }
            }
            _ => out.push(Problem::at(
                node,
                path,
                format!("expected a list, found {}", node.describe()),
            )),
        },
        Some("string") => match &node.value {
            Value::Str(s) => check_string(schema, s, node, path, out),
            _ => out.push(wrong_scalar(node, path, "a string")),
        },
        Some("integer") => match node.value {
            Value::Int(i) => check_range(schema, i as f64, node, path, out),
            _ => out.push(wrong_scalar(node, path, "a whole number")),
        },
        Some("number") => match node.value {
            Value::Int(i) => check_range(schema, i as f64, node, path, out),
            Value::Float(f) => check_range(schema, f, node, path, out),
            _ => out.push(wrong_scalar(node, path, "a number")),
        },
        Some("boolean") if !matches!(node.value, Value::Bool(_)) => {
            out.push(wrong_scalar(node, path, "true or false"));
        }
        _ => {}
    }
}

fn check_object(schema: &J, node: &Node, path: &mut Vec<PathSeg>, out: &mut Vec<Problem>) {
    let Value::Map(entries) = &node.value else {
        out.push(Problem::at(
            node,
            path,
            format!("expected a mapping, found {}", node.describe()),
        ));
        return;
    };
    let properties = schema.get("properties").and_then(J::as_object);
    let additional = schema.get("additionalProperties");
    for (key, value) in entries {
        let Value::Str(name) = &key.value else {
            out.push(Problem::at(
                key,
                path,
                format!("a field name must be text, found {}", key.describe()),
            ));
            continue;
        };
        path.push(PathSeg::Field(name.clone()));
        match (properties.and_then(|p| p.get(name)), additional) {
            (Some(field_schema), _) => check(field_schema, value, path, out),
            (None, Some(J::Bool(true))) => {}
            (None, Some(extra @ J::Object(_))) => check(extra, value, path, out),
            (None, _) => {
                let known: Vec<&str> = properties
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let mut problem = Problem::at(
                    key,
                    path,
                    format!("unknown field {name}", name = crate::shown::Quoted(name)),
                );
                problem.hint = suggest(name, &known)
                    .map(|s| format!("did you mean {s}?", s = crate::shown::Quoted(s)));
                if problem.hint.is_none() && !known.is_empty() {
                    problem.hint = Some(format!("known fields here: {}", known.join(", ")));
                }
                out.push(problem);
            }
        }
        path.pop();
    }
    if let Some(required) = schema.get("required").and_then(J::as_array) {
        for field in required.iter().filter_map(J::as_str) {
            let present = entries
                .iter()
                .any(|(k, v)| k.as_str() == Some(field) && v.value != Value::Null);
            if !present {
                path.push(PathSeg::Field(field.to_string()));
                out.push(Problem::at(
                    node,
                    path,
                    "missing required field".to_string(),
                ));
                path.pop();
            }
        }
    }
}

fn check_string(schema: &J, s: &str, node: &Node, path: &[PathSeg], out: &mut Vec<Problem>) {
    if let Some(allowed) = schema.get("enum").and_then(J::as_array) {
        let names: Vec<&str> = allowed.iter().filter_map(J::as_str).collect();
        if !names.contains(&s) {
            let mut p = Problem::at(
                node,
                path,
                format!(
                    "{} is not one of {}",
                    crate::shown::Quoted(s),
                    names.join(", ")
                ),
            );
            p.hint = suggest(s, &names)
                .map(|m| format!("did you mean {m}?", m = crate::shown::Quoted(m)));
            out.push(p);
        }
    }
    if let Some(min) = schema.get("minLength").and_then(J::as_u64)
        && (s.chars().count() as u64) < min
    {
        out.push(Problem::at(
            node,
            path,
            format!("must be at least {min} characters long"),
        ));
    }
    if let Some(max) = schema.get("maxLength").and_then(J::as_u64)
        && (s.chars().count() as u64) > max
    {
        out.push(Problem::at(
            node,
            path,
            format!("must be at most {max} characters long"),
        ));
    }
}

fn check_range(schema: &J, n: f64, node: &Node, path: &[PathSeg], out: &mut Vec<Problem>) {
    let raw = node.raw.as_deref().unwrap_or("?");
    let (fmt_min, fmt_max) = match schema.get("format").and_then(J::as_str) {
        Some("int32") => (Some(f64::from(i32::MIN)), Some(f64::from(i32::MAX))),
        _ => (None, None),
    };
    let min = schema.get("minimum").and_then(J::as_f64);
    let max = schema.get("maximum").and_then(J::as_f64);
    let reason = match (min, max) {
        (Some(lo), Some(hi)) if n < lo || n > hi => {
            Some(format!("must be between {lo} and {hi}, got {raw}"))
        }
        _ => {
            let lo = min.or(fmt_min);
            let hi = max.or(fmt_max);
            if lo.is_some_and(|lo| n < lo) {
                lo.map(|lo| format!("must be at least {lo}, got {raw}"))
            } else if hi.is_some_and(|hi| n > hi) {
                hi.map(|hi| format!("must be at most {hi}, got {raw}"))
            } else {
                None
            }
        }
    };
    if let Some(reason) = reason {
        out.push(Problem::at(node, path, reason));
    }
}

/// A wrong scalar, with the fix when YAML 1.1 turned the user's text into a number or boolean.
fn wrong_scalar(node: &Node, path: &[PathSeg], expected: &str) -> Problem {
    let mut p = Problem::at(
        node,
        path,
        format!("expected {expected}, found {}", node.describe()),
    );
    if expected == "a string"
        && let (Some(raw), Value::Int(_) | Value::Float(_) | Value::Bool(_)) =
            (&node.raw, &node.value)
    {
        p.hint = Some(format!(
            "an unquoted {raw} is not text to Kubernetes; quote it: \"{raw}\""
        ));
    }
    p
}

/// The closest candidate to `word`, when one is close enough to be what the user meant.
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    candidates
        .iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase()),
                *c,
            )
        })
        .filter(|(d, c)| {
            *d <= (c.len() / 3).max(2)
                || (lower.len() >= 4 && c.to_ascii_lowercase().starts_with(&lower))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::suggest;

    #[test]
    fn suggestions_catch_typos_and_case_but_not_strangers() {
        let fields = ["version", "paused", "upgradeStrategy", "replicas"];
        assert_eq!(suggest("verison", &fields), Some("version"));
        assert_eq!(suggest("upgradestrategy", &fields), Some("upgradeStrategy"));
        assert_eq!(suggest("replica", &fields), Some("replicas"));
        assert_eq!(suggest("colour", &fields), None);
    }
}
