//! Writing back to git against a real git server (`scripts/gitserver`), over HTTP (password and
//! token) and SSH: rollback commits that restore what the failed commit changed in the app's
//! document (version, migration image, env) and keep every other byte, pushes that lose a race,
//! humans who changed the app first or edited the same lines since (a pull request branch, never
//! the watched branch), protected branches, idempotence, and notes that `git log --notes=bosun`
//! shows in a fresh clone.
//!
//! Each test makes its own repository (named after the test) and its own writer state directory.

mod support;

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosun::git::writeback::{
    Author, GitWriter, LeftAlone, NOTES_REF, NoteOutcome, PullRequestReason, PushAttempt,
    PushTarget, RollbackRequest, WriteError, WriteLimits, WriteOutcome, WriterSpec,
};
use bosun::git::{Auth, ErrorKind, Oid, Secret};
use bosun_core::model::{HistoryEntry, Phase};
use bosun_core::writeback::{
    AppOutcome, CommitOutcome, OutcomeResult, Restoration, RollbackCommit, parse_bosun_trailers,
    render_note,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use support::gitserver::{self, GitServer, TestRepo};
use tempfile::TempDir;

fn server() -> &'static GitServer {
    gitserver::shared()
}

fn basic_auth() -> Auth {
    Auth::Basic {
        username: server().http_user.clone(),
        password: Secret::from(server().http_password.clone()),
    }
}

fn token_auth() -> Auth {
    Auth::Token(Secret::from(server().http_token.clone()))
}

fn ssh_auth() -> Auth {
    Auth::SshKey {
        username: server().ssh_user.clone(),
        private_key: server().ssh_key.clone(),
        passphrase: None,
        known_hosts: server().ssh_known_hosts.clone(),
    }
}

/// The file as a human wrote it: comments, a quoted version, a flow-style document, CRLF nowhere
/// but in the last document.
const WEB_AT_1_4: &str = "\
# Web front end. Owned by team-web; CI bumps the version.
apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: web
  namespace: prod
spec:
  # the version to run
  version: \"1.4.0\"   # keep it quoted
  replicas: 3
---
apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata: {name: api, namespace: prod}
spec: {version: 1.4.0, replicas: 2}   # api is released with web
---\r
apiVersion: apps.example.com/v1alpha1\r
kind: ManagedApplication\r
metadata:\r
  name: web\r
  namespace: staging\r
spec:\r
  version: 1.5.0\r
";

fn web_at(version: &str) -> String {
    WEB_AT_1_4.replacen("\"1.4.0\"", &format!("\"{version}\""), 1)
}

const REASON: &str = "The health check of web 1.5.0 failed 3 times at canary step 1 (50%): \
                      GET /healthz returned 503.";

/// The rollback of `bump`, back to what its parent (the first commit) asked for.
fn request(repo: &TestRepo, bump: &str) -> RollbackRequest {
    RollbackRequest::managed_application(RollbackCommit {
        namespace: "prod".to_owned(),
        app: "web".to_owned(),
        failed_version: "1.5.0".to_owned(),
        restored_version: "1.4.0".to_owned(),
        failed_hash: Some("15f0015f00".to_owned()),
        restored_hash: Some("14e0014e00".to_owned()),
        reason: REASON.to_owned(),
        undoes: bump.to_owned(),
        restores: Some(parent_of(repo, bump)),
        source_path: "apps/web.yaml".to_owned(),
    })
}

/// A repository where web ran 1.4.0 and a second commit bumped it to 1.5.0; returns the bump.
fn bumped_repo(name: &str) -> (TestRepo, String) {
    let repo = server().create_repo(
        name,
        &[("apps/web.yaml", WEB_AT_1_4), ("README.md", "apps\n")],
    );
    let bump = repo.commit("Bump web to 1.5.0", &[("apps/web.yaml", web_at("1.5.0"))]);
    (repo, bump)
}

fn limits() -> WriteLimits {
    WriteLimits {
        initial_backoff: Duration::from_millis(50),
        network_timeout: Duration::from_secs(30),
        ..WriteLimits::default()
    }
}

fn writer_spec(url: &str, auth: Auth) -> WriterSpec {
    WriterSpec {
        url: url.to_owned(),
        branch: "main".to_owned(),
        auth,
        author: Author::default(),
        limits: limits(),
    }
}

/// A writer with a state directory of its own (kept alive by the returned `TempDir`).
fn open_writer(url: &str, auth: Auth) -> (GitWriter, TempDir) {
    let state = tempfile::tempdir().expect("a state directory");
    let writer = GitWriter::open(writer_spec(url, auth), state.path()).expect("opening a writer");
    (writer, state)
}

/// The git CLI on the server's bare repository: what anyone cloning would see.
fn bare_git(repo: &TestRepo, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("--git-dir")
        .arg(&repo.bare)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("git prints UTF-8")
}

fn main_tip(repo: &TestRepo) -> String {
    bare_git(repo, &["rev-parse", "main"]).trim().to_owned()
}

fn file_at(repo: &TestRepo, rev: &str) -> String {
    bare_git(repo, &["show", &format!("{rev}:apps/web.yaml")])
}

