//! The test kit's cloud child process, a recording target and a `Core` with one channel
//! connected to it, its tokens in the real Secret Service of the test's session (the tests run
//! through `connect_testkit::secret_service::isolated`).
//! The WebDriver test uses the cloud from here too.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use connect_engine::api::LinkState;
use connect_testkit::secret_service::Session;
use connect_testkit::{RecordingTarget, wait_until};
use serde_json::{Value, json};
use webhook_connect_app::core::{ChannelInput, Core};
use webhook_connect_app::secrets::KeyringStore;
use webhook_connect_app::settings;

pub use connect_testkit::cloud::ADMIN;
pub const TOKEN: &str = "app-menu-test-token";
pub const CHANNEL: &str = "alpha";

/// The test kit's cloud with one JSON webhook [`CHANNEL`] feeding channel [`CHANNEL`].
pub struct Cloud(connect_testkit::Cloud);

impl std::ops::Deref for Cloud {
    type Target = connect_testkit::Cloud;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Cloud {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Cloud {
    pub async fn start() -> Result<Self> {
        let hooks = json!({CHANNEL: connect_testkit::connect_hook(CHANNEL, TOKEN, json!({}))});
        let cloud = connect_testkit::Cloud::builder(hooks)
            .http_timeout(Duration::from_secs(10))
            .start()
            .await?;
        Ok(Self(cloud))
    }

    /// Posts a JSON webhook; returns its message id.
    pub async fn post(&self, body: &Value) -> Result<String> {
        let (status, v) = self.0.post(CHANNEL, &body.to_string()).await?;
        anyhow::ensure!(
            (200..300).contains(&status),
            "ingress answered {status}: {v}"
        );
        Ok(v["message_id"].as_str().context("message_id")?.to_owned())
    }

    /// WebSocket/SSE/long-poll clients the cloud sees on the channel.
    pub async fn connected_clients(&self) -> Result<u64> {
        let v = self
            .admin_get(&format!("/channels/{CHANNEL}/stats"))
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
    pub store: Arc<KeyringStore>,
    pub core: Arc<Core>,
    pub key: String,
}

impl World {
    pub async fn start() -> Result<Self> {
        let keyring =
            Session::current().context("run through connect_testkit::secret_service::isolated")?;
        let dir = tempfile::tempdir()?;
        let cloud = Cloud::start().await?;
        let target = RecordingTarget::start().await?;
        let store = KeyringStore::new();
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
        // The tokens are in gnome-keyring (not the store's in-memory fallback).
        let origin = cloud.base.trim_end_matches('/');
        anyhow::ensure!(
            keyring
                .lookup(&format!("channel:{origin}/{CHANNEL}"))?
                .as_deref()
                == Some(TOKEN)
                && keyring.lookup(&format!("admin:{origin}"))?.as_deref() == Some(ADMIN),
            "tokens not in the Secret Service: {:?} (keyring unavailable: {:?})",
            keyring.accounts()?,
            store.unavailable()
        );
        cloud.wait_clients(1, "the channel to connect").await?;
        wait_until(
            Duration::from_secs(20),
            "the engine to say connected",
            || {
                let connected = core
                    .snapshot()
                    .channels
                    .iter()
                    .all(|c| c.state == LinkState::Connected);
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

/// Waits until an engine of its own, not paused, has retried a channel that can never connect
/// (a closed port) `n` times with the delays the app's channels use (the engine's defaults).
/// For checks that a paused or disconnected channel did *not* reconnect: the window provably
/// spans `n` of the engine's own retry delays under whatever load the machine is under, where a
/// fixed sleep would pass a slow regression on a loaded machine. (Pause all pauses every
/// channel of the app's engine, so the probe cannot live beside them.)
pub async fn engine_retries_elapse(n: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("connector.json");
    let cfg = json!({
        "cloud_url": "http://127.0.0.1:1", "channel": "probe", "token": "probe-token",
        "protocol": "websocket", "default_target": {"url": "http://127.0.0.1:1/"},
    });
    std::fs::write(&file, cfg.to_string())?;
    let cfg = connect_engine::config::load(&connect_engine::config::Sources {
        config_file: Some(file),
        ..Default::default()
    })
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let probe = connect_engine::Engine::start(cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let attempts = || probe.status().first().map_or(0, |s| s.connection_attempts);
    let waited = wait_until(
        Duration::from_secs(60),
        "the probe engine's retries",
        || {
            let done = attempts() > n;
            async move { done }
        },
    )
    .await;
    probe.shutdown(Duration::from_secs(2)).await;
    waited.with_context(|| format!("probe attempts: {}", attempts()))
}
