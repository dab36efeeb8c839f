//! The etcd loader/watcher task (CONFIG.md §4): full read, then a watch from the next revision,
//! applied through the [`ConfigManager`]; the link state for `/health` and the config status.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{ConnectOptions, EventType, WatchOptions};

use crate::config_source::error::SourceError;
use crate::config_source::etcd::{
    Backoff, REQUEST_TIMEOUT, STATUS_INTERVAL, apply_kv, connect_member, connect_options, describe,
    read_prefix,
};
use crate::config_source::manager::{Applied, ConfigManager};

/// Validates the connection settings (TLS files) and spawns the loader/watcher.
pub fn spawn(m: &Arc<ConfigManager>) -> Result<(), SourceError> {
    let opts = connect_options(&m.settings().source).map_err(SourceError::EtcdSettings)?;
    for e in m.settings().source.etcd_upgraded_endpoints() {
        tracing::warn!(endpoint = %e, "etcd TLS is configured: dialling this endpoint over https://");
    }
    let m = m.clone();
    m.runtime()
        .tracker()
        .clone()
        .spawn(async move { run(m, opts).await });
    Ok(())
}

fn set_link(m: &ConfigManager, connected: bool) {
    let mut l = m.etcd_link_mut();
    if l.connected != connected {
        if connected {
            tracing::info!("etcd watch established");
        } else {
            tracing::warn!("etcd disconnected; the last good configuration keeps serving");
        }
    }
    l.connected = connected;
    if connected {
        l.last_error = None;
    }
}

/// Marks the link down with the reason, for the config status and the log.
fn link_failed(m: &ConfigManager, what: &str, reason: String) {
    tracing::warn!(error = %reason, "{what}");
    set_link(m, false);
    m.etcd_link_mut().last_error = Some(format!("{what}: {reason}"));
}

