//! The engine's error type: what went wrong, told apart by kind so that a shell can answer
//! each differently (a bad admin token is not an unreachable cloud). The texts are the ones
//! shown to the user.

/// Start-up, control or admin-API failure.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No channel with this key.
    #[error("unknown channel {0:?}")]
    UnknownChannel(String),
    /// No event with this message id in the channel's history.
    #[error("no event {0:?} in the history")]
    UnknownEvent(String),
    /// A channel was added while the engine shuts down.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// A channel cannot be set up: TLS files, client certificate, proxy, HTTP client.
    #[error("{0}")]
    Setup(String),
    /// Module mode's local `webhooks_config` cannot be loaded.
    #[error(transparent)]
    Modules(#[from] crate::modules::ModulesLoadError),
    /// A replay that cannot be made as asked (bad body, no target, truncated body).
    #[error("{0}")]
    Replay(String),
    /// The cloud's admin API refused the admin token (HTTP 401 / 403).
    #[error("admin token rejected (HTTP {status}): {detail}")]
    AdminAuth {
        status: http::StatusCode,
        detail: String,
    },
    /// The admin API answered with another error status.
    #[error("admin API answered HTTP {status}: {detail}")]
    AdminStatus {
        status: http::StatusCode,
        detail: String,
    },
    /// The admin API could not be reached, or its answer could not be read.
    #[error("admin API: {0}")]
    AdminUnreachable(String),
}

impl EngineError {
    /// A stable machine code for the kind of error (used by the desktop app's IPC errors).
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnknownChannel(_) => "unknown_channel",
            Self::UnknownEvent(_) => "unknown_event",
            Self::ShuttingDown => "shutting_down",
            Self::Setup(_) | Self::Modules(_) => "setup",
            Self::Replay(_) => "invalid_replay",
            Self::AdminAuth { .. } => "admin_auth",
            Self::AdminStatus { .. } => "admin_status",
            Self::AdminUnreachable(_) => "network",
        }
    }
}
