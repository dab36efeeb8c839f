//! The etcd source (CONFIG.md §4): read the whole prefix at one revision, then watch it from the
//! next revision. After a disconnect the watch resumes from the last applied revision + 1, so no
//! event is missed; a compacted revision forces a full re-read (atomic swap). While etcd is
//! unreachable the last good configuration keeps serving.
//!
//! Reading, keys and the client here; the loader/watcher task in `etcd_watch`.

use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};
use serde_json::Value;

use crate::config_source::raw::{RawConfig, RawDef};
use crate::settings::source::{SourceSettings, is_namespace};

/// Timeout of one unary request (range read, status).
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval of the status check that backs `etcd: "healthy"`.
pub(crate) const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// What a key under the prefix names.
#[derive(Debug, PartialEq, Eq)]
enum Key {
    Webhook { namespace: String, id: String },
    Connection(String),
    Other,
}

fn parse_key(prefix: &str, key: &[u8]) -> Key {
    let Some(rel) = std::str::from_utf8(key)
        .ok()
        .and_then(|k| k.strip_prefix(prefix))
    else {
        return Key::Other;
    };
    let parts: Vec<&str> = rel.split('/').collect();
    match parts.as_slice() {
        ["global", "connections", name] if !name.is_empty() => Key::Connection(name.to_string()),
        [ns, "webhooks", id] if is_namespace(ns) && !id.is_empty() => Key::Webhook {
            namespace: ns.to_string(),
            id: id.to_string(),
        },
        _ => Key::Other,
    }
}

/// Why an etcd value is not a webhook or connection definition.
#[derive(Debug, thiserror::Error)]
enum ValueError {
    #[error("etcd value is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("etcd value must be a JSON object")]
    NotObject,
}

fn parse_value(value: &[u8]) -> Result<Value, ValueError> {
    let v: Value = serde_json::from_slice(value)?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(ValueError::NotObject)
    }
}

/// Applies one put (`Some(value)`) or delete (`None`) to `raw`.
pub(crate) fn apply_kv(raw: &mut RawConfig, prefix: &str, key: &[u8], value: Option<&[u8]>) {
    match parse_key(prefix, key) {
        Key::Webhook { namespace, id } => {
            let k = (Some(namespace), id);
            match value {
                Some(v) => {
                    let def = parse_value(v).map_err(|e| e.to_string());
                    raw.webhooks.insert(k, def.map(|v| RawDef::from_value(&v)));
                }
                None => {
                    raw.webhooks.remove(&k);
                }
            }
        }
        Key::Connection(name) => match value {
            Some(v) => {
                raw.connections
                    .insert(name, parse_value(v).map_err(|e| e.to_string()));
            }
            None => {
                raw.connections.remove(&name);
            }
        },
        Key::Other => {
            if value.is_some() {
                let shown = String::from_utf8_lossy(key);
                tracing::warn!(key = %shown, "etcd key outside the configuration layout ignored");
            }
        }
    }
}

/// Why reading the prefix failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error("range read timed out")]
    TimedOut,
    /// The client's error, with its causes and the setting to check.
    #[error("{0}")]
    Failed(String),
}

/// Reads the whole prefix at one revision.
pub async fn read_prefix(mut client: Client, prefix: &str) -> Result<(RawConfig, i64), ReadError> {
    let resp = tokio::time::timeout(
        REQUEST_TIMEOUT,
        client.get(prefix, Some(GetOptions::new().with_prefix())),
    )
    .await
    .map_err(|_| ReadError::TimedOut)?
    .map_err(|e| ReadError::Failed(describe(&e)))?;
    let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
    let mut raw = RawConfig::default();
    for kv in resp.kvs() {
        if matches!(parse_key(prefix, kv.key()), Key::Other) {
            raw.warnings.push(format!(
                "etcd key {} is outside the layout {{prefix}}{{namespace}}/webhooks/{{id}}; ignored",
                String::from_utf8_lossy(kv.key())
            ));
        }
        apply_kv(&mut raw, prefix, kv.key(), Some(kv.value()));
    }
    Ok((raw, revision))
}

