//! The series cache keyed by the raw series bytes as the target wrote them
//! (`name{labels}`): a hit skips label building, target labels and metric
//! relabeling entirely. Entries dropped by metric relabeling are cached as
//! dropped.
//!
//! Memory: an entry keeps the 128-bit xxh3 of the raw bytes, not the bytes,
//! and its series-table slot (24 bytes per entry in a dense vector, plus a
//! hash index of `u32` positions). The table's owner unsets the slot of
//! entries whose slot it frees ([`RawCache::unset_slots`]), so a cached
//! slot always holds the series it was cached for. Two different raw series of one target collide with a
//! probability of about n^2 / 2^129: for a million series 1e-27.

use hashbrown::HashTable;

use super::trim;

/// What a raw series resolved to the last time it was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// Dropped by metric_relabel_configs.
    Dropped,
    /// A series-table slot.
    Series { slot: u32 },
    /// In the cache, but its slot was freed: the labels must be worked
    /// out again (the series is not new to the cache).
    Unset,
}

/// `slot` of an entry cached as dropped.
const DROPPED: u32 = u32::MAX;
/// `slot` of an entry whose slot was freed.
const UNSET: u32 = u32::MAX - 1;

/// The 128-bit key of a raw series, as two words (8-byte alignment keeps
/// an entry at 24 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key([u64; 2]);

impl Key {
    fn of(raw: &[u8]) -> Key {
        let h = xxhash_rust::xxh3::xxh3_128(raw);
        Key([h as u64, (h >> 64) as u64])
    }

    /// The index hash.
    fn hash(self) -> u64 {
        self.0[0]
    }
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: Key,
    /// [`DROPPED`] or a series-table slot.
    slot: u32,
    /// The cache iteration that last saw it (wraps after 2^32 flushes;
    /// only equality with the current one is ever asked).
    last_iter: u32,
}

impl Entry {
    fn resolved(&self) -> Resolved {
        match self.slot {
            DROPPED => Resolved::Dropped,
            UNSET => Resolved::Unset,
            slot => Resolved::Series { slot },
        }
    }

    fn set(&mut self, resolved: Resolved) {
        self.slot = match resolved {
            Resolved::Dropped => DROPPED,
            Resolved::Series { slot } => slot,
            Resolved::Unset => UNSET,
        };
    }
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
    /// Positions in `entries`, by `Key::hash`.
    index: HashTable<u32>,
    entries: Vec<Entry>,
    /// Size (before flushing) at the last successful, non-empty scrape
    /// (for the forced flush Prometheus does when failing scrapes grow the
    /// cache).
    successful_len: usize,
    iter: u32,
}

impl RawCache {
    fn position(&self, key: Key) -> Option<usize> {
        let entries = &self.entries;
        self.index
            .find(key.hash(), |&i| entries[i as usize].key == key)
            .map(|&i| i as usize)
    }

    /// Looks `raw` up and marks it seen in this iteration.
    #[inline]
    pub(crate) fn get(&mut self, raw: &[u8]) -> Option<Resolved> {
        let i = self.position(Key::of(raw))?;
        let e = &mut self.entries[i];
        e.last_iter = self.iter;
        Some(e.resolved())
    }

    pub(crate) fn insert(&mut self, raw: &[u8], resolved: Resolved) {
        let key = Key::of(raw);
        if let Some(i) = self.position(key) {
            let e = &mut self.entries[i];
            e.set(resolved);
            e.last_iter = self.iter;
            return;
        }
        let mut e = Entry {
            key,
            slot: DROPPED,
            last_iter: self.iter,
        };
        e.set(resolved);
        let pos = self.entries.len() as u32;
        self.entries.push(e);
        let entries = &self.entries;
        self.index
            .insert_unique(key.hash(), pos, |&i| entries[i as usize].key.hash());
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
            self.iter = self.iter.wrapping_add(1);
        }
        if successful {
            // Growth doubles capacity; a target's series set is mostly
            // stable, so give the slack back once a scrape is done.
            trim(&mut self.entries);
            if self.index.capacity() > 2 * self.entries.len() + 64 {
                let entries = &self.entries;
                self.index
                    .shrink_to_fit(|&i| entries[i as usize].key.hash());
            }
        }
    }

    /// Unsets the slot of entries whose series-table slot `freed` says
    /// was freed (it will hold other series); they stay cached.
    pub(crate) fn unset_slots(&mut self, mut freed: impl FnMut(u32) -> bool) {
        for e in &mut self.entries {
            if e.slot != DROPPED && e.slot != UNSET && freed(e.slot) {
                e.slot = UNSET;
            }
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
            if let Ok(found) = self.index.find_entry(e.key.hash(), |&p| p as usize == i) {
                found.remove();
            }
            let last = self.entries.len() - 1;
            if i != last {
                let moved = self.entries[last].key.hash();
                if let Some(p) = self.index.find_mut(moved, |&p| p as usize == last) {
                    *p = i as u32;
                }
            }
            self.entries.swap_remove(i);
        }
    }

    pub(crate) fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(slot: u32) -> Resolved {
        Resolved::Series { slot }
    }

    #[test]
    fn an_entry_takes_three_words() {
        // A million series of one collector: 24 MB of entries.
        assert_eq!(std::mem::size_of::<Entry>(), 24);
    }

    #[test]
    fn entries_of_freed_slots_stay_cached_without_their_slot() {
        let mut c = RawCache::default();
        c.insert(b"a", series(1));
        c.insert(b"b", series(2));
        c.insert(b"c", Resolved::Dropped);
        c.insert(b"d", series(1));
        c.unset_slots(|slot| slot == 1);
        assert_eq!(c.get(b"a"), Some(Resolved::Unset));
        assert_eq!(c.get(b"d"), Some(Resolved::Unset));
        assert_eq!(c.get(b"b"), Some(series(2)));
        assert_eq!(c.get(b"c"), Some(Resolved::Dropped));
        assert_eq!(c.len(), 4);
        c.insert(b"a", series(3));
        assert_eq!(c.get(b"a"), Some(series(3)));
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
    fn flush_forgets_unseen_entries() {
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
