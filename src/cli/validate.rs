//! `bosun validate`: the same checks Bosun runs on every revision it reads from git, for a checkout or a
//! pull request's CI job.

use std::path::PathBuf;
use std::process::ExitCode;

use bosun_core::validate::{self, Finding, Report};
use bosun_core::yaml::Limits;
use serde_json::json;

use super::Output;
use crate::files;

pub(super) fn run(
    paths: &[PathBuf],
    output: Output,
    verbose: bool,
    max_file_bytes: usize,
) -> ExitCode {
    let limits = Limits {
        max_bytes: max_file_bytes,
        ..Limits::default()
    };
    let found = match files::collect(paths, max_file_bytes) {
        Ok(found) => found,
        Err(e) => {
            eprintln!("bosun validate: {e}");
            return ExitCode::from(2);
        }
    };
    let names: Vec<String> = found.iter().map(|f| f.path.display().to_string()).collect();
    let mut unreadable = Vec::new();
    let readable = found
        .iter()
        .zip(&names)
        .filter_map(|(f, name)| match &f.text {
            Ok(text) => Some((name.as_str(), text.as_str())),
            Err(reason) => {
                unreadable.push(Finding {
                    file: name.clone(),
                    document: None,
                    line: None,
                    column: None,
                    resource: None,
                    field: None,
                    reason: reason.clone(),
                    hint: None,
                });
                None
            }
        });
    let mut report = validate::validate_files(readable, &limits);
    report.findings.splice(0..0, unreadable);
    match output {
        Output::Text => print_text(&report, found.len(), verbose),
        Output::Json => print_json(&report, found.len()),
    }
    if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn print_text(report: &Report, files: usize, verbose: bool) {
    for f in &report.findings {
        println!("{f}");
    }
    if verbose {
        for s in &report.skipped {
            println!(
                "{}:{}: document {}: skipped: {}",
                s.file, s.line, s.document, s.what
            );
        }
    }
    let skipped = if report.skipped.is_empty() {
        String::new()
    } else {
        format!(
            ", {} skipped",
            plural(report.skipped.len(), "document", "documents")
        )
    };
    if report.is_valid() {
        println!(
            "ok: {} in {}{skipped}",
            plural(report.definitions.len(), "resource", "resources"),
            plural(files, "file", "files"),
        );
    } else {
        let bad_files: std::collections::BTreeSet<_> =
            report.findings.iter().map(|f| &f.file).collect();
        println!(
            "invalid: {} in {} of {}; {} valid{skipped}",
            plural(report.findings.len(), "error", "errors"),
            plural(bad_files.len(), "file", "files"),
            files,
            plural(report.definitions.len(), "resource is", "resources are"),
        );
    }
}

fn print_json(report: &Report, files: usize) {
    let resources: Vec<_> = report
        .definitions
        .iter()
        .map(|d| {
            json!({
                "kind": d.kind().name(),
                "name": d.name(),
                "namespace": d.namespace(),
                "file": d.source.file,
                "document": d.source.document,
                "line": d.source.line,
            })
        })
        .collect();
    let out = json!({
        "valid": report.is_valid(),
        "files": files,
        "resources": resources,
        "findings": report.findings,
        "skipped": report.skipped,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
}
