//! The account's channels: create, list, get, update, delete (HOSTED.md §3).

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use connect_buffer::AccountRecord;
use connect_protocol::hosted::{CreateChannelRequest, HostedChannelList, UpdateChannelRequest};

use crate::app::AppState;
use crate::http::error::ApiResult;

pub(crate) async fn create_channel(
    State(st): State<AppState>,
    Extension(account): Extension<AccountRecord>,
    Json(req): Json<CreateChannelRequest>,
) -> ApiResult<Response> {
    let created = st.hosted().create_channel(&account, &req).await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

pub(crate) async fn list_channels(
    State(st): State<AppState>,
    Extension(account): Extension<AccountRecord>,
) -> ApiResult<Response> {
    let channels = st.hosted().list_channels(&account).await?;
    Ok(Json(HostedChannelList { channels }).into_response())
}

pub(crate) async fn get_channel(
    State(st): State<AppState>,
    Extension(account): Extension<AccountRecord>,
    Path(c): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(st.hosted().channel_detail(&account, &c).await?).into_response())
}

pub(crate) async fn update_channel(
    State(st): State<AppState>,
    Extension(account): Extension<AccountRecord>,
    Path(c): Path<String>,
    Json(req): Json<UpdateChannelRequest>,
) -> ApiResult<Response> {
    Ok(Json(st.hosted().update_channel(&account, &c, &req).await?).into_response())
}

pub(crate) async fn delete_channel(
    State(st): State<AppState>,
    Extension(account): Extension<AccountRecord>,
    Path(c): Path<String>,
) -> ApiResult<Response> {
    Ok(Json(st.hosted().delete_channel(&account, &c).await?).into_response())
}
