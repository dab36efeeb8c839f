//! Admin API under `/admin/webhook-connect` (§8). Authentication is checked before path
//! lookups and body parsing, so 401/403 precede 404 and 422. [`config`]: the reload API
//! (`/admin/reload-config`, `/admin/config-status`, CONFIG.md §6.3–6.4), behind its own token.

use std::collections::BTreeMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use connect_buffer::{ChannelRecord, MessageRecord, PeekFilter, ReplayOutcome};
use connect_protocol::admin::*;
use connect_protocol::error::ErrorCode;
use connect_protocol::ids::{new_channel_token, token_digest};
use connect_protocol::time::Timestamp;
use serde::Deserialize;

pub mod config;

use crate::app::AppState;
use crate::http::auth::{bearer_token, same_secret};
use crate::http::error::{ApiError, ApiResult};
use crate::stats::{channel_stats, live_count, stats_view};

/// The admin routes. Every route but `/health` sits behind `require_admin`, so
/// authentication is decided before any path lookup or body parsing (§8.1).
pub fn routes(st: AppState) -> Router<AppState> {
    Router::new()
        .route("/channels", get(list_channels))
        .route("/channels/{c}", get(get_channel))
        .route("/channels/{c}/stats", get(get_stats))
        .route("/channels/{c}/webhook-stats", get(get_webhook_stats))
        .route(
            "/channels/{c}/dead-letters",
            get(list_dead_letters).delete(purge_dead_letters),
        )
        .route(
            "/channels/{c}/dead-letters/replay",
            post(replay_dead_letters),
        )
        .route(
            "/channels/{c}/dead-letters/{m}",
            get(get_dead_letter).delete(delete_dead_letter),
        )
        .route(
            "/channels/{c}/dead-letters/{m}/replay",
            post(replay_dead_letter),
        )
        .route("/channels/{c}/messages", get(peek_messages))
        .route("/channels/{c}/rotate-token", post(rotate_token))
        .route("/channels/{c}/connections/{id}", delete(disconnect))
        .route("/overview", get(overview))
        .route_layer(middleware::from_fn_with_state(st, require_admin))
        .route("/health", get(admin_health))
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

async fn record(st: &AppState, c: &str) -> ApiResult<ChannelRecord> {
    st.buffer()
        .channel(c)
        .await?
        .ok_or_else(ApiError::channel_not_found)
}

async fn admin_health(State(st): State<AppState>) -> Response {
    let h = st.buffer().health();
    let ok = h.ok && st.settings().enabled;
    let body = AdminHealth {
        status: if ok { "healthy" } else { "unhealthy" }.into(),
        buffer: h.ok,
        channels_count: st.hub().channel_names().len() as u64,
        connections_count: st.hub().connections_count() as u64,
        timestamp: Timestamp::now(),
        backend: st.buffer().backend_name().into(),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

fn info(st: &AppState, r: &ChannelRecord) -> ChannelInfo {
    ChannelInfo {
        name: r.name.clone(),
        webhook_id: r.owner.clone(),
        created_at: r.created_at,
        ttl_seconds: r.settings.ttl_seconds,
        max_queue_size: r.settings.max_queue_size,
        max_connections: r.settings.max_connections,
        connected_clients: live_count(st.hub(), &r.name),
        webhook_ids: r.webhook_ids.clone(),
        state: r.state,
    }
}

async fn list_channels(State(st): State<AppState>) -> ApiResult<Response> {
    let recs = st.buffer().channels().await?;
    Ok(axum::Json(recs.iter().map(|r| info(&st, r)).collect::<Vec<_>>()).into_response())
}

async fn get_channel(State(st): State<AppState>, Path(c): Path<String>) -> ApiResult<Response> {
    let r = record(&st, &c).await?;
    let b = st.buffer().stats(&c).await?;
    let conns = st
        .hub()
        .channel(&c)
        .map(|rt| {
            let cur = rt.current_token_digest();
            rt.connections()
                .iter()
                .map(|conn| conn.info(&cur))
                .collect()
        })
        .unwrap_or_default();
    let s = &r.settings;
    let config = ChannelConfigView {
        name: r.name.clone(),
        webhook_id: r.owner.clone(),
        ttl_seconds: s.ttl_seconds,
        max_queue_size: s.max_queue_size,
        max_message_size: st.settings().max_body_bytes,
        max_in_flight: s.max_in_flight,
        ack_timeout_seconds: s.ack_timeout_seconds,
        max_connections: s.max_connections,
        heartbeat_interval_seconds: st.settings().heartbeat_interval_seconds,
        allowed_ips: None,
        rate_limit_per_second: None,
        created_at: r.created_at,
        updated_at: r.updated_at,
        max_delivery_attempts: s.max_delivery_attempts as u64,
        retry_backoff_max_seconds: s.retry_backoff_max_seconds,
        dlq_retention_seconds: s.dlq_retention_seconds,
        webhook_ids: r.webhook_ids.clone(),
        state: r.state,
        token: TokenInfo {
            source: r.token.source,
            rotated_at: r.token.rotated_at,
            old_token_expires_at: r.token.previous_expires_at,
        },
    };
    let config_errors = st
        .config()
        .map(|cfg| {
            cfg.webhooks
                .errors()
                .iter()
                .chain(cfg.stale.iter())
                .filter(|e| r.webhook_ids.contains(&e.webhook) || e.error.contains(&r.name))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Ok(axum::Json(ChannelDetail {
        name: r.name.clone(),
        webhook_id: r.owner.clone(),
        created_at: r.created_at,
        config,
        stats: ChannelDetailStats {
            stats: stats_view(st.hub(), &c, &b),
            webhook_stats: b.webhook_pending.clone(),
        },
        connected_clients: conns,
        config_errors,
    })
    .into_response())
}

async fn get_stats(State(st): State<AppState>, Path(c): Path<String>) -> ApiResult<Response> {
    record(&st, &c).await?;
    Ok(axum::Json(channel_stats(st.hub(), &c).await?).into_response())
}

async fn get_webhook_stats(
    State(st): State<AppState>,
    Path(c): Path<String>,
) -> ApiResult<Response> {
    record(&st, &c).await?;
    let b = st.buffer().stats(&c).await?;
    let webhooks: BTreeMap<String, PendingCount> = b
        .webhook_pending
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k, PendingCount { pending: n }))
        .collect();
    Ok(axum::Json(WebhookStatsResponse {
        channel: c,
        webhooks,
    })
    .into_response())
}

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
struct ListQuery {
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
        Some(s) => crate::settings::values::parse_bool(s).map_err(ApiError::unprocessable),
    }
}

async fn list_dead_letters(
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

async fn get_dead_letter(
    State(st): State<AppState>,
    Path((c, m)): Path<(String, String)>,
) -> ApiResult<Response> {
    record(&st, &c).await?;
    let r = st.buffer().dead_letter(&c, &m).await?.ok_or_else(|| {
        ApiError::not_found(ErrorCode::DeadLetterNotFound, "Dead letter not found")
    })?;
    Ok(axum::Json(message_view(&r, true)).into_response())
}

async fn replay_dead_letter(
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

async fn replay_dead_letters(
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

async fn delete_dead_letter(
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

async fn purge_dead_letters(
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

async fn peek_messages(
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

/// Maximum rotation grace period: 30 days.
const MAX_GRACE: i64 = 2_592_000;

async fn rotate_token(
    State(st): State<AppState>,
    Path(c): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    record(&st, &c).await?;
    let grace = if body.iter().all(u8::is_ascii_whitespace) {
        3600
    } else {
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|_| ApiError::unprocessable("body must be a JSON object"))?;
        let obj = v
            .as_object()
            .ok_or_else(|| ApiError::unprocessable("body must be a JSON object"))?;
        match obj.get("grace_period_seconds") {
            None | Some(serde_json::Value::Null) => 3600,
            Some(n) => n
                .as_i64()
                .filter(|g| (0..=MAX_GRACE).contains(g))
                .ok_or_else(|| {
                    ApiError::unprocessable(format!(
                        "grace_period_seconds must be an integer between 0 and {MAX_GRACE}"
                    ))
                })?,
        }
    };
    let token = new_channel_token();
    let state = st
        .buffer()
        .rotate_token(&c, token_digest(&token), grace as u64)
        .await?;
    if let Some(r) = st.buffer().channel(&c).await? {
        st.hub().upsert_channel(&r);
    }
    let expires = state.previous_expires_at.unwrap_or_else(Timestamp::now);
    tracing::info!(channel = %c, grace_seconds = grace, "channel token rotated");
    Ok(axum::Json(RotateTokenResponse {
        channel: c,
        new_token: token,
        old_token_expires_at: expires,
        message: format!("Old token valid for {grace} seconds grace period"),
    })
    .into_response())
}

async fn disconnect(
    State(st): State<AppState>,
    Path((c, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    record(&st, &c).await?;
    let Some(conn) = st.hub().connection(&id) else {
        // With a shared buffer the connection may live on another replica, which closes it.
        if st.buffer().request_close(&c, &id).await? {
            return Ok(axum::Json(DisconnectResponse {
                status: "disconnected".into(),
                connection_id: id,
            })
            .into_response());
        }
        return Err(ApiError::not_found(
            ErrorCode::ConnectionNotFound,
            "Connection not found",
        ));
    };
    if conn.channel() != c {
        return Err(ApiError::bad_request(
            ErrorCode::ConnectionNotOnChannel,
            "Connection not on this channel",
        ));
    }
    st.hub().disconnect(&conn).await;
    Ok(axum::Json(DisconnectResponse {
        status: "disconnected".into(),
        connection_id: id,
    })
    .into_response())
}

async fn overview(State(st): State<AppState>) -> ApiResult<Response> {
    let recs = st.buffer().channels().await?;
    let mut channels = BTreeMap::new();
    for r in &recs {
        let b = st.buffer().stats(&r.name).await?;
        channels.insert(
            r.name.clone(),
            OverviewChannel {
                webhook_id: r.owner.clone(),
                connected_clients: live_count(st.hub(), &r.name),
                max_connections: r.settings.max_connections,
                ttl_seconds: r.settings.ttl_seconds,
                messages_queued: b.ready,
                messages_in_flight: b.in_flight,
                dead_letters: b.dead_letters,
                state: r.state,
            },
        );
    }
    let conns = st.hub().connections_count() as u64;
    Ok(axum::Json(Overview {
        timestamp: Timestamp::now(),
        health: OverviewHealth {
            buffer: st.buffer().health().ok,
            channels_count: recs.len() as u64,
            connections_count: conns,
        },
        total_channels: recs.len() as u64,
        total_connections: conns,
        channels,
    })
    .into_response())
}
