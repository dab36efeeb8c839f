//! Connector frames: WebSocket (§5.1), SSE events (§5.2), long-poll (§5.3), ACK (§5.4),
//! status (§5.5).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use ts_rs::TS;

use crate::admin::ChannelStats;
use crate::message::WireMessage;
use crate::time::Timestamp;

/// `connected`: the first WebSocket frame and the data of the first SSE event. The v2 fields
/// are optional so that v1 servers' frames parse.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct Connected {
    pub connection_id: String,
    pub channel: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub protocol_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub heartbeat_interval_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub ack_timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub max_in_flight: Option<u32>,
}

/// Heartbeat payload (WebSocket frame and SSE `heartbeat` event).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct Heartbeat {
    pub timestamp: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub server_time: Option<Timestamp>,
}

/// Codes of the WebSocket `error` frame (§5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum FrameErrorCode {
    InvalidJson,
    BinaryFrame,
    UnknownType,
    MissingField,
    InvalidField,
}

/// A frame the server sends on a WebSocket. `webhook` frames are [`WireMessage`]s, which carry
/// their own `type` tag.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    Connected(Connected),
    Heartbeat(Heartbeat),
    Error { error: String, code: FrameErrorCode },
}

impl ServerFrame {
    /// Parses a server frame; a `webhook` frame's body becomes a [`WireMessage`].
    pub fn parse(text: &str) -> Result<ParsedServerFrame, serde_json::Error> {
        let v: Value = serde_json::from_str(text)?;
        match v.get("type").and_then(Value::as_str) {
            Some("webhook") => Ok(ParsedServerFrame::Webhook(Box::new(
                serde_json::from_value(v)?,
            ))),
            Some("connected") => Ok(ParsedServerFrame::Connected(serde_json::from_value(v)?)),
            Some("heartbeat") => Ok(ParsedServerFrame::Heartbeat),
            Some("error") => Ok(ParsedServerFrame::Error(
                v.get("error")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
            )),
            _ => Ok(ParsedServerFrame::Unknown),
        }
    }
}

/// A server frame as a client reads it; unknown types are ignored (§1.2).
#[derive(Clone, Debug, PartialEq)]
pub enum ParsedServerFrame {
    Connected(Connected),
    Webhook(Box<WireMessage>),
    Heartbeat,
    Error(String),
    Unknown,
}

/// A frame a client sends on a WebSocket (§5.1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Ack {
        message_id: String,
    },
    Nack {
        message_id: String,
        #[serde(default = "yes")]
        retry: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        error: Option<String>,
    },
    Heartbeat {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[ts(optional)]
        timestamp: Option<Timestamp>,
    },
    Extend {
        message_id: String,
    },
}

fn yes() -> bool {
    true
}

/// A client frame that could not be accepted, with its error-frame code and text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    pub code: FrameErrorCode,
    pub error: String,
}

/// Longest accepted NACK `error` text.
pub const MAX_ERROR_TEXT: usize = 1024;

impl ClientFrame {
    /// Parses a client text frame with the error codes of §5.1.
    pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
        let err = |code, error: &str| FrameError {
            code,
            error: error.to_owned(),
        };
        let v: Value = serde_json::from_str(text)
            .map_err(|_| err(FrameErrorCode::InvalidJson, "Invalid JSON"))?;
        let obj = v
            .as_object()
            .ok_or_else(|| err(FrameErrorCode::InvalidJson, "Frame must be a JSON object"))?;
        let kind = match obj.get("type") {
            None => return Err(err(FrameErrorCode::MissingField, "Missing field: type")),
            Some(Value::String(s)) => s.as_str(),
            Some(_) => return Err(err(FrameErrorCode::InvalidField, "Invalid field: type")),
        };
        let message_id = || -> Result<String, FrameError> {
            match obj.get("message_id") {
                None | Some(Value::Null) => Err(err(
                    FrameErrorCode::MissingField,
                    "Missing field: message_id",
                )),
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                Some(_) => Err(err(
                    FrameErrorCode::InvalidField,
                    "Invalid field: message_id",
                )),
            }
        };
        match kind {
            "ack" => Ok(ClientFrame::Ack {
                message_id: message_id()?,
            }),
            "extend" => Ok(ClientFrame::Extend {
                message_id: message_id()?,
            }),
            "heartbeat" => Ok(ClientFrame::Heartbeat { timestamp: None }),
            "nack" => {
                let message_id = message_id()?;
                let retry = match obj.get("retry") {
                    None | Some(Value::Null) => true,
                    Some(Value::Bool(b)) => *b,
                    Some(Value::String(s)) if s == "true" => true,
                    Some(Value::String(s)) if s == "false" => false,
                    Some(_) => {
                        return Err(err(FrameErrorCode::InvalidField, "Invalid field: retry"));
                    }
                };
                let error = match obj.get("error") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(truncate_chars(s, MAX_ERROR_TEXT)),
                    Some(_) => {
                        return Err(err(FrameErrorCode::InvalidField, "Invalid field: error"));
                    }
                };
                Ok(ClientFrame::Nack {
                    message_id,
                    retry,
                    error,
                })
            }
            other => Err(err(
                FrameErrorCode::UnknownType,
                &format!("Unknown frame type: {}", truncate_chars(other, 64)),
            )),
        }
    }
}

/// Cuts a string to at most `max` characters.
pub fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => s[..i].to_owned(),
        None => s.to_owned(),
    }
}

