//! The Redis Streams backend (PROTOCOL §10.3): several replicas share one Redis.
//!
//! Why this shape:
//! - Every state change of a channel is one Lua script over that channel's keys
//!   ([`scripts`]), so operations are atomic per channel and any replica can run any of them:
//!   leases are the consumer group's pending entries, ownership is checked in Redis.
//! - Lease deadlines live in a sorted set (`lease`, score = deadline from the injected
//!   [`Clock`]) instead of relying on `XAUTOCLAIM`'s idle time: the effect is the same
//!   (any replica's sweep parks expired leases on the `_requeue` consumer), but time stays
//!   injectable, and `extend` is a plain score update.
//! - Wake-ups: the replica that makes work ready notifies its local dispatcher at once and
//!   publishes `wake` on `P:ctl`; every other replica subscribes and notifies its own.
//!   Pub/Sub is lossy, so the cloud's dispatchers also poll every second.
//! - The connection registry is a sorted set scored by last-seen time; this process
//!   refreshes its own connections every heartbeat, and entries not refreshed for three
//!   heartbeats (their replica died) no longer count.
//! - [`Buffer::health`] must not block: a background check every second (and any failed
//!   command) updates a cached verdict. The [`ConnectionManager`] reconnects by itself.
//! - Lost state: `P:gen` holds a random value set by the first replica that finds it missing.
//!   The same check every second (and a script answering "channel not found") compares it with
//!   the value this process saw last; a new value means Redis lost its data (restart without
//!   persistence, flush), so [`Buffer::state_epoch`] moves on and the cloud registers its
//!   channels again, and this process puts its live connections back into the registry.
//!
//! Layout: this file (options, opening, the [`Buffer`] implementation); [`conn`] (one primary or
//! a Redis Cluster behind one command handle); [`keys`] (key names); [`scripts`] (the Lua);
//! `tasks` (background tasks, `P:ctl` messages); `values` (decoding answers).

mod conn;
mod hosted;
mod keys;
mod scripts;
mod tasks;
mod values;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use connect_protocol::ids::new_message_id;
use connect_protocol::message::{DeadLetterReason, MessageState, StoredMessage};
use connect_protocol::time::Timestamp;
use parking_lot::Mutex;
use rand::Rng;
use redis::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use self::conn::RedisConn;
pub use self::conn::RedisEndpoint;
use self::keys::ChannelKeys;
pub use self::keys::valid_prefix;
use self::tasks::{ping_loop, refresh_loop, subscribe_loop};
use self::values::*;
use crate::hosted::{AccountRecord, Created, HostedChannelRecord};
use crate::{
    AckOutcome, Buffer, BufferError, BufferHealth, BufferStats, BulkReplay, ChannelRecord,
    ChannelRegistration, Clock, Counters, Leased, LostLease, MessageRecord, NackOutcome,
    PeekFilter, Registered, ReplayOutcome, Result, SweepReport, TokenState,
};

/// Serialized size above which a message is refused with [`BufferError::TooLarge`].
pub const MAX_STORED_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
/// NACK error texts are kept up to this many characters (§5.4).
const MAX_ERROR_CHARS: usize = 1024;
/// After noticing that Redis lost its data, a missing channel counts as an outage (503) for
/// this long, while the channels are registered again.
const LOST_DATA_GRACE: Duration = Duration::from_secs(10);
/// How long a write confirmation (`WAITAOF` / `WAIT`) may take before the enqueue fails.
const CONFIRM_TIMEOUT_MS: u64 = 5_000;

/// How to reach Redis and name things in it.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// One primary (`redis://…` or `rediss://…`, TLS; credentials in the URL) or the seed
    /// nodes of a Redis Cluster.
    pub endpoint: RedisEndpoint,
    /// Key prefix `P` (`^[A-Za-z0-9_.-]{1,32}$`).
    pub prefix: String,
    /// Confirm durable writes with `WAITAOF 1 0` (Redis ≥ 7.2 with AOF on).
    pub wait_aof: bool,
    /// Confirm durable writes with `WAIT <n>` replicas.
    pub wait_replicas: u32,
    /// This process in the connection registry and in `P:ctl` messages.
    pub replica_id: String,
    /// How often this process refreshes its connections' last-seen time; three missed
    /// refreshes make a connection stale for every replica.
    pub heartbeat: Duration,
}

impl RedisOptions {
    /// One primary at `url`.
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self::with_endpoint(RedisEndpoint::Single(url.into()), prefix)
    }

    /// A Redis Cluster reached through `seeds`.
    pub fn cluster(seeds: Vec<String>, prefix: impl Into<String>) -> Self {
        Self::with_endpoint(RedisEndpoint::Cluster(seeds), prefix)
    }

    pub fn with_endpoint(endpoint: RedisEndpoint, prefix: impl Into<String>) -> Self {
        Self {
            endpoint,
            prefix: prefix.into(),
            wait_aof: false,
            wait_replicas: 0,
            replica_id: format!("replica-{}", hex_id()),
            heartbeat: Duration::from_secs(15),
        }
    }
}

fn hex_id() -> String {
    let n: u64 = rand::rng().random();
    format!("{n:016x}")
}

struct Scripts {
    register: redis::Script,
    orphan: redis::Script,
    delete_channel: redis::Script,
    enqueue: redis::Script,
    lease: redis::Script,
    ack: redis::Script,
    nack: redis::Script,
    extend: redis::Script,
    release: redis::Script,
    sweep: redis::Script,
    replay: redis::Script,
    delete_dead: redis::Script,
    rotate: redis::Script,
    add_connection: redis::Script,
    peek: redis::Script,
    stats: redis::Script,
    dead_letters: redis::Script,
    lease_counts: redis::Script,
    rate_limit: redis::Script,
    generation: redis::Script,
}

