//! The series a target currently has, by final label set: their refs,
//! whether the WAL has been given their definition since they last went
//! stale, the last timestamp written (to skip duplicates and out-of-order
//! samples) and the scrape that last reported them (for staleness).
//!
//! Memory: a series' labels are kept as one allocation, their canonical
//! bytes (`name 0xff value 0xff ...`), and indexed by the xxh3 of those
//! bytes (collisions resolved by comparing the bytes). A [`Labels`] is only
//! built when a definition is emitted.

use hashbrown::HashTable;
use promshard_promlib::labels::Labels;

use super::RefAllocator;
use crate::series::{SeriesDef, SeriesRef};

#[derive(Debug)]
pub(crate) struct SeriesEntry {
    pub(crate) series: SeriesRef,
    /// Canonical bytes of the final labels (target labels, metric
    /// relabeling and external labels applied).
    labels: Box<[u8]>,
    /// xxh3 of `labels`.
    hash: u64,
    /// Timestamp of the last sample (or stale marker) written.
    pub(crate) last_ts: i64,
    /// Iteration of the last scrape that wrote a sample without an explicit
    /// timestamp (the series takes part in staleness).
    pub(crate) tracked: Option<u64>,
    /// Iteration of the last scrape that mentioned it.
    pub(crate) last_seen: u64,
    /// Iteration of the last successful scrape that had it (0: none).
    pub(crate) committed_iter: u64,
    /// A definition was emitted and the series has not gone stale since.
    pub(crate) defined: bool,
}

impl SeriesEntry {
    pub(crate) fn labels(&self) -> Labels {
        // The bytes were written by `Labels::write_canonical`, so they
        // always decode; an empty set would only hide a bug.
        Labels::from_canonical_bytes(&self.labels).unwrap_or_default()
    }

    pub(crate) fn def(&self) -> SeriesDef {
        SeriesDef {
            series: self.series,
            labels: self.labels(),
        }
    }
}

fn hash_bytes(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// A slab of entries with a label index.
#[derive(Default)]
pub(crate) struct SeriesTable {
    slots: Vec<Option<SeriesEntry>>,
    free: Vec<u32>,
    /// Slots by the hash of their labels.
    index: HashTable<u32>,
    /// Reused buffer for the canonical bytes of a looked-up label set.
    scratch: Vec<u8>,
}

impl SeriesTable {
    /// The slot of `labels`, created (with a fresh ref) when absent.
    pub(crate) fn get_or_insert(
        &mut self,
        labels: &Labels,
        iter: u64,
        refs: &RefAllocator,
    ) -> (u32, SeriesRef) {
        self.scratch.clear();
        labels.write_canonical(&mut self.scratch);
        let hash = hash_bytes(&self.scratch);
        let slots = &self.slots;
        let bytes = &self.scratch;
        if let Some(&slot) = self.index.find(hash, |&s| {
            matches!(slots.get(s as usize), Some(Some(e)) if e.hash == hash && *e.labels == **bytes)
        }) && let Some(Some(e)) = self.slots.get(slot as usize)
        {
            return (slot, e.series);
        }
        let series = refs.next();
        let entry = SeriesEntry {
            series,
            labels: self.scratch.as_slice().into(),
            hash,
            defined: false,
            last_ts: i64::MIN,
            tracked: None,
            last_seen: iter,
            committed_iter: 0,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(entry);
                slot
            }
            None => {
                self.slots.push(Some(entry));
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.index
            .insert_unique(hash, slot, |&s| slot_hash(slots, s));
        (slot, series)
    }

    /// The entry in `slot` if it still holds `series`.
    #[inline]
    pub(crate) fn get_mut(&mut self, slot: u32, series: SeriesRef) -> Option<&mut SeriesEntry> {
        match self.slots.get_mut(slot as usize) {
            Some(Some(e)) if e.series == series => Some(e),
            _ => None,
        }
    }

    #[inline]
    pub(crate) fn slot_mut(&mut self, slot: u32) -> Option<&mut SeriesEntry> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &SeriesEntry> {
        self.slots.iter().flatten()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut SeriesEntry> {
        self.slots.iter_mut().flatten()
    }

    /// Drops entries for which `dead` is true.
    pub(crate) fn prune(&mut self, mut dead: impl FnMut(&SeriesEntry) -> bool) {
        for i in 0..self.slots.len() {
            let Some(e) = &self.slots[i] else {
                continue;
            };
            if !dead(e) {
                continue;
            }
            let hash = e.hash;
            let slot = i as u32;
            if let Ok(found) = self.index.find_entry(hash, |&s| s == slot) {
                found.remove();
            }
            self.slots[i] = None;
            self.free.push(slot);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.index.len()
    }
}

/// The hash of the entry in slot `s` (for the index's rehashing; every
/// indexed slot holds an entry).
fn slot_hash(slots: &[Option<SeriesEntry>], s: u32) -> u64 {
    match slots.get(s as usize) {
        Some(Some(e)) => e.hash,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &str) -> Labels {
        Labels::from_pairs([("__name__", "m"), ("v", v)])
    }

    #[test]
    fn same_labels_same_slot_and_definitions_round_trip() {
        let refs = RefAllocator::new(10);
        let mut t = SeriesTable::default();
        let (s1, r1) = t.get_or_insert(&labels("a"), 1, &refs);
        let (s2, r2) = t.get_or_insert(&labels("b"), 1, &refs);
        assert_ne!(r1, r2);
        assert_eq!(t.get_or_insert(&labels("a"), 2, &refs), (s1, r1));
        assert_eq!(t.slot_mut(s2).map(|e| e.def().labels), Some(labels("b")));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn pruned_slots_are_reused_with_fresh_refs() {
        let refs = RefAllocator::new(1);
        let mut t = SeriesTable::default();
        let (s1, r1) = t.get_or_insert(&labels("a"), 1, &refs);
        t.get_or_insert(&labels("b"), 1, &refs);
        t.prune(|e| e.series == r1);
        assert_eq!(t.len(), 1);
        assert!(t.get_mut(s1, r1).is_none());
        let (s3, r3) = t.get_or_insert(&labels("a"), 3, &refs);
        assert_eq!(s3, s1);
        assert_ne!(r3, r1);
        assert_eq!(t.iter().count(), 2);
    }

    #[test]
    fn hash_collisions_are_told_apart_by_bytes() {
        let refs = RefAllocator::new(1);
        let mut t = SeriesTable::default();
        let (_, r1) = t.get_or_insert(&labels("a"), 1, &refs);
        // Force a second entry with the same hash as the first one.
        let hash = t.slots[0].as_ref().map(|e| e.hash).unwrap_or(0);
        let other = labels("b");
        let bytes = other.canonical_bytes();
        t.slots.push(Some(SeriesEntry {
            series: refs.next(),
            labels: bytes.into(),
            hash,
            last_ts: i64::MIN,
            tracked: None,
            last_seen: 1,
            committed_iter: 0,
            defined: false,
        }));
        let slots = &t.slots;
        t.index.insert_unique(hash, 1, |&s| slot_hash(slots, s));
        assert_eq!(t.get_or_insert(&labels("a"), 1, &refs).1, r1);
        // Pruning one of the colliding entries keeps the other findable.
        t.prune(|e| e.series == r1);
        let found = t.index.find(hash, |&s| s == 1).copied();
        assert_eq!(found, Some(1));
        assert_eq!(t.len(), 1);
    }
}
