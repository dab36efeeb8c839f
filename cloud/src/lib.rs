//! Webhook Connect cloud service: receives webhooks, stores each one durably in its
//! channel's buffer, streams them to connectors and settles them on ACK/NACK.
//!
//! Layout (in the order a webhook travels):
//! - [`settings`]: flags and environment (CONFIG.md §1), validated before anything binds.
//! - [`app`]: shared state, configuration in force, channel registration, background sweeps.
//! - [`config_source`]: file / etcd sources, Vault secrets, live reload and the reload endpoints.
//! - [`ingress`]: `POST /webhook/…`, the §2.3 pipeline up to the durable enqueue.
//! - [`hub`]: live connections and the fair dispatcher on top of the buffer.
//! - [`connect`]: WebSocket, SSE and long-poll streams, `/connect/ack`, `/connect/status`.
//! - [`admin`]: the admin API (§8).
//! - [`ops`]: `/health`, `/metrics`, `/openapi.json`.
//! - [`server`]: serving with graceful shutdown.
//! - [`error`]: the one HTTP error type.

pub mod app;
pub mod config_source;
pub mod http;
pub mod hub;
pub mod metrics;
pub mod modules;
pub mod runtime;
pub mod server;
pub mod settings;
pub mod stats;
pub mod sweeper;

pub use app::AppState;
pub use settings::Settings;
