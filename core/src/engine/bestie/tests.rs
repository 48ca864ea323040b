//! The Bestie planner as scenarios: each builds what the executor would observe and checks the plan.

use super::*;
use crate::model::BestieDatabase;

fn at(secs: i64) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + secs).expect("valid time"))
}

fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "pets.bestie.com/v1".into(),
        kind: "Bestie".into(),
        name: "bestie".into(),
        uid: "uid-1".into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// Seed 001's Bestie.
fn seed_spec() -> BestieSpec {
    BestieSpec {
        size: 3,
        image: "quay.io/opdev/bestie".into(),
        version: "1.3".into(),
        max_replicas: Some(10),
        port: None,
        host: None,
        database: None,
        upgrade_windows: Vec::new(),
        depends_on: Vec::new(),
    }
}

struct World {
    spec: BestieSpec,
    status: BestieStatus,
    observed: Observed,
    owner: OwnerReference,
    /// Seconds after [`at`]'s epoch (Friday 2027-01-15 08:00 UTC).
    now: i64,
    /// The `bosun.dev/promote-now` annotation.
    promote_now: Option<String>,
    /// What the executor found the rollout waits for among `spec.dependsOn`.
    dependencies_waiting: Option<String>,
}

impl World {
    fn new(spec: BestieSpec) -> World {
        World {
            spec,
            status: BestieStatus::default(),
            observed: Observed {
                apis: Apis::default(),
                live: BTreeMap::new(),
                foreign: BTreeSet::new(),
                database: DbObs::Absent,
                seed_job: JobObs::Absent,
                app: None,
                pods: Vec::new(),
            },
            owner: owner(),
            now: 0,
            promote_now: None,
            dependencies_waiting: None,
        }
    }

    fn plan(&self) -> Plan {
        let input = Input {
            name: "bestie",
            namespace: "pets",
            generation: Some(1),
            spec: &self.spec,
            status: &self.status,
            owner: &self.owner,
            progress_deadline_seconds: 5,
            windows: &self.spec.upgrade_windows,
            promote_now: self.promote_now.as_deref(),
            dependencies_waiting: self.dependencies_waiting.clone(),
        };
        plan(&input, &self.observed, &at(self.now))
    }

    /// Carries the plan out as a perfect cluster would (objects exist with what was applied) and takes
    /// the status; the database and Jobs still move only when a test says so.
    fn act(&mut self) -> Plan {
        let p = self.plan();
        for a in &p.actions {
            match a {
                Action::Apply { part, object } | Action::Create { part, object } => {
                    let hash = object["metadata"]["annotations"][ANNOTATION_APPLIED_HASH]
                        .as_str()
                        .map(String::from);
                    self.observed
                        .live
                        .insert(*part, Live { applied_hash: hash });
                    if *part == Part::AppDeployment {
                        let version = object["spec"]["template"]["metadata"]["labels"]
                            [LABEL_VERSION]
                            .as_str()
                            .expect("a version label")
                            .to_string();
                        let replicas =
                            object["spec"]["replicas"].as_i64().expect("replicas") as i32;
                        let old = self.observed.app.clone();
                        self.observed.app = Some(AppObs {
                            version,
                            template_hash: object["metadata"]["annotations"]
                                [ANNOTATION_TEMPLATE_HASH]
                                .as_str()
                                .map(String::from),
                            image: object["spec"]["template"]["spec"]["containers"][0]["image"]
                                .as_str()
                                .expect("an image")
                                .to_string(),
                            replicas,
                            current: false,
                            total: old.as_ref().map_or(0, |a| a.total),
                            updated: 0,
                            ready: old.as_ref().map_or(0, |a| a.ready),
                            stalled: false,
                        });
                    }
                    if *part == Part::SeedJob {
                        self.observed.seed_job = JobObs::Running;
                    }
                }
                Action::CreateDatabaseSecret => {
                    self.observed
                        .live
                        .insert(Part::DatabaseSecret, Live::default());
                }
                Action::Delete { part } => {
                    self.observed.live.remove(part);
                }
            }
        }
        self.status = p.status.clone();
        p
    }

    fn pods_become_ready(&mut self) {
        let a = self.observed.app.as_mut().expect("a Deployment");
        a.current = true;
        a.total = a.replicas;
        a.updated = a.replicas;
        a.ready = a.replicas;
        a.stalled = false;
    }

    fn rollout_stalls(&mut self) {
        let a = self.observed.app.as_mut().expect("a Deployment");
        a.current = true;
        a.total = a.replicas + 1;
        a.updated = 1;
        a.stalled = true;
    }

    /// From nothing to serving `1.3`: database ready, seed succeeded, pods ready.
    fn serving(spec: BestieSpec) -> World {
        let mut w = World::new(spec);
        w.act();
        w.observed.database = DbObs::Ready;
        w.act();
        w.observed.seed_job = JobObs::Succeeded;
        w.act();
        w.pods_become_ready();
        w.act();
        w
    }
}

fn parts(p: &Plan) -> Vec<(Part, &'static str)> {
    p.actions
        .iter()
        .map(|a| match a {
            Action::Apply { part, .. } => (*part, "apply"),
            Action::Create { part, .. } => (*part, "create"),
            Action::CreateDatabaseSecret => (Part::DatabaseSecret, "create"),
            Action::Delete { part } => (*part, "delete"),
        })
        .collect()
}

