//! Dead letters of one channel: list, replay, delete, purge, retention and the count cap.

use super::{Chan, Place, Tag, View};

/// A dead letter's message record re-encoded with its new expiry, and that expiry (µs).
pub(in crate::embedded) type Replayed = Option<(Vec<u8>, i64)>;
use crate::embedded::writer::Rec;
use crate::{BulkReplay, ReplayOutcome};

impl Chan {
    /// Newest first, at most `limit`; also the DLQ size.
    pub fn dead_letters(&self, limit: usize) -> (Vec<View>, u64) {
        let items = self
            .m
            .dead
            .iter()
            .rev()
            .take(limit)
            .filter_map(|(_, s)| self.view(*s))
            .collect();
        (items, self.m.dead.len() as u64)
    }

    pub fn dead_letter_view(&self, message_id: &str) -> Option<View> {
        let seq = self.m.ids.get(message_id)?;
        let e = self.m.entries.get(seq)?;
        (e.place == Place::Dead).then(|| self.view(seq)).flatten()
    }

    /// Is `message_id` a dead letter that a replay could take right now? (Checked before the
    /// record is read, outside the lock, for a replay.)
    pub fn replay_candidate(&self, message_id: &str) -> Option<(u64, super::Loc)> {
        let seq = self.m.ids.get(message_id)?;
        let e = self.m.entries.get(seq)?;
        (e.place == Place::Dead).then_some((seq, e.loc))
    }

    /// Replays a dead letter: a fresh TTL from now, attempts reset, at the tail. `record`
    /// is the message re-encoded with its new expiry (the caller read it from the log).
    pub fn replay_seq(&mut self, seq: u64, record: Option<(Vec<u8>, i64)>) -> ReplayOutcome {
        let (dead_at, len) = match (self.m.entries.get(seq), self.m.dead_info.get(&seq)) {
            (Some(e), Some(&(_, at))) if e.place == Place::Dead => (at, e.loc.len),
            _ => return ReplayOutcome::NotFound,
        };
        let Some((record, expires_at)) = record else {
            return ReplayOutcome::NotFound;
        };
        if self.unsettled() >= self.record.settings.max_queue_size
            || self.queued_bytes + u64::from(len) > self.record.settings.max_queue_bytes
        {
            return ReplayOutcome::QueueFull;
        }
        self.m.dead.remove(&(dead_at, seq));
        self.m.dead_info.remove(&seq);
        let Some(e) = self.m.entries.get_mut(seq) else {
            return ReplayOutcome::NotFound;
        };
        e.expires_at = expires_at;
        e.delivery_count = 0;
        e.place = Place::Ready;
        let webhook = e.webhook;
        self.m.holders.remove(&seq);
        self.queued_bytes += u64::from(len);
        self.m.webhook_pending[webhook as usize] += 1;
        self.m.ready.push_back(seq);
        self.note_expiry(expires_at);
        self.counters.replayed += 1;
        self.counters_dirty = true;
        self.outbox.push(Rec::New(record), Tag::Msg(seq));
        // An explicit "ready, never attempted" so a restart does not apply older states.
        self.persist_state(seq, Default::default());
        ReplayOutcome::Replayed
    }

    /// Oldest dead letters first, at most `limit`, for a bulk replay.
    pub fn replay_candidates(&self, limit: Option<u64>) -> Vec<(u64, super::Loc)> {
        let want = usize::try_from(limit.unwrap_or(u64::MAX)).unwrap_or(usize::MAX);
        self.m
            .dead
            .iter()
            .take(want)
            .filter_map(|(_, s)| self.m.entries.get(*s).map(|e| (*s, e.loc)))
            .collect()
    }

    /// Replays prepared dead letters in order; stops at the first queue-full.
    pub fn replay_all(&mut self, prepared: Vec<(u64, Replayed)>) -> BulkReplay {
        let mut replayed = 0;
        let mut stopped_queue_full = false;
        for (seq, record) in prepared {
            match self.replay_seq(seq, record) {
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
            remaining: self.m.dead.len() as u64,
            stopped_queue_full,
        }
    }

    pub fn delete_dead_letter(&mut self, message_id: &str) -> bool {
        let Some(seq) = self.m.ids.get(message_id) else {
            return false;
        };
        let Some(at) = self
            .m
            .entries
            .get(seq)
            .filter(|e| e.place == Place::Dead)
            .and_then(|_| self.m.dead_info.get(&seq))
            .map(|&(_, at)| at)
        else {
            return false;
        };
        self.m.dead.remove(&(at, seq));
        self.remove_dead(seq);
        true
    }

    pub fn purge_dead_letters(&mut self) -> u64 {
        let all = std::mem::take(&mut self.m.dead);
        for &(_, seq) in &all {
            self.remove_dead(seq);
        }
        all.len() as u64
    }

    /// Drops a dead letter (already out of `dead`) for good, counting it as discarded.
    pub(super) fn remove_dead(&mut self, seq: u64) {
        self.forget(seq);
        self.counters.discarded += 1;
        self.counters_dirty = true;
        self.settle_record(seq);
    }

    /// Keeps at most `max_dead_letters`: the oldest beyond it are dropped and counted.
    pub(super) fn cap_dead_letters(&mut self) {
        while self.m.dead.len() as u64 > self.max_dead_letters {
            let Some((_, seq)) = self.m.dead.pop_first() else {
                break;
            };
            self.remove_dead(seq);
            self.counters.dead_letters_dropped += 1;
        }
    }
}