async fn sleep_or_stop(m: &ConfigManager, d: Duration) -> bool {
    tokio::select! {
        _ = m.runtime().stopping().cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

async fn run(m: Arc<ConfigManager>, opts: ConnectOptions) {
    let endpoints = m.settings().source.etcd_endpoint_list();
    let prefix = m.settings().source.etcd_prefix.clone();
    let probe_timeout =
        Duration::from_secs_f64(m.settings().source.etcd_dial_timeout_seconds) + REQUEST_TIMEOUT;
    let tls = m.settings().source.etcd_tls();
    let mut backoff = Backoff(Duration::from_secs(1));
    let mut need_full = true;
    // The member to try first: after a failure, the next one.
    let mut member = 0usize;
    loop {
        if m.runtime().stopping().is_cancelled() {
            return;
        }
        let client = match connect_member(&endpoints, &opts, member, probe_timeout, tls).await {
            Ok((c, i)) => {
                if endpoints.len() > 1 {
                    tracing::info!(endpoint = %endpoints[i], "using etcd member");
                }
                member = i;
                c
            }
            Err(e) => {
                link_failed(&m, "cannot connect to etcd", e.to_string());
                if !sleep_or_stop(&m, backoff.next()).await {
                    return;
                }
                continue;
            }
        };
        m.set_etcd_client(client.clone());
        if need_full {
            match read_prefix(client.clone(), &prefix).await {
                Ok((raw, rev)) => {
                    let mut applied = m.lock_applied().await;
                    match m.apply_locked(&mut applied, raw, false, false).await {
                        Ok(d) => {
                            applied.revision = rev;
                            m.etcd_link_mut().revision = Some(rev);
                            need_full = false;
                            tracing::info!(
                                revision = rev,
                                webhooks = d.total_webhooks,
                                disabled = d.webhooks_disabled,
                                "configuration loaded from etcd"
                            );
                        }
                        Err(e) => {
                            link_failed(&m, "applying the etcd configuration failed", e.to_string())
                        }
                    }
                }
                Err(e) => link_failed(&m, "reading the etcd prefix failed", e.to_string()),
            }
            if need_full {
                member = (member + 1) % endpoints.len();
                if !sleep_or_stop(&m, backoff.next()).await {
                    return;
                }
                continue;
            }
        }
        let start = m.lock_applied().await.revision + 1;
        let mut watch_client = client.clone();
        let watch = tokio::time::timeout(
            REQUEST_TIMEOUT,
            watch_client.watch(
                prefix.as_str(),
                Some(WatchOptions::new().with_prefix().with_start_revision(start)),
            ),
        )
        .await;
        let mut stream = match watch {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                link_failed(&m, "etcd watch failed", describe(&e));
                member = (member + 1) % endpoints.len();
                if !sleep_or_stop(&m, backoff.next()).await {
                    return;
                }
                continue;
            }
            Err(_) => {
                link_failed(&m, "etcd watch failed", "timed out".into());
                member = (member + 1) % endpoints.len();
                if !sleep_or_stop(&m, backoff.next()).await {
                    return;
                }
                continue;
            }
        };
        let mut status_tick = tokio::time::interval(STATUS_INTERVAL);
        status_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut established = false;
        loop {
            tokio::select! {
                _ = m.runtime().stopping().cancelled() => return,
                msg = stream.message() => match msg {
                    Ok(Some(resp)) => {
                        if resp.compact_revision() > 0 {
                            tracing::warn!(compacted = resp.compact_revision(), "etcd revision compacted; re-reading the whole prefix");
                            need_full = true;
                            break;
                        }
                        if resp.canceled() {
                            link_failed(&m, "etcd watch canceled", resp.cancel_reason().to_string());
                            break;
                        }
                        if resp.created() && !established {
                            established = true;
                            backoff.reset();
                            set_link(&m, true);
                        }
                        if !resp.events().is_empty() {
                            apply_events(&m, &prefix, resp.events()).await;
                        }
                    }
                    Ok(None) => {
                        link_failed(&m, "etcd watch stream ended", "closed by the server".into());
                        break;
                    }
                    Err(e) => {
                        link_failed(&m, "etcd watch stream failed", describe(&e));
                        break;
                    }
                },
                _ = status_tick.tick() => {
                    let mut c = client.clone();
                    let failure = match tokio::time::timeout(REQUEST_TIMEOUT, c.status()).await {
                        Ok(Ok(_)) => None,
                        Ok(Err(e)) => Some(describe(&e)),
                        Err(_) => Some("timed out".to_string()),
                    };
                    if let Some(reason) = failure {
                        link_failed(&m, "etcd status check failed", reason);
                        break;
                    }
                    if established {
                        set_link(&m, true);
                    }
                }
            }
        }
        set_link(&m, false);
        member = (member + 1) % endpoints.len();
        if !sleep_or_stop(&m, backoff.next()).await {
            return;
        }
    }
}

/// Applies one watch response's events (in order) and records the revision.
async fn apply_events(m: &ConfigManager, prefix: &str, events: &[etcd_client::Event]) {
    let mut applied: tokio::sync::MutexGuard<'_, Applied> = m.lock_applied().await;
    let mut raw = applied.raw.clone();
    let mut rev = applied.revision;
    let mut any = false;
    for ev in events {
        let Some(kv) = ev.kv() else { continue };
        // Already reflected by a full read at a later revision (admin reload).
        if kv.mod_revision() <= applied.revision {
            continue;
        }
        rev = rev.max(kv.mod_revision());
        any = true;
        match ev.event_type() {
            EventType::Put => apply_kv(&mut raw, prefix, kv.key(), Some(kv.value())),
            EventType::Delete => apply_kv(&mut raw, prefix, kv.key(), None),
        }
    }
    if !any {
        return;
    }
    match m.apply_locked(&mut applied, raw, false, false).await {
        Ok(d) => m.runtime().metrics().config_reload(
            "etcd",
            if d.errors.is_empty() {
                "success"
            } else {
                "partial"
            },
        ),
        Err(e) => {
            m.runtime().metrics().config_reload("etcd", "error");
            tracing::warn!(error = %e, "applying an etcd change failed");
        }
    }
    applied.revision = rev;
    m.etcd_link_mut().revision = Some(rev);
}
