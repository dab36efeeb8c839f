//! One channel's runtime index and its transitions (PROTOCOL §6, §7, §8.4).
//!
//! Everything here is synchronous and runs under the channel's mutex. Memory holds only what
//! dispatch needs per message (an [`Entry`]: where its record is, times, attempts, place —
//! about a hundred bytes); headers, bodies and NACK error texts stay in the log and are read
//! outside the lock ([`ToRead`], [`View`]).
//!
//! Every transition queues the records that keep the log in step into its outbox; the caller
//! ships them to the writer *before releasing the lock*, so the log sees changes in the same
//! order as memory does (and new messages in sequence order). The writer's callback
//! ([`Chan::committed`]) then learns where each record landed.
//!
//! Messages are keyed by sequence internally (unique per channel, replays keep it).

use std::sync::Arc;

use connect_protocol::admin::ChannelState;
use connect_protocol::ids::new_message_id;
use connect_protocol::message::{Attempts, DeadLetterReason, MessageState, StoredMessage};
use connect_protocol::time::Timestamp;
use parking_lot::Mutex;
use tokio::sync::Notify;

use super::codec::{self, PlaceDisk};
use super::due::DueIndex;
use super::ids::IdKey;
use super::log::{Loc, Segments};
use super::meta::{ChannelDisk, CountersDisk, LoadedChannel, MetaWrite};
use super::writer::{Job, OnCommit, Rec};
use crate::{BufferError, ChannelRegistration, ChannelSettings, Registered, Result, TokenState};
use counters::LazyCounters;
use outbox::{Outbox, Queued};
pub(super) use record::{ChanRecord, Token};

mod counters;
mod dead;
mod delivery;
mod msgs;
mod outbox;
mod record;
mod scan;
mod slots;
mod timers;
mod views;
mod wake;

pub(super) use self::read_attempts as attempts_in_log;
pub(super) use dead::Replayed;
use msgs::Lazy;
pub(super) use scan::ScanMessage;
use slots::Slots;

/// NACK error texts are kept up to this many characters (§5.4).
const MAX_ERROR_CHARS: usize = 1024;

/// Where a message is. A delayed message's due time is in `Chan::delayed_until`, a dead
/// letter's reason and time in `Chan::dead_info` (few messages have either).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Place {
    Ready,
    /// Holder and deadline in `Chan::leases`.
    Leased,
    Delayed,
    Dead,
}

/// What memory holds per message (48 bytes). The latest state record's place is in
/// `Chan::state_locs`; attempt times and the NACK error text live there (or in
/// `Chan::pending` until it is written).
struct Entry {
    expires_at: i64,
    received_at: i64,
    /// The packed id (`ids`), when `id_packed`.
    id: u64,
    /// The message record in the log (`len == 0`: an empty slot, see `slots`).
    loc: Loc,
    delivery_count: u32,
    /// Index into `Chan::webhooks`.
    webhook: u32,
    place: Place,
    id_packed: bool,
}

impl Entry {
    const EMPTY: Entry = Entry {
        expires_at: 0,
        received_at: 0,
        id: 0,
        loc: Loc {
            seg: 0,
            off: 0,
            len: 0,
        },
        delivery_count: 0,
        webhook: 0,
        place: Place::Ready,
        id_packed: false,
    };

    fn is_empty(&self) -> bool {
        self.loc.len == 0
    }

    fn id_key(&self) -> IdKey {
        self.id_packed.then_some(self.id)
    }
}

/// A state not yet in the log (or being written), with the generation of its record.
struct Pending {
    generation: u32,
    attempts: Attempts,
}

/// An enqueue waiting for its commit; it counts toward capacity.
struct Reserved {
    id: IdKey,
    webhook: u32,
    received_at: i64,
    expires_at: i64,
    len: u32,
}

struct Lease {
    conn: Arc<str>,
    deadline: i64,
}

/// What a record queued in `out` is for.
enum Tag {
    Enqueue(u64),
    Msg(u64),
    State { seq: u64, generation: u32 },
    Settle,
    Copy { seq: u64, from: Loc },
}

/// A leased message to read from the log outside the lock.
pub(super) struct ToRead {
    pub loc: Loc,
    pub delivery_count: u32,
}

/// Where a view's attempts (times, error text) are.
pub(super) enum AttemptsAt {
    Known(Attempts),
    /// In the state record at this place; `delivery_count` from memory.
    InLog(Loc, u32),
}

