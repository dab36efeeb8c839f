//! The file source (CONFIG.md §6.1–6.2): `WEBHOOKS_CONFIG_FILE` and `CONNECTIONS_CONFIG_FILE`.
//!
//! Watching: the parent directories (of the configured path and of what it resolves to through
//! symlinks) are watched with `notify`, so in-place edits, atomic replacement by rename and
//! symlink swaps (Kubernetes `..data`) all produce events. Events only *trigger* a check: what
//! decides is the SHA-256 of the content, so spurious events cost one read and identical content
//! is ignored. A periodic safety poll runs the same check for file systems without events
//! (network mounts, some container overlays), and covers a watcher that could not be created.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::Watcher as _;

use super::{RawConfig, read_json};
use crate::app::AppState;
use crate::settings::Settings;

/// Content hashes of the two files (`None`: missing or unreadable).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Hashes {
    webhooks: Option<[u8; 32]>,
    connections: Option<[u8; 32]>,
}

pub struct FileRead {
    pub raw: RawConfig,
    pub hashes: Hashes,
}

/// Reads the files. `which = Some((webhooks, connections))` limits what is read (admin reload).
/// A webhooks file that is missing, unreadable, not JSON or not an object → `Err`; connection
/// file problems are warnings (a missing file means `{}`).
pub fn read_all(settings: &Settings, which: Option<(bool, bool)>) -> Result<FileRead, String> {
    let (want_hooks, want_conns) = which.unwrap_or((true, true));
    let mut raw = RawConfig::default();
    let mut hashes = Hashes::default();
    if want_hooks {
        let (doc, h) = read_json(&settings.webhooks_config_file)?;
        raw.webhooks = RawConfig::webhooks_from_doc(&doc)
            .map_err(|e| format!("{}: {e}", settings.webhooks_config_file.display()))?;
        hashes.webhooks = Some(h);
    }
    if want_conns {
        let path = &settings.connections_config_file;
        if path.exists() {
            match read_json(path) {
                Ok((doc, h)) => {
                    hashes.connections = Some(h);
                    match doc.as_object() {
                        Some(m) => {
                            raw.connections =
                                m.iter().map(|(k, v)| (k.clone(), Ok(v.clone()))).collect();
                        }
                        None => raw
                            .warnings
                            .push(format!("{} is not a JSON object; ignored", path.display())),
                    }
                }
                Err(e) => raw.warnings.push(format!("{e}; connections ignored")),
            }
        }
    }
    Ok(FileRead { raw, hashes })
}

fn hash_of(path: &Path) -> Option<[u8; 32]> {
    use sha2::Digest;
    std::fs::read(path)
        .ok()
        .map(|b| sha2::Sha256::digest(&b).into())
}

fn current_hashes(settings: &Settings) -> Hashes {
    Hashes {
        webhooks: hash_of(&settings.webhooks_config_file),
        connections: hash_of(&settings.connections_config_file),
    }
}

/// Directories to watch: the parent of each configured path and the parent of its resolved
/// target (a symlink may point elsewhere).
fn watch_dirs(settings: &Settings) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for p in [
        &settings.webhooks_config_file,
        &settings.connections_config_file,
    ] {
        let abs = std::path::absolute(p).unwrap_or_else(|_| p.clone());
        if let Some(d) = abs.parent() {
            out.insert(d.to_path_buf());
        }
        if let Ok(real) = std::fs::canonicalize(p)
            && let Some(d) = real.parent()
        {
            out.insert(d.to_path_buf());
        }
    }
    out.retain(|d| d.is_dir());
    out
}

/// Spawns the watcher task (file backend with `CONFIG_FILE_WATCHING_ENABLED`).
pub fn spawn_watcher(st: &AppState, initial: Hashes) {
    let st = st.clone();
    let stop = st.hub.dispatch_stop.clone();
    let tracker = st.tracker.clone();
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
            for d in watch_dirs(&st.settings) {
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
        let debounce = st.settings.source.debounce();
        let poll = st.settings.source.poll_interval();
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
            let now = current_hashes(&st.settings);
            if now == last_seen {
                continue;
            }
            last_seen = now;
            match read_all(&st.settings, None) {
                Ok(read) => {
                    last_seen = read.hashes;
                    let r = st.sources.apply_raw(&st, read.raw, false).await;
                    st.metrics.config_reload("file", result_label(&r));
                    match r {
                        Ok(d) => tracing::info!(
                            added = d.webhooks_added,
                            removed = d.webhooks_removed,
                            modified = d.webhooks_modified,
                            disabled = d.webhooks_disabled,
                            errors = d.errors.len(),
                            "configuration files reloaded"
                        ),
                        Err(e) => st.sources.record_failure(&e.to_string()),
                    }
                }
                Err(e) => {
                    st.metrics.config_reload("file", "error");
                    st.sources.record_failure(&e);
                }
            }
        }
    });
}

fn result_label(r: &Result<super::ReloadDetails, super::ApplyError>) -> &'static str {
    match r {
        Ok(d) if d.errors.is_empty() => "success",
        Ok(_) => "partial",
        Err(_) => "error",
    }
}
