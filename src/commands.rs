//! Comment commands: `/bosun promote <app>`, `/bosun promote --now <app>`, `/bosun abort <app>` and
//! `/bosun retry <app>` in a comment on the pull request whose commit an app is rolling out act like
//! the CLI's `bosun promote|abort|retry` (the same annotation, decided by
//! [`crate::cli::ops::annotation_for`]; for a Bestie, `promote --now` only, as in the CLI), and Bosun
//! answers with a 👍 on the comment and a reply saying what it did, or a reply saying why not. Each
//! reply ends with a hidden marker naming the comment ([`reply_marker`]), so that a refusal is not
//! given twice either.
//!
//! The webhook ([`crate::webhook`]) verifies the comment event and hands a [`CommentEvent`] over a
//! channel; this task, on the leader only, acts: pure decisions first ([`parse`], [`select`],
//! [`decide`], [`record_delivery`]), then thin calls: the forge says whether the commenter may write
//! to the repository and whether the app's `status.targetRevision` belongs to the pull request; the
//! cluster gets one merge patch, guarded by the app's resourceVersion, holding both the command's
//! annotation and the delivery id, so a replayed delivery acts once, even after a restart.

use std::collections::VecDeque;

use bosun_core::model::{Bestie, ManagedApplication, ManagedApplicationStatus};
use bosun_core::names::ANNOTATION_REVISION;
use bosun_core::shown::cut;
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::cli::ops::{Request, annotation_for};
use crate::forge::Forge;
use crate::forge::client::Commenter;

/// The delivery ids of the comment commands acted on for an app, newest last, comma-separated.
pub const ANNOTATION_DELIVERIES: &str = "bosun.dev/comment-deliveries";

/// How many delivery ids an app remembers.
pub const DELIVERIES_KEPT: usize = 20;

/// How many comment events wait for the task before the webhook drops new ones.
pub const QUEUE: usize = 64;

/// A comment on a pull request, as the webhook read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommentEvent {
    /// The forge's delivery id (`X-GitHub-Delivery`, `X-Gitea-Delivery`, `X-Gitlab-Event-UUID`), or
    /// `comment-<id>` when the forge sent none.
    pub delivery: String,
    /// Every URL the forge gave for the repository, normalised.
    pub repos: Vec<String>,
    /// The pull (merge) request's number (GitLab: its iid).
    pub pr: u64,
    /// The comment's (note's) id.
    pub comment_id: u64,
    pub author: Commenter,
    /// The comment's text (capped by the webhook's body limit).
    pub body: String,
}

/// What a comment asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub request: Request,
    /// The namespace, when the comment said `namespace/name`.
    pub namespace: Option<String>,
    pub name: String,
}

/// How to use the commands, for replies.
pub const USAGE: &str = "`/bosun promote <app>`, `/bosun promote --now <app>`, `/bosun abort <app>` or \
                         `/bosun retry <app>` (`<app>` is `name` or `namespace/name`)";

/// The command of a comment: its first line starting with `/bosun `. `None` when no line does (the
/// comment is not for Bosun).
///
/// # Errors
/// What is wrong with the command line, for a reply.
pub fn parse(body: &str) -> Option<Result<Command, String>> {
    let line = body
        .lines()
        .map(str::trim)
        .find(|l| *l == "/bosun" || l.starts_with("/bosun "))?;
    let mut words: Vec<&str> = line.split_whitespace().skip(1).collect();
    let now = words.contains(&"--now");
    words.retain(|w| *w != "--now");
    let (verb, app) = match words.as_slice() {
        [verb, app] => (*verb, *app),
        [verb] => {
            return Some(Err(format!("`/bosun {}` needs an app: {USAGE}", cut(verb))));
        }
        _ => return Some(Err(format!("Bosun understands {USAGE}"))),
    };
    let request = match (verb, now) {
        ("promote", false) => Request::Promote,
        ("promote", true) => Request::PromoteNow,
        ("abort" | "retry", true) => {
            return Some(Err(format!("`--now` goes with `promote` only: {USAGE}")));
        }
        ("abort", false) => Request::Abort,
        ("retry", false) => Request::Retry,
        (other, _) => {
            return Some(Err(format!(
                "Bosun does not know `{}`: it understands {USAGE}",
                cut(other)
            )));
        }
    };
    if app.starts_with('-') {
        return Some(Err(format!(
            "Bosun does not know the option `{}`: it understands {USAGE}",
            cut(app)
        )));
    }
    let (namespace, name) = match app.split_once('/') {
        Some((ns, name)) => (Some(ns.to_string()), name.to_string()),
        None => (None, app.to_string()),
    };
    Some(Ok(Command {
        request,
        namespace,
        name,
    }))
}

