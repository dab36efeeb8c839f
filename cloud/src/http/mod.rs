//! The HTTP edge: the router with every area module's routes inside [`shape::Shaped`] (the
//! response headers every answer carries (§1.4), the error shape), and the fallback 404. Handlers get the [`AppState`] and reach the
//! runtime through its accessors.
//!
//! Layout: [`error`] (the one error type), [`auth`] (credentials, parsed once), [`ingress`]
//! (`POST /webhook/…`), [`connect`] (connector streams, ACK, status), [`admin`] (§8 and the
//! reload API), [`ops`] (`/health`, `/metrics`, `/openapi.json`), [`shape`] (what every
//! answer gets); [`parsers`] names every parser of raw request data (for the fuzz targets).

pub mod admin;
pub mod api;
pub mod auth;
pub mod connect;
pub mod error;
pub mod h2_limits;
pub mod ingress;
pub mod ops;
pub mod parsers;
pub mod shape;

use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use connect_protocol::error::ErrorCode;

use crate::app::AppState;

use crate::http::error::ApiError;

/// The application: every route, inside [`shape::Shaped`] (limits, error shape, headers).
pub fn router(st: AppState) -> shape::App {
    let mut r = Router::new();
    // `off`: `/api/v1/*` is not mounted and answers the fallback 404 (HOSTED.md §1).
    if st.settings().hosted.self_service != connect_protocol::hosted::SelfServiceMode::Off {
        r = r.nest("/api/v1", api::routes(st.clone()));
    }
    let r = r
        .route("/", get(ops::root))
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
        .fallback(not_found);
    shape::Shaped::new(r.with_state(st.clone()), st)
}

async fn not_found() -> Response {
    ApiError::not_found(ErrorCode::NotFound, "Not Found").into_response()
}
