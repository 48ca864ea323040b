//! Plan previews: what merging a pull request would do, told on the pull request before it is merged.
//!
//! Pure: it compares the definitions at the tip of the watched branch (`base`) with those at the pull
//! request's head, as `bosun run` would read them (the same validation, the same sync planner with
//! the base's objects standing in for the live ones), and renders one markdown comment and a commit
//! status. It never looks at the cluster: the preview says what the merge changes in git, and how each
//! change would roll out.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use jiff::Timestamp;

use crate::model::{ManagedApplicationSpec, StrategyType, UpgradeWindow};
use crate::report::{Plan, Rollout, StatusState};
use crate::sync::{ApplyReason, Desired, Kept, Live, ObjectKey, SyncAction, SyncPolicy};
use crate::validate::{Resource, validate_files};
use crate::yaml::Limits;

/// The first line of Bosun's preview comment: how Bosun finds it again (another than the rollout
/// comment's [`crate::report::COMMENT_MARKER`]).
pub const PREVIEW_MARKER: &str = "<!-- bosun:plan-preview -->";

/// The context of the preview's commit status on the pull request's head.
pub const PREVIEW_CONTEXT: &str = "bosun/plan";

/// One side of the comparison: the files under the watched path at a commit.
#[derive(Clone, Copy, Debug)]
pub struct Side<'a> {
    pub commit: &'a str,
    /// `(path, text)` of every file read.
    pub files: &'a [(String, String)],
    /// `(path, why)` of the files not read (links, submodules, oversized).
    pub refused: &'a [(String, String)],
}

/// What the preview is of.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// The watched branch (`main`).
    pub branch: &'a str,
    pub base: Side<'a>,
    pub head: Side<'a>,
    /// The namespace of definitions that name none (the source's `--namespace`).
    pub default_namespace: &'a str,
    pub policy: SyncPolicy,
    /// The source's upgrade windows (an app's own come from its spec).
    pub windows: &'a [UpgradeWindow],
    pub now: Timestamp,
}

/// The rendered preview.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preview {
    /// The comment, starting with [`PREVIEW_MARKER`].
    pub body: String,
    /// `failure` when a definition of the head is invalid (branch protection can require it).
    pub state: StatusState,
    /// The status's one line.
    pub description: String,
}