/// One ManagedApplication as [`select`] sees it.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

/// The index of the app a command names among `apps`.
///
/// # Errors
/// For a reply: no app has that name (the apps there are listed), or several namespaces hold one.
pub fn select(command: &Command, apps: &[Candidate<'_>]) -> Result<usize, String> {
    let named: Vec<usize> = apps
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            a.name == command.name
                && command
                    .namespace
                    .as_deref()
                    .is_none_or(|ns| a.namespace == ns)
        })
        .map(|(i, _)| i)
        .collect();
    match named.as_slice() {
        [one] => Ok(*one),
        [] => {
            let mut known: Vec<String> = apps
                .iter()
                .map(|a| format!("`{}/{}`", a.namespace, a.name))
                .collect();
            known.sort();
            known.truncate(20);
            let shown = if known.is_empty() {
                "Bosun manages none".to_string()
            } else {
                format!("Bosun manages {}", known.join(", "))
            };
            Err(format!(
                "Bosun manages no app `{}`: {shown}",
                cut(&app_name(command))
            ))
        }
        many => {
            let mut where_: Vec<String> = many
                .iter()
                .map(|i| format!("`{}/{}`", apps[*i].namespace, apps[*i].name))
                .collect();
            where_.sort();
            Err(format!(
                "several apps are named `{}`: say which, one of {}",
                cut(&command.name),
                where_.join(", ")
            ))
        }
    }
}

fn app_name(command: &Command) -> String {
    match &command.namespace {
        Some(ns) => format!("{ns}/{}", command.name),
        None => command.name.clone(),
    }
}

/// The annotation a command sets on the app it selected, or why it sets none. `in_pr` says whether
/// the commit the app rolls out (`status.targetRevision`) belongs to the pull request commented on.
///
/// # Errors
/// A reply saying why nothing is done.
pub fn decide(
    command: &Command,
    app: &str,
    status: &ManagedApplicationStatus,
    pr: &str,
    in_pr: bool,
) -> Result<(&'static str, String), String> {
    if !in_pr {
        return Err(not_in_pr(
            command.request,
            app,
            status.target_revision.as_deref(),
            pr,
        ));
    }
    annotation_for(command.request, app, status)
}

/// Why a command on another pull request than the one whose commit `app` rolls out does nothing.
fn not_in_pr(request: Request, app: &str, revision: Option<&str>, pr: &str) -> String {
    let what = match revision {
        Some(rev) => format!("rolls out commit {}", cut(&short(rev))),
        None => "rolls out no commit".to_string(),
    };
    format!(
        "`{app}` {what}, which is not in {pr}: comment on the pull request whose commit it rolls out, or use `bosun {}` from the command line",
        verb(request)
    )
}

fn short(rev: &str) -> String {
    rev.chars().take(12).collect()
}

fn verb(request: Request) -> &'static str {
    match request {
        Request::Promote => "promote",
        Request::PromoteNow => "promote --now",
        Request::Abort => "abort",
        Request::Retry => "retry",
    }
}

/// The delivery ids an app remembers once `delivery` is added (the oldest forgotten beyond
/// [`DELIVERIES_KEPT`]), or `None` when it already holds it: the delivery was acted on.
pub fn record_delivery(existing: Option<&str>, delivery: &str) -> Option<String> {
    let mut ids: VecDeque<&str> = existing
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .collect();
    if ids.contains(&delivery) {
        return None;
    }
    ids.push_back(delivery);
    while ids.len() > DELIVERIES_KEPT {
        ids.pop_front();
    }
    Some(ids.into_iter().collect::<Vec<_>>().join(","))
}

/// What the reply says was done.
fn done(request: Request, app: &str, status: &ManagedApplicationStatus, value: &str) -> String {
    match request {
        Request::Promote => format!(
            "Promoted step {} of `{app}` ({}).",
            status.step_index.unwrap_or(0) + 1,
            cut(status.target_version.as_deref().unwrap_or("?"))
        ),
        Request::PromoteNow => format!(
            "Starting the upgrade of `{app}` to {} now, outside its upgrade windows.",
            cut(status.target_version.as_deref().unwrap_or("?"))
        ),
        Request::Abort => format!(
            "Aborting the upgrade of `{app}` to {}: it rolls back.",
            cut(value)
        ),
        Request::Retry => format!("Retrying {} for `{app}`.", cut(value)),
    }
}

