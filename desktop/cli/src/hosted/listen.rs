//! `listen --forward-to URL [--channel NAME]`: from nothing to forwarding in one command.
//!
//! It checks the key, creates the channel `<account>.<NAME>` (default `dev`) or reuses it,
//! prints the webhook URL first, then runs the connector engine on that channel with the API
//! key as its credential (HOSTED.md §3: a connector may use the owner's key instead of the
//! channel token) and prints one line per settled webhook. Ctrl-C (or SIGTERM) stops taking
//! webhooks, lets running deliveries settle and exits 0. A key refused while listening exits 77;
//! a channel deleted at the cloud (close 4006) exits 1.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use connect_engine::config::{ChannelConfig, TransportChoice};
use connect_engine::hosted::HostedClient;
use connect_engine::{ConnectorConfig, DEFAULT_GRACE, Engine, EngineHandle, Finished, LinkState};
use connect_protocol::hosted::{CreateChannelRequest, is_valid_channel_short_name};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use super::creds::Ctx;
use super::error::{CliError, EXIT_UNAUTHORIZED};
use super::{ListenArgs, output};

/// The running connector's control endpoint (`webhook-connect status`, `events`, `replay`).
#[derive(Debug, Clone)]
pub struct Control {
    /// `127.0.0.1:0`, or `off`.
    pub listen: String,
    pub file: Option<PathBuf>,
}

/// How often the link state is looked at for the `connected` / `reconnecting` lines.
const STATE_TICK: Duration = Duration::from_millis(200);

