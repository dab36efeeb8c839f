//! Text values shared by flags, environment variables and query parameters.

/// Why a flag, environment or query value was refused (clap shows the text after the name).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The trimmed, lower-cased text.
    #[error("invalid boolean {0:?} (use true/false, 1/0, yes/no, on/off)")]
    Bool(String),
    #[error("invalid number {0:?}")]
    Number(String),
    #[error("invalid number of seconds {0:?}")]
    Seconds(String),
    #[error("must be between {min} and {max}")]
    OutOfRange { min: u64, max: u64 },
    #[error("invalid IP or CIDR {0:?}")]
    Net(String),
    #[error("invalid mode {0:?} (use off, keys or open)")]
    Mode(String),
}

/// Boolean values accepted everywhere: true/false, 1/0, yes/no, on/off (case-insensitive).
pub fn parse_bool(s: &str) -> Result<bool, ValueError> {
    connect_config::bool_from_text(s).ok_or_else(|| ValueError::Bool(s.trim().to_ascii_lowercase()))
}
