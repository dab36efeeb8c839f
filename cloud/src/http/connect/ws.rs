//! `GET /connect/stream/{channel}` with a WebSocket upgrade (§5.1).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{
    CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade,
    rejection::WebSocketUpgradeRejection,
};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use connect_protocol::close;
use connect_protocol::frames::{ClientFrame, FrameErrorCode, Heartbeat, ServerFrame};
use connect_protocol::ids::Protocol;
use connect_protocol::time::Timestamp;
use futures::{SinkExt, StreamExt};

use crate::app::AppState;
use crate::http::connect::beat;
use crate::http::connect::common::{Authed, authenticate, version_header};
use crate::hub::AddConn;
use crate::hub::conn::{Conn, NewConn};

/// Client frames above this size close the connection with 1009.
const MAX_CLIENT_FRAME: usize = 64 * 1024;
/// v1 clients refuse messages above 4 MiB (§3.2 frame budget).
const V1_FRAME_BUDGET: usize = 4 * 1024 * 1024;
/// tungstenite's read buffer, which it zero-fills to this size before every read: its default
/// of 128 KiB was most of what an idle connector cost (~135 KB each; docs/BENCHMARKS.md "Idle
/// connectors"). Client frames are small (ACKs, heartbeats); a larger one still grows it.
const READ_BUFFER: usize = 4 * 1024;

pub async fn stream_ws(
    State(st): State<AppState>,
    Path(channel): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let authed = match authenticate(&st, &channel, &headers, query.as_deref()).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let ws = match ws {
        Ok(ws) => ws,
        Err(rej) => return rej.into_response(),
    };
    let params = authed.new_conn(&st, Protocol::Websocket, peer, &headers, None);
    let mut res = ws
        .read_buffer_size(READ_BUFFER)
        .max_message_size(MAX_CLIENT_FRAME)
        .max_frame_size(MAX_CLIENT_FRAME)
        .on_upgrade(move |socket| run(st, authed, params, socket));
    let (k, v) = version_header();
    res.headers_mut().insert(k, v);
    res
}

fn close_msg(code: u16) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(close::reason(code)),
    }))
}

