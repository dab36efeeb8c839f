//! Connector engine: pulls webhooks from the Webhook Connect cloud over WebSocket, SSE or
//! long-poll and forwards them to local HTTP targets, then ACKs or NACKs them
//! (PROTOCOL.md §11, CONFIG.md §7). No Tauri: the CLI and the desktop app are thin shells.
//!
//! Layout, in the order a webhook goes through it:
//! - [`handle`]: [`Engine`] / [`EngineHandle`], the public API (channels, pause, history,
//!   replay, shutdown) and the state [`Carried`] between processes; [`error`]: [`EngineError`].
//! - [`config`]: the connector configuration (`types`, the `sources` file / `CONNECTOR_*` env /
//!   flags, per-channel `validate`); the transport choice is `auto` or one transport of
//!   `connect_protocol`.
//! - `session`: each channel's reconnect ladder (backoff, `auto` fallback, close codes and SSE
//!   errors from `connect_protocol`).
//! - `transport`: one session of `ws`, `sse` (eventsource-stream) or `poll`, and their `tls`
//!   and `proxy` (hyper-util's proxy matcher and CONNECT tunnel): where a webhook enters.
//! - `channel`: one channel's context (clients, limits, live status, history), its
//!   cancellation tokens and settlement (ACK / NACK / extend): where it is settled.
//! - `delivery`: a message from arrival to settlement (target or module, ordered workers, lease
//!   extension) and replays: where it waits.
//! - [`forward`]: target choice, exact body and headers, local retries, the ACK/NACK decision:
//!   where it leaves. [`modules`]: module mode (`webhooks_config`).
//! - [`history`] / [`stats`] / `status`: the bounded history, the latency window, the live
//!   status; [`api`]: their view types, shared with the CLI and the app UI.
//! - `outcome_log`: the log line of each retry, hand-back and dead letter.
//! - `cloud_status`: `/connect/status` — the queue depth, and telling a v1 cloud apart before
//!   long-polling it. [`admin`]: a client of the cloud's admin API (dead letters) for the app.
//! - [`hosted`]: a typed client of the cloud's self-service API (`/api/v1`: account, channels,
//!   dead letters) with the API key, and the key file for machines without a keyring.
//! - [`keyring`]: `token_ref = "keyring"`, and the API key of a cloud (`api-key:<cloud url>`).

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
pub mod hosted;
pub mod keyring;
pub mod modules;
mod outcome_log;
mod session;
pub mod stats;
mod status;
mod transport;

pub use api::{
    ChannelStatus, DeliveryCounters, EventDetail, EventSummary, LinkState, ReplayRequest,
};
pub use config::{ConnectorConfig, ConnectorConfigError, Overrides, Sources};
pub use error::EngineError;
pub use handle::{Carried, CarriedChannel, DEFAULT_GRACE, Engine, EngineHandle, Finished};
