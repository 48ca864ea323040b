use super::*;
use crate::model::{Pause, StrategyType};

const SEED_000: &str = include_str!("../../../fixtures/seeds/000-bestie.yaml");
const SEED_001: &str = include_str!("../../../fixtures/seeds/001-bestie.yaml");
const SEED_002: &str = include_str!("../../../fixtures/seeds/002-my-app.yaml");

fn check(text: &str) -> FileReport {
    validate_file("apps/app.yaml", text, &Limits::default())
}

/// The one finding of `text`, failing with all of them when there is not exactly one.
fn only_finding(text: &str) -> Finding {
    let report = check(text);
    assert_eq!(report.findings.len(), 1, "findings: {:#?}", report.findings);
    assert!(
        report.definitions.is_empty(),
        "nothing from an invalid document is kept"
    );
    report.findings.into_iter().next().expect("one finding")
}

const APP: &str = "apiVersion: apps.example.com/v1alpha1
kind: ManagedApplication
metadata:
  name: shop
spec:
  version: v1.0.0
";

fn app_with(spec_tail: &str) -> String {
    format!("{APP}{spec_tail}")
}

#[test]
fn seed_yaml_validates_verbatim() {
    for (name, text) in [("000", SEED_000), ("001", SEED_001), ("002", SEED_002)] {
        let report = check(text);
        assert!(
            report.findings.is_empty(),
            "seed {name}: {:#?}",
            report.findings
        );
        assert_eq!(report.definitions.len(), 1, "seed {name}");
    }
}

#[test]
fn seed_002_reads_as_a_canary_rollout_with_a_migration() {
    let report = check(SEED_002);
    let Resource::ManagedApplication(app) = &report.definitions[0].resource else {
        panic!("expected a ManagedApplication")
    };
    let s = &app.spec.upgrade_strategy;
    assert_eq!(s.type_, StrategyType::RollingWithMigration);
    assert_eq!(
        s.migration_job.as_ref().map(|j| j.image.as_str()),
        Some("my-app-migrations:v2.0.0")
    );
    let steps = &s.canary.as_ref().expect("canary").steps;
    assert_eq!(
        steps.iter().map(|s| s.weight).collect::<Vec<_>>(),
        [10, 50, 100]
    );
    assert_eq!(steps[0].pause, Some(Pause::Seconds(300)));
    assert_eq!(steps[2].pause, None);
}

#[test]
fn seed_001_bestie_keeps_its_quoted_version() {
    let report = check(SEED_001);
    let Resource::Bestie(b) = &report.definitions[0].resource else {
        panic!("expected a Bestie")
    };
    assert_eq!(b.spec.version, "1.3");
    assert_eq!(b.spec.max_replicas, Some(10));
}

#[test]
fn other_kinds_and_plain_yaml_are_skipped_not_errors() {
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\n# just a comment\n---\nfoo: bar\n---\n{APP}"
    );
    let report = check(&text);
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert_eq!(report.definitions.len(), 1);
    assert_eq!(report.definitions[0].source.document, 4);
    let skipped: Vec<_> = report.skipped.iter().map(|s| s.what.as_str()).collect();
    assert_eq!(
        skipped,
        [
            "v1/ConfigMap",
            "not a Kubernetes object (no apiVersion and kind)"
        ]
    );
}

#[test]
fn an_unquoted_numeric_version_is_refused_with_the_fix() {
    let f = only_finding(&SEED_000.replace("\"1.3\"", "1.10"));
    assert_eq!(f.field.as_deref(), Some("spec.version"));
    assert_eq!((f.line, f.column), (Some(8), Some(12)));
    assert!(
        f.reason
            .contains("expected a string, found the number 1.10"),
        "{f}"
    );
    assert_eq!(
        f.hint.as_deref(),
        Some("an unquoted 1.10 is not text to Kubernetes; quote it: \"1.10\"")
    );
}

#[test]
fn an_unknown_field_suggests_the_one_meant() {
    let f = only_finding(&app_with("  upgradeStrategy:\n    typ: Canary\n"));
    assert_eq!(f.field.as_deref(), Some("spec.upgradeStrategy.typ"));
    assert_eq!(f.hint.as_deref(), Some("did you mean \"type\"?"));
    assert_eq!(f.line, Some(8));
}

