//! The bounded history of recent deliveries per channel: the request as received (kept whole up
//! to [`BODY_CAP`] so it can be replayed byte for byte), every attempt at the target and the
//! outcome. Bounded by count (`history_size`) and by bytes ([`BYTES_CAP`]), oldest out first.

use std::collections::VecDeque;
use std::time::SystemTime;

use base64::Engine as _;
use connect_protocol::message::WireMessage;

use crate::api::{Attempt, EventDetail, EventSummary, Outcome, RequestView};

/// Body bytes kept per event.
pub const BODY_CAP: usize = 1 << 20;
/// Bytes kept per channel across all events (bodies, headers, attempts).
pub const BYTES_CAP: usize = 32 << 20;
/// Attempts kept per event (the last ones).
pub const ATTEMPTS_CAP: usize = 20;
/// Default `history_size`.
pub const DEFAULT_HISTORY: usize = 1000;

/// One event. Serialisable so that a restarted app can take its history over
/// ([`crate::handle::Carried`]); the body is base64 there.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub summary: EventSummary,
    /// The message without its payload (for replay), body kept in `body`.
    pub wire: WireMessage,
    #[serde(with = "body_b64")]
    pub body: Vec<u8>,
    pub body_len: usize,
    /// The target key the message was routed to (`*default*`, a webhook id...).
    pub target_key: Option<String>,
    pub attempts: Vec<Attempt>,
}

impl Entry {
    /// Builds an in-flight entry from a received message.
    pub fn received(
        seq: u64,
        msg: &WireMessage,
        body: Vec<u8>,
        target_key: Option<String>,
        target_url: Option<String>,
    ) -> Self {
        let body_len = body.len();
        let mut body = body;
        body.truncate(BODY_CAP);
        let mut wire = msg.clone();
        wire.payload = serde_json::Value::Null;
        wire.body_b64 = None;
        Self {
            seq,
            summary: EventSummary {
                message_id: msg.message_id.clone(),
                webhook_id: msg.webhook_id.clone(),
                received_at: rfc3339(SystemTime::now()),
                method: msg.method.clone(),
                path: msg.path.clone(),
                target_url,
                response_status: None,
                duration_ms: 0.0,
                attempts: 0,
                outcome: Outcome::InFlight,
                replay_of: None,
            },
            wire,
            body,
            body_len,
            target_key,
            attempts: Vec::new(),
        }
    }

