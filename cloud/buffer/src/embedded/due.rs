//! Which channels have timed work, and when: lease deadlines, delayed messages coming due,
//! message expiry, dead-letter retention and orphan retention.
//!
//! The periodic sweep visits only the channels whose instant has come, so an idle channel
//! costs the sweep nothing however many there are. A channel files the earliest instant at
//! which it may have work ([`super::channel::Chan::wake_at`], a lower bound: visiting early
//! is harmless, late is not); the sweep takes every channel due, sweeps it and files its next
//! instant again. Entries made stale by an earlier one stay until they come due and cost one
//! visit then. A deleted channel's entries are forgotten ([`DueIndex::forget`]): skipped when
//! they come due, and removed at once when they are many, so create/delete churn of channels
//! with far-off work (a week's dead-letter retention) does not grow the heap.
//!
//! Lock order: taken under a channel lock, never the other way round.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

use parking_lot::Mutex;

/// A channel (its store id, never reused, and name) due at an instant (µs), earliest first.
type Entry = Reverse<(i64, u64, Box<str>)>;

#[derive(Default)]
pub(super) struct DueIndex {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    heap: BinaryHeap<Entry>,
    /// Ids of deleted channels that may still have entries in the heap.
    forgotten: HashSet<u64>,
}

impl DueIndex {
    /// Files channel `id` (`name`) as due at `at` (microseconds of the backend's clock).
    pub fn schedule(&self, at: i64, id: u64, name: &str) {
        self.inner.lock().heap.push(Reverse((at, id, name.into())));
    }

    /// Channel `id` was deleted: its entries are never taken again. Once the forgotten
    /// channels are half as many as the entries, the heap is rebuilt without theirs.
    pub fn forget(&self, id: u64) {
        let mut inner = self.inner.lock();
        inner.forgotten.insert(id);
        if inner.forgotten.len() * 2 >= inner.heap.len() {
            let Inner { heap, forgotten } = &mut *inner;
            heap.retain(|Reverse((_, id, _))| !forgotten.contains(id));
            heap.shrink_to(heap.len() * 2);
            forgotten.clear();
            forgotten.shrink_to_fit();
        }
    }

    /// Takes every channel due at `now` or earlier, each once.
    pub fn take_due(&self, now: i64) -> Vec<String> {
        let mut inner = self.inner.lock();
        let Inner { heap, forgotten } = &mut *inner;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        while heap.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
            if let Some(Reverse((_, id, name))) = heap.pop()
                && !forgotten.contains(&id)
                && seen.insert(id)
            {
                out.push(name.into());
            }
        }
        out
    }

    /// Entries filed (stale ones included) and forgotten channels.
    #[cfg(any(test, feature = "test-suite"))]
    pub fn len(&self) -> (usize, usize) {
        let inner = self.inner.lock();
        (inner.heap.len(), inner.forgotten.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_due_channels_once_in_time_order_and_leaves_later_ones() {
        let d = DueIndex::default();
        d.schedule(30, 3, "c");
        d.schedule(10, 1, "a");
        d.schedule(20, 2, "b");
        d.schedule(15, 1, "a");
        d.schedule(99, 26, "z");
        assert_eq!(d.take_due(5), Vec::<String>::new());
        assert_eq!(d.take_due(30), vec!["a", "b", "c"]);
        assert_eq!(d.len(), (1, 0));
        assert_eq!(d.take_due(100), vec!["z"]);
        assert_eq!(d.len(), (0, 0));
    }

    #[test]
    fn forgotten_channels_are_never_taken_and_their_entries_do_not_pile_up() {
        let d = DueIndex::default();
        d.schedule(10, 1, "keep");
        d.schedule(20, 2, "same-name");
        d.schedule(20, 3, "gone");
        d.forget(2);
        // Re-created under the same name: a new id, due as usual.
        d.schedule(30, 4, "same-name");
        assert_eq!(d.take_due(25), vec!["keep", "gone"]);
        assert_eq!(d.take_due(30), vec!["same-name"]);
        // Churn: channels created with far-off work, then deleted.
        for id in 100..10_100 {
            d.schedule(1_000_000, id, "churn");
            d.forget(id);
        }
        let (entries, forgotten) = d.len();
        assert!(
            entries <= 2 && forgotten <= 2,
            "{entries} entries, {forgotten} forgotten"
        );
    }
}
