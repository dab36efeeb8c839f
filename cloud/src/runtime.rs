//! The service's runtime without HTTP: the buffer, the hub of channels and connections, and the
//! configuration in force. [`Runtime::apply_config`] puts a configuration in force (channel
//! registration, orphaning, the snapshot swap); configuration sources depend on this, not on the
//! HTTP application state.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use connect_buffer::{Buffer, BufferError, ChannelRegistration, ChannelSettings};
use connect_config::{ChannelSpecRef, ConnectSettings, EnvSource, WebhookSet};
use connect_protocol::admin::{ChannelState, ConfigError};
use connect_protocol::ids::token_digest;
use connect_protocol::time::Timestamp;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
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
            self.settle_unconfigured(&webhooks).await?;
        }
        *self.config.write() = Some(Arc::new(ConfigSnapshot {
            webhooks,
            loaded_at: Timestamp::now(),
            stale,
            default_namespace,
        }));
        Ok(())
    }

    /// Registers every channel `webhooks` names, then puts the store's other channels in
    /// order: a self-service channel joins the hub, any other is orphaned or deleted by the
    /// orphan policy. Walks the store's channels one record at a time
    /// ([`Buffer::visit_channels`]): a list of every record (~50 MB at 100,000 channels)
    /// would leave its freed pages resident.
    async fn settle_unconfigured(&self, webhooks: &WebhookSet) -> Result<(), BufferError> {
        let specs = webhooks.channel_refs();
        self.register_channels(&specs).await?;
        let hosted = self.hosted_names().await?;
        let mut unknown: Vec<String> = Vec::new();
        self.buffer()
            .visit_channels(&mut |rec| {
                if specs.contains_key(rec.name.as_str()) {
                    return;
                }
                if hosted.binary_search(&rec.name).is_ok() {
                    // Self-service channels are not configuration: a reload keeps them.
                    self.hub.upsert_channel(&rec);
                } else {
                    unknown.push(rec.name);
                }
            })
            .await?;
        drop(hosted);
        if unknown.is_empty() {
            return Ok(());
        }
        // A channel created while the store was walked has its self-service record written
        // before its channel, so the names read now include it: it is never an orphan.
        let hosted = self.hosted_names().await?;
        for name in unknown {
            if hosted.binary_search(&name).is_ok() {
                if let Some(r) = self.buffer().channel(&name).await? {
                    self.hub.upsert_channel(&r);
                }
                continue;
            }
            self.settle_orphan(&name).await?;
        }
        Ok(())
    }

    /// A channel no configuration names and no account owns, by the orphan policy.
    async fn settle_orphan(&self, name: &str) -> Result<(), BufferError> {
        match self.settings.orphan_channel_policy {
            OrphanPolicy::Drain => {
                let Some(rec) = self.buffer().channel(name).await? else {
                    return Ok(());
                };
                if rec.state != ChannelState::Orphaned {
                    tracing::info!(channel = %name, "channel no longer configured: orphaned (drain)");
                    self.buffer().orphan_channel(name).await?;
                }
                if let Some(r) = self.buffer().channel(name).await? {
                    self.hub.upsert_channel(&r);
                }
            }
            OrphanPolicy::Delete => {
                let n = self.buffer().delete_channel(name).await?;
                self.hub.remove_channel(name);
                if n > 0 {
                    self.metrics.discarded(name, "channel_deleted", n);
                }
                tracing::info!(channel = %name, discarded = n, "channel no longer configured: deleted");
            }
        }
        Ok(())
    }

    /// Every self-service channel's name, sorted (looked up by binary search: half the
    /// memory of a hash set at 100,000 names).
    async fn hosted_names(&self) -> Result<Vec<String>, BufferError> {
        let mut names = self.buffer().hosted_channel_names().await?;
        names.sort_unstable();
        Ok(names)
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
        let hosted = self.hosted_names().await?;
        webhooks.disable_channels(|channel| {
            hosted.binary_search_by(|h| h.as_str().cmp(channel)).is_ok().then(|| {
                format!(
                    "module-config.channel: '{channel}' is a self-service channel of an account; this entry is disabled (rename its channel, or delete the self-service channel and reload)"
                )
            })
        });
        Ok(())
    }

    /// Registers every channel in `specs` (§8.4) and updates the hub's view of them. Each
    /// registration is built as it is sent, not all of them first.
    async fn register_channels(
        &self,
        specs: &BTreeMap<&str, ChannelSpecRef<'_>>,
    ) -> Result<(), BufferError> {
        let max_queue_bytes = self.settings.max_queue_bytes;
        // Many registrations in flight at once: the embedded store commits them in groups
        // (one sync for many channels), Redis pipelines them.
        let mut pending = specs.iter();
        let mut in_flight = FuturesUnordered::new();
        loop {
            while in_flight.len() < REGISTER_IN_FLIGHT {
                let Some((name, spec)) = pending.next() else {
                    break;
                };
                let reg = ChannelRegistration {
                    name: (*name).to_owned(),
                    settings: channel_settings(spec.settings, max_queue_bytes),
                    configured_token_digest: token_digest(&spec.settings.channel_token),
                    owner: spec.owner.to_owned(),
                    webhook_ids: spec.webhook_keys.iter().map(|k| (*k).to_owned()).collect(),
                };
                let buffer = self.buffer().clone();
                in_flight.push(async move { buffer.register_channel(reg).await });
            }
            let Some(r) = in_flight.next().await else {
                break;
            };
            let r = r?;
            if r.configured_token_changed {
                tracing::info!(channel = %r.record.name, "configured channel token changed; old-token connections are closed");
            }
            self.hub.upsert_channel(&r.record);
        }
        Ok(())
    }

    /// Registers the channels of the configuration in force again, after the buffer lost its
    /// state ([`Buffer::state_epoch`]). Returns how many channels were registered.
    pub async fn register_configured_channels(&self) -> Result<usize, BufferError> {
        if !self.settings.enabled {
            return Ok(0);
        }
        match self.config() {
            Some(cfg) => {
                let specs = cfg.webhooks.channel_refs();
                self.register_channels(&specs).await?;
                Ok(specs.len())
            }
            None => Ok(0),
        }
    }
}
