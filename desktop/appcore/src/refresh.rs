//! The once-a-second refresh both shells run (the Tauri app and the tray-only light image):
//! from the core's snapshot, the tray state, tooltip and menu, and the notifications to show.
//! Only what changed since the last refresh comes back, so a shell touches its tray no more
//! than it has to.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use connect_engine::api::Outcome;

use crate::core::{AppSnapshot, Core};
use crate::menu::{self, MenuItem};
use crate::notify::{Notice, Notifier};
use crate::settings::NotificationLevel;
use crate::tray::{self, TrayState};

/// What one refresh found.
#[derive(Debug)]
pub struct Refresh {
    pub snapshot: AppSnapshot,
    /// The tray state, when it changed.
    pub icon: Option<TrayState>,
    /// The tooltip, when it changed.
    pub tooltip: Option<String>,
    /// The menu, when it changed (or a rebuild was asked for).
    pub menu: Option<Vec<MenuItem>>,
    pub notices: Vec<Notice>,
}

/// What the refresh remembers between ticks.
#[derive(Default)]
pub struct Refresher {
    notifier: Option<Notifier>,
    menu_signature: String,
    last_state: Option<TrayState>,
    last_tooltip: String,
    /// Messages received per channel at the previous tick (activity → "delivering").
    received: BTreeMap<String, u64>,
    /// Failures per channel at the previous tick (read the events only when they change).
    failures: BTreeMap<String, u64>,
    failing_targets: BTreeSet<(String, String)>,
}

impl Refresher {
    /// Follows a change of the notification setting.
    pub fn set_notification_level(&mut self, level: NotificationLevel) {
        if let Some(n) = self.notifier.as_mut() {
            n.level = level;
        }
    }

    /// One refresh at `now`; `force_menu` rebuilds the menu even when it looks the same.
    pub fn refresh(&mut self, core: &Core, now: Instant, force_menu: bool) -> Refresh {
        let snap = core.snapshot();
        let app_table = core.app_table();
        // Which channels show activity and which targets failed since the last tick.
        let mut active = false;
        let mut to_scan = Vec::new();
        for c in &snap.channels {
            let prev = self.received.insert(c.key.clone(), c.counters.received);
            if prev.is_some_and(|p| c.counters.received > p) {
                active = true;
            }
            let fails = c.counters.failed + c.counters.retried + c.counters.dead_lettered;
            if self.failures.insert(c.key.clone(), fails) != Some(fails) && fails > 0 {
                to_scan.push(c.key.clone());
            }
        }
        for key in to_scan {
            if let Ok(events) = core.list_events(&key) {
                for e in events.iter().take(50) {
                    if matches!(
                        e.outcome,
                        Outcome::Retry | Outcome::DeadLetter | Outcome::Failed
                    ) && let Some(url) = &e.target_url
                    {
                        self.failing_targets.insert((key.clone(), url.clone()));
                    }
                }
            }
        }
        let state = tray::aggregate(snap.paused, &snap.channels, active);
        let totals = tray::totals(&snap.channels);
        let tooltip = tray::tooltip(state, &totals);
        let status_line = tray::status_line(state, &totals);
        let items = menu::for_core(core, &snap, &status_line);
        let signature = format!("{items:?}");
        let all_failing: Vec<(String, String)> = self.failing_targets.iter().cloned().collect();
        let notifier = self.notifier.get_or_insert_with(|| {
            Notifier::new(
                app_table.notifications,
                Duration::from_secs(app_table.disconnect_notify_after_seconds),
            )
        });
        let notices = notifier.observe(now, snap.paused, &snap.channels, &all_failing);
        let icon = (self.last_state != Some(state)).then_some(state);
        let tooltip = (self.last_tooltip != tooltip).then_some(tooltip);
        let menu = (force_menu || self.menu_signature != signature).then_some(items);
        self.last_state = Some(state);
        if let Some(t) = &tooltip {
            self.last_tooltip.clone_from(t);
        }
        self.menu_signature = signature;
        Refresh {
            snapshot: snap,
            icon,
            tooltip,
            menu,
            notices,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::secrets::MemoryStore;

    #[tokio::test]
    async fn only_what_changed_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let core = Core::start(
            dir.path().join(crate::settings::FILE_NAME),
            Arc::new(MemoryStore::new()),
        )
        .unwrap();
        let mut r = Refresher::default();
        let t0 = Instant::now();
        let first = r.refresh(&core, t0, false);
        assert!(first.icon.is_some() && first.tooltip.is_some() && first.menu.is_some());
        let second = r.refresh(&core, t0 + Duration::from_secs(1), false);
        assert_eq!(second.icon, None);
        assert_eq!(second.tooltip, None);
        assert!(second.menu.is_none());
        assert!(second.notices.is_empty());
        assert!(
            r.refresh(&core, t0 + Duration::from_secs(2), true)
                .menu
                .is_some(),
            "a forced refresh rebuilds the menu"
        );
        core.set_paused(true);
        let paused = r.refresh(&core, t0 + Duration::from_secs(3), false);
        assert_eq!(paused.icon, Some(TrayState::Paused));
        assert!(paused.snapshot.paused);
        let items = paused.menu.expect("the menu changes with the pause");
        assert!(format!("{items:?}").contains("Resume all"), "{items:?}");
    }
}
