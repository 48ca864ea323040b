//! Report: the last stage of the flow (fetch → validate → observe → plan → apply → **report**). From a
//! typed summary of what one source commit did to each application it changed, this module renders
//! what GitHub shows: a commit status per application ([`commit_statuses`]) and the body of the one
//! pull request comment that Bosun keeps editing ([`pr_comment`]).
//!
//! Pure: no client, no clock. Every time shown comes from the transitions given, so the same summary
//! always renders the same bytes — the forge compares bodies and skips an edit that changes nothing.

use std::fmt::Write as _;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use kube::ResourceExt;

use crate::model::{
    HistoryEntry, ManagedApplication, ManagedApplicationStatus, Phase, StrategyType,
    UpgradeStrategy,
};
use crate::names::{
    ANNOTATION_ROLLBACK_COMMIT, ANNOTATION_ROLLBACK_CONFLICT, ANNOTATION_ROLLBACK_OF,
    ANNOTATION_ROLLBACK_PR,
};
use crate::rollout::gate::{CONDITION_WAITING_FOR_DEPENDENCIES, CONDITION_WAITING_FOR_WINDOW};
use crate::rollout::objects::job_name;
use crate::rollout::{CONDITION_ROLLED_BACK, JobKind, REASON_MIGRATION_FAILED};
use crate::writeback::upgrade_change;

/// The first line of every comment Bosun writes: how it finds its own comment again after a restart.
pub const COMMENT_MARKER: &str = "<!-- bosun:pr-comment -->";

/// GitHub refuses a commit status whose description is longer than this (in characters).
pub const DESCRIPTION_LIMIT: usize = 140;

/// At most this many failing pods are named; the rest are counted.
const MAX_PODS_LISTED: usize = 5;

/// A reason longer than this (in characters) is cut in the comment's table.
const REASON_LIMIT: usize = 300;

/// What one source commit did to the applications it changed.
#[derive(Clone, Debug, PartialEq)]
pub struct ChangeSummary {
    /// The source commit (full sha); the comment shows its first 7 characters.
    pub commit: String,
    /// One entry per changed application, in the order they should be shown.
    pub apps: Vec<AppReport>,
    /// How the forge names a pull request.
    pub words: Words,
}

/// How a forge names what GitHub and Gitea call a pull request: GitLab says merge request, and
/// refers to one as `!9`, not `#9`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Words {
    #[default]
    PullRequest,
    MergeRequest,
}

impl Words {
    /// "pull request" or "merge request".
    pub fn noun(self) -> &'static str {
        match self {
            Words::PullRequest => "pull request",
            Words::MergeRequest => "merge request",
        }
    }

    /// "PR" or "MR".
    pub fn short(self) -> &'static str {
        match self {
            Words::PullRequest => "PR",
            Words::MergeRequest => "MR",
        }
    }

    /// `#9` or `!9`.
    pub fn reference(self, number: u64) -> String {
        match self {
            Words::PullRequest => format!("#{number}"),
            Words::MergeRequest => format!("!{number}"),
        }
    }
}

/// The upgrade of one application.
#[derive(Clone, Debug, PartialEq)]
pub struct AppReport {
    pub namespace: String,
    pub name: String,
    /// The version before the upgrade; `None` for a first install.
    pub from_version: Option<String>,
    pub to_version: String,
    /// The phase now (`status.phase`).
    pub phase: Phase,
    /// The transitions of this upgrade, oldest first (`status.history`).
    pub transitions: Vec<Transition>,
    /// The steps the upgrade goes through, so that steps not reached yet can be listed.
    pub plan: Plan,
    /// Why it failed and what failed, once `phase` is `Failed`.
    pub failure: Option<Failure>,
    /// How git was set back after a failure.
    pub rollback: Option<Rollback>,
    /// Bosun itself could not carry the upgrade out (the definition at this commit is invalid, say):
    /// the commit status is `error` with this text, whatever the phase.
    pub error: Option<String>,
    /// What the upgrade windows did to it: it waits for one, or a human started it outside them.
    pub window: Option<WindowNote>,
}

