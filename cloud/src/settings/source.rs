//! Settings of the configuration sources (CONFIG.md §1.2–1.3, §4.1, §5.1, §6.1): file reload,
//! etcd and Vault. Flattened into the operator `Settings`; validated with it before anything binds.

use std::path::PathBuf;
use std::time::Duration;

use crate::settings::values::{ValueError, parse_bool};

/// `VAULT_VERIFY`: `true`, `false`, or a CA bundle path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VaultVerify {
    Yes,
    No,
    CaFile(PathBuf),
}

fn parse_verify(s: &str) -> Result<VaultVerify, ValueError> {
    match parse_bool(s) {
        Ok(true) => Ok(VaultVerify::Yes),
        Ok(false) => Ok(VaultVerify::No),
        Err(_) => Ok(VaultVerify::CaFile(PathBuf::from(s.trim()))),
    }
}

fn parse_secs(s: &str) -> Result<f64, ValueError> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| ValueError::Number(s.to_owned()))?;
    if v.is_finite() && v >= 0.0 {
        Ok(v)
    } else {
        Err(ValueError::Seconds(s.to_owned()))
    }
}

/// The configuration-source settings.
#[derive(Clone, Debug, clap::Args)]
pub struct SourceSettings {
    /// Debounce window of file reloads (below 0.1 → 3.0; capped at 3600).
    #[arg(long, env = "CONFIG_RELOAD_DEBOUNCE_SECONDS", value_parser = parse_secs, default_value = "3.0")]
    pub config_reload_debounce_seconds: f64,
    /// Safety poll of the configuration files' content while file watching is on; 0 disables.
    #[arg(long, env = "WEBHOOK_CONNECT_CONFIG_POLL_SECONDS", value_parser = parse_secs, default_value = "30")]
    pub config_poll_seconds: f64,

    /// Comma-separated `http(s)://host:port` cluster members; overrides ETCD_HOST/ETCD_PORT.
    #[arg(long, env = "ETCD_ENDPOINTS")]
    pub etcd_endpoints: Option<String>,
    #[arg(long, env = "ETCD_HOST", default_value = "localhost")]
    pub etcd_host: String,
    #[arg(long, env = "ETCD_PORT", default_value_t = 2379)]
    pub etcd_port: u16,
    /// Key prefix; normalized to start with `/` and end with exactly one `/`.
    #[arg(long, env = "ETCD_PREFIX", default_value = "/cwm/")]
    pub etcd_prefix: String,
    /// Namespace served by `/webhook/{id}`.
    #[arg(long, env = "ETCD_NAMESPACE", default_value = "default")]
    pub etcd_namespace: String,
    #[arg(long, env = "ETCD_USERNAME")]
    pub etcd_username: Option<String>,
    #[arg(long, env = "ETCD_PASSWORD", hide_env_values = true)]
    pub etcd_password: Option<String>,
    #[arg(long, env = "ETCD_CA_FILE")]
    pub etcd_ca_file: Option<PathBuf>,
    #[arg(long, env = "ETCD_CERT_FILE")]
    pub etcd_cert_file: Option<PathBuf>,
    #[arg(long, env = "ETCD_KEY_FILE")]
    pub etcd_key_file: Option<PathBuf>,
    #[arg(long, env = "ETCD_DIAL_TIMEOUT_SECONDS", value_parser = parse_secs, default_value = "5")]
    pub etcd_dial_timeout_seconds: f64,