#[test]
fn every_error_is_reported_not_just_the_first() {
    let report = check(&app_with(
        "  replicas: -1\n  paused: maybe\n  upgradeStrategy:\n    type: Canary\n    canary:\n      steps:\n        - weight: 150\n        - {weight: 10, pause: -5}\n",
    ));
    let fields: Vec<_> = report
        .findings
        .iter()
        .filter_map(|f| f.field.as_deref())
        .collect();
    assert_eq!(
        fields,
        [
            "spec.replicas",
            "spec.paused",
            "spec.upgradeStrategy.canary.steps[0].weight",
            "spec.upgradeStrategy.canary.steps[1].pause",
        ],
        "{:#?}",
        report.findings
    );
}

#[test]
fn bad_values_are_refused_with_their_reason() {
    // (spec tail, field, words the reason must hold)
    let cases: &[(&str, &str, &str)] = &[
        (
            "  ports:\n    - containerPort: 70000\n",
            "spec.ports[0].containerPort",
            "between 1 and 65535, got 70000",
        ),
        (
            "  ports:\n    - containerPort: 0\n",
            "spec.ports[0].containerPort",
            "between 1 and 65535, got 0",
        ),
        (
            "  upgradeWindows:\n    - {schedule: \"0 25 * * *\", duration: 4h}\n",
            "spec.upgradeWindows[0].schedule",
            "hour 25 is out of range",
        ),
        (
            "  upgradeWindows:\n    - {schedule: \"0 22 * * 1-5\", duration: 4 hours later}\n",
            "spec.upgradeWindows[0].duration",
            "is not a duration",
        ),
        (
            "  upgradeWindows:\n    - {schedule: \"0 22 * * 1-5\", duration: 4h, timeZone: Europe/Berlinn}\n",
            "spec.upgradeWindows[0].timeZone",
            "is not an IANA time zone",
        ),
        (
            "  upgradeWindows:\n    - {schedule: \"0 22 * * *\", duration: 4h, kind: maybe}\n",
            "spec.upgradeWindows[0].kind",
            "allow",
        ),
        (
            "  upgradeStrategy:\n    type: Canary\n    canary:\n      steps: [{weight: 101}]\n",
            "spec.upgradeStrategy.canary.steps[0].weight",
            "between 0 and 100",
        ),
        (
            "  upgradeStrategy:\n    type: Canary\n    canary:\n      steps: [{weight: 10, pause: -1}]\n",
            "spec.upgradeStrategy.canary.steps[0].pause",
            "cannot be negative",
        ),
        (
            "  upgradeStrategy:\n    type: Canary\n    canary:\n      steps: [{weight: 10, pause: 5 minutes}]\n",
            "spec.upgradeStrategy.canary.steps[0].pause",
            "is not a pause",
        ),
        (
            "  upgradeStrategy:\n    type: Blue-Green\n",
            "spec.upgradeStrategy.type",
            "is not one of Rolling, RollingWithMigration, Recreate, Canary, BlueGreen",
        ),
        (
            "  upgradeStrategy:\n    type: RollingWithMigration\n",
            "spec.upgradeStrategy.migrationJob",
            "needs a migrationJob",
        ),
        (
            "  upgradeStrategy:\n    migrationJob:\n      command: [migrate]\n",
            "spec.upgradeStrategy.migrationJob.image",
            "missing required field",
        ),
        (
            "  upgradeStrategy:\n    migrationJob:\n      image: \"\"\n",
            "spec.upgradeStrategy.migrationJob.image",
            "a migration needs an image",
        ),
        (
            "  upgradeStrategy:\n    type: Canary\n",
            "spec.upgradeStrategy.canary",
            "type Canary needs canary steps",
        ),
        (
            "  upgradeStrategy:\n    type: Recreate\n    canary: {enabled: true, steps: [{weight: 10}]}\n",
            "spec.upgradeStrategy.canary.enabled",
            "do not apply to type Recreate",
        ),
        (
            "  upgradeStrategy:\n    type: Canary\n    canary: {steps: []}\n",
            "spec.upgradeStrategy.canary.steps",
            "has no steps",
        ),
        (
            "  upgradeStrategy:\n    healthCheck: {httpGet: {path: health, port: 8080}}\n",
            "spec.upgradeStrategy.healthCheck.httpGet.path",
            "\"health\" must start with / and contain only visible ASCII",
        ),
        (
            "  upgradeStrategy:\n    healthCheck: {httpGet: {path: \"/he alth\", port: 8080}}\n",
            "spec.upgradeStrategy.healthCheck.httpGet.path",
            "\"/he alth\" must start with / and contain only visible ASCII: no spaces",
        ),
        (
            "  upgradeStrategy:\n    healthCheck: {httpGet: {path: \"/h\\r\\nX-Evil: 1\", port: 8080}}\n",
            "spec.upgradeStrategy.healthCheck.httpGet.path",
            "\"/h\\r\\nX-Evil: 1\" must start with /",
        ),
        (
            "  upgradeStrategy:\n    healthCheck: {httpGet: {path: /h, port: 8080}, periodSeconds: 0}\n",
            "spec.upgradeStrategy.healthCheck.periodSeconds",
            "at least 1",
        ),
        ("  image: shop:v1\n", "spec.image", "carries a tag"),
        (
            "  image: Shop\n",
            "spec.image",
            "not a valid image repository",
        ),
        (
            "  ports: {containerPort: 80}\n",
            "spec.ports",
            "expected a list, found a mapping",
        ),
        (
            "  replicas: \"3\"\n",
            "spec.replicas",
            "expected a whole number, found the string \"3\"",
        ),
        (
            "  upgradeStrategy:\n    blueGreen: {autoPromote: false}\n",
            "spec.upgradeStrategy.blueGreen",
            "do not apply to type Rolling",
        ),
        (
            "  upgradeStrategy:\n    type: BlueGreen\n    trafficRouting: {gatewayAPI: {httpRoute: shop}}\n",
            "spec.upgradeStrategy.trafficRouting",
            "carries the weights of canary steps; type BlueGreen has none",
        ),
        (
            "  upgradeStrategy:\n    type: Canary\n    canary: {steps: [{weight: 10}]}\n    trafficRouting: {gatewayAPI: {httpRoute: a}, nginx: {ingress: b}}\n",
            "spec.upgradeStrategy.trafficRouting",
            "names 2 routers (gatewayAPI, nginx); a canary goes through exactly one",
        ),
        (
            "  service: {enabled: false}\n  upgradeStrategy:\n    type: Canary\n    canary: {steps: [{weight: 10}]}\n    trafficRouting: {nginx: {ingress: shop}}\n",
            "spec.upgradeStrategy.trafficRouting",
            "service.enabled is false",
        ),
    ];
    for (tail, field, reason) in cases {
        let f = only_finding(&app_with(tail));
        assert_eq!(f.field.as_deref(), Some(*field), "{tail}");
        assert!(f.reason.contains(reason), "{tail}: {f}");
        assert!(f.line.is_some() && f.column.is_some(), "{f}");
    }
}

