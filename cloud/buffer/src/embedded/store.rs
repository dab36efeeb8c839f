//! The on-disk half of the embedded backend: redb tables, their record formats, start-up
//! loading, and the single writer thread.
//!
//! One thread owns the [`Database`] and applies every change in the order it was submitted.
//! It drains whatever is queued into ONE write transaction and commits once (group commit),
//! so many concurrent enqueues share one `fsync`. Jobs that need durability (enqueue, channel
//! and token changes, admin operations) are committed as soon as they are seen; batches of
//! only non-durable changes (lease bookkeeping, ACK deletions, NACK delays) wait up to
//! [`LAZY_COMMIT`] for company, as §10.1 allows — losing them only causes a redelivery.
//!
//! Record formats (format version [`FORMAT_VERSION`]):
//! - `messages[(channel, sequence)]`: the [`StoredMessage`] as JSON; its `sequence` field is
//!   taken from the key on load (callers serialize before the sequence is known).
//! - `states[(channel, sequence)]`: [`StateDisk`] as JSON; absent means ready, never attempted.
//! - `channels[name]`: [`ChannelDisk`] as JSON.
//! - `counters[name]`: [`CountersDisk`] as JSON (the sequence counter lives here).
//! - `meta["format_version"]`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use connect_protocol::admin::ChannelState;
use connect_protocol::message::{Attempts, DeadLetterReason, StoredMessage};
use connect_protocol::time::Timestamp;
use parking_lot::Mutex;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::{BufferError, ChannelSettings, Counters, Result, TokenState};

/// The on-disk format this build writes. Older versions are migrated at open (none yet);
/// newer ones are refused.
pub(super) const FORMAT_VERSION: u64 = 1;

/// How long a batch of only non-durable changes waits for more work before committing.
const LAZY_COMMIT: Duration = Duration::from_millis(50);

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("channels");
const COUNTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("counters");
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
const STATES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("states");

const FORMAT_KEY: &str = "format_version";

/// A channel's persisted configuration and token state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct ChannelDisk {
    pub settings: ChannelSettings,
    pub owner: String,
    pub webhook_ids: Vec<String>,
    pub state: ChannelState,
    pub orphaned_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub token: TokenState,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(super) struct CountersDisk {
    pub seq: u64,
    pub counters: Counters,
}

