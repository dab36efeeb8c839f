//! Giving back the room a backlog took. A hash table or a queue keeps its capacity when it
//! empties, so a channel that once held a large backlog would hold that backlog's index for as
//! long as the process runs. These cut a mostly empty collection down once it is below
//! [`SPARSE`] full: the cut moves what is left (at most 1/[`SPARSE`] of the capacity) and
//! leaves room for twice that, so a collection is cut only after most of what it held went,
//! and grows again only after what is left has doubled (amortised O(1), no back and forth).
//!
//! A std `HashMap`'s `capacity()` is what it can take before it grows, which removals that
//! leave a tombstone lower; so a table is cut somewhat later than at 1/[`SPARSE`] of its
//! buckets, never earlier.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};

/// Collections at or below this capacity are left alone (a few KiB at most).
const FLOOR: usize = 1024;
/// Cut once fewer than 1/`SPARSE` of the capacity is in use.
const SPARSE: usize = 8;

fn sparse(len: usize, capacity: usize) -> bool {
    capacity > FLOOR && len.saturating_mul(SPARSE) < capacity
}

pub(super) fn map<K: Eq + Hash, V, S: BuildHasher>(m: &mut HashMap<K, V, S>) {
    if sparse(m.len(), m.capacity()) {
        m.shrink_to(m.len() * 2);
    }
}

pub(super) fn deque<T>(q: &mut VecDeque<T>) {
    if sparse(q.len(), q.capacity()) {
        q.shrink_to(q.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mostly_empty_collection_is_cut() {
        let mut m: HashMap<u64, u64> = (0..100_000).map(|i| (i, i)).collect();
        for i in 0..99_000 {
            m.remove(&i);
            map(&mut m);
        }
        assert!(m.capacity() < 16_384, "{} left for 1,000", m.capacity());
        assert_eq!(m.len(), 1_000);
        assert!((99_000..100_000).all(|i| m.get(&i) == Some(&i)));

        let mut q: VecDeque<u64> = (0..100_000).collect();
        while q.len() > 1_000 {
            q.pop_front();
            deque(&mut q);
        }
        assert!(q.capacity() < 16_384, "{} left for 1,000", q.capacity());
        assert_eq!(q.front(), Some(&99_000));
    }

    #[test]
    fn small_collections_are_left_alone() {
        let mut m: HashMap<u64, u64> = (0..500).map(|i| (i, i)).collect();
        let cap = m.capacity();
        m.clear();
        map(&mut m);
        assert_eq!(m.capacity(), cap);
    }
}
