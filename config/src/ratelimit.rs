//! Sliding-window rate limit (CONFIG §2.5, PROTOCOL §2.6): at most `max` accepted requests in
//! any window; rejected requests are not recorded, so a client that keeps hammering does not
//! extend its own lock-out.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One bucket: the times of the accepted requests still inside the window.
#[derive(Debug, Clone)]
pub struct SlidingWindow {
    max: u64,
    window: Duration,
    hits: VecDeque<Instant>,
}

impl SlidingWindow {
    pub fn new(max: u64, window: Duration) -> Self {
        SlidingWindow {
            max: max.max(1),
            window,
            hits: VecDeque::new(),
        }
    }

    /// `Ok` records the request. `Err(retry_after)`: over the limit (not recorded); the value is
    /// the whole seconds until the oldest counted request leaves the window, at least 1.
    pub fn check(&mut self, now: Instant) -> Result<(), u64> {
        while let Some(&oldest) = self.hits.front() {
            if now.saturating_duration_since(oldest) >= self.window {
                self.hits.pop_front();
            } else {
                break;
            }
        }
        if (self.hits.len() as u64) < self.max {
            self.hits.push_back(now);
            return Ok(());
        }
        let oldest = self.hits.front().copied().unwrap_or(now);
        let wait = (oldest + self.window).saturating_duration_since(now);
        Err(wait.as_secs_f64().ceil().max(1.0) as u64)
    }

    /// Accepted requests currently inside the window (as of the last `check`).
    pub fn len(&self) -> usize {
        self.hits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }

    /// When the newest counted request leaves the window: from then on the window is empty
    /// and can be forgotten. `None` when it counts nothing.
    pub fn empty_at(&self) -> Option<Instant> {
        self.hits.back().map(|&t| t + self.window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_max_then_rejects_with_retry_after() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(3, Duration::from_secs(10));
        assert!(w.check(t0).is_ok());
        assert!(w.check(t0 + Duration::from_secs(2)).is_ok());
        assert!(w.check(t0 + Duration::from_secs(4)).is_ok());
        assert_eq!(w.check(t0 + Duration::from_millis(4500)), Err(6));
        // Rejections are not recorded: the oldest still frees the slot at t0+10.
        assert_eq!(w.check(t0 + Duration::from_millis(9999)), Err(1));
        assert!(w.check(t0 + Duration::from_secs(10)).is_ok());
        assert_eq!(w.check(t0 + Duration::from_secs(10)), Err(2));
        assert_eq!(w.len(), 3);
    }

    #[test]
    fn window_slides_instead_of_resetting() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(2, Duration::from_secs(60));
        assert!(w.check(t0).is_ok());
        assert!(w.check(t0 + Duration::from_secs(59)).is_ok());
        assert!(w.check(t0 + Duration::from_secs(61)).is_ok());
        assert_eq!(w.check(t0 + Duration::from_secs(62)), Err(57));
    }
}
