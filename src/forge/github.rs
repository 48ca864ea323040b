//! The GitHub REST API, as the report stage uses it: commit statuses, the pull requests of a commit,
//! Bosun's one comment on a pull request, and a pull request for a rollback the branch would not take.
//!
//! Built on octocrab's raw `_get`/`_post`/`_patch` so that every response's status and headers are
//! seen here: rate limits (`Retry-After`, `x-ratelimit-remaining`/`x-ratelimit-reset`) become
//! [`GitHubError::RateLimited`] with the wait GitHub asked for, which the [`Reporter`](super::Reporter)
//! honours. Paths are sent relative, so octocrab adds the token only for the configured API host
//! (a GitHub Enterprise `…/api/v3` base keeps its path). The token never appears in an error.

use secrecy::ExposeSecret;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bosun_core::report::{COMMENT_MARKER, DESCRIPTION_LIMIT, StatusState, truncate};
use http::{HeaderMap, StatusCode};
use octocrab::Octocrab;
use serde::{Deserialize, Serialize};

/// `https://api.github.com`: where the API is unless configured otherwise.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// At most this many pages of 100 comments are read looking for Bosun's comment.
const MAX_COMMENT_PAGES: u32 = 50;

/// A secondary rate limit without `Retry-After` or a reset: GitHub asks to wait at least a minute.
const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// The longest wait a rate limit may impose (the primary window is an hour).
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);

/// A GitHub token (secrecy's: never printed, zeroed when dropped). Read only where it is sent.
pub type GitHubToken = secrecy::SecretString;

/// Reads a token from a file (a mounted Secret), trimming surrounding whitespace.
///
/// # Errors
/// [`GitHubError::TokenFile`] when the file cannot be read or holds no token.
pub fn token_from_file(path: &Path) -> Result<GitHubToken, GitHubError> {
    let raw = std::fs::read_to_string(path).map_err(|e| GitHubError::TokenFile {
        path: path.to_path_buf(),
        reason: e.kind().to_string(),
    })?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(GitHubError::TokenFile {
            path: path.to_path_buf(),
            reason: "the file is empty".into(),
        });
    }
    Ok(GitHubToken::from(token))
}

/// A repository on GitHub: `owner/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoRef {
    pub owner: String,
    pub name: String,
}

impl RepoRef {
    /// Reads `owner/name`, or derives it from a source URL: `https://github.com/o/r(.git)`,
    /// `git@github.com:o/r.git`, `ssh://git@github.com/o/r.git` (any host: GitHub Enterprise too).
    ///
    /// # Errors
    /// [`GitHubError::Repo`] when no owner and name can be read.
    pub fn parse(input: &str) -> Result<RepoRef, GitHubError> {
        let bad = |reason: &str| GitHubError::Repo {
            input: strip_userinfo(input),
            reason: reason.into(),
        };
        let s = input.trim();
        // A URL (any host: GitHub Enterprise too) is read by the sources' own parser; else `owner/name`.
        let looks_like_url =
            s.contains("://") || s.split_once(':').is_some_and(|(h, _)| !h.contains('/'));
        let path = if looks_like_url {
            crate::git::path_of(s).ok_or_else(|| bad("the URL does not parse"))?
        } else {
            s.to_owned()
        };
        if looks_like_url && path.trim_matches('/').is_empty() {
            return Err(bad("the URL has no path"));
        }
        let path = path.trim_matches('/');
        let path = path.strip_suffix(".git").unwrap_or(path);
        let mut parts = path.split('/');
        let (Some(owner), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected owner/name"));
        };
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !valid(owner) || !valid(name) {
            return Err(bad(
                "owner and name may hold only letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(RepoRef {
            owner: owner.into(),
            name: name.into(),
        })
    }
}

impl fmt::Display for RepoRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

fn strip_userinfo(input: &str) -> String {
    match input.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((_, host)) if !rest[..rest.find('/').unwrap_or(rest.len())].is_empty() => {
                format!("{scheme}://{host}")
            }
            _ => input.to_string(),
        },
        None => input.to_string(),
    }
}

/// Which GitHub call failed: the first words of every error, and the metric label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Call {
    SetCommitStatus,
    ReadCommitStatuses,
    ListPullRequestsOfCommit,
    ListComments,
    CreateComment,
    UpdateComment,
    OpenPullRequest,
    FindPullRequest,
}

