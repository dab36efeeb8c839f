//! `webhook-connect-cloud`: parse and validate settings and configuration, open the buffer,
//! bind, serve until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use connect_buffer::redis::{RedisBuffer, RedisOptions};
use connect_buffer::{Buffer, BufferError, SystemClock, embedded::EmbeddedBuffer};
use connect_cloud::settings::{LogFormat, env};
use connect_cloud::{AppState, Settings};

/// sysexits: EX_USAGE / EX_CONFIG-style bad configuration.
const EXIT_CONFIG: u8 = 64;
/// sysexits: EX_UNAVAILABLE, a required dependency cannot be used.
const EXIT_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    let mut settings = match Settings::try_parse() {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion
            ) =>
        {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Err(e) = settings.validate(std::env::var(env::TRUSTED_PROXY_IPS).ok()) {
        eprintln!("invalid settings: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    init_tracing(&settings);
    if let Err(e) = connect_cloud::config_source::precheck(&settings) {
        eprintln!("invalid configuration: {e}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let buffer: Arc<dyn Buffer> = if let Some(url) = &settings.redis_url {
            match RedisBuffer::open(redis_options(&settings, url), Arc::new(SystemClock)).await {
                Ok(b) => Arc::new(b),
                Err(e) => {
                    eprintln!("cannot use the Redis buffer: {e}");
                    return ExitCode::from(EXIT_UNAVAILABLE);
                }
            }
        } else {
            match EmbeddedBuffer::open(&settings.data_dir, Arc::new(SystemClock)) {
                Ok(b) => Arc::new(b),
                Err(BufferError::Locked(e)) => {
                    eprintln!("data directory {} is in use by another process: {e}", settings.data_dir.display());
                    return ExitCode::from(EXIT_UNAVAILABLE);
                }
                Err(e) => {
                    eprintln!("cannot open the data directory {}: {e}", settings.data_dir.display());
                    return ExitCode::from(EXIT_UNAVAILABLE);
                }
            }
        };
        let listen = settings.listen;
        let st = AppState::new(settings, buffer);
        // File backend: the first load is complete (or fatal) here. etcd: loads in the
        // background; until then ingress answers 503 `Configuration not loaded`.
        if let Err((code, e)) = st.sources.start(&st).await {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(code);
        }
        let listener = match tokio::net::TcpListener::bind(listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("cannot listen on {listen}: {e}");
                return ExitCode::from(EXIT_UNAVAILABLE);
            }
        };
        tracing::info!(%listen, backend = st.buffer().backend_name(), "webhook-connect-cloud listening");
        match connect_cloud::server::run(listener, st, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %e, "server failed");
                ExitCode::FAILURE
            }
        }
    })
}

/// Redis backend options from the settings (CONFIG.md §1.3).
fn redis_options(s: &Settings, url: &str) -> RedisOptions {
    let mut o = RedisOptions::new(url, s.redis_prefix.clone());
    o.wait_aof = s.redis_wait_aof;
    o.wait_replicas = s.redis_wait_replicas;
    o.heartbeat = s.heartbeat();
    o.replica_id = s.replica_id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "replica".into());
        format!("{host}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
    });
    o
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn init_tracing(s: &Settings) {
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "{},hyper=warn,h2=warn",
        s.log_level.to_ascii_lowercase()
    ));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a terminal; log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match s.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
