//! Leader election on a `coordination.k8s.io/v1` Lease, and the gate that keeps a replica without the
//! lease from writing.
//!
//! Several replicas of Bosun may run; only the lease holder writes to the cluster, git and GitHub. The
//! holder renews the Lease every third of its duration with an optimistic-concurrency update (the
//! `resourceVersion` it read), as client-go's leader election does. A standby takes the Lease over when
//! it has seen no renewal for a whole duration, judged by its own monotonic clock (so clock skew between
//! nodes does not matter).
//!
//! The [`Fence`] says until when this replica may write: the start of its last successful renewal plus
//! the lease duration, minus a margin. Every write through the kube client passes the [`WriteGate`]
//! layer, which refuses it once the fence has passed. So a leader frozen past its lease (SIGSTOP, a long
//! GC pause, a partition) cannot write when it wakes up, even before its renew loop notices; the loop
//! then finds the Lease taken and the process exits, to be restarted as a standby. A leader that cannot
//! renew before its fence closes (the API server down, or waiting on etcd, which holds a request up to
//! a minute) gives up at that moment too, and exits: it does not say it leads while it may not write.
//!
//! A standby outlasts an outage: a read of the Lease that fails as a timeout, a lost connection or a
//! server error is tried again at the next interval. Once the API is back it finds the Lease unrenewed
//! for longer than its duration (by its own clock) and takes it, so a leader resumes within a lease
//! duration of the API's return. Only a refusal that needs a human (RBAC, say) makes it exit.
//!
//! The holder also writes where it can be reached (`--advertise-url`) into the Lease's annotation
//! `bosun.dev/leader-url`; a standby reads it, so that a push webhook the Service delivered to a standby
//! is forwarded to the leader instead of waiting for the leader's next poll.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use bosun_core::names::ANNOTATION_LEADER_URL;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tracing::{info, warn};

/// Until when this replica may write, and where the current leader is.
#[derive(Debug)]
pub struct Fence {
    base: Instant,
    /// Milliseconds after `base` until which writes are allowed.
    until_ms: AtomicU64,
    /// Leader election is off: always allowed.
    always: bool,
    leader: AtomicBool,
    /// Another replica's URL while it holds the lease (and it advertised one).
    leader_url: Mutex<Option<String>>,
}

impl Fence {
    /// A fence that never closes: one replica, no leader election.
    pub fn always() -> Arc<Fence> {
        Arc::new(Fence {
            base: Instant::now(),
            until_ms: AtomicU64::new(0),
            always: true,
            leader: AtomicBool::new(true),
            leader_url: Mutex::new(None),
        })
    }

    /// A closed fence, opened by holding the lease.
    pub fn closed() -> Arc<Fence> {
        Arc::new(Fence {
            base: Instant::now(),
            until_ms: AtomicU64::new(0),
            always: false,
            leader: AtomicBool::new(false),
            leader_url: Mutex::new(None),
        })
    }

    /// Whether this replica may write now.
    pub fn may_write(&self) -> bool {
        self.always
            || (self.base.elapsed().as_millis() as u64) < self.until_ms.load(Ordering::SeqCst)
    }

    /// Whether this replica holds (or last held) the lease.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst)
    }

    /// The URL of the replica that holds the lease, when it is another one and advertised a URL.
    pub fn leader_url(&self) -> Option<String> {
        self.leader_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Records where the leader is (the elector does, from the Lease; tests may).
    pub fn set_leader_url(&self, url: Option<String>) {
        *self
            .leader_url
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = url;
    }

    fn open_until(&self, until: Instant) {
        let ms = until.saturating_duration_since(self.base).as_millis() as u64;
        self.until_ms.store(ms, Ordering::SeqCst);
        self.leader.store(true, Ordering::SeqCst);
    }

    fn close(&self) {
        self.until_ms.store(0, Ordering::SeqCst);
        self.leader.store(false, Ordering::SeqCst);
    }

    /// How long this replica may still write (zero once the fence has closed).
    fn time_left(&self) -> Duration {
        let now = self.base.elapsed().as_millis() as u64;
        Duration::from_millis(self.until_ms.load(Ordering::SeqCst).saturating_sub(now))
    }
}

/// Refuses writes through the kube client when the fence is closed, and counts every request.
#[derive(Clone, Debug)]
pub struct WriteGate {
    fence: Arc<Fence>,
}

