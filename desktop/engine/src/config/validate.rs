//! Validation: one channel's merged JSON map to a checked [`ChannelConfig`] with its targets,
//! and the `token_ref` lookups.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::sources::{TARGET_KEYS, non_empty};
use super::types::*;
use super::{ConnectorConfigError, err};

fn wrong_type(ctx: &str, key: &str, expected: &'static str, got: String) -> ConnectorConfigError {
    ConnectorConfigError::WrongType {
        ctx: ctx.to_owned(),
        key: key.to_owned(),
        expected,
        got,
    }
}

fn missing(ctx: &str, key: &'static str) -> ConnectorConfigError {
    ConnectorConfigError::Missing {
        ctx: ctx.to_owned(),
        key,
    }
}

fn token_ref(reference: &str, reason: String) -> ConnectorConfigError {
    ConnectorConfigError::TokenRef {
        reference: reference.to_owned(),
        reason,
    }
}
use crate::api::Transport;

pub(super) fn get_str(
    m: &Map<String, Value>,
    k: &str,
    ctx: &str,
) -> Result<Option<String>, ConnectorConfigError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => Err(wrong_type(ctx, k, "a string", v.to_string())),
    }
}

/// etcd module mode: `etcd_host` (several hosts comma-separated), `etcd_port` (2379),
/// `etcd_prefix` (`/cwm/`, a trailing `/` added), `namespace` (`default`).
pub(super) fn etcd_modules(
    m: &Map<String, Value>,
    ctx: &str,
) -> Result<crate::modules::EtcdModules, ConnectorConfigError> {
    let host = get_str(m, "etcd_host", ctx)?.unwrap_or_default();
    let port = match m.get("etcd_port") {
        None | Some(Value::Null) => 2379,
        Some(v) => match v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        {
            Some(p) if (1..=65535).contains(&p) => p,
            _ => return err(format!("{ctx}etcd_port must be a port number, got {v}")),
        },
    };
    let endpoints: Vec<String> = host
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| {
            // `host`, `host:port`, `[v6]:port` or a URL: add the port only when none is given.
            let has_port = h.contains("://")
                || h.rsplit_once(':').is_some_and(|(a, p)| {
                    p.parse::<u16>().is_ok() && (!a.contains(':') || a.ends_with(']'))
                });
            if has_port {
                h.to_owned()
            } else {
                format!("{h}:{port}")
            }
        })
        .collect();
    if endpoints.is_empty() {
        return err(format!("{ctx}etcd_host is empty"));
    }
    let mut prefix = get_str(m, "etcd_prefix", ctx)?.unwrap_or_else(|| "/cwm/".into());
    if !prefix.ends_with('/') {
        prefix.push('/');
    }
    let namespace = get_str(m, "namespace", ctx)?.unwrap_or_else(|| "default".into());
    if namespace.is_empty()
        || namespace.len() > 64
        || !namespace
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return err(format!(
            "{ctx}namespace must match ^[A-Za-z0-9_-]{{1,64}}$, got {namespace:?}"
        ));
    }
    Ok(crate::modules::EtcdModules {
        endpoints,
        prefix,
        namespace,
    })
}

pub(super) fn get_f64(
    m: &Map<String, Value>,
    k: &str,
    default: f64,
    ctx: &str,
) -> Result<f64, ConnectorConfigError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_f64() {
            Some(n) if n.is_finite() => Ok(n),
            _ => Err(wrong_type(ctx, k, "a number", v.to_string())),
        },
    }
}

pub(super) fn get_bool(
    m: &Map<String, Value>,
    k: &str,
    default: bool,
    ctx: &str,
) -> Result<bool, ConnectorConfigError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => connect_config::bool_from_text(s)
            .ok_or_else(|| wrong_type(ctx, k, "a boolean", format!("{s:?}"))),
        Some(v) => Err(wrong_type(ctx, k, "a boolean", v.to_string())),
    }
}

