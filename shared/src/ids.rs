//! Identifiers (§1.4) and the name rules for channels, namespaces and webhook ids (§2.2).

use rand::RngCore;
use sha2::{Digest, Sha256};

/// `msg_` + 16 lower-case hex digits (64 random bits).
pub fn new_message_id() -> String {
    let mut b = [0u8; 8];
    rand::rng().fill_bytes(&mut b);
    format!("msg_{}", hex::encode(b))
}

/// The kind of a connector connection, which fixes its id prefix.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, ts_rs::TS,
)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Websocket,
    Sse,
    LongPoll,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Websocket => "websocket",
            Protocol::Sse => "sse",
            Protocol::LongPoll => "long_poll",
        }
    }

    fn id_prefix(self) -> &'static str {
        match self {
            Protocol::Websocket => "wsc_",
            Protocol::Sse => "sse_",
            Protocol::LongPoll => "poll_",
        }
    }
}

/// `wsc_`/`sse_`/`poll_` + 32 lower-case hex digits from a random UUID (never time or counters).
pub fn new_connection_id(protocol: Protocol) -> String {
    format!("{}{}", protocol.id_prefix(), uuid::Uuid::new_v4().simple())
}

/// `ch_tok_` + 48 lower-case hex digits (24 random bytes), for token rotation (§7).
pub fn new_channel_token() -> String {
    let mut b = [0u8; 24];
    rand::rng().fill_bytes(&mut b);
    format!("ch_tok_{}", hex::encode(b))
}

/// SHA-256 hex digest of a token: the only form in which channel tokens are stored.
pub fn token_digest(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$` and no `..`.
pub fn is_valid_channel_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
        && !name.contains("..")
}

/// `^[A-Za-z0-9_-]{1,64}$`.
pub fn is_valid_namespace(ns: &str) -> bool {
    (1..=64).contains(&ns.len())
        && ns
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
}

const RESERVED_IDS: &[&str] = &[
    "stats",
    "health",
    "docs",
    "openapi.json",
    "redoc",
    "api",
    "admin",
    "root",
    "system",
    "internal",
    "favicon.ico",
    "robots.txt",
];

/// Checks a webhook id (already trimmed) against §2.2; `Err` holds the 400 `detail`.
pub fn validate_webhook_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        return Err("Webhook ID cannot be empty");
    }
    if id.chars().count() > 64 {
        return Err("Webhook ID too long (max 64 characters)");
    }
    let lower = id.to_ascii_lowercase();
    if RESERVED_IDS.contains(&lower.as_str()) {
        return Err("Webhook ID is reserved");
    }
    let b = id.as_bytes();
    if !b[0].is_ascii_alphanumeric()
        || !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'-')
    {
        return Err("Webhook ID contains invalid characters");
    }
    if ["internal_", "system_", "admin_"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Err("Webhook ID uses a reserved prefix");
    }
    if ["_internal", "_system", "_admin"]
        .iter()
        .any(|s| lower.ends_with(s))
    {
        return Err("Webhook ID uses a reserved suffix");
    }
    if id.contains("--") || id.contains("__") {
        return Err("Webhook ID contains consecutive separators");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_documented_shape() {
        let m = new_message_id();
        assert!(m.starts_with("msg_") && m.len() == 20, "{m}");
        let c = new_connection_id(Protocol::LongPoll);
        assert!(c.starts_with("poll_") && c.len() == 37, "{c}");
        let t = new_channel_token();
        assert!(t.starts_with("ch_tok_") && t.len() == 55, "{t}");
        assert_ne!(new_message_id(), new_message_id());
    }

    #[test]
    fn token_digest_is_sha256() {
        assert_eq!(
            token_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            token_digest(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn channel_names_reject_key_and_glob_characters() {
        for bad in [
            "",
            "a:b",
            "a*",
            "a?",
            "a[b]",
            "a/b",
            "a..b",
            ".a",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(!is_valid_channel_name(bad), "{bad:?}");
        }
        for good in ["a", "team-alpha", "t.e_s-t", &"x".repeat(128)] {
            assert!(is_valid_channel_name(good), "{good:?}");
        }
    }

    #[test]
    fn webhook_ids_follow_the_ingress_rules() {
        assert!(validate_webhook_id("github-main").is_ok());
        assert!(validate_webhook_id("default").is_ok());
        for bad in [
            "", "stats", "ADMIN", "_x", "admin_x", "x_admin", "a--b", "a__b", "a.b", "-a",
        ] {
            assert!(validate_webhook_id(bad).is_err(), "{bad:?}");
        }
        assert!(validate_webhook_id(&"a".repeat(65)).is_err());
    }
}
