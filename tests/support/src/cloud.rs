//! The cloud as a real child process on loopback (`webhook-connect-cloud` from the target dir),
//! with helpers to talk to it: the one harness the e2e suite, the engine's and the desktop app's
//! integration tests share.
//!
//! The process gets its own temporary directory (or one the caller keeps) holding
//! `webhooks.json` (the given document) and `data/` (the embedded buffer), a free port, the
//! admin token [`ADMIN`] and a 5 s heartbeat. [`Cloud::restart`] starts it again on the same
//! port, directory and environment. Benches pick the binary (a release build), keep the data
//! directory, wait for `/health` 200 rather than `/health/live`, and read how long start-up took.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::wait::wait_for;
use crate::{ChildProcess, free_port, workspace_bin};

/// The admin token every harness cloud is started with.
pub const ADMIN: &str = "admin-token-for-tests";

/// How long a cloud may take to answer `/health/live`, before [`crate::timing`]'s scale (the wait
/// ends at the first answer, so the margin costs nothing on a fast machine).
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `webhook-connect-cloud` child process (killed on drop).
pub struct Cloud {
    pub proc: ChildProcess,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub port: u16,
    /// Holds `webhooks.json` and `data/`.
    pub dir: CloudDir,
    pub http: reqwest::Client,
    /// How long the last start (or restart) took from spawn until ready.
    pub started_in: Duration,
    launch: Launch,
}

/// The directory of a [`Cloud`]: a temporary one (removed on drop) or one the caller keeps.
pub enum CloudDir {
    Temporary(tempfile::TempDir),
    Kept(PathBuf),
}

impl CloudDir {
    pub fn path(&self) -> &Path {
        match self {
            CloudDir::Temporary(t) => t.path(),
            CloudDir::Kept(p) => p,
        }
    }
}

/// What every (re)start of a [`Cloud`] uses.
#[derive(Clone)]
struct Launch {
    bin: Option<PathBuf>,
    env: Vec<(String, String)>,
    ready: Ready,
}

/// When a started cloud counts as ready.
#[derive(Clone, Copy)]
enum Ready {
    /// `/health/live` answers 2xx (the process serves), within 20 s.
    Live,
    /// `/health` answers 200 (store and configuration loaded), within the given time.
    Healthy(Duration),
}

/// How to start a [`Cloud`]: its webhooks document, more environment, the client's timeout.
pub struct CloudBuilder {
    webhooks: Value,
    env: Vec<(String, String)>,
    http_timeout: Duration,
    bin: Option<PathBuf>,
    keep_dir: Option<PathBuf>,
    ready: Ready,
    self_service: Option<String>,
}

impl CloudBuilder {
    /// Adds environment variables for the cloud (after the harness's own, so they win).
    pub fn envs(mut self, env: &[(&str, &str)]) -> Self {
        self.env
            .extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self
    }

    /// Self-service hosting in `mode` (`keys` or `open`), with `WEBHOOK_CONNECT_PUBLIC_URL`
    /// set to this cloud's own base URL.
    pub fn self_service(mut self, mode: &str) -> Self {
        self.self_service = Some(mode.to_owned());
        self
    }

    /// The timeout of [`Cloud::http`] (30 s unless set).
    pub fn http_timeout(mut self, timeout: Duration) -> Self {
        self.http_timeout = timeout;
        self
    }

    /// Runs this binary instead of the workspace's debug `webhook-connect-cloud` (a bench's
    /// release build).
    pub fn binary(mut self, bin: impl Into<PathBuf>) -> Self {
        self.bin = Some(bin.into());
        self
    }

    /// Uses (and keeps) this directory for `webhooks.json` and `data/` instead of a temporary
    /// one; created if missing. Data already there is opened as it is.
    pub fn keep_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.keep_dir = Some(dir.into());
        self
    }

    /// Ready means `/health` answers 200 (not only `/health/live`), waiting up to `timeout`:
    /// what a bench times as start-up with a large store.
    pub fn ready_when_healthy(mut self, timeout: Duration) -> Self {
        self.ready = Ready::Healthy(timeout);
        self
    }

    /// Writes the webhooks, spawns the cloud and waits until it is ready (`/health/live`
    /// answers 2xx unless [`ready_when_healthy`](Self::ready_when_healthy)).
    pub async fn start(self) -> Result<Cloud> {
        let dir = match self.keep_dir {
            Some(p) => {
                std::fs::create_dir_all(&p)?;
                CloudDir::Kept(p)
            }
            None => CloudDir::Temporary(tempfile::tempdir()?),
        };
        std::fs::write(
            dir.path().join("webhooks.json"),
            serde_json::to_vec_pretty(&self.webhooks)?,
        )?;
        let port = free_port();
        let mut env = self.env;
        if let Some(mode) = self.self_service {
            // Before the caller's variables, so a test can still override either.
            env.splice(
                0..0,
                [
                    ("WEBHOOK_CONNECT_SELF_SERVICE".to_owned(), mode),
                    (
                        "WEBHOOK_CONNECT_PUBLIC_URL".to_owned(),
                        format!("http://127.0.0.1:{port}"),
                    ),
                ],
            );
        }
        let launch = Launch {
            bin: self.bin,
            env,
            ready: self.ready,
        };
        let spawned = Instant::now();
        let proc = spawn(&launch, dir.path(), port)?;
        let mut cloud = Cloud {
            proc,
            base: format!("http://127.0.0.1:{port}"),
            port,
            dir,
            http: reqwest::Client::builder()
                .timeout(self.http_timeout)
                .build()?,
            started_in: Duration::ZERO,
            launch,
        };
        cloud.wait_ready().await?;
        cloud.started_in = spawned.elapsed();
        Ok(cloud)
    }
}

