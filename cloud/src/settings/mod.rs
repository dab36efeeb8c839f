//! Operator settings (CONFIG.md §1): every setting is a flag with an environment variable.
//! Parsed and validated before anything is bound; invalid settings exit with code 64.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use connect_buffer::redis::RedisEndpoint;
use ipnet::IpNet;

pub mod hosted;
pub mod source;
pub mod values;

/// Settings that clap accepted but that are invalid together or out of range (exit 64). The
/// text names the environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSettings {
    /// `TRUSTED_PROXY_IPS` (the alias) is not a list of IPs and CIDRs.
    #[error("TRUSTED_PROXY_IPS: {0}")]
    TrustedProxies(ValueError),
    /// A size or duration that must be above zero.
    #[error("{0} must be positive")]
    NotPositive(&'static str),
    #[error("WEBHOOK_CONNECT_MAX_QUEUE_BYTES must be within {min}..={max}")]
    QueueBytes { min: u64, max: u64 },
    #[error("WEBHOOK_CONNECT_SEGMENT_BYTES must be at least {0}")]
    SegmentBytes(u64),
    #[error("WEBHOOK_CONNECT_SYNCS_IN_FLIGHT must be within 1..=4")]
    SyncsInFlight,
    /// `WEBHOOK_CONNECT_MAX_HEADERS` or `WEBHOOK_CONNECT_MAX_HEADER_BYTES` is 0.
    #[error("header limits must be positive")]
    HeaderLimits,
    /// A timeout outside (0, 3600] seconds.
    #[error("{0} must be between 0 and 3600")]
    Timeout(&'static str),
    #[error("WEBHOOK_CONNECT_SHUTDOWN_GRACE_SECONDS must not be negative")]
    ShutdownGrace,
    #[error("WEBHOOK_CONNECT_LOG_LEVEL: invalid level {0:?}")]
    LogLevel(String),
    #[error("WEBHOOK_CONNECT_REDIS_URL must start with redis:// or rediss://")]
    RedisScheme,
    #[error("set either WEBHOOK_CONNECT_REDIS_URL or WEBHOOK_CONNECT_REDIS_CLUSTER_URLS, not both")]
    RedisBoth,
    #[error("WEBHOOK_CONNECT_REDIS_CLUSTER_URLS: every seed must start with redis:// or rediss://")]
    RedisClusterScheme,
    #[error("WEBHOOK_CONNECT_REDIS_PREFIX: {0:?} does not match ^[A-Za-z0-9_.-]{{1,32}}$")]
    RedisPrefix(String),
    /// A rule of the configuration-source settings (etcd, Vault).
    #[error(transparent)]
    Source(#[from] SourceSettingsError),
    /// A rule of the self-service settings (HOSTED.md §1).
    #[error(transparent)]
    Hosted(#[from] crate::settings::hosted::HostedSettingsError),
}

use crate::settings::source::SourceSettingsError;
use crate::settings::values::{ValueError, parse_bool};

fn parse_nets(s: &str) -> Result<Vec<IpNet>, ValueError> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<IpNet>()
                .or_else(|_| p.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| ValueError::Net(p.to_owned()))
        })
        .collect()
}

