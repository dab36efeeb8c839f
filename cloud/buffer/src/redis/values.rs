//! Decoding what Redis answers: values, the stored channel state, attempt records, messages;
//! and splicing the sequence number into a serialized message.

use std::collections::HashMap;
use std::sync::Arc;

use connect_protocol::admin::{ChannelState, TokenSource};
use connect_protocol::message::{Attempts, DeadLetterReason, StoredMessage};
use connect_protocol::time::Timestamp;
use redis::Value;

use crate::{BufferError, ChannelRecord, ChannelSettings, Result, TokenState};

pub(super) fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Okay => "OK".into(),
        Value::Double(d) => d.to_string(),
        _ => String::new(),
    }
}

pub(super) fn int(v: &Value) -> i64 {
    match v {
        Value::Int(i) => *i,
        other => text(other).parse().unwrap_or(0),
    }
}

pub(super) fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        Value::Nil => Vec::new(),
        other => vec![other],
    }
}

pub(super) fn flat_map(v: Value) -> HashMap<String, String> {
    let items = array(v);
    items
        .chunks(2)
        .filter(|c| c.len() == 2)
        .map(|c| (text(&c[0]), text(&c[1])))
        .collect()
}

pub(super) fn micros(s: Option<&String>) -> Option<Timestamp> {
    s.and_then(|s| s.parse::<i64>().ok())
        .map(Timestamp::from_micros)
}

pub(super) fn micros_str(s: &str) -> Option<Timestamp> {
    s.parse::<f64>()
        .ok()
        .map(|f| Timestamp::from_micros(f as i64))
}

pub(super) fn parse_reason(s: &str) -> Option<DeadLetterReason> {
    match s {
        "rejected" => Some(DeadLetterReason::Rejected),
        "max_delivery_attempts" => Some(DeadLetterReason::MaxDeliveryAttempts),
        "expired" => Some(DeadLetterReason::Expired),
        _ => None,
    }
}

/// The attempt record as the scripts store it.
#[derive(Debug, Default, serde::Deserialize)]
pub(super) struct Att {
    #[serde(default)]
    dc: u32,
    first: Option<String>,
    last: Option<String>,
    err: Option<String>,
    pub(super) reason: Option<String>,
    pub(super) dl: Option<String>,
}

impl Att {
    pub(super) fn parse(s: &str) -> Self {
        serde_json::from_str(s).unwrap_or_default()
    }

    pub(super) fn attempts(&self) -> Attempts {
        Attempts {
            delivery_count: self.dc,
            first_attempt_at: micros(self.first.as_ref()),
            last_attempt_at: micros(self.last.as_ref()),
            last_error: self.err.clone(),
        }
    }
}

pub(super) fn parse_message(json: &str) -> Result<Arc<StoredMessage>> {
    serde_json::from_str(json)
        .map(Arc::new)
        .map_err(|e| BufferError::Unavailable(format!("corrupt stored message: {e}")))
}

pub(super) fn record_from(name: &str, m: &HashMap<String, String>) -> Result<ChannelRecord> {
    let get = |k: &str| m.get(k).cloned().unwrap_or_default();
    let settings: ChannelSettings = serde_json::from_str(&get("settings"))
        .map_err(|e| BufferError::Unavailable(format!("corrupt channel settings: {e}")))?;
    let created_at = micros(m.get("created_at")).unwrap_or_else(|| Timestamp::from_micros(0));
    Ok(ChannelRecord {
        name: name.to_owned(),
        settings,
        owner: get("owner"),
        webhook_ids: get("wh_ids")
            .split('\n')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        state: if get("status") == "orphaned" {
            ChannelState::Orphaned
        } else {
            ChannelState::Active
        },
        orphaned_at: micros(m.get("orphaned_at")),
        created_at,
        updated_at: micros(m.get("updated_at")).unwrap_or(created_at),
        token: TokenState {
            current_digest: get("tok_cur"),
            source: if get("tok_src") == "rotated" {
                TokenSource::Rotated
            } else {
                TokenSource::Config
            },
            configured_digest: get("tok_cfg"),
            previous_digest: m.get("tok_old").cloned(),
            previous_expires_at: micros(m.get("tok_old_exp")),
            rotated_at: micros(m.get("rotated_at")),
        },
    })
}

/// Splits the serialized message around its sequence number (`"sequence":0`), which the
/// enqueue script fills in. Inside JSON strings every quote is escaped, so the first
/// `,"sequence":0,` is the field itself.
pub(super) fn split_at_sequence(json: &str) -> Result<(String, String)> {
    const NEEDLE: &str = ",\"sequence\":0,";
    let at = json
        .find(NEEDLE)
        .ok_or_else(|| BufferError::Unavailable("message serialization lacks a sequence".into()))?;
    let split = at + NEEDLE.len() - 2;
    Ok((json[..split].to_owned(), json[split + 1..].to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_is_spliced_into_the_field_only() {
        let json = r#"{"message_id":"m","channel":"c\",\"sequence\":0,","webhook_id":"w","sequence":0,"x":1}"#;
        let (a, b) = split_at_sequence(json).unwrap();
        assert_eq!(
            format!("{a}42{b}"),
            json.replace(r#""sequence":0,"x""#, r#""sequence":42,"x""#)
        );
    }
}