pub(super) fn secs(v: f64, name: &str, ctx: &str) -> Result<Duration, ConnectorConfigError> {
    if v <= 0.0 || !v.is_finite() || v > 1e9 {
        return err(format!("{ctx}{name} must be > 0 seconds, got {v}"));
    }
    Ok(Duration::from_secs_f64(v))
}

pub(super) fn channel_from(
    m: &Map<String, Value>,
    index: usize,
    env: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<ChannelConfig, ConnectorConfigError> {
    let ctx_owned = format!("channels[{index}].");
    let ctx = if m.contains_key("enabled") || index > 0 {
        ctx_owned.as_str()
    } else {
        ""
    };
    let channel = get_str(m, "channel", ctx)?.ok_or_else(|| missing(ctx, "channel"))?;
    if !connect_protocol::ids::is_valid_channel_name(&channel) {
        return err(format!(
            "{ctx}channel {channel:?} is invalid: use letters, digits, '.', '_' and '-', starting with a letter or digit, no '..'"
        ));
    }
    let cloud_url = get_str(m, "cloud_url", ctx)?.ok_or_else(|| missing(ctx, "cloud_url"))?;
    let cloud_url = cloud_url.trim_end_matches('/').to_owned();
    match reqwest::Url::parse(&cloud_url) {
        Ok(u) if (u.scheme() == "http" || u.scheme() == "https") && u.host().is_some() => {}
        _ => {
            return err(format!(
                "{ctx}cloud_url {cloud_url:?} must be http(s)://host[:port][/base]"
            ));
        }
    }
    let token_ref = get_str(m, "token_ref", ctx)?;
    let token = match (get_str(m, "token", ctx)?, &token_ref) {
        (Some(t), _) => t,
        (None, Some(r)) => resolve_token_ref(r, env, &cloud_url, &channel)?,
        (None, None) => return Err(missing(ctx, "token (or token_ref)")),
    };
    let protocol = match get_str(m, "protocol", ctx)? {
        None => TransportChoice::Only(Transport::Websocket),
        Some(p) => TransportChoice::parse(&p).map_err(|e| match e {
            ConnectorConfigError::Protocol { value, .. } => ConnectorConfigError::Protocol {
                ctx: ctx.to_owned(),
                value,
            },
            other => other,
        })?,
    };
    let initial = get_f64(m, "reconnect_delay", 1.0, ctx)?;
    let max = get_f64(m, "max_reconnect_delay", 60.0, ctx)?;
    let multiplier = get_f64(m, "reconnect_backoff_multiplier", 2.0, ctx)?;
    if max < initial {
        return err(format!(
            "{ctx}max_reconnect_delay ({max}) must be ≥ reconnect_delay ({initial})"
        ));
    }
    if multiplier < 1.0 {
        return err(format!(
            "{ctx}reconnect_backoff_multiplier must be ≥ 1, got {multiplier}"
        ));
    }
    let backoff = Backoff {
        initial: secs(initial, "reconnect_delay", ctx)?,
        max: secs(max, "max_reconnect_delay", ctx)?,
        multiplier,
    };
    let heartbeat_timeout = secs(
        get_f64(m, "heartbeat_timeout", 60.0, ctx)?,
        "heartbeat_timeout",
        ctx,
    )?;
    let connection_timeout = secs(
        get_f64(m, "connection_timeout", 30.0, ctx)?,
        "connection_timeout",
        ctx,
    )?;
    // Accepted for compatibility, unused (§7.2); still validated.
    secs(get_f64(m, "ack_timeout", 30.0, ctx)?, "ack_timeout", ctx)?;
    let max_concurrent_requests = match m.get("max_concurrent_requests") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(n as usize),
            _ => {
                return err(format!(
                    "{ctx}max_concurrent_requests must be an integer ≥ 1"
                ));
            }
        },
    };

    let default_target = match m.get("default_target") {
        None | Some(Value::Null) => None,
        Some(v) => Some(target_from(v, &format!("{ctx}default_target."), warnings)?),
    };
    let mut targets = BTreeMap::new();
    match m.get("targets") {
        None | Some(Value::Null) => {}
        Some(Value::Object(t)) => {
            for (id, v) in t {
                targets.insert(
                    id.clone(),
                    target_from(v, &format!("{ctx}targets.{id}."), warnings)?,
                );
            }
        }
        Some(_) => return err(format!("{ctx}targets must be an object")),
    }
    let http_mode = default_target.is_some() || !targets.is_empty();
    let module_mode = get_str(m, "webhooks_config", ctx)?.is_some();
    let etcd_mode = get_str(m, "etcd_host", ctx)?.is_some();
    let modes = [http_mode, module_mode, etcd_mode]
        .iter()
        .filter(|b| **b)
        .count();
    if modes == 0 {
        return err(format!(
            "{ctx}no delivery mode for channel {channel:?}: set default_target (--target-url) or targets"
        ));
    }
    if modes > 1 {
        return err(format!(
            "{ctx}channel {channel:?} has several delivery modes: use exactly one of targets/default_target, webhooks_config, etcd_host"
        ));
    }
    let module = match get_str(m, "webhooks_config", ctx)? {
        Some(w) => Some(crate::modules::ModuleMode::File {
            webhooks_config: PathBuf::from(w),
            connections_config: get_str(m, "connections_config", ctx)?.map(PathBuf::from),
        }),
        None if etcd_mode => Some(crate::modules::ModuleMode::Etcd(etcd_modules(m, ctx)?)),
        None => None,
    };
    let path = |k: &str| -> Result<Option<PathBuf>, ConnectorConfigError> {
        Ok(get_str(m, k, ctx)?.map(PathBuf::from))
    };
    Ok(ChannelConfig {
        key: channel.clone(),
        enabled: true,
        module,
        channel,
        cloud_url,
        token,
        token_ref,
        protocol,
        connector_id: get_str(m, "connector_id", ctx)?,
        backoff,
        heartbeat_timeout,
        connection_timeout,
        verify_ssl: get_bool(m, "verify_ssl", true, ctx)?,
        ca_cert_path: path("ca_cert_path")?,
        client_cert_path: path("client_cert_path")?,
        client_key_path: path("client_key_path")?,
        max_concurrent_requests,
        default_target,
        targets,
    })
}

