//! The forges' REST APIs, as the report stage uses them: commit statuses, the pull requests of a commit,
//! Bosun's one comment on a pull request, and a pull request for a rollback the branch would not take.
//! One client, [`Forge`], speaks three dialects ([`ForgeKind`]):
//!
//! - **GitHub** (`https://api.github.com`, or `https://HOST/api/v3` for GitHub Enterprise Server);
//! - **Gitea** and Forgejo (`https://HOST/api/v1`): GitHub's paths for statuses, comments and pull
//!   requests, but a commit's pull request looked up only by its merge commit (`/commits/{sha}/pull`;
//!   the commits a merge brings in are searched for among the recent pull requests), statuses shown
//!   with `status` where GitHub says `state` (and `statuses: null` when there are none), comments
//!   unpaged, and an open pull request found by base and head;
//! - **GitLab** (`https://HOST/api/v4`): projects by URL-encoded path (nested groups too), statuses named
//!   by `name` with `running`/`failed`, merge requests (`iid`) and their notes, edited with PUT.
//!
//! Built on octocrab's raw `_get`/`_post`/`_patch`/`_put` so that every response's status and headers
//! are seen here: rate limits (`Retry-After`, `x-ratelimit-remaining`/`x-ratelimit-reset`) become
//! [`ForgeError::RateLimited`] with the wait the forge asked for, which the [`Reporter`](super::Reporter)
//! honours. Paths are sent relative, so octocrab adds the token (`Authorization: Bearer`, which all
//! three accept for an access token) only for the configured API host, and an API base path
//! (`/api/v3`, `/api/v1`, `/api/v4`) is kept. The token never appears in an error.

use secrecy::ExposeSecret;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bosun_core::report::{COMMENT_MARKER, DESCRIPTION_LIMIT, StatusState, truncate};
use http::{HeaderMap, StatusCode};
use octocrab::Octocrab;
use serde::{Deserialize, Serialize};

/// `https://api.github.com`: where GitHub's API is unless configured otherwise.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// Which forge's API Bosun speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ForgeKind {
    #[default]
    GitHub,
    Gitea,
    GitLab,
}

impl ForgeKind {
    /// The forge's name, as messages say it.
    pub fn name(self) -> &'static str {
        match self {
            ForgeKind::GitHub => "GitHub",
            ForgeKind::Gitea => "Gitea",
            ForgeKind::GitLab => "GitLab",
        }
    }

    /// Reads `github`, `gitea` (Forgejo speaks it too) or `gitlab`.
    ///
    /// # Errors
    /// Any other word, with the ones that are accepted.
    pub fn parse(word: &str) -> Result<ForgeKind, String> {
        match word.trim().to_ascii_lowercase().as_str() {
            "github" => Ok(ForgeKind::GitHub),
            "gitea" | "forgejo" => Ok(ForgeKind::Gitea),
            "gitlab" => Ok(ForgeKind::GitLab),
            other => Err(format!(
                "unknown forge {}: give github, gitea or gitlab",
                bosun_core::shown::Quoted(other)
            )),
        }
    }

    /// The forge a repository URL is on, told by its host: `gitlab` in the host name is GitLab;
    /// `gitea`, `forgejo` or `codeberg.org` is Gitea; anything else is GitHub (github.com and GitHub
    /// Enterprise hosts alike). `--forge` says it when the host does not.
    pub fn of_url(url: &str) -> ForgeKind {
        let host = crate::git::host_of(url)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if host.contains("gitlab") {
            ForgeKind::GitLab
        } else if host.contains("gitea") || host.contains("forgejo") || host == "codeberg.org" {
            ForgeKind::Gitea
        } else {
            ForgeKind::GitHub
        }
    }

    /// The API of the forge that serves `repo_url`: `https://api.github.com` for github.com,
    /// `https://HOST/api/v3` for another GitHub host, `https://HOST/api/v1` for Gitea and
    /// `https://HOST/api/v4` for GitLab (`http://` kept for a plain-HTTP repository URL).
    pub fn api_url_for(self, repo_url: &str) -> Option<String> {
        let host = crate::git::host_of(repo_url)?;
        let scheme = if repo_url.trim_start().starts_with("http://") {
            "http"
        } else {
            "https"
        };
        let port = crate::git::http_port_of(repo_url)
            .map(|p| format!(":{p}"))
            .unwrap_or_default();
        Some(match self {
            ForgeKind::GitHub if host.eq_ignore_ascii_case("github.com") => DEFAULT_API_URL.into(),
            ForgeKind::GitHub => format!("{scheme}://{host}{port}/api/v3"),
            ForgeKind::Gitea => format!("{scheme}://{host}{port}/api/v1"),
            ForgeKind::GitLab => format!("{scheme}://{host}{port}/api/v4"),
        })
    }
}

impl fmt::Display for ForgeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// At most this many pages of 100 comments are read looking for Bosun's comment.
const MAX_COMMENT_PAGES: u32 = 50;

/// Gitea: how many of the most recently updated pull requests are searched for a commit that is no
/// merge commit (one page: Gitea's default `MAX_RESPONSE_ITEMS`).
const GITEA_RECENT_PULLS: u32 = 50;

/// Gitea: of those, how many open or merged ones have their commits listed when no head matches.
const GITEA_PULLS_SEARCHED: usize = 5;

/// A secondary rate limit without `Retry-After` or a reset: GitHub asks to wait at least a minute.
const SECONDARY_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// The longest wait a rate limit may impose (the primary window is an hour).
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);

/// A GitHub token (secrecy's: never printed, zeroed when dropped). Read only where it is sent.
pub type ForgeToken = secrecy::SecretString;

/// Reads a token from a file (a mounted Secret), trimming surrounding whitespace.
///
/// # Errors
/// [`ForgeError::TokenFile`] when the file cannot be read or holds no token.
pub fn token_from_file(path: &Path) -> Result<ForgeToken, ForgeError> {
    let raw = std::fs::read_to_string(path).map_err(|e| ForgeError::TokenFile {
        path: path.to_path_buf(),
        reason: e.kind().to_string(),
    })?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(ForgeError::TokenFile {
            path: path.to_path_buf(),
            reason: "the file is empty".into(),
        });
    }
    Ok(ForgeToken::from(token))
}

