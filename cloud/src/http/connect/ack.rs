//! `POST /connect/ack` (§5.4) and `GET /connect/status/{channel}` (§5.5).

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use connect_buffer::{AckOutcome, NackOutcome};
use connect_protocol::error::ErrorCode;
use connect_protocol::frames::{AckResponse, MAX_ERROR_TEXT, StatusResponse, truncate_chars};
use connect_protocol::headers as h;
use connect_protocol::time::Timestamp;

use crate::app::AppState;
use crate::http::auth::{bearer_token, decode_query_value};
use crate::http::connect::common::{authenticate, check_service, version_header};
use crate::http::error::{ApiError, ApiResult};
use crate::stats::channel_stats;

fn with_version(mut res: Response) -> Response {
    let (k, v) = version_header();
    res.headers_mut().insert(k, v);
    res
}

pub async fn ack_message(
    State(st): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    with_version(match ack(&st, query.as_deref(), &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    })
}

fn parse_retry(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The inputs of `POST /connect/ack` from its query string (§5.4), checked.
#[derive(Debug)]
pub struct AckQuery {
    pub message_id: String,
    /// `ack`, `nack` or `extend`.
    pub status: String,
    pub retry: bool,
    pub error: Option<String>,
}

/// Parses and checks the query string of `POST /connect/ack`: 400 for a malformed escape, 422
/// for a missing `message_id`, an unknown `status` or a `retry` that is not a boolean.
pub fn parse_ack_query(query: Option<&str>) -> ApiResult<AckQuery> {
    let mut message_id = None;
    let mut status = "ack".to_owned();
    let mut retry = true;
    let mut error = None;
    for kv in query
        .unwrap_or_default()
        .split('&')
        .filter(|s| !s.is_empty())
    {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        let v = decode_query_value(v)
            .map_err(|e| ApiError::bad_request(ErrorCode::InvalidRequest, e.to_string()))?;
        match k {
            "message_id" => message_id = Some(v),
            "status" => status = v,
            "retry" => {
                retry = parse_retry(&v)
                    .ok_or_else(|| ApiError::unprocessable("retry must be a boolean"))?
            }
            "error" => error = Some(truncate_chars(&v, MAX_ERROR_TEXT)),
            _ => {}
        }
    }
    let message_id = message_id
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::unprocessable("message_id is required"))?;
    if !matches!(status.as_str(), "ack" | "nack" | "extend") {
        return Err(ApiError::unprocessable(
            "status must be ack, nack or extend",
        ));
    }
    Ok(AckQuery {
        message_id,
        status,
        retry,
        error,
    })
}

/// The connection an ACK names (`X-Connection-ID`), if any.
fn named_connection(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(h::CONNECTION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

async fn ack(st: &AppState, query: Option<&str>, headers: &HeaderMap) -> ApiResult<Response> {
    check_service(st)?;
    // 1–2: the token is checked before anything about connections is revealed.
    let Some(token) = bearer_token(headers) else {
        return Err(ApiError::plain(
            StatusCode::UNAUTHORIZED,
            "Missing authorization token",
        ));
    };
    // A token valid for the channel of the connection the request names is valid somewhere;
    // only a token that fails that is searched for in every channel (O(channels): 100,000 on
    // a hosted deployment, per ACK). Either way nothing about the connection is revealed to a
    // token that is valid nowhere.
    let named = named_connection(headers).and_then(|id| st.hub().connection_channel(id));
    let valid_for_named = named
        .as_ref()
        .is_some_and(|(channel, _)| st.hub().authenticate(channel, &token).is_some());
    if !valid_for_named && !st.hub().token_valid_anywhere(&token) {
        return Err(ApiError::plain(StatusCode::UNAUTHORIZED, "Invalid token"));
    }
    // 3: inputs.
    let AckQuery {
        message_id,
        status,
        retry,
        error,
    } = parse_ack_query(query)?;
    let conn_id = named_connection(headers)
        .ok_or_else(|| ApiError::unprocessable("X-Connection-ID header is required"))?
        .to_owned();
    // 4: the connection exists and the token is valid for its channel.
    let not_found = || ApiError::not_found(ErrorCode::ConnectionNotFound, "Connection not found");
    let (channel, live, remote) = match named {
        Some((channel, live)) => (channel, live, false),
        // With a shared buffer the connection may live on another replica (§10.3): the
        // buffer checks lease ownership itself.
        None => match st.hub().remote_connection_channel(&conn_id, &token).await? {
            Some(channel) => (channel, None, true),
            None if status == "ack" => {
                return match st
                    .hub()
                    .late_remote_ack(&conn_id, &token, &message_id)
                    .await?
                {
                    true => Ok(axum::Json(AckResponse {
                        status: "ok".into(),
                        message_id,
                    })
                    .into_response()),
                    false => Err(not_found()),
                };
            }
            None => return Err(not_found()),
        },
    };
    if !valid_for_named && st.hub().authenticate(&channel, &token).is_none() {
        return Err(not_found());
    }
    if let Some(c) = &live {
        c.touch();
    }
    // 5–6: apply.
    let not_in_flight =
        || ApiError::not_found(ErrorCode::MessageNotInFlight, "Message not in flight");
    let ok = match status.as_str() {
        "ack" => matches!(
            st.hub()
                .ack(&channel, &message_id, &conn_id, live.as_ref())
                .await?,
            AckOutcome::Settled { .. }
        ),
        "nack" => match &live {
            Some(c) => !matches!(
                st.hub().nack(c, &message_id, retry, error).await?,
                NackOutcome::NotHeld
            ),
            None if remote => !matches!(
                st.hub()
                    .nack_remote(&channel, &conn_id, &message_id, retry, error)
                    .await?,
                NackOutcome::NotHeld
            ),
            None => false,
        },
        _ => match &live {
            Some(c) => st.hub().extend(c, &message_id).await?,
            None if remote => st.buffer().extend(&channel, &message_id, &conn_id).await?,
            None => false,
        },
    };
    if !ok {
        return Err(not_in_flight());
    }
    Ok(axum::Json(AckResponse {
        status: "ok".into(),
        message_id,
    })
    .into_response())
}

pub async fn channel_status(
    State(st): State<AppState>,
    Path(channel): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let res = async {
        let authed = authenticate(&st, &channel, &headers, query.as_deref()).await?;
        let stats = channel_stats(st.hub(), authed.rt.name()).await?;
        let connected = authed.rt.connection_count() > 0;
        Ok::<_, ApiError>(
            axum::Json(StatusResponse {
                channel: authed.rt.name().to_owned(),
                connected,
                stats,
                server_time: Timestamp::now(),
            })
            .into_response(),
        )
    }
    .await;
    with_version(res.unwrap_or_else(IntoResponse::into_response))
}