#[test]
fn versions_must_be_image_tags() {
    let f = only_finding(&APP.replace("v1.0.0", "\"v1.0.0 final\""));
    assert_eq!(f.field.as_deref(), Some("spec.version"));
    assert!(f.reason.contains("not a valid image tag"), "{f}");
}

#[test]
fn missing_version_is_a_missing_required_field() {
    let f = only_finding(&APP.replace("  version: v1.0.0\n", "  paused: true\n"));
    assert_eq!(f.field.as_deref(), Some("spec.version"));
    assert_eq!(f.reason, "missing required field");
}

#[test]
fn bad_names_are_refused() {
    let cases = [
        ("name: Shop", "metadata.name", "not a valid name"),
        ("name: shop_1", "metadata.name", "not a valid name"),
        (
            "namespace: Prod\n  name: shop",
            "metadata.namespace",
            "not a valid namespace",
        ),
        ("nmae: shop", "metadata.nmae", "unknown field"),
        (
            "name: shop\n  uid: 1234",
            "metadata.uid",
            "set by the API server",
        ),
        (
            "name: shop\n  labels: {tier: 1.5}",
            "metadata.labels.tier",
            "expected a string",
        ),
    ];
    for (meta, field, reason) in cases {
        let report = check(&APP.replace("name: shop", meta));
        assert!(
            report
                .findings
                .iter()
                .any(|f| f.field.as_deref() == Some(field) && f.reason.contains(reason)),
            "{meta}: {:#?}",
            report.findings
        );
        assert!(report.definitions.is_empty());
    }
    let long = format!("name: {}", "a".repeat(56));
    let f = only_finding(&APP.replace("name: shop", &long));
    assert!(f.reason.contains("over 55"), "{f}");
}

#[test]
fn a_wrong_api_version_or_kind_of_ours_is_an_error_not_a_skip() {
    let f = only_finding(&APP.replace("v1alpha1", "v1"));
    assert_eq!(f.field.as_deref(), Some("apiVersion"));
    assert!(
        f.reason.contains("served as apps.example.com/v1alpha1"),
        "{f}"
    );

    let f = only_finding(&APP.replace("kind: ManagedApplication", "kind: ManagedApp"));
    assert_eq!(f.field.as_deref(), Some("kind"));
    assert_eq!(
        f.hint.as_deref(),
        Some("did you mean \"ManagedApplication\"?")
    );
}

