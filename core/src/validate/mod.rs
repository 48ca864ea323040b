//! Parse, don't validate: YAML text becomes [`Definition`]s, or [`Finding`]s that say what is wrong.
//!
//! The pipeline for one file: read YAML ([`crate::yaml`]) → per document, recognise the kind (other kinds
//! are [`Skipped`]) → check metadata → check the structure against the CRD schema → convert to the typed
//! resource → check the rules that span fields. Every problem is reported, not just the first. Across
//! files, [`validate_files`] also refuses the same resource defined twice.

mod analysis;
mod depends;
mod rules;
mod schema;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::Value as J;

use crate::model::{Bestie, Kind, ManagedApplication};
use crate::yaml::{self, Limits, Node, PathSeg, Value, path_to_string};

/// A resource definition read from git, valid in every respect Bosun can check without a cluster.
#[derive(Clone, Debug, PartialEq)]
pub struct Definition {
    pub source: Source,
    pub resource: Resource,
}

impl Definition {
    pub fn kind(&self) -> Kind {
        match self.resource {
            Resource::ManagedApplication(_) => Kind::ManagedApplication,
            Resource::Bestie(_) => Kind::Bestie,
        }
    }

    pub fn name(&self) -> &str {
        let meta = match &self.resource {
            Resource::ManagedApplication(r) => &r.metadata,
            Resource::Bestie(r) => &r.metadata,
        };
        meta.name.as_deref().unwrap_or_default()
    }

    pub fn namespace(&self) -> Option<&str> {
        let meta = match &self.resource {
            Resource::ManagedApplication(r) => &r.metadata,
            Resource::Bestie(r) => &r.metadata,
        };
        meta.namespace.as_deref()
    }
}

/// A typed resource.
#[derive(Clone, Debug, PartialEq)]
pub enum Resource {
    ManagedApplication(Box<ManagedApplication>),
    Bestie(Box<Bestie>),
}

/// Where a definition was read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Source {
    pub file: String,
    /// 1-based index of the document in the file.
    pub document: usize,
    pub line: usize,
    /// Where each `spec.dependsOn[i].name` is (line, column): what a dependency finding points at.
    #[serde(skip)]
    pub depends_on_at: Vec<(usize, usize)>,
}

/// Something wrong with a definition: where, which field, why, and what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub file: String,
    /// 1-based index of the document in the file; absent when the whole file is at fault.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub document: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// `Kind/name` of the resource, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The field path, as `spec.upgradeStrategy.canary.steps[1].weight`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(col) = self.column {
                write!(f, ":{col}")?;
            }
        }
        f.write_str(":")?;
        if let Some(doc) = self.document {
            write!(f, " document {doc}")?;
            if let Some(res) = &self.resource {
                write!(f, " ({res})")?;
            }
            f.write_str(":")?;
        }
        if let Some(field) = &self.field {
            write!(f, " {field}:")?;
        }
        write!(f, " {}", self.reason)?;
        if let Some(hint) = &self.hint {
            write!(f, " ({hint})")?;
        }
        Ok(())
    }
}

/// A document that is not one of Bosun's kinds, passed over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Skipped {
    pub file: String,
    pub document: usize,
    pub line: usize,
    /// `apiVersion/kind`, or why the document is no Kubernetes object.
    pub what: String,
}

/// What validation made of a set of files.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    pub definitions: Vec<Definition>,
    pub findings: Vec<Finding>,
    pub skipped: Vec<Skipped>,
}

impl Report {
    pub fn is_valid(&self) -> bool {
        self.findings.is_empty()
    }
}

/// A problem inside one document, before the file and document are known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub path: Vec<PathSeg>,
    pub line: usize,
    pub column: usize,
    pub reason: String,
    pub hint: Option<String>,
}

impl Problem {
    pub(crate) fn at(node: &Node, path: &[PathSeg], reason: String) -> Problem {
        Problem {
            path: path.to_vec(),
            line: node.start.line,
            column: node.start.column,
            reason,
            hint: None,
        }
    }

    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Problem {
        self.hint = Some(hint.into());
        self
    }
}

