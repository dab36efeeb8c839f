//! Webhook Connect cloud service: receives webhooks, stores each one durably in its
//! channel's buffer, streams them to connectors and settles them on ACK/NACK.
//!
//! Layout, from the bottom layer up (each module imports only from the ones above it in
//! this list, never back):
//! - [`settings`]: flags and environment (CONFIG.md §1), validated before anything binds.
//! - [`metrics`]: counters and histograms, rendered at scrape time.
//! - [`hub`]: this replica's channels and live connections, the fair dispatcher on top of the
//!   buffer, and the lease accounting of each connection.
//! - [`runtime`]: hub + buffer + the configuration in force (`apply_config`); no HTTP.
//! - [`config_source`]: file / etcd sources, Vault secrets, live reload, built on the runtime.
//! - [`sweeper`]: background sweeps and housekeeping.
//! - [`stats`]: channel statistics for the admin API and `/connect/status`.
//! - [`modules`]: the local `log` / `save_to_disk` modules ingress may run.
//! - [`hosted`]: self-service accounts and account-owned channels (HOSTED.md), on the runtime.
//! - [`app`]: [`app::AppState`], what every handler gets (private fields).
//! - [`http`]: the edge, in the order a webhook travels: `http::ingress` (`POST /webhook/…`,
//!   the §2.3 pipeline up to the durable enqueue), `http::connect` (WebSocket, SSE and
//!   long-poll streams, `/connect/ack`, `/connect/status`), `http::admin` (§8 and the reload
//!   API), `http::ops` (`/health`, `/metrics`, `/openapi.json`), with `http::auth` and the one
//!   error type `http::error`.
//! - [`server`]: serving a bound listener with graceful shutdown; [`edge`]: the bounds it
//!   puts on sockets before HTTP (descriptor limit, connection cap, first-byte deadline, the
//!   documented answers to request heads hyper refuses); [`panic_hook`]: panics logged with
//!   their location, never their message.

pub mod app;
pub mod config_source;
pub mod edge;
pub mod hosted;
pub mod http;
pub mod hub;
pub mod hugepages;
pub mod metrics;
pub mod modules;
pub mod panic_hook;
pub mod runtime;
pub mod server;
pub mod settings;
pub mod stats;
pub mod sweeper;

pub use app::AppState;
pub use settings::Settings;
