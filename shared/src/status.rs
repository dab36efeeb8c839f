//! `GET /connect/status/{channel}` (§5.5) as a connector reads it from a cloud of either
//! version (§1.2 rule 3: every v2 field optional). The cloud writes
//! [`crate::frames::StatusResponse`]; a v1 cloud's answer lacks the v2 keys, and this reading
//! keeps their absence visible instead of turning it into zeros.

use serde::Deserialize;

/// The body of a `/connect/status` answer, from a v1 or v2 cloud.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StatusReading {
    /// Version 1 always says true (Appendix A #27).
    #[serde(default)]
    pub connected: Option<bool>,
    #[serde(default)]
    pub stats: StatsReading,
}

/// The `stats` object of a [`StatusReading`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StatsReading {
    /// Version 1 always reports 0 (Appendix A #28).
    #[serde(default)]
    pub messages_queued: u64,
    #[serde(default)]
    pub messages_in_flight: u64,
    /// v2 only.
    #[serde(default)]
    pub messages_delayed: Option<u64>,
    /// Every dead-lettering so far; the only dead-letter figure of version 1.
    #[serde(default)]
    pub messages_dead_lettered: u64,
    /// v2 only: the dead-letter queue's size now.
    #[serde(default)]
    pub dead_letters: Option<u64>,
}

impl StatsReading {
    /// The channel's dead letters: the queue size from a v2 cloud; from a v1 cloud, which has
    /// no such figure, its count of dead-letterings (v1 can neither replay nor delete dead
    /// letters, so nothing leaves that count).
    pub fn dead_letter_count(&self) -> u64 {
        self.dead_letters.unwrap_or(self.messages_dead_lettered)
    }

    /// True when the stats carry keys only version 2 sends.
    pub fn has_v2_keys(&self) -> bool {
        self.dead_letters.is_some() || self.messages_delayed.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_answer_counts_its_dead_letterings() {
        // The shape of the reference cloud's answer (no v2 keys).
        let v1: StatusReading = serde_json::from_str(
            r#"{"channel":"c","connected":true,"stats":{"channel":"c","messages_queued":0,
            "messages_in_flight":1,"messages_delivered":9,"messages_expired":0,
            "messages_dead_lettered":4,"connected_clients":1},"server_time":"t"}"#,
        )
        .unwrap_or_default();
        assert_eq!(v1.stats.dead_letter_count(), 4);
        assert_eq!(v1.stats.messages_in_flight, 1);
        assert!(!v1.stats.has_v2_keys());
    }

    #[test]
    fn a_v2_answer_gives_the_queue_size() {
        let stats = crate::admin::ChannelStats {
            messages_dead_lettered: 7,
            dead_letters: 2,
            messages_delayed: 1,
            ..Default::default()
        };
        let body = serde_json::json!({"channel": "c", "connected": true, "stats": stats});
        let v2: StatusReading = serde_json::from_value(body).unwrap_or_default();
        assert_eq!(v2.stats.dead_letter_count(), 2);
        assert_eq!(v2.stats.messages_delayed, Some(1));
        assert!(v2.stats.has_v2_keys());
    }
}
