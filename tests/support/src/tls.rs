//! A TLS-terminating TCP relay with a fresh self-signed certificate, to put `https://` and
//! `wss://` in front of a plain-HTTP server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_util::task::AbortOnDropHandle;

/// Accepts TLS on `127.0.0.1:<port>` (certificate for `127.0.0.1` and `localhost`) and relays the
/// decrypted bytes to `upstream`.
pub struct TlsProxy {
    pub port: u16,
    pub addr: SocketAddr,
    /// `https://127.0.0.1:<port>`
    pub url: String,
    /// The self-signed certificate (PEM), to trust as a CA.
    pub cert_pem: String,
    /// [`cert_pem`](Self::cert_pem) written to a file.
    pub ca_path: PathBuf,
    _dir: tempfile::TempDir,
    _accept: AbortOnDropHandle<()>,
}

impl TlsProxy {
    pub async fn start(upstream: SocketAddr) -> Result<Self> {
        let certified =
            rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".into()])
                .context("generating the certificate")?;
        let cert_pem = certified.cert.pem();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certified.signing_key.serialize_der(),
        ));
        let chain = vec![CertificateDer::from(certified.cert.der().to_vec())];
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("TLS server configuration")?;
        let dir = tempfile::tempdir()?;
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, &cert_pem)?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the TLS proxy")?;
        let addr = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let accept =
            AbortOnDropHandle::new(tokio::spawn(accept_loop(listener, acceptor, upstream)));
        Ok(Self {
            port: addr.port(),
            addr,
            url: format!("https://{addr}"),
            cert_pem,
            ca_path,
            _dir: dir,
            _accept: accept,
        })
    }
}

impl std::fmt::Debug for TlsProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsProxy")
            .field("addr", &self.addr)
            .finish()
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, upstream: SocketAddr) {
    let mut relays = tokio::task::JoinSet::new();
    loop {
        let Ok((client, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        while relays.try_join_next().is_some() {}
        let acceptor = acceptor.clone();
        relays.spawn(async move {
            let mut tls = match acceptor.accept(client).await {
                Ok(s) => s,
                Err(error) => {
                    tracing::debug!(%error, "TLS proxy handshake failed");
                    return;
                }
            };
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
        });
    }
}
