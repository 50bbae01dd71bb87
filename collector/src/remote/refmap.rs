//! Maps keyed by [`SeriesRef`] with a cheap hash: refs are mostly
//! consecutive numbers, so one folded multiply spreads them well and
//! SipHash would only cost time.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::series::SeriesRef;

/// A hasher for one u64 (a [`SeriesRef`]).
#[derive(Default, Clone, Copy)]
pub(crate) struct RefHasher(u64);

impl Hasher for RefHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        let m = u128::from(self.0 ^ v) * 0x9E37_79B9_7F4A_7C15;
        self.0 = (m as u64) ^ ((m >> 64) as u64);
    }
}

/// A map keyed by series ref.
pub(crate) type RefMap<V> = HashMap<SeriesRef, V, BuildHasherDefault<RefHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn consecutive_refs_spread_over_buckets() {
        let b = BuildHasherDefault::<RefHasher>::default();
        let mut low = std::collections::HashSet::new();
        for r in 0..1024u64 {
            low.insert(b.hash_one(SeriesRef(r)) & 1023);
        }
        // Not all in a few buckets (a perfect spread is 1024).
        assert!(low.len() > 600, "{}", low.len());
    }
}
