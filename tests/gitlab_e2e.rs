//! The whole loop through the real `bosun run --forge gitlab`, on the real test cluster and git server,
//! with GitLab played by a local wiremock server that answers with the shapes of GitLab's REST
//! documentation (fixtures/gitlab/) and remembers what it was sent, as GitLab would: commit statuses
//! by `name` in GitLab's states, one note on the merge request edited in place with PUT, the rollback
//! refused by a protected branch and opened as a merge request, a plan preview read from
//! `refs/merge-requests/N/head` on a `Merge Request Hook`, and `/bosun promote` in a `Note Hook` from
//! a Developer, answered with an award emoji and a note, refused to a Reporter. The project sits in a
//! nested group (`platform/web/apps`), so every path carries its id URL-encoded.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bosun_core::model::{ManagedApplication, Phase};
use bosun_core::preview::{PREVIEW_CONTEXT, PREVIEW_MARKER};
use bosun_core::report::COMMENT_MARKER;
use serde_json::{Value, json};
use support::forge::fixture_of;
use support::gitserver::{self, TestRepo};
use support::process::{Process, free_port};
use support::webhook::post_event;
use support::{TestNamespace, holds_for, install_crds, wait_explained};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const FILE: &str = "apps/shop.yaml";
const TOKEN: &str = "glpat-e2e-TEST-never-logged";
const HOOK_TOKEN: &str = "gitlab-e2e-hook-token";
/// The project's path, as GitLab's API names it.
const PROJECT: &str = "/api/v4/projects/platform%2Fweb%2Fapps";
/// The merge request every commit on `main` came from.
const MR: u64 = 7;
/// The open merge request a plan preview is for.
const PREVIEW_MR: u64 = 8;
/// Members of the project: a Developer (may push) and a Reporter (may not).
const DEVELOPER: u64 = 17;
const REPORTER: u64 = 21;

/// GitLab with a memory: what it was sent, answered in GitLab's shapes.
#[derive(Clone, Default)]
struct GitLab(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    /// Every status set, oldest first: `{sha, name, status, description}`.
    statuses: Vec<Value>,
    /// The notes of each merge request, oldest first.
    notes: BTreeMap<u64, Vec<Value>>,
    /// Award emoji given: (merge request, note).
    emoji: Vec<(u64, u64)>,
    /// The merge requests Bosun opened.
    opened: Vec<Value>,
    /// The head of the open merge request [`PREVIEW_MR`], once it exists.
    preview_head: Option<String>,
}

fn merge_request(iid: u64, state: &str, source: &str, target: &str, sha: &str) -> Value {
    let mut m = fixture_of("gitlab", "merge-request-created.json");
    m["id"] = (1000 + iid).into();
    m["iid"] = iid.into();
    m["state"] = state.into();
    m["source_branch"] = source.into();
    m["target_branch"] = target.into();
    m["sha"] = sha.into();
    m["merged_at"] = if state == "merged" {
        "2026-12-05T09:00:00.000Z".into()
    } else {
        Value::Null
    };
    m["web_url"] =
        format!("https://gitlab.example.com/platform/web/apps/-/merge_requests/{iid}").into();
    m
}

fn not_found() -> ResponseTemplate {
    ResponseTemplate::new(404).set_body_json(json!({"message": "404 Not found"}))
}