fn applied(p: &Plan, part: Part) -> &Value {
    p.actions
        .iter()
        .find_map(|a| match a {
            Action::Apply { part: q, object } | Action::Create { part: q, object }
                if *q == part =>
            {
                Some(object)
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("{part:?} in {:?}", parts(p)))
}

fn condition<'a>(s: &'a BestieStatus, type_: &str) -> &'a Condition {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("condition {type_} in {:?}", s.conditions))
}

#[test]
fn a_new_bestie_starts_with_its_database_and_nothing_else() {
    let w = World::new(seed_spec());
    let p = w.plan();
    assert_eq!(
        parts(&p),
        vec![
            (Part::DatabaseSecret, "create"),
            (Part::DatabaseService, "apply"),
            (Part::DatabaseStatefulSet, "apply"),
        ]
    );
    assert_eq!(p.requeue, Requeue::After(RECHECK_SECS));
    let ready = condition(&p.status, CONDITION_READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason::WAITING_FOR_DATABASE)
    );
}

#[test]
fn the_seed_job_runs_once_the_database_is_ready_and_the_app_waits_for_it() {
    let mut w = World::new(seed_spec());
    w.act();
    assert!(
        w.plan().actions.is_empty(),
        "nothing more while the database starts"
    );
    w.observed.database = DbObs::Ready;
    let p = w.act();
    assert_eq!(parts(&p), vec![(Part::SeedJob, "create")]);
    let job = applied(&p, Part::SeedJob);
    assert_eq!(job["metadata"]["name"], "bestie-seed");
    assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    assert_eq!(job["spec"]["backoffLimit"], SEED_BACKOFF_LIMIT);
    assert!(w.plan().actions.is_empty(), "the app waits for the seed");
    assert_eq!(
        condition(&w.plan().status, CONDITION_PROGRESSING).reason,
        reason::SEEDING_DATABASE
    );
}

#[test]
fn after_the_seed_the_app_tier_is_created_in_order() {
    let mut w = World::new(seed_spec());
    w.act();
    w.observed.database = DbObs::Ready;
    w.act();
    w.observed.seed_job = JobObs::Succeeded;
    let p = w.act();
    assert_eq!(
        parts(&p),
        vec![
            (Part::AppDeployment, "apply"),
            (Part::AppService, "apply"),
            (Part::Ingress, "apply"),
            (Part::Hpa, "apply"),
        ]
    );
    assert_eq!(p.status.database_seeded, Some(true));
    let d = applied(&p, Part::AppDeployment);
    assert_eq!(d["metadata"]["name"], "bestie-app");
    assert_eq!(d["spec"]["replicas"], 3);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "quay.io/opdev/bestie:1.3");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], DEFAULT_PORT);
    assert_eq!(c["livenessProbe"]["tcpSocket"]["port"], DEFAULT_PORT);
    assert!(
        c["env"]
            .as_array()
            .expect("env")
            .iter()
            .any(|e| e["valueFrom"]["secretKeyRef"]["name"] == "bestie-db")
    );
    assert_eq!(d["spec"]["progressDeadlineSeconds"], 5);
    let owner = &d["metadata"]["ownerReferences"][0];
    assert_eq!(owner["controller"], true);
    assert_eq!(d["metadata"]["labels"][LABEL_MANAGED_BY], "bosun");
    assert_eq!(d["metadata"]["labels"][LABEL_INSTANCE], "bestie");
    let hpa = applied(&p, Part::Hpa);
    assert_eq!(hpa["spec"]["minReplicas"], 3);
    assert_eq!(hpa["spec"]["maxReplicas"], 10);
}

#[test]
fn a_serving_bestie_plans_no_writes_and_reports_its_version() {
    let w = World::serving(seed_spec());
    let p = w.plan();
    assert_eq!(parts(&p), vec![]);
    assert_eq!(p.requeue, Requeue::Idle);
    assert_eq!(p.status.appversion.as_deref(), Some("1.3"));
    assert_eq!(p.status.last_healthy_version.as_deref(), Some("1.3"));
    assert_eq!(p.status, w.status, "the status is unchanged: no write");
    assert!(p.events.is_empty());
    let ready = condition(&p.status, CONDITION_READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", reason::ROLLOUT_COMPLETE)
    );
}

#[test]
fn a_restart_after_the_seed_job_was_deleted_never_seeds_again() {
    let mut w = World::serving(seed_spec());
    w.observed.seed_job = JobObs::Absent;
    w.observed.live.remove(&Part::SeedJob);
    assert_eq!(parts(&w.plan()), vec![]);
}

#[test]
fn a_failed_seed_holds_the_app_back_and_says_how_to_retry() {
    let mut w = World::new(seed_spec());
    w.act();
    w.observed.database = DbObs::Ready;
    w.act();
    w.observed.seed_job = JobObs::Failed {
        reason: "BackoffLimitExceeded".into(),
    };
    let p = w.act();
    assert_eq!(parts(&p), vec![]);
    let ready = condition(&p.status, CONDITION_READY);
    assert_eq!(ready.reason, reason::SEED_FAILED);
    assert!(
        ready.message.contains("delete the Job"),
        "{}",
        ready.message
    );
    assert_eq!(p.events.len(), 1);
    assert!(p.events[0].warning);
}

