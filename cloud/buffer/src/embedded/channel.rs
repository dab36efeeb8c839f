//! One channel's runtime state and its transitions (PROTOCOL §6, §7, §8.4).
//!
//! Everything here is synchronous and runs under the channel's mutex. Every transition
//! queues the writes that keep the on-disk record in step into `out`; the caller ships them
//! to the writer thread *before releasing the lock*, so the store sees changes in the same
//! order as memory does (and new messages in sequence order).
//!
//! Messages are keyed by sequence internally (unique per channel, replays keep it).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use connect_protocol::admin::{ChannelState, TokenSource};
use connect_protocol::ids::new_message_id;
use connect_protocol::message::{Attempts, DeadLetterReason, MessageState, StoredMessage};
use connect_protocol::time::Timestamp;
use rand::Rng;
use tokio::sync::Notify;

use super::store::{
    ChannelDisk, CountersDisk, Job, LoadedChannel, OnCommit, PlaceDisk, StateDisk, Write,
};
use crate::{
    AckOutcome, BufferError, BufferStats, BulkReplay, ChannelRecord, ChannelRegistration, Counters,
    Leased, LostLease, MessageRecord, NackOutcome, PeekFilter, Registered, ReplayOutcome, Result,
    SweepReport, TokenState,
};

/// NACK error texts are kept up to this many characters (§5.4).
const MAX_ERROR_CHARS: usize = 1024;

enum Place {
    Ready,
    Leased {
        conn: String,
        deadline: Timestamp,
    },
    Delayed {
        until: Timestamp,
    },
    Dead {
        reason: DeadLetterReason,
        at: Timestamp,
    },
}

struct Entry {
    msg: Arc<StoredMessage>,
    attempts: Attempts,
    place: Place,
    /// Every connection that ever held a lease since the last restart (late ACKs).
    holders: Vec<String>,
    /// The webhook-stats key this message counts under.
    webhook: String,
}

pub(super) struct Chan {
    pub record: ChannelRecord,
    pub seq: u64,
    pub counters: Counters,
    pub notify: Arc<Notify>,
    /// Set under the lock when the channel is deleted; holders of a stale handle stop here.
    pub deleted: bool,
    entries: BTreeMap<u64, Entry>,
    /// Message id → sequence, including ids reserved by enqueues awaiting their commit.
    ids: HashMap<String, u64>,
    /// Dispatch order: requeued leases at the head, new/promoted/replayed at the tail.
    ready: VecDeque<u64>,
    in_flight: BTreeSet<u64>,
    delayed: BTreeSet<(Timestamp, u64)>,
    dead: BTreeSet<(Timestamp, u64)>,
    /// Enqueues awaiting their commit; they count toward capacity.
    reserved: u64,
    webhook_pending: HashMap<String, u64>,
    out: Vec<Write>,
    counters_dirty: bool,
    /// No unsettled message expires before this instant (a lower bound: settled messages
    /// may have set it). Lets the periodic sweep skip the TTL scan of a large backlog until
    /// something can actually have expired.
    next_expiry: Option<Timestamp>,
}

impl Chan {
    fn empty(record: ChannelRecord, notify: Arc<Notify>) -> Self {
        Self {
            record,
            seq: 0,
            counters: Counters::default(),
            notify,
            deleted: false,
            entries: BTreeMap::new(),
            ids: HashMap::new(),
            ready: VecDeque::new(),
            in_flight: BTreeSet::new(),
            delayed: BTreeSet::new(),
            dead: BTreeSet::new(),
            reserved: 0,
            webhook_pending: HashMap::new(),
            out: Vec::new(),
            counters_dirty: false,
            next_expiry: None,
        }
    }

