//! Plan previews, each test a pull request and what its comment and status say.

use super::*;

const BASE: &str = "b4se000000000000000000000000000000000000";
const HEAD: &str = "4ead000000000000000000000000000000000000";

fn web(version: &str, extra: &str) -> String {
    format!(
        "apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: web
  namespace: shop
spec:
  version: \"{version}\"
  image: registry.example.com/shop/web
  replicas: 4
{extra}  upgradeStrategy:
    type: Canary
    migrationJob:
      image: registry.example.com/shop/web-migrations:{version}
    healthCheck:
      httpGet:
        path: /healthz
        port: 8080
      periodSeconds: 5
    canary:
      steps:
        - weight: 10
          pause: 5m
        - weight: 50
          pause: untilPromoted
"
    )
}

fn cart(version: &str) -> String {
    format!(
        "apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: cart
spec:
  version: \"{version}\"
"
    )
}

fn files(list: &[(&str, String)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(p, t)| (p.to_string(), t.clone()))
        .collect()
}

fn now() -> Timestamp {
    "2026-12-02T10:00:00Z".parse().expect("a time")
}

/// The preview of merging `head` into `main` whose tip holds `base`, prune on.
fn merging(base: &[(String, String)], head: &[(String, String)]) -> Option<Preview> {
    merging_with(base, head, true, &[])
}

fn merging_with(
    base: &[(String, String)],
    head: &[(String, String)],
    prune: bool,
    windows: &[UpgradeWindow],
) -> Option<Preview> {
    preview(&Request {
        branch: "main",
        base: Side {
            commit: BASE,
            files: base,
            refused: &[],
        },
        head: Side {
            commit: HEAD,
            files: head,
            refused: &[],
        },
        default_namespace: "shop",
        policy: SyncPolicy {
            prune,
            allow_empty: false,
        },
        windows,
        now: now(),
    })
}

#[test]
fn a_version_bump_says_the_upgrade_and_how_it_would_roll_out() {
    let base = files(&[("apps/web.yaml", web("1.4.0", ""))]);
    let head = files(&[("apps/web.yaml", web("1.5.0", ""))]);
    let p = merging(&base, &head).expect("a preview");

    assert!(p.body.starts_with(PREVIEW_MARKER), "{}", p.body);
    assert!(
        p.body.contains(
            "### 🔭 Bosun: what merging this would do (`4ead000` into `main` at `b4se000`)"
        ),
        "{}",
        p.body
    );
    assert!(
        p.body.contains("Merged, this would change 1."),
        "{}",
        p.body
    );
    for line in [
        "- `~ upgrade` ManagedApplication `shop/web`: `1.4.0` → `1.5.0` (`apps/web.yaml`)",
        "  - spec.version: \"1.4.0\" → \"1.5.0\"",
        "  - spec.upgradeStrategy.migrationJob.image: \"registry.example.com/shop/web-migrations:1.4.0\" → \"registry.example.com/shop/web-migrations:1.5.0\"",
        "  - migration Job first, image `registry.example.com/shop/web-migrations:1.5.0`",
        "  - canary: 10 %, pause 5m → 50 %, pause until promoted → 100 %",
        "  - health check: GET `/healthz` on port 8080 every 5 s",
    ] {
        assert!(
            p.body.lines().any(|l| l == line),
            "no line {line:?} in:\n{}",
            p.body
        );
    }
    assert_eq!(p.state, StatusState::Success);
    assert_eq!(p.description, "would change 1");
}

#[test]
fn a_change_beside_the_version_is_listed_field_by_field() {
    let base = files(&[("apps/web.yaml", web("1.4.0", ""))]);
    let head = files(&[(
        "apps/web.yaml",
        web(
            "1.4.0",
            "  env:\n    - name: LOG_LEVEL\n      value: debug\n",
        ),
    )]);
    let p = merging(&base, &head).expect("a preview");
    assert!(
        p.body
            .contains("- `~ change` ManagedApplication `shop/web` (`apps/web.yaml`)"),
        "{}",
        p.body
    );
    assert!(
        p.body
            .contains("  - spec.env: + [{\"name\":\"LOG_LEVEL\",\"value\":\"debug\"}]"),
        "{}",
        p.body
    );
}