fn parse_heartbeat(s: &str) -> Result<u64, ValueError> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| ValueError::Number(s.to_owned()))?;
    if (5..=60).contains(&v) {
        Ok(v)
    } else {
        Err(ValueError::OutOfRange { min: 5, max: 60 })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OrphanPolicy {
    Drain,
    Delete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ConfigBackend {
    File,
    Etcd,
}

/// Environment variable names, each declared once.
pub mod env {
    pub const LISTEN: &str = "WEBHOOK_CONNECT_LISTEN";
    pub const DATA_DIR: &str = "WEBHOOK_CONNECT_DATA_DIR";
    pub const ADMIN_TOKEN: &str = "WEBHOOK_CONNECT_ADMIN_TOKEN";
    pub const METRICS_TOKEN: &str = "WEBHOOK_CONNECT_METRICS_TOKEN";
    pub const CONFIG_RELOAD_ADMIN_TOKEN: &str = "CONFIG_RELOAD_ADMIN_TOKEN";
    pub const TRUSTED_PROXIES: &str = "WEBHOOK_CONNECT_TRUSTED_PROXIES";
    pub const TRUSTED_PROXY_IPS: &str = "TRUSTED_PROXY_IPS";
}

/// The cloud service's settings.
/// A comma-separated list of IPs and CIDRs, parsed as one value. An alias, so clap's derive does
/// not take `Option<Vec<_>>` for a repeated argument of single nets (which panicked at start
/// whenever `WEBHOOK_CONNECT_TRUSTED_PROXIES` was set).
pub type NetList = Vec<IpNet>;

#[derive(Clone, Debug, Parser)]
#[command(
    name = "webhook-connect-cloud",
    version,
    about = "Webhook Connect cloud service"
)]
pub struct Settings {
    /// Listen address.
    #[arg(long, env = env::LISTEN, default_value = "127.0.0.1:8000")]
    pub listen: SocketAddr,
    /// Embedded backend directory (created with mode 0700).
    #[arg(long, env = env::DATA_DIR, default_value = "./data")]
    pub data_dir: PathBuf,
    /// Webhook definitions (file backend).
    #[arg(long, env = "WEBHOOKS_CONFIG_FILE", default_value = "webhooks.json")]
    pub webhooks_config_file: PathBuf,
    /// Connection definitions; a missing file means `{}`.
    #[arg(
        long,
        env = "CONNECTIONS_CONFIG_FILE",
        default_value = "connections.json"
    )]
    pub connections_config_file: PathBuf,
    /// `file` or `etcd`.
    #[arg(
        long,
        env = "CONFIG_BACKEND",
        value_enum,
        ignore_case = true,
        default_value = "file"
    )]
    pub config_backend: ConfigBackend,
    /// Relay enabled; `false` answers 503 on connector and admin endpoints.
    #[arg(long, env = "WEBHOOK_CONNECT_ENABLED", value_parser = parse_bool, default_value = "true")]
    pub enabled: bool,
    /// Admin bearer token; unset → admin API answers 403.
    #[arg(long, env = env::ADMIN_TOKEN, hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Redis buffer backend URL; unset → embedded on-disk backend.
    #[arg(long, env = "WEBHOOK_CONNECT_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Redis Cluster seed nodes, comma-separated (`redis://h1:p1,rediss://h2:p2`); selects the
    /// Redis backend on a cluster instead of `WEBHOOK_CONNECT_REDIS_URL`.
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_REDIS_CLUSTER_URLS",
        hide_env_values = true
    )]
    pub redis_cluster_urls: Option<String>,
    /// Redis key prefix, `^[A-Za-z0-9_.-]{1,32}$`.
    #[arg(long, env = "WEBHOOK_CONNECT_REDIS_PREFIX", default_value = "whc")]
    pub redis_prefix: String,
    /// Confirm each durable write with `WAITAOF 1 0` (Redis ≥ 7.2 with AOF on).
    #[arg(long, env = "WEBHOOK_CONNECT_REDIS_WAIT_AOF", value_parser = parse_bool, default_value = "false")]
    pub redis_wait_aof: bool,
    /// Confirm each durable write with `WAIT <n>` replicas.
    #[arg(long, env = "WEBHOOK_CONNECT_REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,
    /// Replica identity in the Redis connection registry (default: host name + random suffix).
    #[arg(long, env = "WEBHOOK_CONNECT_REPLICA_ID")]
    pub replica_id: Option<String>,
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_MAX_BODY_BYTES",
        default_value_t = 10_485_760
    )]
    pub max_body_bytes: u64,
    /// Default byte cap of a channel's unsettled messages (webhooks.json `max_queue_bytes`
    /// overrides it per channel); full → 503 `queue_full`.
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_MAX_QUEUE_BYTES",
        default_value_t = 1_073_741_824
    )]
    pub max_queue_bytes: u64,
    /// Dead letters kept per channel (embedded backend); the oldest beyond it are dropped and
    /// counted (`webhook_connect_dead_letters_dropped_total`).
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_MAX_DEAD_LETTERS",
        default_value_t = 10_000
    )]
    pub max_dead_letters: u64,
    /// Size at which the embedded backend starts a new log segment.
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_SEGMENT_BYTES",
        default_value_t = 67_108_864
    )]
    pub segment_bytes: u64,
    /// Batches whose `fdatasync` the embedded backend lets into the device at once (1..=4;
    /// 1 is the plain group commit).
    #[arg(long, env = "WEBHOOK_CONNECT_SYNCS_IN_FLIGHT", default_value_t = 1)]
    pub syncs_in_flight: usize,
    #[arg(long, env = "WEBHOOK_CONNECT_MAX_HEADERS", default_value_t = 100)]
    pub max_headers: usize,
    #[arg(long, env = "WEBHOOK_CONNECT_MAX_HEADER_BYTES", default_value_t = 8192)]
    pub max_header_bytes: usize,
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_BODY_READ_TIMEOUT_SECONDS",
        default_value_t = 30.0
    )]
    pub body_read_timeout_seconds: f64,
    /// A frame or event that a connector does not take within this long closes its connection
    /// (its leases go back to the queue); also bounds how long an admin disconnect or a token
    /// revocation waits for a connector that stopped reading.
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_WRITE_TIMEOUT_SECONDS",
        default_value_t = 5.0
    )]
    pub write_timeout_seconds: f64,
    /// A connection that sends nothing for this long after it is accepted is closed (before
    /// HTTP/1 or HTTP/2 is even told apart).
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_FIRST_BYTE_TIMEOUT_SECONDS",
        default_value_t = 10.0
    )]
    pub first_byte_timeout_seconds: f64,
    /// Open HTTP connections beyond which new sockets are closed at once; 0: the
    /// file-descriptor limit (raised to its hard limit at start) minus 256 kept for the store,
    /// the configuration sources and the listener.
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_MAX_HTTP_CONNECTIONS",
        default_value_t = 0
    )]
    pub max_http_connections: usize,
    /// Heartbeat and WebSocket ping interval (5..60).
    #[arg(long, env = "WEBHOOK_CONNECT_HEARTBEAT_INTERVAL_SECONDS", value_parser = parse_heartbeat, default_value = "15")]
    pub heartbeat_interval_seconds: u64,
    /// Accept `?token=` on connector endpoints.
    #[arg(long, env = "WEBHOOK_CONNECT_ALLOW_QUERY_TOKENS", value_parser = parse_bool, default_value = "false")]
    pub allow_query_tokens: bool,
    /// IPs and CIDRs of reverse proxies whose X-Forwarded-For is honoured.
    #[arg(long, env = env::TRUSTED_PROXIES, value_parser = parse_nets)]
    pub trusted_proxies: Option<NetList>,
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_RETRY_AFTER_SECONDS",
        default_value_t = 30
    )]
    pub retry_after_seconds: u64,
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_SHUTDOWN_GRACE_SECONDS",
        default_value_t = 10.0
    )]
    pub shutdown_grace_seconds: f64,
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_ORPHAN_CHANNEL_POLICY",
        value_enum,
        ignore_case = true,
        default_value = "drain"
    )]
    pub orphan_channel_policy: OrphanPolicy,
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_ORPHAN_CHANNEL_RETENTION_SECONDS",
        default_value_t = 604_800
    )]
    pub orphan_channel_retention_seconds: u64,
    /// When set, `/metrics` requires this bearer token.
    #[arg(long, env = env::METRICS_TOKEN, hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Bearer token for `/admin/reload-config` and `/admin/config-status`.
    #[arg(long, env = env::CONFIG_RELOAD_ADMIN_TOKEN, hide_env_values = true)]
    pub config_reload_admin_token: Option<String>,
    /// `true` → `/openapi.json` answers 404.
    #[arg(long, env = "DISABLE_OPENAPI_DOCS", value_parser = parse_bool, default_value = "false")]
    pub disable_openapi_docs: bool,
    /// Live reload of the configuration files.
    #[arg(long, env = "CONFIG_FILE_WATCHING_ENABLED", value_parser = parse_bool, default_value = "false")]
    pub config_file_watching_enabled: bool,
    /// File reload, etcd and Vault settings (CONFIG.md §4–6).
    #[command(flatten)]
    pub source: crate::settings::source::SourceSettings,
    /// Self-service hosting (HOSTED.md §1).
    #[command(flatten)]
    pub hosted: crate::settings::hosted::HostedSettings,
    #[arg(long, env = "WEBHOOK_CONNECT_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    #[arg(
        long,
        env = "WEBHOOK_CONNECT_LOG_FORMAT",
        value_enum,
        ignore_case = true,
        default_value = "json"
    )]
    pub log_format: LogFormat,
}