/// An upgrade and its windows.
#[derive(Clone, Debug, PartialEq)]
pub enum WindowNote {
    /// It waits for a window to open (the `WaitingForWindow` condition's message).
    Waiting(String),
    /// A human started it outside its upgrade windows (`bosun promote --now`).
    StartedOutside,
}

impl AppReport {
    /// `bosun/<namespace>/<app>`: the commit status context of this app.
    pub fn context(&self) -> String {
        format!("bosun/{}/{}", self.namespace, self.name)
    }
}

/// One transition, as `HistoryEntry` records it in `status.history`.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    /// The phase entered.
    pub phase: Phase,
    /// When it was entered.
    pub time: Time,
    /// The canary step (0-based) it belongs to, if any. With BlueGreen, 0 is the preview and 1 the
    /// switch of the Service.
    pub step: Option<i32>,
    /// The canary weight at that moment, if any.
    pub weight: Option<i32>,
    /// What happened, for humans.
    pub message: String,
}

impl From<&HistoryEntry> for Transition {
    fn from(h: &HistoryEntry) -> Self {
        Transition {
            phase: h.phase,
            time: h.time.clone(),
            step: h.step,
            weight: h.weight,
            message: h.message.clone(),
        }
    }
}

/// The steps of an upgrade, from its strategy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// A migration Job runs first.
    pub migration: bool,
    pub rollout: Rollout,
}

/// How the new version reaches all pods.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    Rolling,
    Recreate,
    /// Canary steps with these weights (percent), then the promotion to 100 %.
    Canary {
        weights: Vec<i32>,
    },
    /// The new side runs beside the old (preview), then the Service switches.
    BlueGreen,
}

impl Plan {
    /// The plan of a spec's strategy, read as the engine reads it: canary steps count only when
    /// enabled (by default with `type: Canary`) and not empty.
    pub fn from_strategy(s: &UpgradeStrategy) -> Plan {
        let canary = s.canary.as_ref().and_then(|c| {
            let enabled = c.enabled.unwrap_or(s.type_ == StrategyType::Canary);
            (enabled && !c.steps.is_empty()).then(|| c.steps.iter().map(|st| st.weight).collect())
        });
        let rollout = match (s.type_, canary) {
            (StrategyType::BlueGreen, _) => Rollout::BlueGreen,
            (StrategyType::Recreate, _) => Rollout::Recreate,
            (_, Some(weights)) => Rollout::Canary { weights },
            (StrategyType::Rolling | StrategyType::RollingWithMigration, None)
            | (StrategyType::Canary, None) => Rollout::Rolling,
        };
        Plan {
            migration: s.migration_job.is_some(),
            rollout,
        }
    }

    fn steps(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        if self.migration {
            steps.push(Step::Migration);
        }
        match &self.rollout {
            Rollout::Rolling => steps.push(Step::Rollout),
            Rollout::Recreate => steps.push(Step::Recreate),
            Rollout::Canary { weights } => {
                steps.extend(weights.iter().map(|w| Step::Canary { weight: *w }));
                steps.push(Step::Promote);
            }
            Rollout::BlueGreen => {
                steps.push(Step::Preview);
                steps.push(Step::Switch);
            }
        }
        steps.push(Step::Healthy);
        steps
    }

    /// The row of the step a transition into `Migrating`, `Deploying` or `HealthChecking` belongs to.
    fn row_of(&self, t: &Transition) -> Option<usize> {
        let first = usize::from(self.migration);
        let step = t.step.map(|s| s.max(0) as usize);
        match t.phase {
            Phase::Migrating => self.migration.then_some(0),
            Phase::Deploying | Phase::HealthChecking => Some(match &self.rollout {
                Rollout::Rolling | Rollout::Recreate => first,
                Rollout::Canary { weights } => first + step.unwrap_or(0).min(weights.len()),
                Rollout::BlueGreen => first + step.unwrap_or(0).min(1),
            }),
            Phase::Pending | Phase::Healthy | Phase::Failed => None,
        }
    }
}

