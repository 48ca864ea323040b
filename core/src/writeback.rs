//! Writing back to git, decided purely: the "report" step of the flow, before any git call.
//!
//! When Bosun rolls an upgrade back it makes git say what runs. Everything that decides *what* to
//! write lives here, with no I/O; `bosun::git::writeback` fetches, commits and pushes.
//!
//! - [`git_actions`]: what git should say about one app now, decided on revision hashes
//!   ([`crate::engine::revision`]): a rollback commit while git still asks for the revision that
//!   failed, a note once an upgrade ended.
//! - [`revert`]: what a rollback commit restores: the app's own YAML document, by a three-way
//!   merge that undoes what the failed commit changed since the last healthy revision (version,
//!   images, env, ...) and keeps every other byte of the file and every later human edit.
//! - [`set_version`]: the fallback edit when the last healthy revision's commit is unknown: finds
//!   the document of an application in a (multi-document) YAML file and replaces the bytes of its
//!   `spec.version` scalar, and only those, keeping comments, order, line endings and the quoting
//!   style. It refuses to touch a value a human has changed since ([`Edit::ChangedByHuman`]).
//! - [`RollbackCommit`]: the typed summary a rollback commit's message is rendered from (with the
//!   [`Restoration`] the executor made), with trailers that [`parse_bosun_trailers`] reads back, so
//!   Bosun recognises its own commits.
//! - [`CommitOutcome`]: what one source commit did to each application, rendered to the text of a
//!   git note (`refs/notes/bosun`) by [`render_note`]; [`merge_note`] folds it into the note a
//!   commit may already have, one section per application.

use std::fmt::Write as _;

use crate::engine::revision::RevisionRef;
use crate::model::{HistoryEntry, ManagedApplicationStatus, Phase};
use crate::yaml::{self, Limits, Node, Style, Value};

pub mod group;
pub mod revert;

pub use revert::{AppRef, ConflictHunk, Conflicted, Revert, Texts, revert_document};

/// What [`set_version`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Edit {
    /// The new text: the input with only the version's bytes replaced.
    Edited(String),
    /// The version already reads the target: nothing to do.
    AlreadyAt(String),
    /// The version is neither the failed one nor the target: a human changed it; leave it alone.
    /// Holds the value found.
    ChangedByHuman(String),
    /// The file has no such application, or it has no `spec.version`: why, in words.
    NotFound(String),
}

/// Why [`set_version`] could not decide or could not edit in place.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EditError {
    #[error("the file is not valid YAML ({0}); Bosun edits only files it can read, fix it by hand")]
    ReadYaml(#[from] yaml::YamlError),

    #[error(
        "{count} documents of the file define {kind} {name}; Bosun cannot tell which one to edit, \
         keep one definition per application"
    )]
    Ambiguous {
        kind: String,
        name: String,
        count: usize,
    },

    #[error(
        "spec.version of {kind} {name} is written {how}, which Bosun cannot rewrite without \
         touching other bytes; set it to {to:?} by hand"
    )]
    CannotEditInPlace {
        kind: String,
        name: String,
        how: String,
        to: String,
    },

    #[error("{version:?} cannot be written as a version: {reason}")]
    InvalidVersion { version: String, reason: String },
}

/// Sets `spec.version` of the `kind` named `name` (in `namespace`, when given) from `from` to `to`.
///
/// A document matches when its `kind` and `metadata.name` match and, with a namespace given, its
/// `metadata.namespace` is that namespace or absent (the source's default namespace applies). A
/// plain value stays plain unless YAML 1.1 would read the new one as something else than a
/// string (`1.10`, `true`, `2024-01-02`), which is then double-quoted; a quoted value keeps its
/// quote character.
///
/// # Errors
///
/// [`EditError`]: unreadable YAML, two matching documents, a version written as an alias, a block
/// scalar or over several lines, or a `to` that is empty or has control characters.
pub fn set_version(
    text: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
    from: &str,
    to: &str,
) -> Result<Edit, EditError> {
    check_version(to)?;
    let docs = yaml::parse_documents(text, &Limits::default())?;
    let roots: Vec<&Node> = docs.iter().filter_map(|d| d.root.as_ref()).collect();
    let node = match find_app(&roots, kind, namespace, name) {
        Ok(Some(root)) => root,
        Ok(None) => {
            let place = namespace.map_or(String::new(), |ns| format!(" in namespace {ns}"));
            return Ok(Edit::NotFound(format!(
                "the file defines no {kind} named {name}{place}"
            )));
        }
        Err(count) => {
            return Err(EditError::Ambiguous {
                kind: kind.to_owned(),
                name: name.to_owned(),
                count,
            });
        }
    };
    let Some(version) = node.get("spec").and_then(|s| s.get("version")) else {
        return Ok(Edit::NotFound(format!(
            "{kind} {name} has no spec.version in this file"
        )));
    };
    let Some(current) = version.raw.as_deref() else {
        return Ok(Edit::ChangedByHuman(version.describe()));
    };
    if current == to {
        return Ok(Edit::AlreadyAt(to.to_owned()));
    }
    if current != from {
        return Ok(Edit::ChangedByHuman(current.to_owned()));
    }
    let cannot = |how: &str| EditError::CannotEditInPlace {
        kind: kind.to_owned(),
        name: name.to_owned(),
        how: how.to_owned(),
        to: to.to_owned(),
    };
    let style = version.style.unwrap_or(Style::Plain);
    let (start, end) = scalar_bytes(text, version, current, style).map_err(cannot)?;
    let replacement = match style {
        Style::Plain if plain_is_safe(to) => to.to_owned(),
        Style::Plain | Style::DoubleQuoted => double_quoted(to),
        Style::SingleQuoted => format!("'{}'", to.replace('\'', "''")),
        Style::Literal | Style::Folded => return Err(cannot("as a block scalar (| or >)")),
    };
    let mut edited = String::with_capacity(text.len() + replacement.len());
    edited.push_str(&text[..start]);
    edited.push_str(&replacement);
    edited.push_str(&text[end..]);
    // Belt and braces: the edited file must read back with the new version and the same documents.
    let check = yaml::parse_documents(&edited, &Limits::default())
        .map_err(|_| cannot("in a way the edit made unreadable"))?;
    let check_roots: Vec<&Node> = check.iter().filter_map(|d| d.root.as_ref()).collect();
    let reads_back = check_roots.len() == roots.len()
        && matches!(
            find_app(&check_roots, kind, namespace, name),
            Ok(Some(root)) if root.get("spec").and_then(|s| s.get("version"))
                .is_some_and(|v| v.value == Value::Str(to.to_owned()))
        );
    if !reads_back {
        return Err(cannot("in a way that did not read back as the new version"));
    }
    // Nothing else may change: a version that comes from an anchor (`<<: *defaults`) shared with other
    // fields would change them too.
    let only_the_version = roots.iter().zip(&check_roots).all(|(before, after)| {
        let before = before.to_json();
        let mut after = after.to_json();
        if let Some(v) = after.pointer_mut("/spec/version") {
            *v = before
                .pointer("/spec/version")
                .cloned()
                .unwrap_or(serde_json::Value::Null);
        }
        before == after
    });
    if !only_the_version {
        return Err(cannot(
            "without changing other fields (the version comes from a shared anchor)",
        ));
    }
    Ok(Edit::Edited(edited))
}

/// The one document of `kind`/`name`; `Err(count)` when several match.
fn find_app<'a>(
    roots: &[&'a Node],
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<&'a Node>, usize> {
    let field = |root: &'a Node, key: &str| -> Option<&'a str> {
        root.get("metadata")
            .and_then(|m| m.get(key))
            .and_then(Node::as_str)
    };
    let named: Vec<&Node> = roots
        .iter()
        .copied()
        .filter(|r| r.get("kind").and_then(Node::as_str) == Some(kind))
        .filter(|r| field(r, "name") == Some(name))
        .collect();
    let matching: Vec<&Node> = match namespace {
        None => named,
        Some(ns) => {
            let explicit: Vec<&Node> = named
                .iter()
                .copied()
                .filter(|r| field(r, "namespace") == Some(ns))
                .collect();
            if explicit.is_empty() {
                named
                    .into_iter()
                    .filter(|r| r.get("metadata").and_then(|m| m.get("namespace")).is_none())
                    .collect()
            } else {
                explicit
            }
        }
    };
    match matching.len() {
        0 => Ok(None),
        1 => Ok(Some(matching[0])),
        n => Err(n),
    }
}