/// Where a message is, as far as a restart is concerned (leases are not persisted).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub(super) enum PlaceDisk {
    Ready,
    Delayed {
        until: Timestamp,
    },
    Dead {
        reason: DeadLetterReason,
        at: Timestamp,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct StateDisk {
    pub attempts: Attempts,
    pub place: PlaceDisk,
}

/// One change to the store.
pub(super) enum Write {
    Message {
        channel: String,
        seq: u64,
        bytes: Vec<u8>,
    },
    State {
        channel: String,
        seq: u64,
        bytes: Vec<u8>,
    },
    /// Removes a message and its state.
    Remove {
        channel: String,
        seq: u64,
    },
    Channel {
        name: String,
        bytes: Vec<u8>,
    },
    /// Coalesced per batch: only the last snapshot of a channel is written.
    Counters {
        channel: String,
        bytes: Vec<u8>,
    },
    DropChannel {
        name: String,
    },
}

/// Runs on the writer thread after the batch holding the job committed (or failed).
pub(super) type OnCommit = Box<dyn FnOnce(Result<(), String>) + Send>;

pub(super) struct Job {
    pub writes: Vec<Write>,
    pub durable: bool,
    pub on_commit: Option<OnCommit>,
}

impl Job {
    /// Completes a job that never reached the writer.
    pub fn fail(self, reason: &str) {
        if let Some(done) = self.on_commit {
            done(Err(reason.to_owned()));
        }
    }
}

/// State shared between the writer thread and the backend.
#[derive(Default)]
pub(super) struct Shared {
    /// The last commit failure; `None` once a commit succeeds again.
    pub failure: Mutex<Option<String>>,
    /// Fault injection: every commit fails while set.
    pub fail_commits: AtomicBool,
}

/// Everything read from disk at open, per channel.
pub(super) struct LoadedChannel {
    pub name: String,
    pub disk: ChannelDisk,
    pub counters: CountersDisk,
    /// In sequence order.
    pub messages: Vec<(StoredMessage, Option<StateDisk>)>,
}

fn io(context: &str, e: impl std::fmt::Display) -> BufferError {
    BufferError::Unavailable(format!("{context}: {e}"))
}

/// Opens (or creates) the database, checks the format version and reads everything.
pub(super) fn open(path: &Path) -> Result<(Database, Vec<LoadedChannel>)> {
    let db = Database::builder()
        .create(path)
        .map_err(|e| io("opening the buffer store", e))?;
    check_format(&db)?;
    let loaded = load(&db)?;
    Ok((db, loaded))
}

fn check_format(db: &Database) -> Result<()> {
    let txn = db.begin_write().map_err(|e| io("checking the format", e))?;
    {
        let mut meta = txn
            .open_table(META)
            .map_err(|e| io("checking the format", e))?;
        let found = meta
            .get(FORMAT_KEY)
            .map_err(|e| io("checking the format", e))?
            .map(|v| v.value());
        match found {
            Some(v) if v > FORMAT_VERSION => {
                return Err(BufferError::Unavailable(format!(
                    "buffer store format version {v} is newer than this build supports \
                     ({FORMAT_VERSION}); refusing to open it"
                )));
            }
            Some(v) if v == FORMAT_VERSION => {}
            // A fresh store, or (in future versions) an older format migrated here.
            _ => {
                meta.insert(FORMAT_KEY, FORMAT_VERSION)
                    .map_err(|e| io("writing the format", e))?;
            }
        }
        // Create every table so read transactions never meet a missing one.
        txn.open_table(CHANNELS)
            .map_err(|e| io("creating tables", e))?;
        txn.open_table(COUNTERS)
            .map_err(|e| io("creating tables", e))?;
        txn.open_table(MESSAGES)
            .map_err(|e| io("creating tables", e))?;
        txn.open_table(STATES)
            .map_err(|e| io("creating tables", e))?;
    }
    txn.commit().map_err(|e| io("checking the format", e))
}

fn load(db: &Database) -> Result<Vec<LoadedChannel>> {
    let ctx = "loading the buffer store";
    let txn = db.begin_read().map_err(|e| io(ctx, e))?;
    let channels = txn.open_table(CHANNELS).map_err(|e| io(ctx, e))?;
    let counters = txn.open_table(COUNTERS).map_err(|e| io(ctx, e))?;
    let messages = txn.open_table(MESSAGES).map_err(|e| io(ctx, e))?;
    let states = txn.open_table(STATES).map_err(|e| io(ctx, e))?;

    let mut out = Vec::new();
    for row in channels.iter().map_err(|e| io(ctx, e))? {
        let (name, bytes) = row.map_err(|e| io(ctx, e))?;
        let name = name.value().to_owned();
        let disk: ChannelDisk =
            serde_json::from_slice(bytes.value()).map_err(|e| io("corrupt channel record", e))?;
        let counters = match counters.get(name.as_str()).map_err(|e| io(ctx, e))? {
            Some(v) => {
                serde_json::from_slice(v.value()).map_err(|e| io("corrupt counters record", e))?
            }
            None => CountersDisk::default(),
        };
        let mut msgs = Vec::new();
        let range = (name.as_str(), 0u64)..=(name.as_str(), u64::MAX);
        for row in messages.range(range).map_err(|e| io(ctx, e))? {
            let (key, bytes) = row.map_err(|e| io(ctx, e))?;
            let seq = key.value().1;
            let mut msg: StoredMessage = serde_json::from_slice(bytes.value())
                .map_err(|e| io("corrupt message record", e))?;
            msg.sequence = seq;
            let state = match states.get((name.as_str(), seq)).map_err(|e| io(ctx, e))? {
                Some(v) => Some(
                    serde_json::from_slice(v.value())
                        .map_err(|e| io("corrupt message state", e))?,
                ),
                None => None,
            };
            msgs.push((msg, state));
        }
        out.push(LoadedChannel {
            name,
            disk,
            counters,
            messages: msgs,
        });
    }
    Ok(out)
}

/// The handle to the writer thread.
pub(super) struct Writer {
    tx: Sender<Job>,
    thread: JoinHandle<()>,
}

impl Writer {
    pub fn spawn(db: Database, shared: Arc<Shared>) -> Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("buffer-writer".into())
            .spawn(move || run(db, rx, &shared))
            .map_err(|e| io("starting the writer thread", e))?;
        Ok(Self { tx, thread })
    }

    /// Queues a job; gives it back when the writer is gone.
    pub fn send(&self, job: Job) -> Result<(), Job> {
        self.tx.send(job).map_err(|e| e.0)
    }

    /// Stops accepting jobs, lets the thread commit what is queued and waits for it, which
    /// also closes the database.
    pub fn shutdown(self) {
        drop(self.tx);
        if self.thread.join().is_err() {
            tracing::error!("buffer writer thread panicked");
        }
    }
}

