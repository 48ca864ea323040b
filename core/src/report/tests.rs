//! Snapshot-style tests: each sample summary with the exact markdown and statuses it renders to.

use super::*;
use crate::model::{BlueGreenSpec, CanarySpec, CanaryStep, MigrationJob};

fn at(hms: &str) -> Time {
    Time(
        format!("2026-11-03T{hms}Z")
            .parse()
            .expect("a valid RFC 3339 time"),
    )
}

fn tr(
    phase: Phase,
    time: &str,
    step: Option<i32>,
    weight: Option<i32>,
    message: &str,
) -> Transition {
    Transition {
        phase,
        time: at(time),
        step,
        weight,
        message: message.into(),
    }
}

fn canary_with_migration() -> Plan {
    Plan {
        migration: true,
        rollout: Rollout::Canary {
            weights: vec![10, 50],
        },
    }
}

fn app(
    name: &str,
    from: &str,
    to: &str,
    phase: Phase,
    plan: Plan,
    transitions: Vec<Transition>,
) -> AppReport {
    AppReport {
        namespace: "shop".into(),
        name: name.into(),
        from_version: Some(from.into()),
        to_version: to.into(),
        phase,
        transitions,
        plan,
        failure: None,
        rollback: None,
        error: None,
        window: None,
    }
}

const SHA: &str = "4f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39";

/// web: migration done, canary 10 % done, canary 50 % running.
fn web_in_progress() -> AppReport {
    app(
        "web",
        "v1.4.0",
        "v1.5.0",
        Phase::HealthChecking,
        canary_with_migration(),
        vec![
            tr(
                Phase::Migrating,
                "12:00:00",
                Some(0),
                Some(0),
                "upgrading to v1.5.0",
            ),
            tr(
                Phase::Deploying,
                "12:00:40",
                Some(0),
                Some(0),
                "migration succeeded",
            ),
            tr(
                Phase::HealthChecking,
                "12:01:10",
                Some(0),
                Some(10),
                "step 1 at 10 %: pods ready",
            ),
            tr(
                Phase::Deploying,
                "12:03:10",
                Some(1),
                Some(10),
                "step 1 passed",
            ),
            tr(
                Phase::HealthChecking,
                "12:03:40",
                Some(1),
                Some(50),
                "step 2 at 50 %: pods ready",
            ),
        ],
    )
}

/// api: a plain rolling update that became healthy.
fn api_healthy() -> AppReport {
    app(
        "api",
        "v2.0.0",
        "v2.1.0",
        Phase::Healthy,
        Plan {
            migration: false,
            rollout: Rollout::Rolling,
        },
        vec![
            tr(
                Phase::Deploying,
                "09:00:00",
                None,
                None,
                "upgrading to v2.1.0",
            ),
            tr(
                Phase::HealthChecking,
                "09:00:30",
                None,
                None,
                "v2.1.0 rolled out; checking health",
            ),
            tr(Phase::Healthy, "09:01:30", None, None, "v2.1.0 is healthy"),
        ],
    )
}

/// web: the 50 % canary failed its health checks; Bosun committed the rollback.
fn web_failed_with_rollback() -> AppReport {
    let mut a = web_in_progress();
    a.phase = Phase::Failed;
    a.transitions.push(tr(
        Phase::Failed,
        "12:05:00",
        Some(1),
        Some(0),
        "health checks of v1.5.0 failed",
    ));
    a.failure = Some(Failure {
        reason: "health checks of v1.5.0 failed: GET /healthz returned 503 three times".into(),
        pods: vec![
            "web-canary-7d9f8-x2x9k".into(),
            "web-canary-7d9f8-q8w2z".into(),
        ],
        job: None,
    });
    a.rollback = Some(Rollback::Commit {
        version: "v1.4.0".into(),
        sha: "9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b".into(),
        url: Some(
            "https://github.com/team/apps/commit/9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b".into(),
        ),
    });
    a
}