/// A repository on GitHub: `owner/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoRef {
    pub owner: String,
    pub name: String,
}

impl RepoRef {
    /// Reads a GitHub repository: see [`RepoRef::parse_for`].
    ///
    /// # Errors
    /// [`ForgeError::Repo`] when no owner and name can be read.
    pub fn parse(input: &str) -> Result<RepoRef, ForgeError> {
        RepoRef::parse_for(ForgeKind::GitHub, input)
    }

    /// Reads `owner/name`, or derives it from a source URL: `https://github.com/o/r(.git)`,
    /// `git@github.com:o/r.git`, `ssh://git@github.com/o/r.git` (any host). On GitLab the owner is a
    /// group path and may hold slashes (`group/subgroup/project`): the name is the last part.
    ///
    /// # Errors
    /// [`ForgeError::Repo`] when no owner and name can be read.
    pub fn parse_for(forge: ForgeKind, input: &str) -> Result<RepoRef, ForgeError> {
        let form = match forge {
            ForgeKind::GitLab => "group/project or group/subgroup/project",
            ForgeKind::GitHub | ForgeKind::Gitea => "owner/name",
        };
        let bad = |reason: &str| ForgeError::Repo {
            forge,
            input: strip_userinfo(input),
            reason: reason.into(),
            form,
        };
        let s = input.trim();
        // A URL (any host) is read by the sources' own parser; else `owner/name`.
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
        let parts: Vec<&str> = path.split('/').collect();
        let nested = forge == ForgeKind::GitLab;
        let (owner, name) = match parts.as_slice() {
            [owner, name] => (owner.to_string(), *name),
            [groups @ .., name] if nested && groups.len() > 1 => (groups.join("/"), *name),
            _ => return Err(bad(&format!("expected {form}"))),
        };
        let valid = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if !owner.split('/').all(valid) || !valid(name) {
            return Err(bad(
                "owner and name may hold only letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(RepoRef {
            owner,
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
    ListOpenPullRequests,
    ReadPermission,
    AddReaction,
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
            Call::ListOpenPullRequests => "list open pull requests",
            Call::ReadPermission => "read a user's permission",
            Call::AddReaction => "react to a comment",
        }
    }

    /// Whether GitHub counts it against the ~80 content-creating requests a minute.
    pub fn creates_content(self) -> bool {
        match self {
            Call::SetCommitStatus
            | Call::CreateComment
            | Call::UpdateComment
            | Call::OpenPullRequest
            | Call::AddReaction => true,
            Call::ReadCommitStatuses
            | Call::ListPullRequestsOfCommit
            | Call::ListComments
            | Call::FindPullRequest
            | Call::ListOpenPullRequests
            | Call::ReadPermission => false,
        }
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What went wrong talking to the forge. Messages name the forge, the call and the HTTP status, never
/// the token.
#[derive(Debug, thiserror::Error)]
pub enum ForgeError {
    #[error(
        "{forge} {call}: rate limited (HTTP {status}): {message}; the next request waits {} s",
        wait.as_secs()
    )]
    RateLimited {
        forge: ForgeKind,
        call: Call,
        status: u16,
        wait: Duration,
        message: String,
    },
    #[error("{forge} {call}: HTTP {status}: {message}{hint}")]
    Rejected {
        forge: ForgeKind,
        call: Call,
        status: u16,
        message: String,
        hint: &'static str,
    },
    #[error("{forge} {call}: server error HTTP {status}: {message}; retried with backoff")]
    Server {
        forge: ForgeKind,
        call: Call,
        status: u16,
        message: String,
    },
    #[error(
        "{forge} {call}: no answer from {api_url}: {reason}; check --forge-api-url and the network; retried with backoff"
    )]
    Unreachable {
        forge: ForgeKind,
        call: Call,
        api_url: String,
        reason: String,
    },
    #[error("{forge} {call}: no answer within {} ms; retried with backoff", timeout.as_millis())]
    TimedOut {
        forge: ForgeKind,
        call: Call,
        timeout: Duration,
    },
    #[error("{forge} {call}: unexpected response (HTTP {status}): {reason}")]
    BadResponse {
        forge: ForgeKind,
        call: Call,
        status: u16,
        reason: String,
    },
    #[error(
        "{forge} API URL {url:?} is not usable: {reason}; give one like {example} (--forge-api-url)"
    )]
    ApiUrl {
        forge: ForgeKind,
        url: String,
        reason: String,
        example: &'static str,
    },
    #[error(
        "cannot tell the {forge} repository from {input:?}: {reason}; give it as {form} (--forge-repo)"
    )]
    Repo {
        forge: ForgeKind,
        input: String,
        reason: String,
        form: &'static str,
    },
    #[error("forge token file {}: {reason}; --forge-token-file must name a file holding the token", path.display())]
    TokenFile { path: PathBuf, reason: String },
}

impl ForgeError {
    /// Worth retrying unchanged after a backoff: server errors, timeouts, no connection.
    pub fn is_transient(&self) -> bool {
        match self {
            ForgeError::Server { .. }
            | ForgeError::Unreachable { .. }
            | ForgeError::TimedOut { .. } => true,
            ForgeError::RateLimited { .. }
            | ForgeError::Rejected { .. }
            | ForgeError::BadResponse { .. }
            | ForgeError::ApiUrl { .. }
            | ForgeError::Repo { .. }
            | ForgeError::TokenFile { .. } => false,
        }
    }

