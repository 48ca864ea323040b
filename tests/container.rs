//! Bosun in its container image, run as `deploy/` runs it.
//!
//! The image is the Dockerfile's `prebuilt` target with the very binary cargo built for these tests, on
//! a base made from Debian's packages (`scripts/container build`: the Dockerfile's own bases cannot be
//! pulled here), cached by content. Each container is given what the Deployment of
//! `deploy/deployment.yaml` gives its pod, read from the manifest: the user and group, a read-only root
//! filesystem, no capability, no privilege escalation, tmpfs for its emptyDirs, the ConfigMap's
//! configuration and the Secrets as files where its volumes are mounted, its environment, its
//! arguments, its memory and CPU limits, and the ServiceAccount's token and CA where a pod has them,
//! with `KUBERNETES_SERVICE_HOST`/`PORT` naming the test API server on loopback (host network). Bosun
//! finds its in-cluster configuration by itself. A change of the manifest that the test cannot carry
//! out (a volume or an environment source it does not know) fails it.
//!
//! End to end: two containers elect a leader on the Lease of `deploy/`; an upgrade goes to Healthy; a
//! push sent to the standby is forwarded to the leader; the leader's container is killed in the middle
//! of a canary and the other finishes the upgrade.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use bosun_core::model::{ManagedApplication, Phase};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use kube::config::Kubeconfig;
use serde_json::{Value, json};
use support::deploy::{
    AsServiceAccount, Installed, NAMESPACE, deployment, forbidden_lines, no_namespace_terminating,
    shipped_config,
};
use support::gitserver;
use support::process::{free_port, http_get, local, sample};
use support::upgrade::promoted_canary;
use support::webhook::{post_webhook_answer, sign_push};
use support::{TestNamespace, holds_for, wait_until};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/container");
/// Where a pod finds its ServiceAccount's token, CA and namespace.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Where the test mounts the git server's CA (a volume added to the Deployment's, as for a private CA).
const PRIVATE_CA_DIR: &str = "/etc/bosun/git-ca";
const WEBHOOK_SECRET: &str = "a-long-random-webhook-secret-for-the-container-test";
/// Seconds a leader's lease lasts (the Deployment keeps the default; shorter here to keep the test
/// quick).
const LEASE_SECONDS: &str = "5";

fn podman(args: &[&str]) -> Output {
    Command::new("podman")
        .args(args)
        .output()
        .expect("podman runs (scripts/container install)")
}

/// The image of these tests: the binary cargo built for them, in the Dockerfile's `prebuilt` target
/// (built once per run of this file; `scripts/container build` reuses an image of the same content).
fn image() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let out = Command::new(SCRIPT)
            .args(["build", env!("CARGO_BIN_EXE_bosun")])
            .output()
            .expect("scripts/container runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "scripts/container build:\n{stderr}");
        // Its size and the libraries the binary needs, in the test's output.
        eprintln!("{stderr}");
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    })
}

#[test]
fn the_image_holds_the_binary_cargo_built_with_every_library_it_needs_and_runs_bosun_run() {
    let image = image();
    let ours = Command::new(env!("CARGO_BIN_EXE_bosun"))
        .arg("--version")
        .output()
        .expect("bosun --version");
    let theirs = podman(&[
        "run",
        "--rm",
        "--pull=never",
        "--network=none",
        "--entrypoint=/usr/local/bin/bosun",
        image,
        "--version",
    ]);
    assert!(theirs.status.success(), "{theirs:?}");
    assert_eq!(
        theirs.stdout, ours.stdout,
        "the binary in the image is ours"
    );

    // The entrypoint is `bosun run`, as the Deployment's args expect; the user is 65532.
    let help = podman(&[
        "run",
        "--rm",
        "--pull=never",
        "--network=none",
        image,
        "--help",
    ]);
    assert!(help.status.success(), "{help:?}");
    assert!(
        String::from_utf8_lossy(&help.stdout).contains("--leader-elect"),
        "`bosun run --help`: {}",
        String::from_utf8_lossy(&help.stdout)
    );
    let user = podman(&["image", "inspect", "--format", "{{.Config.User}}", image]);
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "65532:65532");

    // As in distroless: the user has a name and a home, and OpenSSL (git over HTTPS) finds the CA
    // bundle through SSL_CERT_FILE.
    let passwd = image_file(image, "/etc/passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with("nonroot:x:65532:65532:") && l.contains(":/home/nonroot:")),
        "{passwd}"
    );
    let env = podman(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Env}}",
        image,
    ]);
    let env: Vec<String> = serde_json::from_slice(&env.stdout).expect("the image's environment");
    let bundle = env
        .iter()
        .find_map(|e| e.strip_prefix("SSL_CERT_FILE="))
        .unwrap_or_else(|| panic!("SSL_CERT_FILE in {env:?}"));
    let certificates = image_file(image, bundle)
        .matches("BEGIN CERTIFICATE")
        .count();
    assert!(
        certificates > 100,
        "{certificates} certificates in {bundle}"
    );
}

