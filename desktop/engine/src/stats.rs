//! Delivery latency percentiles and throughput over the last ten minutes, in fixed memory:
//! sixty 10-second buckets, each a log-scale histogram (bins 25 % apart, 0.05 ms to ~80 s).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::api::{Latency, SeriesPoint};

const BUCKET_MS: u64 = 10_000;
const BUCKETS: usize = 60;
const BINS: usize = 64;
const BASE_MS: f64 = 0.05;
const RATIO: f64 = 1.25;

#[derive(Clone, Debug)]
struct Bucket {
    /// Bucket number (Unix ms / BUCKET_MS); a stale one is reset before use.
    n: u64,
    delivered: u64,
    failed: u64,
    hist: [u32; BINS],
}

impl Bucket {
    fn empty() -> Self {
        Self {
            n: 0,
            delivered: 0,
            failed: 0,
            hist: [0; BINS],
        }
    }
}

/// The rolling window of one channel.
#[derive(Clone, Debug)]
pub struct Window {
    buckets: Vec<Bucket>,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            buckets: vec![Bucket::empty(); BUCKETS],
        }
    }
}

fn bin_of(ms: f64) -> usize {
    if ms <= BASE_MS {
        return 0;
    }
    let i = ((ms / BASE_MS).ln() / RATIO.ln()).floor();
    (i as usize).min(BINS - 1)
}

/// The middle (geometric) of a bin, in ms.
fn value_of(bin: usize) -> f64 {
    BASE_MS * RATIO.powf(bin as f64 + 0.5)
}

fn now_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn percentile(hist: &[u64; BINS], total: u64, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * q).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (i, c) in hist.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return Some((value_of(i) * 1000.0).round() / 1000.0);
        }
    }
    None
}

impl Window {
    fn bucket(&mut self, at: SystemTime) -> &mut Bucket {
        let n = now_ms(at) / BUCKET_MS;
        let b = &mut self.buckets[(n % BUCKETS as u64) as usize];
        if b.n != n {
            *b = Bucket::empty();
            b.n = n;
        }
        b
    }

    /// Records one finished delivery.
    pub fn record(&mut self, at: SystemTime, latency: Duration, ok: bool) {
        let b = self.bucket(at);
        if ok {
            b.delivered += 1;
        } else {
            b.failed += 1;
        }
        b.hist[bin_of(latency.as_secs_f64() * 1000.0)] += 1;
    }

    fn live(&self, at: SystemTime) -> impl Iterator<Item = &Bucket> {
        let n = now_ms(at) / BUCKET_MS;
        self.buckets
            .iter()
            .filter(move |b| b.n + (BUCKETS as u64) > n && b.n <= n)
    }

    /// Percentiles over the whole window.
    pub fn latency(&self, at: SystemTime) -> Latency {
        let mut hist = [0u64; BINS];
        for b in self.live(at) {
            for (h, c) in hist.iter_mut().zip(b.hist.iter()) {
                *h += u64::from(*c);
            }
        }
        let total: u64 = hist.iter().sum();
        Latency {
            p50_ms: percentile(&hist, total, 0.50),
            p90_ms: percentile(&hist, total, 0.90),
            p99_ms: percentile(&hist, total, 0.99),
            samples: total,
        }
    }

    /// Every bucket of the last ten minutes, oldest first (empty ones included).
    pub fn series(&self, at: SystemTime) -> Vec<SeriesPoint> {
        let n = now_ms(at) / BUCKET_MS;
        (0..BUCKETS as u64)
            .rev()
            .filter_map(|back| n.checked_sub(back))
            .map(|k| {
                let b = self.buckets[(k % BUCKETS as u64) as usize].clone();
                let (delivered, failed, hist) = if b.n == k {
                    (b.delivered, b.failed, b.hist)
                } else {
                    (0, 0, [0; BINS])
                };
                let mut wide = [0u64; BINS];
                for (w, c) in wide.iter_mut().zip(hist.iter()) {
                    *w = u64::from(*c);
                }
                let total = wide.iter().sum();
                SeriesPoint {
                    t_ms: k * BUCKET_MS,
                    delivered,
                    failed,
                    p50_ms: percentile(&wide, total, 0.5),
                    p99_ms: percentile(&wide, total, 0.99),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_a_bin_of_the_truth() {
        let mut w = Window::default();
        let at = SystemTime::now();
        for ms in 1..=1000u64 {
            w.record(at, Duration::from_millis(ms), true);
        }
        let l = w.latency(at);
        assert_eq!(l.samples, 1000);
        let p50 = l.p50_ms.expect("p50");
        let p99 = l.p99_ms.expect("p99");
        assert!((400.0..=625.0).contains(&p50), "p50 {p50}");
        assert!((792.0..=1238.0).contains(&p99), "p99 {p99}");
        assert!(p50 < l.p90_ms.expect("p90"));
    }

    #[test]
    fn old_buckets_leave_the_window() {
        let mut w = Window::default();
        let t0 = UNIX_EPOCH + Duration::from_secs(1_000_000);
        w.record(t0, Duration::from_millis(5), true);
        w.record(t0, Duration::from_millis(5), false);
        assert_eq!(w.latency(t0).samples, 2);
        let series = w.series(t0);
        assert_eq!(series.len(), BUCKETS);
        let last = series.last().expect("last");
        assert_eq!((last.delivered, last.failed), (1, 1));
        // Eleven minutes later the bucket is outside the window even though its slot is reused.
        let t1 = t0 + Duration::from_secs(660);
        assert_eq!(w.latency(t1).samples, 0);
        assert!(
            w.series(t1)
                .iter()
                .all(|p| p.delivered == 0 && p.failed == 0)
        );
        w.record(t1, Duration::from_millis(1), true);
        assert_eq!(w.latency(t1).samples, 1);
    }

    #[test]
    fn empty_window_has_no_percentiles() {
        let w = Window::default();
        let l = w.latency(SystemTime::now());
        assert_eq!(l.p50_ms, None);
        assert_eq!(l.samples, 0);
    }
}
