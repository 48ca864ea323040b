//! Forge: the report stage's edge to the code host (flow: fetch → validate → observe → plan → apply →
//! **report**). `bosun_core::report` renders commit statuses and the pull request comment from a typed
//! change summary; this module delivers them to the forge (GitHub, Gitea or GitLab: [`client`]) without
//! ever holding up reconciliation.
//!
//! The [`Reporter`] is a background task fed by [`Reporter::submit`], which never blocks and never
//! fails. Updates are coalesced by key — a commit status by (commit, context), the comment by pull
//! request — so only the latest body is sent; a body equal to what was last sent is not sent again.
//! Writes (POST/PATCH) go through a token bucket (GitHub allows about 80 content-creating requests a
//! minute); a rate-limit answer (`Retry-After`, or `x-ratelimit-remaining: 0` with
//! `x-ratelimit-reset`) pauses every request for as long as GitHub asked; server errors, timeouts and
//! refused connections are retried with jittered exponential backoff. Memory is bounded: at most
//! `max_pending` keys wait (the oldest is dropped beyond), and the caches of what was sent, of comment
//! ids and of the pull request of each commit are bounded too.

pub mod client;

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backoff::Backoff;
use bosun_core::report::{ChangeSummary, CommitStatus, StatusState, commit_statuses, pr_comment};
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

pub use client::{
    Call, Comment, Commenter, DEFAULT_API_URL, Forge, ForgeConfig, ForgeError, ForgeKind,
    ForgeToken, PrState, PullRequest, RepoRef, pick_pull_request, token_from_file,
};

/// Entries kept in each cache of the worker (sent bodies, comment ids, pull requests of commits).
const CACHE_ENTRIES: usize = 4096;

/// One thing to tell the forge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// Set a commit status on the source commit `sha`.
    Status {
        sha: String,
        status: CommitStatus,
        target_url: Option<String>,
    },
    /// Make Bosun's comment on the pull request that brought commit `sha` say `body`. Nothing is
    /// written when the forge knows no pull request for the commit.
    Comment { sha: String, body: String },
    /// Make Bosun's plan preview on open pull request `pr` say `body` (a comment of its own, found by
    /// [`bosun_core::preview::PREVIEW_MARKER`]).
    Preview { pr: u64, body: String },
}

/// Which of Bosun's comments on a pull request: each is found again by its marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Thread {
    /// What the merged commit did to the cluster ([`bosun_core::report::COMMENT_MARKER`]).
    Rollout,
    /// What merging it would do ([`bosun_core::preview::PREVIEW_MARKER`]).
    Preview,
}

impl Thread {
    pub fn marker(self) -> &'static str {
        match self {
            Thread::Rollout => bosun_core::report::COMMENT_MARKER,
            Thread::Preview => bosun_core::preview::PREVIEW_MARKER,
        }
    }
}

/// How the [`Reporter`] paces itself.
#[derive(Clone, Debug)]
pub struct ReporterConfig {
    /// Content-creating requests (POST, PATCH) allowed per minute. GitHub allows about 80.
    pub writes_per_minute: u32,
    /// How many writes may go at once after a quiet spell.
    pub burst: u32,
    /// Keys waiting to be sent at most; beyond, the oldest is dropped.
    pub max_pending: usize,
    /// The first wait after a server error or timeout; it doubles per failure in a row.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// The watched branch: of the pull requests of a commit, the one merged into it is commented on.
    pub branch: Option<String>,
    /// The commit status link. `{namespace}`, `{app}` and `{sha}` are replaced.
    pub target_url: Option<String>,
    /// How long "this commit has no pull request" is believed (GitHub indexes merges with a delay).
    pub no_pull_request_ttl: Duration,
    /// After a quiet spell, how long to wait for more updates before sending: the transitions of one
    /// reconcile pass go out as one write per key.
    pub settle: Duration,
}

