//! What the tray shows: one aggregate state (icon), the tooltip and the menu's status line.
//! Pure functions here; the menu itself is in [`crate::menu`], and `shell.rs` builds the Tauri
//! tray from both.

use connect_engine::api::{ChannelStatus, LinkState};

/// The tray's state at a glance, most urgent first in [`aggregate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrayState {
    Disconnected,
    Connecting,
    Connected,
    Delivering,
    Degraded,
    /// A channel's token was refused (or revoked).
    Error,
    Paused,
}

impl TrayState {
    pub fn label(self) -> &'static str {
        match self {
            Self::Disconnected => "Disconnected",
            Self::Connecting => "Connecting",
            Self::Connected => "Connected",
            Self::Delivering => "Delivering",
            Self::Degraded => "Degraded",
            Self::Error => "Error: authentication failed",
            Self::Paused => "Paused",
        }
    }

    /// The 32×32 RGBA PNG of this state (icons/tray-*.png).
    pub fn icon_png(self) -> &'static [u8] {
        match self {
            Self::Disconnected => include_bytes!("../icons/tray-disconnected.png"),
            Self::Connecting => include_bytes!("../icons/tray-connecting.png"),
            Self::Connected => include_bytes!("../icons/tray-connected.png"),
            Self::Delivering => include_bytes!("../icons/tray-delivering.png"),
            Self::Degraded => include_bytes!("../icons/tray-degraded.png"),
            Self::Error => include_bytes!("../icons/tray-error.png"),
            Self::Paused => include_bytes!("../icons/tray-paused.png"),
        }
    }

    pub const ALL: [TrayState; 7] = [
        Self::Disconnected,
        Self::Connecting,
        Self::Connected,
        Self::Delivering,
        Self::Degraded,
        Self::Error,
        Self::Paused,
    ];
}

/// One state for all channels. `active` is true when a delivery is running or a message arrived
/// since the previous tick. Channels the user disconnected do not count.
pub fn aggregate(paused: bool, channels: &[ChannelStatus], active: bool) -> TrayState {
    if paused {
        return TrayState::Paused;
    }
    let live: Vec<LinkState> = channels
        .iter()
        .map(|c| c.state)
        .filter(|s| *s != LinkState::Disconnected)
        .collect();
    if live.is_empty() {
        return TrayState::Disconnected;
    }
    let any = |s: LinkState| live.contains(&s);
    if any(LinkState::AuthFailed) || any(LinkState::Stopped) {
        return TrayState::Error;
    }
    if any(LinkState::Degraded) {
        return TrayState::Degraded;
    }
    if any(LinkState::Connecting) {
        // Some up and some still trying is a degraded whole.
        return if any(LinkState::Connected) {
            TrayState::Degraded
        } else {
            TrayState::Connecting
        };
    }
    if any(LinkState::Paused) {
        return TrayState::Paused;
    }
    if active || channels.iter().any(|c| c.in_flight > 0) {
        TrayState::Delivering
    } else {
        TrayState::Connected
    }
}

/// Totals shown in the tooltip and the menu.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub channels: usize,
    pub connected: usize,
    /// Messages waiting at the cloud (pending + delayed), when known.
    pub backlog: u64,
    /// Dead letters at the cloud, when known; else those this app produced.
    pub dead_letters: u64,
    /// Newest `last_event_at` (RFC 3339).
    pub last_event_at: Option<String>,
}

pub fn totals(channels: &[ChannelStatus]) -> Totals {
    let mut t = Totals {
        channels: channels.len(),
        ..Totals::default()
    };
    for c in channels {
        if c.state == LinkState::Connected {
            t.connected += 1;
        }
        match &c.queue {
            Some(q) => {
                t.backlog += q.pending + q.delayed;
                t.dead_letters += q.dead_letters;
            }
            None => t.dead_letters += c.counters.dead_lettered,
        }
        if let Some(at) = &c.last_event_at
            && t.last_event_at
                .as_deref()
                .is_none_or(|cur| at.as_str() > cur)
        {
            t.last_event_at = Some(at.clone());
        }
    }
    t
}

/// "14:02:11" in local time, or the raw value when it does not parse.
fn short_time(rfc3339: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%H:%M:%S")
                .to_string()
        })
        .unwrap_or_else(|_| rfc3339.to_owned())
}

/// The status line at the top of the menu.
pub fn status_line(state: TrayState, t: &Totals) -> String {
    format!(
        "{} · {}/{} channels connected",
        state.label(),
        t.connected,
        t.channels
    )
}

