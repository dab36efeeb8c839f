//! Timing that holds on a slow or loaded machine (a 2-core CI runner compiling next door).
//!
//! Tests that need real time to pass — a token's TTL, a lease's lifetime — take their durations
//! from here instead of hard-coding them: `CONNECT_TEST_TIME_SCALE` (a number ≥ 1, default 1)
//! multiplies every one, so a machine that is slower still than the defaults allow can stretch
//! them without editing tests. The defaults themselves leave a wide margin (see each test).

use std::time::Duration;

/// `CONNECT_TEST_TIME_SCALE`, at least 1 (unset, unparsable or smaller → 1).
pub fn scale() -> f64 {
    std::env::var("CONNECT_TEST_TIME_SCALE")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .map_or(1.0, |v| v.max(1.0))
}

/// `base` seconds, scaled and rounded up.
pub fn secs(base: u64) -> u64 {
    (base as f64 * scale()).ceil() as u64
}

/// `base`, scaled.
pub fn scaled(base: Duration) -> Duration {
    base.mul_f64(scale())
}

/// `base`, scaled, but never `limit` or more: for a bound that proves something only while it
/// stays below another period (a revocation seen before a periodic re-read could have caught
/// it), stretching stops just short of that period instead of making the check meaningless.
pub fn scaled_below(base: Duration, limit: Duration) -> Duration {
    scaled(base).min(limit.mul_f64(0.9))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_defaults_to_one_and_never_shrinks() {
        // The variable is read each time; this process never sets it.
        if std::env::var_os("CONNECT_TEST_TIME_SCALE").is_none() {
            assert_eq!(scale(), 1.0);
            assert_eq!(secs(3), 3);
            assert_eq!(
                scaled(Duration::from_millis(1500)),
                Duration::from_millis(1500)
            );
        }
    }

    #[test]
    fn scaled_below_stays_under_its_limit() {
        let limit = Duration::from_secs(1);
        assert!(scaled_below(Duration::from_millis(150), limit) >= Duration::from_millis(150));
        assert!(scaled_below(Duration::from_millis(150), limit) < limit);
        assert!(scaled_below(Duration::from_secs(5), limit) < limit);
    }
}