impl Scripts {
    fn new() -> Self {
        use scripts::*;
        Self {
            register: build(REGISTER),
            orphan: build(ORPHAN),
            delete_channel: build(DELETE_CHANNEL),
            enqueue: build(ENQUEUE),
            lease: build(LEASE),
            ack: build(ACK),
            nack: build(NACK),
            extend: build(EXTEND),
            release: build(RELEASE),
            sweep: build(SWEEP),
            replay: build(REPLAY),
            delete_dead: build(DELETE_DEAD),
            rotate: build(ROTATE),
            add_connection: build(ADD_CONNECTION),
            peek: build(PEEK),
            stats: build(STATS),
            dead_letters: build(DEAD_LETTERS),
            lease_counts: build(LEASE_COUNTS),
            rate_limit: redis::Script::new(RATE_LIMIT),
            generation: redis::Script::new(GENERATION),
        }
    }
}

struct Inner {
    opts: RedisOptions,
    con: RedisConn,
    clock: Arc<dyn Clock>,
    scripts: Scripts,
    /// `P:channels`
    channels_key: String,
    /// `P:ctl`
    ctl: String,
    notifiers: crate::notifiers::Notifiers,
    /// Connections registered through this process: (channel, connection).
    local_conns: Mutex<HashSet<(String, String)>>,
    /// Connections that leased through this process; their leases are released on close.
    leased: Mutex<HashSet<(String, String)>>,
    /// `None` when Redis answered the last check.
    failure: Mutex<Option<String>>,
    closed: AtomicBool,
    /// `P:gen`
    gen_key: String,
    /// The `P:gen` value this process saw last.
    generation: Mutex<Option<String>>,
    /// Bumped whenever `P:gen` changed under this process: Redis lost its data.
    epoch: AtomicU64,
    /// When the data loss was last noticed.
    lost_at: Mutex<Option<std::time::Instant>>,
    /// Serializes generation checks (the ping loop and failing scripts may race).
    gen_check: tokio::sync::Mutex<()>,
    /// Close requests addressed to this replica's connections (`close` on `P:ctl`).
    close_tx: tokio::sync::mpsc::Sender<(String, String)>,
    /// Channels another replica changed (`token`, `chan`, `del` on `P:ctl`).
    change_tx: tokio::sync::mpsc::Sender<String>,
}

/// The Redis backend. Cheap to share behind an `Arc<dyn Buffer>`.
pub struct RedisBuffer {
    inner: Arc<Inner>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    close_rx: Mutex<Option<tokio::sync::mpsc::Receiver<(String, String)>>>,
    change_rx: Mutex<Option<tokio::sync::mpsc::Receiver<String>>>,
}

impl std::fmt::Debug for RedisBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBuffer")
            .field("prefix", &self.inner.opts.prefix)
            .finish_non_exhaustive()
    }
}

impl Drop for RedisBuffer {
    fn drop(&mut self) {
        for t in self.tasks.get_mut().drain(..) {
            t.abort();
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> BufferError {
    BufferError::Unavailable(format!("redis: {e}"))
}

impl RedisBuffer {
    /// Test hook: only the first step of [`Buffer::create_hosted_channel`] (the place in the
    /// account's channel set), as a replica that crashed right after it would leave things.
    /// `false` when the account had no room.
    #[cfg(any(test, feature = "test-suite"))]
    pub async fn reserve_channel_place_only(
        &self,
        c: &HostedChannelRecord,
        max_channels: u64,
    ) -> Result<bool> {
        self.inner.reserve_channel_place(c, max_channels).await
    }

    /// Connects (failing with [`BufferError::Unavailable`] when Redis cannot be reached) and
    /// starts the background tasks: health ping, connection refresh, `P:ctl` subscriber.
    pub async fn open(opts: RedisOptions, clock: Arc<dyn Clock>) -> Result<Self> {
        if !valid_prefix(&opts.prefix) {
            return Err(BufferError::Unavailable(format!(
                "invalid Redis key prefix {:?}",
                opts.prefix
            )));
        }
        let con = RedisConn::connect(&opts.endpoint)
            .await
            .map_err(unavailable)?;
        let (close_tx, close_rx) = tokio::sync::mpsc::channel(1024);
        let (change_tx, change_rx) = tokio::sync::mpsc::channel(1024);
        let inner = Arc::new(Inner {
            close_tx,
            change_tx,
            channels_key: format!("{}:channels", opts.prefix),
            ctl: format!("{}:ctl", opts.prefix),
            gen_key: format!("{}:gen", opts.prefix),
            opts,
            con,
            clock,
            scripts: Scripts::new(),
            notifiers: crate::notifiers::Notifiers::default(),
            local_conns: Mutex::new(HashSet::new()),
            leased: Mutex::new(HashSet::new()),
            failure: Mutex::new(None),
            closed: AtomicBool::new(false),
            generation: Mutex::new(None),
            epoch: AtomicU64::new(0),
            lost_at: Mutex::new(None),
            gen_check: tokio::sync::Mutex::new(()),
        });
        // Fail early on a server without the commands we need.
        let mut con = inner.con.clone();
        let _: String = redis::cmd("PING")
            .query_async(&mut con)
            .await
            .map_err(unavailable)?;
        inner.check_generation().await.map_err(unavailable)?;
        let tasks = vec![
            tokio::spawn(ping_loop(inner.clone())),
            tokio::spawn(refresh_loop(inner.clone())),
            tokio::spawn(subscribe_loop(inner.clone())),
        ];
        Ok(Self {
            inner,
            tasks: Mutex::new(tasks),
            close_rx: Mutex::new(Some(close_rx)),
            change_rx: Mutex::new(Some(change_rx)),
        })
    }

    /// The key prefix in use.
    pub fn prefix(&self) -> &str {
        &self.inner.opts.prefix
    }
}

impl Inner {
    fn note_failure(&self, e: &redis::RedisError) {
        let mut f = self.failure.lock();
        if f.is_none() {
            tracing::warn!(error = %e, "redis unreachable");
        }
        *f = Some(format!("redis: {e}"));
    }

    /// Compares `P:gen` with the value this process saw last (creating it when missing).
    /// Returns whether Redis lost its data since the last check; then [`Buffer::state_epoch`]
    /// moves on and this process's live connections are put back into the registry.
    async fn check_generation(&self) -> redis::RedisResult<bool> {
        let _one = self.gen_check.lock().await;
        let mut con = self.con.clone();
        let current: String = self
            .scripts
            .generation
            .key(&self.gen_key)
            .arg(hex_id())
            .invoke_async(&mut con)
            .await?;
        if self.failure.lock().take().is_some() {
            tracing::info!("redis reachable again");
        }
        let previous = self.generation.lock().replace(current.clone());
        let lost = previous.is_some_and(|p| p != current);
        if lost {
            *self.lost_at.lock() = Some(std::time::Instant::now());
            self.epoch.fetch_add(1, Ordering::AcqRel);
            tracing::warn!(
                "redis lost its data (restarted without persistence, or flushed); \
                 channels are registered again"
            );
            let conns: Vec<(String, String)> = self.local_conns.lock().iter().cloned().collect();
            let now = self.clock.now().micros();
            self.touch_connections(&conns, now, false).await?;
        }
        Ok(lost)
    }

    /// Sets the last-seen time of connections in the registry (`existing_only`: only those
    /// still registered). One command per key, sent concurrently: in a cluster the keys live
    /// in different slots, so they cannot share a pipeline.
    async fn touch_connections(
        &self,
        conns: &[(String, String)],
        now: i64,
        existing_only: bool,
    ) -> redis::RedisResult<()> {
        let sends = conns.iter().map(|(channel, conn)| {
            let keys = ChannelKeys::new(&self.opts.prefix, channel);
            let mut cmd = redis::cmd("ZADD");
            cmd.arg(keys.conn());
            if existing_only {
                cmd.arg("XX");
            }
            cmd.arg(now).arg(conn);
            let mut con = self.con.clone();
            async move { cmd.query_async::<()>(&mut con).await }
        });
        futures::future::try_join_all(sends).await.map(|_| ())
    }

    /// Within [`LOST_DATA_GRACE`] of noticing a data loss: the cloud may not have registered
    /// every channel again yet.
    fn recently_lost(&self) -> bool {
        self.lost_at
            .lock()
            .is_some_and(|t| t.elapsed() < LOST_DATA_GRACE)
    }

    fn err(&self, e: redis::RedisError) -> BufferError {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_unrecoverable_error()
        {
            self.note_failure(&e);
        }
        unavailable(e)
    }

    fn ensure_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BufferError::Unavailable("buffer closed".into()));
        }
        Ok(())
    }

