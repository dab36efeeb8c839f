//! The file watcher task (CONFIG.md §6.2): directory events and a safety poll trigger a content
//! check; changed content is applied through the [`ConfigManager`].

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher as _;

use crate::config_source::error::ApplyError;
use crate::config_source::file::{Hashes, current_hashes, read_all, watch_dirs};
use crate::config_source::manager::ConfigManager;
use crate::config_source::raw::ReloadDetails;

/// Spawns the watcher task (file backend with `CONFIG_FILE_WATCHING_ENABLED`).
pub fn spawn_watcher(m: &Arc<ConfigManager>, initial: Hashes) {
    let m = m.clone();
    let rt = m.runtime().clone();
    let stop = rt.stopping().clone();
    let tracker = rt.tracker().clone();
    tracker.spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let mut watcher = match notify::recommended_watcher(
            move |_ev: notify::Result<notify::Event>| {
                let _ = tx.send(());
            },
        ) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "file watcher unavailable; relying on the safety poll");
                None
            }
        };
        let mut watched = BTreeSet::new();
        let rewatch = |watcher: &mut Option<notify::RecommendedWatcher>,
                       watched: &mut BTreeSet<PathBuf>| {
            let Some(w) = watcher.as_mut() else { return };
            // Deleted directories (old ConfigMap generations) drop their watches by themselves.
            watched.retain(|d: &PathBuf| d.is_dir());
            for d in watch_dirs(rt.settings()) {
                if watched.contains(&d) {
                    continue;
                }
                match w.watch(&d, notify::RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        watched.insert(d);
                    }
                    Err(e) => {
                        tracing::warn!(dir = %d.display(), error = %e, "cannot watch directory");
                    }
                }
            }
        };
        rewatch(&mut watcher, &mut watched);
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
                got = rx.recv(), if events_open => {
                    if got.is_none() {
                        // The watcher is gone: keep polling only.
                        watcher = None;
                        events_open = false;
                        if poll.is_none() { return; }
                        continue;
                    }
                    // Debounce: wait until no event arrived for the whole window.
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            _ = tokio::time::sleep(debounce) => break,
                            more = rx.recv() => if more.is_none() { break },
                        }
                    }
                }
                _ = poll_tick.tick(), if poll.is_some() => {}
            }
            rewatch(&mut watcher, &mut watched);
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