#[test]
fn a_version_change_rolls_out_and_becomes_the_appversion() {
    let mut w = World::serving(seed_spec());
    w.spec.version = "1.4".into();
    let p = w.act();
    assert_eq!(parts(&p), vec![(Part::AppDeployment, "apply")]);
    assert_eq!(
        applied(&p, Part::AppDeployment)["spec"]["template"]["spec"]["containers"][0]["image"],
        "quay.io/opdev/bestie:1.4"
    );
    assert_eq!(p.status.appversion.as_deref(), Some("1.3"), "1.3 serves");
    assert_eq!(
        condition(&p.status, CONDITION_PROGRESSING).reason,
        reason::ROLLING_OUT
    );
    w.pods_become_ready();
    let p = w.act();
    assert_eq!(p.status.appversion.as_deref(), Some("1.4"));
    assert_eq!(p.status.last_healthy_version.as_deref(), Some("1.4"));
    assert_eq!(
        p.events.iter().map(|e| e.reason).collect::<Vec<_>>(),
        vec![reason::ROLLOUT_COMPLETE]
    );
}

#[test]
fn a_version_past_its_progress_deadline_rolls_back_and_is_not_retried() {
    let mut w = World::serving(seed_spec());
    w.spec.version = "1.4-broken".into();
    w.act();
    w.rollout_stalls();
    let p = w.act();
    assert_eq!(p.status.failed_version.as_deref(), Some("1.4-broken"));
    assert_eq!(
        applied(&p, Part::AppDeployment)["spec"]["template"]["spec"]["containers"][0]["image"],
        "quay.io/opdev/bestie:1.3",
        "rolled back to the last healthy version"
    );
    let ready = condition(&p.status, CONDITION_READY);
    assert_eq!(ready.reason, reason::ROLLOUT_FAILED);
    assert!(ready.message.contains("1.4-broken"), "{}", ready.message);
    let warning = p
        .events
        .iter()
        .find(|e| e.reason == reason::ROLLOUT_FAILED)
        .expect("a RolloutFailed Event");
    assert!(warning.warning && warning.message.contains("1.4-broken"));

    w.pods_become_ready();
    let p = w.act();
    assert_eq!(p.status.appversion.as_deref(), Some("1.3"));
    assert_eq!(p.status.last_healthy_version.as_deref(), Some("1.3"));
    assert_eq!(parts(&p), vec![], "the failed version is not retried");
    assert_eq!(
        condition(&p.status, CONDITION_PROGRESSING).reason,
        reason::ROLLOUT_FAILED
    );
    assert_eq!(parts(&w.plan()), vec![]);

    w.spec.version = "1.5".into();
    let p = w.act();
    assert_eq!(
        applied(&p, Part::AppDeployment)["spec"]["template"]["spec"]["containers"][0]["image"],
        "quay.io/opdev/bestie:1.5",
        "a new version is tried"
    );
}

#[test]
fn a_first_version_that_never_becomes_ready_has_nothing_to_roll_back_to() {
    let mut w = World::new(BestieSpec {
        version: "1.0-broken".into(),
        ..seed_spec()
    });
    w.act();
    w.observed.database = DbObs::Ready;
    w.act();
    w.observed.seed_job = JobObs::Succeeded;
    w.act();
    w.rollout_stalls();
    let p = w.act();
    assert_eq!(parts(&p), vec![]);
    assert_eq!(p.status.failed_version.as_deref(), Some("1.0-broken"));
    assert!(
        condition(&p.status, CONDITION_READY)
            .message
            .contains("no earlier healthy version")
    );
}

#[test]
fn a_stale_stalled_condition_of_an_older_template_is_not_a_failure() {
    let mut w = World::serving(seed_spec());
    w.spec.version = "1.4".into();
    w.act();
    let a = w.observed.app.as_mut().expect("app");
    a.stalled = true; // still about the previous generation
    a.current = false;
    let p = w.act();
    assert_eq!(p.status.failed_version, None);
}

#[test]
fn with_an_hpa_the_replica_count_follows_it_within_bounds() {
    let spec = seed_spec();
    assert_eq!(app_replicas(&spec, None), 3);
    assert_eq!(app_replicas(&spec, Some(7)), 7);
    assert_eq!(app_replicas(&spec, Some(1)), 3);
    assert_eq!(app_replicas(&spec, Some(40)), 10);
    let no_hpa = BestieSpec {
        max_replicas: None,
        ..seed_spec()
    };
    assert_eq!(
        app_replicas(&no_hpa, Some(7)),
        3,
        "a hand scale is corrected"
    );
    let zero = BestieSpec {
        size: 0,
        ..seed_spec()
    };
    assert_eq!(hpa_bounds(&zero), None, "an HPA cannot hold zero pods");

    let mut w = World::serving(seed_spec());
    w.observed.app.as_mut().expect("app").replicas = 6; // the HPA scaled up
    assert_eq!(parts(&w.plan()), vec![], "no fight with the HPA");
}

