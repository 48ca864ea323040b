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
    }
}

struct World {
    spec: BestieSpec,
    status: BestieStatus,
    observed: Observed,
    owner: OwnerReference,
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
        };
        plan(&input, &self.observed, &at(0))
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
