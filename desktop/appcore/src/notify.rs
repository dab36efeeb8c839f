//! Which desktop notifications to show, decided from successive status snapshots, filtered by
//! the `notifications` setting and rate-limited. Pure: the shell passes `now` and shows the result.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use connect_engine::api::{ChannelStatus, LinkState};

use crate::settings::NotificationLevel;

/// The name notifications carry (servers group and label them by it).
pub const APP_NAME: &str = crate::relaunch::PRODUCT_NAME;

/// Shows one notification through the desktop's notification server (D-Bus
/// `org.freedesktop.Notifications`). Blocking: call it off the UI thread and the runtime's
/// workers. Both images send theirs here, so they look the same.
#[cfg(all(unix, not(target_os = "macos")))]
pub fn show(title: &str, body: &str) {
    let mut n = notify_rust::Notification::new();
    n.appname(APP_NAME).summary(title).auto_icon();
    if !body.is_empty() {
        n.body(body);
    }
    if let Err(e) = n.show() {
        tracing::debug!(error = %e, "notification not shown");
    }
}

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoticeKind {
    /// Not connected for longer than the threshold.
    Disconnected,
    AuthFailed,
    /// A target failed for the first time.
    TargetFailed,
    NewDeadLetters,
    /// Connected again after a `Disconnected` or `AuthFailed` notice (level `all` only).
    Reconnected,
}

impl NoticeKind {
    pub fn is_error(self) -> bool {
        !matches!(self, Self::Reconnected)
    }
}

/// A notification to show.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub kind: NoticeKind,
    pub channel_key: String,
    pub title: String,
    pub body: String,
}

/// Limits: the same (kind, channel) at most once per `per_key`, and at most `burst` notices per
/// `window` overall.
#[derive(Debug)]
pub struct RateLimiter {
    per_key: Duration,
    burst: usize,
    window: Duration,
    last: HashMap<(NoticeKind, String), Instant>,
    recent: VecDeque<Instant>,
}

impl RateLimiter {
    pub fn new(per_key: Duration, burst: usize, window: Duration) -> Self {
        Self {
            per_key,
            burst,
            window,
            last: HashMap::new(),
            recent: VecDeque::new(),
        }
    }

    /// True when the notice may be shown now (and records it).
    pub fn allow(&mut self, now: Instant, kind: NoticeKind, key: &str) -> bool {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.burst {
            return false;
        }
        let k = (kind, key.to_owned());
        if let Some(t) = self.last.get(&k)
            && now.duration_since(*t) < self.per_key
        {
            return false;
        }
        self.last.insert(k, now);
        self.recent.push_back(now);
        true
    }
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(Duration::from_secs(300), 3, Duration::from_secs(60))
    }
}

#[derive(Debug, Default)]
struct ChannelMemory {
    /// Since when the channel is not connected (and should be).
    down_since: Option<Instant>,
    told_down: bool,
    was_auth_failed: bool,
    dead_lettered: Option<u64>,
    queue_dead_letters: Option<u64>,
    failed_targets: BTreeSet<String>,
}

/// Turns snapshots into notices.
#[derive(Debug)]
pub struct Notifier {
    pub level: NotificationLevel,
    pub disconnect_threshold: Duration,
    limiter: RateLimiter,
    channels: BTreeMap<String, ChannelMemory>,
    /// Whether a snapshot was seen: the first one is a baseline for target failures.
    observed: bool,
}

impl Notifier {
    pub fn new(level: NotificationLevel, disconnect_threshold: Duration) -> Self {
        Self {
            level,
            disconnect_threshold,
            limiter: RateLimiter::default(),
            channels: BTreeMap::new(),
            observed: false,
        }
    }

    pub fn with_limiter(mut self, limiter: RateLimiter) -> Self {
        self.limiter = limiter;
        self
    }

