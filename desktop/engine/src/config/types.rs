//! The checked configuration the engine runs on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::ConnectorConfigError;
use super::validate::{channel_from, target_from};
use crate::api::Transport;

/// Transport selection (`protocol`): one transport of the wire contract, or `auto` (WebSocket,
/// falling back to SSE, then long-poll).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransportChoice {
    Auto,
    Only(Transport),
}

impl TransportChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Only(t) => t.as_str(),
            Self::Auto => "auto",
        }
    }

    pub fn parse(s: &str) -> Result<Self, ConnectorConfigError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "websocket" | "ws" => Ok(Self::Only(Transport::Websocket)),
            "sse" => Ok(Self::Only(Transport::Sse)),
            "long_poll" | "long-poll" | "longpoll" | "poll" => Ok(Self::Only(Transport::LongPoll)),
            "auto" => Ok(Self::Auto),
            other => Err(ConnectorConfigError::Protocol {
                ctx: String::new(),
                value: other.to_owned(),
            }),
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
    pub fn from_url(url: &str) -> Result<Target, ConnectorConfigError> {
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
    pub protocol: TransportChoice,
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
        protocol: TransportChoice,
        default_target: Option<&str>,
        targets: &BTreeMap<String, String>,
    ) -> Result<ChannelConfig, ConnectorConfigError> {
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