/// The byte range of the scalar's text (quotes included), after any anchor or tag.
fn scalar_bytes(
    text: &str,
    node: &Node,
    raw: &str,
    style: Style,
) -> Result<(usize, usize), &'static str> {
    // The parser counts characters; the edit needs bytes.
    let start = text
        .char_indices()
        .nth(node.start.offset)
        .map_or(text.len(), |(b, _)| b);
    let bytes = text.as_bytes();
    let mut i = start;
    // The node's span starts at its properties: `&anchor` and `!tag` come before the value.
    while i < bytes.len() && matches!(bytes[i], b'&' | b'!') {
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
    }
    if bytes.get(i) == Some(&b'*') {
        return Err("as an alias (*name) of a value defined elsewhere");
    }
    match style {
        Style::Plain => {
            if text[i..].starts_with(raw) {
                Ok((i, i + raw.len()))
            } else {
                Err("as a plain value over several lines")
            }
        }
        Style::SingleQuoted => {
            if bytes.get(i) != Some(&b'\'') {
                return Err("in an unexpected way");
            }
            let mut j = i + 1;
            while j < bytes.len() {
                match bytes[j] {
                    b'\'' if bytes.get(j + 1) == Some(&b'\'') => j += 2,
                    b'\'' => return Ok((i, j + 1)),
                    _ => j += 1,
                }
            }
            Err("with an unterminated quote")
        }
        Style::DoubleQuoted => {
            if bytes.get(i) != Some(&b'"') {
                return Err("in an unexpected way");
            }
            let mut j = i + 1;
            while j < bytes.len() {
                match bytes[j] {
                    b'\\' => j += 2,
                    b'"' => return Ok((i, j + 1)),
                    _ => j += 1,
                }
            }
            Err("with an unterminated quote")
        }
        Style::Literal | Style::Folded => Err("as a block scalar (| or >)"),
    }
}

fn check_version(to: &str) -> Result<(), EditError> {
    let invalid = |reason: &str| EditError::InvalidVersion {
        version: to.to_owned(),
        reason: reason.to_owned(),
    };
    if to.trim().is_empty() {
        return Err(invalid("it is empty"));
    }
    if to.chars().any(char::is_control) {
        return Err(invalid("it has a line break or control character"));
    }
    Ok(())
}

/// Whether `s` written plain reads back as the same string, for kubectl's YAML 1.1 reader too.
fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let indicator = "-?:,[]{}#&*!|>'\"%@`=<~".contains(first);
    // YAML 1.1 reads 2024-01-02 (and 2024-01-02T10:00:00Z) as a timestamp, not a string.
    let date_like =
        s.len() >= 8 && s.as_bytes()[..4].iter().all(u8::is_ascii_digit) && s.as_bytes()[4] == b'-';
    !indicator
        && !date_like
        && s.trim() == s
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.ends_with(':')
        && !s.contains(['[', ']', '{', '}', ',', ':'])
        // The parser refuses a byte order mark inside a plain scalar; quoted, it reads back.
        && !s.contains('\u{feff}')
        && yaml::resolve_plain(s) == Value::Str(s.to_owned())
}

fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Trailer keys of Bosun's rollback commits.
pub const TRAILER_ROLLBACK_OF: &str = "Bosun-Rollback-Of";
pub const TRAILER_APP: &str = "Bosun-App";
pub const TRAILER_FAILED_VERSION: &str = "Bosun-Failed-Version";

/// The longest reason kept in a commit message (characters); longer ones end in `…`.
pub const MAX_REASON_CHARS: usize = 600;
/// The longest subject of a group rollback (characters): a long group is cut, the trailers name all.
const MAX_SUBJECT_CHARS: usize = 120;

/// `Roll back <ns>/<app> from <failed> to <restored>`: versions, with revision hashes when the
/// versions are the same (a change of env or resources only).
pub fn rollback_subject(
    namespace: &str,
    app: &str,
    failed: &RevisionLabel,
    restored: &RevisionLabel,
) -> String {
    format!(
        "Roll back {}/{} from {} to {}",
        one_line(namespace),
        one_line(app),
        one_line(&failed.beside(restored)),
        one_line(&restored.beside(failed)),
    )
}

/// The title and markdown body of the pull request of a rollback that is on a branch: the watched
/// branch `base` refused it, or (`conflict`, the [`conflict_listing`]) a human edited the lines it
/// restores, and a human must resolve that before merging. `status_message` says how the cluster
/// was rolled back.
pub fn rollback_pull_request(
    namespace: &str,
    app: &str,
    rolled_back: &RolledBack,
    status_message: &str,
    base: &str,
    conflict: Option<&str>,
) -> (String, String) {
    let (failed, restored) = (&rolled_back.failed, &rolled_back.restored);
    let title = rollback_subject(namespace, app, failed, restored);
    let why = match conflict {
        Some(conflict) => {
            // A fence longer than any run of backticks in the lines it holds.
            let run = conflict
                .split(|c| c != '`')
                .map(str::len)
                .max()
                .unwrap_or(0);
            let fence = "`".repeat(run.max(2) + 1);
            format!(
                "Git still asks for `{}`, but a human edited lines of its definition since the \
                 failed commit that this rollback restores too, so Bosun did not commit to \
                 `{base}`: this branch sets the definition to its text at the last healthy \
                 revision's commit, which also undoes those edits.\n\n**A human must resolve \
                 this**: keep the edits that should stay, then merge, so that git says what \
                 runs.\n\n{fence}\n{}\n{fence}",
                failed.beside(restored),
                conflict.trim_end(),
            )
        }
        None => format!(
            "The branch `{base}` refused Bosun's rollback commit, so here it is as a pull \
             request. Merge it so that git says what runs."
        ),
    };
    let body = format!(
        "Bosun rolled `{namespace}/{app}` back to `{}` in the cluster: {status_message}\n\n{why}",
        restored.beside(failed),
    );
    (title, body)
}

/// At most this many conflicting places are listed in a commit message, and this many lines of each.
const MAX_HUNKS_SHOWN: usize = 10;
const MAX_HUNK_LINES_SHOWN: usize = 12;

/// What a rollback commit does, from which its message is rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollbackCommit {
    pub namespace: String,
    pub app: String,
    pub failed_version: String,
    pub restored_version: String,
    /// The failed revision's hash (`status.failedHash`), when the status has one.
    pub failed_hash: Option<String>,
    /// The restored revision's hash (`status.lastHealthyHash`), when the status has one.
    pub restored_hash: Option<String>,
    /// Why the upgrade failed, for humans (one paragraph; long text is cut).
    pub reason: String,
    /// The commit that asked for the failed revision, whose change is undone: the base of the
    /// merge ([`revert`]).
    pub undoes: String,
    /// The commit that asked for the restored revision, when known: what the app's definition is
    /// restored to. Without it only `spec.version` can be set back ([`set_version`]).
    pub restores: Option<String>,
    /// The file that defines the app, relative to the repository's root.
    pub source_path: String,
}

/// How a rollback commit sets git back: what the executor could do once it read the file at the
/// commits involved. Part of the commit message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restoration {
    /// The app's document restored by the three-way merge of [`revert`]: what the failed commit
    /// changed is undone, later edits are kept.
    Definition,
    /// Only `spec.version` set back ([`set_version`]): why the definition could not be restored.
    VersionOnly { why: String },
    /// A human edited lines the restore changes too: the commit, for a pull request and never for
    /// the watched branch, holds the document as at the healthy commit ([`Conflicted`]).
    Conflict {
        hunks: Vec<ConflictHunk>,
        /// When the merge was clean but could not be committed as it was: why.
        unreadable: Option<String>,
    },
}

impl RollbackCommit {
    /// The failed revision, for people.
    pub fn failed(&self) -> RevisionLabel {
        RevisionLabel {
            version: self.failed_version.clone(),
            hash: self.failed_hash.clone(),
        }
    }

    /// The restored revision, for people.
    pub fn restored(&self) -> RevisionLabel {
        RevisionLabel {
            version: self.restored_version.clone(),
            hash: self.restored_hash.clone(),
        }
    }

    /// The subject of the commit and the title of its pull request: [`rollback_subject`].
    pub fn subject(&self) -> String {
        rollback_subject(&self.namespace, &self.app, &self.failed(), &self.restored())
    }

    /// The branch a rollback goes to for a pull request ([`rollback_branch_name`]): named after the
    /// failed version, and its revision when the version did not change.
    pub fn branch_name(&self) -> String {
        let failed = match &self.failed_hash {
            Some(hash) if self.failed_version == self.restored_version => {
                format!("{}-{hash}", self.failed_version)
            }
            _ => self.failed_version.clone(),
        };
        rollback_branch_name(&self.namespace, &self.app, &failed)
    }

