//! One application per test: settings for tests, an embedded buffer in a temporary directory,
//! the given webhooks in force, and the router.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use connect_buffer::SystemClock;
use connect_buffer::embedded::EmbeddedBuffer;
use connect_cloud::app::{AppState, read_webhooks};
use connect_cloud::settings::Settings;
use connect_testkit::in_process::TestCloud;
use futures::StreamExt;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tower::ServiceExt;

pub const CHANNEL: &str = "orders";
pub const TOKEN: &str = "ch_token_for_router_tests_0123456789";
pub const ADMIN: &str = "admin_token_for_router_tests";

pub struct TestApp {
    pub st: AppState,
    router: connect_cloud::http::shape::App,
    _dir: tempfile::TempDir,
}

/// One `webhook_connect` webhook `hook` on channel [`CHANNEL`] and one `log` webhook `logged`.
pub fn default_webhooks() -> Value {
    json!({
        "hook": {
            "module": "webhook_connect",
            "module-config": {"channel": CHANNEL, "channel_token": TOKEN}
        },
        "logged": {"module": "log"}
    })
}

impl TestApp {
    pub async fn new() -> Self {
        Self::with(default_webhooks(), |_| {}).await
    }

    pub async fn with(webhooks: Value, tweak: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let hooks = dir.path().join("webhooks.json");
        std::fs::write(&hooks, serde_json::to_vec(&webhooks).expect("json")).expect("write");
        let mut settings = Settings::for_tests(dir.path().join("data"), hooks.clone());
        settings.admin_token = Some(ADMIN.into());
        tweak(&mut settings);
        let buffer = EmbeddedBuffer::open(&dir.path().join("data"), Arc::new(SystemClock))
            .expect("embedded buffer");
        let st = AppState::new(settings, Arc::new(buffer));
        let set = read_webhooks(&hooks, &connect_config::MapEnv::default()).expect("webhooks");
        st.apply_config(set).await.expect("apply");
        let router = connect_cloud::http::router(st.clone());
        TestApp {
            st,
            router,
            _dir: dir,
        }
    }

    /// Sends one request through the router, as from 127.0.0.1.
    pub async fn send(&self, mut req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Value) {
        let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
        req.extensions_mut().insert(ConnectInfo(peer));
        let res = self.router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res.into_body().collect().await.expect("body").to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        (status, headers, body)
    }
}

pub fn get(uri: &str) -> axum::http::request::Builder {
    Request::builder().method("GET").uri(uri)
}

pub fn post(uri: &str) -> axum::http::request::Builder {
    Request::builder().method("POST").uri(uri)
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Opens one WebSocket connector (protocol 2, a 1 KiB read buffer of its own) on [`CHANNEL`]
/// and waits for its `connected` frame.
pub async fn ws_connector(cloud: &TestCloud) -> Ws {
    let mut req = format!("ws://{}/connect/stream/{CHANNEL}", cloud.addr)
        .into_client_request()
        .expect("request");
    let h = req.headers_mut();
    h.insert(
        "authorization",
        format!("Bearer {TOKEN}").parse().expect("h"),
    );
    h.insert("x-webhook-connect-version", "2".parse().expect("h"));
    let stream = tokio::net::TcpStream::connect(cloud.addr)
        .await
        .expect("connect");
    let cfg = WebSocketConfig::default().read_buffer_size(1024);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(req, stream, Some(cfg))
        .await
        .expect("handshake");
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains("\"connected\"") => return ws,
            Some(Ok(_)) => {}
            other => panic!("no connected frame: {other:?}"),
        }
    }
}

/// Opens one SSE connector over a bare socket and reads its whole `connected` event.
pub async fn sse_connector(cloud: &TestCloud) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(cloud.addr)
        .await
        .expect("connect");
    sock.write_all(
        format!(
            "GET /connect/stream/{CHANNEL}/sse HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nX-Webhook-Connect-Version: 2\r\nAccept: text/event-stream\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .expect("request");
    let mut seen = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    loop {
        let n = sock.read(&mut buf).await.expect("read");
        assert!(
            n > 0,
            "closed before `connected`: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
        // The whole event, to its blank line: what follows on the socket is the stream's.
        let at = seen.windows(16).position(|w| w == b"event: connected");
        if at.is_some_and(|at| seen[at..].windows(2).any(|w| w == b"\n\n")) {
            return sock;
        }
    }
}
