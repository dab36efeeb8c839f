//! `POST /admin/reload-config` and `GET /admin/config-status` (CONFIG.md §6.3–6.4), behind
//! `CONFIG_RELOAD_ADMIN_TOKEN`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use connect_protocol::time::Timestamp;
use serde_json::{Value, json};

use crate::app::AppState;
use crate::config_source::error::ApplyError;
use crate::config_source::raw::ReloadDetails;
use crate::http::auth::{ReloadAuthError, reload_token, same_secret};
use crate::settings::ConfigBackend;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/reload-config", post(reload_config))
        .route("/admin/config-status", get(config_status))
}

fn detail(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({"detail": text}))).into_response()
}

/// §6.3 auth: token unset → 403; missing → 401; CR/LF/NUL → 401; wrong → 401 (constant time).
fn authorize(st: &AppState, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
    let Some(expected) = st.settings().config_reload_admin_token.as_deref() else {
        return Err((
            StatusCode::FORBIDDEN,
            "Configuration reload API disabled. Set CONFIG_RELOAD_ADMIN_TOKEN environment variable.",
        ));
    };
    let unauthorized = |text| Err((StatusCode::UNAUTHORIZED, text));
    let token = match reload_token(headers) {
        Ok(t) => t,
        Err(ReloadAuthError::Missing) => return unauthorized("Authentication required"),
        Err(ReloadAuthError::Malformed) => return unauthorized("Invalid authentication header"),
    };
    if !same_secret(&token, expected) {
        return unauthorized("Invalid authentication token");
    }
    Ok(())
}

/// A boolean flag of the reload body; `Err(name)` when it is present and not a boolean.
fn flag<'a>(body: &Value, name: &'a str, default: bool) -> Result<bool, &'a str> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(name),
    }
}

fn details_json(d: &ReloadDetails) -> Value {
    serde_json::to_value(d).unwrap_or(Value::Null)
}

async fn reload_config(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err((status, text)) = authorize(&st, &headers) {
        return detail(status, text);
    }
    // An absent or invalid body means the defaults.
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let body = if body.is_object() { body } else { json!({}) };
    let flags = (|| {
        Ok::<_, &str>((
            flag(&body, "reload_webhooks", true)?,
            flag(&body, "reload_connections", true)?,
            flag(&body, "validate_only", false)?,
        ))
    })();
    let (webhooks, connections, validate_only) = match flags {
        Ok(f) => f,
        Err(name) => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                axum::Json(json!({"detail": [{"loc": ["body", name], "msg": "Input should be a valid boolean", "type": "bool_parsing"}]})),
            )
                .into_response();
        }
    };
    let now = || Timestamp::now().to_rfc3339();
    if !webhooks && !connections {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"status": "error", "error": "No reload operation specified"})),
        )
            .into_response();
    }
    if !st.sources().begin_reload() {
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({"status": "error", "error": "Reload already in progress"})),
        )
            .into_response();
    }
    let result = st
        .sources()
        .reload(webhooks, connections, validate_only)
        .await;
    st.sources().end_reload();
    if !validate_only {
        st.metrics().config_reload(
            "admin",
            match &result {
                Ok(d) if d.errors.is_empty() => "success",
                Ok(_) => "partial",
                Err(_) => "error",
            },
        );
    }
    match result {
        Ok(d) if validate_only => axum::Json(json!({
            "status": if d.errors.is_empty() { "valid" } else { "invalid" },
            "details": details_json(&d),
            "timestamp": now(),
        }))
        .into_response(),
        Ok(d) => {
            tracing::info!(
                added = d.webhooks_added,
                removed = d.webhooks_removed,
                modified = d.webhooks_modified,
                errors = d.errors.len(),
                "configuration reloaded through the admin API"
            );
            axum::Json(json!({
                "status": if d.errors.is_empty() { "success" } else { "partial" },
                "reloaded": {"webhooks": webhooks, "connections": connections},
                "details": details_json(&d),
                "timestamp": now(),
            }))
            .into_response()
        }
        Err(ApplyError::Source(e)) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"status": "error", "error": e.to_string(), "details": null, "timestamp": now()})),
        )
            .into_response(),
        Err(ApplyError::Buffer(e)) => {
            tracing::error!(error = %e, "reload could not register channels");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "error", "error": "Buffer unavailable", "details": null, "timestamp": now()})),
            )
                .into_response()
        }
    }
}

async fn config_status(State(st): State<AppState>, headers: HeaderMap) -> Response {
    if let Err((status, text)) = authorize(&st, &headers) {
        return detail(status, text);
    }
    let m = &st.sources();
    let cfg = st.config();
    let (count, disabled, mut errors, mut warnings) = match &cfg {
        Some(c) => (
            c.webhooks.len(),
            c.webhooks.errors().len(),
            c.webhooks
                .errors()
                .iter()
                .chain(c.stale.iter())
                .map(|e| json!({"webhook": e.webhook, "error": e.error}))
                .collect::<Vec<_>>(),
            c.webhooks.warnings().to_vec(),
        ),
        None => (0, 0, Vec::new(), Vec::new()),
    };
    warnings.extend(m.source_warnings());
    if let Some(f) = m.last_failure() {
        errors.push(json!({"webhook": null, "error": f}));
    }
    let provider = match m.etcd_link() {
        Some(l) => {
            if let (false, Some(e)) = (l.connected, &l.last_error) {
                errors.push(json!({"webhook": null, "error": format!("etcd: {e}")}));
            }
            json!({"type": "etcd", "connected": l.connected, "revision": l.revision})
        }
        None => json!({"type": "file", "connected": true, "revision": null}),
    };
    let vault = match m.vault_status() {
        None => json!({"status": "not_configured", "last_refresh": null, "failing_refs": []}),
        Some(v) => json!({
            "status": if v.degraded { "degraded" } else { "healthy" },
            "last_refresh": v.last_refresh.map(|t| t.to_rfc3339()),
            "failing_refs": v.failing_refs,
        }),
    };
    axum::Json(json!({
        "last_reload": m.last_reload().map(|t| t.to_rfc3339()),
        "reload_in_progress": m.reload_in_progress(),
        "webhooks_count": count,
        "connections_count": m.connections_count(),
        "connection_pools": {"active": 0, "deprecated": 0},
        "pool_details": {},
        "provider": provider,
        "file_watching_enabled": m.file_watching() && m.backend() == ConfigBackend::File,
        "webhooks_disabled": disabled,
        "errors": errors,
        "warnings": warnings,
        "vault": vault,
    }))
    .into_response()
}