/// Reads a token from `env:VAR`, `file:PATH`, `keyring` (account `channel:<origin>/<channel>`)
/// or `keyring:<account>` (service `webhook-connect`, CONFIG.md §8.2).
pub fn resolve_token_ref(
    r: &str,
    env: &BTreeMap<String, String>,
    cloud_url: &str,
    channel: &str,
) -> Result<String, ConnectorConfigError> {
    if let Some(var) = r.strip_prefix("env:") {
        return non_empty(env, var)
            .map(str::to_owned)
            .ok_or_else(|| token_ref(r, format!("{var} is not set")));
    }
    if let Some(path) = r.strip_prefix("file:") {
        let t = std::fs::read_to_string(path).map_err(|e| token_ref(r, e.to_string()))?;
        let t = t.trim().to_owned();
        if t.is_empty() {
            return Err(token_ref(r, "file is empty".into()));
        }
        return Ok(t);
    }
    if r == "keyring" || r.starts_with("keyring:") {
        let account = match r.strip_prefix("keyring:") {
            Some(a) if !a.is_empty() => a.to_owned(),
            _ => crate::keyring::channel_account(cloud_url, channel)
                .map_err(|e| token_ref(r, e.to_string()))?,
        };
        return crate::keyring::read(&account).map_err(|e| ConnectorConfigError::Keyring {
            reference: r.to_owned(),
            account,
            reason: e.to_string(),
        });
    }
    Err(ConnectorConfigError::TokenRefForm(r.to_owned()))
}

#[derive(Deserialize)]
pub(super) struct RawRewrite {
    pattern: String,
    replacement: String,
}

