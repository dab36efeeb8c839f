//! Connector engine: pulls webhooks from the Webhook Connect cloud over WebSocket, SSE or
//! long-poll and forwards them to local HTTP targets, then ACKs or NACKs them
//! (PROTOCOL.md §11, CONFIG.md §7). No Tauri: the CLI and the desktop app are thin shells.
//!
//! Layout:
//! - [`config`]: the connector configuration from file, `CONNECTOR_*` env and flags.
//! - [`forward`]: target choice, exact body and headers, local retries, the ACK/NACK decision.
//! - [`sse`]: a small Server-Sent Events parser.
//! - [`api`]: the view types (status, history, replay) shared with the CLI and the app UI.
//! - [`history`] / [`stats`]: the bounded history and the latency window.
//! - `outcome_log`: the log line of each retry, hand-back and dead letter.
//! - [`modules`]: module mode (`webhooks_config`).
//! - `cloud_status`: `/connect/status` — the queue depth, and telling a v1 cloud apart before
//!   long-polling it.
//! - [`admin`]: a client of the cloud's admin API (dead letters) for the app.
//! - [`keyring`]: `token_ref = "keyring"`.
//! - [`engine`]: reconnect loops, the three transports, settlement, [`Engine`] / [`EngineHandle`].

pub mod admin;
pub mod api;
mod cloud_status;
pub mod config;
pub mod engine;
mod etcd_modules;
pub mod forward;
pub mod history;
pub mod keyring;
pub mod modules;
mod outcome_log;
pub mod sse;
pub mod stats;
mod status;

pub use api::{ChannelState, ChannelStatus, Counters, EventDetail, EventSummary, ReplayRequest};
pub use config::{ConfigError, ConnectorConfig, Overrides, Sources};
pub use engine::{Carried, CarriedChannel, DEFAULT_GRACE, Engine, EngineError, EngineHandle};
