//! A real Gitea for tests: `scripts/forge` (Gitea 1.27 built from its Go module, SQLite, on loopback),
//! started outside the tests — `scripts/test` brings it up and exports `BOSUN_TEST_FORGE_*`; by hand,
//! `scripts/forge up && eval "$(scripts/forge env)"` before `cargo test`. Without that environment
//! every test that uses it fails, telling how to start it.
//!
//! Two accounts: the admin, for the harness (creating repositories, protections, webhooks), and the
//! bot, a plain user standing for Bosun: it is a write collaborator on each test repository and
//! nothing more, so what a protected branch refuses, it refuses to the bot (Gitea lets no one push
//! directly to a protected branch unless the rule allows them — admins included: they may only
//! bypass it when merging a pull request).
//!
//! Each test makes a repository of its own, named after the test ([`Gitea::create_repo`]), owned by
//! the admin, private, its `main` seeded with one commit, and deleted when dropped.
//! [`GiteaRepo::protect_main`] protects `main` so that only the admin may push to it;
//! [`GiteaRepo::add_webhook`] points a webhook at a URL with a secret, and [`HookListener`] receives
//! what Gitea delivers. git runs as the CLI, over HTTP, with the token handed over by a credential
//! helper that reads the token file: no token is ever in a URL, an argument or a log.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::gitserver::{git_cli, run_git};

/// How long one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Who acts on the forge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum As {
    /// The harness: a site administrator, token of scope `all`.
    Admin,
    /// Bosun: a plain user, token of the scopes Bosun needs (write:repository, write:issue,
    /// read:user).
    Bot,
    /// No credentials at all.
    Anonymous,
}

/// The Gitea of `scripts/forge`, as its environment describes it.
pub struct Gitea {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    pub admin: String,
    pub admin_token_file: PathBuf,
    pub bot: String,
    pub bot_token_file: PathBuf,
    /// Gitea's log (its stdout and stderr).
    pub log: PathBuf,
    admin_token: String,
    bot_token: String,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the real Gitea of scripts/forge. Run `scripts/test`, \
             or `scripts/forge up && eval \"$(scripts/forge env)\"` before `cargo test`."
        )
    })
}

fn read_token(path: &Path) -> String {
    let token = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading the token file {}: {e}", path.display()));
    let token = token.trim().to_owned();
    assert!(
        !token.is_empty(),
        "the token file {} is empty",
        path.display()
    );
    token
}

/// The forge of this test process, from `BOSUN_TEST_FORGE_*`.
pub fn gitea() -> &'static Gitea {
    static GITEA: OnceLock<Gitea> = OnceLock::new();
    GITEA.get_or_init(|| {
        let admin_token_file = PathBuf::from(var("BOSUN_TEST_FORGE_TOKEN_FILE"));
        let bot_token_file = PathBuf::from(var("BOSUN_TEST_FORGE_BOT_TOKEN_FILE"));
        Gitea {
            url: var("BOSUN_TEST_FORGE_URL").trim_end_matches('/').to_owned(),
            admin: var("BOSUN_TEST_FORGE_ADMIN"),
            bot: var("BOSUN_TEST_FORGE_BOT"),
            log: PathBuf::from(var("BOSUN_TEST_FORGE_LOG")),
            admin_token: read_token(&admin_token_file),
            bot_token: read_token(&bot_token_file),
            admin_token_file,
            bot_token_file,
        }
    })
}

/// An answer of the API: the status code and the body (JSON, or `Value::Null` when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub text: String,
}

impl Gitea {
    /// The user name of `who` (empty for [`As::Anonymous`]).
    pub fn user(&self, who: As) -> &str {
        match who {
            As::Admin => &self.admin,
            As::Bot => &self.bot,
            As::Anonymous => "",
        }
    }

    /// The token file of `who`.
    pub fn token_file(&self, who: As) -> &Path {
        match who {
            As::Admin => &self.admin_token_file,
            As::Bot => &self.bot_token_file,
            As::Anonymous => panic!("the anonymous user has no token"),
        }
    }

    /// The token of `who`; never put it in a message, a URL or an argument.
    pub fn token(&self, who: As) -> Option<&str> {
        match who {
            As::Admin => Some(&self.admin_token),
            As::Bot => Some(&self.bot_token),
            As::Anonymous => None,
        }
    }

