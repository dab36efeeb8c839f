//! The service's runtime without HTTP: the buffer, the hub of channels and connections, and the
//! configuration in force. [`Runtime::apply_config`] puts a configuration in force (channel
//! registration, orphaning, the snapshot swap); configuration sources depend on this, not on the
//! HTTP application state.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use connect_buffer::{Buffer, BufferError, ChannelRegistration, ChannelSettings};
use connect_config::{ChannelSpec, ConnectSettings, EnvSource, WebhookSet};
use connect_protocol::admin::{ChannelState, ConfigError};
use connect_protocol::ids::token_digest;
use connect_protocol::time::Timestamp;
use futures::StreamExt;
use parking_lot::RwLock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::settings::{OrphanPolicy, Settings};

/// Channel registrations in flight at once when a configuration is put in force.
const REGISTER_IN_FLIGHT: usize = 256;

/// The configuration in force.
pub struct ConfigSnapshot {
    pub webhooks: WebhookSet,
    pub loaded_at: Timestamp,
    /// Entries whose latest definition is invalid and that keep serving their previous one
    /// (reported like disabled entries, but still answering).
    pub stale: Vec<ConfigError>,
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

/// Why the webhooks file could not be used at start-up (exit 64).
#[derive(Debug, thiserror::Error)]
pub enum WebhooksFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// Reads and parses the webhooks file; any failure is fatal at start-up (exit 64).
pub fn read_webhooks(path: &Path, env: &dyn EnvSource) -> Result<WebhookSet, WebhooksFileError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| WebhooksFileError::Read {
        path: shown.clone(),
        source,
    })?;
    let doc: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| WebhooksFileError::Json {
            path: shown.clone(),
            source,
        })?;
    WebhookSet::from_json(&doc, None, env, None).map_err(|reason| WebhooksFileError::Invalid {
        path: shown,
        reason,
    })
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