    /// How long GitHub asked us to wait before any next request.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ForgeError::RateLimited { wait, .. } => Some(*wait),
            _ => None,
        }
    }

    /// The HTTP status GitHub answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ForgeError::RateLimited { status, .. }
            | ForgeError::Rejected { status, .. }
            | ForgeError::Server { status, .. }
            | ForgeError::BadResponse { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How to reach the forge.
#[derive(Clone, Debug)]
pub struct ForgeConfig {
    pub kind: ForgeKind,
    /// `https://api.github.com`, `https://<host>/api/v3` (GitHub Enterprise Server),
    /// `https://<host>/api/v1` (Gitea) or `https://<host>/api/v4` (GitLab).
    pub api_url: String,
    pub token: ForgeToken,
    pub repo: RepoRef,
    /// How long one request may take (connect, send and read). `None`: no limit (tests with paused
    /// time, where any timer would fire while the request waits for the network).
    pub timeout: Option<Duration>,
}

impl ForgeConfig {
    /// GitHub at `https://api.github.com`.
    pub fn new(token: ForgeToken, repo: RepoRef) -> ForgeConfig {
        ForgeConfig::of(ForgeKind::GitHub, DEFAULT_API_URL, token, repo)
    }

    pub fn of(kind: ForgeKind, api_url: &str, token: ForgeToken, repo: RepoRef) -> ForgeConfig {
        ForgeConfig {
            kind,
            api_url: api_url.into(),
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
    /// The commit at its head (empty when the forge did not say).
    pub head_sha: String,
    pub html_url: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrState {
    Open,
    Closed,
}

/// The forge user who wrote a comment: the login (GitHub, Gitea) and the numeric id (GitLab asks
/// membership by id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commenter {
    pub login: String,
    pub id: Option<u64>,
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
    /// The commit the branch is at (for a merged pull request, its head when it was merged).
    #[serde(default)]
    sha: String,
}

/// A commit of a list (Gitea's `/pulls/{n}/commits`): its id.
#[derive(Deserialize)]
struct WireCommit {
    sha: String,
}

/// One status of a commit's combined status, as the forge shows it: the latest of its context, its
/// state in GitHub's words (`pending`, `success`, `failure`, `error`). Gitea names the state `status`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct ShownStatus {
    pub context: String,
    #[serde(alias = "status")]
    pub state: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub target_url: Option<String>,
}

#[derive(Deserialize)]
struct WireCombinedStatus {
    /// Gitea answers `null` for a commit without statuses.
    #[serde(default)]
    statuses: Option<Vec<ShownStatus>>,
}

#[derive(Deserialize)]
struct WireComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    /// GitLab's notes have none.
    #[serde(default)]
    html_url: String,
}

/// A user's permission on the repository: GitHub's and Gitea's `permission`, GitLab's member
/// `access_level`.
#[derive(Deserialize)]
struct WirePermission {
    #[serde(default)]
    permission: Option<String>,
    #[serde(default)]
    access_level: Option<u32>,
}

/// GitLab's Developer role, the least that may push.
const GITLAB_DEVELOPER: u32 = 30;

/// GitHub's and Gitea's `{"message": "...", "errors": [...]}`; GitLab's `message` may be a list or an
/// object of field errors, or the text is under `error`.
#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    errors: Vec<serde_json::Value>,
}

/// A GitLab merge request (the fields Bosun reads), as in GitLab's REST documentation.
#[derive(Deserialize)]
struct WireMergeRequest {
    iid: u64,
    /// `opened`, `closed`, `locked` or `merged`.
    state: String,
    web_url: String,
    #[serde(default)]
    merged_at: Option<String>,
    target_branch: String,
    source_branch: String,
    /// The head commit.
    #[serde(default)]
    sha: String,
}

impl From<WireMergeRequest> for PullRequest {
    fn from(m: WireMergeRequest) -> Self {
        PullRequest {
            number: m.iid,
            state: if m.state == "opened" {
                PrState::Open
            } else {
                PrState::Closed
            },
            merged: m.state == "merged" || m.merged_at.is_some(),
            base_ref: m.target_branch,
            head_ref: m.source_branch,
            head_sha: m.sha,
            html_url: m.web_url,
        }
    }
}

/// A GitLab commit status: its context is `name`, its state GitLab's own word.
#[derive(Deserialize)]
struct WireGitLabStatus {
    name: String,
    status: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    target_url: Option<String>,
}

impl From<WireGitLabStatus> for ShownStatus {
    fn from(s: WireGitLabStatus) -> Self {
        ShownStatus {
            context: s.name,
            state: from_gitlab_state(&s.status).into(),
            description: s.description,
            target_url: s.target_url,
        }
    }
}

/// Bosun's state in GitLab's words: an upgrade under way is `running`; GitLab has no `error`.
fn gitlab_state(state: StatusState) -> &'static str {
    match state {
        StatusState::Pending => "running",
        StatusState::Success => "success",
        StatusState::Failure | StatusState::Error => "failed",
    }
}

/// GitLab's state in GitHub's words, as [`ShownStatus`] holds it.
fn from_gitlab_state(state: &str) -> &'static str {
    match state {
        "success" => "success",
        "failed" => "failure",
        "canceled" | "skipped" => "error",
        _ => "pending",
    }
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
            head_sha: p.head.sha,
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
    Put(&'a serde_json::Value),
}

/// A forge client for one repository.
#[derive(Clone)]
pub struct Forge {
    octo: Octocrab,
    kind: ForgeKind,
    repo: RepoRef,
    api_url: String,
    token: ForgeToken,
    timeout: Option<Duration>,
}

impl fmt::Debug for Forge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forge")
            .field("kind", &self.kind)
            .field("api_url", &self.api_url)
            .field("repo", &self.repo)
            .field("token", &self.token)
            .finish()
    }
}

