//! Channel statistics in the admin and `/connect/status` shape (§5.5, §8.2): the buffer's
//! counts plus this replica's (or, with a shared buffer, every replica's) connections.

use connect_buffer::{BufferError, BufferStats};
use connect_protocol::admin::ChannelStats;
use connect_protocol::time::Timestamp;

use crate::hub::Hub;

/// This replica's live connections of channel `c`.
pub fn live_count(hub: &Hub, c: &str) -> u64 {
    hub.channel(c)
        .map(|rt| rt.connection_count() as u64)
        .unwrap_or(0)
}

/// The stats view of buffer stats `b` of channel `name`.
pub fn stats_view(hub: &Hub, name: &str, b: &BufferStats) -> ChannelStats {
    let now = Timestamp::now();
    ChannelStats {
        channel: name.to_owned(),
        messages_queued: b.ready,
        messages_in_flight: b.in_flight,
        messages_delivered: b.counters.acked,
        messages_dispatched: b.counters.dispatched,
        messages_expired: b.counters.expired,
        messages_dead_lettered: b.counters.dead_lettered,
        connected_clients: live_count(hub, name),
        messages_acked: b.counters.acked,
        messages_nacked: b.counters.nacked,
        messages_delayed: b.delayed,
        messages_received: b.counters.received,
        dead_letters: b.dead_letters,
        oldest_message_age_seconds: b
            .oldest_unsettled_at
            .map(|t| ((now.micros() - t.micros()).max(0) as f64) / 1e6),
    }
}

/// Stats of a channel in the admin and `/connect/status` shape.
pub async fn channel_stats(hub: &Hub, name: &str) -> Result<ChannelStats, BufferError> {
    let buffer = hub.buffer();
    let b = buffer.stats(name).await?;
    let mut view = stats_view(hub, name, &b);
    if buffer.is_shared() {
        // Connections of every replica sharing the buffer.
        view.connected_clients = buffer.connection_count(name).await?;
    }
    Ok(view)
}
