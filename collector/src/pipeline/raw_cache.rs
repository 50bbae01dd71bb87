//! The series cache keyed by the raw series bytes as the target wrote them
//! (`name{labels}`): a hit skips label building, target labels and metric
//! relabeling entirely. Entries dropped by metric relabeling are cached as
//! dropped.
//!
//! Memory: the raw bytes of every entry live in one arena (compacted when
//! more than half of it belongs to forgotten entries), the entries in a
//! dense vector, and a hash index of `u32` positions finds them by the xxh3
//! of the bytes, confirmed by comparing the bytes exactly.

use hashbrown::HashTable;

use crate::series::SeriesRef;

/// What a raw series resolved to the last time it was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// Dropped by metric_relabel_configs.
    Dropped,
    /// A series-table slot, valid while the slot still holds `series`.
    Series { slot: u32, series: SeriesRef },
}

/// `slot` of an entry cached as dropped.
const DROPPED: u32 = u32::MAX;
/// The arena is compacted only above this many dead bytes.
const MIN_COMPACT_BYTES: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
struct Entry {
    /// xxh3 of the raw bytes.
    hash: u64,
    /// The raw bytes: `arena[off..off + len]`.
    off: usize,
    len: u32,
    /// [`DROPPED`] or a series-table slot.
    slot: u32,
    series: SeriesRef,
    /// The scrape iteration that last saw it.
    last_iter: u64,
}

impl Entry {
    fn resolved(&self) -> Resolved {
        if self.slot == DROPPED {
            Resolved::Dropped
        } else {
            Resolved::Series {
                slot: self.slot,
                series: self.series,
            }
        }
    }

    fn set(&mut self, resolved: Resolved) {
        (self.slot, self.series) = match resolved {
            Resolved::Dropped => (DROPPED, SeriesRef(0)),
            Resolved::Series { slot, series } => (slot, series),
        };
    }
}

fn hash_raw(raw: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(raw)
}

/// Raw series bytes -> what they resolved to.
///
/// Mirrors Prometheus 2.42's `scrapeCache`: it has its own iteration
/// counter, which only advances when the cache is flushed (after a
/// successful non-empty scrape, or a forced flush), so entries survive any
/// number of failed scrapes. Whether a raw series is in this cache decides
/// `scrape_series_added`.
#[derive(Default)]
pub(crate) struct RawCache {
    /// Positions in `entries`, by `Entry::hash`.
    index: HashTable<u32>,
    entries: Vec<Entry>,
    arena: Vec<u8>,
    /// Bytes of `arena` no entry refers to.
    dead_bytes: usize,
    /// Size (before flushing) at the last successful, non-empty scrape
    /// (for the forced flush Prometheus does when failing scrapes grow the
    /// cache).
    successful_len: usize,
    iter: u64,
}

impl RawCache {
    fn position(&self, hash: u64, raw: &[u8]) -> Option<usize> {
        let (entries, arena) = (&self.entries, &self.arena);
        self.index
            .find(hash, |&i| {
                let e = &entries[i as usize];
                e.hash == hash && arena.get(e.off..e.off + e.len as usize) == Some(raw)
            })
            .map(|&i| i as usize)
    }

    /// Looks `raw` up and marks it seen in this iteration.
    #[inline]
    pub(crate) fn get(&mut self, raw: &[u8]) -> Option<Resolved> {
        let i = self.position(hash_raw(raw), raw)?;
        let e = &mut self.entries[i];
        e.last_iter = self.iter;
        Some(e.resolved())
    }

    pub(crate) fn insert(&mut self, raw: &[u8], resolved: Resolved) {
        let hash = hash_raw(raw);
        if let Some(i) = self.position(hash, raw) {
            let e = &mut self.entries[i];
            e.set(resolved);
            e.last_iter = self.iter;
            return;
        }
        let mut e = Entry {
            hash,
            off: self.arena.len(),
            len: raw.len() as u32,
            slot: DROPPED,
            series: SeriesRef(0),
            last_iter: self.iter,
        };
        e.set(resolved);
        self.arena.extend_from_slice(raw);
        let pos = self.entries.len() as u32;
        self.entries.push(e);
        let entries = &self.entries;
        self.index
            .insert_unique(hash, pos, |&i| entries[i as usize].hash);
    }

