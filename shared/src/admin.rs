//! Admin API objects (§8.3) and the process health body (§9).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use ts_rs::TS;

use crate::ids::Protocol;
use crate::message::{DeadLetterReason, MessageState};
use crate::time::Timestamp;

/// Lifecycle state of a channel (§8.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ChannelState {
    Active,
    Orphaned,
}

/// Counters and depths of one channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct ChannelStats {
    pub channel: String,
    pub messages_queued: u64,
    pub messages_in_flight: u64,
    pub messages_delivered: u64,
    #[serde(default)]
    pub messages_dispatched: u64,
    pub messages_expired: u64,
    pub messages_dead_lettered: u64,
    pub connected_clients: u64,
    #[serde(default)]
    pub messages_acked: u64,
    #[serde(default)]
    pub messages_nacked: u64,
    #[serde(default)]
    pub messages_delayed: u64,
    #[serde(default)]
    pub messages_received: u64,
    #[serde(default)]
    pub dead_letters: u64,
    #[serde(default)]
    pub oldest_message_age_seconds: Option<f64>,
}

/// An element of `GET /channels`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct ChannelInfo {
    pub name: String,
    pub webhook_id: String,
    pub created_at: Timestamp,
    pub ttl_seconds: u64,
    pub max_queue_size: u64,
    pub max_connections: u64,
    pub connected_clients: u64,
    pub webhook_ids: Vec<String>,
    pub state: ChannelState,
    /// The owning account of a self-service channel (HOSTED.md §3); absent for configured
    /// channels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub owner: Option<String>,
}

/// Where the channel's current token came from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct TokenInfo {
    pub source: TokenSource,
    pub rotated_at: Option<Timestamp>,
    pub old_token_expires_at: Option<Timestamp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    Config,
    Rotated,
}

/// `config` of a [`ChannelDetail`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct ChannelConfigView {
    pub name: String,
    pub webhook_id: String,
    pub ttl_seconds: u64,
    pub max_queue_size: u64,
    pub max_message_size: u64,
    pub max_in_flight: u64,
    pub ack_timeout_seconds: u64,
    pub max_connections: u64,
    pub heartbeat_interval_seconds: u64,
    pub allowed_ips: Option<Vec<String>>,
    pub rate_limit_per_second: Option<f64>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub max_delivery_attempts: u64,
    pub retry_backoff_max_seconds: u64,
    pub dlq_retention_seconds: u64,
    pub webhook_ids: Vec<String>,
    pub state: ChannelState,
    pub token: TokenInfo,
}

/// `stats` of a [`ChannelDetail`]: [`ChannelStats`] plus pending counts per webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct ChannelDetailStats {
    #[serde(flatten)]
    pub stats: ChannelStats,
    pub webhook_stats: BTreeMap<String, u64>,
}

/// A configuration error attributed to one webhook entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ConfigError {
    pub webhook: String,
    pub error: String,
}

/// `GET /channels/{c}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct ChannelDetail {
    pub name: String,
    pub webhook_id: String,
    pub created_at: Timestamp,
    pub config: ChannelConfigView,
    pub stats: ChannelDetailStats,
    pub connected_clients: Vec<ConnectionInfo>,
    pub config_errors: Vec<ConfigError>,
}

/// State of a live connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    Connected,
    Disconnecting,
}

/// Which token authenticated a connection (§7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum TokenGeneration {
    Current,
    Previous,
}

/// A live connection in the admin views.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct ConnectionInfo {
    pub connection_id: String,
    pub connector_id: Option<String>,
    pub channel: String,
    pub protocol: Protocol,
    pub connected_at: Timestamp,
    pub last_heartbeat_at: Option<Timestamp>,
    pub last_message_at: Option<Timestamp>,
    pub state: ConnectionState,
    pub in_flight_count: u64,
    pub messages_received: u64,
    pub messages_acked: u64,
    pub messages_nacked: u64,
    pub remote_ip: Option<String>,
    pub protocol_version: u32,
    pub token: TokenGeneration,
}

