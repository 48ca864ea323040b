//! A real git server for tests: `scripts/gitserver` (smart HTTP(S) with basic auth, SSH with a test
//! key and known_hosts, git://) on loopback, one per test binary, in a fresh state directory, and
//! test repositories built with the real git CLI.
//!
//! [`shared`] starts the server on first use; a small watcher process stops it (`gitserver down`)
//! once the test binary has exited, however it exits. [`GitServer::start`] gives a server of one's
//! own that stops when dropped (the benchmark uses it).
//!
//! Repositories: [`GitServer::create_repo`] makes a bare repository on the server and a working
//! clone next to it; [`TestRepo::commit`] writes files, commits and pushes to `main` with the git
//! CLI (through the bare repository's path, so building a scenario never touches the servers or
//! their request log); [`TestRepo::commit_unpushed`] and [`TestRepo::push_commits`] push several
//! commits at once.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The repository's root, where `scripts/gitserver` lives.
fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn script() -> PathBuf {
    workspace().join("scripts/gitserver")
}

/// The servers of one state directory and what `gitserver up` printed about them.
pub struct GitServer {
    pub dir: PathBuf,
    pub repos: PathBuf,
    pub http_url: String,
    pub https_url: String,
    pub http_public_url: String,
    pub http_user: String,
    pub http_password: String,
    pub http_token: String,
    pub request_log: PathBuf,
    pub tls_ca: PathBuf,
    pub ssh_url: String,
    pub ssh_user: String,
    pub ssh_port: u16,
    pub ssh_key: PathBuf,
    pub ssh_known_hosts: PathBuf,
    pub ssh_host_key_sha256: String,
    pub git_url: String,
    /// Every `KEY=VALUE` of `DIR/env`.
    pub env: HashMap<String, String>,
    stop_on_drop: bool,
}

/// The test binary's server, started on first use and stopped after the process exits.
pub fn shared() -> &'static GitServer {
    static SERVER: OnceLock<GitServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = GitServer::up();
        server.stop_after_exit();
        server
    })
}

impl GitServer {
    /// A server of the caller's own, stopped when the value is dropped.
    pub fn start() -> GitServer {
        let mut server = GitServer::up();
        server.stop_on_drop = true;
        // Should the process die before the drop, the watcher cleans up all the same.
        server.stop_after_exit();
        server
    }

