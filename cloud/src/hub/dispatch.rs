//! The per-channel dispatcher: waits on the buffer's notifier, picks the eligible connection
//! with the fewest leases (ties: the one served least recently, §6.2 rule 3) and asks the
//! buffer to lease messages on its behalf.

use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_buffer::{Buffer, BufferError};

use crate::hub::channel::ChannelRt;
use crate::metrics::Metrics;

/// The dispatcher task of one channel; ends when the channel's stop token fires.
pub(crate) async fn run(buffer: Arc<dyn Buffer>, metrics: Arc<Metrics>, rt: Arc<ChannelRt>) {
    // Started only for a live channel (one that had a connection), which has both.
    let (Some(stop), Some(wake)) = (rt.stop_token().cloned(), rt.waker().cloned()) else {
        return;
    };
    let mut last_sync = Instant::now();
    loop {
        // Safety net while connections are open: wake-ups can be missed across replicas, and
        // delayed messages become due without an event on this replica. Without connections
        // there is nothing to hand out, and a new one wakes this task.
        let idle = rt.connection_count() == 0;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)), if !idle => {}
        }
        if buffer.is_shared() && last_sync.elapsed() >= Duration::from_secs(1) {
            last_sync = Instant::now();
            sync_leases(buffer.as_ref(), &rt).await;
        }
        if let Err(e) = dispatch_once(buffer.as_ref(), &metrics, &rt).await {
            tracing::warn!(channel = %rt.name(), error = %e, "dispatch failed");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Sets the in-flight counts of this replica's connections to the leases the shared
/// buffer records (leases settled, NACKed or reclaimed through other replicas). Runs in
/// the channel's dispatcher task, so no local lease is half taken meanwhile; a local
/// ACK racing with it is corrected by the next round.
async fn sync_leases(buffer: &dyn Buffer, rt: &ChannelRt) {
    let Ok(Some(counts)) = buffer.lease_counts(rt.name()).await else {
        return;
    };
    rt.with_connections(|conns| {
        for c in conns {
            let held = counts.get(c.id()).copied().unwrap_or(0) as usize;
            c.set_in_flight(held);
        }
    });
}

/// Hands out messages until no eligible connection or no ready message is left.
pub(crate) async fn dispatch_once(
    buffer: &dyn Buffer,
    metrics: &Metrics,
    rt: &ChannelRt,
) -> Result<(), BufferError> {
    // A channel that never went live has no connection to hand anything to.
    let (Some(stop), Some(wake)) = (rt.stop_token(), rt.waker()) else {
        return Ok(());
    };
    loop {
        if stop.is_cancelled() {
            return Ok(());
        }
        let max_in_flight = rt.max_in_flight();
        let picked = rt.with_connections(|conns| {
            let eligible: Vec<_> = conns
                .iter()
                .filter(|c| c.capacity(max_in_flight) > 0)
                .collect();
            let best = eligible.iter().min_by_key(|c| c.dispatch_rank())?;
            let cap = best.capacity(max_in_flight);
            // One at a time keeps fairness exact among several connections; a lone
            // connection takes a batch.
            let n = if eligible.len() == 1 { cap.min(100) } else { 1 };
            Some(((*best).clone(), n))
        });
        let Some((conn, n)) = picked else {
            return Ok(());
        };
        if !conn.reserve(n) {
            continue;
        }
        let leased = match buffer
            .lease_within(rt.name(), conn.id(), n, conn.outbox_room().max(1))
            .await
        {
            Ok(l) => l,
            Err(e) => {
                conn.unreserve(n);
                return Err(e);
            }
        };
        conn.unreserve(n - leased.len());
        if leased.is_empty() {
            return Ok(());
        }
        if conn.is_deregistered() {
            // Lost the race with deregistration: hand the leases straight back.
            buffer.release(rt.name(), conn.id()).await?;
            continue;
        }
        metrics.delivered(rt.name(), conn.protocol(), &leased);
        if !conn.deliver(leased, rt.next_serve_tick(), wake.clone()) {
            // The connection is going away; its deregistration releases the leases.
            tracing::debug!(connection = %conn.id(), "dispatch to a closing connection");
        }
    }
}
