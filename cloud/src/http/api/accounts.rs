//! `POST /api/v1/accounts` (open sign-up) and `GET /api/v1/account`.

use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Extension, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use connect_buffer::AccountRecord;
use connect_protocol::hosted::SignUpRequest;

use crate::app::AppState;
use crate::http::connect::common::remote_ip;
use crate::http::error::ApiResult;

/// Open mode only (403 in `keys` mode); the client IP follows the trusted-proxy rule.
pub(crate) async fn sign_up(
    State(st): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Option<Json<SignUpRequest>>,
) -> ApiResult<Response> {
    let ip = remote_ip(&st, peer, &headers);
    let req = body.map(|Json(b)| b).unwrap_or_default();
    let created = st.hosted().sign_up(ip, req.name.as_deref()).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(crate) async fn get_account(
    State(st): State<AppState>,
    Extension(account): Extension<AccountRecord>,
) -> ApiResult<Response> {
    Ok(Json(st.hosted().account_view(&account).await?).into_response())
}
