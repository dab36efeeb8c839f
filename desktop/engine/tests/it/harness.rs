//! The test kit's cloud child process, set up for one channel, and engine helpers.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use connect_engine::api::Transport;
use connect_engine::config::{self, Sources};
use connect_engine::{ChannelStatus, Engine, EngineHandle, LinkState};
use connect_testkit::wait_for;
use serde_json::{Value, json};

/// Per wait in the health and v1 tests; every test stays well under 20 s when things work.
pub const T: Duration = Duration::from_secs(15);

pub use connect_testkit::cloud::ADMIN;
pub const TOKEN: &str = "engine-test-token";

/// The test kit's cloud with `hook` (json) and `blobhook` (blob) webhooks feeding one channel.
pub struct Cloud(connect_testkit::Cloud);

impl std::ops::Deref for Cloud {
    type Target = connect_testkit::Cloud;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Cloud {
    /// A cloud with `hook` (json) and `blobhook` (blob) webhooks feeding `channel`.
    pub async fn start(channel: &str) -> Result<Self> {
        Self::start_with(channel, &[]).await
    }

    /// [`start`](Self::start) with more environment for the cloud.
    pub async fn start_with(channel: &str, extra_env: &[(&str, &str)]) -> Result<Self> {
        Self::start_configured(channel, json!({}), extra_env).await
    }

    /// [`start_with`](Self::start_with) with more `module-config` keys for both webhooks
    /// (e.g. `ack_timeout_seconds`).
    pub async fn start_configured(
        channel: &str,
        module_config: Value,
        extra_env: &[(&str, &str)],
    ) -> Result<Self> {
        let mut mc =
            json!({"channel": channel, "channel_token": TOKEN, "max_delivery_attempts": 3});
        for (k, v) in module_config.as_object().cloned().unwrap_or_default() {
            mc[k] = v;
        }
        let webhooks = json!({
            "hook": {"data_type": "json", "module": "webhook_connect", "module-config": mc},
            "blobhook": {"data_type": "blob", "module": "webhook_connect", "module-config": mc},
        });
        Ok(Self(
            connect_testkit::Cloud::start_with(webhooks, extra_env).await?,
        ))
    }

    /// POSTs a JSON body to `hook`; fails unless the ingress answers 200.
    pub async fn post(&self, body: &str) -> Result<()> {
        let s = self
            .post_raw(
                "hook",
                body.as_bytes().to_vec(),
                &[("content-type", "application/json")],
            )
            .await?;
        anyhow::ensure!(s == 200, "ingress answered {s}");
        Ok(())
    }
}

/// Starts an engine for one channel with the given target object.
pub fn start_engine(
    cloud_url: &str,
    channel: &str,
    token: &str,
    protocol: &str,
    target: Value,
) -> EngineHandle {
    Engine::start(engine_config(cloud_url, channel, token, protocol, target)).unwrap()
}

/// The configuration [`start_engine`] starts: one channel, quick reconnects.
pub fn engine_config(
    cloud_url: &str,
    channel: &str,
    token: &str,
    protocol: &str,
    target: Value,
) -> connect_engine::ConnectorConfig {
    let cfg = json!({
        "cloud_url": cloud_url, "channel": channel, "token": token, "protocol": protocol,
        "reconnect_delay": 0.1, "max_reconnect_delay": 1.0, "heartbeat_timeout": 20,
        "default_target": target,
    });
    load_config(&cfg, &[])
}

/// Loads `cfg` as a connector.json (in a fresh directory) with an injected environment, as the
/// CLI passes the process's.
pub fn load_config(cfg: &Value, env: &[(&str, &str)]) -> connect_engine::ConnectorConfig {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("connector.json");
    std::fs::write(&p, cfg.to_string()).unwrap();
    config::load(&Sources {
        config_file: Some(p),
        env: env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    })
    .unwrap()
}

pub fn status(h: &EngineHandle) -> ChannelStatus {
    h.status().remove(0)
}

/// Waits (up to [`T`]) for the first channel's status to satisfy `ok`; panics with the last
/// status otherwise.
pub async fn wait_status(
    h: &EngineHandle,
    what: &str,
    ok: impl Fn(&ChannelStatus) -> bool,
) -> ChannelStatus {
    let r = wait_for(T, what, || {
        let s = status(h);
        let hit = ok(&s).then_some(s);
        async move { hit }
    })
    .await;
    match r {
        Ok(s) => s,
        Err(e) => {
            let s = status(h);
            panic!(
                "{e}; last status: state {:?}, transport {:?}, attempts {}, last_error {:?}",
                s.state, s.transport, s.connection_attempts, s.last_error
            )
        }
    }
}

pub async fn connected(h: &EngineHandle, transport: Transport) -> ChannelStatus {
    wait_status(h, "connected", |s| {
        s.state == LinkState::Connected && s.transport == Some(transport)
    })
    .await
}

/// Waits until the engine has made `n` more attempts on a probe channel that can never connect
/// (a closed port), started beside the others with quick reconnects. For checks that something
/// did *not* happen — no reconnect with a revoked token, none after a removal: the window
/// provably spans `n` of the engine's own retry delays under whatever load the machine is
/// under, where a fixed sleep would pass a slow regression on a loaded machine.
pub async fn retries_elapse(h: &EngineHandle, n: u64) {
    let probe = |h: &EngineHandle| {
        h.status()
            .into_iter()
            .find(|s| s.channel == "probe")
            .map(|s| s.connection_attempts)
    };
    if probe(h).is_none() {
        let cfg = json!({
            "cloud_url": "http://127.0.0.1:1", "channel": "probe", "token": "probe-token",
            "protocol": "websocket", "reconnect_delay": 0.1, "max_reconnect_delay": 1.0,
            "default_target": {"url": "http://127.0.0.1:1/"},
        });
        h.add_channel(load_config(&cfg, &[]).channels.remove(0))
            .unwrap();
    }
    let start = probe(h).unwrap_or(0);
    let r = wait_for(T, "the probe channel's retries", || {
        let hit = (probe(h).unwrap_or(0) >= start + n).then_some(());
        async move { hit }
    })
    .await;
    if let Err(e) = r {
        panic!("{e}: {:?}", h.status());
    }
}

pub async fn stop(h: EngineHandle) {
    connect_testkit::within(T, "shutdown", h.shutdown(Duration::from_secs(2)))
        .await
        .unwrap();
}

/// A `token_ref` file (mode 0600) in a directory of its own.
pub struct TokenFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl TokenFile {
    pub fn new(token: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let f = Self {
            path: dir.path().join("token"),
            _dir: dir,
        };
        f.write(token);
        f
    }

