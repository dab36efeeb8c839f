//! `webhook-connect`: the headless connector. Flags > `CONNECTOR_*` env > config file >
//! defaults (CONFIG.md §7); exit 64 on invalid configuration, 0 after a graceful stop on
//! SIGINT/SIGTERM, 1 on a fatal error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use connect_engine::config::{self, LogFormat, Overrides, Sources};
use connect_engine::{DEFAULT_GRACE, Engine};

#[derive(Debug, Parser)]
#[command(name = "webhook-connect", version, about = "Webhook Connect connector")]
struct Cli {
    /// Configuration file (.json).
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long)]
    cloud_url: Option<String>,
    #[arg(long)]
    channel: Option<String>,
    /// Channel token (visible in process listings; prefer CONNECTOR_TOKEN or --token-ref).
    #[arg(long)]
    token: Option<String>,
    #[arg(long)]
    token_ref: Option<String>,
    /// websocket, sse, long_poll or auto.
    #[arg(long)]
    protocol: Option<String>,
    #[arg(long)]
    reconnect_delay: Option<f64>,
    #[arg(long)]
    max_reconnect_delay: Option<f64>,
    #[arg(long)]
    reconnect_backoff_multiplier: Option<f64>,
    #[arg(long)]
    heartbeat_timeout: Option<f64>,
    #[arg(long)]
    connection_timeout: Option<f64>,
    #[arg(long)]
    max_concurrent_requests: Option<u64>,
    #[arg(long)]
    ack_timeout: Option<f64>,
    #[arg(long)]
    log_level: Option<String>,
    /// text or json.
    #[arg(long)]
    log_format: Option<String>,
    #[arg(long)]
    no_verify_ssl: bool,
    #[arg(long)]
    ca_cert_path: Option<String>,
    #[arg(long)]
    client_cert_path: Option<String>,
    #[arg(long)]
    client_key_path: Option<String>,
    #[arg(long)]
    connector_id: Option<String>,
    #[arg(long)]
    webhooks_config: Option<String>,
    #[arg(long)]
    connections_config: Option<String>,
    #[arg(long)]
    etcd_host: Option<String>,
    #[arg(long)]
    etcd_port: Option<u64>,
    #[arg(long)]
    etcd_prefix: Option<String>,
    #[arg(long)]
    namespace: Option<String>,
    /// Default target URL.
    #[arg(long)]
    target_url: Option<String>,
}

const EXIT_CONFIG: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            return ExitCode::from(if code == 0 { 0 } else { EXIT_CONFIG });
        }
    };
    let token_flag = cli.token.is_some();
    let sources = Sources {
        config_file: cli.config.clone(),
        env: std::env::vars().collect(),
        flags: Overrides {
            cloud_url: cli.cloud_url,
            channel: cli.channel,
            token: cli.token,
            token_ref: cli.token_ref,
            protocol: cli.protocol,
            reconnect_delay: cli.reconnect_delay,
            max_reconnect_delay: cli.max_reconnect_delay,
            reconnect_backoff_multiplier: cli.reconnect_backoff_multiplier,
            heartbeat_timeout: cli.heartbeat_timeout,
            connection_timeout: cli.connection_timeout,
            max_concurrent_requests: cli.max_concurrent_requests,
            ack_timeout: cli.ack_timeout,
            log_level: cli.log_level,
            log_format: cli.log_format,
            verify_ssl: cli.no_verify_ssl.then_some(false),
            ca_cert_path: cli.ca_cert_path,
            client_cert_path: cli.client_cert_path,
            client_key_path: cli.client_key_path,
            connector_id: cli.connector_id,
            webhooks_config: cli.webhooks_config,
            connections_config: cli.connections_config,
            etcd_host: cli.etcd_host,
            etcd_port: cli.etcd_port,
            etcd_prefix: cli.etcd_prefix,
            namespace: cli.namespace,
            target_url: cli.target_url,
        },
    };
    let cfg = match config::load(&sources) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("webhook-connect: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logging(&cfg.log_level, cfg.log_format);
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    if token_flag {
        tracing::warn!(
            "--token is visible in process listings; prefer CONNECTOR_TOKEN or --token-ref"
        );
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("webhook-connect: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(run(cfg))
}

async fn run(cfg: connect_engine::ConnectorConfig) -> ExitCode {
    // Handlers are installed before anything starts, so an early signal still stops gracefully.
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("fatal: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    // Unreadable TLS files and the like are configuration errors too.
    let handle = match Engine::start(cfg) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("webhook-connect: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    tracing::info!("webhook-connect started");
    signals.recv().await;
    tracing::info!("stopping: finishing in-flight deliveries");
    handle.shutdown(DEFAULT_GRACE).await;
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

#[cfg(unix)]
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn install() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn recv(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging(level: &str, format: LogFormat) {
    let level = match level {
        "DEBUG" => "debug",
        "WARNING" => "warn",
        "ERROR" => "error",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::new(format!("{level},hyper=warn,reqwest=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a terminal; log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
