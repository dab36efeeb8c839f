//! The validated model of one `webhooks.json` entry (CONFIG §2.2–2.8) and its parser.
//!
//! Parsing happens on the placeholder-resolved value; every failure is an entry error whose text
//! names the key (the entry itself is named by the caller) and never a value.

use serde_json::{Map, Value};
use std::fmt;

use crate::auth::{Auth, AuthRequest};
use crate::cleanup::Cleanup;
use crate::fields::{self, Warnings};
use crate::modules::{LogSettings, SaveToDiskSettings};
use crate::placeholders::{self, EnvSource, SecretSource};
use crate::schema::Schema;

mod fingerprint;
pub use fingerprint::{Fingerprint, fingerprint};

/// `data_type` (§2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataType {
    Json,
    Blob,
}

/// Bounds of `max_queue_bytes` (and of the cloud's default for it): 64 KiB .. 1 TiB.
pub const MIN_QUEUE_BYTES: u64 = 64 * 1024;
pub const MAX_QUEUE_BYTES: u64 = 1 << 40;

/// `module-config` of a `webhook_connect` entry (§2.3).
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectSettings {
    pub channel: String,
    pub channel_token: String,
    pub ttl_seconds: u64,
    pub max_queue_size: u64,
    /// Bytes the channel's unsettled messages may take; `None` takes the cloud's
    /// `WEBHOOK_CONNECT_MAX_QUEUE_BYTES`.
    pub max_queue_bytes: Option<u64>,
    pub max_connections: u64,
    pub max_in_flight: u64,
    pub ack_timeout_seconds: u64,
    pub max_delivery_attempts: u32,
    pub retry_backoff_max_seconds: u64,
    pub dlq_retention_seconds: u64,
}

impl fmt::Debug for ConnectSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectSettings")
            .field("channel", &self.channel)
            .field("channel_token", &"***")
            .field("ttl_seconds", &self.ttl_seconds)
            .field("max_queue_size", &self.max_queue_size)
            .field("max_queue_bytes", &self.max_queue_bytes)
            .field("max_connections", &self.max_connections)
            .field("max_in_flight", &self.max_in_flight)
            .field("ack_timeout_seconds", &self.ack_timeout_seconds)
            .field("max_delivery_attempts", &self.max_delivery_attempts)
            .field("retry_backoff_max_seconds", &self.retry_backoff_max_seconds)
            .field("dlq_retention_seconds", &self.dlq_retention_seconds)
            .finish()
    }
}

impl ConnectSettings {
    /// Names of the channel-scoped settings (§2.3 "Scope: channel") that differ from `owner`.
    /// `ttl_seconds` is per webhook and never differs meaningfully.
    pub fn channel_differences(&self, owner: &ConnectSettings) -> Vec<&'static str> {
        let mut d = Vec::new();
        if self.max_queue_size != owner.max_queue_size {
            d.push("max_queue_size");
        }
        if self.max_queue_bytes != owner.max_queue_bytes {
            d.push("max_queue_bytes");
        }
        if self.max_connections != owner.max_connections {
            d.push("max_connections");
        }
        if self.max_in_flight != owner.max_in_flight {
            d.push("max_in_flight");
        }
        if self.ack_timeout_seconds != owner.ack_timeout_seconds {
            d.push("ack_timeout_seconds");
        }
        if self.max_delivery_attempts != owner.max_delivery_attempts {
            d.push("max_delivery_attempts");
        }
        if self.retry_backoff_max_seconds != owner.retry_backoff_max_seconds {
            d.push("retry_backoff_max_seconds");
        }
        if self.dlq_retention_seconds != owner.dlq_retention_seconds {
            d.push("dlq_retention_seconds");
        }
        d
    }

    fn parse(m: &Map<String, Value>, w: &mut Warnings<'_>) -> Result<Self, String> {
        const P: &str = "module-config.";
        w.unknown_keys(
            m,
            P,
            &[
                "channel",
                "channel_token",
                "ttl_seconds",
                "max_queue_size",
                "max_queue_bytes",
                "max_connections",
                "max_in_flight",
                "ack_timeout_seconds",
                "max_delivery_attempts",
                "retry_backoff_max_seconds",
                "dlq_retention_seconds",
            ],
        );
        let channel = fields::required(m, "channel", P)?.to_string();
        if !connect_protocol::ids::is_valid_channel_name(&channel) {
            return Err(format!(
                "{P}channel: must match ^[A-Za-z0-9][A-Za-z0-9._-]{{0,127}}$ without '..'"
            ));
        }
        let channel_token = match m.get("channel_token") {
            None | Some(Value::Null) => return Err(format!("{P}channel_token: required")),
            // Verbatim: tokens are compared exactly, surrounding spaces included.
            Some(v) => fields::string(v, &format!("{P}channel_token"))?.to_string(),
        };
        if channel_token.is_empty() {
            return Err(format!("{P}channel_token: must not be empty"));
        }
        if channel_token.chars().count() < 16 {
            w.push(format!(
                "{P}channel_token is shorter than 16 characters (weak token)"
            ));
        }
        let int = |name: &str, default: u64, range: std::ops::RangeInclusive<u64>| match m.get(name)
        {
            None | Some(Value::Null) => Ok(default),
            Some(v) => fields::integer(v, &format!("{P}{name}"), range),
        };
        let dlq = int("dlq_retention_seconds", 604_800, 0..=31_536_000)?;
        if (1..60).contains(&dlq) {
            return Err(format!(
                "{P}dlq_retention_seconds: must be 0 (keep until deleted) or 60..31536000"
            ));
        }
        Ok(ConnectSettings {
            channel,
            channel_token,
            ttl_seconds: int("ttl_seconds", 86_400, 1..=31_536_000)?,
            max_queue_size: int("max_queue_size", 10_000, 1..=10_000_000)?,
            max_queue_bytes: match m.get("max_queue_bytes") {
                None | Some(Value::Null) => None,
                Some(v) => Some(fields::integer(
                    v,
                    &format!("{P}max_queue_bytes"),
                    MIN_QUEUE_BYTES..=MAX_QUEUE_BYTES,
                )?),
            },
            max_connections: int("max_connections", 10, 1..=10_000)?,
            max_in_flight: int("max_in_flight", 100, 1..=10_000)?,
            ack_timeout_seconds: int("ack_timeout_seconds", 30, 5..=3600)?,
            // Range 1..=1000 fits u32.
            max_delivery_attempts: int("max_delivery_attempts", 10, 1..=1000)? as u32,
            retry_backoff_max_seconds: int("retry_backoff_max_seconds", 60, 1..=3600)?,
            dlq_retention_seconds: dlq,
        })
    }
}

