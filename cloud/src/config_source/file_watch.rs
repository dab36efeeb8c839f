//! The file watcher task (CONFIG.md §6.2): directory events and a safety poll trigger a content
//! check; changed content is applied through the [`ConfigManager`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher as _;
use notify::event::{AccessKind, AccessMode, EventKind};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::config_source::error::ApplyError;
use crate::config_source::file::{Hashes, current_hashes, read_all, watch_dirs};
use crate::config_source::manager::ConfigManager;
use crate::config_source::raw::ReloadDetails;
use crate::settings::Settings;

/// The watches on the configuration files' directories, registered before the first read
/// ([`Watches::register`]) so that a change made after that read is always an event. They
/// used to be registered by the watcher task itself, whenever it first ran: a change made
/// between the first read and then (a cloud that already answered webhooks) was seen only
/// by the safety poll, 30 s later by default.
pub struct Watches {
    /// `None` when the platform's watcher could not start (the safety poll still runs).
    watcher: Option<notify::RecommendedWatcher>,
    watched: BTreeSet<PathBuf>,
    events: UnboundedReceiver<()>,
}

impl Watches {
    /// Starts the watcher and watches the directories of the configuration files (and of
    /// their symlinks' targets).
    pub fn register(settings: &Settings) -> Self {
        let (tx, events) = tokio::sync::mpsc::unbounded_channel::<()>();
        let watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            if ev.is_ok_and(|ev| changes_nothing(&ev.kind)) {
                return;
            }
            let _ = tx.send(());
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "file watcher unavailable; relying on the safety poll");
                None
            }
        };
        let mut w = Watches {
            watcher,
            watched: BTreeSet::new(),
            events,
        };
        w.rewatch(settings);
        w
    }

    /// Watches the directories not watched yet (a symlink swap can point at a new one).
    fn rewatch(&mut self, settings: &Settings) {
        let Some(w) = self.watcher.as_mut() else {
            return;
        };
        // Deleted directories (old ConfigMap generations) drop their watches by themselves.
        self.watched.retain(|d: &PathBuf| d.is_dir());
        for d in watch_dirs(settings) {
            if self.watched.contains(&d) {
                continue;
            }
            match w.watch(&d, notify::RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(d);
                }
                Err(e) => {
                    tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory");
                }
            }
        }
    }
}

/// Whether an event can change a file's content: opening, reading and closing a file
/// without writing cannot. notify reports opens too, so without this the watcher's own
/// reads of the files were events, and it read them again after every debounce window, for
/// as long as the process ran.
fn changes_nothing(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(AccessKind::Open(_) | AccessKind::Read | AccessKind::Any)
            | EventKind::Access(AccessKind::Close(AccessMode::Read | AccessMode::Execute))
    )
}

/// Spawns the watcher task (file backend with `CONFIG_FILE_WATCHING_ENABLED`): `initial` is
/// what the first read saw, after `watches` were registered.
pub fn spawn_watcher(m: &Arc<ConfigManager>, initial: Hashes, watches: Watches) {
    let m = m.clone();
    let rt = m.runtime().clone();
    let stop = rt.stopping().clone();
    let tracker = rt.tracker().clone();
    tracker.spawn(async move {
        let mut w = watches;
        let debounce = rt.settings().source.debounce();
        let poll = rt.settings().source.poll_interval();
        let mut poll_tick = tokio::time::interval(poll.unwrap_or(Duration::from_secs(3600)));
        poll_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        poll_tick.tick().await;
        let mut last_seen = initial;
        let mut events_open = true;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                got = w.events.recv(), if events_open => {
                    if got.is_none() {
                        // The watcher is gone: keep polling only.
                        w.watcher = None;
                        events_open = false;
                        if poll.is_none() { return; }
                        continue;
                    }
                    // Debounce: wait until no event arrived for the whole window.
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(debounce) => break,
                            more = w.events.recv() => if more.is_none() { break },
                        }
                    }
                }
                _ = poll_tick.tick(), if poll.is_some() => {}
            }
            w.rewatch(rt.settings());
            let now = current_hashes(rt.settings());
            if now == last_seen {
                continue;
            }
            last_seen = now;
            match read_all(rt.settings(), None) {
                Ok(read) => {
                    last_seen = read.hashes;
                    let r = m.apply_raw(read.raw, false).await;
                    rt.metrics().config_reload("file", result_label(&r));
                    match r {
                        Ok(d) => tracing::info!(
                            added = d.webhooks_added,
                            removed = d.webhooks_removed,
                            modified = d.webhooks_modified,
                            disabled = d.webhooks_disabled,
                            errors = d.errors.len(),
                            "configuration files reloaded"
                        ),
                        Err(e) => m.record_failure(&e.to_string()),
                    }
                }
                Err(e) => {
                    rt.metrics().config_reload("file", "error");
                    m.record_failure(&e.to_string());
                }
            }
        }
    });
}

fn result_label(r: &Result<ReloadDetails, ApplyError>) -> &'static str {
    match r {
        Ok(d) if d.errors.is_empty() => "success",
        Ok(_) => "partial",
        Err(_) => "error",
    }
}
