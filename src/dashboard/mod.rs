//! The read-only web dashboard `bosun run` serves on its listen address (beside `/metrics`, `/readyz`
//! and webhooks): an overview of every ManagedApplication and Bestie, one page per app, and live
//! updates over server-sent events.
//!
//! The ManagedApplications and the pods of Bosun's rollouts are read from the caches the engine keeps
//! ([`crate::engine::Watches`]: one watch of each per process), the Besties from a watch of its own;
//! every page is rendered from those stores, never from a request to the API server. Each change the watches see is broadcast as the key of the app
//! it concerns (`apps/<ns>/<name>`) on `/events`; an open page fetches itself again only when its app
//! (or, on the overview, any app) changed. The view-model ([`view`]) is pure; [`html`] lays it out,
//! escaping everything that comes from the cluster or git. No route writes anything: the dashboard
//! needs no login of its own and belongs behind the cluster's usual auth proxy.

pub mod html;
pub mod view;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bosun_core::model::{Bestie, ManagedApplication};
use futures::StreamExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use tokio::sync::broadcast;

pub use view::{Filter, Kind, Links};

const CSS: &str = include_str!("assets/dashboard.css");
const JS: &str = include_str!("assets/dashboard.js");
/// Changes buffered per open page; a page that falls further behind is told to reload everything.
const CHANGES_BUFFER: usize = 1024;

/// What `bosun run` sets for the dashboard.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Watch only this namespace (as the engine does with `--engine-namespace`).
    pub namespace: Option<String>,
    pub links: Links,
}

/// The stores every page reads, and the changes every open page listens to.
#[derive(Clone)]
pub struct Dashboard {
    apps: Store<ManagedApplication>,
    besties: Store<Bestie>,
    pods: crate::cache::Pods,
    changes: broadcast::Sender<String>,
    links: Arc<Links>,
}

use crate::cache::Change;
use crate::cluster::api_in as api;

/// Broadcasts, until the process ends, the key of each object `changes` tells of (`key` of it), and
/// `*` when the watch listed everything again (after which objects deleted meanwhile are gone).
fn tell<K: Send + 'static>(
    mut changes: futures::channel::mpsc::Receiver<Change<K>>,
    to: broadcast::Sender<String>,
    key: fn(&K) -> Option<String>,
) {
    tokio::spawn(async move {
        while let Some(change) = changes.next().await {
            let changed = match &change {
                Change::Applied(o) | Change::Deleted(o) => key(o),
                Change::Listed => Some("*".to_string()),
            };
            if let Some(k) = changed {
                // No page open: nobody to tell.
                let _ = to.send(k);
            }
        }
    });
}

fn app_key(kind: Kind, ns: &str, name: &str) -> String {
    format!("{}/{ns}/{name}", kind.segment())
}

impl Dashboard {
    /// Starts the watch of the Besties, and listens to `watches`' apps and pods. Reads only: `client`
    /// may be the write-gated one.
    pub fn start(
        client: &Client,
        settings: Settings,
        watches: &crate::engine::Watches,
    ) -> Dashboard {
        let (changes, _) = broadcast::channel(CHANGES_BUFFER);
        let ns = settings.namespace.as_deref();
        let besties = crate::cache::Feed::start(
            api::<Bestie>(client, ns),
            watcher::Config::default(),
            crate::cache::slim,
            None,
        );
        tell(besties.subscribe(), changes.clone(), |b| {
            Some(app_key(Kind::Bestie, &b.namespace()?, &b.name_any()))
        });
        tell(watches.apps.subscribe(), changes.clone(), |a| {
            Some(app_key(Kind::App, &a.namespace()?, &a.name_any()))
        });
        tell(watches.pods.subscribe(), changes.clone(), |p| {
            Some(app_key(Kind::App, &p.namespace()?, p.labels().get("app")?))
        });
        Dashboard {
            apps: watches.apps.store(),
            besties: besties.store(),
            pods: watches.pods.clone(),
            changes,
            links: Arc::new(settings.links),
        }
    }

    /// Every row of the overview, from the stores as they are now.
    pub fn rows(&self) -> Vec<view::Row> {
        let mut rows: Vec<view::Row> = self.apps.state().iter().map(|a| view::app_row(a)).collect();
        rows.extend(self.besties.state().iter().map(|b| view::bestie_row(b)));
        rows
    }

    fn detail(&self, kind: Kind, ns: &str, name: &str) -> Option<view::Detail> {
        match kind {
            Kind::App => {
                let app = self.apps.get(&ObjectRef::new(name).within(ns))?;
                let pods = self.pods.of(ns, name);
                let views = view::app_pods(&app, pods.iter().map(|p| p.as_ref()));
                Some(view::app_detail(&app, views, &self.links))
            }
            Kind::Bestie => {
                let b = self.besties.get(&ObjectRef::new(name).within(ns))?;
                Some(view::bestie_detail(&b, &self.links))
            }
        }
    }

    /// The dashboard's routes: `/`, `/apps/{ns}/{name}`, `/besties/{ns}/{name}`, `/events` and
    /// `/assets/...`. All GET.
    pub fn router(self) -> axum::Router {
        axum::Router::new()
            .route("/", get(overview))
            .route("/{kind}/{namespace}/{name}", get(detail))
            .route("/events", get(events))
            .route(
                "/assets/dashboard.css",
                get(|| async { asset("text/css", CSS) }),
            )
            .route(
                "/assets/dashboard.js",
                get(|| async { asset("text/javascript", JS) }),
            )
            .with_state(self)
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// An HTML page; its scripts may come from this server only (no inline script runs, whatever a
/// value escaped by mistake would hold).
fn page(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                     img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
                ),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

async fn overview(State(d): State<Dashboard>, Query(filter): Query<Filter>) -> Response {
    page(
        StatusCode::OK,
        html::overview(&view::overview(d.rows(), filter)),
    )
}

async fn detail(
    State(d): State<Dashboard>,
    Path((kind, ns, name)): Path<(String, String, String)>,
) -> Response {
    let what = format!("{kind}/{ns}/{name}");
    match Kind::from_segment(&kind).and_then(|k| d.detail(k, &ns, &name)) {
        Some(detail) => page(StatusCode::OK, html::detail(&detail)),
        None => page(StatusCode::NOT_FOUND, html::not_found(&what)),
    }
}

/// Server-sent events: `change` with the key of each app that changed (`*`: reload everything).
/// `X-Accel-Buffering: no` asks a proxy in front (nginx) to pass each event on at once.
async fn events(State(d): State<Dashboard>) -> impl IntoResponse {
    let rx = d.changes.subscribe();
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        let key = match rx.recv().await {
            Ok(key) => key,
            Err(broadcast::error::RecvError::Lagged(_)) => "*".to_string(),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((
            Ok::<_, Infallible>(SseEvent::default().event("change").data(key)),
            rx,
        ))
    });
    (
        [(
            header::HeaderName::from_static("x-accel-buffering"),
            HeaderValue::from_static("no"),
        )],
        Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
}
