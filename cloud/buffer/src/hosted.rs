//! Self-service records (HOSTED.md §2–§3) kept beside the channels: accounts (only the
//! SHA-256 digest of an API key is stored) and the channels accounts own. Both backends keep
//! them durably with the same rules: account names are unique, a key digest finds at most
//! one account, channel names and webhook ids are unique.
//!
//! [`HostedIndex`] is the in-memory form with those rules; the embedded backend persists it,
//! the Redis backend keeps the same rules in Redis keys.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use connect_protocol::hosted::{Quota, VerifySpec};
use connect_protocol::time::Timestamp;
use serde::{Deserialize, Serialize};

/// A stored account.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    pub account_id: String,
    pub name: String,
    pub created_at: Timestamp,
    pub disabled: bool,
    pub quota: Quota,
    /// SHA-256 hex of the current API key.
    pub key_digest: String,
}

/// A stored self-service channel. `verify.secret` is needed to check signatures, so it is
/// stored; it is never returned by the cloud.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedChannelRecord {
    /// The full name, `<account name>.<name>`.
    pub channel: String,
    pub account_id: String,
    pub webhook_id: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub description: Option<String>,
    pub verify: Option<VerifySpec>,
    pub ttl_seconds: u64,
    pub max_queue_size: u64,
    pub max_delivery_attempts: u32,
}

/// Outcome of creating a record under unique names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created {
    Created,
    /// The name (or, for a channel, the webhook id) is taken.
    Taken,
    /// The cap given to the create (accounts of the cloud, channels of the account) is
    /// reached; checked and claimed in one atomic step, so concurrent creates never pass it.
    Full,
}

/// Every account and self-service channel with their lookup indexes.
#[derive(Clone, Debug, Default)]
pub struct HostedIndex {
    accounts: BTreeMap<String, AccountRecord>,
    by_name: HashMap<String, String>,
    by_key: HashMap<String, String>,
    /// Self-service channels by name, compactly ([`Slot`]).
    channels: BTreeMap<Arc<str>, Slot>,
    /// Webhook id → channel name (both shared with `channels`).
    by_webhook: HashMap<Arc<str>, Arc<str>>,
    /// Channels per account id (the `max_channels` check); its keys are the account ids the
    /// account's channels share.
    owned: HashMap<Arc<str>, u64>,
}

/// A self-service channel as the index holds it (issue #14, ≤ 1 KB per idle channel): the
/// name once (the key of `channels`, shared with `by_webhook`), the owner's id shared by
/// its channels, the webhook id shared with `by_webhook`, the rarely set fields boxed
/// together. 88 B inline (104 B while description and provider check were boxed apart)
/// instead of a [`HostedChannelRecord`]'s ~220 B, and three strings fewer.
#[derive(Clone, Debug)]
struct Slot {
    account_id: Arc<str>,
    webhook_id: Arc<str>,
    created_at: Timestamp,
    updated_at: Timestamp,
    /// The rarely set description and provider check, together (8 B when neither is set).
    extra: Option<Box<Extra>>,
    ttl_seconds: u64,
    max_queue_size: u64,
    max_delivery_attempts: u32,
}

// A self-service channel's entry in the index, inline (issue #14).
const _: () = assert!(std::mem::size_of::<Slot>() <= 88);

/// What [`Slot::extra`] holds.
#[derive(Clone, Debug)]
struct Extra {
    description: Option<Box<str>>,
    verify: Option<VerifySpec>,
}

