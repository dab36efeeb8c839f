//! One live connection of this replica, and the lease accounting of its long-poll requests.
//!
//! Two counters decide what a connection may take, and every change of them goes through a
//! method here: `in_flight` (messages leased to it and not yet settled, bounded by the channel's
//! `max_in_flight`) and, for long-poll connections only, `poll_want` (how many more messages the
//! pending poll request may take; 0 = no request waiting). The dispatcher reserves with
//! `Conn::reserve` and gives back what the buffer did not lease with `Conn::unreserve`; the
//! poll handler opens and closes its window with [`Conn::poll_begin`], [`Conn::poll_want`],
//! [`Conn::poll_stop`] and [`Conn::poll_end`]; admin disconnects, revocations and shutdown end a
//! waiting request with [`Conn::cancel_poll`].

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use connect_buffer::Leased;
use connect_protocol::admin::{ConnectionInfo, ConnectionState, TokenGeneration};
use connect_protocol::ids::Protocol;
use connect_protocol::time::Timestamp;
use parking_lot::Mutex;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Bytes of leased messages a connection may hold in this process before they are written
/// to its socket (queued batches plus the one being written); the dispatcher leases no more
/// to it until it is below, and a lease stops once it would fill the room left (always at
/// least one message). Bounds a connection's memory whatever the message sizes, e.g. when a
/// connector with `max_in_flight` 1000 drains a backlog of 10 MB bodies.
pub const OUTBOX_BYTES: u64 = 8 * 1024 * 1024;

/// What a leased message is counted as in the outbox: its body and an envelope.
fn outbox_size(l: &Leased) -> u64 {
    l.message.body.as_ref().map_or(0, Vec::len) as u64 + 512
}

/// A batch of messages leased to one connection. Until it is dropped — consumed by the
/// transport and its messages written — its size counts toward the connection's outbox.
pub struct Batch {
    items: Vec<Leased>,
    held: Option<Held>,
}

/// A batch's share of its connection's outbox, given back on drop.
struct Held {
    bytes: u64,
    outbox: Arc<AtomicU64>,
    wake: Arc<Notify>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let before = self.outbox.fetch_sub(self.bytes, Ordering::AcqRel);
        // The connection was full and now has room: its dispatcher may lease again.
        if before >= OUTBOX_BYTES && before - self.bytes < OUTBOX_BYTES {
            self.wake.notify_one();
        }
    }
}

impl Batch {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl IntoIterator for Batch {
    type Item = Leased;
    type IntoIter = BatchIter;

    fn into_iter(self) -> BatchIter {
        BatchIter {
            items: self.items.into_iter(),
            _held: self.held,
        }
    }
}

/// Iterates a batch; the outbox share is given back when the iteration is dropped.
pub struct BatchIter {
    items: std::vec::IntoIter<Leased>,
    _held: Option<Held>,
}

impl Iterator for BatchIter {
    type Item = Leased;

