//! The dashboard's view-model: what each page shows, derived purely from the ManagedApplications,
//! Besties and pods as the watches last saw them (no client, no clock: `now` is given). The HTML
//! layer ([`super::html`]) only lays these values out.

use std::collections::BTreeMap;

use bosun_core::model::{
    AnalysisRun, Bestie, ManagedApplication, ManagedApplicationStatus, Pause, Phase, StrategyType,
};
use bosun_core::names::{ANNOTATION_PROMOTE_STEP, LABEL_REVISION_HASH, LABEL_ROLE, LABEL_VERSION};
use bosun_core::report::{Plan, Rollback, Rollout, app_report};
use bosun_core::rollout::gate::{CONDITION_WAITING_FOR_DEPENDENCIES, CONDITION_WAITING_FOR_WINDOW};
use bosun_core::rollout::objects::job_name;
use bosun_core::rollout::{CONDITION_ROLLED_BACK, JobKind};
use bosun_core::writeback::{CommitOutcome, GitAction, git_actions, render_note};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;

/// Which custom resource a row is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    App,
    Bestie,
}

impl Kind {
    /// The path segment of its pages (`/apps/...`, `/besties/...`).
    pub fn segment(self) -> &'static str {
        match self {
            Kind::App => "apps",
            Kind::Bestie => "besties",
        }
    }

    pub fn from_segment(s: &str) -> Option<Kind> {
        [Kind::App, Kind::Bestie]
            .into_iter()
            .find(|k| k.segment() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            Kind::App => "ManagedApplication",
            Kind::Bestie => "Bestie",
        }
    }
}

/// How a phase is coloured: the page never relies on colour alone (the phase is also written).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Healthy,
    Progressing,
    Waiting,
    Failed,
    Unknown,
}

impl Tone {
    pub fn class(self) -> &'static str {
        match self {
            Tone::Healthy => "healthy",
            Tone::Progressing => "progressing",
            Tone::Waiting => "waiting",
            Tone::Failed => "failed",
            Tone::Unknown => "unknown",
        }
    }
}

/// How far the new version is: a canary's weight, or a blue-green stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    /// 0 to 100.
    pub percent: i32,
    /// `step 1 of 2, 50 %`, `preview`, `switched`.
    pub label: String,
}

/// One row of the overview: an app or a Bestie.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
    /// `Healthy`, `HealthChecking`, ... (a Bestie's derived from its conditions); `Unknown` before
    /// any status.
    pub phase: String,
    pub tone: Tone,
    pub current_version: Option<String>,
    pub target_version: Option<String>,
    /// The revision (hash) serving now, and the one being rolled out.
    pub current_revision: Option<String>,
    pub target_revision: Option<String>,
    /// The git commit whose definition asked for the target.
    pub commit: Option<String>,
    pub strategy: String,
    pub progress: Option<Progress>,
    /// Why it does not go on: a window, a dependency, a promotion.
    pub waiting: Vec<String>,
    /// Why it failed (also after the rollback made it Healthy again, until the next upgrade).
    pub failure: Option<String>,
}

/// The overview's filter (query parameters `namespace` and `phase`; empty means any).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub phase: String,
}

impl Filter {
    pub fn keeps(&self, row: &Row) -> bool {
        (self.namespace.is_empty() || self.namespace == row.namespace)
            && (self.phase.is_empty() || self.phase == row.phase)
    }
}

/// The overview page: the rows kept by the filter, sorted by namespace, name and kind, and the
/// choices of the filter's menus (from every row, so a filter can always be undone).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overview {
    pub rows: Vec<Row>,
    pub total: usize,
    pub namespaces: Vec<String>,
    pub phases: Vec<String>,
    pub filter: Filter,
}

pub fn overview(mut all: Vec<Row>, filter: Filter) -> Overview {
    all.sort_by(|a, b| (&a.namespace, &a.name, a.kind).cmp(&(&b.namespace, &b.name, b.kind)));
    let mut namespaces: Vec<String> = all.iter().map(|r| r.namespace.clone()).collect();
    namespaces.dedup();
    let mut phases: Vec<String> = all.iter().map(|r| r.phase.clone()).collect();
    phases.sort();
    phases.dedup();
    let total = all.len();
    let rows = all.into_iter().filter(|r| filter.keeps(r)).collect();
    Overview {
        rows,
        total,
        namespaces,
        phases,
        filter,
    }
}