/// Why an upgrade failed, and what failed.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Failure {
    /// A short reason (the failed transition's message when empty).
    pub reason: String,
    /// Pods that were not ready or failed their checks.
    pub pods: Vec<String>,
    /// The migration Job that failed.
    pub job: Option<String>,
}

/// How git was set back to the last healthy version after a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollback {
    /// Bosun committed the rollback to the watched branch.
    Commit {
        version: String,
        sha: String,
        url: Option<String>,
    },
    /// The branch is protected: Bosun opened a pull request with the rollback instead.
    PullRequest {
        version: String,
        number: u64,
        url: String,
    },
    /// A human edited lines of the app's definition since the failed commit that the rollback
    /// restores too: the rollback waits in a pull request for a human to resolve.
    ConflictPullRequest {
        version: String,
        number: u64,
        url: String,
    },
}

/// The state of a commit status, as GitHub names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StatusState {
    Pending,
    Success,
    Failure,
    Error,
}

impl StatusState {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusState::Pending => "pending",
            StatusState::Success => "success",
            StatusState::Failure => "failure",
            StatusState::Error => "error",
        }
    }

    /// The state GitHub names `state`, if it is one.
    pub fn parse(state: &str) -> Option<StatusState> {
        [
            StatusState::Pending,
            StatusState::Success,
            StatusState::Failure,
            StatusState::Error,
        ]
        .into_iter()
        .find(|s| s.as_str() == state)
    }
}

/// One commit status to set on the source commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitStatus {
    /// `bosun/<namespace>/<app>`.
    pub context: String,
    pub state: StatusState,
    /// At most [`DESCRIPTION_LIMIT`] characters.
    pub description: String,
}

/// The commit status of every app of the summary, in its order.
pub fn commit_statuses(summary: &ChangeSummary) -> Vec<CommitStatus> {
    summary
        .apps
        .iter()
        .map(|app| commit_status_in(app, summary.words))
        .collect()
}

/// The commit status of one app, in GitHub's words.
pub fn commit_status(app: &AppReport) -> CommitStatus {
    commit_status_in(app, Words::PullRequest)
}

/// The commit status of one app, naming pull requests in `words`.
pub fn commit_status_in(app: &AppReport, words: Words) -> CommitStatus {
    let change = match &app.from_version {
        Some(from) => format!("{from} → {}", app.to_version),
        None => format!("install {}", app.to_version),
    };
    let (state, text) = if let Some(err) = &app.error {
        (StatusState::Error, format!("Bosun could not act: {err}"))
    } else {
        let rows = progress(app);
        match app.phase {
            Phase::Healthy => (StatusState::Success, format!("{change}: healthy")),
            Phase::Failed => {
                let at = rows
                    .iter()
                    .find(|r| matches!(r.state, RowState::Failed { .. }))
                    .map(|r| format!(" at {}", r.step.label().to_lowercase()))
                    .unwrap_or_default();
                let back = match (&app.rollback, &app.from_version) {
                    (Some(Rollback::Commit { version, .. }), _) => {
                        format!("; rolled back to {version}")
                    }
                    (
                        Some(Rollback::PullRequest {
                            version, number, ..
                        }),
                        _,
                    ) => {
                        format!(
                            "; rolled back to {version}, rollback {} {}",
                            words.short(),
                            words.reference(*number)
                        )
                    }
                    (
                        Some(Rollback::ConflictPullRequest {
                            version, number, ..
                        }),
                        _,
                    ) => {
                        format!(
                            "; rolled back to {version}, rollback {} {} to resolve",
                            words.short(),
                            words.reference(*number)
                        )
                    }
                    (None, Some(from)) => format!("; rolled back to {from}"),
                    (None, None) => String::new(),
                };
                (
                    StatusState::Failure,
                    format!(
                        "{change} failed{at}: {}{back}",
                        one_line(&failure_reason(app))
                    ),
                )
            }
            Phase::Pending | Phase::Migrating | Phase::Deploying | Phase::HealthChecking => {
                let now = rows
                    .iter()
                    .find(|r| matches!(r.state, RowState::Running { .. }))
                    .map(|r| format!(": {} in progress", r.step.label().to_lowercase()))
                    .unwrap_or_else(|| ": queued".into());
                let now = match &app.window {
                    Some(WindowNote::Waiting(why)) => format!(": {why}"),
                    _ => now,
                };
                (StatusState::Pending, format!("{change}{now}"))
            }
        }
    };
    CommitStatus {
        context: app.context(),
        state,
        description: truncate(&text, DESCRIPTION_LIMIT),
    }
}

