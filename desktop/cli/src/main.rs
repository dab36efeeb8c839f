//! `webhook-connect`: the headless connector. Flags > `CONNECTOR_*` env > config file >
//! defaults (CONFIG.md §7); exit 64 on invalid configuration, 0 after a graceful stop on
//! SIGINT/SIGTERM, 1 on a fatal error. A command whose stdout is closed ends quietly with 0
//! (see [`client`]).
//!
//! A running connector serves a loopback control endpoint; `webhook-connect status`, `events`
//! and `replay <message-id>` talk to it.
//!
//! The self-service commands (`login`, `logout`, `whoami`, `channels`, `dead-letters`,
//! `listen`) talk to a cloud's `/api/v1` with an account's API key: see [`hosted`].

mod client;
mod control;
mod hosted;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use connect_engine::config::{self, LogFormat, Overrides, Sources};
use connect_engine::{DEFAULT_GRACE, Engine};

/// mimalloc instead of glibc's malloc, as in the cloud: a `perf record` of a drain had glibc's
/// allocator (malloc, free, chunk consolidation) at about a third of the connector's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "webhook-connect",
    version,
    about = "Webhook Connect connector",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Control endpoint of the running connector (loopback), or `off`.
    #[arg(
        long,
        env = "CONNECTOR_CONTROL_LISTEN",
        default_value = "127.0.0.1:0",
        global = true
    )]
    control_listen: String,
    /// Where the running connector writes its control URL and token (mode 0600), and where
    /// `status`, `events` and `replay` read them. Default:
    /// `$XDG_RUNTIME_DIR/webhook-connect/control.json` or `~/.cache/webhook-connect/control.json`.
    #[arg(long, env = "CONNECTOR_CONTROL_FILE", global = true)]
    control_file: Option<PathBuf>,
    /// Configuration file (.json, .yaml or .yml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Cloud base URL, `http(s)://host[:port][/base]`; `ws(s)://` is derived for WebSocket [env: CONNECTOR_CLOUD_URL].
    #[arg(long)]
    cloud_url: Option<String>,
    /// Channel name [env: CONNECTOR_CHANNEL].
    #[arg(long)]
    channel: Option<String>,
    /// Channel token (visible in process listings; prefer CONNECTOR_TOKEN or --token-ref).
    #[arg(long)]
    token: Option<String>,
    /// Where to read the token: `keyring`, `keyring:<account>`, `env:<VARIABLE>` or `file:<path>` [env: CONNECTOR_TOKEN_REF].
    #[arg(long)]
    token_ref: Option<String>,
    /// websocket, sse, long_poll or auto.
    #[arg(long)]
    protocol: Option<String>,
    /// First reconnect delay in seconds (default 1.0; ±20 % jitter, never gives up).
    #[arg(long)]
    reconnect_delay: Option<f64>,
    /// Longest reconnect delay in seconds (default 60.0).
    #[arg(long)]
    max_reconnect_delay: Option<f64>,
    /// Backoff multiplier between reconnects (default 2.0).
    #[arg(long)]
    reconnect_backoff_multiplier: Option<f64>,
    /// Reconnect when nothing arrived from the cloud for this many seconds (default 60.0; keep it above the cloud's heartbeat interval).
    #[arg(long)]
    heartbeat_timeout: Option<f64>,
    /// Connect and handshake timeout in seconds, every protocol (default 30.0).
    #[arg(long)]
    connection_timeout: Option<f64>,
    /// Concurrent local deliveries, all channels together (default 10).
    #[arg(long)]
    max_concurrent_requests: Option<u64>,
    /// Accepted for compatibility with the reference connector; the cloud's ack timeout governs.
    #[arg(long)]
    ack_timeout: Option<f64>,
    /// DEBUG, INFO (default), WARNING or ERROR.
    #[arg(long)]
    log_level: Option<String>,
    /// text or json.
    #[arg(long)]
    log_format: Option<String>,
    /// Do not verify the cloud's TLS certificate.
    #[arg(long)]
    no_verify_ssl: bool,
    /// PEM file of a private CA for the cloud's certificate.
    #[arg(long)]
    ca_cert_path: Option<String>,
    /// PEM client certificate for mutual TLS to the cloud.
    #[arg(long)]
    client_cert_path: Option<String>,
    /// PEM key of the client certificate.
    #[arg(long)]
    client_key_path: Option<String>,
    /// Sent as `X-Connector-ID`.
    #[arg(long)]
    connector_id: Option<String>,
    /// Module mode: a webhooks.json whose `log` / `save_to_disk` entries handle each message locally instead of a target.
    #[arg(long)]
    webhooks_config: Option<String>,
    /// Connections file for module mode.
    #[arg(long)]
    connections_config: Option<String>,
    /// etcd module mode: the definitions come from etcd and are followed live (`host`, `host:port`, comma-separated for several endpoints).
    #[arg(long)]
    etcd_host: Option<String>,
    /// etcd port for module mode (default 2379).
    #[arg(long)]
    etcd_port: Option<u64>,
    /// etcd key prefix for module mode (default `/cwm/`).
    #[arg(long)]
    etcd_prefix: Option<String>,
    /// Namespace for module lookups (default `default`).
    #[arg(long)]
    namespace: Option<String>,
    /// Default target URL: every webhook without its own entry in `targets` goes here.
    #[arg(long)]
    target_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Shows every channel of the running connector: state, counters, latency, queue depth.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Lists the recent webhooks of the running connector (newest first).
    Events {
        /// Only this channel (its key: the channel name).
        #[arg(long)]
        channel: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Re-sends a webhook from the running connector's history to its target or another URL.
    Replay {
        message_id: String,
        /// Send to this URL instead of the original target.
        #[arg(long)]
        target: Option<String>,
        /// `Name: value` replaces that header (`Name:` removes it); repeatable.
        #[arg(long = "header", short = 'H')]
        headers: Vec<String>,
        /// Replace the body with this file's bytes.
        #[arg(long)]
        body_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Stores a channel token (read from stdin) in the OS keyring for `token_ref = "keyring"`
    /// (service `webhook-connect`, account `channel:<origin>/<channel>`); `--admin` stores the
    /// cloud's admin token (`admin:<origin>`); `--delete` removes the entry.
    StoreToken {
        #[arg(long = "for-cloud")]
        cloud: String,
        #[arg(long = "for-channel", required_unless_present = "admin")]
        channel_name: Option<String>,
        #[arg(long)]
        admin: bool,
        #[arg(long)]
        delete: bool,
    },
    /// Logs in to a self-service cloud: reads an API key from stdin (or creates an account
    /// with --create-account), checks it with GET /api/v1/account and stores it in the OS
    /// keyring (service `webhook-connect`, account `api-key:<cloud url>`) or --key-file.
    Login(hosted::LoginArgs),
    /// Removes the stored API key of a cloud (keyring entry or key file).
    Logout(hosted::Common),
    /// Shows the account of the stored API key.
    Whoami(hosted::Common),
    /// Lists, creates, deletes the account's channels, or rotates a channel's token.
    #[command(subcommand)]
    Channels(hosted::ChannelsCmd),
    /// Lists a channel's dead letters, or replays, deletes or purges them.
    DeadLetters(hosted::DeadLettersArgs),
    /// Creates (or reuses) a channel, prints its webhook URL and forwards every webhook to
    /// --forward-to, one line each, until Ctrl-C.
    Listen(hosted::ListenArgs),
}

impl Cmd {
    /// The self-service command this is, or itself.
    #[allow(clippy::result_large_err)] // parsed once per process
    fn into_hosted(self) -> Result<hosted::HostedCmd, Cmd> {
        use hosted::HostedCmd as H;
        match self {
            Cmd::Login(a) => Ok(H::Login(a)),
            Cmd::Logout(a) => Ok(H::Logout(a)),
            Cmd::Whoami(a) => Ok(H::Whoami(a)),
            Cmd::Channels(a) => Ok(H::Channels(a)),
            Cmd::DeadLetters(a) => Ok(H::DeadLetters(a)),
            Cmd::Listen(a) => Ok(H::Listen(a)),
            other => Err(other),
        }
    }
}

const EXIT_CONFIG: u8 = 64;

/// The exit codes, as `--help` shows them (docs/CLI.md has the same table).
const EXIT_CODES: &str = "\
Developer quick start (self-service cloud):
  webhook-connect login --cloud-url https://hooks.example.com < api-key.txt
  webhook-connect listen --forward-to http://localhost:3000/webhooks

Exit codes:
  0   success; the connector or `listen` stopped on Ctrl-C / SIGTERM
  1   error: the cloud answered with an error (not found, name taken, quota), a delivery
      replayed by `replay` failed, the channel was deleted while listening
  64  usage or configuration: bad flags or names, a key file others may read, no OS keyring
      without --key-file, an invalid connector configuration
  69  the cloud could not be reached (self-service commands)
  77  not logged in, or the cloud refused the API key (self-service commands)";

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            let _ = e.print();
            return ExitCode::from(if code == 0 { 0 } else { EXIT_CONFIG });
        }
    };
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let control_file = cli
        .control_file
        .clone()
        .or_else(|| control::default_file(&env));
    if let Some(Cmd::StoreToken {
        cloud,
        channel_name,
        admin,
        delete,
    }) = &cli.cmd
    {
        return store_token(cloud, channel_name.as_deref(), *admin, *delete);
    }
    if let Some(cmd) = cli.cmd {
        return match cmd.into_hosted() {
            Ok(h) => {
                init_hosted_logging();
                let control = hosted::Control {
                    listen: cli.control_listen,
                    file: control_file,
                };
                hosted::main(h, env, control)
            }
            Err(cmd) => client::client_main(cmd, control_file),
        };
    }
    let control_listen = cli.control_listen.clone();
    let token_flag = cli.token.is_some();
    let sources = Sources {
        config_file: cli.config.clone(),
        env,
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
    rt.block_on(run(cfg, control_listen, control_file))
}

