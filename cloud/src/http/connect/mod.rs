//! Connector endpoints (PROTOCOL §4–5): WebSocket, SSE and long-poll streams, `/connect/ack`
//! and `/connect/status`. Authentication happens before any upgrade or stream starts.
//!
//! Layout: [`common`] (service checks, channel authentication, connection parameters), then one
//! module per endpoint (with [`beat`], when heartbeats fall due): [`ws`], [`sse`], [`poll`], [`ack`] (`/connect/ack` and
//! `/connect/status`).

pub mod ack;
mod beat;
pub mod common;
pub mod poll;
pub mod sse;
pub mod ws;
