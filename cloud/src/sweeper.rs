//! Background sweeps and housekeeping: expired leases, delays, TTL, DLQ retention, orphan
//! deletion, token grace ends, idle poll connections, close requests and channel changes from
//! other replicas, and registering the channels again after the buffer lost its state.

use std::sync::Arc;
use std::time::Duration;

use crate::config_source::manager::ConfigManager;
use crate::runtime::Runtime;
use crate::settings::OrphanPolicy;

/// How often the buffer is swept; housekeeping runs every fourth sweep.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Spawns the periodic sweeps on the runtime's tracker; they end when dispatching stops.
pub fn spawn(rt: &Arc<Runtime>, sources: &Arc<ConfigManager>) {
    if let Some(mut requests) = rt.buffer().close_requests() {
        let rt2 = rt.clone();
        rt.tracker().spawn(async move {
            loop {
                tokio::select! {
                    _ = rt2.stopping().cancelled() => return,
                    r = requests.recv() => match r {
                        Some((channel, conn)) => rt2.hub().apply_close_request(&channel, &conn).await,
                        None => return,
                    },
                }
            }
        });
    }
    if let Some(mut changes) = rt.buffer().channel_changes() {
        let rt2 = rt.clone();
        rt.tracker().spawn(async move {
            loop {
                tokio::select! {
                    _ = rt2.stopping().cancelled() => return,
                    c = changes.recv() => match c {
                        Some(channel) => rt2.hub().refresh_channel(&channel, true).await,
                        None => return,
                    },
                }
            }
        });
    }
    let rt2 = rt.clone();
    let sources = sources.clone();
    rt.tracker()
        .spawn(async move { sweep_loop(rt2, sources).await });
}

async fn sweep_loop(rt: Arc<Runtime>, sources: Arc<ConfigManager>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    let mut seen_epoch = rt.buffer().state_epoch();
    loop {
        tokio::select! {
            _ = rt.stopping().cancelled() => return,
            _ = tick.tick() => {}
        }
        n += 1;
        let epoch = rt.buffer().state_epoch();
        if epoch != seen_epoch {
            match sources.register_again().await {
                Ok(count) => {
                    seen_epoch = epoch;
                    tracing::info!(
                        channels = count,
                        "channels registered again after the buffer lost its data"
                    );
                }
                Err(e) => {
                    tracing::warn!(error = %e, "registering the channels again failed; retrying")
                }
            }
        }
        let settings = rt.settings();
        let retention = match settings.orphan_channel_policy {
            OrphanPolicy::Drain => Some(Duration::from_secs(
                settings.orphan_channel_retention_seconds,
            )),
            OrphanPolicy::Delete => None,
        };
        match rt.buffer().sweep(retention).await {
            Ok(report) => {
                for lost in &report.expired_leases {
                    rt.hub().lease_lost(&lost.connection_id);
                    rt.metrics().redelivery(&lost.channel, "ack_timeout", 1);
                }
                for ch in &report.channels_deleted {
                    rt.hub().remove_channel(ch);
                }
            }
            Err(e) => tracing::warn!(error = %e, "buffer sweep failed"),
        }
        if n.is_multiple_of(4) {
            rt.hub().housekeeping().await;
        }
    }
}
