//! Typed errors of the configuration sources: what could not be read, what could not be
//! applied, and why start-up failed (with its exit code).

use connect_buffer::BufferError;

use crate::config_source::etcd::{ReadError, TlsFileError};
use crate::config_source::raw::FileError;
use crate::config_source::vault::VaultConfigError;

/// A source could not be read or parsed: nothing of it applies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The webhooks file is missing, unreadable, not JSON or not an object (the text names
    /// the file).
    #[error(transparent)]
    File(#[from] FileError),
    #[error("etcd is not connected")]
    EtcdNotConnected,
    #[error("etcd unreachable: {0}")]
    EtcdUnreachable(ReadError),
    /// etcd connection settings (TLS files) are unusable.
    #[error("{0}")]
    EtcdSettings(TlsFileError),
    /// Vault settings do not build a client.
    #[error(transparent)]
    Vault(#[from] VaultConfigError),
}

/// Why nothing could be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The source could not be read or parsed (file missing, etcd unreachable).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The buffer refused channel registration.
    #[error("cannot register channels: {0}")]
    Buffer(#[from] BufferError),
}

/// Why the configuration sources could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("cannot register channels: {0}")]
    Buffer(#[from] BufferError),
}

/// sysexits: EX_USAGE / EX_CONFIG-style bad configuration.
pub const EXIT_CONFIG: u8 = 64;
/// sysexits: EX_UNAVAILABLE, a required dependency cannot be used.
pub const EXIT_UNAVAILABLE: u8 = 69;

impl StartError {
    /// The process exit code: bad configuration 64, an unusable buffer 69.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Source(_) => EXIT_CONFIG,
            StartError::Buffer(_) => EXIT_UNAVAILABLE,
        }
    }
}

impl From<ApplyError> for StartError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Source(s) => StartError::Source(s),
            ApplyError::Buffer(b) => StartError::Buffer(b),
        }
    }
}
