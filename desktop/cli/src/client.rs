//! The client commands (`status`, `events`, `replay`) against a running connector, and how they
//! end.
//!
//! Their output goes through a writer whose failures are errors rather than panics
//! (`println!` panics on a closed stdout). A closed stdout (`webhook-connect status | head -1`,
//! or a reader that went away) ends the command quietly with exit code 0: the reader took what
//! it wanted, as with ripgrep. Any other write failure is reported with exit code 1.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::{Cmd, EXIT_CONFIG, control};

/// Why a client command stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The connector or its control endpoint refused or failed.
    #[error("{0}")]
    Failed(String),
    /// The control endpoint could not be asked, or refused.
    #[error(transparent)]
    Request(#[from] crate::control::RequestError),
    /// Whoever read our stdout went away (EPIPE).
    #[error("stdout closed")]
    StdoutClosed,
    #[error("writing to stdout: {0}")]
    Stdout(io::Error),
}

impl From<String> for ClientError {
    fn from(e: String) -> Self {
        Self::Failed(e)
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Self::StdoutClosed
        } else {
            Self::Stdout(e)
        }
    }
}

impl ClientError {
    /// The exit code, after saying what went wrong on stderr.
    pub fn exit(self) -> ExitCode {
        match self {
            Self::StdoutClosed => ExitCode::SUCCESS,
            e => {
                eprintln!("webhook-connect: {e}");
                ExitCode::from(1)
            }
        }
    }
}

pub fn client_main(cmd: Cmd, control_file: Option<PathBuf>) -> ExitCode {
    let Some(file) = control_file else {
        eprintln!("webhook-connect: no control file: set --control-file (or HOME)");
        return ExitCode::from(EXIT_CONFIG);
    };
    let info = match control::read_info(&file) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("webhook-connect: {e}");
            return ExitCode::from(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("webhook-connect: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let client = control::Client::new(info);
    let mut out = io::stdout().lock();
    let result = rt
        .block_on(client_cmd(&client, cmd, &mut out))
        .and_then(|code| out.flush().map(|()| code).map_err(ClientError::from));
    result.unwrap_or_else(ClientError::exit)
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.1} ms"))
        .unwrap_or_else(|| "-".into())
}

fn print_json<T: serde::Serialize>(out: &mut impl Write, v: &T) -> Result<(), ClientError> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    writeln!(out, "{text}")?;
    Ok(())
}

/// The first line of a channel: its state, and the last error only while it describes that
/// state (the engine clears it on connecting), with its time.
fn headline(s: &connect_engine::ChannelStatus) -> String {
    let error = match (&s.last_error, &s.last_error_at) {
        (Some(e), Some(at)) => format!(" ({e}; since {at})"),
        (Some(e), None) => format!(" ({e})"),
        (None, _) => String::new(),
    };
    format!(
        "{}  {:?}{error}  transport={}",
        s.key,
        s.state,
        opt(s.transport.map(|t| format!("{t:?}").to_lowercase())),
    )
}

fn print_status(out: &mut impl Write, status: &[connect_engine::ChannelStatus]) -> io::Result<()> {
    for s in status {
        let c = &s.counters;
        writeln!(out, "{}", headline(s))?;
        writeln!(
            out,
            "  received={} delivered={} failed={} retried={} dead_lettered={} in_flight={}",
            c.received, c.delivered, c.failed, c.retried, c.dead_lettered, s.in_flight
        )?;
        writeln!(
            out,
            "  latency p50={} p90={} p99={} over {} deliveries (last 10 min)",
            ms(s.latency.p50_ms),
            ms(s.latency.p90_ms),
            ms(s.latency.p99_ms),
            s.latency.samples
        )?;
        match &s.queue {
            Some(q) => writeln!(
                out,
                "  cloud queue: pending={} in_flight={} delayed={} dead_letters={} (at {})",
                q.pending, q.in_flight, q.delayed, q.dead_letters, q.at
            )?,
            None => writeln!(out, "  cloud queue: not read yet")?,
        }
    }
    Ok(())
}