    fn notifier(&self, channel: &str) -> Arc<Notify> {
        self.notifiers.get(channel)
    }

    fn wake_payload(&self, channel: &str) -> String {
        format!("wake\n{}\n{channel}", self.opts.replica_id)
    }

    /// Tells the other replicas that a channel's stored state changed (`chan`: registered,
    /// `del`: deleted), so they re-read it now rather than at their next periodic re-read.
    async fn publish_change(&self, kind: &str, channel: &str) -> Result<()> {
        let mut con = self.con.clone();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&self.ctl)
            .arg(format!("{kind}\n{}\n{channel}", self.opts.replica_id))
            .query_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Runs a channel script; `nf` becomes [`BufferError::ChannelNotFound`]. Returns the
    /// status and the remaining values.
    async fn run(
        &self,
        script: &redis::Script,
        channel: &str,
        args: &[String],
    ) -> Result<(String, Vec<Value>)> {
        self.ensure_open()?;
        let keys = ChannelKeys::new(&self.opts.prefix, channel);
        let mut inv = script.prepare_invoke();
        for k in keys.all() {
            inv.key(k);
        }
        for a in args {
            inv.arg(a);
        }
        let mut con = self.con.clone();
        let v: Value = inv.invoke_async(&mut con).await.map_err(|e| self.err(e))?;
        let mut items = array(v).into_iter();
        let status = items.next().map(|v| text(&v)).unwrap_or_default();
        if status == "nf" {
            // A configured channel is missing when Redis lost its data: that is an outage
            // (503, retry) until the channels are registered again, not "no such channel".
            let lost = self.check_generation().await.map_err(|e| self.err(e))?;
            if lost || self.recently_lost() {
                return Err(BufferError::Unavailable(
                    "redis lost its data; channels are being registered again".into(),
                ));
            }
            return Err(BufferError::ChannelNotFound);
        }
        Ok((status, items.collect()))
    }

    /// Write confirmation before a durable operation answers (§10.3 durability).
    async fn confirm(&self) -> Result<()> {
        let mut con = self.con.clone();
        if self.opts.wait_aof {
            // In a cluster every primary answers (for the writes this process sent it).
            let r: Value = redis::cmd("WAITAOF")
                .arg(1)
                .arg(0)
                .arg(CONFIRM_TIMEOUT_MS)
                .query_async(&mut con)
                .await
                .map_err(|e| self.err(e))?;
            if conn::min_local_aof(&r).unwrap_or(0) < 1 {
                return Err(BufferError::Unavailable(
                    "redis: the write was not confirmed on disk in time".into(),
                ));
            }
        }
        let n = self.opts.wait_replicas;
        if n > 0 {
            let r: i64 = redis::cmd("WAIT")
                .arg(n)
                .arg(CONFIRM_TIMEOUT_MS)
                .query_async(&mut con)
                .await
                .map_err(|e| self.err(e))?;
            if r < i64::from(n) {
                return Err(BufferError::Unavailable(format!(
                    "redis: {r} of {n} replicas confirmed the write in time"
                )));
            }
        }
        Ok(())
    }

    fn stale_before(&self, now: Timestamp) -> i64 {
        now.micros() - 3 * self.opts.heartbeat.as_micros() as i64
    }

