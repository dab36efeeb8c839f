//! A channel's entries keyed by sequence, packed for a queue that is mostly drained in order.
//!
//! Sequences are handed out one after another and settled roughly oldest first, so the entries
//! live in fixed chunks of [`CHUNK`] slots indexed by `seq` — no per-entry key or tree node,
//! just the entry itself. A chunk is freed when its last entry goes. Entries that would keep a
//! mostly empty chunk alive go to a small ordered side map (`sparse`) instead: dead letters,
//! which wait for an operator and so would pin a chunk each, and the last few survivors of a
//! chunk that has otherwise been drained. A chunk costs at most `CHUNK / SPARSE_BELOW` times
//! the memory of the entries it holds, and the chunk table spans only the dense part of the
//! queue.
//!
//! A slot is empty when its entry's record length is zero (no record is empty).

use std::collections::{BTreeMap, VecDeque};
use std::iter::Peekable;

use super::Entry;

/// Slots per chunk.
const CHUNK: u64 = 256;
/// A chunk (other than the newest) left with fewer entries than this moves them to `sparse`.
const SPARSE_BELOW: u32 = 16;

struct Chunk {
    live: u32,
    slots: Box<[Entry]>,
}

impl Chunk {
    fn new() -> Box<Self> {
        Box::new(Self {
            live: 0,
            slots: (0..CHUNK).map(|_| Entry::EMPTY).collect(),
        })
    }
}

#[derive(Default)]
pub(super) struct Slots {
    /// The sequence of `chunks[0]`'s first slot (a multiple of `CHUNK`).
    base: u64,
    chunks: VecDeque<Option<Box<Chunk>>>,
    sparse: BTreeMap<u64, Entry>,
    len: usize,
}

impl Slots {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// The chunk index and slot of `seq`, when `seq` is within the chunk table.
    fn place(&self, seq: u64) -> Option<(usize, usize)> {
        let rel = seq.checked_sub(self.base)?;
        let chunk = usize::try_from(rel / CHUNK).ok()?;
        (chunk < self.chunks.len()).then_some((chunk, (rel % CHUNK) as usize))
    }

    pub fn get(&self, seq: u64) -> Option<&Entry> {
        if let Some((c, s)) = self.place(seq)
            && let Some(chunk) = &self.chunks[c]
        {
            let e = &chunk.slots[s];
            if !e.is_empty() {
                return Some(e);
            }
        }
        self.sparse.get(&seq)
    }

    pub fn get_mut(&mut self, seq: u64) -> Option<&mut Entry> {
        if let Some((c, s)) = self.place(seq)
            && let Some(chunk) = &mut self.chunks[c]
            && !chunk.slots[s].is_empty()
        {
            return Some(&mut chunk.slots[s]);
        }
        self.sparse.get_mut(&seq)
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.get(seq).is_some()
    }

    /// Adds an entry for a sequence not held yet (a held one is replaced).
    pub fn insert(&mut self, seq: u64, e: Entry) {
        debug_assert!(!e.is_empty());
        if let Some(old) = self.get_mut(seq) {
            *old = e;
            return;
        }
        self.len += 1;
        if self.chunks.is_empty() {
            self.base = seq - seq % CHUNK;
        }
        if seq < self.base {
            self.sparse.insert(seq, e);
            return;
        }
        let c = ((seq - self.base) / CHUNK) as usize;
        if c >= self.chunks.len() {
            // The table grows at the tail: chunks in between stay unallocated.
            self.chunks.resize_with(c + 1, || None);
            self.chunks[c] = Some(Chunk::new());
        }
        match &mut self.chunks[c] {
            Some(chunk) => {
                chunk.slots[(seq % CHUNK) as usize] = e;
                chunk.live += 1;
            }
            // A freed chunk is not brought back for a late arrival.
            None => {
                self.sparse.insert(seq, e);
            }
        }
    }

    pub fn remove(&mut self, seq: u64) -> Option<Entry> {
        let e = match self.place(seq) {
            Some((c, s)) => match &mut self.chunks[c] {
                Some(chunk) if !chunk.slots[s].is_empty() => {
                    chunk.live -= 1;
                    let e = std::mem::replace(&mut chunk.slots[s], Entry::EMPTY);
                    self.thin(c);
                    Some(e)
                }
                _ => self.sparse.remove(&seq),
            },
            None => self.sparse.remove(&seq),
        }?;
        self.len -= 1;
        Some(e)
    }

    /// Moves an entry out of its chunk into the side map (a dead letter: it may stay for a
    /// long time and must not keep a chunk alive).
    pub fn set_aside(&mut self, seq: u64) {
        let Some((c, s)) = self.place(seq) else {
            return;
        };
        let Some(chunk) = &mut self.chunks[c] else {
            return;
        };
        if chunk.slots[s].is_empty() {
            return;
        }
        chunk.live -= 1;
        let e = std::mem::replace(&mut chunk.slots[s], Entry::EMPTY);
        self.sparse.insert(seq, e);
        self.thin(c);
    }

