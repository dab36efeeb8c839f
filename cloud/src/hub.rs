//! The hub: this replica's view of channels and live connections, and the dispatcher that
//! hands leased messages to connections.
//!
//! The buffer owns messages and leases; the hub owns sockets. For every channel one
//! dispatcher task waits on the buffer's notifier, picks the eligible connection with the
//! fewest leases (ties: the one served least recently, §6.2 rule 3) and asks the buffer to
//! lease messages on its behalf. Connections receive batches over an unbounded channel whose
//! length is bounded by `max_in_flight` (a batch is only sent within the lease budget).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use connect_buffer::{
    AckOutcome, Buffer, ChannelRecord, ChannelSettings, Leased, NackOutcome, TokenState,
};
use connect_protocol::admin::{ConnectionInfo, ConnectionState, TokenGeneration};
use connect_protocol::ids::{Protocol, token_digest};
use connect_protocol::time::Timestamp;
use parking_lot::{Mutex, RwLock};
use subtle::ConstantTimeEq;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;

/// A batch of messages leased to one connection.
pub type Batch = Vec<Leased>;

/// Why the server closes a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    Admin,
    TokenRevoked,
    ChannelRemoved,
    Shutdown,
    HeartbeatTimeout,
}

impl CloseReason {
    pub fn ws_code(self) -> u16 {
        use connect_protocol::close::*;
        match self {
            CloseReason::Admin => DISCONNECTED_BY_ADMIN,
            CloseReason::TokenRevoked => TOKEN_REVOKED,
            CloseReason::ChannelRemoved => CHANNEL_REMOVED,
            CloseReason::Shutdown => GOING_AWAY,
            CloseReason::HeartbeatTimeout => HEARTBEAT_TIMEOUT,
        }
    }

    pub fn sse_error(self) -> &'static str {
        use connect_protocol::frames::sse_error::*;
        match self {
            CloseReason::Admin => DISCONNECTED_BY_ADMIN,
            CloseReason::TokenRevoked => TOKEN_REVOKED,
            CloseReason::ChannelRemoved => CHANNEL_REMOVED,
            CloseReason::Shutdown => SERVER_SHUTDOWN,
            CloseReason::HeartbeatTimeout => INTERNAL,
        }
    }
}

/// One live connection of this replica.
pub struct Conn {
    pub id: String,
    pub channel: String,
    pub protocol: Protocol,
    pub connector_id: Option<String>,
    pub remote_ip: IpAddr,
    pub protocol_version: u32,
    pub connected_at: Timestamp,
    /// Digest of the token that authenticated it (latest request for poll connections).
    pub token_digest: Mutex<String>,
    pub in_flight: AtomicUsize,
    pub received: AtomicU64,
    pub acked: AtomicU64,
    pub nacked: AtomicU64,
    pub last_heartbeat_at: Mutex<Option<Timestamp>>,
    pub last_message_at: Mutex<Option<Timestamp>>,
    last_served: AtomicU64,
    /// Long-poll only: how many more messages the pending request may take (0 = no request).
    pub poll_want: AtomicUsize,
    pub poll_last_active: Mutex<Instant>,
    pub poll_affinity: Option<String>,
    pub tx: mpsc::UnboundedSender<Batch>,
    pub rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Batch>>,
    pub poll_cancel: Mutex<Option<(u64, tokio::sync::oneshot::Sender<()>)>>,
    pub poll_generation: AtomicU64,
    pub closing: CancellationToken,
    pub close_reason: Mutex<Option<CloseReason>>,
    pub deregistered: AtomicBool,
}

impl Conn {
    pub fn close(&self, reason: CloseReason) {
        let mut r = self.close_reason.lock();
        if r.is_none() {
            *r = Some(reason);
        }
        drop(r);
        self.closing.cancel();
    }

    pub fn close_reason(&self) -> Option<CloseReason> {
        *self.close_reason.lock()
    }

    fn capacity(&self, max_in_flight: usize) -> usize {
        if self.closing.is_cancelled() {
            return 0;
        }
        let free = max_in_flight.saturating_sub(self.in_flight.load(Ordering::Acquire));
        match self.protocol {
            Protocol::LongPoll => free.min(self.poll_want.load(Ordering::Acquire)),
            _ => free,
        }
    }

