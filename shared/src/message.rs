//! Stored messages (§3.1) and wire messages (§3.2).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use crate::time::Timestamp;

/// Where a message is in its life cycle (§6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    Ready,
    InFlight,
    Delayed,
    DeadLettered,
}

/// Why a message was dead-lettered (§6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    Rejected,
    MaxDeliveryAttempts,
    Expired,
}

impl DeadLetterReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::MaxDeliveryAttempts => "max_delivery_attempts",
            Self::Expired => "expired",
        }
    }
}

/// The immutable part of a message as the buffer stores it (§3.1). Mutable delivery
/// state lives beside it in [`Attempts`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub message_id: String,
    pub channel: String,
    pub webhook_id: String,
    pub namespace: Option<String>,
    pub sequence: u64,
    pub received_at: Timestamp,
    pub expires_at: Timestamp,
    pub method: String,
    pub path: String,
    pub query: String,
    /// Absent when credential cleanup is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_headers: Option<Vec<(String, String)>>,
    /// Exact body bytes (base64 in JSON); absent when credential cleanup is on.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_b64")]
    pub body: Option<Vec<u8>>,
    /// The masked payload, stored only when credential cleanup is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// The masked `headers` map, stored only when credential cleanup is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masked_headers: Option<serde_json::Map<String, Value>>,
    pub content_type: Option<String>,
    /// Was the body parsed as JSON at ingress (`data_type: json`)?
    #[serde(default)]
    pub is_json: bool,
}

/// Mutable delivery state of a message (§3.1, §6.4).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attempts {
    pub delivery_count: u32,
    pub first_attempt_at: Option<Timestamp>,
    pub last_attempt_at: Option<Timestamp>,
    pub last_error: Option<String>,
}

impl StoredMessage {
    /// The `headers` map of the wire message: names lower-cased, repeated fields joined
    /// with `", "` in arrival order (§3.2).
    pub fn headers_map(&self) -> serde_json::Map<String, Value> {
        if let Some(masked) = &self.masked_headers {
            return masked.clone();
        }
        let mut map = serde_json::Map::new();
        for (name, value) in self.raw_headers.iter().flatten() {
            let key = name.to_ascii_lowercase();
            match map.get_mut(&key) {
                Some(Value::String(existing)) => {
                    existing.push_str(", ");
                    existing.push_str(value);
                }
                _ => {
                    map.insert(key, Value::String(value.clone()));
                }
            }
        }
        map
    }

    /// The `payload` view (§3.2): parsed JSON, else the UTF-8 text, else null.
    pub fn payload_view(&self) -> Value {
        if let Some(p) = &self.payload {
            return p.clone();
        }
        let Some(body) = &self.body else {
            return Value::Null;
        };
        crate::json::payload_of(body, self.content_type.as_deref())
    }

    /// Builds the wire message for one delivery attempt.
    pub fn to_wire(&self, delivery_count: u32) -> WireMessage {
        WireMessage {
            kind: WebhookType::Webhook,
            message_id: self.message_id.clone(),
            sequence: self.sequence,
            webhook_id: self.webhook_id.clone(),
            timestamp: self.received_at,
            headers: self.headers_map(),
            payload: self.payload_view(),
            delivery_count: Some(delivery_count),
            channel: Some(self.channel.clone()),
            expires_at: Some(self.expires_at),
            method: Some(self.method.clone()),
            path: Some(self.path.clone()),
            query: Some(self.query.clone()),
            raw_headers: self.raw_headers.clone(),
            body_b64: self.body.as_ref().map(|b| B64.encode(b)),
            content_type: self.content_type.clone(),
            namespace: self.namespace.clone(),
        }
    }
}

/// The literal `"webhook"` type tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum WebhookType {
    Webhook,
}

/// A message as sent to connectors: WebSocket text frame, SSE `webhook` data, poll item (§3.2).
/// Every v2 field is optional so that a v1 server's messages parse too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct WireMessage {
    #[serde(rename = "type")]
    pub kind: WebhookType,
    // Empty when absent: the connector drops such a message (nothing to ACK, §11.2).
    #[serde(default)]
    pub message_id: String,
    #[serde(default)]
    pub sequence: u64,
    // Empty when absent: the connector NACKs such a message without retry (§11.2).
    #[serde(default)]
    pub webhook_id: String,
    pub timestamp: Timestamp,
    #[serde(default)]
    #[ts(type = "Record<string, string>")]
    pub headers: serde_json::Map<String, Value>,
    #[serde(default)]
    #[ts(type = "unknown")]
    pub payload: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub delivery_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub expires_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub method: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub raw_headers: Option<Vec<(String, String)>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub body_b64: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    #[serde(default)]
    pub namespace: Option<String>,
}

impl WireMessage {
    /// The exact body bytes when the sender was v2; `None` when only `payload` is available.
    pub fn body_bytes(&self) -> Option<Vec<u8>> {
        self.body_b64.as_ref().and_then(|b| B64.decode(b).ok())
    }

    /// Drops `raw_headers` and `body_b64` (frame budget for v1 WebSocket clients, §3.2).
    pub fn without_raw(mut self) -> Self {
        self.raw_headers = None;
        self.body_b64 = None;
        self
    }
}

mod opt_b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&B64.encode(b)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| B64.decode(s).map_err(serde::de::Error::custom))
            .transpose()
    }
}
