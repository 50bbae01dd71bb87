//! Maps and sets keyed by [`SeriesRef`]: a cheap hash (see
//! [`crate::series::RefHasher`]), and a table that keeps the dense, mostly
//! increasing refs of a counter in a vector.

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

impl<V> RefTable<V> {
    pub(crate) fn get_mut(&mut self, r: SeriesRef) -> Option<&mut V> {
        match self.slot(r) {
            Some(i) if i < self.dense.len() => self.dense[i].as_mut(),
            _ => self.sparse.get_mut(&r),
        }
    }

    /// Keeps the entries for which `keep` is true. When fewer than half of
    /// the dense part's slots hold an entry, its lower half moves to the
    /// sparse part, so refs that died do not keep slots forever.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&V) -> bool) {
        self.sparse.retain(|_, v| keep(v));
        let mut live = 0;
        for slot in &mut self.dense {
            if slot.as_ref().is_some_and(|v| !keep(v)) {
                *slot = None;
            }
            live += usize::from(slot.is_some());
        }
        while !self.dense.is_empty() && live < self.dense.len() / 2 {
            let half = self.dense.len() / 2;
            let base = self.base;
            for (i, v) in self.dense.drain(..half).enumerate() {
                if let Some(v) = v {
                    self.sparse.insert(SeriesRef(base + i as u64), v);
                    live -= 1;
                }
            }
            self.base += half as u64;
        }
        if self.dense.capacity() > 2 * self.dense.len() + 1024 {
            self.dense.shrink_to_fit();
        }
    }

    pub(crate) fn remove(&mut self, r: SeriesRef) -> Option<V> {
        match self.slot(r) {
            Some(i) if i < self.dense.len() => self.dense[i].take(),
            _ => self.sparse.remove(&r),
        }
    }

    pub(crate) fn for_each_mut(&mut self, mut f: impl FnMut(&mut V)) {
        self.dense.iter_mut().flatten().for_each(&mut f);
        self.sparse.values_mut().for_each(f);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.dense.iter().flatten().count() + self.sparse.len()
    }
}

/// A set of series refs: one byte per ref in the dense range (a hash set
/// takes ~16 and scatters lookups of consecutive refs over memory).
#[derive(Debug, Default)]
pub(crate) struct RefSet(RefTable<()>);

impl RefSet {
    /// Adds `r`; whether it was not there.
    pub(crate) fn insert(&mut self, r: SeriesRef) -> bool {
        if self.contains(r) {
            return false;
        }
        self.0.insert(r, ());
        true
    }

    pub(crate) fn contains(&self, r: SeriesRef) -> bool {
        self.0.get(r).is_some()
    }

    pub(crate) fn remove(&mut self, r: SeriesRef) -> bool {
        self.0.remove(r).is_some()
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
    fn retain_forgets_and_dead_refs_give_their_slots_back() {
        let mut t = RefTable::default();
        // A long-lived ref, then churn: 10 generations of 1000 refs, each
        // generation dropped when the next one arrives.
        t.insert(SeriesRef(1), 0u32);
        for generation in 1..=10u32 {
            let first = 2 + u64::from(generation) * 1000;
            for r in first..first + 1000 {
                t.insert(SeriesRef(r), generation);
            }
            t.retain(|&g| g == 0 || g == generation);
            assert_eq!(t.len(), 1001);
        }
        assert_eq!(t.get(SeriesRef(1)), Some(&0));
        assert_eq!(t.get(SeriesRef(2 + 10 * 1000)), Some(&10));
        assert_eq!(t.get(SeriesRef(2 + 9 * 1000)), None);
        assert!(t.dense.len() <= 2100, "dense part {} slots", t.dense.len());
        if let Some(v) = t.get_mut(SeriesRef(1)) {
            *v = 7;
        }
        assert_eq!(t.get(SeriesRef(1)), Some(&7));
    }

    #[test]
    fn ref_set_inserts_once_and_removes() {
        let mut s = RefSet::default();
        assert!(s.insert(SeriesRef(10)));
        assert!(!s.insert(SeriesRef(10)));
        assert!(s.insert(SeriesRef(3)), "below the first ref");
        assert!(s.insert(SeriesRef(10 + 4 * MAX_GROW)), "far out");
        assert!(s.contains(SeriesRef(3)) && s.contains(SeriesRef(10 + 4 * MAX_GROW)));
        assert!(!s.contains(SeriesRef(11)));
        assert!(s.remove(SeriesRef(10)));
        assert!(!s.remove(SeriesRef(10)));
        assert!(!s.contains(SeriesRef(10)));
        assert!(s.remove(SeriesRef(3)));
        assert!(!s.contains(SeriesRef(3)));
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
