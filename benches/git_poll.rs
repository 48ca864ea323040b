//! What polling a git source costs, against the real git server of `scripts/gitserver`:
//! the wall time of a poll of an unchanged remote (one ref advertisement, no fetch), the requests
//! and bytes it causes, and the cost of a poll that fetches one new commit.
//!
//! Run: `cargo bench --bench git_poll`. Prints a table; asserts nothing but the no-fetch invariant.

#[path = "../tests/support/gitserver.rs"]
mod gitserver;

use std::time::{Duration, Instant};

use bosun::git::{Auth, GitSource, Poll, RepoSpec, Secret, SourceLimits};

const ROUNDS: usize = 50;
const CHANGED_ROUNDS: usize = 20;

fn main() {
    let server = gitserver::GitServer::start();
    let files: Vec<(String, String)> = (0..100)
        .map(|i| {
            (
                format!("apps/app{i:03}.yaml"),
                format!("kind: App\nname: app{i}\nversion: 1.0.{i}\n"),
            )
        })
        .collect();
    let files: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let repo = server.create_repo("bench", &files);
    let cache = tempfile::tempdir().expect("a cache directory");

    println!("git_poll: 100 YAML files, {ROUNDS} rounds per figure, loopback gitserver\n");
    println!(
        "{:<44} {:>10} {:>10} {:>10}",
        "what", "median", "p99", "max"
    );

    for (label, url, auth) in [
        (
            "HTTP basic auth",
            repo.http_url.clone(),
            Auth::Basic {
                username: server.http_user.clone(),
                password: Secret::from(server.http_password.clone()),
            },
        ),
        (
            "HTTP anonymous (/public)",
            repo.http_public_url.clone(),
            Auth::None,
        ),
        ("git://", repo.git_url.clone(), Auth::None),
        (
            "SSH",
            repo.ssh_url.clone(),
            Auth::SshKey {
                username: server.ssh_user.clone(),
                private_key: server.ssh_key.clone(),
                passphrase: None,
                known_hosts: server.ssh_known_hosts.clone(),
            },
        ),
    ] {
        let spec = RepoSpec {
            url: url.clone(),
            branch: "main".to_owned(),
            path: "apps".to_owned(),
            auth,
            limits: SourceLimits::default(),
        };
        let mut source = GitSource::open(spec, cache.path()).expect("opening the source");
        let tip = match source.poll(None).expect("the first poll") {
            Poll::Changed { revision, .. } | Poll::Unchanged(revision) => revision,
        };
        let requests_before = server.requests(&repo.name).len();
        let mut times = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let poll = source.poll(Some(tip)).expect("polling");
            times.push(started.elapsed());
            assert_eq!(poll, Poll::Unchanged(tip));
        }
        report(&format!("unchanged poll, {label}"), &mut times);
        if url.starts_with("http") {
            let requests = &server.requests(&repo.name)[requests_before..];
            let posts = requests.iter().filter(|r| r.starts_with("POST")).count();
            println!(
                "    requests for {ROUNDS} polls: {} GET info/refs, {posts} POST git-upload-pack \
                 (pack bytes: 0 by construction: nothing is downloaded)",
                requests.len() - posts
            );
            assert_eq!(posts, 0, "an unchanged poll must not fetch");
        }
    }

    // remote_head alone, and a poll that fetches one new commit, over HTTP with basic auth.
    let spec = RepoSpec {
        url: repo.http_url.clone(),
        branch: "main".to_owned(),
        path: "apps".to_owned(),
        auth: Auth::Basic {
            username: server.http_user.clone(),
            password: Secret::from(server.http_password.clone()),
        },
        limits: SourceLimits::default(),
    };
    let mut source = GitSource::open(spec, cache.path()).expect("opening the source");
    let mut times = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        source.remote_head().expect("remote head");
        times.push(started.elapsed());
    }
    report("remote_head, HTTP basic auth", &mut times);

    let mut last = source.remote_head().expect("remote head");
    let mut times = Vec::with_capacity(CHANGED_ROUNDS);
    let mut read_times = Vec::with_capacity(CHANGED_ROUNDS);
    let (mut bytes, mut objects) = (Vec::new(), Vec::new());
    for i in 0..CHANGED_ROUNDS {
        repo.commit(
            &format!("bump app007 to 1.1.{i}"),
            &[(
                "apps/app007.yaml",
                format!("kind: App\nname: app7\nversion: 1.1.{i}\n"),
            )],
        );
        let started = Instant::now();
        let poll = source.poll(Some(last)).expect("polling");
        times.push(started.elapsed());
        let Poll::Changed {
            revision, transfer, ..
        } = poll
        else {
            panic!("a new commit was pushed, the poll must see it")
        };
        bytes.push(transfer.bytes);
        objects.push(transfer.objects);
        let started = Instant::now();
        let snapshot = source.read_tree(revision).expect("reading the tree");
        read_times.push(started.elapsed());
        assert_eq!(snapshot.files.len(), 100);
        last = revision;
    }
    report("poll after one new commit, HTTP basic auth", &mut times);
    bytes.sort_unstable();
    objects.sort_unstable();
    println!(
        "    transferred per new commit: median {} bytes, {} objects (max {} bytes)",
        bytes[bytes.len() / 2],
        objects[objects.len() / 2],
        bytes[bytes.len() - 1]
    );
    report("read_tree, 100 files", &mut read_times);
}

fn report(what: &str, times: &mut [Duration]) {
    times.sort_unstable();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what:<44} {:>10} {:>10} {:>10}",
        ms(pick(0.5)),
        ms(pick(0.99)),
        ms(times[times.len() - 1])
    );
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
