//! Connector configuration (CONFIG.md §7): file + `CONNECTOR_*` env + flags.
//!
//! Precedence is implemented by overlaying JSON maps: the file's top level, then the env
//! values, then the flags that were given. With a `channels` array, each entry is overlaid on
//! that merged top level, so env and flags act as defaults for every channel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value, json};

/// A configuration that cannot be used (exit code 64 in the CLI).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Transport selection (`protocol`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    WebSocket,
    Sse,
    LongPoll,
    Auto,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Sse => "sse",
            Self::LongPoll => "long_poll",
            Self::Auto => "auto",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "websocket" | "ws" => Ok(Self::WebSocket),
            "sse" => Ok(Self::Sse),
            "long_poll" | "long-poll" | "longpoll" | "poll" => Ok(Self::LongPoll),
            "auto" => Ok(Self::Auto),
            other => err(format!(
                "invalid protocol {other:?}: expected websocket, sse, long_poll or auto"
            )),
        }
    }
}

/// `log_format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// `path_rewrite` of a target.
#[derive(Clone, Debug)]
pub struct PathRewrite {
    pub pattern: regex::Regex,
    pub replacement: String,
}

/// A local HTTP target (§7.3).
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub method: Option<String>,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub retry_enabled: bool,
    pub retry_max_attempts: u32,
    pub retry_delay: Duration,
    pub retry_backoff_multiplier: f64,
    pub append_path: bool,
    pub path_rewrite: Option<PathRewrite>,
    pub append_query: bool,
    pub ordered: bool,
    pub max_concurrent_requests: Option<usize>,
    pub verify_tls: bool,
    pub x_original_headers: bool,
}

impl Target {
    /// A target with the defaults of §7.3.
    pub fn from_url(url: &str) -> Result<Target, ConfigError> {
        target_from(&json!({ "url": url }), "target.", &mut Vec::new())
    }

    /// Attempts per delivery: one when retries are off.
    pub fn attempts(&self) -> u32 {
        if self.retry_enabled {
            self.retry_max_attempts.max(1)
        } else {
            1
        }
    }
}

/// Reconnect backoff settings.
#[derive(Clone, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
}

/// Everything one channel needs: connection and delivery settings.
#[derive(Clone, Debug)]
pub struct ChannelConfig {
    /// Engine-unique key: the channel name unless the app sets its own.
    pub key: String,
    /// False: known but disconnected (the app's "disconnect").
    pub enabled: bool,
    pub channel: String,
    pub cloud_url: String,
    pub token: String,
    pub token_ref: Option<String>,
    pub protocol: Protocol,
    pub connector_id: Option<String>,
    pub backoff: Backoff,
    pub heartbeat_timeout: Duration,
    pub connection_timeout: Duration,
    pub verify_ssl: bool,
    pub ca_cert_path: Option<PathBuf>,
    pub client_cert_path: Option<PathBuf>,
    pub client_key_path: Option<PathBuf>,
    pub max_concurrent_requests: Option<usize>,
    pub default_target: Option<Target>,
    pub targets: BTreeMap<String, Target>,
    /// Module mode (`webhooks_config`) instead of HTTP targets.
    pub module: Option<crate::modules::ModuleMode>,
}

impl ChannelConfig {
    /// A channel with the defaults of §7.2 and plain URL targets (the desktop app's form).
    pub fn basic(
        key: &str,
        cloud_url: &str,
        channel: &str,
        token: &str,
        protocol: Protocol,
        default_target: Option<&str>,
        targets: &BTreeMap<String, String>,
    ) -> Result<ChannelConfig, ConfigError> {
        let mut m = Map::new();
        m.insert("cloud_url".into(), json!(cloud_url));
        m.insert("channel".into(), json!(channel));
        m.insert("token".into(), json!(token));
        m.insert("protocol".into(), json!(protocol.as_str()));
        if let Some(t) = default_target.filter(|t| !t.trim().is_empty()) {
            m.insert("default_target".into(), json!({ "url": t.trim() }));
        }
        let t: Map<String, Value> = targets
            .iter()
            .map(|(id, url)| (id.clone(), json!({ "url": url.trim() })))
            .collect();
        m.insert("targets".into(), Value::Object(t));
        let mut warnings = Vec::new();
        let mut c = channel_from(&m, 0, &BTreeMap::new(), &mut warnings)?;
        c.key = key.to_owned();
        Ok(c)
    }
}

