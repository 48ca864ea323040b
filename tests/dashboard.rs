//! The dashboard (issue [N]) in a real browser: headless Chromium through chromedriver
//! (`scripts/browser install`), against the real `bosun run`, the test git server and cluster.
//!
//! One scenario, as a user would watch it: two canary apps and a Bestie go out; the overview lists
//! them; `shop`'s
//! page, left open, follows its upgrade to v2 live (the canary step, then the promotion, without a
//! reload); `cart`'s broken version fails and the overview and its page say why, in red. Each page
//! is saved as a screenshot (`target/tmp/dashboard-screenshots`, or `$BOSUN_SCREENSHOTS`), on a
//! desktop window and on a phone's.

mod support;

use std::time::Duration;

use bosun_core::model::{ManagedApplication, Phase};
use kube::api::{Patch, PatchParams};
use serde_json::json;
use support::browser::{Browser, screenshot_dir};
use support::process::{bosun_run_with, free_port, http_get, local};
use support::{repo_scenario, until_status_within};

/// How long a step of the scenario may take (the cluster and Chromium share 2 busy cores).
const STEP: Duration = Duration::from_secs(90);

/// A Bestie without a database.
const PET: &str = "apiVersion: pets.bestie.com/v1
kind: Bestie
metadata:
  name: pet
spec:
  size: 1
  image: quay.io/opdev/bestie
  version: \"1.3\"
  database:
    enabled: false
";

/// A canary app: two replicas, 50 % waiting for `bosun promote`, then 100 %; its new pods get
/// `deadline` seconds to become ready (a version ending in `-broken` never does).
fn canary(name: &str, version: &str, deadline: u32) -> String {
    format!(
        "apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: {name}
spec:
  version: \"{version}\"
  replicas: 2
  upgradeStrategy:
    type: Canary
    progressDeadlineSeconds: {deadline}
    canary:
      steps:
        - weight: 50
          pause: untilPromoted
        - weight: 100
"
    )
}