    /// The commit message: subject, the reason, what Bosun did (`how`), and the trailers.
    pub fn message(&self, how: &Restoration) -> String {
        let app = format!("{}/{}", one_line(&self.namespace), one_line(&self.app));
        let (failed, restored) = (self.failed(), self.restored());
        let failed_label = one_line(&failed.beside(&restored));
        let restored_label = one_line(&restored.beside(&failed));
        let path = one_line(&self.source_path);
        let undoes = one_line(&self.undoes);
        let restores = self
            .restores
            .as_deref()
            .map_or_else(|| "the last healthy commit".to_owned(), one_line);
        let mut out = format!("{}\n\n", self.subject());
        let reason = crate::shown::cut_to(&one_line(&self.reason), MAX_REASON_CHARS);
        if !reason.is_empty() {
            out.push_str(&wrap(&reason, 72));
            out.push_str("\n\n");
        }
        let again = format!("To try {failed_label} again, commit a change that asks for it.");
        let mut paragraphs = Vec::new();
        match how {
            Restoration::Definition => paragraphs.push(format!(
                "Bosun rolled {app} back to {restored_label}, its last healthy revision, and \
                 restores its definition in {path} to match, so that git says what runs: what \
                 {undoes} changed in it since {restores} is undone, later edits are kept. {again}"
            )),
            Restoration::VersionOnly { why } => {
                paragraphs.push(format!(
                    "Bosun rolled {app} back to {restored_label}, its last healthy version, and \
                     sets spec.version in {path} to match, so that git says what runs. This undoes \
                     the version change of {undoes}. {again}"
                ));
                paragraphs.push(format!(
                    "Only spec.version is set back: {}.",
                    crate::shown::cut_to(&one_line(why), MAX_REASON_CHARS)
                ));
            }
            Restoration::Conflict { unreadable, .. } => {
                paragraphs.push(format!(
                    "Bosun rolled {app} back to {restored_label}, its last healthy revision, in \
                     the cluster. Its definition in {path} was edited since {undoes} on lines that \
                     the rollback restores too, so Bosun does not commit to the branch. This \
                     commit, for a pull request, sets the definition to its text at {restores}, \
                     which also undoes those edits: a human must resolve the conflict, keeping \
                     what should stay, then merge it so that git says what runs. {again}"
                ));
                if let Some(why) = unreadable {
                    paragraphs.push(format!(
                        "The merged definition could not be committed as it was: {}.",
                        crate::shown::cut_to(&one_line(why), MAX_REASON_CHARS)
                    ));
                }
            }
        }
        for p in paragraphs {
            out.push_str(&wrap(&p, 72));
            out.push_str("\n\n");
        }
        if let Restoration::Conflict { hunks, .. } = how
            && !hunks.is_empty()
        {
            out.push_str(&conflict_listing(&self.source_path, hunks));
            out.push('\n');
        }
        let _ = writeln!(out, "{TRAILER_ROLLBACK_OF}: {undoes}");
        let _ = writeln!(out, "{TRAILER_APP}: {app}");
        let _ = writeln!(
            out,
            "{TRAILER_FAILED_VERSION}: {}",
            one_line(&self.failed_version)
        );
        out
    }

    /// The trailers [`RollbackCommit::message`] writes, as [`parse_bosun_trailers`] reads them.
    pub fn trailers(&self) -> BosunTrailers {
        BosunTrailers {
            rollback_of: one_line(&self.undoes),
            namespace: one_line(&self.namespace),
            app: one_line(&self.app),
            failed_version: one_line(&self.failed_version),
        }
    }
}

/// The conflicting lines, for a commit message and a pull request: each place as `line N of
/// <path>`, the lines at the tip (`-`) and the healthy commit's (`+`), indented, bounded, and
/// without blank lines or control characters (nothing in it can end a paragraph or forge a
/// trailer).
pub fn conflict_listing(path: &str, hunks: &[ConflictHunk]) -> String {
    let mut out = String::from("Conflicting lines (- now, + as at the last healthy revision):\n");
    for hunk in hunks.iter().take(MAX_HUNKS_SHOWN) {
        let _ = writeln!(out, "  line {} of {}:", hunk.line, one_line(path));
        let lines = hunk
            .at_tip
            .iter()
            .map(|l| ('-', l))
            .chain(hunk.healthy.iter().map(|l| ('+', l)));
        let total = hunk.at_tip.len() + hunk.healthy.len();
        for (sign, line) in lines.take(MAX_HUNK_LINES_SHOWN) {
            let shown: String = line
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let _ = writeln!(
                out,
                "    {sign} {}",
                crate::shown::cut_to(shown.trim_end(), 200)
            );
        }
        if total > MAX_HUNK_LINES_SHOWN {
            let _ = writeln!(out, "    … and {} more lines", total - MAX_HUNK_LINES_SHOWN);
        }
    }
    if hunks.len() > MAX_HUNKS_SHOWN {
        let _ = writeln!(out, "  … and {} more places", hunks.len() - MAX_HUNKS_SHOWN);
    }
    out
}

/// A revision for people: its version, and its hash when the status has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionLabel {
    pub version: String,
    pub hash: Option<String>,
}

impl RevisionLabel {
    /// How to show this revision beside `other`: its version, or `<version> (revision <hash>)`
    /// when both have the same version, so that a change of env alone reads as two things.
    pub fn beside(&self, other: &RevisionLabel) -> String {
        match &self.hash {
            Some(hash) if self.version == other.version => RevisionRef {
                hash: hash.clone(),
                version: self.version.clone(),
            }
            .to_string(),
            _ => self.version.clone(),
        }
    }
}

/// What a failed upgrade left to roll back to: the revision that failed, the last healthy one the
/// cluster went back to, and the commit that asked for that one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolledBack {
    pub failed: RevisionLabel,
    pub restored: RevisionLabel,
    /// The git commit whose definition asked for the restored revision, when known.
    pub restored_commit: Option<String>,
}

impl RolledBack {
    /// From an app's status, whatever its phase: `None` without a failed revision, or without a
    /// healthy revision other than it to go back to. Decided on revision hashes; a status written
    /// before revisions (no `failedHash`) is read by versions, as it was written.
    pub fn of(s: &ManagedApplicationStatus) -> Option<RolledBack> {
        if let Some(failed_hash) = &s.failed_hash {
            let healthy_hash = s.last_healthy_hash.as_ref().filter(|h| *h != failed_hash)?;
            let record = s.last_healthy();
            let version = record
                .map(|r| r.version.clone())
                .or_else(|| s.last_healthy_version.clone())?;
            return Some(RolledBack {
                failed: RevisionLabel {
                    version: s
                        .failed_version
                        .clone()
                        .or_else(|| s.target_version.clone())
                        .unwrap_or_default(),
                    hash: Some(failed_hash.clone()),
                },
                restored: RevisionLabel {
                    version,
                    hash: Some(healthy_hash.clone()),
                },
                restored_commit: record.and_then(|r| r.commit.clone()),
            });
        }
        let failed = s.failed_version.clone()?;
        let restored = s.last_healthy_version.clone().filter(|v| *v != failed)?;
        let restored_commit = s
            .healthy_revisions
            .iter()
            .rev()
            .find(|r| r.version == restored)
            .and_then(|r| r.commit.clone());
        Some(RolledBack {
            failed: RevisionLabel {
                version: failed,
                hash: None,
            },
            restored: RevisionLabel {
                version: restored,
                hash: None,
            },
            restored_commit,
        })
    }
}

/// The change an app's current (or last) upgrade makes, for people: the revision it started from
/// (`None` for a first install; once Failed, the one restored) and the one it asks for. Versions,
/// with revision hashes where the two versions are the same. `None` without a phase or a target.
pub fn upgrade_change(s: &ManagedApplicationStatus) -> Option<(Option<String>, String)> {
    let phase = s.phase?;
    let to = RevisionLabel {
        version: s.target_version.clone()?,
        hash: s.target_hash.clone(),
    };
    let target = (to.hash.as_ref(), Some(&to.version));
    let from = match phase {
        Phase::Failed => RolledBack::of(s).map(|rb| rb.restored),
        // Once healthy, the revision before is the one healthy before this one.
        Phase::Healthy => s
            .healthy_revisions
            .iter()
            .rev()
            .find(|r| {
                let hash = Some(&r.hash).filter(|h| !h.is_empty());
                !same_revision((hash, Some(&r.version)), target)
            })
            .map(|r| RevisionLabel {
                version: r.version.clone(),
                hash: Some(r.hash.clone()).filter(|h| !h.is_empty()),
            }),
        Phase::Pending | Phase::Migrating | Phase::Deploying | Phase::HealthChecking => {
            let current = (s.current_hash.as_ref(), s.current_version.as_ref());
            match s.current_version.clone() {
                Some(version) if !same_revision(current, target) => Some(RevisionLabel {
                    version,
                    hash: s.current_hash.clone(),
                }),
                _ => None,
            }
        }
    };
    let shown_to = from.as_ref().map_or(to.version.clone(), |f| to.beside(f));
    Some((from.map(|f| f.beside(&to)), shown_to))
}

/// Whether two revisions of a status are the same: by hash when both have one, else by version.
fn same_revision(
    a: (Option<&String>, Option<&String>),
    b: (Option<&String>, Option<&String>),
) -> bool {
    match (a.0, b.0) {
        (Some(x), Some(y)) => x == y,
        _ => a.1.is_some() && a.1 == b.1,
    }
}

/// The trailers that mark a commit as one of Bosun's rollbacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BosunTrailers {
    pub rollback_of: String,
    pub namespace: String,
    pub app: String,
    pub failed_version: String,
}

/// Reads Bosun's trailers from the last paragraph of a commit message; `None` for any commit that
/// is not one of Bosun's rollbacks (keys are case-insensitive, as git's are).
pub fn parse_bosun_trailers(message: &str) -> Option<BosunTrailers> {
    let normalised = message.replace("\r\n", "\n");
    let last = normalised
        .trim_end()
        .rsplit("\n\n")
        .next()
        .unwrap_or_default();
    let mut rollback_of = None;
    let mut app = None;
    let mut failed_version = None;
    for line in last.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_owned();
        if key.eq_ignore_ascii_case(TRAILER_ROLLBACK_OF) {
            rollback_of = Some(value);
        } else if key.eq_ignore_ascii_case(TRAILER_APP) {
            app = Some(value);
        } else if key.eq_ignore_ascii_case(TRAILER_FAILED_VERSION) {
            failed_version = Some(value);
        }
    }
    let (namespace, app) = app?
        .split_once('/')
        .map(|(ns, a)| (ns.to_owned(), a.to_owned()))?;
    let rollback_of = rollback_of.filter(|s| !s.is_empty())?;
    Some(BosunTrailers {
        rollback_of,
        namespace,
        app,
        failed_version: failed_version.unwrap_or_default(),
    })
}

