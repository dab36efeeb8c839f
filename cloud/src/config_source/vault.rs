//! Vault secrets (CONFIG.md §5): a KV v1/v2 reader with token or AppRole authentication, a
//! per-path cache with TTL and LRU bound, and the background refresh that drives live rotation.
//!
//! Placeholder resolution is synchronous ([`SecretSource`]), Vault is not: a build resolves
//! against a [`SecretView`] (a snapshot of the cache that records which references it was asked
//! for); the manager then fetches what was missing or stale and builds again.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_config::{SecretLookup, SecretSource};
use connect_protocol::time::Timestamp;
use parking_lot::Mutex;
use serde_json::{Map, Value};
use tokio::sync::RwLock;
use vaultrs::client::{Client as _, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use crate::settings::source::{SourceSettings, VaultVerify};

type Secret = Arc<Map<String, Value>>;

/// What a read of one path produced.
#[derive(Clone, Debug, PartialEq)]
enum Known {
    Found(Secret),
    /// 404: the path or version does not exist (a configured default applies).
    Missing,
    /// Never read successfully.
    Failed(String),
}

struct Cached {
    known: Known,
    /// Time of the last successful read (`None` until one succeeded).
    fetched_at: Option<Instant>,
    last_used: Instant,
    /// Error of the latest attempt; the last good value stays in force meanwhile.
    error: Option<String>,
    next_retry: Instant,
    backoff: Duration,
}

enum Auth {
    Token,
    AppRole {
        mount: String,
        role_id: String,
        secret_id: String,
    },
}

/// Status for `/health` and `GET /admin/config-status`.
#[derive(Clone, Debug, Default)]
pub struct VaultStatus {
    pub degraded: bool,
    pub last_refresh: Option<Timestamp>,
    pub failing_refs: Vec<String>,
}

/// A Vault KV reader with cache.
pub struct VaultSecrets {
    client: RwLock<VaultClient>,
    auth: Auth,
    mount: String,
    kv_version: u8,
    ttl: Duration,
    max_size: usize,
    cache: Mutex<HashMap<String, Cached>>,
    /// `(path, field)` references of the configuration in force.
    referenced: Mutex<BTreeSet<(String, String)>>,
    last_refresh: Mutex<Option<Timestamp>>,
    /// When the token must be renewed (token auth) or AppRole must log in again.
    renew_at: Mutex<Option<Instant>>,
    /// When the current token stops working, as far as Vault told us.
    expires_at: Mutex<Option<Instant>>,
    logged_in: Mutex<bool>,
    metrics: Mutex<Option<Arc<crate::metrics::Metrics>>>,
}

#[derive(Debug)]
struct ReadError {
    transient: bool,
    forbidden: bool,
    message: String,
}

/// Why logging in or renewing the token failed.
#[derive(Debug, Clone, thiserror::Error)]
enum AuthError {
    #[error("AppRole login: {0}")]
    Login(String),
    #[error("token renewal: {0}")]
    Renewal(String),
}

/// Why [`VaultSecrets::read`] failed: the read's own error (`ReadError::message`), or the login
/// before it, or the login before its retry.
#[derive(Debug, Clone, thiserror::Error)]
enum SecretError {
    #[error(transparent)]
    Auth(AuthError),
    #[error("{0}")]
    Read(String),
    #[error("{read}; {auth}")]
    ReadThenAuth { read: String, auth: AuthError },
}

fn classify(e: &ClientError) -> ReadError {
    match e {
        ClientError::APIError { code, .. } => ReadError {
            transient: *code >= 500,
            forbidden: *code == 403,
            message: format!("Vault answered {code}"),
        },
        other => ReadError {
            transient: true,
            forbidden: false,
            message: format!("Vault request failed: {}", with_causes(other)),
        },
    }
}

/// `e` followed by its causes (`a: b: c`): vaultrs's transport errors say only "An error
/// occurred with the request" and keep the reason (an untrusted certificate, a refused
/// connection) in their sources.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// §5.2: strings verbatim; numbers and booleans as their JSON text; objects and arrays compact.
fn field_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Why the Vault settings build no client (a start-up error, exit 64).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultConfigError {
    #[error("VAULT_ADDR is not set")]
    NoAddress,
    #[error("VAULT_VERIFY: CA bundle {0} not found")]
    CaBundleMissing(String),
    #[error("Vault settings: {0}")]
    Settings(String),
    #[error("Vault client: {0}")]
    Client(String),
    #[error("Vault needs VAULT_TOKEN or VAULT_ROLE_ID + VAULT_SECRET_ID")]
    NoAuthMethod,
}

impl VaultSecrets {
    /// Builds the client (no network I/O). Errors are start-up errors (exit 64).
    pub fn new(s: &SourceSettings) -> Result<Arc<Self>, VaultConfigError> {
        let addr = s.vault_addr.clone().ok_or(VaultConfigError::NoAddress)?;
        let mut b = VaultClientSettingsBuilder::default();
        b.address(&addr)
            .token(s.vault_token.clone().unwrap_or_default())
            .timeout(Some(Duration::from_secs_f64(s.vault_timeout_seconds)));
        match &s.vault_verify {
            VaultVerify::Yes => {
                b.verify(true).ca_certs(Vec::new());
            }
            VaultVerify::No => {
                b.verify(false).ca_certs(Vec::new());
            }
            VaultVerify::CaFile(p) => {
                if !p.is_file() {
                    return Err(VaultConfigError::CaBundleMissing(p.display().to_string()));
                }
                b.verify(true)
                    .ca_certs(vec![p.to_string_lossy().into_owned()]);
            }
        }
        if let Some(ns) = &s.vault_namespace {
            b.set_namespace(ns.clone());
        }
        let settings = b
            .build()
            .map_err(|e| VaultConfigError::Settings(e.to_string()))?;
        let client =
            VaultClient::new(settings).map_err(|e| VaultConfigError::Client(e.to_string()))?;
        let auth = match (&s.vault_token, &s.vault_role_id, &s.vault_secret_id) {
            (Some(_), _, _) => Auth::Token,
            (None, Some(r), Some(sec)) => Auth::AppRole {
                mount: s.vault_approle_mount.clone(),
                role_id: r.clone(),
                secret_id: sec.clone(),
            },
            _ => return Err(VaultConfigError::NoAuthMethod),
        };
        Ok(Arc::new(VaultSecrets {
            client: RwLock::new(client),
            auth,
            mount: s.vault_mount_point.clone(),
            kv_version: s.vault_kv_version,
            ttl: s.vault_cache_ttl(),
            max_size: s.vault_cache_max_size,
            cache: Mutex::new(HashMap::new()),
            referenced: Mutex::new(BTreeSet::new()),
            last_refresh: Mutex::new(None),
            renew_at: Mutex::new(None),
            expires_at: Mutex::new(None),
            logged_in: Mutex::new(false),
            metrics: Mutex::new(None),
        }))
    }

    /// Counts refreshes in `webhook_connect_secret_refresh_total{result}`.
    pub fn set_metrics(&self, m: Arc<crate::metrics::Metrics>) {
        *self.metrics.lock() = Some(m);
    }

    fn count(&self, result: &str) {
        if let Some(m) = self.metrics.lock().as_ref() {
            m.inc(
                "webhook_connect_secret_refresh_total",
                &[("result", result)],
                1,
            );
        }
    }

    /// Logs in (AppRole) or looks the token up to learn when to renew it.
    async fn authenticate(&self) -> Result<(), AuthError> {
        match &self.auth {
            Auth::Token => {
                let client = self.client.read().await;
                match vaultrs::token::lookup_self(&*client).await {
                    Ok(info) => {
                        self.schedule(info.ttl, info.renewable == Some(true));
                        *self.logged_in.lock() = true;
                        Ok(())
                    }
                    Err(e) => {
                        // The token itself may still read secrets (a policy without
                        // lookup-self); reads decide. Only renewal is unknown.
                        *self.logged_in.lock() = true;
                        tracing::warn!(error = %classify(&e).message, "Vault token lookup failed; token renewal disabled");
                        Ok(())
                    }
                }
            }
            Auth::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                let mut client = self.client.write().await;
                match vaultrs::auth::approle::login(&*client, mount, role_id, secret_id).await {
                    Ok(info) => {
                        client.set_token(&info.client_token);
                        self.schedule(info.lease_duration, true);
                        *self.logged_in.lock() = true;
                        tracing::info!("Vault AppRole login succeeded");
                        Ok(())
                    }
                    Err(e) => Err(AuthError::Login(classify(&e).message)),
                }
            }
        }
    }

    /// Renews the token (token auth) or logs in again (AppRole) when due.
    async fn maintain_auth(&self) {
        // `renew_at` is also when a failed attempt is retried (see `retry_delay`).
        let at = *self.renew_at.lock();
        let due = at.is_some_and(|t| t <= Instant::now());
        let needs_login = !*self.logged_in.lock();
        if !(due || (needs_login && at.is_none())) {
            return;
        }
        let result = match (&self.auth, due && !needs_login) {
            (Auth::Token, true) => {
                let client = self.client.read().await;
                match vaultrs::token::renew_self(&*client, None).await {
                    Ok(info) => {
                        self.schedule(info.lease_duration, info.renewable);
                        Ok(())
                    }
                    Err(e) => Err(AuthError::Renewal(classify(&e).message)),
                }
            }
            _ => self.authenticate().await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "Vault authentication maintenance failed");
            *self.renew_at.lock() = Some(Instant::now() + self.retry_delay());
        }
    }

    /// Renew (or log in again) half-way through a lifetime of `ttl_secs`, which leaves the
    /// other half for a slow or failed attempt to be retried before the token dies.
    fn schedule(&self, ttl_secs: u64, renewable: bool) {
        let now = Instant::now();
        let life = Duration::from_secs(ttl_secs);
        *self.expires_at.lock() = (ttl_secs > 0).then(|| now + life);
        *self.renew_at.lock() = (renewable && ttl_secs > 0).then(|| now + life / 2);
    }

    /// After a failed renewal or login: a quarter of what is left of the token's life
    /// (between 250 ms and 5 s), so a short-lived token gets several more tries; 5 s once it
    /// has expired, so an outage costs one attempt per 5 s instead of one per tick.
    fn retry_delay(&self) -> Duration {
        let left = self
            .expires_at
            .lock()
            .and_then(|t| t.checked_duration_since(Instant::now()));
        match left {
            Some(left) if !left.is_zero() => {
                (left / 4).clamp(Duration::from_millis(250), Duration::from_secs(5))
            }
            _ => Duration::from_secs(5),
        }
    }

    async fn read_once(&self, path: &str) -> Result<Option<Secret>, ReadError> {
        let client = self.client.read().await;
        let r = if self.kv_version == 1 {
            vaultrs::kv1::get::<Map<String, Value>>(&*client, &self.mount, path).await
        } else {
            vaultrs::kv2::read::<Map<String, Value>>(&*client, &self.mount, path).await
        };
        match r {
            Ok(m) => Ok(Some(Arc::new(m))),
            Err(ClientError::APIError { code: 404, .. }) => Ok(None),
            Err(e) => Err(classify(&e)),
        }
    }

    /// One read with one retry on transient errors (re-authenticating first). A 403 under
    /// AppRole logs in again and retries once.
    async fn read(&self, path: &str) -> Result<Option<Secret>, SecretError> {
        if !*self.logged_in.lock()
            && let Err(e) = self.authenticate().await
        {
            return Err(SecretError::Auth(e));
        }
        match self.read_once(path).await {
            Ok(v) => Ok(v),
            Err(e) if e.transient || (e.forbidden && matches!(self.auth, Auth::AppRole { .. })) => {
                if let Err(auth) = self.authenticate().await {
                    return Err(SecretError::ReadThenAuth {
                        read: e.message,
                        auth,
                    });
                }
                self.read_once(path)
                    .await
                    .map_err(|e| SecretError::Read(e.message))
            }
            Err(e) => Err(SecretError::Read(e.message)),
        }
    }

    fn max_backoff(&self) -> Duration {
        if self.ttl.is_zero() {
            Duration::from_secs(60)
        } else {
            self.ttl.min(Duration::from_secs(60))
        }
    }

    /// Reads `paths` now and updates the cache. Returns whether any value in force changed.
    pub async fn fetch(&self, paths: &BTreeSet<String>) -> bool {
        let mut changed = false;
        for path in paths {
            let r = self.read(path).await;
            self.count(if r.is_ok() { "success" } else { "error" });
            let now = Instant::now();
            let mut cache = self.cache.lock();
            let max_backoff = self.max_backoff();
            let c = cache.entry(path.clone()).or_insert_with(|| Cached {
                known: Known::Failed(String::new()),
                fetched_at: None,
                last_used: now,
                error: None,
                next_retry: now,
                backoff: Duration::from_secs(1),
            });
            c.last_used = now;
            match r {
                Ok(v) => {
                    let known = v.map_or(Known::Missing, Known::Found);
                    if known != c.known || c.error.is_some() {
                        changed = true;
                    }
                    if c.error.take().is_some() {
                        tracing::info!(path = %path, "Vault secret readable again");
                    }
                    c.known = known;
                    c.fetched_at = Some(now);
                    c.backoff = Duration::from_secs(1);
                    *self.last_refresh.lock() = Some(Timestamp::now());
                }
                Err(e) => {
                    let e = e.to_string();
                    tracing::warn!(path = %path, error = %e, "Vault secret read failed; last good value kept");
                    if c.fetched_at.is_none() {
                        c.known = Known::Failed(e.clone());
                    }
                    c.error = Some(e);
                    c.next_retry = now + c.backoff;
                    c.backoff = (c.backoff * 2).min(max_backoff);
                }
            }
        }
        self.evict();
        changed
    }

    /// Keeps at most `max_size` paths, dropping the least recently used ones that the
    /// configuration in force does not reference.
    fn evict(&self) {
        let referenced: BTreeSet<String> = self
            .referenced
            .lock()
            .iter()
            .map(|(p, _)| p.clone())
            .collect();
        let mut cache = self.cache.lock();
        while cache.len() > self.max_size {
            let victim = cache
                .iter()
                .filter(|(p, _)| !referenced.contains(*p))
                .min_by_key(|(_, c)| c.last_used)
                .or_else(|| cache.iter().min_by_key(|(_, c)| c.last_used))
                .map(|(p, _)| p.clone());
            match victim {
                Some(p) => {
                    cache.remove(&p);
                }
                None => break,
            }
        }
    }

    /// Paths among `requested` that must be read before a build: unknown ones, stale ones
    /// (older than the TTL, or every time when the TTL is 0) and, with `force`, all of them.
    pub fn needs_fetch(&self, requested: &BTreeSet<String>, force: bool) -> BTreeSet<String> {
        let cache = self.cache.lock();
        let now = Instant::now();
        requested
            .iter()
            .filter(|p| {
                force
                    || match cache.get(*p) {
                        None => true,
                        Some(c) => match c.fetched_at {
                            None => c.next_retry <= now,
                            Some(at) => {
                                self.ttl.is_zero()
                                    || (now.duration_since(at) >= self.ttl && c.error.is_none())
                            }
                        },
                    }
            })
            .cloned()
            .collect()
    }

    /// A snapshot of the cache to resolve a configuration against.
    pub fn view(&self) -> SecretView {
        let now = Instant::now();
        let mut cache = self.cache.lock();
        let entries = cache
            .iter_mut()
            .map(|(p, c)| {
                c.last_used = now;
                (p.clone(), c.known.clone())
            })
            .collect();
        SecretView {
            entries,
            requested: Mutex::new(BTreeSet::new()),
        }
    }

    /// Records the references of the configuration now in force.
    pub fn set_referenced(&self, refs: BTreeSet<(String, String)>) {
        *self.referenced.lock() = refs;
    }

    /// Paths of the configuration in force that are due for a refresh (TTL expired) or for a
    /// retry after a failure.
    pub fn due_paths(&self) -> BTreeSet<String> {
        let paths: BTreeSet<String> = self
            .referenced
            .lock()
            .iter()
            .map(|(p, _)| p.clone())
            .collect();
        let cache = self.cache.lock();
        let now = Instant::now();
        paths
            .into_iter()
            .filter(|p| match cache.get(p) {
                None => true,
                Some(c) if c.error.is_some() => c.next_retry <= now,
                Some(c) => {
                    !self.ttl.is_zero()
                        && c.fetched_at
                            .is_none_or(|at| now.duration_since(at) >= self.ttl)
                }
            })
            .collect()
    }

    pub fn status(&self) -> VaultStatus {
        let cache = self.cache.lock();
        let failing: Vec<String> = self
            .referenced
            .lock()
            .iter()
            .filter(|(p, _)| cache.get(p).is_some_and(|c| c.error.is_some()))
            .map(|(p, f)| format!("{p}#{f}"))
            .collect();
        VaultStatus {
            degraded: !failing.is_empty(),
            last_refresh: *self.last_refresh.lock(),
            failing_refs: failing,
        }
    }

    /// Background work: token renewal / AppRole re-login, TTL refresh and retries. Calls
    /// `on_change` when a value in force changed (or a failing path became readable).
    pub async fn run_refresh(
        self: Arc<Self>,
        stop: tokio_util::sync::CancellationToken,
        on_change: impl Fn() + Send + Sync,
    ) {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            self.maintain_auth().await;
            let due = self.due_paths();
            if due.is_empty() {
                continue;
            }
            if self.fetch(&due).await {
                tracing::info!(
                    paths = due.len(),
                    "Vault secrets changed; rebuilding affected webhooks"
                );
                on_change();
            }
        }
    }
}