#[test]
fn removing_max_replicas_deletes_the_hpa() {
    let mut w = World::serving(seed_spec());
    w.spec.max_replicas = None;
    let p = w.plan();
    assert!(
        parts(&p).contains(&(Part::Hpa, "delete")),
        "{:?}",
        parts(&p)
    );
}

#[test]
fn the_route_api_replaces_the_ingress() {
    let mut w = World::serving(BestieSpec {
        host: Some("pets.example.com".into()),
        ..seed_spec()
    });
    assert!(w.observed.live.contains_key(&Part::Ingress));
    w.observed.apis.route = true;
    let p = w.plan();
    assert_eq!(
        parts(&p),
        vec![(Part::Route, "apply"), (Part::Ingress, "delete")]
    );
    let route = applied(&p, Part::Route);
    assert_eq!(route["apiVersion"], "route.openshift.io/v1");
    assert_eq!(route["spec"]["host"], "pets.example.com");
    assert_eq!(route["spec"]["to"]["name"], "bestie-app");
}

#[test]
fn the_crunchy_operator_is_used_when_its_api_is_served() {
    let mut w = World::new(seed_spec());
    w.observed.apis.postgres_cluster = true;
    let p = w.act();
    assert_eq!(parts(&p), vec![(Part::PostgresCluster, "apply")]);
    let pg = applied(&p, Part::PostgresCluster);
    assert_eq!(pg["kind"], "PostgresCluster");
    assert_eq!(pg["metadata"]["name"], "bestie-db");
    w.observed.database = DbObs::Ready;
    let p = w.act();
    let job = applied(&p, Part::SeedJob);
    assert!(
        job["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .iter()
            .any(|e| e["valueFrom"]["secretKeyRef"]["name"] == "bestie-db-pguser-bestie"),
        "the app reads the operator's user Secret"
    );
}

#[test]
fn a_live_database_is_never_switched_to_another_kind() {
    let mut w = World::serving(seed_spec());
    w.observed.apis.postgres_cluster = true;
    assert_eq!(parts(&w.plan()), vec![]);
}

#[test]
fn without_a_database_the_app_comes_first_and_has_no_database_env() {
    let mut w = World::new(BestieSpec {
        database: Some(BestieDatabase {
            enabled: Some(false),
            ..BestieDatabase::default()
        }),
        max_replicas: None,
        ..seed_spec()
    });
    let p = w.act();
    assert_eq!(
        parts(&p),
        vec![
            (Part::AppDeployment, "apply"),
            (Part::AppService, "apply"),
            (Part::Ingress, "apply"),
        ]
    );
    assert!(
        applied(&p, Part::AppDeployment)["spec"]["template"]["spec"]["containers"][0]
            .get("env")
            .is_none()
    );
}

#[test]
fn podstatus_lists_every_pod_as_seed_000_shows_it() {
    let mut w = World::serving(seed_spec());
    w.observed.pods = vec![
        PodObs {
            name: "bestie-app-7bd89d6bf4-vpjqh".into(),
            phase: "Running".into(),
            image: "quay.io/opdev/bestie:1.3".into(),
        },
        PodObs {
            name: "bestie-app-7b44d67f9f-4sxjr".into(),
            phase: "Pending".into(),
            image: "quay.io/opdev/bestie:1.4".into(),
        },
    ];
    assert_eq!(
        w.plan().status.podstatus,
        vec![
            "bestie-app-7b44d67f9f-4sxjr : Pending : quay.io/opdev/bestie:1.4",
            "bestie-app-7bd89d6bf4-vpjqh : Running : quay.io/opdev/bestie:1.3",
        ]
    );
}

#[test]
fn conditions_keep_their_transition_time_unless_the_status_flips() {
    let mut conds = Vec::new();
    let c = |status: &str, reason: &str, t| Condition {
        type_: "Ready".into(),
        status: status.into(),
        reason: reason.into(),
        message: String::new(),
        last_transition_time: at(t),
        observed_generation: None,
    };
    assert!(set_condition(&mut conds, c("False", "A", 0)));
    assert!(set_condition(&mut conds, c("False", "B", 10)));
    assert_eq!(conds[0].last_transition_time, at(0));
    assert!(!set_condition(&mut conds, c("False", "B", 20)));
    assert!(set_condition(&mut conds, c("True", "B", 30)));
    assert_eq!(conds[0].last_transition_time, at(30));
    assert_eq!(conds.len(), 1);
}

#[test]
fn requeues_combine_to_the_soonest() {
    use Requeue::*;
    let table = [
        (Idle, Idle, Idle),
        (Idle, After(5), After(5)),
        (After(30), Idle, After(30)),
        (After(30), After(5), After(5)),
    ];
    for (a, b, want) in table {
        assert_eq!(a.combine(b), want, "{a:?} + {b:?}");
    }
}

#[test]
fn postgres_cluster_readiness_is_read_from_its_instances() {
    let table = [
        (None, false),
        (Some(json!({})), false),
        (
            Some(json!({"instances": [{"name": "i", "readyReplicas": 0}]})),
            false,
        ),
        (
            Some(json!({"instances": [{"name": "i", "readyReplicas": 1}]})),
            true,
        ),
    ];
    for (status, want) in table {
        assert_eq!(postgres_cluster_ready(status.as_ref()), want, "{status:?}");
    }
}

#[test]
fn the_progress_deadline_annotation_is_parsed_or_refused_with_a_reason() {
    assert_eq!(progress_deadline(None), Ok(600));
    assert_eq!(progress_deadline(Some("5")), Ok(5));
    for bad in ["0", "-3", "5s", ""] {
        let e = progress_deadline(Some(bad)).expect_err(bad);
        assert!(e.contains(ANNOTATION_PROGRESS_DEADLINE), "{e}");
    }
}

#[test]
fn the_database_secret_holds_the_password_and_a_uri() {
    let spec = seed_spec();
    let status = BestieStatus::default();
    let owner = owner();
    let input = Input {
        name: "bestie",
        namespace: "pets",
        generation: Some(1),
        spec: &spec,
        status: &status,
        owner: &owner,
        progress_deadline_seconds: 600,
        windows: &[],
        promote_now: None,
        dependencies_waiting: None,
    };
    let s = database_secret(&input, "s3cret");
    assert_eq!(s["metadata"]["name"], "bestie-db");
    assert_eq!(s["stringData"]["password"], "s3cret");
    assert_eq!(
        s["stringData"]["uri"],
        "postgresql://bestie:s3cret@bestie-db.pets.svc:5432/bestie"
    );
}

#[test]
fn an_object_of_someone_else_with_our_name_is_left_alone_and_reported() {
    let mut w = World::new(BestieSpec {
        database: Some(BestieDatabase {
            enabled: Some(false),
            ..BestieDatabase::default()
        }),
        ..seed_spec()
    });
    w.observed.foreign.insert(Part::AppService);
    let p = w.plan();
    assert!(
        !parts(&p).iter().any(|(part, _)| *part == Part::AppService),
        "{:?}",
        parts(&p)
    );
    assert!(
        parts(&p).contains(&(Part::AppDeployment, "apply")),
        "the rest goes on"
    );
    let ready = condition(&p.status, CONDITION_READY);
    assert_eq!(ready.reason, reason::NAME_TAKEN);
    assert!(
        ready.message.contains("Service bestie-app"),
        "{}",
        ready.message
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.warning && e.reason == reason::NAME_TAKEN)
    );
}

