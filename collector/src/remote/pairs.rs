//! A series' remote write labels held as ids of interned `Label` messages.
//!
//! Every `Label { name, value }` message a queue sends (with its
//! `TimeSeries.labels` tag and length) is stored once in a [`PairBytes`]
//! shared by the queue's shards; a series keeps the varint ids of its
//! labels (a dozen bytes, inline: [`PooledIds`], no allocation of its own)
//! instead of ~150 bytes of encoding, and a request is written by copying
//! the labels' messages back to back. A queued sample carries its series'
//! ids and a reference to the pairs they index ([`EncodedLabels`]).
//!
//! Pairs are never removed from a [`PairBytes`]: when most of its pairs
//! are no longer used (label values that churned), the owner starts a new
//! one ([`PairInterner::renew`]) and re-interns its live series
//! ([`PairInterner::reintern`]); samples still queued keep the old one
//! alive until they are sent.

use std::sync::{Arc, RwLock, RwLockReadGuard};

use hashbrown::HashTable;

use crate::varint::{self, put_uvarint, read_uvarint};

/// Interned `Label` messages, back to back.
#[derive(Debug, Default)]
pub(crate) struct PairBytes {
    /// Start of each pair in `bytes` (a pair ends where the next starts).
    starts: Vec<u32>,
    bytes: Vec<u8>,
}

impl PairBytes {
    fn get(&self, id: u32) -> &[u8] {
        let i = id as usize;
        let (Some(&start), end) = (self.starts.get(i), self.starts.get(i + 1)) else {
            return &[];
        };
        let end = end.map_or(self.bytes.len(), |&e| e as usize);
        self.bytes.get(start as usize..end).unwrap_or_default()
    }

    fn push(&mut self, frame: &[u8]) -> u32 {
        self.starts.push(self.bytes.len() as u32);
        self.bytes.extend_from_slice(frame);
        (self.starts.len() - 1) as u32
    }

    fn len(&self) -> usize {
        self.starts.len()
    }
}

type SharedPairs = Arc<RwLock<PairBytes>>;

fn read(pairs: &SharedPairs) -> RwLockReadGuard<'_, PairBytes> {
    pairs.read().unwrap_or_else(|p| p.into_inner())
}

/// Ids up to this many bytes are kept inline (no allocation): seven
/// labels of ids below 16384.
const INLINE: usize = 14;

/// Two words: the heap variant is a thin pointer (a fat `Arc<[u8]>` would
/// make it three).
#[derive(Clone, Debug)]
enum Ids {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Arc<Vec<u8>>),
}

impl Ids {
    fn new(ids: &[u8]) -> Ids {
        if ids.len() <= INLINE {
            let mut bytes = [0; INLINE];
            bytes[..ids.len()].copy_from_slice(ids);
            Ids::Inline {
                len: ids.len() as u8,
                bytes,
            }
        } else {
            Ids::Heap(Arc::new(ids.to_vec()))
        }
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            Ids::Inline { len, bytes } => &bytes[..*len as usize],
            Ids::Heap(b) => b,
        }
    }
}

/// A series' labels as ids of pairs in the [`PairInterner`] that interned
/// them (valid until its next [`renew`](PairInterner::renew)).
#[derive(Clone, Debug)]
pub(crate) struct PooledIds {
    /// Encoded length.
    len: u32,
    ids: Ids,
}

impl PooledIds {
    fn write_to(&self, pairs: &PairBytes, out: &mut Vec<u8>) {
        for id in varint::Ids(self.ids.as_slice()) {
            out.extend_from_slice(pairs.get(id));
        }
    }
}

#[derive(Clone, Debug)]
enum Repr {
    /// The encoding itself (labels made outside a queue: tests, benches).
    Bytes(Arc<[u8]>),
    Pooled {
        pairs: SharedPairs,
        ids: PooledIds,
    },
}

/// The labels of one series as the protobuf encoding of a `TimeSeries`'
/// `labels` field (repeated field 1 of `Label { name = 1, value = 2 }`),
/// as a queued sample carries them (cloning shares, never copies, the
/// pairs).
#[derive(Clone, Debug)]
pub struct EncodedLabels(Repr);

impl EncodedLabels {
    /// Labels from their encoding.
    pub fn from_bytes(bytes: &[u8]) -> EncodedLabels {
        EncodedLabels(Repr::Bytes(bytes.into()))
    }