/// Channels, hub, buffer and the configuration in force.
pub struct Runtime {
    settings: Arc<Settings>,
    config: RwLock<Option<Arc<ConfigSnapshot>>>,
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    /// Cancelled when shutdown starts: ingress and new connections are refused.
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Runtime {
    pub fn new(settings: Arc<Settings>, buffer: Arc<dyn Buffer>, metrics: Arc<Metrics>) -> Self {
        let tracker = TaskTracker::new();
        let hub = Hub::new(buffer, metrics.clone(), tracker.clone());
        Runtime {
            settings,
            config: RwLock::new(None),
            hub,
            metrics,
            shutdown: CancellationToken::new(),
            tracker,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    pub fn buffer(&self) -> &Arc<dyn Buffer> {
        self.hub.buffer()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Every background task of the service, waited for at shutdown.
    pub fn tracker(&self) -> &TaskTracker {
        &self.tracker
    }

    /// Cancelled when shutdown starts: ingress and new connections are refused.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Cancelled when dispatching stops (shutdown): background loops end.
    pub fn stopping(&self) -> &CancellationToken {
        self.hub.stop_token()
    }

    pub fn config(&self) -> Option<Arc<ConfigSnapshot>> {
        self.config.read().clone()
    }

    /// Puts a configuration in force: registers every channel it names (§8.4), orphans or
    /// deletes the ones it no longer names, then swaps the snapshot.
    pub async fn apply_config(&self, webhooks: WebhookSet) -> Result<(), BufferError> {
        self.apply_config_with(webhooks, Vec::new(), None).await
    }

    /// [`Self::apply_config`] with the entries kept at a previous definition and the etcd
    /// default namespace (`None`: file backend).
    pub async fn apply_config_with(
        &self,
        webhooks: WebhookSet,
        stale: Vec<ConfigError>,
        default_namespace: Option<String>,
    ) -> Result<(), BufferError> {
        let mut webhooks = webhooks;
        self.reject_self_service_names(&mut webhooks).await?;
        for e in webhooks.errors() {
            tracing::warn!(webhook = %e.webhook, error = %e.error, "webhook disabled by a configuration error");
        }
        for w in webhooks.warnings() {
            tracing::warn!(warning = %w, "configuration warning");
        }
        if self.settings.enabled {
            let specs = self.register_channels(&webhooks).await?;
            // Channels first, then the self-service records: a channel created meanwhile
            // has its record written before its channel, so it is never taken for an orphan.
            let channels = self.buffer().channels().await?;
            let hosted: HashSet<String> = self
                .buffer()
                .hosted_channel_names()
                .await?
                .into_iter()
                .collect();
            for rec in channels {
                if specs.contains_key(&rec.name) {
                    continue;
                }
                if hosted.contains(&rec.name) {
                    // Self-service channels are not configuration: a reload keeps them.
                    self.hub.upsert_channel(&rec);
                    continue;
                }
                match self.settings.orphan_channel_policy {
                    OrphanPolicy::Drain => {
                        if rec.state != ChannelState::Orphaned {
                            tracing::info!(channel = %rec.name, "channel no longer configured: orphaned (drain)");
                            self.buffer().orphan_channel(&rec.name).await?;
                        }
                        if let Some(r) = self.buffer().channel(&rec.name).await? {
                            self.hub.upsert_channel(&r);
                        }
                    }
                    OrphanPolicy::Delete => {
                        let n = self.buffer().delete_channel(&rec.name).await?;
                        self.hub.remove_channel(&rec.name);
                        if n > 0 {
                            self.metrics.discarded(&rec.name, "channel_deleted", n);
                        }
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

    /// Disables the configured entries naming a self-service channel (a config error naming
    /// the conflict): an account's channel is never taken over by a configuration added
    /// later. The other direction (a self-service create naming a configured channel) is 409.
    pub async fn reject_self_service_names(
        &self,
        webhooks: &mut WebhookSet,
    ) -> Result<(), BufferError> {
        if !self.settings.enabled {
            return Ok(());
        }
        let hosted: HashSet<String> = self
            .buffer()
            .hosted_channel_names()
            .await?
            .into_iter()
            .collect();
        webhooks.disable_channels(|channel| {
            hosted.contains(channel).then(|| {
                format!(
                    "module-config.channel: '{channel}' is a self-service channel of an account; this entry is disabled (rename its channel, or delete the self-service channel and reload)"
                )
            })
        });
        Ok(())
    }

    /// Registers every channel `webhooks` names (§8.4) and updates the hub's view of them.
    /// Returns the channel specs.
    async fn register_channels(
        &self,
        webhooks: &WebhookSet,
    ) -> Result<BTreeMap<String, ChannelSpec>, BufferError> {
        let specs = webhooks.channels();
        let regs: Vec<ChannelRegistration> = specs
            .iter()
            .map(|(name, spec)| ChannelRegistration {
                name: name.clone(),
                settings: channel_settings(&spec.settings, self.settings.max_queue_bytes),
                configured_token_digest: token_digest(&spec.settings.channel_token),
                owner: spec.owner.clone(),
                webhook_ids: spec.webhook_keys.clone(),
            })
            .collect();
        // Many registrations in flight at once: the embedded store commits them in groups
        // (one sync for many channels), Redis pipelines them.
        let mut done = futures::stream::iter(regs.into_iter().map(|reg| {
            let buffer = self.buffer().clone();
            async move { buffer.register_channel(reg).await }
        }))
        .buffer_unordered(REGISTER_IN_FLIGHT);
        while let Some(r) = done.next().await {
            let r = r?;
            if r.configured_token_changed {
                tracing::info!(channel = %r.record.name, "configured channel token changed; old-token connections are closed");
            }
            self.hub.upsert_channel(&r.record);
        }
        Ok(specs)
    }

    /// Registers the channels of the configuration in force again, after the buffer lost its
    /// state ([`Buffer::state_epoch`]). Returns how many channels were registered.
    pub async fn register_configured_channels(&self) -> Result<usize, BufferError> {
        if !self.settings.enabled {
            return Ok(0);
        }
        match self.config() {
            Some(cfg) => Ok(self.register_channels(&cfg.webhooks).await?.len()),
            None => Ok(0),
        }
    }
}
