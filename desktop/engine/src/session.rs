//! The reconnect ladder: one [`channel_loop`] per channel waits while paused, runs one
//! transport session at a time, and decides from how it ended (close codes and SSE errors from
//! `connect_protocol`) whether to reconnect, back off, fall back (`auto`), reload the token or
//! stop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use connect_protocol::close;
use tokio_util::sync::CancellationToken;

use crate::api::{LinkState, Transport};
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
            LinkState::Paused
        } else {
            LinkState::Disconnected
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

/// Which transport the next session uses: the configured one, or under `auto` a rung of
/// WebSocket → SSE → long-poll. `auto` moves down a rung after [`AUTO_FALLBACK_AFTER`]
/// connection failures in a row, never down to long-poll against a v1 cloud (§11.1), and goes
/// back to WebSocket after [`AUTO_RETRY_BETTER`] on a fallback, or at once when long-poll
/// finds a v1 cloud.
#[derive(Debug)]
pub(crate) struct Ladder {
    choice: TransportChoice,
    rung: usize,
    /// Connection failures in a row on this rung.
    rung_failures: u32,
    fell_back_at: Option<Instant>,
    /// The last connection found a protocol v1 cloud.
    server_v1: bool,
}

impl Ladder {
    const RUNGS: [Transport; 3] = [Transport::Websocket, Transport::Sse, Transport::LongPoll];

    pub(crate) fn new(choice: TransportChoice) -> Self {
        Self {
            choice,
            rung: 0,
            rung_failures: 0,
            fell_back_at: None,
            server_v1: false,
        }
    }

    /// The transport of the next session (at `now`).
    pub(crate) fn transport(&mut self, now: Instant) -> Transport {
        match self.choice {
            TransportChoice::Only(t) => t,
            TransportChoice::Auto => {
                if self.rung > 0
                    && self
                        .fell_back_at
                        .is_some_and(|t| now.duration_since(t) >= AUTO_RETRY_BETTER)
                {
                    self.reset();
                }
                Self::RUNGS[self.rung]
            }
        }
    }

    /// On a fallback rung (shown as degraded).
    pub(crate) fn fallen_back(&self) -> bool {
        self.rung > 0
    }

    /// A session connected; `server_v1`: the cloud named no protocol version.
    pub(crate) fn connected(&mut self, server_v1: bool) {
        self.rung_failures = 0;
        self.server_v1 = server_v1;
    }

    /// Long-poll found a v1 cloud before polling: back to WebSocket.
    pub(crate) fn v1_long_poll(&mut self) {
        self.server_v1 = true;
        if self.choice == TransportChoice::Auto {
            self.reset();
        }
    }

    /// A connection failed (at `now`); the transport fallen back to, if this failure moved
    /// `auto` down a rung.
    pub(crate) fn failed(&mut self, now: Instant) -> Option<Transport> {
        self.rung_failures += 1;
        if self.choice != TransportChoice::Auto || self.rung_failures < AUTO_FALLBACK_AFTER {
            return None;
        }
        let lowest = if self.server_v1 { 1 } else { 2 };
        if self.rung >= lowest {
            return None;
        }
        self.rung += 1;
        self.rung_failures = 0;
        self.fell_back_at = Some(now);
        Some(Self::RUNGS[self.rung])
    }

    fn reset(&mut self) {
        self.rung = 0;
        self.rung_failures = 0;
        self.fell_back_at = None;
    }
}

pub(crate) async fn channel_loop(ctx: Arc<ChannelCtx>) {
    let backoff = ctx.cfg.backoff.clone();
    let mut delay = backoff.initial;
    let auto = ctx.cfg.protocol == TransportChoice::Auto;
    let mut ladder = Ladder::new(ctx.cfg.protocol);
    let mut failures = 0u32;
    loop {
        if !wait_until_running(&ctx).await {
            return;
        }
        let transport = ladder.transport(Instant::now());
        {
            let mut l = ctx.live.lock();
            l.status.connection_attempts += 1;
            l.status.transport = Some(transport);
            if l.status.state != LinkState::AuthFailed {
                l.status.state = if failures >= 3 || ladder.fallen_back() {
                    LinkState::Degraded
                } else {
                    LinkState::Connecting
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
            ladder.connected(ctx.live.lock().status.server_protocol_version.is_none());
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
                        LinkState::AuthFailed,
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
                        LinkState::AuthFailed,
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
                    LinkState::Stopped,
                    Some(format!("channel removed: {reason}")),
                );
                ctx.tokens.intake.cancelled().await;
                return;
            }
            Ok(End::Closed(code, reason)) => {
                tracing::info!(channel = %ctx.cfg.channel, ?code, %reason, "connection closed; reconnecting");
                ctx.set_state(
                    LinkState::Connecting,
                    Some(format!("closed {code:?}: {reason}")),
                );
                if code == Some(close::GOING_AWAY) {
                    wait = jitter(backoff.initial.min(Duration::from_secs(2)));
                }
            }
            Ok(End::HeartbeatTimeout) => {
                tracing::warn!(channel = %ctx.cfg.channel, "nothing from the cloud for heartbeat_timeout; reconnecting");
                ctx.set_state(LinkState::Connecting, Some("heartbeat timeout".into()));
            }
            Err(ConnError::Auth(e)) if reload_token(&ctx) => {
                // Rotated while the link was down (no 4005 arrived): the new token is in the source.
                tracing::warn!(channel = %ctx.cfg.channel, error = %e, "token rejected; reloaded it from token_ref");
                ctx.set_state(
                    LinkState::Connecting,
                    Some(format!("{e}; reloaded the token from token_ref")),
                );
                wait = jitter(backoff.initial);
            }
            Err(ConnError::Auth(e)) => {
                tracing::error!(channel = %ctx.cfg.channel, error = %e, "authentication failed; retrying slowly");
                ctx.set_state(LinkState::AuthFailed, Some(e));
                wait = jitter(backoff.max);
            }
            Err(ConnError::V1LongPoll) => {
                ladder.v1_long_poll();
                failures += 1;
                let e = "long-poll refused: the cloud speaks protocol v1 (its /connect/status \
                         names no protocol version), whose long-poll cannot settle messages \
                         (ACKs answer 404); nothing was polled; use websocket, sse or auto";
                ctx.set_state(LinkState::Degraded, Some(e.into()));
                if auto {
                    tracing::warn!(channel = %ctx.cfg.channel, "protocol v1 cloud: long-poll skipped, back to WebSocket");
                } else {
                    tracing::error!(channel = %ctx.cfg.channel, "{e}");
                    wait = jitter(backoff.max);
                }
            }
            Err(ConnError::Other(e)) => {
                tracing::warn!(channel = %ctx.cfg.channel, error = %e, "connection failed");
                failures += 1;
                ctx.set_state(
                    if failures >= 3 {
                        LinkState::Degraded
                    } else {
                        LinkState::Connecting
                    },
                    Some(e),
                );
                if let Some(next) = ladder.failed(Instant::now()) {
                    tracing::warn!(channel = %ctx.cfg.channel, transport = ?next, "falling back");
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{AUTO_RETRY_BETTER, Ladder};
    use crate::api::Transport;
    use crate::config::TransportChoice;

    fn fail(l: &mut Ladder, now: Instant, n: u32) -> Vec<Option<Transport>> {
        (0..n).map(|_| l.failed(now)).collect()
    }

    #[test]
    fn auto_falls_back_after_three_failures_per_rung_down_to_long_poll() {
        let t0 = Instant::now();
        let mut l = Ladder::new(TransportChoice::Auto);
        assert_eq!(l.transport(t0), Transport::Websocket);
        assert_eq!(
            fail(&mut l, t0, 3),
            [None, None, Some(Transport::Sse)],
            "the third failure moves down"
        );
        assert!(l.fallen_back());
        assert_eq!(l.transport(t0), Transport::Sse);
        assert_eq!(fail(&mut l, t0, 3), [None, None, Some(Transport::LongPoll)]);
        assert_eq!(fail(&mut l, t0, 5), [None; 5], "no rung below long-poll");
        assert_eq!(l.transport(t0), Transport::LongPoll);
    }

    #[test]
    fn a_connection_resets_the_failures_of_the_rung() {
        let t0 = Instant::now();
        let mut l = Ladder::new(TransportChoice::Auto);
        fail(&mut l, t0, 2);
        l.connected(false);
        assert_eq!(fail(&mut l, t0, 2), [None, None]);
        assert_eq!(l.transport(t0), Transport::Websocket);
    }

    #[test]
    fn auto_never_falls_back_to_long_poll_against_a_v1_cloud() {
        let t0 = Instant::now();
        let mut l = Ladder::new(TransportChoice::Auto);
        l.connected(true);
        assert_eq!(fail(&mut l, t0, 3), [None, None, Some(Transport::Sse)]);
        assert_eq!(fail(&mut l, t0, 6), [None; 6]);
        assert_eq!(l.transport(t0), Transport::Sse);
    }

    #[test]
    fn long_poll_finding_a_v1_cloud_goes_back_to_websocket() {
        let t0 = Instant::now();
        let mut l = Ladder::new(TransportChoice::Auto);
        fail(&mut l, t0, 6);
        assert_eq!(l.transport(t0), Transport::LongPoll);
        l.v1_long_poll();
        assert_eq!(l.transport(t0), Transport::Websocket);
        assert!(!l.fallen_back());
        assert_eq!(
            fail(&mut l, t0, 6).into_iter().flatten().last(),
            Some(Transport::Sse)
        );
    }

    #[test]
    fn auto_tries_websocket_again_after_a_while_on_a_fallback() {
        let t0 = Instant::now();
        let mut l = Ladder::new(TransportChoice::Auto);
        fail(&mut l, t0, 3);
        let almost = t0 + AUTO_RETRY_BETTER - Duration::from_secs(1);
        assert_eq!(l.transport(almost), Transport::Sse);
        assert_eq!(l.transport(t0 + AUTO_RETRY_BETTER), Transport::Websocket);
    }

    #[test]
    fn a_configured_transport_is_kept_whatever_happens() {
        let t0 = Instant::now();
        let mut l = Ladder::new(TransportChoice::Only(Transport::Sse));
        assert_eq!(fail(&mut l, t0, 10), [None; 10]);
        l.v1_long_poll();
        assert_eq!(l.transport(t0 + AUTO_RETRY_BETTER), Transport::Sse);
        assert!(!l.fallen_back());
    }
}