#[test]
fn a_failed_version_set_again_after_another_version_is_tried_again() {
    let mut w = World::serving(seed_spec());
    w.spec.version = "1.4-broken".into();
    w.act();
    w.rollout_stalls();
    w.act();
    w.pods_become_ready();
    w.act();
    w.spec.version = "1.3".into();
    let p = w.act();
    assert_eq!(
        p.status.failed_version, None,
        "the hold ends with the change"
    );
    w.spec.version = "1.4-broken".into();
    let p = w.act();
    assert_eq!(
        applied(&p, Part::AppDeployment)["spec"]["template"]["spec"]["containers"][0]["image"],
        "quay.io/opdev/bestie:1.4-broken"
    );
}

/// The app container the plan applies.
fn app_container(p: &Plan) -> &Value {
    &applied(p, Part::AppDeployment)["spec"]["template"]["spec"]["containers"][0]
}

/// The template the executor would compute for `spec` (the seed's StatefulSet database).
fn template_of(spec: &BestieSpec) -> BestieTemplate {
    BestieTemplate::of(spec, "bestie", Some(DbKind::StatefulSet))
}

#[test]
fn what_shapes_the_app_pods_makes_a_new_template_and_what_does_not_keeps_it() {
    let base = template_of(&seed_spec()).hash;
    type Change = Box<dyn Fn(&mut BestieSpec)>;
    let changes: Vec<(&str, Change, bool)> = vec![
        ("version", Box::new(|s| s.version = "1.4".into()), true),
        (
            "image",
            Box::new(|s| s.image = "quay.io/other/bestie".into()),
            true,
        ),
        ("port", Box::new(|s| s.port = Some(9000)), true),
        (
            "the default port written out",
            Box::new(|s| s.port = Some(DEFAULT_PORT)),
            false,
        ),
        ("size", Box::new(|s| s.size = 5), false),
        ("maxReplicas", Box::new(|s| s.max_replicas = None), false),
        (
            "host",
            Box::new(|s| s.host = Some("pets.example.com".into())),
            false,
        ),
        (
            "the seed command",
            Box::new(|s| {
                s.database = Some(BestieDatabase {
                    seed_command: Some(vec!["/seed".into()]),
                    ..BestieDatabase::default()
                })
            }),
            false,
        ),
    ];
    for (what, change, new_template) in changes {
        let mut s = seed_spec();
        change(&mut s);
        assert_eq!(
            template_of(&s).hash != base,
            new_template,
            "a change of {what} {} a new template",
            if new_template { "is" } else { "is not" }
        );
    }
    let without_db = BestieTemplate::of(&seed_spec(), "bestie", None);
    assert_ne!(without_db.hash, base, "the database env shapes the pods");
    assert_eq!(base.len(), 10, "5 bytes of SHA-256 in hex");
}

