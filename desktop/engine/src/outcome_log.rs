//! One log line for each delivery outcome that needs a person's attention: every local retry,
//! every hand-back to the cloud for redelivery (NACK `retry=true`) and every dead letter (NACK
//! `retry=false`). They are WARN lines, so they show at the default level (INFO).
//!
//! A line names the channel, the message and webhook ids, the target's configuration key and a
//! short reason (`HTTP 503`, `timeout`, `connection failed`, a module's error) — never a body, a
//! header value, a token or a target URL (a URL may carry credentials in its query).

use std::time::Duration;

use crate::forward::RetryNote;

/// The delivery a line is about.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Subject<'a> {
    pub channel: &'a str,
    pub message_id: &'a str,
    pub webhook_id: &'a str,
    /// The key of the target in the configuration (`*default*` for `default_target`), or
    /// `module` in module mode.
    pub target: &'a str,
}

impl Subject<'_> {
    /// A local attempt failed and another follows after `note.wait`.
    pub fn retrying(&self, note: &RetryNote) {
        self.retrying_after(
            &format!("{}/{}", note.attempt, note.of),
            &note.reason,
            note.wait,
        );
    }

    /// An ordered target's round failed; the message is retried locally (`round` from 1).
    pub fn retrying_ordered(&self, round: u32, reason: &str, wait: Duration) {
        self.retrying_after(&format!("round {round}"), reason, wait);
    }

    fn retrying_after(&self, attempt: &str, reason: &str, wait: Duration) {
        tracing::warn!(
            channel = %self.channel,
            message_id = %self.message_id,
            webhook_id = %self.webhook_id,
            target = %self.target,
            attempt = %attempt,
            reason = %reason,
            wait_ms = wait.as_millis() as u64,
            "delivery failed; retrying"
        );
    }

    /// Handed back to the cloud with NACK `retry=true`.
    pub fn handed_back(&self, reason: &str) {
        tracing::warn!(
            channel = %self.channel,
            message_id = %self.message_id,
            webhook_id = %self.webhook_id,
            target = %self.target,
            reason = %reason,
            "delivery failed; handed back to the cloud for redelivery"
        );
    }

    /// Refused for good with NACK `retry=false`: the cloud dead-letters it.
    pub fn dead_lettered(&self, reason: &str) {
        tracing::warn!(
            channel = %self.channel,
            message_id = %self.message_id,
            webhook_id = %self.webhook_id,
            target = %self.target,
            reason = %reason,
            "webhook dead-lettered"
        );
    }
}
