//! A protocol-version-1 cloud stand-in, for testing that this project's connector still works
//! against a reference cloud (PROTOCOL.md §1.2 rule 3).
//!
//! The reference implementation does not run on the test machines, so this server is written
//! **only from what PROTOCOL.md says version 1 does** (§1.2, §3.2 "Since", §4.3, §5, §11.1 and
//! Appendix A). It is a stand-in, not the reference: it reproduces the documented wire
//! behaviour, and where the document is silent it makes the choice listed under "Assumptions".
//!
//! Reproduced (numbers are Appendix A rows):
//! - No `X-Webhook-Connect-Version` response header anywhere and no `protocol_version` field
//!   (§1.2 rule 4).
//! - Version-1 frame shapes: WebSocket `connected` = `{type, connection_id, channel, timestamp}`,
//!   SSE `connected` = `{connection_id, channel}`, `heartbeat` = `{type, timestamp}`; webhook
//!   messages carry only `type, message_id, sequence, webhook_id, timestamp, headers, payload`
//!   (every field §3.2 marks v2 is absent: no `delivery_count` (#11), `raw_headers`, `body_b64`,
//!   `content_type`, `channel`, `path`, ...).
//! - Ingress answers `200 {"message":"200 OK"}` without `message_id`, and a full queue drops the
//!   message silently (#1, #14). The channel exists only after its first webhook (#12); `sequence`
//!   lives in memory and starts at 1 (#11).
//! - `headers`: lower-case names, a repeated field keeps its last value (#10); credential masking
//!   on by default (#9) with the names and patterns of CONFIG.md §2.7 (mode `mask`).
//! - WebSocket authentication failure is HTTP 403 before the upgrade (#23); SSE and long-poll
//!   answer 401 (§4.3). `?token=` is always accepted (#24); `Bearer` is case-sensitive and every
//!   `"Bearer "` substring is stripped from the header (#7).
//! - WebSocket `heartbeat` frames every 30 s by default (#22); SSE heartbeats only when no message
//!   went out for an interval (suppressed under traffic), no `id:` lines, no keep-alive comments
//!   (#22).
//! - No ack timeout (#17). Dispatch is sticky to the oldest streaming connection, at most
//!   `max_in_flight` leases, further messages wait (backpressure blocks the channel, #18).
//! - NACK `retry=true`: by default the message is never redelivered to a connection that was
//!   already open, only to later ones (#6); [`V1NackRetry::Immediate`] gives the other version-1
//!   buffer's immediate redelivery (#16). NACK `retry=false` drops the message (no dead-letter
//!   listing, #29) but counts it in `/connect/status`'s `messages_dead_lettered`, the only
//!   dead-letter figure version 1 reports (v2 adds `dead_letters`; issue 15: the reference cloud
//!   reported `messages_dead_lettered: 4` while the connector showed `dead_letters=0`).
//! - Long-poll: at most one message per poll, and the returned message stays queued (requeued at
//!   once); ACKs of poll connection ids always answer 404; all pollers of a channel get the same
//!   connection id (#15). (Issue 15 saw the reference cloud with its Redis buffer keep polled
//!   messages pending and never give them out again; this project's connector does not poll a
//!   v1 cloud at all, and [`V1Records::poll_requests`] lets tests check that.)
//! - `POST /connect/ack` looks up the connection before checking the token (#25).
//! - A malformed (non-JSON) or binary client frame stops the server reading that socket for good
//!   (#20): later frames, ACKs included, are ignored while messages keep being sent.
//! - `GET /connect/status` always says `connected: true` and `messages_queued: 0` (#27, #28).
//! - Token rotation ([`V1Cloud::rotate_token`]) leaves existing connections untouched and the next
//!   webhook restores the configured token (#13).
//! - WebSocket close code 4003 when `max_connections` is reached (§5.1: "kept from version 1").
//!
//! Assumptions where PROTOCOL.md is silent: a connection to a channel that does not exist yet is
//! refused like a wrong token; the 403 / 401 bodies use the `{"detail": …}` shape with the texts
//! of §4.3; an SSE stream over `max_connections` gets the `error` event of §5.2; the returned
//! long-poll message stays at the head of the queue; unknown client frame types (such as v2's
//! `extend`) are ignored.
//!
//! Not reproduced: closed sockets lingering for 30 s and having messages dead-lettered (#21) —
//! here a closed connection's messages go back to the head of the queue at once; rate limits,
//! authentication methods and other ingress details (only one unauthenticated JSON webhook).
//!
//! Everything a client did that version 1 forbids or cannot understand is recorded in
//! [`V1Records::violations`]: an `extend` frame or `status=extend`, unknown frame types, malformed
//! or binary frames.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode, header};
use parking_lot::Mutex;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// What a version-1 buffer does with a NACK `retry=true` (Appendix A #6, #16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum V1NackRetry {
    /// Requeued, but only connections opened after the NACK receive it again.
    NewConnectionsOnly,
    /// Requeued at the head and redelivered at once (a hot loop while the target keeps failing).
    Immediate,
}

