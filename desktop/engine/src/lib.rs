//! Connector engine: pulls webhooks from the Webhook Connect cloud over WebSocket, SSE or
//! long-poll and forwards them to local HTTP targets, then ACKs or NACKs them
//! (PROTOCOL.md §11, CONFIG.md §7). No Tauri: the CLI and the desktop app are thin shells.
//!
//! Layout:
//! - [`config`]: the connector configuration from file, `CONNECTOR_*` env and flags.
//! - [`forward`]: target choice, exact body and headers, local retries, the ACK/NACK decision.
//! - [`api`]: the view types (status, history, replay) shared with the CLI and the app UI.
//! - [`history`] / [`stats`]: the bounded history and the latency window.
//! - `outcome_log`: the log line of each retry, hand-back and dead letter.
//! - [`modules`]: module mode (`webhooks_config`).
//! - `cloud_status`: `/connect/status` — the queue depth, and telling a v1 cloud apart before
//!   long-polling it.
//! - [`admin`]: a client of the cloud's admin API (dead letters) for the app.
//! - [`keyring`]: `token_ref = "keyring"`.
//! - [`handle`]: [`Engine`] / [`EngineHandle`], the public API (channels, pause, history,
//!   replay, shutdown) and the state [`Carried`] between processes; [`error`]: [`EngineError`].
//! - `channel`: one channel's context (clients, limits, live status, history), its cancellation
//!   tokens and settlement (ACK / NACK / extend).
//! - `delivery`: a message from arrival to settlement (targets, modules, ordered workers, lease
//!   extension) and replays.
//! - `session`: the reconnect ladder of each channel (backoff, `auto` fallback, close codes).
//! - `transport`: one session of `ws`, `sse` or `poll`, and their `tls` and `proxy`.

pub mod admin;
pub mod api;
mod channel;
mod cloud_status;
pub mod config;
mod delivery;
pub mod error;
mod etcd_modules;
pub mod forward;
pub mod handle;
pub mod history;
pub mod keyring;
pub mod modules;
mod outcome_log;
mod session;
pub mod stats;
mod status;
mod transport;

pub use api::{ChannelState, ChannelStatus, Counters, EventDetail, EventSummary, ReplayRequest};
pub use config::{ConfigError, ConnectorConfig, Overrides, Sources};
pub use error::EngineError;
pub use handle::{Carried, CarriedChannel, DEFAULT_GRACE, Engine, EngineHandle};
