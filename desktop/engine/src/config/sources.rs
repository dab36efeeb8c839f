//! The layers of the configuration: the file, the `CONNECTOR_*` environment and the flags,
//! each read into a JSON map to overlay.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use super::ConnectorConfigError;
use super::types::Overrides;

pub(super) const TOP_KEYS: &[&str] = &[
    "cloud_url",
    "channel",
    "token",
    "protocol",
    "reconnect_delay",
    "max_reconnect_delay",
    "reconnect_backoff_multiplier",
    "heartbeat_timeout",
    "connection_timeout",
    "max_concurrent_requests",
    "ack_timeout",
    "log_level",
    "log_format",
    "verify_ssl",
    "ca_cert_path",
    "client_cert_path",
    "client_key_path",
    "connector_id",
    "webhooks_config",
    "connections_config",
    "etcd_host",
    "etcd_port",
    "etcd_prefix",
    "namespace",
    "default_target",
    "targets",
    "token_ref",
    "channels",
    "history_size",
];

pub(super) const CHANNEL_ONLY_KEYS: &[&str] = &["enabled"];

pub(super) const TARGET_KEYS: &[&str] = &[
    "url",
    "method",
    "headers",
    "timeout_seconds",
    "retry_enabled",
    "retry_max_attempts",
    "retry_delay_seconds",
    "retry_backoff_multiplier",
    "append_path",
    "path_rewrite",
    "append_query",
    "ordered",
    "max_concurrent_requests",
    "verify_tls",
    "x_original_headers",
];

/// Env variable → (key, kind).
pub(super) const ENV_KEYS: &[(&str, &str, Kind)] = &[
    ("CONNECTOR_CLOUD_URL", "cloud_url", Kind::Str),
    ("CONNECTOR_CHANNEL", "channel", Kind::Str),
    ("CONNECTOR_TOKEN", "token", Kind::Str),
    ("CONNECTOR_TOKEN_REF", "token_ref", Kind::Str),
    ("CONNECTOR_PROTOCOL", "protocol", Kind::Str),
    ("CONNECTOR_RECONNECT_DELAY", "reconnect_delay", Kind::Num),
    (
        "CONNECTOR_MAX_RECONNECT_DELAY",
        "max_reconnect_delay",
        Kind::Num,
    ),
    (
        "CONNECTOR_RECONNECT_BACKOFF_MULTIPLIER",
        "reconnect_backoff_multiplier",
        Kind::Num,
    ),
    (
        "CONNECTOR_HEARTBEAT_TIMEOUT",
        "heartbeat_timeout",
        Kind::Num,
    ),
    (
        "CONNECTOR_CONNECTION_TIMEOUT",
        "connection_timeout",
        Kind::Num,
    ),
    (
        "CONNECTOR_MAX_CONCURRENT_REQUESTS",
        "max_concurrent_requests",
        Kind::Int,
    ),
    ("CONNECTOR_ACK_TIMEOUT", "ack_timeout", Kind::Num),
    ("CONNECTOR_LOG_LEVEL", "log_level", Kind::Str),
    ("CONNECTOR_LOG_FORMAT", "log_format", Kind::Str),
    ("CONNECTOR_VERIFY_SSL", "verify_ssl", Kind::Bool),
    ("CONNECTOR_CA_CERT_PATH", "ca_cert_path", Kind::Str),
    ("CONNECTOR_CLIENT_CERT_PATH", "client_cert_path", Kind::Str),
    ("CONNECTOR_CLIENT_KEY_PATH", "client_key_path", Kind::Str),
    ("CONNECTOR_ID", "connector_id", Kind::Str),
    ("CONNECTOR_WEBHOOKS_CONFIG", "webhooks_config", Kind::Str),
    (
        "CONNECTOR_CONNECTIONS_CONFIG",
        "connections_config",
        Kind::Str,
    ),
    ("CONNECTOR_ETCD_HOST", "etcd_host", Kind::Str),
    ("CONNECTOR_ETCD_PORT", "etcd_port", Kind::Int),
    ("CONNECTOR_ETCD_PREFIX", "etcd_prefix", Kind::Str),
    ("CONNECTOR_NAMESPACE", "namespace", Kind::Str),
];

