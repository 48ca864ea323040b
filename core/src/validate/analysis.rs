//! Metric analysis (`upgradeStrategy.analysis`, `canary.steps[].analysis`): each metric's name,
//! query placeholders, conditions, address and durations, at the line of the field at fault.

use super::Problem;
use crate::analysis::check_query;
use crate::analysis::expr::Condition;
use crate::model::{Analysis, ManagedApplication, Seconds};
use crate::yaml::{Node, PathSeg, Value};

fn f(name: &str) -> PathSeg {
    PathSeg::Field(name.to_string())
}

/// Where the analyses of an app are: `(path to the analysis, the analysis)`.
fn analyses(app: &ManagedApplication) -> Vec<(Vec<PathSeg>, &Analysis)> {
    let strategy = &app.spec.upgrade_strategy;
    let base = vec![f("spec"), f("upgradeStrategy")];
    let mut out = Vec::new();
    if let Some(a) = &strategy.analysis {
        let mut at = base.clone();
        at.push(f("analysis"));
        out.push((at, a));
    }
    for (i, step) in strategy
        .canary
        .iter()
        .flat_map(|c| c.steps.iter())
        .enumerate()
    {
        if let Some(a) = &step.analysis {
            let mut at = base.clone();
            at.extend([f("canary"), f("steps"), PathSeg::Index(i), f("analysis")]);
            out.push((at, a));
        }
    }
    out
}

/// The rules of each metric that the schema cannot say.
pub(super) fn check_analysis(app: &ManagedApplication, root: &Node, out: &mut Vec<Problem>) {
    for (at, analysis) in analyses(app) {
        if analysis.metrics.is_empty() {
            let mut here = at.clone();
            here.push(f("metrics"));
            out.push(
                Problem::at(
                    root.closest(&here),
                    &here,
                    "an analysis needs metrics".into(),
                )
                .with_hint("list at least one metric, or remove the analysis"),
            );
        }
        for (i, m) in analysis.metrics.iter().enumerate() {
            let field = |name: &[&str]| {
                let mut p = at.clone();
                p.extend([f("metrics"), PathSeg::Index(i)]);
                p.extend(name.iter().map(|n| f(n)));
                p
            };
            let mut push = |path: Vec<PathSeg>, reason: String, hint: Option<&str>| {
                let mut p = Problem::at(root.closest(&path), &path, reason);
                if let Some(h) = hint {
                    p = p.with_hint(h);
                }
                out.push(p);
            };
            if m.name.trim().is_empty() {
                push(field(&["name"]), "a metric needs a name".into(), None);
            } else if analysis.metrics[..i].iter().any(|o| o.name == m.name) {
                push(
                    field(&["name"]),
                    format!(
                        "metric {} is listed twice in this analysis",
                        crate::shown::Quoted(&m.name)
                    ),
                    Some("give each metric of an analysis its own name"),
                );
            }
            if let Err(e) = check_query(&m.provider.prometheus.query) {
                push(field(&["provider", "prometheus", "query"]), e, None);
            }
            if let Some(address) = &m.provider.prometheus.address
                && let Err(e) = check_address(address)
            {
                push(field(&["provider", "prometheus", "address"]), e, None);
            }
            for (name, condition) in [
                ("successCondition", &m.success_condition),
                ("failureCondition", &m.failure_condition),
            ] {
                if let Some(c) = condition
                    && let Err(e) = Condition::parse(c)
                {
                    push(
                        field(&[name]),
                        format!("{c} does not parse: {e}", c = crate::shown::Quoted(c)),
                        None,
                    );
                }
            }
            if m.success_condition.is_none() && m.failure_condition.is_none() {
                push(
                    field(&["successCondition"]),
                    format!(
                        "metric {} has no condition to judge it by",
                        crate::shown::Quoted(&m.name)
                    ),
                    Some("add successCondition (e.g. `result < 0.01`), failureCondition, or both"),
                );
            }
            if m.interval.as_ref().is_some_and(|s| s.seconds == 0) {
                push(
                    field(&["interval"]),
                    "the interval between measurements must be at least 1s".into(),
                    None,
                );
            }
        }
    }
}

/// Prometheus is asked over plain HTTP (`http://host:port[/path]`).
fn check_address(address: &str) -> Result<(), String> {
    let Some(rest) = address.strip_prefix("http://") else {
        return Err(format!(
            "{} is not an http:// address: write http://prometheus.monitoring:9090",
            crate::shown::Quoted(address)
        ));
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Err(format!(
            "{address} has no host",
            address = crate::shown::Quoted(address)
        ));
    }
    Ok(())
}

/// `interval` and `initialDelay` are int-or-string in the schema; what they may be is checked here,
/// so that a bad one is reported with every other problem of the document.
pub(super) fn check_durations(root: &Node, out: &mut Vec<Problem>) {
    let strategy = [f("spec"), f("upgradeStrategy")];
    let mut lists: Vec<Vec<PathSeg>> = Vec::new();
    let mut background = strategy.to_vec();
    background.extend([f("analysis"), f("metrics")]);
    lists.push(background);
    let mut steps = strategy.to_vec();
    steps.extend([f("canary"), f("steps")]);
    if let Some(Node {
        value: Value::Seq(items),
        ..
    }) = root.at(&steps)
    {
        for i in 0..items.len() {
            let mut p = steps.clone();
            p.extend([PathSeg::Index(i), f("analysis"), f("metrics")]);
            lists.push(p);
        }
    }
    for list in lists {
        let Some(Node {
            value: Value::Seq(metrics),
            ..
        }) = root.at(&list)
        else {
            continue;
        };
        for (i, metric) in metrics.iter().enumerate() {
            for name in ["interval", "initialDelay"] {
                let Some(node) = metric.get(name) else {
                    continue;
                };
                if matches!(node.value, Value::Int(_) | Value::Str(_))
                    && let Err(e) = serde_json::from_value::<Seconds>(node.to_json())
                {
                    let mut at = list.clone();
                    at.extend([PathSeg::Index(i), f(name)]);
                    out.push(Problem::at(node, &at, e.to_string()));
                }
            }
        }
    }
}
