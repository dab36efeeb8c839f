//! A real `redis-server` per test, on a free port with its own data dir.

use anyhow::{Context, Result, ensure};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{ChildProcess, find_program, free_port, wait_ready};

/// A `redis-server` child (not daemonized, so it dies with the test) answering on `url`.
pub struct RedisServer {
    pub port: u16,
    /// `redis://127.0.0.1:<port>`
    pub url: String,
    args: Vec<String>,
    dir: TempDir,
    process: ChildProcess,
}

impl RedisServer {
    /// Starts a server without persistence and waits until it answers `PING`.
    pub async fn start() -> Result<Self> {
        Self::start_with(&[]).await
    }

    /// Like [`start`](Self::start), with extra `redis-server` arguments appended (later ones win,
    /// so `["--appendonly", "yes"]` turns persistence back on).
    pub async fn start_with(args: &[&str]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("testkit-redis-")
            .tempdir()
            .context("creating the redis data dir")?;
        let port = free_port();
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let process = spawn(port, &dir, &args)?;
        let mut server = Self {
            port,
            url: format!("redis://127.0.0.1:{port}"),
            args,
            dir,
            process,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    /// SIGKILL, as in a crash: no shutdown save.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    /// Kills the server if it still runs and starts it again on the same port and data dir.
    pub async fn restart(&mut self) -> Result<()> {
        self.process.kill9();
        self.process = spawn(self.port, &self.dir, &self.args)?;
        self.wait_ready().await
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The server log (redis logs to stdout).
    pub fn logs(&self) -> String {
        self.process.stdout_text()
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let port = self.port;
        wait_ready(&mut self.process, || ping(port)).await
    }
}

impl std::fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisServer")
            .field("url", &self.url)
            .finish()
    }
}

pub(crate) fn spawn(port: u16, dir: &TempDir, extra: &[String]) -> Result<ChildProcess> {
    let program = find_program("redis-server", "redis-server")?;
    let port = port.to_string();
    let dir = dir.path().to_string_lossy();
    let mut args = vec![
        "--port",
        &port,
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        &dir,
    ];
    args.extend(extra.iter().map(String::as_str));
    ChildProcess::spawn(program, &args, &[], "redis-server")
}

pub(crate) async fn ping(port: u16) -> Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).await?;
    ensure!(
        &reply == b"+PONG\r\n",
        "PING answered {:?}",
        String::from_utf8_lossy(&reply)
    );
    Ok(())
}
