//! When this channel next has timed work, filed in the backend's [`DueIndex`] so that the
//! periodic sweep visits only channels with something due.
//!
//! [`DueIndex`]: crate::embedded::due::DueIndex

use std::time::Duration;

use connect_protocol::admin::ChannelState;
use connect_protocol::time::Timestamp;

use super::Chan;

/// An orphan past its retention that still holds messages is looked at again this often
/// (its messages leave through ACKs, which file nothing).
const ORPHAN_RECHECK_US: i64 = 1_000_000;

impl Chan {
    /// Files the channel as due at `at` (µs) unless it is filed for that instant or earlier.
    pub(crate) fn wake_at(&mut self, at: i64) {
        if self.scheduled.is_none_or(|s| at < s) {
            self.scheduled = Some(at);
            self.due.schedule(at, self.id, &self.record.name);
        }
    }

    /// The channel is deleted: the index forgets every instant it filed (some may be stale
    /// ones, filed before a sweep, so this does not depend on `scheduled`).
    pub fn forget_schedule(&mut self) {
        self.scheduled = None;
        self.due.forget(self.id);
    }

    /// Forgets the instant filed (the sweep took it).
    pub fn unschedule(&mut self) {
        self.scheduled = None;
    }

    /// After a sweep of this channel: files its next instant, if it has one.
    pub fn reschedule(&mut self, now: Timestamp, orphan_retention: Option<Duration>) {
        self.scheduled = None;
        if let Some(at) = self.next_due(now, orphan_retention) {
            self.wake_at(at);
        }
    }

    /// The earliest instant (µs) at which a sweep may find work here.
    fn next_due(&self, now: Timestamp, orphan_retention: Option<Duration>) -> Option<i64> {
        let leases = self
            .m
            .in_flight
            .iter()
            .filter_map(|s| self.m.leases.get(s).map(|l| l.deadline));
        let delayed = self.m.delayed.first().map(|(at, _)| *at);
        let retention = self.record.settings.dlq_retention_seconds;
        let dead = (retention > 0)
            .then(|| self.m.dead.first().map(|(at, _)| at + secs_us(retention)))
            .flatten();
        let orphan = match (self.record.state, self.record.orphaned_at, orphan_retention) {
            (ChannelState::Orphaned, Some(since), Some(r)) => {
                let at = since.micros().saturating_add(r.as_micros() as i64);
                Some(if at > now.micros() {
                    at
                } else {
                    now.micros() + ORPHAN_RECHECK_US
                })
            }
            _ => None,
        };
        leases
            .chain(delayed)
            .chain(self.next_expiry)
            .chain(dead)
            .chain(orphan)
            .min()
    }
}

fn secs_us(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}
