//! The embedded backend (PROTOCOL §10.2): one node, one process, one data directory.
//!
//! Why this shape (docs/ARCHITECTURE.md has the measurements behind it):
//! - Memory holds an index, not the messages: one `channel::Chan` per channel behind its own
//!   mutex keeps, per message, where its record is, its times, attempts and place — about a
//!   hundred bytes whatever the body size. Every operation is atomic per channel.
//! - Messages live in an append-only log of segment files (`log`, format in `codec`):
//!   headers and raw body bytes are written once, read when leased, peeked or shown as a
//!   dead letter, and a segment is deleted once nothing in it is live. Channels, tokens and
//!   counters live in a small redb file (`meta`).
//! - One writer thread (`writer`) appends in submission order with group commit (one
//!   `pwrite` + one `fdatasync` per batch). Changes are submitted while the channel lock is
//!   held, so disk order equals memory order; an enqueued message becomes visible (ready)
//!   only from the writer's post-commit callback, which therefore also runs in sequence
//!   order.
//! - Start-up reads redb and the heads of the log's records, never a body.
//! - An exclusive lock file keeps a second process off the directory.
//!
//! Lock order: the channel map, then one channel, then the segment table. The writer thread
//! takes channel locks only in callbacks and never the map, and nothing blocks on the writer
//! while holding a channel lock.

mod channel;
mod codec;
mod due;
mod hosted;
mod ids;
mod log;
mod meta;
mod migrate;
mod pipeline;
mod reserve;
mod room;
mod writer;

use std::collections::{HashMap, HashSet};
use std::fs::{DirBuilder, File, OpenOptions};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use connect_protocol::admin::ChannelState;
use connect_protocol::message::{Attempts, StoredMessage};
use connect_protocol::time::Timestamp;
use parking_lot::{Mutex, RwLock};
use tokio::sync::oneshot;

use self::channel::{AttemptsAt, Chan, ChanRef, Env, ScanMessage, View};
use self::due::DueIndex;
use self::log::{Loc, Segments};
use self::writer::{Job, OnCommit, Shared, Writer};
use crate::{BufferError, Clock, MessageRecord, Result};

pub use self::log::LogStats;

/// Encoded size above which a message is refused with [`BufferError::TooLarge`].
pub const MAX_STORED_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

const LOCK_FILE: &str = "LOCK";
const DB_FILE: &str = "buffer.redb";
const LOG_DIR: &str = "log";
/// A head segment with less than this share of live bytes is copied forward and deleted.
const COMPACT_BELOW: f64 = 0.5;
/// The head segment is compacted only once its live bytes have not changed for this long:
/// a head that is being drained (live bytes falling) is left to the consumer instead of
/// being copied forward — copying it cost a third of a drain's disk writes and a
/// segment-sized buffer.
const COMPACT_STALL: Duration = Duration::from_secs(5);
/// At most this many bytes of records are copied forward per round (one writer batch), so
/// compaction never needs more memory than this; the next round follows a stall later.
const COMPACT_ROUND_BYTES: u64 = 4 * 1024 * 1024;

/// Tunables of the embedded backend.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// A new log segment is started once the active one reaches this size.
    pub segment_bytes: u64,
    /// Dead letters kept per channel; the oldest beyond this are dropped and counted
    /// (`Counters::dead_letters_dropped`).
    pub max_dead_letters: u64,
    /// Batches whose `fdatasync` may be in the device at once (pipelined group commit;
    /// 1 is the plain group commit).
    pub syncs_in_flight: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            segment_bytes: 64 * 1024 * 1024,
            max_dead_letters: 10_000,
            syncs_in_flight: 1,
        }
    }
}

pub struct EmbeddedBuffer {
    channels: RwLock<HashMap<Arc<str>, ChanRef>>,
    /// Notifiers asked for before their channel exists (a live channel holds its own).
    notifiers: crate::notifiers::Notifiers,
    connections: Mutex<HashMap<String, HashSet<String>>>,
    clock: Arc<dyn Clock>,
    shared: Arc<Shared>,
    env: Env,
    /// `None` once closed.
    writer: RwLock<Option<Writer>>,
    closed: AtomicBool,
    /// Held (and locked) until the backend is closed or dropped.
    lock: Mutex<Option<File>>,
    /// The head segment and its live bytes when the sweep last saw them change, and when.
    head_seen: Mutex<Option<(u32, u64, Instant)>>,
    /// `COMPACT_STALL`, shorter in tests.
    compact_stall: Mutex<Duration>,
    /// Accounts and self-service channels (`hosted.redb`).
    hosted: hosted::HostedStore,
    /// Channels with timed work (`due`); the sweep visits only those.
    due: Arc<DueIndex>,
    /// The orphan retention of the last sweep (`None` before the first): the first sweep and
    /// one after a change of it visit every channel.
    swept_retention: Mutex<Option<Option<Duration>>>,
    /// Channels the sweeps visited, for tests.
    sweep_visits: AtomicU64,
}