    /// A channel registered for the first time.
    pub fn create(reg: ChannelRegistration, now: Timestamp, notify: Arc<Notify>) -> Self {
        let record = ChannelRecord {
            name: reg.name,
            settings: reg.settings,
            owner: reg.owner,
            webhook_ids: reg.webhook_ids,
            state: ChannelState::Active,
            orphaned_at: None,
            created_at: now,
            updated_at: now,
            token: TokenState {
                current_digest: reg.configured_token_digest.clone(),
                source: TokenSource::Config,
                configured_digest: reg.configured_token_digest,
                previous_digest: None,
                previous_expires_at: None,
                rotated_at: None,
            },
        };
        let mut chan = Self::empty(record, notify);
        chan.persist_record();
        chan.counters_dirty = true;
        chan
    }

    /// A channel as read from disk: formerly leased messages are simply ready again.
    pub fn load(l: LoadedChannel, notify: Arc<Notify>) -> Self {
        let d = l.disk;
        let record = ChannelRecord {
            name: l.name,
            settings: d.settings,
            owner: d.owner,
            webhook_ids: d.webhook_ids,
            state: d.state,
            orphaned_at: d.orphaned_at,
            created_at: d.created_at,
            updated_at: d.updated_at,
            token: d.token,
        };
        let mut chan = Self::empty(record, notify);
        chan.seq = l.counters.seq;
        chan.counters = l.counters.counters;
        for (msg, state) in l.messages {
            let seq = msg.sequence;
            chan.seq = chan.seq.max(seq);
            let (attempts, place) = match state {
                Some(s) => (s.attempts, s.place),
                None => (Attempts::default(), PlaceDisk::Ready),
            };
            let place = match place {
                PlaceDisk::Ready => {
                    chan.ready.push_back(seq);
                    Place::Ready
                }
                PlaceDisk::Delayed { until } => {
                    chan.delayed.insert((until, seq));
                    Place::Delayed { until }
                }
                PlaceDisk::Dead { reason, at } => {
                    chan.dead.insert((at, seq));
                    Place::Dead { reason, at }
                }
            };
            let webhook = chan.webhook_key(&msg);
            if !matches!(place, Place::Dead { .. }) {
                *chan.webhook_pending.entry(webhook.clone()).or_default() += 1;
            }
            chan.ids.insert(msg.message_id.clone(), seq);
            chan.note_expiry(msg.expires_at);
            let entry = Entry {
                msg: Arc::new(msg),
                attempts,
                place,
                holders: Vec::new(),
                webhook,
            };
            chan.entries.insert(seq, entry);
        }
        chan
    }

    /// Takes the queued writes (plus a counters snapshot when they changed) as one job.
    pub fn take_job(&mut self, durable: bool, on_commit: Option<OnCommit>) -> Option<Job> {
        if self.counters_dirty {
            self.counters_dirty = false;
            let snap = CountersDisk {
                seq: self.seq,
                counters: self.counters.clone(),
            };
            if let Ok(bytes) = serde_json::to_vec(&snap) {
                self.out.push(Write::Counters {
                    channel: self.record.name.clone(),
                    bytes,
                });
            }
        }
        if self.out.is_empty() && !durable && on_commit.is_none() {
            return None;
        }
        Some(Job {
            writes: std::mem::take(&mut self.out),
            durable,
            on_commit,
        })
    }

    pub fn unsettled(&self) -> u64 {
        (self.ready.len() + self.in_flight.len() + self.delayed.len()) as u64 + self.reserved
    }

    pub fn is_empty(&self) -> bool {
        self.unsettled() == 0
    }

    // --- registration and tokens ----------------------------------------------------------

    /// Re-registration of an existing channel (§7 configured-token rule, §8.4 owner rule).
    pub fn register(&mut self, reg: ChannelRegistration, now: Timestamp) -> Registered {
        let before = self.record.clone();
        let token_changed = self.record.token.configured_digest != reg.configured_token_digest;
        if token_changed {
            self.record.token = TokenState {
                current_digest: reg.configured_token_digest.clone(),
                source: TokenSource::Config,
                configured_digest: reg.configured_token_digest,
                previous_digest: None,
                previous_expires_at: None,
                rotated_at: None,
            };
        }
        if !reg.webhook_ids.contains(&self.record.owner) {
            self.record.owner = reg.webhook_ids.first().cloned().unwrap_or(reg.owner);
        }
        self.record.settings = reg.settings;
        self.record.webhook_ids = reg.webhook_ids;
        self.record.state = ChannelState::Active;
        self.record.orphaned_at = None;
        if self.record != before {
            self.record.updated_at = now;
            self.persist_record();
        }
        Registered {
            record: self.record.clone(),
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
        }
    }

