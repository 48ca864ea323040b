//! Rules the schema cannot say: names, image references, and how fields go together.

use super::Problem;
use super::schema::suggest;
use crate::model::{Bestie, Kind, ManagedApplication, StrategyType};
use crate::names;
use crate::yaml::{Node, PathSeg, Value};

/// Longest suffix Bosun appends to a ManagedApplication's name (`-preview`, a Service name).
pub const MANAGED_APP_NAME_MAX: usize = 63 - "-preview".len();
/// The longest Bestie name: its database StatefulSet `<name>-db` labels its pods
/// `controller-revision-hash: <name>-db-<10-character hash>`, and a label value has at most 63 characters.
pub const BESTIE_NAME_MAX: usize = 63 - "-db-".len() - 10;

fn f(name: &str) -> PathSeg {
    PathSeg::Field(name.to_string())
}

fn path(parts: &[&str]) -> Vec<PathSeg> {
    parts.iter().map(|p| f(p)).collect()
}

/// Pushes a problem about the field at `parts` (pointing at the closest node that exists).
fn problem(root: &Node, parts: Vec<PathSeg>, reason: String) -> Problem {
    Problem::at(root.closest(&parts), &parts, reason)
}

pub(super) fn check_metadata(kind: Kind, root: &Node, out: &mut Vec<Problem>) {
    let Some(meta) = root.get("metadata") else {
        out.push(Problem::at(
            root,
            &path(&["metadata"]),
            "missing required field".into(),
        ));
        return;
    };
    let Value::Map(entries) = &meta.value else {
        out.push(Problem::at(
            meta,
            &path(&["metadata"]),
            format!("expected a mapping, found {}", meta.describe()),
        ));
        return;
    };
    const ALLOWED: [&str; 4] = ["name", "namespace", "labels", "annotations"];
    const SERVER_SET: [&str; 8] = [
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    ];
    for (key, _) in entries {
        let name = key.key_text();
        if ALLOWED.contains(&name.as_str()) {
            continue;
        }
        let p = Problem::at(
            key,
            &path(&["metadata", &name]),
            format!("unknown field {name}", name = crate::shown::Quoted(&name)),
        );
        out.push(if SERVER_SET.contains(&name.as_str()) {
            Problem {
                reason: format!("{name} is set by the API server"),
                ..p
            }
            .with_hint("remove it from the file in git")
        } else if name == "generateName" {
            Problem {
                reason: "generateName is not supported".into(),
                ..p
            }
            .with_hint("a definition in git needs a fixed metadata.name")
        } else {
            match suggest(&name, &ALLOWED) {
                Some(s) => p.with_hint(format!("did you mean {s}?", s = crate::shown::Quoted(s))),
                None => p.with_hint(
                    "a definition's metadata holds name, namespace, labels and annotations",
                ),
            }
        });
    }
    let max = match kind {
        Kind::ManagedApplication => MANAGED_APP_NAME_MAX,
        Kind::Bestie => BESTIE_NAME_MAX,
    };
    match meta.get("name") {
        None => out.push(Problem::at(meta, &path(&["metadata", "name"]), "missing required field".into())),
        Some(n) => match n.as_str() {
            None => out.push(Problem::at(n, &path(&["metadata", "name"]), format!("expected a string, found {}", n.describe()))),
            Some(name) if !names::is_dns1123_label(name) => out.push(
                Problem::at(n, &path(&["metadata", "name"]), format!("{name} is not a valid name", name = crate::shown::Quoted(name)))
                    .with_hint("use lowercase letters, digits and '-', starting and ending with a letter or digit"),
            ),
            Some(name) if name.len() > max => out.push(
                Problem::at(n, &path(&["metadata", "name"]), format!("{} is {} characters long, over {max}", crate::shown::Quoted(name), name.len()))
                    .with_hint(format!("Bosun names what it creates after the {kind} and those names must fit 63 characters")),
            ),
            Some(_) => {}
        },
    }
    if let Some(ns) = meta.get("namespace") {
        match ns.as_str() {
            Some(s) if names::is_dns1123_label(s) => {}
            _ => out.push(
                Problem::at(
                    ns,
                    &path(&["metadata", "namespace"]),
                    format!("{} is not a valid namespace name", ns.describe()),
                )
                .with_hint("use lowercase letters, digits and '-', at most 63"),
            ),
        }
    }
    for field in ["labels", "annotations"] {
        let Some(map) = meta.get(field) else { continue };
        match &map.value {
            Value::Null => {}
            Value::Map(items) => {
                for (k, v) in items {
                    let key = k.key_text();
                    let at = path(&["metadata", field, &key]);
                    match &v.value {
                        Value::Str(s) if field == "labels" && !is_label_value(s) => out.push(
                            Problem::at(v, &at, format!("{s} is not a valid label value", s = crate::shown::Quoted(s)))
                                .with_hint("at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric"),
                        ),
                        Value::Str(_) => {}
                        _ => {
                            let raw = v.raw.clone().unwrap_or_default();
                            let mut p = Problem::at(v, &at, format!("expected a string, found {}", v.describe()));
                            if !raw.is_empty() {
                                p = p.with_hint(format!("quote it: \"{raw}\""));
                            }
                            out.push(p);
                        }
                    }
                    if !is_qualified_name(&key) {
                        out.push(Problem::at(
                            k,
                            &at,
                            format!(
                                "{} is not a valid {} key",
                                crate::shown::Quoted(&key),
                                &field[..field.len() - 1]
                            ),
                        ));
                    }
                }
            }
            _ => out.push(Problem::at(
                map,
                &path(&["metadata", field]),
                format!("expected a mapping, found {}", map.describe()),
            )),
        }
    }
}

fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn is_qualified_name(s: &str) -> bool {
    let (prefix, name) = s.rsplit_once('/').map_or((None, s), |(p, n)| (Some(p), n));
    prefix.is_none_or(names::is_dns1123_subdomain) && !name.is_empty() && is_label_value(name)
}

pub(super) fn check_managed_app(app: &ManagedApplication, root: &Node, out: &mut Vec<Problem>) {
    let spec = &app.spec;
    if !names::is_image_tag(&spec.version) {
        out.push(
            problem(root, path(&["spec", "version"]), format!("{} is not a valid image tag", crate::shown::Quoted(&spec.version)))
                .with_hint("the version is the image tag: letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-'"),
        );
    }
    if let Some(image) = &spec.image {
        if names::has_tag_or_digest(image) {
            out.push(
                problem(
                    root,
                    path(&["spec", "image"]),
                    format!(
                        "{image} carries a tag or digest",
                        image = crate::shown::Quoted(image)
                    ),
                )
                .with_hint("write the repository alone; the tag is spec.version"),
            );
        } else if !names::is_image_repository(image) {
            out.push(
                problem(root, path(&["spec", "image"]), format!("{image} is not a valid image repository", image = crate::shown::Quoted(image)))
                    .with_hint("lowercase path components, optionally after a registry host: registry.example.com/team/app"),
            );
        }
    }
    if let Some(ports) = &spec.ports {
        for (i, port) in ports.iter().enumerate() {
            let at = |field: &str| vec![f("spec"), f("ports"), PathSeg::Index(i), f(field)];
            if let Some(name) = &port.name
                && !names::is_port_name(name)
            {
                out.push(problem(root, at("name"), format!("{name} is not a valid port name", name = crate::shown::Quoted(name)))
                    .with_hint("at most 15 lowercase letters, digits and single '-', with at least one letter"));
            }
            if ports[..i]
                .iter()
                .any(|p| p.container_port == port.container_port)
            {
                out.push(problem(
                    root,
                    at("containerPort"),
                    format!("port {} is listed twice", port.container_port),
                ));
            }
            if port.name.is_some() && ports[..i].iter().any(|p| p.name == port.name) {
                out.push(problem(
                    root,
                    at("name"),
                    "this port name is used twice".into(),
                ));
            }
        }
    }

    let strategy = &spec.upgrade_strategy;
    let base = ["spec", "upgradeStrategy"];
    let sp = |rest: &[&str]| {
        let mut v = path(&base);
        v.extend(rest.iter().map(|r| f(r)));
        v
    };
    if strategy.type_ == StrategyType::RollingWithMigration && strategy.migration_job.is_none() {
        out.push(
            problem(
                root,
                sp(&["migrationJob"]),
                "type RollingWithMigration needs a migrationJob".into(),
            )
            .with_hint("add migrationJob with its image, or use type Rolling"),
        );
    }
    if let Some(job) = &strategy.migration_job {
        if job.image.is_empty() {
            out.push(problem(
                root,
                sp(&["migrationJob", "image"]),
                "a migration needs an image".into(),
            ));
        } else if !names::is_image_reference(&job.image) {
            out.push(problem(
                root,
                sp(&["migrationJob", "image"]),
                format!(
                    "{} is not a valid image reference",
                    crate::shown::Quoted(&job.image)
                ),
            ));
        }
        if let Some(image) = job.down.as_ref().and_then(|d| d.image.as_ref())
            && !names::is_image_reference(image)
        {
            out.push(problem(
                root,
                sp(&["migrationJob", "down", "image"]),
                format!(
                    "{image} is not a valid image reference",
                    image = crate::shown::Quoted(image)
                ),
            ));
        }
    }
    if let Some(check) = &strategy.health_check
        && let Some(why) = names::http_path_problem(&check.http_get.path)
    {
        let path = &check.http_get.path;
        let slashed = format!("/{path}");
        let p = problem(root, sp(&["healthCheck", "httpGet", "path"]), why);
        out.push(if names::is_http_path(&slashed) && slashed.len() <= 80 {
            p.with_hint(format!(
                "write {slashed}",
                slashed = crate::shown::Quoted(&slashed)
            ))
        } else {
            p
        });
    }
    let canary_on = strategy
        .canary
        .as_ref()
        .map(|c| c.enabled.unwrap_or(strategy.type_ == StrategyType::Canary));
    match (strategy.type_, &strategy.canary, canary_on) {
        (StrategyType::Canary, None, _) => out.push(
            problem(
                root,
                sp(&["canary"]),
                "type Canary needs canary steps".into(),
            )
            .with_hint("add canary.steps, each with a weight (and optionally a pause)"),
        ),
        (StrategyType::Canary, Some(_), Some(false)) => out.push(problem(
            root,
            sp(&["canary", "enabled"]),
            "canary is disabled but type is Canary".into(),
        )),
        (StrategyType::Recreate | StrategyType::BlueGreen, Some(_), Some(true)) => out.push(
            problem(
                root,
                sp(&["canary", "enabled"]),
                format!("canary steps do not apply to type {}", strategy.type_),
            )
            .with_hint("use type Canary (or Rolling with canary.enabled), or remove canary"),
        ),
        _ => {}
    }
    if let (Some(canary), Some(true)) = (&strategy.canary, canary_on)
        && canary.steps.is_empty()
    {
        out.push(problem(
            root,
            sp(&["canary", "steps"]),
            "canary is enabled but has no steps".into(),
        ));
    }
    if strategy.traffic_routing.is_some() && canary_on != Some(true) {
        out.push(
            problem(
                root,
                sp(&["trafficRouting"]),
                format!(
                    "trafficRouting carries the weights of canary steps; type {} has none",
                    strategy.type_
                ),
            )
            .with_hint("use type Canary with canary.steps, or remove trafficRouting"),
        );
    }
    if strategy.traffic_routing.is_some()
        && spec.service.as_ref().and_then(|s| s.enabled) == Some(false)
    {
        out.push(
            problem(
                root,
                sp(&["trafficRouting"]),
                "a router splits traffic between the app's Services, and service.enabled is false"
                    .into(),
            )
            .with_hint("enable the Service, or remove trafficRouting"),
        );
    }
    if strategy.blue_green.is_some() && strategy.type_ != StrategyType::BlueGreen {
        out.push(
            problem(
                root,
                sp(&["blueGreen"]),
                format!("blueGreen settings do not apply to type {}", strategy.type_),
            )
            .with_hint("use type BlueGreen, or remove blueGreen"),
        );
    }
}

