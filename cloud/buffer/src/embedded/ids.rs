//! Message id → sequence, in as little memory as the ids allow.
//!
//! Ids the cloud makes (`msg_` + 16 lower-case hex digits) are kept as the `u64` they spell,
//! so the index costs ~16 bytes per message instead of a heap string; any other id (a test's,
//! or one written by another implementation) goes to a small side map.

use std::collections::HashMap;

use super::room;

/// A map keyed by a sequence or a packed id: numbers the store makes itself (sequences count
/// up, ids come from a CSPRNG), so a fast hasher (foldhash, seeded per process) is safe here
/// and SipHash, std's default, only costs time on every enqueue and ACK.
pub(crate) type SeqMap<V> = HashMap<u64, V, foldhash::fast::RandomState>;

#[derive(Default)]
pub(super) struct Ids {
    packed: Packed,
    other: HashMap<Box<str>, u64>,
    other_by_seq: SeqMap<Box<str>>,
}

/// A packed id's shard: its top bits (ids come from a CSPRNG, so they spread evenly).
const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;
/// One table holds up to this many ids; the insert past it splits the table into [`SHARDS`].
const SPLIT_AT: usize = 1 << 14;

/// Packed id → sequence, in one table while small and in [`SHARDS`] tables once large.
///
/// A hash table grows by moving every entry into a table twice its size, all at once, under
/// the channel's lock: with one table holding a backlog of a million ids that took ~110 ms
/// (measured, docs/BENCHMARKS.md), and every webhook to the channel waited for it. A shard
/// grows alone, so the longest pause is 1/[`SHARDS`] of that at any backlog.
///
/// As a backlog drains, a table that is mostly empty is cut down ([`room::map`]), and the
/// shards go back into one table once they hold fewer than a quarter of [`SPLIT_AT`] ids.
#[derive(Default)]
struct Packed {
    /// Empty, one table, or [`SHARDS`] tables.
    tables: Vec<SeqMap<u64>>,
    /// Ids held, across the tables.
    len: usize,
}

impl Packed {
    /// Which of `tables` holds `key` (`None` while there is none).
    fn slot(&self, key: u64) -> Option<usize> {
        match self.tables.len() {
            0 => None,
            1 => Some(0),
            _ => Some((key >> (64 - SHARD_BITS)) as usize),
        }
    }

    fn get(&self, key: u64) -> Option<u64> {
        self.tables.get(self.slot(key)?)?.get(&key).copied()
    }

    fn insert(&mut self, key: u64, seq: u64) {
        if self.tables.is_empty() {
            self.tables.push(SeqMap::default());
        } else if self.tables.len() == 1 && self.tables[0].len() >= SPLIT_AT {
            let one = self.tables.pop().unwrap_or_default();
            self.tables = (0..SHARDS).map(|_| SeqMap::default()).collect();
            for (k, v) in one {
                self.tables[(k >> (64 - SHARD_BITS)) as usize].insert(k, v);
            }
        }
        if let Some(i) = self.slot(key)
            && self.tables[i].insert(key, seq).is_none()
        {
            self.len += 1;
        }
    }

    fn remove(&mut self, key: u64) {
        let Some(i) = self.slot(key) else {
            return;
        };
        if self.tables[i].remove(&key).is_none() {
            return;
        }
        self.len -= 1;
        if self.tables.len() > 1 && self.len < SPLIT_AT / 4 {
            let mut one = SeqMap::default();
            one.reserve(self.len);
            for table in self.tables.drain(..) {
                one.extend(table);
            }
            self.tables.push(one);
        } else {
            room::map(&mut self.tables[i]);
        }
    }

    /// The most entries one growth can move: the largest table's capacity.
    #[cfg(test)]
    fn largest_table(&self) -> usize {
        self.tables.iter().map(|t| t.capacity()).max().unwrap_or(0)
    }

    /// Room for ids across the tables.
    #[cfg(test)]
    fn capacity(&self) -> usize {
        self.tables.iter().map(|t| t.capacity()).sum()
    }
}

/// An id as an entry keeps it: the packed value, or `None` when it lives in the side map.
pub(super) type IdKey = Option<u64>;