    fn next(&mut self) -> Option<Leased> {
        self.items.next()
    }
}

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

/// A long-poll request's claim on its connection: a newer request for the same connection
/// fires `cancelled`, so the older one answers at once.
pub struct PollTicket {
    generation: u64,
    pub cancelled: oneshot::Receiver<()>,
}

/// One live connection of this replica.
pub struct Conn {
    id: String,
    channel: String,
    protocol: Protocol,
    connector_id: Option<String>,
    remote_ip: IpAddr,
    protocol_version: u32,
    connected_at: Timestamp,
    /// Digest of the token that authenticated it (latest request for poll connections).
    token_digest: Mutex<String>,
    in_flight: AtomicUsize,
    received: AtomicU64,
    acked: AtomicU64,
    nacked: AtomicU64,
    last_heartbeat_at: Mutex<Option<Timestamp>>,
    last_message_at: Mutex<Option<Timestamp>>,
    last_served: AtomicU64,
    /// Long-poll only: how many more messages the pending request may take (0 = no request).
    poll_want: AtomicUsize,
    poll_last_active: Mutex<Instant>,
    poll_affinity: Option<String>,
    /// Bytes of the batches handed to the transport and not yet dropped by it.
    outbox: Arc<AtomicU64>,
    tx: mpsc::UnboundedSender<Batch>,
    rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<Batch>>,
    poll_cancel: Mutex<Option<(u64, oneshot::Sender<()>)>>,
    poll_generation: AtomicU64,
    closing: CancellationToken,
    close_reason: Mutex<Option<CloseReason>>,
    deregistered: AtomicBool,
}

impl Conn {
    pub(crate) fn new(id: String, p: NewConn) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Conn {
            id,
            channel: p.channel,
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
            outbox: Arc::new(AtomicU64::new(0)),
            poll_affinity: p.poll_affinity,
            tx,
            rx: tokio::sync::Mutex::new(rx),
            poll_cancel: Mutex::new(None),
            poll_generation: AtomicU64::new(0),
            closing: CancellationToken::new(),
            close_reason: Mutex::new(None),
            deregistered: AtomicBool::new(false),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn channel(&self) -> &str {
        &self.channel
    }

    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub fn connector_id(&self) -> Option<&str> {
        self.connector_id.as_deref()
    }

    pub fn poll_affinity(&self) -> Option<&str> {
        self.poll_affinity.as_deref()
    }

    /// Messages leased to this connection and not yet settled.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub fn token_digest(&self) -> String {
        self.token_digest.lock().clone()
    }

    /// A later poll request authenticated with another (valid) token.
    pub fn set_token_digest(&self, digest: String) {
        *self.token_digest.lock() = digest;
    }

    /// The batches the dispatcher hands to this connection; one reader at a time.
    pub async fn receiver(&self) -> tokio::sync::MutexGuard<'_, mpsc::UnboundedReceiver<Batch>> {
        self.rx.lock().await
    }

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

    pub fn is_closing(&self) -> bool {
        self.closing.is_cancelled()
    }

    /// Resolves once the connection is being closed (by the server or its deregistration).
    pub async fn closed(&self) {
        self.closing.cancelled().await
    }

    /// Marks the connection gone; `false` if it already was (deregistration runs once).
    pub(crate) fn deregister(&self) -> bool {
        let first = !self.deregistered.swap(true, Ordering::AcqRel);
        self.closing.cancel();
        first
    }

    pub(crate) fn is_deregistered(&self) -> bool {
        self.deregistered.load(Ordering::Acquire)
    }

    /// How many messages the dispatcher may lease to it now.
    pub(crate) fn capacity(&self, max_in_flight: usize) -> usize {
        if self.closing.is_cancelled() {
            return 0;
        }
        if self.outbox_room() == 0 {
            return 0;
        }
        let free = max_in_flight.saturating_sub(self.in_flight());
        match self.protocol {
            Protocol::LongPoll => free.min(self.poll_want.load(Ordering::Acquire)),
            _ => free,
        }
    }

    /// Bytes the dispatcher may still lease to it before its outbox is full.
    pub(crate) fn outbox_room(&self) -> u64 {
        OUTBOX_BYTES.saturating_sub(self.outbox.load(Ordering::Acquire))
    }

    /// Fairness key of the dispatcher: fewest leases, then served least recently.
    pub(crate) fn dispatch_rank(&self) -> (usize, u64) {
        (self.in_flight(), self.last_served.load(Ordering::Acquire))
    }