/// The channel's webhook URL, and whether it was created now.
async fn ensure_channel(
    client: &HostedClient,
    short: &str,
    full: &str,
) -> Result<(String, bool), CliError> {
    match client.channel(full).await {
        Ok(d) => return Ok((d.channel.webhook_url, false)),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    let req = CreateChannelRequest {
        name: short.to_owned(),
        description: Some("created by webhook-connect listen".into()),
        ..Default::default()
    };
    match client.create_channel(&req).await {
        Ok(c) => Ok((c.webhook_url, true)),
        // Created meanwhile by another `listen`: use it.
        Err(e) if e.status() == Some(409) => {
            Ok((client.channel(full).await?.channel.webhook_url, false))
        }
        Err(e) => Err(e.into()),
    }
}

fn print_delivery(out: &mut impl Write, f: &Finished, json: bool) -> Result<(), CliError> {
    if json {
        let s = &f.summary;
        output::json_line(
            out,
            &json!({
                "time": s.received_at,
                "message_id": s.message_id,
                "method": s.method,
                "path": s.path,
                "status": s.response_status,
                "error": f.error,
                "latency_ms": s.duration_ms,
                "outcome": s.outcome,
            }),
        )?;
    } else {
        writeln!(out, "{}", output::delivery_line(f))?;
    }
    out.flush()?;
    Ok(())
}

pub async fn run(
    a: ListenArgs,
    env: &BTreeMap<String, String>,
    control: Control,
    out: &mut impl Write,
) -> Result<ExitCode, CliError> {
    let usage = |e: &dyn std::fmt::Display| CliError::Usage(e.to_string());
    let protocol = TransportChoice::parse(&a.protocol).map_err(|e| usage(&e))?;
    // `dev` or the full `alice.dev` (then the account part must be the key's account).
    let (owner, short) = match a.channel.split_once('.') {
        Some((owner, short)) => (Some(owner.to_owned()), short.to_owned()),
        None => (None, a.channel.clone()),
    };
    if !is_valid_channel_short_name(&short) {
        return Err(CliError::Usage(format!(
            "--channel {:?}: 1-40 of a-z, 0-9 and '-', starting with a letter or digit",
            a.channel
        )));
    }
    let ctx = Ctx::resolve(&a.common, env)?;
    let key = ctx.read_key()?;
    let client = HostedClient::new(&ctx.cloud_url, Some(&key), &ctx.http)?;
    let account = super::commands::account_of(&client).await?;
    if let Some(owner) = owner.filter(|o| *o != account.name) {
        return Err(CliError::Usage(format!(
            "--channel {:?} belongs to account {owner:?}; this key is {:?}'s",
            a.channel, account.name
        )));
    }
    let full = format!("{}.{short}", account.name);
    let mut cfg = ChannelConfig::basic(
        &full,
        &ctx.cloud_url,
        &full,
        &key,
        protocol,
        Some(&a.forward_to),
        &BTreeMap::new(),
    )
    .map_err(|e| usage(&e))?;
    cfg.verify_ssl = ctx.http.verify_ssl;
    cfg.ca_cert_path = ctx.http.ca_cert_path.clone();
    let (webhook_url, created) = ensure_channel(&client, &short, &full).await?;
    // Until here Ctrl-C ends the process at once (nothing is being delivered); from the URL
    // line on it stops gracefully.
    let mut signals = crate::Signals::install()
        .map_err(|e| CliError::Failed(format!("cannot install signal handlers: {e}")))?;
    if a.common.json {
        output::json_line(
            out,
            &json!({"channel": full, "webhook_url": webhook_url, "forward_to": a.forward_to, "created": created}),
        )?;
    } else {
        writeln!(out, "Webhook URL: {webhook_url}")?;
        writeln!(
            out,
            "Forwarding {full} ({}) to {}. Ctrl-C to stop.",
            if created { "created" } else { "existing" },
            a.forward_to
        )?;
    }
    out.flush()?;
    let mut engine_cfg = ConnectorConfig::new(Vec::new());
    engine_cfg.env = env.clone();
    let handle = Engine::start(engine_cfg).map_err(|e| CliError::Failed(e.to_string()))?;
    let mut finished = handle.subscribe_finished();
    let _control = start_control(&handle, control).await;
    if let Err(e) = handle.add_channel(cfg) {
        handle.shutdown(DEFAULT_GRACE).await;
        return Err(CliError::Usage(e.to_string()));
    }
    let mut last_state = None;
    let mut tick = tokio::time::interval(STATE_TICK);
    // A failed write (stdout closed) still lets running deliveries settle before it is told.
    let mut write_error = None;
    let code = loop {
        tokio::select! {
            _ = signals.recv() => break ExitCode::SUCCESS,
            f = finished.recv() => match f {
                Ok(f) => if let Err(e) = print_delivery(out, &f, a.common.json) {
                    write_error = Some(e);
                    break ExitCode::SUCCESS;
                },
                Err(RecvError::Lagged(n)) => eprintln!("webhook-connect: {n} deliveries not shown (output too slow)"),
                Err(RecvError::Closed) => break ExitCode::from(super::error::EXIT_ERROR),
            },
            _ = tick.tick() => {
                if let Some(code) = watch_state(&handle, &mut last_state) {
                    break code;
                }
            }
        }
    };
    eprintln!("webhook-connect: stopping: settling running deliveries");
    handle.shutdown(DEFAULT_GRACE).await;
    if let Some(e) = write_error {
        return Err(e);
    }
    while let Ok(f) = finished.try_recv() {
        print_delivery(out, &f, a.common.json)?;
    }
    Ok(code)
}

/// Tells link state changes on stderr; the exit code when the link cannot go on.
fn watch_state(handle: &EngineHandle, last: &mut Option<LinkState>) -> Option<ExitCode> {
    let s = handle.status().into_iter().next()?;
    if *last == Some(s.state) {
        return None;
    }
    *last = Some(s.state);
    let why = s
        .last_error
        .as_deref()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    match s.state {
        LinkState::Connected => {
            let t = s.transport.map(|t| t.as_str()).unwrap_or("-");
            eprintln!("webhook-connect: connected ({t})");
        }
        LinkState::Connecting => eprintln!("webhook-connect: connecting{why}"),
        LinkState::Degraded => eprintln!("webhook-connect: degraded{why}"),
        LinkState::AuthFailed => {
            eprintln!("webhook-connect: the cloud refused the API key{why}");
            return Some(ExitCode::from(EXIT_UNAUTHORIZED));
        }
        LinkState::Stopped => {
            eprintln!("webhook-connect: the link stopped for good{why}");
            return Some(ExitCode::from(super::error::EXIT_ERROR));
        }
        LinkState::Paused | LinkState::Disconnected => {}
    }
    None
}

async fn start_control(handle: &EngineHandle, control: Control) -> Option<crate::control::Control> {
    if control.listen.eq_ignore_ascii_case("off") {
        return None;
    }
    match crate::control::start(handle.clone(), &control.listen, control.file).await {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!(
                "webhook-connect: no control endpoint ({e}); `status` and `events` will not find this listener"
            );
            None
        }
    }
}
