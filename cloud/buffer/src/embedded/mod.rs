//! The embedded backend (PROTOCOL §10.2): one node, one process, one data directory.
//!
//! Why this shape:
//! - All runtime state lives in memory, one `channel::Chan` per channel behind its own
//!   mutex, so every operation is atomic per channel and reads never touch the disk.
//! - The on-disk store (`store`, redb) is the durable record. It is loaded completely at
//!   open; leases are not persisted, so formerly leased messages come back ready, in
//!   sequence order, with their persisted `delivery_count`.
//! - One writer thread applies changes in submission order with group commit. Changes are
//!   submitted while the channel lock is held, so disk order equals memory order; an
//!   enqueued message becomes visible (ready) only from the writer's post-commit callback,
//!   which therefore also runs in sequence order.
//! - An exclusive lock file keeps a second process off the directory.
//!
//! Lock order: the channel map, then one channel. The writer thread takes channel locks
//! only in callbacks and never the map, and nothing blocks while holding a channel lock.

mod channel;
mod store;

use std::collections::{HashMap, HashSet};
use std::fs::{DirBuilder, File, OpenOptions};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use connect_protocol::admin::ChannelState;
use connect_protocol::message::StoredMessage;
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, oneshot};

use self::channel::Chan;
use self::store::{Job, Shared, Writer};
use crate::{
    AckOutcome, Buffer, BufferError, BufferHealth, BufferStats, BulkReplay, ChannelRecord,
    ChannelRegistration, Clock, Leased, MessageRecord, NackOutcome, PeekFilter, Registered,
    ReplayOutcome, Result, SweepReport, TokenState,
};

/// Serialized size above which a message is refused with [`BufferError::TooLarge`].
pub const MAX_STORED_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

const LOCK_FILE: &str = "LOCK";
const DB_FILE: &str = "buffer.redb";

type ChanRef = Arc<Mutex<Chan>>;

pub struct EmbeddedBuffer {
    channels: RwLock<HashMap<String, ChanRef>>,
    notifiers: Mutex<HashMap<String, Arc<Notify>>>,
    connections: Mutex<HashMap<String, HashSet<String>>>,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
    /// `None` once closed.
    writer: RwLock<Option<Writer>>,
    closed: AtomicBool,
    /// Held (and locked) until the backend is closed or dropped.
    lock: Mutex<Option<File>>,
}

impl std::fmt::Debug for EmbeddedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBuffer").finish_non_exhaustive()
    }
}

