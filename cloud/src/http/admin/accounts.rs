//! Admin account endpoints (HOSTED.md §2) under `/admin/webhook-connect/accounts`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use connect_protocol::hosted::{AccountList, CreateAccountRequest, UpdateAccountRequest};

use crate::app::AppState;
use crate::http::error::ApiResult;

pub(crate) async fn create_account(
    State(st): State<AppState>,
    Json(req): Json<CreateAccountRequest>,
) -> ApiResult<Response> {
    let created = st
        .hosted()
        .create_account(&req.name, req.quota.as_ref())
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(crate) async fn list_accounts(State(st): State<AppState>) -> ApiResult<Response> {
    let accounts = st.hosted().list_accounts().await?;
    Ok(Json(AccountList { accounts }).into_response())
}

pub(crate) async fn get_account(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let a = st.hosted().account_record(&id).await?;
    Ok(Json(st.hosted().account_view(&a).await?).into_response())
}

pub(crate) async fn update_account(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Json(req): Json<UpdateAccountRequest>,
) -> ApiResult<Response> {
    Ok(Json(st.hosted().update_account(&id, &req).await?).into_response())
}

pub(crate) async fn rotate_key(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(st.hosted().rotate_key(&id).await?).into_response())
}

pub(crate) async fn delete_account(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(st.hosted().delete_account(&id).await?).into_response())
}
