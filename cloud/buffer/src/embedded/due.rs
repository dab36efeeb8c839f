//! Which channels have timed work, and when: lease deadlines, delayed messages coming due,
//! message expiry, dead-letter retention and orphan retention.
//!
//! The periodic sweep visits only the channels whose instant has come, so an idle channel
//! costs the sweep nothing however many there are. A channel files the earliest instant at
//! which it may have work ([`super::channel::Chan::wake_at`], a lower bound: visiting early
//! is harmless, late is not); the sweep takes every channel due, sweeps it and files its next
//! instant again. Entries made stale by an earlier one stay until they come due and cost one
//! visit then.
//!
//! Lock order: taken under a channel lock, never the other way round.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use parking_lot::Mutex;

/// A channel due at an instant (µs), earliest first in the heap.
type Entry = Reverse<(i64, Box<str>)>;

#[derive(Default)]
pub(super) struct DueIndex {
    heap: Mutex<BinaryHeap<Entry>>,
}

impl DueIndex {
    /// Files `name` as due at `at` (microseconds of the backend's clock).
    pub fn schedule(&self, at: i64, name: &str) {
        self.heap.lock().push(Reverse((at, name.into())));
    }

    /// Takes every channel due at `now` or earlier, each once.
    pub fn take_due(&self, now: i64) -> Vec<String> {
        let mut heap = self.heap.lock();
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        while heap.peek().is_some_and(|Reverse((at, _))| *at <= now) {
            if let Some(Reverse((_, name))) = heap.pop()
                && seen.insert(name.clone())
            {
                out.push(name.into());
            }
        }
        out
    }

    /// Entries filed (stale ones included).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_due_channels_once_in_time_order_and_leaves_later_ones() {
        let d = DueIndex::default();
        d.schedule(30, "c");
        d.schedule(10, "a");
        d.schedule(20, "b");
        d.schedule(15, "a");
        d.schedule(99, "z");
        assert_eq!(d.take_due(5), Vec::<String>::new());
        assert_eq!(d.take_due(30), vec!["a", "b", "c"]);
        assert_eq!(d.len(), 1);
        assert_eq!(d.take_due(100), vec!["z"]);
        assert_eq!(d.len(), 0);
    }
}
