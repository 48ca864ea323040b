use super::*;

const WEB: AppRef<'static> = AppRef {
    kind: "ManagedApplication",
    namespace: Some("prod"),
    name: "web",
};

/// Two apps in one file, as a team writes it: a header comment, comments on values, a quoted
/// version, a flow-style second document. web ran 1.1.0 healthy at this commit.
const HEALTHY: &str = "\
# Shop apps. Owned by team-shop.
apiVersion: bosun.dev/v1alpha1
kind: ManagedApplication
metadata:
  name: web
  namespace: prod
spec:
  # the version to run
  version: \"1.1.0\"   # keep it quoted
  replicas: 3
  env:
    - name: MODE
      value: 'steady'
  upgradeStrategy:
    type: Rolling
    migrationJob:
      image: registry.example.com/web-migrations:1.1.0
---
apiVersion: bosun.dev/v1alpha1
kind: ManagedApplication
metadata: {name: api, namespace: prod}
spec: {version: 2.0.0, replicas: 2}   # api is released on its own
";

/// The failed commit: web's version, migration image and env at once, and api's version too.
fn failed() -> String {
    HEALTHY
        .replace("\"1.1.0\"", "\"1.2.0\"")
        .replace("'steady'", "'fast'")
        .replace("web-migrations:1.1.0", "web-migrations:1.2.0")
        .replace("version: 2.0.0", "version: 2.1.0")
}

fn revert(failed: &str, tip: &str, healthy: &str) -> Revert {
    revert_document(
        Texts {
            failed,
            tip,
            healthy,
        },
        WEB,
    )
    .expect("the tip is readable")
}

fn restored(failed: &str, tip: &str, healthy: &str) -> String {
    match revert(failed, tip, healthy) {
        Revert::Restored(text) => text,
        other => panic!("expected a clean restore of\n{tip}\ngot {other:?}"),
    }
}

#[test]
fn the_version_migration_image_and_env_of_the_failed_commit_are_restored_and_nothing_else() {
    // (what, failed, tip, expected), byte for byte; theirs is always HEALTHY-like.
    let f = failed();
    let cases: Vec<(&str, String, String, String)> = vec![
        (
            "the tip is the failed commit: web back as it was, api keeps its new version",
            f.clone(),
            f.clone(),
            HEALTHY.replace("version: 2.0.0", "version: 2.1.0"),
        ),
        (
            "a human edit elsewhere in web's document since is kept",
            f.clone(),
            f.replace("type: Rolling", "type: Recreate # too few nodes"),
            HEALTHY
                .replace("version: 2.0.0", "version: 2.1.0")
                .replace("type: Rolling", "type: Recreate # too few nodes"),
        ),
        (
            "a human edit of the other app and of the header comment is kept",
            f.clone(),
            f.replace("replicas: 2}", "replicas: 4}")
                .replace("# Shop apps.", "# The shop's apps."),
            HEALTHY
                .replace("version: 2.0.0", "version: 2.1.0")
                .replace("replicas: 2}", "replicas: 4}")
                .replace("# Shop apps.", "# The shop's apps."),
        ),
        (
            "a document added before web's since does not move the restore",
            f.clone(),
            format!("kind: ConfigMap\nmetadata: {{name: x}}\n---\n{f}"),
            format!(
                "kind: ConfigMap\nmetadata: {{name: x}}\n---\n{}",
                HEALTHY.replace("version: 2.0.0", "version: 2.1.0")
            ),
        ),
    ];
    for (what, failed, tip, want) in cases {
        assert_eq!(restored(&failed, &tip, HEALTHY), want, "{what}");
    }
}

#[test]
fn a_crlf_file_keeps_its_line_endings_and_a_lf_document_beside_it_is_untouched() {
    let healthy_crlf = HEALTHY.replace('\n', "\r\n");
    let failed_crlf = failed().replace('\n', "\r\n");
    assert_eq!(
        restored(&failed_crlf, &failed_crlf, &healthy_crlf),
        healthy_crlf.replace("version: 2.0.0", "version: 2.1.0")
    );
    // CRLF in web's document only; api's (LF) document changed by the failed commit stays.
    let (web, api) = HEALTHY.split_at(HEALTHY.find("---\n").expect("two documents"));
    let mixed = format!("{}{api}", web.replace('\n', "\r\n"));
    let mixed_failed = format!(
        "{}{}",
        web.replace('\n', "\r\n")
            .replace("\"1.1.0\"", "\"1.2.0\"")
            .replace("'steady'", "'fast'"),
        api.replace("2.0.0", "2.1.0")
    );
    assert_eq!(
        restored(&mixed_failed, &mixed_failed, &mixed),
        mixed.replace("2.0.0", "2.1.0")
    );
}

