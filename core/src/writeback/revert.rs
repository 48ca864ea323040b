//! Restoring an application's definition in git: the pure half of a rollback commit.
//!
//! After a rollback the cluster runs the last healthy revision again, and git must say so. Setting
//! `spec.version` back is not enough: a failed commit that also changed `migrationJob.image` or
//! `env` would leave git asking for a revision that never ran, and a failure that changed no version
//! at all would leave git unchanged. So a rollback commit undoes, **for the application's own YAML
//! document only**, what the failed commit (and any commit between it and the last healthy one)
//! changed: a line-based three-way merge ([`diffy`]) of that document's text, with
//!
//! - base: the document as the failed commit wrote it (`status.targetRevision`),
//! - ours: the document at the branch tip, where the commit goes,
//! - theirs: the document as the last healthy revision's commit had it.
//!
//! Lines only the failed change touched go back to their healthy text; lines a human edited since
//! are kept; a line both touched is a conflict, which Bosun never resolves on the watched branch
//! ([`Revert::Conflict`]). Every byte outside the document stays as it is at the tip: comments,
//! other documents, other applications. Inside it, unchanged lines keep their key order, quoting
//! and line endings, CRLF included.
//!
//! A document's text is its lines: from the line after its `---` marker (the start of the file for
//! a first document without one) to the first line of the next document, so that it is the same
//! text whether the document comes first in the file or not. YAML anchors never reach across
//! documents, so the document parses alone exactly as in the file; each split is checked that way.
//!
//! Before anything is merged, [`revert_document`] checks that git still asks for what failed: the
//! document at the tip must ask for the same revision ([`crate::engine::revision`]) as at the failed
//! commit. A human who changed it since has asked for something new, which is not Bosun's to undo.

use std::ops::Range;

use diffy::{ConflictStyle, IncompleteHunkStyle, MergeOptions};

use super::{EditError, find_app};
use crate::engine::revision::Revision;
use crate::model::ManagedApplicationSpec;
use crate::yaml::{self, Limits, Node};

/// The application whose document is restored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppRef<'a> {
    /// `ManagedApplication`, usually.
    pub kind: &'a str,
    /// A document without `metadata.namespace` matches any namespace given (the source's default
    /// namespace applies to it), as in [`super::set_version`].
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

/// The file that defines the application, at the three commits of the merge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Texts<'a> {
    /// At the commit that asked for the failed revision: the base.
    pub failed: &'a str,
    /// At the branch tip, where the rollback commit goes: ours.
    pub tip: &'a str,
    /// At the commit that asked for the last healthy revision: theirs.
    pub healthy: &'a str,
}

/// What [`revert_document`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Revert {
    /// The tip's file with the application's document restored: the merge was clean and reads back
    /// as the healthy revision, every other document unchanged.
    Restored(String),
    /// The tip already asks for the healthy revision (a human set it back): nothing to commit.
    AlreadyRestored,
    /// The tip asks for neither the failed nor the healthy revision: a human changed the definition
    /// since. Holds the `spec.version` found there. Not Bosun's to undo.
    ChangedByHuman(String),
    /// The tip's file does not define the application: why, in words.
    NotFound(String),
    /// A human edited lines that the restore changes too, or the merge did not read back as the
    /// healthy revision. Never for the watched branch: see [`Conflicted`].
    Conflict(Conflicted),
    /// No three-way merge can be made: the document is missing or unreadable at the failed or the
    /// healthy commit, or cannot be told apart from its neighbours. Why, in words; the caller falls
    /// back to setting `spec.version` alone ([`super::set_version`]).
    CannotMerge(String),
}

/// A restore that a human must finish.
///
/// `text` is the tip's file with the application's document replaced by its text at the healthy
/// commit, byte for byte, and every other byte as at the tip. That is what a pull request proposes,
/// rather than the file with conflict markers: it is valid YAML that asks for exactly what the
/// cluster runs again, so merged as it is it makes git say what runs and never breaks the source;
/// its diff against the branch shows the reviewer each human edit it would undo, to keep by hand
/// before merging. Conflict markers would be a file that Bosun (and kubectl) refuse to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflicted {
    pub text: String,
    /// Where the human's edits and the restore meet, in the order of the document.
    pub hunks: Vec<ConflictHunk>,
    /// When the merge was clean but did not read back as the healthy revision: why, in words.
    pub unreadable: Option<String>,
}