fn true_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

fn short(hash_or_sha: &str) -> String {
    hash_or_sha.chars().take(12).collect()
}

fn phase_tone(phase: Option<Phase>) -> Tone {
    match phase {
        Some(Phase::Healthy) => Tone::Healthy,
        Some(Phase::Failed) => Tone::Failed,
        Some(Phase::Pending) => Tone::Waiting,
        Some(Phase::Migrating | Phase::Deploying | Phase::HealthChecking) => Tone::Progressing,
        None => Tone::Unknown,
    }
}

fn in_progress(s: &ManagedApplicationStatus) -> bool {
    matches!(
        s.phase,
        Some(Phase::Pending | Phase::Migrating | Phase::Deploying | Phase::HealthChecking)
    )
}

/// The progress bar of an upgrade in flight: the canary's weight at its step, or the blue-green
/// stage (step 0 the preview, step 1 the switch).
fn app_progress(app: &ManagedApplication, s: &ManagedApplicationStatus) -> Option<Progress> {
    if !in_progress(s) {
        return None;
    }
    match Plan::from_strategy(&app.spec.upgrade_strategy).rollout {
        Rollout::Canary { weights } => {
            let step = s.step_index.unwrap_or(0).max(0) as usize;
            let weight = s.canary_weight.unwrap_or(0).clamp(0, 100);
            Some(Progress {
                percent: weight,
                label: format!(
                    "step {} of {}, {weight} %",
                    (step + 1).min(weights.len()),
                    weights.len()
                ),
            })
        }
        Rollout::BlueGreen => {
            let switched = s.step_index.unwrap_or(0) >= 1;
            Some(if switched {
                Progress {
                    percent: 100,
                    label: "switched to the new side".into(),
                }
            } else {
                Progress {
                    percent: 50,
                    label: "preview beside the old side".into(),
                }
            })
        }
        Rollout::Rolling | Rollout::Recreate => None,
    }
}

/// Whether the step in progress waits for `bosun promote` (and has not been promoted yet).
fn waits_for_promotion(app: &ManagedApplication, s: &ManagedApplicationStatus) -> bool {
    if s.phase != Some(Phase::HealthChecking) {
        return false;
    }
    let step = s.step_index.unwrap_or(0);
    let promoted = app
        .annotations()
        .get(ANNOTATION_PROMOTE_STEP)
        .and_then(|v| v.parse::<i32>().ok())
        == Some(step);
    if promoted {
        return false;
    }
    let strategy = &app.spec.upgrade_strategy;
    match Plan::from_strategy(strategy).rollout {
        Rollout::Canary { .. } => strategy
            .canary
            .as_ref()
            .and_then(|c| c.steps.get(usize::try_from(step).ok()?))
            .is_some_and(|st| st.pause == Some(Pause::UntilPromoted)),
        Rollout::BlueGreen => {
            step == 0 && strategy.blue_green.as_ref().and_then(|b| b.auto_promote) == Some(false)
        }
        Rollout::Rolling | Rollout::Recreate => false,
    }
}

fn waiting_reasons(conditions: &[Condition]) -> Vec<String> {
    let mut reasons = Vec::new();
    if let Some(c) = true_condition(conditions, CONDITION_WAITING_FOR_WINDOW) {
        reasons.push(format!("waiting for an upgrade window: {}", c.message));
    }
    if let Some(c) = true_condition(conditions, CONDITION_WAITING_FOR_DEPENDENCIES) {
        reasons.push(format!("waiting for dependencies: {}", c.message));
    }
    reasons
}

/// The overview row of a ManagedApplication.
pub fn app_row(app: &ManagedApplication) -> Row {
    let s = app.status.clone().unwrap_or_default();
    let mut waiting = waiting_reasons(&s.conditions);
    if waits_for_promotion(app, &s) {
        waiting.push(format!(
            "waiting for promotion: bosun promote {} -n {}",
            app.name_any(),
            app.namespace().unwrap_or_default()
        ));
    }
    let failure = match s.phase {
        Some(Phase::Failed) => Some(s.failure_reason()),
        Some(Phase::Healthy) => true_condition(&s.conditions, CONDITION_ROLLED_BACK)
            .map(|c| format!("rolled back: {}", c.message)),
        _ => None,
    };
    Row {
        kind: Kind::App,
        namespace: app.namespace().unwrap_or_default(),
        name: app.name_any(),
        phase: s
            .phase
            .map_or_else(|| "Unknown".to_string(), |p| p.to_string()),
        tone: phase_tone(s.phase),
        current_version: s.current_version.clone(),
        target_version: s.target_version.clone(),
        current_revision: s.current_hash.as_deref().map(short),
        target_revision: s.target_hash.as_deref().map(short),
        commit: s.target_revision.clone(),
        strategy: strategy_label(app),
        progress: app_progress(app, &s),
        waiting,
        failure,
    }
}

