//! Channel views, statistics, token rotation and connection disconnects (§8.2, §8.5, §8.6).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use connect_buffer::ChannelRecord;
use connect_protocol::admin::*;
use connect_protocol::error::ErrorCode;
use connect_protocol::ids::{new_channel_token, token_digest};
use connect_protocol::time::Timestamp;

use crate::app::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::stats::{channel_stats, live_count, stats_view};

pub(crate) async fn record(st: &AppState, c: &str) -> ApiResult<ChannelRecord> {
    st.buffer()
        .channel(c)
        .await?
        .ok_or_else(ApiError::channel_not_found)
}

pub(crate) async fn admin_health(State(st): State<AppState>) -> Response {
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

fn info(st: &AppState, r: &ChannelRecord, owner: Option<String>) -> ChannelInfo {
    ChannelInfo {
        owner,
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

pub(crate) async fn list_channels(State(st): State<AppState>) -> ApiResult<Response> {
    let recs = st.buffer().channels().await?;
    let owners: std::collections::HashMap<String, String> = st
        .buffer()
        .hosted_channels()
        .await?
        .into_iter()
        .map(|c| (c.channel, c.account_id))
        .collect();
    Ok(axum::Json(
        recs.iter()
            .map(|r| info(&st, r, owners.get(&r.name).cloned()))
            .collect::<Vec<_>>(),
    )
    .into_response())
}

pub(crate) async fn get_channel(
    State(st): State<AppState>,
    Path(c): Path<String>,
) -> ApiResult<Response> {
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

pub(crate) async fn get_stats(
    State(st): State<AppState>,
    Path(c): Path<String>,
) -> ApiResult<Response> {
    record(&st, &c).await?;
    Ok(axum::Json(channel_stats(st.hub(), &c).await?).into_response())
}

pub(crate) async fn get_webhook_stats(
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

/// Maximum rotation grace period: 30 days.
const MAX_GRACE: i64 = 2_592_000;

pub(crate) async fn rotate_token(
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

pub(crate) async fn disconnect(
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

pub(crate) async fn overview(State(st): State<AppState>) -> ApiResult<Response> {
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
