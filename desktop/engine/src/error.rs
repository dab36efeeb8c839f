//! The engine's error type.

/// Start-up or control failure (bad TLS files, unknown channel, ...).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EngineError(pub String);
