//! The small half of the store: channels, their counters and the format version, in redb
//! (`buffer.redb`). Messages live in the log (`log`); this file holds nothing per message.
//!
//! Tables (format version [`FORMAT_VERSION`]):
//! - `meta`: `format_version`, `next_channel_id`.
//! - `channels[name]`: [`ChannelDisk`] as JSON; `id` numbers the channel's records in the log
//!   and is never reused, so records of a deleted channel are ignored by a new one.
//! - `counters[name]`: [`CountersDisk`] as JSON (the sequence counter lives here).
//!
//! Format 1 kept every message in redb as JSON (`messages`, `states`); [`open`] moves such a
//! store into the log once (`migrate`). Format 2 is format 3 without padding records and
//! compact message heads, and format 3 is format 4 without segment headers and sealed records
//! (`codec`); format 4 reads both as they are (a segment without a header is read unsealed and
//! never recycled), so their version number is simply raised. That makes an older build refuse
//! the store instead of taking a padding record or a sealed one for a torn tail and cutting
//! the log there.

use std::collections::HashMap;
use std::path::Path;

use connect_protocol::admin::ChannelState;
use connect_protocol::time::Timestamp;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::migrate;
use crate::{BufferError, ChannelSettings, Counters, Result, TokenState};

/// The on-disk format this build writes. Formats 1 to 3 are upgraded at open; newer ones are
/// refused.
pub(super) const FORMAT_VERSION: u64 = 4;

pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
pub(super) const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("channels");
pub(super) const COUNTERS: TableDefinition<&str, &[u8]> = TableDefinition::new("counters");

pub(super) const FORMAT_KEY: &str = "format_version";
const NEXT_ID_KEY: &str = "next_channel_id";

/// redb's page cache: it holds only channel records now, so a small one is plenty (its
/// default would let a large store grow the process by up to 1 GiB).
const CACHE_BYTES: usize = 4 * 1024 * 1024;

/// A channel's persisted configuration and token state.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct ChannelDisk {
    /// 0 only in format 1 (assigned by the migration).
    #[serde(default)]
    pub id: u64,
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

/// A channel as read at open.
pub(super) struct LoadedChannel {
    pub name: String,
    pub disk: ChannelDisk,
    pub counters: CountersDisk,
}

/// One change to the channel tables.
pub(super) enum MetaWrite {
    Channel {
        name: String,
        bytes: Vec<u8>,
    },
    /// A counters snapshot, serialised only when it is written (most are replaced by a later
    /// one first: one per enqueue, one redb write per batch or per second).
    Counters {
        name: String,
        snap: CountersDisk,
    },
    Drop {
        name: String,
    },
}

pub(super) fn io(context: &str, e: impl std::fmt::Display) -> BufferError {
    BufferError::Unavailable(format!("{context}: {e}"))
}

pub(super) fn open_db(path: &Path) -> Result<Database> {
    crate::store_file::open(path, CACHE_BYTES, "the buffer store")
}