pub(super) fn pack(id: &str) -> Option<u64> {
    let hex = id.strip_prefix("msg_")?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

impl Ids {
    pub fn get(&self, id: &str) -> Option<u64> {
        match pack(id) {
            Some(k) => self.packed.get(k),
            None => self.other.get(id).copied(),
        }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    pub fn insert(&mut self, id: &str, seq: u64) -> IdKey {
        match pack(id) {
            Some(k) => {
                self.packed.insert(k, seq);
                Some(k)
            }
            None => {
                self.other.insert(id.into(), seq);
                self.other_by_seq.insert(seq, id.into());
                None
            }
        }
    }

    pub fn remove(&mut self, key: IdKey, seq: u64) {
        match key {
            Some(k) => self.packed.remove(k),
            None => {
                if let Some(id) = self.other_by_seq.remove(&seq) {
                    self.other.remove(&id);
                    room::map(&mut self.other);
                    room::map(&mut self.other_by_seq);
                }
            }
        }
    }

    /// The id string of an entry.
    pub fn name(&self, key: IdKey, seq: u64) -> String {
        match key {
            Some(k) => format!("msg_{k:016x}"),
            None => self
                .other_by_seq
                .get(&seq)
                .map(|s| s.to_string())
                .unwrap_or_default(),
        }
    }

    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A backlog's ids never sit in one table that a single insert would have to move whole:
    /// the largest table (what one growth moves, under the channel's lock) stays a small part
    /// of the whole, and every id is still found after the split.
    #[test]
    fn a_large_backlog_never_grows_one_big_table() {
        let mut ids = Ids::default();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut keys = Vec::new();
        for seq in 0..300_000u64 {
            // xorshift: the spread of the CSPRNG ids, reproducibly.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = format!("msg_{x:016x}");
            ids.insert(&id, seq);
            keys.push(id);
            // Drained roughly in order, as a queue is.
            if seq >= 100_000 {
                let old = &keys[(seq - 100_000) as usize];
                ids.remove(pack(old), seq - 100_000);
            }
        }
        let total: usize = ids.packed.tables.iter().map(|t| t.len()).sum();
        assert_eq!(total, 100_000);
        let largest = ids.packed.largest_table();
        assert!(
            largest <= total / 16,
            "one table holds room for {largest} of {total} ids"
        );
        for (seq, id) in keys.iter().enumerate().skip(200_000) {
            assert_eq!(ids.get(id), Some(seq as u64), "{id}");
        }
        assert_eq!(ids.get(&keys[0]), None);
    }

    /// Once a backlog has drained, the tables give its room back (the shards go back into one
    /// table), and every id left is still found.
    #[test]
    fn a_drained_backlog_gives_its_tables_room_back() {
        let mut ids = Ids::default();
        let keys: Vec<String> = (0..200_000u64)
            .map(|i| format!("msg_{:016x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
            .collect();
        for (seq, id) in keys.iter().enumerate() {
            ids.insert(id, seq as u64);
        }
        let peak = ids.packed.capacity();
        for (seq, id) in keys.iter().enumerate().take(199_900) {
            ids.remove(pack(id), seq as u64);
        }
        assert_eq!(
            ids.packed.tables.len(),
            1,
            "the shards went back into one table"
        );
        assert!(
            ids.packed.capacity() <= 4_096,
            "room for {} ids kept of {peak} for 100",
            ids.packed.capacity()
        );
        for (seq, id) in keys.iter().enumerate().skip(199_900) {
            assert_eq!(ids.get(id), Some(seq as u64), "{id}");
        }
        // And it grows again as before.
        for (seq, id) in keys.iter().enumerate().take(50_000) {
            ids.insert(id, seq as u64);
        }
        assert_eq!(ids.packed.tables.len(), SHARDS);
        assert_eq!(ids.get(&keys[0]), Some(0));
    }

    #[test]
    fn canonical_ids_pack_and_others_do_not() {
        assert_eq!(pack("msg_00000000000000ff"), Some(255));
        for other in [
            "msg_00000000000000FF",
            "msg_123",
            "m_0000000000000000",
            "msg_0000000000000000x",
        ] {
            assert_eq!(pack(other), None, "{other}");
        }
        let mut ids = Ids::default();
        let a = ids.insert("msg_0123456789abcdef", 1);
        let b = ids.insert("custom-id", 2);
        assert_eq!(
            (ids.get("msg_0123456789abcdef"), ids.get("custom-id")),
            (Some(1), Some(2))
        );
        assert_eq!(ids.name(a, 1), "msg_0123456789abcdef");
        assert_eq!(ids.name(b, 2), "custom-id");
        ids.remove(b, 2);
        ids.remove(a, 1);
        assert!(!ids.contains("custom-id") && !ids.contains("msg_0123456789abcdef"));
    }
}