    /// Bytes of the encoding.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Bytes(b) => b.len(),
            Repr::Pooled { ids, .. } => ids.len as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the encoding to `out`.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Repr::Bytes(b) => out.extend_from_slice(b),
            Repr::Pooled { pairs, ids } => ids.write_to(&read(pairs), out),
        }
    }

    /// The encoding.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.write_to(&mut out);
        out
    }
}

/// The `Label` messages of an encoded `labels` field, or None when the
/// bytes are not a sequence of field-1 length-delimited messages.
fn frames(mut wire: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::with_capacity(8);
    while !wire.is_empty() {
        if wire[0] != (1 << 3 | 2) {
            return None;
        }
        let (len, n) = read_uvarint(&wire[1..])?;
        let end = 1usize
            .checked_add(n)?
            .checked_add(usize::try_from(len).ok()?)?;
        if end > wire.len() {
            return None;
        }
        out.push(&wire[..end]);
        wire = &wire[end..];
    }
    Some(out)
}

fn frame_hash(frame: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(frame)
}

/// The pairs a [`PairInterner`] had before it was renewed.
pub(crate) struct Renewed(SharedPairs);

/// The owner side of one queue's interned pairs (the dispatcher's).
#[derive(Default)]
pub(crate) struct PairInterner {
    pairs: SharedPairs,
    /// (hash, id) of every pair.
    index: HashTable<(u64, u32)>,
    ids: Vec<u8>,
}

impl PairInterner {
    /// Pairs interned.
    pub(crate) fn len(&self) -> usize {
        read(&self.pairs).len()
    }

    fn find(&self, pairs: &PairBytes, hash: u64, frame: &[u8]) -> Option<u32> {
        self.index
            .find(hash, |&(h, id)| h == hash && pairs.get(id) == frame)
            .map(|&(_, id)| id)
    }

    /// The labels encoded as `wire` (as `encode_labels_into` writes them),
    /// interning their pairs. None when `wire` is not such an encoding.
    pub(crate) fn intern(&mut self, wire: &[u8]) -> Option<PooledIds> {
        let frames = frames(wire)?;
        self.ids.clear();
        let mut missing = false;
        {
            let pairs = read(&self.pairs);
            for f in &frames {
                match self.find(&pairs, frame_hash(f), f) {
                    Some(id) => put_uvarint(&mut self.ids, u64::from(id)),
                    None => {
                        missing = true;
                        break;
                    }
                }
            }
        }
        if missing {
            self.ids.clear();
            let mut pairs = self.pairs.write().unwrap_or_else(|p| p.into_inner());
            for f in &frames {
                let hash = frame_hash(f);
                let id = match self.find(&pairs, hash, f) {
                    Some(id) => id,
                    None => {
                        let id = pairs.push(f);
                        self.index.insert_unique(hash, (hash, id), |&(h, _)| h);
                        id
                    }
                };
                put_uvarint(&mut self.ids, u64::from(id));
            }
        }
        Some(PooledIds {
            len: wire.len() as u32,
            ids: Ids::new(&self.ids),
        })
    }

    /// `ids` (interned here) as a queued sample carries them.
    pub(crate) fn labels(&self, ids: &PooledIds) -> EncodedLabels {
        EncodedLabels(Repr::Pooled {
            pairs: Arc::clone(&self.pairs),
            ids: ids.clone(),
        })
    }

    /// Whether `ids` (interned here) encode as `wire` (`buf` is scratch).
    pub(crate) fn encodes_as(&self, ids: &PooledIds, wire: &[u8], buf: &mut Vec<u8>) -> bool {
        if ids.len as usize != wire.len() {
            return false;
        }
        buf.clear();
        ids.write_to(&read(&self.pairs), buf);
        buf[..] == *wire
    }

    /// Starts a new, empty set of pairs and returns the old one: ids
    /// interned before are only valid with it (see
    /// [`reintern`](Self::reintern)); labels made before keep it alive.
    pub(crate) fn renew(&mut self) -> Renewed {
        Renewed(std::mem::take(self).pairs)
    }

