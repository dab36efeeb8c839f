//! Live per-channel state and counters, and the snapshot handed to the CLI and the app.

use std::time::{Duration, SystemTime};

use crate::api::{ChannelStatus, DeliveryCounters, LinkState, QueueDepth, Transport};
use crate::history::rfc3339;
use crate::stats::Window;

/// The mutable state of one channel.
#[derive(Debug)]
pub(crate) struct LiveStatus {
    pub state: LinkState,
    pub transport: Option<Transport>,
    pub connection_id: Option<String>,
    pub server_protocol_version: Option<u32>,
    /// Private: set with [`LiveStatus::fail`], cleared by [`LiveStatus::connected`] and
    /// [`LiveStatus::idle`], so that an error never outlives the state it explains.
    last_error: Option<(String, SystemTime)>,
    pub connection_attempts: u64,
    pub counters: DeliveryCounters,
    pub in_flight: u64,
    pub queue: Option<QueueDepth>,
    pub last_event_at: Option<SystemTime>,
    /// The last delivery failed at the target (shown as degraded while connected).
    pub target_failing: bool,
}

impl LiveStatus {
    /// Enters `state` because of `error`, noting when.
    pub fn fail(&mut self, state: LinkState, error: String) {
        self.state = state;
        self.last_error = Some((error, SystemTime::now()));
    }

    /// A connection is established: earlier errors no longer describe the channel.
    pub fn connected(&mut self) {
        self.state = LinkState::Connected;
        self.last_error = None;
    }

    /// Paused or disconnected by the user: no link, nothing failing.
    pub fn idle(&mut self, state: LinkState) {
        self.state = state;
        self.connection_id = None;
        self.last_error = None;
    }
}

#[derive(Debug)]
pub(crate) struct Live {
    pub status: LiveStatus,
    pub window: Window,
}

impl Live {
    pub fn new() -> Self {
        Self {
            status: LiveStatus {
                state: LinkState::Connecting,
                transport: None,
                connection_id: None,
                server_protocol_version: None,
                last_error: None,
                connection_attempts: 0,
                counters: DeliveryCounters::default(),
                in_flight: 0,
                queue: None,
                last_event_at: None,
                target_failing: false,
            },
            window: Window::default(),
        }
    }

    /// Records the end of one delivery of a cloud message.
    pub fn finished(&mut self, latency: Duration, ok: bool) {
        self.window.record(SystemTime::now(), latency, ok);
        self.status.target_failing = !ok;
    }

    pub fn snapshot(&self, key: &str, channel: &str) -> ChannelStatus {
        let s = &self.status;
        let now = SystemTime::now();
        let state = if s.state == LinkState::Connected && s.target_failing {
            LinkState::Degraded
        } else {
            s.state
        };
        ChannelStatus {
            key: key.to_owned(),
            channel: channel.to_owned(),
            state,
            transport: s.transport,
            connection_id: s.connection_id.clone(),
            last_error: s.last_error.as_ref().map(|(e, _)| e.clone()),
            last_error_at: s.last_error.as_ref().map(|(_, at)| rfc3339(*at)),
            connection_attempts: s.connection_attempts,
            counters: s.counters.clone(),
            in_flight: s.in_flight,
            latency: self.window.latency(now),
            series: self.window.series(now),
            queue: s.queue.clone(),
            last_event_at: s.last_event_at.map(rfc3339),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_target_shows_as_degraded_while_connected() {
        let mut live = Live::new();
        live.status.state = LinkState::Connected;
        live.finished(Duration::from_millis(3), false);
        assert_eq!(live.snapshot("k", "c").state, LinkState::Degraded);
        live.finished(Duration::from_millis(3), true);
        let snap = live.snapshot("k", "c");
        assert_eq!(snap.state, LinkState::Connected);
        assert_eq!(snap.latency.samples, 2);
    }

    #[test]
    fn an_error_is_shown_with_its_time_until_the_next_connection() {
        let mut live = Live::new();
        live.status
            .fail(LinkState::Connecting, "connection refused".into());
        let snap = live.snapshot("k", "c");
        assert_eq!(snap.last_error.as_deref(), Some("connection refused"));
        assert!(snap.last_error_at.is_some());
        live.status.connected();
        let snap = live.snapshot("k", "c");
        assert_eq!((snap.last_error, snap.last_error_at), (None, None));
        live.status
            .fail(LinkState::Degraded, "heartbeat timeout".into());
        live.status.idle(LinkState::Paused);
        assert_eq!(live.snapshot("k", "c").last_error, None);
    }
}