/// A snapshot of the cache used by one build; records every reference it is asked for.
pub struct SecretView {
    entries: HashMap<String, Known>,
    requested: Mutex<BTreeSet<(String, String)>>,
}

impl SecretView {
    /// `(path, field)` references met during the build.
    pub fn requested(&self) -> BTreeSet<(String, String)> {
        self.requested.lock().clone()
    }
}

impl SecretSource for SecretView {
    fn get(&self, path: &str, field: &str) -> SecretLookup {
        self.requested
            .lock()
            .insert((path.to_string(), field.to_string()));
        match self.entries.get(path) {
            None => SecretLookup::Unavailable("secret not read yet".into()),
            Some(Known::Failed(e)) => SecretLookup::Unavailable(e.clone()),
            Some(Known::Missing) => SecretLookup::Missing,
            Some(Known::Found(m)) => match m.get(field) {
                Some(v) => SecretLookup::Value(field_text(v)),
                None => SecretLookup::Missing,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_values_follow_the_text_rules() {
        assert_eq!(field_text(&Value::String("a b".into())), "a b");
        assert_eq!(field_text(&serde_json::json!(42)), "42");
        assert_eq!(field_text(&serde_json::json!(true)), "true");
        assert_eq!(
            field_text(&serde_json::json!({"a": [1, 2]})),
            r#"{"a":[1,2]}"#
        );
    }

    #[test]
    fn a_view_records_references_and_never_falls_back_on_failure() {
        let mut entries = HashMap::new();
        let mut m = Map::new();
        m.insert("token".into(), Value::String("t1".into()));
        entries.insert("app/auth".to_string(), Known::Found(Arc::new(m)));
        entries.insert("gone".to_string(), Known::Missing);
        entries.insert("down".to_string(), Known::Failed("refused".into()));
        let v = SecretView {
            entries,
            requested: Mutex::new(BTreeSet::new()),
        };
        assert_eq!(v.get("app/auth", "token"), SecretLookup::Value("t1".into()));
        assert_eq!(v.get("app/auth", "other"), SecretLookup::Missing);
        assert_eq!(v.get("gone", "x"), SecretLookup::Missing);
        assert!(matches!(v.get("down", "x"), SecretLookup::Unavailable(_)));
        assert!(matches!(v.get("new", "x"), SecretLookup::Unavailable(_)));
        assert_eq!(v.requested().len(), 5);
    }
}