impl Default for ReporterConfig {
    fn default() -> Self {
        ReporterConfig {
            writes_per_minute: 80,
            burst: 10,
            max_pending: 1000,
            backoff_base: Duration::from_secs(1),
            // A minute, not five: once GitHub is back, the pull request catches up within two.
            backoff_max: Duration::from_secs(60),
            branch: None,
            target_url: None,
            no_pull_request_ttl: Duration::from_secs(300),
            settle: Duration::from_secs(1),
        }
    }
}

/// What the Reporter did, for metrics and tests. Times are tokio's (paused in tests).
#[derive(Clone, Debug)]
pub enum ReporterEvent {
    /// A call is about to be made.
    Attempt { call: Call, at: Instant },
    /// A write succeeded.
    Sent { call: Call, at: Instant },
    /// Nothing to write: GitHub already shows this.
    Unchanged { key: String },
    /// The commit has no pull request: statuses only.
    NoPullRequest { sha: String },
    /// A call failed; `retry_in` is `None` when the update was dropped.
    Failed {
        call: Call,
        at: Instant,
        error: String,
        retry_in: Option<Duration>,
    },
    /// An update was dropped without being sent.
    Dropped { key: String, reason: String },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Status { sha: String, context: String },
    CommentOfCommit { sha: String },
    CommentOfPr { pr: u64, thread: Thread },
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Key::Status { sha, context } => write!(f, "status {context} of {sha}"),
            Key::CommentOfCommit { sha } => write!(f, "comment for commit {sha}"),
            Key::CommentOfPr {
                pr,
                thread: Thread::Rollout,
            } => write!(f, "comment on pull request #{pr}"),
            Key::CommentOfPr {
                pr,
                thread: Thread::Preview,
            } => write!(f, "plan preview on pull request #{pr}"),
        }
    }
}

/// A queued update; its [`Key`] says what it replaces.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Work {
    Status {
        sha: String,
        context: String,
        state: StatusState,
        description: String,
        target_url: Option<String>,
    },
    CommentOfCommit {
        sha: String,
        body: String,
    },
    CommentOfPr {
        pr: u64,
        thread: Thread,
        body: String,
    },
}

impl Work {
    fn key(&self) -> Key {
        match self {
            Work::Status { sha, context, .. } => Key::Status {
                sha: sha.clone(),
                context: context.clone(),
            },
            Work::CommentOfCommit { sha, .. } => Key::CommentOfCommit { sha: sha.clone() },
            Work::CommentOfPr { pr, thread, .. } => Key::CommentOfPr {
                pr: *pr,
                thread: *thread,
            },
        }
    }
}

/// What a commit status said when it was last sent.
type SentStatus = (StatusState, String, Option<String>);

struct Queue {
    seq: u64,
    items: HashMap<Key, (u64, Work)>,
}

struct Shared {
    queue: Mutex<Queue>,
    notify: Notify,
    idle: watch::Sender<bool>,
    events: broadcast::Sender<ReporterEvent>,
    max_pending: usize,
}

impl Shared {
    fn emit(&self, e: ReporterEvent) {
        let _ = self.events.send(e);
    }

