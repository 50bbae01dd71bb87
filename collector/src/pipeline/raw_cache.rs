//! The series cache keyed by the raw series bytes as the target wrote them
//! (`name{labels}`): a hit skips label building, target labels and metric
//! relabeling entirely. Entries dropped by metric relabeling are cached as
//! dropped.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::series::SeriesRef;

/// What a raw series resolved to the last time it was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// Dropped by metric_relabel_configs.
    Dropped,
    /// A series-table slot, valid while the slot still holds `series`.
    Series { slot: u32, series: SeriesRef },
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    resolved: Resolved,
    /// The scrape iteration that last saw it.
    last_iter: u64,
}

/// One-shot xxh3 over the key bytes (the std `Hash` of `[u8]` writes a
/// length then the bytes; the length is folded in as the seed).
#[derive(Default)]
pub(crate) struct RawHasher {
    state: u64,
}

impl Hasher for RawHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.state = xxhash_rust::xxh3::xxh3_64_with_seed(bytes, self.state);
    }

    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.state ^= n as u64;
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.state
    }
}

pub(crate) type RawBuildHasher = BuildHasherDefault<RawHasher>;

/// Raw series bytes -> what they resolved to.
///
/// Mirrors Prometheus 2.42's `scrapeCache`: it has its own iteration
/// counter, which only advances when the cache is flushed (after a
/// successful non-empty scrape, or a forced flush), so entries survive any
/// number of failed scrapes. Whether a raw series is in this cache decides
/// `scrape_series_added`.
#[derive(Default)]
pub(crate) struct RawCache {
    map: HashMap<Box<[u8]>, Entry, RawBuildHasher>,
    /// Size (before flushing) at the last successful, non-empty scrape
    /// (for the forced flush Prometheus does when failing scrapes grow the
    /// cache).
    successful_len: usize,
    iter: u64,
}

impl RawCache {
    /// Looks `raw` up and marks it seen in this iteration.
    #[inline]
    pub(crate) fn get(&mut self, raw: &[u8]) -> Option<Resolved> {
        let e = self.map.get_mut(raw)?;
        e.last_iter = self.iter;
        Some(e.resolved)
    }

    pub(crate) fn insert(&mut self, raw: &[u8], resolved: Resolved) {
        self.map.insert(
            raw.into(),
            Entry {
                resolved,
                last_iter: self.iter,
            },
        );
    }

    /// After a scrape (`scrapeCache.iterDone`): a successful non-empty one
    /// keeps only the entries seen since the last flush and advances the
    /// iteration; a failed (or empty) one keeps everything unless the cache
    /// grew beyond twice its last good size plus 1000.
    pub(crate) fn iter_done(&mut self, successful: bool) {
        let flush = if successful {
            self.successful_len = self.map.len();
            true
        } else {
            self.map.len() > self.successful_len.saturating_mul(2) + 1000
        };
        if flush {
            let iter = self.iter;
            self.map.retain(|_, e| e.last_iter == iter);
            self.iter += 1;
        }
    }

    pub(crate) fn clear(&mut self) {
        self.map.clear();
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}
