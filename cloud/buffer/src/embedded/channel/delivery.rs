//! Leases, ACK, NACK, extend, release and the periodic sweep of one channel.

use std::collections::HashSet;
use std::sync::Arc;

use connect_protocol::message::DeadLetterReason;
use connect_protocol::time::Timestamp;
use rand::Rng;

use super::{Chan, Lease, MAX_ERROR_CHARS, Place, Tag, ToRead};
use crate::embedded::codec;
use crate::embedded::writer::Rec;
use crate::{AckOutcome, LostLease, NackOutcome, SweepReport};

impl Chan {
    /// Leases up to `max` ready messages to `conn`; the caller reads them from the log.
    /// Leases up to `max` messages, stopping once their records reach `max_bytes` (at
    /// least one).
    pub fn lease(&mut self, conn: &str, max: usize, max_bytes: u64, now: Timestamp) -> Vec<ToRead> {
        let now_us = now.micros();
        let max_attempts = self.record.settings.max_delivery_attempts;
        let deadline = now
            .plus_seconds(self.record.settings.ack_timeout_seconds as f64)
            .micros();
        let conn: Arc<str> = conn.into();
        let mut out = Vec::new();
        let mut bytes = 0u64;
        while out.len() < max && bytes < max_bytes {
            let Some(seq) = self.m.ready.pop_front() else {
                break;
            };
            let Some(e) = self.m.entries.get_mut(seq) else {
                continue;
            };
            if e.expires_at <= now_us {
                self.dead_letter(seq, DeadLetterReason::Expired, now);
                continue;
            }
            if e.delivery_count >= max_attempts {
                self.dead_letter(seq, DeadLetterReason::MaxDeliveryAttempts, now);
                continue;
            }
            e.delivery_count += 1;
            e.place = Place::Leased;
            let (loc, delivery_count) = (e.loc, e.delivery_count);
            bytes += u64::from(loc.len);
            out.push(ToRead {
                loc,
                delivery_count,
            });
            let mut attempts = self.attempts(seq);
            attempts.delivery_count = delivery_count;
            attempts.first_attempt_at.get_or_insert(now);
            attempts.last_attempt_at = Some(now);
            self.m.leases.insert(
                seq,
                Lease {
                    conn: conn.clone(),
                    deadline,
                },
            );
            let holders = self.m.holders.entry(seq).or_default();
            if !holders.contains(&conn) {
                holders.push(conn.clone());
            }
            self.m.in_flight.insert(seq);
            self.counters.dispatched += 1;
            self.counters_dirty = true;
            self.persist_state(seq, attempts);
        }
        if !out.is_empty() {
            self.wake_at(deadline);
        }
        out
    }

    pub fn ack(&mut self, message_id: &str, conn: &str) -> AckOutcome {
        let Some(seq) = self.m.ids.get(message_id) else {
            return AckOutcome::NotInFlight;
        };
        let Some(e) = self.m.entries.get(seq) else {
            return AckOutcome::NotInFlight;
        };
        if e.place == Place::Dead || !self.holders_of(seq).iter().any(|h| &**h == conn) {
            return AckOutcome::NotInFlight;
        }
        let held_lease =
            e.place == Place::Leased && self.m.leases.get(&seq).is_some_and(|l| &*l.conn == conn);
        self.unlink(seq);
        if let Some(e) = self.forget(seq) {
            self.dec_pending(e.webhook);
        }
        self.counters.acked += 1;
        self.counters_dirty = true;
        self.settle_record(seq);
        AckOutcome::Settled { held_lease }
    }

    pub(super) fn settle_record(&mut self, seq: u64) {
        self.outbox
            .push(Rec::New(codec::settle_record(self.id, seq)), Tag::Settle);
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
        self.m.in_flight.remove(&seq);
        self.m.leases.remove(&seq);
        self.counters.nacked += 1;
        self.counters_dirty = true;
        let max_attempts = self.record.settings.max_delivery_attempts;
        let backoff_max = self.record.settings.retry_backoff_max_seconds;
        let mut attempts = self.attempts(seq);
        if let Some(err) = error {
            attempts.last_error = Some(err.chars().take(MAX_ERROR_CHARS).collect());
        }
        let Some(e) = self.m.entries.get_mut(seq) else {
            return NackOutcome::NotHeld;
        };
        let reason = if !retry {
            Some(DeadLetterReason::Rejected)
        } else if e.delivery_count >= max_attempts {
            Some(DeadLetterReason::MaxDeliveryAttempts)
        } else if e.expires_at <= now.micros() {
            Some(DeadLetterReason::Expired)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.dead_letter_with(seq, reason, now, attempts);
            return NackOutcome::DeadLettered(reason);
        }
        let until = now.plus_seconds(backoff_seconds(e.delivery_count, backoff_max));
        e.place = Place::Delayed;
        self.m.delayed_until.insert(seq, until.micros());
        self.m.delayed.insert((until.micros(), seq));
        self.wake_at(until.micros());
        self.persist_state(seq, attempts);
        NackOutcome::Delayed { until }
    }