/// The hidden line ending each reply of Bosun's, naming the comment it answers: before a refusal or
/// an "already done" is given again (a replayed delivery, perhaps to a Bosun restarted since), the
/// pull request is searched for it.
pub fn reply_marker(comment_id: u64) -> String {
    format!("<!-- bosun:reply-to:{comment_id} -->")
}

/// Starts the task that acts on comment commands, on the leader. `namespace` is the engine's (all
/// namespaces when `None`).
pub fn spawn(
    client: Client,
    namespace: Option<String>,
    forge: Forge,
    mut events: mpsc::Receiver<CommentEvent>,
) {
    tokio::spawn(async move {
        let mut seen: VecDeque<String> = VecDeque::new();
        while let Some(event) = events.recv().await {
            // A delivery replayed while Bosun runs is not even answered twice.
            if seen.contains(&event.delivery) {
                info!(delivery = %cut(&event.delivery), "comment delivery already handled");
                continue;
            }
            seen.push_back(event.delivery.clone());
            if seen.len() > 256 {
                seen.pop_front();
            }
            handle(&client, namespace.as_deref(), &forge, &event).await;
        }
    });
}

/// Acts on one comment and answers it.
async fn handle(client: &Client, namespace: Option<&str>, forge: &Forge, event: &CommentEvent) {
    let Some(parsed) = parse(&event.body) else {
        return;
    };
    info!(
        pr = event.pr,
        author = %cut(&event.author.login),
        command = %cut(event.body.lines().find(|l| l.trim_start().starts_with("/bosun")).unwrap_or("")),
        "comment command"
    );
    let marker = reply_marker(event.comment_id);
    let reply = match act(client, namespace, forge, event, parsed).await {
        // Done just now: news, whatever was said before.
        Ok(Some(text)) => {
            if let Err(e) = forge.react_to_comment(event.pr, event.comment_id).await {
                warn!(error = %e, pr = event.pr, "reacting to a comment command failed");
            }
            text
        }
        // Nothing done now: said once only, whoever said it first.
        outcome => {
            match forge.find_comment(event.pr, |b| b.contains(&marker)).await {
                Ok(Some(_)) => {
                    info!(
                        pr = event.pr,
                        comment = event.comment_id,
                        "comment command already answered"
                    );
                    return;
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(error = %e, pr = event.pr, "looking for an earlier reply failed; replying")
                }
            }
            match outcome {
                Ok(_) => "Bosun already acted on this comment; nothing more was done.".to_string(),
                Err(text) => text,
            }
        }
    };
    let body = format!("@{} {reply}\n\n{marker}", event.author.login);
    if let Err(e) = forge.create_pr_comment(event.pr, &body).await {
        warn!(error = %e, pr = event.pr, "replying to a comment command failed");
    }
}

const TROUBLE: &str = "Bosun could not act on this command just now; try again in a moment";