impl Cloud {
    /// A cloud serving the `webhooks` document (see [`connect_hook`]).
    pub async fn start(webhooks: Value) -> Result<Self> {
        Self::builder(webhooks).start().await
    }

    /// [`start`](Self::start) with more environment for the cloud.
    pub async fn start_with(webhooks: Value, env: &[(&str, &str)]) -> Result<Self> {
        Self::builder(webhooks).envs(env).start().await
    }

    pub fn builder(webhooks: Value) -> CloudBuilder {
        CloudBuilder {
            webhooks,
            env: Vec::new(),
            http_timeout: Duration::from_secs(30),
            bin: None,
            keep_dir: None,
            ready: Ready::Live,
            self_service: None,
        }
    }

    /// The process id (for `/proc` readings).
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Waits until the cloud answers its readiness path; fails as soon as the process exits
    /// (a cloud that refuses to start is not waited for until the timeout).
    async fn wait_ready(&mut self) -> Result<()> {
        let (path, timeout) = match self.launch.ready {
            Ready::Live => ("/health/live", crate::timing::scaled(READY_TIMEOUT)),
            Ready::Healthy(t) => ("/health", t),
        };
        let url = format!("{}{path}", self.base);
        let http = self.http.clone();
        let proc = &mut self.proc;
        let outcome = wait_for(timeout, &format!("cloud to answer {path}"), || {
            let running = proc.is_running();
            let (http, url) = (http.clone(), url.clone());
            async move {
                if !running {
                    return Some(false);
                }
                let ok = http
                    .get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                ok.then_some(true)
            }
        })
        .await
        .with_context(|| format!("cloud stderr:\n{}", self.logs()))?;
        if !outcome {
            bail!(
                "the cloud exited before answering {path} ({:?}); stderr:\n{}",
                self.proc.exit_status(),
                self.logs()
            );
        }
        Ok(())
    }

    /// What the cloud wrote to stderr so far (its log).
    pub fn logs(&self) -> String {
        self.proc.stderr_text()
    }

    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Starts the process again on the same port and data directory ([`started_in`](Self::started_in)
    /// says how long it took).
    pub async fn restart(&mut self) -> Result<()> {
        self.proc.kill9();
        let spawned = Instant::now();
        self.proc = spawn(&self.launch, self.dir.path(), self.port)?;
        self.wait_ready().await?;
        self.started_in = spawned.elapsed();
        Ok(())
    }

    pub fn ws_base(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// POSTs a JSON `body` to webhook `id`; the status and the JSON answer (`Null` if none).
    pub async fn post(&self, id: &str, body: &str) -> Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}/webhook/{id}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }

    /// POSTs `body` with `headers` to webhook `id`; the status.
    pub async fn post_raw(&self, id: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Result<u16> {
        let mut req = self
            .http
            .post(format!("{}/webhook/{id}", self.base))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Ok(req.send().await?.status().as_u16())
    }

    /// Calls the admin API (`/admin/webhook-connect{path}`) with the admin token; the status and
    /// the JSON answer (`Null` if none).
    pub async fn admin(&self, method: reqwest::Method, path: &str) -> Result<(u16, Value)> {
        let r = self
            .http
            .request(method, format!("{}/admin/webhook-connect{path}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }

    /// GETs an admin path; fails unless the answer is JSON (whatever the status).
    pub async fn admin_get(&self, path: &str) -> Result<Value> {
        let r = self
            .http
            .get(format!("{}/admin/webhook-connect{path}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await?;
        Ok(r.json().await?)
    }

    /// Rotates `channel`'s token with no grace period; the new token. Fails unless the admin
    /// API answers 200 with a `new_token`.
    pub async fn rotate_token(&self, channel: &str) -> Result<String> {
        let r = self
            .http
            .post(format!(
                "{}/admin/webhook-connect/channels/{channel}/rotate-token",
                self.base
            ))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({"grace_period_seconds": 0}))
            .send()
            .await?;
        anyhow::ensure!(r.status() == 200, "rotate-token answered {}", r.status());
        let v: Value = r.json().await?;
        v["new_token"]
            .as_str()
            .map(str::to_owned)
            .context("rotate-token answered no new_token")
    }

    /// The status of `GET /connect/status/{channel}` with `token` (the connector's own
    /// authenticated request); 0 when there was no answer.
    pub async fn connector_status(&self, channel: &str, token: &str) -> u16 {
        self.http
            .get(format!("{}/connect/status/{channel}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    /// A channel's admin stats; fails unless they answer 200.
    pub async fn stats(&self, channel: &str) -> Result<Value> {
        let (s, v) = self
            .admin(reqwest::Method::GET, &format!("/channels/{channel}/stats"))
            .await?;
        anyhow::ensure!(s == 200, "stats answered {s}: {v}");
        Ok(v)
    }
}

/// Self-service helpers (HOSTED.md): the admin account API and `/api/v1` with an API key.
impl Cloud {
    /// Calls the admin API with a JSON body; the status and the JSON answer.
    pub async fn admin_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &Value,
    ) -> Result<(u16, Value)> {
        let r = self
            .http
            .request(method, format!("{}/admin/webhook-connect{path}", self.base))
            .bearer_auth(ADMIN)
            .json(body)
            .send()
            .await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }

    /// Creates an account through the admin API; `(account_id, api_key)`. Fails unless 201.
    pub async fn create_account(&self, name: &str, quota: Value) -> Result<(String, String)> {
        let mut body = serde_json::json!({ "name": name });
        if !quota.is_null() {
            body["quota"] = quota;
        }
        let (s, v) = self
            .admin_json(reqwest::Method::POST, "/accounts", &body)
            .await?;
        anyhow::ensure!(s == 201, "create account answered {s}: {v}");
        Ok((
            v["account_id"]
                .as_str()
                .context("no account_id")?
                .to_owned(),
            v["api_key"].as_str().context("no api_key")?.to_owned(),
        ))
    }

    /// Calls `/api/v1{path}` with `key` (none when empty) and an optional JSON body; the
    /// status and the JSON answer (`Null` if none).
    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base));
        if !key.is_empty() {
            req = req.bearer_auth(key);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let r = req.send().await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }

    /// Creates channel `name` of the key's account; the `201` answer (`channel`,
    /// `webhook_id`, `webhook_url`, `channel_token`, …). Fails unless 201.
    pub async fn create_channel(&self, key: &str, body: Value) -> Result<Value> {
        let (s, v) = self
            .api(reqwest::Method::POST, "/channels", key, Some(&body))
            .await?;
        anyhow::ensure!(s == 201, "create channel answered {s}: {v}");
        Ok(v)
    }
}

fn spawn(launch: &Launch, dir: &Path, port: u16) -> Result<ChildProcess> {
    let bin = match &launch.bin {
        Some(b) => b.clone(),
        None => workspace_bin("webhook-connect-cloud")?,
    };
    let listen = format!("127.0.0.1:{port}");
    let data = dir.join("data");
    let cfg = dir.join("webhooks.json");
    let mut env: Vec<(&str, &str)> = vec![
        ("WEBHOOK_CONNECT_LISTEN", &listen),
        (
            "WEBHOOK_CONNECT_DATA_DIR",
            data.to_str().context("data dir path is not UTF-8")?,
        ),
        (
            "WEBHOOKS_CONFIG_FILE",
            cfg.to_str().context("config path is not UTF-8")?,
        ),
        ("WEBHOOK_CONNECT_ADMIN_TOKEN", ADMIN),
        ("WEBHOOK_CONNECT_LOG_FORMAT", "text"),
        ("WEBHOOK_CONNECT_HEARTBEAT_INTERVAL_SECONDS", "5"),
    ];
    env.extend(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    ChildProcess::spawn(bin, &[], &env, "cloud")
}

/// A `webhook_connect` webhook definition (JSON data) for `channel`, with `extra` module-config
/// keys (an object; anything else adds nothing).
pub fn connect_hook(channel: &str, token: &str, extra: Value) -> Value {
    let mut mc = serde_json::json!({"channel": channel, "channel_token": token});
    if let (Some(m), Some(e)) = (mc.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    serde_json::json!({"data_type": "json", "module": "webhook_connect", "module-config": mc})
}