/// The tooltip: state, channel count, last event, backlog and dead letters.
pub fn tooltip(state: TrayState, t: &Totals) -> String {
    let last = t
        .last_event_at
        .as_deref()
        .map(short_time)
        .unwrap_or_else(|| "never".into());
    format!(
        "Webhook Connect — {}\n{} channel{} · last event {}\nBacklog {} · Dead letters {}",
        state.label(),
        t.channels,
        if t.channels == 1 { "" } else { "s" },
        last,
        t.backlog,
        t.dead_letters
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use connect_engine::api::QueueDepth;

    fn ch(key: &str, state: LinkState) -> ChannelStatus {
        ChannelStatus::idle(key, key, state)
    }

    use LinkState as S;

    #[test]
    fn aggregate_picks_the_most_urgent_state() {
        assert_eq!(aggregate(false, &[], false), TrayState::Disconnected);
        assert_eq!(
            aggregate(true, &[ch("a", S::Connected)], false),
            TrayState::Paused
        );
        assert_eq!(
            aggregate(
                false,
                &[ch("a", S::Connected), ch("b", S::Connected)],
                false
            ),
            TrayState::Connected
        );
        assert_eq!(
            aggregate(false, &[ch("a", S::Connected)], true),
            TrayState::Delivering
        );
        let mut busy = ch("a", S::Connected);
        busy.in_flight = 2;
        assert_eq!(aggregate(false, &[busy], false), TrayState::Delivering);
        assert_eq!(
            aggregate(false, &[ch("a", S::Connecting)], false),
            TrayState::Connecting
        );
        assert_eq!(
            aggregate(
                false,
                &[ch("a", S::Connected), ch("b", S::Connecting)],
                false
            ),
            TrayState::Degraded
        );
        assert_eq!(
            aggregate(false, &[ch("a", S::Connected), ch("b", S::Degraded)], true),
            TrayState::Degraded
        );
        assert_eq!(
            aggregate(false, &[ch("a", S::Degraded), ch("b", S::AuthFailed)], true),
            TrayState::Error
        );
        assert_eq!(
            aggregate(false, &[ch("a", S::Stopped)], false),
            TrayState::Error
        );
    }

    #[test]
    fn user_disconnected_channels_do_not_count() {
        assert_eq!(
            aggregate(false, &[ch("a", S::Disconnected)], false),
            TrayState::Disconnected
        );
        assert_eq!(
            aggregate(
                false,
                &[ch("a", S::Disconnected), ch("b", S::Connected)],
                false
            ),
            TrayState::Connected
        );
        // An engine-wide pause shows even when the app flag was not set yet.
        assert_eq!(
            aggregate(false, &[ch("a", S::Paused)], false),
            TrayState::Paused
        );
    }

    #[test]
    fn tooltip_has_state_count_last_event_backlog_and_dead_letters() {
        let mut a = ch("a", S::Connected);
        a.queue = Some(QueueDepth {
            pending: 3,
            in_flight: 1,
            delayed: 2,
            dead_letters: 4,
            connected: true,
            at: "2026-11-24T10:00:00Z".into(),
        });
        a.last_event_at = Some("2026-11-24T10:00:00Z".into());
        let mut b = ch("b", S::Connecting);
        b.counters.dead_lettered = 1;
        b.last_event_at = Some("2026-11-24T11:00:00Z".into());
        let t = totals(&[a, b]);
        assert_eq!(t.channels, 2);
        assert_eq!(t.connected, 1);
        assert_eq!(t.backlog, 5);
        assert_eq!(t.dead_letters, 5);
        assert_eq!(t.last_event_at.as_deref(), Some("2026-11-24T11:00:00Z"));
        let tip = tooltip(TrayState::Degraded, &t);
        assert!(tip.starts_with("Webhook Connect — Degraded\n2 channels · last event "));
        assert!(tip.ends_with("Backlog 5 · Dead letters 5"), "{tip}");
        assert_eq!(
            tooltip(TrayState::Disconnected, &totals(&[])),
            "Webhook Connect — Disconnected\n0 channels · last event never\nBacklog 0 · Dead letters 0"
        );
    }

    #[test]
    fn icons_are_distinct_32px_rgba_pngs() {
        let mut seen = std::collections::HashSet::new();
        for s in TrayState::ALL {
            let png = s.icon_png();
            assert_eq!(&png[1..4], b"PNG");
            // IHDR: width, height, bit depth 8, colour type 6 (RGBA).
            assert_eq!(u32::from_be_bytes([png[16], png[17], png[18], png[19]]), 32);
            assert_eq!(u32::from_be_bytes([png[20], png[21], png[22], png[23]]), 32);
            assert_eq!((png[24], png[25]), (8, 6), "{s:?}");
            assert!(seen.insert(png.to_vec()), "{s:?} duplicates another icon");
        }
    }
}
