//! The per-channel [`Notify`] handles a backend gives out ([`crate::Buffer::notifier`]).
//!
//! Everyone asking for a channel's notifier while someone still holds it gets the same one;
//! the map holds them weakly, so a channel's entry dies with its last holder (the store's
//! channel and the hub's runtime, both dropped when the channel is deleted) and is pruned
//! later. Without that, every channel ever created or named would keep an entry: self-service
//! create/delete churn grew the map without bound.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;

/// Dead entries are pruned once the map has grown to twice its size after the last pruning
/// (and at least this many entries), so pruning costs O(1) per insertion amortised.
const MIN_PRUNE: usize = 64;

#[derive(Default)]
pub(crate) struct Notifiers {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    map: HashMap<Box<str>, Weak<Notify>>,
    /// Map size at which the next pruning happens.
    prune_at: usize,
}

impl Notifiers {
    /// The notifier of `channel`: the live one, or a new one.
    pub fn get(&self, channel: &str) -> Arc<Notify> {
        let mut inner = self.inner.lock();
        if let Some(n) = inner.map.get(channel).and_then(Weak::upgrade) {
            return n;
        }
        let n = Arc::new(Notify::new());
        inner.map.insert(channel.into(), Arc::downgrade(&n));
        if inner.map.len() >= inner.prune_at.max(MIN_PRUNE) {
            inner.map.retain(|_, w| w.strong_count() > 0);
            let live = inner.map.len();
            inner.map.shrink_to(live * 2);
            inner.prune_at = live * 2;
        }
        n
    }

    /// The notifier of `channel`, taken out of the map if somebody holds it: for a backend
    /// whose channel holds it from then on and hands it out itself.
    pub fn take(&self, channel: &str) -> Option<Arc<Notify>> {
        let held = self.inner.lock().map.remove(channel);
        held.and_then(|w| w.upgrade())
    }

    /// The notifier of `channel` if somebody holds it (nobody waits on the others).
    pub fn live(&self, channel: &str) -> Option<Arc<Notify>> {
        self.inner.lock().map.get(channel).and_then(Weak::upgrade)
    }

    /// Entries held, dead ones not yet pruned included (for tests).
    #[cfg(any(test, feature = "test-suite"))]
    pub fn len(&self) -> usize {
        self.inner.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_share_one_notifier_and_dropped_ones_are_pruned() {
        let n = Notifiers::default();
        let a = n.get("a");
        assert!(Arc::ptr_eq(&a, &n.get("a")));
        assert!(n.live("b").is_none());
        for i in 0..10_000 {
            drop(n.get(&format!("gone-{i}")));
        }
        assert!(n.len() <= 2 * MIN_PRUNE, "{} entries", n.len());
        assert!(
            Arc::ptr_eq(&a, &n.get("a")),
            "a live entry survives pruning"
        );
        drop(a);
        assert!(n.live("a").is_none());
        let b = n.get("b");
        assert!(
            n.take("b").is_some_and(|t| Arc::ptr_eq(&b, &t)),
            "taken: the one handed out"
        );
        assert!(n.live("b").is_none(), "and out of the map");
        assert!(n.take("c").is_none(), "nobody asked for it: none made");
    }
}
