//! The reconnect ladder: one [`channel_loop`] per channel waits while paused, runs one
//! transport session at a time, and decides from how it ended (close codes and SSE errors from
//! `connect_protocol`) whether to reconnect, back off, fall back (`auto`), reload the token or
//! stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_protocol::close;
use tokio_util::sync::CancellationToken;

use crate::api::{ChannelState, Transport};
use crate::channel::{ChannelCtx, Link};
use crate::config::TransportChoice;
use crate::transport::{poll::run_poll, sse::run_sse, ws::run_ws};

/// Connection failures before `auto` falls back to the next transport.
const AUTO_FALLBACK_AFTER: u32 = 3;
/// How long `auto` stays on a fallback transport before trying WebSocket again.
const AUTO_RETRY_BETTER: Duration = Duration::from_secs(600);
/// How often `token_ref` is re-read after a 4005, waiting for the new token.
const TOKEN_WATCH: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub(crate) enum ConnError {
    Auth(String),
    /// Long-poll against a protocol v1 server, whose polls cannot be settled (§11.1); found
    /// from its status answer, before polling.
    V1LongPoll,
    Other(String),
}

#[derive(Debug)]
pub(crate) enum End {
    /// Intake stopped (shutdown, pause, disconnect, removal).
    Draining,
    /// The server closed (WebSocket close code, or SSE terminal error mapped to one).
    Closed(Option<u16>, String),
    HeartbeatTimeout,
}

pub(crate) struct Session {
    pub(crate) connected: bool,
    pub(crate) result: Result<End, ConnError>,
}

pub(crate) fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.8..1.2))
}

/// Waits while the channel is paused or disconnected; false when the channel is ending.
pub(crate) async fn wait_until_running(ctx: &ChannelCtx) -> bool {
    let mut enabled = ctx.enabled.subscribe();
    let mut paused = ctx.paused.clone();
    loop {
        if ctx.tokens.intake.is_cancelled() {
            return false;
        }
        if ctx.running() {
            return true;
        }
        let state = if *enabled.borrow_and_update() {
            ChannelState::Paused
        } else {
            ChannelState::Disconnected
        };
        paused.borrow_and_update();
        ctx.live.lock().status.idle(state);
        tokio::select! {
            _ = ctx.tokens.intake.cancelled() => return false,
            _ = enabled.changed() => {}
            _ = paused.changed() => {}
        }
    }
}

/// A token cancelled when the channel ends or is paused / disconnected.
pub(crate) fn session_stop(ctx: &ChannelCtx) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = ctx.tokens.intake.child_token();
    let mut enabled = ctx.enabled.subscribe();
    let mut paused = ctx.paused.clone();
    let s = stop.clone();
    let watcher = tokio::spawn(async move {
        loop {
            if !*enabled.borrow_and_update() || *paused.borrow_and_update() {
                s.cancel();
                return;
            }
            tokio::select! {
                _ = s.cancelled() => return,
                r = enabled.changed() => if r.is_err() { return },
                r = paused.changed() => if r.is_err() { return },
            }
        }
    });
    (stop, watcher)
}

