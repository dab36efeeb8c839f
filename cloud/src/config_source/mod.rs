//! Configuration sources (CONFIG.md §4–6): where webhook definitions come from (the file or
//! etcd), how secrets are resolved (environment, Vault), and how a change becomes the
//! configuration in force.
//!
//! Every source produces a [`RawConfig`] (unresolved definitions keyed by namespace and id);
//! [`ConfigManager::apply_raw`] resolves and validates it per entry, keeps the previous valid
//! definition of an entry that became invalid, and hands the result to
//! [`AppState::apply_config_with`]. Builds and swaps are serialized by one lock, so a file
//! reload, an etcd event, a Vault rotation and an admin reload never interleave.
//!
//! Layout:
//! - `file`: file watching (directory events + content hash + safety poll, debounced).
//! - `etcd`: initial read, watch with resume from the last revision, reconnect backoff.
//! - [`vault`]: KV reader, cache with TTL, background refresh (live rotation).

mod etcd;
mod file;
pub mod vault;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use connect_config::{EnvSource, ProcessEnv, SecretSource, Webhook, WebhookSet, entry_key};
use connect_protocol::admin::ConfigError;
use connect_protocol::time::Timestamp;
use parking_lot::Mutex;
use serde_json::Value;

use crate::app::AppState;
use crate::settings::{ConfigBackend, Settings};
use vault::{SecretView, VaultSecrets, VaultStatus};

/// `(namespace, id)`: `None` for the file backend.
pub type EntryKey = (Option<String>, String);

/// Unresolved definitions as read from a source. An `Err` value is a definition that could not
/// even be read as a JSON object (an etcd value that is not JSON): treated like an invalid entry.
#[derive(Clone, Debug, Default)]
pub struct RawConfig {
    pub webhooks: BTreeMap<EntryKey, Result<Value, String>>,
    pub connections: BTreeMap<String, Result<Value, String>>,
    /// Source-level warnings (etcd keys outside the layout).
    pub warnings: Vec<String>,
}

impl RawConfig {
    /// A `webhooks.json` document (file backend). Not an object → `Err` (nothing applies).
    pub fn webhooks_from_doc(
        doc: &Value,
    ) -> Result<BTreeMap<EntryKey, Result<Value, String>>, String> {
        let map = doc.as_object().ok_or_else(|| {
            "webhooks configuration must be a JSON object mapping webhook ids to definitions"
                .to_string()
        })?;
        Ok(map
            .iter()
            .map(|(id, v)| ((None, id.clone()), Ok(v.clone())))
            .collect())
    }
}

/// Result of one build: the set to put in force and what to report.
pub struct Built {
    pub set: WebhookSet,
    /// Entries whose new definition is invalid and that keep their previous one.
    pub stale: Vec<ConfigError>,
    pub warnings: Vec<String>,
    pub connections_count: usize,
    refs: BTreeSet<(String, String)>,
}

/// What a reload changed (the `details` of §6.3).
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ReloadDetails {
    pub webhooks_added: usize,
    pub webhooks_removed: usize,
    pub webhooks_modified: usize,
    pub total_webhooks: usize,
    pub webhooks_disabled: usize,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<String>,
}

/// Why nothing could be applied.
#[derive(Debug)]
pub enum ApplyError {
    /// The source could not be read or parsed (file missing, etcd unreachable).
    Source(String),
    /// The buffer refused channel registration.
    Buffer(String),
}

impl std::fmt::Display for ApplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApplyError::Source(e) => write!(f, "{e}"),
            ApplyError::Buffer(e) => write!(f, "cannot register channels: {e}"),
        }
    }
}

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
struct Applied {
    raw: RawConfig,
    /// etcd: revision the applied configuration reflects; events at or below it are old.
    revision: i64,
}

/// Owns the configuration sources and serializes every change of the configuration in force.
pub struct ConfigManager {
    backend: ConfigBackend,
    env: Arc<dyn EnvSource>,
    vault: OnceLock<Arc<VaultSecrets>>,
    applied: tokio::sync::Mutex<Applied>,
    reload_busy: AtomicBool,
    status: Mutex<Status>,
    etcd: Mutex<EtcdLink>,
    etcd_client: Mutex<Option<etcd_client::Client>>,
    file_watching: bool,
}