/// Every app a rollback commit names: a group rollback ([`group_message`]) names several, each with
/// its own `Bosun-App` line followed by its `Bosun-Failed-Version`; a single one names one.
pub fn parse_all_bosun_trailers(message: &str) -> Vec<BosunTrailers> {
    let Some(first) = parse_bosun_trailers(message) else {
        return Vec::new();
    };
    let normalised = message.replace("\r\n", "\n");
    let last = normalised
        .trim_end()
        .rsplit("\n\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut out: Vec<BosunTrailers> = Vec::new();
    for line in last.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if key.eq_ignore_ascii_case(TRAILER_APP) {
            if let Some((namespace, app)) = value.split_once('/') {
                out.push(BosunTrailers {
                    rollback_of: first.rollback_of.clone(),
                    namespace: namespace.to_owned(),
                    app: app.to_owned(),
                    failed_version: String::new(),
                });
            }
        } else if key.eq_ignore_ascii_case(TRAILER_FAILED_VERSION)
            && let Some(current) = out.last_mut()
        {
            current.failed_version = value.to_owned();
        }
    }
    out
}

/// The message of one commit that rolls back every app of a group (`spec.dependsOn`) that one
/// commit changed together: a subject naming them, each app's reason and what was restored, and
/// the trailers: `Bosun-Rollback-Of` once, then a `Bosun-App` and `Bosun-Failed-Version` line per
/// app ([`parse_all_bosun_trailers`] reads them back).
pub fn group_message(members: &[(RollbackCommit, Restoration)]) -> String {
    let names: Vec<String> = members
        .iter()
        .map(|(c, _)| format!("{}/{}", one_line(&c.namespace), one_line(&c.app)))
        .collect();
    let undoes = members
        .first()
        .map(|(c, _)| one_line(&c.undoes))
        .unwrap_or_default();
    let short: String = undoes.chars().take(7).collect();
    let subject = crate::shown::cut_to(
        &format!(
            "Roll back {}: the group {short} changed together",
            names.join(", ")
        ),
        MAX_SUBJECT_CHARS,
    );
    let mut out = format!("{subject}\n\n");
    out.push_str(&wrap(
        &format!(
            "These apps depend on each other (spec.dependsOn) and {short} changed them together. \
             One of them failed, so Bosun rolled them all back, in the cluster and here, in one \
             commit."
        ),
        72,
    ));
    out.push_str("\n\n");
    for (commit, how) in members {
        // Each app's own message, without its subject and trailers.
        let own = commit.message(how);
        let paragraphs: Vec<&str> = own.trim_end().split("\n\n").collect();
        if paragraphs.len() > 2 {
            for p in &paragraphs[1..paragraphs.len() - 1] {
                out.push_str(p);
                out.push_str("\n\n");
            }
        }
    }
    let _ = writeln!(out, "{TRAILER_ROLLBACK_OF}: {undoes}");
    for (commit, _) in members {
        let _ = writeln!(
            out,
            "{TRAILER_APP}: {}/{}",
            one_line(&commit.namespace),
            one_line(&commit.app)
        );
        let _ = writeln!(
            out,
            "{TRAILER_FAILED_VERSION}: {}",
            one_line(&commit.failed_version)
        );
    }
    out
}

/// The branch a rollback goes to when the watched branch refuses Bosun's push:
/// `bosun/rollback-<namespace>-<app>-<failed version>`, with anything git would refuse replaced.
pub fn rollback_branch_name(namespace: &str, app: &str, failed_version: &str) -> String {
    let raw = format!("rollback-{namespace}-{app}-{failed_version}");
    let mut name = String::with_capacity(raw.len());
    for c in raw.chars() {
        let keep = c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.';
        let c = if keep { c } else { '-' };
        // No `..`, no `--` runs from replacements.
        if (c == '.' || c == '-') && name.ends_with(c) {
            continue;
        }
        name.push(c);
    }
    let mut name: String = name.chars().take(200).collect();
    while name.ends_with(['.', '-']) || name.ends_with(".lock") {
        name = name
            .trim_end_matches(".lock")
            .trim_end_matches(['.', '-'])
            .to_owned();
    }
    format!("bosun/{name}")
}

/// How an upgrade started by a commit ended (or stands).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutcomeResult {
    /// Still running when the note was written.
    InProgress,
    Healthy,
    /// Failed and rolled back to `restored_version`.
    RolledBack {
        restored_version: String,
        reason: String,
    },
    /// Failed with nothing to roll back to.
    Failed {
        reason: String,
    },
    /// A newer commit asked for another version before this one finished.
    Superseded {
        by_version: String,
    },
}

/// What one source commit did to one application.
#[derive(Clone, Debug, PartialEq)]
pub struct AppOutcome {
    pub namespace: String,
    pub app: String,
    /// The version that ran before, if any.
    pub from_version: Option<String>,
    pub to_version: String,
    /// The upgrade's transitions, as in `status.history`.
    pub history: Vec<HistoryEntry>,
    pub result: OutcomeResult,
    /// The commit that set the version back in git, when there was one.
    pub rollback_commit: Option<String>,
}

/// What one source commit did, per application: the input of [`render_note`].
#[derive(Clone, Debug, PartialEq, Default)]
pub struct CommitOutcome {
    pub apps: Vec<AppOutcome>,
}

/// The note text for a commit: one section per application, separated by blank lines, each
/// starting with `bosun <namespace>/<app>:` (the key [`merge_note`] replaces sections by).
pub fn render_note(outcome: &CommitOutcome) -> String {
    let sections: Vec<String> = outcome.apps.iter().map(render_app).collect();
    let mut out = sections.join("\n");
    if out.is_empty() {
        out.push('\n');
    }
    out
}

fn render_app(app: &AppOutcome) -> String {
    let name = format!("{}/{}", one_line(&app.namespace), one_line(&app.app));
    let change = match &app.from_version {
        Some(from) => format!("{} -> {}", one_line(from), one_line(&app.to_version)),
        None => one_line(&app.to_version),
    };
    let result = match &app.result {
        OutcomeResult::InProgress => "in progress".to_owned(),
        OutcomeResult::Healthy => "healthy".to_owned(),
        OutcomeResult::RolledBack {
            restored_version, ..
        } => format!("rolled back to {}", one_line(restored_version)),
        OutcomeResult::Failed { .. } => "failed".to_owned(),
        OutcomeResult::Superseded { by_version } => {
            format!("superseded by {}", one_line(by_version))
        }
    };
    let mut out = format!("bosun {name}: {change}, {result}\n");
    for entry in &app.history {
        let phase = phase_name(entry.phase);
        let _ = write!(out, "  {}  {phase:<14}", entry.time.0);
        let mut detail = String::new();
        match (entry.step, entry.weight) {
            (Some(step), Some(weight)) => {
                let _ = write!(detail, "step {step} ({weight}%)");
            }
            (Some(step), None) => {
                let _ = write!(detail, "step {step}");
            }
            (None, Some(weight)) => {
                let _ = write!(detail, "{weight}%");
            }
            (None, None) => {}
        }
        let message = crate::shown::cut_to(&one_line(&entry.message), 300);
        if !message.is_empty() {
            if !detail.is_empty() {
                detail.push_str(": ");
            }
            detail.push_str(&message);
        }
        if !detail.is_empty() {
            out.push_str("  ");
            out.push_str(&detail);
        }
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        out.push('\n');
    }
    match &app.result {
        OutcomeResult::RolledBack { reason, .. } | OutcomeResult::Failed { reason } => {
            let _ = writeln!(
                out,
                "  reason: {}",
                crate::shown::cut_to(&one_line(reason), 600)
            );
        }
        OutcomeResult::InProgress | OutcomeResult::Healthy | OutcomeResult::Superseded { .. } => {}
    }
    if let Some(commit) = &app.rollback_commit {
        let _ = writeln!(out, "  rollback commit: {}", one_line(commit));
    }
    out
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Pending => "Pending",
        Phase::Migrating => "Migrating",
        Phase::Deploying => "Deploying",
        Phase::HealthChecking => "HealthChecking",
        Phase::Healthy => "Healthy",
        Phase::Failed => "Failed",
    }
}

/// Folds `addition` into a commit's `existing` note: each section of `addition` replaces the
/// section of `existing` with the same key (its `bosun <ns>/<app>:` header; for other text, the
/// text itself), or is appended. `None` when the note would not change: no new notes commit.
pub fn merge_note(existing: Option<&str>, addition: &str) -> Option<String> {
    let mut sections: Vec<String> = existing.map(split_sections).unwrap_or_default();
    for section in split_sections(addition) {
        let key = section_key(&section);
        match sections.iter_mut().find(|s| section_key(s) == key) {
            Some(old) => *old = section,
            None => sections.push(section),
        }
    }
    let merged = if sections.is_empty() {
        String::new()
    } else {
        let mut text = sections.join("\n\n");
        text.push('\n');
        text
    };
    let unchanged = match existing {
        Some(old) => old.trim_end() == merged.trim_end(),
        None => merged.trim().is_empty(),
    };
    (!unchanged).then_some(merged)
}