pub(crate) async fn channel_loop(ctx: Arc<ChannelCtx>) {
    let backoff = ctx.cfg.backoff.clone();
    let mut delay = backoff.initial;
    let auto = ctx.cfg.protocol == TransportChoice::Auto;
    let ladder = [Transport::Websocket, Transport::Sse, Transport::LongPoll];
    let mut rung = 0usize;
    let mut rung_failures = 0u32;
    let mut fell_back_at: Option<Instant> = None;
    let mut server_v1 = false;
    let mut failures = 0u32;
    loop {
        if !wait_until_running(&ctx).await {
            return;
        }
        if auto && rung > 0 && fell_back_at.is_some_and(|t| t.elapsed() >= AUTO_RETRY_BETTER) {
            rung = 0;
            rung_failures = 0;
            fell_back_at = None;
        }
        let transport = match ctx.cfg.protocol {
            TransportChoice::Auto => ladder[rung],
            TransportChoice::Only(t) => t,
        };
        {
            let mut l = ctx.live.lock();
            l.status.connection_attempts += 1;
            l.status.transport = Some(transport);
            if l.status.state != ChannelState::AuthFailed {
                l.status.state = if failures >= 3 || rung > 0 {
                    ChannelState::Degraded
                } else {
                    ChannelState::Connecting
                };
            }
        }
        let (stop, watcher) = session_stop(&ctx);
        let session = match transport {
            Transport::Websocket => run_ws(&ctx, &stop).await,
            Transport::Sse => run_sse(&ctx, &stop).await,
            Transport::LongPoll => run_poll(&ctx, &stop).await,
        };
        watcher.abort();
        if session.connected {
            delay = backoff.initial;
            failures = 0;
            rung_failures = 0;
            // `auto` never falls back to long-poll against a v1 server (§11.1).
            server_v1 = ctx.live.lock().status.server_protocol_version.is_none();
        }
        ctx.live.lock().status.connection_id = None;
        let mut wait = jitter(delay);
        match session.result {
            Ok(End::Draining) => {
                // Paused or disconnected: wait at the top of the loop. Ending: return there.
                delay = backoff.initial;
                continue;
            }
            Ok(End::Closed(Some(close::TOKEN_REVOKED), reason)) => {
                if reload_token(&ctx) {
                    tracing::warn!(channel = %ctx.cfg.channel, "token revoked; reloaded it from token_ref");
                    wait = jitter(backoff.initial);
                } else if ctx.cfg.token_ref.is_some() {
                    // Never reconnect with the revoked token; switch over once its source
                    // holds another one (a rotation typed in after the close, CONFIG.md §8.2).
                    tracing::error!(channel = %ctx.cfg.channel, "token revoked ({}): waiting for a new token in token_ref", close::TOKEN_REVOKED);
                    ctx.set_state(
                        ChannelState::AuthFailed,
                        Some(format!(
                            "token revoked ({} {reason}): waiting for a new token in token_ref",
                            close::TOKEN_REVOKED
                        )),
                    );
                    loop {
                        tokio::select! {
                            _ = ctx.tokens.intake.cancelled() => return,
                            _ = tokio::time::sleep(TOKEN_WATCH) => {}
                        }
                        if reload_token(&ctx) {
                            break;
                        }
                    }
                    tracing::info!(channel = %ctx.cfg.channel, "token_ref holds a new token; reconnecting");
                    wait = jitter(backoff.initial);
                } else {
                    tracing::error!(channel = %ctx.cfg.channel, "token revoked ({}): stopping this channel", close::TOKEN_REVOKED);
                    ctx.set_state(
                        ChannelState::AuthFailed,
                        Some(format!(
                            "token revoked ({} {reason}): the channel is stopped until it is given the new token",
                            close::TOKEN_REVOKED
                        )),
                    );
                    ctx.tokens.intake.cancelled().await;
                    return;
                }
            }
            Ok(End::Closed(Some(close::CHANNEL_REMOVED), reason)) => {
                tracing::error!(channel = %ctx.cfg.channel, "channel removed ({}): stopping this channel", close::CHANNEL_REMOVED);
                ctx.set_state(
                    ChannelState::Stopped,
                    Some(format!("channel removed: {reason}")),
                );
                ctx.tokens.intake.cancelled().await;
                return;
            }
            Ok(End::Closed(code, reason)) => {
                tracing::info!(channel = %ctx.cfg.channel, ?code, %reason, "connection closed; reconnecting");
                ctx.set_state(
                    ChannelState::Connecting,
                    Some(format!("closed {code:?}: {reason}")),
                );
                if code == Some(close::GOING_AWAY) {
                    wait = jitter(backoff.initial.min(Duration::from_secs(2)));
                }
            }
            Ok(End::HeartbeatTimeout) => {
                tracing::warn!(channel = %ctx.cfg.channel, "nothing from the cloud for heartbeat_timeout; reconnecting");
                ctx.set_state(ChannelState::Connecting, Some("heartbeat timeout".into()));
            }
            Err(ConnError::Auth(e)) if reload_token(&ctx) => {
                // Rotated while the link was down (no 4005 arrived): the new token is in the source.
                tracing::warn!(channel = %ctx.cfg.channel, error = %e, "token rejected; reloaded it from token_ref");
                ctx.set_state(
                    ChannelState::Connecting,
                    Some(format!("{e}; reloaded the token from token_ref")),
                );
                wait = jitter(backoff.initial);
            }
            Err(ConnError::Auth(e)) => {
                tracing::error!(channel = %ctx.cfg.channel, error = %e, "authentication failed; retrying slowly");
                ctx.set_state(ChannelState::AuthFailed, Some(e));
                wait = jitter(backoff.max);
            }
            Err(ConnError::V1LongPoll) => {
                server_v1 = true;
                failures += 1;
                let e = "long-poll refused: the cloud speaks protocol v1 (its /connect/status \
                         names no protocol version), whose long-poll cannot settle messages \
                         (ACKs answer 404); nothing was polled; use websocket, sse or auto";
                ctx.set_state(ChannelState::Degraded, Some(e.into()));
                if auto {
                    tracing::warn!(channel = %ctx.cfg.channel, "protocol v1 cloud: long-poll skipped, back to WebSocket");
                    rung = 0;
                    rung_failures = 0;
                    fell_back_at = None;
                } else {
                    tracing::error!(channel = %ctx.cfg.channel, "{e}");
                    wait = jitter(backoff.max);
                }
            }
            Err(ConnError::Other(e)) => {
                tracing::warn!(channel = %ctx.cfg.channel, error = %e, "connection failed");
                failures += 1;
                rung_failures += 1;
                ctx.set_state(
                    if failures >= 3 {
                        ChannelState::Degraded
                    } else {
                        ChannelState::Connecting
                    },
                    Some(e),
                );
                if auto && rung_failures >= AUTO_FALLBACK_AFTER {
                    let max_rung = if server_v1 { 1 } else { 2 };
                    if rung < max_rung {
                        rung += 1;
                        rung_failures = 0;
                        fell_back_at = Some(Instant::now());
                        tracing::warn!(channel = %ctx.cfg.channel, transport = ?ladder[rung], "falling back");
                    }
                }
            }
        }
        if !session.connected {
            delay = delay.mul_f64(backoff.multiplier).min(backoff.max);
        }
        tokio::select! {
            _ = ctx.tokens.intake.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Re-reads `token_ref`; true when it now gives another token than the one in use (which is
/// then used). False without a `token_ref`, when it is unchanged or cannot be read.
pub(crate) fn reload_token(ctx: &ChannelCtx) -> bool {
    let Some(r) = ctx.cfg.token_ref.as_deref() else {
        return false;
    };
    match crate::config::resolve_token_ref(r, &ctx.env, &ctx.cfg.cloud_url, &ctx.cfg.channel) {
        Ok(t) if t != ctx.token() => {
            *ctx.token.lock() = t;
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(channel = %ctx.cfg.channel, error = %e, "re-reading token_ref failed");
            false
        }
    }
}

pub(crate) fn connected(ctx: &ChannelCtx, link: &Link, version: Option<u32>) {
    {
        let mut l = ctx.live.lock();
        l.status.connected();
        l.status.connection_id = Some(link.connection_id.clone());
        l.status.server_protocol_version = version.or(link.v2.then_some(2));
    }
    ctx.queue_wake.notify_one();
}