    async fn release(&self, channel: &str, connection: &str) -> Result<Vec<String>> {
        let (_, rest) = self
            .run(
                &self.scripts.release,
                channel,
                &[
                    connection.to_owned(),
                    self.ctl.clone(),
                    self.wake_payload(channel),
                ],
            )
            .await?;
        self.leased
            .lock()
            .remove(&(channel.to_owned(), connection.to_owned()));
        let ids: Vec<String> = rest.iter().map(text).collect();
        if !ids.is_empty() {
            self.notifier(channel).notify_one();
        }
        Ok(ids)
    }

    async fn state(&self, name: &str) -> Result<Option<ChannelRecord>> {
        self.ensure_open()?;
        let keys = ChannelKeys::new(&self.opts.prefix, name);
        let mut con = self.con.clone();
        let v: Value = redis::cmd("HGETALL")
            .arg(&keys.all()[0])
            .query_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        let m = flat_map(v);
        if !m.contains_key("created_at") {
            return Ok(None);
        }
        record_from(name, &m).map(Some)
    }

    fn message_record(&self, json: &str, att: &str, state: MessageState) -> Result<MessageRecord> {
        let a = Att::parse(att);
        Ok(MessageRecord {
            message: parse_message(json)?,
            attempts: a.attempts(),
            state,
            leased_to: None,
            lease_expires_at: None,
            next_attempt_at: None,
            reason: a.reason.as_deref().and_then(parse_reason),
            dead_lettered_at: micros(a.dl.as_ref()),
        })
    }

    async fn replay_one(&self, channel: &str, message_id: &str) -> Result<ReplayOutcome> {
        let Some(dl) = self.dead_letter(channel, message_id).await? else {
            return Ok(ReplayOutcome::NotFound);
        };
        let now = self.clock.now();
        let mut msg = (*dl.message).clone();
        let ttl_us = msg.expires_at.micros() - msg.received_at.micros();
        msg.expires_at = Timestamp::from_micros(now.micros().saturating_add(ttl_us));
        let json = serde_json::to_string(&msg)
            .map_err(|e| BufferError::Unavailable(format!("serializing message: {e}")))?;
        let (_, rest) = self
            .run(
                &self.scripts.replay,
                channel,
                &[
                    message_id.to_owned(),
                    json,
                    msg.expires_at.micros().to_string(),
                    msg.received_at.micros().to_string(),
                    self.ctl.clone(),
                    self.wake_payload(channel),
                ],
            )
            .await?;
        match rest.first().map(text).as_deref() {
            Some("ok") => {
                self.notifier(channel).notify_one();
                Ok(ReplayOutcome::Replayed)
            }
            Some("full") => Ok(ReplayOutcome::QueueFull),
            _ => Ok(ReplayOutcome::NotFound),
        }
    }

    async fn dead_letter(&self, channel: &str, message_id: &str) -> Result<Option<MessageRecord>> {
        let (_, rest) = self
            .run(
                &self.scripts.dead_letters,
                channel,
                &["0".into(), message_id.to_owned()],
            )
            .await?;
        let mut it = rest.into_iter().skip(1);
        match (it.next(), it.next(), it.next()) {
            (Some(_), Some(json), Some(att)) => self
                .message_record(&text(&json), &text(&att), MessageState::DeadLettered)
                .map(Some),
            _ => Ok(None),
        }
    }
}

#[async_trait]
impl Buffer for RedisBuffer {
    fn backend_name(&self) -> &'static str {
        "redis"
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn health(&self) -> BufferHealth {
        if self.inner.closed.load(Ordering::Acquire) {
            return BufferHealth {
                ok: false,
                readable: false,
                reason: Some("buffer closed".into()),
            };
        }
        match self.inner.failure.lock().clone() {
            Some(reason) => BufferHealth {
                ok: false,
                readable: false,
                reason: Some(reason),
            },
            None => BufferHealth {
                ok: true,
                readable: true,
                reason: None,
            },
        }
    }

    fn notifier(&self, channel: &str) -> Arc<Notify> {
        self.inner.notifier(channel)
    }

    async fn register_channel(&self, reg: ChannelRegistration) -> Result<Registered> {
        let i = &self.inner;
        let now = i.clock.now().micros().to_string();
        let settings = serde_json::to_string(&reg.settings)
            .map_err(|e| BufferError::Unavailable(format!("serializing settings: {e}")))?;
        let ids = format!("\n{}\n", reg.webhook_ids.join("\n"));
        let fallback = reg
            .webhook_ids
            .first()
            .cloned()
            .unwrap_or_else(|| reg.owner.clone());
        let s = &reg.settings;
        let (_, rest) = i
            .run(
                &i.scripts.register,
                &reg.name,
                &[
                    now,
                    settings,
                    ids,
                    fallback,
                    reg.owner.clone(),
                    reg.configured_token_digest.clone(),
                    s.max_queue_size.to_string(),
                    (s.ack_timeout_seconds * 1_000_000).to_string(),
                    s.max_delivery_attempts.to_string(),
                    s.retry_backoff_max_seconds.to_string(),
                    (s.dlq_retention_seconds * 1_000_000).to_string(),
                ],
            )
            .await?;
        let mut it = rest.into_iter();
        let created = it.next().map(|v| int(&v)) == Some(1);
        let changed = it.next().map(|v| int(&v)) == Some(1);
        let state = flat_map(it.next().unwrap_or(Value::Nil));
        let mut con = i.con.clone();
        let _: i64 = redis::cmd("SADD")
            .arg(&i.channels_key)
            .arg(&reg.name)
            .query_async(&mut con)
            .await
            .map_err(|e| i.err(e))?;
        i.confirm().await?;
        i.publish_change("chan", &reg.name).await?;
        Ok(Registered {
            record: record_from(&reg.name, &state)?,
            configured_token_changed: changed,
            created,
        })
    }

    async fn orphan_channel(&self, name: &str) -> Result<()> {
        let i = &self.inner;
        let now = i.clock.now().micros().to_string();
        i.run(&i.scripts.orphan, name, &[now]).await?;
        i.confirm().await
    }