    pub fn rotate_token(&mut self, new_digest: String, grace: u64, now: Timestamp) -> TokenState {
        let t = &mut self.record.token;
        // Whatever was previous (even still in grace) is dropped: at most one previous token.
        t.previous_digest = Some(std::mem::replace(&mut t.current_digest, new_digest));
        t.previous_expires_at = Some(now.plus_seconds(grace as f64));
        t.source = TokenSource::Rotated;
        t.rotated_at = Some(now);
        self.record.updated_at = now;
        self.persist_record();
        self.record.token.clone()
    }

    fn persist_record(&mut self) {
        let r = &self.record;
        let disk = ChannelDisk {
            settings: r.settings.clone(),
            owner: r.owner.clone(),
            webhook_ids: r.webhook_ids.clone(),
            state: r.state,
            orphaned_at: r.orphaned_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
            token: r.token.clone(),
        };
        if let Ok(bytes) = serde_json::to_vec(&disk) {
            self.out.push(Write::Channel {
                name: r.name.clone(),
                bytes,
            });
        }
    }

    // --- enqueue --------------------------------------------------------------------------

    /// Capacity check, id uniqueness and sequence assignment; queues the message write.
    /// `bytes` is `msg` serialized (re-serialized here only if the id collides).
    pub fn reserve(&mut self, msg: &mut StoredMessage, mut bytes: Vec<u8>) -> Result<u64> {
        if self.record.state == ChannelState::Orphaned {
            return Err(BufferError::Orphaned);
        }
        if self.unsettled() >= self.record.settings.max_queue_size {
            return Err(BufferError::QueueFull);
        }
        if self.ids.contains_key(&msg.message_id) {
            while self.ids.contains_key(&msg.message_id) {
                msg.message_id = new_message_id();
            }
            bytes = serde_json::to_vec(&*msg)
                .map_err(|e| BufferError::Unavailable(format!("serializing: {e}")))?;
        }
        self.seq += 1;
        msg.sequence = self.seq;
        self.ids.insert(msg.message_id.clone(), self.seq);
        self.reserved += 1;
        self.counters.received += 1;
        self.counters_dirty = true;
        self.out.push(Write::Message {
            channel: self.record.name.clone(),
            seq: self.seq,
            bytes,
        });
        Ok(self.seq)
    }

    /// The reserved message is durable: make it ready at the tail.
    pub fn publish(&mut self, msg: Arc<StoredMessage>) {
        self.reserved = self.reserved.saturating_sub(1);
        if self.deleted {
            return;
        }
        let seq = msg.sequence;
        let webhook = self.webhook_key(&msg);
        *self.webhook_pending.entry(webhook.clone()).or_default() += 1;
        self.note_expiry(msg.expires_at);
        self.entries.insert(
            seq,
            Entry {
                msg,
                attempts: Attempts::default(),
                place: Place::Ready,
                holders: Vec::new(),
                webhook,
            },
        );
        self.ready.push_back(seq);
    }

    /// The reserved message's write failed: give back the capacity and the id.
    pub fn unreserve(&mut self, msg: &StoredMessage) {
        self.reserved = self.reserved.saturating_sub(1);
        self.ids.remove(&msg.message_id);
        self.counters.received = self.counters.received.saturating_sub(1);
        self.counters_dirty = true;
    }

    /// `<namespace>/<id>` when the configuration names the webhook that way, else `<id>`.
    fn webhook_key(&self, msg: &StoredMessage) -> String {
        match &msg.namespace {
            None => msg.webhook_id.clone(),
            Some(ns) => {
                let full = format!("{ns}/{}", msg.webhook_id);
                let ids = &self.record.webhook_ids;
                if ids.contains(&full) || !ids.contains(&msg.webhook_id) {
                    full
                } else {
                    msg.webhook_id.clone()
                }
            }
        }
    }