impl std::fmt::Debug for EmbeddedBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBuffer").finish_non_exhaustive()
    }
}

impl EmbeddedBuffer {
    /// Opens (creating if needed) the store in `dir` with the default options.
    pub fn open(dir: &Path, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::open_with(dir, clock, EmbeddedOptions::default())
    }

    /// Opens (creating if needed) the store in `dir`. Fails with [`BufferError::Locked`] when
    /// another open backend holds the directory, and with [`BufferError::Unavailable`] on
    /// I/O errors or a store written by a newer version. A format-1 store is upgraded.
    pub fn open_with(dir: &Path, clock: Arc<dyn Clock>, options: EmbeddedOptions) -> Result<Self> {
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

        let log_dir = dir.join(LOG_DIR);
        let segments = Segments::new(&log_dir);
        let due = Arc::new(DueIndex::default());
        let env = Env {
            segments: segments.clone(),
            max_dead_letters: options.max_dead_letters,
            due: due.clone(),
            last_settings: Arc::default(),
        };
        // Each channel goes where it will live (its `Arc<Mutex<Chan>>`) at once; the log scan
        // finds it through handles. A map of the channels themselves (~560 B each inline,
        // moved into their `Arc`s afterwards) was ~0.9 KB per channel at the open's peak,
        // pages that stayed resident after a restart (issue #14).
        // Channels are read from the store one at a time (no list of them all either).
        let mut map: HashMap<Arc<str>, ChanRef> = HashMap::new();
        let mut by_id: HashMap<u64, ChanRef> = HashMap::new();
        // Opened first: a self-service channel shares its name and webhook id with its record
        // there (issue #14).
        let hosted = hosted::HostedStore::open(&dir.join(hosted::FILE))?;
        let (db, next_id) = meta::open(&dir.join(DB_FILE), &log_dir, |l| {
            let id = l.disk.id;
            let mut c = Chan::load(l, &env);
            if let Some((name, webhook_id)) = hosted.shared_strings(&c.record.name) {
                c.record.share(&name, &webhook_id);
            }
            let c: ChanRef = Arc::new(Mutex::new(c));
            map.insert(c.lock().record.name.clone(), c.clone());
            by_id.insert(id, c);
        })?;
        let started = Instant::now();
        let mut records = 0u64;
        log::open(&segments, |r| {
            records += 1;
            scan_record(&by_id, r);
        })
        .map_err(|e| io("reading the message log in", e))?;
        drop(by_id);
        for c in map.values() {
            c.lock().finish_scan();
        }
        let stats = segments.stats();
        tracing::info!(
            channels = map.len(),
            records,
            messages = stats.live_messages,
            log_bytes = stats.bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "buffer store opened"
        );
        let shared = Arc::new(Shared {
            failure: Mutex::new(None),
            fail_commits: AtomicBool::new(false),
            fail_syncs: AtomicBool::new(false),
            next_channel_id: AtomicU64::new(next_id),
            segments,
            segment_bytes: options.segment_bytes.max(1),
        });
        if !reserve::ensure(&dir.join(DB_FILE)) {
            tracing::warn!(
                dir = %dir.display(),
                "no room for the 1 MiB reserve file: a disk filled by the queue may then need space freed by hand"
            );
        }
        let writer = Writer::spawn(
            db,
            dir.join(DB_FILE),
            shared.clone(),
            options.syncs_in_flight,
        )?;
        Ok(Self {
            channels: RwLock::new(map),
            notifiers: crate::notifiers::Notifiers::default(),
            connections: Mutex::new(HashMap::new()),
            clock,
            shared,
            env,
            writer: RwLock::new(Some(writer)),
            closed: AtomicBool::new(false),
            lock: Mutex::new(Some(lock)),
            head_seen: Mutex::new(None),
            compact_stall: Mutex::new(COMPACT_STALL),
            hosted,
            due,
            swept_retention: Mutex::new(None),
            sweep_visits: AtomicU64::new(0),
        })
    }