#[derive(Clone, Copy)]
pub(super) enum Kind {
    Str,
    Num,
    Int,
    Bool,
}

pub(super) fn env_value(name: &str, raw: &str, kind: Kind) -> Result<Value, ConnectorConfigError> {
    let bad = || ConnectorConfigError::EnvValue {
        name: name.to_owned(),
        raw: raw.to_owned(),
    };
    Ok(match kind {
        Kind::Str => Value::String(raw.to_owned()),
        Kind::Num => json!(raw.trim().parse::<f64>().map_err(|_| bad())?),
        Kind::Int => json!(raw.trim().parse::<u64>().map_err(|_| bad())?),
        Kind::Bool => Value::Bool(connect_config::bool_from_text(raw).ok_or_else(bad)?),
    })
}

/// The env var named by the config file setting, if any (`CONNECTOR_CONFIG_FILE`).
pub const CONFIG_FILE_ENV: &str = "CONNECTOR_CONFIG_FILE";

pub(super) fn non_empty<'a>(env: &'a BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    env.get(k).map(String::as_str).filter(|v| !v.is_empty())
}

pub(super) fn read_file(path: &Path) -> Result<Map<String, Value>, ConnectorConfigError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let text =
        std::fs::read_to_string(path).map_err(|source| ConnectorConfigError::Unreadable {
            path: path.to_owned(),
            source,
        })?;
    let syntax = |detail: String| {
        Err(ConnectorConfigError::Syntax {
            path: path.to_owned(),
            detail,
        })
    };
    if ext == "yaml" || ext == "yml" {
        return match serde_norway::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => syntax("top level must be a YAML mapping".into()),
            Err(e) => syntax(format!("invalid YAML: {e}")),
        };
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => syntax("top level must be a JSON object".into()),
        Err(e) => syntax(format!("invalid JSON: {e}")),
    }
}

pub(super) fn apply_flags(top: &mut Map<String, Value>, f: &Overrides) {
    let mut set = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            top.insert(k.to_owned(), v);
        }
    };
    set("cloud_url", f.cloud_url.clone().map(Value::from));
    set("channel", f.channel.clone().map(Value::from));
    set("token", f.token.clone().map(Value::from));
    set("token_ref", f.token_ref.clone().map(Value::from));
    set("protocol", f.protocol.clone().map(Value::from));
    set("reconnect_delay", f.reconnect_delay.map(|v| json!(v)));
    set(
        "max_reconnect_delay",
        f.max_reconnect_delay.map(|v| json!(v)),
    );
    set(
        "reconnect_backoff_multiplier",
        f.reconnect_backoff_multiplier.map(|v| json!(v)),
    );
    set("heartbeat_timeout", f.heartbeat_timeout.map(|v| json!(v)));
    set("connection_timeout", f.connection_timeout.map(|v| json!(v)));
    set(
        "max_concurrent_requests",
        f.max_concurrent_requests.map(|v| json!(v)),
    );
    set("ack_timeout", f.ack_timeout.map(|v| json!(v)));
    set("log_level", f.log_level.clone().map(Value::from));
    set("log_format", f.log_format.clone().map(Value::from));
    set("verify_ssl", f.verify_ssl.map(Value::from));
    set("ca_cert_path", f.ca_cert_path.clone().map(Value::from));
    set(
        "client_cert_path",
        f.client_cert_path.clone().map(Value::from),
    );
    set(
        "client_key_path",
        f.client_key_path.clone().map(Value::from),
    );
    set("connector_id", f.connector_id.clone().map(Value::from));
    set(
        "webhooks_config",
        f.webhooks_config.clone().map(Value::from),
    );
    set(
        "connections_config",
        f.connections_config.clone().map(Value::from),
    );
    set("etcd_host", f.etcd_host.clone().map(Value::from));
    set("etcd_port", f.etcd_port.map(|v| json!(v)));
    set("etcd_prefix", f.etcd_prefix.clone().map(Value::from));
    set("namespace", f.namespace.clone().map(Value::from));
    set(
        "default_target",
        f.target_url.clone().map(|u| json!({"url": u})),
    );
}