fn split_sections(text: &str) -> Vec<String> {
    let mut sections = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.is_empty() {
                sections.push(current.join("\n"));
                current.clear();
            }
        } else {
            current.push(line.trim_end());
        }
    }
    if !current.is_empty() {
        sections.push(current.join("\n"));
    }
    sections
}

fn section_key(section: &str) -> &str {
    let first = section.lines().next().unwrap_or_default();
    match first
        .strip_prefix("bosun ")
        .and_then(|rest| rest.find(": "))
    {
        Some(colon) => &first[.."bosun ".len() + colon],
        None => section,
    }
}

/// Whitespace (line breaks included) collapsed to single spaces, control characters dropped.
fn one_line(s: &str) -> String {
    s.split_whitespace()
        .map(|w| w.chars().filter(|c| !c.is_control()).collect::<String>())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Words wrapped at `width` columns (a longer word stands on its own line).
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line_len = 0;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let len = word.chars().count();
        if line_len > 0 && line_len + 1 + len > width {
            out.push('\n');
            line_len = 0;
        } else if line_len > 0 {
            out.push(' ');
            line_len += 1;
        }
        out.push_str(word);
        line_len += len;
    }
    out
}

/// What the write-back knows of one app: the revision its spec asks for, its status, and where it
/// came from.
#[derive(Clone, Debug, PartialEq)]
pub struct AppView {
    pub namespace: String,
    pub app: String,
    pub spec_version: String,
    /// The hash of the revision the spec asks for (`Revision::of(&spec).hash()`): what git asks for
    /// now, as the source applied it.
    pub spec_hash: String,
    pub status: ManagedApplicationStatus,
    /// The file that defines the app (the `bosun.dev/source-path` annotation).
    pub source_path: Option<String>,
    /// The source commit whose upgrade Bosun already rolled back in git (`bosun.dev/rollback-of`).
    pub rolled_back: Option<String>,
    /// The rollback commit (or pull request branch) written for it (`bosun.dev/rollback-commit`).
    pub rollback_commit: Option<String>,
}

/// One write to git that an app's state calls for.
#[derive(Clone, Debug, PartialEq)]
pub enum GitAction {
    /// Set the app's definition in git back to the revision running.
    Rollback(RollbackCommit),
    /// Record the outcome of the upgrade on its source commit.
    Note {
        revision: String,
        outcome: AppOutcome,
    },
}