    /// Feeds one snapshot. `failing_targets` lists (channel key, target URL) pairs that failed
    /// in the events seen so far; each pair is announced once. Those already failing in the
    /// first snapshot are a baseline, not news: that history was carried over from the previous
    /// image (light mode), which announced them (a fresh start has no history yet).
    pub fn observe(
        &mut self,
        now: Instant,
        paused: bool,
        channels: &[ChannelStatus],
        failing_targets: &[(String, String)],
    ) -> Vec<Notice> {
        let mut out = Vec::new();
        let keys: BTreeSet<&str> = channels.iter().map(|c| c.key.as_str()).collect();
        self.channels.retain(|k, _| keys.contains(k.as_str()));
        for c in channels {
            let m = self.channels.entry(c.key.clone()).or_default();
            let should_be_up =
                !paused && !matches!(c.state, LinkState::Disconnected | LinkState::Paused);
            let up = c.state == LinkState::Connected || c.state == LinkState::Degraded;
            if should_be_up && !up {
                let since = *m.down_since.get_or_insert(now);
                if !m.told_down
                    && c.state != LinkState::AuthFailed
                    && now.duration_since(since) >= self.disconnect_threshold
                {
                    m.told_down = true;
                    out.push(Notice {
                        kind: NoticeKind::Disconnected,
                        channel_key: c.key.clone(),
                        title: format!("{} is disconnected", c.channel),
                        body: c
                            .last_error
                            .clone()
                            .unwrap_or_else(|| "Reconnecting…".into()),
                    });
                }
            } else {
                if up && (m.told_down || m.was_auth_failed) {
                    out.push(Notice {
                        kind: NoticeKind::Reconnected,
                        channel_key: c.key.clone(),
                        title: format!("{} is connected again", c.channel),
                        body: String::new(),
                    });
                }
                m.down_since = None;
                m.told_down = false;
            }
            let auth_failed = c.state == LinkState::AuthFailed;
            if auth_failed && !m.was_auth_failed {
                out.push(Notice {
                    kind: NoticeKind::AuthFailed,
                    channel_key: c.key.clone(),
                    title: format!("{}: authentication failed", c.channel),
                    body:
                        "The cloud refused the channel token. Edit the channel to enter a new one."
                            .into(),
                });
            }
            if !auth_failed && up {
                m.was_auth_failed = false;
            } else if auth_failed {
                m.was_auth_failed = true;
            }
            // New dead letters: from the cloud's queue depth when known, else our own NACKs.
            let queue_dl = c.queue.as_ref().map(|q| q.dead_letters);
            let grew = match (queue_dl, m.queue_dead_letters, m.dead_lettered) {
                (Some(now_dl), Some(before), _) => now_dl.checked_sub(before),
                (Some(_), None, _) => None, // first reading: a baseline, not news
                (None, _, Some(before)) => c.counters.dead_lettered.checked_sub(before),
                (None, _, None) => None,
            }
            .filter(|n| *n > 0);
            if let Some(n) = grew {
                out.push(Notice {
                    kind: NoticeKind::NewDeadLetters,
                    channel_key: c.key.clone(),
                    title: format!("{}: {n} new dead letter{}", c.channel, plural(n)),
                    body: "Open Dead letters to replay or delete them.".into(),
                });
            }
            m.queue_dead_letters = queue_dl.or(m.queue_dead_letters);
            m.dead_lettered = Some(c.counters.dead_lettered);
        }
        let baseline = !std::mem::replace(&mut self.observed, true);
        for (key, url) in failing_targets {
            let Some(m) = self.channels.get_mut(key) else {
                continue;
            };
            if m.failed_targets.insert(url.clone()) && !baseline {
                let name = channels
                    .iter()
                    .find(|c| &c.key == key)
                    .map(|c| c.channel.as_str())
                    .unwrap_or(key);
                out.push(Notice {
                    kind: NoticeKind::TargetFailed,
                    channel_key: key.clone(),
                    title: format!("{name}: target failing"),
                    body: format!("{url} did not accept a delivery."),
                });
            }
        }
        out.retain(|n| match self.level {
            NotificationLevel::None => false,
            NotificationLevel::Errors => n.kind.is_error(),
            NotificationLevel::All => true,
        });
        out.retain(|n| self.limiter.allow(now, n.kind, &n.channel_key));
        out
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use connect_engine::api::QueueDepth;

    fn ch(key: &str, state: LinkState) -> ChannelStatus {
        ChannelStatus::idle(key, &format!("chan-{key}"), state)
    }

    fn kinds(v: &[Notice]) -> Vec<NoticeKind> {
        v.iter().map(|n| n.kind).collect()
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn rate_limiter_limits_per_key_and_overall() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(10 * S, 2, 60 * S);
        assert!(r.allow(t0, NoticeKind::AuthFailed, "a"));
        assert!(!r.allow(t0 + S, NoticeKind::AuthFailed, "a"), "same key");
        assert!(r.allow(t0 + S, NoticeKind::AuthFailed, "b"));
        assert!(!r.allow(t0 + 2 * S, NoticeKind::AuthFailed, "c"), "burst");
        assert!(!r.allow(t0 + 30 * S, NoticeKind::AuthFailed, "c"), "window");
        assert!(r.allow(t0 + 60 * S, NoticeKind::AuthFailed, "c"));
        assert!(
            r.allow(t0 + 70 * S, NoticeKind::AuthFailed, "a"),
            "per-key over"
        );
    }

    #[test]
    fn disconnected_is_told_once_after_the_threshold() {
        let t0 = Instant::now();
        let mut n = Notifier::new(NotificationLevel::All, 30 * S);
        let down = [ch("a", LinkState::Connecting)];
        assert!(n.observe(t0, false, &down, &[]).is_empty());
        assert!(n.observe(t0 + 29 * S, false, &down, &[]).is_empty());
        assert_eq!(
            kinds(&n.observe(t0 + 30 * S, false, &down, &[])),
            vec![NoticeKind::Disconnected]
        );
        assert!(n.observe(t0 + 31 * S, false, &down, &[]).is_empty());
        let up = [ch("a", LinkState::Connected)];
        assert_eq!(
            kinds(&n.observe(t0 + 40 * S, false, &up, &[])),
            vec![NoticeKind::Reconnected]
        );
        assert!(n.observe(t0 + 41 * S, false, &up, &[]).is_empty());
    }

    #[test]
    fn paused_or_user_disconnected_channels_are_not_reported() {
        let t0 = Instant::now();
        let mut n = Notifier::new(NotificationLevel::All, S);
        let off = [ch("a", LinkState::Disconnected)];
        n.observe(t0, false, &off, &[]);
        assert!(n.observe(t0 + 10 * S, false, &off, &[]).is_empty());
        let paused = [ch("a", LinkState::Connecting)];
        n.observe(t0, true, &paused, &[]);
        assert!(n.observe(t0 + 10 * S, true, &paused, &[]).is_empty());
    }

    #[test]
    fn target_failures_in_the_first_snapshot_are_a_baseline() {
        let t0 = Instant::now();
        let mut n = Notifier::new(NotificationLevel::Errors, 600 * S)
            .with_limiter(RateLimiter::new(S, 100, S));
        let a = [ch("a", LinkState::Connected)];
        let old = ("a".to_owned(), "http://localhost:1/old".to_owned());
        let new = ("a".to_owned(), "http://localhost:1/new".to_owned());
        assert!(
            n.observe(t0, false, &a, std::slice::from_ref(&old))
                .is_empty()
        );
        assert!(
            n.observe(t0 + S, false, &a, std::slice::from_ref(&old))
                .is_empty()
        );
        let got = n.observe(t0 + 2 * S, false, &a, &[old, new]);
        assert_eq!(kinds(&got), vec![NoticeKind::TargetFailed]);
        assert!(got[0].body.contains("/new"), "{got:?}");
    }

    #[test]
    fn auth_failure_first_target_failure_and_new_dead_letters() {
        let t0 = Instant::now();
        let mut n = Notifier::new(NotificationLevel::Errors, 600 * S)
            .with_limiter(RateLimiter::new(S, 100, S));
        let mut a = ch("a", LinkState::Connected);
        assert!(n.observe(t0, false, &[a.clone()], &[]).is_empty());
        a.state = LinkState::AuthFailed;
        assert_eq!(
            kinds(&n.observe(t0 + 2 * S, false, &[a.clone()], &[])),
            vec![NoticeKind::AuthFailed]
        );
        assert!(n.observe(t0 + 4 * S, false, &[a.clone()], &[]).is_empty());
        a.state = LinkState::Connected;
        // `Reconnected` is informational: filtered at level `errors`.
        assert!(n.observe(t0 + 6 * S, false, &[a.clone()], &[]).is_empty());
        let fail = vec![("a".to_owned(), "http://localhost:1/x".to_owned())];
        assert_eq!(
            kinds(&n.observe(t0 + 8 * S, false, &[a.clone()], &fail)),
            vec![NoticeKind::TargetFailed]
        );
        assert!(
            n.observe(t0 + 10 * S, false, &[a.clone()], &fail)
                .is_empty()
        );
        a.counters.dead_lettered = 2;
        let got = n.observe(t0 + 12 * S, false, &[a.clone()], &[]);
        assert_eq!(kinds(&got), vec![NoticeKind::NewDeadLetters]);
        assert_eq!(got[0].title, "chan-a: 2 new dead letters");
        // With queue depth known, the cloud's count rules.
        a.queue = Some(QueueDepth {
            pending: 0,
            in_flight: 0,
            delayed: 0,
            dead_letters: 5,
            connected: true,
            at: String::new(),
        });
        assert!(n.observe(t0 + 14 * S, false, &[a.clone()], &[]).is_empty());
        if let Some(q) = a.queue.as_mut() {
            q.dead_letters = 6;
        }
        let got = n.observe(t0 + 16 * S, false, &[a.clone()], &[]);
        assert_eq!(got[0].title, "chan-a: 1 new dead letter");
    }

    #[test]
    fn level_none_shows_nothing() {
        let t0 = Instant::now();
        let mut n = Notifier::new(NotificationLevel::None, S);
        n.observe(t0, false, &[ch("a", LinkState::Connected)], &[]);
        assert!(
            n.observe(t0 + S, false, &[ch("a", LinkState::AuthFailed)], &[])
                .is_empty()
        );
    }

    #[test]
    fn a_burst_of_failures_is_rate_limited() {
        let t0 = Instant::now();
        let mut n = Notifier::new(NotificationLevel::Errors, S);
        let chans: Vec<_> = (0..6)
            .map(|i| ch(&i.to_string(), LinkState::Connected))
            .collect();
        n.observe(t0, false, &chans, &[]);
        let failed: Vec<_> = (0..6)
            .map(|i| ch(&i.to_string(), LinkState::AuthFailed))
            .collect();
        assert_eq!(n.observe(t0 + S, false, &failed, &[]).len(), 3);
    }
}
