//! Read-only views of one channel (stats, peek, a message's record) and compaction's
//! copy-forward of the records in a head segment.

use connect_protocol::message::{Attempts, MessageState};
use connect_protocol::time::Timestamp;

use super::{AttemptsAt, Chan, Place, Tag, View};
use crate::embedded::writer::Rec;
use crate::{BufferStats, PeekFilter};

impl Chan {
    pub fn stats(&self) -> BufferStats {
        BufferStats {
            counters: (*self.counters).clone(),
            ready: self.m.ready.len() as u64,
            in_flight: self.m.in_flight.len() as u64,
            delayed: self.m.delayed.len() as u64,
            dead_letters: self.m.dead.len() as u64,
            oldest_unsettled_at: self
                .m
                .entries
                .values()
                .find(|e| e.place != Place::Dead)
                .map(|e| Timestamp::from_micros(e.received_at)),
            webhook_pending: self
                .m
                .webhook_pending
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| (self.m.webhooks[i].to_string(), *n))
                .collect(),
        }
    }

    pub fn peek(&self, filter: PeekFilter, limit: usize) -> Vec<View> {
        let in_flight = self.m.in_flight.iter().copied();
        let ready = self.m.ready.iter().copied();
        let delayed = self.m.delayed.iter().map(|(_, s)| *s);
        let seqs: Box<dyn Iterator<Item = u64>> = match filter {
            PeekFilter::InFlight => Box::new(in_flight),
            PeekFilter::Ready => Box::new(ready),
            PeekFilter::Delayed => Box::new(delayed),
            PeekFilter::All => Box::new(in_flight.chain(ready).chain(delayed)),
        };
        seqs.filter_map(|s| self.view(s)).take(limit).collect()
    }

    pub(super) fn view(&self, seq: u64) -> Option<View> {
        let e = self.m.entries.get(seq)?;
        let time = |t: i64| Timestamp::from_micros(t);
        let mut v = View {
            loc: e.loc,
            attempts: match (self.m.pending.get(&seq), self.m.state_locs.get(&seq)) {
                (Some(p), _) => AttemptsAt::Known(p.attempts.clone()),
                (None, Some(loc)) => AttemptsAt::InLog(*loc, e.delivery_count),
                (None, None) => AttemptsAt::Known(Attempts {
                    delivery_count: e.delivery_count,
                    ..Attempts::default()
                }),
            },
            state: MessageState::Ready,
            leased_to: None,
            lease_expires_at: None,
            next_attempt_at: None,
            reason: None,
            dead_lettered_at: None,
        };
        match e.place {
            Place::Ready => {}
            Place::Leased => {
                v.state = MessageState::InFlight;
                if let Some(l) = self.m.leases.get(&seq) {
                    v.leased_to = Some(l.conn.to_string());
                    v.lease_expires_at = Some(time(l.deadline));
                }
            }
            Place::Delayed => {
                v.state = MessageState::Delayed;
                v.next_attempt_at = self.m.delayed_until.get(&seq).map(|t| time(*t));
            }
            Place::Dead => {
                v.state = MessageState::DeadLettered;
                if let Some(&(reason, at)) = self.m.dead_info.get(&seq) {
                    v.reason = Some(reason);
                    v.dead_lettered_at = Some(time(at));
                }
            }
        }
        Some(v)
    }

    /// Queues a copy of the messages whose record is in segment `seg` (with their current
    /// state) to the end of the log, so that segment can be deleted — as many as fit in
    /// `budget` bytes, which it spends.
    pub fn compact(&mut self, seg: u32, budget: &mut u64) -> usize {
        let mut seqs = Vec::new();
        for (s, e) in self.m.entries.iter().filter(|(_, e)| e.loc.seg == seg) {
            let len = u64::from(e.loc.len);
            if len > *budget && !seqs.is_empty() {
                *budget = 0;
                break;
            }
            *budget = budget.saturating_sub(len);
            seqs.push(s);
        }
        for &seq in &seqs {
            let Some(e) = self.m.entries.get(seq) else {
                continue;
            };
            let from = e.loc;
            let stateful = self.m.state_locs.contains_key(&seq)
                || e.delivery_count > 0
                || e.place != Place::Ready;
            self.outbox.push(Rec::Copy(from), Tag::Copy { seq, from });
            if stateful {
                let attempts = self.attempts(seq);
                self.persist_state(seq, attempts);
            }
        }
        seqs.len()
    }
}
