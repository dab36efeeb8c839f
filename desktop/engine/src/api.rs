//! The engine's view types: what the CLI prints, the control endpoint serves and the desktop
//! app sends to its web UI. Declared once here; `ui/src/generated/engine.ts` is generated from
//! them (see [`bindings`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// State of one channel's link to the cloud.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Connecting,
    Connected,
    /// The cloud rejected the token; retried slowly.
    AuthFailed,
    /// Reconnecting repeatedly, on a fallback transport, or its target is failing.
    Degraded,
    /// Paused by the user (all channels).
    Paused,
    /// Stopped for good: token revoked, channel removed, or engine shut down.
    Stopped,
    /// Disconnected by the user (this channel).
    Disconnected,
}

/// The transport a channel is on: the wire contract's kind of connection.
pub use connect_protocol::ids::Protocol as Transport;

/// What became of a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Target answered 2xx; ACKed.
    Delivered,
    /// NACKed with `retry=true` (or a replay that failed with a retryable error).
    Retry,
    /// NACKed with `retry=false`: the cloud dead-letters it.
    DeadLetter,
    /// A replay the target refused.
    Failed,
    /// Being delivered.
    InFlight,
}

/// Per-channel counters since start.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct DeliveryCounters {
    pub received: u64,
    pub delivered: u64,
    pub failed: u64,
    pub retried: u64,
    pub dead_lettered: u64,
}

/// Delivery latency (receipt to the target's final answer) over the last minutes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct Latency {
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub samples: u64,
}

/// One 10-second bucket of the last ten minutes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct SeriesPoint {
    /// Bucket start, Unix milliseconds.
    pub t_ms: u64,
    pub delivered: u64,
    pub failed: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// The channel's queue at the cloud, from `GET /connect/status/{channel}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct QueueDepth {
    pub pending: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub dead_letters: u64,
    pub connected: bool,
    /// When it was read (RFC 3339).
    pub at: String,
}

/// A snapshot of one channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct ChannelStatus {
    /// Engine-unique key (the channel name unless the app gave its own).
    pub key: String,
    pub channel: String,
    pub state: LinkState,
    pub transport: Option<Transport>,
    pub connection_id: Option<String>,
    /// Why the channel is not (fully) connected. Cleared when a connection is established and
    /// when the channel is paused or disconnected: it is shown only while it describes the
    /// current state.
    pub last_error: Option<String>,
    /// When `last_error` happened (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub last_error_at: Option<String>,
    pub connection_attempts: u64,
    pub counters: DeliveryCounters,
    pub in_flight: u64,
    pub latency: Latency,
    pub series: Vec<SeriesPoint>,
    pub queue: Option<QueueDepth>,
    /// Last message received (RFC 3339).
    pub last_event_at: Option<String>,
}

impl ChannelStatus {
    /// A channel in `state` with nothing recorded yet: no link, no counters, no reading.
    pub fn idle(key: &str, channel: &str, state: LinkState) -> Self {
        Self {
            key: key.into(),
            channel: channel.into(),
            state,
            transport: None,
            connection_id: None,
            last_error: None,
            last_error_at: None,
            connection_attempts: 0,
            counters: DeliveryCounters::default(),
            in_flight: 0,
            latency: Latency::default(),
            series: Vec::new(),
            queue: None,
            last_event_at: None,
        }
    }
}

/// One line of the inspector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct EventSummary {
    pub message_id: String,
    pub webhook_id: String,
    /// When the connector received it (RFC 3339).
    pub received_at: String,
    pub method: Option<String>,
    pub path: Option<String>,
    pub target_url: Option<String>,
    pub response_status: Option<u16>,
    pub duration_ms: f64,
    pub attempts: u32,
    pub outcome: Outcome,
    /// For a replay: the message it replays.
    pub replay_of: Option<String>,
}

/// One request to a target and its answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct Attempt {
    pub at: String,
    pub target_url: String,
    pub status: Option<u16>,
    pub duration_ms: f64,
    pub response_headers: Vec<(String, String)>,
    pub response_body_excerpt: String,
    pub error: Option<String>,
}

/// The request as the cloud received it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct RequestView {
    pub method: Option<String>,
    pub path: Option<String>,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    /// The body as text when it is valid UTF-8.
    pub body_text: Option<String>,
    pub body_base64: String,
    pub body_len: u64,
    /// True when the history kept only the first bytes (replay needs an edited body then).
    pub body_truncated: bool,
    pub content_type: Option<String>,
}

/// An inspector entry with everything known about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct EventDetail {
    pub summary: EventSummary,
    pub request: RequestView,
    pub attempts: Vec<Attempt>,
}

/// Re-send an event from the history.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, TS)]
pub struct ReplayRequest {
    pub key: String,
    pub message_id: String,
    /// Another URL instead of the event's target.
    #[serde(default)]
    pub target_url: Option<String>,
    /// Replace every original header (hop-by-hop ones are still dropped).
    #[serde(default)]
    pub headers: Option<Vec<(String, String)>>,
    /// Replace the body.
    #[serde(default)]
    pub body_base64: Option<String>,
}

/// A target as the app edits it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct TargetSettings {
    pub url: String,
}

/// The app's targets by webhook id.
pub type TargetMap = BTreeMap<String, TargetSettings>;

macro_rules! decls {
    ($($t:ty),* $(,)?) => {
        vec![$(<$t as TS>::decl()),*]
    };
}

/// `ui/src/generated/engine.ts`.
pub fn bindings() -> String {
    let decls: Vec<String> = decls![
        LinkState,
        Outcome,
        DeliveryCounters,
        Latency,
        SeriesPoint,
        QueueDepth,
        ChannelStatus,
        EventSummary,
        Attempt,
        RequestView,
        EventDetail,
        ReplayRequest,
        TargetSettings,
    ];
    let mut out = String::from(
        "// Generated from the Rust crate connect-engine (desktop/engine/src/api.rs). Do not edit.\n\
         // Regenerate: UPDATE_TS_BINDINGS=1 cargo test -p connect-engine ts_bindings_are_fresh\n\n\
         import type { Protocol } from \"./protocol\";\n\n\
         /** The transport a channel is on (the wire contract's `Protocol`). */\n\
         export type Transport = Protocol;\n\n",
    );
    for d in decls {
        out.push_str("export ");
        out.push_str(&d.trim().replace("bigint", "number"));
        out.push_str("\n\n");
    }
    out.trim_end().to_owned() + "\n"
}

#[cfg(test)]
mod tests {
    #[test]
    fn ts_bindings_are_fresh() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../ui/src/generated/engine.ts");
        let fresh = super::bindings();
        if std::env::var_os("UPDATE_TS_BINDINGS").is_some() {
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, &fresh).expect("write");
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == fresh,
            "ui/src/generated/engine.ts is stale: run UPDATE_TS_BINDINGS=1 cargo test -p connect-engine ts_bindings_are_fresh"
        );
    }
}