/// An etcd TLS file named in the settings could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} {}: {reason}", path.display())]
pub struct TlsFileError {
    /// `ETCD_CA_FILE`, `ETCD_CERT_FILE` or `ETCD_KEY_FILE`.
    pub setting: &'static str,
    pub path: std::path::PathBuf,
    pub reason: String,
}

fn read_tls_file(setting: &'static str, path: &std::path::Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|e| TlsFileError {
        setting,
        path: path.to_owned(),
        reason: e.to_string(),
    })
}

/// Every member [`connect_member`] tried, each with why it was unusable (`; `-separated).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub(crate) struct NoMemberError(Vec<String>);

pub(crate) fn connect_options(s: &SourceSettings) -> Result<ConnectOptions, TlsFileError> {
    let mut opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs_f64(s.etcd_dial_timeout_seconds))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
        .with_keep_alive_while_idle(true)
        // A member cut off from the cluster's leader cancels the watch instead of going quiet.
        .with_require_leader(true);
    if let (Some(u), Some(p)) = (&s.etcd_username, &s.etcd_password) {
        // etcd's auth tokens expire (`--auth-token-ttl`, 5 min by default): log in again
        // instead of failing every request until the next reconnect.
        opts = opts
            .with_user(u.clone(), p.clone())
            .with_auto_token_refresh(true);
    }
    if s.etcd_tls() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &s.etcd_ca_file {
            let pem = read_tls_file("ETCD_CA_FILE", ca)?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let (Some(c), Some(k)) = (&s.etcd_cert_file, &s.etcd_key_file) {
            let cert = read_tls_file("ETCD_CERT_FILE", c)?;
            let key = read_tls_file("ETCD_KEY_FILE", k)?;
            tls = tls.identity(Identity::from_pem(cert, key));
        }
        opts = opts.with_tls(tls);
    }
    Ok(opts)
}

/// Reconnect backoff: 1 s doubling to 60 s, ±10 % jitter.
pub(crate) struct Backoff(pub(crate) Duration);

impl Backoff {
    pub(crate) fn next(&mut self) -> Duration {
        let d = self.0.mul_f64(rand::random_range(0.9..1.1));
        self.0 = (self.0 * 2).min(Duration::from_secs(60));
        d
    }
    pub(crate) fn reset(&mut self) {
        self.0 = Duration::from_secs(1);
    }
}

/// Explains an etcd client error with its causes (a transport error's own text is only
/// "transport error"), naming the setting to check where the cause is clear.
pub(crate) fn describe(e: &etcd_client::Error) -> String {
    let mut text = match e {
        etcd_client::Error::GRpcStatus(status) => status.message().to_string(),
        other => other.to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let c = cause.to_string();
        if !text.contains(&c) {
            text = format!("{text}: {c}");
        }
        source = cause.source();
    }
    let lower = text.to_ascii_lowercase();
    if lower.contains("authentication failed") || lower.contains("invalid user id or password") {
        format!("authentication failed (check ETCD_USERNAME / ETCD_PASSWORD): {text}")
    } else if lower.contains("permission denied") {
        format!("permission denied for ETCD_USERNAME on ETCD_PREFIX: {text}")
    } else if lower.contains("user name is empty") || lower.contains("user name not found") {
        format!("etcd requires authentication (set ETCD_USERNAME / ETCD_PASSWORD): {text}")
    } else if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake")
    {
        format!("TLS failed (check ETCD_CA_FILE / ETCD_CERT_FILE / ETCD_KEY_FILE): {text}")
    } else {
        text
    }
}

/// [`describe`] for a link that uses TLS: etcd refusing the client's certificate (missing, or
/// signed by a CA it does not trust) closes the connection right after the handshake, which the
/// client only reports as a cancelled or reset connection. With TLS on, such a reason names the
/// TLS files to check like every other TLS failure.
pub(crate) fn describe_link(e: &etcd_client::Error, tls: bool) -> String {
    name_tls_drop(describe(e), tls)
}