async fn run(st: AppState, authed: Authed, params: NewConn, mut socket: WebSocket) {
    let version = params.protocol_version;
    let wt = st.settings().write_timeout();
    let conn = match st.hub().add_conn(params).await {
        Ok(AddConn::Added(c)) => c,
        Ok(AddConn::Full) => {
            send_within(&mut socket, close_msg(close::MAX_CONNECTIONS), wt).await;
            return;
        }
        Ok(AddConn::NoChannel) | Err(_) => {
            send_within(&mut socket, close_msg(close::GOING_AWAY), wt).await;
            return;
        }
    };
    let hb = st.settings().heartbeat();
    let connected = ServerFrame::Connected(authed.connected(&st, &conn));
    let (mut sink, mut stream) = socket.split();
    if !send_within(&mut sink, text(&connected), wt).await {
        st.hub().remove_conn(&conn).await;
        return;
    }
    let mut rx = conn.receiver().await;
    let mut ticker = beat::ticker(hb);
    let mut last_seen = Instant::now();
    let mut guard = InvalidFrameGuard::default();
    let close_code = loop {
        tokio::select! {
            _ = conn.closed() => {
                break conn.close_reason().map(|r| r.ws_code()).unwrap_or(close::GOING_AWAY);
            }
            batch = rx.recv() => {
                let Some(batch) = batch else { break close::GOING_AWAY };
                let mut failed = false;
                for leased in batch {
                    let wire = leased.message.to_wire(leased.delivery_count);
                    let mut json = serde_json::to_string(&wire).unwrap_or_default();
                    if version < 2 && json.len() > V1_FRAME_BUDGET {
                        json = serde_json::to_string(&wire.without_raw()).unwrap_or_default();
                    }
                    if !send_within(&mut sink, Message::Text(json.into()), wt).await {
                        failed = true;
                        break;
                    }
                }
                if failed { break 0 }
            }
            _ = ticker.tick() => {
                if last_seen.elapsed() > hb * 3 {
                    break close::HEARTBEAT_TIMEOUT;
                }
                let now = Timestamp::now();
                let beat = ServerFrame::Heartbeat(Heartbeat { timestamp: now, server_time: Some(now) });
                if !send_both_within(&mut sink, [text(&beat), Message::Ping(Default::default())], wt).await {
                    break 0;
                }
            }
            incoming = stream.next() => {
                match incoming {
                    None => break 0,
                    Some(Err(e)) => {
                        let too_big = e.to_string().to_ascii_lowercase().contains("too long")
                            || e.to_string().to_ascii_lowercase().contains("too big")
                            || e.to_string().to_ascii_lowercase().contains("capacity");
                        break if too_big { close::TOO_BIG } else { 0 };
                    }
                    Some(Ok(Message::Close(_))) => break 0,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        last_seen = Instant::now();
                        conn.touch();
                    }
                    Some(Ok(Message::Binary(_))) => {
                        last_seen = Instant::now();
                        if let Some(code) = guard.invalid(&mut sink, wt, FrameErrorCode::BinaryFrame, "Binary frames are not supported").await {
                            break code;
                        }
                    }
                    Some(Ok(Message::Text(t))) => {
                        last_seen = Instant::now();
                        conn.touch();
                        match ClientFrame::parse(t.as_str()) {
                            Ok(frame) => handle_frame(&st, &conn, frame).await,
                            Err(e) => {
                                if let Some(code) = guard.invalid(&mut sink, wt, e.code, &e.error).await {
                                    break code;
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    drop(rx);
    // A connector that stopped reading takes neither the close frame nor the close: the
    // connection is released (and its leases requeued) all the same.
    if close_code != 0 {
        send_within(&mut sink, close_msg(close_code), wt).await;
    }
    let _ = tokio::time::timeout(wt, sink.close()).await;
    st.hub().remove_conn(&conn).await;
}

/// Sends one message within `deadline`; false when it failed or did not go out in time
/// (a connector that stopped reading must not hold the connection, or its slot, for good).
async fn send_within<S>(sink: &mut S, msg: Message, deadline: Duration) -> bool
where
    S: futures::Sink<Message> + Unpin,
{
    matches!(
        tokio::time::timeout(deadline, sink.send(msg)).await,
        Ok(Ok(()))
    )
}

/// Sends messages together — queued, then one flush, so one write reaches the socket — within
/// `deadline`; false as [`send_within`].
async fn send_both_within<S>(sink: &mut S, msgs: [Message; 2], deadline: Duration) -> bool
where
    S: futures::Sink<Message> + Unpin,
{
    let send = async {
        for msg in msgs {
            sink.feed(msg).await?;
        }
        sink.flush().await
    };
    matches!(tokio::time::timeout(deadline, send).await, Ok(Ok(())))
}

fn text(frame: &ServerFrame) -> Message {
    Message::Text(serde_json::to_string(frame).unwrap_or_default().into())
}

async fn handle_frame(st: &AppState, conn: &Arc<Conn>, frame: ClientFrame) {
    let res = match frame {
        ClientFrame::Ack { message_id } => st
            .hub()
            .ack(conn.channel(), &message_id, conn.id(), Some(conn))
            .await
            .map(|_| ()),
        ClientFrame::Nack {
            message_id,
            retry,
            error,
        } => st
            .hub()
            .nack(conn, &message_id, retry, error)
            .await
            .map(|_| ()),
        ClientFrame::Extend { message_id } => st.hub().extend(conn, &message_id).await.map(|_| ()),
        ClientFrame::Heartbeat { .. } => Ok(()),
    };
    if let Err(e) = res {
        tracing::warn!(connection = %conn.id(), error = %e, "settling a message failed");
    }
}

/// At most one error frame per second; more than 100 invalid frames within 60 s → 1008.
#[derive(Default)]
struct InvalidFrameGuard {
    recent: std::collections::VecDeque<Instant>,
    last_error_frame: Option<Instant>,
}

impl InvalidFrameGuard {
    async fn invalid<S>(
        &mut self,
        sink: &mut S,
        deadline: Duration,
        code: FrameErrorCode,
        error: &str,
    ) -> Option<u16>
    where
        S: futures::Sink<Message> + Unpin,
    {
        let now = Instant::now();
        self.recent.push_back(now);
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.recent.pop_front();
        }
        if self.recent.len() > 100 {
            return Some(close::POLICY);
        }
        if self
            .last_error_frame
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.last_error_frame = Some(now);
            let frame = ServerFrame::Error {
                error: error.to_owned(),
                code,
            };
            if !send_within(sink, text(&frame), deadline).await {
                return Some(0);
            }
        }
        None
    }
}