impl Call {
    pub fn as_str(self) -> &'static str {
        match self {
            Call::SetCommitStatus => "set commit status",
            Call::ReadCommitStatuses => "read commit statuses",
            Call::ListPullRequestsOfCommit => "list pull requests of a commit",
            Call::ListComments => "list pull request comments",
            Call::CreateComment => "create pull request comment",
            Call::UpdateComment => "update pull request comment",
            Call::OpenPullRequest => "open pull request",
            Call::FindPullRequest => "find pull request",
        }
    }

    /// Whether GitHub counts it against the ~80 content-creating requests a minute.
    pub fn creates_content(self) -> bool {
        match self {
            Call::SetCommitStatus
            | Call::CreateComment
            | Call::UpdateComment
            | Call::OpenPullRequest => true,
            Call::ReadCommitStatuses
            | Call::ListPullRequestsOfCommit
            | Call::ListComments
            | Call::FindPullRequest => false,
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong talking to GitHub. Messages name the call and the HTTP status, never the token.
#[derive(Debug, thiserror::Error)]
pub enum GitHubError {
    #[error(
        "GitHub {call}: rate limited (HTTP {status}): {message}; the next request waits {} s",
        wait.as_secs()
    )]
    RateLimited {
        call: Call,
        status: u16,
        wait: Duration,
        message: String,
    },
    #[error("GitHub {call}: HTTP {status}: {message}{hint}")]
    Rejected {
        call: Call,
        status: u16,
        message: String,
        hint: &'static str,
    },
    #[error("GitHub {call}: server error HTTP {status}: {message}; retried with backoff")]
    Server {
        call: Call,
        status: u16,
        message: String,
    },
    #[error(
        "GitHub {call}: no answer from {api_url}: {reason}; check --github-api-url and the network; retried with backoff"
    )]
    Unreachable {
        call: Call,
        api_url: String,
        reason: String,
    },
    #[error("GitHub {call}: no answer within {} ms; retried with backoff", timeout.as_millis())]
    TimedOut { call: Call, timeout: Duration },
    #[error("GitHub {call}: unexpected response (HTTP {status}): {reason}")]
    BadResponse {
        call: Call,
        status: u16,
        reason: String,
    },
    #[error(
        "GitHub API URL {url:?} is not usable: {reason}; give one like https://api.github.com or https://ghe.example.com/api/v3"
    )]
    ApiUrl { url: String, reason: String },
    #[error(
        "cannot tell the GitHub repository from {input:?}: {reason}; give it as owner/name (--github-repo team/apps)"
    )]
    Repo { input: String, reason: String },
    #[error("GitHub token file {}: {reason}; --github-token-file must name a file holding the token", path.display())]
    TokenFile { path: PathBuf, reason: String },
}

impl GitHubError {
    /// Worth retrying unchanged after a backoff: server errors, timeouts, no connection.
    pub fn is_transient(&self) -> bool {
        match self {
            GitHubError::Server { .. }
            | GitHubError::Unreachable { .. }
            | GitHubError::TimedOut { .. } => true,
            GitHubError::RateLimited { .. }
            | GitHubError::Rejected { .. }
            | GitHubError::BadResponse { .. }
            | GitHubError::ApiUrl { .. }
            | GitHubError::Repo { .. }
            | GitHubError::TokenFile { .. } => false,
        }
    }

