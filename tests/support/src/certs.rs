//! A throw-away PKI for TLS tests: a CA, a server certificate for `127.0.0.1`/`localhost` and a
//! client certificate (for mutual TLS), all signed by the CA and written as PEM files into a
//! temporary directory that lives as long as the value.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// PEM files of a fresh CA and two leaf certificates.
pub struct TestPki {
    dir: tempfile::TempDir,
    /// The CA certificate (PEM): trust this.
    pub ca: PathBuf,
    /// Server certificate for `127.0.0.1` and `localhost` (PEM) and its PKCS#8 key.
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Client certificate (common name [`TestPki::CLIENT_CN`]) and its PKCS#8 key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    /// Common name of the client certificate.
    pub const CLIENT_CN: &'static str = "webhook-connect-test-client";

    /// Generates the CA and both leaves.
    pub fn generate() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-pki-")
            .tempdir()
            .context("creating the PKI dir")?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "webhook-connect test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)
            .context("self-signing the CA")?;

        let leaf = |names: Vec<String>, cn: &str, usage: ExtendedKeyUsagePurpose| {
            let mut p = CertificateParams::new(names)?;
            p.distinguished_name.push(DnType::CommonName, cn);
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.extended_key_usages = vec![usage];
            let key = KeyPair::generate()?;
            let cert = p.signed_by(&key, &ca)?;
            anyhow::Ok((cert.pem(), key.serialize_pem()))
        };
        let (server_pem, server_key_pem) = leaf(
            vec!["127.0.0.1".into(), "localhost".into()],
            "127.0.0.1",
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (client_pem, client_key_pem) =
            leaf(vec![], Self::CLIENT_CN, ExtendedKeyUsagePurpose::ClientAuth)?;
        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let p = dir.path().join(name);
            std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
            Ok(p)
        };
        Ok(Self {
            ca: write("ca.pem", &ca.pem())?,
            server_cert: write("server.pem", &server_pem)?,
            server_key: write("server-key.pem", &server_key_pem)?,
            client_cert: write("client.pem", &client_pem)?,
            client_key: write("client-key.pem", &client_key_pem)?,
            dir,
        })
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir.path())
            .finish()
    }
}