/// Settings of the stand-in: one channel fed by one JSON webhook.
#[derive(Clone, Debug)]
pub struct V1Options {
    pub channel: String,
    /// The configured `channel_token`.
    pub token: String,
    /// `POST /webhook/{webhook_id}` feeds the channel; other ids answer 404.
    pub webhook_id: String,
    /// WebSocket heartbeat interval (30 s in version 1) and SSE idle heartbeat interval.
    pub heartbeat_interval: Duration,
    pub max_in_flight: usize,
    pub max_connections: usize,
    pub max_queue_size: usize,
    pub nack_retry: V1NackRetry,
}

impl V1Options {
    pub fn new(channel: &str, token: &str) -> Self {
        Self {
            channel: channel.to_owned(),
            token: token.to_owned(),
            webhook_id: "hook".to_owned(),
            heartbeat_interval: Duration::from_secs(30),
            max_in_flight: 100,
            max_connections: 10,
            max_queue_size: 10_000,
            nack_retry: V1NackRetry::NewConnectionsOnly,
        }
    }
}

/// A NACK the stand-in received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Nack {
    pub message_id: String,
    pub retry: bool,
    /// The client sent an `error` text (a v2 addition a v1 server ignores).
    pub had_error_text: bool,
    /// `"frame"` (WebSocket) or `"http"` (`POST /connect/ack`).
    pub via: &'static str,
}