#[tokio::test]
async fn the_dashboard_lists_the_apps_follows_a_canary_live_and_shows_why_an_upgrade_failed() {
    let (ns, repo, _health, dir) = repo_scenario("dash").await;
    repo.commit(
        "shop and cart v1",
        &[
            ("apps/shop.yaml", canary("shop", "v1", 60)),
            ("apps/cart.yaml", canary("cart", "v1", 60)),
            ("apps/pet.yaml", PET.to_string()),
        ],
    );
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // No write-back: a failed upgrade stays Failed (git is not set back), so its reason stays shown.
    let bosun = bosun_run_with(
        &repo.http_url,
        &ns.name,
        dir.path(),
        &listen,
        &["--git-write-back=false"],
    );
    for app in ["shop", "cart"] {
        until_status_within(
            STEP,
            &ns,
            app,
            "Healthy at v1",
            || bosun.log(),
            |s| s.phase == Some(Phase::Healthy) && s.current_version.as_deref() == Some("v1"),
        )
        .await;
    }
    let base = format!("http://{listen}");
    let shots = screenshot_dir();
    let browser = Browser::start(1280, 900).await;
    let b = &browser;

    // The overview lists both apps, Healthy at v1.
    b.client
        .goto(&format!("{base}/"))
        .await
        .expect("open the overview");
    for app in ["shop", "cart"] {
        let row = format!("tr[data-app=\"apps/{}/{app}\"]", ns.name);
        b.until_text(STEP, &row, &format!("{app} listed, Healthy at v1"), |t| {
            t.contains("Healthy") && t.contains("v1")
        })
        .await;
    }
    let pet = format!("tr[data-app=\"besties/{}/pet\"]", ns.name);
    b.until_text(STEP, &pet, "the Bestie listed, Healthy at 1.3", |t| {
        t.contains("Healthy") && t.contains("1.3") && t.contains("Bestie")
    })
    .await;
    assert_eq!(
        b.text("h1").await.as_deref(),
        Some("Rollouts"),
        "the overview's heading"
    );
    b.screenshot(&shots, "overview").await;

    // shop's page, left open: v2 goes out and the page follows it without a reload.
    b.client
        .goto(&format!("{base}/apps/{}/shop", ns.name))
        .await
        .expect("open shop's page");
    b.until_text(STEP, "#phase", "shop's page showing Healthy", |t| {
        t == "Healthy"
    })
    .await;
    // Live updates are on once the event stream is open.
    b.until_text(STEP, "#live-state", "the event stream open", |t| {
        t == "live"
    })
    .await;
    b.client
        .execute("window.bosunNotReloaded = true; return null;", vec![])
        .await
        .expect("mark the page");
    repo.commit("shop v2", &[("apps/shop.yaml", canary("shop", "v2", 60))]);
    b.until_text(STEP, "#progress", "the canary at step 1 of 2, 50 %", |t| {
        t.contains("step 1 of 2, 50 %")
    })
    .await;
    b.until_text(STEP, "#live", "the wait for promotion shown", |t| {
        t.contains("waiting for promotion")
    })
    .await;
    b.screenshot(&shots, "app-canary-step").await;
    // What `bosun promote` does.
    ns.api::<ManagedApplication>()
        .patch(
            "shop",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"bosun.dev/promote-step": "0"}}})),
        )
        .await
        .expect("promote shop's canary step");
    b.until_text(STEP, "#current", "shop's page showing v2 serving", |t| {
        t.starts_with("v2")
    })
    .await;
    b.until_text(STEP, "#phase", "shop's page showing Healthy again", |t| {
        t == "Healthy"
    })
    .await;
    let timeline = b.text("table.timeline").await.unwrap_or_default();
    assert!(
        timeline.contains("step 1 (50 %)"),
        "the timeline shows the canary step:\n{timeline}"
    );
    let not_reloaded = b
        .client
        .execute("return window.bosunNotReloaded === true;", vec![])
        .await
        .expect("read the mark");
    assert_eq!(
        not_reloaded,
        json!(true),
        "the page updated itself: it was not reloaded"
    );
    b.screenshot(&shots, "app-promoted").await;

    // cart's broken version fails: the overview and its page say why, in red.
    repo.commit(
        "cart v2-broken",
        &[("apps/cart.yaml", canary("cart", "v2-broken", 6))],
    );
    let failed = until_status_within(
        STEP,
        &ns,
        "cart",
        "Failed",
        || bosun.log(),
        |s| s.phase == Some(Phase::Failed) && !s.failure_reason().is_empty(),
    )
    .await;
    let reason = failed.failure_reason();
    b.client
        .goto(&format!("{base}/"))
        .await
        .expect("open the overview");
    let failure = format!("tr[data-app=\"apps/{}/cart\"] .failure", ns.name);
    b.until_text(STEP, &failure, "cart's failure and its reason", |t| {
        t.contains(&reason)
    })
    .await;
    let colour = b
        .client
        .execute(
            "return getComputedStyle(document.querySelector(arguments[0])).color;",
            vec![json!(failure)],
        )
        .await
        .expect("the failure's colour");
    assert_eq!(colour, json!("rgb(176, 0, 32)"), "failures are red");
    b.screenshot(&shots, "overview-failure").await;
    // Filtered by phase, the overview lists cart alone.
    let (status, filtered) = tokio::task::spawn_blocking(move || {
        http_get(local(port), "/?phase=Failed").expect("the filtered overview")
    })
    .await
    .expect("the request");
    assert_eq!(status, 200);
    assert!(filtered.contains(&format!("apps/{}/cart", ns.name)));
    assert!(!filtered.contains(&format!("apps/{}/shop", ns.name)));
    // The Bestie's page lists its pod; an app that does not exist is a 404 that says so.
    for (path, want_status, want) in [
        (
            format!("/besties/{}/pet", ns.name),
            200,
            "<td data-label=\"Side\">app</td>",
        ),
        (
            format!("/apps/{}/nope", ns.name),
            404,
            "is not in the cluster",
        ),
    ] {
        let (status, body) =
            tokio::task::spawn_blocking(move || http_get(local(port), &path).expect("an answer"))
                .await
                .expect("the request");
        assert_eq!(status, want_status, "{body}");
        assert!(body.contains(want), "{body}");
    }

    b.client
        .goto(&format!("{base}/apps/{}/cart", ns.name))
        .await
        .expect("open cart's page");
    b.until_text(STEP, "#failure", "cart's page showing the reason", |t| {
        t.contains(&reason)
    })
    .await;
    b.screenshot(&shots, "app-failure").await;

    // On a phone.
    b.client
        .set_window_size(390, 844)
        .await
        .expect("a phone-sized window");
    b.client
        .goto(&format!("{base}/"))
        .await
        .expect("open the overview");
    b.until_text(STEP, &failure, "the overview on a phone", |t| {
        t.contains(&reason)
    })
    .await;
    b.screenshot(&shots, "overview-phone").await;
    browser.close().await;
}

#[tokio::test]
async fn the_dashboard_can_be_turned_off_and_the_other_endpoints_stay() {
    let (ns, repo, _health, dir) = repo_scenario("dash-off").await;
    repo.commit("shop v1", &[("apps/shop.yaml", canary("shop", "v1", 60))]);
    let port = free_port();
    let bosun = bosun_run_with(
        &repo.http_url,
        &ns.name,
        dir.path(),
        &format!("127.0.0.1:{port}"),
        &["--dashboard=false"],
    );
    let metrics = support::wait_explained(
        STEP,
        "bosun's /metrics",
        || bosun.log(),
        || async move {
            tokio::task::spawn_blocking(move || http_get(local(port), "/metrics"))
                .await
                .ok()
                .flatten()
        },
    )
    .await;
    assert_eq!(metrics.0, 200);
    let app_page = format!("/apps/{}/shop", ns.name);
    for path in ["/", "/events", "/assets/dashboard.js", app_page.as_str()] {
        let path = path.to_string();
        let (status, _) = tokio::task::spawn_blocking(move || http_get(local(port), &path))
            .await
            .expect("the request")
            .expect("an answer");
        assert_eq!(status, 404, "the dashboard is off");
    }
}
