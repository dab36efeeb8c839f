//! `GET /connect/stream/{channel}/poll` (§5.3). A poll connection outlives its requests: it
//! holds leases across polls until they are ACKed or time out.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use connect_protocol::frames::PollResponse;
use connect_protocol::headers as h;
use connect_protocol::ids::Protocol;
use connect_protocol::time::Timestamp;

use crate::app::AppState;
use crate::http::connect::common::{authenticate, connector_id, remote_ip, version_header};
use crate::http::error::{ApiError, ApiResult};
use crate::hub::AddConn;
use connect_buffer::Leased;

use crate::hub::conn::Conn;

/// The parameters of a long-poll request (§5.3).
#[derive(Debug)]
pub struct PollParams {
    /// Seconds, 1–60.
    pub timeout: u64,
    /// 1–100.
    pub max_messages: usize,
}

/// Parses `timeout` and `max_messages` from a long-poll query string: 422 when out of range.
pub fn parse_poll_query(query: Option<&str>) -> ApiResult<PollParams> {
    let mut p = PollParams {
        timeout: 30,
        max_messages: 10,
    };
    for kv in query
        .unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        match k {
            "timeout" => {
                p.timeout = v
                    .parse()
                    .ok()
                    .filter(|t| (1..=60).contains(t))
                    .ok_or_else(|| {
                        ApiError::unprocessable("timeout must be an integer between 1 and 60")
                    })?
            }
            "max_messages" => {
                p.max_messages = v
                    .parse()
                    .ok()
                    .filter(|t| (1..=100).contains(t))
                    .ok_or_else(|| {
                        ApiError::unprocessable("max_messages must be an integer between 1 and 100")
                    })?
            }
            _ => {}
        }
    }
    Ok(p)
}

pub async fn stream_poll(
    State(st): State<AppState>,
    Path(channel): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let mut res = match poll(st, channel, peer, query, headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    let (k, v) = version_header();
    res.headers_mut().insert(k, v);
    res
}

async fn poll(
    st: AppState,
    channel: String,
    peer: SocketAddr,
    query: Option<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let authed = authenticate(&st, &channel, &headers, query.as_deref()).await?;
    let params = parse_poll_query(query.as_deref())?;
    let ip = remote_ip(&st, peer, &headers);
    let cid = connector_id(&headers);
    let affinity = format!("{}|{}", authed.digest, ip);
    let wanted_id = headers.get(h::CONNECTION_ID).and_then(|v| v.to_str().ok());
    let conn = match st
        .hub()
        .find_poll_conn(authed.rt.name(), wanted_id, cid.as_deref(), &affinity)
    {
        Some(c) => {
            c.set_token_digest(authed.digest.clone());
            c
        }
        None => match st
            .hub()
            .add_conn(authed.new_conn(&st, Protocol::LongPoll, peer, &headers, Some(affinity)))
            .await?
        {
            AddConn::Added(c) => c,
            AddConn::Full => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    connect_protocol::error::ErrorCode::MaxConnections,
                    "Max connections reached",
                )
                .retry_after(st.settings().retry_after_seconds));
            }
            AddConn::NoChannel => {
                return Err(ApiError::plain(
                    StatusCode::UNAUTHORIZED,
                    "Invalid channel token",
                ));
            }
        },
    };
    // A newer request for the same poll connection answers the older one 204 at once.
    let mut ticket = conn.poll_begin();
    let mut rx = conn.receiver().await;
    let settings = authed.rt.settings();
    let max_in_flight = settings.max_in_flight as usize;
    let mut messages: Vec<Leased> = Vec::new();
    // Messages leased to this poll connection after its previous answer went out come first.
    while messages.len() < params.max_messages {
        match rx.try_recv() {
            Ok(b) => messages.extend(b),
            Err(_) => break,
        }
    }
    if messages.is_empty() {
        conn.poll_want(params.max_messages, max_in_flight);
        authed.rt.wake();
        let deadline = tokio::time::sleep(Duration::from_secs(params.timeout));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = &mut ticket.cancelled => break,
                _ = conn.closed() => break,
                _ = st.shutdown().cancelled() => break,
                b = rx.recv() => {
                    if let Some(b) = b { messages.extend(b); }
                    break;
                }
                // Capacity can free up while waiting (ACKs of earlier polls).
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    if conn.poll_refill(params.max_messages, max_in_flight) {
                        authed.rt.wake();
                    }
                }
            }
        }
        conn.poll_stop();
        while messages.len() < params.max_messages {
            match rx.try_recv() {
                Ok(b) => messages.extend(b),
                Err(_) => break,
            }
        }
    }
    conn.poll_end(&ticket);
    drop(rx);
    if conn.is_closing() {
        st.hub().remove_conn(&conn).await;
    }
    if messages.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let wire = messages
        .iter()
        .map(|l| l.message.to_wire(l.delivery_count))
        .collect();
    let body = PollResponse {
        messages: wire,
        connection_id: conn.id().to_owned(),
        channel: conn.channel().to_owned(),
        timestamp: Timestamp::now(),
        protocol_version: Some(connect_protocol::PROTOCOL_VERSION),
        ack_timeout_seconds: Some(settings.ack_timeout_seconds),
    };
    let json = serde_json::to_vec(&body).map_err(|e| ApiError::internal("poll body", e))?;
    let body = ReleaseOnAbort {
        data: Some(Bytes::from(json)),
        done: false,
        abort: Some((st.clone(), conn.clone())),
    };
    let mut res = axum::body::Body::new(body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(res)
}

/// The poll answer's body. If it is dropped before hyper asked for its end, the client went
/// away before the messages were written: the poll connection ends and its leases return to
/// the head at once instead of waiting for the ack timeout (§5.3).
struct ReleaseOnAbort {
    data: Option<Bytes>,
    done: bool,
    abort: Option<(AppState, Arc<Conn>)>,
}

impl http_body::Body for ReleaseOnAbort {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        match self.data.take() {
            Some(d) => Poll::Ready(Some(Ok(http_body::Frame::data(d)))),
            None => {
                self.done = true;
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for ReleaseOnAbort {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        if let Some((st, conn)) = self.abort.take() {
            tracing::debug!(connection = %conn.id(), "poll answer not delivered; releasing its leases");
            let st2 = st.clone();
            st.tracker()
                .spawn(async move { st2.hub().remove_conn(&conn).await });
        }
    }
}