impl Forge {
    /// A client for `config.repo` at `config.api_url`. Needs a tokio runtime.
    ///
    /// # Errors
    /// [`ForgeError::ApiUrl`] when the URL is not an http(s) URL; [`ForgeError::Repo`] when the
    /// repository has a nested owner on a forge without groups.
    pub fn new(config: ForgeConfig) -> Result<Forge, ForgeError> {
        let kind = config.kind;
        let api_url = config.api_url.trim_end_matches('/').to_string();
        let bad = |reason: String| ForgeError::ApiUrl {
            forge: kind,
            url: api_url.clone(),
            reason,
            example: match kind {
                ForgeKind::GitHub => "https://api.github.com or https://ghe.example.com/api/v3",
                ForgeKind::Gitea => "https://gitea.example.com/api/v1",
                ForgeKind::GitLab => "https://gitlab.com/api/v4",
            },
        };
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            return Err(bad("it must start with https:// (or http://)".into()));
        }
        if kind != ForgeKind::GitLab && config.repo.owner.contains('/') {
            return Err(ForgeError::Repo {
                forge: kind,
                input: config.repo.to_string(),
                reason: "only GitLab has nested groups".into(),
                form: "owner/name",
            });
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
        Ok(Forge {
            octo,
            kind,
            repo: config.repo,
            api_url,
            token: config.token,
            timeout: config.timeout,
        })
    }

    /// How this forge names a pull request.
    pub fn words(&self) -> bosun_core::report::Words {
        match self.kind {
            ForgeKind::GitLab => bosun_core::report::Words::MergeRequest,
            ForgeKind::GitHub | ForgeKind::Gitea => bosun_core::report::Words::PullRequest,
        }
    }

    pub fn kind(&self) -> ForgeKind {
        self.kind
    }

    pub fn repo(&self) -> &RepoRef {
        &self.repo
    }

    /// Sets the status `context` of commit `sha` (GitHub, Gitea: POST /repos/{o}/{r}/statuses/{sha};
    /// GitLab: POST /projects/{id}/statuses/{sha}, the context as `name`).
    ///
    /// GitLab refuses (400 "Cannot transition status via :run from :running") a status in the state
    /// it already has: the state shown is then already right, and only the description stays as it
    /// was.
    ///
    /// # Errors
    /// Any [`ForgeError`] of a call; see [`ForgeError::is_transient`] and
    /// [`ForgeError::retry_after`].
    pub async fn set_commit_status(
        &self,
        sha: &str,
        context: &str,
        state: StatusState,
        description: &str,
        target_url: Option<&str>,
    ) -> Result<(), ForgeError> {
        let call = Call::SetCommitStatus;
        // GitHub refuses (422) a longer description; GitLab and Gitea take the same.
        let description = truncate(description, DESCRIPTION_LIMIT);
        let path = format!("{}/statuses/{}", self.repo_path(), path_escape(sha));
        let body = match self.kind {
            ForgeKind::GitHub | ForgeKind::Gitea => serde_json::to_value(StatusRequest {
                state: state.as_str(),
                target_url,
                description: &description,
                context,
            })
            .expect("a status request serialises"),
            ForgeKind::GitLab => {
                let mut body = serde_json::json!({
                    "state": gitlab_state(state),
                    "name": context,
                    "description": description,
                });
                if let Some(url) = target_url {
                    body["target_url"] = url.into();
                }
                body
            }
        };
        let reply = self.send(call, &path, Verb::Post(&body)).await?;
        if self.kind == ForgeKind::GitLab
            && reply.status == StatusCode::BAD_REQUEST
            && reply.body.contains("Cannot transition status")
        {
            return Ok(());
        }
        let ok: &[StatusCode] = match self.kind {
            ForgeKind::GitLab => &[StatusCode::CREATED, StatusCode::OK],
            _ => &[StatusCode::CREATED],
        };
        self.expect_status(call, &reply, ok)
    }

    /// The latest status of every context of commit `sha`, as the forge shows it (GitHub, Gitea: GET
    /// /repos/{o}/{r}/commits/{sha}/status, the combined status; GitLab: GET
    /// /projects/{id}/repository/commits/{sha}/statuses). A commit the forge does not know yet has none.
    ///
    /// # Errors
    /// Any [`ForgeError`] of a call.
    pub async fn commit_statuses(&self, sha: &str) -> Result<Vec<ShownStatus>, ForgeError> {
        let call = Call::ReadCommitStatuses;
        let sha = path_escape(sha);
        let path = match self.kind {
            ForgeKind::GitHub => format!("{}/commits/{sha}/status?per_page=100", self.repo_path()),
            ForgeKind::Gitea => format!("{}/commits/{sha}/status?limit=50", self.repo_path()),
            ForgeKind::GitLab => format!(
                "{}/repository/commits/{sha}/statuses?per_page=100",
                self.repo_path()
            ),
        };
        let reply = self.send(call, &path, Verb::Get).await?;
        if reply.status == StatusCode::NOT_FOUND || reply.status == StatusCode::UNPROCESSABLE_ENTITY
        {
            return Ok(Vec::new());
        }
        self.expect_status(call, &reply, &[StatusCode::OK])?;
        match self.kind {
            ForgeKind::GitHub | ForgeKind::Gitea => {
                let combined: WireCombinedStatus = self.decode(call, &reply)?;
                Ok(combined.statuses.unwrap_or_default())
            }
            ForgeKind::GitLab => {
                // Newest first; keep the latest of each name.
                let all: Vec<WireGitLabStatus> = self.decode(call, &reply)?;
                let mut seen = std::collections::HashSet::new();
                Ok(all
                    .into_iter()
                    .filter(|s| seen.insert(s.name.clone()))
                    .map(ShownStatus::from)
                    .collect())
            }
        }
    }

