//! Router tests: requests through the real router with `tower::ServiceExt::oneshot` (axum's
//! `examples/testing`), against an embedded buffer in a temporary directory. No socket, no
//! child process: each test names one edge case of ingress, the connector endpoints or the
//! admin API.

mod admin;
mod connect;
mod file_watch;
mod head_limits;
mod head_limits_h2;
mod heartbeats;
mod hosted_metrics;
mod idle_memory;
mod ingress;
mod layout;
mod shape;
mod support;
