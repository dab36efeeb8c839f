//! The app core's errors ([`CoreError`]) and their IPC form ([`CommandError`]): a stable
//! machine `code` and the message shown to the user, so that the UI can tell a bad token from
//! an unreachable cloud (GitButler's `but-error` shape).

use connect_engine::{ConnectorConfigError, EngineError};
use serde::{Deserialize, Serialize};

use connect_engine::hosted::HostedError;
use connect_protocol::error::ErrorCode;

use crate::secrets::SecretError;
use crate::settings::SettingsError;

/// What the app core's actions return.
pub type CoreResult<T> = Result<T, CoreError>;

/// Why an action of the app core failed.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A channel the engine's rules refuse (bad URL, protocol, target).
    #[error(transparent)]
    Config(#[from] ConnectorConfigError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("unknown channel {0:?}")]
    UnknownChannel(String),
    /// Input the UI should not have let through (a channel name, a history size...).
    #[error("{0}")]
    Invalid(String),
    #[error("no token stored for {0}: edit the channel to enter it")]
    NoToken(String),
    #[error("a channel token is required (it is stored in the OS keyring only)")]
    TokenRequired,
    #[error("no admin token for {0}: edit the channel and enter one to manage dead letters")]
    NoAdminToken(String),
    #[error("no event to replay yet")]
    NothingToReplay,
    /// A self-service call for a cloud this app is not signed in to (or whose key is gone).
    #[error("not signed in to {0}: sign in under Settings → Accounts")]
    NotSignedIn(String),
    /// The cloud's `/api/v1` refused or failed (see [`hosted_code`]).
    #[error("{}", hosted_message(.0))]
    Hosted(#[from] HostedError),
}

/// The IPC code of a self-service API failure, so the UI can tell a refused key from a taken
/// name, a quota, closed sign-up or an unreachable cloud.
pub fn hosted_code(e: &HostedError) -> &'static str {
    match e {
        HostedError::Unauthorized { .. } | HostedError::NoKey => "api_key_rejected",
        HostedError::Network(_) => "network",
        HostedError::Unexpected(_) => "cloud_error",
        HostedError::Setup(_) => "invalid_input",
        HostedError::Api { status, code, .. } => match (status.as_u16(), code) {
            (403, Some(ErrorCode::QuotaExceeded)) => "quota_exceeded",
            (403, _) => "forbidden",
            (404, _) => "not_found",
            (409, _) => "name_taken",
            (422, _) => "invalid_input",
            (429, _) => "rate_limited",
            (503, Some(ErrorCode::Capacity)) => "capacity",
            _ => "cloud_error",
        },
    }
}

/// What the user reads for a self-service API failure.
fn hosted_message(e: &HostedError) -> String {
    match (hosted_code(e), e) {
        ("api_key_rejected", _) => {
            "The cloud refused the API key (unknown, revoked, or the account is disabled).".into()
        }
        ("quota_exceeded", HostedError::Api { detail, .. }) => {
            format!("Your account is at its quota: {detail}")
        }
        ("forbidden", HostedError::Api { detail, .. }) => {
            format!("The cloud does not allow this: {detail}")
        }
        ("not_found", HostedError::Api { detail, .. }) => {
            format!("Not found at the cloud: {detail}")
        }
        ("name_taken", HostedError::Api { detail, .. }) => format!("That name is taken: {detail}"),
        _ => e.to_string(),
    }
}

impl CoreError {
    /// The stable machine code of [`CommandError::code`].
    pub fn code(&self) -> &'static str {
        match self {
            Self::Engine(e) => e.code(),
            Self::Config(_) => "invalid_config",
            Self::Settings(_) => "settings_file",
            Self::Secret(_) => "keyring",
            Self::UnknownChannel(_) => "unknown_channel",
            Self::Invalid(_) => "invalid_input",
            Self::NoToken(_) => "no_token",
            Self::TokenRequired => "token_required",
            Self::NoAdminToken(_) => "no_admin_token",
            Self::NothingToReplay => "nothing_to_replay",
            Self::NotSignedIn(_) => "not_signed_in",
            Self::Hosted(e) => hosted_code(e),
        }
    }
}

/// The error every IPC command answers with. `code` is one of [`CoreError::code`]'s (the
/// engine's included: `admin_auth` for a refused admin token, `network` for an unreachable
/// cloud) or a shell's own (`internal`); `message` is for the user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub code: String,
    pub message: String,
}

impl CommandError {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
        }
    }
}

impl From<CoreError> for CommandError {
    fn from(e: CoreError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_admin_token_and_an_unreachable_cloud_have_different_codes() {
        let auth: CommandError = CoreError::from(EngineError::AdminAuth {
            status: http::StatusCode::UNAUTHORIZED,
            detail: "bad token".into(),
        })
        .into();
        let down: CommandError =
            CoreError::from(EngineError::AdminUnreachable("connection refused".into())).into();
        assert_eq!(auth.code, "admin_auth");
        assert_eq!(
            auth.message,
            "admin token rejected (HTTP 401 Unauthorized): bad token"
        );
        assert_eq!(down.code, "network");
        assert_eq!(
            serde_json::to_value(&down).expect("json"),
            serde_json::json!({"code": "network", "message": "admin API: connection refused"})
        );
    }
}