#[test]
fn bestie_rules() {
    let cases = [
        (
            "maxReplicas: 10",
            "maxReplicas: 2",
            "spec.maxReplicas",
            "less than size (3)",
        ),
        ("size: 3", "size: -3", "spec.size", "between 0 and 10000"),
        (
            "image: quay.io/opdev/bestie",
            "image: quay.io/opdev/bestie:1.3",
            "spec.image",
            "carries a tag",
        ),
        (
            "maxReplicas: 10",
            "maxReplica: 10",
            "spec.maxReplica",
            "unknown field",
        ),
    ];
    for (from, to, field, reason) in cases {
        let f = only_finding(&SEED_001.replace(from, to));
        assert_eq!(f.field.as_deref(), Some(field), "{to}");
        assert!(f.reason.contains(reason), "{to}: {f}");
    }
}

#[test]
fn syntax_errors_name_the_place_and_keep_nothing() {
    let text = format!("{APP}---\nspec: [unclosed\n");
    let report = check(&text);
    assert!(
        report.definitions.is_empty(),
        "nothing of a file that does not parse is applied"
    );
    assert_eq!(report.findings.len(), 1);
    assert!(
        report.findings[0].reason.starts_with("YAML syntax error"),
        "{}",
        report.findings[0]
    );
    assert!(report.findings[0].line.is_some());
}

#[test]
fn an_invalid_document_does_not_hide_a_valid_one_beside_it() {
    let text = format!(
        "{}---\n{APP}",
        APP.replace("shop", "cart").replace("v1.0.0", "1.0")
    );
    let report = check(&text);
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.findings[0].document, Some(1));
    assert_eq!(
        report.findings[0].resource.as_deref(),
        Some("ManagedApplication/cart")
    );
    assert_eq!(report.definitions.len(), 1);
    assert_eq!(report.definitions[0].name(), "shop");
}

#[test]
fn the_same_app_defined_twice_keeps_neither() {
    let other = APP.replace("shop\n", "shop\n  namespace: other\n");
    let report = validate_files(
        [("a.yaml", APP), ("b.yaml", APP), ("c.yaml", other.as_str())],
        &Limits::default(),
    );
    assert_eq!(report.findings.len(), 2, "{:#?}", report.findings);
    let files: Vec<_> = report.findings.iter().map(|f| f.file.as_str()).collect();
    assert_eq!(files, ["a.yaml", "b.yaml"], "every copy's file is named");
    assert!(
        report.findings[1]
            .reason
            .contains("defined twice: also at a.yaml:1"),
        "{}",
        report.findings[1]
    );
    // The same name in another namespace is another app.
    assert_eq!(report.definitions.len(), 1);
    assert_eq!(report.definitions[0].namespace(), Some("other"));
}

#[test]
fn findings_render_file_line_column_field_reason_hint() {
    let f = only_finding(&app_with("  verison: v2\n"));
    assert_eq!(
        f.to_string(),
        "apps/app.yaml:7:3: document 1 (ManagedApplication/shop): spec.verison: unknown field \"verison\" (did you mean \"version\"?)"
    );
}

#[test]
fn a_health_check_path_that_cannot_go_into_a_request_line_is_refused_and_quoted_short() {
    let f = only_finding(&app_with(
        "  upgradeStrategy:\n    healthCheck: {httpGet: {path: healthz, port: 8080}}\n",
    ));
    assert_eq!(
        f.to_string(),
        "apps/app.yaml:8:35: document 1 (ManagedApplication/shop): \
         spec.upgradeStrategy.healthCheck.httpGet.path: \"healthz\" must start with / and contain \
         only visible ASCII: no spaces or control characters (nor \" < > `; percent-encode them) \
         (write \"/healthz\")"
    );

    let long = format!("/{}\\n", "x".repeat(200));
    let f = only_finding(&app_with(&format!(
        "  upgradeStrategy:\n    healthCheck: {{httpGet: {{path: \"{long}\", port: 8080}}}}\n"
    )));
    assert_eq!(
        f.field.as_deref(),
        Some("spec.upgradeStrategy.healthCheck.httpGet.path")
    );
    let shown = format!("\"/{}…\" must start with /", "x".repeat(78));
    assert!(f.reason.starts_with(&shown), "{f}");
    assert_eq!(f.hint, None, "no fix to suggest: {f}");
}

