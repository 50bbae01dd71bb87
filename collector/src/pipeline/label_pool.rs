//! One target's label pairs, each stored once: a series' label set is kept
//! as the varint ids of its pairs (a node_exporter-like series of five
//! labels: 5 to 10 bytes instead of ~90 bytes of canonical text). Pairs are
//! reference-counted and freed (their ids reused) when no series uses them,
//! so label values that churn do not accumulate.

use hashbrown::HashTable;
use promshard_promlib::labels::{Label, Labels};

use crate::varint::{Ids, put_uvarint};

/// Pair bytes are compacted only above this many dead bytes.
const MIN_COMPACT_BYTES: usize = 16 * 1024;

#[derive(Clone, Copy, Debug)]
struct Pair {
    /// `bytes[off..off + name_len]` is the name, the value follows.
    off: u32,
    name_len: u32,
    value_len: u32,
    /// Series using the pair; 0: free (its id is in `free`).
    refs: u32,
}

impl Pair {
    fn end(&self) -> usize {
        self.off as usize + self.name_len as usize + self.value_len as usize
    }
}

fn pair_hash(name: &str, value: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&(name.len() as u32).to_le_bytes());
    h.update(name.as_bytes());
    h.update(value.as_bytes());
    h.digest()
}

#[derive(Default)]
pub(crate) struct LabelPool {
    pairs: Vec<Pair>,
    /// Names and values of the pairs, back to back.
    bytes: Vec<u8>,
    dead_bytes: usize,
    free: Vec<u32>,
    /// Pair ids by [`pair_hash`].
    index: HashTable<u32>,
}

/// The name and value of pair `id`.
fn name_value<'a>(pairs: &[Pair], bytes: &'a [u8], id: u32) -> (&'a str, &'a str) {
    let Some(p) = pairs.get(id as usize) else {
        return ("", "");
    };
    let off = p.off as usize;
    let name_end = off + p.name_len as usize;
    // The bytes were copied from `&str`s at pair boundaries.
    let name = std::str::from_utf8(&bytes[off..name_end]).unwrap_or_default();
    let value = std::str::from_utf8(&bytes[name_end..p.end()]).unwrap_or_default();
    (name, value)
}

impl LabelPool {
    fn name_value(&self, id: u32) -> (&str, &str) {
        name_value(&self.pairs, &self.bytes, id)
    }

    fn find(&self, name: &str, value: &str) -> Option<u32> {
        self.index
            .find(pair_hash(name, value), |&id| {
                self.name_value(id) == (name, value)
            })
            .copied()
    }

    /// Appends the ids of `labels` to `out` if every pair is known;
    /// `false` (and `out` partly written) otherwise. References nothing.
    pub(crate) fn encode_known(&self, labels: &Labels, out: &mut Vec<u8>) -> bool {
        for l in labels {
            match self.find(&l.name, &l.value) {
                Some(id) => put_uvarint(out, u64::from(id)),
                None => return false,
            }
        }
        true
    }

    /// Appends the ids of `labels` to `out`, adding the pairs not known
    /// yet; every pair gets one more reference.
    pub(crate) fn encode_and_hold(&mut self, labels: &Labels, out: &mut Vec<u8>) {
        for l in labels {
            let id = match self.find(&l.name, &l.value) {
                Some(id) => id,
                None => self.add(&l.name, &l.value),
            };
            if let Some(p) = self.pairs.get_mut(id as usize) {
                p.refs += 1;
            }
            put_uvarint(out, u64::from(id));
        }
    }

    fn add(&mut self, name: &str, value: &str) -> u32 {
        let pair = Pair {
            off: self.bytes.len() as u32,
            name_len: name.len() as u32,
            value_len: value.len() as u32,
            refs: 0,
        };
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.extend_from_slice(value.as_bytes());
        let id = match self.free.pop() {
            Some(id) => {
                self.pairs[id as usize] = pair;
                id
            }
            None => {
                self.pairs.push(pair);
                (self.pairs.len() - 1) as u32
            }
        };
        let hash = pair_hash(name, value);
        let (pairs, bytes) = (&self.pairs, &self.bytes);
        self.index.insert_unique(hash, id, |&i| {
            let (n, v) = name_value(pairs, bytes, i);
            pair_hash(n, v)
        });
        id
    }