    // --- delivery -------------------------------------------------------------------------

    pub fn lease(&mut self, conn: &str, max: usize, now: Timestamp) -> Vec<Leased> {
        let max_attempts = self.record.settings.max_delivery_attempts;
        let deadline = now.plus_seconds(self.record.settings.ack_timeout_seconds as f64);
        let mut out = Vec::new();
        while out.len() < max {
            let Some(seq) = self.ready.pop_front() else {
                break;
            };
            let Some(e) = self.entries.get_mut(&seq) else {
                continue;
            };
            if e.msg.expires_at <= now {
                self.dead_letter(seq, DeadLetterReason::Expired, now);
                continue;
            }
            if e.attempts.delivery_count >= max_attempts {
                self.dead_letter(seq, DeadLetterReason::MaxDeliveryAttempts, now);
                continue;
            }
            e.attempts.delivery_count += 1;
            e.attempts.first_attempt_at.get_or_insert(now);
            e.attempts.last_attempt_at = Some(now);
            e.place = Place::Leased {
                conn: conn.to_owned(),
                deadline,
            };
            if !e.holders.iter().any(|h| h == conn) {
                e.holders.push(conn.to_owned());
            }
            out.push(Leased {
                message: e.msg.clone(),
                delivery_count: e.attempts.delivery_count,
            });
            self.in_flight.insert(seq);
            self.counters.dispatched += 1;
            self.counters_dirty = true;
            self.persist_state(seq);
        }
        out
    }

    pub fn ack(&mut self, message_id: &str, conn: &str) -> AckOutcome {
        let Some(&seq) = self.ids.get(message_id) else {
            return AckOutcome::NotInFlight;
        };
        let Some(e) = self.entries.get(&seq) else {
            return AckOutcome::NotInFlight;
        };
        if matches!(e.place, Place::Dead { .. }) || !e.holders.iter().any(|h| h == conn) {
            return AckOutcome::NotInFlight;
        }
        let held_lease = matches!(&e.place, Place::Leased { conn: c, .. } if c == conn);
        self.unlink(seq);
        if let Some(e) = self.entries.remove(&seq) {
            self.ids.remove(&e.msg.message_id);
            self.dec_pending(&e.webhook);
        }
        self.counters.acked += 1;
        self.counters_dirty = true;
        self.out.push(Write::Remove {
            channel: self.record.name.clone(),
            seq,
        });
        AckOutcome::Settled { held_lease }
    }

    pub fn nack(
        &mut self,
        message_id: &str,
        conn: &str,
        retry: bool,
        error: Option<String>,
        now: Timestamp,
    ) -> NackOutcome {
        let Some(seq) = self.held_by(message_id, conn) else {
            return NackOutcome::NotHeld;
        };
        self.in_flight.remove(&seq);
        self.counters.nacked += 1;
        self.counters_dirty = true;
        let max_attempts = self.record.settings.max_delivery_attempts;
        let backoff_max = self.record.settings.retry_backoff_max_seconds;
        let Some(e) = self.entries.get_mut(&seq) else {
            return NackOutcome::NotHeld;
        };
        if let Some(err) = error {
            e.attempts.last_error = Some(err.chars().take(MAX_ERROR_CHARS).collect());
        }
        let reason = if !retry {
            Some(DeadLetterReason::Rejected)
        } else if e.attempts.delivery_count >= max_attempts {
            Some(DeadLetterReason::MaxDeliveryAttempts)
        } else if e.msg.expires_at <= now {
            Some(DeadLetterReason::Expired)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.dead_letter(seq, reason, now);
            return NackOutcome::DeadLettered(reason);
        }
        let until = now.plus_seconds(backoff_seconds(e.attempts.delivery_count, backoff_max));
        e.place = Place::Delayed { until };
        self.delayed.insert((until, seq));
        self.persist_state(seq);
        NackOutcome::Delayed { until }
    }