/// Pauses are int-or-string in the schema; what the string and number may be is checked here, so that a
/// bad pause is reported together with every other problem of the document.
pub(super) fn check_pauses(root: &Node, out: &mut Vec<Problem>) {
    let steps = path(&["spec", "upgradeStrategy", "canary", "steps"]);
    let Some(Node {
        value: Value::Seq(items),
        ..
    }) = root.at(&steps)
    else {
        return;
    };
    for (i, step) in items.iter().enumerate() {
        let Some(pause) = step.get("pause") else {
            continue;
        };
        if matches!(pause.value, Value::Int(_) | Value::Str(_))
            && let Err(e) = serde_json::from_value::<crate::model::Pause>(pause.to_json())
        {
            let mut at = steps.clone();
            at.extend([PathSeg::Index(i), f("pause")]);
            out.push(Problem::at(pause, &at, e.to_string()));
        }
    }
}

/// `trafficRouting` names exactly one router (the schema says so with min/maxProperties, which the
/// typed reading would only call "a map with a single key").
pub(super) fn check_traffic_routing(root: &Node, out: &mut Vec<Problem>) {
    let at = path(&["spec", "upgradeStrategy", "trafficRouting"]);
    let Some(node) = root.at(&at) else {
        return;
    };
    if let Value::Map(entries) = &node.value
        && entries.len() != 1
    {
        let found: Vec<String> = entries.iter().map(|(k, _)| k.key_text()).collect();
        out.push(
            Problem::at(
                node,
                &at,
                format!(
                    "names {} routers ({}); a canary goes through exactly one",
                    entries.len(),
                    if found.is_empty() {
                        "none".to_string()
                    } else {
                        found.join(", ")
                    }
                ),
            )
            .with_hint("write one of gatewayAPI, openshiftRoute, nginx"),
        );
    }
}