/// What happened, for assertions.
#[derive(Clone, Debug, Default)]
pub struct V1Records {
    /// Connection ids accepted, in order.
    pub connections: Vec<String>,
    /// Refused connection attempts: (`websocket` | `sse` | `long_poll`, HTTP status).
    pub refused: Vec<(&'static str, u16)>,
    /// Message ids sent on streaming connections, redeliveries included.
    pub dispatched: Vec<String>,
    /// Message ids returned by polls.
    pub polled: Vec<String>,
    pub poll_requests: u64,
    /// ACKs that settled a message: (message id, `"frame"` | `"http"`).
    pub acked: Vec<(String, &'static str)>,
    /// NACKs that applied.
    pub nacked: Vec<V1Nack>,
    /// `POST /connect/ack` answers: (message id, status).
    pub ack_requests: Vec<(String, u16)>,
    /// Messages dropped by a NACK `retry=false`.
    pub dropped: Vec<String>,
    pub client_heartbeats: u64,
    /// Client behaviour a v1 server forbids or cannot understand.
    pub violations: Vec<String>,
}

/// The running stand-in on `127.0.0.1:<port>`. Stops when dropped.
pub struct V1Cloud {
    pub port: u16,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    shared: Arc<Shared>,
    _server: AbortOnDropHandle<()>,
}

struct Shared {
    opts: V1Options,
    inner: Mutex<Inner>,
    /// Woken on every enqueue, for waiting polls.
    wake: Notify,
    stop: CancellationToken,
}

#[derive(Clone)]
struct Msg {
    id: String,
    sequence: u64,
    wire: Value,
    /// Not for connections with a serial at or below this (NACK under `NewConnectionsOnly`).
    not_for_serials_upto: u64,
}

struct Conn {
    serial: u64,
    id: String,
    tx: mpsc::UnboundedSender<Value>,
    in_flight: usize,
}

struct Inner {
    /// The channel exists after its first webhook (#12).
    registered: bool,
    token: String,
    sequence: u64,
    next_serial: u64,
    ready: VecDeque<Msg>,
    /// message id → (message, holder connection id)
    in_flight: HashMap<String, (Msg, String)>,
    /// Streaming connections in registration order; the first one gets every message.
    conns: Vec<Conn>,
    rec: V1Records,
}

impl V1Cloud {
    pub async fn start(opts: V1Options) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the v1 stand-in")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                registered: false,
                token: opts.token.clone(),
                sequence: 0,
                next_serial: 1,
                ready: VecDeque::new(),
                in_flight: HashMap::new(),
                conns: Vec::new(),
                rec: V1Records::default(),
            }),
            opts,
            wake: Notify::new(),
            stop: CancellationToken::new(),
        });
        let app = Router::new()
            .route("/webhook/{id}", post(receive_webhook))
            .route("/connect/stream/{channel}", get(stream_ws))
            .route("/connect/stream/{channel}/sse", get(stream_sse))
            .route("/connect/stream/{channel}/poll", get(stream_poll))
            .route("/connect/ack", post(ack_message))
            .route("/connect/status/{channel}", get(channel_status))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::warn!(%error, "v1 stand-in stopped");
            }
        });
        Ok(Self {
            port: addr.port(),
            addr,
            base: format!("http://{addr}"),
            shared,
            _server: AbortOnDropHandle::new(server),
        })
    }

    /// A copy of everything recorded so far.
    pub fn records(&self) -> V1Records {
        self.shared.inner.lock().rec.clone()
    }

    /// Messages waiting to be dispatched.
    pub fn queued(&self) -> usize {
        self.shared.inner.lock().ready.len()
    }

    /// Messages leased to a streaming connection and not settled.
    pub fn in_flight(&self) -> usize {
        self.shared.inner.lock().in_flight.len()
    }

    /// Rotates the channel token as version 1 did: new connections need the returned token,
    /// existing ones are left alone, and the next webhook restores the configured token (#13).
    pub fn rotate_token(&self) -> String {
        let mut inner = self.shared.inner.lock();
        let token = format!("ch_tok_{:048x}", nanos());
        inner.token.clone_from(&token);
        token
    }
}

impl Drop for V1Cloud {
    fn drop(&mut self) {
        self.shared.stop.cancel();
    }
}

impl std::fmt::Debug for V1Cloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V1Cloud").field("addr", &self.addr).finish()
    }
}

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

fn now() -> String {
    chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6f+00:00")
        .to_string()
}

fn detail(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "detail": text }))).into_response()
}

/// The channel token of a request, version-1 style (#7, #24).
fn presented_token(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return Some(v.replace("Bearer ", "").trim().to_owned());
    }
    query_param(query, "token")
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

enum AuthError {
    Missing,
    Invalid,
}

impl Shared {
    fn authenticate(
        &self,
        channel: &str,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<(), AuthError> {
        let token = presented_token(headers, query).ok_or(AuthError::Missing)?;
        let inner = self.inner.lock();
        if channel == self.opts.channel && inner.registered && token == inner.token {
            Ok(())
        } else {
            Err(AuthError::Invalid)
        }
    }
}

/// SSE and long-poll refusals (§4.3).
fn refuse_401(shared: &Shared, protocol: &'static str, e: AuthError) -> Response {
    shared.inner.lock().rec.refused.push((protocol, 401));
    match e {
        AuthError::Missing => detail(StatusCode::UNAUTHORIZED, "Missing authorization token"),
        AuthError::Invalid => detail(StatusCode::UNAUTHORIZED, "Invalid channel token"),
    }
}

// ------------------------------------------------------------------------------------------
// Ingress

const MASK: &str = "***REDACTED***";

/// CONFIG.md §2.7 credential names (the reference's rules).
fn is_credential_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    const EXACT: &[&str] = &["passwd", "pwd", "bearer", "session_id", "sessionid", "csrf"];
    const PARTS: &[&str] = &["password", "secret", "token", "key", "credential", "auth"];
    EXACT.contains(&n.as_str()) || PARTS.iter().any(|p| n.contains(p))
}