impl EmbeddedBuffer {
    /// Opens (creating if needed) the store in `dir`. Fails with [`BufferError::Locked`] when
    /// another open backend holds the directory, and with [`BufferError::Unavailable`] on
    /// I/O errors or a store written by a newer version.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        let io = |what: &str, e: std::io::Error| {
            BufferError::Unavailable(format!("{what} {}: {e}", dir.display()))
        };
        create_private_dir(dir).map_err(|e| io("creating data directory", e))?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(|e| io("opening the lock file in", e))?;
        lock_exclusive(&lock, dir)?;

        let (db, loaded) = store::open(&dir.join(DB_FILE))?;
        let this = Self {
            channels: RwLock::new(HashMap::new()),
            notifiers: Mutex::new(HashMap::new()),
            connections: Mutex::new(HashMap::new()),
            clock,
            shared: Arc::new(Shared::default()),
            writer: RwLock::new(None),
            closed: AtomicBool::new(false),
            lock: Mutex::new(Some(lock)),
        };
        {
            let mut map = this.channels.write();
            for l in loaded {
                let notify = this.notifier(&l.name);
                let name = l.name.clone();
                map.insert(name, Arc::new(Mutex::new(Chan::load(l, notify))));
            }
        }
        *this.writer.write() = Some(Writer::spawn(db, this.shared.clone())?);
        Ok(this)
    }

    /// Fault injection for tests: while on, every commit fails as an I/O error would.
    #[cfg(any(test, feature = "test-suite"))]
    pub fn fail_commits(&self, on: bool) {
        self.shared.fail_commits.store(on, Ordering::SeqCst);
    }

    fn ensure_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(BufferError::Unavailable("buffer closed".into()));
        }
        Ok(())
    }

    fn chan(&self, name: &str) -> Result<ChanRef> {
        self.ensure_open()?;
        self.channels
            .read()
            .get(name)
            .cloned()
            .ok_or(BufferError::ChannelNotFound)
    }

    /// Hands a job to the writer; on failure gives it back so the caller can fail it after
    /// releasing its locks (its callback may take the channel lock).
    fn send(&self, job: Job) -> Result<(), Job> {
        match self.writer.read().as_ref() {
            Some(w) => w.send(job),
            None => Err(job),
        }
    }

    /// Runs `f` on the channel under its lock and ships the writes it queued. With
    /// `durable`, waits until they are committed.
    async fn with_chan<T>(
        &self,
        name: &str,
        durable: bool,
        f: impl FnOnce(&mut Chan) -> T,
    ) -> Result<T> {
        let chan = self.chan(name)?;
        let (tx, rx) = oneshot::channel();
        let on_commit: Option<store::OnCommit> = durable.then(|| {
            Box::new(move |r: Result<(), String>| {
                let _ = tx.send(r);
            }) as store::OnCommit
        });
        let (value, rejected) = {
            let mut c = chan.lock();
            if c.deleted {
                return Err(BufferError::ChannelNotFound);
            }
            let value = f(&mut c);
            let rejected = c
                .take_job(durable, on_commit)
                .and_then(|job| self.send(job).err());
            (value, rejected)
        };
        if let Some(job) = rejected {
            job.fail("buffer writer stopped");
            return Err(BufferError::Unavailable("buffer writer stopped".into()));
        }
        if durable {
            wait(rx).await?;
        }
        Ok(value)
    }

    /// Deletes a channel when `only_if` holds; returns the unsettled messages discarded.
    async fn remove_channel(
        &self,
        name: &str,
        only_if: impl Fn(&Chan) -> bool,
    ) -> Result<Option<u64>> {
        self.ensure_open()?;
        let (tx, rx) = oneshot::channel();
        let done: store::OnCommit = Box::new(move |r| {
            let _ = tx.send(r);
        });
        let (discarded, rejected) = {
            let mut map = self.channels.write();
            let Some(chan) = map.get(name).cloned() else {
                return Ok(None);
            };
            let mut c = chan.lock();
            if !only_if(&c) {
                return Ok(None);
            }
            map.remove(name);
            let discarded = c.delete();
            let rejected = c
                .take_job(true, Some(done))
                .and_then(|job| self.send(job).err());
            c.notify.notify_waiters();
            (discarded, rejected)
        };
        self.connections.lock().remove(name);
        if let Some(job) = rejected {
            job.fail("buffer writer stopped");
        }
        wait(rx).await?;
        Ok(Some(discarded))
    }
}

impl Drop for EmbeddedBuffer {
    fn drop(&mut self) {
        // Commit whatever is queued and close the database before the lock file goes.
        if let Some(w) = self.writer.get_mut().take() {
            w.shutdown();
        }
        self.lock.get_mut().take();
    }
}

async fn wait(rx: oneshot::Receiver<Result<(), String>>) -> Result<()> {
    match rx.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(BufferError::Unavailable(e)),
        Err(_) => Err(BufferError::Unavailable("buffer writer stopped".into())),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).create(dir)
}

fn lock_exclusive(file: &File, dir: &Path) -> Result<()> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(BufferError::Locked(dir.display().to_string()))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(BufferError::Unavailable(format!(
            "locking {}: {e}",
            dir.join(LOCK_FILE).display()
        ))),
    }
}