fn run(db: Database, rx: Receiver<Job>, shared: &Shared) {
    let mut batch: Vec<Job> = Vec::new();
    while let Ok(job) = rx.recv() {
        batch.push(job);
        batch.extend(rx.try_iter());
        if !batch.iter().any(|j| j.durable) {
            let deadline = Instant::now() + LAZY_COMMIT;
            while let Ok(job) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                let durable = job.durable;
                batch.push(job);
                if durable {
                    break;
                }
            }
            batch.extend(rx.try_iter());
        }

        let result = commit(&db, &batch, shared.fail_commits.load(Ordering::SeqCst));
        match &result {
            Ok(()) => *shared.failure.lock() = None,
            Err(e) => {
                tracing::error!(error = %e, "buffer commit failed");
                *shared.failure.lock() = Some(e.clone());
            }
        }
        for job in batch.drain(..) {
            if let Some(done) = job.on_commit {
                done(result.clone());
            }
        }
    }
}

fn commit(db: &Database, batch: &[Job], inject_failure: bool) -> Result<(), String> {
    let s = |e: &dyn std::fmt::Display| e.to_string();
    let mut txn = db.begin_write().map_err(|e| s(&e))?;
    txn.set_durability(Durability::Immediate);
    {
        let mut channels = txn.open_table(CHANNELS).map_err(|e| s(&e))?;
        let mut counters = txn.open_table(COUNTERS).map_err(|e| s(&e))?;
        let mut messages = txn.open_table(MESSAGES).map_err(|e| s(&e))?;
        let mut states = txn.open_table(STATES).map_err(|e| s(&e))?;
        let mut latest_counters: HashMap<&str, &[u8]> = HashMap::new();

        for write in batch.iter().flat_map(|j| j.writes.iter()) {
            match write {
                Write::Message {
                    channel,
                    seq,
                    bytes,
                } => messages
                    .insert((channel.as_str(), *seq), bytes.as_slice())
                    .map(drop),
                Write::State {
                    channel,
                    seq,
                    bytes,
                } => states
                    .insert((channel.as_str(), *seq), bytes.as_slice())
                    .map(drop),
                Write::Remove { channel, seq } => messages
                    .remove((channel.as_str(), *seq))
                    .and_then(|_| states.remove((channel.as_str(), *seq)))
                    .map(drop),
                Write::Channel { name, bytes } => {
                    channels.insert(name.as_str(), bytes.as_slice()).map(drop)
                }
                Write::Counters { channel, bytes } => {
                    latest_counters.insert(channel, bytes);
                    Ok(())
                }
                Write::DropChannel { name } => {
                    latest_counters.remove(name.as_str());
                    let range = (name.as_str(), 0u64)..=(name.as_str(), u64::MAX);
                    messages
                        .retain_in(range.clone(), |_, _| false)
                        .and_then(|()| states.retain_in(range, |_, _| false))
                        .and_then(|()| channels.remove(name.as_str()).map(drop))
                        .and_then(|()| counters.remove(name.as_str()).map(drop))
                }
            }
            .map_err(|e| s(&e))?;
        }
        for (channel, bytes) in latest_counters {
            counters.insert(channel, bytes).map_err(|e| s(&e))?;
        }
    }
    if inject_failure {
        txn.abort().map_err(|e| s(&e))?;
        return Err("injected I/O failure".into());
    }
    txn.commit().map_err(|e| s(&e))
}