#[test]
fn a_completed_rollout_records_its_whole_template_as_the_last_healthy_one() {
    let w = World::serving(seed_spec());
    let healthy = w.status.last_healthy_template.clone().expect("recorded");
    assert_eq!(healthy, template_of(&seed_spec()));
    assert_eq!(
        (
            healthy.image.as_str(),
            healthy.version.as_str(),
            healthy.port
        ),
        ("quay.io/opdev/bestie", "1.3", DEFAULT_PORT)
    );
    assert_eq!(healthy.database_secret.as_deref(), Some("bestie-db"));
    assert_eq!(w.status.last_healthy_version.as_deref(), Some("1.3"));
}

#[test]
fn an_image_and_version_change_that_fails_rolls_back_to_the_old_image_and_version() {
    let mut w = World::serving(seed_spec());
    w.spec.image = "quay.io/other/bestie".into();
    w.spec.version = "1.4-broken".into();
    let p = w.act();
    assert_eq!(
        app_container(&p)["image"],
        "quay.io/other/bestie:1.4-broken"
    );
    w.rollout_stalls();
    let p = w.act();
    assert_eq!(
        app_container(&p)["image"],
        "quay.io/opdev/bestie:1.3",
        "the old image and version, not the new image at the old version"
    );
    let d = applied(&p, Part::AppDeployment);
    assert_eq!(
        d["spec"]["template"]["metadata"]["labels"][LABEL_VERSION],
        "1.3"
    );
    assert_eq!(
        d["metadata"]["annotations"][ANNOTATION_TEMPLATE_HASH],
        template_of(&seed_spec()).hash.as_str()
    );
    assert_eq!(p.status.failed_version.as_deref(), Some("1.4-broken"));
    assert_eq!(p.status.failed_hash, Some(template_of(&w.spec).hash));
    let ready = condition(&p.status, CONDITION_READY);
    assert!(
        ready.message.contains("1.4-broken") && ready.message.contains("quay.io/opdev/bestie:1.3"),
        "{}",
        ready.message
    );

    w.pods_become_ready();
    let p = w.act();
    assert_eq!(parts(&p), vec![], "the failed template is not retried");
    assert_eq!(p.status.appversion.as_deref(), Some("1.3"));
    assert_eq!(p.status.last_healthy_version.as_deref(), Some("1.3"));
    assert_eq!(
        p.status.last_healthy_template,
        Some(template_of(&seed_spec()))
    );
    assert_eq!(
        condition(&p.status, CONDITION_PROGRESSING).reason,
        reason::ROLLOUT_FAILED
    );
}

#[test]
fn a_port_and_version_change_that_fails_rolls_back_to_the_old_port_and_version() {
    let mut w = World::serving(seed_spec());
    w.spec.port = Some(9000);
    w.spec.version = "1.4-broken".into();
    let p = w.act();
    assert_eq!(app_container(&p)["ports"][0]["containerPort"], 9000);
    w.rollout_stalls();
    let p = w.act();
    let c = app_container(&p);
    assert_eq!(c["image"], "quay.io/opdev/bestie:1.3");
    assert_eq!(c["ports"][0]["containerPort"], DEFAULT_PORT);
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], DEFAULT_PORT);
    assert_eq!(c["livenessProbe"]["tcpSocket"]["port"], DEFAULT_PORT);
    assert_eq!(p.status.failed_version.as_deref(), Some("1.4-broken"));
}

#[test]
fn an_image_change_alone_is_a_rollout_and_is_rolled_back_when_it_fails() {
    let mut w = World::serving(seed_spec());
    w.spec.image = "quay.io/other/bestie".into();
    let p = w.act();
    assert_eq!(app_container(&p)["image"], "quay.io/other/bestie:1.3");
    let progressing = condition(&p.status, CONDITION_PROGRESSING);
    assert_eq!(progressing.reason, reason::ROLLING_OUT);
    assert!(
        progressing.message.contains("quay.io/other/bestie:1.3"),
        "the same version: the message names the image, {}",
        progressing.message
    );
    w.rollout_stalls();
    let p = w.act();
    assert_eq!(app_container(&p)["image"], "quay.io/opdev/bestie:1.3");
    let wanted = template_of(&w.spec);
    assert_eq!(p.status.failed_hash.as_deref(), Some(wanted.hash.as_str()));
    assert_eq!(
        p.status.failed_version.as_deref(),
        Some("1.3"),
        "the failed template's version, the same as the healthy one's"
    );
    let ready = condition(&p.status, CONDITION_READY);
    assert_eq!(ready.reason, reason::ROLLOUT_FAILED);
    assert!(
        ready.message.contains(&wanted.hash) && ready.message.contains("quay.io/other/bestie:1.3"),
        "{}",
        ready.message
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.warning && e.reason == reason::ROLLOUT_FAILED)
    );
    w.pods_become_ready();
    let p = w.act();
    assert_eq!(parts(&p), vec![]);
    assert_eq!(
        p.status.last_healthy_template,
        Some(template_of(&seed_spec()))
    );
}

#[test]
fn an_image_change_alone_that_becomes_ready_is_the_new_last_healthy_template() {
    let mut w = World::serving(seed_spec());
    w.spec.image = "quay.io/other/bestie".into();
    w.act();
    w.pods_become_ready();
    let p = w.act();
    assert_eq!(p.status.last_healthy_template, Some(template_of(&w.spec)));
    assert_eq!(p.status.last_healthy_version.as_deref(), Some("1.3"));
    assert_eq!(
        condition(&p.status, CONDITION_READY).reason,
        reason::ROLLOUT_COMPLETE
    );
}

