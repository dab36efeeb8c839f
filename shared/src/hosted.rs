//! Self-service hosting objects (HOSTED.md): accounts, their quotas and API keys, and the
//! channels an account owns.
//!
//! The cloud serves these shapes under `/admin/webhook-connect/accounts…` and `/api/v1/…`;
//! the CLI and the desktop app read them. Nothing here is specific to a backend.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use crate::admin::ConnectionInfo;
use crate::time::Timestamp;

/// Prefix of every account API key (`whc_` + 32 random bytes, URL-safe base64).
pub const API_KEY_PREFIX: &str = "whc_";
/// Prefix of an account id (`acc_` + 16 hex digits).
pub const ACCOUNT_ID_PREFIX: &str = "acc_";
/// Prefix of a self-service webhook id (`wh_` + 26 base32 characters).
pub const WEBHOOK_ID_PREFIX: &str = "wh_";
/// The channel `webhook-connect listen` creates or reuses when none is named.
pub const DEFAULT_LISTEN_CHANNEL: &str = "dev";

/// `WEBHOOK_CONNECT_SELF_SERVICE` (HOSTED.md §1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum SelfServiceMode {
    /// `/api/v1/*` answers 404.
    #[default]
    Off,
    /// Accounts are created through the admin API only.
    Keys,
    /// Anyone may also create an account with `POST /api/v1/accounts`.
    Open,
}

/// What an account may use. Every field is a cap the cloud enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Quota {
    pub max_channels: u64,
    pub max_queue_size: u64,
    pub max_body_bytes: u64,
    pub ingress_per_second: u64,
    pub max_ttl_seconds: u64,
}

/// A partial quota, as sent in `POST /accounts` and `PATCH /accounts/{id}`: absent fields keep
/// the default (on creation) or the current value (on update).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct QuotaPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub max_channels: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub max_queue_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub max_body_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub ingress_per_second: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub max_ttl_seconds: Option<u64>,
}

/// An account as every endpoint shows it (never with its key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct Account {
    pub account_id: String,
    pub name: String,
    pub created_at: Timestamp,
    pub disabled: bool,
    pub quota: Quota,
    /// Number of channels the account owns.
    pub channels: u64,
}

/// `201` of `POST /accounts` (admin or open sign-up): the account and its key, shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct AccountCreated {
    #[serde(flatten)]
    pub account: Account,
    pub api_key: String,
}

/// Body of `POST /admin/webhook-connect/accounts`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct CreateAccountRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub quota: Option<QuotaPatch>,
}

/// Body of `POST /api/v1/accounts` (open sign-up): without a name one is generated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct SignUpRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub name: Option<String>,
}

/// Body of `PATCH /admin/webhook-connect/accounts/{id}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct UpdateAccountRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub quota: Option<QuotaPatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub disabled: Option<bool>,
}

/// `200` of `GET /admin/webhook-connect/accounts`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct AccountList {
    pub accounts: Vec<Account>,
}

/// `200` of `POST /admin/webhook-connect/accounts/{id}/rotate-key`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct KeyRotated {
    pub account_id: String,
    pub api_key: String,
}

/// `200` of `DELETE /admin/webhook-connect/accounts/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct AccountDeleted {
    pub deleted: String,
    pub channels_deleted: u64,
}

/// A provider check run at ingress before the write (CONFIG.md §2.4.5 presets).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, TS)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyPreset {
    Github,
    Stripe,
    Shopify,
    Slack,
    StandardWebhooks,
    HmacSha256,
}

impl VerifyPreset {
    /// Every preset, in the order the documentation lists them.
    pub const ALL: [VerifyPreset; 6] = [
        VerifyPreset::Github,
        VerifyPreset::Stripe,
        VerifyPreset::Shopify,
        VerifyPreset::Slack,
        VerifyPreset::StandardWebhooks,
        VerifyPreset::HmacSha256,
    ];

    /// The name used on the wire and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyPreset::Github => "github",
            VerifyPreset::Stripe => "stripe",
            VerifyPreset::Shopify => "shopify",
            VerifyPreset::Slack => "slack",
            VerifyPreset::StandardWebhooks => "standard-webhooks",
            VerifyPreset::HmacSha256 => "hmac-sha256",
        }
    }

    /// Parses the wire name.
    pub fn parse(text: &str) -> Option<VerifyPreset> {
        VerifyPreset::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// `verify` as sent when creating or updating a channel. The secret is write-only.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct VerifySpec {
    pub preset: VerifyPreset,
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub header: Option<String>,
}

impl std::fmt::Debug for VerifySpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifySpec")
            .field("preset", &self.preset)
            .field("secret", &"***")
            .field("header", &self.header)
            .finish()
    }
}

/// `verify` as the cloud shows it: never the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct VerifyView {
    pub preset: VerifyPreset,
    pub secret_set: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub header: Option<String>,
}

/// Body of `POST /api/v1/channels`. `name` is the short name; the channel is
/// `<account name>.<name>`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct CreateChannelRequest {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub verify: Option<VerifySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub max_queue_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub max_delivery_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub description: Option<String>,
}