    /// Test hook: entries of the notifier map and of the due-work heap (stale ones included),
    /// and channels the heap has forgotten.
    #[cfg(any(test, feature = "test-suite"))]
    pub fn index_sizes(&self) -> (usize, usize, usize) {
        let (heap, forgotten) = self.due.len();
        (self.notifiers.len(), heap, forgotten)
    }

    /// Test hook: how many channels the sweeps have visited.
    #[cfg(any(test, feature = "test-suite"))]
    pub fn sweep_visits(&self) -> u64 {
        self.sweep_visits.load(Ordering::Relaxed)
    }

    /// Fault injection for tests: while on, every write fails as an I/O error would.
    /// Test hook: how long the head segment must stay unchanged before it is compacted.
    #[cfg(any(test, feature = "test-suite"))]
    pub fn set_compact_stall(&self, stall: Duration) {
        *self.compact_stall.lock() = stall;
    }

    #[cfg(any(test, feature = "test-suite"))]
    pub fn fail_commits(&self, on: bool) {
        self.shared.fail_commits.store(on, Ordering::SeqCst);
    }

    /// Fault injection for tests: while on, every `fdatasync` of an appended batch fails
    /// (the records are in the file, as after a real failed sync, but not durable).
    #[cfg(any(test, feature = "test-suite"))]
    pub fn fail_syncs(&self, on: bool) {
        self.shared.fail_syncs.store(on, Ordering::SeqCst);
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

    /// Runs `f` on the channel under its lock and ships the records it queued. With
    /// `durable`, waits until they are written.
    async fn with_chan<T>(
        &self,
        name: &str,
        durable: bool,
        f: impl FnOnce(&mut Chan) -> T,
    ) -> Result<T> {
        let chan = self.chan(name)?;
        let (then, rx) = done_signal(durable);
        let (value, rejected) = {
            let mut c = chan.lock();
            if c.deleted {
                return Err(BufferError::ChannelNotFound);
            }
            let value = f(&mut c);
            let rejected = c
                .take_job(&chan, durable, then)
                .and_then(|job| self.send(job).err());
            (value, rejected)
        };
        if let Some(job) = rejected {
            job.fail("buffer writer stopped");
            return Err(BufferError::Unavailable("buffer writer stopped".into()));
        }
        if let Some(rx) = rx {
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
        let (then, rx) = done_signal(true);
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
            c.forget_schedule();
            let rejected = c
                .take_job(&chan, true, then)
                .and_then(|job| self.send(job).err());
            c.wake_waiters();
            (discarded, rejected)
        };
        self.connections.lock().remove(name);
        if let Some(job) = rejected {
            job.fail("buffer writer stopped");
        }
        if let Some(rx) = rx {
            wait(rx).await?;
        }
        Ok(Some(discarded))
    }

    /// Reads and decodes a message record.
    fn read_message(&self, channel: &str, loc: Loc) -> Result<StoredMessage> {
        let bytes = self
            .shared
            .segments
            .read(loc)
            .map_err(|e| BufferError::Unavailable(format!("reading the message log: {e}")))?;
        codec::decode_message_record(&bytes, channel)
            .map_err(|e| BufferError::Unavailable(e.to_string()))
    }

    /// A view completed with the message (and its error text) from the log.
    fn complete(&self, channel: &str, v: View) -> Result<MessageRecord> {
        let message = self.read_message(channel, v.loc)?;
        let attempts = match v.attempts {
            AttemptsAt::Known(a) => a,
            AttemptsAt::InLog(loc, delivery_count) => Attempts {
                delivery_count,
                ..channel::attempts_in_log(&self.shared.segments, loc).unwrap_or_default()
            },
        };
        Ok(MessageRecord {
            message: Arc::new(message),
            attempts,
            state: v.state,
            leased_to: v.leased_to,
            lease_expires_at: v.lease_expires_at,
            next_attempt_at: v.next_attempt_at,
            reason: v.reason,
            dead_lettered_at: v.dead_lettered_at,
        })
    }

    /// A dead letter's record re-encoded with a fresh TTL from `now`, for a replay.
    fn replay_record(
        &self,
        channel: &str,
        chan_id: u64,
        seq: u64,
        loc: Loc,
        now: Timestamp,
    ) -> channel::Replayed {
        let mut msg = match self.read_message(channel, loc) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(channel, seq, error = %e, "a dead letter could not be read for its replay");
                return None;
            }
        };
        let ttl_us = msg.expires_at.micros() - msg.received_at.micros();
        msg.expires_at = Timestamp::from_micros(now.micros().saturating_add(ttl_us));
        Some((
            codec::message_record(chan_id, seq, &msg),
            msg.expires_at.micros(),
        ))
    }

    /// Copies the few live records of a mostly dead head segment forward, so the writer can
    /// delete it (a dead letter or a delayed message would otherwise pin it).
    async fn compact_head(&self) -> Result<()> {
        let Some((head, size, live_bytes)) = self.shared.segments.head() else {
            return Ok(());
        };
        if live_bytes == 0 || live_bytes as f64 >= size as f64 * COMPACT_BELOW {
            return Ok(());
        }
        {
            let stall = *self.compact_stall.lock();
            let mut seen = self.head_seen.lock();
            match *seen {
                Some((seg, live, since)) if seg == head && live == live_bytes => {
                    if since.elapsed() < stall {
                        return Ok(());
                    }
                }
                _ => {
                    *seen = Some((head, live_bytes, Instant::now()));
                    if !stall.is_zero() {
                        return Ok(());
                    }
                }
            }
            *seen = Some((head, live_bytes, Instant::now()));
        }
        let names: Vec<Arc<str>> = self.channels.read().keys().cloned().collect();
        let mut copied = 0;
        let mut budget = COMPACT_ROUND_BYTES;
        for name in names {
            if budget == 0 {
                break;
            }
            match self
                .with_chan(&name, false, |c| c.compact(head, &mut budget))
                .await
            {
                Ok(n) => copied += n,
                Err(BufferError::ChannelNotFound) => {}
                Err(e) => return Err(e),
            }
        }
        tracing::debug!(
            segment = head,
            copied,
            "compacting the head of the message log"
        );
        Ok(())
    }
}