    /// Drops one reference from each pair of `ids` (as written by
    /// [`encode_and_hold`](Self::encode_and_hold)); pairs left unused are
    /// freed.
    pub(crate) fn release(&mut self, ids: &[u8]) {
        for id in Ids(ids) {
            let Some(p) = self.pairs.get_mut(id as usize) else {
                continue;
            };
            if p.refs == 0 {
                continue;
            }
            p.refs -= 1;
            if p.refs > 0 {
                continue;
            }
            let p = *p;
            let (name, value) = self.name_value(id);
            if let Ok(found) = self.index.find_entry(pair_hash(name, value), |&i| i == id) {
                found.remove();
            }
            self.dead_bytes += (p.name_len + p.value_len) as usize;
            self.free.push(id);
        }
        let live = self.bytes.len() - self.dead_bytes;
        if self.dead_bytes > live && self.dead_bytes > MIN_COMPACT_BYTES {
            self.compact(live);
        }
    }

    fn compact(&mut self, live: usize) {
        let mut bytes = Vec::with_capacity(live);
        for p in self.pairs.iter_mut().filter(|p| p.refs > 0) {
            let off = bytes.len();
            bytes.extend_from_slice(&self.bytes[p.off as usize..p.end()]);
            p.off = off as u32;
        }
        self.bytes = bytes;
        self.dead_bytes = 0;
    }

    /// Gives back the slack growth left in the pairs and their bytes.
    pub(crate) fn trim(&mut self) {
        super::trim(&mut self.pairs);
        super::trim(&mut self.bytes);
    }

    /// The label set written as `ids`.
    pub(crate) fn decode(&self, ids: &[u8]) -> Labels {
        let labels = Ids(ids)
            .map(|id| {
                let (n, v) = self.name_value(id);
                Label::new(n, v)
            })
            .collect();
        // Encoded from a sorted, valid set, so this always holds.
        Labels::from_sorted(labels).unwrap_or_default()
    }

    #[cfg(test)]
    pub(crate) fn pairs_in_use(&self) -> usize {
        self.pairs.iter().filter(|p| p.refs > 0).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn label_sets_round_trip_and_share_pairs() {
        let mut pool = LabelPool::default();
        let a = set(&[("__name__", "m"), ("job", "node"), ("v", "1")]);
        let b = set(&[("__name__", "m"), ("job", "node"), ("v", "2")]);
        let (mut ia, mut ib) = (Vec::new(), Vec::new());
        pool.encode_and_hold(&a, &mut ia);
        pool.encode_and_hold(&b, &mut ib);
        assert_eq!(pool.decode(&ia), a);
        assert_eq!(pool.decode(&ib), b);
        assert_eq!(pool.pairs_in_use(), 4, "name and job are shared");
        let mut known = Vec::new();
        assert!(pool.encode_known(&a, &mut known));
        assert_eq!(known, ia);
        assert!(!pool.encode_known(&set(&[("v", "3")]), &mut Vec::new()));
    }

    #[test]
    fn released_pairs_are_freed_reused_and_compacted() {
        let mut pool = LabelPool::default();
        let keep = set(&[("__name__", "kept")]);
        let mut ik = Vec::new();
        pool.encode_and_hold(&keep, &mut ik);
        for round in 0..50 {
            let mut ids = Vec::new();
            let churn: Vec<Labels> = (0..100)
                .map(|i| {
                    set(&[
                        ("__name__", "m"),
                        ("pod", &format!("pod-{round}-{i}-{}", "x".repeat(40))),
                    ])
                })
                .collect();
            let held: Vec<Vec<u8>> = churn
                .iter()
                .map(|l| {
                    ids.clear();
                    pool.encode_and_hold(l, &mut ids);
                    ids.clone()
                })
                .collect();
            for (l, i) in churn.iter().zip(&held) {
                assert_eq!(&pool.decode(i), l);
            }
            for i in &held {
                pool.release(i);
            }
        }
        assert_eq!(pool.pairs_in_use(), 1);
        assert_eq!(pool.decode(&ik), keep);
        assert!(pool.pairs.len() <= 102, "ids reused: {}", pool.pairs.len());
        assert!(
            pool.bytes.len() < 64 * 1024,
            "compacted: {}",
            pool.bytes.len()
        );
    }

    #[test]
    fn large_ids_round_trip() {
        let mut pool = LabelPool::default();
        let mut last = Vec::new();
        let mut want = Labels::default();
        for i in 0..300 {
            let l = set(&[("n", &i.to_string())]);
            last.clear();
            pool.encode_and_hold(&l, &mut last);
            want = l;
        }
        assert!(last.len() > 1, "a two-byte varint");
        assert_eq!(pool.decode(&last), want);
    }
}