/// `GET /channels/{c}/webhook-stats`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct WebhookStatsResponse {
    pub channel: String,
    pub webhooks: BTreeMap<String, PendingCount>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct PendingCount {
    pub pending: u64,
}

/// Per-channel entry of the [`Overview`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct OverviewChannel {
    pub webhook_id: String,
    pub connected_clients: u64,
    pub max_connections: u64,
    pub ttl_seconds: u64,
    pub messages_queued: u64,
    pub messages_in_flight: u64,
    pub dead_letters: u64,
    pub state: ChannelState,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct OverviewHealth {
    pub buffer: bool,
    pub channels_count: u64,
    pub connections_count: u64,
}

/// `GET /overview`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct Overview {
    pub timestamp: Timestamp,
    pub health: OverviewHealth,
    pub total_channels: u64,
    pub total_connections: u64,
    pub channels: BTreeMap<String, OverviewChannel>,
}

/// `GET /admin/webhook-connect/health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct AdminHealth {
    pub status: String,
    pub buffer: bool,
    pub channels_count: u64,
    pub connections_count: u64,
    pub timestamp: Timestamp,
    pub backend: String,
}

/// A message as shown by the admin API: the dead-letter view (§8.3 DeadLetter) and the queue
/// peek view (QueuedMessage) share this shape; fields that do not apply are omitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct MessageView {
    pub message_id: String,
    pub channel: String,
    pub webhook_id: String,
    pub timestamp: Timestamp,
    pub expires_at: Timestamp,
    #[ts(type = "Record<string, unknown>")]
    pub metadata: Value,
    #[ts(type = "Record<string, string>")]
    pub headers: serde_json::Map<String, Value>,
    #[ts(type = "unknown")]
    pub payload: Value,
    pub sequence: u64,
    pub delivery_count: u32,
    pub state: MessageState,
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub namespace: Option<String>,
    pub first_attempt_at: Option<Timestamp>,
    pub last_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub reason: Option<DeadLetterReason>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub dead_lettered_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub leased_to: Option<Option<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub lease_expires_at: Option<Option<Timestamp>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub next_attempt_at: Option<Option<Timestamp>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub raw_headers: Option<Vec<(String, String)>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub body_b64: Option<String>,
}

/// `GET /channels/{c}/dead-letters`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct DeadLetterList {
    pub channel: String,
    pub count: u64,
    pub total: u64,
    pub messages: Vec<MessageView>,
}

/// `GET /channels/{c}/messages`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct MessageList {
    pub channel: String,
    pub count: u64,
    pub messages: Vec<MessageView>,
}

/// Body of `POST /channels/{c}/rotate-token`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct RotateTokenRequest {
    #[serde(default)]
    #[ts(optional)]
    pub grace_period_seconds: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct RotateTokenResponse {
    pub channel: String,
    pub new_token: String,
    pub old_token_expires_at: Timestamp,
    pub message: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct DisconnectResponse {
    pub status: String,
    pub connection_id: String,
}

/// Replay and delete of one dead letter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct DeadLetterActionResponse {
    pub status: String,
    pub channel: String,
    pub message_id: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct BulkReplayResponse {
    pub channel: String,
    pub replayed: u64,
    pub remaining: u64,
    pub stopped: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct PurgeResponse {
    pub channel: String,
    pub deleted: u64,
}

/// Component states of the process `/health` body (§9).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct HealthComponents {
    pub config_manager: String,
    pub config_backend: String,
    pub etcd: String,
    pub buffer: String,
    pub buffer_backend: String,
    pub webhook_connect: String,
    pub vault: String,
}

/// `GET /health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct Health {
    pub status: String,
    pub service: String,
    pub version: String,
    pub timestamp: f64,
    pub components: HealthComponents,
    pub webhooks_active: u64,
    pub webhooks_disabled: u64,
    pub config_errors: u64,
}