/// The module of an entry with its settings.
#[derive(Clone, Debug, PartialEq)]
pub enum Module {
    WebhookConnect(ConnectSettings),
    Log(LogSettings),
    SaveToDisk(SaveToDiskSettings),
}

impl Module {
    pub fn name(&self) -> &'static str {
        match self {
            Module::WebhookConnect(_) => "webhook_connect",
            Module::Log(_) => "log",
            Module::SaveToDisk(_) => "save_to_disk",
        }
    }
}

/// `rate_limit` (§2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimitSpec {
    pub max_requests: u64,
    pub window_seconds: u64,
}

impl RateLimitSpec {
    fn parse(v: &Value, w: &mut Warnings<'_>) -> Result<Self, String> {
        let m = fields::object(v, "rate_limit")?;
        w.unknown_keys(m, "rate_limit.", &["max_requests", "window_seconds"]);
        Ok(RateLimitSpec {
            max_requests: match m.get("max_requests") {
                None | Some(Value::Null) => 100,
                Some(v) => fields::integer(v, "rate_limit.max_requests", 1..=1_000_000)?,
            },
            window_seconds: match m.get("window_seconds") {
                None | Some(Value::Null) => 60,
                Some(v) => fields::integer(v, "rate_limit.window_seconds", 1..=86_400)?,
            },
        })
    }
}

/// One validated, enabled webhook.
#[derive(Debug)]
pub struct Webhook {
    pub id: String,
    pub namespace: Option<String>,
    /// `id` for the file backend and the `default` namespace, `ns/id` otherwise.
    pub key: String,
    pub data_type: DataType,
    pub module: Module,
    pub auth: Auth,
    pub rate_limit: Option<RateLimitSpec>,
    /// Boxed: most entries have none, and an idle entry should cost little (issue #14).
    pub json_schema: Option<Box<Schema>>,
    pub cleanup: Cleanup,
    pub warnings: Vec<String>,
    /// Digest of the placeholder-resolved definition: lets a reload tell whether an entry
    /// changed without keeping every definition whole (issue #14: ~0.8 KB per entry).
    pub fingerprint: Fingerprint,
    /// The definition as given to [`Webhook::parse_resolved`] (taken literally; holds secrets:
    /// never log or return it). Entries of a configuration source ([`Webhook::parse`]) keep
    /// only the [`fingerprint`](Self::fingerprint): this is then `Null`.
    pub resolved: Value,
}

/// The key naming an entry in errors, owners and channel lists.
pub fn entry_key(namespace: Option<&str>, id: &str) -> String {
    match namespace {
        None | Some("default") => id.to_string(),
        Some(ns) => format!("{ns}/{id}"),
    }
}

const TOP_KEYS: &[&str] = &[
    "data_type",
    "module",
    "module-config",
    "authorization",
    "basic_auth",
    "header_auth",
    "query_auth",
    "hmac",
    "jwt",
    "ip_whitelist",
    "trusted_proxies",
    "rate_limit",
    "json_schema",
    "credential_cleanup",
];