impl Settings {
    /// Checks what clap cannot: cross-field rules and ranges. `Err` text goes to stderr, exit 64.
    pub fn validate(
        &mut self,
        alias_trusted_proxies: Option<String>,
    ) -> Result<(), InvalidSettings> {
        self.check(alias_trusted_proxies)
    }

    fn check(&mut self, alias_trusted_proxies: Option<String>) -> Result<(), InvalidSettings> {
        if self.trusted_proxies.is_none()
            && let Some(alias) = alias_trusted_proxies.filter(|s| !s.trim().is_empty())
        {
            self.trusted_proxies =
                Some(parse_nets(&alias).map_err(InvalidSettings::TrustedProxies)?);
        }
        for (name, v) in [
            ("--admin-token", &mut self.admin_token),
            ("--metrics-token", &mut self.metrics_token),
            (
                "--config-reload-admin-token",
                &mut self.config_reload_admin_token,
            ),
        ] {
            if v.as_deref().is_some_and(|s| s.trim().is_empty()) {
                *v = None;
            }
            let _ = name;
        }
        if self
            .redis_url
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            self.redis_url = None;
        }
        if self
            .redis_cluster_urls
            .as_deref()
            .is_some_and(|s| s.split(',').all(|u| u.trim().is_empty()))
        {
            self.redis_cluster_urls = None;
        }
        if self.max_body_bytes == 0 {
            return Err(InvalidSettings::NotPositive(
                "WEBHOOK_CONNECT_MAX_BODY_BYTES",
            ));
        }
        if !(connect_config::MIN_QUEUE_BYTES..=connect_config::MAX_QUEUE_BYTES)
            .contains(&self.max_queue_bytes)
        {
            return Err(InvalidSettings::QueueBytes {
                min: connect_config::MIN_QUEUE_BYTES,
                max: connect_config::MAX_QUEUE_BYTES,
            });
        }
        if self.max_dead_letters == 0 {
            return Err(InvalidSettings::NotPositive(
                "WEBHOOK_CONNECT_MAX_DEAD_LETTERS",
            ));
        }
        if self.segment_bytes < 65_536 {
            return Err(InvalidSettings::SegmentBytes(65_536));
        }
        if !(1..=4).contains(&self.syncs_in_flight) {
            return Err(InvalidSettings::SyncsInFlight);
        }
        if self.max_headers == 0 || self.max_header_bytes == 0 {
            return Err(InvalidSettings::HeaderLimits);
        }
        if self.body_read_timeout_seconds.is_nan() || self.body_read_timeout_seconds <= 0.0 {
            return Err(InvalidSettings::NotPositive(
                "WEBHOOK_CONNECT_BODY_READ_TIMEOUT_SECONDS",
            ));
        }
        if !(self.write_timeout_seconds > 0.0 && self.write_timeout_seconds <= 3600.0) {
            return Err(InvalidSettings::Timeout(
                "WEBHOOK_CONNECT_WRITE_TIMEOUT_SECONDS",
            ));
        }
        if !(self.first_byte_timeout_seconds > 0.0 && self.first_byte_timeout_seconds <= 3600.0) {
            return Err(InvalidSettings::Timeout(
                "WEBHOOK_CONNECT_FIRST_BYTE_TIMEOUT_SECONDS",
            ));
        }
        if self.shutdown_grace_seconds.is_nan() || self.shutdown_grace_seconds < 0.0 {
            return Err(InvalidSettings::ShutdownGrace);
        }
        if !["error", "warn", "info", "debug", "trace"]
            .contains(&self.log_level.to_ascii_lowercase().as_str())
        {
            return Err(InvalidSettings::LogLevel(self.log_level.clone()));
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(InvalidSettings::RedisScheme);
        }
        if let Some(RedisEndpoint::Cluster(seeds)) = self.redis_endpoint() {
            if self.redis_url.is_some() {
                return Err(InvalidSettings::RedisBoth);
            }
            if !seeds
                .iter()
                .all(|u| u.starts_with("redis://") || u.starts_with("rediss://"))
            {
                return Err(InvalidSettings::RedisClusterScheme);
            }
        }
        if !connect_buffer::redis::valid_prefix(&self.redis_prefix) {
            return Err(InvalidSettings::RedisPrefix(self.redis_prefix.clone()));
        }
        if self
            .replica_id
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            self.replica_id = None;
        }
        self.source.validate()?;
        self.hosted.validate()?;
        Ok(())
    }

    pub fn trusted(&self) -> &[IpNet] {
        self.trusted_proxies.as_deref().unwrap_or(&[])
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.body_read_timeout_seconds)
    }

    pub fn heartbeat(&self) -> Duration {
        Duration::from_secs(self.heartbeat_interval_seconds)
    }

    /// The Redis deployment to use, if any: the cluster seeds, else the single URL.
    pub fn redis_endpoint(&self) -> Option<RedisEndpoint> {
        match (&self.redis_cluster_urls, &self.redis_url) {
            (Some(list), _) => Some(RedisEndpoint::cluster_from_list(list)),
            (None, Some(url)) => Some(RedisEndpoint::Single(url.clone())),
            (None, None) => None,
        }
    }

    /// How long a send to a connector may take (`write_timeout_seconds`).
    pub fn write_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.write_timeout_seconds)
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs_f64(self.shutdown_grace_seconds)
    }

    /// Settings for tests: defaults, with a data dir and config file given.
    pub fn for_tests(data_dir: PathBuf, webhooks: PathBuf) -> Self {
        let mut s = Settings::parse_from(["webhook-connect-cloud"]);
        s.data_dir = data_dir;
        s.webhooks_config_file = webhooks;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::hosted::HostedSettingsError;
    use connect_protocol::hosted::SelfServiceMode;

    #[test]
    fn booleans_accept_the_documented_spellings_only() {
        for t in ["true", "1", "YES", "On"] {
            assert_eq!(parse_bool(t), Ok(true), "{t}");
        }
        for f in ["false", "0", "no", "OFF"] {
            assert_eq!(parse_bool(f), Ok(false), "{f}");
        }
        assert!(parse_bool("maybe").is_err());
    }

    #[test]
    fn trusted_proxies_take_ips_and_cidrs() {
        let nets = parse_nets("10.0.0.0/8, 192.168.1.1 ,::1").unwrap();
        assert_eq!(nets.len(), 3);
        assert!(parse_nets("10.0.0.0/33").is_err());
        // Through clap as the binary reads it (a list in one value, not one net per value).
        let mut s = Settings::parse_from(["x", "--trusted-proxies", "127.0.0.1, 10.0.0.0/8"]);
        s.validate(None).unwrap();
        assert_eq!(s.trusted().len(), 2);
    }

    #[test]
    fn redis_settings_are_validated() {
        let mut s = Settings::parse_from(["x", "--redis-url", "redis://127.0.0.1:6379"]);
        s.validate(None).unwrap();
        assert_eq!(s.redis_prefix, "whc");
        let mut s = Settings::parse_from(["x", "--redis-url", "http://127.0.0.1:6379"]);
        assert!(s.validate(None).is_err());
        let mut s = Settings::parse_from(["x", "--redis-prefix", "a:b"]);
        assert!(s.validate(None).is_err());
        let mut s = Settings::parse_from(["x", "--redis-url", " "]);
        s.validate(None).unwrap();
        assert_eq!(
            s.redis_url, None,
            "an empty URL selects the embedded backend"
        );
    }

    #[test]
    fn redis_cluster_seeds_select_the_cluster_client() {
        let mut s = Settings::parse_from([
            "x",
            "--redis-cluster-urls",
            "redis://h1:7000, rediss://h2:7001",
        ]);
        s.validate(None).unwrap();
        assert_eq!(
            s.redis_endpoint(),
            Some(RedisEndpoint::Cluster(vec![
                "redis://h1:7000".into(),
                "rediss://h2:7001".into()
            ]))
        );
        let mut s = Settings::parse_from(["x", "--redis-cluster-urls", "redis://h1:1,http://h2:2"]);
        assert!(s.validate(None).is_err());
        let mut s = Settings::parse_from([
            "x",
            "--redis-cluster-urls",
            "redis://h1:1",
            "--redis-url",
            "redis://h:1",
        ]);
        assert!(s.validate(None).is_err(), "one or the other");
        let mut s = Settings::parse_from(["x", "--redis-cluster-urls", " , "]);
        s.validate(None).unwrap();
        assert_eq!(s.redis_endpoint(), None);
        let s = Settings::parse_from(["x", "--redis-url", "redis://h:1"]);
        assert_eq!(
            s.redis_endpoint(),
            Some(RedisEndpoint::Single("redis://h:1".into()))
        );
    }

    #[test]
    fn validation_rejects_what_clap_cannot() {
        let mut s = Settings::parse_from(["x", "--heartbeat-interval-seconds", "15"]);
        assert!(s.validate(Some("127.0.0.1".into())).is_ok());
        assert_eq!(
            s.trusted().len(),
            1,
            "TRUSTED_PROXY_IPS is the alias when the main variable is unset"
        );
        let mut s = Settings::parse_from(["x", "--max-body-bytes", "0"]);
        assert!(s.validate(None).is_err());
        let mut s = Settings::parse_from(["x", "--log-level", "chatty"]);
        assert!(s.validate(None).is_err());
        assert!(Settings::try_parse_from(["x", "--heartbeat-interval-seconds", "4"]).is_err());
        assert!(Settings::try_parse_from(["x", "--enabled", "perhaps"]).is_err());
        let mut s = Settings::parse_from(["x", "--admin-token", "  "]);
        s.validate(None).unwrap();
        assert_eq!(s.admin_token, None, "an empty value is the same as unset");
    }

    #[test]
    fn self_service_needs_a_valid_public_url() {
        let mut s = Settings::parse_from(["x"]);
        s.validate(None).unwrap();
        assert_eq!(s.hosted.self_service, SelfServiceMode::Off);
        let mut s = Settings::parse_from(["x", "--self-service", "keys"]);
        assert!(matches!(
            s.validate(None),
            Err(InvalidSettings::Hosted(
                HostedSettingsError::PublicUrlMissing
            ))
        ));
        let mut s = Settings::parse_from([
            "x",
            "--self-service",
            "open",
            "--public-url",
            "hooks.example.com",
        ]);
        assert!(matches!(
            s.validate(None),
            Err(InvalidSettings::Hosted(
                HostedSettingsError::PublicUrlInvalid
            ))
        ));
        let mut s = Settings::parse_from([
            "x",
            "--self-service",
            "open",
            "--public-url",
            "https://hooks.example.com/",
        ]);
        s.validate(None).unwrap();
        assert_eq!(s.hosted.public_url(), Some("https://hooks.example.com"));
        assert_eq!(s.hosted.default_quota().max_channels, 10);
    }
}
