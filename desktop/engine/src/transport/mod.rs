//! The three transports from the cloud to the engine (PROTOCOL.md §5), each one session from
//! connect to close, and what they need: TLS for `wss://` and the proxy for the cloud.

pub(crate) mod cloud_http;
pub(crate) mod poll;
pub(crate) mod proxy;
pub(crate) mod sse;
pub(crate) mod tls;
pub(crate) mod ws;

use connect_protocol::headers as h;

/// Largest accepted WebSocket message / SSE line / poll body (§11.1).
pub(crate) const MAX_MESSAGE: usize = 256 << 20;

pub(crate) fn is_v2(headers: &http::HeaderMap) -> bool {
    headers
        .get(h::VERSION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .is_some_and(|v| v >= 2)
}