#[test]
fn an_env_only_failure_is_restored_though_no_version_changed() {
    let failed = HEALTHY.replace("'steady'", "'fast'");
    assert_eq!(restored(&failed, &failed, HEALTHY), HEALTHY);
}

#[test]
fn an_anchor_in_the_apps_document_is_restored_and_the_same_anchor_of_another_app_is_not() {
    // YAML anchors never reach across documents: api's `&v` is its own, though named alike, and
    // web's alias follows web's anchor.
    let healthy = "\
kind: ManagedApplication
metadata:
  name: web
  namespace: prod
spec:
  version: &v 1.1.0
  env:
    - name: APP_VERSION
      value: *v
---
kind: ManagedApplication
metadata:
  name: api
  namespace: prod
spec:
  version: &v 1.1.0
  env:
    - name: APP_VERSION
      value: *v
";
    let failed = healthy.replace("&v 1.1.0", "&v 1.2.0");
    let want = format!(
        "{}{}",
        &healthy[..healthy.find("---").expect("two documents")],
        &failed[failed.find("---").expect("two documents")..]
    );
    assert_eq!(restored(&failed, &failed, healthy), want);
}

#[test]
fn a_document_between_markers_and_last_without_a_newline_is_restored_in_place() {
    let healthy = "%YAML 1.2\n---\nkind: Other\n...\n# web\n---\nkind: ManagedApplication\nmetadata: {name: web}\nspec:\n  version: '1.1.0'\n  replicas: 1";
    let failed = healthy.replace("'1.1.0'", "'1.2.0'");
    let tip = failed.replace("kind: Other", "kind: Other2");
    assert_eq!(
        restored(&failed, &tip, healthy),
        healthy.replace("kind: Other", "kind: Other2")
    );
}

#[test]
fn a_human_edit_of_the_same_lines_is_a_conflict_that_proposes_the_healthy_document() {
    let f = failed();
    // Ops scaled web up while it was failing: the line next to the version.
    let tip = f.replace("replicas: 3", "replicas: 5");
    let Revert::Conflict(conflict) = revert(&f, &tip, HEALTHY) else {
        panic!("expected a conflict")
    };
    assert_eq!(
        conflict.hunks,
        vec![ConflictHunk {
            line: 9,
            at_tip: vec![
                "  version: \"1.2.0\"   # keep it quoted".to_owned(),
                "  replicas: 5".to_owned(),
            ],
            healthy: vec![
                "  version: \"1.1.0\"   # keep it quoted".to_owned(),
                "  replicas: 3".to_owned(),
            ],
        }]
    );
    assert_eq!(conflict.unreadable, None);
    // Web's document as at the healthy commit; api's as at the tip.
    assert_eq!(
        conflict.text,
        HEALTHY.replace("version: 2.0.0", "version: 2.1.0")
    );
    assert!(!conflict.text.contains("<<<<<<<"), "no conflict markers");
}

#[test]
fn conflict_markers_are_longer_than_any_run_a_document_holds() {
    // A block scalar may hold a line like a conflict marker; diffy's markers are made longer.
    let text = "banner: |\n  x\n<<<<<<< not a marker\n====\n";
    assert_eq!(marker_length(&[text, "a\n"]), 8);
    assert_eq!(marker_length(&["a\n", "b\n"]), 7);
    let marked =
        "x\n<<<<<<<< ours\n<<<<<<< a\n|||||||| original\nb\n========\nc\n>>>>>>>> theirs\n";
    assert_eq!(
        conflict_hunks(marked, 8, "x\n<<<<<<< a\n", 4),
        vec![ConflictHunk {
            line: 5,
            at_tip: vec!["<<<<<<< a".to_owned()],
            healthy: vec!["c".to_owned()],
        }]
    );
}