/// billing: the migration Job failed; the branch is protected, so the rollback is a pull request.
fn billing_failed_in_migration_rollback_pr() -> AppReport {
    let mut a = app(
        "billing",
        "v3.2.0",
        "v3.3.0",
        Phase::Failed,
        Plan {
            migration: true,
            rollout: Rollout::Rolling,
        },
        vec![
            tr(
                Phase::Migrating,
                "12:00:00",
                None,
                None,
                "upgrading to v3.3.0",
            ),
            tr(
                Phase::Failed,
                "12:02:15",
                None,
                None,
                "migration of v3.3.0 failed: BackoffLimitExceeded",
            ),
        ],
    );
    a.failure = Some(Failure {
        reason: String::new(),
        pods: vec![],
        job: Some("billing-migration-v3.3.0".into()),
    });
    a.rollback = Some(Rollback::PullRequest {
        version: "v3.2.0".into(),
        number: 118,
        url: "https://github.com/team/apps/pull/118".into(),
    });
    a
}

fn summary(apps: Vec<AppReport>) -> ChangeSummary {
    ChangeSummary {
        commit: SHA.into(),
        apps,
        words: Words::PullRequest,
    }
}

const WEB_IN_PROGRESS: &str = "\
<!-- bosun:pr-comment -->
### 🚢 Bosun: rollout of `4f2a9c1`

This commit changes 1 application: 1 in progress.

#### ⏳ `shop/web`: `v1.4.0` → `v1.5.0`, in progress

| | Step | State | Time (UTC) |
| --- | --- | --- | --- |
| ✅ | Migration | done in 40 s | 12:00:40 |
| ✅ | Canary 10 % | done in 2 min 30 s | 12:03:10 |
| ⏳ | Canary 50 % | in progress: step 2 at 50 %: pods ready | since 12:03:10 |
| ⬜ | Promote to 100 % | waiting |  |
| ⬜ | Healthy | waiting |  |

<sub>Last change 2026-11-03 12:03:40 UTC. Bosun edits this comment as the rollout goes on.</sub>
";

#[test]
fn canary_in_progress_lists_done_running_and_waiting_steps() {
    assert_eq!(
        pr_comment(&summary(vec![web_in_progress()])),
        WEB_IN_PROGRESS
    );
}

#[test]
fn rolling_update_that_became_healthy() {
    let want = "\
<!-- bosun:pr-comment -->
### 🚢 Bosun: rollout of `4f2a9c1`

This commit changes 1 application: 1 healthy.

#### ✅ `shop/api`: `v2.0.0` → `v2.1.0`, healthy

| | Step | State | Time (UTC) |
| --- | --- | --- | --- |
| ✅ | Rolling update | done in 1 min 30 s | 09:01:30 |
| ✅ | Healthy | reached 1 min 30 s after the start | 09:01:30 |

<sub>Last change 2026-11-03 09:01:30 UTC. Bosun edits this comment as the rollout goes on.</sub>
";
    assert_eq!(pr_comment(&summary(vec![api_healthy()])), want);
}

/// The sample shown in the README's "GitHub" section.
const WEB_FAILED_WITH_ROLLBACK: &str = "\
<!-- bosun:pr-comment -->
### 🚢 Bosun: rollout of `4f2a9c1`

This commit changes 1 application: 1 failed and rolled back.

#### ❌ `shop/web`: `v1.4.0` → `v1.5.0`, failed

| | Step | State | Time (UTC) |
| --- | --- | --- | --- |
| ✅ | Migration | done in 40 s | 12:00:40 |
| ✅ | Canary 10 % | done in 2 min 30 s | 12:03:10 |
| ❌ | Canary 50 % | **failed**: health checks of v1.5.0 failed: GET /healthz returned 503 three times | 12:05:00 |
| ⏭️ | Promote to 100 % | not run |  |
| ⏭️ | Healthy | not run |  |