/// A file of the image, read through a container created (not started) for it.
fn image_file(image: &str, path: &str) -> String {
    let created = podman(&["create", "--pull=never", image]);
    assert!(created.status.success(), "{created:?}");
    let id = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("file");
    let out = podman(&["cp", &format!("{id}:{path}"), &copy.to_string_lossy()]);
    let _ = podman(&["rm", &id]);
    assert!(out.status.success(), "podman cp {path}: {out:?}");
    std::fs::read_to_string(&copy).expect("the copied file")
}

/// The instructions of the Dockerfile's stage `name`, but its COPY lines, and what it copies where.
fn stage(dockerfile: &str, name: &str) -> (Vec<String>, Vec<String>) {
    let mut lines = dockerfile
        .lines()
        .map(str::trim)
        .skip_while(|l| !(l.starts_with("FROM ") && l.ends_with(&format!(" AS {name}"))));
    let from = lines
        .next()
        .unwrap_or_else(|| panic!("Dockerfile: no stage {name}"));
    let body: Vec<&str> = lines
        .take_while(|l| !l.starts_with("FROM "))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let (copies, rest): (Vec<&str>, Vec<&str>) = body.iter().partition(|l| l.starts_with("COPY "));
    let destinations = copies
        .iter()
        .map(|l| l.rsplit(' ').next().expect("a destination").to_string())
        .collect();
    let mut instructions = vec![from.split(" AS ").next().expect("FROM").to_string()];
    instructions.extend(rest.iter().map(|l| l.to_string()));
    (instructions, destinations)
}

#[test]
fn the_tested_stage_of_the_dockerfile_is_the_shipped_one_but_for_where_the_binary_comes_from() {
    let dockerfile = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile"))
        .expect("the Dockerfile");
    let tested = stage(&dockerfile, "prebuilt");
    let shipped = stage(&dockerfile, "runtime");
    assert_eq!(tested, shipped, "the stages prebuilt and runtime differ");
    assert_eq!(shipped.1, ["/usr/local/bin/bosun"]);
    // The shipped image is the last stage: what a plain `docker build .` makes.
    let last = dockerfile
        .lines()
        .rfind(|l| l.starts_with("FROM "))
        .expect("a FROM");
    assert!(last.ends_with(" AS runtime"), "{last}");
}

#[test]
fn an_image_lacking_a_library_its_binary_needs_is_refused_and_not_kept() {
    // podman needs libraries (libgpgme, libseccomp, ...) that Bosun's runtime image has no reason to hold.
    let out = Command::new(SCRIPT)
        .args(["build", "/usr/bin/podman"])
        .output()
        .expect("scripts/container runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("lacks a shared library bosun needs")
            && stderr.contains("add its package to the runtime image"),
        "{stderr}"
    );
    let name = stderr
        .lines()
        .find_map(|l| l.split("building ").nth(1)?.split(": Dockerfile").next())
        .expect("the image's name in the log");
    let exists = podman(&["image", "exists", name]);
    assert!(!exists.status.success(), "{name} was kept");
}

// --- the Deployment, carried out by podman -------------------------------------------------------