    /// Sends `method` `/api/v1{path}` as `who`, with `body` as JSON.
    pub async fn api(&self, who: As, method: &str, path: &str, body: Option<&Value>) -> Answer {
        let uri = format!("{}/api/v1{path}", self.url);
        let authority = self
            .url
            .strip_prefix("http://")
            .unwrap_or_else(|| {
                panic!(
                    "BOSUN_TEST_FORGE_URL must be http://HOST:PORT, not {}",
                    self.url
                )
            })
            .to_owned();
        let mut request = http::Request::builder()
            .method(method)
            .uri(&uri)
            .header(http::header::HOST, &authority)
            .header(http::header::ACCEPT, "application/json")
            .header(http::header::CONNECTION, "close");
        if let Some(token) = self.token(who) {
            request = request.header(http::header::AUTHORIZATION, format!("token {token}"));
        }
        let payload = match body {
            Some(b) => {
                request = request.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(b).expect("a JSON body"))
            }
            None => Bytes::new(),
        };
        let request = request.body(Full::new(payload)).expect("a request");
        let exchange = async {
            let stream = tokio::net::TcpStream::connect(&authority)
                .await
                .map_err(|e| format!("connecting to {authority}: {e}"))?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| format!("HTTP handshake: {e}"))?;
            let driver = tokio::spawn(connection);
            let answer = sender
                .send_request(request)
                .await
                .map_err(|e| format!("sending: {e}"))?;
            let status = answer.status().as_u16();
            let bytes = answer
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            driver.abort();
            Ok::<_, String>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| panic!("{method} {uri}: no answer within {REQUEST_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("{method} {uri}: {e}"));
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer { status, body, text }
    }

    /// [`Gitea::api`], failing the test unless the answer is 2xx; the body.
    pub async fn api_ok(&self, who: As, method: &str, path: &str, body: Option<&Value>) -> Value {
        let answer = self.api(who, method, path, body).await;
        assert!(
            (200..300).contains(&answer.status),
            "{method} {path} as {who:?}: HTTP {}: {}",
            answer.status,
            answer.text
        );
        answer.body
    }

    /// A private repository of the admin's named `<test>-<random>` (so reruns on one forge never
    /// collide), the bot a write collaborator, `main` seeded with one commit of `files` pushed by
    /// the admin. Deleted when dropped.
    pub async fn create_repo(&'static self, test: &str, files: &[(&str, &str)]) -> GiteaRepo {
        let name = repo_name(test);
        self.api_ok(
            As::Admin,
            "POST",
            "/user/repos",
            Some(&json!({
                "name": name,
                "private": true,
                "auto_init": false,
                "default_branch": "main",
                "description": format!("bosun test {test}"),
            })),
        )
        .await;
        self.api_ok(
            As::Admin,
            "PUT",
            &format!("/repos/{}/{name}/collaborators/{}", self.admin, self.bot),
            Some(&json!({"permission": "write"})),
        )
        .await;
        let work = tempfile::Builder::new()
            .prefix(&format!("bosun-gitea-{name}-"))
            .tempdir()
            .expect("a temp dir for the working copy");
        let repo = GiteaRepo {
            owner: self.admin.clone(),
            clone_url: format!("{}/{}/{name}.git", self.url, self.admin),
            name,
            work,
            gitea: self,
        };
        repo.git(&["init", "-q", "--initial-branch=main"]);
        repo.commit("initial content", files).await;
        repo
    }

    /// The last lines of Gitea's log, for a failure's message.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

/// `<test>-<8 hex digits>`, of the characters Gitea allows in a repository name.
fn repo_name(test: &str) -> String {
    let base: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(80)
        .collect();
    format!("{base}-{:08x}", super::unique_suffix())
}

/// A pull request merged by [`GiteaRepo::merge_change`].
#[derive(Clone, Debug)]
pub struct Merged {
    pub number: u64,
    /// The commit of its branch, as pushed.
    pub head: String,
    /// What the merge made on `main`: the merge commit, or the squashed commit.
    pub commit: String,
}

/// A repository on the forge and a working copy that pushes to it.
pub struct GiteaRepo {
    pub owner: String,
    pub name: String,
    /// `http://127.0.0.1:PORT/OWNER/NAME.git`, without credentials.
    pub clone_url: String,
    work: tempfile::TempDir,
    gitea: &'static Gitea,
}

impl GiteaRepo {
    /// `OWNER/NAME`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }

    pub fn work_dir(&self) -> &Path {
        self.work.path()
    }

