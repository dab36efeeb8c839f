//! A real single-member `etcd` per test, on free client and peer ports with its own data dir.

use anyhow::{Context, Result, ensure};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{ChildProcess, find_program, free_port, wait_ready};

/// An `etcd` child answering on `endpoint`.
pub struct EtcdServer {
    /// `http://127.0.0.1:<client port>`
    pub endpoint: String,
    pub port: u16,
    peer_port: u16,
    dir: TempDir,
    process: ChildProcess,
}

impl EtcdServer {
    /// Starts etcd and waits until `/health` reports healthy.
    pub async fn start() -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-etcd-")
            .tempdir()
            .context("creating the etcd data dir")?;
        let port = free_port();
        let peer_port = std::iter::repeat_with(free_port)
            .find(|peer| *peer != port)
            .context("no second free port")?;
        let process = spawn(port, peer_port, &dir)?;
        let mut server = Self {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            peer_port,
            dir,
            process,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// SIGKILL, as in a crash.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Kills etcd if it still runs and starts it again on the same ports and data dir.
    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill9();
        self.process = spawn(self.port, self.peer_port, &self.dir)?;
        self.wait_ready().await
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The server log (etcd logs to stderr).
    pub fn logs(&self) -> String {
        self.process.stderr_text()
    }

    async fn wait_ready(&mut self) -> Result<()> {
        wait_healthy(&mut self.process, self.port).await
    }
}

impl std::fmt::Debug for EtcdServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdServer")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

fn spawn(port: u16, peer_port: u16, dir: &TempDir) -> Result<ChildProcess> {
    let program = find_program("etcd", "etcd-server")?;
    let client = format!("http://127.0.0.1:{port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let cluster = format!("testkit={peer}");
    let dir = dir.path().to_string_lossy();
    let args = [
        "--name",
        "testkit",
        "--data-dir",
        &dir,
        "--listen-client-urls",
        &client,
        "--advertise-client-urls",
        &client,
        "--listen-peer-urls",
        &peer,
        "--initial-advertise-peer-urls",
        &peer,
        "--initial-cluster",
        &cluster,
    ];
    ChildProcess::spawn(program, &args, &[], "etcd")
}

/// A bare HTTP/1.1 GET, to keep the kit free of an HTTP client dependency.
/// Waits until the etcd serving HTTP on `port` (client or metrics port) answers `/health` with
/// `true`, or `process` exits.
pub(crate) async fn wait_healthy(process: &mut ChildProcess, port: u16) -> Result<()> {
    wait_ready(process, || async move {
        let (status, body) = http_get(port, "/health").await?;
        ensure!(
            status == 200 && body.contains("true"),
            "/health answered {status} {body}"
        );
        Ok(())
    })
    .await
}

pub(crate) async fn http_get(port: u16, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .context("malformed HTTP response")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_default();
    Ok((status, body.to_owned()))
}