    /// How long GitHub asked us to wait before any next request.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GitHubError::RateLimited { wait, .. } => Some(*wait),
            _ => None,
        }
    }

    /// The HTTP status GitHub answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            GitHubError::RateLimited { status, .. }
            | GitHubError::Rejected { status, .. }
            | GitHubError::Server { status, .. }
            | GitHubError::BadResponse { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How to reach GitHub.
#[derive(Clone, Debug)]
pub struct GitHubConfig {
    /// `https://api.github.com`, or `https://<host>/api/v3` for GitHub Enterprise Server.
    pub api_url: String,
    pub token: GitHubToken,
    pub repo: RepoRef,
    /// How long one request may take (connect, send and read). `None`: no limit (tests with paused
    /// time, where any timer would fire while the request waits for the network).
    pub timeout: Option<Duration>,
}

impl GitHubConfig {
    pub fn new(token: GitHubToken, repo: RepoRef) -> GitHubConfig {
        GitHubConfig {
            api_url: DEFAULT_API_URL.into(),
            token,
            repo,
            timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// A commit status to set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusRequest<'a> {
    pub state: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_url: Option<&'a str>,
    pub description: &'a str,
    pub context: &'a str,
}

/// A pull request as Bosun needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub state: PrState,
    /// Merged (`merged_at` set).
    pub merged: bool,
    /// The branch it merges into.
    pub base_ref: String,
    pub head_ref: String,
    pub html_url: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrState {
    Open,
    Closed,
}

/// Bosun's comment on a pull request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    pub id: u64,
    pub body: String,
    pub html_url: String,
}

/// Of the pull requests GitHub associates with a commit, the one whose comment tells what the commit
/// did: merged into the watched branch first, then open against it, then any merged, then any open.
pub fn pick_pull_request<'a>(
    prs: &'a [PullRequest],
    branch: Option<&str>,
) -> Option<&'a PullRequest> {
    let on_branch = |p: &&PullRequest| branch.is_none_or(|b| p.base_ref == b);
    let open = |p: &&PullRequest| p.state == PrState::Open;
    prs.iter()
        .filter(on_branch)
        .find(|p| p.merged)
        .or_else(|| prs.iter().filter(on_branch).find(open))
        .or_else(|| prs.iter().find(|p| p.merged))
        .or_else(|| prs.iter().find(open))
}

// Wire shapes (the fields Bosun reads), as in GitHub's REST documentation.

#[derive(Deserialize)]
struct WirePull {
    number: u64,
    state: String,
    html_url: String,
    #[serde(default)]
    merged_at: Option<String>,
    base: WireRef,
    head: WireRef,
}

#[derive(Deserialize)]
struct WireRef {
    #[serde(rename = "ref")]
    ref_: String,
}

/// One status of GitHub's combined status of a commit: the latest of its context.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ShownStatus {
    pub context: String,
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
}

#[derive(Deserialize)]
struct WireCombinedStatus {
    #[serde(default)]
    statuses: Vec<ShownStatus>,
}

#[derive(Deserialize)]
struct WireComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    html_url: String,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

impl From<WirePull> for PullRequest {
    fn from(p: WirePull) -> Self {
        PullRequest {
            number: p.number,
            state: if p.state == "open" {
                PrState::Open
            } else {
                PrState::Closed
            },
            merged: p.merged_at.is_some(),
            base_ref: p.base.ref_,
            head_ref: p.head.ref_,
            html_url: p.html_url,
        }
    }
}

impl From<WireComment> for Comment {
    fn from(c: WireComment) -> Self {
        Comment {
            id: c.id,
            body: c.body.unwrap_or_default(),
            html_url: c.html_url,
        }
    }
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

enum Verb<'a> {
    Get,
    Post(&'a serde_json::Value),
    Patch(&'a serde_json::Value),
}

/// A GitHub client for one repository.
#[derive(Clone)]
pub struct GitHub {
    octo: Octocrab,
    repo: RepoRef,
    api_url: String,
    token: GitHubToken,
    timeout: Option<Duration>,
}

impl fmt::Debug for GitHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHub")
            .field("api_url", &self.api_url)
            .field("repo", &self.repo)
            .field("token", &self.token)
            .finish()
    }
}

