//! The channel buffer: every backend behind one trait (PROTOCOL.md §10).
//!
//! Layout:
//! - this file: the [`Buffer`] trait, its input/output types and [`BufferError`].
//! - [`clock`]: the injected [`Clock`] (tests drive time by hand).
//! - [`digest`]: a token digest held as its 32 bytes (compared in constant time).
//! - [`embedded`]: the default single-node backend (in-memory index, messages in an on-disk
//!   log with group commit, channels in redb).
//! - [`redis`]: the shared backend (Redis Streams + Lua scripts) for several replicas.
//! - `suite` (feature `test-suite` or tests): the behavioural suite every backend must pass.
//!
//! Dispatch itself (which connection gets the next message) is not here: the cloud's
//! dispatcher asks [`Buffer::lease`] for messages on behalf of a connection it chose.

pub mod clock;
pub mod digest;
pub mod embedded;
pub mod hosted;
mod notifiers;
pub mod redis;
mod store_file;
#[cfg(any(test, feature = "test-suite"))]
pub mod suite;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use connect_protocol::admin::{ChannelState, TokenSource};
use connect_protocol::message::{Attempts, DeadLetterReason, MessageState, StoredMessage};
use connect_protocol::time::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

pub use clock::{Clock, ManualClock, SystemClock};
pub use embedded::LogStats;
pub use hosted::{AccountRecord, Created, HostedChannelRecord};

/// Channel-level settings, taken from the channel's owner webhook (§8.4).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChannelSettings {
    pub max_queue_size: u64,
    /// Bytes the channel's unsettled messages may take in the store (the message cap's
    /// twin, so a queue's disk use is bounded too). Records written before it existed load
    /// with the default.
    #[serde(default = "default_max_queue_bytes")]
    pub max_queue_bytes: u64,
    pub max_connections: u64,
    pub max_in_flight: u64,
    pub ack_timeout_seconds: u64,
    pub max_delivery_attempts: u32,
    pub retry_backoff_max_seconds: u64,
    /// 0 keeps dead letters until deleted.
    pub dlq_retention_seconds: u64,
    /// The owner's `ttl_seconds` (shown by the admin API; messages carry their own expiry).
    pub ttl_seconds: u64,
}

/// 1 GiB.
pub const DEFAULT_MAX_QUEUE_BYTES: u64 = 1024 * 1024 * 1024;

fn default_max_queue_bytes() -> u64 {
    DEFAULT_MAX_QUEUE_BYTES
}

impl Default for ChannelSettings {
    fn default() -> Self {
        Self {
            max_queue_size: 10_000,
            max_queue_bytes: DEFAULT_MAX_QUEUE_BYTES,
            max_connections: 10,
            max_in_flight: 100,
            ack_timeout_seconds: 30,
            max_delivery_attempts: 10,
            retry_backoff_max_seconds: 60,
            dlq_retention_seconds: 604_800,
            ttl_seconds: 86_400,
        }
    }
}

/// What the configuration says about a channel when it is (re-)registered.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelRegistration {
    pub name: String,
    pub settings: ChannelSettings,
    /// SHA-256 hex of the owner's configured `channel_token`.
    pub configured_token_digest: String,
    /// The owner webhook key (`<id>` or `<ns>/<id>`) the configuration proposes; the backend
    /// keeps a persisted owner while it is still among `webhook_ids`.
    pub owner: String,
    /// Every webhook key feeding the channel, sorted.
    pub webhook_ids: Vec<String>,
}

/// Token state of a channel (§7). Only digests are stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenState {
    pub current_digest: String,
    pub source: TokenSource,
    pub configured_digest: String,
    pub previous_digest: Option<String>,
    pub previous_expires_at: Option<Timestamp>,
    pub rotated_at: Option<Timestamp>,
}

/// A channel as the backend knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelRecord {
    pub name: String,
    pub settings: ChannelSettings,
    pub owner: String,
    pub webhook_ids: Vec<String>,
    pub state: ChannelState,
    pub orphaned_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub token: TokenState,
}