fn mask(v: &mut Value, depth: usize) {
    if depth > 100 {
        return;
    }
    match v {
        Value::Object(map) => {
            for (k, child) in map.iter_mut() {
                let container = child.is_object() || child.is_array();
                if is_credential_name(k) && !container {
                    *child = Value::String(MASK.to_owned());
                } else {
                    mask(child, depth + 1);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|c| mask(c, depth + 1)),
        _ => {}
    }
}

async fn receive_webhook(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if id != shared.opts.webhook_id {
        return detail(StatusCode::NOT_FOUND, "Webhook ID not found");
    }
    let Ok(mut payload) = serde_json::from_slice::<Value>(&body) else {
        return detail(StatusCode::BAD_REQUEST, "Malformed JSON payload");
    };
    mask(&mut payload, 0);
    let mut map = Map::new();
    for (name, value) in &headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let value = if is_credential_name(name.as_str()) {
            MASK.to_owned()
        } else {
            value
        };
        // A repeated field keeps its last value (#10).
        map.insert(name.as_str().to_ascii_lowercase(), Value::String(value));
    }
    {
        let mut inner = shared.inner.lock();
        // Every webhook (re-)registers the channel with its configured token (#12, #13).
        inner.registered = true;
        inner.token.clone_from(&shared.opts.token);
        if inner.ready.len() < shared.opts.max_queue_size {
            inner.sequence += 1;
            let sequence = inner.sequence;
            let message_id = format!("msg_{:016x}", (nanos() as u64) ^ sequence);
            let wire = json!({
                "type": "webhook",
                "message_id": message_id,
                "sequence": sequence,
                "webhook_id": id,
                "timestamp": now(),
                "headers": map,
                "payload": payload,
            });
            inner.ready.push_back(Msg {
                id: message_id,
                sequence,
                wire,
                not_for_serials_upto: 0,
            });
            dispatch(&mut inner, shared.opts.max_in_flight);
        }
    }
    shared.wake.notify_waiters();
    (StatusCode::OK, axum::Json(json!({"message": "200 OK"}))).into_response()
}

// ------------------------------------------------------------------------------------------
// Dispatch and settlement

/// Sends ready messages to the oldest streaming connection, up to `max_in_flight` (#18).
fn dispatch(inner: &mut Inner, max_in_flight: usize) {
    let Inner {
        conns,
        ready,
        in_flight,
        rec,
        ..
    } = inner;
    let Some(conn) = conns.first_mut() else {
        return;
    };
    let mut i = 0;
    while conn.in_flight < max_in_flight && i < ready.len() {
        if ready[i].not_for_serials_upto >= conn.serial {
            i += 1;
            continue;
        }
        let Some(m) = ready.remove(i) else { break };
        if conn.tx.send(m.wire.clone()).is_err() {
            ready.insert(i, m);
            break;
        }
        conn.in_flight += 1;
        rec.dispatched.push(m.id.clone());
        in_flight.insert(m.id.clone(), (m, conn.id.clone()));
    }
}

fn register(shared: &Shared, prefix: &str) -> Option<(String, mpsc::UnboundedReceiver<Value>)> {
    let mut inner = shared.inner.lock();
    if inner.conns.len() >= shared.opts.max_connections {
        return None;
    }
    let serial = inner.next_serial;
    inner.next_serial += 1;
    // Predictable ids, as version 1 had (#25).
    let id = format!("{prefix}_{serial:032x}");
    let (tx, rx) = mpsc::unbounded_channel();
    inner.conns.push(Conn {
        serial,
        id: id.clone(),
        tx,
        in_flight: 0,
    });
    inner.rec.connections.push(id.clone());
    Some((id, rx))
}

/// Deregisters a connection; its unsettled messages go back to the head in order.
fn deregister(shared: &Shared, id: &str) {
    let mut inner = shared.inner.lock();
    inner.conns.retain(|c| c.id != id);
    let mut back: Vec<Msg> = Vec::new();
    inner.in_flight.retain(|_, (m, holder)| {
        if holder == id {
            back.push(m.clone());
            false
        } else {
            true
        }
    });
    back.sort_by_key(|m| m.sequence);
    for m in back.into_iter().rev() {
        inner.ready.push_front(m);
    }
    dispatch(&mut inner, shared.opts.max_in_flight);
}

/// Applies an ACK from `conn`; false when it does not hold the message.
fn settle_ack(shared: &Shared, conn: &str, message_id: &str, via: &'static str) -> bool {
    let mut inner = shared.inner.lock();
    let held = inner
        .in_flight
        .get(message_id)
        .is_some_and(|(_, holder)| holder == conn);
    if !held {
        return false;
    }
    inner.in_flight.remove(message_id);
    if let Some(c) = inner.conns.iter_mut().find(|c| c.id == conn) {
        c.in_flight = c.in_flight.saturating_sub(1);
    }
    inner.rec.acked.push((message_id.to_owned(), via));
    dispatch(&mut inner, shared.opts.max_in_flight);
    true
}

/// Applies a NACK from `conn`; false when it does not hold the message.
fn settle_nack(shared: &Shared, conn: &str, nack: V1Nack) -> bool {
    let mut inner = shared.inner.lock();
    let held = inner
        .in_flight
        .get(&nack.message_id)
        .is_some_and(|(_, holder)| holder == conn);
    if !held {
        return false;
    }
    let Some((mut m, _)) = inner.in_flight.remove(&nack.message_id) else {
        return false;
    };
    if let Some(c) = inner.conns.iter_mut().find(|c| c.id == conn) {
        c.in_flight = c.in_flight.saturating_sub(1);
    }
    if nack.retry {
        match shared.opts.nack_retry {
            V1NackRetry::NewConnectionsOnly => {
                m.not_for_serials_upto = inner.next_serial - 1;
                inner.ready.push_back(m);
            }
            V1NackRetry::Immediate => inner.ready.push_front(m),
        }
    } else {
        inner.rec.dropped.push(m.id);
    }
    inner.rec.nacked.push(nack);
    dispatch(&mut inner, shared.opts.max_in_flight);
    true
}

// ------------------------------------------------------------------------------------------
// WebSocket

async fn stream_ws(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    // Version 1 refuses the upgrade with 403 (#23).
    if let Err(e) = shared.authenticate(&channel, &headers, query.as_deref()) {
        shared.inner.lock().rec.refused.push(("websocket", 403));
        return match e {
            AuthError::Missing => detail(StatusCode::FORBIDDEN, "Missing authorization token"),
            AuthError::Invalid => detail(StatusCode::FORBIDDEN, "Invalid channel token"),
        };
    }
    ws.on_upgrade(move |socket| run_ws(shared, socket))
}

async fn run_ws(shared: Arc<Shared>, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let Some((id, mut rx)) = register(&shared, "wsc") else {
        let _ = sink
            .send(Message::Close(Some(CloseFrame {
                code: 4003,
                reason: "Max connections reached".into(),
            })))
            .await;
        return;
    };
    let connected = json!({
        "type": "connected", "connection_id": id, "channel": shared.opts.channel, "timestamp": now(),
    });
    let every = shared.opts.heartbeat_interval;
    let stop = shared.stop.clone();
    let writer = tokio::spawn(async move {
        if sink
            .send(Message::Text(connected.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            let frame = tokio::select! {
                _ = stop.cancelled() => break,
                m = rx.recv() => match m {
                    Some(m) => m,
                    None => break,
                },
                _ = beat.tick() => json!({"type": "heartbeat", "timestamp": now()}),
            };
            if sink
                .send(Message::Text(frame.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    {
        let mut inner = shared.inner.lock();
        dispatch(&mut inner, shared.opts.max_in_flight);
    }
    let mut reading = true;
    loop {
        let next = tokio::select! {
            _ = shared.stop.cancelled() => break,
            n = stream.next() => n,
        };
        match next {
            None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
            Some(Ok(Message::Text(text))) if reading => {
                reading = client_frame(&shared, &id, text.as_str());
            }
            Some(Ok(Message::Binary(_))) if reading => {
                violation(&shared, "binary frame (version 1 stops reading the socket)");
                reading = false;
            }
            Some(Ok(_)) => {}
        }
    }
    writer.abort();
    deregister(&shared, &id);
}

fn violation(shared: &Shared, what: &str) {
    shared.inner.lock().rec.violations.push(what.to_owned());
}

/// Handles one client text frame; false when version 1 would stop reading the socket.
fn client_frame(shared: &Shared, conn: &str, text: &str) -> bool {
    let Ok(Value::Object(frame)) = serde_json::from_str::<Value>(text) else {
        violation(
            shared,
            &format!("malformed frame {text:?} (version 1 stops reading the socket)"),
        );
        return false;
    };
    let message_id = frame
        .get("message_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    match frame
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "heartbeat" => shared.inner.lock().rec.client_heartbeats += 1,
        "ack" => {
            settle_ack(shared, conn, &message_id, "frame");
        }
        "nack" => {
            let retry = match frame.get("retry") {
                Some(Value::Bool(b)) => *b,
                Some(Value::String(s)) => s != "false",
                _ => true,
            };
            settle_nack(
                shared,
                conn,
                V1Nack {
                    message_id,
                    retry,
                    had_error_text: frame.contains_key("error"),
                    via: "frame",
                },
            );
        }
        "extend" => violation(shared, "extend frame sent to a v1 server"),
        other => violation(shared, &format!("unknown frame type {other:?}")),
    }
    true
}

// ------------------------------------------------------------------------------------------
// SSE

fn sse_event(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

async fn stream_sse(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = shared.authenticate(&channel, &headers, query.as_deref()) {
        return refuse_401(&shared, "sse", e);
    }
    let (body_tx, body_rx) = mpsc::channel::<Bytes>(16);
    let body = futures::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    match register(&shared, "sse") {
        None => {
            let _ = body_tx
                .send(sse_event(
                    "error",
                    &json!({"error": "max_connections_reached"}),
                ))
                .await;
        }
        Some((id, rx)) => {
            tokio::spawn(run_sse(shared.clone(), id, rx, body_tx));
        }
    }
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn run_sse(
    shared: Arc<Shared>,
    id: String,
    mut rx: mpsc::UnboundedReceiver<Value>,
    body: mpsc::Sender<Bytes>,
) {
    let connected = json!({"connection_id": id, "channel": shared.opts.channel});
    if body.send(sse_event("connected", &connected)).await.is_ok() {
        {
            let mut inner = shared.inner.lock();
            dispatch(&mut inner, shared.opts.max_in_flight);
        }
        let every = shared.opts.heartbeat_interval;
        let mut deadline = tokio::time::Instant::now() + every;
        loop {
            let chunk = tokio::select! {
                _ = shared.stop.cancelled() => break,
                _ = body.closed() => break,
                m = rx.recv() => match m {
                    // Heartbeats are suppressed while messages flow (#22).
                    Some(m) => {
                        deadline = tokio::time::Instant::now() + every;
                        sse_event("webhook", &m)
                    }
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    deadline += every;
                    sse_event("heartbeat", &json!({"timestamp": now()}))
                }
            };
            if body.send(chunk).await.is_err() {
                break;
            }
        }
    }
    deregister(&shared, &id);
}

// ------------------------------------------------------------------------------------------
// Long-poll

async fn stream_poll(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = shared.authenticate(&channel, &headers, query.as_deref()) {
        return refuse_401(&shared, "long_poll", e);
    }
    shared.inner.lock().rec.poll_requests += 1;
    let timeout = query_param(query.as_deref(), "timeout")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(30)
        .clamp(1, 60);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    loop {
        let woken = shared.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        {
            let mut inner = shared.inner.lock();
            // At most one message, and it stays queued: requeued at once (#15).
            if let Some(m) = inner.ready.front().cloned() {
                inner.rec.polled.push(m.id.clone());
                // Every poller of a channel gets the same id (#15: "ids collide").
                let hex: String = channel.bytes().map(|b| format!("{b:02x}")).collect();
                let body = json!({
                    "messages": [m.wire],
                    "connection_id": format!("poll_{:0>32.32}", hex),
                    "channel": channel,
                    "timestamp": now(),
                });
                return (StatusCode::OK, axum::Json(body)).into_response();
            }
        }
        tokio::select! {
            _ = shared.stop.cancelled() => return StatusCode::NO_CONTENT.into_response(),
            _ = tokio::time::sleep_until(deadline) => return StatusCode::NO_CONTENT.into_response(),
            _ = woken => {}
        }
    }
}

// ------------------------------------------------------------------------------------------
// ACK and status

async fn ack_message(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let q = query.as_deref();
    let message_id = query_param(q, "message_id").unwrap_or_default();
    let answer = |shared: &Shared, r: Response| {
        shared
            .inner
            .lock()
            .rec
            .ack_requests
            .push((message_id.clone(), r.status().as_u16()));
        r
    };
    let Some(conn) = headers
        .get("x-connection-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return answer(
            &shared,
            detail(StatusCode::UNPROCESSABLE_ENTITY, "Missing X-Connection-ID"),
        );
    };
    // The connection is looked up before the token is checked (#25); poll connections are not
    // registered, so their ACKs always answer 404 (#15).
    let known = shared.inner.lock().conns.iter().any(|c| c.id == conn);
    if !known {
        return answer(
            &shared,
            detail(StatusCode::NOT_FOUND, "Connection not found"),
        );
    }
    let channel = shared.opts.channel.clone();
    if let Err(e) = shared.authenticate(&channel, &headers, q) {
        let text = match e {
            AuthError::Missing => "Missing authorization token",
            AuthError::Invalid => "Invalid token",
        };
        return answer(&shared, detail(StatusCode::UNAUTHORIZED, text));
    }
    if message_id.is_empty() {
        return answer(
            &shared,
            detail(StatusCode::UNPROCESSABLE_ENTITY, "Missing message_id"),
        );
    }
    let status = query_param(q, "status").unwrap_or_else(|| "ack".to_owned());
    let applied = match status.as_str() {
        "ack" => settle_ack(&shared, &conn, &message_id, "http"),
        "nack" => {
            let retry = !matches!(
                query_param(q, "retry").as_deref(),
                Some("false" | "0" | "no" | "off")
            );
            let nack = V1Nack {
                message_id: message_id.clone(),
                retry,
                had_error_text: query_param(q, "error").is_some(),
                via: "http",
            };
            settle_nack(&shared, &conn, nack)
        }
        other => {
            violation(&shared, &format!("POST /connect/ack status={other}"));
            return answer(
                &shared,
                detail(StatusCode::UNPROCESSABLE_ENTITY, "Invalid status"),
            );
        }
    };
    if !applied {
        return answer(
            &shared,
            detail(StatusCode::NOT_FOUND, "Message not in flight"),
        );
    }
    let ok = (
        StatusCode::OK,
        axum::Json(json!({"status": "ok", "message_id": message_id})),
    )
        .into_response();
    answer(&shared, ok)
}

async fn channel_status(
    State(shared): State<Arc<Shared>>,
    Path(channel): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = shared.authenticate(&channel, &headers, query.as_deref()) {
        return match e {
            AuthError::Missing => detail(StatusCode::UNAUTHORIZED, "Missing authorization token"),
            AuthError::Invalid => detail(StatusCode::UNAUTHORIZED, "Invalid channel token"),
        };
    }
    let inner = shared.inner.lock();
    let body = json!({
        "channel": channel,
        // Version 1 always says connected and never counts queued messages (#27, #28).
        "connected": true,
        "stats": {
            "channel": channel,
            "messages_queued": 0,
            "messages_in_flight": inner.in_flight.len(),
            "messages_delivered": inner.rec.acked.len(),
            "messages_expired": 0,
            "messages_dead_lettered": inner.rec.dropped.len(),
            "connected_clients": inner.conns.len(),
        },
        "server_time": now(),
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}