    /// Frees chunk `c` when it is empty, or moves its few entries aside when it is nearly
    /// empty and not the newest; then drops freed chunks from the front of the table.
    fn thin(&mut self, c: usize) {
        let newest = c + 1 == self.chunks.len();
        let Some(chunk) = &mut self.chunks[c] else {
            return;
        };
        if chunk.live == 0 || (chunk.live < SPARSE_BELOW && !newest) {
            let first = self.base + c as u64 * CHUNK;
            for (i, slot) in chunk.slots.iter_mut().enumerate() {
                if !slot.is_empty() {
                    let e = std::mem::replace(slot, Entry::EMPTY);
                    self.sparse.insert(first + i as u64, e);
                }
            }
            self.chunks[c] = None;
        }
        while let Some(None) = self.chunks.front() {
            self.chunks.pop_front();
            self.base += CHUNK;
        }
        while let Some(None) = self.chunks.back() {
            self.chunks.pop_back();
        }
    }

    /// Every entry in sequence order.
    pub fn iter(&self) -> Iter<'_> {
        let base = self.base;
        let dense = self
            .chunks
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_deref().map(|c| (i, c)))
            .flat_map(move |(i, c)| {
                let first = base + i as u64 * CHUNK;
                c.slots
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| !e.is_empty())
                    .map(move |(s, e)| (first + s as u64, e))
            });
        let dense: DenseIter<'_> = Box::new(dense);
        Iter {
            dense: dense.peekable(),
            sparse: self.sparse.iter().peekable(),
        }
    }

    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.iter().map(|(s, _)| s)
    }

    pub fn values(&self) -> impl Iterator<Item = &Entry> + '_ {
        self.iter().map(|(_, e)| e)
    }

    /// Heap bytes held for entries (chunks, the chunk table and side map entries).
    #[cfg(test)]
    fn footprint(&self) -> usize {
        let chunk = std::mem::size_of::<Chunk>() + CHUNK as usize * std::mem::size_of::<Entry>();
        self.chunks.iter().flatten().count() * chunk
            + self.chunks.capacity() * std::mem::size_of::<Option<Box<Chunk>>>()
            + self.sparse.len() * (8 + std::mem::size_of::<Entry>())
    }
}

type DenseIter<'a> = Box<dyn Iterator<Item = (u64, &'a Entry)> + 'a>;

/// The chunks and the side map merged in sequence order.
pub(super) struct Iter<'a> {
    dense: Peekable<DenseIter<'a>>,
    sparse: Peekable<std::collections::btree_map::Iter<'a, u64, Entry>>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (u64, &'a Entry);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.dense.peek(), self.sparse.peek()) {
            (Some((d, _)), Some((s, _))) if **s < *d => self.sparse.next().map(|(s, e)| (*s, e)),
            (Some(_), _) => self.dense.next(),
            (None, _) => self.sparse.next().map(|(s, e)| (*s, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::log::Loc;

    fn entry(seq: u64) -> Entry {
        Entry {
            loc: Loc {
                seg: 1,
                off: seq as u32,
                len: 10,
            },
            ..Entry::EMPTY
        }
    }

    fn seqs(s: &Slots) -> Vec<u64> {
        s.keys().collect()
    }

    #[test]
    fn keeps_entries_in_sequence_order_across_chunks_and_the_side_map() {
        let mut s = Slots::default();
        for seq in 1..=1000 {
            s.insert(seq, entry(seq));
        }
        assert_eq!(s.len(), 1000);
        s.set_aside(700);
        assert_eq!(s.get(700).map(|e| e.loc.off), Some(700));
        assert_eq!(seqs(&s), (1..=1000).collect::<Vec<_>>());
        for seq in (1..=1000).filter(|q| q % 3 != 0) {
            assert_eq!(s.remove(seq).map(|e| e.loc.off), Some(seq as u32));
        }
        assert!(s.remove(1).is_none());
        let want: Vec<u64> = (1..=1000).filter(|q| q % 3 == 0).collect();
        assert_eq!(seqs(&s), want);
        assert_eq!(s.len(), want.len());
        for &seq in &want {
            assert!(s.contains(seq), "{seq}");
            s.get_mut(seq).expect("held").delivery_count = 7;
        }
        assert!(s.values().all(|e| e.delivery_count == 7));
        for seq in want {
            s.remove(seq);
        }
        assert_eq!(s.len(), 0);
        assert!(s.chunks.is_empty() && s.sparse.is_empty());
    }

    #[test]
    fn a_few_survivors_or_dead_letters_do_not_keep_drained_chunks() {
        let mut s = Slots::default();
        let n = 100 * CHUNK;
        for seq in 1..=n {
            s.insert(seq, entry(seq));
        }
        let full = s.footprint();
        // One survivor per chunk, and one dead letter per chunk, the rest drained in order.
        for seq in 1..=n {
            match seq % CHUNK {
                5 => s.set_aside(seq),
                9 => {}
                _ => {
                    s.remove(seq);
                }
            }
        }
        assert_eq!(s.len(), 200);
        assert!(
            s.footprint() < full / 20,
            "{} of {full} bytes kept for 200 entries",
            s.footprint()
        );
        let kept: Vec<u64> = (1..=n).filter(|q| matches!(q % CHUNK, 5 | 9)).collect();
        assert_eq!(seqs(&s), kept);
        // A sequence below the table (a late arrival) goes aside and is found again.
        s.insert(3, entry(3));
        assert_eq!(s.get(3).map(|e| e.loc.off), Some(3));
        assert_eq!(seqs(&s)[0], 3);
    }
}