#[test]
fn what_git_asks_for_decides_before_any_merge() {
    let f = failed();
    // A human tried 1.3.0 since: not Bosun's to undo.
    let tip = f.replace("\"1.2.0\"", "\"1.3.0\"");
    assert_eq!(
        revert(&f, &tip, HEALTHY),
        Revert::ChangedByHuman("1.3.0".to_owned())
    );
    // A human changed only the env back: git asks for something new too.
    let tip = f.replace("'fast'", "'steady'");
    assert_eq!(
        revert(&f, &tip, HEALTHY),
        Revert::ChangedByHuman("1.2.0".to_owned())
    );
    // A human restored the healthy definition, with a comment of their own: nothing to do.
    let tip = HEALTHY.replace("# keep it quoted", "# back to 1.1.0 by hand");
    assert_eq!(revert(&f, &tip, HEALTHY), Revert::AlreadyRestored);
}

#[test]
fn without_the_document_at_the_failed_or_healthy_commit_no_merge_is_made() {
    let f = failed();
    let api_only = &HEALTHY[HEALTHY.find("---\n").expect("two documents") + 4..];
    let cases = [
        (
            f.as_str(),
            api_only,
            "at the healthy commit defines no ManagedApplication named web",
        ),
        (
            api_only,
            f.as_str(),
            "at the failed commit defines no ManagedApplication named web",
        ),
        ("kind: [", HEALTHY, "at the failed commit is not valid YAML"),
        (
            f.as_str(),
            "kind: ManagedApplication\nmetadata: {name: web}\n---\nkind: ManagedApplication\nmetadata: {name: web}\n",
            "2 documents of the file at the healthy commit",
        ),
    ];
    for (failed, healthy, want) in cases {
        match revert(failed, &f, healthy) {
            Revert::CannotMerge(why) => assert!(why.contains(want), "{why}"),
            other => panic!("expected no merge ({want}), got {other:?}"),
        }
    }
}

#[test]
fn a_missing_or_ambiguous_app_at_the_tip_is_said_as_for_a_version_edit() {
    let f = failed();
    assert_eq!(
        revert(&f, "kind: ConfigMap\n", HEALTHY),
        Revert::NotFound(
            "the file defines no ManagedApplication named web in namespace prod".into()
        )
    );
    let twice = format!("{f}---\n{f}");
    assert!(matches!(
        revert_document(
            Texts {
                failed: &f,
                tip: &twice,
                healthy: HEALTHY
            },
            WEB
        ),
        Err(EditError::Ambiguous { count: 2, .. })
    ));
    assert!(matches!(
        revert_document(
            Texts {
                failed: &f,
                tip: "kind: [",
                healthy: HEALTHY
            },
            WEB
        ),
        Err(EditError::ReadYaml(_))
    ));
}

#[test]
fn a_documents_lines_run_from_its_marker_to_the_next_document() {
    let cases: &[(&str, &[&str])] = &[
        (
            "# head\n---\na: 1\n--- # web\n# c\nb: 2\n...\n# after end\nc: 3\n",
            &["a: 1\n", "# c\nb: 2\n...\n# after end\n", "c: 3\n"],
        ),
        (
            "\u{feff}# ünï\na: 1\r\n--- {x: 1}\r\n---\r\n---\r\nz: 1",
            &["\u{feff}# ünï\na: 1\r\n", "--- {x: 1}\r\n", "", "z: 1"],
        ),
    ];
    for (text, want) in cases {
        let docs = yaml::parse_documents(text, &Limits::default()).expect("valid");
        let ranges = document_ranges(text, &docs).expect("split");
        let parts: Vec<&str> = ranges.iter().map(|r| &text[r.clone()]).collect();
        assert_eq!(&parts, want, "{text:?}");
    }
}

#[test]
fn a_clean_merge_that_does_not_read_back_is_a_conflict_too() {
    // The failed commit dropped `paused: false` next to the version; a human added `paused: true`
    // at the end since. Line by line the merge is clean, but it holds `paused` twice.
    let healthy = "kind: ManagedApplication\nmetadata: {name: web}\nspec:\n  paused: false\n  version: '1.1.0'\n  replicas: 1\n  image: web\n";
    let failed = healthy
        .replace("  paused: false\n", "")
        .replace("'1.1.0'", "'1.2.0'");
    let tip = format!("{failed}  paused: true\n");
    let Revert::Conflict(conflict) = revert(&failed, &tip, healthy) else {
        panic!("expected a conflict")
    };
    assert_eq!(conflict.hunks, Vec::new());
    let why = conflict.unreadable.expect("why");
    assert!(why.contains("appears twice"), "{why}");
    assert_eq!(conflict.text, healthy, "the proposal: the healthy document");
}