fn query(r: &Request, key: &str) -> Option<String> {
    r.url
        .query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

impl Respond for GitLab {
    fn respond(&self, r: &Request) -> ResponseTemplate {
        let Some(rest) = r.url.path().strip_prefix(PROJECT) else {
            return not_found();
        };
        let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
        let mut s = self.0.lock().expect("the simulation's memory");
        let body = || serde_json::from_slice::<Value>(&r.body).unwrap_or(Value::Null);
        match (r.method.as_str(), parts.as_slice()) {
            ("POST", ["statuses", sha]) => {
                let b = body();
                let name = b["name"].as_str().unwrap_or("default").to_string();
                let state = b["state"].as_str().unwrap_or_default().to_string();
                let last = s
                    .statuses
                    .iter()
                    .rev()
                    .find(|x| x["sha"] == *sha && x["name"] == name.as_str());
                if last.is_some_and(|l| l["status"] == state.as_str()) {
                    // GitLab refuses a transition to the state a status is in.
                    return ResponseTemplate::new(400)
                        .set_body_json(fixture_of("gitlab", "status-same-state.json"));
                }
                let mut created = fixture_of("gitlab", "status-created.json");
                created["sha"] = (*sha).into();
                created["name"] = name.into();
                created["status"] = state.into();
                created["description"] = b["description"].clone();
                created["target_url"] = b["target_url"].clone();
                s.statuses.push(created.clone());
                ResponseTemplate::new(201).set_body_json(created)
            }
            ("GET", ["repository", "commits", sha, "statuses"]) => {
                let mine: Vec<Value> = s
                    .statuses
                    .iter()
                    .rev()
                    .filter(|x| x["sha"] == *sha)
                    .cloned()
                    .collect();
                ResponseTemplate::new(200).set_body_json(mine)
            }
            ("GET", ["repository", "commits", sha, "merge_requests"]) => {
                let of = if s.preview_head.as_deref() == Some(*sha) {
                    merge_request(PREVIEW_MR, "opened", "bump-cart", "main", sha)
                } else {
                    merge_request(MR, "merged", "bump-shop", "main", sha)
                };
                ResponseTemplate::new(200).set_body_json(json!([of]))
            }
            ("GET", ["merge_requests"]) => {
                let source = query(r, "source_branch");
                let target = query(r, "target_branch");
                let mut all = s.opened.clone();
                if let Some(head) = &s.preview_head {
                    all.push(merge_request(
                        PREVIEW_MR,
                        "opened",
                        "bump-cart",
                        "main",
                        head,
                    ));
                }
                let found: Vec<Value> = all
                    .into_iter()
                    .filter(|m| m["state"] == "opened")
                    .filter(|m| {
                        source
                            .as_ref()
                            .is_none_or(|b| m["source_branch"] == b.as_str())
                    })
                    .filter(|m| {
                        target
                            .as_ref()
                            .is_none_or(|b| m["target_branch"] == b.as_str())
                    })
                    .collect();
                ResponseTemplate::new(200).set_body_json(found)
            }
            ("POST", ["merge_requests"]) => {
                let b = body();
                let (source, target) = (
                    b["source_branch"].as_str().unwrap_or_default(),
                    b["target_branch"].as_str().unwrap_or_default(),
                );
                if s.opened
                    .iter()
                    .any(|m| m["source_branch"] == source && m["target_branch"] == target)
                {
                    return ResponseTemplate::new(409)
                        .set_body_json(fixture_of("gitlab", "merge-request-exists.json"));
                }
                let iid = 9 + s.opened.len() as u64;
                let mut m = merge_request(iid, "opened", source, target, "");
                m["title"] = b["title"].clone();
                m["description"] = b["description"].clone();
                s.opened.push(m.clone());
                ResponseTemplate::new(201).set_body_json(m)
            }
            ("GET", ["merge_requests", iid, "notes"]) => {
                let iid: u64 = iid.parse().unwrap_or(0);
                // One page: no `x-next-page`.
                let page = query(r, "page").unwrap_or_else(|| "1".into());
                let notes = if page == "1" {
                    s.notes.get(&iid).cloned().unwrap_or_default()
                } else {
                    Vec::new()
                };
                ResponseTemplate::new(200).set_body_json(notes)
            }
            ("POST", ["merge_requests", iid, "notes"]) => {
                let iid: u64 = iid.parse().unwrap_or(0);
                let id = 3000 + s.notes.values().map(Vec::len).sum::<usize>() as u64;
                let mut note = fixture_of("gitlab", "note-created.json");
                note["id"] = id.into();
                note["noteable_iid"] = iid.into();
                note["body"] = body()["body"].clone();
                s.notes.entry(iid).or_default().push(note.clone());
                ResponseTemplate::new(201).set_body_json(note)
            }
            ("PUT", ["merge_requests", iid, "notes", id]) => {
                let iid: u64 = iid.parse().unwrap_or(0);
                let id: u64 = id.parse().unwrap_or(0);
                let text = body()["body"].clone();
                match s
                    .notes
                    .get_mut(&iid)
                    .and_then(|n| n.iter_mut().find(|n| n["id"] == id))
                {
                    Some(note) => {
                        note["body"] = text;
                        ResponseTemplate::new(200).set_body_json(note.clone())
                    }
                    None => not_found(),
                }
            }
            ("POST", ["merge_requests", iid, "notes", id, "award_emoji"]) => {
                let pair = (iid.parse().unwrap_or(0), id.parse().unwrap_or(0));
                s.emoji.push(pair);
                ResponseTemplate::new(201)
                    .set_body_json(fixture_of("gitlab", "award-emoji-created.json"))
            }
            ("GET", ["members", "all", user]) => match user.parse::<u64>() {
                Ok(DEVELOPER) => ResponseTemplate::new(200)
                    .set_body_json(fixture_of("gitlab", "member-developer.json")),
                Ok(REPORTER) => ResponseTemplate::new(200)
                    .set_body_json(fixture_of("gitlab", "member-reporter.json")),
                _ => not_found(),
            },
            _ => not_found(),
        }
    }
}

impl GitLab {
    fn statuses_of(&self, sha: &str, name: &str) -> Vec<(String, String)> {
        let s = self.0.lock().expect("memory");
        s.statuses
            .iter()
            .filter(|x| x["sha"] == sha && x["name"] == name)
            .map(|x| {
                (
                    x["status"].as_str().unwrap_or_default().to_string(),
                    x["description"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    fn notes(&self, iid: u64) -> Vec<String> {
        let s = self.0.lock().expect("memory");
        s.notes
            .get(&iid)
            .map(|n| {
                n.iter()
                    .map(|n| n["body"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn marked(&self, iid: u64, marker: &str) -> Vec<String> {
        self.notes(iid)
            .into_iter()
            .filter(|n| n.starts_with(marker))
            .collect()
    }

    fn opened(&self) -> Vec<Value> {
        self.0.lock().expect("memory").opened.clone()
    }

    fn emoji(&self) -> Vec<(u64, u64)> {
        self.0.lock().expect("memory").emoji.clone()
    }
}

/// A namespace, the app's repository, GitLab, and the files a Bosun of the scenario reads.
struct Scenario {
    ns: TestNamespace,
    repo: TestRepo,
    dir: tempfile::TempDir,
    server: MockServer,
    gitlab: GitLab,
}

impl Scenario {
    async fn new(prefix: &str, first: &str) -> Scenario {
        let ns = TestNamespace::new(prefix).await;
        install_crds(&ns.client).await;
        let repo = gitserver::shared().create_repo(&ns.name, &[(FILE, first)]);
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(dir.path().join("token"), TOKEN).expect("token");
        std::fs::write(dir.path().join("hook"), HOOK_TOKEN).expect("hook token");
        std::fs::write(
            dir.path().join("password"),
            &gitserver::shared().http_password,
        )
        .expect("password");
        let server = MockServer::start().await;
        let gitlab = GitLab::default();
        Mock::given(wiremock::matchers::any())
            .respond_with(gitlab.clone())
            .mount(&server)
            .await;
        Scenario {
            ns,
            repo,
            dir,
            server,
            gitlab,
        }
    }

    /// `bosun run --forge gitlab` on the repository, polling every `poll` seconds, on `listen`.
    fn bosun(&self, poll: u32, listen: &str, extra: &[&str]) -> Process {
        Process::bosun(|c| {
            c.args(["run", "--repo", &self.repo.http_url, "--path", "apps"])
                .args(["--namespace", &self.ns.name, "--name", &self.ns.name])
                .args(["--engine-namespace", &self.ns.name])
                .args(["--poll-interval", &poll.to_string()])
                .args(["--git-username", &gitserver::shared().http_user])
                .arg("--git-password-file")
                .arg(self.dir.path().join("password"))
                .arg("--cache-dir")
                .arg(self.dir.path().join("cache"))
                .args(["--listen", listen])
                .arg("--webhook-secret-file")
                .arg(self.dir.path().join("hook"))
                .args(["--forge", "gitlab"])
                .args(["--forge-api-url", &format!("{}/api/v4", self.server.uri())])
                .args(["--forge-repo", "platform/web/apps"])
                .arg("--forge-token-file")
                .arg(self.dir.path().join("token"))
                .args(extra);
        })
    }

    async fn reaches(&self, bosun: &Process, phase: Phase, version: &str) -> ManagedApplication {
        let api = self.ns.api::<ManagedApplication>();
        until(bosun, &format!("shop {phase} at {version}"), || async {
            let app = api.get("shop").await.ok()?;
            let s = app.status.as_ref()?;
            (s.phase == Some(phase) && s.target_version.as_deref() == Some(version)).then_some(app)
        })
        .await
    }

    fn context(&self) -> String {
        format!("bosun/{}/shop", self.ns.name)
    }

    /// Posts a GitLab webhook of `event` (`Note Hook`, `Merge Request Hook`) with its token.
    async fn hook(&self, listen: &str, event: &str, uuid: &str, body: &Value) -> u16 {
        let body = body.to_string();
        let (code, answer) = post_event(
            listen,
            &[
                ("X-Gitlab-Event", event),
                ("X-Gitlab-Token", HOOK_TOKEN),
                ("X-Gitlab-Event-UUID", uuid),
            ],
            &body,
        )
        .await;
        assert!(code < 300, "{event}: {code} {answer}");
        code
    }

    /// The project as GitLab's webhooks describe it.
    fn project(&self) -> Value {
        json!({
            "id": 35,
            "name": "apps",
            "path_with_namespace": "platform/web/apps",
            "git_http_url": self.repo.http_url,
            "web_url": "https://gitlab.example.com/platform/web/apps",
        })
    }

    /// A `Note Hook` for a new note `id` on merge request [`MR`] by user `user`.
    fn note(&self, id: u64, user: (u64, &str), text: &str) -> Value {
        json!({
            "object_kind": "note",
            "event_type": "note",
            "user": {"id": user.0, "username": user.1, "name": user.1},
            "project_id": 35,
            "project": self.project(),
            "object_attributes": {
                "id": id, "note": text, "noteable_type": "MergeRequest", "author_id": user.0,
                "action": "create", "project_id": 35,
            },
            "merge_request": {"id": 1000 + MR, "iid": MR, "target_branch": "main", "source_branch": "bump-shop", "state": "merged"},
        })
    }
}

/// Waits for `probe`, and on a timeout shows Bosun's log.
async fn until<T, Fut>(bosun: &Process, what: &str, probe: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Option<T>>,
{
    wait_explained(Duration::from_secs(90), what, || bosun.log(), probe).await
}

fn app(version: &str) -> String {
    support::upgrade::two_step_canary(version, 5, None)
}

fn server_head(repo: &TestRepo, branch: &str) -> Option<String> {
    let bare = repo.bare.display().to_string();
    let out = std::process::Command::new("git")
        .args(["--git-dir", &bare, "rev-parse", "--verify", "-q", branch])
        .output()
        .expect("git rev-parse");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[tokio::test]
async fn a_failing_canary_is_told_on_the_merge_request_and_rolled_back_through_a_merge_request() {
    let sc = Scenario::new("gl-e2e", &app("v1")).await;
    let listen = format!("127.0.0.1:{}", free_port());
    let bosun = sc.bosun(1, &listen, &[]);
    sc.reaches(&bosun, Phase::Healthy, "v1").await;

    // The bump (merged through merge request !7) fails its canary. From its merge on, only a merge
    // request changes main (the canary fails after its progress deadline of 5 s, long after this).
    let bump = sc
        .repo
        .commit("shop: v2-broken", &[(FILE, app("v2-broken"))]);
    gitserver::shared().protect(&sc.repo.name, "main");
    sc.reaches(&bosun, Phase::Failed, "v2-broken").await;
    let main_before = server_head(&sc.repo, "main").expect("main");
    assert_eq!(main_before, bump);

    // main is protected: the rollback is a merge request from a branch of Bosun's.
    let opened = until(&bosun, "a rollback merge request", || async {
        let o = sc.gitlab.opened();
        (!o.is_empty()).then_some(o)
    })
    .await;
    let rollback = &opened[0];
    assert_eq!(rollback["target_branch"], "main", "{rollback}");
    let branch = rollback["source_branch"].as_str().expect("a branch");
    assert!(branch.starts_with("bosun/rollback-"), "{branch}");
    let iid = rollback["iid"].as_u64().expect("an iid");
    let tip = server_head(&sc.repo, &format!("refs/heads/{branch}")).expect("the branch");
    let restored = sc.repo.git(&[
        "--git-dir",
        &sc.repo.bare.display().to_string(),
        "show",
        &format!("{tip}:{FILE}"),
    ]);
    assert_eq!(
        restored.trim_end(),
        app("v1").trim_end(),
        "the branch restores v1"
    );

    // The note on !7 tells all of it, and names the rollback merge request.
    let web_url = rollback["web_url"].as_str().expect("a URL").to_string();
    let note = until(
        &bosun,
        "the note links the rollback merge request",
        || async {
            let [n] = sc.gitlab.marked(MR, COMMENT_MARKER).try_into().ok()?;
            n.contains(&web_url).then_some(n)
        },
    )
    .await;
    assert!(
        note.contains(&format!("waits in merge request [!{iid}]({web_url})")),
        "GitLab's words: {note}"
    );
    let failed_row = note
        .lines()
        .find(|l| l.starts_with("| ❌ |"))
        .unwrap_or_else(|| panic!("a failed step row: {note}"));
    assert!(failed_row.contains("Canary 50 %"), "{failed_row}");

    // The commit's status, in GitLab's states: running, then failed for good.
    let context = sc.context();
    until(&bosun, "a failed status naming the rollback", || async {
        let told = sc.gitlab.statuses_of(&bump, &context);
        let (state, description) = told.last()?;
        (state == "failed" && description.contains(&format!("rollback MR !{iid}"))).then_some(())
    })
    .await;

    // Settled: nothing loops, nothing is written twice, main is untouched.
    holds_for(
        "nothing more is opened or pushed",
        Duration::from_secs(6),
        || async {
            sc.gitlab.opened().len() == 1
                && server_head(&sc.repo, "main").as_deref() == Some(&main_before)
        },
    )
    .await;
    let told = sc.gitlab.statuses_of(&bump, &context);
    assert_eq!(
        told.first().map(|t| t.0.as_str()),
        Some("running"),
        "{told:#?}"
    );
    let failed_at = told.iter().position(|t| t.0 == "failed").expect("failed");
    assert!(
        told[failed_at..].iter().all(|t| t.0 == "failed"),
        "{told:#?}"
    );
    for (i, t) in told.iter().enumerate() {
        assert!(!told[..i].contains(t), "{t:?} sent twice: {told:#?}");
    }
    assert_eq!(
        sc.gitlab.marked(MR, COMMENT_MARKER).len(),
        1,
        "one note of Bosun's"
    );
    // Every request carried the token (GitLab takes an access token as a bearer), and the log never
    // shows it.
    for r in sc.server.received_requests().await.expect("recording") {
        assert_eq!(
            r.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some(format!("Bearer {TOKEN}").as_str()),
            "{} {}",
            r.method,
            r.url
        );
    }
    assert!(!bosun.log().contains(TOKEN));
}

#[tokio::test]
async fn a_merge_request_gets_a_plan_preview_and_a_developer_promotes_a_canary_by_note() {
    let paused = |v: &str| {
        support::upgrade::two_step_canary(v, 60, None).replace(
            "        - weight: 50\n",
            "        - weight: 50\n          pause: untilPromoted\n",
        )
    };
    let sc = Scenario::new("gl-e2e-mr", &paused("v1")).await;
    let listen = format!("127.0.0.1:{}", free_port());
    // Previews every 10 minutes: only the webhook makes one now.
    let bosun = sc.bosun(1, &listen, &["--preview-interval", "600"]);
    sc.reaches(&bosun, Phase::Healthy, "v1").await;

    // A merge request !8 into main changes shop to v2; GitLab serves its head at
    // refs/merge-requests/8/head, and its Merge Request Hook says it was opened.
    sc.repo.git(&["checkout", "-q", "-b", "bump-shop"]);
    let head = sc.repo.commit_unpushed("shop: v2", &[(FILE, paused("v2"))]);
    let bare = sc.repo.bare.display().to_string();
    sc.repo.git(&[
        "push",
        "-q",
        "-f",
        &bare,
        &format!("HEAD:refs/merge-requests/{PREVIEW_MR}/head"),
    ]);
    sc.gitlab.0.lock().expect("memory").preview_head = Some(head.clone());
    let opened = json!({
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": {"id": DEVELOPER, "username": "maintainer"},
        "project": sc.project(),
        "object_attributes": {"iid": PREVIEW_MR, "action": "open", "state": "opened", "target_branch": "main", "source_branch": "bump-shop", "last_commit": {"id": head}},
    });
    sc.hook(&listen, "Merge Request Hook", "mr-open-1", &opened)
        .await;
    let preview = until(&bosun, "the plan preview note on !8", || async {
        sc.gitlab.marked(PREVIEW_MR, PREVIEW_MARKER).pop()
    })
    .await;
    let ns = &sc.ns.name;
    assert!(
        preview.contains(&format!(
            "`~ upgrade` ManagedApplication `{ns}/shop`: `v1` → `v2`"
        )),
        "{preview}"
    );
    assert!(
        preview.contains("canary: 50 %, pause until promoted → 100 %"),
        "{preview}"
    );
    let plan = until(&bosun, "the bosun/plan status on the head", || async {
        sc.gitlab.statuses_of(&head, PREVIEW_CONTEXT).pop()
    })
    .await;
    assert_eq!(plan.0, "success", "{plan:?}");
    assert_eq!(
        sc.ns
            .api::<ManagedApplication>()
            .get("shop")
            .await
            .expect("shop")
            .spec
            .version,
        "v1",
        "nothing of the merge request reaches the cluster"
    );

    // Merged: main gets the bump, and the canary waits at 50 % to be promoted.
    sc.repo.git(&["checkout", "-q", "main"]);
    let merged = sc.repo.commit("shop: v2 (!8)", &[(FILE, paused("v2"))]);
    until(&bosun, "the canary paused at its first step", || async {
        let s = sc
            .ns
            .api::<ManagedApplication>()
            .get("shop")
            .await
            .ok()?
            .status?;
        (s.step_index == Some(0)
            && s.target_revision.as_deref() == Some(merged.as_str())
            && s.phase == Some(Phase::HealthChecking))
        .then_some(())
    })
    .await;

    // A Reporter may not push, so may not promote: a note says so, and nothing moves.
    sc.hook(
        &listen,
        "Note Hook",
        "note-reporter",
        &sc.note(5001, (REPORTER, "reporter"), "/bosun promote shop"),
    )
    .await;
    let refusal = until(&bosun, "a refusal note", || async {
        sc.gitlab
            .notes(MR)
            .into_iter()
            .find(|n| n.starts_with("@reporter"))
    })
    .await;
    assert!(refusal.contains("nothing was done"), "{refusal}");
    assert!(sc.gitlab.emoji().is_empty());

    // A Developer's promote: the canary goes on, a 👍 on the note, and a note saying what was done.
    let promote = sc.note(
        5002,
        (DEVELOPER, "maintainer"),
        "Ship it.\n/bosun promote shop",
    );
    sc.hook(&listen, "Note Hook", "note-developer", &promote)
        .await;
    sc.reaches(&bosun, Phase::Healthy, "v2").await;
    let reply = until(&bosun, "a note saying what was done", || async {
        sc.gitlab
            .notes(MR)
            .into_iter()
            .find(|n| n.starts_with("@maintainer"))
    })
    .await;
    assert!(reply.contains("Promoted step 1"), "{reply}");
    assert_eq!(sc.gitlab.emoji(), vec![(MR, 5002)]);

    // The same delivery again: acted on and answered once.
    sc.hook(&listen, "Note Hook", "note-developer", &promote)
        .await;
    holds_for("no second answer", Duration::from_secs(3), || async {
        sc.gitlab.emoji().len() == 1
            && sc
                .gitlab
                .notes(MR)
                .iter()
                .filter(|n| n.starts_with("@maintainer"))
                .count()
                == 1
    })
    .await;
    assert!(!bosun.log().contains(TOKEN));
}