    async fn delete_channel(&self, name: &str) -> Result<u64> {
        let i = &self.inner;
        let (_, rest) = i
            .run(
                &i.scripts.delete_channel,
                name,
                &["always".into(), "0".into(), "0".into()],
            )
            .await?;
        let mut con = i.con.clone();
        let _: i64 = redis::cmd("SREM")
            .arg(&i.channels_key)
            .arg(name)
            .query_async(&mut con)
            .await
            .map_err(|e| i.err(e))?;
        i.notifier(name).notify_waiters();
        i.confirm().await?;
        i.publish_change("del", name).await?;
        Ok(rest.first().map(int).unwrap_or(0).max(0) as u64)
    }

    async fn channel(&self, name: &str) -> Result<Option<ChannelRecord>> {
        self.inner.state(name).await
    }

    async fn channels(&self) -> Result<Vec<ChannelRecord>> {
        let i = &self.inner;
        i.ensure_open()?;
        let mut con = i.con.clone();
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&i.channels_key)
            .query_async(&mut con)
            .await
            .map_err(|e| i.err(e))?;
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for n in names {
            if let Some(r) = i.state(&n).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    async fn enqueue(&self, mut message: StoredMessage) -> Result<(String, u64)> {
        let i = &self.inner;
        let channel = message.channel.clone();
        let wh_full = message
            .namespace
            .as_ref()
            .map(|ns| format!("{ns}/{}", message.webhook_id))
            .unwrap_or_default();
        for _ in 0..8 {
            message.sequence = 0;
            let json = serde_json::to_string(&message)
                .map_err(|e| BufferError::Unavailable(format!("serializing message: {e}")))?;
            if json.len() > MAX_STORED_MESSAGE_BYTES {
                return Err(BufferError::TooLarge);
            }
            let (before, after) = split_at_sequence(&json)?;
            let (status, rest) = i
                .run(
                    &i.scripts.enqueue,
                    &channel,
                    &[
                        message.message_id.clone(),
                        before,
                        after,
                        message.expires_at.micros().to_string(),
                        message.received_at.micros().to_string(),
                        wh_full.clone(),
                        message.webhook_id.clone(),
                        i.ctl.clone(),
                        i.wake_payload(&channel),
                    ],
                )
                .await?;
            match status.as_str() {
                "ok" => {
                    let seq = rest.first().map(int).unwrap_or(0) as u64;
                    i.confirm().await?;
                    i.notifier(&channel).notify_one();
                    return Ok((message.message_id, seq));
                }
                "orph" => return Err(BufferError::Orphaned),
                "full" => return Err(BufferError::QueueFull),
                "dup" => message.message_id = new_message_id(),
                other => {
                    return Err(BufferError::Unavailable(format!(
                        "redis: unexpected enqueue answer {other:?}"
                    )));
                }
            }
        }
        Err(BufferError::Unavailable(
            "redis: could not find a free message id".into(),
        ))
    }

    async fn lease_within(
        &self,
        channel: &str,
        connection: &str,
        max: usize,
        max_bytes: u64,
    ) -> Result<Vec<Leased>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let i = &self.inner;
        let now = i.clock.now().micros().to_string();
        // 0: no byte budget (Lua numbers cannot hold u64::MAX exactly).
        let budget = if max_bytes >= 1 << 52 {
            0
        } else {
            max_bytes.max(1)
        };
        let (_, rest) = i
            .run(
                &i.scripts.lease,
                channel,
                &[
                    connection.to_owned(),
                    max.to_string(),
                    now,
                    budget.to_string(),
                ],
            )
            .await?;
        let mut out = Vec::with_capacity(rest.len() / 3);
        for c in rest.chunks(3) {
            if let [_, json, dc] = c {
                out.push(Leased {
                    message: parse_message(&text(json))?,
                    delivery_count: int(dc) as u32,
                });
            }
        }
        if !out.is_empty() {
            i.leased
                .lock()
                .insert((channel.to_owned(), connection.to_owned()));
        }
        Ok(out)
    }

    async fn ack(&self, channel: &str, message_id: &str, connection: &str) -> Result<AckOutcome> {
        let i = &self.inner;
        let (_, rest) = i
            .run(
                &i.scripts.ack,
                channel,
                &[message_id.to_owned(), connection.to_owned()],
            )
            .await?;
        Ok(match rest.first().map(int).unwrap_or(0) {
            0 => AckOutcome::NotInFlight,
            n => AckOutcome::Settled { held_lease: n == 2 },
        })
    }

    async fn nack(
        &self,
        channel: &str,
        message_id: &str,
        connection: &str,
        retry: bool,
        error: Option<String>,
    ) -> Result<NackOutcome> {
        let i = &self.inner;
        let now = i.clock.now().micros().to_string();
        let jitter: f64 = rand::rng().random_range(0.8..=1.2);
        let has_error = error.is_some();
        let error: String = error
            .map(|e| e.chars().take(MAX_ERROR_CHARS).collect())
            .unwrap_or_default();
        let (_, rest) = i
            .run(
                &i.scripts.nack,
                channel,
                &[
                    message_id.to_owned(),
                    connection.to_owned(),
                    if retry { "1" } else { "0" }.into(),
                    error,
                    if has_error { "1" } else { "0" }.into(),
                    now,
                    format!("{jitter:.6}"),
                ],
            )
            .await?;
        let kind = rest.first().map(text).unwrap_or_default();
        Ok(match kind.as_str() {
            "delayed" => NackOutcome::Delayed {
                until: Timestamp::from_micros(rest.get(1).map(int).unwrap_or(0)),
            },
            "dl" => match rest.get(1).map(text).as_deref().and_then(parse_reason) {
                Some(r) => NackOutcome::DeadLettered(r),
                None => NackOutcome::DeadLettered(DeadLetterReason::Rejected),
            },
            _ => NackOutcome::NotHeld,
        })
    }