    /// The pull requests the forge associates with commit `sha`: the merged pull request that brought
    /// it to a branch, or open ones that contain it (GitHub: GET /repos/{o}/{r}/commits/{sha}/pulls;
    /// GitLab: GET /projects/{id}/repository/commits/{sha}/merge_requests; Gitea: the pull request
    /// merged by it, else the recent pull requests whose head or commits it is).
    ///
    /// # Errors
    /// Any [`ForgeError`] of a call.
    pub async fn pull_requests_for_commit(
        &self,
        sha: &str,
    ) -> Result<Vec<PullRequest>, ForgeError> {
        let call = Call::ListPullRequestsOfCommit;
        let escaped = path_escape(sha);
        let path = match self.kind {
            ForgeKind::GitHub => {
                format!("{}/commits/{escaped}/pulls?per_page=100", self.repo_path())
            }
            ForgeKind::Gitea => return self.gitea_pull_requests_for_commit(call, sha).await,
            ForgeKind::GitLab => format!(
                "{}/repository/commits/{escaped}/merge_requests?per_page=100",
                self.repo_path()
            ),
        };
        let reply = self.send(call, &path, Verb::Get).await?;
        // 422 (GitHub) or 404 (GitLab): no commit with that sha yet, or no pull request.
        if reply.status == StatusCode::UNPROCESSABLE_ENTITY
            || (self.kind != ForgeKind::GitHub && reply.status == StatusCode::NOT_FOUND)
        {
            return Ok(Vec::new());
        }
        self.expect_status(call, &reply, &[StatusCode::OK])?;
        Ok(match self.kind {
            ForgeKind::GitLab => self
                .decode::<Vec<WireMergeRequest>>(call, &reply)?
                .into_iter()
                .map(PullRequest::from)
                .collect(),
            _ => self
                .decode::<Vec<WirePull>>(call, &reply)?
                .into_iter()
                .map(PullRequest::from)
                .collect(),
        })
    }