/// One place where a human's edit and the restore change the same lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictHunk {
    /// The 1-based line of the file at the tip where the human's lines start (for an edit that
    /// deleted lines, the line after them).
    pub line: usize,
    /// The lines at the tip, without line endings.
    pub at_tip: Vec<String>,
    /// The lines the healthy commit has instead, without line endings.
    pub healthy: Vec<String>,
}

/// Undoes, in `texts.tip`, what the failed commit changed in `app`'s document since the healthy
/// commit. See the module documentation.
///
/// # Errors
///
/// [`EditError`]: the file at the tip is not valid YAML, or two of its documents define the
/// application. What goes wrong at the other two commits is [`Revert::CannotMerge`].
pub fn revert_document(texts: Texts<'_>, app: AppRef<'_>) -> Result<Revert, EditError> {
    let tip_docs = yaml::parse_documents(texts.tip, &Limits::default())?;
    let tip = match locate(texts.tip, &tip_docs, app) {
        Ok(Some(found)) => found,
        Ok(None) => {
            let place = app
                .namespace
                .map_or(String::new(), |ns| format!(" in namespace {ns}"));
            return Ok(Revert::NotFound(format!(
                "the file defines no {} named {}{place}",
                app.kind, app.name
            )));
        }
        Err(count) => {
            return Err(EditError::Ambiguous {
                kind: app.kind.to_owned(),
                name: app.name.to_owned(),
                count,
            });
        }
    };
    let at = |which: &str, text: &str| -> Result<Found, String> {
        let docs = yaml::parse_documents(text, &Limits::default())
            .map_err(|e| format!("the file at the {which} commit is not valid YAML ({e})"))?;
        match locate(text, &docs, app) {
            Ok(Some(found)) => Ok(found),
            Ok(None) => Err(format!(
                "the file at the {which} commit defines no {} named {}",
                app.kind, app.name
            )),
            Err(count) => Err(format!(
                "{count} documents of the file at the {which} commit define {} {}",
                app.kind, app.name
            )),
        }
    };
    let (failed, healthy) = match (at("failed", texts.failed), at("healthy", texts.healthy)) {
        (Ok(f), Ok(h)) => (f, h),
        (Err(why), _) | (_, Err(why)) => return Ok(Revert::CannotMerge(why)),
    };
    let wanted = asks_for(app.kind, &healthy.root);
    let now = asks_for(app.kind, &tip.root);
    if now == wanted {
        return Ok(Revert::AlreadyRestored);
    }
    if now != asks_for(app.kind, &failed.root) {
        let version = tip
            .root
            .get("spec")
            .and_then(|s| s.get("version"))
            .map_or_else(
                || "no version".to_owned(),
                |v| v.raw.clone().unwrap_or_else(|| v.describe()),
            );
        return Ok(Revert::ChangedByHuman(version));
    }
    let [tip_range, failed_range, healthy_range] = match [&tip, &failed, &healthy]
        .map(|f| f.range.clone())
    {
        [Ok(t), Ok(f), Ok(h)] => [t, f, h],
        [Err(why), ..] | [_, Err(why), _] | [.., Err(why)] => return Ok(Revert::CannotMerge(why)),
    };
    let base = &texts.failed[failed_range];
    let ours = &texts.tip[tip_range.clone()];
    let theirs = &texts.healthy[healthy_range];
    let marker = marker_length(&[base, ours, theirs]);
    let mut options = MergeOptions::new();
    options
        .set_conflict_style(ConflictStyle::Diff3)
        .set_conflict_marker_length(marker)
        .set_incomplete_hunk_style(IncompleteHunkStyle::Git);
    let merged = options.merge(base, ours, theirs);
    if merged.as_deref() == Ok(ours) {
        return Ok(Revert::AlreadyRestored);
    }
    let first_line = texts.tip[..tip_range.start].matches('\n').count() + 1;
    let (hunks, unreadable) = match merged {
        Ok(merged) => {
            let text = splice(texts.tip, &tip_range, &merged);
            match reads_back(&text, &tip_docs, tip.index, app, &wanted) {
                Ok(()) => return Ok(Revert::Restored(text)),
                Err(why) => (Vec::new(), Some(why)),
            }
        }
        Err(marked) => (conflict_hunks(&marked, marker, ours, first_line), None),
    };
    let proposal = splice(texts.tip, &tip_range, theirs);
    if let Err(why) = reads_back(&proposal, &tip_docs, tip.index, app, &wanted) {
        return Ok(Revert::CannotMerge(format!(
            "a human edited the lines the restore changes, and the document as at the healthy \
             commit does not fit the file at the tip: {why}"
        )));
    }
    Ok(Revert::Conflict(Conflicted {
        text: proposal,
        hunks,
        unreadable,
    }))
}

