//! Operating Bosun from the command line: `bosun status`, `promote`, `abort`, `retry` and `plan`.
//!
//! `promote` (and `promote --now`, which starts an upgrade outside its upgrade windows), `abort` and
//! `retry` write one annotation on the ManagedApplication; the engine reads it on
//! its next reconcile (so they work whichever replica leads, and survive restarts). Each checks first
//! that the app is in a state where the request means something, and says what to do otherwise.

use std::process::ExitCode;

use bosun_core::model::{ManagedApplication, ManagedApplicationStatus, Phase};
use futures::StreamExt;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use crate::engine::{
    ANNOTATION_ABORT, ANNOTATION_PROMOTE_NOW, ANNOTATION_PROMOTE_STEP, ANNOTATION_RETRY,
};

/// Which request a user makes of one app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Promote,
    /// `promote --now`: start the waiting upgrade outside its upgrade windows.
    PromoteNow,
    Abort,
    Retry,
}

/// Decides the annotation for a request from the app's status, or says why the request makes no sense
/// now. Pure, so each refusal is tested without a cluster.
///
/// # Errors
/// A message for the user when the app is not in a state the request applies to.
pub fn annotation_for(
    request: Request,
    app: &str,
    status: &ManagedApplicationStatus,
) -> Result<(&'static str, String), String> {
    let phase = status
        .phase
        .map_or_else(|| "not started".to_string(), |p| p.to_string());
    let upgrading = matches!(
        status.phase,
        Some(Phase::Pending | Phase::Migrating | Phase::Deploying | Phase::HealthChecking)
    );
    match request {
        Request::Promote => {
            if !upgrading {
                return Err(format!(
                    "{app} is not upgrading (phase {phase}): there is nothing to promote"
                ));
            }
            let step = status.step_index.unwrap_or(0);
            Ok((ANNOTATION_PROMOTE_STEP, step.to_string()))
        }
        Request::PromoteNow => match (&status.target_hash, &status.target_version, upgrading) {
            (Some(hash), _, true) => Ok((ANNOTATION_PROMOTE_NOW, hash.clone())),
            (None, Some(version), true) => Ok((ANNOTATION_PROMOTE_NOW, version.clone())),
            _ => Err(format!(
                "{app} is not upgrading (phase {phase}): there is nothing to start now"
            )),
        },
        Request::Abort => match (&status.target_version, upgrading) {
            (Some(target), true) => Ok((ANNOTATION_ABORT, target.clone())),
            _ => Err(format!(
                "{app} is not upgrading (phase {phase}): there is nothing to abort"
            )),
        },
        Request::Retry => match (&status.failed_version, status.phase) {
            (Some(failed), Some(Phase::Failed)) => Ok((ANNOTATION_RETRY, failed.clone())),
            _ => Err(format!(
                "{app} has no failed upgrade to retry (phase {phase}); to upgrade, change spec.version in git"
            )),
        },
    }
}

async fn client() -> Result<Client, String> {
    Client::try_default()
        .await
        .map_err(|e| format!("cannot reach Kubernetes: {e} (set KUBECONFIG)"))
}

/// `bosun promote|abort|retry APP`.
pub async fn request(request: Request, app: &str, namespace: Option<&str>) -> ExitCode {
    let client = match client().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bosun: {e}");
            return ExitCode::from(2);
        }
    };
    let ns = namespace.map_or_else(|| client.default_namespace().to_string(), str::to_string);
    let api: Api<ManagedApplication> = Api::namespaced(client, &ns);
    let live = match api.get_opt(app).await {
        Ok(Some(a)) => a,
        Ok(None) if request == Request::PromoteNow => {
            return promote_bestie_now(api.into_client(), &ns, app).await;
        }
        Ok(None) => {
            eprintln!(
                "bosun: no ManagedApplication {app} in namespace {ns} (`bosun status -A` lists them)"
            );
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("bosun: reading {ns}/{app}: {e}");
            return ExitCode::from(2);
        }
    };
    let status = live.status.clone().unwrap_or_default();
    let decided = annotation_for(request, app, &status);
    let value = match annotate(&api, app, &format!("{ns}/{app}"), decided).await {
        Ok(v) => v,
        Err(code) => return code,
    };
    let what = match request {
        Request::Promote => format!(
            "promoted step {} of {ns}/{app} ({})",
            status.step_index.unwrap_or(0) + 1,
            status.target_version.as_deref().unwrap_or("?")
        ),
        Request::PromoteNow => format!(
            "starting the upgrade of {ns}/{app} to {} now, outside its upgrade windows",
            status.target_version.as_deref().unwrap_or("?")
        ),
        Request::Abort => format!("aborting the upgrade of {ns}/{app} to {value}; it rolls back"),
        Request::Retry => format!("retrying {value} for {ns}/{app}"),
    };
    println!("{what}; follow it with `bosun status -n {ns} --watch`");
    ExitCode::SUCCESS
}