impl ConnectorConfig {
    /// Channels with the default global settings.
    pub fn new(channels: Vec<ChannelConfig>) -> Self {
        Self {
            channels,
            max_concurrent_requests: 10,
            log_level: "INFO".into(),
            log_format: LogFormat::Text,
            warnings: Vec::new(),
            env: BTreeMap::new(),
            history_size: crate::history::DEFAULT_HISTORY,
        }
    }
}

/// The validated connector configuration.
#[derive(Clone, Debug)]
pub struct ConnectorConfig {
    pub channels: Vec<ChannelConfig>,
    pub max_concurrent_requests: usize,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Non-fatal findings (unknown keys, replaced values) to log at start-up.
    pub warnings: Vec<String>,
    /// Injected environment, kept to re-read `token_ref = env:…` after a 4005.
    pub env: BTreeMap<String, String>,
    /// Events kept per channel for inspection and replay (`history_size`, default 1000).
    pub history_size: usize,
}

/// Command-line overrides: `Some` only for flags that were given.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub cloud_url: Option<String>,
    pub channel: Option<String>,
    pub token: Option<String>,
    pub token_ref: Option<String>,
    pub protocol: Option<String>,
    pub reconnect_delay: Option<f64>,
    pub max_reconnect_delay: Option<f64>,
    pub reconnect_backoff_multiplier: Option<f64>,
    pub heartbeat_timeout: Option<f64>,
    pub connection_timeout: Option<f64>,
    pub max_concurrent_requests: Option<u64>,
    pub ack_timeout: Option<f64>,
    pub log_level: Option<String>,
    pub log_format: Option<String>,
    /// `--no-verify-ssl` → `Some(false)`.
    pub verify_ssl: Option<bool>,
    pub ca_cert_path: Option<String>,
    pub client_cert_path: Option<String>,
    pub client_key_path: Option<String>,
    pub connector_id: Option<String>,
    pub webhooks_config: Option<String>,
    pub connections_config: Option<String>,
    pub etcd_host: Option<String>,
    pub etcd_port: Option<u64>,
    pub etcd_prefix: Option<String>,
    pub namespace: Option<String>,
    pub target_url: Option<String>,
}

/// The sources a configuration is built from. The environment is injected (never read from or
/// written to the process here).
#[derive(Clone, Debug, Default)]
pub struct Sources {
    pub config_file: Option<PathBuf>,
    pub env: BTreeMap<String, String>,
    pub flags: Overrides,
}