/// What the cluster gives a pod of the Deployment beyond the manifest.
struct PodInputs {
    name: String,
    /// The data of each ConfigMap and Secret, by name.
    config_maps: BTreeMap<String, BTreeMap<String, String>>,
    secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// The ServiceAccount's token and the API server's CA, or none (automount off).
    service_account: Option<(String, String)>,
    /// The API server: `KUBERNETES_SERVICE_HOST` and `PORT`.
    api_server: (String, u16),
    /// Arguments after the manifest's.
    extra_args: Vec<String>,
    /// The CA of a private git server, as the README says to add it: a file of a volume of one's own
    /// (at [`PRIVATE_CA_DIR`]) named by `SSL_CERT_FILE`.
    private_ca: Option<String>,
}

/// A quantity of bytes as the manifest writes it (`64Mi`, `1Gi`).
fn bytes(quantity: &str) -> u64 {
    let units = [("Ki", 1 << 10), ("Mi", 1 << 20), ("Gi", 1 << 30)];
    let (n, unit) = units
        .iter()
        .find_map(|(s, u)| quantity.strip_suffix(s).map(|n| (n, *u)))
        .unwrap_or((quantity, 1));
    n.parse::<u64>()
        .unwrap_or_else(|_| panic!("a quantity of bytes: {quantity}"))
        * unit
}