/// A message record for the admin views, minus what must be read from the log.
pub(super) struct View {
    pub loc: Loc,
    pub attempts: AttemptsAt,
    pub state: MessageState,
    pub leased_to: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
    pub next_attempt_at: Option<Timestamp>,
    pub reason: Option<DeadLetterReason>,
    pub dead_lettered_at: Option<Timestamp>,
}

pub(super) struct Chan {
    pub record: ChanRecord,
    /// Numbers this channel's records in the log; never reused.
    pub id: u64,
    pub seq: u64,
    /// Allocated at the first change (most idle channels never count anything).
    pub counters: LazyCounters,
    /// Made when first asked for (`wake.rs`).
    notify: Option<Arc<Notify>>,
    /// Set under the lock when the channel is deleted; holders of a stale handle stop here.
    pub deleted: bool,
    segments: Arc<Segments>,
    max_dead_letters: u64,
    /// What the channel holds per message; allocated with its first message.
    m: Lazy,
    /// Log bytes of unsettled messages (reserved included), for `max_queue_bytes`.
    queued_bytes: u64,
    generation: u32,
    outbox: Outbox,
    counters_dirty: bool,
    /// No unsettled message expires before this instant (a lower bound). Lets the periodic
    /// sweep skip the TTL scan of a large backlog until something can have expired.
    next_expiry: Option<i64>,
    /// The sweep's index of channels with timed work, and the earliest instant this channel
    /// is filed there for (`None`: not filed since its last sweep).
    due: Arc<DueIndex>,
    scheduled: Option<i64>,
}

pub(super) type ChanRef = Arc<Mutex<Chan>>;

/// Settings of the backend that every channel follows.
#[derive(Clone)]
pub(super) struct Env {
    pub segments: Arc<Segments>,
    pub max_dead_letters: u64,
    pub due: Arc<DueIndex>,
    /// The last channel's settings, handed out again for equal ones ([`Env::settings`]).
    pub last_settings: Arc<Mutex<Option<Arc<ChannelSettings>>>>,
}

impl Chan {
    fn empty(record: ChanRecord, id: u64, notify: Option<Arc<Notify>>, env: &Env) -> Self {
        Self {
            record,
            id,
            seq: 0,
            counters: LazyCounters::default(),
            notify,
            deleted: false,
            segments: env.segments.clone(),
            max_dead_letters: env.max_dead_letters,
            m: Lazy::default(),
            queued_bytes: 0,
            generation: 0,
            outbox: Outbox::default(),
            counters_dirty: false,
            next_expiry: None,
            due: env.due.clone(),
            scheduled: None,
        }
    }

    /// A channel registered for the first time.
    pub fn create(
        reg: ChannelRegistration,
        id: u64,
        now: Timestamp,
        notify: Option<Arc<Notify>>,
        env: &Env,
    ) -> Self {
        let record = ChanRecord::new(
            reg.name.into(),
            env.settings(reg.settings),
            reg.owner,
            reg.webhook_ids,
            ChannelState::Active,
            None,
            now,
            now,
            Token::configured(&reg.configured_token_digest),
        );
        let mut chan = Self::empty(record, id, notify, env);
        chan.persist_record();
        chan.counters_dirty = true;
        chan
    }

    /// A channel as read from redb; its messages follow from the log scan (`scan`).
    pub fn load(l: LoadedChannel, env: &Env) -> Self {
        let d = l.disk;
        let record = ChanRecord::new(
            l.name.into(),
            env.settings(d.settings),
            d.owner,
            d.webhook_ids,
            d.state,
            d.orphaned_at,
            d.created_at,
            d.updated_at,
            Token::of(&d.token),
        );
        let mut chan = Self::empty(record, d.id, None, env);
        chan.seq = l.counters.seq;
        chan.counters = l.counters.counters.into();
        chan
    }

    /// Takes the queued records (plus a counters snapshot when they changed) as one job whose
    /// callback records where they landed, then runs `then`.
    pub fn take_job(
        &mut self,
        handle: &ChanRef,
        durable: bool,
        then: Option<OnCommit>,
    ) -> Option<Job> {
        if self.counters_dirty {
            self.counters_dirty = false;
            let snap = CountersDisk {
                seq: self.seq,
                counters: (*self.counters).clone(),
            };
            self.outbox.push_meta(MetaWrite::Counters {
                name: self.record.name.to_string(),
                snap,
            });
        }
        if self.outbox.is_empty() && !durable && then.is_none() {
            return None;
        }
        let Queued { recs, tags, meta } = self.outbox.take();
        let on_commit: Option<OnCommit> = if tags.is_empty() {
            then
        } else {
            let handle = handle.clone();
            Some(Box::new(move |r: Result<&[Loc], String>| {
                handle.lock().committed(&tags, r.as_ref().ok().copied());
                if let Some(then) = then {
                    then(r);
                }
            }))
        };
        Some(Job {
            recs,
            meta,
            durable,
            on_commit,
        })
    }

