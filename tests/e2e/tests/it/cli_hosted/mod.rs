//! The CLI's self-service commands (HOSTED.md §4) as a developer runs them: the real
//! `webhook-connect` binary against the real cloud in `open` self-service mode, from a machine
//! with no prior configuration (a fresh HOME and XDG directories, no keyring: the API key lives
//! in a `--key-file`).
//!
//! - `login` + `listen --forward-to` deliver a webhook posted to the printed URL to a local
//!   target byte for byte, one line per webhook, and Ctrl-C exits 0;
//! - `channels create/list/rotate-token/delete` and `dead-letters` (list, replay, replay-all,
//!   delete, purge) with `--json` output that parses as the API's shapes;
//! - the documented exit codes: a refused key 77, not logged in 77, a key file others may read
//!   64, no keyring without `--key-file` 64, an unreachable cloud 69, a missing channel 1.
//!
//! Layout: this file (a fresh machine and the CLI run on it); [`listen`] (forwarding, Ctrl-C,
//! how it ends); [`commands`] (channels and dead letters, `--json`); [`keys`] (where the key is
//! kept, and the exit codes of every way it can be missing or refused).

mod commands;
mod keys;
mod listen;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use connect_testkit::{ChildProcess, Cloud, wait_for, workspace_bin};
use serde_json::{Value, json};

pub(super) const WAIT: Duration = Duration::from_secs(20);

/// A machine with no prior configuration: its own HOME, config and runtime directories.
pub(super) struct Machine {
    home: tempfile::TempDir,
}

/// What one CLI run left.
pub(super) struct Run {
    pub(super) code: Option<i32>,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

impl Run {
    pub(super) fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.stdout).with_context(|| {
            format!(
                "stdout is not JSON:\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    pub(super) fn ok(self) -> Result<Self> {
        ensure!(
            self.code == Some(0),
            "exit {:?}\nstdout:\n{}\nstderr:\n{}",
            self.code,
            self.stdout,
            self.stderr
        );
        Ok(self)
    }
}

impl Machine {
    pub(super) fn new() -> Result<Self> {
        Ok(Self {
            home: tempfile::tempdir()?,
        })
    }

    pub(super) fn path(&self, rel: &str) -> PathBuf {
        self.home.path().join(rel)
    }

    pub(super) fn env(&self) -> Vec<(String, String)> {
        let h = self.home.path();
        vec![
            ("HOME".into(), h.display().to_string()),
            (
                "XDG_CONFIG_HOME".into(),
                h.join(".config").display().to_string(),
            ),
            (
                "XDG_RUNTIME_DIR".into(),
                h.join("run").display().to_string(),
            ),
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ]
    }

    /// Runs `webhook-connect args` to its end with `stdin`, in a clean environment (no D-Bus
    /// session, hence no keyring; no `CONNECTOR_*`).
    pub(super) async fn run(&self, args: &[&str], stdin: &str) -> Result<Run> {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(workspace_bin("webhook-connect")?)
            .args(args)
            .env_clear()
            .envs(self.env())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let mut pipe = child.stdin.take().context("stdin")?;
        pipe.write_all(stdin.as_bytes()).await?;
        drop(pipe);
        let out = tokio::time::timeout(WAIT, child.wait_with_output())
            .await
            .with_context(|| format!("webhook-connect {args:?} hung"))??;
        Ok(Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// `webhook-connect listen …` left running.
    pub(super) fn listen(&self, args: &[&str]) -> Result<ChildProcess> {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut all = vec!["listen"];
        all.extend_from_slice(args);
        ChildProcess::spawn(workspace_bin("webhook-connect")?, &all, &env, "listen")
    }
}

pub(super) async fn hosted_cloud() -> Result<Cloud> {
    Cloud::builder(json!({})).self_service("open").start().await
}

/// Creates account `name` through the admin API (the test kit's helper); its API key.
pub(super) async fn admin_account(cloud: &Cloud, name: &str) -> Result<String> {
    Ok(cloud.create_account(name, Value::Null).await?.1)
}

/// `login` with `key` on stdin, keeping it in `key_file`.
pub(super) async fn login(m: &Machine, cloud: &Cloud, key: &str, key_file: &Path) -> Result<Run> {
    m.run(
        &[
            "login",
            "--cloud-url",
            &cloud.base,
            "--key-file",
            key_file.to_str().context("utf-8")?,
        ],
        &format!("{key}\n"),
    )
    .await
}

/// Waits for stdout of `p` to contain `needle`; the stdout then.
pub(super) async fn wait_stdout(p: &ChildProcess, needle: &str) -> Result<String> {
    wait_for(WAIT, &format!("{needle:?} on listen's stdout"), || async {
        let out = p.stdout_text();
        out.contains(needle).then_some(out)
    })
    .await
    .with_context(|| format!("stdout:\n{}\nstderr:\n{}", p.stdout_text(), p.stderr_text()))
}

/// Ctrl-C, then the exit code once the process ended.
pub(super) async fn interrupt(p: &mut ChildProcess) -> Result<Option<i32>> {
    let pid = rustix::process::Pid::from_raw(p.pid() as i32).context("pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::INT)?;
    let deadline = tokio::time::Instant::now() + WAIT;
    while p.is_running() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "listen did not stop on SIGINT"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(p.exit_status().and_then(|s| s.code()))
}