/// Why the gate refused a request.
#[derive(Debug, thiserror::Error)]
#[error(
    "refused to {verb} {resource}: this replica does not hold the leader lease (another Bosun replica is the leader)"
)]
pub struct NotLeader {
    verb: String,
    resource: String,
}

/// The resource a request is about: the plural after the API group and version (and namespace).
fn resource_of(path: &str) -> &str {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // /api/v1/namespaces/ns/pods/x, /apis/group/v1/namespaces/ns/deployments/x[/status]
    let rest: &[&str] = match parts.first() {
        Some(&"api") => parts.get(2..).unwrap_or(&[]),
        Some(&"apis") => parts.get(3..).unwrap_or(&[]),
        _ => &[],
    };
    match rest {
        ["namespaces", _, r, ..] | [r, ..] => r,
        [] => "",
    }
}

fn verb_of(method: &http::Method, query: Option<&str>) -> &'static str {
    match *method {
        http::Method::GET if query.is_some_and(|q| q.contains("watch=true")) => "watch",
        http::Method::GET => "get",
        http::Method::POST => "create",
        http::Method::PUT => "update",
        http::Method::PATCH => "patch",
        http::Method::DELETE => "delete",
        _ => "other",
    }
}

impl WriteGate {
    pub fn new(fence: Arc<Fence>) -> WriteGate {
        WriteGate { fence }
    }

    /// Checks one request.
    ///
    /// # Errors
    /// [`NotLeader`] for a write when the fence is closed.
    pub fn check<B>(&self, req: &http::Request<B>) -> Result<(), NotLeader> {
        let verb = verb_of(req.method(), req.uri().query());
        let resource = resource_of(req.uri().path());
        crate::metrics::kube_request(verb, resource);
        let write = !matches!(verb, "get" | "watch");
        // SelfSubjectAccessReview and similar POSTs are reads in effect, but Bosun makes none.
        if write {
            if !self.fence.may_write() {
                crate::metrics::global().kube_writes_refused.inc();
                return Err(NotLeader {
                    verb: verb.into(),
                    resource: resource.into(),
                });
            }
            crate::metrics::WRITES.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// A kube client whose every request passes this gate.
    ///
    /// # Errors
    /// When the client's configuration cannot be turned into a client.
    pub fn client(&self, config: kube::Config) -> Result<Client, kube::Error> {
        let gate = self.clone();
        let layer = tower::filter::FilterLayer::new(
            move |req: http::Request<kube::client::Body>| -> Result<_, tower::BoxError> {
                gate.check(&req)?;
                Ok(req)
            },
        );
        Ok(kube::client::ClientBuilder::try_from(config)?
            .with_layer(&layer)
            .build())
    }
}

/// Where the Lease is and how long it lasts.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (the pod name in a cluster).
    pub identity: String,
    pub duration: Duration,
    /// Where other replicas reach this one's HTTP server (`http://POD_IP:8080`), written to the Lease
    /// while this replica leads. `None`: webhooks that reach a standby are not forwarded.
    pub url: Option<String>,
}

impl LeaseConfig {
    fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// The fence closes this long before the lease could expire, for the time a write is in flight.
    fn margin(&self) -> Duration {
        (self.duration / 5).min(Duration::from_secs(2))
    }
}

/// What went wrong holding the lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error(
        "reading or writing the Lease {namespace}/{name}: {error} (Bosun's ServiceAccount needs get, create and update on leases in {namespace})"
    )]
    Lease {
        namespace: String,
        name: String,
        #[source]
        error: kube::Error,
    },
    #[error(
        "lost the Lease {namespace}/{name} to {holder}; exiting so that this replica restarts as a standby"
    )]
    Lost {
        namespace: String,
        name: String,
        holder: String,
    },
    #[error(
        "could not renew the Lease {namespace}/{name} before it ran out (is the API server or etcd down?); exiting so that this replica restarts as a standby"
    )]
    RenewalTimedOut { namespace: String, name: String },
}