/// Writes `data` as the files of a volume in `dir`, owned by root and the pod's fsGroup, `mode`.
fn volume_files(dir: &Path, data: &BTreeMap<String, String>, mode: u32, group: Option<u32>) {
    std::fs::create_dir_all(dir).expect("volume dir");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for (key, value) in data {
        let file = dir.join(key);
        std::fs::write(&file, value).expect("write a volume's file");
        std::os::unix::fs::chown(&file, Some(0), group).expect("chown (the tests run as root)");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

/// `podman run` arguments that run the Deployment's container as its pod would run, from the
/// manifest: what it cannot carry out fails the test.
fn podman_run_args(d: &Deployment, pod: &PodInputs, dir: &Path) -> Vec<String> {
    let namespace = d
        .metadata
        .namespace
        .clone()
        .expect("the Deployment's namespace");
    let spec = d
        .spec
        .clone()
        .expect("spec")
        .template
        .spec
        .expect("pod spec");
    assert_eq!(
        spec.containers.len(),
        1,
        "one container (teach this test more)"
    );
    assert!(
        spec.init_containers.is_none(),
        "no init container (teach this test)"
    );
    let c = &spec.containers[0];
    let psc = spec.security_context.clone().unwrap_or_default();
    let sc = c.security_context.clone().unwrap_or_default();
    let mut a: Vec<String> = ["run", "--detach", "--pull=never", "--network=host"]
        .map(String::from)
        .to_vec();
    a.push(format!("--name={}", pod.name));

    // Who it runs as, and what it may do.
    let uid = sc.run_as_user.or(psc.run_as_user).expect("runAsUser");
    let gid = sc.run_as_group.or(psc.run_as_group).expect("runAsGroup");
    if sc.run_as_non_root.or(psc.run_as_non_root) == Some(true) {
        assert_ne!(uid, 0, "runAsNonRoot with user 0");
    }
    a.push(format!("--user={uid}:{gid}"));
    let fs_group = psc.fs_group.map(|g| u32::try_from(g).expect("a group id"));
    if let Some(g) = fs_group {
        a.push(format!("--group-add={g}"));
    }
    if sc.read_only_root_filesystem == Some(true) {
        // Nothing writable but what the manifest mounts (podman would add tmpfs on /tmp, /run).
        a.extend(["--read-only", "--read-only-tmpfs=false"].map(String::from));
    }
    if sc.allow_privilege_escalation == Some(false) {
        a.push("--security-opt=no-new-privileges".into());
    }
    assert_ne!(sc.privileged, Some(true), "privileged");
    let caps = sc.capabilities.clone().unwrap_or_default();
    for cap in caps.drop.unwrap_or_default() {
        a.push(format!("--cap-drop={cap}"));
    }
    for cap in caps.add.unwrap_or_default() {
        a.push(format!("--cap-add={cap}"));
    }
    for profile in [sc.seccomp_profile.clone(), psc.seccomp_profile.clone()]
        .into_iter()
        .flatten()
    {
        // podman's default seccomp profile is the runtime's default.
        assert_eq!(profile.type_, "RuntimeDefault", "seccomp {profile:?}");
    }
    let limits = c
        .resources
        .clone()
        .and_then(|r| r.limits)
        .unwrap_or_default();
    if let Some(memory) = limits.get("memory") {
        a.push(format!("--memory={}", bytes(&memory.0)));
    }
    if let Some(cpu) = limits.get("cpu") {
        a.push(format!("--cpus={}", cpu.0));
    }

    // The volumes, where the container mounts them.
    let volumes = spec.volumes.clone().unwrap_or_default();
    for m in c.volume_mounts.clone().unwrap_or_default() {
        let v = volumes
            .iter()
            .find(|v| v.name == m.name)
            .unwrap_or_else(|| panic!("volume {}", m.name));
        let ro = if m.read_only == Some(true) { ",ro" } else { "" };
        let files = dir.join(&v.name);
        if let Some(e) = &v.empty_dir {
            let size = e
                .size_limit
                .as_ref()
                .map(|q| bytes(&q.0))
                .unwrap_or(64 << 20);
            a.push(format!(
                "--mount=type=tmpfs,destination={},tmpfs-size={size},tmpfs-mode=0777",
                m.mount_path
            ));
        } else if let Some(cm) = &v.config_map {
            let data = pod
                .config_maps
                .get(&cm.name)
                .unwrap_or_else(|| panic!("the ConfigMap {}", cm.name));
            let mode = cm.default_mode.map_or(0o644, |m| m as u32);
            volume_files(&files, data, mode, fs_group);
            a.push(format!(
                "--mount=type=bind,source={},destination={}{ro}",
                files.display(),
                m.mount_path
            ));
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.clone().expect("secretName");
            let data = match pod.secrets.get(&name) {
                Some(data) => data.clone(),
                None if s.optional == Some(true) => BTreeMap::new(),
                None => panic!("the Secret {name}"),
            };
            let mode = s.default_mode.map_or(0o644, |m| m as u32);
            volume_files(&files, &data, mode, fs_group);
            a.push(format!(
                "--mount=type=bind,source={},destination={}{ro}",
                files.display(),
                m.mount_path
            ));
        } else {
            panic!("volume {}: a kind this test does not carry out", v.name);
        }
    }
    // The ServiceAccount's token, CA and namespace, as the kubelet mounts them.
    if let Some((token, ca)) = &pod.service_account {
        assert_ne!(spec.automount_service_account_token, Some(false));
        let data = BTreeMap::from([
            ("token".to_string(), token.clone()),
            ("ca.crt".to_string(), ca.clone()),
            ("namespace".to_string(), namespace.clone()),
        ]);
        let files = dir.join("service-account");
        volume_files(&files, &data, 0o644, fs_group);
        a.push(format!(
            "--mount=type=bind,source={},destination={SERVICE_ACCOUNT_DIR},ro",
            files.display()
        ));
    }

    // The environment: the manifest's, and what the kubelet sets.
    let mut env = vec![
        (
            "KUBERNETES_SERVICE_HOST".to_string(),
            pod.api_server.0.clone(),
        ),
        (
            "KUBERNETES_SERVICE_PORT".to_string(),
            pod.api_server.1.to_string(),
        ),
    ];
    if let Some(ca) = &pod.private_ca {
        let files = dir.join("git-ca");
        let data = BTreeMap::from([("ca.crt".to_string(), ca.clone())]);
        volume_files(&files, &data, 0o644, fs_group);
        a.push(format!(
            "--mount=type=bind,source={},destination={PRIVATE_CA_DIR},ro",
            files.display()
        ));
        env.push(("SSL_CERT_FILE".into(), format!("{PRIVATE_CA_DIR}/ca.crt")));
    }
    for e in c.env.clone().unwrap_or_default() {
        let value = match (e.value, e.value_from) {
            (Some(v), None) => v,
            (None, Some(from)) => {
                let field = from
                    .field_ref
                    .unwrap_or_else(|| panic!("env {}: only fieldRef is carried out", e.name))
                    .field_path;
                match field.as_str() {
                    "metadata.name" => pod.name.clone(),
                    "metadata.namespace" => namespace.clone(),
                    // Host network: the pod's IP is loopback.
                    "status.podIP" => "127.0.0.1".into(),
                    other => panic!("env {}: fieldRef {other}", e.name),
                }
            }
            _ => panic!("env {}: a value or a fieldRef", e.name),
        };
        env.push((e.name, value));
    }
    for (k, v) in env {
        a.push(format!("--env={k}={v}"));
    }

    a.push(image().to_string());
    assert!(
        c.command.is_none(),
        "the image's entrypoint runs (`bosun run`)"
    );
    a.extend(c.args.clone().unwrap_or_default());
    a.extend(pod.extra_args.iter().cloned());
    a
}

/// A container of the test's; removed on drop, even when the test fails.
struct Container {
    name: String,
    _dir: tempfile::TempDir,
}

impl Container {
    fn start(pod: &PodInputs) -> Container {
        let dir = tempfile::tempdir().expect("temp dir");
        // The container's user reads the volumes' files through their directories.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let args = podman_run_args(&deployment(), pod, dir.path());
        let container = Container {
            name: pod.name.clone(),
            _dir: dir,
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = podman(&args);
        assert!(
            out.status.success(),
            "podman {}:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        container
    }

    /// What Bosun wrote so far (`podman logs`).
    fn log(&self) -> String {
        let out = podman(&["logs", &self.name]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    fn kill(&self) {
        let out = podman(&["kill", "--signal=KILL", &self.name]);
        assert!(out.status.success(), "{out:?}");
    }

    /// Whether it still runs, and its exit code when not.
    fn state(&self) -> (bool, i64) {
        let out = podman(&[
            "inspect",
            "--format",
            "{{.State.Running}} {{.State.ExitCode}}",
            &self.name,
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        let mut it = text.split_whitespace();
        (
            it.next() == Some("true"),
            it.next().and_then(|c| c.parse().ok()).unwrap_or(-1),
        )
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time=0", &self.name]);
    }
}

/// The test API server, and its CA in PEM, from the admin kubeconfig.
fn api_server() -> ((String, u16), String) {
    let path = std::env::var("BOSUN_CLUSTER_KUBECONFIG").expect("the test cluster (scripts/test)");
    let config = Kubeconfig::read_from(path).expect("admin kubeconfig");
    let cluster = config.clusters[0].cluster.clone().expect("a cluster");
    let server = cluster.server.expect("server");
    let (host, port) = server
        .strip_prefix("https://")
        .and_then(|a| a.trim_end_matches('/').rsplit_once(':'))
        .unwrap_or_else(|| panic!("https://HOST:PORT: {server}"));
    let ca = base64::engine::general_purpose::STANDARD
        .decode(cluster.certificate_authority_data.expect("CA data"))
        .expect("base64");
    (
        (host.to_string(), port.parse().expect("a port")),
        String::from_utf8(ca).expect("PEM"),
    )
}

/// The shipped config.yaml pointed at the test's repository and namespace, listening on `port` of
/// loopback (the containers share the host's network); every file it names as shipped.
fn config_for(repo: &gitserver::TestRepo, namespace: &str, port: u16) -> String {
    let mut config = shipped_config();
    let set = |value: &mut Value, key: &str, new: Value| {
        assert!(
            value.get(key).is_some(),
            "the shipped config.yaml has no {key}"
        );
        value[key] = new;
    };
    set(&mut config, "listen", json!(format!("127.0.0.1:{port}")));
    let source = &mut config["sources"][0];
    // Over HTTPS: libgit2 and the image's OpenSSL verify the server's certificate.
    set(source, "repo", json!(repo.https_url));
    set(source, "namespace", json!(namespace));
    set(source, "pollInterval", json!(1));
    set(source, "path", json!("apps"));
    set(source, "name", json!(namespace));
    serde_json::to_string_pretty(&config).expect("json")
}

/// A replica: its container and where it listens.
struct Replica {
    container: Container,
    port: u16,
}

impl Replica {
    fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http_get(local(self.port), "/metrics")?;
        sample(&body, name, &[])
    }

    fn readyz(&self) -> Option<String> {
        let (status, body) = http_get(local(self.port), "/readyz")?;
        (status == 200).then(|| body.trim().to_string())
    }
}

async fn lease_holder(admin: &kube::Client) -> Option<String> {
    Api::<Lease>::namespaced(admin.clone(), NAMESPACE)
        .get_opt("bosun")
        .await
        .ok()??
        .spec?
        .holder_identity
}

/// Fails at once, with the lines, when a replica's log shows a refusal (deploy/rbac.yaml).
fn nothing_forbidden(replicas: &[&Replica]) {
    for r in replicas {
        let log = r.container.log();
        let refused = forbidden_lines(&log);
        assert!(
            refused.is_empty(),
            "{} was refused something it needs:\n{}",
            r.container.name,
            refused.join("\n")
        );
    }
}

#[tokio::test]
async fn two_containers_elect_a_leader_upgrade_and_the_standby_finishes_when_the_leader_is_killed()
{
    let installed = Installed::new().await;
    let admin = installed.admin.clone();
    no_namespace_terminating(&admin).await;
    let ns = TestNamespace::new("container").await;
    let sa = AsServiceAccount::new(&admin).await;
    let (api, ca) = api_server();
    let git_ca = std::fs::read_to_string(&gitserver::shared().tls_ca).expect("the git server's CA");
    let repo = gitserver::shared().create_repo(
        &ns.name,
        &[("apps/shop.yaml", promoted_canary("v1").as_str())],
    );
    let secrets = BTreeMap::from([
        (
            "bosun-webhook".to_string(),
            BTreeMap::from([("secret".to_string(), WEBHOOK_SECRET.to_string())]),
        ),
        (
            "bosun-git".to_string(),
            BTreeMap::from([("token".to_string(), gitserver::shared().http_token.clone())]),
        ),
        (
            "bosun-github".to_string(),
            BTreeMap::from([(
                "token".to_string(),
                "a-forge-token-bosun-never-logs".to_string(),
            )]),
        ),
    ]);
    let start = |replica: &str| {
        let port = free_port();
        let pod = PodInputs {
            name: format!("bosun-{replica}-{}-{}", std::process::id(), &ns.name),
            config_maps: BTreeMap::from([(
                "bosun-config".to_string(),
                BTreeMap::from([("config.yaml".to_string(), config_for(&repo, &ns.name, port))]),
            )]),
            secrets: secrets.clone(),
            service_account: Some((sa.token.clone(), ca.clone())),
            api_server: api.clone(),
            extra_args: vec!["--lease-duration".into(), LEASE_SECONDS.into()],
            private_ca: Some(git_ca.clone()),
        };
        Replica {
            container: Container::start(&pod),
            port,
        }
    };

    let a = start("a");
    wait_until("a's container holds the Lease", || async {
        nothing_forbidden(&[&a]);
        (lease_holder(&admin).await? == a.container.name).then_some(())
    })
    .await;
    let b = start("b");
    let apps: Api<ManagedApplication> = Api::namespaced(admin.clone(), &ns.name);
    let phase_is = |phase: Phase, version: &'static str| {
        let apps = apps.clone();
        let (a, b) = (&a, &b);
        async move {
            wait_until(&format!("shop {phase} at {version}"), || async {
                nothing_forbidden(&[a, b]);
                let s = apps.get("shop").await.ok()?.status?;
                (s.phase == Some(phase) && s.target_version.as_deref() == Some(version))
                    .then_some(())
            })
            .await;
        }
    };
    phase_is(Phase::Healthy, "v1").await;

    // /readyz and /metrics answer from inside the containers: a leads, b stands by and knows where a is.
    let standby_ready = format!("ok: standby; the leader is at http://127.0.0.1:{}", a.port);
    wait_until("b stands by and knows the leader", || async {
        (b.readyz()? == standby_ready).then_some(())
    })
    .await;
    assert_eq!(a.readyz().as_deref(), Some("ok: leader"));
    assert_eq!(a.metric("bosun_leader"), Some(1.0), "a leads");
    assert_eq!(b.metric("bosun_leader"), Some(0.0), "b stands by");

    // A push sent to the standby is forwarded to the leader (the Service picks either replica).
    repo.commit("shop v2", &[("apps/shop.yaml", promoted_canary("v2"))]);
    let body =
        json!({"ref": "refs/heads/main", "repository": {"clone_url": repo.https_url}}).to_string();
    let (status, answer) = post_webhook_answer(
        &format!("127.0.0.1:{}", b.port),
        &sign_push(WEBHOOK_SECRET.as_bytes(), &body),
        &body,
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    assert!(
        answer.contains("forwarded to the leader") && answer.contains("answered 202"),
        "the standby hands the push to the leader: {answer}"
    );

    // The canary's first step waits for promotion under a; then a's container is killed.
    wait_until("the canary step waits for promotion", || async {
        nothing_forbidden(&[&a, &b]);
        let s = apps.get("shop").await.ok()?.status?;
        (s.target_version.as_deref() == Some("v2")
            && s.step_index == Some(0)
            && s.phase == Some(Phase::HealthChecking))
        .then_some(())
    })
    .await;
    let jobs: Api<Job> = Api::namespaced(admin.clone(), &ns.name);
    let job_uid = jobs
        .get("shop-migration-v2")
        .await
        .expect("the migration Job")
        .metadata
        .uid;
    holds_for(
        "b stays a standby while a renews",
        Duration::from_secs(2),
        || async { lease_holder(&admin).await.as_deref() == Some(a.container.name.as_str()) },
    )
    .await;
    a.container.kill();
    wait_until("a's container stopped", || async {
        (!a.container.state().0).then_some(())
    })
    .await;
    wait_until("b's container takes the Lease", || async {
        (lease_holder(&admin).await? == b.container.name).then_some(())
    })
    .await;
    apps.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"bosun.dev/promote-step": "0"}}})),
    )
    .await
    .expect("promote");
    phase_is(Phase::Healthy, "v2").await;
    assert_eq!(b.metric("bosun_leader"), Some(1.0), "b leads");
    let migrations = jobs
        .list(&ListParams::default().labels("type=migration"))
        .await
        .expect("jobs");
    let v2: Vec<_> = migrations
        .items
        .iter()
        .filter(|j| j.metadata.name.as_deref() == Some("shop-migration-v2"))
        .collect();
    assert_eq!(v2.len(), 1);
    assert_eq!(
        v2[0].metadata.uid, job_uid,
        "the same Job, not a second run"
    );

    // Bosun's logs, one JSON object a line as the Deployment asks, hold no credential.
    for r in [&a, &b] {
        let log = r.container.log();
        assert!(
            log.lines()
                .any(|l| serde_json::from_str::<Value>(l).is_ok()),
            "JSON lines:\n{log}"
        );
        for secret in secrets.values().flat_map(|s| s.values()).chain([&sa.token]) {
            assert!(
                !log.contains(secret.as_str()),
                "a credential reached the log"
            );
        }
    }
    drop(installed);
}

#[tokio::test]
async fn a_container_without_its_service_account_says_how_bosun_finds_the_cluster() {
    let port = free_port();
    let repo = gitserver::shared().create_repo(
        &format!("container-no-sa-{}-{port}", std::process::id()),
        &[("apps/.keep", "")],
    );
    let (api, _) = api_server();
    let pod = PodInputs {
        name: format!("bosun-no-sa-{}-{port}", std::process::id()),
        config_maps: BTreeMap::from([(
            "bosun-config".to_string(),
            BTreeMap::from([(
                "config.yaml".to_string(),
                config_for(&repo, "default", port),
            )]),
        )]),
        secrets: BTreeMap::from([
            (
                "bosun-webhook".to_string(),
                BTreeMap::from([("secret".to_string(), WEBHOOK_SECRET.to_string())]),
            ),
            (
                "bosun-git".to_string(),
                BTreeMap::from([("token".to_string(), gitserver::shared().http_token.clone())]),
            ),
        ]),
        // automountServiceAccountToken: false
        service_account: None,
        api_server: api,
        extra_args: vec![],
        private_ca: None,
    };
    let c = Container::start(&pod);
    let exit = wait_until("Bosun exits", || async {
        let (running, code) = c.state();
        (!running).then_some(code)
    })
    .await;
    let log = c.log();
    assert_ne!(exit, 0, "{log}");
    assert!(
        log.contains("set KUBECONFIG, or run in a pod with a ServiceAccount"),
        "{log}"
    );
}
