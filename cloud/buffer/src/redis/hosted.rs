//! Self-service records in Redis, one key per record plus the index keys that make names,
//! key digests and webhook ids unique (claimed with `SET … NX` before the record is written):
//!
//! - `P:acct:<id>` account JSON; `P:acct-name:<name>` and `P:acct-key:<digest>` → id;
//!   `P:accounts` the set of ids; `P:acct-ch:<id>` the set of its channel names.
//! - `P:hch:<channel>` channel JSON; `P:hch-wh:<webhook id>` → channel; `P:hchannels` the set
//!   of names.
//!
//! Every key is a plain single-key command or a single-key script ([`RESERVE`]: the caps of
//! `max_accounts` and `max_channels` are checked and claimed atomically on the set that counts
//! them), so the layout works on a cluster too. A channel's place in `P:acct-ch:<id>` is first
//! a lease (`~<expiry µs>~<channel>`), replaced by the name once the record is written: a
//! replica that crashes in between leaves a lease that lapses (see [`Inner::reclaim`]) instead
//! of a place counted forever. Readers
//! always go to Redis (nothing is cached), so a change made through one replica holds on
//! every replica at its next request; a channel change is also published on `P:ctl`.

use redis::AsyncCommands as _;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Inner;
use super::keys::encode_channel;
use crate::hosted::{AccountRecord, Created, HostedChannelRecord};
use crate::{BufferError, Result};

/// Adds `ARGV[3]` (the member itself, or a lease on it) to the set `KEYS[1]` unless `ARGV[1]`
/// is a member already (or, when a lease is added, holds a lease already) or the set holds
/// `ARGV[2]` members: `1` added, `0` full, `2` already a member (nothing added). One key, so
/// one slot: atomic on a cluster.
const RESERVE: &str = r"
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 2 end
if ARGV[3] ~= ARGV[1] then
  local suffix = '~' .. ARGV[1]
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
    if string.sub(m, 1, 1) == '~' and string.sub(m, -#suffix) == suffix then return 2 end
  end
end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('SADD', KEYS[1], ARGV[3])
return 1
";

/// How long a channel's reserved place counts without its record: far longer than a create
/// takes, short enough that a crashed create's place comes back the same hour.
const LEASE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// A lease on `channel`'s place until `expiry` (µs since the epoch). Channel names never hold
/// `~` (HOSTED.md §3), so a lease cannot be mistaken for a name.
fn lease(expiry: i64, channel: &str) -> String {
    format!("~{expiry}~{channel}")
}

/// `(expiry, channel)` of a lease; `None` for a plain member.
fn parse_lease(member: &str) -> Option<(i64, &str)> {
    let (expiry, channel) = member.strip_prefix('~')?.split_once('~')?;
    Some((expiry.parse().ok()?, channel))
}

/// The channel a member of an account's set stands for (a lease's channel, or the name).
fn place_name(member: &str) -> &str {
    parse_lease(member).map_or(member, |(_, c)| c)
}

static RESERVE_SCRIPT: std::sync::LazyLock<redis::Script> =
    std::sync::LazyLock::new(|| redis::Script::new(RESERVE));

/// What [`Inner::reserve`] did.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reserved {
    Added,
    Full,
    /// Already a member: counted before (a concurrent create of the same name, or one a crash
    /// interrupted), nothing to undo on failure.
    Present,
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| BufferError::Unavailable(format!("serializing: {e}")))
}

impl Inner {
    fn k(&self, kind: &str, id: &str) -> String {
        format!("{}:{kind}:{}", self.opts.prefix, encode_channel(id))
    }

    fn accounts_key(&self) -> String {
        format!("{}:accounts", self.opts.prefix)
    }

    fn hchannels_key(&self) -> String {
        format!("{}:hchannels", self.opts.prefix)
    }

