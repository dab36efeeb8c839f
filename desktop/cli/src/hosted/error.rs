//! How a self-service command ends: its error and the documented exit code
//! (`webhook-connect --help`, docs/CLI.md).

use std::io;
use std::process::ExitCode;

use connect_engine::hosted::HostedError;

/// Success.
pub const EXIT_OK: u8 = 0;
/// The cloud answered with an error (not found, name taken, quota…), or another failure.
pub const EXIT_ERROR: u8 = 1;
/// Bad usage or configuration: flags, names, a key file others may read, no keyring.
pub const EXIT_USAGE: u8 = crate::EXIT_CONFIG;
/// The cloud could not be reached (EX_UNAVAILABLE).
pub const EXIT_UNREACHABLE: u8 = 69;
/// Not logged in, or the cloud refused the API key (EX_NOPERM).
pub const EXIT_UNAUTHORIZED: u8 = 77;

/// Why a self-service command stopped.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Flags, names, files: the command cannot run as given.
    #[error("{0}")]
    Usage(String),
    /// No key for this cloud, or no cloud URL at all.
    #[error("{0}")]
    NotLoggedIn(String),
    #[error("{0}")]
    Hosted(#[from] HostedError),
    #[error("{0}")]
    Failed(String),
    /// Whoever read our stdout went away (EPIPE): not an error.
    #[error("stdout closed")]
    StdoutClosed,
    #[error("writing to stdout: {0}")]
    Stdout(io::Error),
}

impl From<io::Error> for CliError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Self::StdoutClosed
        } else {
            Self::Stdout(e)
        }
    }
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => EXIT_USAGE,
            Self::NotLoggedIn(_) => EXIT_UNAUTHORIZED,
            Self::Hosted(HostedError::Unauthorized { .. } | HostedError::NoKey) => {
                EXIT_UNAUTHORIZED
            }
            Self::Hosted(HostedError::Network(_)) => EXIT_UNREACHABLE,
            Self::Hosted(HostedError::Setup(_)) => EXIT_USAGE,
            Self::Hosted(_) | Self::Failed(_) | Self::Stdout(_) => EXIT_ERROR,
            Self::StdoutClosed => EXIT_OK,
        }
    }

    /// Says what went wrong on stderr (with what to do about a refused key) and gives the code.
    pub fn exit(self) -> ExitCode {
        let code = self.exit_code();
        match &self {
            Self::StdoutClosed => {}
            Self::Hosted(HostedError::Unauthorized { .. }) => eprintln!(
                "webhook-connect: {self}\n  log in again: webhook-connect login --cloud-url URL < key-file"
            ),
            e => eprintln!("webhook-connect: {e}"),
        }
        ExitCode::from(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_failure_has_its_documented_code() {
        let unauthorized = CliError::from(HostedError::Unauthorized {
            detail: "Invalid API key".into(),
        });
        assert_eq!(unauthorized.exit_code(), 77);
        assert_eq!(CliError::NotLoggedIn("x".into()).exit_code(), 77);
        assert_eq!(
            CliError::from(HostedError::Network("refused".into())).exit_code(),
            69
        );
        assert_eq!(CliError::Usage("x".into()).exit_code(), 64);
        let not_found = HostedError::Api {
            status: http_status(404),
            code: None,
            detail: "Channel not found".into(),
            retry_after: None,
        };
        assert_eq!(CliError::from(not_found).exit_code(), 1);
        let closed = CliError::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(closed.exit_code(), 0);
    }

    fn http_status(code: u16) -> reqwest::StatusCode {
        reqwest::StatusCode::from_u16(code).expect("status")
    }
}