    /// After a scrape (`scrapeCache.iterDone`): a successful non-empty one
    /// keeps only the entries seen since the last flush and advances the
    /// iteration; a failed (or empty) one keeps everything unless the cache
    /// grew beyond twice its last good size plus 1000.
    pub(crate) fn iter_done(&mut self, successful: bool) {
        let flush = if successful {
            self.successful_len = self.len();
            true
        } else {
            self.len() > self.successful_len.saturating_mul(2) + 1000
        };
        if flush {
            self.forget_unseen();
            self.iter += 1;
        }
        if successful {
            // Growth doubles capacity; a target's series set is mostly
            // stable, so give the slack back once a scrape is done.
            trim(&mut self.arena);
            trim(&mut self.entries);
        }
    }

    /// Drops the entries not seen in this iteration.
    fn forget_unseen(&mut self) {
        let iter = self.iter;
        // From the end, so an entry moved into a hole was already kept.
        for i in (0..self.entries.len()).rev() {
            let e = self.entries[i];
            if e.last_iter == iter {
                continue;
            }
            if let Ok(found) = self.index.find_entry(e.hash, |&p| p as usize == i) {
                found.remove();
            }
            self.dead_bytes += e.len as usize;
            let last = self.entries.len() - 1;
            if i != last {
                let moved = self.entries[last].hash;
                if let Some(p) = self.index.find_mut(moved, |&p| p as usize == last) {
                    *p = i as u32;
                }
            }
            self.entries.swap_remove(i);
        }
        let live = self.arena.len() - self.dead_bytes;
        if self.dead_bytes > live && self.dead_bytes > MIN_COMPACT_BYTES {
            self.compact(live);
        }
    }

    /// Copies the live bytes to a new arena.
    fn compact(&mut self, live: usize) {
        let mut arena = Vec::with_capacity(live);
        for e in &mut self.entries {
            let off = arena.len();
            arena.extend_from_slice(&self.arena[e.off..e.off + e.len as usize]);
            e.off = off;
        }
        self.arena = arena;
        self.dead_bytes = 0;
    }

    pub(crate) fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
        self.arena.clear();
        self.dead_bytes = 0;
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Shrinks `v` to its length plus 1/8 when more than a quarter of its
/// capacity is unused.
fn trim<T>(v: &mut Vec<T>) {
    let len = v.len();
    if v.capacity() > len + len / 4 + 16 {
        v.shrink_to(len + len / 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(slot: u32) -> Resolved {
        Resolved::Series {
            slot,
            series: SeriesRef(100 + slot as u64),
        }
    }

    #[test]
    fn exact_bytes_find_entries_and_insert_overwrites() {
        let mut c = RawCache::default();
        c.insert(b"a{x=\"1\"}", series(1));
        c.insert(b"b", Resolved::Dropped);
        assert_eq!(c.get(b"a{x=\"1\"}"), Some(series(1)));
        assert_eq!(c.get(b"a{x=\"1\"} "), None);
        assert_eq!(c.get(b"b"), Some(Resolved::Dropped));
        c.insert(b"b", series(7));
        assert_eq!(c.get(b"b"), Some(series(7)));
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn flush_forgets_unseen_entries_and_compacts() {
        let mut c = RawCache::default();
        let keys: Vec<Vec<u8>> = (0..5000)
            .map(|i| format!("metric_{i}{{label=\"value_{i}\"}}").into_bytes())
            .collect();
        for (i, k) in keys.iter().enumerate() {
            c.insert(k, series(i as u32));
        }
        c.iter_done(true);
        // Next iteration: only every third key is seen.
        for (i, k) in keys.iter().enumerate() {
            if i % 3 == 0 {
                assert_eq!(c.get(k), Some(series(i as u32)));
            }
        }
        c.iter_done(true);
        assert_eq!(c.len(), keys.len().div_ceil(3));
        assert_eq!(c.dead_bytes, 0, "compacted");
        for (i, k) in keys.iter().enumerate() {
            let want = (i % 3 == 0).then_some(series(i as u32));
            assert_eq!(c.get(k), want, "key {i}");
        }
    }

    #[test]
    fn failed_scrapes_keep_entries_until_the_cache_doubles() {
        let mut c = RawCache::default();
        c.insert(b"a", series(1));
        c.iter_done(true);
        c.iter_done(false);
        assert_eq!(c.get(b"a"), Some(series(1)));
        c.iter_done(true);
        c.iter_done(true);
        assert_eq!(c.get(b"a"), None);
    }
}