    /// Replaces the token (a line, as an operator's editor writes it).
    pub fn write(&self, token: &str) {
        std::fs::write(&self.path, format!("{token}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    /// The channel settings that read the token from this file.
    pub fn token_ref(&self) -> Value {
        json!({"token_ref": format!("file:{}", self.path.display())})
    }
}

/// The log records of the engine running in this test process (info and above, as text): a
/// positive signal for what a status snapshot can miss (a 401 that is retried within 100 ms, a
/// watch event applied). Installed once per process; nextest runs each test in its own.
#[derive(Clone)]
pub struct Logs(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

struct LogWriter(std::sync::Arc<parking_lot::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    pub fn capture() -> Self {
        static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let buf = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
            let writer = buf.clone();
            tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
                .with_ansi(false)
                .with_writer(move || LogWriter(writer.clone()))
                .try_init()
                .expect("no other tracing subscriber in this test process");
            Logs(buf)
        })
        .clone()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock()).into_owned()
    }

    /// Waits (up to `within`) for a line holding every one of `needles`; returns it.
    pub async fn wait_line(&self, within: Duration, what: &str, needles: &[&str]) -> String {
        let r = wait_for(within, what, || {
            let hit = self
                .text()
                .lines()
                .find(|l| needles.iter().all(|n| l.contains(n)))
                .map(str::to_owned);
            async move { hit }
        })
        .await;
        match r {
            Ok(line) => line,
            Err(e) => panic!("{e}; engine log:\n{}", self.text()),
        }
    }
}
