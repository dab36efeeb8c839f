//! Start-up of the configuration sources: what must be valid before anything binds
//! ([`precheck`]), then the Vault client, the first load and the watchers ([`start`]).

use std::sync::Arc;

use crate::config_source::error::{SourceError, StartError};
use crate::config_source::manager::ConfigManager;
use crate::config_source::vault::VaultSecrets;
use crate::config_source::{etcd_watch, file, file_watch};
use crate::settings::{ConfigBackend, Settings};

/// Flags whose values are secrets: on a command line they are visible to other local users.
const SECRET_FLAGS: [&str; 3] = ["--etcd-password", "--vault-token", "--vault-secret-id"];

/// Checks what must be valid before anything else starts (file backend: the webhooks file is
/// readable JSON object; Vault settings build a client). `Err` → exit 64.
pub fn precheck(settings: &Settings) -> Result<(), SourceError> {
    if settings.config_backend == ConfigBackend::File {
        file::read_all(settings, Some((true, false)))?;
    }
    if settings.source.vault_on() {
        VaultSecrets::new(&settings.source)?;
    }
    Ok(())
}

/// Start-up: creates the Vault client, loads the first configuration (file backend: a
/// failure is fatal) and spawns the watchers.
pub async fn start(m: &Arc<ConfigManager>) -> Result<(), StartError> {
    // §1.1: command lines are visible to other local users.
    for flag in SECRET_FLAGS {
        if m.args()
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        {
            tracing::warn!(
                flag,
                "secret passed as a command-line flag; prefer the environment variable"
            );
        }
    }
    let rt = m.runtime().clone();
    let settings = rt.settings();
    if settings.source.vault_on() {
        let v = VaultSecrets::new(&settings.source).map_err(SourceError::from)?;
        v.set_metrics(rt.metrics().clone());
        m.set_vault(v.clone());
        let m2 = m.clone();
        let stop = rt.stopping().clone();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
        rt.tracker().spawn(v.run_refresh(stop.clone(), move || {
            let _ = tx.try_send(());
        }));
        rt.tracker().spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    got = rx.recv() => if got.is_none() { return },
                }
                m2.rebuild().await;
            }
        });
    }
    match m.backend() {
        ConfigBackend::File => {
            // Watched before the first read: a change after it is then always an event
            // (one before it is in what is read).
            let watches = m
                .file_watching()
                .then(|| file_watch::Watches::register(settings));
            let raw = file::read_all(settings, None)?;
            m.apply_raw(raw.raw, false).await?;
            if let Some(watches) = watches {
                file_watch::spawn_watcher(m, raw.hashes, watches);
            }
        }
        ConfigBackend::Etcd => etcd_watch::spawn(m)?,
    }
    Ok(())
}
