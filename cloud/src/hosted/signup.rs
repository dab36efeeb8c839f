//! The open-mode sign-up limit of one process (HOSTED.md §1 `WEBHOOK_CONNECT_SIGNUP_PER_IP_PER_HOUR`):
//! a sliding window per client, kept when the buffer offers no shared limit (embedded store)
//! or while Redis is unreachable.
//!
//! A client is its IPv4 address, or its IPv6 /64 (one subscriber, one host or one LAN usually
//! holds a whole /64, so counting single IPv6 addresses would let it sign up without limit);
//! an IPv4-mapped IPv6 address counts as its IPv4 address. [`client_key`] is also the key of the
//! shared (Redis) limit.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use connect_config::SlidingWindow;

/// Clients tracked at most (one window of at most `max` instants each).
pub const MAX_TRACKED: usize = 100_000;

/// The client an address counts as: IPv4 itself, IPv6 its /64 (the rest zeroed), an
/// IPv4-mapped IPv6 address its IPv4 address.
pub fn client_prefix(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// The key of the shared limit for `ip`: `signup:<IPv4>` or `signup:<IPv6 /64 prefix>/64`.
pub fn client_key(ip: IpAddr) -> String {
    match client_prefix(ip) {
        IpAddr::V4(v4) => format!("signup:{v4}"),
        IpAddr::V6(v6) => format!("signup:{v6}/64"),
    }
}

/// Sliding windows per client, at most `capacity` of them.
///
/// When the map is full, windows that counted nothing for a whole window are evicted (only
/// those: a live window is never reset, so nobody's limit starts over because others signed
/// up). If every window is still live, a client without a window is refused (429) until the
/// earliest live window empties; clients with a window are counted as usual. The refusal is
/// remembered, so a flood of new clients costs one scan per window-expiry, not one per request.
pub struct SignupWindows {
    capacity: usize,
    windows: HashMap<IpAddr, SlidingWindow>,
    /// Full of live windows until then: new clients are refused without another scan.
    full_until: Option<Instant>,
}

impl SignupWindows {
    pub fn new(capacity: usize) -> Self {
        SignupWindows {
            capacity,
            windows: HashMap::new(),
            full_until: None,
        }
    }

    /// Counts one sign-up of `ip`. `Err(seconds)`: refused, retry after that many seconds.
    pub fn check(
        &mut self,
        ip: IpAddr,
        max: u64,
        window: Duration,
        now: Instant,
    ) -> Result<(), u64> {
        let key = client_prefix(ip);
        if let Some(w) = self.windows.get_mut(&key) {
            return w.check(now);
        }
        if self.windows.len() >= self.capacity {
            self.make_room(now)?;
        }
        let mut w = SlidingWindow::new(max, window);
        let verdict = w.check(now);
        self.windows.insert(key, w);
        verdict
    }

    /// Evicts the windows that are empty at `now`; `Err(seconds)` when none is, until the
    /// earliest live window empties.
    fn make_room(&mut self, now: Instant) -> Result<(), u64> {
        let retry = |until: Instant| {
            until
                .saturating_duration_since(now)
                .as_secs_f64()
                .ceil()
                .max(1.0) as u64
        };
        if let Some(until) = self.full_until
            && until > now
        {
            return Err(retry(until));
        }
        self.windows
            .retain(|_, w| w.empty_at().is_some_and(|t| t > now));
        self.full_until = None;
        if self.windows.len() < self.capacity {
            return Ok(());
        }
        let until = self
            .windows
            .values()
            .filter_map(SlidingWindow::empty_at)
            .min()
            .unwrap_or(now);
        self.full_until = Some(until);
        Err(retry(until))
    }

    pub fn len(&self) -> usize {
        self.windows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            client_prefix(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(client_prefix(ip("::ffff:198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(client_prefix(ip("198.51.100.7")), ip("198.51.100.7"));
        assert_eq!(
            client_key(ip("2001:db8:1:2::9")),
            "signup:2001:db8:1:2::/64"
        );
        assert_eq!(client_key(ip("::ffff:10.0.0.1")), "signup:10.0.0.1");

        let t0 = Instant::now();
        let mut w = SignupWindows::new(MAX_TRACKED);
        assert!(w.check(ip("2001:db8:1:2::1"), 2, HOUR, t0).is_ok());
        assert!(w.check(ip("2001:db8:1:2:ffff::2"), 2, HOUR, t0).is_ok());
        assert!(
            w.check(ip("2001:db8:1:2::3"), 2, HOUR, t0).is_err(),
            "a third address of the same /64 is over the limit"
        );
        assert!(
            w.check(ip("2001:db8:1:3::1"), 2, HOUR, t0).is_ok(),
            "another /64"
        );
        assert!(w.check(ip("::ffff:198.51.100.7"), 1, HOUR, t0).is_ok());
        assert!(
            w.check(ip("198.51.100.7"), 1, HOUR, t0).is_err(),
            "mapped = plain IPv4"
        );
    }

    #[test]
    fn a_full_map_never_resets_live_windows() {
        let t0 = Instant::now();
        let mut w = SignupWindows::new(3);
        // A client used up its sign-ups; other clients fill the map.
        assert!(w.check(ip("192.0.2.1"), 1, HOUR, t0).is_ok());
        assert!(w.check(ip("192.0.2.2"), 1, HOUR, t0).is_ok());
        assert!(
            w.check(ip("192.0.2.3"), 1, HOUR, t0 + Duration::from_secs(600))
                .is_ok()
        );
        // Full of live windows: a new client is refused until the oldest window empties…
        assert_eq!(
            w.check(ip("192.0.2.4"), 1, HOUR, t0 + Duration::from_secs(60)),
            Err(3540)
        );
        assert_eq!(
            w.check(ip("192.0.2.5"), 1, HOUR, t0 + Duration::from_secs(61)),
            Err(3539)
        );
        // …and nobody's window was reset by it.
        assert!(
            w.check(ip("192.0.2.1"), 1, HOUR, t0 + Duration::from_secs(62))
                .is_err()
        );
        assert!(w.len() <= 3);
        // Once windows empty they are evicted (only those), and new clients get in.
        let later = t0 + HOUR;
        assert!(w.check(ip("192.0.2.4"), 1, HOUR, later).is_ok());
        assert!(w.check(ip("192.0.2.5"), 1, HOUR, later).is_ok());
        assert!(
            w.check(ip("192.0.2.3"), 1, HOUR, later).is_err(),
            "192.0.2.3's window is still live and kept"
        );
        assert!(w.len() <= 3);
    }
}