/// The annotation `bosun promote --now` sets on a Bestie: the version of its template that waits
/// for a window, or why there is nothing to start.
///
/// # Errors
/// A message for the user when the Bestie waits for no window.
pub fn bestie_promote_now(
    bestie: &bosun_core::model::Bestie,
) -> Result<(&'static str, String), String> {
    let name = bestie.name_any();
    let waits = bestie.status.as_ref().is_some_and(|s| {
        s.conditions.iter().any(|c| {
            c.type_ == bosun_core::engine::bestie::reason::WAITING_FOR_WINDOW && c.status == "True"
        })
    });
    if waits {
        Ok((ANNOTATION_PROMOTE_NOW, bestie.spec.version.clone()))
    } else {
        Err(format!(
            "Bestie {name} waits for no upgrade window: there is nothing to start now"
        ))
    }
}

/// `bosun promote --now` of a Bestie (no ManagedApplication has the name).
async fn promote_bestie_now(client: Client, ns: &str, name: &str) -> ExitCode {
    let api: Api<bosun_core::model::Bestie> = Api::namespaced(client, ns);
    let bestie = match api.get_opt(name).await {
        Ok(Some(b)) => b,
        Ok(None) => {
            eprintln!(
                "bosun: no ManagedApplication or Bestie {name} in namespace {ns} (`bosun status -A` lists ManagedApplications, `kubectl get besties -A` Besties)"
            );
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("bosun: reading Bestie {ns}/{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let decided = bestie_promote_now(&bestie);
    let value = match annotate(&api, name, &format!("Bestie {ns}/{name}"), decided).await {
        Ok(v) => v,
        Err(code) => return code,
    };
    println!(
        "starting the rollout of Bestie {ns}/{name} to {value} now, outside its upgrade windows; follow it with `kubectl get bestie {name} -n {ns} -w`"
    );
    ExitCode::SUCCESS
}

/// Sets the annotation a request decided on `name` (`what` names it in messages), or says why
/// not: the value set, or the exit code.
async fn annotate<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    decided: Result<(&'static str, String), String>,
) -> Result<String, ExitCode>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let (key, value) = decided.map_err(|why| {
        eprintln!("bosun: {why}");
        ExitCode::from(1)
    })?;
    let patch = json!({"metadata": {"annotations": {key: &value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            eprintln!("bosun: annotating {what}: {e}");
            ExitCode::from(2)
        })?;
    Ok(value)
}

/// One row of `bosun status`.
pub fn row(app: &ManagedApplication, now: k8s_openapi::jiff::Timestamp) -> Vec<String> {
    let s = app.status.clone().unwrap_or_default();
    let steps = app
        .spec
        .upgrade_strategy
        .canary
        .as_ref()
        .map_or(0, |c| c.steps.len());
    let step = match (s.step_index, steps) {
        (Some(i), n) if n > 0 && matches!(s.phase, Some(p) if p != Phase::Healthy) => {
            format!("{}/{n}", (i as usize + 1).min(n))
        }
        _ => "-".into(),
    };
    let since = s
        .history
        .last()
        .map(|h| h.time.0)
        .or_else(|| s.conditions.iter().map(|c| c.last_transition_time.0).max())
        .map_or_else(|| "-".into(), |t| age(now.as_second() - t.as_second()));
    let message = message(&s);
    vec![
        app.namespace().unwrap_or_default(),
        app.name_any(),
        s.phase.map_or_else(|| "-".into(), |p| p.to_string()),
        s.current_version.unwrap_or_else(|| "-".into()),
        s.target_version.unwrap_or_else(|| "-".into()),
        step,
        s.canary_weight
            .map_or_else(|| "-".into(), |w| format!("{w}%")),
        since,
        message,
    ]
}

/// The status message; for an app Healthy again after a rollback, what failed (the RolledBack
/// condition stays until the next upgrade, so the failure does not vanish once git catches up).
fn message(s: &bosun_core::model::ManagedApplicationStatus) -> String {
    let rolled_back = s
        .conditions
        .iter()
        .find(|c| c.type_ == bosun_core::engine::app::CONDITION_ROLLED_BACK && c.status == "True");
    match (s.phase, rolled_back) {
        (Some(Phase::Healthy), Some(c)) => format!("rolled back: {}", c.message),
        _ => s.message.clone().unwrap_or_default(),
    }
}

fn age(secs: i64) -> String {
    match secs.max(0) {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// Renders rows as aligned columns under a header.
pub fn table(rows: &[Vec<String>]) -> String {
    let header: Vec<String> = [
        "NAMESPACE",
        "NAME",
        "PHASE",
        "CURRENT",
        "TARGET",
        "STEP",
        "WEIGHT",
        "SINCE",
        "MESSAGE",
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    let all: Vec<&Vec<String>> = std::iter::once(&header).chain(rows.iter()).collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| all.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in all {
        let line: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i + 1 == r.len() {
                    c.clone()
                } else {
                    format!("{c:<w$}", w = widths[i])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// `bosun status`: every app's phase, versions, step and last transition; `--watch` redraws on change.
pub async fn status(namespace: Option<&str>, all: bool, watch: bool, json_out: bool) -> ExitCode {
    let client = match client().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bosun: {e}");
            return ExitCode::from(2);
        }
    };
    let api: Api<ManagedApplication> = if all {
        Api::all(client)
    } else {
        let ns = namespace.map_or_else(|| client.default_namespace().to_string(), str::to_string);
        Api::namespaced(client, &ns)
    };
    let print = |apps: &[ManagedApplication]| {
        let now = k8s_openapi::jiff::Timestamp::now();
        if json_out {
            let v: Vec<_> = apps
                .iter()
                .map(|a| json!({"namespace": a.namespace(), "name": a.name_any(), "status": a.status}))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v).expect("JSON"));
        } else if apps.is_empty() {
            println!("no ManagedApplications");
        } else {
            let rows: Vec<_> = apps.iter().map(|a| row(a, now)).collect();
            print!("{}", table(&rows));
        }
    };
    if !watch {
        return match api.list(&ListParams::default()).await {
            Ok(list) => {
                print(&list.items);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bosun: listing ManagedApplications: {e}");
                ExitCode::from(2)
            }
        };
    }
    let (reader, writer) = kube::runtime::reflector::store();
    let stream = kube::runtime::reflector(writer, watcher(api, watcher::Config::default()))
        .applied_objects()
        .boxed();
    let mut stream = stream;
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    while let Some(event) = stream.next().await {
        if let Err(e) = event {
            eprintln!("bosun: watching ManagedApplications: {e}");
            continue;
        }
        let mut apps: Vec<ManagedApplication> =
            reader.state().iter().map(|a| (**a).clone()).collect();
        apps.sort_by_key(|a| (a.namespace(), a.name_any()));
        if tty {
            // Redraw in place: clear the screen and go home.
            print!("\x1b[2J\x1b[H");
        } else {
            println!();
        }
        print(&apps);
    }
    ExitCode::SUCCESS
}

/// `bosun plan`: what each source's current revision would change, changing nothing.
pub async fn plan(config: crate::config::RunConfig) -> ExitCode {
    use bosun_core::sync::{ApplyReason, Kept, SyncAction};
    let cluster = match crate::cluster::Cluster::connect().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bosun plan: {e}");
            return ExitCode::from(2);
        }
    };
    let prepared = match crate::run::plan(config).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("bosun plan: {e:#}");
            return ExitCode::from(2);
        }
    };
    let mut invalid = false;
    for (source, p) in prepared {
        let short: String = p.revision.chars().take(12).collect();
        println!("source {source} at {short}:");
        for f in &p.findings {
            println!("  invalid: {f}");
            invalid = true;
        }
        for (path, why) in &p.refused {
            println!("  not read: {path}: {why}");
        }
        for action in &p.plan.actions {
            match action {
                SyncAction::Apply {
                    desired,
                    reason: ApplyReason::Create,
                } => println!("  + create {} ({})", desired.key, desired.source_path),
                SyncAction::Apply { desired, reason } => {
                    let what = if *reason == ApplyReason::Drift {
                        "put back (changed in the cluster, not in git)"
                    } else {
                        "update"
                    };
                    println!("  ~ {what} {} ({})", desired.key, desired.source_path);
                    let live = cluster.get(&desired.key).await.ok().flatten();
                    let old = live
                        .as_ref()
                        .map_or(serde_json::Value::Null, |l| l["spec"].clone());
                    for c in bosun_core::diff::changes("spec", &old, &desired.object["spec"]) {
                        println!("      {c}");
                    }
                }
                SyncAction::Prune { key } => println!("  - prune {key}"),
            }
        }
        for kept in &p.plan.kept {
            match kept {
                Kept::InvalidFile { key, file } => {
                    println!("  = keep {key}: {file} is invalid, its last good state stays");
                }
                Kept::PruneDisabled { key } => {
                    println!("  = keep {key}: no longer in git, but prune is off");
                }
                Kept::EmptyRevisionGuard { key } => {
                    println!(
                        "  = keep {key}: this revision defines nothing (allow with allowEmpty)"
                    );
                }
            }
        }
        if p.plan.actions.is_empty() {
            println!("  no changes ({} unchanged)", p.plan.unchanged);
        } else {
            println!("  {} unchanged", p.plan.unchanged);
        }
    }
    if invalid {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(phase: Phase) -> ManagedApplicationStatus {
        ManagedApplicationStatus {
            phase: Some(phase),
            current_version: Some("v1".into()),
            target_version: Some("v2".into()),
            step_index: Some(1),
            ..ManagedApplicationStatus::default()
        }
    }

    #[test]
    fn promote_names_the_step_in_progress() {
        let got = annotation_for(Request::Promote, "shop", &status(Phase::HealthChecking));
        assert_eq!(got, Ok((ANNOTATION_PROMOTE_STEP, "1".into())));
    }

    #[test]
    fn promote_now_names_the_target_revision_and_needs_an_upgrade() {
        let mut waiting = status(Phase::Pending);
        waiting.target_hash = Some("5d41402abc".into());
        let got = annotation_for(Request::PromoteNow, "shop", &waiting);
        assert_eq!(got, Ok((ANNOTATION_PROMOTE_NOW, "5d41402abc".into())));
        let e = annotation_for(Request::PromoteNow, "shop", &status(Phase::Healthy))
            .expect_err("nothing waits");
        assert!(e.contains("nothing to start now"), "{e}");
    }

    #[test]
    fn promote_abort_and_retry_are_refused_when_they_mean_nothing() {
        let healthy = status(Phase::Healthy);
        let e = annotation_for(Request::Promote, "shop", &healthy).expect_err("nothing to promote");
        assert!(e.contains("not upgrading (phase Healthy)"), "{e}");
        let e = annotation_for(Request::Abort, "shop", &healthy).expect_err("nothing to abort");
        assert!(e.contains("nothing to abort"), "{e}");
        let e = annotation_for(Request::Retry, "shop", &healthy).expect_err("nothing failed");
        assert!(e.contains("change spec.version in git"), "{e}");
    }

    #[test]
    fn abort_names_the_target_and_retry_the_failed_version() {
        assert_eq!(
            annotation_for(Request::Abort, "shop", &status(Phase::Deploying)),
            Ok((ANNOTATION_ABORT, "v2".into()))
        );
        let mut failed = status(Phase::Failed);
        failed.failed_version = Some("v2".into());
        assert_eq!(
            annotation_for(Request::Retry, "shop", &failed),
            Ok((ANNOTATION_RETRY, "v2".into()))
        );
    }

    #[test]
    fn a_healthy_app_after_a_rollback_still_says_what_failed_until_the_next_upgrade() {
        let mut s = status(Phase::Healthy);
        s.message = Some("v1 already runs: nothing to roll out".into());
        assert_eq!(message(&s), "v1 already runs: nothing to roll out");
        s.conditions
            .push(k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
                type_: "RolledBack".into(),
                status: "True".into(),
                reason: "RolledBack".into(),
                message:
                    "v2 failed and was rolled back to v1: pods of v2 did not become ready in time"
                        .into(),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
                ),
                observed_generation: None,
            });
        assert_eq!(
            message(&s),
            "rolled back: v2 failed and was rolled back to v1: pods of v2 did not become ready in time"
        );
    }

    #[test]
    fn the_table_aligns_columns() {
        let rows = vec![
            vec![
                "shop",
                "orders",
                "Healthy",
                "v2",
                "v2",
                "-",
                "-",
                "5m",
                "v2 is healthy",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            vec![
                "pets",
                "bestie-frontend",
                "Deploying",
                "v1",
                "v2",
                "1/3",
                "25%",
                "3s",
                "",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        let col = lines[0].find("PHASE").expect("PHASE column");
        assert_eq!(lines[1].find("Healthy"), Some(col));
        assert_eq!(lines[2].find("Deploying"), Some(col));
    }
}
