//! The self-service JSON bodies read as the handlers read them (serde into the protocol
//! types, then the checks that need no store), for the fuzz target `cloud/fuzz` `hosted` and
//! its stable-Rust twin test. [`exercise`] panics only on a broken invariant:
//! - a body that parses serializes and parses back to the same value;
//! - a channel request that passes the checks builds the webhook definition ingress runs, and
//!   that definition's authentication runs on the same bytes without panicking.

use connect_buffer::{AccountRecord, HostedChannelRecord};
use connect_config::AuthRequest;
use connect_protocol::hosted::{
    CreateAccountRequest, CreateChannelRequest, Quota, SignUpRequest, UpdateAccountRequest,
    UpdateChannelRequest, is_valid_account_name, is_valid_channel_short_name,
};
use connect_protocol::time::Timestamp;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::hosted::accounts::apply_quota;
use crate::hosted::channels::check_settings;
use crate::hosted::definition::compile;

const QUOTA: Quota = Quota {
    max_channels: 10,
    max_queue_size: 10_000,
    max_body_bytes: 1_048_576,
    ingress_per_second: 50,
    max_ttl_seconds: 604_800,
};

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
    let text = serde_json::to_string(v).expect("a parsed body serializes");
    let back: T = serde_json::from_str(&text).expect("a serialized body parses");
    assert_eq!(&back, v, "round trip of {text}");
}

fn parse<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(body: &[u8]) -> Option<T> {
    let v: T = serde_json::from_slice(body).ok()?;
    round_trip(&v);
    Some(v)
}

fn account() -> AccountRecord {
    AccountRecord {
        account_id: "acc_0123456789abcdef".into(),
        name: "fuzz".into(),
        created_at: Timestamp::from_micros(0),
        disabled: false,
        quota: QUOTA,
        key_digest: String::new(),
    }
}

fn channel(a: &AccountRecord, req: &CreateChannelRequest) -> HostedChannelRecord {
    HostedChannelRecord {
        channel: format!("{}.{}", a.name, req.name),
        account_id: a.account_id.clone(),
        webhook_id: "wh_abcdefghijklmnopqrstuvwxyz".into(),
        created_at: Timestamp::from_micros(0),
        updated_at: Timestamp::from_micros(0),
        description: req.description.clone(),
        verify: req.verify.clone(),
        ttl_seconds: req.ttl_seconds.unwrap_or(86_400),
        max_queue_size: req.max_queue_size.unwrap_or(QUOTA.max_queue_size),
        max_delivery_attempts: req.max_delivery_attempts.unwrap_or(10),
    }
}

fn checked_channel(rec: &HostedChannelRecord, body: &[u8]) {
    let a = account();
    if check_settings(rec, &a).is_ok() {
        let w = compile(rec, &a.quota).expect("a checked channel compiles");
        let headers = axum::http::HeaderMap::new();
        let _ = w.authenticate(&AuthRequest {
            headers: &headers,
            query: "",
            peer: std::net::IpAddr::from([127, 0, 0, 1]),
            body,
            global_trusted_proxies: &[],
            now_unix: 0,
        });
    }
}

/// Feeds `body` to the reader `pick` selects (one per self-service request body).
pub fn exercise(pick: u8, body: &[u8]) {
    match pick % 5 {
        0 => {
            if let Some(r) = parse::<CreateAccountRequest>(body) {
                let _ = is_valid_account_name(&r.name);
                if let Some(q) = &r.quota {
                    let _ = apply_quota(QUOTA, q, 10_485_760);
                }
            }
        }
        1 => {
            if let Some(r) = parse::<SignUpRequest>(body) {
                let _ = r.name.as_deref().map(is_valid_account_name);
            }
        }
        2 => {
            if let Some(r) = parse::<UpdateAccountRequest>(body)
                && let Some(q) = &r.quota
            {
                let _ = apply_quota(QUOTA, q, 10_485_760);
            }
        }
        3 => {
            if let Some(r) = parse::<CreateChannelRequest>(body)
                && is_valid_channel_short_name(&r.name)
            {
                checked_channel(&channel(&account(), &r), body);
            }
        }
        _ => {
            if let Some(r) = parse::<UpdateChannelRequest>(body) {
                let a = account();
                let mut rec = channel(&a, &CreateChannelRequest::default());
                if let Some(v) = r.verify {
                    rec.verify = v;
                }
                rec.ttl_seconds = r.ttl_seconds.unwrap_or(rec.ttl_seconds);
                rec.max_queue_size = r.max_queue_size.unwrap_or(rec.max_queue_size);
                rec.max_delivery_attempts =
                    r.max_delivery_attempts.unwrap_or(rec.max_delivery_attempts);
                rec.description = r.description.or(rec.description);
                checked_channel(&rec, body);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fuzz_seeds_run_clean() {
        let seeds: &[&[u8]] = &[
            br#"{"name":"alice","quota":{"max_channels":0,"max_body_bytes":99999999999}}"#,
            br#"{"name":null}"#,
            br#"{"quota":{"ingress_per_second":0},"disabled":true}"#,
            br#"{"name":"gh","verify":{"preset":"github","secret":"s"},"ttl_seconds":60}"#,
            br#"{"name":"sw","verify":{"preset":"standard-webhooks","secret":"whsec_!!"}}"#,
            br#"{"name":"h","verify":{"preset":"hmac-sha256","secret":"{$HOME}","header":"X-Sig"}}"#,
            br#"{"verify":null,"description":"\u0000"}"#,
            br#"{"verify":{"preset":"slack","secret":"x","header":"bad header"}}"#,
            b"\xff\xfe",
        ];
        for s in seeds {
            for pick in 0..5 {
                exercise(pick, s);
            }
        }
    }
}