/// SSE `error` event data (§5.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct SseError {
    pub error: String,
}

/// SSE event names (§5.2): the `event:` field of each event the server sends.
pub mod sse_event {
    pub const CONNECTED: &str = "connected";
    pub const WEBHOOK: &str = "webhook";
    pub const HEARTBEAT: &str = "heartbeat";
    pub const ERROR: &str = "error";
}

/// Terminal SSE error codes.
pub mod sse_error {
    pub const MAX_CONNECTIONS: &str = "max_connections_reached";
    pub const DISCONNECTED_BY_ADMIN: &str = "disconnected_by_admin";
    pub const TOKEN_REVOKED: &str = "token_revoked";
    pub const CHANNEL_REMOVED: &str = "channel_removed";
    pub const SERVER_SHUTDOWN: &str = "server_shutdown";
    pub const INTERNAL: &str = "internal_error";
}

/// A terminal SSE error code (§5.2), as a connector reads it. Each but `internal_error` stands
/// for the WebSocket close code that ends a WebSocket link for the same reason, so a connector
/// ends an SSE session exactly as it would a WebSocket one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SseErrorCode {
    MaxConnections,
    DisconnectedByAdmin,
    TokenRevoked,
    ChannelRemoved,
    ServerShutdown,
    Internal,
}

impl SseErrorCode {
    const ALL: [Self; 6] = [
        Self::MaxConnections,
        Self::DisconnectedByAdmin,
        Self::TokenRevoked,
        Self::ChannelRemoved,
        Self::ServerShutdown,
        Self::Internal,
    ];

    /// The code's name on the wire (the `error` of the event's data).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxConnections => sse_error::MAX_CONNECTIONS,
            Self::DisconnectedByAdmin => sse_error::DISCONNECTED_BY_ADMIN,
            Self::TokenRevoked => sse_error::TOKEN_REVOKED,
            Self::ChannelRemoved => sse_error::CHANNEL_REMOVED,
            Self::ServerShutdown => sse_error::SERVER_SHUTDOWN,
            Self::Internal => sse_error::INTERNAL,
        }
    }

    /// The code named `name`; `None` for a name this crate does not know.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    /// The WebSocket close code (`crate::close`) with the same meaning, if there is one.
    pub fn close_code(self) -> Option<u16> {
        use crate::close;
        match self {
            Self::MaxConnections => Some(close::MAX_CONNECTIONS),
            Self::DisconnectedByAdmin => Some(close::DISCONNECTED_BY_ADMIN),
            Self::TokenRevoked => Some(close::TOKEN_REVOKED),
            Self::ChannelRemoved => Some(close::CHANNEL_REMOVED),
            Self::ServerShutdown => Some(close::GOING_AWAY),
            Self::Internal => None,
        }
    }
}

/// `200` body of `GET /connect/stream/{channel}/poll` (§5.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct PollResponse {
    pub messages: Vec<WireMessage>,
    pub connection_id: String,
    pub channel: String,
    pub timestamp: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub protocol_version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub ack_timeout_seconds: Option<u64>,
}

/// `200` body of `POST /connect/ack` (§5.4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct AckResponse {
    pub status: String,
    pub message_id: String,
}

/// `status` query values of `POST /connect/ack`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    Ack,
    Nack,
    Extend,
}

/// `200` body of `GET /connect/status/{channel}` (§5.5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct StatusResponse {
    pub channel: String,
    pub connected: bool,
    pub stats: ChannelStats,
    pub server_time: Timestamp,
}

/// `200` body of a stored webhook at ingress (§2.7).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct IngressAccepted {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub message_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_error_codes_name_their_close_codes() {
        let close = |name: &str| SseErrorCode::parse(name).and_then(SseErrorCode::close_code);
        assert_eq!(close("token_revoked"), Some(4005));
        assert_eq!(close("channel_removed"), Some(4006));
        assert_eq!(close("max_connections_reached"), Some(4003));
        assert_eq!(close("disconnected_by_admin"), Some(4004));
        assert_eq!(close("server_shutdown"), Some(1001));
        assert_eq!(close("internal_error"), None);
        assert_eq!(SseErrorCode::parse("something_else"), None);
        for c in SseErrorCode::ALL {
            assert_eq!(SseErrorCode::parse(c.as_str()), Some(c));
        }
    }

    #[test]
    fn client_frames_get_documented_error_codes() {
        let code = |s: &str| ClientFrame::parse(s).unwrap_err().code;
        assert_eq!(code("not json"), FrameErrorCode::InvalidJson);
        assert_eq!(code("[1]"), FrameErrorCode::InvalidJson);
        assert_eq!(code("{}"), FrameErrorCode::MissingField);
        assert_eq!(code(r#"{"type":"ack"}"#), FrameErrorCode::MissingField);
        assert_eq!(code(r#"{"type":"bogus"}"#), FrameErrorCode::UnknownType);
        assert_eq!(
            code(r#"{"type":"nack","message_id":"m","retry":"maybe"}"#),
            FrameErrorCode::InvalidField
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"nack","message_id":"m","retry":"false"}"#).unwrap(),
            ClientFrame::Nack {
                message_id: "m".into(),
                retry: false,
                error: None
            }
        );
        assert_eq!(
            ClientFrame::parse(r#"{"type":"nack","message_id":"m"}"#).unwrap(),
            ClientFrame::Nack {
                message_id: "m".into(),
                retry: true,
                error: None
            }
        );
    }
}
