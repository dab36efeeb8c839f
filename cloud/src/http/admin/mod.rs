//! Admin API under `/admin/webhook-connect` (§8). Authentication is checked before path
//! lookups and body parsing, so 401/403 precede 404 and 422. [`config`]: the reload API
//! (`/admin/reload-config`, `/admin/config-status`, CONFIG.md §6.3–6.4), behind its own token.
//!
//! Layout: this file (routes and authentication), [`channels`] (channel views, stats, token
//! rotation, disconnects, overview), [`messages`] (dead letters and queued messages), [`config`].

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use connect_protocol::error::ErrorCode;

pub mod accounts;
pub mod channels;
pub mod config;
pub mod messages;

use crate::app::AppState;
use crate::http::auth::{bearer_token, same_secret};
use crate::http::error::{ApiError, ApiResult};

/// The admin routes. Every route but `/health` sits behind `require_admin`, so
/// authentication is decided before any path lookup or body parsing (§8.1).
pub fn routes(st: AppState) -> Router<AppState> {
    Router::new()
        .route("/channels", get(channels::list_channels))
        .route("/channels/{c}", get(channels::get_channel))
        .route("/channels/{c}/stats", get(channels::get_stats))
        .route(
            "/channels/{c}/webhook-stats",
            get(channels::get_webhook_stats),
        )
        .merge(channel_routes())
        .route(
            "/channels/{c}/connections/{id}",
            delete(channels::disconnect),
        )
        .route("/overview", get(channels::overview))
        .route(
            "/accounts",
            get(accounts::list_accounts).post(accounts::create_account),
        )
        .route(
            "/accounts/{id}",
            get(accounts::get_account)
                .patch(accounts::update_account)
                .delete(accounts::delete_account),
        )
        .route("/accounts/{id}/rotate-key", post(accounts::rotate_key))
        .route_layer(middleware::from_fn_with_state(st, require_admin))
        .route("/health", get(channels::admin_health))
}

/// The per-channel routes an account may use on its own channels too: dead letters, queued
/// messages, token rotation (PROTOCOL §8). Mounted here behind `require_admin` and under
/// `/api/v1` behind the ownership check, so the two lists cannot drift apart.
pub fn channel_routes() -> Router<AppState> {
    Router::new()
        .route(
            "/channels/{c}/dead-letters",
            get(messages::list_dead_letters).delete(messages::purge_dead_letters),
        )
        .route(
            "/channels/{c}/dead-letters/replay",
            post(messages::replay_dead_letters),
        )
        .route(
            "/channels/{c}/dead-letters/{m}",
            get(messages::get_dead_letter).delete(messages::delete_dead_letter),
        )
        .route(
            "/channels/{c}/dead-letters/{m}/replay",
            post(messages::replay_dead_letter),
        )
        .route("/channels/{c}/messages", get(messages::peek_messages))
        .route("/channels/{c}/rotate-token", post(channels::rotate_token))
}

async fn require_admin(State(st): State<AppState>, req: Request, next: Next) -> Response {
    match authorize(&st, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// §8.1: 403 when disabled, 401 missing/wrong, then service state.
fn authorize(st: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let Some(expected) = st.settings().admin_token.as_deref() else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            "Admin API disabled. Set WEBHOOK_CONNECT_ADMIN_TOKEN environment variable.",
        ));
    };
    let Some(given) = bearer_token(headers) else {
        return Err(ApiError::unauthorized("Missing authorization header"));
    };
    if !same_secret(&given, expected) {
        return Err(ApiError::unauthorized("Invalid admin token"));
    }
    if !st.settings().enabled {
        return Err(ApiError::not_initialized(st.settings().retry_after_seconds));
    }
    // Views, settling and deletes work on a store that only fails writes (a full disk).
    if !st.buffer().health().readable {
        return Err(ApiError::buffer_unavailable(
            st.settings().retry_after_seconds,
        ));
    }
    Ok(())
}