/// `Ok(Some(what was done))`, `Ok(None)` when the delivery was already acted on, or `Err(why not)`.
async fn act(
    client: &Client,
    namespace: Option<&str>,
    forge: &Forge,
    event: &CommentEvent,
    parsed: Result<Command, String>,
) -> Result<Option<String>, String> {
    match forge.can_write(&event.author).await {
        Ok(true) => {}
        Ok(false) => {
            return Err(format!(
                "sorry, only people who may write to this repository can give Bosun commands; nothing was done. Ask a maintainer, or use {USAGE} once you have write access."
            ));
        }
        // Gitea answers only a repository admin about someone else's permission.
        Err(e) if e.status() == Some(403) => {
            warn!(error = %e, "reading a commenter's permission was refused");
            return Err(
                "Bosun may not read who can write to this repository, so it takes no commands here; nothing was done. Its token's user needs to be an admin of the repository (on Gitea) or able to read its collaborators.".to_string(),
            );
        }
        Err(e) => {
            warn!(error = %e, "reading a commenter's permission failed");
            return Err(format!(
                "{TROUBLE} (the forge did not say whether you may write to the repository)."
            ));
        }
    }
    let command = parsed?;
    // `#7` on GitHub and Gitea, `!7` on GitLab.
    let pr = forge.words().reference(event.pr);
    match find(client, namespace, &command).await? {
        Found::App(app) => {
            let api = Api::namespaced(client.clone(), &app.namespace().unwrap_or_default());
            carry_out(forge, &api, *app, event, |app, in_pr| {
                let shown = shown(app);
                let status = app.status.clone().unwrap_or_default();
                let (key, value) = decide(&command, &shown, &status, &pr, in_pr)?;
                let said = done(command.request, &shown, &status, &value);
                Ok((key, value, said))
            })
            .await
        }
        Found::Bestie(bestie) => {
            let api = Api::namespaced(client.clone(), &bestie.namespace().unwrap_or_default());
            carry_out(forge, &api, *bestie, event, |bestie, in_pr| {
                let shown = shown(bestie);
                if command.request != Request::PromoteNow {
                    return Err(format!(
                        "`{shown}` is a Bestie: its rollouts have no steps to promote, abort or retry, so Bosun takes only `/bosun promote --now {}` for it (to start a rollout outside its upgrade windows).",
                        bestie.name_any()
                    ));
                }
                if !in_pr {
                    return Err(not_in_pr(command.request, &shown, revision(bestie).as_deref(), &pr));
                }
                let (key, value) = crate::cli::ops::bestie_promote_now(bestie)?;
                let said = format!(
                    "Starting the rollout of Bestie `{shown}` to {} now, outside its upgrade windows.",
                    cut(&value)
                );
                Ok((key, value, said))
            })
            .await
        }
    }
}

/// What a command names.
enum Found {
    App(Box<ManagedApplication>),
    Bestie(Box<Bestie>),
}

/// The ManagedApplication a command names, else the Bestie.
///
/// # Errors
/// A reply: none or several have that name, or the cluster could not be read.
async fn find(
    client: &Client,
    namespace: Option<&str>,
    command: &Command,
) -> Result<Found, String> {
    let apps = list::<ManagedApplication>(client, namespace).await?;
    let why = match select(command, &candidates(&apps)) {
        Ok(i) => return Ok(Found::App(Box::new(apps[i].clone()))),
        Err(why) => why,
    };
    if apps.iter().any(|a| a.name_any() == command.name) {
        return Err(why);
    }
    let besties = list::<Bestie>(client, namespace).await?;
    if !besties.iter().any(|b| b.name_any() == command.name) {
        return Err(why);
    }
    let i = select(command, &candidates(&besties))?;
    Ok(Found::Bestie(Box::new(besties[i].clone())))
}

async fn list<K>(client: &Client, namespace: Option<&str>) -> Result<Vec<K>, String>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    match api.list(&ListParams::default()).await {
        Ok(list) => Ok(list.items),
        Err(e) => {
            warn!(error = %e, kind = %K::kind(&K::DynamicType::default()), "listing for a comment command failed");
            Err(format!("{TROUBLE} (the cluster could not be read)."))
        }
    }
}

fn candidates<K: ResourceExt>(objects: &[K]) -> Vec<Candidate<'_>> {
    objects
        .iter()
        .map(|o| Candidate {
            namespace: o.meta().namespace.as_deref().unwrap_or_default(),
            name: o.meta().name.as_deref().unwrap_or_default(),
        })
        .collect()
}

fn shown<K: ResourceExt>(o: &K) -> String {
    format!("{}/{}", o.namespace().unwrap_or_default(), o.name_any())
}

/// The commit a Bestie was applied from.
fn revision(bestie: &Bestie) -> Option<String> {
    bestie.annotations().get(ANNOTATION_REVISION).cloned()
}

/// How often a command is tried on an object whose resourceVersion moved.
const ATTEMPTS: usize = 3;