impl LeaderError {
    /// Whether trying again may be enough ([`crate::backoff::kube_heals`]).
    fn heals(&self) -> bool {
        match self {
            LeaderError::Lease { error, .. } => crate::backoff::kube_heals(error),
            LeaderError::Lost { .. } | LeaderError::RenewalTimedOut { .. } => false,
        }
    }
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Holds the Lease: waits until it is acquired (returning then, with the fence open), and keeps it in a
/// background task that returns [`LeaderError::Lost`] when it is lost.
///
/// # Errors
/// When the Lease cannot be read or written at all.
pub async fn acquire(
    client: Client,
    config: LeaseConfig,
    fence: Arc<Fence>,
) -> Result<tokio::task::JoinHandle<LeaderError>, LeaderError> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut elector = Elector {
        api,
        config,
        fence,
        seen: None,
    };
    let mut logged_wait = false;
    loop {
        // A read held by an API server waiting on etcd is given up after a lease duration and
        // tried afresh.
        match tokio::time::timeout(elector.config.duration, elector.try_once()).await {
            Ok(Ok(true)) => break,
            Ok(Ok(false)) => {
                if !logged_wait {
                    info!(lease = %elector.config.name, holder = ?elector.seen.as_ref().map(|s| &s.holder),
                        "waiting for the leader lease; standing by");
                    logged_wait = true;
                }
            }
            Ok(Err(e)) if e.heals() => {
                warn!(error = %e, "reading the leader lease failed; standing by, trying again");
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => warn!(lease = %elector.config.name, timeout = ?elector.config.duration,
                "reading the leader lease timed out; standing by, trying again"),
        }
        tokio::time::sleep(elector.config.renew_every()).await;
    }
    info!(lease = %elector.config.name, identity = %elector.config.identity, "acquired the leader lease");
    crate::metrics::global().leader.set(1);
    Ok(tokio::spawn(async move {
        loop {
            tokio::time::sleep(elector.config.renew_every()).await;
            // A renewal still pending when the fence closes has failed: by the time it returns, the
            // lease may be another replica's.
            let renewal = tokio::time::timeout(elector.fence.time_left(), elector.try_once()).await;
            let lost = match renewal {
                Ok(Ok(true)) => continue,
                Ok(Ok(false)) => LeaderError::Lost {
                    namespace: elector.config.namespace.clone(),
                    name: elector.config.name.clone(),
                    holder: elector
                        .seen
                        .as_ref()
                        .map_or_else(String::new, |s| s.holder.clone()),
                },
                Ok(Err(e)) => {
                    // Keep trying while the fence is open; once it closed, the lease may be another's.
                    warn!(error = %e, "renewing the leader lease failed");
                    if elector.fence.may_write() {
                        continue;
                    }
                    e
                }
                Err(_) => LeaderError::RenewalTimedOut {
                    namespace: elector.config.namespace.clone(),
                    name: elector.config.name.clone(),
                },
            };
            elector.fence.close();
            crate::metrics::global().leader.set(0);
            return lost;
        }
    }))
}

struct Seen {
    holder: String,
    resource_version: String,
    at: Instant,
}

struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    fence: Arc<Fence>,
    seen: Option<Seen>,
}

impl Elector {
    fn err(&self, error: kube::Error) -> LeaderError {
        LeaderError::Lease {
            namespace: self.config.namespace.clone(),
            name: self.config.name.clone(),
            error,
        }
    }

    /// Writes this replica's URL into the Lease it is about to hold (or removes a former leader's).
    fn advertise(&self, lease: &mut Lease) {
        let annotations = lease
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        match &self.config.url {
            Some(url) => {
                annotations.insert(ANNOTATION_LEADER_URL.into(), url.clone());
            }
            None => {
                annotations.remove(ANNOTATION_LEADER_URL);
            }
        }
    }

    /// One attempt to acquire or renew. `Ok(true)`: we hold the lease now. When another replica
    /// created the Lease a moment before us, it is read at once (so a standby knows its leader).
    async fn try_once(&mut self) -> Result<bool, LeaderError> {
        match self.attempt().await? {
            Some(held) => Ok(held),
            None => Ok(self.attempt().await?.unwrap_or(false)),
        }
    }

