//! Self-service records of the embedded backend: a small redb file (`hosted.redb`) beside the
//! channel store, read whole at open into a [`HostedIndex`]. Every change is committed
//! (durably) before the index changes, under one lock, so the index never shows what the
//! disk does not hold.

use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use redb::{Database, Durability, ReadableTable, TableDefinition};

use super::meta::io;
use crate::Result;
use crate::hosted::{AccountRecord, Created, HostedChannelRecord, HostedIndex};

pub(super) const FILE: &str = "hosted.redb";

const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");
const CHANNELS: TableDefinition<&str, &[u8]> = TableDefinition::new("hosted_channels");

/// One write to the hosted tables.
enum Write<'a> {
    Account(&'a AccountRecord),
    DropAccount(&'a str),
    Channel(&'a HostedChannelRecord),
    DropChannel(&'a str),
}

pub(super) struct HostedStore {
    /// `None` once closed: the file's lock is released with the rest of the directory.
    db: Mutex<Option<Database>>,
    index: Mutex<HostedIndex>,
}

impl HostedStore {
    pub(super) fn open(path: &Path) -> Result<Self> {
        let ctx = "opening the accounts store";
        let db = crate::store_file::open(path, 1024 * 1024, "the accounts store")?;
        {
            let mut txn = db.begin_write().map_err(|e| io(ctx, e))?;
            txn.set_durability(Durability::Immediate);
            txn.open_table(ACCOUNTS).map_err(|e| io(ctx, e))?;
            txn.open_table(CHANNELS).map_err(|e| io(ctx, e))?;
            txn.commit().map_err(|e| io(ctx, e))?;
        }
        let txn = db.begin_read().map_err(|e| io(ctx, e))?;
        let mut accounts = Vec::new();
        for row in txn
            .open_table(ACCOUNTS)
            .map_err(|e| io(ctx, e))?
            .iter()
            .map_err(|e| io(ctx, e))?
        {
            let (_, v) = row.map_err(|e| io(ctx, e))?;
            accounts.push(
                serde_json::from_slice(v.value()).map_err(|e| io("corrupt account record", e))?,
            );
        }
        // Channels go into the index one by one as they are read: a list of every record
        // first was ~40 MB at 100,000 channels, freed after start-up but left resident.
        let mut index = HostedIndex::load(accounts, []);
        for row in txn
            .open_table(CHANNELS)
            .map_err(|e| io(ctx, e))?
            .iter()
            .map_err(|e| io(ctx, e))?
        {
            let (_, v) = row.map_err(|e| io(ctx, e))?;
            let c = serde_json::from_slice(v.value())
                .map_err(|e| io("corrupt self-service channel record", e))?;
            index.load_channel(&c);
        }
        drop(txn);
        Ok(HostedStore {
            db: Mutex::new(Some(db)),
            index: Mutex::new(index),
        })
    }

    /// A self-service channel's name and webhook id as the index holds them
    /// ([`HostedIndex::shared_strings`]).
    pub(super) fn shared_strings(&self, name: &str) -> Option<(Arc<str>, Arc<str>)> {
        self.index.lock().shared_strings(name)
    }

    /// Closes the file (releasing its lock); later writes fail as unavailable.
    pub(super) fn close(&self) {
        self.db.lock().take();
    }

    fn persist(&self, w: Write<'_>) -> Result<()> {
        let ctx = "writing the accounts store";
        let db = self.db.lock();
        let db = db
            .as_ref()
            .ok_or_else(|| crate::BufferError::Unavailable("the store is closed".into()))?;
        let mut txn = db.begin_write().map_err(|e| io(ctx, e))?;
        txn.set_durability(Durability::Immediate);
        {
            let mut accounts = txn.open_table(ACCOUNTS).map_err(|e| io(ctx, e))?;
            let mut channels = txn.open_table(CHANNELS).map_err(|e| io(ctx, e))?;
            match w {
                Write::Account(a) => accounts
                    .insert(a.account_id.as_str(), json(a)?.as_slice())
                    .map(drop),
                Write::DropAccount(id) => accounts.remove(id).map(drop),
                Write::Channel(c) => channels
                    .insert(c.channel.as_str(), json(c)?.as_slice())
                    .map(drop),
                Write::DropChannel(n) => channels.remove(n).map(drop),
            }
            .map_err(|e| io(ctx, e))?;
        }
        txn.commit().map_err(|e| io(ctx, e))
    }

    /// Checks a change against the index (`check` reports whether it changes anything), and
    /// when it does, persists `write` and then applies it (`apply`), all under the index lock.
    /// Nothing is copied: a create at 100,000 channels once cloned the whole index (every
    /// record) to apply the change to the copy, which made creating channels quadratic.
    fn change<T>(
        &self,
        check: impl FnOnce(&HostedIndex) -> (T, bool),
        write: Write<'_>,
        apply: impl FnOnce(&mut HostedIndex),
    ) -> Result<T> {
        let mut ix = self.index.lock();
        let (out, changed) = check(&ix);
        if changed {
            self.persist(write)?;
            apply(&mut ix);
        }
        Ok(out)
    }

    pub(super) fn read<T>(&self, f: impl FnOnce(&HostedIndex) -> T) -> T {
        f(&self.index.lock())
    }

    /// Check and insert under the index lock, committed before the lock is released: two
    /// creates never both see room for one more.
    pub(super) fn create_account(&self, a: &AccountRecord, max_accounts: u64) -> Result<Created> {
        self.change(
            |ix| {
                let r = ix.can_create_account(a, max_accounts);
                (r, r == Created::Created)
            },
            Write::Account(a),
            |ix| {
                ix.create_account(a, max_accounts);
            },
        )
    }

    pub(super) fn put_account(&self, a: &AccountRecord) -> Result<bool> {
        self.change(
            |ix| {
                let r = ix.has_account(&a.account_id);
                (r, r)
            },
            Write::Account(a),
            |ix| {
                ix.put_account(a);
            },
        )
    }

    pub(super) fn delete_account(&self, id: &str) -> Result<bool> {
        self.change(
            |ix| {
                let r = ix.has_account(id);
                (r, r)
            },
            Write::DropAccount(id),
            |ix| {
                ix.delete_account(id);
            },
        )
    }

    /// Like [`Self::create_account`]: the account's channel count is checked and the
    /// channel added in one step under the lock.
    pub(super) fn create_channel(
        &self,
        c: &HostedChannelRecord,
        max_channels: u64,
    ) -> Result<Created> {
        self.change(
            |ix| {
                let r = ix.can_create_channel(c, max_channels);
                (r, r == Created::Created)
            },
            Write::Channel(c),
            |ix| {
                ix.create_channel(c, max_channels);
            },
        )
    }

    pub(super) fn put_channel(&self, c: &HostedChannelRecord) -> Result<bool> {
        self.change(
            |ix| {
                let r = ix.can_put_channel(c);
                (r, r)
            },
            Write::Channel(c),
            |ix| {
                ix.put_channel(c);
            },
        )
    }

    pub(super) fn delete_channel(&self, name: &str) -> Result<bool> {
        self.change(
            |ix| {
                let r = ix.channel(name).is_some();
                (r, r)
            },
            Write::DropChannel(name),
            |ix| {
                ix.delete_channel(name);
            },
        )
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| io("serializing a record", e))
}
