//! The self-service API under `/api/v1` (HOSTED.md §2–§3), mounted only when self-service is
//! not `off`. Every route but the open sign-up needs an account API key
//! (`Authorization: Bearer whc_…`, never a query parameter), checked before any path lookup
//! or body parsing; the account is handed to handlers as an extension.
//!
//! Layout: this file (routes, key and ownership checks, error mapping); [`accounts`]
//! (sign-up, `GET /account`); [`channels`] (the account's channels). The dead-letter, queue
//! and token-rotation endpoints are the admin API's own routes ([`admin::channel_routes`],
//! same handlers and shapes, PROTOCOL §8), behind an ownership check that answers 404 for a
//! channel the key's account does not own.

pub mod accounts;
pub mod channels;

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use connect_protocol::error::ErrorCode;

use crate::app::AppState;
use crate::hosted::HostedError;
use crate::http::admin;
use crate::http::auth::bearer_token;
use crate::http::error::ApiError;

impl From<HostedError> for ApiError {
    fn from(e: HostedError) -> Self {
        match e {
            HostedError::Unauthorized => ApiError::unauthorized("Invalid API key"),
            HostedError::NotFound => ApiError::channel_not_found(),
            HostedError::AccountNotFound => {
                ApiError::not_found(ErrorCode::NotFound, "Account not found")
            }
            HostedError::NameTaken(d) => {
                ApiError::new(StatusCode::CONFLICT, ErrorCode::NameTaken, d)
            }
            HostedError::QuotaExceeded(d) => {
                ApiError::new(StatusCode::FORBIDDEN, ErrorCode::QuotaExceeded, d)
            }
            HostedError::Invalid(d) => ApiError::unprocessable(d),
            HostedError::SignUpDisabled => {
                ApiError::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, e.to_string())
            }
            HostedError::Capacity => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Capacity,
                e.to_string(),
            ),
            HostedError::RateLimited(secs) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::RateLimited,
                e.to_string(),
            )
            .retry_after(secs),
            HostedError::Buffer(b) => ApiError::from(b),
        }
    }
}

/// The `/api/v1` routes.
pub fn routes(st: AppState) -> Router<AppState> {
    let owned = admin::channel_routes()
        .route_layer(middleware::from_fn_with_state(st.clone(), require_owner));
    let keyed = Router::new()
        .route("/account", get(accounts::get_account))
        .route(
            "/channels",
            get(channels::list_channels).post(channels::create_channel),
        )
        .route(
            "/channels/{c}",
            get(channels::get_channel)
                .patch(channels::update_channel)
                .delete(channels::delete_channel),
        )
        .merge(owned)
        .route_layer(middleware::from_fn_with_state(st, require_key));
    Router::new()
        .route("/accounts", post(accounts::sign_up))
        .merge(keyed)
}

/// Resolves the API key to its account (401 `unauthorized` otherwise, one answer for every
/// cause) and checks the service can answer.
async fn require_key(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    if !st.settings().enabled {
        return ApiError::not_initialized(st.settings().retry_after_seconds).into_response();
    }
    let token = bearer_token(req.headers());
    match st.hosted().authenticate_key(token.as_deref()).await {
        Ok(account) => {
            req.extensions_mut().insert(account);
            next.run(req).await
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// `{c}` must be a channel of the key's account; anything else is 404 like a missing one.
async fn require_owner(
    State(st): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(account) = req.extensions().get::<connect_buffer::AccountRecord>() else {
        return ApiError::unauthorized("Invalid API key").into_response();
    };
    let channel = params.get("c").map(String::as_str).unwrap_or("");
    match st.hosted().owned(account, channel).await {
        Ok(_) => next.run(req).await,
        Err(e) => ApiError::from(e).into_response(),
    }
}
