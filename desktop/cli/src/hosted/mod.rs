//! The self-service commands (HOSTED.md §4): `login`, `logout`, `whoami`, `channels …`,
//! `dead-letters …` and `listen --forward-to URL`, over the engine's
//! [`HostedClient`](connect_engine::hosted::HostedClient). `listen` runs the engine itself.
//!
//! Layout: [`creds`] finds the cloud and the API key (keyring or key file) and remembers the
//! login; [`commands`] runs the account, channel and dead-letter commands; [`output`] formats
//! what they print; [`listen`] is the one-command forwarder; [`error`] the exit codes.

mod commands;
mod creds;
mod error;
mod listen;
mod output;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use error::CliError;

/// What every self-service command takes.
#[derive(Debug, Default, Args)]
pub struct Common {
    /// The cloud, `http(s)://host[:port][/base]`. Default: the one of the last `login`.
    #[arg(long, env = "CONNECTOR_CLOUD_URL")]
    pub cloud_url: Option<String>,
    /// Keep or read the API key in this file (mode 0600; a file others may read is refused)
    /// instead of the OS keyring. Default: the file of the last `login --key-file`, if any.
    #[arg(long, env = "CONNECTOR_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// PEM file of a private CA for the cloud's certificate.
    #[arg(long)]
    pub ca_cert_path: Option<PathBuf>,
    /// Do not verify the cloud's TLS certificate.
    #[arg(long)]
    pub no_verify_ssl: bool,
}

/// `login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub common: Common,
    /// Create an account (on a cloud in `open` self-service mode) instead of reading a key.
    #[arg(long)]
    pub create_account: bool,
    /// The new account's name (`^[a-z0-9][a-z0-9-]{1,31}$`; generated when absent).
    #[arg(long, requires = "create_account")]
    pub name: Option<String>,
}

/// `channels`.
#[derive(Debug, Subcommand)]
pub enum ChannelsCmd {
    /// Lists the account's channels with their webhook URL and queue.
    List {
        #[command(flatten)]
        common: Common,
    },
    /// Creates a channel NAME (`<account>.NAME`) and prints its webhook URL and channel token.
    Create {
        /// Short name, `^[a-z0-9][a-z0-9-]{0,39}$`.
        name: String,
        /// Check each webhook's signature at the cloud: github, stripe, shopify, slack,
        /// standard-webhooks or hmac-sha256 (the secret is read from stdin).
        #[arg(long, requires = "secret_stdin")]
        verify: Option<String>,
        /// Read the provider's signing secret from stdin (with --verify).
        #[arg(long, requires = "verify")]
        secret_stdin: bool,
        /// The header holding the signature, for `hmac-sha256`.
        #[arg(long, requires = "verify")]
        verify_header: Option<String>,
        /// Free text shown with the channel.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Deletes a channel: its queued webhooks are discarded, its URL answers 404 at once.
    Delete {
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// Gives the channel a new token (printed once); the old one works for the grace period.
    RotateToken {
        name: String,
        /// Seconds the old token keeps working (default 3600; 0 revokes it at once).
        #[arg(long)]
        grace_seconds: Option<i64>,
        #[command(flatten)]
        common: Common,
    },
}

/// `dead-letters`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("action").args(["replay", "replay_all", "delete", "purge"])))]
pub struct DeadLettersArgs {
    /// The channel (short name or `<account>.<name>`).
    pub name: String,
    /// Put this dead letter back in the queue.
    #[arg(long, value_name = "MESSAGE_ID")]
    pub replay: Option<String>,
    /// Put every dead letter back in the queue, oldest first.
    #[arg(long)]
    pub replay_all: bool,
    /// Delete this dead letter.
    #[arg(long, value_name = "MESSAGE_ID")]
    pub delete: Option<String>,
    /// Delete every dead letter.
    #[arg(long)]
    pub purge: bool,
    /// How many to list (1-1000, newest first).
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    #[command(flatten)]
    pub common: Common,
}

/// `listen`.
#[derive(Debug, Args)]
pub struct ListenArgs {
    /// Where each webhook is sent (exactly this URL; path and query are not appended).
    #[arg(long, value_name = "URL")]
    pub forward_to: String,
    /// The channel to create or reuse (short name).
    #[arg(long, default_value = connect_protocol::hosted::DEFAULT_LISTEN_CHANNEL)]
    pub channel: String,
    /// websocket, sse, long_poll or auto.
    #[arg(long, default_value = "auto")]
    pub protocol: String,
    #[command(flatten)]
    pub common: Common,
}

/// A self-service command, as parsed.
#[derive(Debug)]
pub enum HostedCmd {
    Login(LoginArgs),
    Logout(Common),
    Whoami(Common),
    Channels(ChannelsCmd),
    DeadLetters(DeadLettersArgs),
    Listen(ListenArgs),
}

/// Runs one self-service command to its exit code.
pub fn main(cmd: HostedCmd, env: BTreeMap<String, String>, control: listen::Control) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("webhook-connect: cannot start the runtime: {e}");
            return ExitCode::from(error::EXIT_ERROR);
        }
    };
    let mut out = std::io::stdout().lock();
    let result = rt.block_on(async {
        match cmd {
            HostedCmd::Listen(a) => listen::run(a, &env, control, &mut out).await,
            other => commands::run(other, &env, &mut out).await,
        }
    });
    let result = result.and_then(|code| out.flush().map(|()| code).map_err(CliError::from));
    match result {
        Ok(code) => code,
        Err(e) => e.exit(),
    }
}

pub use listen::Control;