- Failing pods: `web-canary-7d9f8-x2x9k`, `web-canary-7d9f8-q8w2z`
- ↩️ Back on `v1.4.0`: rollback commit [`9c8b7a6`](https://github.com/team/apps/commit/9c8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b) sets git to it

<sub>Last change 2026-11-03 12:05:00 UTC. Bosun edits this comment as the rollout goes on.</sub>
";

#[test]
fn failed_canary_names_reason_pods_and_rollback_commit() {
    assert_eq!(
        pr_comment(&summary(vec![web_failed_with_rollback()])),
        WEB_FAILED_WITH_ROLLBACK
    );
}

#[test]
fn two_apps_in_one_comment_one_running_one_failed_in_migration_with_rollback_pr() {
    let want = "\
<!-- bosun:pr-comment -->
### 🚢 Bosun: rollout of `4f2a9c1`

This commit changes 2 applications: 1 in progress, 1 failed and rolled back.

| | App | Change | State |
| --- | --- | --- | --- |
| ⏳ | `shop/web` | `v1.4.0` → `v1.5.0` | in progress |
| ❌ | `shop/billing` | `v3.2.0` → `v3.3.0` | failed: migration of v3.3.0 failed: BackoffLimitExceeded |

#### ⏳ `shop/web`: `v1.4.0` → `v1.5.0`, in progress

| | Step | State | Time (UTC) |
| --- | --- | --- | --- |
| ✅ | Migration | done in 40 s | 12:00:40 |
| ✅ | Canary 10 % | done in 2 min 30 s | 12:03:10 |
| ⏳ | Canary 50 % | in progress: step 2 at 50 %: pods ready | since 12:03:10 |
| ⬜ | Promote to 100 % | waiting |  |
| ⬜ | Healthy | waiting |  |

#### ❌ `shop/billing`: `v3.2.0` → `v3.3.0`, failed

| | Step | State | Time (UTC) |
| --- | --- | --- | --- |
| ❌ | Migration | **failed**: migration of v3.3.0 failed: BackoffLimitExceeded | 12:02:15 |
| ⏭️ | Rolling update | not run |  |
| ⏭️ | Healthy | not run |  |

- Failed Job: `billing-migration-v3.3.0`
- ↩️ Back on `v3.2.0`: the branch is protected, so the rollback waits in pull request [#118](https://github.com/team/apps/pull/118); merge it to set git to `v3.2.0`

<sub>Last change 2026-11-03 12:03:40 UTC. Bosun edits this comment as the rollout goes on.</sub>
";
    let s = summary(vec![
        web_in_progress(),
        billing_failed_in_migration_rollback_pr(),
    ]);
    assert_eq!(pr_comment(&s), want);
}

#[test]
fn a_rollback_pr_that_meets_a_humans_edit_says_a_human_must_resolve_it() {
    let mut a = billing_failed_in_migration_rollback_pr();
    a.rollback = Some(Rollback::ConflictPullRequest {
        version: "v3.2.0".into(),
        number: 119,
        url: "https://github.com/team/apps/pull/119".into(),
    });
    let body = pr_comment(&summary(vec![a.clone()]));
    let note = "- ↩️ Back on `v3.2.0`: a human edited lines of the definition that the rollback \
                restores too, so it waits in pull request \
                [#119](https://github.com/team/apps/pull/119) for a human to resolve the conflict; \
                then merge it to set git to `v3.2.0`\n";
    assert!(body.contains(note), "{body}");
    assert_eq!(
        commit_status(&a).description,
        "v3.2.0 → v3.3.0 failed at migration: migration of v3.3.0 failed: BackoffLimitExceeded; \
         rolled back to v3.2.0, rollback PR #119 to resolve"
    );
}

#[test]
fn on_gitlab_the_rollback_waits_in_a_merge_request_named_with_a_bang() {
    let mut a = billing_failed_in_migration_rollback_pr();
    a.rollback = Some(Rollback::PullRequest {
        version: "v3.2.0".into(),
        number: 9,
        url: "https://gitlab.example.com/platform/web/apps/-/merge_requests/9".into(),
    });
    let s = ChangeSummary {
        words: Words::MergeRequest,
        ..summary(vec![a])
    };
    let body = pr_comment(&s);
    assert!(
        body.contains(
            "the branch is protected, so the rollback waits in merge request \
             [!9](https://gitlab.example.com/platform/web/apps/-/merge_requests/9)"
        ),
        "{body}"
    );
    assert!(!body.contains("pull request"), "{body}");
    let status = &commit_statuses(&s)[0];
    assert!(
        status
            .description
            .ends_with("rolled back to v3.2.0, rollback MR !9"),
        "{}",
        status.description
    );
}

#[test]
fn the_marker_comes_first_and_the_same_summary_renders_the_same_bytes() {
    let s = summary(vec![web_failed_with_rollback(), api_healthy()]);
    let body = pr_comment(&s);
    assert!(body.starts_with("<!-- bosun:pr-comment -->\n"));
    assert_eq!(body, pr_comment(&s.clone()));
}

#[test]
fn commit_status_per_app() {
    let mut queued = api_healthy();
    queued.phase = Phase::Pending;
    queued.transitions.clear();
    let mut first_install = api_healthy();
    first_install.from_version = None;
    let mut invalid = api_healthy();
    invalid.error = Some("spec.version: expected a string, found the number 1.10".into());
    let mut failed_no_rollback_yet = web_failed_with_rollback();
    failed_no_rollback_yet.rollback = None;
    failed_no_rollback_yet.failure = None;

    let table: Vec<(AppReport, &str, StatusState, &str)> = vec![
        (
            web_in_progress(),
            "bosun/shop/web",
            StatusState::Pending,
            "v1.4.0 → v1.5.0: canary 50 % in progress",
        ),
        (
            queued,
            "bosun/shop/api",
            StatusState::Pending,
            "v2.0.0 → v2.1.0: queued",
        ),
        (
            api_healthy(),
            "bosun/shop/api",
            StatusState::Success,
            "v2.0.0 → v2.1.0: healthy",
        ),
        (
            first_install,
            "bosun/shop/api",
            StatusState::Success,
            "install v2.1.0: healthy",
        ),
        (
            web_failed_with_rollback(),
            "bosun/shop/web",
            StatusState::Failure,
            "v1.4.0 → v1.5.0 failed at canary 50 %: health checks of v1.5.0 failed: GET /healthz returned 503 three times; rolled back to v1.4.0",
        ),
        (
            failed_no_rollback_yet,
            "bosun/shop/web",
            StatusState::Failure,
            "v1.4.0 → v1.5.0 failed at canary 50 %: health checks of v1.5.0 failed; rolled back to v1.4.0",
        ),
        (
            billing_failed_in_migration_rollback_pr(),
            "bosun/shop/billing",
            StatusState::Failure,
            "v3.2.0 → v3.3.0 failed at migration: migration of v3.3.0 failed: BackoffLimitExceeded; rolled back to v3.2.0, rollback PR #118",
        ),
        (
            invalid,
            "bosun/shop/api",
            StatusState::Error,
            "Bosun could not act: spec.version: expected a string, found the number 1.10",
        ),
    ];
    for (app, context, state, description) in table {
        let got = commit_status(&app);
        assert_eq!(
            (got.context.as_str(), got.state, got.description.as_str()),
            (context, state, description)
        );
        assert!(got.description.chars().count() <= DESCRIPTION_LIMIT);
    }
}

#[test]
fn a_long_reason_is_cut_to_140_characters_on_a_character_boundary() {
    let mut a = web_failed_with_rollback();
    a.failure = Some(Failure {
        reason: format!("probe said: {}", "déjà vu 🚨 ".repeat(40)),
        ..Failure::default()
    });
    let d = commit_status(&a).description;
    assert_eq!(d.chars().count(), DESCRIPTION_LIMIT);
    assert!(d.ends_with('…'));
    assert!(d.starts_with("v1.4.0 → v1.5.0 failed at canary 50 %: probe said: déjà vu 🚨 déjà vu"));

    let table = [
        ("short", 140, "short"),
        ("abcdef", 4, "abc…"),
        ("ééééé", 5, "ééééé"),
        ("ééééé", 3, "éé…"),
        ("🚨🚨🚨", 2, "🚨…"),
    ];
    for (input, max, want) in table {
        assert_eq!(truncate(input, max), want);
    }
}

#[test]
fn free_text_cannot_break_the_table_or_inject_html() {
    let mut a = web_failed_with_rollback();
    a.failure = Some(Failure {
        reason: "got <script>alert(1)</script> | and\na newline".into(),
        pods: (0..7).map(|i| format!("web-canary-{i}")).collect(),
        job: None,
    });
    let body = pr_comment(&summary(vec![a]));
    assert!(body.contains(
        "| ❌ | Canary 50 % | **failed**: got &lt;script&gt;alert(1)&lt;/script&gt; \\| and a newline | 12:05:00 |"
    ));
    assert!(body.contains(
        "- Failing pods: `web-canary-0`, `web-canary-1`, `web-canary-2`, `web-canary-3`, `web-canary-4`, and 2 more"
    ));
}

#[test]
fn blue_green_steps_and_an_invalid_definition() {
    let bg = app(
        "shop-ui",
        "v7",
        "v8",
        Phase::HealthChecking,
        Plan {
            migration: false,
            rollout: Rollout::BlueGreen,
        },
        vec![
            tr(
                Phase::Deploying,
                "08:00:00",
                Some(0),
                None,
                "upgrading to v8",
            ),
            tr(
                Phase::HealthChecking,
                "08:00:20",
                Some(0),
                None,
                "preview ready; checking health",
            ),
            tr(
                Phase::Deploying,
                "08:01:00",
                Some(1),
                None,
                "switching the Service to v8",
            ),
            tr(
                Phase::HealthChecking,
                "08:01:05",
                Some(1),
                None,
                "Service on v8; checking health",
            ),
        ],
    );
    let mut invalid = api_healthy();
    invalid.error = Some("spec.version: expected a string".into());
    let want = "\
<!-- bosun:pr-comment -->
### 🚢 Bosun: rollout of `4f2a9c1`

This commit changes 2 applications: 1 in progress, 1 not acted on.

| | App | Change | State |
| --- | --- | --- | --- |
| ⏳ | `shop/shop-ui` | `v7` → `v8` | in progress |
| ⚠️ | `shop/api` | `v2.0.0` → `v2.1.0` | not acted on |

#### ⏳ `shop/shop-ui`: `v7` → `v8`, in progress

| | Step | State | Time (UTC) |
| --- | --- | --- | --- |
| ✅ | Preview beside the old version | done in 1 min | 08:01:00 |
| ⏳ | Switch the Service | in progress: Service on v8; checking health | since 08:01:00 |
| ⬜ | Healthy | waiting |  |

#### ⚠️ `shop/api`: `v2.0.0` → `v2.1.0`, not acted on

Bosun could not act on this change: spec.version: expected a string

<sub>Last change 2026-11-03 09:01:30 UTC. Bosun edits this comment as the rollout goes on.</sub>
";
    assert_eq!(pr_comment(&summary(vec![bg, invalid])), want);
}

#[test]
fn plan_is_read_from_the_strategy_as_the_engine_reads_it() {
    let step = |weight| CanaryStep {
        weight,
        pause: None,
        analysis: None,
    };
    let migration = MigrationJob {
        image: "migrate:v2".into(),
        command: None,
        args: None,
        env: None,
        active_deadline_seconds: None,
        backoff_limit: None,
        down: None,
    };
    let strategy =
        |type_, canary: Option<CanarySpec>, migration_job: Option<MigrationJob>| UpgradeStrategy {
            type_,
            migration_job,
            canary,
            blue_green: Some(BlueGreenSpec::default()).filter(|_| type_ == StrategyType::BlueGreen),
            ..UpgradeStrategy::default()
        };
    let canary = |enabled, weights: &[i32]| {
        Some(CanarySpec {
            enabled,
            steps: weights.iter().map(|w| step(*w)).collect(),
        })
    };
    let table = [
        (
            strategy(StrategyType::Rolling, None, None),
            false,
            Rollout::Rolling,
        ),
        (
            strategy(
                StrategyType::RollingWithMigration,
                None,
                Some(migration.clone()),
            ),
            true,
            Rollout::Rolling,
        ),
        (
            strategy(StrategyType::Recreate, None, None),
            false,
            Rollout::Recreate,
        ),
        (
            strategy(StrategyType::Canary, canary(None, &[10, 50]), None),
            false,
            Rollout::Canary {
                weights: vec![10, 50],
            },
        ),
        (
            strategy(StrategyType::Rolling, canary(None, &[10]), None),
            false,
            Rollout::Rolling,
        ),
        (
            strategy(
                StrategyType::Rolling,
                canary(Some(true), &[25]),
                Some(migration),
            ),
            true,
            Rollout::Canary { weights: vec![25] },
        ),
        (
            strategy(StrategyType::Canary, canary(Some(false), &[10]), None),
            false,
            Rollout::Rolling,
        ),
        (
            strategy(StrategyType::Canary, canary(None, &[]), None),
            false,
            Rollout::Rolling,
        ),
        (
            strategy(StrategyType::BlueGreen, None, None),
            false,
            Rollout::BlueGreen,
        ),
    ];
    for (s, migration, rollout) in table {
        assert_eq!(
            Plan::from_strategy(&s),
            Plan { migration, rollout },
            "{s:?}"
        );
    }
}

#[test]
fn transitions_mirror_status_history() {
    let h = HistoryEntry {
        phase: Phase::HealthChecking,
        time: at("10:00:00"),
        step: Some(1),
        weight: Some(50),
        message: "step 2 at 50 %: pods ready".into(),
    };
    assert_eq!(
        Transition::from(&h),
        tr(
            Phase::HealthChecking,
            "10:00:00",
            Some(1),
            Some(50),
            "step 2 at 50 %: pods ready"
        )
    );
}

#[test]
fn the_readme_shows_the_failed_canary_sample_verbatim() {
    let readme = include_str!("../../../README.md");
    let quoted: String = WEB_FAILED_WITH_ROLLBACK
        .lines()
        .map(|l| {
            if l.is_empty() {
                ">\n".to_string()
            } else {
                format!("> {l}\n")
            }
        })
        .collect();
    assert!(
        readme.contains(&quoted),
        "README's GitHub section should quote:\n{quoted}"
    );
}

#[test]
fn an_upgrade_waiting_for_its_window_says_when_it_opens_in_the_comment_and_the_status() {
    let mut web = app(
        "web",
        "v1.4.0",
        "v1.5.0",
        Phase::Pending,
        canary_with_migration(),
        vec![tr(
            Phase::Pending,
            "12:00:00",
            Some(0),
            Some(0),
            "upgrading to v1.5.0",
        )],
    );
    web.window = Some(WindowNote::Waiting(
        "waits for window: opens Mon 22:00 CET (outside its upgrade windows)".into(),
    ));
    let comment = pr_comment(&ChangeSummary {
        commit: SHA.into(),
        apps: vec![web.clone()],
        words: Words::PullRequest,
    });
    assert!(
        comment.contains("`shop/web`: `v1.4.0` → `v1.5.0`, waiting for its upgrade window"),
        "{comment}"
    );
    assert!(
        comment.contains("🕙 waits for window: opens Mon 22:00 CET"),
        "{comment}"
    );
    let status = commit_status(&web);
    assert_eq!(status.state, StatusState::Pending);
    assert!(
        status
            .description
            .contains("waits for window: opens Mon 22:00 CET"),
        "{}",
        status.description
    );

    web.window = Some(WindowNote::StartedOutside);
    let comment = pr_comment(&ChangeSummary {
        commit: SHA.into(),
        apps: vec![web],
        words: Words::PullRequest,
    });
    assert!(
        comment.contains("Started outside its upgrade windows by `bosun promote --now`"),
        "{comment}"
    );
}
