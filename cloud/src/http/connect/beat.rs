//! When a stream's heartbeats fall due (PROTOCOL §5.1, §5.2: one every heartbeat interval).
//!
//! Connectors reconnect together — after a cloud restart, a deploy or a network blip, or the
//! 10,000 of the idle bench — and a ticker started at each connection's `connected` keeps them
//! in step: every interval, thousands of heartbeats within the second or two the reconnects
//! took, and the webhooks arriving then wait behind them. The first heartbeat of each stream
//! therefore comes after a random part of the interval (between half and all of it), which
//! spreads the phases over the whole interval; later ones follow at the interval.
//!
//! Measured (docs/BENCHMARKS.md, "Idle connectors", session 13): with 10,000 connectors at a
//! 5 s interval, ingest p99 rose 10 % over the run without connectors instead of 100–120 %,
//! and heartbeat latency p99 fell from 7–21 ms to 2.5–14 ms. The price: an idle cloud wakes
//! once per heartbeat rather than once per burst, about twice the CPU per heartbeat (idle CPU
//! 6.5–7.8 % → 12.5–14 % of a core for 2,000 heartbeats a second). Rounding the phases to a
//! 10 ms grid, so that a few dozen go out per wake-up, kept the CPU near the old figure but
//! lost most of the gain on ingest p99; it was not kept.
//!
//! A heartbeat that could not go out on time (a stalled task) is sent late and the next one
//! counts from it, rather than in a burst.

use std::time::Duration;

use tokio::time::{Instant, Interval, MissedTickBehavior, interval_at};

/// The heartbeat ticker of a stream that starts now.
pub fn ticker(interval: Duration) -> Interval {
    let mut t = interval_at(Instant::now() + first_after(interval), interval);
    t.set_missed_tick_behavior(MissedTickBehavior::Delay);
    t
}

/// How long after `connected` the first heartbeat comes: uniformly in `[interval / 2, interval]`.
fn first_after(interval: Duration) -> Duration {
    interval.mul_f64(rand::random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_heartbeats_spread_over_the_second_half_of_the_interval() {
        let hb = Duration::from_secs(15);
        let firsts: Vec<Duration> = (0..1_000).map(|_| first_after(hb)).collect();
        assert!(firsts.iter().all(|d| *d >= hb / 2 && *d <= hb));
        // Spread, not in step: both halves of the window are used, over many milliseconds.
        let early = firsts.iter().filter(|d| **d < hb * 3 / 4).count();
        assert!(
            (300..=700).contains(&early),
            "{early} of 1,000 in the first half"
        );
        let mut ms: Vec<_> = firsts.iter().map(Duration::as_millis).collect();
        ms.sort_unstable();
        ms.dedup();
        assert!(ms.len() > 900, "{} distinct milliseconds", ms.len());
    }
}
