//! The Server-Sent Events transport (§5.2).

use std::sync::Arc;
use std::time::Duration;

use connect_protocol::message::WireMessage;
use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::is_v2;
use crate::channel::{ChannelCtx, Link, error_chain};
use crate::config::Protocol;
use crate::session::{ConnError, End, Session, connected};
use crate::sse::SseParser;

pub(crate) async fn run_sse(ctx: &Arc<ChannelCtx>, stop: &CancellationToken) -> Session {
    let fail = |r| Session {
        connected: false,
        result: Err(r),
    };
    let req = ctx
        .common_headers(ctx.cloud.get(format!(
            "{}/connect/stream/{}/sse",
            ctx.http_base(),
            ctx.cfg.channel
        )))
        .header("accept", "text/event-stream");
    let resp = tokio::select! {
        _ = stop.cancelled() => return Session { connected: false, result: Ok(End::Draining) },
        r = tokio::time::timeout(ctx.cfg.connection_timeout, req.send()) => match r {
            Err(_) => return fail(ConnError::Other("connection timeout".into())),
            Ok(Err(e)) => return fail(ConnError::Other(format!("SSE connect: {}", error_chain(&e)))),
            Ok(Ok(r)) => r,
        },
    };
    let s = resp.status().as_u16();
    // The cloud answers a bad token with 401; a 403 under `auto` may be a proxy refusing event
    // streams, so it falls back to long-poll like any transport failure.
    if s == 401 || (s == 403 && ctx.cfg.protocol != Protocol::Auto) {
        return fail(ConnError::Auth(format!("HTTP {s}: invalid channel token")));
    }
    if !resp.status().is_success() {
        return fail(ConnError::Other(format!("SSE answered HTTP {s}")));
    }
    let mut v2 = is_v2(resp.headers());
    let mut stream = resp.bytes_stream();
    let mut parser = SseParser::default();
    let mut link = Arc::new(Link {
        connection_id: String::new(),
        ws: None,
        v2,
        ack_timeout: Duration::from_secs(30),
    });
    let mut was_connected = false;
    let end = 'outer: loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break End::Draining,
            n = tokio::time::timeout(ctx.cfg.heartbeat_timeout, stream.next()) => n,
        };
        let chunk = match next {
            Err(_) => break End::HeartbeatTimeout,
            Ok(None) => break End::Closed(None, "stream ended".into()),
            Ok(Some(Err(e))) => break End::Closed(None, format!("read error: {e}")),
            Ok(Some(Ok(c))) => c,
        };
        for ev in parser.feed(&chunk) {
            match ev.event.as_str() {
                "connected" => {
                    let c: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
                    let pv = c["protocol_version"].as_u64().map(|v| v as u32);
                    v2 = v2 || pv.is_some_and(|v| v >= 2);
                    link = Arc::new(Link {
                        connection_id: c["connection_id"].as_str().unwrap_or_default().to_owned(),
                        ws: None,
                        v2,
                        ack_timeout: Duration::from_secs(
                            c["ack_timeout_seconds"].as_u64().unwrap_or(30).max(1),
                        ),
                    });
                    was_connected = true;
                    connected(ctx, &link, pv);
                    tracing::info!(channel = %ctx.cfg.channel, connection_id = %link.connection_id, "connected (sse)");
                }
                "webhook" => match serde_json::from_str::<WireMessage>(&ev.data) {
                    Ok(m) => ctx.accept(&link, m),
                    Err(e) => {
                        tracing::warn!(channel = %ctx.cfg.channel, error = %e, "unparsable webhook event")
                    }
                },
                "error" => {
                    let c: Value = serde_json::from_str(&ev.data).unwrap_or(Value::Null);
                    let code = c["error"].as_str().unwrap_or_default().to_owned();
                    let mapped = match code.as_str() {
                        "token_revoked" => Some(4005),
                        "channel_removed" => Some(4006),
                        "max_connections_reached" => Some(4003),
                        "disconnected_by_admin" => Some(4004),
                        "server_shutdown" => Some(1001),
                        _ => None,
                    };
                    break 'outer End::Closed(mapped, code);
                }
                _ => {}
            }
        }
    };
    if matches!(end, End::Draining) {
        // Settle running deliveries while the stream is still open: a v1 cloud forgets a
        // closed stream at once, and ACKs for it then answer 404 (the message comes again).
        ctx.settled().await;
    }
    drop(stream);
    Session {
        connected: was_connected,
        result: Ok(end),
    }
}