/// Validates every file, then refuses resources defined more than once.
pub fn validate_files<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
    limits: &Limits,
) -> Report {
    let mut report = Report::default();
    for (path, text) in files {
        let file = validate_file(path, text, limits);
        report.definitions.extend(file.definitions);
        report.findings.extend(file.findings);
        report.skipped.extend(file.skipped);
    }
    let dependencies = depends::problems(&report.definitions);
    if !dependencies.is_empty() {
        // A definition whose dependencies cannot be honoured is not applied; the others are.
        report
            .definitions
            .retain(|d| !dependencies.iter().any(|(k, _)| *k == key_of(d)));
        report
            .findings
            .extend(dependencies.into_iter().map(|(_, f)| f));
    }
    let duplicates = find_duplicates(&report.definitions);
    if !duplicates.is_empty() {
        // Neither copy is trusted: which one the user meant is theirs to say.
        let dup_keys: Vec<_> = duplicates.iter().map(|(k, _)| k.clone()).collect();
        report
            .definitions
            .retain(|d| !dup_keys.contains(&key_of(d)));
        report
            .findings
            .extend(duplicates.into_iter().map(|(_, f)| f));
    }
    report
}

type ResourceKey = (Kind, Option<String>, String);

/// Where each `spec.dependsOn[i].name` of a document is.
fn depends_on_at(root: &Node) -> Vec<(usize, usize)> {
    let path = [
        PathSeg::Field("spec".into()),
        PathSeg::Field("dependsOn".into()),
    ];
    match root.at(&path) {
        Some(Node {
            value: Value::Seq(items),
            ..
        }) => items
            .iter()
            .map(|i| {
                let n = i.get("name").unwrap_or(i);
                (n.start.line, n.start.column)
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn key_of(d: &Definition) -> ResourceKey {
    (
        d.kind(),
        d.namespace().map(str::to_string),
        d.name().to_string(),
    )
}

fn find_duplicates(defs: &[Definition]) -> Vec<(ResourceKey, Finding)> {
    let mut seen: BTreeMap<ResourceKey, Vec<&Definition>> = BTreeMap::new();
    for d in defs {
        seen.entry(key_of(d)).or_default().push(d);
    }
    let mut out = Vec::new();
    for (key, copies) in seen.into_iter().filter(|(_, v)| v.len() > 1) {
        // Every copy gets a finding, so that every file involved counts as invalid and the live object
        // keeps its last good state (it must not be pruned because neither copy is applied).
        for (i, copy) in copies.iter().enumerate() {
            let other = if i == 0 { copies[1] } else { copies[0] };
            out.push((
                key.clone(),
                Finding {
                    file: copy.source.file.clone(),
                    document: Some(copy.source.document),
                    line: Some(copy.source.line),
                    column: None,
                    resource: Some(format!("{}/{}", key.0, key.2)),
                    field: Some("metadata.name".into()),
                    reason: format!(
                        "{} {:?} is defined twice: also at {}:{} (document {}); neither copy is applied",
                        key.0, key.2, other.source.file, other.source.line, other.source.document
                    ),
                    hint: Some("keep one definition, or give the other a different name".into()),
                },
            ));
        }
    }
    out
}

/// What one file holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileReport {
    pub definitions: Vec<Definition>,
    pub findings: Vec<Finding>,
    pub skipped: Vec<Skipped>,
}

/// Validates one file's text. `path` is only used to name the file in findings.
pub fn validate_file(path: &str, text: &str, limits: &Limits) -> FileReport {
    let mut report = FileReport::default();
    let docs = match yaml::parse_documents(text, limits) {
        Ok(docs) => docs,
        Err(e) => {
            let pos = e.pos();
            report.findings.push(Finding {
                file: path.to_string(),
                document: None,
                line: pos.map(|p| p.line),
                column: pos.map(|p| p.column),
                resource: None,
                field: None,
                reason: e.to_string(),
                hint: match e {
                    yaml::YamlError::Syntax { .. } => {
                        Some("nothing in this file is applied until it parses".into())
                    }
                    _ => None,
                },
            });
            return report;
        }
    };
    for doc in docs {
        let Some(root) = doc.root else { continue };
        match recognise(&root) {
            Recognised::Other(what) => report.skipped.push(Skipped {
                file: path.to_string(),
                document: doc.index,
                line: root.start.line,
                what,
            }),
            Recognised::Bad(problems) => {
                report.findings.extend(
                    problems
                        .into_iter()
                        .map(|p| finding(path, doc.index, None, p)),
                );
            }
            Recognised::Ours(kind) => {
                let name = root
                    .get("metadata")
                    .and_then(|m| m.get("name"))
                    .and_then(Node::as_str)
                    .map(|n| format!("{kind}/{n}"));
                match check_document(kind, &root) {
                    Ok(resource) => report.definitions.push(Definition {
                        source: Source {
                            file: path.to_string(),
                            document: doc.index,
                            line: root.start.line,
                            depends_on_at: depends_on_at(&root),
                        },
                        resource,
                    }),
                    Err(problems) => report.findings.extend(
                        problems
                            .into_iter()
                            .map(|p| finding(path, doc.index, name.clone(), p)),
                    ),
                }
            }
        }
    }
    report
}

fn finding(file: &str, document: usize, resource: Option<String>, p: Problem) -> Finding {
    Finding {
        file: file.to_string(),
        document: Some(document),
        line: Some(p.line),
        column: Some(p.column),
        resource,
        field: (!p.path.is_empty()).then(|| path_to_string(&p.path)),
        reason: p.reason,
        hint: p.hint,
    }
}

enum Recognised {
    Ours(Kind),
    Other(String),
    Bad(Vec<Problem>),
}

const OUR_GROUPS: [&str; 2] = ["apps.example.com", "pets.bestie.com"];

/// Decides whether a document is one of Bosun's kinds. A document of another kind is skipped; one that
/// claims an API group or kind of ours but gets the other half wrong is an error, since it was surely
/// meant for Bosun.
fn recognise(root: &Node) -> Recognised {
    let Value::Map(_) = root.value else {
        return Recognised::Other(format!("not a Kubernetes object ({})", root.describe()));
    };
    let api_version = root.get("apiVersion").and_then(Node::as_str);
    let kind = root.get("kind").and_then(Node::as_str);
    let group = api_version.map(|a| a.rsplit_once('/').map_or("", |(g, _)| g));
    let ours_by_group = group.is_some_and(|g| OUR_GROUPS.contains(&g));
    let kind_names: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
    match (kind.and_then(Kind::from_name), ours_by_group) {
        (Some(k), _) if api_version == Some(k.api_version()) => Recognised::Ours(k),
        (Some(k), _) => {
            let node = root.get("apiVersion").unwrap_or(root);
            let found = api_version.map_or("nothing".to_string(), |a| {
                format!("{a}", a = crate::shown::Quoted(a))
            });
            Recognised::Bad(vec![
                Problem::at(
                    node,
                    &[PathSeg::Field("apiVersion".into())],
                    format!("{k} is served as {}, found {found}", k.api_version()),
                )
                .with_hint(format!("write apiVersion: {}", k.api_version())),
            ])
        }
        (None, true) => {
            let node = root.get("kind").unwrap_or(root);
            let mut p = Problem::at(
                node,
                &[PathSeg::Field("kind".into())],
                match kind {
                    Some(k) => format!(
                        "unknown kind {} in API group {}",
                        crate::shown::Quoted(k),
                        crate::shown::Quoted(group.unwrap_or(""))
                    ),
                    None => "missing kind".to_string(),
                },
            );
            p.hint = kind
                .and_then(|k| schema::suggest(k, &kind_names))
                .map(|s| format!("did you mean {s}?", s = crate::shown::Quoted(s)))
                .or_else(|| Some(format!("Bosun reads {}", kind_names.join(" and "))));
            Recognised::Bad(vec![p])
        }
        (None, false) => Recognised::Other(match (api_version, kind) {
            (Some(a), Some(k)) => format!("{a}/{k}"),
            _ => "not a Kubernetes object (no apiVersion and kind)".to_string(),
        }),
    }
}

/// Checks one document of a known kind; all problems or the typed resource.
fn check_document(kind: Kind, root: &Node) -> Result<Resource, Vec<Problem>> {
    let mut problems = Vec::new();
    rules::check_metadata(kind, root, &mut problems);

    let body_schema = body_schema(kind);
    schema::check(body_schema, root, &mut Vec::new(), &mut problems);
    if kind == Kind::ManagedApplication {
        rules::check_pauses(root, &mut problems);
        analysis::check_durations(root, &mut problems);
        rules::check_traffic_routing(root, &mut problems);
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    let mut json = root.to_json();
    if let Some(obj) = json.as_object_mut() {
        obj.remove("status");
    }
    let resource = match kind {
        Kind::ManagedApplication => typed::<ManagedApplication>(json, root)
            .map(|r| Resource::ManagedApplication(Box::new(r))),
        Kind::Bestie => typed::<Bestie>(json, root).map(|r| Resource::Bestie(Box::new(r))),
    }
    .map_err(|p| vec![p])?;
    match &resource {
        Resource::ManagedApplication(app) => {
            rules::check_managed_app(app, root, &mut problems);
            rules::check_windows(&app.spec.upgrade_windows, root, &mut problems);
            analysis::check_analysis(app, root, &mut problems);
        }
        Resource::Bestie(b) => {
            rules::check_bestie(b, root, &mut problems);
            rules::check_windows(&b.spec.upgrade_windows, root, &mut problems);
        }
    }
    if problems.is_empty() {
        Ok(resource)
    } else {
        Err(problems)
    }
}

/// The schema a document of `kind` is checked against: the CRD's, generated once per process, with
/// `apiVersion`, `kind` and `metadata` left to [`rules::check_metadata`] and `status` ignored (never read
/// from git).
fn body_schema(kind: Kind) -> &'static J {
    static SCHEMAS: OnceLock<Vec<(Kind, J)>> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        Kind::ALL
            .into_iter()
            .map(|k| {
                let crd = k.crd();
                let mut schema = crd
                    .spec
                    .versions
                    .first()
                    .and_then(|v| v.schema.as_ref())
                    .and_then(|s| s.open_api_v3_schema.as_ref())
                    .and_then(|s| serde_json::to_value(s).ok())
                    .expect("every kind's CRD has an OpenAPI v3 schema");
                if let Some(props) = schema.get_mut("properties").and_then(J::as_object_mut) {
                    for field in ["apiVersion", "kind", "metadata"] {
                        props.insert(field.to_string(), serde_json::json!({}));
                    }
                    props.insert(
                        "status".to_string(),
                        serde_json::json!({"x-kubernetes-preserve-unknown-fields": true}),
                    );
                }
                (k, schema)
            })
            .collect()
    });
    all.iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, s)| s)
        .expect("a schema for every kind")
}

/// Converts checked JSON to the typed resource; a failure here names the field serde refused.
fn typed<T: serde::de::DeserializeOwned>(json: J, root: &Node) -> Result<T, Problem> {
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = parse_serde_path(&e.path().to_string());
        let node = root.closest(&path);
        let inner = e.into_inner().to_string();
        Problem::at(node, &path, inner)
    })
}

fn parse_serde_path(s: &str) -> Vec<PathSeg> {
    let mut out = Vec::new();
    for part in s.split('.').filter(|p| !p.is_empty() && *p != "?") {
        let (field, rest) = part
            .split_once('[')
            .map_or((part, None), |(f, r)| (f, Some(r)));
        if !field.is_empty() {
            out.push(PathSeg::Field(field.to_string()));
        }
        if let Some(rest) = rest {
            for idx in rest.split('[') {
                if let Ok(i) = idx.trim_end_matches(']').parse() {
                    out.push(PathSeg::Index(i));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
