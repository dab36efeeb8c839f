//! `GET /connect/stream/{channel}/sse` (§5.2): one task per stream writes whole events into
//! the response body; the stream's end (client gone) deregisters the connection at once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use connect_protocol::frames::{Heartbeat, SseError, sse_error};
use connect_protocol::ids::Protocol;
use connect_protocol::json::to_ascii_json;
use connect_protocol::time::Timestamp;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;

use crate::app::AppState;
use crate::http::connect::common::{Authed, authenticate, version_header};
use crate::hub::AddConn;
use crate::hub::conn::NewConn;

/// A keep-alive comment is written whenever nothing was written for this long.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

pub async fn stream_sse(
    State(st): State<AppState>,
    Path(channel): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let authed = match authenticate(&st, &channel, &headers, query.as_deref()).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let params = authed.new_conn(&st, Protocol::Sse, peer, &headers, None);
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let st2 = st.clone();
    st.tracker().spawn(run(st2, authed, params, tx));
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::HeaderName::from_static("x-accel-buffering"),
        HeaderValue::from_static("no"),
    );
    let (k, v) = version_header();
    h.insert(k, v);
    res
}

fn event(name: &str, id: Option<&str>, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 48);
    s.push_str("event: ");
    s.push_str(name);
    s.push('\n');
    if let Some(id) = id {
        s.push_str("id: ");
        s.push_str(id);
        s.push('\n');
    }
    s.push_str("data: ");
    s.push_str(data);
    s.push_str("\n\n");
    Bytes::from(s)
}

async fn run(st: AppState, authed: Authed, params: NewConn, tx: mpsc::Sender<Bytes>) {
    let conn = match st.hub().add_conn(params).await {
        Ok(AddConn::Added(c)) => c,
        Ok(AddConn::Full) => {
            let data = to_ascii_json(&SseError {
                error: sse_error::MAX_CONNECTIONS.into(),
            });
            let _ = tx.send(event("error", None, &data)).await;
            return;
        }
        Ok(AddConn::NoChannel) | Err(_) => {
            let data = to_ascii_json(&SseError {
                error: sse_error::INTERNAL.into(),
            });
            let _ = tx.send(event("error", None, &data)).await;
            return;
        }
    };
    let hb = st.settings().heartbeat();
    let wt = st.settings().write_timeout();
    let connected = authed.connected(&st, &conn);
    let mut alive = send_within(
        &tx,
        event("connected", None, &to_ascii_json(&connected)),
        wt,
    )
    .await;
    let mut rx = conn.receiver().await;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + hb, hb);
    let mut last_write = tokio::time::Instant::now();
    while alive {
        let keep_alive_at = last_write + KEEP_ALIVE;
        tokio::select! {
            _ = tx.closed() => break,
            _ = conn.closed() => {
                let reason = conn.close_reason().map(|r| r.sse_error()).unwrap_or(sse_error::SERVER_SHUTDOWN);
                send_within(&tx, event("error", None, &to_ascii_json(&SseError { error: reason.into() })), wt).await;
                break;
            }
            batch = rx.recv() => {
                let Some(batch) = batch else { break };
                for leased in batch {
                    let wire = leased.message.to_wire(leased.delivery_count);
                    let ev = event("webhook", Some(&wire.message_id), &to_ascii_json(&wire));
                    if !send_within(&tx, ev, wt).await {
                        alive = false;
                        break;
                    }
                }
                last_write = tokio::time::Instant::now();
            }
            _ = ticker.tick() => {
                let now = Timestamp::now();
                let data = to_ascii_json(&Heartbeat { timestamp: now, server_time: Some(now) });
                alive = send_within(&tx, event("heartbeat", None, &data), wt).await;
                last_write = tokio::time::Instant::now();
            }
            _ = tokio::time::sleep_until(keep_alive_at) => {
                alive = send_within(&tx, Bytes::from_static(b": keep-alive\n\n"), wt).await;
                last_write = tokio::time::Instant::now();
            }
        }
    }
    drop(rx);
    st.hub().remove_conn(&conn).await;
}

/// Queues one event for the response body within `deadline`; false when the body is gone or
/// the connector has not taken the events before it in time (it stopped reading).
async fn send_within(tx: &mpsc::Sender<Bytes>, ev: Bytes, deadline: Duration) -> bool {
    matches!(
        tokio::time::timeout(deadline, tx.send(ev)).await,
        Ok(Ok(()))
    )
}