    /// One attempt; `None` when creating the Lease lost the race to another replica.
    async fn attempt(&mut self) -> Result<Option<bool>, LeaderError> {
        let started = Instant::now();
        let me = self.config.identity.clone();
        let spec = |acquire: Option<MicroTime>, transitions: Option<i32>| LeaseSpec {
            holder_identity: Some(me.clone()),
            lease_duration_seconds: Some(self.config.duration.as_secs() as i32),
            acquire_time: acquire,
            renew_time: Some(now_micro()),
            lease_transitions: transitions,
            ..LeaseSpec::default()
        };
        let Some(mut lease) = self
            .api
            .get_opt(&self.config.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            let mut lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(spec(Some(now_micro()), Some(0))),
            };
            self.advertise(&mut lease);
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => {
                    self.fence.set_leader_url(None);
                    self.fence
                        .open_until(started + self.config.duration - self.config.margin());
                    Ok(Some(true))
                }
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
                Err(e) => Err(self.err(e)),
            };
        };
        let current = lease.spec.clone().unwrap_or_default();
        let holder = current.holder_identity.clone().unwrap_or_default();
        let rv = lease.metadata.resource_version.clone().unwrap_or_default();
        // Has the lease changed since we last looked? Expiry is judged on our own clock.
        let changed = self
            .seen
            .as_ref()
            .is_none_or(|s| s.resource_version != rv || s.holder != holder);
        if changed {
            self.seen = Some(Seen {
                holder: holder.clone(),
                resource_version: rv,
                at: started,
            });
        }
        let duration = Duration::from_secs(
            current
                .lease_duration_seconds
                .unwrap_or(self.config.duration.as_secs() as i32)
                .max(1) as u64,
        );
        let expired = self
            .seen
            .as_ref()
            .is_some_and(|s| s.at.elapsed() >= duration);
        if holder != me && !holder.is_empty() && !expired {
            self.fence.close();
            self.fence.set_leader_url(
                lease
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_LEADER_URL).cloned()),
            );
            return Ok(Some(false));
        }
        self.fence.set_leader_url(None);
        self.advertise(&mut lease);
        let transitions = current.lease_transitions.unwrap_or(0);
        lease.spec = Some(if holder == me {
            spec(current.acquire_time.clone(), Some(transitions))
        } else {
            spec(Some(now_micro()), Some(transitions + 1))
        });
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(updated) => {
                self.seen = Some(Seen {
                    holder: me,
                    resource_version: updated.metadata.resource_version.unwrap_or_default(),
                    at: started,
                });
                self.fence
                    .open_until(started + self.config.duration - self.config.margin());
                Ok(Some(true))
            }
            // Someone else updated it first (a renewal or another standby): not ours.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.seen = None;
                Ok(Some(false))
            }
            Err(e) => Err(self.err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_named_by_verb_and_resource() {
        assert_eq!(
            resource_of("/apis/apps/v1/namespaces/shop/deployments/orders"),
            "deployments"
        );
        assert_eq!(resource_of("/api/v1/namespaces/shop/pods"), "pods");
        assert_eq!(
            resource_of("/apis/apps.example.com/v1alpha1/managedapplications"),
            "managedapplications"
        );
        assert_eq!(resource_of("/api/v1/namespaces"), "namespaces");
        assert_eq!(
            verb_of(&http::Method::GET, Some("watch=true&rv=1")),
            "watch"
        );
        assert_eq!(verb_of(&http::Method::PATCH, None), "patch");
    }

    #[test]
    fn a_closed_fence_refuses_writes_and_allows_reads() {
        let gate = WriteGate::new(Fence::closed());
        let get = http::Request::get("/api/v1/namespaces/a/pods")
            .body(())
            .expect("request");
        let patch = http::Request::patch("/apis/apps/v1/namespaces/a/deployments/x")
            .body(())
            .expect("request");
        assert!(gate.check(&get).is_ok());
        let refused = gate.check(&patch).expect_err("a write without the lease");
        assert!(
            refused.to_string().contains("patch deployments"),
            "{refused}"
        );
        assert!(WriteGate::new(Fence::always()).check(&patch).is_ok());
    }

    #[test]
    fn a_fence_closes_when_its_time_has_passed() {
        let fence = Fence::closed();
        fence.open_until(Instant::now() + Duration::from_secs(60));
        assert!(fence.may_write());
        assert!(fence.time_left() > Duration::from_secs(50));
        fence.open_until(Instant::now());
        assert!(!fence.may_write());
        assert_eq!(fence.time_left(), Duration::ZERO);
    }
}