const TOP_KEYS: &[&str] = &[
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

const CHANNEL_ONLY_KEYS: &[&str] = &["enabled"];

const TARGET_KEYS: &[&str] = &[
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
const ENV_KEYS: &[(&str, &str, Kind)] = &[
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
enum Kind {
    Str,
    Num,
    Int,
    Bool,
}

/// Parses the boolean spellings of §7.5.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn env_value(name: &str, raw: &str, kind: Kind) -> Result<Value, ConfigError> {
    let bad = || ConfigError(format!("{name}={raw:?} is not a valid value"));
    Ok(match kind {
        Kind::Str => Value::String(raw.to_owned()),
        Kind::Num => json!(raw.trim().parse::<f64>().map_err(|_| bad())?),
        Kind::Int => json!(raw.trim().parse::<u64>().map_err(|_| bad())?),
        Kind::Bool => Value::Bool(parse_bool(raw).ok_or_else(bad)?),
    })
}

/// The env var named by the config file setting, if any (`CONNECTOR_CONFIG_FILE`).
pub const CONFIG_FILE_ENV: &str = "CONNECTOR_CONFIG_FILE";

fn non_empty<'a>(env: &'a BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    env.get(k).map(String::as_str).filter(|v| !v.is_empty())
}

/// Builds and validates the configuration from its sources.
pub fn load(sources: &Sources) -> Result<ConnectorConfig, ConfigError> {
    let mut warnings = Vec::new();
    let file = sources
        .config_file
        .clone()
        .or_else(|| non_empty(&sources.env, CONFIG_FILE_ENV).map(PathBuf::from));
    let mut top = match &file {
        Some(path) => read_file(path)?,
        None => Map::new(),
    };
    // env layer
    for (var, key, kind) in ENV_KEYS {
        if let Some(raw) = non_empty(&sources.env, var) {
            top.insert((*key).to_owned(), env_value(var, raw, *kind)?);
        }
    }
    if let Some(url) = non_empty(&sources.env, "CONNECTOR_TARGET_URL") {
        let mut t = Map::new();
        t.insert("url".into(), json!(url));
        if let Some(m) = non_empty(&sources.env, "CONNECTOR_TARGET_METHOD") {
            t.insert("method".into(), json!(m));
        }
        if let Some(s) = non_empty(&sources.env, "CONNECTOR_TARGET_TIMEOUT") {
            t.insert(
                "timeout_seconds".into(),
                env_value("CONNECTOR_TARGET_TIMEOUT", s, Kind::Num)?,
            );
        }
        top.insert("default_target".into(), Value::Object(t));
    }
    // flag layer
    apply_flags(&mut top, &sources.flags);

    for k in top.keys() {
        if !TOP_KEYS.contains(&k.as_str()) {
            warnings.push(format!("unknown configuration key {k:?} ignored"));
        }
    }

    // Checked first so that a bad flag is reported even when other keys are missing.
    if let Some(Value::String(p)) = top.get("protocol") {
        Protocol::parse(p)?;
    }
    let max_concurrent_requests = match top.get("max_concurrent_requests") {
        None | Some(Value::Null) => 10,
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => n as usize,
            _ => {
                return err(format!(
                    "max_concurrent_requests must be an integer ≥ 1, got {v}"
                ));
            }
        },
    };
    let log_level = match top.get("log_level").and_then(Value::as_str) {
        None => "INFO".to_owned(),
        Some(l) => {
            let up = l.trim().to_ascii_uppercase();
            let up = if up == "WARN" {
                "WARNING".to_owned()
            } else {
                up
            };
            if !["DEBUG", "INFO", "WARNING", "ERROR"].contains(&up.as_str()) {
                return err(format!(
                    "invalid log_level {l:?}: expected DEBUG, INFO, WARNING or ERROR"
                ));
            }
            up
        }
    };
    let log_format = match top.get("log_format").and_then(Value::as_str) {
        None => LogFormat::Text,
        Some(f) if f.eq_ignore_ascii_case("json") => LogFormat::Json,
        Some(f) if f.eq_ignore_ascii_case("text") => LogFormat::Text,
        Some(f) => {
            warnings.push(format!("log_format {f:?} is not text or json; using text"));
            LogFormat::Text
        }
    };

    let channel_maps: Vec<Map<String, Value>> = match top.remove("channels") {
        None | Some(Value::Null) => vec![top.clone()],
        Some(Value::Array(items)) => {
            if top.get("channel").is_some_and(|c| !c.is_null()) {
                return err("`channel` must not be set at the top level when `channels` is used");
            }
            if items.is_empty() {
                return err("`channels` is empty");
            }
            let mut out = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let Value::Object(entry) = item else {
                    return err(format!("channels[{i}] must be an object"));
                };
                for k in entry.keys() {
                    if !TOP_KEYS.contains(&k.as_str()) && !CHANNEL_ONLY_KEYS.contains(&k.as_str()) {
                        warnings.push(format!("unknown key {k:?} in channels[{i}] ignored"));
                    }
                }
                if entry
                    .get("enabled")
                    .is_some_and(|e| e == &Value::Bool(false))
                {
                    continue;
                }
                let mut merged = top.clone();
                merged.remove("max_concurrent_requests");
                // The token is one setting spelled two ways: an entry that names either form
                // replaces both inherited ones (an inherited `token` must not beat the entry's
                // own `token_ref`).
                if entry.contains_key("token") || entry.contains_key("token_ref") {
                    merged.remove("token");
                    merged.remove("token_ref");
                }
                merged.extend(entry);
                out.push(merged);
            }
            out
        }
        Some(_) => return err("`channels` must be an array"),
    };

    let mut channels = Vec::new();
    for (i, m) in channel_maps.iter().enumerate() {
        let ch = channel_from(m, i, &sources.env, &mut warnings)?;
        if channels
            .iter()
            .any(|c: &ChannelConfig| c.channel == ch.channel)
        {
            return err(format!("channel {:?} is configured twice", ch.channel));
        }
        channels.push(ch);
    }
    let history_size = match top.get("history_size") {
        None | Some(Value::Null) => crate::history::DEFAULT_HISTORY,
        Some(v) => match v.as_u64() {
            Some(n) if n <= 100_000 => n as usize,
            _ => {
                return err(format!(
                    "history_size must be an integer 0..=100000, got {v}"
                ));
            }
        },
    };
    Ok(ConnectorConfig {
        channels,
        max_concurrent_requests,
        log_level,
        log_format,
        warnings,
        env: sources.env.clone(),
        history_size,
    })
}