    /// `none` or `vault`.
    #[arg(long, env = "SECRETS_BACKEND", default_value = "none")]
    pub secrets_backend: String,
    /// Alias of `SECRETS_BACKEND=vault`.
    #[arg(long, env = "VAULT_ENABLED", value_parser = parse_bool)]
    pub vault_enabled: Option<bool>,
    #[arg(long, env = "VAULT_ADDR")]
    pub vault_addr: Option<String>,
    #[arg(long, env = "VAULT_TOKEN", hide_env_values = true)]
    pub vault_token: Option<String>,
    #[arg(long, env = "VAULT_ROLE_ID")]
    pub vault_role_id: Option<String>,
    #[arg(long, env = "VAULT_SECRET_ID", hide_env_values = true)]
    pub vault_secret_id: Option<String>,
    #[arg(long, env = "VAULT_APPROLE_MOUNT", default_value = "approle")]
    pub vault_approle_mount: String,
    #[arg(long, env = "VAULT_MOUNT_POINT", default_value = "secret")]
    pub vault_mount_point: String,
    #[arg(long, env = "VAULT_KV_VERSION", default_value_t = 2)]
    pub vault_kv_version: u8,
    #[arg(long, env = "VAULT_NAMESPACE")]
    pub vault_namespace: Option<String>,
    #[arg(long, env = "VAULT_VERIFY", value_parser = parse_verify, default_value = "true")]
    pub vault_verify: VaultVerify,
    #[arg(long, env = "VAULT_TIMEOUT_SECONDS", value_parser = parse_secs, default_value = "10")]
    pub vault_timeout_seconds: f64,
    #[arg(long, env = "VAULT_CACHE_TTL_SECONDS", value_parser = parse_secs, default_value = "300")]
    pub vault_cache_ttl_seconds: f64,
    #[arg(long, env = "VAULT_CACHE_MAX_SIZE", default_value_t = 1000)]
    pub vault_cache_max_size: usize,
}

fn blank_to_none(v: &mut Option<String>) {
    if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
        *v = None;
    }
}

fn blank_path_to_none(v: &mut Option<PathBuf>) {
    if v.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
        *v = None;
    }
}

/// A cross-field rule of the configuration-source settings is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceSettingsError {
    #[error("ETCD_NAMESPACE: invalid namespace {0:?} (^[A-Za-z0-9_-]{{1,64}}$)")]
    Namespace(String),
    #[error("ETCD_USERNAME and ETCD_PASSWORD must be set together")]
    EtcdCredentialsApart,
    #[error("ETCD_CERT_FILE and ETCD_KEY_FILE must be set together")]
    EtcdCertKeyApart,
    #[error("ETCD_ENDPOINTS: no endpoint given")]
    NoEndpoint,
    #[error("ETCD_ENDPOINTS: invalid endpoint {0:?} (use http(s)://host:port)")]
    Endpoint(String),
    #[error("ETCD_DIAL_TIMEOUT_SECONDS must be positive")]
    DialTimeout,
    #[error("SECRETS_BACKEND: unknown backend {0:?} (use none or vault)")]
    SecretsBackend(String),
    #[error("VAULT_ADDR is required when SECRETS_BACKEND=vault")]
    VaultAddrMissing,
    #[error("VAULT_ADDR: invalid URL {0:?}")]
    VaultAddr(String),
    #[error("Vault needs VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID (AppRole)")]
    VaultAuth,
    #[error("VAULT_KV_VERSION must be 1 or 2")]
    VaultKvVersion,
    #[error("VAULT_CACHE_MAX_SIZE must be positive")]
    VaultCacheSize,
    #[error("VAULT_MOUNT_POINT and VAULT_APPROLE_MOUNT must not be empty")]
    VaultMounts,
}

