//! The series a target currently has, by final label set: their refs,
//! whether the WAL has been given their definition since they last went
//! stale, the last timestamp written (to skip duplicates and out-of-order
//! samples) and the scrape that last reported them (for staleness).
//!
//! Memory: a series' labels are kept as the ids of their pairs in the
//! target's [`LabelPool`] (varints in one arena, compacted when more than
//! half of it is dead), indexed by the xxh3 of those id bytes (ids are
//! unique while in use, so equal bytes are equal label sets). A [`Labels`]
//! is only built when a definition is emitted.

use hashbrown::HashTable;
use promshard_promlib::labels::Labels;

use super::RefAllocator;
use super::label_pool::LabelPool;
use crate::series::{SeriesDef, SeriesRef};

/// The id arena is compacted only above this many dead bytes.
const MIN_COMPACT_BYTES: usize = 16 * 1024;

#[derive(Debug)]
pub(crate) struct SeriesEntry {
    pub(crate) series: SeriesRef,
    /// The final labels' pair ids (target labels, metric relabeling and
    /// external labels applied): `ids[off..off + len]` of the table.
    off: u32,
    len: u32,
    /// Timestamp of the last sample (or stale marker) written.
    pub(crate) last_ts: i64,
    /// Iteration of the last scrape that wrote a sample without an explicit
    /// timestamp (the series takes part in staleness).
    pub(crate) tracked: Option<std::num::NonZeroU32>,
    /// Iteration of the last scrape that mentioned it.
    pub(crate) last_seen: u32,
    /// Iteration of the last successful scrape that had it (0: none).
    pub(crate) committed_iter: u32,
    /// A definition was emitted and the series has not gone stale since.
    pub(crate) defined: bool,
}

impl SeriesEntry {
    fn range(&self) -> std::ops::Range<usize> {
        self.off as usize..self.off as usize + self.len as usize
    }
}

/// Builds definitions of entries (borrowed apart from the entries).
pub(crate) struct Definer<'a> {
    pool: &'a LabelPool,
    ids: &'a [u8],
}