fn read_file(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
    if ext == "yaml" || ext == "yml" {
        return match serde_norway::from_str::<Value>(&text) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => err(format!(
                "{}: top level must be a YAML mapping",
                path.display()
            )),
            Err(e) => err(format!("{}: invalid YAML: {e}", path.display())),
        };
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => err(format!(
            "{}: top level must be a JSON object",
            path.display()
        )),
        Err(e) => err(format!("{}: invalid JSON: {e}", path.display())),
    }
}

fn apply_flags(top: &mut Map<String, Value>, f: &Overrides) {
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

fn get_str(m: &Map<String, Value>, k: &str, ctx: &str) -> Result<Option<String>, ConfigError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(v) => err(format!("{ctx}{k} must be a string, got {v}")),
    }
}

/// etcd module mode: `etcd_host` (several hosts comma-separated), `etcd_port` (2379),
/// `etcd_prefix` (`/cwm/`, a trailing `/` added), `namespace` (`default`).
fn etcd_modules(
    m: &Map<String, Value>,
    ctx: &str,
) -> Result<crate::modules::EtcdModules, ConfigError> {
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

fn get_f64(m: &Map<String, Value>, k: &str, default: f64, ctx: &str) -> Result<f64, ConfigError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => match v.as_f64() {
            Some(n) if n.is_finite() => Ok(n),
            _ => err(format!("{ctx}{k} must be a number, got {v}")),
        },
    }
}

fn get_bool(
    m: &Map<String, Value>,
    k: &str,
    default: bool,
    ctx: &str,
) -> Result<bool, ConfigError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => parse_bool(s)
            .ok_or_else(|| ConfigError(format!("{ctx}{k} must be a boolean, got {s:?}"))),
        Some(v) => err(format!("{ctx}{k} must be a boolean, got {v}")),
    }
}