#[test]
fn a_held_failure_is_retried_only_once_the_template_changes_again() {
    let mut w = World::serving(seed_spec());
    w.spec.image = "quay.io/other/bestie".into();
    w.spec.version = "1.4-broken".into();
    w.act();
    w.rollout_stalls();
    w.act();
    w.pods_become_ready();
    w.act();

    // Changes that shape no pod keep the hold.
    w.spec.size = 4;
    w.spec.max_replicas = None;
    let p = w.act();
    assert_eq!(app_container(&p)["image"], "quay.io/opdev/bestie:1.3");
    assert_eq!(p.status.failed_version.as_deref(), Some("1.4-broken"));
    w.pods_become_ready();
    w.act();

    // A fixed version on the new image is a new attempt, and it completes.
    w.spec.version = "1.4".into();
    let p = w.act();
    assert_eq!(app_container(&p)["image"], "quay.io/other/bestie:1.4");
    assert_eq!(
        (p.status.failed_version, p.status.failed_hash),
        (None, None)
    );
    w.pods_become_ready();
    let p = w.act();
    assert_eq!(p.status.appversion.as_deref(), Some("1.4"));
    assert_eq!(p.status.last_healthy_template, Some(template_of(&w.spec)));

    // The failed template asked for again, later, is tried again.
    w.spec.version = "1.4-broken".into();
    let p = w.act();
    assert_eq!(
        app_container(&p)["image"],
        "quay.io/other/bestie:1.4-broken"
    );
}

/// A Bestie an older Bosun ran: its status knows versions only, and its Deployment carries no template
/// hash (and another applied-hash stamp).
fn of_an_older_bosun(w: &mut World) {
    w.status.last_healthy_template = None;
    w.status.failed_hash = None;
    let app = w.observed.app.as_mut().expect("a Deployment");
    app.template_hash = None;
    w.observed.live.insert(
        Part::AppDeployment,
        Live {
            applied_hash: Some("an-older-stamp".into()),
        },
    );
}

#[test]
fn a_status_of_an_older_bosun_keeps_serving_and_records_the_template_without_a_rollout() {
    let mut w = World::serving(seed_spec());
    of_an_older_bosun(&mut w);
    let p = w.act();
    assert_eq!(
        p.status.last_healthy_template,
        Some(template_of(&seed_spec())),
        "the running Deployment is this spec's: its template is recorded"
    );
    let d = applied(&p, Part::AppDeployment);
    assert_eq!(
        d["metadata"]["annotations"][ANNOTATION_TEMPLATE_HASH],
        template_of(&seed_spec()).hash.as_str(),
        "the Deployment gains its template hash"
    );
    assert!(
        d["spec"]["template"]["metadata"]
            .get("annotations")
            .is_none(),
        "on the Deployment, not its pods: no pod restarts"
    );
    let ready = condition(&p.status, CONDITION_READY);
    assert_eq!(ready.reason, reason::ROLLOUT_COMPLETE);
    assert!(p.events.is_empty(), "no transition: {:?}", p.events);
}

#[test]
fn a_status_of_an_older_bosun_rolls_back_to_its_last_healthy_version_with_the_spec_fields() {
    let mut w = World::serving(seed_spec());
    of_an_older_bosun(&mut w);
    w.spec.image = "quay.io/other/bestie".into();
    w.spec.version = "1.4-broken".into();
    w.act();
    w.rollout_stalls();
    let p = w.act();
    assert_eq!(
        app_container(&p)["image"],
        "quay.io/other/bestie:1.3",
        "all such a status can tell: lastHealthyVersion on the spec's image"
    );
    assert_eq!(p.status.failed_version.as_deref(), Some("1.4-broken"));
    w.pods_become_ready();
    let p = w.act();
    assert_eq!(p.status.appversion.as_deref(), Some("1.3"));
    assert_eq!(
        p.status.last_healthy_template, None,
        "a rollback records no template: only a completed rollout of the spec does"
    );
    w.spec.version = "1.4".into();
    w.act();
    w.pods_become_ready();
    let p = w.act();
    assert_eq!(
        p.status.last_healthy_template,
        Some(template_of(&w.spec)),
        "recorded on the next healthy rollout"
    );
}

#[test]
fn a_hold_of_an_older_bosun_holds_while_its_version_is_asked_for() {
    let mut w = World::serving(seed_spec());
    w.spec.version = "1.4-broken".into();
    w.act();
    w.rollout_stalls();
    w.act();
    w.pods_become_ready();
    w.act();
    of_an_older_bosun(&mut w);
    assert_eq!(w.status.failed_version.as_deref(), Some("1.4-broken"));
    let p = w.act();
    assert_eq!(
        app_container(&p)["image"],
        "quay.io/opdev/bestie:1.3",
        "the hold stands (the Deployment only gains its template hash)"
    );
    assert_eq!(p.status.failed_hash, Some(template_of(&w.spec).hash));
    assert_eq!(
        condition(&p.status, CONDITION_READY).reason,
        reason::ROLLOUT_FAILED
    );
    w.spec.version = "1.5".into();
    let p = w.act();
    assert_eq!(app_container(&p)["image"], "quay.io/opdev/bestie:1.5");
    assert_eq!(
        (p.status.failed_version, p.status.failed_hash),
        (None, None)
    );
}

