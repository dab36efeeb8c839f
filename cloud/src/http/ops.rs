//! Process-level endpoints (§9): `/`, `/health`, `/health/live`, `/metrics`, `/openapi.json`.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use connect_protocol::admin::{Health, HealthComponents};
use connect_protocol::time::Timestamp;

use crate::app::AppState;
use crate::http::auth::{bearer_token, same_secret};
use crate::http::error::ApiError;

pub async fn root() -> Response {
    axum::Json(serde_json::json!({"message": "200 OK"})).into_response()
}

pub async fn live() -> Response {
    axum::Json(serde_json::json!({"status": "alive"})).into_response()
}

pub async fn health(State(st): State<AppState>) -> Response {
    let buffer = st.buffer().health();
    let cfg = st.config();
    let (active, disabled, stale) = cfg
        .as_ref()
        .map(|c| {
            (
                c.webhooks.webhooks().count() as u64,
                c.webhooks.errors().len() as u64,
                c.stale.len() as u64,
            )
        })
        .unwrap_or((0, 0, 0));
    let buffer_ok = buffer.ok || !st.settings().enabled;
    let etcd = match st.sources().etcd_link() {
        None => "not_configured",
        Some(l) if l.connected => "healthy",
        Some(_) => "disconnected",
    };
    let vault = match st.sources().vault_status() {
        None => "not_configured",
        Some(v) if v.degraded => "degraded",
        Some(_) => "healthy",
    };
    let status = if cfg.is_none() || !buffer_ok {
        "unhealthy"
    } else if disabled + stale > 0 || etcd == "disconnected" || vault == "degraded" {
        "degraded"
    } else {
        "healthy"
    };
    let body = Health {
        status: status.into(),
        service: "webhook-connect".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        timestamp: Timestamp::now().unix_seconds_f64(),
        components: HealthComponents {
            config_manager: match (cfg.is_some(), disabled + stale) {
                (false, _) => "unhealthy",
                (true, 0) => "healthy",
                _ => "degraded",
            }
            .into(),
            config_backend: match st.settings().config_backend {
                crate::settings::ConfigBackend::File => "file",
                crate::settings::ConfigBackend::Etcd => "etcd",
            }
            .into(),
            etcd: etcd.into(),
            buffer: match (buffer.ok, buffer.readable) {
                (true, _) => "healthy",
                // Writes fail (a full disk); stored messages still drain.
                (false, true) => "read_only",
                (false, false) => "unhealthy",
            }
            .into(),
            buffer_backend: st.buffer().backend_name().into(),
            webhook_connect: if st.settings().enabled {
                "healthy"
            } else {
                "not_configured"
            }
            .into(),
            vault: vault.into(),
        },
        webhooks_active: active,
        webhooks_disabled: disabled,
        config_errors: disabled + stale,
    };
    let code = if status == "unhealthy" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    if let Some(reason) = &buffer.reason
        && !buffer.ok
    {
        tracing::warn!(reason = %reason, "health: buffer unusable");
    }
    (code, axum::Json(body)).into_response()
}

pub async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = &st.settings().metrics_token {
        // As digests, like every other secret: a plain comparison returns early on a length
        // mismatch and so leaks the token's length through timing.
        let ok = bearer_token(&headers).is_some_and(|t| same_secret(&t, expected));
        if !ok {
            return ApiError::unauthorized("Invalid metrics token").into_response();
        }
    }
    let mut gauges = Vec::new();
    let mut counters = Vec::new();
    for name in st.hub().channel_names() {
        if let Ok(s) = st.buffer().stats(&name).await {
            for (state, v) in [
                ("ready", s.ready),
                ("in_flight", s.in_flight),
                ("delayed", s.delayed),
                ("dead_lettered", s.dead_letters),
            ] {
                gauges.push((
                    "webhook_connect_channel_messages",
                    vec![("channel", name.clone()), ("state", state.to_owned())],
                    v as f64,
                ));
            }
            // Persisted per-channel counters: exact across restarts and replicas, and they
            // include dead letters made by sweeps and at lease time, not only by NACKs.
            for (reason, v) in [
                ("expired", s.counters.expired),
                ("rejected", s.counters.rejected),
                ("max_delivery_attempts", s.counters.exhausted),
            ] {
                counters.push((
                    "webhook_connect_dead_letters_total",
                    vec![("channel", name.clone()), ("reason", reason.to_owned())],
                    v as f64,
                ));
            }
            counters.push((
                "webhook_connect_dead_letters_dropped_total",
                vec![("channel", name.clone())],
                s.counters.dead_letters_dropped as f64,
            ));
            let age = s
                .oldest_unsettled_at
                .map(|t| (Timestamp::now().micros() - t.micros()).max(0) as f64 / 1e6)
                .unwrap_or(0.0);
            gauges.push((
                "webhook_connect_channel_oldest_message_age_seconds",
                vec![("channel", name.clone())],
                age,
            ));
        }
    }
    if let Some(log) = st.buffer().log_stats() {
        for (what, v) in [
            ("segments", log.segments),
            ("bytes", log.bytes),
            ("live_bytes", log.live_bytes),
        ] {
            gauges.push((
                "webhook_connect_store_log",
                vec![("measure", what.to_owned())],
                v as f64,
            ));
        }
        counters.push((
            "webhook_connect_store_log_segments_recycled_total",
            Vec::new(),
            log.recycled_segments as f64,
        ));
    }
    if let Some(cfg) = st.config() {
        gauges.push((
            "webhook_connect_config_webhooks",
            vec![("state", "active".to_owned())],
            cfg.webhooks.webhooks().count() as f64,
        ));
        gauges.push((
            "webhook_connect_config_webhooks",
            vec![("state", "disabled".to_owned())],
            cfg.webhooks.errors().len() as f64,
        ));
    }
    // Self-service (HOSTED.md §3): accounts, and channels by where they come from.
    if let Ok(n) = st.buffer().account_count().await {
        gauges.push(("webhook_connect_accounts", Vec::new(), n as f64));
    }
    let configured = st.config().map_or(0, |c| c.webhooks.channel_count());
    gauges.push((
        "webhook_connect_channels",
        vec![("source", "config".to_owned())],
        configured as f64,
    ));
    if let Ok(n) = st.buffer().hosted_channel_count().await {
        gauges.push((
            "webhook_connect_channels",
            vec![("source", "self_service".to_owned())],
            n as f64,
        ));
    }
    let text = st.metrics().render(&gauges, &counters);
    let mut res = text.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}

pub async fn openapi(State(st): State<AppState>) -> Response {
    if st.settings().disable_openapi_docs {
        return ApiError::not_found(connect_protocol::error::ErrorCode::NotFound, "Not Found")
            .into_response();
    }
    let mut res = include_str!("../../openapi.json").into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}