impl Definer<'_> {
    pub(crate) fn labels(&self, e: &SeriesEntry) -> Labels {
        self.pool
            .decode(self.ids.get(e.range()).unwrap_or_default())
    }

    pub(crate) fn def(&self, e: &SeriesEntry) -> SeriesDef {
        SeriesDef {
            series: e.series,
            labels: self.labels(e),
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
    /// Slots by the hash of their id bytes.
    index: HashTable<u32>,
    pool: LabelPool,
    /// The entries' pair ids, back to back.
    ids: Vec<u8>,
    dead_bytes: usize,
    /// Reused buffer for the ids of a looked-up label set.
    scratch: Vec<u8>,
}

impl SeriesTable {
    /// The slot of `labels`, created (with a fresh ref) when absent.
    pub(crate) fn get_or_insert(
        &mut self,
        labels: &Labels,
        iter: u32,
        refs: &RefAllocator,
    ) -> (u32, SeriesRef) {
        self.scratch.clear();
        if self.pool.encode_known(labels, &mut self.scratch) {
            let hash = hash_bytes(&self.scratch);
            let (slots, ids, bytes) = (&self.slots, &self.ids, &self.scratch);
            if let Some(&slot) = self.index.find(hash, |&s| {
                matches!(slots.get(s as usize), Some(Some(e)) if ids.get(e.range()) == Some(bytes.as_slice()))
            }) && let Some(Some(e)) = self.slots.get(slot as usize)
            {
                return (slot, e.series);
            }
        }
        self.scratch.clear();
        self.pool.encode_and_hold(labels, &mut self.scratch);
        let hash = hash_bytes(&self.scratch);
        let series = refs.next();
        let entry = SeriesEntry {
            series,
            off: self.ids.len() as u32,
            len: self.scratch.len() as u32,
            defined: false,
            last_ts: i64::MIN,
            tracked: None,
            last_seen: iter,
            committed_iter: 0,
        };
        self.ids.extend_from_slice(&self.scratch);
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
        let (slots, ids) = (&self.slots, &self.ids);
        self.index
            .insert_unique(hash, slot, |&s| slot_hash(slots, ids, s));
        (slot, series)
    }

    #[inline]
    pub(crate) fn slot_mut(&mut self, slot: u32) -> Option<&mut SeriesEntry> {
        self.slots.get_mut(slot as usize).and_then(Option::as_mut)
    }

    /// The entry in `slot` and a [`Definer`] for it.
    #[inline]
    pub(crate) fn slot_with_definer(
        &mut self,
        slot: u32,
    ) -> Option<(&mut SeriesEntry, Definer<'_>)> {
        let e = self.slots.get_mut(slot as usize).and_then(Option::as_mut)?;
        Some((
            e,
            Definer {
                pool: &self.pool,
                ids: &self.ids,
            },
        ))
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &SeriesEntry> {
        self.slots.iter().flatten()
    }

    pub(crate) fn definer(&self) -> Definer<'_> {
        Definer {
            pool: &self.pool,
            ids: &self.ids,
        }
    }

    /// Every entry, mutable, and a [`Definer`].
    pub(crate) fn iter_mut_with_definer(
        &mut self,
    ) -> (impl Iterator<Item = &mut SeriesEntry>, Definer<'_>) {
        (
            self.slots.iter_mut().flatten(),
            Definer {
                pool: &self.pool,
                ids: &self.ids,
            },
        )
    }

    /// Whether `slot` holds a series.
    pub(crate) fn holds(&self, slot: u32) -> bool {
        matches!(self.slots.get(slot as usize), Some(Some(_)))
    }

    /// Drops entries for which `dead` is true; true when any was.
    pub(crate) fn prune(&mut self, mut dead: impl FnMut(&SeriesEntry) -> bool) -> bool {
        let mut freed = false;
        for i in 0..self.slots.len() {
            let Some(e) = &self.slots[i] else {
                continue;
            };
            if !dead(e) {
                continue;
            }
            let range = e.range();
            let hash = hash_bytes(self.ids.get(range.clone()).unwrap_or_default());
            let slot = i as u32;
            if let Ok(found) = self.index.find_entry(hash, |&s| s == slot) {
                found.remove();
            }
            self.pool
                .release(self.ids.get(range.clone()).unwrap_or_default());
            self.dead_bytes += range.len();
            self.slots[i] = None;
            self.free.push(slot);
            freed = true;
        }
        let live = self.ids.len() - self.dead_bytes;
        if self.dead_bytes > live && self.dead_bytes > MIN_COMPACT_BYTES {
            self.compact(live);
        }
        freed
    }

    /// Gives back the slack growth left in the slots and the id arena.
    pub(crate) fn trim(&mut self) {
        super::trim(&mut self.slots);
        super::trim(&mut self.ids);
        self.pool.trim();
    }

    /// Copies the live id bytes to a new arena.
    fn compact(&mut self, live: usize) {
        let mut ids = Vec::with_capacity(live);
        for e in self.slots.iter_mut().flatten() {
            let off = ids.len();
            ids.extend_from_slice(&self.ids[e.range()]);
            e.off = off as u32;
        }
        self.ids = ids;
        self.dead_bytes = 0;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.index.len()
    }
}

/// The hash of the entry in slot `s` (for the index's rehashing; every
/// indexed slot holds an entry).
fn slot_hash(slots: &[Option<SeriesEntry>], ids: &[u8], s: u32) -> u64 {
    match slots.get(s as usize) {
        Some(Some(e)) => hash_bytes(ids.get(e.range()).unwrap_or_default()),
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
        let def = t.slots[s2 as usize].as_ref().map(|e| t.definer().def(e));
        assert_eq!(def.map(|d| d.labels), Some(labels("b")));
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
        assert!(!t.holds(s1));
        let (s3, r3) = t.get_or_insert(&labels("a"), 3, &refs);
        assert_eq!(s3, s1);
        assert_ne!(r3, r1);
        assert_eq!(t.iter().count(), 2);
    }

    #[test]
    fn a_slot_takes_five_words() {
        // A million series of one collector: 40 MB of slots.
        assert!(std::mem::size_of::<Option<SeriesEntry>>() <= 40);
    }

    #[test]
    fn hash_collisions_are_told_apart_by_bytes() {
        let refs = RefAllocator::new(1);
        let mut t = SeriesTable::default();
        let (_, r1) = t.get_or_insert(&labels("a"), 1, &refs);
        // Force a second entry under the same hash as the first one.
        let hash = slot_hash(&t.slots, &t.ids, 0);
        let other = labels("b");
        let mut bytes = Vec::new();
        t.pool.encode_and_hold(&other, &mut bytes);
        let off = t.ids.len() as u32;
        t.ids.extend_from_slice(&bytes);
        t.slots.push(Some(SeriesEntry {
            series: refs.next(),
            off,
            len: bytes.len() as u32,
            last_ts: i64::MIN,
            tracked: None,
            last_seen: 1,
            committed_iter: 0,
            defined: false,
        }));
        let (slots, ids) = (&t.slots, &t.ids);
        t.index
            .insert_unique(hash, 1, |&s| slot_hash(slots, ids, s));
        assert_eq!(t.get_or_insert(&labels("a"), 1, &refs).1, r1);
        // Pruning one of the colliding entries keeps the other findable.
        t.prune(|e| e.series == r1);
        let found = t.index.find(hash, |&s| s == 1).copied();
        assert_eq!(found, Some(1));
        assert_eq!(t.len(), 1);
    }
}