async fn client_cmd(
    client: &control::Client,
    cmd: Cmd,
    out: &mut impl Write,
) -> Result<ExitCode, ClientError> {
    use base64::Engine as _;
    match cmd {
        Cmd::StoreToken { .. }
        | Cmd::Login(_)
        | Cmd::Logout(_)
        | Cmd::Whoami(_)
        | Cmd::Channels(_)
        | Cmd::DeadLetters(_)
        | Cmd::Listen(_) => Ok(ExitCode::from(EXIT_CONFIG)),
        Cmd::Status { json } => {
            let status = client.status().await?;
            if json {
                print_json(out, &status)?;
            } else {
                print_status(out, &status)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Events { channel, json } => {
            let all = client.events(channel.as_deref()).await?;
            if json {
                print_json(out, &all)?;
                return Ok(ExitCode::SUCCESS);
            }
            for ch in all {
                writeln!(out, "{} ({} events)", ch.key, ch.events.len())?;
                for e in ch.events {
                    writeln!(
                        out,
                        "  {}  {}  {:<10} {} {} -> {} {:?} {:.1} ms{}",
                        e.received_at,
                        e.message_id,
                        e.webhook_id,
                        opt(e.method),
                        opt(e.path),
                        opt(e.response_status),
                        e.outcome,
                        e.duration_ms,
                        e.replay_of
                            .map(|r| format!(" (replay of {r})"))
                            .unwrap_or_default()
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Replay {
            message_id,
            target,
            headers,
            body_file,
            json,
        } => {
            let headers = if headers.is_empty() {
                None
            } else {
                let original = client.event(&message_id).await?;
                let mut list = original.request.headers;
                for h in &headers {
                    let (name, value) = h
                        .split_once(':')
                        .ok_or_else(|| format!("--header {h:?}: expected `Name: value`"))?;
                    let name = name.trim();
                    list.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
                    let value = value.trim();
                    if !value.is_empty() {
                        list.push((name.to_owned(), value.to_owned()));
                    }
                }
                Some(list)
            };
            let body_base64 = match body_file {
                None => None,
                Some(p) => Some(
                    base64::engine::general_purpose::STANDARD
                        .encode(std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))?),
                ),
            };
            let d = client
                .replay(&connect_engine::ReplayRequest {
                    key: String::new(),
                    message_id,
                    target_url: target,
                    headers,
                    body_base64,
                })
                .await?;
            let code = if d.summary.outcome == connect_engine::api::Outcome::Delivered {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            };
            // The replay happened: its exit code stands even when nobody reads the report.
            match print_replay(out, &d, json) {
                Ok(()) | Err(ClientError::StdoutClosed) => Ok(code),
                Err(e) => Err(e),
            }
        }
    }
}

fn print_replay(
    out: &mut impl Write,
    d: &connect_engine::EventDetail,
    json: bool,
) -> Result<(), ClientError> {
    if json {
        return print_json(out, d);
    }
    let last = d.attempts.last();
    writeln!(
        out,
        "{} (replay of {}) -> {}: {} in {:.1} ms, {:?}",
        d.summary.message_id,
        opt(d.summary.replay_of.as_deref()),
        opt(d.summary.target_url.as_deref()),
        match (
            last.and_then(|a| a.status),
            last.and_then(|a| a.error.clone())
        ) {
            (Some(s), _) => format!("HTTP {s}"),
            (None, Some(e)) => e,
            (None, None) => "no answer".into(),
        },
        d.summary.duration_ms,
        d.summary.outcome
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use connect_engine::{ChannelStatus, LinkState};

    #[test]
    fn the_headline_gives_the_error_with_its_time_and_nothing_without_one() {
        let connected = ChannelStatus::idle("demo", "demo", LinkState::Connected);
        assert_eq!(headline(&connected), "demo  Connected  transport=-");
        let failing = ChannelStatus {
            last_error: Some("connection refused".into()),
            last_error_at: Some("2026-12-06T04:01:09.512Z".into()),
            ..ChannelStatus::idle("demo", "demo", LinkState::Connecting)
        };
        assert_eq!(
            headline(&failing),
            "demo  Connecting (connection refused; since 2026-12-06T04:01:09.512Z)  transport=-"
        );
    }

    #[test]
    fn only_a_broken_pipe_counts_as_a_closed_stdout() {
        let closed = ClientError::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert!(matches!(closed, ClientError::StdoutClosed));
        let full = ClientError::from(io::Error::from(io::ErrorKind::StorageFull));
        assert!(matches!(full, ClientError::Stdout(_)));
    }
}