impl Slot {
    fn record(&self, name: &str) -> HostedChannelRecord {
        HostedChannelRecord {
            channel: name.to_owned(),
            account_id: self.account_id.to_string(),
            webhook_id: self.webhook_id.to_string(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            description: self
                .extra
                .as_ref()
                .and_then(|x| x.description.as_deref())
                .map(str::to_owned),
            verify: self.extra.as_ref().and_then(|x| x.verify.clone()),
            ttl_seconds: self.ttl_seconds,
            max_queue_size: self.max_queue_size,
            max_delivery_attempts: self.max_delivery_attempts,
        }
    }

    /// Takes the settings of `c` (the name, owner and webhook id never change).
    fn update(&mut self, c: &HostedChannelRecord) {
        self.created_at = c.created_at;
        self.updated_at = c.updated_at;
        self.extra = (c.description.is_some() || c.verify.is_some()).then(|| {
            Box::new(Extra {
                description: c.description.as_deref().map(Box::from),
                verify: c.verify.clone(),
            })
        });
        self.ttl_seconds = c.ttl_seconds;
        self.max_queue_size = c.max_queue_size;
        self.max_delivery_attempts = c.max_delivery_attempts;
    }
}

impl HostedIndex {
    /// Builds the index from stored records (a store opened).
    pub fn load(
        accounts: impl IntoIterator<Item = AccountRecord>,
        channels: impl IntoIterator<Item = HostedChannelRecord>,
    ) -> Self {
        let mut ix = HostedIndex::default();
        for a in accounts {
            ix.insert_account(a);
        }
        for c in channels {
            ix.insert_channel(&c);
        }
        ix
    }

    /// A self-service channel's name and webhook id as the index holds them, for the
    /// channel store to share rather than allocate again (issue #14).
    pub fn shared_strings(&self, name: &str) -> Option<(Arc<str>, Arc<str>)> {
        let (name, slot) = self.channels.get_key_value(name)?;
        Some((name.clone(), slot.webhook_id.clone()))
    }

    /// Adds a stored channel (a store being opened; its name and webhook id are unique).
    pub fn load_channel(&mut self, c: &HostedChannelRecord) {
        self.insert_channel(c);
    }

    /// Adds a channel (its name and webhook id are free).
    fn insert_channel(&mut self, c: &HostedChannelRecord) {
        let account_id = match self.owned.get_key_value(c.account_id.as_str()) {
            Some((id, _)) => id.clone(),
            None => Arc::from(c.account_id.as_str()),
        };
        *self.owned.entry(account_id.clone()).or_default() += 1;
        let name: Arc<str> = Arc::from(c.channel.as_str());
        let webhook_id: Arc<str> = Arc::from(c.webhook_id.as_str());
        self.by_webhook.insert(webhook_id.clone(), name.clone());
        let mut slot = Slot {
            account_id,
            webhook_id,
            created_at: c.created_at,
            updated_at: c.updated_at,
            extra: None,
            ttl_seconds: 0,
            max_queue_size: 0,
            max_delivery_attempts: 0,
        };
        slot.update(c);
        self.channels.insert(name, slot);
    }

    fn insert_account(&mut self, a: AccountRecord) {
        self.by_name.insert(a.name.clone(), a.account_id.clone());
        self.by_key
            .insert(a.key_digest.clone(), a.account_id.clone());
        self.accounts.insert(a.account_id.clone(), a);
    }

    /// What [`Self::create_account`] would do, without doing it.
    pub fn can_create_account(&self, a: &AccountRecord, max_accounts: u64) -> Created {
        if self.by_name.contains_key(&a.name) || self.accounts.contains_key(&a.account_id) {
            return Created::Taken;
        }
        if self.account_count() >= max_accounts {
            return Created::Full;
        }
        Created::Created
    }

    /// Adds an account unless its name is taken or `max_accounts` accounts exist.
    pub fn create_account(&mut self, a: &AccountRecord, max_accounts: u64) -> Created {
        let r = self.can_create_account(a, max_accounts);
        if r == Created::Created {
            self.insert_account(a.clone());
        }
        r
    }

    /// Whether the account exists ([`Self::put_account`] and [`Self::delete_account`]
    /// change only an existing one).
    pub fn has_account(&self, id: &str) -> bool {
        self.accounts.contains_key(id)
    }

