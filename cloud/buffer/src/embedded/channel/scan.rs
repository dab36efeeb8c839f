//! Rebuilding a channel's index from the log at open: message, state and settle records are
//! applied in log order, then the dispatch queues are laid out in sequence order. Formerly
//! leased messages are simply ready again, with their persisted delivery count.

use super::{Chan, Entry, Place};
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
        if let Some(e) = self.m.entries.get_mut(i.seq) {
            e.loc = m.loc;
            e.expires_at = i.expires_at.micros();
            return;
        }
        let webhook = self.webhook_of(i.namespace, i.webhook_id);
        let id = self.m.ids.insert(&i.message_id, i.seq);
        self.m.entries.insert(
            i.seq,
            Entry {
                loc: m.loc,
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
        let m = &mut *self.m;
        let Some(e) = m.entries.get_mut(s.seq) else {
            return;
        };
        e.delivery_count = s.attempts.delivery_count;
        m.state_locs.insert(s.seq, loc);
        m.delayed_until.remove(&s.seq);
        m.dead_info.remove(&s.seq);
        e.place = match s.place {
            PlaceDisk::Ready => Place::Ready,
            PlaceDisk::Delayed { until } => {
                m.delayed_until.insert(s.seq, until.micros());
                Place::Delayed
            }
            PlaceDisk::Dead { reason, at } => {
                m.dead_info.insert(s.seq, (reason, at.micros()));
                Place::Dead
            }
        };
    }

    pub fn scan_settle(&mut self, seq: u64) {
        if let Some(e) = self.m.entries.remove(seq) {
            self.m.ids.remove(e.id_key(), seq);
            self.m.state_locs.remove(&seq);
            self.m.delayed_until.remove(&seq);
            self.m.dead_info.remove(&seq);
        }
    }

    /// After the scan: queues in sequence order, counts, liveness and the expiry bound.
    pub fn finish_scan(&mut self) {
        if !self.m.is_allocated() {
            return;
        }
        let mut dead = Vec::new();
        let m = &mut *self.m;
        for (seq, e) in m.entries.iter() {
            self.seq = self.seq.max(seq);
            self.segments.add_live(e.loc);
            match e.place {
                Place::Ready | Place::Leased => m.ready.push_back(seq),
                Place::Delayed => {
                    let until = m.delayed_until.get(&seq).copied().unwrap_or(0);
                    m.delayed.insert((until, seq));
                }
                Place::Dead => {
                    let at = m.dead_info.get(&seq).map_or(0, |d| d.1);
                    m.dead.insert((at, seq));
                    dead.push(seq);
                }
            }
            if e.place != Place::Dead {
                self.queued_bytes += u64::from(e.loc.len);
                m.webhook_pending[e.webhook as usize] += 1;
                if self.next_expiry.is_none_or(|t| e.expires_at < t) {
                    self.next_expiry = Some(e.expires_at);
                }
            }
        }
        for &seq in &dead {
            self.m.entries.set_aside(seq);
        }
        if dead.len() as u64 > self.max_dead_letters {
            self.cap_dead_letters();
        }
    }
}
