//! `bosun validate` and `bosun crds` as a user runs them: the binary, real files, exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn bosun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bosun"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("the bosun binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `# expect: ...` lines a bad fixture declares.
fn expectations(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).expect("fixture is readable");
    text.lines()
        .filter_map(|l| l.strip_prefix("# expect: "))
        .map(str::to_string)
        .collect()
}

fn finding_lines(out: &str) -> Vec<&str> {
    out.lines()
        .filter(|l| !l.starts_with("invalid: ") && !l.starts_with("ok: "))
        .collect()
}

#[test]
fn the_seed_yaml_and_the_examples_are_valid() {
    for path in [
        "fixtures/seeds/000-bestie.yaml",
        "fixtures/seeds/001-bestie.yaml",
        "fixtures/seeds/002-my-app.yaml",
        "examples/apps",
    ] {
        let out = bosun(&["validate", path]);
        assert_eq!(out.status.code(), Some(0), "{path}: {}", stdout(&out));
        assert!(stdout(&out).starts_with("ok: "), "{}", stdout(&out));
    }
}

#[test]
fn the_fixtures_are_the_seed_documents_verbatim() {
    // The seeds are the user's own documents, beside the clone (as in CI) or where BOSUN_SEEDS says.
    let seeds = std::env::var_os("BOSUN_SEEDS")
        .map_or_else(|| root().join("../shared/seeds"), PathBuf::from);
    assert!(
        seeds.is_dir(),
        "the seed documents are not at {}: clone beside shared/ (as CI does) or set BOSUN_SEEDS",
        seeds.display()
    );
    let fixtures = ["000-bestie.yaml", "001-bestie.yaml", "002-my-app.yaml"];
    let mut joined = String::new();
    for entry in std::fs::read_dir(&seeds).expect("seeds dir") {
        joined.push_str(&std::fs::read_to_string(entry.expect("entry").path()).unwrap_or_default());
    }
    for f in fixtures {
        let text = std::fs::read_to_string(root().join("fixtures/seeds").join(f)).expect("fixture");
        assert!(
            joined.contains(text.trim_end()),
            "fixtures/seeds/{f} is no longer verbatim from the seeds"
        );
    }
}