impl GitHub {
    /// A client for `config.repo` at `config.api_url`. Needs a tokio runtime.
    ///
    /// # Errors
    /// [`GitHubError::ApiUrl`] when the URL is not an http(s) URL.
    pub fn new(config: GitHubConfig) -> Result<GitHub, GitHubError> {
        let api_url = config.api_url.trim_end_matches('/').to_string();
        let bad = |reason: String| GitHubError::ApiUrl {
            url: api_url.clone(),
            reason,
        };
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(bad("it must start with https:// (or http://)".into()));
        }
        // The deadline of a whole call is ours (`send`); the client's own timeouts are a second later,
        // as a backstop, so that a hung call always ends the same way ("no answer within …") rather
        // than whichever timer fires first.
        let backstop = config.timeout.map(|t| t + Duration::from_secs(1));
        let builder = Octocrab::builder()
            .base_uri(api_url.as_str())
            .map_err(|e| bad(e.to_string()))?
            .personal_token(config.token.expose_secret().to_string())
            .set_connect_timeout(backstop)
            .set_read_timeout(backstop)
            .set_write_timeout(backstop);
        let octo = builder.build().map_err(|e| bad(e.to_string()))?;
        Ok(GitHub {
            octo,
            repo: config.repo,
            api_url,
            token: config.token,
            timeout: config.timeout,
        })
    }

    pub fn repo(&self) -> &RepoRef {
        &self.repo
    }

    /// Sets the status `context` of commit `sha` (POST /repos/{o}/{r}/statuses/{sha}).
    ///
    /// # Errors
    /// Any [`GitHubError`] of a call; see [`GitHubError::is_transient`] and
    /// [`GitHubError::retry_after`].
    pub async fn set_commit_status(
        &self,
        sha: &str,
        context: &str,
        state: StatusState,
        description: &str,
        target_url: Option<&str>,
    ) -> Result<(), GitHubError> {
        // GitHub refuses (422) a longer description.
        let description = truncate(description, DESCRIPTION_LIMIT);
        let body = serde_json::to_value(StatusRequest {
            state: state.as_str(),
            target_url,
            description: &description,
            context,
        })
        .expect("a status request serialises");
        let path = format!("{}/statuses/{}", self.repo_path(), sha);
        let reply = self
            .send(Call::SetCommitStatus, &path, Verb::Post(&body))
            .await?;
        self.expect_status(Call::SetCommitStatus, &reply, &[StatusCode::CREATED])
    }

    /// The latest status of every context of commit `sha`, as GitHub shows it (GET
    /// /repos/{o}/{r}/commits/{sha}/status, the combined status). A commit GitHub does not know yet has
    /// none.
    ///
    /// # Errors
    /// Any [`GitHubError`] of a call.
    pub async fn commit_statuses(&self, sha: &str) -> Result<Vec<ShownStatus>, GitHubError> {
        let call = Call::ReadCommitStatuses;
        let path = format!("{}/commits/{}/status?per_page=100", self.repo_path(), sha);
        let reply = self.send(call, &path, Verb::Get).await?;
        if reply.status == StatusCode::NOT_FOUND || reply.status == StatusCode::UNPROCESSABLE_ENTITY
        {
            return Ok(Vec::new());
        }
        self.expect_status(call, &reply, &[StatusCode::OK])?;
        let combined: WireCombinedStatus = self.decode(call, &reply)?;
        Ok(combined.statuses)
    }

    /// The pull requests GitHub associates with commit `sha` (GET /repos/{o}/{r}/commits/{sha}/pulls):
    /// the merged pull request that brought it to a branch, or open ones that contain it.
    ///
    /// # Errors
    /// Any [`GitHubError`] of a call.
    pub async fn pull_requests_for_commit(
        &self,
        sha: &str,
    ) -> Result<Vec<PullRequest>, GitHubError> {
        let call = Call::ListPullRequestsOfCommit;
        let path = format!("{}/commits/{}/pulls?per_page=100", self.repo_path(), sha);
        let reply = self.send(call, &path, Verb::Get).await?;
        // 422: GitHub knows no commit with that sha (not pushed yet): no pull request either.
        if reply.status == StatusCode::UNPROCESSABLE_ENTITY {
            return Ok(Vec::new());
        }
        self.expect_status(call, &reply, &[StatusCode::OK])?;
        let prs: Vec<WirePull> = self.decode(call, &reply)?;
        Ok(prs.into_iter().map(PullRequest::from).collect())
    }

    /// Bosun's comment on pull request `pr`: the first whose body starts with the marker, searching
    /// every page of the comments (GET /repos/{o}/{r}/issues/{pr}/comments).
    ///
    /// # Errors
    /// Any [`GitHubError`] of a call.
    pub async fn find_pr_comment(&self, pr: u64) -> Result<Option<Comment>, GitHubError> {
        let call = Call::ListComments;
        for page in 1..=MAX_COMMENT_PAGES {
            let path = format!(
                "{}/issues/{pr}/comments?per_page=100&page={page}",
                self.repo_path()
            );
            let reply = self.send(call, &path, Verb::Get).await?;
            self.expect_status(call, &reply, &[StatusCode::OK])?;
            let comments: Vec<WireComment> = self.decode(call, &reply)?;
            let empty = comments.is_empty();
            if let Some(c) = comments.into_iter().find(|c| {
                c.body
                    .as_deref()
                    .is_some_and(|b| b.starts_with(COMMENT_MARKER))
            }) {
                return Ok(Some(c.into()));
            }
            if empty || !has_next_page(&reply.headers) {
                break;
            }
        }
        Ok(None)
    }

    /// Posts a new comment on pull request `pr` (POST /repos/{o}/{r}/issues/{pr}/comments).
    ///
    /// # Errors
    /// Any [`GitHubError`] of a call.
    pub async fn create_pr_comment(&self, pr: u64, body: &str) -> Result<Comment, GitHubError> {
        let call = Call::CreateComment;
        let path = format!("{}/issues/{pr}/comments", self.repo_path());
        let reply = self
            .send(
                call,
                &path,
                Verb::Post(&serde_json::json!({ "body": body })),
            )
            .await?;
        self.expect_status(call, &reply, &[StatusCode::CREATED])?;
        Ok(self.decode::<WireComment>(call, &reply)?.into())
    }

    /// Replaces the body of comment `id` (PATCH /repos/{o}/{r}/issues/comments/{id}).
    ///
    /// # Errors
    /// Any [`GitHubError`] of a call; `Rejected` with status 404 when the comment was deleted.
    pub async fn update_pr_comment(&self, id: u64, body: &str) -> Result<Comment, GitHubError> {
        let call = Call::UpdateComment;
        let path = format!("{}/issues/comments/{id}", self.repo_path());
        let reply = self
            .send(
                call,
                &path,
                Verb::Patch(&serde_json::json!({ "body": body })),
            )
            .await?;
        self.expect_status(call, &reply, &[StatusCode::OK])?;
        Ok(self.decode::<WireComment>(call, &reply)?.into())
    }

    /// Makes Bosun's comment on `pr` say `body`: edits the comment found by its marker, or posts it
    /// when there is none, so that a restarted Bosun never adds a second one. No write when the
    /// comment already says `body`.
    ///
    /// # Errors
    /// Any [`GitHubError`] of a call.
    pub async fn upsert_pr_comment(&self, pr: u64, body: &str) -> Result<Comment, GitHubError> {
        match self.find_pr_comment(pr).await? {
            Some(c) if c.body == body => Ok(c),
            Some(c) => self.update_pr_comment(c.id, body).await,
            None => self.create_pr_comment(pr, body).await,
        }
    }

    /// Opens a pull request from branch `head` into `base` (POST /repos/{o}/{r}/pulls). When one is
    /// already open for that head and base (422 "already exists"), returns that one.
    ///
    /// # Errors
    /// Any [`GitHubError`] of a call.
    pub async fn open_pull_request(
        &self,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
    ) -> Result<PullRequest, GitHubError> {
        let call = Call::OpenPullRequest;
        let path = format!("{}/pulls", self.repo_path());
        let request =
            serde_json::json!({ "title": title, "head": head, "base": base, "body": body });
        let reply = self.send(call, &path, Verb::Post(&request)).await?;
        if reply.status == StatusCode::UNPROCESSABLE_ENTITY && already_exists(&reply.body) {
            return match self.find_open_pull_request(head, base).await? {
                Some(pr) => Ok(pr),
                None => Err(self.rejected(call, &reply)),
            };
        }
        self.expect_status(call, &reply, &[StatusCode::CREATED])?;
        Ok(self.decode::<WirePull>(call, &reply)?.into())
    }

    /// The open pull request from `head` into `base`, if any (GET /repos/{o}/{r}/pulls?head=&base=).
    ///
    /// # Errors
    /// Any [`GitHubError`] of a call.
    pub async fn find_open_pull_request(
        &self,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, GitHubError> {
        let call = Call::FindPullRequest;
        let head = if head.contains(':') {
            head.to_string()
        } else {
            format!("{}:{head}", self.repo.owner)
        };
        let path = format!(
            "{}/pulls?state=open&head={}&base={}",
            self.repo_path(),
            query_escape(&head),
            query_escape(base)
        );
        let reply = self.send(call, &path, Verb::Get).await?;
        self.expect_status(call, &reply, &[StatusCode::OK])?;
        let prs: Vec<WirePull> = self.decode(call, &reply)?;
        Ok(prs.into_iter().next().map(PullRequest::from))
    }

    fn repo_path(&self) -> String {
        format!("/repos/{}/{}", self.repo.owner, self.repo.name)
    }

    async fn send(&self, call: Call, path: &str, verb: Verb<'_>) -> Result<Reply, GitHubError> {
        let request = async {
            let response = match verb {
                Verb::Get => self.octo._get(path).await,
                Verb::Post(body) => self.octo._post(path, Some(body)).await,
                Verb::Patch(body) => self.octo._patch(path, Some(body)).await,
            }
            .map_err(|e| self.unreachable(call, &e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = self
                .octo
                .body_to_string(response)
                .await
                .map_err(|e| self.unreachable(call, &e))?;
            Ok(Reply {
                status,
                headers,
                body,
            })
        };
        let reply = match self.timeout {
            Some(limit) => tokio::time::timeout(limit, request).await.map_err(|_| {
                GitHubError::TimedOut {
                    call,
                    timeout: limit,
                }
            })??,
            None => request.await?,
        };
        if let Some(wait) = rate_limit_wait(reply.status, &reply.headers, &reply.body) {
            return Err(GitHubError::RateLimited {
                call,
                status: reply.status.as_u16(),
                wait,
                message: self.message(&reply),
            });
        }
        if reply.status.is_server_error() {
            return Err(GitHubError::Server {
                call,
                status: reply.status.as_u16(),
                message: self.message(&reply),
            });
        }
        Ok(reply)
    }

    fn expect_status(
        &self,
        call: Call,
        reply: &Reply,
        ok: &[StatusCode],
    ) -> Result<(), GitHubError> {
        if ok.contains(&reply.status) {
            Ok(())
        } else if reply.status.is_success() {
            Err(GitHubError::BadResponse {
                call,
                status: reply.status.as_u16(),
                reason: format!("expected HTTP {}", ok[0].as_u16()),
            })
        } else {
            Err(self.rejected(call, reply))
        }
    }

    fn rejected(&self, call: Call, reply: &Reply) -> GitHubError {
        let hint = match reply.status {
            StatusCode::UNAUTHORIZED => {
                "; the token was refused: check --github-token-file (expired or revoked?)"
            }
            StatusCode::FORBIDDEN => {
                "; the token may not do this: it needs write access to commit statuses, issues and pull requests of the repository"
            }
            StatusCode::NOT_FOUND => {
                "; check --github-repo and that the token can see the repository"
            }
            StatusCode::UNPROCESSABLE_ENTITY => "; GitHub refused the request's content",
            _ => "",
        };
        GitHubError::Rejected {
            call,
            status: reply.status.as_u16(),
            message: self.message(reply),
            hint,
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(
        &self,
        call: Call,
        reply: &Reply,
    ) -> Result<T, GitHubError> {
        serde_json::from_str(&reply.body).map_err(|e| GitHubError::BadResponse {
            call,
            status: reply.status.as_u16(),
            reason: self.redact(&e.to_string()),
        })
    }

    /// GitHub's `message` (and the first validation error), redacted and bounded.
    fn message(&self, reply: &Reply) -> String {
        let text = match serde_json::from_str::<WireError>(&reply.body) {
            Ok(e) => {
                let mut m = e.message.unwrap_or_default();
                if let Some(first) = e.errors.first() {
                    let detail = first
                        .get("message")
                        .and_then(|v| v.as_str())
                        .map(str::to_string)
                        .unwrap_or_else(|| first.to_string());
                    m = format!("{m} ({detail})");
                }
                m
            }
            Err(_) => reply.body.trim().to_string(),
        };
        let text = if text.is_empty() {
            reply
                .status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string()
        } else {
            text
        };
        truncate(&self.redact(&text), 300)
    }

    fn unreachable(&self, call: Call, e: &octocrab::Error) -> GitHubError {
        // octocrab's Display says "Hyper error" and the like; the source chain says what happened.
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        GitHubError::Unreachable {
            call,
            api_url: self.api_url.clone(),
            reason: self.redact(&reason),
        }
    }

    fn redact(&self, text: &str) -> String {
        let token = self.token.expose_secret();
        if token.is_empty() {
            text.to_string()
        } else {
            text.replace(token, "***")
        }
    }
}

/// How long GitHub asks us to wait, when a response is a rate limit: `Retry-After` first, then
/// `x-ratelimit-remaining: 0` with `x-ratelimit-reset`, then a secondary limit's message (a minute).
fn rate_limit_wait(status: StatusCode, headers: &HeaderMap, body: &str) -> Option<Duration> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(wait) = header("retry-after").and_then(retry_after) {
        return Some(wait.min(MAX_RATE_LIMIT_WAIT));
    }
    if header("x-ratelimit-remaining") == Some("0")
        && let Some(reset) = header("x-ratelimit-reset").and_then(|v| v.parse::<u64>().ok())
    {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // One second more: the reset is whole seconds and clocks differ a little.
        let wait = Duration::from_secs(reset.saturating_sub(now) + 1);
        return Some(wait.min(MAX_RATE_LIMIT_WAIT));
    }
    if status == StatusCode::TOO_MANY_REQUESTS || body.to_ascii_lowercase().contains("rate limit") {
        return Some(SECONDARY_LIMIT_WAIT);
    }
    None
}

/// A `Retry-After` value: seconds, or an HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`) taken from now.
fn retry_after(value: &str) -> Option<Duration> {
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = k8s_openapi::jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    let secs = at.as_second() - k8s_openapi::jiff::Timestamp::now().as_second();
    // A date already past means "now", but not a storm: wait a second.
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0).max(1)))
}