/// The result of registering a channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Registered {
    pub record: ChannelRecord,
    /// True when the configured token changed: every connection authenticated with another
    /// token must now be closed with 4005 (§7).
    pub configured_token_changed: bool,
    /// True when the channel did not exist before.
    pub created: bool,
}

/// A message handed to a connection by [`Buffer::lease`].
#[derive(Clone, Debug)]
pub struct Leased {
    pub message: Arc<StoredMessage>,
    /// 1-based number of this delivery.
    pub delivery_count: u32,
}

/// Outcome of an ACK (§5.4 step 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// Settled. `held_lease` is true when the acking connection held the current lease (so
    /// its in-flight count drops); false for a late ACK from a former holder.
    Settled { held_lease: bool },
    /// Unknown, already settled, or never delivered to this connection.
    NotInFlight,
}

/// Outcome of a NACK.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NackOutcome {
    Delayed {
        until: Timestamp,
    },
    DeadLettered(DeadLetterReason),
    /// The connection does not hold the current lease.
    NotHeld,
}

/// Outcome of replaying one dead letter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayOutcome {
    Replayed,
    NotFound,
    QueueFull,
}

/// Outcome of a bulk replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BulkReplay {
    pub replayed: u64,
    pub remaining: u64,
    pub stopped_queue_full: bool,
}

/// A lease that ended without an ACK or NACK, reported by [`Buffer::sweep`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LostLease {
    pub channel: String,
    pub connection_id: String,
    pub message_id: String,
}

/// What one [`Buffer::sweep`] did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SweepReport {
    /// Leases past their ack timeout, returned to the head of their channel.
    pub expired_leases: Vec<LostLease>,
    pub promoted: u64,
    pub expired: u64,
    pub dead_lettered: u64,
    pub dlq_removed: u64,
    /// Channels deleted by the orphan policy.
    pub channels_deleted: Vec<String>,
}

/// A message with its current delivery state, for the admin views.
#[derive(Clone, Debug)]
pub struct MessageRecord {
    pub message: Arc<StoredMessage>,
    pub attempts: Attempts,
    pub state: MessageState,
    pub leased_to: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
    pub next_attempt_at: Option<Timestamp>,
    pub reason: Option<DeadLetterReason>,
    pub dead_lettered_at: Option<Timestamp>,
}

/// Which messages [`Buffer::peek`] shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeekFilter {
    Ready,
    InFlight,
    Delayed,
    All,
}

/// Counters (cumulative, persisted) and depths (now) of one channel (§8.3).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Counters {
    pub received: u64,
    pub dispatched: u64,
    pub acked: u64,
    pub nacked: u64,
    pub expired: u64,
    pub dead_lettered: u64,
    /// Dead-lettered by a NACK without retry.
    pub rejected: u64,
    /// Dead-lettered after `max_delivery_attempts`.
    pub exhausted: u64,
    pub replayed: u64,
    pub discarded: u64,
    /// Dead letters dropped, oldest first, because the channel held its maximum.
    pub dead_letters_dropped: u64,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct BufferStats {
    pub counters: Counters,
    pub ready: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub dead_letters: u64,
    pub oldest_unsettled_at: Option<Timestamp>,
    /// Webhook key → unsettled messages (zero entries omitted).
    pub webhook_pending: BTreeMap<String, u64>,
}

/// Whether the backend is usable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferHealth {
    /// Everything works, writes included.
    pub ok: bool,
    /// Stored messages can still be leased, settled and viewed although `ok` is false (a
    /// full disk fails only writes; connectors keep draining).
    pub readable: bool,
    pub reason: Option<String>,
}

