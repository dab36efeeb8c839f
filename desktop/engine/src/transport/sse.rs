//! The Server-Sent Events transport (§5.2). The event stream is parsed by `eventsource-stream`
//! (every line ending of the SSE grammar: LF, CRLF and a lone CR).

use std::sync::Arc;
use std::time::Duration;

use connect_protocol::frames::{SseError, SseErrorCode, sse_event};
use connect_protocol::message::WireMessage;
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::is_v2;
use crate::channel::{ChannelCtx, Link, error_chain};
use crate::config::TransportChoice;
use crate::session::{ConnError, End, Session, connected};

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
    if s == 401 || (s == 403 && ctx.cfg.protocol != TransportChoice::Auto) {
        return fail(ConnError::Auth(format!("HTTP {s}: invalid channel token")));
    }
    if !resp.status().is_success() {
        return fail(ConnError::Other(format!("SSE answered HTTP {s}")));
    }
    let mut v2 = is_v2(resp.headers());
    // The idle timeout is on the bytes, not the events: keep-alive comments dispatch nothing
    // but show the link is alive.
    let mut events =
        Box::pin(idle_timeout(resp.bytes_stream(), ctx.cfg.heartbeat_timeout).eventsource());
    let mut link = Arc::new(Link {
        connection_id: String::new(),
        ws: None,
        v2,
        ack_timeout: Duration::from_secs(30),
    });
    let mut was_connected = false;
    let end = loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break End::Draining,
            n = events.next() => n,
        };
        let ev = match next {
            None => break End::Closed(None, "stream ended".into()),
            Some(Err(EventStreamError::Transport(Read::Idle))) => break End::HeartbeatTimeout,
            Some(Err(EventStreamError::Transport(Read::Failed(e)))) => {
                break End::Closed(None, format!("read error: {e}"));
            }
            Some(Err(e)) => break End::Closed(None, format!("read error: {e}")),
            Some(Ok(ev)) => ev,
        };
        match ev.event.as_str() {
            sse_event::CONNECTED => {
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
            sse_event::WEBHOOK => match serde_json::from_str::<WireMessage>(&ev.data) {
                Ok(m) => ctx.accept(&link, m),
                Err(e) => {
                    tracing::warn!(channel = %ctx.cfg.channel, error = %e, "unparsable webhook event")
                }
            },
            sse_event::ERROR => {
                let code = serde_json::from_str::<SseError>(&ev.data)
                    .map(|e| e.error)
                    .unwrap_or_default();
                let close = SseErrorCode::parse(&code).and_then(SseErrorCode::close_code);
                break End::Closed(close, code);
            }
            _ => {}
        }
    };
    if matches!(end, End::Draining) {
        // Settle running deliveries while the stream is still open: a v1 cloud forgets a
        // closed stream at once, and ACKs for it then answer 404 (the message comes again).
        ctx.settled().await;
    }
    drop(events);
    Session {
        connected: was_connected,
        result: Ok(end),
    }
}

/// Why the body of an event stream stopped giving bytes.
#[derive(Debug)]
enum Read {
    /// Nothing at all (not even a keep-alive comment) for the heartbeat timeout.
    Idle,
    Failed(reqwest::Error),
}

impl std::fmt::Display for Read {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Idle => f.write_str("no bytes for the heartbeat timeout"),
            Self::Failed(e) => e.fmt(f),
        }
    }
}

/// The body's chunks, with [`Read::Idle`] once `idle` passes without one.
fn idle_timeout<B>(
    body: impl Stream<Item = Result<B, reqwest::Error>> + Send + 'static,
    idle: Duration,
) -> impl Stream<Item = Result<B, Read>> {
    futures::stream::unfold(Some(Box::pin(body)), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout(idle, body.next()).await {
            Err(_) => Some((Err(Read::Idle), None)),
            Ok(None) => None,
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(body))),
            Ok(Some(Err(e))) => Some((Err(Read::Failed(e)), None)),
        }
    })
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use eventsource_stream::Eventsource;
    use futures::StreamExt;

    /// The (event, data) pairs an event stream cut into `chunks` dispatches.
    async fn events(chunks: &[&[u8]]) -> Vec<(String, String)> {
        let body = futures::stream::iter(chunks.iter().map(|c| Ok::<_, Infallible>(c.to_vec())));
        body.eventsource()
            .map(|e| {
                let e = e.expect("a well-formed event stream");
                (e.event, e.data)
            })
            .collect()
            .await
    }

    fn pair(event: &str, data: &str) -> (String, String) {
        (event.to_owned(), data.to_owned())
    }

    #[tokio::test]
    async fn parses_events_across_chunks_and_ignores_comments_and_ids() {
        let got = events(&[
            b": keep-alive\n\nevent: conn",
            b"ected\r\ndata: {\"a\":1}\r\n\r\nevent: webhook\nid: msg_1\ndata:x\n",
            "data: \u{e9}".as_bytes(),
            b"\n\n",
        ])
        .await;
        assert_eq!(
            got,
            vec![pair("connected", "{\"a\":1}"), pair("webhook", "x\n\u{e9}")]
        );
    }

    /// A lone CR ends a line in the SSE grammar; the hand-written parser this replaced split on
    /// LF only and never dispatched these events.
    #[tokio::test]
    async fn dispatches_events_whose_lines_end_with_a_lone_cr() {
        let got = events(&[
            b"event: webhook\rdata: x\r\revent: connected\rdata: y\r",
            b"\r: keep-alive\r\r",
        ])
        .await;
        assert_eq!(got, vec![pair("webhook", "x"), pair("connected", "y")]);
    }

    /// A multi-byte character cut between two chunks still decodes.
    #[tokio::test]
    async fn a_character_split_across_chunks_decodes() {
        let e = "\u{e9}".as_bytes();
        let got = events(&[b"event: webhook\ndata: ", &e[..1], &e[1..], b"\n\n"]).await;
        assert_eq!(got, vec![pair("webhook", "\u{e9}")]);
    }
}