/// Each upgrade window's schedule (cron), duration and time zone ([`crate::window::problems`]), at the
/// line of the field at fault.
pub(super) fn check_windows(
    windows: &[crate::model::UpgradeWindow],
    root: &Node,
    out: &mut Vec<Problem>,
) {
    for (i, w) in windows.iter().enumerate() {
        for (field, reason) in crate::window::problems(w) {
            let at = vec![f("spec"), f("upgradeWindows"), PathSeg::Index(i), f(field)];
            out.push(problem(root, at, reason));
        }
    }
}

pub(super) fn check_bestie(bestie: &Bestie, root: &Node, out: &mut Vec<Problem>) {
    let spec = &bestie.spec;
    if names::has_tag_or_digest(&spec.image) {
        out.push(
            problem(
                root,
                path(&["spec", "image"]),
                format!(
                    "{} carries a tag or digest",
                    crate::shown::Quoted(&spec.image)
                ),
            )
            .with_hint("write the repository alone; the tag is spec.version"),
        );
    } else if !names::is_image_repository(&spec.image) {
        out.push(problem(
            root,
            path(&["spec", "image"]),
            format!(
                "{} is not a valid image repository",
                crate::shown::Quoted(&spec.image)
            ),
        ));
    }
    if !names::is_image_tag(&spec.version) {
        out.push(
            problem(
                root,
                path(&["spec", "version"]),
                format!(
                    "{} is not a valid image tag",
                    crate::shown::Quoted(&spec.version)
                ),
            )
            .with_hint("letters, digits, '_', '.', '-', at most 128, not starting with '.' or '-'"),
        );
    }
    if let Some(max) = spec.max_replicas
        && max < spec.size
    {
        out.push(problem(
            root,
            path(&["spec", "maxReplicas"]),
            format!("maxReplicas ({max}) is less than size ({})", spec.size),
        ));
    }
    if let Some(host) = &spec.host
        && !names::is_dns1123_subdomain(host)
    {
        out.push(problem(
            root,
            path(&["spec", "host"]),
            format!(
                "{host} is not a valid host name",
                host = crate::shown::Quoted(host)
            ),
        ));
    }
}