#[test]
fn every_bad_fixture_is_rejected_with_exactly_the_errors_it_declares() {
    let dir = root().join("fixtures/invalid");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures/invalid")
        .map(|e| e.expect("entry").path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 10, "the corpus of bad inputs is there");
    for case in cases {
        let expected: Vec<String> = if case.is_dir() {
            std::fs::read_dir(&case)
                .expect("dir")
                .flat_map(|e| expectations(&e.expect("entry").path()))
                .collect()
        } else {
            expectations(&case)
        };
        assert!(
            !expected.is_empty(),
            "{} declares what it expects",
            case.display()
        );
        let out = bosun(&["validate", case.to_str().expect("utf-8 path")]);
        let text = stdout(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {text}", case.display());
        let lines = finding_lines(&text);
        for want in &expected {
            assert!(
                lines.iter().any(|l| l.contains(want.as_str())),
                "{}: missing {want:?} in\n{text}",
                case.display()
            );
        }
        assert_eq!(
            lines.len(),
            expected.len(),
            "{}: unexpected extra findings:\n{text}",
            case.display()
        );
    }
}

/// The YAML files under `dir`, however deep.
fn yaml_files(dir: &str) -> usize {
    std::fs::read_dir(dir)
        .expect("a directory")
        .map(|e| e.expect("an entry").path())
        .map(|p| {
            if p.is_dir() {
                yaml_files(p.to_str().expect("utf-8"))
            } else {
                usize::from(p.extension().is_some_and(|x| x == "yaml"))
            }
        })
        .sum()
}

#[test]
fn json_output_is_machine_readable() {
    let out = bosun(&[
        "validate",
        "--output",
        "json",
        "fixtures/invalid/wrong-types.yaml",
        "examples/apps",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["valid"], false);
    // Every example is valid and is listed: one resource per file of examples/apps.
    assert_eq!(
        v["resources"].as_array().map(Vec::len),
        Some(yaml_files("examples/apps"))
    );
    let first = &v["findings"][0];
    assert_eq!(first["file"], "fixtures/invalid/wrong-types.yaml");
    assert_eq!(first["line"], 9);
    assert_eq!(first["column"], 12);
    assert_eq!(first["field"], "spec.version");
    assert_eq!(first["resource"], "Bestie/pets");
    assert!(
        first["hint"]
            .as_str()
            .is_some_and(|h| h.contains("quote it"))
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(bosun(&["validate"]).status.code(), Some(2));
    let out = bosun(&["validate", "no/such/dir"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no/such/dir: no such file or directory")
    );
}

#[test]
fn huge_binary_and_linked_files_are_refused_without_reading_them_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("huge.yaml"), "a: b\n".repeat(400_000)).expect("write");
    std::fs::write(dir.path().join("binary.yaml"), [0x66, 0x6f, 0xff, 0xfe]).expect("write");
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("escape.yaml")).expect("symlink");
    let out = bosun(&["validate", dir.path().to_str().expect("utf-8")]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("huge.yaml: file is 2000000 bytes, over the limit of 1048576 bytes"),
        "{text}"
    );
    assert!(
        text.contains("binary.yaml: not UTF-8 text (invalid byte at offset 2)"),
        "{text}"
    );
    assert!(
        text.contains("escape.yaml: a symbolic link; links are not followed"),
        "{text}"
    );
}

#[test]
fn skipped_documents_are_listed_with_verbose() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
    )
    .expect("write");
    let out = bosun(&["validate", "-v", dir.path().to_str().expect("utf-8")]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("cm.yaml:1: document 1: skipped: v1/ConfigMap"),
        "{text}"
    );
    assert!(
        text.contains("ok: 0 resources in 1 file, 1 document skipped"),
        "{text}"
    );
}

#[test]
fn the_checked_in_crds_are_what_this_build_generates() {
    let out = bosun(&["crds", "--check", "deploy/crds"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_stale_crd_is_caught() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().to_str().expect("utf-8");
    assert_eq!(bosun(&["crds", "--write", d]).status.code(), Some(0));
    let file = dir.path().join("managedapplications.apps.example.com.yaml");
    let text = std::fs::read_to_string(&file).expect("written");
    std::fs::write(&file, text.replace("Pending", "Waiting")).expect("write");
    let out = bosun(&["crds", "--check", d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is stale"));
}

#[test]
fn the_printed_crds_read_back_as_the_same_objects() {
    let out = bosun(&["crds"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    let docs = bosun_core::yaml::parse_documents(&text, &bosun_core::yaml::Limits::default())
        .expect("valid YAML");
    let read: Vec<serde_json::Value> = docs
        .iter()
        .filter_map(|d| d.root.as_ref())
        .map(|n| n.to_json())
        .collect();
    let want: Vec<serde_json::Value> = bosun_core::model::crds()
        .into_iter()
        .map(|c| serde_json::to_value(c).expect("serializes"))
        .collect();
    assert_eq!(read, want);
}

#[test]
fn a_huge_value_is_quoted_cut_to_80_characters() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("huge.yaml");
    let huge = "x".repeat(200 * 1024);
    std::fs::write(
        &file,
        format!(
            "apiVersion: apps.example.com/v1alpha1\nkind: ManagedApplication\nmetadata:\n  name: shop\n\
             spec:\n  version: \"{huge}\"\n  image: \"{huge}\"\n"
        ),
    )
    .expect("write");
    let out = bosun(&["validate", file.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(1));
    let shown = stdout(&out);
    let cut = format!("\"{}…\"", "x".repeat(79));
    for field in ["spec.version", "spec.image"] {
        assert!(
            shown.contains(&format!("{field}: {cut} is not a valid")),
            "{shown}"
        );
    }
    assert!(shown.len() < 2000, "{} bytes printed", shown.len());
}