/// Applies one scanned record to the channel it belongs to (records of deleted channels,
/// whose ids no channel has, are skipped).
fn scan_record(by_id: &HashMap<u64, ChanRef>, r: log::Scanned<'_>) {
    let applied = match r.kind {
        codec::KIND_MESSAGE => codec::message_index(r.head).map(|index| {
            if let Some(c) = by_id.get(&index.chan_id) {
                c.lock().scan_message(ScanMessage { index, loc: r.loc });
            }
        }),
        codec::KIND_STATE => codec::decode_state(r.head).map(|s| {
            if let Some(c) = by_id.get(&s.chan_id) {
                c.lock().scan_state(s, r.loc);
            }
        }),
        codec::KIND_PAD => Ok(()),
        _ => codec::decode_settle(r.head).map(|(chan_id, seq)| {
            if let Some(c) = by_id.get(&chan_id) {
                c.lock().scan_settle(seq);
            }
        }),
    };
    if let Err(e) = applied {
        tracing::warn!(segment = r.loc.seg, offset = r.loc.off, error = %e, "skipping a log record");
    }
}

type Done = oneshot::Receiver<Result<(), String>>;

/// A callback that reports a job's outcome, and its receiver (only when `durable`).
fn done_signal(durable: bool) -> (Option<OnCommit>, Option<Done>) {
    if !durable {
        return (None, None);
    }
    let (tx, rx) = oneshot::channel();
    let then: OnCommit = Box::new(move |r: Result<&[Loc], String>| {
        let _ = tx.send(r.map(drop));
    });
    (Some(then), Some(rx))
}

impl Drop for EmbeddedBuffer {
    fn drop(&mut self) {
        // Write whatever is queued and close the database before the lock file goes.
        if let Some(w) = self.writer.get_mut().take() {
            w.shutdown();
        }
        self.lock.get_mut().take();
    }
}

async fn wait(rx: Done) -> Result<()> {
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

mod backend;

fn orphan_due(c: &Chan, retention: Option<Duration>, now: Timestamp) -> bool {
    let (Some(retention), Some(since)) = (retention, c.record.orphaned_at) else {
        return false;
    };
    c.record.state == ChannelState::Orphaned
        && c.is_empty()
        && since.plus_seconds(retention.as_secs_f64()) <= now
}