    pub fn extend(&mut self, message_id: &str, conn: &str, now: Timestamp) -> bool {
        let Some(seq) = self.held_by(message_id, conn) else {
            return false;
        };
        let new_deadline = now.plus_seconds(self.record.settings.ack_timeout_seconds as f64);
        if let Some(Entry {
            place: Place::Leased { deadline, .. },
            ..
        }) = self.entries.get_mut(&seq)
        {
            *deadline = new_deadline;
        }
        true
    }

    /// All leases of `conn` back to the head, in sequence order.
    pub fn release(&mut self, conn: &str) -> Vec<String> {
        let seqs: Vec<u64> = self
            .in_flight
            .iter()
            .copied()
            .filter(|s| {
                matches!(self.entries.get(s),
                    Some(Entry { place: Place::Leased { conn: c, .. }, .. }) if c == conn)
            })
            .collect();
        self.requeue_head(&seqs)
    }

    fn requeue_head(&mut self, seqs: &[u64]) -> Vec<String> {
        let mut ids = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            self.in_flight.remove(&seq);
            if let Some(e) = self.entries.get_mut(&seq) {
                e.place = Place::Ready;
                ids.push(e.msg.message_id.clone());
            }
        }
        for &seq in seqs.iter().rev() {
            self.ready.push_front(seq);
        }
        ids
    }

    fn held_by(&self, message_id: &str, conn: &str) -> Option<u64> {
        let seq = *self.ids.get(message_id)?;
        match self.entries.get(&seq)?.place {
            Place::Leased { conn: ref c, .. } if c == conn => Some(seq),
            _ => None,
        }
    }

    /// Removes the message from whichever index holds it (not from `entries`).
    fn unlink(&mut self, seq: u64) {
        let Some(e) = self.entries.get(&seq) else {
            return;
        };
        match e.place {
            Place::Ready => {
                if let Some(pos) = self.ready.iter().position(|s| *s == seq) {
                    self.ready.remove(pos);
                }
            }
            Place::Leased { .. } => {
                self.in_flight.remove(&seq);
            }
            Place::Delayed { until } => {
                self.delayed.remove(&(until, seq));
            }
            Place::Dead { at, .. } => {
                self.dead.remove(&(at, seq));
            }
        }
    }

    /// Dead-letters a message already removed from the ready/in-flight/delayed indexes.
    fn dead_letter(&mut self, seq: u64, reason: DeadLetterReason, now: Timestamp) {
        let Some(e) = self.entries.get_mut(&seq) else {
            return;
        };
        e.place = Place::Dead { reason, at: now };
        let webhook = e.webhook.clone();
        self.dead.insert((now, seq));
        self.counters.dead_lettered += 1;
        match reason {
            DeadLetterReason::Expired => self.counters.expired += 1,
            DeadLetterReason::Rejected => self.counters.rejected += 1,
            DeadLetterReason::MaxDeliveryAttempts => self.counters.exhausted += 1,
        }
        self.counters_dirty = true;
        self.dec_pending(&webhook);
        self.persist_state(seq);
    }

    fn dec_pending(&mut self, webhook: &str) {
        if let Some(n) = self.webhook_pending.get_mut(webhook) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.webhook_pending.remove(webhook);
            }
        }
    }

    fn persist_state(&mut self, seq: u64) {
        let Some(e) = self.entries.get(&seq) else {
            return;
        };
        let place = match e.place {
            // Leases are not persisted: after a restart the message is ready again.
            Place::Ready | Place::Leased { .. } => PlaceDisk::Ready,
            Place::Delayed { until } => PlaceDisk::Delayed { until },
            Place::Dead { reason, at } => PlaceDisk::Dead { reason, at },
        };
        let state = StateDisk {
            attempts: e.attempts.clone(),
            place,
        };
        if let Ok(bytes) = serde_json::to_vec(&state) {
            self.out.push(Write::State {
                channel: self.record.name.clone(),
                seq,
                bytes,
            });
        }
    }

    /// Ack timeouts, promotions, TTL and DLQ retention. Returns true when ready work appeared.
    pub fn sweep(&mut self, now: Timestamp, report: &mut SweepReport) -> bool {
        let lost: Vec<u64> = self
            .in_flight
            .iter()
            .copied()
            .filter(|s| {
                matches!(self.entries.get(s),
                    Some(Entry { place: Place::Leased { deadline, .. }, .. }) if *deadline <= now)
            })
            .collect();
        for &seq in &lost {
            if let Some(Entry {
                place: Place::Leased { conn, .. },
                msg,
                ..
            }) = self.entries.get(&seq)
            {
                report.expired_leases.push(LostLease {
                    channel: self.record.name.clone(),
                    connection_id: conn.clone(),
                    message_id: msg.message_id.clone(),
                });
            }
        }
        self.requeue_head(&lost);

        let mut promoted = 0;
        while let Some(&(until, seq)) = self.delayed.first() {
            if until > now {
                break;
            }
            self.delayed.pop_first();
            if let Some(e) = self.entries.get_mut(&seq) {
                e.place = Place::Ready;
                self.ready.push_back(seq);
                self.persist_state(seq);
                promoted += 1;
            }
        }
        report.promoted += promoted;

        let (expired_ready, expired_delayed) = if self.next_expiry.is_some_and(|t| t <= now) {
            self.take_expired(now)
        } else {
            (Vec::new(), Vec::new())
        };
        for seq in expired_ready
            .into_iter()
            .chain(expired_delayed.into_iter().map(|(_, s)| s))
        {
            self.dead_letter(seq, DeadLetterReason::Expired, now);
            report.expired += 1;
            report.dead_lettered += 1;
        }

        let retention = self.record.settings.dlq_retention_seconds;
        if retention > 0 {
            while let Some(&(at, seq)) = self.dead.first() {
                if at.plus_seconds(retention as f64) > now {
                    break;
                }
                self.dead.pop_first();
                self.remove_dead(seq);
                report.dlq_removed += 1;
            }
        }
        !lost.is_empty() || promoted > 0
    }

    fn note_expiry(&mut self, at: Timestamp) {
        if self.next_expiry.is_none_or(|t| at < t) {
            self.next_expiry = Some(at);
        }
    }

    /// Removes expired ready and delayed messages from their queues (leased ones are not
    /// interrupted) and recomputes the expiry bound. One pass over the backlog, run only when
    /// the bound says something is due.
    fn take_expired(&mut self, now: Timestamp) -> (Vec<u64>, Vec<(Timestamp, u64)>) {
        let expired_ready: HashSet<u64> = self
            .ready
            .iter()
            .copied()
            .filter(|s| self.expired(*s, now))
            .collect();
        if !expired_ready.is_empty() {
            self.ready.retain(|s| !expired_ready.contains(s));
        }
        let expired_delayed: Vec<(Timestamp, u64)> = self
            .delayed
            .iter()
            .copied()
            .filter(|(_, s)| self.expired(*s, now))
            .collect();
        for key in &expired_delayed {
            self.delayed.remove(key);
        }
        self.next_expiry = self
            .entries
            .values()
            .filter(|e| !matches!(e.place, Place::Dead { .. }))
            .map(|e| e.msg.expires_at)
            .filter(|t| *t > now)
            .min();
        // Leased messages that are already past their expiry are dead-lettered when they
        // come back (lease time); keep the bound so the next sweep looks again.
        if self.in_flight.iter().any(|s| self.expired(*s, now)) {
            self.next_expiry = Some(now);
        }
        let mut ready: Vec<u64> = expired_ready.into_iter().collect();
        ready.sort_unstable();
        (ready, expired_delayed)
    }

    fn expired(&self, seq: u64, now: Timestamp) -> bool {
        self.entries
            .get(&seq)
            .is_some_and(|e| e.msg.expires_at <= now)
    }

    /// Drops a dead letter (already out of `dead`) for good, counting it as discarded.
    fn remove_dead(&mut self, seq: u64) {
        if let Some(e) = self.entries.remove(&seq) {
            self.ids.remove(&e.msg.message_id);
        }
        self.counters.discarded += 1;
        self.counters_dirty = true;
        self.out.push(Write::Remove {
            channel: self.record.name.clone(),
            seq,
        });
    }

    // --- dead letters ---------------------------------------------------------------------

    pub fn dead_letters(&self, limit: usize) -> (Vec<MessageRecord>, u64) {
        let items = self
            .dead
            .iter()
            .rev()
            .take(limit)
            .filter_map(|(_, s)| self.entries.get(s).map(record_of))
            .collect();
        (items, self.dead.len() as u64)
    }

    pub fn dead_letter_record(&self, message_id: &str) -> Option<MessageRecord> {
        let e = self.entries.get(self.ids.get(message_id)?)?;
        matches!(e.place, Place::Dead { .. }).then(|| record_of(e))
    }

    pub fn replay(&mut self, message_id: &str, now: Timestamp) -> ReplayOutcome {
        let Some(&seq) = self.ids.get(message_id) else {
            return ReplayOutcome::NotFound;
        };
        self.replay_seq(seq, now)
    }

    fn replay_seq(&mut self, seq: u64, now: Timestamp) -> ReplayOutcome {
        let dead_at = match self.entries.get(&seq) {
            Some(Entry {
                place: Place::Dead { at, .. },
                ..
            }) => *at,
            _ => return ReplayOutcome::NotFound,
        };
        if self.unsettled() >= self.record.settings.max_queue_size {
            return ReplayOutcome::QueueFull;
        }
        self.dead.remove(&(dead_at, seq));
        let Some(e) = self.entries.get_mut(&seq) else {
            return ReplayOutcome::NotFound;
        };
        let ttl_us = e.msg.expires_at.micros() - e.msg.received_at.micros();
        let mut msg = (*e.msg).clone();
        msg.expires_at = Timestamp::from_micros(now.micros().saturating_add(ttl_us));
        let expires_at = msg.expires_at;
        let bytes = serde_json::to_vec(&msg).ok();
        e.msg = Arc::new(msg);
        e.attempts = Attempts::default();
        e.place = Place::Ready;
        e.holders.clear();
        let webhook = e.webhook.clone();
        *self.webhook_pending.entry(webhook).or_default() += 1;
        self.ready.push_back(seq);
        self.note_expiry(expires_at);
        self.counters.replayed += 1;
        self.counters_dirty = true;
        if let Some(bytes) = bytes {
            self.out.push(Write::Message {
                channel: self.record.name.clone(),
                seq,
                bytes,
            });
        }
        self.persist_state(seq);
        ReplayOutcome::Replayed
    }

    /// Oldest dead letters first; stops at the first queue-full.
    pub fn replay_all(&mut self, limit: Option<u64>, now: Timestamp) -> BulkReplay {
        let want = limit.unwrap_or(u64::MAX);
        let candidates: Vec<u64> = self
            .dead
            .iter()
            .take(usize::try_from(want).unwrap_or(usize::MAX))
            .map(|(_, s)| *s)
            .collect();
        let mut replayed = 0;
        let mut stopped_queue_full = false;
        for seq in candidates {
            match self.replay_seq(seq, now) {
                ReplayOutcome::Replayed => replayed += 1,
                ReplayOutcome::QueueFull => {
                    stopped_queue_full = true;
                    break;
                }
                ReplayOutcome::NotFound => {}
            }
        }
        BulkReplay {
            replayed,
            remaining: self.dead.len() as u64,
            stopped_queue_full,
        }
    }

    pub fn delete_dead_letter(&mut self, message_id: &str) -> bool {
        let Some(&seq) = self.ids.get(message_id) else {
            return false;
        };
        let Some(Entry {
            place: Place::Dead { at, .. },
            ..
        }) = self.entries.get(&seq)
        else {
            return false;
        };
        let at = *at;
        self.dead.remove(&(at, seq));
        self.remove_dead(seq);
        true
    }

    pub fn purge_dead_letters(&mut self) -> u64 {
        let all = std::mem::take(&mut self.dead);
        for &(_, seq) in &all {
            self.remove_dead(seq);
        }
        all.len() as u64
    }

    // --- views ----------------------------------------------------------------------------

    pub fn peek(&self, filter: PeekFilter, limit: usize) -> Vec<MessageRecord> {
        let in_flight = self.in_flight.iter().copied();
        let ready = self.ready.iter().copied();
        let delayed = self.delayed.iter().map(|(_, s)| *s);
        let seqs: Box<dyn Iterator<Item = u64>> = match filter {
            PeekFilter::InFlight => Box::new(in_flight),
            PeekFilter::Ready => Box::new(ready),
            PeekFilter::Delayed => Box::new(delayed),
            PeekFilter::All => Box::new(in_flight.chain(ready).chain(delayed)),
        };
        seqs.filter_map(|s| self.entries.get(&s).map(record_of))
            .take(limit)
            .collect()
    }

    pub fn stats(&self) -> BufferStats {
        BufferStats {
            counters: self.counters.clone(),
            ready: self.ready.len() as u64,
            in_flight: self.in_flight.len() as u64,
            delayed: self.delayed.len() as u64,
            dead_letters: self.dead.len() as u64,
            oldest_unsettled_at: self
                .entries
                .values()
                .find(|e| !matches!(e.place, Place::Dead { .. }))
                .map(|e| e.msg.received_at),
            webhook_pending: self
                .webhook_pending
                .iter()
                .filter(|(_, n)| **n > 0)
                .map(|(k, n)| (k.clone(), *n))
                .collect(),
        }
    }

    /// Marks the channel deleted and queues the removal of everything it stored; returns
    /// the number of unsettled messages discarded.
    pub fn delete(&mut self) -> u64 {
        let discarded = self.unsettled();
        self.deleted = true;
        self.out.clear();
        self.counters_dirty = false;
        self.out.push(Write::DropChannel {
            name: self.record.name.clone(),
        });
        discarded
    }
}

