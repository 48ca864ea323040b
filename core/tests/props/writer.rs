//! The byte-exact writer: [`set_version`] changes the version's bytes and no other, so that the
//! file reads as before with the new version; where it cannot, it refuses with an error. And
//! [`revert_document`] undoes such an edit byte for byte.

use bosun_core::writeback::{AppRef, Edit, EditError, Revert, Texts, revert_document, set_version};
use bosun_core::yaml::{self, Limits, Node};
use proptest::prelude::*;
use serde_json::Value as Json;

use crate::files::{self, File, Form, NAME, NAMESPACE, Quote};

fn edit(file: &File, from: &str, to: &str) -> Result<Edit, EditError> {
    let kind = file.layout.kind.name();
    set_version(&file.text, kind, Some(NAMESPACE), NAME, from, to)
}

/// Each document of `text` as JSON, `None` for an empty one.
pub fn documents(text: &str) -> Vec<Option<Json>> {
    yaml::parse_documents(text, &Limits::default())
        .expect("the text reads as YAML")
        .iter()
        .map(|d| d.root.as_ref().map(Node::to_json))
        .collect()
}

/// `document` with its `spec.version` set to `to`.
pub fn with_version(document: &Option<Json>, to: &str) -> Option<Json> {
    let mut document = document.clone();
    if let Some(version) = document
        .as_mut()
        .and_then(|d| d.pointer_mut("/spec/version"))
    {
        *version = Json::String(to.to_owned());
    }
    document
}

/// A new version different from the file's.
fn other_version(file: &File, to: String) -> String {
    if to == file.layout.from {
        format!("{to}-1")
    } else {
        to
    }
}

/// Checks `edited`, the writer's output for `file` and `to`: the bytes before and after the
/// version's are the input's, the version keeps its quoting (a plain one may need quotes), and
/// the file reads as before with the target's `spec.version` now `to`.
fn check_edited(file: &File, to: &str, edited: &str) -> Result<(), TestCaseError> {
    let range = file
        .version
        .clone()
        .expect("an editable form has its bytes");
    let (head, tail) = (&file.text[..range.start], &file.text[range.end..]);
    prop_assert!(
        edited.len() >= head.len() + tail.len() && edited.starts_with(head),
        "the bytes before the version changed:\n{edited}"
    );
    prop_assert!(
        edited.ends_with(tail),
        "the bytes after the version changed:\n{edited}"
    );
    let written = &edited[head.len()..edited.len() - tail.len()];
    match file.layout.quote {
        Quote::Single => prop_assert_eq!(written, Quote::Single.render(to)),
        Quote::Double => prop_assert_eq!(written, Quote::Double.render(to)),
        Quote::Plain => prop_assert!(
            written == to || written == Quote::Double.render(to),
            "a plain version written as {written:?}"
        ),
    }
    let before = documents(&file.text);
    let after = documents(edited);
    prop_assert_eq!(
        before.len(),
        file.documents,
        "the generator's document count"
    );
    prop_assert_eq!(after.len(), before.len());
    for (i, (before, after)) in before.iter().zip(&after).enumerate() {
        let want = if i == file.target {
            with_version(before, to)
        } else {
            before.clone()
        };
        prop_assert_eq!(after, &want, "document {}", i + 1);
    }
    Ok(())
}

/// Why the writer refuses a version written in `form`, in its words.
fn refusal(form: Form) -> &'static str {
    match form {
        Form::SharedAnchor | Form::Merged => "shared anchor",
        Form::Alias => "alias",
        Form::BlockScalar => "block scalar",
        Form::Direct | Form::Anchored | Form::Tagged => "(editable)",
    }
}

/// A new version of any text: realistic ones, ones YAML would read as something else, and any
/// characters at all.
fn any_version() -> impl Strategy<Value = String> {
    prop_oneof![
        files::version(),
        proptest::sample::select(vec![
            "1.10",
            "true",
            "no",
            "~",
            "null",
            "2024-01-02",
            "0755",
            "0x1F",
            ".inf",
            "1e3",
            "it's",
            "say \"hi\"",
            "back\\slash",
            "a: b",
            "a #b",
            "a:",
            "#x",
            "-",
            "- x",
            "?",
            "*x",
            "&x",
            "!x",
            "|",
            ">",
            "%x",
            "@x",
            "`x",
            "[x]",
            "{x}",
            "x,y",
            " lead",
            "trail ",
            "é-1",
            "日本",
            "---",
            "...",
            "'",
            "\"",
            "<<",
            "\u{feff}x",
            "\u{2028}",
            "x\u{a0}",
        ])
        .prop_map(str::to_owned),
        "\\PC{1,12}",
        proptest::collection::vec(any::<char>(), 1..8).prop_map(String::from_iter),
    ]
}

/// Whether the writer's own check refuses `to` before reading the file.
fn invalid(to: &str) -> bool {
    to.trim().is_empty() || to.chars().any(char::is_control)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn an_edit_changes_the_version_bytes_and_nothing_else_or_is_refused(
        file in files::file(),
        to in files::version(),
    ) {
        let to = other_version(&file, to);
        let from = file.layout.from.clone();
        match (file.layout.form.editable(), edit(&file, &from, &to)) {
            (true, Ok(Edit::Edited(edited))) => {
                check_edited(&file, &to, &edited)?;
                // Done once, the edit is not done again; and a human's value is left alone.
                let again = File { text: edited, ..file.clone() };
                prop_assert_eq!(edit(&again, &from, &to), Ok(Edit::AlreadyAt(to.clone())));
                let human = format!("{to}-human");
                prop_assert_eq!(edit(&again, &human, &from), Ok(Edit::ChangedByHuman(to)));
            }
            (false, Err(EditError::CannotEditInPlace { how, .. }))
                if how.contains(refusal(file.layout.form)) => {}
            (editable, got) => prop_assert!(
                false,
                "{:?} (editable: {editable}) in\n{}\ngot {got:?}",
                file.layout.form,
                file.text
            ),
        }
    }

    #[test]
    fn any_new_version_is_written_so_that_it_reads_back_or_refused_as_invalid(
        file in files::editable_file(),
        to in any_version(),
    ) {
        let to = other_version(&file, to);
        match edit(&file, &file.layout.from, &to) {
            Ok(Edit::Edited(edited)) => check_edited(&file, &to, &edited)?,
            Err(EditError::InvalidVersion { .. }) if invalid(&to) => {}
            got => prop_assert!(false, "writing {to:?} in\n{}\ngot {got:?}", file.text),
        }
    }

    #[test]
    fn reverting_the_edit_restores_the_file_byte_for_byte(
        file in files::editable_file(),
        to in files::version(),
        appended in any::<bool>(),
    ) {
        let to = other_version(&file, to);
        let Ok(Edit::Edited(failed)) = edit(&file, &file.layout.from, &to) else {
            return Err(TestCaseError::fail("an editable version is edited"));
        };
        // A human may have added a document since the failed commit: it stays.
        let addition = if appended {
            "---\nkind: ConfigMap\nmetadata: {name: added}\n"
        } else {
            ""
        };
        let tip = format!("{failed}{addition}");
        let app = AppRef {
            kind: file.layout.kind.name(),
            namespace: Some(NAMESPACE),
            name: NAME,
        };
        let texts = Texts {
            failed: &failed,
            tip: &tip,
            healthy: &file.text,
        };
        let want = format!("{}{addition}", file.text);
        prop_assert_eq!(revert_document(texts, app), Ok(Revert::Restored(want)));
    }
}
