//! What every answer gets, around the whole router in one service: the HTTP/2 head limits
//! ([`h2_limits`](super::h2_limits)), the documented error shape for answers that did not come
//! from [`ApiError`] (axum's extractor rejections, the WebSocket handshake's), the protocol
//! version header on connector endpoints, and the security headers (§1.4).
//!
//! One hand-written service instead of three `axum::middleware::from_fn` layers: those box
//! the inner service and the future of every request at every layer, which was ~10 % of the
//! workers' time per ingress request (issue #11, docs/BENCHMARKS.md). Here the fast path
//! allocates nothing; only an error answer that must be reshaped (its body read) is boxed.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use connect_protocol::error::ErrorCode;
use tower::Service;

use crate::app::AppState;
use crate::http::connect;
use crate::http::error::ApiError;
use crate::http::h2_limits;

/// The application as served: the router inside [`Shaped`].
pub type App = Shaped<Router>;

/// The most a rejection's plain-text reason may add to the error body.
const MAX_REJECTION_DETAIL: usize = 256;

/// The service around the router (see the module docs).
#[derive(Clone)]
pub struct Shaped<S> {
    inner: S,
    st: AppState,
}

impl<S> Shaped<S> {
    pub fn new(inner: S, st: AppState) -> Self {
        Self { inner, st }
    }
}

impl<S> Service<Request> for Shaped<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = ShapedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let connector = req.uri().path().starts_with("/connect/");
        if req.version() == Version::HTTP_2 {
            let s = self.st.settings();
            if let Some(res) = h2_limits::refusal(&req, s.max_headers, s.max_header_bytes) {
                return ShapedFuture {
                    state: State::Answered(Some(res)),
                    connector,
                };
            }
        }
        // The clone that was made ready is the one called (tower's contract).
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        ShapedFuture {
            state: State::Inner(inner.call(req)),
            connector,
        }
    }
}

/// The answer of [`Shaped`].
pub struct ShapedFuture<F> {
    state: State<F>,
    connector: bool,
}

enum State<F> {
    Inner(F),
    /// An error answer whose body is being read to put it into the documented shape.
    Reshaping(Pin<Box<dyn Future<Output = Response> + Send>>),
    Answered(Option<Response>),
}

impl<F> Future for ShapedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        loop {
            let res = match &mut this.state {
                State::Inner(f) => {
                    let Ok(res) = ready!(Pin::new(f).poll(cx));
                    if needs_shape(&res) {
                        this.state = State::Reshaping(Box::pin(reshape(res)));
                        continue;
                    }
                    res
                }
                State::Reshaping(f) => ready!(f.as_mut().poll(cx)),
                State::Answered(res) => match res.take() {
                    Some(res) => res,
                    None => ApiError::internal("shape", "answer polled after completion")
                        .into_response(),
                },
            };
            return Poll::Ready(Ok(finish(res, this.connector)));
        }
    }
}

/// The headers every answer gets last: the connector version header, the security headers.
fn finish(mut res: Response, connector: bool) -> Response {
    if connector {
        let (k, v) = connect::common::version_header();
        res.headers_mut().entry(k).or_insert(v);
    }
    add_response_headers(res.headers_mut());
    res
}

/// An error answer that is not JSON (so not an [`ApiError`]).
fn needs_shape(res: &Response) -> bool {
    let status = res.status();
    (status.is_client_error() || status.is_server_error()) && !is_json(res.headers())
}

/// Whether an answer with these headers is JSON.
fn is_json(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"))
}

/// Puts an error answer that did not come from [`ApiError`] into the documented JSON shape,
/// keeping its status, its reason, and its `Allow` and `Retry-After` headers.
async fn reshape(mut res: Response) -> Response {
    let status = res.status();
    let reason = axum::body::to_bytes(std::mem::take(res.body_mut()), 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let code = match status.as_u16() {
        401 => ErrorCode::Unauthorized,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        413 => ErrorCode::PayloadTooLarge,
        422 => ErrorCode::ValidationError,
        431 => ErrorCode::InvalidHeaders,
        500..=599 => ErrorCode::InternalError,
        _ => ErrorCode::InvalidRequest,
    };
    let detail = match reason.as_str() {
        "" => status.canonical_reason().unwrap_or("Error").to_owned(),
        r => r.chars().take(MAX_REJECTION_DETAIL).collect(),
    };
    let keep: Vec<_> = res
        .headers()
        .iter()
        .filter(|(k, _)| *k == header::ALLOW || *k == header::RETRY_AFTER)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut err = ApiError::new(status, code, detail);
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        // The body was not read to its end.
        err = err.closing();
    }
    let mut res = err.into_response();
    res.headers_mut().extend(keep);
    res
}

/// The headers every answer carries (§1.4): the security headers, and `Cache-Control:
/// no-store` on JSON. Also used by [`crate::edge`] for the answers it writes itself.
pub fn add_response_headers(h: &mut HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if is_json(h) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
