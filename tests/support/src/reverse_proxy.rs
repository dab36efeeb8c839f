//! A real reverse proxy (Debian's `nginx` or `caddy`) as a child process, running a
//! configuration the test wrote: how the documented TLS set-ups of docs/OPERATIONS.md are
//! exercised. The process runs in the foreground in its own temporary directory (prefix, pid,
//! logs, Caddy's storage), listens on the port the configuration names and is killed on drop.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::{ChildProcess, find_program, wait_ready};

/// Which server to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyKind {
    Nginx,
    Caddy,
}

/// A running `nginx` or `caddy` (killed on drop).
pub struct ReverseProxy {
    pub kind: ProxyKind,
    pub port: u16,
    process: ChildProcess,
    dir: tempfile::TempDir,
}

impl ReverseProxy {
    /// Runs nginx with `http_block` (what goes inside `http { … }`, e.g. the documented `map`
    /// and `server` blocks) and waits until `port` (the one its `listen` names) accepts
    /// connections.
    pub async fn nginx(http_block: &str, port: u16) -> Result<Self> {
        let program = find_program("nginx", "nginx-light")?;
        let dir = private_dir("nginx")?;
        let conf = dir.path().join("nginx.conf");
        std::fs::write(
            &conf,
            format!("events {{}}\nhttp {{\n    access_log off;\n{http_block}\n}}\n"),
        )?;
        let prefix = utf8(dir.path())?;
        // One process (no master with workers): SIGKILL on drop then ends all of nginx; killed
        // masters left their workers running.
        let globals = format!(
            "daemon off; master_process off; pid {prefix}/nginx.pid; error_log stderr info;"
        );
        let process = ChildProcess::spawn(
            program,
            &[
                "-p",
                prefix,
                "-e",
                "stderr",
                "-c",
                utf8(&conf)?,
                "-g",
                &globals,
            ],
            &[],
            "nginx",
        )?;
        Self::ready(ProxyKind::Nginx, process, dir, port).await
    }

    /// Runs `caddy run` with this Caddyfile (global options included) and waits until `port`
    /// accepts connections. `HOME` and the XDG directories point into the proxy's own
    /// directory, so Caddy's storage stays there.
    pub async fn caddy(caddyfile: &str, port: u16) -> Result<Self> {
        let program = find_program("caddy", "caddy")?;
        let dir = private_dir("caddy")?;
        let file = dir.path().join("Caddyfile");
        std::fs::write(&file, caddyfile)?;
        let home = utf8(dir.path())?.to_owned();
        let data = format!("{home}/data");
        let config = format!("{home}/config");
        let process = ChildProcess::spawn(
            program,
            &["run", "--config", utf8(&file)?, "--adapter", "caddyfile"],
            &[
                ("HOME", &home),
                ("XDG_DATA_HOME", &data),
                ("XDG_CONFIG_HOME", &config),
            ],
            "caddy",
        )?;
        Self::ready(ProxyKind::Caddy, process, dir, port).await
    }

    async fn ready(
        kind: ProxyKind,
        mut process: ChildProcess,
        dir: tempfile::TempDir,
        port: u16,
    ) -> Result<Self> {
        wait_ready(&mut process, || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
            Ok(())
        })
        .await?;
        Ok(Self {
            kind,
            port,
            process,
            dir,
        })
    }

    /// What the server wrote to stderr so far (nginx's error log, Caddy's log).
    pub fn logs(&self) -> String {
        self.process.stderr_text()
    }

    /// The proxy's own directory (configuration, pid file, storage).
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}

impl std::fmt::Debug for ReverseProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReverseProxy")
            .field("kind", &self.kind)
            .field("port", &self.port)
            .finish()
    }
}

/// A temporary directory an unprivileged nginx process can enter (tempfile makes them 0700; a
/// root nginx with a master would run its workers as `nobody`).
fn private_dir(name: &str) -> Result<tempfile::TempDir> {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix(&format!("testkit-{name}-"))
        .tempdir()
        .context("creating the proxy's directory")?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    Ok(dir)
}

fn utf8(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}