#[test]
fn pauses_may_wait_for_promotion() {
    let report = check(&app_with(
        "  upgradeStrategy:\n    type: Canary\n    canary:\n      steps:\n        - {weight: 20, pause: untilPromoted}\n        - {weight: 60, pause: 1h30m}\n",
    ));
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    let Resource::ManagedApplication(app) = &report.definitions[0].resource else {
        panic!()
    };
    let steps = &app
        .spec
        .upgrade_strategy
        .canary
        .as_ref()
        .expect("canary")
        .steps;
    assert_eq!(steps[0].pause, Some(Pause::UntilPromoted));
    assert_eq!(steps[1].pause.as_ref().and_then(Pause::seconds), Some(5400));
}

#[test]
fn env_and_resources_use_the_kubernetes_types() {
    let report = check(&app_with(
        "  env:\n    - {name: MODE, value: prod}\n  resources:\n    requests: {cpu: 100m, memory: 64Mi}\n    limits: {cpu: 1}\n",
    ));
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    let f = only_finding(&app_with("  env:\n    - {value: prod}\n"));
    assert_eq!(f.field.as_deref(), Some("spec.env[0].name"));
}

#[test]
fn a_bestie_name_leaves_room_for_its_database_statefulsets_revision_label() {
    let bestie = |name: &str| {
        format!(
            "apiVersion: pets.bestie.com/v1\nkind: Bestie\nmetadata:\n  name: {name}\nspec:\n  size: 1\n  image: quay.io/opdev/bestie\n  version: \"1.3\"\n"
        )
    };
    assert!(check(&bestie(&"a".repeat(49))).findings.is_empty());
    let f = only_finding(&bestie(&"a".repeat(50)));
    assert!(f.to_string().contains("metadata.name"), "{f}");
    assert!(f.to_string().contains("50 characters long, over 49"), "{f}");
}

#[test]
fn merge_keys_repeat_a_step_and_its_own_keys_win() {
    let report = check(&app_with(
        "  upgradeStrategy:
    type: Canary
    canary:
      steps:
        - &step {weight: 10, pause: 300}
        - {<<: *step, weight: 50}
        - weight: 100
",
    ));
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    let Resource::ManagedApplication(app) = &report.definitions[0].resource else {
        panic!("expected a ManagedApplication")
    };
    let steps = &app
        .spec
        .upgrade_strategy
        .canary
        .as_ref()
        .expect("canary")
        .steps;
    assert_eq!(
        steps.iter().map(|s| s.weight).collect::<Vec<_>>(),
        [10, 50, 100],
        "its own weight wins"
    );
    assert_eq!(steps[1].pause, Some(Pause::Seconds(300)), "merged in");
}

#[test]
fn a_merge_key_on_a_scalar_is_refused_with_the_form_it_takes() {
    let f = only_finding(&app_with("  upgradeStrategy:\n    <<: Canary\n"));
    let text = f.to_string();
    assert!(text.contains("merge key (<<)"), "{text}");
    assert!(text.contains("`<<: *defaults`"), "{text}");
}

/// A ManagedApplication `name` in namespace shop that depends on `deps`.
fn depending(name: &str, deps: &[&str]) -> String {
    let mut s = format!(
        "apiVersion: apps.example.com/v1alpha1\nkind: ManagedApplication\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n  version: v1\n"
    );
    if !deps.is_empty() {
        s.push_str("  dependsOn:\n");
        for d in deps {
            s.push_str(&format!("    - name: {d}\n"));
        }
    }
    s
}

#[test]
fn a_chain_of_dependencies_across_files_is_valid() {
    let (db, orders, web) = (
        depending("db-api", &[]),
        depending("orders", &["db-api"]),
        depending("frontend", &["orders"]),
    );
    let report = validate_files(
        [
            ("apps/db.yaml", db.as_str()),
            ("apps/orders.yaml", orders.as_str()),
            ("apps/web.yaml", web.as_str()),
        ],
        &Limits::default(),
    );
    assert!(report.findings.is_empty(), "{:#?}", report.findings);
    assert_eq!(report.definitions.len(), 3);
}