/// Decides the git writes for one app. Pure: called on every change of the app.
///
/// - A failed upgrade that was rolled back (status Failed, `failedHash` the revision the spec asks
///   for, a last healthy revision other than it to go back to) and not yet written back: a
///   rollback commit. A status written before revisions (no `failedHash`) is read by versions.
/// - An upgrade that ended (Healthy, or Failed and written back): a note on its source commit.
/// - Nothing while an upgrade runs, and nothing for an app Bosun did not start from a commit.
pub fn git_actions(view: &AppView) -> Vec<GitAction> {
    let s = &view.status;
    let Some(revision) = s.target_revision.clone() else {
        return Vec::new();
    };
    // Bosun's own rollback commit is no new work: nothing to write about it.
    if view.rollback_commit.as_deref() == Some(revision.as_str()) {
        return Vec::new();
    }
    let target = (s.target_hash.as_ref(), s.target_version.as_ref());
    let git_asks_for_failed = match &s.failed_hash {
        Some(failed) => *failed == view.spec_hash,
        None => s.failed_version.as_deref() == Some(view.spec_version.as_str()),
    };
    let failed_here = s.phase == Some(Phase::Failed) && git_asks_for_failed;
    let rolled_back = RolledBack::of(s);
    let reason = s.failure_reason();
    if let (true, Some(rb), Some(path)) = (failed_here, &rolled_back, &view.source_path)
        && view.rolled_back.as_deref() != Some(revision.as_str())
    {
        return vec![GitAction::Rollback(RollbackCommit {
            namespace: view.namespace.clone(),
            app: view.app.clone(),
            failed_version: rb.failed.version.clone(),
            restored_version: rb.restored.version.clone(),
            failed_hash: rb.failed.hash.clone(),
            restored_hash: rb.restored.hash.clone(),
            reason,
            undoes: revision,
            restores: rb.restored_commit.clone(),
            source_path: path.clone(),
        })];
    }
    let target_version = s.target_version.clone().unwrap_or_default();
    let (result, from_version, to_version) = match s.phase {
        Some(Phase::Healthy)
            if same_revision(
                (s.current_hash.as_ref(), s.current_version.as_ref()),
                target,
            ) =>
        {
            (OutcomeResult::Healthy, None, target_version)
        }
        Some(Phase::Failed)
            if same_revision((s.failed_hash.as_ref(), s.failed_version.as_ref()), target) =>
        {
            match rolled_back {
                Some(rb) => {
                    let restored = rb.restored.beside(&rb.failed);
                    (
                        OutcomeResult::RolledBack {
                            restored_version: restored.clone(),
                            reason,
                        },
                        Some(restored),
                        rb.failed.beside(&rb.restored),
                    )
                }
                None => (OutcomeResult::Failed { reason }, None, target_version),
            }
        }
        _ => return Vec::new(),
    };
    vec![GitAction::Note {
        revision,
        outcome: AppOutcome {
            namespace: view.namespace.clone(),
            app: view.app.clone(),
            from_version,
            to_version,
            history: s.history.clone(),
            result,
            rollback_commit: view
                .rollback_commit
                .clone()
                .filter(|_| view.rolled_back.as_deref() == s.target_revision.as_deref()),
        },
    }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const APP: &str = "ManagedApplication";

    fn edit(text: &str, from: &str, to: &str) -> Result<Edit, EditError> {
        set_version(text, APP, Some("prod"), "web", from, to)
    }

    fn edited(text: &str, from: &str, to: &str) -> String {
        match edit(text, from, to) {
            Ok(Edit::Edited(out)) => out,
            other => panic!("expected an edit of\n{text}\ngot {other:?}"),
        }
    }

    #[test]
    fn a_rollback_edits_only_the_version_bytes() {
        // (input, from, to, expected output), byte for byte.
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "# the web app\nkind: ManagedApplication\nmetadata:\n  name: web # main site\nspec:\n  version: 1.5.0   # bumped by CI\n  paused: false\n",
                "1.5.0",
                "1.4.0",
                "# the web app\nkind: ManagedApplication\nmetadata:\n  name: web # main site\nspec:\n  version: 1.4.0   # bumped by CI\n  paused: false\n",
            ),
            (
                "kind: ManagedApplication\r\nmetadata:\r\n  name: web\r\nspec:\r\n  version: \"1.5.0\"\r\n  replicas: 2\r\n",
                "1.5.0",
                "1.4.0",
                "kind: ManagedApplication\r\nmetadata:\r\n  name: web\r\nspec:\r\n  version: \"1.4.0\"\r\n  replicas: 2\r\n",
            ),
            (
                "kind: ManagedApplication\nmetadata: {name: web, namespace: prod}\nspec: {version: 'v2', paused: false}\n",
                "v2",
                "v1",
                "kind: ManagedApplication\nmetadata: {name: web, namespace: prod}\nspec: {version: 'v1', paused: false}\n",
            ),
            (
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: 1.2.0\n",
                "1.2.0",
                "1.10",
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: \"1.10\"\n",
            ),
            (
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: 1.2.0\n",
                "1.2.0",
                "true",
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: \"true\"\n",
            ),
            (
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: '1.2.0'\n",
                "1.2.0",
                "it's",
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: 'it''s'\n",
            ),
            (
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: \"1.10\"\n",
                "1.10",
                "1.9",
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: \"1.9\"\n",
            ),
            (
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: 2024.11.3\n",
                "2024.11.3",
                "2024-11-02",
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: \"2024-11-02\"\n",
            ),
            (
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: !!str 1.10\n",
                "1.10",
                "1.9.1",
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: !!str 1.9.1\n",
            ),
            (
                // The parser's index counts the bytes of a directive (found by tests/props).
                "%FÖÖ bär\n---\nkind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: 1.2.0\n",
                "1.2.0",
                "1.1.0",
                "%FÖÖ bär\n---\nkind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: 1.1.0\n",
            ),
            (
                // A byte order mark is refused in a plain scalar (found by tests/props).
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: 1.2.0\n",
                "1.2.0",
                "1.1\u{feff}",
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: \"1.1\u{feff}\"\n",
            ),
            (
                "kind: ManagedApplication\nmetadata:\n  name: web\n  labels: {tier: \"é\"}\nspec:\n  version: &v café-2\n",
                "café-2",
                "thé-1",
                "kind: ManagedApplication\nmetadata:\n  name: web\n  labels: {tier: \"é\"}\nspec:\n  version: &v thé-1\n",
            ),
        ];
        for (input, from, to, want) in cases {
            assert_eq!(&edited(input, from, to), want, "editing\n{input}");
        }
    }

    #[test]
    fn only_the_document_of_the_app_changes_in_a_multi_document_file() {
        let text = "\
# apps of the prod namespace
---
kind: ManagedApplication
metadata:
  name: api
  namespace: prod
spec:
  version: 1.5.0
---
kind: ManagedApplication
metadata:
  name: web
  namespace: staging
spec:
  version: 1.5.0
---
kind: ManagedApplication
metadata:
  name: web
  namespace: prod
spec:
  version: 1.5.0 # this one
...
";
        let want = text.replace("1.5.0 # this one", "1.4.0 # this one");
        assert_eq!(edited(text, "1.5.0", "1.4.0"), want);
    }

    #[test]
    fn a_document_without_namespace_takes_the_default_namespace() {
        let text = "kind: Bestie\nmetadata:\n  name: web\nspec:\n  version: 1.5.0\n---\nkind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: 1.5.0\n";
        let want = "kind: Bestie\nmetadata:\n  name: web\nspec:\n  version: 1.5.0\n---\nkind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: 1.4.0\n";
        assert_eq!(edited(text, "1.5.0", "1.4.0"), want);
    }

    #[test]
    fn a_version_a_human_changed_is_left_alone() {
        let text = "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: 1.6.0\n";
        assert_eq!(
            edit(text, "1.5.0", "1.4.0"),
            Ok(Edit::ChangedByHuman("1.6.0".to_owned()))
        );
        let text = "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: [1]\n";
        assert_eq!(
            edit(text, "1.5.0", "1.4.0"),
            Ok(Edit::ChangedByHuman("a list".to_owned()))
        );
    }

    #[test]
    fn a_version_already_rolled_back_is_not_edited_again() {
        let text = "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: '1.4.0'\n";
        assert_eq!(
            edit(text, "1.5.0", "1.4.0"),
            Ok(Edit::AlreadyAt("1.4.0".to_owned()))
        );
    }

    #[test]
    fn a_missing_app_or_version_is_not_found() {
        let cases = [
            (
                "kind: ManagedApplication\nmetadata:\n  name: api\nspec:\n  version: 1\n",
                "no ManagedApplication named web in namespace prod",
            ),
            (
                "kind: ManagedApplication\nmetadata:\n  name: web\n  namespace: dev\nspec:\n  version: 1\n",
                "no ManagedApplication named web in namespace prod",
            ),
            (
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  paused: true\n",
                "has no spec.version",
            ),
            ("", "no ManagedApplication"),
        ];
        for (text, want) in cases {
            match edit(text, "1.5.0", "1.4.0") {
                Ok(Edit::NotFound(reason)) => assert!(reason.contains(want), "{reason}"),
                other => panic!("expected NotFound for\n{text}\ngot {other:?}"),
            }
        }
    }

    #[test]
    fn what_cannot_be_edited_in_place_is_refused_with_a_reason() {
        let cases = [
            (
                "base: &v 1.5.0\n---\nkind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: &w 1.5.0\n",
                None,
            ),
            (
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: &w 1.5.0\n  other: *w\n",
                Some("shared anchor"),
            ),
            (
                "kind: ManagedApplication\nmetadata:\n  name: web\n  labels: &l {version: 1.5.0}\nspec:\n  <<: *l\n",
                Some("shared anchor"),
            ),
            (
                "v: &v 1.5.0\nkind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: *v\n",
                Some("alias"),
            ),
            (
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: |\n    1.5.0\n",
                Some("changed"),
            ),
            (
                "kind: ManagedApplication\nmetadata:\n  name: web\nspec:\n  version: >-\n    1.5.0\n",
                Some("block scalar"),
            ),
            (
                "kind: ManagedApplication\nmetadata:\n  name: web\n---\nkind: ManagedApplication\nmetadata:\n  name: web\n",
                Some("2 documents"),
            ),
            ("kind: [", Some("not valid YAML")),
        ];
        for (text, want) in cases {
            let got = edit(text, "1.5.0", "1.4.0");
            match (want, got) {
                (None, Ok(Edit::Edited(_))) => {}
                (Some("changed"), Ok(Edit::ChangedByHuman(v))) => assert_eq!(v, "1.5.0\n"),
                (Some(want), Err(e)) => assert!(e.to_string().contains(want), "{e}"),
                (want, got) => panic!("{want:?} for\n{text}\ngot {got:?}"),
            }
        }
        for bad in ["", " ", "1.4\n0", "a\tb"] {
            assert!(
                matches!(
                    edit("a: 1", "x", bad),
                    Err(EditError::InvalidVersion { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_byte_order_mark_and_multibyte_text_before_the_version_are_kept() {
        let text = "\u{feff}# ünïcödé\nkind: ManagedApplication\nmetadata:\n  name: web\n  annotations: {note: \"日本\"}\nspec:\n  version: \"1.5.0\"\n";
        let want = text.replace("1.5.0", "1.4.0");
        assert_eq!(edited(text, "1.5.0", "1.4.0"), want);
    }

    fn rollback() -> RollbackCommit {
        RollbackCommit {
            namespace: "prod".into(),
            app: "web".into(),
            failed_version: "1.5.0".into(),
            restored_version: "1.4.0".into(),
            failed_hash: Some("5f5f5f5f5f".into()),
            restored_hash: Some("4e4e4e4e4e".into()),
            reason: "The health check of web 1.5.0 failed 3 times\nat canary step 1 (50%): GET /healthz returned 503.".into(),
            undoes: "0123456789abcdef0123456789abcdef01234567".into(),
            restores: Some("fedcba9876543210fedcba9876543210fedcba98".into()),
            source_path: "apps/web.yaml".into(),
        }
    }

    #[test]
    fn a_group_rollback_names_every_app_and_its_trailers_read_back() {
        let web = rollback();
        let api = RollbackCommit {
            app: "api".into(),
            failed_version: "2.1.0".into(),
            restored_version: "2.0.0".into(),
            reason: "prod/web depends on it and failed at the same commit".into(),
            source_path: "apps/api.yaml".into(),
            ..rollback()
        };
        let message = group_message(&[
            (web.clone(), Restoration::Definition),
            (api.clone(), Restoration::Definition),
        ]);
        assert!(
            message.starts_with(
                "Roll back prod/web, prod/api: the group 0123456 changed together\n\n"
            ),
            "{message}"
        );
        assert!(message.contains("GET\n/healthz returned 503."), "{message}");
        assert!(
            message.contains("Bosun rolled prod/api back to 2.0.0"),
            "{message}"
        );
        let read = parse_all_bosun_trailers(&message);
        assert_eq!(read, vec![web.trailers(), api.trailers()]);
        // A single rollback reads as a group of one.
        let single = web.message(&Restoration::Definition);
        assert_eq!(parse_all_bosun_trailers(&single), vec![web.trailers()]);
        assert_eq!(parse_all_bosun_trailers("a commit of a human"), vec![]);
    }

    #[test]
    fn a_rollback_commit_message_says_what_it_restores_and_the_undone_commit() {
        let want = "\
Roll back prod/web from 1.5.0 to 1.4.0

The health check of web 1.5.0 failed 3 times at canary step 1 (50%): GET
/healthz returned 503.

Bosun rolled prod/web back to 1.4.0, its last healthy revision, and
restores its definition in apps/web.yaml to match, so that git says what
runs: what 0123456789abcdef0123456789abcdef01234567 changed in it since
fedcba9876543210fedcba9876543210fedcba98 is undone, later edits are
kept. To try 1.5.0 again, commit a change that asks for it.

Bosun-Rollback-Of: 0123456789abcdef0123456789abcdef01234567
Bosun-App: prod/web
Bosun-Failed-Version: 1.5.0
";
        assert_eq!(rollback().message(&Restoration::Definition), want);
    }

    #[test]
    fn a_version_only_rollback_says_why_the_definition_was_not_restored() {
        let mut commit = rollback();
        commit.restores = None;
        let message = commit.message(&Restoration::VersionOnly {
            why: "the commit that asked for 1.4.0 is not known".into(),
        });
        let want = "\
Bosun rolled prod/web back to 1.4.0, its last healthy version, and sets
spec.version in apps/web.yaml to match, so that git says what runs. This
undoes the version change of 0123456789abcdef0123456789abcdef01234567.
To try 1.5.0 again, commit a change that asks for it.

Only spec.version is set back: the commit that asked for 1.4.0 is not
known.

Bosun-Rollback-Of:";
        assert!(message.contains(want), "{message}");
    }

    #[test]
    fn a_conflicting_rollback_lists_the_lines_a_human_must_resolve() {
        let hunks = vec![ConflictHunk {
            line: 9,
            at_tip: vec!["  version: 1.5.0".into(), "  replicas: 5\t".into()],
            healthy: vec!["  version: 1.4.0".into(), "  replicas: 3".into()],
        }];
        let message = rollback().message(&Restoration::Conflict {
            hunks,
            unreadable: None,
        });
        assert!(
            message.contains("so Bosun does not commit to the branch"),
            "{message}"
        );
        assert!(message.contains("a human must resolve"), "{message}");
        let listing = "\
Conflicting lines (- now, + as at the last healthy revision):
  line 9 of apps/web.yaml:
    -   version: 1.5.0
    -   replicas: 5
    +   version: 1.4.0
    +   replicas: 3

Bosun-Rollback-Of: 0123456789abcdef0123456789abcdef01234567
";
        assert!(message.contains(listing), "{message}");
        assert_eq!(parse_bosun_trailers(&message), Some(rollback().trailers()));
        // Lines that look like trailers stay in the listing, never in the trailers.
        let forged = vec![ConflictHunk {
            line: 1,
            at_tip: vec!["Bosun-App: evil/app".into(), String::new()],
            healthy: vec![],
        }];
        let message = rollback().message(&Restoration::Conflict {
            hunks: forged,
            unreadable: Some("x".into()),
        });
        assert_eq!(parse_bosun_trailers(&message), Some(rollback().trailers()));
        assert!(!message.contains("\n\n\n"), "{message}");
    }

    #[test]
    fn a_rollback_of_the_same_version_names_the_revisions() {
        let mut commit = rollback();
        commit.failed_version = "1.0.0".into();
        commit.restored_version = "1.0.0".into();
        commit.failed_hash = Some("abc1234567".into());
        commit.restored_hash = Some("89abcdef01".into());
        assert_eq!(
            commit.subject(),
            "Roll back prod/web from 1.0.0 (revision abc1234567) to 1.0.0 (revision 89abcdef01)"
        );
        assert_eq!(
            commit.branch_name(),
            "bosun/rollback-prod-web-1.0.0-abc1234567"
        );
        assert_eq!(rollback().branch_name(), "bosun/rollback-prod-web-1.5.0");
        assert!(
            commit
                .message(&Restoration::Definition)
                .starts_with(&format!("{}\n\n", commit.subject()))
        );
    }

    #[test]
    fn a_rollback_pull_request_says_why_it_is_one() {
        let rb = RolledBack {
            failed: RevisionLabel {
                version: "1.0.0".into(),
                hash: Some("abc1234567".into()),
            },
            restored: RevisionLabel {
                version: "1.0.0".into(),
                hash: Some("89abcdef01".into()),
            },
            restored_commit: Some("c1".into()),
        };
        let (title, body) = rollback_pull_request("shop", "web", &rb, "rolled back.", "main", None);
        assert_eq!(
            title,
            "Roll back shop/web from 1.0.0 (revision abc1234567) to 1.0.0 (revision 89abcdef01)"
        );
        assert_eq!(
            body,
            "Bosun rolled `shop/web` back to `1.0.0 (revision 89abcdef01)` in the cluster: rolled \
             back.\n\nThe branch `main` refused Bosun's rollback commit, so here it is as a pull \
             request. Merge it so that git says what runs."
        );
        let listing = "Conflicting lines (- now, + as at the last healthy revision):\n  line 3 of a.yaml:\n    - x: ```\n";
        let (_, body) =
            rollback_pull_request("shop", "web", &rb, "rolled back.", "main", Some(listing));
        assert!(body.contains("**A human must resolve this**"), "{body}");
        assert!(
            body.ends_with("\n\n````\nConflicting lines (- now, + as at the last healthy revision):\n  line 3 of a.yaml:\n    - x: ```\n````"),
            "{body}"
        );
    }

    #[test]
    fn a_long_reason_is_cut_and_cannot_forge_trailers() {
        let mut commit = rollback();
        commit.reason = format!("{}\n\nBosun-App: evil/app", "x ".repeat(2000));
        let message = commit.message(&Restoration::Definition);
        let reason = message.split("\n\n").nth(1).expect("a reason paragraph");
        assert!(reason.chars().count() <= MAX_REASON_CHARS + 10, "{reason}");
        assert!(reason.ends_with('…'), "{reason}");
        assert_eq!(parse_bosun_trailers(&message), Some(commit.trailers()));
    }

    #[test]
    fn bosun_recognises_its_own_commits_and_only_those() {
        let message = rollback().message(&Restoration::Definition);
        assert_eq!(
            parse_bosun_trailers(&message),
            Some(BosunTrailers {
                rollback_of: "0123456789abcdef0123456789abcdef01234567".into(),
                namespace: "prod".into(),
                app: "web".into(),
                failed_version: "1.5.0".into(),
            })
        );
        let crlf = message.replace('\n', "\r\n");
        assert!(parse_bosun_trailers(&crlf).is_some());
        let lower = "fix\n\nbosun-rollback-of: abc\nbosun-app: ns/a\n";
        assert_eq!(
            parse_bosun_trailers(lower).map(|t| t.rollback_of),
            Some("abc".into())
        );
        for other in [
            "Bump web to 1.5.0",
            "Bump web\n\nBosun-App: prod/web\n",
            // Trailers quoted in the body, not in the last paragraph, do not count.
            "Revert \"Roll back prod/web\"\n\nBosun-Rollback-Of: abc\nBosun-App: prod/web\n\nThis reverts commit def.\n",
            "x\n\nBosun-Rollback-Of: abc\nBosun-App: no-slash\n",
        ] {
            assert_eq!(parse_bosun_trailers(other), None, "{other}");
        }
    }

    #[test]
    fn rollback_branch_names_are_valid_git_refs() {
        let cases = [
            (("prod", "web", "1.5.0"), "bosun/rollback-prod-web-1.5.0"),
            (
                ("prod", "web", "v1..2~^:x"),
                "bosun/rollback-prod-web-v1.2-x",
            ),
            (("prod", "web", "1.0.lock"), "bosun/rollback-prod-web-1.0"),
            (
                ("prod", "web", "2/../x y"),
                "bosun/rollback-prod-web-2-.-x-y",
            ),
        ];
        for ((ns, app, v), want) in cases {
            assert_eq!(rollback_branch_name(ns, app, v), want);
        }
    }

    fn at(s: &str) -> Time {
        Time(s.parse().expect("an RFC 3339 time"))
    }

    fn entry(
        phase: Phase,
        time: &str,
        step: Option<i32>,
        weight: Option<i32>,
        m: &str,
    ) -> HistoryEntry {
        HistoryEntry {
            phase,
            time: at(time),
            step,
            weight,
            message: m.to_owned(),
        }
    }

    fn failed_canary() -> AppOutcome {
        AppOutcome {
            namespace: "prod".into(),
            app: "web".into(),
            from_version: Some("1.4.0".into()),
            to_version: "1.5.0".into(),
            history: vec![
                entry(Phase::Pending, "2026-11-22T01:00:00Z", None, None, ""),
                entry(
                    Phase::Migrating,
                    "2026-11-22T01:00:01Z",
                    None,
                    None,
                    "Job web-migration-1.5.0",
                ),
                entry(
                    Phase::Deploying,
                    "2026-11-22T01:00:30Z",
                    Some(0),
                    Some(10),
                    "canary 10%",
                ),
                entry(
                    Phase::HealthChecking,
                    "2026-11-22T01:01:00Z",
                    Some(1),
                    Some(50),
                    "",
                ),
                entry(
                    Phase::Failed,
                    "2026-11-22T01:02:00Z",
                    Some(1),
                    Some(50),
                    "health check failed\n3 times",
                ),
            ],
            result: OutcomeResult::RolledBack {
                restored_version: "1.4.0".into(),
                reason: "GET /healthz returned 503".into(),
            },
            rollback_commit: Some("89abcdef".into()),
        }
    }

    #[test]
    fn a_note_lists_each_apps_phases_result_and_rollback_commit() {
        let healthy = AppOutcome {
            namespace: "prod".into(),
            app: "api".into(),
            from_version: None,
            to_version: "2.0".into(),
            history: vec![entry(
                Phase::Healthy,
                "2026-11-22T01:00:40Z",
                None,
                None,
                "",
            )],
            result: OutcomeResult::Healthy,
            rollback_commit: None,
        };
        let note = render_note(&CommitOutcome {
            apps: vec![failed_canary(), healthy],
        });
        let want = "\
bosun prod/web: 1.4.0 -> 1.5.0, rolled back to 1.4.0
  2026-11-22T01:00:00Z  Pending
  2026-11-22T01:00:01Z  Migrating       Job web-migration-1.5.0
  2026-11-22T01:00:30Z  Deploying       step 0 (10%): canary 10%
  2026-11-22T01:01:00Z  HealthChecking  step 1 (50%)
  2026-11-22T01:02:00Z  Failed          step 1 (50%): health check failed 3 times
  reason: GET /healthz returned 503
  rollback commit: 89abcdef

bosun prod/api: 2.0, healthy
  2026-11-22T01:00:40Z  Healthy
";
        assert_eq!(note, want);
    }

    #[test]
    fn merging_a_note_replaces_the_apps_section_and_keeps_the_others() {
        let mut running = failed_canary();
        running.result = OutcomeResult::InProgress;
        running.history.truncate(2);
        running.rollback_commit = None;
        let first = render_note(&CommitOutcome {
            apps: vec![running],
        });
        let other = "bosun prod/api: 2.0, healthy\n";
        let human = "Checked by hand: fine.\n";
        let existing = format!("{first}\n{other}\n{human}");
        let last = render_note(&CommitOutcome {
            apps: vec![failed_canary()],
        });
        let merged = merge_note(Some(&existing), &last).expect("the note changes");
        assert_eq!(merged, format!("{last}\n{other}\n{human}"));
        // The same outcome again: nothing to write.
        assert_eq!(merge_note(Some(&merged), &last), None);
        assert_eq!(merge_note(Some(&merged), other), None);
        assert_eq!(merge_note(None, &last), Some(last.clone()));
        assert_eq!(merge_note(None, ""), None);
        // Text that is not a Bosun section is appended once.
        let with_human = merge_note(Some(&last), human).expect("appended");
        assert_eq!(with_human, format!("{last}\n{human}"));
        assert_eq!(merge_note(Some(&with_human), human), None);
    }

    /// An app whose spec asks for `target`; `v1` ran healthy from commit `c1`, and `target` was
    /// asked for by commit `abc123`. Revision hashes are `h-<version>`.
    fn view(phase: Phase, target: &str, failed: Option<&str>) -> AppView {
        let hash = |v: &str| format!("h-{v}");
        let running = if phase == Phase::Healthy {
            target
        } else {
            "v1"
        };
        AppView {
            namespace: "shop".into(),
            app: "orders".into(),
            spec_version: target.into(),
            spec_hash: hash(target),
            status: crate::model::ManagedApplicationStatus {
                phase: Some(phase),
                current_version: Some(running.into()),
                current_hash: Some(hash(running)),
                target_version: Some(target.into()),
                target_hash: Some(hash(target)),
                last_healthy_version: Some(running.into()),
                last_healthy_hash: Some(hash(running)),
                failed_version: failed.map(Into::into),
                failed_hash: failed.map(hash),
                healthy_revisions: vec![crate::model::HealthyRevision {
                    hash: hash("v1"),
                    version: "v1".into(),
                    commit: Some("c1".into()),
                    migration_hash: None,
                }],
                target_revision: Some("abc123".into()),
                message: Some("health checks of v2 failed".into()),
                ..Default::default()
            },
            source_path: Some("apps/orders.yaml".into()),
            rolled_back: None,
            rollback_commit: None,
        }
    }

    fn rollback_of(v: &AppView) -> RollbackCommit {
        let actions = git_actions(v);
        match actions.as_slice() {
            [GitAction::Rollback(rc)] => rc.clone(),
            other => panic!("expected one rollback, got {other:?}"),
        }
    }

    #[test]
    fn a_rolled_back_upgrade_asks_for_one_rollback_commit_then_a_note() {
        let mut v = view(Phase::Failed, "v2", Some("v2"));
        let rc = rollback_of(&v);
        assert_eq!(
            (
                rc.failed_version.as_str(),
                rc.restored_version.as_str(),
                rc.undoes.as_str(),
                rc.restores.as_deref(),
            ),
            ("v2", "v1", "abc123", Some("c1"))
        );
        assert_eq!(
            (rc.failed_hash.as_deref(), rc.restored_hash.as_deref()),
            (Some("h-v2"), Some("h-v1"))
        );
        assert_eq!(rc.source_path, "apps/orders.yaml");
        v.rolled_back = Some("abc123".into());
        v.rollback_commit = Some("def456".into());
        let actions = git_actions(&v);
        let [GitAction::Note { revision, outcome }] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert_eq!(revision, "abc123");
        assert_eq!(outcome.rollback_commit.as_deref(), Some("def456"));
        assert!(
            matches!(&outcome.result, OutcomeResult::RolledBack { restored_version, .. } if restored_version == "v1")
        );
    }

    #[test]
    fn an_env_only_failure_gets_a_rollback_commit_named_by_revisions() {
        // v1 with new env failed: the same version, another revision.
        let mut v = view(Phase::Failed, "v1", Some("v1"));
        v.spec_hash = "h-v1-env".into();
        v.status.target_hash = Some("h-v1-env".into());
        v.status.failed_hash = Some("h-v1-env".into());
        let rc = rollback_of(&v);
        assert_eq!(
            rc.subject(),
            "Roll back shop/orders from v1 (revision h-v1-env) to v1 (revision h-v1)"
        );
        assert_eq!(rc.restores.as_deref(), Some("c1"));
        v.rolled_back = Some("abc123".into());
        v.rollback_commit = Some("def456".into());
        let actions = git_actions(&v);
        let [GitAction::Note { outcome, .. }] = actions.as_slice() else {
            panic!("{actions:?}")
        };
        assert_eq!(
            (outcome.from_version.as_deref(), outcome.to_version.as_str()),
            (Some("v1 (revision h-v1)"), "v1 (revision h-v1-env)")
        );
    }

    #[test]
    fn the_change_an_upgrade_makes_names_revisions_only_when_the_version_is_the_same() {
        let cases = [
            (view(Phase::Failed, "v2", Some("v2")), Some("v1"), "v2"),
            (view(Phase::Deploying, "v2", None), Some("v1"), "v2"),
            (view(Phase::Healthy, "v2", None), Some("v1"), "v2"),
        ];
        for (v, from, to) in cases {
            assert_eq!(
                upgrade_change(&v.status),
                Some((from.map(str::to_owned), to.to_owned())),
                "{:?}",
                v.status.phase
            );
        }
        // v1 with new env failed and went back to v1.
        let mut env = view(Phase::Failed, "v1", Some("v1"));
        env.status.target_hash = Some("h-v1-env".into());
        env.status.failed_hash = Some("h-v1-env".into());
        assert_eq!(
            upgrade_change(&env.status),
            Some((
                Some("v1 (revision h-v1)".to_owned()),
                "v1 (revision h-v1-env)".to_owned()
            ))
        );
        // ... and the same as it rolls out: from the running revision of the same version.
        env.status.phase = Some(Phase::Deploying);
        assert_eq!(
            upgrade_change(&env.status).and_then(|c| c.0),
            Some("v1 (revision h-v1)".to_owned())
        );
        // A first install.
        let mut first = view(Phase::Deploying, "v1", None);
        first.status.current_version = None;
        first.status.current_hash = None;
        assert_eq!(upgrade_change(&first.status), Some((None, "v1".to_owned())));
    }

    #[test]
    fn a_status_from_before_revisions_is_read_by_versions() {
        let mut v = view(Phase::Failed, "v2", Some("v2"));
        v.spec_hash = "whatever the spec hashes to now".into();
        let s = &mut v.status;
        (
            s.current_hash,
            s.target_hash,
            s.last_healthy_hash,
            s.failed_hash,
        ) = (None, None, None, None);
        let rc = rollback_of(&v);
        assert_eq!(
            (
                rc.failed_version.as_str(),
                rc.restored_version.as_str(),
                rc.failed_hash.as_deref(),
                rc.restores.as_deref()
            ),
            ("v2", "v1", None, Some("c1")),
            "the commit of the healthy version is still known"
        );
        v.status.healthy_revisions.clear();
        assert_eq!(rollback_of(&v).restores, None, "an older Bosun kept none");
        v.spec_version = "v1".into();
        assert!(
            !git_actions(&v)
                .iter()
                .any(|a| matches!(a, GitAction::Rollback(_))),
            "git asks for v1 again"
        );
    }

    #[test]
    fn a_healthy_upgrade_gets_a_note_and_a_running_one_nothing() {
        let actions = git_actions(&view(Phase::Healthy, "v2", None));
        assert!(
            matches!(actions.as_slice(), [GitAction::Note { outcome, .. }] if outcome.result == OutcomeResult::Healthy)
        );
        assert!(git_actions(&view(Phase::Deploying, "v2", None)).is_empty());
        assert!(git_actions(&view(Phase::HealthChecking, "v2", None)).is_empty());
        // Healthy on another revision of the same version: not this upgrade's outcome.
        let mut other = view(Phase::Healthy, "v2", None);
        other.status.current_hash = Some("h-v2-older".into());
        assert!(git_actions(&other).is_empty());
    }

    #[test]
    fn nothing_is_written_back_without_a_source_commit_or_a_revision_to_return_to() {
        let mut v = view(Phase::Failed, "v2", Some("v2"));
        v.status.target_revision = None;
        assert!(git_actions(&v).is_empty(), "not started from a commit");
        let mut first = view(Phase::Failed, "v1", Some("v1"));
        first.status.last_healthy_version = None;
        first.status.last_healthy_hash = None;
        let actions = git_actions(&first);
        assert!(
            matches!(actions.as_slice(), [GitAction::Note { outcome, .. }] if matches!(outcome.result, OutcomeResult::Failed { .. })),
            "a first deploy that failed has nothing to roll back to: {actions:?}"
        );
    }

    #[test]
    fn bosuns_own_rollback_commit_gets_no_note() {
        let mut v = view(Phase::Healthy, "v1", None);
        v.status.target_revision = Some("def456".into());
        v.rolled_back = Some("abc123".into());
        v.rollback_commit = Some("def456".into());
        assert!(git_actions(&v).is_empty());
    }

    #[test]
    fn a_failed_revision_no_longer_asked_for_is_not_rolled_back_again() {
        // The rollback commit landed: the spec asks for v1 again while status still says v2 failed.
        let mut v = view(Phase::Failed, "v2", Some("v2"));
        v.spec_version = "v1".into();
        v.spec_hash = "h-v1".into();
        assert!(
            !git_actions(&v)
                .iter()
                .any(|a| matches!(a, GitAction::Rollback(_))),
            "no second rollback"
        );
        // Nor when a human changed only the env of the failed version since.
        let mut v = view(Phase::Failed, "v2", Some("v2"));
        v.spec_hash = "h-v2-new-env".into();
        assert!(
            !git_actions(&v)
                .iter()
                .any(|a| matches!(a, GitAction::Rollback(_)))
        );
    }
}
