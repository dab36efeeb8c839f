//! `webhook-connect-cloud`: parse and validate settings and configuration, open the buffer,
//! bind, serve until SIGINT/SIGTERM. `webhook-connect-cloud healthcheck [PATH]` probes a running
//! instance instead (container HEALTHCHECK without a shell or curl).

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use connect_buffer::embedded::{EmbeddedBuffer, EmbeddedOptions};
use connect_buffer::redis::{RedisBuffer, RedisEndpoint, RedisOptions};
use connect_buffer::{Buffer, BufferError, SystemClock};
use connect_cloud::settings::{LogFormat, env};

/// mimalloc instead of glibc's malloc: the ingest path allocates per request on every worker
/// thread, where glibc's arenas and consolidation took ~13 % of the CPU (docs/BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use connect_cloud::{AppState, Settings};

/// sysexits: EX_USAGE / EX_CONFIG-style bad configuration.
const EXIT_CONFIG: u8 = 64;
/// sysexits: EX_UNAVAILABLE, a required dependency cannot be used.
const EXIT_UNAVAILABLE: u8 = 69;

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == "healthcheck")
    {
        return healthcheck(std::env::args().nth(2));
    }
    // Two rustls crypto providers are compiled in (ring, and aws-lc-rs through vaultrs's
    // reqwest); clients that use the process default (the Redis client's `rediss://`) need one
    // chosen. Already installed → keep it.
    let _ = rustls::crypto::ring::default_provider().install_default();
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
    connect_cloud::hugepages::disable();
    // From here a panic is logged with its location only: its message may hold request data.
    connect_cloud::panic_hook::install();
    if let Err(e) = connect_cloud::config_source::start::precheck(&settings) {
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
        let buffer: Arc<dyn Buffer> = if let Some(endpoint) = settings.redis_endpoint() {
            match RedisBuffer::open(redis_options(&settings, endpoint), Arc::new(SystemClock)).await {
                Ok(b) => Arc::new(b),
                Err(e) => {
                    eprintln!("cannot use the Redis buffer: {e}");
                    return ExitCode::from(EXIT_UNAVAILABLE);
                }
            }
        } else {
            let options = EmbeddedOptions {
                segment_bytes: settings.segment_bytes,
                max_dead_letters: settings.max_dead_letters,
                syncs_in_flight: settings.syncs_in_flight,
            };
            match EmbeddedBuffer::open_with(&settings.data_dir, Arc::new(SystemClock), options) {
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
        let st = AppState::with_environment(
            settings,
            buffer,
            Arc::new(connect_config::ProcessEnv),
            std::env::args().collect(),
        );
        // File backend: the first load is complete (or fatal) here. etcd: loads in the
        // background; until then ingress answers 503 `Configuration not loaded`.
        if let Err(e) = st.start_sources().await {
            eprintln!("invalid configuration: {e}");
            return ExitCode::from(e.exit_code());
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

/// Why the healthcheck could not get an answer (printed after `healthcheck: `).
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("{listen}: {source}")]
    Listen {
        listen: String,
        source: std::net::AddrParseError,
    },
    #[error("{addr}: {source}")]
    Connect {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// `webhook-connect-cloud healthcheck [PATH]`: GETs `PATH` (default `/health`) from the
/// address in `WEBHOOK_CONNECT_LISTEN` and exits 0 on a 2xx answer, 1 otherwise. For container
/// HEALTHCHECKs: the runtime image has neither a shell nor curl.
fn healthcheck(path: Option<String>) -> ExitCode {
    use std::io::{Read, Write};
    let listen = std::env::var(env::LISTEN)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1:8000".into());
    let path = path.unwrap_or_else(|| "/health".into());
    let probe = || -> Result<String, ProbeError> {
        let mut addr: std::net::SocketAddr =
            listen.trim().parse().map_err(|source| ProbeError::Listen {
                listen: listen.clone(),
                source,
            })?;
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            });
        }
        let timeout = std::time::Duration::from_secs(5);
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
            .map_err(|source| ProbeError::Connect { addr, source })?;
        s.set_read_timeout(Some(timeout))?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = Vec::new();
        s.take(64 * 1024).read_to_end(&mut head)?;
        let text = String::from_utf8_lossy(&head);
        Ok(text.lines().next().unwrap_or_default().to_owned())
    };
    match probe() {
        Ok(line)
            if line
                .split_whitespace()
                .nth(1)
                .is_some_and(|c| c.starts_with('2')) =>
        {
            ExitCode::SUCCESS
        }
        Ok(line) => {
            eprintln!("healthcheck: GET {path}: {line}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("healthcheck: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Redis backend options from the settings (CONFIG.md §1.3).
fn redis_options(s: &Settings, endpoint: RedisEndpoint) -> RedisOptions {
    let mut o = RedisOptions::with_endpoint(endpoint, s.redis_prefix.clone());
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
    // The WebSocket library traces every frame it sends, payload included (a webhook's body and
    // its `Authorization` header): never below info, whatever the level.
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "{},hyper=warn,h2=warn,tungstenite=info,tokio_tungstenite=info",
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