fn strategy_label(app: &ManagedApplication) -> String {
    let s = &app.spec.upgrade_strategy;
    let mut label = match Plan::from_strategy(s).rollout {
        Rollout::Canary { weights } => format!(
            "Canary {}",
            weights
                .iter()
                .map(|w| format!("{w}%"))
                .collect::<Vec<_>>()
                .join(" → ")
        ),
        Rollout::BlueGreen => StrategyType::BlueGreen.to_string(),
        Rollout::Recreate => StrategyType::Recreate.to_string(),
        Rollout::Rolling => StrategyType::Rolling.to_string(),
    };
    if s.migration_job.is_some() {
        label.push_str(" + migration");
    }
    label
}

/// A Bestie's phase, read from its conditions (it has no `phase` of its own).
fn bestie_phase(b: &Bestie) -> (String, Tone) {
    use bosun_core::engine::bestie::{CONDITION_PROGRESSING, CONDITION_READY, reason};
    let s = b.status.clone().unwrap_or_default();
    let progressing = s
        .conditions
        .iter()
        .find(|c| c.type_ == CONDITION_PROGRESSING);
    let ready = true_condition(&s.conditions, CONDITION_READY).is_some();
    match progressing.map(|c| (c.status.as_str(), c.reason.as_str())) {
        Some((_, reason::ROLLOUT_FAILED | reason::SEED_FAILED | reason::NAME_TAKEN)) => {
            ("Failed".into(), Tone::Failed)
        }
        Some(("True", reason::WAITING_FOR_WINDOW | reason::WAITING_FOR_DEPENDENCIES)) => {
            ("Pending".into(), Tone::Waiting)
        }
        Some(("True", reason::ROLLING_BACK)) => ("RollingBack".into(), Tone::Progressing),
        Some(("True", _)) => ("Deploying".into(), Tone::Progressing),
        _ if ready => ("Healthy".into(), Tone::Healthy),
        _ if b.status.is_none() => ("Unknown".into(), Tone::Unknown),
        _ => ("Deploying".into(), Tone::Progressing),
    }
}

/// The overview row of a Bestie.
pub fn bestie_row(b: &Bestie) -> Row {
    let s = b.status.clone().unwrap_or_default();
    let (phase, tone) = bestie_phase(b);
    let failure = (tone == Tone::Failed).then(|| {
        s.conditions
            .iter()
            .find(|c| c.type_ == bosun_core::engine::bestie::CONDITION_PROGRESSING)
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_default()
    });
    let target =
        (s.appversion.as_deref() != Some(b.spec.version.as_str())).then(|| b.spec.version.clone());
    Row {
        kind: Kind::Bestie,
        namespace: b.namespace().unwrap_or_default(),
        name: b.name_any(),
        phase,
        tone,
        current_version: s.appversion.clone(),
        target_version: target.or_else(|| Some(b.spec.version.clone())),
        current_revision: s.last_healthy_template.as_ref().map(|t| t.hash.clone()),
        target_revision: None,
        commit: b
            .annotations()
            .get(bosun_core::names::ANNOTATION_REVISION)
            .cloned(),
        strategy: "Rolling".into(),
        progress: None,
        waiting: waiting_reasons(&s.conditions),
        failure,
    }
}

/// One line of an upgrade's timeline (`status.history`), oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimelineEntry {
    /// RFC 3339.
    pub time: String,
    pub phase: String,
    pub tone: Tone,
    /// `step 1 (50 %)`, when the entry belongs to a canary step.
    pub step: Option<String>,
    pub message: String,
}

/// One metric analysis run, with its latest values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnalysisView {
    pub scope: String,
    pub metric: String,
    pub phase: String,
    pub tone: Tone,
    pub counts: String,
    /// `outcome value` of each kept measurement, oldest first.
    pub values: Vec<String>,
    pub message: Option<String>,
}