fn parent_of(repo: &TestRepo, rev: &str) -> String {
    bare_git(repo, &["rev-parse", &format!("{rev}^")])
        .trim()
        .to_owned()
}

fn commit_count(repo: &TestRepo) -> usize {
    bare_git(repo, &["rev-list", "--count", "main"])
        .trim()
        .parse()
        .expect("a count")
}

/// The commit and attempts of a rollback that restored the app's definition.
fn committed(outcome: WriteOutcome) -> (Oid, u32) {
    match outcome {
        WriteOutcome::Committed {
            commit,
            attempts,
            how: Restoration::Definition,
        } => (commit, attempts),
        other => panic!("expected a commit that restores the definition, got {other:?}"),
    }
}

/// Checks what a rollback commit on main holds: byte-exact file, one parent, message, author.
fn assert_rollback_on_main(repo: &TestRepo, commit: Oid, parent: &str) {
    let sha = commit.to_string();
    assert_eq!(main_tip(repo), sha, "main is the rollback commit");
    assert_eq!(parent_of(repo, &sha), parent, "on top of the tip Bosun saw");
    assert_eq!(
        file_at(repo, &sha),
        WEB_AT_1_4,
        "byte for byte the file as it was at 1.4.0"
    );
    assert_eq!(
        bare_git(repo, &["diff", "--name-only", parent, &sha]),
        "apps/web.yaml\n",
        "no other file changed"
    );
    assert_eq!(
        bare_git(repo, &["log", "-1", "--format=%an <%ae>|%cn <%ce>", &sha]).trim(),
        "Bosun <bosun@noreply.local>|Bosun <bosun@noreply.local>"
    );
}

#[test]
fn a_rollback_over_http_changes_only_the_version_and_says_why() {
    let (repo, bump) = bumped_repo("rollback-http");
    let (writer, _state) = open_writer(&repo.http_url, basic_auth());
    let (commit, attempts) = committed(
        writer
            .commit_rollback(&request(&repo, &bump))
            .expect("rollback"),
    );
    assert_eq!(attempts, 1);
    assert_rollback_on_main(&repo, commit, &bump);

    let message = bare_git(&repo, &["log", "-1", "--format=%B", &commit.to_string()]);
    assert_eq!(
        message.trim_end(),
        request(&repo, &bump)
            .commit
            .message(&Restoration::Definition)
            .trim_end()
    );
    assert!(message.starts_with("Roll back prod/web from 1.5.0 to 1.4.0\n\n"));
    assert!(
        message.contains("(50%): GET\n/healthz returned 503."),
        "{message}"
    );
    // git itself reads the trailers, and Bosun recognises its own commit.
    let trailers = bare_git(
        &repo,
        &[
            "log",
            "-1",
            "--format=%(trailers:only)",
            &commit.to_string(),
        ],
    );
    assert_eq!(
        trailers.trim(),
        format!("Bosun-Rollback-Of: {bump}\nBosun-App: prod/web\nBosun-Failed-Version: 1.5.0")
    );
    let recognised = parse_bosun_trailers(&message).expect("Bosun's own commit");
    assert_eq!(recognised.rollback_of, bump);
    assert_eq!(
        parse_bosun_trailers(&bare_git(&repo, &["log", "-1", "--format=%B", &bump])),
        None
    );
    eprintln!(
        "--- git log -1 (a rollback commit) ---\n{}",
        bare_git(&repo, &["log", "-1", &commit.to_string()])
    );
}

#[test]
fn a_rollback_over_ssh_is_the_same_commit() {
    let (repo, bump) = bumped_repo("rollback-ssh");
    let (writer, _state) = open_writer(&repo.ssh_url, ssh_auth());
    let (commit, _) = committed(
        writer
            .commit_rollback(&request(&repo, &bump))
            .expect("rollback"),
    );
    assert_rollback_on_main(&repo, commit, &bump);
}

#[test]
fn a_push_that_lands_between_fetch_and_push_is_built_upon_never_overwritten() {
    let (repo, bump) = bumped_repo("rollback-race");
    let repo = Arc::new(repo);
    let other: Arc<Mutex<Option<String>>> = Arc::default();
    let (hook_repo, hook_other) = (Arc::clone(&repo), Arc::clone(&other));
    let attempts_seen: Arc<Mutex<Vec<PushAttempt>>> = Arc::default();
    let seen = Arc::clone(&attempts_seen);
    let state = tempfile::tempdir().expect("a state directory");
    let writer = GitWriter::open(writer_spec(&repo.http_url, token_auth()), state.path())
        .expect("a writer")
        .before_push(move |attempt| {
            seen.lock().expect("not poisoned").push(attempt.clone());
            if attempt.attempt == 1 {
                // Someone else pushes after Bosun fetched and committed, before it pushes.
                let sha =
                    hook_repo.commit("Document the apps", &[("README.md", "apps, documented\n")]);
                *hook_other.lock().expect("not poisoned") = Some(sha);
            }
        });
    let (commit, attempts) = committed(
        writer
            .commit_rollback(&request(&repo, &bump))
            .expect("rollback"),
    );
    let other = other
        .lock()
        .expect("not poisoned")
        .clone()
        .expect("the hook pushed");
    assert_eq!(attempts, 2, "the first push lost the race, the second won");
    assert_eq!(
        *attempts_seen.lock().expect("not poisoned"),
        vec![
            PushAttempt {
                target: PushTarget::Branch,
                attempt: 1
            },
            PushAttempt {
                target: PushTarget::Branch,
                attempt: 2
            },
        ]
    );
    // One rollback commit, on top of the other push, which survives.
    assert_eq!(parent_of(&repo, &commit.to_string()), other);
    assert_eq!(parent_of(&repo, &other), bump);
    assert_eq!(commit_count(&repo), 4);
    assert_eq!(
        bare_git(&repo, &["show", "main:README.md"]),
        "apps, documented\n"
    );
    assert_eq!(file_at(&repo, "main"), WEB_AT_1_4);
    // Nothing was forced: main's reflog only ever moved forward.
    let reflog = bare_git(&repo, &["reflog", "show", "--format=%H", "main"]);
    let moves: Vec<&str> = reflog.lines().collect();
    assert_eq!(moves[..2], [commit.to_string().as_str(), other.as_str()]);
}