    /// Queues `work` under `key` with order `seq` (a fresh one when `None`), replacing what waited
    /// under the key. With `only_if_absent`, a newer entry under the key wins.
    fn enqueue(&self, work: Work, seq: Option<u64>, only_if_absent: bool) {
        let key = work.key();
        let dropped = {
            let mut q = self.queue.lock().expect("the queue lock is never poisoned");
            if only_if_absent && q.items.contains_key(&key) {
                return;
            }
            let seq = seq.unwrap_or_else(|| {
                q.seq += 1;
                q.seq
            });
            let mut dropped = None;
            if !q.items.contains_key(&key) && q.items.len() >= self.max_pending {
                let oldest = q
                    .items
                    .iter()
                    .min_by_key(|(_, (s, _))| *s)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    q.items.remove(&k);
                    dropped = Some(k);
                }
            }
            q.items.insert(key, (seq, work));
            self.idle.send_replace(false);
            dropped
        };
        if let Some(k) = dropped {
            tracing::warn!(update = %k, "forge updates pile up (the forge slow or failing); dropped the oldest");
            self.emit(ReporterEvent::Dropped {
                key: k.to_string(),
                reason: "too many updates waiting".into(),
            });
        }
        self.notify.notify_one();
    }

    /// Takes the oldest waiting update, or marks the Reporter idle when there is none.
    fn take(&self) -> Option<(Key, u64, Work)> {
        let mut q = self.queue.lock().expect("the queue lock is never poisoned");
        let key = q
            .items
            .iter()
            .min_by_key(|(_, (s, _))| *s)
            .map(|(k, _)| k.clone());
        match key {
            Some(k) => {
                let (seq, work) = q.items.remove(&k).expect("the key was just found");
                Some((k, seq, work))
            }
            None => {
                self.idle.send_replace(true);
                None
            }
        }
    }

    fn contains(&self, key: &Key) -> bool {
        self.queue
            .lock()
            .expect("the queue lock is never poisoned")
            .items
            .contains_key(key)
    }
}

struct Inner {
    shared: Arc<Shared>,
    task: AbortHandle,
    target_url: Option<String>,
    /// How the forge names a pull request, for what is rendered for it.
    words: bosun_core::report::Words,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Delivers commit statuses and the pull request comment to the forge in the background. Cloning shares
/// the task; it stops when the last clone is dropped.
#[derive(Clone)]
pub struct Reporter {
    inner: Arc<Inner>,
}

impl Reporter {
    /// Starts the background task. Needs a tokio runtime.
    pub fn spawn(forge: Forge, config: ReporterConfig) -> Reporter {
        let (idle, _) = watch::channel(true);
        let (events, _) = broadcast::channel(1024);
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                seq: 0,
                items: HashMap::new(),
            }),
            notify: Notify::new(),
            idle,
            events,
            max_pending: config.max_pending.max(1),
        });
        let target_url = config.target_url.clone();
        let words = forge.words();
        let worker = Worker {
            bucket: TokenBucket::new(config.writes_per_minute, config.burst, Instant::now()),
            forge,
            shared: shared.clone(),
            not_before: None,
            backoff: Backoff::new(config.backoff_base, config.backoff_max),
            sent_status: Bounded::new(CACHE_ENTRIES),
            statuses_read: Bounded::new(CACHE_ENTRIES),
            sent_comment: Bounded::new(CACHE_ENTRIES),
            comment_id: Bounded::new(CACHE_ENTRIES),
            pr_of: Bounded::new(CACHE_ENTRIES),
            config,
        };
        let task = tokio::spawn(worker.run()).abort_handle();
        Reporter {
            inner: Arc::new(Inner {
                shared,
                task,
                target_url,
                words,
            }),
        }
    }

    /// Queues an update and returns at once: never blocks, never fails.
    pub fn submit(&self, update: Update) {
        let shared = &self.inner.shared;
        match update {
            Update::Status {
                sha,
                status,
                target_url,
            } => shared.enqueue(
                Work::Status {
                    sha,
                    context: status.context,
                    state: status.state,
                    description: status.description,
                    target_url,
                },
                None,
                false,
            ),
            Update::Comment { sha, body } => {
                shared.enqueue(Work::CommentOfCommit { sha, body }, None, false)
            }
            Update::Preview { pr, body } => shared.enqueue(
                Work::CommentOfPr {
                    pr,
                    thread: Thread::Preview,
                    body,
                },
                None,
                false,
            ),
        }
    }

    /// Queues the commit status of every app of `summary` and the pull request comment rendered
    /// from it.
    pub fn submit_summary(&self, summary: &ChangeSummary) {
        let summary = &ChangeSummary {
            words: self.inner.words,
            ..summary.clone()
        };
        for (app, status) in summary.apps.iter().zip(commit_statuses(summary)) {
            let target_url = self.inner.target_url.as_ref().map(|t| {
                t.replace("{namespace}", &app.namespace)
                    .replace("{app}", &app.name)
                    .replace("{sha}", &summary.commit)
            });
            self.submit(Update::Status {
                sha: summary.commit.clone(),
                status,
                target_url,
            });
        }
        self.submit(Update::Comment {
            sha: summary.commit.clone(),
            body: pr_comment(summary),
        });
    }

    /// What the Reporter does from now on.
    pub fn events(&self) -> broadcast::Receiver<ReporterEvent> {
        self.inner.shared.events.subscribe()
    }

    /// Waits until every update submitted so far was sent, found unchanged or given up.
    pub async fn idle(&self) {
        let mut rx = self.inner.shared.idle.subscribe();
        let _ = rx.wait_for(|idle| *idle).await;
    }
}