/// What a decision gives: the annotation to set, its value, and what the reply says was done.
type Decided = (&'static str, String, String);

/// Decides and writes the command on `object`, reading it again when someone wrote it meanwhile (the
/// engine writes its status as it goes).
async fn carry_out<K>(
    forge: &Forge,
    api: &Api<K>,
    mut object: K,
    event: &CommentEvent,
    decide: impl Fn(&K, bool) -> Result<Decided, String>,
) -> Result<Option<String>, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Rolling,
{
    for _ in 0..ATTEMPTS {
        match attempt(forge, api, &object, event, &decide).await? {
            Attempt::Done(said) => return Ok(said),
            Attempt::Conflict => {}
        }
        object = api.get(&object.name_any()).await.map_err(|e| {
            warn!(error = %e, object = %shown(&object), "reading an object for a comment command failed");
            format!("{TROUBLE} (the cluster could not be read).")
        })?;
    }
    Err(format!(
        "`{}` kept changing while Bosun acted; nothing was done: comment again if it still applies.",
        shown(&object)
    ))
}

/// What a command acts on: the commit it rolls out.
trait Rolling {
    fn rolls_out(&self) -> Option<String>;
}

impl Rolling for ManagedApplication {
    fn rolls_out(&self) -> Option<String> {
        self.status.as_ref().and_then(|s| s.target_revision.clone())
    }
}

impl Rolling for Bestie {
    fn rolls_out(&self) -> Option<String> {
        revision(self)
    }
}

enum Attempt {
    /// What the reply says (`None`: the delivery was already acted on).
    Done(Option<String>),
    Conflict,
}

/// Decides and writes the command on `object` as it was read: one merge patch carrying the
/// command's annotation and the delivery id, guarded by the object's resourceVersion.
async fn attempt<K>(
    forge: &Forge,
    api: &Api<K>,
    object: &K,
    event: &CommentEvent,
    decide: &impl Fn(&K, bool) -> Result<Decided, String>,
) -> Result<Attempt, String>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Rolling,
{
    let shown = shown(object);
    // Before anything is decided: once acted on, the object has moved on and the command would
    // now be refused, which a replay must not say either.
    let Some(deliveries) = record_delivery(
        object
            .annotations()
            .get(ANNOTATION_DELIVERIES)
            .map(String::as_str),
        &event.delivery,
    ) else {
        info!(delivery = %cut(&event.delivery), object = %shown, "comment delivery already acted on");
        return Ok(Attempt::Done(None));
    };
    let in_pr = match object.rolls_out() {
        Some(rev) => match forge.pull_requests_for_commit(&rev).await {
            Ok(prs) => prs.iter().any(|p| p.number == event.pr),
            Err(e) => {
                warn!(error = %e, "listing the pull requests of a commit failed");
                return Err(format!(
                    "{TROUBLE} (the forge did not say which pull request `{shown}` rolls out)."
                ));
            }
        },
        None => false,
    };
    let (key, value, said) = decide(object, in_pr)?;
    let patch = json!({"metadata": {
        "resourceVersion": object.resource_version(),
        "annotations": {key: &value, ANNOTATION_DELIVERIES: deliveries},
    }});
    match api
        .patch(
            &object.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {
            info!(object = %shown, annotation = key, pr = event.pr, "comment command acted on");
            Ok(Attempt::Done(Some(said)))
        }
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict),
        Err(e) => {
            warn!(error = %e, object = %shown, "annotating for a comment command failed");
            Err(format!("{TROUBLE} (annotating `{shown}` failed)."))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bosun_core::model::Phase;

    fn command(request: Request, namespace: Option<&str>, name: &str) -> Command {
        Command {
            request,
            namespace: namespace.map(str::to_string),
            name: name.into(),
        }
    }

    #[test]
    fn the_first_bosun_line_is_the_command() {
        assert_eq!(parse("LGTM, ship it"), None);
        assert_eq!(
            parse("looks good\n/bosun promote shop\n/bosun abort shop"),
            Some(Ok(command(Request::Promote, None, "shop")))
        );
        assert_eq!(
            parse("  /bosun   promote --now team/shop  \r\n"),
            Some(Ok(command(Request::PromoteNow, Some("team"), "shop")))
        );
        assert_eq!(
            parse("/bosun promote shop --now"),
            Some(Ok(command(Request::PromoteNow, None, "shop")))
        );
        assert_eq!(
            parse("/bosun abort shop"),
            Some(Ok(command(Request::Abort, None, "shop")))
        );
        assert_eq!(
            parse("/bosun retry shop"),
            Some(Ok(command(Request::Retry, None, "shop")))
        );
        // Not a command: `/bosunx`, or /bosun inside a line.
        assert_eq!(
            parse("/bosunx promote shop\nplease /bosun promote shop"),
            None
        );
    }

    #[test]
    fn unknown_verbs_options_and_missing_apps_get_the_usage() {
        for (text, says) in [
            ("/bosun deploy shop", "does not know `deploy`"),
            ("/bosun promote", "needs an app"),
            ("/bosun", "Bosun understands"),
            ("/bosun promote shop cart", "Bosun understands"),
            (
                "/bosun abort --now shop",
                "`--now` goes with `promote` only",
            ),
            ("/bosun promote --force", "the option `--force`"),
        ] {
            let why = parse(text).expect("a command line").expect_err(text);
            assert!(why.contains(says), "{text}: {why}");
            assert!(why.contains("/bosun promote <app>"), "{text}: {why}");
        }
        let long = format!("/bosun {} shop", "x".repeat(10_000));
        let why = parse(&long).expect("a command line").expect_err("unknown");
        assert!(why.len() < 600, "the verb is cut: {} bytes", why.len());
    }

    #[test]
    fn the_app_is_found_by_name_or_namespace_and_name() {
        let apps = [
            Candidate {
                namespace: "team",
                name: "shop",
            },
            Candidate {
                namespace: "other",
                name: "shop",
            },
            Candidate {
                namespace: "team",
                name: "cart",
            },
        ];
        assert_eq!(
            select(&command(Request::Promote, None, "cart"), &apps),
            Ok(2)
        );
        assert_eq!(
            select(&command(Request::Promote, Some("other"), "shop"), &apps),
            Ok(1)
        );
        let why = select(&command(Request::Promote, None, "shop"), &apps).expect_err("two");
        assert!(why.contains("`other/shop`, `team/shop`"), "{why}");
        let why = select(&command(Request::Promote, None, "blog"), &apps).expect_err("none");
        assert!(why.contains("no app `blog`"), "{why}");
        assert!(why.contains("`team/cart`"), "{why}");
        let why = select(&command(Request::Promote, None, "blog"), &[]).expect_err("none");
        assert!(why.contains("Bosun manages none"), "{why}");
    }

    fn canary_paused(step: i32) -> ManagedApplicationStatus {
        ManagedApplicationStatus {
            phase: Some(Phase::Deploying),
            step_index: Some(step),
            target_version: Some("1.3.0".into()),
            target_revision: Some("4f2a9c1e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a39".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_promote_on_the_pull_request_of_the_rollout_promotes_the_step() {
        let status = canary_paused(1);
        assert_eq!(
            decide(
                &command(Request::Promote, None, "shop"),
                "team/shop",
                &status,
                "#7",
                true
            ),
            Ok((crate::engine::ANNOTATION_PROMOTE_STEP, "1".into()))
        );
        assert_eq!(
            done(Request::Promote, "team/shop", &status, "1"),
            "Promoted step 2 of `team/shop` (1.3.0)."
        );
    }

    #[test]
    fn a_command_on_another_pull_request_does_nothing_and_says_why() {
        let why = decide(
            &command(Request::Abort, None, "shop"),
            "team/shop",
            &canary_paused(0),
            "!8",
            false,
        )
        .expect_err("another pull request");
        assert!(why.contains("commit 4f2a9c1e8b7d"), "{why}");
        assert!(why.contains("not in !8"), "{why}");
        assert!(why.contains("`bosun abort`"), "{why}");
    }

    #[test]
    fn a_command_the_app_state_does_not_allow_says_why_like_the_cli() {
        let healthy = ManagedApplicationStatus {
            phase: Some(Phase::Healthy),
            ..Default::default()
        };
        let why = decide(
            &command(Request::Retry, None, "shop"),
            "team/shop",
            &healthy,
            "#7",
            true,
        )
        .expect_err("nothing failed");
        assert!(why.contains("no failed upgrade to retry"), "{why}");
    }

    #[test]
    fn a_delivery_is_recorded_once_and_only_the_last_ones_are_kept() {
        assert_eq!(record_delivery(None, "a"), Some("a".into()));
        assert_eq!(record_delivery(Some("a,b"), "c"), Some("a,b,c".into()));
        assert_eq!(record_delivery(Some("a,b"), "a"), None);
        let many: Vec<String> = (0..DELIVERIES_KEPT).map(|i| i.to_string()).collect();
        let kept = record_delivery(Some(&many.join(",")), "new").expect("new");
        assert_eq!(kept.split(',').count(), DELIVERIES_KEPT);
        assert!(kept.starts_with("1,") && kept.ends_with(",new"), "{kept}");
    }
}