    /// The writer's report: where each queued record landed (`None`: the write failed).
    fn committed(&mut self, tags: &[Tag], locs: Option<&[Loc]>) {
        let mut published = false;
        for (i, tag) in tags.iter().enumerate() {
            let loc = locs.and_then(|l| l.get(i).copied());
            match (tag, loc) {
                (Tag::Enqueue(seq), Some(loc)) => {
                    published |= self.publish(*seq, loc);
                }
                (Tag::Enqueue(seq), None) => self.unreserve(*seq),
                (Tag::Msg(seq), Some(loc)) => match self.m.entries.get_mut(*seq) {
                    Some(e) => {
                        let old = std::mem::replace(&mut e.loc, loc);
                        self.segments.drop_live(old);
                    }
                    None => self.segments.drop_live(loc),
                },
                (Tag::Copy { seq, from }, Some(loc)) if loc.len > 0 => {
                    match self.m.entries.get_mut(*seq) {
                        Some(e) if e.loc == *from => {
                            e.loc = loc;
                            self.segments.drop_live(*from);
                        }
                        _ => self.segments.drop_live(loc),
                    }
                }
                (Tag::State { seq, generation }, Some(loc)) => {
                    if self.m.entries.contains(*seq) {
                        self.m.state_locs.insert(*seq, loc);
                    }
                    if self
                        .m
                        .pending
                        .get(seq)
                        .is_some_and(|p| p.generation == *generation)
                    {
                        self.m.pending.remove(seq);
                    }
                }
                _ => {}
            }
        }
        if published {
            self.wake();
        }
    }

    fn holders_of(&self, seq: u64) -> &[Arc<str>] {
        self.m.holders.get(&seq).map_or(&[], Vec::as_slice)
    }

    pub fn unsettled(&self) -> u64 {
        (self.m.ready.len() + self.m.in_flight.len() + self.m.delayed.len() + self.m.reserved.len())
            as u64
    }

    pub fn is_empty(&self) -> bool {
        self.unsettled() == 0
    }

    // --- registration and tokens ----------------------------------------------------------

    /// Re-registration of an existing channel (§7 configured-token rule, §8.4 owner rule).
    pub fn register(&mut self, reg: ChannelRegistration, now: Timestamp, env: &Env) -> Registered {
        let before = self.record.clone();
        let token_changed = !self
            .record
            .token
            .configured_is(&reg.configured_token_digest);
        if token_changed {
            self.record.token = Token::configured(&reg.configured_token_digest);
        }
        let owner = if reg.webhook_ids.iter().any(|i| i == self.record.owner()) {
            self.record.owner().to_owned()
        } else {
            reg.webhook_ids.first().cloned().unwrap_or(reg.owner)
        };
        if self.record.settings.dlq_retention_seconds != reg.settings.dlq_retention_seconds {
            // Dead letters may be due under the new retention.
            self.wake_at(now.micros());
        }
        if *self.record.settings != reg.settings {
            self.record.settings = env.settings(reg.settings);
        }
        self.record.set_webhooks(owner, reg.webhook_ids);
        self.record.state = ChannelState::Active;
        self.record.orphaned_at = None;
        if self.record != before {
            self.record.updated_at = now;
            self.persist_record();
        }
        Registered {
            record: self.record.to_record(),
            configured_token_changed: token_changed,
            created: false,
        }
    }

    pub fn orphan(&mut self, now: Timestamp) {
        if self.record.state != ChannelState::Orphaned {
            self.record.state = ChannelState::Orphaned;
            self.record.orphaned_at = Some(now);
            self.record.updated_at = now;
            self.persist_record();
            // The sweep decides with the orphan retention in force.
            self.wake_at(now.micros());
        }
    }

    pub fn rotate_token(&mut self, new_digest: String, grace: u64, now: Timestamp) -> TokenState {
        self.record
            .token
            .rotate(&new_digest, now.plus_seconds(grace as f64), now);
        self.record.updated_at = now;
        self.persist_record();
        self.record.token.state()
    }

