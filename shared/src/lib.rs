//! The Webhook Connect wire contract (PROTOCOL.md), declared once.
//!
//! Cloud, engine, tests and the desktop UI's TypeScript types all come from here.
//! No tokio, no axum: only data types, their JSON shapes and a few pure helpers.
//!
//! Layout:
//! - [`time`]: the RFC 3339 timestamp with six fractional digits (§1.4).
//! - [`ids`]: message, connection and token identifiers and the channel/webhook name rules.
//! - [`message`]: the backend-neutral [`message::StoredMessage`] and the [`message::WireMessage`].
//! - [`frames`]: WebSocket frames, SSE events, long-poll and ACK bodies.
//! - [`admin`]: admin API objects (§8) and the process `/health` body (§9).
//! - [`hosted`]: self-service accounts, quotas and account-owned channels (HOSTED.md).
//! - [`error`]: the `{"detail","code"}` error body and the stable error codes.
//! - [`status`]: a connector's reading of `/connect/status` from a v1 or v2 cloud.
//! - [`json`]: JSON helpers (ASCII-only serialization for SSE).
//! - [`ts`]: the TypeScript declarations generated from these types.

pub mod admin;
pub mod error;
pub mod frames;
pub mod hosted;
pub mod ids;
pub mod json;
pub mod message;
pub mod status;
pub mod time;
pub mod ts;

/// Protocol version this crate speaks (§1.2).
pub const PROTOCOL_VERSION: u32 = 2;

/// Header names of the connector protocol (§4.2).
pub mod headers {
    pub const VERSION: &str = "x-webhook-connect-version";
    pub const CONNECTOR_ID: &str = "x-connector-id";
    pub const CONNECTION_ID: &str = "x-connection-id";
    pub const MESSAGE_ID: &str = "x-webhook-message-id";
    pub const WEBHOOK_ID: &str = "x-webhook-id";
    pub const CHANNEL: &str = "x-webhook-channel";
    pub const ATTEMPT: &str = "x-webhook-attempt";
    pub const DELIVERY_COUNT: &str = "x-webhook-delivery-count";
}

/// WebSocket close codes (§5.1).
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const MAX_CONNECTIONS: u16 = 4003;
    pub const DISCONNECTED_BY_ADMIN: u16 = 4004;
    pub const TOKEN_REVOKED: u16 = 4005;
    pub const CHANNEL_REMOVED: u16 = 4006;
    pub const HEARTBEAT_TIMEOUT: u16 = 4008;

    /// The reason text sent with a close code.
    pub fn reason(code: u16) -> &'static str {
        match code {
            NORMAL => "normal",
            GOING_AWAY => "Server shutting down",
            POLICY => "Policy violation",
            TOO_BIG => "Frame too large",
            MAX_CONNECTIONS => "Max connections reached",
            DISCONNECTED_BY_ADMIN => "Disconnected by admin",
            TOKEN_REVOKED => "Token revoked",
            CHANNEL_REMOVED => "Channel removed",
            HEARTBEAT_TIMEOUT => "Heartbeat timeout",
            _ => "",
        }
    }
}