/// One pod of the app, on its side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodView {
    /// `stable`, `canary`, `preview` (a Bestie's pods: `app`).
    pub side: String,
    pub name: String,
    pub phase: String,
    pub ready: bool,
    pub version: String,
}

/// A link to the forge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub text: String,
    pub href: Option<String>,
}

/// An app's own page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detail {
    pub row: Row,
    pub message: Option<String>,
    pub timeline: Vec<TimelineEntry>,
    pub analysis: Vec<AnalysisView>,
    /// Active health checks: passes, and the failing pods with their last error.
    pub health: Vec<String>,
    /// The migration Job of the target version, when the strategy has one.
    pub migration_job: Option<String>,
    pub pods: Vec<PodView>,
    pub commit: Option<Link>,
    pub pull_requests: Option<Link>,
    /// How git was set back after a failure: the rollback commit or pull request.
    pub rollback: Option<Link>,
    /// The note Bosun leaves on the source commit once its upgrade ended (`refs/notes/bosun`).
    pub note: Option<String>,
}

/// How to link a commit of a source to its forge: the web address of each source's repository, by
/// source name (`bosun.dev/source`).
#[derive(Clone, Debug, Default)]
pub struct Links {
    pub repos: BTreeMap<String, String>,
    /// Bosun writes rollback commits and notes to git (`--git-write-back`): the note is shown.
    pub write_back: bool,
}

impl Links {
    fn web(&self, source: Option<&String>) -> Option<&str> {
        self.repos.get(source?).map(String::as_str)
    }

    fn commit(&self, source: Option<&String>, sha: &str) -> Link {
        Link {
            text: short(sha),
            href: self.web(source).map(|w| format!("{w}/commit/{sha}")),
        }
    }

    fn pull_requests(&self, source: Option<&String>, sha: &str) -> Option<Link> {
        let web = self.web(source)?;
        Some(Link {
            text: "pull requests with this commit".into(),
            href: Some(format!("{web}/pulls?q={sha}")),
        })
    }
}

/// The web address of a repository given by its git URL, when it has one: `https://host/o/r.git` and
/// `git@host:o/r.git` are `https://host/o/r` (credentials dropped); a local path or file:// has none.
pub fn web_url(git_url: &str) -> Option<String> {
    let rest = git_url
        .strip_prefix("https://")
        .map(|r| ("https", r))
        .or_else(|| git_url.strip_prefix("http://").map(|r| ("http", r)));
    let (scheme, host_path) = match rest {
        Some((scheme, r)) => (scheme, r.to_string()),
        None => {
            // ssh://[user@]host[:port]/path, or scp-like [user@]host:path; a local path has none.
            let (user_host, path) = match git_url.strip_prefix("ssh://") {
                Some(r) => r.split_once('/')?,
                None if git_url.contains("://") || git_url.starts_with(['/', '.']) => return None,
                None => git_url.split_once(':')?,
            };
            if user_host.is_empty() || user_host.contains('/') || path.is_empty() {
                return None;
            }
            let host_port = user_host.rsplit('@').next()?;
            let host = host_port.split(':').next()?;
            ("https", format!("{host}/{}", path.trim_start_matches('/')))
        }
    };
    let host_path = host_path
        .rsplit_once('@')
        .map_or(host_path.as_str(), |(_, h)| h);
    let trimmed = host_path.trim_end_matches('/').trim_end_matches(".git");
    trimmed
        .contains('/')
        .then(|| format!("{scheme}://{trimmed}"))
}

fn timeline(s: &ManagedApplicationStatus) -> Vec<TimelineEntry> {
    s.history
        .iter()
        .map(|h| TimelineEntry {
            time: h.time.0.to_string(),
            phase: h.phase.to_string(),
            tone: phase_tone(Some(h.phase)),
            step: h.step.map(|st| match h.weight {
                Some(w) => format!("step {} ({w} %)", st + 1),
                None => format!("step {}", st + 1),
            }),
            message: h.message.clone(),
        })
        .collect()
}