// --- Upgrade windows -----------------------------------------------------------------------------

fn image_applied(w: &mut World) -> String {
    w.observed.app.as_ref().expect("a Deployment").image.clone()
}

fn waiting_for_window(w: &World) -> Option<String> {
    w.status
        .conditions
        .iter()
        .find(|c| c.type_ == reason::WAITING_FOR_WINDOW && c.status == "True")
        .map(|c| c.message.clone())
}

/// Open every day 10:00-11:00 UTC (the World's clock starts at 08:00).
fn ten_to_eleven() -> Vec<crate::model::UpgradeWindow> {
    vec![crate::model::UpgradeWindow {
        kind: crate::model::WindowKind::Allow,
        schedule: "0 10 * * *".into(),
        duration: "1h".into(),
        time_zone: None,
        gate: crate::model::WindowGate::Start,
    }]
}

#[test]
fn a_version_bump_outside_its_window_keeps_the_old_template_until_the_window_opens() {
    let mut w = World::serving(seed_spec());
    w.spec = BestieSpec {
        version: "1.4".into(),
        upgrade_windows: ten_to_eleven(),
        ..seed_spec()
    };
    let p = w.act();
    assert_eq!(
        image_applied(&mut w),
        "quay.io/opdev/bestie:1.3",
        "1.3 keeps serving"
    );
    let why = waiting_for_window(&w).expect("a WaitingForWindow condition");
    assert!(
        why.contains("version 1.4 waits for window: opens Fri 10:00 UTC"),
        "{why}"
    );
    assert_eq!(
        p.requeue,
        Requeue::After(2 * 3600),
        "looks again when it opens"
    );
    w.now = 2 * 3600;
    w.act();
    assert_eq!(
        image_applied(&mut w),
        "quay.io/opdev/bestie:1.4",
        "rolled out in the window"
    );
    w.pods_become_ready();
    let p = w.act();
    assert_eq!(p.status.appversion.as_deref(), Some("1.4"));
    assert_eq!(waiting_for_window(&w), None);
}

#[test]
fn a_bestie_rolled_out_with_promote_now_records_it_and_a_revert_never_waits() {
    let mut w = World::serving(seed_spec());
    w.spec = BestieSpec {
        version: "1.4".into(),
        upgrade_windows: ten_to_eleven(),
        ..seed_spec()
    };
    w.act();
    assert!(waiting_for_window(&w).is_some());
    w.promote_now = Some("1.4".into());
    w.act();
    assert_eq!(image_applied(&mut w), "quay.io/opdev/bestie:1.4");
    assert!(w.status.window_override.is_some(), "recorded in status");
    w.pods_become_ready();
    w.act();
    // 1.5 fails and is rolled back; git goes back to 1.4 (the rollback commit, a revert) during
    // the window's closed hours: the last healthy template is never held.
    w.promote_now = None;
    w.spec = BestieSpec {
        version: "1.5-broken".into(),
        upgrade_windows: Vec::new(),
        ..seed_spec()
    };
    w.act();
    w.rollout_stalls();
    w.act();
    w.spec = BestieSpec {
        version: "1.4".into(),
        upgrade_windows: ten_to_eleven(),
        ..seed_spec()
    };
    w.act();
    assert_eq!(
        waiting_for_window(&w),
        None,
        "going back to the last healthy template never waits"
    );
    assert_eq!(image_applied(&mut w), "quay.io/opdev/bestie:1.4");
}

#[test]
fn a_first_install_outside_its_window_creates_no_app_deployment() {
    let mut w = World::new(BestieSpec {
        upgrade_windows: ten_to_eleven(),
        ..seed_spec()
    });
    w.act();
    w.observed.database = DbObs::Ready;
    w.act();
    w.observed.seed_job = JobObs::Succeeded;
    w.act();
    assert!(
        w.observed.app.is_none(),
        "nothing rolled out before the window"
    );
    assert!(waiting_for_window(&w).is_some());
    w.now = 2 * 3600;
    w.act();
    assert!(w.observed.app.is_some());
}

#[test]
fn a_new_template_waits_for_the_dependencies_the_same_commit_changed() {
    let mut w = World::serving(seed_spec());
    w.spec = BestieSpec {
        version: "1.4".into(),
        ..seed_spec()
    };
    w.dependencies_waiting = Some("pets/adoptions (Deploying)".into());
    w.act();
    assert_eq!(
        image_applied(&mut w),
        "quay.io/opdev/bestie:1.3",
        "1.3 keeps serving"
    );
    let waits = w
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == reason::WAITING_FOR_DEPENDENCIES)
        .expect("a WaitingForDependencies condition");
    assert!(
        waits
            .message
            .contains("waits for dependencies: pets/adoptions (Deploying)"),
        "{}",
        waits.message
    );
    w.dependencies_waiting = None;
    w.act();
    assert_eq!(image_applied(&mut w), "quay.io/opdev/bestie:1.4");
}