#[test]
fn a_human_who_changes_the_version_during_bosuns_push_wins() {
    let (repo, bump) = bumped_repo("rollback-race-human");
    let repo = Arc::new(repo);
    let hook_repo = Arc::clone(&repo);
    let state = tempfile::tempdir().expect("a state directory");
    let writer = GitWriter::open(writer_spec(&repo.http_url, basic_auth()), state.path())
        .expect("a writer")
        .before_push(move |attempt| {
            if attempt.attempt == 1 {
                hook_repo.commit("Try web 1.6.0", &[("apps/web.yaml", web_at("1.6.0"))]);
            }
        });
    let outcome = writer
        .commit_rollback(&request(&repo, &bump))
        .expect("no error");
    assert_eq!(
        outcome,
        WriteOutcome::LeftAlone(LeftAlone::ChangedByHuman {
            current: "1.6.0".to_owned()
        })
    );
    assert_eq!(
        main_tip(&repo),
        repo.head(),
        "the human's commit is the tip"
    );
    assert_eq!(file_at(&repo, "main"), web_at("1.6.0"));
}

#[test]
fn a_version_a_human_already_changed_gets_no_commit() {
    let (repo, bump) = bumped_repo("rollback-human-first");
    let human = repo.commit("Back to 1.3.9", &[("apps/web.yaml", web_at("1.3.9"))]);
    let (writer, _state) = open_writer(&repo.http_url, basic_auth());
    let outcome = writer
        .commit_rollback(&request(&repo, &bump))
        .expect("no error");
    assert_eq!(
        outcome,
        WriteOutcome::LeftAlone(LeftAlone::ChangedByHuman {
            current: "1.3.9".to_owned()
        })
    );
    assert_eq!(main_tip(&repo), human);

    // A human who already set the restored version: nothing to do either.
    let (repo, bump) = bumped_repo("rollback-human-restored");
    let human = repo.commit("Revert the bump", &[("apps/web.yaml", WEB_AT_1_4)]);
    let (writer, _state) = open_writer(&repo.http_url, basic_auth());
    assert_eq!(
        writer
            .commit_rollback(&request(&repo, &bump))
            .expect("no error"),
        WriteOutcome::AlreadyDone { commit: None }
    );
    assert_eq!(main_tip(&repo), human);
}