    /// Gitea's pull requests of commit `sha`. Gitea looks up one pull request per commit, and only by
    /// its merge commit (GET /repos/{o}/{r}/commits/{sha}/pull: the squash commit, or the merge
    /// commit of a merge, but not the pull request's own commits, which a merge commit brings to the
    /// branch and which Bosun names when they changed an app). So when that answers 404, the most
    /// recently updated pull requests are searched (GET /repos/{o}/{r}/pulls?state=all&sort=recentupdate):
    /// those whose head is `sha`; failing that, the first few open or merged ones whose commits
    /// (GET /repos/{o}/{r}/pulls/{n}/commits) hold it.
    ///
    /// # Errors
    /// Any [`ForgeError`] of a call.
    async fn gitea_pull_requests_for_commit(
        &self,
        call: Call,
        sha: &str,
    ) -> Result<Vec<PullRequest>, ForgeError> {
        let merged_by = format!("{}/commits/{}/pull", self.repo_path(), path_escape(sha));
        let reply = self.send(call, &merged_by, Verb::Get).await?;
        if reply.status != StatusCode::NOT_FOUND {
            self.expect_status(call, &reply, &[StatusCode::OK])?;
            return Ok(vec![self.decode::<WirePull>(call, &reply)?.into()]);
        }
        let recent = format!(
            "{}/pulls?state=all&sort=recentupdate&limit={GITEA_RECENT_PULLS}",
            self.repo_path()
        );
        let reply = self.send(call, &recent, Verb::Get).await?;
        // Pull requests turned off for the repository.
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(Vec::new());
        }
        self.expect_status(call, &reply, &[StatusCode::OK])?;
        let pulls: Vec<WirePull> = self.decode(call, &reply)?;
        let (heads, others): (Vec<WirePull>, Vec<WirePull>) =
            pulls.into_iter().partition(|p| p.head.sha == sha);
        if !heads.is_empty() {
            return Ok(heads.into_iter().map(PullRequest::from).collect());
        }
        let mut found = Vec::new();
        let candidates = others
            .into_iter()
            .filter(|p| p.state == "open" || p.merged_at.is_some())
            .take(GITEA_PULLS_SEARCHED);
        for pull in candidates {
            let commits = format!(
                "{}/pulls/{}/commits?limit=50&verification=false&files=false",
                self.repo_path(),
                pull.number
            );
            let reply = self.send(call, &commits, Verb::Get).await?;
            if reply.status == StatusCode::NOT_FOUND {
                continue;
            }
            self.expect_status(call, &reply, &[StatusCode::OK])?;
            let commits: Vec<WireCommit> = self.decode(call, &reply)?;
            if commits.iter().any(|c| c.sha == sha) {
                found.push(pull.into());
            }
        }
        Ok(found)
    }

    /// Where the comments of pull request `pr` are (GitHub, Gitea: its issue's; GitLab: the merge
    /// request's notes).
    fn comments_path(&self, pr: u64) -> String {
        match self.kind {
            ForgeKind::GitHub | ForgeKind::Gitea => {
                format!("{}/issues/{pr}/comments", self.repo_path())
            }
            ForgeKind::GitLab => format!("{}/merge_requests/{pr}/notes", self.repo_path()),
        }
    }

    /// Bosun's comment on pull request `pr`: the first whose body starts with the marker, searching
    /// every page of the comments (Gitea answers them all at once).
    ///
    /// # Errors
    /// Any [`ForgeError`] of a call.
    pub async fn find_pr_comment(&self, pr: u64) -> Result<Option<Comment>, ForgeError> {
        self.find_comment_marked(pr, COMMENT_MARKER).await
    }

    /// The first comment on pull request `pr` whose body starts with `marker`, searching every page.
    ///
    /// # Errors
    /// Any [`ForgeError`] of a call.
    pub async fn find_comment_marked(
        &self,
        pr: u64,
        marker: &str,
    ) -> Result<Option<Comment>, ForgeError> {
        self.find_comment(pr, |body| body.starts_with(marker)).await
    }

    /// The first comment on pull request `pr` whose body satisfies `wanted`, searching every page.
    ///
    /// # Errors
    /// Any [`ForgeError`] of a call.
    pub async fn find_comment(
        &self,
        pr: u64,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Option<Comment>, ForgeError> {
        let call = Call::ListComments;
        for page in 1..=MAX_COMMENT_PAGES {
            let path = match self.kind {
                ForgeKind::GitHub => {
                    format!("{}?per_page=100&page={page}", self.comments_path(pr))
                }
                ForgeKind::Gitea => self.comments_path(pr),
                ForgeKind::GitLab => format!(
                    "{}?per_page=100&page={page}&sort=asc&order_by=created_at",
                    self.comments_path(pr)
                ),
            };
            let reply = self.send(call, &path, Verb::Get).await?;
            self.expect_status(call, &reply, &[StatusCode::OK])?;
            let comments: Vec<WireComment> = self.decode(call, &reply)?;
            let empty = comments.is_empty();
            if let Some(c) = comments
                .into_iter()
                .find(|c| c.body.as_deref().is_some_and(&wanted))
            {
                return Ok(Some(c.into()));
            }
            if empty || self.kind == ForgeKind::Gitea || !has_next_page(&reply.headers) {
                break;
            }
        }
        Ok(None)
    }

    /// Posts a new comment on pull request `pr`.
    ///
    /// # Errors
    /// Any [`ForgeError`] of a call.
    pub async fn create_pr_comment(&self, pr: u64, body: &str) -> Result<Comment, ForgeError> {
        let call = Call::CreateComment;
        let path = self.comments_path(pr);
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

    /// Replaces the body of comment `id` on pull request `pr` (GitHub, Gitea: PATCH
    /// /repos/{o}/{r}/issues/comments/{id}; GitLab: PUT /projects/{id}/merge_requests/{pr}/notes/{id}).
    ///
    /// # Errors
    /// Any [`ForgeError`] of a call; `Rejected` with status 404 when the comment was deleted.
    pub async fn update_pr_comment(
        &self,
        pr: u64,
        id: u64,
        body: &str,
    ) -> Result<Comment, ForgeError> {
        let call = Call::UpdateComment;
        let request = serde_json::json!({ "body": body });
        let reply = match self.kind {
            ForgeKind::GitHub | ForgeKind::Gitea => {
                let path = format!("{}/issues/comments/{id}", self.repo_path());
                self.send(call, &path, Verb::Patch(&request)).await?
            }
            ForgeKind::GitLab => {
                let path = format!("{}/{id}", self.comments_path(pr));
                self.send(call, &path, Verb::Put(&request)).await?
            }
        };
        self.expect_status(call, &reply, &[StatusCode::OK])?;
        Ok(self.decode::<WireComment>(call, &reply)?.into())
    }

    /// Makes Bosun's comment on `pr` say `body`: edits the comment found by its marker, or posts it
    /// when there is none, so that a restarted Bosun never adds a second one. No write when the
    /// comment already says `body`.
    ///
    /// # Errors
    /// Any [`ForgeError`] of a call.
    pub async fn upsert_pr_comment(&self, pr: u64, body: &str) -> Result<Comment, ForgeError> {
        match self.find_pr_comment(pr).await? {
            Some(c) if c.body == body => Ok(c),
            Some(c) => self.update_pr_comment(pr, c.id, body).await,
            None => self.create_pr_comment(pr, body).await,
        }
    }

    /// Whether `user` may write to the repository (push, and so promote what it rolls out). GitHub,
    /// Gitea: GET /repos/{o}/{r}/collaborators/{user}/permission, `permission` admin or write (GitHub
    /// folds maintain into write; Gitea also says owner); GitLab: GET /projects/{id}/members/all/{user
    /// id}, `access_level` at least 30 (Developer). A user the forge does not know as a collaborator
    /// or member (404) may not.
    ///
    /// # Errors
    /// Any [`ForgeError`] of a call.
    pub async fn can_write(&self, user: &Commenter) -> Result<bool, ForgeError> {
        let call = Call::ReadPermission;
        let path = match (self.kind, user.id) {
            (ForgeKind::GitHub | ForgeKind::Gitea, _) => format!(
                "{}/collaborators/{}/permission",
                self.repo_path(),
                path_escape(&user.login)
            ),
            (ForgeKind::GitLab, Some(id)) => format!("{}/members/all/{id}", self.repo_path()),
            // GitLab's note hook always names the user's id; without it, nobody is trusted.
            (ForgeKind::GitLab, None) => return Ok(false),
        };
        let reply = self.send(call, &path, Verb::Get).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(false);
        }
        self.expect_status(call, &reply, &[StatusCode::OK])?;
        let wire: WirePermission = self.decode(call, &reply)?;
        Ok(match self.kind {
            ForgeKind::GitHub | ForgeKind::Gitea => matches!(
                wire.permission.as_deref(),
                Some("admin" | "owner" | "maintain" | "write")
            ),
            ForgeKind::GitLab => wire.access_level.unwrap_or(0) >= GITLAB_DEVELOPER,
        })
    }

    /// Marks comment `id` on pull request `pr` with a thumbs up: it was read and acted on (GitHub,
    /// Gitea: POST /repos/{o}/{r}/issues/comments/{id}/reactions `{"content": "+1"}`; GitLab: POST
    /// /projects/{id}/merge_requests/{pr}/notes/{id}/award_emoji `{"name": "thumbsup"}`). A reaction
    /// already there (GitHub's and Gitea's 200) is taken as done.
    ///
    /// # Errors
    /// Any [`ForgeError`] of a call.
    pub async fn react_to_comment(&self, pr: u64, id: u64) -> Result<(), ForgeError> {
        let call = Call::AddReaction;
        let (path, body) = match self.kind {
            ForgeKind::GitHub | ForgeKind::Gitea => (
                format!("{}/issues/comments/{id}/reactions", self.repo_path()),
                serde_json::json!({ "content": "+1" }),
            ),
            ForgeKind::GitLab => (
                format!("{}/{id}/award_emoji", self.comments_path(pr)),
                serde_json::json!({ "name": "thumbsup" }),
            ),
        };
        let reply = self.send(call, &path, Verb::Post(&body)).await?;
        self.expect_status(call, &reply, &[StatusCode::CREATED, StatusCode::OK])
    }

    /// Opens a pull request from branch `head` into `base` (GitHub, Gitea: POST /repos/{o}/{r}/pulls;
    /// GitLab: a merge request, POST /projects/{id}/merge_requests). When one is already open for that
    /// head and base (GitHub 422 "already exists", Gitea and GitLab 409), returns that one.
    ///
    /// # Errors
    /// Any [`ForgeError`] of a call.
    pub async fn open_pull_request(
        &self,
        head: &str,
        base: &str,
        title: &str,
        body: &str,
    ) -> Result<PullRequest, ForgeError> {
        let call = Call::OpenPullRequest;
        let (path, request) = match self.kind {
            ForgeKind::GitHub | ForgeKind::Gitea => (
                format!("{}/pulls", self.repo_path()),
                serde_json::json!({ "title": title, "head": head, "base": base, "body": body }),
            ),
            ForgeKind::GitLab => (
                format!("{}/merge_requests", self.repo_path()),
                serde_json::json!({
                    "title": title,
                    "source_branch": head,
                    "target_branch": base,
                    "description": body,
                }),
            ),
        };
        let reply = self.send(call, &path, Verb::Post(&request)).await?;
        let exists = match self.kind {
            ForgeKind::GitHub => {
                reply.status == StatusCode::UNPROCESSABLE_ENTITY && already_exists(&reply.body)
            }
            ForgeKind::Gitea | ForgeKind::GitLab => reply.status == StatusCode::CONFLICT,
        };
        if exists {
            return match self.find_open_pull_request(head, base).await? {
                Some(pr) => Ok(pr),
                None => Err(self.rejected(call, &reply)),
            };
        }
        self.expect_status(call, &reply, &[StatusCode::CREATED])?;
        Ok(match self.kind {
            ForgeKind::GitLab => self.decode::<WireMergeRequest>(call, &reply)?.into(),
            _ => self.decode::<WirePull>(call, &reply)?.into(),
        })
    }

    /// The open pull request from `head` into `base`, if any (GitHub: GET
    /// /repos/{o}/{r}/pulls?head=&base=; Gitea: GET /repos/{o}/{r}/pulls/{base}/{head}; GitLab: GET
    /// /projects/{id}/merge_requests?state=opened&source_branch=&target_branch=).
    ///
    /// # Errors
    /// Any [`ForgeError`] of a call.
    pub async fn find_open_pull_request(
        &self,
        head: &str,
        base: &str,
    ) -> Result<Option<PullRequest>, ForgeError> {
        let call = Call::FindPullRequest;
        match self.kind {
            ForgeKind::GitHub => {
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
            ForgeKind::Gitea => {
                let path = format!(
                    "{}/pulls/{}/{}",
                    self.repo_path(),
                    path_escape(base),
                    path_escape(head)
                );
                let reply = self.send(call, &path, Verb::Get).await?;
                if reply.status == StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                self.expect_status(call, &reply, &[StatusCode::OK])?;
                let pr: PullRequest = self.decode::<WirePull>(call, &reply)?.into();
                Ok((pr.state == PrState::Open).then_some(pr))
            }
            ForgeKind::GitLab => {
                let path = format!(
                    "{}/merge_requests?state=opened&source_branch={}&target_branch={}",
                    self.repo_path(),
                    query_escape(head),
                    query_escape(base)
                );
                let reply = self.send(call, &path, Verb::Get).await?;
                self.expect_status(call, &reply, &[StatusCode::OK])?;
                let mrs: Vec<WireMergeRequest> = self.decode(call, &reply)?;
                Ok(mrs.into_iter().next().map(PullRequest::from))
            }
        }
    }

    /// The open pull requests into `base`, newest first, at most `limit` (GitHub: GET
    /// /repos/{o}/{r}/pulls?state=open&base=; Gitea: the same, filtered here by base; GitLab: GET
    /// /projects/{id}/merge_requests?state=opened&target_branch=).
    ///
    /// # Errors
    /// Any [`ForgeError`] of a call.
    pub async fn open_pull_requests(
        &self,
        base: &str,
        limit: usize,
    ) -> Result<Vec<PullRequest>, ForgeError> {
        let call = Call::ListOpenPullRequests;
        let per_page = limit.clamp(1, 100);
        let path = match self.kind {
            ForgeKind::GitHub => format!(
                "{}/pulls?state=open&base={}&sort=updated&direction=desc&per_page={per_page}",
                self.repo_path(),
                query_escape(base)
            ),
            ForgeKind::Gitea => format!(
                "{}/pulls?state=open&sort=recentupdate&limit={}",
                self.repo_path(),
                per_page.min(50)
            ),
            ForgeKind::GitLab => format!(
                "{}/merge_requests?state=opened&target_branch={}&order_by=updated_at&sort=desc&per_page={per_page}",
                self.repo_path(),
                query_escape(base)
            ),
        };
        let reply = self.send(call, &path, Verb::Get).await?;
        self.expect_status(call, &reply, &[StatusCode::OK])?;
        let prs: Vec<PullRequest> = match self.kind {
            ForgeKind::GitLab => self
                .decode::<Vec<WireMergeRequest>>(call, &reply)?
                .into_iter()
                .map(PullRequest::from)
                .collect(),
            _ => self
                .decode::<Vec<WirePull>>(call, &reply)?
                .into_iter()
                .map(PullRequest::from)
                .collect(),
        };
        Ok(prs
            .into_iter()
            .filter(|p| p.state == PrState::Open && p.base_ref == base)
            .take(limit)
            .collect())
    }

    /// The ref under which the forge serves pull request `pr`'s head to git: `refs/pull/N/head` on
    /// GitHub and Gitea, `refs/merge-requests/N/head` on GitLab.
    pub fn head_ref_of(&self, pr: u64) -> String {
        match self.kind {
            ForgeKind::GitHub | ForgeKind::Gitea => format!("refs/pull/{pr}/head"),
            ForgeKind::GitLab => format!("refs/merge-requests/{pr}/head"),
        }
    }

    fn repo_path(&self) -> String {
        match self.kind {
            ForgeKind::GitHub | ForgeKind::Gitea => {
                format!("/repos/{}/{}", self.repo.owner, self.repo.name)
            }
            // The project by its URL-encoded path: `group%2Fsub%2Fproject`.
            ForgeKind::GitLab => format!(
                "/projects/{}",
                path_escape(&format!("{}/{}", self.repo.owner, self.repo.name))
            ),
        }
    }

    async fn send(&self, call: Call, path: &str, verb: Verb<'_>) -> Result<Reply, ForgeError> {
        let request = async {
            let response = match verb {
                Verb::Get => self.octo._get(path).await,
                Verb::Post(body) => self.octo._post(path, Some(body)).await,
                Verb::Patch(body) => self.octo._patch(path, Some(body)).await,
                Verb::Put(body) => self.octo._put(path, Some(body)).await,
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
        let reply =
            match self.timeout {
                Some(limit) => tokio::time::timeout(limit, request).await.map_err(|_| {
                    ForgeError::TimedOut {
                        forge: self.kind,
                        call,
                        timeout: limit,
                    }
                })??,
                None => request.await?,
            };
        if let Some(wait) = rate_limit_wait(reply.status, &reply.headers, &reply.body) {
            return Err(ForgeError::RateLimited {
                forge: self.kind,
                call,
                status: reply.status.as_u16(),
                wait,
                message: self.message(&reply),
            });
        }
        if reply.status.is_server_error() {
            return Err(ForgeError::Server {
                forge: self.kind,
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
    ) -> Result<(), ForgeError> {
        if ok.contains(&reply.status) {
            Ok(())
        } else if reply.status.is_success() {
            Err(ForgeError::BadResponse {
                forge: self.kind,
                call,
                status: reply.status.as_u16(),
                reason: format!("expected HTTP {}", ok[0].as_u16()),
            })
        } else {
            Err(self.rejected(call, reply))
        }
    }

    fn rejected(&self, call: Call, reply: &Reply) -> ForgeError {
        let hint = match reply.status {
            StatusCode::UNAUTHORIZED => {
                "; the token was refused: check --forge-token-file (expired or revoked?)"
            }
            StatusCode::FORBIDDEN => match self.kind {
                ForgeKind::GitLab => {
                    "; the token may not do this: it needs the api scope and the Developer role on the project"
                }
                _ => {
                    "; the token may not do this: it needs write access to commit statuses, issues and pull requests of the repository"
                }
            },
            StatusCode::NOT_FOUND => {
                "; check --forge-repo and that the token can see the repository"
            }
            StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => {
                "; the forge refused the request's content"
            }
            _ => "",
        };
        ForgeError::Rejected {
            forge: self.kind,
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
    ) -> Result<T, ForgeError> {
        serde_json::from_str(&reply.body).map_err(|e| ForgeError::BadResponse {
            forge: self.kind,
            call,
            status: reply.status.as_u16(),
            reason: self.redact(&e.to_string()),
        })
    }

    /// The forge's `message` (and the first validation error), redacted and bounded.
    fn message(&self, reply: &Reply) -> String {
        let text = match serde_json::from_str::<WireError>(&reply.body) {
            Ok(e) => {
                let mut m = match e.message {
                    Some(serde_json::Value::String(m)) => m,
                    Some(other) => other.to_string(),
                    None => e.error.unwrap_or_default(),
                };
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

    fn unreachable(&self, call: Call, e: &octocrab::Error) -> ForgeError {
        // octocrab's Display says "Hyper error" and the like; the source chain says what happened.
        let mut reason = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            reason.push_str(": ");
            reason.push_str(&s.to_string());
            source = s.source();
        }
        ForgeError::Unreachable {
            forge: self.kind,
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

/// A path segment escaped: anything but unreserved characters (so `/` too: GitLab's project ids).
fn path_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
    fn a_gitlab_project_may_sit_in_nested_groups_a_github_repository_may_not() {
        let p = RepoRef::parse_for(ForgeKind::GitLab, "git@gitlab.com:platform/web/apps.git")
            .expect("a nested GitLab project");
        assert_eq!(
            (p.owner.as_str(), p.name.as_str()),
            ("platform/web", "apps")
        );
        let e = RepoRef::parse_for(ForgeKind::Gitea, "https://gitea.local/platform/web/apps")
            .expect_err("no nested groups on Gitea")
            .to_string();
        assert!(
            e.contains("Gitea") && e.contains("expected owner/name"),
            "{e}"
        );
        let e = Forge::new(ForgeConfig::of(
            ForgeKind::GitHub,
            DEFAULT_API_URL,
            ForgeToken::from("t"),
            p,
        ))
        .expect_err("nested on GitHub")
        .to_string();
        assert!(e.contains("only GitLab has nested groups"), "{e}");
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
                    "forge token file {}: {why}; --forge-token-file must name a file holding the token",
                    path.display()
                )
            );
        }
    }

    #[test]
    fn a_token_is_never_printed() {
        let t = ForgeToken::from("ghp_secret");
        assert!(!format!("{t:?}").contains("ghp_secret"), "{t:?}");
    }

    fn pr(number: u64, state: PrState, merged: bool, base: &str) -> PullRequest {
        PullRequest {
            number,
            state,
            merged,
            base_ref: base.into(),
            head_ref: "feature".into(),
            head_sha: String::new(),
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
    fn a_combined_status_without_statuses_reads_as_none() {
        // Gitea 1.27 answers a commit without statuses with `"statuses": null`.
        for body in [
            r#"{"state":"pending","sha":"abc","total_count":0,"statuses":null}"#,
            r#"{"state":"pending","sha":"abc","total_count":0}"#,
        ] {
            let combined: WireCombinedStatus = serde_json::from_str(body).expect(body);
            assert_eq!(combined.statuses.unwrap_or_default(), [], "{body}");
        }
    }

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(
            query_escape("team:bosun/rollback-web v2&x"),
            "team:bosun/rollback-web%20v2%26x"
        );
    }
}
