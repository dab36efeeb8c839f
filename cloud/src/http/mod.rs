//! The HTTP edge: the router with every area module's routes, the response headers every
//! answer carries (§1.4), and the fallback 404. Handlers get the [`AppState`] and reach the
//! runtime through its accessors.
//!
//! Layout: [`error`] (the one error type), [`auth`] (credentials, parsed once), [`ingress`]
//! (`POST /webhook/…`), [`connect`] (connector streams, ACK, status), [`admin`] (§8 and the
//! reload API), [`ops`] (`/health`, `/metrics`, `/openapi.json`); [`parsers`] names every
//! parser of raw request data (for the fuzz targets).

pub mod admin;
pub mod api;
pub mod auth;
pub mod connect;
pub mod error;
pub mod h2_limits;
pub mod ingress;
pub mod ops;
pub mod parsers;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use connect_protocol::error::ErrorCode;

use crate::app::AppState;

use crate::http::error::ApiError;

pub fn router(st: AppState) -> Router {
    let mut r = Router::new();
    // `off`: `/api/v1/*` is not mounted and answers the fallback 404 (HOSTED.md §1).
    if st.settings().hosted.self_service != connect_protocol::hosted::SelfServiceMode::Off {
        r = r.nest("/api/v1", api::routes(st.clone()));
    }
    r.route("/", get(ops::root))
        .route("/health", get(ops::health))
        .route("/health/live", get(ops::live))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(ops::openapi))
        .route("/webhook/{id}", any(ingress::receive_webhook))
        .route(
            "/webhook/{ns}/{id}",
            any(ingress::receive_namespaced_webhook),
        )
        .route("/connect/stream/{channel}", get(connect::ws::stream_ws))
        .route(
            "/connect/stream/{channel}/sse",
            get(connect::sse::stream_sse),
        )
        .route(
            "/connect/stream/{channel}/poll",
            get(connect::poll::stream_poll),
        )
        .route("/connect/ack", post(connect::ack::ack_message))
        .route(
            "/connect/status/{channel}",
            get(connect::ack::channel_status),
        )
        .nest("/admin/webhook-connect", admin::routes(st.clone()))
        .merge(admin::config::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(st.clone(), h2_limits::limit))
        .layer(middleware::from_fn(error_shape))
        .layer(middleware::from_fn(security_headers))
        .with_state(st)
}

async fn not_found() -> Response {
    ApiError::not_found(ErrorCode::NotFound, "Not Found").into_response()
}

/// The most a rejection's plain-text reason may add to the error body.
const MAX_REJECTION_DETAIL: usize = 256;

/// Puts an error answer that did not come from [`ApiError`] (axum's extractor and body-limit
/// rejections, the WebSocket handshake's) into the documented JSON shape, keeping its status
/// and its reason; connector endpoints always carry the protocol version header.
async fn error_shape(req: Request, next: Next) -> Response {
    let connector = req.uri().path().starts_with("/connect/");
    let mut res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
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
        res = err.into_response();
        res.headers_mut().extend(keep);
    }
    if connector {
        let (k, v) = connect::common::version_header();
        res.headers_mut().entry(k).or_insert(v);
    }
    res
}

async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    add_response_headers(res.headers_mut());
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
    let is_json = h
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}