    /// Writes `files`, commits everything and pushes `main` as the admin; returns the commit id once
    /// Gitea has recorded the push ([`GiteaRepo::wait_branch`]).
    pub async fn commit(&self, message: &str, files: &[(&str, &str)]) -> String {
        let id = self.commit_unpushed(message, files);
        if let Err(stderr) = self.push(As::Admin, "HEAD:refs/heads/main") {
            panic!(
                "the admin's push to main of {} failed:\n{stderr}",
                self.full_name()
            );
        }
        self.wait_branch("main", &id).await;
        id
    }

    /// Writes `files` and commits them in the working copy, without pushing; the commit id.
    pub fn commit_unpushed(&self, message: &str, files: &[(&str, &str)]) -> String {
        for (path, content) in files {
            let path = self.work.path().join(path);
            std::fs::create_dir_all(path.parent().expect("a file inside the work tree"))
                .expect("creating the file's directory");
            std::fs::write(&path, content)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// `git push` of `refspec` to the forge as `who`: `Ok` with git's stderr when the push went
    /// through, `Err` with it when git failed.
    pub fn push(&self, who: As, refspec: &str) -> Result<String, String> {
        let out = self.git_as(who, &["push", "--porcelain", &self.clone_url, refspec]);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            Ok(stderr)
        } else {
            Err(format!("{stderr}{stdout}"))
        }
    }

    /// Protects `main`: pushes only by the admin (the bot, a write collaborator, is refused), no
    /// force push, no deletion. The rule as Gitea answers it.
    pub async fn protect_main(&self) -> Value {
        self.gitea
            .api_ok(
                As::Admin,
                "POST",
                &format!("/repos/{}/branch_protections", self.full_name()),
                Some(&json!({
                    "rule_name": "main",
                    "enable_push": true,
                    "enable_push_whitelist": true,
                    "push_whitelist_usernames": [self.gitea.admin],
                    "enable_force_push": false,
                })),
            )
            .await
    }

    /// A Gitea webhook (JSON) posting `events` to `url`, signed with `secret`; its id.
    pub async fn add_webhook(&self, url: &str, secret: &str, events: &[&str]) -> i64 {
        let hook = self
            .gitea
            .api_ok(
                As::Admin,
                "POST",
                &format!("/repos/{}/hooks", self.full_name()),
                Some(&json!({
                    "type": "gitea",
                    "active": true,
                    "events": events,
                    "config": {"url": url, "content_type": "json", "secret": secret},
                })),
            )
            .await;
        hook["id"].as_i64().expect("the webhook has an id")
    }

    /// Deletes webhook `id`.
    pub async fn delete_webhook(&self, id: i64) {
        let path = self.api_path(&format!("/hooks/{id}"));
        self.gitea.api_ok(As::Admin, "DELETE", &path, None).await;
    }

    /// Has Gitea deliver a test push of `main`'s head to webhook `id`, signed like any other
    /// (`POST /repos/{o}/{r}/hooks/{id}/tests`).
    pub async fn test_webhook(&self, id: i64) {
        let path = self.api_path(&format!("/hooks/{id}/tests"));
        self.gitea.api_ok(As::Admin, "POST", &path, None).await;
    }

    /// The commit id of `branch` on the forge, as its API says.
    pub async fn branch_head(&self, branch: &str) -> String {
        let b = self
            .gitea
            .api_ok(
                As::Admin,
                "GET",
                &format!("/repos/{}/branches/{branch}", self.full_name()),
                None,
            )
            .await;
        b["commit"]["id"]
            .as_str()
            .expect("the branch names its commit")
            .to_owned()
    }

    /// Waits until Gitea has recorded that `branch` is at `commit`. `git push` returns when the refs
    /// are written, but Gitea records a push later, from a queue: until then the repository may
    /// still count as empty (Gitea 1.27.3 even answers 500 for a branch of it). The same queue
    /// prepares the push's webhooks a moment after the repository stops counting as empty: a hook
    /// added right after this may still get that push.
    pub async fn wait_branch(&self, branch: &str, commit: &str) {
        let repo_path = format!("/repos/{}", self.full_name());
        let branch_path = format!("{repo_path}/branches/{branch}");
        let deadline = std::time::Instant::now() + super::WAIT;
        loop {
            let repo = self.gitea.api(As::Admin, "GET", &repo_path, None).await;
            let last = if repo.status != 200 || repo.body["empty"] != false {
                format!("GET {repo_path}: HTTP {}: {}", repo.status, repo.text)
            } else {
                let b = self.gitea.api(As::Admin, "GET", &branch_path, None).await;
                if b.status == 200 && b.body["commit"]["id"] == commit {
                    return;
                }
                format!("GET {branch_path}: HTTP {}: {}", b.status, b.text)
            };
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {:?} waiting for Gitea to record {branch} of {} at {commit}; \
                 last answer: {last}\nGitea's log:\n{}",
                super::WAIT,
                self.full_name(),
                self.gitea.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `/repos/OWNER/NAME{rest}`, for [`Gitea::api`].
    pub fn api_path(&self, rest: &str) -> String {
        format!("/repos/{}{rest}", self.full_name())
    }

    /// A change merged the way a person merges it: `files` committed on a new branch `branch`, a pull
    /// request from it into `main` ([`GiteaRepo::open_pull_request`]) merged in `style`
    /// ([`GiteaRepo::merge_pull_request`]). The working copy is then at the new `main`.
    pub async fn merge_change(
        &self,
        branch: &str,
        title: &str,
        files: &[(&str, &str)],
        style: &str,
    ) -> Merged {
        let head = self.commit_unpushed(title, files);
        let number = self.open_pull_request(branch, title).await;
        let commit = self.merge_pull_request(number, style).await;
        Merged {
            number,
            head,
            commit,
        }
    }

    /// Pushes the working copy's `HEAD` to a new branch `branch` as the admin and opens a pull
    /// request from it into `main` through the API; its number.
    pub async fn open_pull_request(&self, branch: &str, title: &str) -> u64 {
        let head = self.git(&["rev-parse", "HEAD"]);
        if let Err(stderr) = self.push(As::Admin, &format!("HEAD:refs/heads/{branch}")) {
            panic!("the admin's push of {branch} failed:\n{stderr}");
        }
        self.wait_branch(branch, &head).await;
        let pr = self
            .gitea
            .api_ok(
                As::Admin,
                "POST",
                &self.api_path("/pulls"),
                Some(&json!({"head": branch, "base": "main", "title": title})),
            )
            .await;
        pr["number"]
            .as_u64()
            .expect("the pull request has a number")
    }

    /// Merges pull request `number` as the admin in `style`, retrying while Gitea still checks
    /// whether it can be merged (HTTP 405 "Please try again later"); the commit it made on `main`
    /// (`merge_commit_sha`), once Gitea shows `main` at it. The working copy's `main` is then reset to
    /// it.
    pub async fn merge_pull_request(&self, number: u64, style: &str) -> String {
        let merge = self.api_path(&format!("/pulls/{number}/merge"));
        let deadline = std::time::Instant::now() + super::WAIT;
        loop {
            let answer = self
                .gitea
                .api(As::Admin, "POST", &merge, Some(&json!({"do": style})))
                .await;
            if answer.status == 200 {
                break;
            }
            assert!(
                answer.status == 405
                    && answer.text.contains("try again later")
                    && std::time::Instant::now() < deadline,
                "POST {merge}: HTTP {}: {}\nGitea's log:\n{}",
                answer.status,
                answer.text,
                self.gitea.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let pr = self
            .gitea
            .api_ok(
                As::Admin,
                "GET",
                &self.api_path(&format!("/pulls/{number}")),
                None,
            )
            .await;
        assert_eq!(pr["merged"], true, "{pr}");
        let sha = pr["merge_commit_sha"]
            .as_str()
            .unwrap_or_else(|| panic!("a merged pull request names its merge commit: {pr}"))
            .to_owned();
        self.wait_branch("main", &sha).await;
        self.reset_to_forge_main();
        sha
    }

    /// Fetches `main` from the forge as the admin and resets the working copy to it.
    pub fn reset_to_forge_main(&self) {
        let out = self.git_as(
            As::Admin,
            &[
                "fetch",
                "-q",
                &self.clone_url,
                "+refs/heads/main:refs/remotes/forge/main",
            ],
        );
        assert!(
            out.status.success(),
            "git fetch of main: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.git(&["reset", "-q", "--hard", "refs/remotes/forge/main"]);
    }

    /// The file `path` at `reference` (a branch or a commit) on the forge, as its API serves it raw.
    pub async fn file(&self, reference: &str, path: &str) -> String {
        let raw = self.api_path(&format!("/raw/{path}?ref={reference}"));
        let answer = self.gitea.api(As::Admin, "GET", &raw, None).await;
        assert_eq!(answer.status, 200, "GET {raw}: {}", answer.text);
        answer.text
    }

    /// The comments on issue or pull request `number`, oldest first.
    pub async fn comments(&self, number: u64) -> Vec<Value> {
        let path = self.api_path(&format!("/issues/{number}/comments"));
        list(self.gitea.api_ok(As::Admin, "GET", &path, None).await)
    }

    /// Every commit status set on `sha`, each as Gitea keeps it (`status`, `context`, `creator`...),
    /// newest first: by the commit's status index (`sort=leastindex` is `index DESC` in Gitea
    /// 1.27); Gitea's default order is by the second of creation, which ties within a second.
    pub async fn statuses(&self, sha: &str) -> Vec<Value> {
        let path = self.api_path(&format!("/commits/{sha}/statuses?sort=leastindex&limit=50"));
        list(self.gitea.api_ok(As::Admin, "GET", &path, None).await)
    }

    /// The pull requests of the repository, open and closed.
    pub async fn pull_requests(&self) -> Vec<Value> {
        let path = self.api_path("/pulls?state=all&limit=50");
        list(self.gitea.api_ok(As::Admin, "GET", &path, None).await)
    }

    /// Runs the git CLI in the working copy, isolated from the user's and system's config; fails the
    /// test when git does. Its stdout, trimmed.
    pub fn git(&self, args: &[&str]) -> String {
        run_git(git_command(self.work.path(), None), args)
    }

    /// Runs the git CLI in the working copy with the credentials of `who`; its output, whatever it is.
    pub fn git_as(&self, who: As, args: &[&str]) -> Output {
        git_command(self.work.path(), Some((self.gitea, who)))
            .args(args)
            .output()
            .expect("running git")
    }
}

/// `git` in `dir`, isolated from the user's and system's config, with the credentials of `who` (if
/// any) handed over by a credential helper that reads the token file (the path has no spaces: the
/// state directory of scripts/forge is checked for that).
pub fn git_command(dir: &Path, who: Option<(&Gitea, As)>) -> Command {
    let mut cmd = git_cli(dir);
    cmd.args(["-c", "credential.helper="]);
    if let Some((gitea, who)) = who
        && who != As::Anonymous
    {
        let helper = format!(
            "!f() {{ test \"$1\" = get || exit 0; echo username={}; printf 'password=%s\\n' \"$(cat {})\"; }}; f",
            gitea.user(who),
            gitea.token_file(who).display()
        );
        cmd.args(["-c", &format!("credential.helper={helper}")]);
    }
    cmd
}

impl Drop for GiteaRepo {
    fn drop(&mut self) {
        let (gitea, path) = (self.gitea, format!("/repos/{}", self.full_name()));
        // A Drop cannot await: a thread and runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup");
            rt.block_on(async { gitea.api(As::Admin, "DELETE", &path, None).await });
        })
        .join();
    }
}

/// One webhook request as received.
#[derive(Debug)]
pub struct Delivery {
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Delivery {
    /// The header `name` as text (empty when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON webhook body")
    }
}

/// A loopback HTTP server that answers every request 200 and keeps it, for webhooks.
pub struct HookListener {
    /// `http://127.0.0.1:PORT/hook`.
    pub url: String,
    received: tokio::sync::mpsc::UnboundedReceiver<Delivery>,
    task: tokio::task::JoinHandle<()>,
}

impl HookListener {
    pub async fn start() -> HookListener {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a port on 127.0.0.1");
        let addr = listener.local_addr().expect("the listener's address");
        let (tx, received) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: http::Request<_>| {
                        let tx = tx.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body: hyper::body::Incoming = body;
                            let bytes = body.collect().await?.to_bytes();
                            let _ = tx.send(Delivery {
                                headers: parts.headers,
                                body: bytes,
                            });
                            Ok::<_, hyper::Error>(http::Response::new(Full::new(Bytes::from(
                                "ok\n",
                            ))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        HookListener {
            url: format!("http://{addr}/hook"),
            received,
            task,
        }
    }

    /// The next request, failing the test with Gitea's log after `limit`.
    pub async fn next(&mut self, limit: Duration) -> Delivery {
        match tokio::time::timeout(limit, self.received.recv()).await {
            Ok(Some(d)) => d,
            _ => panic!(
                "no webhook delivery reached {} within {limit:?}; Gitea's log:\n{}",
                self.url,
                gitea().log_tail()
            ),
        }
    }
}

impl Drop for HookListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Lowercase hex HMAC-SHA256 of `body` with `secret`: Gitea's `X-Gitea-Signature`.
pub fn hmac_sha256_hex(secret: &[u8], body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("an HMAC key");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// An answer that must be a JSON list: its items.
fn list(answer: Value) -> Vec<Value> {
    match answer {
        Value::Array(items) => items,
        other => panic!("expected a list, Gitea answered {other}"),
    }
}