/// What merging `req.head` into `req.branch` would do; `None` when the pull request changes no file
/// under the watched path.
pub fn preview(req: &Request<'_>) -> Option<Preview> {
    if same_files(req.base, req.head) {
        return None;
    }
    let limits = Limits::default();
    let base = validate_files(
        req.base.files.iter().map(|(p, t)| (p.as_str(), t.as_str())),
        &limits,
    );
    let head = validate_files(
        req.head.files.iter().map(|(p, t)| (p.as_str(), t.as_str())),
        &limits,
    );
    let desired = |report: &crate::validate::Report, commit: &str| -> Vec<Desired> {
        report
            .definitions
            .iter()
            .map(|d| crate::sync::desired_from(d, "", commit, req.default_namespace))
            .collect()
    };
    // The base's objects stand for the live ones: what the cluster holds once the base is applied.
    let live: Vec<Live> = desired(&base, req.base.commit)
        .into_iter()
        .map(|d| Live {
            spec: Some(d.object["spec"].clone()),
            key: d.key,
            source_path: Some(d.source_path),
            spec_hash: Some(d.spec_hash),
            revision: None,
        })
        .collect();
    let mut invalid: BTreeSet<String> = head.findings.iter().map(|f| f.file.clone()).collect();
    invalid.extend(req.head.refused.iter().map(|(p, _)| p.clone()));
    let head_desired = desired(&head, req.head.commit);
    let plan = crate::sync::plan_sync(&head_desired, &invalid, &live, req.policy);
    let specs: BTreeMap<&ObjectKey, &ManagedApplicationSpec> = head
        .definitions
        .iter()
        .zip(&head_desired)
        .filter_map(|(def, d)| match &def.resource {
            Resource::ManagedApplication(a) => Some((&d.key, &a.spec)),
            Resource::Bestie(_) => None,
        })
        .collect();
    let base_specs: BTreeMap<&ObjectKey, &serde_json::Value> = live
        .iter()
        .filter_map(|l| Some((&l.key, l.spec.as_ref()?)))
        .collect();

    let mut out = String::new();
    let short = |c: &str| c.chars().take(7).collect::<String>();
    let _ = writeln!(out, "{PREVIEW_MARKER}");
    let _ = writeln!(
        out,
        "### 🔭 Bosun: what merging this would do (`{}` into `{}` at `{}`)\n",
        short(req.head.commit),
        req.branch,
        short(req.base.commit)
    );
    let (mut created, mut changed, mut pruned) = (0, 0, 0);
    let mut lines = String::new();
    for action in &plan.actions {
        match action {
            SyncAction::Apply { desired, reason } => {
                let key = &desired.key;
                let spec = specs.get(key).copied();
                let old = base_specs.get(key).copied();
                if *reason == ApplyReason::Create {
                    created += 1;
                    let version = spec.map(|s| format!(" at `{}`", Code(&s.version)));
                    let _ = writeln!(
                        lines,
                        "- `+ create` {} `{}`{} (`{}`)",
                        key.kind,
                        name_of(key),
                        version.unwrap_or_default(),
                        desired.source_path
                    );
                } else {
                    changed += 1;
                    let from = old.and_then(|o| o["version"].as_str()).map(str::to_string);
                    let to = spec.map(|s| s.version.clone());
                    let what = match (&from, &to) {
                        (Some(f), Some(t)) if f != t => {
                            format!(
                                "`~ upgrade` {} `{}`: `{}` → `{}`",
                                key.kind,
                                name_of(key),
                                Code(f),
                                Code(t)
                            )
                        }
                        _ => format!("`~ change` {} `{}`", key.kind, name_of(key)),
                    };
                    let _ = writeln!(lines, "- {what} (`{}`)", desired.source_path);
                    let null = serde_json::Value::Null;
                    for c in
                        crate::diff::changes("spec", old.unwrap_or(&null), &desired.object["spec"])
                    {
                        let _ =
                            writeln!(lines, "  - {}", crate::shown::cut_to(&c.to_string(), 160));
                    }
                }
                if let Some(spec) = spec {
                    for line in rollout_lines(spec, req.windows, req.now) {
                        let _ = writeln!(lines, "  - {line}");
                    }
                }
            }
            SyncAction::Prune { key } => {
                pruned += 1;
                let _ = writeln!(
                    lines,
                    "- `- prune` {} `{}` (no longer defined)",
                    key.kind,
                    name_of(key)
                );
            }
        }
    }
    for kept in &plan.kept {
        match kept {
            Kept::InvalidFile { key, file } => {
                let _ = writeln!(
                    lines,
                    "- `= keep` {} `{}`: `{file}` is invalid, its last good state stays",
                    key.kind,
                    name_of(key)
                );
            }
            Kept::PruneDisabled { key } => {
                let _ = writeln!(
                    lines,
                    "- `= keep` {} `{}`: no longer defined, but prune is off",
                    key.kind,
                    name_of(key)
                );
            }
            Kept::EmptyRevisionGuard { key } => {
                let _ = writeln!(
                    lines,
                    "- `= keep` {} `{}`: the head defines nothing at all, which Bosun refuses (allowEmpty)",
                    key.kind,
                    name_of(key)
                );
            }
        }
    }
    let findings = &head.findings;
    let summary = counts(created, changed, pruned);
    if findings.is_empty() && req.head.refused.is_empty() {
        let _ = writeln!(out, "{}.\n", merged_would(&summary));
    } else {
        let files: Vec<String> = invalid.iter().map(|f| format!("`{f}`")).collect();
        let _ = writeln!(
            out,
            "❌ **Invalid ({}):** `bosun validate` refuses {}; nothing {} would be applied. {}.\n",
            plural(
                findings.len() + req.head.refused.len(),
                "finding",
                "findings"
            ),
            files.join(", "),
            if invalid.len() == 1 {
                "it defines"
            } else {
                "they define"
            },
            merged_would(&summary)
        );
        for f in findings.iter().take(50) {
            let _ = writeln!(out, "- `{}`", crate::shown::cut_to(&f.to_string(), 300));
        }
        for (path, why) in req.head.refused.iter().take(20) {
            let _ = writeln!(out, "- `{path}`: not read: {why}");
        }
        if findings.len() > 50 {
            let _ = writeln!(out, "- … and {} more", findings.len() - 50);
        }
        out.push('\n');
    }
    out.push_str(&lines);
    let _ = write!(
        out,
        "\n<sub>Bosun compares this head with `{}`; it edits this comment on every push. Nothing is applied before the merge.</sub>\n",
        req.branch
    );
    let (state, description) = if findings.is_empty() && req.head.refused.is_empty() {
        (StatusState::Success, format!("would {summary}"))
    } else {
        (
            StatusState::Failure,
            format!(
                "invalid ({}); would {summary}",
                plural(
                    findings.len() + req.head.refused.len(),
                    "finding",
                    "findings"
                )
            ),
        )
    };
    Some(Preview {
        body: out,
        state,
        description: crate::report::truncate(&description, crate::report::DESCRIPTION_LIMIT),
    })
}

