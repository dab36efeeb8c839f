//! Text values shared by flags, environment variables and query parameters.

/// Boolean values accepted everywhere: true/false, 1/0, yes/no, on/off (case-insensitive).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(format!(
            "invalid boolean {other:?} (use true/false, 1/0, yes/no, on/off)"
        )),
    }
}