    pub fn info(&self, current_digest: &str) -> ConnectionInfo {
        ConnectionInfo {
            connection_id: self.id.clone(),
            connector_id: self.connector_id.clone(),
            channel: self.channel.clone(),
            protocol: self.protocol,
            connected_at: self.connected_at,
            last_heartbeat_at: *self.last_heartbeat_at.lock(),
            last_message_at: *self.last_message_at.lock(),
            state: if self.closing.is_cancelled() {
                ConnectionState::Disconnecting
            } else {
                ConnectionState::Connected
            },
            in_flight_count: self.in_flight.load(Ordering::Relaxed) as u64,
            messages_received: self.received.load(Ordering::Relaxed),
            messages_acked: self.acked.load(Ordering::Relaxed),
            messages_nacked: self.nacked.load(Ordering::Relaxed),
            remote_ip: Some(self.remote_ip.to_string()),
            protocol_version: self.protocol_version,
            token: if *self.token_digest.lock() == current_digest {
                TokenGeneration::Current
            } else {
                TokenGeneration::Previous
            },
        }
    }

    pub fn touch(&self) {
        *self.last_heartbeat_at.lock() = Some(Timestamp::now());
    }
}

/// Per-channel runtime state on this replica.
pub struct ChannelRt {
    pub name: String,
    pub settings: RwLock<ChannelSettings>,
    pub token: RwLock<TokenState>,
    pub conns: RwLock<Vec<Arc<Conn>>>,
    pub wake: Arc<Notify>,
    serve_tick: AtomicU64,
    stop: CancellationToken,
}

impl ChannelRt {
    /// Which generation `digest` authenticates for, or `None` (§4.3).
    pub fn token_matches(&self, digest: &str, now: Timestamp) -> Option<TokenGeneration> {
        let t = self.token.read();
        let cur = ct_eq(&t.current_digest, digest);
        let prev = match (&t.previous_digest, t.previous_expires_at) {
            (Some(p), Some(exp)) if exp > now => ct_eq(p, digest),
            _ => false,
        };
        if cur {
            Some(TokenGeneration::Current)
        } else if prev {
            Some(TokenGeneration::Previous)
        } else {
            None
        }
    }
}

/// Constant-time comparison of two digests.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// A connection that ended recently, kept for late ACKs (§5.4 step 4).
struct Closed {
    channel: String,
    at: Instant,
}

/// New-connection parameters.
pub struct NewConn {
    pub channel: String,
    pub protocol: Protocol,
    pub connector_id: Option<String>,
    pub remote_ip: IpAddr,
    pub protocol_version: u32,
    pub token_digest: String,
    pub poll_affinity: Option<String>,
}

pub enum AddConn {
    Added(Arc<Conn>),
    Full,
    NoChannel,
}

pub struct Hub {
    buffer: Arc<dyn Buffer>,
    channels: RwLock<HashMap<String, Arc<ChannelRt>>>,
    conns: RwLock<HashMap<String, Arc<Conn>>>,
    closed: Mutex<HashMap<String, Closed>>,
    pub metrics: Arc<Metrics>,
    tracker: TaskTracker,
    /// Stops dispatching (shutdown).
    pub dispatch_stop: CancellationToken,
}

impl Hub {
    pub fn new(buffer: Arc<dyn Buffer>, metrics: Arc<Metrics>, tracker: TaskTracker) -> Arc<Self> {
        Arc::new(Self {
            buffer,
            channels: RwLock::new(HashMap::new()),
            conns: RwLock::new(HashMap::new()),
            closed: Mutex::new(HashMap::new()),
            metrics,
            tracker,
            dispatch_stop: CancellationToken::new(),
        })
    }

    pub fn buffer(&self) -> &Arc<dyn Buffer> {
        &self.buffer
    }

    pub fn channel(&self, name: &str) -> Option<Arc<ChannelRt>> {
        self.channels.read().get(name).cloned()
    }