    async fn extend(&self, channel: &str, message_id: &str, connection: &str) -> Result<bool> {
        let i = &self.inner;
        let now = i.clock.now().micros().to_string();
        let (_, rest) = i
            .run(
                &i.scripts.extend,
                channel,
                &[message_id.to_owned(), connection.to_owned(), now],
            )
            .await?;
        Ok(rest.first().map(int) == Some(1))
    }

    async fn release(&self, channel: &str, connection: &str) -> Result<Vec<String>> {
        self.inner.release(channel, connection).await
    }

    async fn sweep(&self, orphan_retention: Option<Duration>) -> Result<SweepReport> {
        let i = &self.inner;
        i.ensure_open()?;
        let now = i.clock.now();
        let now_s = now.micros().to_string();
        let mut con = i.con.clone();
        let mut names: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&i.channels_key)
            .query_async(&mut con)
            .await
            .map_err(|e| i.err(e))?;
        names.sort();
        let mut report = SweepReport::default();
        for name in names {
            let r = i
                .run(
                    &i.scripts.sweep,
                    &name,
                    &[now_s.clone(), i.ctl.clone(), i.wake_payload(&name)],
                )
                .await;
            let rest = match r {
                Ok((_, rest)) => rest,
                Err(BufferError::ChannelNotFound) => continue,
                Err(e) => return Err(e),
            };
            let promoted = rest.first().map(int).unwrap_or(0) as u64;
            let expired = rest.get(1).map(int).unwrap_or(0) as u64;
            report.promoted += promoted;
            report.expired += expired;
            report.dead_lettered += expired;
            report.dlq_removed += rest.get(2).map(int).unwrap_or(0) as u64;
            let lost: Vec<LostLease> = rest[3.min(rest.len())..]
                .chunks(2)
                .filter_map(|c| match c {
                    [conn, mid] => Some(LostLease {
                        channel: name.clone(),
                        connection_id: text(conn),
                        message_id: text(mid),
                    }),
                    _ => None,
                })
                .collect();
            if !lost.is_empty() || promoted > 0 {
                i.notifier(&name).notify_one();
            }
            report.expired_leases.extend(lost);
            if let Some(retention) = orphan_retention {
                let (_, rest) = i
                    .run(
                        &i.scripts.delete_channel,
                        &name,
                        &[
                            "orphan_due".into(),
                            now_s.clone(),
                            retention.as_micros().to_string(),
                        ],
                    )
                    .await?;
                if rest.first().map(int).unwrap_or(-1) >= 0 {
                    let _: i64 = redis::cmd("SREM")
                        .arg(&i.channels_key)
                        .arg(&name)
                        .query_async(&mut con)
                        .await
                        .map_err(|e| i.err(e))?;
                    i.notifier(&name).notify_waiters();
                    i.publish_change("del", &name).await?;
                    report.channels_deleted.push(name);
                }
            }
        }
        Ok(report)
    }

    async fn dead_letters(&self, channel: &str, limit: usize) -> Result<(Vec<MessageRecord>, u64)> {
        let i = &self.inner;
        if limit == 0 {
            let (_, rest) = i.run(&i.scripts.stats, channel, &[]).await?;
            return Ok((Vec::new(), rest.get(3).map(int).unwrap_or(0) as u64));
        }
        let (_, rest) = i
            .run(
                &i.scripts.dead_letters,
                channel,
                &[limit.to_string(), String::new()],
            )
            .await?;
        let total = rest.first().map(int).unwrap_or(0) as u64;
        let mut out = Vec::new();
        for c in rest[1.min(rest.len())..].chunks(3) {
            if let [_, json, att] = c {
                out.push(i.message_record(&text(json), &text(att), MessageState::DeadLettered)?);
            }
        }
        Ok((out, total))
    }

    async fn dead_letter(&self, channel: &str, message_id: &str) -> Result<Option<MessageRecord>> {
        self.inner.dead_letter(channel, message_id).await
    }

    async fn replay(&self, channel: &str, message_id: &str) -> Result<ReplayOutcome> {
        let out = self.inner.replay_one(channel, message_id).await?;
        self.inner.confirm().await?;
        Ok(out)
    }

    async fn replay_all(&self, channel: &str, limit: Option<u64>) -> Result<BulkReplay> {
        let i = &self.inner;
        i.ensure_open()?;
        let keys = ChannelKeys::new(&i.opts.prefix, channel);
        let stop = limit.map_or(-1, |l| l as i64 - 1);
        if limit == Some(0) {
            let (_, rest) = i.run(&i.scripts.stats, channel, &[]).await?;
            return Ok(BulkReplay {
                replayed: 0,
                remaining: rest.get(3).map(int).unwrap_or(0) as u64,
                stopped_queue_full: false,
            });
        }
        // Fails with ChannelNotFound for an unknown channel.
        i.run(&i.scripts.stats, channel, &[]).await?;
        let mut con = i.con.clone();
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&keys.all()[8])
            .arg(0)
            .arg(stop)
            .query_async(&mut con)
            .await
            .map_err(|e| i.err(e))?;
        let mut replayed = 0;
        let mut stopped_queue_full = false;
        for id in ids {
            match i.replay_one(channel, &id).await? {
                ReplayOutcome::Replayed => replayed += 1,
                ReplayOutcome::QueueFull => {
                    stopped_queue_full = true;
                    break;
                }
                ReplayOutcome::NotFound => {}
            }
        }
        i.confirm().await?;
        let remaining: u64 = redis::cmd("ZCARD")
            .arg(&keys.all()[8])
            .query_async(&mut con)
            .await
            .map_err(|e| i.err(e))?;
        Ok(BulkReplay {
            replayed,
            remaining,
            stopped_queue_full,
        })
    }

    async fn delete_dead_letter(&self, channel: &str, message_id: &str) -> Result<bool> {
        let i = &self.inner;
        if message_id.is_empty() {
            return Ok(false);
        }
        let (_, rest) = i
            .run(&i.scripts.delete_dead, channel, &[message_id.to_owned()])
            .await?;
        i.confirm().await?;
        Ok(rest.first().map(int).unwrap_or(0) > 0)
    }

    async fn purge_dead_letters(&self, channel: &str) -> Result<u64> {
        let i = &self.inner;
        let (_, rest) = i
            .run(&i.scripts.delete_dead, channel, &[String::new()])
            .await?;
        i.confirm().await?;
        Ok(rest.first().map(int).unwrap_or(0) as u64)
    }

    async fn peek(
        &self,
        channel: &str,
        filter: PeekFilter,
        limit: usize,
    ) -> Result<Vec<MessageRecord>> {
        let i = &self.inner;
        let f = match filter {
            PeekFilter::Ready => "ready",
            PeekFilter::InFlight => "in_flight",
            PeekFilter::Delayed => "delayed",
            PeekFilter::All => "all",
        };
        let (_, rest) = i
            .run(&i.scripts.peek, channel, &[f.into(), limit.to_string()])
            .await?;
        let mut out = Vec::new();
        for c in rest.chunks(7) {
            let [_, state, holder, json, att, deadline, due] = c else {
                continue;
            };
            let json = text(json);
            if json.is_empty() {
                continue;
            }
            let state = match text(state).as_str() {
                "in_flight" => MessageState::InFlight,
                "delayed" => MessageState::Delayed,
                _ => MessageState::Ready,
            };
            let mut r = i.message_record(&json, &text(att), state)?;
            r.reason = None;
            r.dead_lettered_at = None;
            if state == MessageState::InFlight {
                r.leased_to = Some(text(holder));
                r.lease_expires_at = micros_str(&text(deadline));
            }
            if state == MessageState::Delayed {
                r.next_attempt_at = micros_str(&text(due));
            }
            out.push(r);
        }
        Ok(out)
    }

    async fn stats(&self, channel: &str) -> Result<BufferStats> {
        let i = &self.inner;
        let (_, rest) = i.run(&i.scripts.stats, channel, &[]).await?;
        let mut it = rest.into_iter();
        let c = flat_map(it.next().unwrap_or(Value::Nil));
        let stream_len = it.next().map(|v| int(&v)).unwrap_or(0).max(0) as u64;
        let delayed = it.next().map(|v| int(&v)).unwrap_or(0).max(0) as u64;
        let dead = it.next().map(|v| int(&v)).unwrap_or(0).max(0) as u64;
        let in_flight = it.next().map(|v| int(&v)).unwrap_or(0).max(0) as u64;
        let wh = flat_map(it.next().unwrap_or(Value::Nil));
        let oldest = it.next().map(|v| text(&v)).unwrap_or_default();
        let n = |k: &str| c.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Ok(BufferStats {
            counters: Counters {
                received: n("received"),
                dispatched: n("delivered"),
                acked: n("acked"),
                nacked: n("nacked"),
                expired: n("expired"),
                dead_lettered: n("dead_lettered"),
                rejected: n("rejected"),
                exhausted: n("exhausted"),
                replayed: n("replayed"),
                discarded: n("discarded"),
                dead_letters_dropped: n("dead_letters_dropped"),
            },
            ready: stream_len.saturating_sub(in_flight),
            in_flight,
            delayed,
            dead_letters: dead,
            oldest_unsettled_at: micros_str(&oldest),
            webhook_pending: wh
                .into_iter()
                .filter_map(|(k, v)| v.parse::<u64>().ok().filter(|n| *n > 0).map(|n| (k, n)))
                .collect::<BTreeMap<_, _>>(),
        })
    }

    async fn rotate_token(
        &self,
        channel: &str,
        new_digest: String,
        grace_seconds: u64,
    ) -> Result<TokenState> {
        let i = &self.inner;
        let now = i.clock.now();
        let expires = now.plus_seconds(grace_seconds as f64);
        let (_, rest) = i
            .run(
                &i.scripts.rotate,
                channel,
                &[
                    new_digest,
                    expires.micros().to_string(),
                    now.micros().to_string(),
                    i.ctl.clone(),
                    format!("token\n{}\n{channel}", i.opts.replica_id),
                ],
            )
            .await?;
        i.confirm().await?;
        let state = flat_map(rest.into_iter().next().unwrap_or(Value::Nil));
        Ok(record_from(channel, &state)?.token)
    }

    async fn add_connection(&self, channel: &str, connection: &str, max: u64) -> Result<bool> {
        let i = &self.inner;
        let now = i.clock.now();
        let (_, rest) = i
            .run(
                &i.scripts.add_connection,
                channel,
                &[
                    connection.to_owned(),
                    max.to_string(),
                    now.micros().to_string(),
                    i.stale_before(now).to_string(),
                ],
            )
            .await?;
        let added = rest.first().map(int) == Some(1);
        if added {
            i.local_conns
                .lock()
                .insert((channel.to_owned(), connection.to_owned()));
        }
        Ok(added)
    }

    async fn remove_connection(&self, channel: &str, connection: &str) -> Result<()> {
        let i = &self.inner;
        i.ensure_open()?;
        i.local_conns
            .lock()
            .remove(&(channel.to_owned(), connection.to_owned()));
        let keys = ChannelKeys::new(&i.opts.prefix, channel);
        let mut con = i.con.clone();
        let _: i64 = redis::cmd("ZREM")
            .arg(keys.conn())
            .arg(connection)
            .query_async(&mut con)
            .await
            .map_err(|e| i.err(e))?;
        Ok(())
    }

    async fn connection_count(&self, channel: &str) -> Result<u64> {
        let i = &self.inner;
        i.ensure_open()?;
        let keys = ChannelKeys::new(&i.opts.prefix, channel);
        let mut con = i.con.clone();
        let n: u64 = redis::cmd("ZCOUNT")
            .arg(keys.conn())
            .arg(i.stale_before(i.clock.now()))
            .arg("+inf")
            .query_async(&mut con)
            .await
            .map_err(|e| i.err(e))?;
        Ok(n)
    }

    async fn has_connection(&self, channel: &str, connection: &str) -> Result<bool> {
        let i = &self.inner;
        i.ensure_open()?;
        let keys = ChannelKeys::new(&i.opts.prefix, channel);
        let mut con = i.con.clone();
        let score: Option<f64> = redis::cmd("ZSCORE")
            .arg(keys.conn())
            .arg(connection)
            .query_async(&mut con)
            .await
            .map_err(|e| i.err(e))?;
        Ok(score.is_some_and(|s| s as i64 >= i.stale_before(i.clock.now())))
    }

    async fn request_close(&self, channel: &str, connection: &str) -> Result<bool> {
        if !self.has_connection(channel, connection).await? {
            return Ok(false);
        }
        let i = &self.inner;
        let mut con = i.con.clone();
        let _: i64 = redis::cmd("PUBLISH")
            .arg(&i.ctl)
            .arg(format!(
                "close\n{}\n{channel}\n{connection}",
                i.opts.replica_id
            ))
            .query_async(&mut con)
            .await
            .map_err(|e| i.err(e))?;
        Ok(true)
    }

    fn close_requests(&self) -> Option<tokio::sync::mpsc::Receiver<(String, String)>> {
        self.close_rx.lock().take()
    }

    fn channel_changes(&self) -> Option<tokio::sync::mpsc::Receiver<String>> {
        self.change_rx.lock().take()
    }

    fn state_epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    async fn rate_limit(
        &self,
        key: &str,
        max_requests: u64,
        window: Duration,
    ) -> Result<Option<std::result::Result<(), u64>>> {
        let i = &self.inner;
        i.ensure_open()?;
        let now = i.clock.now().micros();
        let rl_key = format!("{}:rl:{}", i.opts.prefix, keys::encode_channel(key));
        let mut con = i.con.clone();
        let v: Vec<i64> = i
            .scripts
            .rate_limit
            .key(rl_key)
            .arg(now)
            .arg(window.as_micros() as i64)
            .arg(max_requests)
            .arg(format!("{now}-{}", hex_id()))
            .invoke_async(&mut con)
            .await
            .map_err(|e| i.err(e))?;
        Ok(Some(match v.as_slice() {
            [1, ..] => Ok(()),
            [_, retry_us, ..] => Err(((*retry_us as f64) / 1e6).ceil().max(1.0) as u64),
            _ => Ok(()),
        }))
    }

    async fn lease_counts(&self, channel: &str) -> Result<Option<HashMap<String, u64>>> {
        let i = &self.inner;
        let (_, rest) = i.run(&i.scripts.lease_counts, channel, &[]).await?;
        Ok(Some(
            rest.chunks(2)
                .filter_map(|c| match c {
                    [k, v] => Some((text(k), int(v).max(0) as u64)),
                    _ => None,
                })
                .collect(),
        ))
    }

    async fn create_account(&self, account: &AccountRecord, max_accounts: u64) -> Result<Created> {
        self.inner.create_account(account, max_accounts).await
    }

    async fn put_account(&self, account: &AccountRecord) -> Result<bool> {
        self.inner.put_account(account).await
    }

    async fn account(&self, account_id: &str) -> Result<Option<AccountRecord>> {
        self.inner.account(account_id).await
    }

    async fn account_by_key(&self, key_digest: &str) -> Result<Option<AccountRecord>> {
        self.inner.account_by_key(key_digest).await
    }

    async fn accounts(&self) -> Result<Vec<AccountRecord>> {
        self.inner.accounts().await
    }

    async fn account_count(&self) -> Result<u64> {
        self.inner.account_count().await
    }

    async fn delete_account(&self, account_id: &str) -> Result<bool> {
        self.inner.delete_account(account_id).await
    }

    async fn create_hosted_channel(
        &self,
        channel: &HostedChannelRecord,
        max_channels: u64,
    ) -> Result<Created> {
        self.inner
            .create_hosted_channel(channel, max_channels)
            .await
    }

    async fn put_hosted_channel(&self, channel: &HostedChannelRecord) -> Result<bool> {
        self.inner.put_hosted_channel(channel).await
    }

    async fn hosted_channel(&self, name: &str) -> Result<Option<HostedChannelRecord>> {
        self.inner.hosted_channel(name).await
    }

    async fn hosted_channel_by_webhook(
        &self,
        webhook_id: &str,
    ) -> Result<Option<HostedChannelRecord>> {
        self.inner.hosted_channel_by_webhook(webhook_id).await
    }

    async fn hosted_channels(&self) -> Result<Vec<HostedChannelRecord>> {
        self.inner.hosted_channels().await
    }

    async fn hosted_channel_names(&self) -> Result<Vec<String>> {
        self.inner.hosted_channel_names().await
    }

    async fn hosted_channel_count(&self) -> Result<u64> {
        self.inner.hosted_channel_count().await
    }

    async fn account_channels(&self, account_id: &str) -> Result<Vec<HostedChannelRecord>> {
        self.inner.account_channels(account_id).await
    }

    async fn delete_hosted_channel(&self, name: &str) -> Result<bool> {
        self.inner.delete_hosted_channel(name).await
    }

    async fn close(&self) -> Result<()> {
        let i = &self.inner;
        if i.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        // A replica going away hands its leases back at once (§6.5), so another replica
        // (or this one, reopened) redelivers them without waiting for the ack timeout.
        let leased: Vec<(String, String)> = i.leased.lock().iter().cloned().collect();
        for (channel, conn) in leased {
            match i.release(&channel, &conn).await {
                Ok(_) | Err(BufferError::ChannelNotFound) => {}
                Err(e) => tracing::warn!(error = %e, "releasing leases on close failed"),
            }
        }
        let conns: Vec<(String, String)> = i.local_conns.lock().drain().collect();
        for (channel, conn) in conns {
            let _ = self.remove_connection(&channel, &conn).await;
        }
        i.closed.store(true, Ordering::Release);
        for t in self.tasks.lock().drain(..) {
            t.abort();
        }
        Ok(())
    }
}
