//! `webhook-connect-cloud`: parse and validate settings and configuration, open the buffer,
//! bind, serve until SIGINT/SIGTERM.

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use connect_buffer::{BufferError, SystemClock, embedded::EmbeddedBuffer};
use connect_cloud::settings::{LogFormat, env};
use connect_cloud::{AppState, Settings};
use connect_config::ProcessEnv;

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
    let webhooks =
        match connect_cloud::app::read_webhooks(&settings.webhooks_config_file, &ProcessEnv) {
            Ok(w) => w,
            Err(e) => {
                eprintln!("invalid configuration: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
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
        let buffer = match EmbeddedBuffer::open(&settings.data_dir, Arc::new(SystemClock)) {
            Ok(b) => b,
            Err(BufferError::Locked(e)) => {
                eprintln!("data directory {} is in use by another process: {e}", settings.data_dir.display());
                return ExitCode::from(EXIT_UNAVAILABLE);
            }
            Err(e) => {
                eprintln!("cannot open the data directory {}: {e}", settings.data_dir.display());
                return ExitCode::from(EXIT_UNAVAILABLE);
            }
        };
        let listen = settings.listen;
        let st = AppState::new(settings, Arc::new(buffer));
        if let Err(e) = st.apply_config(webhooks).await {
            eprintln!("cannot register channels: {e}");
            return ExitCode::from(EXIT_UNAVAILABLE);
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