    fn persist_record(&mut self) {
        let disk: ChannelDisk = self.record.to_disk(self.id);
        if let Ok(bytes) = serde_json::to_vec(&disk) {
            self.outbox.push_meta(MetaWrite::Channel {
                name: self.record.name.to_string(),
                bytes,
            });
        }
    }

    // --- enqueue --------------------------------------------------------------------------

    /// Capacity checks, id uniqueness and sequence assignment; queues the message record.
    /// `record` is `msg` encoded for this channel (re-encoded here only if the id collides);
    /// `msg` itself may have lost its body already.
    pub fn reserve(&mut self, msg: &mut StoredMessage, mut record: Vec<u8>) -> Result<u64> {
        if self.record.state == ChannelState::Orphaned {
            return Err(BufferError::Orphaned);
        }
        if self.unsettled() >= self.record.settings.max_queue_size {
            return Err(BufferError::QueueFull);
        }
        if self.m.ids.contains(&msg.message_id) {
            while self.m.ids.contains(&msg.message_id) {
                msg.message_id = new_message_id();
            }
            // `msg` no longer has its body (the record does): re-encode from the record.
            let mut full = codec::decode_message_record(&record, &self.record.name)
                .map_err(|e| BufferError::Unavailable(e.to_string()))?;
            full.message_id = msg.message_id.clone();
            record = codec::message_record(self.id, 0, &full);
        }
        codec::set_seq(&mut record, self.seq + 1);
        let len = record.len() as u64;
        if self.queued_bytes + len > self.record.settings.max_queue_bytes {
            return Err(BufferError::QueueFull);
        }
        self.seq += 1;
        msg.sequence = self.seq;
        let id = self.m.ids.insert(&msg.message_id, self.seq);
        let webhook = self.webhook_of(msg.namespace.as_deref(), &msg.webhook_id);
        self.m.reserved.insert(
            self.seq,
            Reserved {
                id,
                webhook,
                received_at: msg.received_at.micros(),
                expires_at: msg.expires_at.micros(),
                len: len as u32,
            },
        );
        self.queued_bytes += len;
        self.counters.received += 1;
        self.counters_dirty = true;
        self.outbox.push(Rec::New(record), Tag::Enqueue(self.seq));
        Ok(self.seq)
    }

    /// The reserved message is durable: make it ready at the tail.
    fn publish(&mut self, seq: u64, loc: Loc) -> bool {
        let Some(r) = self.m.reserved.remove(&seq) else {
            self.segments.drop_live(loc);
            return false;
        };
        if self.deleted {
            self.segments.drop_live(loc);
            return false;
        }
        self.m.webhook_pending[r.webhook as usize] += 1;
        self.note_expiry(r.expires_at);
        self.m.entries.insert(
            seq,
            Entry {
                loc,
                expires_at: r.expires_at,
                received_at: r.received_at,
                id: r.id.unwrap_or_default(),
                delivery_count: 0,
                webhook: r.webhook,
                place: Place::Ready,
                id_packed: r.id.is_some(),
            },
        );
        self.m.ready.push_back(seq);
        true
    }

    /// The reserved message's write failed: give back the capacity and the id.
    fn unreserve(&mut self, seq: u64) {
        if let Some(r) = self.m.reserved.remove(&seq) {
            self.m.ids.remove(r.id, seq);
            self.queued_bytes = self.queued_bytes.saturating_sub(u64::from(r.len));
            self.counters.received = self.counters.received.saturating_sub(1);
            self.counters_dirty = true;
        }
    }

    /// The webhook-stats key of a message: `<namespace>/<id>` when the configuration names
    /// the webhook that way, else `<id>`; interned.
    fn webhook_of(&mut self, namespace: Option<&str>, webhook_id: &str) -> u32 {
        // Found without allocating on the ingest path when there is no namespace.
        let full;
        let key: &str = match namespace {
            None => webhook_id,
            Some(ns) => {
                full = format!("{ns}/{webhook_id}");
                let ids = self.record.webhook_ids();
                if ids.clone().any(|i| *i == *full) || !ids.into_iter().any(|i| i == webhook_id) {
                    &full
                } else {
                    webhook_id
                }
            }
        };
        if let Some(&i) = self.m.webhook_index.get(key) {
            return i;
        }
        let i = self.m.webhooks.len() as u32;
        self.m.webhooks.push(key.into());
        self.m.webhook_index.insert(key.into(), i);
        self.m.webhook_pending.push(0);
        i
    }

    fn note_expiry(&mut self, at: i64) {
        if self.next_expiry.is_none_or(|t| at < t) {
            self.next_expiry = Some(at);
        }
        self.wake_at(at);
    }