    fn up() -> GitServer {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time after 1970")
            .subsec_nanos();
        // The state directory must match [A-Za-z0-9._/+-]+ (it goes unquoted into configs).
        let dir = std::env::temp_dir().join(format!(
            "bosun-gitserver-test.{}.{nanos:08x}",
            std::process::id()
        ));
        let out = Command::new(script())
            .args(["up", "--dir"])
            .arg(&dir)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", script().display()));
        assert!(
            out.status.success(),
            "`scripts/gitserver up --dir {}` failed ({}):\n{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let env: HashMap<String, String> = String::from_utf8(out.stdout)
            .expect("gitserver prints UTF-8")
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let var = |key: &str| -> String {
            env.get(key)
                .unwrap_or_else(|| panic!("gitserver's env has no {key}"))
                .clone()
        };
        GitServer {
            dir: PathBuf::from(var("GITSERVER_DIR")),
            repos: PathBuf::from(var("GITSERVER_REPOS")),
            http_url: var("GITSERVER_HTTP_URL"),
            https_url: var("GITSERVER_HTTPS_URL"),
            http_public_url: var("GITSERVER_HTTP_PUBLIC_URL"),
            http_user: var("GITSERVER_HTTP_USER"),
            http_password: var("GITSERVER_HTTP_PASSWORD"),
            http_token: var("GITSERVER_HTTP_TOKEN"),
            request_log: PathBuf::from(var("GITSERVER_HTTP_REQUEST_LOG")),
            tls_ca: PathBuf::from(var("GITSERVER_TLS_CA")),
            ssh_url: var("GITSERVER_SSH_URL"),
            ssh_user: var("GITSERVER_SSH_USER"),
            ssh_port: var("GITSERVER_SSH_PORT")
                .parse()
                .expect("GITSERVER_SSH_PORT is a port number"),
            ssh_key: PathBuf::from(var("GITSERVER_SSH_KEY")),
            ssh_known_hosts: PathBuf::from(var("GITSERVER_SSH_KNOWN_HOSTS")),
            ssh_host_key_sha256: var("GITSERVER_SSH_HOST_KEY_SHA256"),
            git_url: var("GITSERVER_GIT_URL"),
            env,
            stop_on_drop: false,
        }
    }

    /// Runs `gitserver down` once this test process is gone.
    fn stop_after_exit(&self) {
        run_after_exit(&[
            script().as_os_str(),
            "down".as_ref(),
            "--dir".as_ref(),
            self.dir.as_os_str(),
        ]);
    }

    /// A real outage: the server processes stopped, the repositories, ports and keys kept.
    pub fn stop_servers(&self) {
        self.run(&["stop"]);
    }

    /// The servers of [`GitServer::stop_servers`] started again, on the same ports; returns once
    /// each answers `git ls-remote`.
    pub fn start_servers(&self) {
        self.run(&["start"]);
    }

    /// Stops the servers and removes the state directory.
    pub fn stop(&self) {
        let _ = Command::new(script())
            .args(["down", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
    }

    /// A bare repository `NAME.git` on the server, its `main` seeded with one commit of `files`.
    pub fn create_repo(&self, name: &str, files: &[(&str, &str)]) -> TestRepo {
        let out = Command::new(script())
            .args(["create-repo", name, "--dir"])
            .arg(&self.dir)
            .output()
            .expect("running gitserver create-repo");
        assert!(
            out.status.success(),
            "gitserver create-repo {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let bare = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let work = tempfile::Builder::new()
            .prefix(&format!("bosun-work-{name}-"))
            .tempdir()
            .expect("a temp dir for the working copy");
        let repo = TestRepo {
            name: name.to_owned(),
            bare,
            work,
            http_url: format!("{}/{name}.git", self.http_url),
            https_url: format!("{}/{name}.git", self.https_url),
            http_public_url: format!("{}/{name}.git", self.http_public_url),
            ssh_url: format!("{}/{name}.git", self.ssh_url),
            git_url: format!("{}/{name}.git", self.git_url),
        };
        repo.git(&["init", "-q", "--initial-branch=main"]);
        repo.commit("initial content", files);
        repo
    }

    /// Rejects pushes to `refs` (a branch, `refs/...` or a glob) of repository `name` until
    /// [`GitServer::unprotect`], as a protected branch or a failing server would.
    pub fn protect(&self, name: &str, refs: &str) {
        self.run(&["protect", name, refs]);
    }

    /// Lifts every protection of repository `name`.
    pub fn unprotect(&self, name: &str) {
        self.run(&["unprotect", name]);
    }

    fn run(&self, args: &[&str]) {
        let out = Command::new(script())
            .args(args)
            .arg("--dir")
            .arg(&self.dir)
            .output()
            .expect("running scripts/gitserver");
        assert!(
            out.status.success(),
            "gitserver {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The request log's lines (`METHOD URI USER`) for repository `name`, in order.
    pub fn requests(&self, name: &str) -> Vec<String> {
        let needle = format!("/{name}.git/");
        std::fs::read_to_string(&self.request_log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_owned)
            .collect()
    }
}

/// Runs `command` once this test process has exited, however it exits (a panic, a kill, the end):
/// from a watcher in a session of its own (a Ctrl-C of the tests does not reach it), whose output
/// goes nowhere, so that it never keeps the pipes of `cargo test` open. For servers a test starts
/// outside itself, which must not outlive it (here rather than in `process`: benches include this
/// file alone).
pub fn run_after_exit<S: AsRef<std::ffi::OsStr>>(command: &[S]) {
    let watcher = r#"while kill -0 "$0" 2>/dev/null; do sleep 0.2; done; exec "$@""#;
    // `setsid --fork` returns at once, leaving the watcher running in its own session.
    let status = Command::new("setsid")
        .args([
            "--fork",
            "sh",
            "-c",
            watcher,
            &std::process::id().to_string(),
        ])
        .args(command)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("starting a watcher (setsid sh)");
    assert!(status.success(), "setsid --fork sh: {status}");
}

impl Drop for GitServer {
    fn drop(&mut self) {
        if self.stop_on_drop {
            self.stop();
        }
    }
}

/// A repository on the server and a working copy that pushes to it.
pub struct TestRepo {
    pub name: String,
    /// The bare repository the servers serve.
    pub bare: PathBuf,
    work: tempfile::TempDir,
    pub http_url: String,
    pub https_url: String,
    pub http_public_url: String,
    pub ssh_url: String,
    pub git_url: String,
}

impl TestRepo {
    /// `file://` URL of the bare repository.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// Writes `files` (text or bytes), commits everything and pushes `main`; returns the commit id.
    pub fn commit<C: AsRef<[u8]>>(&self, message: &str, files: &[(&str, C)]) -> String {
        self.write(files);
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.push(false)
    }

    /// Writes `files` and commits without pushing: several commits then reach the server in one
    /// [`TestRepo::push_commits`], as they reach a busy repository between two polls.
    pub fn commit_unpushed<C: AsRef<[u8]>>(&self, message: &str, files: &[(&str, C)]) -> String {
        self.write(files);
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.head()
    }

    /// Pushes `main` with every commit made since the last push; returns the new tip.
    pub fn push_commits(&self) -> String {
        self.push(false)
    }

    /// Commits a symbolic link `link` pointing at `target` (which need not exist) and pushes.
    pub fn commit_symlink(&self, message: &str, link: &str, target: &str) -> String {
        let path = self.work.path().join(link);
        std::fs::create_dir_all(path.parent().expect("a link inside the work tree"))
            .expect("creating the link's directory");
        std::os::unix::fs::symlink(target, &path).expect("creating the symbolic link");
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.push(false)
    }

    /// Removes `paths`, commits and pushes.
    pub fn remove(&self, message: &str, paths: &[&str]) -> String {
        let mut args = vec!["rm", "-q", "-r", "--"];
        args.extend_from_slice(paths);
        self.git(&args);
        self.git(&["commit", "-q", "-m", message]);
        self.push(false)
    }

    /// Rewrites the last commit with `files` changed and force-pushes it: the new tip does not
    /// descend from the old one.
    pub fn force_push<C: AsRef<[u8]>>(&self, message: &str, files: &[(&str, C)]) -> String {
        self.write(files);
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--amend", "-m", message]);
        self.push(true)
    }

    /// Takes what others pushed to `main` (Bosun's rollback commits) into the working copy.
    pub fn pull(&self) {
        let bare = self.bare.display().to_string();
        self.git(&["fetch", "-q", &bare, "main"]);
        self.git(&["reset", "-q", "--hard", "FETCH_HEAD"]);
    }

    /// The server's `main`, as a fresh fetch into the working copy sees it.
    pub fn server_main(&self) -> String {
        let bare = self.bare.display().to_string();
        self.git(&["fetch", "-q", &bare, "+main:refs/remotes/server/main"]);
        self.git(&["rev-parse", "refs/remotes/server/main"])
    }

    /// How many of the commits on the server's `main` are Bosun's rollback commits.
    pub fn rollback_commits(&self) -> usize {
        let tip = self.server_main();
        self.git(&["log", "--format=%s", &tip])
            .lines()
            .filter(|l| l.starts_with("Roll back "))
            .count()
    }

    /// Bosun's note on `commit` (`refs/notes/bosun` on the server), if there is one.
    pub fn note_of(&self, commit: &str) -> Option<String> {
        let bare = self.bare.display().to_string();
        self.git(&[
            "fetch",
            "-q",
            "--force",
            &bare,
            "+refs/notes/*:refs/notes/*",
        ]);
        let notes = self.git(&["notes", "--ref=bosun", "list"]);
        notes
            .lines()
            .any(|l| l.ends_with(commit))
            .then(|| self.git(&["notes", "--ref=bosun", "show", commit]))
    }

    /// The working copy's `HEAD` commit.
    pub fn head(&self) -> String {
        self.git(&["rev-parse", "HEAD"])
    }

    fn write<C: AsRef<[u8]>>(&self, files: &[(&str, C)]) {
        for (path, content) in files {
            let path = self.work.path().join(path);
            std::fs::create_dir_all(path.parent().expect("a file inside the work tree"))
                .expect("creating the file's directory");
            std::fs::write(&path, content.as_ref())
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
    }

    fn push(&self, force: bool) -> String {
        let bare = self.bare.display().to_string();
        let mut args = vec!["push", "-q"];
        if force {
            args.push("--force");
        }
        args.extend([bare.as_str(), "HEAD:refs/heads/main"]);
        self.git(&args);
        self.head()
    }

    /// Runs the git CLI in the working copy, isolated from the user's and system's config.
    pub fn git(&self, args: &[&str]) -> String {
        run_git(git_cli(self.work.path()), args)
    }
}

/// `git` in `dir`, isolated from the user's and system's config, never prompting, committing as
/// "Bosun Test".
pub fn git_cli(dir: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Bosun Test")
        .env("GIT_AUTHOR_EMAIL", "test@bosun.invalid")
        .env("GIT_COMMITTER_NAME", "Bosun Test")
        .env("GIT_COMMITTER_EMAIL", "test@bosun.invalid");
    cmd
}

/// Runs `git` (from [`git_cli`]) with `args`, failing the test when git fails; its stdout, trimmed.
pub fn run_git(mut git: Command, args: &[&str]) -> String {
    let out = git.args(args).output().expect("running git");
    assert!(
        out.status.success(),
        "git {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
