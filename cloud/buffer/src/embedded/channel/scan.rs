//! Rebuilding a channel's index from the log at open: message, state and settle records are
//! applied in log order, then the dispatch queues are laid out in sequence order. Formerly
//! leased messages are simply ready again, with their persisted delivery count.

use super::{Chan, Entry, NO_LOC, Place};
use crate::embedded::codec::{MessageIndex, PlaceDisk, StateRec};
use crate::embedded::log::Loc;

/// A message record met by the scan.
pub(in crate::embedded) struct ScanMessage<'a> {
    pub index: MessageIndex<'a>,
    pub loc: Loc,
}

impl Chan {
    /// A message record: a new entry, or a later copy (compaction, replay) of a known one,
    /// which moves it and keeps its state (a replay writes a fresh state right after).
    pub fn scan_message(&mut self, m: ScanMessage<'_>) {
        let i = &m.index;
        if let Some(e) = self.entries.get_mut(&i.seq) {
            e.loc = m.loc;
            e.expires_at = i.expires_at.micros();
            return;
        }
        let webhook = self.webhook_of(i.namespace, i.webhook_id);
        let id = self.ids.insert(i.message_id, i.seq);
        self.entries.insert(
            i.seq,
            Entry {
                loc: m.loc,
                state_loc: NO_LOC,
                expires_at: i.expires_at.micros(),
                received_at: i.received_at.micros(),
                id: id.unwrap_or_default(),
                delivery_count: 0,
                webhook,
                place: Place::Ready,
                id_packed: id.is_some(),
            },
        );
    }

    pub fn scan_state(&mut self, s: StateRec, loc: Loc) {
        let Some(e) = self.entries.get_mut(&s.seq) else {
            return;
        };
        e.delivery_count = s.attempts.delivery_count;
        e.state_loc = loc;
        e.place = match s.place {
            PlaceDisk::Ready => Place::Ready,
            PlaceDisk::Delayed { until } => Place::Delayed {
                until: until.micros(),
            },
            PlaceDisk::Dead { reason, at } => Place::Dead {
                reason,
                at: at.micros(),
            },
        };
    }

    pub fn scan_settle(&mut self, seq: u64) {
        if let Some(e) = self.entries.remove(&seq) {
            self.ids.remove(e.id_key(), seq);
        }
    }

    /// After the scan: queues in sequence order, counts, liveness and the expiry bound.
    pub fn finish_scan(&mut self) {
        // Entries inserted one by one in ascending order leave the tree's nodes about half
        // full; `append` rebuilds it with full nodes (~40 % less memory per message), freeing
        // the old nodes as it goes (collecting into a new map would hold both at once). With
        // an empty map `append` would only swap, hence the first entry goes in by hand.
        let mut old = std::mem::take(&mut self.entries);
        if let Some((seq, e)) = old.pop_first() {
            self.entries.insert(seq, e);
            self.entries.append(&mut old);
        }
        let mut dead_over = 0;
        for (&seq, e) in &self.entries {
            self.seq = self.seq.max(seq);
            self.segments.add_live(e.loc);
            match e.place {
                Place::Ready | Place::Leased => self.ready.push_back(seq),
                Place::Delayed { until } => {
                    self.delayed.insert((until, seq));
                }
                Place::Dead { at, .. } => {
                    self.dead.insert((at, seq));
                    dead_over += 1;
                }
            }
            if !matches!(e.place, Place::Dead { .. }) {
                self.queued_bytes += u64::from(e.loc.len);
                self.webhook_pending[e.webhook as usize] += 1;
                if self.next_expiry.is_none_or(|t| e.expires_at < t) {
                    self.next_expiry = Some(e.expires_at);
                }
            }
        }
        for e in self.entries.values_mut() {
            if e.place == Place::Leased {
                e.place = Place::Ready;
            }
        }
        if dead_over as u64 > self.max_dead_letters {
            self.cap_dead_letters();
        }
    }
}