fn secs(v: f64, name: &str, ctx: &str) -> Result<Duration, ConfigError> {
    if v <= 0.0 || !v.is_finite() || v > 1e9 {
        return err(format!("{ctx}{name} must be > 0 seconds, got {v}"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn channel_from(
    m: &Map<String, Value>,
    index: usize,
    env: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) -> Result<ChannelConfig, ConfigError> {
    let ctx_owned = format!("channels[{index}].");
    let ctx = if m.contains_key("enabled") || index > 0 {
        ctx_owned.as_str()
    } else {
        ""
    };
    let channel = get_str(m, "channel", ctx)?
        .ok_or_else(|| ConfigError(format!("{ctx}channel is required")))?;
    if !connect_protocol::ids::is_valid_channel_name(&channel) {
        return err(format!(
            "{ctx}channel {channel:?} is invalid: use letters, digits, '.', '_' and '-', starting with a letter or digit, no '..'"
        ));
    }
    let cloud_url = get_str(m, "cloud_url", ctx)?
        .ok_or_else(|| ConfigError(format!("{ctx}cloud_url is required")))?;
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
        (None, None) => return err(format!("{ctx}token (or token_ref) is required")),
    };
    let protocol = match get_str(m, "protocol", ctx)? {
        None => Protocol::WebSocket,
        Some(p) => Protocol::parse(&p).map_err(|e| ConfigError(format!("{ctx}{e}")))?,
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
    let path = |k: &str| -> Result<Option<PathBuf>, ConfigError> {
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
) -> Result<String, ConfigError> {
    if let Some(var) = r.strip_prefix("env:") {
        return non_empty(env, var)
            .map(str::to_owned)
            .ok_or_else(|| ConfigError(format!("token_ref {r:?}: {var} is not set")));
    }
    if let Some(path) = r.strip_prefix("file:") {
        let t = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("token_ref {r:?}: {e}")))?;
        let t = t.trim().to_owned();
        if t.is_empty() {
            return err(format!("token_ref {r:?}: file is empty"));
        }
        return Ok(t);
    }
    if r == "keyring" || r.starts_with("keyring:") {
        let account = match r.strip_prefix("keyring:") {
            Some(a) if !a.is_empty() => a.to_owned(),
            _ => crate::keyring::channel_account(cloud_url, channel)
                .map_err(|e| ConfigError(format!("token_ref {r:?}: {e}")))?,
        };
        return crate::keyring::read(&account)
            .map_err(|e| ConfigError(format!("token_ref {r:?} (account {account:?}): {e}")));
    }
    err(format!(
        "token_ref {r:?} must be env:<VAR>, file:<path> or keyring[:<account>]"
    ))
}

#[derive(Deserialize)]
struct RawRewrite {
    pattern: String,
    replacement: String,
}

fn target_from(v: &Value, ctx: &str, warnings: &mut Vec<String>) -> Result<Target, ConfigError> {
    let Value::Object(m) = v else {
        return err(format!("{ctx} must be an object with a url"));
    };
    for k in m.keys() {
        if !TARGET_KEYS.contains(&k.as_str()) {
            warnings.push(format!("unknown target key {ctx}{k} ignored"));
        }
    }
    let url =
        get_str(m, "url", ctx)?.ok_or_else(|| ConfigError(format!("{ctx}url is required")))?;
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
                ConfigError(format!(
                    "{ctx}path_rewrite needs pattern and replacement: {e}"
                ))
            })?;
            let pattern = regex::Regex::new(&r.pattern)
                .map_err(|e| ConfigError(format!("{ctx}path_rewrite.pattern: {e}")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn file(v: Value) -> (tempfile::TempDir, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("connector.json");
        std::fs::write(&p, v.to_string()).unwrap();
        (d, p)
    }

    fn base() -> Value {
        json!({"cloud_url": "http://file.example/", "channel": "file-ch", "token": "t",
               "protocol": "sse", "default_target": {"url": "http://localhost:1/"}})
    }

    #[test]
    fn flags_beat_env_beat_file_beat_defaults() {
        let (_d, p) = file(base());
        let sources = Sources {
            config_file: Some(p.clone()),
            env: env(&[
                ("CONNECTOR_PROTOCOL", "long_poll"),
                ("CONNECTOR_CHANNEL", "env-ch"),
            ]),
            flags: Overrides {
                channel: Some("flag-ch".into()),
                ..Default::default()
            },
        };
        let c = load(&sources).unwrap();
        let ch = &c.channels[0];
        assert_eq!(ch.channel, "flag-ch");
        assert_eq!(ch.protocol, Protocol::LongPoll);
        assert_eq!(ch.cloud_url, "http://file.example");
        assert_eq!(ch.heartbeat_timeout, Duration::from_secs(60));
        assert_eq!(c.log_level, "INFO");

        // A flag that was not given does not override: the file's protocol stays.
        let c = load(&Sources {
            config_file: Some(p),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.channels[0].protocol, Protocol::Sse);
    }

    #[test]
    fn config_file_can_come_from_env_and_empty_env_is_unset() {
        let (_d, p) = file(base());
        let c = load(&Sources {
            env: env(&[
                ("CONNECTOR_CONFIG_FILE", p.to_str().unwrap()),
                ("CONNECTOR_CHANNEL", ""),
                ("CONNECTOR_VERIFY_SSL", "off"),
            ]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.channels[0].channel, "file-ch");
        assert!(!c.channels[0].verify_ssl);
    }

    #[test]
    fn unknown_keys_warn() {
        let mut v = base();
        v["surprise"] = json!(1);
        v["default_target"]["weird"] = json!(true);
        let (_d, p) = file(v);
        let c = load(&Sources {
            config_file: Some(p),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    }

    #[test]
    fn etcd_module_mode_takes_host_port_prefix_and_namespace() {
        let mut v = base();
        v.as_object_mut().unwrap().remove("default_target");
        v["etcd_host"] = json!("etcd-a, etcd-b:2380,http://etcd-c:1234");
        v["etcd_port"] = json!(2479);
        v["etcd_prefix"] = json!("/hooks");
        v["namespace"] = json!("team-a");
        let (_d, p) = file(v);
        let c = load(&Sources {
            config_file: Some(p),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            c.channels[0].module,
            Some(crate::modules::ModuleMode::Etcd(
                crate::modules::EtcdModules {
                    endpoints: vec![
                        "etcd-a:2479".into(),
                        "etcd-b:2380".into(),
                        "http://etcd-c:1234".into()
                    ],
                    prefix: "/hooks/".into(),
                    namespace: "team-a".into(),
                }
            ))
        );
    }

    #[test]
    fn invalid_values_are_clear_errors() {
        let e = load(&Sources {
            env: env(&[("CONNECTOR_PROTOCOL", "bogus")]),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("invalid protocol"), "{e}");
        let mut v = base();
        v["etcd_host"] = json!("etcd.local");
        let (_d, p) = file(v);
        let e = load(&Sources {
            config_file: Some(p),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("several delivery modes"), "{e}");
        let mut v = base();
        v["etcd_host"] = json!("etcd.local");
        v["namespace"] = json!("a/b");
        v.as_object_mut().unwrap().remove("default_target");
        let (_d, p) = file(v);
        let e = load(&Sources {
            config_file: Some(p),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("namespace must match"), "{e}");
        let mut v = base();
        v["channels"] = json!([{"channel": "x"}]);
        let (_d, p) = file(v);
        let e = load(&Sources {
            config_file: Some(p),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("`channel` must not be set"), "{e}");
    }

    #[test]
    fn channels_inherit_top_level_and_env() {
        let v = json!({"cloud_url": "http://c.example", "token": "t",
            "default_target": {"url": "http://localhost:2"},
            "channels": [{"channel": "a"}, {"channel": "b", "protocol": "sse", "token": "tb"},
                         {"channel": "c", "enabled": false}]});
        let (_d, p) = file(v);
        let c = load(&Sources {
            config_file: Some(p),
            env: env(&[("CONNECTOR_PROTOCOL", "long_poll")]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.channels.len(), 2);
        assert_eq!(c.channels[0].protocol, Protocol::LongPoll);
        assert_eq!(c.channels[1].protocol, Protocol::Sse);
        assert_eq!(c.channels[1].token, "tb");
        assert_eq!(c.channels[0].token, "t");
    }
}

#[cfg(test)]
mod token_inheritance_tests {
    use super::*;

    #[test]
    fn a_channels_own_token_ref_beats_an_inherited_token() {
        let file = serde_json::json!({
            "cloud_url": "http://127.0.0.1:1",
            "token": "top-level-token",
            "channels": [
                {"channel": "alpha", "default_target": {"url": "http://127.0.0.1:2"}},
                {"channel": "beta", "token_ref": "env:BETA_TOKEN", "default_target": {"url": "http://127.0.0.1:3"}}
            ]
        });
        let env: BTreeMap<String, String> =
            [("BETA_TOKEN".to_owned(), "beta-token".to_owned())].into();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("connector.json");
        std::fs::write(&path, file.to_string()).unwrap();
        let cfg = load(&Sources {
            config_file: Some(path),
            env,
            flags: Overrides::default(),
        })
        .unwrap();
        let tokens: Vec<&str> = cfg.channels.iter().map(|c| c.token.as_str()).collect();
        assert_eq!(tokens, ["top-level-token", "beta-token"]);
    }
}
