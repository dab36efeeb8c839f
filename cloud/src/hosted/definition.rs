//! The webhook definition ingress runs for a self-service channel, built from the record
//! and its account's quota, taken literally (no placeholder is resolved in user input), and
//! checked by the same code as a configured entry — the CONFIG.md §2.4.5 HMAC presets for
//! `verify`, `rate_limit` for the account's ingress rate; the body is stored as received
//! (`blob`), so a signed body is delivered byte for byte.

use std::collections::HashMap;
use std::sync::Arc;

use connect_buffer::HostedChannelRecord;
use connect_config::Webhook;
use connect_protocol::hosted::{Quota, VerifyPreset, VerifySpec};
use parking_lot::Mutex;
use serde_json::{Value, json};

/// Not a secret: the channel's real token is registered by digest; this only satisfies the
/// definition's shape (ingress never reads it).
const DEFINITION_TOKEN: &str = "self-service-channel-token";

fn hmac(v: &VerifySpec) -> Value {
    let mut m = match v.preset {
        VerifyPreset::HmacSha256 => json!({"algorithm": "sha256", "encoding": "hex"}),
        VerifyPreset::Github => json!({"provider": "github"}),
        VerifyPreset::Stripe => json!({"provider": "stripe"}),
        VerifyPreset::Shopify => json!({"provider": "shopify"}),
        VerifyPreset::Slack => json!({"provider": "slack"}),
        VerifyPreset::StandardWebhooks => json!({"provider": "standard-webhooks"}),
    };
    m["secret"] = json!(v.secret);
    if let Some(h) = &v.header {
        m["header"] = json!(h);
    }
    m
}

/// The definition of `rec`'s webhook.
pub fn definition(rec: &HostedChannelRecord, quota: &Quota) -> Value {
    let mut d = json!({
        "data_type": "blob",
        "module": "webhook_connect",
        "module-config": {
            "channel": rec.channel,
            "channel_token": DEFINITION_TOKEN,
            "ttl_seconds": rec.ttl_seconds,
            "max_queue_size": rec.max_queue_size,
            "max_delivery_attempts": rec.max_delivery_attempts,
        },
        "rate_limit": {"max_requests": quota.ingress_per_second, "window_seconds": 1},
    });
    if let Some(v) = &rec.verify {
        d["hmac"] = hmac(v);
    }
    d
}

/// Builds the webhook ingress runs for `rec`; `Err` names what is wrong.
pub fn compile(rec: &HostedChannelRecord, quota: &Quota) -> Result<Webhook, String> {
    Webhook::parse_resolved(&rec.webhook_id, None, definition(rec, quota))
}

/// Compiled definitions by webhook id, with the record and quota they were built from.
#[derive(Default)]
pub struct Compiled(Mutex<HashMap<String, Entry>>);

/// The record and quota a definition was built from, and the definition.
type Entry = (HostedChannelRecord, Quota, Arc<Webhook>);

impl Compiled {
    pub fn forget(&self, webhook_id: &str) {
        self.0.lock().remove(webhook_id);
    }

    pub fn get(&self, rec: &HostedChannelRecord, quota: &Quota) -> Option<Arc<Webhook>> {
        let map = self.0.lock();
        let (r, q, w) = map.get(&rec.webhook_id)?;
        (r == rec && q == quota).then(|| w.clone())
    }

    pub fn put(&self, rec: &HostedChannelRecord, quota: &Quota, w: Arc<Webhook>) {
        self.0
            .lock()
            .insert(rec.webhook_id.clone(), (rec.clone(), *quota, w));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connect_protocol::time::Timestamp;

    fn rec(verify: Option<VerifySpec>) -> HostedChannelRecord {
        HostedChannelRecord {
            channel: "alice.shop".into(),
            account_id: "acc_1".into(),
            webhook_id: "wh_abcdefghijklmnopqrstuvwxyz".into(),
            created_at: Timestamp::now(),
            updated_at: Timestamp::now(),
            description: None,
            verify,
            ttl_seconds: 60,
            max_queue_size: 10,
            max_delivery_attempts: 3,
        }
    }

    const QUOTA: Quota = Quota {
        max_channels: 1,
        max_queue_size: 10,
        max_body_bytes: 100,
        ingress_per_second: 7,
        max_ttl_seconds: 60,
    };

    #[test]
    fn every_preset_builds_and_placeholders_stay_literal() {
        for preset in VerifyPreset::ALL {
            let secret = match preset {
                VerifyPreset::StandardWebhooks => "whsec_c2VjcmV0".to_owned(),
                _ => "{$HOME}".to_owned(),
            };
            let w = compile(
                &rec(Some(VerifySpec {
                    preset,
                    secret,
                    header: None,
                })),
                &QUOTA,
            )
            .unwrap_or_else(|e| panic!("{preset:?}: {e}"));
            assert_eq!(w.rate_limit.map(|r| r.max_requests), Some(7));
            if preset != VerifyPreset::StandardWebhooks {
                assert_eq!(w.resolved["hmac"]["secret"], "{$HOME}", "taken literally");
            }
        }
        assert!(
            compile(
                &rec(Some(VerifySpec {
                    preset: VerifyPreset::StandardWebhooks,
                    secret: "not base64!".into(),
                    header: None,
                })),
                &QUOTA
            )
            .is_err()
        );
    }
}
