//! The one error type at the HTTP edge. Every answer that is not a success goes through
//! [`ApiError`], which fixes status, `detail`, `code` and headers in one place. 5xx causes
//! are logged with the request path, never returned.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use connect_protocol::error::{ErrorBody, ErrorCode};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    pub retry_after: Option<u64>,
    pub allow: Option<&'static str>,
    /// The request body was not read to its end: the connection cannot be reused, so say so
    /// instead of letting the client race the close.
    pub close: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody::new(code, detail),
            retry_after: None,
            allow: None,
            close: false,
        }
    }

    /// An error body without `code`, for answers whose shape version 1 fixed exactly.
    pub fn plain(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                detail: detail.into(),
                code: None,
                errors: None,
            },
            retry_after: None,
            allow: None,
            close: false,
        }
    }

    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn bad_request(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized, detail)
    }

    pub fn not_found(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::ValidationError,
            detail,
        )
    }

    pub fn buffer_unavailable(retry_after: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::BufferUnavailable,
            "Buffer unavailable",
        )
        .retry_after(retry_after)
    }

    pub fn not_initialized(retry_after: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::NotInitialized,
            "Webhook Connect not initialized",
        )
        .retry_after(retry_after)
    }

    pub fn channel_not_found() -> Self {
        Self::not_found(ErrorCode::ChannelNotFound, "Channel not found")
    }

    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(context, error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::InternalError,
            "Internal server error",
        )
    }

    pub fn method_not_allowed() -> Self {
        let mut e = Self::plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        e.body.code = Some(ErrorCode::MethodNotAllowed);
        e.allow = Some("POST");
        e
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, axum::Json(self.body)).into_response();
        let h = res.headers_mut();
        if let Some(s) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if let Some(a) = self.allow {
            h.insert(header::ALLOW, HeaderValue::from_static(a));
        }
        if self.close {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}

impl From<connect_buffer::BufferError> for ApiError {
    fn from(e: connect_buffer::BufferError) -> Self {
        use connect_buffer::BufferError as B;
        match e {
            B::ChannelNotFound => Self::channel_not_found(),
            B::QueueFull => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::QueueFull,
                "Channel queue full",
            ),
            B::TooLarge => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                ErrorCode::MessageTooLarge,
                "Message too large",
            ),
            B::Orphaned | B::Unavailable(_) | B::Locked(_) => {
                tracing::warn!(error = %e, "buffer failure");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::BufferUnavailable,
                    "Buffer unavailable",
                )
            }
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