#[test]
fn a_new_file_is_a_create_and_a_removed_one_a_prune_or_a_keep_without_prune() {
    let base = files(&[("apps/web.yaml", web("1.4.0", ""))]);
    let head = files(&[("apps/cart.yaml", cart("0.1.0"))]);

    let p = merging(&base, &head).expect("a preview");
    assert!(
        p.body
            .contains("- `+ create` ManagedApplication `shop/cart` at `0.1.0` (`apps/cart.yaml`)"),
        "{}",
        p.body
    );
    assert!(
        p.body
            .contains("- `- prune` ManagedApplication `shop/web` (no longer defined)"),
        "{}",
        p.body
    );
    assert_eq!(p.description, "would create 1, prune 1");

    let p = merging_with(&base, &head, false, &[]).expect("a preview");
    assert!(
        p.body.contains(
            "- `= keep` ManagedApplication `shop/web`: no longer defined, but prune is off"
        ),
        "{}",
        p.body
    );
    assert_eq!(p.description, "would create 1");
}

#[test]
fn an_invalid_head_fails_the_status_names_file_line_and_field_and_keeps_the_last_good_state() {
    let base = files(&[
        ("apps/web.yaml", web("1.4.0", "")),
        ("apps/cart.yaml", cart("0.1.0")),
    ]);
    let head = files(&[
        (
            "apps/web.yaml",
            web("1.5.0", "").replace("replicas: 4", "replicas: -2"),
        ),
        ("apps/cart.yaml", cart("0.2.0")),
    ]);
    let p = merging(&base, &head).expect("a preview");

    assert_eq!(p.state, StatusState::Failure);
    assert_eq!(p.description, "invalid (1 finding); would change 1");
    assert!(
        p.body
            .contains("❌ **Invalid (1 finding):** `bosun validate` refuses `apps/web.yaml`"),
        "{}",
        p.body
    );
    let finding = p
        .body
        .lines()
        .find(|l| l.starts_with("- `apps/web.yaml:"))
        .unwrap_or_else(|| panic!("no finding line in:\n{}", p.body));
    assert!(finding.contains("spec.replicas"), "{finding}");
    assert!(
        p.body.contains(
            "- `= keep` ManagedApplication `shop/web`: `apps/web.yaml` is invalid, its last good state stays"
        ),
        "{}",
        p.body
    );
    assert!(
        p.body
            .contains("- `~ upgrade` ManagedApplication `shop/cart`: `0.1.0` → `0.2.0`"),
        "{}",
        p.body
    );
}

#[test]
fn a_pull_request_that_changes_no_definition_gets_no_preview() {
    let base = files(&[("apps/web.yaml", web("1.4.0", ""))]);
    assert_eq!(merging(&base, &base.clone()), None);
}

#[test]
fn an_upgrade_a_window_would_hold_says_when_it_opens() {
    let base = files(&[("apps/web.yaml", web("1.4.0", ""))]);
    let head = files(&[("apps/web.yaml", web("1.5.0", ""))]);
    // Frozen every day from 09:00 for 8 hours (UTC): 10:00 is inside.
    let freeze: UpgradeWindow = serde_json::from_value(serde_json::json!({
        "kind": "deny", "schedule": "0 9 * * *", "duration": "8h", "timeZone": "UTC",
    }))
    .expect("a window");
    let p = merging_with(&base, &head, true, &[freeze]).expect("a preview");
    let line = p
        .body
        .lines()
        .find(|l| l.starts_with("  - merged now, it waits for window: opens"))
        .unwrap_or_else(|| panic!("no window line in:\n{}", p.body));
    assert!(line.contains("17:00"), "{line}");
}

#[test]
fn a_hostile_version_is_cut_in_the_comment() {
    let base = files(&[("apps/cart.yaml", cart("0.1.0"))]);
    let long = "9".repeat(5000);
    let head = files(&[("apps/cart.yaml", cart(&long))]);
    let p = merging(&base, &head).expect("a preview");
    assert!(p.body.len() < 4000, "{} bytes", p.body.len());
    // Too long for a tag, so invalid: the finding quotes it cut.
    assert_eq!(p.state, StatusState::Failure);
    assert!(
        p.body.contains(&format!("{}…", "9".repeat(79))),
        "{}",
        p.body
    );
    assert!(
        p.body.lines().all(|l| l.chars().count() <= 400),
        "{}",
        p.body
    );
}