    fn headers(&self) -> Vec<(String, String)> {
        self.wire.raw_headers.clone().unwrap_or_else(|| {
            self.wire
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
    }

    /// Approximate memory held.
    pub fn weight(&self) -> usize {
        let headers: usize = self.headers().iter().map(|(k, v)| k.len() + v.len()).sum();
        let attempts: usize = self
            .attempts
            .iter()
            .map(|a| {
                a.response_body_excerpt.len()
                    + a.response_headers
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>()
                    + 128
            })
            .sum();
        self.body.capacity() + headers * 2 + attempts + 512
    }

    pub fn truncated(&self) -> bool {
        self.body.len() < self.body_len
    }

    /// Adds attempts, keeping the last [`ATTEMPTS_CAP`].
    pub fn push_attempts(&mut self, more: Vec<Attempt>) {
        self.attempts.extend(more);
        let extra = self.attempts.len().saturating_sub(ATTEMPTS_CAP);
        self.attempts.drain(..extra);
    }

    pub fn detail(&self) -> EventDetail {
        let headers = self.headers();
        let content_type = self.wire.content_type.clone().or_else(|| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                .map(|(_, v)| v.clone())
        });
        EventDetail {
            summary: self.summary.clone(),
            request: RequestView {
                method: self.wire.method.clone(),
                path: self.wire.path.clone(),
                query: self.wire.query.clone(),
                headers,
                body_text: std::str::from_utf8(&self.body).ok().map(str::to_owned),
                body_base64: base64::engine::general_purpose::STANDARD.encode(&self.body),
                body_len: self.body_len as u64,
                body_truncated: self.truncated(),
                content_type,
            },
            attempts: self.attempts.clone(),
        }
    }
}

mod body_b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// The ring of one channel.
#[derive(Debug)]
pub struct History {
    entries: VecDeque<Entry>,
    bytes: usize,
    capacity: usize,
    next_seq: u64,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: VecDeque::new(),
            bytes: 0,
            capacity,
            next_seq: 1,
        }
    }

    /// A ring holding `entries` (oldest first) that numbers new events from `next_seq`; the
    /// bounds apply as if they had been pushed one by one.
    pub fn restore(capacity: usize, entries: Vec<Entry>, next_seq: u64) -> Self {
        let mut h = Self::new(capacity);
        let newest = entries.iter().map(|e| e.seq + 1).max().unwrap_or(1);
        for e in entries {
            h.push(e);
        }
        h.next_seq = next_seq.max(newest);
        h
    }

    /// The kept entries, oldest first, and the next sequence number: what [`Self::restore`]
    /// takes.
    pub fn take_all(&mut self) -> (Vec<Entry>, u64) {
        self.bytes = 0;
        (std::mem::take(&mut self.entries).into(), self.next_seq)
    }

    pub fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.trim();
    }

    fn trim(&mut self) {
        while self.entries.len() > self.capacity
            || (self.bytes > BYTES_CAP && self.entries.len() > 1)
        {
            if let Some(e) = self.entries.pop_front() {
                self.bytes = self.bytes.saturating_sub(e.weight());
            }
        }
    }

    pub fn push(&mut self, e: Entry) {
        if self.capacity == 0 {
            return;
        }
        self.bytes += e.weight();
        self.entries.push_back(e);
        self.trim();
    }

    /// Changes the entry `seq` if it is still kept.
    pub fn update(&mut self, seq: u64, f: impl FnOnce(&mut Entry)) {
        let Ok(i) = self.entries.binary_search_by_key(&seq, |e| e.seq) else {
            return;
        };
        let e = &mut self.entries[i];
        let before = e.weight();
        f(e);
        let after = e.weight();
        self.bytes = self.bytes.saturating_sub(before) + after;
        self.trim();
    }

    /// Newest first.
    pub fn summaries(&self) -> Vec<EventSummary> {
        self.entries
            .iter()
            .rev()
            .map(|e| e.summary.clone())
            .collect()
    }

    /// The newest entry for `message_id`.
    pub fn get(&self, message_id: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.summary.message_id == message_id)
    }

    pub fn last(&self) -> Option<&Entry> {
        self.entries.back()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str) -> WireMessage {
        serde_json::from_value(serde_json::json!({
            "type": "webhook", "message_id": id, "webhook_id": "w", "payload": {"a": 1},
            "timestamp": "2026-11-24T10:00:00.000000+00:00",
            "headers": {"content-type": "application/json"},
        }))
        .expect("wire message")
    }

    #[test]
    fn bounded_by_count_and_newest_first() {
        let mut h = History::new(3);
        for i in 0..5 {
            let s = h.next_seq();
            h.push(Entry::received(
                s,
                &msg(&format!("m{i}")),
                b"{}".to_vec(),
                None,
                None,
            ));
        }
        let ids: Vec<String> = h.summaries().into_iter().map(|s| s.message_id).collect();
        assert_eq!(ids, ["m4", "m3", "m2"]);
        assert!(h.get("m0").is_none());
        h.set_capacity(1);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn bounded_by_bytes_whatever_the_count() {
        let mut h = History::new(10_000);
        for i in 0..100 {
            let s = h.next_seq();
            let body = vec![b'x'; 2 << 20];
            h.push(Entry::received(s, &msg(&format!("m{i}")), body, None, None));
        }
        assert!(h.bytes() <= BYTES_CAP, "{} bytes", h.bytes());
        assert!(h.len() < 40);
        let e = h.get("m99").expect("newest kept");
        assert!(e.truncated());
        assert_eq!(e.detail().request.body_len, 2 << 20);
        assert!(e.detail().request.body_truncated);
    }

    #[test]
    fn update_changes_a_kept_entry_and_ignores_a_dropped_one() {
        let mut h = History::new(2);
        let s0 = h.next_seq();
        h.push(Entry::received(s0, &msg("a"), b"1".to_vec(), None, None));
        let s1 = h.next_seq();
        h.push(Entry::received(s1, &msg("b"), b"2".to_vec(), None, None));
        h.update(s1, |e| e.summary.outcome = Outcome::Delivered);
        assert_eq!(h.get("b").expect("b").summary.outcome, Outcome::Delivered);
        let s2 = h.next_seq();
        h.push(Entry::received(s2, &msg("c"), b"3".to_vec(), None, None));
        h.update(s0, |e| e.summary.outcome = Outcome::Failed);
        assert!(h.get("a").is_none());
        let d = h.get("c").expect("c").detail();
        assert_eq!(d.request.body_text.as_deref(), Some("3"));
        assert_eq!(d.request.content_type.as_deref(), Some("application/json"));
    }
}
