//! Real `etcd` set-ups beyond [`crate::EtcdServer`]: client TLS (optionally mutual), a short auth
//! token TTL, and clusters of several members on loopback. Readiness is probed on a separate
//! plain-HTTP metrics listener, so it works whatever the client listener requires.

use std::path::PathBuf;

use anyhow::{Context, Result, ensure};
use tempfile::TempDir;

use crate::etcd::wait_healthy;
use crate::{ChildProcess, find_program, free_port};

/// Client-side TLS of the members (PEM files).
#[derive(Clone, Debug)]
pub struct EtcdTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
    /// `--client-cert-auth`: clients must present a certificate signed by `ca`.
    pub client_cert_auth: bool,
}

/// How to start the members.
#[derive(Clone, Debug, Default)]
pub struct EtcdOptions {
    /// Serve clients over `https://` with these files.
    pub tls: Option<EtcdTls>,
    /// `--auth-token-ttl` in seconds (etcd's default is 300).
    pub auth_token_ttl: Option<u64>,
}

/// One member of an [`EtcdCluster`].
pub struct EtcdMember {
    /// `http(s)://127.0.0.1:<client port>`
    pub endpoint: String,
    pub port: u16,
    metrics_port: u16,
    args: Vec<String>,
    process: ChildProcess,
}

impl EtcdMember {
    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn logs(&self) -> String {
        self.process.stderr_text()
    }
}

/// `n` etcd members forming one cluster (each with its own data dir), all on `127.0.0.1`.
pub struct EtcdCluster {
    pub members: Vec<EtcdMember>,
    _dir: TempDir,
}

fn distinct_ports(n: usize) -> Vec<u16> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    while ports.len() < n {
        let p = free_port();
        if !ports.contains(&p) {
            ports.push(p);
        }
    }
    ports
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one reports healthy.
    pub async fn start(n: usize, opts: EtcdOptions) -> Result<Self> {
        ensure!(n >= 1, "a cluster needs at least one member");
        let dir = tempfile::Builder::new()
            .prefix("testkit-etcd-cluster-")
            .tempdir()
            .context("creating the etcd cluster dir")?;
        let ports = distinct_ports(3 * n);
        let scheme = if opts.tls.is_some() { "https" } else { "http" };
        let peer_url = |i: usize| format!("http://127.0.0.1:{}", ports[3 * i + 1]);
        let initial_cluster = (0..n)
            .map(|i| format!("m{i}={}", peer_url(i)))
            .collect::<Vec<_>>()
            .join(",");
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            let (port, metrics_port) = (ports[3 * i], ports[3 * i + 2]);
            let client = format!("{scheme}://127.0.0.1:{port}");
            let data = dir.path().join(format!("m{i}"));
            let mut args: Vec<String> = [
                "--name",
                &format!("m{i}"),
                "--data-dir",
                &data.to_string_lossy(),
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer_url(i),
                "--initial-advertise-peer-urls",
                &peer_url(i),
                "--initial-cluster",
                &initial_cluster,
                "--initial-cluster-token",
                "testkit",
                "--listen-metrics-urls",
                &format!("http://127.0.0.1:{metrics_port}"),
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            if let Some(tls) = &opts.tls {
                for (flag, path) in [
                    ("--cert-file", &tls.cert),
                    ("--key-file", &tls.key),
                    ("--trusted-ca-file", &tls.ca),
                ] {
                    args.push(flag.into());
                    args.push(path.to_string_lossy().into_owned());
                }
                if tls.client_cert_auth {
                    args.push("--client-cert-auth".into());
                }
            }
            if let Some(ttl) = opts.auth_token_ttl {
                args.push(format!("--auth-token-ttl={ttl}"));
            }
            let process = spawn(&args)?;
            members.push(EtcdMember {
                endpoint: client,
                port,
                metrics_port,
                args,
                process,
            });
        }
        let mut cluster = Self { members, _dir: dir };
        for i in 0..n {
            cluster.wait_member(i).await?;
        }
        Ok(cluster)
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.endpoint.clone()).collect()
    }

    /// SIGKILL member `i`.
    pub fn kill9(&mut self, i: usize) {
        self.members[i].process.kill9();
    }

    /// Starts member `i` again (same ports and data dir) and waits until it is healthy.
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        let m = &mut self.members[i];
        m.process.kill9();
        m.process = spawn(&m.args)?;
        self.wait_member(i).await
    }

    async fn wait_member(&mut self, i: usize) -> Result<()> {
        let m = &mut self.members[i];
        wait_healthy(&mut m.process, m.metrics_port).await
    }
}

impl std::fmt::Debug for EtcdCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdCluster")
            .field("endpoints", &self.endpoints())
            .finish()
    }
}

fn spawn(args: &[String]) -> Result<ChildProcess> {
    let program = find_program("etcd", "etcd-server")?;
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ChildProcess::spawn(program, &args, &[], "etcd")
}
