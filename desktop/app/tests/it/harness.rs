//! A real cloud child process, a recording target and a `Core` with one channel connected to it.
//! The WebDriver test uses the cloud from here too.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use connect_engine::api::ChannelState;
use connect_testkit::{ChildProcess, RecordingTarget, free_port, wait_until, workspace_bin};
use serde_json::{Value, json};
use webhook_connect_app::core::{ChannelInput, Core};
use webhook_connect_app::secrets::MemoryStore;
use webhook_connect_app::settings;

pub const ADMIN: &str = "admin-token-for-tests";
pub const TOKEN: &str = "app-menu-test-token";
pub const CHANNEL: &str = "alpha";

pub struct Cloud {
    pub proc: ChildProcess,
    pub base: String,
    pub http: reqwest::Client,
}

impl Cloud {
    pub async fn start(dir: &Path) -> Result<Self> {
        let mc = json!({"channel": CHANNEL, "channel_token": TOKEN});
        let hooks = json!({CHANNEL: {"data_type": "json", "module": "webhook_connect", "module-config": mc}});
        let cfg = dir.join("webhooks.json");
        std::fs::write(&cfg, serde_json::to_vec_pretty(&hooks)?)?;
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let data = dir.join("data").display().to_string();
        let cfg = cfg.display().to_string();
        let proc = ChildProcess::spawn(
            workspace_bin("webhook-connect-cloud")?,
            &[],
            &[
                ("WEBHOOK_CONNECT_LISTEN", listen.as_str()),
                ("WEBHOOK_CONNECT_DATA_DIR", data.as_str()),
                ("WEBHOOKS_CONFIG_FILE", cfg.as_str()),
                ("WEBHOOK_CONNECT_ADMIN_TOKEN", ADMIN),
                ("WEBHOOK_CONNECT_LOG_FORMAT", "text"),
                ("WEBHOOK_CONNECT_HEARTBEAT_INTERVAL_SECONDS", "5"),
            ],
            "cloud",
        )?;
        let c = Self {
            proc,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        };
        let url = format!("{}/health/live", c.base);
        wait_until(Duration::from_secs(20), "cloud to start", || {
            let (http, url) = (c.http.clone(), url.clone());
            async move {
                http.get(&url)
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await
        .with_context(|| c.proc.stderr_text())?;
        Ok(c)
    }

    /// Posts a JSON webhook; returns its message id.
    pub async fn post(&self, body: &Value) -> Result<String> {
        let r = self
            .http
            .post(format!("{}/webhook/{CHANNEL}", self.base))
            .json(body)
            .send()
            .await?;
        let status = r.status();
        let v: Value = r.json().await?;
        anyhow::ensure!(status.is_success(), "ingress answered {status}: {v}");
        Ok(v["message_id"].as_str().context("message_id")?.to_owned())
    }

    /// WebSocket/SSE/long-poll clients the cloud sees on the channel.
    pub async fn connected_clients(&self) -> Result<u64> {
        let v: Value = self
            .http
            .get(format!(
                "{}/admin/webhook-connect/channels/{CHANNEL}/stats",
                self.base
            ))
            .bearer_auth(ADMIN)
            .send()
            .await?
            .json()
            .await?;
        v["connected_clients"]
            .as_u64()
            .with_context(|| format!("stats: {v}"))
    }

    pub async fn wait_clients(&self, n: u64, what: &str) -> Result<()> {
        wait_until(Duration::from_secs(20), what, || async {
            self.connected_clients().await.ok() == Some(n)
        })
        .await
    }
}

/// A cloud, a target and a core whose one channel (added like the UI does) is connected.
pub struct World {
    pub dir: tempfile::TempDir,
    pub cloud: Cloud,
    pub target: RecordingTarget,
    pub store: Arc<MemoryStore>,
    pub core: Arc<Core>,
    pub key: String,
}

impl World {
    pub async fn start() -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let cloud = Cloud::start(dir.path()).await?;
        let target = RecordingTarget::start().await?;
        let store = Arc::new(MemoryStore::new());
        let core = Core::start(dir.path().join(settings::FILE_NAME), store.clone())
            .map_err(anyhow::Error::msg)?;
        let saved = core
            .save_channel(ChannelInput {
                key: None,
                cloud_url: cloud.base.clone(),
                channel: CHANNEL.into(),
                protocol: "websocket".into(),
                default_target: Some(format!("{}/hook", target.url)),
                targets: BTreeMap::new(),
                token: Some(TOKEN.into()),
                admin_token: Some(ADMIN.into()),
            })
            .map_err(anyhow::Error::msg)?;
        cloud.wait_clients(1, "the channel to connect").await?;
        wait_until(
            Duration::from_secs(20),
            "the engine to say connected",
            || {
                let connected = core
                    .snapshot()
                    .channels
                    .iter()
                    .all(|c| c.state == ChannelState::Connected);
                async move { connected }
            },
        )
        .await?;
        Ok(Self {
            dir,
            cloud,
            target,
            store,
            core: Arc::new(core),
            key: saved.key,
        })
    }
}