    pub fn channel_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.channels.read().keys().cloned().collect();
        v.sort();
        v
    }

    pub fn connection(&self, id: &str) -> Option<Arc<Conn>> {
        self.conns.read().get(id).cloned()
    }

    pub fn connections_count(&self) -> usize {
        self.conns.read().len()
    }

    /// Creates or updates the runtime of a channel from its buffer record, starts its
    /// dispatcher, and closes connections whose token is no longer valid.
    pub fn upsert_channel(self: &Arc<Self>, rec: &ChannelRecord) {
        let existing = self.channel(&rec.name);
        let rt = match existing {
            Some(rt) => {
                *rt.settings.write() = rec.settings.clone();
                *rt.token.write() = rec.token.clone();
                rt
            }
            None => {
                let rt = Arc::new(ChannelRt {
                    name: rec.name.clone(),
                    settings: RwLock::new(rec.settings.clone()),
                    token: RwLock::new(rec.token.clone()),
                    conns: RwLock::new(Vec::new()),
                    wake: self.buffer.notifier(&rec.name),
                    serve_tick: AtomicU64::new(0),
                    stop: self.dispatch_stop.child_token(),
                });
                self.channels.write().insert(rec.name.clone(), rt.clone());
                let hub = self.clone();
                let rt2 = rt.clone();
                self.tracker
                    .spawn(async move { hub.dispatch_loop(rt2).await });
                rt
            }
        };
        self.enforce_tokens(&rt);
        rt.wake.notify_one();
    }

    /// Removes a channel's runtime (channel deleted): closes its connections with 4006.
    pub fn remove_channel(&self, name: &str) {
        let rt = self.channels.write().remove(name);
        if let Some(rt) = rt {
            rt.stop.cancel();
            for c in rt.conns.read().iter() {
                c.close(CloseReason::ChannelRemoved);
            }
        }
    }

    /// Closes every connection whose token is neither current nor a previous one in grace.
    pub fn enforce_tokens(&self, rt: &ChannelRt) {
        let now = Timestamp::now();
        for c in rt.conns.read().iter() {
            let d = c.token_digest.lock().clone();
            if rt.token_matches(&d, now).is_none() {
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

    /// Is the token valid for at least one channel? (§5.4 step 2)
    pub fn token_valid_anywhere(&self, token: &str) -> bool {
        let digest = token_digest(token);
        let now = Timestamp::now();
        let chans: Vec<Arc<ChannelRt>> = self.channels.read().values().cloned().collect();
        chans.iter().fold(false, |acc, rt| {
            rt.token_matches(&digest, now).is_some() | acc
        })
    }

    /// Registers a connection, enforcing `max_connections` through the buffer's registry.
    pub async fn add_conn(
        self: &Arc<Self>,
        p: NewConn,
    ) -> Result<AddConn, connect_buffer::BufferError> {
        let Some(rt) = self.channel(&p.channel) else {
            return Ok(AddConn::NoChannel);
        };
        let id = connect_protocol::ids::new_connection_id(p.protocol);
        let max = rt.settings.read().max_connections;
        if !self.buffer.add_connection(&p.channel, &id, max).await? {
            self.metrics.connection_rejected("max_connections");
            return Ok(AddConn::Full);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Conn {
            id: id.clone(),
            channel: p.channel.clone(),
            protocol: p.protocol,
            connector_id: p.connector_id,
            remote_ip: p.remote_ip,
            protocol_version: p.protocol_version,
            connected_at: Timestamp::now(),
            token_digest: Mutex::new(p.token_digest),
            in_flight: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            nacked: AtomicU64::new(0),
            last_heartbeat_at: Mutex::new(None),
            last_message_at: Mutex::new(None),
            last_served: AtomicU64::new(0),
            poll_want: AtomicUsize::new(0),
            poll_last_active: Mutex::new(Instant::now()),
            poll_affinity: p.poll_affinity,
            tx,
            rx: tokio::sync::Mutex::new(rx),
            poll_cancel: Mutex::new(None),
            poll_generation: AtomicU64::new(0),
            closing: CancellationToken::new(),
            close_reason: Mutex::new(None),
            deregistered: AtomicBool::new(false),
        });
        rt.conns.write().push(conn.clone());
        self.conns.write().insert(id, conn.clone());
        self.metrics.connection_opened(&p.channel, p.protocol);
        rt.wake.notify_one();
        Ok(AddConn::Added(conn))
    }

    /// Ends a connection: deregisters it at once and returns its leases to the head.
    pub async fn remove_conn(&self, conn: &Arc<Conn>) {
        if conn.deregistered.swap(true, Ordering::AcqRel) {
            return;
        }
        conn.closing.cancel();
        self.conns.write().remove(&conn.id);
        if let Some(rt) = self.channel(&conn.channel) {
            rt.conns.write().retain(|c| c.id != conn.id);
        }
        self.closed.lock().insert(
            conn.id.clone(),
            Closed {
                channel: conn.channel.clone(),
                at: Instant::now(),
            },
        );
        self.metrics.connection_closed(&conn.channel, conn.protocol);
        match self.buffer.release(&conn.channel, &conn.id).await {
            Ok(ids) if !ids.is_empty() => {
                self.metrics
                    .redelivery(&conn.channel, "disconnect", ids.len() as u64)
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(connection = %conn.id, error = %e, "releasing leases failed"),
        }
        if let Err(e) = self.buffer.remove_connection(&conn.channel, &conn.id).await {
            tracing::warn!(connection = %conn.id, error = %e, "deregistering connection failed");
        }
    }

    /// How long a closed connection of `channel` may still ACK: max(ack timeout, 60 s) (§5.4).
    fn late_ack_window(&self, channel: &str) -> Duration {
        let ack_timeout = self
            .channel(channel)
            .map_or(30, |rt| rt.settings.read().ack_timeout_seconds);
        Duration::from_secs(ack_timeout.max(60))
    }

    /// The channel of a live connection, or of one closed within its late-ACK window.
    pub fn connection_channel(&self, id: &str) -> Option<(String, Option<Arc<Conn>>)> {
        if let Some(c) = self.connection(id) {
            return Some((c.channel.clone(), Some(c)));
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
                c.acked.fetch_add(1, Ordering::Relaxed);
                if held_lease {
                    dec(&c.in_flight);
                }
            }
            if let Some(rt) = self.channel(channel) {
                rt.wake.notify_one();
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
            .map(|rt| rt.name.clone())
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
    /// rotations (applied here within the housekeeping period, §7 "within 2 s") and channel
    /// settings.
    pub async fn sync_shared(&self) {
        if !self.buffer.is_shared() {
            return;
        }
        let chans: Vec<Arc<ChannelRt>> = self.channels.read().values().cloned().collect();
        for rt in chans {
            match self.buffer.channel(&rt.name).await {
                Ok(Some(rec)) => {
                    let changed = *rt.token.read() != rec.token;
                    if changed {
                        *rt.token.write() = rec.token.clone();
                        self.enforce_tokens(&rt);
                    }
                    if *rt.settings.read() != rec.settings {
                        *rt.settings.write() = rec.settings.clone();
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(channel = %rt.name, error = %e, "reading shared channel state failed");
                    continue;
                }
            }
        }
    }

    /// Sets the in-flight counts of this replica's connections to the leases the shared
    /// buffer records (leases settled, NACKed or reclaimed through other replicas). Runs in
    /// the channel's dispatcher task, so no local lease is half taken meanwhile; a local
    /// ACK racing with it is corrected by the next round.
    async fn sync_leases(&self, rt: &ChannelRt) {
        let Ok(Some(counts)) = self.buffer.lease_counts(&rt.name).await else {
            return;
        };
        for c in rt.conns.read().iter() {
            let held = counts.get(&c.id).copied().unwrap_or(0) as usize;
            c.in_flight.store(held, Ordering::Release);
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
            .nack(&conn.channel, message_id, &conn.id, retry, error)
            .await?;
        if !matches!(out, NackOutcome::NotHeld) {
            conn.nacked.fetch_add(1, Ordering::Relaxed);
            dec(&conn.in_flight);
            self.metrics.nacked(&conn.channel, retry);
            // Dead letters are counted by the buffer (persisted) and rendered at scrape time.
            if matches!(out, NackOutcome::Delayed { .. }) {
                self.metrics.redelivery(&conn.channel, "nack", 1);
            }
            if let Some(rt) = self.channel(&conn.channel) {
                rt.wake.notify_one();
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
            .extend(&conn.channel, message_id, &conn.id)
            .await
    }

    /// A lease ended by ack timeout: the holder's in-flight count drops.
    pub fn lease_lost(&self, conn_id: &str) {
        if let Some(c) = self.connection(conn_id) {
            dec(&c.in_flight);
            if let Some(rt) = self.channel(&c.channel) {
                rt.wake.notify_one();
            }
        }
    }

    /// Closes a connection of this replica on behalf of an admin request made on another
    /// replica sharing the buffer (§10.3 "Admin disconnects … are published on P:ctl").
    pub async fn apply_close_request(&self, channel: &str, conn_id: &str) {
        let Some(conn) = self.connection(conn_id).filter(|c| c.channel == channel) else {
            return;
        };
        conn.close(CloseReason::Admin);
        if conn.protocol == Protocol::LongPoll {
            if let Some((_, cancel)) = conn.poll_cancel.lock().take() {
                let _ = cancel.send(());
            }
            self.remove_conn(&conn).await;
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
    pub async fn housekeeping(&self) {
        self.sync_shared().await;
        let chans: Vec<Arc<ChannelRt>> = self.channels.read().values().cloned().collect();
        for rt in &chans {
            self.enforce_tokens(rt);
        }
        let idle: Vec<Arc<Conn>> = self
            .conns
            .read()
            .values()
            .filter(|c| {
                c.protocol == Protocol::LongPoll
                    && c.poll_cancel.lock().is_none()
                    && c.in_flight.load(Ordering::Acquire) == 0
                    && c.poll_last_active.lock().elapsed() > Duration::from_secs(60)
            })
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
            .conns
            .read()
            .values()
            .filter(|c| c.protocol == Protocol::LongPoll && c.closing.is_cancelled())
            .cloned()
            .collect();
        for c in closing {
            if let Some((_, cancel)) = c.poll_cancel.lock().take() {
                let _ = cancel.send(());
            }
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
        let conns = rt.conns.read();
        let live = |c: &&Arc<Conn>| c.protocol == Protocol::LongPoll && !c.closing.is_cancelled();
        if let Some(id) = conn_id
            && let Some(c) = conns.iter().filter(live).find(|c| c.id == id)
        {
            return Some(c.clone());
        }
        if let Some(cid) = connector_id {
            return conns
                .iter()
                .filter(live)
                .find(|c| c.connector_id.as_deref() == Some(cid))
                .cloned();
        }
        conns
            .iter()
            .filter(live)
            .find(|c| c.connector_id.is_none() && c.poll_affinity.as_deref() == Some(affinity))
            .cloned()
    }

    async fn dispatch_loop(self: Arc<Self>, rt: Arc<ChannelRt>) {
        let mut last_sync = Instant::now();
        loop {
            tokio::select! {
                _ = rt.stop.cancelled() => return,
                _ = rt.wake.notified() => {}
                // Safety net: wake-ups can be missed across replicas, and delayed messages
                // become due without an event on this replica.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            if self.buffer.is_shared() && last_sync.elapsed() >= Duration::from_secs(1) {
                last_sync = Instant::now();
                self.sync_leases(&rt).await;
            }
            if let Err(e) = self.dispatch_once(&rt).await {
                tracing::warn!(channel = %rt.name, error = %e, "dispatch failed");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }

    /// Hands out messages until no eligible connection or no ready message is left.
    async fn dispatch_once(&self, rt: &ChannelRt) -> Result<(), connect_buffer::BufferError> {
        loop {
            if rt.stop.is_cancelled() {
                return Ok(());
            }
            let max_in_flight = rt.settings.read().max_in_flight as usize;
            let (conn, n) = {
                let conns = rt.conns.read();
                let eligible: Vec<&Arc<Conn>> = conns
                    .iter()
                    .filter(|c| c.capacity(max_in_flight) > 0)
                    .collect();
                let Some(best) = eligible.iter().min_by_key(|c| {
                    (
                        c.in_flight.load(Ordering::Acquire),
                        c.last_served.load(Ordering::Acquire),
                    )
                }) else {
                    return Ok(());
                };
                let cap = best.capacity(max_in_flight);
                // One at a time keeps fairness exact among several connections; a lone
                // connection takes a batch.
                let n = if eligible.len() == 1 { cap.min(100) } else { 1 };
                ((*best).clone(), n)
            };
            if conn.protocol == Protocol::LongPoll {
                let reserved =
                    conn.poll_want
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| w.checked_sub(n));
                if reserved.is_err() {
                    continue;
                }
            }
            conn.in_flight.fetch_add(n, Ordering::AcqRel);
            let leased = match self.buffer.lease(&rt.name, &conn.id, n).await {
                Ok(l) => l,
                Err(e) => {
                    conn.in_flight.fetch_sub(n, Ordering::AcqRel);
                    if conn.protocol == Protocol::LongPoll {
                        conn.poll_want.fetch_add(n, Ordering::AcqRel);
                    }
                    return Err(e);
                }
            };
            let unused = n - leased.len();
            if unused > 0 {
                conn.in_flight.fetch_sub(unused, Ordering::AcqRel);
                if conn.protocol == Protocol::LongPoll {
                    conn.poll_want.fetch_add(unused, Ordering::AcqRel);
                }
            }
            if leased.is_empty() {
                return Ok(());
            }
            if conn.deregistered.load(Ordering::Acquire) {
                // Lost the race with deregistration: hand the leases straight back.
                self.buffer.release(&rt.name, &conn.id).await?;
                continue;
            }
            conn.last_served.store(
                rt.serve_tick.fetch_add(1, Ordering::AcqRel) + 1,
                Ordering::Release,
            );
            conn.received
                .fetch_add(leased.len() as u64, Ordering::Relaxed);
            *conn.last_message_at.lock() = Some(Timestamp::now());
            self.metrics.delivered(&rt.name, conn.protocol, &leased);
            if conn.tx.send(leased).is_err() {
                // The connection is going away; its deregistration releases the leases.
                tracing::debug!(connection = %conn.id, "dispatch to a closing connection");
            }
        }
    }
}

fn dec(a: &AtomicUsize) {
    let _ = a.fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
}