/// Every failure a backend reports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BufferError {
    #[error("channel queue full")]
    QueueFull,
    #[error("message too large")]
    TooLarge,
    #[error("channel not found")]
    ChannelNotFound,
    #[error("channel is orphaned and accepts no new messages")]
    Orphaned,
    #[error("buffer unavailable: {0}")]
    Unavailable(String),
    #[error("data directory is locked by another process: {0}")]
    Locked(String),
}

pub type Result<T, E = BufferError> = std::result::Result<T, E>;

/// The buffer contract (§10.1). Every method is atomic per channel.
#[async_trait]
pub trait Buffer: Send + Sync + 'static {
    /// `"embedded"` or `"redis"`.
    fn backend_name(&self) -> &'static str;

    fn health(&self) -> BufferHealth;

    /// True when other replicas share this backend's state (leases, tokens, connections),
    /// so the cloud must not trust what it cached locally.
    fn is_shared(&self) -> bool {
        false
    }

    /// Signalled whenever the channel may have new ready work (enqueue, release, promotion,
    /// lease expiry, replay). The cloud's dispatcher for that channel waits on it.
    fn notifier(&self, channel: &str) -> Arc<Notify>;

    /// The channel's name as this backend holds it, for a caller that keeps the name per
    /// channel to share instead of allocating it again (issue #14: ≤ 1 KB per idle channel);
    /// `None` when the backend holds none in memory or does not know the channel.
    fn shared_name(&self, _channel: &str) -> Option<Arc<str>> {
        None
    }

    // --- channels -------------------------------------------------------------------------

    /// Idempotent create-or-update; never resets counters, sequence or rotation state except
    /// by the configured-token rule. Re-activates an orphaned channel.
    async fn register_channel(&self, reg: ChannelRegistration) -> Result<Registered>;

    /// Marks a channel orphaned (no webhook names it any more).
    async fn orphan_channel(&self, name: &str) -> Result<()>;

    /// Deletes a channel and everything in it; returns the number of unsettled messages
    /// discarded.
    async fn delete_channel(&self, name: &str) -> Result<u64>;

    async fn channel(&self, name: &str) -> Result<Option<ChannelRecord>>;

    /// Every channel, ordered by name.
    async fn channels(&self) -> Result<Vec<ChannelRecord>>;

    /// Hands every channel's record to `visit`, in no particular order, without holding them
    /// all at once where the backend can (the embedded store clones one record at a time):
    /// what start-up uses to walk 100,000 channels without a list of every record, whose
    /// freed pages would stay resident. `visit` runs outside the backend's locks.
    async fn visit_channels(&self, visit: &mut (dyn FnMut(ChannelRecord) + Send)) -> Result<()> {
        for rec in self.channels().await? {
            visit(rec);
        }
        Ok(())
    }

    // --- messages -------------------------------------------------------------------------

    /// Stores a message durably. The backend assigns `sequence` (and a new `message_id` if
    /// the given one collides) and returns both. Returns only after the write is durable.
    async fn enqueue(&self, message: StoredMessage) -> Result<(String, u64)>;

    /// Leases up to `max` messages to `connection`: requeued ones (head) first, then new
    /// ones, in order; expired and exhausted messages are dead-lettered on the way.
    async fn lease(&self, channel: &str, connection: &str, max: usize) -> Result<Vec<Leased>> {
        self.lease_within(channel, connection, max, u64::MAX).await
    }

    /// [`lease`](Self::lease) that also stops once the leased messages' stored size (the
    /// backend's record of each, body included) reaches `max_bytes` — always at least one
    /// message, so a message larger than the budget is still delivered alone. Bounds the
    /// memory one lease (and the connection it feeds) holds when bodies are large.
    async fn lease_within(
        &self,
        channel: &str,
        connection: &str,
        max: usize,
        max_bytes: u64,
    ) -> Result<Vec<Leased>>;

    async fn ack(&self, channel: &str, message_id: &str, connection: &str) -> Result<AckOutcome>;

    async fn nack(
        &self,
        channel: &str,
        message_id: &str,
        connection: &str,
        retry: bool,
        error: Option<String>,
    ) -> Result<NackOutcome>;

    /// Resets the lease deadline; false when the connection does not hold the lease.
    async fn extend(&self, channel: &str, message_id: &str, connection: &str) -> Result<bool>;

    /// Returns all leases of `connection` to the head of the channel at once; returns the
    /// released message ids.
    async fn release(&self, channel: &str, connection: &str) -> Result<Vec<String>>;

    /// Ack timeouts → head; due delayed → tail; TTL → dead letter `expired`; DLQ retention;
    /// orphan channels past retention and empty → deleted (when `orphan_retention` is set).
    async fn sweep(&self, orphan_retention: Option<std::time::Duration>) -> Result<SweepReport>;

    // --- dead letters ---------------------------------------------------------------------

    /// Newest first, at most `limit`; also returns the DLQ size.
    async fn dead_letters(&self, channel: &str, limit: usize) -> Result<(Vec<MessageRecord>, u64)>;

    async fn dead_letter(&self, channel: &str, message_id: &str) -> Result<Option<MessageRecord>>;

    async fn replay(&self, channel: &str, message_id: &str) -> Result<ReplayOutcome>;

    /// Oldest first; all of them when `limit` is `None`; stops at the first queue-full.
    async fn replay_all(&self, channel: &str, limit: Option<u64>) -> Result<BulkReplay>;

    async fn delete_dead_letter(&self, channel: &str, message_id: &str) -> Result<bool>;

    async fn purge_dead_letters(&self, channel: &str) -> Result<u64>;

    // --- views ----------------------------------------------------------------------------

    /// Unsettled messages in dispatch order, without side effects.
    async fn peek(
        &self,
        channel: &str,
        filter: PeekFilter,
        limit: usize,
    ) -> Result<Vec<MessageRecord>>;

    async fn stats(&self, channel: &str) -> Result<BufferStats>;

    // --- tokens ---------------------------------------------------------------------------

    /// Makes `new_digest` current and the old current token the previous one until
    /// now + `grace_seconds` (a previous token still in grace is dropped). Durable.
    async fn rotate_token(
        &self,
        channel: &str,
        new_digest: String,
        grace_seconds: u64,
    ) -> Result<TokenState>;

    // --- connection registry --------------------------------------------------------------

    /// Atomically adds a live connection if fewer than `max` are registered on the channel.
    async fn add_connection(&self, channel: &str, connection: &str, max: u64) -> Result<bool>;

    async fn remove_connection(&self, channel: &str, connection: &str) -> Result<()>;

    /// Live connections of the channel, on every replica.
    async fn connection_count(&self, channel: &str) -> Result<u64>;

    /// Is `connection` live on some replica? Backends without replicas know only this
    /// process's connections, which the cloud tracks itself: they answer false.
    async fn has_connection(&self, channel: &str, connection: &str) -> Result<bool> {
        let _ = (channel, connection);
        Ok(false)
    }

    /// Asks the replica holding `connection` to close it (admin disconnect, §8.2); false when
    /// no replica sharing this backend has it.
    async fn request_close(&self, channel: &str, connection: &str) -> Result<bool> {
        let _ = (channel, connection);
        Ok(false)
    }

    /// Close requests from other replicas, as (channel, connection) pairs; the first caller
    /// takes the receiver. `None` for backends without replicas.
    fn close_requests(&self) -> Option<tokio::sync::mpsc::Receiver<(String, String)>> {
        None
    }

    /// Names of channels whose stored state another replica changed (token rotated, channel
    /// registered or deleted), published so every replica can re-read them at once; the
    /// first caller takes the receiver. Delivery is best effort (Pub/Sub): a replica still
    /// re-reads a channel before refusing a token. `None` for backends without replicas.
    fn channel_changes(&self) -> Option<tokio::sync::mpsc::Receiver<String>> {
        None
    }

    /// How many times this process found the backend's stored state gone (a Redis restarted
    /// without persistence, or flushed). When it changes, every configured channel must be
    /// registered again (§8.4: channels are registered at configuration load, not lazily).
    fn state_epoch(&self) -> u64 {
        0
    }

    /// Counts one authenticated request against a sliding-window rate limit shared by every
    /// replica. `None`: this backend shares nothing (the caller keeps a per-process window);
    /// `Some(Ok(()))`: admitted and recorded; `Some(Err(secs))`: over the limit, retry after
    /// `secs` (at least 1).
    async fn rate_limit(
        &self,
        key: &str,
        max_requests: u64,
        window: std::time::Duration,
    ) -> Result<Option<std::result::Result<(), u64>>> {
        let _ = (key, max_requests, window);
        Ok(None)
    }

    /// Current leases per connection, as the shared store sees them (leases settled through
    /// another replica included); `None` when only this process hands out leases.
    async fn lease_counts(&self, channel: &str) -> Result<Option<HashMap<String, u64>>> {
        let _ = channel;
        Ok(None)
    }

    /// The on-disk message log's figures (embedded backend); `None` for backends without one.
    fn log_stats(&self) -> Option<LogStats> {
        None
    }

    // --- self-service records (HOSTED.md §2–§3) ---------------------------------------------

    /// Stores a new account; [`Created::Taken`] when its name is taken, [`Created::Full`]
    /// when `max_accounts` accounts exist. The count is checked and the account counted in
    /// one atomic step (across replicas on Redis), so concurrent creates never pass the cap.
    async fn create_account(&self, account: &AccountRecord, max_accounts: u64) -> Result<Created>;

    /// Replaces an account (quota, disabled, key digest); the previous key digest stops
    /// finding it at once. False when the account does not exist.
    async fn put_account(&self, account: &AccountRecord) -> Result<bool>;

    async fn account(&self, account_id: &str) -> Result<Option<AccountRecord>>;

    /// The account whose current API key has this SHA-256 hex digest.
    async fn account_by_key(&self, key_digest: &str) -> Result<Option<AccountRecord>>;

    /// Every account, ordered by id.
    async fn accounts(&self) -> Result<Vec<AccountRecord>>;

    async fn account_count(&self) -> Result<u64>;

    /// Removes an account record (its channels are removed one by one by the caller). False
    /// when it does not exist.
    async fn delete_account(&self, account_id: &str) -> Result<bool>;

    /// Stores a new self-service channel record; [`Created::Taken`] when its name or webhook
    /// id is taken, [`Created::Full`] when its account owns `max_channels` channels (checked
    /// and counted atomically, like [`Buffer::create_account`]). The buffer channel itself
    /// is registered separately.
    async fn create_hosted_channel(
        &self,
        channel: &HostedChannelRecord,
        max_channels: u64,
    ) -> Result<Created>;

    /// Replaces a self-service channel record; false when it does not exist.
    async fn put_hosted_channel(&self, channel: &HostedChannelRecord) -> Result<bool>;

    async fn hosted_channel(&self, name: &str) -> Result<Option<HostedChannelRecord>>;

    async fn hosted_channel_by_webhook(
        &self,
        webhook_id: &str,
    ) -> Result<Option<HostedChannelRecord>>;

    /// Every self-service channel, ordered by name.
    async fn hosted_channels(&self) -> Result<Vec<HostedChannelRecord>>;

    async fn hosted_channel_count(&self) -> Result<u64>;

    /// The names of every self-service channel, sorted (no record is read).
    async fn hosted_channel_names(&self) -> Result<Vec<String>>;

    /// The channels of one account, ordered by name.
    async fn account_channels(&self, account_id: &str) -> Result<Vec<HostedChannelRecord>>;

    /// Removes a self-service channel record; false when it does not exist.
    async fn delete_hosted_channel(&self, name: &str) -> Result<bool>;

    /// Flushes pending writes and closes the store.
    async fn close(&self) -> Result<()>;
}