/// Cuts `s` to at most `max` characters, ending with "…" when cut ([`crate::shown::cut_to`]).
pub fn truncate(s: &str, max: usize) -> String {
    crate::shown::cut_to(s, max)
}

/// The markdown body of Bosun's pull request comment: the marker first, then a table of steps per app.
pub fn pr_comment(summary: &ChangeSummary) -> String {
    let mut out = String::new();
    out.push_str(COMMENT_MARKER);
    out.push('\n');
    let short = &summary.commit[..summary.commit.len().min(7)];
    let _ = writeln!(out, "### 🚢 Bosun: rollout of `{short}`");
    out.push('\n');
    out.push_str(&headline(summary));
    out.push('\n');
    if summary.apps.len() > 1 {
        // The apps of the change side by side (a dependsOn group reads as one table).
        out.push_str("\n| | App | Change | State |\n| --- | --- | --- | --- |\n");
        for app in &summary.apps {
            let (icon, verdict) = verdict(app);
            let state = match &app.failure {
                Some(_) => format!(
                    "{verdict}: {}",
                    cell(&truncate(&one_line(&failure_reason(app)), 160))
                ),
                None => verdict.to_string(),
            };
            let _ = writeln!(
                out,
                "| {icon} | `{}/{}` | {} | {state} |",
                app.namespace,
                app.name,
                change_of(app)
            );
        }
    }
    for app in &summary.apps {
        out.push('\n');
        render_app(&mut out, app, summary.words);
    }
    if let Some(last) = summary
        .apps
        .iter()
        .flat_map(|a| a.transitions.iter().map(|t| &t.time))
        .max_by_key(|t| t.0)
    {
        out.push('\n');
        let _ = writeln!(
            out,
            "<sub>Last change {} UTC. Bosun edits this comment as the rollout goes on.</sub>",
            last.0.strftime("%Y-%m-%d %H:%M:%S")
        );
    }
    out
}

fn headline(summary: &ChangeSummary) -> String {
    let n = summary.apps.len();
    let count = |p: Phase| {
        summary
            .apps
            .iter()
            .filter(|a| a.error.is_none() && a.phase == p)
            .count()
    };
    let healthy = count(Phase::Healthy);
    let failed = count(Phase::Failed);
    let errors = summary.apps.iter().filter(|a| a.error.is_some()).count();
    let running = summary
        .apps
        .iter()
        .filter(|a| a.error.is_none() && !matches!(a.phase, Phase::Healthy | Phase::Failed))
        .count();
    let mut parts = Vec::new();
    if running > 0 {
        parts.push(format!("{running} in progress"));
    }
    if healthy > 0 {
        parts.push(format!("{healthy} healthy"));
    }
    if failed > 0 {
        parts.push(format!("{failed} failed and rolled back"));
    }
    if errors > 0 {
        parts.push(format!("{errors} not acted on"));
    }
    let apps = if n == 1 {
        "application"
    } else {
        "applications"
    };
    format!("This commit changes {n} {apps}: {}.", parts.join(", "))
}

/// The icon and the word of an app's state.
fn verdict(app: &AppReport) -> (&'static str, &'static str) {
    match (&app.error, app.phase) {
        (Some(_), _) => ("⚠️", "not acted on"),
        (None, Phase::Healthy) => ("✅", "healthy"),
        (None, Phase::Failed) => ("❌", "failed"),
        (None, Phase::Pending | Phase::Migrating | Phase::Deploying | Phase::HealthChecking) => {
            match &app.window {
                Some(WindowNote::Waiting(why)) if why.starts_with("waits for window") => {
                    ("🕙", "waiting for its upgrade window")
                }
                Some(WindowNote::Waiting(_)) => ("🕙", "waiting for its dependencies"),
                _ => ("⏳", "in progress"),
            }
        }
    }
}

