//! Message id → sequence, in as little memory as the ids allow.
//!
//! Ids the cloud makes (`msg_` + 16 lower-case hex digits) are kept as the `u64` they spell,
//! so the index costs ~16 bytes per message instead of a heap string; any other id (a test's,
//! or one written by another implementation) goes to a small side map.

use std::collections::HashMap;

/// A map keyed by a sequence or a packed id: numbers the store makes itself (sequences count
/// up, ids come from a CSPRNG), so a fast hasher (foldhash, seeded per process) is safe here
/// and SipHash, std's default, only costs time on every enqueue and ACK.
pub(crate) type SeqMap<V> = HashMap<u64, V, foldhash::fast::RandomState>;

#[derive(Default)]
pub(super) struct Ids {
    packed: SeqMap<u64>,
    other: HashMap<Box<str>, u64>,
    other_by_seq: SeqMap<Box<str>>,
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
            Some(k) => self.packed.get(&k).copied(),
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
            Some(k) => {
                self.packed.remove(&k);
            }
            None => {
                if let Some(id) = self.other_by_seq.remove(&seq) {
                    self.other.remove(&id);
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
