//! [`ConfigManager`]: owns the configuration sources' state and serializes every change of the
//! configuration in force. Builds and swaps hold one lock, so a file reload, an etcd event, a
//! Vault rotation and an admin reload never interleave.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use connect_config::{EnvSource, WebhookSet};
use connect_protocol::time::Timestamp;
use parking_lot::Mutex;

use crate::config_source::error::{ApplyError, SourceError};
use crate::config_source::raw::{Built, Discovery, RawConfig, ReloadDetails, build, diff};
use crate::config_source::vault::{SecretView, VaultSecrets, VaultStatus};
use crate::config_source::{etcd, file};
use crate::runtime::Runtime;
use crate::settings::{ConfigBackend, Settings};

/// State of the etcd link for `/health` and the config status.
#[derive(Clone, Debug, Default)]
pub struct EtcdLink {
    pub connected: bool,
    pub revision: Option<i64>,
    /// Why the link is down (cleared once a watch is established); never holds a secret.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Status {
    last_reload: Option<Timestamp>,
    connections_count: usize,
    warnings: Vec<String>,
    /// Last reload failure that applied nothing (file unreadable, etcd unreachable).
    last_failure: Option<String>,
}

/// Applied source state, guarded by the apply lock.
#[derive(Default)]
pub(crate) struct Applied {
    pub(crate) raw: RawConfig,
    /// etcd: revision the applied configuration reflects; events at or below it are old.
    pub(crate) revision: i64,
}

/// Owns the configuration sources and serializes every change of the configuration in force.
pub struct ConfigManager {
    rt: Arc<Runtime>,
    backend: ConfigBackend,
    env: Arc<dyn EnvSource>,
    /// The command line, checked for secrets passed as flags (§1.1).
    args: Vec<String>,
    vault: OnceLock<Arc<VaultSecrets>>,
    applied: tokio::sync::Mutex<Applied>,
    reload_busy: AtomicBool,
    status: Mutex<Status>,
    etcd: Mutex<EtcdLink>,
    etcd_client: Mutex<Option<etcd_client::Client>>,
    file_watching: bool,
}

impl ConfigManager {
    /// `env` resolves `${VAR}` references in definitions; `args` is the command line (only
    /// checked for secrets passed as flags).
    pub fn new(rt: Arc<Runtime>, env: Arc<dyn EnvSource>, args: Vec<String>) -> Self {
        let settings = rt.settings();
        ConfigManager {
            backend: settings.config_backend,
            env,
            args,
            vault: OnceLock::new(),
            applied: tokio::sync::Mutex::new(Applied::default()),
            reload_busy: AtomicBool::new(false),
            status: Mutex::new(Status::default()),
            etcd: Mutex::new(EtcdLink::default()),
            etcd_client: Mutex::new(None),
            file_watching: settings.config_file_watching_enabled
                && settings.config_backend == ConfigBackend::File,
            rt,
        }
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.rt
    }

    pub fn settings(&self) -> &Settings {
        self.rt.settings()
    }

    pub(crate) fn args(&self) -> &[String] {
        &self.args
    }

    pub(crate) fn set_vault(&self, v: Arc<VaultSecrets>) {
        let _ = self.vault.set(v);
    }