#[async_trait]
impl Buffer for EmbeddedBuffer {
    fn backend_name(&self) -> &'static str {
        "embedded"
    }

    fn health(&self) -> BufferHealth {
        if self.closed.load(Ordering::Acquire) {
            return BufferHealth {
                ok: false,
                reason: Some("buffer closed".into()),
            };
        }
        match self.shared.failure.lock().clone() {
            Some(e) => BufferHealth {
                ok: false,
                reason: Some(format!("buffer store write failed: {e}")),
            },
            None => BufferHealth {
                ok: true,
                reason: None,
            },
        }
    }

    fn notifier(&self, channel: &str) -> Arc<Notify> {
        self.notifiers
            .lock()
            .entry(channel.to_owned())
            .or_default()
            .clone()
    }

    async fn register_channel(&self, reg: ChannelRegistration) -> Result<Registered> {
        self.ensure_open()?;
        let now = self.clock.now();
        let (tx, rx) = oneshot::channel();
        let done: store::OnCommit = Box::new(move |r| {
            let _ = tx.send(r);
        });
        let (registered, rejected) = {
            let mut map = self.channels.write();
            let existing = map.get(&reg.name).cloned();
            let (chan, registered) = match existing {
                Some(chan) => {
                    let registered = chan.lock().register(reg, now);
                    (chan, registered)
                }
                None => {
                    let notify = self.notifier(&reg.name);
                    let name = reg.name.clone();
                    let c = Chan::create(reg, now, notify);
                    let registered = Registered {
                        record: c.record.clone(),
                        configured_token_changed: false,
                        created: true,
                    };
                    let chan = Arc::new(Mutex::new(c));
                    map.insert(name, chan.clone());
                    (chan, registered)
                }
            };
            let mut c = chan.lock();
            let rejected = c
                .take_job(true, Some(done))
                .and_then(|job| self.send(job).err());
            (registered, rejected)
        };
        if let Some(job) = rejected {
            job.fail("buffer writer stopped");
        }
        wait(rx).await?;
        Ok(registered)
    }

    async fn orphan_channel(&self, name: &str) -> Result<()> {
        let now = self.clock.now();
        self.with_chan(name, true, |c| c.orphan(now)).await
    }

    async fn delete_channel(&self, name: &str) -> Result<u64> {
        self.remove_channel(name, |_| true)
            .await?
            .ok_or(BufferError::ChannelNotFound)
    }

    async fn channel(&self, name: &str) -> Result<Option<ChannelRecord>> {
        self.ensure_open()?;
        let chan = self.channels.read().get(name).cloned();
        Ok(chan.map(|c| c.lock().record.clone()))
    }

    async fn channels(&self) -> Result<Vec<ChannelRecord>> {
        self.ensure_open()?;
        let chans: Vec<ChanRef> = self.channels.read().values().cloned().collect();
        let mut records: Vec<ChannelRecord> =
            chans.iter().map(|c| c.lock().record.clone()).collect();
        records.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(records)
    }

    async fn enqueue(&self, mut message: StoredMessage) -> Result<(String, u64)> {
        // Serialize outside the lock: the sequence lives in the store key, not in these bytes.
        let bytes = serde_json::to_vec(&message)
            .map_err(|e| BufferError::Unavailable(format!("serializing message: {e}")))?;
        if bytes.len() > MAX_STORED_MESSAGE_BYTES {
            return Err(BufferError::TooLarge);
        }
        let chan = self.chan(&message.channel)?;
        let (tx, rx) = oneshot::channel();
        let rejected = {
            let mut c = chan.lock();
            if c.deleted {
                return Err(BufferError::ChannelNotFound);
            }
            let seq = c.reserve(&mut message, bytes)?;
            let msg = Arc::new(message);
            let handle = chan.clone();
            let done: store::OnCommit = Box::new(move |r| {
                let mut c = handle.lock();
                match r {
                    Ok(()) => {
                        let id = msg.message_id.clone();
                        c.publish(msg);
                        c.notify.notify_one();
                        let _ = tx.send(Ok((id, seq)));
                    }
                    Err(e) => {
                        c.unreserve(&msg);
                        let _ = tx.send(Err(BufferError::Unavailable(e)));
                    }
                }
            });
            c.take_job(true, Some(done))
                .and_then(|job| self.send(job).err())
        };
        if let Some(job) = rejected {
            job.fail("buffer writer stopped");
        }
        rx.await
            .unwrap_or_else(|_| Err(BufferError::Unavailable("buffer writer stopped".into())))
    }

    async fn lease(&self, channel: &str, connection: &str, max: usize) -> Result<Vec<Leased>> {
        let now = self.clock.now();
        self.with_chan(channel, false, |c| c.lease(connection, max, now))
            .await
    }

    async fn ack(&self, channel: &str, message_id: &str, connection: &str) -> Result<AckOutcome> {
        self.with_chan(channel, false, |c| c.ack(message_id, connection))
            .await
    }

    async fn nack(
        &self,
        channel: &str,
        message_id: &str,
        connection: &str,
        retry: bool,
        error: Option<String>,
    ) -> Result<NackOutcome> {
        let now = self.clock.now();
        self.with_chan(channel, false, |c| {
            c.nack(message_id, connection, retry, error, now)
        })
        .await
    }

    async fn extend(&self, channel: &str, message_id: &str, connection: &str) -> Result<bool> {
        let now = self.clock.now();
        self.with_chan(channel, false, |c| c.extend(message_id, connection, now))
            .await
    }

    async fn release(&self, channel: &str, connection: &str) -> Result<Vec<String>> {
        self.with_chan(channel, false, |c| {
            let ids = c.release(connection);
            if !ids.is_empty() {
                c.notify.notify_one();
            }
            ids
        })
        .await
    }

    async fn sweep(&self, orphan_retention: Option<std::time::Duration>) -> Result<SweepReport> {
        self.ensure_open()?;
        let now = self.clock.now();
        let names: Vec<String> = self.channels.read().keys().cloned().collect();
        let mut report = SweepReport::default();
        let mut doomed = Vec::new();
        for name in names {
            let r = self
                .with_chan(&name, false, |c| {
                    if c.sweep(now, &mut report) {
                        c.notify.notify_one();
                    }
                    orphan_due(c, orphan_retention, now)
                })
                .await;
            match r {
                Ok(true) => doomed.push(name),
                Ok(false) | Err(BufferError::ChannelNotFound) => {}
                Err(e) => return Err(e),
            }
        }
        for name in doomed {
            let removed = self
                .remove_channel(&name, |c| orphan_due(c, orphan_retention, now))
                .await?;
            if removed.is_some() {
                report.channels_deleted.push(name);
            }
        }
        Ok(report)
    }

    async fn dead_letters(&self, channel: &str, limit: usize) -> Result<(Vec<MessageRecord>, u64)> {
        Ok(self.chan(channel)?.lock().dead_letters(limit))
    }

    async fn dead_letter(&self, channel: &str, message_id: &str) -> Result<Option<MessageRecord>> {
        Ok(self.chan(channel)?.lock().dead_letter_record(message_id))
    }

    async fn replay(&self, channel: &str, message_id: &str) -> Result<ReplayOutcome> {
        let now = self.clock.now();
        self.with_chan(channel, true, |c| {
            let outcome = c.replay(message_id, now);
            if outcome == ReplayOutcome::Replayed {
                c.notify.notify_one();
            }
            outcome
        })
        .await
    }

    async fn replay_all(&self, channel: &str, limit: Option<u64>) -> Result<BulkReplay> {
        let now = self.clock.now();
        self.with_chan(channel, true, |c| {
            let outcome = c.replay_all(limit, now);
            if outcome.replayed > 0 {
                c.notify.notify_one();
            }
            outcome
        })
        .await
    }

    async fn delete_dead_letter(&self, channel: &str, message_id: &str) -> Result<bool> {
        self.with_chan(channel, true, |c| c.delete_dead_letter(message_id))
            .await
    }

    async fn purge_dead_letters(&self, channel: &str) -> Result<u64> {
        self.with_chan(channel, true, Chan::purge_dead_letters)
            .await
    }

    async fn peek(
        &self,
        channel: &str,
        filter: PeekFilter,
        limit: usize,
    ) -> Result<Vec<MessageRecord>> {
        Ok(self.chan(channel)?.lock().peek(filter, limit))
    }

    async fn stats(&self, channel: &str) -> Result<BufferStats> {
        Ok(self.chan(channel)?.lock().stats())
    }

    async fn rotate_token(
        &self,
        channel: &str,
        new_digest: String,
        grace_seconds: u64,
    ) -> Result<TokenState> {
        let now = self.clock.now();
        self.with_chan(channel, true, |c| {
            c.rotate_token(new_digest, grace_seconds, now)
        })
        .await
    }

    async fn add_connection(&self, channel: &str, connection: &str, max: u64) -> Result<bool> {
        self.chan(channel)?;
        let mut conns = self.connections.lock();
        let set = conns.entry(channel.to_owned()).or_default();
        if set.contains(connection) {
            return Ok(true);
        }
        if set.len() as u64 >= max {
            return Ok(false);
        }
        set.insert(connection.to_owned());
        Ok(true)
    }

    async fn remove_connection(&self, channel: &str, connection: &str) -> Result<()> {
        self.ensure_open()?;
        let mut conns = self.connections.lock();
        if let Some(set) = conns.get_mut(channel) {
            set.remove(connection);
            if set.is_empty() {
                conns.remove(channel);
            }
        }
        Ok(())
    }

    async fn connection_count(&self, channel: &str) -> Result<u64> {
        self.ensure_open()?;
        Ok(self
            .connections
            .lock()
            .get(channel)
            .map_or(0, |s| s.len() as u64))
    }

    async fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let writer = self.writer.write().take();
        if let Some(w) = writer {
            // The thread commits everything queued before it exits.
            tokio::task::spawn_blocking(move || w.shutdown())
                .await
                .map_err(|e| BufferError::Unavailable(format!("closing the store: {e}")))?;
        }
        self.lock.lock().take();
        match self.shared.failure.lock().clone() {
            Some(e) => Err(BufferError::Unavailable(e)),
            None => Ok(()),
        }
    }
}

fn orphan_due(
    c: &Chan,
    retention: Option<std::time::Duration>,
    now: connect_protocol::time::Timestamp,
) -> bool {
    let (Some(retention), Some(since)) = (retention, c.record.orphaned_at) else {
        return false;
    };
    c.record.state == ChannelState::Orphaned
        && c.is_empty()
        && since.plus_seconds(retention.as_secs_f64()) <= now
}