struct Worker {
    forge: Forge,
    config: ReporterConfig,
    shared: Arc<Shared>,
    bucket: TokenBucket,
    /// No request before this (a rate limit or a backoff).
    not_before: Option<Instant>,
    /// The waits after transient failures in a row.
    backoff: Backoff,
    sent_status: Bounded<(String, String), SentStatus>,
    /// Commits whose statuses were read from GitHub (after a restart or a leader change, what GitHub
    /// already shows is not sent again).
    statuses_read: Bounded<String, ()>,
    sent_comment: Bounded<(u64, Thread), String>,
    comment_id: Bounded<(u64, Thread), u64>,
    pr_of: Bounded<String, (Option<u64>, Instant)>,
}

impl Worker {
    async fn run(mut self) {
        loop {
            // Wait before taking an item, so that updates arriving meanwhile coalesce with it.
            if let Some(t) = self.not_before.take() {
                tokio::time::sleep_until(t).await;
            }
            let ready = self.bucket.ready_at(Instant::now());
            if ready > Instant::now() {
                tokio::time::sleep_until(ready).await;
            }
            let Some((key, seq, work)) = self.shared.take() else {
                self.shared.notify.notified().await;
                tokio::time::sleep(self.config.settle).await;
                continue;
            };
            match self.process(&key, seq, &work).await {
                Ok(()) => self.backoff.reset(),
                Err((call, e)) => self.failed(call, e, key, seq, work),
            }
        }
    }

    fn failed(&mut self, call: Call, e: ForgeError, key: Key, seq: u64, work: Work) {
        let now = Instant::now();
        let retry_in = if let Some(wait) = e.retry_after() {
            Some(wait)
        } else if e.is_transient() {
            Some(self.backoff.next_wait())
        } else {
            None
        };
        self.shared.emit(ReporterEvent::Failed {
            call,
            at: now,
            error: e.to_string(),
            retry_in,
        });
        match retry_in {
            Some(wait) => {
                tracing::info!(update = %key, error = %e, retry_in_ms = wait.as_millis() as u64, "forge update delayed");
                self.not_before = Some(now + wait);
                // A newer update under the same key replaces this one.
                self.shared.enqueue(work, Some(seq), true);
            }
            None => {
                tracing::warn!(update = %key, error = %e, "forge update dropped");
                self.shared.emit(ReporterEvent::Dropped {
                    key: key.to_string(),
                    reason: e.to_string(),
                });
            }
        }
    }

