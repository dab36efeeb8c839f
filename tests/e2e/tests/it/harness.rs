//! The cloud as a real child process on loopback, with helpers to talk to it.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use connect_testkit::{ChildProcess, free_port, wait_until, workspace_bin};
use serde_json::Value;

pub const ADMIN: &str = "admin-token-for-tests";

pub struct Cloud {
    pub proc: ChildProcess,
    pub base: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub http: reqwest::Client,
    extra_env: Vec<(String, String)>,
}

impl Cloud {
    pub async fn start(webhooks: Value) -> Result<Self> {
        Self::start_with(webhooks, &[]).await
    }

    pub async fn start_with(webhooks: Value, env: &[(&str, &str)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("webhooks.json"),
            serde_json::to_vec_pretty(&webhooks)?,
        )?;
        let port = free_port();
        let extra_env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let proc = spawn(dir.path(), port, &extra_env)?;
        let mut c = Cloud {
            proc,
            base: format!("http://127.0.0.1:{port}"),
            port,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            extra_env,
        };
        c.wait_ready().await?;
        Ok(c)
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let url = format!("{}/health/live", self.base);
        let http = self.http.clone();
        let r = wait_until(
            Duration::from_secs(20),
            "cloud to answer /health/live",
            || {
                let http = http.clone();
                let url = url.clone();
                async move {
                    http.get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                }
            },
        )
        .await;
        r.with_context(|| format!("cloud stderr:\n{}", self.proc.stderr_text()))
    }

    pub fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// Starts the process again on the same port and data directory.
    pub async fn restart(&mut self) -> Result<()> {
        self.proc.kill9();
        self.proc = spawn(self.dir.path(), self.port, &self.extra_env)?;
        self.wait_ready().await
    }

    pub fn ws_base(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub async fn post(&self, id: &str, body: &str) -> Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}/webhook/{id}", self.base))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str) -> Result<(u16, Value)> {
        let r = self
            .http
            .request(method, format!("{}/admin/webhook-connect{path}", self.base))
            .bearer_auth(ADMIN)
            .send()
            .await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn stats(&self, channel: &str) -> Result<Value> {
        let (s, v) = self
            .admin(reqwest::Method::GET, &format!("/channels/{channel}/stats"))
            .await?;
        anyhow::ensure!(s == 200, "stats answered {s}: {v}");
        Ok(v)
    }
}

fn spawn(dir: &Path, port: u16, extra: &[(String, String)]) -> Result<ChildProcess> {
    let bin = workspace_bin("webhook-connect-cloud")?;
    let listen = format!("127.0.0.1:{port}");
    let data = dir.join("data");
    let cfg = dir.join("webhooks.json");
    let mut env: Vec<(&str, &str)> = vec![
        ("WEBHOOK_CONNECT_LISTEN", &listen),
        (
            "WEBHOOK_CONNECT_DATA_DIR",
            data.to_str().unwrap_or_default(),
        ),
        ("WEBHOOKS_CONFIG_FILE", cfg.to_str().unwrap_or_default()),
        ("WEBHOOK_CONNECT_ADMIN_TOKEN", ADMIN),
        ("WEBHOOK_CONNECT_LOG_FORMAT", "text"),
        ("WEBHOOK_CONNECT_HEARTBEAT_INTERVAL_SECONDS", "5"),
    ];
    for (k, v) in extra {
        env.push((k, v));
    }
    ChildProcess::spawn(bin, &[], &env, "cloud")
}

/// A `webhook_connect` webhook definition.
pub fn connect_hook(channel: &str, token: &str, extra: Value) -> Value {
    let mut mc = serde_json::json!({"channel": channel, "channel_token": token});
    if let (Some(m), Some(e)) = (mc.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            m.insert(k.clone(), v.clone());
        }
    }
    serde_json::json!({"data_type": "json", "module": "webhook_connect", "module-config": mc})
}