/// Body of `PATCH /api/v1/channels/{channel}`: absent fields are unchanged;
/// `"verify": null` removes the check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct UpdateChannelRequest {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "double_option"
    )]
    #[ts(optional, type = "VerifySpec | null")]
    pub verify: Option<Option<VerifySpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub ttl_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub max_queue_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub max_delivery_attempts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub description: Option<String>,
}

/// The settings of a self-service channel, as shown in its detail and creation answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct HostedChannelSettings {
    pub ttl_seconds: u64,
    pub max_queue_size: u64,
    pub max_delivery_attempts: u32,
    pub max_body_bytes: u64,
    pub ingress_per_second: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub verify: Option<VerifyView>,
}

/// `201` of `POST /api/v1/channels`: the only answer that carries the channel token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ChannelCreated {
    pub channel: String,
    pub webhook_id: String,
    pub webhook_url: String,
    pub channel_token: String,
    pub created_at: Timestamp,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(flatten)]
    pub settings: HostedChannelSettings,
}

/// The counters shown with each channel of `GET /api/v1/channels`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct HostedChannelStats {
    pub messages_queued: u64,
    pub messages_in_flight: u64,
    pub dead_letters: u64,
    pub connected_clients: u64,
    pub messages_received: u64,
    pub messages_acked: u64,
}

/// An element of `GET /api/v1/channels`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct HostedChannel {
    pub channel: String,
    pub webhook_id: String,
    pub webhook_url: String,
    pub created_at: Timestamp,
    #[serde(default)]
    pub description: Option<String>,
    pub stats: HostedChannelStats,
}

/// `200` of `GET /api/v1/channels`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct HostedChannelList {
    pub channels: Vec<HostedChannel>,
}

/// `200` of `GET` and `PATCH /api/v1/channels/{channel}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, TS)]
pub struct HostedChannelDetail {
    #[serde(flatten)]
    pub channel: HostedChannel,
    #[serde(flatten)]
    pub settings: HostedChannelSettings,
    pub connected_clients: Vec<ConnectionInfo>,
}

/// `200` of `DELETE /api/v1/channels/{channel}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ChannelDeleted {
    pub deleted: String,
    pub messages_discarded: u64,
}

/// Whether `name` is a valid account name: `^[a-z0-9][a-z0-9-]{1,31}$`.
pub fn is_valid_account_name(name: &str) -> bool {
    name_matches(name, 2, 32)
}

/// Whether `name` is a valid short channel name: `^[a-z0-9][a-z0-9-]{0,39}$`.
pub fn is_valid_channel_short_name(name: &str) -> bool {
    name_matches(name, 1, 40)
}

/// The full name of an account's channel: `<account>.<name>`.
pub fn channel_full_name(account: &str, short: &str) -> String {
    format!("{account}.{short}")
}

fn name_matches(name: &str, min: usize, max: usize) -> bool {
    let bytes = name.as_bytes();
    (min..=max).contains(&bytes.len())
        && bytes[0].is_ascii_lowercase() | bytes[0].is_ascii_digit()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

/// `Option<Option<T>>` that tells an absent field from an explicit `null`.
mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &Option<Option<T>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(deserializer).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_documented_patterns() {
        assert!(is_valid_account_name("alice"));
        assert!(is_valid_account_name("a1"));
        assert!(!is_valid_account_name("a"));
        assert!(!is_valid_account_name("-alice"));
        assert!(!is_valid_account_name("Alice"));
        assert!(!is_valid_account_name(&"a".repeat(33)));
        assert!(is_valid_account_name(&"a".repeat(32)));
        assert!(is_valid_channel_short_name("d"));
        assert!(is_valid_channel_short_name("shop-dev"));
        assert!(!is_valid_channel_short_name("shop.dev"));
        assert!(!is_valid_channel_short_name(&"a".repeat(41)));
        assert!(!is_valid_channel_short_name(""));
    }

    #[test]
    fn verify_presets_round_trip_their_wire_names() {
        for preset in VerifyPreset::ALL {
            let json = serde_json::to_string(&preset).expect("serialize");
            assert_eq!(json, format!("\"{}\"", preset.as_str()));
            assert_eq!(VerifyPreset::parse(preset.as_str()), Some(preset));
        }
        assert_eq!(VerifyPreset::parse("gitlab"), None);
    }

    #[test]
    fn a_patch_tells_an_absent_verify_from_null() {
        let absent: UpdateChannelRequest = serde_json::from_str("{}").expect("parse");
        assert_eq!(absent.verify, None);
        let null: UpdateChannelRequest = serde_json::from_str(r#"{"verify":null}"#).expect("parse");
        assert_eq!(null.verify, Some(None));
    }

    #[test]
    fn the_secret_never_shows_in_debug_output() {
        let spec = VerifySpec {
            preset: VerifyPreset::Github,
            secret: "s3cr3t".into(),
            header: None,
        };
        assert!(!format!("{spec:?}").contains("s3cr3t"));
    }
}