    async fn process(
        &mut self,
        key: &Key,
        seq: u64,
        work: &Work,
    ) -> Result<(), (Call, ForgeError)> {
        match work {
            Work::Status {
                sha,
                context,
                state,
                description,
                target_url,
            } => {
                let cache_key = (sha.clone(), context.clone());
                let says = (*state, description.clone(), target_url.clone());
                if self.sent_status.get(&cache_key).is_none()
                    && self.statuses_read.get(sha).is_none()
                {
                    self.read_statuses(sha).await?;
                }
                if self.sent_status.get(&cache_key) == Some(&says) {
                    self.shared.emit(ReporterEvent::Unchanged {
                        key: key.to_string(),
                    });
                    return Ok(());
                }
                let call = Call::SetCommitStatus;
                self.write(call);
                self.forge
                    .set_commit_status(sha, context, *state, description, target_url.as_deref())
                    .await
                    .map_err(|e| (call, e))?;
                self.sent(call);
                self.sent_status.insert(cache_key, says);
                Ok(())
            }
            Work::CommentOfCommit { sha, body } => {
                let Some(pr) = self.pull_request_of(sha).await? else {
                    self.shared
                        .emit(ReporterEvent::NoPullRequest { sha: sha.clone() });
                    return Ok(());
                };
                // A newer update for the same commit supersedes this one.
                if !self.shared.contains(key) {
                    let body = body.clone();
                    self.shared.enqueue(
                        Work::CommentOfPr {
                            pr,
                            thread: Thread::Rollout,
                            body,
                        },
                        Some(seq),
                        false,
                    );
                }
                Ok(())
            }
            Work::CommentOfPr { pr, thread, body } => self.comment(*pr, *thread, body).await,
        }
    }

    /// Seeds the sent statuses of `sha` with what GitHub shows (as it shows it: the description cut
    /// to GitHub's limit).
    async fn read_statuses(&mut self, sha: &str) -> Result<(), (Call, ForgeError)> {
        let call = Call::ReadCommitStatuses;
        self.attempt(call);
        let shown = self
            .forge
            .commit_statuses(sha)
            .await
            .map_err(|e| (call, e))?;
        self.statuses_read.insert(sha.to_string(), ());
        for s in shown {
            let Some(state) = StatusState::parse(&s.state) else {
                continue;
            };
            self.sent_status.insert(
                (sha.to_string(), s.context),
                (state, s.description.unwrap_or_default(), s.target_url),
            );
        }
        Ok(())
    }

    async fn pull_request_of(&mut self, sha: &str) -> Result<Option<u64>, (Call, ForgeError)> {
        let now = Instant::now();
        if let Some((pr, when)) = self.pr_of.get(&sha.to_string())
            && (pr.is_some() || now < *when + self.config.no_pull_request_ttl)
        {
            return Ok(*pr);
        }
        let call = Call::ListPullRequestsOfCommit;
        self.attempt(call);
        let prs = self
            .forge
            .pull_requests_for_commit(sha)
            .await
            .map_err(|e| (call, e))?;
        let pr = pick_pull_request(&prs, self.config.branch.as_deref()).map(|p| p.number);
        self.pr_of.insert(sha.to_string(), (pr, now));
        Ok(pr)
    }

    async fn comment(
        &mut self,
        pr: u64,
        thread: Thread,
        body: &str,
    ) -> Result<(), (Call, ForgeError)> {
        if self.sent_comment.get(&(pr, thread)).map(String::as_str) == Some(body) {
            self.shared.emit(ReporterEvent::Unchanged {
                key: Key::CommentOfPr { pr, thread }.to_string(),
            });
            return Ok(());
        }
        let id = match self.comment_id.get(&(pr, thread)) {
            Some(id) => Some(*id),
            None => {
                let call = Call::ListComments;
                self.attempt(call);
                match self
                    .forge
                    .find_comment_marked(pr, thread.marker())
                    .await
                    .map_err(|e| (call, e))?
                {
                    Some(c) if c.body == body => {
                        self.comment_id.insert((pr, thread), c.id);
                        self.sent_comment.insert((pr, thread), c.body);
                        self.shared.emit(ReporterEvent::Unchanged {
                            key: Key::CommentOfPr { pr, thread }.to_string(),
                        });
                        return Ok(());
                    }
                    Some(c) => Some(c.id),
                    None => None,
                }
            }
        };
        if let Some(id) = id {
            let call = Call::UpdateComment;
            self.write(call);
            match self.forge.update_pr_comment(pr, id, body).await {
                Ok(c) => {
                    self.commented(call, (pr, thread), c.id, body);
                    return Ok(());
                }
                // Someone deleted the comment: post it anew below.
                Err(e) if e.status() == Some(404) => {
                    self.comment_id.remove(&(pr, thread));
                    self.sent_comment.remove(&(pr, thread));
                }
                Err(e) => return Err((call, e)),
            }
        }
        let call = Call::CreateComment;
        self.write(call);
        let c = self
            .forge
            .create_pr_comment(pr, body)
            .await
            .map_err(|e| (call, e))?;
        self.commented(call, (pr, thread), c.id, body);
        Ok(())
    }