    /// The apply lock: every change of the configuration in force holds it.
    pub(crate) async fn lock_applied(&self) -> tokio::sync::MutexGuard<'_, Applied> {
        self.applied.lock().await
    }

    pub(crate) fn set_etcd_client(&self, c: etcd_client::Client) {
        *self.etcd_client.lock() = Some(c);
    }

    pub(crate) fn etcd_link_mut(&self) -> parking_lot::MutexGuard<'_, EtcdLink> {
        self.etcd.lock()
    }

    pub fn backend(&self) -> ConfigBackend {
        self.backend
    }

    pub fn file_watching(&self) -> bool {
        self.file_watching
    }

    fn vault(&self) -> Option<&Arc<VaultSecrets>> {
        self.vault.get()
    }

    /// `not_configured`, `healthy` or `degraded` with details.
    pub fn vault_status(&self) -> Option<VaultStatus> {
        self.vault().map(|v| v.status())
    }

    pub fn etcd_link(&self) -> Option<EtcdLink> {
        (self.backend == ConfigBackend::Etcd).then(|| self.etcd.lock().clone())
    }

    pub fn last_reload(&self) -> Option<Timestamp> {
        self.status.lock().last_reload
    }

    pub fn connections_count(&self) -> usize {
        self.status.lock().connections_count
    }

    pub fn source_warnings(&self) -> Vec<String> {
        self.status.lock().warnings.clone()
    }

    pub fn reload_in_progress(&self) -> bool {
        self.reload_busy.load(Ordering::SeqCst)
    }

    /// Builds `raw` against the configuration in force. Vault references are read first when
    /// they are unknown or stale (all of them with `force`).
    async fn build(&self, raw: &RawConfig, prev: Option<&WebhookSet>, force: bool) -> Built {
        let Some(vault) = self.vault() else {
            return build(raw, prev, self.env.as_ref(), None);
        };
        // Discovery: find every reference (a failing one would hide the ones after it).
        let discovery = Discovery::default();
        for v in raw.webhooks.values().flatten() {
            if let Ok(v) = v.value() {
                let _ = connect_config::resolve(&v, self.env.as_ref(), Some(&discovery));
            }
        }
        for v in raw.connections.values().flatten() {
            let _ = connect_config::resolve(v, self.env.as_ref(), Some(&discovery));
        }
        let refs = discovery.0.lock().clone();
        let paths: BTreeSet<String> = refs.iter().map(|(p, _)| p.clone()).collect();
        let need = vault.needs_fetch(&paths, force);
        if !need.is_empty() {
            vault.fetch(&need).await;
        }
        let view: SecretView = vault.view();
        let mut built = build(raw, prev, self.env.as_ref(), Some(&view));
        // Every reference of the configuration (the view only sees those before a failure).
        built.refs = refs;
        built.refs.extend(view.requested());
        built
    }

    /// Resolves, validates and (unless `validate_only`) puts `raw` in force.
    pub(crate) async fn apply_locked(
        &self,
        applied: &mut Applied,
        raw: RawConfig,
        force_vault: bool,
        validate_only: bool,
    ) -> Result<ReloadDetails, ApplyError> {
        let prev = self.rt.config();
        let mut built = self
            .build(&raw, prev.as_ref().map(|c| &c.webhooks), force_vault)
            .await;
        // Before the diff, so the reload answer names a conflict with a self-service channel.
        self.rt.reject_self_service_names(&mut built.set).await?;
        let details = diff(prev.as_ref().map(|c| &c.webhooks), &built);
        if validate_only {
            return Ok(details);
        }
        for e in &built.stale {
            tracing::warn!(webhook = %e.webhook, error = %e.error, "invalid webhook definition; previous definition kept");
        }
        let default_ns = match self.backend {
            ConfigBackend::File => None,
            ConfigBackend::Etcd => Some(self.settings().source.etcd_namespace.clone()),
        };
        if let Some(v) = self.vault() {
            v.set_referenced(built.refs.clone());
        }
        {
            let mut s = self.status.lock();
            s.connections_count = built.connections_count;
            s.warnings = built.warnings.clone();
            s.last_reload = Some(Timestamp::now());
            s.last_failure = None;
        }
        self.rt
            .apply_config_with(built.set, built.stale, default_ns)
            .await?;
        applied.raw = raw;
        Ok(details)
    }

    /// Puts `raw` in force (file reloads, etcd events).
    pub async fn apply_raw(
        &self,
        raw: RawConfig,
        force_vault: bool,
    ) -> Result<ReloadDetails, ApplyError> {
        let mut applied = self.applied.lock().await;
        self.apply_locked(&mut applied, raw, force_vault, false)
            .await
    }

    /// Registers the channels of the configuration in force again (the buffer lost its data),
    /// serialized with configuration changes so an older configuration cannot come back.
    pub async fn register_again(&self) -> Result<usize, connect_buffer::BufferError> {
        let _applied = self.applied.lock().await;
        self.rt.register_configured_channels().await
    }

    /// Rebuilds the applied definitions (Vault values changed).
    pub async fn rebuild(&self) {
        let mut applied = self.applied.lock().await;
        if self.rt.config().is_none() {
            return;
        }
        let raw = applied.raw.clone();
        if let Err(e) = self.apply_locked(&mut applied, raw, false, false).await {
            tracing::warn!(error = %e, "rebuilding the configuration after a secret change failed");
        }
    }

    pub(crate) fn record_failure(&self, why: &str) {
        tracing::warn!(error = %why, "configuration reload failed; the configuration in force is kept");
        self.status.lock().last_failure = Some(why.to_string());
    }

    pub fn last_failure(&self) -> Option<String> {
        self.status.lock().last_failure.clone()
    }

    /// `POST /admin/reload-config`: re-reads the source(s) named by the flags, Vault afresh.
    pub async fn reload(
        &self,
        webhooks: bool,
        connections: bool,
        validate_only: bool,
    ) -> Result<ReloadDetails, ApplyError> {
        let mut applied = self.applied.lock().await;
        let (mut raw, revision) = match self.backend {
            ConfigBackend::File => {
                let got = file::read_all(self.settings(), Some((webhooks, connections)));
                match got {
                    Ok(r) => (r.raw, None),
                    Err(e) => {
                        if !validate_only {
                            self.record_failure(&e.to_string());
                        }
                        return Err(e.into());
                    }
                }
            }
            ConfigBackend::Etcd => {
                let client = self.etcd_client.lock().clone();
                let Some(client) = client else {
                    return Err(SourceError::EtcdNotConnected.into());
                };
                match etcd::read_prefix(client, &self.settings().source.etcd_prefix).await {
                    Ok((raw, rev)) => (raw, Some(rev)),
                    Err(e) => {
                        let e = SourceError::EtcdUnreachable(e);
                        if !validate_only {
                            self.record_failure(&e.to_string());
                        }
                        return Err(e.into());
                    }
                }
            }
        };
        if !webhooks {
            raw.webhooks = applied.raw.webhooks.clone();
        }
        if !connections {
            raw.connections = applied.raw.connections.clone();
        }
        let details = self
            .apply_locked(&mut applied, raw, true, validate_only)
            .await?;
        if let Some(rev) = revision
            && !validate_only
        {
            applied.revision = applied.revision.max(rev);
            self.etcd.lock().revision = Some(applied.revision);
        }
        Ok(details)
    }

    /// Marks a reload as running; `false` when one already is (409).
    pub fn begin_reload(&self) -> bool {
        self.reload_busy
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }

    pub fn end_reload(&self) {
        self.reload_busy.store(false, Ordering::SeqCst);
    }
}
