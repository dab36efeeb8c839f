//! Application state and its life cycle: configuration snapshot, channel registration,
//! background sweeps, and the router.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use connect_buffer::{Buffer, ChannelRegistration, ChannelSettings};
use connect_config::{ConnectSettings, EnvSource, SlidingWindow, WebhookSet};
use connect_protocol::ids::token_digest;
use connect_protocol::time::Timestamp;
use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::settings::{OrphanPolicy, Settings};

/// The configuration in force.
pub struct ConfigSnapshot {
    pub webhooks: WebhookSet,
    pub loaded_at: Timestamp,
    /// Entries whose latest definition is invalid and that keep serving their previous one
    /// (reported like disabled entries, but still answering).
    pub stale: Vec<connect_protocol::admin::ConfigError>,
    /// etcd: the namespace `/webhook/{id}` serves. `None` for the file backend, whose single
    /// map ignores the namespace of `/webhook/{ns}/{id}`.
    pub default_namespace: Option<String>,
}

impl ConfigSnapshot {
    /// The namespace to look a request up in (CONFIG.md §4.2 URL mapping).
    pub fn namespace_for<'a>(&'a self, requested: Option<&'a str>) -> Option<&'a str> {
        let default = self.default_namespace.as_deref()?;
        Some(requested.unwrap_or(default))
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub settings: Settings,
    pub config: RwLock<Option<Arc<ConfigSnapshot>>>,
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    pub rate_limits: Mutex<HashMap<String, SlidingWindow>>,
    /// Cancelled when shutdown starts: ingress and new connections are refused.
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
    pub started: Instant,
    /// Configuration sources: file / etcd, Vault, reloads (see [`crate::config_source`]).
    pub sources: crate::config_source::ConfigManager,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Reads and parses the webhooks file; any failure is fatal at start-up (exit 64).
pub fn read_webhooks(path: &Path, env: &dyn EnvSource) -> Result<WebhookSet, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    WebhookSet::from_json(&doc, None, env, None).map_err(|e| format!("{}: {e}", path.display()))
}

fn channel_settings(s: &ConnectSettings, default_queue_bytes: u64) -> ChannelSettings {
    ChannelSettings {
        max_queue_size: s.max_queue_size,
        max_queue_bytes: s.max_queue_bytes.unwrap_or(default_queue_bytes),
        max_connections: s.max_connections,
        max_in_flight: s.max_in_flight,
        ack_timeout_seconds: s.ack_timeout_seconds,
        max_delivery_attempts: s.max_delivery_attempts,
        retry_backoff_max_seconds: s.retry_backoff_max_seconds,
        dlq_retention_seconds: s.dlq_retention_seconds,
        ttl_seconds: s.ttl_seconds,
    }
}

impl AppState {
    pub fn new(settings: Settings, buffer: Arc<dyn Buffer>) -> Self {
        let metrics = Arc::new(Metrics::default());
        let tracker = TaskTracker::new();
        let hub = Hub::new(buffer, metrics.clone(), tracker.clone());
        let sources = crate::config_source::ConfigManager::new(&settings);
        AppState(Arc::new(Inner {
            sources,
            settings,
            config: RwLock::new(None),
            hub,
            metrics,
            rate_limits: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
            tracker,
            started: Instant::now(),
        }))
    }

    pub fn buffer(&self) -> &Arc<dyn Buffer> {
        self.hub.buffer()
    }

    pub fn config(&self) -> Option<Arc<ConfigSnapshot>> {
        self.config.read().clone()
    }

    /// Puts a configuration in force: registers every channel it names (§8.4), orphans or
    /// deletes the ones it no longer names, then swaps the snapshot.
    pub async fn apply_config(
        &self,
        webhooks: WebhookSet,
    ) -> Result<(), connect_buffer::BufferError> {
        self.apply_config_with(webhooks, Vec::new(), None).await
    }

