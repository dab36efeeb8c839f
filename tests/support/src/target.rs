//! An HTTP/1.1 target that records every request and answers from a script.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;

use crate::wait_until;

/// One request as the target saw it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// In arrival order, grouped by name; names are lowercase (hyper does not keep their case).
    pub headers: Vec<(String, String)>,
    /// Exactly the bytes received (after de-chunking).
    pub body: Bytes,
    pub received_at: Instant,
}

impl RecordedRequest {
    /// First value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as UTF-8 (lossy), for assertions on text payloads.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A local HTTP endpoint standing in for the user's localhost service.
///
/// Answers `200 ok` unless scripted: queued statuses ([`script`](Self::script)) are used first, one
/// per request, then the default ([`set_status`](Self::set_status)). Requests are recorded on
/// arrival, before any [`set_delay`](Self::set_delay).
pub struct RecordingTarget {
    /// `http://127.0.0.1:<port>`
    pub url: String,
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: AbortOnDropHandle<()>,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    reply: Mutex<Reply>,
}

struct Reply {
    status: StatusCode,
    queued: VecDeque<StatusCode>,
    delay: Duration,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Bytes,
}

impl Default for Reply {
    fn default() -> Self {
        Self {
            status: StatusCode::OK,
            queued: VecDeque::new(),
            delay: Duration::ZERO,
            headers: Vec::new(),
            body: Bytes::from_static(b"ok"),
        }
    }
}

impl RecordingTarget {
    pub async fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the recording target")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let server = AbortOnDropHandle::new(tokio::spawn(serve(listener, shared.clone())));
        Ok(Self {
            url: format!("http://{addr}"),
            addr,
            shared,
            server,
        })
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.requests.lock().len()
    }

    /// Waits until at least `n` requests arrived and returns all of them.
    pub async fn wait_for_count(
        &self,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<RecordedRequest>> {
        let what = format!("{n} requests at {}", self.url);
        wait_until(timeout, &what, || async { self.count() >= n })
            .await
            .with_context(|| format!("got {}", self.count()))?;
        Ok(self.requests())
    }

    /// The status answered once the script is used up. Panics on a status outside 100..=999.
    pub fn set_status(&self, status: u16) {
        self.shared.reply.lock().status = to_status(status);
    }

    /// Same as [`set_status`](Self::set_status).
    pub fn respond_with(&self, status: u16) {
        self.set_status(status);
    }

    /// Replaces the queue of statuses answered one per request before falling back to the default.
    pub fn script(&self, statuses: &[u16]) {
        self.shared.reply.lock().queued = statuses.iter().copied().map(to_status).collect();
    }

    /// Delay before every answer (the request is recorded before it).
    pub fn set_delay(&self, delay: Duration) {
        self.shared.reply.lock().delay = delay;
    }

    /// Extra headers on every answer, e.g. `[("retry-after", "1")]`. Panics on invalid headers.
    pub fn set_headers(&self, headers: &[(&str, &str)]) {
        self.shared.reply.lock().headers = headers
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::try_from(*name).expect("valid header name"),
                    HeaderValue::try_from(*value).expect("valid header value"),
                )
            })
            .collect();
    }

    /// Body of every answer (default `ok`).
    pub fn set_body(&self, body: impl Into<Bytes>) {
        self.shared.reply.lock().body = body.into();
    }

    /// Forgets the recorded requests (the script is kept).
    pub fn clear(&self) {
        self.shared.requests.lock().clear();
    }

    /// Stops listening and drops every open connection.
    pub async fn stop(self) {
        self.server.abort();
        let _ = self.server.await;
    }
}

impl std::fmt::Debug for RecordingTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingTarget")
            .field("url", &self.url)
            .finish()
    }
}

fn to_status(status: u16) -> StatusCode {
    StatusCode::from_u16(status).expect("valid HTTP status code")
}

/// Accept loop; connection tasks live in a `JoinSet` so aborting this task drops them all.
async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "recording target accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |request| answer(shared.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let (parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    shared.requests.lock().push(RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
        body,
        received_at: Instant::now(),
    });
    let (status, delay, headers, body) = {
        let mut reply = shared.reply.lock();
        let status = reply.queued.pop_front().unwrap_or(reply.status);
        (
            status,
            reply.delay,
            reply.headers.clone(),
            reply.body.clone(),
        )
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response.headers_mut().extend(headers);
    Ok(response)
}
