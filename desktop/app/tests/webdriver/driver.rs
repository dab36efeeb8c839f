//! What every WebDriver test sets up and tears down the same way: `tauri-driver` for the app
//! binary with the test's own HOME and XDG directories, the app's log, the session, the
//! screenshot directory, and the end that leaves no process of the app behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use connect_testkit::{free_port, wait_until};

use crate::webdriver::Session;
use crate::{comm, process_tree};

/// The app binary the sessions launch: `WEBHOOK_CONNECT_APP_BIN`, else this package's.
pub fn app_binary() -> PathBuf {
    match std::env::var_os("WEBHOOK_CONNECT_APP_BIN") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_BIN_EXE_webhook-connect-app")),
    }
}

/// `docs/screenshots`, created if missing: where the tests leave the views they show.
pub fn screenshots_dir() -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots");
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// A screenshot of the page at a failure, in the temporary directory as
/// `{name}-failure.png`; where it is goes to stderr.
pub async fn failure_screenshot(s: &Session, name: &str) {
    let shot = std::env::temp_dir().join(format!("{name}-failure.png"));
    if s.screenshot(&shot).await.is_ok() {
        eprintln!("screenshot at the failure: {}", shot.display());
    }
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `tauri-driver`; the app it launches inherits its environment and its stderr.
pub struct Driver {
    child: Killed,
    url: String,
    log: PathBuf,
}

impl Driver {
    /// Starts `tauri-driver` on free ports with `HOME`, `XDG_CONFIG_HOME` and
    /// `XDG_DATA_HOME` under `home`, the app's stderr written to `log`, and `RUST_LOG` set
    /// to `rust_log` (`None`: removed, so the app's own default filter applies); returns once
    /// it answers.
    pub async fn start(
        home: &Path,
        config_home: &Path,
        log: &Path,
        rust_log: Option<&str>,
    ) -> Result<Self> {
        let port = free_port();
        let native = free_port();
        let mut cmd = Command::new("tauri-driver");
        cmd.args([
            "--port",
            &port.to_string(),
            "--native-port",
            &native.to_string(),
        ])
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", config_home)
        .env("XDG_DATA_HOME", home.join(".local/share"));
        match rust_log {
            Some(filter) => cmd.env("RUST_LOG", filter),
            None => cmd.env_remove("RUST_LOG"),
        };
        let child = Killed(
            // WebKitWebDriver never completes a session when WebKit's compositing is off (the
            // app's default on Linux, see startup_env.rs): turn it back on for the tests. The
            // app still re-executes itself with its other defaults.
            cmd.env("WEBKIT_DISABLE_COMPOSITING_MODE", "0")
                .stdout(Stdio::null())
                // The app's log (it inherits this): read by the tests, printed on failure.
                .stderr(std::fs::File::create(log)?)
                .spawn()
                .context("tauri-driver (cargo install tauri-driver --version '^2' --locked)")?,
        );
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        wait_until(Duration::from_secs(20), "tauri-driver to listen", || {
            let url = format!("{url}/status");
            let http = http.clone();
            async move { http.get(url).send().await.is_ok() }
        })
        .await?;
        Ok(Self {
            child,
            url,
            log: log.to_owned(),
        })
    }

    /// A session that launches the app binary (fails, timing out, when it shows no window).
    pub async fn session(&self) -> Result<Session> {
        Session::start(&self.url, &app_binary()).await
    }

    /// The app's process (it replaces itself, so it is found by name under the driver).
    pub fn app_pid(&self) -> Option<u32> {
        process_tree(self.child.0.id())
            .into_iter()
            .find(|p| comm(*p).starts_with("webhook-connect"))
    }

    /// What the app has logged so far.
    pub fn app_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Ends `session`, then whatever the driver started that is still running (the app
    /// replaced itself: nothing of it may outlive the test), then the driver.
    pub async fn stop(self, session: Option<&Session>) {
        if let Some(s) = session {
            let _ = s.end().await;
        }
        let left: Vec<String> = process_tree(self.child.0.id())
            .into_iter()
            .skip(1)
            .map(|p| p.to_string())
            .collect();
        if !left.is_empty() {
            let _ = Command::new("kill").args(&left).status();
        }
    }
}