    async fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let mut con = self.con.clone();
        let raw: Option<String> = con.get(key).await.map_err(|e| self.err(e))?;
        raw.map(|s| {
            serde_json::from_str(&s)
                .map_err(|e| BufferError::Unavailable(format!("corrupt record {key}: {e}")))
        })
        .transpose()
    }

    async fn get_str(&self, key: &str) -> Result<Option<String>> {
        let mut con = self.con.clone();
        con.get(key).await.map_err(|e| self.err(e))
    }

    async fn set_str(&self, key: &str, value: &str) -> Result<()> {
        let mut con = self.con.clone();
        con.set::<_, _, ()>(key, value)
            .await
            .map_err(|e| self.err(e))
    }

    /// `SET key value NX`: true when this call claimed the key.
    async fn claim(&self, key: &str, value: &str) -> Result<bool> {
        let mut con = self.con.clone();
        let r: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .query_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        Ok(r.is_some())
    }

    async fn del(&self, key: &str) -> Result<()> {
        let mut con = self.con.clone();
        con.del::<_, ()>(key).await.map_err(|e| self.err(e))
    }

    async fn set_add(&self, key: &str, member: &str, add: bool) -> Result<()> {
        let mut con = self.con.clone();
        if add {
            con.sadd::<_, _, ()>(key, member).await
        } else {
            con.srem::<_, _, ()>(key, member).await
        }
        .map_err(|e| self.err(e))
    }

    /// The set's members as stored (leases included).
    async fn raw_members(&self, key: &str) -> Result<Vec<String>> {
        let mut con = self.con.clone();
        con.smembers(key).await.map_err(|e| self.err(e))
    }

    /// The names a set holds, sorted, a leased place counted as its channel's name.
    async fn members(&self, key: &str) -> Result<Vec<String>> {
        let mut v: Vec<String> = self
            .raw_members(key)
            .await?
            .iter()
            .map(|m| place_name(m).to_owned())
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }

    /// [`RESERVE`] of `member` (added as `add`) in the set `key` with room for `max`.
    async fn reserve(&self, key: &str, member: &str, max: u64, add: &str) -> Result<Reserved> {
        let mut con = self.con.clone();
        let r: i64 = RESERVE_SCRIPT
            .key(key)
            .arg(member)
            .arg(max)
            .arg(add)
            .invoke_async(&mut con)
            .await
            .map_err(|e| self.err(e))?;
        Ok(match r {
            1 => Reserved::Added,
            0 => Reserved::Full,
            _ => Reserved::Present,
        })
    }

    /// The name is claimed first (a taken name is 409 even at the cap), then a place in
    /// `P:accounts` is reserved atomically against `max_accounts`.
    pub(super) async fn create_account(&self, a: &AccountRecord, max: u64) -> Result<Created> {
        self.ensure_open()?;
        let name_key = self.k("acct-name", &a.name);
        if !self.claim(&name_key, &a.account_id).await? {
            return Ok(Created::Taken);
        }
        let id = &a.account_id;
        match self.reserve(&self.accounts_key(), id, max, id).await {
            Ok(Reserved::Full) => {
                self.del(&name_key).await?;
                return Ok(Created::Full);
            }
            Ok(_) => {}
            Err(e) => {
                let _ = self.del(&name_key).await;
                return Err(e);
            }
        }
        self.set_str(&self.k("acct", &a.account_id), &to_json(a)?)
            .await?;
        self.set_str(&self.k("acct-key", &a.key_digest), &a.account_id)
            .await?;
        self.confirm().await?;
        Ok(Created::Created)
    }

    pub(super) async fn put_account(&self, a: &AccountRecord) -> Result<bool> {
        self.ensure_open()?;
        let Some(old) = self.account(&a.account_id).await? else {
            return Ok(false);
        };
        self.set_str(&self.k("acct", &a.account_id), &to_json(a)?)
            .await?;
        let key_changed = old.key_digest != a.key_digest;
        if key_changed {
            self.set_str(&self.k("acct-key", &a.key_digest), &a.account_id)
                .await?;
            self.del(&self.k("acct-key", &old.key_digest)).await?;
        }
        self.confirm().await?;
        if key_changed || (a.disabled && !old.disabled) {
            // Every replica re-reads the account's channels and closes connections the old
            // key (or the disabled account's key) opened there.
            for name in self.members(&self.k("acct-ch", &a.account_id)).await? {
                self.publish_change("chan", &name).await?;
            }
        }
        Ok(true)
    }

    pub(super) async fn account(&self, id: &str) -> Result<Option<AccountRecord>> {
        self.get_json(&self.k("acct", id)).await
    }

    pub(super) async fn account_by_key(&self, digest: &str) -> Result<Option<AccountRecord>> {
        let Some(id) = self.get_str(&self.k("acct-key", digest)).await? else {
            return Ok(None);
        };
        Ok(self.account(&id).await?.filter(|a| a.key_digest == digest))
    }

    pub(super) async fn accounts(&self) -> Result<Vec<AccountRecord>> {
        let mut out = Vec::new();
        for id in self.members(&self.accounts_key()).await? {
            if let Some(a) = self.account(&id).await? {
                out.push(a);
            }
        }
        Ok(out)
    }

    pub(super) async fn account_count(&self) -> Result<u64> {
        let mut con = self.con.clone();
        con.scard(self.accounts_key())
            .await
            .map_err(|e| self.err(e))
    }

    pub(super) async fn delete_account(&self, id: &str) -> Result<bool> {
        self.ensure_open()?;
        let Some(a) = self.account(id).await? else {
            return Ok(false);
        };
        self.del(&self.k("acct-key", &a.key_digest)).await?;
        self.del(&self.k("acct", id)).await?;
        self.set_add(&self.accounts_key(), id, false).await?;
        self.del(&self.k("acct-ch", id)).await?;
        self.del(&self.k("acct-name", &a.name)).await?;
        self.confirm().await?;
        Ok(true)
    }

    /// Test hook (see `RedisBuffer::reserve_channel_place_only`).
    #[cfg(any(test, feature = "test-suite"))]
    pub(super) async fn reserve_channel_place(
        &self,
        c: &HostedChannelRecord,
        max_channels: u64,
    ) -> Result<bool> {
        let owned = self.k("acct-ch", &c.account_id);
        let (reserved, _) = self.reserve_place(&owned, c, max_channels).await?;
        Ok(reserved != Reserved::Full)
    }

    /// Reserves a place for `c` in the account's set `owned`: a lease (returned) that lapses
    /// unless [`Inner::settle`] replaces it by the name. When the set is full, lapsed leases
    /// and names without a record are reclaimed first.
    async fn reserve_place(
        &self,
        owned: &str,
        c: &HostedChannelRecord,
        max_channels: u64,
    ) -> Result<(Reserved, String)> {
        let expiry = self.clock.now().micros() + LEASE.as_micros() as i64;
        let lease = lease(expiry, &c.channel);
        let mut r = self
            .reserve(owned, &c.channel, max_channels, &lease)
            .await?;
        if r == Reserved::Full && self.reclaim(owned, &c.account_id).await? {
            r = self
                .reserve(owned, &c.channel, max_channels, &lease)
                .await?;
        }
        Ok((r, lease))
    }

    /// The record of `channel` is written: its place is the name from now on (one atomic
    /// step on the one key).
    async fn settle(&self, owned: &str, lease: &str, channel: &str) -> Result<()> {
        let mut con = self.con.clone();
        redis::pipe()
            .atomic()
            .srem(owned, lease)
            .sadd(owned, channel)
            .query_async::<()>(&mut con)
            .await
            .map_err(|e| self.err(e))
    }

    /// Frees the places of the account's set `owned` that no channel holds: a lapsed lease
    /// whose channel has no record (its create stopped between the reservation and the
    /// record: a crashed replica), and a name without a record (left by a deletion that
    /// stopped half-way, or by a crashed create of an older version). A lapsed lease whose
    /// record exists (the create stopped just before settling) is settled. True when a place
    /// was freed. Runs only when the set is full, so it costs nothing below the quota.
    async fn reclaim(&self, owned: &str, account_id: &str) -> Result<bool> {
        let now = self.clock.now().micros();
        let mut freed = false;
        for m in self.raw_members(owned).await? {
            let (channel, lapsed) = match parse_lease(&m) {
                Some((expiry, channel)) => (channel, expiry <= now),
                None => (m.as_str(), true),
            };
            if !lapsed {
                continue;
            }
            let held = self
                .hosted_channel(channel)
                .await?
                .is_some_and(|r| r.account_id == account_id);
            if held {
                if channel != m {
                    self.settle(owned, &m, channel).await?;
                }
            } else {
                tracing::info!(channel = %channel, "freeing a reserved place that no channel holds");
                self.set_add(owned, &m, false).await?;
                freed = true;
            }
        }
        Ok(freed)
    }

    /// A place in the account's `P:acct-ch:<id>` is reserved first, atomically against
    /// `max_channels`, as a lease; then the webhook id and the name are claimed (a failed
    /// claim gives the place back), the record written, and the lease replaced by the name. A
    /// name already in the set is not counted twice: a create of an existing channel's name
    /// then finds the name claimed (409). A create interrupted before its record leaves a
    /// lease that lapses after [`LEASE`] and is then reclaimed when the account is full.
    pub(super) async fn create_hosted_channel(
        &self,
        c: &HostedChannelRecord,
        max_channels: u64,
    ) -> Result<Created> {
        self.ensure_open()?;
        let owned = self.k("acct-ch", &c.account_id);
        let (reserved, lease) = self.reserve_place(&owned, c, max_channels).await?;
        if reserved == Reserved::Full {
            return Ok(Created::Full);
        }
        let give_back = || async {
            if reserved == Reserved::Added {
                self.set_add(&owned, &lease, false).await?;
            }
            Ok::<_, BufferError>(Created::Taken)
        };
        if !self
            .claim(&self.k("hch-wh", &c.webhook_id), &c.channel)
            .await?
        {
            return give_back().await;
        }
        if !self.claim(&self.k("hch", &c.channel), &to_json(c)?).await? {
            self.del(&self.k("hch-wh", &c.webhook_id)).await?;
            return give_back().await;
        }
        self.set_add(&self.hchannels_key(), &c.channel, true)
            .await?;
        if reserved == Reserved::Added {
            self.settle(&owned, &lease, &c.channel).await?;
        }
        self.confirm().await?;
        self.publish_change("chan", &c.channel).await?;
        Ok(Created::Created)
    }

    pub(super) async fn put_hosted_channel(&self, c: &HostedChannelRecord) -> Result<bool> {
        self.ensure_open()?;
        match self.hosted_channel(&c.channel).await? {
            Some(old) if old.webhook_id == c.webhook_id => {}
            _ => return Ok(false),
        }
        self.set_str(&self.k("hch", &c.channel), &to_json(c)?)
            .await?;
        self.confirm().await?;
        self.publish_change("chan", &c.channel).await?;
        Ok(true)
    }

    pub(super) async fn hosted_channel(&self, name: &str) -> Result<Option<HostedChannelRecord>> {
        self.get_json(&self.k("hch", name)).await
    }

    pub(super) async fn hosted_channel_by_webhook(
        &self,
        id: &str,
    ) -> Result<Option<HostedChannelRecord>> {
        let Some(name) = self.get_str(&self.k("hch-wh", id)).await? else {
            return Ok(None);
        };
        Ok(self
            .hosted_channel(&name)
            .await?
            .filter(|c| c.webhook_id == id))
    }

    async fn channels_in(&self, set: &str) -> Result<Vec<HostedChannelRecord>> {
        let mut out = Vec::new();
        for name in self.members(set).await? {
            if let Some(c) = self.hosted_channel(&name).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    pub(super) async fn hosted_channels(&self) -> Result<Vec<HostedChannelRecord>> {
        self.channels_in(&self.hchannels_key()).await
    }

    pub(super) async fn hosted_channel_names(&self) -> Result<Vec<String>> {
        self.members(&self.hchannels_key()).await
    }

    pub(super) async fn hosted_channel_count(&self) -> Result<u64> {
        let mut con = self.con.clone();
        con.scard(self.hchannels_key())
            .await
            .map_err(|e| self.err(e))
    }

    pub(super) async fn account_channels(&self, id: &str) -> Result<Vec<HostedChannelRecord>> {
        Ok(self
            .channels_in(&self.k("acct-ch", id))
            .await?
            .into_iter()
            .filter(|c| c.account_id == id)
            .collect())
    }

    pub(super) async fn delete_hosted_channel(&self, name: &str) -> Result<bool> {
        self.ensure_open()?;
        let Some(c) = self.hosted_channel(name).await? else {
            return Ok(false);
        };
        // The record first: from here on the channel does not exist for any replica.
        self.del(&self.k("hch", name)).await?;
        self.del(&self.k("hch-wh", &c.webhook_id)).await?;
        self.set_add(&self.hchannels_key(), name, false).await?;
        let owned = self.k("acct-ch", &c.account_id);
        for m in self.raw_members(&owned).await? {
            // The name, and a lease a create left unsettled (it stopped just before).
            if place_name(&m) == name {
                self.set_add(&owned, &m, false).await?;
            }
        }
        self.confirm().await?;
        self.publish_change("del", name).await?;
        Ok(true)
    }
}