    /// Takes `n` lease slots before asking the buffer; `false` when a poll request no longer
    /// wants that many (it was answered or cancelled meanwhile).
    pub(crate) fn reserve(&self, n: usize) -> bool {
        if self.protocol == Protocol::LongPoll
            && self
                .poll_want
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| w.checked_sub(n))
                .is_err()
        {
            return false;
        }
        self.in_flight.fetch_add(n, Ordering::AcqRel);
        true
    }

    /// Gives back `n` reserved slots the buffer did not lease.
    pub(crate) fn unreserve(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.in_flight.fetch_sub(n, Ordering::AcqRel);
        if self.protocol == Protocol::LongPoll {
            self.poll_want.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// One lease ended (settled, NACKed or timed out).
    pub(crate) fn lease_ended(&self) {
        let _ = self
            .in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| v.checked_sub(1));
    }

    /// The shared buffer's count of this connection's leases (leases ended elsewhere).
    pub(crate) fn set_in_flight(&self, held: usize) {
        self.in_flight.store(held, Ordering::Release);
    }

    pub(crate) fn record_ack(&self, held_lease: bool) {
        self.acked.fetch_add(1, Ordering::Relaxed);
        if held_lease {
            self.lease_ended();
        }
    }

    pub(crate) fn record_nack(&self) {
        self.nacked.fetch_add(1, Ordering::Relaxed);
        self.lease_ended();
    }

    /// Hands a leased batch to the connection's reader; `false` if the reader is gone.
    /// `wake` is the channel dispatcher's, woken once the outbox has room again.
    pub(crate) fn deliver(&self, batch: Vec<Leased>, serve_tick: u64, wake: Arc<Notify>) -> bool {
        self.last_served.store(serve_tick, Ordering::Release);
        self.received
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        *self.last_message_at.lock() = Some(Timestamp::now());
        let bytes = batch.iter().map(outbox_size).sum();
        self.outbox.fetch_add(bytes, Ordering::AcqRel);
        let held = Held {
            bytes,
            outbox: self.outbox.clone(),
            wake,
        };
        self.tx
            .send(Batch {
                items: batch,
                held: Some(held),
            })
            .is_ok()
    }

    /// Starts a poll request: a newer request for the same connection answers the older one
    /// (204) at once.
    pub fn poll_begin(&self) -> PollTicket {
        let (tx, rx) = oneshot::channel();
        let generation = self.poll_generation.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some((_, old)) = self.poll_cancel.lock().replace((generation, tx)) {
            let _ = old.send(());
        }
        PollTicket {
            generation,
            cancelled: rx,
        }
    }

    /// Opens the request's window: it may take up to `max_messages`, within `max_in_flight`.
    pub fn poll_want(&self, max_messages: usize, max_in_flight: usize) {
        let free = max_in_flight.saturating_sub(self.in_flight());
        self.poll_want
            .store(max_messages.min(free), Ordering::Release);
    }

    /// Reopens a window that filled while capacity freed up (ACKs of earlier polls);
    /// `true` when it did, and the dispatcher should look again.
    pub fn poll_refill(&self, max_messages: usize, max_in_flight: usize) -> bool {
        if self.poll_want.load(Ordering::Acquire) != 0 {
            return false;
        }
        let free = max_in_flight.saturating_sub(self.in_flight());
        if free == 0 {
            return false;
        }
        self.poll_want
            .store(max_messages.min(free), Ordering::Release);
        true
    }

    /// Closes the window: the dispatcher leases nothing more to this request.
    pub fn poll_stop(&self) {
        self.poll_want.store(0, Ordering::Release);
    }

    /// Ends a poll request: the connection counts as active now, and the request's cancel slot
    /// is cleared unless a newer request already replaced it.
    pub fn poll_end(&self, ticket: &PollTicket) {
        *self.poll_last_active.lock() = Instant::now();
        let mut slot = self.poll_cancel.lock();
        if slot.as_ref().is_some_and(|(g, _)| *g == ticket.generation) {
            *slot = None;
        }
    }

    /// Answers a waiting poll request at once (admin disconnect, revocation, shutdown).
    pub fn cancel_poll(&self) {
        if let Some((_, cancel)) = self.poll_cancel.lock().take() {
            let _ = cancel.send(());
        }
    }

    /// A poll connection with no request waiting, no lease and no request for `idle`.
    pub(crate) fn poll_idle(&self, idle: Duration) -> bool {
        self.protocol == Protocol::LongPoll
            && self.poll_cancel.lock().is_none()
            && self.in_flight() == 0
            && self.poll_last_active.lock().elapsed() > idle
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
