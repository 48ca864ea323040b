//! Processes a test starts: the `bosun` binary under test (or another server, such as Prometheus), its
//! stderr kept in a log file, stopped and reaped when dropped, even when the test fails or froze it.
//! And the two network helpers such tests need: a free loopback port and a plain `GET`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

/// A child process, killed and reaped on drop.
pub struct Process {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Process {
    /// `bosun` as the test cluster's admin (`KUBECONFIG` from `BOSUN_CLUSTER_KUBECONFIG`); `configure`
    /// gives its arguments, and may set another `KUBECONFIG` or any other variable.
    pub fn bosun(configure: impl FnOnce(&mut Command)) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_bosun"));
        command.env(
            "KUBECONFIG",
            std::env::var("BOSUN_CLUSTER_KUBECONFIG").expect("the test cluster (scripts/test)"),
        );
        configure(&mut command);
        Process::spawn(command, "the bosun binary")
    }

    /// Any command; `what` names it when it cannot start (say, how to install it).
    pub fn spawn(mut command: Command, what: &str) -> Process {
        let dir = tempfile::tempdir().expect("a directory for the log");
        let log = dir.path().join("stderr.log");
        let child = command
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("the log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        Process {
            child,
            log,
            _dir: dir,
        }
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// `kill -SIG pid`: `KILL`, `STOP`, `CONT`, `TERM`.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{sig} {}", self.id());
    }

    /// The exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // A process the test froze (SIGSTOP) must run again to die of SIGKILL at once... and be reaped.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS:`, `VmHWM:`), for the benchmarks.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("a free port")
        .local_addr()
        .expect("its address")
        .port()
}

/// `GET path` on a loopback server: the status code and the body, or `None` while it does not answer.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

/// The address of a loopback port.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The value of the sample `name` whose labels include every one of `labels` (in any order), in a
/// Prometheus text exposition such as `/metrics` answers.
pub fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| {
            let Some(rest) = l.strip_prefix(name) else {
                return false;
            };
            let set = match rest.strip_prefix('{') {
                Some(r) => r.split_once('}').map_or("", |(s, _)| s),
                None if rest.starts_with(' ') => "",
                None => return false,
            };
            labels
                .iter()
                .all(|(k, v)| set.split(',').any(|kv| kv == format!("{k}=\"{v}\"")))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// `bosun run` as the end-to-end tests run it on a test repository: its `apps` directory applied to
/// namespace `ns` (the source named like it), its engine acting in that namespace only, polling every
/// second, the git server's password read from `dir/password` ([`write_git_password`]), its cache in
/// `dir/cache`, and `/metrics` on `listen`.
pub fn bosun_run(repo_url: &str, ns: &str, dir: &Path, listen: &str) -> Process {
    bosun_run_with(repo_url, ns, dir, listen, &[])
}

/// [`bosun_run`] with more arguments.
pub fn bosun_run_with(
    repo_url: &str,
    ns: &str,
    dir: &Path,
    listen: &str,
    extra: &[&str],
) -> Process {
    bosun_run_on(super::gitserver::shared(), repo_url, ns, dir, listen, extra)
}

/// [`bosun_run_with`] for a repository of `server` (a git server of the test's own).
pub fn bosun_run_on(
    server: &super::gitserver::GitServer,
    repo_url: &str,
    ns: &str,
    dir: &Path,
    listen: &str,
    extra: &[&str],
) -> Process {
    bosun_run_configured(server, repo_url, ns, dir, listen, |c| {
        c.args(extra);
    })
}

/// [`bosun_run_on`], then `more` adds to the command (arguments, another `KUBECONFIG`).
pub fn bosun_run_configured(
    server: &super::gitserver::GitServer,
    repo_url: &str,
    ns: &str,
    dir: &Path,
    listen: &str,
    more: impl FnOnce(&mut Command),
) -> Process {
    Process::bosun(|c| {
        c.args(["run", "--repo", repo_url, "--path", "apps"])
            .args(["--namespace", ns, "--name", ns])
            .args(["--engine-namespace", ns, "--poll-interval", "1"])
            .args(["--git-username", &server.http_user])
            .arg("--git-password-file")
            .arg(dir.join("password"))
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .args(["--listen", listen]);
        more(c);
    })
}

/// Writes the test git server's password where [`bosun_run`] reads it.
pub fn write_git_password(dir: &Path) {
    write_git_password_of(super::gitserver::shared(), dir);
}

/// Writes `server`'s password where [`bosun_run_on`] reads it.
pub fn write_git_password_of(server: &super::gitserver::GitServer, dir: &Path) {
    std::fs::write(dir.join("password"), &server.http_password).expect("write the git password");
}
