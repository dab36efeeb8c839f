//! `GET /connect/stream/{channel}/sse` (§5.2): one task per stream writes whole events; the
//! stream's end (client gone) deregisters the connection at once.
//!
//! Over HTTP/1.1 the task takes the socket off hyper once the response head is out
//! ([`crate::edge::handoff`]) and writes the chunked body itself, so an idle stream holds no
//! hyper buffers; over HTTP/2 (and where the edge offers no handoff) it streams through the
//! response body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use connect_protocol::frames::{Heartbeat, SseError, sse_error};
use connect_protocol::ids::Protocol;
use connect_protocol::json::to_ascii_json;
use connect_protocol::time::Timestamp;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;

use crate::app::AppState;
use crate::edge::handoff::{Detached, Handoff};
use crate::http::connect::beat;
use crate::http::connect::common::{Authed, authenticate, version_header};
use crate::hub::AddConn;
use crate::hub::conn::NewConn;

/// A keep-alive comment is written whenever nothing was written for this long.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How long the task waits for hyper to hand over the socket after the response head.
const HANDOFF_WAIT: Duration = Duration::from_secs(10);

pub async fn stream_sse(
    State(st): State<AppState>,
    Path(channel): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    version: Version,
    handoff: Option<Extension<Handoff>>,
    headers: HeaderMap,
) -> Response {
    let authed = match authenticate(&st, &channel, &headers, query.as_deref()).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let params = authed.new_conn(&st, Protocol::Sse, peer, &headers, None);
    let st2 = st.clone();
    let mut res = match handoff {
        Some(Extension(handoff)) if version == Version::HTTP_11 => {
            let socket = handoff.arm();
            st.tracker().spawn(async move {
                let Ok(Ok(d)) = tokio::time::timeout(HANDOFF_WAIT, socket).await else {
                    return;
                };
                run(st2, authed, params, Sink::socket(d)).await;
            });
            // A body that ends at once, of unknown length: hyper writes a chunked head, the
            // edge passes the head on and hands the socket over; the task writes the chunks.
            let body = Body::from_stream(tokio_stream::empty::<Result<Bytes, Infallible>>());
            let mut res = (StatusCode::OK, body).into_response();
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            res
        }
        _ => {
            let (tx, rx) = mpsc::channel::<Bytes>(64);
            st.tracker().spawn(run(st2, authed, params, Sink::Body(tx)));
            let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
            (StatusCode::OK, body).into_response()
        }
    };
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

async fn run(st: AppState, authed: Authed, params: NewConn, mut tx: Sink) {
    serve(&st, authed, params, &mut tx).await;
    tx.finish().await;
}

async fn serve(st: &AppState, authed: Authed, params: NewConn, tx: &mut Sink) {
    let conn = match st.hub().add_conn(params).await {
        Ok(AddConn::Added(c)) => c,
        Ok(AddConn::Full) => {
            let data = to_ascii_json(&SseError {
                error: sse_error::MAX_CONNECTIONS.into(),
            });
            tx.send_within(event("error", None, &data), st.settings().write_timeout())
                .await;
            return;
        }
        Ok(AddConn::NoChannel) | Err(_) => {
            let data = to_ascii_json(&SseError {
                error: sse_error::INTERNAL.into(),
            });
            tx.send_within(event("error", None, &data), st.settings().write_timeout())
                .await;
            return;
        }
    };
    let hb = st.settings().heartbeat();
    let wt = st.settings().write_timeout();
    let connected = authed.connected(st, &conn);
    let mut alive = tx
        .send_within(event("connected", None, &to_ascii_json(&connected)), wt)
        .await;
    let mut rx = conn.receiver().await;
    let mut ticker = beat::ticker(hb);
    let mut last_write = tokio::time::Instant::now();
    while alive {
        let keep_alive_at = last_write + KEEP_ALIVE;
        tokio::select! {
            _ = tx.closed() => break,
            _ = conn.closed() => {
                let reason = conn.close_reason().map(|r| r.sse_error()).unwrap_or(sse_error::SERVER_SHUTDOWN);
                tx.send_within(event("error", None, &to_ascii_json(&SseError { error: reason.into() })), wt).await;
                break;
            }
            batch = rx.recv() => {
                let Some(batch) = batch else { break };
                for leased in batch {
                    let wire = leased.message.to_wire(leased.delivery_count);
                    let ev = event("webhook", Some(&wire.message_id), &to_ascii_json(&wire));
                    if !tx.send_within(ev, wt).await {
                        alive = false;
                        break;
                    }
                }
                last_write = tokio::time::Instant::now();
            }
            _ = ticker.tick() => {
                let now = Timestamp::now();
                let data = to_ascii_json(&Heartbeat { timestamp: now, server_time: Some(now) });
                alive = tx.send_within(event("heartbeat", None, &data), wt).await;
                last_write = tokio::time::Instant::now();
            }
            _ = tokio::time::sleep_until(keep_alive_at) => {
                alive = tx.send_within(Bytes::from_static(b": keep-alive\n\n"), wt).await;
                last_write = tokio::time::Instant::now();
            }
        }
    }
    drop(rx);
    st.hub().remove_conn(&conn).await;
}

/// Where a stream's events go: the response body (hyper writes them), or the socket itself
/// after the handoff (written here as HTTP/1.1 chunks).
enum Sink {
    Body(mpsc::Sender<Bytes>),
    Socket {
        read: OwnedReadHalf,
        write: OwnedWriteHalf,
        _permit: Option<OwnedSemaphorePermit>,
    },
}

impl Sink {
    fn socket(d: Detached) -> Self {
        let (read, write) = d.stream.into_split();
        Sink::Socket {
            read,
            write,
            _permit: d.permit,
        }
    }

    /// Writes (or queues) one event within `deadline`; false when the client is gone or has
    /// not taken the events before it in time (it stopped reading).
    async fn send_within(&mut self, ev: Bytes, deadline: Duration) -> bool {
        match self {
            Sink::Body(tx) => matches!(
                tokio::time::timeout(deadline, tx.send(ev)).await,
                Ok(Ok(()))
            ),
            Sink::Socket { write, .. } => {
                let mut chunk = Vec::with_capacity(ev.len() + 12);
                chunk.extend_from_slice(format!("{:x}\r\n", ev.len()).as_bytes());
                chunk.extend_from_slice(&ev);
                chunk.extend_from_slice(b"\r\n");
                matches!(
                    tokio::time::timeout(deadline, write.write_all(&chunk)).await,
                    Ok(Ok(()))
                )
            }
        }
    }

    /// Resolves when the client has gone (the body dropped, or the socket closed or reset);
    /// anything a client sends on an SSE stream is read and dropped.
    async fn closed(&self) {
        match self {
            Sink::Body(tx) => tx.closed().await,
            Sink::Socket { read, .. } => loop {
                if read.readable().await.is_err() {
                    return;
                }
                let mut scratch = [0u8; 64];
                match read.try_read(&mut scratch) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            },
        }
    }

    /// Ends the stream: the body ends with the channel; the socket gets the last chunk.
    async fn finish(self) {
        if let Sink::Socket { mut write, .. } = self {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                write.write_all(b"0\r\n\r\n").await?;
                write.shutdown().await
            })
            .await;
        }
    }
}