#[test]
fn a_protected_branch_gets_the_rollback_on_a_branch_for_a_pull_request() {
    let (repo, bump) = bumped_repo("rollback-protected");
    let out = Command::new(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/gitserver"))
        .args(["protect", &repo.name, "main", "--dir"])
        .arg(&server().dir)
        .output()
        .expect("running gitserver protect");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (writer, _state) = open_writer(&repo.http_url, basic_auth());
    let (branch, commit, refused) = match writer
        .commit_rollback(&request(&repo, &bump))
        .expect("rollback")
    {
        WriteOutcome::NeedsPullRequest {
            branch,
            commit,
            reason: PullRequestReason::Refused(refused),
        } => (branch, commit, refused),
        other => panic!("expected a pull request branch, got {other:?}"),
    };
    assert_eq!(branch, "bosun/rollback-prod-web-1.5.0");
    assert!(refused.contains("pre-receive hook declined"), "{refused}");
    assert!(
        refused.contains("GH006: Protected branch update failed"),
        "{refused}"
    );
    assert_eq!(main_tip(&repo), bump, "main is unchanged");
    let on_branch = bare_git(&repo, &["rev-parse", &format!("refs/heads/{branch}")]);
    assert_eq!(on_branch.trim(), commit.to_string());
    assert_eq!(parent_of(&repo, &commit.to_string()), bump);
    assert_eq!(file_at(&repo, &commit.to_string()), WEB_AT_1_4);

    // Asked again (Bosun restarted, say): the same branch and commit, nothing new pushed.
    let again = writer
        .commit_rollback(&request(&repo, &bump))
        .expect("rollback again");
    assert_eq!(
        again,
        WriteOutcome::NeedsPullRequest {
            branch: branch.clone(),
            commit,
            reason: PullRequestReason::Refused(refused)
        }
    );
    let branches = bare_git(
        &repo,
        &["for-each-ref", "--format=%(refname)", "refs/heads/"],
    );
    assert_eq!(branches, format!("refs/heads/{branch}\nrefs/heads/main\n"));
}

#[test]
fn running_a_rollback_twice_makes_one_commit() {
    let (repo, bump) = bumped_repo("rollback-twice");
    let (writer, _state) = open_writer(&repo.http_url, token_auth());
    let (commit, _) = committed(
        writer
            .commit_rollback(&request(&repo, &bump))
            .expect("rollback"),
    );
    assert_eq!(
        writer
            .commit_rollback(&request(&repo, &bump))
            .expect("again"),
        WriteOutcome::AlreadyDone {
            commit: Some(commit)
        }
    );
    // A new writer (Bosun restarted with an empty state directory) finds it too.
    let (fresh, _fresh_state) = open_writer(&repo.http_url, token_auth());
    assert_eq!(
        fresh
            .commit_rollback(&request(&repo, &bump))
            .expect("after a restart"),
        WriteOutcome::AlreadyDone {
            commit: Some(commit)
        }
    );
    // A human's `git revert` of the rollback asks for 1.5.0 again: a new desired state, a commit
    // that is not Bosun's, and not Bosun's to undo with the same rollback again.
    let bare = repo.bare.display().to_string();
    repo.git(&["pull", "-q", "--ff-only", &bare, "main"]);
    repo.git(&["revert", "--no-edit", &commit.to_string()]);
    repo.git(&["push", "-q", &bare, "HEAD:refs/heads/main"]);
    let revert_message = bare_git(&repo, &["log", "-1", "--format=%B", "main"]);
    assert!(
        revert_message.starts_with("Revert \"Roll back prod/web"),
        "{revert_message}"
    );
    assert_eq!(
        parse_bosun_trailers(&revert_message),
        None,
        "a human's commit"
    );
    assert_eq!(file_at(&repo, "main"), web_at("1.5.0"));
    assert_eq!(
        writer
            .commit_rollback(&request(&repo, &bump))
            .expect("after the revert"),
        WriteOutcome::AlreadyDone {
            commit: Some(commit)
        }
    );
    assert_eq!(commit_count(&repo), 4);
}

#[test]
fn a_missing_file_or_app_is_left_alone_and_a_link_is_refused() {
    let (repo, bump) = bumped_repo("rollback-missing");
    let (writer, _state) = open_writer(&repo.http_url, basic_auth());
    let mut other_app = request(&repo, &bump);
    other_app.commit.app = "worker".to_owned();
    match writer.commit_rollback(&other_app).expect("no error") {
        WriteOutcome::LeftAlone(LeftAlone::NotFound { reason }) => {
            assert!(
                reason.contains("no ManagedApplication named worker"),
                "{reason}"
            )
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let mut other_file = request(&repo, &bump);
    other_file.commit.source_path = "apps/gone.yaml".to_owned();
    assert!(matches!(
        writer.commit_rollback(&other_file).expect("no error"),
        WriteOutcome::LeftAlone(LeftAlone::NotFound { .. })
    ));

    repo.remove("Move web", &["apps/web.yaml"]);
    let tip = repo.commit_symlink("Link web", "apps/web.yaml", "../../etc/passwd");
    let err = writer
        .commit_rollback(&request(&repo, &bump))
        .expect_err("a link");
    assert!(matches!(err, WriteError::ReadFile { .. }), "{err:?}");
    assert!(err.to_string().contains("symbolic link"), "{err}");
    assert_eq!(err.kind(), ErrorKind::Stalled);
    assert_eq!(main_tip(&repo), tip);

    let mut escaping = request(&repo, &bump);
    escaping.commit.source_path = "../outside.yaml".to_owned();
    let err = writer
        .commit_rollback(&escaping)
        .expect_err("an escaping path");
    assert!(matches!(err, WriteError::InvalidRequest { .. }), "{err:?}");
}

/// Two apps in one file, saved by an editor that writes CRLF, with comments and quoting: web ran
/// 1.1.0 healthy with this definition, its migration image pinned to its version.
fn shop_healthy() -> String {
    [
        "# The shop. Owned by team-shop; CI bumps the versions.",
        "apiVersion: apps.example.com/v1alpha1",
        "kind: ManagedApplication",
        "metadata:",
        "  name: web",
        "  namespace: prod",
        "spec:",
        "  version: '1.1.0'   # quoted on purpose",
        "  replicas: 3",
        "  env:",
        "    - name: MODE",
        "      value: \"steady\"",
        "  upgradeStrategy:",
        "    type: Rolling",
        "    # the migration runs first",
        "    migrationJob:",
        "      image: registry.example.com/shop/web-migrations:1.1.0",
        "---",
        "apiVersion: apps.example.com/v1alpha1",
        "kind: ManagedApplication",
        "metadata: {name: api, namespace: prod}",
        "spec: {version: 2.0.0, replicas: 2}   # released on its own",
        "",
    ]
    .join("\r\n")
}

/// The quick start's kind of bump: web's version, its migration image and its env at once, and
/// api's version in the same commit.
fn shop_failed() -> String {
    shop_healthy()
        .replace("'1.1.0'", "'1.2.0'")
        .replace("\"steady\"", "\"fast\"")
        .replace("web-migrations:1.1.0", "web-migrations:1.2.0")
        .replace("version: 2.0.0", "version: 2.1.0")
}

const SHOP: &str = "apps/shop.yaml";

/// A repository where web ran 1.1.0, then a commit asked for 1.2.0: (repo, healthy, failed).
fn shop_repo(name: &str, failed: &str) -> (TestRepo, String, String) {
    let repo = server().create_repo(
        name,
        &[(SHOP, shop_healthy().as_str()), ("README.md", "shop\n")],
    );
    let healthy = repo.head();
    let bump = repo.commit("web 1.2.0 with its migration, fast mode", &[(SHOP, failed)]);
    (repo, healthy, bump)
}

fn shop_request(healthy: Option<&str>, bump: &str) -> RollbackRequest {
    RollbackRequest::managed_application(RollbackCommit {
        namespace: "prod".to_owned(),
        app: "web".to_owned(),
        failed_version: "1.2.0".to_owned(),
        restored_version: "1.1.0".to_owned(),
        failed_hash: Some("12f0012f00".to_owned()),
        restored_hash: Some("11e0011e00".to_owned()),
        reason: "The migration of web 1.2.0 failed: BackoffLimitExceeded.".to_owned(),
        undoes: bump.to_owned(),
        restores: healthy.map(str::to_owned),
        source_path: SHOP.to_owned(),
    })
}

fn shop_at(repo: &TestRepo, rev: &str) -> String {
    bare_git(repo, &["show", &format!("{rev}:{SHOP}")])
}

#[test]
fn a_rollback_restores_the_version_migration_image_and_env_and_keeps_every_other_byte() {
    let (repo, healthy, bump) = shop_repo("restore-definition", &shop_failed());
    // A human's edits since the failed commit, away from the lines it changed: kept.
    let human = repo.commit(
        "web: Recreate, one node left; api scaled",
        &[
            (
                SHOP,
                shop_failed()
                    .replace("type: Rolling", "type: Recreate   # one node left")
                    .replace("replicas: 2}", "replicas: 4}"),
            ),
            ("README.md", "shop, documented\n".to_owned()),
        ],
    );
    let (writer, _state) = open_writer(&repo.http_url, basic_auth());
    let request = shop_request(Some(&healthy), &bump);
    let (commit, _) = committed(writer.commit_rollback(&request).expect("rollback"));
    let sha = commit.to_string();
    assert_eq!(main_tip(&repo), sha);
    assert_eq!(parent_of(&repo, &sha), human);
    let want = shop_healthy()
        .replace("type: Rolling", "type: Recreate   # one node left")
        .replace(
            "version: 2.0.0, replicas: 2}",
            "version: 2.1.0, replicas: 4}",
        );
    assert_eq!(
        shop_at(&repo, &sha),
        want,
        "web as it ran healthy, with the human's edit; api as at the tip; CRLF and comments kept"
    );
    assert_eq!(
        bare_git(&repo, &["diff", "--name-only", &human, &sha]),
        format!("{SHOP}\n"),
        "no other file changed"
    );
    let message = bare_git(&repo, &["log", "-1", "--format=%B", &sha]);
    assert!(
        message.starts_with("Roll back prod/web from 1.2.0 to 1.1.0\n\n"),
        "{message}"
    );
    assert!(message.contains("restores its definition"), "{message}");
    assert_eq!(
        message.trim_end(),
        request.commit.message(&Restoration::Definition).trim_end()
    );
    eprintln!(
        "--- git show (a rollback commit that restores a definition) ---\n{}",
        bare_git(&repo, &["show", &sha])
    );
}

#[test]
fn a_human_edit_of_the_lines_a_rollback_restores_goes_to_a_pull_request_branch_never_to_main() {
    let (repo, healthy, bump) = shop_repo("restore-conflict", &shop_failed());
    // Ops scaled web up while 1.2.0 was failing: the line right under the version.
    let human = repo.commit(
        "web: more replicas",
        &[(
            SHOP,
            shop_failed().replace("replicas: 3", "replicas: 5   # while 1.2.0 is looked at"),
        )],
    );
    let (writer, _state) = open_writer(&repo.http_url, basic_auth());
    let request = shop_request(Some(&healthy), &bump);
    let (branch, commit, hunks) = match writer.commit_rollback(&request).expect("rollback") {
        WriteOutcome::NeedsPullRequest {
            branch,
            commit,
            reason:
                PullRequestReason::Conflict {
                    hunks,
                    unreadable: None,
                },
        } => (branch, commit, hunks),
        other => panic!("expected a pull request branch for a conflict, got {other:?}"),
    };
    assert_eq!(main_tip(&repo), human, "main is never overwritten");
    assert_eq!(
        shop_at(&repo, "main"),
        shop_failed().replace("replicas: 3", "replicas: 5   # while 1.2.0 is looked at")
    );
    assert_eq!(branch, "bosun/rollback-prod-web-1.2.0");
    let sha = commit.to_string();
    assert_eq!(
        bare_git(&repo, &["rev-parse", &format!("refs/heads/{branch}")]).trim(),
        sha
    );
    assert_eq!(parent_of(&repo, &sha), human);
    // The branch proposes web's document as it ran healthy (undoing the human's line too, for a
    // reviewer to see), api's as at the tip, and no conflict markers.
    assert_eq!(
        shop_at(&repo, &sha),
        shop_healthy().replace("version: 2.0.0", "version: 2.1.0")
    );
    assert_eq!(hunks.len(), 1, "{hunks:?}");
    assert_eq!(hunks[0].line, 8);
    assert_eq!(
        hunks[0].at_tip,
        [
            "  version: '1.2.0'   # quoted on purpose",
            "  replicas: 5   # while 1.2.0 is looked at"
        ]
    );
    let message = bare_git(&repo, &["log", "-1", "--format=%B", &sha]);
    for says in [
        "so Bosun does not commit to the branch",
        "a human must resolve the conflict",
        "  line 8 of apps/shop.yaml:\n    -   version: '1.2.0'   # quoted on purpose\n    -   replicas: 5   # while 1.2.0 is looked at\n    +   version: '1.1.0'   # quoted on purpose\n    +   replicas: 3\n",
    ] {
        assert!(message.contains(says), "{says:?} in:\n{message}");
    }
    assert_eq!(
        parse_bosun_trailers(&message),
        Some(request.commit.trailers())
    );
    // Asked again (Bosun restarted): the same branch and commit, nothing new pushed, main untouched.
    match writer.commit_rollback(&request).expect("again") {
        WriteOutcome::NeedsPullRequest {
            branch: again,
            commit: same,
            reason: PullRequestReason::Conflict { .. },
        } => assert_eq!((again, same), (branch, commit)),
        other => panic!("expected the same branch, got {other:?}"),
    }
    assert_eq!(main_tip(&repo), human);
    eprintln!("--- git log -1 (a conflicting rollback) ---\n{message}");
}

#[test]
fn an_env_only_failure_is_rolled_back_in_git_and_named_by_its_revisions() {
    let failed = shop_healthy().replace("\"steady\"", "\"fast\"");
    let (repo, healthy, bump) = shop_repo("restore-env-only", &failed);
    let (writer, _state) = open_writer(&repo.http_url, token_auth());
    let mut request = shop_request(Some(&healthy), &bump);
    request.commit.failed_version = "1.1.0".to_owned();
    let (commit, _) = committed(writer.commit_rollback(&request).expect("rollback"));
    let sha = commit.to_string();
    assert_eq!(shop_at(&repo, &sha), shop_healthy());
    assert_eq!(
        bare_git(&repo, &["log", "-1", "--format=%s", &sha]).trim(),
        "Roll back prod/web from 1.1.0 (revision 12f0012f00) to 1.1.0 (revision 11e0011e00)"
    );
}

#[test]
fn without_the_healthy_commit_only_the_version_is_set_back_and_the_commit_says_why() {
    let (repo, _healthy, bump) = shop_repo("restore-unknown-healthy", &shop_failed());
    let (writer, _state) = open_writer(&repo.http_url, basic_auth());
    let request = shop_request(None, &bump);
    let (commit, how) = match writer.commit_rollback(&request).expect("rollback") {
        WriteOutcome::Committed { commit, how, .. } => (commit, how),
        other => panic!("expected a commit, got {other:?}"),
    };
    let Restoration::VersionOnly { why } = &how else {
        panic!("expected a version-only rollback, got {how:?}")
    };
    assert!(why.contains("is not known"), "{why}");
    // Today's edit: the version's bytes only; the migration image and env stay as the bump left them.
    assert_eq!(
        shop_at(&repo, &commit.to_string()),
        shop_failed().replace("'1.2.0'", "'1.1.0'")
    );
    let message = bare_git(&repo, &["log", "-1", "--format=%B", &commit.to_string()]);
    assert!(
        message.contains("Only spec.version is set back"),
        "{message}"
    );

    // An env-only failure has no version to set back: left for a human, main untouched.
    let failed = shop_healthy().replace("\"steady\"", "\"fast\"");
    let (repo, _healthy, bump) = shop_repo("restore-unknown-healthy-env", &failed);
    let (writer, _state) = open_writer(&repo.http_url, basic_auth());
    let mut request = shop_request(None, &bump);
    request.commit.failed_version = "1.1.0".to_owned();
    match writer.commit_rollback(&request).expect("no error") {
        WriteOutcome::LeftAlone(LeftAlone::CannotRestore { reason }) => {
            assert!(reason.contains("changed no version"), "{reason}")
        }
        other => panic!("expected CannotRestore, got {other:?}"),
    }
    assert_eq!(main_tip(&repo), bump);
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

fn web_outcome(rollback_commit: &str) -> AppOutcome {
    AppOutcome {
        namespace: "prod".to_owned(),
        app: "web".to_owned(),
        from_version: Some("1.4.0".to_owned()),
        to_version: "1.5.0".to_owned(),
        history: vec![
            entry(
                Phase::Pending,
                "2026-11-22T01:00:00Z",
                None,
                None,
                "1.4.0 -> 1.5.0",
            ),
            entry(
                Phase::Migrating,
                "2026-11-22T01:00:01Z",
                None,
                None,
                "Job web-migration-1.5.0",
            ),
            entry(
                Phase::Deploying,
                "2026-11-22T01:00:20Z",
                Some(0),
                Some(10),
                "",
            ),
            entry(
                Phase::HealthChecking,
                "2026-11-22T01:00:41Z",
                Some(1),
                Some(50),
                "",
            ),
            entry(
                Phase::Failed,
                "2026-11-22T01:02:03Z",
                Some(1),
                Some(50),
                "health check failed 3 times",
            ),
        ],
        result: OutcomeResult::RolledBack {
            restored_version: "1.4.0".to_owned(),
            reason: "GET /healthz returned 503".to_owned(),
        },
        rollback_commit: Some(rollback_commit.to_owned()),
    }
}

fn api_outcome() -> AppOutcome {
    AppOutcome {
        namespace: "prod".to_owned(),
        app: "api".to_owned(),
        from_version: Some("1.4.0".to_owned()),
        to_version: "1.5.0".to_owned(),
        history: vec![
            entry(Phase::Pending, "2026-11-22T01:00:00Z", None, None, ""),
            entry(Phase::Deploying, "2026-11-22T01:00:02Z", None, None, ""),
            entry(Phase::Healthy, "2026-11-22T01:00:31Z", None, None, ""),
        ],
        result: OutcomeResult::Healthy,
        rollback_commit: None,
    }
}

/// A fresh clone, with Bosun's notes fetched as a user would fetch them.
fn clone_with_notes(url: &str) -> TempDir {
    let dir = tempfile::tempdir().expect("a clone directory");
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("running git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&["clone", "-q", url, "."]);
    git(&["fetch", "-q", "origin", &format!("{NOTES_REF}:{NOTES_REF}")]);
    dir
}

fn git_in(dir: &TempDir, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir.path())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn notes_over_ssh_show_in_git_log_of_a_fresh_clone() {
    let (repo, bump) = bumped_repo("notes-ssh");
    let (writer, _state) = open_writer(&repo.ssh_url, ssh_auth());
    let (rollback, _) = committed(
        writer
            .commit_rollback(&request(&repo, &bump))
            .expect("rollback"),
    );
    let note = render_note(&CommitOutcome {
        apps: vec![web_outcome(&rollback.to_string()), api_outcome()],
    });
    let bump_oid = Oid::from_str(&bump).expect("a commit id");
    let notes_commit = match writer.add_note(bump_oid, &note).expect("a note") {
        NoteOutcome::Added {
            notes_commit,
            attempts: 1,
        } => notes_commit,
        other => panic!("expected a note added at once, got {other:?}"),
    };
    assert_eq!(
        bare_git(&repo, &["rev-parse", NOTES_REF]).trim(),
        notes_commit.to_string()
    );
    // The same note again: no new notes commit.
    assert_eq!(
        writer.add_note(bump_oid, &note).expect("again"),
        NoteOutcome::Unchanged
    );
    assert_eq!(
        bare_git(&repo, &["rev-parse", NOTES_REF]).trim(),
        notes_commit.to_string()
    );

    let clone = clone_with_notes(&repo.file_url());
    let log = git_in(&clone, &["log", "--notes=bosun", "-1", &bump]);
    eprintln!("--- git log --notes=bosun -1 (the bump) ---\n{log}");
    assert!(log.contains("\nNotes (bosun):\n"), "{log}");
    let indented: String = note.lines().map(|l| format!("    {l}\n")).collect();
    assert!(log.contains(&indented), "the note, indented, in:\n{log}");
    assert!(
        log.contains("    bosun prod/web: 1.4.0 -> 1.5.0, rolled back to 1.4.0\n"),
        "{log}"
    );
    assert!(
        log.contains(&format!("    rollback commit: {rollback}\n")),
        "{log}"
    );
    assert_eq!(
        git_in(&clone, &["notes", "--ref=bosun", "show", &bump]),
        note
    );
}

#[test]
fn a_note_written_meanwhile_by_another_writer_is_kept() {
    let (repo, bump) = bumped_repo("notes-race");
    let bump_oid = Oid::from_str(&bump).expect("a commit id");
    let (other, _other_state) = open_writer(&repo.http_url, token_auth());
    let other = Arc::new(other);
    let hook_other = Arc::clone(&other);
    let state = tempfile::tempdir().expect("a state directory");
    let api_note = render_note(&CommitOutcome {
        apps: vec![api_outcome()],
    });
    let hook_note = api_note.clone();
    let writer = GitWriter::open(writer_spec(&repo.http_url, basic_auth()), state.path())
        .expect("a writer")
        .before_push(move |attempt| {
            if attempt.target == PushTarget::Notes && attempt.attempt == 1 {
                let added = hook_other
                    .add_note(bump_oid, &hook_note)
                    .expect("the other note");
                assert!(
                    matches!(added, NoteOutcome::Added { attempts: 1, .. }),
                    "{added:?}"
                );
            }
        });
    let web_note = render_note(&CommitOutcome {
        apps: vec![web_outcome("0000000000000000000000000000000000000000")],
    });
    let added = writer.add_note(bump_oid, &web_note).expect("a note");
    assert!(
        matches!(added, NoteOutcome::Added { attempts: 2, .. }),
        "{added:?}"
    );
    let shown = bare_git(&repo, &["notes", "--ref=bosun", "show", &bump]);
    assert_eq!(shown, format!("{api_note}\n{web_note}"));
    // Two notes commits, one on top of the other: nothing forced.
    assert_eq!(
        bare_git(&repo, &["rev-list", "--count", NOTES_REF]).trim(),
        "2"
    );
}

#[test]
fn writers_adding_notes_at_the_same_time_all_end_up_in_the_note() {
    let (repo, bump) = bumped_repo("notes-concurrent");
    let bump_oid = Oid::from_str(&bump).expect("a commit id");
    let apps = ["a", "b", "c"];
    std::thread::scope(|scope| {
        for app in apps {
            let url = repo.http_url.clone();
            scope.spawn(move || {
                let (writer, _state) = open_writer(&url, basic_auth());
                let mut outcome = api_outcome();
                outcome.app = app.to_owned();
                let note = render_note(&CommitOutcome {
                    apps: vec![outcome],
                });
                let added = writer.add_note(bump_oid, &note).expect("a note");
                assert!(matches!(added, NoteOutcome::Added { .. }), "{added:?}");
            });
        }
    });
    let shown = bare_git(&repo, &["notes", "--ref=bosun", "show", &bump]);
    for app in apps {
        assert!(
            shown.contains(&format!("bosun prod/{app}: ")),
            "{app} in:\n{shown}"
        );
    }
    assert_eq!(
        bare_git(&repo, &["rev-list", "--count", NOTES_REF]).trim(),
        "3"
    );
}

fn assert_names_no_secret(err: &WriteError, secrets: &[&str]) {
    let shown = format!("{err}\n{err:?}");
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret:?} leaked into: {shown}");
    }
}

#[test]
fn credentials_never_reach_an_error_message() {
    let (repo, bump) = bumped_repo("writeback-credentials");
    let wrong = "not-the-password-0xC0FFEE";
    let (bad, _state) = open_writer(
        &repo.http_url,
        Auth::Basic {
            username: server().http_user.clone(),
            password: Secret::from(wrong),
        },
    );
    let err = bad
        .commit_rollback(&request(&repo, &bump))
        .expect_err("a wrong password");
    assert_eq!(err.reason(), "Authenticate", "{err}");
    assert_eq!(err.kind(), ErrorKind::Stalled);
    assert!(err.to_string().contains(&repo.http_url), "{err}");
    assert_names_no_secret(&err, &[wrong, &server().http_password]);

    let bad_token = "ghp_not-the-token-0xBADBAD";
    let (bad, _state) = open_writer(&repo.http_url, Auth::Token(Secret::from(bad_token)));
    let err = bad
        .add_note(Oid::from_str(&bump).expect("an id"), "bosun prod/web: x\n")
        .expect_err("a wrong token");
    assert_eq!(err.reason(), "Authenticate", "{err}");
    assert_names_no_secret(&err, &[bad_token, &server().http_token]);

    // The real password in the URL, of a repository that does not exist.
    let password = server().http_password.clone();
    let url = format!("{}/no-such-repo.git", server().http_url).replacen(
        "http://",
        &format!("http://{}:{password}@", server().http_user),
        1,
    );
    let (missing, _state) = open_writer(&url, Auth::None);
    let err = missing
        .commit_rollback(&request(&repo, &bump))
        .expect_err("no repository");
    assert_names_no_secret(&err, &[&password]);

    // Read-only access: the fetch works, the push is refused.
    let (read_only, _state) = open_writer(&repo.http_public_url, Auth::None);
    let err = read_only
        .commit_rollback(&request(&repo, &bump))
        .expect_err("read-only");
    assert_eq!(err.reason(), "Authenticate", "{err}");
    assert_eq!(main_tip(&repo), bump);
}

#[test]
fn a_push_the_server_could_not_apply_because_the_ref_was_busy_is_retried() {
    let (repo, bump) = bumped_repo("rollback-ref-locked");
    // A pre-receive hook that holds main's lock during Bosun's first push, as a concurrent push
    // being applied would: receive-pack then reports the ref as not updated.
    let hook = repo.bare.join("hooks/pre-receive");
    std::fs::write(
        &hook,
        "#!/bin/sh\n\
         if [ -e refs/heads/main.lock ]; then rm -f refs/heads/main.lock; exit 0; fi\n\
         if [ ! -e busy-once ]; then touch busy-once refs/heads/main.lock; fi\n\
         exit 0\n",
    )
    .expect("writing the hook");
    let mut perms = std::fs::metadata(&hook).expect("the hook").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&hook, perms).expect("making the hook executable");

    let (writer, _state) = open_writer(&repo.http_url, basic_auth());
    let (commit, attempts) = committed(
        writer
            .commit_rollback(&request(&repo, &bump))
            .expect("rollback"),
    );
    assert_eq!(attempts, 2, "the ref was busy once");
    assert!(repo.bare.join("busy-once").exists(), "the hook ran");
    assert_rollback_on_main(&repo, commit, &bump);
}
