//! Live per-channel state, counters and a bounded ring buffer of recent deliveries.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::forward::Response;

/// Recent events kept per channel.
pub const RECENT_CAPACITY: usize = 100;
/// Request body bytes kept per recent event.
pub const REQUEST_EXCERPT_BYTES: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelState {
    Connecting,
    Connected,
    AuthFailed,
    Degraded,
    Paused,
    /// Stopped for good (channel removed, token revoked, or engine shut down).
    Stopped,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub received: u64,
    pub delivered: u64,
    pub failed: u64,
    pub retried: u64,
    pub dead_lettered: u64,
}

/// One delivery as seen by the engine: the request as received and the target's answer.
#[derive(Clone, Debug, Serialize)]
pub struct RecentEvent {
    pub at: SystemTime,
    pub message_id: String,
    pub webhook_id: String,
    pub delivery_count: Option<u32>,
    pub method: Option<String>,
    pub path: Option<String>,
    pub request_headers: Vec<(String, String)>,
    pub request_body_excerpt: String,
    pub request_body_len: usize,
    pub target_url: Option<String>,
    pub response_status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    pub response_body_excerpt: String,
    pub duration: Duration,
    pub attempts: u32,
    /// `ack`, `nack_retry: <error>` or `nack_drop: <error>`.
    pub outcome: String,
}

impl RecentEvent {
    pub(crate) fn response(mut self, r: Response) -> Self {
        self.response_status = r.status;
        self.response_headers = r.headers;
        self.response_body_excerpt = r.body_excerpt;
        self
    }
}

/// A snapshot of one channel.
#[derive(Clone, Debug, Serialize)]
pub struct ChannelStatus {
    pub channel: String,
    pub state: ChannelState,
    pub transport: Option<&'static str>,
    pub connection_id: Option<String>,
    pub server_protocol_version: Option<u32>,
    pub last_error: Option<String>,
    pub connection_attempts: u64,
    pub counters: Counters,
    pub in_flight: u64,
    pub recent: Vec<RecentEvent>,
}

#[derive(Debug)]
pub(crate) struct Live {
    pub status: ChannelStatus,
    pub recent: VecDeque<RecentEvent>,
}

impl Live {
    pub fn new(channel: &str) -> Self {
        Self {
            status: ChannelStatus {
                channel: channel.to_owned(),
                state: ChannelState::Connecting,
                transport: None,
                connection_id: None,
                server_protocol_version: None,
                last_error: None,
                connection_attempts: 0,
                counters: Counters::default(),
                in_flight: 0,
                recent: Vec::new(),
            },
            recent: VecDeque::with_capacity(RECENT_CAPACITY),
        }
    }

    pub fn push(&mut self, e: RecentEvent) {
        if self.recent.len() >= RECENT_CAPACITY {
            self.recent.pop_front();
        }
        self.recent.push_back(e);
    }

    pub fn snapshot(&self) -> ChannelStatus {
        let mut s = self.status.clone();
        s.recent = self.recent.iter().cloned().collect();
        s
    }
}

/// First `max` bytes as (lossy) text.
pub(crate) fn excerpt(bytes: &[u8], max: usize) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(max)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(i: usize) -> RecentEvent {
        RecentEvent {
            at: SystemTime::now(),
            message_id: format!("msg_{i}"),
            webhook_id: "w".into(),
            delivery_count: Some(1),
            method: None,
            path: None,
            request_headers: Vec::new(),
            request_body_excerpt: String::new(),
            request_body_len: 0,
            target_url: None,
            response_status: Some(200),
            response_headers: Vec::new(),
            response_body_excerpt: String::new(),
            duration: Duration::ZERO,
            attempts: 1,
            outcome: "ack".into(),
        }
    }

    #[test]
    fn recent_events_are_a_bounded_ring() {
        let mut live = Live::new("c");
        for i in 0..RECENT_CAPACITY + 5 {
            live.push(event(i));
        }
        let snap = live.snapshot();
        assert_eq!(snap.recent.len(), RECENT_CAPACITY);
        assert_eq!(snap.recent[0].message_id, "msg_5");
        assert_eq!(excerpt(&[b'a'; 10], 4), "aaaa");
    }
}