async fn run(
    mut cfg: connect_engine::ConnectorConfig,
    control_listen: String,
    control_file: Option<PathBuf>,
) -> ExitCode {
    // Handlers are installed before anything starts, so an early signal still stops gracefully.
    let mut signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("fatal: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    // The control endpoint (and its file) comes before the channels: once a webhook was
    // delivered, `webhook-connect status` must find the running connector.
    let channels = std::mem::take(&mut cfg.channels);
    let handle = match Engine::start(cfg) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("webhook-connect: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let _control = if control_listen.eq_ignore_ascii_case("off") {
        None
    } else {
        match control::start(handle.clone(), &control_listen, control_file).await {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("webhook-connect: invalid configuration: {e}");
                handle.shutdown(DEFAULT_GRACE).await;
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    };
    // Unreadable TLS files and the like are configuration errors too.
    for channel in channels {
        if let Err(e) = handle.add_channel(channel) {
            eprintln!("webhook-connect: invalid configuration: {e}");
            handle.shutdown(DEFAULT_GRACE).await;
            return ExitCode::from(EXIT_CONFIG);
        }
    }
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

/// The self-service commands print for a person on stdout; the engine's own log (under
/// `listen`) shows warnings and errors only, on stderr, unless `RUST_LOG` says otherwise. Its
/// per-delivery outcome lines are left out: `listen` prints one line per webhook itself (and a
/// self-service webhook id, which is the URL's secret part, stays out of the log).
fn init_hosted_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,connect_engine::outcome_log=error,hyper=warn,reqwest=warn",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

fn store_token(cloud: &str, channel: Option<&str>, admin: bool, delete: bool) -> ExitCode {
    use connect_engine::keyring;
    let account = match (admin, channel) {
        (true, _) => keyring::admin_account(cloud).map_err(|e| e.to_string()),
        (false, Some(c)) => keyring::channel_account(cloud, c).map_err(|e| e.to_string()),
        (false, None) => Err("--for-channel is required".to_owned()),
    };
    let account = match account {
        Ok(a) => a,
        Err(e) => {
            eprintln!("webhook-connect: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let result = if delete {
        keyring::delete(&account)
    } else {
        let mut token = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut token) {
            eprintln!("webhook-connect: reading the token from stdin: {e}");
            return ExitCode::from(1);
        }
        let token = token.trim();
        if token.is_empty() {
            eprintln!("webhook-connect: no token on stdin");
            return ExitCode::from(EXIT_CONFIG);
        }
        keyring::write(&account, token)
    };
    match result {
        Ok(()) => {
            eprintln!(
                "{} {account:?} in the OS keyring (service {:?})",
                if delete { "removed" } else { "stored" },
                keyring::SERVICE
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("webhook-connect: {e}");
            ExitCode::from(1)
        }
    }
}
