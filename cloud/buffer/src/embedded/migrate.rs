//! Upgrade of a format-1 store (every message as JSON with a base64 body inside redb) to
//! format 2 (messages in the log, channels in redb), once, at open.
//!
//! Crash-safe by order: the log is written and synced first into an emptied log directory,
//! then one redb transaction numbers the channels, drops the message tables and records
//! format 2. A crash before that commit leaves format 1 in place and the migration simply
//! runs again (emptying the log directory first).

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use connect_protocol::message::{Attempts, DeadLetterReason, StoredMessage};
use connect_protocol::time::Timestamp;
use redb::{Database, Durability, ReadableTable, TableDefinition};
use serde::Deserialize;

use super::codec::{self, PlaceDisk};
use super::meta::{CHANNELS, ChannelDisk, FORMAT_KEY, FORMAT_VERSION, META, io};
use crate::Result;

const MESSAGES_V1: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
const STATES_V1: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("states");

#[derive(Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum PlaceV1 {
    Ready,
    Delayed {
        until: Timestamp,
    },
    Dead {
        reason: DeadLetterReason,
        at: Timestamp,
    },
}

#[derive(Deserialize)]
struct StateV1 {
    attempts: Attempts,
    place: PlaceV1,
}

pub(super) fn from_v1(db: &mut Database, log_dir: &Path) -> Result<()> {
    let ctx = "upgrading the buffer store from format 1";
    let started = std::time::Instant::now();
    std::fs::create_dir_all(log_dir).map_err(|e| io(ctx, e))?;
    for entry in std::fs::read_dir(log_dir).map_err(|e| io(ctx, e))? {
        let entry = entry.map_err(|e| io(ctx, e))?;
        if entry.file_name().to_string_lossy().ends_with(".log") {
            std::fs::remove_file(entry.path()).map_err(|e| io(ctx, e))?;
        }
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(log_dir.join(format!("{:010}.log", 1)))
        .map_err(|e| io(ctx, e))?;
    let mut out = BufWriter::with_capacity(1024 * 1024, file);

    let mut channels: Vec<(String, ChannelDisk)> = Vec::new();
    let mut moved = 0u64;
    {
        let txn = db.begin_read().map_err(|e| io(ctx, e))?;
        let chans = txn.open_table(CHANNELS).map_err(|e| io(ctx, e))?;
        for row in chans.iter().map_err(|e| io(ctx, e))? {
            let (name, bytes) = row.map_err(|e| io(ctx, e))?;
            let disk: ChannelDisk = serde_json::from_slice(bytes.value())
                .map_err(|e| io("corrupt channel record", e))?;
            channels.push((name.value().to_owned(), disk));
        }
        let messages = match txn.open_table(MESSAGES_V1) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(io(ctx, e)),
        };
        let states = match txn.open_table(STATES_V1) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(io(ctx, e)),
        };
        for (i, (name, disk)) in channels.iter_mut().enumerate() {
            disk.id = i as u64 + 1;
            let Some(messages) = &messages else { continue };
            let range = (name.as_str(), 0u64)..=(name.as_str(), u64::MAX);
            for row in messages.range(range).map_err(|e| io(ctx, e))? {
                let (key, bytes) = row.map_err(|e| io(ctx, e))?;
                let seq = key.value().1;
                let msg: StoredMessage = serde_json::from_slice(bytes.value())
                    .map_err(|e| io("corrupt message record", e))?;
                out.write_all(&codec::message_record(disk.id, seq, &msg))
                    .map_err(|e| io(ctx, e))?;
                let state = match &states {
                    Some(t) => t.get((name.as_str(), seq)).map_err(|e| io(ctx, e))?,
                    None => None,
                };
                if let Some(v) = state {
                    let s: StateV1 = serde_json::from_slice(v.value())
                        .map_err(|e| io("corrupt message state", e))?;
                    let place = match s.place {
                        PlaceV1::Ready => PlaceDisk::Ready,
                        PlaceV1::Delayed { until } => PlaceDisk::Delayed { until },
                        PlaceV1::Dead { reason, at } => PlaceDisk::Dead { reason, at },
                    };
                    out.write_all(&codec::state_record(disk.id, seq, &s.attempts, place))
                        .map_err(|e| io(ctx, e))?;
                }
                moved += 1;
            }
        }
    }
    let file: File = out.into_inner().map_err(|e| io(ctx, e.error()))?;
    file.sync_all().map_err(|e| io(ctx, e))?;
    File::open(log_dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(ctx, e))?;

    let mut txn = db.begin_write().map_err(|e| io(ctx, e))?;
    txn.set_durability(Durability::Immediate);
    {
        let mut chans = txn.open_table(CHANNELS).map_err(|e| io(ctx, e))?;
        for (name, disk) in &channels {
            let bytes = serde_json::to_vec(disk).map_err(|e| io(ctx, e))?;
            chans
                .insert(name.as_str(), bytes.as_slice())
                .map_err(|e| io(ctx, e))?;
        }
        let mut meta = txn.open_table(META).map_err(|e| io(ctx, e))?;
        meta.insert(FORMAT_KEY, FORMAT_VERSION)
            .map_err(|e| io(ctx, e))?;
        meta.insert("next_channel_id", channels.len() as u64 + 1)
            .map_err(|e| io(ctx, e))?;
        txn.open_table(super::meta::COUNTERS)
            .map_err(|e| io(ctx, e))?;
    }
    for table in ["messages", "states"] {
        let def: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new(table);
        txn.delete_table(def).map_err(|e| io(ctx, e))?;
    }
    txn.commit().map_err(|e| io(ctx, e))?;
    // Give the freed pages back to the file system.
    let _ = db.compact();
    tracing::info!(
        channels = channels.len(),
        messages = moved,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "buffer store upgraded from format 1 to format {FORMAT_VERSION}"
    );
    Ok(())
}