/// The application's document in one file.
struct Found {
    /// Its index among the file's documents (empty ones included).
    index: usize,
    root: Node,
    /// Its bytes; `Err(why)` when its lines cannot be told apart from its neighbours'.
    range: Result<Range<usize>, String>,
}

/// The document of `app` among `docs` (parsed from `text`); `Err(count)` when several match.
fn locate(text: &str, docs: &[yaml::Document], app: AppRef<'_>) -> Result<Option<Found>, usize> {
    let roots: Vec<&Node> = docs.iter().filter_map(|d| d.root.as_ref()).collect();
    let Some(root) = find_app(&roots, app.kind, app.namespace, app.name)? else {
        return Ok(None);
    };
    let index = docs
        .iter()
        .position(|d| d.root.as_ref().is_some_and(|r| std::ptr::eq(r, root)))
        .expect("find_app returns one of the roots it was given");
    let range = document_ranges(text, docs)
        .and_then(|ranges| {
            ranges
                .get(index)
                .cloned()
                .ok_or_else(|| "the documents overlap".to_owned())
        })
        .and_then(|range| {
            // The document alone must read as it does in the file: the split is right.
            let alone = yaml::parse_documents(&text[range.clone()], &Limits::default())
                .map_err(|e| format!("its lines alone are not valid YAML ({e})"))?;
            let roots: Vec<&Node> = alone.iter().filter_map(|d| d.root.as_ref()).collect();
            match roots.as_slice() {
                [one] if one.to_json() == root.to_json() => Ok(range),
                _ => Err("its lines alone read as something else".to_owned()),
            }
        })
        .map_err(|why| {
            format!(
                "the document of {} {} cannot be told apart from its neighbours: {why}",
                app.kind, app.name
            )
        });
    Ok(Some(Found {
        index,
        root: root.clone(),
        range,
    }))
}

/// The bytes of each document's lines: from the line after its `---` marker when that line holds
/// nothing else (from the start of the file for a first document without one; else from the line
/// it starts on) to the start of the next document's first line.
fn document_ranges(text: &str, docs: &[yaml::Document]) -> Result<Vec<Range<usize>>, String> {
    // The parser counts characters; ranges are bytes. One pass over the text for all documents.
    let mut offsets = docs.iter().map(|d| d.start.offset).peekable();
    let mut line_starts = Vec::with_capacity(docs.len());
    for (chars, (byte, _)) in text.char_indices().chain([(text.len(), ' ')]).enumerate() {
        while offsets.peek() == Some(&chars) {
            offsets.next();
            line_starts.push(text[..byte].rfind('\n').map_or(0, |nl| nl + 1));
        }
    }
    if line_starts.len() != docs.len() || line_starts.windows(2).any(|w| w[0] >= w[1]) {
        return Err("two documents start on one line".to_owned());
    }
    let ends = line_starts.iter().skip(1).copied().chain([text.len()]);
    let ranges = line_starts
        .iter()
        .zip(ends)
        .enumerate()
        .map(|(i, (&line, end))| {
            let first_line = &text[line..end];
            let first_line = first_line.split_inclusive('\n').next().unwrap_or_default();
            let start = if bare_marker(first_line) {
                line + first_line.len()
            } else if i == 0 {
                0
            } else {
                line
            };
            start..end
        })
        .collect();
    Ok(ranges)
}

/// Whether `line` is a `---` marker with nothing after it but blanks or a comment: what a
/// document's own lines come after, whatever place it has in the file.
fn bare_marker(line: &str) -> bool {
    let Some(rest) = line.strip_prefix("---") else {
        return false;
    };
    let rest = rest.trim_end_matches(['\n', '\r']);
    rest.is_empty()
        || (rest.starts_with([' ', '\t'])
            && matches!(rest.trim_start().chars().next(), None | Some('#')))
}

/// What a definition asks the cluster to run: the hash of its revision, for a ManagedApplication
/// whose spec reads as one; else its whole spec, so that any change of it counts.
fn asks_for(kind: &str, root: &Node) -> String {
    let spec = root
        .to_json()
        .get("spec")
        .cloned()
        .unwrap_or(serde_json::Value::Null);
    let revision = (kind == "ManagedApplication")
        .then(|| serde_json::from_value::<ManagedApplicationSpec>(spec.clone()).ok())
        .flatten();
    match revision {
        Some(spec) => Revision::of(&spec).hash(),
        None => spec.to_string(),
    }
}

