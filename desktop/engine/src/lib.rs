//! Connector engine: pulls webhooks from the Webhook Connect cloud over WebSocket, SSE or
//! long-poll and forwards them to local HTTP targets, then ACKs or NACKs them
//! (PROTOCOL.md §11, CONFIG.md §7). No Tauri: the CLI and the desktop app are thin shells.
//!
//! Layout:
//! - [`config`]: the connector configuration from file, `CONNECTOR_*` env and flags.
//! - [`forward`]: target choice, exact body and headers, local retries, the ACK/NACK decision.
//! - [`sse`]: a small Server-Sent Events parser.
//! - [`status`]: per-channel state, counters and recent events.
//! - [`engine`]: reconnect loops, the three transports, settlement, [`Engine`] / [`EngineHandle`].

pub mod config;
pub mod engine;
pub mod forward;
pub mod sse;
pub mod status;

pub use config::{ConfigError, ConnectorConfig, Overrides, Sources};
pub use engine::{DEFAULT_GRACE, Engine, EngineError, EngineHandle};
pub use status::{ChannelState, ChannelStatus, Counters};