fn analysis(runs: &[AnalysisRun]) -> Vec<AnalysisView> {
    use bosun_core::model::AnalysisPhase;
    runs.iter()
        .map(|r| AnalysisView {
            scope: r.scope.clone(),
            metric: r.metric.clone(),
            phase: format!("{:?}", r.phase),
            tone: match r.phase {
                AnalysisPhase::Running => Tone::Progressing,
                AnalysisPhase::Successful => Tone::Healthy,
                AnalysisPhase::Failed => Tone::Failed,
            },
            counts: format!(
                "{} passed, {} failed, {} inconclusive",
                r.successful, r.failed, r.inconclusive
            ),
            values: r
                .measurements
                .iter()
                .map(|m| format!("{:?} {}", m.outcome, m.value))
                .collect(),
            message: r.message.clone(),
        })
        .collect()
}

/// The pods of `app` (those of its namespace whose `app` label names it), stable side first.
pub fn app_pods<'a>(app: &ManagedApplication, pods: impl Iterator<Item = &'a Pod>) -> Vec<PodView> {
    let ns = app.namespace().unwrap_or_default();
    let name = app.name_any();
    let mut views: Vec<PodView> = pods
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| p.labels().get("app") == Some(&name))
        .map(|p| {
            let labels = p.labels();
            let status = p.status.clone().unwrap_or_default();
            PodView {
                side: labels.get(LABEL_ROLE).cloned().unwrap_or_default(),
                name: p.name_any(),
                phase: status.phase.clone().unwrap_or_else(|| "Unknown".into()),
                ready: status
                    .conditions
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Ready" && c.status == "True"),
                version: labels
                    .get(LABEL_VERSION)
                    .or_else(|| labels.get(LABEL_REVISION_HASH))
                    .cloned()
                    .unwrap_or_default(),
            }
        })
        .collect();
    let order = |side: &str| match side {
        "stable" => 0,
        "canary" => 1,
        "preview" => 2,
        _ => 3,
    };
    views.sort_by(|a, b| (order(&a.side), &a.name).cmp(&(order(&b.side), &b.name)));
    views
}

/// An app's page.
pub fn app_detail(app: &ManagedApplication, pods: Vec<PodView>, links: &Links) -> Detail {
    let s = app.status.clone().unwrap_or_default();
    let source = app.labels().get(bosun_core::names::LABEL_SOURCE);
    let report = app_report(app);
    let rollback = report
        .as_ref()
        .and_then(|r| r.rollback.as_ref())
        .map(|rb| match rb {
            Rollback::Commit { version, sha, url } => Link {
                text: format!("rollback commit {} (back to {version})", short(sha)),
                href: url.clone().or_else(|| links.commit(source, sha).href),
            },
            Rollback::PullRequest {
                version,
                number,
                url,
            } => Link {
                text: format!("rollback pull request #{number} (back to {version})"),
                href: Some(url.clone()),
            },
            Rollback::ConflictPullRequest {
                version,
                number,
                url,
            } => Link {
                text: format!("rollback pull request #{number} to resolve (back to {version})"),
                href: Some(url.clone()),
            },
        });
    // The note Bosun writes (or wrote) on the source commit once the upgrade ended, word for word.
    let actions = if links.write_back {
        git_actions(&crate::report::view(app))
    } else {
        Vec::new()
    };
    let note = actions.into_iter().find_map(|a| match a {
        GitAction::Note { outcome, .. } => Some(render_note(&CommitOutcome {
            apps: vec![outcome],
        })),
        GitAction::Rollback(_) => None,
    });
    let health = s
        .health_check
        .as_ref()
        .map(|h| {
            let mut lines = vec![format!("{} passing round(s) in a row", h.passes)];
            lines.extend(h.failing_pods.iter().map(|p| {
                format!(
                    "{}: {} failure(s) in a row, last: {}",
                    p.pod, p.failures, p.last_error
                )
            }));
            lines
        })
        .unwrap_or_default();
    let migration_job = match (&app.spec.upgrade_strategy.migration_job, &s.target_version) {
        (Some(_), Some(v)) => Some(job_name(&app.name_any(), JobKind::Up, v)),
        _ => None,
    };
    Detail {
        row: app_row(app),
        message: s.message.clone(),
        timeline: timeline(&s),
        analysis: analysis(&s.analysis_runs),
        health,
        migration_job,
        pods,
        commit: s
            .target_revision
            .as_deref()
            .map(|sha| links.commit(source, sha)),
        pull_requests: s
            .target_revision
            .as_deref()
            .and_then(|sha| links.pull_requests(source, sha)),
        rollback,
        note,
    }
}