impl Webhook {
    /// Resolves placeholders in `raw` and validates it as the entry `id` (§2.8).
    /// `Err` is the entry error (the entry is disabled).
    pub fn parse(
        id: &str,
        namespace: Option<&str>,
        raw: &Value,
        env: &dyn EnvSource,
        secrets: Option<&dyn SecretSource>,
    ) -> Result<Webhook, String> {
        connect_protocol::ids::validate_webhook_id(id)
            .map_err(|e| format!("invalid webhook id: {e}"))?;
        if !raw.is_object() {
            return Err(format!(
                "webhook definition must be a JSON object, got {}",
                fields::type_name(raw)
            ));
        }
        let resolved = placeholders::resolve(raw, env, secrets).map_err(|e| e.to_string())?;
        let mut w = Self::parse_resolved(id, namespace, resolved)?;
        w.resolved = Value::Null;
        Ok(w)
    }

    /// [`Webhook::parse`] of a definition taken literally: no placeholder is resolved (a
    /// definition built from user input, such as a self-service channel's, must not read the
    /// environment or Vault).
    pub fn parse_resolved(
        id: &str,
        namespace: Option<&str>,
        resolved: Value,
    ) -> Result<Webhook, String> {
        let key = entry_key(namespace, id);
        connect_protocol::ids::validate_webhook_id(id)
            .map_err(|e| format!("invalid webhook id: {e}"))?;
        let m = resolved
            .as_object()
            .ok_or_else(|| "webhook definition must be a JSON object".to_string())?;
        let mut w = Warnings::new(&key);

        for (k, v) in m {
            match k.as_str() {
                k if TOP_KEYS.contains(&k) => {}
                "digest_auth" | "oauth1" | "oauth2" | "recaptcha" => {
                    return Err(format!("{k}: authentication method not supported"));
                }
                "chain" => {
                    if !v.is_null() {
                        return Err("chain: module chains are not supported".into());
                    }
                }
                "chain-config" => w.push("chain-config is ignored (chains are not supported)"),
                "retry" => w.push("retry is ignored: answers are always synchronous"),
                "connection" => {
                    w.push("connection is ignored: no supported module uses connections")
                }
                other => w.push(format!("unknown key '{other}' ignored")),
            }
        }

        let data_type = match m.get("data_type") {
            None | Some(Value::Null) => DataType::Json,
            Some(v) => match fields::string(v, "data_type")? {
                "json" => DataType::Json,
                "blob" => DataType::Blob,
                _ => return Err("data_type: must be \"json\" or \"blob\"".into()),
            },
        };

        let module_name = match m.get("module") {
            None | Some(Value::Null) => return Err("module: required".into()),
            Some(v) => fields::string(v, "module")?,
        };
        let empty = Map::new();
        let mc = match m.get("module-config") {
            None | Some(Value::Null) => &empty,
            Some(v) => fields::object(v, "module-config")?,
        };
        let module = match module_name {
            "webhook_connect" => Module::WebhookConnect(ConnectSettings::parse(mc, &mut w)?),
            "log" => Module::Log(LogSettings::parse(mc, &mut w)?),
            "save_to_disk" => Module::SaveToDisk(SaveToDiskSettings::parse(mc, &mut w)?),
            other => {
                return Err(format!(
                    "module: '{}' is not supported (webhook_connect, log, save_to_disk)",
                    other.escape_debug()
                ));
            }
        };

        let auth = Auth::parse(m, &mut w)?;

        let rate_limit = match m.get("rate_limit") {
            None | Some(Value::Null) => None,
            Some(v) => Some(RateLimitSpec::parse(v, &mut w)?),
        };

        let json_schema = match m.get("json_schema") {
            None | Some(Value::Null) => None,
            Some(v) => {
                if data_type == DataType::Blob {
                    return Err("json_schema: not allowed with data_type \"blob\"".into());
                }
                let obj = fields::object(v, "json_schema")?;
                if obj.is_empty() {
                    w.push("json_schema is {} and accepts every payload");
                    None
                } else {
                    Some(Box::new(
                        Schema::compile(v).map_err(|e| format!("json_schema: {e}"))?,
                    ))
                }
            }
        };

        let cleanup_default = !matches!(module, Module::WebhookConnect(_));
        let cleanup = Cleanup::parse(m.get("credential_cleanup"), cleanup_default, &mut w)?;

        Ok(Webhook {
            id: id.to_string(),
            namespace: namespace.map(str::to_string),
            key: key.clone(),
            data_type,
            module,
            auth,
            rate_limit,
            json_schema,
            cleanup,
            warnings: w.list,
            fingerprint: fingerprint(&resolved),
            resolved,
        })
    }

    /// All configured methods in the fixed order ip_whitelist → authorization → basic_auth →
    /// jwt → hmac → header_auth → query_auth. `Err(reason)` → 401 `{"detail": reason}`.
    pub fn authenticate(&self, req: &AuthRequest<'_>) -> Result<(), String> {
        self.auth.check(req)
    }

    /// `Err` holds up to 10 messages `"<instance path>: <reason>"` → 422.
    pub fn validate_schema(&self, payload: &Value) -> Result<(), Vec<String>> {
        match &self.json_schema {
            None => Ok(()),
            Some(s) => s.validate(payload),
        }
    }

    pub fn connect_settings(&self) -> Option<&ConnectSettings> {
        match &self.module {
            Module::WebhookConnect(s) => Some(s),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
