//! Rebuilding a channel's index from the log at open: message, state and settle records are
//! applied in log order, then the dispatch queues are laid out in sequence order. Formerly
//! leased messages are simply ready again, with their persisted delivery count.

use super::{Chan, Entry, NONE, Place};
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
                state_loc: None,
                expires_at: i.expires_at.micros(),
                received_at: i.received_at.micros(),
                first_attempt_at: NONE,
                last_attempt_at: NONE,
                delivery_count: 0,
                webhook,
                id,
                place: Place::Ready,
                has_error: false,
            },
        );
    }

    pub fn scan_state(&mut self, s: StateRec, loc: Loc) {
        let Some(e) = self.entries.get_mut(&s.seq) else {
            return;
        };
        let time = |t: Option<connect_protocol::time::Timestamp>| t.map_or(NONE, |t| t.micros());
        e.delivery_count = s.attempts.delivery_count;
        e.first_attempt_at = time(s.attempts.first_attempt_at);
        e.last_attempt_at = time(s.attempts.last_attempt_at);
        e.has_error = s.attempts.last_error.is_some();
        e.state_loc = Some(loc);
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
            self.ids.remove(e.id, seq);
        }
    }

    /// After the scan: queues in sequence order, counts, liveness and the expiry bound.
    pub fn finish_scan(&mut self) {
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