/// On a TLS link, a connection etcd dropped is almost always a refused handshake (a missing
/// client certificate is answered by closing, not always with an alert), so the text names the
/// TLS files. The client reports such a drop as canceled, reset, broken pipe or EOF, or at times
/// as a bare "transport error" with no cause attached.
fn name_tls_drop(text: String, tls: bool) -> String {
    let lower = text.to_ascii_lowercase();
    let dropped = [
        "operation was canceled",
        "connection reset",
        "broken pipe",
        "unexpected eof",
    ]
    .iter()
    .any(|s| lower.contains(s))
        || lower.trim() == "transport error";
    if tls && dropped && !text.contains("ETCD_CA_FILE") {
        format!(
            "TLS failed (check ETCD_CA_FILE / ETCD_CERT_FILE / ETCD_KEY_FILE): etcd closed the \
             connection; it may require a client certificate: {text}"
        )
    } else {
        text
    }
}

/// Dials the members in turn, starting at `start`, and returns the first one that answers a
/// status request, with its index.
///
/// One client per member on purpose: a client balanced over every member keeps sending a share
/// of its requests to a member that is down (tonic's lazily connected endpoints always look
/// ready), so the watch and the status checks would fail at random and reconnect with growing
/// backoff. Here a dead member costs one refused probe per reconnect, and the watch fails over
/// to the next member.
pub(crate) async fn connect_member(
    endpoints: &[String],
    opts: &ConnectOptions,
    start: usize,
    probe_timeout: Duration,
    tls: bool,
) -> Result<(Client, usize), NoMemberError> {
    let mut errors = Vec::new();
    for k in 0..endpoints.len() {
        let i = (start + k) % endpoints.len();
        let endpoint = &endpoints[i];
        let attempt = async {
            let mut c = Client::connect([endpoint.as_str()], Some(opts.clone()))
                .await
                .map_err(|e| describe_link(&e, tls))?;
            c.status().await.map_err(|e| describe_link(&e, tls))?;
            Ok::<_, String>(c)
        };
        let r = match tokio::time::timeout(probe_timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {probe_timeout:?}")),
        };
        match r {
            Ok(c) => return Ok((c, i)),
            Err(e) if endpoints.len() == 1 => errors.push(e),
            Err(e) => {
                tracing::debug!(%endpoint, error = %e, "etcd member unusable; trying the next one");
                errors.push(format!("{endpoint}: {e}"));
            }
        }
    }
    Err(NoMemberError(errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_the_layout() {
        let p = "/cwm/";
        assert_eq!(
            parse_key(p, b"/cwm/ns_alpha/webhooks/hook1"),
            Key::Webhook {
                namespace: "ns_alpha".into(),
                id: "hook1".into()
            }
        );
        assert_eq!(
            parse_key(p, b"/cwm/global/connections/redis"),
            Key::Connection("redis".into())
        );
        assert_eq!(
            parse_key(p, b"/cwm/global/webhooks/h"),
            Key::Webhook {
                namespace: "global".into(),
                id: "h".into()
            }
        );
        for other in [
            &b"/cwm/a/webhooks/b/c"[..],
            b"/cwm/a/hooks/b",
            b"/cwm/bad ns/webhooks/x",
            b"/other/a/webhooks/b",
        ] {
            assert_eq!(parse_key(p, other), Key::Other, "{other:?}");
        }
    }

    #[test]
    fn a_dropped_tls_link_names_the_tls_files() {
        let hint = "TLS failed (check ETCD_CA_FILE / ETCD_CERT_FILE / ETCD_KEY_FILE)";
        for dropped in [
            "transport error",
            "transport error: operation was canceled",
            "transport error: connection reset by peer",
            "transport error: unexpected EOF",
        ] {
            let named = name_tls_drop(dropped.to_string(), true);
            assert!(named.starts_with(hint), "{dropped}: {named}");
            assert!(named.ends_with(dropped), "the cause is kept: {named}");
            // Without TLS a drop says nothing about certificates.
            assert_eq!(name_tls_drop(dropped.to_string(), false), dropped);
        }
        // A refused connection has its own cause and is not a TLS matter.
        let refused = "transport error: tcp connect error: Connection refused (os error 111)";
        assert_eq!(name_tls_drop(refused.to_string(), true), refused);
        // Already named: not named twice.
        let named = format!("{hint}: invalid peer certificate");
        assert_eq!(name_tls_drop(named.clone(), true), named);
    }

    #[test]
    fn values_must_be_json_objects() {
        assert!(parse_value(br#"{"module":"log"}"#).is_ok());
        assert!(parse_value(b"[1]").is_err());
        assert!(parse_value(b"{nope").is_err());
    }
}