impl ConfigManager {
    pub fn new(settings: &Settings) -> Self {
        ConfigManager {
            backend: settings.config_backend,
            env: Arc::new(ProcessEnv),
            vault: OnceLock::new(),
            applied: tokio::sync::Mutex::new(Applied::default()),
            reload_busy: AtomicBool::new(false),
            status: Mutex::new(Status::default()),
            etcd: Mutex::new(EtcdLink::default()),
            etcd_client: Mutex::new(None),
            file_watching: settings.config_file_watching_enabled
                && settings.config_backend == ConfigBackend::File,
        }
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
        for v in raw
            .webhooks
            .values()
            .chain(raw.connections.values())
            .flatten()
        {
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
    async fn apply_locked(
        &self,
        st: &AppState,
        applied: &mut Applied,
        raw: RawConfig,
        force_vault: bool,
        validate_only: bool,
    ) -> Result<ReloadDetails, ApplyError> {
        let prev = st.config();
        let built = self
            .build(&raw, prev.as_ref().map(|c| &c.webhooks), force_vault)
            .await;
        let details = diff(prev.as_ref().map(|c| &c.webhooks), &built);
        if validate_only {
            return Ok(details);
        }
        for e in &built.stale {
            tracing::warn!(webhook = %e.webhook, error = %e.error, "invalid webhook definition; previous definition kept");
        }
        let default_ns = match self.backend {
            ConfigBackend::File => None,
            ConfigBackend::Etcd => Some(st.settings.source.etcd_namespace.clone()),
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
        st.apply_config_with(built.set, built.stale, default_ns)
            .await
            .map_err(|e| ApplyError::Buffer(e.to_string()))?;
        applied.raw = raw;
        Ok(details)
    }

    /// Puts `raw` in force (file reloads, etcd events).
    pub async fn apply_raw(
        &self,
        st: &AppState,
        raw: RawConfig,
        force_vault: bool,
    ) -> Result<ReloadDetails, ApplyError> {
        let mut applied = self.applied.lock().await;
        self.apply_locked(st, &mut applied, raw, force_vault, false)
            .await
    }

    /// Registers the channels of the configuration in force again (the buffer lost its data),
    /// serialized with configuration changes so an older configuration cannot come back.
    pub async fn register_again(
        &self,
        st: &AppState,
    ) -> Result<usize, connect_buffer::BufferError> {
        let _applied = self.applied.lock().await;
        st.register_configured_channels().await
    }

    /// Rebuilds the applied definitions (Vault values changed).
    pub async fn rebuild(&self, st: &AppState) {
        let mut applied = self.applied.lock().await;
        if st.config().is_none() {
            return;
        }
        let raw = applied.raw.clone();
        if let Err(e) = self.apply_locked(st, &mut applied, raw, false, false).await {
            tracing::warn!(error = %e, "rebuilding the configuration after a secret change failed");
        }
    }

    fn record_failure(&self, why: &str) {
        tracing::warn!(error = %why, "configuration reload failed; the configuration in force is kept");
        self.status.lock().last_failure = Some(why.to_string());
    }

    pub fn last_failure(&self) -> Option<String> {
        self.status.lock().last_failure.clone()
    }

    /// Start-up: creates the Vault client, loads the first configuration (file backend: a
    /// failure is fatal) and spawns the watchers. `Err((exit code, message))`.
    pub async fn start(&self, st: &AppState) -> Result<(), (u8, String)> {
        // §1.1: command lines are visible to other local users.
        for flag in ["--etcd-password", "--vault-token", "--vault-secret-id"] {
            if std::env::args().any(|a| a == flag || a.starts_with(&format!("{flag}="))) {
                tracing::warn!(
                    flag,
                    "secret passed as a command-line flag; prefer the environment variable"
                );
            }
        }
        if st.settings.source.vault_on() {
            let v = VaultSecrets::new(&st.settings.source).map_err(|e| (64, e))?;
            v.set_metrics(st.metrics.clone());
            let _ = self.vault.set(v.clone());
            let st2 = st.clone();
            let stop = st.hub.dispatch_stop.clone();
            let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
            st.tracker.spawn(v.run_refresh(stop.clone(), move || {
                let _ = tx.try_send(());
            }));
            st.tracker.spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        got = rx.recv() => if got.is_none() { return },
                    }
                    st2.sources.rebuild(&st2).await;
                }
            });
        }
        match self.backend {
            ConfigBackend::File => {
                let raw = file::read_all(&st.settings, None).map_err(|e| (64, e))?;
                self.apply_raw(st, raw.raw, false)
                    .await
                    .map_err(|e| match e {
                        ApplyError::Source(m) => (64, m),
                        ApplyError::Buffer(m) => (69, format!("cannot register channels: {m}")),
                    })?;
                if self.file_watching {
                    file::spawn_watcher(st, raw.hashes);
                }
            }
            ConfigBackend::Etcd => etcd::spawn(st).map_err(|e| (64, e))?,
        }
        Ok(())
    }

    /// `POST /admin/reload-config`: re-reads the source(s) named by the flags, Vault afresh.
    pub async fn reload(
        &self,
        st: &AppState,
        webhooks: bool,
        connections: bool,
        validate_only: bool,
    ) -> Result<ReloadDetails, ApplyError> {
        let mut applied = self.applied.lock().await;
        let (mut raw, revision) = match self.backend {
            ConfigBackend::File => {
                let got = file::read_all(&st.settings, Some((webhooks, connections)));
                match got {
                    Ok(r) => (r.raw, None),
                    Err(e) => {
                        if !validate_only {
                            self.record_failure(&e);
                        }
                        return Err(ApplyError::Source(e));
                    }
                }
            }
            ConfigBackend::Etcd => {
                let client = self.etcd_client.lock().clone();
                let Some(client) = client else {
                    return Err(ApplyError::Source("etcd is not connected".into()));
                };
                match etcd::read_prefix(client, &st.settings.source.etcd_prefix).await {
                    Ok((raw, rev)) => (raw, Some(rev)),
                    Err(e) => {
                        let e = format!("etcd unreachable: {e}");
                        if !validate_only {
                            self.record_failure(&e);
                        }
                        return Err(ApplyError::Source(e));
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
            .apply_locked(st, &mut applied, raw, true, validate_only)
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

/// A [`SecretSource`] that only records references (to learn what a build will need).
#[derive(Default)]
struct Discovery(Mutex<BTreeSet<(String, String)>>);

impl SecretSource for Discovery {
    fn get(&self, path: &str, field: &str) -> connect_config::SecretLookup {
        self.0.lock().insert((path.to_string(), field.to_string()));
        connect_config::SecretLookup::Value(String::new())
    }
}

/// Per-entry build: a valid definition replaces the previous one; an invalid one keeps the
/// previous valid definition (reported as stale) or, for a new entry, is disabled.
pub fn build(
    raw: &RawConfig,
    prev: Option<&WebhookSet>,
    env: &dyn EnvSource,
    secrets: Option<&dyn SecretSource>,
) -> Built {
    let mut stale = Vec::new();
    let mut parsed = Vec::with_capacity(raw.webhooks.len());
    for ((ns, id), def) in &raw.webhooks {
        let r = def
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|v| Webhook::parse(id, ns.as_deref(), v, env, secrets));
        let entry = match r {
            Ok(w) => connect_config::Entry::Enabled(Arc::new(w)),
            Err(e) => match prev.and_then(|p| p.entry(ns.as_deref(), id)) {
                Some(connect_config::Entry::Enabled(old)) => {
                    stale.push(ConfigError {
                        webhook: entry_key(ns.as_deref(), id),
                        error: format!("{e} (previous definition kept)"),
                    });
                    connect_config::Entry::Enabled(old.clone())
                }
                _ => connect_config::Entry::Disabled(e),
            },
        };
        parsed.push((ns.clone(), id.clone(), entry));
    }
    let set = WebhookSet::from_parsed(parsed);
    let mut warnings = raw.warnings.clone();
    let mut connections_count = 0;
    for (name, def) in &raw.connections {
        match def {
            Err(e) => warnings.push(format!("connection {name}: {e}")),
            Ok(v) => match connect_config::resolve(v, env, secrets) {
                Err(e) => warnings.push(format!("connection {name}: {e}")),
                Ok(v) if v.get("type").and_then(Value::as_str).is_none() => {
                    warnings.push(format!("connection {name}: missing string key 'type'"));
                }
                Ok(_) => connections_count += 1,
            },
        }
    }
    Built {
        set,
        stale,
        warnings,
        connections_count,
        refs: BTreeSet::new(),
    }
}

fn diff(prev: Option<&WebhookSet>, built: &Built) -> ReloadDetails {
    let mut d = ReloadDetails {
        total_webhooks: built.set.len(),
        webhooks_disabled: built.set.errors().len(),
        errors: built
            .set
            .errors()
            .iter()
            .chain(built.stale.iter())
            .cloned()
            .collect(),
        warnings: built
            .set
            .warnings()
            .iter()
            .chain(built.warnings.iter())
            .cloned()
            .collect(),
        ..Default::default()
    };
    let resolved = |e: &connect_config::Entry| match e {
        connect_config::Entry::Enabled(w) => Ok(w.resolved.clone()),
        connect_config::Entry::Disabled(err) => Err(err.clone()),
    };
    for (ns, id, e) in built.set.entries() {
        match prev.and_then(|p| p.entry(ns, id)) {
            None => d.webhooks_added += 1,
            Some(old) if resolved(old) != resolved(e) => d.webhooks_modified += 1,
            Some(_) => {}
        }
    }
    if let Some(p) = prev {
        d.webhooks_removed = p
            .entries()
            .filter(|(ns, id, _)| built.set.entry(*ns, id).is_none())
            .count();
    }
    d
}

/// Checks what must be valid before anything else starts (file backend: the webhooks file is
/// readable JSON object; Vault settings build a client). `Err` → exit 64.
pub fn precheck(settings: &Settings) -> Result<(), String> {
    if settings.config_backend == ConfigBackend::File {
        file::read_all(settings, Some((true, false)))?;
    }
    if settings.source.vault_on() {
        VaultSecrets::new(&settings.source)?;
    }
    Ok(())
}

/// Reads a file as JSON (used by the file source and by start-up).
fn read_json(path: &Path) -> Result<(Value, [u8; 32]), String> {
    use sha2::Digest;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let hash: [u8; 32] = sha2::Sha256::digest(&bytes).into();
    let doc = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    Ok((doc, hash))
}

#[cfg(test)]
mod tests {
    use super::*;
    use connect_config::MapEnv;
    use serde_json::json;

    fn raw(defs: Value) -> RawConfig {
        RawConfig {
            webhooks: RawConfig::webhooks_from_doc(&defs).unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn an_entry_that_becomes_invalid_keeps_its_previous_definition() {
        let env = MapEnv::default();
        let first = build(
            &raw(json!({"a": {"module": "log"}, "b": {"module": "log"}})),
            None,
            &env,
            None,
        );
        assert!(first.stale.is_empty());
        let second = build(
            &raw(json!({"a": {"module": "nope"}, "b": {"module": "log"}, "c": {"module": "nope"}})),
            Some(&first.set),
            &env,
            None,
        );
        assert_eq!(second.stale.len(), 1);
        assert_eq!(second.stale[0].webhook, "a");
        assert!(matches!(
            second.set.entry(None, "a"),
            Some(connect_config::Entry::Enabled(_))
        ));
        assert!(matches!(
            second.set.entry(None, "c"),
            Some(connect_config::Entry::Disabled(_))
        ));
        let d = diff(Some(&first.set), &second);
        assert_eq!(
            (d.webhooks_added, d.webhooks_removed, d.webhooks_modified),
            (1, 0, 0)
        );
        assert_eq!(d.errors.len(), 2);
    }
}
