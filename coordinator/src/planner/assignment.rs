//! [`Assignment`]: the plan's target -> shard map, compact.
//!
//! A million targets as a `BTreeMap<TargetId, ShardId>` cost a million
//! shard-id strings; here each target costs its id and a 4-byte shard
//! index into the shard list, built without a per-target allocation.

use std::collections::BTreeMap;
use std::ops::Index;

use crate::model::{ShardId, TargetId};

/// Which shard every assigned target is on, in target id order.
///
/// Reads like a `BTreeMap<TargetId, ShardId>` (`get`, `iter`, `keys`,
/// `values`, `[&id]`); [`Assignment::to_map`] builds one.
#[derive(Clone, Debug, Default)]
pub struct Assignment {
    /// The shards named by `on`, in id order.
    shards: Vec<ShardId>,
    /// Sorted, each id once.
    targets: Vec<TargetId>,
    /// `on[k]` indexes `shards`: where `targets[k]` is.
    on: Vec<u32>,
}

impl Assignment {
    /// `targets` sorted and unique, `on` as long, every index < `shards.len()`.
    pub(super) fn new(shards: Vec<ShardId>, targets: Vec<TargetId>, on: Vec<u32>) -> Self {
        debug_assert_eq!(targets.len(), on.len());
        debug_assert!(targets.windows(2).all(|w| w[0] < w[1]));
        debug_assert!(on.iter().all(|&s| (s as usize) < shards.len()));
        Assignment {
            shards,
            targets,
            on,
        }
    }

    pub fn len(&self) -> usize {
        self.targets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// The shard `target` is on (binary search).
    pub fn get(&self, target: &TargetId) -> Option<&ShardId> {
        let k = self.targets.binary_search(target).ok()?;
        Some(&self.shards[self.on[k] as usize])
    }

    pub fn contains_key(&self, target: &TargetId) -> bool {
        self.targets.binary_search(target).is_ok()
    }

    /// (target, shard) in target order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            shards: &self.shards,
            inner: self.targets.iter().zip(self.on.iter()),
        }
    }

    pub fn keys(&self) -> impl ExactSizeIterator<Item = &TargetId> + '_ {
        self.targets.iter()
    }

    pub fn values(&self) -> impl ExactSizeIterator<Item = &ShardId> + '_ {
        self.on.iter().map(|&s| &self.shards[s as usize])
    }

    /// The same as a map (one shard-id string per target).
    pub fn to_map(&self) -> BTreeMap<TargetId, ShardId> {
        self.iter().map(|(t, s)| (*t, s.clone())).collect()
    }
}

/// Iterator of [`Assignment::iter`].
pub struct Iter<'a> {
    shards: &'a [ShardId],
    inner: std::iter::Zip<std::slice::Iter<'a, TargetId>, std::slice::Iter<'a, u32>>,
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a TargetId, &'a ShardId);

    fn next(&mut self) -> Option<Self::Item> {
        let (t, &s) = self.inner.next()?;
        Some((t, &self.shards[s as usize]))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a Assignment {
    type Item = (&'a TargetId, &'a ShardId);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl Index<&TargetId> for Assignment {
    type Output = ShardId;

    /// Panics when `target` is not assigned, like a map's index.
    fn index(&self, target: &TargetId) -> &ShardId {
        match self.get(target) {
            Some(s) => s,
            None => panic!("target {target} is not in the assignment"),
        }
    }
}

/// Equal when they map the same targets to the same shard ids (whatever
/// shard list each was built with).
impl PartialEq for Assignment {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl PartialEq<BTreeMap<TargetId, ShardId>> for Assignment {
    fn eq(&self, other: &BTreeMap<TargetId, ShardId>) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl From<&Assignment> for BTreeMap<TargetId, ShardId> {
    fn from(a: &Assignment) -> Self {
        a.to_map()
    }
}

/// As a map from target id to shard id, like the `BTreeMap` it replaces.
impl serde::Serialize for Assignment {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        ser.collect_map(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Assignment {
        Assignment::new(
            vec![ShardId::from("a"), ShardId::from("b")],
            vec![1, 5, 9],
            vec![1, 0, 1],
        )
    }

    #[test]
    fn reads_like_the_map_it_replaces() {
        let a = sample();
        let m: BTreeMap<TargetId, ShardId> = [(1, "b"), (5, "a"), (9, "b")]
            .into_iter()
            .map(|(t, s)| (t, ShardId::from(s)))
            .collect();
        assert_eq!(a, m);
        assert_eq!(a.to_map(), m);
        assert_eq!(a.get(&5), Some(&ShardId::from("a")));
        assert_eq!(a.get(&4), None);
        assert_eq!(a[&9], ShardId::from("b"));
        assert!(a.contains_key(&1) && !a.contains_key(&2));
        assert_eq!(a.keys().copied().collect::<Vec<_>>(), vec![1, 5, 9]);
        assert_eq!(a.values().filter(|s| s.0 == "b").count(), 2);
        assert_eq!(
            serde_json::to_string(&a).expect("serializes"),
            r#"{"1":"b","5":"a","9":"b"}"#
        );
    }

    #[test]
    fn equality_ignores_the_shard_list() {
        let other = Assignment::new(
            vec![ShardId::from("b"), ShardId::from("a"), ShardId::from("c")],
            vec![1, 5, 9],
            vec![0, 1, 0],
        );
        assert_eq!(sample(), other);
        let moved = Assignment::new(
            vec![ShardId::from("a"), ShardId::from("b")],
            vec![1, 5, 9],
            vec![1, 1, 1],
        );
        assert_ne!(sample(), moved);
    }
}