pub(super) fn target_from(
    v: &Value,
    ctx: &str,
    warnings: &mut Vec<String>,
) -> Result<Target, ConnectorConfigError> {
    let Value::Object(m) = v else {
        return err(format!("{ctx} must be an object with a url"));
    };
    for k in m.keys() {
        if !TARGET_KEYS.contains(&k.as_str()) {
            warnings.push(format!("unknown target key {ctx}{k} ignored"));
        }
    }
    let url = get_str(m, "url", ctx)?.ok_or_else(|| missing(ctx, "url"))?;
    match reqwest::Url::parse(&url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
        _ => return err(format!("{ctx}url {url:?} must be an http(s) URL")),
    }
    let method = match get_str(m, "method", ctx)? {
        None => None,
        Some(s) => {
            let up = s.to_ascii_uppercase();
            if http::Method::from_bytes(up.as_bytes()).is_err() {
                return err(format!("{ctx}method {s:?} is not an HTTP method"));
            }
            Some(up)
        }
    };
    let mut headers = Vec::new();
    match m.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                let Some(s) = v.as_str() else {
                    return err(format!("{ctx}headers.{k} must be a string"));
                };
                if http::HeaderName::from_bytes(k.as_bytes()).is_err()
                    || http::HeaderValue::from_str(s).is_err()
                {
                    return err(format!("{ctx}headers.{k} is not a valid header"));
                }
                headers.push((k.clone(), s.to_owned()));
            }
        }
        Some(_) => return err(format!("{ctx}headers must be an object")),
    }
    let retry_max_attempts = match m.get("retry_max_attempts") {
        None | Some(Value::Null) => 3,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=1000).contains(&n) => n as u32,
            _ => return err(format!("{ctx}retry_max_attempts must be an integer ≥ 1")),
        },
    };
    let retry_delay = get_f64(m, "retry_delay_seconds", 1.0, ctx)?;
    if !(0.0..=3600.0).contains(&retry_delay) {
        return err(format!("{ctx}retry_delay_seconds must be ≥ 0"));
    }
    let retry_backoff_multiplier = get_f64(m, "retry_backoff_multiplier", 2.0, ctx)?;
    if retry_backoff_multiplier < 1.0 {
        return err(format!("{ctx}retry_backoff_multiplier must be ≥ 1"));
    }
    let path_rewrite = match m.get("path_rewrite") {
        None | Some(Value::Null) => None,
        Some(v) => {
            let r: RawRewrite = serde_json::from_value(v.clone()).map_err(|e| {
                ConnectorConfigError::Invalid(format!(
                    "{ctx}path_rewrite needs pattern and replacement: {e}"
                ))
            })?;
            let pattern = regex::Regex::new(&r.pattern).map_err(|e| {
                ConnectorConfigError::Invalid(format!("{ctx}path_rewrite.pattern: {e}"))
            })?;
            Some(PathRewrite {
                pattern,
                replacement: r.replacement,
            })
        }
    };
    let ordered = get_bool(m, "ordered", false, ctx)?;
    let max_concurrent_requests = match m.get("max_concurrent_requests") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Some(n as usize),
            _ => {
                return err(format!(
                    "{ctx}max_concurrent_requests must be an integer ≥ 1"
                ));
            }
        },
    };
    Ok(Target {
        url,
        method,
        headers,
        timeout: secs(
            get_f64(m, "timeout_seconds", 30.0, ctx)?,
            "timeout_seconds",
            ctx,
        )?,
        retry_enabled: get_bool(m, "retry_enabled", true, ctx)?,
        retry_max_attempts,
        retry_delay: Duration::from_secs_f64(retry_delay),
        retry_backoff_multiplier,
        append_path: get_bool(m, "append_path", false, ctx)?,
        path_rewrite,
        append_query: get_bool(m, "append_query", false, ctx)?,
        ordered,
        max_concurrent_requests: if ordered {
            Some(1)
        } else {
            max_concurrent_requests
        },
        verify_tls: get_bool(m, "verify_tls", true, ctx)?,
        x_original_headers: get_bool(m, "x_original_headers", false, ctx)?,
    })
}