impl SourceSettings {
    /// Cross-field rules; `Err` text goes to stderr, exit 64.
    pub fn validate(&mut self) -> Result<(), SourceSettingsError> {
        for v in [
            &mut self.etcd_endpoints,
            &mut self.etcd_username,
            &mut self.etcd_password,
            &mut self.vault_addr,
            &mut self.vault_token,
            &mut self.vault_role_id,
            &mut self.vault_secret_id,
            &mut self.vault_namespace,
        ] {
            blank_to_none(v);
        }
        for p in [
            &mut self.etcd_ca_file,
            &mut self.etcd_cert_file,
            &mut self.etcd_key_file,
        ] {
            blank_path_to_none(p);
        }
        if self.config_reload_debounce_seconds < 0.1 {
            self.config_reload_debounce_seconds = 3.0;
        }
        self.config_reload_debounce_seconds = self.config_reload_debounce_seconds.min(3600.0);
        self.etcd_prefix = normalize_prefix(&self.etcd_prefix);
        if !is_namespace(&self.etcd_namespace) {
            return Err(SourceSettingsError::Namespace(self.etcd_namespace.clone()));
        }
        if self.etcd_username.is_some() != self.etcd_password.is_some() {
            return Err(SourceSettingsError::EtcdCredentialsApart);
        }
        if self.etcd_cert_file.is_some() != self.etcd_key_file.is_some() {
            return Err(SourceSettingsError::EtcdCertKeyApart);
        }
        if self.etcd_endpoints_configured().is_empty() {
            return Err(SourceSettingsError::NoEndpoint);
        }
        for e in self.etcd_endpoints_configured() {
            if !(e.starts_with("http://") || e.starts_with("https://"))
                || e.parse::<http::Uri>().is_err()
            {
                return Err(SourceSettingsError::Endpoint(e.to_owned()));
            }
        }
        if self.etcd_dial_timeout_seconds <= 0.0 {
            return Err(SourceSettingsError::DialTimeout);
        }
        let backend = self.secrets_backend.trim().to_ascii_lowercase();
        match backend.as_str() {
            "" | "none" => {}
            "vault" => self.vault_enabled = Some(true),
            other => {
                return Err(SourceSettingsError::SecretsBackend(other.to_owned()));
            }
        }
        if self.vault_on() {
            let addr = self
                .vault_addr
                .as_deref()
                .ok_or(SourceSettingsError::VaultAddrMissing)?;
            if !(addr.starts_with("http://") || addr.starts_with("https://"))
                || addr.parse::<http::Uri>().is_err()
            {
                return Err(SourceSettingsError::VaultAddr(addr.to_owned()));
            }
            if self.vault_token.is_none()
                && (self.vault_role_id.is_none() || self.vault_secret_id.is_none())
            {
                return Err(SourceSettingsError::VaultAuth);
            }
            if !matches!(self.vault_kv_version, 1 | 2) {
                return Err(SourceSettingsError::VaultKvVersion);
            }
            if self.vault_cache_max_size == 0 {
                return Err(SourceSettingsError::VaultCacheSize);
            }
            self.vault_mount_point = self.vault_mount_point.trim_matches('/').to_string();
            self.vault_approle_mount = self.vault_approle_mount.trim_matches('/').to_string();
            if self.vault_mount_point.is_empty() || self.vault_approle_mount.is_empty() {
                return Err(SourceSettingsError::VaultMounts);
            }
        }
        self.vault_timeout_seconds = self.vault_timeout_seconds.clamp(1.0, 300.0);
        Ok(())
    }

    /// Whether `{$vault:…}` references are resolved through Vault.
    pub fn vault_on(&self) -> bool {
        self.vault_enabled == Some(true)
    }

    /// The etcd endpoints as configured (`ETCD_ENDPOINTS`, else `http://ETCD_HOST:ETCD_PORT`).
    fn etcd_endpoints_configured(&self) -> Vec<String> {
        match &self.etcd_endpoints {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            None => vec![format!("http://{}:{}", self.etcd_host, self.etcd_port)],
        }
    }

    /// TLS to etcd: when `ETCD_CA_FILE` or a client certificate is set, or an endpoint is
    /// `https://`.
    pub fn etcd_tls(&self) -> bool {
        self.etcd_ca_file.is_some()
            || self.etcd_cert_file.is_some()
            || self
                .etcd_endpoints_configured()
                .iter()
                .any(|e| e.starts_with("https://"))
    }

    /// The etcd endpoints to dial. With TLS every member is dialled over `https://` (one client
    /// cannot mix plain and TLS members), so `http://` endpoints are upgraded.
    pub fn etcd_endpoint_list(&self) -> Vec<String> {
        let list = self.etcd_endpoints_configured();
        if !self.etcd_tls() {
            return list;
        }
        list.into_iter()
            .map(|e| match e.strip_prefix("http://") {
                Some(rest) => format!("https://{rest}"),
                None => e,
            })
            .collect()
    }

    /// Configured `http://` endpoints that [`Self::etcd_endpoint_list`] upgrades to TLS.
    pub fn etcd_upgraded_endpoints(&self) -> Vec<String> {
        if !self.etcd_tls() || self.etcd_endpoints.is_none() {
            return Vec::new();
        }
        self.etcd_endpoints_configured()
            .into_iter()
            .filter(|e| e.starts_with("http://"))
            .collect()
    }