/// `from` → `to`, or the install.
fn change_of(app: &AppReport) -> String {
    match &app.from_version {
        Some(from) => format!("`{from}` → `{}`", app.to_version),
        None => format!("install `{}`", app.to_version),
    }
}

fn render_app(out: &mut String, app: &AppReport, words: Words) {
    let (icon, verdict) = verdict(app);
    let change = change_of(app);
    let _ = writeln!(
        out,
        "#### {icon} `{}/{}`: {change}, {verdict}",
        app.namespace, app.name
    );
    out.push('\n');
    if let Some(err) = &app.error {
        let _ = writeln!(out, "Bosun could not act on this change: {}", cell(err));
        return;
    }
    match &app.window {
        Some(WindowNote::Waiting(why)) => {
            let _ = writeln!(out, "🕙 {}\n", cell(why));
        }
        Some(WindowNote::StartedOutside) => {
            let _ = writeln!(
                out,
                "⚠️ Started outside its upgrade windows by `bosun promote --now`.\n"
            );
        }
        None => {}
    }
    out.push_str("| | Step | State | Time (UTC) |\n| --- | --- | --- | --- |\n");
    let rows = progress(app);
    for row in &rows {
        let (icon, state, time) = match &row.state {
            RowState::Waiting => ("⬜", "waiting".to_string(), String::new()),
            RowState::Running { since, detail } => (
                "⏳",
                format!("in progress: {}", cell(detail)),
                format!("since {}", clock(since)),
            ),
            RowState::Done { at, took } => (
                "✅",
                match (row.step, took) {
                    (Step::Healthy, Some(secs)) => {
                        format!("reached {} after the start", duration(*secs))
                    }
                    (_, Some(secs)) => format!("done in {}", duration(*secs)),
                    (_, None) => "done".into(),
                },
                clock(at),
            ),
            RowState::Failed { at } => (
                "❌",
                format!("**failed**: {}", cell(&failure_reason(app))),
                clock(at),
            ),
            RowState::NotRun => ("⏭️", "not run".into(), String::new()),
        };
        let _ = writeln!(out, "| {icon} | {} | {state} | {time} |", row.step.label());
    }
    let mut notes = Vec::new();
    if let Some(f) = &app.failure {
        if let Some(job) = &f.job {
            notes.push(format!("Failed Job: `{}`", cell(job)));
        }
        if !f.pods.is_empty() {
            let mut pods: Vec<String> = f
                .pods
                .iter()
                .take(MAX_PODS_LISTED)
                .map(|p| format!("`{}`", cell(p)))
                .collect();
            if f.pods.len() > MAX_PODS_LISTED {
                pods.push(format!("and {} more", f.pods.len() - MAX_PODS_LISTED));
            }
            notes.push(format!("Failing pods: {}", pods.join(", ")));
        }
    }
    match &app.rollback {
        Some(Rollback::Commit { version, sha, url }) => {
            let short = &sha[..sha.len().min(7)];
            let link = match url {
                Some(u) => format!("[`{short}`]({u})"),
                None => format!("`{short}`"),
            };
            notes.push(format!(
                "↩️ Back on `{version}`: rollback commit {link} sets git to it"
            ));
        }
        Some(Rollback::PullRequest {
            version,
            number,
            url,
        }) => notes.push(format!(
            "↩️ Back on `{version}`: the branch is protected, so the rollback waits in {} \
             [{}]({url}); merge it to set git to `{version}`",
            words.noun(),
            words.reference(*number)
        )),
        Some(Rollback::ConflictPullRequest {
            version,
            number,
            url,
        }) => notes.push(format!(
            "↩️ Back on `{version}`: a human edited lines of the definition that the rollback \
             restores too, so it waits in {} [{}]({url}) for a human to resolve \
             the conflict; then merge it to set git to `{version}`",
            words.noun(),
            words.reference(*number)
        )),
        None => {
            if let (Phase::Failed, Some(from)) = (app.phase, &app.from_version) {
                notes.push(format!(
                    "↩️ Back on `{from}`; the rollback commit to git follows"
                ));
            }
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        for n in notes {
            let _ = writeln!(out, "- {n}");
        }
    }
}

/// One step of the plan, as a row of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Migration,
    Canary { weight: i32 },
    Promote,
    Rollout,
    Recreate,
    Preview,
    Switch,
    Healthy,
}

