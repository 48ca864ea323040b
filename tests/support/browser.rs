//! A real browser for the dashboard tests: Debian's headless Chromium driven through its
//! chromedriver (WebDriver) on a loopback port, with a new, empty profile. `scripts/browser install`
//! installs both; `scripts/test` calls it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use super::process::{Process, free_port, local};

pub const CHROMIUM: &str = "/usr/bin/chromium";
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The flags Chromium needs here: headless, without a sandbox (we run as root) or a GPU, and without
/// the background connections that the closed network refuses.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
];

/// A headless Chromium, closed (and its driver stopped) on drop.
pub struct Browser {
    pub client: Client,
    driver: Process,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and one Chromium session with a `width`×`height` window.
    pub async fn start(width: u32, height: u32) -> Browser {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: run `scripts/browser install` (scripts/test does)"
            );
        }
        let port = free_port();
        let mut command = Command::new(CHROMEDRIVER);
        command.arg(format!("--port={port}"));
        // Its own process group, with the Chromium it starts: dropped, the whole group is killed.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let driver = Process::spawn(command, "chromedriver (scripts/browser install)");
        // It answers with keep-alive whatever the request asks: wait for its port, not a whole answer.
        super::wait_explained(
            Duration::from_secs(30),
            "chromedriver to listen",
            || driver.log(),
            || async move { std::net::TcpStream::connect(local(port)).ok() },
        )
        .await;
        let profile = tempfile::tempdir().expect("a Chromium profile directory");
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.path().display()));
        args.push(format!("--window-size={width},{height}"));
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "starting Chromium through chromedriver: {e}\n{}",
                    driver.log()
                )
            });
        Browser {
            client,
            driver,
            _profile: profile,
        }
    }

    /// The text of the first element `css` matches, if any.
    pub async fn text(&self, css: &str) -> Option<String> {
        let element = self.client.find(Locator::Css(css)).await.ok()?;
        element.text().await.ok()
    }

    /// Waits until the text of `css` satisfies `ok` (the page updating itself, or loading), and
    /// returns it; fails with the page's text after `limit`.
    pub async fn until_text(
        &self,
        limit: Duration,
        css: &str,
        what: &str,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = std::time::Instant::now() + limit;
        loop {
            if let Some(text) = self.text(css).await
                && ok(&text)
            {
                return text;
            }
            if std::time::Instant::now() > deadline {
                let page = self.text("body").await.unwrap_or_default();
                panic!("timed out after {limit:?} waiting for {what} ({css})\npage:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Writes a PNG of the window to `dir/name.png` and returns its path.
    pub async fn screenshot(&self, dir: &Path, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::create_dir_all(dir).expect("the screenshot directory");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("writing the screenshot");
        eprintln!("screenshot: {}", path.display());
        path
    }

    /// Ends the browser session (Chromium exits).
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }

    /// The chromedriver's log so far.
    pub fn driver_log(&self) -> String {
        self.driver.log()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Chromium and its helpers, even when the test failed before `close`.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Where the dashboard tests write their screenshots: `$BOSUN_SCREENSHOTS`, else
/// `target/tmp/dashboard-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    std::env::var_os("BOSUN_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots"))
}
