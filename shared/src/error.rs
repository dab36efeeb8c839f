//! The error body `{"detail": …, "code": …}` (§1.4) and the stable machine codes.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Every error answer of the HTTP API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct ErrorBody {
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub code: Option<ErrorCode>,
    /// Only for `json_schema` failures (422): up to 10 messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub errors: Option<Vec<String>>,
}

/// Stable machine codes of error answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    NotFound,
    MethodNotAllowed,
    InvalidRequest,
    InvalidHeaders,
    WebhookNotFound,
    WebhookUnavailable,
    ConfigNotLoaded,
    PayloadTooLarge,
    BodyTimeout,
    Unauthorized,
    RateLimited,
    InvalidEncoding,
    MalformedJson,
    JsonTooDeep,
    StringTooLong,
    SchemaValidationFailed,
    QueueFull,
    BufferUnavailable,
    MessageTooLarge,
    NotInitialized,
    ProcessingError,
    Forbidden,
    ChannelNotFound,
    ConnectionNotFound,
    ConnectionNotOnChannel,
    MessageNotInFlight,
    DeadLetterNotFound,
    MaxConnections,
    ValidationError,
    InternalError,
    /// A self-service account is at its quota (HOSTED.md §3).
    QuotaExceeded,
    /// The deployment holds as many accounts as it may (HOSTED.md §1).
    Capacity,
    /// An account or channel name is already used.
    NameTaken,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            detail: detail.into(),
            code: Some(code),
            errors: None,
        }
    }
}