    fn dec_pending(&mut self, webhook: u32) {
        if let Some(n) = self.m.webhook_pending.get_mut(webhook as usize) {
            *n = n.saturating_sub(1);
        }
    }

    /// Drops an entry for good (settled, discarded or deleted): index, id, liveness.
    fn forget(&mut self, seq: u64) -> Option<Entry> {
        let e = self.m.entries.remove(seq)?;
        self.m.ids.remove(e.id_key(), seq);
        self.m.holders.remove(&seq);
        self.m.leases.remove(&seq);
        self.m.pending.remove(&seq);
        self.m.state_locs.remove(&seq);
        self.m.delayed_until.remove(&seq);
        self.m.dead_info.remove(&seq);
        self.m.trim();
        self.segments.drop_live(e.loc);
        if e.place != Place::Dead {
            self.queued_bytes = self.queued_bytes.saturating_sub(u64::from(e.loc.len));
        }
        Some(e)
    }

    /// The attempts of a message as last decided: pending, in its state record, or none yet.
    /// (Reads the state record under the lock: only for a message that was attempted
    /// before and changes place again.)
    fn attempts(&self, seq: u64) -> Attempts {
        if let Some(p) = self.m.pending.get(&seq) {
            return p.attempts.clone();
        }
        let Some(e) = self.m.entries.get(seq) else {
            return Attempts::default();
        };
        let mut a = self
            .m
            .state_locs
            .get(&seq)
            .and_then(|loc| self.read_attempts(*loc))
            .unwrap_or_default();
        a.delivery_count = e.delivery_count;
        a
    }

    /// Queues a state record with the entry's place and `attempts`, kept in `pending` until
    /// it is written.
    fn persist_state(&mut self, seq: u64, attempts: Attempts) {
        let Some(e) = self.m.entries.get(seq) else {
            return;
        };
        let place = match e.place {
            // Leases are not persisted: after a restart the message is ready again.
            Place::Ready | Place::Leased => PlaceDisk::Ready,
            Place::Delayed => PlaceDisk::Delayed {
                until: Timestamp::from_micros(self.m.delayed_until.get(&seq).copied().unwrap_or(0)),
            },
            Place::Dead => {
                // Always present for a dead letter (set together with the place).
                let Some(&(reason, at)) = self.m.dead_info.get(&seq) else {
                    return;
                };
                PlaceDisk::Dead {
                    reason,
                    at: Timestamp::from_micros(at),
                }
            }
        };
        self.generation = self.generation.wrapping_add(1);
        let rec = Rec::New(codec::state_record(self.id, seq, &attempts, place));
        let tag = Tag::State {
            seq,
            generation: self.generation,
        };
        self.outbox.push(rec, tag);
        self.m.pending.insert(
            seq,
            Pending {
                generation: self.generation,
                attempts,
            },
        );
    }

    /// The attempts of a state record in the log.
    pub(super) fn read_attempts(&self, loc: Loc) -> Option<Attempts> {
        read_attempts(&self.segments, loc)
    }

    /// Marks the channel deleted and queues the removal of everything it stored; returns
    /// the number of unsettled messages discarded.
    pub fn delete(&mut self) -> u64 {
        let discarded = self.unsettled();
        self.deleted = true;
        self.outbox.clear();
        self.counters_dirty = false;
        let seqs: Vec<u64> = self.m.entries.keys().collect();
        for seq in seqs {
            self.forget(seq);
        }
        self.m.ready.clear();
        self.m.in_flight.clear();
        self.m.delayed.clear();
        self.m.dead.clear();
        self.m.ids.clear();
        self.outbox.push_meta(MetaWrite::Drop {
            name: self.record.name.to_string(),
        });
        discarded
    }
}

// What a message costs in memory beyond its id (see docs/OPERATIONS.md, "Sizing").
const _: () = assert!(std::mem::size_of::<Entry>() <= 48);
// What an idle channel costs inline (issue #14): 488 B with the whole `ChannelRecord` and the
// counters inline, 280 B with the compact record (`record`) and lazy counters (`counters`),
// 288 B with a single webhook id held without its slice (its 16 B allocation saved).
const _: () = assert!(std::mem::size_of::<Chan>() <= 288);

/// The attempts of a state record in the log.
pub(super) fn read_attempts(segments: &Segments, loc: Loc) -> Option<Attempts> {
    let bytes = segments.read(loc).ok()?;
    let (head, _) = codec::split_record(&bytes).ok()?;
    Some(codec::decode_state(head).ok()?.attempts)
}