/// A Bestie's page: its status lines stand for the timeline and the pods.
pub fn bestie_detail(b: &Bestie, links: &Links) -> Detail {
    let s = b.status.clone().unwrap_or_default();
    let source = b.labels().get(bosun_core::names::LABEL_SOURCE);
    let row = bestie_row(b);
    let timeline = s
        .conditions
        .iter()
        .map(|c| TimelineEntry {
            time: c.last_transition_time.0.to_string(),
            phase: format!("{} {}", c.type_, c.status),
            tone: if c.reason.ends_with("Failed") {
                Tone::Failed
            } else {
                Tone::Unknown
            },
            step: Some(c.reason.clone()),
            message: c.message.clone(),
        })
        .collect();
    let pods = s
        .podstatus
        .iter()
        .map(|line| {
            let mut parts = line.split(" : ");
            let name = parts.next().unwrap_or_default().to_string();
            let phase = parts.next().unwrap_or_default().to_string();
            let image = parts.next().unwrap_or_default().to_string();
            PodView {
                side: "app".into(),
                ready: phase == "Running",
                name,
                phase,
                version: image.rsplit(':').next().unwrap_or_default().to_string(),
            }
        })
        .collect();
    Detail {
        message: None,
        timeline,
        analysis: Vec::new(),
        health: Vec::new(),
        migration_job: None,
        pods,
        commit: row.commit.as_deref().map(|sha| links.commit(source, sha)),
        pull_requests: row
            .commit
            .as_deref()
            .and_then(|sha| links.pull_requests(source, sha)),
        rollback: None,
        note: None,
        row,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn app(spec: serde_json::Value, status: serde_json::Value) -> ManagedApplication {
        serde_json::from_value(json!({
            "apiVersion": "apps.example.com/v1alpha1",
            "kind": "ManagedApplication",
            "metadata": {"name": "shop", "namespace": "prod", "labels": {"bosun.dev/source": "apps"}},
            "spec": spec,
            "status": status,
        }))
        .expect("a ManagedApplication")
    }

    fn canary_spec(pause: serde_json::Value) -> serde_json::Value {
        json!({"version": "2.0.0", "upgradeStrategy": {"type": "Canary", "canary": {"steps": [
            {"weight": 25, "pause": pause}, {"weight": 100}
        ]}}})
    }

    #[test]
    fn a_canary_at_its_first_step_shows_its_weight_and_waits_for_promotion() {
        let a = app(
            canary_spec(json!("untilPromoted")),
            json!({"phase": "HealthChecking", "currentVersion": "1.0.0", "targetVersion": "2.0.0",
                   "stepIndex": 0, "canaryWeight": 25, "targetRevision": "abcdef0123456789"}),
        );
        let row = app_row(&a);
        assert_eq!(row.phase, "HealthChecking");
        assert_eq!(row.tone, Tone::Progressing);
        assert_eq!(
            row.progress,
            Some(Progress {
                percent: 25,
                label: "step 1 of 2, 25 %".into()
            })
        );
        assert_eq!(row.strategy, "Canary 25% → 100%");
        assert_eq!(
            row.waiting,
            vec!["waiting for promotion: bosun promote shop -n prod".to_string()]
        );
        assert_eq!(row.failure, None);
    }

    #[test]
    fn a_promoted_step_no_longer_waits_for_promotion() {
        let mut a = app(
            canary_spec(json!("untilPromoted")),
            json!({"phase": "HealthChecking", "stepIndex": 0, "canaryWeight": 25}),
        );
        a.metadata.annotations = Some([(ANNOTATION_PROMOTE_STEP.to_string(), "0".into())].into());
        assert!(app_row(&a).waiting.is_empty());
    }

    #[test]
    fn a_failed_upgrade_shows_the_reason_of_its_first_failure() {
        let a = app(
            canary_spec(json!(5)),
            json!({"phase": "Failed", "history": [
                {"phase": "Deploying", "time": "2026-01-01T00:00:00Z", "step": 0, "weight": 25, "message": "canary 25 %"},
                {"phase": "Failed", "time": "2026-01-01T00:01:00Z", "message": "pods not ready within 20 s"},
                {"phase": "Failed", "time": "2026-01-01T00:02:00Z", "message": "rolled back to 1.0.0"}
            ]}),
        );
        let row = app_row(&a);
        assert_eq!(row.tone, Tone::Failed);
        assert_eq!(row.failure.as_deref(), Some("pods not ready within 20 s"));
        assert_eq!(row.progress, None);
        let detail = app_detail(&a, Vec::new(), &Links::default());
        assert_eq!(detail.timeline.len(), 3);
        assert_eq!(detail.timeline[0].step.as_deref(), Some("step 1 (25 %)"));
        assert_eq!(detail.timeline[1].tone, Tone::Failed);
    }

    #[test]
    fn a_healthy_app_after_a_rollback_still_says_what_failed() {
        let a = app(
            canary_spec(json!(5)),
            json!({"phase": "Healthy", "conditions": [{"type": "RolledBack", "status": "True",
                "reason": "HealthCheckFailed", "message": "2.0.0 failed its checks",
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}),
        );
        assert_eq!(
            app_row(&a).failure.as_deref(),
            Some("rolled back: 2.0.0 failed its checks")
        );
    }

    #[test]
    fn waiting_for_a_window_and_for_dependencies_are_both_shown() {
        let cond = |t: &str, m: &str| {
            json!({"type": t, "status": "True", "reason": t, "message": m,
                   "lastTransitionTime": "2026-01-01T00:00:00Z"})
        };
        let a = app(
            json!({"version": "2.0.0"}),
            json!({"phase": "Pending", "conditions": [
                cond("WaitingForWindow", "next window opens Mon 09:00"),
                cond("WaitingForDependencies", "orders is at 1.0.0")
            ]}),
        );
        let row = app_row(&a);
        assert_eq!(row.tone, Tone::Waiting);
        assert_eq!(
            row.waiting,
            vec![
                "waiting for an upgrade window: next window opens Mon 09:00".to_string(),
                "waiting for dependencies: orders is at 1.0.0".to_string(),
            ]
        );
    }

    #[test]
    fn blue_green_shows_its_stage() {
        let spec = json!({"version": "2.0.0", "upgradeStrategy": {"type": "BlueGreen",
            "blueGreen": {"autoPromote": false}}});
        let preview = app(
            spec.clone(),
            json!({"phase": "HealthChecking", "stepIndex": 0}),
        );
        let row = app_row(&preview);
        assert_eq!(row.progress.map(|p| p.percent), Some(50));
        assert_eq!(row.waiting.len(), 1);
        let switched = app(spec, json!({"phase": "HealthChecking", "stepIndex": 1}));
        assert_eq!(
            app_row(&switched).progress.map(|p| p.label),
            Some("switched to the new side".into())
        );
    }

    #[test]
    fn the_filter_keeps_the_namespace_and_phase_asked_for_and_lists_every_choice() {
        let mut rows = Vec::new();
        for (ns, phase) in [("b", "Healthy"), ("a", "Failed"), ("a", "Healthy")] {
            let mut a = app(json!({"version": "1"}), json!({"phase": phase}));
            a.metadata.namespace = Some(ns.into());
            rows.push(app_row(&a));
        }
        let all = overview(rows.clone(), Filter::default());
        assert_eq!(all.rows.len(), 3);
        assert_eq!(all.namespaces, vec!["a", "b"]);
        assert_eq!(all.phases, vec!["Failed", "Healthy"]);
        let some = overview(
            rows,
            Filter {
                namespace: "a".into(),
                phase: "Healthy".into(),
            },
        );
        assert_eq!(some.rows.len(), 1);
        assert_eq!(some.total, 3);
        assert_eq!(some.namespaces, vec!["a", "b"]);
    }

    #[test]
    fn pods_are_grouped_by_side_stable_first() {
        let pod = |name: &str, app: &str, role: &str, ready: &str| -> Pod {
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "prod",
                             "labels": {"app": app, "bosun.dev/role": role, "bosun.dev/version": "v"}},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": ready}]}
            }))
            .expect("a pod")
        };
        let pods = [
            pod("shop-canary-1", "shop", "canary", "False"),
            pod("shop-2", "shop", "stable", "True"),
            pod("cart-1", "cart", "stable", "True"),
        ];
        let a = app(json!({"version": "1"}), json!({}));
        let views = app_pods(&a, pods.iter());
        let shown: Vec<(&str, &str, bool)> = views
            .iter()
            .map(|p| (p.side.as_str(), p.name.as_str(), p.ready))
            .collect();
        assert_eq!(
            shown,
            vec![
                ("stable", "shop-2", true),
                ("canary", "shop-canary-1", false)
            ]
        );
    }

    #[test]
    fn commits_link_to_the_sources_forge() {
        assert_eq!(
            web_url("https://user:secret@github.com/acme/apps.git").as_deref(),
            Some("https://github.com/acme/apps")
        );
        assert_eq!(
            web_url("git@gitlab.example.com:team/apps.git").as_deref(),
            Some("https://gitlab.example.com/team/apps")
        );
        assert_eq!(
            web_url("ssh://git@git.example.com:2222/team/apps.git").as_deref(),
            Some("https://git.example.com/team/apps")
        );
        assert_eq!(web_url("/srv/git/apps"), None);
        assert_eq!(web_url("file:///srv/git/apps"), None);
        let links = Links {
            repos: [(
                "apps".to_string(),
                "https://github.com/acme/apps".to_string(),
            )]
            .into(),
            write_back: true,
        };
        let a = app(
            json!({"version": "1"}),
            json!({"phase": "Healthy", "targetRevision": "0123456789abcdef"}),
        );
        let d = app_detail(&a, Vec::new(), &links);
        assert_eq!(
            d.commit,
            Some(Link {
                text: "0123456789ab".into(),
                href: Some("https://github.com/acme/apps/commit/0123456789abcdef".into())
            })
        );
    }

    #[test]
    fn a_rolled_back_upgrade_links_its_rollback_commit_and_says_what_the_note_says() {
        let mut a = app(
            canary_spec(json!(5)),
            json!({"phase": "Failed", "currentVersion": "1.0.0", "targetVersion": "2.0.0",
                   "lastHealthyVersion": "1.0.0", "failedVersion": "2.0.0",
                   "targetRevision": "feedc0de00000000000000000000000000000000",
                   "history": [{"phase": "Failed", "time": "2026-01-01T00:01:00Z",
                                "message": "pods not ready within 20 s"}]}),
        );
        a.metadata.annotations = Some(
            [
                (
                    bosun_core::names::ANNOTATION_ROLLBACK_OF.to_string(),
                    "feedc0de00000000000000000000000000000000".to_string(),
                ),
                (
                    bosun_core::names::ANNOTATION_ROLLBACK_COMMIT.to_string(),
                    "beef000000000000000000000000000000000000".to_string(),
                ),
            ]
            .into(),
        );
        let mut links = Links {
            repos: [(
                "apps".to_string(),
                "https://git.example.com/acme/apps".to_string(),
            )]
            .into(),
            write_back: false,
        };
        assert_eq!(
            app_detail(&a, Vec::new(), &links).note,
            None,
            "no write-back, no note"
        );
        links.write_back = true;
        let d = app_detail(&a, Vec::new(), &links);
        assert_eq!(
            d.rollback,
            Some(Link {
                text: "rollback commit beef00000000 (back to 1.0.0)".into(),
                href: Some(
                    "https://git.example.com/acme/apps/commit/beef000000000000000000000000000000000000"
                        .into()
                ),
            })
        );
        let note = d.note.expect("the note of the rolled-back upgrade");
        assert!(
            note.starts_with("bosun prod/shop: 1.0.0 -> 2.0.0, rolled back to 1.0.0\n"),
            "{note}"
        );
        assert!(note.contains("pods not ready within 20 s"), "{note}");
    }

    #[test]
    fn a_bestie_reads_its_phase_from_its_conditions() {
        let b: Bestie = serde_json::from_value(json!({
            "apiVersion": "pets.bestie.com/v1", "kind": "Bestie",
            "metadata": {"name": "pet", "namespace": "pets"},
            "spec": {"size": 1, "image": "bestie", "version": "2.0.0"},
            "status": {"appversion": "1.0.0", "podstatus": ["pet-1 : Running : bestie:1.0.0"],
                "conditions": [{"type": "Progressing", "status": "False", "reason": "RolloutFailed",
                    "message": "pods not ready within 600 s", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .expect("a Bestie");
        let row = bestie_row(&b);
        assert_eq!((row.phase.as_str(), row.tone), ("Failed", Tone::Failed));
        assert_eq!(
            row.failure.as_deref(),
            Some("RolloutFailed: pods not ready within 600 s")
        );
        assert_eq!(row.target_version.as_deref(), Some("2.0.0"));
        let d = bestie_detail(&b, &Links::default());
        assert_eq!(d.pods[0].version, "1.0.0");
        assert_eq!(d.pods[0].name, "pet-1");
    }
}