    fn commented(&mut self, call: Call, on: (u64, Thread), id: u64, body: &str) {
        self.sent(call);
        self.comment_id.insert(on, id);
        self.sent_comment.insert(on, body.to_string());
    }

    fn attempt(&self, call: Call) {
        self.shared.emit(ReporterEvent::Attempt {
            call,
            at: Instant::now(),
        });
    }

    /// A content-creating request: takes a token of the bucket (the loop waited for one).
    fn write(&mut self, call: Call) {
        self.bucket.take(Instant::now());
        self.attempt(call);
    }

    fn sent(&self, call: Call) {
        tracing::debug!(call = %call, "forge updated");
        self.shared.emit(ReporterEvent::Sent {
            call,
            at: Instant::now(),
        });
    }
}

/// Writes allowed: `burst` at once, refilled at `per_minute`.
struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(per_minute: u32, burst: u32, now: Instant) -> TokenBucket {
        let capacity = f64::from(burst.max(1));
        TokenBucket {
            capacity,
            per_sec: f64::from(per_minute.max(1)) / 60.0,
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.capacity);
        self.last = now;
    }

    /// When a token is there.
    fn ready_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= 1.0 {
            now
        } else {
            now + Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec)
        }
    }

    fn take(&mut self, now: Instant) {
        self.refill(now);
        // May go below zero when a write follows a read without waiting; the next wait repays it.
        self.tokens -= 1.0;
    }
}

/// A map that forgets its oldest entries beyond `cap`.
struct Bounded<K, V> {
    cap: usize,
    map: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: Clone + Eq + Hash, V> Bounded<K, V> {
    fn new(cap: usize) -> Self {
        Bounded {
            cap,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.map.len() > self.cap {
                match self.order.pop_front() {
                    Some(old) => {
                        self.map.remove(&old);
                    }
                    None => break,
                }
            }
        }
    }

    fn remove(&mut self, k: &K) {
        if self.map.remove(k).is_some() {
            self.order.retain(|o| o != k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn token_bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut b = TokenBucket::new(60, 2, start);
        assert_eq!(b.ready_at(start), start);
        b.take(start);
        assert_eq!(b.ready_at(start), start);
        b.take(start);
        assert_eq!(b.ready_at(start), start + Duration::from_secs(1));
        let later = start + Duration::from_millis(500);
        assert_eq!(b.ready_at(later), start + Duration::from_secs(1));
        let much_later = start + Duration::from_secs(60);
        assert_eq!(b.ready_at(much_later), much_later);
        b.take(much_later);
        b.take(much_later);
        b.take(much_later);
        assert_eq!(b.ready_at(much_later), much_later + Duration::from_secs(2));
    }

    #[test]
    fn bounded_map_forgets_the_oldest() {
        let mut m = Bounded::new(2);
        m.insert(1, "a");
        m.insert(2, "b");
        m.insert(1, "a2");
        m.insert(3, "c");
        assert_eq!(m.get(&1), None);
        assert_eq!(m.get(&2), Some(&"b"));
        assert_eq!(m.get(&3), Some(&"c"));
        m.remove(&2);
        m.insert(4, "d");
        assert_eq!((m.get(&3), m.get(&4)), (Some(&"c"), Some(&"d")));
    }
}