    /// Interns again here `ids` that were interned before the renewal
    /// `old` (`buf` is scratch); they stay as they were if that fails
    /// (it cannot: the bytes are our own encoding).
    pub(crate) fn reintern(&mut self, old: &Renewed, ids: &mut PooledIds, buf: &mut Vec<u8>) {
        buf.clear();
        ids.write_to(&read(&old.0), buf);
        if let Some(new) = self.intern(buf) {
            *ids = new;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::encode::encode_labels_into;
    use promshard_promlib::labels::Labels;

    fn wire(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_labels_into(&Labels::from_pairs(pairs.iter().copied()), &mut out);
        out
    }

    #[test]
    fn interned_labels_write_their_encoding_and_share_pairs() {
        let mut i = PairInterner::default();
        let a = wire(&[("__name__", "m"), ("instance", "h:1"), ("job", "j")]);
        let b = wire(&[("__name__", "m"), ("instance", "h:2"), ("job", "j")]);
        let la = {
            let ids = i.intern(&a).expect("valid");
            i.labels(&ids)
        };
        let lb = {
            let ids = i.intern(&b).expect("valid");
            i.labels(&ids)
        };
        assert_eq!(la.to_vec(), a);
        assert_eq!(lb.to_vec(), b);
        assert_eq!((la.len(), lb.len()), (a.len(), b.len()));
        assert_eq!(i.len(), 4, "name and job are shared");
        assert_eq!(la.to_vec(), EncodedLabels::from_bytes(&a).to_vec());
        assert_ne!(la.to_vec(), lb.to_vec());
    }

    #[test]
    fn many_labels_and_large_ids_round_trip() {
        let mut i = PairInterner::default();
        for n in 0..300 {
            i.intern(&wire(&[("__name__", &format!("m{n}"))]));
        }
        let names: Vec<String> = (0..20).map(|n| format!("l{n:02}")).collect();
        let pairs: Vec<(&str, &str)> = std::iter::once(("__name__", "big"))
            .chain(names.iter().map(|n| (n.as_str(), "v")))
            .collect();
        let w = wire(&pairs);
        let l = {
            let ids = i.intern(&w).expect("valid");
            i.labels(&ids)
        };
        assert_eq!(l.to_vec(), w, "ids past the inline size");
        let mut buf = Vec::new();
        let again = i.intern(&w).expect("valid");
        assert!(i.encodes_as(&again, &w, &mut buf));
    }

    #[test]
    fn renewing_keeps_earlier_labels_intact() {
        let mut i = PairInterner::default();
        let a = wire(&[("__name__", "m"), ("pod", "p-1")]);
        let mut ids_a = i.intern(&a).expect("valid");
        let la = i.labels(&ids_a);
        let old = i.renew();
        assert_eq!(i.len(), 0);
        let b = wire(&[("__name__", "m"), ("pod", "p-2")]);
        let lb = {
            let ids = i.intern(&b).expect("valid");
            i.labels(&ids)
        };
        assert_eq!(la.to_vec(), a, "queued labels keep the old pairs");
        assert_eq!(lb.to_vec(), b);
        let mut buf = Vec::new();
        i.reintern(&old, &mut ids_a, &mut buf);
        assert_eq!(i.labels(&ids_a).to_vec(), a, "re-interned in the new pairs");
        assert!(i.encodes_as(&ids_a, &a, &mut buf));
        assert!(!i.encodes_as(&ids_a, &b, &mut buf));
        assert_eq!(i.len(), 3, "m, p-2 and p-1");
    }

    #[test]
    fn a_held_series_costs_no_allocation_and_a_few_words() {
        // What a queue keeps per live series (with its WAL segment and
        // drop reason): the ids inline, no heap block of its own.
        type Held = Option<(u32, Result<PooledIds, crate::remote::stats::DropReason>)>;
        assert!(std::mem::size_of::<Held>() <= 32);
        let mut i = PairInterner::default();
        let ids = i
            .intern(&wire(&[("__name__", "m"), ("job", "j")]))
            .expect("valid");
        assert!(matches!(ids.ids, Ids::Inline { .. }));
    }

    #[test]
    fn malformed_encodings_are_refused() {
        let mut i = PairInterner::default();
        assert!(i.intern(&[0x12, 0x01, 0x00]).is_none(), "wrong tag");
        assert!(i.intern(&[0x0a, 0x05, 0x00]).is_none(), "short");
        assert!(i.intern(&[0x0a, 0xff]).is_none(), "cut varint");
        let empty = i.intern(&[]).expect("empty labels are valid");
        assert!(i.labels(&empty).is_empty());
    }
}
