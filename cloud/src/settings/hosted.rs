//! Self-service hosting settings (HOSTED.md §1): the mode, the public base URL of every
//! `webhook_url`, sign-up limits and the default quota of a new account. Flattened into the
//! operator `Settings`; validated with it before anything binds.

use connect_protocol::hosted::{Quota, SelfServiceMode};

use crate::settings::values::ValueError;

fn parse_mode(s: &str) -> Result<SelfServiceMode, ValueError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "off" => Ok(SelfServiceMode::Off),
        "keys" => Ok(SelfServiceMode::Keys),
        "open" => Ok(SelfServiceMode::Open),
        other => Err(ValueError::Mode(other.to_owned())),
    }
}

/// Why the self-service settings are refused (exit 64).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostedSettingsError {
    #[error("WEBHOOK_CONNECT_PUBLIC_URL is required when WEBHOOK_CONNECT_SELF_SERVICE is not off")]
    PublicUrlMissing,
    #[error(
        "WEBHOOK_CONNECT_PUBLIC_URL must be an absolute http:// or https:// URL without query, fragment or credentials"
    )]
    PublicUrlInvalid,
    /// A count or cap that must be above zero.
    #[error("{0} must be positive")]
    NotPositive(&'static str),
}

/// The self-service settings.
#[derive(Clone, Debug, clap::Args)]
pub struct HostedSettings {
    /// `off` (`/api/v1/*` answers 404), `keys` (accounts by the admin API only) or `open`
    /// (anyone may also sign up).
    #[arg(long = "self-service", env = "WEBHOOK_CONNECT_SELF_SERVICE", value_parser = parse_mode, default_value = "off")]
    pub self_service: SelfServiceMode,
    /// Base of every `webhook_url` returned; required unless self-service is off.
    #[arg(long, env = "WEBHOOK_CONNECT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// `open` mode: account creations per client IP per hour.
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_SIGNUP_PER_IP_PER_HOUR",
        default_value_t = 5
    )]
    pub signup_per_ip_per_hour: u64,
    /// Above it account creation answers 503 `capacity`.
    #[arg(long, env = "WEBHOOK_CONNECT_MAX_ACCOUNTS", default_value_t = 10_000)]
    pub max_accounts: u64,
    /// Default quota: channels per account.
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_ACCOUNT_MAX_CHANNELS",
        default_value_t = 10
    )]
    pub account_max_channels: u64,
    /// Default quota: messages per channel.
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_ACCOUNT_MAX_QUEUE_SIZE",
        default_value_t = 10_000
    )]
    pub account_max_queue_size: u64,
    /// Default quota: body bytes per webhook (413 above it).
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_ACCOUNT_MAX_BODY_BYTES",
        default_value_t = 1_048_576
    )]
    pub account_max_body_bytes: u64,
    /// Default quota: webhooks per second per channel (429 above it).
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_ACCOUNT_INGRESS_PER_SECOND",
        default_value_t = 50
    )]
    pub account_ingress_per_second: u64,
    /// Default quota: the longest `ttl_seconds` a channel may ask for.
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_ACCOUNT_MAX_TTL_SECONDS",
        default_value_t = 604_800
    )]
    pub account_max_ttl_seconds: u64,
}

impl HostedSettings {
    /// Checks the public URL (normalised without a trailing `/`) and the positive counts.
    pub fn validate(&mut self) -> Result<(), HostedSettingsError> {
        if self
            .public_url
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            self.public_url = None;
        }
        if let Some(url) = &self.public_url {
            self.public_url = Some(normalise_public_url(url)?);
        }
        if self.self_service != SelfServiceMode::Off && self.public_url.is_none() {
            return Err(HostedSettingsError::PublicUrlMissing);
        }
        for (name, v) in [
            (
                "WEBHOOK_CONNECT_SIGNUP_PER_IP_PER_HOUR",
                self.signup_per_ip_per_hour,
            ),
            (
                "WEBHOOK_CONNECT_ACCOUNT_MAX_QUEUE_SIZE",
                self.account_max_queue_size,
            ),
            (
                "WEBHOOK_CONNECT_ACCOUNT_MAX_BODY_BYTES",
                self.account_max_body_bytes,
            ),
            (
                "WEBHOOK_CONNECT_ACCOUNT_INGRESS_PER_SECOND",
                self.account_ingress_per_second,
            ),
            (
                "WEBHOOK_CONNECT_ACCOUNT_MAX_TTL_SECONDS",
                self.account_max_ttl_seconds,
            ),
        ] {
            if v == 0 {
                return Err(HostedSettingsError::NotPositive(name));
            }
        }
        Ok(())
    }

    /// The quota a new account gets.
    pub fn default_quota(&self) -> Quota {
        Quota {
            max_channels: self.account_max_channels,
            max_queue_size: self.account_max_queue_size,
            max_body_bytes: self.account_max_body_bytes,
            ingress_per_second: self.account_ingress_per_second,
            max_ttl_seconds: self.account_max_ttl_seconds,
        }
    }

    /// The validated base URL (`None` only when self-service is off and none was given).
    pub fn public_url(&self) -> Option<&str> {
        self.public_url.as_deref()
    }
}

/// `http(s)://host[:port][/path]`, no query, fragment or user info; trailing `/` removed.
fn normalise_public_url(raw: &str) -> Result<String, HostedSettingsError> {
    let url = raw.trim();
    let uri: axum::http::Uri = url
        .parse()
        .map_err(|_| HostedSettingsError::PublicUrlInvalid)?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or("");
    let host = uri.host().unwrap_or("");
    if !scheme_ok
        || host.is_empty()
        || authority.contains('@')
        || uri.query().is_some()
        || url.contains('#')
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(HostedSettingsError::PublicUrlInvalid);
    }
    Ok(url.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls_are_absolute_http_urls() {
        assert_eq!(
            normalise_public_url("https://hooks.example.com/").unwrap(),
            "https://hooks.example.com"
        );
        assert_eq!(
            normalise_public_url("http://127.0.0.1:8000/base").unwrap(),
            "http://127.0.0.1:8000/base"
        );
        for bad in [
            "hooks.example.com",
            "ftp://hooks.example.com",
            "https://",
            "https://u:p@hooks.example.com",
            "https://hooks.example.com/?a=b",
            "https://hooks.example.com/#x",
            "/relative",
        ] {
            assert!(normalise_public_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn modes_parse_case_insensitively() {
        assert_eq!(parse_mode("OPEN"), Ok(SelfServiceMode::Open));
        assert_eq!(parse_mode(" keys "), Ok(SelfServiceMode::Keys));
        assert!(parse_mode("on").is_err());
    }
}
