//! The hub: this replica's view of channels and live connections, and the dispatcher that
//! hands leased messages to connections.
//!
//! The buffer owns messages and leases; the hub owns sockets. For every channel one
//! dispatcher task waits on the buffer's notifier, picks the eligible connection with the
//! fewest leases (ties: the one served least recently, §6.2 rule 3) and asks the buffer to
//! lease messages on its behalf. Connections receive batches over an unbounded channel whose
//! length is bounded by `max_in_flight` (a batch is only sent within the lease budget).
//!
//! Layout:
//! - this file: [`Hub`], the registry of channels and connections; settling (ACK / NACK /
//!   extend), late and remote ACKs, token enforcement, housekeeping.
//! - [`channel`]: [`channel::ChannelRt`], one channel's settings, token state and connections.
//! - [`conn`]: [`conn::Conn`], one connection, with the `in_flight` / `poll_want` accounting
//!   (poll_begin / poll_end / cancel_poll) in one place.
//! - `dispatch`: the per-channel dispatcher task.
//! - `agree`: replica agreement (read-through on a refused token, published changes).

mod agree;
pub mod channel;
pub mod conn;
mod dispatch;
mod grace;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use connect_buffer::{AckOutcome, Buffer, ChannelRecord, ChannelSettings, NackOutcome};
use connect_protocol::admin::TokenGeneration;
use connect_protocol::ids::{Protocol, token_digest};
use connect_protocol::time::Timestamp;
use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::hub::channel::{ChannelRt, ct_eq};
use crate::hub::conn::{CloseReason, Conn, NewConn};
use crate::hub::grace::GraceEnds;
use crate::metrics::Metrics;

/// A connection that ended recently, kept for late ACKs (§5.4 step 4).
struct Closed {
    channel: String,
    at: Instant,
}

pub enum AddConn {
    Added(Arc<Conn>),
    Full,
    NoChannel,
}

/// A poll connection without a request, a lease or any activity for this long is ended.
const POLL_IDLE: Duration = Duration::from_secs(60);

pub struct Hub {
    buffer: Arc<dyn Buffer>,
    /// Keyed by the runtime's own name (one allocation of the name per channel).
    channels: RwLock<HashMap<Arc<str>, Arc<ChannelRt>>>,
    /// The settings last handed to a channel: channels with equal settings (nearly all —
    /// defaults, or a quota's) share one `Arc` (issue #14, memory per idle channel).
    last_settings: Mutex<Option<Arc<ChannelSettings>>>,
    conns: RwLock<HashMap<String, Arc<Conn>>>,
    /// The long-poll ones among `conns`: housekeeping looks for idle and server-closed poll
    /// connections among these only, not among every WebSocket and SSE connection.
    polls: RwLock<HashMap<String, Arc<Conn>>>,
    /// When channels' previous tokens stop being accepted ([`grace`]).
    grace_ends: GraceEnds,
    /// Connections whose token housekeeping checked: tests check that an idle hub checks none.
    token_checks: AtomicU64,
    closed: Mutex<HashMap<String, Closed>>,
    metrics: Arc<Metrics>,
    tracker: TaskTracker,
    /// Stops dispatching (shutdown).
    dispatch_stop: CancellationToken,
    /// Searches of every channel for a token ([`Hub::token_valid_anywhere`], O(channels)):
    /// tests check that a valid connector's requests make none.
    token_scans: AtomicU64,
}

impl Hub {
    pub fn new(buffer: Arc<dyn Buffer>, metrics: Arc<Metrics>, tracker: TaskTracker) -> Arc<Self> {
        Arc::new(Self {
            buffer,
            channels: RwLock::new(HashMap::new()),
            last_settings: Mutex::new(None),
            conns: RwLock::new(HashMap::new()),
            polls: RwLock::new(HashMap::new()),
            grace_ends: GraceEnds::default(),
            token_checks: AtomicU64::new(0),
            closed: Mutex::new(HashMap::new()),
            metrics,
            tracker,
            dispatch_stop: CancellationToken::new(),
            token_scans: AtomicU64::new(0),
        })
    }