    /// Replaces an account (quota, disabled, key digest; the name never changes). False when
    /// it does not exist.
    pub fn put_account(&mut self, a: &AccountRecord) -> bool {
        let Some(old) = self.accounts.get(&a.account_id) else {
            return false;
        };
        let old_digest = old.key_digest.clone();
        self.by_key.remove(&old_digest);
        self.insert_account(a.clone());
        true
    }

    pub fn account(&self, id: &str) -> Option<&AccountRecord> {
        self.accounts.get(id)
    }

    pub fn account_by_key(&self, digest: &str) -> Option<&AccountRecord> {
        self.by_key
            .get(digest)
            .and_then(|id| self.accounts.get(id))
            .filter(|a| a.key_digest == digest)
    }

    pub fn accounts(&self) -> Vec<AccountRecord> {
        self.accounts.values().cloned().collect()
    }

    pub fn account_count(&self) -> u64 {
        self.accounts.len() as u64
    }

    /// Removes an account (not its channels). False when it does not exist.
    pub fn delete_account(&mut self, id: &str) -> bool {
        let Some(a) = self.accounts.remove(id) else {
            return false;
        };
        self.by_name.remove(&a.name);
        self.by_key.remove(&a.key_digest);
        true
    }

    /// Adds a channel unless its name or webhook id is taken or its account owns
    /// `max_channels` channels.
    pub fn create_channel(&mut self, c: &HostedChannelRecord, max_channels: u64) -> Created {
        let r = self.can_create_channel(c, max_channels);
        if r != Created::Created {
            return r;
        }
        self.insert_channel(c);
        Created::Created
    }

    /// What [`Self::create_channel`] would do, without doing it.
    pub fn can_create_channel(&self, c: &HostedChannelRecord, max_channels: u64) -> Created {
        if self.channels.contains_key(c.channel.as_str())
            || self.by_webhook.contains_key(c.webhook_id.as_str())
        {
            return Created::Taken;
        }
        if self.owned.get(c.account_id.as_str()).copied().unwrap_or(0) >= max_channels {
            return Created::Full;
        }
        Created::Created
    }

    /// Whether [`Self::put_channel`] would replace a channel.
    pub fn can_put_channel(&self, c: &HostedChannelRecord) -> bool {
        self.channels
            .get(c.channel.as_str())
            .is_some_and(|old| *old.webhook_id == *c.webhook_id)
    }

    /// Replaces a channel's settings (the name, owner and webhook id never change). False
    /// when it does not exist.
    pub fn put_channel(&mut self, c: &HostedChannelRecord) -> bool {
        match self.channels.get_mut(c.channel.as_str()) {
            Some(old) if *old.webhook_id == *c.webhook_id => {
                old.update(c);
                true
            }
            _ => false,
        }
    }

    pub fn channel(&self, name: &str) -> Option<HostedChannelRecord> {
        self.channels.get(name).map(|s| s.record(name))
    }

    pub fn channel_by_webhook(&self, id: &str) -> Option<HostedChannelRecord> {
        self.by_webhook.get(id).and_then(|n| self.channel(n))
    }

    pub fn channels(&self) -> Vec<HostedChannelRecord> {
        self.channels.iter().map(|(n, s)| s.record(n)).collect()
    }

    pub fn channel_names(&self) -> Vec<String> {
        self.channels.keys().map(|n| n.to_string()).collect()
    }

    pub fn channel_count(&self) -> u64 {
        self.channels.len() as u64
    }

    pub fn account_channels(&self, account_id: &str) -> Vec<HostedChannelRecord> {
        self.channels
            .iter()
            .filter(|(_, s)| *s.account_id == *account_id)
            .map(|(n, s)| s.record(n))
            .collect()
    }

    pub fn delete_channel(&mut self, name: &str) -> bool {
        let Some(c) = self.channels.remove(name) else {
            return false;
        };
        self.by_webhook.remove(&c.webhook_id);
        if let Some(n) = self.owned.get_mut(&c.account_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.owned.remove(&c.account_id);
            }
        }
        true
    }
}
