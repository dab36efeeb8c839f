//! The cloud in this process (feature `in-process-cloud`): [`TestCloud`] serves a webhooks
//! document on `127.0.0.1:0` through `connect_cloud::server::run`, on the caller's runtime, with
//! the embedded buffer in a temporary directory or a Redis buffer. The benches use it to reach
//! the [`AppState`] (the buffer) beside the HTTP edge.
//!
//! Feature-gated so that the suites spawning the binary ([`crate::cloud`]) do not compile the
//! cloud library.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use connect_buffer::embedded::{EmbeddedBuffer, EmbeddedOptions};
use connect_buffer::redis::{RedisBuffer, RedisEndpoint, RedisOptions};
use connect_buffer::{Buffer, SystemClock};
use connect_cloud::{AppState, Settings};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How long [`TestCloud::stop`] waits for the server to drain.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// A cloud served from this process; [`stop`](Self::stop) shuts it down gracefully.
pub struct TestCloud {
    pub addr: SocketAddr,
    state: AppState,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// How to start a [`TestCloud`].
pub struct TestCloudBuilder {
    webhooks: Value,
    redis: Option<(RedisEndpoint, String)>,
    embedded: EmbeddedOptions,
    log_level: String,
    self_service: Option<connect_protocol::hosted::SelfServiceMode>,
    heartbeat_seconds: Option<u64>,
}

impl TestCloudBuilder {
    /// The Redis buffer at `url` under key `prefix` instead of the embedded one.
    pub fn redis(mut self, url: &str, prefix: &str) -> Self {
        self.redis = Some((RedisEndpoint::Single(url.to_owned()), prefix.to_owned()));
        self
    }

    /// The Redis buffer on the Redis Cluster reached through `seeds`, under key `prefix`.
    pub fn redis_cluster(mut self, seeds: Vec<String>, prefix: &str) -> Self {
        self.redis = Some((RedisEndpoint::Cluster(seeds), prefix.to_owned()));
        self
    }

    /// Options of the embedded buffer (ignored with [`redis`](Self::redis)).
    pub fn embedded_options(mut self, options: EmbeddedOptions) -> Self {
        self.embedded = options;
        self
    }

    /// Self-service hosting in `mode`, with a public URL of `http://self-service.invalid`
    /// (webhook URLs are not followed in-process: post to `/webhook/{webhook_id}`).
    pub fn self_service(mut self, mode: connect_protocol::hosted::SelfServiceMode) -> Self {
        self.self_service = Some(mode);
        self
    }

    /// `Settings::heartbeat_interval_seconds` (the documented default unless set; 5..60).
    pub fn heartbeat_seconds(mut self, seconds: u64) -> Self {
        self.heartbeat_seconds = Some(seconds);
        self
    }

    /// `Settings::log_level` (`warn` unless set).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// Writes the webhooks, opens the buffer, applies the configuration and serves it.
    pub async fn start(self) -> Result<TestCloud> {
        let dir = tempfile::tempdir()?;
        let data = dir.path().join("data");
        let hooks = dir.path().join("webhooks.json");
        std::fs::write(&hooks, serde_json::to_vec_pretty(&self.webhooks)?)?;
        let mut settings = Settings::for_tests(data.clone(), hooks.clone());
        settings.log_level = self.log_level;
        if let Some(s) = self.heartbeat_seconds {
            settings.heartbeat_interval_seconds = s;
        }
        if let Some(mode) = self.self_service {
            settings.hosted.self_service = mode;
            settings.hosted.public_url = Some("http://self-service.invalid".into());
        }
        let buffer: Arc<dyn Buffer> = match self.redis {
            Some((endpoint, prefix)) => {
                match &endpoint {
                    RedisEndpoint::Single(url) => settings.redis_url = Some(url.clone()),
                    RedisEndpoint::Cluster(seeds) => {
                        settings.redis_cluster_urls = Some(seeds.join(","));
                    }
                }
                let opts = RedisOptions::with_endpoint(endpoint, prefix);
                Arc::new(
                    RedisBuffer::open(opts, Arc::new(SystemClock))
                        .await
                        .context("opening the Redis buffer")?,
                )
            }
            None => Arc::new(
                EmbeddedBuffer::open_with(&data, Arc::new(SystemClock), self.embedded)
                    .context("opening the embedded buffer")?,
            ),
        };
        let state = AppState::new(settings, buffer);
        let webhooks = connect_cloud::app::read_webhooks(&hooks, &connect_config::ProcessEnv)
            .context("reading the webhooks")?;
        state
            .apply_config(webhooks)
            .await
            .context("applying the webhooks")?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (stop, rx) = oneshot::channel::<()>();
        let served = state.clone();
        let done = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            if let Err(e) = connect_cloud::server::run(listener, served, shutdown).await {
                tracing::error!(error = %e, "in-process cloud stopped");
            }
        });
        Ok(TestCloud {
            addr,
            state,
            stop,
            done,
            _dir: dir,
        })
    }
}

impl TestCloud {
    /// A cloud serving `webhooks` on the embedded buffer.
    pub async fn start(webhooks: Value) -> Result<Self> {
        Self::builder(webhooks).start().await
    }

    pub fn builder(webhooks: Value) -> TestCloudBuilder {
        TestCloudBuilder {
            webhooks,
            redis: None,
            embedded: EmbeddedOptions::default(),
            log_level: "warn".into(),
            self_service: None,
            heartbeat_seconds: None,
        }
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Asks the server to shut down and waits (up to 15 s) until it has.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(STOP_TIMEOUT, self.done).await;
    }
}