fn record_of(e: &Entry) -> MessageRecord {
    let (state, leased_to, lease_expires_at, next_attempt_at, reason, dead_lettered_at) = match &e
        .place
    {
        Place::Ready => (MessageState::Ready, None, None, None, None, None),
        Place::Leased { conn, deadline } => (
            MessageState::InFlight,
            Some(conn.clone()),
            Some(*deadline),
            None,
            None,
            None,
        ),
        Place::Delayed { until } => (MessageState::Delayed, None, None, Some(*until), None, None),
        Place::Dead { reason, at } => (
            MessageState::DeadLettered,
            None,
            None,
            None,
            Some(*reason),
            Some(*at),
        ),
    };
    MessageRecord {
        message: e.msg.clone(),
        attempts: e.attempts.clone(),
        state,
        leased_to,
        lease_expires_at,
        next_attempt_at,
        reason,
        dead_lettered_at,
    }
}

/// §6.3: `min(max, 2^(n−1) s) × jitter[0.8, 1.2]`, capped at `max`.
fn backoff_seconds(delivery_count: u32, max_seconds: u64) -> f64 {
    let max = max_seconds as f64;
    let exp = delivery_count.saturating_sub(1).min(62) as i32;
    let base = 2f64.powi(exp).min(max);
    (base * rand::rng().random_range(0.8..=1.2)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for _ in 0..200 {
            let d1 = backoff_seconds(1, 60);
            assert!((0.8..=1.2).contains(&d1), "{d1}");
            let d3 = backoff_seconds(3, 60);
            assert!((3.2..=4.8).contains(&d3), "{d3}");
            let big = backoff_seconds(40, 60);
            assert!((48.0..=60.0).contains(&big), "{big}");
            assert!(backoff_seconds(7, 10) <= 10.0);
        }
    }
}