    /// [`Self::apply_config`] with the entries kept at a previous definition and the etcd
    /// default namespace (`None`: file backend).
    pub async fn apply_config_with(
        &self,
        webhooks: WebhookSet,
        stale: Vec<connect_protocol::admin::ConfigError>,
        default_namespace: Option<String>,
    ) -> Result<(), connect_buffer::BufferError> {
        for e in webhooks.errors() {
            tracing::warn!(webhook = %e.webhook, error = %e.error, "webhook disabled by a configuration error");
        }
        for w in webhooks.warnings() {
            tracing::warn!(warning = %w, "configuration warning");
        }
        if self.settings.enabled {
            let specs = self.register_channels(&webhooks).await?;
            for rec in self.buffer().channels().await? {
                if specs.contains_key(&rec.name) {
                    continue;
                }
                match self.settings.orphan_channel_policy {
                    OrphanPolicy::Drain => {
                        if rec.state != connect_protocol::admin::ChannelState::Orphaned {
                            tracing::info!(channel = %rec.name, "channel no longer configured: orphaned (drain)");
                            self.buffer().orphan_channel(&rec.name).await?;
                        }
                        if let Some(r) = self.buffer().channel(&rec.name).await? {
                            self.hub.upsert_channel(&r);
                        }
                    }
                    OrphanPolicy::Delete => {
                        let n = self.buffer().delete_channel(&rec.name).await?;
                        self.metrics.discarded(&rec.name, "channel_deleted", n);
                        self.hub.remove_channel(&rec.name);
                        tracing::info!(channel = %rec.name, discarded = n, "channel no longer configured: deleted");
                    }
                }
            }
        }
        *self.config.write() = Some(Arc::new(ConfigSnapshot {
            webhooks,
            loaded_at: Timestamp::now(),
            stale,
            default_namespace,
        }));
        Ok(())
    }

    /// Registers every channel `webhooks` names (§8.4) and updates the hub's view of them.
    /// Returns the channel specs.
    async fn register_channels(
        &self,
        webhooks: &WebhookSet,
    ) -> Result<
        std::collections::BTreeMap<String, connect_config::ChannelSpec>,
        connect_buffer::BufferError,
    > {
        let specs = webhooks.channels();
        for (name, spec) in &specs {
            let reg = ChannelRegistration {
                name: name.clone(),
                settings: channel_settings(&spec.settings, self.settings.max_queue_bytes),
                configured_token_digest: token_digest(&spec.settings.channel_token),
                owner: spec.owner.clone(),
                webhook_ids: spec.webhook_keys.clone(),
            };
            let r = self.buffer().register_channel(reg).await?;
            if r.configured_token_changed {
                tracing::info!(channel = %name, "configured channel token changed; old-token connections are closed");
            }
            self.hub.upsert_channel(&r.record);
        }
        Ok(specs)
    }

    /// Registers the channels of the configuration in force again, after the buffer lost its
    /// state ([`Buffer::state_epoch`]). Returns how many channels were registered.
    pub async fn register_configured_channels(&self) -> Result<usize, connect_buffer::BufferError> {
        if !self.settings.enabled {
            return Ok(0);
        }
        match self.config() {
            Some(cfg) => Ok(self.register_channels(&cfg.webhooks).await?.len()),
            None => Ok(0),
        }
    }

    /// Spawns the periodic sweeps: leases, delays, TTL, DLQ retention, orphan deletion,
    /// token grace ends and idle poll connections.
    pub fn spawn_background(&self) {
        if let Some(mut requests) = self.buffer().close_requests() {
            let st = self.clone();
            self.tracker.spawn(async move {
                loop {
                    tokio::select! {
                        _ = st.hub.dispatch_stop.cancelled() => return,
                        r = requests.recv() => match r {
                            Some((channel, conn)) => st.hub.apply_close_request(&channel, &conn).await,
                            None => return,
                        },
                    }
                }
            });
        }
        let st = self.clone();
        self.tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: u64 = 0;
            let mut seen_epoch = st.buffer().state_epoch();
            loop {
                tokio::select! {
                    _ = st.hub.dispatch_stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                n += 1;
                let epoch = st.buffer().state_epoch();
                if epoch != seen_epoch {
                    match st.sources.register_again(&st).await {
                        Ok(count) => {
                            seen_epoch = epoch;
                            tracing::info!(channels = count, "channels registered again after the buffer lost its data");
                        }
                        Err(e) => tracing::warn!(error = %e, "registering the channels again failed; retrying"),
                    }
                }
                let retention = match st.settings.orphan_channel_policy {
                    OrphanPolicy::Drain => Some(Duration::from_secs(
                        st.settings.orphan_channel_retention_seconds,
                    )),
                    OrphanPolicy::Delete => None,
                };
                match st.buffer().sweep(retention).await {
                    Ok(report) => {
                        for lost in &report.expired_leases {
                            st.hub.lease_lost(&lost.connection_id);
                            st.metrics.redelivery(&lost.channel, "ack_timeout", 1);
                        }
                        for ch in &report.channels_deleted {
                            st.hub.remove_channel(ch);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "buffer sweep failed"),
                }
                if n.is_multiple_of(4) {
                    st.hub.housekeeping().await;
                }
            }
        });
    }

    pub fn router(&self) -> Router {
        crate::http::router(self.clone())
    }
}