#[test]
fn a_missing_dependency_is_refused_at_its_line_and_the_others_are_kept() {
    let (orders, web) = (depending("orders", &["db-api"]), depending("frontend", &[]));
    let report = validate_files(
        [
            ("apps/orders.yaml", orders.as_str()),
            ("apps/web.yaml", web.as_str()),
        ],
        &Limits::default(),
    );
    assert_eq!(report.findings.len(), 1, "{:#?}", report.findings);
    let f = &report.findings[0];
    assert_eq!(
        f.to_string(),
        "apps/orders.yaml:9:13: document 1 (ManagedApplication/orders): spec.dependsOn[0].name: \
         depends on ManagedApplication shop/db-api, which no file of this source defines (define \
         it, fix the name, namespace or kind, or remove the dependency)"
    );
    let kept: Vec<&str> = report.definitions.iter().map(Definition::name).collect();
    assert_eq!(kept, ["frontend"], "the invalid one is not applied");
}

#[test]
fn a_cycle_across_files_is_refused_in_every_file_of_it() {
    let (a, b, c) = (
        depending("a", &["b"]),
        depending("b", &["a"]),
        depending("c", &[]),
    );
    let report = validate_files(
        [
            ("apps/a.yaml", a.as_str()),
            ("apps/b.yaml", b.as_str()),
            ("apps/c.yaml", c.as_str()),
        ],
        &Limits::default(),
    );
    let found: Vec<String> = report.findings.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with("apps/a.yaml:9:13:")
            && found[0].contains("dependsOn makes a cycle: shop/a → shop/b → shop/a"),
        "{found:#?}"
    );
    assert!(
        found[1].starts_with("apps/b.yaml:9:13:")
            && found[1].contains("dependsOn makes a cycle: shop/b → shop/a → shop/b"),
        "{found:#?}"
    );
    let kept: Vec<&str> = report.definitions.iter().map(Definition::name).collect();
    assert_eq!(kept, ["c"]);
}

#[test]
fn metric_analysis_is_checked_where_it_is_written() {
    let metric = |extra: &str| {
        format!(
            "  upgradeStrategy:\n    type: Canary\n    canary:\n      steps:\n        - weight: 20\n          analysis:\n            metrics:\n              - name: error-rate\n                provider: {{prometheus: {{query: 'rate(x{{app=\"{{{{app}}}}\"}}[1m])'}}}}\n{extra}"
        )
    };
    let at = "spec.upgradeStrategy.canary.steps[0].analysis.metrics[0]";
    // (the metric's other fields, the field at fault under it, words the reason must hold)
    let cases: &[(&str, &str, &str)] = &[
        (
            "                successCondition: result <\n",
            "successCondition",
            "does not parse: at character 9",
        ),
        (
            "                failureCondition: error > 1\n",
            "failureCondition",
            "does not parse",
        ),
        (
            "                count: 3\n",
            "successCondition",
            "no condition",
        ),
        (
            "                successCondition: result < 1\n                interval: 5 minutes\n",
            "interval",
            "is not a duration",
        ),
        (
            "                successCondition: result < 1\n                interval: 0\n",
            "interval",
            "at least 1s",
        ),
        (
            "                successCondition: result < 1\n                count: 0\n",
            "count",
            "at least 1",
        ),
        (
            "                successCondition: result < 1\n                emptyResult: Pass\n",
            "emptyResult",
            "Inconclusive, Failed, Successful",
        ),
    ];
    for (extra, field, reason) in cases {
        let f = only_finding(&app_with(&metric(extra)));
        assert_eq!(
            f.field.as_deref(),
            Some(format!("{at}.{field}").as_str()),
            "{extra}"
        );
        assert!(f.reason.contains(reason), "{extra}: {f}");
        assert!(f.line.is_some(), "{f}");
    }
    let background = |query: &str, address: &str| {
        app_with(&format!(
            "  upgradeStrategy:\n    analysis:\n      metrics:\n        - name: errors\n          successCondition: result < 1\n          provider:\n            prometheus: {{address: '{address}', query: '{query}'}}\n"
        ))
    };
    let f = only_finding(&background("up{pod=\"{{pod}}\"}", "http://prometheus:9090"));
    assert_eq!(
        f.field.as_deref(),
        Some("spec.upgradeStrategy.analysis.metrics[0].provider.prometheus.query")
    );
    assert!(f.reason.contains("unknown placeholder {{pod}}"), "{f}");
    let f = only_finding(&background("up", "https://prometheus:9090"));
    assert!(f.reason.contains("not an http:// address"), "{f}");
    let good = check(&background("up{app=\"{{app}}\"}", "http://127.0.0.1:9090"));
    assert!(good.findings.is_empty(), "{:#?}", good.findings);
}