/// Opens (or creates) the database, migrates format 1, and reads every channel, handing each
/// to `each` as it is read (no list of every channel). Returns the database and the next free
/// channel id.
pub(super) fn open(
    path: &Path,
    log_dir: &Path,
    each: impl FnMut(LoadedChannel),
) -> Result<(Database, u64)> {
    crate::store_file::ensure_log_has_its_store(path, log_dir)?;
    let mut db = open_db(path)?;
    let ctx = "checking the format";
    let found = {
        let txn = db.begin_read().map_err(|e| io(ctx, e))?;
        match txn.open_table(META) {
            Ok(t) => t
                .get(FORMAT_KEY)
                .map_err(|e| io(ctx, e))?
                .map(|v| v.value()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(io(ctx, e)),
        }
    };
    match found {
        Some(v) if v > FORMAT_VERSION => {
            return Err(BufferError::Unavailable(format!(
                "buffer store format version {v} is newer than this build supports \
                 ({FORMAT_VERSION}); refusing to open it"
            )));
        }
        Some(FORMAT_VERSION) => {}
        Some(v @ (2 | 3)) => set_version(&db, v)?,
        Some(1) => migrate::from_v1(&mut db, log_dir)?,
        _ => init(&db)?,
    }
    let next_id = load(&db, each)?;
    Ok((db, next_id))
}

/// Records this build's format version (a format-2 or format-3 store needs nothing else).
fn set_version(db: &Database, from: u64) -> Result<()> {
    let ctx = "upgrading the buffer store to the current format";
    let mut txn = db.begin_write().map_err(|e| io(ctx, e))?;
    txn.set_durability(Durability::Immediate);
    {
        let mut meta = txn.open_table(META).map_err(|e| io(ctx, e))?;
        meta.insert(FORMAT_KEY, FORMAT_VERSION)
            .map_err(|e| io(ctx, e))?;
    }
    txn.commit().map_err(|e| io(ctx, e))?;
    tracing::info!("buffer store upgraded from format {from} to format {FORMAT_VERSION}");
    Ok(())
}

fn init(db: &Database) -> Result<()> {
    let ctx = "creating the buffer store";
    let mut txn = db.begin_write().map_err(|e| io(ctx, e))?;
    txn.set_durability(Durability::Immediate);
    {
        let mut meta = txn.open_table(META).map_err(|e| io(ctx, e))?;
        meta.insert(FORMAT_KEY, FORMAT_VERSION)
            .map_err(|e| io(ctx, e))?;
        txn.open_table(CHANNELS).map_err(|e| io(ctx, e))?;
        txn.open_table(COUNTERS).map_err(|e| io(ctx, e))?;
    }
    txn.commit().map_err(|e| io(ctx, e))
}

fn load(db: &Database, mut each: impl FnMut(LoadedChannel)) -> Result<u64> {
    let ctx = "loading the buffer store";
    let txn = db.begin_read().map_err(|e| io(ctx, e))?;
    let meta = txn.open_table(META).map_err(|e| io(ctx, e))?;
    let mut next_id = meta
        .get(NEXT_ID_KEY)
        .map_err(|e| io(ctx, e))?
        .map_or(1, |v| v.value());
    let channels = txn.open_table(CHANNELS).map_err(|e| io(ctx, e))?;
    let counters = txn.open_table(COUNTERS).map_err(|e| io(ctx, e))?;
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
        next_id = next_id.max(disk.id + 1);
        each(LoadedChannel {
            name,
            disk,
            counters,
        });
    }
    Ok(next_id)
}

/// Applies channel writes (and the latest counters of each channel) in one transaction.
/// A counters snapshot as stored (JSON; plain integers, so encoding cannot fail).
fn counters_json(snap: &CountersDisk) -> Vec<u8> {
    serde_json::to_vec(snap).unwrap_or_default()
}

pub(super) fn commit(
    db: &Database,
    writes: &[&MetaWrite],
    counters: &HashMap<String, CountersDisk>,
    next_id: u64,
) -> Result<(), String> {
    let s = |e: &dyn std::fmt::Display| e.to_string();
    let mut txn = db.begin_write().map_err(|e| s(&e))?;
    txn.set_durability(Durability::Immediate);
    {
        let mut channels = txn.open_table(CHANNELS).map_err(|e| s(&e))?;
        let mut counters_t = txn.open_table(COUNTERS).map_err(|e| s(&e))?;
        let mut meta = txn.open_table(META).map_err(|e| s(&e))?;
        meta.insert(NEXT_ID_KEY, next_id).map_err(|e| s(&e))?;
        for w in writes {
            match w {
                MetaWrite::Channel { name, bytes } => {
                    channels.insert(name.as_str(), bytes.as_slice()).map(drop)
                }
                MetaWrite::Counters { name, snap } => counters_t
                    .insert(name.as_str(), counters_json(snap).as_slice())
                    .map(drop),
                MetaWrite::Drop { name } => channels
                    .remove(name.as_str())
                    .and_then(|_| counters_t.remove(name.as_str()))
                    .map(drop),
            }
            .map_err(|e| s(&e))?;
        }
        // After the writes: the writer drops a deleted channel's pending counters, so what is
        // left here belongs to channels that exist (possibly re-created in this batch).
        for (name, snap) in counters {
            counters_t
                .insert(name.as_str(), counters_json(snap).as_slice())
                .map_err(|e| s(&e))?;
        }
    }
    txn.commit().map_err(|e| s(&e))
}
