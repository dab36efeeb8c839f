//! The long-poll transport (§5.3).

use std::sync::Arc;
use std::time::Duration;

use connect_protocol::headers as h;
use connect_protocol::message::WireMessage;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::is_v2;
use crate::channel::{ChannelCtx, Link, error_chain};
use crate::cloud_status::StatusError;
use crate::session::{ConnError, End, Session, connected};

/// Why a poll answer without a protocol version ends the long-poll session.
const UNMARKED_POLL: &str = "the poll answer names no protocol version although /connect/status \
     did; nothing from it was forwarded";

pub(crate) async fn run_poll(ctx: &Arc<ChannelCtx>, stop: &CancellationToken) -> Session {
    // The cloud's version first, from an answer that takes no message (see `cloud_status`).
    let checked = tokio::select! {
        _ = stop.cancelled() => return Session { connected: false, result: Ok(End::Draining) },
        r = crate::cloud_status::read(ctx.status_request()) => r,
    };
    match checked {
        Ok(status) if status.v2 => {}
        Ok(_) => {
            return Session {
                connected: false,
                result: Err(ConnError::V1LongPoll),
            };
        }
        Err(e) => {
            let e = match e {
                StatusError::Auth(_) => ConnError::Auth(e.to_string()),
                StatusError::Status(_) | StatusError::Request(_) => ConnError::Other(e.to_string()),
            };
            return Session {
                connected: false,
                result: Err(e),
            };
        }
    }
    let timeout = ctx.cfg.heartbeat_timeout.as_secs().clamp(1, 30);
    let mut conn: Option<String> = None;
    let mut was_connected = false;
    loop {
        // The first poll of a session is short, so the channel shows connected (or the failure)
        // at once instead of after a full long-poll wait with nothing to deliver.
        let wait = if was_connected { timeout } else { 1 };
        let mut req = ctx
            .common_headers(ctx.cloud.get(format!(
                "{}/connect/stream/{}/poll",
                ctx.http_base(),
                ctx.cfg.channel
            )))
            .query(&[
                ("timeout", wait.to_string()),
                ("max_messages", "10".to_owned()),
            ])
            .timeout(Duration::from_secs(wait + 5));
        if let Some(c) = &conn {
            req = req.header(h::CONNECTION_ID, c);
        }
        let resp = tokio::select! {
            _ = stop.cancelled() => return Session { connected: was_connected, result: Ok(End::Draining) },
            r = req.send() => r,
        };
        let fail = |r| Session {
            connected: was_connected,
            result: Err(r),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return fail(ConnError::Other(format!(
                    "poll timeout: no answer within {} s",
                    wait + 5
                )));
            }
            Err(e) => return fail(ConnError::Other(format!("poll: {}", error_chain(&e)))),
        };
        let s = resp.status().as_u16();
        let v2_header = is_v2(resp.headers());
        match s {
            // A v2 server marks its 204s too. An unmarked one contradicts the status answer
            // (a proxy in between?): stop before anything is forwarded.
            204 if !v2_header => return fail(ConnError::Other(UNMARKED_POLL.into())),
            204 => {
                if !was_connected {
                    was_connected = true;
                    {
                        let mut l = ctx.live.lock();
                        l.status.connected();
                        l.status.server_protocol_version = Some(2);
                    }
                    ctx.queue_wake.notify_one();
                }
                continue;
            }
            200 => {}
            401 | 403 => return fail(ConnError::Auth(format!("HTTP {s}: invalid channel token"))),
            _ => return fail(ConnError::Other(format!("poll answered HTTP {s}"))),
        }
        let body: Value = match resp.json().await {
            Ok(v) => v,
            Err(e) => return fail(ConnError::Other(format!("poll body: {e}"))),
        };
        let pv = body["protocol_version"].as_u64().map(|v| v as u32);
        let id = body["connection_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let link = Arc::new(Link {
            connection_id: id.clone(),
            ws: None,
            v2: v2_header || pv.is_some_and(|v| v >= 2),
            ack_timeout: Duration::from_secs(
                body["ack_timeout_seconds"].as_u64().unwrap_or(30).max(1),
            ),
        });
        if !link.v2 {
            // As for an unmarked 204. These messages cannot be settled on this link and are not
            // forwarded; when (or whether) the cloud gives them out again is up to the cloud.
            let n = body["messages"].as_array().map_or(0, Vec::len);
            tracing::warn!(channel = %ctx.cfg.channel, messages = n, "a poll answer without a protocol version: its messages were not forwarded");
            return fail(ConnError::Other(UNMARKED_POLL.into()));
        }
        if !was_connected || conn.as_deref() != Some(&id) {
            connected(ctx, &link, pv);
        }
        was_connected = true;
        conn = Some(id);
        for m in body["messages"].as_array().cloned().unwrap_or_default() {
            match serde_json::from_value::<WireMessage>(m) {
                Ok(m) => ctx.accept(&link, m),
                Err(e) => {
                    tracing::warn!(channel = %ctx.cfg.channel, error = %e, "unparsable poll message")
                }
            }
        }
    }
}