impl Step {
    fn label(self) -> String {
        match self {
            Step::Migration => "Migration".into(),
            Step::Canary { weight } => format!("Canary {weight} %"),
            Step::Promote => "Promote to 100 %".into(),
            Step::Rollout => "Rolling update".into(),
            Step::Recreate => "Recreate".into(),
            Step::Preview => "Preview beside the old version".into(),
            Step::Switch => "Switch the Service".into(),
            Step::Healthy => "Healthy".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum RowState {
    Waiting,
    Running { since: Time, detail: String },
    Done { at: Time, took: Option<i64> },
    Failed { at: Time },
    NotRun,
}

#[derive(Clone, Debug, PartialEq)]
struct Row {
    step: Step,
    state: RowState,
}

/// Replays the transitions over the plan's steps: which are done (and when), which runs, which failed.
fn progress(app: &AppReport) -> Vec<Row> {
    let steps = app.plan.steps();
    let healthy_row = steps.len() - 1;
    let mut rows: Vec<Row> = steps
        .iter()
        .map(|s| Row {
            step: *s,
            state: RowState::Waiting,
        })
        .collect();
    // The row in progress, when it started, and the last message within it.
    let mut current: Option<(usize, Time, String)> = None;
    let close =
        |rows: &mut Vec<Row>, upto: usize, at: &Time, current: &Option<(usize, Time, String)>| {
            let from = current.as_ref().map(|c| c.0).unwrap_or(0);
            for (i, row) in rows.iter_mut().enumerate().take(upto).skip(from) {
                let took = match current {
                    Some((c, since, _)) if *c == i => Some(at.0.as_second() - since.0.as_second()),
                    _ => None,
                };
                row.state = RowState::Done {
                    at: at.clone(),
                    took,
                };
            }
        };
    for t in &app.transitions {
        match t.phase {
            Phase::Pending => {}
            Phase::Migrating | Phase::Deploying | Phase::HealthChecking => {
                let Some(r) = app.plan.row_of(t) else {
                    continue;
                };
                if let Some(same) = current.as_mut().filter(|c| c.0 == r) {
                    same.2 = t.message.clone();
                } else {
                    close(&mut rows, r, &t.time, &current);
                    current = Some((r, t.time.clone(), t.message.clone()));
                }
            }
            Phase::Healthy => {
                close(&mut rows, healthy_row, &t.time, &current);
                let started = app.transitions.first().map(|f| f.time.0.as_second());
                rows[healthy_row].state = RowState::Done {
                    at: t.time.clone(),
                    took: started.map(|s| t.time.0.as_second() - s),
                };
                current = None;
            }
            Phase::Failed => {
                let r = current.as_ref().map(|c| c.0).unwrap_or(0);
                rows[r].state = RowState::Failed { at: t.time.clone() };
                for row in rows.iter_mut().skip(r + 1) {
                    row.state = RowState::NotRun;
                }
                current = None;
            }
        }
    }
    if let Some((r, since, detail)) = current {
        rows[r].state = RowState::Running { since, detail };
    }
    rows
}

fn failure_reason(app: &AppReport) -> String {
    let given = app
        .failure
        .as_ref()
        .map(|f| f.reason.trim())
        .filter(|r| !r.is_empty());
    match given {
        Some(r) => r.to_string(),
        None => app
            .transitions
            .iter()
            .rev()
            .find(|t| t.phase == Phase::Failed)
            .map(|t| t.message.clone())
            .unwrap_or_else(|| "no reason recorded".into()),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text safe inside a table cell: one line, no pipes, no HTML, bounded.
fn cell(s: &str) -> String {
    truncate(&one_line(s), REASON_LIMIT)
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn clock(t: &Time) -> String {
    t.0.strftime("%H:%M:%S").to_string()
}

fn duration(secs: i64) -> String {
    let secs = secs.max(0);
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 if secs % 60 == 0 => format!("{} min", secs / 60),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, (secs % 3600) / 60),
    }
}

/// What one app's upgrade says to the pull request and the commit status, derived from its status and
/// the write-back annotations. Pure: the write-back controller renders it.
pub fn app_report(app: &ManagedApplication) -> Option<AppReport> {
    let s = app.status.clone()?;
    let phase = s.phase?;
    let target_version = s.target_version.clone()?;
    let a = app.annotations();
    let (from_version, to) = upgrade_change(&s)?;
    // Once Failed, the revision before is the one restored.
    let restored = from_version.clone().filter(|_| phase == Phase::Failed);
    let failure = (phase == Phase::Failed).then(|| {
        let reason = s.failure_reason();
        // The up-migration failed (a typed reason, not words in a message): its Job is what to read.
        let migration_failed = s
            .conditions
            .iter()
            .any(|c| c.type_ == CONDITION_ROLLED_BACK && c.reason == REASON_MIGRATION_FAILED);
        let job = migration_failed.then(|| job_name(&app.name_any(), JobKind::Up, &target_version));
        Failure {
            reason,
            pods: s
                .health_check
                .as_ref()
                .map(|h| h.failing_pods.iter().map(|p| p.pod.clone()).collect())
                .unwrap_or_default(),
            job,
        }
    });
    let rolled_back_here =
        a.get(ANNOTATION_ROLLBACK_OF).map(String::as_str) == s.target_revision.as_deref();
    let rollback = match (
        phase,
        rolled_back_here,
        a.get(ANNOTATION_ROLLBACK_COMMIT),
        a.get(ANNOTATION_ROLLBACK_PR),
    ) {
        (Phase::Failed, true, _, Some(pr)) => {
            let (number, url) = pr.split_once(' ')?;
            let (version, number, url) = (
                restored.clone().unwrap_or_default(),
                number.parse().ok()?,
                url.to_string(),
            );
            Some(if a.contains_key(ANNOTATION_ROLLBACK_CONFLICT) {
                Rollback::ConflictPullRequest {
                    version,
                    number,
                    url,
                }
            } else {
                Rollback::PullRequest {
                    version,
                    number,
                    url,
                }
            })
        }
        (Phase::Failed, true, Some(sha), None)
            if !sha.is_empty() && !sha.starts_with("branch:") =>
        {
            Some(Rollback::Commit {
                version: restored.clone().unwrap_or_default(),
                sha: sha.clone(),
                url: None,
            })
        }
        _ => None,
    };
    Some(AppReport {
        namespace: app.namespace().unwrap_or_default(),
        name: app.name_any(),
        from_version,
        to_version: to,
        phase,
        transitions: s.history.iter().map(Transition::from).collect(),
        plan: Plan::from_strategy(&app.spec.upgrade_strategy),
        failure,
        rollback,
        error: None,
        window: window_note(&s),
    })
}

/// What the upgrade windows did to the upgrade in `s`.
fn window_note(s: &ManagedApplicationStatus) -> Option<WindowNote> {
    let waiting = s.conditions.iter().find(|c| {
        (c.type_ == CONDITION_WAITING_FOR_WINDOW || c.type_ == CONDITION_WAITING_FOR_DEPENDENCIES)
            && c.status == "True"
    });
    if let Some(c) = waiting {
        // The message names the app and its revision first; the comment's heading does already.
        let why = [
            "waits for window: ",
            "waits for dependencies: ",
            "cannot start: ",
        ]
        .iter()
        .find_map(|w| {
            c.message
                .split_once(*w)
                .map(|(_, rest)| format!("{w}{rest}"))
        })
        .unwrap_or_else(|| c.message.clone());
        return Some(WindowNote::Waiting(why));
    }
    (s.window_override.is_some() && s.window_override == s.target_hash)
        .then_some(WindowNote::StartedOutside)
}

#[cfg(test)]
mod tests;