/// Whether a `Link` header has a `rel="next"` page.
fn has_next_page(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|link| link.contains("rel=\"next\""))
}

fn already_exists(body: &str) -> bool {
    body.to_ascii_lowercase().contains("already exists")
}

fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_is_read_from_owner_name_and_source_urls() {
        let cases = [
            ("team/apps", "team/apps"),
            ("https://github.com/team/apps", "team/apps"),
            ("https://github.com/team/apps.git", "team/apps"),
            ("https://github.com/team/apps/", "team/apps"),
            (
                "https://x-access-token:t0k@github.com/team/apps.git",
                "team/apps",
            ),
            ("git@github.com:team/apps.git", "team/apps"),
            ("ssh://git@github.com/team/apps.git", "team/apps"),
            (
                "ssh://git@ghe.example.com:2222/team/my.apps.git",
                "team/my.apps",
            ),
        ];
        for (input, want) in cases {
            let got = RepoRef::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(got.to_string(), want, "{input}");
        }
    }

    #[test]
    fn a_repo_without_owner_and_name_is_refused_without_echoing_credentials() {
        for input in [
            "apps",
            "https://github.com/",
            "https://github.com/team/apps/tree/main",
            "a/b c",
            "https://user:s3cret@github.com/onlyone",
        ] {
            let err = RepoRef::parse(input).expect_err(input).to_string();
            assert!(err.contains("owner/name"), "{err}");
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn token_file_is_trimmed_and_its_problems_name_the_file() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let good = dir.path().join("token");
        std::fs::write(&good, "ghp_abc123\n").expect("write");
        assert_eq!(
            token_from_file(&good).expect("read").expose_secret(),
            "ghp_abc123"
        );
        let empty = dir.path().join("empty");
        std::fs::write(&empty, " \n").expect("write");
        let missing = dir.path().join("missing");
        for (path, why) in [
            (&empty, "the file is empty"),
            (&missing, "entity not found"),
        ] {
            let err = token_from_file(path).expect_err("refused").to_string();
            assert_eq!(
                err,
                format!(
                    "GitHub token file {}: {why}; --github-token-file must name a file holding the token",
                    path.display()
                )
            );
        }
    }

    #[test]
    fn a_token_is_never_printed() {
        let t = GitHubToken::from("ghp_secret");
        assert!(!format!("{t:?}").contains("ghp_secret"), "{t:?}");
    }

    fn pr(number: u64, state: PrState, merged: bool, base: &str) -> PullRequest {
        PullRequest {
            number,
            state,
            merged,
            base_ref: base.into(),
            head_ref: "feature".into(),
            html_url: String::new(),
        }
    }

    #[test]
    fn the_merged_pull_request_into_the_watched_branch_is_preferred() {
        use PrState::*;
        let table: [(&[PullRequest], Option<&str>, Option<u64>); 6] = [
            (&[], Some("main"), None),
            (&[pr(1, Open, false, "main")], Some("main"), Some(1)),
            (
                &[pr(1, Open, false, "main"), pr(2, Closed, true, "main")],
                Some("main"),
                Some(2),
            ),
            (
                &[pr(3, Closed, true, "release"), pr(4, Open, false, "main")],
                Some("main"),
                Some(4),
            ),
            (
                &[pr(5, Closed, false, "main"), pr(6, Closed, true, "dev")],
                Some("main"),
                Some(6),
            ),
            (&[pr(7, Closed, false, "main")], Some("main"), None),
        ];
        for (prs, branch, want) in table {
            assert_eq!(
                pick_pull_request(prs, branch).map(|p| p.number),
                want,
                "{prs:?}"
            );
        }
    }

    #[test]
    fn rate_limits_are_read_from_headers_and_messages() {
        let h = |pairs: &[(&'static str, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, v.parse().expect("header value"));
            }
            m
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let reset = (now + 30).to_string();
        let in_20_s = k8s_openapi::jiff::fmt::rfc2822::DateTimePrinter::new()
            .timestamp_to_rfc9110_string(
                &k8s_openapi::jiff::Timestamp::from_second((now + 20) as i64).expect("a time"),
            )
            .expect("an HTTP date");
        // (status, headers, body, the wait expected: from..=to seconds)
        type Case<'a> = (StatusCode, HeaderMap, &'a str, Option<(u64, u64)>);
        let cases: Vec<Case> = vec![
            (
                StatusCode::TOO_MANY_REQUESTS,
                h(&[("retry-after", "2")]),
                "",
                Some((2, 2)),
            ),
            (
                StatusCode::FORBIDDEN,
                h(&[("retry-after", "7")]),
                "",
                Some((7, 7)),
            ),
            (
                StatusCode::TOO_MANY_REQUESTS,
                h(&[("retry-after", &in_20_s)]),
                "",
                Some((18, 21)),
            ),
            (
                StatusCode::TOO_MANY_REQUESTS,
                h(&[("retry-after", "Wed, 21 Oct 2015 07:28:00 GMT")]),
                "",
                Some((1, 1)),
            ),
            (
                StatusCode::FORBIDDEN,
                h(&[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &reset),
                ]),
                "API rate limit exceeded",
                Some((29, 32)),
            ),
            (
                StatusCode::FORBIDDEN,
                h(&[]),
                "You have exceeded a secondary rate limit",
                Some((60, 60)),
            ),
            (StatusCode::TOO_MANY_REQUESTS, h(&[]), "", Some((60, 60))),
            (
                StatusCode::FORBIDDEN,
                h(&[("x-ratelimit-remaining", "12")]),
                "Resource not accessible by integration",
                None,
            ),
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                h(&[("retry-after", "2")]),
                "",
                None,
            ),
        ];
        for (status, headers, body, want) in cases {
            let got = rate_limit_wait(status, &headers, body).map(|d| d.as_secs());
            match want {
                None => assert_eq!(got, None, "{status} {body}"),
                Some((lo, hi)) => {
                    let got = got.unwrap_or_else(|| panic!("{status} {body}: no wait"));
                    assert!((lo..=hi).contains(&got), "{status} {body}: {got}");
                }
            }
        }
    }

    #[test]
    fn link_header_tells_whether_a_next_page_exists() {
        let mut m = HeaderMap::new();
        m.insert(
            http::header::LINK,
            "<https://api.github.com/repositories/1/issues/2/comments?page=2>; rel=\"next\", <https://api.github.com/repositories/1/issues/2/comments?page=5>; rel=\"last\""
                .parse()
                .expect("header"),
        );
        assert!(has_next_page(&m));
        m.insert(
            http::header::LINK,
            "<https://api.github.com/repositories/1/issues/2/comments?page=1>; rel=\"prev\""
                .parse()
                .expect("header"),
        );
        assert!(!has_next_page(&m));
        assert!(!has_next_page(&HeaderMap::new()));
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(
            query_escape("team:bosun/rollback-web v2&x"),
            "team:bosun/rollback-web%20v2%26x"
        );
    }
}
