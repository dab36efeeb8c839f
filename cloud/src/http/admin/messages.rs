//! Dead letters and queued messages (§8.3–8.4): list, get, replay, delete, purge, peek.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use connect_buffer::{MessageRecord, PeekFilter, ReplayOutcome};
use connect_protocol::admin::*;
use connect_protocol::error::ErrorCode;
use serde::Deserialize;

use crate::app::AppState;
use crate::http::admin::channels::record;
use crate::http::error::{ApiError, ApiResult};

/// The admin view of a message (DeadLetter / QueuedMessage shapes of §8.3).
pub fn message_view(r: &MessageRecord, include_body: bool) -> MessageView {
    let m = &r.message;
    let dead = r.state == connect_protocol::message::MessageState::DeadLettered;
    MessageView {
        message_id: m.message_id.clone(),
        channel: m.channel.clone(),
        webhook_id: m.webhook_id.clone(),
        timestamp: m.received_at,
        expires_at: m.expires_at,
        metadata: serde_json::json!({"source": "webhook_connect_module"}),
        headers: m.headers_map(),
        payload: m.payload_view(),
        sequence: m.sequence,
        delivery_count: r.attempts.delivery_count,
        state: r.state,
        method: m.method.clone(),
        path: m.path.clone(),
        query: m.query.clone(),
        content_type: m.content_type.clone(),
        namespace: m.namespace.clone(),
        first_attempt_at: r.attempts.first_attempt_at,
        last_attempt_at: r.attempts.last_attempt_at,
        last_error: r.attempts.last_error.clone(),
        reason: if dead { r.reason } else { None },
        dead_lettered_at: if dead { r.dead_lettered_at } else { None },
        leased_to: (!dead).then(|| r.leased_to.clone()),
        lease_expires_at: (!dead).then_some(r.lease_expires_at),
        next_attempt_at: (!dead).then_some(r.next_attempt_at),
        raw_headers: if include_body {
            m.raw_headers.clone()
        } else {
            None
        },
        body_b64: if include_body {
            m.body
                .as_ref()
                .map(|b| base64::engine::general_purpose::STANDARD.encode(b))
        } else {
            None
        },
    }
}

#[derive(Deserialize, Default)]
pub(crate) struct ListQuery {
    limit: Option<String>,
    include_body: Option<String>,
    state: Option<String>,
}

fn parse_limit(v: Option<&str>, default: usize, max: usize) -> ApiResult<usize> {
    match v {
        None => Ok(default),
        Some(s) => s
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                ApiError::unprocessable(format!("limit must be an integer between 1 and {max}"))
            }),
    }
}

fn parse_flag(v: Option<&str>) -> ApiResult<bool> {
    match v {
        None => Ok(false),
        Some(s) => crate::settings::values::parse_bool(s)
            .map_err(|e| ApiError::unprocessable(e.to_string())),
    }
}

pub(crate) async fn list_dead_letters(
    State(st): State<AppState>,
    Path(c): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    record(&st, &c).await?;
    let limit = parse_limit(q.limit.as_deref(), 100, 1000)?;
    let include_body = parse_flag(q.include_body.as_deref())?;
    let (items, total) = st.buffer().dead_letters(&c, limit).await?;
    let messages: Vec<MessageView> = items
        .iter()
        .map(|r| message_view(r, include_body))
        .collect();
    Ok(axum::Json(DeadLetterList {
        channel: c,
        count: messages.len() as u64,
        total,
        messages,
    })
    .into_response())
}

pub(crate) async fn get_dead_letter(
    State(st): State<AppState>,
    Path((c, m)): Path<(String, String)>,
) -> ApiResult<Response> {
    record(&st, &c).await?;
    let r = st.buffer().dead_letter(&c, &m).await?.ok_or_else(|| {
        ApiError::not_found(ErrorCode::DeadLetterNotFound, "Dead letter not found")
    })?;
    Ok(axum::Json(message_view(&r, true)).into_response())
}

pub(crate) async fn replay_dead_letter(
    State(st): State<AppState>,
    Path((c, m)): Path<(String, String)>,
) -> ApiResult<Response> {
    record(&st, &c).await?;
    match st.buffer().replay(&c, &m).await? {
        ReplayOutcome::Replayed => Ok(axum::Json(DeadLetterActionResponse {
            status: "replayed".into(),
            channel: c,
            message_id: m,
        })
        .into_response()),
        ReplayOutcome::NotFound => Err(ApiError::not_found(
            ErrorCode::DeadLetterNotFound,
            "Dead letter not found",
        )),
        ReplayOutcome::QueueFull => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::QueueFull,
            "Channel queue full",
        )
        .retry_after(st.settings().retry_after_seconds)),
    }
}

pub(crate) async fn replay_dead_letters(
    State(st): State<AppState>,
    Path(c): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    record(&st, &c).await?;
    let limit = match q.limit.as_deref() {
        None => None,
        Some(s) => Some(
            s.parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ApiError::unprocessable("limit must be a positive integer"))?,
        ),
    };
    let r = st.buffer().replay_all(&c, limit).await?;
    Ok(axum::Json(BulkReplayResponse {
        channel: c,
        replayed: r.replayed,
        remaining: r.remaining,
        stopped: r.stopped_queue_full.then(|| "queue_full".to_owned()),
    })
    .into_response())
}

pub(crate) async fn delete_dead_letter(
    State(st): State<AppState>,
    Path((c, m)): Path<(String, String)>,
) -> ApiResult<Response> {
    record(&st, &c).await?;
    if !st.buffer().delete_dead_letter(&c, &m).await? {
        return Err(ApiError::not_found(
            ErrorCode::DeadLetterNotFound,
            "Dead letter not found",
        ));
    }
    st.metrics().discarded(&c, "admin_delete", 1);
    Ok(axum::Json(DeadLetterActionResponse {
        status: "deleted".into(),
        channel: c,
        message_id: m,
    })
    .into_response())
}

pub(crate) async fn purge_dead_letters(
    State(st): State<AppState>,
    Path(c): Path<String>,
) -> ApiResult<Response> {
    record(&st, &c).await?;
    let n = st.buffer().purge_dead_letters(&c).await?;
    st.metrics().discarded(&c, "admin_delete", n);
    Ok(axum::Json(PurgeResponse {
        channel: c,
        deleted: n,
    })
    .into_response())
}

pub(crate) async fn peek_messages(
    State(st): State<AppState>,
    Path(c): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Response> {
    record(&st, &c).await?;
    let limit = parse_limit(q.limit.as_deref(), 20, 100)?;
    let include_body = parse_flag(q.include_body.as_deref())?;
    let filter = match q.state.as_deref().unwrap_or("all") {
        "all" => PeekFilter::All,
        "ready" => PeekFilter::Ready,
        "in_flight" => PeekFilter::InFlight,
        "delayed" => PeekFilter::Delayed,
        _ => {
            return Err(ApiError::unprocessable(
                "state must be one of ready, in_flight, delayed, all",
            ));
        }
    };
    let items = st.buffer().peek(&c, filter, limit).await?;
    let messages: Vec<MessageView> = items
        .iter()
        .map(|r| message_view(r, include_body))
        .collect();
    Ok(axum::Json(MessageList {
        channel: c,
        count: messages.len() as u64,
        messages,
    })
    .into_response())
}