    pub fn extend(&mut self, message_id: &str, conn: &str, now: Timestamp) -> bool {
        let Some(seq) = self.held_by(message_id, conn) else {
            return false;
        };
        let deadline = now
            .plus_seconds(self.record.settings.ack_timeout_seconds as f64)
            .micros();
        if let Some(l) = self.m.leases.get_mut(&seq) {
            l.deadline = deadline;
        }
        // Later than the deadline filed, unless the ack timeout was shortened meanwhile.
        self.wake_at(deadline);
        true
    }

    /// All leases of `conn` back to the head, in sequence order.
    pub fn release(&mut self, conn: &str) -> Vec<String> {
        let seqs: Vec<u64> = self
            .m
            .in_flight
            .iter()
            .copied()
            .filter(|s| self.m.leases.get(s).is_some_and(|l| &*l.conn == conn))
            .collect();
        self.requeue_head(&seqs)
    }

    fn requeue_head(&mut self, seqs: &[u64]) -> Vec<String> {
        let mut ids = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            self.m.in_flight.remove(&seq);
            self.m.leases.remove(&seq);
            let m = &mut *self.m;
            if let Some(e) = m.entries.get_mut(seq) {
                e.place = Place::Ready;
                ids.push(m.ids.name(e.id_key(), seq));
            }
        }
        for &seq in seqs.iter().rev() {
            self.m.ready.push_front(seq);
        }
        ids
    }

    fn held_by(&self, message_id: &str, conn: &str) -> Option<u64> {
        let seq = self.m.ids.get(message_id)?;
        let e = self.m.entries.get(seq)?;
        (e.place == Place::Leased && self.m.leases.get(&seq).is_some_and(|l| &*l.conn == conn))
            .then_some(seq)
    }

    /// Removes the message from whichever index holds it (not from `entries`).
    pub(super) fn unlink(&mut self, seq: u64) {
        let Some(e) = self.m.entries.get(seq) else {
            return;
        };
        match e.place {
            Place::Ready => {
                if let Some(pos) = self.m.ready.iter().position(|s| *s == seq) {
                    self.m.ready.remove(pos);
                }
            }
            Place::Leased => {
                self.m.in_flight.remove(&seq);
                self.m.leases.remove(&seq);
            }
            Place::Delayed => {
                if let Some(until) = self.m.delayed_until.remove(&seq) {
                    self.m.delayed.remove(&(until, seq));
                }
            }
            Place::Dead => {
                if let Some(&(_, at)) = self.m.dead_info.get(&seq) {
                    self.m.dead.remove(&(at, seq));
                }
            }
        }
    }

    /// Dead-letters a message already removed from the ready/in-flight/delayed indexes.
    pub(super) fn dead_letter(&mut self, seq: u64, reason: DeadLetterReason, now: Timestamp) {
        let attempts = self.attempts(seq);
        self.dead_letter_with(seq, reason, now, attempts);
    }

    fn dead_letter_with(
        &mut self,
        seq: u64,
        reason: DeadLetterReason,
        now: Timestamp,
        attempts: connect_protocol::message::Attempts,
    ) {
        let at = now.micros();
        let Some(e) = self.m.entries.get_mut(seq) else {
            return;
        };
        e.place = Place::Dead;
        let (webhook, len) = (e.webhook, e.loc.len);
        // A dead letter may wait long for an operator: out of the dense chunks.
        self.m.entries.set_aside(seq);
        self.m.dead_info.insert(seq, (reason, at));
        self.m.delayed_until.remove(&seq);
        self.m.leases.remove(&seq);
        self.queued_bytes = self.queued_bytes.saturating_sub(u64::from(len));
        self.m.dead.insert((at, seq));
        let retention = self.record.settings.dlq_retention_seconds;
        if retention > 0 {
            self.wake_at(now.plus_seconds(retention as f64).micros());
        }
        self.counters.dead_lettered += 1;
        match reason {
            DeadLetterReason::Expired => self.counters.expired += 1,
            DeadLetterReason::Rejected => self.counters.rejected += 1,
            DeadLetterReason::MaxDeliveryAttempts => self.counters.exhausted += 1,
        }
        self.counters_dirty = true;
        self.dec_pending(webhook);
        self.persist_state(seq, attempts);
        self.cap_dead_letters();
    }

    /// Ack timeouts, promotions, TTL and DLQ retention. Returns true when ready work appeared.
    pub fn sweep(&mut self, now: Timestamp, report: &mut SweepReport) -> bool {
        let now_us = now.micros();
        let lost: Vec<u64> = self
            .m
            .in_flight
            .iter()
            .copied()
            .filter(|s| self.m.leases.get(s).is_some_and(|l| l.deadline <= now_us))
            .collect();
        for &seq in &lost {
            if let (Some(l), Some(e)) = (self.m.leases.get(&seq), self.m.entries.get(seq)) {
                report.expired_leases.push(LostLease {
                    channel: self.record.name.to_string(),
                    connection_id: l.conn.to_string(),
                    message_id: self.m.ids.name(e.id_key(), seq),
                });
            }
        }
        self.requeue_head(&lost);

        let mut promoted = 0;
        while let Some(&(until, seq)) = self.m.delayed.first() {
            if until > now_us {
                break;
            }
            self.m.delayed.pop_first();
            self.m.delayed_until.remove(&seq);
            if let Some(e) = self.m.entries.get_mut(seq) {
                e.place = Place::Ready;
                self.m.ready.push_back(seq);
                let attempts = self.attempts(seq);
                self.persist_state(seq, attempts);
                promoted += 1;
            }
        }
        report.promoted += promoted;

        let expired = if self.next_expiry.is_some_and(|t| t <= now_us) {
            self.take_expired(now_us)
        } else {
            Vec::new()
        };
        for seq in expired {
            self.dead_letter(seq, DeadLetterReason::Expired, now);
            report.expired += 1;
            report.dead_lettered += 1;
        }

        let retention = self.record.settings.dlq_retention_seconds;
        if retention > 0 {
            let horizon = now.plus_seconds(-(retention as f64)).micros();
            while let Some(&(at, seq)) = self.m.dead.first() {
                if at > horizon {
                    break;
                }
                self.m.dead.pop_first();
                self.remove_dead(seq);
                report.dlq_removed += 1;
            }
        }
        !lost.is_empty() || promoted > 0
    }

    /// Removes expired ready and delayed messages from their queues (leased ones are not
    /// interrupted) and recomputes the expiry bound. One pass over the backlog, run only when
    /// the bound says something is due. Returns them ready ones first, in sequence order.
    fn take_expired(&mut self, now: i64) -> Vec<u64> {
        let expired = |c: &Self, s: u64| c.m.entries.get(s).is_some_and(|e| e.expires_at <= now);
        let ready: HashSet<u64> = self
            .m
            .ready
            .iter()
            .copied()
            .filter(|s| expired(self, *s))
            .collect();
        if !ready.is_empty() {
            self.m.ready.retain(|s| !ready.contains(s));
        }
        let delayed: Vec<(i64, u64)> = self
            .m
            .delayed
            .iter()
            .copied()
            .filter(|(_, s)| expired(self, *s))
            .collect();
        for key in &delayed {
            self.m.delayed.remove(key);
        }
        self.next_expiry = self
            .m
            .entries
            .values()
            .filter(|e| e.place != Place::Dead)
            .map(|e| e.expires_at)
            .filter(|t| *t > now)
            .min();
        // Leased messages already past their expiry are dead-lettered when they come back
        // (lease time); keep the bound so the next sweep looks again.
        if self.m.in_flight.iter().any(|s| expired(self, *s)) {
            self.next_expiry = Some(now);
        }
        let mut out: Vec<u64> = ready.into_iter().collect();
        out.sort_unstable();
        out.extend(delayed.into_iter().map(|(_, s)| s));
        out
    }
}

/// §6.3: `min(max, 2^(n−1) s) × jitter[0.8, 1.2]`, capped at `max`.
pub(super) fn backoff_seconds(delivery_count: u32, max_seconds: u64) -> f64 {
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