    pub fn buffer(&self) -> &Arc<dyn Buffer> {
        &self.buffer
    }

    /// Cancelled when dispatching stops (shutdown).
    pub fn stop_token(&self) -> &CancellationToken {
        &self.dispatch_stop
    }

    pub fn channel(&self, name: &str) -> Option<Arc<ChannelRt>> {
        self.channels.read().get(name).cloned()
    }

    pub fn channel_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.channels.read().keys().map(|k| k.to_string()).collect();
        v.sort();
        v
    }

    pub fn connection(&self, id: &str) -> Option<Arc<Conn>> {
        self.conns.read().get(id).cloned()
    }

    pub fn connections_count(&self) -> usize {
        self.conns.read().len()
    }

    /// Creates or updates the runtime of a channel from its buffer record and closes
    /// connections whose token is no longer valid. Its dispatcher, and the buffer's notifier
    /// it waits on, start with its first connection: a channel nobody connects to costs no
    /// task, no wake-ups and no notifier.
    pub fn upsert_channel(&self, rec: &ChannelRecord) {
        let existing = self.channel(&rec.name);
        let settings = self.shared_settings(&rec.settings);
        let rt = match existing {
            Some(rt) => {
                rt.set_settings(&settings);
                rt.set_token(&rec.token);
                rt
            }
            None => {
                // The buffer's own copy of the name when it keeps one (issue #14).
                let name = self
                    .buffer
                    .shared_name(&rec.name)
                    .unwrap_or_else(|| Arc::from(rec.name.as_str()));
                let rt = Arc::new(ChannelRt::new(name, settings, rec.token.clone()));
                self.channels
                    .write()
                    .insert(rt.shared_name().clone(), rt.clone());
                rt
            }
        };
        self.schedule_grace_end(&rt);
        self.enforce_tokens(&rt);
        rt.wake();
    }

    /// Remembers when the channel's previous token stops being accepted, so housekeeping
    /// closes the connections still using it then.
    fn schedule_grace_end(&self, rt: &ChannelRt) {
        if let Some(at) = rt.grace_end() {
            self.grace_ends.schedule(at, rt.shared_name());
        }
    }

    /// How many connections' tokens housekeeping has checked since the hub started.
    pub fn token_checks(&self) -> u64 {
        self.token_checks.load(Ordering::Relaxed)
    }

    /// `s` as an `Arc` shared with the previous channel's settings when they are equal.
    fn shared_settings(&self, s: &ChannelSettings) -> Arc<ChannelSettings> {
        let mut last = self.last_settings.lock();
        match &*last {
            Some(l) if **l == *s => l.clone(),
            _ => {
                let new = Arc::new(s.clone());
                *last = Some(new.clone());
                new
            }
        }
    }

    /// Removes a channel's runtime (channel deleted): closes its connections with 4006 and
    /// drops its metric series.
    pub fn remove_channel(&self, name: &str) {
        self.metrics.forget_channel(name);
        let rt = self.channels.write().remove(name);
        if let Some(rt) = rt {
            if let Some(stop) = rt.stop_token() {
                stop.cancel();
            }
            for c in rt.connections() {
                c.close(CloseReason::ChannelRemoved);
            }
        }
    }

    /// Closes every connection whose token is neither current nor a previous one in grace.
    pub fn enforce_tokens(&self, rt: &ChannelRt) {
        let now = Timestamp::now();
        for c in rt.connections() {
            if rt.token_matches(&c.token_digest(), now).is_none() {
                c.close(CloseReason::TokenRevoked);
            }
        }
    }

    /// Validates a presented channel token; `None` for a wrong token or an unknown channel,
    /// which cost the same (a dummy comparison for unknown channels).
    pub fn authenticate(
        &self,
        channel: &str,
        token: &str,
    ) -> Option<(Arc<ChannelRt>, String, TokenGeneration)> {
        let digest = token_digest(token);
        match self.channel(channel) {
            Some(rt) => {
                let g = rt.token_matches(&digest, Timestamp::now())?;
                Some((rt, digest, g))
            }
            None => {
                let _ = ct_eq(
                    &digest,
                    "0000000000000000000000000000000000000000000000000000000000000000",
                );
                None
            }
        }
    }

    /// Is the token valid for at least one channel? (§5.4 step 2) Visits every channel, in
    /// constant time per channel: for a request that names nothing cheaper to check against.
    pub fn token_valid_anywhere(&self, token: &str) -> bool {
        self.token_scans.fetch_add(1, Ordering::Relaxed);
        let digest = token_digest(token);
        let now = Timestamp::now();
        let chans: Vec<Arc<ChannelRt>> = self.channels.read().values().cloned().collect();
        chans.iter().fold(false, |acc, rt| {
            rt.token_matches(&digest, now).is_some() | acc
        })
    }

    /// How many times [`Hub::token_valid_anywhere`] searched every channel.
    pub fn token_scans(&self) -> u64 {
        self.token_scans.load(Ordering::Relaxed)
    }

    /// Registers a connection, enforcing `max_connections` through the buffer's registry.
    pub async fn add_conn(&self, p: NewConn) -> Result<AddConn, connect_buffer::BufferError> {
        let Some(rt) = self.channel(&p.channel) else {
            return Ok(AddConn::NoChannel);
        };
        let id = connect_protocol::ids::new_connection_id(p.protocol);
        if !self
            .buffer
            .add_connection(&p.channel, &id, rt.max_connections())
            .await?
        {
            self.metrics.connection_rejected("max_connections");
            return Ok(AddConn::Full);
        }
        let (channel, protocol) = (p.channel.clone(), p.protocol);
        let conn = Arc::new(Conn::new(id.clone(), p));
        rt.add_connection(
            conn.clone(),
            || self.buffer.notifier(rt.name()),
            || self.dispatch_stop.child_token(),
        );
        if protocol == Protocol::LongPoll {
            self.polls.write().insert(id.clone(), conn.clone());
        }
        self.conns.write().insert(id, conn.clone());
        self.metrics.connection_opened(&channel, protocol);
        if rt.claim_dispatcher() {
            self.tracker.spawn(dispatch::run(
                self.buffer.clone(),
                self.metrics.clone(),
                rt.clone(),
            ));
        }
        rt.wake();
        Ok(AddConn::Added(conn))
    }

    /// Ends a connection: deregisters it at once and returns its leases to the head.
    pub async fn remove_conn(&self, conn: &Arc<Conn>) {
        if !conn.deregister() {
            return;
        }
        let (id, channel) = (conn.id(), conn.channel());
        self.conns.write().remove(id);
        self.polls.write().remove(id);
        if let Some(rt) = self.channel(channel) {
            rt.remove_connection(id);
        }
        self.closed.lock().insert(
            id.to_owned(),
            Closed {
                channel: channel.to_owned(),
                at: Instant::now(),
            },
        );
        self.metrics.connection_closed(channel, conn.protocol());
        match self.buffer.release(channel, id).await {
            Ok(ids) if !ids.is_empty() => {
                self.metrics
                    .redelivery(channel, "disconnect", ids.len() as u64)
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(connection = %id, error = %e, "releasing leases failed"),
        }
        if let Err(e) = self.buffer.remove_connection(channel, id).await {
            tracing::warn!(connection = %id, error = %e, "deregistering connection failed");
        }
    }

    /// How long a closed connection of `channel` may still ACK: max(ack timeout, 60 s) (§5.4).
    fn late_ack_window(&self, channel: &str) -> Duration {
        let ack_timeout = self
            .channel(channel)
            .map_or(30, |rt| rt.ack_timeout_seconds());
        Duration::from_secs(ack_timeout.max(60))
    }

    /// The channel of a live connection, or of one closed within its late-ACK window.
    pub fn connection_channel(&self, id: &str) -> Option<(String, Option<Arc<Conn>>)> {
        if let Some(c) = self.connection(id) {
            return Some((c.channel().to_owned(), Some(c)));
        }
        let closed = self.closed.lock();
        closed
            .get(id)
            .filter(|c| c.at.elapsed() <= self.late_ack_window(&c.channel))
            .map(|c| (c.channel.clone(), None))
    }

    pub async fn ack(
        &self,
        channel: &str,
        message_id: &str,
        conn_id: &str,
        live: Option<&Arc<Conn>>,
    ) -> Result<AckOutcome, connect_buffer::BufferError> {
        let out = self.buffer.ack(channel, message_id, conn_id).await?;
        if let AckOutcome::Settled { held_lease } = out {
            self.metrics.acked(channel);
            if let Some(c) = live {
                c.record_ack(held_lease);
            }
            if let Some(rt) = self.channel(channel) {
                rt.wake();
            }
        }
        Ok(out)
    }

    /// The channel of a connection that lives on another replica sharing this buffer
    /// (only channels the presented token is valid for are considered).
    pub async fn remote_connection_channel(
        &self,
        conn_id: &str,
        token: &str,
    ) -> Result<Option<String>, connect_buffer::BufferError> {
        if !self.buffer.is_shared() {
            return Ok(None);
        }
        for name in self.channels_for_token(token) {
            if self.buffer.has_connection(&name, conn_id).await? {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    /// A late ACK from a connection that ended on another replica: the shared buffer knows
    /// every former holder of the message.
    pub async fn late_remote_ack(
        &self,
        conn_id: &str,
        token: &str,
        message_id: &str,
    ) -> Result<bool, connect_buffer::BufferError> {
        if !self.buffer.is_shared() {
            return Ok(false);
        }
        for name in self.channels_for_token(token) {
            if matches!(
                self.ack(&name, message_id, conn_id, None).await?,
                AckOutcome::Settled { .. }
            ) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn channels_for_token(&self, token: &str) -> Vec<String> {
        let digest = token_digest(token);
        let now = Timestamp::now();
        let mut names: Vec<String> = self
            .channels
            .read()
            .values()
            .filter(|rt| rt.token_matches(&digest, now).is_some())
            .map(|rt| rt.name().to_owned())
            .collect();
        names.sort();
        names
    }

    /// NACK for a connection held by another replica; its in-flight count there is
    /// corrected by that replica's [`Hub::sync_shared`].
    pub async fn nack_remote(
        &self,
        channel: &str,
        conn_id: &str,
        message_id: &str,
        retry: bool,
        error: Option<String>,
    ) -> Result<NackOutcome, connect_buffer::BufferError> {
        let out = self
            .buffer
            .nack(channel, message_id, conn_id, retry, error)
            .await?;
        if !matches!(out, NackOutcome::NotHeld) {
            self.metrics.nacked(channel, retry);
            if matches!(out, NackOutcome::Delayed { .. }) {
                self.metrics.redelivery(channel, "nack", 1);
            }
        }
        Ok(out)
    }

    /// With a shared buffer, other replicas change state this replica caches: token
    /// rotations and channel settings. The periodic safety net (housekeeping, every second);
    /// changes normally arrive at once through [`Hub::refresh_channel`] and the read-through
    /// of [`Hub::authenticate_fresh`] (`agree`).
    pub async fn sync_shared(&self) {
        if !self.buffer.is_shared() {
            return;
        }
        let chans: Vec<Arc<ChannelRt>> = self.channels.read().values().cloned().collect();
        for rt in chans {
            match self.buffer.channel(rt.name()).await {
                Ok(Some(rec)) => {
                    if rt.set_token(&rec.token) {
                        self.schedule_grace_end(&rt);
                        self.enforce_tokens(&rt);
                    }
                    rt.set_settings(&self.shared_settings(&rec.settings));
                    // A lost `chan` message of a key rotation is caught here too.
                    self.recheck_owner_key(&rt).await;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(channel = %rt.name(), error = %e, "reading shared channel state failed");
                    continue;
                }
            }
        }
    }

    pub async fn nack(
        &self,
        conn: &Arc<Conn>,
        message_id: &str,
        retry: bool,
        error: Option<String>,
    ) -> Result<NackOutcome, connect_buffer::BufferError> {
        let out = self
            .buffer
            .nack(conn.channel(), message_id, conn.id(), retry, error)
            .await?;
        if !matches!(out, NackOutcome::NotHeld) {
            conn.record_nack();
            self.metrics.nacked(conn.channel(), retry);
            // Dead letters are counted by the buffer (persisted) and rendered at scrape time.
            if matches!(out, NackOutcome::Delayed { .. }) {
                self.metrics.redelivery(conn.channel(), "nack", 1);
            }
            if let Some(rt) = self.channel(conn.channel()) {
                rt.wake();
            }
        }
        Ok(out)
    }

    pub async fn extend(
        &self,
        conn: &Arc<Conn>,
        message_id: &str,
    ) -> Result<bool, connect_buffer::BufferError> {
        self.buffer
            .extend(conn.channel(), message_id, conn.id())
            .await
    }

    /// A lease ended by ack timeout: the holder's in-flight count drops.
    pub fn lease_lost(&self, conn_id: &str) {
        if let Some(c) = self.connection(conn_id) {
            c.lease_ended();
            if let Some(rt) = self.channel(c.channel()) {
                rt.wake();
            }
        }
    }

    /// Closes a connection of this replica on behalf of an admin request made on another
    /// replica sharing the buffer (§10.3 "Admin disconnects … are published on P:ctl").
    pub async fn apply_close_request(&self, channel: &str, conn_id: &str) {
        let Some(conn) = self.connection(conn_id).filter(|c| c.channel() == channel) else {
            return;
        };
        self.disconnect(&conn).await;
    }

    /// Closes a connection on an admin request: WebSocket 4004, SSE `disconnected_by_admin`;
    /// a poll connection has no socket to notice, so it ends here and its leases return.
    pub async fn disconnect(&self, conn: &Arc<Conn>) {
        conn.close(CloseReason::Admin);
        if conn.protocol() == Protocol::LongPoll {
            conn.cancel_poll();
            self.remove_conn(conn).await;
        }
    }

    /// Closes every connection (shutdown) and stops dispatching.
    pub fn close_all(&self, reason: CloseReason) {
        self.dispatch_stop.cancel();
        for c in self.conns.read().values() {
            c.close(reason);
        }
    }

    /// Periodic housekeeping: token grace ends, idle poll connections, the late-ACK memory.
    /// Its cost follows what is due, not how many connections are open.
    pub async fn housekeeping(&self) {
        self.sync_shared().await;
        for name in self.grace_ends.take_due(Timestamp::now()) {
            if let Some(rt) = self.channel(&name) {
                self.token_checks
                    .fetch_add(rt.connection_count() as u64, Ordering::Relaxed);
                self.enforce_tokens(&rt);
            }
        }
        let idle: Vec<Arc<Conn>> = self
            .polls
            .read()
            .values()
            .filter(|c| c.poll_idle(POLL_IDLE))
            .cloned()
            .collect();
        for c in idle {
            self.remove_conn(&c).await;
        }
        self.closed
            .lock()
            .retain(|_, c| c.at.elapsed() <= self.late_ack_window(&c.channel));
        // Poll connections closed by the server (admin, revocation) have no socket to notice.
        let closing: Vec<Arc<Conn>> = self
            .polls
            .read()
            .values()
            .filter(|c| c.is_closing())
            .cloned()
            .collect();
        for c in closing {
            c.cancel_poll();
            self.remove_conn(&c).await;
        }
    }

    /// Finds the poll connection a request continues (§5.3), if any.
    pub fn find_poll_conn(
        &self,
        channel: &str,
        conn_id: Option<&str>,
        connector_id: Option<&str>,
        affinity: &str,
    ) -> Option<Arc<Conn>> {
        let rt = self.channel(channel)?;
        let conns = rt.connections();
        let live = |c: &&Arc<Conn>| c.protocol() == Protocol::LongPoll && !c.is_closing();
        if let Some(id) = conn_id
            && let Some(c) = conns.iter().filter(live).find(|c| c.id() == id)
        {
            return Some(c.clone());
        }
        if let Some(cid) = connector_id {
            return conns
                .iter()
                .filter(live)
                .find(|c| c.connector_id() == Some(cid))
                .cloned();
        }
        conns
            .iter()
            .filter(live)
            .find(|c| c.connector_id().is_none() && c.poll_affinity() == Some(affinity))
            .cloned()
    }
}