/// How an app's next upgrade would go: migration, rollout steps, health check, analysis, windows.
fn rollout_lines(
    spec: &ManagedApplicationSpec,
    source_windows: &[UpgradeWindow],
    now: Timestamp,
) -> Vec<String> {
    let s = &spec.upgrade_strategy;
    let mut out = Vec::new();
    if let Some(job) = &s.migration_job {
        out.push(format!("migration Job first, image `{}`", Code(&job.image)));
    }
    let plan = Plan::from_strategy(s);
    out.push(match plan.rollout {
        Rollout::Rolling => "rolling update".to_string(),
        Rollout::Recreate => "recreate: every old pod stops before the new ones start".to_string(),
        Rollout::BlueGreen => {
            let auto = s
                .blue_green
                .as_ref()
                .and_then(|b| b.auto_promote)
                .unwrap_or(false);
            format!(
                "blue-green: the new side runs beside the old, then the Service switches{}",
                if auto {
                    " on its own once healthy"
                } else {
                    " when promoted"
                }
            )
        }
        Rollout::Canary { .. } => {
            let steps: Vec<String> = s
                .canary
                .iter()
                .flat_map(|c| &c.steps)
                .map(|step| {
                    let mut t = format!("{} %", step.weight);
                    if let Some(p) = &step.pause {
                        let _ = write!(t, ", pause {p}");
                    }
                    if let Some(a) = &step.analysis {
                        let names: Vec<&str> = a.metrics.iter().map(|m| m.name.as_str()).collect();
                        let _ = write!(t, ", analysis {}", names.join(", "));
                    }
                    t
                })
                .collect();
            format!("canary: {} → 100 %", steps.join(" → "))
        }
    });
    if s.type_ == StrategyType::RollingWithMigration && s.migration_job.is_none() {
        out.push("no migration Job is defined".to_string());
    }
    if let Some(h) = &s.health_check {
        out.push(format!(
            "health check: GET `{}` on port {} every {} s",
            Code(&h.http_get.path),
            h.http_get.port,
            h.period_seconds.unwrap_or(10)
        ));
    }
    if spec.paused {
        out.push("paused: it would not start until unpaused".to_string());
    }
    let windows: Vec<UpgradeWindow> = if spec.upgrade_windows.is_empty() {
        source_windows.to_vec()
    } else {
        spec.upgrade_windows.clone()
    };
    if let Some((why, _)) = crate::window::waiting(&windows, crate::window::Moment::Start, now) {
        out.push(format!("merged now, it {why}"));
    }
    out
}

/// A user value inside a markdown code span: cut to [`crate::shown::MAX`] characters, with no
/// backtick or line break to end the span.
struct Code<'a>(&'a str);

impl std::fmt::Display for Code<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let safe: String = self
            .0
            .chars()
            .map(|c| if c == '`' || c.is_control() { '\'' } else { c })
            .collect();
        f.write_str(&crate::shown::cut(&safe))
    }
}

fn name_of(key: &ObjectKey) -> String {
    format!("{}/{}", key.namespace, key.name)
}

fn same_files(a: Side<'_>, b: Side<'_>) -> bool {
    a.files == b.files && a.refused == b.refused
}

fn counts(created: usize, changed: usize, pruned: usize) -> String {
    let mut parts = Vec::new();
    if created > 0 {
        parts.push(format!("create {created}"));
    }
    if changed > 0 {
        parts.push(format!("change {changed}"));
    }
    if pruned > 0 {
        parts.push(format!("prune {pruned}"));
    }
    if parts.is_empty() {
        "change nothing in the cluster".to_string()
    } else {
        parts.join(", ")
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn merged_would(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => format!("Merged, this would {}{}", f, c.as_str()),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