/// `text` with `range` replaced by `with`.
fn splice(text: &str, range: &Range<usize>, with: &str) -> String {
    let mut out = String::with_capacity(text.len() - range.len() + with.len());
    out.push_str(&text[..range.start]);
    out.push_str(with);
    out.push_str(&text[range.end..]);
    out
}

/// Whether `text` (the tip's file with the document at `index` replaced) still reads as the tip's
/// other documents, unchanged, and the application's document asking for `wanted`.
fn reads_back(
    text: &str,
    tip_docs: &[yaml::Document],
    index: usize,
    app: AppRef<'_>,
    wanted: &str,
) -> Result<(), String> {
    let docs = yaml::parse_documents(text, &Limits::default())
        .map_err(|e| format!("the file would not be valid YAML ({e})"))?;
    if docs.len() != tip_docs.len() {
        return Err(format!(
            "the file would hold {} documents instead of {}",
            docs.len(),
            tip_docs.len()
        ));
    }
    let json = |d: &yaml::Document| d.root.as_ref().map(Node::to_json);
    let others_kept = docs
        .iter()
        .zip(tip_docs)
        .enumerate()
        .all(|(i, (after, before))| i == index || json(after) == json(before));
    if !others_kept {
        return Err("another document of the file would change".to_owned());
    }
    let roots: Vec<&Node> = docs.iter().filter_map(|d| d.root.as_ref()).collect();
    let found = find_app(&roots, app.kind, app.namespace, app.name)
        .ok()
        .flatten();
    match found {
        Some(root) if asks_for(app.kind, root) == wanted => Ok(()),
        Some(_) => Err(format!(
            "the merged definition of {} {} would not ask for the last healthy revision",
            app.kind, app.name
        )),
        None => Err(format!(
            "the merged file would not define {} {} once",
            app.kind, app.name
        )),
    }
}

/// Conflict markers longer than any run of `<`, `|`, `=` or `>` that starts a line of the texts
/// (at least git's 7), so that no line of a document is mistaken for one.
fn marker_length(texts: &[&str]) -> usize {
    let longest = texts
        .iter()
        .flat_map(|t| t.lines())
        .filter_map(|line| {
            let first = line.chars().next().filter(|c| "<|=>".contains(*c))?;
            Some(line.chars().take_while(|c| *c == first).count())
        })
        .max()
        .unwrap_or(0);
    (longest + 1).max(7)
}

/// The hunks of diffy's diff3 output (`<<<` ours `|||` base `===` theirs `>>>`), each placed at the
/// tip's line where its lines are: the first match at or after the previous hunk's.
fn conflict_hunks(marked: &str, marker: usize, ours: &str, first_line: usize) -> Vec<ConflictHunk> {
    #[derive(PartialEq)]
    enum Part {
        Outside,
        Ours,
        Base,
        Theirs,
    }
    let is = |line: &str, c: char| {
        let run = line.chars().take_while(|x| *x == c).count();
        run == marker && matches!(line[run..].chars().next(), None | Some(' '))
    };
    let strip = |line: &str| line.strip_suffix('\r').unwrap_or(line).to_owned();
    let tip_lines: Vec<String> = ours.lines().map(strip).collect();
    let mut hunks = Vec::new();
    let mut part = Part::Outside;
    let (mut at_tip, mut healthy) = (Vec::new(), Vec::new());
    let mut cursor = 0;
    for line in marked.lines() {
        match part {
            Part::Outside if is(line, '<') => part = Part::Ours,
            Part::Outside => {}
            Part::Ours if is(line, '|') => part = Part::Base,
            Part::Ours | Part::Base if is(line, '=') => part = Part::Theirs,
            Part::Ours => at_tip.push(strip(line)),
            Part::Base => {}
            Part::Theirs if is(line, '>') => {
                let found = (cursor..=tip_lines.len().saturating_sub(at_tip.len()))
                    .find(|&i| tip_lines.get(i..i + at_tip.len()) == Some(&at_tip[..]));
                let index = found.unwrap_or(cursor);
                cursor = index + at_tip.len();
                hunks.push(ConflictHunk {
                    line: first_line + index,
                    at_tip: std::mem::take(&mut at_tip),
                    healthy: std::mem::take(&mut healthy),
                });
                part = Part::Outside;
            }
            Part::Theirs => healthy.push(strip(line)),
        }
    }
    hunks
}

#[cfg(test)]
mod tests;
