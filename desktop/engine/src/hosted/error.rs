//! What a call to the self-service API can end in, told apart so that a shell can answer each
//! differently: a refused key (log in again), a cloud that answered with an error (its code and
//! detail), a cloud that could not be reached, an answer that is not what the API promises.

use connect_protocol::error::{ErrorBody, ErrorCode};

/// Failure of a [`HostedClient`](super::HostedClient) call. The API key never appears in it.
#[derive(Debug, thiserror::Error)]
pub enum HostedError {
    /// `401`: the key is unknown, revoked or malformed, or its account is disabled
    /// (HOSTED.md §2 gives one answer for all of them).
    #[error("the cloud refused the API key (HTTP 401): {detail}")]
    Unauthorized { detail: String },
    /// Any other error status, with the body's `code` and `detail` when it had them.
    #[error("{detail} (HTTP {}{})", status.as_u16(), code.map(|c| format!(", {}", code_name(c))).unwrap_or_default())]
    Api {
        status: http::StatusCode,
        code: Option<ErrorCode>,
        detail: String,
        /// `Retry-After` in seconds (429, 503).
        retry_after: Option<u64>,
    },
    /// The cloud could not be reached (DNS, refused, TLS, timeout) or the answer was cut.
    #[error("cannot reach the cloud: {0}")]
    Network(String),
    /// A success status with a body that is not the documented shape.
    #[error("unexpected answer from the cloud: {0}")]
    Unexpected(String),
    /// The client cannot be built (TLS files, proxy) or the request cannot be formed.
    #[error("{0}")]
    Setup(String),
    /// A call that needs an API key on a client made without one.
    #[error("not logged in: no API key")]
    NoKey,
}

/// The wire name of an error code (`quota_exceeded`, …).
pub fn code_name(code: ErrorCode) -> String {
    serde_json::to_value(code)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{code:?}"))
}

impl HostedError {
    /// A stable machine code for the kind of error (the desktop app's IPC errors).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } | Self::NoKey => "unauthorized",
            Self::Api { .. } => "api",
            Self::Network(_) => "network",
            Self::Unexpected(_) => "unexpected",
            Self::Setup(_) => "setup",
        }
    }

    /// The HTTP status, for answers that had one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Unauthorized { .. } => Some(401),
            Self::Api { status, .. } => Some(status.as_u16()),
            _ => None,
        }
    }

    /// The body's machine code, for error answers that had one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Unauthorized { .. } => Some(ErrorCode::Unauthorized),
            Self::Api { code, .. } => *code,
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Builds the error of a non-success answer from its status, body and `Retry-After`.
    pub(crate) fn from_answer(
        status: http::StatusCode,
        body: &[u8],
        retry_after: Option<u64>,
    ) -> Self {
        let parsed = serde_json::from_slice::<ErrorBody>(body).ok();
        let detail = match &parsed {
            Some(b) => b.detail.clone(),
            None => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("no detail").to_owned()
                } else {
                    text.chars().take(300).collect()
                }
            }
        };
        if status == http::StatusCode::UNAUTHORIZED {
            return Self::Unauthorized { detail };
        }
        Self::Api {
            status,
            code: parsed.and_then(|b| b.code),
            detail,
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_answer_keeps_its_code_and_detail() {
        let e = HostedError::from_answer(
            http::StatusCode::FORBIDDEN,
            br#"{"detail":"account alice has 10 of 10 channels","code":"quota_exceeded"}"#,
            None,
        );
        assert_eq!(e.code(), Some(ErrorCode::QuotaExceeded));
        assert_eq!(e.status(), Some(403));
        assert_eq!(
            e.to_string(),
            "account alice has 10 of 10 channels (HTTP 403, quota_exceeded)"
        );
    }

    #[test]
    fn a_401_is_unauthorized_and_a_body_that_is_not_json_is_kept_short() {
        let e = HostedError::from_answer(
            http::StatusCode::UNAUTHORIZED,
            br#"{"detail":"Invalid API key","code":"unauthorized"}"#,
            None,
        );
        assert!(matches!(e, HostedError::Unauthorized { .. }), "{e:?}");
        assert_eq!(e.kind(), "unauthorized");
        let e = HostedError::from_answer(
            http::StatusCode::BAD_GATEWAY,
            "<html>bad gateway</html>".repeat(50).as_bytes(),
            Some(3),
        );
        match e {
            HostedError::Api {
                code: None,
                detail,
                retry_after: Some(3),
                ..
            } => assert_eq!(detail.chars().count(), 300),
            other => panic!("{other:?}"),
        }
        let e = HostedError::from_answer(http::StatusCode::NOT_FOUND, b"", None);
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "Not Found (HTTP 404)");
    }
}
