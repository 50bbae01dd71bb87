//! Maps keyed by [`SeriesRef`] with a cheap hash (see
//! [`crate::series::RefHasher`]).

use crate::series::{RefBuildHasher, SeriesRef};
use std::collections::HashMap;

/// A map keyed by series ref.
pub(crate) type RefMap<V> = HashMap<SeriesRef, V, RefBuildHasher>;

/// How far past its end a [`RefTable`]'s dense part grows for one
/// insert; a ref further out goes to the sparse part.
const MAX_GROW: u64 = 1 << 20;

/// A map keyed by series ref for refs handed out by a counter (dense,
/// mostly increasing): a vector indexed by `ref - base`, so refs of one
/// scrape, which are mostly consecutive, are looked up in consecutive
/// memory; refs below the first one or far past the end go to a hash map.
#[derive(Debug)]
pub(crate) struct RefTable<V> {
    base: u64,
    dense: Vec<Option<V>>,
    sparse: RefMap<V>,
}

impl<V> Default for RefTable<V> {
    fn default() -> Self {
        RefTable {
            base: 0,
            dense: Vec::new(),
            sparse: RefMap::default(),
        }
    }
}

impl<V> RefTable<V> {
    fn slot(&self, r: SeriesRef) -> Option<usize> {
        let i = r.0.checked_sub(self.base)?;
        usize::try_from(i).ok()
    }

    pub(crate) fn get(&self, r: SeriesRef) -> Option<&V> {
        match self.slot(r).and_then(|i| self.dense.get(i)) {
            Some(v) => v.as_ref(),
            None => self.sparse.get(&r),
        }
    }

    pub(crate) fn insert(&mut self, r: SeriesRef, v: V) {
        if self.dense.is_empty() && self.sparse.is_empty() {
            self.base = r.0;
        }
        match self.slot(r) {
            Some(i) if i < self.dense.len() => self.dense[i] = Some(v),
            Some(i) if (i - self.dense.len()) as u64 <= MAX_GROW => {
                // A ref once in the sparse part moves here.
                self.sparse.remove(&r);
                self.dense.resize_with(i, || None);
                self.dense.push(Some(v));
            }
            _ => {
                self.sparse.insert(r, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn table_keeps_dense_sparse_and_low_refs() {
        let mut t = RefTable::default();
        t.insert(SeriesRef(100), "a");
        t.insert(SeriesRef(102), "c");
        t.insert(SeriesRef(5), "low");
        t.insert(SeriesRef(100 + 10 * MAX_GROW), "far");
        t.insert(SeriesRef(100), "a2");
        assert_eq!(t.get(SeriesRef(100)), Some(&"a2"));
        assert_eq!(t.get(SeriesRef(101)), None);
        assert_eq!(t.get(SeriesRef(102)), Some(&"c"));
        assert_eq!(t.get(SeriesRef(5)), Some(&"low"));
        assert_eq!(t.get(SeriesRef(100 + 10 * MAX_GROW)), Some(&"far"));
        assert_eq!(t.get(SeriesRef(u64::MAX)), None);
        assert_eq!(t.dense.len(), 3, "far and low refs are not in the vector");
        // A ref first too far out moves into the vector once the vector
        // has grown close to it.
        let later = SeriesRef(100 + 2 * MAX_GROW + 3);
        t.insert(later, "sparse");
        assert!(t.sparse.contains_key(&later));
        t.insert(SeriesRef(100 + 3 + MAX_GROW), "edge");
        assert_eq!(t.dense.len() as u64, MAX_GROW + 4);
        t.insert(later, "dense");
        assert!(!t.sparse.contains_key(&later));
        assert_eq!(t.get(later), Some(&"dense"));
    }

    #[test]
    fn consecutive_refs_spread_over_buckets() {
        let b = RefBuildHasher::default();
        let mut low = std::collections::HashSet::new();
        for r in 0..1024u64 {
            low.insert(b.hash_one(SeriesRef(r)) & 1023);
        }
        // Not all in a few buckets (a perfect spread is 1024).
        assert!(low.len() > 600, "{}", low.len());
    }
}
