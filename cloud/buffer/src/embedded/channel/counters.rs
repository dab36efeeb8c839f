//! A channel's cumulative counters, allocated at their first change: a channel that never
//! counted anything (most idle channels) holds one pointer instead of 88 B inline (issue
//! #14: memory per idle channel). Read through `Deref` (zeroes when unallocated), changed
//! through `DerefMut`, which allocates once.

use std::ops::{Deref, DerefMut};

use crate::Counters;

/// What every channel that never counted reads.
static ZERO: Counters = Counters {
    received: 0,
    dispatched: 0,
    acked: 0,
    nacked: 0,
    expired: 0,
    dead_lettered: 0,
    rejected: 0,
    exhausted: 0,
    replayed: 0,
    discarded: 0,
    dead_letters_dropped: 0,
};

#[derive(Default)]
pub(in crate::embedded) struct LazyCounters(Option<Box<Counters>>);

impl From<Counters> for LazyCounters {
    fn from(c: Counters) -> Self {
        LazyCounters((c != ZERO).then(|| Box::new(c)))
    }
}

impl Deref for LazyCounters {
    type Target = Counters;

    fn deref(&self) -> &Counters {
        self.0.as_deref().unwrap_or(&ZERO)
    }
}

impl DerefMut for LazyCounters {
    fn deref_mut(&mut self) -> &mut Counters {
        self.0.get_or_insert_with(Box::default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_counters_take_no_allocation_and_read_as_zero() {
        let mut c = LazyCounters::from(Counters::default());
        assert!(c.0.is_none());
        assert_eq!(*c, Counters::default());
        c.received += 1;
        assert_eq!(c.received, 1);
        let loaded = LazyCounters::from((*c).clone());
        assert_eq!(loaded.received, 1);
    }
}