    pub fn debounce(&self) -> Duration {
        Duration::from_secs_f64(self.config_reload_debounce_seconds)
    }

    /// `None` when the safety poll is off.
    pub fn poll_interval(&self) -> Option<Duration> {
        (self.config_poll_seconds > 0.0).then(|| Duration::from_secs_f64(self.config_poll_seconds))
    }

    pub fn vault_cache_ttl(&self) -> Duration {
        Duration::from_secs_f64(self.vault_cache_ttl_seconds)
    }
}

/// `^[A-Za-z0-9_-]{1,64}$`
pub fn is_namespace(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Starts with `/`, ends with exactly one `/`.
pub fn normalize_prefix(p: &str) -> String {
    let inner = p.trim().trim_matches('/');
    if inner.is_empty() {
        "/".into()
    } else {
        format!("/{inner}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        s: SourceSettings,
    }

    fn parse(args: &[&str]) -> SourceSettings {
        T::parse_from(std::iter::once("x").chain(args.iter().copied())).s
    }

    #[test]
    fn prefix_is_normalized() {
        assert_eq!(normalize_prefix("cwm"), "/cwm/");
        assert_eq!(normalize_prefix("/a/b//"), "/a/b/");
        assert_eq!(normalize_prefix("/"), "/");
    }

    #[test]
    fn etcd_credentials_and_client_certs_come_in_pairs() {
        assert!(parse(&["--etcd-username", "u"]).validate().is_err());
        assert!(
            parse(&["--etcd-username", "u", "--etcd-password", "p"])
                .validate()
                .is_ok()
        );
        assert!(parse(&["--etcd-cert-file", "c"]).validate().is_err());
        assert!(
            parse(&["--etcd-endpoints", "127.0.0.1:2379"])
                .validate()
                .is_err()
        );
        assert!(parse(&["--etcd-endpoints", " , "]).validate().is_err());
        let mut s = parse(&["--etcd-endpoints", "http://a:1, http://b:2"]);
        s.validate().unwrap();
        assert_eq!(s.etcd_endpoint_list(), ["http://a:1", "http://b:2"]);
    }

    #[test]
    fn tls_settings_dial_every_etcd_member_over_https() {
        let mut s = parse(&["--etcd-host", "e", "--etcd-ca-file", "/ca.pem"]);
        s.validate().unwrap();
        assert!(s.etcd_tls());
        assert_eq!(s.etcd_endpoint_list(), ["https://e:2379"]);
        assert!(s.etcd_upgraded_endpoints().is_empty());
        let mut s = parse(&["--etcd-endpoints", "http://a:1, https://b:2"]);
        s.validate().unwrap();
        assert_eq!(s.etcd_endpoint_list(), ["https://a:1", "https://b:2"]);
        assert_eq!(s.etcd_upgraded_endpoints(), ["http://a:1"]);
        let mut s = parse(&["--etcd-endpoints", "http://a:1"]);
        s.validate().unwrap();
        assert!(!s.etcd_tls());
    }

    #[test]
    fn vault_needs_an_address_and_an_auth_method() {
        assert!(parse(&["--secrets-backend", "vault"]).validate().is_err());
        assert!(
            parse(&[
                "--secrets-backend",
                "vault",
                "--vault-addr",
                "http://v:8200"
            ])
            .validate()
            .is_err()
        );
        let mut s = parse(&[
            "--vault-enabled",
            "yes",
            "--vault-addr",
            "http://v:8200",
            "--vault-role-id",
            "r",
            "--vault-secret-id",
            "s",
        ]);
        s.validate().unwrap();
        assert!(s.vault_on());
        assert!(parse(&["--secrets-backend", "consul"]).validate().is_err());
    }

    #[test]
    fn debounce_falls_back_and_is_capped() {
        let mut s = parse(&["--config-reload-debounce-seconds", "0.01"]);
        s.validate().unwrap();
        assert_eq!(s.config_reload_debounce_seconds, 3.0);
        let mut s = parse(&["--config-reload-debounce-seconds", "99999"]);
        s.validate().unwrap();
        assert_eq!(s.config_reload_debounce_seconds, 3600.0);
    }
}
