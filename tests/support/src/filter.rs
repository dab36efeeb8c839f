//! An HTTP/1.1 reverse proxy that refuses some requests, like a corporate proxy that blocks
//! WebSocket upgrades or streaming endpoints.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Request, Response, StatusCode, Uri, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio_util::task::AbortOnDropHandle;

type Body = BoxBody<Bytes, hyper::Error>;

/// Relays HTTP requests on `127.0.0.1:<port>` to an upstream HTTP server, answering
/// `403 Forbidden` instead to every WebSocket upgrade (`Upgrade: websocket`) and to requests
/// whose path ends with one of the [`refuse_path_suffix`](Self::refuse_path_suffix) suffixes.
/// Everything else, streamed responses (SSE) included, is relayed as is.
pub struct HttpFilterProxy {
    pub port: u16,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    shared: Arc<Shared>,
    _accept: AbortOnDropHandle<()>,
}

struct Shared {
    upstream: SocketAddr,
    suffixes: Mutex<Vec<String>>,
    refused: AtomicU64,
    client: Client<HttpConnector, Incoming>,
}

impl HttpFilterProxy {
    pub async fn start(upstream: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the HTTP filter proxy")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            upstream,
            suffixes: Mutex::new(Vec::new()),
            refused: AtomicU64::new(0),
            client: Client::builder(TokioExecutor::new()).build_http(),
        });
        let accept = AbortOnDropHandle::new(tokio::spawn(accept_loop(listener, shared.clone())));
        Ok(Self {
            port: addr.port(),
            addr,
            url: format!("http://{addr}"),
            shared,
            _accept: accept,
        })
    }

    /// Also refuse requests whose path ends with `suffix` (e.g. `/sse`).
    pub fn refuse_path_suffix(&self, suffix: &str) {
        self.shared.suffixes.lock().push(suffix.to_owned());
    }

    /// Requests answered 403 so far.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }
}

impl std::fmt::Debug for HttpFilterProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpFilterProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .finish()
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        while conns.try_join_next().is_some() {}
        let shared = shared.clone();
        conns.spawn(async move {
            let service = service_fn(move |req| handle(shared.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn refuse(why: &'static str) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(why))
            .map_err(|e: Infallible| match e {})
            .boxed(),
    );
    *r.status_mut() = StatusCode::FORBIDDEN;
    r
}

async fn handle(
    shared: Arc<Shared>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let path = req.uri().path().to_owned();
    let blocked_path = shared.suffixes.lock().iter().any(|s| path.ends_with(s));
    if upgrade || blocked_path {
        shared.refused.fetch_add(1, Ordering::SeqCst);
        return Ok(refuse(if upgrade {
            "WebSocket blocked by proxy"
        } else {
            "blocked by proxy"
        }));
    }
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let Ok(uri) = format!("http://{}{pq}", shared.upstream).parse::<Uri>() else {
        return Ok(refuse("bad request target"));
    };
    *req.uri_mut() = uri;
    match shared.client.request(req).await {
        Ok(resp) => Ok(resp.map(|b| b.boxed())),
        Err(error) => {
            tracing::debug!(%error, "filter proxy upstream failed");
            let mut r = refuse("upstream failed");
            *r.status_mut() = StatusCode::BAD_GATEWAY;
            Ok(r)
        }
    }
}
