//! The HTTP client for the cloud: the channel's TLS settings (`verify_ssl`, `ca_cert_path`, the
//! client certificate), no redirects, and the proxy chosen by [`CloudProxy`] from the injected
//! environment first. Shared by the channels (SSE, long-poll, ACKs, `/connect/status`) and the
//! self-service API client ([`crate::hosted`]), so both reach the cloud the same way.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::EngineError;
use crate::transport::proxy::CloudProxy;

/// How to reach one cloud over HTTP(S).
#[derive(Clone, Debug)]
pub struct CloudHttpOptions {
    pub connect_timeout: Duration,
    /// Whole-request timeout; `None` for streams (SSE, long-poll).
    pub request_timeout: Option<Duration>,
    pub verify_ssl: bool,
    pub ca_cert_path: Option<PathBuf>,
    pub client_cert_path: Option<PathBuf>,
    pub client_key_path: Option<PathBuf>,
}

impl Default for CloudHttpOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(30),
            request_timeout: None,
            verify_ssl: true,
            ca_cert_path: None,
            client_cert_path: None,
            client_key_path: None,
        }
    }
}

/// Builds the client for `cloud_url`.
pub(crate) fn cloud_client(
    cloud_url: &str,
    opts: &CloudHttpOptions,
    env: &BTreeMap<String, String>,
) -> Result<reqwest::Client, EngineError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(opts.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .danger_accept_invalid_certs(!opts.verify_ssl);
    if let Some(t) = opts.request_timeout {
        b = b.timeout(t);
    }
    if let Some(ca) = &opts.ca_cert_path {
        let pem = std::fs::read(ca)
            .map_err(|e| EngineError::Setup(format!("ca_cert_path {}: {e}", ca.display())))?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| EngineError::Setup(format!("ca_cert_path {}: {e}", ca.display())))?;
        b = b.add_root_certificate(cert);
    }
    if let (Some(c), Some(k)) = (&opts.client_cert_path, &opts.client_key_path) {
        let mut pem =
            std::fs::read(c).map_err(|e| EngineError::Setup(format!("{}: {e}", c.display())))?;
        pem.extend(
            std::fs::read(k).map_err(|e| EngineError::Setup(format!("{}: {e}", k.display())))?,
        );
        let id = reqwest::Identity::from_pem(&pem)
            .map_err(|e| EngineError::Setup(format!("client certificate: {e}")))?;
        b = b.identity(id);
    }
    // The proxy is chosen here (from the injected environment first) rather than by reqwest
    // from the process environment, so that WebSocket links use the same one.
    b = b.no_proxy();
    if let Some(p) = CloudProxy::for_cloud(cloud_url, env) {
        let proxy = p
            .reqwest()
            .map_err(|e| EngineError::Setup(format!("proxy {:?}: {e}", p.to_string())))?;
        b = b.proxy(proxy);
    }
    b.build()
        .map_err(|e| EngineError::Setup(format!("HTTP client: {e}")))
}
